import type { CreateTableCommandInput } from '@aws-sdk/client-dynamodb';
import {
  CreateTableCommand,
  DeleteTableCommand,
  DescribeTableCommand,
  DescribeTimeToLiveCommand,
  ResourceInUseException,
  ResourceNotFoundException,
  UpdateTimeToLiveCommand,
} from '@aws-sdk/client-dynamodb';
import {
  DeleteRuleCommand,
  type EventBridgeClient,
  PutRuleCommand,
  PutTargetsCommand,
  RemoveTargetsCommand,
} from '@aws-sdk/client-eventbridge';
import type { NotificationConfiguration } from '@aws-sdk/client-s3';
import {
  CreateBucketCommand,
  DeleteBucketCommand,
  DeleteObjectsCommand,
  GetBucketNotificationConfigurationCommand,
  HeadBucketCommand,
  ListObjectVersionsCommand,
  NoSuchBucket,
  PutBucketLifecycleConfigurationCommand,
  PutBucketNotificationConfigurationCommand,
  PutBucketVersioningCommand,
} from '@aws-sdk/client-s3';
import type { QueueAttributeName } from '@aws-sdk/client-sqs';
import {
  CreateQueueCommand,
  DeleteQueueCommand,
  GetQueueAttributesCommand,
  GetQueueUrlCommand,
  QueueDoesNotExist,
  SetQueueAttributesCommand,
} from '@aws-sdk/client-sqs';
import type { AwsClients } from '#shared/clients.ts';
import { notificationFilter } from '#shared/ingest-filters.ts';
import {
  kafkaFailureNoticePattern,
  pendingScoresExpirationDays,
  settings,
  visibilityTimeoutFor,
} from '#shared/settings.ts';
import type { ResourceNames } from './names.ts';

/** The queues a function consumes (each has a DLQ). */
export type ConsumedQueue = 'fileEvents' | 'signals';
/** `kafkaFailures`: the notices of the Kafka failures bucket (one per object created there). */
export type QueueKey = ConsumedQueue | 'fileEventsDlq' | 'signalsDlq' | 'kafkaFailures';

export interface QueueRef {
  readonly name: string;
  readonly url: string;
  readonly arn: string;
}

export interface CreateResourcesOptions {
  /**
   * Visibility timeout of a consumed queue, in seconds. Tests want short ones (1..5 s) so that
   * failed messages come back quickly.
   * @default visibilityTimeoutFor(the consuming function's timeout), as in the stack
   */
  readonly visibilityTimeoutSeconds?: Partial<Record<ConsumedQueue, number>>;
  /**
   * Deliveries before a message moves to the queue's DLQ.
   * @default settings.fileEvents.maxReceiveCount / settings.signals.maxReceiveCount
   */
  readonly maxReceiveCount?: Partial<Record<ConsumedQueue, number>>;
  /** The prefixes the bucket notifies under (`ingestPrefixes` of the routes). @default the default route's */
  readonly ingestPrefixes?: readonly string[];
}

export interface LocalResources {
  readonly names: ResourceNames;
  readonly bucket: string;
  /** The Kafka event source's on-failure destination. */
  readonly kafkaFailuresBucket: string;
  readonly queues: Readonly<Record<QueueKey, QueueRef>>;
  readonly tables: { readonly ledger: string; readonly scores: string; readonly anomalies: string };
  readonly scoresBucket: string;
}

/** The clients createResources needs. */
export type ResourceClients = Pick<AwsClients, 's3' | 'sqs' | 'ddb'> & { readonly events: EventBridgeClient };

const DAY_SECONDS = 86_400;

/** Name of the ledger's index on status (partition) and updatedAt (sort). */
export const LEDGER_STATUS_INDEX = settings.ledger.statusIndex;
/** Attribute the scores table expires items on (DynamoDB TTL, epoch seconds). */
export const SCORES_TTL_ATTRIBUTE = settings.scoring.ttlAttribute;

/** The consuming function's timeout, which the stack derives each queue's visibility timeout from. */
const consumerTimeoutSeconds: Record<ConsumedQueue, number> = {
  fileEvents: settings.functions.s3Trigger.timeoutSeconds,
  signals: settings.functions.scorer.timeoutSeconds,
};

