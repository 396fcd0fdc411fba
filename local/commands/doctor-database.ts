import {
  type CloudWatchLogsClient,
  type FilteredLogEvent,
  FilterLogEventsCommand,
} from '@aws-sdk/client-cloudwatch-logs';
import type { EC2Client } from '@aws-sdk/client-ec2';
import {
  type FunctionConfiguration,
  GetFunctionConfigurationCommand,
  type LambdaClient,
} from '@aws-sdk/client-lambda';
import { DescribeSecretCommand, type SecretsManagerClient } from '@aws-sdk/client-secrets-manager';
import { type DynamoDBDocumentClient, GetCommand } from '@aws-sdk/lib-dynamodb';
import { ENV } from '#shared/contract.ts';
import { settings } from '#shared/settings.ts';
import { watermarkKey } from '../../functions/db-poller/watermark.ts';
import { type DoctorCheck, errorText, grantHint } from './doctor.ts';
import { describeVpcNetwork, networkCheck, subnetReach } from './doctor-network.ts';
import { printable } from './terminal.ts';

export interface DatabaseCheckClients {
  readonly lambda: LambdaClient;
  readonly ec2: EC2Client;
  readonly secrets: SecretsManagerClient;
  readonly doc: DynamoDBDocumentClient;
  readonly logs: CloudWatchLogsClient;
}

export interface DatabaseCheckOptions {
  readonly functionName: string;
  readonly ledgerTable: string;
  readonly region: string;
  readonly now?: () => number;
}

const LOOKBACK_MS = settings.doctor.pollerLogLookbackMinutes * 60_000;
/** Log lines of a run's start (text or JSON platform logs) and of an error (Powertools' level, a timeout). */
export const POLLER_LOG_PATTERN = '?"START RequestId" ?"platform.start" ?ERROR ?"Task timed out"';

/**
 * The database source from the db-poller's view: its configuration (is there a database at all), its VPC's
 * way to the services it calls, its secret, and its last run. Nothing is guessed: what AWS does not say is
 * reported as not known.
 */
export async function databaseChecks(
  c: DatabaseCheckClients,
  o: DatabaseCheckOptions,
): Promise<DoctorCheck[]> {
  let config: FunctionConfiguration;
  try {
    config = await c.lambda.send(new GetFunctionConfigurationCommand({ FunctionName: o.functionName }));
  } catch (err) {
    const next = grantHint(err);
    return [
      {
        id: 'database',
        title: 'Database source',
        status: 'cannot-check',
        summary: `could not read the db-poller's configuration: ${errorText(err)}`,
        ...(next ? { next } : {}),
      },
    ];
  }
  const env = config.Environment?.Variables ?? {};
  const secretArn = env[ENV.dbSecretArn];
  if (!secretArn) {
    return [
      {
        id: 'database',
        title: 'Database source',
        status: 'not-configured',
        summary:
          'no database (the poller is deployed with its schedule disabled); deploy with -c dbSecretArn=… to add one',
      },
    ];
  }
  const checks: DoctorCheck[] = [await vpcCheck(c.ec2, config, o.region)];
  checks.push(await secretCheck(c.secrets, secretArn));
  checks.push(await lastRunCheck(c, config, o));
  return checks;
}

async function vpcCheck(ec2: EC2Client, config: FunctionConfiguration, region: string): Promise<DoctorCheck> {
  const vpc = config.VpcConfig;
  const id = 'database-network';
  const title = "Database source: the db-poller's network";
  if (!vpc?.VpcId || !vpc.SubnetIds?.length) {
    return {
      id,
      title,
      status: 'ok',
      summary:
        'not in a VPC: it reaches AWS services directly, and the database only if that is reachable from the internet',
      next: 'A database in a private subnet needs -c dbVpcId=… -c dbSubnetIds=… (and -c dbSecurityGroupId=…).',
    };
  }
  try {
    const { routeTables, endpoints } = await describeVpcNetwork(ec2, vpc.VpcId);
    const check = networkCheck(vpc.VpcId, subnetReach(vpc.SubnetIds, routeTables, endpoints, region));
    const groups = `security groups: ${(vpc.SecurityGroupIds ?? []).join(', ') || 'none'}`;
    return { ...check, details: [...(check.details ?? []), groups] };
  } catch (err) {
    const next = grantHint(err);
    return {
      id,
      title,
      status: 'cannot-check',
      summary: `in ${vpc.VpcId}, subnets ${vpc.SubnetIds.join(', ')}; could not read its route tables or endpoints: ${errorText(err)}`,
      ...(next ? { next } : {}),
    };
  }
}

