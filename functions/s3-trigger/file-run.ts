import type { S3Client } from '@aws-sdk/client-s3';
import { METRIC } from '#shared/contract.ts';
import {
  describeError,
  isObjectGone,
  isTransient,
  LeaseLostError,
  MalformedFileError,
  type NoProgressError,
} from '#shared/errors.ts';
import { expectedColumns, MappingConflict, mapRecord } from '#shared/field-mapping.ts';
import {
  type ClaimMeta,
  type CompletedStats,
  exhaustedMessage,
  type FileRef,
  type FileStats,
  type SplitOutcome,
  type Staging,
} from '#shared/ledger.ts';
import { MetricUnit } from '#shared/observability.ts';
import { deleteStaleSegments, QuarantineWriter, rejectsKey, segmentKey } from '#shared/quarantine.ts';
import { DEFAULT_RESOLVED_ROUTES, type ResolvedRoute } from '#shared/routes.ts';
import { SignalSender } from '#shared/sender.ts';
import { settings } from '#shared/settings.ts';
import { REQUIRED_FIELDS } from '#shared/signal.ts';
import { SignalSink } from '#shared/sink.ts';
import { runAfterSuccess } from './after-success.ts';
import type { FileTask } from './events.ts';
import { splittable } from './fan-out.ts';
import { emitFileMetrics, type IngestDeps, type IngestOutcome } from './ingest-types.ts';
import { noProgressError, RunPace } from './pace.ts';
import { clipRaw } from './parsers/bytes.ts';
import type { DetectedFormat } from './parsers/index.ts';
import type { ParsedRecord } from './parsers/types.ts';
import { HandOverNow } from './progress.ts';
import { type Claimed, planRead, type ReadPlan } from './read-plan.ts';
import type { Progress, ReadSpan, ResumePoint } from './records.ts';
import type { ObjectVersion } from './source.ts';
import { finishSplitFile, removeStaged, splitFile } from './split-file.ts';
import { stageObject } from './staging.ts';

/**
 * The run of one claimed file (or part) by one invocation: its counts, sender and quarantine (one
 * {@link SignalSink}), its rejects objects, its clock ({@link RunPace}), and one method per way it ends:
 * {@link continued} (handed over before the timeout), {@link succeeded}, {@link failedForGood} and
 * {@link retryLater}; {@link failed} picks the ending for an error. `ingest.ts` drives its read loop.
 */
export class FileRun {
  readonly subject: FileRef;
  readonly plan: ReadPlan;
  readonly pace: RunPace;
  readonly sink: SignalSink<QuarantineWriter>;
  /** Completed rejects objects, in file order (checkpoints complete one each when it holds rejects). */
  readonly rejectsKeys: string[];
  bytesRead: number;
  /** Staged so far (to be deleted if the file ends before it is read). */
  stagedSoFar: Staging | undefined;
  /** The route that took the file: its field mapping, CSV delimiter and after-success policy. */
  readonly route: ResolvedRoute;
  readonly #task: FileTask;
  readonly #file: ObjectVersion;
  readonly #format: DetectedFormat;
  readonly #size: number | undefined;
  readonly #meta: ClaimMeta;
  readonly #claim: Claimed;
  readonly #deps: IngestDeps;
  readonly #now: () => number;
  readonly #started: number;
  /** `s3://bucket/key@etag`: the origin of the file's messages; a row's ref adds `#<row>`. */
  readonly #base: string;
  readonly #fileRejectsKey: string;

