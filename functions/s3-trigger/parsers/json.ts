import { type ParsedTokenInfo, Tokenizer, TokenParser, TokenType } from '@streamparser/json';
import { MalformedFileError } from '#shared/errors.ts';
import { clipRaw, notUtf8Reason, stripBom, Utf8StreamValidator } from './bytes.ts';
import { eachRecord, type ParsedRecord, type ParserOptions } from './types.ts';

/** Containers nested deeper than this make the file malformed (no record needs more; it bounds the work). */
export const MAX_JSON_DEPTH = 64;

const OPEN_BRACKET = 0x5b;
const OPEN_BRACE = 0x7b;

/**
 * Streams the records of a `.json` file: either an array of objects (each element is a record, `row` is its
 * 1-based index) or a single object (one record, row 1). An empty or whitespace-only file has no records.
 *
 * - An array element that is not an object is rejected (`record must be an object`).
 * - Anything else throws {@link MalformedFileError} with a byte offset (in the decompressed stream,
 *   BOM included): another top-level value, a syntax error, data after the top-level value, the file
 *   ending inside it, bytes that are not UTF-8, nesting deeper than {@link MAX_JSON_DEPTH}, or a record
 *   longer than `opts.maxRecordBytes` (the parser must hold a record whole, so memory is bounded by
 *   failing there rather than by skipping it).
 */
export function parseJson(source: AsyncIterable<Buffer>, opts: ParserOptions): AsyncGenerator<ParsedRecord> {
  return eachRecord(parseJsonBatches(source, opts));
}

/** {@link parseJson}'s records, as many at a time as each piece completes (never an empty batch). */
export async function* parseJsonBatches(
  source: AsyncIterable<Buffer>,
  opts: ParserOptions,
): AsyncGenerator<ParsedRecord[]> {
  const max = opts.maxRecordBytes;
  /** Stream offset of the next byte read. */
  let offset = 0;
  let utf8: Utf8StreamValidator | undefined;
  let doc: JsonDocument | undefined;
  /**
   * The start of a character the last piece ended inside of: given to the tokenizer only once the next
   * piece shows it valid, so that a bad byte is reported as not UTF-8 whatever the chunking (the tokenizer
   * would otherwise fail on it first, as a syntax error, when it follows a number or a literal).
   */
  let held: Buffer | undefined;

  for await (const piece of stripBom(source, (n) => {
    offset += n;
  })) {
    utf8 ??= new Utf8StreamValidator(offset);
    const bad = utf8.push(piece);
    /** Stream offset of the first byte not given on yet. */
    const start = offset - (held?.length ?? 0);
    offset += piece.length;
    const bytes = held !== undefined ? Buffer.concat([held, piece]) : piece;
    // Given on: the bytes known to be UTF-8, up to the first bad byte or to a character the piece ends in.
    const known = bad !== -1 ? bad - start : bytes.length - utf8.pending;
    held = bad === -1 && known < bytes.length ? Buffer.from(bytes.subarray(known)) : undefined;
    let input = bytes.subarray(0, Math.max(0, known));
    if (doc === undefined) {
      const first = firstNonWhitespace(input);
      if (first === -1) {
        if (bad !== -1) throw invalidUtf8(bad, utf8.badByte);
        continue;
      }
      const b = input[first] as number;
      if (b !== OPEN_BRACKET && b !== OPEN_BRACE) {
        throw new MalformedFileError(
          `JSON file must hold an array of objects or one object, found ${describeByte(b)}`,
          { byteOffset: start + first },
        );
      }
      doc = new JsonDocument(b === OPEN_BRACKET ? 'array' : 'object', start + first, max);
      input = input.subarray(first);
    }
    if (input.length > 0) {
      const err = doc.write(input);
      const records = doc.take();
      if (records.length > 0) yield records;
      if (err) throw err;
    }
    if (bad !== -1) throw invalidUtf8(bad, utf8.badByte);
  }
  const bad = utf8?.end() ?? -1;
  if (bad !== -1) throw invalidUtf8(bad, utf8?.badByte);
  if (doc === undefined) return;
  const err = doc.end(offset);
  const records = doc.take();
  if (records.length > 0) yield records;
  if (err) throw err;
}

