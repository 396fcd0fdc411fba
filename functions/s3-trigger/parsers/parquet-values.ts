import { isUtf8 } from 'node:buffer';
import type { ColumnChunk, FileMetaData, ParquetParsers, SchemaElement, SchemaTree } from 'hyparquet';
// The tests hyparquet assembles nested columns by, so that the walk below follows the shapes it builds.
// hyparquet's package exports its `src/*.js` modules; these are not re-exported from the index.
import { isListLike, isMapLike } from 'hyparquet/src/schema.js';

/**
 * What Parquet values become (the README lists it by type). hyparquet decodes the pages in the decoder
 * process; for the types it would convert lossily or wrongly it is given a copy of the file's metadata
 * without their annotations ({@link decoderMetadata}), so that it passes their stored values on, and the
 * converters here give them their meaning, exactly:
 *
 * - DECIMAL: the exact decimal, as a number when the nearest double prints as that decimal (`1.001`, never
 *   `1.0010000000000001`), else as its shortest decimal string (what a CSV file holding it gives);
 * - timestamps (any unit, INT96 too) and dates: a `Date` when one can hold the instant (floor to the
 *   millisecond), else the row is rejected with the reason (a `Date` holds ±8.64e15 ms, years −271821 to
 *   275760); a timestamp without a zone (`isAdjustedToUTC: false`) is read as UTC;
 * - STRING, ENUM and JSON: the text (JSON is kept as written, not parsed); bytes that are not UTF-8 reject
 *   the row;
 * - BYTE_ARRAY and FIXED_LEN_BYTE_ARRAY without an annotation: text when the value is valid UTF-8 without
 *   control characters but tab, line feed and carriage return (strings that older writers, Impala, left
 *   unannotated), else its bytes in base64, value by value; BSON: base64 always;
 * - INTERVAL: `{ months, days, milliseconds }`;
 * - INT64 and UINT64: a number when it is a safe integer, else its decimal string;
 * - lists, maps and structs: arrays and objects of the same conversions (an attribute keeps them as JSON).
 */

/** A value that cannot be kept as it is: the row holding it is rejected with this reason. */
export class ParquetValueError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'ParquetValueError';
  }
}

/** Turns a decoded value into what a record holds; throws {@link ParquetValueError} to reject its row. */
export type ValueConverter = (value: unknown) => unknown;

/** Converted types whose stored values the decoder is to pass on as they are. */
const RAW_CONVERTED = new Set([
  'DECIMAL',
  'DATE',
  'TIMESTAMP_MILLIS',
  'TIMESTAMP_MICROS',
  'JSON',
  'BSON',
  'INTERVAL',
]);
/** Logical types likewise. */
const RAW_LOGICAL = new Set(['DECIMAL', 'DATE', 'TIMESTAMP', 'JSON', 'BSON', 'INTERVAL']);

/** The decoder's string parser: the text when the bytes are UTF-8, else the bytes, for the row to be rejected. */
export const DECODER_PARSERS: Partial<ParquetParsers> = {
  stringFromBytes: (bytes) => (bytes && isUtf8(bytes) ? Buffer.from(bytes).toString('utf8') : bytes),
};

/**
 * The metadata the decoder is given: the file's, with the annotations of the types converted here removed
 * (hyparquet would turn DECIMAL into an inexact double, JSON into parsed objects, and fail on BSON and
 * INTERVAL), and INT96 columns read as the 12 bytes they are (hyparquet folds them into one bigint, and a
 * negative time of day loses the day). The file's own metadata is left as it is.
 */
export function decoderMetadata(metadata: FileMetaData): FileMetaData {
  const int96 = new Set<string>();
  const schema = metadata.schema.map((element) => physical(element));
  const tree = (elements: SchemaElement[], path: string[], at: { i: number }) => {
    const element = elements[at.i++];
    if (element === undefined) return;
    const here = at.i === 1 ? [] : [...path, element.name];
    if (element.type === 'INT96') int96.add(here.join('.'));
    for (let c = 0; c < (element.num_children ?? 0); c++) tree(elements, here, at);
  };
  tree(metadata.schema, [], { i: 0 });
  if (int96.size === 0) return { ...metadata, schema };
  const asBytes = (chunk: ColumnChunk): ColumnChunk =>
    chunk.meta_data && int96.has(chunk.meta_data.path_in_schema.join('.'))
      ? { ...chunk, meta_data: { ...chunk.meta_data, type: 'FIXED_LEN_BYTE_ARRAY' } }
      : chunk;
  return {
    ...metadata,
    schema,
    row_groups: metadata.row_groups.map((group) => ({ ...group, columns: group.columns.map(asBytes) })),
  };
}

