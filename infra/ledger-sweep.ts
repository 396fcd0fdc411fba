import { type CfnResource, Duration, Stack } from 'aws-cdk-lib';
import type { ITable } from 'aws-cdk-lib/aws-dynamodb';
import { PolicyStatement } from 'aws-cdk-lib/aws-iam';
import type { Bucket, IBucket } from 'aws-cdk-lib/aws-s3';
import { Schedule, ScheduleExpression } from 'aws-cdk-lib/aws-scheduler';
import { LambdaInvoke } from 'aws-cdk-lib/aws-scheduler-targets';
import { NagSuppressions } from 'cdk-nag';
import { Construct } from 'constructs';
import { ENV } from '#shared/contract.ts';
import { settings } from '#shared/settings.ts';
import { PulseFunction } from './constructs/pulse-function.ts';
import type { PulseDeployment } from './props.ts';

export interface LedgerSweepProps {
  /** The ingest bucket: the canary is written under its incoming prefix; the receipts read its rejects. */
  readonly bucket: Bucket;
  readonly ledger: ITable;
  /** The scores table and bucket: the receipts read the files' blocks and score objects. */
  readonly scores: ITable;
  readonly scoresBucket: IBucket;
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
    const { bucket, ledger, scores, scoresBucket, deployment: d } = props;
    this.fn = new PulseFunction(this, 'Function', {
      name: 's3-trigger',
      entry: { file: 'sweep-handler.ts', service: 'ledger-sweep' },
      timeoutSeconds: d.functions.ledgerSweep.timeoutSeconds,
      memoryMb: d.functions.ledgerSweep.memoryMb,
      logRetentionDays: d.retention.logDays,
      description:
        'Scheduled: ledger items stuck (FilesStuck), the S3 notification canary (CanaryMissed), receipts of files ended (ReceiptMismatches)',
      environment: {
        [ENV.ledgerTable]: ledger.tableName,
        [ENV.ingestBucket]: bucket.bucketName,
        [ENV.maxAttempts]: String(d.ledger.maxAttempts),
        [ENV.sweepProcessingStuckSeconds]: String(d.sweep.processingStuckSeconds),
        [ENV.sweepSplitStuckSeconds]: String(d.sweep.splitStuckSeconds),
        [ENV.sweepCanaryGraceSeconds]: String(d.sweep.canaryGraceSeconds),
        [ENV.scoresTable]: scores.tableName,
        [ENV.scoresBucket]: scoresBucket.bucketName,
        [ENV.receiptsSettleSeconds]: String(d.receipts.settleSeconds),
        [ENV.receiptsMaxFilesPerRun]: String(d.receipts.maxFilesPerRun),
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
    this.grantReceipts(props);
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
   * The verify half (functions/s3-trigger/verify-sweep.ts): the status index (above), the files' items (a
   * split file's parts; the receipt, a conditional UpdateItem) and its cursor item; the blocks of the scores
   * table; the score objects; the rejects objects of the ingest bucket (the files' and the scorer's).
   * Listing is granted for the prefixes it lists only.
   */
  private grantReceipts(props: LedgerSweepProps): void {
    const { bucket, ledger, scores, scoresBucket } = props;
    this.fn.addToRolePolicy(
      new PolicyStatement({
        actions: ['dynamodb:Query', 'dynamodb:UpdateItem'],
        resources: [ledger.tableArn],
        conditions: { 'ForAllValues:StringLike': { 'dynamodb:LeadingKeys': ['s3://*'] } },
      }),
    );
    this.fn.addToRolePolicy(
      new PolicyStatement({
        actions: ['dynamodb:GetItem', 'dynamodb:UpdateItem'],
        resources: [ledger.tableArn],
        conditions: {
          'ForAllValues:StringEquals': { 'dynamodb:LeadingKeys': [settings.receipts.cursorKey.pk] },
        },
      }),
    );
    this.fn.addToRolePolicy(
      new PolicyStatement({ actions: ['dynamodb:BatchGetItem'], resources: [scores.tableArn] }),
    );
    const scorePrefixes = [settings.scores.prefix, settings.scores.pendingPrefix];
    const rejects = settings.bucket.rejectsPrefix;
    this.fn.addToRolePolicy(
      new PolicyStatement({
        actions: ['s3:GetObject'],
        resources: [
          ...scorePrefixes.map((p) => scoresBucket.arnForObjects(`${p}*`)),
          bucket.arnForObjects(`${rejects}*`),
        ],
      }),
    );
    const stack = Stack.of(this);
    const idOf = (b: IBucket) => stack.getLogicalId(b.node.defaultChild as CfnResource);
    NagSuppressions.addResourceSuppressions(
      this.fn.role ?? this.fn,
      [
        {
          id: 'AwsSolutions-IAM5',
          reason:
            'A receipt reads the score objects (named by transaction tokens and days) and the rejects objects (named by file version and day) of the files it verifies: the wildcard is the object key under those prefixes of the two buckets, read only.',
          appliesTo: [
            ...scorePrefixes.map((p) => `Resource::<${idOf(scoresBucket)}.Arn>/${p}*`),
            `Resource::<${idOf(bucket)}.Arn>/${rejects}*`,
          ],
        },
      ],
      true,
    );
    this.fn.addToRolePolicy(
      new PolicyStatement({
        actions: ['s3:ListBucket'],
        resources: [scoresBucket.bucketArn],
        // IfExists: a score object named by a token and gone (404) is authorised by the listing with no prefix.
        conditions: { StringLikeIfExists: { 's3:prefix': scorePrefixes.map((p) => `${p}*`) } },
      }),
    );
    // The scorer's rejects are listed by day; a missing rejects object (404) needs the listing too.
    this.fn.addToRolePolicy(
      new PolicyStatement({
        actions: ['s3:ListBucket'],
        resources: [bucket.bucketArn],
        conditions: { StringLikeIfExists: { 's3:prefix': [`${rejects}*`] } },
      }),
    );
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
