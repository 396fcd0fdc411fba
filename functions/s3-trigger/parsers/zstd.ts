import * as zlib from 'node:zlib';
import { MalformedFileError, PulseError, UnsupportedFormatError } from '#shared/errors.ts';
import { settings } from '#shared/settings.ts';
import { ByteQueue, InflationBound, MemberInflater, type TrailingData, trailingError } from './gzip.ts';
import { unreadableCodec, ZSTD_AVAILABLE } from './parquet-codecs.ts';
import type { InflationLimits } from './types.ts';

/** Compressed bytes fed to the decoder at once (as for gzip). */
const FEED_BYTES = 16 * 1024;

const ZSTD_MAGIC = 0xfd2fb528;
/** Skippable frames (RFC 8878, 3.1.2): magic 0x184D2A50 to 0x184D2A5F, a size, and data to skip. */
const SKIPPABLE_MIN = 0x184d2a50;
const SKIPPABLE_MAX = 0x184d2a5f;

/**
 * Decompresses a zstd stream (RFC 8878: `zstd` files, `Content-Encoding: zstd`) with backpressure, bounded
 * as {@link gunzipBounded} is: past `max(maxInflationRatio × compressedSize, minInflatedBytesAllowed)` it
 * stops with {@link InflationLimitError}.
 *
 * Node's zstd decoder (zlib) reads one frame and then stops without a word, and reports nothing when the
 * data ends part way through a frame: so the frames are walked here, block header by block header, and each
 * is decoded on its own. Several frames in a row are read (as `zstd` and `pzstd` write them), skippable
 * frames skipped; a stream cut short fails with {@link MalformedFileError}, and so does corrupt data (the
 * decoder's own error, with the offset of its frame). Zero bytes after the last frame are padding; other
 * bytes that do not start a frame are {@link TrailingData}, given to `onTrailingData` (without it, an error).
 * A frame that needs a dictionary, or a Node.js without zstd, throws {@link UnsupportedFormatError}. Errors
 * of `source` itself pass through unchanged.
 */
export async function* unzstdBounded(
  source: AsyncIterable<Buffer>,
  compressedSize: number | undefined,
  limits: InflationLimits = settings.limits,
  onTrailingData?: (trailing: TrailingData) => void,
): AsyncGenerator<Buffer> {
  if (!ZSTD_AVAILABLE) {
    throw new UnsupportedFormatError(`zstd-compressed input: ${unreadableCodec('ZSTD') as string}`);
  }
  const input = new ByteQueue(source);
  const bound = new InflationBound('zstd', compressedSize, limits, input);
  let frames = 0;
  try {
    for (;;) {
      const frameStart = input.offset;
      const head = await input.peek(4);
      if (head.length === 0) {
        if (frames > 0) return;
        throw new MalformedFileError('zstd: not a zstd stream (empty)', { byteOffset: 0 });
      }
      const magic = head.length === 4 ? head.readUInt32LE(0) : -1;
      if (magic >= SKIPPABLE_MIN && magic <= SKIPPABLE_MAX) {
        await skipFrame(input, frameStart);
        frames++;
        continue;
      }
      if (magic !== ZSTD_MAGIC) {
        if (frames === 0) {
          throw new MalformedFileError(
            'zstd: not a zstd stream (it does not start with the bytes 28 b5 2f fd)',
            {
              byteOffset: 0,
            },
          );
        }
        const trailing = await input.drainTrailing();
        if (trailing === undefined) return;
        const notice: TrailingData = { ...trailing, coding: 'zstd' };
        if (!onTrailingData) throw trailingError(notice);
        onTrailingData(notice);
        return;
      }
      frames++;
      yield* frame(input, frameStart, bound);
    }
  } finally {
    await input.close();
  }
}

/** The next `n` bytes of the frame at `frameStart`, which must be there. */
async function need(input: ByteQueue, n: number, frameStart: number, what: string): Promise<Buffer> {
  const b = await input.take(n);
  if (b.length < n) {
    throw malformed(
      `the file ends inside the ${what} of the frame at byte ${frameStart} (it is truncated)`,
      input.offset,
    );
  }
  return b;
}

