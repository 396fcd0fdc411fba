import { GetObjectCommand, ListObjectsV2Command } from '@aws-sdk/client-s3';
import { CreateQueueCommand, ReceiveMessageCommand } from '@aws-sdk/client-sqs';
import type { Context } from 'aws-lambda';
import { type Admin, Kafka, logLevel, type Message, Partitioners, type Producer } from 'kafkajs';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { kafkaMappingGroupId } from '#shared/settings.ts';
import type { KafkaEvent } from '../../functions/kafka-consumer/events.ts';
import {
  type KafkaBatchFailure,
  type KafkaEventSourceOptions,
  startKafkaEventSource,
} from '../../local/event-sources/kafka.ts';
import { sqsOnFailureDestination } from '../../local/event-sources/kafka-failure-destinations.ts';
import { destroyClients, LOCAL_CREDENTIALS, LOCAL_REGION, makeClients } from '../../local/runtime/clients.ts';
import { resourceNames, uniquePrefix } from '../../local/runtime/names.ts';
import { createResources, type LocalResources } from '../../local/runtime/resources.ts';
import { countById, drainSignals as drainSignalsOf } from '../helpers/signals.ts';

/**
 * The kafka-consumer against a real Kafka broker (test/setup/kafka.ts) and moto (SQS, S3): messages
 * produced with kafkajs, consumed by the project's event-source emulation into the MSK event shape,
 * handled by the real handler; what reaches the signals queue and the quarantine is checked, and the
 * consumer group's committed offsets.
 */

type Handler = (event: KafkaEvent, context: Context) => Promise<unknown>;

const PARTITIONS = 3;

