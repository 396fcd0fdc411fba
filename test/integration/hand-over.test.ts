import { randomBytes } from 'node:crypto';
import { PutObjectCommand } from '@aws-sdk/client-s3';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { csvFile, setUpPipeline, waitFor } from './pipeline.ts';

/**
 * A long file near its invocation's timeout (moto): the s3-trigger checkpoints, hands the file over and
 * sends a continuation to its own queue; fresh invocations go on from each checkpoint until the file is
 * done. The timeout and margin are set so that every invocation hands over after 0.15 s, well short of
 * the time the file takes (1 MB: a claim, then about 0.2 s of parsing alone on this machine).
 */
describe('a long file handed over to continuations before the timeout (moto)', () => {
  let p: Awaited<ReturnType<typeof setUpPipeline>>;

  beforeAll(async () => {
    // Read by the handler when setUpPipeline imports it: a 6 s function that hands over with 5.85 s left.
    process.env.LEDGER_CHECKPOINT_SECONDS = '1';
    process.env.HAND_OVER_BEFORE_TIMEOUT_SECONDS = '5.85';
    p = await setUpPipeline(inject('motoEndpoint'), `hand${randomBytes(3).toString('hex')}`, {
      leaseSeconds: 30,
      heartbeatSeconds: 1,
      s3TriggerTimeoutSeconds: 6,
    });
  });
  afterAll(async () => {
    await p?.stopAll();
  });

  it('goes on in fresh invocations until done: one attempt, every row scored once, rejects kept', async () => {
    // Prepare
    const rows = 20_000;
    const file = csvFile(rows, { name: 'hand_over', badEvery: 101 });
    const key = 'incoming/hand-over.csv';
    await p.clients.s3.send(
      new PutObjectCommand({ Bucket: p.names.bucket, Key: key, Body: Buffer.from(file.text) }),
    );
    // Act
    p.start('fileEvents');
    p.start('signals');
    const done = await waitFor(
      'the file SUCCESS',
      async () => (await p.ledgerItems()).find((i) => i.key === key && i.status === 'SUCCESS'),
      240_000,
    );
    await waitFor(
      'every valid row scored',
      async () => ((await p.series('incoming/hand-over.csv', 'hand_over'))?.count ?? 0) >= file.good,
      240_000,
    );
    // A transaction counts its rows in the series when it commits; the score object it wrote as pending is
    // promoted right after (docs/scoring.md): wait for the last promotions too.
    const ownScores = async () =>
      (await p.scoreRecords()).filter((s) => s.id.startsWith(`s3://${p.names.bucket}/${key}@`));
    await waitFor(
      'every score object promoted',
      async () => (await ownScores()).length >= file.good && (await p.queueDepth('signals')) === 0,
      60_000,
    );
    // Assess
    expect(done.handOvers ?? 0).toBeGreaterThanOrEqual(1);
    // Hand-overs do not use up attempts: the file is done in its first.
    expect(done.attempts).toBe(1);
    expect(done.records).toBe(file.good);
    expect(done.rejected).toBe(file.bad);
    expect(done.resumedFrom).toBeDefined();
    const scores = await ownScores();
    expect(scores).toHaveLength(file.good);
    expect(new Set(scores.map((s) => s.id)).size).toBe(file.good);
    expect((await p.series('incoming/hand-over.csv', 'hand_over'))?.count).toBe(file.good);
    expect(await p.queueDepth('fileEventsDlq')).toBe(0);
    expect(await p.queueDepth('signalsDlq')).toBe(0);
  }, 300_000);
});
