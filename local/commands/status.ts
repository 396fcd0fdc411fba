/**
 * The pipeline's state as `pulse status` (and the offline dashboard) show it: the ledger, the scored
 * and rejected counts, the queues and their DLQs. Works on the offline run and on a deployed stack
 * alike (see target.ts); it reads, it never changes anything.
 */

import { GetObjectCommand, ListObjectsV2Command } from '@aws-sdk/client-s3';
import { GetQueueAttributesCommand } from '@aws-sdk/client-sqs';
import { QueryCommand } from '@aws-sdk/lib-dynamodb';
import type { FileStatus, LedgerItem } from '#shared/ledger.ts';
import { FILE_STATUSES, type LedgerCounts, readLedgerCounts } from '#shared/ledger-counters.ts';
import { settings } from '#shared/settings.ts';
import { listKafkaFailures } from './kafka-replay.ts';
import { type Anomaly, recentAnomalies, scoreTotals } from './scores.ts';
import { type SourceCost, s3Cost } from './status-cost.ts';
import type { Endpoints, QueueName, Target } from './target.ts';

export interface FileRow {
  readonly key: string;
  readonly etag: string;
  readonly status: FileStatus;
  readonly records: number;
  readonly rejected: number;
  /** `ErrorType: message` of a FAILED file, else null. */
  readonly error: string | null;
  readonly attempts: number;
  readonly updatedAt: string;
  readonly durationMs?: number;
  readonly firstErrors?: readonly string[];
}

export interface QueueDepth {
  readonly visible: number;
  readonly inFlight: number;
}

export type { Anomaly };

export interface PulseStatus {
  /**
   * The most recently updated ledger entries (at most {@link RECENT_FILES}), newest first: from the ledger's
   * status index, a bounded Query per status (the whole ledger is `pulse ledger`'s, page by page).
   */
  readonly files: readonly FileRow[];
  /** File versions the ledger holds (its counters: docs/counters.md). */
  readonly filesTotal: number;
  /** Records read from files, summed by the ledger's counters. */
  readonly records: number;
  /**
   * Signals scored: positions applied in blocks plus id items, as counted by the transactions that applied
   * them (the running totals; docs/scoring.md).
   */
  readonly scored: number;
  /** Samples the series gained in those transactions: equals `scored` when nothing was counted twice. */
  readonly seriesSamples: number;
  readonly series: number;
  readonly anomalies: number;
  readonly recentAnomalies: readonly Anomaly[];
  /** Rejected records per source: s3 from the ledger's counters, the others from their quarantine objects. */
  readonly rejected: {
    readonly s3: number;
    readonly db: number;
    readonly kafka: number;
    readonly scorer: number;
  };
  /**
   * What could not be handled at all: messages in the two DLQs (file events, signals) and the Kafka
   * batches in the failures bucket not replayed yet. (The notices queue is not counted: S3 puts a test
   * event there too.)
   */
  readonly dlq: number;
  /** Objects of the Kafka failures bucket (batches the event source discarded): not replayed yet, and replayed. */
  readonly kafkaFailures: { readonly awaitingReplay: number; readonly replayed: number };
  readonly queues: Readonly<Record<QueueName, QueueDepth>>;
  readonly ledger: Readonly<Record<FileStatus, number>>;
  readonly endpoints: Endpoints;
  readonly at: string;
  /**
   * The live cost meter per source, where the pipeline measures it (status-cost.ts): billed units and
   * dollars per million records, from the ledger's counters. Only `s3` is metered so far.
   */
  readonly cost: readonly SourceCost[];
}

const QUEUES: readonly QueueName[] = [
  'fileEvents',
  'fileEventsDlq',
  'signals',
  'signalsDlq',
  'kafkaFailures',
];
const DLQS: readonly QueueName[] = ['fileEventsDlq', 'signalsDlq'];
const RECENT_ANOMALIES = 20;
/** Ledger entries a status shows (the most recently updated). */
export const RECENT_FILES = 30;

/**
 * Collects {@link PulseStatus} snapshots. Keeps the line counts of quarantine objects it has read
 * (by key and ETag), so that polling it (the dashboard does) reads each object once.
 */
export class StatusCollector {
  readonly #target: Target;
  readonly #rejectLines = new Map<string, number>();

  constructor(target: Target) {
    this.#target = target;
  }

  async collect(): Promise<PulseStatus> {
    const [counts, recent, scores, queues, rejected, kafkaFailures] = await Promise.all([
      this.#counts(),
      this.#recentFiles(),
      this.#scores(),
      this.#queues(),
      this.#rejects(),
      listKafkaFailures(this.#target),
    ]);
    const awaitingReplay = kafkaFailures.filter((f) => f.status !== 'replayed').length;
    const files = recent
      .map(toFileRow)
      .sort((a, b) => b.updatedAt.localeCompare(a.updatedAt))
      .slice(0, RECENT_FILES);
    return {
      files,
      filesTotal: FILE_STATUSES.reduce((n, s) => n + counts.files[s], 0),
      records: counts.records,
      scored: scores.scored,
      seriesSamples: scores.samples,
      series: scores.series,
      anomalies: scores.anomalies,
      recentAnomalies: scores.recent,
      rejected: { s3: counts.rejected, ...rejected },
      dlq: DLQS.reduce((n, q) => n + queues[q].visible + queues[q].inFlight, awaitingReplay),
      kafkaFailures: { awaitingReplay, replayed: kafkaFailures.length - awaitingReplay },
      queues,
      ledger: counts.files,
      endpoints: this.#target.endpoints,
      at: new Date().toISOString(),
      cost: s3Cost(counts),
    };
  }

  /** Files per status and their sums: the ledger's counter items (one BatchGetItem). */
  #counts(): Promise<LedgerCounts> {
    return readLedgerCounts(
      this.#target.clients.doc,
      this.#target.ledgerTable,
      settings.ledgerCounters.shards,
    );
  }

