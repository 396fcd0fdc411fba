import { randomUUID } from 'node:crypto';
import type { Context } from 'aws-lambda';
import {
  type Admin,
  type Batch,
  type Consumer,
  type EachBatchPayload,
  type IHeaders,
  Kafka,
  type KafkaMessage,
  type LogEntry,
  logLevel,
} from 'kafkajs';
import type { SchemaRegistryEnv } from '#shared/kafka-registry.ts';
import { backoffDelay, retrying } from '#shared/retry.ts';
import { type KafkaPollerMode, kafkaRetryPolicy, settings } from '#shared/settings.ts';
import type { KafkaEvent, KafkaEventRecord } from '../../functions/kafka-consumer/events.ts';
import { LOCAL_REGION } from '../runtime/clients.ts';
import { type DeserializerCache, type SchemaLookup, throughRegistry } from './kafka-registry.ts';
import { LOCAL_ACCOUNT_ID, lambdaContext } from './lambda-context.ts';
import { MAX_INVOCATION_PAYLOAD_BYTES } from './sqs.ts';

/**
 * An emulated Lambda Kafka event source mapping (Amazon MSK or self-managed Apache Kafka) against a
 * real broker, with kafkajs: consume a topic in a consumer group, hand the records to the handler in
 * the event shape Lambda sends (records grouped by `<topic>-<partition>`, key and value base64,
 * header values as byte arrays), and commit a batch's offsets only after the handler returned.
 *
 * A batch whose invocation throws (or times out) is not committed. What happens next is the mapping's
 * error handling in its poller mode (`kafkaRetryPolicy`): in provisioned mode, with bisection, a failing
 * batch of more than one record is split in two at once and each half delivered on its own (a split does
 * not count as a retry); a batch that cannot be split is retried up to `maximumRetryAttempts` times after
 * its first attempt, then goes to `onFailure` (the stack's on-failure destination) and the offsets move
 * past it, so it never blocks its partition. In on-demand mode (no error handling controls) a failing
 * batch is retried whole, forever: its partition stalls until the function succeeds.
 *
 * Differences from Lambda: one invocation holds records of one partition (Lambda may mix partitions of
 * a poll), and partitions are consumed one at a time unless `partitionsConsumedConcurrently` says
 * otherwise. The batching window is the fetch's wait: the broker answers once about 1 MiB is ready or
 * the window has passed.
 */

/** A Lambda handler for Kafka events, as the kafka-consumer exports it (async; the result is ignored). */
export type KafkaHandler = (event: KafkaEvent, context: Context) => Promise<unknown> | unknown;

/** What the event source logs through; Powertools' Logger and `console` both fit. */
export interface KafkaEventSourceLogger {
  debug(message: string, ...extra: unknown[]): void;
  info(message: string, ...extra: unknown[]): void;
  warn(message: string, ...extra: unknown[]): void;
  error(message: string, ...extra: unknown[]): void;
}

/**
 * A batch that failed every retry, as the event source hands it to its on-failure destination (see
 * kafka-failure-destinations.ts for what each kind of destination receives of it).
 */
export interface KafkaBatchFailure {
  /** The invocation record (metadata only: all an SQS or SNS destination receives). */
  readonly record: KafkaFailureRecord;
  /** The event of the last failed attempt (an S3 destination receives it too, as `payload`). */
  readonly event: KafkaEvent;
  /** The `<topic>-<partition>` the batch came from. */
  readonly topicPartition: string;
  readonly error: unknown;
}

