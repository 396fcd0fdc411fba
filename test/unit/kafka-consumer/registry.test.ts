import { S3Client } from '@aws-sdk/client-s3';
import { SendMessageBatchCommand, SQSClient } from '@aws-sdk/client-sqs';
import { mockClient } from 'aws-sdk-client-mock';
import { afterEach, describe, expect, it } from 'vitest';
import { confluentFrame, glueFrame } from '#shared/registry-wire.ts';
import { consumeKafkaRecords, type KafkaConsumeDeps } from '../../../functions/kafka-consumer/consumer.ts';
import { consumerRecordsOf, kafkaEventFactory } from '../../helpers/kafka.ts';
import { quietObservability } from '../../helpers/observability.ts';
import { quarantined, sentSignals } from './helpers.ts';

const TS = '2024-06-10T08:00:00Z';

describe('the kafka-consumer behind a schema registry', () => {
  const sqs = mockClient(SQSClient);
  const s3 = mockClient(S3Client);
  afterEach(() => {
    sqs.reset();
    s3.reset();
  });
  const deps = (): KafkaConsumeDeps => {
    const obs = quietObservability();
    return {
      s3: new S3Client({ region: 'us-east-1' }),
      sqs: new SQSClient({ region: 'us-east-1' }),
      logger: obs.logger,
      metrics: obs.metrics,
      config: {
        signalsQueueUrl: 'q',
        quarantineBucket: 'qb',
        valueFormat: 'json',
        maxMessageBytes: 256 * 1024,
        schemaRegistry: { kind: 'confluent', recordFormat: 'JSON', validate: ['VALUE'] },
      },
      senderOptions: { sleep: async () => undefined },
    };
  };

  it('quarantines a value the mapping did not validate (replayed from the on-failure destination) with its schema id, topic, partition and offset; scores the validated ones', async () => {
    // Prepare
    sqs.on(SendMessageBatchCommand).resolves({ Failed: [] });
    const event = kafkaEventFactory([
      {
        offset: 7,
        value: { name: 'cpu', value: 1, timestamp: TS },
        valueSchemaMetadata: { dataFormat: 'AVRO', schemaId: '1' },
      },
      { offset: 8, value: confluentFrame(4242, Buffer.from([6, 0x63, 0x70, 0x75])) },
      { offset: 9, value: glueFrame('8f6b1f52-5d3c-4c2e-9a41-1b2c3d4e5f60', Buffer.from([0])) },
      { offset: 10, value: { name: 'mem', value: 2, timestamp: TS } },
    ]);
    // Act
    const out = await consumeKafkaRecords(await consumerRecordsOf(event), deps());
    // Assess
    expect(sentSignals(sqs).map((s) => s.id)).toEqual(['kafka:pulse_signals:0:7']);
    const lines = Object.values(quarantined(s3)).flat();
    expect(lines.map((l) => [l.ref, l.reason])).toEqual([
      [
        'kafka:pulse_signals:0:8',
        expect.stringMatching(
          /^value not validated by the schema registry: Confluent schema id 4242 is unknown to the registry .*SCHEMA_NOT_FOUND.* \(topic pulse_signals, partition 0, offset 8\)$/,
        ),
      ],
      [
        'kafka:pulse_signals:0:9',
        expect.stringContaining(
          'Glue schema version 8f6b1f52-5d3c-4c2e-9a41-1b2c3d4e5f60, framed for a glue registry, not the confluent one',
        ),
      ],
      [
        'kafka:pulse_signals:0:10',
        expect.stringContaining('carries no schema id: no schema registry framing'),
      ],
    ]);
    expect(out[0]).toMatchObject({ sent: 1, quarantined: 3 });
  });
});
