import { createWriteStream } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pipeline } from 'node:stream/promises';
import { GetObjectCommand, HeadObjectCommand, type S3Client } from '@aws-sdk/client-s3';
import type { AsyncBuffer } from 'hyparquet';
import { InflationLimitError, MalformedFileError } from '#shared/errors.ts';
import type { FileRef, Staging } from '#shared/ledger.ts';
import { stripQuotes } from './events.ts';

/** One object version as the ingester reads it. */
export interface ObjectVersion extends FileRef {
  readonly versionId?: string;
  /**
   * The version's bytes are read from its staged copy instead (complete: `size` set): the inflated bytes of
   * a gzip file, in objects of the same bucket (`staging.ts`). The version itself still names everything
   * read (signal ids, the ledger item, the rejects).
   */
  readonly staged?: Staging;
}

/** Counts bytes as they pass. */
export async function* counted(
  source: AsyncIterable<Uint8Array>,
  onBytes: (n: number) => void,
): AsyncGenerator<Buffer> {
  for await (const chunk of source) {
    onBytes(chunk.byteLength);
    yield Buffer.isBuffer(chunk) ? chunk : Buffer.from(chunk.buffer, chunk.byteOffset, chunk.byteLength);
  }
}

/**
 * Which bytes a read may return: the version named, if any, and in every case only bytes whose ETag is the
 * one the ledger item and the signal ids are keyed by. A version id alone would read that version whatever
 * ETag a (wrong or stale) message paired it with; a mismatch answers 412 PreconditionFailed, the "object
 * gone" path.
 */
function versionParams(obj: ObjectVersion) {
  return { ...(obj.versionId ? { VersionId: obj.versionId } : {}), IfMatch: `"${obj.etag}"` };
}

/**
 * Streams the object's bytes (never held whole): all of them, or bytes `[fromByte, toByte)` with a ranged
 * GET when either is given.
 */
export async function openObjectStream(
  s3: S3Client,
  obj: ObjectVersion,
  fromByte?: number,
  toByte?: number,
): Promise<{ body: AsyncIterable<Uint8Array>; contentLength?: number; contentEncoding?: string }> {
  if (obj.staged) return openStagedStream(s3, obj.bucket, obj.staged, fromByte ?? 0, toByte);
  const ranged = fromByte !== undefined || toByte !== undefined;
  const out = await s3.send(
    new GetObjectCommand({
      Bucket: obj.bucket,
      Key: obj.key,
      ...(ranged ? { Range: `bytes=${fromByte ?? 0}-${toByte !== undefined ? toByte - 1 : ''}` } : {}),
      ...versionParams(obj),
    }),
  );
  if (!out.Body) throw new Error(`GetObject returned no body for s3://${obj.bucket}/${obj.key}`);
  return {
    body: out.Body as AsyncIterable<Uint8Array>,
    ...(out.ContentLength !== undefined ? { contentLength: out.ContentLength } : {}),
    ...(out.ContentEncoding ? { contentEncoding: contentCoding(out.ContentEncoding) } : {}),
  };
}

/**
 * A Content-Encoding in the one spelling the readers compare with: content codings are case-insensitive,
 * and `x-gzip` is `gzip` (RFC 9110, 8.4.1).
 */
export function contentCoding(header: string): string {
  const coding = header.trim().toLowerCase();
  return coding === 'x-gzip' ? 'gzip' : coding;
}

/**
 * Reads bytes `[start, end)` of an object with one ranged GET (fewer when the object is shorter), counting
 * them with `onBytes`.
 */
export async function readObjectRange(
  s3: S3Client,
  obj: ObjectVersion,
  start: number,
  end: number,
  onBytes: (n: number) => void,
): Promise<Buffer> {
  if (end <= start) return Buffer.alloc(0);
  if (obj.staged) {
    const { body } = await openStagedStream(s3, obj.bucket, obj.staged, start, end, false);
    const pieces: Buffer[] = [];
    for await (const piece of counted(body, onBytes)) pieces.push(piece);
    return Buffer.concat(pieces);
  }
  const out = await s3.send(
    new GetObjectCommand({
      Bucket: obj.bucket,
      Key: obj.key,
      Range: `bytes=${start}-${end - 1}`,
      ...versionParams(obj),
    }),
  );
  if (!out.Body) throw new Error(`ranged GetObject returned no body for s3://${obj.bucket}/${obj.key}`);
  const bytes = await out.Body.transformToByteArray();
  onBytes(bytes.byteLength);
  return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
}

