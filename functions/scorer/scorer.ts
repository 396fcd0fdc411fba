import { createHash } from 'node:crypto';
import { TransactionCanceledException } from '@aws-sdk/client-dynamodb';
import type { S3Client } from '@aws-sdk/client-s3';
import {
  BatchGetCommand,
  type DynamoDBDocumentClient,
  GetCommand,
  TransactWriteCommand,
  type TransactWriteCommandInput,
} from '@aws-sdk/lib-dynamodb';
import { PermanentError, TransientError } from '../../shared/errors.ts';
import { type Logger, METRIC, type Metrics, MetricUnit } from '../../shared/observability.ts';
import { putRejects, type RejectEntry, rejectsKey } from '../../shared/quarantine.ts';
import { settings } from '../../shared/settings.ts';
import { expandSignals, parseSignal, readSignalMessage, type Signal } from '../../shared/signal.ts';
import { EMPTY_STATE, type ScoringModel, type SeriesState } from './model.ts';

/**
 * Scores the signals of one SQS batch (one or more packed messages), each exactly once: a score item
 * per signal id, written only if absent, in the same DynamoDB transaction as the series state it
 * changes, which is written only if its version has not moved. The batch's signals are grouped by
 * series across all its messages, so a series costs one state write per transaction (up to 99 score
 * items), not one per message or per signal. Repeats are dropped; concurrent scorers retry on conflict
 * and so never lose an update. Invalid signals are quarantined, never retried.
 */
export interface ScorerDeps {
  readonly doc: DynamoDBDocumentClient;
  readonly s3: S3Client;
  readonly logger: Logger;
  readonly metrics: Metrics;
  readonly model: ScoringModel;
  readonly config: {
    readonly scoresTable: string;
    readonly quarantineBucket: string;
    readonly scoreTtlDays: number;
  };
  readonly now?: () => number;
  readonly sleep?: (ms: number) => Promise<void>;
}

export interface MessageResult {
  scored: number;
  duplicates: number;
  rejected: number;
  anomalies: number;
  conflicts: number;
}

/** One SQS message of the batch. */
export interface InboundMessage {
  readonly messageId: string;
  readonly body: string;
}

export interface BatchResult extends MessageResult {
  /** Series state writes: one per transaction. */
  seriesWrites: number;
  /**
   * Messages that must be delivered again, with why: a series they carry a signal of could not be
   * written (or their rejects could not be quarantined). What was committed before stays committed;
   * on redelivery it is found scored and dropped.
   */
  readonly failures: Map<string, unknown>;
}

/** Items per transaction: DynamoDB allows 100; one is the series. */
const CHUNK = 99;
const SERIES_PARALLELISM = 4;
/** BatchGetItem calls in flight while looking for already scored signals. */
const LOOKUP_PARALLELISM = 4;

/** Keys longer than this many bytes are hashed (DynamoDB allows 2048 for a partition key). */
const MAX_KEY_BYTES = 1024;
/**
 * `<kind>#<raw>`, or `<kind>-sha256#<hex>` when that is too long: a hashed key has a prefix of its own,
 * so that no raw id (which may read `sha256:…`) can take the key of another one.
 */
function boundedKey(kind: 'score' | 'series', raw: string): string {
  const key = `${kind}#${raw}`;
  if (Buffer.byteLength(key) <= MAX_KEY_BYTES) return key;
  return `${kind}-sha256#${createHash('sha256').update(raw).digest('hex')}`;
}
export const scoreKey = (id: string) => boundedKey('score', id);
export const seriesKey = (source: string, name: string) =>
  boundedKey('series', JSON.stringify([source, name]));

/**
 * A computed number as DynamoDB can keep it: it refuses a magnitude below 1e-130 (a score or an M2 of
 * values that differ in their last digits can be that small), which is 0 to every use of it.
 */
function storable(x: number): number {
  return Math.abs(x) < 1e-130 ? 0 : x;
}

interface StoredSeries extends SeriesState {
  readonly version: number;
  readonly anomalies: number;
}

/** The signals of one series in this batch, and the messages that carried them. */
interface SeriesWork {
  readonly key: string;
  readonly signals: Signal[];
  readonly messageIds: Set<string>;
}

/**
 * Scores one message on its own: a batch of one. Throws what made the message fail, so that a caller
 * handling messages one by one gets it redelivered.
 */
