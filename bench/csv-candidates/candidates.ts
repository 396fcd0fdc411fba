/**
 * `npm run bench:csv`: the streaming CSV parsers of npm, side by side, on the questions of issue 7: how fast
 * each turns the benchmark's 10 MB CSV (and its quoted, CRLF-heavy variant), fed in 64 KiB chunks, into
 * arrays of string fields, and which of the cases that test/unit/s3-trigger/parsers/csv.test.ts holds each
 * gets right. It measures candidates; it does not change what functions/ use. `npm run bench` runs it too,
 * as its `csv_candidates` section.
 *
 * Every candidate is driven the way a streaming driver in parsers/csv.ts would drive it: bytes in, in
 * chunks, records out as they complete, nothing held beyond the record being read. Parsers that take text
 * get it from one streaming `TextDecoder` (which keeps a BOM as U+FEFF, so BOM handling is the parser's);
 * the decoding is part of their time, as it is of csv-parse's. Where a parser has no record-size option, the
 * driver watches the bytes fed since the last record instead (see {@link Watchdog}).
 *
 * The candidates other than csv-parse are dependencies of this folder's own package
 * (`bench/csv-candidates/package.json`, its own lockfile), never of the project: `npm run bench:csv` installs
 * them here first. This file is type-checked with them by `bench/csv-candidates/tsconfig.json`.
 */
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Readable, Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { parse as fastCsvParse } from '@fast-csv/parse';
import { Parser as CsvParseStream } from 'csv-parse';
import csvParser from 'csv-parser';
import { parse as csvRexParse } from 'csv-rex/parse';
import csvtojson from 'csvtojson';
import fc from 'fast-check';
import Papa from 'papaparse';
import { inferSchema, initParser, type Parser as UdsvParser } from 'udsv';
import { CSV_OPTIONS, type CsvCore } from '../../functions/s3-trigger/parsers/csv.ts';
import { REPO_ROOT } from '../../local/emulators/supervisor.ts';
import { csvBuffer, csvQuotedBuffer, MB, round } from '../lib.ts';
import {
  type CandidateResult,
  type CaseResult,
  type CsvCandidatesResult,
  formatCsvCandidates,
} from './report.ts';

/** This folder: a package of its own, so that the candidates are no dependency of the project. */
const HERE = fileURLToPath(new URL('.', import.meta.url));

type OnRecord = (fields: string[]) => void;

interface Limits {
  /** A record longer than this (bytes) must end the parse with an error. */
  readonly maxRecordBytes: number;
}

/** One parser, driven from a byte source to a callback per record; rejects when the parser reports an error. */
interface Candidate {
  readonly name: string;
  /** The npm package whose version is reported. */
  readonly pkg: string;
  /** How it is driven, in a few words (shown in the results). */
  readonly driven: string;
  parse(chunks: Iterable<Buffer>, onRecord: OnRecord, limits: Limits): Promise<void>;
}

/** Chunk size of the speed runs: what an S3 body yields and what parsers/csv.ts feeds at once. */
const CHUNK = 64 * 1024;

/**
 * For parsers without a record-size option: fails once more than `limit` bytes have been fed since the
 * last record came out (blank lines count too, which errs on the side of failing). The parser then holds
 * at most the limit plus one chunk of an unfinished record, so an unclosed quote or a huge field cannot
 * grow memory without bound.
 */
class Watchdog {
  private sinceRecord = 0;
  constructor(private readonly limit: number) {}
  fed(bytes: number): void {
    this.sinceRecord += bytes;
    if (this.sinceRecord > this.limit) {
      throw new Error(`record longer than ${this.limit} bytes (driver watchdog)`);
    }
  }
  record(): void {
    this.sinceRecord = 0;
  }
}

/**
 * Text of `chunks` as a streaming decoder gives it (a character split across chunks comes out whole). The
 * first piece is at least {@link FIRST_TEXT} characters (or the whole text): papaparse, udsv and csv-rex
 * guess the line end from the first text they see, and a careful driver gives them enough of it.
 */
