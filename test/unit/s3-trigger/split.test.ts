import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { MalformedFileError } from '#shared/errors.ts';
import { settings } from '#shared/settings.ts';
import { csvHeaderLength, parseCsv } from '../../../functions/s3-trigger/parsers/csv.ts';
import { parseNdjson } from '../../../functions/s3-trigger/parsers/ndjson.ts';
import type { ParsedRecord } from '../../../functions/s3-trigger/parsers/types.ts';
import {
  findBoundaries,
  planSplit,
  type SplitFormat,
  type SplitOptions,
  type SplitPlan,
  type SplitPoint,
} from '../../../functions/s3-trigger/split.ts';
import { chunkings, collect, drain, source, split } from './parsers/helpers.ts';

/**
 * The split scanner must find exactly the record boundaries the parsers find, with their row numbers, or
 * say it cannot (`ok: false`): parts cut at a wrong byte would parse garbage, and parts numbered wrongly
 * would give signals ids that differ from a sequential read's.
 */

const MAX = 1024 * 1024;
const BOM = '\uFEFF';
const bytes = (s: string) => Buffer.byteLength(s);

/** Offsets just past each of `records` (each given with what precedes it and its line end) after `before`. */
function endsOf(before: string, records: string[]): SplitPoint[] {
  let at = bytes(before);
  return records.map((r, i) => {
    at += bytes(r);
    return { offset: at, row: i + 1 };
  });
}

/** Every boundary, or the failure; the points of a failed plan are left out. */
async function boundaries(
  format: SplitFormat,
  chunks: Iterable<Buffer | string>,
  opts: SplitOptions = { maxRecordBytes: settings.limits.maxRecordBytes },
): Promise<SplitPlan> {
  return findBoundaries(format, source(chunks), opts);
}

function okPoints(plan: SplitPlan): SplitPoint[] {
  if (!plan.ok) throw new Error(`expected a plan, got a failure: ${plan.reason} at byte ${plan.offset}`);
  return plan.points;
}

/** `buf` cut into chunks of the given sizes, taken in turn (one chunk when there are none). */
function chunked(buf: Buffer, sizes: readonly number[]): Buffer[] {
  if (sizes.length === 0) return [buf];
  return split(buf, (i) => sizes[i % sizes.length] as number);
}

/** The records a sequential parse yields from `buf`, and the error that ended it. */
async function sequential(format: SplitFormat, buf: Buffer, max = MAX) {
  const opts = { maxRecordBytes: max, positions: true };
  return drain(format === 'csv' ? parseCsv(source([buf]), opts) : parseNdjson(source([buf]), opts));
}

/**
 * The records a part yields, numbered and placed as in the whole file: from `from` (a boundary; the start
 * of the file when undefined) up to the byte `to` (the end of the file by default). A part after the first
 * reads the way `fromOffset` in records.ts resumes: the header (CSV) or one newline (NDJSON), then its bytes.
 */
async function part(
  format: SplitFormat,
  buf: Buffer,
  from: SplitPoint | undefined,
  to = buf.length,
  max = MAX,
): Promise<ParsedRecord[]> {
  const opts = { maxRecordBytes: max, positions: true };
  const parse = format === 'csv' ? parseCsv : parseNdjson;
  if (from === undefined) return collect(parse(source([buf.subarray(0, to)]), opts));
  const bytes = buf.subarray(from.offset, to);
  const prefix =
    format === 'csv' ? buf.subarray(0, csvHeaderLength(buf, true, max) as number) : Buffer.from('\n');
  // NDJSON numbers physical lines: the newline added is one.
  const rowShift = format === 'csv' ? from.row : from.row - 1;
  const records = await collect(parse(source([prefix, bytes]), opts));
  return records.map((r) => ({
    ...r,
    row: r.row + rowShift,
    end: (r.end as number) - prefix.length + from.offset,
  }));
}

