import { type CloudFormationClient, DescribeStacksCommand, type Stack } from '@aws-sdk/client-cloudformation';
import type { CloudWatchLogsClient } from '@aws-sdk/client-cloudwatch-logs';
import type { EC2Client } from '@aws-sdk/client-ec2';
import type { LambdaClient } from '@aws-sdk/client-lambda';
import type { S3Client } from '@aws-sdk/client-s3';
import type { SecretsManagerClient } from '@aws-sdk/client-secrets-manager';
import type { SQSClient } from '@aws-sdk/client-sqs';
import { GetCallerIdentityCommand, type STSClient } from '@aws-sdk/client-sts';
import type { DynamoDBDocumentClient } from '@aws-sdk/lib-dynamodb';
import { OUTPUTS } from '#shared/contract.ts';
import { settings } from '#shared/settings.ts';
import {
  cannotCheck,
  type DoctorCheck,
  type DoctorReport,
  dlqDepthCheck,
  doctorReport,
  errorText,
  grantHint,
} from './doctor.ts';
import { canaryRoundTrip } from './doctor-canary.ts';
import { databaseChecks } from './doctor-database.ts';
import { kafkaCheck } from './doctor-kafka.ts';
import { sqsMappingsCheck } from './doctor-mappings.ts';

/** The clients `pulse doctor --stack` uses, with the operator's credentials. */
export interface DoctorAwsClients {
  readonly sts: STSClient;
  readonly cfn: CloudFormationClient;
  readonly s3: S3Client;
  readonly sqs: SQSClient;
  readonly doc: DynamoDBDocumentClient;
  readonly lambda: LambdaClient;
  readonly ec2: EC2Client;
  readonly secrets: SecretsManagerClient;
  readonly logs: CloudWatchLogsClient;
}

export interface DoctorAwsOptions {
  readonly stackName: string;
  /** How long the canary may take to reach the ledger. */
  readonly timeoutMs: number;
  readonly pollMs?: number;
  readonly sleep?: (ms: number) => Promise<void>;
  readonly now?: () => number;
}

/** Stack states in which the stack's resources are those of a finished deploy. */
const HEALTHY = new Set(['CREATE_COMPLETE', 'UPDATE_COMPLETE', 'IMPORT_COMPLETE']);

type Outputs = Partial<Record<keyof typeof OUTPUTS, string>>;

/**
 * Checks a deployed stack in order: credentials, the stack and its outputs, notifications (a canary through
 * the bucket to the ledger), the queues' event sources and the DLQs, the database source, the Kafka source.
 * A check whose inputs an earlier one could not give is reported as not checked, never as fine.
 */