function* decoded(chunks: Iterable<Buffer>): Generator<string> {
  const decoder = new TextDecoder('utf-8', { ignoreBOM: true });
  let head: string | undefined = '';
  for (const chunk of chunks) {
    const text = decoder.decode(chunk, { stream: true });
    if (head !== undefined) {
      head += text;
      if (head.length < FIRST_TEXT) continue;
      yield head;
      head = undefined;
    } else if (text.length > 0) {
      yield text;
    }
  }
  const tail = (head ?? '') + decoder.decode();
  if (tail.length > 0) yield tail;
}

const FIRST_TEXT = 1024;

/** A Writable in object mode that hands each row to `onRow`. */
function sink<T>(onRow: (row: T) => void): Writable {
  return new Writable({
    objectMode: true,
    write(row: T, _enc, done) {
      try {
        onRow(row);
        done();
      } catch (err) {
        done(err as Error);
      }
    },
  });
}

/** The fields of a row object keyed 0..n-1 (csv-parser with `headers: false`), as an array. */
function indexedToArray(row: Record<string, string>): string[] {
  const out: string[] = [];
  for (let i = 0; ; i++) {
    const v = row[i];
    if (v === undefined) return out;
    out.push(v);
  }
}

export const CANDIDATES: readonly Candidate[] = [
  {
    name: 'csv-parse (core, as parseCsv)',
    pkg: 'csv-parse',
    driven: 'Parser#api.parse on each chunk, CSV_OPTIONS + max_record_size',
    async parse(chunks, onRecord, limits) {
      const core = (
        new CsvParseStream({ ...CSV_OPTIONS, max_record_size: limits.maxRecordBytes }) as unknown as {
          api: CsvCore;
        }
      ).api;
      const close = () => {};
      for (const chunk of chunks) {
        const err = core.parse(chunk, false, onRecord, close);
        if (err) throw err;
      }
      const err = core.parse(undefined, true, onRecord, close);
      if (err) throw err;
    },
  },
  {
    name: 'csv-parse (stream)',
    pkg: 'csv-parse',
    driven: 'Transform stream, CSV_OPTIONS + max_record_size',
    async parse(chunks, onRecord, limits) {
      await pipeline(
        Readable.from(chunks),
        new CsvParseStream({ ...CSV_OPTIONS, max_record_size: limits.maxRecordBytes }),
        sink(onRecord),
      );
    },
  },
  {
    name: 'papaparse',
    pkg: 'papaparse',
    driven: 'Papa.parse(Readable of decoded text, { step, skipEmptyLines }), errors fail; watchdog',
    parse(chunks, onRecord, limits) {
      const watchdog = new Watchdog(limits.maxRecordBytes);
      // Papa's own Node stream input decodes each Buffer chunk by itself (chunk.toString()), which breaks a
      // character split across chunks; the driver decodes instead.
      const text = Readable.from(
        (function* () {
          for (const s of decoded(chunks)) {
            watchdog.fed(Buffer.byteLength(s));
            yield s;
          }
        })(),
      );
      return new Promise<void>((resolve, reject) => {
        let failed = false;
        const fail = (err: Error) => {
          if (failed) return;
          failed = true;
          text.destroy();
          reject(err);
        };
        text.on('error', fail);
        Papa.parse<string[]>(text, {
          skipEmptyLines: true,
          step(results, parser) {
            if (failed) return;
            const [first] = results.errors;
            if (first) {
              // abort() calls complete(): fail first, so that the error wins.
              fail(new Error(`${first.code}: ${first.message}`));
              parser.abort();
              return;
            }
            watchdog.record();
            onRecord(results.data);
          },
          complete: () => {
            if (!failed) resolve();
          },
          error: (err: Error) => fail(err),
        });
      });
    },
  },
  {
    name: 'csv-parser',
    pkg: 'csv-parser',
    driven: 'Transform stream, { headers: false, maxRowBytes }; row objects to arrays',
    async parse(chunks, onRecord, limits) {
      await pipeline(
        Readable.from(chunks),
        csvParser({ headers: false, maxRowBytes: limits.maxRecordBytes }),
        sink<Record<string, string>>((row) => onRecord(indexedToArray(row))),
      );
    },
  },
  {
    name: '@fast-csv/parse',
    pkg: '@fast-csv/parse',
    driven: 'Transform stream, { headers: false, ignoreEmpty: true }; watchdog',
    async parse(chunks, onRecord, limits) {
      const watchdog = new Watchdog(limits.maxRecordBytes);
      const fed = function* () {
        for (const c of chunks) {
          watchdog.fed(c.length);
          yield c;
        }
      };
      await pipeline(
        Readable.from(fed()),
        fastCsvParse<string[], string[]>({ headers: false, ignoreEmpty: true }),
        sink<string[]>((row) => {
          watchdog.record();
          onRecord(row);
        }),
      );
    },
  },
  {
    name: 'csvtojson',
    pkg: 'csvtojson',
    // Its maxRowLength option is declared but read nowhere in 2.0.14, so the driver watches instead.
    driven: "Converter stream, { noheader, output: 'csv', ignoreEmpty }; watchdog (maxRowLength is a no-op)",
    parse(chunks, onRecord, limits) {
      const watchdog = new Watchdog(limits.maxRecordBytes);
      const fed = function* () {
        for (const c of chunks) {
          watchdog.fed(c.length);
          yield c;
        }
      };
      const converter = csvtojson({ noheader: true, output: 'csv', ignoreEmpty: true });
      return new Promise<void>((resolve, reject) => {
        const input = Readable.from(fed());
        input.on('error', (err) => {
          converter.destroy();
          reject(err);
        });
        converter.fromStream(input).subscribe(
          (row: unknown) => {
            watchdog.record();
            onRecord(row as string[]);
          },
          (err: Error) => reject(err),
          () => resolve(),
        );
      });
    },
  },
  {
    name: 'udsv',
    pkg: 'udsv',
    driven:
      "parser.chunk(text, stringArrs, onRow), inferSchema(first KiB, { col: ',', encl: '\"' }); watchdog",
    async parse(chunks, onRecord, limits) {
      const watchdog = new Watchdog(limits.maxRecordBytes);
      let parser: UdsvParser | undefined;
      const onRow = (row: string[]) => {
        watchdog.record();
        onRecord(row);
      };
      for (const text of decoded(chunks)) {
        watchdog.fed(Buffer.byteLength(text));
        // The schema (its one row delimiter) is inferred from the first text; `header: () => []` makes the
        // header row a record like the others.
        parser ??= initParser(inferSchema(text, { col: ',', encl: '"', header: () => [] }));
        parser.chunk<string[]>(text, parser.stringArrs, onRow);
      }
      parser?.end();
    },
  },
  {
    name: 'csv-rex',
    pkg: 'csv-rex',
    driven: "chunkParse(previousChunk() + text), { header: false, delimiterChar: ',' }, errors fail",
    async parse(chunks, onRecord, limits) {
      const parser = csvRexParse({
        header: false,
        delimiterChar: ',',
        errorOnEmptyLine: false,
        errorOnExtraFields: false,
        errorOnMissingFields: false,
      });
      const controller = {
        enqueue(row: { data?: string[]; err?: { code: string; message: string } }) {
          if (row.err) throw new Error(`${row.err.code}: ${row.err.message}`);
          if (row.data) onRecord(row.data);
        },
      };
      for (const text of decoded(chunks)) {
        parser.chunkParse(parser.previousChunk() + text, controller);
        // What it keeps between calls is the unfinished record: its size is the record's so far.
        if (parser.previousChunk().length > limits.maxRecordBytes) {
          throw new Error(`record longer than ${limits.maxRecordBytes} characters`);
        }
      }
      parser.chunkParse(parser.previousChunk(), controller, true);
    },
  },
];

