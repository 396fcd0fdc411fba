import { describe, expect, it, vi } from 'vitest';
import {
  pollersHealth,
  type RuntimeLogger,
  runtimeEnv,
  startSchedule,
} from '../../../../local/runtime/runtime.ts';
import { localStateFactory } from '../../../helpers/factories.ts';

const logger: RuntimeLogger = { info: () => {}, warn: () => {}, error: () => {} };

/** Waits until `check` holds (the schedule's first run starts on a zero timer). */
async function until(check: () => boolean): Promise<void> {
  for (let i = 0; i < 200 && !check(); i++) await new Promise((r) => setTimeout(r, 5));
}

describe('startSchedule (the poller schedule of the offline run)', () => {
  it('reports the last successful run and its counts of rows with a NULL watermark and of stalled rows', async () => {
    // Prepare
    const handler = vi.fn().mockResolvedValue({ mode: 'watermark', nullWatermark: 4, stalled: 7 });

    // Act
    const schedule = startSchedule(handler, 60_000, logger);
    await until(() => schedule.health().lastSuccessAt !== null);
    await schedule.stop();

    // Assess
    expect(handler).toHaveBeenCalledTimes(1);
    expect(schedule.health()).toMatchObject({
      watermarkNullRows: 4,
      watermarkStalledRows: 7,
      lastSuccessAt: expect.any(String),
    });
  });

  it('reports no count for a mark-mode run, and no success for a failed one', async () => {
    // Prepare
    const down = vi.fn().mockRejectedValue(new Error('db down'));
    const mark = startSchedule(vi.fn().mockResolvedValue({ mode: 'mark' }), 60_000, logger);
    const failing = startSchedule(down, 60_000, logger);

    // Act
    await until(() => mark.health().lastSuccessAt !== null && down.mock.calls.length > 0);
    await Promise.all([mark.stop(), failing.stop()]);

    // Assess
    expect(mark.health().watermarkNullRows).toBeUndefined();
    expect(mark.health().watermarkStalledRows).toBeUndefined();
    expect(failing.health()).toMatchObject({ lastSuccessAt: null });
    expect(failing.health().watermarkNullRows).toBeUndefined();
    expect(failing.health().watermarkStalledRows).toBeUndefined();
  });

  it('runs any scheduled function under its own name and timeout, and keeps what its last run returned', async () => {
    // Prepare: the ledger sweep's summary
    const summary = {
      stuck: { processing: 1, split: 0, discovered: 0, exhausted: 0 },
      canary: { missed: false },
    };
    const handler = vi.fn().mockResolvedValue(summary);

    // Act
    const schedule = startSchedule(handler, 60_000, logger, {
      functionName: 'pulse-ledger-sweep',
      timeoutSeconds: 60,
    });
    await until(() => schedule.health().lastSuccessAt !== null);
    await schedule.stop();

    // Assess
    const context = handler.mock.calls[0]?.[1] as {
      functionName: string;
      getRemainingTimeInMillis(): number;
    };
    expect(context.functionName).toBe('pulse-ledger-sweep');
    expect(context.getRemainingTimeInMillis()).toBeLessThanOrEqual(60_000);
    expect(context.getRemainingTimeInMillis()).toBeGreaterThan(50_000);
    expect(schedule.health().lastResult).toEqual(summary);
  });

  it('gives the ledger sweep shortened thresholds when the offline run shortens its lease, visibility and schedule', () => {
    // Prepare
    const state = localStateFactory({ leaseSeconds: 4, visibilitySeconds: 6, sweepSeconds: 5 });
    // Act
    const env = runtimeEnv(state);
    const defaults = runtimeEnv({ ...state, options: {} });
    // Assess
    expect(env).toMatchObject({
      INGEST_BUCKET: 'p-ingest',
      SWEEP_PROCESSING_STUCK_SECONDS: '10',
      SWEEP_CANARY_GRACE_SECONDS: '10',
    });
    expect(defaults.SWEEP_PROCESSING_STUCK_SECONDS).toBeUndefined();
    expect(defaults.SWEEP_CANARY_GRACE_SECONDS).toBeUndefined();
  });
});

describe("the offline run's schedules of several db-poller tables", () => {
  it("gives each schedule's invocation its input (the table) beside the scheduler's context attributes", async () => {
    // Prepare
    const handler = vi.fn().mockResolvedValue({ mode: 'mark' });

    // Act
    const schedule = startSchedule(handler, 60_000, logger, undefined, { table: 'orders' });
    await until(() => handler.mock.calls.length > 0);
    await schedule.stop();

    // Assess
    expect(handler.mock.calls[0]?.[0]).toEqual({
      table: 'orders',
      scheduledTime: expect.stringMatching(/Z$/),
      executionId: expect.any(String),
    });
  });

  it('reports them to the alarms as one poller: silent from the oldest last success, counts summed, the slowest period', async () => {
    // Prepare: one table reports NULL watermarks, the other has not succeeded yet, then has.
    const wm = startSchedule(vi.fn().mockResolvedValue({ nullWatermark: 2, stalled: 0 }), 60_000, logger);
    let fail = true;
    const markFn = vi.fn().mockImplementation(async () => {
      if (fail) throw new Error('relation "orders" does not exist');
      return { mode: 'mark' };
    });
    const mark = startSchedule(markFn, 60_000, logger);
    await until(() => wm.health().lastSuccessAt !== null && markFn.mock.calls.length > 0);

    // Act
    const oneSilent = pollersHealth([
      { schedule: wm, periodMs: 60_000 },
      { schedule: mark, periodMs: 300_000 },
    ]);
    await mark.stop();
    fail = false;
    const markOk = startSchedule(markFn, 60_000, logger);
    await until(() => markOk.health().lastSuccessAt !== null);
    const both = pollersHealth([
      { schedule: wm, periodMs: 60_000 },
      { schedule: markOk, periodMs: 300_000 },
    ]);
    await Promise.all([wm.stop(), markOk.stop()]);

    // Assess
    expect(oneSilent).toMatchObject({ lastSuccessAt: null, watermarkNullRows: 2, periodSeconds: 300 });
    expect(both.lastSuccessAt).toBe([wm.health().lastSuccessAt, markOk.health().lastSuccessAt].sort()[0]);
    expect(both).toMatchObject({ watermarkNullRows: 2, watermarkStalledRows: 0 });
  });
});
