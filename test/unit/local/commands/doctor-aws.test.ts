import { CloudFormationClient, DescribeStacksCommand, type Output } from '@aws-sdk/client-cloudformation';
import { CloudWatchLogsClient, FilterLogEventsCommand } from '@aws-sdk/client-cloudwatch-logs';
import { DescribeRouteTablesCommand, DescribeVpcEndpointsCommand, EC2Client } from '@aws-sdk/client-ec2';
import {
  type EventSourceMappingConfiguration,
  GetEventSourceMappingCommand,
  GetFunctionConfigurationCommand,
  LambdaClient,
  ListEventSourceMappingsCommand,
} from '@aws-sdk/client-lambda';
import { PutObjectCommand } from '@aws-sdk/client-s3';
import {
  DescribeSecretCommand,
  ResourceNotFoundException,
  SecretsManagerClient,
} from '@aws-sdk/client-secrets-manager';
import { GetQueueAttributesCommand } from '@aws-sdk/client-sqs';
import { GetCallerIdentityCommand, STSClient } from '@aws-sdk/client-sts';
import { GetCommand } from '@aws-sdk/lib-dynamodb';
import { mockClient } from 'aws-sdk-client-mock';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { ENV, OUTPUTS } from '#shared/contract.ts';
import { settings } from '#shared/settings.ts';
import { canaryLedgerKey } from '../../../../functions/s3-trigger/canary.ts';
import type { DoctorReport } from '../../../../local/commands/doctor.ts';
import { type DoctorAwsClients, doctorStack } from '../../../../local/commands/doctor-aws.ts';
import { doctorText } from '../../../../local/commands/doctor-text.ts';
import { mockableClients } from '../../../helpers/clients.ts';

const REGION = 'eu-west-1';
const common = { region: REGION, credentials: { accessKeyId: 'test', secretAccessKey: 'test' } };
const SQS = `https://sqs.${REGION}.amazonaws.com/123456789012`;
const OUT: Record<keyof typeof OUTPUTS, string> = {
  bucket: 'pulse-bucket',
  fileEventsQueue: `${SQS}/file-events`,
  fileEventsDlq: `${SQS}/file-events-dlq`,
  signalsQueue: `${SQS}/signals`,
  signalsDlq: `${SQS}/signals-dlq`,
  ledgerTable: 'Ledger',
  scoresTable: 'Scores',
  kafkaFailuresBucket: 'kafka-failures',
  kafkaFailureNotices: `${SQS}/kafka-failure-notices`,
  kafkaConsumerFunction: 'KafkaConsumer',
  scoresBucket: 'scores-bucket',
  anomaliesTable: 'Anomalies',
  scoresGlueTable: 'pulseingest_scores.scores',
  alarmTopic: `arn:aws:sns:${REGION}:123456789012:alarms`,
  s3TriggerFunction: 'S3Trigger',
  scorerFunction: 'Scorer',
  dbPollerFunction: 'DbPoller',
};
const outputs = (leaveOut: string[] = []): Output[] =>
  (Object.keys(OUT) as (keyof typeof OUTPUTS)[])
    .filter((k) => !leaveOut.includes(OUTPUTS[k]))
    .map((k) => ({ OutputKey: OUTPUTS[k], OutputValue: OUT[k] }));

const sqsMapping = (fn: string, queue: string, over: Partial<EventSourceMappingConfiguration> = {}) => ({
  UUID: `uuid-${fn}`,
  EventSourceArn: `arn:aws:sqs:${REGION}:123456789012:${queue}`,
  State: 'Enabled',
  ...over,
});
const kafkaMapping = (
  over: Partial<EventSourceMappingConfiguration> = {},
): EventSourceMappingConfiguration => ({
  UUID: 'uuid-kafka',
  EventSourceArn: `arn:aws:kafka:${REGION}:123456789012:cluster/c/1`,
  Topics: ['pulse_signals'],
  State: 'Enabled',
  LastProcessingResult: 'OK',
  ...over,
});

