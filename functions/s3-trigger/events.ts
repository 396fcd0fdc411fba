import { SendMessageCommand, type SQSClient } from '@aws-sdk/client-sqs';
import * as z from 'zod';
import { sendInBatches } from '#shared/batch-send.ts';
import { InvalidMessageError } from '#shared/errors.ts';
import type { RetryPolicy } from '#shared/retry.ts';
import { sqsSafeJson } from '#shared/sqs-text.ts';
import { isEventBridgeEvent, isSnsEnvelope, readEventBridge, unwrapSns } from './envelopes.ts';

/** One object version to ingest, from an S3 notification or a backfill message. */
export interface FileTask {
  readonly bucket: string;
  readonly key: string;
  /** Without quotes; looked up with HeadObject when the event has none. */
  readonly etag?: string;
  readonly versionId?: string;
  readonly size?: number;
  readonly eventTime?: string;
  /** One part of a split file (a `part` message): the part's number. */
  readonly part?: number;
}

const S3RecordSchema = z.object({
  eventName: z.string(),
  eventTime: z.string().optional(),
  s3: z.object({
    bucket: z.object({ name: z.string().min(1) }),
    object: z.object({
      key: z.string().min(1),
      size: z.number().optional(),
      eTag: z.string().optional(),
      versionId: z.string().optional(),
    }),
  }),
});

const S3NotificationSchema = z.object({ Records: z.array(S3RecordSchema) });
const TestEventSchema = z.object({ Event: z.literal('s3:TestEvent') });
/**
 * Sent by `pulse backfill` for objects that existed before the notification did, and by the s3-trigger
 * itself: `continue` when it hands a long file (or part) over to a fresh invocation, `part` for each part
 * of a large file it split.
 */
const BackfillSchema = z
  .object({
    v: z.literal(1),
    kind: z.enum(['backfill', 'continue', 'part']),
    bucket: z.string().min(1),
    key: z.string().min(1),
    etag: z.string().optional(),
    size: z.number().optional(),
    versionId: z.string().optional(),
    part: z.number().int().nonnegative().optional(),
    /** The S3 event's time, carried by a continuation or a part so that the file's latency is measured from it. */
    eventTime: z.string().optional(),
  })
  .refine((m) => m.kind !== 'part' || (m.part !== undefined && m.etag !== undefined), {
    message: 'a part message names its etag and part',
  });

/** The file-events message that asks for `task` to be ingested (or resumed) by another invocation. */
export function continuationMessage(task: FileTask & { readonly etag: string }): string {
  return taskMessage('continue', task);
}

/** The file-events message that announces one part of a split file. */
export function partMessage(task: FileTask & { readonly etag: string; readonly part: number }): string {
  return taskMessage('part', task);
}

/** How part announcements are sent again when SQS fails some of them (5 calls, 200 ms doubling). */
const ANNOUNCE_RETRY: RetryPolicy = { attempts: 5, baseMs: 200, jitter: 'none' };

/**
 * What the s3-trigger sends to its own file-events queue: a continuation of a long file (or part) for a fresh
 * invocation, and the parts of a split file (ten to a SendMessageBatch, only the failed entries sent again).
 */
export function fileEventsSender(
  sqs: SQSClient,
  queueUrl: string,
): {
  continueLater: (task: FileTask & { readonly etag: string }) => Promise<void>;
  announceParts: (
    parts: readonly (FileTask & { readonly etag: string; readonly part: number })[],
  ) => Promise<void>;
} {
  return {
    continueLater: async (task) => {
      await sqs.send(new SendMessageCommand({ QueueUrl: queueUrl, MessageBody: continuationMessage(task) }));
    },
    announceParts: (parts) =>
      sendInBatches(
        sqs,
        queueUrl,
        parts.map((p) => ({ Id: String(p.part), MessageBody: partMessage(p) })),
        ANNOUNCE_RETRY,
      ),
  };
}