/**
 * The attributes of a consumed queue, from the settings the stack also reads (and the overrides).
 * `dlqArn` is the target of its RedrivePolicy.
 */
export function queueAttributes(
  which: ConsumedQueue,
  dlqArn: string,
  options: CreateResourcesOptions = {},
): Partial<Record<QueueAttributeName, string>> {
  const cfg = settings[which];
  const attributes: Partial<Record<QueueAttributeName, string>> = {
    VisibilityTimeout: String(
      options.visibilityTimeoutSeconds?.[which] ?? visibilityTimeoutFor(consumerTimeoutSeconds[which]),
    ),
    MessageRetentionPeriod: String(cfg.retentionDays * DAY_SECONDS),
    RedrivePolicy: JSON.stringify({
      deadLetterTargetArn: dlqArn,
      maxReceiveCount: options.maxReceiveCount?.[which] ?? cfg.maxReceiveCount,
    }),
  };
  if (which === 'signals') {
    attributes.MaximumMessageSize = String(settings.signals.queueMaximumMessageBytes);
  }
  return attributes;
}

/** The attributes of a dead-letter queue. */
export function dlqAttributes(): Partial<Record<QueueAttributeName, string>> {
  return { MessageRetentionPeriod: String(settings.dlqRetentionDays * DAY_SECONDS) };
}

/**
 * The bucket's notification configuration, as the stack declares it: ObjectCreated of every object under
 * each route prefix (`ingestPrefixes` in infra/routes.ts; s3-trigger reads the keys a route takes and
 * records the others as SKIPPED), one configuration per prefix (shared/ingest-filters.ts).
 */
export function bucketNotificationConfiguration(
  fileEventsQueueArn: string,
  prefixes: readonly string[] = [settings.routes.defaultPrefix],
): NotificationConfiguration {
  return {
    QueueConfigurations: prefixes.map((prefix, i) => ({
      Id: i === 0 ? 'ingest' : `ingest-${i}`,
      QueueArn: fileEventsQueueArn,
      Events: ['s3:ObjectCreated:*'],
      Filter: notificationFilter(prefix),
    })),
  };
}

/**
 * The Kafka failures bucket's notification configuration, as the stack declares it: its events go to
 * EventBridge, where a rule ({@link kafkaFailureNoticePattern}) puts each "Object Created" (a batch the
 * Kafka event source discarded) on the notices queue, which alarms.
 */
export function kafkaFailuresNotificationConfiguration(): NotificationConfiguration {
  return { EventBridgeConfiguration: {} };
}

/** The ledger table: one item per object version, with an index to list items by status. */
export function ledgerTableInput(tableName: string): CreateTableCommandInput {
  return {
    TableName: tableName,
    BillingMode: 'PAY_PER_REQUEST',
    AttributeDefinitions: [
      { AttributeName: 'pk', AttributeType: 'S' },
      { AttributeName: 'sk', AttributeType: 'S' },
      { AttributeName: 'status', AttributeType: 'S' },
      { AttributeName: 'updatedAt', AttributeType: 'S' },
    ],
    KeySchema: [
      { AttributeName: 'pk', KeyType: 'HASH' },
      { AttributeName: 'sk', KeyType: 'RANGE' },
    ],
    GlobalSecondaryIndexes: [
      {
        IndexName: LEDGER_STATUS_INDEX,
        KeySchema: [
          { AttributeName: 'status', KeyType: 'HASH' },
          { AttributeName: 'updatedAt', KeyType: 'RANGE' },
        ],
        Projection: { ProjectionType: 'ALL' },
      },
    ],
  };
}

/** The scores table: series states, applied positions, id items, totals (docs/scoring.md). */
export function scoresTableInput(tableName: string): CreateTableCommandInput {
  return {
    TableName: tableName,
    BillingMode: 'PAY_PER_REQUEST',
    AttributeDefinitions: [{ AttributeName: 'pk', AttributeType: 'S' }],
    KeySchema: [{ AttributeName: 'pk', KeyType: 'HASH' }],
  };
}