export async function doctorStack(c: DoctorAwsClients, o: DoctorAwsOptions): Promise<DoctorReport> {
  const checks: DoctorCheck[] = [];
  const { check: credentials, region } = await credentialsCheck(c.sts);
  checks.push(credentials);
  if (credentials.status !== 'ok' || !region)
    return doctorReport(o.stackName, [...checks, ...skipped('no usable credentials')]);

  const { check: stackCheck, stack } = await describeStack(c.cfn, o.stackName, region);
  checks.push(stackCheck);
  if (!stack)
    return doctorReport(o.stackName, [...checks, ...skipped(`stack ${o.stackName} could not be read`)]);

  const outputs: Outputs = {};
  for (const o2 of stack.Outputs ?? []) {
    const key = (Object.keys(OUTPUTS) as (keyof typeof OUTPUTS)[]).find((k) => OUTPUTS[k] === o2.OutputKey);
    if (key && o2.OutputValue) outputs[key] = o2.OutputValue;
  }
  checks.push(outputsCheck(outputs));
  const need = (...keys: (keyof typeof OUTPUTS)[]) => keys.filter((k) => !outputs[k]).map((k) => OUTPUTS[k]);
  const missingFor = (id: string, title: string, missing: string[]) =>
    cannotCheck(
      id,
      title,
      `needs the output(s) ${missing.join(', ')}`,
      'Deploy the stack again (npx cdk deploy).',
    );

  const forCanary = need('bucket', 'ledgerTable', 'fileEventsQueue');
  checks.push(
    forCanary.length > 0
      ? missingFor('notifications', 'Notifications (canary round trip)', forCanary)
      : await canaryRoundTrip({
          s3: c.s3,
          doc: c.doc,
          sqs: c.sqs,
          bucket: outputs.bucket as string,
          ledgerTable: outputs.ledgerTable as string,
          fileEventsQueueUrl: outputs.fileEventsQueue as string,
          timeoutMs: o.timeoutMs,
          notArrivedNext: notificationsNext(outputs),
          ...(o.pollMs !== undefined ? { pollMs: o.pollMs } : {}),
          ...(o.sleep ? { sleep: o.sleep } : {}),
          ...(o.now ? { now: o.now } : {}),
        }),
  );

  const forMappings = need('s3TriggerFunction', 'scorerFunction', 'fileEventsQueue', 'signalsQueue');
  checks.push(
    forMappings.length > 0
      ? missingFor('event-sources', 'Queue event sources', forMappings)
      : await sqsMappingsCheck(c.lambda, [
          {
            label: 'file-events → s3-trigger',
            functionName: outputs.s3TriggerFunction as string,
            queueUrl: outputs.fileEventsQueue as string,
          },
          {
            label: 'signals → scorer',
            functionName: outputs.scorerFunction as string,
            queueUrl: outputs.signalsQueue as string,
          },
        ]),
  );

  const forDlqs = need('fileEventsDlq', 'signalsDlq', 'kafkaFailureNotices');
  checks.push(
    forDlqs.length > 0
      ? missingFor('dlqs', 'Dead-letter queues', forDlqs)
      : await dlqDepthCheck(c.sqs, [
          {
            label: 'file-events DLQ',
            url: outputs.fileEventsDlq as string,
            next: 'File events failed every delivery: `pulse dlq list`, fix the cause, then `pulse dlq redrive`.',
          },
          {
            label: 'signals DLQ',
            url: outputs.signalsDlq as string,
            next: 'Signal messages could not be scored: `pulse dlq list`, fix the cause, then `pulse dlq redrive`.',
          },
          {
            label: 'Kafka failure notices',
            url: outputs.kafkaFailureNotices as string,
            next: 'Kafka batches failed every retry: `pulse kafka replay --dry-run`, then `pulse kafka replay`.',
          },
        ]),
  );

  const forDb = need('dbPollerFunction', 'ledgerTable');
  if (forDb.length > 0) checks.push(missingFor('database', 'Database source', forDb));
  else
    checks.push(
      ...(await databaseChecks(c, {
        functionName: outputs.dbPollerFunction as string,
        ledgerTable: outputs.ledgerTable as string,
        region,
        ...(o.now ? { now: o.now } : {}),
      })),
    );

  const forKafka = need('kafkaConsumerFunction');
  checks.push(
    forKafka.length > 0
      ? missingFor('kafka', 'Kafka source', forKafka)
      : await kafkaCheck(c.lambda, outputs.kafkaConsumerFunction as string),
  );
  return doctorReport(o.stackName, checks);
}

async function credentialsCheck(sts: STSClient): Promise<{ check: DoctorCheck; region?: string }> {
  const title = 'AWS credentials';
  const next =
    'Configure credentials (aws configure, AWS_PROFILE=…, aws sso login) and a region (--region or AWS_REGION).';
  let region: string;
  try {
    region = await sts.config.region();
  } catch (err) {
    return { check: cannotCheck('credentials', title, `no AWS region: ${errorText(err)}`, next) };
  }
  try {
    const me = await sts.send(new GetCallerIdentityCommand({}));
    return {
      check: {
        id: 'credentials',
        title,
        status: 'ok',
        summary: `account ${me.Account ?? '?'}, region ${region}`,
        details: [`caller ${me.Arn ?? '?'}`],
      },
      region,
    };
  } catch (err) {
    return { check: cannotCheck('credentials', title, `no usable AWS credentials: ${errorText(err)}`, next) };
  }
}

