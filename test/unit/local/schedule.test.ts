import { describe, expect, it, vi } from 'vitest';
import { type RuntimeLogger, startSchedule } from '../../../local/runtime.ts';

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
});
