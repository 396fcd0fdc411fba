import type { KafkaMessage } from 'kafkajs';
import { describe, expect, it, vi } from 'vitest';
import { type KafkaEvent, parseKafkaEvent } from '../../../../functions/kafka-consumer/events.ts';
import {
  type BatchPayload,
  type BatchProcessorOptions,
  buildKafkaEvent,
  chunkRecords,
  createBatchProcessor,
  type KafkaBatchFailure,
  kafkaFailureRecord,
  localClusterArn,
  newStats,
  toEventHeaders,
  toKafkaEventRecord,
} from '../../../../local/event-sources/kafka.ts';
import { consumerRecordsOf } from '../../../helpers/kafka.ts';

/** A message as kafkajs decodes it from a v2 record batch. */
function message(
  offset: number,
  value: string | null,
  opts: { key?: string | null; headers?: KafkaMessage['headers']; logAppend?: boolean } = {},
): KafkaMessage {
  return {
    offset: String(offset),
    timestamp: String(1_718_000_000_000 + offset),
    attributes: 0,
    key: opts.key === undefined || opts.key === null ? null : Buffer.from(opts.key),
    value: value === null ? null : Buffer.from(value),
    headers: opts.headers ?? {},
    batchContext: { timestampType: opts.logAppend ? 1 : 0 },
  } as KafkaMessage;
}

const signal = (n: number) => JSON.stringify({ name: 'cpu', value: n, timestamp: 1_718_000_000 + n });

/**
 * A fake kafkajs consumer's eachBatch payload: records what was resolved and committed, in order
 * with the handler's calls (`log`).
 */
function fakePayload(
  topic: string,
  partition: number,
  messages: KafkaMessage[],
  log: string[],
  opts: { running?: () => boolean } = {},
) {
  let resolved: string | undefined;
  let committed: string | undefined;
  const commits: string[] = [];
  const payload: BatchPayload = {
    batch: { topic, partition, messages },
    resolveOffset: (offset) => {
      resolved = offset;
    },
    heartbeat: async () => {},
    uncommittedOffsets: () => ({
      topics:
        resolved === undefined || String(Number(resolved) + 1) === committed
          ? []
          : [{ topic, partitions: [{ partition, offset: String(Number(resolved) + 1) }] }],
    }),
    commitOffsetsIfNecessary: async (offsets) => {
      const offset = offsets?.topics[0]?.partitions[0]?.offset;
      if (offset === undefined) return;
      committed = offset;
      commits.push(offset);
      log.push(`commit ${offset}`);
    },
    isRunning: opts.running ?? (() => true),
    isStale: () => false,
  };
  return { payload, commits, committed: () => committed };
}

/** Offsets of an invocation's records, as `first-last`. */
const range = (event: KafkaEvent) => {
  const records = Object.values(event.records).flat();
  return `${records[0]?.offset}-${records[records.length - 1]?.offset}`;
};

const base = (overrides: Partial<BatchProcessorOptions> = {}): BatchProcessorOptions => ({
  handler: async () => undefined,
  batchSize: 3,
  bootstrapServers: '127.0.0.1:9092',
  retryDelayMs: 1,
  logger: { debug: () => {}, info: () => {}, warn: () => {}, error: () => {} },
  ...overrides,
});