/** The anomalies table: one item per anomaly by series, with the index of recent anomalies by day. */
export function anomaliesTableInput(tableName: string): CreateTableCommandInput {
  return {
    TableName: tableName,
    BillingMode: 'PAY_PER_REQUEST',
    AttributeDefinitions: [
      { AttributeName: 'series', AttributeType: 'S' },
      { AttributeName: 'at', AttributeType: 'S' },
      { AttributeName: 'day', AttributeType: 'S' },
      { AttributeName: 'scoredAt', AttributeType: 'S' },
    ],
    KeySchema: [
      { AttributeName: 'series', KeyType: 'HASH' },
      { AttributeName: 'at', KeyType: 'RANGE' },
    ],
    GlobalSecondaryIndexes: [
      {
        IndexName: settings.scores.recentAnomaliesIndex,
        KeySchema: [
          { AttributeName: 'day', KeyType: 'HASH' },
          { AttributeName: 'scoredAt', KeyType: 'RANGE' },
        ],
        Projection: { ProjectionType: 'ALL' },
      },
    ],
  };
}

/**
 * The scores bucket's lifecycle rules, as the stack declares them: pending objects expire after any
 * message that could recover them (moto keeps the rules but never applies them).
 */
export function scoresBucketLifecycle() {
  return {
    Rules: [
      {
        ID: 'pending-scores',
        Status: 'Enabled' as const,
        Filter: { Prefix: settings.scores.pendingPrefix },
        Expiration: { Days: pendingScoresExpirationDays() },
      },
      {
        ID: 'abort-multipart',
        Status: 'Enabled' as const,
        Filter: { Prefix: '' },
        AbortIncompleteMultipartUpload: {
          DaysAfterInitiation: settings.bucket.abortIncompleteMultipartUploadDays,
        },
      },
    ],
  };
}

/**
 * Creates (or brings up to date) the bucket, queues, DLQs and tables of one offline deployment, with
 * the settings the CDK stack uses. Idempotent: run it on every start. Returns names, URLs and ARNs.
 */
export async function createResources(
  clients: ResourceClients,
  names: ResourceNames,
  options: CreateResourcesOptions = {},
): Promise<LocalResources> {
  const [fileEventsDlq, signalsDlq, kafkaFailures] = await Promise.all([
    ensureQueue(clients, names.fileEventsDlq, dlqAttributes()),
    ensureQueue(clients, names.signalsDlq, dlqAttributes()),
    ensureQueue(clients, names.kafkaFailureNotices, dlqAttributes()),
  ]);
  // A RedrivePolicy can only name a DLQ that exists, hence two steps.
  const [fileEvents, signals] = await Promise.all([
    ensureQueue(clients, names.fileEventsQueue, queueAttributes('fileEvents', fileEventsDlq.arn, options)),
    ensureQueue(clients, names.signalsQueue, queueAttributes('signals', signalsDlq.arn, options)),
  ]);
  await Promise.all([
    ensureBucket(
      clients,
      names.bucket,
      bucketNotificationConfiguration(fileEvents.arn, options.ingestPrefixes),
    ),
    ensureBucket(clients, names.kafkaFailuresBucket, kafkaFailuresNotificationConfiguration()).then(() =>
      ensureNoticeRule(clients, names, kafkaFailures.arn),
    ),
    ensureTable(clients, ledgerTableInput(names.ledgerTable)),
    ensureTable(clients, scoresTableInput(names.scoresTable)).then(() =>
      ensureTtl(clients, names.scoresTable, SCORES_TTL_ATTRIBUTE),
    ),
    ensureTable(clients, anomaliesTableInput(names.anomaliesTable)),
    ensureScoresBucket(clients, names.scoresBucket),
  ]);
  return {
    names,
    bucket: names.bucket,
    kafkaFailuresBucket: names.kafkaFailuresBucket,
    queues: { fileEvents, fileEventsDlq, signals, signalsDlq, kafkaFailures },
    tables: { ledger: names.ledgerTable, scores: names.scoresTable, anomalies: names.anomaliesTable },
    scoresBucket: names.scoresBucket,
  };
}

/**
 * Deletes what {@link createResources} made (every object version in the bucket included). Missing
 * resources are ignored. For tests and `pulse local down`.
 */
