import { App } from 'aws-cdk-lib';
import { Match, Template } from 'aws-cdk-lib/assertions';
import { beforeAll, describe, expect, it } from 'vitest';
import { OUTPUTS, PulseStack } from '../../infra/pulse-stack.ts';
import { settings, visibilityTimeoutFor } from '../../shared/settings.ts';

type Resource = { Type: string; Properties: Record<string, unknown> };

describe('PulseStack template', () => {
  let template: Template;
  let resources: Record<string, Resource>;

  beforeAll(() => {
    // Bundling is skipped here (the functions are bundled by `npm run synth`).
    const app = new App({ context: { 'aws:cdk:bundling-stacks': [] } });
    template = Template.fromStack(new PulseStack(app, 'Test'));
    resources = template.toJSON().Resources;
  });

  const ofType = (type: string) => Object.entries(resources).filter(([, r]) => r.Type === type);
  const logicalId = (prefix: string, type: string) => {
    const found = ofType(type).find(([id]) => new RegExp(`^${prefix}[0-9A-F]{8}$`).test(id));
    if (!found) throw new Error(`no ${type} named ${prefix}*`);
    return found[0];
  };
  const fnTimeout = (prefix: string) =>
    Number(resources[logicalId(prefix, 'AWS::Lambda::Function')]?.Properties.Timeout);
  const queue = (prefix: string) => resources[logicalId(prefix, 'AWS::SQS::Queue')]?.Properties ?? {};

  describe('ingest bucket', () => {
    it('is versioned, encrypted, private and retained', () => {
      template.hasResource('AWS::S3::Bucket', {
        Properties: {
          VersioningConfiguration: { Status: 'Enabled' },
          BucketEncryption: {
            ServerSideEncryptionConfiguration: [
              { ServerSideEncryptionByDefault: { SSEAlgorithm: 'AES256' } },
            ],
          },
          PublicAccessBlockConfiguration: {
            BlockPublicAcls: true,
            BlockPublicPolicy: true,
            IgnorePublicAcls: true,
            RestrictPublicBuckets: true,
          },
        },
        DeletionPolicy: 'Retain',
      });
    });

    it('denies every request not made over TLS', () => {
      template.hasResourceProperties('AWS::S3::BucketPolicy', {
        PolicyDocument: {
          Statement: Match.arrayWith([
            Match.objectLike({
              Effect: 'Deny',
              Action: 's3:*',
              Principal: { AWS: '*' },
              Condition: { Bool: { 'aws:SecureTransport': 'false' } },
            }),
          ]),
        },
      });
    });

    it('notifies the file-events queue on ObjectCreated under incoming/ for every supported suffix', () => {
      const [, notifications] = ofType('Custom::S3BucketNotifications')[0] ?? [];
      const configuration = notifications?.Properties.NotificationConfiguration as
        | { QueueConfigurations: unknown[] }
        | undefined;
      const configs = (configuration?.QueueConfigurations ?? []) as {
        Events: string[];
        QueueArn: { 'Fn::GetAtt': string[] };
        Filter: { Key: { FilterRules: { Name: string; Value: string }[] } };
      }[];
      expect(configs).toHaveLength(10);
      const suffixes = configs.map((c) => {
        expect(c.Events).toEqual(['s3:ObjectCreated:*']);
        expect(c.QueueArn['Fn::GetAtt'][0]).toBe(logicalId('FileEvents', 'AWS::SQS::Queue'));
        const rules = Object.fromEntries(
          c.Filter.Key.FilterRules.map((r) => [r.Name.toLowerCase(), r.Value]),
        );
        expect(rules.prefix).toBe('incoming/');
        return rules.suffix;
      });
      expect(suffixes.sort()).toEqual(
        [
          '.csv',
          '.json',
          '.ndjson',
          '.jsonl',
          '.parquet',
          '.csv.gz',
          '.json.gz',
          '.ndjson.gz',
          '.jsonl.gz',
          '.parquet.gz',
        ].sort(),
      );
    });
  });

  describe('queues', () => {
    it.each([
      ['FileEvents', 'FileEventsDlq', 'S3Trigger', settings.fileEvents.maxReceiveCount],
      ['Signals', 'SignalsDlq', 'Scorer', settings.signals.maxReceiveCount],
    ])(
      '%s redrives to its DLQ after maxReceiveCount from the settings, within 3..10',
      (name, dlq, consumer, max) => {
        const q = queue(name);
        expect(q.RedrivePolicy).toEqual({
          deadLetterTargetArn: { 'Fn::GetAtt': [logicalId(dlq, 'AWS::SQS::Queue'), 'Arn'] },
          maxReceiveCount: max,
        });
        expect(max).toBeGreaterThanOrEqual(3);
        expect(max).toBeLessThanOrEqual(10);
        expect(q.VisibilityTimeout).toBeGreaterThanOrEqual(6 * fnTimeout(consumer));
        expect(q.VisibilityTimeout).toBe(visibilityTimeoutFor(fnTimeout(consumer)));
      },
    );

    it('encrypts every queue and its DLQ, and refuses plain-HTTP access', () => {
      const queues = ofType('AWS::SQS::Queue');
      expect(queues).toHaveLength(4);
      for (const [, q] of queues) expect(q.Properties.SqsManagedSseEnabled).toBe(true);
      const policies = ofType('AWS::SQS::QueuePolicy');
      const tlsDenied = policies.filter(([, p]) =>
        JSON.stringify(p.Properties.PolicyDocument).includes('"aws:SecureTransport":"false"'),
      );
      expect(tlsDenied.length).toBe(4);
    });

    it('keeps dead letters for the longest time SQS allows', () => {
      expect(queue('FileEventsDlq').MessageRetentionPeriod).toBe(settings.dlqRetentionDays * 86_400);
      expect(queue('SignalsDlq').MessageRetentionPeriod).toBe(settings.dlqRetentionDays * 86_400);
    });

    it('sets the signals queue MaximumMessageSize explicitly, and the scorer batch fits the 6 MB payload', () => {
      const max = queue('Signals').MaximumMessageSize as number;
      expect(max).toBe(settings.signals.queueMaximumMessageBytes);
      expect(max).toBeLessThanOrEqual(1024 * 1024);
      expect(settings.signals.maxMessageBytes).toBeLessThanOrEqual(max);
      const mapping = ofType('AWS::Lambda::EventSourceMapping').find(([, m]) =>
        JSON.stringify(m.Properties.FunctionName).includes(logicalId('Scorer', 'AWS::Lambda::Function')),
      );
      const batchSize = mapping?.[1].Properties.BatchSize as number;
      expect(batchSize * max).toBeLessThan(6 * 1000 * 1000);
    });
  });

  describe('tables', () => {
    it('keeps a ledger keyed by object and ETag, with a status index, on demand, PITR and SSE', () => {
      template.hasResource('AWS::DynamoDB::Table', {
        Properties: {
          KeySchema: [
            { AttributeName: 'pk', KeyType: 'HASH' },
            { AttributeName: 'sk', KeyType: 'RANGE' },
          ],
          BillingMode: 'PAY_PER_REQUEST',
          PointInTimeRecoverySpecification: { PointInTimeRecoveryEnabled: true },
          SSESpecification: { SSEEnabled: true },
          GlobalSecondaryIndexes: [
            Match.objectLike({
              IndexName: 'byStatus',
              KeySchema: [
                { AttributeName: 'status', KeyType: 'HASH' },
                { AttributeName: 'updatedAt', KeyType: 'RANGE' },
              ],
            }),
          ],
        },
        DeletionPolicy: 'Retain',
      });
    });

    it('keeps scores with a TTL attribute, on demand, PITR and SSE', () => {
      template.hasResource('AWS::DynamoDB::Table', {
        Properties: {
          KeySchema: [{ AttributeName: 'pk', KeyType: 'HASH' }],
          BillingMode: 'PAY_PER_REQUEST',
          PointInTimeRecoverySpecification: { PointInTimeRecoveryEnabled: true },
          SSESpecification: { SSEEnabled: true },
          TimeToLiveSpecification: { AttributeName: 'expiresAt', Enabled: true },
        },
        DeletionPolicy: 'Retain',
      });
    });
  });

  describe('functions', () => {
    it.each([
      ['S3Trigger', settings.functions.s3Trigger, ['SIGNALS_QUEUE_URL', 'LEDGER_TABLE', 'QUARANTINE_BUCKET']],
      ['Scorer', settings.functions.scorer, ['SCORES_TABLE', 'QUARANTINE_BUCKET']],
    ])(
      '%s runs nodejs22.x on arm64 with its settings, its resources in env, and a log group',
      (name, cfg, env) => {
        const fn = resources[logicalId(name, 'AWS::Lambda::Function')]?.Properties ?? {};
        expect(fn.Runtime).toBe('nodejs22.x');
        expect(fn.Architectures).toEqual(['arm64']);
        expect(fn.Timeout).toBe(cfg.timeoutSeconds);
        expect(fn.MemorySize).toBe(cfg.memoryMb);
        const variables = (fn.Environment as { Variables: Record<string, unknown> }).Variables;
        expect(Object.keys(variables)).toEqual(
          expect.arrayContaining([...env, 'NODE_OPTIONS', 'POWERTOOLS_SERVICE_NAME']),
        );
        expect(variables.NODE_OPTIONS).toBe('--enable-source-maps');
        const logGroupId = (fn.LoggingConfig as { LogGroup: { Ref: string } }).LogGroup.Ref;
        expect(resources[logGroupId]?.Properties.RetentionInDays).toBe(settings.logRetentionDays);
      },
    );

    it('leaves the producers of the next issue out of the stack until they are built', () => {
      expect(
        ofType('AWS::Lambda::Function')
          .map(([id]) => id)
          .filter((id) => /Poller|Kafka/.test(id)),
      ).toEqual([]);
    });

    it.each([
      ['FileEvents', 'S3Trigger', settings.fileEvents.batchSize],
      ['Signals', 'Scorer', settings.signals.batchSize],
    ])(
      '%s feeds %s with partial batch responses and the batch size from the settings',
      (q, fn, batchSize) => {
        template.hasResourceProperties('AWS::Lambda::EventSourceMapping', {
          EventSourceArn: { 'Fn::GetAtt': [logicalId(q, 'AWS::SQS::Queue'), 'Arn'] },
          FunctionName: { Ref: logicalId(fn, 'AWS::Lambda::Function') },
          BatchSize: batchSize,
          FunctionResponseTypes: ['ReportBatchItemFailures'],
        });
      },
    );
  });

  describe('IAM', () => {
    const statementsOf = (fnPrefix: string) => {
      const fn = resources[logicalId(fnPrefix, 'AWS::Lambda::Function')];
      const role = (fn?.Properties.Role as { 'Fn::GetAtt': string[] } | undefined)?.['Fn::GetAtt'][0];
      return ofType('AWS::IAM::Policy')
        .filter(([, p]) => JSON.stringify(p.Properties.Roles).includes(`"${role}"`))
        .flatMap(
          ([, p]) => (p.Properties.PolicyDocument as { Statement: Record<string, unknown>[] }).Statement,
        );
    };
    const actions = (s: Record<string, unknown>) => [s.Action].flat() as string[];

    it('grants no wildcard action and no wildcard resource to the pipeline functions', () => {
      for (const fn of ['S3Trigger', 'Scorer']) {
        for (const s of statementsOf(fn)) {
          for (const a of actions(s)) expect(a).not.toMatch(/(^\*$)|(:\*$)/);
          expect([s.Resource].flat()).not.toContain('*');
        }
      }
    });

    it('lets the s3-trigger read only under incoming/ and write only under rejects/', () => {
      const statements = statementsOf('S3Trigger');
      const read = statements.find((s) => actions(s).includes('s3:GetObject'));
      expect(JSON.stringify(read?.Resource)).toContain('/incoming/*');
      const write = statements.find((s) => actions(s).includes('s3:PutObject'));
      expect(JSON.stringify(write?.Resource)).toContain('/rejects/*');
      expect(statements.some((s) => actions(s).includes('sqs:SendMessage'))).toBe(true);
      expect(statements.some((s) => actions(s).includes('dynamodb:UpdateItem'))).toBe(true);
    });

    it('lets the scorer write scores and rejects, and read nothing from incoming/', () => {
      const statements = statementsOf('Scorer');
      expect(statements.some((s) => actions(s).includes('dynamodb:PutItem'))).toBe(true);
      expect(statements.some((s) => actions(s).includes('s3:GetObject'))).toBe(false);
    });
  });

  it('exports the outputs the CLI reads', () => {
    for (const name of Object.values(OUTPUTS)) template.hasOutput(name, {});
  });
});
