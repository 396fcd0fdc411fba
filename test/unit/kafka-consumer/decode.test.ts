import { PutObjectCommand, S3Client } from '@aws-sdk/client-s3';
import { SendMessageBatchCommand, SQSClient } from '@aws-sdk/client-sqs';
import avro from 'avro-js';
import { mockClient } from 'aws-sdk-client-mock';
import protobuf from 'protobufjs';
import { afterEach, describe, expect, it } from 'vitest';
import { ConfigError } from '#shared/errors.ts';
import { consumeKafkaRecords } from '../../../functions/kafka-consumer/consumer.ts';
import {
  avroValueType,
  protobufValueType,
  valueDecoder,
  withAvroValues,
  withProtobufValues,
} from '../../../functions/kafka-consumer/decode.ts';
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

describe('valueDecoder', () => {
  it('leaves JSON values as the utility hands them, text, so the consumer can tell "not JSON" from a JSON string', async () => {
    // Prepare
    const records = await consumerRecordsOf(kafkaEventFactory([{ value: '"just a string"' }]));
    // Act
    const decode = await valueDecoder({ valueFormat: 'json' });
    // Assess
    expect(decode(records).map((r) => r.value)).toEqual(['"just a string"']);
  });

  it('gives Avro and Protobuf values the getter of their format', async () => {
    // Prepare
    const value = avro.parse(AVRO_SCHEMA).toBuffer({ name: 'cpu', value: 0.5, timestamp: 1, host: 'h1' });
    const records = await consumerRecordsOf(kafkaEventFactory([{ value: new Uint8Array(value) }]));
    // Act
    const decode = await valueDecoder({ valueFormat: 'avro', valueSchema: AVRO_SCHEMA });
    // Assess
    expect(decode(records).map((r) => r.value)).toEqual([
      { name: 'cpu', value: 0.5, timestamp: 1, host: 'h1' },
    ]);
  });
});

