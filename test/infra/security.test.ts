import type { Template } from 'aws-cdk-lib/assertions';
import { describe, expect, it } from 'vitest';
import { settings } from '#shared/settings.ts';
import {
  DB_AND_MSK_CONTEXT,
  SELF_MANAGED_KAFKA_CONTEXT,
  STACK_SHAPES,
  synthTemplate,
} from '../helpers/stacks.ts';

type Resource = { Type: string; Properties: Record<string, unknown> };
type Statement = {
  Effect: string;
  Action: string | string[];
  Principal?: unknown;
  Resource: unknown;
  Condition?: unknown;
};

const resourcesOf = (t: Template) => t.toJSON().Resources as Record<string, Resource>;
const ofType = (t: Template, type: string) =>
  Object.entries(resourcesOf(t)).filter(([, r]) => r.Type === type);
const statementsOf = (r: Resource) => (r.Properties.PolicyDocument as { Statement: Statement[] }).Statement;
const getAtt = (id: string) => ({ 'Fn::GetAtt': [id, 'Arn'] });
const NOT_TLS = { Bool: { 'aws:SecureTransport': 'false' } };

/** Environment variable names that would hold a credential rather than point at one. */
const SECRET_NAME = /PASSWORD|PASSWD|SECRET|TOKEN|CREDENTIAL|PRIVATE_KEY|ACCESS_KEY|API_KEY|SASL/i;

