import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { App } from 'aws-cdk-lib';
import { Match, Template } from 'aws-cdk-lib/assertions';
import { describe, expect, it } from 'vitest';
import { settings } from '#shared/settings.ts';
import { REPO_ROOT } from '../../infra/constructs/pulse-function.ts';
import { pulseContext } from '../../infra/context.ts';
import { PulseStack } from '../../infra/pulse-stack.ts';

type Resource = { Type: string; Properties: Record<string, unknown> };
const cdkJson = JSON.parse(readFileSync(join(REPO_ROOT, 'cdk.json'), 'utf8')) as {
  context: Record<string, unknown>;
};

/** Synthesizes the stack as `cdk synth -c key=value …` would (bundling skipped). */
function synth(context: Record<string, string> = {}): Template {
  const app = new App({ context: { ...cdkJson.context, ...context, 'aws:cdk:bundling-stacks': [] } });
  const stack = new PulseStack(app, 'Test', pulseContext((k) => app.node.tryGetContext(k)).props);
  return Template.fromStack(stack);
}
const resources = (t: Template) => t.toJSON().Resources as Record<string, Resource>;
const fnProps = (t: Template, prefix: string) =>
  Object.entries(resources(t)).find(
    ([id, r]) => r.Type === 'AWS::Lambda::Function' && id.startsWith(prefix),
  )?.[1].Properties ?? {};

const DB = {
  dbSecretArn: 'arn:aws:secretsmanager:eu-west-1:123456789012:secret:pulse-db-AbCdEf',
  dbVpcId: 'vpc-0123456789abcdef0',
  dbSubnetIds: 'subnet-0aaaaaaaaaaaaaaaa,subnet-0bbbbbbbbbbbbbbbb',
  dbSecurityGroupId: 'sg-0123456789abcdef0',
};

