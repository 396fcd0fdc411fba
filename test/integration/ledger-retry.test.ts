import { randomBytes } from 'node:crypto';
import { PutObjectCommand } from '@aws-sdk/client-s3';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { type FileRef, Ledger, type LedgerItem } from '#shared/ledger.ts';
import { resetForRetry } from '#shared/ledger-retry.ts';
import { settings } from '#shared/settings.ts';
import { retryExitCode, retryVersions } from '../../local/commands/retry.ts';
import { verify } from '../../local/commands/verify.ts';
import { makeClients } from '../../local/runtime/clients.ts';
import { resourceNames, uniquePrefix } from '../../local/runtime/names.ts';
import { createResources } from '../../local/runtime/resources.ts';
import { type FaultProxy, startFaultProxy } from '../helpers/fault-proxy.ts';
import { expectExactlyOnce, goodRows, s3Ids } from '../reliability/invariants.ts';
import { csvFile, setUpPipeline, waitFor } from './pipeline.ts';

/**
 * `pulse ledger retry` against moto: the ledger's guard (a FAILED item is never claimed again) holds, and a
 * retry is the one explicit, recorded way past it; and end to end, a file that failed for good (its
 * quarantine write denied, as a bucket policy would) is retried once the cause is fixed, without being
 * uploaded again, and ends SUCCESS with each row scored once and each bad row quarantined once.
 */

const MAX = 3;

describe('ledger retry: the reset is the only way past the FAILED guard (moto)', () => {
  const clients = makeClients(inject('motoEndpoint'));
  const names = resourceNames(uniquePrefix('lrt'));
  const ledger = new Ledger(clients.doc, names.ledgerTable, { leaseSeconds: 60, maxAttempts: MAX });
  const file = (etag: string): FileRef => ({ bucket: 'b', key: 'incoming/r.csv', etag });
  const DONE = { records: 3, rejected: 1, bytesRead: 40, durationMs: 5, firstErrors: [] };

  beforeAll(async () => {
    await createResources(clients, names);
  });

  /** An item that FAILED for good after one attempt. */
  async function failedForGood(etag: string): Promise<LedgerItem> {
    await ledger.claim(file(etag), 'w1');
    await ledger.fail(file(etag), 'w1', {
      ...DONE,
      errorType: 'AccessDenied',
      errorMessage: 'Access Denied',
      retryable: false,
      rejectsKey: 'rejects/s3/incoming/r.csv.ndjson',
    });
    return (await ledger.get(file(etag))) as LedgerItem;
  }

  it('a FAILED item is refused a claim until reset; the reset records who, when and the previous error, and the claim then starts at attempt 1', async () => {
    // Prepare
    const failed = await failedForGood('g1');
    const refused = await ledger.claim(file('g1'), 'w2');
    // Act
    const reset = await resetForRetry(
      clients.doc,
      names.ledgerTable,
      failed,
      'ops@box',
      new Date('2026-01-02T00:00:00Z'),
    );
    const after = await ledger.get(file('g1'));
    const claim = await ledger.claim(file('g1'), 'w3');
    // Assess
    expect(refused).toMatchObject({ claimed: false, reason: 'failed' });
    expect(reset).toBe('reset');
    expect(after).toMatchObject({ status: 'DISCOVERED', attempts: 0, records: 0, rejected: 0 });
    expect(after?.errorType).toBeUndefined();
    expect(after?.retryable).toBeUndefined();
    expect(after?.rejectsKey).toBeUndefined();
    expect(after?.retries).toEqual([
      {
        by: 'ops@box',
        at: '2026-01-02T00:00:00.000Z',
        previous: {
          status: 'FAILED',
          attempts: 1,
          errorType: 'AccessDenied',
          errorMessage: 'Access Denied',
          finishedAt: failed.finishedAt,
          records: 3,
          rejected: 1,
          rejectsKeys: ['rejects/s3/incoming/r.csv.ndjson'],
        },
      },
    ]);
    expect(claim).toMatchObject({ claimed: true, attempt: 1 });
  });

  it('a reset from a stale read changes nothing, and a second retry is appended to the first', async () => {
    // Prepare
    const failed = await failedForGood('g2');
    await resetForRetry(clients.doc, names.ledgerTable, failed, 'first', new Date());
    await ledger.claim(file('g2'), 'w2');
    await ledger.fail(file('g2'), 'w2', {
      ...DONE,
      errorType: 'MalformedFileError',
      errorMessage: 'bad',
      retryable: false,
    });
    const failedAgain = (await ledger.get(file('g2'))) as LedgerItem;
    // Act
    const stale = await resetForRetry(clients.doc, names.ledgerTable, failed, 'stale', new Date());
    const second = await resetForRetry(clients.doc, names.ledgerTable, failedAgain, 'second', new Date());
    const after = await ledger.get(file('g2'));
    // Assess
    expect(stale).toBe('changed');
    expect(second).toBe('reset');
    expect(after?.retries?.map((r) => [r.by, r.previous.errorType])).toEqual([
      ['first', 'AccessDenied'],
      ['second', 'MalformedFileError'],
    ]);
  });

  it('refuses to reset a FAILED item that is still retryable', async () => {
    // Prepare
    await ledger.claim(file('g3'), 'w1');
    await ledger.fail(file('g3'), 'w1', {
      ...DONE,
      errorType: 'SlowDown',
      errorMessage: 'slow',
      retryable: true,
    });
    const retrying = (await ledger.get(file('g3'))) as LedgerItem;
    // Act
    const attempt = resetForRetry(clients.doc, names.ledgerTable, retrying, 'ops', new Date());
    // Assess
    await expect(attempt).rejects.toThrow(/still being retried/);
    expect(await ledger.get(file('g3'))).toMatchObject({ status: 'FAILED', retryable: true, attempts: 1 });
  });
});

