import { GetObjectCommand, PutObjectCommand } from '@aws-sdk/client-s3';
import { SendMessageBatchCommand } from '@aws-sdk/client-sqs';
import { DeleteCommand, ScanCommand } from '@aws-sdk/lib-dynamodb';
import { afterAll, afterEach, beforeAll, describe, expect, inject, it } from 'vitest';
import { createObservability } from '#shared/observability.ts';
import { settings } from '#shared/settings.ts';
import type { Signal } from '#shared/signal.ts';
import { zScoreModel } from '../../functions/scorer/model.ts';
import { decodeRecords } from '../../functions/scorer/score-store.ts';
import { scoreBatch } from '../../functions/scorer/scorer.ts';
import { uniquePrefix } from '../../local/runtime/names.ts';
import { startWorker } from '../helpers/workers.ts';
import { setUpPipeline, waitFor } from '../integration/pipeline.ts';
import { expectExactlyOnce, type Pipeline } from './invariants.ts';

/**
 * What "scored once" means since the scorer keeps applied positions instead of one item per signal
 * (docs/scoring.md): a record's own id dedupes only within its scope (two files numbering rows 1..n are
 * both scored, and so is a corrected file uploaded again), dedupe never forgets (no TTL: a redelivery
 * long after the former 90 days is still a duplicate), and a scorer that dies between its commit and
 * the final score object leaves a pending object that the redelivery promotes, once.
 */
