import {
  SendMessageBatchCommand,
  type SendMessageBatchRequestEntry,
  type SQSClient,
} from '@aws-sdk/client-sqs';
import { PermanentError, SendFailedError } from './errors.ts';
import { settings } from './settings.ts';
import { encodeSignal, type Origin, type Signal } from './signal.ts';

/**
 * Packs signals into as few SQS messages as their byte budget allows (`{ v: 3, origin, source, signals }`,
 * each signal an array without what the message's origin and default source already say: see
 * SignalMessageSchema),
 * sends them with SendMessageBatch (≤ 10 entries, ≤ 1 MiB per call), retries only the entries that
 * failed, with exponential backoff and jitter, and keeps up to `maxInFlight` calls in flight while the
 * next is packed. `add` returns a promise only when the signal had to wait for a call to finish: that is
 * the backpressure on the parser (and the common case costs no promise at all).
 */
export interface SenderOptions {
  /** The source most signals have (the object key, table or topic): left out of each signal that has it. */
  readonly defaultSource?: string;
  readonly maxMessageBytes?: number;
  /** @default settings.signals.maxSignalsPerMessage */
  readonly maxSignalsPerMessage?: number;
  readonly maxBatchBytes?: number;
  readonly maxEntries?: number;
  /** SendMessageBatch calls at once. @default settings.signals.maxInFlightBatches */
  readonly maxInFlight?: number;
  readonly attempts?: number;
  readonly baseDelayMs?: number;
  readonly sleep?: (ms: number) => Promise<void>;
}

export interface SenderStats {
  signals: number;
  messages: number;
  /** SendMessageBatch calls, retries included. */
  requests: number;
  /** Entries sent again after a partial failure. */
  retriedEntries: number;
}

/** Bytes kept free in each message for SQS's own accounting. */
const MESSAGE_SLACK = 512;

export class SignalSender {
  readonly stats: SenderStats = { signals: 0, messages: 0, requests: 0, retriedEntries: 0 };
  readonly #sqs: SQSClient;
  readonly #queueUrl: string;
  readonly #origin: Origin;
  readonly #source: string | undefined;
  readonly #head: string;
  /** Bytes of a message around its signals: the head and the closing `]}`. */
  readonly #overhead: number;
  readonly #maxMessageBytes: number;
  readonly #maxSignals: number;
  readonly #maxBatchBytes: number;
  readonly #maxEntries: number;
  readonly #attempts: number;
  readonly #baseDelayMs: number;
  readonly #sleep: (ms: number) => Promise<void>;

  #parts: string[] = [];
  /** UTF-8 bytes of `#parts[0..#measured)`; the rest are counted in characters only. */
  #partsBytes = 0;
  #measured = 0;
  #unmeasuredChars = 0;
  #entries: { body: string; bytes: number; count: number }[] = [];
  #entriesBytes = 0;
  readonly #maxInFlight: number;
  /** Calls not yet settled (they never reject: a failure is kept in `#failure`). */
  readonly #inflight = new Set<Promise<void>>();
  /** The first call that failed for good: thrown by the next add that waits, and by `flush`. */
  #failure: { error: unknown } | undefined;

  constructor(sqs: SQSClient, queueUrl: string, origin: Origin, opts: SenderOptions = {}) {
    this.#sqs = sqs;
    this.#queueUrl = queueUrl;
    this.#origin = { kind: origin.kind, ref: origin.ref };
    this.#source = opts.defaultSource;
    const source = this.#source !== undefined ? `"source":${JSON.stringify(this.#source)},` : '';
    this.#head = `{"v":3,"origin":${JSON.stringify(this.#origin)},${source}"signals":[`;
    this.#overhead = Buffer.byteLength(this.#head) + 2;
    this.#maxMessageBytes = (opts.maxMessageBytes ?? settings.signals.maxMessageBytes) - MESSAGE_SLACK;
    this.#maxSignals = opts.maxSignalsPerMessage ?? settings.signals.maxSignalsPerMessage;
    this.#maxBatchBytes = opts.maxBatchBytes ?? settings.signals.maxBatchBytes;
    this.#maxEntries = opts.maxEntries ?? settings.signals.maxEntriesPerBatch;
    this.#maxInFlight = opts.maxInFlight ?? settings.signals.maxInFlightBatches;
    this.#attempts = opts.attempts ?? settings.signals.sendAttempts;
    this.#baseDelayMs = opts.baseDelayMs ?? settings.signals.sendBaseDelayMs;
    this.#sleep = opts.sleep ?? ((ms) => new Promise((r) => setTimeout(r, ms)));
  }

