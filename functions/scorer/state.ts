import type { DynamoDBDocumentClient } from '@aws-sdk/lib-dynamodb';
import { batchGetAll, UNPROCESSED_RETRY } from '#shared/dynamo-batch.ts';

import type { SeriesState } from './model.ts';

/** BatchGetItem calls in flight at once. */
const PARALLEL = 4;

/**
 * The items of `keys` (partition key `pk`), read strongly consistent with BatchGetItem (100 keys a call, a
 * few calls in flight), retrying what DynamoDB leaves unprocessed. Missing items are absent from the map.
 */
export async function readItems(
  doc: DynamoDBDocumentClient,
  table: string,
  keys: Iterable<string>,
  sleep: (ms: number) => Promise<void>,
): Promise<Map<string, Record<string, unknown>>> {
  const found = new Map<string, Record<string, unknown>>();
  await batchGetAll(
    doc,
    table,
    [...new Set(keys)].map((pk) => ({ pk })),
    (item) => found.set(String(item.pk), item),
    { consistent: true, parallel: PARALLEL, policy: { ...UNPROCESSED_RETRY, sleep } },
  );
  return found;
}

/** A series item as stored. */
export interface StoredSeries extends SeriesState {
  readonly version: number;
  readonly anomalies: number;
}

export function toStoredSeries(item: Record<string, unknown> | undefined): StoredSeries | undefined {
  if (!item) return undefined;
  return {
    count: Number(item.count),
    mean: Number(item.mean),
    m2: Number(item.m2),
    version: Number(item.version),
    anomalies: Number(item.anomalies ?? 0),
  };
}

/** An id item as stored: the origin ref that applied it, and the token of its transaction. */
export interface StoredId {
  readonly ref: string;
  readonly token: string | undefined;
}

export function toStoredId(item: Record<string, unknown> | undefined): StoredId | undefined {
  if (!item) return undefined;
  return { ref: String(item.ref), token: typeof item.tk === 'string' ? item.tk : undefined };
}
