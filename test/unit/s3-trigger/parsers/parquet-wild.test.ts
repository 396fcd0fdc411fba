import { fileURLToPath } from 'node:url';
import { brotliCompressSync, constants, gzipSync, zstdCompressSync } from 'node:zlib';
import type { AsyncBuffer, CompressionCodec } from 'hyparquet';
import { parquetWriteBuffer } from 'hyparquet-writer';
import { snappyCompress } from 'hyparquet-writer/src/snappy.js';
import { describe, expect, it } from 'vitest';
import { InflationLimitError, MalformedFileError, UnsupportedFormatError } from '#shared/errors.ts';
import { asyncBufferFromFile, parseParquet } from '../../../../functions/s3-trigger/parsers/parquet.ts';
import { lz4BlockLength } from '../../../../functions/s3-trigger/parsers/parquet-codecs.ts';
import { decimalValue } from '../../../../functions/s3-trigger/parsers/parquet-values.ts';
import { collect, drain, OPTS } from './helpers.ts';

/**
 * Parquet as it comes from elsewhere: every codec, compression bombs of each, the conformance files of
 * Apache's parquet-testing (test/fixtures/parquet/conformance), encryption. The corpus the usual writers
 * made is read in parquet-corpus.test.ts.
 */

type Compress = (bytes: Uint8Array) => Uint8Array;

const conformance = (name: string) =>
  fileURLToPath(new URL(`../../../fixtures/parquet/conformance/${name}`, import.meta.url));

function memoryBuffer(bytes: ArrayBuffer): AsyncBuffer {
  return { byteLength: bytes.byteLength, slice: (start, end) => bytes.slice(start, end) };
}

/**
 * An LZ4 block of `bytes`: runs of one byte become a literal and a copy of the byte before (offset 1). As
 * the format requires, the last five bytes stay literals.
 */
function lz4Block(bytes: Uint8Array): Uint8Array {
  const out: number[] = [];
  const length = (n: number) => {
    for (n -= 15; n >= 255; n -= 255) out.push(255);
    out.push(n);
  };
  const sequence = (literals: Uint8Array, match?: number) => {
    const lit = Math.min(literals.length, 15);
    const m = match === undefined ? 0 : Math.min(match - 4, 15);
    out.push((lit << 4) | m);
    if (literals.length >= 15) length(literals.length);
    out.push(...literals);
    if (match === undefined) return;
    out.push(1, 0);
    if (match - 4 >= 15) length(match - 4);
  };
  let start = 0;
  let i = 0;
  while (i < bytes.length) {
    let run = 1;
    while (i + run < bytes.length - 5 && bytes[i + run] === bytes[i]) run++;
    if (run >= 6) {
      // The byte itself as the last literal, then a copy of it for the rest of the run.
      sequence(bytes.subarray(start, i + 1), run - 1);
      start = i + run;
    }
    i += run;
  }
  sequence(bytes.subarray(start));
  return Uint8Array.from(out);
}

/** LZ4 as Hadoop frames it: the output and input sizes (big-endian) before the block. */
function hadoopLz4(bytes: Uint8Array): Uint8Array {
  const block = lz4Block(bytes);
  const out = new Uint8Array(8 + block.length);
  const view = new DataView(out.buffer);
  view.setUint32(0, bytes.length);
  view.setUint32(4, block.length);
  out.set(block, 8);
  return out;
}

const COMPRESSORS: Record<string, Compress> = {
  SNAPPY: snappyCompress,
  GZIP: (b) => gzipSync(b),
  BROTLI: (b) => brotliCompressSync(b, { params: { [constants.BROTLI_PARAM_QUALITY]: 4 } }),
  ZSTD: (b) => zstdCompressSync(b),
  LZ4_RAW: lz4Block,
  LZ4: hadoopLz4,
};
const CODECS = Object.keys(COMPRESSORS) as CompressionCodec[];

/** A file of `rows` rows: name, value and timestamp, the value column PLAIN (no dictionary). */
function signalsFile(
  codec: CompressionCodec,
  rows: number,
  compress: Compress = COMPRESSORS[codec] as Compress,
) {
  return parquetWriteBuffer({
    codec,
    compressors: { [codec]: compress },
    rowGroupSize: rows,
    columnData: [
      { name: 'name', type: 'STRING', data: Array.from({ length: rows }, (_, i) => `m${i % 3}`) },
      {
        name: 'value',
        type: 'DOUBLE',
        data: Float64Array.from({ length: rows }, () => 0),
        encoding: 'PLAIN',
      },
      {
        name: 'timestamp',
        type: 'TIMESTAMP',
        data: Array.from({ length: rows }, (_, i) => new Date(Date.UTC(2024, 0, 1) + i * 1000)),
      },
    ],
  });
}

