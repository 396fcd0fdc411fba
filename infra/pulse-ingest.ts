import { CfnOutput, type CfnResource, Duration, Stack } from 'aws-cdk-lib';
import { AttributeType, ProjectionType, Table } from 'aws-cdk-lib/aws-dynamodb';
import {
  DataFormat,
  Database as GlueDatabase,
  PartitionProjectionConfiguration,
  S3Table,
  S3TableStorage,
  Schema,
} from 'aws-cdk-lib/aws-glue';
import { PolicyStatement, ServicePrincipal } from 'aws-cdk-lib/aws-iam';
import { SqsEventSource } from 'aws-cdk-lib/aws-lambda-event-sources';
import {
  Bucket,
  type BucketNotificationDestinationConfig,
  BucketNotificationDestinationType,
  type CfnBucket,
  EventType,
  type IBucket,
  type IBucketNotificationDestination,
} from 'aws-cdk-lib/aws-s3';
import { type IQueue, Queue, QueueEncryption } from 'aws-cdk-lib/aws-sqs';
import { NagSuppressions } from 'cdk-nag';
import { Construct, type IConstruct } from 'constructs';
import { ENV, OUTPUTS } from '#shared/contract.ts';
import { routesEnv } from '#shared/routes.ts';
import { pendingScoresExpirationDays, settings, visibilityTimeoutFor } from '#shared/settings.ts';
import { PulseFunction } from './constructs/pulse-function.ts';
import { SECURE_BUCKET, SECURE_TABLE } from './constructs/secure-defaults.ts';
import {
  checkSources,
  type ExistingBucketSource,
  ExistingBuckets,
  sourceBucketName,
  sourcePrefixes,
} from './existing-buckets.ts';
import { registryValueFormatProblems } from './kafka-schema-registry.ts';
import { LedgerSweep } from './ledger-sweep.ts';
import { Monitoring } from './monitoring.ts';
import { NOTIFICATIONS_HANDLER_ID, retainNotificationsHandlerLogs } from './notifications-handler-logs.ts';
import { Producers } from './producers.ts';
import {
  checkKafkaSource,
  type DatabaseSource,
  type KafkaSource,
  type PulseDeployment,
  PulsePropsError,
  type PulseTuningProps,
  resolveDeployment,
} from './props.ts';
import { ingestPrefixes, routesAfterSuccess, routesWithExistingBuckets } from './routes.ts';

/**
 * The props of {@link PulseIngest}: its sources, where alarms go, its stage, and every tuning value of
 * {@link PulseTuningProps} (each defaulting to `shared/settings.ts`).
 */
export interface PulseIngestProps extends PulseTuningProps {
  /**
   * Several copies in one account and region: the stage is part of every name the deployment gives (alarm
   * names, the Glue database). The project's app also puts it in the stack name (`PulseIngest-<stage>`).
   * 1-20 lowercase letters, digits or hyphens.
   * @default none: names start with `PulseIngest`
   */
  readonly stage?: string;
  /** The database the poller reads. @default none: the poller is deployed with its schedule disabled */
  readonly database?: DatabaseSource;
  /** The Kafka cluster and topic the consumer reads. @default none: no Kafka event source */
  readonly kafka?: KafkaSource;
  /** Subscribe this address to the alarm topic. @default no subscription */
  readonly alarmEmail?: string;
  /**
   * Keep the buckets' server access logs in a bucket of their own.
   * @default true
   */
  readonly serverAccessLogs?: boolean;
  /**
   * Buckets the user already has, each ingested from its prefixes through S3 → SQS notifications, EventBridge
   * or an SNS topic (infra/existing-buckets.ts). The construct's own bucket is created and ingested from as
   * well: it holds the pipeline's objects (rejects, staged copies, the canary), which never go to these.
   * @default none
   */
  readonly existingBuckets?: readonly ExistingBucketSource[];
}

/** A queue consumed by a function, and the dead-letter queue behind it. */
interface ConsumedQueue {
  readonly queue: Queue;
  readonly dlq: Queue;
}

/**
 * The whole pipeline: ingest bucket → file-events queue → s3-trigger → signals queue → scorer, with the file
 * ledger, the scores tables and bucket, a DLQ behind each queue, the db-poller and the kafka-consumer, the
 * ledger sweep, and the dashboard and alarms. Every value a deployment may change is a prop, its default
 * from shared/settings.ts (which the offline runtime reads too); {@link PulseIngest.deployment} holds them
 * resolved. One per stack: its outputs have fixed names (`BucketName`, …) that the `pulse` CLI reads.
 *
 * ```ts
 * new PulseIngest(this, 'Pulse', { stage: 'dev', scoring: { zThreshold: 4 }, alarmEmail: 'ops@example.com' });
 * ```
 */
