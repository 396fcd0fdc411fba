import { ConditionalCheckFailedException, TransactionCanceledException } from '@aws-sdk/client-dynamodb';
import { type DynamoDBDocumentClient, TransactWriteCommand, UpdateCommand } from '@aws-sdk/lib-dynamodb';
import { batchWriteAll } from './dynamo-batch.ts';
import { queryAll } from './dynamo-query.ts';
import { TransientError } from './errors.ts';
import {
  type ClaimMeta,
  type CompletedStats,
  type ConditionalUpdate,
  completedSet,
  completedValues,
  type FileRef,
  type FileStatus,
  type LedgerItem,
  ledgerKey,
  type PartRange,
  type SplitOutcome,
  type Staging,
  usageAdd,
  wholeFile,
} from './ledger-items.ts';
import { type RetryPolicy, retrying } from './retry.ts';
import { emptyUsage, type StoredUsage, USAGE_KEYS, usageOf } from './usage-meter.ts';

/**
 * The ledger's split-file half: a large file's plan (one DISCOVERED item per part, then the count on the
 * file), the file marked SPLIT, each part counted on its file as it ends, and the file ended from the
 * totals of its parts once every part has. The {@link Ledger} (ledger.ts) exposes these as its methods;
 * they reach the table through {@link LedgerStore}, which the Ledger builds over its own client, clock and
 * lease check.
 */

/** What the split-file half needs of the ledger. */
export interface LedgerStore {
  readonly doc: DynamoDBDocumentClient;
  readonly table: string;
  now(): number;
  /** An update conditioned on `owner` holding the file's lease (LeaseLostError otherwise). */
  ownedUpdate(file: FileRef, owner: string, update: string, values: Record<string, unknown>): Promise<void>;
  get(file: FileRef): Promise<LedgerItem | undefined>;
}

/**
 * Records how the owner split the file: one item per part (DISCOVERED, with its range), then `parts`
 * on the file item. Until `parts` is set no part has been announced, so a plan left half-written by a
 * crashed attempt is simply written again.
 */
export async function planParts(
  store: LedgerStore,
  file: FileRef,
  owner: string,
  ranges: readonly PartRange[],
  meta: ClaimMeta = {},
  staging?: Staging,
): Promise<void> {
  const iso = new Date(store.now()).toISOString();
  const items = ranges.map((range, part) => ({
    ...ledgerKey({ ...wholeFile(file), part }),
    bucket: file.bucket,
    key: file.key,
    etag: file.etag,
    ...(meta.versionId ? { versionId: meta.versionId } : {}),
    status: 'DISCOVERED' as FileStatus,
    part,
    range,
    ...(staging ? { staging } : {}),
    attempts: 0,
    records: 0,
    rejected: 0,
    bytesRead: 0,
    createdAt: iso,
    updatedAt: iso,
  }));
  await batchWriteAll(
    store.doc,
    store.table,
    items.map((Item) => ({ PutRequest: { Item } })),
  );
  await store.ownedUpdate(
    file,
    owner,
    'SET parts = :parts, partsDone = if_not_exists(partsDone, :zero), partsFailed = if_not_exists(partsFailed, :zero), updatedAt = :iso',
    { ':parts': ranges.length, ':zero': 0, ':iso': iso },
  );
}

/** PROCESSING → SPLIT once every part is announced: the lease ends, the parts carry the file. Owner only. */
export async function markSplit(
  store: LedgerStore,
  file: FileRef,
  owner: string,
  usage?: StoredUsage,
): Promise<void> {
  // The planning invocation's units (the cost meter), added with the write.
  const used = usageAdd(usage);
  await store.ownedUpdate(
    file,
    owner,
    `SET #status = :split, updatedAt = :iso REMOVE leaseOwner, leaseExpiresAt, checkpoint${used.add}`,
    { ':split': 'SPLIT', ':iso': new Date(store.now()).toISOString(), ...used.values },
  );
}

/** The units (the cost meter) the parts carry, summed: added to their file as it ends. */
function partsUsage(parts: readonly LedgerItem[]): StoredUsage {
  const sum = emptyUsage();
  for (const p of parts) {
    const u = usageOf(p as unknown as Record<string, unknown>);
    for (const k of USAGE_KEYS) sum[k] += u[k];
  }
  return sum;
}

/** The part items of a split file, in part order. */
export async function partItems(store: LedgerStore, file: FileRef): Promise<LedgerItem[]> {
  const key = ledgerKey(wholeFile(file));
  return queryAll<LedgerItem>(store.doc, {
    TableName: store.table,
    KeyConditionExpression: 'pk = :pk AND begins_with(sk, :prefix)',
    ExpressionAttributeValues: { ':pk': key.pk, ':prefix': `${file.etag}#part-` },
    ConsistentRead: true,
  });
}

/**
 * Ends a split file once all its parts have ended: SUCCESS when every part succeeded, else FAILED (for
 * good), with the totals, first errors and rejects objects of its parts in part order. Anyone may call it
 * any number of times; one call ends the file and gets its outcome, the others get undefined.
 */