describe('scoring: own ids in their scope, dedupe that never forgets, scores recovered after a crash', () => {
  let p: Pipeline;
  const DAY_MS = 86_400_000;

  /** A CSV whose rows bring their own ids 1..n. */
  const withIds = (name: string, n: number, value: (i: number) => number) =>
    `id,name,value,timestamp\r\n${Array.from({ length: n }, (_, k) => `${k + 1},${name},${value(k + 1)},${1_700_000_000 + k}`).join('\r\n')}\r\n`;
  const put = async (key: string, body: string) => {
    const out = await p.clients.s3.send(
      new PutObjectCommand({ Bucket: p.names.bucket, Key: key, Body: body }),
    );
    return String(out.ETag).replace(/"/g, '');
  };
  const refs = (key: string, etag: string, n: number) =>
    Array.from({ length: n }, (_, k) => `s3://${p.names.bucket}/${key}@${etag}#${k + 1}`);
  const settled = (prefix: string, count: number) =>
    waitFor(
      `${count} files of ${prefix} settled and scored, queues drained`,
      async () => {
        const items = (await p.ledgerItems()).filter((i) => i.key.startsWith(prefix));
        return (
          items.length === count &&
          items.every((i) => i.status === 'SUCCESS') &&
          (await p.queueDepth('fileEvents')) === 0 &&
          (await p.queueDepth('signals')) === 0
        );
      },
      120_000,
    );

  /** The pending score objects holding scores of signals whose id starts with `prefix`. */
  const pendingOf = async (prefix: string) => {
    const keys: string[] = [];
    for (const key of await p.scoreObjects(settings.scores.pendingPrefix)) {
      const out = await p.clients.s3.send(new GetObjectCommand({ Bucket: p.names.scoresBucket, Key: key }));
      const body = await (out.Body as { transformToByteArray(): Promise<Uint8Array> }).transformToByteArray();
      if (decodeRecords(body).some((r) => r.id.startsWith(prefix))) keys.push(key);
    }
    return keys;
  };

  beforeAll(async () => {
    p = await setUpPipeline(inject('motoEndpoint'), uniquePrefix('rscr'), { visibility: { signals: 2 } });
  });
  afterEach(async () => {
    await p?.stopAll();
  });
  afterAll(async () => {
    await p?.stopAll();
  });

  it('scores two files whose rows bring the same ids: an id dedupes within its own source only', async () => {
    // Prepare
    const a = withIds('rscr_ids', 200, (i) => i % 7);
    const b = withIds('rscr_ids', 200, (i) => i % 5);
    p.start('fileEvents');
    p.start('signals');

    // Act
    const etagA = await put('incoming/rscr/a.csv', a);
    const etagB = await put('incoming/rscr/b.csv', b);
    await settled('incoming/rscr/', 2);

    // Assess
    await expectExactlyOnce(p, {
      scope: (s) => s.originRef.includes('/incoming/rscr/'),
      by: 'ref',
      scoredIds: [...refs('incoming/rscr/a.csv', etagA, 200), ...refs('incoming/rscr/b.csv', etagB, 200)],
      series: [
        { source: 'incoming/rscr/a.csv', name: 'rscr_ids', count: 200 },
        { source: 'incoming/rscr/b.csv', name: 'rscr_ids', count: 200 },
      ],
      quarantine: { under: 'scorer/', refs: [] },
    });
  });

  it('scores a corrected file uploaded again under the same key (a new ETag), its rows bringing the same ids', async () => {
    // Prepare
    const first = withIds('rscr_fix', 150, (i) => i % 4);
    const corrected = withIds('rscr_fix', 150, (i) => (i % 4) + 0.5);
    p.start('fileEvents');
    p.start('signals');

    // Act
    const etag1 = await put('incoming/rscr-fix/data.csv', first);
    await settled('incoming/rscr-fix/', 1);
    const etag2 = await put('incoming/rscr-fix/data.csv', corrected);
    await settled('incoming/rscr-fix/', 2);

    // Assess: both versions scored, each row once; the series holds both.
    expect(etag2).not.toBe(etag1);
    await expectExactlyOnce(p, {
      scope: (s) => s.originRef.includes('/incoming/rscr-fix/'),
      by: 'ref',
      scoredIds: [
        ...refs('incoming/rscr-fix/data.csv', etag1, 150),
        ...refs('incoming/rscr-fix/data.csv', etag2, 150),
      ],
      series: [{ source: 'incoming/rscr-fix/data.csv', name: 'rscr_fix', count: 300 }],
      quarantine: { under: 'scorer/', refs: [] },
    });
  });

  it('does not score again a message redelivered long after the former 90-day TTL (the clock faked)', async () => {
    // Prepare: a batch scored "today"; then 200 days pass, and DynamoDB's TTL deletes what expired.
    const signals: Signal[] = Array.from({ length: 40 }, (_, i) => ({
      id: `kafka:rscr-ttl:0:${i}`,
      name: 'rscr_ttl',
      value: i % 6,
      source: 'rscr-ttl',
      timestamp: new Date(1_700_000_000_000 + i).toISOString(),
      origin: { kind: 'kafka', ref: `kafka:rscr-ttl:0:${i}` },
    }));
    const body = JSON.stringify({ v: 3, origin: { kind: 'kafka', ref: 'kafka:rscr-ttl:0' }, signals });
    const { logger, metrics } = createObservability('scorer');
    let now = Date.parse('2025-01-01T00:00:00Z');
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
        scoreTtlDays: 90,
      },
      now: () => now,
    };
    const first = await scoreBatch([{ messageId: 'first', body }], deps);
    now += 200 * DAY_MS;
    const ttl = settings.scoring.ttlAttribute;
    const expired = await p.clients.doc.send(
      new ScanCommand({
        TableName: p.names.scoresTable,
        FilterExpression: '#ttl < :now',
        ExpressionAttributeNames: { '#ttl': ttl },
        ExpressionAttributeValues: { ':now': Math.floor(now / 1000) },
      }),
    );
    for (const item of expired.Items ?? []) {
      await p.clients.doc.send(new DeleteCommand({ TableName: p.names.scoresTable, Key: { pk: item.pk } }));
    }

    // Act: the same message, redelivered (a Kafka trigger recreated at TRIM_HORIZON, a lost watermark).
    const again = await scoreBatch([{ messageId: 'again', body }], deps);

    // Assess
    expect(first.scored).toBe(40);
    expect(again).toMatchObject({ scored: 0, duplicates: 40 });
    expect((await p.series('rscr-ttl', 'rscr_ttl'))?.count).toBe(40);
    await expectExactlyOnce(p, {
      scope: (s) => s.id.startsWith('kafka:rscr-ttl:'),
      scoredIds: signals.map((s) => s.id),
      series: [{ source: 'rscr-ttl', name: 'rscr_ttl', count: 40 }],
    });
  });

  it('promotes, on redelivery, the scores of a scorer killed (SIGKILL) between its commit and the final object: one record per signal', async () => {
    // Prepare: three messages of 50 signals (a Kafka partition's offsets).
    const signals: Signal[] = Array.from({ length: 150 }, (_, i) => ({
      id: `kafka:rscr-kill:0:${i}`,
      name: 'rscr_kill',
      value: (i % 11) + 0.5,
      source: 'rscr-kill',
      timestamp: new Date(1_700_000_000_000 + i * 1000).toISOString(),
      origin: { kind: 'kafka', ref: `kafka:rscr-kill:0:${i}` },
    }));
    const bodies = [0, 1, 2].map((m) =>
      JSON.stringify({
        v: 3,
        origin: { kind: 'kafka', ref: 'kafka:rscr-kill:0' },
        signals: signals.slice(m * 50, m * 50 + 50),
      }),
    );
    await p.clients.sqs.send(
      new SendMessageBatchCommand({
        QueueUrl: p.resources.queues.signals.url,
        Entries: bodies.map((b, i) => ({ Id: String(i), MessageBody: b })),
      }),
    );
    const worker = await startWorker(
      'test/integration/workers/scorer-worker.ts',
      [p.resources.queues.signals.url],
      p.env,
    );

    // Act: the worker commits, then dies before writing the final object; the messages come back.
    const exit = await worker.exited;
    const pendingAfterCrash = await pendingOf('kafka:rscr-kill:');
    const finalAfterCrash = (await p.scoreRecords()).filter((r) => r.id.startsWith('kafka:rscr-kill:'));
    const countAfterCrash = (await p.series('rscr-kill', 'rscr_kill'))?.count;
    p.start('signals');
    await waitFor(
      'the redelivered messages handled, the queue drained',
      async () => (await p.queueDepth('signals')) === 0,
      60_000,
    );

    // Assess: the crash was after the commit (applied, no final object, the pending one there); the
    // redelivery scored nothing again and promoted the pending object.
    expect(exit).toBe('SIGKILL');
    expect(countAfterCrash).toBe(150);
    expect(finalAfterCrash).toEqual([]);
    expect(pendingAfterCrash).toHaveLength(1);
    await expectExactlyOnce(p, {
      scope: (s) => s.id.startsWith('kafka:rscr-kill:'),
      scoredIds: signals.map((s) => s.id),
      series: [{ source: 'rscr-kill', name: 'rscr_kill', count: 150 }],
    });
    expect(await pendingOf('kafka:rscr-kill:')).toEqual([]);
  });
});
