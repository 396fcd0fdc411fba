/**
 * What a Lambda Kafka event source mapping with a schema registry does to each record before it invokes
 * the function, emulated for the offline run ("Using schema registries with Kafka event sources in
 * Lambda"): for each validated part (VALUE, KEY) it reads the schema id the producer's serializer framed
 * the bytes with, fetches that schema from the registry, deserializes the bytes with it, and hands the
 * function the part as JSON text (`JSON`) or as the bare bytes without the framing (`SOURCE`), with
 * `valueSchemaMetadata` / `keySchemaMetadata` `{ dataFormat, schemaId }` on the record. A record whose
 * schema the registry does not know goes to the on-failure destination with the condition
 * `SCHEMA_NOT_FOUND`; one that does not deserialize with `DESERIALIZATION_ERROR` (without a destination
 * Lambda drops it).
 *
 * Schemas come through a {@link SchemaLookup}: the Confluent REST protocol (`GET /schemas/ids/{id}`, the
 * stand-in of local/emulators/schema-registry.ts or a real registry), or recorded Glue schema versions.
 */

import type { SchemaRegistryEnv } from '#shared/kafka-registry.ts';
import {
  type RegistryFraming,
  RegistryFramingError,
  readConfluentMessageIndexes,
  readFraming,
  readGlueMessageIndex,
} from '#shared/registry-wire.ts';
import type { KafkaEventRecord } from '../../functions/kafka-consumer/events.ts';

export type SchemaFormat = 'AVRO' | 'PROTOBUF' | 'JSON';

/** A writer's schema as the registry holds it. */
export interface WriterSchema {
  readonly format: SchemaFormat;
  /** Avro schema JSON, `.proto` text or JSON Schema text. */
  readonly schema: string;
}

/** Finds a schema by the id a record was framed with; undefined when the registry does not know it. */
export interface SchemaLookup {
  readonly kind: 'confluent' | 'glue';
  /** @throws when the registry cannot be asked (the emulation retries; nothing is discarded for it) */
  schemaById(id: string): Promise<WriterSchema | undefined>;
}

/** The Confluent REST protocol: `GET {url}/schemas/ids/{id}`, 404 (error 40403) for an unknown id. */
export function confluentLookup(url: string): SchemaLookup {
  const base = url.replace(/\/+$/, '');
  return {
    kind: 'confluent',
    async schemaById(id) {
      const res = await fetch(`${base}/schemas/ids/${encodeURIComponent(id)}`, {
        signal: AbortSignal.timeout(5000),
      });
      const body = (await res.json().catch(() => ({}))) as {
        schema?: unknown;
        schemaType?: unknown;
        error_code?: unknown;
      };
      if (res.status === 404) return undefined;
      if (!res.ok || typeof body.schema !== 'string') {
        throw new Error(`schema registry ${base} answered ${res.status} for schema ${id}`);
      }
      const type = body.schemaType ?? 'AVRO';
      if (type !== 'AVRO' && type !== 'PROTOBUF' && type !== 'JSON') {
        throw new Error(`schema registry ${base}: schema ${id} has type ${String(type)}`);
      }
      return { format: type, schema: body.schema };
    },
  };
}

/** Glue schema versions recorded by id (the offline run has no Glue): `{ "<uuid>": { format, schema } }`. */
export function recordedGlueLookup(versions: Readonly<Record<string, WriterSchema>>): SchemaLookup {
  return {
    kind: 'glue',
    schemaById: async (id) => versions[id.toLowerCase()],
  };
}

export type RegistryOutcome =
  | { readonly ok: true; readonly record: KafkaEventRecord }
  | {
      readonly ok: false;
      readonly condition: 'SCHEMA_NOT_FOUND' | 'DESERIALIZATION_ERROR';
      readonly reason: string;
    };

/** Deserializers by schema, built once per schema id (a mapping caches its schemas too). */
export type DeserializerCache = Map<
  string,
  { readonly format: SchemaFormat; readonly deserialize: Deserializer }
>;
type Deserializer = (framing: RegistryFraming) => { json: string; source: Buffer };

/**
 * One record through the registry, as the mapping treats it: the record to invoke the function with, or
 * why it goes to the on-failure destination. A null part (a tombstone's value, a record without a key)
 * is passed as it is.
 */
