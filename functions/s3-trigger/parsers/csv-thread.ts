import { fileURLToPath } from 'node:url';
import { isMainThread, parentPort, Worker, workerData } from 'node:worker_threads';
import type { ParseThreadPolicy } from '#shared/config.ts';
import { type ErrorLocation, MalformedFileError, TransientError } from '#shared/errors.ts';
import { asBuffer, pieces } from './bytes.ts';
import { type CsvFieldBatch, type CsvHeader, csvFieldBatches, csvHeader } from './csv-fields.ts';
import { canRunModuleFile } from './runnable.ts';
import type { ParserOptions } from './types.ts';

/**
 * csv-parse on a thread of its own. Parsing is about half of what ingesting a CSV file costs; the other
 * half (validation, packing, sending) then runs on the main thread at the same time, on a second CPU.
 *
 * The thread runs {@link csvFieldBatches} itself (UTF-8 check, header, csv-parse), so its records and
 * errors are the ones the same bytes give in the main thread. Bytes go to it in pieces of at most
 * 64 KiB, at most {@link AHEAD} pieces ahead of what it has parsed (memory stays flat whatever the file);
 * the fields of each piece's records come back as one string, their lengths and counts, and the
 * records' end offsets (a structured clone per field would cost more than the parse saves).
 *
 * The thread runs this module's own file: the function's bundle, or the TypeScript source under Node's
 * type stripping (tests, the offline run, the bench). It is started on first use, kept for later files
 * (it does not keep the process alive), and serves any number of files at once. If it dies, the files
 * it was parsing fail with a {@link TransientError} (their events are retried) and later files are
 * parsed in the main thread.
 */

/** Pieces sent to the thread and not yet parsed, per file. */
const AHEAD = 8;
const WORKER_MARK = 'pulseCsvParseThread';

/**
 * The s3-trigger's decision, made once in its handler from its configuration (`parseThread` of
 * shared/config.ts): whether a CSV object of `size` bytes is parsed on a thread of its own. `auto` when it
 * is large enough to be worth the hand-off and the function has two CPUs (on Lambda from 3,538 MB: Lambda
 * gives one vCPU's worth of CPU per 1,769 MB, whatever the number of CPUs the function sees). Never once
 * the thread died, or where this module's file cannot run on a thread.
 */
export function parseThreadDecider(policy: ParseThreadPolicy): (size: number | undefined) => boolean {
  return (size) => {
    if (policy.mode === 'off' || broken || !canRunModuleFile(import.meta.url)) return false;
    if (policy.mode === 'on') return true;
    return size !== undefined && size >= policy.minBytes && policy.cpus >= 2;
  };
}

/** {@link csvFieldBatches}, parsed on the thread. */
export async function* csvFieldBatchesInThread(
  source: AsyncIterable<Buffer>,
  opts: Pick<ParserOptions, 'maxRecordBytes' | 'expectColumns' | 'delimiter'>,
): AsyncGenerator<CsvFieldBatch> {
  if (!broken) current ??= new ParseThread();
  const thread = current;
  if (thread === undefined) {
    yield* csvFieldBatches(source, opts);
    return;
  }
  const session = thread.open({
    maxRecordBytes: opts.maxRecordBytes,
    ...(opts.expectColumns ? { expectColumns: [...opts.expectColumns] } : {}),
    ...(opts.delimiter !== undefined ? { delimiter: opts.delimiter } : {}),
  });
  const input = source[Symbol.asyncIterator]();
  let ended = false;
  try {
    let unparsed = 0;
    let header: CsvHeader | undefined;
    for (;;) {
      while (!ended && unparsed < AHEAD) {
        const next = await input.next();
        if (next.done) {
          session.send({ s: session.id, end: true });
          ended = true;
        } else {
          for (const piece of pieces(asBuffer(next.value))) {
            const copy = new Uint8Array(piece);
            session.send({ s: session.id, chunk: copy }, [copy.buffer]);
            unparsed++;
          }
        }
      }
      const reply = await session.take();
      if (reply.parsed) unparsed--;
      if (reply.batch) {
        if (reply.batch.names) header = csvHeader(reply.batch.names);
        yield decode(reply.batch, header as CsvHeader);
      }
      if (reply.error) throw toError(reply.error);
      if (reply.done) return;
    }
  } finally {
    session.close();
    // Left part way (a hand-over, an error): the source is closed, as `for await` closes it (an S3 body's
    // socket is released). What ended the read matters more than a failure to close.
    if (!ended) await Promise.resolve(input.return?.()).catch(() => undefined);
  }
}