describe('pulse ledger retry: a file failed for good, retried after the fix, is scored once (moto)', () => {
  let p: Awaited<ReturnType<typeof setUpPipeline>>;
  let proxy: FaultProxy;
  let broken = true;
  const key = `incoming/retry-${randomBytes(3).toString('hex')}.csv`;
  const BAD_EVERY = 25;
  const ROWS = 200;
  const data = csvFile(ROWS, { name: 'retry_csv', badEvery: BAD_EVERY });

  beforeAll(async () => {
    const moto = inject('motoEndpoint');
    proxy = await startFaultProxy({
      target: moto,
      before: 0,
      after: 0,
      seed: 7,
      // The file's quarantine write is denied (a bucket policy): AccessDenied, which no attempt gets past.
      failWhen: ({ service, operation }) =>
        broken &&
        service === 's3' &&
        operation.startsWith('PUT ') &&
        operation.includes('/rejects/s3/') &&
        operation.includes(key)
          ? 403
          : undefined,
    });
    p = await setUpPipeline(moto, uniquePrefix('lrte'), { handlerEndpoint: proxy.url });
  });
  afterAll(async () => {
    await p?.stopAll();
    await proxy?.close();
  });

  it('ends SUCCESS with each row scored once, the retry recorded on the item', async () => {
    // Prepare: the file fails for good.
    p.start('fileEvents');
    p.start('signals');
    await p.clients.s3.send(new PutObjectCommand({ Bucket: p.names.bucket, Key: key, Body: data.text }));
    const failed = await waitFor('the file FAILED for good', async () => {
      const item = (await p.ledgerItems()).find((i) => i.key === key);
      return item?.status === 'FAILED' && item.retryable === false ? item : undefined;
    });
    const { etag } = failed;
    // The failed attempt had sent its valid rows: they are scored before the retry sends them again.
    const scoredBefore = await waitFor("the failed attempt's rows scored", async () => {
      const n = (await p.scoreRecords()).filter((r) => r.ref.includes(`/${key}@`)).length;
      return n >= data.good ? n : undefined;
    });

    // Act: fix the cause, retry.
    broken = false;
    const results = await retryVersions(p.target, { key }, { by: 'ops@test' });
    const done = await waitFor('the retried file SUCCESS', async () => {
      const item = (await p.ledgerItems()).find((i) => i.key === key);
      return item?.status === 'SUCCESS' ? item : undefined;
    });
    await waitFor(
      'every valid row scored, every score object promoted',
      async () =>
        (await p.scoreRecords()).filter((r) => r.ref.includes(`/${key}@`)).length >= data.good &&
        (await p.scoreObjects(settings.scores.pendingPrefix)).length === 0 &&
        (await p.queueDepth('signals')) === 0,
    );
    const receipts = await verify(p.target, { key });

    // Assess
    expect(proxy.stats.s3?.ruled ?? 0).toBeGreaterThan(0);
    expect(failed.errorType).toMatch(/AccessDenied|QuarantineError/);
    expect(results).toEqual([expect.objectContaining({ etag, outcome: 'retried' })]);
    expect(retryExitCode(results)).toBe(0);
    expect(failed.records).toBe(data.good);
    expect(scoredBefore).toBe(data.good);
    expect(done).toMatchObject({ records: data.good, rejected: data.bad, attempts: 1 });
    expect(done.retries).toEqual([
      expect.objectContaining({
        by: 'ops@test',
        previous: expect.objectContaining({
          status: 'FAILED',
          errorType: failed.errorType,
          eventTime: failed.eventTime,
        }),
      }),
    ]);
    // The rerun's latency is not measured from the upload: the event time is kept on the retry only.
    expect(failed.eventTime).toBeDefined();
    expect(done.eventTime).toBeUndefined();
    const bad = Array.from({ length: ROWS / BAD_EVERY }, (_, i) => (i + 1) * BAD_EVERY);
    await expectExactlyOnce(p, {
      scope: (s) => s.originRef.includes(`/${key}@`),
      scoredIds: s3Ids(p.names.bucket, key, etag, goodRows(ROWS, BAD_EVERY)),
      series: [{ source: key, name: 'retry_csv', count: data.good }],
      ledgerKeys: (k) => k === key,
      quarantine: { under: `s3/${p.names.bucket}/${key}`, refs: s3Ids(p.names.bucket, key, etag, bad) },
    });
    expect(receipts).toEqual([expect.objectContaining({ verdict: 'ok', status: 'SUCCESS' })]);
  });
});
