import { TransactionCanceledException } from '@aws-sdk/client-dynamodb';
import type { TransactWriteCommandInput } from '@aws-sdk/lib-dynamodb';
import { Bitmap, decodeTokens, encodeTokens } from './blocks.ts';
import { itemSize } from './item-size.ts';
import { totalsKey } from './keys.ts';
import { EMPTY_STATE, type Score, type ScoringModel, type SeriesState } from './model.ts';
import type { Group, Work } from './plan.ts';
import type { ScoreRecord } from './score-store.ts';
import type { StoredSeries } from './state.ts';

/** A block item as read (or as the last commit left it). */
export interface BlockState {
  readonly exists: boolean;
  readonly bits: Bitmap;
  readonly version: number;
  /** Tokens of the transactions that applied positions in it, oldest first. */
  readonly tokens: readonly string[];
}

export const EMPTY_BLOCK: BlockState = { exists: false, bits: Bitmap.empty(), version: 0, tokens: [] };

export function toBlockState(item: Record<string, unknown> | undefined): BlockState {
  if (!item) return EMPTY_BLOCK;
  return {
    exists: true,
    bits: Bitmap.from(item.b as Uint8Array | undefined),
    version: Number(item.v),
    tokens: decodeTokens(item.t as Uint8Array | undefined),
  };
}

/** A block item to write. */
export function blockItem(key: string, state: BlockState): Record<string, unknown> {
  return {
    pk: key,
    kind: 'applied',
    b: state.bits.toBytes(),
    n: state.bits.count,
    v: state.version,
    t: encodeTokens(state.tokens),
  };
}

/** The id item of a signal without a position: the ref that applied it (collisions name it) and the token. */
export function idItem(work: Work, token: string): Record<string, unknown> {
  if (work.key.type !== 'id') throw new Error('a position has no id item');
  const s = work.signal;
  return { pk: work.key.key, kind: 'id', ref: s.origin.ref, id: s.id, source: s.source, tk: token };
}

/** A series item to write. */
export function seriesItem(
  key: string,
  first: Work,
  next: StoredSeries,
  updatedAt: string,
): Record<string, unknown> {
  return {
    pk: key,
    kind: 'series',
    source: first.signal.source,
    name: first.signal.name,
    count: next.count,
    mean: next.mean,
    m2: next.m2,
    anomalies: next.anomalies,
    version: next.version,
    updatedAt,
  };
}

/**
 * A computed number as DynamoDB can keep it: it refuses a magnitude below 1e-130 (a score or an M2 of
 * values that differ in their last digits can be that small), which is 0 to every use of it.
 */
export function storable(x: number): number {
  return Math.abs(x) < 1e-130 ? 0 : x;
}

export interface TransactionContext {
  readonly table: string;
  readonly token: string;
  readonly now: number;
  readonly model: ScoringModel;
  /** Which totals item this transaction adds to. */
  readonly totalsShard: number;
}

/** One transaction attempt, built. */
export interface Built {
  readonly input: TransactWriteCommandInput;
  /** For each item of the transaction, the series it belongs to alone (null: shared by several). */
  readonly itemSeries: readonly (string | null)[];
  readonly records: ScoreRecord[];
  /** What the items will hold once it commits. */
  readonly next: {
    readonly series: ReadonlyMap<string, StoredSeries>;
    readonly blocks: ReadonlyMap<string, BlockState>;
    readonly ids: ReadonlyMap<string, { ref: string; token: string }>;
  };
  readonly counts: { scored: number; anomalies: number; newSeries: number };
  readonly bytes: number;
}

/** One item of a transaction. */
type TransactItem = NonNullable<TransactWriteCommandInput['TransactItems']>[number];

/** The items of a transaction in the order they are added, the series each belongs to alone, and their size. */
class TransactItems {
  readonly items: TransactItem[] = [];
  readonly itemSeries: (string | null)[] = [];
  bytes = 0;

  push(item: TransactItem, of: string | null): void {
    this.items.push(item);
    this.itemSeries.push(of);
    if (item.Put?.Item) this.bytes += itemSize(item.Put.Item);
  }
}