/** Parts cut at every boundary, and each part from a boundary to the end, yield the whole file's records. */
async function expectPartsAgree(
  format: SplitFormat,
  buf: Buffer,
  points: readonly SplitPoint[],
  records: readonly ParsedRecord[],
  max = MAX,
): Promise<void> {
  const within = (from: SplitPoint | undefined, to: SplitPoint | undefined) =>
    records.filter((r) => r.row > (from?.row ?? 0) && (to === undefined || r.row <= to.row));
  for (let i = 0; i <= points.length; i++) {
    const from = points[i - 1];
    const to = points[i];
    expect(await part(format, buf, from, to?.offset, max), `part ${i}`).toEqual(within(from, to));
    if (from !== undefined)
      expect(await part(format, buf, from, undefined, max)).toEqual(within(from, undefined));
  }
}

/** The parts' record limit, as fan-out.ts passes it. */
const LIMITS = { maxRecordBytes: settings.limits.maxRecordBytes };

describe('findBoundaries, CSV', () => {
  const header = `${BOM}name,note\r\n`;
  // Each record with the empty lines before it: a boundary is past a record's own line end, not past the
  // empty lines after it.
  const records = [
    'cpu,"a,b"\r\n',
    '\r\nmem,"two\r\nlines"\n',
    '\n\ndïsk,"say ""hi"""\r\n',
    'height,5\'11"\n',
    '"",\n',
    '  \n',
    'io,last',
  ];
  const text = header + records.join('');

  for (const { name, chunks } of chunkings(text)) {
    it(`finds the end of each record: BOM, CRLF and LF, quoted commas, newlines and quotes, literal quotes, empty lines (${name})`, async () => {
      // Act
      const plan = await boundaries('csv', chunks);

      // Assess
      expect(plan).toEqual({ ok: true, points: endsOf(header, records), rows: 7, bytes: bytes(text) });
    });
  }

  it('finds the same boundaries as csv-parse wherever the bytes are cut in two', async () => {
    // Prepare
    const buf = Buffer.from(text);
    const expected = (await sequential('csv', buf)).records.map((r) => ({ offset: r.end, row: r.row }));

    for (let cut = 0; cut <= buf.length; cut++) {
      // Act
      const plan = await boundaries('csv', [buf.subarray(0, cut), buf.subarray(cut)]);

      // Assess
      expect(okPoints(plan), `cut at ${cut}`).toEqual(expected);
    }
  });

  it('counts a line of one empty quoted field and a whitespace-only line as records, as csv-parse does', async () => {
    // Prepare
    const text = 'a\n""\n \t\n\r\r\n1\n';

    // Act
    const plan = await boundaries('csv', [text]);
    const { records } = await sequential('csv', Buffer.from(text));

    // Assess
    expect(records.map((r) => r.data)).toEqual([{ a: '' }, { a: ' \t' }, { a: '\r' }, { a: '1' }]);
    expect(okPoints(plan)).toEqual(endsOf('a\n', ['""\n', ' \t\n', '\r\r\n', '1\n']));
  });

  it('skips empty lines before the header, between records and at the end', async () => {
    // Prepare
    const text = '\n\r\na,b\n\n1,2\r\n\r\n\n3,4\n\n\r\n';

    // Act
    const plan = await boundaries('csv', [text]);

    // Assess
    expect(plan).toEqual({
      ok: true,
      points: [
        { offset: bytes('\n\r\na,b\n\n1,2\r\n'), row: 1 },
        { offset: bytes('\n\r\na,b\n\n1,2\r\n\r\n\n3,4\n'), row: 2 },
      ],
      rows: 2,
      bytes: bytes(text),
    });
  });

  it('ends a last record without a line end at the end of the file', async () => {
    // Act
    const plan = await boundaries('csv', ['a,b\n1,2\n"3","4"']);

    // Assess
    expect(okPoints(plan)).toEqual([
      { offset: 8, row: 1 },
      { offset: 15, row: 2 },
    ]);
  });

  it.each([
    ['a header only, with a line end', 'a,b\r\n'],
    ['a header only, without a line end', 'a,b'],
    ['an empty file', ''],
    ['a BOM only', BOM],
    ['blank lines only', '\n\r\n\n'],
  ])('finds no boundary in %s', async (_name, text) => {
    // Act
    const plan = await boundaries('csv', [text]);

    // Assess
    expect(plan).toEqual({ ok: true, points: [], rows: 0, bytes: bytes(text) });
  });

  it('opens a quoted field right after a BOM, even when the BOM is cut between chunks', async () => {
    // Prepare
    const buf = Buffer.from(`${BOM}"a\nb",c\n1,2\n`);

    // Act
    const plan = await boundaries('csv', [buf.subarray(0, 1), buf.subarray(1, 2), buf.subarray(2)]);

    // Assess
    expect(okPoints(plan)).toEqual([{ offset: buf.length, row: 1 }]);
  });

  it('reads a quote after a lone \\r as text: the \\r is data, so the field has begun', async () => {
    // Prepare
    const text = 'a,b\n\r"x,y\n';

    // Act
    const plan = await boundaries('csv', [text]);
    const { records } = await sequential('csv', Buffer.from(text));

    // Assess
    expect(records[0]).toMatchObject({ data: { a: '\r"x', b: 'y' } });
    expect(okPoints(plan)).toEqual([{ offset: bytes(text), row: 1 }]);
  });
});