/** The options of one file's parse, as sent to the thread. */
type ThreadParseOptions = Pick<ParserOptions, 'maxRecordBytes' | 'expectColumns' | 'delimiter'>;

/** A batch's fields, as sent between the threads. */
interface WireBatch {
  /** The header's names, with the first batch of a file. */
  readonly names?: string[];
  readonly text: string;
  readonly lengths: Int32Array;
  /** Fields of each record. */
  readonly counts: Int32Array;
  readonly ends: Float64Array;
}

interface WireError {
  readonly malformed: boolean;
  readonly name: string;
  readonly reason: string;
  readonly location: ErrorLocation;
}

type ToThread =
  | { readonly s: number; readonly open: ThreadParseOptions }
  | { readonly s: number; readonly chunk: Uint8Array }
  | { readonly s: number; readonly end: true }
  | { readonly s: number; readonly close: true };

interface FromThread {
  readonly s: number;
  /** A piece (or the end) was parsed. */
  readonly parsed?: boolean;
  readonly batch?: WireBatch;
  readonly error?: WireError;
  /** The file ended: nothing follows. */
  readonly done?: boolean;
}

function encode(batch: CsvFieldBatch, withNames: boolean): { batch: WireBatch; transfer: ArrayBuffer[] } {
  const { records } = batch;
  let fields = 0;
  for (const r of records) fields += r.length;
  const parts: string[] = new Array(fields);
  const lengths = new Int32Array(fields);
  const counts = new Int32Array(records.length);
  let k = 0;
  for (let i = 0; i < records.length; i++) {
    const r = records[i] as string[];
    counts[i] = r.length;
    for (const f of r) {
      parts[k] = f;
      lengths[k++] = f.length;
    }
  }
  const ends = Float64Array.from(batch.ends);
  return {
    batch: {
      ...(withNames ? { names: [...batch.header.names] } : {}),
      text: parts.join(''),
      lengths,
      counts,
      ends,
    },
    transfer: [lengths.buffer, counts.buffer, ends.buffer],
  };
}

function decode(wire: WireBatch, header: CsvHeader): CsvFieldBatch {
  const { text, lengths, counts } = wire;
  const records: string[][] = new Array(counts.length);
  let at = 0;
  let k = 0;
  for (let i = 0; i < counts.length; i++) {
    const n = counts[i] as number;
    const fields: string[] = new Array(n);
    for (let j = 0; j < n; j++) {
      const end = at + (lengths[k++] as number);
      fields[j] = text.slice(at, end);
      at = end;
    }
    records[i] = fields;
  }
  return { header, records, ends: wire.ends };
}

function toWireError(err: unknown): WireError {
  if (err instanceof MalformedFileError) {
    return { malformed: true, name: err.name, reason: err.reason, location: err.location };
  }
  const e = err instanceof Error ? err : new Error(String(err));
  return { malformed: false, name: e.name, reason: e.message, location: {} };
}

function toError(wire: WireError): Error {
  if (wire.malformed) return new MalformedFileError(wire.reason, wire.location);
  const err = new Error(wire.reason);
  err.name = wire.name;
  return err;
}

/**
 * Ends the thread as a crash would: the files it is parsing fail with a {@link TransientError}, and the
 * files after them are parsed in the calling thread. For tests.
 */
export async function terminateParseThread(): Promise<void> {
  await current?.terminate();
}

/** The thread in use (started on first use); undefined once it died. */
let current: ParseThread | undefined;
/** The thread died: files are parsed in the main thread from now on. */
let broken = false;

/**
 * Messages waiting for their reader, in order: `take` resolves with the next one, or rejects once `fail`
 * was called and none is left. (Both sides of the thread read their messages this way.)
 */
class Mailbox<T> {
  readonly #items: T[] = [];
  #waiter: { resolve: (item: T) => void; reject: (e: Error) => void } | undefined;
  #failure: Error | undefined;

  put(item: T): void {
    const waiter = this.#waiter;
    this.#waiter = undefined;
    if (waiter) waiter.resolve(item);
    else this.#items.push(item);
  }

  fail(err: Error): void {
    this.#failure = err;
    const waiter = this.#waiter;
    this.#waiter = undefined;
    waiter?.reject(err);
  }

