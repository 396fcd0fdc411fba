import { isUtf8 } from 'node:buffer';
import type { ConsumerRecord, SchemaMetadata } from '@aws-lambda-powertools/kafka/types';
import type { AvroType, ParseOptions, UnionType } from 'avro-js';
import type { IConversionOptions, Type } from 'protobufjs';
import type { KafkaConsumerConfig } from '#shared/config.ts';
import { ConfigError } from '#shared/errors.ts';
import { readConfluentMessageIndexes, readGlueMessageIndex } from '#shared/registry-wire.ts';
import { settings } from '#shared/settings.ts';
import { firstInvalidUtf8 } from '#shared/utf8.ts';

/** Characters of a rejected value kept in the quarantine line. */
export const RAW_CLIP_CHARS = 2048;

export type ValueFormat = KafkaConsumerConfig['valueFormat'];

type Records = ConsumerRecord<unknown, unknown>[];

/**
 * Cold start: what gives the records their decoded `value`, for the configured format. The Powertools
 * `kafkaConsumer` wrapper gets no schema config: each record's `value` getter then decodes the base64
 * value to UTF-8 text, lazily, and the binary formats replace that getter with their own.
 *
 * - json: that text, which {@link decodeValue} parses: the utility's JSON deserializer does not fail on
 *   bad JSON, it returns the text (so "not JSON" and a JSON string look alike) and `console.error`s the
 *   base64 payload, which must stay out of the logs.
 * - avro: {@link avroValueType} and {@link withAvroValues}. The utility's Avro deserializer (2.35.0)
 *   parses the schema without options, so a union's value comes back wrapped in its branch name
 *   (`{"double": 0.5}` for a nullable double) and a long beyond 2^53 fails the record.
 * - protobuf: {@link protobufValueType} and {@link withProtobufValues}. The utility's protobuf
 *   deserializer (2.35.0) does `import { BufferReader } from 'protobufjs'`, a named import from a
 *   CommonJS module that Node's ESM loader refuses, so it cannot even load outside an esbuild bundle; and
 *   it hands back protobufjs message instances, not plain objects.
 *
 * A schema or message type that is wrong stops the function here instead of quarantining every record.
 */
export async function valueDecoder(
  config: Pick<KafkaConsumerConfig, 'valueFormat' | 'valueSchema' | 'valueMessageType'>,
): Promise<(records: readonly ConsumerRecord<unknown, unknown>[]) => Records> {
  const avroType = await avroValueType(config);
  if (avroType) return (records) => withAvroValues(records, avroType);
  const protobufType = await protobufValueType(config);
  if (protobufType) return (records) => withProtobufValues(records, protobufType);
  return (records) => [...records];
}

/** An Avro type parsed from the configured schema (see {@link avroValueType}). */
export type AvroValueType = Pick<AvroType, 'fromBuffer' | 'getName'>;

/**
 * Cold start: the configured Avro schema as a type, or undefined for other formats. It reads a value as
 * a JSON one would be:
 * - a union's value as it is, not wrapped in an object named after its branch (`0.5`, not
 *   `{"double": 0.5}`): producers declare an optional field as `["null", T]`, and `normaliseSignal`
 *   would refuse the wrapped value, or keep a wrapped attribute as JSON text;
 * - a long as a number within 2^53, beyond as an exact bigint, as protobuf longs are: `normaliseSignal`
 *   refuses such a `value` instead of rounding it and keeps such an attribute as its decimal text (avro-js
 *   would throw "potential precision loss" and the record be quarantined).
 * Both are avro-js extension points (`typeHook`, `LongType.using`, `LogicalType`): it has no option to
 * leave unions unwrapped.
 */
export async function avroValueType(
  config: Pick<KafkaConsumerConfig, 'valueFormat' | 'valueSchema'>,
): Promise<AvroValueType | undefined> {
  if (config.valueFormat !== 'avro') return undefined;
  const schema = config.valueSchema;
  if (!schema) throw new ConfigError('KAFKA_VALUE_SCHEMA is not set (needed for avro values)');
  const { default: avro } = await import('avro-js');
  try {
    return avro.parse(schema, { typeHook: avroTypeHook(avro) });
  } catch (err) {
    throw new ConfigError(`KAFKA_VALUE_SCHEMA is not a valid Avro schema: ${(err as Error).message}`, {
      cause: err,
    });
  }
}

const MIN_SAFE = BigInt(Number.MIN_SAFE_INTEGER);
const MAX_SAFE = BigInt(Number.MAX_SAFE_INTEGER);
const MIN_LONG = -(2n ** 63n);
const MAX_LONG = 2n ** 63n - 1n;

