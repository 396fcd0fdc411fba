/** One record read from a file: either its fields, or why it could not be read. */
export type ParsedRecord =
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
    };

export interface ParserOptions {
  /** Records whose text is longer than this are rejected (and not held in memory whole). */
  readonly maxRecordBytes: number;
}
