/**
 * `pulse drop FILE… --wait`: after the upload, follows each object version to its final state — its ledger
 * item (records ingested), then, once SUCCESS, its receipt (shared/receipts.ts: rows scored and quarantined,
 * counted from the score and rejects objects) until it balances — and stores the last receipt on the item.
 * Works offline and on a deployed stack alike (a {@link Target}).
 *
 *   uploaded ──► queued (no ledger item yet) ──► ingesting (DISCOVERED, PROCESSING, SPLIT, FAILED retryable)
 *            ──► scoring (SUCCESS, receipt not balanced yet) ──► balanced
 *            ──► failed (FAILED for good) | skipped (SKIPPED)            (and timed out from any of them)
 */

import type { LedgerItem } from '#shared/ledger.ts';
import { storeReceipts } from '#shared/receipt-store.ts';
import { type Receipt, receiptsOf } from '#shared/receipts.ts';
import { streamOf } from '#shared/verify-sources.ts';
import type { Dropped } from './operations.ts';
import { ledgerVersions } from './operations.ts';
import type { Target } from './target.ts';

export type WaitPhase = 'queued' | 'ingesting' | 'scoring' | 'balanced' | 'failed' | 'skipped';

/** The phases after which nothing more will happen to the version. */
export const FINAL_PHASES: ReadonlySet<WaitPhase> = new Set(['balanced', 'failed', 'skipped']);

/** Where one dropped file stands. */
export interface FileWait {
  readonly dropped: Dropped;
  readonly phase: WaitPhase;
  /** The version's ledger item, once there is one. */
  readonly item?: LedgerItem;
  /** Records the ledger says were read (sent + rejected). */
  readonly read: number;
  /** Rows scored, as the receipt counts them (SUCCESS only). */
  readonly scored: number;
  /** Rows the receipt accounts for: scored, quarantined, duplicates, not records (SUCCESS only). */
  readonly accounted: number;
  /** The last receipt counted (SUCCESS only). */
  readonly receipt?: Receipt;
  /** The wait ended before the version reached a final phase. */
  readonly timedOut: boolean;
}

/**
 * The phase of a version given its items (the file's and its parts') and, once SUCCESS, its receipt: a pure
 * step of the state machine above.
 */
export function phaseOf(file: LedgerItem | undefined, receipt: Receipt | undefined): WaitPhase {
  if (!file) return 'queued';
  switch (file.status) {
    case 'SUCCESS':
      return receipt?.verdict === 'ok' ? 'balanced' : 'scoring';
    case 'SKIPPED':
      return 'skipped';
    case 'FAILED':
      // A retryable failure is claimed again by the next delivery.
      return file.retryable === false ? 'failed' : 'ingesting';
    default:
      return 'ingesting';
  }
}

export interface WaitOptions {
  /** Give up after this long. */
  readonly timeoutMs: number;
  /** Between two reads of a file's state. @default 1000 */
  readonly pollMs?: number;
  /** Called with every file's state after each round. */
  readonly onRound?: (files: readonly FileWait[]) => void;
  readonly now?: () => number;
  readonly sleep?: (ms: number) => Promise<void>;
}

/**
 * Follows every dropped version to a final phase or the timeout; then stores each SUCCESS version's last
 * receipt on its item (`pulse drop --wait`). Returns the files in the order given.
 */
export async function waitForFiles(
  target: Target,
  dropped: readonly Dropped[],
  opts: WaitOptions,
): Promise<FileWait[]> {
  const now = opts.now ?? Date.now;
  const sleep = opts.sleep ?? ((ms: number) => new Promise<void>((r) => setTimeout(r, ms)));
  const deadline = now() + opts.timeoutMs;
  let files: FileWait[] = dropped.map((d) => ({
    dropped: d,
    phase: 'queued',
    read: 0,
    scored: 0,
    accounted: 0,
    timedOut: false,
  }));
  const itemsOf = new Map<FileWait['dropped'], LedgerItem[]>();
  for (;;) {
    files = await Promise.all(
      files.map(async (f) => {
        if (FINAL_PHASES.has(f.phase)) return f;
        const items = (await ledgerVersions(target, f.dropped.key)).filter((i) => i.etag === f.dropped.etag);
        itemsOf.set(f.dropped, items);
        return stepOf(target, f, items);
      }),
    );
    opts.onRound?.(files);
    if (files.every((f) => FINAL_PHASES.has(f.phase))) break;
    if (now() >= deadline) {
      files = files.map((f) => (FINAL_PHASES.has(f.phase) ? f : { ...f, timedOut: true }));
      break;
    }
    await sleep(Math.min(opts.pollMs ?? 1000, Math.max(0, deadline - now())));
  }
  // The last receipt of each SUCCESS version, balanced or not, is kept on its item.
  const at = new Date(now());
  for (const f of files) {
    if (f.receipt) {
      const items = itemsOf.get(f.dropped) ?? [];
      await storeReceipts(
        target.clients.doc,
        target.ledgerTable,
        target.bucket,
        items,
        [f.receipt],
        at,
        'pulse drop --wait',
        'skip',
      );
    }
  }
  return files;
}

/** One file's next state, from its items. */
async function stepOf(target: Target, f: FileWait, items: readonly LedgerItem[]): Promise<FileWait> {
  const file = items.find((i) => i.part === undefined);
  const read = (file?.records ?? 0) + (file?.rejected ?? 0);
  if (file?.status !== 'SUCCESS') {
    return { ...f, phase: phaseOf(file, undefined), read, ...(file ? { item: file } : {}) };
  }
  const receipt = (await receiptsOf(target, items)).find((r) => r.object === streamOf(target.bucket, file));
  return {
    ...f,
    item: file,
    read,
    scored: receipt?.scored ?? 0,
    accounted: receipt ? receipt.read - receipt.missing : 0,
    phase: phaseOf(file, receipt),
    ...(receipt ? { receipt } : {}),
  };
}

/**
 * The exit code of `pulse drop --wait`: 3 when a file FAILED or was SKIPPED; else 2 when a receipt does not
 * balance (a SUCCESS version whose rows were not all found by the timeout); else 4 when a file had not ended
 * by the timeout; else 0.
 */
export function waitExitCode(files: readonly FileWait[]): number {
  if (files.some((f) => f.phase === 'failed' || f.phase === 'skipped')) return 3;
  if (files.some((f) => f.phase === 'scoring')) return 2;
  if (files.some((f) => f.timedOut)) return 4;
  return 0;
}

/** One line per file for a person: its final phase, then its receipt. */
export function waitSummary(f: FileWait): string {
  const what = `${f.dropped.file} → s3://${f.dropped.bucket}/${f.dropped.key}@${f.dropped.etag}`;
  const state: Record<WaitPhase, string> = {
    queued: 'not in the ledger yet (no ObjectCreated event reached the pipeline?)',
    ingesting: `still ${f.item?.status ?? 'ingesting'}: ${f.read} records read so far`,
    scoring: `SUCCESS, ${f.accounted} of ${f.read} records scored or quarantined so far: the receipt does not balance`,
    balanced: `SUCCESS: ${f.read} records read, every one accounted for`,
    failed: `FAILED: ${f.item?.errorType ?? ''} ${f.item?.errorMessage ?? ''}`.trim(),
    skipped: `SKIPPED: ${f.item?.errorMessage ?? 'see pulse ledger'}`,
  };
  return `${what}  ${state[f.phase]}${f.timedOut ? ' (timed out)' : ''}`;
}
