import { UnsupportedFormatError } from '#shared/errors.ts';
import { parseCsvBatches } from './csv.ts';
import { gunzipBounded, type TrailingData } from './gzip.ts';
import { parseJsonBatches } from './json.ts';
import { parseNdjsonBatches } from './ndjson.ts';
import {
  eachRecord,
  type InflationLimits,
  type ParsedRecord,
  type ParserOptions,
  type RecordBatches,
} from './types.ts';
import { unzstdBounded } from './zstd.ts';

export type FileFormat = 'csv' | 'json' | 'ndjson' | 'parquet';
/** Formats read from a byte stream (Parquet needs random access instead). */
export type TextFormat = Exclude<FileFormat, 'parquet'>;

/** How a whole object is compressed (its key's `.gz` or `.zst`, or its Content-Encoding). */
export type Compression = 'gzip' | 'zstd';

export interface DetectedFormat {
  readonly format: FileFormat;
  /** The key ends in `.gz` (gzip) or `.zst` (zstd): the bytes are compressed so. */
  readonly compression?: Compression;
}

const COMPRESSION_SUFFIXES: ReadonlyArray<readonly [string, Compression]> = [
  ['.gz', 'gzip'],
  ['.zst', 'zstd'],
];

const BY_SUFFIX: ReadonlyArray<readonly [string, FileFormat]> = [
  ['.csv', 'csv'],
  ['.json', 'json'],
  ['.ndjson', 'ndjson'],
  ['.jsonl', 'ndjson'],
  ['.parquet', 'parquet'],
];

/**
 * The format of an object from its key's suffix, case-insensitively: `.csv`, `.json`, `.ndjson`, `.jsonl`,
 * `.parquet`, each optionally followed by `.gz` or `.zst`. Undefined for anything else.
 */
export function detectFormat(key: string): DetectedFormat | undefined {
  let name = key.toLowerCase();
  const compressed = COMPRESSION_SUFFIXES.find(([suffix]) => name.endsWith(suffix));
  if (compressed) name = name.slice(0, -compressed[0].length);
  for (const [suffix, format] of BY_SUFFIX) {
    if (name.endsWith(suffix)) return compressed ? { format, compression: compressed[1] } : { format };
  }
  return undefined;
}

/**
 * How an object's bytes are compressed: as its key says, else as its Content-Encoding does (`gzip` or
 * `zstd`, already in lower case, `x-gzip` as `gzip`: `source.ts`). Other content codings are not decoded.
 */
export function compressionOf(format: DetectedFormat, contentEncoding?: string): Compression | undefined {
  if (format.compression) return format.compression;
  return contentEncoding === 'gzip' || contentEncoding === 'zstd' ? contentEncoding : undefined;
}

/**
 * The bytes of a compressed stream, bounded by `limits` (`compressedSize`, or the bytes read so far,
 * times the ratio): {@link gunzipBounded} or {@link unzstdBounded}.
 */
export function decompressBounded(
  compression: Compression,
  source: AsyncIterable<Buffer>,
  compressedSize: number | undefined,
  limits: InflationLimits,
  onTrailingData?: (trailing: TrailingData) => void,
): AsyncGenerator<Buffer> {
  return compression === 'zstd'
    ? unzstdBounded(source, compressedSize, limits, onTrailingData)
    : gunzipBounded(source, compressedSize, limits, onTrailingData);
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