/** A skippable frame, from its magic number on: its size, and as many bytes of data taken and dropped. */
async function skipFrame(input: ByteQueue, frameStart: number): Promise<void> {
  const size = (await need(input, 8, frameStart, 'header')).readUInt32LE(4);
  for (let left = size; left > 0; ) {
    const piece = await need(input, Math.min(left, FEED_BYTES), frameStart, 'skippable data');
    left -= piece.length;
  }
}

/** Bytes of the Dictionary_ID and Frame_Content_Size fields, by their flags (RFC 8878, 3.1.1.1). */
const DICT_ID_BYTES = [0, 1, 2, 4];
const CONTENT_SIZE_BYTES = [0, 2, 4, 8];

/** One frame, from its magic number on: its header and blocks walked, its bytes through a decoder of its own. */
async function* frame(input: ByteQueue, frameStart: number, bound: InflationBound): AsyncGenerator<Buffer> {
  const fixed = await need(input, 5, frameStart, 'header');
  const descriptor = fixed[4] as number;
  if (descriptor & 0x08) throw malformed(`the frame at byte ${frameStart} sets a reserved bit`, frameStart);
  const singleSegment = (descriptor >> 5) & 1;
  const dictBytes = DICT_ID_BYTES[descriptor & 3] as number;
  const sizeFlag = descriptor >> 6;
  const sizeBytes = sizeFlag === 0 ? singleSegment : (CONTENT_SIZE_BYTES[sizeFlag] as number);
  const rest = await need(input, (singleSegment ? 0 : 1) + dictBytes + sizeBytes, frameStart, 'header');
  const dictId = dictBytes > 0 ? rest.readUIntLE(singleSegment ? 0 : 1, dictBytes) : 0;
  if (dictId !== 0) {
    throw new UnsupportedFormatError(
      `zstd: the frame at byte ${frameStart} was compressed with dictionary ${dictId}, which Pulse Ingest does not have`,
    );
  }
  const checksum = (descriptor >> 2) & 1;
  const decoder = new MemberInflater(zlib.createZstdDecompress());
  const feed = async function* (bytes: Buffer): AsyncGenerator<Buffer> {
    await decoder.write(bytes);
    for (let chunk = decoder.take(); chunk !== undefined; chunk = decoder.take()) yield bound.count(chunk);
  };
  try {
    yield* feed(Buffer.concat([fixed, rest]));
    for (;;) {
      const header = await need(input, 3, frameStart, 'blocks');
      const value = header.readUIntLE(0, 3);
      const type = (value >> 1) & 3;
      if (type === 3)
        throw malformed(`a block of the frame at byte ${frameStart} has the reserved type`, input.offset - 3);
      yield* feed(header);
      // An RLE block holds one byte, repeated Block_Size times.
      for (let left = type === 1 ? 1 : value >>> 3; left > 0; ) {
        const piece = await need(input, Math.min(left, FEED_BYTES), frameStart, 'blocks');
        left -= piece.length;
        yield* feed(piece);
      }
      if (value & 1) break;
    }
    if (checksum) yield* feed(await need(input, 4, frameStart, 'checksum'));
    await decoder.end();
    for (let chunk = decoder.take(); chunk !== undefined; chunk = decoder.take()) yield bound.count(chunk);
  } catch (err) {
    if (err instanceof PulseError) throw err;
    const code = (err as { code?: unknown }).code;
    // The decoder's errors; and one that ended where the walk did not (a write after its end).
    if (typeof code === 'string' && (code.startsWith('ZSTD_') || code === 'ERR_STREAM_WRITE_AFTER_END')) {
      throw new MalformedFileError(
        `zstd: the frame at byte ${frameStart} is corrupt (${(err as Error).message})`,
        {
          byteOffset: frameStart,
        },
        { cause: err },
      );
    }
    throw err;
  } finally {
    decoder.destroy();
  }
}

function malformed(reason: string, byteOffset: number): MalformedFileError {
  return new MalformedFileError(`zstd: ${reason}`, { byteOffset });
}