function physical(element: SchemaElement): SchemaElement {
  if (element.type === 'INT96') return { ...element, type: 'FIXED_LEN_BYTE_ARRAY', type_length: 12 };
  const ct = element.converted_type !== undefined && RAW_CONVERTED.has(element.converted_type);
  const lt = element.logical_type !== undefined && RAW_LOGICAL.has(element.logical_type.type);
  if (!ct && !lt) return element;
  const { converted_type, logical_type, ...rest } = element;
  return {
    ...rest,
    ...(ct || converted_type === undefined ? {} : { converted_type }),
    ...(lt || logical_type === undefined ? {} : { logical_type }),
  };
}

/** The converter of one top-level column (from the file's own schema), or undefined when values pass as they are. */
export function columnConverter(node: SchemaTree): ValueConverter | undefined {
  return nodeConverter(node, false);
}

/** `repeatedRead`: the node's repetition is already taken care of (an element of a list). */
function nodeConverter(node: SchemaTree, repeatedRead: boolean): ValueConverter | undefined {
  const { element } = node;
  if (element.repetition_type === 'REPEATED' && !repeatedRead) {
    // A repeated field outside a LIST annotation (the legacy form): an array of its values.
    const each = nodeConverter(node, true);
    return each && ((v) => (Array.isArray(v) ? v.map(each) : v));
  }
  if (element.logical_type?.type === 'VARIANT') return bigintsToNumbers;
  if (isListLike(node)) {
    const repeated = node.children[0] as SchemaTree;
    const item = repeated.children.length === 1 ? (repeated.children[0] as SchemaTree) : repeated;
    const each = nodeConverter(item, item === repeated);
    return each && ((v) => (Array.isArray(v) ? v.map(each) : v));
  }
  if (isMapLike(node)) {
    // hyparquet takes the key and value columns by position.
    const valueNode = node.children[0]?.children[1];
    const each = valueNode && nodeConverter(valueNode, false);
    if (each === undefined) return undefined;
    return (v) => {
      if (typeof v !== 'object' || v === null) return v;
      const out: Record<string, unknown> = {};
      for (const [k, x] of Object.entries(v)) setOwn(out, k, each(x));
      return out;
    };
  }
  if (node.children.length > 0) {
    const fields: Array<[string, ValueConverter]> = [];
    for (const child of node.children) {
      const each = nodeConverter(child, false);
      if (each) fields.push([child.element.name, each]);
    }
    if (fields.length === 0) return undefined;
    return (v) => {
      if (typeof v !== 'object' || v === null) return v;
      const out: Record<string, unknown> = { ...(v as Record<string, unknown>) };
      for (const [name, each] of fields) setOwn(out, name, each((v as Record<string, unknown>)[name]));
      return out;
    };
  }
  return leafConverter(element, node.path.join('.'));
}

const nullable =
  (f: (v: NonNullable<unknown>) => unknown): ValueConverter =>
  (v) =>
    v === null || v === undefined ? v : f(v);

