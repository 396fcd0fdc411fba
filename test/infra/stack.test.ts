import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { App, Stack } from 'aws-cdk-lib';
import { Match, Template } from 'aws-cdk-lib/assertions';
import { describe, expect, it } from 'vitest';
import { OUTPUTS } from '#shared/contract.ts';
import { pendingScoresExpirationDays, settings, visibilityTimeoutFor } from '#shared/settings.ts';
import {
  BUNDLING,
  handlerEntry,
  PulseFunction,
  REPO_ROOT,
  retentionFor,
} from '../../infra/constructs/pulse-function.ts';
import { PulseStack } from '../../infra/pulse-stack.ts';

type Json = Record<string, unknown>;
type Resource = { Type: string; Properties: Json; DeletionPolicy?: string };
type Statement = { Effect: string; Action: string | string[]; Resource: unknown; Principal?: unknown };

const MiB = 1024 * 1024;
/** Lambda's synchronous invocation payload limit, which an SQS batch must fit. */
const LAMBDA_PAYLOAD_BYTES = 6 * 1000 * 1000;

/** The app's feature flags from cdk.json, so the template under test is the one `cdk synth` makes. */
const cdkJsonContext = (JSON.parse(readFileSync(join(REPO_ROOT, 'cdk.json'), 'utf8')) as { context: Json })
  .context;

/** A fresh app with cdk.json's context and bundling skipped (the handlers are bundled by `cdk synth`). */
const newApp = () => new App({ context: { ...cdkJsonContext, 'aws:cdk:bundling-stacks': [] } });

let synthesized: Template | undefined;
/** The stack's template; synthesized once, shared by the tests (they only read it). */
function synth(): Template {
  synthesized ??= Template.fromStack(new PulseStack(newApp(), 'Test'));
  return synthesized;
}

const resourcesOf = (template: Template) => template.toJSON().Resources as Record<string, Resource>;

/** The logical id CDK gives a top-level construct: its id and an 8-hex-digit hash. */
function logicalId(template: Template, constructId: string, type: string): string {
  const pattern = new RegExp(`^${constructId}[0-9A-F]{8}$`);
  const found = Object.entries(resourcesOf(template)).find(([id, r]) => r.Type === type && pattern.test(id));
  if (!found) throw new Error(`no ${type} named ${constructId}`);
  return found[0];
}

function propsOf(template: Template, constructId: string, type: string): Json {
  return resourcesOf(template)[logicalId(template, constructId, type)]?.Properties ?? {};
}

const fnProps = (template: Template, id: string) => propsOf(template, id, 'AWS::Lambda::Function');
const queueProps = (template: Template, id: string) => propsOf(template, id, 'AWS::SQS::Queue');
const arnOf = (template: Template, id: string, type: string) => ({
  'Fn::GetAtt': [logicalId(template, id, type), 'Arn'],
});
const refOf = (template: Template, id: string, type: string) => ({ Ref: logicalId(template, id, type) });
const actionsOf = (s: Statement) => [s.Action].flat();

/** Every statement of the identity policies attached to a function's role. */
function statementsOf(template: Template, fnId: string): Statement[] {
  const role = (fnProps(template, fnId).Role as { 'Fn::GetAtt': string[] })['Fn::GetAtt'][0];
  return Object.values(resourcesOf(template))
    .filter((r) => r.Type === 'AWS::IAM::Policy')
    .filter((p) => (p.Properties.Roles as { Ref: string }[]).some((r) => r.Ref === role))
    .flatMap((p) => (p.Properties.PolicyDocument as { Statement: Statement[] }).Statement);
}

/** The statements of a function that grant an action. */
const grantsOf = (template: Template, fnId: string, action: string) =>
  statementsOf(template, fnId).filter((s) => s.Effect === 'Allow' && actionsOf(s).includes(action));

