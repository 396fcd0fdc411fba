import * as zlib from 'node:zlib';
import { type CompressionCodec, type Compressors, snappyUncompress } from 'hyparquet';
import { decompressLz4, decompressLz4Raw } from 'hyparquet-compressors/src/lz4.js';
import { InflationLimitError, UnsupportedFormatError } from '#shared/errors.ts';

/**
 * The page decompressors the Parquet decoder uses, one per codec, each bounded by the size the page's
 * header declares: a page whose data would inflate past it fails with {@link InflationLimitError} as soon as
 * it does (Node's zlib stops at `maxOutputLength`; LZ4 and Snappy are measured from their own framing
 * before anything is copied), so a compression bomb that lies about its size is never inflated whole. A page
 * that inflates to fewer bytes than declared is corrupt (hyparquet checks the length).
 *
 * GZIP, Brotli and ZSTD are Node's own (zlib), LZ4 and LZ4_RAW hyparquet-compressors', Snappy hyparquet's.
 */

/** The codecs Parquet files are read in. LZO, the one other codec the format names, is refused. */
export const READABLE_CODECS = [
  'UNCOMPRESSED',
  'SNAPPY',
  'GZIP',
  'BROTLI',
  'LZ4',
  'LZ4_RAW',
  'ZSTD',
] as const;

/**
 * The most bytes one byte of a page's data can stand for, per codec (plus {@link PAGE_SLACK_BYTES} for
 * framing): a page header claiming more is corrupt. These are the codecs' own limits, so no page a writer
 * made is refused by them; what a file may inflate to in all is bounded separately (`InflationLimits`, per
 * row group).
 * - Snappy: a 3-byte copy makes at most 64 bytes.
 * - DEFLATE (GZIP): a length/distance pair of a few bits makes at most 258 bytes: 1,032 to 1 at best.
 * - LZ4: each length byte adds at most 255.
 * - ZSTD: a block is at most 128 KiB, and an RLE block takes 4 bytes: 32,768 to 1.
 * - Brotli: one command of a few bits copies up to 16 MiB (zeros compress about 640,000 to 1): no useful
 *   bound of its own, so only the declared size and the row group's bound hold it.
 */
export const PAGE_EXPANSION: Readonly<Record<(typeof READABLE_CODECS)[number], number>> = {
  UNCOMPRESSED: 1,
  SNAPPY: 22,
  GZIP: 1032,
  LZ4: 256,
  LZ4_RAW: 256,
  ZSTD: 32_768,
  BROTLI: 2 ** 24,
};

/** Bytes a page may hold beyond its codec's ratio: headers, frames, checksums. */
export const PAGE_SLACK_BYTES = 64;

/** Whether this Node.js has a zstd decoder (zlib has one from Node 22.15 and 23.8). */
export const ZSTD_AVAILABLE = typeof zlib.zstdDecompressSync === 'function';

/**
 * Why column chunks of this codec cannot be read here, or undefined when they can: LZO, a codec number the
 * format does not have, or ZSTD on a Node.js without a zstd decoder. A reason, not an error: the file is not
 * corrupt, it is one Pulse Ingest does not read.
 */
export function unreadableCodec(codec: unknown): string | undefined {
  if (codec === 'ZSTD' && !ZSTD_AVAILABLE) {
    return `ZSTD needs Node.js 22.15 or later to decompress (this is ${process.version})`;
  }
  if ((READABLE_CODECS as readonly unknown[]).includes(codec)) return undefined;
  return `${String(codec ?? 'an unknown codec')} is not a compression codec Pulse Ingest reads (it reads ${READABLE_CODECS.join(', ')})`;
}

function tooLarge(codec: CompressionCodec, declared: number, inflates?: number): InflationLimitError {
  return new InflationLimitError(
    `a ${codec} page inflates to ${inflates !== undefined ? `${inflates} bytes, ` : ''}more than the ` +
      `${declared} bytes its header declares (a compression bomb, or a corrupt page)`,
  );
}

/** `run`, with zlib's "output past maxOutputLength" made the page's {@link InflationLimitError}. */
function bounded(codec: CompressionCodec, declared: number, run: () => Uint8Array): Uint8Array {
  try {
    return run();
  } catch (err) {
    if ((err as { code?: unknown }).code === 'ERR_BUFFER_TOO_LARGE') throw tooLarge(codec, declared);
    throw err;
  }
}

/** zlib refuses a `maxOutputLength` of 0: an empty page is allowed one byte, and then must have none. */
const maxOutput = (declared: number) => Math.max(1, declared);

