/** Where a record sits in its file, for checkpoints; only set when {@link ParserOptions.positions} is on. */
export interface RecordPosition {
  /**
   * CSV and NDJSON: byte offset just past the record (its line end included), in the stream the parser
   * was given, a BOM included. Reading may resume there: the next record starts at or after it.
   */
  readonly end?: number;
  /** Parquet: 0-based index of the row group holding the row. */
  readonly rowGroup?: number;
}

/** One record read from a file: either its fields, or why it could not be read. */
export type ParsedRecord = RecordPosition &
  (
    | {
        /** 1-based record number: CSV data row (header excluded), JSON array element, NDJSON line, Parquet row. */
        readonly row: number;
        readonly data: Record<string, unknown>;
        readonly error?: undefined;
      }
    | {
        readonly row: number;
        readonly data?: undefined;
        /** Why the record was rejected, e.g. `expected 4 fields, got 5`. */
        readonly error: string;
        /** The raw text of the record, clipped, so a reject can be inspected and replayed. */
        readonly raw?: string;
      }
  );

/**
 * Records in file order, several at a time: as many as one piece of input completed. Ingest iterates these
 * (an async generator step per record costs about as much as normalising it); the per-record parsers
 * (`parseCsv`, …) are the same records one by one.
 */
export type RecordBatches = AsyncIterable<readonly ParsedRecord[]>;

/** The records of `batches` one at a time. */
export async function* eachRecord(batches: RecordBatches): AsyncGenerator<ParsedRecord> {
  for await (const batch of batches) yield* batch;
}

export interface ParserOptions {
  /** Records whose text is longer than this are rejected (and not held in memory whole). */
  readonly maxRecordBytes: number;
  /** Records carry their {@link RecordPosition} (CSV, NDJSON, Parquet). @default false */
  readonly positions?: boolean;
  /**
   * CSV: csv-parse runs on a thread of its own (`csv-thread.ts`), so that parsing and the work on the
   * records (validation, packing, sending) use two CPUs. Same records, same errors. @default false
   */
  readonly parseThread?: boolean;
  /**
   * CSV: the columns a record needs (lower case). A header naming none of them, even in another letter case
   * or with spaces around, fails the file: it is most likely a first data row, and the file has no header
   * (that row would otherwise be read as the header, and be neither sent nor rejected). @default no check
   */
  readonly expectColumns?: readonly string[];
  /** CSV: the field delimiter (a route's `csv.delimiter`: `,` `;` tab `|`). @default ',' */
  readonly delimiter?: string;
  /** Parquet: start at this 0-based row group (a checkpoint), skipping the ones before it. @default 0 */
  readonly fromRowGroup?: number;
  /** Parquet: stop before this 0-based row group (one part of a split file). @default every row group */
  readonly toRowGroup?: number;
  /** Parquet: the decoder's limits. @default settings.limits.parquetDecoder */
  readonly parquetDecoder?: ParquetDecoderLimits;
  /** Parquet: how far a row group's pages may inflate in all. @default settings.limits */
  readonly inflation?: InflationLimits;
}

/** How far compressed data may inflate (defaults: `settings.limits`). */
export interface InflationLimits {
  /** Decompressed bytes allowed per compressed byte. */
  readonly maxInflationRatio: number;
  /** Decompressed bytes always allowed, however small the compressed data. */
  readonly minInflatedBytesAllowed: number;
}

/** How long, and with how much memory, one Parquet row group may take to decode. */
export interface ParquetDecoderLimits {
  /** Seconds any row group may take, plus {@link perMiBSeconds} per MiB of its column chunks. */
  readonly baseSeconds: number;
  readonly perMiBSeconds: number;
  /** Heap of the decoder's worker thread (old generation), in MB. */
  readonly heapMb: number;
}