export class PulseIngest extends Construct {
  /** Every value of this deployment: the props given, else the settings. */
  readonly deployment: PulseDeployment;
  readonly bucket: Bucket;
  /** Server access logs of the ingest bucket; undefined when `serverAccessLogs` is false. */
  readonly accessLogs: Bucket | undefined;
  readonly fileEvents: Queue;
  readonly fileEventsDlq: Queue;
  readonly signals: Queue;
  readonly signalsDlq: Queue;
  readonly ledger: Table;
  readonly scores: Table;
  /** Score records in bulk (NDJSON.gz, `scores/dt=…/`), and the pending objects of transactions in flight. */
  readonly scoresBucket: Bucket;
  /** One item per anomaly, by series, with an index of recent anomalies by day. */
  readonly anomalies: Table;
  /** The Glue table over `scores/` (Athena, partition projection on `dt`). */
  readonly scoresGlueTable: S3Table;
  readonly s3Trigger: PulseFunction;
  readonly scorer: PulseFunction;
  /** The db-poller and the kafka-consumer. */
  readonly producers: Producers;
  /** The ledger sweep on its schedule (stuck work, the notification canary). */
  readonly ledgerSweep: LedgerSweep;
  /** Dashboard, alarms and the alarm topic. */
  readonly monitoring: Monitoring;
  /** The existing buckets ingested from (`existingBuckets`); undefined when none is given. */
  readonly existingBuckets: ExistingBuckets | undefined;

