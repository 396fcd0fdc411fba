import { GetObjectCommand, ListObjectsV2Command } from '@aws-sdk/client-s3';
import avro from 'avro-js';
import type { Context } from 'aws-lambda';
import { type Admin, Kafka, logLevel, Partitioners, type Producer } from 'kafkajs';
import protobuf from 'protobufjs';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import type { SchemaRegistryEnv } from '#shared/kafka-registry.ts';
import { confluentFrame, messageIndexBytes } from '#shared/registry-wire.ts';
import type { KafkaEvent } from '../../functions/kafka-consumer/events.ts';
import { handlerInvoker } from '../../local/commands/kafka-invokers.ts';
import { listKafkaFailures, replayKafkaFailures } from '../../local/commands/kafka-replay.ts';
import { type SchemaRegistryServer, startSchemaRegistry } from '../../local/emulators/schema-registry.ts';
import { type KafkaEventSource, startKafkaEventSource } from '../../local/event-sources/kafka.ts';
import {
  emulatedMappingUuid,
  s3OnFailureDestination,
} from '../../local/event-sources/kafka-failure-destinations.ts';
import { confluentLookup } from '../../local/event-sources/kafka-registry.ts';
import { uniquePrefix } from '../../local/runtime/names.ts';
import { setUpPipeline, waitFor } from './pipeline.ts';

type Pipeline = Awaited<ReturnType<typeof setUpPipeline>>;

/**
 * Avro and Protobuf values through a schema registry, end to end offline: producers frame their records
 * as Confluent's serializers do (schema ids from the registry stand-in, a real process speaking the REST
 * protocol), the real broker holds them, the Kafka event source emulation validates them through the
 * registry as the event source mapping does (JSON records), the real kafka-consumer and scorer handle them.
 * Both writer schema versions of each format are scored; records the registry cannot validate go to the
 * failures bucket and, replayed, are quarantined naming their schema id.
 */

type Handler = (event: KafkaEvent, context: Context) => Promise<unknown>;

const AVRO_V1 = {
  type: 'record',
  name: 'Signal',
  namespace: 'pulse',
  fields: [
    { name: 'name', type: 'string' },
    { name: 'value', type: 'double' },
    { name: 'timestamp', type: 'long' },
  ],
};
/** A new writer schema: a field added with a default (backward compatible). */
const AVRO_V2 = {
  ...AVRO_V1,
  fields: [...AVRO_V1.fields, { name: 'site', type: 'string', default: 'unknown' }],
};
const PROTO_V1 =
  'syntax = "proto3";\npackage pulse;\nmessage Signal {\n  string name = 1;\n  double value = 2;\n  int64 timestamp = 3;\n}\n';
/** A new protobuf field. */
const PROTO_V2 =
  'syntax = "proto3";\npackage pulse;\nmessage Signal {\n  string name = 1;\n  double value = 2;\n  int64 timestamp = 3;\n  string site = 4;\n}\n';
const REGISTRY_ENV: SchemaRegistryEnv = { kind: 'confluent', recordFormat: 'JSON', validate: ['VALUE'] };
const PER_VERSION = 5;

