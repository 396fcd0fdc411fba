import type { S3Client } from '@aws-sdk/client-s3';
import { MalformedFileError } from '#shared/errors.ts';
import type { Checkpoint } from '#shared/ledger.ts';
import { settings } from '#shared/settings.ts';
import { REQUIRED_FIELDS } from '#shared/signal.ts';
import { csvHeaderLength } from './parsers/csv.ts';
import { type TrailingData, trailingDataReason } from './parsers/gzip.ts';
import { compressionOf, type DetectedFormat, decompressBounded, parseTextBatches } from './parsers/index.ts';
import { asyncBufferFromFile, parseParquetBatches } from './parsers/parquet.ts';
import type { ParsedRecord, RecordBatches } from './parsers/types.ts';
import {
  counted,
  type ObjectVersion,
  openObjectStream,
  readObjectRange,
  s3AsyncBuffer,
  spoolToTempFile,
} from './source.ts';

/**
 * Opening an object version as a stream of records, from its start or from a checkpoint, and knowing
 * where a checkpoint may be taken between two records.
 *
 * How each format resumes (the checkpoint's `kind`):
 * - `byte` — uncompressed CSV and NDJSON: the byte offset where the next record starts. CSV reads its
 *   header again (ranged GETs of the first bytes until the header record ends) and then the rest from the
 *   offset; NDJSON reads from the offset.
 * - `rowGroup` — Parquet (compressed whole too): the next row group; the ones before it are not decoded.
 * - `record` — JSON, and a compressed (gzip, zstd) text file read directly: the number of records already
 *   parsed; they are parsed again and skipped without being normalised or sent (`ReadSpan.onSkip` runs
 *   meanwhile). A large compressed CSV/NDJSON file is read from its staged copy instead (`staging.ts`),
 *   which resumes by `byte`.
 * Row numbers (and so signal ids) and record positions are always those of a read from the start.
 */

export type CheckpointKind = Checkpoint['kind'];

/** Where a checkpoint between two records puts the next attempt. */
export interface ResumePoint {
  readonly kind: CheckpointKind;
  readonly position: number;
  /** Row number of the last record before the point. */
  readonly row: number;
}

/** How a file of this format is checkpointed (`contentEncoding`: the object's Content-Encoding). */
export function checkpointKind(format: DetectedFormat, contentEncoding?: string): CheckpointKind {
  if (format.format === 'parquet') return 'rowGroup';
  if (compressionOf(format, contentEncoding) || format.format === 'json') return 'record';
  return 'byte';
}

/** Whether `checkpoint` can be resumed from for a file of this format (`record` always can). */
export function canResume(format: DetectedFormat, checkpoint: Checkpoint): boolean {
  return checkpoint.kind === 'record' || checkpoint.kind === checkpointKind(format);
}

export interface OpenedRecords {
  /** The records, several at a time (see {@link RecordBatches}). */
  readonly batches: RecordBatches;
  readonly kind: CheckpointKind;
  /**
   * What was found in the file besides its records and is not one (bytes after the end of a gzip or zstd
   * stream), each with why it was left out: filled as the file is read, complete once `batches` ends.
   */
  readonly leftOut: readonly string[];
}

/** A CSV header is re-read on resume in a window this large, then 4× larger until it ends inside one. */
export const HEADER_WINDOW_BYTES = 1024;

/** Where reading stops: before byte `position` (CSV/NDJSON) or row group `position` (Parquet). */
export interface ReadLimit {
  readonly kind: 'byte' | 'rowGroup';
  readonly position: number;
}

/** Where a read starts and stops, and what runs while it skips to a record checkpoint. */
export interface ReadSpan {
  /** A checkpoint: only the records after it are yielded, numbered as from the start. */
  readonly resume?: ResumePoint;
  /** One part of a split file, which ends at a record boundary or row group. */
  readonly until?: ReadLimit;
  /**
   * Awaited after each batch of records parsed again and skipped to reach a `record` checkpoint, with how
   * many have been so far: the caller keeps its lease there, and may stop the read by throwing.
   */
  readonly onSkip?: (skipped: number) => Promise<void>;
  /** CSV: parsed on a thread of its own (the handler decides: `parseThreadDecider`). @default false */
  readonly parseThread?: boolean;
  /** CSV: the field delimiter (the route's `csv.delimiter`). @default ',' */
  readonly delimiter?: string;
  /** CSV: the columns a header must name one of (the route's mapping). @default REQUIRED_FIELDS */
  readonly expectColumns?: readonly string[];
}