  constructor(scope: Construct, id: string, props: PulseIngestProps = {}) {
    super(scope, id);
    const { stage, database, kafka, alarmEmail, serverAccessLogs, existingBuckets, ...tuning } = props;
    const d = resolveDeployment(tuning, stage);
    if (kafka) checkKafkaSource(kafka);
    const registryProblems = kafka?.schemaRegistry
      ? registryValueFormatProblems(kafka.schemaRegistry, d.kafkaConsumer.valueFormat)
      : [];
    if (registryProblems.length > 0)
      throw new PulsePropsError(`PulseIngest props: ${registryProblems.join('; ')}`);
    this.deployment = d;
    const fn = d.functions;
    // The s3-trigger's routes: the props' own, and the prefixes of the user's buckets (infra/routes.ts).
    if (existingBuckets) checkSources(existingBuckets);
    const routes = routesWithExistingBuckets(
      d.s3.routes,
      (existingBuckets ?? []).map((b) => ({ name: sourceBucketName(b.bucket), prefixes: sourcePrefixes(b) })),
    );
    const stack = Stack.of(this);
    claimName(this, d.name);

    this.accessLogs =
      serverAccessLogs === false
        ? undefined
        : new Bucket(this, 'AccessLogs', {
            ...SECURE_BUCKET,
            lifecycleRules: [{ expiration: Duration.days(d.retention.accessLogsDays) }],
          });
    this.bucket = new Bucket(this, 'IngestBucket', {
      ...SECURE_BUCKET,
      versioned: true,
      lifecycleRules: [
        {
          abortIncompleteMultipartUploadAfter: Duration.days(
            settings.bucket.abortIncompleteMultipartUploadDays,
          ),
        },
        {
          // Staged copies of gzip files are deleted when their file ends; this removes any left behind, and
          // the data a delete leaves as a noncurrent version (the bucket is versioned).
          id: 'staging',
          prefix: settings.bucket.stagingPrefix,
          expiration: Duration.days(settings.staging.expireDays),
          noncurrentVersionExpiration: Duration.days(settings.staging.noncurrentExpireDays),
        },
        {
          // A stale rejects segment (written again by a later attempt) is deleted, which in this versioned
          // bucket only hides it behind a delete marker: its data goes after this many days.
          id: 'rejects-noncurrent',
          prefix: settings.bucket.rejectsPrefix,
          noncurrentVersionExpiration: Duration.days(settings.bucket.rejectsNoncurrentDays),
        },
      ],
      ...(this.accessLogs
        ? { serverAccessLogsBucket: this.accessLogs, serverAccessLogsPrefix: 'ingest/' }
        : {}),
    });
    this.addRouteLifecycleRules();

    const fileEvents = this.consumedQueue('FileEvents', {
      consumerTimeoutSeconds: fn.s3Trigger.timeoutSeconds,
      maxReceiveCount: d.fileEvents.maxReceiveCount,
      retentionDays: d.fileEvents.retentionDays,
    });
    this.fileEvents = fileEvents.queue;
    this.fileEventsDlq = fileEvents.dlq;
    const signals = this.consumedQueue('Signals', {
      consumerTimeoutSeconds: fn.scorer.timeoutSeconds,
      maxReceiveCount: d.signals.maxReceiveCount,
      retentionDays: d.signals.retentionDays,
      // Packed messages: set explicitly so the budget in the settings is the queue's limit too.
      maxMessageSizeBytes: settings.signals.queueMaximumMessageBytes,
    });
    this.signals = signals.queue;
    this.signalsDlq = signals.dlq;

    // Every object under the prefix, whatever its name: S3's suffix filters are case-sensitive, so filtering
    // on `.csv` would never tell s3-trigger of a `REPORT.CSV` (which it reads) nor of a `data.tsv` (which it
    // records as SKIPPED, with the reason): such files would sit in the bucket unseen.
    // One notification per route prefix (ingestPrefixes: none inside another, which S3 would refuse).
    const destination = new AccountBoundQueueDestination(this.fileEvents);
    for (const prefix of ingestPrefixes(d)) {
      this.bucket.addEventNotification(EventType.OBJECT_CREATED, destination, { prefix });
    }

    this.ledger = new Table(this, 'Ledger', {
      ...SECURE_TABLE,
      partitionKey: { name: 'pk', type: AttributeType.STRING },
      sortKey: { name: 'sk', type: AttributeType.STRING },
    });
    this.ledger.addGlobalSecondaryIndex({
      indexName: settings.ledger.statusIndex,
      partitionKey: { name: 'status', type: AttributeType.STRING },
      sortKey: { name: 'updatedAt', type: AttributeType.STRING },
      projectionType: ProjectionType.ALL,
    });
    // Series states, applied positions (blocks), id items, totals (docs/scoring.md). The TTL stays on so that
    // the score items of the first design (one per signal) age out; nothing written now carries it.
    this.scores = new Table(this, 'Scores', {
      ...SECURE_TABLE,
      partitionKey: { name: 'pk', type: AttributeType.STRING },
      timeToLiveAttribute: settings.scoring.ttlAttribute,
    });
    this.anomalies = new Table(this, 'Anomalies', {
      ...SECURE_TABLE,
      partitionKey: { name: 'series', type: AttributeType.STRING },
      sortKey: { name: 'at', type: AttributeType.STRING },
    });
    this.anomalies.addGlobalSecondaryIndex({
      indexName: settings.scores.recentAnomaliesIndex,
      partitionKey: { name: 'day', type: AttributeType.STRING },
      sortKey: { name: 'scoredAt', type: AttributeType.STRING },
      projectionType: ProjectionType.ALL,
    });
    // Unversioned: a score object is written once (pending, then final) and never changed, and versions
    // of deleted pending objects would only cost storage.
    this.scoresBucket = new Bucket(this, 'ScoresBucket', {
      ...SECURE_BUCKET,
      lifecycleRules: [
        {
          // A pending object still here after any message that could recover it has expired is the
          // orphan of an attempt that never committed.
          prefix: settings.scores.pendingPrefix,
          expiration: Duration.days(
            pendingScoresExpirationDays({
              signalsDays: d.signals.retentionDays,
              dlqDays: d.retention.dlqDays,
            }),
          ),
        },
        {
          abortIncompleteMultipartUploadAfter: Duration.days(
            settings.bucket.abortIncompleteMultipartUploadDays,
          ),
        },
      ],
      ...(this.accessLogs
        ? { serverAccessLogsBucket: this.accessLogs, serverAccessLogsPrefix: 'scores/' }
        : {}),
    });
    const glueDatabase = new GlueDatabase(this, 'ScoresDatabase', {
      databaseName: `${d.name.toLowerCase().replace(/[^a-z0-9_]/g, '_')}_scores`,
      description: 'Pulse Ingest score records (NDJSON.gz), one row per scored signal',
    });
    this.scoresGlueTable = new S3Table(this, 'ScoresTable', {
      database: glueDatabase,
      tableName: settings.scores.glueTable,
      description: 'One row per scored signal; partitioned by the day its transaction committed (dt)',
      storage: S3TableStorage.fromBucket(this.scoresBucket),
      s3Prefix: settings.scores.prefix,
      dataFormat: DataFormat.JSON,
      compressed: true,
      columns: [
        { name: 'id', type: Schema.STRING },
        { name: 'kind', type: Schema.STRING },
        { name: 'ref', type: Schema.STRING },
        { name: 'source', type: Schema.STRING },
        { name: 'name', type: Schema.STRING },
        { name: 'value', type: Schema.DOUBLE },
        { name: 'timestamp', type: Schema.STRING },
        { name: 'score', type: Schema.DOUBLE },
        { name: 'anomaly', type: Schema.BOOLEAN },
        { name: 'samples', type: Schema.BIG_INT },
        { name: 'model', type: Schema.STRING },
        { name: 'scoredAt', type: Schema.STRING },
      ],
      partitionKeys: [{ name: 'dt', type: Schema.STRING }],
      partitionProjection: {
        dt: PartitionProjectionConfiguration.date({ min: '2024-01-01', max: 'NOW', format: 'yyyy-MM-dd' }),
      },
      parameters: {
        'storage.location.template': `s3://${this.scoresBucket.bucketName}/${settings.scores.prefix}dt=\${dt}`,
      },
    });

    this.s3Trigger = new PulseFunction(this, 'S3Trigger', {
      name: 's3-trigger',
      timeoutSeconds: fn.s3Trigger.timeoutSeconds,
      memoryMb: fn.s3Trigger.memoryMb,
      reservedConcurrentExecutions: fn.s3Trigger.reservedConcurrency,
      logRetentionDays: d.retention.logDays,
      description: 'ObjectCreated → ledger claim → parse, validate, pack → signals queue',
      environment: {
        [ENV.maxAttempts]: String(d.ledger.maxAttempts),
        [ENV.leaseSeconds]: String(d.ledger.leaseSeconds),
        [ENV.heartbeatSeconds]: String(d.ledger.heartbeatSeconds),
        [ENV.checkpointSeconds]: String(d.ledger.checkpointSeconds),
        [ENV.fanOutMinBytes]: String(d.fanOut.minBytes),
        [ENV.fanOutPartBytes]: String(d.fanOut.partBytes),
        [ENV.stagingMinBytes]: String(d.staging.minBytes),
        [ENV.stagingObjectBytes]: String(d.staging.objectBytes),
        [ENV.s3Routes]: routesEnv(routes),
      },
    });
    this.grantReadIncoming(this.s3Trigger);
    this.grantAfterSuccess(this.s3Trigger);
    this.grantQuarantine(this.s3Trigger);
    this.grantRejectsCleanup(this.s3Trigger);
    this.grantStaging(this.s3Trigger);
    this.grantLedger(this.s3Trigger);
    this.grantSendSignals(this.s3Trigger);
    // A long file near the function's timeout is handed over to a fresh invocation: a continuation
    // message on the queue the function consumes.
    this.s3Trigger.addToRolePolicy(
      new PolicyStatement({ actions: ['sqs:SendMessage'], resources: [this.fileEvents.queueArn] }),
    );
    this.s3Trigger.addEnvironment(ENV.fileEventsQueueUrl, this.fileEvents.queueUrl);
    this.s3Trigger.addEventSource(
      new SqsEventSource(this.fileEvents, {
        batchSize: d.fileEvents.batchSize,
        maxBatchingWindow: Duration.seconds(d.fileEvents.maxBatchingWindowSeconds),
        maxConcurrency: d.fileEvents.maxConcurrency,
        reportBatchItemFailures: true,
      }),
    );

    // Buckets the user already has: their notifications to the file-events queue, and a read of their prefixes.
    this.existingBuckets =
      existingBuckets && existingBuckets.length > 0
        ? new ExistingBuckets(this, 'ExistingBuckets', {
            sources: existingBuckets,
            fileEvents: this.fileEvents,
            s3Trigger: this.s3Trigger,
            queueDestination: (bucket, prefix) =>
              bucket.addEventNotification(
                EventType.OBJECT_CREATED,
                new AccountBoundQueueDestination(this.fileEvents),
                { prefix },
              ),
          })
        : undefined;

    this.scorer = new PulseFunction(this, 'Scorer', {
      name: 'scorer',
      timeoutSeconds: fn.scorer.timeoutSeconds,
      memoryMb: fn.scorer.memoryMb,
      logRetentionDays: d.retention.logDays,
      description: 'Signals queue → idempotent scores and series state',
      environment: {
        [ENV.zThreshold]: String(d.scoring.zThreshold),
        [ENV.minSamples]: String(d.scoring.minSamples),
      },
    });
    this.grantScores(this.scorer);
    this.grantQuarantine(this.scorer);
    this.scorer.addEventSource(
      new SqsEventSource(this.signals, {
        batchSize: d.signals.batchSize,
        maxBatchingWindow: Duration.seconds(d.signals.maxBatchingWindowSeconds),
        maxConcurrency: d.signals.maxConcurrency,
        reportBatchItemFailures: true,
      }),
    );

    // CDK's singleton behind bucket notifications (a Python function that calls PutBucketNotification):
    // its logs go to a log group with the stack's retention, not one Lambda would keep forever.
    retainNotificationsHandlerLogs(stack, d.retention.logDays);
    NagSuppressions.addResourceSuppressionsByPath(
      stack,
      `${stack.node.path}/${NOTIFICATIONS_HANDLER_ID}/Role/Resource`,
      [
        {
          id: 'AwsSolutions-IAM4',
          reason:
            "CDK's bucket-notifications custom resource handler: its role is created by aws-s3-notifications with AWSLambdaBasicExecutionRole for its own logs; its one other grant is s3:PutBucketNotification on this bucket.",
          appliesTo: [
            'Policy::arn:<AWS::Partition>:iam::aws:policy/service-role/AWSLambdaBasicExecutionRole',
          ],
        },
      ],
    );

    this.producers = new Producers(this, 'Producers', {
      resources: this,
      deployment: d,
      ...(database ? { database } : {}),
      ...(kafka ? { kafka } : {}),
      ...(this.accessLogs ? { accessLogs: this.accessLogs } : {}),
    });

    // The scorer reads every message version the producers have written, and a producer's new code may
    // write one an older scorer cannot read (version 4, deflated, did): CloudFormation updates the scorer
    // before the functions that send to it, so no message is quarantined for its version during a deploy.
    const scorerFunction = this.scorer.node.defaultChild as CfnResource;
    for (const producer of [this.s3Trigger, this.producers.dbPoller, this.producers.kafkaConsumer]) {
      (producer.node.defaultChild as CfnResource).addResourceDependency(
        scorerFunction,
        'the scorer reads the message versions the producer writes',
      );
    }

    this.ledgerSweep = new LedgerSweep(this, 'LedgerSweep', {
      bucket: this.bucket,
      ledger: this.ledger,
      scores: this.scores,
      scoresBucket: this.scoresBucket,
      deployment: d,
    });

    this.monitoring = new Monitoring(this, 'Monitoring', {
      fileEvents: this.fileEvents,
      fileEventsDlq: this.fileEventsDlq,
      signals: this.signals,
      signalsDlq: this.signalsDlq,
      kafkaFailures: this.producers.kafkaFailures.notices,
      ledger: this.ledger,
      scores: this.scores,
      functions: {
        s3Trigger: this.s3Trigger,
        scorer: this.scorer,
        dbPoller: this.producers.dbPoller,
        kafkaConsumer: this.producers.kafkaConsumer,
        ledgerSweep: this.ledgerSweep.fn,
      },
      deployment: d,
      ...(alarmEmail ? { alarmEmail } : {}),
      pollerEnabled: database !== undefined,
      kafkaEnabled: kafka !== undefined,
    });

    // The outputs keep their names wherever the construct sits: the `pulse` CLI reads them by name.
    const out = (id: string, value: string, description: string) =>
      new CfnOutput(this, id, { value, description }).overrideLogicalId(id);
    out(OUTPUTS.bucket, this.bucket.bucketName, 'Drop files under incoming/; rejects land under rejects/');
    out(OUTPUTS.fileEventsQueue, this.fileEvents.queueUrl, 'S3 ObjectCreated notifications');
    out(OUTPUTS.fileEventsDlq, this.fileEventsDlq.queueUrl, 'File events that could not be handled');
    out(OUTPUTS.signalsQueue, this.signals.queueUrl, 'Packed signals awaiting scoring');
    out(OUTPUTS.signalsDlq, this.signalsDlq.queueUrl, 'Signal messages that could not be scored');
    out(OUTPUTS.ledgerTable, this.ledger.tableName, 'One item per object version');
    out(OUTPUTS.scoresTable, this.scores.tableName, 'Series states, applied positions and totals');
    out(OUTPUTS.scoresBucket, this.scoresBucket.bucketName, 'Score records under scores/dt=<day>/');
    out(OUTPUTS.anomaliesTable, this.anomalies.tableName, 'Anomalies by series');
    out(
      OUTPUTS.scoresGlueTable,
      `${glueDatabase.databaseName}.${this.scoresGlueTable.tableName}`,
      'The Glue table (database.table) Athena queries the score records with',
    );
    out(
      OUTPUTS.kafkaFailuresBucket,
      this.producers.kafkaFailures.bucket.bucketName,
      'Kafka batches that failed every retry, records included (on-failure destination): pulse kafka replay',
    );
    out(
      OUTPUTS.kafkaFailureNotices,
      this.producers.kafkaFailures.notices.queueUrl,
      'One notice per object in the Kafka failures bucket not yet replayed (alarms on the first)',
    );
    out(
      OUTPUTS.kafkaConsumerFunction,
      this.producers.kafkaConsumer.functionName,
      'The kafka-consumer, which pulse kafka replay invokes with each stored batch',
    );
    out(OUTPUTS.alarmTopic, this.monitoring.topic.topicArn, 'Every alarm notifies this topic');
    // `pulse doctor` reads these functions' event source mappings, configuration and logs.
    out(
      OUTPUTS.s3TriggerFunction,
      this.s3Trigger.functionName,
      'The s3-trigger (file-events queue → signals)',
    );
    out(OUTPUTS.scorerFunction, this.scorer.functionName, 'The scorer (signals queue → scores)');
    out(OUTPUTS.dbPollerFunction, this.producers.dbPoller.functionName, 'The db-poller (database → signals)');
  }