export async function throughRegistry(
  record: KafkaEventRecord,
  registry: { readonly env: SchemaRegistryEnv; readonly lookup: SchemaLookup },
  cache: DeserializerCache = new Map(),
): Promise<RegistryOutcome> {
  let out: KafkaEventRecord = record;
  for (const part of registry.env.validate) {
    const field = part === 'VALUE' ? 'value' : 'key';
    const base64 = record[field];
    if (base64 === null || base64 === undefined) continue;
    let framing: RegistryFraming;
    try {
      framing = readFraming(Buffer.from(base64, 'base64'));
    } catch (err) {
      return { ok: false, condition: 'DESERIALIZATION_ERROR', reason: `${part}: ${(err as Error).message}` };
    }
    if (framing.kind !== registry.lookup.kind) {
      return {
        ok: false,
        condition: 'DESERIALIZATION_ERROR',
        reason: `${part}: framed for a ${framing.kind} registry, not the mapping's ${registry.lookup.kind} one`,
      };
    }
    const key = `${framing.kind}:${framing.schemaId}`;
    let reader = cache.get(key);
    if (!reader) {
      const writer = await registry.lookup.schemaById(framing.schemaId);
      if (!writer) {
        return {
          ok: false,
          condition: 'SCHEMA_NOT_FOUND',
          reason: `${part}: schema ${framing.schemaId} not found`,
        };
      }
      try {
        reader = { format: writer.format, deserialize: await deserializerFor(writer, framing.kind) };
      } catch (err) {
        return {
          ok: false,
          condition: 'DESERIALIZATION_ERROR',
          reason: `${part}: schema ${framing.schemaId} cannot be read: ${(err as Error).message}`,
        };
      }
      cache.set(key, reader);
    }
    let decoded: { json: string; source: Buffer };
    try {
      decoded = reader.deserialize(framing);
    } catch (err) {
      return {
        ok: false,
        condition: 'DESERIALIZATION_ERROR',
        reason: `${part}: not a record of schema ${framing.schemaId}: ${(err as Error).message}`,
      };
    }
    const bytes = registry.env.recordFormat === 'JSON' ? Buffer.from(decoded.json, 'utf8') : decoded.source;
    out = {
      ...out,
      [field]: bytes.toString('base64'),
      [`${field}SchemaMetadata`]: { dataFormat: reader.format, schemaId: framing.schemaId },
    };
  }
  return { ok: true, record: out };
}

async function deserializerFor(writer: WriterSchema, kind: 'confluent' | 'glue'): Promise<Deserializer> {
  if (writer.format === 'AVRO') return avroDeserializer(writer.schema);
  if (writer.format === 'PROTOBUF') return protobufDeserializer(writer.schema, kind);
  return (framing) => {
    const text = framing.payload.toString('utf8');
    JSON.parse(text);
    return { json: text, source: framing.payload };
  };
}

async function avroDeserializer(schema: string): Promise<Deserializer> {
  const { avroValueType } = await import('../../functions/kafka-consumer/decode.ts');
  const type = await avroValueType({ valueFormat: 'avro', valueSchema: schema });
  if (!type) throw new Error('not an Avro schema');
  return (framing) => ({ json: toJson(type.fromBuffer(framing.payload)), source: framing.payload });
}

async function protobufDeserializer(proto: string, kind: 'confluent' | 'glue'): Promise<Deserializer> {
  const { default: protobuf } = await import('protobufjs');
  const parsed = protobuf.parse(proto, { keepCase: true });
  parsed.root.resolveAll();
  const file = parsed.package ? parsed.root.lookup(parsed.package) : parsed.root;
  const messagesOf = (ns: unknown) =>
    ((ns as { nestedArray?: unknown[] } | null)?.nestedArray ?? []).filter(
      (t): t is InstanceType<typeof protobuf.Type> => t instanceof protobuf.Type,
    );
  return (framing) => {
    const { indexes, message } =
      kind === 'confluent'
        ? readConfluentMessageIndexes(framing.payload)
        : readGlueMessageIndex(framing.payload);
    let type: InstanceType<typeof protobuf.Type> | undefined;
    let candidates = messagesOf(file);
    for (const i of indexes) {
      type = candidates[i];
      if (!type)
        throw new RegistryFramingError(`message index ${indexes.join('.')} names no message of the schema`);
      candidates = messagesOf(type);
    }
    if (!type) throw new RegistryFramingError('no message index');
    const decoded = type.decode(new Uint8Array(message.buffer, message.byteOffset, message.byteLength));
    const value = type.toObject(decoded, { longs: String, enums: String, bytes: String, defaults: true });
    // A proto3 field left at its default is not on the wire: timestamp 0 is "no timestamp".
    if (!Object.hasOwn(decoded, 'timestamp')) delete value.timestamp;
    return { json: toJson(value), source: framing.payload };
  };
}

/** JSON text of a decoded value; a bigint (an Avro long past 2^53) as its exact digits. */
function toJson(value: unknown): string {
  const marker = '\u0000bigint:';
  return JSON.stringify(value, (_k, v: unknown) => (typeof v === 'bigint' ? `${marker}${v}` : v)).replace(
    /"\\u0000bigint:(-?\d+)"/g,
    '$1',
  );
}
