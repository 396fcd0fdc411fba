import { createHash } from 'node:crypto';
import { DeleteObjectsCommand, PutObjectCommand, type S3Client } from '@aws-sdk/client-s3';
import { MalformedFileError } from '#shared/errors.ts';
import type { Staging } from '#shared/ledger.ts';
import { settings } from '#shared/settings.ts';
import { type DetectedFormat, decompressBounded, detectFormat } from './parsers/index.ts';
import { leftOutReason } from './records.ts';
import { counted, type ObjectVersion, openObjectStream, stagedObjectKey } from './source.ts';

/**
 * Staging: a large compressed (gzip or zstd) file is inflated once into staged objects, which are then read as the file's
 * uncompressed bytes: byte checkpoints instead of record checkpoints (a continuation starts where the last
 * one stopped instead of inflating and parsing everything before it again), and fan-out into parts like any
 * large uncompressed file. Row numbers, and so signal ids (`s3://bucket/key@etag#row`), are those of a read
 * of the compressed file itself: the staged bytes are exactly the bytes it inflates to.
 *
 * A compressed stream cannot be resumed part way, but staging can, at a staged object: each object is complete
 * before the ledger records it, and an attempt that goes on inflates the stream from its start again and
 * drops the bytes of the objects already staged (inflating runs at hundreds of MB/s; parsing, which it
 * replaces, at about ten).
 */

export interface StagingOptions {
  /** Compressed objects at least this large (compressed) are staged. */
  readonly minBytes: number;
  /** Inflated bytes per staged object. */
  readonly objectBytes: number;
  /** The pipeline's own bucket, where staged copies go. @default the file's bucket */
  readonly bucket?: string;
}

/** Whether an object of this format and (compressed) size is read from a staged copy. */
export function stageable(format: DetectedFormat, size: number | undefined, opts: StagingOptions): boolean {
  if (!format.compression || size === undefined || size < opts.minBytes) return false;
  return format.format === 'csv' || format.format === 'ndjson';
}

/**
 * Where an object version's staged copy goes: under the staging prefix, named by a digest of the version
 * (an object key may be up to 1,024 bytes, and the staged keys must stay under S3's limit).
 */
export function stagingPrefix(file: ObjectVersion): string {
  const digest = createHash('sha256').update(`${file.bucket}/${file.key}@${file.etag}`).digest('hex');
  return `${settings.bucket.stagingPrefix}${digest}/`;
}

/** What staging needs from the invocation running it. */
export interface StageHooks {
  /** Counts compressed bytes fetched. */
  readonly onBytes: (n: number) => void;
  /**
   * Awaited every few MiB while bytes already staged are inflated again and dropped, with how many have
   * been: keeps the lease; may throw to stop (out of time).
   */
  readonly pace: (redone: number) => Promise<void>;
  /** Records `staging` (one more object complete, or the whole stream) before anything is staged after it. */
  readonly staged: (staging: Staging, fresh: number) => Promise<void>;
  /** Asked after each staged object: when true, staging stops there and the file is handed over. */
  readonly outOfTime: () => boolean;
}

/** Dropped bytes between two `pace` calls. */
const PACE_BYTES = 4 * 1024 * 1024;

/**
 * Stages `file` (a gzip or zstd object, as its key says) from where `from` left off: inflates it from its start, drops the bytes of
 * the objects already staged, and writes the rest in objects of `from.objectBytes`, recording each. Returns
 * the staging once the whole stream is staged (`size` set), or undefined when it stopped because the time
 * ran out (`hooks.outOfTime`). A stream that fails as malformed (corrupt or truncated data, past the
 * inflation bound) is staged up to the failure, which is recorded to be thrown where reading the staged
 * copy reaches it, after every byte before it, as reading the file itself would. Other errors pass through.
 */