async function secretCheck(secrets: SecretsManagerClient, secretArn: string): Promise<DoctorCheck> {
  const id = 'database-secret';
  const title = "Database source: the db-poller's secret";
  try {
    const out = await secrets.send(new DescribeSecretCommand({ SecretId: secretArn }));
    if (out.DeletedDate) {
      return {
        id,
        title,
        status: 'problem',
        summary: `${out.Name ?? secretArn} is scheduled for deletion (${out.DeletedDate.toISOString()})`,
        next: `Restore it (aws secretsmanager restore-secret --secret-id ${secretArn}) or deploy with another -c dbSecretArn.`,
      };
    }
    const changed = out.LastChangedDate ? `, last changed ${out.LastChangedDate.toISOString()}` : '';
    return { id, title, status: 'ok', summary: `${out.Name ?? secretArn} exists${changed}` };
  } catch (err) {
    if ((err as { name?: string }).name === 'ResourceNotFoundException') {
      return {
        id,
        title,
        status: 'problem',
        summary: `${secretArn} does not exist`,
        next: 'Create it (username, password, host, port, dbname) or deploy with the right -c dbSecretArn.',
      };
    }
    const next = grantHint(err);
    return {
      id,
      title,
      status: 'cannot-check',
      summary: `could not describe ${secretArn}: ${errorText(err)}`,
      ...(next ? { next } : {}),
    };
  }
}

/**
 * The poller's recent runs (`settings.doctor.pollerLogLookbackMinutes`), from its log group: when it last
 * started and its last error (a Powertools ERROR line or a timeout); in watermark mode also where the
 * watermark is and when it last moved.
 */
async function lastRunCheck(
  c: DatabaseCheckClients,
  config: FunctionConfiguration,
  o: DatabaseCheckOptions,
): Promise<DoctorCheck> {
  const id = 'database-poller';
  const title = "Database source: the db-poller's last run";
  const now = (o.now ?? Date.now)();
  const env = config.Environment?.Variables ?? {};
  const details: string[] = [];
  try {
    const dbTable = env[ENV.dbTable];
    if (env[ENV.dbMode] === 'watermark' && dbTable) {
      details.push(await watermarkLine(c.doc, o.ledgerTable, dbTable));
    }
  } catch (err) {
    details.push(`watermark unreadable: ${errorText(err)}`);
  }
  const logGroup = config.LoggingConfig?.LogGroup ?? `/aws/lambda/${o.functionName}`;
  let events: FilteredLogEvent[];
  try {
    events = await recentEvents(c.logs, logGroup, now - LOOKBACK_MS);
  } catch (err) {
    const next = grantHint(err);
    return {
      id,
      title,
      status: 'cannot-check',
      summary: `could not read ${logGroup}: ${errorText(err)}`,
      ...(next ? { next } : {}),
      details,
    };
  }
  const lastStart = events.findLast((e) => /START RequestId|platform\.start/.test(e.message ?? ''));
  const lastError = events.findLast((e) => /ERROR|Task timed out/.test(e.message ?? ''));
  const at = (e: FilteredLogEvent) => new Date(e.timestamp ?? 0).toISOString();
  if (lastStart) details.unshift(`last started ${at(lastStart)} (${logGroup})`);
  if (lastError)
    details.push(`last error ${at(lastError)}: ${printable((lastError.message ?? '').trim().slice(0, 300))}`);
  if (!lastStart) {
    return {
      id,
      title,
      status: 'problem',
      summary: `no run in the last ${settings.doctor.pollerLogLookbackMinutes} minutes (its schedule is every ${settings.dbPoller.scheduleRateMinutes} minute(s))`,
      next: "Check the poller's EventBridge Scheduler schedule is ENABLED (aws scheduler list-schedules), and the function's throttles.",
      details,
    };
  }
  if (lastError) {
    return {
      id,
      title,
      status: 'problem',
      summary: `it failed in the last ${settings.doctor.pollerLogLookbackMinutes} minutes (${at(lastError)})`,
      next:
        'Read the error above. A connection timeout points at the network (subnets, security groups: the database must ' +
        "allow its port from the poller's group), an authentication error at the secret, a missing relation at -c pulse dbPoller.table.",
      details,
    };
  }
  return {
    id,
    title,
    status: 'ok',
    summary: `ran at ${at(lastStart)}, no error in the last ${settings.doctor.pollerLogLookbackMinutes} minutes`,
    details,
  };
}

async function watermarkLine(
  doc: DynamoDBDocumentClient,
  ledgerTable: string,
  dbTable: string,
): Promise<string> {
  const out = await doc.send(
    new GetCommand({
      TableName: ledgerTable,
      Key: watermarkKey(dbTable),
      ConsistentRead: true,
    }),
  );
  const item = out.Item as { value?: string; advancedAt?: string } | undefined;
  if (!item) return `watermark of ${dbTable}: none yet (no row sent)`;
  return printable(
    `watermark of ${dbTable}: ${item.value ?? '?'}, moved ${item.advancedAt ?? 'at an unknown time'}`,
  );
}

/** The log group's matching events since `start`, oldest first (at most 10 pages). */
async function recentEvents(
  logs: CloudWatchLogsClient,
  logGroupName: string,
  start: number,
): Promise<FilteredLogEvent[]> {
  const events: FilteredLogEvent[] = [];
  let token: string | undefined;
  for (let page = 0; page < 10; page++) {
    const out = await logs.send(
      new FilterLogEventsCommand({
        logGroupName,
        startTime: start,
        filterPattern: POLLER_LOG_PATTERN,
        ...(token ? { nextToken: token } : {}),
      }),
    );
    events.push(...(out.events ?? []));
    token = out.nextToken;
    if (!token) break;
  }
  return events.sort((a, b) => (a.timestamp ?? 0) - (b.timestamp ?? 0));
}
