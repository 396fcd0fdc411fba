import { readFileSync } from 'node:fs';
import { PutObjectCommand, S3Client } from '@aws-sdk/client-s3';
import { SendMessageBatchCommand, SQSClient } from '@aws-sdk/client-sqs';
import { mockClient } from 'aws-sdk-client-mock';
import { afterEach, beforeAll, describe, expect, it, vi } from 'vitest';
import type { PartitionSummary } from '../../../functions/kafka-consumer/consumer.ts';
import { lambdaContextFactory } from '../../helpers/factories.ts';
import { kafkaEventFactory } from '../../helpers/kafka.ts';
import { quarantined, sentMessages, sentSignals } from './helpers.ts';

const recorded = (name: string): unknown =>
  JSON.parse(readFileSync(new URL(`../../events/${name}`, import.meta.url), 'utf8'));

describe('kafka-consumer handler', () => {
  const s3 = mockClient(S3Client);
  const sqs = mockClient(SQSClient);
  let handler: (e: unknown, c: unknown) => Promise<PartitionSummary[]>;

  beforeAll(async () => {
    vi.stubEnv('SIGNALS_QUEUE_URL', 'https://sqs.us-east-1.amazonaws.com/1/signals');
    vi.stubEnv('QUARANTINE_BUCKET', 'qb');
    vi.stubEnv('AWS_REGION', 'us-east-1');
    vi.stubEnv('POWERTOOLS_METRICS_DISABLED', 'true');
    vi.stubEnv('POWERTOOLS_LOG_LEVEL', 'SILENT');
    handler = (await import('../../../functions/kafka-consumer/handler.ts')).handler as never;
  });
  afterEach(() => {
    s3.reset();
    sqs.reset();
  });

  it('consumes the recorded MSK event: one message per partition, ids from offsets or the message', async () => {
    // Prepare
    sqs.on(SendMessageBatchCommand).resolves({ Failed: [] });
    // Act
    const out = await handler(recorded('kafka-msk.json'), lambdaContextFactory());
    // Assess
    expect(sentMessages(sqs).map((m) => m.origin.ref)).toEqual([
      'kafka:pulse_signals:0:15-16',
      'kafka:pulse_signals:1:7-7',
    ]);
    expect(sentSignals(sqs).map((s) => [s.id, s.name, s.value, s.source, s.timestamp])).toEqual([
      ['kafka:pulse_signals:0:15', 'cpu', 0.42, 'host-a', '2024-06-10T08:00:00.000Z'],
      ['kafka:pulse_signals:0:16', 'cpu', 0.57, 'pulse_signals', '2024-06-10T08:01:00.000Z'],
      ['evt-7781', 'mem', 512, 'pulse_signals', '2024-06-10T08:00:00.000Z'],
    ]);
    expect(s3).toHaveReceivedCommandTimes(PutObjectCommand, 0);
    expect(out.map((p) => p.sent)).toEqual([2, 1]);
  });

  it('consumes the recorded self-managed Kafka event and quarantines its bad record without failing', async () => {
    // Prepare
    sqs.on(SendMessageBatchCommand).resolves({ Failed: [] });
    s3.on(PutObjectCommand).resolves({});
    // Act
    const out = await handler(recorded('kafka-self-managed.json'), lambdaContextFactory());
    // Assess
    expect(sentSignals(sqs)).toEqual([
      {
        id: 'kafka:pulse_signals:2:3',
        name: 'temperature',
        value: 21.5,
        source: 'pulse_signals',
        timestamp: '2024-06-10T06:00:00.000Z',
        // The recorded record's key and headers, kept beside the value's own field.
        attributes: {
          unit: 'C',
          'kafka.key': 'sensor-9',
          'kafka.header.trace-id': '4bf92f3577b34da6',
          'kafka.header.producer': 'edge-gw',
        },
        origin: { kind: 'kafka', ref: 'kafka:pulse_signals:2:3' },
      },
    ]);
    expect(quarantined(s3)).toEqual({
      'rejects/kafka/pulse_signals/2/3-4.ndjson': [
        expect.objectContaining({
          ref: 'kafka:pulse_signals:2:4',
          reason: 'value must be wholly numeric, got "12x"',
          raw: '{"name":"temperature","value":"12x","timestamp":"2024-06-10T08:00:01+02:00"}',
        }),
      ],
    });
    expect(s3).toHaveReceivedCommandWith(PutObjectCommand, { Bucket: 'qb' });
    expect(out).toEqual([expect.objectContaining({ sent: 1, quarantined: 1 })]);
  });

  it('returns normally for a batch of nothing but bad records, so the partition moves on', async () => {
    // Prepare
    s3.on(PutObjectCommand).resolves({});
    const event = kafkaEventFactory(
      [
        { value: 'not json' },
        { value: [1] },
        { value: { name: 'x', value: '12x', timestamp: 0 } },
        { value: null },
      ],
      { eventSource: 'SelfManagedKafka' },
    );
    // Act
    const out = await handler(event, lambdaContextFactory());
    // Assess
    expect(out).toEqual([expect.objectContaining({ sent: 0, quarantined: 4 })]);
    expect(sqs).toHaveReceivedCommandTimes(SendMessageBatchCommand, 0);
  });

  it('throws when SQS is throttled, so the event source retries the batch', async () => {
    // Prepare
    sqs.on(SendMessageBatchCommand).rejects(
      Object.assign(new Error('Rate exceeded'), {
        name: 'ThrottlingException',
        $metadata: { httpStatusCode: 400 },
      }),
    );
    // Act
    const act = handler(recorded('kafka-msk.json'), lambdaContextFactory());
    // Assess
    await expect(act).rejects.toMatchObject({ name: 'ThrottlingException' });
  });

  it('sends the same signal ids when the same event is delivered twice, for the scorer to drop', async () => {
    // Prepare
    sqs.on(SendMessageBatchCommand).resolves({ Failed: [] });
    const event = recorded('kafka-msk.json');
    // Act
    await handler(event, lambdaContextFactory());
    const first = sentSignals(sqs).map((s) => s.id);
    sqs.resetHistory();
    await handler(event, lambdaContextFactory());
    const second = sentSignals(sqs).map((s) => s.id);
    // Assess
    expect(first).toHaveLength(3);
    expect(second).toEqual(first);
  });

  it('rejects an event that is not a Kafka event, naming the field', async () => {
    // Prepare
    const event = { eventSource: 'aws:kafka', records: { 't-0': [{ topic: 't', partition: 0 }] } };
    // Act
    const act = handler(event, lambdaContextFactory());
    // Assess
    await expect(act).rejects.toThrow(/not a Kafka event: records\.t-0\.0\.offset/);
  });
});
