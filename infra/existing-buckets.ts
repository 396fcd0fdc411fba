import { Stack, Token } from 'aws-cdk-lib';
import { Rule } from 'aws-cdk-lib/aws-events';
import { SqsQueue } from 'aws-cdk-lib/aws-events-targets';
import { PolicyStatement } from 'aws-cdk-lib/aws-iam';
import { Bucket, type IBucket } from 'aws-cdk-lib/aws-s3';
import { Topic } from 'aws-cdk-lib/aws-sns';
import { SqsSubscription } from 'aws-cdk-lib/aws-sns-subscriptions';
import type { Queue } from 'aws-cdk-lib/aws-sqs';
import { NagSuppressions } from 'cdk-nag';
import { Construct } from 'constructs';
import * as z from 'zod';
import { objectCreatedPattern } from '#shared/ingest-filters.ts';
import { settings } from '#shared/settings.ts';
import type { PulseFunction } from './constructs/pulse-function.ts';
import { PulsePropsError } from './props.ts';

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

/** What {@link ExistingBuckets} needs from the construct around it. */
export interface ExistingBucketsProps {
  readonly sources: readonly ExistingBucketSource[];
  readonly fileEvents: Queue;
  readonly s3Trigger: PulseFunction;
  /** Binds the S3 → SQS notification to the queue (the construct's account-bound destination). */
  readonly queueDestination: (bucket: IBucket, prefix: string) => void;
}

/**
 * Ingest from buckets the user already has: for each, the notifications of its mode to the file-events queue,
 * and s3-trigger's read of its prefixes only (GetObject, GetObjectVersion, and s3:ListBucket so that a gone
 * object is a 404, not a 403: docs/aws-fidelity.md). Nothing is ever written to such a bucket: rejects, staged
 * copies, the canary and every other object of the pipeline's own go to the bucket the construct creates.
 */
export class ExistingBuckets extends Construct {
  /** The buckets, in the order given. */
  readonly buckets: readonly IBucket[];

  constructor(scope: Construct, id: string, props: ExistingBucketsProps) {
    super(scope, id);
    checkSources(props.sources);
    this.buckets = props.sources.map((source, i) => {
      const bucket = importBucket(this, `Bucket${i}`, source.bucket);
      const prefixes = sourcePrefixes(source);
      const mode = source.notifications ?? 's3-sqs';
      if (mode === 's3-sqs') {
        for (const prefix of prefixes) props.queueDestination(bucket, prefix);
      } else if (mode === 'eventbridge') {
        objectCreatedRule(this, `Rule${i}`, bucket, prefixes, props.fileEvents);
      } else {
        Topic.fromTopicArn(this, `Topic${i}`, mode.snsTopicArn).addSubscription(
          new SqsSubscription(props.fileEvents, { rawMessageDelivery: false }),
        );
      }
      grantReadPrefixes(props.s3Trigger, bucket, prefixes);
      return bucket;
    });
  }
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

function objectCreatedRule(
  scope: Construct,
  id: string,
  bucket: IBucket,
  prefixes: readonly string[],
  queue: Queue,
): void {
  new Rule(scope, id, {
    description: `Object Created in ${bucket.bucketName} under ${prefixes.join(', ')} → file-events queue`,
    eventPattern: objectCreatedPattern(bucket.bucketName, prefixes),
    // The target adds the queue policy: events.amazonaws.com may send, from this rule only.
    targets: [new SqsQueue(queue)],
  });
}

/** An existing bucket from what the props give. */
function importBucket(scope: Construct, id: string, bucket: IBucket | string): IBucket {
  if (typeof bucket !== 'string') return bucket;
  return bucket.startsWith('arn:')
    ? Bucket.fromBucketArn(scope, id, bucket)
    : Bucket.fromBucketName(scope, id, bucket);
}

/**
 * Read access to objects (and their versions) under the prefixes of an existing bucket only, and the listing
 * S3 asks of a reader before it says an object is missing (PulseIngest.grantReadIncoming does the same on
 * the construct's own bucket).
 */
function grantReadPrefixes(fn: PulseFunction, bucket: IBucket, prefixes: readonly string[]): void {
  fn.addToRolePolicy(
    new PolicyStatement({
      actions: ['s3:GetObject', 's3:GetObjectVersion'],
      resources: prefixes.map((p) => bucket.arnForObjects(`${p}*`)),
    }),
  );
  fn.addToRolePolicy(
    new PolicyStatement({
      actions: ['s3:ListBucket'],
      resources: [bucket.bucketArn],
      conditions: { StringLikeIfExists: { 's3:prefix': prefixes.map((p) => `${p}*`) } },
    }),
  );
  NagSuppressions.addResourceSuppressions(
    fn.role ?? fn,
    [
      {
        id: 'AwsSolutions-IAM5',
        reason:
          'The s3-trigger reads whichever object a notification names; the wildcard is the object key under an ingested prefix of an existing bucket.',
        appliesTo: prefixes.map((p) => `Resource::${nagArn(bucket)}/${p}*`),
      },
    ],
    true,
  );
}

/** How cdk-nag writes an imported bucket's ARN in a finding: the literal, or `arn:<AWS::Partition>:…`. */
function nagArn(bucket: IBucket): string {
  const arn = Stack.of(bucket).resolve(bucket.bucketArn) as unknown;
  if (typeof arn === 'string') return arn;
  const join = (arn as { 'Fn::Join'?: [string, unknown[]] })['Fn::Join'];
  if (!join) return String(Token.asString(bucket.bucketArn));
  return join[1].map((part) => (typeof part === 'string' ? part : `<${refName(part)}>`)).join(join[0]);
}

function refName(part: unknown): string {
  const ref = (part as { Ref?: string }).Ref;
  return ref ?? JSON.stringify(part);
}

const SNS_TOPIC_ARN = /^arn:aws[a-z-]*:sns:[a-z0-9-]+:\d{12}:[A-Za-z0-9_-]{1,256}(\.fifo)?$/;

/** Refuses sources S3 or IAM would not take: an empty prefix list, a prefix given twice, one inside another. */
export function checkSources(sources: readonly ExistingBucketSource[]): void {
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
      !Token.isUnresolved(mode.snsTopicArn) &&
      !SNS_TOPIC_ARN.test(mode.snsTopicArn)
    ) {
      problems.push(
        `existingBuckets[${i}].notifications.snsTopicArn: "${mode.snsTopicArn}" is not an SNS topic ARN`,
      );
    }
  });
  if (problems.length > 0) throw new PulsePropsError(`PulseIngest props: ${problems.join('; ')}`);
}