describe('ingest bucket', () => {
  it('is versioned, S3-encrypted, blocks all public access and is retained on stack deletion', () => {
    // Prepare
    const expected = {
      VersioningConfiguration: { Status: 'Enabled' },
      BucketEncryption: {
        ServerSideEncryptionConfiguration: [{ ServerSideEncryptionByDefault: { SSEAlgorithm: 'AES256' } }],
      },
      PublicAccessBlockConfiguration: {
        BlockPublicAcls: true,
        BlockPublicPolicy: true,
        IgnorePublicAcls: true,
        RestrictPublicBuckets: true,
      },
    };

    // Act
    const template = synth();

    // Assess
    const bucket = resourcesOf(template)[logicalId(template, 'IngestBucket', 'AWS::S3::Bucket')];
    expect(bucket?.Properties).toMatchObject(expected);
    expect(bucket?.DeletionPolicy).toBe('Retain');
  });

  it('denies every request to the bucket and its objects that is not made over TLS', () => {
    // Prepare
    const bucketArn = arnOf(synth(), 'IngestBucket', 'AWS::S3::Bucket');

    // Act
    const template = synth();

    // Assess
    template.hasResourceProperties('AWS::S3::BucketPolicy', {
      Bucket: refOf(template, 'IngestBucket', 'AWS::S3::Bucket'),
      PolicyDocument: {
        Statement: Match.arrayWith([
          {
            Effect: 'Deny',
            Action: 's3:*',
            Principal: { AWS: '*' },
            Condition: { Bool: { 'aws:SecureTransport': 'false' } },
            Resource: [bucketArn, { 'Fn::Join': ['', [bucketArn, '/*']] }],
          },
        ]),
      },
    });
  });

  it('notifies the file-events queue of every object created under the incoming prefix, whatever its suffix', () => {
    // Act
    const template = synth();

    // Assess: one configuration, no suffix rule (S3 matches suffixes case-sensitively: a `.csv` rule would
    // never announce a `REPORT.CSV`, nor a file of another type that s3-trigger records as SKIPPED).
    const notifications = Object.values(resourcesOf(template)).filter(
      (r) =>
        r.Type === 'Custom::S3BucketNotifications' &&
        JSON.stringify(r.Properties.BucketName) ===
          JSON.stringify(refOf(template, 'IngestBucket', 'AWS::S3::Bucket')),
    );
    expect(notifications).toHaveLength(1);
    expect(notifications[0]?.Properties.BucketName).toEqual(
      refOf(template, 'IngestBucket', 'AWS::S3::Bucket'),
    );
    const configuration = notifications[0]?.Properties.NotificationConfiguration as
      | {
          QueueConfigurations: {
            Events: string[];
            QueueArn: unknown;
            Filter: { Key: { FilterRules: { Name: string; Value: string }[] } };
          }[];
        }
      | undefined;
    const configs = configuration?.QueueConfigurations ?? [];
    expect(configs).toHaveLength(1);
    expect(configs[0]?.Events).toEqual(['s3:ObjectCreated:*']);
    expect(configs[0]?.QueueArn).toEqual(arnOf(template, 'FileEvents', 'AWS::SQS::Queue'));
    expect(configs[0]?.Filter.Key.FilterRules.map((r) => [r.Name.toLowerCase(), r.Value])).toEqual([
      ['prefix', settings.bucket.incomingPrefix],
    ]);
  });

  it('lets only S3, for this bucket in this account, send to the file-events queue', () => {
    // Prepare
    const queueArn = arnOf(synth(), 'FileEvents', 'AWS::SQS::Queue');

    // Act
    const template = synth();

    // Assess
    template.hasResourceProperties('AWS::SQS::QueuePolicy', {
      Queues: [refOf(template, 'FileEvents', 'AWS::SQS::Queue')],
      PolicyDocument: {
        Statement: Match.arrayWith([
          Match.objectLike({
            Effect: 'Allow',
            Principal: { Service: 's3.amazonaws.com' },
            Action: Match.arrayWith(['sqs:SendMessage']),
            Resource: queueArn,
            Condition: {
              ArnLike: { 'aws:SourceArn': arnOf(template, 'IngestBucket', 'AWS::S3::Bucket') },
              StringEquals: { 'aws:SourceAccount': { Ref: 'AWS::AccountId' } },
            },
          }),
        ]),
      },
    });
  });

  it('aborts multipart uploads left incomplete, and expires staged copies and their deleted data, after the days in the settings', () => {
    // Prepare
    const days = settings.bucket.abortIncompleteMultipartUploadDays;

    // Act
    const template = synth();

    // Assess
    expect(propsOf(template, 'IngestBucket', 'AWS::S3::Bucket').LifecycleConfiguration).toMatchObject({
      Rules: expect.arrayContaining([
        { AbortIncompleteMultipartUpload: { DaysAfterInitiation: days }, Status: 'Enabled' },
        {
          Id: 'staging',
          Prefix: settings.bucket.stagingPrefix,
          ExpirationInDays: settings.staging.expireDays,
          NoncurrentVersionExpiration: { NoncurrentDays: settings.staging.noncurrentExpireDays },
          Status: 'Enabled',
        },
        {
          Id: 'rejects-noncurrent',
          Prefix: settings.bucket.rejectsPrefix,
          NoncurrentVersionExpiration: { NoncurrentDays: settings.bucket.rejectsNoncurrentDays },
          Status: 'Enabled',
        },
      ]),
    });
  });

  it('writes server access logs to a private, encrypted, TLS-only bucket that expires them', () => {
    // Prepare
    const days = settings.bucket.accessLogsRetentionDays;

    // Act
    const template = synth();

    // Assess
    expect(propsOf(template, 'IngestBucket', 'AWS::S3::Bucket').LoggingConfiguration).toEqual({
      DestinationBucketName: refOf(template, 'AccessLogs', 'AWS::S3::Bucket'),
      LogFilePrefix: 'ingest/',
    });
    const logs = propsOf(template, 'AccessLogs', 'AWS::S3::Bucket');
    expect(logs).toMatchObject({
      BucketEncryption: {
        ServerSideEncryptionConfiguration: [{ ServerSideEncryptionByDefault: { SSEAlgorithm: 'AES256' } }],
      },
      PublicAccessBlockConfiguration: { BlockPublicAcls: true, RestrictPublicBuckets: true },
      LifecycleConfiguration: { Rules: [{ ExpirationInDays: days, Status: 'Enabled' }] },
    });
    // Log delivery through the bucket policy, not an ACL.
    expect(logs.AccessControl).toBeUndefined();
    template.hasResourceProperties('AWS::S3::BucketPolicy', {
      Bucket: refOf(template, 'AccessLogs', 'AWS::S3::Bucket'),
      PolicyDocument: {
        Statement: Match.arrayWith([
          Match.objectLike({ Effect: 'Deny', Condition: { Bool: { 'aws:SecureTransport': 'false' } } }),
          Match.objectLike({ Effect: 'Allow', Principal: { Service: 'logging.s3.amazonaws.com' } }),
        ]),
      },
    });
  });
});

