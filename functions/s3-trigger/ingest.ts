import { METRIC } from '#shared/contract.ts';
import { FileBusyError, isObjectGone } from '#shared/errors.ts';
import type { ClaimMeta, ClaimResult } from '#shared/ledger.ts';
import { MetricUnit } from '#shared/observability.ts';
import { DEFAULT_RESOLVED_ROUTES, noRouteReason, type ResolvedRoute, routeFor } from '#shared/routes.ts';
import { settings } from '#shared/settings.ts';
import { afterSuccessDue, runAfterSuccess } from './after-success.ts';
import type { FileTask } from './events.ts';
import { splittable } from './fan-out.ts';
import { FileRun } from './file-run.ts';
import type { IngestDeps, IngestOutcome } from './ingest-types.ts';
import { detectFormat } from './parsers/index.ts';
import { openRecords, Progress } from './records.ts';
import { headObject, type ObjectVersion } from './source.ts';
import { finishSplitFile, splitFile } from './split-file.ts';

export type { IngestConfig, IngestDeps, IngestOutcome } from './ingest-types.ts';

/**
 * Ingests one object version exactly once: claim it in the ledger, stream and parse it, validate each
 * record, pack valid signals onto the signals queue and quarantine the rest, then complete the ledger
 * item. Permanent failures end the item FAILED and resolve; transient ones mark it FAILED (retryable)
 * and throw so that SQS redelivers the event. A large object is split instead (fan-out, `fan-out.ts`):
 * its parts are announced on the file-events queue and each comes back here as a task with a `part`.
 */
export async function ingestFile(task: FileTask, deps: IngestDeps): Promise<IngestOutcome> {
  const { logger, metrics, ledger } = deps;
  const ignored = ignoredKey(task.key, deps);
  if (ignored) return { status: 'SKIPPED', reason: ignored };
  const version = await objectVersion(task, deps);
  if (!version) return { status: 'SKIPPED', reason: 'object no longer exists' };
  const { file, size, meta } = version;
  logger.appendKeys({
    objectKey: task.key,
    etag: file.etag,
    ...(task.part !== undefined ? { part: task.part } : {}),
  });
  try {
    const routes = deps.config.routes ?? DEFAULT_RESOLVED_ROUTES;
    const route = routeFor(routes, task.bucket, task.key);
    if (!route) {
      // As for a type it does not read: the object is recorded, with why, never left unseen.
      await ledger.skip(file, noRouteReason(routes, task.bucket, task.key), undefined, meta);
      metrics.addMetric(METRIC.filesSkipped, MetricUnit.Count, 1);
      logger.warn('Skipped a file no route takes');
      return { status: 'SKIPPED', reason: 'no route' };
    }
    const format = detectFormat(task.key);
    if (!format) {
      await ledger.skip(
        file,
        `unsupported file type: ${task.key} (expected ${settings.bucket.suffixes.join(' ')})`,
        undefined,
        meta,
      );
      metrics.addMetric(METRIC.filesSkipped, MetricUnit.Count, 1);
      logger.warn('Skipped a file of an unsupported type');
      return { status: 'SKIPPED', reason: 'unsupported file type' };
    }
    const subject = task.part !== undefined ? { ...file, part: task.part } : file;
    const claim = await ledger.claim(subject, deps.owner, meta);
    if (!claim.claimed) return await notClaimed(task, file, claim, deps, route);
    metrics.addMetric(METRIC.filesClaimed, MetricUnit.Count, 1);
    if (task.part === undefined && !claim.checkpoint && deps.announceParts && size !== undefined) {
      const fanOut = deps.config.fanOut;
      if (claim.parts !== undefined || (fanOut && splittable(format, size, fanOut))) {
        const split = await splitFile(task, file, format, size, meta, claim.parts, deps, route);
        if (split) return split;
      }
    }
    if (task.part !== undefined && !claim.range) {
      throw new Error(`part ${task.part} of s3://${file.bucket}/${file.key}@${file.etag} has no range`);
    }
    return await runFile(new FileRun(task, file, format, size, meta, claim, deps, route));
  } finally {
    logger.removeKeys(['objectKey', 'etag', 'part']);
  }
}

/** Why an object is never ingested (rejects, staged copies, folder markers), or undefined. */
function ignoredKey(key: string, deps: IngestDeps): string | undefined {
  if (key.startsWith(settings.bucket.rejectsPrefix)) {
    deps.logger.warn('Ignoring an object under the rejects prefix', { key });
    return 'rejects are never ingested';
  }
  if (key.endsWith('/')) return 'folder marker';
  if (key.startsWith(settings.bucket.stagingPrefix)) {
    deps.logger.warn('Ignoring an object under the staging prefix', { key });
    return 'staged copies are never ingested';
  }
  return undefined;
}

