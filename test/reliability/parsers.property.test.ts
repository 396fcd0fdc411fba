import { gzipSync } from 'node:zlib';
import fc from 'fast-check';
import { parquetWriteBuffer } from 'hyparquet-writer';
import { describe, expect, it } from 'vitest';
import { MalformedFileError } from '#shared/errors.ts';
import { normaliseSignal, VALUE_RANGE } from '#shared/signal.ts';
import { gunzipBounded } from '../../functions/s3-trigger/parsers/gzip.ts';
import { parseTextRecords, type TextFormat } from '../../functions/s3-trigger/parsers/index.ts';
import { parseParquet } from '../../functions/s3-trigger/parsers/parquet.ts';
import {
  CTX,
  drain,
  expectWellBehaved,
  MiB,
  memoryBuffer,
  RUNS,
  SEED,
  source,
  split,
  summary,
} from './helpers.ts';

fc.configureGlobal({ seed: SEED, numRuns: RUNS, endOnFailure: true });

const TEXT_FORMATS: readonly TextFormat[] = ['csv', 'json', 'ndjson'];
const BOM = Buffer.from([0xef, 0xbb, 0xbf]);

/** Pieces that matter to CSV and JSON tokenizers, and bytes that are not UTF-8, to be glued at random. */
const TOKENS: readonly Buffer[] = [
  ...[
    'name',
    'value',
    'timestamp',
    'a',
    '1',
    '-2.5e3',
    '2024-01-01T00:00:00Z',
    ',',
    '"',
    '""',
    '\n',
    '\r\n',
    '\r',
    ' ',
    '\t',
    '{',
    '}',
    '[',
    ']',
    ':',
    'null',
    'true',
    '\\',
    '\\u00',
    'é',
    '😀',
    '\u2028',
    '\0',
    '{"name":"n","value":1,"timestamp":0}',
    'name,value,timestamp\n',
  ].map((s) => Buffer.from(s)),
  BOM,
  Buffer.from([0xff]),
  Buffer.from([0xc3]),
  Buffer.from([0xed, 0xa0, 0x80]),
  Buffer.from([0xe2, 0x82]),
  Buffer.from([0xf0, 0x9f, 0x98]),
  Buffer.from([0xc0, 0xaf]),
];

const randomBytes = fc.uint8Array({ maxLength: 2048 });
const tokenSoup = fc
  .array(fc.constantFrom(...TOKENS), { maxLength: 120 })
  .map((parts) => Buffer.concat(parts));
const adversarialBytes = fc.oneof(randomBytes, tokenSoup);
const chunkSizes = fc.array(fc.integer({ min: 1, max: 97 }), { maxLength: 8 });
/** Tiny limits exercise the record-size paths; the default one the normal paths. */
const maxRecordBytes = fc.oneof(fc.constant(MiB), fc.integer({ min: 1, max: 80 }));

function parseText(format: TextFormat, chunks: Buffer[], max: number) {
  return drain(parseTextRecords(format, source(chunks), { maxRecordBytes: max }), `${format} parse`);
}

describe.each(TEXT_FORMATS)('%s parser on arbitrary bytes', (format) => {
  it('accepts or rejects each record, or fails with a located MalformedFileError', async () => {
    await fc.assert(
      fc.asyncProperty(adversarialBytes, chunkSizes, maxRecordBytes, async (bytes, sizes, max) => {
        expectWellBehaved(await parseText(format, split(bytes, sizes), max));
      }),
    );
  });

  it('gives the same records and error however the bytes are chunked', async () => {
    await fc.assert(
      fc.asyncProperty(adversarialBytes, chunkSizes, maxRecordBytes, async (bytes, sizes, max) => {
        const whole = await parseText(format, split(bytes), max);
        const chunked = await parseText(format, split(bytes, sizes), max);
        expect(summary(chunked)).toEqual(summary(whole));
      }),
    );
  });
});

