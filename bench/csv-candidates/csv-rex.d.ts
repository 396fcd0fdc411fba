/**
 * The part of csv-rex's incremental parser that bench/csv-candidates.ts drives (the package ships no types).
 * `chunkParse` parses `text`, which must start with `previousChunk()`: the unfinished record it kept.
 */
declare module 'csv-rex/parse' {
  export interface CsvRexOptions {
    header?: boolean | string[];
    newlineChar?: string;
    delimiterChar?: string;
    quoteChar?: string;
    errorOnEmptyLine?: boolean;
    errorOnComment?: boolean;
    errorOnExtraFields?: boolean;
    errorOnMissingFields?: boolean;
  }
  export interface CsvRexRow {
    readonly idx: number;
    readonly data?: string[];
    readonly err?: { readonly code: string; readonly message: string };
  }
  export interface CsvRexParser {
    chunkParse(text: string, controller: { enqueue(row: CsvRexRow): void }, isLast?: boolean): void;
    previousChunk(): string;
  }
  export function parse(opts?: CsvRexOptions): CsvRexParser;
}