function invalidUtf8(byteOffset: number, byte: number | undefined): MalformedFileError {
  return new MalformedFileError(notUtf8Reason('JSON', byteOffset, byte), { byteOffset });
}

function firstNonWhitespace(buf: Buffer): number {
  for (let i = 0; i < buf.length; i++) {
    const b = buf[i];
    if (b !== 0x20 && b !== 0x0a && b !== 0x0d && b !== 0x09) return i;
  }
  return -1;
}

function describeByte(b: number): string {
  if (b === 0x22) return 'a string';
  if (b === 0x2d || (b >= 0x30 && b <= 0x39)) return 'a number';
  if (b === 0x74 || b === 0x66) return 'a boolean';
  if (b === 0x6e) return 'null';
  return b >= 0x20 && b < 0x7f ? `"${String.fromCharCode(b)}"` : `byte 0x${b.toString(16).padStart(2, '0')}`;
}

/**
 * One top-level value being parsed: the tokenizer feeds a token parser through a shim that tracks depth,
 * record numbers and where the current record started, so that limits are enforced while streaming.
 */
class JsonDocument {
  readonly #mode: 'array' | 'object';
  /** Stream offset of the top-level `[` or `{`; token offsets are relative to it. */
  readonly #base: number;
  readonly #max: number;
  readonly #tokenizer = new Tokenizer();
  readonly #parser: TokenParser;
  #records: ParsedRecord[] = [];
  /** Bytes written to the tokenizer. */
  #fed = 0;
  #depth = 0;
  #closed = false;
  #row = 0;
  /** Tokenizer offset where the object (or array) record being built started, or -1. */
  #recordStart = -1;
  /** In an array, tokenizer offset just after the last `[`, `,` or element end at depth 1. */
  #gapStart = 1;
  /** Row of a scalar element whose extent is only known when the next token arrives, or 0. */
  #scalarRow = 0;
  #lastTokenOffset = 0;

  constructor(mode: 'array' | 'object', base: number, max: number) {
    this.#mode = mode;
    this.#base = base;
    this.#max = max;
    this.#parser = new TokenParser({ paths: [mode === 'array' ? '$.*' : '$'], keepStack: false });
    this.#parser.onValue = ({ value }) => this.#onRecord(value);
    this.#tokenizer.onToken = (token) => this.#onToken(token);
  }

