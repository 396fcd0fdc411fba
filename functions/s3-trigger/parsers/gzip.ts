import type { Transform } from 'node:stream';
import { crc32, createInflateRaw, inflateRawSync, type Zlib } from 'node:zlib';
import { InflationLimitError, MalformedFileError, PulseError } from '#shared/errors.ts';
import { settings } from '#shared/settings.ts';
import { asBuffer } from './bytes.ts';

import type { InflationLimits } from './types.ts';

export type { InflationLimits };

/** Compressed bytes fed to zlib at once: keeps the inflater's writes short (each is a thread-pool round trip). */
const FEED_BYTES = 16 * 1024;

/** Bytes after the last gzip member (or zstd frame) that are neither another one nor zero padding. */
export interface TrailingData {
  /** What the stream is, when not gzip. */
  readonly coding?: 'zstd';
  /** Compressed-stream offset where they start. */
  readonly byteOffset: number;
  readonly bytes: number;
  /** Their first bytes, in hex (at most 32 bytes). */
  readonly head: string;
}

/** The bytes of a trailing-data notice's `head`. */
const TRAILING_HEAD_BYTES = 32;

/**
 * Inflates a gzip stream (several concatenated members too), with backpressure: nothing is inflated
 * faster than the consumer reads it.
 *
 * Members are read one by one (header, raw deflate data, then the CRC-32 and length trailer, checked), so
 * that every inflated byte is passed on before any error, and so that what follows the last member is
 * known for what it is: zero bytes (padding) are allowed; anything else that does not start a member is
 * {@link TrailingData}, given to `onTrailingData` once the stream ends (without it, a
 * {@link MalformedFileError} after every inflated byte).
 *
 * It stops with {@link InflationLimitError} as soon as the output passes
 * `max(maxInflationRatio × compressedSize, minInflatedBytesAllowed)` — a gzip bomb is never inflated
 * whole. When `compressedSize` is unknown, the compressed bytes read so far stand in for it.
 * Input that does not start with the gzip magic bytes, or is corrupt or truncated, throws
 * {@link MalformedFileError} (`byteOffset`: in the compressed stream, where the member, header or trailer
 * at fault starts, or for corrupt deflate data the bytes zlib had consumed without error, to within
 * 16 KiB). Errors of `source` itself pass through unchanged.
 */
export async function* gunzipBounded(
  source: AsyncIterable<Buffer>,
  compressedSize: number | undefined,
  limits: InflationLimits = settings.limits,
  onTrailingData?: (trailing: TrailingData) => void,
): AsyncGenerator<Buffer> {
  const input = new ByteQueue(source);
  const bound = new InflationBound('gzip', compressedSize, limits, input);
  let members = 0;
  try {
    for (;;) {
      const memberStart = input.offset;
      if (await endOfMembers(input, members, onTrailingData)) return;
      const header = await readHeader(input, members === 0);
      members++;
      // A small member is inflated at once, without a stream (a file of many small members, as appending
      // to a .gz makes, would otherwise cost a zlib stream and a thread-pool round trip each).
      const front = await input.peekFront(FEED_BYTES);
      const whole =
        inflateWhole(front) ??
        (front.length < FEED_BYTES ? inflateWhole(await input.peek(FEED_BYTES)) : undefined);
      if (whole !== undefined) {
        await input.take(whole.consumed);
        if (whole.out.length > 0) yield bound.count(whole.out);
        await readTrailer(input, memberStart, crc32(whole.out), whole.out.length);
        continue;
      }
      const { crc, size } = yield* inflateMember(input, header.end, bound);
      await readTrailer(input, memberStart, crc, size);
    }
  } finally {
    await input.close();
  }
}

/**
 * Counts inflated bytes, and throws {@link InflationLimitError} once they pass
 * `max(maxInflationRatio × compressedSize, minInflatedBytesAllowed)`, the compressed bytes read so far
 * standing in for an unknown size.
 */
export class InflationBound {
  /** Bytes inflated so far. */
  total = 0;
  readonly #coding: string;
  readonly #compressedSize: number | undefined;
  readonly #limits: InflationLimits;
  readonly #input: ByteQueue;
  readonly #fixed: number | undefined;

