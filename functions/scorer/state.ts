import { BatchGetCommand, type DynamoDBDocumentClient } from '@aws-sdk/lib-dynamodb';
import { TransientError } from '#shared/errors.ts';
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
  const all = [...new Set(keys)];
  const groups: string[][] = [];
  for (let i = 0; i < all.length; i += 100) groups.push(all.slice(i, i + 100));
  const worker = async () => {
    for (let group = groups.shift(); group; group = groups.shift()) {
      let pending: Record<string, unknown>[] | undefined = group.map((pk) => ({ pk }));
      for (let round = 0; pending && pending.length > 0; round++) {
        if (round > 8) throw new TransientError('BatchGetItem kept leaving keys unprocessed');
        if (round > 0) await sleep(Math.min(1000, 20 * 2 ** round) * Math.random());
        const out = await doc.send(
          new BatchGetCommand({ RequestItems: { [table]: { Keys: pending, ConsistentRead: true } } }),
        );
        for (const item of out.Responses?.[table] ?? []) found.set(String(item.pk), item);
        pending = out.UnprocessedKeys?.[table]?.Keys as Record<string, unknown>[] | undefined;
      }
    }
  };
  await Promise.all(Array.from({ length: Math.min(PARALLEL, groups.length) }, worker));
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
