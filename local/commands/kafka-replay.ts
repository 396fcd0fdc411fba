/**
 * `pulse kafka replay`: feeds the Kafka batches the event source discarded (the objects of the Kafka
 * failures bucket, each the invocation record plus the whole event as `payload`) back through the
 * kafka-consumer, offline or on a deployed stack. A replayed record keeps its id
 * (`kafka:<topic>:<partition>:<offset>`), so a record the consumer had sent before the batch failed is
 * dropped by the scorer as a repeat: each record is scored once however often it is replayed.
 *
 * Each object's outcome is recorded in the ledger table, `kafka-failure#<key>` / `<etag>`, with
 * `replayStatus` REPLAYED or FAILED (the error, the attempts): a second replay skips what was replayed,
 * retries what failed, and `--dry-run` lists all three. The bucket itself is left as Lambda wrote it (its
 * lifecycle expires the objects), so the bucket's notices and its alarm are not disturbed; the notices
 * of replayed objects are deleted from the notices queue, which clears the alarm once all are replayed.
 */

import { GetObjectCommand, ListObjectsV2Command } from '@aws-sdk/client-s3';
import { DeleteMessageCommand, ReceiveMessageCommand } from '@aws-sdk/client-sqs';
import { UpdateCommand } from '@aws-sdk/lib-dynamodb';
import * as z from 'zod';
import { batchGetAll } from '#shared/dynamo-batch.ts';
import { settings } from '#shared/settings.ts';
import {
  describeOffsetRanges,
  type KafkaEvent,
  parseKafkaEvent,
} from '../../functions/kafka-consumer/events.ts';
import { OPERATOR_LOOKUP_RETRY } from './operations.ts';
import type { Target } from './target.ts';

/** Runs the kafka-consumer on one stored event: the deployed function, or the handler offline. */
export interface ReplayInvoker {
  /** `payload` is the stored event's JSON text, as Lambda wrote it; `event` the same, parsed. */
  invoke(payload: string, event: KafkaEvent): Promise<{ ok: true } | { ok: false; error: string }>;
}

export type ReplayStatus = 'pending' | 'replayed' | 'failed';

/** One object of the failures bucket and what replay has made of it. */
export interface KafkaFailureEntry {
  readonly key: string;
  readonly etag: string;
  readonly size: number;
  readonly lastModified: string;
  readonly status: ReplayStatus;
  /** Replays tried so far. */
  readonly attempts: number;
  /** `topic-partition@first-last, …` once read. */
  readonly ranges?: string;
  readonly records?: number;
  /** Why the last replay failed. */
  readonly error?: string;
  readonly replayedAt?: string;
}

export interface ReplayResult {
  readonly entries: readonly KafkaFailureEntry[];
  readonly replayed: number;
  /** Objects whose replay failed this time, with the reason (they stay pending for the next replay). */
  readonly failed: readonly { readonly key: string; readonly error: string }[];
  /** Replayed before this run (skipped). */
  readonly skipped: number;
  /** Notices deleted from the notices queue (objects now replayed, or no longer in the bucket). */
  readonly noticesDeleted: number;
}

/** The S3 destination's object, as Lambda documents it; only what replay reads is checked. */
const FailureObjectSchema = z
  .object({
    requestContext: z.object({ condition: z.string() }).loose(),
    KafkaBatchInfo: z.object({ batchSize: z.number() }).loose(),
    payload: z.string().optional(),
  })
  .loose();

/** The ledger item recording the replay of one failure object. */
function replayKey(key: string, etag: string) {
  return { pk: `${settings.kafka.failures.replayKeyPrefix}${key}`, sk: etag };
}

type ReplayItem = {
  pk: string;
  sk: string;
  replayStatus?: 'REPLAYED' | 'FAILED';
  attempts?: number;
  ranges?: string;
  records?: number;
  lastError?: string;
  replayedAt?: string;
};