  /**
   * Read access to objects (and their versions) under the incoming prefix only, and the listing S3 asks of a
   * reader before it says an object is missing.
   */
  grantReadIncoming(fn: PulseFunction): void {
    const prefixes = ingestPrefixes(this.deployment);
    fn.addToRolePolicy(
      new PolicyStatement({
        // HeadObject is authorised by s3:GetObject (s3:GetObjectVersion with a version id).
        actions: ['s3:GetObject', 's3:GetObjectVersion'],
        resources: prefixes.map((p) => this.bucket.arnForObjects(`${p}*`)),
      }),
    );
    // S3 answers 404 for a missing object only to a caller that may list the bucket, 403 AccessDenied to any
    // other (GetObject/HeadObject, "Permissions"): without this an object deleted before it is read would end
    // FAILED with AccessDenied instead of SKIPPED. AWS does not say whether that check carries an s3:prefix,
    // so the condition holds when there is none; a listing that names a prefix must name this one.
    fn.addToRolePolicy(
      new PolicyStatement({
        actions: ['s3:ListBucket'],
        resources: [this.bucket.bucketArn],
        conditions: { StringLikeIfExists: { 's3:prefix': prefixes.map((p) => `${p}*`) } },
      }),
    );
    for (const p of prefixes) {
      this.suppressObjectPrefix(
        fn,
        p,
        `The s3-trigger reads whichever object a notification names; the wildcard is the object key under ${p} of this one bucket.`,
      );
    }
  }

