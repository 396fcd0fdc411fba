import { randomBytes } from 'node:crypto';
import { gzipSync } from 'node:zlib';
import { describe, expect, it } from 'vitest';
import { InflationLimitError, MalformedFileError } from '#shared/errors.ts';
import { settings } from '#shared/settings.ts';
import { gunzipBounded } from '../../functions/s3-trigger/parsers/gzip.ts';
import { parseTextRecords, type TextFormat } from '../../functions/s3-trigger/parsers/index.ts';
import { MAX_JSON_DEPTH } from '../../functions/s3-trigger/parsers/json.ts';
import { parseParquet } from '../../functions/s3-trigger/parsers/parquet.ts';
import {
  drain,
  expectWellBehaved,
  MiB,
  memoryBuffer,
  RssWatch,
  repeated,
  source,
  split,
  zeroBomb,
} from './helpers.ts';

const OPTS = { maxRecordBytes: settings.limits.maxRecordBytes };
const BOM = Buffer.from([0xef, 0xbb, 0xbf]);
/** Growth of the resident set allowed while a huge input streams through (the inputs are 10 MB to 1 GiB). */
const RSS_BOUND_MIB = 256;

function parse(format: TextFormat, chunks: Iterable<Uint8Array> | AsyncIterable<Buffer>) {
  const bytes = Symbol.asyncIterator in chunks ? chunks : source(chunks);
  return drain(parseTextRecords(format, bytes, OPTS), `${format} parse`);
}

const names = (records: ReadonlyArray<{ data?: Record<string, unknown> }>) =>
  records.map((r) => r.data?.name);

describe('byte order marks, line ends and quoting', () => {
  const files: Record<TextFormat, string> = {
    csv: 'name,value,timestamp\ncpu,1,0\nmem,2,0\n',
    ndjson: '{"name":"cpu","value":1,"timestamp":0}\n{"name":"mem","value":2,"timestamp":0}\n',
    json: '[{"name":"cpu","value":1,"timestamp":0},{"name":"mem","value":2,"timestamp":0}]',
  };

  it.each(Object.keys(files) as TextFormat[])(
    'reads a %s file with a BOM, even one split across chunks, as without it',
    async (format) => {
      // Prepare
      const bytes = Buffer.concat([BOM, Buffer.from(files[format])]);

      // Act
      const plain = await parse(format, [Buffer.from(files[format])]);
      const whole = await parse(format, [bytes]);
      const bytewise = await parse(format, split(bytes, [1]));

      // Assess
      expect(plain.error).toBeUndefined();
      expect(names(plain.records)).toEqual(['cpu', 'mem']);
      expect(whole).toEqual(plain);
      expect(bytewise).toEqual(plain);
    },
  );

  it.each(['csv', 'ndjson'] as const)('reads a %s file with CRLF line ends as with LF', async (format) => {
    // Prepare
    const crlf = files[format].replaceAll('\n', '\r\n');

    // Act
    const lf = await parse(format, [Buffer.from(files[format])]);
    const out = await parse(format, split(Buffer.from(crlf), [1, 2, 3]));

    // Assess
    expect(out.error).toBeUndefined();
    expect(out.records).toEqual(lf.records);
  });

  it('keeps newlines, commas and doubled quotes inside quoted CSV fields', async () => {
    // Prepare
    const csv = 'name,value,timestamp\n"a\nb",1,0\r\n"c\r\nd, ""e""",2,0\n';

    // Act
    const out = await parse('csv', split(Buffer.from(csv), [1]));

    // Assess
    expect(out.error).toBeUndefined();
    expect(out.records.map((r) => r.row)).toEqual([1, 2]);
    expect(names(out.records)).toEqual(['a\nb', 'c\r\nd, "e"']);
  });

  it('rejects ragged CSV rows with the field counts and keeps the others', async () => {
    // Prepare
    const csv = 'name,value,timestamp\ncpu,1\nmem,2,0\ndisk,3,0,extra\nnet,4,0\n';

    // Act
    const out = await parse('csv', [Buffer.from(csv)]);

    // Assess
    expectWellBehaved(out);
    expect(out.error).toBeUndefined();
    expect(out.records).toEqual([
      { row: 1, error: 'expected 3 fields, got 2', raw: 'cpu,1' },
      { row: 2, data: { name: 'mem', value: '2', timestamp: '0' } },
      { row: 3, error: 'expected 3 fields, got 4', raw: 'disk,3,0,extra' },
      { row: 4, data: { name: 'net', value: '4', timestamp: '0' } },
    ]);
  });
});

