import { METRIC } from '#shared/contract.ts';
import { describeError } from '#shared/errors.ts';
import type { ClaimMeta, SplitOutcome, Staging } from '#shared/ledger.ts';
import { MetricUnit } from '#shared/observability.ts';
import { DEFAULT_RESOLVED_ROUTES, type ResolvedRoute } from '#shared/routes.ts';
import { settings } from '#shared/settings.ts';
import { runAfterSuccess } from './after-success.ts';
import type { FileTask } from './events.ts';
import { type FanOutOptions, planParts } from './fan-out.ts';
import type { IngestDeps, IngestOutcome } from './ingest-types.ts';
import type { DetectedFormat } from './parsers/index.ts';
import type { ObjectVersion } from './source.ts';
import { deleteStaged } from './staging.ts';

/**
 * The s3-trigger's half of a split file (fan-out, `fan-out.ts`; the ledger's half is shared/ledger-split.ts):
 * splitting it into parts announced on the file-events queue, ending it once every part has, and deleting
 * its staged copy then.
 */

/**
 * Splits a large file into parts: plans them (or takes the plan an earlier attempt recorded), records
 * them in the ledger, announces each on the file-events queue, and leaves the file SPLIT. Undefined when
 * the file is not split after all (the plan found a reason not to): it is then read whole.
 */
export async function splitFile(
  task: FileTask,
  file: ObjectVersion,
  format: DetectedFormat,
  size: number,
  meta: ClaimMeta,
  plannedParts: number | undefined,
  deps: IngestDeps,
  route: ResolvedRoute = DEFAULT_RESOLVED_ROUTES[0] as ResolvedRoute,
  deadline: () => void = () => {},
): Promise<IngestOutcome | undefined> {
  const { ledger, logger, metrics } = deps;
  const now = deps.now ?? Date.now;
  let parts = plannedParts;
  if (parts === undefined) {
    const fanOut = deps.config.fanOut as FanOutOptions;
    let bytesRead = 0;
    let lastBeat = now();
    const plan = await planParts(
      deps.s3,
      file,
      format,
      size,
      fanOut,
      (n) => {
        bytesRead += n;
      },
      async () => {
        deadline();
        // A long scan keeps the lease.
        if (now() - lastBeat < deps.config.heartbeatSeconds * 1000) return;
        lastBeat = now();
        await ledger.heartbeat(file, deps.owner, { records: 0, rejected: 0, bytesRead });
      },
      route.delimiter,
    );
    if (!plan.split) {
      logger.info('Not split; the file is read whole', { reason: plan.reason, size });
      return undefined;
    }
    // Parts of a staged copy read it too: each part's item says where it is.
    await ledger.planParts(file, deps.owner, plan.ranges, meta, file.staged);
    parts = plan.ranges.length;
    logger.info('Split into parts', { parts, size, scannedBytes: bytesRead, kind: plan.ranges[0]?.kind });
  }
  const announce = deps.announceParts as NonNullable<IngestDeps['announceParts']>;
  await announce(Array.from({ length: parts }, (_, part) => ({ ...task, etag: file.etag, ...meta, part })));
  await ledger.markSplit(file, deps.owner);
  metrics.addMetric(METRIC.filesSplit, MetricUnit.Count, 1);
  metrics.addMetric(METRIC.partsAnnounced, MetricUnit.Count, parts);
  // Parts can all have ended before the file was marked SPLIT; then no part could end the file.
  await finishSplitFile(file, deps, route);
  return { status: 'SPLIT', parts };
}

/** Ends a split file if every part has ended (whoever calls it first when they have). */
export async function finishSplitFile(
  file: ObjectVersion,
  deps: IngestDeps,
  route?: ResolvedRoute,
): Promise<SplitOutcome | undefined> {
  const done = await deps.ledger.finishSplit(file, settings.ledger.firstErrorsKept);
  if (!done) return undefined;
  const { metrics, logger } = deps;
  metrics.addMetric(
    done.status === 'SUCCESS' ? METRIC.filesSucceeded : METRIC.filesFailed,
    MetricUnit.Count,
    1,
  );
  const t = done.eventTime ? Date.parse(done.eventTime) : Number.NaN;
  if (Number.isFinite(t)) {
    const now = deps.now ?? Date.now;
    metrics.addMetric(METRIC.fileLatency, MetricUnit.Milliseconds, Math.max(0, now() - t));
  }
  logger.info(done.status === 'SUCCESS' ? 'Split file ingested' : 'Split file failed', {
    ...done.stats,
    firstErrors: undefined,
    parts: done.parts,
    partsFailed: done.partsFailed,
  });
  if (done.staging) await removeStaged(file.bucket, done.staging, deps);
  if (done.status === 'SUCCESS' && route) await runAfterSuccess(file, undefined, route, deps);
  return done;
}

/** Deletes the staged copy of a file that has ended; on failure the bucket's lifecycle rule does it later. */
export async function removeStaged(bucket: string, staging: Staging, deps: IngestDeps): Promise<void> {
  try {
    const objects = await deleteStaged(deps.s3, bucket, staging);
    deps.logger.info('Deleted the staged copy', { prefix: staging.prefix, objects });
  } catch (err) {
    deps.logger.warn('Could not delete the staged copy; the lifecycle rule on its prefix will', {
      prefix: staging.prefix,
      error: describeError(err),
    });
  }
}
