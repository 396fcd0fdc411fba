import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import avro from 'avro-js';
import type { KafkaMessage } from 'kafkajs';
import protobuf from 'protobufjs';
import { describe, expect, it } from 'vitest';
import type { SchemaRegistryEnv } from '#shared/kafka-registry.ts';
import { confluentFrame, messageIndexBytes } from '#shared/registry-wire.ts';
import type { KafkaEvent, KafkaEventRecord } from '../../../../functions/kafka-consumer/events.ts';
import { REPO_ROOT } from '../../../../infra/constructs/pulse-function.ts';
import {
  type BatchPayload,
  createBatchProcessor,
  type KafkaBatchFailure,
  newStats,
} from '../../../../local/event-sources/kafka.ts';
import {
  recordedGlueLookup,
  type SchemaLookup,
  throughRegistry,
  type WriterSchema,
} from '../../../../local/event-sources/kafka-registry.ts';

const AVRO_V1 = JSON.stringify({
  type: 'record',
  name: 'Signal',
  namespace: 'pulse',
  fields: [
    { name: 'name', type: 'string' },
    { name: 'value', type: 'double' },
    { name: 'timestamp', type: 'long' },
  ],
});
/** v1 with a field added, with a default: a compatible evolution. */
const AVRO_V2 = JSON.stringify({
  ...JSON.parse(AVRO_V1),
  fields: [...JSON.parse(AVRO_V1).fields, { name: 'site', type: 'string', default: 'unknown' }],
});
const PROTO_V1 =
  'syntax = "proto3";\npackage pulse;\nmessage Signal { string name = 1; double value = 2; int64 timestamp = 3; }\n';
/** v1 with a field added (and a second message, so the index matters). */
const PROTO_V2 =
  'syntax = "proto3";\npackage pulse;\nmessage Other { string x = 1; }\nmessage Signal { string name = 1; double value = 2; int64 timestamp = 3; string site = 4; }\n';

/** A Confluent registry in memory: ids 1..4 as registered, nothing else. */
function confluent(schemas: Record<string, WriterSchema>): SchemaLookup & { asked: string[] } {
  const asked: string[] = [];
  return {
    kind: 'confluent',
    asked,
    schemaById: async (id) => {
      asked.push(id);
      return schemas[id];
    },
  };
}
const REGISTRY = {
  '1': { format: 'AVRO', schema: AVRO_V1 },
  '2': { format: 'AVRO', schema: AVRO_V2 },
  '3': { format: 'PROTOBUF', schema: PROTO_V1 },
  '4': { format: 'PROTOBUF', schema: PROTO_V2 },
} as const satisfies Record<string, WriterSchema>;

const JSON_VALUE: SchemaRegistryEnv = { kind: 'confluent', recordFormat: 'JSON', validate: ['VALUE'] };
const TS = 1_718_000_000_000;

const avroBytes = (schema: string, value: object) => avro.parse(schema).toBuffer(value);
function protoBytes(proto: string, type: string, value: object): Buffer {
  const t = protobuf.parse(proto, { keepCase: true }).root.lookupType(type);
  return Buffer.from(t.encode(t.fromObject(value)).finish());
}
const record = (value: Buffer | null, offset = 0): KafkaEventRecord => ({
  topic: 't',
  partition: 0,
  offset,
  timestamp: TS + offset,
  timestampType: 'CREATE_TIME',
  value: value === null ? null : value.toString('base64'),
  headers: [],
});
const jsonValue = (r: KafkaEventRecord) => JSON.parse(Buffer.from(r.value ?? '', 'base64').toString('utf8'));

