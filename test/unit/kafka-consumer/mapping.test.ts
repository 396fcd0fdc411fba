import { PutObjectCommand, S3Client } from '@aws-sdk/client-s3';
import { SendMessageBatchCommand, SQSClient } from '@aws-sdk/client-sqs';
import { mockClient } from 'aws-sdk-client-mock';
import { afterEach, describe, expect, it } from 'vitest';
import { loadKafkaConsumerConfig } from '#shared/config.ts';
import { consumeKafkaRecords, type KafkaConsumeDeps } from '../../../functions/kafka-consumer/consumer.ts';
import { consumerRecordsOf, type KafkaRecordInput, kafkaEventFactory } from '../../helpers/kafka.ts';
import { quietObservability } from '../../helpers/observability.ts';
import { sentSignals } from './helpers.ts';

describe("kafka-consumer: a topic's field mapping", () => {
  const sqs = mockClient(SQSClient);
  const s3 = mockClient(S3Client);
  afterEach(() => {
    sqs.reset();
    s3.reset();
  });
  const config = loadKafkaConsumerConfig({
    SIGNALS_QUEUE_URL: 'https://q',
    QUARANTINE_BUCKET: 'qb',
    KAFKA_MAPPINGS: JSON.stringify({ pulse_signals: { name: 'metric', value: 'val', timestamp: 'ts' } }),
  });
  const deps = (): KafkaConsumeDeps => {
    const obs = quietObservability();
    return {
      s3: new S3Client({ region: 'us-east-1' }),
      sqs: new SQSClient({ region: 'us-east-1' }),
      logger: obs.logger,
      metrics: obs.metrics,
      config: { ...config, signalsQueueUrl: 'q' },
      senderOptions: { sleep: async () => undefined },
    };
  };
  const consume = async (records: KafkaRecordInput[]) =>
    consumeKafkaRecords(await consumerRecordsOf(kafkaEventFactory(records)), deps());

  it('reads each value by its topic mapping, before the signal schema', async () => {
    // Prepare
    sqs.on(SendMessageBatchCommand).resolves({ Failed: [] });
    // Act
    await consume([
      { offset: 7, value: { metric: 'cpu', val: '2.5', ts: '2024-06-10T08:00:00Z', host: 'a' } },
    ]);
    // Assess
    expect(sentSignals(sqs)[0]).toMatchObject({
      id: 'kafka:pulse_signals:0:7',
      name: 'cpu',
      value: 2.5,
      timestamp: '2024-06-10T08:00:00.000Z',
      attributes: { host: 'a' },
    });
  });

  it('quarantines a value holding both a mapped field and its target, naming both', async () => {
    // Prepare
    sqs.on(SendMessageBatchCommand).resolves({ Failed: [] });
    s3.on(PutObjectCommand).resolves({});
    // Act
    const out = await consume([{ offset: 8, value: { metric: 'cpu', name: 'x', val: 1, ts: 1 } }]);
    // Assess
    expect(out[0]).toMatchObject({ sent: 0, quarantined: 1 });
    const body = String(s3.commandCalls(PutObjectCommand)[0]?.args[0].input.Body ?? '');
    expect(body).toContain('field \\"name\\" is present, and \\"name\\" is mapped from \\"metric\\"');
  });

  it('refuses KAFKA_MAPPINGS that are not topic → mapping JSON', () => {
    // Act
    const load = () =>
      loadKafkaConsumerConfig({
        SIGNALS_QUEUE_URL: 'https://q',
        QUARANTINE_BUCKET: 'qb',
        KAFKA_MAPPINGS: '{"t":{"nom":"x"}}',
      });
    // Assess
    expect(load).toThrow(/KAFKA_MAPPINGS must be JSON/);
  });
});