  /**
   * What each route's after-success policy does, on its own prefix only (functions/s3-trigger/after-success.ts):
   * `tag` reads and writes the version's tags; `delete` deletes the version; an archive copies the version
   * (read: granted above; written: s3:PutObject under the archive prefix, whose copy a redelivery checks with
   * HeadObject) and deletes it. A version id makes each of these its `…Version…` action.
   */
  grantAfterSuccess(fn: PulseFunction): void {
    const objects = (prefixes: readonly string[]) => prefixes.map((p) => this.bucket.arnForObjects(`${p}*`));
    const grant = (actions: string[], prefixes: string[], why: string) => {
      if (prefixes.length === 0) return;
      fn.addToRolePolicy(new PolicyStatement({ actions, resources: objects(prefixes) }));
      for (const p of prefixes) this.suppressObjectPrefix(fn, p, why);
    };
    const prefixesOf = (policy: 'tag' | 'delete' | 'archive') => [
      ...new Set(routesAfterSuccess(this.deployment, policy).map((r) => r.prefix)),
    ];
    const archives = [
      ...new Set(
        routesAfterSuccess(this.deployment, 'archive').map((r) =>
          typeof r.afterSuccess === 'object' ? r.afterSuccess.archivePrefix : '',
        ),
      ),
    ];
    grant(
      [
        's3:GetObjectTagging',
        's3:GetObjectVersionTagging',
        's3:PutObjectTagging',
        's3:PutObjectVersionTagging',
      ],
      prefixesOf('tag'),
      'After success the s3-trigger tags the object version it ingested, whichever key under this route prefix.',
    );
    grant(
      ['s3:DeleteObject', 's3:DeleteObjectVersion'],
      [...new Set([...prefixesOf('delete'), ...prefixesOf('archive')])],
      'After success the s3-trigger deletes (or moves to its archive) the object version it ingested, whichever key under this route prefix.',
    );
    grant(
      ['s3:PutObject', 's3:GetObject'],
      archives,
      'The archive copy of an ingested object keeps its key under the archive prefix.',
    );
  }

