/**
 * The scoring function: one pluggable module. A model sees a series' running state and one value,
 * returns its score, and folds the value into the state. The default is the z-score against the
 * running mean and standard deviation (Welford: count, mean, M2).
 */
export interface SeriesState {
  readonly count: number;
  readonly mean: number;
  /** Sum of squared differences from the mean. */
  readonly m2: number;
}

export interface Score {
  /** The model's score, or null when it cannot say yet (too few samples). */
  readonly score: number | null;
  readonly anomaly: boolean;
}

export interface ScoringModel {
  readonly name: string;
  score(state: SeriesState, value: number): Score;
  update(state: SeriesState, value: number): SeriesState;
}

export const EMPTY_STATE: SeriesState = { count: 0, mean: 0, m2: 0 };

/** Welford's online update. */
export function welford(state: SeriesState, value: number): SeriesState {
  const count = state.count + 1;
  const delta = value - state.mean;
  const mean = state.mean + delta / count;
  return { count, mean, m2: state.m2 + delta * (value - mean) };
}

/** Chan et al.'s merge of two partial states: the result does not depend on the order of the values. */
export function mergeStates(a: SeriesState, b: SeriesState): SeriesState {
  if (a.count === 0) return b;
  if (b.count === 0) return a;
  const count = a.count + b.count;
  const delta = b.mean - a.mean;
  return {
    count,
    mean: a.mean + (delta * b.count) / count,
    m2: a.m2 + b.m2 + (delta * delta * a.count * b.count) / count,
  };
}

export interface ZScoreOptions {
  /** |z| at or above this is an anomaly. */
  readonly threshold: number;
  /** Samples the series needs before a score (and so an anomaly) is given. */
  readonly minSamples: number;
}

/** z = (value − mean) / sample standard deviation of the values seen before this one. */
export function zScoreModel(opts: ZScoreOptions): ScoringModel {
  return {
    name: 'zscore',
    score(state, value) {
      if (state.count < Math.max(2, opts.minSamples)) return { score: null, anomaly: false };
      const std = Math.sqrt(state.m2 / (state.count - 1));
      if (std === 0 || !Number.isFinite(std)) {
        // A constant series: any other value is as far out as it can be.
        return value === state.mean ? { score: 0, anomaly: false } : { score: null, anomaly: true };
      }
      const z = (value - state.mean) / std;
      return { score: z, anomaly: Math.abs(z) >= opts.threshold };
    },
    update: welford,
  };
}
