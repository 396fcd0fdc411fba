import { deflateRawSync, inflateRawSync } from 'node:zlib';
import * as z from 'zod';
import { settings } from './settings.ts';
import { sqsSafeJson } from './sqs-text.ts';

/**
 * The signal: one Zod schema for what every producer emits and the scorer reads, and one normaliser
 * that turns an input record (a CSV row, a JSON object, a table row, a Kafka message) into it.
 */

export const ORIGIN_KINDS = ['s3', 'db', 'kafka'] as const;
export type OriginKind = (typeof ORIGIN_KINDS)[number];

export const OriginSchema = z.object({
  kind: z.enum(ORIGIN_KINDS),
  /** s3://bucket/key@etag#row, db:table:id, kafka:topic:partition:offset */
  ref: z.string().min(1).max(2048),
});
export type Origin = z.infer<typeof OriginSchema>;

export const AttributeValueSchema = z.union([z.string(), z.number(), z.boolean()]);

const ISO_WITH_ZONE =
  /^(\d{4})-(\d{2})-(\d{2})[T ](\d{2}):(\d{2})(?::(\d{2})(?:[.,](\d{1,9}))?)?(Z|z|[+-]\d{2}(?::?\d{2})?)$/;
const NUMERIC = /^[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?$/;

/**
 * The magnitudes a value may have (or be 0): what the scorer keeps in DynamoDB, whose numbers range from
 * 1e-130 to 1e126, must hold the series' sum of squared deviations too.
 */
export const VALUE_RANGE = { max: 1e50, min: 1e-100 } as const;

/** Why a (finite) value is outside {@link VALUE_RANGE}, or undefined. */
function valueRangeError(n: number): string | undefined {
  const m = Math.abs(n);
  if (m > VALUE_RANGE.max) return `value ${n} is beyond ±${VALUE_RANGE.max}, more than a series can keep`;
  if (m !== 0 && m < VALUE_RANGE.min) {
    return `value ${n} is nearer 0 than ${VALUE_RANGE.min}, less than a series can keep (0 itself is fine)`;
  }
  return undefined;
}

/** The normalised signal, as packed on the signals queue. */
export const SignalSchema = z.object({
  /**
   * A record's own id is at most 1,024 characters (`normaliseSignal`); without one, the id is the origin
   * ref, which may be longer: `s3://<bucket>/<key>@<etag>#<row>` with a key of up to S3's 1,024 bytes. The
   * scorer hashes a long id into its keys (`scoreKey`).
   */
  id: z.string().min(1).max(2048),
  name: z.string().min(1).max(256),
  value: z.number().check((ctx) => {
    const error = Number.isFinite(ctx.value) ? valueRangeError(ctx.value) : undefined;
    if (error) ctx.issues.push({ code: 'custom', message: error, input: ctx.value });
  }),
  source: z.string().min(1).max(1024),
  timestamp: z.iso.datetime({ offset: false, precision: 3 }),
  attributes: z.record(z.string(), AttributeValueSchema).optional(),
  origin: OriginSchema,
});
export type Signal = z.infer<typeof SignalSchema>;

/**
 * A packed message on the signals queue: many signals from one origin.
 * - Version 3 (what the sender writes) leaves out what the message already says, in an array per signal,
 *   without key names: `[at, name, value, timestamp, attributes?, source?, id?]`, where `at` is the rest of
 *   the signal's origin ref after the message's (`#17`), `timestamp` is the signal's, or its epoch
 *   milliseconds (what entries made from records carry: shorter, and not formatted by the producer);
 *   `source` is left out (or null) when it is the message's default `source` and `id` when it is the
 *   origin's ref; `attributes` is null when a later element is present and there are none. A signal the
 *   message's origin does not cover is a whole signal object.
 * - Version 4 wraps a version 3 message: see {@link DeflatedMessageSchema}.
 * Versions 1 (whole signals) and 2 (entries as objects) were written only before any deployment and are
 * no longer read: a version 3 message of whole signal objects says what a version 1 message said.
 * {@link readSignalMessage} reads a message body; {@link expandSignals} restores whole signals from it.
 */
export const SignalMessageSchema = z.object({
  v: z.literal(3),
  origin: z.object({ kind: z.enum(ORIGIN_KINDS), ref: z.string() }),
  source: z.string().optional(),
  signals: z.array(z.unknown()),
});
export type SignalMessage = z.infer<typeof SignalMessageSchema>;

/**
 * A version 4 message (what the sender writes when `settings.signals.deflateLevel` is above 0 and it
 * makes the message smaller): the JSON text of a version 3 message, compressed with raw DEFLATE
 * (RFC 1951) and base64-encoded in `deflated`. Its origin and signal count stay readable for whoever
 * looks at a queue or a DLQ; `count` is for them only.
 */
export const DeflatedMessageSchema = z.object({
  v: z.literal(4),
  origin: SignalMessageSchema.shape.origin,
  count: z.number().int().nonnegative(),
  deflated: z.string().min(1),
});

/**
 * The most a version 4 message may inflate to. The sender deflates messages of at most
 * `maxMessageBytes` (≤ 1 MiB, the SQS limit), so this only stops a corrupt or hostile body from taking
 * the scorer's memory.
 */
const MAX_INFLATED_BYTES = 8 * 1024 * 1024;

/** `text`, a version 3 message with `count` signals under `origin`, as a version 4 message body. */
export function deflateMessage(text: string, origin: Origin, count: number, level: number): string {
  const deflated = deflateRawSync(text, { level }).toString('base64');
  return `{"v":4,"origin":${sqsSafeJson(JSON.stringify({ kind: origin.kind, ref: origin.ref }))},"count":${count},"deflated":"${deflated}"}`;
}

/**
 * What is wrong with a body that is not a signal message, in a word that quotes nothing of it (the
 * reason may: a JSON parser's message quotes the text around the error).
 */
export type MessageFault = 'not-json' | 'not-a-batch' | 'not-inflatable' | 'inflated-not-json';

export type ReadMessage =
  | { ok: true; message: SignalMessage }
  /** `json` is the body's JSON when it parsed (else keep the body's text). */
  | { ok: false; reason: string; kind: MessageFault; json?: unknown };

/** The packed message in an SQS message body (version 3, or 4 wrapping one), or why it is not one. */
export function readSignalMessage(body: string): ReadMessage {
  let json: unknown;
  try {
    json = JSON.parse(body);
  } catch (err) {
    return { ok: false, reason: `message is not JSON: ${(err as Error).message}`, kind: 'not-json' };
  }
  let inner = json;
  if ((json as { v?: unknown } | null)?.v === 4) {
    const text = inflateMessage(json);
    if (typeof text !== 'string') return { ok: false, reason: text.error, kind: text.kind, json };
    try {
      inner = JSON.parse(text);
    } catch (err) {
      return {
        ok: false,
        reason: `message's inflated signals are not JSON: ${(err as Error).message}`,
        kind: 'inflated-not-json',
        json,
      };
    }
  }
  const message = SignalMessageSchema.safeParse(inner);
  if (!message.success) {
    return { ok: false, reason: notABatch(message.error), kind: 'not-a-batch', json: inner };
  }
  return { ok: true, message: message.data };
}

/** The JSON text a version 4 message wraps. */
function inflateMessage(json: unknown): string | { error: string; kind: MessageFault } {
  const wrapper = DeflatedMessageSchema.safeParse(json);
  if (!wrapper.success) return { error: notABatch(wrapper.error), kind: 'not-a-batch' };
  try {
    return inflateRawSync(Buffer.from(wrapper.data.deflated, 'base64'), {
      maxOutputLength: MAX_INFLATED_BYTES,
    }).toString('utf8');
  } catch (err) {
    return {
      error: `message's deflated signals do not inflate: ${(err as Error).message}`,
      kind: 'not-inflatable',
    };
  }
}

/**
 * The text of a message body for people: a version 4 message's inflated message, or the body as it is
 * (when it is not one, or does not inflate).
 */
export function readableMessageBody(body: string): string {
  if (!body.startsWith('{"v":4,')) return body;
  try {
    const text = inflateMessage(JSON.parse(body));
    return typeof text === 'string' ? text : body;
  } catch {
    return body;
  }
}

function notABatch(error: z.ZodError): string {
  return `message is not a signal batch: ${error.issues.map((i) => `${i.path.join('.')}: ${i.message}`).join('; ')}`;
}

/** The range a signal's timestamp may take: years 0001 to 9999, in epoch milliseconds. */
const MIN_MS = Date.parse('0001-01-01T00:00:00.000Z');
const MAX_MS = Date.parse('9999-12-31T23:59:59.999Z');
/** `2024-05-01T12:00:05.000Z`: already what a signal carries. */
const CANONICAL_LENGTH = 24;

/**
 * Turns a number, a numeric string, an ISO-8601 string with a zone, a Date or a bigint into whole epoch
 * milliseconds (a signal's timestamp is their {@link isoFromMs}).
 */
function toEpochMs(input: unknown): number | { error: string } {
  let ms: number;
  if (typeof input === 'string') {
    // The canonical shape (a digit first, Z last) needs no trimming; anything else is trimmed.
    const s =
      input.length === CANONICAL_LENGTH && isDigit(input.charCodeAt(0)) && input.charCodeAt(23) === 90
        ? input
        : input.trim();
    if (s === '') return { error: 'timestamp is required' };
    // The common cases first, without the general parse: epoch numbers, and timestamps already canonical
    // (a round trip through Date proves the calendar date valid).
    if (NUMERIC.test(s)) return toEpochMs(Number(s));
    if (s.length === CANONICAL_LENGTH && s.charCodeAt(23) === 90 /* Z */) {
      const t = Date.parse(s);
      if (t >= MIN_MS && t <= MAX_MS && isoFromMs(t) === s) return t;
    }
    const m = ISO_WITH_ZONE.exec(s);
    if (!m) {
      return {
        error: /^\d{4}-\d{2}-\d{2}([T ]\d{2}:\d{2}(:\d{2}(\.\d+)?)?)?$/.test(s)
          ? `timestamp "${clip(s)}" has no time zone (add Z or an offset such as +02:00)`
          : `timestamp "${clip(s)}" is neither ISO-8601 with a zone nor epoch seconds/milliseconds`,
      };
    }
    const [, y, mo, d, h, mi, sec, fraction, zone = 'Z'] = m;
    if (!calendarValid(Number(y), Number(mo), Number(d), Number(h), Number(mi), Number(sec ?? 0))) {
      return { error: `timestamp "${clip(s)}" is not a valid date and time` };
    }
    if (sec === '60') {
      return {
        error: `timestamp "${clip(s)}" is a leap second (:60), which a signal's timestamp cannot hold`,
      };
    }
    // Rebuilt in the one form Date.parse reads: T, a dot, and the offset as Z or ±hh:mm (±hh and ±hhmm
    // are ISO-8601 too).
    const offset =
      zone === 'Z' || zone === 'z'
        ? 'Z'
        : zone.length === 3
          ? `${zone}:00`
          : zone.length === 5
            ? `${zone.slice(0, 3)}:${zone.slice(3)}`
            : zone;
    ms = Date.parse(`${y}-${mo}-${d}T${h}:${mi}:${sec ?? '00'}${fraction ? `.${fraction}` : ''}${offset}`);
  } else if (typeof input === 'number') {
    if (!Number.isFinite(input)) return { error: 'timestamp must be a finite number' };
    ms = Math.abs(input) >= 1e12 ? input : input * 1000;
  } else if (input instanceof Date) {
    ms = input.getTime();
  } else if (typeof input === 'bigint') {
    return toEpochMs(Number(input));
  } else if (input === undefined || input === null) {
    return { error: 'timestamp is required' };
  } else {
    return { error: `timestamp must be a string or a number, not ${typeName(input)}` };
  }
  // NaN fails both comparisons.
  if (!(ms >= MIN_MS && ms <= MAX_MS)) {
    return { error: `timestamp ${clip(String(input))} is out of range` };
  }
  return Math.trunc(ms) + 0; // as Date does; + 0 turns -0 into 0
}

/** A packed entry's epoch-millisecond timestamp as a signal's, or as it is when out of range. */
function timestampOfEntry(input: unknown): unknown {
  return typeof input === 'number' && input >= MIN_MS && input <= MAX_MS ? isoFromMs(input) : input;
}

const DAY_MS = 86_400_000;
/** The day {@link isoFromMs} formatted last, and its `YYYY-MM-DDT`. */
let cachedDay = Number.NaN;
let cachedDayText = '';
const pad2 = (n: number) => (n < 10 ? `0${n}` : `${n}`);
const pad3 = (n: number) => (n < 10 ? `00${n}` : n < 100 ? `0${n}` : `${n}`);

/**
 * `new Date(ms).toISOString()` for epoch milliseconds within years 0001–9999, about six times faster:
 * the rows of a file mostly share their day, so its date text is kept and only the time is formatted.
 * (`toISOString` costs more than parsing a CSV row.)
 */
export function isoFromMs(input: number): string {
  const ms = Math.trunc(input); // as Date does
  const day = Math.floor(ms / DAY_MS) * DAY_MS;
  if (day !== cachedDay) {
    cachedDay = day;
    cachedDayText = new Date(day).toISOString().slice(0, 11);
  }
  let rest = ms - day;
  const h = Math.floor(rest / 3_600_000);
  rest -= h * 3_600_000;
  const m = Math.floor(rest / 60_000);
  rest -= m * 60_000;
  const sec = Math.floor(rest / 1000);
  return `${cachedDayText}${pad2(h)}:${pad2(m)}:${pad2(sec)}.${pad3(rest - sec * 1000)}Z`;
}

function isDigit(c: number): boolean {
  return c >= 48 && c <= 57;
}

function calendarValid(y: number, mo: number, d: number, h: number, mi: number, s: number): boolean {
  if (mo < 1 || mo > 12 || d < 1 || h > 23 || mi > 59 || s > 60) return false;
  const daysInMonth = new Date(Date.UTC(y, mo, 0)).getUTCDate();
  return d <= daysInMonth;
}

// Not a closure in toValue: the bundles keep function names, and a named closure costs a property
// definition on every call (it was about a tenth of the main thread's CPU when ingesting a CSV file).
function inRange(n: number): number | { error: string } {
  const error = valueRangeError(n);
  return error === undefined ? n : { error };
}

function toValue(input: unknown): number | { error: string } {
  if (typeof input === 'number') {
    return Number.isFinite(input) ? inRange(input) : { error: `value must be finite, got ${input}` };
  }
  if (typeof input === 'bigint') {
    const n = Number(input);
    return Number.isSafeInteger(n) ? n : { error: `value ${input} is too large to represent exactly` };
  }
  if (typeof input === 'string') {
    const s = input.trim();
    if (!NUMERIC.test(s)) return { error: `value must be wholly numeric, got "${clip(input)}"` };
    const n = Number(s);
    return Number.isFinite(n) ? inRange(n) : { error: `value "${clip(input)}" overflows a double` };
  }
  if (input === undefined || input === null) return { error: 'value is required' };
  return { error: `value must be a number or a numeric string, not ${typeName(input)}` };
}

function toOptionalString(
  input: unknown,
  field: string,
  max: number,
): string | undefined | { error: string } {
  if (input === undefined || input === null || input === '') return undefined;
  if (typeof input === 'string') {
    return input.length <= max ? input : { error: `${field} is longer than ${max} characters` };
  }
  if (typeof input === 'number' && Number.isFinite(input)) return String(input);
  if (typeof input === 'bigint') return input.toString();
  return { error: `${field} must be a string, not ${typeName(input)}` };
}

function toAttribute(input: unknown): string | number | boolean | { error: string } | undefined {
  if (input === undefined || input === null) return undefined;
  if (typeof input === 'string' || typeof input === 'boolean') return input;
  if (typeof input === 'number') return Number.isFinite(input) ? input : String(input);
  if (typeof input === 'bigint')
    return Number.isSafeInteger(Number(input)) ? Number(input) : input.toString();
  if (input instanceof Date) return Number.isNaN(input.getTime()) ? String(input) : input.toISOString();
  if (input instanceof Uint8Array) return Buffer.from(input).toString('base64');
  try {
    return JSON.stringify(input, (_k, v) => (typeof v === 'bigint' ? v.toString() : v));
  } catch (err) {
    // A value nested deeper than the stack allows (or circular): rejected, never thrown.
    return { error: `cannot be kept as an attribute (${(err as Error).message})` };
  }
}

const KNOWN = new Set(['id', 'name', 'value', 'source', 'timestamp', 'attributes']);

/** Where a record came from, and what to default to. */
export interface SignalContext {
  readonly origin: Origin;
  /** Used when the record has no `source`: the object key, topic or table. */
  readonly defaultSource: string;
}

export type NormaliseResult = { ok: true; signal: Signal } | { ok: false; reason: string };
export type EntryResult = { ok: true; entry: unknown[] } | { ok: false; reason: string };

/** What a valid record holds of a signal; where it came from is added by the caller. */
interface SignalFields {
  readonly name: string;
  readonly value: number;
  /** Epoch milliseconds. */
  readonly timestamp: number;
  readonly id: string | undefined;
  readonly source: string | undefined;
  readonly attributes: Record<string, string | number | boolean> | undefined;
  /** Characters of the name and the attributes, for the size bound. */
  readonly chars: number;
}

/**
 * Validates one input record and normalises it into a {@link Signal}:
 * `value` finite or a wholly numeric string; `timestamp` ISO-8601 with a zone or epoch seconds /
 * milliseconds (≥ 1e12 means ms), normalised to ISO-8601 UTC; `id` and `source` defaulted from the
 * origin; every other field kept in `attributes`. Never throws: a bad record yields a reason.
 */
export function normaliseSignal(record: unknown, ctx: SignalContext): NormaliseResult {
  const fields = readFields(record);
  if (typeof fields === 'string') return { ok: false, reason: fields };
  const { ref } = ctx.origin;
  const signal = toSignal(fields, ctx);
  const tooLarge = sizeError(
    fields.chars + ref.length + signal.id.length + signal.source.length,
    () => signal,
  );
  return tooLarge === undefined ? { ok: true, signal } : { ok: false, reason: tooLarge };
}

/**
 * {@link normaliseSignal} for a record whose origin ref is `message.ref` followed by `at` (`#17`), made
 * straight into its entry in a message of that origin whose default source is `source`: the same entry
 * {@link signalEntry} makes of the signal, without building the signal, its origin or its ref.
 */
export function normaliseEntry(record: unknown, at: string, message: Origin, source: string): EntryResult {
  const fields = readFields(record);
  if (typeof fields === 'string') return { ok: false, reason: fields };
  const refChars = message.ref.length + at.length;
  const tooLarge = sizeError(
    fields.chars + refChars + (fields.id?.length ?? refChars) + (fields.source ?? source).length,
    () =>
      toSignal(fields, { origin: { kind: message.kind, ref: `${message.ref}${at}` }, defaultSource: source }),
  );
  if (tooLarge !== undefined) return { ok: false, reason: tooLarge };
  const ownSource = fields.source !== undefined && fields.source !== source ? fields.source : null;
  const ownId = fields.id !== undefined && fields.id !== `${message.ref}${at}` ? fields.id : null;
  return {
    ok: true,
    entry: entryOf(
      at,
      fields.name,
      fields.value,
      fields.timestamp,
      fields.attributes ?? null,
      ownSource,
      ownId,
    ),
  };
}

/**
 * A version 3 entry: the trailing elements that say nothing (no own id, no own source, no attributes) left
 * out. An array literal per case: this runs once per signal.
 */
function entryOf(
  at: string,
  name: string,
  value: number,
  timestamp: string | number,
  attributes: Signal['attributes'] | null,
  ownSource: string | null,
  ownId: string | null,
): unknown[] {
  if (ownId !== null) return [at, name, value, timestamp, attributes, ownSource, ownId];
  if (ownSource !== null) return [at, name, value, timestamp, attributes, ownSource];
  if (attributes !== null) return [at, name, value, timestamp, attributes];
  return [at, name, value, timestamp];
}

function toSignal(fields: SignalFields, ctx: SignalContext): Signal {
  const id = fields.id ?? ctx.origin.ref;
  const source = fields.source ?? ctx.defaultSource;
  const { name, value, attributes } = fields;
  const timestamp = isoFromMs(fields.timestamp);
  // Two literals rather than a spread: this runs once per record.
  return attributes
    ? { id, name, value, source, timestamp, attributes, origin: ctx.origin }
    : { id, name, value, source, timestamp, origin: ctx.origin };
}

/**
 * Why a signal is too large, or undefined. Serialising every signal only to measure it would cost as
 * much as normalising it: a bound on its `chars` (every character escaped to six bytes) settles nearly
 * all of them; the rest are measured exactly.
 */
function sizeError(chars: number, signal: () => Signal): string | undefined {
  if (chars * 6 + SIGNAL_JSON_OVERHEAD <= settings.limits.maxSignalBytes) return undefined;
  const bytes = Buffer.byteLength(JSON.stringify(signal()));
  return bytes > settings.limits.maxSignalBytes
    ? `signal is ${bytes} bytes, more than the ${settings.limits.maxSignalBytes}-byte limit`
    : undefined;
}

/** Validates a record's fields: the fields of its signal, or why it is rejected. */
function readFields(record: unknown): SignalFields | string {
  if (typeof record !== 'object' || record === null || Array.isArray(record)) {
    return `record must be an object, not ${typeName(record)}`;
  }
  const r = record as Record<string, unknown>;
  const errors: string[] = [];

  let name: string | undefined;
  if (r.name === undefined || r.name === null || r.name === '') errors.push('name is required');
  else if (typeof r.name !== 'string') errors.push(`name must be a string, not ${typeName(r.name)}`);
  else if (r.name.trim() === '') errors.push('name is blank');
  else if (r.name.length > 256) errors.push(`name is longer than 256 characters (${r.name.length})`);
  else name = r.name;

  const value = toValue(r.value);
  if (typeof value !== 'number') errors.push(value.error);

  const timestamp = toEpochMs(r.timestamp);
  if (typeof timestamp !== 'number') errors.push(timestamp.error);

  const id = toOptionalString(r.id, 'id', 1024);
  if (typeof id === 'object') errors.push(id.error);
  const source = toOptionalString(r.source, 'source', 1024);
  if (typeof source === 'object') errors.push(source.error);

  if (errors.length > 0 || name === undefined || typeof value !== 'number' || typeof timestamp !== 'number') {
    return `${errors.join('; ')}${nearMisses(r)}`;
  }

  const attrs: Attributes = { values: undefined, errors: undefined, chars: 0 };
  for (const key in r) {
    if (!Object.hasOwn(r, key) || KNOWN.has(key)) continue;
    addAttribute(attrs, key, r[key]);
  }
  const nested = r.attributes;
  if (nested !== undefined && nested !== null) {
    if (typeof nested === 'object' && !Array.isArray(nested) && !(nested instanceof Date)) {
      for (const [k, v] of Object.entries(nested)) {
        if (attrs.values !== undefined && Object.hasOwn(attrs.values, k)) {
          // Keeping either value would drop the other without a word.
          attrs.errors ??= [];
          attrs.errors.push(`${clip(k)} is given twice, as a field and inside attributes`);
          continue;
        }
        addAttribute(attrs, k, v);
      }
    } else {
      addAttribute(attrs, 'attributes', nested);
    }
  }
  if (attrs.errors !== undefined) return attrs.errors.join('; ');
  return {
    name,
    value,
    timestamp,
    id: id as string | undefined,
    source: source as string | undefined,
    attributes: attrs.values,
    chars: name.length + attrs.chars,
  };
}

/** The fields every record must have (a CSV header naming none of them is not a header: parsers/csv.ts). */
export const REQUIRED_FIELDS = ['name', 'value', 'timestamp'] as const;

/**
 * For required fields the record lacks: its keys that differ from them only in case or surrounding spaces
 * (a `Name` or ` value` column), named in the reason, since each such record is otherwise rejected with
 * no hint why.
 */
function nearMisses(r: Record<string, unknown>): string {
  const found: string[] = [];
  for (const field of REQUIRED_FIELDS) {
    if (r[field] !== undefined) continue;
    for (const key in r) {
      if (key !== field && Object.hasOwn(r, key) && key.trim().toLowerCase() === field) {
        found.push(`"${clip(key)}"`);
        break;
      }
    }
  }
  return found.length > 0
    ? ` (the record has ${found.join(', ')}: field names are matched exactly, in lower case)`
    : '';
}

/** JSON bytes of a signal besides its strings: keys, punctuation, a number, a timestamp. */
const SIGNAL_JSON_OVERHEAD = 160;

/** The attributes of one record as they are gathered. */
interface Attributes {
  values: Record<string, string | number | boolean> | undefined;
  errors: string[] | undefined;
  /** Characters of keys and values so far, for the size bound. */
  chars: number;
}

function addAttribute(attrs: Attributes, key: string, input: unknown): void {
  const a = toAttribute(input);
  if (a === undefined) return;
  if (typeof a === 'object') {
    attrs.errors ??= [];
    attrs.errors.push(`${clip(key)} ${a.error}`);
    return;
  }
  attrs.values ??= {};
  if (key === '__proto__') {
    // Assigned, it would set the prototype (and a primitive would be dropped without a word).
    Object.defineProperty(attrs.values, key, {
      value: a,
      enumerable: true,
      writable: true,
      configurable: true,
    });
  } else {
    attrs.values[key] = a;
  }
  // Keys: 6 bytes of punctuation each; numbers and booleans: at most 24 characters.
  attrs.chars += key.length + 1 + (typeof a === 'string' ? a.length : 24);
}

/**
 * The signals of a packed message as whole signals (not yet validated): an entry gets its origin, id (and
 * source) back from the message. Entries of another shape (a whole signal object among them) are returned as
 * they are, for validation to judge.
 */
export function expandSignals(message: SignalMessage): unknown[] {
  const { kind, ref: base } = message.origin;
  return message.signals.map((entry) => {
    if (!Array.isArray(entry)) return entry;
    const [at, name, value, timestamp, attributes, source, id] = entry as unknown[];
    const ref = typeof at === 'string' ? `${base}${at}` : base;
    return {
      id: id ?? ref,
      name,
      value,
      source: source ?? message.source,
      timestamp: timestampOfEntry(timestamp),
      ...(attributes !== undefined && attributes !== null ? { attributes } : {}),
      origin: { kind, ref },
    };
  });
}

/**
 * One signal as a version 3 message entry (see {@link SignalMessageSchema}) under the message origin
 * `message` whose default source is `source`: an array, or the whole signal when the message's origin
 * does not cover it. Serialised with the other entries of its message, in one `JSON.stringify`.
 */
export function signalEntry(signal: Signal, message: Origin, source?: string): unknown {
  const { origin } = signal;
  if (origin.kind !== message.kind || !origin.ref.startsWith(message.ref)) return signal;
  return entryOf(
    origin.ref.slice(message.ref.length),
    signal.name,
    signal.value,
    signal.timestamp,
    signal.attributes ?? null,
    signal.source === source ? null : signal.source,
    signal.id === origin.ref ? null : signal.id,
  );
}

/** {@link signalEntry} as JSON text. */
export function encodeSignal(signal: Signal, message: Origin, source?: string): string {
  return JSON.stringify(signalEntry(signal, message, source));
}

/**
 * Validates a signal read back off the queue. A failure has the full `reason` (which may quote the value,
 * for the quarantine) and its `kind`: each failing field of the schema with the check it failed
 * (`value:custom`, `timestamp:invalid_format`), which quotes nothing of the record, for logs.
 */
export function parseSignal(
  input: unknown,
): { ok: true; signal: Signal } | { ok: false; reason: string; kind: string } {
  const result = SignalSchema.safeParse(input);
  if (result.success) return { ok: true, signal: result.data };
  const kinds = result.error.issues.map((i) => `${signalField(i.path[0])}:${i.code}`);
  return {
    ok: false,
    reason: result.error.issues.map((i) => `${i.path.join('.') || 'signal'}: ${i.message}`).join('; '),
    kind: [...new Set(kinds)].join(','),
  };
}

/** A top-level field of {@link SignalSchema}, or `signal`: never a key the record brought (an attribute's). */
function signalField(key: PropertyKey | undefined): string {
  return typeof key === 'string' && Object.hasOwn(SignalSchema.shape, key) ? key : 'signal';
}

function typeName(v: unknown): string {
  if (v === null) return 'null';
  if (Array.isArray(v)) return 'an array';
  if (v instanceof Date) return 'a date';
  return `a ${typeof v}`;
}

function clip(s: string, max = 60): string {
  return s.length > max ? `${s.slice(0, max)}…` : s;
}