/** Lambda's on-failure invocation record for a Kafka event source mapping. */
export interface KafkaFailureRecord {
  readonly requestContext: {
    readonly requestId: string;
    readonly functionArn: string;
    /**
     * Why the records were discarded: retries exhausted, or (a mapping with a schema registry, before any
     * invocation) a schema the registry does not know or a record that does not deserialize.
     */
    readonly condition: 'RetryAttemptsExhausted' | 'SCHEMA_NOT_FOUND' | 'DESERIALIZATION_ERROR';
    readonly approximateInvokeCount: number;
  };
  readonly responseContext: {
    readonly statusCode: number;
    readonly executedVersion: string;
    readonly functionError: 'Unhandled';
  };
  readonly version: '1.0';
  readonly timestamp: string;
  readonly KafkaBatchInfo: {
    readonly batchSize: number;
    readonly eventSourceArn?: string;
    readonly bootstrapServers: string;
    readonly payloadSize: number;
    readonly recordsInfo: Record<
      string,
      {
        readonly firstRecordOffset: string;
        readonly lastRecordOffset: string;
        readonly firstRecordTimestamp: string;
        readonly lastRecordTimestamp: string;
      }
    >;
  };
}

export interface KafkaEventSourceOptions {
  /** Bootstrap servers, `host:port[,host:port]`. */
  readonly brokers: string | readonly string[];
  readonly topic: string;
  /** The consumer group (Lambda uses the mapping's UUID unless one is configured). */
  readonly groupId: string;
  /** Records per invocation at most (the mapping's BatchSize). */
  readonly batchSize: number;
  /** How long the broker may gather records before a fetch returns (MaximumBatchingWindowInSeconds). */
  readonly maxBatchingWindowMs: number;
  readonly handler: KafkaHandler;
  /** @default 'aws:kafka' (MSK); 'SelfManagedKafka' events carry no eventSourceArn */
  readonly eventSource?: 'aws:kafka' | 'SelfManagedKafka';
  /** The MSK cluster's ARN, the events' `eventSourceArn`. @default a local made-up one */
  readonly clusterArn?: string;
  /**
   * Where a group without committed offsets starts: each partition's start (TRIM_HORIZON), only new
   * records (LATEST), or at `startingPositionTimestampMs` (AT_TIMESTAMP: the first record of each partition
   * at or after it, the partition's end when it has none). A group with committed offsets resumes there
   * whatever this says, as Lambda ignores StartingPosition for such a group. @default settings.kafka.startingPosition
   */
  readonly startingPosition?: 'TRIM_HORIZON' | 'LATEST' | 'AT_TIMESTAMP';
  /** AT_TIMESTAMP only: epoch milliseconds (the mapping's StartingPositionTimestamp is in seconds). */
  readonly startingPositionTimestampMs?: number;
  /**
   * The mapping's poller mode, which decides the two options below unless they are given: see
   * `kafkaRetryPolicy` (provisioned: the settings; on-demand: retry forever, never split).
   * @default settings.kafka.pollerMode
   */
  readonly pollerMode?: KafkaPollerMode;
  /**
   * Retries after the first attempt; -1 retries forever (in provisioned mode with an on-failure
   * destination Lambda applies 10 instead). @default kafkaRetryPolicy(pollerMode)
   */
  readonly maximumRetryAttempts?: number;
  /** Split a failing batch of more than one record in halves at once, each delivered on its own. @default kafkaRetryPolicy(pollerMode) */
  readonly bisectBatchOnFunctionError?: boolean;
  /**
   * Receives each batch that failed every retry; the offsets then move past it. A throw is retried
   * (the batch stays uncommitted meanwhile). @default log the batch's offsets as an error
   */
  readonly onFailure?: (failure: KafkaBatchFailure) => Promise<void> | void;
  /** Wait before retrying a failed invocation: `retryDelayMs × 2^(attempt-1)`, at most 30 s. @default 500 */
  readonly retryDelayMs?: number;
  /** The function's timeout; a longer invocation counts as failed. @default settings.functions.kafkaConsumer */
  readonly functionTimeoutSeconds?: number;
  /** @default `<topic>-consumer` */
  readonly functionName?: string;
  /** Partitions processed at once (Lambda scales up to one poller per partition). @default 1 */
  readonly partitionsConsumedConcurrently?: number;
  /** @default warnings and errors to the console */
  readonly logger?: KafkaEventSourceLogger;
  /**
   * The schema registry the mapping validates records through (kafka-registry.ts): records it cannot
   * validate go to onFailure with the registry's condition, never to the function. @default none
   */
  readonly schemaRegistry?: { readonly env: SchemaRegistryEnv; readonly lookup: SchemaLookup };
}

