import { open, stat } from 'node:fs/promises';
import {
  type AsyncBuffer,
  type ColumnData,
  type FileMetaData,
  parquetMetadataAsync,
  parquetRead,
  parquetSchema,
} from 'hyparquet';
import { MalformedFileError } from '../../../shared/errors.ts';
import type { ParsedRecord, ParserOptions } from './types.ts';

/** One row group: 0-based, half-open row range `[rowStart, rowEnd)` in the file. */
export interface ParquetRowGroup {
  readonly index: number;
  readonly rowStart: number;
  readonly rowEnd: number;
}

/**
 * Streams the rows of a Parquet file, one row group in memory at a time (its column chunks are fetched
 * together, decoded into columns, and rows are built from them one by one as they are consumed).
 * `row` is the 1-based row number in the file.
 *
 * Values: INT64 becomes a number when it is a safe integer, else its decimal string; timestamps and dates
 * stay `Date`; strings stay strings, binary stays `Uint8Array`; lists and structs keep their shape with
 * the same conversions inside. A file that is not Parquet or is corrupt throws {@link MalformedFileError};
 * errors from reading `file` itself (network, throttling) pass through unchanged, so they stay retryable.
 * `opts.maxRecordBytes` is not used: a row cannot outgrow the row group holding it. `opts.fromRowGroup`
 * starts at that row group (a checkpoint); with `opts.positions`, each row carries its `rowGroup`.
 */
export async function* parseParquet(file: AsyncBuffer, opts: ParserOptions): AsyncGenerator<ParsedRecord> {
  const io = guardReads(file);
  const metadata = await readMetadata(io);
  const columns = parquetSchema(metadata).children.map((c) => c.element.name);
  for (const group of groupsOf(metadata)) {
    if (group.index < (opts.fromRowGroup ?? 0)) continue;
    const chunks = await readRowGroup(io, metadata, group, columns);
    const cursors = columns.map((name) => new ColumnCursor(name, chunks.get(name) ?? []));
    for (let r = group.rowStart; r < group.rowEnd; r++) {
      const data: Record<string, unknown> = {};
      for (const cursor of cursors) setOwn(data, cursor.name, convert(cursor.at(r)));
      yield opts.positions ? { row: r + 1, data, rowGroup: group.index } : { row: r + 1, data };
    }
  }
}

/** The row groups of a Parquet file, for checkpoints and fan-out (reads only the footer). */
export async function parquetRowGroups(file: AsyncBuffer): Promise<ParquetRowGroup[]> {
  return groupsOf(await readMetadata(guardReads(file)));
}

/**
 * A random-access view of a local file (for a Parquet file spooled to disk). Each slice opens the file,
 * reads exactly that byte range and closes it again, so nothing stays open after parsing ends.
 */
export async function asyncBufferFromFile(path: string): Promise<AsyncBuffer> {
  const { size } = await stat(path);
  return {
    byteLength: size,
    async slice(start: number, end?: number): Promise<ArrayBuffer> {
      const from = Math.max(0, Math.min(start, size));
      const to = Math.max(from, Math.min(end ?? size, size));
      const bytes = new Uint8Array(to - from);
      if (bytes.length === 0) return bytes.buffer;
      const handle = await open(path, 'r');
      try {
        let done = 0;
        while (done < bytes.length) {
          const { bytesRead } = await handle.read(bytes, done, bytes.length - done, from + done);
          if (bytesRead === 0) break;
          done += bytesRead;
        }
        return done === bytes.length ? bytes.buffer : bytes.buffer.slice(0, done);
      } finally {
        await handle.close();
      }
    },
  };
}

/** Errors thrown by the underlying reads, told apart from the decoder's so they are not made permanent. */
interface GuardedBuffer extends AsyncBuffer {
  readonly ioErrors: WeakSet<object>;
}

function guardReads(file: AsyncBuffer): GuardedBuffer {
  const ioErrors = new WeakSet<object>();
  return {
    byteLength: file.byteLength,
    ioErrors,
    async slice(start: number, end?: number): Promise<ArrayBuffer> {
      try {
        return await file.slice(start, end);
      } catch (err) {
        if (typeof err === 'object' && err !== null) ioErrors.add(err);
        throw err;
      }
    },
  };
}

