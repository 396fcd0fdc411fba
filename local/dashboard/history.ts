/**
 * The offline dashboard's memory: one {@link Sample} per status it collected, the few numbers its charts
 * and alarms need, kept in a fixed-size ring (the oldest samples fall off).
 */

import type { PulseStatus } from '../commands/status.ts';
import type { QueueName } from '../commands/target.ts';

/** The numbers of one {@link PulseStatus}, at the time it was collected. */
export interface Sample {
  /** Epoch milliseconds of `status.at`. */
  readonly t: number;
  /** Records ingested from files: the sum of the ledger's `records`. */
  readonly records: number;
  /** Rejected records per source. */
  readonly rejected: PulseStatus['rejected'];
  /** Signals scored (distinct ids in the scores table). */
  readonly scored: number;
  readonly anomalies: number;
  /** Messages on each queue: visible + in flight. */
  readonly queues: Readonly<Record<QueueName, number>>;
  /** Messages in the three DLQs together (`status.dlq`). */
  readonly dlq: number;
  /** Ledger rows FAILED. */
  readonly filesFailed: number;
}

export function toSample(status: PulseStatus): Sample {
  const queues = Object.fromEntries(
    Object.entries(status.queues).map(([name, d]) => [name, d.visible + d.inFlight]),
  ) as Record<QueueName, number>;
  return {
    t: Date.parse(status.at),
    records: status.records,
    rejected: { ...status.rejected },
    scored: status.scored,
    anomalies: status.anomalies,
    queues,
    dlq: status.dlq,
    filesFailed: status.ledger.FAILED,
  };
}

/** A ring of the last `size` samples, oldest first. */
export class History {
  readonly #size: number;
  readonly #samples: Sample[] = [];

  constructor(size: number) {
    if (!Number.isInteger(size) || size < 1) throw new RangeError(`history size must be >= 1, got ${size}`);
    this.#size = size;
  }

  push(sample: Sample): void {
    this.#samples.push(sample);
    if (this.#samples.length > this.#size) this.#samples.splice(0, this.#samples.length - this.#size);
  }

  /** Every sample kept, oldest first (a copy). */
  all(): Sample[] {
    return [...this.#samples];
  }

  /** The samples taken after `t` (epoch ms), oldest first. */
  since(t: number): Sample[] {
    return this.#samples.filter((s) => s.t > t);
  }
}