describe('findBoundaries, CSV it will not split', () => {
  // Each: csv-parse fails on it, or reads it in a way the scanner does not follow.
  it.each([
    ['text after a closing quote', 'a,b\n"1"x,2\n3,4\n', 'a closing quote is followed by text', 7],
    ['a space after a closing quote', 'a,b\n"1" ,2\n', 'a closing quote is followed by text', 7],
    ['a \\r after a closing quote, then text', 'a\n"abc"\rx\n', 'a \\r that does not start a \\r\\n', 7],
    ['a \\r after a closing quote at the end', 'a\n"abc"\r', 'a \\r that does not start a \\r\\n', 7],
    ['a NUL after a closing quote', 'a\n"abc"\0\n', 'a closing quote is followed by text', 7],
    ['a quoted field never closed', 'a,b\n1,2\n3,"never closed\n4,5\n', 'a quoted field is never closed', 8],
    ['a header with an empty column name', 'id,,value\n1,2,3\n', 'column 2 has no name', 0],
    ['a header of one empty quoted field', '""\n1\n', 'column 1 has no name', 0],
    ['a header with a duplicate column name', 'a,b,a\n1,2,3\n', 'duplicate column name "a"', 0],
  ])('fails on %s', async (_name, text, reason, offset) => {
    for (const { name, chunks } of chunkings(text)) {
      // Act
      const plan = await boundaries('csv', chunks);

      // Assess
      expect(plan, name).toEqual({ ok: false, reason: expect.stringContaining(reason), offset });
    }
  });

  it('fails on bytes that are not UTF-8, and on a character cut off by the end', async () => {
    // Prepare
    const invalid = Buffer.concat([
      Buffer.from('a,b\n1,2\n3,'),
      Buffer.from([0xc3, 0x28]),
      Buffer.from('\n'),
    ]);
    const cutOff = Buffer.concat([Buffer.from('a,b\n1,'), Buffer.from([0xe2, 0x82])]);

    // Act
    const plans = [await boundaries('csv', [invalid]), await boundaries('csv', [cutOff])];

    // Assess
    expect(plans).toEqual([
      { ok: false, reason: 'not valid UTF-8', offset: 10 },
      { ok: false, reason: expect.stringContaining('not valid UTF-8'), offset: 6 },
    ]);
  });

  it('fails on a record longer than maxRecordBytes, as soon as it is, and on a header ending past it', async () => {
    // Prepare
    const long = `a,b\n1,2\n${'x'.repeat(100)},3\n4,5\n`;
    const lateHeader = `${'\n'.repeat(60)}a,b\n1,2\n`;

    // Act
    const plans = [
      await boundaries('csv', chunkings(long)[1]?.chunks ?? [], { maxRecordBytes: 50 }),
      await boundaries('csv', [lateHeader], { maxRecordBytes: 50 }),
    ];

    // Assess
    expect(plans).toEqual([
      { ok: false, reason: 'a record is longer than 50 bytes', offset: 8 },
      { ok: false, reason: 'the header record ends past byte 50', offset: 60 },
    ]);
  });

  it.each([
    ['an unclosed quote', 'a,b\n1,2\n3,"never closed\n'],
    ['an empty column name', 'id,,value\n'],
    ['a duplicate column name', 'a,b,a\n'],
  ])('declines %s, on which csv-parse fails', async (_name, text) => {
    // Act
    const plan = await boundaries('csv', [text]);
    const { error } = await sequential('csv', Buffer.from(text));

    // Assess
    expect(plan.ok).toBe(false);
    expect(error).toBeInstanceOf(MalformedFileError);
  });

  it('declines text after a closing quote, which csv-parse keeps as text but not as written', async () => {
    // Prepare
    const text = 'a,b\n"x""y"z,1\n"x"\0y,2\n';

    // Act
    const plan = await boundaries('csv', [text]);
    const { records, error } = await sequential('csv', Buffer.from(text));

    // Assess
    expect(plan).toMatchObject({ ok: false, offset: 10 });
    expect(error).toBeUndefined();
    // The doubled quote is read as one and only the opening quote is put back; after a NUL, no quote is.
    expect(records.map((r) => r.data)).toEqual([
      { a: '"x"y"z', b: '1' },
      { a: 'x\0y', b: '2' },
    ]);
  });
});

