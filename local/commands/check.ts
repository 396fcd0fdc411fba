/**
 * `pulse check FILE…`: what the deployed s3-trigger would make of a file, before it is uploaded — with no
 * AWS and no emulator. The file is read by the same parsers, with the same options and limits, and each
 * record validated and normalised by the same function (`normaliseEntry`) as `readAndSend` in
 * functions/s3-trigger/ingest.ts does; the format is detected from the key the file would get, as the
 * s3-trigger detects it (compression included).
 *
 * Reading a local file is `openRecords` (functions/s3-trigger/records.ts) for a whole object read from its
 * start, with the file's bytes in place of GetObject's: test/unit/local/check.test.ts holds the two to the
 * same records.
 */

import { createReadStream } from 'node:fs';
import { stat } from 'node:fs/promises';
import { basename } from 'node:path';
import { describeError, isTransient, MalformedFileError } from '#shared/errors.ts';
import { expectedColumns, MappingConflict, mapRecord } from '#shared/field-mapping.ts';
import { DEFAULT_RESOLVED_ROUTES, noRouteReason, type ResolvedRoute, routeFor } from '#shared/routes.ts';
import { settings } from '#shared/settings.ts';
import { expandSignals, normaliseEntry, REQUIRED_FIELDS, type Signal } from '#shared/signal.ts';
import { csvFieldBatches } from '../../functions/s3-trigger/parsers/csv-fields.ts';
import {
  type DetectedFormat,
  decompressBounded,
  detectFormat,
  parseTextBatches,
} from '../../functions/s3-trigger/parsers/index.ts';
import { asyncBufferFromFile, parseParquetBatches } from '../../functions/s3-trigger/parsers/parquet.ts';
import type { RecordBatches } from '../../functions/s3-trigger/parsers/types.ts';
import { leftOutReason } from '../../functions/s3-trigger/records.ts';
import { spoolToTempFile } from '../../functions/s3-trigger/source.ts';
import { type ColumnMapping, type MappingSample, suggestMapping } from './check-mapping.ts';

/** The bucket and ETag a file would get are not known before it is uploaded: its refs name them so. */
export const CHECK_BUCKET = '<bucket>';
export const CHECK_ETAG = '<etag>';

/** What `checkFile` reports besides the counts. */
export interface CheckOptions {
  /** The key the file would be uploaded to (its format is detected from it). @default incoming/<basename> */
  readonly key?: string;
  /** Rows rejected at most for the file to pass. @default 0 */
  readonly maxRejects?: number;
  /** Signals listed at most (the first ones). @default 5 */
  readonly signals?: number;
  /** Rejects listed at most (the first ones); all are counted. @default 20 */
  readonly rejects?: number;
  /**
   * The deployment's routes (`--config`, or one route of `--mapping`): the file is read as the route that
   * takes its key reads it (field mapping, CSV delimiter); a key no route takes would be SKIPPED.
   * @default the default route
   */
  readonly routes?: readonly ResolvedRoute[];
}

const DEFAULTS = { maxRejects: 0, signals: 5, rejects: 20 } as const;

/** One rejected record, or a part of the file that is not a record (no row). */
export interface CheckReject {
  readonly row?: number;
  /** Byte offset where the record starts, in the (decompressed) stream, when the parser says. */
  readonly byte?: number;
  readonly reason: string;
}

/** Why the whole file would fail (the ledger item FAILED), and where. */
export interface CheckFailure {
  readonly type: string;
  readonly message: string;
  readonly row?: number;
  readonly line?: number;
  readonly byte?: number;
}

/**
 * - `ok`: every record would be sent, or at most `maxRejects` rejected;
 * - `rejects`: more records rejected than `maxRejects`;
 * - `failed`: the file would fail (what was read before the failure is still sent);
 * - `unsupported`: its key names no format the s3-trigger reads: it would be SKIPPED, nothing read.
 */
export type CheckVerdict = 'ok' | 'rejects' | 'failed' | 'unsupported';

export interface CheckReport {
  readonly file: string;
  readonly key: string;
  readonly format?: DetectedFormat['format'];
  readonly compression?: DetectedFormat['compression'];
  readonly bytes: number;
  /** Records read (sent and rejected), and those of them that would be sent. */
  readonly records: number;
  readonly signals: number;
  /** Rejected records, and parts of the file left out as not records (counted with them, as ingest does). */
  readonly rejected: number;
  readonly maxRejects: number;
  /** The first rejects (up to `CheckOptions.rejects`). */
  readonly firstRejects: readonly CheckReject[];
  /** The first signals, whole, as the scorer would read them off the queue. */
  readonly firstSignals: readonly Signal[];
  readonly failure?: CheckFailure;
  /**
   * The required fields the records lack and the column that looks like each, when some are missing, with
   * how many of the records sampled would be sent were the columns so named.
   */
  readonly mapping?: ColumnMapping;
  readonly verdict: CheckVerdict;
}

