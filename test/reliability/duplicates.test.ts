import { randomBytes } from 'node:crypto';
import { PutObjectCommand } from '@aws-sdk/client-s3';
import type { Context, SQSEvent } from 'aws-lambda';
import { afterAll, afterEach, beforeAll, describe, expect, inject, it } from 'vitest';
import { lambdaContext } from '../../local/event-sources/lambda-context.ts';
import { sqsEventFactory, sqsRecordFactory } from '../helpers/factories.ts';
import { type FaultProxy, startFaultProxy } from '../helpers/fault-proxy.ts';
import { startS3TriggerWorkerVia, type Worker } from '../helpers/workers.ts';
import { csvFile, setUpPipeline, waitFor } from '../integration/pipeline.ts';

/**
 * At-least-once delivery: S3 notifications and SQS messages arrive more than once, at the same time,
 * out of order, and objects change under a running worker. Each object version is still ingested
 * once and each record scored once.
 */
describe('duplicate and out-of-order deliveries', () => {
  let p: Awaited<ReturnType<typeof setUpPipeline>>;
  let slow: FaultProxy;
  let worker: Worker | undefined;
  const ctx = (): Context => lambdaContext({ functionName: 's3-trigger', timeoutMs: 300_000 });
  const put = async (key: string, body: string) => {
    const out = await p.clients.s3.send(
      new PutObjectCommand({ Bucket: p.names.bucket, Key: key, Body: body }),
    );
    return out.ETag?.replace(/"/g, '') ?? '';
  };
  const notification = (key: string, etag: string, size: number) =>
    JSON.stringify({
      Records: [
        {
          eventName: 'ObjectCreated:Put',
          s3: {
            bucket: { name: p.names.bucket },
            object: { key: encodeURIComponent(key), eTag: etag, size },
          },
        },
      ],
    });
  const ledgerOf = async (prefix: string) => (await p.ledgerItems()).filter((i) => i.key.startsWith(prefix));
  const scoresOf = async (prefix: string) => (await p.scoreRecords()).filter((s) => s.ref.includes(prefix));

  beforeAll(async () => {
    p = await setUpPipeline(inject('motoEndpoint'), `dup${randomBytes(3).toString('hex')}`, {
      leaseSeconds: 3,
      heartbeatSeconds: 1,
    });
    slow = await startFaultProxy({
      target: inject('motoEndpoint'),
      before: 0,
      after: 0,
      delayMs: 60,
      seed: 4,
    });
  });
  afterEach(async () => {
    await worker?.kill();
    await p?.stopAll();
  });
  afterAll(async () => {
    await p?.stopAll();
    await slow?.close();
  });

  it('ingests two objects once each when their events arrive 5 times each, concurrently and interleaved', async () => {
    // Prepare
    const a = csvFile(800, { name: 'dup5_a', badEvery: 100 });
    const b = csvFile(600, { name: 'dup5_b' });
    const etagA = await put('incoming/dup5/a b.csv', a.text);
    const etagB = await put('incoming/dup5/b.csv', b.text);
    const eventA = notification('incoming/dup5/a b.csv', etagA, a.text.length);
    const eventB = notification('incoming/dup5/b.csv', etagB, b.text.length);

    // Act: ten deliveries at once, A and B alternating, some batches holding both (plus the two real
    // notifications, which the event sources deliver meanwhile).
    const deliveries: SQSEvent[] = [];
    for (let i = 0; i < 5; i++) {
      deliveries.push(sqsEventFactory([sqsRecordFactory(i % 2 ? eventB : eventA)]));
      deliveries.push(sqsEventFactory([sqsRecordFactory(i % 2 ? eventA : eventB), sqsRecordFactory(eventA)]));
    }
    p.start('fileEvents');
    p.start('signals');
    await Promise.allSettled(deliveries.map((event) => p.s3Trigger(event, ctx())));
    const ledger = await waitFor('both objects settled', async () => {
      const items = await ledgerOf('incoming/dup5/');
      return items.length === 2 && items.every((i) => i.status === 'SUCCESS') ? items : undefined;
    });
    await waitFor(
      'every record scored',
      async () => (await scoresOf('incoming/dup5/')).length >= a.good + b.good,
    );
    await waitFor(
      'queues drained',
      async () => (await p.queueDepth('fileEvents')) + (await p.queueDepth('signals')) === 0,
    );

    // Assess: one run per object (attempts 1), every later delivery counted as a duplicate or retried.
    expect(ledger.find((i) => i.key === 'incoming/dup5/a b.csv')).toMatchObject({
      attempts: 1,
      records: a.good,
      rejected: a.bad,
    });
    expect(ledger.find((i) => i.key === 'incoming/dup5/b.csv')).toMatchObject({
      attempts: 1,
      records: b.good,
    });
    const scores = await scoresOf('incoming/dup5/');
    expect(scores).toHaveLength(a.good + b.good);
    expect(new Set(scores.map((s) => s.id)).size).toBe(a.good + b.good);
    expect((await p.series('incoming/dup5/a b.csv', 'dup5_a'))?.count).toBe(a.good);
    expect((await p.series('incoming/dup5/b.csv', 'dup5_b'))?.count).toBe(b.good);
    expect(await p.queueDepth('fileEventsDlq')).toBe(0);
  });

  it('ingests both versions when an object is overwritten while its first version is processing', async () => {
    // Prepare: the first version is taken by a slow worker (its own process, every call 60 ms late),
    // so that it is surely mid-way when the new content lands under the key.
    const v1 = csvFile(3000, { name: 'overwrite' });
    const v2 = csvFile(300, { name: 'overwrite' });
    worker = await startS3TriggerWorkerVia(p, slow.url, {
      SIGNALS_MAX_MESSAGE_BYTES: '4096',
    });

    // Act
    const etag1 = await put('incoming/overwrite.csv', v1.text);
    // Mid-way: claimed and already sending (so its bytes are being read, not about to be).
    await waitFor(
      'the first version being sent',
      async () =>
        (await p.queueDepth('signals')) > 0 &&
        (await ledgerOf('incoming/overwrite.csv')).some((i) => i.etag === etag1 && i.status === 'PROCESSING'),
    );
    const etag2 = await put('incoming/overwrite.csv', v2.text);
    // The same worker takes the second version once done with the first (redelivery to a second worker
    // while one holds a file is files.test.ts's scenario).
    p.start('signals');
    const ledger = await waitFor(
      'both versions settled',
      async () => {
        const items = await ledgerOf('incoming/overwrite.csv');
        return items.length === 2 && items.every((i) => i.status === 'SUCCESS') ? items : undefined;
      },
      120_000,
    );
    await waitFor(
      'both versions scored',
      async () => (await scoresOf('incoming/overwrite.csv')).length >= v1.good + v2.good,
      120_000,
    );

    // Assess: two ledger entries (one per ETag), each version's records scored once, ids distinct by ETag.
    expect(ledger.find((i) => i.etag === etag1)).toMatchObject({ records: v1.good, attempts: 1 });
    expect(ledger.find((i) => i.etag === etag2)).toMatchObject({ records: v2.good, attempts: 1 });
    const scores = await scoresOf('incoming/overwrite.csv');
    expect(scores).toHaveLength(v1.good + v2.good);
    expect(new Set(scores.map((s) => s.id)).size).toBe(v1.good + v2.good);
    expect(scores.filter((s) => s.ref.includes(`@${etag2}#`))).toHaveLength(v2.good);
    expect((await p.series('incoming/overwrite.csv', 'overwrite'))?.count).toBe(v1.good + v2.good);
    expect(await p.queueDepth('fileEventsDlq')).toBe(0);
    expect(await p.queueDepth('signalsDlq')).toBe(0);
  });
});