function leafConverter(element: SchemaElement, path: string): ValueConverter | undefined {
  const { type, converted_type: ct, logical_type: lt } = element;
  const column = `column "${path}"`;
  if (ct === 'DECIMAL' || lt?.type === 'DECIMAL') {
    const scale = element.scale ?? (lt?.type === 'DECIMAL' ? lt.scale : 0) ?? 0;
    return nullable((v) => decimalValue(unscaled(v, column), scale));
  }
  if (type === 'INT96') return nullable((v) => int96Date(v, column));
  if (ct === 'DATE' || lt?.type === 'DATE') {
    return nullable((v) => dateOf(BigInt(v as number) * 86_400_000n, `${column}: date ${String(v)} (days)`));
  }
  const unit =
    lt?.type === 'TIMESTAMP'
      ? lt.unit
      : ct === 'TIMESTAMP_MILLIS'
        ? 'MILLIS'
        : ct === 'TIMESTAMP_MICROS'
          ? 'MICROS'
          : undefined;
  if (unit !== undefined) {
    const per = unit === 'MILLIS' ? 1n : unit === 'MICROS' ? 1_000n : 1_000_000n;
    const what = unit.toLowerCase();
    return nullable((v) => {
      const n = typeof v === 'bigint' ? v : BigInt(v as number);
      return dateOf(floorDiv(n, per), `${column}: timestamp ${n} (${what})`);
    });
  }
  if (
    ct === 'UTF8' ||
    ct === 'ENUM' ||
    ct === 'JSON' ||
    lt?.type === 'STRING' ||
    lt?.type === 'ENUM' ||
    lt?.type === 'JSON'
  ) {
    return nullable((v) => {
      if (typeof v === 'string') return v;
      if (v instanceof Uint8Array && isUtf8(v))
        return Buffer.from(v.buffer, v.byteOffset, v.byteLength).toString('utf8');
      throw new ParquetValueError(`${column}: its ${ct ?? lt?.type} value is not valid UTF-8`);
    });
  }
  if (ct === 'BSON' || lt?.type === 'BSON') return nullable((v) => (v instanceof Uint8Array ? base64(v) : v));
  if (ct === 'INTERVAL' || lt?.type === 'INTERVAL') return nullable((v) => intervalOf(v, column));
  if (lt?.type === 'UUID' || lt?.type === 'FLOAT16' || lt?.type === 'GEOMETRY' || lt?.type === 'GEOGRAPHY') {
    return bigintsToNumbers;
  }
  if (type === 'BYTE_ARRAY' || type === 'FIXED_LEN_BYTE_ARRAY') {
    return nullable((v) => (v instanceof Uint8Array ? textOrBase64(v) : v));
  }
  if (type === 'INT64') return bigintsToNumbers;
  return undefined;
}

function base64(bytes: Uint8Array): string {
  return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString('base64');
}

/**
 * Unannotated bytes: their text when they are UTF-8 without a control character other than tab, line feed
 * and carriage return (text that a writer left unannotated), else base64 (binary data).
 */
export function textOrBase64(bytes: Uint8Array): string {
  const buf = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  for (const b of buf) {
    if ((b < 0x20 && b !== 0x09 && b !== 0x0a && b !== 0x0d) || b === 0x7f) return buf.toString('base64');
  }
  return isUtf8(buf) ? buf.toString('utf8') : buf.toString('base64');
}

/** A DECIMAL's unscaled value from what it is stored as: INT32, INT64, or big-endian two's complement bytes. */
function unscaled(v: unknown, column: string): bigint {
  if (typeof v === 'bigint') return v;
  if (typeof v === 'number' && Number.isInteger(v)) return BigInt(v);
  if (v instanceof Uint8Array) {
    if (v.length === 0) return 0n;
    let n = 0n;
    for (const b of v) n = (n << 8n) | BigInt(b);
    return (v[0] as number) >= 0x80 ? n - (1n << BigInt(v.length * 8)) : n;
  }
  throw new ParquetValueError(`${column}: ${String(v)} is not a stored decimal`);
}

/** `unscaled × 10^-scale` exactly, in its shortest form: a number when that prints as it, else a string. */
export function decimalValue(value: bigint, scale: number): number | string {
  const text = decimalText(value, scale);
  const n = Number(text);
  return plainDecimal(String(n)) === text ? n : text;
}

/** `unscaled × 10^-scale` as a plain decimal: no exponent, no trailing zeros after the point. */
function decimalText(value: bigint, scale: number): string {
  const negative = value < 0n;
  let digits = (negative ? -value : value).toString();
  let text: string;
  if (scale <= 0) {
    text = value === 0n ? '0' : digits + '0'.repeat(-scale);
  } else {
    digits = digits.padStart(scale + 1, '0');
    const whole = digits.slice(0, -scale);
    const fraction = digits.slice(-scale).replace(/0+$/, '');
    text = fraction ? `${whole}.${fraction}` : whole;
  }
  return negative && text !== '0' ? `-${text}` : text;
}