  constructor(coding: string, compressedSize: number | undefined, limits: InflationLimits, input: ByteQueue) {
    this.#coding = coding;
    this.#compressedSize = compressedSize;
    this.#limits = limits;
    this.#input = input;
    this.#fixed =
      compressedSize !== undefined
        ? Math.max(limits.maxInflationRatio * compressedSize, limits.minInflatedBytesAllowed)
        : undefined;
  }

  /** Counts an inflated chunk and returns it; throws once the output passes the bound. */
  count(chunk: Buffer): Buffer {
    this.total += chunk.length;
    const limits = this.#limits;
    const read = this.#input.offset;
    const bound = this.#fixed ?? Math.max(limits.maxInflationRatio * read, limits.minInflatedBytesAllowed);
    if (this.total > bound) {
      throw new InflationLimitError(
        `${this.#coding} stream inflates past ${bound} bytes (${this.total} bytes so far from ` +
          `${this.#compressedSize ?? `${read} read`} compressed bytes; at most ${limits.maxInflationRatio}× or ` +
          `${limits.minInflatedBytesAllowed} bytes allowed)`,
        { byteOffset: read },
      );
    }
    return chunk;
  }
}

/**
 * Between members: true at the end of the stream (after zero padding, or trailing data given to
 * `onTrailingData`); false when a member starts (or, before the first, whatever the input is: readHeader
 * says what is wrong with it). Trailing data no one takes throws.
 */
async function endOfMembers(
  input: ByteQueue,
  members: number,
  onTrailingData: ((trailing: TrailingData) => void) | undefined,
): Promise<boolean> {
  const head = await input.peek(2);
  if (members === 0) return false;
  // The end (an empty stream is not gzip: readHeader says so).
  if (head.length === 0) return true;
  // A lone 1f at the very end is taken for a member cut short.
  if (head[0] === 0x1f && (head.length === 1 || head[1] === 0x8b)) return false;
  const trailing = await input.drainTrailing();
  if (trailing === undefined) return true;
  if (!onTrailingData) throw trailingError(trailing);
  onTrailingData(trailing);
  return true;
}

/**
 * Streams one member's deflate data (starting at stream offset `dataStart`) through zlib, passing on each
 * inflated chunk as the consumer reads, and returns the CRC-32 and length of the whole; leaves the trailer
 * and what follows in `input`.
 */
async function* inflateMember(
  input: ByteQueue,
  dataStart: number,
  bound: InflationBound,
): AsyncGenerator<Buffer, { crc: number; size: number }> {
  const inflater = new MemberInflater();
  let dataEnded = false;
  try {
    for (;;) {
      for (let chunk = inflater.take(); chunk !== undefined; chunk = inflater.take())
        yield bound.count(chunk);
      if (inflater.ended || dataEnded) break;
      const piece = await input.take(FEED_BYTES);
      if (piece.length === 0) {
        // The file ends: zlib fails if the member's data is cut short (else the trailer is missing).
        await inflater.end();
        break;
      }
      const unconsumed = await inflater.write(piece);
      // An inflater takes all it is given until its data ends: the rest is the trailer and what follows.
      if (unconsumed > 0) {
        input.unshift(piece.subarray(piece.length - unconsumed));
        dataEnded = true;
      }
    }
    await inflater.finished();
    for (let chunk = inflater.take(); chunk !== undefined; chunk = inflater.take()) yield bound.count(chunk);
    return { crc: inflater.crc, size: inflater.size };
  } catch (err) {
    // What zlib inflated before it failed (the last of a member cut short) is passed on first.
    if (!(err instanceof PulseError)) {
      for (let chunk = inflater.take(); chunk !== undefined; chunk = inflater.take())
        yield bound.count(chunk);
    }
    throw toMalformed(err, inflater.consumed + dataStart, bound.total);
  } finally {
    inflater.destroy();
  }
}

/** Output of a member inflated at once, up to this: a larger one goes through the stream, bounded as it goes. */
const WHOLE_MAX_OUTPUT = 256 * 1024;