describe('queues', () => {
  const consumed = [
    ['FileEvents', 'FileEventsDlq', 'S3Trigger', settings.fileEvents],
    ['Signals', 'SignalsDlq', 'Scorer', settings.signals],
  ] as const;

  it('encrypts both queues and both DLQs with SQS-managed keys', () => {
    // Prepare
    const ids = ['FileEvents', 'FileEventsDlq', 'Signals', 'SignalsDlq'];

    // Act
    const template = synth();

    // Assess
    for (const id of ids) expect(queueProps(template, id).SqsManagedSseEnabled).toBe(true);
    for (const q of Object.values(resourcesOf(template)).filter((r) => r.Type === 'AWS::SQS::Queue')) {
      expect(q.Properties.SqsManagedSseEnabled).toBe(true);
    }
  });

  it('refuses plain-HTTP access to both queues and both DLQs', () => {
    // Prepare
    const ids = ['FileEvents', 'FileEventsDlq', 'Signals', 'SignalsDlq'];

    // Act
    const template = synth();

    // Assess
    for (const id of ids) {
      template.hasResourceProperties('AWS::SQS::QueuePolicy', {
        Queues: [refOf(template, id, 'AWS::SQS::Queue')],
        PolicyDocument: {
          Statement: Match.arrayWith([
            {
              Effect: 'Deny',
              Action: 'sqs:*',
              Principal: { AWS: '*' },
              Condition: { Bool: { 'aws:SecureTransport': 'false' } },
              Resource: arnOf(template, id, 'AWS::SQS::Queue'),
            },
          ]),
        },
      });
    }
  });

  it.each(consumed)(
    '%s moves a message to %s after the maxReceiveCount in the settings, which is within 3..10',
    (queue, dlq, _consumer, cfg) => {
      // Prepare
      const template = synth();

      // Act
      const redrive = queueProps(template, queue).RedrivePolicy as { maxReceiveCount: number };

      // Assess
      expect(redrive).toEqual({
        deadLetterTargetArn: arnOf(template, dlq, 'AWS::SQS::Queue'),
        maxReceiveCount: cfg.maxReceiveCount,
      });
      expect(redrive.maxReceiveCount).toBeGreaterThanOrEqual(3);
      expect(redrive.maxReceiveCount).toBeLessThanOrEqual(10);
    },
  );

  it.each(consumed)(
    '%s hides a message for at least six times the timeout of %s',
    (queue, _dlq, consumer) => {
      // Prepare
      const template = synth();
      const consumerTimeout = fnProps(template, consumer).Timeout as number;

      // Act
      const visibility = queueProps(template, queue).VisibilityTimeout as number;

      // Assess
      expect(visibility).toBeGreaterThanOrEqual(6 * consumerTimeout);
      expect(visibility).toBe(visibilityTimeoutFor(consumerTimeout));
    },
  );

  it.each(consumed)('%s keeps messages for the retention in the settings', (queue, _dlq, _consumer, cfg) => {
    // Prepare
    const template = synth();

    // Act
    const retention = queueProps(template, queue).MessageRetentionPeriod;

    // Assess
    expect(retention).toBe(cfg.retentionDays * 86_400);
  });

  it('keeps dead letters for the DLQ retention in the settings, never redriving them further', () => {
    // Prepare
    const template = synth();

    // Act
    const dlqs = [queueProps(template, 'FileEventsDlq'), queueProps(template, 'SignalsDlq')];

    // Assess
    for (const dlq of dlqs) {
      expect(dlq.MessageRetentionPeriod).toBe(settings.dlqRetentionDays * 86_400);
      expect(dlq.RedrivePolicy).toBeUndefined();
    }
  });

  it('sets the signals queue MaximumMessageSize to the settings, at most 1 MiB and at least the packing budget', () => {
    // Prepare
    const template = synth();

    // Act
    const max = queueProps(template, 'Signals').MaximumMessageSize as number;

    // Assess
    expect(max).toBe(settings.signals.queueMaximumMessageBytes);
    expect(max).toBeLessThanOrEqual(MiB);
    expect(settings.signals.maxMessageBytes).toBeLessThanOrEqual(max);
    // Its DLQ must take whatever the queue holds.
    expect(queueProps(template, 'SignalsDlq').MaximumMessageSize).toBe(max);
  });

  it('keeps a full scorer batch (batch size × MaximumMessageSize) under the 6 MB invocation payload', () => {
    // Prepare
    const template = synth();
    const max = queueProps(template, 'Signals').MaximumMessageSize as number;

    // Act
    const mapping = Object.values(resourcesOf(template)).find(
      (r) =>
        r.Type === 'AWS::Lambda::EventSourceMapping' &&
        JSON.stringify(r.Properties.FunctionName) ===
          JSON.stringify(refOf(template, 'Scorer', 'AWS::Lambda::Function')),
    );
    const batchSize = mapping?.Properties.BatchSize as number;

    // Assess
    expect(batchSize).toBe(settings.signals.batchSize);
    expect(batchSize * max).toBeLessThan(LAMBDA_PAYLOAD_BYTES);
  });
});

