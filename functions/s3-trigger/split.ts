import { MalformedFileError } from '#shared/errors.ts';
import { asBuffer, Utf8StreamValidator } from './parsers/bytes.ts';
import { csvHeaderLength, parseCsv } from './parsers/csv.ts';

/**
 * Where an uncompressed CSV or NDJSON object may be cut into parts read by separate invocations
 * ("fan-out"). A coordinator streams the object once through a scanner and gets, for each target offset,
 * the record boundary a part can start at and the row number of the record before it: a part reads its
 * bytes the way `fromOffset` in records.ts resumes a checkpoint, and numbers its rows exactly as a
 * sequential parse does.
 *
 * The scanners jump between the few bytes that matter with `Buffer#indexOf` (newlines; quotes for CSV)
 * and never look at ordinary bytes one by one. CSV follows csv-parse as parsers/csv.ts configures it;
 * whatever it is not certain csv-parse reads the same way makes the plan fail (`ok: false`), and the
 * caller then reads the object sequentially.
 */

/**
 * One point where a part may start: `offset` is the byte where the next record starts (just past a record
 * delimiter, a BOM counted), `row` the row number of the last record before it, as a sequential parse
 * numbers it (CSV: data record, header excluded; NDJSON: physical line).
 */
export interface SplitPoint {
  readonly offset: number;
  readonly row: number;
}

export type SplitPlan =
  | {
      readonly ok: true;
      readonly points: SplitPoint[];
      /** Rows in the object: CSV data records, NDJSON physical lines (blank ones included). */
      readonly rows: number;
      /** Bytes in the object. */
      readonly bytes: number;
    }
  | {
      readonly ok: false;
      /** Why the object cannot be split; read it sequentially. */
      readonly reason: string;
      /** Byte offset where the scan gave up. */
      readonly offset: number;
    };

export type SplitFormat = 'csv' | 'ndjson';

export interface SplitOptions {
  /**
   * The parts' `maxRecordBytes`: a CSV record (or the header with what precedes it) longer than this makes
   * the plan fail, as the parser may fail on it (`settings.limits.maxRecordBytes` for a part's parser).
   */
  readonly maxRecordBytes: number;
  /** CSV: the field delimiter, one byte (`,` `;` tab `|`), as the parts' parser is given it. @default ',' */
  readonly delimiter?: string;
}

/** Why a scan stopped, and where. */
export interface ScanFailure {
  readonly reason: string;
  readonly offset: number;
}

/**
 * Called with each record boundary at or past the threshold it last returned (the first one is given to
 * the scanner); returns the next threshold (`Infinity`: no more). Boundaries come in increasing order.
 */
export type OnBoundary = (offset: number, row: number) => number;

/** A streaming, synchronous boundary scanner: push every chunk of the object, then call `end()`. */
export interface BoundaryScanner {
  push(chunk: Buffer): void;
  end(): void;
  /** Set once the scan has failed; later pushes are ignored. */
  readonly failure: ScanFailure | undefined;
  /** Rows seen so far (all of them after `end()`). */
  readonly rows: number;
  /** Bytes pushed so far. */
  readonly bytes: number;
}

const LF = 0x0a;
const CR = 0x0d;
const QUOTE = 0x22;
const BOM = [0xef, 0xbb, 0xbf] as const;

function isBom(b: Buffer): boolean {
  return b.length >= 3 && b[0] === BOM[0] && b[1] === BOM[1] && b[2] === BOM[2];
}

const CR_AFTER_QUOTE = 'a closing quote is followed by a \\r that does not start a \\r\\n';

/** Outside a quoted field. */
const FIELD = 0;
/** Inside a quoted field. */
const QUOTED = 1;
/** Inside a quoted field, and the chunk ended on a quote: a closing one, or the first of a doubled one. */
const QUOTE_AT_END = 2;
/** A closing quote, then a `\r` that ended the chunk: only a `\n` may follow. */
const CLOSED_CR = 3;

