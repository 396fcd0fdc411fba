import type { Message, MessageAttributeValue, SQSClient } from '@aws-sdk/client-sqs';
import {
  ChangeMessageVisibilityBatchCommand,
  DeleteMessageBatchCommand,
  ReceiveMessageCommand,
} from '@aws-sdk/client-sqs';
import type { Context, SQSBatchResponse, SQSEvent, SQSMessageAttributes, SQSRecord } from 'aws-lambda';
import { lambdaContext } from './lambda-context.ts';

/**
 * An emulated Lambda SQS event source mapping (with `ReportBatchItemFailures`) against a real SQS
 * endpoint: poll, batch, invoke, delete what succeeded, and leave the rest to SQS — failed messages
 * reappear after the visibility timeout, and the queue's RedrivePolicy moves them to the DLQ after
 * maxReceiveCount receives, exactly as on AWS (moto applies the policy on receive, like SQS).
 */

/** What an SQS handler may return: `batchItemFailures`, or nothing (full success). */
// biome-ignore lint/suspicious/noConfusingVoidType: handlers that return nothing (Promise<void>) must fit.
export type SqsHandlerResult = SQSBatchResponse | undefined | null | void;

/** A Lambda handler for SQS events, as the functions export it (async; callbacks are not supported). */
export type SqsHandler = (event: SQSEvent, context: Context) => Promise<SqsHandlerResult> | SqsHandlerResult;

/** What the event source logs through; Powertools' Logger and `console` both fit. */
export interface SqsEventSourceLogger {
  debug(message: string, ...extra: unknown[]): void;
  info(message: string, ...extra: unknown[]): void;
  warn(message: string, ...extra: unknown[]): void;
  error(message: string, ...extra: unknown[]): void;
}

export interface SqsEventSourceOptions {
  readonly sqs: SQSClient;
  readonly queueUrl: string;
  /** Goes into each record's `eventSourceARN`; its region into `awsRegion`. */
  readonly queueArn: string;
  /** Records per invocation at most, 1..10 (one ReceiveMessage call). */
  readonly batchSize: number;
  /**
   * How long to gather records before invoking with fewer than `batchSize`, as the mapping's
   * MaximumBatchingWindowInSeconds. @default 0 (invoke with what one poll returned)
   */
  readonly maxBatchingWindowSeconds?: number;
  readonly handler: SqsHandler;
  /** VisibilityTimeout passed on ReceiveMessage. @default the queue's own */
  readonly visibilityTimeoutSeconds?: number;
  /**
   * The function's timeout: `context.getRemainingTimeInMillis()` counts down from it, and an
   * invocation still running after it counts as failed (nothing is deleted), as when Lambda times
   * out. @default 900 (the most Lambda allows)
   */
  readonly functionTimeoutSeconds?: number;
  /** @default `<queue name>-consumer` */
  readonly functionName?: string;
  /** Pollers, each invoking the handler one batch at a time, as Lambda's concurrent pollers. @default 1 */
  readonly concurrency?: number;
  /**
   * Whether the handler's `batchItemFailures` are honoured (the mapping's FunctionResponseTypes). When
   * false, an invocation that returns deletes the whole batch. @default true
   */
  readonly reportBatchItemFailures?: boolean;
  /** @default warnings and errors to the console */
  readonly logger?: SqsEventSourceLogger;
}

export interface SqsEventSourceStats {
  /** ReceiveMessage calls. */
  polls: number;
  /** Polls that returned no message. */
  emptyPolls: number;
  /** Messages received (a redelivery counts again). */
  received: number;
  invocations: number;
  /** Messages deleted after their invocation succeeded for them. */
  deleted: number;
  /** Records the handler listed in `batchItemFailures`. */
  itemFailures: number;
  /** Invocations that threw, timed out or returned an invalid response: nothing of them was deleted. */
  failedInvocations: number;
  pollErrors: number;
  deleteErrors: number;
}

export interface SqsEventSource {
  /** Stops polling, waits for running invocations (and their deletes), and releases unprocessed messages. */
  stop(): Promise<void>;
  /**
   * Resolves once a poll that started after this call found the queue empty (no *visible* message:
   * failed ones may still be waiting out their visibility timeout) while no invocation was running.
   * Also resolves when the source stops.
   */
  idle(): Promise<void>;
  readonly stats: Readonly<SqsEventSourceStats>;
}

/** The least time between two polls that found nothing. */
const MIN_EMPTY_POLL_MS = 100;

/** Lambda's synchronous invocation payload limit. */
export const MAX_INVOCATION_PAYLOAD_BYTES = 6 * 1024 * 1024;

