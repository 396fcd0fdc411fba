/**
 * What the `pulse` CLI does to a pipeline, offline or deployed (see target.ts): drop files, list the
 * ledger, list and redrive the DLQs, backfill objects that predate the notification. Plain functions
 * taking the target; the CLI (cli/pulse.ts) only parses arguments and prints.
 */

import { createReadStream, statSync } from 'node:fs';
import { basename } from 'node:path';
import { ListObjectsV2Command, type S3Client } from '@aws-sdk/client-s3';
import {
  ChangeMessageVisibilityBatchCommand,
  DeleteMessageCommand,
  GetQueueAttributesCommand,
  type Message,
  ReceiveMessageCommand,
  SendMessageCommand,
  StartMessageMoveTaskCommand,
} from '@aws-sdk/client-sqs';
import { QueryCommand, ScanCommand } from '@aws-sdk/lib-dynamodb';
import { Upload } from '@aws-sdk/lib-storage';
import { type BatchEntry, sendMessageBatch } from '#shared/batch-send.ts';
import { batchGetAll } from '#shared/dynamo-batch.ts';
import { queryAll } from '#shared/dynamo-query.ts';
import { MessageRefusedError, SendFailedError } from '#shared/errors.ts';
import { type FileStatus, type LedgerItem, ledgerKey } from '#shared/ledger.ts';
import type { RetryPolicy } from '#shared/retry.ts';
import { settings } from '#shared/settings.ts';
import { readableMessageBody } from '#shared/signal.ts';
import { sqsSafeJson } from '#shared/sqs-text.ts';
import type { QueueName, Target } from './target.ts';

// ---------------------------------------------------------------------------------------------- drop

export interface Dropped {
  readonly file: string;
  readonly bucket: string;
  readonly key: string;
  readonly etag: string;
  readonly bytes: number;
}

/** Bytes of `file` uploaded so far, of `total` (lib-storage's `httpUploadProgress`). */
export type UploadProgress = (file: string, loaded: number, total: number) => void;

/** Uploads each file to `incoming/<basename>` (multipart for large files, streamed from disk). */
export async function dropFiles(
  s3: S3Client,
  bucket: string,
  files: readonly string[],
  onProgress?: UploadProgress,
): Promise<Dropped[]> {
  const dropped: Dropped[] = [];
  for (const file of files) {
    const bytes = statSync(file).size;
    const key = `${settings.bucket.incomingPrefix}${basename(file)}`;
    const upload = new Upload({
      client: s3,
      params: { Bucket: bucket, Key: key, Body: createReadStream(file) },
      queueSize: 2,
      partSize: 8 * 1024 * 1024,
    });
    if (onProgress) upload.on('httpUploadProgress', (p) => onProgress(file, p.loaded ?? 0, bytes));
    const out = await upload.done();
    onProgress?.(file, bytes, bytes);
    dropped.push({ file, bucket, key, etag: unquote(out.ETag ?? ''), bytes });
  }
  return dropped;
}

// -------------------------------------------------------------------------------------------- ledger

/** Ledger items (files only, not the poller's watermark), most recently updated first. */
export async function ledgerEntries(target: Target, status?: FileStatus): Promise<LedgerItem[]> {
  const items: LedgerItem[] = [];
  let start: Record<string, unknown> | undefined;
  do {
    const out = status
      ? await target.clients.doc.send(
          new QueryCommand({
            TableName: target.ledgerTable,
            IndexName: settings.ledger.statusIndex,
            KeyConditionExpression: '#status = :status',
            ExpressionAttributeNames: { '#status': 'status' },
            ExpressionAttributeValues: { ':status': status },
            ExclusiveStartKey: start,
          }),
        )
      : await target.clients.doc.send(
          new ScanCommand({ TableName: target.ledgerTable, ExclusiveStartKey: start }),
        );
    items.push(...((out.Items ?? []) as LedgerItem[]));
    start = out.LastEvaluatedKey;
  } while (start);
  return items
    .filter((i) => i.pk.startsWith('s3://'))
    .sort((a, b) => String(b.updatedAt).localeCompare(String(a.updatedAt)));
}