/**
 * Record boundaries of a CSV object as csv-parse reads it with parsers/csv.ts's options: RFC 4180 quoting
 * (a quote opens a quoted field only at the start of a field, `""` inside one is a quote, line ends inside
 * one are data), `\r\n` or `\n` record delimiters (a lone `\r` is data), empty lines skipped, an optional
 * UTF-8 BOM. The first record is the header; rows count the data records after it.
 *
 * Fails (see {@link CsvBoundaryScanner.failure}) on bytes that are not UTF-8, a closing quote followed by
 * anything but `,`, `\n`, `\r\n` or the end (csv-parse keeps such a field as text, but mangles it),
 * a quoted field still open at the end, a record longer than `maxRecordBytes`, and a header ending more
 * than `maxRecordBytes` into the object. The header's column names are not checked here: planSplit does.
 */
export class CsvBoundaryScanner implements BoundaryScanner {
  readonly #onBoundary: OnBoundary;
  readonly #max: number;
  /** The field delimiter's byte. */
  readonly #delimiter: number;
  readonly #utf8 = new Utf8StreamValidator();
  #threshold: number;
  #failure: ScanFailure | undefined;
  /** The first bytes, while fewer than a BOM's length: whether they start with one is not known yet. */
  #pre: Buffer | undefined;
  #started = false;
  /** Where the data starts: 3 after a BOM. */
  #dataStart = 0;
  #bytes = 0;
  #state = FIELD;
  /**
   * Where the current record, or empty line, starts. A line is empty when nothing, or only the `\r` of a
   * `\r\n`, precedes its `\n`: a quoted field, even an empty one, takes two bytes, so a line holding one
   * is never taken for an empty line.
   */
  #lineStart = 0;
  /** The last byte of the previous chunk. */
  #prevByte = -1;
  #rows = 0;
  /** Copies of the chunks read until the header ends; then the header record and what precedes it. */
  #head: Buffer[] | undefined = [];
  #header: Buffer | undefined;

  constructor(onBoundary: OnBoundary, firstThreshold: number, opts: SplitOptions) {
    this.#onBoundary = onBoundary;
    this.#threshold = firstThreshold;
    const max = opts.maxRecordBytes;
    // csv-parse reads a max_record_size of 0 as no limit.
    this.#max = max > 0 ? max : Number.POSITIVE_INFINITY;
    const delimiter = Buffer.from(opts.delimiter ?? ',', 'utf8');
    if (delimiter.length !== 1) throw new RangeError('CsvBoundaryScanner: the delimiter must be one byte');
    this.#delimiter = delimiter[0] as number;
  }

  get failure(): ScanFailure | undefined {
    return this.#failure;
  }

  get rows(): number {
    return this.#rows;
  }

  get bytes(): number {
    return this.#bytes + (this.#pre?.length ?? 0);
  }

  /** The object's first bytes up to the end of the header record (a BOM and empty lines before it included), once read. */
  get header(): Buffer | undefined {
    return this.#header;
  }