/**
 * The object version the task names, with its size and what the claim records; its ETag (and version and
 * size, where the event left them out) from a HeadObject when the event did not carry it. Undefined when
 * the object no longer exists.
 */
async function objectVersion(
  task: FileTask,
  deps: IngestDeps,
): Promise<{ file: ObjectVersion; size: number | undefined; meta: ClaimMeta } | undefined> {
  let etag = task.etag;
  let versionId = task.versionId;
  let size = task.size;
  if (!etag) {
    try {
      const head = await headObject(deps.s3, task.bucket, task.key, task.versionId);
      etag = head.etag;
      versionId ??= head.versionId;
      size ??= head.size;
    } catch (err) {
      if (isObjectGone(err)) return undefined;
      throw err;
    }
  }
  const file: ObjectVersion = {
    bucket: task.bucket,
    key: task.key,
    etag,
    ...(versionId ? { versionId } : {}),
  };
  const meta = {
    ...(versionId ? { versionId } : {}),
    ...(size !== undefined ? { size } : {}),
    ...(task.eventTime ? { eventTime: task.eventTime } : {}),
  };
  return { file, size, meta };
}

/** The ledger did not grant the claim: another worker holds it (the event comes back), or it has ended. */
async function notClaimed(
  task: FileTask,
  file: ObjectVersion,
  claim: Extract<ClaimResult, { claimed: false }>,
  deps: IngestDeps,
  route: ResolvedRoute,
): Promise<IngestOutcome> {
  const { logger, metrics, ledger } = deps;
  if (claim.reason === 'in-progress') {
    // Not acknowledged: if the worker holding the lease dies, this event is what brings the file back.
    logger.info('File is being ingested by another worker; the event will be retried');
    throw new FileBusyError(
      `s3://${file.bucket}/${file.key}@${file.etag}${task.part !== undefined ? ` part ${task.part}` : ''} is being ingested by another worker`,
    );
  }
  if (task.part !== undefined) {
    // The part ended before (this is a redelivery): if the invocation that ended it died before it could
    // end the file, this does.
    await finishSplitFile(file, deps, route);
    logger.info('Part not claimed', { reason: claim.reason, status: claim.item?.status });
    return { status: 'SKIPPED', reason: claim.reason };
  }
  if (claim.reason === 'duplicate') {
    await ledger.recordDuplicate(file);
    // The invocation that ended the file may have died before its after-success step, or it failed: again.
    if (afterSuccessDue(route, claim.item)) await runAfterSuccess(file, task.size, route, deps);
  }
  if (claim.reason === 'exhausted') metrics.addMetric(METRIC.filesFailed, MetricUnit.Count, 1);
  metrics.addMetric(METRIC.filesSkipped, MetricUnit.Count, 1);
  logger.info('File not claimed', { reason: claim.reason, status: claim.item?.status });
  return { status: 'SKIPPED', reason: claim.reason };
}

/**
 * Reads the claimed file (or part) and sends its records: from the checkpoint an earlier attempt left, or
 * the part's start; to the end of the file or the part. Each way the run ends is a method of its
 * {@link FileRun}; the promises of the per-record calls are awaited only when there are any.
 */
async function runFile(run: FileRun): Promise<IngestOutcome> {
  run.logClaimed();
  let cleanup: (() => Promise<void>) | undefined;
  try {
    const source = await run.source();
    if ('outcome' in source) return source.outcome;
    const { batches, kind, leftOut } = await openRecords(
      run.s3,
      source.file,
      run.plan.readFormat,
      source.size,
      run.countBytes,
      (dispose) => {
        cleanup = dispose;
      },
      run.span(source.size),
    );
    const progress = new Progress(kind, run.plan.resumedFrom);
    let lastRow = run.plan.start?.row ?? 0;
    for await (const batch of batches) {
      for (const rec of batch) {
        if (run.pace.outOfTime()) {
          const point = progress.before(rec);
          if (point) return await run.handOverAt(point);
        }
        const kept = run.keepUp(progress, rec);
        if (kept) await kept;
        const added = run.record(rec);
        if (added) await added;
        lastRow = rec.row;
        progress.done(rec);
        run.pace.work.fresh++;
      }
    }
    await run.leftOut(leftOut);
    run.checkEnded(lastRow);
    return await run.succeeded();
  } catch (err) {
    return await run.failed(err);
  } finally {
    await cleanup?.();
  }
}