/**
 * The member whose deflate data starts `bytes` inflated at once, and the bytes it took; undefined when its
 * data does not end within them, inflates past {@link WHOLE_MAX_OUTPUT}, or fails (the stream then reads
 * it, and reports any error as it does).
 */
function inflateWhole(bytes: Buffer): { out: Buffer; consumed: number } | undefined {
  if (bytes.length === 0) return undefined;
  try {
    const { buffer, engine } = inflateRawSync(bytes, {
      info: true,
      maxOutputLength: WHOLE_MAX_OUTPUT,
    }) as unknown as { buffer: Buffer; engine: { bytesWritten: number } };
    return { out: buffer, consumed: engine.bytesWritten };
  } catch {
    return undefined;
  }
}

/** Reads a member's trailer and checks it against the CRC-32 and length of what the member inflated to. */
async function readTrailer(input: ByteQueue, memberStart: number, crc: number, size: number): Promise<void> {
  const trailer = await input.take(8);
  if (trailer.length < 8) {
    throw malformed(
      `unexpected end of file in the trailer of the member at byte ${memberStart} (the file is truncated)`,
      input.offset - trailer.length,
    );
  }
  if (trailer.readUInt32LE(0) !== crc) {
    throw malformed(
      `incorrect data check in the member at byte ${memberStart} (CRC-32 mismatch)`,
      input.offset - 8,
    );
  }
  if (trailer.readUInt32LE(4) !== size % 2 ** 32) {
    throw malformed(`incorrect length check in the member at byte ${memberStart}`, input.offset - 8);
  }
}

function malformed(reason: string, byteOffset: number): MalformedFileError {
  return new MalformedFileError(`gzip: ${reason}`, { byteOffset });
}

/** What trailing data is, in words (its first bytes in hex). */
export function trailingDataReason(t: TrailingData): string {
  const what = t.bytes === 1 ? '1 byte' : `${t.bytes} bytes`;
  const coding = t.coding ?? 'gzip';
  return `${coding}: ${what} after the end of the compressed data (from byte ${t.byteOffset}) ${t.bytes === 1 ? 'is' : 'are'} not ${coding} (${t.bytes > TRAILING_HEAD_BYTES ? 'starting ' : ''}hex ${t.head})`;
}

export function trailingError(t: TrailingData): MalformedFileError {
  return new MalformedFileError(trailingDataReason(t), { byteOffset: t.byteOffset });
}

function toMalformed(err: unknown, consumed: number, inflated: number): unknown {
  if (err instanceof PulseError) return err;
  const code = (err as { code?: unknown }).code;
  if (typeof code !== 'string' || !code.startsWith('Z_')) return err;
  const hint = code === 'Z_BUF_ERROR' ? ', the file is truncated' : '';
  return new MalformedFileError(
    `gzip: ${(err as Error).message} (after ${inflated} inflated bytes${hint})`,
    { byteOffset: consumed },
    { cause: err },
  );
}

const FHCRC = 0x02;
const FEXTRA = 0x04;
const FNAME = 0x08;
const FCOMMENT = 0x10;
const RESERVED_FLAGS = 0xe0;

/**
 * Reads one member's header (RFC 1952): the magic bytes, deflate, and the optional extra field, name,
 * comment and header CRC. Returns the stream offset where its deflate data starts.
 */
