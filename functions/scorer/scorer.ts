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
import { TransientError } from '../../shared/errors.ts';
import { type Logger, METRIC, type Metrics, MetricUnit } from '../../shared/observability.ts';
import { putRejects, type RejectEntry, rejectsKey } from '../../shared/quarantine.ts';
import { settings } from '../../shared/settings.ts';
import { parseSignal, type Signal, SignalMessageSchema } from '../../shared/signal.ts';
import { EMPTY_STATE, type ScoringModel, type SeriesState } from './model.ts';

/**
 * Scores the signals of one packed message, each exactly once: a score item per signal id, written
 * only if absent, in the same DynamoDB transaction as the series state it changes, which is written
 * only if its version has not moved. Repeats are dropped; concurrent scorers retry on conflict and so
 * never lose an update. Invalid signals are quarantined, never retried.
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

/** Items per transaction: DynamoDB allows 100; one is the series. */
const CHUNK = 99;
const SERIES_PARALLELISM = 4;

/** Keys longer than this many bytes are hashed (DynamoDB allows 2048 for a partition key). */
const MAX_KEY_BYTES = 1024;
function boundedKey(prefix: string, raw: string): string {
  const key = `${prefix}${raw}`;
  if (Buffer.byteLength(key) <= MAX_KEY_BYTES) return key;
  return `${prefix}sha256:${createHash('sha256').update(raw).digest('hex')}`;
}
export const scoreKey = (id: string) => boundedKey('score#', id);
export const seriesKey = (source: string, name: string) =>
  boundedKey('series#', JSON.stringify([source, name]));

interface StoredSeries extends SeriesState {
  readonly version: number;
  readonly anomalies: number;
}

export async function scoreMessage(
  messageId: string,
  body: string,
  deps: ScorerDeps,
): Promise<MessageResult> {
  const now = deps.now ?? Date.now;
  const result: MessageResult = { scored: 0, duplicates: 0, rejected: 0, anomalies: 0, conflicts: 0 };
  const rejects: RejectEntry[] = [];
  const valid: Signal[] = [];

  let json: unknown;
  try {
    json = JSON.parse(body);
  } catch (err) {
    rejects.push({
      ref: `sqs:${messageId}`,
      reason: `message is not JSON: ${(err as Error).message}`,
      raw: body,
    });
  }
  if (json !== undefined) {
    const envelope = SignalMessageSchema.safeParse(json);
    if (!envelope.success) {
      rejects.push({
        ref: `sqs:${messageId}`,
        reason: `message is not a signal batch: ${envelope.error.issues.map((i) => `${i.path.join('.')}: ${i.message}`).join('; ')}`,
        record: json,
      });
    } else {
      envelope.data.signals.forEach((s, i) => {
        const parsed = parseSignal(s);
        if (parsed.ok) valid.push(parsed.signal);
        else {
          const ref =
            typeof (s as { id?: unknown })?.id === 'string'
              ? (s as { id: string }).id
              : `sqs:${messageId}#${i}`;
          rejects.push({ ref, reason: parsed.reason, record: s });
        }
      });
    }
  }

  if (rejects.length) {
    const day = new Date(now()).toISOString().slice(0, 10);
    await putRejects(
      deps.s3,
      deps.config.quarantineBucket,
      rejectsKey('scorer', `${day}/${messageId}`),
      rejects,
    );
    result.rejected = rejects.length;
    deps.logger.warn('Quarantined invalid signals', {
      rejected: rejects.length,
      firstReason: rejects[0]?.reason,
    });
  }

  // One series at a time per series; a few series side by side.
  const bySeries = new Map<string, Signal[]>();
  const seen = new Set<string>();
  for (const s of valid) {
    if (seen.has(s.id)) {
      result.duplicates++;
      continue;
    }
    seen.add(s.id);
    const key = seriesKey(s.source, s.name);
    const list = bySeries.get(key);
    if (list) list.push(s);
    else bySeries.set(key, [s]);
  }
  const queue = [...bySeries.entries()];
  let latencySum = 0;
  const worker = async () => {
    for (let next = queue.shift(); next; next = queue.shift()) {
      const r = await scoreSeries(next[0], next[1], deps);
      result.scored += r.scored;
      result.duplicates += r.duplicates;
      result.anomalies += r.anomalies;
      result.conflicts += r.conflicts;
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

async function scoreSeries(
  key: string,
  signals: Signal[],
  deps: ScorerDeps,
): Promise<{ scored: number; duplicates: number; anomalies: number; conflicts: number; latencySum: number }> {
  const now = deps.now ?? Date.now;
  const sleep = deps.sleep ?? ((ms: number) => new Promise((r) => setTimeout(r, ms)));
  const out = { scored: 0, duplicates: 0, anomalies: 0, conflicts: 0, latencySum: 0 };
  const table = deps.config.scoresTable;

  // Cheap reads first: a redelivered message finds its signals already scored.
  const already = await existingScores(
    deps.doc,
    table,
    signals.map((s) => s.id),
  );
  let pending = signals.filter((s) => !already.has(s.id));
  out.duplicates += signals.length - pending.length;

  while (pending.length > 0) {
    const chunk = pending.slice(0, CHUNK);
    const stored = await getSeries(deps.doc, table, key);
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
            score: score.score,
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
    const seriesItem = {
      pk: key,
      kind: 'series',
      source: first.source,
      name: first.name,
      count: state.count,
      mean: state.mean,
      m2: state.m2,
      anomalies: (stored?.anomalies ?? 0) + anomalies,
      version: version + 1,
      updatedAt: iso,
    };
    const seriesPut = {
      Put: {
        TableName: table,
        Item: seriesItem,
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
      pending = pending.slice(chunk.length);
      out.scored += chunk.length;
      out.anomalies += anomalies;
      for (const s of chunk) out.latencySum += Math.max(0, scoredAt - Date.parse(s.timestamp));
      continue;
    } catch (err) {
      if (
        !(err instanceof TransactionCanceledException) &&
        (err as Error).name !== 'TransactionConflictException'
      ) {
        throw err;
      }
    }
    // Cancelled: some signals were scored meanwhile (drop them), or the series moved (re-read it), or both.
    out.conflicts++;
    if (out.conflicts > settings.scoring.maxSeriesConflicts) {
      throw new TransientError(`series ${key} kept changing under us (${out.conflicts} conflicts)`);
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
    await sleep(Math.random() * 20 * Math.min(out.conflicts, 10));
  }
  return out;
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

/** Which of these signal ids already have a score item. */
async function existingScores(
  doc: DynamoDBDocumentClient,
  table: string,
  ids: string[],
): Promise<Set<string>> {
  const found = new Set<string>();
  for (let i = 0; i < ids.length; i += 100) {
    let keys: Record<string, unknown>[] | undefined = ids
      .slice(i, i + 100)
      .map((id) => ({ pk: scoreKey(id) }));
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
  return found;
}
