import { PutObjectCommand, S3Client } from '@aws-sdk/client-s3';
import { SendMessageBatchCommand, SQSClient } from '@aws-sdk/client-sqs';
import avro from 'avro-js';
import { mockClient } from 'aws-sdk-client-mock';
import protobuf from 'protobufjs';
import { afterEach, describe, expect, it } from 'vitest';
import { consumeKafkaRecords } from '../../../functions/kafka-consumer/consumer.ts';
import {
  kafkaSchemaConfig,
  protobufValueType,
  withProtobufValues,
} from '../../../functions/kafka-consumer/decode.ts';
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

const PROTO = `
syntax = "proto3";
package pulse;

message Signal {
  enum Level {
    LEVEL_UNSPECIFIED = 0;
    INFO = 1;
    WARN = 2;
  }
  string name = 1;
  double value = 2;
  int64 timestamp = 3;
  string host = 4;
  Level level = 5;
  uint64 trace_id = 6;
}
`;

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

  it('leaves protobuf values out of the utility config, since the consumer decodes them itself', async () => {
    // Prepare
    const config = { valueFormat: 'protobuf' as const, valueSchema: PROTO };
    // Act
    const schemaConfig = await kafkaSchemaConfig(config);
    // Assess
    expect(schemaConfig).toBeUndefined();
  });
});

describe('protobufValueType', () => {
  it('finds the configured message type in the .proto text', async () => {
    // Prepare
    const config = { valueFormat: 'protobuf' as const, valueSchema: PROTO, valueMessageType: 'pulse.Signal' };
    // Act
    const type = await protobufValueType(config);
    // Assess
    expect(type?.fullName).toBe('.pulse.Signal');
  });

  it('has nothing to do for JSON or Avro values', async () => {
    // Prepare
    const config = { valueFormat: 'avro' as const, valueSchema: AVRO_SCHEMA };
    // Act
    const type = await protobufValueType(config);
    // Assess
    expect(type).toBeUndefined();
  });

  it('fails at cold start without a message type name', async () => {
    // Prepare
    const config = { valueFormat: 'protobuf' as const, valueSchema: PROTO };
    // Act
    const act = protobufValueType(config);
    // Assess
    await expect(act).rejects.toThrow(ConfigError);
    await expect(act).rejects.toThrow('KAFKA_VALUE_MESSAGE_TYPE is not set (needed for protobuf values)');
  });

  it('fails at cold start on a .proto that does not parse, instead of quarantining every record', async () => {
    // Prepare
    const config = {
      valueFormat: 'protobuf' as const,
      valueSchema: 'syntax = "proto3"; message Signal { string name = 1 }',
      valueMessageType: 'Signal',
    };
    // Act
    const act = protobufValueType(config);
    // Assess
    await expect(act).rejects.toThrow(ConfigError);
    await expect(act).rejects.toThrow(/^KAFKA_VALUE_SCHEMA is not a valid \.proto: illegal token '}'/);
  });

  it('fails at cold start on a field type the .proto does not define', async () => {
    // Prepare
    const config = {
      valueFormat: 'protobuf' as const,
      valueSchema: 'syntax = "proto3"; message Signal { google.protobuf.Timestamp at = 1; }',
      valueMessageType: 'Signal',
    };
    // Act
    const act = protobufValueType(config);
    // Assess
    await expect(act).rejects.toThrow(ConfigError);
    await expect(act).rejects.toThrow(
      /^KAFKA_VALUE_SCHEMA is not a valid \.proto: .*google\.protobuf\.Timestamp/,
    );
  });

  it('fails at cold start on a message type the .proto does not declare', async () => {
    // Prepare
    const config = { valueFormat: 'protobuf' as const, valueSchema: PROTO, valueMessageType: 'Signal' };
    // Act
    const act = protobufValueType(config);
    // Assess
    await expect(act).rejects.toThrow(ConfigError);
    await expect(act).rejects.toThrow(
      'KAFKA_VALUE_MESSAGE_TYPE Signal is not a message type of KAFKA_VALUE_SCHEMA (did you mean pulse.Signal?)',
    );
  });

  it('fails at cold start on a name that is not in the .proto at all', async () => {
    // Prepare
    const config = { valueFormat: 'protobuf' as const, valueSchema: PROTO, valueMessageType: 'pulse.Metric' };
    // Act
    const act = protobufValueType(config);
    // Assess
    await expect(act).rejects.toThrow(ConfigError);
    await expect(act).rejects.toThrow(
      'KAFKA_VALUE_MESSAGE_TYPE pulse.Metric is not a message type of KAFKA_VALUE_SCHEMA: no such type: pulse.Metric',
    );
  });
});

const sqs = mockClient(SQSClient);
const s3 = mockClient(S3Client);
afterEach(() => {
  sqs.reset();
  s3.reset();
});