async function readHeader(input: ByteQueue, first: boolean): Promise<{ end: number }> {
  const start = input.offset;
  const fixed = await input.take(10);
  if (fixed.length < 2 || fixed[0] !== 0x1f || fixed[1] !== 0x8b) {
    if (first) {
      throw new MalformedFileError(
        fixed.length < 2
          ? `not a gzip stream (${fixed.length === 0 ? 'empty' : 'one byte long'})`
          : 'not a gzip stream (it does not start with the bytes 1f 8b)',
        { byteOffset: 0 },
      );
    }
    throw malformed(`a member at byte ${start} is cut short (the file is truncated)`, start);
  }
  if (fixed.length < 10)
    throw malformed(`the header at byte ${start} is cut short (the file is truncated)`, start);
  if (fixed[2] !== 8) throw malformed(`unknown compression method ${fixed[2]} at byte ${start}`, start);
  const flags = fixed[3] as number;
  if (flags & RESERVED_FLAGS) throw malformed(`reserved header flags set at byte ${start}`, start);
  const seen: Buffer[] = [fixed];
  const need = async (n: number): Promise<Buffer> => {
    const b = await input.take(n);
    if (b.length < n)
      throw malformed(`the header at byte ${start} is cut short (the file is truncated)`, start);
    seen.push(b);
    return b;
  };
  if (flags & FEXTRA) {
    const len = (await need(2)).readUInt16LE(0);
    await need(len);
  }
  for (const flag of [FNAME, FCOMMENT]) {
    if (!(flags & flag)) continue;
    for (;;) {
      const b = await need(1);
      if (b[0] === 0) break;
      if (input.offset - start > MAX_HEADER_BYTES) {
        throw malformed(
          `the header at byte ${start} has a name or comment longer than ${MAX_HEADER_BYTES} bytes`,
          start,
        );
      }
    }
  }
  if (flags & FHCRC) {
    const headerCrc = crc32(Buffer.concat(seen)) & 0xffff;
    if ((await need(2)).readUInt16LE(0) !== headerCrc) {
      throw malformed(`incorrect header check at byte ${start} (header CRC mismatch)`, start);
    }
  }
  return { end: input.offset };
}

/** A name or comment this long is not a gzip header worth reading on. */
const MAX_HEADER_BYTES = 64 * 1024;

/** The compressed bytes, taken a given number at a time, with what was taken too far put back. */
export class ByteQueue {
  /** Stream offset of the next byte taken. */
  offset = 0;
  readonly #source: AsyncIterator<Uint8Array>;
  #buffers: Buffer[] = [];
  #buffered = 0;
  #done = false;

  constructor(source: AsyncIterable<Uint8Array>) {
    this.#source = source[Symbol.asyncIterator]();
  }

  /** Reads from the source until `n` bytes are buffered or it ends. */
  async #fill(n: number): Promise<void> {
    while (this.#buffered < n && !this.#done) {
      const next = await this.#source.next();
      if (next.done === true) {
        this.#done = true;
      } else if (next.value.length > 0) {
        const buf = asBuffer(next.value);
        this.#buffers.push(buf);
        this.#buffered += buf.length;
      }
    }
  }

  /** The next `n` bytes without taking them (fewer at the end). */
  async peek(n: number): Promise<Buffer> {
    await this.#fill(n);
    return this.#front(Math.min(n, this.#buffered), false);
  }

  /** Up to `n` of the next bytes without taking them, without copying: what the first buffer holds. */
  async peekFront(n: number): Promise<Buffer> {
    await this.#fill(1);
    const first = this.#buffers[0];
    return first === undefined ? Buffer.alloc(0) : first.subarray(0, n);
  }

  /** The next `n` bytes (fewer only at the end). */
  async take(n: number): Promise<Buffer> {
    await this.#fill(n);
    const out = this.#front(Math.min(n, this.#buffered), true);
    this.offset += out.length;
    return out;
  }

  /** Puts bytes just taken back in front. */
  unshift(buf: Buffer): void {
    this.#buffers.unshift(buf);
    this.#buffered += buf.length;
    this.offset -= buf.length;
  }

  #front(n: number, consume: boolean): Buffer {
    const first = this.#buffers[0];
    if (n === 0 || first === undefined) return Buffer.alloc(0);
    let out: Buffer;
    if (first.length >= n) {
      out = first.subarray(0, n);
      if (consume) {
        if (first.length === n) this.#buffers.shift();
        else this.#buffers[0] = first.subarray(n);
      }
    } else {
      const parts: Buffer[] = [];
      let got = 0;
      for (const b of this.#buffers) {
        parts.push(b.subarray(0, n - got));
        got += Math.min(b.length, n - got);
        if (got === n) break;
      }
      out = Buffer.concat(parts, n);
      if (consume) {
        let left = n;
        while (left > 0) {
          const b = this.#buffers[0] as Buffer;
          if (b.length <= left) {
            this.#buffers.shift();
            left -= b.length;
          } else {
            this.#buffers[0] = b.subarray(left);
            left = 0;
          }
        }
      }
    }
    if (consume) this.#buffered -= n;
    return out;
  }

  /**
   * Takes everything left: undefined when it is only zero bytes (padding), else what it is. Only its
   * first bytes are kept.
   */
  async drainTrailing(): Promise<TrailingData | undefined> {
    const byteOffset = this.offset;
    let bytes = 0;
    let head = Buffer.alloc(0);
    let zeros = true;
    for (;;) {
      const piece = await this.take(FEED_BYTES);
      if (piece.length === 0) break;
      if (head.length < TRAILING_HEAD_BYTES) {
        head = Buffer.concat([head, piece.subarray(0, TRAILING_HEAD_BYTES - head.length)]);
      }
      if (zeros && piece.some((b) => b !== 0)) zeros = false;
      bytes += piece.length;
    }
    return zeros ? undefined : { byteOffset, bytes, head: head.toString('hex') };
  }

  /** Releases the source (an S3 body's socket) when it was left part way. */
  async close(): Promise<void> {
    if (!this.#done) await this.#source.return?.(undefined);
  }
}