describe('findBoundaries, NDJSON', () => {
  it('ends a row at every newline, blank and whitespace-only lines included, a BOM not being a line', async () => {
    // Prepare
    const text = `${BOM}{"a":1}\r\n\n  \t\r\n{"a":2}\nnot json\n{"a":3}`;
    const lines = ['{"a":1}\r\n', '\n', '  \t\r\n', '{"a":2}\n', 'not json\n', '{"a":3}'];

    for (const { name, chunks } of chunkings(text)) {
      // Act
      const plan = await boundaries('ndjson', chunks);

      // Assess
      expect(plan, name).toEqual({ ok: true, points: endsOf(BOM, lines), rows: 6, bytes: bytes(text) });
    }
  });

  it.each([
    ['an empty file', '', 0],
    ['a BOM only', BOM, 0],
    ['a BOM and a newline', `${BOM}\n`, 1],
    ['a last line of spaces without a newline', '{}\n  ', 2],
  ])('counts the lines of %s', async (_name, text, rows) => {
    // Act
    const plan = await boundaries(
      'ndjson',
      split(Buffer.from(text), () => 1),
    );

    // Assess
    expect(plan).toMatchObject({ ok: true, rows });
  });
});

describe('planSplit', () => {
  const text = 'a,b\n1,2\n"3\n3",4\r\n\r\n5,6\n7,8';
  // Boundaries: 8 (row 1), 17 (row 2), 23 (row 3), and 26 (row 4, the end of the file).

  it('gives, for each target, the first boundary at or after it, once, and none at the end of the file', async () => {
    // Act
    const plan = await planSplit('csv', source([text]), [1, 8, 9, 10, 17, 18, 20, 24, 25], LIMITS);

    // Assess
    expect(plan).toEqual({
      ok: true,
      points: [
        { offset: 8, row: 1 },
        { offset: 17, row: 2 },
        { offset: 23, row: 3 },
      ],
      rows: 4,
      bytes: 26,
    });
  });

  it('gives no points without targets, but still counts rows and bytes', async () => {
    // Act
    const plan = await planSplit('ndjson', source(['{}\n\n{}\n']), [], LIMITS);

    // Assess
    expect(plan).toEqual({ ok: true, points: [], rows: 3, bytes: 7 });
  });

  it('rejects targets that are not strictly ascending', async () => {
    // Act
    const planning = planSplit('csv', source([text]), [10, 5], LIMITS);

    // Assess
    await expect(planning).rejects.toThrow(RangeError);
  });

  it('stops reading the object once it cannot be split', async () => {
    // Prepare
    let read = 0;
    async function* object(): AsyncGenerator<Buffer> {
      for (const chunk of ['a,b\n', '"1"x,2\n', '3,4\n', '5,6\n']) {
        read++;
        yield Buffer.from(chunk);
      }
    }

    // Act
    const plan = await planSplit('csv', object(), [5], LIMITS);

    // Assess
    expect(plan).toMatchObject({ ok: false, offset: 7 });
    expect(read).toBe(2);
  });
});

