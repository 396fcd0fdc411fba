import { type CfnResource, Duration, Stack } from 'aws-cdk-lib';
import type { ITable } from 'aws-cdk-lib/aws-dynamodb';
import { PolicyStatement } from 'aws-cdk-lib/aws-iam';
import type { Bucket } from 'aws-cdk-lib/aws-s3';
import { Schedule, ScheduleExpression } from 'aws-cdk-lib/aws-scheduler';
import { LambdaInvoke } from 'aws-cdk-lib/aws-scheduler-targets';
import { NagSuppressions } from 'cdk-nag';
import { Construct } from 'constructs';
import { ENV } from '#shared/contract.ts';
import { settings } from '#shared/settings.ts';
import { PulseFunction } from './constructs/pulse-function.ts';
import type { PulseDeployment } from './props.ts';

export interface LedgerSweepProps {
  /** The ingest bucket: the canary is written under its incoming prefix. */
  readonly bucket: Bucket;
  readonly ledger: ITable;
  /** The deployment's resolved values (infra/props.ts): the sweep's schedule and thresholds, its size. */
  readonly deployment: PulseDeployment;
}

/**
 * The ledger sweep (functions/s3-trigger/sweep-handler.ts, the second entry of s3-trigger) on an
 * EventBridge Scheduler schedule: it reads the ledger's status index for stuck work, and writes the
 * notification canary that s3-trigger records. Its role holds exactly that: Query on the status index,
 * GetItem/UpdateItem on the canary's ledger item only, PutObject on the canary key only. Older versions of
 * the canary object expire after `settings.bucket.canaryNoncurrentDays`.
 */
export class LedgerSweep extends Construct {
  readonly fn: PulseFunction;
  readonly schedule: Schedule;

  constructor(scope: Construct, id: string, props: LedgerSweepProps) {
    super(scope, id);
    const { bucket, ledger, deployment: d } = props;
    this.fn = new PulseFunction(this, 'Function', {
      name: 's3-trigger',
      entry: { file: 'sweep-handler.ts', service: 'ledger-sweep' },
      timeoutSeconds: d.functions.ledgerSweep.timeoutSeconds,
      memoryMb: d.functions.ledgerSweep.memoryMb,
      logRetentionDays: d.retention.logDays,
      description: 'Scheduled: ledger items stuck (FilesStuck) and the S3 notification canary (CanaryMissed)',
      environment: {
        [ENV.ledgerTable]: ledger.tableName,
        [ENV.ingestBucket]: bucket.bucketName,
        [ENV.maxAttempts]: String(d.ledger.maxAttempts),
        [ENV.sweepProcessingStuckSeconds]: String(d.sweep.processingStuckSeconds),
        [ENV.sweepSplitStuckSeconds]: String(d.sweep.splitStuckSeconds),
        [ENV.sweepCanaryGraceSeconds]: String(d.sweep.canaryGraceSeconds),
      },
    });
    this.fn.addToRolePolicy(
      new PolicyStatement({
        actions: ['dynamodb:Query'],
        resources: [`${ledger.tableArn}/index/${settings.ledger.statusIndex}`],
      }),
    );
    // The canary's one ledger item: its partition key starts with `canary#` (functions/s3-trigger/canary.ts).
    this.fn.addToRolePolicy(
      new PolicyStatement({
        actions: ['dynamodb:GetItem', 'dynamodb:UpdateItem'],
        resources: [ledger.tableArn],
        conditions: { 'ForAllValues:StringLike': { 'dynamodb:LeadingKeys': ['canary#*'] } },
      }),
    );
    this.fn.addToRolePolicy(
      new PolicyStatement({
        actions: ['s3:PutObject'],
        resources: [bucket.arnForObjects(settings.bucket.canaryKey)],
      }),
    );
    bucket.addLifecycleRule({
      id: 'NotificationCanaryVersions',
      prefix: settings.bucket.canaryKey,
      noncurrentVersionExpiration: Duration.days(settings.bucket.canaryNoncurrentDays),
    });

    this.schedule = new Schedule(this, 'Schedule', {
      schedule: ScheduleExpression.rate(Duration.minutes(d.sweep.scheduleRateMinutes)),
      target: new LambdaInvoke(this.fn, { retryAttempts: 0 }),
      description: 'Sweeps the file ledger for stuck work and sends the S3 notification canary',
    });
    this.suppressSchedulerInvokeQualifiers();
  }

  /**
   * EventBridge Scheduler's LambdaInvoke target grants lambda:InvokeFunction on the function and on
   * `<ARN>:*` (its versions and aliases) through a stack-level role: only that second ARN is suppressed.
   */
  private suppressSchedulerInvokeQualifiers(): void {
    const stack = Stack.of(this);
    const roles = stack.node.children.filter((c) => c.node.id.startsWith('SchedulerRoleForTarget-'));
    if (roles.length === 0)
      throw new Error('the schedule target role (SchedulerRoleForTarget-*) was not found');
    const fnId = stack.getLogicalId(this.fn.node.defaultChild as CfnResource);
    for (const role of roles) {
      NagSuppressions.addResourceSuppressions(
        role,
        [
          {
            id: 'AwsSolutions-IAM5',
            reason:
              'The wildcard is the qualifier (version or alias) of the one ledger-sweep function the schedule invokes, as granted by LambdaInvoke.',
            appliesTo: [`Resource::<${fnId}.Arn>:*`],
          },
        ],
        true,
      );
    }
  }
}