export async function scoreMessage(
  messageId: string,
  body: string,
  deps: ScorerDeps,
): Promise<MessageResult> {
  const batch = await scoreBatch([{ messageId, body }], deps);
  if (batch.failures.has(messageId)) throw batch.failures.get(messageId);
  const { scored, duplicates, rejected, anomalies, conflicts } = batch;
  return { scored, duplicates, rejected, anomalies, conflicts };
}

/**
 * Scores the signals of all `messages` together. Never throws for one message's sake: a message that
 * must come back is in `failures`. It throws only when nothing could be decided (the lookup of already
 * scored signals failed), and then every message should come back.
 */
export async function scoreBatch(
  messages: readonly InboundMessage[],
  deps: ScorerDeps,
): Promise<BatchResult> {
  const result: BatchResult = {
    scored: 0,
    duplicates: 0,
    rejected: 0,
    anomalies: 0,
    conflicts: 0,
    seriesWrites: 0,
    failures: new Map(),
  };

  const parsed = messages.map((m) => ({
    messageId: m.messageId,
    body: m.body,
    ...readMessage(m.messageId, m.body),
  }));
  await Promise.all(
    parsed
      .filter((p) => p.rejects.length > 0)
      .map(async (p) => {
        try {
          await quarantine(p.messageId, p.body, p.rejects, p.rejectKinds, deps);
          result.rejected += p.rejects.length;
        } catch (err) {
          result.failures.set(p.messageId, err);
        }
      }),
  );

  // Group by series across the batch; a signal id seen twice is scored once.
  const bySeries = new Map<string, SeriesWork>();
  const seriesOfId = new Map<string, SeriesWork>();
  for (const p of parsed) {
    // A message whose rejects could not be quarantined comes back whole; its signals are scored then.
    if (result.failures.has(p.messageId)) continue;
    for (const s of p.valid) {
      const seen = seriesOfId.get(s.id);
      if (seen) {
        result.duplicates++;
        seen.messageIds.add(p.messageId);
        continue;
      }
      const key = seriesKey(s.source, s.name);
      let work = bySeries.get(key);
      if (!work) {
        work = { key, signals: [], messageIds: new Set() };
        bySeries.set(key, work);
      }
      work.signals.push(s);
      work.messageIds.add(p.messageId);
      seriesOfId.set(s.id, work);
    }
  }

  // Cheap reads first: a redelivered message finds its signals already scored.
  const already = await existingScores(deps.doc, deps.config.scoresTable, [...seriesOfId.keys()]);
  const queue: SeriesWork[] = [];
  for (const work of bySeries.values()) {
    const pending = work.signals.filter((s) => !already.has(s.id));
    result.duplicates += work.signals.length - pending.length;
    if (pending.length > 0) queue.push({ ...work, signals: pending });
  }

  let latencySum = 0;
  const worker = async () => {
    for (let next = queue.shift(); next; next = queue.shift()) {
      const work = next;
      const r = emptySeriesResult();
      try {
        await scoreSeries(work.key, work.signals, deps, r);
      } catch (err) {
        for (const id of work.messageIds) if (!result.failures.has(id)) result.failures.set(id, err);
        deps.logger.warn('Series could not be scored; its messages will be redelivered', {
          series: work.key,
          messages: work.messageIds.size,
          error: (err as Error).message,
        });
      }
      // What was committed counts, even when a later chunk of the series failed.
      result.scored += r.scored;
      result.duplicates += r.duplicates;
      result.anomalies += r.anomalies;
      result.conflicts += r.conflicts;
      result.seriesWrites += r.seriesWrites;
      latencySum += r.latencySum;
    }
  };
  await Promise.all(Array.from({ length: Math.min(SERIES_PARALLELISM, queue.length) }, worker));

  const m = deps.metrics;
  m.addMetric(METRIC.signalsScored, MetricUnit.Count, result.scored);
  m.addMetric(METRIC.signalsDuplicate, MetricUnit.Count, result.duplicates);
  m.addMetric(METRIC.signalsRejected, MetricUnit.Count, result.rejected);
  m.addMetric(METRIC.anomalies, MetricUnit.Count, result.anomalies);
  if (result.conflicts) m.addMetric(METRIC.seriesConflicts, MetricUnit.Count, result.conflicts);
  if (result.scored) m.addMetric(METRIC.scoringLatency, MetricUnit.Milliseconds, latencySum / result.scored);
  return result;
}

/**
 * The valid signals of one message body, and the rejects (with reasons) of the rest; `rejectKinds` says
 * of each reject what was wrong in words that quote nothing of it (for the log: reasons may quote values).
 */