describe('toKafkaEventRecord / buildKafkaEvent', () => {
  it('builds the MSK event shape the handler parses: base64 key and value, byte-array headers', async () => {
    const records = [
      toKafkaEventRecord(
        'pulse_signals',
        0,
        message(15, signal(1), {
          key: 'host-a',
          headers: { 'content-type': Buffer.from('application/json') },
        }),
      ),
      toKafkaEventRecord('pulse_signals', 1, message(7, signal(2), { logAppend: true })),
      toKafkaEventRecord('pulse_signals', 1, message(8, null, { key: 'host-b' })),
    ];
    const event = buildKafkaEvent(records, { eventSource: 'aws:kafka', bootstrapServers: '127.0.0.1:9092' });

    expect(Object.keys(event)).toEqual(['eventSource', 'eventSourceArn', 'bootstrapServers', 'records']);
    expect(event.eventSourceArn).toBe(localClusterArn());
    expect(Object.keys(event.records)).toEqual(['pulse_signals-0', 'pulse_signals-1']);
    expect(event.records['pulse_signals-0']?.[0]).toEqual({
      topic: 'pulse_signals',
      partition: 0,
      offset: 15,
      timestamp: 1_718_000_000_015,
      timestampType: 'CREATE_TIME',
      key: Buffer.from('host-a').toString('base64'),
      value: Buffer.from(signal(1)).toString('base64'),
      headers: [{ 'content-type': [...Buffer.from('application/json')] }],
    });
    // No key: no `key` field; a tombstone: value null.
    expect(event.records['pulse_signals-1']?.[0]).not.toHaveProperty('key');
    expect(event.records['pulse_signals-1']?.[0]?.timestampType).toBe('LOG_APPEND_TIME');
    expect(event.records['pulse_signals-1']?.[1]?.value).toBeNull();
    expect(parseKafkaEvent(event)).toEqual(event);

    // The Powertools utility (as the handler runs it) reads the values back.
    const consumed = await consumerRecordsOf(event);
    expect(consumed[0]?.value).toBe(signal(1));
    expect(consumed[0]?.key).toBe('host-a');
    expect(consumed[2]?.value).toBeNull();
  });

  it('self-managed events carry no eventSourceArn', () => {
    const event = buildKafkaEvent([toKafkaEventRecord('t', 2, message(3, 'x'))], {
      eventSource: 'SelfManagedKafka',
      bootstrapServers: 'a:1,b:2',
    });
    expect(event).toEqual({
      eventSource: 'SelfManagedKafka',
      bootstrapServers: 'a:1,b:2',
      records: expect.any(Object),
    });
    expect(parseKafkaEvent(event).eventSource).toBe('SelfManagedKafka');
  });

  it('repeated header names become one object each, in order; string values become bytes', () => {
    expect(
      toEventHeaders({ trace: [Buffer.from('a'), Buffer.from('b')], src: 'gw', gone: undefined }),
    ).toEqual([{ trace: [97] }, { trace: [98] }, { src: [103, 119] }]);
    expect(toEventHeaders(undefined)).toEqual([]);
  });

  it('chunks by batch size and by the 6 MB payload limit', () => {
    const records = Array.from({ length: 7 }, (_, i) =>
      toKafkaEventRecord('t', 0, message(i, 'x'.repeat(100))),
    );
    expect(chunkRecords(records, 3).map((c) => c.length)).toEqual([3, 3, 1]);
    const one = Buffer.byteLength(JSON.stringify(records[0])) + 1;
    expect(chunkRecords(records, 100, 1024 + 2 * one).map((c) => c.length)).toEqual([2, 2, 2, 1]);
  });

  it('the on-failure record says which offsets were discarded', () => {
    const event = buildKafkaEvent(
      [toKafkaEventRecord('t', 0, message(4, 'x')), toKafkaEventRecord('t', 0, message(5, 'y'))],
      { eventSource: 'aws:kafka', bootstrapServers: 'b:1' },
    );
    const record = kafkaFailureRecord(event, { functionArn: 'arn:fn', invokeCount: 3 });
    expect(record.requestContext).toMatchObject({
      condition: 'RetryAttemptsExhausted',
      approximateInvokeCount: 3,
    });
    expect(record.KafkaBatchInfo).toMatchObject({
      batchSize: 2,
      bootstrapServers: 'b:1',
      eventSourceArn: localClusterArn(),
      recordsInfo: { 't-0': { firstRecordOffset: '4', lastRecordOffset: '5' } },
    });
  });
});