describe.each(STACK_SHAPES)('security of the stack with %s', (_shape, context) => {
  const t = synthTemplate({ context });

  it('encrypts every bucket, blocks all public access to it and denies it any request not over TLS', () => {
    // Prepare
    const buckets = ofType(t, 'AWS::S3::Bucket');
    const policies = ofType(t, 'AWS::S3::BucketPolicy').map(([, r]) => r);

    // Assess
    expect(buckets.map(([id]) => id.replace(/[0-9A-F]{8}$/, '')).sort()).toEqual([
      'AccessLogs',
      'IngestBucket',
      'ProducersKafkaFailuresBucket',
      'ScoresBucket',
    ]);
    for (const [id, bucket] of buckets) {
      expect(bucket.Properties.BucketEncryption, id).toEqual({
        ServerSideEncryptionConfiguration: [{ ServerSideEncryptionByDefault: { SSEAlgorithm: 'AES256' } }],
      });
      expect(bucket.Properties.PublicAccessBlockConfiguration, id).toEqual({
        BlockPublicAcls: true,
        BlockPublicPolicy: true,
        IgnorePublicAcls: true,
        RestrictPublicBuckets: true,
      });
      const policy = policies.find(
        (p) => JSON.stringify(p.Properties.Bucket) === JSON.stringify({ Ref: id }),
      );
      expect(policy, id).toBeDefined();
      expect(statementsOf(policy as Resource)).toContainEqual({
        Effect: 'Deny',
        Action: 's3:*',
        Principal: { AWS: '*' },
        Condition: NOT_TLS,
        Resource: [getAtt(id), { 'Fn::Join': ['', [getAtt(id), '/*']] }],
      });
    }
  });

  it('encrypts every queue and denies it any request not over TLS', () => {
    // Prepare
    const queues = ofType(t, 'AWS::SQS::Queue');
    const policies = ofType(t, 'AWS::SQS::QueuePolicy').map(([, r]) => r);

    // Assess
    expect(queues).toHaveLength(5);
    for (const [id, queue] of queues) {
      expect(queue.Properties.SqsManagedSseEnabled, id).toBe(true);
      const policy = policies.find(
        (p) => JSON.stringify(p.Properties.Queues) === JSON.stringify([{ Ref: id }]),
      );
      expect(policy, id).toBeDefined();
      expect(statementsOf(policy as Resource)).toContainEqual({
        Effect: 'Deny',
        Action: 'sqs:*',
        Principal: { AWS: '*' },
        Condition: NOT_TLS,
        Resource: getAtt(id),
      });
    }
  });

  it('encrypts every table and keeps point-in-time recovery on', () => {
    // Prepare
    const tables = ofType(t, 'AWS::DynamoDB::Table');

    // Assess
    expect(tables).toHaveLength(3);
    for (const [id, table] of tables) {
      expect(table.Properties.SSESpecification, id).toEqual({ SSEEnabled: true });
      expect(table.Properties.PointInTimeRecoverySpecification, id).toEqual({
        PointInTimeRecoveryEnabled: true,
      });
    }
  });

  it('encrypts the alarm topic with a rotated key of its own and denies publishing to it other than over TLS', () => {
    // Prepare
    const [topic] = ofType(t, 'AWS::SNS::Topic');
    const [, policy] = ofType(t, 'AWS::SNS::TopicPolicy')[0] ?? [];
    const keys = ofType(t, 'AWS::KMS::Key');

    // Assess
    expect(keys).toHaveLength(1);
    const [keyId, key] = keys[0] as [string, Resource];
    expect(topic?.[1].Properties.KmsMasterKeyId).toEqual(getAtt(keyId));
    expect(key.Properties.EnableKeyRotation).toBe(true);
    expect(statementsOf(policy as Resource)).toContainEqual(
      expect.objectContaining({ Effect: 'Deny', Action: 'sns:Publish', Condition: NOT_TLS }),
    );
  });

  it('lets CloudWatch alarms, of this account only, use the topic key and publish to the topic', () => {
    // Prepare
    const [, key] = ofType(t, 'AWS::KMS::Key')[0] ?? [];
    const [, policy] = ofType(t, 'AWS::SNS::TopicPolicy')[0] ?? [];
    const cloudwatch = { Service: 'cloudwatch.amazonaws.com' };
    const sameAccount = { StringEquals: { 'aws:SourceAccount': { Ref: 'AWS::AccountId' } } };

    // Act
    const keyPolicy = (key?.Properties.KeyPolicy as { Statement: Statement[] } | undefined)?.Statement;

    // Assess
    expect(keyPolicy).toContainEqual(
      expect.objectContaining({
        Effect: 'Allow',
        Principal: cloudwatch,
        Action: ['kms:Decrypt', 'kms:GenerateDataKey*'],
        Condition: sameAccount,
      }),
    );
    expect(statementsOf(policy as Resource)).toContainEqual(
      expect.objectContaining({
        Effect: 'Allow',
        Principal: cloudwatch,
        Action: 'sns:Publish',
        Condition: sameAccount,
      }),
    );
  });

  it('sends every function’s logs, CDK’s bucket-notifications handler included, to a log group of the stack with the settings’ retention', () => {
    // Prepare
    const groups = Object.fromEntries(ofType(t, 'AWS::Logs::LogGroup'));
    const functions = ofType(t, 'AWS::Lambda::Function');
    // Assess: a function without LoggingConfig logs to /aws/lambda/<name>, which Lambda creates with no expiry.
    expect(functions.length).toBeGreaterThanOrEqual(5);
    for (const [id, fn] of functions) {
      const ref = (fn.Properties.LoggingConfig as { LogGroup?: { Ref?: string } } | undefined)?.LogGroup?.Ref;
      expect(ref, `${id} has no log group of the stack`).toBeDefined();
      expect(groups[ref ?? '']?.Properties.RetentionInDays, id).toBe(settings.logRetentionDays);
    }
    const handler = functions.find(([id]) => id.startsWith('BucketNotificationsHandler'));
    expect(handler?.[1].Properties.LoggingConfig).toEqual({
      LogGroup: { Ref: expect.stringMatching(/^BucketNotificationsHandlerLogs/) },
    });
  });

  it('puts no credential in any function’s environment: secrets are named by ARN only', () => {
    // Prepare
    const functions = ofType(t, 'AWS::Lambda::Function');

    // Act
    const variables = functions.flatMap(([fn, r]) =>
      Object.entries(
        ((r.Properties.Environment as { Variables?: Record<string, unknown> } | undefined)?.Variables ??
          {}) as Record<string, unknown>,
      ).map(([name, value]) => ({ fn, name, value })),
    );

    // Assess
    expect(variables.length).toBeGreaterThan(0);
    for (const { fn, name, value } of variables) {
      if (SECRET_NAME.test(name)) {
        // Only a pointer to Secrets Manager: the function reads the value at cold start.
        expect(name, fn).toMatch(/_SECRET_ARN$/);
        expect(value, `${fn} ${name}`).toMatch(/^arn:aws[a-z-]*:secretsmanager:[a-z0-9-]+:\d{12}:secret:/);
      }
      // No literal that looks like a credential (user:password@host, key=value secrets).
      expect(JSON.stringify(value), `${fn} ${name}`).not.toMatch(
        /:\/\/[^/\s:@]+:[^/\s@]+@|password=|secret=/i,
      );
    }
  });

  it('declares no secret value anywhere in the template', () => {
    // Act
    const json = JSON.stringify(t.toJSON());

    // Assess
    expect(json).not.toMatch(/"(SecretString|Password|MasterUserPassword|SecretAccessKey)"/);
  });

  it('gives the database and Kafka credentials to their consumers as Secrets Manager ARNs', () => {
    // Prepare
    const poller = ofType(t, 'AWS::Lambda::Function').find(([id]) => id.startsWith('ProducersDbPoller'));
    const env =
      (poller?.[1].Properties.Environment as { Variables?: Record<string, unknown> } | undefined)
        ?.Variables ?? {};
    const kafkaMappings = ofType(t, 'AWS::Lambda::EventSourceMapping').filter(
      ([, r]) => 'Topics' in r.Properties,
    );

    // Assess
    expect(poller).toBeDefined();
    expect(env.DB_SECRET_ARN).toBe('dbSecretArn' in context ? DB_AND_MSK_CONTEXT.dbSecretArn : undefined);
    if ('kafkaSecretArn' in context) {
      expect(kafkaMappings.map(([, r]) => r.Properties.SourceAccessConfigurations)).toEqual([
        [{ Type: 'SASL_SCRAM_512_AUTH', URI: SELF_MANAGED_KAFKA_CONTEXT.kafkaSecretArn }],
      ]);
    }
  });
});
