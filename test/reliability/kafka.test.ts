import { GetObjectCommand } from '@aws-sdk/client-s3';
import type { Context } from 'aws-lambda';
import { type Admin, Kafka, logLevel, Partitioners, type Producer } from 'kafkajs';
import { afterAll, afterEach, beforeAll, describe, expect, inject, it } from 'vitest';
import { type KafkaEvent, parseKafkaEvent } from '../../functions/kafka-consumer/events.ts';
import { handlerInvoker } from '../../local/commands/kafka-invokers.ts';
import { listKafkaFailures, replayKafkaFailures } from '../../local/commands/kafka-replay.ts';
import { type KafkaEventSourceOptions, startKafkaEventSource } from '../../local/event-sources/kafka.ts';
import {
  emulatedMappingUuid,
  s3OnFailureDestination,
} from '../../local/event-sources/kafka-failure-destinations.ts';
import { uniquePrefix } from '../../local/runtime/names.ts';
import { type FaultProxy, startFaultProxy } from '../helpers/fault-proxy.ts';
import { setUpPipeline, waitFor } from '../integration/pipeline.ts';
import { expectExactlyOnce, type Pipeline } from './invariants.ts';

/**
 * The kafka-consumer behind the project's event-source emulation, against a real broker, feeding the
 * real scorer: a batch delivered twice with the same offsets (a commit lost after the function
 * returned), poison records among good ones, and a sustained failure of the consumer's sends. Good
 * records are scored once; bad ones are quarantined with topic, partition and offset, and never block
 * their partition; batches that failed every retry land in the failures bucket, records included, and
 * `pulse kafka replay` scores each of their records once. The handlers reach moto through a fault proxy
 * that passes everything through until a scenario breaks something.
 */

type KafkaHandler = (event: KafkaEvent, context: Context) => Promise<unknown>;