async function describeStack(
  cfn: CloudFormationClient,
  stackName: string,
  region: string,
): Promise<{ check: DoctorCheck; stack?: Stack }> {
  const title = 'Stack';
  try {
    const stack = (await cfn.send(new DescribeStacksCommand({ StackName: stackName }))).Stacks?.[0];
    if (!stack)
      throw Object.assign(new Error(`Stack with id ${stackName} does not exist`), {
        name: 'ValidationError',
      });
    const status = stack.StackStatus ?? 'UNKNOWN';
    if (HEALTHY.has(status)) {
      return { check: { id: 'stack', title, status: 'ok', summary: `${stackName}: ${status}` }, stack };
    }
    return {
      check: {
        id: 'stack',
        title,
        status: 'problem',
        summary: `${stackName}: ${status}${stack.StackStatusReason ? ` (${stack.StackStatusReason})` : ''}`,
        next: stackNext(stackName, status),
      },
      stack,
    };
  } catch (err) {
    if (/does not exist/.test((err as Error).message ?? '')) {
      return {
        check: {
          id: 'stack',
          title,
          status: 'problem',
          summary: `no stack ${stackName} in ${region}`,
          next: 'Deploy it (npx cdk deploy, or -c stage=NAME for PulseIngest-NAME), or name the right --stack and --region (aws cloudformation list-stacks).',
        },
      };
    }
    const next = grantHint(err);
    return { check: cannotCheck('stack', title, `could not describe ${stackName}: ${errorText(err)}`, next) };
  }
}

function stackNext(stackName: string, status: string): string {
  if (status.endsWith('_IN_PROGRESS')) return 'A deploy is under way: run doctor again once it has finished.';
  if (status === 'UPDATE_ROLLBACK_COMPLETE')
    return `The last deploy failed and was rolled back: the stack runs the version before it. Its reason is in the stack's events (aws cloudformation describe-stack-events --stack-name ${stackName}).`;
  return `Read the stack's events (aws cloudformation describe-stack-events --stack-name ${stackName}); a stack that never finished creating must be deleted and deployed again.`;
}

function outputsCheck(outputs: Outputs): DoctorCheck {
  const missing = Object.entries(OUTPUTS)
    .filter(([k]) => !outputs[k as keyof typeof OUTPUTS])
    .map(([, name]) => name);
  if (missing.length === 0) {
    return {
      id: 'outputs',
      title: 'Stack outputs',
      status: 'ok',
      summary: `all ${Object.keys(OUTPUTS).length} outputs the CLI reads are there`,
    };
  }
  return {
    id: 'outputs',
    title: 'Stack outputs',
    status: 'problem',
    summary: `missing: ${missing.join(', ')}`,
    next: 'The stack was deployed by an older version, or the construct is not PulseIngest: deploy it again with this version (npx cdk deploy). Checks that need a missing output are not made.',
  };
}

function notificationsNext(outputs: Outputs): string {
  const bucket = outputs.bucket ?? 'BUCKET';
  const queue = outputs.fileEventsQueue ?? 'QUEUE_URL';
  return (
    `Check, in order: the bucket's notification configuration sends s3:ObjectCreated:* under ${settings.bucket.incomingPrefix} ` +
    `to the file-events queue (aws s3api get-bucket-notification-configuration --bucket ${bucket}; another tool writing ` +
    'the configuration replaces it whole); the queue policy lets s3.amazonaws.com send for this bucket ' +
    `(aws sqs get-queue-attributes --queue-url ${queue} --attribute-names Policy); s3-trigger's event source ` +
    'mapping is Enabled (below); its log group for errors. The next `cdk deploy` writes the notification again.'
  );
}

/** The checks after one that stopped the run, reported as not made. */
function skipped(why: string): DoctorCheck[] {
  return [
    ['stack', 'Stack'],
    ['outputs', 'Stack outputs'],
    ['notifications', 'Notifications (canary round trip)'],
    ['event-sources', 'Queue event sources'],
    ['dlqs', 'Dead-letter queues'],
    ['database', 'Database source'],
    ['kafka', 'Kafka source'],
  ]
    .filter(([id]) => id !== 'stack' || why === 'no usable credentials')
    .map(([id, title]) => cannotCheck(id as string, title as string, `not checked: ${why}`));
}
