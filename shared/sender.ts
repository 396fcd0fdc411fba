import type { SQSClient } from '@aws-sdk/client-sqs';
import { type BatchEntry, sendMessageBatch } from './batch-send.ts';
import { ConfigError, PermanentError } from './errors.ts';
import type { RetryPolicy } from './retry.ts';
import { settings } from './settings.ts';
import { deflateMessage, type Origin, type Signal, signalEntry } from './signal.ts';
import { sqsSafeJson } from './sqs-text.ts';

/**
 * Packs signals into as few SQS messages as their byte budget allows (`{ v: 3, origin, source, signals }`,
 * each signal an array without what the message's origin and default source already say: see
 * SignalMessageSchema; then deflated into a version 4 message when `deflateLevel` is above 0 and that
 * makes it smaller),
 * sends them with SendMessageBatch (≤ 10 entries, ≤ 1 MiB per call), retries only the entries that
 * failed, with exponential backoff and jitter, and keeps up to `maxInFlight` calls in flight while the
 * next is packed. `add` returns a promise only when the signal had to wait for a call to finish: that is
 * the backpressure on the parser (and the common case costs no promise at all).
 */
/** How a sender packs and sends, besides the queue's message size. */
export interface SenderTuning {
  readonly maxSignalsPerMessage: number;
  /** 0: messages go as plain JSON. */
  readonly deflateLevel: number;
  readonly maxBatchBytes: number;
  readonly maxEntries: number;
  /** SendMessageBatch calls at once. */
  readonly maxInFlight: number;
  readonly attempts: number;
  readonly baseDelayMs: number;
}

export interface SenderOptions extends Partial<SenderTuning> {
  /** The source most signals have (the object key, table or topic): left out of each signal that has it. */
  readonly defaultSource?: string;
  /** The signals queue's message size (a deployed value: the producer's config resolves it). */
  readonly maxMessageBytes: number;
  readonly sleep?: (ms: number) => Promise<void>;
}

/**
 * How a sender packs and sends unless told otherwise: `settings.signals`, merged once with the caller's
 * options in the constructor (no value of these is deployed; tests shorten the delays).
 */
export const SENDER_DEFAULTS: SenderTuning = {
  maxSignalsPerMessage: settings.signals.maxSignalsPerMessage,
  deflateLevel: settings.signals.deflateLevel,
  maxBatchBytes: settings.signals.maxBatchBytes,
  maxEntries: settings.signals.maxEntriesPerBatch,
  maxInFlight: settings.signals.maxInFlightBatches,
  attempts: settings.signals.sendAttempts,
  baseDelayMs: settings.signals.sendBaseDelayMs,
};

export interface SenderStats {
  signals: number;
  messages: number;
  /** SendMessageBatch calls, retries included. */
  requests: number;
  /** Message bodies' bytes, as sent (once each; deflated when that made them smaller). */
  bytes: number;
  /** Entries sent again after a partial failure. */
  retriedEntries: number;
}

/** Bytes kept free in each message for SQS's own accounting. */
const MESSAGE_SLACK = 512;
/**
 * The part of a message's byte budget filled in bulk: signals wait unserialised and are serialised together,
 * in one `JSON.stringify`, once the size they are expected to take reaches it. Past it each signal is
 * serialised and measured on its own, so that the message is filled exactly.
 */
const BULK_FILL = 0.9;
/** Signals of a sender measured one by one before their typical size is known. */
const LEARNING_SIGNALS = 16;

export class SignalSender {
  readonly stats: SenderStats = { signals: 0, messages: 0, requests: 0, bytes: 0, retriedEntries: 0 };
  readonly #sqs: SQSClient;
  readonly #queueUrl: string;
  readonly #origin: Origin;
  readonly #source: string | undefined;
  readonly #head: string;
  /** Bytes of a message around its signals: the head and the closing `]}`. */
  readonly #overhead: number;
  /** Bytes a message's signals (and the commas between them) may take. */
  readonly #room: number;
  readonly #bulkRoom: number;
  readonly #maxSignals: number;
  readonly #deflateLevel: number;
  readonly #maxBatchBytes: number;
  readonly #maxEntries: number;
  /** How a batch's failed entries are sent again (shared/batch-send.ts). */
  readonly #retry: RetryPolicy;