describe('tables', () => {
  it('keeps the ledger keyed by pk/sk with a byStatus index, on demand, with PITR and SSE, retained', () => {
    // Prepare
    const expected = {
      KeySchema: [
        { AttributeName: 'pk', KeyType: 'HASH' },
        { AttributeName: 'sk', KeyType: 'RANGE' },
      ],
      AttributeDefinitions: Match.arrayWith([
        { AttributeName: 'pk', AttributeType: 'S' },
        { AttributeName: 'sk', AttributeType: 'S' },
        { AttributeName: 'status', AttributeType: 'S' },
        { AttributeName: 'updatedAt', AttributeType: 'S' },
      ]),
      BillingMode: 'PAY_PER_REQUEST',
      PointInTimeRecoverySpecification: { PointInTimeRecoveryEnabled: true },
      SSESpecification: { SSEEnabled: true },
      GlobalSecondaryIndexes: [
        {
          IndexName: settings.ledger.statusIndex,
          KeySchema: [
            { AttributeName: 'status', KeyType: 'HASH' },
            { AttributeName: 'updatedAt', KeyType: 'RANGE' },
          ],
          Projection: { ProjectionType: 'ALL' },
        },
      ],
    };

    // Act
    const template = synth();

    // Assess
    expect(settings.ledger.statusIndex).toBe('byStatus');
    template.hasResource('AWS::DynamoDB::Table', {
      Properties: expected,
      DeletionPolicy: 'Retain',
      UpdateReplacePolicy: 'Retain',
    });
  });

  it('keeps scores keyed by pk with a TTL on expiresAt, on demand, with PITR and SSE, retained', () => {
    // Prepare
    const expected = {
      KeySchema: [{ AttributeName: 'pk', KeyType: 'HASH' }],
      AttributeDefinitions: [{ AttributeName: 'pk', AttributeType: 'S' }],
      BillingMode: 'PAY_PER_REQUEST',
      PointInTimeRecoverySpecification: { PointInTimeRecoveryEnabled: true },
      SSESpecification: { SSEEnabled: true },
      TimeToLiveSpecification: { AttributeName: 'expiresAt', Enabled: true },
    };

    // Act
    const template = synth();

    // Assess
    expect(settings.scoring.ttlAttribute).toBe('expiresAt');
    template.hasResource('AWS::DynamoDB::Table', {
      Properties: expected,
      DeletionPolicy: 'Retain',
      UpdateReplacePolicy: 'Retain',
    });
    template.resourceCountIs('AWS::DynamoDB::Table', 3);
  });

  it('keeps anomalies by series in time order, with an index of recent ones by day, on demand, with PITR and SSE, retained', () => {
    // Prepare
    const expected = {
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
      BillingMode: 'PAY_PER_REQUEST',
      PointInTimeRecoverySpecification: { PointInTimeRecoveryEnabled: true },
      SSESpecification: { SSEEnabled: true },
    };

    // Act
    const template = synth();

    // Assess
    template.hasResource('AWS::DynamoDB::Table', {
      Properties: expected,
      DeletionPolicy: 'Retain',
      UpdateReplacePolicy: 'Retain',
    });
  });
});

describe('scores bucket and Glue table', () => {
  it('keeps score objects in an unversioned, encrypted, TLS-only, private bucket that expires pending objects', () => {
    // Prepare
    const template = synth();

    // Act
    const bucket = propsOf(template, 'ScoresBucket', 'AWS::S3::Bucket');

    // Assess
    expect(bucket.VersioningConfiguration).toBeUndefined();
    expect(bucket.BucketEncryption).toEqual({
      ServerSideEncryptionConfiguration: [{ ServerSideEncryptionByDefault: { SSEAlgorithm: 'AES256' } }],
    });
    expect(bucket.PublicAccessBlockConfiguration).toEqual({
      BlockPublicAcls: true,
      BlockPublicPolicy: true,
      IgnorePublicAcls: true,
      RestrictPublicBuckets: true,
    });
    // Longer than a message can live: its queue's retention, then the DLQ's, and a redrive.
    expect(pendingScoresExpirationDays()).toBeGreaterThan(
      settings.signals.retentionDays + settings.dlqRetentionDays,
    );
    expect((bucket.LifecycleConfiguration as { Rules: Json[] }).Rules).toContainEqual({
      Prefix: settings.scores.pendingPrefix,
      ExpirationInDays: pendingScoresExpirationDays(),
      Status: 'Enabled',
    });
    template.hasResourceProperties('AWS::S3::BucketPolicy', {
      Bucket: refOf(template, 'ScoresBucket', 'AWS::S3::Bucket'),
      PolicyDocument: {
        Statement: Match.arrayWith([
          Match.objectLike({ Effect: 'Deny', Condition: { Bool: { 'aws:SecureTransport': 'false' } } }),
        ]),
      },
    });
  });

  it('declares a Glue table over scores/ that Athena reads as gzip NDJSON, its dt partitions projected', () => {
    // Prepare
    const template = synth();

    // Act
    const table = propsOf(template, 'ScoresTable', 'AWS::Glue::Table').TableInput as Json;

    // Assess
    const parameters = table.Parameters as Json;
    expect(parameters).toMatchObject({
      'projection.enabled': 'true',
      'projection.dt.type': 'date',
      'projection.dt.format': 'yyyy-MM-dd',
    });
    expect(JSON.stringify(parameters['storage.location.template'])).toContain(`/scores/dt=${'$'}{dt}`);
    expect(table.PartitionKeys).toEqual([{ Name: 'dt', Type: 'string' }]);
    const sd = table.StorageDescriptor as Json;
    expect(sd.SerdeInfo).toEqual({ SerializationLibrary: 'org.openx.data.jsonserde.JsonSerDe' });
    expect(sd.Compressed).toBe(true);
    expect((sd.Columns as { Name: string }[]).map((c) => c.Name)).toEqual([
      'id',
      'kind',
      'ref',
      'source',
      'name',
      'value',
      'timestamp',
      'score',
      'anomaly',
      'samples',
      'model',
      'scoredAt',
    ]);
  });
});

