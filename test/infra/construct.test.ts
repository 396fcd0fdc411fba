import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { App, Aspects, Stack } from 'aws-cdk-lib';
import { Annotations, Match, Template } from 'aws-cdk-lib/assertions';
import { AwsSolutionsChecks } from 'cdk-nag';
import { describe, expect, it } from 'vitest';
import {
  loadDbPollerConfig,
  loadKafkaConsumerConfig,
  loadS3TriggerConfig,
  loadScorerConfig,
  loadSweepConfig,
} from '#shared/config.ts';
import { ENV, OUTPUTS } from '#shared/contract.ts';
import { settings } from '#shared/settings.ts';
import { REPO_ROOT } from '../../infra/constructs/pulse-function.ts';
import { pulseContext } from '../../infra/context.ts';
import { PulseIngest, type PulseIngestProps } from '../../infra/pulse-ingest.ts';
import { PulseStack, stackNameFor } from '../../infra/pulse-stack.ts';
import { DB_AND_MSK_CONTEXT } from '../helpers/stacks.ts';

type Json = Record<string, unknown>;
type Resource = { Type: string; Properties: Json };

const cdkJson = JSON.parse(readFileSync(join(REPO_ROOT, 'cdk.json'), 'utf8')) as { context: Json };
/** An app with cdk.json's feature flags, bundling skipped (the templates are under test). */
const newApp = (context: Json = {}) =>
  new App({ context: { ...cdkJson.context, ...context, 'aws:cdk:bundling-stacks': [] } });

/** The construct in a stack of another app's own, as a user's app would hold it. */
function inUserStack(props: PulseIngestProps = {}, nag = false): { stack: Stack; pulse: PulseIngest } {
  const app = newApp();
  const stack = new Stack(app, 'UserStack');
  const pulse = new PulseIngest(stack, 'Pulse', props);
  if (nag) Aspects.of(app).add(new AwsSolutionsChecks({ verbose: true }));
  return { stack, pulse };
}

const resources = (t: Template) => t.toJSON().Resources as Record<string, Resource>;
const ofType = (t: Template, type: string) => Object.values(resources(t)).filter((r) => r.Type === type);
/** Each function's environment, by its Powertools service name. */
function environments(t: Template): Map<string, Json> {
  const out = new Map<string, Json>();
  for (const fn of ofType(t, 'AWS::Lambda::Function')) {
    const vars = ((fn.Properties.Environment as { Variables?: Json } | undefined)?.Variables ?? {}) as Json;
    const service = vars[ENV.powertoolsServiceName];
    if (typeof service === 'string') out.set(service, vars);
  }
  return out;
}
const alarmNames = (t: Template) =>
  ofType(t, 'AWS::CloudWatch::Alarm').map((a) => String(a.Properties.AlarmName));
const nagErrors = (stack: Stack) =>
  Annotations.fromStack(stack)
    .findError('*', Match.anyValue())
    .map((a) => `${a.id}: ${String(a.entry.data).split('\n')[0]}`);
/** An environment with the variables resources give (references in the template) replaced by plain values. */
const asDeployed = (vars: Json) =>
  Object.fromEntries(Object.entries(vars).map(([k, v]) => [k, typeof v === 'string' ? v : `http://x/${k}`]));

