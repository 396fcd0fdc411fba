import { Duration, Stack } from 'aws-cdk-lib';
import { Rule } from 'aws-cdk-lib/aws-events';
import { SqsQueue } from 'aws-cdk-lib/aws-events-targets';
import { PolicyStatement } from 'aws-cdk-lib/aws-iam';
import type {
  DlqDestinationConfig,
  IEventSourceDlq,
  IEventSourceMapping,
  IFunction,
} from 'aws-cdk-lib/aws-lambda';
import { Bucket, type IBucket } from 'aws-cdk-lib/aws-s3';
import { Queue, QueueEncryption } from 'aws-cdk-lib/aws-sqs';
import { NagSuppressions } from 'cdk-nag';
import { Construct } from 'constructs';
import { kafkaFailureNoticePattern, settings } from '#shared/settings.ts';
import { SECURE_BUCKET } from './constructs/secure-defaults.ts';

export interface KafkaFailuresProps {
  /** Days a failure object is kept (the deployment's, settings.kafka.failures.retentionDays by default). */
  readonly retentionDays: number;
  /** Days the notices queue keeps a notice (the deployment's DLQ retention). */
  readonly dlqRetentionDays: number;
  /** Where the bucket's server access logs go. @default none (cdk-nag then reports the bucket) */
  readonly accessLogs?: IBucket;
}

/**
 * The Kafka event source's on-failure destination: a bucket of its own where Lambda writes each batch it
 * discards after its retries, as one JSON object holding the invocation record and the whole event
 * (`payload`), so the records outlive the topic's retention and `pulse kafka replay` can feed them back.
 * Every object created there also lands, as S3's "Object Created" event routed by an EventBridge rule, on
 * the `notices` queue, whose first message is an alarm (the bucket itself has no metric a first object would
 * move at once). EventBridge rather than an S3 → SQS notification: S3 sends such a notification's queue a
 * test event whenever the configuration is written, which would fire the alarm at every deploy.
 */
export class KafkaFailures extends Construct {
  readonly bucket: Bucket;
  /** One S3 ObjectCreated notification per failure object; `pulse kafka replay` deletes those it replayed. */
  readonly notices: Queue;

  constructor(scope: Construct, id: string, props: KafkaFailuresProps) {
    super(scope, id);
    const f = settings.kafka.failures;
    this.bucket = new Bucket(this, 'Bucket', {
      ...SECURE_BUCKET,
      // Lambda's docs recommend versioning on an S3 destination: an overwritten key keeps its records.
      versioned: true,
      eventBridgeEnabled: true,
      lifecycleRules: [
        {
          expiration: Duration.days(props.retentionDays),
          noncurrentVersionExpiration: Duration.days(f.noncurrentRetentionDays),
          abortIncompleteMultipartUploadAfter: Duration.days(1),
        },
      ],
      ...(props.accessLogs
        ? { serverAccessLogsBucket: props.accessLogs, serverAccessLogsPrefix: 'kafka-failures/' }
        : {}),
    });
    this.notices = new Queue(this, 'Notices', {
      encryption: QueueEncryption.SQS_MANAGED,
      enforceSSL: true,
      retentionPeriod: Duration.days(props.dlqRetentionDays),
    });
    NagSuppressions.addResourceSuppressions(this.notices, [
      {
        id: 'AwsSolutions-SQS3',
        reason:
          'No function consumes this queue: it holds one "Object Created" event per Kafka failure object (routed by an EventBridge rule), alarms on its first message, and `pulse kafka replay` deletes the notices of what it replayed. A DLQ behind it would never receive anything.',
      },
    ]);
    // Every key: the key Lambda gives a failure object is documented for Kinesis and DynamoDB streams
    // (`aws/lambda/<ESM-UUID>/<shard>/…`), not for Kafka, and nothing else writes to this bucket.
    const pattern = kafkaFailureNoticePattern(this.bucket.bucketName);
    new Rule(this, 'ObjectCreated', {
      description: 'A Kafka batch the event source discarded was written to the failures bucket',
      eventPattern: { source: pattern.source, detailType: pattern['detail-type'], detail: pattern.detail },
      targets: [new SqsQueue(this.notices)],
    });
  }
}

/**
 * The bucket as the on-failure destination of a Kafka event source mapping, granting what Lambda's docs
 * list for an S3 destination and nothing more: s3:PutObject on the bucket's objects and s3:ListBucket on
 * the bucket, both only while the bucket is in this account (`s3:ResourceAccount`: a bucket of the same
 * name re-created elsewhere after ours is deleted never receives the records). CDK's
 * S3OnFailureDestination grants read and write on the whole bucket instead.
 */
export class S3WriteOnlyKafkaDestination implements IEventSourceDlq {
  constructor(private readonly bucket: IBucket) {}

  bind(_target: IEventSourceMapping, targetHandler: IFunction): DlqDestinationConfig {
    const inThisAccount = { StringEquals: { 's3:ResourceAccount': Stack.of(this.bucket).account } };
    targetHandler.addToRolePolicy(
      new PolicyStatement({
        actions: ['s3:PutObject'],
        resources: [this.bucket.arnForObjects('*')],
        conditions: inThisAccount,
      }),
    );
    targetHandler.addToRolePolicy(
      new PolicyStatement({
        actions: ['s3:ListBucket'],
        resources: [this.bucket.bucketArn],
        conditions: inThisAccount,
      }),
    );
    return { destination: this.bucket.bucketArn };
  }
}
