import type { S3Client } from '@aws-sdk/client-s3';
import type { SQSClient } from '@aws-sdk/client-sqs';
import type { S3TriggerConfig } from '#shared/config.ts';
import { METRIC } from '#shared/contract.ts';
import {
  describeError,
  FileBusyError,
  isTransient,
  LeaseLostError,
  MalformedFileError,
  NoProgressError,
} from '#shared/errors.ts';
import {
  type Checkpoint,
  type ClaimMeta,
  type ClaimResult,
  type CompletedStats,
  exhaustedMessage,
  type FileRef,
  type FileStats,
  type Ledger,
  type SplitOutcome,
  type Staging,
} from '#shared/ledger.ts';
import { type Logger, type Metrics, MetricUnit } from '#shared/observability.ts';
import { deleteStaleSegments, QuarantineWriter, rejectsKey, segmentKey } from '#shared/quarantine.ts';
import { SignalSender } from '#shared/sender.ts';
import { settings } from '#shared/settings.ts';
import { normaliseEntry } from '#shared/signal.ts';
import type { FileTask } from './events.ts';
import { type FanOutOptions, planParts, splittable } from './fan-out.ts';
import { type DetectedFormat, detectFormat } from './parsers/index.ts';
import { HandOverNow, madeProgress } from './progress.ts';
import { canResume, openRecords, Progress, type ReadLimit, type ResumePoint } from './records.ts';
import { headObject, type ObjectVersion } from './source.ts';
import { deleteStaged, type StagingOptions, stageable, stageObject, stagingPrefix } from './staging.ts';

/**
 * The s3-trigger's configuration ingestion reads, every value resolved (shared/config.ts applies the
 * defaults of shared/settings.ts once, at cold start). `heartbeatSeconds`: the lease is kept this often;
 * `checkpointSeconds`: progress is checkpointed this often (at the next heartbeat);
 * `handOverBeforeTimeoutSeconds`: with less invocation time left, the file is checkpointed and handed over;
 * `maxAttempts`: claims of a file before it fails for good (a hand-over without progress on the last one
 * fails it).
 */
export type IngestConfig = Pick<
  S3TriggerConfig,
  | 'signalsQueueUrl'
  | 'quarantineBucket'
  | 'heartbeatSeconds'
  | 'checkpointSeconds'
  | 'maxMessageBytes'
  | 'handOverBeforeTimeoutSeconds'
  | 'maxAttempts'
> & {
  /** Splitting large files into parts (only with `announceParts`). Without it, files are read whole. */
  readonly fanOut?: FanOutOptions;
  /**
   * Staging large gzip files (only with `announceParts`): inflated once into staged objects, then read as
   * an uncompressed file. Without it, a gzip file is read from its start by every attempt.
   */
  readonly staging?: StagingOptions;
};

/** What ingestion needs from the outside world; the handler builds it once per cold start. */
export interface IngestDeps {
  readonly s3: S3Client;
  readonly sqs: SQSClient;
  readonly ledger: Ledger;
  readonly logger: Logger;
  readonly metrics: Metrics;
  readonly config: IngestConfig;
  /** Lease owner: unique per invocation. */
  readonly owner: string;
  readonly now?: () => number;
  /** Milliseconds left in the invocation (`context.getRemainingTimeInMillis`). */
  readonly remainingMs?: () => number;
  /**
   * Asks for the file to be carried on by another invocation (a continuation message on the file-events
   * queue). Without it (or without `remainingMs`) a file runs until the invocation ends.
   */
  readonly continueLater?: (task: FileTask & { readonly etag: string }) => Promise<void>;
  /**
   * Whether a CSV object of `size` bytes is parsed on a thread of its own: decided by the handler
   * (`parseThreadDecider`). @default never
   */
  readonly csvOnThread?: (size: number | undefined) => boolean;
  /**
   * Announces the parts of a split file (one file-events message each). Without it no file is split.
   */
  readonly announceParts?: (
    parts: readonly (FileTask & { readonly etag: string; readonly part: number })[],
  ) => Promise<void>;
}