describe('the PulseIngest construct', () => {
  it('builds the whole pipeline with its defaults in a stack of any name, its outputs under the names the CLI reads', () => {
    // Prepare
    const { stack } = inUserStack();

    // Act
    const t = Template.fromStack(stack);

    // Assess
    expect(Object.keys(t.toJSON().Outputs as Json).sort()).toEqual(Object.values(OUTPUTS).sort());
    expect([...environments(t).keys()].sort()).toEqual(
      ['db-poller', 'kafka-consumer', 'ledger-sweep', 's3-trigger', 'scorer'].sort(),
    );
    t.resourceCountIs('AWS::SQS::Queue', 5);
    t.resourceCountIs('AWS::DynamoDB::Table', 3);
    expect(environments(t).get('scorer')?.[ENV.zThreshold]).toBe(String(settings.scoring.zThreshold));
    t.hasResourceProperties('AWS::Scheduler::Schedule', { State: 'DISABLED' });
    t.resourceCountIs('AWS::Lambda::EventSourceMapping', 2);
    for (const name of alarmNames(t)) expect(name.startsWith(`${settings.stackName}-`), name).toBe(true);
  });

  it('passes cdk-nag in a stack of another app', () => {
    // Prepare
    const { stack } = inUserStack({}, true);

    // Act
    const errors = nagErrors(stack);

    // Assess
    expect(errors).toEqual([]);
  });

  it('reads the database and Kafka sources given as props: the poller scheduled in the VPC, an MSK event source', () => {
    // Prepare
    const props: PulseIngestProps = {
      database: {
        secretArn: DB_AND_MSK_CONTEXT.dbSecretArn,
        vpcId: DB_AND_MSK_CONTEXT.dbVpcId,
        subnetIds: DB_AND_MSK_CONTEXT.dbSubnetIds.split(','),
        securityGroupId: DB_AND_MSK_CONTEXT.dbSecurityGroupId,
      },
      kafka: { kind: 'msk', clusterArn: DB_AND_MSK_CONTEXT.mskClusterArn, topic: 'metrics' },
    };

    // Act
    const t = Template.fromStack(inUserStack(props).stack);

    // Assess
    t.hasResourceProperties('AWS::Scheduler::Schedule', { State: 'ENABLED' });
    t.hasResourceProperties('AWS::Lambda::Function', {
      Environment: { Variables: Match.objectLike({ [ENV.dbSecretArn]: DB_AND_MSK_CONTEXT.dbSecretArn }) },
      VpcConfig: {
        SubnetIds: DB_AND_MSK_CONTEXT.dbSubnetIds.split(','),
        SecurityGroupIds: [DB_AND_MSK_CONTEXT.dbSecurityGroupId],
      },
    });
    t.hasResourceProperties('AWS::Lambda::EventSourceMapping', {
      EventSourceArn: DB_AND_MSK_CONTEXT.mskClusterArn,
      Topics: ['metrics'],
    });
    expect(alarmNames(t)).toEqual(
      expect.arrayContaining([`${settings.stackName}-PollerSilent`, `${settings.stackName}-KafkaOffsetLag`]),
    );
  });

  it('gives every value it is given to the resources and, through their environment, to the functions', () => {
    // Prepare
    const props: PulseIngestProps = {
      fileEvents: { maxConcurrency: 20, maxReceiveCount: 6, retentionDays: 7 },
      signals: { batchSize: 5, maxConcurrency: 4 },
      functions: { s3Trigger: { memoryMb: 1769 }, scorer: { timeoutSeconds: 90 } },
      ledger: { maxAttempts: 4, leaseSeconds: 180 },
      scoring: { zThreshold: 4.5, minSamples: 25 },
      dbPoller: {
        mode: 'watermark',
        table: 'events',
        columns: { updatedAt: 'updated_at' },
        scheduleRateMinutes: 5,
        batchSize: 200,
      },
      kafkaConsumer: {
        batchSize: 100,
        valueFormat: 'avro',
        valueSchema: '{"type":"record","name":"S","fields":[]}',
      },
      sweep: { scheduleRateMinutes: 10, canaryGraceSeconds: 1800 },
      retention: { logDays: 14 },
      alarms: { maxFilesFailed: 2, maxMessageAgeSeconds: { signals: 600 } },
      kafka: { kind: 'msk', clusterArn: DB_AND_MSK_CONTEXT.mskClusterArn, topic: 'pulse_signals' },
    };

    // Act
    const t = Template.fromStack(inUserStack(props).stack);
    const env = environments(t);

    // Assess: the functions read what was given (their config loaders, as at a cold start).
    const scorer = loadScorerConfig(asDeployed(env.get('scorer') ?? {}));
    expect([scorer.zThreshold, scorer.minSamples]).toEqual([4.5, 25]);
    const s3Trigger = loadS3TriggerConfig(asDeployed(env.get('s3-trigger') ?? {}));
    expect([s3Trigger.maxAttempts, s3Trigger.leaseSeconds]).toEqual([4, 180]);
    const sweep = loadSweepConfig(asDeployed(env.get('ledger-sweep') ?? {}));
    expect([sweep.maxAttempts, sweep.canaryGraceSeconds]).toEqual([4, 1800]);
    const poller = loadDbPollerConfig({
      ...asDeployed(env.get('db-poller') ?? {}),
      [ENV.dbSecretArn]: 'arn:s',
    });
    expect([
      poller.mode,
      poller.table,
      poller.columns.updatedAt,
      poller.columns.id,
      poller.batchSize,
    ]).toEqual(['watermark', 'events', 'updated_at', settings.dbPoller.columns.id, 200]);
    const kafka = loadKafkaConsumerConfig(asDeployed(env.get('kafka-consumer') ?? {}));
    expect(kafka.valueFormat).toBe('avro');
    // Assess: and the resources.
    t.hasResourceProperties('AWS::Lambda::EventSourceMapping', {
      BatchSize: 5,
      ScalingConfig: { MaximumConcurrency: 4 },
    });
    t.hasResourceProperties('AWS::Lambda::EventSourceMapping', { ScalingConfig: { MaximumConcurrency: 20 } });
    t.hasResourceProperties('AWS::Lambda::EventSourceMapping', { BatchSize: 100, Topics: ['pulse_signals'] });
    t.hasResourceProperties('AWS::SQS::Queue', {
      MessageRetentionPeriod: 7 * 86_400,
      RedrivePolicy: Match.objectLike({ maxReceiveCount: 6 }),
    });
    t.hasResourceProperties('AWS::Lambda::Function', {
      MemorySize: 1769,
      Environment: Match.objectLike({
        Variables: Match.objectLike({ [ENV.powertoolsServiceName]: 's3-trigger' }),
      }),
    });
    t.hasResourceProperties('AWS::Lambda::Function', {
      Timeout: 90,
      Environment: Match.objectLike({
        Variables: Match.objectLike({ [ENV.powertoolsServiceName]: 'scorer' }),
      }),
    });
    t.hasResourceProperties('AWS::Scheduler::Schedule', { ScheduleExpression: 'rate(5 minutes)' });
    t.hasResourceProperties('AWS::Scheduler::Schedule', { ScheduleExpression: 'rate(10 minutes)' });
    for (const group of ofType(t, 'AWS::Logs::LogGroup')) expect(group.Properties.RetentionInDays).toBe(14);
    t.hasResourceProperties('AWS::CloudWatch::Alarm', {
      AlarmName: `${settings.stackName}-FilesFailed`,
      Threshold: 2,
    });
    t.hasResourceProperties('AWS::CloudWatch::Alarm', {
      AlarmName: `${settings.stackName}-Signals-Queue-Message-Age-Max-Critical`,
      Threshold: 600,
    });
  });

  it('refuses props the pipeline cannot run with, naming each prop and why', () => {
    // Act
    const build = (props: PulseIngestProps) => () => inUserStack(props);

    // Assess
    expect(build({ ledger: { maxAttempts: 5 } })).toThrow(
      'ledger.maxAttempts (5) must be below fileEvents.maxReceiveCount (5)',
    );
    expect(build({ signals: { maxConcurrency: 1 } })).toThrow('signals.maxConcurrency');
    expect(build({ scoring: { zThrehsold: 4 } } as never)).toThrow('scoring: Unrecognized key: "zThrehsold"');
    expect(build({ dbPoller: { watermarkLookbackSeconds: 10, watermarkSkewSeconds: 10 } })).toThrow(
      'dbPoller.watermarkSkewSeconds (10) must be below dbPoller.watermarkLookbackSeconds (10)',
    );
    expect(build({ kafkaConsumer: { valueFormat: 'protobuf', valueSchema: 'syntax = "proto3";' } })).toThrow(
      'kafkaConsumer.valueMessageType is needed for protobuf values',
    );
    expect(build({ stage: 'Prod_1' })).toThrow('stage: must be 1-20 lowercase letters');
    expect(build({ functions: { s3Trigger: { timeoutSeconds: 60 } } })).toThrow(
      'functions.s3Trigger.timeoutSeconds (60) must exceed twice the hand-over margin (45 s)',
    );
    expect(build({ functions: { scorer: { timeoutSeconds: 15 } } })).toThrow(
      'functions.scorer.timeoutSeconds (15) must exceed twice',
    );
    expect(
      build({ kafkaConsumer: { valueFormat: 'avro', valueSchema: `{"doc":"${'x'.repeat(4000)}"}` } }),
    ).toThrow('kafkaConsumer.valueSchema is 4010 bytes: at most 3072 fit');
  });
});