export interface KafkaEventSourceStats {
  /** Invocations of the handler, retries included. */
  invocations: number;
  /** Invocations that threw or timed out. */
  failedInvocations: number;
  /** Records of invocations that returned (and so were committed). */
  recordsDelivered: number;
  /** Batches split in halves after failing their retries. */
  bisections: number;
  /** Batches handed to onFailure, and their records: committed without the handler succeeding. */
  discardedBatches: number;
  discardedRecords: number;
  /** Offset commits sent to the group coordinator. */
  commits: number;
  commitErrors: number;
}

export interface KafkaEventSource {
  /** Stops consuming after the invocation in flight (its batch is committed if it succeeds), then disconnects. */
  stop(): Promise<void>;
  /**
   * Resolves once every partition's committed offset has reached the partition's end (as it was when
   * checked) while no invocation is running. Also resolves when the source stops. A partition the
   * group has never committed counts as caught up only when it is empty, so with `LATEST` wait for
   * records produced after `ready`.
   */
  idle(): Promise<void>;
  /** Resolves once the consumer has joined its group and been given partitions. */
  readonly ready: Promise<void>;
  readonly stats: Readonly<KafkaEventSourceStats>;
}

const consoleLogger: KafkaEventSourceLogger = {
  debug: () => {},
  info: () => {},
  warn: (message, ...extra) => console.warn(`[kafka-event-source] ${message}`, ...extra),
  error: (message, ...extra) => console.error(`[kafka-event-source] ${message}`, ...extra),
};

/** The MSK cluster ARN local events carry when none is given. */
export function localClusterArn(name = 'pulse-local'): string {
  return `arn:aws:kafka:${LOCAL_REGION}:${LOCAL_ACCOUNT_ID}:cluster/${name}/00000000-0000-0000-0000-000000000000-1`;
}

/** kafkajs' decoded record: its batch context (not in the types) tells the timestamp type. */
type MessageWithContext = KafkaMessage & { batchContext?: { timestampType?: number } };

/** One consumed message as a record of Lambda's Kafka event, in the order AWS writes the fields. */
export function toKafkaEventRecord(
  topic: string,
  partition: number,
  message: KafkaMessage,
): KafkaEventRecord {
  const timestampType =
    (message as MessageWithContext).batchContext?.timestampType === 1 ? 'LOG_APPEND_TIME' : 'CREATE_TIME';
  return {
    topic,
    partition,
    offset: Number(message.offset),
    timestamp: Number(message.timestamp),
    timestampType,
    // A record without a key has no `key` field; a tombstone's value is null.
    ...(message.key !== null && message.key !== undefined ? { key: message.key.toString('base64') } : {}),
    value: message.value === null || message.value === undefined ? null : message.value.toString('base64'),
    headers: toEventHeaders(message.headers),
  };
}

/**
 * Headers as Lambda sends them: one `{ name: [byte, …] }` object per header, in record order (kafkajs
 * gathers repeated names into an array; they come out one object each, in their order).
 */
export function toEventHeaders(headers: IHeaders | undefined): Record<string, number[]>[] {
  const out: Record<string, number[]>[] = [];
  for (const [name, value] of Object.entries(headers ?? {})) {
    if (value === undefined) continue;
    for (const v of Array.isArray(value) ? value : [value]) {
      out.push({ [name]: [...(typeof v === 'string' ? Buffer.from(v, 'utf8') : v)] });
    }
  }
  return out;
}

/** The whole event for some records (one or more topic-partitions). */
export function buildKafkaEvent(
  records: readonly KafkaEventRecord[],
  opts: { eventSource: 'aws:kafka' | 'SelfManagedKafka'; bootstrapServers: string; clusterArn?: string },
): KafkaEvent {
  const grouped: Record<string, KafkaEventRecord[]> = {};
  for (const r of records) {
    const key = `${r.topic}-${r.partition}`;
    grouped[key] ??= [];
    grouped[key].push(r);
  }
  return opts.eventSource === 'aws:kafka'
    ? {
        eventSource: 'aws:kafka',
        eventSourceArn: opts.clusterArn ?? localClusterArn(),
        bootstrapServers: opts.bootstrapServers,
        records: grouped,
      }
    : { eventSource: 'SelfManagedKafka', bootstrapServers: opts.bootstrapServers, records: grouped };
}