/** Every ledger item of one object key (`incoming/x.csv` or `s3://bucket/key`): its versions and their parts. */
export async function ledgerVersions(target: Target, key: string): Promise<LedgerItem[]> {
  const pk = key.startsWith('s3://') ? key : `s3://${target.bucket}/${key}`;
  return queryAll<LedgerItem>(target.clients.doc, {
    TableName: target.ledgerTable,
    KeyConditionExpression: 'pk = :pk',
    ExpressionAttributeValues: { ':pk': pk },
    ConsistentRead: true,
  });
}

// ----------------------------------------------------------------------------------------------- dlq

export const DLQ_SOURCES = { fileEventsDlq: 'fileEvents', signalsDlq: 'signals' } as const;
export type RedrivableDlq = keyof typeof DLQ_SOURCES;

export interface DlqMessage {
  readonly queue: QueueName;
  readonly messageId: string;
  readonly receiveCount: number;
  readonly sentAt: string;
  /** The body (a deflated signal message inflated), cut to 300 characters. */
  readonly body: string;
}

/** How long a peeked message stays hidden while the listing goes on (it is released at once afterwards). */
const PEEK_HOLD_SECONDS = 10;

/**
 * Peeks at up to `max` messages of each DLQ (and the Kafka failures queue): each is received (hidden for
 * {@link PEEK_HOLD_SECONDS} so that further receives find the others), then made visible again at once
 * (ChangeMessageVisibility 0), so nothing is consumed and a `dlq redrive` right after finds every message.
 * A release that fails leaves the message hidden until the hold ends.
 */
export async function listDlq(target: Target, max = 50): Promise<DlqMessage[]> {
  const out: DlqMessage[] = [];
  for (const queue of ['fileEventsDlq', 'signalsDlq', 'kafkaFailures'] as const) {
    /** The latest receipt handle of each message received, to release. */
    const held = new Map<string, string>();
    try {
      // SQS samples servers: a few rounds more than strictly needed find the rest of a small queue.
      for (let round = 0; round < Math.ceil(max / 10) + 2; round++) {
        const listed = out.filter((m) => m.queue === queue).length;
        if (listed >= max) break;
        const got = await target.clients.sqs.send(
          new ReceiveMessageCommand({
            QueueUrl: target.queues[queue],
            MaxNumberOfMessages: Math.min(10, max - listed),
            VisibilityTimeout: PEEK_HOLD_SECONDS,
            WaitTimeSeconds: 0,
            MessageSystemAttributeNames: ['ApproximateReceiveCount', 'SentTimestamp'],
          }),
        );
        const messages = got.Messages ?? [];
        const fresh = messages.filter((m) => m.MessageId && !held.has(m.MessageId));
        for (const m of messages) if (m.MessageId && m.ReceiptHandle) held.set(m.MessageId, m.ReceiptHandle);
        if (fresh.length === 0) break;
        for (const m of fresh.slice(0, max - listed)) {
          out.push({
            queue,
            messageId: m.MessageId ?? '',
            receiveCount: Number(m.Attributes?.ApproximateReceiveCount ?? 0),
            sentAt: new Date(Number(m.Attributes?.SentTimestamp ?? 0)).toISOString(),
            body: readableMessageBody(m.Body ?? '').slice(0, 300),
          });
        }
      }
    } finally {
      await release(target, target.queues[queue], held);
    }
  }
  return out;
}

/** Makes peeked messages visible again at once; a failure leaves them hidden until their hold ends. */
async function release(target: Target, queueUrl: string, held: ReadonlyMap<string, string>): Promise<void> {
  const entries = [...held.values()].map((handle, i) => ({
    Id: `m${i}`,
    ReceiptHandle: handle,
    VisibilityTimeout: 0,
  }));
  for (let i = 0; i < entries.length; i += 10) {
    try {
      await target.clients.sqs.send(
        new ChangeMessageVisibilityBatchCommand({ QueueUrl: queueUrl, Entries: entries.slice(i, i + 10) }),
      );
    } catch {
      // Those messages come back by themselves when their hold ends.
    }
  }
}

