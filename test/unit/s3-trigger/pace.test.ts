import { describe, expect, it } from 'vitest';
import { NoProgressError } from '#shared/errors.ts';
import { settings } from '#shared/settings.ts';
import { noProgressError, type PaceOptions, RunPace } from '../../../functions/s3-trigger/pace.ts';

/** A pace on a clock the test moves. */
function paced(opts: Partial<PaceOptions> = {}) {
  const clock = { now: 1_000, left: 60_000 };
  const pace = new RunPace(
    {
      now: () => clock.now,
      remainingMs: () => clock.left,
      heartbeatMs: 10_000,
      checkpointMs: 60_000,
      handOverMs: 5_000,
      attempt: 1,
      maxAttempts: 3,
      ...opts,
    },
    clock.now,
  );
  return { clock, pace };
}

describe('RunPace', () => {
  it('is out of time only with less left than the hand-over margin, and never without a margin', () => {
    // Prepare
    const { clock, pace } = paced();
    const { clock: neverClock, pace: never } = paced({ handOverMs: undefined });
    // Act
    const early = pace.outOfTime();
    clock.left = 4_999;
    neverClock.left = 0;
    // Assess
    expect(early).toBe(false);
    expect(pace.outOfTime()).toBe(true);
    expect(never.outOfTime()).toBe(false);
  });

  it('is due a heartbeat once per interval, and a checkpoint keeps the lease as well', () => {
    // Prepare
    const { clock, pace } = paced();
    // Act
    const beforeInterval = pace.beatDue();
    clock.now += 10_000;
    const atInterval = pace.beatDue();
    const rightAfter = pace.beatDue();
    clock.now += 60_000;
    const checkpointDue = pace.checkpointDue();
    pace.checkpointed();
    // Assess
    expect([beforeInterval, atInterval, rightAfter]).toEqual([false, true, false]);
    expect(checkpointDue).toBe(true);
    expect(pace.checkpointDue()).toBe(false);
    expect(pace.beatDue()).toBe(false);
  });

  it('counts one staged object as progress, records only past their share, and stalls only on the last attempt', () => {
    // Prepare
    const { pace: first } = paced();
    const { pace: last } = paced({ attempt: 3 });
    const share = settings.ledger.handOverMinFreshShare;
    // Act
    last.work.redone = 1_000;
    last.work.fresh = Math.floor((1_000 * share) / (1 - share)) - 1;
    const recordsBelowShare = last.progressed();
    const stalledBelowShare = last.stalled();
    last.stagingWork.fresh = 1;
    // Assess
    expect(recordsBelowShare).toBe(false);
    expect(stalledBelowShare).toBe(true);
    expect(last.progressed()).toBe(true);
    expect(last.stalled()).toBe(false);
    expect(first.stalled()).toBe(false);
  });

  it('says why a stalled run fails: the records it parsed again, or the bytes it inflated again', () => {
    // Prepare
    const { pace } = paced({ attempt: 3 });
    pace.work.redone = 500;
    const { pace: staging } = paced({ attempt: 3 });
    staging.stagingWork.redone = 1_024;
    const checkpoint = { kind: 'record', position: 500, row: 500 } as const;
    // Act
    const records = noProgressError(
      pace,
      { format: 'csv', compression: 'gzip' },
      {
        resumedFrom: {
          ...checkpoint,
          records: 500,
          rejected: 0,
          bytesRead: 1,
          firstErrors: [],
          rejectsKeys: [],
          attempt: 2,
          savedAt: '',
        },
      },
    );
    const staged = noProgressError(
      staging,
      { format: 'csv', compression: 'gzip' },
      {
        staging: { prefix: 'staging/x/', objectBytes: 16, objects: 2 },
      },
    );
    // Assess
    expect(records).toBeInstanceOf(NoProgressError);
    expect(records.message).toMatch(
      /^attempt 3 of 3 ran out of time after parsing 500 records again to reach its checkpoint \(row 500\)/,
    );
    expect(records.message).toContain('a gzip csv file this long');
    expect(staged.message).toMatch(/after inflating 1024 bytes again to reach its last staged object/);
    expect(staged.message).not.toContain('scanning its staged copy');
  });
});
