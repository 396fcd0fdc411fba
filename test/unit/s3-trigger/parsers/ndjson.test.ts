import { describe, expect, it } from 'vitest';
import { parseNdjson } from '../../../../functions/s3-trigger/parsers/ndjson.ts';
import { chunkings, collect, OPTS, source, split } from './helpers.ts';

const parse = (text: string | Buffer, opts = OPTS) => parseNdjson(source([Buffer.from(text)]), opts);

describe('parseNdjson', () => {
  it('yields one record per line, numbered by physical line', async () => {
    // Prepare
    const text = '{"name":"cpu","value":1}\n{"name":"mem","value":"2","nested":{"a":[1,2]}}\n';

    // Act
    const records = await collect(parse(text));

    // Assess
    expect(records).toEqual([
      { row: 1, data: { name: 'cpu', value: 1 } },
      { row: 2, data: { name: 'mem', value: '2', nested: { a: [1, 2] } } },
    ]);
  });

  it('strips a BOM and the \\r of CRLF line ends', async () => {
    // Prepare
    const text = '\ufeff{"a":1}\r\n{"b":"x"}\r\n';

    // Act
    const records = await collect(parse(text));

    // Assess
    expect(records).toEqual([
      { row: 1, data: { a: 1 } },
      { row: 2, data: { b: 'x' } },
    ]);
  });

  it('skips blank and whitespace-only lines but still counts them in the numbering', async () => {
    // Prepare
    const text = '\n{"a":1}\n   \n\t\r\n\r\n{"a":2}\n\n';

    // Act
    const records = await collect(parse(text));

    // Assess
    expect(records).toEqual([
      { row: 2, data: { a: 1 } },
      { row: 6, data: { a: 2 } },
    ]);
  });

  it('reads a last line that has no line end', async () => {
    // Act
    const records = await collect(parse('{"a":1}\n{"a":2}'));

    // Assess
    expect(records).toEqual([
      { row: 1, data: { a: 1 } },
      { row: 2, data: { a: 2 } },
    ]);
  });

  it('rejects a line that is not JSON with the parser reason, and goes on', async () => {
    // Prepare
    const text = '{"a":1}\n{"a":2,}\nnot json\n{"a":3}\n';

    // Act
    const records = await collect(parse(text));

    // Assess
    expect(records).toHaveLength(4);
    expect(records[0]).toEqual({ row: 1, data: { a: 1 } });
    expect(records[1]).toMatchObject({
      row: 2,
      raw: '{"a":2,}',
      error: expect.stringMatching(/^invalid JSON: /),
    });
    expect(records[2]).toMatchObject({
      row: 3,
      raw: 'not json',
      error: expect.stringMatching(/^invalid JSON: /),
    });
    expect(records[3]).toEqual({ row: 4, data: { a: 3 } });
  });

  it.each([['[1,2]'], ['42'], ['null'], ['"text"'], ['true']])(
    'rejects %s: JSON, but not an object',
    async (line) => {
      // Act
      const records = await collect(parse(`${line}\n{"ok":true}\n`));

      // Assess
      expect(records).toEqual([
        { row: 1, error: 'record must be an object', raw: line },
        { row: 2, data: { ok: true } },
      ]);
    },
  );

  it('rejects a line that is not UTF-8 and goes on', async () => {
    // Prepare
    const bytes = Buffer.concat([
      Buffer.from('{"a":"'),
      Buffer.from([0xff, 0xfe]),
      Buffer.from('"}\n{"a":"ok"}\n'),
    ]);

    // Act
    const records = await collect(parse(bytes));

    // Assess
    expect(records).toEqual([
      { row: 1, error: 'line is not valid UTF-8 (byte 6 of the line)', raw: expect.any(String) },
      { row: 2, data: { a: 'ok' } },
    ]);
  });

  it('rejects a line longer than maxRecordBytes and still parses the next line, however it is chunked', async () => {
    // Prepare
    const long = `{"a":"${'x'.repeat(5000)}"}`;
    const text = `{"a":1}\n${long}\n{"a":2}\n${long}`;
    const opts = { maxRecordBytes: 100 };

    for (const { name, chunks } of [
      { name: 'one chunk', chunks: [Buffer.from(text)] },
      { name: '7-byte chunks', chunks: split(Buffer.from(text), () => 7) },
      { name: '1000-byte chunks', chunks: split(Buffer.from(text), () => 1000) },
    ]) {
      // Act
      const records = await collect(parseNdjson(source(chunks), opts));

      // Assess
      expect(
        records.map((r) => [r.row, r.error ?? r.data]),
        name,
      ).toEqual([
        [1, { a: 1 }],
        [2, 'line is longer than 100 bytes'],
        [3, { a: 2 }],
        [4, 'line is longer than 100 bytes'],
      ]);
      // Only the start of an over-long line is kept.
      const rejected = records[1];
      const raw = rejected?.error !== undefined ? rejected.raw : undefined;
      expect(raw?.startsWith('{"a":"xxx'), name).toBe(true);
      expect(raw?.length, name).toBeLessThanOrEqual(1025);
    }
  });

  it('keeps the same raw text for an over-long line however it is chunked: its first 1024 bytes', async () => {
    // Prepare: lines of 300, 3000 and exactly 1024 bytes (with CRLF), over a limit of 100 bytes.
    const short = `{"a":"${'y'.repeat(292)}"}`;
    const long = `{"a":"${'z'.repeat(2992)}"}`;
    const edge = 'w'.repeat(1024);
    const text = Buffer.from(`${short}\r\n${long}\r\n{"a":2}\r\n${edge}\r\n`);
    const opts = { maxRecordBytes: 100 };

    for (const { name, chunks } of [
      ...chunkings(text),
      { name: '150-byte chunks', chunks: split(text, () => 150) },
      { name: '900-byte chunks', chunks: split(text, () => 900) },
    ]) {
      // Act
      const records = await collect(parseNdjson(source(chunks), opts));

      // Assess
      expect(records, name).toEqual([
        { row: 1, error: 'line is longer than 100 bytes', raw: `${short}…` },
        { row: 2, error: 'line is longer than 100 bytes', raw: `${long.slice(0, 1024)}…` },
        { row: 3, data: { a: 2 } },
        { row: 4, error: 'line is longer than 100 bytes', raw: `${edge}…` },
      ]);
    }
  });

  it('accepts a line of exactly maxRecordBytes, not counting its \\r', async () => {
    // Prepare
    const line = `{"a":"${'x'.repeat(92)}"}`; // 100 bytes

    // Act
    const records = await collect(
      parseNdjson(source(split(Buffer.from(`${line}\r\n${line}x\n`), () => 3)), { maxRecordBytes: 100 }),
    );

    // Assess
    expect(line).toHaveLength(100);
    expect(records[0]).toEqual({ row: 1, data: { a: 'x'.repeat(92) } });
    expect(records[1]).toMatchObject({ row: 2, error: 'line is longer than 100 bytes' });
  });

  it('gives the same records whatever the chunk boundaries, multi-byte characters included', async () => {
    // Prepare
    const text =
      '\ufeff{"name":"héllo 👋","v":1}\r\n\n{"bad":}\n  \n[1]\n{"name":"日本語","v":"€"}\r\n{"last":true}';
    const expected = await collect(parse(text));

    for (const { name, chunks } of chunkings(text)) {
      // Act
      const records = await collect(parseNdjson(source(chunks), OPTS));

      // Assess
      expect(records, name).toEqual(expected);
    }
    expect(expected.map((r) => r.row)).toEqual([1, 3, 5, 6, 7]);
  });
});