export interface RedriveResult {
  readonly dlq: RedrivableDlq;
  readonly to: QueueName;
  /** Messages moved (offline), or `started` with the task handle (AWS). */
  readonly moved: number;
  readonly taskHandle?: string;
  /** Offline: messages the source queue refused (too large, characters SQS forbids), left in the DLQ. */
  readonly kept?: readonly { readonly messageId: string; readonly reason: string }[];
}

/** SQS errors that refuse one message rather than the queue or the call: that message stays in its DLQ. */
const REFUSES_THE_MESSAGE = new Set([
  'InvalidMessageContents',
  'InvalidParameterValue',
  'InvalidParameterValueException',
]);

/**
 * Moves each DLQ's messages back to its source queue. On AWS with SQS's own message move task; moto
 * lacks it, so offline each message is sent to the source and deleted from the DLQ only after the
 * send succeeded (a crash in between duplicates a message, which the ledger and the scorer absorb;
 * it never loses one).
 */
export async function redriveDlq(
  target: Target,
  dlqs: readonly RedrivableDlq[] = ['fileEventsDlq', 'signalsDlq'],
): Promise<RedriveResult[]> {
  const results: RedriveResult[] = [];
  for (const dlq of dlqs) {
    const to = DLQ_SOURCES[dlq];
    if (target.kind === 'aws') {
      const arn = await queueArn(target, target.queues[dlq]);
      const out = await target.clients.sqs.send(new StartMessageMoveTaskCommand({ SourceArn: arn }));
      results.push({ dlq, to, moved: 0, ...(out.TaskHandle ? { taskHandle: out.TaskHandle } : {}) });
      continue;
    }
    let moved = 0;
    const kept = new Map<string, string>();
    for (;;) {
      const got = await target.clients.sqs.send(
        new ReceiveMessageCommand({
          QueueUrl: target.queues[dlq],
          MaxNumberOfMessages: 10,
          VisibilityTimeout: 30,
          WaitTimeSeconds: 0,
          MessageAttributeNames: ['All'],
        }),
      );
      const messages = (got.Messages ?? []).filter((m) => !kept.has(m.MessageId ?? ''));
      if (messages.length === 0) break;
      for (const m of messages) {
        const refused = await moveOne(target, m, target.queues[dlq], target.queues[to]);
        if (refused === undefined) moved++;
        else kept.set(m.MessageId ?? '', refused);
      }
    }
    const keptList = [...kept].map(([messageId, reason]) => ({ messageId, reason }));
    results.push({ dlq, to, moved, ...(keptList.length > 0 ? { kept: keptList } : {}) });
  }
  return results;
}

/**
 * Sends one message to its source queue, then deletes it from the DLQ. Returns why the source queue
 * refused that message (it is left in the DLQ); throws, naming the queue, when the send failed otherwise.
 */
async function moveOne(target: Target, m: Message, from: string, to: string): Promise<string | undefined> {
  try {
    await target.clients.sqs.send(
      new SendMessageCommand({
        QueueUrl: to,
        MessageBody: m.Body ?? '',
        ...(m.MessageAttributes && Object.keys(m.MessageAttributes).length > 0
          ? { MessageAttributes: m.MessageAttributes }
          : {}),
      }),
    );
  } catch (err) {
    const e = err as Error;
    if (REFUSES_THE_MESSAGE.has(e.name)) return `${e.name}: ${e.message}`;
    throw new Error(`could not send message ${m.MessageId} to ${to}: ${e.name}: ${e.message}`, {
      cause: err,
    });
  }
  await target.clients.sqs.send(new DeleteMessageCommand({ QueueUrl: from, ReceiptHandle: m.ReceiptHandle }));
  return undefined;
}