/** A file of one PLAIN column of `rows` zero doubles in one row group: 8 bytes a row, compressed to little. */
function zerosFile(codec: CompressionCodec, rows: number) {
  return parquetWriteBuffer({
    codec,
    compressors: { [codec]: COMPRESSORS[codec] as Compress },
    rowGroupSize: rows,
    columnData: [
      {
        name: 'value',
        type: 'DOUBLE',
        data: Float64Array.from({ length: rows }, () => 0),
        encoding: 'PLAIN',
      },
    ],
  });
}

describe('Parquet codecs', () => {
  it.each(CODECS)('reads a file whose pages are %s-compressed, value for value', async (codec) => {
    // Prepare
    const bytes = signalsFile(codec, 300);

    // Act
    const records = await collect(parseParquet(memoryBuffer(bytes), OPTS));

    // Assess
    expect(records).toHaveLength(300);
    expect(records[299]).toEqual({
      row: 300,
      data: { name: 'm2', value: 0, timestamp: new Date(Date.UTC(2024, 0, 1) + 299_000) },
    });
  });

  it.each(['GZIP', 'BROTLI', 'ZSTD'] as CompressionCodec[])(
    'reads a %s page compressed far better than Snappy can (2 MiB of zeros), which the old guard took for corrupt',
    async (codec) => {
      // Prepare: 262,144 zero doubles in PLAIN pages, a few hundred bytes compressed
      const bytes = zerosFile(codec, 262_144);

      // Act
      const records = await collect(parseParquet(memoryBuffer(bytes), OPTS));

      // Assess
      expect(records).toHaveLength(262_144);
      expect(records.every((r) => r.data?.value === 0)).toBe(true);
    },
  );

  it.each(CODECS)(
    'fails a %s page whose data inflates past the size its header declares (a bomb) with the inflation error',
    async (codec) => {
      // Prepare: each page's data is the page followed by 16 MiB of zeros; its header declares the page alone
      const pad = new Uint8Array(16 * 2 ** 20);
      const compress = COMPRESSORS[codec] as Compress;
      const bytes = signalsFile(codec, 10, (page) => compress(Buffer.concat([page, pad])));

      // Act
      const { records, error } = await drain(parseParquet(memoryBuffer(bytes), OPTS));

      // Assess
      expect(records).toEqual([]);
      expect(error).toBeInstanceOf(InflationLimitError);
      expect(error?.message).toMatch(
        new RegExp(
          `^Parquet row group 0: a ${codec} page inflates to (\\d+ bytes, )?more than the \\d+ bytes its header declares`,
        ),
      );
      expect((error as InflationLimitError).location).toEqual({ row: 1 });
    },
  );

  it.each(CODECS)(
    'fails a row group whose %s pages declare more than the inflation bound, before decoding them',
    async (codec) => {
      // Prepare: 2 MiB of zeros, honestly declared, against a bound of 10× or 1 MiB
      const bytes = zerosFile(codec, 262_144);
      const inflation = { maxInflationRatio: 10, minInflatedBytesAllowed: 2 ** 20 };

      // Act
      const { error } = await drain(parseParquet(memoryBuffer(bytes), { ...OPTS, inflation }));

      // Assess
      expect(error).toBeInstanceOf(InflationLimitError);
      expect(error?.message).toMatch(
        /^Parquet row group 0: its pages declare \d+ bytes uncompressed from \d+ compressed/,
      );
    },
  );

  it('fails a file compressed with LZO as one it does not read, naming the codec, not as corrupt', async () => {
    // Prepare
    const bytes = signalsFile('LZO', 5, (b) => b);

    // Act
    const { error } = await drain(parseParquet(memoryBuffer(bytes), OPTS));

    // Assess
    expect(error).toBeInstanceOf(UnsupportedFormatError);
    expect(error?.message).toBe(
      'Parquet row group 0, column "name": LZO is not a compression codec Pulse Ingest reads ' +
        '(it reads UNCOMPRESSED, SNAPPY, GZIP, BROTLI, LZ4, LZ4_RAW, ZSTD)',
    );
  });

  it('measures an LZ4 block from its sequences, and refuses one whose lengths run past its end', () => {
    // Prepare
    const data = Buffer.concat([Buffer.from('abc'), new Uint8Array(1000).fill(7), Buffer.from('xyz')]);
    const block = lz4Block(data);

    // Act
    const lengths = [lz4BlockLength(block), lz4BlockLength(block.subarray(0, block.length - 2))];

    // Assess
    expect(lengths).toEqual([1006, -1]);
  });
});