describe('functions', () => {
  const functions = [
    ['S3Trigger', 's3-trigger', settings.functions.s3Trigger],
    ['Scorer', 'scorer', settings.functions.scorer],
  ] as const;

  it.each(functions)(
    '%s runs nodejs22.x on arm64 with the timeout and memory in the settings',
    (id, _name, cfg) => {
      // Prepare
      const template = synth();

      // Act
      const fn = fnProps(template, id);

      // Assess
      expect(fn.Runtime).toBe('nodejs22.x');
      expect(fn.Architectures).toEqual(['arm64']);
      expect(fn.Handler).toBe('index.handler');
      expect(fn.Timeout).toBe(cfg.timeoutSeconds);
      expect(fn.MemorySize).toBe(cfg.memoryMb);
    },
  );

  it.each(functions)('%s logs to its own log group kept for the retention in the settings', (id) => {
    // Prepare
    const template = synth();

    // Act
    const logGroup = (fnProps(template, id).LoggingConfig as { LogGroup: { Ref: string } }).LogGroup.Ref;

    // Assess
    expect(logGroup).toBe(logicalId(template, `${id}Logs`, 'AWS::Logs::LogGroup'));
    expect(resourcesOf(template)[logGroup]?.Properties.RetentionInDays).toBe(settings.logRetentionDays);
  });

  it.each(functions)(
    '%s gets source maps, its Powertools service name, the metrics namespace and the INFO log level',
    (id, name) => {
      // Prepare
      const template = synth();

      // Act
      const env = (fnProps(template, id).Environment as { Variables: Json }).Variables;

      // Assess
      expect(env).toMatchObject({
        NODE_OPTIONS: '--enable-source-maps',
        POWERTOOLS_SERVICE_NAME: name,
        POWERTOOLS_METRICS_NAMESPACE: settings.metricsNamespace,
        LOG_LEVEL: 'INFO',
      });
    },
  );

  it('names the signals queue, the ledger, the quarantine bucket and its own queue (continuations) to the s3-trigger, and nothing else', () => {
    // Prepare
    const template = synth();

    // Act
    const env = (fnProps(template, 'S3Trigger').Environment as { Variables: Json }).Variables;

    // Assess
    expect(env.SIGNALS_QUEUE_URL).toEqual(refOf(template, 'Signals', 'AWS::SQS::Queue'));
    expect(env.LEDGER_TABLE).toEqual(refOf(template, 'Ledger', 'AWS::DynamoDB::Table'));
    expect(env.QUARANTINE_BUCKET).toEqual(refOf(template, 'IngestBucket', 'AWS::S3::Bucket'));
    expect(env.FILE_EVENTS_QUEUE_URL).toEqual(refOf(template, 'FileEvents', 'AWS::SQS::Queue'));
    expect(env.SCORES_TABLE).toBeUndefined();
  });

  it('names the scores table, bucket and anomalies table and the quarantine bucket to the scorer, and nothing else', () => {
    // Prepare
    const template = synth();

    // Act
    const env = (fnProps(template, 'Scorer').Environment as { Variables: Json }).Variables;

    // Assess
    expect(env.SCORES_TABLE).toEqual(refOf(template, 'Scores', 'AWS::DynamoDB::Table'));
    expect(env.SCORES_BUCKET).toEqual(refOf(template, 'ScoresBucket', 'AWS::S3::Bucket'));
    expect(env.ANOMALIES_TABLE).toEqual(refOf(template, 'Anomalies', 'AWS::DynamoDB::Table'));
    expect(env.QUARANTINE_BUCKET).toEqual(refOf(template, 'IngestBucket', 'AWS::S3::Bucket'));
    expect(env.LEDGER_TABLE).toBeUndefined();
    expect(env.SIGNALS_QUEUE_URL).toBeUndefined();
  });

  it('deploys the four pipeline functions and the ledger sweep', () => {
    // Prepare
    const template = synth();

    // Act
    const nodeFunctions = Object.values(resourcesOf(template)).filter(
      (r) => r.Type === 'AWS::Lambda::Function' && r.Properties.Runtime === 'nodejs22.x',
    );

    // Assess
    expect(nodeFunctions).toHaveLength(5);
    expect(
      nodeFunctions
        .map((f) => (f.Properties.Environment as { Variables: Record<string, string> }).Variables)
        .map((v) => v.POWERTOOLS_SERVICE_NAME)
        .sort(),
    ).toEqual(['db-poller', 'kafka-consumer', 'ledger-sweep', 's3-trigger', 'scorer']);
  });

  it('updates the scorer before the functions that send to it (a new message version is readable first)', () => {
    // Prepare
    const template = synth();
    const scorer = logicalId(template, 'Scorer', 'AWS::Lambda::Function');

    // Act
    const dependsOn = (id: string) =>
      (resourcesOf(template)[logicalId(template, id, 'AWS::Lambda::Function')] as { DependsOn?: string[] })
        .DependsOn ?? [];

    // Assess
    for (const producer of ['S3Trigger', 'ProducersDbPoller', 'ProducersKafkaConsumer']) {
      expect(dependsOn(producer), producer).toContain(scorer);
    }
    expect(dependsOn('Scorer')).not.toContain(logicalId(template, 'S3Trigger', 'AWS::Lambda::Function'));
  });

  it('caps the s3-trigger invocations its queue runs at once (files and parts wait on the queue)', () => {
    // Prepare
    const template = synth();

    // Act
    const mappings = Object.values(resourcesOf(template)).filter(
      (r) => r.Type === 'AWS::Lambda::EventSourceMapping',
    );
    const of = (queue: string) =>
      mappings.find(
        (r) =>
          JSON.stringify(r.Properties.EventSourceArn) ===
          JSON.stringify(arnOf(template, queue, 'AWS::SQS::Queue')),
      )?.Properties;

    // Assess
    expect(settings.fileEvents.maxConcurrency).toBeGreaterThanOrEqual(2);
    expect(settings.fileEvents.maxConcurrency).toBeLessThanOrEqual(1000);
    expect(of('FileEvents')?.ScalingConfig).toEqual({
      MaximumConcurrency: settings.fileEvents.maxConcurrency,
    });
    expect(of('Signals')?.ScalingConfig).toEqual({ MaximumConcurrency: settings.signals.maxConcurrency });
    expect(settings.signals.maxConcurrency).toBeGreaterThanOrEqual(2);
  });

  it.each([
    ['FileEvents', 'S3Trigger', settings.fileEvents],
    ['Signals', 'Scorer', settings.signals],
  ] as const)(
    '%s feeds %s in batches from the settings, reporting partial batch failures',
    (queue, fn, cfg) => {
      // Prepare
      const template = synth();

      // Act
      const expected = {
        EventSourceArn: arnOf(template, queue, 'AWS::SQS::Queue'),
        FunctionName: refOf(template, fn, 'AWS::Lambda::Function'),
        BatchSize: cfg.batchSize,
        MaximumBatchingWindowInSeconds: cfg.maxBatchingWindowSeconds,
        FunctionResponseTypes: ['ReportBatchItemFailures'],
      };

      // Assess
      template.hasResourceProperties('AWS::Lambda::EventSourceMapping', expected);
      template.resourceCountIs('AWS::Lambda::EventSourceMapping', 2);
    },
  );
});

