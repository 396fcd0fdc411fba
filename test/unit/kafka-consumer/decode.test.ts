import { PutObjectCommand, S3Client } from '@aws-sdk/client-s3';
import { SendMessageBatchCommand, SQSClient } from '@aws-sdk/client-sqs';
import avro from 'avro-js';
import { mockClient } from 'aws-sdk-client-mock';
import { afterEach, describe, expect, it } from 'vitest';
import { consumeKafkaRecords } from '../../../functions/kafka-consumer/consumer.ts';
import { kafkaSchemaConfig } from '../../../functions/kafka-consumer/decode.ts';
import { ConfigError } from '../../../shared/errors.ts';
import { consumerRecordsOf, kafkaEventFactory } from '../../helpers/kafka.ts';
import { quietObservability } from '../../helpers/observability.ts';
import { quarantined, sentSignals } from './helpers.ts';

const AVRO_SCHEMA = JSON.stringify({
  type: 'record',
  name: 'Signal',
  namespace: 'pulse',
  fields: [
    { name: 'name', type: 'string' },
    { name: 'value', type: 'double' },
    { name: 'timestamp', type: 'long' },
    { name: 'host', type: 'string' },
  ],
});

describe('kafkaSchemaConfig', () => {
  it('hands JSON values to the consumer as text, so it can tell "not JSON" from a JSON string', async () => {
    // Prepare
    const config = { valueFormat: 'json' as const };
    // Act
    const schemaConfig = await kafkaSchemaConfig(config);
    // Assess
    expect(schemaConfig).toBeUndefined();
  });

  it('configures Avro decoding with the schema from the configuration', async () => {
    // Prepare
    const config = { valueFormat: 'avro' as const, valueSchema: AVRO_SCHEMA };
    // Act
    const schemaConfig = await kafkaSchemaConfig(config);
    // Assess
    expect(schemaConfig).toEqual({ value: { type: 'avro', schema: AVRO_SCHEMA } });
  });

  it('fails at cold start on an Avro schema that does not parse, instead of quarantining every record', async () => {
    // Prepare
    const config = {
      valueFormat: 'avro' as const,
      valueSchema: '{"type":"record","name":"S","fields":"nope"}',
    };
    // Act
    const act = kafkaSchemaConfig(config);
    // Assess
    await expect(act).rejects.toThrow(ConfigError);
    await expect(act).rejects.toThrow(/KAFKA_VALUE_SCHEMA is not a valid Avro schema/);
  });

  it('refuses protobuf values at cold start, saying what is missing', async () => {
    // Prepare
    const config = { valueFormat: 'protobuf' as const, valueSchema: 'syntax = "proto3";' };
    // Act
    const act = kafkaSchemaConfig(config);
    // Assess
    await expect(act).rejects.toThrow(/protobuf is not supported yet/);
  });
});

describe('consumeKafkaRecords with Avro values', () => {
  const sqs = mockClient(SQSClient);
  const s3 = mockClient(S3Client);
  afterEach(() => {
    sqs.reset();
    s3.reset();
  });

  it('sends Avro-encoded signals and quarantines a value that is not Avro, without its payload in the reason', async () => {
    // Prepare
    sqs.on(SendMessageBatchCommand).resolves({ Failed: [] });
    s3.on(PutObjectCommand).resolves({});
    const type = avro.parse(AVRO_SCHEMA);
    const encoded = type.toBuffer({ name: 'cpu', value: 0.5, timestamp: 1_718_006_400_000, host: 'h1' });
    const failing = type.toBuffer({
      name: 'cpu',
      value: Number.NaN,
      timestamp: 1_718_006_400_000,
      host: 'h2',
    });
    const event = kafkaEventFactory([
      { offset: 1, value: new Uint8Array(encoded) },
      { offset: 2, value: new Uint8Array([0xff, 0xff, 0xff]) },
      { offset: 3, value: new Uint8Array(failing) },
    ]);
    const schemaConfig = await kafkaSchemaConfig({ valueFormat: 'avro', valueSchema: AVRO_SCHEMA });
    const { logger, metrics } = quietObservability();
    // Act
    const out = await consumeKafkaRecords(await consumerRecordsOf(event, schemaConfig), {
      s3: new S3Client({ region: 'us-east-1' }),
      sqs: new SQSClient({ region: 'us-east-1' }),
      logger,
      metrics,
      config: {
        signalsQueueUrl: 'q',
        quarantineBucket: 'qb',
        valueFormat: 'avro',
        maxMessageBytes: 256 * 1024,
      },
    });
    // Assess
    expect(sentSignals(sqs)).toEqual([
      {
        id: 'kafka:pulse_signals:0:1',
        name: 'cpu',
        value: 0.5,
        source: 'pulse_signals',
        timestamp: '2024-06-10T08:00:00.000Z',
        attributes: { host: 'h1' },
        origin: { kind: 'kafka', ref: 'kafka:pulse_signals:0:1' },
      },
    ]);
    const lines = quarantined(s3)['rejects/kafka/pulse_signals/0/1-3.ndjson'] ?? [];
    expect(lines.map((l) => l.ref)).toEqual(['kafka:pulse_signals:0:2', 'kafka:pulse_signals:0:3']);
    expect(lines[0]?.reason).toMatch(
      /^value could not be decoded as avro: Failed to deserialize Avro message/,
    );
    expect(lines[0]?.reason).not.toContain('schema');
    expect(lines[0]?.raw).toBe(Buffer.from([0xff, 0xff, 0xff]).toString('base64'));
    expect(lines[1]?.reason).toBe('value must be finite, got NaN');
    expect(lines[1]?.record).toMatchObject({ name: 'cpu', host: 'h2' });
    expect(out[0]).toMatchObject({ sent: 1, quarantined: 2 });
  });
});