/** Lambda's on-failure record for a discarded event. */
export function kafkaFailureRecord(
  event: KafkaEvent,
  opts: {
    functionArn: string;
    invokeCount: number;
    requestId?: string;
    /** @default 'RetryAttemptsExhausted' */
    condition?: KafkaFailureRecord['requestContext']['condition'];
  },
): KafkaFailureRecord {
  const recordsInfo: KafkaFailureRecord['KafkaBatchInfo']['recordsInfo'] = {};
  let batchSize = 0;
  for (const [key, records] of Object.entries(event.records)) {
    const first = records[0];
    const last = records[records.length - 1];
    if (!first || !last) continue;
    batchSize += records.length;
    // In the order of Lambda's documented example.
    recordsInfo[key] = {
      firstRecordOffset: String(first.offset),
      lastRecordOffset: String(last.offset),
      firstRecordTimestamp: new Date(first.timestamp).toISOString(),
      lastRecordTimestamp: new Date(last.timestamp).toISOString(),
    };
  }
  return {
    requestContext: {
      requestId: opts.requestId ?? randomUUID(),
      functionArn: opts.functionArn,
      condition: opts.condition ?? 'RetryAttemptsExhausted',
      approximateInvokeCount: opts.invokeCount,
    },
    responseContext: { statusCode: 200, executedVersion: '$LATEST', functionError: 'Unhandled' },
    version: '1.0',
    timestamp: new Date().toISOString(),
    KafkaBatchInfo: {
      batchSize,
      ...(event.eventSourceArn ? { eventSourceArn: event.eventSourceArn } : {}),
      bootstrapServers: event.bootstrapServers ?? '',
      payloadSize: Buffer.byteLength(JSON.stringify(event)),
      recordsInfo,
    },
  };
}

/** Splits records into invocations: at most `batchSize` records and Lambda's 6 MB payload each. */
export function chunkRecords(
  records: readonly KafkaEventRecord[],
  batchSize: number,
  maxPayloadBytes = MAX_INVOCATION_PAYLOAD_BYTES,
): KafkaEventRecord[][] {
  const chunks: KafkaEventRecord[][] = [];
  let current: KafkaEventRecord[] = [];
  // The envelope (source, ARN, servers, group key) stays well under 1 KiB.
  let bytes = 1024;
  for (const r of records) {
    const size = Buffer.byteLength(JSON.stringify(r)) + 1;
    if (current.length > 0 && (current.length >= batchSize || bytes + size > maxPayloadBytes)) {
      chunks.push(current);
      current = [];
      bytes = 1024;
    }
    current.push(r);
    bytes += size;
  }
  if (current.length > 0) chunks.push(current);
  return chunks;
}

/** The part of kafkajs' eachBatch payload the processor uses (a fake consumer in unit tests). */
export type BatchPayload = Pick<
  EachBatchPayload,
  'resolveOffset' | 'heartbeat' | 'commitOffsetsIfNecessary' | 'uncommittedOffsets' | 'isRunning' | 'isStale'
> & { batch: Pick<Batch, 'topic' | 'partition' | 'messages'> };

export interface BatchProcessorOptions
  extends Pick<
    KafkaEventSourceOptions,
    | 'handler'
    | 'batchSize'
    | 'eventSource'
    | 'clusterArn'
    | 'pollerMode'
    | 'maximumRetryAttempts'
    | 'bisectBatchOnFunctionError'
    | 'onFailure'
    | 'retryDelayMs'
    | 'functionTimeoutSeconds'
    | 'functionName'
    | 'logger'
    | 'schemaRegistry'
  > {
  readonly bootstrapServers: string;
  /** Called as each invocation starts and settles (for idle()). */
  readonly onInvocation?: (running: boolean) => void;
}

