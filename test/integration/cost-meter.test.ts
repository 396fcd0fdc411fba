import { randomBytes } from 'node:crypto';
import { PutObjectCommand } from '@aws-sdk/client-s3';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { settings } from '#shared/settings.ts';
import { usageOf } from '#shared/usage-meter.ts';
import { StatusCollector } from '../../local/commands/status.ts';
import { costLines } from '../../local/commands/status-cost.ts';
import { uniquePrefix } from '../../local/runtime/names.ts';
import { csvFile, setUpPipeline, waitFor } from './pipeline.ts';

/**
 * Offline, with the real s3-trigger: a CSV file's item carries the billed units its ingestion used (counted
 * from the function's own calls), the ledger's counters sum them, and `pulse status` prices them per million
 * records within the bounds of docs/cost.md.
 */
describe('the live cost meter on the offline pipeline (moto)', () => {
  let p: Awaited<ReturnType<typeof setUpPipeline>>;
  const tag = randomBytes(3).toString('hex');
  const key = `incoming/cost-${tag}.csv`;
  const ROWS = 20_000;

  beforeAll(async () => {
    p = await setUpPipeline(inject('motoEndpoint'), uniquePrefix('cost'));
  });
  afterAll(async () => {
    await p?.stopAll();
  });

  it('records the units of a CSV file on its item and prices them per million records in pulse status', async () => {
    // Prepare
    p.start('fileEvents');
    const file = csvFile(ROWS, { name: `cost_${tag}`, badEvery: 1000 });
    await p.clients.s3.send(new PutObjectCommand({ Bucket: p.names.bucket, Key: key, Body: file.text }));
    const item = await waitFor('the file ingested', async () =>
      (await p.ledgerItems()).find((i) => i.key === key && i.status === 'SUCCESS'),
    );
    // Act
    // The counters are settled right after the item's final write: the status follows shortly.
    const status = await waitFor('the counters settled', async () => {
      const st = await new StatusCollector(p.target).collect();
      return st.ledger.SUCCESS === 1 ? st : undefined;
    });
    // Assess
    const units = usageOf(item as unknown as Record<string, unknown>);
    // The signals went out packed: at least a billed unit per 64 KiB sent, far fewer than a request a record.
    expect(units.sqsRequests).toBeGreaterThanOrEqual(1);
    expect(units.sqsRequests).toBeLessThan(ROWS / 100);
    // One GET of the object at least; one PUT of the rejects object (20 rows rejected).
    expect(units.s3Gets).toBeGreaterThanOrEqual(1);
    expect(units.s3Puts).toBeGreaterThanOrEqual(1);
    // The claim's write and the rejects were the file's own DynamoDB writes, as moto reported them.
    expect(units.ddbWru).toBeGreaterThanOrEqual(1);
    // One invocation, billed at the memory the stack gives the function.
    expect(units.lambdaRequests).toBe(1);
    expect(units.lambdaMbMs).toBeGreaterThan(0);
    expect(units.lambdaMbMs % settings.functions.s3Trigger.memoryMb).toBe(0);
    const s3 = status.cost.find((c) => c.source === 's3');
    expect(s3?.records).toBe(status.records);
    expect(s3?.units.sqsRequests).toBe(units.sqsRequests);
    const perMillion = s3?.usdPerMillionRecords?.total ?? Number.NaN;
    // docs/cost.md's per-million table. SQS: the packed design's $0.00030 is send, receive and delete; the
    // s3-trigger's sends are a part of it. DynamoDB writes: far below the per-row design's $2.50. In all:
    // the packed design's $0.0107 (s3-trigger and scorer), with 3× room for the offline run's Lambda wall
    // time on a shared machine (it is the largest line here: moto is slower than DynamoDB and S3).
    const line = s3?.usdPerMillionRecords;
    expect(line?.sqs).toBeGreaterThan(0);
    expect(line?.sqs).toBeLessThanOrEqual(0.0003);
    expect(line?.ddbWrites).toBeLessThan(2.5);
    expect(perMillion).toBeGreaterThan(0);
    expect(perMillion).toBeLessThan(3 * 0.0107);
    expect(costLines(status.cost)[0]).toMatch(/^cost {5}s3: \$\d+\.\d{4,} per million records .*measured/);
  });
});
