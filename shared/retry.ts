/**
 * The one retry-with-backoff of the project: every loop that tries again after a pause (entries a batch
 * call left over, a cancelled transaction, a conflict, a failed invocation) takes its delay from
 * {@link backoffDelay} and, where it is a plain loop, runs through {@link retryLeftovers} or
 * {@link retrying}. The SDK's own retries (throttling, 5xx on whole calls) come first; these handle what a
 * call answered but did not do.
 */

/** Exponential backoff: the pause before a retry doubles from `baseMs`, up to `maxMs`. */
export interface Backoff {
  /** The pause before the first retry (before jitter). */
  readonly baseMs: number;
  /** The longest pause (before jitter). @default no bound */
  readonly maxMs?: number;
  /**
   * `full`: anywhere from 0 to the pause (spreads concurrent retriers most); `equal`: from half the pause
   * to the pause; `none`: the pause itself.
   */
  readonly jitter: 'full' | 'equal' | 'none';
}

export interface RetryPolicy extends Backoff {
  /** Calls in all, the first included. */
  readonly attempts: number;
  /** @default setTimeout */
  readonly sleep?: (ms: number) => Promise<void>;
}

/** How long to wait before retry number `retry` (1: the pause after the first call). */
export function backoffDelay(retry: number, backoff: Backoff, random: () => number = Math.random): number {
  const pause = Math.min(
    backoff.maxMs ?? Number.POSITIVE_INFINITY,
    backoff.baseMs * 2 ** Math.min(retry - 1, 30),
  );
  switch (backoff.jitter) {
    case 'full':
      return random() * pause;
    case 'equal':
      return pause / 2 + random() * (pause / 2);
    default:
      return pause;
  }
}

/** A pause of `ms` milliseconds. */
export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/**
 * Calls `call` with `items`, then again with what each call leaves over (entries that failed, items left
 * unprocessed), pausing between calls, until nothing is left. After `policy.attempts` calls with something
 * still left, throws what `exhausted` makes of it.
 * @returns how many calls were made.
 */
export async function retryLeftovers<T>(
  items: readonly T[],
  call: (items: readonly T[], attempt: number) => Promise<readonly T[] | undefined>,
  policy: RetryPolicy & { readonly exhausted: (left: readonly T[], attempts: number) => Error },
): Promise<number> {
  const pause = policy.sleep ?? sleep;
  let left: readonly T[] = items;
  let attempt = 0;
  while (left.length > 0) {
    if (attempt >= policy.attempts) throw policy.exhausted(left, attempt);
    if (attempt > 0) await pause(backoffDelay(attempt, policy));
    attempt++;
    left = (await call(left, attempt)) ?? [];
  }
  return attempt;
}

/**
 * Calls `fn` until it resolves; a rejection that `retryable` accepts is tried again after a pause, at most
 * `policy.attempts` calls in all, and any other rejection (or the last) is thrown as it is.
 */
export async function retrying<T>(
  fn: (attempt: number) => Promise<T>,
  policy: RetryPolicy & { readonly retryable: (err: unknown, attempt: number) => boolean },
): Promise<T> {
  const pause = policy.sleep ?? sleep;
  for (let attempt = 1; ; attempt++) {
    try {
      return await fn(attempt);
    } catch (err) {
      if (attempt >= policy.attempts || !policy.retryable(err, attempt)) throw err;
      await pause(backoffDelay(attempt, policy));
    }
  }
}