/** What a transaction applies as it is built: block bits on their read state, and id items. */
interface Applying {
  readonly blocks: Map<string, { base: BlockState; bits: Bitmap }>;
  readonly ids: Map<string, { ref: string; token: string }>;
}

/** The running totals of a transaction (`samples`: what the series gain, equal to `scored` when every signal is folded once). */
interface Totals {
  scored: number;
  anomalies: number;
  newSeries: number;
  samples: number;
}

/**
 * The transaction of one group: every signal scored in order against its series' state (its group's
 * earlier values included), the series items (each conditioned on its version, or on not existing), the
 * block items with their new bits and the token (conditioned likewise), an id item per signal without a
 * position (conditioned on not existing), and the totals that `pulse status` reads.
 */
export function buildTransaction(
  group: Group,
  series: ReadonlyMap<string, StoredSeries | undefined>,
  blocks: ReadonlyMap<string, BlockState>,
  ctx: TransactionContext,
): Built {
  const scoredAt = new Date(ctx.now).toISOString();
  const tx = new TransactItems();
  const records: ScoreRecord[] = [];
  const nextSeries = new Map<string, StoredSeries>();
  const applying: Applying = { blocks: new Map(), ids: new Map() };
  const totals: Totals = { scored: 0, anomalies: 0, newSeries: 0, samples: 0 };

  for (const sw of group.series) {
    const first = sw.signals[0];
    if (!first) continue;
    const stored = series.get(sw.series);
    let state: SeriesState = stored ?? EMPTY_STATE;
    let seriesAnomalies = 0;
    for (const w of sw.signals) {
      const score = ctx.model.score(state, w.signal.value);
      state = ctx.model.update(state, w.signal.value);
      if (score.anomaly) seriesAnomalies++;
      records.push(scoreRecord(w, score, state.count - 1, ctx.model.name, scoredAt));
      apply(w, sw.series, blocks, applying, tx, ctx);
      totals.scored++;
    }
    totals.anomalies += seriesAnomalies;
    const next: StoredSeries = {
      count: state.count,
      mean: storable(state.mean),
      m2: storable(state.m2),
      anomalies: (stored?.anomalies ?? 0) + seriesAnomalies,
      version: (stored?.version ?? 0) + 1,
    };
    nextSeries.set(sw.series, next);
    totals.samples += next.count - (stored?.count ?? 0);
    if (!stored) totals.newSeries++;
    tx.push(seriesPut(ctx.table, sw.series, first, next, stored, scoredAt), sw.series);
  }

  const written = new Map<string, BlockState>();
  for (const [key, { base, bits }] of applying.blocks) {
    const next: BlockState = {
      exists: true,
      bits,
      version: base.version + 1,
      tokens: [...base.tokens, ctx.token],
    };
    written.set(key, next);
    tx.push(blockPut(ctx.table, key, next, base), null);
  }
  tx.push(totalsUpdate(ctx.table, ctx.totalsShard, totals), null);

  return {
    input: { TransactItems: tx.items },
    itemSeries: tx.itemSeries,
    records,
    next: { series: nextSeries, blocks: written, ids: applying.ids },
    counts: { scored: totals.scored, anomalies: totals.anomalies, newSeries: totals.newSeries },
    // The totals item is an update: about 100 bytes.
    bytes: tx.bytes + 100,
  };
}

/** The score record of one signal; `samples`: the series' samples before it. */
function scoreRecord(w: Work, score: Score, samples: number, model: string, scoredAt: string): ScoreRecord {
  const s = w.signal;
  return {
    id: s.id,
    kind: s.origin.kind,
    ref: s.origin.ref,
    source: s.source,
    name: s.name,
    value: s.value,
    timestamp: s.timestamp,
    score: score.score === null ? null : storable(score.score),
    anomaly: score.anomaly,
    samples,
    model,
    scoredAt,
  };
}

