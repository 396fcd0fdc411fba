import { createGunzip } from 'node:zlib';
import { InflationLimitError, MalformedFileError, PulseError } from '../../../shared/errors.ts';
import { settings } from '../../../shared/settings.ts';
import { asBuffer, pieces } from './bytes.ts';

/** How far a compressed stream may inflate (defaults: `settings.limits`). */
export interface InflationLimits {
  /** Decompressed bytes allowed per compressed byte. */
  readonly maxInflationRatio: number;
  /** Decompressed bytes always allowed, however small the compressed stream. */
  readonly minInflatedBytesAllowed: number;
}

/** Compressed bytes fed to zlib at once: keeps zlib's error position (`bytesWritten`) precise to this. */
const FEED_BYTES = 16 * 1024;

/**
 * Inflates a gzip stream (several concatenated members too, as zlib does), with backpressure: nothing is
 * inflated faster than the consumer reads it.
 *
 * It stops with {@link InflationLimitError} as soon as the output passes
 * `max(maxInflationRatio × compressedSize, minInflatedBytesAllowed)` — a gzip bomb is never inflated
 * whole. When `compressedSize` is unknown, the compressed bytes read so far stand in for it.
 * Input that does not start with the gzip magic bytes, or is corrupt or truncated, throws
 * {@link MalformedFileError} (`byteOffset`: compressed bytes zlib had consumed without error, to within
 * 16 KiB). Errors of `source` itself pass through unchanged.
 */
export async function* gunzipBounded(
  source: AsyncIterable<Buffer>,
  compressedSize: number | undefined,
  limits: InflationLimits = settings.limits,
): AsyncGenerator<Buffer> {
  const fixedBound =
    compressedSize !== undefined
      ? Math.max(limits.maxInflationRatio * compressedSize, limits.minInflatedBytesAllowed)
      : undefined;
  let read = 0;
  const input = checkedInput(source, (n) => {
    read += n;
  });
  const gunzip = createGunzip();
  // The stream is read in flowing mode and never paused, so every chunk zlib produces is in `inflated`
  // before zlib reports an error: a zlib stream that fails destroys itself, and the chunks still in its
  // own buffer are lost with it (a file cut short lost its last 16 KiB that way). Backpressure comes from
  // the other side instead: the next compressed piece is written only once everything is consumed.
  const inflated: Buffer[] = [];
  let failure: unknown;
  let ended = false;
  let writing = false;
  let inputDone = false;
  let wake: (() => void) | undefined;
  const notify = () => {
    const w = wake;
    wake = undefined;
    w?.();
  };
  gunzip.on('data', (chunk: Buffer) => {
    inflated.push(chunk);
    notify();
  });
  gunzip.on('error', (err) => {
    failure ??= err;
    notify();
  });
  gunzip.on('end', () => {
    ended = true;
    notify();
  });
  let total = 0;
  try {
    for (;;) {
      const chunk = inflated.shift();
      if (chunk !== undefined) {
        total += chunk.length;
        const bound = fixedBound ?? Math.max(limits.maxInflationRatio * read, limits.minInflatedBytesAllowed);
        if (total > bound) {
          throw new InflationLimitError(
            `gzip stream inflates past ${bound} bytes (${total} bytes so far from ` +
              `${compressedSize ?? `${read} read`} compressed bytes; at most ${limits.maxInflationRatio}× or ` +
              `${limits.minInflatedBytesAllowed} bytes allowed)`,
            { byteOffset: gunzip.bytesWritten },
          );
        }
        yield chunk;
        continue;
      }
      if (failure !== undefined) throw failure;
      if (ended) return;
      if (!writing && !inputDone) {
        const next = await input.next();
        if (next.done === true) {
          inputDone = true;
          // Only now, with every piece inflated and consumed: a stream cut short fails here.
          gunzip.end();
        } else {
          writing = true;
          gunzip.write(next.value, (err) => {
            if (err) failure ??= err;
            writing = false;
            notify();
          });
        }
        continue;
      }
      await new Promise<void>((resolve) => {
        wake = resolve;
      });
    }
  } catch (err) {
    throw toMalformed(err, gunzip.bytesWritten, total);
  } finally {
    gunzip.destroy();
    await input.return(undefined);
  }
}

function toMalformed(err: unknown, consumed: number, inflated: number): unknown {
  if (err instanceof PulseError) return err;
  const code = (err as { code?: unknown }).code;
  if (typeof code !== 'string' || !code.startsWith('Z_')) return err;
  const message = (err as Error).message;
  const hint =
    code === 'Z_BUF_ERROR'
      ? ' (the file is truncated)'
      : message === 'incorrect header check' && inflated > 0
        ? ' (data after the last gzip member is not gzip)'
        : '';
  return new MalformedFileError(`gzip: ${message}${hint}`, { byteOffset: consumed }, { cause: err });
}

/**
 * Checks the gzip magic bytes (1f 8b) and re-chunks the input for zlib: large chunks are cut to
 * {@link FEED_BYTES}, and tiny ones gathered up to it (each zlib write costs a thread-pool round trip).
 */
async function* checkedInput(
  source: AsyncIterable<Uint8Array>,
  onBytes: (n: number) => void,
): AsyncGenerator<Buffer> {
  let head: Buffer | undefined = Buffer.alloc(0);
  let gathered: Buffer[] = [];
  let gatheredBytes = 0;
  for await (const chunk of source) {
    let buf = asBuffer(chunk);
    onBytes(buf.length);
    if (head !== undefined) {
      head = head.length === 0 ? buf : Buffer.concat([head, buf]);
      if (head.length < 2) continue;
      if (head[0] !== 0x1f || head[1] !== 0x8b) {
        throw new MalformedFileError('not a gzip stream (it does not start with the bytes 1f 8b)', {
          byteOffset: 0,
        });
      }
      buf = head;
      head = undefined;
    }
    if (gatheredBytes + buf.length < FEED_BYTES) {
      gathered.push(buf);
      gatheredBytes += buf.length;
      continue;
    }
    if (gatheredBytes > 0) {
      gathered.push(buf);
      buf = Buffer.concat(gathered, gatheredBytes + buf.length);
      gathered = [];
      gatheredBytes = 0;
    }
    yield* pieces(buf, FEED_BYTES);
  }
  if (head !== undefined) {
    throw new MalformedFileError(`not a gzip stream (${head.length === 0 ? 'empty' : 'one byte long'})`, {
      byteOffset: 0,
    });
  }
  if (gatheredBytes > 0) yield Buffer.concat(gathered, gatheredBytes);
}