// Generators: CSV an RFC 4180 writer could produce (with literal quotes in unquoted fields, which
// spreadsheets write), and the same with bytes that matter glued in anywhere.
const EOL = fc.constantFrom('\n', '\r\n');
const blankLines = fc.array(EOL, { maxLength: 2 }).map((ls) => ls.join(''));
const unquotedField = fc.oneof(
  fc.constant(''),
  fc
    .tuple(
      fc.constantFrom('a', '1', 'é', '😀', ' ', '\t', '\r', 'x'),
      fc.array(fc.constantFrom('a', '1', ' ', 'é', "'", '"', '\r', ';'), { maxLength: 6 }),
    )
    .map(([first, rest]) => first + rest.join('')),
);
const quotedField = fc
  .array(fc.constantFrom('a', ',', '""', '\n', '\r\n', '\r', ' ', 'é', "'"), { maxLength: 6 })
  .map((parts) => `"${parts.join('')}"`);
const field = fc.oneof({ weight: 3, arbitrary: unquotedField }, { weight: 2, arbitrary: quotedField });
const csvRow = fc.array(field, { minLength: 1, maxLength: 4 }).map((fs) => fs.join(','));
const csvHeader = fc
  .array(fc.constantFrom('plain', 'quoted', 'comma'), { minLength: 1, maxLength: 4 })
  .map((kinds) =>
    kinds.map((k, i) => (k === 'plain' ? `c${i}` : k === 'quoted' ? `"c${i}"` : `"c,""${i}"`)).join(','),
  );
const wellFormedCsv = fc
  .record({
    bom: fc.boolean(),
    lead: blankLines,
    header: csvHeader,
    headerEol: EOL,
    rows: fc.array(fc.tuple(blankLines, csvRow, EOL), { maxLength: 12 }),
    lastEol: fc.boolean(),
    trail: blankLines,
  })
  .map(({ bom, lead, header, headerEol, rows, lastEol, trail }) => {
    const body = rows.map(
      ([blank, row, eol], i) => blank + row + (i < rows.length - 1 || lastEol ? eol : ''),
    );
    const end = rows.length === 0 || lastEol ? trail : '';
    return Buffer.from((bom ? BOM : '') + lead + header + headerEol + body.join('') + end);
  });

