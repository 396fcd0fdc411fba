import type { S3Client } from '@aws-sdk/client-s3';
import { putRejects, type RejectEntry } from './quarantine.ts';
import type { SignalSender } from './sender.ts';
import { type NormaliseResult, normaliseEntry, normaliseSignal, type SignalContext } from './signal.ts';

/**
 * The one way a producer turns records into signals: normalise each with the shared schema, hand the
 * valid ones to its {@link SignalSender} and quarantine the rest with their reasons, counting both. The
 * s3-trigger (a file's rows), the db-poller (a round's rows) and the kafka-consumer (a partition's
 * records) each build one per unit of work and differ only in where their rejects go ({@link RejectsOut}).
 */

/**
 * Where a sink's rejects go: streamed into one object that checkpoints complete (`QuarantineWriter`, a
 * file's rejects), or gathered and put in one object at the end ({@link RejectsBatch}, a batch's).
 */
export interface RejectsOut {
  write(entry: RejectEntry): Promise<void>;
  /** Makes the rejects durable; the object's key, or undefined when nothing was rejected. */
  close(): Promise<string | undefined>;
  /** Gives up on what is not durable yet (the next attempt writes it again). */
  abort(): Promise<void>;
}

/** What a sink resumes from: the counts and first errors an earlier attempt recorded at a checkpoint. */
export interface SinkStart {
  readonly sent?: number;
  readonly rejected?: number;
  readonly firstErrors?: readonly string[];
}

/** A reject's details besides where it came from and why (the record, or its raw text). */
export type RejectDetails = Omit<RejectEntry, 'ref' | 'reason'>;

export class SignalSink<R extends RejectsOut = RejectsOut> {
  readonly sender: SignalSender;
  readonly rejects: R;
  /** Signals accepted by the sender (sent once it is flushed). */
  sent: number;
  /** Records quarantined through {@link reject}. */
  rejected: number;
  /** The first {@link firstErrorsKept} rejects, `row <n>: <reason>` when the reject has a row. */
  readonly firstErrors: string[];
  readonly #firstErrorsKept: number;

  constructor(sender: SignalSender, rejects: R, firstErrorsKept: number, start: SinkStart = {}) {
    this.sender = sender;
    this.rejects = rejects;
    this.#firstErrorsKept = firstErrorsKept;
    this.sent = start.sent ?? 0;
    this.rejected = start.rejected ?? 0;
    this.firstErrors = [...(start.firstErrors ?? [])];
  }

  /**
   * A record whose origin is the sender's plus `at` (a file's row: `#17`): sent as a compact entry, or
   * quarantined with its `row`. Returns a promise only when it has to be awaited (a reject, or the
   * sender's backpressure): this runs once per row of a file, so the common case costs no promise.
   */
  addAt(record: unknown, at: string, row?: number): Promise<void> | undefined {
    const { origin, source } = this.sender;
    const result = normaliseEntry(record, at, origin, source ?? '');
    if (!result.ok) {
      return this.reject({
        ref: `${origin.ref}${at}`,
        reason: result.reason,
        ...(row !== undefined ? { row } : {}),
        record,
      });
    }
    const waited = this.sender.addEntry(result.entry);
    if (waited) return waited.then(() => this.#sentOne());
    this.sent++;
    return undefined;
  }

  /**
   * A record with an origin of its own (a table row, a Kafka offset): sent as a whole signal, or
   * quarantined with `details()` (made only then). Returns what normalising it gave.
   */
  async add(record: unknown, ctx: SignalContext, details?: () => RejectDetails): Promise<NormaliseResult> {
    const result = normaliseSignal(record, ctx);
    if (!result.ok) {
      await this.reject({ ref: ctx.origin.ref, reason: result.reason, ...details?.() });
      return result;
    }
    await this.sender.add(result.signal);
    this.sent++;
    return result;
  }

  /** Quarantines one reject (a record that failed validation, or could not be read at all), counted. */
  reject(entry: RejectEntry): Promise<void> {
    this.rejected++;
    if (this.firstErrors.length < this.#firstErrorsKept) {
      this.firstErrors.push(entry.row !== undefined ? `row ${entry.row}: ${entry.reason}` : entry.reason);
    }
    return this.rejects.write(entry);
  }

  /** Sends everything buffered and waits for it (throws if a send failed). */
  flush(): Promise<void> {
    return this.sender.flush();
  }

  /** Flushes the sender, then makes the rejects durable; the rejects object's key, if any. */
  async close(): Promise<string | undefined> {
    await this.sender.flush();
    return this.rejects.close();
  }

  #sentOne(): void {
    this.sent++;
  }
}

/**
 * The rejects of one bounded batch (a poll round, a Kafka partition's records), kept in memory and put in
 * one object by {@link close}, under the key `keyOf` makes of them: a retried batch rewrites its object.
 */
export class RejectsBatch implements RejectsOut {
  readonly entries: RejectEntry[] = [];
  readonly #s3: S3Client;
  readonly #bucket: string;
  readonly #keyOf: (entries: readonly RejectEntry[]) => string;

  constructor(s3: S3Client, bucket: string, keyOf: (entries: readonly RejectEntry[]) => string) {
    this.#s3 = s3;
    this.#bucket = bucket;
    this.#keyOf = keyOf;
  }

  async write(entry: RejectEntry): Promise<void> {
    this.entries.push(entry);
  }

  async close(): Promise<string | undefined> {
    if (this.entries.length === 0) return undefined;
    const key = this.#keyOf(this.entries);
    await putRejects(this.#s3, this.#bucket, key, this.entries);
    return key;
  }

  async abort(): Promise<void> {
    this.entries.length = 0;
  }
}
