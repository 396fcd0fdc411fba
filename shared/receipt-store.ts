/**
 * Receipts stored on the ledger: each file version's item keeps the last receipt counted for it (by
 * `pulse verify`, `pulse drop --wait` or the ledger sweep), so `pulse ledger` and the sweep's next run can
 * read it without counting again.
 *
 * The write is one conditional `UpdateItem` that sets `receipt` only: no status, lease, count or `updatedAt`
 * field is touched (the item keeps its place in the status index), and it applies only while the item still
 * has the status the receipt was counted at and holds no receipt of a later run (`at`).
 */

import { ConditionalCheckFailedException } from '@aws-sdk/client-dynamodb';
import { type DynamoDBDocumentClient, UpdateCommand } from '@aws-sdk/lib-dynamodb';
import type { FileStatus, LedgerItem } from './ledger.ts';
import type { Receipt } from './receipts.ts';
import { streamOf } from './verify-sources.ts';

/** Missing rows a stored receipt names (the item stays small; `pulse verify` lists more). */
export const STORED_MISSING_ROWS = 10;

/** A receipt as the ledger item keeps it (`receipt`). */
export interface StoredReceipt {
  /** When the counting began (ISO-8601): a receipt of an earlier run never replaces one of a later. */
  readonly at: string;
  /** Who counted: `ledger-sweep`, `pulse verify`, `pulse drop --wait`. */
  readonly by: string;
  /** The item's status when counted. */
  readonly status: FileStatus;
  readonly read: number;
  readonly scored: number;
  readonly quarantined: number;
  readonly quarantinedByScorer: number;
  readonly duplicates: number;
  readonly notRecords: number;
  /** Every record read is accounted for. */
  readonly ok: boolean;
  /** Records read and found nowhere (negative: more found than read), and the first of their rows. */
  readonly missing: { readonly count: number; readonly rows: readonly number[] };
}

/** What the ledger item keeps of `r`, counted at `at` by `by`. */
export function storedReceipt(r: Receipt, at: Date, by: string): StoredReceipt {
  return {
    at: at.toISOString(),
    by,
    status: r.status,
    read: r.read,
    scored: r.scored,
    quarantined: r.quarantined,
    quarantinedByScorer: r.quarantinedByScorer,
    duplicates: r.duplicates,
    notRecords: r.notRecords,
    ok: r.verdict === 'ok',
    missing: { count: r.missing, rows: r.missingRows.slice(0, STORED_MISSING_ROWS) },
  };
}

/** `stored`; `stale`: the item changed status, is gone, or holds a receipt of a later run. */
export type StoreOutcome = 'stored' | 'stale';

/** Stores `receipt` on the ledger item `key` (a file version's), under the conditions above. */
export async function storeReceipt(
  doc: DynamoDBDocumentClient,
  table: string,
  key: { readonly pk: string; readonly sk: string },
  receipt: StoredReceipt,
): Promise<StoreOutcome> {
  try {
    await doc.send(
      new UpdateCommand({
        TableName: table,
        Key: { pk: key.pk, sk: key.sk },
        UpdateExpression: 'SET #receipt = :receipt',
        ConditionExpression:
          'attribute_exists(pk) AND #status = :status AND (attribute_not_exists(#receipt) OR #receipt.#at <= :at)',
        ExpressionAttributeNames: { '#receipt': 'receipt', '#status': 'status', '#at': 'at' },
        ExpressionAttributeValues: { ':receipt': receipt, ':status': receipt.status, ':at': receipt.at },
      }),
    );
    return 'stored';
  } catch (err) {
    if (
      err instanceof ConditionalCheckFailedException ||
      (err as Error).name === 'ConditionalCheckFailedException'
    )
      return 'stale';
    throw err;
  }
}

/**
 * Stores each finished receipt of `receipts` on its file's item among `items` (a receipt of an unfinished
 * version is not stored). Returns how many were stored.
 *
 * `readOnly: 'skip'` (the `pulse` commands): a caller whose credentials may not write the ledger
 * (`AccessDeniedException`) still gets its receipts; nothing is stored and -1 is returned.
 */
export async function storeReceipts(
  doc: DynamoDBDocumentClient,
  table: string,
  bucket: string,
  items: readonly LedgerItem[],
  receipts: readonly Receipt[],
  at: Date,
  by: string,
  readOnly: 'skip' | 'throw' = 'throw',
): Promise<number> {
  const files = new Map(items.filter((i) => i.part === undefined).map((i) => [streamOf(bucket, i), i]));
  let stored = 0;
  for (const r of receipts) {
    const item = files.get(r.object);
    if (!item || r.verdict === 'unfinished') continue;
    try {
      if ((await storeReceipt(doc, table, item, storedReceipt(r, at, by))) === 'stored') stored++;
    } catch (err) {
      if (readOnly === 'skip' && (err as Error).name === 'AccessDeniedException') return -1;
      throw err;
    }
  }
  return stored;
}
