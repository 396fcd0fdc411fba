import { describe, expect, it } from 'vitest';
import { MalformedFileError } from '#shared/errors.ts';
import { parseCsv } from '../../../../functions/s3-trigger/parsers/csv.ts';
import { chunkings, collect, drain, OPTS as INLINE, source } from './helpers.ts';

// Every case holds whether csv-parse runs in the calling thread or on a thread of its own (csv-thread.ts).
describe.each([
  { where: 'in the calling thread', OPTS: INLINE },
  { where: 'on its own thread', OPTS: { ...INLINE, parseThread: true } },
])('parseCsv, parsing $where', ({ OPTS }) => {
  const parse = (text: string | Buffer, opts = OPTS) => parseCsv(source([Buffer.from(text)]), opts);

  it('maps each data row onto the header, values as strings, rows numbered from 1', async () => {
    // Prepare
    const text = 'name,value,timestamp\ncpu,0.5,2024-01-01T00:00:00Z\nmem,12,1700000000\n';

    // Act
    const records = await collect(parse(text));

    // Assess
    expect(records).toEqual([
      { row: 1, data: { name: 'cpu', value: '0.5', timestamp: '2024-01-01T00:00:00Z' } },
      { row: 2, data: { name: 'mem', value: '12', timestamp: '1700000000' } },
    ]);
  });

  it('strips a UTF-8 BOM so the first column keeps its plain name', async () => {
    // Prepare
    const text = '\ufeffname,value\ncpu,1\n';

    // Act
    const records = await collect(parse(text));

    // Assess
    expect(records).toEqual([{ row: 1, data: { name: 'cpu', value: '1' } }]);
  });

  it('reads CRLF line ends, and a file mixing CRLF and LF, without leaving \\r in values', async () => {
    // Prepare
    const crlf = 'name,value\r\ncpu,1\r\nmem,2\r\n';
    const mixed = 'name,value\r\ncpu,1\nmem,2\r\n';

    // Act
    const fromCrlf = await collect(parse(crlf));
    const fromMixed = await collect(parse(mixed));

    // Assess
    const expected = [
      { row: 1, data: { name: 'cpu', value: '1' } },
      { row: 2, data: { name: 'mem', value: '2' } },
    ];
    expect(fromCrlf).toEqual(expected);
    expect(fromMixed).toEqual(expected);
  });

  it('reads RFC 4180 quoting: quoted commas, doubled quotes and quoted line breaks', async () => {
    // Prepare
    const text = 'name,note\r\n"a,b","say ""hi"""\r\n"multi\r\nline",plain\r\n"",x\r\n';

    // Act
    const records = await collect(parse(text));

    // Assess
    expect(records).toEqual([
      { row: 1, data: { name: 'a,b', note: 'say "hi"' } },
      { row: 2, data: { name: 'multi\r\nline', note: 'plain' } },
      { row: 3, data: { name: '', note: 'x' } },
    ]);
  });

  it('rejects a row with the wrong number of fields, with the reason and its text, and keeps numbering', async () => {
    // Prepare
    const text = 'a,b,c\n1,2,3\n4,5\n6,"7,x",8,9\n10,11,12\n';

    // Act
    const records = await collect(parse(text));

    // Assess
    expect(records).toEqual([
      { row: 1, data: { a: '1', b: '2', c: '3' } },
      { row: 2, error: 'expected 3 fields, got 2', raw: '4,5' },
      { row: 3, error: 'expected 3 fields, got 4', raw: '6,"7,x",8,9' },
      { row: 4, data: { a: '10', b: '11', c: '12' } },
    ]);
  });

  it('skips empty lines anywhere without counting them as rows', async () => {
    // Prepare
    const text = '\n\r\na,b\n\n1,2\r\n\r\n\n3,4\n\n';

    // Act
    const records = await collect(parse(text));

    // Assess
    expect(records).toEqual([
      { row: 1, data: { a: '1', b: '2' } },
      { row: 2, data: { a: '3', b: '4' } },
    ]);
  });

  it('reads a last record that has no line end', async () => {
    // Prepare
    const text = 'a,b\n1,2\n3,4';

    // Act
    const records = await collect(parse(text));

    // Assess
    expect(records.map((r) => r.data)).toEqual([
      { a: '1', b: '2' },
      { a: '3', b: '4' },
    ]);
  });

  it.each([
    ['a header only, with a line end', 'a,b\n'],
    ['a header only, without a line end', 'a,b'],
    ['an empty file', ''],
    ['a BOM only', '\ufeff'],
    ['blank lines only', '\n\r\n\n'],
  ])('yields no records for %s', async (_name, text) => {
    // Act
    const records = await collect(parse(text));

    // Assess
    expect(records).toEqual([]);
  });

  it('fails on a duplicate column name, naming it', async () => {
    // Act
    const { records, error } = await drain(parse('id,name,value,name\n1,a,2,b\n'));

    // Assess
    expect(records).toEqual([]);
    expect(error).toBeInstanceOf(MalformedFileError);
    expect(error?.message).toContain('duplicate column name "name" (columns 2 and 4)');
    expect((error as MalformedFileError).location).toEqual({ line: 1 });
  });

  it.each([
    ['semicolons', 'name;value;timestamp\ncpu;1;1700000000\n'],
    ['tabs', 'name\tvalue\ttimestamp\ncpu\t1\t1700000000\n'],
    ['vertical bars', '\uFEFFname|value|timestamp\r\ncpu|1|1700000000\r\n'],
  ])('fails on a header that is one column separated by %s, naming the separator', async (sep, text) => {
    // Act
    const { records, error } = await drain(parse(text));

    // Assess
    expect(records).toEqual([]);
    expect(error).toBeInstanceOf(MalformedFileError);
    expect(error?.message).toMatch(
      new RegExp(
        `^CSV header is a single column, ".*": fields must be separated by commas, and it has ${sep} \\(at line 1\\)$`,
      ),
    );
    expect((error as MalformedFileError).location).toEqual({ line: 1 });
  });

  it('reads a single-column file whose header holds no other separator', async () => {
    // Act
    const { records, error } = await drain(parse('name\ncpu\n'));

    // Assess: a record without value or timestamp is for validation to reject, not the parser.
    expect(error).toBeUndefined();
    expect(records).toEqual([{ row: 1, data: { name: 'cpu' } }]);
  });

  it('fails a file whose lines end in a lone CR, instead of reading it as one header and no rows', async () => {
    // Act
    const { records, error } = await drain(parse('name,value,timestamp\rcpu,1,0\rcpu,2,0\r'));

    // Assess
    expect(records).toEqual([]);
    expect(error).toBeInstanceOf(MalformedFileError);
    expect(error?.message).toBe(
      'CSV header: column 3\'s name holds a carriage return ("timestamp\\rcpu"): the file\'s lines seem to end in a lone CR (classic Mac OS); save it with LF or CRLF line ends (at line 1)',
    );
  });

  it('with expectColumns, fails a file whose first line names none of them: it has no header', async () => {
    // Prepare: one row alone would otherwise be read as the header, and be neither sent nor rejected
    const opts = { ...OPTS, expectColumns: ['name', 'value', 'timestamp'] };

    // Act
    const one = await drain(parse('cpu,1,2024-01-01T00:00:00Z\n', opts));
    const many = await drain(parse('cpu,1,0\nmem,2,0\n', opts));
    const nearly = await drain(parse(' Name,VALUE ,Timestamp\ncpu,1,0\n', opts));

    // Assess
    for (const { records, error } of [one, many]) {
      expect(records).toEqual([]);
      expect(error).toBeInstanceOf(MalformedFileError);
      expect(error?.message).toMatch(
        /^CSV header names none of the columns name, value, timestamp: its first line, "cpu,1,[^"]+", looks like data; a CSV file's first line must name its columns \(at line 1\)$/,
      );
    }
    // Names that differ in case or spaces are a header (each row is then rejected with a hint).
    expect(nearly.error).toBeUndefined();
    expect(nearly.records).toEqual([{ row: 1, data: { ' Name': 'cpu', 'VALUE ': '1', Timestamp: '0' } }]);
  });

  it('fails on an empty column name, naming its position', async () => {
    // Act
    const { error } = await drain(parse('\nid,,value\n1,2,3\n'));

    // Assess
    expect(error).toBeInstanceOf(MalformedFileError);
    expect(error?.message).toContain('column 2 has no name');
    expect((error as MalformedFileError).location).toEqual({ line: 2 });
  });

  it('fails on an unclosed quote, saying at which row and line the record starts, after the rows before it', async () => {
    // Prepare
    const text = 'a,b\n1,2\n\n3,"never closed\n4,5\n6,7\n';

    // Act
    const { records, error } = await drain(parse(text));

    // Assess
    expect(records).toEqual([{ row: 1, data: { a: '1', b: '2' } }]);
    expect(error).toBeInstanceOf(MalformedFileError);
    expect(error?.message).toContain('never closed');
    expect((error as MalformedFileError).location).toEqual({ row: 2, line: 4 });
  });

  it('keeps a quote inside an unquoted field as text', async () => {
    // Act
    const { records, error } = await drain(parse('a,b\n1,2\n3,4"5\n'));

    // Assess
    expect(error).toBeUndefined();
    expect(records[1]).toEqual({ row: 2, data: { a: '3', b: '4"5' } });
  });

  it('keeps a field with text after its closing quote whole, as text', async () => {
    // Act
    const { records, error } = await drain(parse('a,b\n"1"x,2\n"ok",3\n'));

    // Assess
    expect(error).toBeUndefined();
    expect(records).toEqual([
      { row: 1, data: { a: '"1"x', b: '2' } },
      { row: 2, data: { a: 'ok', b: '3' } },
    ]);
  });

  it('fails on bytes that are not UTF-8, with their byte offset', async () => {
    // Prepare
    const bytes = Buffer.concat([Buffer.from('a,b\n1,2\n3,'), Buffer.from([0xc3, 0x28]), Buffer.from('\n')]);

    // Act
    const { error } = await drain(parse(bytes));

    // Assess
    expect(error).toBeInstanceOf(MalformedFileError);
    expect((error as MalformedFileError).location).toEqual({ byteOffset: 10 });
  });

  it.each([
    [
      'UTF-16 (a byte-order mark), naming it',
      Buffer.concat([Buffer.from([0xff, 0xfe]), Buffer.from('a,b\r\n1,2\r\n', 'utf16le')]),
      'CSV is not UTF-8: it starts with the byte FF, as UTF-16 text with a byte-order mark does: save it as UTF-8',
      0,
    ],
    [
      'Latin-1, naming the byte',
      Buffer.from('a,b\n1,M\xfcnchen\n', 'latin1'),
      'CSV is not valid UTF-8 (byte FC; text saved as Latin-1 or Windows-1252 has such bytes: save it as UTF-8)',
      7,
    ],
  ])('fails on a file in %s, whatever the chunking', async (_name, bytes, reason, byteOffset) => {
    for (const { name, chunks } of chunkings(bytes)) {
      // Act
      const { error } = await drain(parseCsv(source(chunks), OPTS));

      // Assess
      expect(error, name).toBeInstanceOf(MalformedFileError);
      expect((error as MalformedFileError).reason, name).toBe(reason);
      expect((error as MalformedFileError).location, name).toEqual({ byteOffset });
    }
  });

  it("fails a file that starts with Excel's separator line, saying to remove it", async () => {
    // Act
    const { error } = await drain(
      parse('sep=,\nname,value,timestamp\ncpu,1,0\n', {
        ...OPTS,
        expectColumns: ['name', 'value', 'timestamp'],
      }),
    );

    // Assess
    expect((error as MalformedFileError).reason).toBe(
      `CSV starts with Excel's separator line "sep=,": remove that line, so that the first line names the columns`,
    );
  });

  it('fails on a multi-byte character cut off by the end of the file, with its offset', async () => {
    // Prepare
    const bytes = Buffer.concat([Buffer.from('a,b\n1,'), Buffer.from([0xe2, 0x82])]);

    // Act
    const { error } = await drain(parse(bytes));

    // Assess
    expect(error).toBeInstanceOf(MalformedFileError);
    expect((error as MalformedFileError).location).toEqual({ byteOffset: 6 });
  });

  it.each([
    ['LF', 'a,b\n1,2\n', [{ row: 1, data: { a: '1', b: '2' } }]],
    ['CRLF', 'a,b\r\n1,2\r\n', [{ row: 1, data: { a: '1', b: '2' } }]],
    ['an empty line', 'a,b\n1,2\n\n', [{ row: 1, data: { a: '1', b: '2' } }]],
    ['a record it cuts off', 'a,b\n1,2\n3', [{ row: 1, data: { a: '1', b: '2' } }]],
    ['a CR it cuts off from its LF', 'a,b\n1,2\n3,4\r', [{ row: 1, data: { a: '1', b: '2' } }]],
    ['a quote it leaves open', 'a,b\n1,2\n"', [{ row: 1, data: { a: '1', b: '2' } }]],
    ['a quoted line end', 'a,b\n1,2\n"3\n', [{ row: 1, data: { a: '1', b: '2' } }]],
  ])(
    'yields the records completed before bytes that are not UTF-8, after %s',
    async (_name, head, expected) => {
      // Prepare: csv-parse holds back the last two bytes it is given, which can end a record.
      const bytes = Buffer.concat([Buffer.from(head), Buffer.from([0xff]), Buffer.from('x,y\n')]);

      for (const { name, chunks } of chunkings(bytes)) {
        // Act
        const { records, error } = await drain(parseCsv(source(chunks), OPTS));

        // Assess
        expect(records, name).toEqual(expected);
        expect(error, name).toBeInstanceOf(MalformedFileError);
        expect((error as MalformedFileError).location, name).toEqual({ byteOffset: head.length });
      }
    },
  );

  it('yields the record completed before a multi-byte character cut off by the end of the file', async () => {
    // Prepare
    const bytes = Buffer.concat([Buffer.from('a,b\n1,2\n'), Buffer.from([0xe2, 0x82])]);

    for (const { name, chunks } of chunkings(bytes)) {
      // Act
      const { records, error } = await drain(parseCsv(source(chunks), OPTS));

      // Assess
      expect(records, name).toEqual([{ row: 1, data: { a: '1', b: '2' } }]);
      expect((error as MalformedFileError).location, name).toEqual({ byteOffset: 8 });
    }
  });

  it('fails on a record longer than maxRecordBytes, saying which row', async () => {
    // Prepare
    const text = `a,b\n1,2\n3,${'x'.repeat(200)}\n5,6\n`;

    // Act
    const { records, error } = await drain(parse(text, { ...OPTS, maxRecordBytes: 100 }));

    // Assess
    expect(records).toEqual([{ row: 1, data: { a: '1', b: '2' } }]);
    expect(error).toBeInstanceOf(MalformedFileError);
    expect(error?.message).toContain('longer than 100 bytes');
    expect((error as MalformedFileError).location).toEqual({ row: 2, line: 3 });
  });

  it('makes a column named __proto__ an own property, not the prototype', async () => {
    // Act
    const [record] = await collect(parse('__proto__,value\nx,1\n'));

    // Assess
    expect(Object.getPrototypeOf(record?.data)).toBe(Object.prototype);
    expect(Object.keys(record?.data ?? {})).toEqual(['__proto__', 'value']);
    expect(record?.data?.value).toBe('1');
  });

  it('gives the same records whatever the chunk boundaries, multi-byte characters included', async () => {
    // Prepare
    const text =
      '\ufeffname,note,value\r\n"a,""b""",héllo 👋,1\r\n\r\n"line\nbreak",€,2\r\nragged\r\n日本語,"x",3';
    const expected = await collect(parse(text));

    for (const { name, chunks } of chunkings(text)) {
      // Act
      const records = await collect(parseCsv(source(chunks), OPTS));

      // Assess
      expect(records, name).toEqual(expected);
    }
    expect(expected).toHaveLength(4);
    expect(expected[1]?.data).toEqual({ name: 'line\nbreak', note: '€', value: '2' });
  });

  it('fails the same way whatever the chunk boundaries', async () => {
    // Prepare
    const cases = [
      Buffer.concat([Buffer.from('a,b\n1,€\n2,'), Buffer.from([0xe2, 0x28, 0xa1]), Buffer.from('\n')]),
      Buffer.from('a,b\n1,2\n"3,4\n'),
      Buffer.from('a,a\n1,2\n'),
    ];

    for (const bytes of cases) {
      const expected = await drain(parse(bytes));
      for (const { name, chunks } of chunkings(bytes)) {
        // Act
        const { error } = await drain(parseCsv(source(chunks), OPTS));

        // Assess
        expect(error, name).toBeInstanceOf(MalformedFileError);
        expect(error?.message, name).toBe(expected.error?.message);
      }
    }
  });
});
