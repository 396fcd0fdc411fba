import { CopyObjectCommand, PutObjectCommand } from '@aws-sdk/client-s3';
import { PurgeQueueCommand } from '@aws-sdk/client-sqs';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { METRIC } from '#shared/contract.ts';
import { settings } from '#shared/settings.ts';
import { sweepLedger } from '../../functions/s3-trigger/sweep.ts';
import { uniquePrefix } from '../../local/runtime/names.ts';
import { type FaultProxy, startFaultProxy } from '../helpers/fault-proxy.ts';
import { quietObservability } from '../helpers/observability.ts';
import { startS3TriggerWorkerVia, type Worker } from '../helpers/workers.ts';
import { csvFile, setUpPipeline, waitFor } from '../integration/pipeline.ts';
import { expectExactlyOnce, goodRows, type Pipeline, s3Ids } from './invariants.ts';

/**
 * A worker killed with SIGKILL mid-file whose event is then lost (the file-events queue purged, as an
 * operator might): nothing will ever claim the file again, and it sits PROCESSING with an expired lease.
 * Nothing failed, so no DLQ, error or FilesFailed alarm says so: the ledger sweep's FilesStuck does.
 * Re-notifying the object (copied onto itself) brings it back; the next attempt finishes it with the same
 * ids, and the sweep finds nothing stuck any more.
 */
describe('a file stuck PROCESSING after its worker died and its event was lost', () => {
  let p: Pipeline;
  let slow: FaultProxy;
  let worker: Worker | undefined;

  beforeAll(async () => {
    const moto = inject('motoEndpoint');
    p = await setUpPipeline(moto, uniquePrefix('rstuck'), {
      leaseSeconds: 2,
      heartbeatSeconds: 1,
      visibility: { fileEvents: 3, signals: 4 },
    });
    slow = await startFaultProxy({ target: moto, before: 0, after: 0, delayMs: 60, seed: 2 });
  });
  afterAll(async () => {
    await worker?.kill();
    await p?.stopAll();
    await slow?.close();
  });

  const sweep = (obs: ReturnType<typeof quietObservability>) =>
    sweepLedger({
      ...p.clients,
      logger: obs.logger,
      metrics: obs.metrics,
      // As the offline runtime shortens it: the visibility timeout (3 s) plus the lease (2 s).
      config: {
        ledgerTable: p.names.ledgerTable,
        bucket: p.names.bucket,
        maxAttempts: 3,
        processingStuckSeconds: 5,
        splitStuckSeconds: 3600,
        canaryGraceSeconds: 3600,
        exhaustedLookbackHours: settings.sweep.exhaustedLookbackHours,
        maxItemsPerStatus: settings.sweep.maxItemsPerStatus,
        pageSize: settings.sweep.pageSize,
      },
    });

  it('is reported by FilesStuckProcessing until it is re-notified, then ingested once', async () => {
    // Prepare: a worker (own process, slowed by a proxy) takes the file
    const key = 'incoming/rstuck/orphan.csv';
    const file = csvFile(2000, { name: 'rstuck', badEvery: 400 });
    worker = await startS3TriggerWorkerVia(p, slow.url, { SIGNALS_MAX_MESSAGE_BYTES: '4096' });
    const put = await p.clients.s3.send(
      new PutObjectCommand({ Bucket: p.names.bucket, Key: key, Body: file.text }),
    );
    const etag = put.ETag?.replace(/"/g, '') ?? '';
    await waitFor('the worker to start sending', async () => (await p.queueDepth('signals')) > 0, 30_000);

    // Act 1: the worker dies, and its event is lost with the queue
    expect(await worker.kill()).toBe('SIGKILL');
    await p.clients.sqs.send(new PurgeQueueCommand({ QueueUrl: p.resources.queues.fileEvents.url }));
    p.start('signals');
    await new Promise((r) => setTimeout(r, 6000));
    const obsStuck = quietObservability();
    const stuck = await sweep(obsStuck);

    // Act 2: the object is re-notified (copied onto itself: same content, same ETag, a new version)
    p.start('fileEvents');
    await p.clients.s3.send(
      new CopyObjectCommand({
        Bucket: p.names.bucket,
        Key: key,
        CopySource: `${p.names.bucket}/${key}`,
        MetadataDirective: 'REPLACE',
        Metadata: { renotified: 'stuck' },
      }),
    );
    const done = await waitFor(
      'the file to be finished by a second attempt',
      async () => {
        const item = (await p.ledgerItems()).find((i) => i.key === key);
        return item?.status === 'SUCCESS' ? item : undefined;
      },
      60_000,
    );
    await waitFor(
      'every row scored and the queue drained',
      async () =>
        ((await p.series(key, 'rstuck'))?.count ?? 0) >= file.good && (await p.queueDepth('signals')) === 0,
      120_000,
    );
    const obsClear = quietObservability();
    const clear = await sweep(obsClear);

    // Assess: reported while stuck, by key, with nothing else in alarm
    expect(stuck.stuck).toEqual({ processing: 1, split: 0, discovered: 0, exhausted: 0 });
    expect(stuck.samples).toEqual([
      expect.objectContaining({ kind: 'processing', key, etag, status: 'PROCESSING', attempts: 1 }),
    ]);
    expect(obsStuck.recorded[METRIC.filesStuck]).toEqual([1]);
    expect(obsStuck.recorded[METRIC.filesStuckProcessing]).toEqual([1]);
    expect(await p.queueDepth('fileEventsDlq')).toBe(0);
    // ... and no longer once it was re-notified and finished, each row scored once
    expect(done).toMatchObject({ attempts: 2, records: file.good, rejected: file.bad });
    expect(clear.total).toBe(0);
    expect(obsClear.recorded[METRIC.filesStuck]).toEqual([0]);
    const bad = Array.from({ length: 5 }, (_, i) => (i + 1) * 400);
    await expectExactlyOnce(p, {
      scope: (s) => s.originRef.includes(`/${key}@`),
      scoredIds: s3Ids(p.names.bucket, key, etag, goodRows(2000, 400)),
      series: [{ source: key, name: 'rstuck', count: file.good }],
      ledgerKeys: (k) => k === key,
      quarantine: { under: 's3/', refs: s3Ids(p.names.bucket, key, etag, bad) },
    });
  });
});
