import { describe, expect, it } from 'vitest';
import type { Signal } from '#shared/signal.ts';
import { dedupeKey, seriesKey } from '../../../functions/scorer/keys.ts';
import { type ItemSizes, planGroups, type SeriesWork, type Work } from '../../../functions/scorer/plan.ts';

const work = (name: string, ref: string, id = ref): Work => {
  const signal: Signal = {
    id,
    name,
    value: 1,
    source: 'src',
    timestamp: '2024-01-01T00:00:00.000Z',
    origin: { kind: 's3', ref },
  };
  return { signal, key: dedupeKey(signal, 4096), series: seriesKey('src', name), messageIds: new Set(['m']) };
};
const series = (name: string, refs: string[], own = false): SeriesWork => ({
  series: seriesKey('src', name),
  signals: refs.map((r) => work(name, r, own ? `own-${r}` : r)),
});
const sizes: ItemSizes = { series: () => 200, block: () => 1024, id: () => 150 };
const itemsOf = (g: { series: readonly SeriesWork[] }) => {
  const blocks = new Set<string>();
  let ids = 0;
  for (const s of g.series)
    for (const w of s.signals) {
      if (w.key.type === 'position') blocks.add(w.key.blockKey);
      else ids++;
    }
  return g.series.length + blocks.size + ids;
};

describe('planning transactions', () => {
  it('puts whole series together while a transaction has room, counting a shared block once', () => {
    // Prepare: 150 series of one row each, all in block 0 of one file.
    const all = Array.from({ length: 150 }, (_, i) => series(`s${i}`, [`s3://b/k@e#${i + 1}`]));
    // Act
    const groups = planGroups(all, { maxItems: 99, maxBytes: 4_000_000 }, sizes);
    // Assess: 98 series + the block, then the other 52 + the block.
    expect(groups.map((g) => g.series.length)).toEqual([98, 52]);
    expect(groups.map(itemsOf)).toEqual([99, 53]);
  });

  it('runs a series with more id items than a transaction holds over several, in order', () => {
    // Prepare: one series of 250 signals that bring their own ids.
    const refs = Array.from({ length: 250 }, (_, i) => `s3://b/k@e#${i + 1}`);
    // Act
    const groups = planGroups([series('big', refs, true)], { maxItems: 99, maxBytes: 4_000_000 }, sizes);
    // Assess: each run is the series item and 98 id items; the signals stay in order.
    expect(groups.map(itemsOf)).toEqual([99, 99, 55]);
    expect(groups.flatMap((g) => g.series.flatMap((s) => s.signals.map((w) => w.signal.origin.ref)))).toEqual(
      refs,
    );
  });

  it('closes a transaction before its items would pass the byte limit (DynamoDB: 4 MB)', () => {
    // Prepare: id items of 150 KB each (a limit of 1 MB makes the byte limit bind before the count does).
    const big: ItemSizes = { ...sizes, id: () => 150_000 };
    const refs = Array.from({ length: 20 }, (_, i) => `s3://b/k@e#${i + 1}`);
    // Act
    const groups = planGroups([series('big', refs, true)], { maxItems: 99, maxBytes: 1_000_000 }, big);
    // Assess: 6 items of 150 KB and the series item fit in 1 MB.
    expect(groups.map((g) => g.series[0]?.signals.length)).toEqual([6, 6, 6, 2]);
  });

  it('starts a new transaction for a series that does not fit beside the ones already in it', () => {
    // Prepare
    const a = series(
      'a',
      Array.from({ length: 60 }, (_, i) => `s3://b/k@e#${i + 1}`),
      true,
    );
    const b = series(
      'b',
      Array.from({ length: 60 }, (_, i) => `s3://b/k@e#${i + 100}`),
      true,
    );
    // Act
    const groups = planGroups([a, b], { maxItems: 99, maxBytes: 4_000_000 }, sizes);
    // Assess
    expect(groups.map((g) => g.series.map((s) => s.signals.length))).toEqual([[60], [60]]);
  });
});