const consoleLogger: SqsEventSourceLogger = {
  debug: () => {},
  info: () => {},
  warn: (message, ...extra) => console.warn(`[sqs-event-source] ${message}`, ...extra),
  error: (message, ...extra) => console.error(`[sqs-event-source] ${message}`, ...extra),
};

/** Starts polling `queueUrl` and invoking `handler`, until `stop()`. */
export function startSqsEventSource(options: SqsEventSourceOptions): SqsEventSource {
  const { sqs, queueUrl, queueArn, handler } = options;
  const batchSize = options.batchSize;
  if (!Number.isInteger(batchSize) || batchSize < 1 || batchSize > 10) {
    throw new RangeError(`batchSize must be 1..10 (one ReceiveMessage call), got ${batchSize}`);
  }
  const concurrency = options.concurrency ?? 1;
  if (!Number.isInteger(concurrency) || concurrency < 1) {
    throw new RangeError(`concurrency must be a positive integer, got ${concurrency}`);
  }
  const windowMs = (options.maxBatchingWindowSeconds ?? 0) * 1000;
  const timeoutMs = (options.functionTimeoutSeconds ?? 900) * 1000;
  const reportItemFailures = options.reportBatchItemFailures ?? true;
  const logger = options.logger ?? consoleLogger;
  const { region, queueName } = parseQueueArn(queueArn);
  const functionName = options.functionName ?? `${queueName}-consumer`;

  const stats: SqsEventSourceStats = {
    polls: 0,
    emptyPolls: 0,
    received: 0,
    invocations: 0,
    deleted: 0,
    itemFailures: 0,
    failedInvocations: 0,
    pollErrors: 0,
    deleteErrors: 0,
  };
  let stopping = false;
  let wakeSleepers: () => void = () => {};
  const stopped = new Promise<void>((resolve) => {
    wakeSleepers = resolve;
  });
  /** Handler runs not yet settled, a timed-out one included. */
  const running = new Set<Promise<unknown>>();
  let pollSeq = 0;
  const idleWaiters: { after: number; resolve: () => void }[] = [];

  const sleep = (ms: number) => Promise.race([stopped, new Promise<void>((r) => setTimeout(r, ms).unref())]);

  const onEmptyPoll = (seq: number) => {
    if (running.size > 0) return;
    for (let i = idleWaiters.length - 1; i >= 0; i--) {
      const waiter = idleWaiters[i];
      if (waiter && seq > waiter.after) {
        idleWaiters.splice(i, 1);
        waiter.resolve();
      }
    }
  };

  const receive = async (max: number, waitSeconds: number): Promise<Message[]> => {
    stats.polls++;
    const out = await sqs.send(
      new ReceiveMessageCommand({
        QueueUrl: queueUrl,
        MaxNumberOfMessages: max,
        WaitTimeSeconds: waitSeconds,
        AttributeNames: ['All'],
        MessageSystemAttributeNames: ['All'],
        MessageAttributeNames: ['All'],
        ...(options.visibilityTimeoutSeconds !== undefined
          ? { VisibilityTimeout: options.visibilityTimeoutSeconds }
          : {}),
      }),
    );
    const messages = out.Messages ?? [];
    stats.received += messages.length;
    return messages;
  };

  /** Gives messages back to the queue at once (used when stopping with messages in hand). */
  const release = async (messages: Message[]) => {
    for (let i = 0; i < messages.length; i += 10) {
      const chunk = messages.slice(i, i + 10);
      try {
        await sqs.send(
          new ChangeMessageVisibilityBatchCommand({
            QueueUrl: queueUrl,
            Entries: chunk.map((m, j) => ({
              Id: `m${j}`,
              ReceiptHandle: m.ReceiptHandle,
              VisibilityTimeout: 0,
            })),
          }),
        );
      } catch (err) {
        logger.warn('could not release messages on stop; they reappear after their visibility timeout', err);
      }
    }
  };

  const deleteMessages = async (records: SQSRecord[]) => {
    for (let i = 0; i < records.length; i += 10) {
      const chunk = records.slice(i, i + 10);
      try {
        const out = await sqs.send(
          new DeleteMessageBatchCommand({
            QueueUrl: queueUrl,
            Entries: chunk.map((r, j) => ({ Id: `m${j}`, ReceiptHandle: r.receiptHandle })),
          }),
        );
        const failed = out.Failed ?? [];
        stats.deleted += chunk.length - failed.length;
        if (failed.length > 0) {
          stats.deleteErrors += failed.length;
          logger.warn(
            `could not delete ${failed.length} handled message(s); SQS will deliver them again`,
            failed,
          );
        }
      } catch (err) {
        stats.deleteErrors += chunk.length;
        logger.warn(`could not delete ${chunk.length} handled message(s); SQS will deliver them again`, err);
      }
    }
  };

  /** Invokes the handler with one batch and deletes what succeeded. */
  const invoke = async (records: SQSRecord[]) => {
    stats.invocations++;
    const event: SQSEvent = { Records: records };
    const context = lambdaContext({ functionName, timeoutMs, region });
    logger.debug(`invoking ${functionName} with ${records.length} record(s)`, {
      awsRequestId: context.awsRequestId,
    });
    const run = Promise.resolve().then(() => handler(event, context));
    running.add(run);
    run.then(
      () => running.delete(run),
      () => running.delete(run),
    );
    let timer: NodeJS.Timeout | undefined;
    const timedOut = new Promise<'timeout'>((resolve) => {
      timer = setTimeout(() => resolve('timeout'), timeoutMs);
    });
    let response: unknown;
    try {
      response = await Promise.race([run, timedOut]);
    } catch (err) {
      stats.failedInvocations++;
      logger.error(
        `${functionName} threw: the whole batch of ${records.length} will be delivered again`,
        err,
      );
      return;
    } finally {
      clearTimeout(timer);
    }
    if (response === 'timeout') {
      stats.failedInvocations++;
      logger.error(
        `${functionName} timed out after ${timeoutMs} ms: the whole batch will be delivered again`,
      );
      return;
    }
    const outcome = reportItemFailures
      ? interpretBatchResponse(response, records)
      : { ok: true as const, failedIds: new Set<string>() };
    if (!outcome.ok) {
      stats.failedInvocations++;
      logger.error(`${functionName} returned an invalid batch response (${outcome.reason}): nothing deleted`);
      return;
    }
    stats.itemFailures += outcome.failedIds.size;
    await deleteMessages(records.filter((r) => !outcome.failedIds.has(r.messageId)));
  };

  /** One poller: receive (gathering up to the batching window), invoke, repeat. */
  const poller = async () => {
    let carry: SQSRecord[] = [];
    while (!stopping) {
      const seq = ++pollSeq;
      const pollStarted = Date.now();
      const batch = carry;
      carry = [];
      let payloadBytes = eventBytes(batch);
      const deadline = Date.now() + windowMs;
      try {
        do {
          const remainingMs = deadline - Date.now();
          const wait = batch.length === 0 ? 1 : remainingMs >= 1000 ? 1 : 0;
          const messages = await receive(batchSize - batch.length, wait);
          for (const message of messages) {
            const record = toSqsRecord(message, queueArn, region);
            const bytes = Buffer.byteLength(JSON.stringify(record)) + 1;
            if (batch.length > 0 && payloadBytes + bytes > MAX_INVOCATION_PAYLOAD_BYTES) carry.push(record);
            else {
              batch.push(record);
              payloadBytes += bytes;
            }
          }
          if (messages.length === 0 && batch.length > 0 && wait === 0 && remainingMs > 0) await sleep(50);
        } while (
          !stopping &&
          carry.length === 0 &&
          batch.length < batchSize &&
          batch.length > 0 &&
          Date.now() < deadline
        );
      } catch (err) {
        if (!stopping) {
          stats.pollErrors++;
          logger.warn(`polling ${queueName} failed; retrying in 1 s`, err);
        }
        carry = batch;
        if (!stopping) await sleep(1000);
        continue;
      }
      if (stopping) {
        carry = [...batch, ...carry];
        break;
      }
      if (batch.length === 0) {
        stats.emptyPolls++;
        onEmptyPoll(seq);
        // An endpoint that ignores WaitTimeSeconds (or a mocked client) must not make this a busy loop.
        const elapsed = Date.now() - pollStarted;
        if (elapsed < MIN_EMPTY_POLL_MS) await sleep(MIN_EMPTY_POLL_MS - elapsed);
        continue;
      }
      await invoke(batch);
    }
    if (carry.length > 0) {
      await release(carry.map((r) => ({ ReceiptHandle: r.receiptHandle })));
    }
  };

  const pollers = Array.from({ length: concurrency }, () => poller());

  let stopping$: Promise<void> | undefined;
  return {
    stats,
    stop() {
      stopping$ ??= (async () => {
        stopping = true;
        wakeSleepers();
        await Promise.allSettled(pollers);
        await Promise.allSettled([...running]);
        for (const waiter of idleWaiters.splice(0)) waiter.resolve();
      })();
      return stopping$;
    },
    idle() {
      if (stopping) return stopping$ ?? Promise.resolve();
      return new Promise<void>((resolve) => idleWaiters.push({ after: pollSeq, resolve }));
    },
  };
}

