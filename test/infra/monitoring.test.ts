import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { App } from 'aws-cdk-lib';
import { Template } from 'aws-cdk-lib/assertions';
import { describe, expect, it } from 'vitest';
import { settings } from '#shared/settings.ts';
import { REPO_ROOT } from '../../infra/constructs/pulse-function.ts';
import { pulseContext } from '../../infra/context.ts';
import { PulseStack } from '../../infra/pulse-stack.ts';
import { ALARM_NAMES } from '../../local/dashboard/alarms.ts';

type Resource = { Type: string; Properties: Record<string, unknown> };
const cdkJson = JSON.parse(readFileSync(join(REPO_ROOT, 'cdk.json'), 'utf8')) as {
  context: Record<string, unknown>;
};

function synth(context: Record<string, string> = {}, alarmEmail?: string): Template {
  const app = new App({ context: { ...cdkJson.context, ...context, 'aws:cdk:bundling-stacks': [] } });
  const stack = new PulseStack(app, 'Test', {
    ...pulseContext((k) => app.node.tryGetContext(k)).props,
    ...(alarmEmail ? { alarmEmail } : {}),
  });
  return Template.fromStack(stack);
}
const alarms = (t: Template) =>
  Object.values(t.toJSON().Resources as Record<string, Resource>)
    .filter((r) => r.Type === 'AWS::CloudWatch::Alarm')
    .map((r) => r.Properties);
const named = (t: Template, fragment: string) =>
  alarms(t).filter((a) => String(a.AlarmName).includes(fragment));

describe('dashboard and alarms', () => {
  const t = synth();

  it('declares one dashboard', () => {
    t.resourceCountIs('AWS::CloudWatch::Dashboard', 1);
  });

  it('sends every alarm to the one encrypted SNS topic', () => {
    // Prepare
    const topics = Object.entries(t.toJSON().Resources as Record<string, Resource>).filter(
      ([, r]) => r.Type === 'AWS::SNS::Topic',
    );
    // Assess
    expect(topics).toHaveLength(1);
    const [topicId, topic] = topics[0] ?? [];
    expect(topic?.Properties.KmsMasterKeyId).toBeDefined();
    for (const a of alarms(t)) expect(a.AlarmActions).toEqual([{ Ref: topicId }]);
  });

  it('alarms on the first message in every DLQ and on the first notice of a Kafka failure object', () => {
    for (const q of ['FileEvents-DLQ', 'Signals-DLQ', 'KafkaFailures']) {
      const [a] = named(t, q);
      expect(a, q).toMatchObject({ Threshold: 0, ComparisonOperator: 'GreaterThanThreshold' });
    }
  });

  it('alarms on the oldest message age of both queues, with thresholds from the settings', () => {
    expect(named(t, 'FileEvents-Queue-Message-Age')[0]?.Threshold).toBe(
      settings.monitoring.maxMessageAgeSeconds.fileEvents,
    );
    expect(named(t, 'Signals-Queue-Message-Age')[0]?.Threshold).toBe(
      settings.monitoring.maxMessageAgeSeconds.signals,
    );
  });

  it('alarms on errors and throttles of every function', () => {
    for (const fn of ['s3Trigger', 'scorer', 'dbPoller', 'kafkaConsumer']) {
      expect(named(t, `${fn}-Fault-Count`), fn).toHaveLength(1);
      expect(named(t, `${fn}-Throttled-Count`), fn).toHaveLength(1);
    }
  });

  it('alarms when a file ends FAILED', () => {
    expect(named(t, 'FilesFailed')[0]).toMatchObject({
      MetricName: 'FilesFailed',
      Namespace: settings.metricsNamespace,
      Dimensions: [{ Name: 'service', Value: 's3-trigger' }],
      Threshold: settings.monitoring.maxFilesFailed,
    });
  });

  it('watches poller silence and Kafka lag only when there is a database and a cluster', () => {
    expect(named(t, 'PollerSilent')).toHaveLength(0);
    expect(named(t, 'KafkaOffsetLag')).toHaveLength(0);
    const wired = synth({
      dbSecretArn: 'arn:aws:secretsmanager:eu-west-1:123456789012:secret:db-AbCdEf',
      mskClusterArn: 'arn:aws:kafka:eu-west-1:123456789012:cluster/pulse/abc',
    });
    expect(named(wired, 'PollerSilent')[0]).toMatchObject({
      ComparisonOperator: 'LessThanThreshold',
      TreatMissingData: 'breaching',
    });
    expect(named(wired, 'KafkaOffsetLag')[0]).toMatchObject({
      MetricName: 'OffsetLag',
      Threshold: settings.monitoring.maxKafkaOffsetLag,
      // A disabled or failing trigger stops the metric: its absence is an alarm, not "no lag".
      TreatMissingData: 'breaching',
    });
  });

  it('alarms on rows the poller cannot read (a NULL watermark column), only when the poller is deployed', () => {
    // Prepare
    const wired = synth({ dbSecretArn: 'arn:aws:secretsmanager:eu-west-1:123456789012:secret:db-AbCdEf' });
    // Assess
    expect(named(t, 'WatermarkNullRows')).toHaveLength(0);
    expect(named(wired, 'WatermarkNullRows')[0]).toMatchObject({
      MetricName: 'WatermarkNullRows',
      Dimensions: [{ Name: 'service', Value: 'db-poller' }],
      Statistic: 'Maximum',
      Threshold: 0,
      ComparisonOperator: 'GreaterThanThreshold',
      TreatMissingData: 'notBreaching',
    });
  });

  it('alarms on a stalled watermark (recent rows out of its reach), only when the poller is deployed', () => {
    // Prepare
    const wired = synth({ dbSecretArn: 'arn:aws:secretsmanager:eu-west-1:123456789012:secret:db-AbCdEf' });
    // Assess
    expect(named(t, 'WatermarkStalled')).toHaveLength(0);
    expect(named(wired, 'WatermarkStalled')[0]).toMatchObject({
      MetricName: 'WatermarkStalledRows',
      Namespace: settings.metricsNamespace,
      Dimensions: [{ Name: 'service', Value: 'db-poller' }],
      Statistic: 'Maximum',
      Threshold: 0,
      ComparisonOperator: 'GreaterThanThreshold',
      TreatMissingData: 'notBreaching',
    });
  });

  it('declares every alarm the offline dashboard evaluates, under the same name', () => {
    // Prepare
    const wired = synth({
      dbSecretArn: 'arn:aws:secretsmanager:eu-west-1:123456789012:secret:db-AbCdEf',
      mskClusterArn: 'arn:aws:kafka:eu-west-1:123456789012:cluster/pulse/abc',
    });
    // Assess
    const declared = alarms(wired).map((a) => a.AlarmName);
    for (const name of Object.values(ALARM_NAMES)) expect(declared, name).toContain(name);
  });

  it('subscribes an email address when one is given', () => {
    synth({}, 'ops@example.com').hasResourceProperties('AWS::SNS::Subscription', {
      Protocol: 'email',
      Endpoint: 'ops@example.com',
    });
    t.resourceCountIs('AWS::SNS::Subscription', 0);
  });
});