  /**
   * Lifecycle rules for what the routes leave in the bucket: archived objects and the quarantine expire, and
   * so do noncurrent versions under each route prefix (an object deleted or overwritten).
   */
  private addRouteLifecycleRules(): void {
    const { routes, lifecycle } = this.deployment.s3;
    this.bucket.addLifecycleRule({
      id: 'rejects-expire',
      prefix: settings.bucket.rejectsPrefix,
      expiration: Duration.days(lifecycle.rejectsExpireDays),
    });
    for (const prefix of ingestPrefixes(this.deployment)) {
      this.bucket.addLifecycleRule({
        prefix,
        noncurrentVersionExpiration: Duration.days(lifecycle.noncurrentExpireDays),
      });
    }
    const archives = new Set(
      routes.flatMap((r) => (typeof r.afterSuccess === 'object' ? [r.afterSuccess.archivePrefix] : [])),
    );
    for (const prefix of archives) {
      this.bucket.addLifecycleRule({
        prefix,
        expiration: Duration.days(lifecycle.archiveExpireDays),
        noncurrentVersionExpiration: Duration.days(lifecycle.noncurrentExpireDays),
      });
    }
  }

  /** Writes under the rejects prefix only (multipart uploads included), and `QUARANTINE_BUCKET`. */
  grantQuarantine(fn: PulseFunction): void {
    fn.addToRolePolicy(
      new PolicyStatement({
        // lib-storage's Upload: Create/UploadPart/Complete are s3:PutObject; an aborted upload needs its own.
        actions: ['s3:PutObject', 's3:AbortMultipartUpload'],
        resources: [this.bucket.arnForObjects(`${settings.bucket.rejectsPrefix}*`)],
      }),
    );
    fn.addEnvironment(ENV.quarantineBucket, this.bucket.bucketName);
    this.suppressObjectPrefix(
      fn,
      settings.bucket.rejectsPrefix,
      'Quarantine files get a new key per rejected batch; the wildcard is the object key under rejects/ of this one bucket.',
    );
  }

