import { existsSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PutObjectCommand } from '@aws-sdk/client-s3';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type MotoServer, startMoto } from '../../local/emulators/moto.ts';
import { uniquePrefix } from '../../local/runtime/names.ts';
import { csvFile, setUpPipeline, waitFor } from '../integration/pipeline.ts';
import { expectExactlyOnce, goodRows, type Pipeline, s3Ids } from './invariants.ts';

/**
 * The emulator itself goes away mid-run: a moto server of this test's own (own port, own state file,
 * so no other test notices) is stopped with SIGTERM while signals are being scored — it writes its S3,
 * SQS and DynamoDB state to the file (scripts/moto_server.py) — and started again on the same port from
 * that file. Calls made while it is down fail and are retried by the SDK, the event sources and SQS
 * redelivery; calls it applied after writing its state are lost with it, which looks to the pipeline
 * like lost responses and lost deletes: redelivered work, dropped as duplicates. The run ends with
 * every record scored exactly once.
 */
describe('moto restarted mid-run (state persisted across the restart)', () => {
  const prefix = uniquePrefix('rmoto');
  const stateFile = join(tmpdir(), `pulse-${prefix}.moto-state`);
  let first: MotoServer | undefined;
  let second: MotoServer | undefined;
  let p: Pipeline;

  beforeAll(async () => {
    first = await startMoto({ stateFile });
    p = await setUpPipeline(first.endpoint, prefix, {
      leaseSeconds: 3,
      heartbeatSeconds: 1,
      visibility: { fileEvents: 3, signals: 3 },
    });
  });
  afterAll(async () => {
    await p?.stopAll();
    await second?.stop();
    await first?.stop();
    rmSync(stateFile, { force: true });
  });

  it('scores every record exactly once when the emulator is restarted while a file is being scored', async () => {
    // Prepare
    const key = 'incoming/rmoto/restart.csv';
    const file = csvFile(2400, { name: 'rmoto', badEvery: 300 });
    p.start('fileEvents');
    p.start('signals');
    const put = await p.clients.s3.send(
      new PutObjectCommand({ Bucket: p.names.bucket, Key: key, Body: file.text }),
    );
    const etag = put.ETag?.replace(/"/g, '') ?? '';
    await waitFor('scoring under way', async () => ((await p.series(key, 'rmoto'))?.count ?? 0) > 0, 60_000);

    // Act: SIGTERM (state written), then the same port again from the state file.
    const server = first as MotoServer;
    await server.stop();
    const countAtStop = await p.series(key, 'rmoto').then(
      () => 'answered',
      () => 'down',
    );
    second = await startMoto({ port: server.port, stateFile });
    const done = await waitFor(
      'the file settled and every row scored',
      async () => {
        const item = (await p.ledgerItems()).find((i) => i.key === key);
        return item?.status === 'SUCCESS' &&
          ((await p.series(key, 'rmoto'))?.count ?? 0) >= file.good &&
          (await p.queueDepth('signals')) + (await p.queueDepth('fileEvents')) === 0
          ? item
          : undefined;
      },
      120_000,
    );

    // Assess: the server really went away and came back with its state.
    expect(countAtStop).toBe('down');
    expect(existsSync(stateFile)).toBe(true);
    expect(second.pid).not.toBe(server.pid);
    expect(done).toMatchObject({ records: file.good, rejected: file.bad });
    await expectExactlyOnce(p, {
      scope: (s) => s.originRef.includes(`/${key}@`),
      scoredIds: s3Ids(p.names.bucket, key, etag, goodRows(2400, 300)),
      series: [{ source: key, name: 'rmoto', count: file.good }],
      ledgerKeys: (k) => k === key,
      quarantine: {
        under: `s3/${p.names.bucket}/${key}`,
        refs: s3Ids(p.names.bucket, key, etag, [300, 600, 900, 1200, 1500, 1800, 2100, 2400]),
      },
    });
  });
});