function readMessage(
  messageId: string,
  body: string,
): { valid: Signal[]; rejects: RejectEntry[]; rejectKinds: string[] } {
  const valid: Signal[] = [];
  const rejects: RejectEntry[] = [];
  const rejectKinds: string[] = [];
  const read = readSignalMessage(body);
  if (!read.ok) {
    rejects.push({
      ref: `sqs:${messageId}`,
      reason: read.reason,
      ...(read.json === undefined ? { raw: body } : { record: read.json }),
    });
    rejectKinds.push(`message:${read.kind}`);
    return { valid, rejects, rejectKinds };
  }
  expandSignals(read.message).forEach((s, i) => {
    const parsed = parseSignal(s);
    if (parsed.ok) valid.push(parsed.signal);
    else {
      const ref =
        typeof (s as { id?: unknown })?.id === 'string' ? (s as { id: string }).id : `sqs:${messageId}#${i}`;
      rejects.push({ ref, reason: parsed.reason, record: s });
      rejectKinds.push(parsed.kind);
    }
  });
  return { valid, rejects, rejectKinds };
}

/**
 * Writes a message's rejects to `rejects/scorer/<day>/<digest of the body>`: the same message delivered
 * again, or redriven from the DLQ with a new message id, overwrites its own object the same day instead of
 * adding a second copy of its rejects.
 */
async function quarantine(
  messageId: string,
  body: string,
  rejects: RejectEntry[],
  kinds: readonly string[],
  deps: ScorerDeps,
): Promise<void> {
  const day = new Date((deps.now ?? Date.now)()).toISOString().slice(0, 10);
  const digest = createHash('sha256').update(body).digest('hex').slice(0, 32);
  const key = rejectsKey('scorer', `${day}/${digest}`);
  await putRejects(deps.s3, deps.config.quarantineBucket, key, rejects);
  // The reasons stay in the quarantine: they may quote record values, which logs must not hold.
  const reasons: Record<string, number> = {};
  for (const kind of kinds) reasons[kind] = (reasons[kind] ?? 0) + 1;
  deps.logger.warn('Quarantined invalid signals', {
    messageId,
    rejected: rejects.length,
    reasons,
    rejectsKey: key,
  });
}

interface SeriesResult {
  scored: number;
  duplicates: number;
  anomalies: number;
  conflicts: number;
  seriesWrites: number;
  latencySum: number;
}

const emptySeriesResult = (): SeriesResult => ({
  scored: 0,
  duplicates: 0,
  anomalies: 0,
  conflicts: 0,
  seriesWrites: 0,
  latencySum: 0,
});

/**
 * Writes the batch's signals of one series, up to 99 per transaction, each transaction with one
 * conditional write of the series state. The state is read once; after a committed transaction the
 * state it wrote is the one the next chunk starts from, and it is read again only after a conflict.
 * Progress is kept in `out` as it is committed, so a caller sees it even when a later chunk fails.
 */
