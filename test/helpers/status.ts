/**
 * Factories for the offline status the dashboard shows ({@link PulseStatus}), for unit tests: every
 * field plausible and empty, pass what the test is about.
 */
import type { FileRow, PulseStatus, QueueDepth } from '../../local/commands/status.ts';
import type { QueueName } from '../../local/commands/target.ts';

export type PulseStatusOverrides = Partial<Omit<PulseStatus, 'queues'>> & {
  /** Depths of the queues named; the others are empty. */
  readonly queues?: Partial<Record<QueueName, Partial<QueueDepth>>>;
};

/** A status at `at` (default 2024-06-01T12:00:00Z) of a run with nothing in it yet. */
export function pulseStatusFactory(overrides: PulseStatusOverrides = {}): PulseStatus {
  const { queues, ...rest } = overrides;
  const depth = (q: QueueName): QueueDepth => ({ visible: 0, inFlight: 0, ...queues?.[q] });
  const files = rest.files ?? [];
  const ledger = { DISCOVERED: 0, PROCESSING: 0, SPLIT: 0, SUCCESS: 0, FAILED: 0, SKIPPED: 0 };
  for (const f of files) ledger[f.status]++;
  const all: Record<QueueName, QueueDepth> = {
    fileEvents: depth('fileEvents'),
    fileEventsDlq: depth('fileEventsDlq'),
    signals: depth('signals'),
    signalsDlq: depth('signalsDlq'),
    kafkaFailures: depth('kafkaFailures'),
  };
  const awaitingReplay = rest.kafkaFailures?.awaitingReplay ?? 0;
  const dlq = (['fileEventsDlq', 'signalsDlq'] as const).reduce(
    (n, q) => n + all[q].visible + all[q].inFlight,
    awaitingReplay,
  );
  return {
    files,
    filesTotal: files.length,
    records: files.reduce((n, f) => n + f.records, 0),
    scored: 0,
    seriesSamples: 0,
    series: 0,
    anomalies: 0,
    recentAnomalies: [],
    rejected: { s3: files.reduce((n, f) => n + f.rejected, 0), db: 0, kafka: 0, scorer: 0 },
    dlq,
    kafkaFailures: { awaitingReplay: 0, replayed: 0 },
    queues: all,
    ledger,
    cost: [],
    endpoints: {
      s3: 'http://127.0.0.1:5000',
      sqs: 'http://127.0.0.1:5000',
      dynamodb: 'http://127.0.0.1:5000',
    },
    at: '2024-06-01T12:00:00.000Z',
    ...rest,
  };
}

/** One ledger row, SUCCESS with 10 records unless told otherwise. */
export function fileRowFactory(overrides: Partial<FileRow> = {}): FileRow {
  return {
    key: 'incoming/a.csv',
    etag: 'e7a9c1d2',
    status: 'SUCCESS',
    records: 10,
    rejected: 0,
    error: null,
    attempts: 1,
    updatedAt: '2024-06-01T11:59:00.000Z',
    ...overrides,
  };
}
