import type { S3Client } from '@aws-sdk/client-s3';
import type { SQSClient } from '@aws-sdk/client-sqs';
import type { S3TriggerConfig } from '#shared/config.ts';
import { METRIC } from '#shared/contract.ts';
import type { CompletedStats, FileStats, Ledger, SplitOutcome } from '#shared/ledger.ts';
import { type Logger, type Metrics, MetricUnit } from '#shared/observability.ts';
import type { FileTask } from './events.ts';
import type { FanOutOptions } from './fan-out.ts';
import type { ResumePoint } from './records.ts';
import type { StagingOptions } from './staging.ts';

/**
 * What ingesting a file takes and gives: its configuration and dependencies (built once per cold start by
 * the handler) and its outcomes, with the few helpers `ingest.ts`, `file-run.ts` and `split-file.ts` share.
 */

/**
 * The s3-trigger's configuration ingestion reads, every value resolved (shared/config.ts applies the
 * defaults of shared/settings.ts once, at cold start). `heartbeatSeconds`: the lease is kept this often;
 * `checkpointSeconds`: progress is checkpointed this often (at the next heartbeat);
 * `handOverBeforeTimeoutSeconds`: with less invocation time left, the file is checkpointed and handed over;
 * `maxAttempts`: claims of a file before it fails for good (a hand-over without progress on the last one
 * fails it).
 */
export type IngestConfig = Pick<
  S3TriggerConfig,
  | 'signalsQueueUrl'
  | 'quarantineBucket'
  | 'heartbeatSeconds'
  | 'checkpointSeconds'
  | 'maxMessageBytes'
  | 'handOverBeforeTimeoutSeconds'
  | 'maxAttempts'
> & {
  /** Splitting large files into parts (only with `announceParts`). Without it, files are read whole. */
  readonly fanOut?: FanOutOptions;
  /** Which keys are ingested and how (shared/routes.ts). @default the default route (`incoming/`) */
  readonly routes?: S3TriggerConfig['routes'];
  /**
   * Staging large gzip files (only with `announceParts`): inflated once into staged objects, then read as
   * an uncompressed file. Without it, a gzip file is read from its start by every attempt.
   */
  readonly staging?: StagingOptions;
};

/** What ingestion needs from the outside world; the handler builds it once per cold start. */
export interface IngestDeps {
  readonly s3: S3Client;
  readonly sqs: SQSClient;
  readonly ledger: Ledger;
  readonly logger: Logger;
  readonly metrics: Metrics;
  readonly config: IngestConfig;
  /** Lease owner: unique per invocation. */
  readonly owner: string;
  readonly now?: () => number;
  /** Milliseconds left in the invocation (`context.getRemainingTimeInMillis`). */
  readonly remainingMs?: () => number;
  /**
   * Asks for the file to be carried on by another invocation (a continuation message on the file-events
   * queue). Without it (or without `remainingMs`) a file runs until the invocation ends.
   */
  readonly continueLater?: (task: FileTask & { readonly etag: string }) => Promise<void>;
  /**
   * Whether a CSV object of `size` bytes is parsed on a thread of its own: decided by the handler
   * (`parseThreadDecider`). @default never
   */
  readonly csvOnThread?: (size: number | undefined) => boolean;
  /**
   * Announces the parts of a split file (one file-events message each). Without it no file is split.
   */
  readonly announceParts?: (
    parts: readonly (FileTask & { readonly etag: string; readonly part: number })[],
  ) => Promise<void>;
}

/** For a part: which part, and how the file ended when this part was the last to end. */
interface PartOutcome {
  readonly part?: number;
  readonly file?: SplitOutcome['status'];
}

export type IngestOutcome =
  | ({ readonly status: 'SUCCESS'; readonly stats: CompletedStats } & PartOutcome)
  /**
   * Handed over to a continuation before the invocation's timeout, which resumes from `checkpoint` (none
   * while the file is being staged: staging resumes after its last staged object).
   */
  | { readonly status: 'CONTINUED'; readonly checkpoint?: ResumePoint; readonly stats: FileStats }
  /** Split into `parts`, each announced on the file-events queue. */
  | { readonly status: 'SPLIT'; readonly parts: number }
  | ({ readonly status: 'FAILED'; readonly stats?: CompletedStats; readonly error: string } & PartOutcome)
  | {
      readonly status: 'SKIPPED';
      readonly reason:
        | 'duplicate'
        | 'in-progress'
        | 'failed'
        | 'skipped'
        | 'exhausted'
        | 'lease-lost'
        | 'split'
        | string;
    };

/** The counts alone (a stats object may carry more). */
export function snapshot(s: FileStats): FileStats {
  return { records: s.records, rejected: s.rejected, bytesRead: s.bytesRead };
}

/** The metrics of a file or part that ended: its counts, and its latency from `eventTime` when given. */
export function emitFileMetrics(
  metrics: Metrics,
  s: CompletedStats,
  eventTime: string | undefined,
  now: number,
): void {
  metrics.addMetric(METRIC.recordsIngested, MetricUnit.Count, s.records);
  metrics.addMetric(METRIC.recordsRejected, MetricUnit.Count, s.rejected);
  metrics.addMetric(METRIC.bytesRead, MetricUnit.Bytes, s.bytesRead);
  const t = eventTime ? Date.parse(eventTime) : Number.NaN;
  if (Number.isFinite(t))
    metrics.addMetric(METRIC.fileLatency, MetricUnit.Milliseconds, Math.max(0, now - t));
}