export async function deleteResources(clients: ResourceClients, names: ResourceNames): Promise<void> {
  const queues = [
    names.fileEventsQueue,
    names.signalsQueue,
    names.fileEventsDlq,
    names.signalsDlq,
    names.kafkaFailureNotices,
  ];
  await deleteNoticeRule(clients, names);
  await Promise.all([
    emptyAndDeleteBucket(clients, names.bucket),
    emptyAndDeleteBucket(clients, names.kafkaFailuresBucket),
    emptyAndDeleteBucket(clients, names.scoresBucket),
    ...queues.map(async (name) => {
      try {
        const { QueueUrl } = await clients.sqs.send(new GetQueueUrlCommand({ QueueName: name }));
        await clients.sqs.send(new DeleteQueueCommand({ QueueUrl }));
      } catch (err) {
        if (!(err instanceof QueueDoesNotExist)) throw err;
      }
    }),
    ...[names.ledgerTable, names.scoresTable, names.anomaliesTable].map(async (TableName) => {
      try {
        await clients.ddb.send(new DeleteTableCommand({ TableName }));
      } catch (err) {
        if (!(err instanceof ResourceNotFoundException)) throw err;
      }
    }),
  ]);
}

export async function ensureQueue(
  clients: ResourceClients,
  name: string,
  attributes: Partial<Record<QueueAttributeName, string>>,
): Promise<QueueRef> {
  // CreateQueue without attributes is idempotent; SetQueueAttributes then converges an existing queue.
  const { QueueUrl: url } = await clients.sqs.send(new CreateQueueCommand({ QueueName: name }));
  if (!url) throw new Error(`CreateQueue ${name} returned no QueueUrl`);
  await clients.sqs.send(new SetQueueAttributesCommand({ QueueUrl: url, Attributes: attributes }));
  const out = await clients.sqs.send(
    new GetQueueAttributesCommand({ QueueUrl: url, AttributeNames: ['QueueArn'] }),
  );
  const arn = out.Attributes?.QueueArn;
  if (!arn) throw new Error(`GetQueueAttributes ${name} returned no QueueArn`);
  return { name, url, arn };
}

async function bucketExists(clients: ResourceClients, bucket: string): Promise<boolean> {
  try {
    await clients.s3.send(new HeadBucketCommand({ Bucket: bucket }));
    return true;
  } catch (err) {
    if ((err as Error).name === 'NotFound' || (err as Error).name === 'NoSuchBucket') return false;
    throw err;
  }
}

/** The scores bucket: unversioned, with the stack's lifecycle rules. */
async function ensureScoresBucket(clients: ResourceClients, bucket: string): Promise<void> {
  if (!(await bucketExists(clients, bucket))) {
    try {
      await clients.s3.send(new CreateBucketCommand({ Bucket: bucket }));
    } catch (err) {
      const name = (err as Error).name;
      if (name !== 'BucketAlreadyOwnedByYou' && name !== 'BucketAlreadyExists') throw err;
    }
  }
  await clients.s3.send(
    new PutBucketLifecycleConfigurationCommand({
      Bucket: bucket,
      LifecycleConfiguration: scoresBucketLifecycle(),
    }),
  );
}

/** Creates (or keeps) a versioned bucket with this notification configuration. */
async function ensureBucket(
  clients: ResourceClients,
  bucket: string,
  wanted: NotificationConfiguration,
): Promise<void> {
  // Head first: in us-east-1 CreateBucket on a bucket one owns succeeds, and moto then replaces the
  // bucket with an empty one, which would lose the offline run's objects.
  if (!(await bucketExists(clients, bucket))) {
    try {
      await clients.s3.send(new CreateBucketCommand({ Bucket: bucket }));
    } catch (err) {
      const name = (err as Error).name;
      if (name !== 'BucketAlreadyOwnedByYou' && name !== 'BucketAlreadyExists') throw err;
      await clients.s3.send(new HeadBucketCommand({ Bucket: bucket }));
    }
  }
  await clients.s3.send(
    new PutBucketVersioningCommand({ Bucket: bucket, VersioningConfiguration: { Status: 'Enabled' } }),
  );
  const current = await clients.s3.send(new GetBucketNotificationConfigurationCommand({ Bucket: bucket }));
  // Each put makes S3 send an s3:TestEvent to the queue: only put when something changed.
  if (notificationKey(current) !== notificationKey(wanted)) {
    await clients.s3.send(
      new PutBucketNotificationConfigurationCommand({ Bucket: bucket, NotificationConfiguration: wanted }),
    );
  }
}

