import { clipRaw } from './bytes.ts';
import { type CsvHeader, csvFieldBatches, toCsvLine } from './csv-fields.ts';
import { csvFieldBatchesInThread } from './csv-thread.ts';
import { eachRecord, type ParsedRecord, type ParserOptions } from './types.ts';

// The fields half (csv-parse and the header) is csv-fields.ts's; these are re-exported for its users here.
export {
  CSV_OPTIONS,
  type CsvCore,
  type CsvFieldBatch,
  type CsvHeader,
  csvHeaderLength,
} from './csv-fields.ts';

/**
 * Streams the records of a CSV file (RFC 4180: a header row, quoted fields with commas, doubled quotes and
 * newlines; UTF-8 with an optional BOM; CRLF or LF line ends). Empty lines are skipped. `row` is the
 * 1-based data record number (the header is not counted; empty lines are not records). With
 * `opts.positions`, `end` is the byte offset just past the record's line end (BOM included).
 *
 * - A row whose field count differs from the header's is rejected (`expected N fields, got M`).
 * - A file that cannot be read further throws {@link MalformedFileError}: a header with an empty or
 *   duplicate column name, or one single column holding semicolons, tabs or vertical bars (another
 *   separator), a quoting error (where the record starts), bytes that are not UTF-8 (their
 *   offset), or a record longer than `opts.maxRecordBytes` — csv-parse cannot skip past such a record
 *   without holding it, and in practice it means an unbalanced quote, so the file fails there.
 *
 * `opts.parseThread` (decided by the caller: the s3-trigger's handler, `csv-thread.ts`) runs csv-parse on a
 * thread of its own; the records and errors are the same.
 */
export function parseCsv(source: AsyncIterable<Buffer>, opts: ParserOptions): AsyncGenerator<ParsedRecord> {
  return eachRecord(parseCsvBatches(source, opts));
}

/** {@link parseCsv}'s records, as many at a time as each piece of input completes (never an empty batch). */
export async function* parseCsvBatches(
  source: AsyncIterable<Buffer>,
  opts: ParserOptions,
): AsyncGenerator<ParsedRecord[]> {
  const fieldBatches = opts.parseThread
    ? csvFieldBatchesInThread(source, opts)
    : csvFieldBatches(source, opts);
  let row = 0;
  for await (const { header, records, ends } of fieldBatches) {
    const batch: ParsedRecord[] = new Array(records.length);
    for (let i = 0; i < records.length; i++) {
      row++;
      batch[i] = toRecord(header, records[i] as string[], row, opts.positions ? ends[i] : undefined);
    }
    yield batch;
  }
}

function toRecord(header: CsvHeader, fields: string[], row: number, end: number | undefined): ParsedRecord {
  const { names } = header;
  if (fields.length !== names.length) {
    const error = `expected ${names.length} fields, got ${fields.length}`;
    const raw = clipRaw(toCsvLine(fields));
    return end !== undefined ? { row, error, raw, end } : { row, error, raw };
  }
  const data: Record<string, string> = {};
  if (header.unsafe) {
    for (let i = 0; i < names.length; i++) {
      Object.defineProperty(data, names[i] as string, {
        value: fields[i],
        enumerable: true,
        writable: true,
        configurable: true,
      });
    }
  } else {
    for (let i = 0; i < names.length; i++) data[names[i] as string] = fields[i] as string;
  }
  return end !== undefined ? { row, data, end } : { row, data };
}
