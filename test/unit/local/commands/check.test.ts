import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { gzipSync, zstdCompressSync } from 'node:zlib';
import { GetObjectCommand, type GetObjectCommandInput, S3Client } from '@aws-sdk/client-s3';
import { sdkStreamMixin } from '@smithy/core/serde';
import { type AwsClientStub, mockClient } from 'aws-sdk-client-mock';
import { parquetWriteBuffer } from 'hyparquet-writer';
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { detectFormat } from '../../../../functions/s3-trigger/parsers/index.ts';
import type { ParsedRecord, RecordBatches } from '../../../../functions/s3-trigger/parsers/types.ts';
import { openRecords } from '../../../../functions/s3-trigger/records.ts';
import { checkExitCode, checkFile, openLocalRecords } from '../../../../local/commands/check.ts';
import { checkSummaryText, checkText } from '../../../../local/commands/check-text.ts';

const dir = mkdtempSync(join(tmpdir(), 'pulse-check-'));
const file = (name: string, data: string | Uint8Array) => {
  const path = join(dir, name);
  writeFileSync(path, data);
  return path;
};

const GOOD_CSV =
  'name,value,timestamp,host\n' +
  'cpu,12.5,2024-01-01T00:00:00Z,a\n' +
  'mem,3,1700000000,b\n' +
  'disk,0.5,2024-01-01T00:00:02+01:00,c\n';

afterAll(() => {
  rmSync(dir, { recursive: true, force: true });
});