  /**
   * Listing and deleting under the rejects prefix: the s3-trigger removes the rejects segments that an
   * earlier attempt at a file completed and this attempt wrote again (deleteStaleSegments).
   */
  grantRejectsCleanup(fn: PulseFunction): void {
    fn.addToRolePolicy(
      new PolicyStatement({
        actions: ['s3:ListBucket'],
        resources: [this.bucket.bucketArn],
        conditions: { StringLike: { 's3:prefix': [`${settings.bucket.rejectsPrefix}*`] } },
      }),
    );
    fn.addToRolePolicy(
      new PolicyStatement({
        // DeleteObjects (without version ids: the versioned bucket keeps the data behind a delete marker).
        actions: ['s3:DeleteObject'],
        resources: [this.bucket.arnForObjects(`${settings.bucket.rejectsPrefix}*`)],
      }),
    );
    this.suppressObjectPrefix(
      fn,
      settings.bucket.rejectsPrefix,
      'Stale rejects segments have a key per file, row and attempt; the wildcard is the object key under rejects/ of this one bucket.',
    );
  }

  /**
   * The staged copies of large gzip files (`settings.staging`): written, read back (ranged GETs) and deleted
   * (DeleteObjects, authorised object by object by s3:DeleteObject) under the staging prefix only.
   */
  grantStaging(fn: PulseFunction): void {
    fn.addToRolePolicy(
      new PolicyStatement({
        actions: ['s3:PutObject', 's3:GetObject', 's3:DeleteObject'],
        resources: [this.bucket.arnForObjects(`${settings.bucket.stagingPrefix}*`)],
      }),
    );
    this.suppressObjectPrefix(
      fn,
      settings.bucket.stagingPrefix,
      'The staged copy of a file is a set of objects named by a digest of the file version; the wildcard is the object key under staging/ of this one bucket.',
    );
  }

  /** cdk-nag IAM5 on exactly `<bucket>/<prefix>*` in this function's policy, nothing broader. */
  private suppressObjectPrefix(fn: PulseFunction, prefix: string, reason: string): void {
    const bucketId = Stack.of(this).getLogicalId(this.bucket.node.defaultChild as CfnBucket);
    NagSuppressions.addResourceSuppressions(
      fn.role ?? fn,
      [{ id: 'AwsSolutions-IAM5', reason, appliesTo: [`Resource::<${bucketId}.Arn>/${prefix}*`] }],
      true,
    );
  }

  /**
   * Ledger reads and conditional updates (shared/ledger.ts claims, renews and ends a lease with
   * UpdateItem, in a transaction when a part of a split file ends, and reads an item with GetItem), the
   * part items of a split file (BatchWriteItem to record them, Query to read them back), and
   * `LEDGER_TABLE`. The status index is for operators.
   */
  grantLedger(fn: PulseFunction): void {
    fn.addToRolePolicy(
      new PolicyStatement({
        actions: ['dynamodb:GetItem', 'dynamodb:UpdateItem', 'dynamodb:BatchWriteItem', 'dynamodb:Query'],
        resources: [this.ledger.tableArn],
      }),
    );
    fn.addEnvironment(ENV.ledgerTable, this.ledger.tableName);
  }

  /** Sending (batches) to the signals queue, and `SIGNALS_QUEUE_URL`. */
  grantSendSignals(fn: PulseFunction): void {
    // SendMessageBatch is authorised by sqs:SendMessage; the URL comes from the environment, so no
    // GetQueueUrl (which grantSendMessages would add, with GetQueueAttributes).
    fn.addToRolePolicy(
      new PolicyStatement({ actions: ['sqs:SendMessage'], resources: [this.signals.queueArn] }),
    );
    fn.addEnvironment(ENV.signalsQueueUrl, this.signals.queueUrl);
  }