describe('throughRegistry (the event source mapping with a schema registry)', () => {
  it('hands old and new Avro writer schemas alike to the function as JSON, with the schema id as metadata', async () => {
    // Prepare
    const lookup = confluent(REGISTRY);
    const v1 = record(confluentFrame(1, avroBytes(AVRO_V1, { name: 'cpu', value: 0.5, timestamp: TS })));
    const v2 = record(
      confluentFrame(2, avroBytes(AVRO_V2, { name: 'cpu', value: 1.5, timestamp: TS, site: 'eu-1' })),
      1,
    );
    // Act
    const a = await throughRegistry(v1, { env: JSON_VALUE, lookup });
    const b = await throughRegistry(v2, { env: JSON_VALUE, lookup });
    // Assess
    expect(a.ok && jsonValue(a.record)).toEqual({ name: 'cpu', value: 0.5, timestamp: TS });
    expect(a.ok && a.record.valueSchemaMetadata).toEqual({ dataFormat: 'AVRO', schemaId: '1' });
    expect(b.ok && jsonValue(b.record)).toEqual({ name: 'cpu', value: 1.5, timestamp: TS, site: 'eu-1' });
    expect(b.ok && b.record.valueSchemaMetadata).toEqual({ dataFormat: 'AVRO', schemaId: '2' });
  });

  it('reads protobuf through its message indexes, old and new schema alike; SOURCE hands the payload without the framing', async () => {
    // Prepare
    const lookup = confluent(REGISTRY);
    const v1Payload = Buffer.concat([
      messageIndexBytes([0]),
      protoBytes(PROTO_V1, 'pulse.Signal', { name: 'mem', value: 2, timestamp: TS }),
    ]);
    const v2 = record(
      confluentFrame(
        4,
        Buffer.concat([
          messageIndexBytes([1]),
          protoBytes(PROTO_V2, 'pulse.Signal', { name: 'mem', value: 3, timestamp: TS, site: 'eu-2' }),
        ]),
      ),
    );
    // Act
    const a = await throughRegistry(record(confluentFrame(3, v1Payload)), { env: JSON_VALUE, lookup });
    const b = await throughRegistry(v2, { env: JSON_VALUE, lookup });
    const source = await throughRegistry(record(confluentFrame(3, v1Payload)), {
      env: { ...JSON_VALUE, recordFormat: 'SOURCE' },
      lookup,
    });
    // Assess
    expect(a.ok && jsonValue(a.record)).toEqual({ name: 'mem', value: 2, timestamp: String(TS) });
    expect(b.ok && jsonValue(b.record)).toEqual({
      name: 'mem',
      value: 3,
      timestamp: String(TS),
      site: 'eu-2',
    });
    expect(b.ok && b.record.valueSchemaMetadata).toEqual({ dataFormat: 'PROTOBUF', schemaId: '4' });
    expect(source.ok && Buffer.from(source.record.value ?? '', 'base64')).toEqual(v1Payload);
  });

  it('sends a schema id the registry does not know away as SCHEMA_NOT_FOUND, and bytes that do not deserialize as DESERIALIZATION_ERROR', async () => {
    // Prepare
    const lookup = confluent(REGISTRY);
    const unknown = record(confluentFrame(99, avroBytes(AVRO_V1, { name: 'x', value: 1, timestamp: TS })));
    const corrupt = record(confluentFrame(1, Buffer.from([0x06, 0x63])));
    const unframed = record(Buffer.from(JSON.stringify({ name: 'x', value: 1, timestamp: TS })));
    // Act
    const outcomes = await Promise.all(
      [unknown, corrupt, unframed].map((r) => throughRegistry(r, { env: JSON_VALUE, lookup })),
    );
    // Assess
    expect(outcomes).toEqual([
      { ok: false, condition: 'SCHEMA_NOT_FOUND', reason: 'VALUE: schema 99 not found' },
      {
        ok: false,
        condition: 'DESERIALIZATION_ERROR',
        reason: expect.stringContaining('not a record of schema 1'),
      },
      {
        ok: false,
        condition: 'DESERIALIZATION_ERROR',
        reason: expect.stringContaining('no schema registry framing'),
      },
    ]);
  });

  it('decodes the recorded Glue-format records (zlib or not, Avro v1 and v2, protobuf) with their schema versions; an unknown version is SCHEMA_NOT_FOUND', async () => {
    // Prepare
    const fixture = JSON.parse(
      readFileSync(join(REPO_ROOT, 'test/events/kafka-glue-registry.json'), 'utf8'),
    ) as {
      schemaVersions: Record<string, WriterSchema>;
      unknownSchemaVersion: string;
      event: KafkaEvent;
    };
    const lookup = recordedGlueLookup(fixture.schemaVersions);
    const records = Object.values(fixture.event.records).flat();
    // Act
    const outcomes = await Promise.all(
      records.map((r) => throughRegistry(r, { env: { ...JSON_VALUE, kind: 'glue' }, lookup })),
    );
    // Assess
    const values = outcomes.map((o) => (o.ok ? jsonValue(o.record) : o.condition));
    expect(values).toEqual([
      { name: 'glue.cpu', value: 0.5, timestamp: TS },
      { name: 'glue.mem', value: 2.25, timestamp: TS + 1 },
      { name: 'glue.disk', value: 7, timestamp: TS + 2, site: 'eu-1' },
      { name: 'glue.net', value: 3.5, timestamp: String(TS + 3) },
      'SCHEMA_NOT_FOUND',
    ]);
    expect(outcomes[4]).toMatchObject({ reason: `VALUE: schema ${fixture.unknownSchemaVersion} not found` });
  });
});

