import { type CsvError, type Options, Parser } from 'csv-parse';
import { MalformedFileError } from '#shared/errors.ts';
import { asBuffer, clipRaw, notUtf8Reason, pieces, Utf8StreamValidator } from './bytes.ts';
import type { ParserOptions } from './types.ts';

/**
 * CSV bytes to fields: the UTF-8 check, the header and csv-parse, in batches of records split into fields.
 * What `csv.ts` turns into records, on the calling thread or on a thread of its own (`csv-thread.ts`):
 * both import this module, and neither imports the other's caller.
 */

const LF = 10;

/**
 * The synchronous core of csv-parse, which its stream `Parser` wraps as `parser.api`. Driving it directly
 * skips a Transform stream and an object-mode readable per record (about 15% faster on a 50 MB file) and
 * lets UTF-8 validation, record numbering and error locations stay in step with the bytes fed.
 */
export interface CsvCore {
  parse(
    buf: Buffer | undefined,
    end: boolean,
    push: (record: string[]) => void,
    close: () => void,
  ): Error | undefined;
  /** `bytes`: bytes consumed (a BOM included); when a record is pushed, just past its record delimiter. */
  readonly info: { readonly lines: number; readonly empty_lines: number; readonly bytes: number };
}

/** The options csv-parse runs with (bench/ parses with the same ones). */
export const CSV_OPTIONS: Options = {
  bom: true,
  // Arrays, not objects: the header is checked and mapped here, and ragged rows become rejects.
  relax_column_count: true,
  // A quote inside an unquoted field (5'11") is kept as text, as spreadsheets and pandas read it, rather
  // than failing the whole file; quoted fields still follow RFC 4180.
  relax_quotes: true,
  skip_empty_lines: true,
  // Both, always: a file whose header ends in CRLF and rows in LF (or the reverse) still splits on every line.
  record_delimiter: ['\r\n', '\n'],
};

function openCore(maxRecordBytes: number, delimiter = ','): CsvCore {
  // csv-parse counts the field being read in bytes and the finished fields of the record in characters,
  // so the limit is exact for ASCII and looser (up to 3×) for text made mostly of multi-byte characters.
  const parser = new Parser({ ...CSV_OPTIONS, delimiter, max_record_size: maxRecordBytes });
  const core = (parser as unknown as { api?: CsvCore }).api;
  if (typeof core?.parse !== 'function') {
    throw new Error('csv-parse no longer exposes Parser#api; parsers/csv.ts needs updating');
  }
  return core;
}

/**
 * The data records of a CSV file as csv-parse splits them into fields, as many at a time as each piece of
 * input completes (never an empty batch), after the header (checked here, and given with each batch).
 * `ends[i]` is the byte offset just past record i's line end. Fails as {@link parseCsv} documents.
 */