/**
 * Opens the object in the way its format needs (a byte stream for text, random access for Parquet) and
 * yields its records, from `span.resume` on when given, up to `span.until` when given. `onBytes` counts
 * every byte fetched; `onCleanup` receives what removes temporary files.
 */
export async function openRecords(
  s3: S3Client,
  file: ObjectVersion,
  format: DetectedFormat,
  size: number | undefined,
  onBytes: (n: number) => void,
  onCleanup: (dispose: () => Promise<void>) => void,
  span: ReadSpan = {},
): Promise<OpenedRecords> {
  const { resume, until, onSkip } = span;
  const opts = {
    maxRecordBytes: settings.limits.maxRecordBytes,
    positions: true,
    parseThread: format.format === 'csv' && span.parseThread === true,
    expectColumns: span.expectColumns ?? REQUIRED_FIELDS,
    delimiter: span.delimiter ?? ',',
  };
  const fromRowGroup = {
    ...(resume?.kind === 'rowGroup' ? { fromRowGroup: resume.position } : {}),
    ...(until?.kind === 'rowGroup' ? { toRowGroup: until.position } : {}),
  };
  const endByte = until?.kind === 'byte' ? until.position : undefined;
  const skipping = resume?.kind === 'record' ? resume.position : 0;
  // A staged copy's stream held these besides its data: whoever reads to its end reports them.
  const toEnd = endByte === undefined || (size !== undefined && endByte >= size);
  const stagedLeftOut = file.staged && toEnd ? [...(file.staged.leftOut ?? [])] : [];
  if (format.format === 'parquet' && !format.compression && size !== undefined) {
    const batches = parseParquetBatches(s3AsyncBuffer(s3, file, size, onBytes), { ...opts, ...fromRowGroup });
    return { batches: skip(batches, skipping, onSkip), kind: 'rowGroup', leftOut: [] };
  }
  if (resume?.kind === 'byte' && (format.format === 'csv' || format.format === 'ndjson')) {
    return {
      batches: fromOffset(s3, file, format.format, size, onBytes, resume, endByte, opts),
      kind: 'byte',
      leftOut: stagedLeftOut,
    };
  }
  const object = await openObjectStream(s3, file, undefined, endByte);
  let bytes: AsyncIterable<Buffer> = counted(object.body, onBytes);
  const compressedSize = object.contentLength ?? size;
  const leftOut: string[] = stagedLeftOut;
  const compression = compressionOf(format, object.contentEncoding);
  if (compression) {
    bytes = decompressBounded(compression, bytes, compressedSize, settings.limits, (trailing) => {
      leftOut.push(leftOutReason(trailing));
    });
  }
  if (format.format === 'parquet') {
    // Parquet needs random access: a compressed (or unsized) one is inflated to a temporary file first.
    const spooled = await spoolToTempFile(bytes);
    onCleanup(spooled.dispose);
    const batches = parseParquetBatches(await asyncBufferFromFile(spooled.path), {
      ...opts,
      ...fromRowGroup,
    });
    return { batches: skip(batches, skipping, onSkip), kind: 'rowGroup', leftOut };
  }
  return {
    batches: skip(parseTextBatches(format.format, bytes, opts), skipping, onSkip),
    kind: checkpointKind(format, object.contentEncoding),
    leftOut,
  };
}

/** Why bytes after the end of a gzip or zstd stream are not read, as the file's reject without a row says it. */
export function leftOutReason(trailing: TrailingData): string {
  return `${trailingDataReason(trailing)}: left out; every record before it was read`;
}

/** The records after the first `n` (the batches themselves when `n` is 0); `onSkip` as in {@link ReadSpan}. */
function skip(
  batches: RecordBatches,
  n: number,
  onSkip: ((skipped: number) => Promise<void>) | undefined,
): RecordBatches {
  return n > 0 ? skipping(batches, n, onSkip) : batches;
}

async function* skipping(
  batches: RecordBatches,
  n: number,
  onSkip: ((skipped: number) => Promise<void>) | undefined,
): AsyncGenerator<readonly ParsedRecord[]> {
  let left = n;
  for await (const batch of batches) {
    if (left >= batch.length) {
      left -= batch.length;
      await onSkip?.(n - left);
    } else {
      yield left > 0 ? batch.slice(left) : batch;
      left = 0;
    }
  }
}

/**
 * The records of an uncompressed CSV or NDJSON file from a byte checkpoint. The parser is given a prefix
 * and then the bytes from the offset: for CSV the header record; for NDJSON one newline, so that the first
 * line read cannot be mistaken for the start of the file (a leading U+FEFF would be taken for a BOM).
 * Rows, positions and error locations are shifted back to the whole file's.
 */