export function newStats(): KafkaEventSourceStats {
  return {
    invocations: 0,
    failedInvocations: 0,
    recordsDelivered: 0,
    bisections: 0,
    discardedBatches: 0,
    discardedRecords: 0,
    commits: 0,
    commitErrors: 0,
  };
}

/**
 * The eachBatch callback: invoke, commit after success, retry, bisect, discard to onFailure. Offsets
 * are resolved and committed only for records whose invocation returned or that went to onFailure.
 */
export function createBatchProcessor(
  options: BatchProcessorOptions,
  stats: KafkaEventSourceStats = newStats(),
): (payload: BatchPayload) => Promise<void> {
  const { handler, batchSize } = options;
  if (!Number.isInteger(batchSize) || batchSize < 1 || batchSize > 10_000) {
    throw new RangeError(`batchSize must be 1..10000, got ${batchSize}`);
  }
  const eventSource = options.eventSource ?? 'aws:kafka';
  const mode = options.pollerMode ?? settings.kafka.pollerMode;
  const policy = kafkaRetryPolicy(mode);
  const givenRetries = options.maximumRetryAttempts ?? policy.maximumRetryAttempts;
  if (!Number.isInteger(givenRetries) || givenRetries < -1) {
    throw new RangeError(`maximumRetryAttempts must be -1 (forever) or a count, got ${givenRetries}`);
  }
  // "When you configure both infinite retries and an on-failure destination, Lambda automatically
  // applies a maximum of 10 retry attempts" (provisioned mode, where retries can be configured at all).
  const maxRetries = mode === 'provisioned' && givenRetries === -1 && options.onFailure ? 10 : givenRetries;
  const bisect = options.bisectBatchOnFunctionError ?? policy.bisectBatchOnFunctionError;
  const retryDelayMs = options.retryDelayMs ?? 500;
  const timeoutMs =
    (options.functionTimeoutSeconds ?? settings.functions.kafkaConsumer.timeoutSeconds) * 1000;
  const logger = options.logger ?? consoleLogger;
  const onInvocation = options.onInvocation ?? (() => {});
  /** The mapping's deserializers, by schema id. */
  const schemas: DeserializerCache = new Map();
  const eventOpts = {
    eventSource,
    bootstrapServers: options.bootstrapServers,
    ...(options.clusterArn ? { clusterArn: options.clusterArn } : {}),
  };

  return async (payload: BatchPayload) => {
    const { batch } = payload;
    const { topic, partition } = batch;
    const functionName = options.functionName ?? `${topic}-consumer`;
    const functionArn = `arn:aws:lambda:${LOCAL_REGION}:${LOCAL_ACCOUNT_ID}:function:${functionName}`;
    const stopped = () => !payload.isRunning() || payload.isStale();

    const sleep = async (ms: number) => {
      const until = Date.now() + ms;
      while (!stopped() && Date.now() < until) {
        await new Promise((r) => setTimeout(r, Math.min(100, until - Date.now())));
      }
    };
    /** Resolves and commits everything up to and including this offset. */
    const commitThrough = async (offset: number) => {
      payload.resolveOffset(String(offset));
      try {
        await payload.commitOffsetsIfNecessary(payload.uncommittedOffsets());
        stats.commits++;
      } catch (err) {
        // A rebalance or a coordinator move: the next owner of the partition reads these records again.
        stats.commitErrors++;
        logger.warn(
          `committing ${topic}-${partition} through offset ${offset} failed; it will be redelivered`,
          err,
        );
      }
      await payload.heartbeat().catch(() => undefined);
    };

    /** One invocation; true when the handler returned in time. */
    const invoke = async (event: KafkaEvent): Promise<{ ok: true } | { ok: false; error: unknown }> => {
      stats.invocations++;
      const context = lambdaContext({ functionName, timeoutMs, region: LOCAL_REGION });
      onInvocation(true);
      // Long invocations must not cost the group membership.
      const beat = setInterval(() => payload.heartbeat().catch(() => undefined), 3000);
      let timer: NodeJS.Timeout | undefined;
      try {
        const run = Promise.resolve().then(() => handler(event, context));
        const timedOut = new Promise<'timeout'>((resolve) => {
          timer = setTimeout(() => resolve('timeout'), timeoutMs);
        });
        const result = await Promise.race([run, timedOut]);
        if (result === 'timeout') {
          run.catch(() => undefined);
          return { ok: false, error: new Error(`${functionName} timed out after ${timeoutMs} ms`) };
        }
        return { ok: true };
      } catch (error) {
        return { ok: false, error };
      } finally {
        clearTimeout(timer);
        clearInterval(beat);
        onInvocation(false);
      }
    };

    /** Delivers records (one invocation, bisected, retried, discarded); false when stopped first. */
    const deliver = async (records: KafkaEventRecord[]): Promise<boolean> => {
      const event = buildKafkaEvent(records, eventOpts);
      const last = records[records.length - 1];
      if (!last) return true;
      let attempts = 0;
      let lastError: unknown;
      for (;;) {
        if (stopped()) return false;
        attempts++;
        const outcome = await invoke(event);
        if (outcome.ok) {
          stats.recordsDelivered += records.length;
          await commitThrough(last.offset);
          return true;
        }
        stats.failedInvocations++;
        lastError = outcome.error;
        const range = `${topic}-${partition}@${records[0]?.offset}-${last.offset}`;
        // "When your function returns an error, split the batch into two smaller batches and retry each
        // separately"; splitting does not count towards the retry quota.
        if (bisect && records.length > 1) {
          logger.warn(`${functionName} failed ${range}; splitting it in two`, outcome.error);
          stats.bisections++;
          const mid = Math.ceil(records.length / 2);
          return (await deliver(records.slice(0, mid))) && (await deliver(records.slice(mid)));
        }
        if (maxRetries !== -1 && attempts > maxRetries) {
          logger.warn(
            `${functionName} failed ${range} ${attempts} time(s); giving up on this batch`,
            outcome.error,
          );
          break;
        }
        logger.warn(`${functionName} failed ${range} (attempt ${attempts}); retrying`, outcome.error);
        await sleep(backoffDelay(attempts, { baseMs: retryDelayMs, maxMs: 30_000, jitter: 'none' }));
      }
      const failure: KafkaBatchFailure = {
        record: kafkaFailureRecord(event, { functionArn, invokeCount: attempts }),
        event,
        topicPartition: `${topic}-${partition}`,
        error: lastError,
      };
      return discard(failure, records, `after ${attempts} attempt(s)`);
    };

    /** Hands records to the on-failure destination (retrying it), then commits past them; false when stopped. */
    const discard = async (
      failure: KafkaBatchFailure,
      records: KafkaEventRecord[],
      why: string,
    ): Promise<boolean> => {
      const last = records[records.length - 1];
      if (!last) return true;
      for (let tries = 1; ; tries++) {
        if (stopped()) return false;
        try {
          if (options.onFailure) await options.onFailure(failure);
          else {
            logger.error(
              `discarding ${topic}-${partition}@${records[0]?.offset}-${last.offset} ${why} (no on-failure destination)`,
            );
          }
          break;
        } catch (err) {
          logger.error('the on-failure destination failed; trying again', err);
          await sleep(backoffDelay(tries, { baseMs: retryDelayMs, maxMs: 30_000, jitter: 'none' }));
        }
      }
      stats.discardedBatches++;
      stats.discardedRecords += records.length;
      await commitThrough(last.offset);
      return true;
    };

    const records = batch.messages.map((m) => toKafkaEventRecord(topic, partition, m));
    const registry = options.schemaRegistry;
    if (!registry) {
      for (const chunk of chunkRecords(records, batchSize)) {
        if (!(await deliver(chunk))) return;
      }
      return;
    }
    // Through the registry first: the records it validates are delivered in batches, each one it cannot
    // validate goes to the on-failure destination on its own, in offset order, so commits stay in order.
    let valid: KafkaEventRecord[] = [];
    const flush = async () => {
      for (const chunk of chunkRecords(valid, batchSize)) {
        if (!(await deliver(chunk))) return false;
      }
      valid = [];
      return true;
    };
    for (const r of records) {
      const outcome = await validated(r);
      if (!outcome) return;
      if (outcome.ok) {
        valid.push(outcome.record);
        continue;
      }
      if (!(await flush())) return;
      logger.warn(`${topic}-${partition}@${r.offset}: ${outcome.condition} (${outcome.reason})`);
      const event = buildKafkaEvent([r], eventOpts);
      const failure: KafkaBatchFailure = {
        record: kafkaFailureRecord(event, { functionArn, invokeCount: 0, condition: outcome.condition }),
        event,
        topicPartition: `${topic}-${partition}`,
        error: new Error(`${outcome.condition}: ${outcome.reason}`),
      };
      if (!(await discard(failure, [r], `(${outcome.condition})`))) return;
    }
    await flush();

    /** The record through the registry; a registry that cannot be asked is asked again. Undefined when stopped. */
    async function validated(r: KafkaEventRecord) {
      for (let tries = 1; !stopped(); tries++) {
        try {
          return await throughRegistry(r, registry as NonNullable<typeof registry>, schemas);
        } catch (err) {
          logger.warn('the schema registry could not be asked; trying again', err);
          await sleep(backoffDelay(tries, { baseMs: retryDelayMs, maxMs: 30_000, jitter: 'none' }));
        }
      }
      return undefined;
    }
  };
}

