import { ConditionalCheckFailedException } from '@aws-sdk/client-dynamodb';
import { type DynamoDBDocumentClient, UpdateCommand } from '@aws-sdk/lib-dynamodb';
import { type LedgerItem, ledgerKey, type RetryRecord } from './ledger-items.ts';

/**
 * An operator's retry of an object version that FAILED for good (`pulse ledger retry`): the one way a FAILED
 * item is claimed again, and an explicit, recorded one. The guard that keeps a FAILED item from being
 * claimed (ledger.ts) stays as it is: the reset moves the item FAILED → DISCOVERED, with its attempts back
 * at 0, and appends to `retries` who asked, when, and the ending it replaces (error, attempts, counts and
 * rejects objects). The next file event for the version then claims it like a new one. The upload's
 * `eventTime` moves to the record too: the rerun's latency is not measured from the upload (days, perhaps),
 * which would look like a pipeline falling behind.
 *
 * Only a final failure (or a SKIPPED version: `pulse backfill --force`) is reset: not one still retryable (its event is still being delivered, or is in the
 * DLQ, which `pulse dlq redrive` serves), not a split file or a part (their parts are counted on the file).
 * The write is conditional on the item as the caller read it (status, attempts, updatedAt): a worker or
 * another operator that changed it in between wins, and the reset reports `changed`.
 */
export async function resetForRetry(
  doc: DynamoDBDocumentClient,
  table: string,
  item: LedgerItem,
  by: string,
  now: Date,
): Promise<'reset' | 'changed'> {
  const refusal = retryRefusal(item);
  if (refusal) throw new Error(refusal);
  const at = now.toISOString();
  const record: RetryRecord = { by, at, previous: previousEnding(item) };
  try {
    await doc.send(
      new UpdateCommand({
        TableName: table,
        Key: ledgerKey({ bucket: item.bucket, key: item.key, etag: item.etag }),
        ConditionExpression:
          '(#status = :failed OR #status = :skipped) AND attempts = :attempts AND ' +
          (item.updatedAt !== undefined ? 'updatedAt = :updatedAt' : 'attribute_not_exists(updatedAt)') +
          ' AND (attribute_not_exists(retryable) OR retryable = :false)' +
          ' AND attribute_not_exists(parts) AND attribute_not_exists(#part)',
        UpdateExpression:
          'SET #status = :discovered, attempts = :zero, records = :zero, rejected = :zero, bytesRead = :zero,' +
          ' updatedAt = :at, retries = list_append(if_not_exists(retries, :none), :record)' +
          ' REMOVE errorType, errorMessage, firstErrors, finishedAt, durationMs, retryable, resumedFrom,' +
          ' rejectsKey, rejectsKeys, checkpoint, staging, leaseOwner, leaseExpiresAt, startedAt, eventTime',
        ExpressionAttributeNames: { '#status': 'status', '#part': 'part' },
        ExpressionAttributeValues: {
          ':failed': 'FAILED',
          ':skipped': 'SKIPPED',
          ':attempts': item.attempts,
          ...(item.updatedAt !== undefined ? { ':updatedAt': item.updatedAt } : {}),
          ':false': false,
          ':discovered': 'DISCOVERED',
          ':zero': 0,
          ':at': at,
          ':none': [],
          ':record': [record],
        },
      }),
    );
    return 'reset';
  } catch (err) {
    if (err instanceof ConditionalCheckFailedException) return 'changed';
    throw err;
  }
}

/** Why this item cannot be reset for a retry (what to do instead), or undefined when it can. */
export function retryRefusal(item: LedgerItem): string | undefined {
  const name = `${item.pk}@${item.etag}`;
  if (item.part !== undefined) {
    return `${name} is part ${item.part} of a split file: parts are not retried one by one`;
  }
  if (item.parts !== undefined) {
    return `${name} was split into ${item.parts} parts: a split file cannot be retried yet (upload it again)`;
  }
  if (item.status !== 'FAILED' && item.status !== 'SKIPPED') {
    return `${name} is ${item.status}, not FAILED or SKIPPED: only a failed or skipped version is retried`;
  }
  if (item.retryable === true) {
    return `${name} failed transiently and is still being retried (attempt ${item.attempts}); if its event is in the DLQ, run pulse dlq redrive`;
  }
  return undefined;
}

/** How the version had ended: what a retry keeps of it on the item. */
export function previousEnding(item: LedgerItem): RetryRecord['previous'] {
  const keys = item.rejectsKeys ?? (item.rejectsKey ? [item.rejectsKey] : []);
  return {
    status: item.status,
    attempts: Number(item.attempts ?? 0),
    ...(item.errorType !== undefined ? { errorType: item.errorType } : {}),
    ...(item.errorMessage !== undefined ? { errorMessage: item.errorMessage } : {}),
    ...(item.finishedAt !== undefined ? { finishedAt: item.finishedAt } : {}),
    ...(item.eventTime !== undefined ? { eventTime: item.eventTime } : {}),
    records: Number(item.records ?? 0),
    rejected: Number(item.rejected ?? 0),
    ...(keys.length > 0 ? { rejectsKeys: keys } : {}),
  };
}