  constructor(
    task: FileTask,
    file: ObjectVersion,
    format: DetectedFormat,
    size: number | undefined,
    meta: ClaimMeta,
    claim: Claimed,
    deps: IngestDeps,
    route: ResolvedRoute = DEFAULT_RESOLVED_ROUTES[0] as ResolvedRoute,
  ) {
    this.route = route;
    this.#task = task;
    this.#file = file;
    this.#format = format;
    this.#size = size;
    this.#meta = meta;
    this.#claim = claim;
    this.#deps = deps;
    this.#now = deps.now ?? Date.now;
    this.subject = task.part !== undefined ? { ...file, part: task.part } : file;
    this.plan = planRead(task, file, format, size, claim, deps);
    const { resumedFrom, start } = this.plan;
    this.#started = this.#now();
    this.#base = `s3://${file.bucket}/${file.key}@${file.etag}`;
    this.#fileRejectsKey = rejectsKey('s3', `${file.bucket}/${file.key}@${file.etag}`);
    const { config } = deps;
    const sender = new SignalSender(
      deps.sqs,
      config.signalsQueueUrl,
      { kind: 's3', ref: this.#base },
      {
        maxMessageBytes: config.maxMessageBytes,
        defaultSource: file.key,
      },
    );
    const quarantine = new QuarantineWriter(
      deps.s3,
      config.quarantineBucket,
      start ? segmentKey(this.#fileRejectsKey, start.row + 1, claim.attempt) : this.#fileRejectsKey,
    );
    this.sink = new SignalSink(sender, quarantine, settings.ledger.firstErrorsKept, {
      sent: resumedFrom?.records ?? 0,
      rejected: resumedFrom?.rejected ?? 0,
      firstErrors: resumedFrom?.firstErrors ?? [],
    });
    this.rejectsKeys = [...(resumedFrom?.rejectsKeys ?? [])];
    this.bytesRead = resumedFrom?.bytesRead ?? 0;
    this.stagedSoFar = claim.staging;
    const handOverMs =
      deps.continueLater && deps.remainingMs ? config.handOverBeforeTimeoutSeconds * 1000 : undefined;
    this.pace = new RunPace(
      {
        now: this.#now,
        ...(deps.remainingMs ? { remainingMs: deps.remainingMs } : {}),
        heartbeatMs: config.heartbeatSeconds * 1000,
        checkpointMs: config.checkpointSeconds * 1000,
        handOverMs,
        attempt: claim.attempt,
        maxAttempts: config.maxAttempts,
      },
      this.#started,
    );
  }

  /** The S3 client the run reads with. */
  get s3(): S3Client {
    return this.#deps.s3;
  }

  get part(): number | undefined {
    return this.#task.part;
  }

  /** The counts so far (from the checkpoint resumed from). */
  get stats(): FileStats {
    return { records: this.sink.sent, rejected: this.sink.rejected, bytesRead: this.bytesRead };
  }

  /** Counts bytes fetched from S3 (a method bound to its run: handed to the readers). */
  readonly countBytes = (n: number): void => {
    this.bytesRead += n;
  };

  logClaimed(): void {
    const { range, attempt } = this.#claim;
    const { resumedFrom, staging } = this.plan;
    const format = this.#format;
    this.#deps.logger.info(this.part !== undefined ? 'Part claimed' : 'File claimed', {
      attempt,
      format: format.format,
      ...(format.compression ? { compression: format.compression } : {}),
      size: this.#size,
      ...(range ? { range } : {}),
      ...(resumedFrom ? { resumedFrom } : {}),
      ...(staging ? { staging } : {}),
    });
  }

  /** The read's span for openRecords: from the plan's start to its end, keeping the lease while it skips. */
  span(size: number | undefined): ReadSpan {
    const { start, until } = this.plan;
    return {
      ...(start ? { resume: start } : {}),
      ...(until ? { until } : {}),
      onSkip: this.#onSkip,
      parseThread: this.#deps.csvOnThread?.(size) === true,
      delimiter: this.route.delimiter,
      expectColumns: expectedColumns(REQUIRED_FIELDS, this.route.mapping),
    };
  }