describe('avroValueType', () => {
  it('has nothing to do for JSON or Protobuf values', async () => {
    // Prepare
    const config = { valueFormat: 'protobuf' as const, valueSchema: PROTO };
    // Act
    const type = await avroValueType(config);
    // Assess
    expect(type).toBeUndefined();
  });

  it('fails at cold start on an Avro schema that does not parse, instead of quarantining every record', async () => {
    // Prepare
    const config = {
      valueFormat: 'avro' as const,
      valueSchema: '{"type":"record","name":"S","fields":"nope"}',
    };
    // Act
    const act = avroValueType(config);
    // Assess
    await expect(act).rejects.toThrow(ConfigError);
    await expect(act).rejects.toThrow(/KAFKA_VALUE_SCHEMA is not a valid Avro schema/);
  });

  it('reads each union as its branch value, at any depth, and still writes it back', async () => {
    // Prepare
    const schema = {
      type: 'record',
      name: 'Signal',
      namespace: 'pulse',
      fields: [
        { name: 'value', type: ['null', 'double'], default: null },
        { name: 'tags', type: { type: 'array', items: ['null', 'string', 'long'] } },
        {
          name: 'place',
          type: [
            'null',
            { type: 'record', name: 'Place', fields: [{ name: 'room', type: ['null', 'string'] }] },
          ],
        },
        { name: 'other', type: ['null', 'Place'], default: null },
      ],
    };
    const bytes = avro.parse(schema).toBuffer({
      value: { double: 0.5 },
      tags: [null, { string: 'a' }, { long: -5 }],
      place: { 'pulse.Place': { room: { string: 'K1' } } },
      other: null,
    });
    const type = await avroValueType({ valueFormat: 'avro', valueSchema: JSON.stringify(schema) });
    // Act
    const value = type?.fromBuffer(bytes);
    // Assess
    expect(value).toEqual({ value: 0.5, tags: [null, 'a', -5], place: { room: 'K1' }, other: null });
    expect((type as ReturnType<typeof avro.parse>).toBuffer(value)).toEqual(bytes);
  });

  it('reads a long within 2^53 as a number and beyond as an exact bigint', async () => {
    // Prepare
    const schema = { type: 'array', items: 'long' };
    // Longs written as zigzag varints, by hand: avro-js cannot write one beyond 2^53.
    const zigzag = (n: bigint) => {
      let z = BigInt.asUintN(64, (n << 1n) ^ (n >> 63n));
      const out: number[] = [];
      for (; z > 0x7fn; z >>= 7n) out.push(Number((z & 0x7fn) | 0x80n));
      return [...out, Number(z)];
    };
    const longs = [-1n, 1_718_006_400_000n, 2n ** 53n + 1n, -(2n ** 63n), 2n ** 63n - 1n];
    const bytes = Buffer.from([...zigzag(BigInt(longs.length)), ...longs.flatMap(zigzag), 0]);
    const type = await avroValueType({ valueFormat: 'avro', valueSchema: JSON.stringify(schema) });
    // Act
    const value = type?.fromBuffer(bytes);
    // Assess
    expect(value).toEqual([-1, 1_718_006_400_000, 2n ** 53n + 1n, -(2n ** 63n), 2n ** 63n - 1n]);
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

/** consumeKafkaRecords on records whose values the given format's getter decodes. */
function consume(records: Parameters<typeof consumeKafkaRecords>[0], valueFormat: 'avro' | 'protobuf') {
  const { logger, metrics } = quietObservability();
  return consumeKafkaRecords(records, {
    s3: new S3Client({ region: 'us-east-1' }),
    sqs: new SQSClient({ region: 'us-east-1' }),
    logger,
    metrics,
    config: { signalsQueueUrl: 'q', quarantineBucket: 'qb', valueFormat, maxMessageBytes: 256 * 1024 },
  });
}

describe('consumeKafkaRecords with Avro values', () => {
  async function consumeAvro(event: ReturnType<typeof kafkaEventFactory>, schema = AVRO_SCHEMA) {
    const type = await avroValueType({ valueFormat: 'avro', valueSchema: schema });
    if (!type) throw new Error('no Avro type');
    return consume(withAvroValues(await consumerRecordsOf(event), type), 'avro');
  }

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
    // Act
    const out = await consumeAvro(event);
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
    expect(lines[0]?.reason).toMatch(/^value could not be decoded as avro: not a pulse\.Signal record: /);
    expect(lines[0]?.reason).not.toContain('schema');
    expect(lines[0]?.raw).toBe(Buffer.from([0xff, 0xff, 0xff]).toString('base64'));
    expect(lines[1]?.reason).toBe('value must be finite, got NaN');
    expect(lines[1]?.record).toMatchObject({ name: 'cpu', host: 'h2' });
    expect(out[0]).toMatchObject({ sent: 1, quarantined: 2 });
  });

  it('quarantines a value with a string that is not UTF-8, and keeps a U+FFFD the value really holds', async () => {
    // Prepare: 'cpX' with its X made a byte that is not UTF-8 (the decoder would read it as U+FFFD).
    sqs.on(SendMessageBatchCommand).resolves({ Failed: [] });
    s3.on(PutObjectCommand).resolves({});
    const type = avro.parse(AVRO_SCHEMA);
    const bad = type.toBuffer({ name: 'cpX', value: 0.5, timestamp: 1_718_006_400_000, host: 'h1' });
    bad[bad.indexOf('X')] = 0xff;
    const real = type.toBuffer({ name: 'cpu', value: 1, timestamp: 1_718_006_400_000, host: 'h\uFFFD' });
    const event = kafkaEventFactory([
      { offset: 1, value: new Uint8Array(bad) },
      { offset: 2, value: new Uint8Array(real) },
    ]);

    // Act
    const out = await consumeAvro(event);

    // Assess
    expect(sentSignals(sqs).map((s) => s.attributes)).toEqual([{ host: 'h\uFFFD' }]);
    const lines = quarantined(s3)['rejects/kafka/pulse_signals/0/1-2.ndjson'] ?? [];
    expect(lines.map((l) => [l.ref, l.reason])).toEqual([
      [
        'kafka:pulse_signals:0:1',
        'value could not be decoded as avro: not a pulse.Signal record: a string field is not valid UTF-8',
      ],
    ]);
    expect(out[0]).toMatchObject({ sent: 1, quarantined: 1 });
  });

  it('sends signals whose fields are nullable unions, taking the Kafka timestamp for a null one', async () => {
    // Prepare
    sqs.on(SendMessageBatchCommand).resolves({ Failed: [] });
    const schema = {
      type: 'record',
      name: 'Signal',
      namespace: 'pulse',
      fields: [
        { name: 'name', type: 'string' },
        { name: 'value', type: ['null', 'double'], default: null },
        { name: 'timestamp', type: ['null', 'long'], default: null },
        { name: 'host', type: ['null', 'string'], default: null },
      ],
    };
    const type = avro.parse(schema);
    const event = kafkaEventFactory([
      {
        offset: 1,
        value: new Uint8Array(
          type.toBuffer({
            name: 'cpu',
            value: { double: 0.5 },
            timestamp: { long: 1_718_006_400_000 },
            host: { string: 'h1' },
          }),
        ),
      },
      {
        offset: 2,
        value: new Uint8Array(
          type.toBuffer({ name: 'mem', value: { double: 2 }, timestamp: null, host: null }),
        ),
        timestamp: 1_718_006_460_000,
      },
    ]);
    // Act
    const out = await consumeAvro(event, JSON.stringify(schema));
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
      {
        id: 'kafka:pulse_signals:0:2',
        name: 'mem',
        value: 2,
        source: 'pulse_signals',
        timestamp: '2024-06-10T08:01:00.000Z',
        origin: { kind: 'kafka', ref: 'kafka:pulse_signals:0:2' },
      },
    ]);
    expect(out[0]).toMatchObject({ sent: 2, quarantined: 0 });
  });

  it('keeps a long beyond 2^53 exact: as an attribute its decimal text, as the value a reason', async () => {
    // Prepare
    sqs.on(SendMessageBatchCommand).resolves({ Failed: [] });
    s3.on(PutObjectCommand).resolves({});
    const schema = JSON.stringify({
      type: 'record',
      name: 'Signal',
      fields: [
        { name: 'name', type: 'string' },
        { name: 'value', type: 'long' },
        { name: 'trace_id', type: 'long' },
      ],
    });
    // name "cpu", then zigzag varints: 1 and 2^53 + 1 (trace), 2^53 + 1 and 1 (value).
    const big = [0x82, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x20];
    const event = kafkaEventFactory([
      { offset: 1, value: new Uint8Array([6, ...Buffer.from('cpu'), 2, ...big]) },
      { offset: 2, value: new Uint8Array([6, ...Buffer.from('cpu'), ...big, 2]) },
    ]);
    // Act
    const out = await consumeAvro(event, schema);
    // Assess
    expect(sentSignals(sqs)).toEqual([
      expect.objectContaining({
        id: 'kafka:pulse_signals:0:1',
        value: 1,
        attributes: { trace_id: '9007199254740993' },
      }),
    ]);
    const lines = quarantined(s3)['rejects/kafka/pulse_signals/0/1-2.ndjson'] ?? [];
    expect(lines.map((l) => [l.ref, l.reason])).toEqual([
      ['kafka:pulse_signals:0:2', 'value 9007199254740993 is too large to represent exactly'],
    ]);
    expect(out[0]).toMatchObject({ sent: 1, quarantined: 1 });
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
    return consume(withProtobufValues(await consumerRecordsOf(event), type), 'protobuf');
  }

  it('quarantines a message with a string that is not UTF-8, and keeps a U+FFFD the message really holds', async () => {
    // Prepare
    sqs.on(SendMessageBatchCommand).resolves({ Failed: [] });
    s3.on(PutObjectCommand).resolves({});
    const bad = Buffer.from(encode({ name: 'cpX', value: 0.5, timestamp: '1718006400000', host: 'h1' }));
    bad[bad.indexOf('X')] = 0xc3;
    const real = encode({ name: 'cpu', value: 1, timestamp: '1718006400000', host: 'h\uFFFD' });
    const event = kafkaEventFactory([
      { offset: 1, value: new Uint8Array(bad) },
      { offset: 2, value: real },
    ]);

    // Act
    const out = await consumeProtobuf(event);

    // Assess
    expect(sentSignals(sqs).map((s) => [s.name, (s.attributes as { host?: string }).host])).toEqual([
      ['cpu', 'h\uFFFD'],
    ]);
    const lines = quarantined(s3)['rejects/kafka/pulse_signals/0/1-2.ndjson'] ?? [];
    expect(lines.map((l) => [l.ref, l.reason])).toEqual([
      [
        'kafka:pulse_signals:0:1',
        'value could not be decoded as protobuf: not a pulse.Signal message: a string field is not valid UTF-8',
      ],
    ]);
    expect(out[0]).toMatchObject({ sent: 1, quarantined: 1 });
  });

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
