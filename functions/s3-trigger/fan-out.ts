import type { S3Client } from '@aws-sdk/client-s3';
import type { PartRange } from '#shared/ledger.ts';
import { settings } from '#shared/settings.ts';
import type { DetectedFormat } from './parsers/index.ts';
import { parquetRowGroups } from './parsers/parquet.ts';
import { counted, type ObjectVersion, openObjectStream, s3AsyncBuffer } from './source.ts';
import { planSplit } from './split.ts';

/**
 * Fan-out: how a large object version is cut into parts that separate invocations ingest in parallel,
 * each numbering its rows exactly as a read of the whole file would (so signal ids do not depend on the
 * split).
 *
 * - Uncompressed CSV and NDJSON: one streaming pass over the object (a quote-aware scan, far faster than
 *   parsing; `split.ts`) finds, for each multiple of the part size, the end of the record that crosses it,
 *   and the row number there. A file the scan cannot read with certainty (a quoting irregularity) is not
 *   split: it is ingested whole, as before.
 * - Parquet: whole row groups, from the footer alone; the rows before a row group are known from it.
 * - gzip, JSON arrays, objects with a Content-Encoding: never split themselves (they can only be read from
 *   the start); a large gzip CSV/NDJSON file is staged first (`staging.ts`) and its staged copy, which is
 *   uncompressed, is split like any other.
 */

export interface FanOutOptions {
  /** Objects at least this large are split. */
  readonly minBytes: number;
  /** About this many bytes per part. */
  readonly partBytes: number;
  /** Never more parts than this: larger objects get larger parts. */
  readonly maxParts: number;
}

export type PartPlan =
  | { readonly split: true; readonly ranges: PartRange[] }
  | { readonly split: false; readonly reason: string };

/** Whether an object of this format and size is worth planning a split for. */
export function splittable(format: DetectedFormat, size: number | undefined, opts: FanOutOptions): boolean {
  if (format.compression || size === undefined || size < opts.minBytes) return false;
  return format.format === 'csv' || format.format === 'ndjson' || format.format === 'parquet';
}

/** The size of each part for an object of `size` bytes. */
export function partSize(size: number, opts: FanOutOptions): number {
  return Math.max(opts.partBytes, Math.ceil(size / opts.maxParts));
}

/**
 * Plans the parts of an object version (see the module comment). `onBytes` counts what is read; `onChunk`
 * is awaited between the chunks of a text scan (the caller keeps its lease alive there).
 */
export async function planParts(
  s3: S3Client,
  file: ObjectVersion,
  format: DetectedFormat,
  size: number,
  opts: FanOutOptions,
  onBytes: (n: number) => void,
  onChunk: () => Promise<void> = async () => {},
  delimiter = ',',
): Promise<PartPlan> {
  const each = partSize(size, opts);
  if (format.format === 'parquet') {
    const groups = await parquetRowGroups(s3AsyncBuffer(s3, file, size, onBytes));
    const n = Math.min(groups.length, Math.ceil(size / each));
    if (n < 2) return { split: false, reason: `${groups.length} row group(s): nothing to split` };
    const ranges: PartRange[] = [];
    for (let i = 0; i < n; i++) {
      const start = Math.floor((i * groups.length) / n);
      const end = Math.floor(((i + 1) * groups.length) / n);
      const first = groups[start];
      const last = groups[end - 1];
      if (!first || !last) continue;
      ranges.push({ kind: 'rowGroup', start, end, row: first.rowStart, endRow: last.rowEnd });
    }
    return { split: true, ranges };
  }
  if (format.format !== 'csv' && format.format !== 'ndjson') {
    return { split: false, reason: `${format.format} is read from the start only` };
  }
  const object = await openObjectStream(s3, file);
  if (object.contentEncoding === 'gzip' || object.contentEncoding === 'zstd') {
    return { split: false, reason: `the object is stored with Content-Encoding ${object.contentEncoding}` };
  }
  const targets: number[] = [];
  for (let t = each; t < size; t += each) targets.push(t);
  async function* paced(): AsyncGenerator<Buffer> {
    for await (const chunk of counted(object.body, onBytes)) {
      yield chunk;
      await onChunk();
    }
  }
  const plan = await planSplit(format.format, paced(), targets, {
    maxRecordBytes: settings.limits.maxRecordBytes,
    delimiter,
  });
  if (!plan.ok) {
    return {
      split: false,
      reason: `the scan for record boundaries stopped at byte ${plan.offset}: ${plan.reason}`,
    };
  }
  if (plan.bytes !== size) {
    return { split: false, reason: `read ${plan.bytes} bytes of an object of ${size}` };
  }
  if (plan.points.length === 0) return { split: false, reason: 'no record boundary to split at' };
  const starts = [{ offset: 0, row: 0 }, ...plan.points];
  const ranges = starts.map((p, i): PartRange => {
    const next = plan.points[i];
    return {
      kind: 'byte',
      start: p.offset,
      end: next?.offset ?? size,
      row: p.row,
      endRow: next?.row ?? plan.rows,
    };
  });
  return { split: true, ranges };
}