  // The open message: serialised chunks (JSON texts of one or more entries, without brackets) and then
  // entries not yet serialised.
  #chunks: string[] = [];
  /** Exact UTF-8 bytes of `#chunks` joined by commas. */
  #bytes = 0;
  #unserialised: unknown[] = [];
  /** Signals in the open message, serialised or not. */
  #count = 0;
  /** Bytes a signal has taken (its comma included), as last measured; undefined until measured. */
  #bytesPerSignal: number | undefined;
  #entries: { body: string; bytes: number; count: number }[] = [];
  #entriesBytes = 0;
  readonly #maxInFlight: number;
  /** Calls not yet settled (they never reject: a failure is kept in `#failure`). */
  readonly #inflight = new Set<Promise<void>>();
  /** The first call that failed for good: thrown by the next add that waits, and by `flush`. */
  #failure: { error: unknown } | undefined;

  constructor(sqs: SQSClient, queueUrl: string, origin: Origin, options: SenderOptions) {
    const opts = { ...SENDER_DEFAULTS, ...options };
    this.#sqs = sqs;
    this.#queueUrl = queueUrl;
    this.#origin = { kind: origin.kind, ref: origin.ref };
    this.#source = opts.defaultSource;
    const source = this.#source !== undefined ? `"source":${JSON.stringify(this.#source)},` : '';
    this.#head = sqsSafeJson(`{"v":3,"origin":${JSON.stringify(this.#origin)},${source}"signals":[`);
    this.#overhead = Buffer.byteLength(this.#head) + 2;
    this.#room = opts.maxMessageBytes - MESSAGE_SLACK - this.#overhead;
    this.#bulkRoom = this.#room * BULK_FILL;
    this.#maxSignals = opts.maxSignalsPerMessage;
    this.#deflateLevel = opts.deflateLevel;
    if (!Number.isInteger(this.#deflateLevel) || this.#deflateLevel < 0 || this.#deflateLevel > 9) {
      throw new ConfigError(
        `signals deflateLevel must be a whole number from 0 (off) to 9, not ${this.#deflateLevel}`,
      );
    }
    this.#maxBatchBytes = opts.maxBatchBytes;
    this.#maxEntries = opts.maxEntries;
    this.#maxInFlight = opts.maxInFlight;
    this.#retry = {
      attempts: opts.attempts,
      baseMs: opts.baseDelayMs,
      jitter: 'equal',
      ...(opts.sleep ? { sleep: opts.sleep } : {}),
    };
  }

  /** The origin of this sender's messages: a signal whose ref extends it travels as a compact entry. */
  get origin(): Origin {
    return this.#origin;
  }

  /** The source left out of each signal that has it (the object key, table or topic). */
  get source(): string | undefined {
    return this.#source;
  }

  /**
   * Adds one signal. Returns undefined when it was buffered at once, or a promise that resolves once it
   * is (after the send it had to wait for); await it before adding the next.
   */
  add(signal: Signal): Promise<void> | undefined {
    return this.addEntry(signalEntry(signal, this.#origin, this.#source));
  }

  /**
   * {@link add} for a signal already made into its entry under this sender's origin and default source
   * (`signalEntry`, `normaliseEntry`).
   */
  addEntry(entry: unknown): Promise<void> | undefined {
    const perSignal = this.#bytesPerSignal;
    if (
      perSignal !== undefined &&
      this.#count < this.#maxSignals &&
      this.#bytes + (this.#unserialised.length + 1) * perSignal <= this.#bulkRoom
    ) {
      this.#unserialised.push(entry);
      this.#count++;
      this.stats.signals++;
      return undefined;
    }
    // Counted once accepted: a signal too large for any message throws here.
    const added = this.#addMeasured(entry);
    this.stats.signals++;
    return added;
  }

  /** Serialises the waiting entries, then adds `entry` measured on its own (see {@link BULK_FILL}). */
  #addMeasured(entry: unknown): Promise<void> | undefined {
    const waited = this.#serialiseWaiting();
    if (waited) return waited.then(() => this.#addMeasured(entry));
    const json = sqsSafeJson(JSON.stringify(entry));
    const bytes = Buffer.byteLength(json);
    if (bytes > this.#room) {
      throw new PermanentError(
        `signal ${this.#idOf(entry)} is ${bytes} bytes, more than a message can carry`,
      );
    }
    if (this.#count >= this.#maxSignals || this.#bytes + 1 + bytes > this.#room) {
      return this.#closeMessage().then(() => this.#append(json, bytes, 1));
    }
    this.#append(json, bytes, 1);
    return undefined;
  }

  #append(json: string, bytes: number, count: number): void {
    this.#bytes += this.#chunks.length > 0 ? bytes + 1 : bytes;
    this.#chunks.push(json);
    this.#count += count;
    if (this.#bytesPerSignal === undefined && this.#count >= LEARNING_SIGNALS) {
      this.#bytesPerSignal = (this.#bytes + 1) / this.#count;
    }
  }

  /**
   * Serialises the entries waiting in the open message in one go. When they take more room than was
   * left (they were larger than the signals measured before), they are added again one by one.
   */
  #serialiseWaiting(): Promise<void> | undefined {
    const waiting = this.#unserialised;
    if (waiting.length === 0) return undefined;
    this.#unserialised = [];
    this.#count -= waiting.length;
    const text = sqsSafeJson(JSON.stringify(waiting));
    const bytes = Buffer.byteLength(text) - 2;
    this.#bytesPerSignal = (bytes + 1) / waiting.length;
    if (this.#bytes + 1 + bytes <= this.#room) {
      this.#append(text.slice(1, -1), bytes, waiting.length);
      return undefined;
    }
    return this.#addEachMeasured(waiting, 0);
  }

