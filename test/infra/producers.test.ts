import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { App } from 'aws-cdk-lib';
import { Match, Template } from 'aws-cdk-lib/assertions';
import { describe, expect, it } from 'vitest';
import { REPO_ROOT } from '../../infra/constructs/pulse-function.ts';
import { producersContext } from '../../infra/producers.ts';
import { PulseStack } from '../../infra/pulse-stack.ts';
import { settings } from '../../shared/settings.ts';

type Resource = { Type: string; Properties: Record<string, unknown> };
const cdkJson = JSON.parse(readFileSync(join(REPO_ROOT, 'cdk.json'), 'utf8')) as {
  context: Record<string, unknown>;
};

/** Synthesizes the stack as `cdk synth -c key=value …` would (bundling skipped). */
function synth(context: Record<string, string> = {}): Template {
  const app = new App({ context: { ...cdkJson.context, ...context, 'aws:cdk:bundling-stacks': [] } });
  const stack = new PulseStack(
    app,
    'Test',
    producersContext((k) => app.node.tryGetContext(k)),
  );
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
      DB_MODE: settings.dbPoller.mode,
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

  it('reads MSK with bounded retries, bisection and an on-failure queue, so a bad batch never stalls a partition', () => {
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
      MaximumRetryAttempts: settings.kafka.maximumRetryAttempts,
      BisectBatchOnFunctionError: true,
      DestinationConfig: {
        OnFailure: { Destination: { 'Fn::GetAtt': [Match.stringLikeRegexp('KafkaFailures'), 'Arn'] } },
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