/** Marks a signal of `series` applied: its position's bit in its block, or its id item (added to the transaction). */
function apply(
  w: Work,
  series: string,
  blocks: ReadonlyMap<string, BlockState>,
  applying: Applying,
  tx: TransactItems,
  ctx: TransactionContext,
): void {
  if (w.key.type === 'position') {
    let b = applying.blocks.get(w.key.blockKey);
    if (!b) {
      const base = blocks.get(w.key.blockKey) ?? EMPTY_BLOCK;
      b = { base, bits: base.bits.clone() };
      applying.blocks.set(w.key.blockKey, b);
    }
    if (!b.bits.set(w.key.bit)) throw new Error(`position ${w.key.blockKey}/${w.key.bit} is applied already`);
    return;
  }
  applying.ids.set(w.key.key, { ref: w.signal.origin.ref, token: ctx.token });
  tx.push(
    {
      Put: {
        TableName: ctx.table,
        Item: idItem(w, ctx.token),
        ConditionExpression: 'attribute_not_exists(pk)',
      },
    },
    series,
  );
}

/** The put of a series item, conditioned on the version read, or on not existing. */
function seriesPut(
  table: string,
  key: string,
  first: Work,
  next: StoredSeries,
  stored: StoredSeries | undefined,
  updatedAt: string,
): TransactItem {
  return {
    Put: {
      TableName: table,
      Item: seriesItem(key, first, next, updatedAt),
      ...(stored
        ? {
            ConditionExpression: '#version = :version',
            ExpressionAttributeNames: { '#version': 'version' },
            ExpressionAttributeValues: { ':version': stored.version },
          }
        : { ConditionExpression: 'attribute_not_exists(pk)' }),
    },
  };
}

/** The put of a block item, conditioned on the version read, or on not existing. */
function blockPut(table: string, key: string, next: BlockState, base: BlockState): TransactItem {
  return {
    Put: {
      TableName: table,
      Item: blockItem(key, next),
      ...(base.exists
        ? {
            ConditionExpression: '#v = :v',
            ExpressionAttributeNames: { '#v': 'v' },
            ExpressionAttributeValues: { ':v': base.version },
          }
        : { ConditionExpression: 'attribute_not_exists(pk)' }),
    },
  };
}

/** The update adding a transaction's totals to its totals item. */
function totalsUpdate(table: string, shard: number, totals: Totals): TransactItem {
  return {
    Update: {
      TableName: table,
      Key: { pk: totalsKey(shard) },
      UpdateExpression:
        'SET #kind = :kind ADD #scored :scored, #samples :samples, #series :series, #anomalies :anomalies',
      ExpressionAttributeNames: {
        '#kind': 'kind',
        '#scored': 'scored',
        '#samples': 'samples',
        '#series': 'series',
        '#anomalies': 'anomalies',
      },
      ExpressionAttributeValues: {
        ':kind': 'totals',
        ':scored': totals.scored,
        ':samples': totals.samples,
        ':series': totals.newSeries,
        ':anomalies': totals.anomalies,
      },
    },
  };
}

/** Why a transaction did not commit, as far as the error says. */
export type Failure =
  /** Cancelled: a condition failed or another transaction held an item. Nothing was written by this call. */
  | { readonly kind: 'conflict' }
  /** Cancelled because DynamoDB refused an item (retrying cannot help): its index in the transaction. */
  | { readonly kind: 'invalid'; readonly index: number; readonly message: string }
  /** Anything else (a 5xx or a timeout after the SDK's retries): it may have committed. */
  | { readonly kind: 'unknown' };

export function classifyFailure(err: unknown): Failure {
  if (
    err instanceof TransactionCanceledException ||
    (err as Error)?.name === 'TransactionCanceledException'
  ) {
    const reasons = (err as TransactionCanceledException).CancellationReasons ?? [];
    const index = reasons.findIndex((r) => r.Code === 'ValidationError');
    if (index >= 0) {
      return { kind: 'invalid', index, message: reasons[index]?.Message ?? 'ValidationError' };
    }
    return { kind: 'conflict' };
  }
  if ((err as Error)?.name === 'TransactionConflictException') return { kind: 'conflict' };
  return { kind: 'unknown' };
}
