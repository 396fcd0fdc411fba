import { settings } from '#shared/settings.ts';

/**
 * What one invocation of a long file did before it handed the file over, in one unit: `redone` is the work
 * it repeated to get back to where the invocation before it stopped (records parsed again and skipped to
 * reach a record checkpoint; bytes inflated again and dropped to reach the last staged object), `fresh` the
 * work past that point (records read past the checkpoint; bytes staged).
 */
export interface InvocationWork {
  readonly redone: number;
  readonly fresh: number;
}

/**
 * Whether an invocation that hands its file over made progress, and so gives its attempt back: some fresh
 * work, and at least `minFreshShare` of all it did. The work an invocation redoes grows with each hand-over
 * while the time it has does not, so a chain of continuations of a file too long for its checkpoints ends
 * up redoing almost everything: those invocations count as attempts, and the file ends instead of being
 * handed over forever.
 */
export function madeProgress(
  work: InvocationWork,
  minFreshShare: number = settings.ledger.handOverMinFreshShare,
): boolean {
  return work.fresh > 0 && work.fresh >= minFreshShare * (work.redone + work.fresh);
}

/**
 * Thrown from inside a read (while it skips to a checkpoint, or stages a file) to stop it and hand the file
 * over: how running out of time unwinds the read, not a failure.
 */
export class HandOverNow extends Error {
  constructor() {
    super('out of time: hand the file over');
    this.name = 'HandOverNow';
  }
}
