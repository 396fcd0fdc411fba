import { CloudFormationClient, DescribeStacksCommand, type Output } from '@aws-sdk/client-cloudformation';
import { mockClient } from 'aws-sdk-client-mock';
import { afterEach, describe, expect, it } from 'vitest';
import { OUTPUTS } from '#shared/contract.ts';
import {
  localTarget,
  stackTarget,
  type Target,
  TargetUnavailableError,
} from '../../../../local/commands/target.ts';
import type { LocalState } from '../../../../local/runtime/state.ts';

const MOTO = 'http://127.0.0.1:5123';
const queue = (name: string) => ({
  name,
  url: `${MOTO}/000000000000/${name}`,
  arn: `arn:aws:sqs:us-east-1:000000000000:${name}`,
});
const resources: NonNullable<LocalState['resources']> = {
  bucket: 'pulse-unit-bucket',
  kafkaFailuresBucket: 'pulse-unit-kafka-failures',
  ledgerTable: 'pulse-unit-ledger',
  scoresTable: 'pulse-unit-scores',
  scoresBucket: 'pulse-unit-scores',
  anomaliesTable: 'pulse-unit-anomalies',
  queues: {
    fileEvents: queue('pulse-unit-file-events'),
    fileEventsDlq: queue('pulse-unit-file-events-dlq'),
    signals: queue('pulse-unit-signals'),
    signalsDlq: queue('pulse-unit-signals-dlq'),
    kafkaFailures: queue('pulse-unit-kafka-failures'),
  },
  dbSecretArn: 'arn:aws:secretsmanager:us-east-1:000000000000:secret:pulse-unit-db',
  dbUrl: 'postgres://pulse:pulse@127.0.0.1:5544/pulse',
  dbTable: 'signals',
  topic: 'pulse-unit-signals',
};
const stateFactory = (over: Partial<LocalState> = {}): LocalState => ({
  prefix: 'pulse-unit',
  moto: { pid: 1, marker: 'moto_server', port: 5123, endpoint: MOTO },
  resources,
  ...over,
});

describe('localTarget', () => {
  const opened: Target[] = [];
  afterEach(() => {
    for (const t of opened.splice(0)) t.close();
  });

  it.each([
    ['there is no state', undefined],
    ['the emulator is not recorded', stateFactory({ moto: undefined })],
    ['no resources were created', stateFactory({ resources: undefined })],
  ])('is unavailable when %s', (_what, state) => {
    // Act
    const act = () => opened.push(localTarget(state));
    // Assess
    expect(act).toThrow(TargetUnavailableError);
    expect(act).toThrow(/offline pipeline is not up/);
  });

  it("maps the state's resources to the bucket, tables and queue URLs", () => {
    // Act
    const target = localTarget(stateFactory());
    opened.push(target);
    // Assess
    expect(target).toMatchObject({
      kind: 'local',
      name: 'local',
      bucket: 'pulse-unit-bucket',
      ledgerTable: 'pulse-unit-ledger',
      scoresTable: 'pulse-unit-scores',
      scoresBucket: 'pulse-unit-scores',
      anomaliesTable: 'pulse-unit-anomalies',
      queues: {
        fileEvents: `${MOTO}/000000000000/pulse-unit-file-events`,
        fileEventsDlq: `${MOTO}/000000000000/pulse-unit-file-events-dlq`,
        signals: `${MOTO}/000000000000/pulse-unit-signals`,
        signalsDlq: `${MOTO}/000000000000/pulse-unit-signals-dlq`,
        kafkaFailures: `${MOTO}/000000000000/pulse-unit-kafka-failures`,
      },
    });
    expect(target.endpoints).toEqual({ s3: MOTO, sqs: MOTO, dynamodb: MOTO });
  });

  it('names the database, broker and dashboard endpoints of the processes that run', async () => {
    // Prepare
    const state = stateFactory({
      postgres: {
        pid: 2,
        marker: 'postgres',
        port: 5544,
        url: 'postgres://postgres@127.0.0.1:5544/postgres',
      },
      kafka: { pid: 3, marker: 'kafka', port: 9092, brokers: '127.0.0.1:9092' },
      runtime: {
        pid: 4,
        marker: 'runtime',
        ready: true,
        startedAt: '2024-06-01T00:00:00.000Z',
        dashboard: 'http://127.0.0.1:8080/',
        log: '/tmp/runtime.log',
      },
    });
    // Act
    const target = localTarget(state);
    opened.push(target);
    // Assess
    expect(target.endpoints).toEqual({
      s3: MOTO,
      sqs: MOTO,
      dynamodb: MOTO,
      postgres: 'postgres://pulse:pulse@127.0.0.1:5544/pulse',
      kafka: '127.0.0.1:9092',
      kafkaTopic: 'pulse-unit-signals',
      dashboard: 'http://127.0.0.1:8080/',
    });
    expect(await target.clients.sqs.config.region()).toBe('us-east-1');
    expect(await target.clients.s3.config.forcePathStyle).toBe(true);
  });
});

