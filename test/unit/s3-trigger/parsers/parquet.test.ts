import { execFile } from 'node:child_process';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { type AsyncBuffer, parquetMetadataAsync } from 'hyparquet';
import { parquetWriteBuffer } from 'hyparquet-writer';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { MalformedFileError } from '#shared/errors.ts';
import {
  asyncBufferFromFile,
  parquetRowGroups,
  parseParquet,
} from '../../../../functions/s3-trigger/parsers/parquet.ts';
import { bigintsToNumbers } from '../../../../functions/s3-trigger/parsers/parquet-values.ts';
import type { ParquetDecoderLimits } from '../../../../functions/s3-trigger/parsers/types.ts';
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
    const out = bigintsToNumbers({ a: [1n, { b: 2n ** 63n - 1n }], date, bytes, s: 'x', n: null });

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
    expect((error as MalformedFileError).location).toEqual({ row: 1, byteOffset: 4 });
    expect(error?.message).toContain('row group 0, column "id", at byte 4');
  });

  it('fails a page header with a missing level length instead of decoding it forever', async () => {
    // Prepare: a 20-row file (row groups of 8) with a corrupted page header in row group 1, found by the
    // property tests; hyparquet decoded it in a synchronous loop that never returned. A hang cannot be
    // stopped from inside the process, so the file is parsed in a child process with a deadline.
    const path = fileURLToPath(
      new URL('../../../fixtures/parquet/corrupt-page-header.parquet', import.meta.url),
    );

    // Act
    const outcome = await parseInChild(path, 20_000);

    // Assess
    expect(outcome).toEqual({
      rows: [1, 2, 3, 4, 5, 6, 7, 8],
      error: {
        name: 'MalformedFileError',
        message: expect.stringContaining('row group 1, column "id", at byte 415'),
        location: { row: 9, byteOffset: 415 },
      },
    });
  });

  it('stops a row group whose page data keeps the decoder looping, at its deadline', async () => {
    // Prepare: an uncompressed dictionary page given bit width 0 and the run header 0x81 80 80 80 02,
    // which overflows to a negative count: hyparquet's readRleBitPackedHybrid then never returns. Page
    // headers are fine, so only the decoder process's deadline can stop it.
    const path = fileURLToPath(
      new URL('../../../fixtures/parquet/rle-negative-run.parquet', import.meta.url),
    );

    // Act
    const outcome = await parseInChild(path, 30_000, { baseSeconds: 2, perMiBSeconds: 1, heapMb: 128 });

    // Assess
    expect(outcome).toEqual({
      rows: [],
      error: {
        name: 'MalformedFileError',
        message: expect.stringContaining('row group 0 was not decoded within 2 s'),
        location: { row: 1 },
      },
    });
  });

  it('fails a tiny file that claims millions of rows when decoding it outgrows the decoder heap', async () => {
    // Prepare: 4,000,000 nulls in one row group take 156 bytes on disk and far more than 16 MB decoded.
    const dir = await mkdtemp(join(tmpdir(), 'parquet-bomb-'));
    const path = join(dir, 'bomb.parquet');
    const rows = 4_000_000;
    await writeFile(
      path,
      Buffer.from(
        parquetWriteBuffer({
          columnData: [{ name: 'name', type: 'STRING', data: new Array(rows).fill(null) }],
          rowGroupSize: rows,
        }),
      ),
    );
    try {
      // Act
      const outcome = await parseInChild(path, 60_000, { baseSeconds: 30, perMiBSeconds: 1, heapMb: 16 });
      // Assess
      expect(outcome).toEqual({
        rows: [],
        error: {
          name: 'MalformedFileError',
          message: expect.stringMatching(/row group 0 \(4000000 rows\) could not be decoded within 16 MB/),
          location: { row: 1 },
        },
      });
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  it('fails a column chunk the schema does not have before decoding, leaving no rejection unhandled', async () => {
    // Prepare: in the last row group, the "timestamp" chunk's path renamed and the "id" chunk's data
    // corrupted. hyparquet threw on the unknown path from inside its read loop after starting the "id"
    // read, whose failure then rejected with no handler: an unhandled rejection ends a Lambda invocation.
    const bytes = new Uint8Array(sampleParquet());
    const metadata = await parquetMetadataAsync(memoryBuffer(bytes.buffer));
    bytes[Buffer.from(bytes).lastIndexOf('timestamp') + 8] = 0x51; // "timestamQ"
    const id = metadata.row_groups[2]?.columns[0]?.meta_data;
    const idEnd = Number(id?.data_page_offset) + Number(id?.total_compressed_size);
    bytes.fill(0xff, idEnd - 30, idEnd);
    const unhandled: unknown[] = [];
    const onUnhandled = (reason: unknown) => unhandled.push(reason);
    process.on('unhandledRejection', onUnhandled);

    try {
      // Act
      const { records, error } = await drain(parseParquet(memoryBuffer(bytes.buffer), OPTS));
      await new Promise((resolve) => setTimeout(resolve, 20));

      // Assess
      expect(records).toHaveLength(20);
      expect(error).toBeInstanceOf(MalformedFileError);
      expect(error?.message).toContain('row group 2, column "timestamQ"');
      expect(error?.message).toContain('the schema has no such column');
      expect(unhandled).toEqual([]);
    } finally {
      process.off('unhandledRejection', onUnhandled);
    }
  });

  it('fails a page that claims more values than its column chunk holds', async () => {
    // Prepare: the first data page's num_values (field 5.1, zigzag varint 8 -> 0x10) set to 9 (0x12).
    const bytes = new Uint8Array(sampleParquet(8, 8));
    const metadata = await parquetMetadataAsync(memoryBuffer(bytes.buffer));
    const idPage = Number(metadata.row_groups[0]?.columns[0]?.meta_data?.data_page_offset);
    const at = findPageValueCount(bytes, idPage, 8);
    bytes[at] = 0x12;

    // Act
    const { records, error } = await drain(parseParquet(memoryBuffer(bytes.buffer), OPTS));

    // Assess
    expect(records).toEqual([]);
    expect(error).toBeInstanceOf(MalformedFileError);
    expect(error?.message).toContain(`row group 0, column "id", at byte ${idPage}`);
    expect(error?.message).toContain("more values than the column chunk's 8");
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

/**
 * Byte offset of the data page header's `num_values` in the page header at `pageAt`: thrift compact field
 * 8 (DataPageHeaderV2, a struct) then its field 1, an i32 zigzag varint equal to `count`.
 */
function findPageValueCount(bytes: Uint8Array, pageAt: number, count: number): number {
  for (let i = pageAt; i < pageAt + 32; i++) {
    if (bytes[i] === 0x5c && bytes[i + 1] === 0x15 && bytes[i + 2] === count * 2) return i + 2;
  }
  throw new Error(`no DataPageHeaderV2.num_values = ${count} near byte ${pageAt}`);
}

/** The rows and error of parsing a Parquet file in a child process, or a rejection if it outlives `ms`. */
async function parseInChild(path: string, ms: number, limits?: ParquetDecoderLimits): Promise<unknown> {
  const parser = fileURLToPath(
    new URL('../../../../functions/s3-trigger/parsers/parquet.ts', import.meta.url),
  );
  const script = `
    import { readFileSync } from 'node:fs';
    const { parseParquet } = await import(${JSON.stringify(parser)});
    const b = readFileSync(${JSON.stringify(path)});
    const ab = b.buffer.slice(b.byteOffset, b.byteOffset + b.length);
    const file = { byteLength: ab.byteLength, slice: (s, e) => ab.slice(s, e) };
    const rows = [];
    let error;
    try {
      for await (const r of parseParquet(file, { maxRecordBytes: 1048576, parquetDecoder: ${JSON.stringify(limits)} })) rows.push(r.row);
    } catch (e) {
      error = { name: e.name, message: e.message, location: e.location };
    }
    process.stdout.write(JSON.stringify({ rows, error }));
  `;
  await readFile(path); // a missing fixture fails here, not as a timeout
  return new Promise((resolve, reject) => {
    execFile(
      process.execPath,
      ['--import', 'tsx', '--input-type=module', '-e', script],
      { timeout: ms, killSignal: 'SIGKILL' },
      (err, stdout, stderr) => {
        if (err) {
          const hung = err.killed ? `did not finish within ${ms} ms (a hang)` : stderr;
          reject(new Error(`parsing ${path} in a child process failed: ${hung}`));
        } else {
          resolve(JSON.parse(stdout));
        }
      },
    );
  });
}

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