async function queueArn(target: Target, url: string): Promise<string> {
  const out = await target.clients.sqs.send(
    new GetQueueAttributesCommand({ QueueUrl: url, AttributeNames: ['QueueArn'] }),
  );
  const arn = out.Attributes?.QueueArn;
  if (!arn) throw new Error(`no QueueArn for ${url}`);
  return arn;
}

// ------------------------------------------------------------------------------------------ backfill

export interface BackfillProgress {
  /** Objects listed so far (the listing is paginated). */
  listed(total: number): void;
  /** Objects checked against the ledger so far. */
  checked(done: number, total: number): void;
}

/** Which objects a backfill enqueues, beyond its prefix (`pulse backfill --since/--until/--force`). */
export interface BackfillOptions {
  /**
   * Only objects last modified at or after `since` and before `until`. S3 lists by key, not by time: every
   * object under the prefix is still listed (one LIST request per 1,000 keys), only the enqueuing is bounded.
   */
  readonly since?: Date;
  readonly until?: Date;
  /**
   * Called with the ledger items (read whole) of the versions the ledger already has, a chunk at a time;
   * without it only their keys are read and they are counted as `known`.
   */
  readonly known?: (items: LedgerItem[]) => Promise<void>;
  /** The bucket to list: one the stack ingests from besides its own (`existingBuckets`). @default its own */
  readonly bucket?: string;
}

export interface BackfillResult {
  readonly listed: number;
  /** Objects under the prefix last modified outside `since`/`until` (not enqueued). */
  readonly outOfRange: number;
  /** Folder markers and rejects, which s3-trigger never records (not enqueued). */
  readonly ignored: number;
  /** Objects the ledger already holds in their current version. */
  readonly known: number;
  readonly enqueued: number;
}

/**
 * Lists the objects under `prefix` (paginated) and enqueues on the file-events queue a backfill
 * message for each one whose current version the ledger has not seen, as the bucket's notification
 * would have: s3-trigger reads the types it knows and records any other as SKIPPED, with the reason.
 * Folder markers and rejects, which it never records, are counted, not enqueued. `bucket`: a bucket the
 * pipeline ingests from besides its own (`existingBuckets`).
 */
export async function backfill(
  target: Target,
  prefix: string,
  progress: BackfillProgress = { listed: () => {}, checked: () => {} },
  opts: BackfillOptions = {},
): Promise<BackfillResult> {
  const bucket = opts.bucket ?? target.bucket;
  const objects: { key: string; etag: string; size: number }[] = [];
  let ignored = 0;
  let outOfRange = 0;
  let token: string | undefined;
  do {
    const out = await target.clients.s3.send(
      new ListObjectsV2Command({ Bucket: bucket, Prefix: prefix, ContinuationToken: token }),
    );
    for (const o of out.Contents ?? []) {
      // The ledger sweep's notification canary is not an object of the user's: not even listed (a
      // backfilled canary would look like a notification that arrived).
      if (!o.Key || o.Key === settings.bucket.canaryKey) continue;
      if (neverRecorded(o.Key)) {
        ignored++;
        continue;
      }
      if (!inWindow(o.LastModified, opts)) {
        outOfRange++;
        continue;
      }
      objects.push({ key: o.Key, etag: unquote(o.ETag ?? ''), size: Number(o.Size ?? 0) });
    }
    progress.listed(objects.length + ignored + outOfRange);
    token = out.NextContinuationToken;
  } while (token);

  let known = 0;
  let enqueued = 0;
  for (let i = 0; i < objects.length; i += 100) {
    const chunk = objects.slice(i, i + 100);
    const keys = chunk.map((o) => ledgerKey({ bucket, key: o.key, etag: o.etag }));
    const seen = await existingKeys(target, keys, opts.known !== undefined);
    const missing = chunk.filter((_o, n) => !seen.has(`${keys[n]?.pk}\n${keys[n]?.sk}`));
    known += chunk.length - missing.length;
    if (opts.known && seen.size > 0) await opts.known([...seen.values()]);
    for (let j = 0; j < missing.length; j += 10) {
      const entries = missing.slice(j, j + 10).map((o, n) => ({
        Id: String(n),
        MessageBody: fileEventMessage({ bucket, ...o }),
      }));
      await sendAll(target, target.queues.fileEvents, entries);
      enqueued += entries.length;
    }
    progress.checked(Math.min(i + 100, objects.length), objects.length);
  }
  return { listed: objects.length + ignored + outOfRange, outOfRange, ignored, known, enqueued };
}