/** The result of reading a handler's response as Lambda does with `ReportBatchItemFailures`. */
export type BatchResponseOutcome =
  | { readonly ok: true; readonly failedIds: ReadonlySet<string> }
  | { readonly ok: false; readonly reason: string };

/**
 * Reads a handler's response as Lambda does: nothing, `{}`, or an empty / null `batchItemFailures`
 * is full success; listed ids fail just those records; an empty, null or unknown `itemIdentifier` (or
 * a response of another shape) fails the whole batch.
 */
export function interpretBatchResponse(
  response: unknown,
  records: readonly SQSRecord[],
): BatchResponseOutcome {
  if (response === undefined || response === null) return { ok: true, failedIds: new Set() };
  if (typeof response !== 'object' || Array.isArray(response)) {
    return {
      ok: false,
      reason: `expected an object, got ${Array.isArray(response) ? 'an array' : typeof response}`,
    };
  }
  const failures = (response as { batchItemFailures?: unknown }).batchItemFailures;
  if (failures === undefined || failures === null) return { ok: true, failedIds: new Set() };
  if (!Array.isArray(failures)) return { ok: false, reason: 'batchItemFailures is not an array' };
  const ids = new Set(records.map((r) => r.messageId));
  const failedIds = new Set<string>();
  for (const failure of failures) {
    const id = (failure as { itemIdentifier?: unknown } | null)?.itemIdentifier;
    if (typeof id !== 'string' || id === '')
      return { ok: false, reason: 'an itemIdentifier is empty or missing' };
    if (!ids.has(id)) return { ok: false, reason: `itemIdentifier ${id} is not in the batch` };
    failedIds.add(id);
  }
  return { ok: true, failedIds };
}

