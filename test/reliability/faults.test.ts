import { randomBytes } from 'node:crypto';
import { PutObjectCommand } from '@aws-sdk/client-s3';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { type FaultProxy, startFaultProxy } from '../helpers/fault-proxy.ts';
import { csvFile, setUpPipeline, waitFor } from '../integration/pipeline.ts';

/**
 * Throttled and failing services: every AWS call of the handlers (S3, SQS, DynamoDB) goes through a
 * proxy that fails 10% of them before they reach the emulator (throttling) and replaces the response
 * of another 3% after the emulator applied them (a lost response, so the SDK retries a call that
 * already happened). Still, every valid record is scored exactly once and every file ends SUCCESS.
 */
describe('transient failures of DynamoDB, SQS and S3 during ingestion and scoring', () => {
  let p: Awaited<ReturnType<typeof setUpPipeline>>;
  let proxy: FaultProxy;

  beforeAll(async () => {
    const moto = inject('motoEndpoint');
    proxy = await startFaultProxy({ target: moto, before: 0.1, after: 0.03, seed: 20261130 });
    p = await setUpPipeline(moto, `flt${randomBytes(3).toString('hex')}`, {
      handlerEndpoint: proxy.url,
      leaseSeconds: 3,
      heartbeatSeconds: 1,
    });
  });
  afterAll(async () => {
    await p?.stopAll();
    await proxy?.close();
  });

  it('scores every valid record exactly once and quarantines the bad ones, whatever fails in between', async () => {
    // Prepare: six files, each its own series, a bad row every 97th.
    const files = Array.from({ length: 6 }, (_, i) => ({
      key: `incoming/faults-${i}.csv`,
      name: `faults_${i}`,
      ...csvFile(1500, { name: `faults_${i}`, badEvery: 97 }),
    }));
    p.start('fileEvents');
    p.start('signals');

    // Act
    for (const f of files) {
      await p.clients.s3.send(new PutObjectCommand({ Bucket: p.names.bucket, Key: f.key, Body: f.text }));
    }
    const ledger = await waitFor(
      'every file settled',
      async () => {
        const items = (await p.ledgerItems()).filter((i) => i.key.startsWith('incoming/faults-'));
        return items.length === files.length && items.every((i) => i.status !== 'PROCESSING')
          ? items
          : undefined;
      },
      240_000,
    );
    await waitFor(
      'every series complete',
      async () => {
        const counts = await Promise.all(files.map((f) => p.series(f.key, f.name)));
        return counts.every((c, i) => (c?.count ?? 0) >= (files[i]?.good ?? 0));
      },
      240_000,
    );
    // Let redelivered duplicates (lost SendMessageBatch responses) drain through the scorer.
    await waitFor('signals queue drained', async () => (await p.queueDepth('signals')) === 0, 120_000);

    // Assess
    for (const f of files) {
      expect(ledger.find((i) => i.key === f.key)).toMatchObject({
        status: 'SUCCESS',
        records: f.good,
        rejected: f.bad,
      });
      expect((await p.series(f.key, f.name))?.count).toBe(f.good);
    }
    const scores = await p.scoreRecords();
    const ids = new Set(scores.map((s) => s.id));
    const good = files.reduce((n, f) => n + f.good, 0);
    expect(scores).toHaveLength(good);
    expect(ids.size).toBe(good);
    expect(await p.queueDepth('fileEventsDlq')).toBe(0);
    expect(await p.queueDepth('signalsDlq')).toBe(0);
    // The faults really happened, on every service, before and after the emulator.
    for (const service of ['dynamodb', 'sqs', 's3']) {
      expect(proxy.stats[service]?.before ?? 0, JSON.stringify(proxy.stats)).toBeGreaterThan(0);
    }
    for (const service of ['dynamodb', 'sqs', 's3'])
      expect(proxy.stats[service]?.after ?? 0).toBeGreaterThan(0);
  });
});