const TOKENS = [
  ',',
  '"',
  '""',
  '\n',
  '\r\n',
  '\r',
  'a',
  'é',
  '😀',
  ' ',
  '\0',
  'x,y\n',
  '"a,b"',
  '"q""q"',
  '"\n"',
  'h1,h2\n',
  BOM,
];
/** Bytes that are not UTF-8 (a lone 0xFF, a character cut short): rare, or most inputs would have one. */
const INVALID = [Buffer.from([0xff]), Buffer.from([0xe2, 0x82])];
const token = fc.oneof(
  { weight: 50, arbitrary: fc.constantFrom(...TOKENS.map((t) => Buffer.from(t))) },
  { weight: 1, arbitrary: fc.constantFrom(...INVALID) },
);
const tokenSoup = fc.array(token, { maxLength: 60 }).map((ts) => Buffer.concat(ts));
const adversarialCsv = fc.oneof(
  tokenSoup,
  tokenSoup.map((soup) => Buffer.concat([Buffer.from('h1,h2,h3\n'), soup])),
  fc
    .tuple(wellFormedCsv, fc.array(fc.tuple(fc.nat(), token), { minLength: 1, maxLength: 3 }))
    .map(([buf, inserts]) =>
      inserts.reduce((b, [at, t]) => {
        const i = at % (b.length + 1);
        return Buffer.concat([b.subarray(0, i), t, b.subarray(i)]);
      }, buf),
    ),
);

const ndjsonLine = fc.constantFrom(
  '{"a":1}',
  '{"s":"x,\\"y\\"\\r\\n"}',
  '',
  '  ',
  '\t\r',
  '\r',
  'not json',
  '[1]',
  '{"é":"😀"}',
  '"\\u2028"',
);
const ndjson = fc
  .record({
    bom: fc.boolean(),
    lines: fc.array(fc.tuple(ndjsonLine, fc.constantFrom('\n', '\r\n')), { maxLength: 15 }),
    last: fc.option(ndjsonLine, { nil: undefined }),
  })
  .map(({ bom, lines, last }) =>
    Buffer.from((bom ? BOM : '') + lines.map(([l, e]) => l + e).join('') + (last ?? '')),
  );
const adversarialNdjson = fc.oneof(
  ndjson,
  tokenSoup,
  fc.uint8Array({ maxLength: 200 }).map((a) => Buffer.from(a)),
);

const chunkSizes = fc.array(fc.integer({ min: 1, max: 13 }), { maxLength: 8 });

/** Boundaries of `buf` scanned in chunks and whole, and a sequential parse of it. */
async function scanAndParse(format: SplitFormat, buf: Buffer, sizes: readonly number[], max = MAX) {
  const opts = { maxRecordBytes: max };
  const plan = await boundaries(format, chunked(buf, sizes), opts);
  const whole = await boundaries(format, [buf], opts);
  return { plan, whole, ...(await sequential(format, buf, max)) };
}

/**
 * The property the fan-out stands on: when the scanner says yes, its boundaries are exactly csv-parse's
 * record ends and rows, csv-parse reads the whole file without failing, and a part read between two
 * boundaries (or from one to the end) yields exactly the records between them, numbered and placed as in
 * the whole file. When csv-parse fails, the scanner says no. Chunking changes nothing.
 */
async function expectCsvAgreement(
  buf: Buffer,
  max: number,
  { plan, whole, records, error }: Awaited<ReturnType<typeof scanAndParse>>,
): Promise<void> {
  expect(plan.ok).toBe(whole.ok);
  if (error !== undefined) {
    expect(error).toBeInstanceOf(MalformedFileError);
    expect(plan.ok, `csv-parse fails (${error.message}) but the plan is ok`).toBe(false);
  }
  if (!plan.ok) return;
  expect(whole).toEqual(plan);
  expect(plan).toEqual({
    ok: true,
    points: records.map((r) => ({ offset: r.end, row: r.row })),
    rows: records.length,
    bytes: buf.length,
  });
  await expectPartsAgree('csv', buf, plan.points, records, max);
}