/** The key of staged object `index`. */
export function stagedObjectKey(staging: Staging, index: number): string {
  return `${staging.prefix}${String(index).padStart(6, '0')}`;
}

/**
 * Bytes `[from, to)` of a staged copy (to its end without `to`), one ranged GET per staged object they
 * touch, in order. When they reach the end of a copy whose stream failed, the failure is thrown after the
 * last byte, as inflating the file itself throws it (`failAtEnd`).
 */
function openStagedStream(
  s3: S3Client,
  bucket: string,
  staging: Staging,
  from: number,
  to?: number,
  failAtEnd = true,
): { body: AsyncIterable<Uint8Array>; contentLength: number } {
  const { size } = staging;
  // A staging recorded before it named its bucket is in the file's.
  const stagedIn = staging.bucket ?? bucket;
  if (size === undefined) throw new Error(`the staged copy under ${staging.prefix} is not complete`);
  const whole: number = size;
  const end = Math.min(to ?? size, size);
  const each = staging.objectBytes;
  async function* body(): AsyncGenerator<Uint8Array> {
    for (let i = Math.floor(from / each); i * each < end; i++) {
      const first = Math.max(from, i * each) - i * each;
      const last = Math.min(end, (i + 1) * each) - i * each;
      if (last <= first) continue;
      const out = await s3.send(
        new GetObjectCommand({
          Bucket: stagedIn,
          Key: stagedObjectKey(staging, i),
          Range: `bytes=${first}-${last - 1}`,
        }),
      );
      if (!out.Body) throw new Error(`GetObject returned no body for ${stagedObjectKey(staging, i)}`);
      yield* out.Body as AsyncIterable<Uint8Array>;
    }
    const failure = staging.failure;
    if (failAtEnd && failure && end >= whole) {
      throw failure.type === 'InflationLimitError'
        ? new InflationLimitError(failure.reason, failure.location)
        : new MalformedFileError(failure.reason, failure.location);
    }
  }
  return { body: body(), contentLength: Math.max(0, end - from) };
}

/**
 * Looks up an object's ETag, size and version when the event did not carry them: of the version named, if
 * any (its ETag, not the current version's), else of the current version.
 */
export async function headObject(
  s3: S3Client,
  bucket: string,
  key: string,
  versionId?: string,
): Promise<{ etag: string; size?: number; versionId?: string }> {
  const out = await s3.send(
    new HeadObjectCommand({ Bucket: bucket, Key: key, ...(versionId ? { VersionId: versionId } : {}) }),
  );
  return {
    etag: stripQuotes(out.ETag ?? ''),
    ...(out.ContentLength !== undefined ? { size: out.ContentLength } : {}),
    ...(out.VersionId ? { versionId: out.VersionId } : {}),
  };
}

/**
 * A random-access view of an object for the Parquet reader: each slice is one ranged GET, so only the
 * footer and the column chunks being read are ever in memory.
 */
export function s3AsyncBuffer(
  s3: S3Client,
  obj: ObjectVersion,
  byteLength: number,
  onBytes: (n: number) => void,
): AsyncBuffer {
  return {
    byteLength,
    async slice(start: number, end?: number): Promise<ArrayBuffer> {
      const last = (end ?? byteLength) - 1;
      if (last < start) return new ArrayBuffer(0);
      const out = await s3.send(
        new GetObjectCommand({
          Bucket: obj.bucket,
          Key: obj.key,
          Range: `bytes=${start}-${last}`,
          ...versionParams(obj),
        }),
      );
      if (!out.Body) throw new Error('ranged GetObject returned no body');
      const bytes = await out.Body.transformToByteArray();
      onBytes(bytes.byteLength);
      return bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.byteLength) as ArrayBuffer;
    },
  };
}

/** Writes a stream to a private temporary file; the caller removes it with the returned `dispose`. */
export async function spoolToTempFile(
  source: AsyncIterable<Buffer>,
  dir = tmpdir(),
): Promise<{ path: string; dispose: () => Promise<void> }> {
  const folder = await mkdtemp(join(dir, 'pulse-'));
  const path = join(folder, 'object');
  const dispose = () => rm(folder, { recursive: true, force: true });
  try {
    await pipeline(source, createWriteStream(path, { mode: 0o600 }));
  } catch (err) {
    await dispose();
    throw err;
  }
  return { path, dispose };
}
