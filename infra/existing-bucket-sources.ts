import type { IBucket } from 'aws-cdk-lib/aws-s3';
import * as z from 'zod';
import { settings } from '#shared/settings.ts';

/*
 * The sources of `existingBuckets` as data, without aws-cdk-lib (only its types): the construct
 * (infra/existing-buckets.ts, which re-exports these) and `pulse local up` (local/runtime/offline-config.ts),
 * which must not load aws-cdk-lib, read and check them the same way.
 */

/**
 * How object creations in a bucket reach the file-events queue:
 * - `s3-sqs`: an S3 event notification per prefix to the queue. On a bucket the construct did not create,
 *   CDK's notifications custom resource reads the bucket's configuration and puts it back with its own
 *   entries added, keeping every notification it did not create (and an EventBridge setting). S3 refuses a
 *   configuration in which two notifications of the same event type have overlapping prefixes ("Configurations
 *   overlap"): if another `ObjectCreated` notification of the bucket already covers one of these prefixes, the
 *   deploy fails; use `eventbridge` then.
 * - `eventbridge`: an EventBridge rule on the default bus for `aws.s3` / `Object Created` events of this bucket
 *   under these prefixes, with the queue as its target (and the queue policy that lets that rule send). The
 *   bucket must send its events to EventBridge ("Amazon EventBridge: On" in its properties, or
 *   `EventBridgeConfiguration: {}` in its notification configuration), which leaves its other notifications
 *   alone: the way to share a bucket whose notifications are already in use.
 * - `{ snsTopicArn }`: the bucket already notifies an SNS topic; the queue subscribes to it (raw message
 *   delivery off: s3-trigger unwraps SNS's envelope). The bucket's notification to the topic is the user's,
 *   with their prefix filter; the topic must carry only this bucket's object creations, as everything it
 *   publishes reaches s3-trigger.
 */
export type BucketNotifications = 's3-sqs' | 'eventbridge' | { readonly snsTopicArn: string };

/** A bucket the user already has, ingested from some of its prefixes. */
export interface ExistingBucketSource {
  /**
   * The bucket: `Bucket.fromBucketName(...)`/`Bucket.fromBucketArn(...)`, or its name or ARN (never looked
   * up, so synth stays offline). In the stack's account and region.
   */
  readonly bucket: IBucket | string;
  /**
   * The prefixes ingested from it; s3-trigger may read objects under these only.
   * @default [settings.bucket.incomingPrefix] ('incoming/')
   */
  readonly prefixes?: readonly string[];
  /** @default 's3-sqs' */
  readonly notifications?: BucketNotifications;
}

/**
 * The `existingBuckets` context of the project's app (infra/context.ts): an array (in cdk.json) or its JSON
 * text (`-c existingBuckets='[{"bucket":"my-data","prefixes":["in/"],"notifications":"eventbridge"}]'`).
 */
export const ExistingBucketsContextSchema = z.array(
  z.strictObject({
    bucket: z.string().min(1),
    prefixes: z.array(z.string()).optional(),
    notifications: z
      .union([z.enum(['s3-sqs', 'eventbridge']), z.strictObject({ snsTopicArn: z.string().min(1) })])
      .optional(),
  }),
);

/** Reads the `existingBuckets` context; throws with the reason when it is not what it must be. */
export function existingBucketsOf(value: unknown): ExistingBucketSource[] | undefined {
  if (value === undefined || value === null || value === '') return undefined;
  const json = typeof value === 'string' ? JSON.parse(value) : value;
  return ExistingBucketsContextSchema.parse(json);
}

/** The name of a source's bucket (an ARN's last part; an imported bucket's `bucketName`). */
export function sourceBucketName(bucket: IBucket | string): string {
  if (typeof bucket !== 'string') return bucket.bucketName;
  return bucket.startsWith('arn:') ? (bucket.split(':::')[1] ?? bucket) : bucket;
}

/** The prefixes of a source. */
export function sourcePrefixes(source: Pick<ExistingBucketSource, 'prefixes'>): readonly string[] {
  return source.prefixes ?? [settings.bucket.incomingPrefix];
}

const SNS_TOPIC_ARN = /^arn:aws[a-z-]*:sns:[a-z0-9-]+:\d{12}:[A-Za-z0-9_-]{1,256}(\.fifo)?$/;

/**
 * What S3 or IAM would not take of these sources: an empty prefix list, a prefix given twice, one inside
 * another, an SNS topic ARN that is not one (unless `isUnresolved`: a CDK token, checked at deploy).
 */
export function sourceProblems(
  sources: readonly ExistingBucketSource[],
  isUnresolved: (value: string) => boolean = () => false,
): string[] {
  const problems: string[] = [];
  sources.forEach((source, i) => {
    const prefixes = sourcePrefixes(source);
    if (prefixes.length === 0) problems.push(`existingBuckets[${i}].prefixes: at least one prefix is needed`);
    for (const p of prefixes) {
      if (p.length === 0)
        problems.push(
          `existingBuckets[${i}].prefixes: an empty prefix (the whole bucket) is not taken; name the prefix`,
        );
      for (const q of prefixes) {
        if (p !== q && q.startsWith(p))
          problems.push(
            `existingBuckets[${i}].prefixes: "${q}" is inside "${p}" (S3 refuses overlapping notifications)`,
          );
      }
    }
    if (new Set(prefixes).size !== prefixes.length)
      problems.push(`existingBuckets[${i}].prefixes: a prefix is given twice`);
    const mode = source.notifications;
    if (
      typeof mode === 'object' &&
      !isUnresolved(mode.snsTopicArn) &&
      !SNS_TOPIC_ARN.test(mode.snsTopicArn)
    ) {
      problems.push(
        `existingBuckets[${i}].notifications.snsTopicArn: "${mode.snsTopicArn}" is not an SNS topic ARN`,
      );
    }
  });
  return problems;
}
