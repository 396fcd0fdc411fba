import { describe, expect, it } from 'vitest';
import { MalformedFileError } from '#shared/errors.ts';
import { MAX_JSON_DEPTH, parseJson } from '../../../../functions/s3-trigger/parsers/json.ts';
import { chunkings, collect, drain, OPTS, source } from './helpers.ts';

const parse = (text: string | Buffer, opts = OPTS) => parseJson(source([Buffer.from(text)]), opts);

const locationOf = (error: Error | undefined) => (error as MalformedFileError).location;

describe('parseJson', () => {
  it('yields each object of a top-level array, numbered by index from 1', async () => {
    // Prepare
    const text = '[{"name":"cpu","value":1},{"name":"mem","value":"2","tags":{"a":[1,{"b":null}]}}]';

    // Act
    const records = await collect(parse(text));

    // Assess
    expect(records).toEqual([
      { row: 1, data: { name: 'cpu', value: 1 } },
      { row: 2, data: { name: 'mem', value: '2', tags: { a: [1, { b: null }] } } },
    ]);
  });

  it('yields a single top-level object as row 1', async () => {
    // Act
    const records = await collect(parse('\n  {"name":"cpu","value":1.5}\n'));

    // Assess
    expect(records).toEqual([{ row: 1, data: { name: 'cpu', value: 1.5 } }]);
  });

  it('skips a BOM and whitespace before the top-level value', async () => {
    // Act
    const records = await collect(parse('\ufeff \r\n\t[{"a":1}]'));

    // Assess
    expect(records).toEqual([{ row: 1, data: { a: 1 } }]);
  });

  it.each([
    ['an empty file', ''],
    ['a whitespace-only file', ' \n\t\r\n'],
    ['a BOM only', '\ufeff'],
    ['an empty array', ' [ ] '],
  ])('yields no records for %s', async (_name, text) => {
    // Act
    const records = await collect(parse(text));

    // Assess
    expect(records).toEqual([]);
  });

  it('rejects array elements that are not objects, and keeps numbering', async () => {
    // Act
    const records = await collect(parse('[{"a":1}, 2, "x", null, [3, {"b":4}], true, {"a":5}]'));

    // Assess
    expect(records).toEqual([
      { row: 1, data: { a: 1 } },
      { row: 2, error: 'record must be an object', raw: '2' },
      { row: 3, error: 'record must be an object', raw: '"x"' },
      { row: 4, error: 'record must be an object', raw: 'null' },
      { row: 5, error: 'record must be an object', raw: '[3,{"b":4}]' },
      { row: 6, error: 'record must be an object', raw: 'true' },
      { row: 7, data: { a: 5 } },
    ]);
  });

  it('fails on a syntax error with its byte offset, after the records before it', async () => {
    // Prepare
    const text = '[{"a":1}, {"b":1 "c":2}, {"a":3}]';

    // Act
    const { records, error } = await drain(parse(text));

    // Assess
    expect(records).toEqual([{ row: 1, data: { a: 1 } }]);
    expect(error).toBeInstanceOf(MalformedFileError);
    expect(error?.message).toContain('syntax error');
    expect(locationOf(error)).toEqual({ byteOffset: text.indexOf('"c"') });
  });

  it('fails on an invalid character with its byte offset, counting the BOM', async () => {
    // Prepare
    const text = '\ufeff[{"a":tru}]';

    // Act
    const { error } = await drain(parse(text));

    // Assess
    expect(error).toBeInstanceOf(MalformedFileError);
    expect(locationOf(error)).toEqual({ byteOffset: Buffer.byteLength(text) - 2 });
  });

  it.each([
    ['[{"a":1}] x', 10],
    ['[{"a":1}]\n{"b":2}', 10],
    ['{"a":1} ]', 8],
  ])('fails on data after the top-level value: %s', async (text, byteOffset) => {
    // Act
    const { error } = await drain(parse(text));

    // Assess
    expect(error).toBeInstanceOf(MalformedFileError);
    expect(error?.message).toContain('data after the top-level value');
    expect(locationOf(error)).toEqual({ byteOffset });
  });

  it('accepts whitespace after the top-level value', async () => {
    // Act
    const records = await collect(parse('[{"a":1}] \r\n\n'));

    // Assess
    expect(records).toEqual([{ row: 1, data: { a: 1 } }]);
  });

  it.each([
    ['42', 'a number'],
    ['"text"', 'a string'],
    ['true', 'a boolean'],
    ['null', 'null'],
    ['a,b\n1,2', '"a"'],
  ])('fails on a top-level %s', async (text, found) => {
    // Act
    const { error } = await drain(parse(`  ${text}`));

    // Assess
    expect(error).toBeInstanceOf(MalformedFileError);
    expect(error?.message).toContain(`found ${found}`);
    expect(locationOf(error)).toEqual({ byteOffset: 2 });
  });

  it('fails on a UTF-16 file, naming its byte-order mark', async () => {
    // Act
    const { error } = await drain(
      parse(Buffer.concat([Buffer.from([0xfe, 0xff]), Buffer.from('[{"name":"a"}]', 'utf16le').swap16()])),
    );

    // Assess
    expect((error as MalformedFileError).reason).toBe(
      'JSON is not UTF-8: it starts with the byte FE, as UTF-16 text with a byte-order mark does: save it as UTF-8',
    );
  });

  it('fails on a file that ends inside the top-level value', async () => {
    // Act
    const { records, error } = await drain(parse('[{"a":1}, {"b":"unfinished'));

    // Assess
    expect(records).toEqual([{ row: 1, data: { a: 1 } }]);
    expect(error).toBeInstanceOf(MalformedFileError);
    expect(error?.message).toContain('ends before the top-level array is closed');
  });

  it('fails cleanly on 100000 nested brackets instead of overflowing the stack', async () => {
    // Act
    const { error } = await drain(parse('['.repeat(100_000)));

    // Assess
    expect(error).toBeInstanceOf(MalformedFileError);
    expect(error?.message).toContain(`nested deeper than ${MAX_JSON_DEPTH} levels`);
    expect(locationOf(error)).toEqual({ row: 1, byteOffset: MAX_JSON_DEPTH });
  });

  it(`accepts ${MAX_JSON_DEPTH} levels of nesting and fails at one more`, async () => {
    // Prepare
    const nested = (levels: number) => `${'{"a":'.repeat(levels)}1${'}'.repeat(levels)}`;

    // Act
    const ok = await drain(parse(`[${nested(MAX_JSON_DEPTH - 1)}]`));
    const tooDeep = await drain(parse(`[${nested(MAX_JSON_DEPTH)}]`));

    // Assess
    expect(ok.error).toBeUndefined();
    expect(ok.records).toHaveLength(1);
    expect(tooDeep.error).toBeInstanceOf(MalformedFileError);
  });

  it('fails on a record longer than maxRecordBytes, the same way whatever the chunking', async () => {
    // Prepare
    const text = `[{"a":1}, {"b":"${'x'.repeat(300)}"}, {"a":3}]`;
    const opts = { maxRecordBytes: 100 };

    for (const { name, chunks } of chunkings(text)) {
      // Act
      const { records, error } = await drain(parseJson(source(chunks), opts));

      // Assess
      expect(records, name).toEqual([{ row: 1, data: { a: 1 } }]);
      expect(error, name).toBeInstanceOf(MalformedFileError);
      expect(error?.message, name).toContain('longer than 100 bytes');
      expect(locationOf(error), name).toEqual({ row: 2, byteOffset: 10 });
    }
  });

  it('fails on a single top-level object longer than maxRecordBytes', async () => {
    // Act
    const { error } = await drain(parse(`{"b":"${'x'.repeat(300)}"}`, { maxRecordBytes: 100 }));

    // Assess
    expect(error).toBeInstanceOf(MalformedFileError);
    expect(locationOf(error)).toEqual({ row: 1, byteOffset: 0 });
  });

  it.each([
    ['a surrogate', [0xed, 0xa0, 0x80]],
    ['a lead byte followed by ASCII', [0xe2, 0x28, 0xa1]],
  ])(
    'fails on bytes that are not UTF-8 (%s) with their offset, whatever the chunking',
    async (_name, bad) => {
      // Prepare
      const bytes = Buffer.concat([Buffer.from('[{"a":"€"}, {"a":"'), Buffer.from(bad), Buffer.from('"}]')]);

      for (const { name, chunks } of chunkings(bytes)) {
        // Act
        const { error } = await drain(parseJson(source(chunks), OPTS));

        // Assess
        expect(error, name).toBeInstanceOf(MalformedFileError);
        expect(error?.message, name).toContain('UTF-8');
        expect(locationOf(error), name).toEqual({ byteOffset: 20 });
      }
    },
  );

  it.each([
    ['right after a number', '[{"a":"€"}, {"a":12', '}]'],
    ['right after a literal', '[{"a":"€"}, {"a":true', '}]'],
    ['as the first byte', '', '[]'],
  ])(
    'fails on a lead byte not followed by its continuation %s as not UTF-8, whatever the chunking',
    async (_name, before, after) => {
      // Prepare: C3 starts a two-byte character, and 28 cannot continue it. With a read chunk ending right
      // after C3, the byte was given to the tokenizer before its character was known to be bad.
      const bytes = Buffer.concat([Buffer.from(before), Buffer.from([0xc3, 0x28]), Buffer.from(after)]);
      const byteOffset = Buffer.byteLength(before);

      for (const { name, chunks } of chunkings(bytes)) {
        // Act
        const { error } = await drain(parseJson(source(chunks), OPTS));

        // Assess
        expect(error?.message, name).toBe(
          'JSON is not valid UTF-8 (byte C3; text saved as Latin-1 or Windows-1252 has such bytes: save it as UTF-8)' +
            ` (at byte ${byteOffset})`,
        );
        expect(locationOf(error), name).toEqual({ byteOffset });
      }
    },
  );

  it('keeps a "__proto__" key as data', async () => {
    // Act
    const [record] = await collect(parse('[{"__proto__":{"x":1},"a":2}]'));

    // Assess
    expect(Object.getPrototypeOf(record?.data)).toBe(Object.prototype);
    expect(Object.keys(record?.data ?? {})).toEqual(['__proto__', 'a']);
  });

  it('gives the same records whatever the chunk boundaries, escapes and multi-byte characters included', async () => {
    // Prepare
    const text =
      '\ufeff [ {"name":"héllo 👋","v":-1.5e3,"esc":"a\\"b\\\\c\\u00e9\\ud83d\\ude00"} ,\n 7, {"日本":["€",true,null,{}]},[] ]\n';
    const expected = await collect(parse(text));

    for (const { name, chunks } of chunkings(text)) {
      // Act
      const records = await collect(parseJson(source(chunks), OPTS));

      // Assess
      expect(records, name).toEqual(expected);
    }
    expect(expected).toEqual([
      { row: 1, data: { name: 'héllo 👋', v: -1500, esc: 'a"b\\cé😀' } },
      { row: 2, error: 'record must be an object', raw: '7' },
      { row: 3, data: { 日本: ['€', true, null, {}] } },
      { row: 4, error: 'record must be an object', raw: '[]' },
    ]);
  });
});
