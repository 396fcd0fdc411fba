import { PutObjectCommand } from '@aws-sdk/client-s3';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { uniquePrefix } from '../../local/runtime/names.ts';
import { type FaultProxy, startFaultProxy } from '../helpers/fault-proxy.ts';
import { startS3TriggerWorkerVia, type Worker } from '../helpers/workers.ts';
import { csvFile, setUpPipeline, waitFor } from '../integration/pipeline.ts';
import { expectExactlyOnce, goodRows, type Pipeline, s3Ids } from './invariants.ts';

/**
 * A worker killed with SIGKILL (a real child process: no finally block, no ledger write, no message
 * release) in the middle of a file leaves its ledger item PROCESSING and its event in flight. Once the
 * lease and the visibility timeout expire, another worker claims the file again (attempt 2) and
 * re-sends every row with the same ids; the scorer drops the repeats.
 */
describe('s3-trigger killed mid-file', () => {
  let p: Pipeline;
  let slow: FaultProxy;
  let worker: Worker | undefined;

  beforeAll(async () => {
    const moto = inject('motoEndpoint');
    p = await setUpPipeline(moto, uniquePrefix('rcrash'), {
      leaseSeconds: 2,
      heartbeatSeconds: 1,
      visibility: { fileEvents: 3, signals: 4 },
    });
    // The child's calls go through a proxy adding latency: a window of seconds to kill it mid-file.
    slow = await startFaultProxy({ target: moto, before: 0, after: 0, delayMs: 60, seed: 1 });
  });
  afterAll(async () => {
    await worker?.kill();
    await p?.stopAll();
    await slow?.close();
  });

  it('finishes the file in a second attempt after SIGKILL and lease expiry: each row scored once', async () => {
    // Prepare
    const key = 'incoming/rcrash/killed.csv';
    const file = csvFile(3000, { name: 'rcrash', badEvery: 250 });
    worker = await startS3TriggerWorkerVia(p, slow.url, {
      SIGNALS_MAX_MESSAGE_BYTES: '4096',
    });

    // Act: the worker takes the file; kill it once its first signals are on the queue.
    const put = await p.clients.s3.send(
      new PutObjectCommand({ Bucket: p.names.bucket, Key: key, Body: file.text }),
    );
    const etag = put.ETag?.replace(/"/g, '') ?? '';
    await waitFor('the worker to start sending', async () => (await p.queueDepth('signals')) > 0, 30_000);
    expect(await worker.kill()).toBe('SIGKILL');
    const mid = (await p.ledgerItems()).find((i) => i.key === key);
    expect(mid).toMatchObject({ status: 'PROCESSING', attempts: 1 });
    p.start('fileEvents');
    p.start('signals');
    const done = await waitFor(
      'another worker to finish the file',
      async () => {
        const item = (await p.ledgerItems()).find((i) => i.key === key);
        return item?.status === 'SUCCESS' ? item : undefined;
      },
      60_000,
    );
    await waitFor(
      'every row scored and the queue drained',
      async () =>
        ((await p.series(key, 'rcrash'))?.count ?? 0) >= file.good && (await p.queueDepth('signals')) === 0,
      120_000,
    );

    // Assess
    expect(done).toMatchObject({ attempts: 2, records: file.good, rejected: file.bad });
    const rows = goodRows(3000, 250);
    const bad = [250, 500, 750, 1000, 1250, 1500, 1750, 2000, 2250, 2500, 2750, 3000];
    await expectExactlyOnce(p, {
      scope: (s) => s.originRef.includes(`/${key}@`),
      scoredIds: s3Ids(p.names.bucket, key, etag, rows),
      series: [{ source: key, name: 'rcrash', count: file.good }],
      ledgerKeys: (k) => k === key,
      quarantine: { under: 's3/', refs: s3Ids(p.names.bucket, key, etag, bad) },
    });
  });
});