describe('consumeKafkaRecords with Avro values', () => {
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

describe('consumeKafkaRecords with Protobuf values', () => {
  const Signal = protobuf.parse(PROTO, { keepCase: true }).root.lookupType('pulse.Signal');
  const encode = (fields: Record<string, unknown>) => Signal.encode(Signal.fromObject(fields)).finish();

  async function consumeProtobuf(event: ReturnType<typeof kafkaEventFactory>) {
    const type = await protobufValueType({
      valueFormat: 'protobuf',
      valueSchema: PROTO,
      valueMessageType: 'pulse.Signal',
    });
    if (!type) throw new Error('no protobuf type');
    const { logger, metrics } = quietObservability();
    return consumeKafkaRecords(withProtobufValues(await consumerRecordsOf(event), type), {
      s3: new S3Client({ region: 'us-east-1' }),
      sqs: new SQSClient({ region: 'us-east-1' }),
      logger,
      metrics,
      config: {
        signalsQueueUrl: 'q',
        quarantineBucket: 'qb',
        valueFormat: 'protobuf',
        maxMessageBytes: 256 * 1024,
      },
    });
  }

  it('sends Protobuf-encoded signals and quarantines a value that is not the message, without failing the batch', async () => {
    // Prepare
    sqs.on(SendMessageBatchCommand).resolves({ Failed: [] });
    s3.on(PutObjectCommand).resolves({});
    const event = kafkaEventFactory([
      {
        offset: 1,
        value: encode({
          name: 'cpu',
          value: 0.5,
          timestamp: '1718006400000',
          host: 'h1',
          level: 'WARN',
          trace_id: '18446744073709551615',
        }),
      },
      { offset: 2, value: new Uint8Array([0xff, 0xff, 0xff]) },
      {
        offset: 3,
        value: encode({ name: 'cpu', value: Number.NaN, timestamp: '1718006400000', host: 'h2' }),
      },
      { offset: 4, value: encode({ name: 'mem', value: 512, timestamp: '1718006460000' }) },
    ]);
    // Act
    const out = await consumeProtobuf(event);
    // Assess
    expect(sentSignals(sqs)).toEqual([
      {
        id: 'kafka:pulse_signals:0:1',
        name: 'cpu',
        value: 0.5,
        source: 'pulse_signals',
        timestamp: '2024-06-10T08:00:00.000Z',
        attributes: { host: 'h1', level: 'WARN', trace_id: '18446744073709551615' },
        origin: { kind: 'kafka', ref: 'kafka:pulse_signals:0:1' },
      },
      expect.objectContaining({ id: 'kafka:pulse_signals:0:4', name: 'mem', value: 512 }),
    ]);
    const lines = quarantined(s3)['rejects/kafka/pulse_signals/0/1-4.ndjson'] ?? [];
    expect(lines.map((l) => l.ref)).toEqual(['kafka:pulse_signals:0:2', 'kafka:pulse_signals:0:3']);
    expect(lines[0]?.reason).toMatch(
      /^value could not be decoded as protobuf: not a pulse\.Signal message: /,
    );
    expect(lines[0]?.raw).toBe(Buffer.from([0xff, 0xff, 0xff]).toString('base64'));
    expect(lines[1]?.reason).toBe('value must be finite, got NaN');
    expect(lines[1]?.record).toMatchObject({ name: 'cpu', host: 'h2', timestamp: '1718006400000' });
    expect(out[0]).toMatchObject({ sent: 2, quarantined: 2 });
  });

  it('reads a zero value as 0 and takes the Kafka timestamp when the message has none, as proto3 omits zeros', async () => {
    // Prepare
    sqs.on(SendMessageBatchCommand).resolves({ Failed: [] });
    const event = kafkaEventFactory([
      { offset: 7, value: encode({ name: 'queue_depth', value: 0 }), timestamp: 1_718_006_400_000 },
    ]);
    // Act
    await consumeProtobuf(event);
    // Assess
    expect(sentSignals(sqs)).toEqual([
      expect.objectContaining({ name: 'queue_depth', value: 0, timestamp: '2024-06-10T08:00:00.000Z' }),
    ]);
  });

  it('skips the message indexes a Confluent or Glue schema registry leaves in front of the message', async () => {
    // Prepare
    sqs.on(SendMessageBatchCommand).resolves({ Failed: [] });
    const message = encode({ name: 'cpu', value: 0.5, timestamp: '1718006400000' });
    const event = kafkaEventFactory([
      // Confluent: message-index array [0], written as the single byte 0.
      {
        offset: 1,
        value: Buffer.concat([Buffer.from([0]), message]),
        valueSchemaMetadata: { dataFormat: 'PROTOBUF', schemaId: '123' },
      },
      // Confluent: message-index array [1, 2]: zigzag count 2, then zigzag 1 and 2.
      {
        offset: 2,
        value: Buffer.concat([Buffer.from([4, 2, 4]), message]),
        valueSchemaMetadata: { dataFormat: 'PROTOBUF', schemaId: '123' },
      },
      // Glue: one varint message index.
      {
        offset: 3,
        value: Buffer.concat([Buffer.from([1]), message]),
        valueSchemaMetadata: { dataFormat: 'PROTOBUF', schemaId: '1ccd1a3b-6d1c-4b8e-9b0e-3f8c1f1e2a4d' },
      },
    ]);
    // Act
    const out = await consumeProtobuf(event);
    // Assess
    expect(sentSignals(sqs).map((s) => [s.id, s.name, s.value])).toEqual([
      ['kafka:pulse_signals:0:1', 'cpu', 0.5],
      ['kafka:pulse_signals:0:2', 'cpu', 0.5],
      ['kafka:pulse_signals:0:3', 'cpu', 0.5],
    ]);
    expect(out[0]).toMatchObject({ sent: 3, quarantined: 0 });
  });
});
