import type { ParsedRecord, ParserOptions } from '../../../../functions/s3-trigger/parsers/types.ts';

export const OPTS: ParserOptions = { maxRecordBytes: 1024 * 1024 };

import { prng } from '../../../../tools/random.ts';

export { prng };

/** `bytes` cut into consecutive chunks of the given sizes (the last takes the rest). */
export function split(bytes: Buffer, sizes: (i: number) => number): Buffer[] {
  const out: Buffer[] = [];
  for (let at = 0, i = 0; at < bytes.length; i++) {
    const n = Math.max(1, sizes(i));
    out.push(Buffer.from(bytes.subarray(at, at + n)));
    at += n;
  }
  return out;
}

/** The same bytes chunked in several ways: whole, 1-byte chunks, and random sizes from a few seeds. */
export function chunkings(bytes: Buffer | string): Array<{ name: string; chunks: Buffer[] }> {
  const buf = Buffer.isBuffer(bytes) ? bytes : Buffer.from(bytes);
  const ways = [
    { name: 'one chunk', chunks: buf.length > 0 ? [buf] : [] },
    { name: '1-byte chunks', chunks: split(buf, () => 1) },
    { name: '2-byte chunks', chunks: split(buf, () => 2) },
    { name: '3-byte chunks', chunks: split(buf, () => 3) },
  ];
  for (const seed of [1, 2, 3, 42, 1234]) {
    const rnd = prng(seed);
    ways.push({ name: `random chunks (seed ${seed})`, chunks: split(buf, () => 1 + Math.floor(rnd() * 17)) });
  }
  return ways;
}

/** An async byte source over the given chunks. */
export async function* source(chunks: Iterable<Buffer | string>): AsyncGenerator<Buffer> {
  for (const c of chunks) yield Buffer.isBuffer(c) ? c : Buffer.from(c);
}

/** Every record, then the error that ended the stream (if any). */
export async function drain<T = ParsedRecord>(
  gen: AsyncIterable<T>,
): Promise<{ records: T[]; error: Error | undefined }> {
  const records: T[] = [];
  try {
    for await (const r of gen) records.push(r);
  } catch (err) {
    return { records, error: err as Error };
  }
  return { records, error: undefined };
}

/** Every record; fails the test if the stream ends with an error. */
export async function collect<T = ParsedRecord>(gen: AsyncIterable<T>): Promise<T[]> {
  const out: T[] = [];
  for await (const r of gen) out.push(r);
  return out;
}
