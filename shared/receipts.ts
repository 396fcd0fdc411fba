/**
 * The reconciliation receipt of `pulse verify KEY|--since T` and of the ledger sweep per object version — every record read is
 * accounted for, counted from where each one ended up, not from the ledger's counters alone:
 *
 *   records read (the ledger: sent + rejected) = rows scored (the score objects, pending ones included)
 *     + rows quarantined (the file's rejects objects, and the scorer's) + parts of the file that are not
 *     records (their rejects lines without a row) + rows dropped as duplicates (named: their own id was
 *     scored from another row of the scope)
 *
 * A mismatch lists the rows found nowhere. Counted from {@link ReceiptSources}: `pulse verify` and `drop --wait`
 * (offline or on a stack) and the ledger sweep alike.
 *
 * Cost: the score objects are first those the files' blocks in the scores table name (the tokens of the
 * transactions that applied their rows): a file that balances costs about what it holds. When rows are
 * still missing (or are kept by id items, a record's own id, which no block names), every score object of
 * the days (`scores/dt=<day>/`) from the oldest version verified to today, and `scores-pending/`, is read
 * before anything is called missing. The scorer's rejects (`rejects/scorer/<day>/`) are listed by day.
 */

import { Bitmap } from '../functions/scorer/blocks.ts';
import { blockKey, streamIdOf } from '../functions/scorer/keys.ts';
import { readItems } from '../functions/scorer/state.ts';
import type { LedgerItem } from './ledger.ts';
import { settings } from './settings.ts';
import {
  days,
  emptyFound,
  type Found,
  type ReceiptSources,
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

/**
 * The receipts of the file versions among `items` (their parts' items give the rejects objects they wrote;
 * items of other versions are ignored), counted from the score and rejects objects.
 */
export async function receiptsOf(
  sources: ReceiptSources,
  items: readonly LedgerItem[],
  now = new Date(),
): Promise<Receipt[]> {
  const files = items.filter((i) => i.part === undefined);
  if (files.length === 0) return [];
  const streams = new Map<string, Found>();
  for (const f of files) streams.set(streamOf(sources.bucket, f), emptyFound());
  const oldest = Math.min(...files.map((f) => Date.parse(f.createdAt)));
  await scanRejects(sources, items, streams);
  await scanScorerRejects(sources, days(oldest, now), streams);
  const receiptsNow = () =>
    files.map((f) => receiptOf(sources.bucket, f, streams.get(streamOf(sources.bucket, f)) ?? emptyFound()));
  // First the score objects the files' blocks name (their transactions' tokens): a file that balances costs
  // what it holds. Rows kept by an id item, or whose token a busy block dropped, are found only by listing
  // the days: done when something is still missing, before anything is called missing.
  const read = await scoresByTokens(sources, files, streams);
  let receipts = receiptsNow();
  if (receipts.some((r) => r.verdict === 'mismatch')) {
    await scanScores(sources, days(oldest, now), streams, read);
    receipts = receiptsNow();
  }
  return Promise.all(receipts.map((r) => withApplied(sources, r)));
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
async function withApplied(target: ReceiptSources, r: Receipt): Promise<Receipt> {
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