describe('checkFile', () => {
  it('reads a good CSV file as the s3-trigger would: every record a signal, exit code 0', async () => {
    // Prepare
    const path = file('good.csv', GOOD_CSV);
    // Act
    const report = await checkFile(path);
    // Assess
    expect(report).toMatchObject({
      key: 'incoming/good.csv',
      format: 'csv',
      records: 3,
      signals: 3,
      rejected: 0,
      verdict: 'ok',
    });
    expect(report.firstSignals[0]).toEqual({
      id: 's3://<bucket>/incoming/good.csv@<etag>#1',
      name: 'cpu',
      value: 12.5,
      source: 'incoming/good.csv',
      timestamp: '2024-01-01T00:00:00.000Z',
      attributes: { host: 'a' },
      origin: { kind: 's3', ref: 's3://<bucket>/incoming/good.csv@<etag>#1' },
    });
    expect(report.firstSignals[1]?.timestamp).toBe('2023-11-14T22:13:20.000Z');
    expect(checkExitCode([report])).toBe(0);
  });

  it('lists rejected rows with their row, byte and reason; over --max-rejects the exit code is 2', async () => {
    // Prepare
    const path = file(
      'some-bad.csv',
      'name,value,timestamp\ncpu,1,1700000000\nmem,12x,1700000000\n,3,1700000000\n',
    );
    // Act
    const strict = await checkFile(path);
    const lenient = await checkFile(path, { maxRejects: 2 });
    // Assess
    expect(strict).toMatchObject({ records: 3, signals: 1, rejected: 2, verdict: 'rejects' });
    expect(strict.firstRejects).toEqual([
      { row: 2, byte: 38, reason: 'value must be wholly numeric, got "12x"' },
      { row: 3, byte: 57, reason: 'name is required' },
    ]);
    expect(checkExitCode([strict])).toBe(2);
    expect(lenient.verdict).toBe('ok');
    expect(checkExitCode([lenient])).toBe(0);
  });

  it('finds the columns a header that names none of the required ones means, and the file fails (exit 3)', async () => {
    // Prepare
    const path = file(
      'mapped.csv',
      'metric,reading,time,host\ncpu,1,2024-01-01T00:00:00Z,a\nmem,2,1700000000,b\n',
    );
    // Act
    const report = await checkFile(path);
    // Assess
    expect(report.verdict).toBe('failed');
    expect(report.failure).toMatchObject({ type: 'MalformedFileError', line: 1 });
    expect(report.mapping).toMatchObject({
      missing: ['name', 'value', 'timestamp'],
      unmatched: [],
      renamedHeader: ['name', 'value', 'timestamp', 'host'],
      headerLooksLikeData: false,
      sampled: 2,
      acceptedAsIs: 0,
      acceptedMapped: 2,
    });
    expect(report.mapping?.matches.map((m) => [m.column, m.field])).toEqual([
      ['metric', 'name'],
      ['reading', 'value'],
      ['time', 'timestamp'],
    ]);
    expect(checkText(report).join('\n')).toContain('column `metric` looks like `name`');
    expect(checkExitCode([report])).toBe(3);
  });

  it('says a CSV file without a header needs one, in its columns order (numbers for names included)', async () => {
    // Prepare
    const path = file('headerless.csv', 'cpu,1,2024-01-01T00:00:00Z\nmem,2,2024-01-01T00:00:01Z\n');
    // Act
    const report = await checkFile(path);
    // Assess
    expect(report.verdict).toBe('failed');
    expect(report.mapping).toMatchObject({
      headerLooksLikeData: true,
      renamedHeader: ['name', 'value', 'timestamp'],
    });
    expect(checkText(report).join('\n')).toContain('add a first line `name,value,timestamp`');
  });

  it('maps a field named in another letter case in some records of a JSON file, by name not by values', async () => {
    // Prepare
    const path = file(
      'case.ndjson',
      '{"name":"a","value":1,"timestamp":1700000000}\n{"Name":"b","value":2,"timestamp":1700000000,"host":"h"}\n',
    );
    // Act
    const report = await checkFile(path);
    // Assess
    expect(report).toMatchObject({ records: 2, signals: 1, rejected: 1, verdict: 'rejects' });
    expect(report.mapping?.matches).toEqual([expect.objectContaining({ field: 'name', column: 'Name' })]);
    expect(report.mapping).toMatchObject({ acceptedAsIs: 1, acceptedMapped: 2 });
  });

  it('suggests no mapping when records are rejected only for their values', async () => {
    // Prepare
    const path = file('values.ndjson', '{"name":"a","value":"x","timestamp":1700000000,"reading":3}\n');
    // Act
    const report = await checkFile(path);
    // Assess
    expect(report.rejected).toBe(1);
    expect(report.mapping).toBeUndefined();
  });

  it('reports where a broken file fails, and the records before it', async () => {
    // Prepare
    const path = file('broken.csv', 'name,value,timestamp\ncpu,1,1700000000\n"mem,2,1700000000\n');
    // Act
    const report = await checkFile(path);
    // Assess
    expect(report).toMatchObject({ records: 1, signals: 1, verdict: 'failed' });
    expect(report.failure).toMatchObject({ type: 'MalformedFileError', row: 2, line: 3 });
    expect(report.failure?.message).toContain('quoted field is never closed');
    expect(checkExitCode([report])).toBe(3);
  });

  it('reads gzip and zstd files as their suffix says, with the same signals as the plain file', async () => {
    // Prepare
    const plain = file('same.csv', GOOD_CSV);
    const gz = file('same.csv.gz', gzipSync(GOOD_CSV));
    const zst = file('same.csv.zst', zstdCompressSync(GOOD_CSV));
    // Act
    const [p, g, z] = await Promise.all([checkFile(plain), checkFile(gz), checkFile(zst)]);
    // Assess
    expect(g).toMatchObject({ format: 'csv', compression: 'gzip', records: 3, signals: 3, verdict: 'ok' });
    expect(z).toMatchObject({ format: 'csv', compression: 'zstd', records: 3, signals: 3, verdict: 'ok' });
    const strip = (r: typeof p) => r.firstSignals.map(({ id, origin, source, ...rest }) => rest);
    expect(strip(g)).toEqual(strip(p));
    expect(strip(z)).toEqual(strip(p));
  });

  it('counts bytes after the end of a gzip stream as a reject without a row, as the s3-trigger does', async () => {
    // Prepare
    const path = file('trailing.ndjson.gz', Buffer.concat([gzipSync(GOOD_NDJSON), Buffer.from('junk')]));
    // Act
    const report = await checkFile(path);
    // Assess
    expect(report).toMatchObject({ records: 2, signals: 2, rejected: 1, verdict: 'rejects' });
    expect(report.firstRejects[0]?.row).toBeUndefined();
    expect(report.firstRejects[0]?.reason).toMatch(/^gzip: 4 bytes after the end of the compressed data/);
  });

  it('fails a gzip file whose bytes are not gzip', async () => {
    // Prepare
    const path = file('fake.csv.gz', GOOD_CSV);
    // Act
    const report = await checkFile(path);
    // Assess
    expect(report.verdict).toBe('failed');
    expect(report.failure?.type).toBe('MalformedFileError');
  });

  it('reads Parquet, plain and gzip-compressed', async () => {
    // Prepare
    const parquet = new Uint8Array(parquetBytes());
    const plain = file('p.parquet', parquet);
    const gz = file('p.parquet.gz', gzipSync(parquet));
    // Act
    const [p, g] = await Promise.all([checkFile(plain), checkFile(gz)]);
    // Assess
    expect(p).toMatchObject({ format: 'parquet', records: 3, signals: 3, verdict: 'ok' });
    expect(g).toMatchObject({ format: 'parquet', compression: 'gzip', records: 3, signals: 3 });
    expect(p.firstSignals[2]).toMatchObject({ name: 'c', value: 3, timestamp: '2023-11-14T22:13:20.000Z' });
  });

  it('reports a file of a type the pipeline skips, with exit code 3', async () => {
    // Prepare
    const path = file('notes.txt', GOOD_CSV);
    // Act
    const report = await checkFile(path);
    // Assess
    expect(report).toMatchObject({ verdict: 'unsupported', records: 0 });
    expect(report.failure?.message).toContain('it would be SKIPPED');
    expect(checkExitCode([report])).toBe(3);
  });

  it('detects the format from --key, not the local name', async () => {
    // Prepare
    const path = file('export.txt', GOOD_NDJSON);
    // Act
    const report = await checkFile(path, { key: 'incoming/2024/export.jsonl' });
    // Assess
    expect(report).toMatchObject({ key: 'incoming/2024/export.jsonl', format: 'ndjson', signals: 2 });
  });

  it('throws for a file that is not there (no verdict on it)', async () => {
    // Act
    const checking = checkFile(join(dir, 'missing.csv'));
    // Assess
    await expect(checking).rejects.toMatchObject({ code: 'ENOENT' });
  });
});

