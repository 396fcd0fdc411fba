import type { Template } from 'aws-cdk-lib/assertions';
import { describe, expect, it } from 'vitest';
import { METRIC } from '#shared/contract.ts';
import { settings } from '#shared/settings.ts';
import { ALARM_NAMES } from '../../local/dashboard/alarms.ts';
import { STACK_SHAPES, synthTemplate } from '../helpers/stacks.ts';

type Resource = { Type: string; Properties: Record<string, unknown> };
type Statement = { Effect: string; Action: string | string[]; Resource: unknown; Condition?: unknown };

const resourcesOf = (t: Template) => t.toJSON().Resources as Record<string, Resource>;
const ofType = (t: Template, type: string) =>
  Object.entries(resourcesOf(t)).filter(([, r]) => r.Type === type);
const idOf = (t: Template, prefix: string, type: string) => {
  const found = ofType(t, type).find(([id]) => new RegExp(`^${prefix}[0-9A-F]{8}$`).test(id));
  if (!found) throw new Error(`no ${type} ${prefix}`);
  return found[0];
};
const getAtt = (id: string) => ({ 'Fn::GetAtt': [id, 'Arn'] });

describe.each(STACK_SHAPES)('the ledger sweep in the stack with %s', (_shape, context) => {
  const t = synthTemplate({ context });
  const fnId = idOf(t, 'LedgerSweepFunction', 'AWS::Lambda::Function');
  const fn = resourcesOf(t)[fnId]?.Properties ?? {};
  const ledger = idOf(t, 'Ledger', 'AWS::DynamoDB::Table');
  const bucket = idOf(t, 'IngestBucket', 'AWS::S3::Bucket');
  const scores = idOf(t, 'Scores', 'AWS::DynamoDB::Table');
  const scoresBucket = idOf(t, 'ScoresBucket', 'AWS::S3::Bucket');

  it('runs s3-trigger’s second entry as its own function, pointed at the ledger and the ingest bucket', () => {
    // Assess
    expect((fn.Environment as { Variables: Record<string, unknown> }).Variables).toMatchObject({
      POWERTOOLS_SERVICE_NAME: 'ledger-sweep',
      LEDGER_TABLE: { Ref: ledger },
      INGEST_BUCKET: { Ref: bucket },
      SCORES_TABLE: { Ref: scores },
      SCORES_BUCKET: { Ref: scoresBucket },
      RECEIPTS_SETTLE_SECONDS: String(settings.receipts.settleSeconds),
      RECEIPTS_MAX_FILES_PER_RUN: String(settings.receipts.maxFilesPerRun),
    });
    expect(fn.Timeout).toBe(settings.functions.ledgerSweep.timeoutSeconds);
  });

  it('invokes it on an EventBridge Scheduler schedule at the settings’ rate, never retried', () => {
    // Prepare
    const schedules = ofType(t, 'AWS::Scheduler::Schedule')
      .map(([, r]) => r.Properties)
      .filter((p) => JSON.stringify((p.Target as { Arn: unknown }).Arn) === JSON.stringify(getAtt(fnId)));
    // Assess
    expect(schedules).toHaveLength(1);
    expect(schedules[0]).toMatchObject({
      ScheduleExpression: `rate(${settings.sweep.scheduleRateMinutes} minutes)`,
      State: 'ENABLED',
      Target: { RetryPolicy: { MaximumRetryAttempts: 0 } },
    });
  });

  it('grants it the status index, the canary’s item and key, and for receipts the files’ items, their cursor, blocks, score and rejects objects, nothing more', () => {
    // Prepare
    const role = (fn.Role as { 'Fn::GetAtt': [string, string] })['Fn::GetAtt'][0];
    const statements = ofType(t, 'AWS::IAM::Policy')
      .filter(([, r]) => JSON.stringify(r.Properties.Roles) === JSON.stringify([{ Ref: role }]))
      .flatMap(([, r]) => (r.Properties.PolicyDocument as { Statement: Statement[] }).Statement)
      .filter((s) => ![s.Action].flat().every((a) => a.startsWith('logs:')));
    // Assess
    expect(statements).toEqual([
      {
        Effect: 'Allow',
        Action: 'dynamodb:Query',
        Resource: { 'Fn::Join': ['', [getAtt(ledger), `/index/${settings.ledger.statusIndex}`]] },
      },
      {
        Effect: 'Allow',
        Action: ['dynamodb:GetItem', 'dynamodb:UpdateItem'],
        Resource: getAtt(ledger),
        Condition: { 'ForAllValues:StringLike': { 'dynamodb:LeadingKeys': ['canary#*'] } },
      },
      {
        Effect: 'Allow',
        Action: 's3:PutObject',
        Resource: { 'Fn::Join': ['', [getAtt(bucket), `/${settings.bucket.canaryKey}`]] },
      },
      {
        Effect: 'Allow',
        Action: ['dynamodb:Query', 'dynamodb:UpdateItem'],
        Resource: getAtt(ledger),
        Condition: { 'ForAllValues:StringLike': { 'dynamodb:LeadingKeys': ['s3://*'] } },
      },
      {
        Effect: 'Allow',
        Action: ['dynamodb:GetItem', 'dynamodb:UpdateItem'],
        Resource: getAtt(ledger),
        Condition: {
          'ForAllValues:StringEquals': { 'dynamodb:LeadingKeys': [settings.receipts.cursorKey.pk] },
        },
      },
      { Effect: 'Allow', Action: 'dynamodb:BatchGetItem', Resource: getAtt(scores) },
      {
        Effect: 'Allow',
        Action: 's3:GetObject',
        // CDK sorts a statement's resources.
        Resource: [
          { 'Fn::Join': ['', [getAtt(bucket), `/${settings.bucket.rejectsPrefix}*`]] },
          { 'Fn::Join': ['', [getAtt(scoresBucket), `/${settings.scores.pendingPrefix}*`]] },
          { 'Fn::Join': ['', [getAtt(scoresBucket), `/${settings.scores.prefix}*`]] },
        ],
      },
      {
        Effect: 'Allow',
        Action: 's3:ListBucket',
        Resource: getAtt(scoresBucket),
        Condition: {
          StringLikeIfExists: {
            's3:prefix': [`${settings.scores.prefix}*`, `${settings.scores.pendingPrefix}*`],
          },
        },
      },
      {
        Effect: 'Allow',
        Action: 's3:ListBucket',
        Resource: getAtt(bucket),
        Condition: { StringLikeIfExists: { 's3:prefix': [`${settings.bucket.rejectsPrefix}*`] } },
      },
    ]);
  });

  it('expires the canary’s older versions after the settings’ days', () => {
    // Prepare
    const config = resourcesOf(t)[bucket]?.Properties.LifecycleConfiguration as
      | { Rules: unknown[] }
      | undefined;
    const rules = config?.Rules;
    // Assess
    expect(rules).toContainEqual({
      Id: 'NotificationCanaryVersions',
      Prefix: settings.bucket.canaryKey,
      NoncurrentVersionExpiration: { NoncurrentDays: settings.bucket.canaryNoncurrentDays },
      Status: 'Enabled',
    });
  });

  it('alarms on stuck ledger items, a missed canary and a receipt that does not balance, each treating a silent sweep as breaching', () => {
    // Prepare
    const alarms = ofType(t, 'AWS::CloudWatch::Alarm').map(([, r]) => r.Properties);
    const named = (name: string) => alarms.find((a) => a.AlarmName === name);
    const common = {
      Namespace: settings.metricsNamespace,
      Dimensions: [{ Name: 'service', Value: 'ledger-sweep' }],
      Statistic: 'Maximum',
      Period: settings.sweep.scheduleRateMinutes * settings.monitoring.sweepAlarmPeriods * 60,
      EvaluationPeriods: 1,
      ComparisonOperator: 'GreaterThanThreshold',
      TreatMissingData: 'breaching',
    };
    // Assess
    expect(named(ALARM_NAMES.filesStuck)).toMatchObject({
      ...common,
      MetricName: METRIC.filesStuck,
      Threshold: settings.monitoring.maxFilesStuck,
    });
    expect(named(ALARM_NAMES.notificationsSilent)).toMatchObject({
      ...common,
      MetricName: METRIC.canaryMissed,
      Threshold: 0,
    });
    expect(named(ALARM_NAMES.receiptMismatches)).toMatchObject({
      ...common,
      MetricName: METRIC.receiptMismatches,
      Threshold: 0,
    });
    expect(alarms.filter((a) => String(a.AlarmName).includes('ledgerSweep-Fault-Count'))).toHaveLength(1);
  });
});