describe('IAM', () => {
  it('grants no wildcard action ("*" or "service:*") in any identity policy of the stack', () => {
    // Prepare
    const template = synth();

    // Act
    const statements = Object.values(resourcesOf(template)).flatMap((r) => {
      if (r.Type === 'AWS::IAM::Policy' || r.Type === 'AWS::IAM::ManagedPolicy') {
        return (r.Properties.PolicyDocument as { Statement: Statement[] }).Statement;
      }
      if (r.Type === 'AWS::IAM::Role') {
        const inline = (r.Properties.Policies ?? []) as { PolicyDocument: { Statement: Statement[] } }[];
        return inline.flatMap((p) => p.PolicyDocument.Statement);
      }
      return [];
    });

    // Assess
    expect(statements.length).toBeGreaterThan(0);
    for (const s of statements) {
      for (const action of actionsOf(s)) expect(action).not.toMatch(/\*/);
    }
  });

  it.each(['S3Trigger', 'Scorer'])('grants %s no action on every resource ("*")', (fn) => {
    // Prepare
    const template = synth();

    // Act
    const resources = statementsOf(template, fn).flatMap((s) => [s.Resource].flat());

    // Assess
    expect(resources.length).toBeGreaterThan(0);
    expect(resources).not.toContain('*');
  });

  it('lets the s3-trigger read objects and versions only under the incoming prefix, and its staged copies under the staging prefix', () => {
    // Prepare
    const template = synth();
    const under = (prefix: string) => ({
      'Fn::Join': ['', [arnOf(template, 'IngestBucket', 'AWS::S3::Bucket'), `/${prefix}*`]],
    });

    // Act
    const reads = grantsOf(template, 'S3Trigger', 's3:GetObject');
    const versions = grantsOf(template, 'S3Trigger', 's3:GetObjectVersion');

    // Assess
    expect(reads.map((s) => s.Resource)).toEqual([
      under(settings.bucket.incomingPrefix),
      under(settings.bucket.stagingPrefix),
    ]);
    expect(versions.map((s) => s.Resource)).toEqual([under(settings.bucket.incomingPrefix)]);
  });

  it.each(['S3Trigger', 'Scorer'])(
    'lets %s write objects of the ingest bucket only under the rejects prefix (the s3-trigger also deletes its stale segments there)',
    (fn) => {
      // Prepare
      const template = synth();
      const rejects = {
        'Fn::Join': [
          '',
          [arnOf(template, 'IngestBucket', 'AWS::S3::Bucket'), `/${settings.bucket.rejectsPrefix}*`],
        ],
      };
      const ingest = JSON.stringify(arnOf(template, 'IngestBucket', 'AWS::S3::Bucket'));

      // Act: the ingest bucket's writes, besides the s3-trigger's staged copies (held to staging/ in their own test).
      const writes = grantsOf(template, fn, 's3:PutObject').filter(
        (w) =>
          JSON.stringify(w.Resource).includes(ingest) &&
          !JSON.stringify(w.Resource).includes(`/${settings.bucket.stagingPrefix}*`),
      );

      // Assess
      expect(writes).toHaveLength(1);
      expect(writes[0]?.Resource).toEqual(rejects);
      expect(actionsOf(writes[0] as Statement).sort()).toEqual(
        [
          's3:AbortMultipartUpload',
          's3:PutObject',
          ...(fn === 'S3Trigger' ? ['s3:DeleteObject'] : []),
        ].sort(),
      );
    },
  );

  it('lets the s3-trigger read and conditionally update the ledger, write and query the parts of a split file (table only, no index), send signals, and send continuations to its own queue', () => {
    // Prepare
    const template = synth();
    const ledgerArn = arnOf(template, 'Ledger', 'AWS::DynamoDB::Table');

    // Act
    const ledger = grantsOf(template, 'S3Trigger', 'dynamodb:UpdateItem');
    const send = grantsOf(template, 'S3Trigger', 'sqs:SendMessage');

    // Assess
    expect(ledger).toHaveLength(1);
    expect(actionsOf(ledger[0] as Statement).sort()).toEqual([
      'dynamodb:BatchWriteItem',
      'dynamodb:GetItem',
      'dynamodb:Query',
      'dynamodb:UpdateItem',
    ]);
    expect(ledger[0]?.Resource).toEqual(ledgerArn);
    // CDK merges the two statements into one with both queues.
    expect(send.flatMap((s) => s.Resource)).toEqual(
      expect.arrayContaining([
        arnOf(template, 'Signals', 'AWS::SQS::Queue'),
        arnOf(template, 'FileEvents', 'AWS::SQS::Queue'),
      ]),
    );
    expect(send.flatMap((s) => s.Resource)).toHaveLength(2);
    for (const s of send) expect(actionsOf(s)).toEqual(['sqs:SendMessage']);
    expect(grantsOf(template, 'S3Trigger', 'dynamodb:DeleteItem')).toEqual([]);
  });

  it('lets the scorer batch-read and write (transactions included) its state, and batch-write anomalies, on their tables only', () => {
    // Prepare
    const template = synth();

    // Act
    const scores = grantsOf(template, 'Scorer', 'dynamodb:PutItem');
    const anomalies = grantsOf(template, 'Scorer', 'dynamodb:BatchWriteItem');

    // Assess
    expect(scores).toHaveLength(1);
    expect(actionsOf(scores[0] as Statement).sort()).toEqual([
      'dynamodb:BatchGetItem',
      'dynamodb:PutItem',
      'dynamodb:UpdateItem',
    ]);
    expect(scores[0]?.Resource).toEqual(arnOf(template, 'Scores', 'AWS::DynamoDB::Table'));
    expect(anomalies).toHaveLength(1);
    expect(actionsOf(anomalies[0] as Statement)).toEqual(['dynamodb:BatchWriteItem']);
    expect(anomalies[0]?.Resource).toEqual(arnOf(template, 'Anomalies', 'AWS::DynamoDB::Table'));
  });

  it('lets the scorer write, read and delete pending score objects, write final ones, and list its bucket (404, not 403)', () => {
    // Prepare
    const template = synth();
    const bucket = logicalId(template, 'ScoresBucket', 'AWS::S3::Bucket');
    const objects = (prefix: string) => ({
      'Fn::Join': ['', [{ 'Fn::GetAtt': [bucket, 'Arn'] }, `/${prefix}*`]],
    });

    // Act
    const s3 = statementsOf(template, 'Scorer').filter((s) => actionsOf(s).some((a) => a.startsWith('s3:')));
    const on = (resource: unknown) =>
      s3
        .filter((s) => JSON.stringify(s.Resource) === JSON.stringify(resource))
        .flatMap(actionsOf)
        .sort();

    // Assess
    expect(on(objects(settings.scores.pendingPrefix))).toEqual([
      's3:DeleteObject',
      's3:GetObject',
      's3:PutObject',
    ]);
    expect(on(objects(settings.scores.prefix))).toEqual(['s3:PutObject']);
    expect(on({ 'Fn::GetAtt': [bucket, 'Arn'] })).toEqual(['s3:ListBucket']);
  });

  it('gives the scorer no read of incoming files, no ledger access and no send to the signals queue', () => {
    // Prepare
    const template = synth();

    // Act
    const statements = statementsOf(template, 'Scorer');

    // Assess
    const ledgerArn = JSON.stringify(arnOf(template, 'Ledger', 'AWS::DynamoDB::Table'));
    const ingest = JSON.stringify(arnOf(template, 'IngestBucket', 'AWS::S3::Bucket'));
    expect(
      statements.some(
        (s) => actionsOf(s).includes('s3:GetObject') && JSON.stringify(s.Resource).includes(ingest),
      ),
    ).toBe(false);
    expect(statements.some((s) => actionsOf(s).includes('sqs:SendMessage'))).toBe(false);
    expect(statements.some((s) => JSON.stringify(s.Resource).includes(ledgerArn))).toBe(false);
  });
});

