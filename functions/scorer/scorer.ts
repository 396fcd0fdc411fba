import { createHash } from 'node:crypto';
import type { S3Client } from '@aws-sdk/client-s3';
import type { DynamoDBDocumentClient } from '@aws-sdk/lib-dynamodb';
import { METRIC } from '#shared/contract.ts';
import { type Logger, type Metrics, MetricUnit } from '#shared/observability.ts';
import { putRejects, type RejectEntry, rejectsKey } from '#shared/quarantine.ts';
import { settings } from '#shared/settings.ts';
import { expandSignals, parseSignal, readSignalMessage, type Signal } from '#shared/signal.ts';
import { type Applied, Applier } from './applier.ts';
import { dedupeKey, seriesKey } from './keys.ts';
import type { ScoringModel } from './model.ts';
import type { SeriesWork, Work } from './plan.ts';

export { seriesKey };

/**
 * Scores the signals of one SQS batch (one or more packed messages), each exactly once (docs/scoring.md).
 * "Applied" is kept by origin position (a bit of a block item per 4,096 rows, offsets or ids of a stream)
 * or, for a signal without one, by an id item; the series states, the blocks and the id items change in
 * one DynamoDB transaction per group of series, and the scores go to S3 in bulk under the transaction's
 * token. Repeats are dropped; concurrent scorers retry on conflict; a message comes back (the partial
 * batch response) only for what could not be committed. Invalid signals, and records whose own id was
 * already scored from another origin, are quarantined, never retried.
 */
export interface ScorerDeps {
  readonly doc: DynamoDBDocumentClient;
  readonly s3: S3Client;
  readonly logger: Logger;
  readonly metrics: Metrics;
  readonly model: ScoringModel;
  readonly config: {
    readonly scoresTable: string;
    readonly scoresBucket: string;
    readonly anomaliesTable: string;
    readonly quarantineBucket: string;
  };
  readonly now?: () => number;
  readonly sleep?: (ms: number) => Promise<void>;
  /** Milliseconds left in the invocation (Lambda's `getRemainingTimeInMillis`); none: no deadline. */
  readonly remainingMs?: () => number;
  /** Overrides of DynamoDB's and the settings' limits, for tests. */
  readonly limits?: Partial<ScorerLimits>;
}

export interface ScorerLimits {
  /** Items a transaction writes besides the totals item. */
  readonly maxItems: number;
  readonly maxBytes: number;
  readonly blockPositions: number;
  readonly maxBlockTokens: number;
  readonly deadlineMarginMs: number;
}

export const DEFAULT_LIMITS: ScorerLimits = {
  // DynamoDB: 100 items and 4 MB a transaction; one item is the totals.
  maxItems: 99,
  maxBytes: 4_000_000,
  blockPositions: settings.scoring.blockPositions,
  maxBlockTokens: settings.scoring.maxBlockTokens,
  deadlineMarginMs: settings.scoring.deadlineMarginSeconds * 1000,
};

/** One SQS message of the batch. */
export interface InboundMessage {
  readonly messageId: string;
  readonly body: string;
}

export interface BatchResult {
  scored: number;
  duplicates: number;
  rejected: number;
  anomalies: number;
  conflicts: number;
  /** Records whose own id was already scored from another origin (quarantined). */
  collisions: number;
  /** Transactions committed. */
  transactions: number;
  /** Pending score objects promoted for a transaction whose scorer died after committing. */
  recovered: number;
  /**
   * Messages that must be delivered again, with why: a signal of theirs could not be committed, its
   * scores could not be written, or their rejects could not be quarantined. What was committed stays
   * committed; on redelivery it is found applied and dropped (and its scores recovered if need be).
   */
  readonly failures: Map<string, unknown>;
}