function rethrow(io: GuardedBuffer, err: unknown, what: string, row?: number): never {
  if (typeof err === 'object' && err !== null && io.ioErrors.has(err)) throw err;
  const message = err instanceof Error ? err.message : String(err);
  throw new MalformedFileError(`Parquet ${what}: ${message}`, row !== undefined ? { row } : {}, {
    cause: err,
  });
}

async function readMetadata(io: GuardedBuffer): Promise<FileMetaData> {
  if (io.byteLength < 12) {
    throw new MalformedFileError(`Parquet file is too short to be Parquet (${io.byteLength} bytes)`);
  }
  try {
    return await parquetMetadataAsync(io);
  } catch (err) {
    rethrow(io, err, 'file is not readable');
  }
}

function groupsOf(metadata: FileMetaData): ParquetRowGroup[] {
  const groups: ParquetRowGroup[] = [];
  let rowStart = 0;
  metadata.row_groups.forEach((group, index) => {
    const rows = Number(group.num_rows);
    groups.push({ index, rowStart, rowEnd: rowStart + rows });
    rowStart += rows;
  });
  return groups;
}

async function readRowGroup(
  io: GuardedBuffer,
  metadata: FileMetaData,
  group: ParquetRowGroup,
  columns: readonly string[],
): Promise<Map<string, ColumnData[]>> {
  const chunks = new Map<string, ColumnData[]>(columns.map((c) => [c, []]));
  if (group.rowEnd === group.rowStart) return chunks;
  try {
    await parquetRead({
      file: io,
      metadata,
      rowStart: group.rowStart,
      rowEnd: group.rowEnd,
      onChunk: (chunk) => {
        chunks.get(chunk.columnName)?.push(chunk);
      },
    });
  } catch (err) {
    rethrow(io, err, `row group ${group.index} is corrupt`, group.rowStart + 1);
  }
  return chunks;
}

/** Reads one column's decoded chunks in row order. */
class ColumnCursor {
  readonly name: string;
  readonly #chunks: readonly ColumnData[];
  #i = 0;

  constructor(name: string, chunks: readonly ColumnData[]) {
    this.name = name;
    this.#chunks = [...chunks].sort((a, b) => a.rowStart - b.rowStart);
  }

  /** The value at absolute row `row`; rows must be asked for in increasing order. */
  at(row: number): unknown {
    let chunk = this.#chunks[this.#i];
    while (chunk !== undefined && row >= chunk.rowEnd) chunk = this.#chunks[++this.#i];
    if (chunk === undefined || row < chunk.rowStart) {
      throw new MalformedFileError(`Parquet column "${this.name}" has no value for row ${row + 1}`, {
        row: row + 1,
      });
    }
    return chunk.columnData[row - chunk.rowStart];
  }
}

const MIN_SAFE = BigInt(Number.MIN_SAFE_INTEGER);
const MAX_SAFE = BigInt(Number.MAX_SAFE_INTEGER);

/** `obj[key] = value`, except that a key named `__proto__` becomes an own property too. */
function setOwn(obj: Record<string, unknown>, key: string, value: unknown): void {
  if (key === '__proto__') {
    Object.defineProperty(obj, key, { value, enumerable: true, writable: true, configurable: true });
  } else {
    obj[key] = value;
  }
}

/** Makes a decoded value safe to pass on: bigints become numbers (or strings past 2^53), recursively. */
export function convert(value: unknown): unknown {
  if (typeof value === 'bigint') {
    return value >= MIN_SAFE && value <= MAX_SAFE ? Number(value) : value.toString();
  }
  if (typeof value !== 'object' || value === null) return value;
  if (Array.isArray(value)) {
    let out: unknown[] | undefined;
    for (let i = 0; i < value.length; i++) {
      const v = value[i];
      const c = convert(v);
      if (c !== v) {
        out ??= value.slice();
        out[i] = c;
      }
    }
    return out ?? value;
  }
  const proto = Object.getPrototypeOf(value);
  if (proto !== Object.prototype && proto !== null) return value; // Date, Uint8Array, ...
  let out: Record<string, unknown> | undefined;
  for (const [k, v] of Object.entries(value)) {
    const c = convert(v);
    if (c !== v) {
      out ??= { ...(value as Record<string, unknown>) };
      setOwn(out, k, c);
    }
  }
  return out ?? value;
}