describe('ndjson over-long lines', () => {
  const line = fc.oneof(
    fc
      .string({ unit: 'binary', maxLength: 40 })
      .map((t) => JSON.stringify({ name: t, value: 1, timestamp: 0 })),
    fc.string({ unit: 'binary', minLength: 100, maxLength: 2500 }),
  );
  const file = fc
    .tuple(fc.array(line, { maxLength: 12 }), fc.constantFrom('\n', '\r\n'), fc.boolean())
    .map(([lines, eol, last]) => Buffer.from(lines.join(eol) + (last ? eol : '')));
  const cuts = fc.array(fc.integer({ min: 1, max: 3000 }), { maxLength: 8 });

  it('gives the same rejects, raw text and row numbers wherever the chunks are cut', async () => {
    await fc.assert(
      fc.asyncProperty(file, cuts, cuts, fc.integer({ min: 20, max: 2000 }), async (bytes, a, b, max) => {
        const one = await parseText('ndjson', split(bytes, a), max);
        const other = await parseText('ndjson', split(bytes, b), max);
        expect(summary(one)).toEqual(summary(other));
        expect(summary(one)).toEqual(summary(await parseText('ndjson', split(bytes), max)));
      }),
    );
  });
});

describe('gunzipBounded on arbitrary bytes', () => {
  const small = { maxInflationRatio: 4, minInflatedBytesAllowed: 4096 };

  it('inflates or fails with a located MalformedFileError, with or without the gzip magic bytes', async () => {
    const gzipish = fc.oneof(
      randomBytes,
      randomBytes.map((b) => Buffer.concat([Buffer.from([0x1f, 0x8b, 8]), b])),
      randomBytes.map((b) => Buffer.concat([Buffer.from([0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 0xff]), b])),
    );
    await fc.assert(
      fc.asyncProperty(gzipish, chunkSizes, fc.boolean(), async (bytes, sizes, knownSize) => {
        const out = await drain(
          gunzipBounded(source(split(bytes, sizes)), knownSize ? bytes.length : undefined, small),
          'gunzip',
        );
        if (out.error !== undefined) {
          expect(out.error).toBeInstanceOf(MalformedFileError);
          expect((out.error as MalformedFileError).location.byteOffset).toBeTypeOf('number');
        }
      }),
    );
  });

  it('gives back exactly what was compressed, however it is chunked', async () => {
    await fc.assert(
      fc.asyncProperty(fc.uint8Array({ maxLength: 4096 }), chunkSizes, async (plain, sizes) => {
        const gz = gzipSync(plain);
        const out = await drain(gunzipBounded(source(split(gz, sizes)), gz.length), 'gunzip');
        expect(out.error).toBeUndefined();
        expect(Buffer.concat(out.records).equals(Buffer.from(plain))).toBe(true);
      }),
    );
  });

  it('fails a truncated stream with a MalformedFileError wherever it is cut', async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.uint8Array({ minLength: 1, maxLength: 4096 }),
        fc.double({ min: 0, max: 1, noNaN: true, maxExcluded: true }),
        chunkSizes,
        async (plain, at, sizes) => {
          const gz = gzipSync(plain);
          const cut = gz.subarray(0, Math.floor(at * gz.length));
          const out = await drain(gunzipBounded(source(split(cut, sizes)), cut.length), 'gunzip');
          expect(out.error).toBeInstanceOf(MalformedFileError);
          expect((out.error as MalformedFileError).location.byteOffset).toBeTypeOf('number');
          // What came out is the start of the text; all of it when only the 8-byte trailer is cut.
          const inflated = Buffer.concat(out.records);
          expect(inflated.equals(Buffer.from(plain).subarray(0, inflated.length))).toBe(true);
          if (cut.length >= gz.length - 8) expect(inflated.length).toBe(plain.length);
        },
      ),
    );
  });
});

