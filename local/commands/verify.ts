/**
 * `pulse verify KEY|--since T`: a reconciliation receipt per object version — every record read is
 * accounted for, counted from where each one ended up, not from the ledger's counters alone:
 *
 *   records read (the ledger: sent + rejected) = rows scored (the score objects, pending ones included)
 *     + rows quarantined (the file's rejects objects, and the scorer's) + parts of the file that are not
 *     records (their rejects lines without a row) + rows dropped as duplicates (named: their own id was
 *     scored from another row of the scope)
 *
 * A mismatch lists the rows found nowhere. Works offline and on a deployed stack alike (a {@link Target}).
 *
 * Cost: the score objects are first those the files' blocks in the scores table name (the tokens of the
 * transactions that applied their rows): a file that balances costs about what it holds. When rows are
 * still missing (or are kept by id items, a record's own id, which no block names), every score object of
 * the days (`scores/dt=<day>/`) from the oldest version verified to today, and `scores-pending/`, is read
 * before anything is called missing. The scorer's rejects (`rejects/scorer/<day>/`) are listed by day.
 */

import type { LedgerItem } from '#shared/ledger.ts';
import { settings } from '#shared/settings.ts';
import { Bitmap } from '../../functions/scorer/blocks.ts';
import { blockKey, streamIdOf } from '../../functions/scorer/keys.ts';
import { readItems } from '../../functions/scorer/state.ts';
import { ledgerEntries, ledgerVersions } from './operations.ts';
import type { Target } from './target.ts';
import {
  days,
  emptyFound,
  type Found,
  scanRejects,
  scanScorerRejects,
  scanScores,
  scoresByTokens,
  sleep,
  streamOf,
} from './verify-sources.ts';

/** Rows listed at most per receipt. */
export const MISSING_ROWS_LISTED = 100;

export type ReceiptVerdict = 'ok' | 'mismatch' | 'unfinished';

export interface Receipt {
  /** `s3://bucket/key@etag`: every row's ref starts with it. */
  readonly object: string;
  readonly key: string;
  readonly etag: string;
  readonly status: LedgerItem['status'];
  /** Records the ledger says were read: sent + rejected. */
  readonly read: number;
  readonly ledger: { readonly records: number; readonly rejected: number };
  /** Rows with a score record (a final or pending score object). */
  readonly scored: number;
  /** Rows in the file's rejects objects. */
  readonly quarantined: number;
  /** Rows the scorer quarantined (invalid when read off the queue). */
  readonly quarantinedByScorer: number;
  /** Rows dropped as duplicates: their own id was already scored from another row (the scorer's collisions). */
  readonly duplicates: number;
  /** Rejects lines without a row: bytes after a compressed stream's end, and the like. */
  readonly notRecords: number;
  /** read − every row accounted for (negative: more found than the ledger counted). */
  readonly missing: number;
  /** The first rows found nowhere (up to {@link MISSING_ROWS_LISTED}). */
  readonly missingRows: readonly number[];
  /**
   * Of `missingRows`, those the scores table holds as applied (their position's bit is set): scored, and
   * their score record lost (a score object deleted); the others never reached the scorer.
   */
  readonly appliedWithoutScore: readonly number[];
  /**
   * - `ok`: every record read is accounted for;
   * - `mismatch`: some are not (or more were found than read);
   * - `unfinished`: the version is not SUCCESS or FAILED yet (nothing to reconcile).
   */
  readonly verdict: ReceiptVerdict;
}

/** Which object versions: every version of one key, or every file the ledger updated since a time. */
export type VerifySelection = { readonly key: string } | { readonly since: Date };

/** The receipts of the selected object versions (no version found: none). */
export async function verify(
  target: Target,
  selection: VerifySelection,
  now = new Date(),
): Promise<Receipt[]> {
  const items =
    'key' in selection
      ? await ledgerVersions(target, selection.key)
      : await updatedSince(target, selection.since);
  const files = items.filter((i) => i.part === undefined);
  if (files.length === 0) return [];
  const streams = new Map<string, Found>();
  for (const f of files) streams.set(streamOf(target.bucket, f), emptyFound());
  const oldest = Math.min(...files.map((f) => Date.parse(f.createdAt)));
  await scanRejects(target, items, streams);
  await scanScorerRejects(target, days(oldest, now), streams);
  const receiptsNow = () =>
    files.map((f) => receiptOf(target.bucket, f, streams.get(streamOf(target.bucket, f)) ?? emptyFound()));
  // First the score objects the files' blocks name (their transactions' tokens): a file that balances costs
  // what it holds. Rows kept by an id item, or whose token a busy block dropped, are found only by listing
  // the days: done when something is still missing, before anything is called missing.
  const read = await scoresByTokens(target, files, streams);
  let receipts = receiptsNow();
  if (receipts.some((r) => r.verdict === 'mismatch')) {
    await scanScores(target, days(oldest, now), streams, read);
    receipts = receiptsNow();
  }
  return Promise.all(receipts.map((r) => withApplied(target, r)));
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

function receiptOf(bucket: string, item: LedgerItem, found: Found): Receipt {
  const object = streamOf(bucket, item);
  const ledger = { records: item.records ?? 0, rejected: item.rejected ?? 0 };
  const read = ledger.records + ledger.rejected;
  const rows = new Set<number>([
    ...found.scored,
    ...found.quarantined,
    ...found.byScorer,
    ...found.duplicates,
  ]);
  const missing = read - rows.size - found.notRecords;
  const missingRows: number[] = [];
  if (missing !== 0) {
    // Rows are numbered from 1; the last row read is at least as far as the count says.
    const last = Math.max(read - found.notRecords, ...rows);
    for (let row = 1; row <= last && missingRows.length < MISSING_ROWS_LISTED; row++) {
      if (!rows.has(row)) missingRows.push(row);
    }
  }
  const finished = item.status === 'SUCCESS' || item.status === 'FAILED';
  return {
    object,
    key: item.pk.replace(/^s3:\/\/[^/]+\//, ''),
    etag: item.etag ?? item.sk,
    status: item.status,
    read,
    ledger,
    scored: found.scored.size,
    quarantined: found.quarantined.size,
    quarantinedByScorer: found.byScorer.size,
    duplicates: found.duplicates.size,
    notRecords: found.notRecords,
    missing,
    missingRows,
    appliedWithoutScore: [],
    verdict: !finished ? 'unfinished' : missing === 0 ? 'ok' : 'mismatch',
  };
}

/** `r` with the rows of `missingRows` whose positions the scores table holds as applied (one BatchGet of blocks). */
async function withApplied(target: Target, r: Receipt): Promise<Receipt> {
  if (r.verdict !== 'mismatch' || r.missingRows.length === 0) return r;
  const per = settings.scoring.blockPositions;
  const id = streamIdOf('s3', r.object);
  const keys = new Set(r.missingRows.map((row) => blockKey(id, Math.floor(row / per))));
  const items = await readItems(target.clients.doc, target.scoresTable, keys, sleep);
  const applied = r.missingRows.filter((row) => {
    const block = Math.floor(row / per);
    const item = items.get(blockKey(id, block));
    return item !== undefined && Bitmap.from(item.b as Uint8Array).has(row - block * per);
  });
  return { ...r, appliedWithoutScore: applied };
}

// ------------------------------------------------------------------------------------------ ledger

/** Every ledger item (file versions and their parts) of one key. */
async function updatedSince(target: Target, since: Date): Promise<LedgerItem[]> {
  const t = since.toISOString();
  return (await ledgerEntries(target)).filter((i) => String(i.updatedAt) >= t);
}
