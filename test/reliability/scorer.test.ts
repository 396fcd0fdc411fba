import { SendMessageBatchCommand } from '@aws-sdk/client-sqs';
import type { Context } from 'aws-lambda';
import { afterAll, afterEach, beforeAll, describe, expect, inject, it } from 'vitest';
import { createObservability } from '#shared/observability.ts';
import type { Signal } from '#shared/signal.ts';
import { zScoreModel } from '../../functions/scorer/model.ts';
import { type BatchResult, scoreBatch } from '../../functions/scorer/scorer.ts';
import { lambdaContext } from '../../local/event-sources/lambda-context.ts';
import { uniquePrefix } from '../../local/runtime/names.ts';
import { sqsEventFactory, sqsRecordFactory } from '../helpers/factories.ts';
import { type Handler, setUpPipeline, waitFor } from '../integration/pipeline.ts';
import { expectExactlyOnce, type Pipeline } from './invariants.ts';

/**
 * The scorer under at-least-once delivery and concurrency: the same message to two scorers at once,
 * many scorers writing one series at once (conditional writes on its version: no lost update), and a
 * message whose visibility timeout runs out while its first scorer still works on it.
 */

/** `n` signals of one series, ids `<tag>:<i>`, values 0.5, 1.5, … (mean and variance known). */
function signals(tag: string, name: string, from: number, n: number): Signal[] {
  return Array.from({ length: n }, (_, k) => {
    const i = from + k;
    const id = `${tag}:${i}`;
    return {
      id,
      name,
      value: (i % 23) + 0.5,
      source: `rel-${tag}`,
      timestamp: new Date(1_700_000_000_000 + i * 1000).toISOString(),
      origin: { kind: 'kafka', ref: id },
    };
  });
}
const body = (s: Signal[]) => JSON.stringify({ v: 3, origin: { kind: 'kafka', ref: 'rel' }, signals: s });

/** Mean and population M2 of the values, computed directly. */
function moments(values: number[]): { mean: number; m2: number } {
  const mean = values.reduce((a, b) => a + b, 0) / values.length;
  return { mean, m2: values.reduce((a, v) => a + (v - mean) ** 2, 0) };
}

