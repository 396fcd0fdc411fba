import { randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DeleteObjectCommand } from '@aws-sdk/client-s3';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { settings } from '#shared/settings.ts';
import { waitExitCode, waitForFiles } from '../../local/commands/drop-wait.ts';
import { dropFiles } from '../../local/commands/operations.ts';
import { ALARM_NAMES, evaluateAlarms } from '../../local/dashboard/alarms.ts';
import { lambdaContext } from '../../local/event-sources/lambda-context.ts';
import { pulseStatusFactory } from '../helpers/status.ts';
import { csvFile, setUpPipeline, waitFor } from './pipeline.ts';

/**
 * Receipts offline (moto, the real handlers behind the SQS event-source emulation): `pulse drop --wait` on a
 * CSV, an NDJSON and a Parquet file ends with each receipt balanced and stored on its ledger item; the ledger
 * sweep (its real handler, its calls recorded for the IAM parity test) verifies the files that ended, and
 * turns red, with the offline ReceiptMismatches alarm, once a score object is deleted by hand.
 */
describe('receipts: drop --wait and the ledger sweep (moto)', () => {
  let p: Awaited<ReturnType<typeof setUpPipeline>>;
  const dir = mkdtempSync(join(tmpdir(), 'pulse-receipts-'));
  const csv = csvFile(120, { name: 'receipt_csv', badEvery: 30 });
  const ndjson = Array.from({ length: 50 }, (_, i) =>
    JSON.stringify({ name: 'receipt_ndjson', value: i, timestamp: 1_700_000_000 + i }),
  ).join('\n');
  const files = {
    csv: join(dir, `r-${randomBytes(3).toString('hex')}.csv`),
    ndjson: join(dir, `r-${randomBytes(3).toString('hex')}.ndjson`),
    parquet: join(dir, `r-${randomBytes(3).toString('hex')}.parquet`),
  };

  beforeAll(async () => {
    p = await setUpPipeline(inject('motoEndpoint'), `rcp${randomBytes(3).toString('hex')}`);
    writeFileSync(files.csv, csv.text);
    writeFileSync(files.ndjson, `${ndjson}\n`);
    writeFileSync(
      files.parquet,
      readFileSync(new URL('../fixtures/parquet/corpus/matrix-snappy-dict-v2.parquet', import.meta.url)),
    );
    p.start('fileEvents');
    p.start('signals');
  });
  afterAll(async () => {
    await p?.stopAll();
  });

  it('drop --wait follows a CSV, an NDJSON and a Parquet file to balanced receipts, stored on their items', async () => {
    // Prepare
    const uploaded: Record<string, number> = {};
    // Act
    const dropped = await dropFiles(p.clients.s3, p.names.bucket, Object.values(files), (file, loaded) => {
      uploaded[file] = loaded;
    });
    const waited = await waitForFiles(p.target, dropped, { timeoutMs: 90_000, pollMs: 500 });
    // Assess
    expect(waitExitCode(waited)).toBe(0);
    expect(waited.map((w) => [w.phase, w.receipt?.verdict])).toEqual([
      ['balanced', 'ok'],
      ['balanced', 'ok'],
      ['balanced', 'ok'],
    ]);
    expect(waited.map((w) => w.read)).toEqual([120, 50, 500]);
    expect(waited[0]?.receipt).toMatchObject({ scored: csv.good, quarantined: csv.bad });
    for (const f of Object.values(files)) expect(uploaded[f]).toBeGreaterThan(0);
    const items = await p.ledgerItems();
    for (const d of dropped) {
      const item = items.find((i) => i.pk === `s3://${d.bucket}/${d.key}` && i.sk === d.etag) as unknown as {
        receipt?: { by: string; ok: boolean };
      };
      expect(item.receipt).toMatchObject({ by: 'pulse drop --wait', ok: true });
    }
  });

  it('the ledger sweep verifies the files that ended, and is red once a score object is deleted by hand', async () => {
    // Prepare: the sweep's real handler, verifying files a second after they end
    Object.assign(process.env, {
      INGEST_BUCKET: p.names.bucket,
      RECEIPTS_SETTLE_SECONDS: '1',
    });
    const { handler } = await import('../../functions/s3-trigger/sweep-handler.ts');
    const run = async () =>
      (await handler({}, lambdaContext({ functionName: 'pulse-ledger-sweep', timeoutMs: 300_000 }))) as {
        verify: { verified: number; mismatches: number };
      };
    await new Promise((r) => setTimeout(r, 1_100));
    await waitFor(
      'every score object promoted',
      async () => (await p.scoreObjects(settings.scores.pendingPrefix)).length === 0,
    );
    const alarmOf = (receipts: { verified: number; mismatches: number }) =>
      evaluateAlarms(
        {
          ...pulseStatusFactory(),
          sweep: {
            since: new Date(Date.now() - 60_000).toISOString(),
            lastSuccessAt: new Date().toISOString(),
            periodSeconds: 300,
            receipts,
          },
        },
        [],
      ).find((a) => a.name === ALARM_NAMES.receiptMismatches);
    // Act: the first run verifies the three files
    const green = await run();
    const key = `incoming/${files.csv.split('/').pop()}`;
    const again = await run();
    // Assess: each file verified once (the cursor), all green
    expect(green.verify).toEqual({ verified: 3, mismatches: 0, behind: false });
    expect(alarmOf(green.verify)?.state).toBe('OK');
    expect(again.verify).toMatchObject({ verified: 0, mismatches: 0 });
    const csvItem = (await p.ledgerItems()).find((i) => i.pk.endsWith(`/${key}`)) as unknown as {
      receipt: { by: string; ok: boolean };
    };
    expect(csvItem.receipt).toMatchObject({ by: 'ledger-sweep', ok: true });

    // Act: another file dropped and ingested, then one of its score objects lost
    const other = join(dir, `r-${randomBytes(3).toString('hex')}.csv`);
    writeFileSync(other, csvFile(60, { name: 'receipt_lost' }).text);
    const [second] = await dropFiles(p.clients.s3, p.names.bucket, [other]);
    const otherKey = `incoming/${other.split('/').pop()}`;
    await waitForFiles(p.target, second ? [second] : [], { timeoutMs: 60_000, pollMs: 500 });
    await waitFor(
      'every score object promoted',
      async () => (await p.scoreObjects(settings.scores.pendingPrefix)).length === 0,
    );
    const lostObject = (await p.scoreRecords()).find((r) => r.ref.includes(`/${otherKey}@`))
      ?.object as string;
    await p.clients.s3.send(new DeleteObjectCommand({ Bucket: p.names.scoresBucket, Key: lostObject }));
    await new Promise((r) => setTimeout(r, 1_100));
    const red = await run();
    // Assess: red, the receipt stored unbalanced, the offline alarm in ALARM
    expect(red.verify).toMatchObject({ verified: 1, mismatches: 1 });
    expect(alarmOf(red.verify)).toMatchObject({ state: 'ALARM' });
    const items = await p.ledgerItems();
    const newest = items.find((i) => i.pk.endsWith(`/${otherKey}`)) as unknown as {
      receipt: { by: string; ok: boolean; missing: { count: number } };
    };
    expect(newest.receipt).toMatchObject({ by: 'ledger-sweep', ok: false });
    expect(newest.receipt.missing.count).toBeGreaterThan(0);
  });
});