describe('invalid UTF-8', () => {
  const bad = Buffer.from([0xc3, 0x28]); // a lead byte followed by an ASCII byte

  it.each([
    ['csv', 'name,value,timestamp\ncpu,1,0\nmem', ',2,0\n'],
    ['json', '[{"name":"cpu","value":1,"timestamp":0},{"name":"m', '","value":2,"timestamp":0}]'],
  ] as const)(
    'fails a %s file at the offset of the first bad byte, after the good records',
    async (format, before, after) => {
      // Prepare
      const bytes = Buffer.concat([Buffer.from(before), bad, Buffer.from(after)]);

      // Act
      const out = await parse(format, split(bytes, [5]));

      // Assess
      expectWellBehaved(out);
      expect(names(out.records)).toEqual(['cpu']);
      expect(out.error).toBeInstanceOf(MalformedFileError);
      expect((out.error as MalformedFileError).message).toContain('not valid UTF-8');
      expect((out.error as MalformedFileError).location.byteOffset).toBe(Buffer.byteLength(before));
    },
  );

  it('rejects only the NDJSON line with bad bytes', async () => {
    // Prepare
    const bytes = Buffer.concat([
      Buffer.from('{"name":"cpu","value":1,"timestamp":0}\n{"name":"m'),
      bad,
      Buffer.from('","value":2,"timestamp":0}\n{"name":"net","value":3,"timestamp":0}\n'),
    ]);

    // Act
    const out = await parse('ndjson', split(bytes, [3]));

    // Assess
    expectWellBehaved(out);
    expect(out.error).toBeUndefined();
    expect(out.records.map((r) => [r.row, r.data?.name ?? r.error])).toEqual([
      [1, 'cpu'],
      [2, 'line is not valid UTF-8 (byte 10 of the line)'],
      [3, 'net'],
    ]);
  });
});

describe('a 10 MB single line', () => {
  const TEN_MB = 10 * 1000 * 1000;
  const max = settings.limits.maxRecordBytes;

  it.each([
    ['csv', 'unquoted', 'name,value,timestamp\n', 'x', ',1,0\n'],
    ['csv', 'quoted', 'name,value,timestamp\n"', 'x', '",1,0\n'],
    ['csv', 'never-closed quote', 'name,value,timestamp\ncpu,1,0\n"', 'x', ''],
    ['json', 'string', '[{"name":"', 'x', '","value":1,"timestamp":0}]'],
    ['json', 'whitespace', '[', ' ', ']'],
  ] as const)(
    'fails a %s file with one (%s) at the record limit, in bounded memory',
    async (format, _kind, prefix, fill, suffix) => {
      // Prepare
      const watch = new RssWatch();

      // Act
      const out = await parse(format, repeated(prefix, fill, TEN_MB, suffix, watch));

      // Assess
      expectWellBehaved(out);
      expect(out.error).toBeInstanceOf(MalformedFileError);
      expect((out.error as Error).message).toMatch(new RegExp(`longer than ${max} bytes|never closed`));
      expect(watch.growthMiB).toBeLessThan(RSS_BOUND_MIB);
    },
  );

  it('rejects an NDJSON line of 10 MB and reads the next one, in bounded memory', async () => {
    // Prepare
    const watch = new RssWatch();
    const next = '\n{"name":"cpu","value":1,"timestamp":0}\n';

    // Act
    const out = await parse('ndjson', repeated('{"name":"', 'x', TEN_MB, `"}${next}`, watch));

    // Assess
    expectWellBehaved(out);
    expect(out.error).toBeUndefined();
    expect(out.records.map((r) => [r.row, r.data?.name ?? r.error])).toEqual([
      [1, `line is longer than ${max} bytes`],
      [2, 'cpu'],
    ]);
    expect(watch.growthMiB).toBeLessThan(RSS_BOUND_MIB);
  });
});

describe('deep JSON nesting', () => {
  const DEPTH = 100_000;
  const arrays = `${'['.repeat(DEPTH)}${']'.repeat(DEPTH)}`;

  it.each([
    ['arrays', arrays],
    ['objects', `${'{"a":'.repeat(DEPTH)}1${'}'.repeat(DEPTH)}`],
    ['arrays inside a record', `[{"name":"cpu","value":1,"timestamp":0,"a":${arrays}}]`],
  ])('fails a JSON file of 100k nested %s past the depth limit', async (_kind, json) => {
    // Act
    const out = await parse('json', split(Buffer.from(json), [4096]));

    // Assess
    expectWellBehaved(out);
    expect(out.error).toBeInstanceOf(MalformedFileError);
    expect((out.error as Error).message).toContain(`nested deeper than ${MAX_JSON_DEPTH} levels`);
    expect((out.error as MalformedFileError).location.byteOffset).toBeTypeOf('number');
  });

  it('rejects an NDJSON line of 100k nested arrays and reads the next one', async () => {
    // Prepare
    const ndjson = `${arrays}\n{"name":"cpu","value":1,"timestamp":0}\n`;

    // Act
    const out = await parse('ndjson', [Buffer.from(ndjson)]);

    // Assess
    expectWellBehaved(out);
    expect(out.records.map((r) => [r.row, r.data?.name ?? r.error])).toEqual([
      [1, 'record must be an object'],
      [2, 'cpu'],
    ]);
  });
});

