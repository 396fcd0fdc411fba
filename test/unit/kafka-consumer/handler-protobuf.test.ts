import { PutObjectCommand, S3Client } from '@aws-sdk/client-s3';
import { SendMessageBatchCommand, SQSClient } from '@aws-sdk/client-sqs';
import { mockClient } from 'aws-sdk-client-mock';
import protobuf from 'protobufjs';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import type { PartitionSummary } from '../../../functions/kafka-consumer/consumer.ts';
import { lambdaContextFactory } from '../../helpers/factories.ts';
import { kafkaEventFactory } from '../../helpers/kafka.ts';
import { quarantined, sentSignals } from './helpers.ts';

const PROTO = `
syntax = "proto3";
package pulse;
message Signal {
  string name = 1;
  double value = 2;
  int64 timestamp = 3;
  string host = 4;
}
`;

type Handler = (e: unknown, c: unknown) => Promise<PartitionSummary[]>;

async function coldStart(env: Record<string, string>): Promise<Handler> {
  vi.resetModules();
  for (const [k, v] of Object.entries(env)) vi.stubEnv(k, v);
  return (await import('../../../functions/kafka-consumer/handler.ts')).handler as never;
}

describe('kafka-consumer handler with KAFKA_VALUE_FORMAT=protobuf', () => {
  const s3 = mockClient(S3Client);
  const sqs = mockClient(SQSClient);

  beforeEach(() => {
    vi.stubEnv('SIGNALS_QUEUE_URL', 'https://sqs.us-east-1.amazonaws.com/1/signals');
    vi.stubEnv('QUARANTINE_BUCKET', 'qb');
    vi.stubEnv('AWS_REGION', 'us-east-1');
    vi.stubEnv('POWERTOOLS_METRICS_DISABLED', 'true');
    vi.stubEnv('POWERTOOLS_LOG_LEVEL', 'SILENT');
    vi.stubEnv('KAFKA_VALUE_FORMAT', 'protobuf');
    vi.stubEnv('KAFKA_VALUE_SCHEMA', PROTO);
  });
  afterEach(() => {
    vi.unstubAllEnvs();
    s3.reset();
    sqs.reset();
  });

  it('decodes Protobuf values into signals and quarantines the one that is not a message', async () => {
    // Prepare
    sqs.on(SendMessageBatchCommand).resolves({ Failed: [] });
    s3.on(PutObjectCommand).resolves({});
    const handler = await coldStart({ KAFKA_VALUE_MESSAGE_TYPE: 'pulse.Signal' });
    const Signal = protobuf.parse(PROTO).root.lookupType('pulse.Signal');
    const value = Signal.encode(
      Signal.fromObject({ name: 'cpu', value: 0.42, timestamp: '1718006400000', host: 'host-a' }),
    ).finish();
    const event = kafkaEventFactory([
      { offset: 15, value },
      // Cut short: the name field says 5 bytes and 1 follows.
      { offset: 16, value: new Uint8Array([0x0a, 0x05, 0x63]) },
    ]);
    // Act
    const out = await handler(event, lambdaContextFactory());
    // Assess
    expect(sentSignals(sqs)).toEqual([
      {
        id: 'kafka:pulse_signals:0:15',
        name: 'cpu',
        value: 0.42,
        source: 'pulse_signals',
        timestamp: '2024-06-10T08:00:00.000Z',
        attributes: { host: 'host-a' },
        origin: { kind: 'kafka', ref: 'kafka:pulse_signals:0:15' },
      },
    ]);
    expect(quarantined(s3)['rejects/kafka/pulse_signals/0/15-16.ndjson']).toEqual([
      expect.objectContaining({
        ref: 'kafka:pulse_signals:0:16',
        reason: expect.stringMatching(
          /^value could not be decoded as protobuf: not a pulse\.Signal message: /,
        ),
      }),
    ]);
    expect(out).toEqual([expect.objectContaining({ sent: 1, quarantined: 1 })]);
  });

  it('stops at cold start when the message type name is missing', async () => {
    // Prepare
    const env = {};
    // Act
    const act = coldStart(env);
    // Assess
    await expect(act).rejects.toMatchObject({
      name: 'ConfigError',
      message: 'KAFKA_VALUE_MESSAGE_TYPE is not set (needed for protobuf values)',
    });
  });

  it('stops at cold start when the .proto does not parse', async () => {
    // Prepare
    const env = { KAFKA_VALUE_SCHEMA: 'message Signal {', KAFKA_VALUE_MESSAGE_TYPE: 'Signal' };
    // Act
    const act = coldStart(env);
    // Assess
    await expect(act).rejects.toMatchObject({
      name: 'ConfigError',
      message: expect.stringMatching(/^KAFKA_VALUE_SCHEMA is not a valid \.proto: /),
    });
  });
});
