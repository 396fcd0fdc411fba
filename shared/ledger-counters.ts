import { type DynamoDBDocumentClient, GetCommand, TransactWriteCommand } from '@aws-sdk/lib-dynamodb';
import { batchGetAll } from './dynamo-batch.ts';
import { type FileRef, type FileStatus, type LedgerItem, ledgerKey } from './ledger-items.ts';
import type { Logger } from './observability.ts';
import { settings } from './settings.ts';
import { type StoredUsage, USAGE_ATTRS, USAGE_KEYS } from './usage-meter.ts';

/**
 * The ledger's running counts (docs/counters.md): how many file versions are in each status, and the sums of
 * their records, rejects and bytes read, kept in a few counter items of the ledger table as the pipeline
 * runs, so that `pulse status` and the dashboard read a constant number of items whatever the ledger's size.
 *
 * Each file item carries `counted`: the snapshot (status and sums) the counters hold for it. After a
 * transition, {@link settleCounts} moves the counters from that snapshot to the item as it is now, in one
 * transaction with the item's `counted`, conditioned on `counted` being what was read and on the item still
 * being in the snapshot's state. So a write retried (by the SDK, or a second settle racing the first) adds
 * nothing twice: once committed, the condition fails and a re-read finds nothing left to settle. A crash
 * between a transition and its settle leaves the counters on the item's previous state until its next
 * transition settles it (every way through the ledger ends in one). Parts are not counted: their file is.
 */

export const COUNTERS_PK = 'counters#ledger';

export const FILE_STATUSES: readonly FileStatus[] = [
  'DISCOVERED',
  'PROCESSING',
  'SPLIT',
  'SUCCESS',
  'FAILED',
  'SKIPPED',
];

/** The key of counter shard `shard`. Its pk is not an `s3://` one, and it has no `status`: not in the index. */
export const counterKey = (shard: number) => ({ pk: COUNTERS_PK, sk: `shard#${shard}` });

export interface LedgerCounts {
  /** File versions (not parts) in each status. */
  readonly files: Readonly<Record<FileStatus, number>>;
  /** Sums over those files, as each was when it last changed status. */
  readonly records: number;
  readonly rejected: number;
  readonly bytesRead: number;
  /** The billed units the files carried when each last changed status (the cost meter). */
  readonly usage: StoredUsage;
}

export interface CountersOptions {
  /** Counter items the additions are spread over (concurrent transactions on one item conflict). */
  readonly shards: number;
  /** Settles tried (each a read and a transaction) before giving up until the item's next transition. */
  readonly tries: number;
}

/** The billed units (shared/usage-meter.ts) an item carries, by attribute: summed like its records. */
const USAGE_SUMS = USAGE_KEYS.map((k) => USAGE_ATTRS[k]);
const SUMS = ['records', 'rejected', 'bytesRead', ...USAGE_SUMS] as const;
type Sum = (typeof SUMS)[number];

type Snapshot = { readonly status: FileStatus } & Readonly<Record<Sum, number>>;

function snapshotOf(item: LedgerItem): Snapshot {
  const sums = Object.fromEntries(
    SUMS.map((sum) => [sum, Number((item as unknown as Record<string, unknown>)[sum] ?? 0)]),
  ) as Record<Sum, number>;
  return { status: item.status, ...sums };
}

/**
 * `counted` as stored: one string, so that the condition compares it whole. The units follow the first
 * sums only when the item has some, so that a snapshot written before the cost meter reads the same.
 */
export function encodeSnapshot(s: Snapshot): string {
  const base = `${s.status}|${s.records}|${s.rejected}|${s.bytesRead}`;
  return USAGE_SUMS.some((sum) => s[sum] !== 0)
    ? `${base}|${USAGE_SUMS.map((sum) => s[sum]).join('|')}`
    : base;
}

function decodeSnapshot(counted: unknown): Snapshot | undefined {
  if (typeof counted !== 'string') return undefined;
  const [status, ...sums] = counted.split('|');
  return {
    status: status as FileStatus,
    ...(Object.fromEntries(SUMS.map((sum, i) => [sum, Number(sums[i] ?? 0)])) as Record<Sum, number>),
  };
}

/** What to add to the counters to move them from `from` (nothing when undefined) to `to`. */
export function countDelta(from: Snapshot | undefined, to: Snapshot): Record<string, number> {
  const delta: Record<string, number> = {};
  if (from?.status !== to.status) {
    if (from) delta[`n_${from.status}`] = -1;
    delta[`n_${to.status}`] = 1;
  }
  for (const sum of SUMS) {
    const d = to[sum] - (from?.[sum] ?? 0);
    if (d !== 0) delta[sum] = d;
  }
  return delta;
}

/**
 * Brings the counters up to date with one file item: re-read until the item's `counted` is its state, at
 * most `opts.tries` times. `item` is the item as a write just returned it (saves the first read). Returns
 * whether the counters now hold the item's state (false: it kept changing, or is gone).
 */