/** For a part: which part, and how the file ended when this part was the last to end. */
interface PartOutcome {
  readonly part?: number;
  readonly file?: SplitOutcome['status'];
}

export type IngestOutcome =
  | ({ readonly status: 'SUCCESS'; readonly stats: CompletedStats } & PartOutcome)
  /**
   * Handed over to a continuation before the invocation's timeout, which resumes from `checkpoint` (none
   * while the file is being staged: staging resumes after its last staged object).
   */
  | { readonly status: 'CONTINUED'; readonly checkpoint?: ResumePoint; readonly stats: FileStats }
  /** Split into `parts`, each announced on the file-events queue. */
  | { readonly status: 'SPLIT'; readonly parts: number }
  | ({ readonly status: 'FAILED'; readonly stats?: CompletedStats; readonly error: string } & PartOutcome)
  | {
      readonly status: 'SKIPPED';
      readonly reason:
        | 'duplicate'
        | 'in-progress'
        | 'failed'
        | 'skipped'
        | 'exhausted'
        | 'lease-lost'
        | 'split'
        | string;
    };

/** Errors that mean the object version is gone (deleted, or overwritten in an unversioned bucket). */
function isObjectGone(err: unknown): boolean {
  const e = err as { name?: string; $metadata?: { httpStatusCode?: number } };
  return (
    e?.name === 'NoSuchKey' ||
    e?.name === 'NoSuchVersion' ||
    e?.name === 'PreconditionFailed' ||
    (e?.name === 'NotFound' && e?.$metadata?.httpStatusCode === 404) ||
    e?.$metadata?.httpStatusCode === 412
  );
}

/**
 * Ingests one object version exactly once: claim it in the ledger, stream and parse it, validate each
 * record, pack valid signals onto the signals queue and quarantine the rest, then complete the ledger
 * item. Permanent failures end the item FAILED and resolve; transient ones mark it FAILED (retryable)
 * and throw so that SQS redelivers the event. A large object is split instead (fan-out, `fan-out.ts`):
 * its parts are announced on the file-events queue and each comes back here as a task with a `part`.
 */
export async function ingestFile(task: FileTask, deps: IngestDeps): Promise<IngestOutcome> {
  const { logger, metrics, ledger } = deps;

  if (task.key.startsWith(settings.bucket.rejectsPrefix)) {
    logger.warn('Ignoring an object under the rejects prefix', { key: task.key });
    return { status: 'SKIPPED', reason: 'rejects are never ingested' };
  }
  if (task.key.endsWith('/')) return { status: 'SKIPPED', reason: 'folder marker' };
  if (task.key.startsWith(settings.bucket.stagingPrefix)) {
    logger.warn('Ignoring an object under the staging prefix', { key: task.key });
    return { status: 'SKIPPED', reason: 'staged copies are never ingested' };
  }

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
      if (isObjectGone(err)) return { status: 'SKIPPED', reason: 'object no longer exists' };
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
  logger.appendKeys({ objectKey: task.key, etag, ...(task.part !== undefined ? { part: task.part } : {}) });
  try {
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
    if (!claim.claimed) {
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
        await finishSplitFile(file, deps);
        logger.info('Part not claimed', { reason: claim.reason, status: claim.item?.status });
        return { status: 'SKIPPED', reason: claim.reason };
      }
      if (claim.reason === 'duplicate') await ledger.recordDuplicate(file);
      if (claim.reason === 'exhausted') metrics.addMetric(METRIC.filesFailed, MetricUnit.Count, 1);
      metrics.addMetric(METRIC.filesSkipped, MetricUnit.Count, 1);
      logger.info('File not claimed', { reason: claim.reason, status: claim.item?.status });
      return { status: 'SKIPPED', reason: claim.reason };
    }
    metrics.addMetric(METRIC.filesClaimed, MetricUnit.Count, 1);
    if (task.part === undefined && !claim.checkpoint && deps.announceParts && size !== undefined) {
      const fanOut = deps.config.fanOut;
      if (claim.parts !== undefined || (fanOut && splittable(format, size, fanOut))) {
        const split = await splitFile(task, file, format, size, meta, claim.parts, deps);
        if (split) return split;
      }
    }
    if (task.part !== undefined && !claim.range) {
      throw new Error(`part ${task.part} of s3://${file.bucket}/${file.key}@${file.etag} has no range`);
    }
    return await readAndSend(task, file, format, size, meta, claim, deps);
  } finally {
    logger.removeKeys(['objectKey', 'etag', 'part']);
  }
}