export async function* csvFieldBatches(
  source: AsyncIterable<Buffer>,
  opts: Pick<ParserOptions, 'maxRecordBytes' | 'expectColumns' | 'delimiter'>,
): AsyncGenerator<CsvFieldBatch> {
  const delimiter = opts.delimiter ?? ',';
  const core = openCore(opts.maxRecordBytes, delimiter);
  const utf8 = new Utf8StreamValidator();
  let header: CsvHeader | undefined;
  let row = 0;
  // Where the record being read started: the line after the last record, plus the empty lines skipped since.
  let lastRecordEndLine = 0;
  let emptyLinesAtLastRecord = 0;
  let records: string[][] = [];
  let ends: number[] = [];

  const recordStartLine = () => lastRecordEndLine + 1 + (core.info.empty_lines - emptyLinesAtLastRecord);
  const push = (fields: string[]) => {
    if (header === undefined) {
      header = readHeader(fields, recordStartLine(), opts.expectColumns, delimiter);
    } else {
      row++;
      records.push(fields);
      ends.push(core.info.bytes);
    }
    lastRecordEndLine = core.info.lines;
    emptyLinesAtLastRecord = core.info.empty_lines;
  };
  const close = () => {};
  const at = () => ({ row: header === undefined ? undefined : row + 1, line: recordStartLine() });
  const fail = (err: Error): MalformedFileError => toMalformed(err, at(), opts.maxRecordBytes, delimiter);
  const take = (): CsvFieldBatch => {
    const out = { header: header as CsvHeader, records, ends };
    records = [];
    ends = [];
    return out;
  };

  /**
   * Before failing on bytes that are not UTF-8: ends the parse at the last valid byte, so the records
   * completed before it are read too. csv-parse holds back the last two bytes it is given (they may start
   * a CRLF), so the record a line end just before the invalid byte completes is still inside it. A record
   * the invalid byte cuts off is not complete: the last one read here, unless a line end came just before
   * the invalid byte. If ending fails (an unclosed quote), it was on that cut-off record.
   */
  const endBeforeInvalid = () => {
    const flushed: string[][] = [];
    const err = core.parse(undefined, true, (fields) => flushed.push(fields), close);
    if (err === undefined && lastByte !== LF) flushed.pop();
    for (const fields of flushed) push(fields);
  };

  let bytes = 0;
  let lastByte = -1;
  for await (const chunk of source) {
    for (const piece of pieces(asBuffer(chunk))) {
      const bad = utf8.push(piece);
      const valid = bad === -1 ? piece : piece.subarray(0, Math.max(0, bad - bytes));
      bytes += piece.length;
      const err = valid.length > 0 ? core.parse(valid, false, push, close) : undefined;
      if (valid.length > 0) lastByte = valid[valid.length - 1] as number;
      if (err === undefined && bad !== -1) endBeforeInvalid();
      // Records completed before an error are still good: they go out first.
      if (records.length > 0) yield take();
      if (err) throw fail(err);
      if (bad !== -1) throw invalidUtf8(bad, utf8.badByte);
    }
  }
  const bad = utf8.end();
  if (bad !== -1) {
    endBeforeInvalid();
    if (records.length > 0) yield take();
    throw invalidUtf8(bad, utf8.badByte);
  }
  const err = core.parse(undefined, true, push, close);
  if (records.length > 0) yield take();
  if (err) throw fail(err);
}

/**
 * Byte length of the header record at the start of `prefix`: a BOM, the header and its line end (and any
 * empty lines before it). Undefined when the header does not end within `prefix` and more of the file
 * follows it (`atEnd` false): read more. A CSV file resumed from a checkpoint re-reads its header this way.
 * Throws {@link MalformedFileError} when the file cannot be parsed that far.
 */
export function csvHeaderLength(
  prefix: Buffer,
  atEnd: boolean,
  maxRecordBytes: number,
  delimiter = ',',
): number | undefined {
  const core = openCore(maxRecordBytes, delimiter);
  let end: number | undefined;
  const err = core.parse(
    prefix,
    atEnd,
    () => {
      end ??= core.info.bytes;
    },
    () => {},
  );
  if (end !== undefined) return end;
  if (err) throw toMalformed(err, { row: undefined, line: 1 }, maxRecordBytes, delimiter);
  if (atEnd) throw new MalformedFileError('CSV has no header record');
  return undefined;
}

function invalidUtf8(byteOffset: number, byte: number | undefined): MalformedFileError {
  return new MalformedFileError(notUtf8Reason('CSV', byteOffset, byte), { byteOffset });
}

function toMalformed(
  err: Error,
  { row, line: startLine }: { readonly row: number | undefined; readonly line: number },
  maxRecordBytes: number,
  delimiter = ',',
): MalformedFileError {
  if (err instanceof MalformedFileError) return err;
  const code = (err as Partial<CsvError>).code;
  const line = (err as { lines?: unknown }).lines;
  const here = {
    ...(row !== undefined ? { row } : {}),
    line: typeof line === 'number' ? line : startLine,
  };
  const opts = { cause: err };
  switch (code) {
    case 'CSV_QUOTE_NOT_CLOSED':
      return new MalformedFileError(
        'CSV quoted field is never closed: the location is where its record starts',
        { ...here, line: startLine },
        opts,
      );
    case 'CSV_MAX_RECORD_SIZE':
      return new MalformedFileError(
        `CSV record is longer than ${maxRecordBytes} bytes (an unbalanced quote, or a delimiter other than ${delimiterName(delimiter, 1)}?)`,
        { ...here, line: startLine },
        opts,
      );
    case 'CSV_INVALID_CLOSING_QUOTE':
    case 'CSV_NON_TRIMABLE_CHAR_AFTER_CLOSING_QUOTE':
      return new MalformedFileError(
        `CSV closing quote is followed by a character other than ${delimiterName(delimiter, 1)} or a line end`,
        here,
        opts,
      );
    case 'INVALID_OPENING_QUOTE':
      return new MalformedFileError(
        'CSV field has a quote inside it without being quoted (RFC 4180: quote the field, double the quote)',
        here,
        opts,
      );
    default:
      return new MalformedFileError(`CSV could not be parsed: ${err.message}`, here, opts);
  }
}