/** Scores the signals of all `messages` together; never throws for one message's sake. */
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
    collisions: 0,
    transactions: 0,
    recovered: 0,
    failures: new Map(),
  };
  const limits = { ...DEFAULT_LIMITS, ...deps.limits };

  const parsed: ReadMessage[] = messages.map((m) => ({ ...m, ...readMessage(m.messageId, m.body) }));
  await quarantineInvalid(parsed, result, deps);
  const { series, inBatchCollisions } = collectWork(parsed, result, limits.blockPositions);
  const applier = new Applier(deps, limits);
  let applied: Applied;
  try {
    applied = await applier.apply(series);
  } catch (err) {
    // Nothing could be decided (the state could not be read): every message with signals comes back.
    deps.logger.warn('Batch could not be scored; its messages will be delivered again', {
      error: (err as Error).message,
    });
    for (const p of parsed) if (p.valid.length > 0) failMessage(result, p.messageId, err);
    emitMetrics(deps.metrics, result, 0);
    return result;
  }

  result.scored += applied.scored;
  result.duplicates += applied.duplicates;
  result.anomalies += applied.anomalies;
  result.conflicts += applied.conflicts;
  result.transactions += applied.transactions;
  result.recovered += applied.recovered;
  for (const [work, err] of applied.failed) {
    for (const id of work.messageIds) failMessage(result, id, err);
  }
  await quarantineCollisions(parsed, applied, inBatchCollisions, result, deps);

  emitMetrics(deps.metrics, result, applied.latencySum);
  return result;
}

/** One message of the batch, read. */
interface ReadMessage extends InboundMessage {
  readonly valid: Signal[];
  readonly rejects: RejectEntry[];
  readonly rejectKinds: string[];
}

/** A record whose own id another record of the batch, from another origin, brought first. */
interface InBatchCollision {
  readonly work: Work;
  readonly winner: Work;
}

/** Marks a message to be delivered again, for the first reason found. */
function failMessage(result: BatchResult, messageId: string, err: unknown): void {
  if (!result.failures.has(messageId)) result.failures.set(messageId, err);
}

/** Quarantines the invalid signals of each message; one whose rejects cannot be written comes back. */
async function quarantineInvalid(
  parsed: readonly ReadMessage[],
  result: BatchResult,
  deps: ScorerDeps,
): Promise<void> {
  await Promise.all(
    parsed
      .filter((p) => p.rejects.length > 0)
      .map(async (p) => {
        try {
          await quarantine(p.messageId, p.body, p.rejects, p.rejectKinds, deps, '');
          result.rejected += p.rejects.length;
        } catch (err) {
          result.failures.set(p.messageId, err);
        }
      }),
  );
}

/**
 * One work per signal, by series in the order they come; a repeat in the batch is dropped (counted a
 * duplicate), its message joining the first's, and a record bringing an id another origin brought first
 * is set aside as a collision.
 */
function collectWork(
  parsed: readonly ReadMessage[],
  result: BatchResult,
  blockPositions: number,
): { series: SeriesWork[]; inBatchCollisions: InBatchCollision[] } {
  const byIdentity = new Map<string, Work>();
  const bySeries = new Map<string, Work[]>();
  const inBatchCollisions: InBatchCollision[] = [];
  for (const p of parsed) {
    // A message whose rejects could not be quarantined comes back whole; its signals are scored then.
    if (result.failures.has(p.messageId)) continue;
    for (const signal of p.valid) {
      const key = dedupeKey(signal, blockPositions);
      const identity = key.type === 'position' ? `${key.blockKey}/${key.bit}` : key.key;
      const work: Work = {
        signal,
        key,
        series: seriesKey(signal.source, signal.name),
        messageIds: new Set([p.messageId]),
      };
      const seen = byIdentity.get(identity);
      if (seen) {
        if (seen.signal.origin.ref === signal.origin.ref) {
          result.duplicates++;
          seen.messageIds.add(p.messageId);
        } else {
          inBatchCollisions.push({ work, winner: seen });
        }
        continue;
      }
      byIdentity.set(identity, work);
      let list = bySeries.get(work.series);
      if (!list) {
        list = [];
        bySeries.set(work.series, list);
      }
      list.push(work);
    }
  }
  const series = [...bySeries].map(([key, signals]) => ({ series: key, signals }));
  return { series, inBatchCollisions };
}

/**
 * Collisions: records whose own id was scored from another origin, quarantined by message. One found in
 * this batch is decided only once the signal it collided with is committed (else its message comes back
 * with the other's).
 */