/** One received SQS message as a record of Lambda's `SQSEvent`, in the shape and key order AWS sends. */
export function toSqsRecord(
  message: Message,
  queueArn: string,
  region = parseQueueArn(queueArn).region,
): SQSRecord {
  const a = message.Attributes ?? {};
  const now = String(Date.now());
  const optional = (key: string): Record<string, string> => {
    const value = (a as Record<string, string | undefined>)[key];
    return value === undefined ? {} : { [key]: value };
  };
  const record: SQSRecord = {
    messageId: message.MessageId ?? '',
    receiptHandle: message.ReceiptHandle ?? '',
    body: message.Body ?? '',
    attributes: {
      ...optional('AWSTraceHeader'),
      ApproximateReceiveCount: a.ApproximateReceiveCount ?? '1',
      SentTimestamp: a.SentTimestamp ?? now,
      ...optional('SequenceNumber'),
      ...optional('MessageGroupId'),
      SenderId: a.SenderId ?? '',
      ...optional('MessageDeduplicationId'),
      ApproximateFirstReceiveTimestamp: a.ApproximateFirstReceiveTimestamp ?? now,
      ...optional('DeadLetterQueueSourceArn'),
    },
    messageAttributes: toLambdaMessageAttributes(message.MessageAttributes),
    md5OfBody: message.MD5OfBody ?? '',
    ...(message.MD5OfMessageAttributes ? { md5OfMessageAttributes: message.MD5OfMessageAttributes } : {}),
    eventSource: 'aws:sqs',
    eventSourceARN: queueArn,
    awsRegion: region,
  };
  return record;
}

function toLambdaMessageAttributes(
  attributes: Record<string, MessageAttributeValue> | undefined,
): SQSMessageAttributes {
  const out: SQSMessageAttributes = {};
  for (const [name, v] of Object.entries(attributes ?? {})) {
    out[name] = {
      ...(v.StringValue !== undefined ? { stringValue: v.StringValue } : {}),
      ...(v.BinaryValue !== undefined ? { binaryValue: Buffer.from(v.BinaryValue).toString('base64') } : {}),
      stringListValues: v.StringListValues ?? [],
      binaryListValues: (v.BinaryListValues ?? []).map((b) => Buffer.from(b).toString('base64')),
      dataType: v.DataType ?? 'String',
    };
  }
  return out;
}

/** `arn:aws:sqs:<region>:<account>:<name>` → region and name. */
export function parseQueueArn(queueArn: string): { region: string; accountId: string; queueName: string } {
  const parts = queueArn.split(':');
  const [arn, , service, region, accountId, queueName] = parts;
  if (parts.length !== 6 || arn !== 'arn' || service !== 'sqs' || !region || !accountId || !queueName) {
    throw new RangeError(`not an SQS queue ARN: ${queueArn}`);
  }
  return { region, accountId, queueName };
}

function eventBytes(records: SQSRecord[]): number {
  return Buffer.byteLength(JSON.stringify({ Records: records }));
}