describe('doctorStack', () => {
  const base = mockableClients();
  const clients: DoctorAwsClients = {
    sts: new STSClient(common),
    cfn: new CloudFormationClient(common),
    s3: base.s3,
    sqs: base.sqs,
    doc: base.doc,
    lambda: new LambdaClient(common),
    ec2: new EC2Client(common),
    secrets: new SecretsManagerClient(common),
    logs: new CloudWatchLogsClient(common),
  };
  const sts = mockClient(clients.sts);
  const cfn = mockClient(clients.cfn);
  const s3 = mockClient(clients.s3);
  const sqs = mockClient(clients.sqs);
  const doc = mockClient(clients.doc);
  const lambda = mockClient(clients.lambda);
  const ec2 = mockClient(clients.ec2);
  const secrets = mockClient(clients.secrets);
  const logs = mockClient(clients.logs);
  const all = [sts, cfn, s3, sqs, doc, lambda, ec2, secrets, logs];
  const NOW = Date.parse('2026-12-07T12:00:00Z');
  let clock = NOW;
  const run = (timeoutMs = 10_000) =>
    doctorStack(clients, {
      stackName: 'PulseIngest-dev',
      timeoutMs,
      pollMs: 1000,
      now: () => clock,
      sleep: async (ms) => {
        clock += ms;
      },
    });
  const byId = (r: DoctorReport, id: string) => r.checks.find((c) => c.id === id);

  /** A healthy deployment: every call answers as a working stack would. */
  beforeEach(() => {
    clock = NOW;
    sts
      .on(GetCallerIdentityCommand)
      .resolves({ Account: '123456789012', Arn: 'arn:aws:iam::123456789012:user/ops' });
    cfn.on(DescribeStacksCommand).resolves({
      Stacks: [
        {
          StackName: 'PulseIngest-dev',
          StackStatus: 'UPDATE_COMPLETE',
          CreationTime: new Date(NOW),
          Outputs: outputs(),
        },
      ],
    });
    s3.on(PutObjectCommand).resolves({ VersionId: 'v-doctor' });
    // The canary's item: seen before doctor ran, then seen with doctor's version.
    doc
      .on(GetCommand, { Key: canaryLedgerKey(OUT.bucket) })
      .resolvesOnce({ Item: { ...canaryLedgerKey(OUT.bucket), seenVersionId: 'v-sweep', seenCount: 4 } })
      .resolves({ Item: { ...canaryLedgerKey(OUT.bucket), seenVersionId: 'v-doctor', seenCount: 5 } });
    sqs.on(GetQueueAttributesCommand).resolves({ Attributes: { ApproximateNumberOfMessages: '0' } });
    lambda
      .on(ListEventSourceMappingsCommand, { FunctionName: OUT.s3TriggerFunction })
      .resolves({ EventSourceMappings: [sqsMapping('s3', 'file-events')] })
      .on(ListEventSourceMappingsCommand, { FunctionName: OUT.scorerFunction })
      .resolves({ EventSourceMappings: [sqsMapping('scorer', 'signals')] })
      .on(ListEventSourceMappingsCommand, { FunctionName: OUT.kafkaConsumerFunction })
      .resolves({ EventSourceMappings: [kafkaMapping()] })
      .on(GetEventSourceMappingCommand, { UUID: 'uuid-kafka' })
      .resolves(kafkaMapping())
      .on(GetFunctionConfigurationCommand, { FunctionName: OUT.dbPollerFunction })
      .resolves({
        Environment: {
          Variables: { [ENV.dbSecretArn]: 'arn:secret:db', [ENV.dbMode]: 'mark', [ENV.dbTable]: 'signals' },
        },
        VpcConfig: { VpcId: 'vpc-1', SubnetIds: ['subnet-a'], SecurityGroupIds: ['sg-1'] },
        LoggingConfig: { LogGroup: '/pulse/db-poller' },
      });
    ec2.on(DescribeRouteTablesCommand).resolves({
      RouteTables: [
        {
          RouteTableId: 'rtb-a',
          Associations: [{ SubnetId: 'subnet-a' }],
          Routes: [{ DestinationCidrBlock: '0.0.0.0/0', NatGatewayId: 'nat-1', State: 'active' }],
        },
      ],
    });
    ec2.on(DescribeVpcEndpointsCommand).resolves({ VpcEndpoints: [] });
    secrets
      .on(DescribeSecretCommand)
      .resolves({ Name: 'pulse/db', LastChangedDate: new Date(NOW - 86_400_000) });
    logs.on(FilterLogEventsCommand).resolves({
      events: [{ timestamp: NOW - 60_000, message: 'START RequestId: r1 Version: $LATEST' }],
    });
  });
  afterEach(() => {
    for (const m of all) m.reset();
  });

  it('passes every check of a healthy deployment, in order, and exits 0', async () => {
    // Act
    const report = await run();

    // Assess
    expect(report.exitCode).toBe(0);
    expect(report.checks.map((c) => [c.id, c.status])).toEqual([
      ['credentials', 'ok'],
      ['stack', 'ok'],
      ['outputs', 'ok'],
      ['notifications', 'ok'],
      ['event-sources', 'ok'],
      ['dlqs', 'ok'],
      ['database-network', 'ok'],
      ['database-secret', 'ok'],
      ['database-poller', 'ok'],
      ['kafka', 'ok'],
    ]);
    expect(byId(report, 'credentials')?.summary).toBe(`account 123456789012, region ${REGION}`);
    expect(s3).toReceiveCommandWith(PutObjectCommand, { Bucket: OUT.bucket, Key: settings.bucket.canaryKey });
    expect(doctorText(report)).toContain('All checks passed.');
  });

  it('prints JSON-ready checks with id, title, status, summary and, under a problem, what to do next', async () => {
    // Prepare
    sqs
      .on(GetQueueAttributesCommand, { QueueUrl: OUT.signalsDlq })
      .resolves({ Attributes: { ApproximateNumberOfMessages: '3' } });

    // Act
    const report = JSON.parse(JSON.stringify(await run())) as DoctorReport;

    // Assess
    expect(Object.keys(report).sort()).toEqual(['checks', 'exitCode', 'target']);
    expect(report.target).toBe('PulseIngest-dev');
    expect(report.exitCode).toBe(1);
    const dlqs = byId(report, 'dlqs');
    expect(dlqs).toMatchObject({
      id: 'dlqs',
      title: 'Dead-letter queues',
      status: 'problem',
      summary: 'signals DLQ holds 3',
    });
    expect(dlqs?.next).toMatch(/pulse dlq list/);
    for (const c of report.checks)
      expect(Object.keys(c)).toEqual(expect.arrayContaining(['id', 'title', 'status', 'summary']));
  });

  it('cannot check anything without credentials and exits 2', async () => {
    // Prepare
    sts
      .on(GetCallerIdentityCommand)
      .rejects(Object.assign(new Error('Could not load credentials'), { name: 'CredentialsProviderError' }));

    // Act
    const report = await run();

    // Assess
    expect(report.exitCode).toBe(2);
    expect(report.checks.every((c) => c.status === 'cannot-check')).toBe(true);
    expect(report.checks[0]?.next).toMatch(/aws configure/);
    expect(cfn).not.toHaveReceivedCommand(DescribeStacksCommand);
  });

  it('reports a stack that does not exist as a problem, naming the region, and exits 1', async () => {
    // Prepare
    cfn
      .on(DescribeStacksCommand)
      .rejects(
        Object.assign(new Error('Stack with id PulseIngest-dev does not exist'), { name: 'ValidationError' }),
      );

    // Act
    const report = await run();

    // Assess
    expect(report.exitCode).toBe(1);
    expect(byId(report, 'stack')).toMatchObject({
      status: 'problem',
      summary: `no stack PulseIngest-dev in ${REGION}`,
    });
    expect(byId(report, 'notifications')?.status).toBe('cannot-check');
  });

  it('reports a stack whose last deploy rolled back', async () => {
    // Prepare
    cfn.on(DescribeStacksCommand).resolves({
      Stacks: [
        {
          StackName: 'PulseIngest-dev',
          StackStatus: 'UPDATE_ROLLBACK_COMPLETE',
          CreationTime: new Date(NOW),
          Outputs: outputs(),
        },
      ],
    });

    // Act
    const report = await run();

    // Assess
    expect(byId(report, 'stack')?.status).toBe('problem');
    expect(byId(report, 'stack')?.next).toMatch(/rolled back/);
  });

  it('names the missing outputs, and does not make the checks that need them', async () => {
    // Prepare: a stack deployed before the function names were outputs
    cfn.on(DescribeStacksCommand).resolves({
      Stacks: [
        {
          StackName: 'PulseIngest-dev',
          StackStatus: 'UPDATE_COMPLETE',
          CreationTime: new Date(NOW),
          Outputs: outputs([OUTPUTS.s3TriggerFunction, OUTPUTS.dbPollerFunction]),
        },
      ],
    });

    // Act
    const report = await run();

    // Assess
    expect(report.exitCode).toBe(1);
    expect(byId(report, 'outputs')).toMatchObject({
      status: 'problem',
      summary: 'missing: S3TriggerFunctionName, DbPollerFunctionName',
    });
    expect(byId(report, 'event-sources')).toMatchObject({
      status: 'cannot-check',
      summary: 'needs the output(s) S3TriggerFunctionName',
    });
    expect(byId(report, 'database')).toMatchObject({
      status: 'cannot-check',
      summary: 'needs the output(s) DbPollerFunctionName',
    });
    expect(byId(report, 'notifications')?.status).toBe('ok');
  });

  it('reports a canary that never reaches the ledger within the timeout, and what to look at', async () => {
    // Prepare: s3-trigger never records it; the queue is empty (the notification never left the bucket)
    doc
      .on(GetCommand, { Key: canaryLedgerKey(OUT.bucket) })
      .resolves({ Item: { ...canaryLedgerKey(OUT.bucket), seenVersionId: 'v-sweep', seenCount: 4 } });

    // Act
    const report = await run(5_000);

    // Assess
    const n = byId(report, 'notifications');
    expect(n).toMatchObject({ status: 'problem', summary: 'the canary did not reach the ledger within 5 s' });
    expect(n?.next).toMatch(/get-bucket-notification-configuration --bucket pulse-bucket/);
    expect(n?.next).toMatch(/queue policy/);
    expect(clock - NOW).toBe(5_000);
    expect(report.exitCode).toBe(1);
  });

  it('says s3-trigger is not consuming when the canary waits on the file-events queue', async () => {
    // Prepare
    doc.on(GetCommand, { Key: canaryLedgerKey(OUT.bucket) }).resolves({ Item: undefined });
    sqs.on(GetQueueAttributesCommand, { QueueUrl: OUT.fileEventsQueue }).resolves({
      Attributes: { ApproximateNumberOfMessages: '1', ApproximateNumberOfMessagesNotVisible: '0' },
    });

    // Act
    const report = await run(3_000);

    // Assess
    const n = byId(report, 'notifications');
    expect(n?.status).toBe('problem');
    expect(n?.summary).toMatch(/file-events queue holds 1 message\(s\): s3-trigger is not consuming it/);
    expect(n?.next).toMatch(/event source mapping/);
  });

  it('takes a newer canary version seen meanwhile (the sweep wrote one) as notifications flowing', async () => {
    // Prepare
    doc
      .on(GetCommand, { Key: canaryLedgerKey(OUT.bucket) })
      .resolvesOnce({ Item: { ...canaryLedgerKey(OUT.bucket), seenVersionId: 'v-old', seenCount: 4 } })
      .resolves({ Item: { ...canaryLedgerKey(OUT.bucket), seenVersionId: 'v-sweep-next', seenCount: 6 } });

    // Act
    const report = await run();

    // Assess
    expect(byId(report, 'notifications')?.status).toBe('ok');
  });

  it('counts the canary from the count of canaries seen when notifications carry no version id (moto)', async () => {
    // Prepare
    doc
      .on(GetCommand, { Key: canaryLedgerKey(OUT.bucket) })
      .resolvesOnce({ Item: undefined })
      .resolves({ Item: { ...canaryLedgerKey(OUT.bucket), seenCount: 1 } });

    // Act
    const report = await run();

    // Assess
    expect(byId(report, 'notifications')?.status).toBe('ok');
  });

  it('does not take a repeated delivery of the canary seen before doctor started for its own', async () => {
    // Prepare
    doc
      .on(GetCommand, { Key: canaryLedgerKey(OUT.bucket) })
      .resolvesOnce({ Item: { ...canaryLedgerKey(OUT.bucket), seenVersionId: 'v-old', seenCount: 4 } })
      .resolves({ Item: { ...canaryLedgerKey(OUT.bucket), seenVersionId: 'v-old', seenCount: 5 } });

    // Act
    const report = await run(2_000);

    // Assess
    expect(byId(report, 'notifications')?.status).toBe('problem');
  });

  it('reports a disabled queue mapping with the command that enables it', async () => {
    // Prepare
    lambda.on(ListEventSourceMappingsCommand, { FunctionName: OUT.s3TriggerFunction }).resolves({
      EventSourceMappings: [
        sqsMapping('s3', 'file-events', { State: 'Disabled', StateTransitionReason: 'USER_INITIATED' }),
      ],
    });

    // Act
    const report = await run();

    // Assess
    const e = byId(report, 'event-sources');
    expect(e).toMatchObject({ status: 'problem', summary: 'file-events → s3-trigger is Disabled' });
    expect(e?.next).toBe(
      'Enable it: aws lambda update-event-source-mapping --uuid uuid-s3 --enabled (and find out who disabled it).',
    );
  });

  it('reports a queue with no event source mapping at all, and says a deploy creates it', async () => {
    // Prepare
    lambda
      .on(ListEventSourceMappingsCommand, { FunctionName: OUT.scorerFunction })
      .resolves({ EventSourceMappings: [] });

    // Act
    const report = await run();

    // Assess
    const e = byId(report, 'event-sources');
    expect(e).toMatchObject({ status: 'problem', summary: 'signals → scorer has no event source mapping' });
    expect(e?.next).toMatch(/cdk deploy/);
  });

  it('reports a stack with a deploy under way, and to run doctor again once it has finished', async () => {
    // Prepare
    cfn.on(DescribeStacksCommand).resolves({
      Stacks: [
        {
          StackName: 'PulseIngest-dev',
          StackStatus: 'UPDATE_IN_PROGRESS',
          CreationTime: new Date(NOW),
          Outputs: outputs(),
        },
      ],
    });

    // Act
    const report = await run();

    // Assess
    expect(byId(report, 'stack')).toMatchObject({
      status: 'problem',
      summary: 'PulseIngest-dev: UPDATE_IN_PROGRESS',
      next: 'A deploy is under way: run doctor again once it has finished.',
    });
  });

  it('reports a disabled Kafka mapping with its reason, even with no processing problem', async () => {
    // Prepare
    const disabled = kafkaMapping({
      State: 'Disabled',
      StateTransitionReason: 'USER_INITIATED',
      LastProcessingResult: 'No records processed',
    });
    lambda.on(GetEventSourceMappingCommand, { UUID: 'uuid-kafka' }).resolves(disabled);

    // Act
    const report = await run();

    // Assess
    const k = byId(report, 'kafka');
    expect(k).toMatchObject({ status: 'problem', summary: 'topic pulse_signals: mapping Disabled' });
    expect(k?.details).toEqual([
      'topic pulse_signals (mapping uuid-kafka): Disabled (USER_INITIATED); last processing result: No records processed',
    ]);
    expect(k?.next).toMatch(/update-event-source-mapping --uuid uuid-kafka --enabled/);
  });

  it('reports a Kafka mapping in PROBLEM state with AWS words and what they mean for the network', async () => {
    // Prepare
    const failing = kafkaMapping({
      LastProcessingResult:
        'PROBLEM: Connection error. Your VPC must be able to connect to Lambda and STS, as well as Secrets Manager if authentication is required.',
    });
    lambda.on(GetEventSourceMappingCommand, { UUID: 'uuid-kafka' }).resolves(failing);

    // Act
    const report = await run();

    // Assess
    const k = byId(report, 'kafka');
    expect(k?.status).toBe('problem');
    expect(k?.summary).toMatch(/^topic pulse_signals: PROBLEM: Connection error/);
    expect(k?.next).toMatch(/security group must allow inbound from itself on the broker ports/);
    expect(k?.next).toMatch(/NAT gateway, or VPC endpoints for Lambda and STS/);
    expect(doctorText(report)).toMatch(
      /PROBLEM Kafka source: topic pulse_signals: PROBLEM: Connection error/,
    );
  });

  it('reports no Kafka source as not configured, which does not fail the run', async () => {
    // Prepare
    lambda
      .on(ListEventSourceMappingsCommand, { FunctionName: OUT.kafkaConsumerFunction })
      .resolves({ EventSourceMappings: [] });

    // Act
    const report = await run();

    // Assess
    expect(byId(report, 'kafka')?.status).toBe('not-configured');
    expect(report.exitCode).toBe(0);
  });

  it('reports a poller subnet with no NAT and no endpoints, naming the services it cannot reach', async () => {
    // Prepare: the subnet's table routes to an internet gateway only
    ec2.on(DescribeRouteTablesCommand).resolves({
      RouteTables: [
        {
          RouteTableId: 'rtb-a',
          Associations: [{ SubnetId: 'subnet-a' }],
          Routes: [{ DestinationCidrBlock: '0.0.0.0/0', GatewayId: 'igw-1', State: 'active' }],
        },
      ],
    });

    // Act
    const report = await run();

    // Assess
    const n = byId(report, 'database-network');
    expect(n).toMatchObject({
      status: 'problem',
      summary: 'subnet-a reaches no secretsmanager, sqs, s3, dynamodb',
    });
    expect(n?.next).toMatch(/NAT gateway/);
    expect(n?.details?.join('\n')).toMatch(/igw-1 \(an internet gateway: no use to Lambda/);
    expect(ec2).toReceiveCommandWith(DescribeRouteTablesCommand, {
      Filters: [{ Name: 'vpc-id', Values: ['vpc-1'] }],
    });
  });

  it("reports a database secret that does not exist and the poller's last error", async () => {
    // Prepare
    secrets
      .on(DescribeSecretCommand)
      .rejects(new ResourceNotFoundException({ message: 'not found', $metadata: {} }));
    logs.on(FilterLogEventsCommand).resolves({
      events: [
        { timestamp: NOW - 120_000, message: 'START RequestId: r1' },
        {
          timestamp: NOW - 110_000,
          message: '{"level":"ERROR","message":"connect ETIMEDOUT 10.0.1.5:5432"}',
        },
      ],
    });

    // Act
    const report = await run();

    // Assess
    expect(byId(report, 'database-secret')).toMatchObject({
      status: 'problem',
      summary: 'arn:secret:db does not exist',
    });
    const poller = byId(report, 'database-poller');
    expect(poller?.status).toBe('problem');
    expect(poller?.details).toContain(
      `last error ${new Date(NOW - 110_000).toISOString()}: {"level":"ERROR","message":"connect ETIMEDOUT 10.0.1.5:5432"}`,
    );
    expect(logs).toReceiveCommandWith(FilterLogEventsCommand, {
      logGroupName: '/pulse/db-poller',
      startTime: NOW - 3_600_000,
    });
  });

  it('reports a poller that has not run for an hour, and a watermark-mode poller its watermark', async () => {
    // Prepare
    lambda.on(GetFunctionConfigurationCommand, { FunctionName: OUT.dbPollerFunction }).resolves({
      Environment: {
        Variables: { [ENV.dbSecretArn]: 'arn:secret:db', [ENV.dbMode]: 'watermark', [ENV.dbTable]: 'events' },
      },
    });
    doc.on(GetCommand, { Key: { pk: 'watermark#events', sk: 'watermark' } }).resolves({
      Item: { value: '2026-12-07 10:00:00+00', advancedAt: '2026-12-07T10:00:05.000Z' },
    });
    logs.on(FilterLogEventsCommand).resolves({ events: [] });

    // Act
    const report = await run();

    // Assess
    const poller = byId(report, 'database-poller');
    expect(poller?.status).toBe('problem');
    expect(poller?.summary).toBe('no run in the last 60 minutes (its schedule is every 1 minute(s))');
    expect(poller?.details).toEqual([
      'watermark of events: 2026-12-07 10:00:00+00, moved 2026-12-07T10:00:05.000Z',
    ]);
    expect(byId(report, 'database-network')?.summary).toMatch(/^not in a VPC/);
  });

  it('reports a stack without a database source as not configured', async () => {
    // Prepare
    lambda
      .on(GetFunctionConfigurationCommand, { FunctionName: OUT.dbPollerFunction })
      .resolves({ Environment: { Variables: {} } });

    // Act
    const report = await run();

    // Assess
    expect(report.checks.filter((c) => c.id.startsWith('database')).map((c) => [c.id, c.status])).toEqual([
      ['database', 'not-configured'],
    ]);
    expect(report.exitCode).toBe(0);
  });

  it('says a check could not be made when AWS refuses the call, and exits 2', async () => {
    // Prepare
    ec2
      .on(DescribeRouteTablesCommand)
      .rejects(Object.assign(new Error('not authorized'), { name: 'UnauthorizedOperation' }));

    // Act
    const report = await run();

    // Assess
    const n = byId(report, 'database-network');
    expect(n?.status).toBe('cannot-check');
    expect(n?.next).toMatch(/lack a permission/);
    expect(report.exitCode).toBe(2);
  });
});