/**
 * AT_TIMESTAMP for a group that has not committed a partition yet: commits, before the group's consumer
 * joins, each such partition's offset of the first record at or after `timestampMs` (the partition's end
 * when none is), so consuming starts there. Partitions the group has committed keep their offsets.
 */
export async function startGroupAtTimestamp(
  admin: Pick<Admin, 'fetchOffsets' | 'fetchTopicOffsetsByTimestamp' | 'setOffsets'>,
  groupId: string,
  topic: string,
  timestampMs: number,
): Promise<void> {
  // A group the broker has not seen yet answers NOT_COORDINATOR while its coordinator loads, and kafkajs'
  // fetchOffsets and setOffsets do not retry it.
  const coordinated = <T>(fn: () => Promise<T>) =>
    retrying(fn, {
      attempts: 30,
      baseMs: 100,
      maxMs: 1000,
      jitter: 'none',
      retryable: (err) => {
        const e = err as { retriable?: unknown; type?: unknown };
        return e.retriable === true || e.type === 'NOT_COORDINATOR' || e.type === 'COORDINATOR_NOT_AVAILABLE';
      },
    });
  const [committed] = await coordinated(() => admin.fetchOffsets({ groupId, topics: [topic] }));
  const done = new Set(
    (committed?.partitions ?? []).filter((p) => Number(p.offset) >= 0).map((p) => p.partition),
  );
  const atTime = await admin.fetchTopicOffsetsByTimestamp(topic, timestampMs);
  const partitions = atTime.filter((p) => !done.has(p.partition));
  if (partitions.length > 0) await coordinated(() => admin.setOffsets({ groupId, topic, partitions }));
}

