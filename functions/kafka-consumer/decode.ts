import type { ConsumerRecord, SchemaConfig } from '@aws-lambda-powertools/kafka/types';
import type { KafkaConsumerConfig } from '../../shared/config.ts';
import { ConfigError } from '../../shared/errors.ts';
import { settings } from '../../shared/settings.ts';

/** Characters of a rejected value kept in the quarantine line. */
export const RAW_CLIP_CHARS = 2048;

export type ValueFormat = KafkaConsumerConfig['valueFormat'];

/**
 * The schema config handed to the Powertools `kafkaConsumer` wrapper, built once at cold start.
 *
 * - json: no value config on purpose. The utility then decodes the value to UTF-8 text and we parse it
 *   ourselves: its JSON deserializer does not fail on bad JSON, it returns the text (so "not JSON" and
 *   a JSON string look alike) and `console.error`s the base64 payload, which must stay out of the logs.
 * - avro: the utility decodes with avro-js; the schema is parsed here first, so a wrong schema stops
 *   the function at cold start instead of quarantining every record.
 * - protobuf: not wired (the utility needs a compiled protobufjs message type; the configuration holds
 *   only a schema string and no message type name).
 */
export async function kafkaSchemaConfig(
  config: Pick<KafkaConsumerConfig, 'valueFormat' | 'valueSchema'>,
): Promise<SchemaConfig | undefined> {
  if (config.valueFormat === 'json') return undefined;
  if (config.valueFormat === 'protobuf') {
    throw new ConfigError(
      'KAFKA_VALUE_FORMAT=protobuf is not supported yet: it needs a message type name next to KAFKA_VALUE_SCHEMA',
    );
  }
  const schema = config.valueSchema;
  if (!schema) throw new ConfigError('KAFKA_VALUE_SCHEMA is not set (needed for avro values)');
  const { default: avro } = await import('avro-js');
  try {
    avro.parse(schema);
  } catch (err) {
    throw new ConfigError(`KAFKA_VALUE_SCHEMA is not a valid Avro schema: ${(err as Error).message}`, {
      cause: err,
    });
  }
  return { value: { type: 'avro', schema } };
}

export type DecodeResult =
  | { readonly ok: true; readonly value: unknown; readonly raw: string }
  | { readonly ok: false; readonly reason: string; readonly raw?: string };

/**
 * Decodes one record's value. Never throws: the utility's lazy `value` getter throws per record
 * (bad base64, bad Avro), and each failure becomes a reason for the quarantine.
 * `raw` is the decoded text for JSON, the base64 value for binary formats, clipped either way.
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