  #addEachMeasured(entries: readonly unknown[], from: number): Promise<void> | undefined {
    for (let i = from; i < entries.length; i++) {
      const waited = this.#addMeasured(entries[i]);
      if (waited) return waited.then(() => this.#addEachMeasured(entries, i + 1));
    }
    return undefined;
  }

  /** A signal's id, from its entry (for an error message). */
  #idOf(entry: unknown): string {
    if (!Array.isArray(entry)) return String((entry as { id?: unknown }).id);
    return String(entry[6] ?? `${this.#origin.ref}${entry[0]}`);
  }

  /** Sends everything buffered and waits for every call to finish; throws if any failed. */
  async flush(): Promise<void> {
    await this.#serialiseWaiting();
    await this.#closeMessage();
    if (this.#entries.length) await this.#dispatch();
    while (this.#inflight.size > 0) await Promise.all(this.#inflight);
    this.#throwFailure();
  }

  #throwFailure(): void {
    if (this.#failure) throw this.#failure.error;
  }

  /** Signals accepted by `add` and not yet confirmed sent. */
  get pending(): number {
    return this.#count + this.#entries.reduce((n, e) => n + e.count, 0);
  }

  /** Closes the open message (its entries serialised) into an entry of the next SendMessageBatch call. */
  async #closeMessage(): Promise<void> {
    if (this.#count === 0) return;
    let body = `${this.#head}${this.#chunks.join(',')}]}`;
    let bytes = this.#overhead + this.#bytes;
    const count = this.#count;
    this.#chunks = [];
    this.#bytes = 0;
    this.#count = 0;
    if (this.#deflateLevel > 0) {
      const deflated = deflateMessage(body, this.#origin, count, this.#deflateLevel);
      // The origin's ref may hold any character: measured in UTF-8.
      const deflatedBytes = Buffer.byteLength(deflated);
      if (deflatedBytes < bytes) {
        body = deflated;
        bytes = deflatedBytes;
      }
    }
    this.stats.bytes += bytes;
    if (this.#entries.length >= this.#maxEntries || this.#entriesBytes + bytes > this.#maxBatchBytes) {
      await this.#dispatch();
    }
    this.#entries.push({ body, bytes, count });
    this.#entriesBytes += bytes;
    this.stats.messages++;
  }

  async #dispatch(): Promise<void> {
    const entries = this.#entries;
    this.#entries = [];
    this.#entriesBytes = 0;
    // Up to `maxInFlight` calls at once, so that the time SQS takes to answer one is spent filling the
    // next: wait for a slot (and surface any failure) first.
    while (this.#inflight.size >= this.#maxInFlight) await Promise.race(this.#inflight);
    this.#throwFailure();
    const call: Promise<void> = this.#sendWithRetry(
      entries.map((e, i) => ({ Id: String(i), MessageBody: e.body })),
    )
      .catch((error: unknown) => {
        this.#failure ??= { error };
      })
      .finally(() => this.#inflight.delete(call));
    this.#inflight.add(call);
  }

  #sendWithRetry(entries: BatchEntry[]): Promise<void> {
    return sendMessageBatch(this.#sqs, this.#queueUrl, entries, this.#retry, this.stats);
  }
}