describe('parseParquet on arbitrary bytes', () => {
  const T0 = Date.UTC(2024, 0, 1);
  const valid = new Uint8Array(
    parquetWriteBuffer({
      columnData: [
        { name: 'name', type: 'STRING', data: Array.from({ length: 20 }, (_, i) => `metric-${i % 3}`) },
        { name: 'value', type: 'DOUBLE', data: Float64Array.from({ length: 20 }, (_, i) => i * 0.5) },
        { name: 'id', type: 'INT64', data: BigInt64Array.from({ length: 20 }, (_, i) => BigInt(i)) },
        {
          name: 'timestamp',
          type: 'TIMESTAMP',
          data: Array.from({ length: 20 }, (_, i) => new Date(T0 + i * 1000)),
        },
      ],
      rowGroupSize: 8,
    }),
  );
  /** Nulls, booleans, a one-value dictionary and JSON: pages with definition levels and 0-bit indices. */
  const sparse = new Uint8Array(
    parquetWriteBuffer({
      columnData: [
        {
          name: 'name',
          type: 'STRING',
          data: Array.from({ length: 30 }, (_, i) => (i % 4 ? `m-${i % 2}` : null)),
        },
        {
          name: 'flag',
          type: 'BOOLEAN',
          data: Array.from({ length: 30 }, (_, i) => (i % 5 ? i % 3 === 0 : null)),
        },
        { name: 'n', type: 'INT32', data: Array.from({ length: 30 }, (_, i) => (i % 7 ? i * 1000 : null)) },
        { name: 'tags', type: 'JSON', data: Array.from({ length: 30 }, (_, i) => ({ a: i })) },
        { name: 'one', type: 'STRING', data: Array.from({ length: 30 }, () => 'same') },
      ],
      rowGroupSize: 10,
    }),
  );
  const par1 = Buffer.from('PAR1');
  const mutationOf = (file: Uint8Array) =>
    fc
      .array(fc.tuple(fc.nat({ max: file.length - 1 }), fc.integer({ min: 0, max: 255 })), {
        minLength: 1,
        maxLength: 6,
      })
      .map((edits) => {
        const copy = Uint8Array.from(file);
        for (const [at, byte] of edits) copy[at] = byte;
        return copy;
      });
  const mutated = fc.oneof(mutationOf(valid), mutationOf(sparse));
  const parquetish = fc.oneof(
    randomBytes,
    randomBytes.map((b) => Buffer.concat([par1, b, par1])),
    randomBytes.map((b) => {
      const len = Buffer.alloc(4);
      len.writeUInt32LE(b.length);
      return Buffer.concat([par1, b, len, par1]);
    }),
    mutated,
  );

  it('yields rows or fails with a MalformedFileError, never another error', async () => {
    await fc.assert(
      fc.asyncProperty(parquetish, async (bytes) => {
        // A Parquet file that is not readable at all may not have a row or offset to point at.
        expectWellBehaved(await drain(parseParquet(memoryBuffer(bytes), { maxRecordBytes: MiB })), false);
      }),
    );
  });
});

/** What writers put in the files: names with separators, quotes and newlines; values a series keeps; timestamps. */
const textUnit = fc.oneof(
  {
    weight: 1,
    arbitrary: fc.constantFrom(',', '"', '\n', '\r', '\r\n', ' ', '\t', "'", '\\', '\u2028', '\0'),
  },
  { weight: 4, arbitrary: fc.string({ unit: 'binary', minLength: 1, maxLength: 1 }) },
);
const text = (maxLength: number) => fc.string({ unit: textUnit, maxLength });
const signalRecord = fc.record({
  name: text(40).filter((s) => s.trim() !== '' && s.length <= 256),
  value: fc.oneof(
    fc.integer(),
    // Values a series can keep (VALUE_RANGE: 0, or 1e-100 to 1e50 in magnitude).
    fc
      .double({ min: -VALUE_RANGE.max, max: VALUE_RANGE.max, noNaN: true })
      .map((v) => (Math.abs(v) < VALUE_RANGE.min ? 0 : v)),
  ),
  timestamp: fc.oneof(
    fc
      .date({
        min: new Date('0001-01-01T00:00:00Z'),
        max: new Date('9999-12-31T23:59:59Z'),
        noInvalidDate: true,
      })
      .map((d) => d.toISOString()),
    fc.integer({ min: 1e12, max: 4e12 }),
    fc.integer({ min: 0, max: 4e9 }),
  ),
  note: text(20),
});
type SignalRecord = typeof signalRecord extends fc.Arbitrary<infer T> ? T : never;

