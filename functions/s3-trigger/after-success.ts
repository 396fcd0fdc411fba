import {
  CopyObjectCommand,
  DeleteObjectCommand,
  GetObjectTaggingCommand,
  HeadObjectCommand,
  PutObjectTaggingCommand,
  type S3Client,
} from '@aws-sdk/client-s3';
import { describeError, isObjectGone } from '#shared/errors.ts';
import type { AfterSuccessRecord, LedgerItem } from '#shared/ledger.ts';
import type { ResolvedRoute } from '#shared/routes.ts';
import { settings } from '#shared/settings.ts';
import type { IngestDeps } from './ingest-types.ts';
import type { ObjectVersion } from './source.ts';

/**
 * What the s3-trigger does with an object once it (every part of it) SUCCEEDED: its route's `afterSuccess`
 * (`tag`, an archive prefix, `delete`; `keep` does nothing). It acts on the version that was ingested, never
 * on the latest: the archive is a copy of that version (CopyObject with its versionId), and the delete
 * removes that version (DeleteObject with its versionId), so a newer version uploaded meanwhile is left
 * alone. Each step may run again: a redelivered event whose item is SUCCESS without a record of it (the
 * invocation died between the two), or with an error, runs it again, and each step then finds its work done.
 * The outcome, or its error, is recorded on the ledger item (`afterSuccess`); an error never turns the
 * SUCCESS into FAILED.
 */

/** The largest object one CopyObject copies (S3: 5 GB); a larger one would need a multipart copy. */
export const MAX_COPY_BYTES = 5 * 1024 ** 3;

/** Whether the route asks for something after success that `item` does not record as done. */
export function afterSuccessDue(route: ResolvedRoute, item: LedgerItem | undefined): boolean {
  if (route.afterSuccess === 'keep') return false;
  const done = item?.afterSuccess;
  return done === undefined || done.error !== undefined;
}

/**
 * Runs the route's after-success action on `file` and records it in the ledger. Never throws for the
 * action's own failure (it is recorded, and logged): the file stays SUCCESS.
 */
export async function runAfterSuccess(
  file: ObjectVersion,
  size: number | undefined,
  route: ResolvedRoute,
  deps: Pick<IngestDeps, 's3' | 'ledger' | 'logger' | 'now'>,
): Promise<AfterSuccessRecord | undefined> {
  const policy = route.afterSuccess;
  if (policy === 'keep') return undefined;
  const now = deps.now ?? Date.now;
  const action = typeof policy === 'object' ? 'archive' : policy;
  const target = typeof policy === 'object' ? `${policy.archivePrefix}${file.key}` : undefined;
  let record: AfterSuccessRecord;
  try {
    const version = await withVersionId(deps.s3, file);
    if (action === 'tag') await tag(deps.s3, version);
    else if (action === 'archive') await archive(deps.s3, version, size, target as string);
    else await remove(deps.s3, version);
    record = { action, at: new Date(now()).toISOString(), ...(target ? { target } : {}) };
    deps.logger.info('After success', { action, ...(target ? { target } : {}) });
  } catch (err) {
    const described = describeError(err);
    const error = `${described.type}: ${described.message}`;
    record = { action, at: new Date(now()).toISOString(), ...(target ? { target } : {}), error };
    deps.logger.warn('After success failed; the file stays SUCCESS and a redelivery tries again', {
      action,
      error,
    });
  }
  await deps.ledger.recordAfterSuccess(file, record);
  return record;
}

/**
 * The version with its version id. S3's event names it for a versioned bucket; when a task has none (moto's
 * notifications leave it out; a backfill message may), it is the current version if that still has the ETag
 * read (HeadObject If-Match: 412 otherwise, and nothing is done to a version that was not ingested).
 */
async function withVersionId(s3: S3Client, file: ObjectVersion): Promise<ObjectVersion> {
  if (file.versionId) return file;
  const head = await s3.send(
    new HeadObjectCommand({ Bucket: file.bucket, Key: file.key, IfMatch: `"${file.etag}"` }),
  );
  return head.VersionId && head.VersionId !== 'null' ? { ...file, versionId: head.VersionId } : file;
}

/** Adds the pulse tag to the version's tags (PutObjectTagging replaces the set: the others are kept). */
async function tag(s3: S3Client, file: ObjectVersion): Promise<void> {
  const version = file.versionId ? { VersionId: file.versionId } : {};
  const current = await s3.send(
    new GetObjectTaggingCommand({ Bucket: file.bucket, Key: file.key, ...version }),
  );
  const others = (current.TagSet ?? []).filter((t) => t.Key !== settings.routes.tagKey);
  await s3.send(
    new PutObjectTaggingCommand({
      Bucket: file.bucket,
      Key: file.key,
      ...version,
      Tagging: { TagSet: [...others, { Key: settings.routes.tagKey, Value: 'true' }] },
    }),
  );
}

/** Copies the version to `target`, then deletes the version. Done already when the version is gone and the copy is there. */
async function archive(
  s3: S3Client,
  file: ObjectVersion,
  size: number | undefined,
  target: string,
): Promise<void> {
  if (size !== undefined && size > MAX_COPY_BYTES) {
    throw new Error(
      `the object is ${size} bytes: one CopyObject copies at most 5 GB (a multipart copy is not implemented); archive it by hand`,
    );
  }
  const source = `${file.bucket}/${encodeKey(file.key)}${file.versionId ? `?versionId=${encodeURIComponent(file.versionId)}` : ''}`;
  try {
    await s3.send(
      new CopyObjectCommand({
        Bucket: file.bucket,
        Key: target,
        CopySource: source,
        // The copy matches the version read: a source changed since (no version id) fails with 412.
        CopySourceIfMatch: `"${file.etag}"`,
      }),
    );
  } catch (err) {
    if (!isObjectGone(err) || !(await exists(s3, file.bucket, target))) throw err;
    // A run before this one copied it and deleted the version: nothing left to do.
    return;
  }
  await remove(s3, file);
}

/** Deletes the version ingested (with its version id: the data goes, not just behind a delete marker). */
async function remove(s3: S3Client, file: ObjectVersion): Promise<void> {
  await s3.send(
    new DeleteObjectCommand({
      Bucket: file.bucket,
      Key: file.key,
      ...(file.versionId ? { VersionId: file.versionId } : {}),
    }),
  );
}

async function exists(s3: S3Client, bucket: string, key: string): Promise<boolean> {
  try {
    await s3.send(new HeadObjectCommand({ Bucket: bucket, Key: key }));
    return true;
  } catch (err) {
    if (isObjectGone(err)) return false;
    throw err;
  }
}

/** A key in a CopySource: URL-encoded, its slashes kept. */
function encodeKey(key: string): string {
  return key.split('/').map(encodeURIComponent).join('/');
}
