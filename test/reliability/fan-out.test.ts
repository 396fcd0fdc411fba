import { PutObjectCommand } from '@aws-sdk/client-s3';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import type { LedgerItem } from '#shared/ledger.ts';
import { uniquePrefix } from '../../local/runtime/names.ts';
import { type FaultProxy, startFaultProxy } from '../helpers/fault-proxy.ts';
import { startS3TriggerWorkerVia, type Worker } from '../helpers/workers.ts';
import { csvFile, setUpPipeline, waitFor } from '../integration/pipeline.ts';
import { expectExactlyOnce, goodRows, type Pipeline, s3Ids } from './invariants.ts';

/** Metrics a worker printed (EMF on stdout), summed by name. */
function emittedMetrics(output: readonly string[]): Record<string, number> {
  const sums: Record<string, number> = {};
  for (const line of output) {
    if (!line.includes('"_aws"')) continue;
    const emf = JSON.parse(line) as { _aws: { CloudWatchMetrics: { Metrics: { Name: string }[] }[] } };
    for (const { Name } of emf._aws.CloudWatchMetrics.flatMap((m) => m.Metrics)) {
      const value = (emf as unknown as Record<string, number | number[]>)[Name];
      for (const v of Array.isArray(value) ? value : [value ?? 0]) sums[Name] = (sums[Name] ?? 0) + v;
    }
  }
  return sums;
}

/**
 * A split file whose part worker is killed with SIGKILL mid-part: the part's item stays PROCESSING and its
 * message in flight; once the lease and the visibility timeout expire, another worker claims that part
 * again (attempt 2) and re-sends its rows with the same ids. The other parts are not touched again, the
 * part is counted once on its file, and the file ends SUCCESS with exact totals.
 */
/**
 * A split file whose parts run in a worker process, and one part of which S3 never serves: every ranged
 * GET of the last part's bytes fails (503 SlowDown, after the SDK's own retries) on each of its attempts.
 */