describe('createBatchProcessor (fake consumer)', () => {
  it('commits each invocation’s offsets only after the handler returned', async () => {
    const log: string[] = [];
    const handler = vi.fn(async (event: KafkaEvent) => {
      log.push(`invoke ${range(event)}`);
      await new Promise((r) => setTimeout(r, 5));
      log.push(`return ${range(event)}`);
    });
    const stats = newStats();
    const process = createBatchProcessor(base({ handler }), stats);
    const fake = fakePayload(
      't',
      0,
      [10, 11, 12, 13, 14].map((o) => message(o, signal(o))),
      log,
    );
    await process(fake.payload);

    expect(log).toEqual([
      'invoke 10-12',
      'return 10-12',
      'commit 13',
      'invoke 13-14',
      'return 13-14',
      'commit 15',
    ]);
    expect(stats).toMatchObject({ invocations: 2, recordsDelivered: 5, failedInvocations: 0, commits: 2 });
  });

  it('does not commit a failing batch while retrying; a later success commits it', async () => {
    const log: string[] = [];
    let calls = 0;
    const handler = async (event: KafkaEvent) => {
      calls++;
      log.push(`invoke ${range(event)}`);
      if (calls < 3) throw new Error('SQS unavailable');
    };
    const stats = newStats();
    const process = createBatchProcessor(
      base({ handler, maximumRetryAttempts: 2, bisectBatchOnFunctionError: false }),
      stats,
    );
    const fake = fakePayload(
      't',
      0,
      [0, 1].map((o) => message(o, signal(o))),
      log,
    );
    await process(fake.payload);

    expect(log).toEqual(['invoke 0-1', 'invoke 0-1', 'invoke 0-1', 'commit 2']);
    expect(stats).toMatchObject({
      invocations: 3,
      failedInvocations: 2,
      recordsDelivered: 2,
      discardedBatches: 0,
    });
  });

  it('after the retries, hands the batch to onFailure and commits past it (no bisection)', async () => {
    const log: string[] = [];
    const failures: KafkaBatchFailure[] = [];
    const process = createBatchProcessor(
      base({
        handler: async (event) => {
          log.push(`invoke ${range(event)}`);
          throw new Error('boom');
        },
        maximumRetryAttempts: 1,
        bisectBatchOnFunctionError: false,
        onFailure: (f) => {
          log.push(`onFailure ${range(f.event)}`);
          failures.push(f);
        },
      }),
    );
    const fake = fakePayload(
      't',
      0,
      [5, 6].map((o) => message(o, signal(o))),
      log,
    );
    await process(fake.payload);

    expect(log).toEqual(['invoke 5-6', 'invoke 5-6', 'onFailure 5-6', 'commit 7']);
    expect(failures[0]?.record.requestContext.approximateInvokeCount).toBe(2);
    expect(String(failures[0]?.error)).toBe('Error: boom');
  });

  it('bisects a failing batch down to the record that fails, delivering the rest', async () => {
    const delivered: number[] = [];
    const discarded: number[] = [];
    const stats = newStats();
    const process = createBatchProcessor(
      base({
        batchSize: 8,
        maximumRetryAttempts: 0,
        handler: async (event) => {
          const records = Object.values(event.records).flat();
          if (records.some((r) => r.offset === 5)) throw new Error('poison');
          delivered.push(...records.map((r) => r.offset));
        },
        onFailure: (f) => {
          discarded.push(
            ...Object.values(f.event.records)
              .flat()
              .map((r) => r.offset),
          );
        },
      }),
      stats,
    );
    const fake = fakePayload(
      't',
      3,
      [0, 1, 2, 3, 4, 5, 6, 7].map((o) => message(o, signal(o))),
      [],
    );
    await process(fake.payload);

    expect(delivered.sort((a, b) => a - b)).toEqual([0, 1, 2, 3, 4, 6, 7]);
    expect(discarded).toEqual([5]);
    expect(fake.committed()).toBe('8');
    // Commits only move forward.
    expect(fake.commits.map(Number)).toEqual([...fake.commits.map(Number)].sort((a, b) => a - b));
    expect(stats).toMatchObject({ discardedBatches: 1, discardedRecords: 1, recordsDelivered: 7 });
  });

  it('in on-demand mode retries a failing batch whole, forever: nothing split, committed or discarded, until stopped', async () => {
    // Prepare
    let running = true;
    let calls = 0;
    const sizes: number[] = [];
    const onFailure = vi.fn();
    const stats = newStats();
    const process = createBatchProcessor(
      base({
        pollerMode: 'on-demand',
        onFailure,
        handler: async (event) => {
          sizes.push(Object.values(event.records).flat().length);
          if (++calls >= 5) running = false;
          throw new Error('always');
        },
      }),
      stats,
    );
    const fake = fakePayload(
      't',
      0,
      [0, 1, 2].map((o) => message(o, signal(o))),
      [],
      { running: () => running },
    );

    // Act
    await process(fake.payload);

    // Assess
    expect(sizes).toEqual([3, 3, 3, 3, 3]);
    expect(stats.bisections).toBe(0);
    expect(onFailure).not.toHaveBeenCalled();
    expect(fake.commits).toEqual([]);
  });

  it('in provisioned mode splits a failing batch at once (a split is no retry), then retries the record that fails', async () => {
    // Prepare
    const log: string[] = [];
    const process = createBatchProcessor(
      base({
        batchSize: 4,
        pollerMode: 'provisioned',
        maximumRetryAttempts: 1,
        bisectBatchOnFunctionError: true,
        handler: async (event) => {
          log.push(`invoke ${range(event)}`);
          if (
            Object.values(event.records)
              .flat()
              .some((r) => r.offset === 2)
          )
            throw new Error('poison');
        },
        onFailure: (f) => {
          log.push(`onFailure ${range(f.event)} after ${f.record.requestContext.approximateInvokeCount}`);
        },
      }),
    );
    const fake = fakePayload(
      't',
      0,
      [0, 1, 2, 3].map((o) => message(o, signal(o))),
      log,
    );

    // Act
    await process(fake.payload);

    // Assess
    expect(log).toEqual([
      'invoke 0-3',
      'invoke 0-1',
      'commit 2',
      'invoke 2-3',
      'invoke 2-2',
      'invoke 2-2',
      'onFailure 2-2 after 2',
      'commit 3',
      'invoke 3-3',
      'commit 4',
    ]);
  });

  it('in provisioned mode, infinite retries with an on-failure destination give up after 10 retries, as Lambda does', async () => {
    // Prepare
    let calls = 0;
    const failures: KafkaBatchFailure[] = [];
    const process = createBatchProcessor(
      base({
        pollerMode: 'provisioned',
        maximumRetryAttempts: -1,
        bisectBatchOnFunctionError: false,
        handler: async () => {
          calls++;
          throw new Error('always');
        },
        onFailure: (f) => {
          failures.push(f);
        },
      }),
    );
    const fake = fakePayload('t', 0, [message(0, signal(0))], []);

    // Act
    await process(fake.payload);

    // Assess
    expect(calls).toBe(11);
    expect(failures.map((f) => f.record.requestContext.approximateInvokeCount)).toEqual([11]);
    expect(fake.committed()).toBe('1');
  });

  it('with retries forever (-1) and no destination the partition stalls: nothing committed, nothing discarded, until stopped', async () => {
    let running = true;
    let calls = 0;
    const onFailure = vi.fn();
    const process = createBatchProcessor(
      base({
        pollerMode: 'on-demand',
        maximumRetryAttempts: -1,
        onFailure,
        handler: async () => {
          if (++calls >= 5) running = false;
          throw new Error('always');
        },
      }),
    );
    const fake = fakePayload('t', 0, [message(0, signal(0))], [], { running: () => running });
    await process(fake.payload);

    expect(calls).toBe(5);
    expect(onFailure).not.toHaveBeenCalled();
    expect(fake.commits).toEqual([]);
  });

  it('stops between invocations without committing what was not delivered', async () => {
    let running = true;
    const log: string[] = [];
    const process = createBatchProcessor(
      base({
        batchSize: 1,
        handler: async (event) => {
          log.push(`invoke ${range(event)}`);
          running = false; // stop() while the first invocation runs
        },
      }),
    );
    const fake = fakePayload(
      't',
      0,
      [0, 1, 2].map((o) => message(o, signal(o))),
      log,
      { running: () => running },
    );
    await process(fake.payload);
    expect(log).toEqual(['invoke 0-0', 'commit 1']);
  });

  it('an invocation past the function timeout counts as failed', async () => {
    const stats = newStats();
    const failures: KafkaBatchFailure[] = [];
    const process = createBatchProcessor(
      base({
        functionTimeoutSeconds: 0.02,
        maximumRetryAttempts: 0,
        handler: () => new Promise((r) => setTimeout(r, 200)),
        onFailure: (f) => {
          failures.push(f);
        },
      }),
      stats,
    );
    const fake = fakePayload('t', 0, [message(0, signal(0))], []);
    await process(fake.payload);
    expect(stats.failedInvocations).toBe(1);
    expect(String(failures[0]?.error)).toMatch(/timed out/);
    expect(fake.committed()).toBe('1');
  });

  it('keeps the batch uncommitted while the on-failure destination fails, then commits', async () => {
    let destinationCalls = 0;
    const log: string[] = [];
    const process = createBatchProcessor(
      base({
        maximumRetryAttempts: 0,
        handler: async () => {
          throw new Error('bad');
        },
        bisectBatchOnFunctionError: false,
        onFailure: () => {
          destinationCalls++;
          log.push(`onFailure ${destinationCalls}`);
          if (destinationCalls === 1) throw new Error('queue down');
        },
      }),
    );
    const fake = fakePayload('t', 0, [message(9, signal(9))], log);
    await process(fake.payload);
    expect(log).toEqual(['onFailure 1', 'onFailure 2', 'commit 10']);
  });

  it('rejects a batch size Lambda would not accept', () => {
    expect(() => createBatchProcessor(base({ batchSize: 0 }))).toThrow(RangeError);
    expect(() => createBatchProcessor(base({ maximumRetryAttempts: -2 }))).toThrow(RangeError);
  });
});