  take(): Promise<T> {
    if (this.#items.length > 0) return Promise.resolve(this.#items.shift() as T);
    if (this.#failure) return Promise.reject(this.#failure);
    return new Promise((resolve, reject) => {
      this.#waiter = { resolve, reject };
    });
  }
}

/** One file being parsed on the thread, seen from the calling thread. */
class Session extends Mailbox<FromThread> {
  readonly id: number;
  readonly #thread: ParseThread;

  constructor(id: number, thread: ParseThread) {
    super();
    this.id = id;
    this.#thread = thread;
  }

  send(message: ToThread, transfer?: ArrayBuffer[]): void {
    this.#thread.post(message, transfer);
  }

  close(): void {
    this.#thread.close(this);
  }
}

class ParseThread {
  readonly #worker: Worker;
  readonly #sessions = new Map<number, Session>();
  #nextId = 1;

  constructor() {
    this.#worker = new Worker(fileURLToPath(import.meta.url), { workerData: { [WORKER_MARK]: true } });
    this.#worker.on('message', (reply: FromThread) => this.#sessions.get(reply.s)?.put(reply));
    this.#worker.on('error', (err) => this.#died(err.message));
    this.#worker.on('exit', (code) => this.#died(`it exited (code ${code})`));
    // The thread keeps the process alive only while it parses: the process (a test, the offline run) may
    // end while it idles. (After the listeners: a message listener refs the worker again.)
    this.#worker.unref();
  }

  open(opts: ThreadParseOptions): Session {
    const session = new Session(this.#nextId++, this);
    if (this.#sessions.size === 0) this.#worker.ref();
    this.#sessions.set(session.id, session);
    this.post({ s: session.id, open: opts });
    return session;
  }

  post(message: ToThread, transfer?: ArrayBuffer[]): void {
    this.#worker.postMessage(message, transfer);
  }

  close(session: Session): void {
    if (!this.#sessions.delete(session.id) || broken) return;
    this.post({ s: session.id, close: true });
    if (this.#sessions.size === 0) this.#worker.unref();
  }

  async terminate(): Promise<void> {
    await this.#worker.terminate();
  }

  #died(why: string): void {
    if (current === this) current = undefined;
    broken = true;
    const err = new TransientError(`the CSV parser thread failed (${why}); the file is parsed again`);
    for (const session of this.#sessions.values()) session.fail(err);
    this.#sessions.clear();
  }
}

/** The thread's side: one parse per file (session), fed piece by piece. */
function serve(port: NonNullable<typeof parentPort>): void {
  const feeds = new Map<number, Feed>();
  port.on('message', (m: ToThread) => {
    if ('open' in m) {
      const feed = new Feed();
      feeds.set(m.s, feed);
      void run(m.s, feed, m.open).finally(() => feeds.delete(m.s));
    } else if ('chunk' in m) {
      feeds.get(m.s)?.push(m.chunk);
    } else if ('end' in m) {
      feeds.get(m.s)?.push(null);
    } else {
      feeds.get(m.s)?.abandon();
      feeds.delete(m.s);
    }
  });

  async function run(s: number, feed: Feed, opts: ThreadParseOptions): Promise<void> {
    let pending: CsvFieldBatch | undefined;
    let namesSent = false;
    const reply = (extra: Omit<FromThread, 's' | 'batch'>) => {
      if (pending === undefined) {
        port.postMessage({ s, ...extra } satisfies FromThread);
        return;
      }
      const { batch, transfer } = encode(pending, !namesSent);
      namesSent = true;
      pending = undefined;
      port.postMessage({ s, batch, ...extra } satisfies FromThread, transfer);
    };
    // Each piece taken after the first says that the one before it is parsed (and its records are out).
    const bytes = feed.bytes(() => reply({ parsed: true }));
    try {
      for await (const batch of csvFieldBatches(bytes, opts)) {
        if (pending !== undefined) reply({});
        pending = batch;
      }
      if (!feed.abandoned) reply({ parsed: true, done: true });
    } catch (err) {
      if (!feed.abandoned) reply({ parsed: true, error: toWireError(err) });
    }
  }
}

/** The pieces of one file, as they arrive; `null` ends them. */
class Feed {
  readonly #pieces = new Mailbox<Uint8Array | null>();
  abandoned = false;

  push(piece: Uint8Array | null): void {
    this.#pieces.put(piece);
  }

  abandon(): void {
    this.abandoned = true;
    this.push(null);
  }

  async *bytes(onTaken: () => void): AsyncGenerator<Buffer> {
    for (let first = true; ; first = false) {
      if (!first) onTaken();
      const piece = await this.#pieces.take();
      if (piece === null || this.abandoned) return;
      yield asBuffer(piece);
    }
  }
}

if (!isMainThread && parentPort && (workerData as Record<string, unknown> | null)?.[WORKER_MARK] === true) {
  serve(parentPort);
}