/** A number's text (`1e-7`, `1.5e+21`, `-0`) as a plain decimal (`0.0000001`, `1500000000000000000000`, `0`). */
function plainDecimal(s: string): string {
  const m = /^(-?)(\d+)(?:\.(\d+))?(?:e([+-]\d+))?$/.exec(s);
  if (!m) return s;
  const [, sign = '', int = '', frac = '', exp = '0'] = m;
  const digits = int + frac;
  const point = int.length + Number(exp);
  let text: string;
  if (point <= 0) text = `0.${'0'.repeat(-point)}${digits}`;
  else if (point >= digits.length) text = digits + '0'.repeat(point - digits.length);
  else text = `${digits.slice(0, point)}.${digits.slice(point)}`;
  text = text.replace(/^0+(?=\d)/, '');
  if (text.includes('.')) text = text.replace(/\.?0+$/, '');
  return sign && text !== '0' ? `-${text}` : text;
}

/** The most milliseconds from the epoch a `Date` holds, either way (ECMAScript: 100,000,000 days). */
const MAX_DATE_MS = 8_640_000_000_000_000n;

function dateOf(ms: bigint, what: string): Date {
  if (ms > MAX_DATE_MS || ms < -MAX_DATE_MS) {
    throw new ParquetValueError(
      `${what} is outside the range of dates (years -271821 to 275760; ±8.64e15 ms from 1970)`,
    );
  }
  return new Date(Number(ms));
}

function floorDiv(n: bigint, d: bigint): bigint {
  const q = n / d;
  return n % d !== 0n && n < 0n ? q - 1n : q;
}

const JULIAN_DAY_OF_EPOCH = 2_440_588n;
const NANOS_PER_DAY = 86_400_000_000_000n;

/** INT96 (Impala, Spark): nanoseconds of the day (int64) then the Julian day (int32), little-endian. */
function int96Date(v: unknown, column: string): Date {
  if (!(v instanceof Uint8Array) || v.length !== 12) {
    throw new ParquetValueError(`${column}: an INT96 value is not 12 bytes`);
  }
  const view = new DataView(v.buffer, v.byteOffset, 12);
  const nanos = view.getBigInt64(0, true);
  const day = BigInt(view.getInt32(8, true));
  const what = `${column}: INT96 timestamp (Julian day ${day}, ${nanos} ns)`;
  if (nanos < 0n || nanos >= NANOS_PER_DAY) {
    throw new ParquetValueError(`${what} has a time of day outside one day, so it names no instant`);
  }
  return dateOf((day - JULIAN_DAY_OF_EPOCH) * 86_400_000n + nanos / 1_000_000n, what);
}

function intervalOf(v: unknown, column: string): unknown {
  if (!(v instanceof Uint8Array) || v.length !== 12) {
    throw new ParquetValueError(`${column}: an INTERVAL value is not 12 bytes`);
  }
  const view = new DataView(v.buffer, v.byteOffset, 12);
  return {
    months: view.getUint32(0, true),
    days: view.getUint32(4, true),
    milliseconds: view.getUint32(8, true),
  };
}

const MIN_SAFE = BigInt(Number.MIN_SAFE_INTEGER);
const MAX_SAFE = BigInt(Number.MAX_SAFE_INTEGER);

/** `obj[key] = value`, except that a key named `__proto__` becomes an own property too. */
export function setOwn(obj: Record<string, unknown>, key: string, value: unknown): void {
  if (key === '__proto__') {
    Object.defineProperty(obj, key, { value, enumerable: true, writable: true, configurable: true });
  } else {
    obj[key] = value;
  }
}

/** Makes a decoded value safe to pass on: bigints become numbers (or strings past 2^53), recursively. */
export function bigintsToNumbers(value: unknown): unknown {
  if (typeof value === 'bigint') {
    return value >= MIN_SAFE && value <= MAX_SAFE ? Number(value) : value.toString();
  }
  if (typeof value !== 'object' || value === null) return value;
  if (Array.isArray(value)) {
    let out: unknown[] | undefined;
    for (let i = 0; i < value.length; i++) {
      const v = value[i];
      const c = bigintsToNumbers(v);
      if (c !== v) {
        out ??= value.slice();
        out[i] = c;
      }
    }
    return out ?? value;
  }
  const proto = Object.getPrototypeOf(value);
  if (proto !== Object.prototype && proto !== null) return value; // Date, Uint8Array, ...
  let out: Record<string, unknown> | undefined;
  for (const [k, v] of Object.entries(value)) {
    const c = bigintsToNumbers(v);
    if (c !== v) {
      out ??= { ...(value as Record<string, unknown>) };
      setOwn(out, k, c);
    }
  }
  return out ?? value;
}