  /** Feeds bytes; returns the error that ends the document, if any. */
  write(input: Buffer): MalformedFileError | undefined {
    try {
      this.#tokenizer.write(input);
      this.#fed += input.length;
      // While a record is still open its bytes are held: fail as soon as they pass the limit.
      if (this.#closed) return undefined;
      if (this.#recordStart >= 0) {
        this.#checkSize(this.#fed - this.#recordStart, this.#row, this.#recordStart);
      } else {
        this.#checkSize(this.#fed - this.#gapStart, this.#scalarRow || this.#row + 1, this.#gapStart);
      }
    } catch (err) {
      return this.#malformed(err, this.#fed);
    }
    return undefined;
  }

  /** At the end of the stream (`offset`: its length). */
  end(offset: number): MalformedFileError | undefined {
    if (this.#closed) return undefined;
    try {
      this.#tokenizer.end();
    } catch {
      // an unfinished token; reported below as the unfinished value it is part of
    }
    return new MalformedFileError(
      `JSON ends before the top-level ${this.#mode} is closed (truncated file?)`,
      { byteOffset: offset },
    );
  }

  /** Records completed since the last call. */
  take(): ParsedRecord[] {
    const out = this.#records;
    if (out.length > 0) this.#records = [];
    return out;
  }

  #checkSize(bytes: number, row: number, start: number): void {
    if (bytes > this.#max) {
      throw new MalformedFileError(`JSON record is longer than ${this.#max} bytes`, {
        row,
        byteOffset: this.#base + start,
      });
    }
  }

  #onToken(info: ParsedTokenInfo): void {
    const { token, offset } = info;
    if (this.#closed) {
      throw new MalformedFileError('JSON has data after the top-level value', {
        byteOffset: this.#base + offset,
      });
    }
    this.#lastTokenOffset = offset;
    const array = this.#mode === 'array';
    if (this.#scalarRow > 0) {
      // A scalar element (and the whitespace around it) counts as its text.
      this.#checkSize(offset - this.#gapStart, this.#scalarRow, this.#gapStart);
      this.#scalarRow = 0;
    }
    if (token === TokenType.LEFT_BRACE || token === TokenType.LEFT_BRACKET) {
      this.#depth++;
      if (this.#depth > MAX_JSON_DEPTH) {
        throw new MalformedFileError(`JSON is nested deeper than ${MAX_JSON_DEPTH} levels`, {
          ...(this.#row > 0 ? { row: this.#row } : {}),
          byteOffset: this.#base + offset,
        });
      }
      if (this.#depth === (array ? 2 : 1)) {
        this.#row++;
        this.#recordStart = offset;
      } else if (this.#depth === 1) {
        this.#gapStart = offset + 1;
      }
    } else if (token === TokenType.RIGHT_BRACE || token === TokenType.RIGHT_BRACKET) {
      if (this.#depth === (array ? 2 : 1)) {
        this.#checkSize(offset + 1 - this.#recordStart, this.#row, this.#recordStart);
        this.#recordStart = -1;
        this.#gapStart = offset + 1;
      }
      this.#depth--;
      if (this.#depth === 0) this.#closed = true;
    } else if (this.#depth === 1 && array) {
      if (token === TokenType.COMMA) {
        this.#gapStart = offset + 1;
      } else {
        this.#row++;
        this.#scalarRow = this.#row;
      }
    }
    this.#parser.write(info);
  }

  #onRecord(value: unknown): void {
    const row = this.#row;
    if (typeof value === 'object' && value !== null && !Array.isArray(value)) {
      this.#records.push({ row, data: value as Record<string, unknown> });
    } else {
      this.#records.push({ row, error: 'record must be an object', raw: clipRaw(JSON.stringify(value)) });
    }
  }

  #malformed(err: unknown, fed: number): MalformedFileError {
    if (err instanceof MalformedFileError) return err;
    const message = err instanceof Error ? err.message : String(err);
    // TokenizerError: `Unexpected "x" at chunk position "3" (absolute position "120") in state ...`
    const tokenizer = /^Unexpected "(.*)" at chunk position "\d+" \(absolute position "(\d+)"\)/s.exec(
      message,
    );
    if (tokenizer) {
      const at = this.#base + Number(tokenizer[2]);
      return this.#closed
        ? new MalformedFileError(
            'JSON has data after the top-level value',
            { byteOffset: at },
            { cause: err },
          )
        : new MalformedFileError(
            `JSON syntax error: unexpected ${JSON.stringify(tokenizer[1])}`,
            {
              byteOffset: at,
            },
            { cause: err },
          );
    }
    // TokenParserError: `Unexpected COMMA (",") in state KEY` — the offending token is the last one seen.
    const parser = /^Unexpected \w+ \((.*)\) in state/s.exec(message);
    if (parser) {
      return new MalformedFileError(
        `JSON syntax error: unexpected ${parser[1]}`,
        {
          byteOffset: this.#base + this.#lastTokenOffset,
        },
        { cause: err },
      );
    }
    return new MalformedFileError(
      `JSON syntax error: ${message}`,
      { byteOffset: this.#base + fed },
      { cause: err },
    );
  }
}