/** The parse hook of {@link avroValueType}: every long as {@link AvroLong}, every union unwrapped. */
function avroTypeHook(avro: AvroJs): NonNullable<ParseOptions['typeHook']> {
  const long = avro.types.LongType.using<AvroLong>({
    fromBuffer: (buffer) => {
      const n = buffer.readBigInt64LE(0);
      return n >= MIN_SAFE && n <= MAX_SAFE ? Number(n) : n;
    },
    toBuffer: (n) => {
      const buffer = Buffer.alloc(8);
      buffer.writeBigInt64LE(BigInt(n));
      return buffer;
    },
    // A default in the schema is a JSON number; toJSON gives a bigint back as its exact text.
    fromJSON: (json) =>
      typeof json === 'number' && Number.isSafeInteger(json) ? json : BigInt(json as string | number),
    toJSON: (n) => (typeof n === 'bigint' ? n.toString() : n),
    isValid: (n) =>
      (typeof n === 'number' && Number.isSafeInteger(n)) ||
      (typeof n === 'bigint' && n >= MIN_LONG && n <= MAX_LONG),
    compare: (a, b) => (a < b ? -1 : a > b ? 1 : 0),
  });

  /** A union whose values are its branches' own: a logical type over the union avro-js builds. */
  class UnwrappedUnion extends avro.types.LogicalType {
    protected override _fromValue(wrapped: unknown): unknown {
      // null, or an object with one property: the branch's name, and its value.
      return wrapped === null ? null : Object.values(wrapped as object)[0];
    }

    protected override _toValue(value: unknown): unknown {
      if (value === null) return null;
      for (const branch of (this.getUnderlyingType() as UnionType).getTypes()) {
        const name = branch.getName() ?? branch.getName(true);
        if (name !== undefined && name !== 'null' && branch.isValid(value)) return { [name]: value };
      }
      throw new Error('the value matches no branch of the union');
    }
  }

  // The logical type parses the same union schema again for the union underneath: that one passes.
  const unions = new WeakSet<object>();
  return (attrs, opts) => {
    if (Array.isArray(attrs)) {
      if (unions.has(attrs)) return undefined;
      unions.add(attrs);
      return new UnwrappedUnion(attrs, opts);
    }
    const type = typeof attrs === 'object' && attrs !== null ? (attrs as { type?: unknown }).type : undefined;
    return type === 'long' ? long : undefined;
  };
}

/** A decoded Avro long: a number within 2^53, a bigint beyond. */
type AvroLong = number | bigint;
type AvroJs = typeof import('avro-js').default;

/**
 * The records with a `value` getter that decodes the Avro value, lazily and per record like the
 * utility's getters: a value that is not one of the schema throws on access, and `decodeValue`
 * quarantines it. A registry's framing is not expected: the event source mapping strips Confluent's
 * magic byte and schema id, and Avro has no message indexes.
 */
export function withAvroValues(
  records: readonly ConsumerRecord<unknown, unknown>[],
  type: AvroValueType,
): Records {
  return withValueGetter(records, (record) => decodeAvro(record.originalValue, type));
}

function decodeAvro(base64: string | null | undefined, type: AvroValueType): unknown {
  if (base64 === null || base64 === undefined) return base64;
  const buffer = Buffer.from(base64, 'base64');
  try {
    return checkedStrings(type.fromBuffer(buffer), buffer);
  } catch (err) {
    const name = type.getName();
    const what = name ? `a ${name} ${type.getName(true) ?? 'value'}` : 'a value of the Avro schema';
    throw new Error(`not ${what}: ${(err as Error).message}`, { cause: err });
  }
}

/** Each record with its `value` getter replaced by `decode`, every other property as it is. */
function withValueGetter(
  records: readonly ConsumerRecord<unknown, unknown>[],
  decode: (record: ConsumerRecord<unknown, unknown>) => unknown,
): Records {
  return records.map(
    (record) =>
      Object.defineProperties(
        {},
        {
          ...Object.getOwnPropertyDescriptors(record),
          value: { enumerable: true, configurable: true, get: () => decode(record) },
        },
      ) as ConsumerRecord<unknown, unknown>,
  );
}

/** A protobuf message type parsed from the configured `.proto` text. */
export type ProtobufValueType = Pick<Type, 'decode' | 'toObject' | 'fullName'>;

/**
 * Cold start: the configured protobuf message type, or undefined for other formats. The `.proto` is
 * parsed with field names as written (`keepCase`) and every type resolved now, so a broken proto, an
 * unknown message name or an unresolved field type stops the function instead of quarantining every
 * record. Imports are not followed: the message and the types it uses must be in the one text.
 */
