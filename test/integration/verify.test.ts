import { randomBytes } from 'node:crypto';
import { DeleteObjectCommand, PutObjectCommand } from '@aws-sdk/client-s3';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { storedReceipt, storeReceipt } from '#shared/receipt-store.ts';
import { settings } from '#shared/settings.ts';
import { verify, verifyExitCode } from '../../local/commands/verify.ts';
import { csvFile, setUpPipeline, waitFor } from './pipeline.ts';

/**
 * `pulse verify` offline: a file dropped into the pipeline (moto, the real handlers) balances — every row
 * read is scored or quarantined — and stops balancing, with the rows named, once a score object or the
 * file's rejects object is deleted by hand.
 */
describe('pulse verify (moto)', () => {
  let p: Awaited<ReturnType<typeof setUpPipeline>>;
  const key = 'incoming/verify.csv';
  const file = csvFile(300, { name: 'verify_csv', badEvery: 40 });

  beforeAll(async () => {
    p = await setUpPipeline(inject('motoEndpoint'), `ver${randomBytes(3).toString('hex')}`);
    p.start('fileEvents');
    p.start('signals');
    await p.clients.s3.send(new PutObjectCommand({ Bucket: p.names.bucket, Key: key, Body: file.text }));
    // Promoted too: a pending object left beside a final one would still account for its rows.
    await waitFor(
      'every valid row scored, and every score object promoted',
      async () =>
        (await p.scoreRecords()).filter((r) => r.ref.includes(`/${key}@`)).length >= file.good &&
        (await p.scoreObjects(settings.scores.pendingPrefix)).length === 0,
    );
    await p.stopAll();
  });
  afterAll(async () => {
    await p?.stopAll();
  });

  it('balances a clean run: rows read = rows scored + rows quarantined', async () => {
    // Act
    const receipts = await verify(p.target, { key });
    // Assess
    expect(receipts).toHaveLength(1);
    expect(receipts[0]).toMatchObject({
      key,
      status: 'SUCCESS',
      read: 300,
      scored: file.good,
      quarantined: file.bad,
      missing: 0,
      missingRows: [],
      verdict: 'ok',
    });
    expect(verifyExitCode(receipts)).toBe(0);
    expect(await verify(p.target, { since: new Date(Date.now() - 3_600_000) })).toEqual(receipts);
  });

  it('stores the receipt on the ledger item, touching no status, lease or updatedAt, and never an older over a newer', async () => {
    // Prepare
    const before = (await p.ledgerItems()).find((i) => i.pk.endsWith(`/${key}`));
    const at = new Date();
    // Act
    const [receipt] = await verify(p.target, { key }, at);
    const after = (await p.ledgerItems()).find((i) => i.pk.endsWith(`/${key}`)) as unknown as Record<
      string,
      unknown
    >;
    const older = storedReceipt(
      { ...(receipt as NonNullable<typeof receipt>), verdict: 'mismatch', missing: 1, missingRows: [1] },
      new Date(at.getTime() - 60_000),
      'an older run',
    );
    const outcome = await storeReceipt(p.clients.doc, p.names.ledgerTable, after as never, older);
    const kept = (await p.ledgerItems()).find((i) => i.pk.endsWith(`/${key}`)) as unknown as Record<
      string,
      unknown
    >;
    // Assess
    expect(after.receipt).toMatchObject({
      at: at.toISOString(),
      by: 'pulse verify',
      status: 'SUCCESS',
      read: 300,
      scored: file.good,
      quarantined: file.bad,
      ok: true,
      missing: { count: 0, rows: [] },
    });
    // The first test's verify stored a receipt already: all else is as before.
    const { receipt: _, ...rest } = after;
    const { receipt: __, ...restBefore } = before as unknown as Record<string, unknown>;
    expect(rest).toEqual(restBefore);
    expect(outcome).toBe('stale');
    expect(kept.receipt).toEqual(after.receipt);
  });

  it('lists the rows of a score object deleted by hand, then those of the rejects object removed', async () => {
    // Prepare
    const records = (await p.scoreRecords()).filter((r) => r.ref.includes(`/${key}@`));
    const victim = records[0]?.object as string;
    // One transaction's object: some of the file's rows, or all of them.
    const lost = records
      .filter((r) => r.object === victim)
      .map((r) => Number(r.ref.slice(r.ref.lastIndexOf('#') + 1)))
      .sort((a, b) => a - b);
    await p.clients.s3.send(new DeleteObjectCommand({ Bucket: p.names.scoresBucket, Key: victim }));
    // Act
    const [afterScore] = await verify(p.target, { key });
    // Assess
    expect(afterScore).toMatchObject({
      verdict: 'mismatch',
      scored: file.good - lost.length,
      missing: lost.length,
      missingRows: lost.slice(0, 100),
      appliedWithoutScore: lost.slice(0, 100),
    });
    expect(verifyExitCode(afterScore ? [afterScore] : [])).toBe(2);
    const stored = (await p.ledgerItems()).find((i) => i.pk.endsWith(`/${key}`)) as unknown as {
      receipt: unknown;
    };
    expect(stored.receipt).toMatchObject({
      ok: false,
      missing: { count: lost.length, rows: lost.slice(0, 10) },
    });

    // Prepare
    const item = (await p.ledgerItems()).find((i) => i.pk.endsWith(`/${key}`));
    await p.clients.s3.send(
      new DeleteObjectCommand({ Bucket: p.names.bucket, Key: String(item?.rejectsKey) }),
    );
    // Act
    const [afterRejects] = await verify(p.target, { key });
    // Assess
    const badRows = Array.from({ length: file.bad }, (_, i) => (i + 1) * 40);
    expect(afterRejects).toMatchObject({
      verdict: 'mismatch',
      quarantined: 0,
      missing: lost.length + file.bad,
    });
    const listed = [...new Set([...lost, ...badRows])].sort((a, b) => a - b).slice(0, 100);
    expect(afterRejects?.missingRows).toEqual(listed);
    // The rejected rows never reached the scorer: only the rows of the deleted score object are applied.
    expect(afterRejects?.appliedWithoutScore).toEqual(listed.filter((row) => lost.includes(row)));
  });
});
