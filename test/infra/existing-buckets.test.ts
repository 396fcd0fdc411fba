import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { App, Aspects, Stack } from 'aws-cdk-lib';
import { Annotations, Match, Template } from 'aws-cdk-lib/assertions';
import { Bucket } from 'aws-cdk-lib/aws-s3';
import { AwsSolutionsChecks } from 'cdk-nag';
import { describe, expect, it } from 'vitest';
import { REPO_ROOT } from '../../infra/constructs/pulse-function.ts';
import { pulseContext } from '../../infra/context.ts';
import type { ExistingBucketSource } from '../../infra/existing-buckets.ts';
import { PulseIngest } from '../../infra/pulse-ingest.ts';

type Json = Record<string, unknown>;
type Statement = { Action: string | string[]; Resource: unknown; Condition?: Json; Principal?: Json };

const cdkJson = JSON.parse(readFileSync(join(REPO_ROOT, 'cdk.json'), 'utf8')) as { context: Json };
const TOPIC = 'arn:aws:sns:eu-west-1:123456789012:bucket-events';

/** The construct in a user's stack (with cdk-nag), ingesting from `sources`. */
function synth(sources: readonly ExistingBucketSource[] | ((stack: Stack) => ExistingBucketSource[])) {
  const app = new App({ context: { ...cdkJson.context, 'aws:cdk:bundling-stacks': [] } });
  const stack = new Stack(app, 'UserStack', { env: { account: '123456789012', region: 'eu-west-1' } });
  const existingBuckets = typeof sources === 'function' ? sources(stack) : sources;
  const pulse = new PulseIngest(stack, 'Pulse', { existingBuckets });
  Aspects.of(app).add(new AwsSolutionsChecks({ verbose: true }));
  const template = Template.fromStack(stack);
  return { stack, pulse, template };
}

/** Every statement of the s3-trigger's role policies. */
function s3TriggerStatements(t: Template, pulse: PulseIngest): Statement[] {
  const roleId = Stack.of(pulse).getLogicalId(pulse.s3Trigger.role?.node.defaultChild as never);
  const policies = t.findResources('AWS::IAM::Policy', {
    Properties: { Roles: Match.arrayWith([{ Ref: roleId }]) },
  });
  return Object.values(policies).flatMap(
    (p) => (p.Properties as { PolicyDocument: { Statement: Statement[] } }).PolicyDocument.Statement,
  );
}

/** The statements that name the bucket `name`, by its ARN (resolved as the template writes it). */
function onBucket(statements: Statement[], name: string): Statement[] {
  return statements.filter((s) => JSON.stringify(s.Resource).includes(`:s3:::${name}`));
}

const actions = (ss: Statement[]) => ss.flatMap((s) => [s.Action].flat()).sort();
const nagFindings = (stack: Stack) =>
  [
    ...Annotations.fromStack(stack).findError('*', Match.anyValue()),
    ...Annotations.fromStack(stack).findWarning('*', Match.stringLikeRegexp('AwsSolutions-')),
  ].map((a) => `${a.id}: ${String(a.entry.data).split('\n')[0]}`);