/** Starts consuming `topic` in group `groupId` and invoking `handler`, until `stop()`. */
export function startKafkaEventSource(options: KafkaEventSourceOptions): KafkaEventSource {
  const brokers =
    typeof options.brokers === 'string'
      ? options.brokers.split(',').map((b) => b.trim())
      : [...options.brokers];
  const logger = options.logger ?? consoleLogger;
  const windowMs = Math.max(0, options.maxBatchingWindowMs);
  const stats = newStats();
  let running = 0;
  let stopping = false;

  const kafka = new Kafka({
    clientId: `pulse-event-source-${options.groupId}`,
    brokers,
    logLevel: logLevel.WARN,
    // kafkajs reports retried conditions (coordinator not yet available, rebalances) as errors; real
    // failures reach us as exceptions and the CRASH event, logged below.
    logCreator:
      () =>
      ({ log }: LogEntry) => {
        const { message, ...extra } = log;
        logger.debug(`kafkajs: ${message}`, extra);
      },
  });
  const consumer: Consumer = kafka.consumer({
    groupId: options.groupId,
    // Up to the window, the broker gathers records (~1 MiB) before answering a fetch.
    minBytes: windowMs > 0 ? 1024 * 1024 : 1,
    maxWaitTimeInMs: windowMs > 0 ? windowMs : 100,
    maxBytesPerPartition: 4 * 1024 * 1024,
    sessionTimeout: 30_000,
    heartbeatInterval: 3000,
    retry: { retries: 10 },
  });
  const admin: Admin = kafka.admin();

  const processBatch = createBatchProcessor(
    {
      ...options,
      bootstrapServers: brokers.join(','),
      logger,
      onInvocation: (isRunning) => {
        running += isRunning ? 1 : -1;
      },
    },
    stats,
  );

  let resolveReady: () => void = () => {};
  let rejectReady: (err: unknown) => void = () => {};
  const ready = new Promise<void>((resolve, reject) => {
    resolveReady = resolve;
    rejectReady = reject;
  });
  ready.catch(() => undefined);
  consumer.on(consumer.events.GROUP_JOIN, () => resolveReady());
  consumer.on(consumer.events.CRASH, (e) => {
    if (e.payload.restart) {
      // A retriable error (a broker still loading its group coordinator, say): kafkajs restarts the consumer.
      logger.warn('the Kafka consumer crashed and is restarting', e.payload.error);
      return;
    }
    logger.error('the Kafka consumer crashed', e.payload.error);
    rejectReady(e.payload.error);
  });

  const startingPosition = options.startingPosition ?? settings.kafka.startingPosition;
  if (startingPosition === 'AT_TIMESTAMP' && !Number.isFinite(options.startingPositionTimestampMs)) {
    throw new RangeError('startingPosition AT_TIMESTAMP needs startingPositionTimestampMs');
  }
  const started = (async () => {
    await consumer.connect();
    await admin.connect();
    if (startingPosition === 'AT_TIMESTAMP') {
      await startGroupAtTimestamp(
        admin,
        options.groupId,
        options.topic,
        options.startingPositionTimestampMs ?? 0,
      );
    }
    await consumer.subscribe({
      topics: [options.topic],
      fromBeginning: startingPosition !== 'LATEST',
    });
    await consumer.run({
      autoCommit: false,
      eachBatchAutoResolve: false,
      partitionsConsumedConcurrently: options.partitionsConsumedConcurrently ?? 1,
      eachBatch: (payload) => processBatch(payload),
    });
  })();
  started.catch((err: unknown) => {
    logger.error(`could not start consuming ${options.topic}`, err);
    rejectReady(err);
  });

  /** True when the group's committed offsets have reached every partition's end. */
  const caughtUp = async (): Promise<boolean> => {
    const ends = await admin.fetchTopicOffsets(options.topic);
    const [committed] = await admin.fetchOffsets({ groupId: options.groupId, topics: [options.topic] });
    const byPartition = new Map((committed?.partitions ?? []).map((p) => [p.partition, Number(p.offset)]));
    return ends.every((e) => {
      const end = Number(e.high);
      const low = Number(e.low);
      if (end === low) return true; // nothing to read
      return (byPartition.get(e.partition) ?? -1) >= end;
    });
  };

  let stopping$: Promise<void> | undefined;
  return {
    stats,
    ready,
    stop() {
      stopping$ ??= (async () => {
        stopping = true;
        await started.catch(() => undefined);
        await consumer
          .disconnect()
          .catch((err: unknown) => logger.warn('disconnecting the consumer failed', err));
        await admin.disconnect().catch(() => undefined);
      })();
      return stopping$;
    },
    async idle() {
      await started.catch(() => undefined);
      for (;;) {
        if (stopping) return stopping$;
        try {
          if (running === 0 && (await caughtUp()) && running === 0) return;
        } catch (err) {
          logger.debug('idle check failed; trying again', err);
        }
        await new Promise((r) => setTimeout(r, 100));
      }
    },
  };
}