  push(chunk: Buffer): void {
    if (this.#failure !== undefined || chunk.length === 0) return;
    let buf = chunk;
    if (!this.#started) {
      // csv-parse waits for 3 bytes before deciding whether the data starts with a BOM.
      buf = this.#pre === undefined ? chunk : Buffer.concat([this.#pre, chunk]);
      if (buf.length < 3) {
        this.#pre = Buffer.from(buf);
        return;
      }
      this.#start(buf);
    }
    this.#scan(buf);
  }

  end(): void {
    if (this.#failure !== undefined) return;
    if (!this.#started) {
      const pre = this.#pre ?? Buffer.alloc(0);
      this.#start(pre);
      if (pre.length > 0) this.#scan(pre);
      if (this.#failure !== undefined) return;
    }
    const bad = this.#utf8.end();
    if (bad !== -1) {
      this.#fail('not valid UTF-8 (a character cut off by the end)', bad);
      return;
    }
    switch (this.#state) {
      case QUOTED: {
        this.#fail('a quoted field is never closed', this.#lineStart);
        return;
      }
      case CLOSED_CR: {
        this.#fail(CR_AFTER_QUOTE, this.#bytes - 1);
        return;
      }
      default:
        // QUOTE_AT_END: the last quote closes its field, and the record ends with the data.
        if (this.#bytes > this.#lineStart) {
          this.#record(this.#lineStart, this.#bytes);
        }
    }
  }

  #start(first: Buffer): void {
    this.#started = true;
    this.#pre = undefined;
    if (isBom(first)) this.#dataStart = this.#lineStart = 3;
  }

  #fail(reason: string, offset: number): void {
    this.#failure = { reason, offset };
    this.#head = undefined;
  }

  /** A record (not an empty line) spanning [start, end), its delimiter included. False: the scan failed. */
  #record(start: number, end: number): boolean {
    if (end - start > this.#max) {
      this.#fail(`a record is longer than ${this.#max} bytes`, start);
      return false;
    }
    if (this.#head !== undefined) {
      if (end > this.#max) {
        this.#fail(`the header record ends past byte ${this.#max}`, start);
        return false;
      }
      this.#header = Buffer.concat(this.#head).subarray(0, end);
      this.#head = undefined;
      return true;
    }
    const row = ++this.#rows;
    if (end >= this.#threshold) this.#threshold = this.#onBoundary(end, row);
    return true;
  }

  // long: the hot loop of the fan-out scan, kept whole: with the once-a-chunk resumption (a quote or \r the
  // last chunk ended on) in a method of its own, quoted CSV scanned 16% slower; with the loop in another, 13%
  // (CPU time, 60 MB in 64 KiB chunks, median of 15 runs, against this code in the same process)
  #scan(buf: Buffer): void {
    const base = this.#bytes;
    const n = buf.length;
    const bad = this.#utf8.push(buf);
    if (bad !== -1) {
      this.#fail('not valid UTF-8', bad);
      return;
    }
    // The header must end within maxRecordBytes: no more of the file is worth keeping for it.
    if (this.#head !== undefined && base < this.#max)
      this.#head.push(Buffer.from(buf.subarray(0, this.#max - base)));
    let pos = base === 0 ? this.#dataStart : 0;
    let state = this.#state;
    const delimiter = this.#delimiter;

    if (state === QUOTE_AT_END) {
      if (buf[0] === QUOTE) {
        state = QUOTED;
        pos = 1;
      } else {
        // The quote that ended the previous chunk closes its field: what follows must end the field.
        const c = buf[0];
        if (c === delimiter) {
          state = FIELD;
          pos = 1;
        } else if (c === LF) {
          state = FIELD;
          pos = 1;
          if (!this.#endLine(base + 1)) return;
        } else if (c === CR && n === 1) {
          state = CLOSED_CR;
          pos = 1;
        } else if (c === CR) {
          if (buf[1] !== LF) {
            this.#fail(CR_AFTER_QUOTE, base);
            return;
          }
          state = FIELD;
          pos = 2;
          if (!this.#endLine(base + 2)) return;
        } else {
          this.#fail('a closing quote is followed by text', base);
          return;
        }
      }
    } else if (state === CLOSED_CR) {
      if (buf[0] !== LF) {
        this.#fail(CR_AFTER_QUOTE, base - 1);
        return;
      }
      state = FIELD;
      pos = 1;
      if (!this.#endLine(base + 1)) return;
    }

    // Next quote and newline at or after some earlier pos; `n` when there is none in this chunk.
    let nextQuote = -1;
    let nextLf = -1;
    while (pos < n) {
      if (state === QUOTED) {
        const q = buf.indexOf(QUOTE, pos);
        if (q === -1) {
          pos = n;
          break;
        }
        if (q + 1 === n) {
          state = QUOTE_AT_END;
          pos = n;
          break;
        }
        const c = buf[q + 1];
        if (c === QUOTE) {
          pos = q + 2;
          continue;
        }
        // A closing quote: the field ends. When the next one starts with a quote, it is opened right away,
        // which spares searching for it (where every field is quoted, that is every other quote).
        if (c === delimiter) {
          pos = q + 2;
        } else if (c === LF) {
          pos = q + 2;
          if (!this.#endLine(base + pos)) return;
        } else if (c === CR && q + 2 === n) {
          state = CLOSED_CR;
          pos = n;
          break;
        } else if (c === CR) {
          if (buf[q + 2] !== LF) {
            this.#fail(CR_AFTER_QUOTE, base + q + 1);
            return;
          }
          pos = q + 3;
          if (!this.#endLine(base + pos)) return;
        } else {
          this.#fail('a closing quote is followed by text', base + q + 1);
          return;
        }
        if (buf[pos] === QUOTE) pos++;
        else state = FIELD;
        continue;
      }
      if (nextLf < pos) {
        nextLf = buf.indexOf(LF, pos);
        if (nextLf === -1) nextLf = n;
      }
      if (nextQuote < pos) {
        nextQuote = buf.indexOf(QUOTE, pos);
        if (nextQuote === -1) nextQuote = n;
      }
      if (nextQuote < nextLf) {
        // A quote opens a quoted field only where a field starts; elsewhere it is text (relax_quotes).
        const prev = nextQuote > 0 ? buf[nextQuote - 1] : this.#prevByte;
        if (prev === delimiter || prev === LF || base + nextQuote === this.#dataStart) state = QUOTED;
        pos = nextQuote + 1;
        continue;
      }
      if (nextLf === n) break;
      // A record delimiter, `\n` or `\r\n`: an empty line unless something precedes it since the last one.
      const lf = base + nextLf;
      const start = this.#lineStart;
      const empty =
        lf === start || (lf - start === 1 && (nextLf > 0 ? buf[nextLf - 1] : this.#prevByte) === CR);
      if (!empty && !this.#record(start, lf + 1)) return;
      this.#lineStart = lf + 1;
      pos = nextLf + 1;
    }
    this.#state = state;
    this.#prevByte = buf[n - 1] as number;
    this.#bytes = base + n;
    // Fail as soon as the record being read is too long, rather than at its end (or at the end of the file).
    // More than one byte cannot be an empty line: this line will be a record, and fail there anyway.
    if (this.#bytes - this.#lineStart > this.#max) {
      this.#fail(`a record is longer than ${this.#max} bytes`, this.#lineStart);
    }
  }

  /** A record that ends with a closing quote and its delimiter, just before `end`. */
  #endLine(end: number): boolean {
    const ok = this.#record(this.#lineStart, end);
    this.#lineStart = end;
    return ok;
  }
}

/**
 * Record boundaries of an NDJSON object as parsers/ndjson.ts reads it: rows are physical lines, numbered
 * from 1, blank ones included; a boundary is just past each `\n`, and at the end of a last line without
 * one. A leading BOM is not a line. Never fails: parseNdjson confines every problem to its line.
 */
export class NdjsonBoundaryScanner implements BoundaryScanner {
  readonly #onBoundary: OnBoundary;
  #threshold: number;
  #bytes = 0;
  #rows = 0;
  /** Just past the last `\n`. */
  #lineStart = 0;
  /** The first bytes, to know whether the object is only a BOM. */
  #first: number[] = [];

  constructor(onBoundary: OnBoundary, firstThreshold = 0) {
    this.#onBoundary = onBoundary;
    this.#threshold = firstThreshold;
  }

  get failure(): ScanFailure | undefined {
    return undefined;
  }

  get rows(): number {
    return this.#rows;
  }

  get bytes(): number {
    return this.#bytes;
  }

  push(chunk: Buffer): void {
    const base = this.#bytes;
    const n = chunk.length;
    for (let i = 0; this.#first.length < 3 && i < n; i++) this.#first.push(chunk[i] as number);
    let rows = this.#rows;
    let pos = chunk.indexOf(LF);
    if (pos !== -1) {
      let last = pos;
      do {
        rows++;
        const end = base + pos + 1;
        if (end >= this.#threshold) this.#threshold = this.#onBoundary(end, rows);
        last = pos;
        pos = chunk.indexOf(LF, pos + 1);
      } while (pos !== -1);
      this.#lineStart = base + last + 1;
    }
    this.#rows = rows;
    this.#bytes = base + n;
  }

  end(): void {
    const onlyBom = this.#bytes === 3 && isBom(Buffer.from(this.#first));
    if (this.#bytes > this.#lineStart && !onlyBom) {
      const row = ++this.#rows;
      if (this.#bytes >= this.#threshold) this.#threshold = this.#onBoundary(this.#bytes, row);
    }
  }
}

/**
 * Streams `source` (the whole object, any chunking) and returns, for each target offset (ascending,
 * 0 < t < size), the first record boundary at or after it: the end of the record that crosses it. Targets
 * that land on the same boundary give one point; a boundary at the very end of the object gives none.
 * A CSV header is never a part of its own: a target inside it gives the end of the first data record.
 *
 * `ok: false` when the object should be read sequentially instead (CSV only; see
 * {@link CsvBoundaryScanner}, plus a header csv-parse rejects: an empty or duplicate column name).
 * The source is not read further once the plan has failed.
 */
export async function planSplit(
  format: SplitFormat,
  source: AsyncIterable<Uint8Array>,
  targets: readonly number[],
  opts: SplitOptions,
): Promise<SplitPlan> {
  for (let i = 0; i < targets.length; i++) {
    const t = targets[i] as number;
    if (!Number.isFinite(t) || (i > 0 && !(t > (targets[i - 1] as number)))) {
      throw new RangeError(`planSplit: targets must be finite and strictly ascending (target ${i}: ${t})`);
    }
  }
  const points: SplitPoint[] = [];
  let next = 0;
  const onBoundary: OnBoundary = (offset, row) => {
    points.push({ offset, row });
    while (next < targets.length && (targets[next] as number) <= offset) next++;
    return next < targets.length ? (targets[next] as number) : Number.POSITIVE_INFINITY;
  };
  const plan = await scan(format, source, onBoundary, targets[0] ?? Number.POSITIVE_INFINITY, opts);
  if (!plan.ok) return plan;
  return { ...plan, points: points.filter((p) => p.offset < plan.bytes) };
}

/**
 * Every record boundary of the object, in order, the one at its very end included (when the last record
 * has no line end): for CSV exactly the `(end, row)` of each record parseCsv yields; for NDJSON those of
 * each line, blank ones included (parseNdjson yields no record for those).
 */
export async function findBoundaries(
  format: SplitFormat,
  source: AsyncIterable<Uint8Array>,
  opts: SplitOptions,
): Promise<SplitPlan> {
  const points: SplitPoint[] = [];
  const plan = await scan(
    format,
    source,
    (offset, row) => {
      points.push({ offset, row });
      return 0;
    },
    0,
    opts,
  );
  return plan.ok ? { ...plan, points } : plan;
}

async function scan(
  format: SplitFormat,
  source: AsyncIterable<Uint8Array>,
  onBoundary: OnBoundary,
  firstThreshold: number,
  opts: SplitOptions,
): Promise<SplitPlan> {
  const max = opts.maxRecordBytes;
  if (format === 'ndjson') {
    const scanner = new NdjsonBoundaryScanner(onBoundary, firstThreshold);
    for await (const chunk of source) scanner.push(asBuffer(chunk));
    scanner.end();
    return { ok: true, points: [], rows: scanner.rows, bytes: scanner.bytes };
  }
  const delimiter = opts.delimiter ?? ',';
  const scanner = new CsvBoundaryScanner(onBoundary, firstThreshold, { maxRecordBytes: max, delimiter });
  let headerChecked = false;
  for await (const chunk of source) {
    scanner.push(asBuffer(chunk));
    if (scanner.failure !== undefined) return { ok: false, ...scanner.failure };
    if (!headerChecked && scanner.header !== undefined) {
      headerChecked = true;
      const bad = await checkCsvHeader(scanner.header, max, delimiter);
      if (bad !== undefined) return { ok: false, ...bad };
    }
  }
  scanner.end();
  if (scanner.failure !== undefined) return { ok: false, ...scanner.failure };
  if (!headerChecked && scanner.header !== undefined) {
    const bad = await checkCsvHeader(scanner.header, max, delimiter);
    if (bad !== undefined) return { ok: false, ...bad };
  }
  return { ok: true, points: [], rows: scanner.rows, bytes: scanner.bytes };
}

/**
 * Reads the header with the parser itself: it rejects empty and duplicate column names, and must find the
 * header's end where the scanner did (parts re-read it with csvHeaderLength).
 */
async function checkCsvHeader(
  header: Buffer,
  max: number,
  delimiter: string,
): Promise<ScanFailure | undefined> {
  try {
    const length = csvHeaderLength(header, true, max, delimiter);
    if (length !== header.length) {
      return {
        reason: `csv-parse ends the header at byte ${length}, the scanner at ${header.length}`,
        offset: 0,
      };
    }
    for await (const _ of parseCsv(once(header), { maxRecordBytes: max, delimiter })) {
      return { reason: 'csv-parse reads a data record inside the header', offset: 0 };
    }
  } catch (err) {
    if (err instanceof MalformedFileError) return { reason: err.message, offset: 0 };
    throw err;
  }
  return undefined;
}

async function* once(buf: Buffer): AsyncGenerator<Buffer> {
  yield buf;
}