async function* fromOffset(
  s3: S3Client,
  file: ObjectVersion,
  format: 'csv' | 'ndjson',
  size: number | undefined,
  onBytes: (n: number) => void,
  resume: ResumePoint,
  end: number | undefined,
  csv: {
    readonly parseThread: boolean;
    readonly delimiter: string;
    readonly expectColumns: readonly string[];
  },
): AsyncGenerator<readonly ParsedRecord[]> {
  const prefix =
    format === 'csv'
      ? await readCsvHeader(s3, file, size, onBytes, csv.delimiter)
      : Buffer.from('\n', 'utf8');
  // NDJSON numbers physical lines: the newline added is one line.
  const rowShift = format === 'csv' ? resume.row : resume.row - 1;
  const byteShift = resume.position - prefix.length;
  async function* bytes(): AsyncGenerator<Buffer> {
    yield prefix;
    // A staged copy is opened even at its end: a stream that failed there fails the read.
    if (!file.staged && size !== undefined && resume.position >= size) return;
    if (!file.staged && end !== undefined && resume.position >= end) return;
    const object = await openObjectStream(s3, file, resume.position, end);
    yield* counted(object.body, onBytes);
  }
  try {
    for await (const batch of parseTextBatches(format, bytes(), {
      maxRecordBytes: settings.limits.maxRecordBytes,
      positions: true,
      parseThread: csv.parseThread,
      expectColumns: csv.expectColumns,
      delimiter: csv.delimiter,
    })) {
      yield batch.map((rec) => ({
        ...rec,
        row: rec.row + rowShift,
        ...(rec.end !== undefined ? { end: rec.end + byteShift } : {}),
      }));
    }
  } catch (err) {
    if (!(err instanceof MalformedFileError)) throw err;
    // The reason, not the message: the message's location counts from the re-read's start. Rows and bytes
    // are shifted to the whole file's; physical lines cannot be (the lines before the offset are not
    // known), so the location has none.
    const at = err.location;
    throw new MalformedFileError(
      `${err.reason}, reading from byte ${resume.position} (after row ${resume.row})`,
      {
        ...(at.row !== undefined ? { row: at.row + rowShift } : {}),
        ...(at.byteOffset !== undefined && at.byteOffset >= prefix.length
          ? { byteOffset: at.byteOffset + byteShift }
          : {}),
      },
      { cause: err },
    );
  }
}

/** The first bytes of a CSV object up to the end of its header record (a BOM included). */
async function readCsvHeader(
  s3: S3Client,
  file: ObjectVersion,
  size: number | undefined,
  onBytes: (n: number) => void,
  delimiter: string,
): Promise<Buffer> {
  const max = settings.limits.maxRecordBytes;
  for (let window = HEADER_WINDOW_BYTES; ; window *= 4) {
    const want = size !== undefined ? Math.min(window, size) : window;
    const head = await readObjectRange(s3, file, 0, want, onBytes);
    const atEnd = head.length < want || (size !== undefined && want >= size);
    const length = csvHeaderLength(head, atEnd, max, delimiter);
    if (length !== undefined) return head.subarray(0, length);
    if (window > 4 * max) {
      // csv-parse fails a record past maxRecordBytes first; this only guards the loop.
      throw new MalformedFileError(`CSV header is longer than ${max} bytes`, { row: 0 });
    }
  }
}

/**
 * Follows the records as they are processed and says where a checkpoint may be taken before the next
 * one: anywhere between two text records, only between row groups for Parquet.
 */
export class Progress {
  readonly #kind: CheckpointKind;
  /** Records parsed before this attempt's first one (the checkpoint resumed from, for `record`). */
  #count: number;
  #last: ParsedRecord | undefined;

  constructor(kind: CheckpointKind, resume?: ResumePoint) {
    this.#kind = kind;
    this.#count = resume?.kind === 'record' ? resume.position : 0;
  }

  /** Where a checkpoint taken now, before `next` is processed, resumes; undefined when none can be. */
  before(next: ParsedRecord): ResumePoint | undefined {
    const last = this.#last;
    if (last === undefined) return undefined;
    switch (this.#kind) {
      case 'byte':
        return last.end !== undefined ? { kind: 'byte', position: last.end, row: last.row } : undefined;
      case 'rowGroup':
        return next.rowGroup !== undefined && next.rowGroup !== last.rowGroup
          ? { kind: 'rowGroup', position: next.rowGroup, row: last.row }
          : undefined;
      case 'record':
        return { kind: 'record', position: this.#count, row: last.row };
    }
  }

  /** `rec` was processed (sent or rejected). */
  done(rec: ParsedRecord): void {
    this.#last = rec;
    this.#count++;
  }
}