const GOOD_NDJSON =
  '{"name":"a","value":1,"timestamp":1700000000}\n{"name":"b","value":2,"timestamp":1700000000}\n';

function parquetBytes(): ArrayBuffer {
  return parquetWriteBuffer({
    columnData: [
      { name: 'name', type: 'STRING', data: ['a', 'b', 'c'] },
      { name: 'value', type: 'DOUBLE', data: [1, 2, 3] },
      { name: 'timestamp', type: 'INT64', data: [1700000000n, 1700000000n, 1700000000n] },
    ],
    rowGroupSize: 2,
  });
}

describe('check text', () => {
  it('aligns the rejects and prints what came from the file without its control characters', async () => {
    // Prepare
    const path = file(
      'hostile.ndjson',
      '{"name":"a\\u001b[31m","value":1,"timestamp":1700000000}\n{"name":"b","value":"\\u001b]0;x\\u0007","timestamp":1}\n',
    );
    // Act
    const text = checkSummaryText([await checkFile(path)]);
    // Assess
    // biome-ignore lint/suspicious/noControlCharactersInRegex: finding control characters is the point.
    expect(text).not.toMatch(/[\u001b\u0007]/);
    expect(text).toContain('<U+001B>]0;x<U+0007>');
    expect(text).toMatch(/ {4}row {2}byte {2}reason\n {4}2 {4}56 {4}value must be wholly numeric/);
    expect(text).toContain('1 file checked: 0 ok, 1 with too many rejects, 0 failed, 0 skipped');
  });
});

/** Each GetObject answered from `bytes`, its Range honoured, as S3 does. */
function serve(s3: AwsClientStub<S3Client>, bytes: Buffer): void {
  s3.on(GetObjectCommand).callsFake((input: GetObjectCommandInput) => {
    const m = /^bytes=(\d+)-(\d*)$/.exec(input.Range ?? '');
    const slice = m ? bytes.subarray(Number(m[1]), m[2] ? Number(m[2]) + 1 : undefined) : bytes;
    return { Body: sdkStreamMixin(Readable.from([Buffer.from(slice)])), ContentLength: slice.length };
  });
}

/** The records of `open`'s batches, and the error that ended them, if one did. */
async function readAll(
  open: () => Promise<RecordBatches>,
): Promise<{ records: ParsedRecord[]; error?: string }> {
  const records: ParsedRecord[] = [];
  try {
    for await (const batch of await open()) records.push(...batch);
    return { records };
  } catch (err) {
    return { records, error: `${(err as Error).name}: ${(err as Error).message}` };
  }
}

describe('openLocalRecords', () => {
  const s3 = mockClient(S3Client);
  afterEach(() => {
    s3.reset();
  });

  it.each([
    ['a.csv', Buffer.from(`${GOOD_CSV}bad,row\n`)],
    ['a.csv.gz', gzipSync(`${GOOD_CSV}"unclosed,1,2\n`)],
    ['a.ndjson.zst', zstdCompressSync(`${GOOD_NDJSON}{"broken"\n`)],
    ['a.json', Buffer.from('[{"name":"a","value":1,"timestamp":1}, 3]')],
    ['a.parquet', Buffer.from(parquetBytes())],
    ['a.parquet.gz', gzipSync(Buffer.from(parquetBytes()))],
  ])('yields the records, positions and errors openRecords yields for %s', async (name, bytes) => {
    // Prepare
    const path = file(name, bytes);
    const format = detectFormat(name);
    if (!format) throw new Error(`no format for ${name}`);
    serve(s3, bytes);
    const cleanups: (() => Promise<void>)[] = [];
    // Act
    const deployed = await readAll(async () => {
      const opened = await openRecords(
        s3 as unknown as S3Client,
        { bucket: 'b', key: `incoming/${name}`, etag: 'e' },
        format,
        bytes.length,
        () => {},
        (d) => cleanups.push(d),
      );
      return opened.batches;
    });
    const local = await readAll(async () => {
      const opened = await openLocalRecords(path, bytes.length, format);
      cleanups.push(opened.dispose);
      return opened.batches;
    });
    await Promise.all(cleanups.map((d) => d()));
    // Assess
    expect(local).toEqual(deployed);
    expect(local.records.length).toBeGreaterThan(0);
  });
});
