import { describe, expect, it } from 'vitest';
import { limitHeapGrowth } from '#shared/heap.ts';
import { settings } from '#shared/settings.ts';

describe('limitHeapGrowth', () => {
  it('refuses a growth that is not a whole percentage from 10 to 1000', () => {
    for (const bad of [0, 9, 1001, 50.5, Number.NaN]) {
      expect(() => limitHeapGrowth(bad)).toThrow(RangeError);
    }
  });

  it("accepts s3-trigger's setting", () => {
    // Its effect on peak RSS is measured by `npm run bench` (a 10 MB and a 1 GiB file, each in a process).
    expect(() => limitHeapGrowth(settings.functions.s3Trigger.heapGrowingPercent)).not.toThrow();
  });
});