describe('Parquet conformance files (parquet-testing)', () => {
  const readAll = async (name: string) =>
    drain(parseParquet(await asyncBufferFromFile(conformance(name)), OPTS));

  it.each([
    'hadoop_lz4_compressed.parquet',
    'non_hadoop_lz4_compressed.parquet',
    'lz4_raw_compressed.parquet',
  ])('reads %s', async (name) => {
    // Act
    const { records, error } = await readAll(name);

    // Assess
    expect(error).toBeUndefined();
    expect(records.map((r) => r.data)).toEqual([
      { c0: 1593604800, c1: 'abc', v11: 42 },
      { c0: 1593604800, c1: 'def', v11: 7.7 },
      { c0: 1593604801, c1: 'abc', v11: 42.125 },
      { c0: 1593604801, c1: 'def', v11: 7.7 },
    ]);
  });

  it('reads GZIP pages made of several gzip members', async () => {
    // Act
    const { records, error } = await readAll('concatenated_gzip_members.parquet');

    // Assess
    expect(error).toBeUndefined();
    expect(records.map((r) => r.data?.long_col)).toEqual(Array.from({ length: 513 }, (_, i) => i + 1));
  });

  it.each(['int32_decimal', 'int64_decimal', 'byte_array_decimal', 'fixed_length_decimal'])(
    'reads the DECIMAL(_, 2) values of %s exactly',
    async (name) => {
      // Act
      const { records, error } = await readAll(`${name}.parquet`);

      // Assess
      expect(error).toBeUndefined();
      expect(records.map((r) => r.data?.value)).toEqual(Array.from({ length: 24 }, (_, i) => i + 1));
    },
  );

  it('reads Spark INT96 timestamps, and rejects the one no Date can hold with the reason', async () => {
    // Act
    const { records, error } = await readAll('int96_from_spark.parquet');

    // Assess: the sixth, 290000-12-31T01:00:00+02:00, was stored by Spark's overflowing arithmetic
    expect(error).toBeUndefined();
    expect(records.slice(0, 5).map((r) => r.data?.a)).toEqual([
      new Date('2024-01-01T20:34:56.123Z'),
      new Date('2024-01-01T01:00:00.000Z'),
      new Date('9999-12-31T03:00:00.000Z'),
      new Date('2024-12-30T23:00:00.000Z'),
      null,
    ]);
    expect(records[5]).toEqual({
      row: 6,
      error:
        'column "a": INT96 timestamp (Julian day -105862232, -32509551616000 ns) has a time of day outside one day, so it names no instant',
    });
  });

  it('fails Brotli pages declaring 2 GiB from 3 KB with the inflation error, not as corrupt', async () => {
    // Act
    const { error } = await readAll('large_string_map.brotli.parquet');

    // Assess
    expect(error).toBeInstanceOf(InflationLimitError);
    expect(error?.message).not.toContain('corrupt');
    expect(error?.message).toContain('its pages declare 2147483702 bytes uncompressed from 3427 compressed');
  });

  it.each([
    ['encrypt_columns_and_footer.parquet.encrypted', 'its footer is, "PARE"'],
    [
      'encrypt_columns_plaintext_footer.parquet.encrypted',
      'column "float_field" is, under a plaintext footer',
    ],
  ])('fails %s as encrypted', async (name, which) => {
    // Act
    const { error } = await readAll(name);

    // Assess
    expect(error).toBeInstanceOf(UnsupportedFormatError);
    expect(error).not.toBeInstanceOf(MalformedFileError);
    expect(error?.message).toBe(
      `Parquet file is encrypted (${which}): Pulse Ingest does not decrypt Parquet files (no keys are configured): ` +
        'write the file without encryption',
    );
  });
});

describe('decimalValue', () => {
  it.each([
    [1001n, 3, 1.001],
    [-12_345_678n, 3, -12345.678],
    [100n, 2, 1],
    [0n, 5, 0],
    [1n, 7, 1e-7],
    [15n, -20, 1.5e21],
    [123_456_789_012_345_678_901_234_567_890n, 10, '12345678901234567890.123456789'],
    [-(2n ** 70n), 0, '-1180591620717411303424'],
  ])('gives %s × 10^-%i as %s', (unscaled, scale, expected) => {
    // Act
    const value = decimalValue(unscaled, scale);

    // Assess
    expect(value).toBe(expected);
  });
});