function gunzipPage(input: Uint8Array, declared: number): Uint8Array {
  return bounded('GZIP', declared, () =>
    // GZIP pages are gzip members (RFC 1952), several in a row from some writers; a few writers leave the
    // header out, as hyparquet-compressors also allows: bare DEFLATE.
    input[0] === 0x1f && input[1] === 0x8b
      ? zlib.gunzipSync(input, { maxOutputLength: maxOutput(declared) })
      : zlib.inflateRawSync(input, { maxOutputLength: maxOutput(declared) }),
  );
}

function brotliPage(input: Uint8Array, declared: number): Uint8Array {
  return bounded('BROTLI', declared, () =>
    zlib.brotliDecompressSync(input, { maxOutputLength: maxOutput(declared) }),
  );
}

function zstdPage(input: Uint8Array, declared: number): Uint8Array {
  // Node's decoder reads one frame and stops: a page of several frames comes out short, which hyparquet's
  // length check fails as corrupt (writers put a page in one frame).
  return bounded('ZSTD', declared, () =>
    zlib.zstdDecompressSync(input, { maxOutputLength: maxOutput(declared) }),
  );
}

/** Checks the length a Snappy page's preamble announces before hyparquet decodes it into `declared` bytes. */
function snappyPage(input: Uint8Array, declared: number): Uint8Array {
  let announced = 0;
  for (let i = 0, shift = 0; i < input.length && i < 5; i++, shift += 7) {
    const b = input[i] as number;
    announced += (b & 0x7f) * 2 ** shift;
    if (b < 0x80) break;
  }
  if (announced > declared) throw tooLarge('SNAPPY', declared, announced);
  const out = new Uint8Array(declared);
  snappyUncompress(input, out);
  return out;
}

/**
 * The bytes one bare LZ4 block (`input[start, end)`) inflates to, from its sequences' lengths alone (nothing
 * is copied); -1 when the block is not well formed (a length or offset runs past its end).
 */
export function lz4BlockLength(input: Uint8Array, start = 0, end = input.length): number {
  let out = 0;
  let i = start;
  while (i < end) {
    const token = input[i++] as number;
    let literals = token >> 4;
    if (literals === 15) {
      for (let b = 255; b === 255; ) {
        if (i >= end) return -1;
        b = input[i++] as number;
        literals += b;
      }
    }
    i += literals;
    out += literals;
    // The last sequence is literals only.
    if (i === end) return out;
    if (i + 2 > end) return -1;
    const offset = (input[i] as number) | ((input[i + 1] as number) << 8);
    i += 2;
    if (offset === 0 || offset > out) return -1;
    let match = token & 0x0f;
    if (match === 15) {
      for (let b = 255; b === 255; ) {
        if (i >= end) return -1;
        b = input[i++] as number;
        match += b;
      }
    }
    out += match + 4;
  }
  return i === end ? out : -1;
}

/**
 * What an LZ4 page inflates to, as hyparquet-compressors reads it: Hadoop's framing (a big-endian output and
 * input size before each block) when the whole page is such frames, else one bare block.
 */
function lz4PageLength(input: Uint8Array): number {
  let i = 0;
  let total = 0;
  while (i + 8 <= input.length) {
    const view = new DataView(input.buffer, input.byteOffset + i, 8);
    const outLength = view.getUint32(0);
    const inLength = view.getUint32(4);
    if (i + 8 + inLength > input.length || lz4BlockLength(input, i + 8, i + 8 + inLength) !== outLength)
      break;
    i += 8 + inLength;
    total += outLength;
    if (i === input.length) return total;
  }
  return lz4BlockLength(input);
}

function lz4Page(codec: 'LZ4' | 'LZ4_RAW', input: Uint8Array, declared: number): Uint8Array {
  // hyparquet-compressors writes into exactly `declared` bytes and drops what does not fit, silently: the
  // length is measured first, so that a longer block fails (a bomb) and a shorter one is corrupt.
  const length = codec === 'LZ4' ? lz4PageLength(input) : lz4BlockLength(input);
  if (length > declared) throw tooLarge(codec, declared, length);
  if (length !== declared) {
    throw new Error(
      length < 0
        ? `the ${codec} page is not well-formed LZ4`
        : `the ${codec} page inflates to ${length} bytes, not the ${declared} its header declares`,
    );
  }
  return codec === 'LZ4' ? decompressLz4(input, declared) : decompressLz4Raw(input, declared);
}

/** The decompressors given to hyparquet (`parquetRead`'s `compressors`). */
export const PAGE_DECOMPRESSORS: Compressors = {
  SNAPPY: snappyPage,
  GZIP: gunzipPage,
  BROTLI: brotliPage,
  ZSTD: (input, declared) => {
    if (!ZSTD_AVAILABLE) throw new UnsupportedFormatError(unreadableCodec('ZSTD') as string);
    return zstdPage(input, declared);
  },
  LZ4: (input, declared) => lz4Page('LZ4', input, declared),
  LZ4_RAW: (input, declared) => lz4Page('LZ4_RAW', input, declared),
};
