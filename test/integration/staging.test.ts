import { randomBytes } from 'node:crypto';
import { gunzipSync, gzipSync } from 'node:zlib';
import { GetObjectCommand, ListObjectsV2Command, PutObjectCommand } from '@aws-sdk/client-s3';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import type { LedgerItem } from '#shared/ledger.ts';
import { settings } from '#shared/settings.ts';
import { setUpPipeline, waitFor } from './pipeline.ts';

/**
 * Staging against moto, with tiny thresholds: a gzip file is inflated into staged objects under staging/,
 * which are then read as the uncompressed file — split into parts when large enough, read whole otherwise.
 * Every valid row is scored exactly once under the id a read of the gzip file gives it, every bad row is
 * quarantined once with its row, the totals are exact, and the staged copy is gone once the file ended.
 */
describe('staging: large gzip files inflated once and read as uncompressed files (moto)', () => {
  let p: Awaited<ReturnType<typeof setUpPipeline>>;

  beforeAll(async () => {
    // Read by the handler when setUpPipeline imports it: gzip files of 1 kB and more are staged in objects
    // of 20 kB; staged copies of 50 kB and more are split into parts of about 60 kB.
    Object.assign(process.env, {
      STAGING_MIN_BYTES: '1000',
      STAGING_OBJECT_BYTES: '20000',
      FAN_OUT_MIN_BYTES: '50000',
      FAN_OUT_PART_BYTES: '60000',
    });
    p = await setUpPipeline(inject('motoEndpoint'), `stg${randomBytes(3).toString('hex')}`, {
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
    for (const name of [
      'STAGING_MIN_BYTES',
      'STAGING_OBJECT_BYTES',
      'FAN_OUT_MIN_BYTES',
      'FAN_OUT_PART_BYTES',
    ])
      delete process.env[name];
  });

  const put = async (key: string, body: Buffer): Promise<string> => {
    const out = await p.clients.s3.send(
      new PutObjectCommand({ Bucket: p.names.bucket, Key: key, Body: body }),
    );
    return (out.ETag ?? '').replaceAll('"', '');
  };
  const fileItem = (key: string) =>
    waitFor(
      `${key} SUCCESS`,
      async () =>
        (await p.ledgerItems()).find((i) => i.key === key && i.part === undefined && i.status === 'SUCCESS'),
      180_000,
    );
  const partItems = async (key: string): Promise<LedgerItem[]> =>
    (await p.ledgerItems()).filter((i) => i.key === key && i.part !== undefined);
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
  const rejects = async (item: LedgerItem): Promise<Array<{ row?: number; reason: string }>> => {
    const out: Array<{ row?: number; reason: string }> = [];
    for (const key of item.rejectsKeys ?? (item.rejectsKey ? [item.rejectsKey] : [])) {
      const got = await p.clients.s3.send(new GetObjectCommand({ Bucket: p.names.bucket, Key: key }));
      const text = (await got.Body?.transformToString()) ?? '';
      for (const line of text.split('\n').filter(Boolean)) out.push(JSON.parse(line));
    }
    return out;
  };
  /** The staged objects still current under the file's staging prefix. */
  const stagedLeft = async (prefix: string): Promise<string[]> => {
    const out = await p.clients.s3.send(new ListObjectsV2Command({ Bucket: p.names.bucket, Prefix: prefix }));
    return (out.Contents ?? []).map((o) => String(o.Key));
  };
  const range = (from: number, to: number, skip: (i: number) => boolean) =>
    Array.from({ length: to - from + 1 }, (_, i) => from + i).filter((i) => !skip(i));

  it('stages a gzip CSV and splits the staged copy into parts: ids, rejects and totals as a read of the gzip file', async () => {
    // Prepare: 9,000 rows (about 390 kB inflated, 20 staged objects); every 9th has a quoted note with a
    // newline and a comma; every 97th has a bad value.
    const rows = 9_000;
    const bad = (i: number) => i % 97 === 0;
    const lines = ['\uFEFFname,value,timestamp,note'];
    for (let i = 1; i <= rows; i++) {
      const note = i % 9 === 0 ? `"line one\nline, two ${i}"` : `plain ${i}`;
      lines.push(`stg_csv,${bad(i) ? 'n/a' : (i % 13) + 0.5},${1_700_000_000 + i},${note}`);
    }
    const body = gzipSync(`${lines.join('\r\n')}\r\n`);
    const key = 'incoming/staged.csv.gz';
    const etag = await put(key, body);
    // Act
    const done = await fileItem(key);
    const ids = await scoredIds(key, etag, 'stg_csv', rows - Math.floor(rows / 97));
    // Assess
    const inflated = gunzipSync(body).length;
    expect(done.staging).toMatchObject({ objectBytes: 20_000, size: inflated });
    expect(done.staging?.objects).toBe(Math.ceil(inflated / 20_000));
    expect(done.staging?.prefix).toMatch(new RegExp(`^${settings.bucket.stagingPrefix}[0-9a-f]{64}/$`));
    const parts = await partItems(key);
    expect(done.parts).toBeGreaterThanOrEqual(4);
    expect(parts).toHaveLength(done.parts as number);
    expect(parts.every((x) => x.status === 'SUCCESS' && x.staging?.size === inflated)).toBe(true);
    expect(ids.sort()).toEqual(
      range(1, rows, bad)
        .map((i) => `s3://${p.names.bucket}/${key}@${etag}#${i}`)
        .sort(),
    );
    expect(done).toMatchObject({ records: rows - Math.floor(rows / 97), rejected: Math.floor(rows / 97) });
    expect((await rejects(done)).map((r) => r.row).sort((a, b) => Number(a) - Number(b))).toEqual(
      range(1, rows, (i) => !bad(i)),
    );
    await waitFor(
      'the staged copy deleted',
      async () => (await stagedLeft(done.staging?.prefix ?? '-')).length === 0,
    );
  }, 300_000);

  it('reads a staged gzip NDJSON below the fan-out size whole; bytes after the gzip data are one reject without a row', async () => {
    // Prepare: 600 lines (about 45 kB inflated: three staged objects, not split); every 40th is not JSON;
    // a line end appended after the gzip data.
    const rows = 600;
    const bad = (i: number) => i % 40 === 0;
    const lines = Array.from({ length: rows }, (_, n) =>
      bad(n + 1)
        ? '{"name":"stg_nd",'
        : JSON.stringify({
            name: 'stg_nd',
            value: n % 5,
            timestamp: 1_700_000_000 + n,
            pad: 'q'.repeat(n % 25),
          }),
    );
    const body = Buffer.concat([gzipSync(`${lines.join('\n')}\n`), Buffer.from('\n')]);
    const key = 'incoming/staged.ndjson.gz';
    const etag = await put(key, body);
    // Act
    const done = await fileItem(key);
    const ids = await scoredIds(key, etag, 'stg_nd', rows - rows / 40);
    // Assess
    expect(done.parts).toBeUndefined();
    expect(done.staging?.objects).toBe(3);
    expect(done.staging?.leftOut).toHaveLength(1);
    expect(new Set(ids).size).toBe(rows - rows / 40);
    expect(done).toMatchObject({ records: rows - rows / 40, rejected: rows / 40 + 1, attempts: 1 });
    const quarantined = await rejects(done);
    expect(quarantined.filter((r) => r.row !== undefined).map((r) => r.row)).toEqual(
      range(1, rows, (i) => !bad(i)),
    );
    expect(quarantined.filter((r) => r.row === undefined).map((r) => r.reason)).toEqual([
      `gzip: 1 byte after the end of the compressed data (from byte ${body.length - 1}) is not gzip (hex 0a): left out; every record before it was read`,
    ]);
    await waitFor(
      'the staged copy deleted',
      async () => (await stagedLeft(done.staging?.prefix ?? '-')).length === 0,
    );
  }, 300_000);
});