export async function settleCounts(
  doc: DynamoDBDocumentClient,
  table: string,
  file: FileRef,
  opts: CountersOptions,
  item?: LedgerItem,
): Promise<boolean> {
  if (file.part !== undefined) return true;
  let current = item;
  for (let attempt = 0; attempt < opts.tries; attempt++) {
    if (!current) {
      const out = await doc.send(
        new GetCommand({ TableName: table, Key: ledgerKey(file), ConsistentRead: true }),
      );
      current = out?.Item as LedgerItem | undefined;
      if (!current) return false;
    }
    const now = snapshotOf(current);
    const counted = encodeSnapshot(now);
    if (current.counted === counted) return true;
    const delta = countDelta(decodeSnapshot(current.counted), now);
    try {
      await doc.send(
        new TransactWriteCommand({ TransactItems: settleItems(table, file, current, now, delta, opts) }),
      );
      return true;
    } catch (err) {
      const name = (err as Error)?.name;
      // Cancelled (the item moved on, or another settle won) or in conflict: nothing was applied; read again.
      if (name !== 'TransactionCanceledException' && name !== 'TransactionConflictException') throw err;
      current = undefined;
    }
  }
  return false;
}

const itemSum = (item: LedgerItem, sum: Sum): unknown => (item as unknown as Record<string, unknown>)[sum];

function settleItems(
  table: string,
  file: FileRef,
  item: LedgerItem,
  now: Snapshot,
  delta: Record<string, number>,
  opts: CountersOptions,
) {
  const names: Record<string, string> = {};
  const values: Record<string, number> = {};
  const adds = Object.entries(delta).map(([attr, d], i) => {
    names[`#a${i}`] = attr;
    values[`:a${i}`] = d;
    return `#a${i} :a${i}`;
  });
  const shard = Math.floor(Math.random() * opts.shards);
  return [
    {
      Update: {
        TableName: table,
        Key: ledgerKey(file),
        // The item still as read: what is counted, its status and its sums (absent ones still absent).
        ConditionExpression: [
          item.counted === undefined ? 'attribute_not_exists(counted)' : 'counted = :was',
          '#status = :status',
          ...SUMS.map((sum) =>
            itemSum(item, sum) === undefined ? `attribute_not_exists(${sum})` : `${sum} = :${sum}`,
          ),
        ].join(' AND '),
        UpdateExpression: 'SET counted = :counted',
        ExpressionAttributeNames: { '#status': 'status' },
        ExpressionAttributeValues: {
          ...(item.counted === undefined ? {} : { ':was': item.counted }),
          ':counted': encodeSnapshot(now),
          ':status': now.status,
          ...Object.fromEntries(
            SUMS.filter((sum) => itemSum(item, sum) !== undefined).map((sum) => [`:${sum}`, now[sum]]),
          ),
        },
      },
    },
    {
      Update: {
        TableName: table,
        Key: counterKey(shard),
        UpdateExpression: `ADD ${adds.join(', ')}`,
        ExpressionAttributeNames: names,
        ExpressionAttributeValues: values,
      },
    },
  ];
}

/** The counts, summed over the counter shards: one BatchGetItem, whatever the ledger's size. */
export async function readLedgerCounts(
  doc: DynamoDBDocumentClient,
  table: string,
  shards: number,
): Promise<LedgerCounts> {
  const files = Object.fromEntries(FILE_STATUSES.map((s) => [s, 0])) as Record<FileStatus, number>;
  const sums = Object.fromEntries(SUMS.map((sum) => [sum, 0])) as Record<Sum, number>;
  await batchGetAll(
    doc,
    table,
    Array.from({ length: shards }, (_, i) => counterKey(i)),
    (item) => {
      for (const s of FILE_STATUSES) files[s] += Number(item[`n_${s}`] ?? 0);
      for (const sum of SUMS) sums[sum] += Number(item[sum] ?? 0);
    },
    { consistent: true },
  );
  const usage = Object.fromEntries(USAGE_KEYS.map((k) => [k, sums[USAGE_ATTRS[k]]])) as StoredUsage;
  return { files, records: sums.records, rejected: sums.rejected, bytesRead: sums.bytesRead, usage };
}

/**
 * The ledger's `settle` hook (LedgerOptions) with the settings' shards and tries: a settle that fails or
 * gives up is logged, and left to the item's next transition.
 */
export function countersSettler(
  doc: DynamoDBDocumentClient,
  table: string,
  logger: Pick<Logger, 'warn'>,
  opts: CountersOptions = { shards: settings.ledgerCounters.shards, tries: settings.ledgerCounters.tries },
): (file: FileRef, item?: LedgerItem) => Promise<boolean> {
  return async (file, item) => {
    try {
      const settled = await settleCounts(doc, table, file, opts, item);
      if (!settled)
        logger.warn('Ledger counters not settled: the item kept changing', { objectKey: file.key });
      return settled;
    } catch (err) {
      logger.warn('Ledger counters not settled', { objectKey: file.key, error: (err as Error).message });
      return false;
    }
  };
}
