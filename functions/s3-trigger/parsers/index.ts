import { UnsupportedFormatError } from '../../../shared/errors.ts';
import { parseCsvBatches } from './csv.ts';
import { parseJsonBatches } from './json.ts';
import { parseNdjsonBatches } from './ndjson.ts';
import { eachRecord, type ParsedRecord, type ParserOptions, type RecordBatches } from './types.ts';

export type FileFormat = 'csv' | 'json' | 'ndjson' | 'parquet';
/** Formats read from a byte stream (Parquet needs random access instead). */
export type TextFormat = Exclude<FileFormat, 'parquet'>;

export interface DetectedFormat {
  readonly format: FileFormat;
  /** The key ends in `.gz`: the bytes are gzip-compressed. */
  readonly gzip: boolean;
}

const BY_SUFFIX: ReadonlyArray<readonly [string, FileFormat]> = [
  ['.csv', 'csv'],
  ['.json', 'json'],
  ['.ndjson', 'ndjson'],
  ['.jsonl', 'ndjson'],
  ['.parquet', 'parquet'],
];

/**
 * The format of an object from its key's suffix, case-insensitively: `.csv`, `.json`, `.ndjson`, `.jsonl`,
 * `.parquet`, each optionally followed by `.gz`. Undefined for anything else.
 */
export function detectFormat(key: string): DetectedFormat | undefined {
  let name = key.toLowerCase();
  const gzip = name.endsWith('.gz');
  if (gzip) name = name.slice(0, -3);
  for (const [suffix, format] of BY_SUFFIX) {
    if (name.endsWith(suffix)) return { format, gzip };
  }
  return undefined;
}

/** Parses a text format's byte stream into records. */
export function parseTextRecords(
  format: TextFormat,
  source: AsyncIterable<Buffer>,
  opts: ParserOptions,
): AsyncGenerator<ParsedRecord> {
  return eachRecord(parseTextBatches(format, source, opts));
}

/** {@link parseTextRecords}, several records at a time. */
export function parseTextBatches(
  format: TextFormat,
  source: AsyncIterable<Buffer>,
  opts: ParserOptions,
): RecordBatches {
  switch (format) {
    case 'csv':
      return parseCsvBatches(source, opts);
    case 'json':
      return parseJsonBatches(source, opts);
    case 'ndjson':
      return parseNdjsonBatches(source, opts);
    default:
      throw new UnsupportedFormatError(`not a text format: ${String(format satisfies never)}`);
  }
}
