import { once } from 'node:events';
import { PassThrough } from 'node:stream';
import {
  DeleteObjectsCommand,
  ListObjectsV2Command,
  PutObjectCommand,
  type S3Client,
} from '@aws-sdk/client-s3';
import { Upload } from '@aws-sdk/lib-storage';
import { describeError, QuarantineError } from './errors.ts';
import { boundedKeyPart, S3_MAX_KEY_BYTES } from './keys.ts';
import { settings } from './settings.ts';

/**
 * The quarantine: rejected records, with their reasons, as NDJSON under the bucket's `rejects/` prefix.
 * Nothing rejected is dropped: every reject becomes a line that says what, where and why.
 */
export interface RejectEntry {
  /** Where the record came from: s3://bucket/key@etag#row, db:table:id, kafka:topic:partition:offset. */
  readonly ref: string;
  readonly reason: string;
  readonly row?: number;
  /** The record as parsed, when it could be parsed. */
  readonly record?: unknown;
  /** The raw text, when it could not. */
  readonly raw?: string;
}

/**
 * Room kept in every rejects key for the longest {@link segmentKey} suffix: `.from-row-` and a row number
 * (at most 16 digits), `.attempt-` and an attempt (at most 10): 45 bytes.
 */
const SEGMENT_SUFFIX_BYTES = 48;

/**
 * `rejects/<kind>/<path>.ndjson`: where the rejects of one file, message or batch go. Every producer's key
 * comes from here, and the path is outside input (an object key near S3's limit, a table name, row ids), so
 * it is bounded: kept as it is when short, else cut and ended with a digest of the whole path
 * (`boundedKeyPart`), so that the key and every {@link segmentKey} of it stay within S3's 1,024 bytes, the
 * same on every attempt.
 */
export function rejectsKey(kind: 's3' | 'db' | 'kafka' | 'scorer' | 'events', path: string): string {
  const head = `${settings.bucket.rejectsPrefix}${kind}/`;
  const room = S3_MAX_KEY_BYTES - SEGMENT_SUFFIX_BYTES - Buffer.byteLength(head) - '.ndjson'.length;
  return `${head}${boundedKeyPart(path, room)}.ndjson`;
}

/**
 * The rejects object of the part of a file read after a checkpoint by one attempt:
 * `<key without .ndjson>.from-row-<row>.attempt-<n>.ndjson`. The attempt keeps two workers that both
 * believe they hold the lease (one of them about to learn it lost it) from overwriting each other's object.
 */
export function segmentKey(key: string, fromRow: number, attempt: number): string {
  return `${segmentPrefix(key)}${fromRow}.attempt-${attempt}.ndjson`;
}

/** What every {@link segmentKey} of the rejects object `key` starts with. */
function segmentPrefix(key: string): string {
  const stem = key.endsWith('.ndjson') ? key.slice(0, -'.ndjson'.length) : key;
  return `${stem}.from-row-`;
}

/**
 * Deletes the rejects segments of a file (`fileKey`: its {@link rejectsKey}) that earlier attempts completed
 * and that no longer count. An attempt completes a segment at each checkpoint before it records the
 * checkpoint; one that died in between left a segment whose rejects the next attempt, resuming from the
 * checkpoint before, writes again. Kept: `keep` (the keys the ledger lists for the file), every segment of
 * this attempt or a later one, and segments starting outside `rows` (the other parts of a split file).
 * Returns how many were deleted.
 */
export async function deleteStaleSegments(
  s3: S3Client,
  bucket: string,
  fileKey: string,
  attempt: number,
  keep: readonly string[],
  rows?: { readonly first: number; readonly last: number },
): Promise<number> {
  const prefix = segmentPrefix(fileKey);
  const kept = new Set(keep);
  const stale: string[] = [];
  let token: string | undefined;
  do {
    const page = await s3.send(
      new ListObjectsV2Command({ Bucket: bucket, Prefix: prefix, ContinuationToken: token }),
    );
    for (const { Key } of page.Contents ?? []) {
      const m = Key ? /^(\d+)\.attempt-(\d+)\.ndjson$/.exec(Key.slice(prefix.length)) : null;
      if (!Key || !m || kept.has(Key)) continue;
      const fromRow = Number(m[1]);
      if (Number(m[2]) >= attempt) continue;
      if (rows && (fromRow < rows.first || fromRow > rows.last)) continue;
      stale.push(Key);
    }
    token = page.IsTruncated ? page.NextContinuationToken : undefined;
  } while (token);
  for (let i = 0; i < stale.length; i += 1000) {
    await s3.send(
      new DeleteObjectsCommand({
        Bucket: bucket,
        Delete: { Objects: stale.slice(i, i + 1000).map((Key) => ({ Key })), Quiet: true },
      }),
    );
  }
  return stale.length;
}