/** Every object of the failures bucket, oldest first, with its replay status from the ledger. */
export async function listKafkaFailures(target: Target): Promise<KafkaFailureEntry[]> {
  const objects: { key: string; etag: string; size: number; lastModified: string }[] = [];
  let token: string | undefined;
  do {
    const out = await target.clients.s3.send(
      new ListObjectsV2Command({ Bucket: target.kafkaFailuresBucket, ContinuationToken: token }),
    );
    for (const o of out.Contents ?? []) {
      if (!o.Key) continue;
      objects.push({
        key: o.Key,
        etag: (o.ETag ?? '').replace(/^"|"$/g, ''),
        size: Number(o.Size ?? 0),
        lastModified: (o.LastModified ?? new Date(0)).toISOString(),
      });
    }
    token = out.NextContinuationToken;
  } while (token);
  objects.sort((a, b) => a.lastModified.localeCompare(b.lastModified) || a.key.localeCompare(b.key));

  const items = new Map<string, ReplayItem>();
  for (let i = 0; i < objects.length; i += 100) {
    const keys = objects.slice(i, i + 100).map((o) => replayKey(o.key, o.etag));
    await batchGetAll(
      target.clients.doc,
      target.ledgerTable,
      keys,
      (item) => items.set(`${item.pk}\n${item.sk}`, item as ReplayItem),
      { policy: OPERATOR_LOOKUP_RETRY },
    );
  }
  return objects.map((o) => {
    const k = replayKey(o.key, o.etag);
    const item = items.get(`${k.pk}\n${k.sk}`);
    const status: ReplayStatus =
      item?.replayStatus === 'REPLAYED' ? 'replayed' : item?.replayStatus === 'FAILED' ? 'failed' : 'pending';
    return {
      ...o,
      status,
      attempts: Number(item?.attempts ?? 0),
      ...(item?.ranges ? { ranges: item.ranges } : {}),
      ...(item?.records !== undefined ? { records: Number(item.records) } : {}),
      ...(item?.lastError ? { error: item.lastError } : {}),
      ...(item?.replayedAt ? { replayedAt: item.replayedAt } : {}),
    };
  });
}

/** A stored batch read back: the event to invoke with, or why it cannot be replayed. */
type ReadOutcome =
  | { ok: true; payload: string; event: KafkaEvent; ranges: string; records: number }
  | { ok: false; error: string };

async function readFailure(target: Target, entry: KafkaFailureEntry): Promise<ReadOutcome> {
  const out = await target.clients.s3.send(
    // IfMatch: the object replayed is the one whose ETag the ledger item names.
    new GetObjectCommand({ Bucket: target.kafkaFailuresBucket, Key: entry.key, IfMatch: `"${entry.etag}"` }),
  );
  const text = (await out.Body?.transformToString('utf8')) ?? '';
  let parsed: z.infer<typeof FailureObjectSchema>;
  try {
    parsed = FailureObjectSchema.parse(JSON.parse(text));
  } catch (err) {
    return {
      ok: false,
      error: `not an on-failure record of a Kafka event source: ${(err as Error).message}`,
    };
  }
  if (parsed.payload === undefined) {
    // Lambda leaves it out for a batch over the invocation payload limit (MaximumPayloadSizeExceeded).
    return {
      ok: false,
      error: `no payload (${parsed.requestContext.condition}): the records must be read again from the topic, see KafkaBatchInfo.recordsInfo`,
    };
  }
  try {
    const event = parseKafkaEvent(JSON.parse(parsed.payload));
    const records = Object.values(event.records).reduce((n, r) => n + r.length, 0);
    return { ok: true, payload: parsed.payload, event, ranges: describeOffsetRanges(event), records };
  } catch (err) {
    return { ok: false, error: `its payload is not a Kafka event: ${(err as Error).message}` };
  }
}

async function recordOutcome(
  target: Target,
  entry: KafkaFailureEntry,
  outcome: { status: 'REPLAYED' | 'FAILED'; ranges?: string; records?: number; error?: string },
): Promise<void> {
  const now = new Date().toISOString();
  const values: Record<string, unknown> = {
    ':status': outcome.status,
    ':one': 1,
    ':key': entry.key,
    ':kind': 'kafka-failure',
    ':now': now,
  };
  const sets = ['replayStatus = :status', '#key = :key', 'kind = :kind', 'updatedAt = :now'];
  if (outcome.ranges !== undefined) {
    sets.push('ranges = :ranges', 'records = :records');
    values[':ranges'] = outcome.ranges;
    values[':records'] = outcome.records ?? 0;
  }
  if (outcome.status === 'REPLAYED') sets.push('replayedAt = :now');
  if (outcome.error !== undefined) {
    sets.push('lastError = :error');
    values[':error'] = outcome.error.slice(0, 2000);
  }
  await target.clients.doc.send(
    new UpdateCommand({
      TableName: target.ledgerTable,
      Key: replayKey(entry.key, entry.etag),
      UpdateExpression: `SET ${sets.join(', ')} ADD attempts :one${outcome.status === 'REPLAYED' ? ' REMOVE lastError' : ''}`,
      ExpressionAttributeNames: { '#key': 'key' },
      ExpressionAttributeValues: values,
    }),
  );
}

export interface ReplayOptions {
  /** List what would be replayed; invoke nothing, change nothing. */
  readonly dryRun?: boolean;
  /** Told of each object as it is done. */
  readonly onObject?: (entry: KafkaFailureEntry, outcome: 'replayed' | 'failed' | 'skipped') => void;
}