/** Data records of a CSV file, in fields (see {@link csvFieldBatches}). */
export interface CsvFieldBatch {
  readonly header: CsvHeader;
  readonly records: string[][];
  /** Byte offset just past each record's line end (a BOM included). */
  readonly ends: ArrayLike<number>;
}

export interface CsvHeader {
  readonly names: readonly string[];
  /** A column named `__proto__` must be defined, not assigned, to become an own property. */
  readonly unsafe: boolean;
}

/** The header of these (checked) column names. */
export function csvHeader(names: readonly string[]): CsvHeader {
  return { names, unsafe: names.includes('__proto__') };
}

/** The separators a file may use, each named (as one, and as many) for the errors. */
const SEPARATORS: readonly (readonly [string, string, string])[] = [
  [',', 'a comma', 'commas'],
  [';', 'a semicolon', 'semicolons'],
  ['\t', 'a tab', 'tabs'],
  ['|', 'a vertical bar', 'vertical bars'],
];

/** `a semicolon` (one) or `semicolons` (many) for a delimiter. */
function delimiterName(delimiter: string, count: 1 | 2): string {
  const known = SEPARATORS.find(([sep]) => sep === delimiter);
  if (!known) return JSON.stringify(delimiter);
  return count === 1 ? known[1] : known[2];
}

function readHeader(
  fields: string[],
  line: number,
  expectColumns: readonly string[] | undefined,
  delimiter: string,
): CsvHeader {
  const crAt = fields.findIndex((f) => f.includes('\r'));
  if (crAt !== -1) {
    // csv-parse ends records at LF or CRLF only: a file whose lines end in a lone CR is one long record,
    // which would be taken for its header.
    throw new MalformedFileError(
      `CSV header: column ${crAt + 1}'s name holds a carriage return ("${clipRaw(JSON.stringify(fields[crAt]).slice(1, -1), 100)}"): the file's lines seem to end in a lone CR (classic Mac OS); save it with LF or CRLF line ends`,
      { line },
    );
  }
  if (expectColumns !== undefined && !fields.some((f) => expectColumns.includes(f.trim().toLowerCase()))) {
    if (/^sep=.?$/i.test(toCsvLine(fields))) {
      throw new MalformedFileError(
        `CSV starts with Excel's separator line "${toCsvLine(fields)}": remove that line, so that the first line names the columns`,
        { line },
      );
    }
    throw new MalformedFileError(
      `CSV header names none of the columns ${expectColumns.join(', ')}: its first line, "${clipRaw(toCsvLine(fields), 100)}", looks like data; a CSV file's first line must name its columns`,
      { line },
    );
  }
  const only = fields.length === 1 ? (fields[0] as string) : undefined;
  const other =
    only !== undefined ? SEPARATORS.find(([sep]) => sep !== delimiter && only.includes(sep)) : undefined;
  if (only !== undefined && other !== undefined) {
    // Every row of such a file would be one field, and rejected: the file fails once, saying why.
    throw new MalformedFileError(
      `CSV header is a single column, "${clipRaw(only, 100)}": fields must be separated by ${delimiterName(delimiter, 2)}, and it has ${other[2]}`,
      { line },
    );
  }
  const seen = new Map<string, number>();
  for (let i = 0; i < fields.length; i++) {
    const name = fields[i] as string;
    if (name.trim() === '') {
      throw new MalformedFileError(`CSV header: column ${i + 1} has no name`, { line });
    }
    const first = seen.get(name);
    if (first !== undefined) {
      throw new MalformedFileError(
        `CSV header: duplicate column name "${clipRaw(name, 100)}" (columns ${first + 1} and ${i + 1})`,
        { line },
      );
    }
    seen.set(name, i);
  }
  return csvHeader(fields);
}

const NEEDS_QUOTES = /[",\r\n]/;

/** The record written back as one CSV line (quoted where needed), for the quarantine. */
export function toCsvLine(fields: readonly string[]): string {
  return fields.map((f) => (NEEDS_QUOTES.test(f) ? `"${f.replaceAll('"', '""')}"` : f)).join(',');
}