describe('stages: two copies in one account and region', () => {
  /** The project's app with two stages, as `cdk synth -c stage=…` twice would give them. */
  function twoStages(): Stack[] {
    const app = newApp();
    const stacks = ['dev', 'prod'].map((stage) => {
      const { stackName, props } = pulseContext((k) => (k === 'stage' ? stage : app.node.tryGetContext(k)));
      return new PulseStack(app, stackName, props);
    });
    Aspects.of(app).add(new AwsSolutionsChecks({ verbose: true }));
    return stacks;
  }

  it('gives each stage its own stack name, alarm names, Glue database and dashboard, and both pass cdk-nag', () => {
    // Act
    const stacks = twoStages();
    const [dev, prod] = stacks.map((s) => Template.fromStack(s));

    // Assess
    expect(stacks.map((s) => s.stackName)).toEqual(['PulseIngest-dev', 'PulseIngest-prod']);
    const devAlarms = alarmNames(dev as Template);
    const prodAlarms = alarmNames(prod as Template);
    expect(devAlarms.length).toBeGreaterThan(10);
    for (const name of devAlarms) expect(name.startsWith('PulseIngest-dev-'), name).toBe(true);
    for (const name of prodAlarms) expect(name.startsWith('PulseIngest-prod-'), name).toBe(true);
    const glue = (t: Template) =>
      ofType(t, 'AWS::Glue::Database').map((r) => (r.Properties.DatabaseInput as Json).Name);
    expect([...glue(dev as Template), ...glue(prod as Template)]).toEqual([
      'pulseingest_dev_scores',
      'pulseingest_prod_scores',
    ]);
    const dashboards = (t: Template) =>
      ofType(t, 'AWS::CloudWatch::Dashboard').map((r) => r.Properties.DashboardName);
    expect([...dashboards(dev as Template), ...dashboards(prod as Template)]).toEqual([
      'PulseIngest-dev',
      'PulseIngest-prod',
    ]);
    for (const stack of stacks) expect(nagErrors(stack)).toEqual([]);
  });

  it('refuses a second copy of the same name in one account and region, and allows it in another region', () => {
    // Prepare
    const app = newApp();
    const env = { account: '123456789012', region: 'eu-west-1' };
    new PulseIngest(new Stack(app, 'One', { env }), 'Pulse', { stage: 'dev' });

    // Act
    const same = () => new PulseIngest(new Stack(app, 'Two', { env }), 'Pulse', { stage: 'dev' });
    const elsewhere = () =>
      new PulseIngest(new Stack(app, 'Three', { env: { ...env, region: 'us-east-1' } }), 'Pulse', {
        stage: 'dev',
      });

    // Assess
    expect(same).toThrow('a second PulseIngest named PulseIngest-dev in the same account and region');
    expect(elsewhere).not.toThrow();
  });

  it('keeps the default stack named PulseIngest, as the CLI and existing deployments know it', () => {
    // Act
    const { stackName } = pulseContext(() => undefined);

    // Assess
    expect(stackName).toBe(settings.stackName);
    expect(stackNameFor('dev')).toBe(`${settings.stackName}-dev`);
  });
});

