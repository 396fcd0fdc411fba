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
import { objectCreatedPattern } from '#shared/ingest-filters.ts';
import type { PulseFunction } from './constructs/pulse-function.ts';
import { type ExistingBucketSource, sourcePrefixes, sourceProblems } from './existing-bucket-sources.ts';
import { PulsePropsError } from './props.ts';

export {
  type BucketNotifications,
  type ExistingBucketSource,
  ExistingBucketsContextSchema,
  existingBucketsOf,
  sourceBucketName,
  sourcePrefixes,
} from './existing-bucket-sources.ts';

/** Refuses sources S3 or IAM would not take (infra/existing-bucket-sources.ts's `sourceProblems`). */
export function checkSources(sources: readonly ExistingBucketSource[]): void {
  const problems = sourceProblems(sources, (v) => Token.isUnresolved(v));
  if (problems.length > 0) throw new PulsePropsError(`PulseIngest props: ${problems.join('; ')}`);
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