export async function protobufValueType(
  config: Pick<KafkaConsumerConfig, 'valueFormat' | 'valueSchema' | 'valueMessageType'>,
): Promise<ProtobufValueType | undefined> {
  if (config.valueFormat !== 'protobuf') return undefined;
  const { valueSchema: schema, valueMessageType: name } = config;
  if (!schema) throw new ConfigError('KAFKA_VALUE_SCHEMA is not set (needed for protobuf values)');
  if (!name) throw new ConfigError('KAFKA_VALUE_MESSAGE_TYPE is not set (needed for protobuf values)');
  const { default: protobuf } = await import('protobufjs');
  let root: InstanceType<typeof protobuf.Root>;
  try {
    root = protobuf.parse(schema, { keepCase: true }).root;
    root.resolveAll();
  } catch (err) {
    throw new ConfigError(`KAFKA_VALUE_SCHEMA is not a valid .proto: ${(err as Error).message}`, {
      cause: err,
    });
  }
  // protobufjs also finds a bare or partial name in any package; only the fully qualified one is taken.
  const wanted = `.${name.replace(/^\./, '')}`;
  let type: Type | undefined;
  let why = 'no such type';
  try {
    type = root.lookupType(name);
  } catch (err) {
    why = (err as Error).message;
  }
  if (type?.fullName !== wanted) {
    const hint = type ? ` (did you mean ${type.fullName.slice(1)}?)` : `: ${why}`;
    throw new ConfigError(
      `KAFKA_VALUE_MESSAGE_TYPE ${name} is not a message type of KAFKA_VALUE_SCHEMA${hint}`,
    );
  }
  return type;
}

/**
 * How a decoded message becomes the plain object `normaliseSignal` reads, as for a JSON value:
 * - longs as bigint: exact; `normaliseSignal` takes a bigint timestamp, refuses a `value` beyond 2^53
 *   instead of rounding it, and keeps a large attribute as its decimal text;
 * - enums by name, bytes as base64;
 * - defaults on: a proto3 field without presence is never on the wire when zero, so `value: 0` must
 *   come back as 0 rather than as "value is required" (fields in a oneof, proto3 `optional` included,
 *   stay absent when unset).
 */
const TO_OBJECT: IConversionOptions = {
  longs: BigInt,
  enums: String,
  bytes: String,
  defaults: true,
  oneofs: false,
};

/**
 * The records with a `value` getter that decodes the protobuf message, lazily and per record like the
 * utility's getters: a value that is not the message throws on access, and `decodeValue` quarantines it.
 * `timestamp`, when absent from the wire (proto3: unset or 0), is left out so the record's Kafka
 * timestamp applies, as for a JSON value without one.
 */
export function withProtobufValues(
  records: readonly ConsumerRecord<unknown, unknown>[],
  type: ProtobufValueType,
): Records {
  return withValueGetter(records, (record) =>
    decodeProtobuf(record.originalValue, record.valueSchemaMetadata, type),
  );
}

function decodeProtobuf(
  base64: string | null | undefined,
  metadata: SchemaMetadata | undefined,
  type: ProtobufValueType,
): unknown {
  if (base64 === null || base64 === undefined) return base64;
  const buffer = Buffer.from(base64, 'base64');
  let message: ReturnType<ProtobufValueType['decode']>;
  try {
    // A plain Uint8Array, not a Buffer: protobufjs's Buffer reader cuts a string that runs past the
    // end short instead of failing, so a truncated value would decode.
    const bytes = new Uint8Array(buffer.buffer, buffer.byteOffset, buffer.byteLength);
    message = type.decode(unframe(bytes, metadata));
  } catch (err) {
    throw new Error(`not a ${type.fullName.replace(/^\./, '')} message: ${(err as Error).message}`, {
      cause: err,
    });
  }
  // protobufjs reads string bytes that are not UTF-8 as other characters, without a word: every string
  // of the message (its own fields: enums are numbers and bytes are arrays there, not text) must be, in
  // UTF-8, bytes of the message.
  if (someString(message, (text) => text !== '' && !buffer.includes(Buffer.from(text, 'utf8')), 0)) {
    throw new Error(`not a ${type.fullName.replace(/^\./, '')} message: a string field is not valid UTF-8`);
  }
  const value = type.toObject(message, TO_OBJECT);
  if (!Object.hasOwn(message, 'timestamp')) delete value.timestamp;
  return value;
}

/** U+FFFD, what a decoder puts for bytes that are not UTF-8, in UTF-8. */
const REPLACEMENT_UTF8 = Buffer.from('\uFFFD');