function taskMessage(kind: 'continue' | 'part', task: FileTask & { readonly etag: string }): string {
  return sqsSafeJson(
    JSON.stringify({
      v: 1,
      kind,
      bucket: task.bucket,
      key: task.key,
      etag: task.etag,
      ...(task.size !== undefined ? { size: task.size } : {}),
      ...(task.versionId ? { versionId: task.versionId } : {}),
      ...(task.part !== undefined ? { part: task.part } : {}),
      ...(task.eventTime ? { eventTime: task.eventTime } : {}),
    }),
  );
}

/**
 * S3 URL-encodes keys in notifications, with `+` for a space. A key whose `%` escapes S3 would never write
 * (a `%` without two hex digits, bytes that are not UTF-8) throws InvalidMessageError: the event did not
 * come from S3 as it is, and no object can be named by it.
 */
export function decodeS3Key(key: string): string {
  try {
    return decodeURIComponent(key.replace(/\+/g, ' '));
  } catch (err) {
    throw new InvalidMessageError(
      `file event key is not URL-encoded as S3 encodes it: ${JSON.stringify(key)}`,
      {
        cause: err,
      },
    );
  }
}

export function stripQuotes(etag: string): string {
  return etag.replace(/^"|"$/g, '');
}

/**
 * Reads the body of one file-events message into the object versions it announces: an S3 notification, an
 * EventBridge `Object Created` event, either wrapped in an SNS envelope (envelopes.ts), or a backfill,
 * continuation or part message. The test event S3 sends when a notification is configured (bare or through
 * SNS), and non-creation events, announce none. Throws InvalidMessageError for anything else.
 */
export function parseFileEvents(body: string): FileTask[] {
  let json: unknown;
  try {
    json = JSON.parse(body);
  } catch (err) {
    throw new InvalidMessageError(`file event is not JSON: ${(err as Error).message}`, { cause: err });
  }
  if (isSnsEnvelope(json)) return readS3Event(unwrapSns(json), 'an SNS Notification whose Message');
  const backfill = BackfillSchema.safeParse(json);
  if (backfill.success) {
    const b = backfill.data;
    return [
      {
        bucket: b.bucket,
        key: b.key,
        ...(b.etag ? { etag: stripQuotes(b.etag) } : {}),
        ...(b.size !== undefined ? { size: b.size } : {}),
        ...(b.versionId ? { versionId: b.versionId } : {}),
        ...(b.part !== undefined ? { part: b.part } : {}),
        ...(b.eventTime ? { eventTime: b.eventTime } : {}),
      },
    ];
  }
  return readS3Event(json, 'file event');
}

/** An S3 notification, S3's test event or an EventBridge event from S3: what `what` names must be one. */
function readS3Event(json: unknown, what: string): FileTask[] {
  if (TestEventSchema.safeParse(json).success) return [];
  if (isEventBridgeEvent(json)) return readEventBridge(json, stripQuotes);
  const parsed = S3NotificationSchema.safeParse(json);
  if (!parsed.success) {
    throw new InvalidMessageError(
      `${what} is neither an S3 notification, an EventBridge event from S3 nor a backfill request: ${parsed.error.issues
        .slice(0, 3)
        .map((i) => `${i.path.join('.')}: ${i.message}`)
        .join('; ')}`,
    );
  }
  return parsed.data.Records.filter((r) => r.eventName.startsWith('ObjectCreated')).map((r) => ({
    bucket: r.s3.bucket.name,
    key: decodeS3Key(r.s3.object.key),
    ...(r.s3.object.eTag ? { etag: stripQuotes(r.s3.object.eTag) } : {}),
    ...(r.s3.object.versionId ? { versionId: r.s3.object.versionId } : {}),
    ...(r.s3.object.size !== undefined ? { size: r.s3.object.size } : {}),
    ...(r.eventTime ? { eventTime: r.eventTime } : {}),
  }));
}
