import { PutObjectCommand } from '@aws-sdk/client-s3';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { uniquePrefix } from '../../local/runtime/names.ts';
import { type FaultProxy, startFaultProxy } from '../helpers/fault-proxy.ts';
import { csvFile, setUpPipeline, waitFor } from '../integration/pipeline.ts';
import { expectExactlyOnce, goodRows, type Pipeline, s3Ids } from './invariants.ts';

/**
 * Throttling, not failure: a fifth of the handlers' calls answered with the service's throttling error
 * (400 ProvisionedThroughputExceededException / ThrottlingException from DynamoDB, 400
 * ThrottlingException from SQS, 503 SlowDown from S3), nothing applied. The SDK retries them as
 * throttles; what still fails after its retries fails the message, which comes back.
 */
describe('throttling on DynamoDB, SQS and S3', () => {
  let p: Pipeline;
  let proxy: FaultProxy;

  beforeAll(async () => {
    const moto = inject('motoEndpoint');
    proxy = await startFaultProxy({ target: moto, before: 0, after: 0, throttle: 0.2, seed: 20261201 });
    p = await setUpPipeline(moto, uniquePrefix('rthrot'), {
      handlerEndpoint: proxy.url,
      leaseSeconds: 3,
      heartbeatSeconds: 1,
    });
  });
  afterAll(async () => {
    await p?.stopAll();
    await proxy?.close();
  });

  it('scores every record once and ends every file SUCCESS while a fifth of all calls are throttled', async () => {
    // Prepare
    const files = Array.from({ length: 3 }, (_, i) => ({
      key: `incoming/rthrot-${i}.csv`,
      name: `rthrot_${i}`,
      ...csvFile(400, { name: `rthrot_${i}`, badEvery: 100 }),
    }));
    p.start('fileEvents');
    p.start('signals');

    // Act
    const etags: string[] = [];
    for (const f of files) {
      const out = await p.clients.s3.send(
        new PutObjectCommand({ Bucket: p.names.bucket, Key: f.key, Body: f.text }),
      );
      etags.push(out.ETag?.replace(/"/g, '') ?? '');
    }
    await waitFor(
      'every file settled and every series complete',
      async () => {
        const items = (await p.ledgerItems()).filter((i) => i.key.startsWith('incoming/rthrot-'));
        if (items.length < files.length || items.some((i) => i.status !== 'SUCCESS')) return false;
        const counts = await Promise.all(files.map((f) => p.series(f.key, f.name)));
        return counts.every((c, i) => (c?.count ?? 0) >= (files[i]?.good ?? 0));
      },
      180_000,
    );
    await waitFor('signals queue drained', async () => (await p.queueDepth('signals')) === 0, 60_000);

    // Assess
    const bucket = p.names.bucket;
    const { ledger } = await expectExactlyOnce(p, {
      scope: (s) => s.originRef.includes('/incoming/rthrot-'),
      scoredIds: files.flatMap((f, i) => s3Ids(bucket, f.key, etags[i] ?? '', goodRows(400, 100))),
      series: files.map((f) => ({ source: f.key, name: f.name, count: f.good })),
      ledgerKeys: (k) => k.startsWith('incoming/rthrot-'),
      quarantine: {
        under: `s3/${bucket}/incoming/rthrot-`,
        refs: files.flatMap((f, i) => s3Ids(bucket, f.key, etags[i] ?? '', [100, 200, 300, 400])),
      },
    });
    for (const f of files) {
      expect(ledger.find((i) => i.key === f.key)).toMatchObject({ records: f.good, rejected: f.bad });
    }
    for (const service of ['dynamodb', 'sqs', 's3']) {
      expect(proxy.stats[service]?.throttled ?? 0, JSON.stringify(proxy.stats)).toBeGreaterThan(0);
    }
  });
});