/**
 * One member's deflate data through zlib (or one zstd frame through `zlib.createZstdDecompress()`), its
 * output kept with its CRC-32 and length.
 */
export class MemberInflater {
  crc = 0;
  size = 0;
  ended = false;
  readonly #zlib: Transform & Zlib;
  readonly #out: Buffer[] = [];
  #fed = 0;
  #failure: unknown;
  /** The write in progress: settled by its callback, or by an error (a failing zlib stream may not call it). */
  #pending: { resolve: (unconsumed: number) => void; reject: (err: unknown) => void } | undefined;
  readonly #end: Promise<void>;

  constructor(zlib: Transform & Zlib = createInflateRaw()) {
    this.#zlib = zlib;
    // Flowing, never paused: every chunk zlib produces is kept before it reports an error (a zlib stream
    // that fails destroys itself with what it still held). The consumer's pace is kept by writing the next
    // piece only once the output so far is taken.
    this.#zlib.on('data', (chunk: Buffer) => {
      this.crc = crc32(chunk, this.crc);
      this.size += chunk.length;
      this.#out.push(chunk);
    });
    this.#end = new Promise<void>((resolve, reject) => {
      this.#zlib.on('end', () => {
        this.ended = true;
        resolve();
      });
      this.#zlib.on('error', (err) => {
        this.#failure ??= err;
        this.#settle(err);
        reject(err);
      });
    });
    this.#end.catch(() => undefined);
  }

  /** Compressed bytes zlib consumed. */
  get consumed(): number {
    return this.#zlib.bytesWritten;
  }

  take(): Buffer | undefined {
    return this.#out.shift();
  }

  /** Writes `piece`; resolves with how many of its bytes zlib did not consume (its data ended before). */
  write(piece: Buffer): Promise<number> {
    if (this.#failure !== undefined) return Promise.reject(this.#failure);
    this.#fed += piece.length;
    return new Promise((resolve, reject) => {
      this.#pending = { resolve, reject };
      this.#zlib.write(piece, (err) => this.#settle(err ?? undefined));
    });
  }

  #settle(err: unknown): void {
    const pending = this.#pending;
    this.#pending = undefined;
    const failure = err ?? this.#failure;
    if (failure !== undefined) pending?.reject(failure);
    else pending?.resolve(this.#fed - this.#zlib.bytesWritten);
  }

  /** The compressed bytes ended: zlib passes on the last of its output, or fails if its data was cut short. */
  end(): Promise<void> {
    if (!this.ended) this.#zlib.end();
    return this.#end;
  }

  /** Waits for zlib to pass on the last of its output. */
  finished(): Promise<void> {
    return this.#end;
  }

  destroy(): void {
    this.#zlib.destroy();
  }
}