  /**
   * Adds one signal. Returns undefined when it was buffered at once, or a promise that resolves once it
   * is (after the send it had to wait for); await it before adding the next.
   */
  add(signal: Signal): Promise<void> | undefined {
    const json = encodeSignal(signal, this.#origin, this.#source);
    const overhead = this.#overhead;
    const max = this.#maxMessageBytes;
    // A UTF-8 byte count costs a native call per signal; a character is at most 3 bytes, so the signal
    // is measured only when that bound does not settle whether it fits (see #measure).
    const room = max - overhead - this.#parts.length;
    if (json.length * 3 > max - overhead) {
      const bytes = Buffer.byteLength(json);
      if (bytes + overhead > max) {
        throw new PermanentError(`signal ${signal.id} is ${bytes} bytes, more than a message can carry`);
      }
    }
    if (this.#parts.length >= this.#maxSignals) return this.#closeMessage().then(() => this.#push(json));
    if (this.#partsBytes + (this.#unmeasuredChars + json.length) * 3 > room) {
      this.#measure();
      if (this.#partsBytes + Buffer.byteLength(json) > room) {
        return this.#closeMessage().then(() => this.#push(json));
      }
    }
    this.#push(json);
    return undefined;
  }

  #push(json: string): void {
    this.#parts.push(json);
    this.#unmeasuredChars += json.length;
    this.stats.signals++;
  }

  /** Counts the bytes of the parts not yet measured, all in one call. */
  #measure(): void {
    if (this.#unmeasuredChars === 0) return;
    this.#partsBytes += Buffer.byteLength(this.#parts.slice(this.#measured).join(''));
    this.#measured = this.#parts.length;
    this.#unmeasuredChars = 0;
  }

  /** Sends everything buffered and waits for every call to finish; throws if any failed. */
  async flush(): Promise<void> {
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
    return this.#parts.length + this.#entries.reduce((n, e) => n + e.count, 0);
  }

  async #closeMessage(): Promise<void> {
    if (this.#parts.length === 0) return;
    const body = `${this.#head}${this.#parts.join(',')}]}`;
    const bytes = Buffer.byteLength(body);
    const count = this.#parts.length;
    this.#parts = [];
    this.#partsBytes = 0;
    this.#measured = 0;
    this.#unmeasuredChars = 0;
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

  async #sendWithRetry(entries: SendMessageBatchRequestEntry[]): Promise<void> {
    let remaining = entries;
    for (let attempt = 1; ; attempt++) {
      this.stats.requests++;
      const out = await this.#sqs.send(
        new SendMessageBatchCommand({ QueueUrl: this.#queueUrl, Entries: remaining }),
      );
      const failed = out.Failed ?? [];
      if (failed.length === 0) return;
      const senderFault = failed.find((f) => f.SenderFault);
      if (senderFault) {
        throw new PermanentError(
          `SQS rejected a message: ${senderFault.Code ?? 'error'}: ${senderFault.Message ?? ''}`.trim(),
        );
      }
      const ids = new Set(failed.map((f) => f.Id));
      remaining = remaining.filter((e) => ids.has(e.Id));
      if (attempt >= this.#attempts) {
        throw new SendFailedError(
          `${remaining.length} messages still failing after ${attempt} attempts: ${failed[0]?.Code ?? 'unknown'}`,
          remaining.length,
        );
      }
      this.stats.retriedEntries += remaining.length;
      const cap = this.#baseDelayMs * 2 ** (attempt - 1);
      await this.#sleep(cap / 2 + Math.random() * (cap / 2));
    }
  }
}
