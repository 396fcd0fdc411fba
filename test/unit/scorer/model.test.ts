import { describe, expect, it } from 'vitest';
import { EMPTY_STATE, mergeStates, welford, zScoreModel } from '../../../functions/scorer/model.ts';

const fold = (values: number[]) => values.reduce(welford, EMPTY_STATE);

describe('z-score model', () => {
  it('keeps count, mean and M2 like a two-pass computation', () => {
    const values = [2, 4, 4, 4, 5, 5, 7, 9];
    const s = fold(values);
    expect(s.count).toBe(8);
    expect(s.mean).toBeCloseTo(5);
    expect(s.m2 / s.count).toBeCloseTo(4); // population variance
  });

  it('merges partial states independently of order', () => {
    const a = [1, 2, 3, 10];
    const b = [7, 8, 100, -4, 0.5];
    const whole = fold([...a, ...b]);
    for (const merged of [mergeStates(fold(a), fold(b)), mergeStates(fold(b), fold(a))]) {
      expect(merged.count).toBe(whole.count);
      expect(merged.mean).toBeCloseTo(whole.mean, 10);
      expect(merged.m2).toBeCloseTo(whole.m2, 8);
    }
  });

  it('gives no score until the series has enough samples', () => {
    const model = zScoreModel({ threshold: 3, minSamples: 10 });
    expect(model.score(fold([1, 2, 3]), 1000)).toEqual({ score: null, anomaly: false });
  });

  it('flags |z| >= threshold as an anomaly', () => {
    const model = zScoreModel({ threshold: 3, minSamples: 5 });
    const state = fold([10, 11, 9, 10, 11, 9, 10, 10]);
    const std = Math.sqrt(state.m2 / (state.count - 1));
    const far = model.score(state, state.mean + 3.5 * std);
    const near = model.score(state, state.mean + std);
    expect(far.anomaly).toBe(true);
    expect(far.score).toBeCloseTo(3.5);
    expect(near).toEqual({ score: expect.closeTo(1), anomaly: false });
  });

  it('treats any change from a constant series as an anomaly', () => {
    const model = zScoreModel({ threshold: 3, minSamples: 3 });
    const state = fold([5, 5, 5, 5]);
    expect(model.score(state, 5)).toEqual({ score: 0, anomaly: false });
    expect(model.score(state, 6)).toEqual({ score: null, anomaly: true });
  });
});