describe('stackTarget', () => {
  const cfn = mockClient(CloudFormationClient);
  const opened: Target[] = [];
  afterEach(() => {
    cfn.reset();
    for (const t of opened.splice(0)) t.close();
  });

  const outputs = (): Output[] =>
    [
      [OUTPUTS.bucket, 'pulseingest-bucket-abc'],
      [OUTPUTS.ledgerTable, 'PulseIngest-Ledger-1'],
      [OUTPUTS.scoresTable, 'PulseIngest-Scores-1'],
      [OUTPUTS.scoresBucket, 'pulseingest-scoresbucket-abc'],
      [OUTPUTS.anomaliesTable, 'PulseIngest-Anomalies-1'],
      [OUTPUTS.scoresGlueTable, 'pulseingest_scores.scores'],
      [OUTPUTS.fileEventsQueue, 'https://sqs.eu-west-1.amazonaws.com/123456789012/file-events'],
      [OUTPUTS.fileEventsDlq, 'https://sqs.eu-west-1.amazonaws.com/123456789012/file-events-dlq'],
      [OUTPUTS.signalsQueue, 'https://sqs.eu-west-1.amazonaws.com/123456789012/signals'],
      [OUTPUTS.signalsDlq, 'https://sqs.eu-west-1.amazonaws.com/123456789012/signals-dlq'],
      [OUTPUTS.kafkaFailuresBucket, 'pulseingest-kafkafailures-abc'],
      [OUTPUTS.kafkaFailureNotices, 'https://sqs.eu-west-1.amazonaws.com/123456789012/kafka-failures'],
      [OUTPUTS.kafkaConsumerFunction, 'PulseIngest-KafkaConsumer-1'],
      [OUTPUTS.alarmTopic, 'arn:aws:sns:eu-west-1:123456789012:alarms'],
    ].map(([OutputKey, OutputValue]) => ({ OutputKey, OutputValue }));
  const stack = (Outputs: Output[]) => ({
    Stacks: [
      {
        StackName: 'PulseIngest',
        StackStatus: 'CREATE_COMPLETE' as const,
        CreationTime: new Date('2024-06-01T00:00:00Z'),
        Outputs,
      },
    ],
  });

  it("maps the stack's outputs to the bucket, tables and queue URLs", async () => {
    // Prepare
    cfn.on(DescribeStacksCommand, { StackName: 'PulseIngest' }).resolves(stack(outputs()));
    // Act
    const target = await stackTarget('PulseIngest', 'eu-west-1');
    opened.push(target);
    // Assess
    expect(target).toMatchObject({
      kind: 'aws',
      name: 'PulseIngest',
      bucket: 'pulseingest-bucket-abc',
      ledgerTable: 'PulseIngest-Ledger-1',
      scoresTable: 'PulseIngest-Scores-1',
      kafkaFailuresBucket: 'pulseingest-kafkafailures-abc',
      kafkaConsumerFunction: 'PulseIngest-KafkaConsumer-1',
      scoresBucket: 'pulseingest-scoresbucket-abc',
      anomaliesTable: 'PulseIngest-Anomalies-1',
      scoresGlueTable: 'pulseingest_scores.scores',
      queues: {
        fileEvents: 'https://sqs.eu-west-1.amazonaws.com/123456789012/file-events',
        fileEventsDlq: 'https://sqs.eu-west-1.amazonaws.com/123456789012/file-events-dlq',
        signals: 'https://sqs.eu-west-1.amazonaws.com/123456789012/signals',
        signalsDlq: 'https://sqs.eu-west-1.amazonaws.com/123456789012/signals-dlq',
        kafkaFailures: 'https://sqs.eu-west-1.amazonaws.com/123456789012/kafka-failures',
      },
      endpoints: {
        s3: 'https://s3.eu-west-1.amazonaws.com',
        sqs: 'https://sqs.eu-west-1.amazonaws.com',
        dynamodb: 'https://dynamodb.eu-west-1.amazonaws.com',
      },
    });
    expect(target.endpoints.postgres).toBeUndefined();
    expect(cfn).toHaveReceivedCommandTimes(DescribeStacksCommand, 1);
  });

  it('names the output the stack lacks', async () => {
    // Prepare
    cfn
      .on(DescribeStacksCommand)
      .resolves(stack(outputs().filter((o) => o.OutputKey !== OUTPUTS.signalsDlq)));
    // Act
    const act = stackTarget('PulseIngest', 'eu-west-1');
    // Assess
    await expect(act).rejects.toThrow(TargetUnavailableError);
    await expect(act).rejects.toThrow(`stack PulseIngest has no output ${OUTPUTS.signalsDlq}`);
  });

  it('is unavailable when no stack is described', async () => {
    // Prepare
    cfn.on(DescribeStacksCommand).resolves({ Stacks: [] });
    // Act
    const act = stackTarget('Nope', 'eu-west-1');
    // Assess
    await expect(act).rejects.toThrow(TargetUnavailableError);
    await expect(act).rejects.toThrow('stack Nope not found');
  });
});
