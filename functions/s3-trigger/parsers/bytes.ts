import { isUtf8 } from 'node:buffer';
import { firstInvalidUtf8 } from '#shared/utf8.ts';

export { firstInvalidUtf8 };

/**
 * Byte-level helpers shared by the text parsers: chunk slicing, BOM stripping, streaming UTF-8
 * validation, and clipping of raw text kept with rejected records.
 */

/** Largest piece fed to a parser at once, so a huge upstream chunk cannot make one batch huge. */
export const MAX_PIECE_BYTES = 64 * 1024;

/** Raw text kept with a rejected record is clipped to this many characters. */
export const MAX_RAW_CHARS = 8 * 1024;

const UTF8_BOM_0 = 0xef;
const UTF8_BOM_1 = 0xbb;
const UTF8_BOM_2 = 0xbf;

/** `text`, cut to `max` characters with an ellipsis when longer. */
export function clipRaw(text: string, max = MAX_RAW_CHARS): string {
  return text.length > max ? `${text.slice(0, max)}…` : text;
}

/**
 * Why a file is not UTF-8, in words, from the first bad byte's offset and value (when known): a file
 * starting with FF or FE is most likely UTF-16 (its byte-order mark); other bytes, a legacy 8-bit encoding.
 */
export function notUtf8Reason(what: string, bad: number, byte: number | undefined): string {
  if (byte === undefined) return `${what} is not valid UTF-8`;
  if (bad === 0 && (byte === 0xff || byte === 0xfe)) {
    return `${what} is not UTF-8: it starts with the byte ${hexByte(byte)}, as UTF-16 text with a byte-order mark does: save it as UTF-8`;
  }
  return `${what} is not valid UTF-8 (byte ${hexByte(byte)}; text saved as Latin-1 or Windows-1252 has such bytes: save it as UTF-8)`;
}

function hexByte(b: number): string {
  return b.toString(16).toUpperCase().padStart(2, '0');
}

/** A Buffer view of `chunk` (no copy). */
export function asBuffer(chunk: Uint8Array): Buffer {
  return Buffer.isBuffer(chunk) ? chunk : Buffer.from(chunk.buffer, chunk.byteOffset, chunk.byteLength);
}

/** Yields `chunk` in views of at most `max` bytes (no copy). */
export function* pieces(chunk: Uint8Array, max = MAX_PIECE_BYTES): Generator<Buffer> {
  const buf = asBuffer(chunk);
  if (buf.length <= max) {
    if (buf.length > 0) yield buf;
    return;
  }
  for (let start = 0; start < buf.length; start += max) yield buf.subarray(start, start + max);
}

/**
 * Drops a leading UTF-8 byte order mark, even when it is split across chunks, and re-chunks the stream
 * into pieces of at most {@link MAX_PIECE_BYTES}. `onBom` is called (before the first byte is yielded)
 * when a BOM was removed, so callers can keep byte offsets relative to the original stream.
 */
export async function* stripBom(
  source: AsyncIterable<Uint8Array>,
  onBom?: (bytes: number) => void,
): AsyncGenerator<Buffer> {
  let head: Buffer | undefined = Buffer.alloc(0);
  for await (const chunk of source) {
    let buf = asBuffer(chunk);
    if (head !== undefined) {
      head = head.length === 0 ? buf : Buffer.concat([head, buf]);
      if (head.length < 3 && isBomPrefix(head)) continue;
      buf = head;
      head = undefined;
      if (buf[0] === UTF8_BOM_0 && buf[1] === UTF8_BOM_1 && buf[2] === UTF8_BOM_2) {
        onBom?.(3);
        buf = buf.subarray(3);
      }
    }
    yield* pieces(buf);
  }
  // A stream shorter than a BOM that looked like the start of one.
  if (head !== undefined && head.length > 0) yield head;
}

function isBomPrefix(b: Buffer): boolean {
  return (b.length < 1 || b[0] === UTF8_BOM_0) && (b.length < 2 || b[1] === UTF8_BOM_1);
}

/** Length of the UTF-8 sequence a lead byte announces (1 for ASCII and for bytes that cannot lead). */
function sequenceLength(b: number): number {
  if (b >= 0xc2 && b <= 0xdf) return 2;
  if (b >= 0xe0 && b <= 0xef) return 3;
  if (b >= 0xf0 && b <= 0xf4) return 4;
  return 1;
}

/** Start of a multi-byte sequence cut off by the end of `buf`, or `buf.length` when none is. */
function incompleteTailStart(buf: Buffer): number {
  const n = buf.length;
  for (let i = n - 1; i >= 0 && i >= n - 3; i--) {
    const b = buf[i] as number;
    if (b < 0x80) return n;
    if (b >= 0xc0) return i + sequenceLength(b) > n ? i : n;
    // a continuation byte: keep looking back for its lead byte
  }
  return n;
}

/**
 * Validates a byte stream as UTF-8 chunk by chunk, with multi-byte characters split across chunk
 * boundaries handled. Uses the native `isUtf8` on each chunk; the byte-by-byte scan only runs to
 * locate an error.
 */
export class Utf8StreamValidator {
  /** Stream offset of the next byte pushed. */
  #offset: number;
  /** Leading bytes of a character the previous chunk ended in the middle of. */
  #carry: Buffer | undefined;
  #carryOffset = 0;

  constructor(startOffset = 0) {
    this.#offset = startOffset;
  }

  /** The value of the invalid byte found (its offset is what `push` or `end` returned). */
  badByte: number | undefined;

  /**
   * Bytes at the end of what was pushed so far that are not known to be UTF-8 yet: the start of a character
   * the last chunk ended inside of (its next chunk says whether it is valid).
   */
  get pending(): number {
    return this.#carry?.length ?? 0;
  }

  /** Checks the next chunk; returns the stream offset of the first invalid byte, or -1. */
  push(chunk: Buffer): number {
    const base = this.#offset;
    this.#offset += chunk.length;
    let start = 0;
    if (this.#carry !== undefined) {
      const carry = this.#carry;
      const want = sequenceLength(carry[0] as number) - carry.length;
      const take = Math.min(want, chunk.length);
      for (let k = 0; k < take; k++) {
        const c = chunk[k] as number;
        if (c < 0x80 || c > 0xbf) return this.#bad(carry[0], this.#carryOffset);
      }
      const joined = Buffer.concat([carry, chunk.subarray(0, take)]);
      if (take < want) {
        this.#carry = joined;
        return -1;
      }
      this.#carry = undefined;
      if (!isUtf8(joined)) return this.#bad(carry[0], this.#carryOffset);
      start = take;
    }
    const tail = incompleteTailStart(chunk);
    const end = Math.max(start, tail);
    if (end > start) {
      const body = chunk.subarray(start, end);
      if (!isUtf8(body)) {
        const at = firstInvalidUtf8(body);
        return this.#bad(body[at], base + start + at);
      }
    }
    if (end < chunk.length) {
      this.#carry = Buffer.from(chunk.subarray(end));
      this.#carryOffset = base + end;
    }
    return -1;
  }

  /** At the end of the stream: the offset of a character left incomplete, or -1. */
  end(): number {
    return this.#carry !== undefined ? this.#bad(this.#carry[0], this.#carryOffset) : -1;
  }

  #bad(byte: number | undefined, offset: number): number {
    this.badByte = byte;
    return offset;
  }
}