async function scoreSeries(
  key: string,
  signals: Signal[],
  deps: ScorerDeps,
  out: SeriesResult,
): Promise<void> {
  const now = deps.now ?? Date.now;
  const sleep = deps.sleep ?? ((ms: number) => new Promise((r) => setTimeout(r, ms)));
  const table = deps.config.scoresTable;

  let stored = await getSeries(deps.doc, table, key);
  let pending = signals;
  let conflicts = 0;
  while (pending.length > 0) {
    const chunk = pending.slice(0, CHUNK);
    // Each signal is scored against the state of every value before it, its chunk's included: folding
    // the chunk's values one by one into the stored state gives the merged state written below.
    let state: SeriesState = stored ?? EMPTY_STATE;
    const scoredAt = now();
    const iso = new Date(scoredAt).toISOString();
    const expiresAt = Math.floor(scoredAt / 1000) + deps.config.scoreTtlDays * 86_400;
    let anomalies = 0;
    const puts: NonNullable<TransactWriteCommandInput['TransactItems']> = chunk.map((s) => {
      const score = deps.model.score(state, s.value);
      state = deps.model.update(state, s.value);
      if (score.anomaly) anomalies++;
      return {
        Put: {
          TableName: table,
          Item: {
            pk: scoreKey(s.id),
            kind: 'score',
            id: s.id,
            name: s.name,
            source: s.source,
            value: s.value,
            timestamp: s.timestamp,
            score: score.score === null ? null : storable(score.score),
            anomaly: score.anomaly,
            model: deps.model.name,
            samples: state.count - 1,
            originRef: s.origin.ref,
            scoredAt: iso,
            expiresAt,
          },
          ConditionExpression: 'attribute_not_exists(pk)',
        },
      };
    });
    const first = chunk[0] as Signal;
    const version = stored?.version ?? 0;
    const next: StoredSeries = {
      count: state.count,
      mean: storable(state.mean),
      m2: storable(state.m2),
      anomalies: (stored?.anomalies ?? 0) + anomalies,
      version: version + 1,
    };
    const seriesPut = {
      Put: {
        TableName: table,
        Item: { pk: key, kind: 'series', source: first.source, name: first.name, ...next, updatedAt: iso },
        ConditionExpression: stored ? '#version = :version' : 'attribute_not_exists(pk)',
        ...(stored
          ? {
              ExpressionAttributeNames: { '#version': 'version' },
              ExpressionAttributeValues: { ':version': version },
            }
          : {}),
      },
    };
    try {
      await deps.doc.send(new TransactWriteCommand({ TransactItems: [...puts, seriesPut] }));
      stored = next;
      pending = pending.slice(chunk.length);
      out.scored += chunk.length;
      out.anomalies += anomalies;
      out.seriesWrites++;
      for (const s of chunk) out.latencySum += Math.max(0, scoredAt - Date.parse(s.timestamp));
      continue;
    } catch (err) {
      if (
        !(err instanceof TransactionCanceledException) &&
        (err as Error).name !== 'TransactionConflictException'
      ) {
        throw err;
      }
      const invalid = (err as TransactionCanceledException).CancellationReasons?.find(
        (r) => r.Code === 'ValidationError',
      );
      if (invalid) {
        // Not a conflict: retrying would be refused the same way.
        throw new PermanentError(
          `series ${key}: DynamoDB refused the write: ${invalid.Message ?? 'ValidationError'}`,
        );
      }
    }
    // Cancelled: some signals were scored meanwhile (drop them), or the series moved (re-read it), or both.
    conflicts++;
    out.conflicts++;
    if (conflicts > settings.scoring.maxSeriesConflicts) {
      throw new TransientError(`series ${key} kept changing under us (${conflicts} conflicts)`);
    }
    const nowScored = await existingScores(
      deps.doc,
      table,
      chunk.map((s) => s.id),
    );
    if (nowScored.size) {
      pending = pending.filter((s) => !nowScored.has(s.id));
      out.duplicates += nowScored.size;
    }
    stored = await getSeries(deps.doc, table, key);
    await sleep(Math.random() * 20 * Math.min(conflicts, 10));
  }
}

async function getSeries(
  doc: DynamoDBDocumentClient,
  table: string,
  key: string,
): Promise<StoredSeries | undefined> {
  const out = await doc.send(new GetCommand({ TableName: table, Key: { pk: key }, ConsistentRead: true }));
  if (!out.Item) return undefined;
  const i = out.Item;
  return {
    count: Number(i.count),
    mean: Number(i.mean),
    m2: Number(i.m2),
    version: Number(i.version),
    anomalies: Number(i.anomalies ?? 0),
  };
}

/** Which of these signal ids already have a score item (BatchGetItem, 100 keys a call, a few in flight). */
async function existingScores(
  doc: DynamoDBDocumentClient,
  table: string,
  ids: string[],
): Promise<Set<string>> {
  const found = new Set<string>();
  const groups: string[][] = [];
  for (let i = 0; i < ids.length; i += 100) groups.push(ids.slice(i, i + 100));
  const lookup = async () => {
    for (let group = groups.shift(); group; group = groups.shift()) {
      let keys: Record<string, unknown>[] | undefined = group.map((id) => ({ pk: scoreKey(id) }));
      for (let round = 0; keys && keys.length > 0; round++) {
        const out = await doc.send(
          new BatchGetCommand({
            RequestItems: { [table]: { Keys: keys, ProjectionExpression: 'id', ConsistentRead: true } },
          }),
        );
        for (const item of out.Responses?.[table] ?? []) found.add(String(item.id));
        keys = out.UnprocessedKeys?.[table]?.Keys as Record<string, unknown>[] | undefined;
        if (keys?.length && round > 8) throw new TransientError('BatchGetItem kept leaving keys unprocessed');
        if (keys?.length) await new Promise((r) => setTimeout(r, 20 * 2 ** round));
      }
    }
  };
  await Promise.all(Array.from({ length: Math.min(LOOKUP_PARALLELISM, groups.length) }, lookup));
  return found;
}