// ---------------------------------------------------------------------------------------------------------
// Correctness

const LIMITS: Limits = { maxRecordBytes: 1024 * 1024 };

/** Records of `bytes` fed as `chunks`, or the error that ended the parse. */
async function run(
  c: Candidate,
  chunks: Iterable<Buffer>,
  limits = LIMITS,
): Promise<{ records: string[][]; error?: string }> {
  const records: string[][] = [];
  try {
    await c.parse(chunks, (r) => records.push([...r]), limits);
    return { records };
  } catch (err) {
    return { records, error: err instanceof Error ? err.message : String(err) };
  }
}

/** `bytes` cut at the given sizes, cycling through them (each at least 1). */
function split(bytes: Buffer, sizes: readonly number[]): Buffer[] {
  const out: Buffer[] = [];
  for (let at = 0, i = 0; at < bytes.length; i++) {
    const n = Math.max(1, sizes[i % sizes.length] ?? 1);
    out.push(Buffer.from(bytes.subarray(at, at + n)));
    at += n;
  }
  return out;
}

const whole = (text: string | Buffer) => [Buffer.from(text)];

function show(value: unknown): string {
  const s = JSON.stringify(value);
  return s.length > 240 ? `${s.slice(0, 240)}…` : s;
}

/** Passes when the parse ends without error with exactly `expected`. */
async function expectRecords(c: Candidate, chunks: Buffer[], expected: string[][]): Promise<CaseResult> {
  const got = await run(c, chunks);
  if (got.error !== undefined) return { pass: false, detail: `error: ${got.error}` };
  const pass = JSON.stringify(got.records) === JSON.stringify(expected);
  return pass ? { pass } : { pass, detail: `got ${show(got.records)}` };
}

