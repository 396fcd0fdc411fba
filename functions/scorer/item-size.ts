/**
 * DynamoDB item sizes as AWS computes them for capacity ("DynamoDB item sizes and formats",
 * docs.aws.amazon.com/amazondynamodb/latest/developerguide/CapacityUnitCalculations.html): the UTF-8
 * bytes of each attribute name plus its value's size — a string's UTF-8 bytes, a binary's raw bytes, a
 * number about 1 byte per two significant digits plus 1, a boolean or null 1 byte, a list or map 3 bytes
 * plus 1 byte per element plus its elements. A write unit covers 1 KB, a strongly consistent read unit 4 KB.
 *
 * The scorer keeps its transactions under DynamoDB's 4 MB with it; the benchmark bills the calls with it.
 */

/** Bytes of a number, from its shortest decimal form. */
export function numberSize(n: number | string): number {
  const text = String(n).toLowerCase();
  const mantissa = text.replace(/^-/, '').split('e')[0] ?? '';
  const digits = mantissa.replace('.', '').replace(/^0+/, '').replace(/0+$/, '');
  return Math.ceil(Math.max(1, digits.length) / 2) + 1;
}

/** Size of a value as the document client writes it (string, number, boolean, null, binary, list, map, set). */
export function valueSize(v: unknown): number {
  if (v === null || v === undefined || typeof v === 'boolean') return 1;
  if (typeof v === 'string') return Buffer.byteLength(v);
  if (typeof v === 'number' || typeof v === 'bigint') return numberSize(String(v));
  if (v instanceof Uint8Array) return v.byteLength;
  if (v instanceof Set) {
    let n = 0;
    for (const e of v) n += valueSize(e);
    return n;
  }
  if (Array.isArray(v)) return v.reduce((n: number, e) => n + 1 + valueSize(e), 3);
  if (typeof v === 'object') {
    let n = 3;
    for (const [k, e] of Object.entries(v)) {
      if (e !== undefined) n += 1 + Buffer.byteLength(k) + valueSize(e);
    }
    return n;
  }
  return 0;
}

/** Size of an item in the document client's shape. */
export function itemSize(item: Record<string, unknown>): number {
  let n = 0;
  for (const [k, v] of Object.entries(item)) {
    if (v !== undefined) n += Buffer.byteLength(k) + valueSize(v);
  }
  return n;
}

/** An attribute value on the wire (`{"S": "…"}`, `{"N": "…"}`, …). */
export type WireValue = Record<string, unknown>;

/** Size of a value in DynamoDB's wire format (what the benchmark's proxy sees). */
export function wireValueSize(v: WireValue): number {
  if ('S' in v) return Buffer.byteLength(String(v.S));
  if ('N' in v) return numberSize(String(v.N));
  if ('B' in v) return Buffer.from(String(v.B), 'base64').byteLength;
  if ('BOOL' in v || 'NULL' in v) return 1;
  if ('SS' in v) return (v.SS as string[]).reduce((n, s) => n + Buffer.byteLength(s), 0);
  if ('NS' in v) return (v.NS as string[]).reduce((n, s) => n + numberSize(s), 0);
  if ('BS' in v) return (v.BS as string[]).reduce((n, s) => n + Buffer.from(s, 'base64').byteLength, 0);
  if ('L' in v) return (v.L as WireValue[]).reduce((n, e) => n + 1 + wireValueSize(e), 3);
  if ('M' in v) {
    return Object.entries(v.M as Record<string, WireValue>).reduce(
      (n, [k, e]) => n + 1 + Buffer.byteLength(k) + wireValueSize(e),
      3,
    );
  }
  return 0;
}

export function wireItemSize(item: Record<string, WireValue>): number {
  let n = 0;
  for (const [k, v] of Object.entries(item)) n += Buffer.byteLength(k) + wireValueSize(v);
  return n;
}

/** Write units of one write of an item this size (1 KB each, at least 1); a transaction bills twice. */
export function writeUnits(bytes: number): number {
  return Math.max(1, Math.ceil(bytes / 1024));
}

/** Read units of one strongly consistent read of an item this size (4 KB each, at least 1). */
export function readUnits(bytes: number): number {
  return Math.max(1, Math.ceil(bytes / 4096));
}
