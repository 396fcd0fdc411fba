import { type ChildProcess, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { once } from 'node:events';
import { PutObjectCommand } from '@aws-sdk/client-s3';
import { afterAll, describe, expect, inject, it } from 'vitest';
import { csvFile, setUpPipeline, waitFor } from './pipeline.ts';

/**
 * A worker killed (SIGKILL, not a thrown error) in the middle of a file leaves the ledger item
 * PROCESSING; once its lease expires and the event comes back, another worker finishes the file, and
 * every row is scored exactly once.
 */
describe('crash mid-file (moto)', () => {
  let p: Awaited<ReturnType<typeof setUpPipeline>>;
  let child: ChildProcess | undefined;

  afterAll(async () => {
    child?.kill('SIGKILL');
    await p?.stopAll();
  });

  it('completes a file once after the worker that held it was killed', async () => {
    // Prepare
    p = await setUpPipeline(inject('motoEndpoint'), `crash${randomBytes(3).toString('hex')}`, {
      leaseSeconds: 2,
      heartbeatSeconds: 1,
      visibility: { fileEvents: 4, signals: 4 },
    });
    const file = csvFile(12_000, { name: 'crash' });
    child = spawn(
      process.execPath,
      [
        '--import',
        'tsx',
        'test/integration/workers/s3-trigger-worker.ts',
        p.resources.queues.fileEvents.url,
        p.resources.queues.fileEvents.arn,
      ],
      // Small messages make many SendMessageBatch calls: a wide window to kill the worker mid-file.
      {
        env: { ...process.env, ...p.env, SIGNALS_MAX_MESSAGE_BYTES: '4096' },
        stdio: ['ignore', 'pipe', 'inherit'],
      },
    );
    const [ready] = await Promise.race([
      once(child.stdout as NodeJS.ReadableStream, 'data'),
      once(child, 'exit'),
    ]);
    expect(String(ready)).toContain('ready');

    // Act: drop the file, kill the worker as soon as its first signals are on the queue.
    await p.clients.s3.send(
      new PutObjectCommand({ Bucket: p.names.bucket, Key: 'incoming/crash.csv', Body: file.text }),
    );
    await waitFor('the worker to start sending', async () => (await p.queueDepth('signals')) > 0, 30_000);
    child.kill('SIGKILL');
    await once(child, 'exit');
    const mid = (await p.ledgerItems()).find((i) => i.key === 'incoming/crash.csv');
    expect(mid?.status).toBe('PROCESSING');

    p.start('fileEvents');
    p.start('signals');

    // Assess
    const done = await waitFor(
      'the file to be finished by another worker',
      async () => {
        const i = (await p.ledgerItems()).find((x) => x.key === 'incoming/crash.csv');
        return i?.status === 'SUCCESS' ? i : undefined;
      },
      90_000,
    );
    expect(done).toMatchObject({ records: file.good, attempts: 2 });
    await waitFor(
      'every row scored',
      async () => ((await p.series('incoming/crash.csv', 'crash'))?.count ?? 0) >= file.good,
      120_000,
    );
    await new Promise((r) => setTimeout(r, 2000));
    const scores = (await p.scoreRecords()).filter((x) => x.name === 'crash');
    expect(scores).toHaveLength(file.good);
    expect(new Set(scores.map((s) => s.id)).size).toBe(file.good);
    expect((await p.series('incoming/crash.csv', 'crash'))?.count).toBe(file.good);
  }, 300_000);
});