describe('producers in the stack', () => {
  it('deploys the db-poller with its schedule disabled when no database is given', () => {
    // Act
    const t = synth();
    // Assess
    t.hasResourceProperties('AWS::Scheduler::Schedule', {
      State: 'DISABLED',
      ScheduleExpression: `rate(${settings.dbPoller.scheduleRateMinutes} minute${settings.dbPoller.scheduleRateMinutes === 1 ? '' : 's'})`,
    });
    const env = (fnProps(t, 'ProducersDbPoller').Environment as { Variables: Record<string, unknown> })
      .Variables;
    expect(env.DB_SECRET_ARN).toBeUndefined();
    expect(fnProps(t, 'ProducersDbPoller').VpcConfig).toBeUndefined();
  });

  it('enables the schedule and runs the poller in the database VPC when given the database context', () => {
    // Act
    const t = synth(DB);
    // Assess
    t.hasResourceProperties('AWS::Scheduler::Schedule', { State: 'ENABLED' });
    const props = fnProps(t, 'ProducersDbPoller');
    expect(props.VpcConfig).toEqual({
      SubnetIds: DB.dbSubnetIds.split(','),
      SecurityGroupIds: [DB.dbSecurityGroupId],
    });
    const env = (props.Environment as { Variables: Record<string, unknown> }).Variables;
    expect(env).toMatchObject({
      DB_SECRET_ARN: DB.dbSecretArn,
      DB_TABLES: JSON.stringify([
        {
          table: settings.dbPoller.table,
          mode: settings.dbPoller.mode,
          processedType: settings.dbPoller.processedType,
        },
      ]),
      NODE_EXTRA_CA_CERTS: '/var/runtime/ca-cert.pem',
    });
    const policies = JSON.stringify(Object.values(resources(t)).filter((r) => r.Type === 'AWS::IAM::Policy'));
    expect(policies).toContain('secretsmanager:GetSecretValue');
    expect(policies).toContain(DB.dbSecretArn);
  });

  it('adds no Kafka event source without Kafka context', () => {
    const t = synth();
    const kafka = Object.values(resources(t)).filter(
      (r) => r.Type === 'AWS::Lambda::EventSourceMapping' && 'Topics' in r.Properties,
    );
    expect(kafka).toHaveLength(0);
  });

  it('reads MSK in provisioned mode with bounded retries, bisection and the failures bucket, so a bad batch never stalls a partition', () => {
    // Act
    const t = synth({
      mskClusterArn: 'arn:aws:kafka:eu-west-1:123456789012:cluster/pulse/abc',
      kafkaTopic: 'pulse_signals',
    });
    // Assess
    t.hasResourceProperties('AWS::Lambda::EventSourceMapping', {
      EventSourceArn: 'arn:aws:kafka:eu-west-1:123456789012:cluster/pulse/abc',
      Topics: ['pulse_signals'],
      BatchSize: settings.kafka.batchSize,
      StartingPosition: settings.kafka.startingPosition,
      ProvisionedPollerConfig: {
        MinimumPollers: settings.kafka.provisionedPollers.minimum,
        MaximumPollers: settings.kafka.provisionedPollers.maximum,
      },
      MaximumRetryAttempts: settings.kafka.maximumRetryAttempts,
      BisectBatchOnFunctionError: settings.kafka.bisectBatchOnFunctionError,
      DestinationConfig: {
        OnFailure: {
          Destination: { 'Fn::GetAtt': [Match.stringLikeRegexp('^ProducersKafkaFailuresBucket'), 'Arn'] },
        },
      },
    });
  });

  it('in on-demand mode sets only what Lambda accepts there: the failures bucket, no retry, bisection or pollers', () => {
    // Act
    const t = synth({
      mskClusterArn: 'arn:aws:kafka:eu-west-1:123456789012:cluster/pulse/abc',
      kafkaPollerMode: 'on-demand',
    });
    // Assess
    const [mapping] = Object.values(resources(t)).filter(
      (r) => r.Type === 'AWS::Lambda::EventSourceMapping' && 'Topics' in r.Properties,
    );
    expect(mapping?.Properties).toMatchObject({
      DestinationConfig: {
        OnFailure: {
          Destination: { 'Fn::GetAtt': [expect.stringMatching(/^ProducersKafkaFailuresBucket/), 'Arn'] },
        },
      },
    });
    for (const prop of [
      'ProvisionedPollerConfig',
      'MaximumRetryAttempts',
      'BisectBatchOnFunctionError',
      'MaximumRecordAgeInSeconds',
      'FunctionResponseTypes',
    ]) {
      expect(mapping?.Properties, prop).not.toHaveProperty(prop);
    }
  });

  it('takes the provisioned pollers from context, and refuses what Lambda would refuse', () => {
    // Act
    const t = synth({
      mskClusterArn: 'arn:aws:kafka:eu-west-1:123456789012:cluster/pulse/abc',
      kafkaPollerMode: 'provisioned',
      kafkaMinPollers: '2',
      kafkaMaxPollers: '6',
    });
    // Assess
    t.hasResourceProperties('AWS::Lambda::EventSourceMapping', {
      ProvisionedPollerConfig: { MinimumPollers: 2, MaximumPollers: 6 },
    });
    const msk = { mskClusterArn: 'arn:aws:kafka:eu-west-1:123456789012:cluster/pulse/abc' };
    expect(() => synth({ ...msk, kafkaPollerMode: 'fast' })).toThrow('-c kafkaPollerMode must be');
    expect(() => synth({ ...msk, kafkaMinPollers: '201' })).toThrow('-c kafkaMinPollers must be 1..200');
    expect(() => synth({ ...msk, kafkaMinPollers: '5', kafkaMaxPollers: '4' })).toThrow('must not exceed');
    expect(() => synth({ ...msk, kafkaPollerMode: 'on-demand', kafkaMaxPollers: '4' })).toThrow(
      'apply to -c kafkaPollerMode=provisioned only',
    );
  });

  it('keeps failed Kafka batches in a bucket of their own: encrypted, versioned, TLS only, private, expiring after the documented retention', () => {
    // Act
    const t = synth();
    // Assess
    const [bucket] = Object.entries(resources(t)).filter(
      ([id, r]) => r.Type === 'AWS::S3::Bucket' && id.startsWith('ProducersKafkaFailuresBucket'),
    );
    expect(bucket?.[1].Properties).toMatchObject({
      BucketEncryption: {
        ServerSideEncryptionConfiguration: [{ ServerSideEncryptionByDefault: { SSEAlgorithm: 'AES256' } }],
      },
      VersioningConfiguration: { Status: 'Enabled' },
      PublicAccessBlockConfiguration: {
        BlockPublicAcls: true,
        BlockPublicPolicy: true,
        IgnorePublicAcls: true,
        RestrictPublicBuckets: true,
      },
      LifecycleConfiguration: {
        Rules: [
          expect.objectContaining({
            ExpirationInDays: settings.kafka.failures.retentionDays,
            NoncurrentVersionExpiration: { NoncurrentDays: settings.kafka.failures.noncurrentRetentionDays },
          }),
        ],
      },
    });
  });

  it('lets the kafka-consumer only put objects into and list the failures bucket, in this account', () => {
    // Act
    const t = synth({ mskClusterArn: 'arn:aws:kafka:eu-west-1:123456789012:cluster/pulse/abc' });
    // Assess
    const role = (fnProps(t, 'ProducersKafkaConsumer').Role as { 'Fn::GetAtt': string[] })['Fn::GetAtt'][0];
    const statements = Object.values(resources(t))
      .filter(
        (r) => r.Type === 'AWS::IAM::Policy' && JSON.stringify(r.Properties.Roles).includes(`"${role}"`),
      )
      .flatMap((r) => (r.Properties.PolicyDocument as { Statement: Record<string, unknown>[] }).Statement)
      .filter((st) => JSON.stringify(st.Resource).includes('ProducersKafkaFailuresBucket'));
    const bucketArn = { 'Fn::GetAtt': [expect.stringMatching(/^ProducersKafkaFailuresBucket/), 'Arn'] };
    const condition = { StringEquals: { 's3:ResourceAccount': { Ref: 'AWS::AccountId' } } };
    expect(statements).toEqual(
      expect.arrayContaining([
        expect.objectContaining({
          Action: 's3:PutObject',
          Resource: { 'Fn::Join': ['', [bucketArn, '/*']] },
          Condition: condition,
        }),
        expect.objectContaining({ Action: 's3:ListBucket', Resource: bucketArn, Condition: condition }),
      ]),
    );
    expect(statements.flatMap((st) => [st.Action].flat())).toEqual(
      expect.arrayContaining(['s3:PutObject', 's3:ListBucket']),
    );
    expect(statements.flatMap((st) => [st.Action].flat()).sort()).toEqual(['s3:ListBucket', 's3:PutObject']);
  });

  it('routes every object created in the failures bucket to the notices queue through EventBridge (no S3 test event)', () => {
    // Act
    const t = synth();
    // Assess
    const bucket = { Ref: Match.stringLikeRegexp('^ProducersKafkaFailuresBucket') };
    t.hasResourceProperties('Custom::S3BucketNotifications', {
      BucketName: bucket,
      NotificationConfiguration: { EventBridgeConfiguration: {} },
    });
    t.hasResourceProperties('AWS::Events::Rule', {
      EventPattern: {
        source: ['aws.s3'],
        'detail-type': ['Object Created'],
        detail: { bucket: { name: [bucket] } },
      },
      State: 'ENABLED',
      Targets: [
        {
          Arn: { 'Fn::GetAtt': [Match.stringLikeRegexp('^ProducersKafkaFailuresNotices'), 'Arn'] },
          Id: Match.anyValue(),
        },
      ],
    });
    // EventBridge may send to the queue only for this rule.
    t.hasResourceProperties('AWS::SQS::QueuePolicy', {
      PolicyDocument: {
        Statement: Match.arrayWith([
          Match.objectLike({
            Action: Match.arrayWith(['sqs:SendMessage']),
            Principal: { Service: 'events.amazonaws.com' },
            Condition: {
              ArnEquals: {
                'aws:SourceArn': {
                  'Fn::GetAtt': [Match.stringLikeRegexp('^ProducersKafkaFailuresObjectCreated'), 'Arn'],
                },
              },
            },
          }),
        ]),
      },
    });
  });

  it('reads self-managed Kafka with SASL/SCRAM credentials from a secret', () => {
    const t = synth({
      kafkaBootstrapServers: 'b-1.example:9096,b-2.example:9096',
      kafkaSecretArn: 'arn:aws:secretsmanager:eu-west-1:123456789012:secret:kafka-AbCdEf',
    });
    t.hasResourceProperties('AWS::Lambda::EventSourceMapping', {
      SelfManagedEventSource: {
        Endpoints: { KafkaBootstrapServers: ['b-1.example:9096', 'b-2.example:9096'] },
      },
      Topics: [settings.kafka.topic],
      SourceAccessConfigurations: Match.arrayWith([
        {
          Type: 'SASL_SCRAM_512_AUTH',
          URI: 'arn:aws:secretsmanager:eu-west-1:123456789012:secret:kafka-AbCdEf',
        },
      ]),
      MaximumRetryAttempts: settings.kafka.maximumRetryAttempts,
    });
  });

  it('joins the configured consumer group on MSK and on self-managed Kafka, so a recreated mapping resumes', () => {
    // Prepare
    const msk = { mskClusterArn: 'arn:aws:kafka:eu-west-1:123456789012:cluster/pulse/abc' };
    const selfManaged = {
      kafkaBootstrapServers: 'b-1.example:9096',
      kafkaSecretArn: 'arn:aws:secretsmanager:eu-west-1:123456789012:secret:kafka-AbCdEf',
    };
    // Act
    const onMsk = synth({ ...msk, kafkaConsumerGroupId: 'pulse-prod.signals' });
    const onSelfManaged = synth({ ...selfManaged, kafkaConsumerGroupId: 'team/pulse:signals' });
    const without = synth(msk);
    // Assess
    onMsk.hasResourceProperties('AWS::Lambda::EventSourceMapping', {
      AmazonManagedKafkaEventSourceConfig: { ConsumerGroupId: 'pulse-prod.signals' },
    });
    onSelfManaged.hasResourceProperties('AWS::Lambda::EventSourceMapping', {
      SelfManagedKafkaEventSourceConfig: { ConsumerGroupId: 'team/pulse:signals' },
    });
    without.hasResourceProperties('AWS::Lambda::EventSourceMapping', {
      Topics: [settings.kafka.topic],
      AmazonManagedKafkaEventSourceConfig: Match.absent(),
    });
  });

  it('refuses a consumer group id Lambda would refuse, and one without a Kafka source', () => {
    // Prepare
    const msk = { mskClusterArn: 'arn:aws:kafka:eu-west-1:123456789012:cluster/pulse/abc' };
    // Act / Assess
    expect(() => synth({ ...msk, kafkaConsumerGroupId: 'pulse signals' })).toThrow(
      'kafka.consumerGroupId: only letters, digits',
    );
    expect(() => synth({ ...msk, kafkaConsumerGroupId: 'g'.repeat(201) })).toThrow('kafka.consumerGroupId');
    expect(() => synth({ kafkaConsumerGroupId: 'pulse' })).toThrow(
      '-c kafkaConsumerGroupId needs -c mskClusterArn or -c kafkaBootstrapServers',
    );
  });

  it('reads several topics into the one kafka-consumer: one mapping per topic, each in a group of its own', () => {
    // Prepare
    const mskClusterArn = 'arn:aws:kafka:eu-west-1:123456789012:cluster/pulse/abc';
    // Act
    const t = synth({ mskClusterArn, kafkaTopic: 'sensors,meters', kafkaConsumerGroupId: 'pulse-prod' });
    const ungrouped = synth({ mskClusterArn, kafkaTopic: 'sensors, meters' });
    // Assess
    const mappings = Object.values(resources(t)).filter(
      (r) => r.Type === 'AWS::Lambda::EventSourceMapping' && 'Topics' in r.Properties,
    );
    expect(
      mappings.map((m) => [m.Properties.Topics, m.Properties.AmazonManagedKafkaEventSourceConfig]).sort(),
    ).toEqual(
      [
        [['meters'], { ConsumerGroupId: 'pulse-prod.meters' }],
        [['sensors'], { ConsumerGroupId: 'pulse-prod.sensors' }],
      ].sort(),
    );
    for (const m of mappings) {
      expect(m.Properties).toMatchObject({
        EventSourceArn: mskClusterArn,
        BatchSize: settings.kafka.batchSize,
        MaximumRetryAttempts: settings.kafka.maximumRetryAttempts,
        DestinationConfig: {
          OnFailure: {
            Destination: { 'Fn::GetAtt': [expect.stringMatching(/^ProducersKafkaFailuresBucket/), 'Arn'] },
          },
        },
      });
      expect(JSON.stringify(m.Properties.FunctionName)).toContain('ProducersKafkaConsumer');
    }
    const ungroupedTopics = Object.values(resources(ungrouped))
      .filter((r) => r.Type === 'AWS::Lambda::EventSourceMapping' && 'Topics' in r.Properties)
      .map((r) => r.Properties.Topics);
    expect(ungroupedTopics.sort()).toEqual([['meters'], ['sensors']]);
  });

  it('refuses a topic given twice or a name Kafka would refuse', () => {
    // Prepare
    const msk = { mskClusterArn: 'arn:aws:kafka:eu-west-1:123456789012:cluster/pulse/abc' };
    // Act / Assess
    expect(() => synth({ ...msk, kafkaTopic: 'a,b,a' })).toThrow('kafka.topic: a topic is given twice');
    expect(() => synth({ ...msk, kafkaTopic: 'a,b c' })).toThrow('"b c" is not a Kafka topic name');
  });

  it('starts a new group at a timestamp (AT_TIMESTAMP, Unix seconds), or where the context says', () => {
    // Prepare
    const msk = { mskClusterArn: 'arn:aws:kafka:eu-west-1:123456789012:cluster/pulse/abc' };
    // Act
    const atIso = synth({
      ...msk,
      kafkaStartingPosition: 'AT_TIMESTAMP',
      kafkaStartingTimestamp: '2026-01-01T00:00:00Z',
    });
    const atSeconds = synth({
      ...msk,
      kafkaStartingPosition: 'AT_TIMESTAMP',
      kafkaStartingTimestamp: '1767225600',
    });
    const latest = synth({ ...msk, kafkaStartingPosition: 'LATEST' });
    // Assess
    for (const t of [atIso, atSeconds]) {
      t.hasResourceProperties('AWS::Lambda::EventSourceMapping', {
        StartingPosition: 'AT_TIMESTAMP',
        StartingPositionTimestamp: 1_767_225_600,
      });
    }
    latest.hasResourceProperties('AWS::Lambda::EventSourceMapping', {
      StartingPosition: 'LATEST',
      StartingPositionTimestamp: Match.absent(),
    });
    expect(() => synth({ ...msk, kafkaStartingPosition: 'AT_TIMESTAMP' })).toThrow(
      'kafka.startingPositionTimestamp (Unix seconds) is needed with startingPosition AT_TIMESTAMP',
    );
    expect(() => synth({ ...msk, kafkaStartingTimestamp: '1767225600' })).toThrow(
      'applies to startingPosition AT_TIMESTAMP only',
    );
    expect(() => synth({ ...msk, kafkaStartingPosition: 'EARLIEST' })).toThrow(
      '-c kafkaStartingPosition must be TRIM_HORIZON, LATEST or AT_TIMESTAMP',
    );
  });

  it('authenticates to self-managed Kafka with SASL/SCRAM-256 or mTLS (client certificate, private root CA) besides SCRAM-512', () => {
    // Prepare
    const servers = { kafkaBootstrapServers: 'b-1.example:9094' };
    const credentials = 'arn:aws:secretsmanager:eu-west-1:123456789012:secret:kafka-scram-AbCdEf';
    const clientCert = 'arn:aws:secretsmanager:eu-west-1:123456789012:secret:kafka-client-cert-AbCdEf';
    const rootCa = 'arn:aws:secretsmanager:eu-west-1:123456789012:secret:kafka-root-ca-AbCdEf';
    // Act
    const scram256 = synth({
      ...servers,
      kafkaSecretArn: credentials,
      kafkaAuthentication: 'SASL_SCRAM_256',
    });
    const mtls = synth({
      ...servers,
      kafkaSecretArn: clientCert,
      kafkaAuthentication: 'MTLS',
      kafkaRootCaSecretArn: rootCa,
    });
    // Assess
    const access = (t: Template) =>
      Object.values(resources(t)).find(
        (r) => r.Type === 'AWS::Lambda::EventSourceMapping' && 'Topics' in r.Properties,
      )?.Properties.SourceAccessConfigurations;
    expect(access(scram256)).toEqual([{ Type: 'SASL_SCRAM_256_AUTH', URI: credentials }]);
    expect(access(mtls)).toEqual(
      expect.arrayContaining([
        { Type: 'CLIENT_CERTIFICATE_TLS_AUTH', URI: clientCert },
        { Type: 'SERVER_ROOT_CA_CERTIFICATE', URI: rootCa },
      ]),
    );
    // The function role may read the secrets the event source uses.
    const policies = JSON.stringify(
      Object.values(resources(mtls)).filter((r) => r.Type === 'AWS::IAM::Policy'),
    );
    expect(policies).toContain(clientCert);
    expect(policies).toContain(rootCa);
    expect(() =>
      synth({
        mskClusterArn: 'arn:aws:kafka:eu-west-1:123456789012:cluster/pulse/abc',
        kafkaAuthentication: 'MTLS',
      }),
    ).toThrow('-c kafkaAuthentication and kafkaRootCaSecretArn apply to self-managed Kafka');
    expect(() => synth({ ...servers, kafkaSecretArn: credentials, kafkaAuthentication: 'PLAIN' })).toThrow(
      '-c kafkaAuthentication must be SASL_SCRAM_512, SASL_SCRAM_256 or MTLS',
    );
  });

  it('refuses half-given context with a message that says what is missing', () => {
    expect(() => synth({ kafkaBootstrapServers: 'b:9096' })).toThrow(
      '-c kafkaBootstrapServers needs -c kafkaSecretArn',
    );
    expect(() => synth({ dbSecretArn: DB.dbSecretArn, dbVpcId: DB.dbVpcId })).toThrow(
      '-c dbVpcId needs -c dbSubnetIds',
    );
  });

  it('grants the producers no wildcard action or resource', () => {
    const t = synth({ ...DB, mskClusterArn: 'arn:aws:kafka:eu-west-1:123456789012:cluster/pulse/abc' });
    const roleOf = (prefix: string) =>
      (fnProps(t, prefix).Role as { 'Fn::GetAtt': string[] })['Fn::GetAtt'][0];
    for (const fn of ['ProducersDbPoller', 'ProducersKafkaConsumer']) {
      const role = roleOf(fn);
      const statements = Object.values(resources(t))
        .filter(
          (r) => r.Type === 'AWS::IAM::Policy' && JSON.stringify(r.Properties.Roles).includes(`"${role}"`),
        )
        .flatMap((r) => (r.Properties.PolicyDocument as { Statement: Record<string, unknown>[] }).Statement);
      expect(statements.length).toBeGreaterThan(0);
      for (const s of statements) {
        for (const a of [s.Action].flat() as string[]) expect(a).not.toMatch(/(^\*$)|(:\*$)/);
        // kafka:DescribeCluster etc. on the cluster, ec2:*NetworkInterface* need "*" only where AWS requires it.
        const wildcardOk = ([s.Action].flat() as string[]).every(
          (a) => a.startsWith('ec2:') || a.startsWith('kafka:'),
        );
        if (!wildcardOk) expect([s.Resource].flat()).not.toContain('*');
      }
    }
  });
});
