import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { type AsyncBuffer, parquetMetadataAsync } from 'hyparquet';
import { parquetWriteBuffer } from 'hyparquet-writer';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  asyncBufferFromFile,
  convert,
  parquetRowGroups,
  parseParquet,
} from '../../../../functions/s3-trigger/parsers/parquet.ts';
import { MalformedFileError } from '../../../../shared/errors.ts';
import { collect, drain, OPTS } from './helpers.ts';

const T0 = Date.UTC(2024, 0, 1);

/** 25 rows in row groups of 10, 10 and 5: int64, double, string and timestamp columns. */
function sampleParquet(rows = 25, rowGroupSize = 10): ArrayBuffer {
  return parquetWriteBuffer({
    columnData: [
      { name: 'id', type: 'INT64', data: BigInt64Array.from({ length: rows }, (_, i) => BigInt(i + 1)) },
      { name: 'value', type: 'DOUBLE', data: Float64Array.from({ length: rows }, (_, i) => i * 0.5) },
      { name: 'name', type: 'STRING', data: Array.from({ length: rows }, (_, i) => `metric-${i}`) },
      {
        name: 'timestamp',
        type: 'TIMESTAMP',
        data: Array.from({ length: rows }, (_, i) => new Date(T0 + i * 60_000)),
      },
    ],
    rowGroupSize,
  });
}

function memoryBuffer(bytes: ArrayBuffer): AsyncBuffer & { reads: Array<[number, number]> } {
  const reads: Array<[number, number]> = [];
  return {
    byteLength: bytes.byteLength,
    reads,
    slice(start: number, end?: number) {
      reads.push([start, end ?? bytes.byteLength]);
      return bytes.slice(start, end);
    },
  };
}

