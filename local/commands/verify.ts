/**
 * `pulse verify KEY|--since T`: the receipts (shared/receipts.ts) of the selected object versions, each
 * stored on its ledger item (shared/receipt-store.ts). Works offline and on a deployed stack alike (a
 * {@link Target}).
 */

import type { LedgerItem } from '#shared/ledger.ts';
import { storeReceipts } from '#shared/receipt-store.ts';
import { type Receipt, receiptsOf } from '#shared/receipts.ts';
import { ledgerEntries, ledgerVersions } from './operations.ts';
import type { Target } from './target.ts';

export { MISSING_ROWS_LISTED, type Receipt, type ReceiptVerdict } from '#shared/receipts.ts';

/** Which object versions: every version of one key, or every file the ledger updated since a time. */
export type VerifySelection = { readonly key: string } | { readonly since: Date };

/** The receipts of the selected object versions (no version found: none), stored on their items by `by`. */
export async function verify(
  target: Target,
  selection: VerifySelection,
  now = new Date(),
  by = 'pulse verify',
): Promise<Receipt[]> {
  const items =
    'key' in selection
      ? await ledgerVersions(target, selection.key)
      : await updatedSince(target, selection.since);
  const receipts = await receiptsOf(target, items, now);
  // Operator credentials without dynamodb:UpdateItem still verify: the receipts are printed, not stored.
  await storeReceipts(
    target.clients.doc,
    target.ledgerTable,
    target.bucket,
    items,
    receipts,
    now,
    by,
    'skip',
  );
  return receipts;
}

/**
 * The exit code of `pulse verify`: 2 when a receipt does not balance; else 3 when no version was found or
 * none has finished; else 0.
 */
export function verifyExitCode(receipts: readonly Receipt[]): number {
  if (receipts.some((r) => r.verdict === 'mismatch')) return 2;
  return receipts.some((r) => r.verdict === 'ok') ? 0 : 3;
}

/** `--since`: an ISO-8601 time, or a duration back from `now` (`90m`, `24h`, `7d`). */
export function parseSince(text: string, now = new Date()): Date {
  const ago = /^(\d+)([mhd])$/.exec(text.trim());
  if (ago) {
    const unit = { m: 60_000, h: 3_600_000, d: 86_400_000 }[ago[2] as 'm' | 'h' | 'd'];
    return new Date(now.getTime() - Number(ago[1]) * unit);
  }
  const t = Date.parse(text);
  if (!Number.isFinite(t))
    throw new Error(
      `--since takes a time (2024-05-01T12:00:00Z) or a duration (90m, 24h, 7d), not ${JSON.stringify(text)}`,
    );
  return new Date(t);
}

// ------------------------------------------------------------------------------------------ ledger

/** Every ledger item (file versions and their parts) of one key. */
async function updatedSince(target: Target, since: Date): Promise<LedgerItem[]> {
  const t = since.toISOString();
  return (await ledgerEntries(target)).filter((i) => String(i.updatedAt) >= t);
}
