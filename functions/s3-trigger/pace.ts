import { NoProgressError } from '#shared/errors.ts';
import { settings } from '#shared/settings.ts';
import type { DetectedFormat } from './parsers/index.ts';
import { type InvocationWork, madeProgress } from './progress.ts';
import type { ReadPlan } from './read-plan.ts';

/** How a run of one file keeps time; every value resolved by the caller. */
export interface PaceOptions {
  readonly now: () => number;
  /** Milliseconds left in the invocation; without it the run never hands over. */
  readonly remainingMs?: () => number;
  readonly heartbeatMs: number;
  readonly checkpointMs: number;
  /** With less invocation time left than this, the run hands the file over; undefined: never. */
  readonly handOverMs: number | undefined;
  /** The attempt this run is, and how many a file has. */
  readonly attempt: number;
  readonly maxAttempts: number;
}

/**
 * The clock of a run of one file (or part): when the lease is due a heartbeat, when progress is due a
 * checkpoint, when the invocation is out of time, and whether what this invocation did counts as progress
 * (`madeProgress`) if it hands the file over.
 */
export class RunPace {
  /** Records this invocation parsed again to reach its record checkpoint (redone), and read past it. */
  readonly work = { redone: 0, fresh: 0 } satisfies InvocationWork;
  /** Bytes this invocation inflated again to reach the last staged object (redone), and staged. */
  readonly stagingWork = { redone: 0, fresh: 0 } satisfies InvocationWork;
  readonly #opts: PaceOptions;
  #lastBeat: number;
  #lastCheckpoint: number;

  constructor(opts: PaceOptions, started: number) {
    this.#opts = opts;
    this.#lastBeat = started;
    this.#lastCheckpoint = started;
  }

  get attempt(): number {
    return this.#opts.attempt;
  }

  get maxAttempts(): number {
    return this.#opts.maxAttempts;
  }

  outOfTime(): boolean {
    const { handOverMs, remainingMs } = this.#opts;
    return handOverMs !== undefined && (remainingMs?.() ?? Number.POSITIVE_INFINITY) < handOverMs;
  }

  /** Whether the lease is due a heartbeat; when it is, the heartbeat is taken as sent from now. */
  beatDue(): boolean {
    const now = this.#opts.now();
    if (now - this.#lastBeat < this.#opts.heartbeatMs) return false;
    this.#lastBeat = now;
    return true;
  }

  /** The lease was just kept by another write (a staged object recorded). */
  beaten(): void {
    this.#lastBeat = this.#opts.now();
  }

  checkpointDue(): boolean {
    return this.#opts.now() - this.#lastCheckpoint >= this.#opts.checkpointMs;
  }

  /** A checkpoint was just recorded (it keeps the lease too). */
  checkpointed(): void {
    this.#lastBeat = this.#lastCheckpoint = this.#opts.now();
  }

  /**
   * Whether this invocation made progress, and so gives its attempt back if it hands over. Staging
   * progresses by whole objects, finitely many: one staged object is progress, however many bytes were
   * inflated again before it (inflating is cheap next to writing). Records are not: a share is needed.
   */
  progressed(): boolean {
    return madeProgress(this.work) || madeProgress(this.stagingWork, 0);
  }

  /** Out of time without progress on the last attempt: the file cannot get on, and fails for good. */
  stalled(): boolean {
    return !this.progressed() && this.#opts.attempt >= this.#opts.maxAttempts;
  }
}

/**
 * Why a run that is out of time without progress on its last attempt ({@link RunPace.stalled}) fails for
 * good: what it did again to get back to where the invocation before it stopped, and what it did past that.
 */
export function noProgressError(
  pace: RunPace,
  format: DetectedFormat,
  plan: Pick<ReadPlan, 'staging' | 'resumedFrom'>,
): NoProgressError {
  const { attempt, maxAttempts, work, stagingWork } = pace;
  const { staging, resumedFrom } = plan;
  const share = `less than ${settings.ledger.handOverMinFreshShare * 100}% new`;
  if (work.redone + work.fresh > 0 || !staging) {
    return new NoProgressError(
      `attempt ${attempt} of ${maxAttempts} ran out of time after parsing ${work.redone} records again ` +
        `to reach its checkpoint (row ${resumedFrom?.row ?? 0}) and ${work.fresh} past it (${share}): a ` +
        `${format.compression ? `${format.compression} ` : ''}${format.format} file this long cannot be resumed from a record ` +
        'checkpoint within one invocation',
    );
  }
  return new NoProgressError(
    `attempt ${attempt} of ${maxAttempts} ran out of time after inflating ${stagingWork.redone} bytes ` +
      `again to reach its last staged object, before it could stage one more` +
      (staging.size !== undefined ? ', or while scanning its staged copy for where to split it' : ''),
  );
}