  /**
   * What the scorer does with its state and its scores (docs/scoring.md), with `SCORES_TABLE`,
   * `SCORES_BUCKET` and `ANOMALIES_TABLE`: on the scores table, batch reads and the transactions' Put and
   * Update items (TransactWriteItems has no action of its own: each item needs the action it performs);
   * anomaly items in batches; on the scores bucket, pending objects written, read (recovery) and deleted,
   * and final objects written. s3:ListBucket makes S3 answer 404, not 403, for a pending object that is
   * gone, which is how a recovery tells "already promoted" from "not allowed".
   */
  grantScores(fn: PulseFunction): void {
    fn.addToRolePolicy(
      new PolicyStatement({
        actions: ['dynamodb:BatchGetItem', 'dynamodb:PutItem', 'dynamodb:UpdateItem'],
        resources: [this.scores.tableArn],
      }),
    );
    fn.addToRolePolicy(
      new PolicyStatement({ actions: ['dynamodb:BatchWriteItem'], resources: [this.anomalies.tableArn] }),
    );
    const pending = this.scoresBucket.arnForObjects(`${settings.scores.pendingPrefix}*`);
    const final = this.scoresBucket.arnForObjects(`${settings.scores.prefix}*`);
    fn.addToRolePolicy(
      new PolicyStatement({
        actions: ['s3:PutObject', 's3:GetObject', 's3:DeleteObject'],
        resources: [pending],
      }),
    );
    fn.addToRolePolicy(new PolicyStatement({ actions: ['s3:PutObject'], resources: [final] }));
    fn.addToRolePolicy(
      new PolicyStatement({ actions: ['s3:ListBucket'], resources: [this.scoresBucket.bucketArn] }),
    );
    fn.addEnvironment(ENV.scoresTable, this.scores.tableName);
    fn.addEnvironment(ENV.scoresBucket, this.scoresBucket.bucketName);
    fn.addEnvironment(ENV.anomaliesTable, this.anomalies.tableName);
    const bucketId = Stack.of(this).getLogicalId(this.scoresBucket.node.defaultChild as CfnBucket);
    NagSuppressions.addResourceSuppressions(
      fn.role ?? fn,
      [
        {
          id: 'AwsSolutions-IAM5',
          reason:
            'Score objects get a new key per transaction (its token); the wildcards are the object keys under scores-pending/ and scores/ of the scores bucket.',
          appliesTo: [
            `Resource::<${bucketId}.Arn>/${settings.scores.pendingPrefix}*`,
            `Resource::<${bucketId}.Arn>/${settings.scores.prefix}*`,
          ],
        },
      ],
      true,
    );
  }

  /** A queue consumed by a function, encrypted and TLS-only, with its DLQ. */
  private consumedQueue(
    id: string,
    opts: {
      readonly consumerTimeoutSeconds: number;
      readonly maxReceiveCount: number;
      readonly retentionDays: number;
      readonly maxMessageSizeBytes?: number;
    },
  ): ConsumedQueue {
    const dlq = new Queue(this, `${id}Dlq`, {
      encryption: QueueEncryption.SQS_MANAGED,
      enforceSSL: true,
      retentionPeriod: Duration.days(this.deployment.retention.dlqDays),
      maxMessageSizeBytes: opts.maxMessageSizeBytes,
    });
    const queue = new Queue(this, id, {
      encryption: QueueEncryption.SQS_MANAGED,
      enforceSSL: true,
      // A message must stay invisible while a consumer may still be working on it (and its retries).
      visibilityTimeout: Duration.seconds(visibilityTimeoutFor(opts.consumerTimeoutSeconds)),
      retentionPeriod: Duration.days(opts.retentionDays),
      maxMessageSizeBytes: opts.maxMessageSizeBytes,
      deadLetterQueue: { queue: dlq, maxReceiveCount: opts.maxReceiveCount },
    });
    return { queue, dlq };
  }
}

/** The deployment names taken in each app, by account and region. */
const NAMES_TAKEN = new WeakMap<IConstruct, Set<string>>();

/**
 * Refuses a second deployment of the same name in one app and one account and region (or two stacks that
 * both leave theirs to the CLI): their alarms and Glue databases would be named alike, and the second deploy
 * would fail on them (or, for a stack deployed elsewhere later, take over the first one's alarms).
 */
function claimName(scope: Construct, name: string): void {
  const stack = Stack.of(scope);
  const where = `${name} in ${stack.account}/${stack.region}`;
  const root = scope.node.root;
  const taken = NAMES_TAKEN.get(root) ?? new Set<string>();
  if (taken.has(where)) {
    throw new PulsePropsError(
      `a second PulseIngest named ${name} in the same account and region: give each its own stage (its names would collide)`,
    );
  }
  taken.add(where);
  NAMES_TAKEN.set(root, taken);
}

/**
 * S3 event notifications to a queue, like `SqsDestination`, but S3 may send only for this bucket *in this
 * account*: the bucket's ARN names no account, so a bucket of the same name in another account (after ours
 * is deleted) could otherwise keep sending. The queue is SQS-managed encrypted, so no key policy is needed.
 */
export class AccountBoundQueueDestination implements IBucketNotificationDestination {
  constructor(private readonly queue: IQueue) {}

  bind(_scope: Construct, bucket: IBucket): BucketNotificationDestinationConfig {
    this.queue.grantSendMessages(
      new ServicePrincipal('s3.amazonaws.com', {
        conditions: {
          ArnLike: { 'aws:SourceArn': bucket.bucketArn },
          StringEquals: { 'aws:SourceAccount': Stack.of(bucket).account },
        },
      }),
    );
    // The queue (and so its policy) must exist before S3 checks it can send there.
    return {
      arn: this.queue.queueArn,
      type: BucketNotificationDestinationType.QUEUE,
      dependencies: [this.queue],
    };
  }
}