export async function finishSplit(
  store: LedgerStore,
  file: FileRef,
  firstErrorsKept: number,
): Promise<SplitOutcome | undefined> {
  const whole = wholeFile(file);
  const item = await store.get(whole);
  if (item?.status !== 'SPLIT' || item.parts === undefined) return undefined;
  if (Number(item.partsDone ?? 0) < Number(item.parts)) return undefined;
  const parts = (await partItems(store, whole)).filter(
    (p) => p.part !== undefined && p.part < Number(item.parts),
  );
  parts.sort((a, b) => Number(a.part) - Number(b.part));
  const failed = parts.filter((p) => p.status !== 'SUCCESS');
  const rejectsKeys = parts.flatMap((p) => p.rejectsKeys ?? (p.rejectsKey ? [p.rejectsKey] : []));
  const firstErrors = parts.flatMap((p) => p.firstErrors ?? []).slice(0, firstErrorsKept);
  const now = store.now();
  const started = Date.parse(item.startedAt ?? item.createdAt);
  const stats: CompletedStats = {
    records: parts.reduce((n, p) => n + Number(p.records ?? 0), 0),
    rejected: parts.reduce((n, p) => n + Number(p.rejected ?? 0), 0),
    bytesRead: parts.reduce((n, p) => n + Number(p.bytesRead ?? 0), 0),
    durationMs: Number.isFinite(started) ? Math.max(0, now - started) : 0,
    firstErrors,
    ...(rejectsKeys[0] ? { rejectsKey: rejectsKeys[0] } : {}),
    ...(rejectsKeys.length > 1 ? { rejectsKeys } : {}),
  };
  const status = failed.length > 0 ? 'FAILED' : 'SUCCESS';
  const firstFailure = failed[0];
  // The parts' units go to their file (parts are not counted: the file is), with the write that ends it.
  const used = usageAdd(partsUsage(parts));
  const iso = new Date(now).toISOString();
  try {
    await store.doc.send(
      new UpdateCommand({
        TableName: store.table,
        Key: ledgerKey(whole),
        ConditionExpression: '#status = :split AND partsDone = :parts',
        UpdateExpression:
          `SET #status = :status, ${completedSet(stats)}` +
          (firstFailure ? ', retryable = :false, errorType = :type, errorMessage = :msg' : '') +
          used.add,
        ExpressionAttributeNames: { '#status': 'status' },
        ExpressionAttributeValues: {
          ':split': 'SPLIT',
          ':parts': Number(item.parts),
          ':status': status,
          ':iso': iso,
          ...completedValues(stats),
          ...used.values,
          ...(firstFailure
            ? {
                ':false': false,
                ':type': firstFailure.errorType ?? 'PartFailed',
                ':msg': `${failed.length} of ${parts.length} parts failed; part ${firstFailure.part} (rows after ${firstFailure.range?.row ?? '?'}): ${firstFailure.errorMessage ?? firstFailure.status}`,
              }
            : {}),
        },
      }),
    );
  } catch (err) {
    if (err instanceof ConditionalCheckFailedException) return undefined;
    throw err;
  }
  return {
    status,
    stats,
    parts: parts.length,
    partsFailed: failed.length,
    ...(item.eventTime ? { eventTime: item.eventTime } : {}),
    ...(item.staging ? { staging: item.staging } : {}),
  };
}

/**
 * The conditional update that ends a part, in a transaction with the count of ended parts on its file (and
 * of failed ones when `failed`), so that each part is counted exactly once. A failed condition on the item
 * itself throws ConditionalCheckFailedException, as the update alone would.
 */
export async function endPart(
  store: Pick<LedgerStore, 'doc' | 'table'>,
  file: FileRef,
  update: ConditionalUpdate,
  failed: boolean,
): Promise<void> {
  const command = new TransactWriteCommand({
    TransactItems: [
      { Update: update },
      {
        Update: {
          TableName: store.table,
          Key: ledgerKey(wholeFile(file)),
          ConditionExpression: 'attribute_exists(parts)',
          UpdateExpression: `ADD partsDone :one${failed ? ', partsFailed :one' : ''}`,
          ExpressionAttributeValues: { ':one': 1 },
        },
      },
    ],
  });
  // Parts ending at the same moment write the same file item: a cancelled transaction applied nothing, so
  // it is tried again; as is one cancelled by throttling.
  await retrying(
    async (attempt) => {
      try {
        await store.doc.send(command);
      } catch (err) {
        throw partEndError(file, err, attempt);
      }
    },
    { ...PART_END_RETRY, retryable: (err) => err instanceof TransientError },
  );
}

/** What a failed transaction ending a part means: the item's own condition, no file item, or a retry. */
function partEndError(file: FileRef, err: unknown, attempt: number): unknown {
  if (!(err instanceof TransactionCanceledException)) return err;
  const [own, count] = err.CancellationReasons ?? [];
  if (own?.Code === 'ConditionalCheckFailed') {
    return new ConditionalCheckFailedException({
      message: own.Message ?? 'condition failed',
      $metadata: {},
    });
  }
  if (count?.Code === 'ConditionalCheckFailed') {
    return new Error(`part ${file.part} of ${ledgerKey(file).pk}@${file.etag} has no split file item`, {
      cause: err,
    });
  }
  const codes = (err.CancellationReasons ?? []).map((r) => r.Code ?? 'None');
  if (!codes.some((c) => RETRIED_CANCELLATIONS.has(c))) return err;
  return new TransientError(
    `ending part ${file.part} of ${ledgerKey(file).pk}@${file.etag}: transaction cancelled ${attempt} times (${codes.join(', ')})`,
    { cause: err },
  );
}

/** Why a transaction may be cancelled without anything being wrong with it: tried again. */
const RETRIED_CANCELLATIONS = new Set([
  'TransactionConflict',
  'ThrottlingError',
  'ProvisionedThroughputExceeded',
  'RequestLimitExceeded',
]);
/** A transaction ending a part that was cancelled (a concurrent part, throttling): 8 calls, from 50 ms doubling. */
const PART_END_RETRY: RetryPolicy = { attempts: 8, baseMs: 50, jitter: 'equal' };
