import type { Signal } from '#shared/signal.ts';
import type { DedupeKey } from './keys.ts';

/** One signal to apply, and the messages that carried it (a repeat in the batch adds its message). */
export interface Work {
  readonly signal: Signal;
  readonly key: DedupeKey;
  readonly series: string;
  readonly messageIds: Set<string>;
}

/** Signals of one series, in the order they are scored. */
export interface SeriesWork {
  readonly series: string;
  readonly signals: readonly Work[];
}

/** What one transaction writes: some series (or a run of one series' signals), in order. */
export interface Group {
  readonly series: readonly SeriesWork[];
}

export interface PlanLimits {
  /** Items a transaction may write besides the totals item (DynamoDB allows 100 in all). */
  readonly maxItems: number;
  /** Bytes the items may add up to (DynamoDB allows 4 MB a transaction). */
  readonly maxBytes: number;
}

/** The size (bytes) each kind of item will have when written. */
export interface ItemSizes {
  series(series: string): number;
  block(blockKey: string): number;
  id(work: Work): number;
}

/**
 * Splits the batch's series into transactions, in order. A transaction writes the series items of its
 * series, one block item per block it applies positions in, and one id item per signal without a position.
 * Series go whole into the current transaction while it has room; a series that does not fit starts a
 * new one, and a series too large for any (thousands of id items) runs over several, one after another,
 * each carrying the series state on from the last.
 */
export function planGroups(all: readonly SeriesWork[], limits: PlanLimits, sizes: ItemSizes): Group[] {
  const groups: Group[] = [];
  let series: SeriesWork[] = [];
  let blocks = new Set<string>();
  let items = 0;
  let bytes = 0;
  const close = () => {
    if (series.length > 0) groups.push({ series });
    series = [];
    blocks = new Set();
    items = 0;
    bytes = 0;
  };
  /** Items and bytes `signals` of a series would add to the current transaction. */
  const cost = (key: string, signals: readonly Work[]) => {
    let n = 1;
    let b = sizes.series(key);
    const seen = new Set<string>();
    for (const w of signals) {
      if (w.key.type === 'position') {
        if (blocks.has(w.key.blockKey) || seen.has(w.key.blockKey)) continue;
        seen.add(w.key.blockKey);
        b += sizes.block(w.key.blockKey);
      } else {
        b += sizes.id(w);
      }
      n++;
    }
    return { n, b };
  };
  const fits = (c: { n: number; b: number }) =>
    items + c.n <= limits.maxItems && bytes + c.b <= limits.maxBytes;

  for (const sw of all) {
    if (sw.signals.length === 0) continue;
    if (!fits(cost(sw.series, sw.signals))) close();
    const whole = cost(sw.series, sw.signals);
    if (fits(whole)) {
      series.push(sw);
      for (const w of sw.signals) if (w.key.type === 'position') blocks.add(w.key.blockKey);
      items += whole.n;
      bytes += whole.b;
      continue;
    }
    // Too large for one transaction: runs of it, each in a transaction of its own.
    let run: Work[] = [];
    items = 1;
    bytes = sizes.series(sw.series);
    for (const w of sw.signals) {
      const add =
        w.key.type === 'position'
          ? blocks.has(w.key.blockKey)
            ? { n: 0, b: 0 }
            : { n: 1, b: sizes.block(w.key.blockKey) }
          : { n: 1, b: sizes.id(w) };
      if (run.length > 0 && !fits(add)) {
        series.push({ series: sw.series, signals: run });
        close();
        run = [];
        items = 1;
        bytes = sizes.series(sw.series);
      }
      if (!fits(add)) {
        throw new RangeError(`one signal of series ${sw.series} does not fit a transaction on its own`);
      }
      run.push(w);
      if (w.key.type === 'position') blocks.add(w.key.blockKey);
      items += add.n;
      bytes += add.b;
    }
    series.push({ series: sw.series, signals: run });
  }
  close();
  return groups;
}