describe('outputs', () => {
  it('exports the names and URLs the CLI reads, under the names it expects', () => {
    // Prepare
    const template = synth();
    const expected = {
      BucketName: refOf(template, 'IngestBucket', 'AWS::S3::Bucket'),
      FileEventsQueueUrl: refOf(template, 'FileEvents', 'AWS::SQS::Queue'),
      FileEventsDlqUrl: refOf(template, 'FileEventsDlq', 'AWS::SQS::Queue'),
      SignalsQueueUrl: refOf(template, 'Signals', 'AWS::SQS::Queue'),
      SignalsDlqUrl: refOf(template, 'SignalsDlq', 'AWS::SQS::Queue'),
      LedgerTableName: refOf(template, 'Ledger', 'AWS::DynamoDB::Table'),
      ScoresTableName: refOf(template, 'Scores', 'AWS::DynamoDB::Table'),
      KafkaFailuresBucketName: refOf(template, 'ProducersKafkaFailuresBucket', 'AWS::S3::Bucket'),
      KafkaFailureNoticesQueueUrl: refOf(template, 'ProducersKafkaFailuresNotices', 'AWS::SQS::Queue'),
      KafkaConsumerFunctionName: refOf(template, 'ProducersKafkaConsumer', 'AWS::Lambda::Function'),
      S3TriggerFunctionName: refOf(template, 'S3Trigger', 'AWS::Lambda::Function'),
      ScorerFunctionName: refOf(template, 'Scorer', 'AWS::Lambda::Function'),
      DbPollerFunctionName: refOf(template, 'ProducersDbPoller', 'AWS::Lambda::Function'),
      ScoresBucketName: refOf(template, 'ScoresBucket', 'AWS::S3::Bucket'),
      AnomaliesTableName: refOf(template, 'Anomalies', 'AWS::DynamoDB::Table'),
      ScoresGlueTable: {
        'Fn::Join': [
          '',
          [
            refOf(template, 'ScoresDatabase', 'AWS::Glue::Database'),
            '.',
            refOf(template, 'ScoresTable', 'AWS::Glue::Table'),
          ],
        ],
      },
      AlarmTopicArn: {
        Ref: Object.keys(resourcesOf(template)).find((id) => id.startsWith('MonitoringAlarms')),
      },
    };

    // Act
    const outputs = template.toJSON().Outputs as Record<string, { Value: unknown }>;

    // Assess
    expect(Object.values(OUTPUTS).sort()).toEqual(Object.keys(expected).sort());
    for (const [name, value] of Object.entries(expected)) expect(outputs[name]?.Value).toEqual(value);
  });
});

