import { type ChildProcess, fork } from 'node:child_process';
import { open, stat } from 'node:fs/promises';
import { fileURLToPath } from 'node:url';
import {
  type AsyncBuffer,
  type ColumnData,
  type ColumnMetaData,
  type FileMetaData,
  type PageHeader,
  parquetMetadataAsync,
  parquetRead,
  parquetSchema,
  type SchemaTree,
} from 'hyparquet';
// The page-header reader hyparquet decodes with, so the checks below see exactly what the decoder will see.
// hyparquet's package exports its `src/*.js` modules; this one is not re-exported from the index.
import { parquetHeader } from 'hyparquet/src/column.js';
import { InflationLimitError, MalformedFileError, UnsupportedFormatError } from '#shared/errors.ts';
import { settings } from '#shared/settings.ts';
import { PAGE_DECOMPRESSORS, PAGE_EXPANSION, PAGE_SLACK_BYTES, unreadableCodec } from './parquet-codecs.ts';
import {
  columnConverter,
  DECODER_PARSERS,
  decoderMetadata,
  ParquetValueError,
  setOwn,
  type ValueConverter,
} from './parquet-values.ts';
import { canRunModuleFile } from './runnable.ts';
import {
  eachRecord,
  type InflationLimits,
  type ParquetDecoderLimits,
  type ParsedRecord,
  type ParserOptions,
} from './types.ts';

/** One row group: 0-based, half-open row range `[rowStart, rowEnd)` in the file. */
export interface ParquetRowGroup {
  readonly index: number;
  readonly rowStart: number;
  readonly rowEnd: number;
}

/**
 * Streams the rows of a Parquet file, one row group in memory at a time (its column chunks are fetched
 * together, decoded into columns, and rows are built from them as they are consumed).
 * `row` is the 1-based row number in the file.
 *
 * Values are converted by type as `parquet-values.ts` says (exact decimals, timestamps of every unit as
 * `Date`, unannotated bytes as text or base64, ...); a value that cannot be kept (an instant no `Date`
 * holds, a STRING that is not UTF-8) rejects its row with the reason. Pages of every codec Parquet has but
 * LZO are read (`parquet-codecs.ts`). A file that is not Parquet or is corrupt throws
 * {@link MalformedFileError}; one whose pages would inflate past `opts.inflation` (a compression bomb)
 * throws {@link InflationLimitError}; an encrypted file, or one of a codec not read, throws
 * {@link UnsupportedFormatError}. Errors from reading `file` itself (network, throttling) pass through
 * unchanged, so they stay retryable.
 * `opts.maxRecordBytes` is not used: a row cannot outgrow the row group holding it. `opts.fromRowGroup`
 * starts at that row group (a checkpoint), `opts.toRowGroup` stops before that one (a part); with `opts.positions`, each row carries its `rowGroup`.
 */
export function parseParquet(file: AsyncBuffer, opts: ParserOptions): AsyncGenerator<ParsedRecord> {
  return eachRecord(parseParquetBatches(file, opts));
}

/** Rows built at a time, within one row group. */
const ROWS_PER_BATCH = 1024;

/** {@link parseParquet}'s rows, up to {@link ROWS_PER_BATCH} at a time (never an empty batch). */
export async function* parseParquetBatches(
  file: AsyncBuffer,
  opts: ParserOptions,
): AsyncGenerator<ParsedRecord[]> {
  const io = guardReads(file);
  const metadata = await readMetadata(io);
  const columns = topLevelColumns(io, metadata);
  const parquetFile = {
    metadata,
    decoding: decoderMetadata(metadata),
    inflation: opts.inflation ?? settings.limits,
  };
  const decoder = new RowGroupDecoder(opts.parquetDecoder ?? settings.limits.parquetDecoder);
  try {
    for (const group of groupsOf(metadata)) {
      if (group.index < (opts.fromRowGroup ?? 0)) continue;
      if (opts.toRowGroup !== undefined && group.index >= opts.toRowGroup) break;
      const chunks = await readRowGroup(io, parquetFile, group, columns, decoder);
      const cursors = columns.map(
        ({ name, convert }) => new ColumnCursor(name, chunks.get(name) ?? [], convert),
      );
      for (let start = group.rowStart; start < group.rowEnd; start += ROWS_PER_BATCH) {
        const end = Math.min(group.rowEnd, start + ROWS_PER_BATCH);
        const batch: ParsedRecord[] = [];
        for (let r = start; r < end; r++) {
          const where = opts.positions ? { row: r + 1, rowGroup: group.index } : { row: r + 1 };
          batch.push(readRow(cursors, r, where));
        }
        yield batch;
      }
    }
  } finally {
    await decoder.close();
  }
}