const COLUMNS = ['name', 'value', 'timestamp', 'note'] as const;

function csvField(v: string | number, quoteAll: boolean): string {
  const s = String(v);
  return quoteAll || /[",\r\n]/.test(s) ? `"${s.replaceAll('"', '""')}"` : s;
}

interface Layout {
  readonly bom: boolean;
  readonly crlf: boolean;
  readonly quoteAll: boolean;
  readonly finalNewline: boolean;
  readonly pretty: boolean;
}

function write(format: TextFormat, records: readonly SignalRecord[], l: Layout): Buffer {
  const eol = l.crlf ? '\r\n' : '\n';
  let body: string;
  if (format === 'csv') {
    const lines = [
      COLUMNS.join(','),
      ...records.map((r) => COLUMNS.map((c) => csvField(r[c], l.quoteAll)).join(',')),
    ];
    body = lines.join(eol) + (l.finalNewline ? eol : '');
  } else if (format === 'ndjson') {
    body = records.map((r) => JSON.stringify(r)).join(eol) + (l.finalNewline ? eol : '');
  } else {
    body = JSON.stringify(records, null, l.pretty ? 2 : undefined);
  }
  return Buffer.concat([l.bom ? BOM : Buffer.alloc(0), Buffer.from(body)]);
}

const layout = fc.record({
  bom: fc.boolean(),
  crlf: fc.boolean(),
  quoteAll: fc.boolean(),
  finalNewline: fc.boolean(),
  pretty: fc.boolean(),
});

describe.each(TEXT_FORMATS)('%s round trip', (format) => {
  it('reads back exactly the records written, in order, equal after normalisation', async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.array(signalRecord, { maxLength: 25 }),
        layout,
        chunkSizes,
        async (records, l, sizes) => {
          const bytes = write(format, records, l);
          const out = await parseText(format, split(bytes, sizes), MiB);
          expect(out.error).toBeUndefined();
          expect(out.records.map((r) => r.row)).toEqual(records.map((_, i) => i + 1));
          const read = out.records.map((r) => normaliseSignal(r.data, CTX));
          const expected = records.map((r) => normaliseSignal(r, CTX));
          expect(expected.every((e) => e.ok)).toBe(true);
          expect(read).toEqual(expected);
        },
      ),
    );
  });
});

describe('text parsers before bytes that are not UTF-8', () => {
  it.each(['csv', 'ndjson'] as const)(
    '%s: the records of a file that ends in a line end come out first, then the byte offset',
    async (format) => {
      await fc.assert(
        fc.asyncProperty(
          fc.array(signalRecord, { maxLength: 10 }),
          layout,
          adversarialBytes,
          chunkSizes,
          async (records, l, junk, sizes) => {
            const good = write(format, records, { ...l, finalNewline: true });
            const bytes = Buffer.concat([good, Buffer.from([0xff]), junk]);
            const alone = await parseText(format, split(good), MiB);
            const out = await parseText(format, split(bytes, sizes), MiB);
            if (format === 'csv') {
              expect(out.records).toEqual(alone.records);
              expect(out.error).toBeInstanceOf(MalformedFileError);
              expect((out.error as MalformedFileError).location).toEqual({ byteOffset: good.length });
            } else {
              // NDJSON rejects the line with the invalid byte and goes on.
              expect(out.records.slice(0, alone.records.length)).toEqual(alone.records);
            }
          },
        ),
      );
    },
  );
});