async function quarantineCollisions(
  parsed: readonly ReadMessage[],
  applied: Applied,
  inBatchCollisions: readonly InBatchCollision[],
  result: BatchResult,
  deps: ScorerDeps,
): Promise<void> {
  const collisions = [
    ...applied.collisions,
    ...inBatchCollisions.flatMap(({ work, winner }) => {
      if (!applied.committed.has(winner)) {
        for (const id of work.messageIds)
          failMessage(result, id, applied.failed.get(winner) ?? 'not committed');
        return [];
      }
      return [{ work, scoredFrom: winner.signal.origin.ref }];
    }),
  ];
  const byMessage = new Map<string, RejectEntry[]>();
  for (const { work, scoredFrom } of collisions) {
    const s = work.signal;
    const entry: RejectEntry = {
      ref: s.origin.ref,
      reason: `id ${JSON.stringify(s.id)} of source ${JSON.stringify(s.source)} was already scored from ${scoredFrom}; this record (${s.origin.ref}) is not scored`,
      record: s,
    };
    for (const id of work.messageIds) {
      const list = byMessage.get(id) ?? [];
      list.push(entry);
      byMessage.set(id, list);
    }
  }
  await Promise.all(
    [...byMessage].map(async ([messageId, rejects]) => {
      const body = parsed.find((p) => p.messageId === messageId)?.body ?? messageId;
      try {
        const kinds = rejects.map(() => 'id:collision');
        await quarantine(messageId, body, rejects, kinds, deps, '-collisions');
        result.collisions += rejects.length;
      } catch (err) {
        failMessage(result, messageId, err);
      }
    }),
  );
}

function emitMetrics(m: Metrics, result: BatchResult, latencySum: number): void {
  m.addMetric(METRIC.signalsScored, MetricUnit.Count, result.scored);
  m.addMetric(METRIC.signalsDuplicate, MetricUnit.Count, result.duplicates);
  m.addMetric(METRIC.signalsRejected, MetricUnit.Count, result.rejected);
  m.addMetric(METRIC.anomalies, MetricUnit.Count, result.anomalies);
  if (result.conflicts) m.addMetric(METRIC.seriesConflicts, MetricUnit.Count, result.conflicts);
  if (result.collisions) m.addMetric(METRIC.idCollisions, MetricUnit.Count, result.collisions);
  if (result.recovered) m.addMetric(METRIC.scoresRecovered, MetricUnit.Count, result.recovered);
  if (result.scored) m.addMetric(METRIC.scoringLatency, MetricUnit.Milliseconds, latencySum / result.scored);
}

/**
 * The valid signals of one message body, and the rejects (with reasons) of the rest; `rejectKinds` says what
 * kind of reason each reject has (a schema field and check, or the message's fault), for the log, which must
 * not quote the reasons: they may hold record values.
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
 * Writes a message's rejects to `rejects/scorer/<day>/<digest of the body><suffix>`: the same message
 * delivered again, or redriven from the DLQ with a new message id, overwrites its own object the same day
 * instead of adding a second copy of its rejects.
 */
async function quarantine(
  messageId: string,
  body: string,
  rejects: RejectEntry[],
  kinds: readonly string[],
  deps: ScorerDeps,
  suffix: string,
): Promise<void> {
  const day = new Date((deps.now ?? Date.now)()).toISOString().slice(0, 10);
  const digest = createHash('sha256').update(body).digest('hex').slice(0, 32);
  const key = rejectsKey('scorer', `${day}/${digest}${suffix}`);
  await putRejects(deps.s3, deps.config.quarantineBucket, key, rejects);
  // The reasons stay in the quarantine: they may quote record values, which logs must not hold.
  const reasons: Record<string, number> = {};
  for (const kind of kinds) reasons[kind] = (reasons[kind] ?? 0) + 1;
  deps.logger.warn(
    suffix ? 'Quarantined records whose id was scored from another origin' : 'Quarantined invalid signals',
    { messageId, rejected: rejects.length, reasons, rejectsKey: key },
  );
}
