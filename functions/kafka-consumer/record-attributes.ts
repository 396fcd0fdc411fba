import { isUtf8 } from 'node:buffer';
import type { RecordHeader } from '@aws-lambda-powertools/kafka/types';

/**
 * A Kafka record's key and headers, kept as signal attributes beside the value's own fields.
 *
 * - The key: `kafka.key` when its bytes are text (valid UTF-8 without control characters other than tab,
 *   LF and CR), else `kafka.key.base64`, the bytes in base64. A record without a key (null) has neither;
 *   an empty key is `kafka.key: ''`.
 * - Each header: `kafka.header.<name>`, or `kafka.header.<name>.base64` for bytes that are not text, in
 *   the same way. A name repeated in one record (Kafka allows it) is kept once per value, in record
 *   order: the second is `kafka.header.<name>#2`, the third `#3` (before any `.base64`).
 *
 * Text is kept as text so that attributes read as they were produced; bytes that are not text (a binary
 * key such as a big-endian long, a serialized trace context) go in base64, under a name that says so, so
 * no value is ever ambiguous and none is changed (U+FFFD) on the way.
 */
export const KAFKA_ATTRIBUTES = {
  key: 'kafka.key',
  headerPrefix: 'kafka.header.',
  /** Appended to a name whose value is base64 of bytes that are not text. */
  base64Suffix: '.base64',
} as const;

/** Bytes that read as text: valid UTF-8, no control character but tab, LF and CR. */
function isText(bytes: Buffer): boolean {
  // biome-ignore lint/suspicious/noControlCharactersInRegex: control characters are what it looks for
  return isUtf8(bytes) && !/[\u0000-\u0008\u000b\u000c\u000e-\u001f\u007f]/.test(bytes.toString('utf8'));
}

function put(out: Record<string, string>, name: string, bytes: Buffer): void {
  if (isText(bytes)) out[name] = bytes.toString('utf8');
  else out[`${name}${KAFKA_ATTRIBUTES.base64Suffix}`] = bytes.toString('base64');
}

/**
 * The attributes of a record's key (base64, as the event carries it) and headers (one `{ name: bytes }`
 * object per header, in record order, as Lambda sends them).
 */
export function recordAttributes(
  key: string | null | undefined,
  headers: readonly RecordHeader[] | null | undefined,
): Record<string, string> {
  const out: Record<string, string> = {};
  if (key !== null && key !== undefined) put(out, KAFKA_ATTRIBUTES.key, Buffer.from(key, 'base64'));
  const seen = new Map<string, number>();
  for (const header of headers ?? []) {
    for (const [name, bytes] of Object.entries(header)) {
      const n = (seen.get(name) ?? 0) + 1;
      seen.set(name, n);
      put(out, `${KAFKA_ATTRIBUTES.headerPrefix}${name}${n > 1 ? `#${n}` : ''}`, Buffer.from(bytes));
    }
  }
  return out;
}

/**
 * The decoded value with the record's attributes added as fields (the signal keeps every field it does
 * not know as an attribute). A value that is not an object is returned as it is, for validation to
 * reject. A field the value already has under one of those names is a conflict, never an overwrite:
 * its name comes back, for the quarantine's reason.
 */
export function withRecordAttributes(
  value: unknown,
  attributes: Readonly<Record<string, string>>,
): { ok: true; value: unknown } | { ok: false; reason: string } {
  const names = Object.keys(attributes);
  if (names.length === 0 || typeof value !== 'object' || value === null || Array.isArray(value)) {
    return { ok: true, value };
  }
  const own = value as Record<string, unknown>;
  const nested = own.attributes;
  const taken = names.filter(
    (n) =>
      Object.hasOwn(own, n) ||
      (typeof nested === 'object' && nested !== null && !Array.isArray(nested) && Object.hasOwn(nested, n)),
  );
  if (taken.length > 0) {
    return {
      ok: false,
      reason: `${taken.join(', ')} given by the value and by the record's key or headers`,
    };
  }
  return { ok: true, value: { ...own, ...attributes } };
}