/** Row `r` (0-based) from the columns' cursors, or its reject when one of its values cannot be kept. */
function readRow(
  cursors: readonly ColumnCursor[],
  r: number,
  where: { readonly row: number; readonly rowGroup?: number },
): ParsedRecord {
  const data: Record<string, unknown> = {};
  try {
    for (const cursor of cursors) setOwn(data, cursor.name, cursor.value(r));
  } catch (err) {
    if (err instanceof ParquetValueError) return { ...where, error: err.message };
    throw err;
  }
  return { ...where, data };
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
  if (err instanceof MalformedFileError) throw err;
  const message = err instanceof Error ? err.message : String(err);
  throw new MalformedFileError(`Parquet ${what}: ${message}`, row !== undefined ? { row } : {}, {
    cause: err,
  });
}

/** Parquet's magic at both ends of a file whose footer is encrypted (Parquet Modular Encryption). */
const ENCRYPTED_FOOTER_MAGIC = 'PARE';

const NOT_DECRYPTED =
  'Pulse Ingest does not decrypt Parquet files (no keys are configured): write the file without encryption';

async function readMetadata(io: GuardedBuffer): Promise<FileMetaData> {
  if (io.byteLength < 12) {
    throw new MalformedFileError(`Parquet file is too short to be Parquet (${io.byteLength} bytes)`);
  }
  let metadata: FileMetaData;
  try {
    metadata = await parquetMetadataAsync(io);
  } catch (err) {
    if (typeof err === 'object' && err !== null && io.ioErrors.has(err)) throw err;
    const tail = new Uint8Array(await io.slice(io.byteLength - 4, io.byteLength));
    if (new TextDecoder().decode(tail) === ENCRYPTED_FOOTER_MAGIC) {
      throw new UnsupportedFormatError(
        `Parquet file is encrypted (its footer is, "PARE"): ${NOT_DECRYPTED}`,
        {
          cause: err,
        },
      );
    }
    rethrow(io, err, 'file is not readable');
  }
  checkReadable(metadata);
  return metadata;
}

/**
 * Fails a file whose column chunks are encrypted (a plaintext footer still names them) or compressed with a
 * codec that is not read, before anything is decoded: such a file is not corrupt, and says why it is not read.
 */
function checkReadable(metadata: FileMetaData): void {
  for (const [index, group] of metadata.row_groups.entries()) {
    for (const chunk of group.columns) {
      const column = chunk.meta_data?.path_in_schema?.join('.') ?? '?';
      if (chunk.crypto_metadata !== undefined || chunk.encrypted_column_metadata !== undefined) {
        throw new UnsupportedFormatError(
          `Parquet file is encrypted (column "${column}" is, under a plaintext footer): ${NOT_DECRYPTED}`,
        );
      }
      const unreadable = chunk.meta_data && unreadableCodec(chunk.meta_data.codec);
      if (unreadable !== undefined) {
        throw new UnsupportedFormatError(`Parquet row group ${index}, column "${column}": ${unreadable}`);
      }
    }
  }
}

/** A top-level column: its name, and what its values are turned into. */
interface TopLevelColumn {
  readonly name: string;
  readonly convert: ValueConverter | undefined;
}

