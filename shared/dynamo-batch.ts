import { BatchGetCommand, BatchWriteCommand, type DynamoDBDocumentClient } from '@aws-sdk/lib-dynamodb';
import { TransientError } from './errors.ts';
import { type RetryPolicy, retryLeftovers } from './retry.ts';

/**
 * BatchWriteItem and BatchGetItem, retrying what DynamoDB leaves unprocessed (a throttled partition, a
 * request over its size) with backoff ({@link retryLeftovers}): the ledger's part items, the scorer's
 * anomalies and item reads, the CLI's ledger look-ups.
 */

/** BatchWriteItem takes at most 25 requests, BatchGetItem 100 keys. */
export const MAX_WRITE_REQUESTS = 25;
export const MAX_GET_KEYS = 100;

/** Unprocessed items, tried again: 9 calls in all, from 20 ms doubling to 1 s, fully jittered. */
export const UNPROCESSED_RETRY: RetryPolicy = { attempts: 9, baseMs: 20, maxMs: 1000, jitter: 'full' };

/** A put or delete request, as BatchWriteItem takes it. */
export type WriteRequest =
  | { readonly PutRequest: { readonly Item: Record<string, unknown> } }
  | { readonly DeleteRequest: { readonly Key: Record<string, unknown> } };

/**
 * Writes every request, {@link MAX_WRITE_REQUESTS} a call, each call's unprocessed ones again until none is
 * left. @throws TransientError when some are still unprocessed after `policy.attempts` calls.
 */
export async function batchWriteAll(
  doc: DynamoDBDocumentClient,
  table: string,
  requests: readonly WriteRequest[],
  policy: RetryPolicy = UNPROCESSED_RETRY,
): Promise<void> {
  for (let i = 0; i < requests.length; i += MAX_WRITE_REQUESTS) {
    await retryLeftovers(
      requests.slice(i, i + MAX_WRITE_REQUESTS),
      async (left) => {
        const out = await doc.send(new BatchWriteCommand({ RequestItems: { [table]: [...left] as never } }));
        return out.UnprocessedItems?.[table] as WriteRequest[] | undefined;
      },
      {
        ...policy,
        exhausted: (left, attempts) =>
          new TransientError(
            `BatchWriteItem left ${left.length} requests on ${table} unprocessed ${attempts} times`,
          ),
      },
    );
  }
}

/**
 * Reads the items of `keys`, {@link MAX_GET_KEYS} a call and `parallel` calls at once, each call's
 * unprocessed keys again until none is left; `onItem` gets each item found (missing items are not).
 * `consistent` asks for strongly consistent reads. @throws TransientError when keys are still unprocessed
 * after `policy.attempts` calls.
 */
export async function batchGetAll(
  doc: DynamoDBDocumentClient,
  table: string,
  keys: readonly Record<string, unknown>[],
  onItem: (item: Record<string, unknown>) => void,
  opts: {
    readonly consistent?: boolean;
    readonly projection?: string;
    readonly parallel?: number;
    readonly policy?: RetryPolicy;
  } = {},
): Promise<void> {
  const groups: Record<string, unknown>[][] = [];
  for (let i = 0; i < keys.length; i += MAX_GET_KEYS) groups.push(keys.slice(i, i + MAX_GET_KEYS));
  const worker = async () => {
    for (let group = groups.shift(); group; group = groups.shift()) {
      await retryLeftovers(
        group,
        async (left) => {
          const out = await doc.send(
            new BatchGetCommand({
              RequestItems: {
                [table]: {
                  Keys: [...left],
                  ...(opts.consistent ? { ConsistentRead: true } : {}),
                  ...(opts.projection ? { ProjectionExpression: opts.projection } : {}),
                },
              },
            }),
          );
          for (const item of out.Responses?.[table] ?? []) onItem(item);
          return out.UnprocessedKeys?.[table]?.Keys as Record<string, unknown>[] | undefined;
        },
        {
          ...(opts.policy ?? UNPROCESSED_RETRY),
          exhausted: (left, attempts) =>
            new TransientError(
              `BatchGetItem left ${left.length} keys of ${table} unprocessed ${attempts} times`,
            ),
        },
      );
    }
  };
  await Promise.all(Array.from({ length: Math.min(opts.parallel ?? 1, groups.length) }, worker));
}