describe('parseParquet', () => {
  let dir: string;
  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'parquet-test-'));
  });
  afterAll(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it('reads every row of every row group in order, numbered from 1, with values converted', async () => {
    // Prepare
    const file = memoryBuffer(sampleParquet());

    // Act
    const records = await collect(parseParquet(file, OPTS));

    // Assess
    expect(records).toHaveLength(25);
    expect(records.map((r) => r.row)).toEqual(Array.from({ length: 25 }, (_, i) => i + 1));
    expect(records[0]).toEqual({
      row: 1,
      data: { id: 1, value: 0, name: 'metric-0', timestamp: new Date(T0) },
    });
    expect(records[24]).toEqual({
      row: 25,
      data: { id: 25, value: 12, name: 'metric-24', timestamp: new Date(T0 + 24 * 60_000) },
    });
    expect(records[12]?.data).toEqual({
      id: 13,
      value: 6,
      name: 'metric-12',
      timestamp: new Date(T0 + 12 * 60_000),
    });
  });

  it('lists the row groups as half-open row ranges', async () => {
    // Act
    const groups = await parquetRowGroups(memoryBuffer(sampleParquet()));

    // Assess
    expect(groups).toEqual([
      { index: 0, rowStart: 0, rowEnd: 10 },
      { index: 1, rowStart: 10, rowEnd: 20 },
      { index: 2, rowStart: 20, rowEnd: 25 },
    ]);
  });

  it('reads one row group at a time: the first row needs only the first row group', async () => {
    // Prepare
    const bytes = sampleParquet(3000, 1000);
    const metadata = await parquetMetadataAsync(memoryBuffer(bytes));
    const spans = metadata.row_groups.map((g) => {
      const starts = g.columns.map((c) =>
        Number(c.meta_data?.dictionary_page_offset ?? c.meta_data?.data_page_offset ?? 0),
      );
      const ends = g.columns.map(
        (c, i) => (starts[i] as number) + Number(c.meta_data?.total_compressed_size ?? 0),
      );
      return [Math.min(...starts), Math.max(...ends)] as const;
    });
    const file = memoryBuffer(bytes);
    const records = parseParquet(file, OPTS);

    // Act
    const first = await records.next();
    const readsForFirstRow = file.reads.slice(1); // after the footer
    await records.return(undefined);

    // Assess
    expect(first.value).toMatchObject({ row: 1, data: { id: 1 } });
    expect(readsForFirstRow.length).toBeGreaterThan(0);
    const [groupStart, groupEnd] = spans[0] as readonly [number, number];
    for (const [start, end] of readsForFirstRow) {
      expect(start).toBeGreaterThanOrEqual(groupStart);
      expect(end).toBeLessThanOrEqual(groupEnd);
    }
  });

  it('turns int64 beyond 2^53 into a decimal string and keeps smaller ones numbers', async () => {
    // Prepare
    const bytes = parquetWriteBuffer({
      columnData: [{ name: 'big', type: 'INT64', data: BigInt64Array.from([1n, -(2n ** 60n), 2n ** 53n]) }],
    });

    // Act
    const records = await collect(parseParquet(memoryBuffer(bytes), OPTS));

    // Assess
    expect(records.map((r) => r.data?.big)).toEqual([1, '-1152921504606846976', '9007199254740992']);
  });

  it('converts bigints inside lists and structs, and leaves dates and bytes alone', () => {
    // Prepare
    const date = new Date(T0);
    const bytes = new Uint8Array([1, 2]);

    // Act
    const out = convert({ a: [1n, { b: 2n ** 63n - 1n }], date, bytes, s: 'x', n: null });

    // Assess
    expect(out).toEqual({ a: [1, { b: '9223372036854775807' }], date, bytes, s: 'x', n: null });
    expect((out as { date: unknown }).date).toBe(date);
  });

  it('fails on a file that is not Parquet', async () => {
    // Prepare
    const file = memoryBuffer(new TextEncoder().encode('a,b\n1,2\n3,4\n5,6\n').buffer as ArrayBuffer);

    // Act
    const { error } = await drain(parseParquet(file, OPTS));

    // Assess
    expect(error).toBeInstanceOf(MalformedFileError);
    expect(error?.message).toContain('PAR1');
  });

  it.each([
    ['an empty file', 0],
    ['a file shorter than the Parquet framing', 8],
  ])('fails on %s', async (_name, size) => {
    // Act
    const { error } = await drain(parseParquet(memoryBuffer(new ArrayBuffer(size)), OPTS));

    // Assess
    expect(error).toBeInstanceOf(MalformedFileError);
  });

  it('fails on a corrupt footer', async () => {
    // Prepare
    const bytes = new Uint8Array(sampleParquet());
    const footerLength = new DataView(bytes.buffer).getUint32(bytes.length - 8, true);
    for (let i = bytes.length - 8 - footerLength; i < bytes.length - 8; i++) bytes[i] = 0xff;

    // Act
    const { error } = await drain(parseParquet(memoryBuffer(bytes.buffer), OPTS));

    // Assess
    expect(error).toBeInstanceOf(MalformedFileError);
  });

  it('fails on corrupt column data, saying at which row its row group starts', async () => {
    // Prepare
    const bytes = new Uint8Array(sampleParquet());
    for (let i = 4; i < 200; i++) bytes[i] = (bytes[i] as number) ^ 0x5a;

    // Act
    const { records, error } = await drain(parseParquet(memoryBuffer(bytes.buffer), OPTS));

    // Assess
    expect(records).toEqual([]);
    expect(error).toBeInstanceOf(MalformedFileError);
    expect((error as MalformedFileError).location).toEqual({ row: 1 });
  });

  it('lets errors from reading the file through unchanged, so they stay retryable', async () => {
    // Prepare
    const bytes = sampleParquet();
    const throttled = Object.assign(new Error('Slow Down'), { name: 'SlowDown' });
    let calls = 0;
    const file: AsyncBuffer = {
      byteLength: bytes.byteLength,
      slice(start, end) {
        calls++;
        if (calls > 1) return Promise.reject(throttled);
        return bytes.slice(start, end);
      },
    };

    // Act
    const { error } = await drain(parseParquet(file, OPTS));

    // Assess
    expect(error).toBe(throttled);
  });

  it('reads a file on disk through range reads', async () => {
    // Prepare
    const path = join(dir, 'sample.parquet');
    await writeFile(path, new Uint8Array(sampleParquet()));

    // Act
    const file = await asyncBufferFromFile(path);
    const records = await collect(parseParquet(file, OPTS));

    // Assess
    expect(records).toHaveLength(25);
    expect(records[24]).toMatchObject({ row: 25, data: { id: 25, name: 'metric-24' } });
  });
});

describe('asyncBufferFromFile', () => {
  it('returns exactly the requested byte ranges', async () => {
    // Prepare
    const dir = await mkdtemp(join(tmpdir(), 'asyncbuffer-test-'));
    const path = join(dir, 'bytes.bin');
    await writeFile(path, Buffer.from('0123456789'));

    try {
      // Act
      const file = await asyncBufferFromFile(path);
      const text = async (start: number, end?: number) =>
        Buffer.from(await file.slice(start, end)).toString();

      // Assess
      expect(file.byteLength).toBe(10);
      expect(await text(2, 5)).toBe('234');
      expect(await text(7)).toBe('789');
      expect(await text(4, 4)).toBe('');
      expect(await text(8, 50)).toBe('89');
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});