describe('a part of a split file killed mid-part, and a part whose reads always fail', () => {
  let p: Pipeline;
  let slow: FaultProxy;
  let worker: Worker | undefined;

  beforeAll(async () => {
    // Read by the handlers (the in-process one and the worker's): files of 20 kB and more, parts of ~80 kB.
    process.env.FAN_OUT_MIN_BYTES = '20000';
    process.env.FAN_OUT_PART_BYTES = '80000';
    const moto = inject('motoEndpoint');
    p = await setUpPipeline(moto, uniquePrefix('rfan'), {
      leaseSeconds: 2,
      heartbeatSeconds: 1,
      visibility: { fileEvents: 3, signals: 4 },
    });
    // The worker's calls go through a proxy adding latency: a window of seconds to kill it mid-part.
    slow = await startFaultProxy({ target: moto, before: 0, after: 0, delayMs: 150, seed: 3 });
  });
  afterAll(async () => {
    await worker?.kill();
    await p?.stopAll();
    await slow?.close();
    delete process.env.FAN_OUT_MIN_BYTES;
    delete process.env.FAN_OUT_PART_BYTES;
  });

  it('finishes the killed part in a second attempt: the file SUCCESS, each row scored once', async () => {
    // Prepare: 6,000 rows (about 240 kB: three parts), every 250th bad.
    const key = 'incoming/rfan/split.csv';
    const rows = 6000;
    const file = csvFile(rows, { name: 'rfan', badEvery: 250 });
    worker = await startS3TriggerWorkerVia(p, slow.url, {
      SIGNALS_MAX_MESSAGE_BYTES: '2048',
    });

    // Act: the worker splits the file and takes a part; kill it once that part is sending.
    const put = await p.clients.s3.send(
      new PutObjectCommand({ Bucket: p.names.bucket, Key: key, Body: file.text }),
    );
    const etag = put.ETag?.replace(/"/g, '') ?? '';
    const parts = async (): Promise<LedgerItem[]> =>
      (await p.ledgerItems()).filter((i) => i.key === key && i.part !== undefined);
    const running = await waitFor(
      'a part being sent',
      async () =>
        (await p.queueDepth('signals')) > 0 && (await parts()).find((i) => i.status === 'PROCESSING'),
      60_000,
    );
    expect(await worker.kill()).toBe('SIGKILL');
    p.start('fileEvents');
    p.start('signals');
    const done = await waitFor(
      'the file SUCCESS',
      async () => {
        const item = (await p.ledgerItems()).find((i) => i.key === key && i.part === undefined);
        return item?.status === 'SUCCESS' ? item : undefined;
      },
      120_000,
    );
    await waitFor(
      'every row scored and the queue drained',
      async () =>
        ((await p.series(key, 'rfan'))?.count ?? 0) >= file.good && (await p.queueDepth('signals')) === 0,
      120_000,
    );

    // Assess
    const all = await parts();
    expect(all.length).toBeGreaterThanOrEqual(3);
    expect(done).toMatchObject({
      parts: all.length,
      partsDone: all.length,
      partsFailed: 0,
      records: file.good,
      rejected: file.bad,
    });
    expect(all.every((i) => i.status === 'SUCCESS')).toBe(true);
    expect(all.find((i) => i.part === running.part)?.attempts).toBe(2);
    const bad = Array.from({ length: rows / 250 }, (_, i) => (i + 1) * 250);
    await expectExactlyOnce(p, {
      scope: (s) => s.originRef.includes(`/${key}@`),
      scoredIds: s3Ids(p.names.bucket, key, etag, goodRows(rows, 250)),
      series: [{ source: key, name: 'rfan', count: file.good }],
      ledgerKeys: (k) => k === key,
      quarantine: { under: 's3/', refs: s3Ids(p.names.bucket, key, etag, bad) },
    });
  });

  it('ends a part whose reads fail transiently on every attempt FAILED for good, counted on its file, which ends FAILED', async () => {
    // Prepare: 6,000 rows in three parts, every 250th bad; the last part's ranged GETs always fail.
    await p.stopAll();
    await worker?.kill();
    const key = 'incoming/rfan/exhausted.csv';
    const rows = 6000;
    const file = csvFile(rows, { name: 'rfanx', badEvery: 250 });
    const size = Buffer.byteLength(file.text);
    const lastPartRead = (headers: Readonly<Record<string, string | string[] | undefined>>) => {
      const m = /^bytes=(\d+)-(\d+)$/.exec(String(headers.range ?? ''));
      return m !== null && Number(m[1]) > 0 && Number(m[2]) === size - 1;
    };
    const failing = await startFaultProxy({
      target: inject('motoEndpoint'),
      before: 0,
      after: 0,
      seed: 4,
      failWhen: (call) =>
        call.service === 's3' &&
        call.operation.startsWith(`GET /${p.names.bucket}/${key}`) &&
        lastPartRead(call.headers)
          ? 503
          : undefined,
    });
    worker = await startS3TriggerWorkerVia(p, failing.url, {
      SIGNALS_MAX_MESSAGE_BYTES: '8192',
      POWERTOOLS_METRICS_DISABLED: 'false',
    });
    p.start('signals');

    // Act
    const put = await p.clients.s3.send(
      new PutObjectCommand({ Bucket: p.names.bucket, Key: key, Body: file.text }),
    );
    const etag = put.ETag?.replace(/"/g, '') ?? '';
    const ended = await waitFor(
      'the file ended',
      async () => {
        const item = (await p.ledgerItems()).find((i) => i.key === key && i.part === undefined);
        return item?.status === 'SUCCESS' || item?.status === 'FAILED' ? item : undefined;
      },
      120_000,
    );
    const parts = (await p.ledgerItems())
      .filter((i) => i.key === key && i.part !== undefined)
      .sort((a, b) => Number(a.part) - Number(b.part));
    const last = parts.at(-1) as LedgerItem;
    const rowsRead = Number(last.range?.row);
    const good = goodRows(rowsRead, 250);
    await waitFor(
      'the rows of the other parts scored, the queues drained',
      async () =>
        ((await p.series(key, 'rfanx'))?.count ?? 0) >= good.length &&
        (await p.queueDepth('signals')) + (await p.queueDepth('fileEvents')) === 0,
      60_000,
    );
    await worker.kill();
    await failing.close();

    // Assess: the part FAILED for good in its third and last attempt with S3's error, counted on its file,
    // which ended FAILED naming it; nothing left PROCESSING or SPLIT, the event acknowledged (no DLQ).
    expect(parts).toHaveLength(3);
    expect(failing.stats.s3?.ruled ?? 0).toBeGreaterThanOrEqual(3);
    expect(last).toMatchObject({
      status: 'FAILED',
      retryable: false,
      attempts: 3,
      errorType: 'SlowDown',
      errorMessage: expect.stringMatching(/still failing after 3 attempts/),
    });
    expect(parts.slice(0, 2).map((i) => i.status)).toEqual(['SUCCESS', 'SUCCESS']);
    expect(ended).toMatchObject({
      status: 'FAILED',
      retryable: false,
      parts: 3,
      partsDone: 3,
      partsFailed: 1,
      records: good.length,
      errorMessage: expect.stringMatching(/^1 of 3 parts failed; part 2 /),
    });
    expect(emittedMetrics(worker.output).FilesFailed).toBe(1);
    const bad = Array.from({ length: Math.floor(rowsRead / 250) }, (_, i) => (i + 1) * 250);
    const { quarantined } = await expectExactlyOnce(p, {
      scope: (s) => s.originRef.includes(`/${key}@`),
      scoredIds: s3Ids(p.names.bucket, key, etag, good),
      series: [{ source: key, name: 'rfanx', count: good.length }],
      ledgerKeys: (k) => k === key,
      quarantine: {
        under: `s3/${p.names.bucket}/${key}`,
        refs: [...s3Ids(p.names.bucket, key, etag, bad), `s3://${p.names.bucket}/${key}@${etag}`],
      },
    });
    expect(quarantined.find((l) => !l.ref.includes('#'))?.reason).toMatch(/^part 2 failed: SlowDown: /);
  });
});