describe('findBoundaries against the parsers (property)', () => {
  it('splits any well-formed CSV, at exactly the record ends and rows csv-parse gives, whatever the chunking', async () => {
    await fc.assert(
      fc.asyncProperty(wellFormedCsv, chunkSizes, async (buf, sizes) => {
        // Act
        const scanned = await scanAndParse('csv', buf, sizes);

        // Assess
        expect(scanned.plan).toMatchObject({ ok: true });
        await expectCsvAgreement(buf, MAX, scanned);
      }),
      { numRuns: 300 },
    );
  });

  it('on any bytes, either agrees exactly with csv-parse or declines, and always declines when csv-parse fails', async () => {
    await fc.assert(
      fc.asyncProperty(
        adversarialCsv,
        chunkSizes,
        // Tiny limits exercise the record-size checks.
        fc.oneof(fc.constant(MAX), fc.integer({ min: 1, max: 40 })),
        async (buf, sizes, max) => {
          // Act
          const scanned = await scanAndParse('csv', buf, sizes, max);

          // Assess
          await expectCsvAgreement(buf, max, scanned);
        },
      ),
      { numRuns: 500 },
    );
  });

  it('ends an NDJSON row at every line end, with the line numbers parseNdjson gives its records', async () => {
    await fc.assert(
      fc.asyncProperty(adversarialNdjson, chunkSizes, async (buf, sizes) => {
        // Act
        const { plan, whole, records, error } = await scanAndParse('ndjson', buf, sizes);

        // Assess
        expect(error).toBeUndefined();
        expect(whole).toEqual(plan);
        const points = okPoints(plan);
        // Rows 1..n, one per line; the last boundary is the end of the file.
        expect(points.map((p) => p.row)).toEqual(points.map((_, i) => i + 1));
        expect(plan).toMatchObject({ rows: points.length, bytes: buf.length });
        const byRow = new Map(points.map((p) => [p.row, p.offset]));
        for (const r of records) expect(byRow.get(r.row), `row ${r.row}`).toBe(r.end);
        // The lines parseNdjson yields no record for are the blank ones.
        const yielded = new Set(records.map((r) => r.row));
        let start = buf.subarray(0, 3).equals(Buffer.from(BOM)) ? 3 : 0;
        for (const p of points) {
          const line = buf.subarray(start, p.offset).toString('latin1');
          expect(
            yielded.has(p.row) || /^[ \t\r]*\n?$/.test(line),
            `line ${p.row}: ${JSON.stringify(line)}`,
          ).toBe(true);
          start = p.offset;
        }
        expect(start).toBe(buf.length);
        await expectPartsAgree('ndjson', buf, points, records);
      }),
      { numRuns: 300 },
    );
  });
});

describe('planSplit targets (property)', () => {
  const objects = fc.oneof(
    wellFormedCsv.map((buf) => ({ format: 'csv' as const, buf })),
    ndjson.map((buf) => ({ format: 'ndjson' as const, buf })),
  );
  const fractions = fc.array(fc.double({ min: 0, max: 1, noNaN: true }), { maxLength: 12 });

  it('gives the first boundary at or after each target, ascending, without duplicates or the end of the file', async () => {
    await fc.assert(
      fc.asyncProperty(objects, fractions, chunkSizes, async ({ format, buf }, at, sizes) => {
        // Prepare
        const size = buf.length;
        const all = okPoints(await boundaries(format, [buf]));
        const targets = [...new Set(at.map((x) => 1 + Math.floor(x * (size - 2))))]
          .filter((t) => t > 0 && t < size)
          .sort((a, b) => a - b);
        const expected: SplitPoint[] = [];
        for (const t of targets) {
          const p = all.find((b) => b.offset >= t);
          if (p !== undefined && p.offset < size && expected.at(-1)?.offset !== p.offset) expected.push(p);
        }

        // Act
        const plan = await planSplit(format, source(chunked(buf, sizes)), targets, LIMITS);

        // Assess
        expect(plan).toEqual({ ok: true, points: expected, rows: all.at(-1)?.row ?? 0, bytes: size });
        const offsets = okPoints(plan).map((p) => p.offset);
        expect(offsets).toEqual([...new Set(offsets)].sort((a, b) => a - b));
        expect(offsets.every((o) => o >= (targets[0] ?? 0) && o < size)).toBe(true);
      }),
      { numRuns: 300 },
    );
  });
});