/**
 * Splits a large file into parts: plans them (or takes the plan an earlier attempt recorded), records
 * them in the ledger, announces each on the file-events queue, and leaves the file SPLIT. Undefined when
 * the file is not split after all (the plan found a reason not to): it is then read whole.
 */
async function splitFile(
  task: FileTask,
  file: ObjectVersion,
  format: DetectedFormat,
  size: number,
  meta: ClaimMeta,
  plannedParts: number | undefined,
  deps: IngestDeps,
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
  await finishSplitFile(file, deps);
  return { status: 'SPLIT', parts };
}

/** Ends a split file if every part has ended (whoever calls it first when they have). */
async function finishSplitFile(file: ObjectVersion, deps: IngestDeps): Promise<SplitOutcome | undefined> {
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
  return done;
}

/** Deletes the staged copy of a file that has ended; on failure the bucket's lifecycle rule does it later. */
async function removeStaged(bucket: string, staging: Staging, deps: IngestDeps): Promise<void> {
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

/**
 * Reads the claimed file (or part) and sends its records: from the checkpoint an earlier attempt left, or
 * the part's start; to the end of the file or the part.
 */
async function readAndSend(
  task: FileTask,
  file: ObjectVersion,
  format: DetectedFormat,
  size: number | undefined,
  meta: ClaimMeta,
  claim: Extract<ClaimResult, { claimed: true }>,
  deps: IngestDeps,
): Promise<IngestOutcome> {
  const { logger, metrics, ledger } = deps;
  const now = deps.now ?? Date.now;
  const range = claim.range;
  const part = task.part;
  /** The ledger item this run owns: the file's, or its part's. */
  const subject: FileRef = part !== undefined ? { ...file, part } : file;
  // A large gzip file is read from its staged copy (staging.ts), staged first where it is not yet.
  const stagingOpts = deps.config.staging;
  const staging: Staging | undefined =
    claim.staging ??
    (part === undefined &&
    !claim.checkpoint &&
    deps.announceParts &&
    stagingOpts &&
    stageable(format, size, stagingOpts)
      ? { prefix: stagingPrefix(file), objectBytes: stagingOpts.objectBytes, objects: 0 }
      : undefined);
  /** What the records are read from: the staged copy is the file's bytes uncompressed. */
  const readFormat: DetectedFormat = staging ? { format: format.format } : format;
  // A checkpoint left by an earlier attempt: everything before it is sent and quarantined already.
  let resumedFrom: Checkpoint | undefined = claim.checkpoint;
  if (resumedFrom && !canResume(readFormat, resumedFrom)) {
    logger.warn('Ignoring a checkpoint this format cannot resume from', { checkpoint: resumedFrom });
    resumedFrom = undefined;
  }
  // Where reading starts: the checkpoint, else the part's first record (after its start).
  const partStart: ResumePoint | undefined =
    range && (range.start > 0 || range.row > 0)
      ? { kind: range.kind, position: range.start, row: range.row }
      : undefined;
  const start: ResumePoint | undefined = resumedFrom ?? partStart;
  const until: ReadLimit | undefined = range ? { kind: range.kind, position: range.end } : undefined;
  logger.info(part !== undefined ? 'Part claimed' : 'File claimed', {
    attempt: claim.attempt,
    format: format.format,
    ...(format.compression ? { compression: format.compression } : {}),
    size,
    ...(range ? { range } : {}),
    ...(resumedFrom ? { resumedFrom } : {}),
    ...(staging ? { staging } : {}),
  });

  const started = now();
  const base = `s3://${file.bucket}/${file.key}@${file.etag}`;
  // Each record's origin is this ref followed by `#<row>`: its entry is made under it directly.
  const messageOrigin = { kind: 's3', ref: base } as const;
  const sender = new SignalSender(deps.sqs, deps.config.signalsQueueUrl, messageOrigin, {
    maxMessageBytes: deps.config.maxMessageBytes,
    defaultSource: file.key,
  });
  const fileRejectsKey = rejectsKey('s3', `${file.bucket}/${file.key}@${file.etag}`);
  const quarantine = new QuarantineWriter(
    deps.s3,
    deps.config.quarantineBucket,
    start ? segmentKey(fileRejectsKey, start.row + 1, claim.attempt) : fileRejectsKey,
  );
  const stats = {
    records: resumedFrom?.records ?? 0,
    rejected: resumedFrom?.rejected ?? 0,
    bytesRead: resumedFrom?.bytesRead ?? 0,
  };
  const firstErrors: string[] = [...(resumedFrom?.firstErrors ?? [])];
  // Completed rejects objects, in file order (checkpoints complete one each when it holds rejects).
  const rejectsKeys: string[] = [...(resumedFrom?.rejectsKeys ?? [])];
  let lastBeat = started;
  let lastCheckpoint = started;
  const heartbeatMs = deps.config.heartbeatSeconds * 1000;
  const checkpointMs = deps.config.checkpointSeconds * 1000;
  const handOverMs =
    deps.continueLater && deps.remainingMs ? deps.config.handOverBeforeTimeoutSeconds * 1000 : undefined;
  const outOfTime = () =>
    handOverMs !== undefined && (deps.remainingMs?.() ?? Number.POSITIVE_INFINITY) < handOverMs;
  const maxAttempts = deps.config.maxAttempts;
  /** Records this invocation parsed again to reach its record checkpoint (redone), and read past it. */
  const work = { redone: 0, fresh: 0 };
  /** Bytes this invocation inflated again to reach the last staged object (redone), and staged. */
  const stagingWork = { redone: 0, fresh: 0 };
  // Staging progresses by whole objects, finitely many: one staged object is progress, however many bytes
  // were inflated again before it (inflating is cheap next to writing). Records are not: a share is needed.
  const progressed = () => madeProgress(work) || madeProgress(stagingWork, 0);
  /** Out of time without progress on the last attempt: the file cannot get on, and fails for good. */
  const noProgress = (): NoProgressError | undefined => {
    if (progressed() || claim.attempt < maxAttempts) return undefined;
    const share = `less than ${settings.ledger.handOverMinFreshShare * 100}% new`;
    if (work.redone + work.fresh > 0 || !staging) {
      return new NoProgressError(
        `attempt ${claim.attempt} of ${maxAttempts} ran out of time after parsing ${work.redone} records again ` +
          `to reach its checkpoint (row ${resumedFrom?.row ?? 0}) and ${work.fresh} past it (${share}): a ` +
          `${format.compression ? `${format.compression} ` : ''}${format.format} file this long cannot be resumed from a record ` +
          'checkpoint within one invocation',
      );
    }
    return new NoProgressError(
      `attempt ${claim.attempt} of ${maxAttempts} ran out of time after inflating ${stagingWork.redone} bytes ` +
        `again to reach its last staged object, before it could stage one more` +
        (staging.size !== undefined ? ', or while scanning its staged copy for where to split it' : ''),
    );
  };
  /** Staged so far (to be deleted if the file ends before it is read). */
  let stagedSoFar: Staging | undefined = claim.staging;
  /** Stages the file from where `from` left off: the staged copy, or undefined when out of time. */
  const stage = (from: Staging): Promise<Staging | undefined> =>
    stageObject(deps.s3, file, size, from, {
      onBytes: (n) => {
        stats.bytesRead += n;
      },
      pace: async (redone) => {
        stagingWork.redone = redone;
        if (outOfTime()) throw noProgress() ?? new HandOverNow();
        if (now() - lastBeat >= heartbeatMs) {
          lastBeat = now();
          await ledger.heartbeat(subject, deps.owner, snapshot(stats));
        }
      },
      staged: async (state, fresh) => {
        stagingWork.fresh = fresh;
        await ledger.stage(subject, deps.owner, snapshot(stats), state);
        stagedSoFar = state;
        lastBeat = now();
      },
      outOfTime,
    });

  const reject = async (
    row: number | undefined,
    reason: string,
    extra: { record?: unknown; raw?: string },
  ) => {
    stats.rejected++;
    if (firstErrors.length < settings.ledger.firstErrorsKept) {
      firstErrors.push(row !== undefined ? `row ${row}: ${reason}` : reason);
    }
    await quarantine.write({
      ref: row !== undefined ? `${base}#${row}` : base,
      reason,
      ...(row !== undefined ? { row } : {}),
      ...extra,
    });
  };

  const completed = (): CompletedStats => ({
    ...snapshot(stats),
    durationMs: now() - started,
    firstErrors,
    ...(resumedFrom ? { resumedFrom } : {}),
  });
  /** Closes the rejects object; the totals with every rejects object of the file. */
  const finalStats = async (): Promise<CompletedStats> => {
    const key = await quarantine.close();
    if (key) rejectsKeys.push(key);
    if (claim.attempt > 1) await removeStaleRejects();
    return {
      ...completed(),
      ...(rejectsKeys[0] ? { rejectsKey: rejectsKeys[0] } : {}),
      ...(rejectsKeys.length > 1 ? { rejectsKeys: [...rejectsKeys] } : {}),
    };
  };
  /** Rejects an earlier attempt completed and this one wrote again (see deleteStaleSegments). */
  const removeStaleRejects = async () => {
    try {
      const removed = await deleteStaleSegments(
        deps.s3,
        deps.config.quarantineBucket,
        fileRejectsKey,
        claim.attempt,
        rejectsKeys,
        range ? { first: range.row + 1, last: range.endRow } : undefined,
      );
      if (removed > 0)
        logger.info('Deleted rejects an earlier attempt wrote and this one wrote again', { removed });
    } catch (err) {
      // Only duplicates are left: every reject is in a segment the ledger lists.
      logger.warn('Could not delete the rejects segments of earlier attempts', { error: describeError(err) });
    }
  };
  /**
   * Records `point` as where a retry resumes, once everything before it is durable: the valid signals
   * sent (the sender flushed) and the rejects in completed objects.
   */
  const checkpoint = async (point: ResumePoint): Promise<void> => {
    await sender.flush();
    const closed = await quarantine.rotate(segmentKey(fileRejectsKey, point.row + 1, claim.attempt));
    if (closed) rejectsKeys.push(closed);
    await ledger.heartbeat(subject, deps.owner, snapshot(stats), {
      ...point,
      ...snapshot(stats),
      firstErrors: [...firstErrors],
      rejectsKeys: [...rejectsKeys],
      attempt: claim.attempt,
      savedAt: new Date(now()).toISOString(),
    });
  };
  /** A part ends for good (counted on its file); the last part to end ends the file. */
  const partEnded = async () => (part !== undefined ? finishSplitFile(file, deps) : undefined);
  /**
   * Out of time: makes everything so far durable (a checkpoint at `point`, unless this invocation got no
   * further than the checkpoint it resumed from) and lets a fresh invocation go on from there. The attempt
   * is given back only when this invocation made progress (`madeProgress`).
   */
  const handOver = async (point: ResumePoint | undefined, fresh: boolean): Promise<IngestOutcome> => {
    const got = progressed();
    if (fresh && point) await checkpoint(point);
    await ledger.handOver(subject, deps.owner, got);
    await quarantine.abort();
    await deps.continueLater?.({ ...task, etag: file.etag, ...meta });
    metrics.addMetric(METRIC.filesContinued, MetricUnit.Count, 1);
    const details = { checkpoint: point, ...snapshot(stats), work, stagingWork, attempt: claim.attempt };
    if (got) logger.info('Handed the file over to a continuation before the timeout', details);
    else logger.warn('Handed the file over without progress; the attempt counts', details);
    return { status: 'CONTINUED', ...(point ? { checkpoint: point } : {}), stats: snapshot(stats) };
  };
  /** While records are parsed again to reach a record checkpoint: keep the lease, and stop in time. */
  const onSkip = async (skipped: number): Promise<void> => {
    work.redone = skipped;
    if (outOfTime()) throw noProgress() ?? new HandOverNow();
    if (now() - lastBeat >= heartbeatMs) {
      lastBeat = now();
      await ledger.heartbeat(subject, deps.owner, snapshot(stats));
    }
  };

  let cleanup: (() => Promise<void>) | undefined;
  /** Where the bytes are read from: the file, or its staged copy. */
  let source: ObjectVersion = file;
  try {
    let readSize = size;
    if (staging) {
      const staged = staging.size !== undefined ? staging : await stage(staging);
      if (!staged) {
        // Out of time after a staged object: a continuation stages on from there.
        const stalled = noProgress();
        if (stalled) throw stalled;
        return await handOver(undefined, false);
      }
      source = { ...file, staged };
      readSize = staged.size;
      const fanOut = deps.config.fanOut;
      if (
        part === undefined &&
        !resumedFrom &&
        !staged.failure &&
        fanOut &&
        readSize !== undefined &&
        splittable(readFormat, readSize, fanOut)
      ) {
        const split = await splitFile(task, source, readFormat, readSize, meta, undefined, deps, () => {
          if (outOfTime()) throw noProgress() ?? new HandOverNow();
        });
        if (split) return split;
      }
    }
    const { batches, kind, leftOut } = await openRecords(
      deps.s3,
      source,
      readFormat,
      readSize,
      (n) => {
        stats.bytesRead += n;
      },
      (dispose) => {
        cleanup = dispose;
      },
      {
        ...(start ? { resume: start } : {}),
        ...(until ? { until } : {}),
        onSkip,
        parseThread: deps.csvOnThread?.(readSize) === true,
      },
    );
    const progress = new Progress(kind, resumedFrom);
    let lastRow = start?.row ?? 0;
    for await (const batch of batches) {
      for (const rec of batch) {
        if (outOfTime()) {
          const point = progress.before(rec);
          if (point) {
            const stalled = noProgress();
            if (stalled) throw stalled;
            return await handOver(point, true);
          }
        }
        const point = now() - lastCheckpoint >= checkpointMs ? progress.before(rec) : undefined;
        if (point) {
          await checkpoint(point);
          lastBeat = lastCheckpoint = now();
        } else if (now() - lastBeat >= heartbeatMs) {
          lastBeat = now();
          await ledger.heartbeat(subject, deps.owner, snapshot(stats));
        }
        if (rec.error !== undefined) {
          await reject(rec.row, rec.error, rec.raw !== undefined ? { raw: rec.raw } : {});
        } else {
          const result = normaliseEntry(rec.data, `#${rec.row}`, messageOrigin, file.key);
          if (result.ok) {
            const backpressure = sender.addEntry(result.entry);
            if (backpressure) await backpressure;
            stats.records++;
          } else {
            await reject(rec.row, result.reason, { record: rec.data });
          }
        }
        lastRow = rec.row;
        progress.done(rec);
        work.fresh++;
      }
    }
    for (const reason of leftOut) {
      // Not a record, so no row: kept with the file's rejects, and counted with them.
      logger.warn('Part of the file is not records and was left out', { reason });
      await reject(undefined, reason, {});
    }
    if (range && lastRow !== range.endRow) {
      // The plan and the parser disagree on where records end: never expected (the scan gives up on
      // anything it is unsure of); loud, so that it is found.
      throw new MalformedFileError(
        `part ${part} was planned to end at row ${range.endRow} but its last row read is ${lastRow}: the split does not match the parser`,
        { row: lastRow },
      );
    }
    await sender.flush();
    const done = await finalStats();
    await ledger.succeed(subject, deps.owner, done);
    if (part === undefined && stagedSoFar) await removeStaged(file.bucket, stagedSoFar, deps);
    // The ledger keeps the first event's time: a continuation's task may not carry it.
    emitFileMetrics(
      metrics,
      done,
      part === undefined ? (claim.eventTime ?? task.eventTime) : undefined,
      now(),
    );
    if (part === undefined) metrics.addMetric(METRIC.filesSucceeded, MetricUnit.Count, 1);
    logger.info(part !== undefined ? 'Part ingested' : 'File ingested', {
      ...done,
      firstErrors: undefined,
      messages: sender.stats.messages,
      requests: sender.stats.requests,
    });
    const fileEnded = await partEnded();
    return {
      status: 'SUCCESS',
      stats: done,
      ...(part !== undefined ? { part } : {}),
      ...(fileEnded ? { file: fileEnded.status } : {}),
    };
  } catch (err) {
    if (err instanceof HandOverNow) {
      // Out of time while parsing the records before the checkpoint again, or while staging or scanning a
      // staged copy: nothing new to checkpoint (staged objects are recorded as they complete).
      return await handOver(resumedFrom, false);
    }
    if (err instanceof LeaseLostError) {
      // Another worker reclaimed the file (our lease expired); it will finish it and the scorer drops repeats.
      await quarantine.abort();
      logger.warn('Lease lost mid-file; leaving the file to its new owner', { error: err.message });
      return { status: 'SKIPPED', reason: 'lease-lost' };
    }
    if (isObjectGone(err) && part === undefined) {
      await quarantine.abort();
      await ledger.skip(
        file,
        'the object version was deleted or overwritten before it could be read',
        deps.owner,
        meta,
      );
      metrics.addMetric(METRIC.filesSkipped, MetricUnit.Count, 1);
      logger.warn('Object version gone before it could be read');
      if (stagedSoFar) await removeStaged(file.bucket, stagedSoFar, deps);
      return { status: 'SKIPPED', reason: 'object gone' };
    }
    /** Ended for good (counted on its file for a part): the outcome, metrics and log of a failed item. */
    const failedForGood = async (
      failed: CompletedStats,
      type: string,
      reason: string,
    ): Promise<IngestOutcome> => {
      if (part === undefined && stagedSoFar) await removeStaged(file.bucket, stagedSoFar, deps);
      if (part === undefined) metrics.addMetric(METRIC.filesFailed, MetricUnit.Count, 1);
      emitFileMetrics(metrics, failed, undefined, now());
      logger.error(part !== undefined ? 'Part failed permanently' : 'File failed permanently', {
        errorType: type,
        error: reason,
        records: stats.records,
      });
      const fileEnded = await partEnded();
      return {
        status: 'FAILED',
        stats: failed,
        error: `${type}: ${reason}`,
        ...(part !== undefined ? { part } : {}),
        ...(fileEnded ? { file: fileEnded.status } : {}),
      };
    };
    /** Leaves the file for the event's next delivery: nothing of this attempt's rejects kept, the item retryable. */
    const retryLater = async (cause: unknown): Promise<IngestOutcome> => {
      const { type, message } = describeError(cause);
      await quarantine.abort();
      let ended: 'retryable' | 'final' = 'retryable';
      try {
        ended = await ledger.fail(subject, deps.owner, {
          ...completed(),
          errorType: type,
          errorMessage: message,
          retryable: true,
        });
      } catch (ledgerErr) {
        logger.error('Could not record the transient failure in the ledger', {
          error: describeError(ledgerErr),
        });
      }
      if (ended === 'final') {
        // The ledger found no attempt left and ended the item for good: acknowledged, like a permanent failure.
        return await failedForGood(completed(), type, exhaustedMessage(message, claim.attempt));
      }
      logger.warn('Transient failure; the event will be redelivered', { errorType: type, error: message });
      throw cause;
    };
    // On the last attempt a transient failure is as final as a permanent one: the item would otherwise stay
    // FAILED and retryable, claimable by nobody (for a part: its file SPLIT for ever).
    const lastAttempt = claim.lastAttempt === true;
    if (isTransient(err) && !lastAttempt) return await retryLater(err);
    // Permanent (for a part, the object gone too), or out of attempts: what was valid before the failure is
    // sent; the failure itself is quarantined with where it happened, and the item ends FAILED so that the
    // event is acknowledged.
    const { type, message } = describeError(err);
    let reason = isTransient(err) ? exhaustedMessage(message, claim.attempt) : message;
    try {
      await sender.flush();
    } catch (flushErr) {
      // A send that failed for good (SQS refusing a message: the error being handled, or a call still in
      // flight) ends the file like any other permanent failure, rather than being thrown again from here.
      if (isTransient(flushErr) && !lastAttempt) return await retryLater(flushErr);
      if (flushErr !== err) {
        reason = `${reason}; and sending the signals read before it failed: ${describeError(flushErr).message}`;
      }
    }
    let failed: CompletedStats;
    try {
      await quarantine.write({
        ref: base,
        reason: `${part !== undefined ? `part ${part} ` : 'file '}failed: ${type}: ${reason}`,
      });
      failed = await finalStats();
    } catch (quarantineErr) {
      // The rejects cannot be written (S3 refused their object: the failure being handled may be this very
      // one). The item still ends FAILED with the real reason, not left to expire as a lost lease; the
      // rejects in objects completed at checkpoints stay listed.
      if (isTransient(quarantineErr) && !lastAttempt) return await retryLater(quarantineErr);
      await quarantine.abort();
      if (quarantineErr !== err) {
        reason = `${reason}; and its rejects could not be quarantined: ${describeError(quarantineErr).message}`;
      }
      failed = {
        ...completed(),
        ...(rejectsKeys[0] ? { rejectsKey: rejectsKeys[0] } : {}),
        ...(rejectsKeys.length > 1 ? { rejectsKeys: [...rejectsKeys] } : {}),
      };
    }
    await ledger.fail(subject, deps.owner, {
      ...failed,
      errorType: type,
      errorMessage: reason,
      retryable: false,
    });
    return await failedForGood(failed, type, reason);
  } finally {
    await cleanup?.();
  }
}

function snapshot(s: FileStats): FileStats {
  return { records: s.records, rejected: s.rejected, bytesRead: s.bytesRead };
}

function emitFileMetrics(
  metrics: Metrics,
  s: CompletedStats,
  eventTime: string | undefined,
  now: number,
): void {
  metrics.addMetric(METRIC.recordsIngested, MetricUnit.Count, s.records);
  metrics.addMetric(METRIC.recordsRejected, MetricUnit.Count, s.rejected);
  metrics.addMetric(METRIC.bytesRead, MetricUnit.Bytes, s.bytesRead);
  const t = eventTime ? Date.parse(eventTime) : Number.NaN;
  if (Number.isFinite(t))
    metrics.addMetric(METRIC.fileLatency, MetricUnit.Milliseconds, Math.max(0, now - t));
}