/**
 * The file-events message that asks the s3-trigger to ingest one object version, as the bucket's
 * notification would (s3-trigger's `backfill` kind, functions/s3-trigger/events.ts): sent by backfill and
 * by `pulse ledger retry`.
 */
export function fileEventMessage(o: {
  readonly bucket: string;
  readonly key: string;
  readonly etag: string;
  readonly size?: number;
  readonly versionId?: string;
}): string {
  return sqsSafeJson(
    JSON.stringify({
      v: 1,
      kind: 'backfill',
      bucket: o.bucket,
      key: o.key,
      etag: o.etag,
      ...(o.size !== undefined ? { size: o.size } : {}),
      ...(o.versionId ? { versionId: o.versionId } : {}),
    }),
  );
}

/** Keys s3-trigger acknowledges without a ledger item: folder markers, and rejects it wrote itself. */
function neverRecorded(key: string): boolean {
  return key.endsWith('/') || key.startsWith(settings.bucket.rejectsPrefix);
}

/** The ledger items of `keys` that exist, by `pk\nsk`: their keys only, or whole (`whole`). */
async function existingKeys(
  target: Target,
  keys: { pk: string; sk: string }[],
  whole = false,
): Promise<Map<string, LedgerItem>> {
  const seen = new Map<string, LedgerItem>();
  await batchGetAll(
    target.clients.doc,
    target.ledgerTable,
    keys,
    (item) => seen.set(`${item.pk}\n${item.sk}`, item as unknown as LedgerItem),
    {
      ...(whole ? {} : { projection: 'pk, sk' }),
      policy: OPERATOR_LOOKUP_RETRY,
    },
  );
  return seen;
}

function inWindow(modified: Date | undefined, opts: BackfillOptions): boolean {
  if (opts.since === undefined && opts.until === undefined) return true;
  if (modified === undefined) return false;
  const t = modified.getTime();
  return (
    (opts.since === undefined || t >= opts.since.getTime()) &&
    (opts.until === undefined || t < opts.until.getTime())
  );
}

/** Ledger keys DynamoDB leaves unprocessed, read again: 10 calls, from 100 ms doubling to 2 s. */
export const OPERATOR_LOOKUP_RETRY: RetryPolicy = { attempts: 10, baseMs: 100, maxMs: 2000, jitter: 'none' };

/** How backfill messages are sent again when SQS fails some of them (8 calls, 200 ms doubling to 5 s). */
const BACKFILL_RETRY: RetryPolicy = { attempts: 8, baseMs: 200, maxMs: 5000, jitter: 'none' };

/** SendMessageBatch through the project's batch sender (shared/batch-send.ts), with the operator's wording. */
async function sendAll(target: Target, queueUrl: string, entries: BatchEntry[]): Promise<void> {
  try {
    await sendMessageBatch(target.clients.sqs, queueUrl, entries, BACKFILL_RETRY);
  } catch (err) {
    if (err instanceof MessageRefusedError) {
      // Sending it again would be refused the same way.
      const body = entries.find((e) => e.Id === err.entryId)?.MessageBody ?? '{}';
      const reason = err.message.replace(/^SQS rejected a message: /, '');
      throw new Error(`SQS refused the backfill message of ${String(JSON.parse(body).key)}: ${reason}`, {
        cause: err,
      });
    }
    if (err instanceof SendFailedError) {
      throw new Error(`could not enqueue ${err.failed} backfill message(s) on ${queueUrl}`, { cause: err });
    }
    throw err;
  }
}

function unquote(etag: string): string {
  return etag.replace(/^"|"$/g, '');
}