/** The text of `records` as CSV: fields quoted when they must be, or when `quoteAll`. */
function toCsv(records: string[][], eol: string, quoteAll: boolean[]): string {
  return records
    .map((r, i) => {
      const fields = r.map((f) => (quoteAll[i] || /[",\r\n]/.test(f) ? `"${f.replaceAll('"', '""')}"` : f));
      // A record of one empty field would be a blank line, which is skipped: quote it.
      return fields.length === 1 && fields[0] === '' ? '""' : fields.join(',');
    })
    .map((line) => line + eol)
    .join('');
}

const FIELD = fc
  .array(fc.constantFrom('a', 'b', '1', ' ', ',', '"', '\n', '\r\n', 'é', '€', '👋', '日'), { maxLength: 6 })
  .map((parts) => parts.join(''));
const TEXT = fc.record({
  records: fc.array(fc.array(FIELD, { minLength: 1, maxLength: 4 }), { minLength: 1, maxLength: 6 }),
  crlf: fc.boolean(),
  bom: fc.boolean(),
  quoteAll: fc.array(fc.boolean(), { minLength: 6, maxLength: 6 }),
  sizes: fc.array(fc.integer({ min: 1, max: 17 }), { minLength: 1, maxLength: 8 }),
});

/**
 * The property: for generated CSV (quoted commas, quotes, line breaks, multi-byte characters, a BOM or
 * not, CRLF or LF), the records of any chunking equal those of the whole text, and those of 1-byte chunks.
 */
async function chunkingProperty(c: Candidate): Promise<CaseResult> {
  const result = await fc.check(
    fc.asyncProperty(TEXT, async ({ records, crlf, bom, quoteAll, sizes }) => {
      const bytes = Buffer.from(`${bom ? '\ufeff' : ''}${toCsv(records, crlf ? '\r\n' : '\n', quoteAll)}`);
      const one = await run(c, [bytes]);
      for (const chunks of [split(bytes, sizes), split(bytes, [1])]) {
        const other = await run(c, chunks);
        if (JSON.stringify(other) !== JSON.stringify(one)) return false;
      }
      return true;
    }),
    { numRuns: 150, seed: 4180 },
  );
  if (!result.failed) return { pass: true };
  const [example] = result.counterexample ?? [];
  const text = example
    ? toCsv(example.records, example.crlf ? '\r\n' : '\n', example.quoteAll)
    : '(no counterexample)';
  return { pass: false, detail: `differs when chunked: ${show(text)} at sizes ${show(example?.sizes)}` };
}

interface Case {
  readonly id: string;
  readonly what: string;
  check(c: Candidate): Promise<CaseResult>;
}

const SAMPLE_FOR_CHUNKS =
  '\ufeffname,note,value\r\n"a,""b""",héllo 👋,1\r\n\r\n"line\nbreak",€,2\r\nragged\r\n日本語,"x",3';

/** The cases of test/unit/s3-trigger/parsers/csv.test.ts that are the parser's (not the header mapping's). */
export const CASES: readonly Case[] = [
  {
    id: 'header',
    what: 'a header row, then data rows',
    check: (c) =>
      expectRecords(c, whole('name,value,timestamp\ncpu,0.5,2024-01-01T00:00:00Z\nmem,12,1700000000\n'), [
        ['name', 'value', 'timestamp'],
        ['cpu', '0.5', '2024-01-01T00:00:00Z'],
        ['mem', '12', '1700000000'],
      ]),
  },
  {
    id: 'rfc4180',
    what: 'quoted commas, doubled quotes, quoted line breaks, an empty quoted field',
    check: (c) =>
      expectRecords(c, whole('name,note\r\n"a,b","say ""hi"""\r\n"multi\r\nline",plain\r\n"",x\r\n'), [
        ['name', 'note'],
        ['a,b', 'say "hi"'],
        ['multi\r\nline', 'plain'],
        ['', 'x'],
      ]),
  },
  {
    id: 'bom',
    what: 'a UTF-8 BOM is not part of the first field',
    check: (c) =>
      expectRecords(c, whole('\ufeffname,value\ncpu,1\n'), [
        ['name', 'value'],
        ['cpu', '1'],
      ]),
  },
  {
    id: 'crlf_lf_mixed',
    what: 'CRLF, and CRLF and LF mixed in one file, leave no \\r in values',
    async check(c) {
      const expected = [
        ['name', 'value'],
        ['cpu', '1'],
        ['mem', '2'],
      ];
      const crlf = await expectRecords(c, whole('name,value\r\ncpu,1\r\nmem,2\r\n'), expected);
      if (!crlf.pass) return { pass: false, detail: `CRLF: ${crlf.detail}` };
      const mixed = await expectRecords(c, whole('name,value\r\ncpu,1\nmem,2\r\n'), expected);
      return mixed.pass ? mixed : { pass: false, detail: `mixed: ${mixed.detail}` };
    },
  },
  {
    id: 'quote_in_unquoted',
    what: 'a quote inside an unquoted field (5\'11", 4"5) is kept as text',
    check: (c) =>
      expectRecords(c, whole('a,b\n1,2\n3,4"5\nh,5\'11"\n'), [
        ['a', 'b'],
        ['1', '2'],
        ['3', '4"5'],
        ['h', '5\'11"'],
      ]),
  },
  {
    id: 'text_after_closing_quote',
    what: 'a field with text after its closing quote ("1"x) is kept whole, as text',
    check: (c) =>
      expectRecords(c, whole('a,b\n"1"x,2\n"ok",3\n'), [
        ['a', 'b'],
        ['"1"x', '2'],
        ['ok', '3'],
      ]),
  },
  {
    id: 'empty_lines',
    what: 'empty lines (LF and CRLF) anywhere are skipped',
    check: (c) =>
      expectRecords(c, whole('\n\r\na,b\n\n1,2\r\n\r\n\n3,4\n\n'), [
        ['a', 'b'],
        ['1', '2'],
        ['3', '4'],
      ]),
  },
  {
    id: 'ragged_rows',
    what: 'rows with fewer or more fields come out as they are (so they can be rejected), not dropped',
    check: (c) =>
      expectRecords(c, whole('a,b,c\n1,2,3\n4,5\n6,"7,x",8,9\n10,11,12\n'), [
        ['a', 'b', 'c'],
        ['1', '2', '3'],
        ['4', '5'],
        ['6', '7,x', '8', '9'],
        ['10', '11', '12'],
      ]),
  },
  {
    id: 'no_final_eol',
    what: 'a last record without a line end',
    check: (c) =>
      expectRecords(c, whole('a,b\n1,2\n3,4'), [
        ['a', 'b'],
        ['1', '2'],
        ['3', '4'],
      ]),
  },
  {
    id: 'chunk_boundaries',
    what: "the same records whatever the chunking (the tests' sample, and a fast-check property)",
    async check(c) {
      const bytes = Buffer.from(SAMPLE_FOR_CHUNKS);
      const one = await run(c, [bytes]);
      for (const sizes of [[1], [2], [3], [5, 1, 16, 2, 7], [13, 3, 1]]) {
        const other = await run(c, split(bytes, sizes));
        if (JSON.stringify(other) !== JSON.stringify(one)) {
          return { pass: false, detail: `sample at sizes ${show(sizes)}: ${show(other)} vs ${show(one)}` };
        }
      }
      return chunkingProperty(c);
    },
  },
  {
    id: 'multibyte_split',
    what: 'multi-byte UTF-8 split across chunks (1-byte chunks) comes out whole',
    check: (c) =>
      expectRecords(c, split(Buffer.from('name,note\n€,日本語👋\n"é,👋",x\n'), [1]), [
        ['name', 'note'],
        ['€', '日本語👋'],
        ['é,👋', 'x'],
      ]),
  },
  {
    id: 'unclosed_quote_eof',
    what: 'an unclosed quote at the end of the file is an error, not a record or silence',
    async check(c) {
      const got = await run(c, whole('a,b\n1,2\n"3,4\n'));
      return got.error !== undefined
        ? { pass: true }
        : { pass: false, detail: `no error; ${show(got.records)}` };
    },
  },
  {
    id: 'record_size_limit',
    what: 'a 4 MiB field with a 64 KiB limit fails within the first MiB fed (16 KiB chunks)',
    async check(c) {
      const bytes = Buffer.from(`a,b\n1,2\n3,${'x'.repeat(4 * MB)}\n5,6\n`);
      let fed = 0;
      const counted = function* () {
        for (const chunk of split(bytes, [16 * 1024])) {
          fed += chunk.length;
          yield chunk;
        }
      };
      const got = await run(c, counted(), { maxRecordBytes: 64 * 1024 });
      if (got.error === undefined) return { pass: false, detail: 'no error: the whole record was held' };
      if (fed > MB) return { pass: false, detail: `error only after ${round(fed / MB, 1)} MiB fed` };
      return { pass: true };
    },
  },
  {
    id: 'input_untouched',
    what: '(beyond the tests) the bytes fed are left as they were (quoted fields with doubled quotes)',
    async check(c) {
      const bytes = csvQuotedBuffer(256 * 1024).data;
      const before = Buffer.from(bytes);
      await run(c, chunked(bytes));
      if (before.equals(bytes)) return { pass: true };
      let at = 0;
      while (before[at] === bytes[at]) at++;
      return {
        pass: false,
        detail: `byte ${at} rewritten: ${show(before.subarray(at, at + 24).toString())} became ${show(bytes.subarray(at, at + 24).toString())}`,
      };
    },
  },
];

// ---------------------------------------------------------------------------------------------------------
// Speed

function* chunked(data: Buffer, size = CHUNK): Generator<Buffer> {
  for (let i = 0; i < data.length; i += size) yield data.subarray(i, i + size);
}

async function count(c: Candidate, data: Buffer): Promise<number> {
  let n = 0;
  await c.parse(
    chunked(data),
    (fields) => {
      // Touch the fields, as a consumer would.
      if (fields.length > 0) n++;
    },
    { maxRecordBytes: MB },
  );
  return n;
}

/** The installed version of `pkg`: this folder's package, else the project's (csv-parse). */
function versionOf(pkg: string): string {
  const own = join(HERE, 'node_modules', pkg, 'package.json');
  const path = existsSync(own) ? own : join(REPO_ROOT, 'node_modules', pkg, 'package.json');
  return (JSON.parse(readFileSync(path, 'utf8')) as { version: string }).version;
}

/**
 * Cases for every candidate, then `reps` rounds of speed runs; each round runs every candidate once on each
 * data set, so that a noisy moment of the machine spreads over the candidates instead of landing on one.
 */
export async function benchCsvCandidates(
  opts: { reps?: number; bytes?: number; log?: (msg: string) => void } = {},
): Promise<CsvCandidatesResult> {
  const reps = opts.reps ?? 3;
  const bytes = opts.bytes ?? 10 * MB;
  const log = opts.log ?? (() => {});
  const plain = csvBuffer(bytes);
  const quoted = csvQuotedBuffer(bytes);

  const cases = new Map<string, Record<string, CaseResult>>();
  for (const c of CANDIDATES) {
    const results: Record<string, CaseResult> = {};
    for (const k of CASES) {
      try {
        results[k.id] = await k.check(c);
      } catch (err) {
        results[k.id] = { pass: false, detail: `threw: ${err instanceof Error ? err.message : String(err)}` };
      }
    }
    cases.set(c.name, results);
  }
  log('csv candidates: cases done, timing');

  const times = new Map(CANDIDATES.map((c) => [c.name, { plain: [] as number[], quoted: [] as number[] }]));
  // A run that errs or miscounts is not timed; the first such problem and the number of such runs are kept.
  const problems = new Map<string, { first: string; runs: number }>();
  for (let rep = 0; rep < reps; rep++) {
    for (const c of CANDIDATES) {
      for (const [label, set] of [
        ['plain', plain],
        ['quoted', quoted],
      ] as const) {
        let problem: string | undefined;
        // A copy for each run: csv-parser rewrites the bytes it is given (see the input_untouched case).
        const input = Buffer.from(set.data);
        try {
          const t0 = performance.now();
          const n = await count(c, input);
          const seconds = (performance.now() - t0) / 1000;
          if (n === set.rows + 1) times.get(c.name)?.[label].push(round(seconds, 3));
          else problem = `${label}: ${n} records, expected ${set.rows + 1}`;
        } catch (err) {
          problem = `${label}: ${err instanceof Error ? err.message : String(err)}`;
        }
        if (problem !== undefined) {
          const seen = problems.get(c.name);
          problems.set(c.name, { first: seen?.first ?? problem, runs: (seen?.runs ?? 0) + 1 });
        }
      }
    }
    log(`csv candidates: round ${rep + 1} of ${reps}`);
  }

  const candidates = CANDIDATES.map((c): CandidateResult => {
    const t = times.get(c.name) ?? { plain: [], quoted: [] };
    const rate = (data: Buffer, runs: number[]) =>
      runs.length > 0 ? round(data.length / MB / Math.min(...runs), 1) : null;
    const caseResults = cases.get(c.name) ?? {};
    const problem = problems.get(c.name);
    return {
      name: c.name,
      package: c.pkg,
      version: versionOf(c.pkg),
      driven: c.driven,
      mb_per_s_plain: rate(plain.data, t.plain),
      mb_per_s_quoted: rate(quoted.data, t.quoted),
      runs_s_plain: t.plain,
      runs_s_quoted: t.quoted,
      records_ok: problem ? `${problem.runs} of ${2 * reps} runs: ${problem.first.slice(0, 160)}` : true,
      cases: caseResults,
      cases_failed: Object.entries(caseResults)
        .filter(([, r]) => !r.pass)
        .map(([id]) => id),
    };
  });
  const correct = candidates.filter((c) => c.cases_failed.length === 0 && c.records_ok === true);
  const best = correct.sort((a, b) => (b.mb_per_s_plain ?? 0) - (a.mb_per_s_plain ?? 0))[0];
  return {
    generated_at: new Date().toISOString(),
    data: {
      plain_mb: round(plain.data.length / MB, 1),
      quoted_mb: round(quoted.data.length / MB, 1),
      chunk_bytes: CHUNK,
      reps,
    },
    note: `best of ${reps} runs in one process, rounds interleaved across candidates; 2-core machine shared with other work, so rates are noisy`,
    cases: Object.fromEntries(CASES.map((k) => [k.id, k.what])),
    candidates,
    recommended: best ? `${best.package} ${best.version}` : 'none passes every case',
    recommended_driver: best?.name ?? '',
  };
}

/**
 * `npm run bench:csv`: run the comparison, print it, and replace the csv_candidates section of results.json.
 * With `--json`, print only the result as JSON (how `npm run bench` runs it, in a process of its own).
 */
async function main(): Promise<void> {
  const t0 = performance.now();
  const log = (msg: string) =>
    process.stderr.write(
      `bench:csv [${((performance.now() - t0) / 1000).toFixed(0).padStart(3)} s] ${msg}\n`,
    );
  const result = await benchCsvCandidates({ log });
  if (process.argv.includes('--json')) {
    process.stdout.write(JSON.stringify(result));
    return;
  }
  process.stdout.write(formatCsvCandidates(result));
  const path = join(REPO_ROOT, 'bench', 'results.json');
  const results = JSON.parse(readFileSync(path, 'utf8')) as Record<string, unknown>;
  writeFileSync(path, `${JSON.stringify({ ...results, csv_candidates: result }, null, 2)}\n`);
  log(`updated csv_candidates in ${path}`);
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) await main();
