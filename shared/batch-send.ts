import {
  SendMessageBatchCommand,
  type SendMessageBatchRequestEntry,
  type SQSClient,
} from '@aws-sdk/client-sqs';
import { MessageRefusedError, SendFailedError } from './errors.ts';
import { type RetryPolicy, retryLeftovers } from './retry.ts';

/**
 * The one batch sender of the project: SendMessageBatch, resending only the entries that failed, with
 * backoff ({@link retryLeftovers}). Used by the signals sender (shared/sender.ts), the s3-trigger's part
 * announcements (functions/s3-trigger/file-events.ts) and `pulse backfill` (local/).
 */

/** One entry: at most 10 a call, ids unique within it. */
export type BatchEntry = Required<Pick<SendMessageBatchRequestEntry, 'Id' | 'MessageBody'>>;

/** What a call to {@link sendMessageBatch} cost. */
export interface BatchSendStats {
  /** SendMessageBatch calls, retries included. */
  requests: number;
  /** Entries sent again after a partial failure. */
  retriedEntries: number;
}

/** SQS takes at most 10 entries a call. */
export const MAX_BATCH_ENTRIES = 10;

/**
 * Sends `entries` (at most {@link MAX_BATCH_ENTRIES}) in one SendMessageBatch, then again the ones that
 * failed, until none is left.
 * @throws MessageRefusedError for an entry SQS refused as the sender's fault (sending it again cannot help).
 * @throws SendFailedError (transient) when entries still fail after `policy.attempts` calls.
 */
export async function sendMessageBatch(
  sqs: SQSClient,
  queueUrl: string,
  entries: readonly BatchEntry[],
  policy: RetryPolicy,
  stats?: BatchSendStats,
): Promise<void> {
  let lastCode = 'unknown';
  await retryLeftovers(
    entries,
    async (left, attempt) => {
      if (stats) {
        stats.requests++;
        if (attempt > 1) stats.retriedEntries += left.length;
      }
      const out = await sqs.send(new SendMessageBatchCommand({ QueueUrl: queueUrl, Entries: [...left] }));
      const failed = out.Failed ?? [];
      const refused = failed.find((f) => f.SenderFault);
      if (refused) {
        const code = refused.Code ?? 'error';
        throw new MessageRefusedError(
          `SQS rejected a message: ${code}: ${refused.Message ?? ''}`.trim(),
          refused.Id ?? '',
          code,
        );
      }
      lastCode = failed[0]?.Code ?? lastCode;
      const ids = new Set(failed.map((f) => f.Id));
      return left.filter((e) => ids.has(e.Id));
    },
    {
      ...policy,
      exhausted: (left, attempts) =>
        new SendFailedError(
          `${left.length} messages still failing after ${attempts} attempts: ${lastCode}`,
          left.length,
        ),
    },
  );
}

/** {@link sendMessageBatch} for any number of entries, ten at a time, in order. */
export async function sendInBatches(
  sqs: SQSClient,
  queueUrl: string,
  entries: readonly BatchEntry[],
  policy: RetryPolicy,
  stats?: BatchSendStats,
): Promise<void> {
  for (let i = 0; i < entries.length; i += MAX_BATCH_ENTRIES) {
    await sendMessageBatch(sqs, queueUrl, entries.slice(i, i + MAX_BATCH_ENTRIES), policy, stats);
  }
}