/**
 * The EventBridge rule (on the default bus) that puts the failures bucket's "Object Created" events on the
 * notices queue, as the stack's rule does. PutRule and PutTargets replace what exists: idempotent.
 */
async function ensureNoticeRule(clients: ResourceClients, names: ResourceNames, queueArn: string) {
  await clients.events.send(
    new PutRuleCommand({
      Name: names.kafkaFailuresRule,
      EventPattern: JSON.stringify(kafkaFailureNoticePattern(names.kafkaFailuresBucket)),
      State: 'ENABLED',
    }),
  );
  await clients.events.send(
    new PutTargetsCommand({ Rule: names.kafkaFailuresRule, Targets: [{ Id: 'notices', Arn: queueArn }] }),
  );
}

async function deleteNoticeRule(clients: ResourceClients, names: ResourceNames): Promise<void> {
  try {
    await clients.events.send(new RemoveTargetsCommand({ Rule: names.kafkaFailuresRule, Ids: ['notices'] }));
    await clients.events.send(new DeleteRuleCommand({ Name: names.kafkaFailuresRule }));
  } catch (err) {
    if ((err as Error).name !== 'ResourceNotFoundException') throw err;
  }
}

/** A canonical form of a notification configuration, to compare the stored one with the wanted one. */
function notificationKey(config: NotificationConfiguration): string {
  const queues = (config.QueueConfigurations ?? []).map((q) =>
    JSON.stringify([
      q.Id,
      q.QueueArn,
      [...(q.Events ?? [])].sort(),
      (q.Filter?.Key?.FilterRules ?? []).map((r) => `${r.Name?.toLowerCase()}=${r.Value}`).sort(),
    ]),
  );
  const others =
    (config.TopicConfigurations?.length ?? 0) + (config.LambdaFunctionConfigurations?.length ?? 0);
  return JSON.stringify([queues.sort(), others, config.EventBridgeConfiguration !== undefined]);
}

async function ensureTable(clients: ResourceClients, input: CreateTableCommandInput): Promise<void> {
  try {
    await clients.ddb.send(new CreateTableCommand(input));
  } catch (err) {
    if (!(err instanceof ResourceInUseException)) throw err;
  }
  for (let i = 0; ; i++) {
    const { Table } = await clients.ddb.send(new DescribeTableCommand({ TableName: input.TableName }));
    if (Table?.TableStatus === 'ACTIVE') return;
    if (i >= 300) throw new Error(`table ${input.TableName} is still ${Table?.TableStatus} after 30 s`);
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}

async function ensureTtl(clients: ResourceClients, tableName: string, attribute: string): Promise<void> {
  const { TimeToLiveDescription: ttl } = await clients.ddb.send(
    new DescribeTimeToLiveCommand({ TableName: tableName }),
  );
  if (ttl?.TimeToLiveStatus === 'ENABLED' && ttl.AttributeName === attribute) return;
  await clients.ddb.send(
    new UpdateTimeToLiveCommand({
      TableName: tableName,
      TimeToLiveSpecification: { Enabled: true, AttributeName: attribute },
    }),
  );
}

async function emptyAndDeleteBucket(clients: ResourceClients, bucket: string): Promise<void> {
  try {
    let keyMarker: string | undefined;
    let versionIdMarker: string | undefined;
    do {
      const page = await clients.s3.send(
        new ListObjectVersionsCommand({
          Bucket: bucket,
          KeyMarker: keyMarker,
          VersionIdMarker: versionIdMarker,
        }),
      );
      const objects = [...(page.Versions ?? []), ...(page.DeleteMarkers ?? [])].map((v) => ({
        Key: v.Key,
        VersionId: v.VersionId,
      }));
      if (objects.length > 0) {
        await clients.s3.send(
          new DeleteObjectsCommand({ Bucket: bucket, Delete: { Objects: objects, Quiet: true } }),
        );
      }
      keyMarker = page.IsTruncated ? page.NextKeyMarker : undefined;
      versionIdMarker = page.IsTruncated ? page.NextVersionIdMarker : undefined;
    } while (keyMarker !== undefined);
    await clients.s3.send(new DeleteBucketCommand({ Bucket: bucket }));
  } catch (err) {
    if (!(err instanceof NoSuchBucket) && (err as Error).name !== 'NoSuchBucket') throw err;
  }
}
