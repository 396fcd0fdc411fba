import { deflateSync, inflateSync } from 'node:zlib';

/**
 * The bytes a schema registry's serializers put in front of a Kafka record's value (or key), read and
 * written without a registry:
 *
 * - Confluent ("Wire format", Confluent Schema Registry docs): magic byte 0, the schema id as a 4-byte
 *   big-endian integer, then the Avro / JSON payload; a Protobuf payload starts with its message indexes
 *   (which message of the schema's file: a zigzag varint count, then that many zigzag varints; the first
 *   message, `[0]`, is written as a single 0 byte).
 * - AWS Glue Schema Registry (its serde library's wire format): header version byte 3, a compression
 *   byte (0 none, 5 zlib), the schema version id as 16 bytes (a UUID), then the payload, zlib-deflated
 *   when the compression byte says so. A Protobuf payload starts with one varint, the message index.
 *
 * The Kafka event source mapping strips these bytes before it invokes the function; the offline
 * emulation of the mapping reads them here, and the kafka-consumer reads them to name the schema id of
 * a record the mapping could not validate.
 */
export type RegistryFraming =
  | { readonly kind: 'confluent'; readonly schemaId: string; readonly payload: Buffer }
  | {
      readonly kind: 'glue';
      /** The schema version id, `xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx`. */
      readonly schemaId: string;
      readonly compression: 'none' | 'zlib';
      /** Inflated when the record was deflated. */
      readonly payload: Buffer;
    };

/** Bytes that carry no registry framing, or a framing that cannot be read: permanent for the record. */
export class RegistryFramingError extends Error {
  constructor(message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = 'RegistryFramingError';
  }
}

const CONFLUENT_MAGIC = 0;
const GLUE_HEADER_VERSION = 3;
const GLUE_COMPRESSION_NONE = 0;
const GLUE_COMPRESSION_ZLIB = 5;

/**
 * The framing of `bytes`: the schema id and the payload after it.
 * @param maxPayloadBytes a Glue zlib payload inflating past this fails (a compression bomb).
 * @throws RegistryFramingError when the bytes start with neither framing, or are cut short.
 */
export function readFraming(bytes: Buffer, maxPayloadBytes = 1024 * 1024): RegistryFraming {
  const first = bytes[0];
  if (first === CONFLUENT_MAGIC) {
    if (bytes.length < 5) throw new RegistryFramingError('Confluent framing cut short (needs 5 bytes)');
    return { kind: 'confluent', schemaId: String(bytes.readUInt32BE(1)), payload: bytes.subarray(5) };
  }
  if (first === GLUE_HEADER_VERSION) {
    if (bytes.length < 18) throw new RegistryFramingError('Glue framing cut short (needs 18 bytes)');
    const compression = bytes[1];
    const schemaId = uuidOf(bytes.subarray(2, 18));
    const body = bytes.subarray(18);
    if (compression === GLUE_COMPRESSION_NONE)
      return { kind: 'glue', schemaId, compression: 'none', payload: body };
    if (compression === GLUE_COMPRESSION_ZLIB) {
      try {
        const payload = inflateSync(body, { maxOutputLength: maxPayloadBytes });
        return { kind: 'glue', schemaId, compression: 'zlib', payload };
      } catch (err) {
        throw new RegistryFramingError(
          `Glue payload of schema version ${schemaId} does not inflate: ${(err as Error).message}`,
          { cause: err },
        );
      }
    }
    throw new RegistryFramingError(`Glue framing with unknown compression byte ${compression}`);
  }
  throw new RegistryFramingError(
    first === undefined
      ? 'empty value: no schema registry framing'
      : `no schema registry framing (first byte ${first}, neither Confluent's 0 nor Glue's 3)`,
  );
}

/** The Confluent framing of a payload (a protobuf one with its message indexes, {@link messageIndexBytes}). */
export function confluentFrame(schemaId: number, payload: Uint8Array): Buffer {
  const head = Buffer.alloc(5);
  head.writeUInt8(CONFLUENT_MAGIC, 0);
  head.writeUInt32BE(schemaId, 1);
  return Buffer.concat([head, payload]);
}

/** The Glue framing of a payload, deflated with zlib when `compress`. */
export function glueFrame(schemaVersionId: string, payload: Uint8Array, compress = false): Buffer {
  const uuid = Buffer.from(schemaVersionId.replaceAll('-', ''), 'hex');
  if (uuid.length !== 16) throw new RegistryFramingError(`not a UUID: ${schemaVersionId}`);
  return Buffer.concat([
    Buffer.from([GLUE_HEADER_VERSION, compress ? GLUE_COMPRESSION_ZLIB : GLUE_COMPRESSION_NONE]),
    uuid,
    compress ? deflateSync(payload) : payload,
  ]);
}

function uuidOf(b: Buffer): string {
  const h = b.toString('hex');
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20)}`;
}

/**
 * Confluent protobuf message indexes at the start of `payload`: the path of the message in the schema's
 * file (`[0]`: its first message; `[1, 0]`: the first nested message of the second), and the message bytes.
 */
export function readConfluentMessageIndexes(payload: Buffer): { indexes: number[]; message: Buffer } {
  const count = readVarint(payload, 0);
  const n = unzigzag(count.value);
  if (n < 0 || n > 64) throw new RegistryFramingError(`protobuf message index count ${n} is not valid`);
  if (n === 0) return { indexes: [0], message: payload.subarray(count.next) };
  const indexes: number[] = [];
  let at = count.next;
  for (let i = 0; i < n; i++) {
    const v = readVarint(payload, at);
    indexes.push(unzigzag(v.value));
    at = v.next;
  }
  return { indexes, message: payload.subarray(at) };
}

/** Glue protobuf: one (plain) varint, the message's index among the file's messages. */
export function readGlueMessageIndex(payload: Buffer): { indexes: number[]; message: Buffer } {
  const v = readVarint(payload, 0);
  return { indexes: [v.value], message: payload.subarray(v.next) };
}

/** The Confluent message-index bytes for a message path (`[0]` is the single byte 0). */
export function messageIndexBytes(indexes: readonly number[]): Buffer {
  if (indexes.length === 1 && indexes[0] === 0) return Buffer.from([0]);
  return Buffer.concat([indexes.length, ...indexes].map((n) => varintBytes(zigzag(n))));
}

/** The Glue message-index byte(s) for a message's index. */
export function glueMessageIndexBytes(index: number): Buffer {
  return varintBytes(index);
}

const zigzag = (n: number) => ((n << 1) ^ (n >> 31)) >>> 0;
const unzigzag = (n: number) => (n >>> 1) ^ -(n & 1);

function varintBytes(n: number): Buffer {
  const out: number[] = [];
  let v = n >>> 0;
  while (v >= 0x80) {
    out.push((v & 0x7f) | 0x80);
    v >>>= 7;
  }
  out.push(v);
  return Buffer.from(out);
}

function readVarint(bytes: Buffer, at: number): { value: number; next: number } {
  let value = 0;
  for (let i = 0; i < 5; i++) {
    const byte = bytes[at + i];
    if (byte === undefined)
      throw new RegistryFramingError('protobuf message index runs past the end of the value');
    value |= (byte & 0x7f) << (7 * i);
    if (byte < 0x80) return { value: value >>> 0, next: at + i + 1 };
  }
  throw new RegistryFramingError('protobuf message index is not a valid varint');
}
