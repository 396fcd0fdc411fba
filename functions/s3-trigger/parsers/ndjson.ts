import { isUtf8 } from 'node:buffer';
import { clipRaw, firstInvalidUtf8, stripBom } from './bytes.ts';
import { eachRecord, type ParsedRecord, type ParserOptions } from './types.ts';

const LF = 10;
const CR = 13;
const SPACE = 32;
const TAB = 9;

/**
 * Bytes of an over-long line kept as its `raw` text: always its first ones (without the `\r` of a CRLF),
 * however the line was split into chunks, so a reject is the same whatever the chunking.
 */
const OVERLONG_HEAD_BYTES = 1024;

/**
 * Streams the records of an NDJSON / JSON Lines file: one JSON object per line, lines split on `\n` with
 * a trailing `\r` removed, a leading BOM ignored, blank (whitespace-only) lines skipped. `row` is the
 * 1-based physical line number, so blank lines still count.
 *
 * Every problem is confined to its line, which is rejected and parsing goes on: bytes that are not UTF-8,
 * text that is not JSON (with `JSON.parse`'s reason), JSON that is not an object, or a line longer than
 * `opts.maxRecordBytes` — whose bytes are dropped as they arrive, up to the next newline, so memory never
 * holds more than about `maxRecordBytes` of one line.
 *
 * With `opts.positions`, `end` is the byte offset just past the record's newline (BOM included).
 */
export function parseNdjson(
  source: AsyncIterable<Buffer>,
  opts: ParserOptions,
): AsyncGenerator<ParsedRecord> {
  return eachRecord(parseNdjsonBatches(source, opts));
}

/** {@link parseNdjson}'s records, as many at a time as each chunk completes (never an empty batch). */
export async function* parseNdjsonBatches(
  source: AsyncIterable<Buffer>,
  opts: ParserOptions,
): AsyncGenerator<ParsedRecord[]> {
  const max = opts.maxRecordBytes;
  let line = 0;
  // The start of a line that continues into the next chunk.
  let pending: Buffer[] = [];
  let pendingBytes = 0;
  // Set while skipping the rest of a line already known to be too long; holds its first bytes.
  let overlongHead: Buffer | undefined;
  let out: ParsedRecord[] = [];
  // Stream offset of the current chunk's first byte, a stripped BOM included.
  let chunkStart = 0;
  const placed = (rec: ParsedRecord, end: number): ParsedRecord => (opts.positions ? { ...rec, end } : rec);

  for await (const chunk of stripBom(source, (bom) => {
    chunkStart += bom;
  })) {
    let pos = 0;
    const n = chunk.length;
    while (pos < n) {
      const nl = chunk.indexOf(LF, pos);
      const end = nl === -1 ? n : nl;
      if (overlongHead !== undefined) {
        // Dropping bytes until the end of the line, but keeping its first ones whatever the chunking.
        if (overlongHead.length < HEAD_KEPT) overlongHead = headOf([overlongHead], chunk.subarray(pos, end));
      } else if (nl === -1 || pendingBytes > 0) {
        const piece = chunk.subarray(pos, end);
        // max + 1: the line may still end in a `\r`, which does not count.
        if (pendingBytes + piece.length > max + 1) {
          overlongHead = headOf(pending, piece);
          pending = [];
          pendingBytes = 0;
        } else if (nl === -1) {
          pending.push(piece);
          pendingBytes += piece.length;
        } else {
          pending.push(piece);
          const whole = Buffer.concat(pending, pendingBytes + piece.length);
          pending = [];
          pendingBytes = 0;
          const rec = parseLine(whole, line + 1, max);
          if (rec !== undefined) out.push(placed(rec, chunkStart + nl + 1));
        }
      } else {
        const rec = parseLine(chunk.subarray(pos, end), line + 1, max);
        if (rec !== undefined) out.push(placed(rec, chunkStart + nl + 1));
      }
      if (nl === -1) break;
      line++;
      if (overlongHead !== undefined) {
        out.push(placed(tooLongFromHead(line, max, overlongHead), chunkStart + nl + 1));
        overlongHead = undefined;
      }
      pos = nl + 1;
    }
    chunkStart += n;
    if (out.length > 0) {
      yield out;
      out = [];
    }
  }
  // The last line, when the file does not end with a newline.
  if (overlongHead !== undefined) {
    yield [placed(tooLongFromHead(line + 1, max, overlongHead), chunkStart)];
  } else if (pendingBytes > 0) {
    const rec = parseLine(Buffer.concat(pending, pendingBytes), line + 1, max);
    if (rec !== undefined) yield [placed(rec, chunkStart)];
  }
}

/**
 * One byte more than the raw text keeps: when the whole line fits, its `\r` is then seen and dropped
 * (as {@link parseLine} drops it); when it does not, that byte is clipped off anyway.
 */
const HEAD_KEPT = OVERLONG_HEAD_BYTES + 1;

function headOf(pending: Buffer[], piece: Buffer): Buffer {
  const head = Buffer.concat([...pending, piece.subarray(0, HEAD_KEPT)]);
  return Buffer.from(head.subarray(0, HEAD_KEPT));
}

/** The reject of an over-long line from the head kept while its bytes were dropped. */
function tooLongFromHead(row: number, max: number, head: Buffer): ParsedRecord {
  const end = head.length > 0 && head[head.length - 1] === CR ? head.length - 1 : head.length;
  return tooLong(row, max, head.subarray(0, end));
}

/** `line`: the line without its `\r`, or at least its first {@link OVERLONG_HEAD_BYTES} bytes. */
function tooLong(row: number, max: number, line: Buffer): ParsedRecord {
  const head = line.subarray(0, OVERLONG_HEAD_BYTES);
  return { row, error: `line is longer than ${max} bytes`, raw: `${head.toString('utf8')}…` };
}

/** One line's record, or undefined for a blank line. */
function parseLine(buf: Buffer, row: number, max: number): ParsedRecord | undefined {
  let len = buf.length;
  if (len > 0 && buf[len - 1] === CR) len--;
  let i = 0;
  while (i < len) {
    const b = buf[i];
    if (b !== SPACE && b !== TAB && b !== CR) break;
    i++;
  }
  if (i === len) return undefined;
  if (len > max) return tooLong(row, max, buf.subarray(0, len));
  const bytes = len === buf.length ? buf : buf.subarray(0, len);
  if (!isUtf8(bytes)) {
    return {
      row,
      error: `line is not valid UTF-8 (byte ${firstInvalidUtf8(bytes)} of the line)`,
      raw: clipRaw(bytes.toString('utf8')),
    };
  }
  const text = bytes.toString('utf8');
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (err) {
    return { row, error: `invalid JSON: ${(err as Error).message}`, raw: clipRaw(text) };
  }
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    return { row, error: 'record must be an object', raw: clipRaw(text) };
  }
  return { row, data: value as Record<string, unknown> };
}
