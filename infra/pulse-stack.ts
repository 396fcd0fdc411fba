import { CfnOutput, Duration, RemovalPolicy, Stack, type StackProps } from 'aws-cdk-lib';
import { AttributeType, BillingMode, ProjectionType, Table, TableEncryption } from 'aws-cdk-lib/aws-dynamodb';
import { PolicyStatement } from 'aws-cdk-lib/aws-iam';
import { SqsEventSource } from 'aws-cdk-lib/aws-lambda-event-sources';
import { BlockPublicAccess, Bucket, BucketEncryption, EventType } from 'aws-cdk-lib/aws-s3';
import { SqsDestination } from 'aws-cdk-lib/aws-s3-notifications';
import { Queue, QueueEncryption } from 'aws-cdk-lib/aws-sqs';
import type { Construct } from 'constructs';
import { settings, visibilityTimeoutFor } from '../shared/settings.ts';
import { PulseFunction } from './constructs/pulse-function.ts';

/** Names of the stack outputs; the CLI reads a deployed stack through them. */
export const OUTPUTS = {
  bucket: 'BucketName',
  fileEventsQueue: 'FileEventsQueueUrl',
  fileEventsDlq: 'FileEventsDlqUrl',
  signalsQueue: 'SignalsQueueUrl',
  signalsDlq: 'SignalsDlqUrl',
  ledgerTable: 'LedgerTableName',
  scoresTable: 'ScoresTableName',
} as const;

export type PulseStackProps = StackProps;

/**
 * The S3 path: ingest bucket → file-events queue → s3-trigger → signals queue → scorer, with the file
 * ledger, the scores table, and a DLQ behind each queue. Every number comes from shared/settings.ts,
 * which the offline runtime reads too.
 */
export class PulseStack extends Stack {
  readonly bucket: Bucket;
  readonly fileEvents: Queue;
  readonly fileEventsDlq: Queue;
  readonly signals: Queue;
  readonly signalsDlq: Queue;
  readonly ledger: Table;
  readonly scores: Table;
  readonly s3Trigger: PulseFunction;
  readonly scorer: PulseFunction;