describe('kafka-consumer: redelivered batches and poison records', () => {
  let p: Pipeline;
  let handler: KafkaHandler;
  let admin: Admin;
  let producer: Producer;
  let proxy: FaultProxy;
  /** The signals queue refuses the consumer's sends (AccessDenied: a bad deploy, a disabled key). */
  let refuseSignals = false;
  const brokers = inject('kafkaBrokers');
  const kafka = new Kafka({ clientId: 'reliability', brokers: [brokers], logLevel: logLevel.ERROR });
  const sources: { stop(): Promise<void> }[] = [];

  beforeAll(async () => {
    const moto = inject('motoEndpoint');
    proxy = await startFaultProxy({
      target: moto,
      before: 0,
      after: 0,
      seed: 20,
      failWhen: ({ service, operation }) =>
        refuseSignals && service === 'sqs' && operation.endsWith('.SendMessageBatch') ? 403 : undefined,
    });
    p = await setUpPipeline(moto, uniquePrefix('rkfk'), {
      visibility: { signals: 4 },
      handlerEndpoint: proxy.url,
    });
    handler = (await import('../../functions/kafka-consumer/handler.ts')).handler as unknown as KafkaHandler;
    admin = kafka.admin();
    await admin.connect();
    producer = kafka.producer({ createPartitioner: Partitioners.DefaultPartitioner });
    await producer.connect();
  });
  afterEach(async () => {
    refuseSignals = false;
    await Promise.all(sources.splice(0).map((s) => s.stop()));
    await p?.stopAll();
  });
  afterAll(async () => {
    await producer?.disconnect();
    await admin?.disconnect();
    await proxy?.close();
  });

  /** A topic of two partitions holding `values` (null: a tombstone), alternating partitions; their refs. */
  const topicWith = async (suffix: string, values: (string | null)[]) => {
    const topic = `${p.names.prefix}-${suffix}`;
    await admin.createTopics({ topics: [{ topic, numPartitions: 2 }], waitForLeaders: true });
    const refs: string[] = [];
    for (const partition of [0, 1]) {
      const mine = values.filter((_, i) => i % 2 === partition);
      const [meta] = await producer.send({
        topic,
        acks: -1,
        messages: mine.map((value) => ({ value, partition })),
      });
      const base = Number(meta?.baseOffset);
      let k = 0;
      values.forEach((_, i) => {
        if (i % 2 === partition) refs[i] = `kafka:${topic}:${partition}:${base + k++}`;
      });
    }
    return { topic, refs };
  };
  const consume = async (topic: string, h: KafkaHandler, more: Partial<KafkaEventSourceOptions> = {}) => {
    const source = startKafkaEventSource({
      brokers,
      topic,
      groupId: `${topic}-group`,
      batchSize: 25,
      maxBatchingWindowMs: 100,
      handler: h,
      retryDelayMs: 50,
      ...more,
    });
    sources.push(source);
    await source.ready;
    await source.idle();
    return source;
  };
  const good = (name: string, i: number) =>
    JSON.stringify({ name, value: (i % 9) + 0.25, source: 'rkfk', timestamp: 1_718_000_000 + i });

  it('scores once every record of batches delivered twice with the same offsets', async () => {
    // Prepare
    const { topic, refs } = await topicWith(
      'twice',
      Array.from({ length: 120 }, (_, i) => good('rkfk_twice', i)),
    );
    let invocations = 0;
    const twice: KafkaHandler = async (event, context) => {
      invocations++;
      await handler(event, context);
      // The commit after the first run is lost: the same batch, same offsets, comes again.
      return handler(event, context);
    };

    // Act
    await consume(topic, twice);
    p.start('signals');
    await waitFor(
      'every record scored, the queue drained',
      async () =>
        ((await p.series('rkfk', 'rkfk_twice'))?.count ?? 0) >= 120 && (await p.queueDepth('signals')) === 0,
      60_000,
    );

    // Assess
    expect(invocations).toBeGreaterThan(1);
    await expectExactlyOnce(p, {
      scope: (s) => s.id.startsWith(`kafka:${topic}:`),
      scoredIds: refs,
      series: [{ source: 'rkfk', name: 'rkfk_twice', count: 120 }],
      quarantine: { under: `kafka/${topic}/`, refs: [] },
    });
  });

  it('scores once the records of a batch retried in halves (bisect) after its first half was committed', async () => {
    // Prepare: a whole batch sends its first half, waits until the scorer has committed it, then fails,
    // every attempt; the event source then bisects it and delivers each half on its own.
    const { topic, refs } = await topicWith(
      'bisect',
      Array.from({ length: 80 }, (_, i) => good('rkfk_bisect', i)),
    );
    let halvesSent = 0;
    const halfThenFail: KafkaHandler = async (event, context) => {
      const [key, records] = Object.entries(event.records)[0] ?? [];
      if (!key || !records || records.length < 20) return handler(event, context);
      await handler(
        { ...event, records: { [key]: records.slice(0, Math.ceil(records.length / 2)) } },
        context,
      );
      halvesSent++;
      await waitFor('the first half committed', async () => (await p.queueDepth('signals')) === 0, 30_000);
      throw new Error('the function failed after its first half was committed');
    };
    p.start('signals');

    // Act
    const source = await consume(topic, halfThenFail);
    await waitFor(
      'every record scored, the queue drained',
      async () =>
        ((await p.series('rkfk', 'rkfk_bisect'))?.count ?? 0) >= 80 && (await p.queueDepth('signals')) === 0,
      60_000,
    );

    // Assess: batches were bisected after committing their first halves; each record scored once.
    expect(halvesSent).toBeGreaterThan(0);
    expect(source.stats.bisections).toBeGreaterThan(0);
    await expectExactlyOnce(p, {
      scope: (s) => s.id.startsWith(`kafka:${topic}:`),
      scoredIds: refs,
      series: [{ source: 'rkfk', name: 'rkfk_bisect', count: 80 }],
      quarantine: { under: `kafka/${topic}/`, refs: [] },
    });
  });

  it('quarantines poison records with topic, partition and offset, and scores the good ones around them once', async () => {
    // Prepare: 100 records, every 9th poison (not JSON, a non-numeric value, a tombstone, no name).
    const poisons = [
      '{"name": "rkfk_poison",',
      JSON.stringify({ name: 'x', value: '12x' }),
      null,
      '{"value": 1}',
    ];
    const values = Array.from({ length: 100 }, (_, i) =>
      i % 9 === 4 ? (poisons[i % poisons.length] ?? null) : good('rkfk_poison', i),
    );
    const { topic, refs } = await topicWith('poison', values);
    const bad = refs.filter((_, i) => i % 9 === 4);
    const fine = refs.filter((_, i) => i % 9 !== 4);

    // Act
    const source = await consume(topic, handler);
    p.start('signals');
    await waitFor(
      'the good records scored, the queue drained',
      async () =>
        ((await p.series('rkfk', 'rkfk_poison'))?.count ?? 0) >= fine.length &&
        (await p.queueDepth('signals')) === 0,
      60_000,
    );

    // Assess: no batch failed for their sake; each poison record is in its partition's quarantine object.
    expect(source.stats.failedInvocations).toBe(0);
    const { quarantined } = await expectExactlyOnce(p, {
      scope: (s) => s.id.startsWith(`kafka:${topic}:`),
      scoredIds: fine,
      series: [{ source: 'rkfk', name: 'rkfk_poison', count: fine.length }],
      quarantine: { under: `kafka/${topic}/`, refs: bad },
    });
    for (const line of quarantined) {
      const [, , partition] = line.ref.split(':');
      expect(line.key.startsWith(`rejects/kafka/${topic}/${partition}/`)).toBe(true);
    }
  });

  it('keeps the batches of a sustained failure in the failures bucket, records included; replay after the fix scores each record once, and a second replay does nothing', async () => {
    // Prepare: 10 records on two partitions; the signals queue refuses the consumer's sends.
    const { topic, refs } = await topicWith(
      'outage',
      Array.from({ length: 10 }, (_, i) => good('rkfk_outage', i)),
    );
    const bucket = p.resources.kafkaFailuresBucket;
    refuseSignals = true;

    // Act: the event source as deployed (provisioned mode: bounded retries, bisection), S3 destination.
    const source = await consume(topic, handler, {
      pollerMode: 'provisioned',
      onFailure: s3OnFailureDestination({
        s3: p.clients.s3,
        bucket,
        esmUuid: emulatedMappingUuid(`${topic}-group`),
      }),
    });

    // Assess: nothing was scored, every record was discarded (the offsets moved on) into the bucket,
    // each object as Lambda writes it, holding the whole event; the notices queue alarms.
    expect(source.stats).toMatchObject({ recordsDelivered: 0, discardedRecords: 10 });
    const objects = await listKafkaFailures(p.target);
    expect(objects).toHaveLength(source.stats.discardedBatches);
    const stored: string[] = [];
    for (const o of objects) {
      expect(o.key).toMatch(
        new RegExp(
          `^aws/lambda/[0-9a-f-]{36}/${topic}-[01]/\\d{4}/\\d{2}/\\d{2}/\\d{4}-\\d{2}-\\d{2}T\\d{2}\\.\\d{2}\\.\\d{2}-[0-9a-f-]{36}$`,
        ),
      );
      const body = await p.clients.s3.send(new GetObjectCommand({ Bucket: bucket, Key: o.key }));
      const record = JSON.parse((await body.Body?.transformToString()) ?? '{}');
      expect(Object.keys(record)).toEqual([
        'requestContext',
        'responseContext',
        'version',
        'timestamp',
        'KafkaBatchInfo',
        'payload',
      ]);
      expect(record.requestContext).toMatchObject({
        condition: 'RetryAttemptsExhausted',
        approximateInvokeCount: 3,
      });
      const event = parseKafkaEvent(JSON.parse(record.payload));
      for (const r of Object.values(event.records).flat())
        stored.push(`kafka:${r.topic}:${r.partition}:${r.offset}`);
    }
    expect(stored.sort()).toEqual([...refs].sort());
    await waitFor(
      'a notice per failure object',
      async () => (await p.queueDepth('kafkaFailures')) >= objects.length,
      30_000,
    );

    // Act: the cause is fixed; replay, let the scorer drain, then replay again.
    refuseSignals = false;
    const replay = handlerInvoker(handler as Parameters<typeof handlerInvoker>[0]);
    const first = await replayKafkaFailures(p.target, replay);
    p.start('signals');
    await waitFor(
      'every record scored, the queue drained',
      async () =>
        ((await p.series('rkfk', 'rkfk_outage'))?.count ?? 0) >= 10 && (await p.queueDepth('signals')) === 0,
      60_000,
    );
    const second = await replayKafkaFailures(p.target, replay);

    // Assess: each object replayed once, each record scored once, the notices gone, nothing redone.
    expect(first).toMatchObject({ replayed: objects.length, failed: [], skipped: 0 });
    expect(second).toMatchObject({ replayed: 0, failed: [], skipped: objects.length });
    expect((await listKafkaFailures(p.target)).map((e) => [e.status, e.attempts])).toEqual(
      objects.map(() => ['replayed', 1]),
    );
    expect(await p.queueDepth('kafkaFailures')).toBe(0);
    await expectExactlyOnce(p, {
      scope: (s) => s.id.startsWith(`kafka:${topic}:`),
      scoredIds: refs,
      series: [{ source: 'rkfk', name: 'rkfk_outage', count: 10 }],
      quarantine: { under: `kafka/${topic}/`, refs: [] },
    });
  });
});