  /**
   * The {@link RECENT_FILES} most recently updated files of each status: one Query per status on the status
   * index, newest first, `Limit` bounding what is read (parts and other items filtered out of those).
   */
  async #recentFiles(): Promise<LedgerItem[]> {
    const pages = await Promise.all(
      FILE_STATUSES.map(async (status) => {
        const out = await this.#target.clients.doc.send(
          new QueryCommand({
            TableName: this.#target.ledgerTable,
            IndexName: settings.ledger.statusIndex,
            KeyConditionExpression: '#status = :status',
            // A split file's parts are its own business: the file's item says how it went.
            FilterExpression: 'begins_with(pk, :s3) AND attribute_not_exists(#part)',
            ExpressionAttributeNames: { '#status': 'status', '#part': 'part' },
            ExpressionAttributeValues: { ':status': status, ':s3': 's3://' },
            ScanIndexForward: false,
            Limit: RECENT_FILES,
          }),
        );
        return (out.Items ?? []) as LedgerItem[];
      }),
    );
    return pages.flat();
  }

  /**
   * Scored signals, series and anomalies from the running totals the scorer keeps in the same transactions
   * as the blocks and id items (one BatchGetItem), and the recent anomalies from their index (a Query per
   * shard): nothing read grows with the signals.
   */
  async #scores() {
    const [totals, anomalies] = await Promise.all([
      scoreTotals(this.#target),
      recentAnomalies(this.#target, RECENT_ANOMALIES),
    ]);
    return { ...totals, recent: anomalies };
  }

  async #queues(): Promise<Record<QueueName, QueueDepth>> {
    const entries = await Promise.all(
      QUEUES.map(async (q) => {
        const out = await this.#target.clients.sqs.send(
          new GetQueueAttributesCommand({
            QueueUrl: this.#target.queues[q],
            AttributeNames: ['ApproximateNumberOfMessages', 'ApproximateNumberOfMessagesNotVisible'],
          }),
        );
        const depth: QueueDepth = {
          visible: Number(out.Attributes?.ApproximateNumberOfMessages ?? 0),
          inFlight: Number(out.Attributes?.ApproximateNumberOfMessagesNotVisible ?? 0),
        };
        return [q, depth] as const;
      }),
    );
    return Object.fromEntries(entries) as Record<QueueName, QueueDepth>;
  }

  /** Lines (one reject each) of the quarantine objects of the db, kafka and scorer sources. */
  async #rejects(): Promise<{ db: number; kafka: number; scorer: number }> {
    const [db, kafka, scorer] = await Promise.all(
      (['db', 'kafka', 'scorer'] as const).map((kind) =>
        this.#rejectLinesUnder(`${settings.bucket.rejectsPrefix}${kind}/`),
      ),
    );
    return { db: db ?? 0, kafka: kafka ?? 0, scorer: scorer ?? 0 };
  }

  async #rejectLinesUnder(prefix: string): Promise<number> {
    const { s3 } = this.#target.clients;
    let total = 0;
    let token: string | undefined;
    do {
      const out = await s3.send(
        new ListObjectsV2Command({ Bucket: this.#target.bucket, Prefix: prefix, ContinuationToken: token }),
      );
      for (const o of out.Contents ?? []) {
        if (!o.Key) continue;
        const cacheKey = `${o.Key}@${o.ETag}`;
        let lines = this.#rejectLines.get(cacheKey);
        if (lines === undefined) {
          lines = await countLines(this.#target, o.Key);
          this.#rejectLines.set(cacheKey, lines);
        }
        total += lines;
      }
      token = out.NextContinuationToken;
    } while (token);
    return total;
  }
}

async function countLines(target: Target, key: string): Promise<number> {
  const out = await target.clients.s3.send(new GetObjectCommand({ Bucket: target.bucket, Key: key }));
  let lines = 0;
  for await (const chunk of out.Body as AsyncIterable<Uint8Array>) {
    for (const byte of chunk) if (byte === 0x0a) lines++;
  }
  return lines;
}

function toFileRow(i: LedgerItem): FileRow {
  return {
    key: i.key,
    etag: i.etag,
    status: i.status,
    records: Number(i.records ?? 0),
    rejected: Number(i.rejected ?? 0),
    error: i.errorType ? `${i.errorType}: ${i.errorMessage ?? ''}`.trim() : null,
    attempts: Number(i.attempts ?? 0),
    updatedAt: i.updatedAt,
    ...(i.durationMs !== undefined ? { durationMs: Number(i.durationMs) } : {}),
    ...(i.firstErrors?.length ? { firstErrors: i.firstErrors } : {}),
  };
}
