import { DeleteObjectsCommand, ListObjectsV2Command, S3Client } from '@aws-sdk/client-s3';
import { mockClient } from 'aws-sdk-client-mock';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { deleteStaleSegments, rejectsKey, segmentKey } from '../../../shared/quarantine.ts';

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
