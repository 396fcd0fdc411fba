import { DeleteObjectsCommand, ListObjectsV2Command, PutObjectCommand, S3Client } from '@aws-sdk/client-s3';
import { mockClient } from 'aws-sdk-client-mock';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { QuarantineError } from '#shared/errors.ts';
import { boundedKeyPart, S3_MAX_KEY_BYTES } from '#shared/keys.ts';
import { deleteStaleSegments, QuarantineWriter, rejectsKey, segmentKey } from '#shared/quarantine.ts';

const s3Mock = mockClient(S3Client);
const s3 = new S3Client({ region: 'us-east-1' });
const file = rejectsKey('s3', 'b/incoming/f.csv@e1');
const seg = (row: number, attempt: number) => segmentKey(file, row, attempt);

/** Serves `keys` to ListObjectsV2 by prefix, `pageSize` at a time; returns the keys DeleteObjects was given. */
function bucketOf(keys: string[], pageSize = 1000): string[][] {
  const deleted: string[][] = [];
  s3Mock.on(ListObjectsV2Command).callsFake((input: { Prefix?: string; ContinuationToken?: string }) => {
    const all = keys.filter((k) => k.startsWith(input.Prefix ?? '')).sort();
    const from = Number(input.ContinuationToken ?? 0);
    const page = all.slice(from, from + pageSize);
    const more = from + pageSize < all.length;
    return {
      Contents: page.map((Key) => ({ Key })),
      IsTruncated: more,
      ...(more ? { NextContinuationToken: String(from + pageSize) } : {}),
    };
  });
  s3Mock.on(DeleteObjectsCommand).callsFake((input: { Delete?: { Objects?: { Key?: string }[] } }) => {
    deleted.push((input.Delete?.Objects ?? []).map((o) => o.Key ?? ''));
    return {};
  });
  return deleted;
}

describe('deleteStaleSegments', () => {
  beforeEach(() => s3Mock.reset());
  afterEach(() => s3Mock.reset());

  it('deletes only the segments of earlier attempts that the ledger does not list', async () => {
    // Prepare: attempt 1 completed a segment from row 1001 and died before recording its checkpoint;
    // attempt 2 did the same; attempt 3 resumed from the checkpoint at row 1000 and wrote row 1001 on.
    const deleted = bucketOf([
      file,
      seg(501, 1),
      seg(1001, 1),
      seg(1001, 2),
      seg(1001, 3),
      seg(3001, 4),
      rejectsKey('s3', 'b/incoming/f.csv@e2'),
      segmentKey(rejectsKey('s3', 'b/incoming/f.csv@e2'), 1001, 1),
    ]);

    // Act
    const n = await deleteStaleSegments(s3, 'qb', file, 3, [file, seg(501, 1), seg(1001, 3)]);

    // Assess
    expect(n).toBe(2);
    expect(deleted).toEqual([[seg(1001, 1), seg(1001, 2)]]);
  });

  it('leaves the segments of the other parts of a split file alone', async () => {
    // Prepare: this part holds rows 1001 to 2000
    const deleted = bucketOf([
      seg(1, 1),
      seg(900, 1),
      seg(1001, 1),
      seg(1500, 1),
      seg(2001, 1),
      seg(1001, 2),
    ]);

    // Act
    const n = await deleteStaleSegments(s3, 'qb', file, 2, [seg(1001, 2)], { first: 1001, last: 2000 });

    // Assess
    expect(n).toBe(2);
    expect(deleted).toEqual([[seg(1001, 1), seg(1500, 1)]]);
  });

  it('reads every page of the listing and deletes a thousand keys a call', async () => {
    // Prepare
    const stale = Array.from({ length: 2500 }, (_, i) => seg(i + 2, 1));
    const deleted = bucketOf([file, ...stale], 700);

    // Act
    const n = await deleteStaleSegments(s3, 'qb', file, 2, [file]);

    // Assess
    expect(n).toBe(2500);
    expect(deleted.map((d) => d.length)).toEqual([1000, 1000, 500]);
    expect(new Set(deleted.flat())).toEqual(new Set(stale));
  });

  it('deletes nothing when no earlier attempt left a segment', async () => {
    // Prepare
    const deleted = bucketOf([file, seg(1001, 2)]);

    // Act
    const n = await deleteStaleSegments(s3, 'qb', file, 2, [file, seg(1001, 2)]);

    // Assess
    expect(n).toBe(0);
    expect(deleted).toEqual([]);
  });
});