/**
 * `value` when its strings are what the Avro value holds. avro-js puts U+FFFD for string bytes that are
 * not UTF-8 (a different series name, without a word): when a decoded string has one and the value's
 * bytes hold no U+FFFD of their own, some string was not UTF-8, and the value is refused.
 */
function checkedStrings(value: unknown, raw: Buffer): unknown {
  if (someString(value, (text) => text.includes('\uFFFD'), 0) && !raw.includes(REPLACEMENT_UTF8)) {
    throw new Error('a string field is not valid UTF-8');
  }
  return value;
}

/** Whether a string anywhere in a decoded value (not in its byte arrays) passes `test`. */
function someString(value: unknown, test: (text: string) => boolean, depth: number): boolean {
  if (typeof value === 'string') return test(value);
  if (typeof value !== 'object' || value === null || depth > 64 || ArrayBuffer.isView(value)) return false;
  for (const v of Array.isArray(value) ? value : Object.values(value)) {
    if (someString(v, test, depth + 1)) return true;
  }
  return false;
}

/**
 * Skips what a schema registry leaves in front of the message when the event source mapping validates
 * against one (`valueSchemaMetadata.schemaId` set; Lambda strips the magic byte and the schema id),
 * as the Powertools utility does:
 * - Glue (the id is a UUID): one varint, the message index;
 * - Confluent (a numeric id): the message-index array, a zigzag varint count then that many zigzag
 *   varints (a single 0 byte for the first message of the schema).
 * Without a schema id the value is the bare message.
 */
function unframe(bytes: Uint8Array, metadata: SchemaMetadata | undefined): Uint8Array {
  const schemaId = metadata?.schemaId;
  if (schemaId === undefined || schemaId === '') return bytes;
  const buffer = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const { message } =
    schemaId.length > 10 ? readGlueMessageIndex(buffer) : readConfluentMessageIndexes(buffer);
  return new Uint8Array(message.buffer, message.byteOffset, message.byteLength);
}

export type DecodeResult =
  | { readonly ok: true; readonly value: unknown; readonly raw: string }
  | { readonly ok: false; readonly reason: string; readonly raw?: string };

/**
 * Decodes one record's value. Never throws: the lazy `value` getter (the utility's, or the one of
 * {@link valueDecoder}) throws per record (bad base64, a value not of the schema), and each failure
 * becomes a reason for the quarantine.
 * `raw` is the decoded text for JSON, the base64 value for binary formats and for JSON that is not
 * UTF-8 (its text would hide the bytes), clipped either way. Such JSON is quarantined, not repaired
 * with U+FFFD, as the S3 path fails such a file.
 */
export function decodeValue(record: ConsumerRecord<unknown, unknown>, format: ValueFormat): DecodeResult {
  let value: unknown;
  try {
    value = record.value;
  } catch (err) {
    return {
      ok: false,
      reason: `value could not be decoded as ${format === 'json' ? 'base64 UTF-8 text' : format}: ${errorHead(err)}`,
      raw: clip(record.originalValue ?? ''),
    };
  }
  if (value === null || value === undefined) return { ok: false, reason: 'tombstone (null value)' };
  if (format !== 'json') return { ok: true, value, raw: clip(record.originalValue) };

  const text = String(value);
  // The utility decodes leniently, each byte that is not UTF-8 becoming U+FFFD: the original bytes are
  // checked only when the text holds one, which a valid value may too.
  if (text.includes('\uFFFD')) {
    const original = Buffer.from(record.originalValue ?? '', 'base64');
    if (!isUtf8(original)) {
      return {
        ok: false,
        reason: `value is not valid UTF-8 (at byte ${firstInvalidUtf8(original)})`,
        raw: clip(record.originalValue ?? ''),
      };
    }
  }
  const bytes = Buffer.byteLength(text);
  if (bytes > settings.limits.maxRecordBytes) {
    return {
      ok: false,
      reason: `value is ${bytes} bytes, more than the ${settings.limits.maxRecordBytes}-byte limit`,
      raw: clip(text),
    };
  }
  try {
    return { ok: true, value: JSON.parse(text), raw: clip(text) };
  } catch (err) {
    return { ok: false, reason: `value is not JSON: ${errorHead(err)}`, raw: clip(text) };
  }
}

/**
 * The first part of an error message. The utility's deserialization errors end with
 * `, message: <base64 payload>, schema: <schema>`: neither belongs in a reason.
 */
function errorHead(err: unknown): string {
  const message = err instanceof Error ? err.message : String(err);
  return clip(message.split(', message: ')[0] ?? message, 300);
}

export function clip(s: string, max = RAW_CLIP_CHARS): string {
  return s.length > max ? `${s.slice(0, max)}…` : s;
}