/** Exit codes of `pulse check` (README): the worst verdict among the files decides. */
export const CHECK_EXIT = { ok: 0, error: 1, rejects: 2, failed: 3, unsupported: 3 } as const;

/** The exit code for a set of reports. */
export function checkExitCode(reports: readonly CheckReport[]): number {
  return Math.max(0, ...reports.map((r) => CHECK_EXIT[r.verdict]));
}

/** Records sampled (the first ones) to find a mapping for missing required fields. */
const MAPPING_SAMPLE = 50;

/**
 * Reads `path` as the s3-trigger would read it uploaded to `opts.key`, and reports what would be sent,
 * rejected, or why the file would fail. A file that cannot be read here (missing, a folder) throws.
 */
export async function checkFile(path: string, options: CheckOptions = {}): Promise<CheckReport> {
  const opts = { ...DEFAULTS, ...options };
  const { size, isFile } = await stat(path).then((s) => ({ size: s.size, isFile: s.isFile() }));
  if (!isFile) throw new Error(`${path} is not a file`);
  const key = opts.key ?? `${settings.bucket.incomingPrefix}${basename(path)}`;
  const format = detectFormat(key);
  const base = { file: path, key, bytes: size, maxRejects: opts.maxRejects };
  const routes = opts.routes ?? DEFAULT_RESOLVED_ROUTES;
  const route = routeFor(routes, CHECK_BUCKET, key);
  if (!route) {
    const message = `${noRouteReason(routes, CHECK_BUCKET, key)}; it would be SKIPPED`;
    const none = { records: 0, signals: 0, rejected: 0, firstRejects: [], firstSignals: [] };
    return { ...base, ...none, failure: { type: 'NoRoute', message }, verdict: 'unsupported' };
  }
  if (!format) {
    return {
      ...base,
      records: 0,
      signals: 0,
      rejected: 0,
      firstRejects: [],
      firstSignals: [],
      failure: {
        type: 'UnsupportedFileType',
        message: `unsupported file type: ${key} (expected ${settings.bucket.suffixes.join(' ')}); it would be SKIPPED`,
      },
      verdict: 'unsupported',
    };
  }
  const origin = {
    kind: 's3',
    ref: `s3://${CHECK_BUCKET}/${key}@${CHECK_ETAG}`,
  } as const;
  let records = 0;
  let signals = 0;
  let rejected = 0;
  let previousEnd: number | undefined;
  const firstRejects: CheckReject[] = [];
  const firstSignals: Signal[] = [];
  const sample: MappingSample[] = [];
  const reject = (r: CheckReject) => {
    rejected++;
    if (firstRejects.length < opts.rejects) firstRejects.push(r);
  };
  let failure: CheckFailure | undefined;
  let opened: LocalRecords | undefined;
  try {
    // Inside: a compressed Parquet file is inflated as it is opened, and may fail there.
    opened = await openLocalRecords(path, size, format, { route });
    for await (const batch of opened.batches) {
      for (const rec of batch) {
        records++;
        const byte = previousEnd !== undefined ? { byte: previousEnd } : {};
        previousEnd = rec.end;
        if (rec.error !== undefined) {
          reject({ row: rec.row, ...byte, reason: rec.error });
          continue;
        }
        const data = mapRecord(rec.data, route.prepared);
        if (data instanceof MappingConflict) {
          reject({ row: rec.row, ...byte, reason: data.error });
          continue;
        }
        const result = normaliseEntry(data, `#${rec.row}`, origin, key);
        if (sample.length < MAPPING_SAMPLE) sample.push({ data: rec.data, ok: result.ok });
        if (!result.ok) {
          reject({ row: rec.row, ...byte, reason: result.reason });
          continue;
        }
        signals++;
        if (firstSignals.length < opts.signals) {
          const [signal] = expandSignals({ v: 3, origin, source: key, signals: [result.entry] });
          firstSignals.push(signal as Signal);
        }
      }
    }
    for (const reason of opened.leftOut) reject({ reason });
  } catch (err) {
    // A transient error reading a local file is no verdict on the file: say so rather than judge it.
    if (isTransient(err)) throw err;
    failure = failureOf(err);
  } finally {
    await opened?.dispose();
  }
  const headerFailed = failure?.type === 'MalformedFileError' && records === 0 && format.format === 'csv';
  const mapping = headerFailed
    ? await headerlessMapping(path, size, format, route)
    : suggestMapping(sample, format.format === 'csv' ? await csvColumns(path, size, format) : undefined);
  const verdict: CheckVerdict = failure ? 'failed' : rejected > opts.maxRejects ? 'rejects' : 'ok';
  return {
    ...base,
    format: format.format,
    ...(format.compression ? { compression: format.compression } : {}),
    records,
    signals,
    rejected,
    firstRejects,
    firstSignals,
    ...(failure ? { failure } : {}),
    ...(mapping ? { mapping } : {}),
    verdict,
  };
}

