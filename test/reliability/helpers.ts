import { constants, crc32, deflateRawSync } from 'node:zlib';
import type { AsyncBuffer } from 'hyparquet';
import { expect } from 'vitest';
import { MalformedFileError } from '#shared/errors.ts';
import { normaliseSignal, type SignalContext } from '#shared/signal.ts';
import type { ParsedRecord } from '../../functions/s3-trigger/parsers/types.ts';

/** Seeds and run counts for every property, so CI replays exactly the same inputs. */
export const SEED = 20_260_801;
export const RUNS = 150;

/** A parse that takes longer than this is reported as a hang. */
export const PARSE_TIMEOUT_MS = 10_000;

export const MiB = 1024 * 1024;

export const CTX: SignalContext = {
  origin: { kind: 's3', ref: 's3://bucket/incoming/file@etag' },
  defaultSource: 'incoming/file',
};

/** Rejects with a clear message when `work` has not settled within `ms` (it cannot stop a synchronous loop). */
export async function within<T>(work: Promise<T>, what: string, ms = PARSE_TIMEOUT_MS): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what} did not finish within ${ms} ms (a hang?)`)), ms);
  });
  try {
    return await Promise.race([work, timeout]);
  } finally {
    clearTimeout(timer);
  }
}

/** `bytes` cut into consecutive chunks whose sizes cycle through `sizes` (no sizes: one chunk). */
export function split(bytes: Uint8Array, sizes: readonly number[] = []): Buffer[] {
  const buf = Buffer.from(bytes);
  if (sizes.length === 0) return buf.length > 0 ? [buf] : [];
  const out: Buffer[] = [];
  for (let at = 0, i = 0; at < buf.length; i++) {
    const n = Math.max(1, sizes[i % sizes.length] as number);
    out.push(buf.subarray(at, at + n));
    at += n;
  }
  return out;
}

/** An async byte source over the given chunks. */
export async function* source(chunks: Iterable<Uint8Array>): AsyncGenerator<Buffer> {
  for (const c of chunks) yield Buffer.from(c);
}

export interface Outcome<T = ParsedRecord> {
  readonly records: T[];
  readonly error: unknown;
}

/** Every record, then whatever ended the stream, bounded by {@link PARSE_TIMEOUT_MS}. */
export function drain<T = ParsedRecord>(gen: AsyncIterable<T>, what = 'parse'): Promise<Outcome<T>> {
  const run = async () => {
    const records: T[] = [];
    try {
      for await (const r of gen) records.push(r);
    } catch (error) {
      return { records, error };
    }
    return { records, error: undefined };
  };
  return within(run(), what);
}

/** Describes an unexpected error with its stack, so a property failure says what was thrown. */
function describe(err: unknown): string {
  return err instanceof Error ? `${err.name}: ${err.message}\n${err.stack ?? ''}` : String(err);
}

/**
 * The contract every parser keeps, whatever the input: each record is accepted (an object, which
 * normaliseSignal then accepts or rejects with a reason, never throwing) or rejected with a reason, rows
 * increase, and the stream ends normally or with a MalformedFileError (InflationLimitError included).
 * `located`: the error must say where (row, line or byte offset).
 */
export function expectWellBehaved(outcome: Outcome, located = true): void {
  const { records, error } = outcome;
  if (error !== undefined) {
    expect(error instanceof MalformedFileError, `not a MalformedFileError: ${describe(error)}`).toBe(true);
    const err = error as MalformedFileError;
    expect(err.message.length).toBeGreaterThan(0);
    if (located) {
      const { row, line, byteOffset } = err.location;
      expect(
        row !== undefined || line !== undefined || byteOffset !== undefined,
        `no location: ${err.message}`,
      ).toBe(true);
      if (row !== undefined) expect(Number.isInteger(row) && row >= 1, `row ${row}`).toBe(true);
      if (line !== undefined) expect(Number.isInteger(line) && line >= 1, `line ${line}`).toBe(true);
      if (byteOffset !== undefined) {
        expect(Number.isInteger(byteOffset) && byteOffset >= 0, `byteOffset ${byteOffset}`).toBe(true);
      }
    }
  }
  let lastRow = 0;
  for (const rec of records) {
    expect(Number.isInteger(rec.row) && rec.row > lastRow, `row ${rec.row} after ${lastRow}`).toBe(true);
    lastRow = rec.row;
    if (rec.error !== undefined) {
      expect(rec.data).toBeUndefined();
      expect(typeof rec.error === 'string' && rec.error.length > 0).toBe(true);
      continue;
    }
    expect(typeof rec.data === 'object' && rec.data !== null && !Array.isArray(rec.data)).toBe(true);
    let result: ReturnType<typeof normaliseSignal> | undefined;
    try {
      result = normaliseSignal(rec.data, CTX);
    } catch (err) {
      expect.fail(`normaliseSignal threw on row ${rec.row}: ${describe(err)}`);
    }
    if (!result.ok) expect(result.reason.length).toBeGreaterThan(0);
  }
}

/**
 * The same outcome compared across chunkings: records, and the error's type and message. `withRaw: false`
 * leaves out the clipped raw text of rejects, for a parser whose raw text is known to depend on chunking.
 */
export function summary(outcome: Outcome, withRaw = true): unknown {
  const { error } = outcome;
  return {
    records: withRaw
      ? outcome.records
      : outcome.records.map(({ row, data, error }) => ({ row, data, error })),
    error: error instanceof Error ? `${error.name}: ${error.message}` : error,
  };
}

/** Peak resident set size seen by {@link RssWatch.sample}, relative to when it was created. */
export class RssWatch {
  readonly #base = process.memoryUsage().rss;
  #peak = this.#base;

  sample(): void {
    const rss = process.memoryUsage().rss;
    if (rss > this.#peak) this.#peak = rss;
  }

  /** Largest growth over the starting RSS, in MiB. */
  get growthMiB(): number {
    this.sample();
    return (this.#peak - this.#base) / MiB;
  }
}

/** A byte source that yields `total` bytes of `fill` in 64 KiB pieces without ever holding them, sampling RSS. */
export async function* repeated(
  prefix: string,
  fill: string,
  total: number,
  suffix: string,
  watch: RssWatch,
): AsyncGenerator<Buffer> {
  yield Buffer.from(prefix);
  const piece = Buffer.alloc(64 * 1024, fill);
  for (let sent = 0; sent < total; sent += piece.length) {
    watch.sample();
    yield piece.subarray(0, Math.min(piece.length, total - sent));
  }
  yield Buffer.from(suffix);
}

/**
 * A single-member gzip stream of `mib` MiB of zeros (about 1 KiB per MiB), built without compressing it
 * all: one MiB deflated with a full flush is byte-aligned and independent of what precedes it, so it can
 * be repeated, then closed with an empty final block and the real CRC-32 and length.
 */
export function zeroBomb(mib: number): Buffer {
  const zeros = Buffer.alloc(MiB);
  const block = deflateRawSync(zeros, { level: 9, finishFlush: constants.Z_FULL_FLUSH });
  let crc = 0;
  for (let i = 0; i < mib; i++) crc = crc32(zeros, crc);
  const header = Buffer.from([0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 0xff]);
  const trailer = Buffer.alloc(8);
  trailer.writeUInt32LE(crc >>> 0, 0);
  trailer.writeUInt32LE((mib * MiB) % 2 ** 32, 4);
  const blocks = Array.from({ length: mib }, () => block);
  return Buffer.concat([header, ...blocks, Buffer.from([0x03, 0x00]), trailer]);
}

/** A random-access view of bytes in memory, as parseParquet reads S3 or a spooled file. */
export function memoryBuffer(bytes: Uint8Array): AsyncBuffer {
  const copy = Uint8Array.from(bytes).buffer;
  return { byteLength: copy.byteLength, slice: (start, end) => copy.slice(start, end) };
}
