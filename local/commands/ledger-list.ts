/**
 * `pulse ledger --key K --status S --limit N [--after CURSOR]`: a page of the ledger, reading only about what
 * it prints (docs/counters.md). By key: a Query of the key's partition; by status: the status index, newest
 * first; neither: the newest of each status merged. Never a Scan: the ledger grows with every file.
 */

import { QueryCommand, type QueryCommandInput } from '@aws-sdk/lib-dynamodb';
import type { FileStatus, LedgerItem } from '#shared/ledger.ts';
import { FILE_STATUSES } from '#shared/ledger-counters.ts';
import { settings } from '#shared/settings.ts';
import type { Target } from './target.ts';

export interface LedgerListOptions {
  /** An object key (`incoming/x.csv`) or `s3://bucket/key`: its versions and their parts. */
  readonly key?: string;
  readonly status?: FileStatus;
  /** Entries at most (the page size). */
  readonly limit: number;
  /** Where the previous page ended (its `next`). */
  readonly after?: string;
}

export interface LedgerPage {
  readonly items: LedgerItem[];
  /** Give as `after` for the next page; absent on the last one. */
  readonly next?: string;
}

type Key = Record<string, unknown>;

/**
 * Where a page ended: DynamoDB's own LastEvaluatedKey (by key, by status), or, for the merge of every status,
 * the `updatedAt` of its last entry (the next page reads the entries updated before it).
 */
type Cursor = { readonly k: Key } | { readonly before: string };

function encodeCursor(c: Cursor): string {
  return Buffer.from(JSON.stringify(c)).toString('base64url');
}

function decodeCursor(s: string | undefined): Cursor | undefined {
  if (s === undefined) return undefined;
  try {
    const c = JSON.parse(Buffer.from(s, 'base64url').toString('utf8')) as Cursor;
    if (typeof c === 'object' && c !== null && ('k' in c || 'before' in c)) return c;
  } catch {
    // Reported below.
  }
  throw new Error(`--after ${JSON.stringify(s)} is not a cursor pulse ledger printed: copy it from "next:"`);
}

/** One page of the ledger; see the module's comment for what each selection reads. */
export async function listLedger(target: Target, opts: LedgerListOptions): Promise<LedgerPage> {
  const after = decodeCursor(opts.after);
  if (opts.key !== undefined) {
    const pk = opts.key.startsWith('s3://') ? opts.key : `s3://${target.bucket}/${opts.key}`;
    return pages(target, opts.limit, after, {
      TableName: target.ledgerTable,
      KeyConditionExpression: 'pk = :pk',
      ...(opts.status ? { FilterExpression: '#status = :status' } : {}),
      ...(opts.status ? { ExpressionAttributeNames: { '#status': 'status' } } : {}),
      ExpressionAttributeValues: { ':pk': pk, ...(opts.status ? { ':status': opts.status } : {}) },
      ConsistentRead: true,
    });
  }
  if (opts.status !== undefined) {
    return pages(target, opts.limit, after, statusQuery(target, opts.status));
  }
  return newestOfEach(target, opts.limit, after && 'before' in after ? after.before : undefined);
}

/** The status index, newest first: files and their parts (not the poller's or the sweep's items). */
function statusQuery(target: Target, status: FileStatus, before?: string): QueryCommandInput {
  return {
    TableName: target.ledgerTable,
    IndexName: settings.ledger.statusIndex,
    KeyConditionExpression: `#status = :status${before ? ' AND updatedAt < :before' : ''}`,
    FilterExpression: 'begins_with(pk, :s3)',
    ExpressionAttributeNames: { '#status': 'status' },
    ExpressionAttributeValues: {
      ':status': status,
      ':s3': 's3://',
      ...(before ? { ':before': before } : {}),
    },
    ScanIndexForward: false,
  };
}

/**
 * Queries page by page, each asking for what is still missing (`Limit`), until `limit` entries are found or
 * the query ends. A filter can make a page come back short: the next asks again for the rest.
 */
async function pages(
  target: Target,
  limit: number,
  after: Cursor | undefined,
  input: QueryCommandInput,
): Promise<LedgerPage> {
  const items: LedgerItem[] = [];
  let start: Key | undefined = after && 'k' in after ? after.k : undefined;
  do {
    const out = await target.clients.doc.send(
      new QueryCommand({ ...input, Limit: limit - items.length, ExclusiveStartKey: start }),
    );
    items.push(...((out.Items ?? []) as LedgerItem[]));
    start = out.LastEvaluatedKey;
  } while (start && items.length < limit);
  return { items, ...(start ? { next: encodeCursor({ k: start }) } : {}) };
}

/**
 * The `limit` most recently updated entries of any status: the newest `limit` of each status (one Query
 * each, `Limit` bounding it), merged. Reads at most six times what it prints, whatever the ledger's size.
 */
async function newestOfEach(target: Target, limit: number, before?: string): Promise<LedgerPage> {
  const found = await Promise.all(
    FILE_STATUSES.map(async (status) => {
      const out = await target.clients.doc.send(
        new QueryCommand({ ...statusQuery(target, status, before), Limit: limit }),
      );
      return { items: (out.Items ?? []) as LedgerItem[], more: out.LastEvaluatedKey !== undefined };
    }),
  );
  const merged = found
    .flatMap((f) => f.items)
    .sort((a, b) => String(b.updatedAt).localeCompare(String(a.updatedAt)));
  const items = merged.slice(0, limit);
  const more = merged.length > limit || found.some((f) => f.more);
  const last = items.at(-1)?.updatedAt;
  return { items, ...(more && last ? { next: encodeCursor({ before: String(last) }) } : {}) };
}