describe('scorer: duplicate deliveries, concurrent series writers, expired visibility', () => {
  let p: Pipeline;
  const ctx = (): Context => lambdaContext({ functionName: 'scorer', timeoutMs: 60_000 });
  const enqueue = async (bodies: string[]) => {
    for (let i = 0; i < bodies.length; i += 10) {
      await p.clients.sqs.send(
        new SendMessageBatchCommand({
          QueueUrl: p.resources.queues.signals.url,
          Entries: bodies.slice(i, i + 10).map((b, j) => ({ Id: String(j), MessageBody: b })),
        }),
      );
    }
  };
  const scopeOf = (tag: string) => (s: { id: string }) => s.id.startsWith(`${tag}:`);

  beforeAll(async () => {
    p = await setUpPipeline(inject('motoEndpoint'), uniquePrefix('rscore'), { visibility: { signals: 2 } });
  });
  afterEach(async () => {
    await p?.stopAll();
  });
  afterAll(async () => {
    await p?.stopAll();
  });

  it('keeps series whose sums pass 2^53, values past it, and values that differ only in their last digits', async () => {
    // Prepare: byte counts (M2 passes 2^53 at the second value), a value of 1e16, and tiny values whose
    // deviations square below DynamoDB's smallest number (1e-130).
    const series = (name: string, values: number[]): Signal[] =>
      values.map((value, i) => ({
        id: `range:${name}:${i}`,
        name,
        value,
        source: 'rel-range',
        timestamp: new Date(1_700_000_000_000 + i * 1000).toISOString(),
        origin: { kind: 'kafka', ref: `range:${name}:${i}` },
      }));
    const big = series('range-bytes', [1e9, 2e9, 3e9, 4e9, 1e16]);
    const tiny = series('range-tiny', [1e-90, 1e-90 * (1 + 2 ** -52), 1e-90, 1e-90 * (1 + 2 ** -51)]);
    const event = (s: Signal[]) => sqsEventFactory(s.map((x) => sqsRecordFactory(body([x]))));

    // Act: one signal a message and a batch each, so each is a separate write of its series
    const failures: unknown[] = [];
    for (const s of [...big, ...tiny])
      failures.push(...((await p.scorer(event([s]), ctx()))?.batchItemFailures ?? []));

    // Assess
    expect(failures).toEqual([]);
    expect(await p.series('rel-range', 'range-bytes')).toMatchObject({ count: 5 });
    expect(Number((await p.series('rel-range', 'range-bytes'))?.m2)).toBeGreaterThan(2 ** 53);
    expect(await p.series('rel-range', 'range-tiny')).toMatchObject({ count: 4 });
    const { scores } = await expectExactlyOnce(p, {
      scope: (s) => s.id.startsWith('range:'),
      scoredIds: [...big, ...tiny].map((s) => s.id),
    });
    expect(scores).toHaveLength(9);
    const records = await p.scoreRecords();
    expect(records.find((r) => r.id === 'range:range-bytes:4')).toMatchObject({ value: 1e16 });
  });

  it('scores once the messages delivered twice, at the same time, to two scorers', async () => {
    // Prepare: 6 messages of 40 signals, each delivered to both scorers (distinct message ids).
    const all = signals('twice', 'twice', 0, 240);
    const bodies = Array.from({ length: 6 }, (_, m) => body(all.slice(m * 40, m * 40 + 40)));
    const first = sqsEventFactory(bodies.map((b) => sqsRecordFactory(b)));
    const second = sqsEventFactory([...bodies].reverse().map((b) => sqsRecordFactory(b)));

    // Act
    const responses = await Promise.all([p.scorer(first, ctx()), p.scorer(second, ctx())]);

    // Assess: nothing needs to come back; one score per id; the series counts each signal once.
    expect(responses.map((r) => r?.batchItemFailures)).toEqual([[], []]);
    await expectExactlyOnce(p, {
      scope: scopeOf('twice'),
      scoredIds: all.map((s) => s.id),
      series: [{ source: 'rel-twice', name: 'twice', count: 240 }],
      quarantine: { under: 'scorer/', refs: [] },
    });
    const state = await p.series('rel-twice', 'twice');
    const want = moments(all.map((s) => s.value));
    expect(state?.mean).toBeCloseTo(want.mean, 9);
    expect(state?.m2).toBeCloseTo(want.m2, 6);
  });

  it('loses no update when six scorers write the same series at once (conflicts retried)', async () => {
    // Prepare: six batches of 3 messages × 30 signals, all of one series.
    const all = signals('conflict', 'conflict', 0, 540);
    const batches = Array.from({ length: 6 }, (_, b) =>
      Array.from({ length: 3 }, (_, m) => {
        const from = (b * 3 + m) * 30;
        return { messageId: `b${b}m${m}`, body: body(all.slice(from, from + 30)) };
      }),
    );
    const { logger, metrics } = createObservability('scorer');
    const deps = {
      ...p.clients,
      logger,
      metrics,
      model: zScoreModel({ threshold: 3, minSamples: 10 }),
      config: {
        scoresTable: p.names.scoresTable,
        scoresBucket: p.names.scoresBucket,
        anomaliesTable: p.names.anomaliesTable,
        quarantineBucket: p.names.bucket,
      },
    };

    // Act: all at once; what a scorer gives back (too many conflicts) is delivered again, as SQS would.
    const results: BatchResult[] = [];
    let pending = batches;
    for (let round = 0; pending.length > 0 && round < 10; round++) {
      const out = await Promise.all(pending.map((messages) => scoreBatch(messages, deps)));
      results.push(...out);
      pending = pending
        .map((messages, i) => messages.filter((m) => out[i]?.failures.has(m.messageId)))
        .filter((messages) => messages.length > 0);
    }

    // Assess: conflicts happened and were resolved; the series state equals the fold of every value.
    expect(pending).toEqual([]);
    expect(results.reduce((n, r) => n + r.conflicts, 0)).toBeGreaterThan(0);
    expect(results.reduce((n, r) => n + r.scored, 0)).toBe(540);
    await expectExactlyOnce(p, {
      scope: scopeOf('conflict'),
      scoredIds: all.map((s) => s.id),
      series: [{ source: 'rel-conflict', name: 'conflict', count: 540 }],
    });
    const state = await p.series('rel-conflict', 'conflict');
    const want = moments(all.map((s) => s.value));
    expect(state?.mean).toBeCloseTo(want.mean, 9);
    expect(state?.m2).toBeCloseTo(want.m2, 6);
    expect(state?.version).toBeGreaterThanOrEqual(6);
  });

  it('scores once a message redelivered to a second scorer while the first still holds it', async () => {
    // Prepare: the first scorer stalls until the message, its visibility timeout (2 s) run out, has
    // reached the second scorer; then both score it.
    const all = signals('visibility', 'visibility', 0, 120);
    await enqueue([body(all.slice(0, 60)), body(all.slice(60))]);
    let secondReceived = false;
    let firstHeldFor = 0;
    const stalling: Handler = async (event, context) => {
      const started = Date.now();
      await waitFor('the redelivery to the second scorer', async () => secondReceived, 30_000);
      firstHeldFor = Date.now() - started;
      return p.scorer(event, context);
    };
    const seen: Handler = async (event, context) => {
      secondReceived = true;
      return p.scorer(event, context);
    };

    // Act
    const a = p.start('signals', stalling);
    await waitFor('the first scorer to take the messages', async () => a.stats.received > 0);
    const b = p.start('signals', seen);
    await waitFor(
      'every signal scored, the queue drained',
      async () =>
        ((await p.series('rel-visibility', 'visibility'))?.count ?? 0) >= 120 &&
        (await p.queueDepth('signals')) === 0 &&
        a.stats.invocations > 0 &&
        b.stats.invocations > 0,
      60_000,
    );
    await p.stopAll();

    // Assess
    expect(firstHeldFor).toBeGreaterThanOrEqual(1500);
    await expectExactlyOnce(p, {
      scope: scopeOf('visibility'),
      scoredIds: all.map((s) => s.id),
      series: [{ source: 'rel-visibility', name: 'visibility', count: 120 }],
    });
  });
});
