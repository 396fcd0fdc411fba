/**
 * Parquet read speed of s3-trigger's parser (functions/s3-trigger/parsers/parquet.ts, its decoder process
 * included), for a Snappy and a ZSTD file of the benchmark's CSV rows (bench/lib.ts: name, value, source,
 * timestamp, host, region), from memory: rows a second, and MB a second of the file itself and of the same
 * rows as CSV (what the CSV figures are in). `npm run bench` runs it and records it in bench/results.json;
 * `npm run bench:parquet [rows]` runs it alone. It measures; it asserts only that every row is read.
 */
import { zstdCompressSync } from 'node:zlib';
import type { AsyncBuffer, CompressionCodec } from 'hyparquet';
import { parquetWriteBuffer } from 'hyparquet-writer';
import { normaliseSignal } from '#shared/signal.ts';
import { parseParquetBatches } from '../functions/s3-trigger/parsers/parquet.ts';
import { CSV_HEADER, csvRows, MB, round } from './lib.ts';

/** Rows of the benchmark file: about 65 MB as CSV. */
const ROWS = 1_000_000;
const ROW_GROUP_ROWS = 128 * 1024;
const RUNS = 3;

export interface ParquetCodecResult {
  readonly codec: string;
  readonly rows: number;
  readonly file_mb: number;
  /** The same rows as CSV text. */
  readonly csv_mb: number;
  readonly parse_s: number;
  readonly rows_per_s: number;
  readonly file_mb_per_s: number;
  readonly csv_equivalent_mb_per_s: number;
  /** Parsed and normalised into signals (validation included), one run. */
  readonly parse_normalise_rows_per_s: number;
}

/** The benchmark's CSV rows `0..rows-1` as columns (the same values as `csvRows`). */
function columns(rows: number) {
  const text = csvRows(0, rows);
  const name: string[] = [];
  const value = new Float64Array(rows);
  const source: string[] = [];
  const timestamp: Date[] = [];
  const host: string[] = [];
  const region: string[] = [];
  let i = 0;
  for (const line of text.split('\r\n')) {
    if (line === '') continue;
    const m = /^([^,]*),([^,]*),([^,]*),([^,]*),"([^"]*)",(.*)$/.exec(line);
    if (!m) throw new Error(`unexpected bench row: ${line}`);
    name.push(m[1] as string);
    value[i] = Number(m[2]);
    source.push(m[3] as string);
    timestamp.push(new Date(Number(m[4]) * 1000));
    host.push(m[5] as string);
    region.push(m[6] as string);
    i++;
  }
  return {
    csvBytes: Buffer.byteLength(`${CSV_HEADER}\r\n${text}`),
    name,
    value,
    source,
    timestamp,
    host,
    region,
  };
}

function memoryBuffer(bytes: ArrayBuffer): AsyncBuffer {
  return { byteLength: bytes.byteLength, slice: (start, end) => bytes.slice(start, end) };
}

async function readAll(file: ArrayBuffer, normalise: boolean): Promise<number> {
  let n = 0;
  const ctx = { origin: { kind: 's3' as const, ref: 's3://bench/b.parquet@e' }, defaultSource: 'b.parquet' };
  for await (const batch of parseParquetBatches(memoryBuffer(file), {
    maxRecordBytes: MB,
    positions: true,
  })) {
    if (normalise) for (const r of batch) if (r.data) normaliseSignal(r.data, ctx);
    n += batch.length;
  }
  return n;
}

export async function benchParquet(rows = ROWS): Promise<ParquetCodecResult[]> {
  const c = columns(rows);
  const out: ParquetCodecResult[] = [];
  const codecs: Array<[CompressionCodec, ((b: Uint8Array) => Uint8Array) | undefined]> = [
    ['SNAPPY', undefined],
    ['ZSTD', (b) => zstdCompressSync(b)],
  ];
  for (const [codec, compress] of codecs) {
    const file = parquetWriteBuffer({
      codec,
      ...(compress ? { compressors: { [codec]: compress } } : {}),
      rowGroupSize: ROW_GROUP_ROWS,
      columnData: [
        { name: 'name', type: 'STRING', data: c.name },
        { name: 'value', type: 'DOUBLE', data: c.value },
        { name: 'source', type: 'STRING', data: c.source },
        { name: 'timestamp', type: 'TIMESTAMP', data: c.timestamp },
        { name: 'host', type: 'STRING', data: c.host },
        { name: 'region', type: 'STRING', data: c.region },
      ],
    });
    let best = Number.POSITIVE_INFINITY;
    for (let run = 0; run < RUNS; run++) {
      const t0 = performance.now();
      const n = await readAll(file, false);
      best = Math.min(best, (performance.now() - t0) / 1000);
      if (n !== rows) throw new Error(`${codec}: read ${n} rows of ${rows}`);
    }
    const t0 = performance.now();
    await readAll(file, true);
    const normaliseSeconds = (performance.now() - t0) / 1000;
    out.push({
      codec,
      rows,
      file_mb: round(file.byteLength / MB, 2),
      csv_mb: round(c.csvBytes / MB, 1),
      parse_s: round(best, 2),
      rows_per_s: Math.round(rows / best),
      file_mb_per_s: round(file.byteLength / MB / best, 2),
      csv_equivalent_mb_per_s: round(c.csvBytes / MB / best, 1),
      parse_normalise_rows_per_s: Math.round(rows / normaliseSeconds),
    });
  }
  return out;
}

/** The results as lines of text. */
export function formatParquet(results: readonly ParquetCodecResult[]): string {
  return results
    .map(
      (r) =>
        `${r.codec.padEnd(6)} ${r.rows} rows, ${r.file_mb} MB file (${r.csv_mb} MB as CSV): ` +
        `${r.file_mb_per_s} MB/s of file, ${r.csv_equivalent_mb_per_s} MB/s as CSV, ${r.rows_per_s} rows/s ` +
        `(best of ${RUNS}); with normalising ${r.parse_normalise_rows_per_s} rows/s`,
    )
    .join('\n');
}

if (process.argv[1] && import.meta.url.endsWith(process.argv[1].split('/').pop() as string)) {
  const rows = Number(process.argv[2] ?? ROWS);
  console.log(`node ${process.version}`);
  console.log(formatParquet(await benchParquet(rows)));
}
