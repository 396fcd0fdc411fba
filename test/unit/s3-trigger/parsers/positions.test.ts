import { parquetWriteBuffer } from 'hyparquet-writer';
import { describe, expect, it } from 'vitest';
import { MalformedFileError } from '#shared/errors.ts';
import { csvHeaderLength, parseCsv } from '../../../../functions/s3-trigger/parsers/csv.ts';
import { parseNdjson } from '../../../../functions/s3-trigger/parsers/ndjson.ts';
import { parseParquet } from '../../../../functions/s3-trigger/parsers/parquet.ts';
import type { ParsedRecord } from '../../../../functions/s3-trigger/parsers/types.ts';
import { chunkings, collect, OPTS, source } from './helpers.ts';

/**
 * Record positions, the ground checkpoints stand on: `end` must be the exact byte offset just past a
 * record, so that parsing the rest of the file from there yields exactly the records that follow.
 */
const POS = { ...OPTS, positions: true };
const bytes = (s: string) => Buffer.byteLength(s);
const BOM = '\uFEFF';

/** Offsets just past each of `lines` (each given with its line end) after `before`. */
function endsOf(before: string, lines: string[]): number[] {
  let at = bytes(before);
  return lines.map((l) => {
    at += bytes(l);
    return at;
  });
}

describe('CSV record positions', () => {
  const header = `${BOM}name,note\r\n`;
  // Each record with the empty lines before it; a record ends past its own line end, not past blank lines.
  const recordLines = [
    'cpu,"a,b"\r\n',
    '\r\nmem,"two\r\nlines"\n',
    '\n\ndïsk,€uro 😀\r\n',
    'net,x,extra\r\n',
    'io,last',
  ];
  const text = header + recordLines.join('');
  const expected = endsOf(header, recordLines).map((end, i) => ({ row: i + 1, end }));

  for (const { name, chunks } of chunkings(text)) {
    it(`reports the byte just past each record, BOM, CRLF, quoted newlines, UTF-8 and empty lines included (${name})`, async () => {
      const records = await collect(parseCsv(source(chunks), POS));
      expect(records.map((r) => ({ row: r.row, end: r.end }))).toEqual(expected);
      expect(records[3]).toMatchObject({ error: 'expected 2 fields, got 3' });
    });
  }

  it('reports nothing extra unless asked', async () => {
    const records = await collect(parseCsv(source([text]), OPTS));
    expect(records.every((r) => r.end === undefined)).toBe(true);
  });

  it('yields exactly the following records when the header is joined to the bytes from any record end', async () => {
    // Prepare
    const all = await collect(parseCsv(source([text]), POS));
    const buf = Buffer.from(text);
    const headerLength = csvHeaderLength(buf, true, OPTS.maxRecordBytes) as number;
    expect(headerLength).toBe(bytes(header));
    for (const [i, cut] of all.entries()) {
      // Act
      const rest = await collect(
        parseCsv(source([buf.subarray(0, headerLength), buf.subarray(cut.end as number)]), POS),
      );
      // Assess
      const shifted = rest.map((r) => ({
        ...r,
        row: r.row + cut.row,
        end: (r.end as number) - headerLength + (cut.end as number),
      }));
      expect(shifted).toEqual(all.slice(i + 1));
    }
  });
});

describe('csvHeaderLength', () => {
  it('asks for more bytes until the header record ends, quoted newlines included', () => {
    const text = 'a,"b\nc"\r\n1,2\r\n';
    const buf = Buffer.from(text);
    expect(csvHeaderLength(buf.subarray(0, 5), false, OPTS.maxRecordBytes)).toBeUndefined();
    expect(csvHeaderLength(buf.subarray(0, 9), false, OPTS.maxRecordBytes)).toBeUndefined();
    expect(csvHeaderLength(buf, false, OPTS.maxRecordBytes)).toBe(bytes('a,"b\nc"\r\n'));
  });

  it('counts a BOM and the empty lines before the header', () => {
    expect(csvHeaderLength(Buffer.from(`${BOM}\n\na,b\n1,2\n`), false, OPTS.maxRecordBytes)).toBe(
      bytes(`${BOM}\n\na,b\n`),
    );
  });

  it('reads a header that ends the file without a line end', () => {
    expect(csvHeaderLength(Buffer.from('a,b'), true, OPTS.maxRecordBytes)).toBe(3);
  });

  it('fails on a file with no header at all', () => {
    expect(() => csvHeaderLength(Buffer.from('\n\n'), true, OPTS.maxRecordBytes)).toThrow(MalformedFileError);
  });
});

describe('NDJSON record positions', () => {
  const lines = ['{"a":1}\r\n', '\n', '   \n', 'not json\n', '{"ü":"€😀"}\n', '[1]\n', '{"a":2}'];
  const text = BOM + lines.join('');
  // Blank lines are not records; line 2 and 3 are blank.
  const ends = endsOf(BOM, lines);
  const expected = [0, 3, 4, 5, 6].map((i) => ({ row: i + 1, end: ends[i] }));

  for (const { name, chunks } of chunkings(text)) {
    it(`reports the byte just past each line's newline, BOM and multi-byte characters included (${name})`, async () => {
      const records = await collect(parseNdjson(source(chunks), POS));
      expect(records.map((r) => ({ row: r.row, end: r.end }))).toEqual(expected);
    });
  }

  it('reports the end of an over-long line, in the middle of the file and at its end', async () => {
    const long = `{"x":"${'y'.repeat(200)}"}`;
    const t = `${long}\n{"a":1}\n${long}`;
    const records = await collect(parseNdjson(source([t]), { maxRecordBytes: 100, positions: true }));
    expect(records.map((r) => [r.row, r.end, r.error !== undefined])).toEqual([
      [1, bytes(long) + 1, true],
      [2, bytes(long) + 9, false],
      [3, bytes(t), true],
    ]);
  });

  it('yields exactly the following lines when read again from any record end behind a newline', async () => {
    const all = await collect(parseNdjson(source([text]), POS));
    const buf = Buffer.from(text);
    for (const [i, cut] of all.entries()) {
      // A leading newline keeps a line that happens to start with U+FEFF from being taken for a BOM.
      const rest = await collect(
        parseNdjson(source([Buffer.from('\n'), buf.subarray(cut.end as number)]), POS),
      );
      const shifted = rest.map((r) => ({
        ...r,
        row: r.row - 1 + cut.row,
        end: (r.end as number) - 1 + (cut.end as number),
      }));
      expect(shifted).toEqual(all.slice(i + 1));
    }
  });
});

describe('Parquet row groups', () => {
  const file = parquetWriteBuffer({
    columnData: [{ name: 'value', type: 'INT32', data: Int32Array.from({ length: 7 }, (_, i) => i) }],
    rowGroupSize: 3,
  });
  const memory = { byteLength: file.byteLength, slice: async (s: number, e?: number) => file.slice(s, e) };

  it('tags each row with its row group when asked', async () => {
    const records = await collect(parseParquet(memory, POS));
    expect(records.map((r: ParsedRecord) => [r.row, r.rowGroup])).toEqual([
      [1, 0],
      [2, 0],
      [3, 0],
      [4, 1],
      [5, 1],
      [6, 1],
      [7, 2],
    ]);
  });

  it('starts at a given row group with the file-wide row numbers', async () => {
    const records = await collect(parseParquet(memory, { ...OPTS, fromRowGroup: 1 }));
    expect(records).toEqual([
      { row: 4, data: { value: 3 } },
      { row: 5, data: { value: 4 } },
      { row: 6, data: { value: 5 } },
      { row: 7, data: { value: 6 } },
    ]);
  });
});