describe('the Kafka event source with a schema registry', () => {
  const message = (offset: number, value: Buffer): KafkaMessage =>
    ({
      offset: String(offset),
      timestamp: String(TS + offset),
      attributes: 0,
      key: null,
      value,
      headers: {},
      batchContext: { timestampType: 0 },
    }) as KafkaMessage;

  it('invokes the function with what the registry validates and discards the rest, one record each, to the on-failure destination in offset order', async () => {
    // Prepare
    const log: string[] = [];
    const failures: KafkaBatchFailure[] = [];
    const good = (o: number) =>
      message(o, confluentFrame(1, avroBytes(AVRO_V1, { name: 'cpu', value: o, timestamp: TS })));
    const stats = newStats();
    const process = createBatchProcessor(
      {
        handler: async (event: KafkaEvent) => {
          const records = Object.values(event.records).flat();
          log.push(`invoke ${records.map((r) => r.offset).join(',')}`);
        },
        batchSize: 10,
        bootstrapServers: '127.0.0.1:9092',
        retryDelayMs: 1,
        logger: { debug: () => {}, info: () => {}, warn: () => {}, error: () => {} },
        onFailure: (f) => {
          failures.push(f);
          log.push(`discard ${f.record.requestContext.condition}`);
        },
        schemaRegistry: { env: JSON_VALUE, lookup: confluent(REGISTRY) },
      },
      stats,
    );
    const commits: string[] = [];
    let resolved = '';
    const payload: BatchPayload = {
      batch: {
        topic: 't',
        partition: 0,
        messages: [good(0), good(1), message(2, confluentFrame(42, Buffer.from([2, 0x61]))), good(3)],
      },
      resolveOffset: (o) => {
        resolved = o;
      },
      heartbeat: async () => {},
      uncommittedOffsets: () => ({
        topics: [{ topic: 't', partitions: [{ partition: 0, offset: String(Number(resolved) + 1) }] }],
      }),
      commitOffsetsIfNecessary: async (offsets) => {
        const o = offsets?.topics[0]?.partitions[0]?.offset ?? '';
        commits.push(o);
        log.push(`commit ${o}`);
      },
      isRunning: () => true,
      isStale: () => false,
    };
    // Act
    await process(payload);
    // Assess
    expect(log).toEqual([
      'invoke 0,1',
      'commit 2',
      'discard SCHEMA_NOT_FOUND',
      'commit 3',
      'invoke 3',
      'commit 4',
    ]);
    const [failure] = failures;
    expect(failure?.record.requestContext).toMatchObject({
      condition: 'SCHEMA_NOT_FOUND',
      approximateInvokeCount: 0,
    });
    // The destination keeps the record as the producer wrote it, framing and all.
    expect(Object.values(failure?.event.records ?? {}).flat()).toEqual([
      expect.objectContaining({
        offset: 2,
        value: confluentFrame(42, Buffer.from([2, 0x61])).toString('base64'),
      }),
    ]);
    expect(stats).toMatchObject({ invocations: 2, recordsDelivered: 3, discardedRecords: 1 });
  });
});