describe('PulseIngest with an existing bucket', () => {
  it('adds S3 → SQS notifications per prefix to an imported bucket through the unmanaged custom resource', () => {
    // Prepare
    const sources = [{ bucket: 'user-data', prefixes: ['in/', 'drop/'] }];

    // Act
    const { template, stack } = synth(sources);

    // Assess: Managed false = the handler keeps the notifications it did not create.
    template.hasResourceProperties('Custom::S3BucketNotifications', {
      BucketName: 'user-data',
      Managed: false,
      NotificationConfiguration: {
        QueueConfigurations: [
          Match.objectLike({
            Events: ['s3:ObjectCreated:*'],
            Filter: { Key: { FilterRules: [{ Name: 'prefix', Value: 'in/' }] } },
          }),
          Match.objectLike({
            Events: ['s3:ObjectCreated:*'],
            Filter: { Key: { FilterRules: [{ Name: 'prefix', Value: 'drop/' }] } },
          }),
        ],
      },
    });
    template.hasResourceProperties('AWS::SQS::QueuePolicy', {
      PolicyDocument: {
        Statement: Match.arrayWith([
          Match.objectLike({
            Principal: { Service: 's3.amazonaws.com' },
            Condition: {
              ArnLike: {
                'aws:SourceArn': Match.objectLike({ 'Fn::Join': ['', Match.arrayWith([':s3:::user-data'])] }),
              },
              StringEquals: { 'aws:SourceAccount': '123456789012' },
            },
          }),
        ]),
      },
    });
    expect(nagFindings(stack)).toEqual([]);
  });

  it('grants the s3-trigger a read of the prefixes and a listing, and nothing else, on the existing bucket', () => {
    // Prepare
    const sources = [{ bucket: 'arn:aws:s3:::user-data', prefixes: ['in/', 'drop/'] }];

    // Act
    const { template, pulse } = synth(sources);

    // Assess
    const statements = onBucket(s3TriggerStatements(template, pulse), 'user-data');
    expect(actions(statements)).toEqual(['s3:GetObject', 's3:GetObjectVersion', 's3:ListBucket']);
    const read = statements.find((s) => [s.Action].flat().includes('s3:GetObject'));
    expect(JSON.stringify(read?.Resource)).toContain(':s3:::user-data/in/*');
    expect(JSON.stringify(read?.Resource)).toContain(':s3:::user-data/drop/*');
    const list = statements.find((s) => s.Action === 's3:ListBucket');
    expect(list?.Condition).toEqual({ StringLikeIfExists: { 's3:prefix': ['in/*', 'drop/*'] } });
  });

  it('keeps rejects, staged copies and the canary in the bucket the construct creates', () => {
    // Prepare
    const sources = [{ bucket: 'user-data' }];

    // Act
    const { template, pulse, stack } = synth(sources);

    // Assess: the pipeline writes only to its own bucket.
    const env = template.findResources('AWS::Lambda::Function');
    const quarantine = Object.values(env).map(
      (f) =>
        (f.Properties as { Environment?: { Variables?: Json } }).Environment?.Variables?.QUARANTINE_BUCKET,
    );
    const own = { Ref: stack.getLogicalId(pulse.bucket.node.defaultChild as never) };
    expect(quarantine.filter(Boolean)).toEqual(quarantine.filter(Boolean).map(() => own));
    const writes = s3TriggerStatements(template, pulse).filter((s) =>
      [s.Action].flat().some((a) => a === 's3:PutObject' || a === 's3:DeleteObject'),
    );
    expect(writes.length).toBeGreaterThan(0);
    expect(onBucket(writes, 'user-data')).toEqual([]);
  });

  it('wires EventBridge Object Created events of the bucket and prefixes to the file-events queue', () => {
    // Prepare
    const sources: ExistingBucketSource[] = [
      { bucket: 'user-data', prefixes: ['in/'], notifications: 'eventbridge' },
    ];

    // Act
    const { template, stack, pulse } = synth(sources);

    // Assess
    template.hasResourceProperties('AWS::Events::Rule', {
      EventPattern: {
        source: ['aws.s3'],
        'detail-type': ['Object Created'],
        detail: { bucket: { name: ['user-data'] }, object: { key: [{ prefix: 'in/' }] } },
      },
      Targets: [
        Match.objectLike({
          Arn: { 'Fn::GetAtt': [stack.getLogicalId(pulse.fileEvents.node.defaultChild as never), 'Arn'] },
        }),
      ],
    });
    template.hasResourceProperties('AWS::SQS::QueuePolicy', {
      PolicyDocument: {
        Statement: Match.arrayWith([
          Match.objectLike({
            Principal: { Service: 'events.amazonaws.com' },
            Condition: { ArnEquals: Match.anyValue() },
          }),
        ]),
      },
    });
    expect(
      template.findResources('Custom::S3BucketNotifications', { Properties: { BucketName: 'user-data' } }),
    ).toEqual({}); // no S3 notification on the shared bucket
    expect(onBucket(s3TriggerStatements(template, pulse), 'user-data').length).toBe(2);
    expect(nagFindings(stack)).toEqual([]);
  });

  it('subscribes the file-events queue to the SNS topic the bucket notifies, raw delivery off', () => {
    // Prepare
    const sources: ExistingBucketSource[] = [{ bucket: 'user-data', notifications: { snsTopicArn: TOPIC } }];

    // Act
    const { template, stack } = synth(sources);

    // Assess
    template.hasResourceProperties('AWS::SNS::Subscription', {
      Protocol: 'sqs',
      TopicArn: TOPIC,
      RawMessageDelivery: false,
    });
    template.hasResourceProperties('AWS::SQS::QueuePolicy', {
      PolicyDocument: {
        Statement: Match.arrayWith([
          Match.objectLike({
            Principal: { Service: 'sns.amazonaws.com' },
            Condition: { ArnEquals: { 'aws:SourceArn': TOPIC } },
          }),
        ]),
      },
    });
    expect(nagFindings(stack)).toEqual([]);
  });

  it('takes several buckets, each with its own mode, and an IBucket from Bucket.fromBucketName', () => {
    // Prepare
    const sources = (stack: Stack): ExistingBucketSource[] => [
      { bucket: Bucket.fromBucketName(stack, 'Theirs', 'their-data'), prefixes: ['a/'] },
      { bucket: 'user-data', prefixes: ['b/'], notifications: 'eventbridge' },
    ];

    // Act
    const { template, pulse, stack } = synth(sources);

    // Assess
    template.hasResourceProperties('Custom::S3BucketNotifications', {
      BucketName: 'their-data',
      Managed: false,
    });
    template.resourceCountIs('AWS::Events::Rule', 2); // the sweep's schedule and this bucket's rule
    const statements = s3TriggerStatements(template, pulse);
    expect(JSON.stringify(onBucket(statements, 'their-data'))).toContain('their-data/a/*');
    expect(JSON.stringify(onBucket(statements, 'user-data'))).toContain('user-data/b/*');
    expect(nagFindings(stack)).toEqual([]);
  });

  it.each([
    ['s3-sqs', 's3-sqs'],
    ['eventbridge', 'eventbridge'],
    ['SNS', { snsTopicArn: TOPIC }],
  ] as const)(
    'sets the same environment variables on every function with %s as without an existing bucket (the env contract holds)',
    (_mode, notifications) => {
      // Prepare
      const names = (t: Template) =>
        Object.values(t.findResources('AWS::Lambda::Function'))
          .map((f) =>
            Object.keys((f.Properties as { Environment?: { Variables?: Json } }).Environment?.Variables ?? {})
              .sort()
              .join(','),
          )
          .sort();

      // Act
      const without = synth([]);
      const withBucket = synth([{ bucket: 'user-data', notifications }]);

      // Assess
      expect(names(withBucket.template)).toEqual(names(without.template));
    },
  );

  it.each([
    [[{ bucket: 'user-data', prefixes: [] }], /at least one prefix/],
    [[{ bucket: 'user-data', prefixes: [''] }], /an empty prefix/],
    [[{ bucket: 'user-data', prefixes: ['in/', 'in/sub/'] }], /"in\/sub\/" is inside "in\/"/],
    [
      [{ bucket: 'user-data', notifications: { snsTopicArn: 'arn:aws:sqs:eu-west-1:123456789012:q' } }],
      /not an SNS topic ARN/,
    ],
  ] as const)('refuses %j', (sources, message) => {
    // Act
    const act = () => synth(sources as unknown as ExistingBucketSource[]);

    // Assess
    expect(act).toThrow(message);
  });

  it('reads existingBuckets from context as JSON text', () => {
    // Prepare
    const json = JSON.stringify([
      { bucket: 'user-data', prefixes: ['in/'], notifications: { snsTopicArn: TOPIC } },
    ]);

    // Act
    const { props } = pulseContext((k) => (k === 'existingBuckets' ? json : undefined));

    // Assess
    expect(props.existingBuckets).toEqual([
      { bucket: 'user-data', prefixes: ['in/'], notifications: { snsTopicArn: TOPIC } },
    ]);
    expect(() =>
      pulseContext((k) => (k === 'existingBuckets' ? '[{"bucket":"b","notifications":"sns"}]' : undefined)),
    ).toThrow(/-c existingBuckets: /);
  });
});
