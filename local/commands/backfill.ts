/**
 * `pulse backfill --prefix P [--since T] [--until T] [--force]`: enqueues the objects under a prefix, last
 * modified in a window, that the ledger has not seen (operations.ts's `backfill`). With `--force`, the
 * versions the ledger already has are looked at too: a FAILED (for good) or SKIPPED one is run again through
 * the explicit retry path (`pulse ledger retry`'s: reset recorded on the item, then its file event), never a
 * SUCCESS (re-scoring it silently would hide what happened; upload it again for a new version), nor one
 * still on its way (DISCOVERED, PROCESSING, SPLIT, FAILED and still retryable).
 */

import type { LedgerItem } from '#shared/ledger.ts';
import { type BackfillProgress, type BackfillResult, backfill } from './operations.ts';
import { defaultOperator, type RetryResult, retryOne } from './retry.ts';
import type { Target } from './target.ts';

export interface BackfillWindow {
  readonly since?: Date;
  readonly until?: Date;
  readonly force?: boolean;
  /** Who asks, recorded on each item a --force retries. @default user@host */
  readonly by?: string;
  readonly now?: Date;
  /** A bucket the stack ingests from besides its own (`existingBuckets`). @default its own */
  readonly bucket?: string;
}

export interface ForcedVersion {
  readonly key: string;
  readonly etag: string;
  /** `kept`: not run again (`reason` says why); the others as `pulse ledger retry` reports them. */
  readonly outcome: RetryResult['outcome'] | 'kept';
  readonly reason?: string;
}

export interface WindowedBackfillResult extends BackfillResult {
  /** With --force: what was done with each version the ledger already had. */
  readonly forced: readonly ForcedVersion[];
}

/** Backfills the window; with `force`, runs the FAILED and SKIPPED versions the ledger has again. */
export async function backfillWindow(
  target: Target,
  prefix: string,
  window: BackfillWindow,
  progress?: BackfillProgress,
): Promise<WindowedBackfillResult> {
  const forced: ForcedVersion[] = [];
  const by = window.by ?? defaultOperator();
  const now = window.now ?? new Date();
  const result = await backfill(target, prefix, progress, {
    ...(window.since ? { since: window.since } : {}),
    ...(window.until ? { until: window.until } : {}),
    ...(window.bucket ? { bucket: window.bucket } : {}),
    ...(window.force
      ? {
          known: async (items: LedgerItem[]) => {
            for (const item of items) forced.push(await force(target, item, by, now));
          },
        }
      : {}),
  });
  return { ...result, forced };
}

async function force(target: Target, item: LedgerItem, by: string, now: Date): Promise<ForcedVersion> {
  const base = { key: item.key, etag: item.etag };
  if (item.status === 'SUCCESS') {
    return {
      ...base,
      outcome: 'kept',
      reason:
        'SUCCESS: never scored again by a backfill; upload the file again to ingest it as a new version',
    };
  }
  const ended = (item.status === 'FAILED' && item.retryable !== true) || item.status === 'SKIPPED';
  if (!ended) {
    return {
      ...base,
      outcome: 'kept',
      reason: `${item.status}: still on its way; see pulse ledger --key ${item.key}`,
    };
  }
  const r = await retryOne(target, item, by, now);
  return { ...base, outcome: r.outcome, ...(r.reason ? { reason: r.reason } : {}) };
}