/**
 * Replays every object of the failures bucket not replayed yet, oldest first, one invocation each, and
 * records each outcome in the ledger. An invocation that fails leaves its object pending (FAILED, with
 * the reason) for the next replay; an error of the invoker itself (no permission, no function) stops the
 * run, naming the object.
 */
export async function replayKafkaFailures(
  target: Target,
  invoker: ReplayInvoker | undefined,
  options: ReplayOptions = {},
): Promise<ReplayResult> {
  const entries = await listKafkaFailures(target);
  if (options.dryRun) {
    return { entries, replayed: 0, failed: [], skipped: 0, noticesDeleted: 0 };
  }
  if (!invoker) throw new Error('replaying needs an invoker (the kafka-consumer to run)');
  let replayed = 0;
  let skipped = 0;
  const failed: { key: string; error: string }[] = [];
  const done = new Set<string>();
  const after: KafkaFailureEntry[] = [];
  for (const entry of entries) {
    if (entry.status === 'replayed') {
      skipped++;
      done.add(entry.key);
      after.push(entry);
      options.onObject?.(entry, 'skipped');
      continue;
    }
    const read = await readFailure(target, entry);
    let outcome: { ok: true } | { ok: false; error: string };
    if (!read.ok) outcome = read;
    else {
      try {
        outcome = await invoker.invoke(read.payload, read.event);
      } catch (err) {
        throw new Error(`could not invoke the kafka-consumer for ${entry.key}: ${(err as Error).message}`, {
          cause: err,
        });
      }
    }
    const facts = read.ok ? { ranges: read.ranges, records: read.records } : {};
    if (outcome.ok) {
      await recordOutcome(target, entry, { status: 'REPLAYED', ...facts });
      replayed++;
      done.add(entry.key);
      const now = new Date().toISOString();
      const next: KafkaFailureEntry = {
        ...entry,
        ...facts,
        status: 'replayed',
        attempts: entry.attempts + 1,
        replayedAt: now,
      };
      after.push(next);
      options.onObject?.(next, 'replayed');
    } else {
      await recordOutcome(target, entry, { status: 'FAILED', ...facts, error: outcome.error });
      failed.push({ key: entry.key, error: outcome.error });
      const next: KafkaFailureEntry = {
        ...entry,
        ...facts,
        status: 'failed',
        attempts: entry.attempts + 1,
        error: outcome.error,
      };
      after.push(next);
      options.onObject?.(next, 'failed');
    }
  }
  const present = new Set(entries.map((e) => e.key));
  const noticesDeleted = await deleteSettledNotices(target, (key) => done.has(key) || !present.has(key));
  return { entries: after, replayed, failed, skipped, noticesDeleted };
}

/**
 * The object key an S3 "Object Created" event (as EventBridge delivers it to the notices queue) names; none
 * for anything else. EventBridge events carry the key as it is, not URL-encoded.
 */
export function noticeKeys(body: string): string[] {
  try {
    const parsed = JSON.parse(body) as { 'detail-type'?: unknown; detail?: { object?: { key?: unknown } } };
    const key = parsed.detail?.object?.key;
    return parsed['detail-type'] === 'Object Created' && typeof key === 'string' ? [key] : [];
  } catch {
    return [];
  }
}

/**
 * Deletes the notices whose objects are settled (replayed, or gone from the bucket), and messages that are
 * not notices;
 * the others are received with a short visibility timeout, so they are soon visible (and alarming) again.
 */
async function deleteSettledNotices(target: Target, settled: (key: string) => boolean): Promise<number> {
  const seen = new Set<string>();
  let deleted = 0;
  for (let round = 0; round < 1000; round++) {
    const out = await target.clients.sqs.send(
      new ReceiveMessageCommand({
        QueueUrl: target.queues.kafkaFailures,
        MaxNumberOfMessages: 10,
        VisibilityTimeout: 5,
        WaitTimeSeconds: 0,
      }),
    );
    const fresh = (out.Messages ?? []).filter((m) => m.MessageId && !seen.has(m.MessageId));
    if (fresh.length === 0) break;
    for (const m of fresh) {
      seen.add(m.MessageId ?? '');
      if (noticeKeys(m.Body ?? '').every(settled)) {
        await target.clients.sqs.send(
          new DeleteMessageCommand({ QueueUrl: target.queues.kafkaFailures, ReceiptHandle: m.ReceiptHandle }),
        );
        deleted++;
      }
    }
  }
  return deleted;
}

/** How many failure objects are not replayed yet (pending or failed again), for `pulse status`. */
export async function kafkaFailuresAwaitingReplay(target: Target): Promise<number> {
  return (await listKafkaFailures(target)).filter((e) => e.status !== 'replayed').length;
}
