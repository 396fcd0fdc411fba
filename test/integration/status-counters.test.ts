import { randomBytes } from 'node:crypto';
import { PutObjectCommand } from '@aws-sdk/client-s3';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { backfillWindow } from '../../local/commands/backfill.ts';
import { listLedger } from '../../local/commands/ledger-list.ts';
import { StatusCollector } from '../../local/commands/status.ts';
import { uniquePrefix } from '../../local/runtime/names.ts';
import { csvFile, setUpPipeline, waitFor } from './pipeline.ts';

/**
 * Offline, with the real s3-trigger: the ledger's counters follow the files as they end (SUCCESS, FAILED,
 * SKIPPED), `pulse status` shows them, `pulse ledger --status` reads the index, and `pulse backfill`
 * keeps to its window and, with --force, runs the FAILED and SKIPPED versions again, never the SUCCESS.
 */
describe('status counters, ledger listing and backfill on the offline pipeline (moto)', () => {
  let p: Awaited<ReturnType<typeof setUpPipeline>>;
  const tag = randomBytes(3).toString('hex');
  const keys = {
    good: `incoming/cnt-${tag}-good.csv`,
    broken: `incoming/cnt-${tag}-broken.json`,
    other: `incoming/cnt-${tag}-notes.txt`,
  };

  beforeAll(async () => {
    p = await setUpPipeline(inject('motoEndpoint'), uniquePrefix('cnt'));
  });
  afterAll(async () => {
    await p?.stopAll();
  });

  const ended = async () => {
    const items = (await p.ledgerItems()).filter((i) => Object.values(keys).includes(i.key));
    return items.length === 3 &&
      items.every(
        (i) => ['SUCCESS', 'SKIPPED'].includes(i.status) || (i.status === 'FAILED' && i.retryable === false),
      )
      ? items
      : undefined;
  };

  it('counts each file once in its final status, lists by status, and backfills only its window, --force retrying the failed and skipped', async () => {
    // Prepare
    p.start('fileEvents');
    const put = (Key: string, Body: string) =>
      p.clients.s3.send(new PutObjectCommand({ Bucket: p.names.bucket, Key, Body }));
    await put(keys.good, csvFile(20, { name: `cnt_${tag}` }).text);
    await put(keys.broken, '[{"name": "a", "value": 1, "timestamp": 1700000000}, {"name": ');
    await put(keys.other, 'not data');
    await waitFor('the three files ended', ended);
    // Act
    const status = await new StatusCollector(p.target).collect();
    const failedPage = await listLedger(p.target, { status: 'FAILED', limit: 5 });
    const future = await backfillWindow(p.target, `incoming/cnt-${tag}`, {
      since: new Date(Date.now() + 3_600_000),
    });
    const forced = await backfillWindow(p.target, `incoming/cnt-${tag}`, { force: true, by: 'ops@test' });
    const again = await waitFor('the forced files ended again, each retried once', async () => {
      const items = await ended();
      return items?.filter((i) => (i.retries?.length ?? 0) === 1).length === 2 ? items : undefined;
    });
    const after = await new StatusCollector(p.target).collect();
    // Assess
    expect(status.ledger).toMatchObject({ SUCCESS: 1, FAILED: 1, SKIPPED: 1, PROCESSING: 0, DISCOVERED: 0 });
    expect(status.filesTotal).toBe(3);
    expect(status.records).toBeGreaterThanOrEqual(20);
    expect(status.files.map((f) => f.key).sort()).toEqual(Object.values(keys).sort());
    expect(failedPage.items.map((i) => i.key)).toEqual([keys.broken]);
    expect(future).toMatchObject({ listed: 3, outOfRange: 3, enqueued: 0, known: 0 });
    expect(Object.fromEntries(forced.forced.map((f) => [f.key, f.outcome]))).toEqual({
      [keys.good]: 'kept',
      [keys.broken]: 'retried',
      [keys.other]: 'retried',
    });
    expect(again.find((i) => i.key === keys.good)?.retries).toBeUndefined();
    // The counters moved the two through DISCOVERED and back: the same totals.
    expect(after.ledger).toMatchObject({ SUCCESS: 1, FAILED: 1, SKIPPED: 1, PROCESSING: 0, DISCOVERED: 0 });
    expect(after.filesTotal).toBe(3);
  });
});