export async function stageObject(
  s3: S3Client,
  file: ObjectVersion,
  size: number | undefined,
  from: Staging,
  hooks: StageHooks,
): Promise<Staging | undefined> {
  const each = from.objectBytes;
  const skipUntil = from.objects * each;
  const stagedIn = from.bucket ?? file.bucket;
  const object = await openObjectStream(s3, file);
  const leftOut: string[] = [];
  const inflated = decompressBounded(
    detectFormat(file.key)?.compression ?? 'gzip',
    counted(object.body, hooks.onBytes),
    object.contentLength ?? size,
    settings.limits,
    (trailing) => {
      leftOut.push(leftOutReason(trailing));
    },
  );
  let offset = 0;
  let objects = from.objects;
  let fresh = 0;
  let paced = 0;
  let pending: Buffer[] = [];
  let pendingBytes = 0;
  const put = async (body: Buffer) => {
    await s3.send(
      new PutObjectCommand({ Bucket: stagedIn, Key: stagedObjectKey(from, objects), Body: body }),
    );
    objects++;
    fresh += body.length;
  };
  let failure: Staging['failure'];
  try {
    for await (const piece of inflated) {
      let chunk = piece;
      if (offset < skipUntil) {
        const drop = Math.min(chunk.length, skipUntil - offset);
        offset += drop;
        chunk = chunk.subarray(drop);
        if (offset - paced >= PACE_BYTES || offset === skipUntil) {
          paced = offset;
          await hooks.pace(offset);
        }
        if (chunk.length === 0) continue;
      }
      offset += chunk.length;
      pending.push(chunk);
      pendingBytes += chunk.length;
      while (pendingBytes >= each) {
        const [body, rest] = split(pending, each);
        pending = rest;
        pendingBytes -= each;
        await put(body);
        await hooks.staged({ ...from, objects }, fresh);
        if (hooks.outOfTime()) return undefined;
      }
    }
  } catch (err) {
    if (!(err instanceof MalformedFileError)) throw err;
    failure = { type: err.name, reason: err.reason, location: err.location };
  }
  if (offset < skipUntil) {
    throw new Error(
      `the gzip stream inflated to ${offset} bytes this time, fewer than the ${skipUntil} already staged`,
    );
  }
  if (pendingBytes > 0) await put(Buffer.concat(pending, pendingBytes));
  const done: Staging = {
    ...from,
    objects,
    size: offset,
    ...(leftOut.length > 0 ? { leftOut } : {}),
    ...(failure ? { failure } : {}),
  };
  await hooks.staged(done, fresh);
  return done;
}

/** The first `n` bytes of `pieces` as one buffer, and the pieces of what is left. */
function split(pieces: Buffer[], n: number): [Buffer, Buffer[]] {
  const head: Buffer[] = [];
  let got = 0;
  let i = 0;
  for (; i < pieces.length && got < n; i++) {
    const piece = pieces[i] as Buffer;
    if (got + piece.length <= n) {
      head.push(piece);
      got += piece.length;
    } else {
      head.push(piece.subarray(0, n - got));
      return [Buffer.concat(head, n), [piece.subarray(n - got), ...pieces.slice(i + 1)]];
    }
  }
  return [Buffer.concat(head, n), pieces.slice(i)];
}

/**
 * Deletes a staged copy once its file has ended (no GETs, no List: the keys are known). The bucket is
 * versioned: each delete leaves a delete marker and the data as a noncurrent version, which the lifecycle
 * rule on the staging prefix removes (`settings.staging`). Returns how many objects were deleted. `bucket`
 * is the file's, where a staging recorded without its own bucket is.
 */
export async function deleteStaged(s3: S3Client, bucket: string, staging: Staging): Promise<number> {
  const keys = Array.from({ length: staging.objects }, (_, i) => stagedObjectKey(staging, i));
  let deleted = 0;
  for (let i = 0; i < keys.length; i += 1000) {
    const batch = keys.slice(i, i + 1000);
    const out = await s3.send(
      new DeleteObjectsCommand({
        Bucket: staging.bucket ?? bucket,
        Delete: { Objects: batch.map((Key) => ({ Key })), Quiet: true },
      }),
    );
    const errors = out.Errors ?? [];
    if (errors.length > 0) {
      throw new Error(
        `could not delete ${errors.length} staged object(s), e.g. ${errors[0]?.Key}: ${errors[0]?.Code} ${errors[0]?.Message ?? ''}`,
      );
    }
    deleted += batch.length;
  }
  return deleted;
}