const withBigints = (_k: string, v: unknown) => (typeof v === 'bigint' ? v.toString() : v);

function line(entry: RejectEntry, at: string): string {
  try {
    return `${JSON.stringify({ ...entry, at }, withBigints)}\n`;
  } catch (err) {
    // A record nested deeper than the stack allows (or circular) cannot be written as JSON: the reject is
    // kept all the same, with its reason and why its record is not there, rather than failing the whole file.
    const { record: _dropped, ...rest } = entry;
    const why = `the record could not be written as JSON (${(err as Error).message})`;
    return `${JSON.stringify({ ...rest, recordOmitted: why, at }, withBigints)}\n`;
  }
}

/**
 * Streams an unbounded number of rejects into one object through a multipart upload, so memory stays
 * flat; nothing is written until the first reject. At a checkpoint, {@link rotate} completes the object
 * (a reject is durable only once its object is complete) and continues in a new one. Once the upload has
 * failed, every later call throws the same {@link QuarantineError} (naming the object and S3's answer,
 * transient or permanent as that answer is) until {@link abort}: the rejects written so far are in no
 * object, and a new upload under the same key would replace them with fewer.
 */
export class QuarantineWriter {
  readonly #s3: S3Client;
  readonly #bucket: string;
  #key: string;
  #stream: PassThrough | undefined;
  #upload: Promise<unknown> | undefined;
  #failure: QuarantineError | undefined;
  count = 0;

  constructor(s3: S3Client, bucket: string, key: string) {
    this.#s3 = s3;
    this.#bucket = bucket;
    this.#key = key;
  }

  /** The object the next reject goes to. */
  get key(): string {
    return this.#key;
  }

  async write(entry: RejectEntry): Promise<void> {
    if (this.#failure) throw this.#failure;
    if (!this.#stream) {
      this.#stream = new PassThrough();
      const upload = new Upload({
        client: this.#s3,
        params: {
          Bucket: this.#bucket,
          Key: this.#key,
          Body: this.#stream,
          ContentType: 'application/x-ndjson',
        },
        queueSize: 2,
      });
      this.#upload = upload.done();
      this.#upload.catch(() => undefined);
    }
    this.count++;
    if (!this.#stream.write(line(entry, new Date().toISOString()))) {
      try {
        await Promise.race([once(this.#stream, 'drain'), this.#upload]);
      } catch (err) {
        throw this.#failed(err);
      }
    }
  }

  /** Finishes the object; returns its key, or undefined when nothing was rejected. */
  async close(): Promise<string | undefined> {
    if (this.#failure) throw this.#failure;
    if (!this.#stream) return undefined;
    this.#stream.end();
    try {
      await this.#upload;
    } catch (err) {
      throw this.#failed(err);
    } finally {
      this.#stream = undefined;
      this.#upload = undefined;
    }
    return this.#key;
  }

  /**
   * Makes every reject written so far durable: completes the current object when it holds any, and then
   * sends later rejects to `nextKey`. Returns the completed object's key, or undefined when nothing was
   * written since the last rotation (the current key is then kept).
   */
  async rotate(nextKey: string): Promise<string | undefined> {
    const done = await this.close();
    if (done !== undefined) this.#key = nextKey;
    return done;
  }

  /** Gives up on a partial object (the next attempt rewrites it whole), and on a failed one. */
  async abort(): Promise<void> {
    this.#stream?.destroy();
    this.#stream = undefined;
    this.#upload = undefined;
    this.#failure = undefined;
  }

  #failed(err: unknown): QuarantineError {
    if (!this.#failure) {
      const { type, message } = describeError(err);
      this.#failure = new QuarantineError(
        `rejects could not be written to s3://${this.#bucket}/${this.#key}: ${type}: ${message}`,
        { cause: err },
      );
    }
    return this.#failure;
  }
}

/** Writes a small, bounded set of rejects in one PutObject. */
export async function putRejects(
  s3: S3Client,
  bucket: string,
  key: string,
  entries: readonly RejectEntry[],
): Promise<void> {
  if (entries.length === 0) return;
  const at = new Date().toISOString();
  await s3.send(
    new PutObjectCommand({
      Bucket: bucket,
      Key: key,
      Body: entries.map((e) => line(e, at)).join(''),
      ContentType: 'application/x-ndjson',
    }),
  );
}
