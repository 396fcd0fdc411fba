import { randomBytes } from 'node:crypto';
import { GetObjectCommand, PutObjectCommand } from '@aws-sdk/client-s3';
import { SendMessageCommand } from '@aws-sdk/client-sqs';
import { parquetWriteBuffer } from 'hyparquet-writer';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { Ledger, type LedgerItem } from '#shared/ledger.ts';
import { settings } from '#shared/settings.ts';
import { partMessage } from '../../functions/s3-trigger/events.ts';
import { planParts } from '../../functions/s3-trigger/fan-out.ts';
import { detectFormat } from '../../functions/s3-trigger/parsers/index.ts';
import { setUpPipeline, waitFor } from './pipeline.ts';

/**
 * Fan-out against moto: a file above the (lowered) size threshold is split into parts announced on the
 * file-events queue; three s3-trigger pollers ingest them side by side; the last part to end ends the
 * file. Whatever the split, every valid row is scored exactly once under the id a whole read gives it
 * (`…#<row>`), every bad row is quarantined once with its row, and the file's totals are exact.
 */
describe('fan-out: large files split into parts ingested side by side (moto)', () => {
  let p: Awaited<ReturnType<typeof setUpPipeline>>;

  beforeAll(async () => {
    // Read by the handler when setUpPipeline imports it: files of 50 kB and more, parts of about 100 kB.
    process.env.FAN_OUT_MIN_BYTES = '50000';
    process.env.FAN_OUT_PART_BYTES = '100000';
    p = await setUpPipeline(inject('motoEndpoint'), `fan${randomBytes(3).toString('hex')}`, {
      leaseSeconds: 30,
      heartbeatSeconds: 2,
      visibility: { fileEvents: 60, signals: 30 },
      s3TriggerConcurrency: 3,
    });
    p.start('fileEvents');
    p.start('signals');
  });
  afterAll(async () => {
    await p?.stopAll();
    delete process.env.FAN_OUT_MIN_BYTES;
    delete process.env.FAN_OUT_PART_BYTES;
  });

  const put = async (key: string, body: Buffer): Promise<string> => {
    const out = await p.clients.s3.send(
      new PutObjectCommand({ Bucket: p.names.bucket, Key: key, Body: body }),
    );
    return (out.ETag ?? '').replaceAll('"', '');
  };
  const fileItem = (key: string, status: string) =>
    waitFor(
      `${key} ${status}`,
      async () =>
        (await p.ledgerItems()).find((i) => i.key === key && i.part === undefined && i.status === status),
      180_000,
    );
  const partItems = async (key: string): Promise<LedgerItem[]> =>
    (await p.ledgerItems()).filter((i) => i.key === key && i.part !== undefined);
  /**
   * Score ids of one object version (series `name` of source `key`), once the series has counted every
   * expected signal (one read per poll, not a scan) and a moment more for any extra.
   */
  const scoredIds = async (key: string, etag: string, name: string, expected: number): Promise<string[]> => {
    await waitFor(
      `${expected} scores for ${key}`,
      async () => ((await p.series(key, name))?.count ?? 0) >= expected,
      180_000,
    );
    await new Promise((r) => setTimeout(r, 1500));
    const prefix = `s3://${p.names.bucket}/${key}@${etag}#`;
    return (await p.scoreRecords()).map((s) => s.id).filter((id) => id.startsWith(prefix));
  };
  /** The rows of every reject of the file, from the rejects objects the ledger lists. */
  const rejectedRows = async (item: LedgerItem): Promise<number[]> => {
    const keys = item.rejectsKeys ?? (item.rejectsKey ? [item.rejectsKey] : []);
    const rows: number[] = [];
    for (const key of keys) {
      const out = await p.clients.s3.send(new GetObjectCommand({ Bucket: p.names.bucket, Key: key }));
      const text = (await out.Body?.transformToString()) ?? '';
      for (const line of text.split('\n').filter(Boolean)) {
        const entry = JSON.parse(line) as { row?: number };
        if (entry.row !== undefined) rows.push(entry.row);
      }
    }
    return rows.sort((a, b) => a - b);
  };
  const range = (from: number, to: number, skip: (i: number) => boolean) =>
    Array.from({ length: to - from + 1 }, (_, i) => from + i).filter((i) => !skip(i));

  it('splits a CSV with quoted newlines, CRLF and a BOM at record boundaries: ids and totals as a whole read', async () => {
    // Prepare: 12,000 rows (about 500 kB); every 7th row has a quoted note with a newline, a comma and
    // doubled quotes; every 101st has a bad value; two empty lines in the middle.
    const rows = 12_000;
    const bad = (i: number) => i % 101 === 0;
    const lines = ['\uFEFFname,value,timestamp,note'];
    for (let i = 1; i <= rows; i++) {
      const note = i % 7 === 0 ? `"line one\nline, two ""q"" ${i}"` : `plain ${i}`;
      lines.push(`fan_csv,${bad(i) ? 'n/a' : (i % 13) + 0.25},${1_700_000_000 + i},${note}`);
      if (i === 5000) lines.push('', '');
    }
    const key = 'incoming/fan-out.csv';
    const etag = await put(key, Buffer.from(`${lines.join('\r\n')}\r\n`));
    // Act
    const done = await fileItem(key, 'SUCCESS');
    const ids = await scoredIds(key, etag, 'fan_csv', rows - Math.floor(rows / 101));
    // Assess
    const parts = await partItems(key);
    expect(done.parts).toBeGreaterThanOrEqual(4);
    expect(parts).toHaveLength(done.parts as number);
    expect(parts.every((x) => x.status === 'SUCCESS' && x.range?.kind === 'byte')).toBe(true);
    expect(done.partsDone).toBe(done.parts);
    const expected = range(1, rows, bad).map((i) => `s3://${p.names.bucket}/${key}@${etag}#${i}`);
    expect(ids.sort()).toEqual(expected.sort());
    expect(done.records).toBe(expected.length);
    expect(done.rejected).toBe(Math.floor(rows / 101));
    expect(await rejectedRows(done)).toEqual(range(1, rows, (i) => !bad(i)));
    // The parts cover the file exactly, in order, each starting where the last ended.
    const sorted = [...parts].sort((a, b) => Number(a.part) - Number(b.part));
    expect(sorted[0]?.range).toMatchObject({ start: 0, row: 0 });
    for (let i = 1; i < sorted.length; i++) {
      expect(sorted[i]?.range?.start).toBe(sorted[i - 1]?.range?.end);
      expect(sorted[i]?.range?.row).toBe(sorted[i - 1]?.range?.endRow);
    }
    expect(sorted.at(-1)?.range?.endRow).toBe(rows);
  }, 300_000);

  it('splits NDJSON at line ends; bad lines are quarantined with their line numbers', async () => {
    // Prepare: 10,000 lines; every 50th is not JSON.
    const rows = 10_000;
    const bad = (i: number) => i % 50 === 0;
    const lines: string[] = [];
    for (let i = 1; i <= rows; i++) {
      lines.push(
        bad(i)
          ? `{"name":"fan_ndjson","value":${i},` // cut short
          : JSON.stringify({
              name: 'fan_ndjson',
              value: i % 11,
              timestamp: 1_700_000_000 + i,
              pad: 'x'.repeat(i % 40),
            }),
      );
    }
    const key = 'incoming/fan-out.ndjson';
    const etag = await put(key, Buffer.from(`${lines.join('\n')}\n`));
    // Act
    const done = await fileItem(key, 'SUCCESS');
    const ids = await scoredIds(key, etag, 'fan_ndjson', rows - rows / 50);
    // Assess
    expect(done.parts).toBeGreaterThanOrEqual(4);
    expect(ids.sort()).toEqual(
      range(1, rows, bad)
        .map((i) => `s3://${p.names.bucket}/${key}@${etag}#${i}`)
        .sort(),
    );
    expect(done.rejected).toBe(rows / 50);
    expect(await rejectedRows(done)).toEqual(range(1, rows, (i) => !bad(i)));
  }, 300_000);

  it('splits Parquet at row groups; a part message delivered again and a repeated S3 event change nothing', async () => {
    // Prepare: 12,000 rows in row groups of 500 (about 150 kB).
    const rows = 12_000;
    const body = Buffer.from(
      parquetWriteBuffer({
        columnData: [
          { name: 'name', type: 'STRING', data: Array.from({ length: rows }, () => 'fan_parquet') },
          { name: 'value', type: 'DOUBLE', data: Float64Array.from({ length: rows }, (_, i) => i % 19) },
          {
            name: 'timestamp',
            type: 'INT64',
            data: BigInt64Array.from({ length: rows }, (_, i) => BigInt(1_700_000_000 + i)),
          },
          {
            name: 'note',
            type: 'STRING',
            data: Array.from({ length: rows }, (_, i) => `n${i}-${'y'.repeat(i % 9)}`),
          },
        ],
        rowGroupSize: 500,
      }),
    );
    const key = 'incoming/fan-out.parquet';
    const etag = await put(key, body);
    // Act
    await fileItem(key, 'SUCCESS');
    const queueUrl = p.resources.queues.fileEvents.url;
    await p.clients.sqs.send(
      new SendMessageCommand({
        QueueUrl: queueUrl,
        MessageBody: partMessage({ bucket: p.names.bucket, key, etag, size: body.length, part: 1 }),
      }),
    );
    await p.clients.sqs.send(
      new SendMessageCommand({
        QueueUrl: queueUrl,
        MessageBody: JSON.stringify({
          v: 1,
          kind: 'backfill',
          bucket: p.names.bucket,
          key,
          etag,
          size: body.length,
        }),
      }),
    );
    await waitFor(
      'the file-events queue drained',
      async () => (await p.queueDepth('fileEvents')) === 0,
      60_000,
    );
    const ids = await scoredIds(key, etag, 'fan_parquet', rows);
    // Assess
    const parts = await partItems(key);
    expect(parts.length).toBeGreaterThanOrEqual(2);
    expect(
      parts.every((x) => x.status === 'SUCCESS' && x.range?.kind === 'rowGroup' && x.attempts === 1),
    ).toBe(true);
    expect(ids.sort()).toEqual(
      range(1, rows, () => false)
        .map((i) => `s3://${p.names.bucket}/${key}@${etag}#${i}`)
        .sort(),
    );
    const after = (await p.ledgerItems()).find((i) => i.key === key && i.part === undefined);
    expect(after).toMatchObject({ status: 'SUCCESS', records: rows, rejected: 0, attempts: 1 });
    expect(after?.duplicates ?? 0).toBe(1);
  }, 300_000);

  it('announces the recorded parts of a file whose coordinator ran out of attempts after planning', async () => {
    // Prepare: 6,000 NDJSON lines (about 400 kB). The plan is made on a copy outside incoming/ (no event;
    // the same bytes give the same ETag and the same ranges).
    const rows = 6_000;
    const lines = Array.from({ length: rows }, (_, n) =>
      JSON.stringify({
        name: 'fan_coord',
        value: n % 7,
        timestamp: 1_700_000_000 + n,
        pad: 'p'.repeat(n % 30),
      }),
    );
    const body = Buffer.from(`${lines.join('\n')}\n`);
    const key = 'incoming/fan-out-coordinator.ndjson';
    const etag = await put('staging/fan-out-coordinator.ndjson', body);
    const format = detectFormat(key);
    if (!format) throw new Error('no format');
    const plan = await planParts(
      p.clients.s3,
      { bucket: p.names.bucket, key: 'staging/fan-out-coordinator.ndjson', etag },
      format,
      body.length,
      { minBytes: 50_000, partBytes: 100_000, maxParts: 200 },
      () => {},
    );
    if (!plan.split) throw new Error(`not split: ${plan.reason}`);
    // Three coordinators in turn, a minute ago: the first recorded the plan, each died before marking the
    // file SPLIT; the last lease has expired and no attempts are left.
    let now = Date.now() - 60_000;
    const dead = new Ledger(p.clients.doc, p.names.ledgerTable, {
      leaseSeconds: 1,
      maxAttempts: settings.ledger.maxAttempts,
      now: () => now,
    });
    const file = { bucket: p.names.bucket, key, etag };
    for (let attempt = 1; attempt <= settings.ledger.maxAttempts; attempt++) {
      expect(await dead.claim(file, `dead-${attempt}`, { size: body.length })).toMatchObject({
        claimed: true,
      });
      if (attempt === 1) await dead.planParts(file, 'dead-1', plan.ranges, { size: body.length });
      now += 2_000;
    }
    // Act: the object's S3 event comes (again).
    expect(await put(key, body)).toBe(etag);
    const ended = await waitFor(
      `${key} ended`,
      async () =>
        (await p.ledgerItems()).find(
          (i) => i.key === key && i.part === undefined && (i.status === 'SUCCESS' || i.status === 'FAILED'),
        ),
      180_000,
    );
    // Assess: the parts were announced and ingested; the file ended SUCCESS, not FAILED as expired.
    expect(ended).toMatchObject({ status: 'SUCCESS', records: rows, rejected: 0, parts: plan.ranges.length });
    expect(ended.attempts).toBe(settings.ledger.maxAttempts + 1);
    const ids = await scoredIds(key, etag, 'fan_coord', rows);
    expect(new Set(ids).size).toBe(rows);
    expect(ids).toHaveLength(rows);
    expect((await partItems(key)).every((x) => x.status === 'SUCCESS' && x.attempts === 1)).toBe(true);
  }, 300_000);

  it('reads a CSV whole when the scan is unsure of its quoting (text after a closing quote)', async () => {
    // Prepare: about 60 kB whose row 900 has text after a closing quote: csv-parse (relax_quotes) reads
    // it as text, the boundary scan does not claim to know what it means.
    const lines = ['name,value,timestamp,note'];
    for (let i = 1; i <= 1500; i++) {
      lines.push(
        `fan_whole,${i % 5},${1_700_000_000 + i},${i === 900 ? '"quoted"tail' : `note-${'z'.repeat(i % 20)}`}`,
      );
    }
    const key = 'incoming/fan-out-unsure.csv';
    const etag = await put(key, Buffer.from(`${lines.join('\n')}\n`));
    // Act
    const done = await fileItem(key, 'SUCCESS');
    const ids = await scoredIds(key, etag, 'fan_whole', 1500);
    // Assess: not split, read whole, every row once.
    expect(done.parts).toBeUndefined();
    expect(await partItems(key)).toEqual([]);
    expect(done).toMatchObject({ records: 1500, rejected: 0, attempts: 1 });
    expect(new Set(ids).size).toBe(1500);
  }, 300_000);
});