describe('Kafka values through a schema registry (Kafka + registry stand-in + moto)', () => {
  const brokers = inject('kafkaBrokers');
  const kafka = new Kafka({ clientId: 'registry-test', brokers: [brokers], logLevel: logLevel.ERROR });
  let p: Pipeline;
  let handler: Handler;
  let registry: SchemaRegistryServer;
  let admin: Admin;
  let producer: Producer;
  const sources: KafkaEventSource[] = [];

  beforeAll(async () => {
    p = await setUpPipeline(inject('motoEndpoint'), uniquePrefix('rsr'), { visibility: { signals: 10 } });
    // The stack sets it on the function with kafka.schemaRegistry; the handler reads it at import.
    process.env.KAFKA_SCHEMA_REGISTRY = JSON.stringify(REGISTRY_ENV);
    handler = (await import('../../functions/kafka-consumer/handler.ts')).handler as unknown as Handler;
    registry = await startSchemaRegistry();
    admin = kafka.admin();
    await admin.connect();
    producer = kafka.producer({ createPartitioner: Partitioners.DefaultPartitioner });
    await producer.connect();
  });

  afterAll(async () => {
    await Promise.all(sources.splice(0).map((s) => s.stop()));
    await p?.stopAll();
    await producer?.disconnect();
    await admin?.disconnect();
    await registry?.stop();
    delete process.env.KAFKA_SCHEMA_REGISTRY;
  });

  const register = async (subject: string, schema: string, schemaType?: 'PROTOBUF'): Promise<number> => {
    const res = await fetch(`${registry.url}/subjects/${subject}/versions`, {
      method: 'POST',
      headers: { 'content-type': 'application/vnd.schemaregistry.v1+json' },
      body: JSON.stringify({ schema, ...(schemaType ? { schemaType } : {}) }),
    });
    return ((await res.json()) as { id: number }).id;
  };

  it('scores old and new Avro and Protobuf writer schemas alike, exactly once each; a value of an unknown schema id is quarantined with the id after replay, never dropped', async () => {
    // Prepare: a topic, the schemas registered as producers register them, records of both versions.
    const topic = `pulse-registry-${p.names.prefix}`;
    await admin.createTopics({
      topics: [{ topic, numPartitions: 2, replicationFactor: 1 }],
      waitForLeaders: true,
    });
    const avroV1 = await register(`${topic}-value`, JSON.stringify(AVRO_V1));
    const avroV2 = await register(`${topic}-value`, JSON.stringify(AVRO_V2));
    const protoV1 = await register(`${topic}-proto-value`, PROTO_V1, 'PROTOBUF');
    const protoV2 = await register(`${topic}-proto-value`, PROTO_V2, 'PROTOBUF');
    expect(new Set([avroV1, avroV2, protoV1, protoV2]).size).toBe(4);
    const ts = Date.now() - 60_000;
    const avroOf = (schema: object, value: object, id: number) =>
      confluentFrame(id, avro.parse(schema).toBuffer(value));
    const protoOf = (proto: string, value: object, id: number) => {
      const type = protobuf.parse(proto, { keepCase: true }).root.lookupType('pulse.Signal');
      return confluentFrame(
        id,
        Buffer.concat([messageIndexBytes([0]), type.encode(type.fromObject(value)).finish()]),
      );
    };
    const values: Buffer[] = [];
    for (let i = 0; i < PER_VERSION; i++) {
      values.push(avroOf(AVRO_V1, { name: 'avro.v1', value: i, timestamp: ts + i }, avroV1));
      values.push(avroOf(AVRO_V2, { name: 'avro.v2', value: i, timestamp: ts + i, site: 'eu-1' }, avroV2));
      values.push(protoOf(PROTO_V1, { name: 'proto.v1', value: i, timestamp: ts + i }, protoV1));
      values.push(
        protoOf(PROTO_V2, { name: 'proto.v2', value: i, timestamp: ts + i, site: 'eu-2' }, protoV2),
      );
    }
    const unknownId = 4000 + avroV2;
    const unknown = avroOf(AVRO_V1, { name: 'avro.lost', value: 1, timestamp: ts }, unknownId);
    const corrupt = confluentFrame(avroV1, Buffer.from([0x7f]));
    await producer.send({
      topic,
      acks: -1,
      messages: [...values, unknown, corrupt].map((value, i) => ({ value, partition: i % 2 })),
    });

    // Act: the event source with the registry, as the stack deploys it (provisioned, S3 on-failure bucket).
    const source = startKafkaEventSource({
      brokers,
      topic,
      groupId: `${topic}-group`,
      batchSize: 50,
      maxBatchingWindowMs: 100,
      handler,
      retryDelayMs: 50,
      schemaRegistry: { env: REGISTRY_ENV, lookup: confluentLookup(registry.url) },
      onFailure: s3OnFailureDestination({
        s3: p.clients.s3,
        bucket: p.resources.kafkaFailuresBucket,
        esmUuid: emulatedMappingUuid(`${topic}-group`),
      }),
      logger: { debug: () => {}, info: () => {}, warn: () => {}, error: () => {} },
    });
    sources.push(source);
    await source.ready;
    await source.idle();
    await source.stop();
    // The two it could not validate were discarded to the bucket, one object each, with the registry's
    // condition; replayed once the bucket alarms, the kafka-consumer quarantines them with their ids.
    const failures = await listKafkaFailures(p.target);
    const conditions: string[] = [];
    for (const f of failures) {
      const body = await p.clients.s3.send(
        new GetObjectCommand({ Bucket: p.resources.kafkaFailuresBucket, Key: f.key }),
      );
      conditions.push(JSON.parse((await body.Body?.transformToString()) ?? '{}').requestContext.condition);
    }
    const replay = await replayKafkaFailures(p.target, handlerInvoker(handler));
    p.start('signals');
    await waitFor(
      'every validated record scored',
      async () => {
        const counts = await Promise.all(
          ['avro.v1', 'avro.v2', 'proto.v1', 'proto.v2'].map(
            async (n) => (await p.series(topic, n))?.count ?? 0,
          ),
        );
        return counts.every((c) => c >= PER_VERSION) && (await p.queueDepth('signals')) === 0;
      },
      60_000,
    );

    // Assess: exact counts, both versions of each format scored once per record.
    expect(source.stats).toMatchObject({ recordsDelivered: 4 * PER_VERSION, discardedRecords: 2 });
    expect(conditions.sort()).toEqual(['DESERIALIZATION_ERROR', 'SCHEMA_NOT_FOUND']);
    expect(replay).toMatchObject({ replayed: 2, failed: [] });
    for (const name of ['avro.v1', 'avro.v2', 'proto.v1', 'proto.v2']) {
      expect((await p.series(topic, name))?.count, name).toBe(PER_VERSION);
    }
    const lines = await quarantinedLines(topic);
    expect(lines.map((l) => l.reason).sort()).toEqual([
      expect.stringContaining(
        `Confluent schema id ${avroV1} is unknown to the registry or the value does not deserialize`,
      ),
      expect.stringContaining(`Confluent schema id ${unknownId} is unknown to the registry`),
    ]);
    expect(await p.series(topic, 'avro.lost')).toBeUndefined();
  });

  /** Every quarantine line under `rejects/kafka/<topic>/`. */
  async function quarantinedLines(topic: string) {
    const out = await p.clients.s3.send(
      new ListObjectsV2Command({ Bucket: p.names.bucket, Prefix: `rejects/kafka/${topic}/` }),
    );
    const lines: { ref: string; reason: string }[] = [];
    for (const o of out.Contents ?? []) {
      const body = await p.clients.s3.send(new GetObjectCommand({ Bucket: p.names.bucket, Key: o.Key }));
      for (const line of ((await body.Body?.transformToString()) ?? '').split('\n')) {
        if (line.trim()) lines.push(JSON.parse(line));
      }
    }
    return lines;
  }
});