  /**
   * Where the records are read from: the file, or its staged copy (staged first where it is not yet). An
   * outcome instead when the run ends there: out of time while staging, or the staged copy split into parts.
   */
  async source(): Promise<
    { readonly file: ObjectVersion; readonly size: number | undefined } | { readonly outcome: IngestOutcome }
  > {
    const { staging, readFormat, resumedFrom } = this.plan;
    if (!staging) return { file: this.#file, size: this.#size };
    const staged = staging.size !== undefined ? staging : await this.#stage(staging);
    if (!staged) {
      // Out of time after a staged object: a continuation stages on from there.
      const stalled = this.#noProgress();
      if (stalled) throw stalled;
      return { outcome: await this.continued(undefined, false) };
    }
    const file: ObjectVersion = { ...this.#file, staged };
    const fanOut = this.#deps.config.fanOut;
    const size = staged.size;
    if (
      this.part === undefined &&
      !resumedFrom &&
      !staged.failure &&
      fanOut &&
      size !== undefined &&
      splittable(readFormat, size, fanOut)
    ) {
      const split = await splitFile(
        this.#task,
        file,
        readFormat,
        size,
        this.#meta,
        undefined,
        this.#deps,
        this.route,
        () => this.#stopIfOutOfTime(),
      );
      if (split) return { outcome: split };
    }
    return { file, size };
  }

  /**
   * Before a record: keeps the lease, with a checkpoint just before `rec` when one is due. A promise only
   * when there is something to wait for (this runs once per record).
   */
  keepUp(progress: Progress, rec: ParsedRecord): Promise<void> | undefined {
    const point = this.pace.checkpointDue() ? progress.before(rec) : undefined;
    if (point) return this.#checkpoint(point).then(() => this.pace.checkpointed());
    if (this.pace.beatDue()) return this.#deps.ledger.heartbeat(this.subject, this.#deps.owner, this.stats);
    return undefined;
  }

  /** One record: sent, or quarantined with its row and reason. A promise only when it must be awaited. */
  record(rec: ParsedRecord): Promise<void> | undefined {
    if (rec.error === undefined) {
      const data = mapRecord(rec.data, this.route.prepared);
      if (data instanceof MappingConflict) {
        const ref = `${this.#base}#${rec.row}`;
        return this.sink.reject({
          ref,
          reason: data.error,
          row: rec.row,
          raw: clipRaw(JSON.stringify(rec.data)),
        });
      }
      return this.sink.addAt(data, `#${rec.row}`, rec.row);
    }
    return this.sink.reject({
      ref: `${this.#base}#${rec.row}`,
      reason: rec.error,
      row: rec.row,
      ...(rec.raw !== undefined ? { raw: rec.raw } : {}),
    });
  }

  /** What the file held besides records (bytes after a compressed stream): kept with its rejects, counted. */
  async leftOut(reasons: readonly string[]): Promise<void> {
    for (const reason of reasons) {
      // Not a record, so no row.
      this.#deps.logger.warn('Part of the file is not records and was left out', { reason });
      await this.sink.reject({ ref: this.#base, reason });
    }
  }

  /** A part's reading ended where its plan said it would (`lastRow`: the last row read). */
  checkEnded(lastRow: number): void {
    const { range } = this.#claim;
    if (range && lastRow !== range.endRow) {
      // The plan and the parser disagree on where records end: never expected (the scan gives up on
      // anything it is unsure of); loud, so that it is found.
      throw new MalformedFileError(
        `part ${this.part} was planned to end at row ${range.endRow} but its last row read is ${lastRow}: the split does not match the parser`,
        { row: lastRow },
      );
    }
  }

  /** Out of time before `point`: hands over from there, or fails for good when that would not be progress. */
  async handOverAt(point: ResumePoint): Promise<IngestOutcome> {
    const stalled = this.#noProgress();
    if (stalled) throw stalled;
    return this.continued(point, true);
  }

  /**
   * Out of time: makes everything so far durable (a checkpoint at `point`, unless this invocation got no
   * further than the checkpoint it resumed from: `fresh` false) and lets a fresh invocation go on from
   * there. The attempt is given back only when this invocation made progress (`madeProgress`).
   */
  async continued(point: ResumePoint | undefined, fresh: boolean): Promise<IngestOutcome> {
    const { ledger, logger, metrics, owner } = this.#deps;
    const got = this.pace.progressed();
    if (fresh && point) await this.#checkpoint(point);
    await ledger.handOver(this.subject, owner, got);
    await this.sink.rejects.abort();
    await this.#deps.continueLater?.({ ...this.#task, etag: this.#file.etag, ...this.#meta });
    metrics.addMetric(METRIC.filesContinued, MetricUnit.Count, 1);
    const { work, stagingWork } = this.pace;
    const details = { checkpoint: point, ...this.stats, work, stagingWork, attempt: this.#claim.attempt };
    if (got) logger.info('Handed the file over to a continuation before the timeout', details);
    else logger.warn('Handed the file over without progress; the attempt counts', details);
    return { status: 'CONTINUED', ...(point ? { checkpoint: point } : {}), stats: this.stats };
  }

  /** Every record read: what is left sent, the rejects closed, the item SUCCESS (a part counted on its file). */
  async succeeded(): Promise<IngestOutcome> {
    const { ledger, logger, metrics, owner } = this.#deps;
    const part = this.part;
    await this.sink.flush();
    const done = await this.#finalStats();
    await ledger.succeed(this.subject, owner, done);
    if (part === undefined && this.stagedSoFar)
      await removeStaged(this.#file.bucket, this.stagedSoFar, this.#deps);
    // The ledger keeps the first event's time: a continuation's task may not carry it.
    const eventTime = part === undefined ? (this.#claim.eventTime ?? this.#task.eventTime) : undefined;
    emitFileMetrics(metrics, done, eventTime, this.#now());
    if (part === undefined) metrics.addMetric(METRIC.filesSucceeded, MetricUnit.Count, 1);
    if (part === undefined) await runAfterSuccess(this.#file, this.#size, this.route, this.#deps);
    const { stats } = this.sink.sender;
    logger.info(part !== undefined ? 'Part ingested' : 'File ingested', {
      ...done,
      firstErrors: undefined,
      messages: stats.messages,
      requests: stats.requests,
    });
    return { status: 'SUCCESS', stats: done, ...(await this.#partEnded()) };
  }

  /** Ends the run on `err`: hands over, leaves the file to another worker, or fails it (for now or for good). */
  async failed(err: unknown): Promise<IngestOutcome> {
    const { ledger, logger, metrics, owner } = this.#deps;
    if (err instanceof HandOverNow) {
      // Out of time while parsing the records before the checkpoint again, or while staging or scanning a
      // staged copy: nothing new to checkpoint (staged objects are recorded as they complete).
      return this.continued(this.plan.resumedFrom, false);
    }
    if (err instanceof LeaseLostError) {
      // Another worker reclaimed the file (our lease expired); it will finish it and the scorer drops repeats.
      await this.sink.rejects.abort();
      logger.warn('Lease lost mid-file; leaving the file to its new owner', { error: err.message });
      return { status: 'SKIPPED', reason: 'lease-lost' };
    }
    if (isObjectGone(err) && this.part === undefined) {
      await this.sink.rejects.abort();
      const reason = 'the object version was deleted or overwritten before it could be read';
      await ledger.skip(this.#file, reason, owner, this.#meta);
      metrics.addMetric(METRIC.filesSkipped, MetricUnit.Count, 1);
      logger.warn('Object version gone before it could be read');
      if (this.stagedSoFar) await removeStaged(this.#file.bucket, this.stagedSoFar, this.#deps);
      return { status: 'SKIPPED', reason: 'object gone' };
    }
    // On the last attempt a transient failure is as final as a permanent one: the item would otherwise stay
    // FAILED and retryable, claimable by nobody (for a part: its file SPLIT for ever).
    if (isTransient(err) && !this.#lastAttempt) return this.retryLater(err);
    return this.#failPermanently(err);
  }

  /** Leaves the file for the event's next delivery: nothing of this attempt's rejects kept, the item retryable. */
  async retryLater(cause: unknown): Promise<IngestOutcome> {
    const { ledger, logger, owner } = this.#deps;
    const { type, message } = describeError(cause);
    await this.sink.rejects.abort();
    let ended: 'retryable' | 'final' = 'retryable';
    try {
      ended = await ledger.fail(this.subject, owner, {
        ...this.#completed(),
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
      return this.failedForGood(this.#completed(), type, exhaustedMessage(message, this.#claim.attempt));
    }
    logger.warn('Transient failure; the event will be redelivered', { errorType: type, error: message });
    throw cause;
  }

  /** Ended for good (counted on its file for a part): the outcome, metrics and log of a failed item. */
  async failedForGood(failed: CompletedStats, type: string, reason: string): Promise<IngestOutcome> {
    const { logger, metrics } = this.#deps;
    const part = this.part;
    if (part === undefined && this.stagedSoFar)
      await removeStaged(this.#file.bucket, this.stagedSoFar, this.#deps);
    if (part === undefined) metrics.addMetric(METRIC.filesFailed, MetricUnit.Count, 1);
    emitFileMetrics(metrics, failed, undefined, this.#now());
    logger.error(part !== undefined ? 'Part failed permanently' : 'File failed permanently', {
      errorType: type,
      error: reason,
      records: this.sink.sent,
    });
    return { status: 'FAILED', stats: failed, error: `${type}: ${reason}`, ...(await this.#partEnded()) };
  }

  /**
   * Permanent (for a part, the object gone too), or out of attempts: what was valid before the failure is
   * sent; the failure itself is quarantined with where it happened, and the item ends FAILED so that the
   * event is acknowledged.
   */
  async #failPermanently(err: unknown): Promise<IngestOutcome> {
    const { type, message } = describeError(err);
    let reason = isTransient(err) ? exhaustedMessage(message, this.#claim.attempt) : message;
    try {
      await this.sink.flush();
    } catch (flushErr) {
      // A send that failed for good (SQS refusing a message: the error being handled, or a call still in
      // flight) ends the file like any other permanent failure, rather than being thrown again from here.
      if (isTransient(flushErr) && !this.#lastAttempt) return this.retryLater(flushErr);
      if (flushErr !== err) {
        reason = `${reason}; and sending the signals read before it failed: ${describeError(flushErr).message}`;
      }
    }
    let failed: CompletedStats;
    try {
      await this.sink.rejects.write({
        ref: this.#base,
        reason: `${this.part !== undefined ? `part ${this.part} ` : 'file '}failed: ${type}: ${reason}`,
      });
      failed = await this.#finalStats();
    } catch (quarantineErr) {
      // The rejects cannot be written (S3 refused their object: the failure being handled may be this very
      // one). The item still ends FAILED with the real reason, not left to expire as a lost lease; the
      // rejects in objects completed at checkpoints stay listed.
      if (isTransient(quarantineErr) && !this.#lastAttempt) return this.retryLater(quarantineErr);
      await this.sink.rejects.abort();
      if (quarantineErr !== err) {
        reason = `${reason}; and its rejects could not be quarantined: ${describeError(quarantineErr).message}`;
      }
      failed = this.#withRejectsKeys(this.#completed());
    }
    const { ledger, owner } = this.#deps;
    await ledger.fail(this.subject, owner, {
      ...failed,
      errorType: type,
      errorMessage: reason,
      retryable: false,
    });
    return this.failedForGood(failed, type, reason);
  }

  get #lastAttempt(): boolean {
    return this.#claim.lastAttempt === true;
  }

  /** A part ends for good (counted on its file); the last part to end ends the file. */
  async #partEnded(): Promise<{ part?: number; file?: SplitOutcome['status'] }> {
    const part = this.part;
    if (part === undefined) return {};
    const fileEnded = await finishSplitFile(this.#file, this.#deps, this.route);
    return { part, ...(fileEnded ? { file: fileEnded.status } : {}) };
  }

  #completed(): CompletedStats {
    const { resumedFrom } = this.plan;
    return {
      ...this.stats,
      durationMs: this.#now() - this.#started,
      firstErrors: this.sink.firstErrors,
      ...(resumedFrom ? { resumedFrom } : {}),
    };
  }

  #withRejectsKeys(stats: CompletedStats): CompletedStats {
    const keys = this.rejectsKeys;
    return {
      ...stats,
      ...(keys[0] ? { rejectsKey: keys[0] } : {}),
      ...(keys.length > 1 ? { rejectsKeys: [...keys] } : {}),
    };
  }

  /** Closes the rejects object; the totals with every rejects object of the file. */
  async #finalStats(): Promise<CompletedStats> {
    const key = await this.sink.rejects.close();
    if (key) this.rejectsKeys.push(key);
    if (this.#claim.attempt > 1) await this.#removeStaleRejects();
    return this.#withRejectsKeys(this.#completed());
  }

  /** Rejects an earlier attempt completed and this one wrote again (see deleteStaleSegments). */
  async #removeStaleRejects(): Promise<void> {
    const { logger, s3, config } = this.#deps;
    const { range, attempt } = this.#claim;
    try {
      const removed = await deleteStaleSegments(
        s3,
        config.quarantineBucket,
        this.#fileRejectsKey,
        attempt,
        this.rejectsKeys,
        range ? { first: range.row + 1, last: range.endRow } : undefined,
      );
      if (removed > 0)
        logger.info('Deleted rejects an earlier attempt wrote and this one wrote again', { removed });
    } catch (err) {
      // Only duplicates are left: every reject is in a segment the ledger lists.
      logger.warn('Could not delete the rejects segments of earlier attempts', { error: describeError(err) });
    }
  }

  /**
   * Records `point` as where a retry resumes, once everything before it is durable: the valid signals
   * sent (the sender flushed) and the rejects in completed objects.
   */
  async #checkpoint(point: ResumePoint): Promise<void> {
    const { ledger, owner } = this.#deps;
    const attempt = this.#claim.attempt;
    await this.sink.flush();
    const closed = await this.sink.rejects.rotate(segmentKey(this.#fileRejectsKey, point.row + 1, attempt));
    if (closed) this.rejectsKeys.push(closed);
    await ledger.heartbeat(this.subject, owner, this.stats, {
      ...point,
      ...this.stats,
      firstErrors: [...this.sink.firstErrors],
      rejectsKeys: [...this.rejectsKeys],
      attempt,
      savedAt: new Date(this.#now()).toISOString(),
    });
  }

  /** Keeps the lease when it is due (while skipping to a checkpoint, or staging). */
  async #beat(): Promise<void> {
    if (this.pace.beatDue()) await this.#deps.ledger.heartbeat(this.subject, this.#deps.owner, this.stats);
  }

  /** Out of time: stops the read (a throw that unwinds it), failing for good when there was no progress. */
  #stopIfOutOfTime(): void {
    if (this.pace.outOfTime()) throw this.#noProgress() ?? new HandOverNow();
  }

  /** While records are parsed again to reach a record checkpoint: keep the lease, and stop in time. */
  readonly #onSkip = async (skipped: number): Promise<void> => {
    this.pace.work.redone = skipped;
    this.#stopIfOutOfTime();
    await this.#beat();
  };

  /** Stages the file from where `from` left off: the staged copy, or undefined when out of time. */
  #stage(from: Staging): Promise<Staging | undefined> {
    const { s3, ledger, owner } = this.#deps;
    return stageObject(s3, this.#file, this.#size, from, {
      onBytes: this.countBytes,
      pace: async (redone) => {
        this.pace.stagingWork.redone = redone;
        this.#stopIfOutOfTime();
        await this.#beat();
      },
      staged: async (state, fresh) => {
        this.pace.stagingWork.fresh = fresh;
        await ledger.stage(this.subject, owner, this.stats, state);
        this.stagedSoFar = state;
        this.pace.beaten();
      },
      outOfTime: () => this.pace.outOfTime(),
    });
  }

  /** Out of time without progress on the last attempt: the file cannot get on, and fails for good. */
  #noProgress(): NoProgressError | undefined {
    return this.pace.stalled() ? noProgressError(this.pace, this.#format, this.plan) : undefined;
  }
}