describe('gzip', () => {
  it.each([
    ['known', true],
    ['unknown', false],
  ])(
    'stops a 1 GiB bomb of zeros with InflationLimitError (compressed size %s), in bounded memory',
    async (_label, known) => {
      // Prepare
      const bomb = zeroBomb(1024);
      const watch = new RssWatch();
      const { minInflatedBytesAllowed, maxInflationRatio } = settings.limits;
      const bound = Math.max(maxInflationRatio * bomb.length, minInflatedBytesAllowed);

      // Act
      let inflated = 0;
      const out = await drain(
        (async function* () {
          for await (const chunk of gunzipBounded(
            source(split(bomb, [64 * 1024])),
            known ? bomb.length : undefined,
          )) {
            inflated += chunk.length;
            watch.sample();
            yield chunk;
          }
        })(),
        'gunzip of a bomb',
      );

      // Assess
      expect(out.error).toBeInstanceOf(InflationLimitError);
      const err = out.error as InflationLimitError;
      expect(err.message).toMatch(/^gzip stream inflates past \d+ bytes \(\d+ bytes so far from /);
      expect(err.message).toContain(`at most ${maxInflationRatio}×`);
      expect(err.location.byteOffset).toBeGreaterThan(0);
      expect(inflated).toBeLessThanOrEqual(bound);
      expect(inflated).toBeLessThan(1024 * MiB);
      expect(watch.growthMiB).toBeLessThan(RSS_BOUND_MIB);
    },
  );

  it.each(['csv', 'ndjson', 'json'] as const)(
    'fails a gzipped %s bomb with a typed error before inflating it whole',
    async (format) => {
      // Prepare
      const bomb = zeroBomb(1024);
      const watch = new RssWatch();

      // Act
      const out = await parse(format, gunzipBounded(source(split(bomb, [64 * 1024])), bomb.length));

      // Assess
      expectWellBehaved(out);
      expect(out.error).toBeInstanceOf(MalformedFileError);
      expect(watch.growthMiB).toBeLessThan(RSS_BOUND_MIB);
    },
  );

  it('fails a truncated gzip file as truncated, after records read in order before the cut', async () => {
    // Prepare
    const csv = `name,value,timestamp\n${Array.from({ length: 5000 }, (_, i) => `m${i},${i},0`).join('\n')}\n`;
    const gz = gzipSync(csv);
    const cut = gz.subarray(0, gz.length - 4);

    // Act
    const out = await parse('csv', gunzipBounded(source([cut]), cut.length));

    // Assess
    expectWellBehaved(out);
    // Only a prefix: the bytes inflated in zlib's last call before the error are not passed on (reported).
    expect(out.records.length).toBeGreaterThan(0);
    expect(out.records.length).toBeLessThanOrEqual(5000);
    expect(names(out.records)).toEqual(out.records.map((_, i) => `m${i}`));
    expect(out.error).toBeInstanceOf(MalformedFileError);
    expect((out.error as Error).message).toContain('truncated');
  });
});

describe('random bytes as Parquet', () => {
  it.each([
    ['1 MiB of random bytes', () => randomBytes(MiB)],
    [
      'random bytes between PAR1 magic',
      () => Buffer.concat([Buffer.from('PAR1'), randomBytes(4096), Buffer.from('PAR1')]),
    ],
    [
      'a footer length past the start of the file',
      () => Buffer.from('PAR1\x00\x00\x00\x00\xff\xff\xff\x7fPAR1', 'latin1'),
    ],
    ['an empty file', () => Buffer.alloc(0)],
  ])('fails %s with a MalformedFileError', async (_kind, bytes) => {
    // Act
    const out = await drain(parseParquet(memoryBuffer(bytes()), OPTS), 'parquet parse');

    // Assess
    expect(out.records).toEqual([]);
    expect(out.error).toBeInstanceOf(MalformedFileError);
    expect((out.error as Error).message).toMatch(/^Parquet /);
  });
});