describe('kafka-consumer (Kafka + moto)', () => {
  const endpoint = inject('motoEndpoint');
  const brokers = inject('kafkaBrokers');
  const clients = makeClients(endpoint);
  const names = resourceNames(uniquePrefix('kfk'));
  const kafka = new Kafka({ clientId: `test-${names.prefix}`, brokers: [brokers], logLevel: logLevel.ERROR });
  let admin: Admin;
  let producer: Producer;
  let resources: LocalResources;
  let handler: Handler;
  const sources: { stop(): Promise<void> }[] = [];

  beforeAll(async () => {
    resources = await createResources(clients, names, { visibilityTimeoutSeconds: { signals: 60 } });
    // The handler reads its configuration when imported: environment first.
    Object.assign(process.env, {
      AWS_ENDPOINT_URL: endpoint,
      AWS_REGION: LOCAL_REGION,
      AWS_ACCESS_KEY_ID: LOCAL_CREDENTIALS.accessKeyId,
      AWS_SECRET_ACCESS_KEY: LOCAL_CREDENTIALS.secretAccessKey,
      S3_FORCE_PATH_STYLE: 'true',
      SIGNALS_QUEUE_URL: resources.queues.signals.url,
      QUARANTINE_BUCKET: names.bucket,
      POWERTOOLS_METRICS_DISABLED: 'true',
      POWERTOOLS_LOG_LEVEL: 'ERROR',
    });
    handler = (await import('../../functions/kafka-consumer/handler.ts')).handler as unknown as Handler;
    admin = kafka.admin();
    await admin.connect();
    producer = kafka.producer({
      createPartitioner: Partitioners.DefaultPartitioner,
      allowAutoTopicCreation: false,
    });
    await producer.connect();
  });

  afterAll(async () => {
    await Promise.all(sources.splice(0).map((s) => s.stop()));
    await producer?.disconnect();
    await admin?.disconnect();
    destroyClients(clients);
  });

  const createTopic = async (suffix: string): Promise<string> => {
    const topic = `pulse-signals-${names.prefix}-${suffix}`;
    await admin.createTopics({
      topics: [{ topic, numPartitions: PARTITIONS, replicationFactor: 1 }],
      waitForLeaders: true,
    });
    return topic;
  };

  /** Produces messages to one partition; returns their offsets, in order. */
  const produce = async (
    topic: string,
    partition: number,
    messages: Omit<Message, 'partition'>[],
  ): Promise<number[]> => {
    const [meta] = await producer.send({
      topic,
      acks: -1,
      messages: messages.map((m) => ({ ...m, partition })),
    });
    const base = Number(meta?.baseOffset);
    return messages.map((_, i) => base + i);
  };

  const consume = (topic: string, groupId: string, overrides: Partial<KafkaEventSourceOptions> = {}) => {
    const source = startKafkaEventSource({
      brokers,
      topic,
      groupId,
      batchSize: 50,
      maxBatchingWindowMs: 100,
      handler,
      retryDelayMs: 50,
      ...overrides,
    });
    sources.push(source);
    return source;
  };

  const drainSignals = () => drainSignalsOf(clients.sqs, resources.queues.signals.url);

  /** Every quarantine line under `rejects/kafka/<topic>/`, with the key it is in. */
  const quarantined = async (topic: string) => {
    const lines: { key: string; ref: string; reason: string; raw?: string }[] = [];
    let token: string | undefined;
    do {
      const out = await clients.s3.send(
        new ListObjectsV2Command({
          Bucket: names.bucket,
          Prefix: `rejects/kafka/${topic}/`,
          ContinuationToken: token,
        }),
      );
      for (const o of out.Contents ?? []) {
        const body = await clients.s3.send(new GetObjectCommand({ Bucket: names.bucket, Key: o.Key }));
        for (const line of (await body.Body?.transformToString())?.split('\n') ?? []) {
          if (line.trim()) lines.push({ key: String(o.Key), ...JSON.parse(line) });
        }
      }
      token = out.NextContinuationToken;
    } while (token);
    return lines;
  };

  /** Per partition: the group's committed offset and the partition's end. */
  const offsets = async (topic: string, groupId: string) => {
    const ends = await admin.fetchTopicOffsets(topic);
    const [committed] = await admin.fetchOffsets({ groupId, topics: [topic] });
    return ends
      .map((e) => ({
        partition: e.partition,
        end: Number(e.high),
        committed: Number(committed?.partitions.find((p) => p.partition === e.partition)?.offset ?? -1),
      }))
      .sort((a, b) => a.partition - b.partition);
  };

  const good = (n: number) =>
    JSON.stringify({ name: 'cpu', value: n / 10, source: `host-${n % 4}`, timestamp: 1_718_000_000 + n });

  it('delivers every good record once with id kafka:<topic>:<partition>:<offset>, quarantines the bad ones, commits to the end', async () => {
    const topic = await createTopic('mixed');
    const expectedIds: string[] = [];
    const bad = new Map<string, RegExp>(); // ref -> reason
    const badValues: { value: string | null; reason: RegExp }[] = [
      { value: '{"name":"cpu",', reason: /not JSON/i },
      { value: '[1,2,3]', reason: /./ },
      { value: JSON.stringify({ name: 'cpu', value: '12x', timestamp: 1_718_000_000 }), reason: /value/i },
      { value: null, reason: /tombstone/i },
    ];
    for (let p = 0; p < PARTITIONS; p++) {
      // 40 good records per partition with bad ones in between (each partition gets some).
      const messages: { key: string; value: string | null; bad?: RegExp }[] = [];
      for (let i = 0; i < 40; i++) {
        messages.push({ key: `host-${i % 4}`, value: good(p * 1000 + i) });
        const b = badValues[(i + p) % badValues.length];
        if (i % 13 === 5 && b) messages.push({ key: `bad-${i}`, value: b.value, bad: b.reason });
      }
      const sent = await produce(
        topic,
        p,
        messages.map((m) => ({
          key: m.key,
          value: m.value,
          headers: { 'content-type': 'application/json' },
        })),
      );
      messages.forEach((m, i) => {
        const ref = `kafka:${topic}:${p}:${sent[i]}`;
        if (m.bad) bad.set(ref, m.bad);
        else expectedIds.push(ref);
      });
    }
    expect(bad.size).toBeGreaterThanOrEqual(PARTITIONS * 2);

    const groupId = `${names.prefix}-g1`;
    const failures: KafkaBatchFailure[] = [];
    const source = consume(topic, groupId, { onFailure: (f) => void failures.push(f) });
    await source.ready;
    await source.idle();
    await source.stop();

    const signals = await drainSignals();
    const counts = countById(signals);
    expect([...counts.keys()].sort()).toEqual([...expectedIds].sort());
    expect([...counts.values()].every((c) => c === 1)).toBe(true);
    // The record's key and header, produced through the broker, arrive as attributes.
    expect(signals.find((s) => s.id === expectedIds[0])).toMatchObject({
      name: 'cpu',
      value: 0,
      attributes: { 'kafka.key': 'host-0', 'kafka.header.content-type': 'application/json' },
    });

    const lines = await quarantined(topic);
    expect(lines.map((l) => l.ref).sort()).toEqual([...bad.keys()].sort());
    for (const line of lines) {
      const [, , partition] = line.ref.split(':');
      expect(line.key.startsWith(`rejects/kafka/${topic}/${partition}/`)).toBe(true);
      expect(line.reason).toMatch(bad.get(line.ref) ?? /never/);
    }

    // Bad records never fail a batch: nothing retried, nothing discarded, every offset committed.
    expect(failures).toEqual([]);
    expect(source.stats.failedInvocations).toBe(0);
    for (const o of await offsets(topic, groupId)) expect(o.committed).toBe(o.end);

    // The same records delivered again (a second consumer group from the start) carry the same ids.
    const again = consume(topic, `${names.prefix}-g2`);
    await again.ready;
    await again.idle();
    await again.stop();
    const redelivered = countById(await drainSignals());
    expect([...redelivered.keys()].sort()).toEqual([...expectedIds].sort());
  });

  it('an event source recreated with the same consumer group resumes at its committed offsets; a new group starts at its starting position', async () => {
    // Prepare
    const topic = await createTopic('resume');
    const before: string[] = [];
    const after: string[] = [];
    for (let p = 0; p < PARTITIONS; p++) {
      const sent = await produce(
        topic,
        p,
        Array.from({ length: 20 }, (_, i) => ({ value: good(p * 100 + i) })),
      );
      before.push(...sent.map((o) => `kafka:${topic}:${p}:${o}`));
    }
    const groupId = `${names.prefix}-resume`;
    const first = consume(topic, groupId, { startingPosition: 'TRIM_HORIZON' });
    await first.ready;
    await first.idle();
    await first.stop();
    expect(countById(await drainSignals()).size).toBe(before.length);
    for (let p = 0; p < PARTITIONS; p++) {
      const sent = await produce(
        topic,
        p,
        Array.from({ length: 10 }, (_, i) => ({ value: good(p * 100 + 50 + i) })),
      );
      after.push(...sent.map((o) => `kafka:${topic}:${p}:${o}`));
    }

    // Act: the mapping deleted and created again with the same group (TRIM_HORIZON is then ignored).
    const recreated = consume(topic, groupId, { startingPosition: 'TRIM_HORIZON' });
    await recreated.ready;
    await recreated.idle();
    await recreated.stop();
    const resumed = countById(await drainSignals());
    const fresh = consume(topic, `${names.prefix}-resume-new`, { startingPosition: 'TRIM_HORIZON' });
    await fresh.ready;
    await fresh.idle();
    await fresh.stop();
    const fromStart = countById(await drainSignals());

    // Assess
    expect([...resumed.keys()].sort()).toEqual([...after].sort());
    expect([...resumed.values()].every((c) => c === 1)).toBe(true);
    expect(recreated.stats.recordsDelivered).toBe(after.length);
    expect([...fromStart.keys()].sort()).toEqual([...before, ...after].sort());
    for (const o of await offsets(topic, groupId)) expect(o.committed).toBe(o.end);
  });

  it('two topics feed one pipeline, one event source each in its own group: every record once, sourced by its topic', async () => {
    // Prepare
    const topics = [await createTopic('sensors'), await createTopic('meters')];
    const expected = new Map<string, string>(); // id -> topic
    for (const [t, topic] of topics.entries()) {
      for (let p = 0; p < PARTITIONS; p++) {
        const sent = await produce(
          topic,
          p,
          Array.from({ length: 15 + t * 5 }, (_, i) => ({
            value: JSON.stringify({ name: 'cpu', value: i, timestamp: 1_718_000_000 + i }),
          })),
        );
        for (const o of sent) expected.set(`kafka:${topic}:${p}:${o}`, topic);
      }
    }
    const group = `${names.prefix}-multi`;

    // Act: the stack's mappings, offline: one per topic, with the group kafkaMappingGroupId gives it.
    const groups = topics.map((topic) => kafkaMappingGroupId(group, topic, topics) ?? '');
    const running = topics.map((topic, i) => consume(topic, groups[i] ?? ''));
    await Promise.all(running.map((s) => s.ready));
    await Promise.all(running.map((s) => s.idle()));
    await Promise.all(running.map((s) => s.stop()));
    const signals = await drainSignals();

    // Assess
    expect(groups).toEqual(topics.map((t) => `${group}.${t}`));
    const counts = countById(signals);
    expect(counts.size).toBe(PARTITIONS * (15 + 20));
    expect([...counts.keys()].sort()).toEqual([...expected.keys()].sort());
    expect([...counts.values()].every((c) => c === 1)).toBe(true);
    for (const s of signals) expect(s.source).toBe(expected.get(s.id));
    for (const [i, topic] of topics.entries()) {
      for (const o of await offsets(topic, groups[i] ?? '')) expect(o.committed).toBe(o.end);
    }
  });

  it('AT_TIMESTAMP starts a new group at the first record at or after the timestamp in each partition, and a recreated group resumes', async () => {
    // Prepare: partitions 0 and 1 hold records a second apart; partition 2 only records from before.
    const topic = await createTopic('at-time');
    const t0 = Date.UTC(2026, 0, 1);
    const from = t0 + 5_000;
    const expected: string[] = [];
    for (let p = 0; p < PARTITIONS; p++) {
      const times = Array.from({ length: 10 }, (_, i) => (p === 2 ? t0 - 100_000 + i : t0 + i * 1_000));
      const sent = await produce(
        topic,
        p,
        times.map((ms, i) => ({ timestamp: String(ms), value: good(p * 100 + i) })),
      );
      sent.forEach((o, i) => {
        if ((times[i] ?? 0) >= from) expected.push(`kafka:${topic}:${p}:${o}`);
      });
    }
    const groupId = `${names.prefix}-at-time`;

    // Act
    const first = consume(topic, groupId, {
      startingPosition: 'AT_TIMESTAMP',
      startingPositionTimestampMs: from,
    });
    await first.ready;
    await first.idle();
    await first.stop();
    const delivered = countById(await drainSignals());
    const again = consume(topic, groupId, {
      startingPosition: 'AT_TIMESTAMP',
      startingPositionTimestampMs: t0,
    });
    await again.ready;
    await again.idle();
    await again.stop();

    // Assess
    expect(expected).toHaveLength(10);
    expect([...delivered.keys()].sort()).toEqual([...expected].sort());
    expect([...delivered.values()].every((c) => c === 1)).toBe(true);
    expect(again.stats.invocations).toBe(0);
    expect((await drainSignals()).length).toBe(0);
    for (const o of await offsets(topic, groupId)) expect(o.committed).toBe(o.end);
  });

  it('a batch that keeps failing is retried, bisected, sent to the on-failure queue, and does not stall its partition', async () => {
    const topic = await createTopic('poison');
    const failureQueue = await clients.sqs.send(
      new CreateQueueCommand({ QueueName: `${names.prefix}-kafka-on-failure` }),
    );
    const ids: string[] = [];
    for (let p = 0; p < PARTITIONS; p++) {
      const sent = await produce(
        topic,
        p,
        Array.from({ length: 30 }, (_, i) => ({ value: good(i) })),
      );
      ids.push(...sent.map((o) => `kafka:${topic}:${p}:${o}`));
    }
    // The function fails on one record of partition 1, whatever the batch (a bug, or a dependency down for it).
    const poison = ids[30 + 17] ?? ''; // partition 1, its 18th record
    const [, , poisonPartition, poisonOffset] = poison.split(':');
    const failing: Handler = async (event, context) => {
      const hit = Object.values(event.records)
        .flat()
        .some((r) => r.partition === Number(poisonPartition) && r.offset === Number(poisonOffset));
      if (hit) throw new Error('downstream rejected the batch');
      return handler(event, context);
    };

    const groupId = `${names.prefix}-poison`;
    const warnings: string[] = [];
    const source = consume(topic, groupId, {
      handler: failing,
      logger: {
        debug: () => {},
        info: () => {},
        warn: (m) => void warnings.push(m),
        error: (m) => void warnings.push(m),
      },
      batchSize: 10,
      maximumRetryAttempts: 1,
      bisectBatchOnFunctionError: true,
      // An SQS destination: Lambda sends it the invocation record only (offsets, not the records).
      onFailure: sqsOnFailureDestination({ sqs: clients.sqs, queueUrl: failureQueue.QueueUrl ?? '' }),
    });
    await source.ready;
    await source.idle();
    await source.stop();

    const delivered = countById(await drainSignals());
    expect([...delivered.keys()].sort()).toEqual(ids.filter((id) => id !== poison).sort());
    expect([...delivered.values()].every((c) => c === 1)).toBe(true);

    const out = await clients.sqs.send(
      new ReceiveMessageCommand({
        QueueUrl: failureQueue.QueueUrl,
        MaxNumberOfMessages: 10,
        WaitTimeSeconds: 1,
      }),
    );
    expect(out.Messages).toHaveLength(1);
    const record = JSON.parse(out.Messages?.[0]?.Body ?? '{}');
    expect(record.requestContext.condition).toBe('RetryAttemptsExhausted');
    expect(record.KafkaBatchInfo.recordsInfo).toEqual({
      [`${topic}-${poisonPartition}`]: expect.objectContaining({
        firstRecordOffset: poisonOffset,
        lastRecordOffset: poisonOffset,
      }),
    });
    expect(source.stats).toMatchObject({ discardedBatches: 1, discardedRecords: 1 });
    // Each failing batch was split in halves at once (a split is no retry): 10-19 → 15-19 → 15-17 →
    // 17 alone, which was tried twice (maximumRetryAttempts 1), then went to the on-failure queue.
    expect(source.stats.bisections).toBe(3);
    expect(warnings.filter((w) => w.includes('giving up'))).toHaveLength(1);
    expect(record).not.toHaveProperty('payload');
    for (const o of await offsets(topic, groupId)) expect(o.committed).toBe(o.end);
  });
});