describe('the app context (cdk.json and -c), checked once', () => {
  it('turns the stage, the sources and the pulse JSON into props', () => {
    // Prepare
    const context: Json = {
      ...DB_AND_MSK_CONTEXT,
      stage: 'dev',
      alarmEmail: 'ops@example.com',
      pulse: '{"scoring":{"zThreshold":4},"signals":{"maxConcurrency":20}}',
    };

    // Act
    const { stackName, props } = pulseContext((k) => context[k]);

    // Assess
    expect(stackName).toBe('PulseIngest-dev');
    expect(props).toMatchObject({
      stage: 'dev',
      alarmEmail: 'ops@example.com',
      scoring: { zThreshold: 4 },
      signals: { maxConcurrency: 20 },
      database: { secretArn: DB_AND_MSK_CONTEXT.dbSecretArn },
      kafka: { kind: 'msk', topic: DB_AND_MSK_CONTEXT.kafkaTopic },
    });
  });

  it('takes the pulse object from cdk.json as it is', () => {
    // Act
    const { props } = pulseContext((k) => (k === 'pulse' ? { alarms: { maxFilesFailed: 3 } } : undefined));

    // Assess
    expect(props.alarms).toEqual({ maxFilesFailed: 3 });
  });

  it('refuses context it cannot use, naming the key', () => {
    // Act
    const read = (context: Json) => () => pulseContext((k) => context[k]);

    // Assess
    expect(read({ stage: 'Prod' })).toThrow('-c stage: must be 1-20 lowercase letters');
    expect(read({ pulse: '{"scoring":' })).toThrow('-c pulse must be JSON');
    expect(read({ pulse: '{"scoring":{"zThreshold":"4"}}' })).toThrow('-c pulse: scoring.zThreshold');
    expect(read({ pulse: { signal: {} } })).toThrow('-c pulse: Unrecognized key: "signal"');
    expect(read({ alarmEmail: 'ops' })).toThrow('-c alarmEmail: must be an e-mail address');
    expect(read({ dbVpcId: 'vpc-1' })).toThrow('need -c dbSecretArn');
  });
});