describe('PulseFunction', () => {
  it('finds each handler at functions/<name>/handler.ts under the repository root', () => {
    // Prepare
    const names = ['s3-trigger', 'scorer', 'db-poller', 'kafka-consumer'] as const;

    // Act
    const entries = names.map((n) => handlerEntry(n));

    // Assess
    expect(entries).toEqual(names.map((n) => join(REPO_ROOT, 'functions', n, 'handler.ts')));
    expect(existsSync(join(REPO_ROOT, 'package-lock.json'))).toBe(true);
  });

  it('bundles ESM for node22, minified with source maps and names, the AWS SDK included', () => {
    // Prepare
    const expected = {
      target: 'node22',
      minify: true,
      sourceMap: true,
      keepNames: true,
      mainFields: ['module', 'main'],
      externalModules: [],
    };

    // Act
    const bundling = BUNDLING;

    // Assess
    expect(bundling).toMatchObject(expected);
    expect(String(bundling.format)).toBe('esm');
  });

  it('gives the ESM bundle a working require through its banner', async () => {
    // Prepare
    const dir = mkdtempSync(join(tmpdir(), 'pulse-banner-'));
    const module = join(dir, 'bundle.mjs');
    writeFileSync(
      module,
      `${BUNDLING.banner}\nexport const path = require('node:path').posix.join('a', 'b');\n`,
    );

    // Act
    const loaded = (await import(pathToFileURL(module).href)) as { path: string };

    // Assess
    expect(loaded.path).toBe('a/b');
    rmSync(dir, { recursive: true, force: true });
  });

  it('refuses a log retention CloudWatch does not offer instead of picking another', () => {
    // Prepare
    const unsupported = 31;

    // Act
    const supported = retentionFor(settings.logRetentionDays);

    // Assess
    expect(supported).toBe(settings.logRetentionDays);
    expect(() => retentionFor(unsupported)).toThrow('no 31-day retention');
  });

  it('adds a function with the shared defaults in a few lines, passing reserved concurrency through', () => {
    // Prepare
    const stack = new Stack(newApp(), 'Producers');
    const cfg = settings.functions.dbPoller;

    // Act
    new PulseFunction(stack, 'DbPoller', {
      name: 'db-poller',
      timeoutSeconds: cfg.timeoutSeconds,
      memoryMb: cfg.memoryMb,
      reservedConcurrentExecutions: 1,
      environment: { DB_MODE: settings.dbPoller.mode },
    });

    // Assess
    Template.fromStack(stack).hasResourceProperties('AWS::Lambda::Function', {
      Runtime: 'nodejs22.x',
      Architectures: ['arm64'],
      Timeout: cfg.timeoutSeconds,
      MemorySize: cfg.memoryMb,
      ReservedConcurrentExecutions: 1,
      Environment: {
        Variables: Match.objectLike({
          POWERTOOLS_SERVICE_NAME: 'db-poller',
          DB_MODE: settings.dbPoller.mode,
        }),
      },
    });
  });
});