function failureOf(err: unknown): CheckFailure {
  const { type, message } = describeError(err);
  if (!(err instanceof MalformedFileError)) return { type, message };
  const at = err.location;
  return {
    type,
    message,
    ...(at.row !== undefined ? { row: at.row } : {}),
    ...(at.line !== undefined ? { line: at.line } : {}),
    ...(at.byteOffset !== undefined ? { byte: at.byteOffset } : {}),
  };
}

/**
 * A CSV file whose header names none of the required columns fails before its first record (the parser
 * takes it for a data row): read again without that check, its first records say which columns would do.
 */
async function headerlessMapping(
  path: string,
  size: number,
  format: DetectedFormat,
  route: ResolvedRoute,
): Promise<ColumnMapping | undefined> {
  const sample: MappingSample[] = [];
  let opened: LocalRecords | undefined;
  try {
    opened = await openLocalRecords(path, size, format, { expectColumns: false, route });
    for await (const batch of opened.batches) {
      for (const rec of batch) {
        if (rec.data !== undefined) sample.push({ data: rec.data, ok: false });
      }
      if (sample.length >= MAPPING_SAMPLE) break;
    }
  } catch {
    // Unreadable further on: the records read so far are the sample.
  } finally {
    await opened?.dispose();
  }
  return suggestMapping(sample, await csvColumns(path, size, format));
}

/** The column names of a CSV file's header, in order, as its parser reads them (undefined if it cannot). */
async function csvColumns(path: string, size: number, format: DetectedFormat): Promise<string[] | undefined> {
  try {
    const fields = csvFieldBatches(localBytes(path, size, format, []), {
      maxRecordBytes: settings.limits.maxRecordBytes,
    });
    for await (const { header } of fields) return [...header.names];
  } catch {
    // A header the parser cannot read has no columns to name.
  }
  return undefined;
}

/** The bytes of a local file, decompressed as its format says (bounded as the s3-trigger bounds them). */
function localBytes(
  path: string,
  size: number,
  format: DetectedFormat,
  leftOut: string[],
): AsyncIterable<Buffer> {
  const bytes: AsyncIterable<Buffer> = createReadStream(path);
  if (!format.compression) return bytes;
  return decompressBounded(format.compression, bytes, size, settings.limits, (trailing) => {
    leftOut.push(leftOutReason(trailing));
  });
}

interface LocalRecords {
  readonly batches: RecordBatches;
  /** As `OpenedRecords.leftOut`: complete once `batches` ends. */
  readonly leftOut: readonly string[];
  readonly dispose: () => Promise<void>;
}

/**
 * The records of a local file, as `openRecords` yields those of an object read whole from its start: the
 * same parser options (record size limit, positions, required columns) and decompression limits.
 */
export async function openLocalRecords(
  path: string,
  size: number,
  format: DetectedFormat,
  how: { expectColumns?: false; route?: ResolvedRoute } = {},
): Promise<LocalRecords> {
  const opts = {
    maxRecordBytes: settings.limits.maxRecordBytes,
    positions: true,
    parseThread: false,
    delimiter: how.route?.delimiter ?? ',',
    ...(how.expectColumns === false
      ? {}
      : { expectColumns: expectedColumns(REQUIRED_FIELDS, how.route?.mapping) }),
  };
  const leftOut: string[] = [];
  if (format.format === 'parquet' && !format.compression) {
    const batches = parseParquetBatches(await asyncBufferFromFile(path), opts);
    return { batches, leftOut, dispose: async () => {} };
  }
  const bytes = localBytes(path, size, format, leftOut);
  if (format.format === 'parquet') {
    // As the s3-trigger does: a compressed Parquet file is inflated to a temporary file first.
    const spooled = await spoolToTempFile(bytes);
    const batches = parseParquetBatches(await asyncBufferFromFile(spooled.path), opts);
    return { batches, leftOut, dispose: spooled.dispose };
  }
  return { batches: parseTextBatches(format.format, bytes, opts), leftOut, dispose: async () => {} };
}