  constructor(scope: Construct, id: string, props: PulseStackProps = {}) {
    super(scope, id, props);
    const fn = settings.functions;

    this.bucket = new Bucket(this, 'IngestBucket', {
      versioned: true,
      encryption: BucketEncryption.S3_MANAGED,
      blockPublicAccess: BlockPublicAccess.BLOCK_ALL,
      enforceSSL: true,
      removalPolicy: RemovalPolicy.RETAIN,
      lifecycleRules: [
        { abortIncompleteMultipartUploadAfter: Duration.days(7) },
        { noncurrentVersionExpiration: Duration.days(30) },
      ],
    });

    this.fileEventsDlq = this.deadLetterQueue('FileEventsDlq');
    this.fileEvents = new Queue(this, 'FileEvents', {
      encryption: QueueEncryption.SQS_MANAGED,
      enforceSSL: true,
      visibilityTimeout: Duration.seconds(visibilityTimeoutFor(fn.s3Trigger.timeoutSeconds)),
      retentionPeriod: Duration.days(settings.fileEvents.retentionDays),
      deadLetterQueue: { queue: this.fileEventsDlq, maxReceiveCount: settings.fileEvents.maxReceiveCount },
    });
    this.signalsDlq = this.deadLetterQueue('SignalsDlq');
    this.signals = new Queue(this, 'Signals', {
      encryption: QueueEncryption.SQS_MANAGED,
      enforceSSL: true,
      visibilityTimeout: Duration.seconds(visibilityTimeoutFor(fn.scorer.timeoutSeconds)),
      retentionPeriod: Duration.days(settings.signals.retentionDays),
      maxMessageSizeBytes: settings.signals.queueMaximumMessageBytes,
      deadLetterQueue: { queue: this.signalsDlq, maxReceiveCount: settings.signals.maxReceiveCount },
    });

    const destination = new SqsDestination(this.fileEvents);
    for (const suffix of settings.bucket.suffixes) {
      this.bucket.addEventNotification(EventType.OBJECT_CREATED, destination, {
        prefix: settings.bucket.incomingPrefix,
        suffix,
      });
    }

    this.ledger = new Table(this, 'Ledger', {
      partitionKey: { name: 'pk', type: AttributeType.STRING },
      sortKey: { name: 'sk', type: AttributeType.STRING },
      billingMode: BillingMode.PAY_PER_REQUEST,
      pointInTimeRecoverySpecification: { pointInTimeRecoveryEnabled: true },
      encryption: TableEncryption.AWS_MANAGED,
      removalPolicy: RemovalPolicy.RETAIN,
    });
    this.ledger.addGlobalSecondaryIndex({
      indexName: 'byStatus',
      partitionKey: { name: 'status', type: AttributeType.STRING },
      sortKey: { name: 'updatedAt', type: AttributeType.STRING },
      projectionType: ProjectionType.ALL,
    });
    this.scores = new Table(this, 'Scores', {
      partitionKey: { name: 'pk', type: AttributeType.STRING },
      billingMode: BillingMode.PAY_PER_REQUEST,
      pointInTimeRecoverySpecification: { pointInTimeRecoveryEnabled: true },
      encryption: TableEncryption.AWS_MANAGED,
      timeToLiveAttribute: 'expiresAt',
      removalPolicy: RemovalPolicy.RETAIN,
    });

    const incomingObjects = this.bucket.arnForObjects(`${settings.bucket.incomingPrefix}*`);
    const rejectObjects = this.bucket.arnForObjects(`${settings.bucket.rejectsPrefix}*`);
    const writeRejects = new PolicyStatement({
      actions: ['s3:PutObject', 's3:AbortMultipartUpload'],
      resources: [rejectObjects],
    });

    this.s3Trigger = new PulseFunction(this, 'S3Trigger', {
      name: 's3-trigger',
      timeoutSeconds: fn.s3Trigger.timeoutSeconds,
      memoryMb: fn.s3Trigger.memoryMb,
      environment: {
        SIGNALS_QUEUE_URL: this.signals.queueUrl,
        LEDGER_TABLE: this.ledger.tableName,
        QUARANTINE_BUCKET: this.bucket.bucketName,
      },
    });
    this.s3Trigger.addToRolePolicy(
      new PolicyStatement({ actions: ['s3:GetObject', 's3:GetObjectVersion'], resources: [incomingObjects] }),
    );
    this.s3Trigger.addToRolePolicy(writeRejects);
    this.s3Trigger.addToRolePolicy(
      new PolicyStatement({
        actions: ['dynamodb:GetItem', 'dynamodb:PutItem', 'dynamodb:UpdateItem'],
        resources: [this.ledger.tableArn],
      }),
    );
    this.signals.grantSendMessages(this.s3Trigger);
    this.s3Trigger.addEventSource(
      new SqsEventSource(this.fileEvents, {
        batchSize: settings.fileEvents.batchSize,
        ...(settings.fileEvents.maxBatchingWindowSeconds > 0
          ? { maxBatchingWindow: Duration.seconds(settings.fileEvents.maxBatchingWindowSeconds) }
          : {}),
        reportBatchItemFailures: true,
      }),
    );

    this.scorer = new PulseFunction(this, 'Scorer', {
      name: 'scorer',
      timeoutSeconds: fn.scorer.timeoutSeconds,
      memoryMb: fn.scorer.memoryMb,
      environment: {
        SCORES_TABLE: this.scores.tableName,
        QUARANTINE_BUCKET: this.bucket.bucketName,
      },
    });
    this.scorer.addToRolePolicy(
      new PolicyStatement({
        // TransactWriteItems is authorised through the actions of the items it holds (Put here).
        actions: [
          'dynamodb:GetItem',
          'dynamodb:BatchGetItem',
          'dynamodb:PutItem',
          'dynamodb:ConditionCheckItem',
        ],
        resources: [this.scores.tableArn],
      }),
    );
    this.scorer.addToRolePolicy(writeRejects);
    this.scorer.addEventSource(
      new SqsEventSource(this.signals, {
        batchSize: settings.signals.batchSize,
        maxBatchingWindow: Duration.seconds(settings.signals.maxBatchingWindowSeconds),
        reportBatchItemFailures: true,
      }),
    );

    const out = (id: string, value: string, description: string) =>
      new CfnOutput(this, id, { value, description });
    out(OUTPUTS.bucket, this.bucket.bucketName, 'Drop files under incoming/; rejects land under rejects/');
    out(OUTPUTS.fileEventsQueue, this.fileEvents.queueUrl, 'S3 ObjectCreated notifications');
    out(OUTPUTS.fileEventsDlq, this.fileEventsDlq.queueUrl, 'File events that could not be handled');
    out(OUTPUTS.signalsQueue, this.signals.queueUrl, 'Packed signals awaiting scoring');
    out(OUTPUTS.signalsDlq, this.signalsDlq.queueUrl, 'Signal messages that could not be scored');
    out(OUTPUTS.ledgerTable, this.ledger.tableName, 'One item per object version');
    out(OUTPUTS.scoresTable, this.scores.tableName, 'Scores and series state');
  }

  private deadLetterQueue(id: string): Queue {
    return new Queue(this, id, {
      encryption: QueueEncryption.SQS_MANAGED,
      enforceSSL: true,
      retentionPeriod: Duration.days(settings.dlqRetentionDays),
    });
  }
}