describe('rejectsKey', () => {
  const bytes = (s: string) => Buffer.byteLength(s, 'utf8');
  /** The largest row and attempt numbers a segment key can carry. */
  const longestSegment = (key: string) => segmentKey(key, Number.MAX_SAFE_INTEGER, 4_294_967_295);

  it('keeps a short path as it is', () => {
    expect(rejectsKey('s3', 'b/incoming/a.csv@e1')).toBe('rejects/s3/b/incoming/a.csv@e1.ndjson');
  });

  it("bounds the key of any path, and every segment key of it, within S3's 1,024 bytes", () => {
    // Prepare: object keys up to S3's limit, in 1-, 2-, 3- and 4-byte characters, a 63-byte bucket, a
    // multipart ETag.
    const bucket = 'b'.repeat(63);
    const etag = `${'0'.repeat(32)}-10000`;
    for (const ch of ['k', 'é', '€', '😀']) {
      for (let n = 1; n * bytes(ch) <= S3_MAX_KEY_BYTES; n += 7) {
        const objectKey = ch.repeat(n);
        // Act
        const key = rejectsKey('s3', `${bucket}/${objectKey}@${etag}`);
        // Assess
        expect(bytes(longestSegment(key)), `${n} × ${ch}`).toBeLessThanOrEqual(S3_MAX_KEY_BYTES);
        expect(key.includes('\uFFFD'), `${n} × ${ch}: a character cut in two`).toBe(false);
      }
    }
  });

  it('names two long paths that differ only at their end apart, the same way on every call', () => {
    // Prepare
    const long = (etag: string) => `b/incoming/${'k'.repeat(990)}.csv@${etag}`;
    // Act
    const [a, b, again] = [
      rejectsKey('s3', long('e1')),
      rejectsKey('s3', long('e2')),
      rejectsKey('s3', long('e1')),
    ];
    // Assess
    expect(a).not.toBe(b);
    expect(again).toBe(a);
    expect(a).toMatch(/^rejects\/s3\/b\/incoming\/k+~[0-9a-f]{32}\.ndjson$/);
  });

  it('never gives a short path the key of a long one', () => {
    // Prepare: a short path chosen to read exactly like the bounded form of a long one.
    const max = 200;
    const long = 'x'.repeat(500);
    const shortened = boundedKeyPart(long, max);
    // Act
    const short = boundedKeyPart(shortened, max);
    // Assess: too long to be kept as it is, so shortened again, to something else.
    expect(bytes(shortened)).toBeGreaterThan(max - 4);
    expect(bytes(shortened)).toBeLessThanOrEqual(max);
    expect(short).not.toBe(shortened);
  });
});

describe('QuarantineWriter', () => {
  beforeEach(() => s3Mock.reset());
  afterEach(() => s3Mock.reset());

  it("fails with the object and S3's answer, and keeps failing rather than writing fewer rejects under the key", async () => {
    // Prepare
    s3Mock.on(PutObjectCommand).rejectsOnce(
      Object.assign(new Error('Your key is too long'), {
        name: 'KeyTooLongError',
        $metadata: { httpStatusCode: 400 },
      }),
    );
    const writer = new QuarantineWriter(s3, 'qb', 'rejects/s3/x.ndjson');
    await writer.write({ ref: 'r#1', reason: 'bad' });
    // Act
    const closed = writer.close();
    // Assess: permanent, naming the object; a later write or close fails the same way and sends nothing.
    await expect(closed).rejects.toBeInstanceOf(QuarantineError);
    await expect(closed).rejects.toThrow(
      'rejects could not be written to s3://qb/rejects/s3/x.ndjson: KeyTooLongError: Your key is too long',
    );
    await expect(writer.write({ ref: 'r', reason: 'file failed' })).rejects.toBeInstanceOf(QuarantineError);
    await expect(writer.close()).rejects.toBeInstanceOf(QuarantineError);
    expect(s3Mock.commandCalls(PutObjectCommand)).toHaveLength(1);
    const err = await closed.then(
      () => undefined,
      (e: QuarantineError) => e,
    );
    expect(err?.kind).toBe('permanent');
  });

  it('reports a throttled upload as a transient failure', async () => {
    // Prepare
    s3Mock
      .on(PutObjectCommand)
      .rejects(
        Object.assign(new Error('slow down'), { name: 'SlowDown', $metadata: { httpStatusCode: 503 } }),
      );
    const writer = new QuarantineWriter(s3, 'qb', 'rejects/s3/x.ndjson');
    await writer.write({ ref: 'r#1', reason: 'bad' });
    // Act
    const err = await writer.close().then(
      () => undefined,
      (e: QuarantineError) => e,
    );
    // Assess
    expect(err).toBeInstanceOf(QuarantineError);
    expect(err?.kind).toBe('transient');
  });
});