function topLevelColumns(io: GuardedBuffer, metadata: FileMetaData): TopLevelColumn[] {
  try {
    return parquetSchema(metadata).children.map((c) => ({
      name: c.element.name,
      convert: columnConverter(c),
    }));
  } catch (err) {
    rethrow(io, err, 'schema is not readable');
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

/**
 * Decodes one row group. Its column chunks are fetched first and their page headers checked (see
 * {@link checkColumnChunk}); hyparquet then decodes from those same bytes, served from memory, so each
 * byte is read from `io` once.
 */
async function readRowGroup(
  io: GuardedBuffer,
  file: ParquetFile,
  group: ParquetRowGroup,
  columns: readonly TopLevelColumn[],
  decoder: RowGroupDecoder,
): Promise<Map<string, ColumnData[]>> {
  const chunks = new Map<string, ColumnData[]>(columns.map((c) => [c.name, []]));
  if (group.rowEnd === group.rowStart) return chunks;
  const where = { row: group.rowStart + 1 };
  try {
    const { ranges } = await fetchColumnChunks(io, file, group);
    const decoded = await decoder.decode({
      metadata: file.decoding,
      byteLength: io.byteLength,
      ranges,
      rowStart: group.rowStart,
      rowEnd: group.rowEnd,
      index: group.index,
    });
    for (const chunk of decoded) chunks.get(chunk.columnName)?.push(chunk);
  } catch (err) {
    // Errors of reading the file itself stay as they are (retryable).
    if (typeof err === 'object' && err !== null && io.ioErrors.has(err)) throw err;
    // A page that inflates past what its header declares (the decoder's own error: it has no row group).
    if (err instanceof InflationLimitError && err.location.row === undefined) {
      throw new InflationLimitError(`Parquet row group ${group.index}: ${err.reason}`, where);
    }
    if (err instanceof UnsupportedFormatError) throw err;
    // hyparquet's "unsupported encoding", "file_path not supported": a valid file of what is not read.
    if (
      err instanceof Error &&
      !(err instanceof MalformedFileError) &&
      /\b(unsupported|not supported)\b/i.test(err.message)
    ) {
      throw new UnsupportedFormatError(
        `Parquet row group ${group.index} holds what Pulse Ingest does not read: ${err.message}`,
        { cause: err },
      );
    }
    rethrow(io, err, `row group ${group.index} is corrupt`, group.rowStart + 1);
  }
  return chunks;
}

/** What reading a file's row groups needs besides its bytes. */
interface ParquetFile {
  readonly metadata: FileMetaData;
  /** The metadata the decoder reads pages with (see `decoderMetadata`). */
  readonly decoding: FileMetaData;
  /** How far a row group's pages may inflate in all. */
  readonly inflation: InflationLimits;
}

/** The bytes of one row group's column chunks, and what to decode from them. */
interface DecodeRequest {
  readonly metadata: FileMetaData;
  readonly byteLength: number;
  readonly ranges: readonly FetchedRange[];
  readonly rowStart: number;
  readonly rowEnd: number;
  readonly index: number;
}

/** The decoder's answer: the columns, or its error's message and the name of its class. */
type DecodeReply = { readonly chunks: ColumnData[] } | { readonly error: string; readonly name: string };

/** Decodes a row group from bytes already fetched (hyparquet; synchronous inside, whatever the input). */
async function decodeRowGroup(req: DecodeRequest): Promise<ColumnData[]> {
  const decoded: ColumnData[] = [];
  await parquetRead({
    file: inMemoryBuffer(req.byteLength, req.ranges),
    metadata: req.metadata,
    rowStart: req.rowStart,
    rowEnd: req.rowEnd,
    compressors: PAGE_DECOMPRESSORS,
    // Bytes are turned into text or base64 by their column's type (parquet-values.ts), not all into text.
    utf8: false,
    parsers: DECODER_PARSERS,
    onChunk: (chunk) => {
      decoded.push(chunk);
    },
  });
  return decoded;
}

/** A decoder error's reply, and the error it stands for on the parent's side (its class kept). */
function errorReply(err: unknown): DecodeReply {
  if (err instanceof MalformedFileError) return { error: err.reason, name: err.name };
  return { error: err instanceof Error ? err.message : String(err), name: 'Error' };
}

function replyError(reply: { readonly error: string; readonly name: string }): Error {
  if (reply.name === 'InflationLimitError') return new InflationLimitError(reply.error);
  if (reply.name === 'UnsupportedFormatError') return new UnsupportedFormatError(reply.error);
  return new Error(reply.error);
}

/** The argument that tells the process this module starts that it is the row-group decoder. */
const DECODER_ARG = '--pulse-parquet-decoder';

type DecoderMessage = { readonly ready: true } | DecodeReply;

// The decoder's side: this same module (or the function's bundle holding it), run as a child process.
if (process.argv.includes(DECODER_ARG) && typeof process.send === 'function') {
  process.on('message', (req: DecodeRequest) => {
    decodeRowGroup(req).then(
      (chunks) => process.send?.({ chunks } satisfies DecoderMessage),
      (err: unknown) => process.send?.(errorReply(err) satisfies DecoderMessage),
    );
  });
  // Its parent gone (ended, or killed), the decoder has nothing left to do.
  process.on('disconnect', () => process.exit(0));
  process.send({ ready: true } satisfies DecoderMessage);
}

/**
 * Decodes row groups in a child process, one at a time, each held to a deadline (base + per MiB of its
 * column chunks) and the process to a heap. hyparquet trusts what the file says inside its pages: a
 * corrupt run length can keep it in a synchronous loop that no timer in the same thread can stop, and a
 * few bytes can claim billions of rows. Here the child is killed and the file fails with a
 * {@link MalformedFileError} saying which row group and why, instead of the function hanging until its
 * timeout (leaving the file in limbo) or running out of memory. (A worker thread is not enough: a large
 * allocation past a worker's heap limit aborts the whole process.)
 *
 * The child runs this module's own file: the function's bundle, or the TypeScript source under Node's
 * type stripping (tests, the offline run). Where it cannot start (an older Node running the source), row
 * groups are decoded in this process, without the guard.
 */
class RowGroupDecoder {
  readonly #limits: ParquetDecoderLimits;
  #child: Promise<ChildProcess | undefined> | undefined;

  constructor(limits: ParquetDecoderLimits) {
    this.#limits = limits;
  }

  async decode(req: DecodeRequest): Promise<ColumnData[]> {
    if (!canRunModuleFile(import.meta.url)) return decodeRowGroup(req);
    if (this.#child === undefined) this.#child = this.#start();
    let child = await this.#child;
    if (child !== undefined && !child.connected) {
      // It died while idle: a new one.
      this.#child = this.#start();
      child = await this.#child;
    }
    if (child === undefined) return decodeRowGroup(req);
    const bytes = req.ranges.reduce((n, r) => n + r.bytes.length, 0);
    const deadlineMs = (this.#limits.baseSeconds + (this.#limits.perMiBSeconds * bytes) / 2 ** 20) * 1000;
    const where = { row: req.rowStart + 1 };
    return new Promise<ColumnData[]>((resolve, reject) => {
      const done = () => {
        clearTimeout(timer);
        child.off('message', onMessage);
        child.off('exit', onExit);
      };
      const stop = (err: Error) => {
        done();
        this.#child = undefined;
        child.kill('SIGKILL');
        reject(err);
      };
      const timer = setTimeout(
        () =>
          stop(
            new MalformedFileError(
              `Parquet row group ${req.index} was not decoded within ${Math.round(deadlineMs / 1000)} s: ` +
                'its pages make the decoder loop (corrupt data)',
              where,
            ),
          ),
        deadlineMs,
      );
      const onMessage = (reply: DecoderMessage) => {
        if ('ready' in reply) return;
        done();
        if ('error' in reply) reject(replyError(reply));
        else resolve(reply.chunks);
      };
      const onExit = (code: number | null, signal: string | null) =>
        stop(
          new MalformedFileError(
            `Parquet row group ${req.index} (${req.rowEnd - req.rowStart} rows) could not be decoded within ` +
              `${this.#limits.heapMb} MB: the decoder ended (${signal ?? `code ${code}`}); ` +
              'write the file with smaller row groups',
            where,
          ),
        );
      child.on('message', onMessage);
      child.once('exit', onExit);
      child.send(req);
    });
  }

  /** Starts the decoder process; undefined when it cannot start (it exits before saying it is ready). */
  #start(): Promise<ChildProcess | undefined> {
    return new Promise((resolve) => {
      const child = fork(fileURLToPath(import.meta.url), [DECODER_ARG], {
        execArgv: [...childExecArgv(), `--max-old-space-size=${this.#limits.heapMb}`],
        serialization: 'advanced',
        stdio: ['ignore', 'ignore', 'ignore', 'ipc'],
      });
      const failed = (why: string) => {
        process.emitWarning(`Parquet decoder process unavailable, decoding in-process: ${why}`);
        child.kill('SIGKILL');
        resolve(undefined);
      };
      child.once('error', (err) => failed(err.message));
      child.once('exit', (code, signal) => failed(`exited before it was ready (${signal ?? code})`));
      child.on('message', function ready(m: DecoderMessage) {
        if (!('ready' in m)) return;
        child.off('message', ready);
        child.removeAllListeners('error');
        child.removeAllListeners('exit');
        // A send to a child that died while idle reports here; decode() then sees it is not connected.
        child.on('error', () => undefined);
        // Not kept alive by the decoder: the function may end while it idles.
        child.unref();
        child.channel?.unref();
        resolve(child);
      });
    });
  }

  async close(): Promise<void> {
    const child = await this.#child;
    this.#child = undefined;
    child?.kill('SIGKILL');
  }
}

/** The parent's Node options (loaders such as tsx's) without those that make Node run given code. */
function childExecArgv(): string[] {
  const out: string[] = [];
  const args = process.execArgv;
  for (let i = 0; i < args.length; i++) {
    const a = args[i] as string;
    if (a.startsWith('--input-type') || a.startsWith('--max-old-space-size')) continue;
    if (['-e', '--eval', '-p', '--print'].includes(a)) {
      i++;
      continue;
    }
    if (/^(--eval|--print)=/.test(a)) continue;
    out.push(a);
  }
  return out;
}

/** Where a column chunk's pages are in the file, as hyparquet computes it. */
interface ChunkSpan {
  readonly column: string;
  readonly meta: ColumnMetaData;
  readonly start: number;
  readonly end: number;
}

/** Column chunks closer than this are fetched in one read (writers put them back to back). */
const MAX_FETCH_GAP = 64 * 1024;

/** Bytes `[start, end)` of the file. */
interface FetchedRange {
  readonly start: number;
  readonly end: number;
  readonly bytes: Uint8Array;
}

/** Fetches a row group's column chunks (nearby ones in one read) and checks each one's pages. */
async function fetchColumnChunks(
  io: GuardedBuffer,
  file: ParquetFile,
  group: ParquetRowGroup,
): Promise<{ ranges: FetchedRange[] }> {
  const { metadata } = file;
  const spans = columnChunkSpans(io, metadata, group);
  const sorted = [...spans].sort((a, b) => a.start - b.start);
  const ranges: Array<{ start: number; end: number; bytes?: Uint8Array }> = [];
  for (const { start, end } of sorted) {
    const last = ranges.at(-1);
    if (last !== undefined && start - last.end <= MAX_FETCH_GAP) last.end = Math.max(last.end, end);
    else ranges.push({ start, end });
  }
  await Promise.all(
    ranges.map(async (r) => {
      r.bytes = new Uint8Array(await io.slice(r.start, r.end));
      if (r.bytes.length !== r.end - r.start) {
        throw new MalformedFileError(
          `Parquet row group ${group.index}: bytes ${r.start}-${r.end} are past the end of the file`,
          { row: group.rowStart + 1, byteOffset: r.start },
        );
      }
    }),
  );
  const inMemory = (start: number, end: number) =>
    ranges.find((r) => r.start <= start && end <= r.end) as { start: number; bytes: Uint8Array } | undefined;
  const schema = parquetSchema(metadata);
  let compressed = 0;
  let inflated = 0;
  for (const span of spans) {
    const r = inMemory(span.start, span.end);
    if (r === undefined) throw new Error('unreachable: every column chunk was fetched');
    inflated += checkColumnChunk(
      r.bytes.subarray(span.start - r.start, span.end - r.start),
      span,
      schema,
      group,
    );
    compressed += span.end - span.start;
  }
  // As for a gzip file: a row group may inflate to its ratio's worth of its compressed bytes, and to the
  // minimum whatever its size. Each page's own bound (its codec's, in checkColumnChunk) cannot hold a
  // compression bomb alone: ZSTD and Brotli pages may honestly declare thousands of times their size.
  const { maxInflationRatio, minInflatedBytesAllowed } = file.inflation;
  const bound = Math.max(maxInflationRatio * compressed, minInflatedBytesAllowed);
  if (inflated > bound) {
    throw new InflationLimitError(
      `Parquet row group ${group.index}: its pages declare ${inflated} bytes uncompressed from ${compressed} ` +
        `compressed, past ${bound} (at most ${maxInflationRatio}× or ${minInflatedBytesAllowed} bytes allowed)`,
      { row: group.rowStart + 1 },
    );
  }
  return { ranges: ranges as FetchedRange[] };
}

/** A file of `byteLength` bytes of which only `ranges` are known: what the decoder reads a row group from. */
function inMemoryBuffer(byteLength: number, ranges: readonly FetchedRange[]): AsyncBuffer {
  return {
    byteLength,
    slice(start: number, end = byteLength): ArrayBuffer {
      const r = ranges.find((x) => x.start <= start && end <= x.end);
      if (r === undefined) {
        throw new Error(`the decoder read bytes ${start}-${end}, outside the row group's column chunks`);
      }
      const from = r.bytes.byteOffset + start - r.start;
      return r.bytes.buffer.slice(from, from + end - start) as ArrayBuffer;
    },
  };
}

function columnChunkSpans(io: GuardedBuffer, metadata: FileMetaData, group: ParquetRowGroup): ChunkSpan[] {
  const rowGroup = metadata.row_groups[group.index];
  const spans: ChunkSpan[] = [];
  for (const chunk of rowGroup?.columns ?? []) {
    const meta = chunk.meta_data;
    const column = meta?.path_in_schema?.join('.') ?? '?';
    const where = { row: group.rowStart + 1 };
    if (meta === undefined) {
      throw new MalformedFileError(`Parquet row group ${group.index}: a column chunk has no metadata`, where);
    }
    // hyparquet reads a chunk from its dictionary page, or its first data page when it has none.
    const start = toCount(meta.dictionary_page_offset || meta.data_page_offset);
    const size = toCount(meta.total_compressed_size);
    if (start === undefined || size === undefined || start + size > io.byteLength) {
      throw new MalformedFileError(
        `Parquet row group ${group.index}, column "${column}": the column chunk's offset and size ` +
          `(${String(meta.dictionary_page_offset || meta.data_page_offset)}, ${String(meta.total_compressed_size)}) ` +
          `do not fit in the ${io.byteLength}-byte file`,
        where,
      );
    }
    spans.push({ column, meta, start, end: start + size });
  }
  return spans;
}

/** `value` as a number when it is a non-negative safe integer (thrift gives i32 as number, i64 as bigint). */
function toCount(value: unknown): number | undefined {
  const n = typeof value === 'bigint' ? Number(value) : value;
  return typeof n === 'number' && Number.isSafeInteger(n) && n >= 0 ? n : undefined;
}

/**
 * Walks the page headers of one column chunk and rejects what hyparquet would decode without checking:
 * sizes, counts and level lengths that are missing, not integers, negative, or more than the chunk and its
 * row group allow. hyparquet (1.31 to 1.33) trusts them, and a corrupt one can send it into a synchronous
 * loop that never returns (a missing `repetition_levels_byte_length` makes it read the same byte forever),
 * which no timer can interrupt: the Lambda would run to its timeout and leave the file in limbo. Checked
 * here, such a file fails with a {@link MalformedFileError} naming the row group, column and page. A page
 * may declare at most what its codec can inflate its bytes to (`PAGE_EXPANSION`): more is corrupt, and
 * would have the decoder allocate that much up front. Returns the bytes the pages declare uncompressed.
 */
function checkColumnChunk(
  bytes: Uint8Array,
  span: ChunkSpan,
  schema: SchemaTree,
  group: ParquetRowGroup,
): number {
  const fail = (message: string, at: number) =>
    new MalformedFileError(
      `Parquet row group ${group.index}, column "${span.column}", at byte ${span.start + at}: ${message}`,
      { row: group.rowStart + 1, byteOffset: span.start + at },
    );
  const expected = toCount(span.meta.num_values);
  if (expected === undefined) {
    throw fail(`the column chunk's value count ${String(span.meta.num_values)} is not a count`, 0);
  }
  const rows = group.rowEnd - group.rowStart;
  const repeated = isRepeated(schema, span.meta.path_in_schema);
  // hyparquet would throw this from inside its read loop, with the other columns' reads already started:
  // their failures would then reject unobserved, and an unhandled rejection ends a Lambda invocation.
  if (repeated === undefined) throw fail('the schema has no such column', 0);
  // A column outside any list holds exactly one value (or null) per row; pages can then claim no more.
  if (!repeated && expected !== rows) {
    throw fail(`the column chunk holds ${expected} values for ${rows} rows`, 0);
  }
  const codec = span.meta.codec;
  const expansion = PAGE_EXPANSION[codec as keyof typeof PAGE_EXPANSION] ?? 1;
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  let offset = 0;
  let values = 0;
  let inflated = 0;
  // Like hyparquet, a last lone byte is not taken for a page.
  while (offset < bytes.length - 1) {
    const reader = { view, offset };
    let header: PageHeader;
    try {
      header = parquetHeader(reader);
    } catch (err) {
      throw fail(
        `the page header is unreadable (${err instanceof Error ? err.message : String(err)})`,
        offset,
      );
    }
    const body = reader.offset;
    const compressed = toCount(header.compressed_page_size);
    const uncompressed = toCount(header.uncompressed_page_size);
    if (compressed === undefined || uncompressed === undefined) {
      throw fail(
        `page sizes ${String(header.compressed_page_size)} and ${String(header.uncompressed_page_size)} are not byte counts`,
        offset,
      );
    }
    if (compressed > bytes.length - body) {
      throw fail(
        `the ${compressed}-byte page runs past the end of its ${bytes.length}-byte column chunk`,
        offset,
      );
    }
    if (uncompressed > expansion * compressed + PAGE_SLACK_BYTES) {
      throw fail(`a ${compressed}-byte ${codec} page cannot hold ${uncompressed} bytes uncompressed`, offset);
    }
    inflated += uncompressed;
    const problem = checkPageHeader(header, compressed, uncompressed);
    if (problem !== undefined) throw fail(problem, offset);
    values += dataValues(header);
    if (values > expected) {
      throw fail(`the pages hold more values than the column chunk's ${expected}`, offset);
    }
    offset = body + compressed;
  }
  return inflated;
}

/** What is wrong with a page header's counts, or undefined. Sizes are already checked. */
function checkPageHeader(header: PageHeader, compressed: number, uncompressed: number): string | undefined {
  switch (header.type) {
    case 'DICTIONARY_PAGE': {
      const d = header.dictionary_page_header;
      const n = toCount(d?.num_values);
      // Every dictionary value takes at least a bit (booleans), most at least a byte.
      if (n === undefined || n > 8 * uncompressed) {
        return `the dictionary page's value count ${String(d?.num_values)} does not fit in ${uncompressed} bytes`;
      }
      return undefined;
    }
    case 'DATA_PAGE': {
      const d = header.data_page_header;
      if (toCount(d?.num_values) === undefined || d?.encoding === undefined) {
        return `the data page has no value count or no known encoding (${String(d?.num_values)}, ${String(d?.encoding)})`;
      }
      return undefined;
    }
    case 'DATA_PAGE_V2': {
      const d = header.data_page_header_v2;
      const n = toCount(d?.num_values);
      const nulls = toCount(d?.num_nulls);
      const rows = toCount(d?.num_rows);
      if (n === undefined || nulls === undefined || rows === undefined || d?.encoding === undefined) {
        return `the data page has no value, null or row count, or no known encoding`;
      }
      if (nulls > n || rows > n) return `the data page claims ${nulls} nulls and ${rows} rows in ${n} values`;
      const rep = toCount(d.repetition_levels_byte_length);
      const def = toCount(d.definition_levels_byte_length);
      if (rep === undefined || def === undefined || rep + def > Math.min(compressed, uncompressed)) {
        return (
          `the data page's level lengths (${String(d.repetition_levels_byte_length)} and ` +
          `${String(d.definition_levels_byte_length)} bytes) do not fit in the page`
        );
      }
      return undefined;
    }
    case 'INDEX_PAGE':
      return undefined;
    default:
      return `page type ${String(header.type)} is not a Parquet page type`;
  }
}

/** The values a page adds to its column (dictionary and index pages add none). */
function dataValues(header: PageHeader): number {
  if (header.type === 'DATA_PAGE') return toCount(header.data_page_header?.num_values) ?? 0;
  if (header.type === 'DATA_PAGE_V2') return toCount(header.data_page_header_v2?.num_values) ?? 0;
  return 0;
}

/**
 * Whether the column at `path` is inside a list (a REPEATED field on its way from the root); undefined
 * when the schema has no such column.
 */
function isRepeated(schema: SchemaTree, path: readonly string[]): boolean | undefined {
  let node = schema;
  let repeated = false;
  for (const name of path) {
    const child = node.children.find((c) => c.element.name === name);
    if (child === undefined) return undefined;
    if (child.element.repetition_type === 'REPEATED') repeated = true;
    node = child;
  }
  return repeated;
}

/** Reads one column's decoded chunks in row order. */
class ColumnCursor {
  readonly name: string;
  readonly #chunks: readonly ColumnData[];
  readonly #convert: ValueConverter | undefined;
  #i = 0;

  constructor(name: string, chunks: readonly ColumnData[], convert: ValueConverter | undefined) {
    this.name = name;
    this.#chunks = [...chunks].sort((a, b) => a.rowStart - b.rowStart);
    this.#convert = convert;
  }

  /** The converted value at absolute row `row` (see {@link at}); throws `ParquetValueError` to reject it. */
  value(row: number): unknown {
    const v = this.at(row);
    if (this.#convert === undefined) return v;
    try {
      return this.#convert(v);
    } catch (err) {
      // A value of a shape its type does not have is this row's problem, not a reason to retry the file.
      if (err instanceof ParquetValueError) throw err;
      throw new ParquetValueError(
        `column "${this.name}": ${err instanceof Error ? err.message : String(err)}`,
      );
    }
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
