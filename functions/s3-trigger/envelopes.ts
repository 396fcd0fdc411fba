import * as z from 'zod';
import { InvalidMessageError } from '#shared/errors.ts';
import type { FileTask } from './events.ts';

/**
 * The two other shapes an object creation reaches the file-events queue in, besides S3's own notification:
 *
 * - **EventBridge** (a rule on `aws.s3` / `Object Created` with the queue as its target): the event itself is
 *   the message body. Its `detail.object.key` is the key as it is, NOT URL-encoded (S3 notifications encode it,
 *   with `+` for a space); `etag` (no quotes), `version-id`, `size` and `sequencer` sit beside it, and `time`
 *   (whole seconds) is the event's time.
 * - **SNS** (the bucket notifies a topic, the queue subscribes to it with raw message delivery off): the body
 *   is SNS's JSON envelope, `Type: Notification`, whose `Message` string holds the S3 notification (or S3's
 *   `s3:TestEvent`, or an EventBridge event when a rule targets the topic). With raw delivery on, the body is
 *   the S3 notification itself and needs no unwrapping.
 *
 * Whatever the shape, the same object version yields the same bucket, key, ETag and version id, so the ledger
 * and every dedupe key are one and the same (events.test.ts holds the shapes to it).
 */

/**
 * What {@link parseFileEvents} reads an S3 object creation from, whichever shape carried it: a file task
 * (the key decoded, as S3 stores it) that is never a part.
 */
export type CreatedObject = Omit<FileTask, 'part'>;

const EventBridgeS3Schema = z.object({
  source: z.literal('aws.s3'),
  'detail-type': z.string().min(1),
  time: z.string().optional(),
  detail: z.object({
    bucket: z.object({ name: z.string().min(1) }),
    object: z.object({
      key: z.string().min(1),
      size: z.number().optional(),
      etag: z.string().optional(),
      'version-id': z.string().optional(),
      sequencer: z.string().optional(),
    }),
  }),
});

/** Any EventBridge event: told from an S3 one to say clearly what arrived instead. */
const EventBridgeAnySchema = z.object({
  'detail-type': z.string(),
  source: z.string(),
  detail: z.unknown(),
});

/** SNS's envelope of a message delivered to an SQS subscription without raw message delivery. */
const SnsEnvelopeSchema = z.object({
  Type: z.string(),
  TopicArn: z.string(),
  Message: z.string().optional(),
});

/** True when `json` is an EventBridge event (of any source), which {@link readEventBridge} then reads. */
export function isEventBridgeEvent(json: unknown): boolean {
  return EventBridgeAnySchema.safeParse(json).success;
}

/**
 * The object an EventBridge event from S3 announces: one for `Object Created`, none for S3's other detail
 * types (a rule matching more than it should is not the file's fault; an S3 notification of another event
 * type announces none either). Throws InvalidMessageError for an event of another source, or an `aws.s3`
 * event without the fields S3 always sends.
 */
export function readEventBridge(json: unknown, strip: (etag: string) => string): CreatedObject[] {
  const any = EventBridgeAnySchema.parse(json);
  if (any.source !== 'aws.s3') {
    throw new InvalidMessageError(
      `file event is an EventBridge event from ${JSON.stringify(any.source)} (${JSON.stringify(any['detail-type'])}), not from aws.s3`,
    );
  }
  const parsed = EventBridgeS3Schema.safeParse(json);
  if (!parsed.success) {
    throw new InvalidMessageError(
      `file event is an aws.s3 EventBridge event without ${issues(parsed.error)}`,
    );
  }
  const e = parsed.data;
  if (e['detail-type'] !== 'Object Created') return [];
  const o = e.detail.object;
  return [
    {
      bucket: e.detail.bucket.name,
      // Not URL-encoded in EventBridge events: taken as it is.
      key: o.key,
      ...(o.etag ? { etag: strip(o.etag) } : {}),
      ...(o['version-id'] ? { versionId: o['version-id'] } : {}),
      ...(o.size !== undefined ? { size: o.size } : {}),
      ...(e.time ? { eventTime: e.time } : {}),
    },
  ];
}

/** True when `json` is an SNS envelope (of any type), which {@link unwrapSns} then opens. */
export function isSnsEnvelope(json: unknown): boolean {
  return SnsEnvelopeSchema.safeParse(json).success;
}

/**
 * The message an SNS `Notification` envelope carries, parsed as JSON. Throws InvalidMessageError for any other
 * type (a `SubscriptionConfirmation` reaches the queue only when the topic is in another account and the
 * subscription was never confirmed: an operator must confirm it, nothing here can) or a message that is not
 * JSON.
 */
export function unwrapSns(json: unknown): unknown {
  const env = SnsEnvelopeSchema.parse(json);
  if (env.Type !== 'Notification' || env.Message === undefined) {
    throw new InvalidMessageError(
      `file event is an SNS ${JSON.stringify(env.Type)} from ${env.TopicArn}, not a Notification` +
        (env.Type === 'SubscriptionConfirmation'
          ? ': the queue subscription to the topic is not confirmed (confirm it with its SubscribeURL)'
          : ''),
    );
  }
  try {
    return JSON.parse(env.Message);
  } catch (err) {
    throw new InvalidMessageError(
      `file event is an SNS Notification from ${env.TopicArn} whose Message is not JSON: ${(err as Error).message}`,
      { cause: err },
    );
  }
}

function issues(error: z.ZodError): string {
  return error.issues
    .slice(0, 3)
    .map((i) => `${i.path.join('.')}: ${i.message}`)
    .join('; ');
}
