import type { S3Client } from '@aws-sdk/client-s3';
import { type DynamoDBDocumentClient, QueryCommand, type QueryCommandInput } from '@aws-sdk/lib-dynamodb';
import type { ClientConfig, SweepConfig } from '#shared/config.ts';
import { METRIC } from '#shared/contract.ts';
import type { FileStatus, LedgerItem } from '#shared/ledger.ts';
import { type Logger, type Metrics, MetricUnit } from '#shared/observability.ts';
import { settings } from '#shared/settings.ts';
import { Canary, type CanaryCheck } from './canary.ts';

/**
 * The ledger sweep: on a schedule, counts the ledger items that nothing will carry on, from the ledger's
 * status index (partition `status`, sort `updatedAt`), and checks the notification canary (canary.ts).
 *
 * - processing: PROCESSING (a file or a part), not written for `processingStuckSeconds` and its lease not
 *   live: its worker died and no redelivery came to take it over (a lost or deleted event);
 * - split: a SPLIT file older than `splitStuckSeconds`: some of its parts never ended;
 * - discovered: a DISCOVERED item older than `splitStuckSeconds`: a part announced and never claimed;
 * - exhausted: FAILED with `retryable` still true and no attempts left, updated within
 *   `exhaustedLookbackHours`: no delivery will claim it again, yet it never failed for good.
 *
 * Each status is read with a key condition on `updatedAt` (only the items old enough), in pages, at most
 * `maxItemsPerStatus` items: the cost is bounded whatever the ledger's size, and a status with more is
 * reported as truncated (its count is then a lower bound).
 */

export type StuckKind = 'processing' | 'split' | 'discovered' | 'exhausted';

export const STUCK_METRICS: Readonly<Record<StuckKind, string>> = {
  processing: METRIC.filesStuckProcessing,
  split: METRIC.filesStuckSplit,
  discovered: METRIC.filesStuckDiscovered,
  exhausted: METRIC.filesStuckExhausted,
};

/** What the sweep reads from its configuration (shared/config.ts resolves it once, at cold start). */
export type SweepOptions = Omit<SweepConfig, keyof ClientConfig>;

export interface SweepDeps {
  readonly doc: DynamoDBDocumentClient;
  readonly s3: S3Client;
  readonly logger: Logger;
  readonly metrics: Metrics;
  readonly config: SweepOptions;
  readonly now?: () => number;
}

/** One stuck item, as logged (keys only: no record value is in the ledger's keys). */
export interface StuckItem {
  readonly kind: StuckKind;
  readonly key: string;
  readonly etag: string;
  readonly part?: number;
  readonly status: FileStatus;
  readonly updatedAt: string;
  readonly attempts: number;
}

export interface SweepResult {
  readonly stuck: Readonly<Record<StuckKind, number>>;
  /** Their sum. */
  readonly total: number;
  /** Kinds whose status had more items than one run reads: their count is a lower bound. */
  readonly truncated: readonly StuckKind[];
  /** The first few stuck items. */
  readonly samples: readonly StuckItem[];
  readonly canary: CanaryCheck;
  /** When the canary of this run was sent (undefined if sending failed: the error is logged). */
  readonly canarySentAt?: string;
}

/** One run of the sweep: reads, emits FilesStuck (in all and by kind) and CanaryMissed, writes the next canary. */
export async function sweepLedger(deps: SweepDeps): Promise<SweepResult> {
  const { config, logger, metrics } = deps;
  const now = (deps.now ?? Date.now)();
  const canary = new Canary({
    doc: deps.doc,
    s3: deps.s3,
    table: config.ledgerTable,
    bucket: config.bucket,
    graceSeconds: config.canaryGraceSeconds,
    now: deps.now ?? Date.now,
  });
  const canaryCheck = await canary.check();

  const iso = (ms: number) => new Date(ms).toISOString();
  const lookbackHours = config.exhaustedLookbackHours;
  const queries: Record<StuckKind, StatusQuery> = {
    processing: {
      status: 'PROCESSING',
      range: { op: '<', value: iso(now - config.processingStuckSeconds * 1000) },
      // A lease not live: no worker holds it (a hand-over leaves an expired lease too).
      filter: {
        expression: 'attribute_not_exists(leaseExpiresAt) OR leaseExpiresAt < :now',
        values: { ':now': now },
      },
    },
    split: { status: 'SPLIT', range: { op: '<', value: iso(now - config.splitStuckSeconds * 1000) } },
    discovered: {
      status: 'DISCOVERED',
      range: { op: '<', value: iso(now - config.splitStuckSeconds * 1000) },
    },
    exhausted: {
      status: 'FAILED',
      range: { op: '>', value: iso(now - lookbackHours * 3_600_000) },
      filter: {
        expression: 'retryable = :true AND attempts >= :max',
        values: { ':true': true, ':max': config.maxAttempts },
      },
    },
  };
  const kinds = Object.keys(queries) as StuckKind[];
  const found = await Promise.all(kinds.map((kind) => queryStatus(deps, queries[kind])));

  const stuck = {} as Record<StuckKind, number>;
  const truncated: StuckKind[] = [];
  const samples: StuckItem[] = [];
  kinds.forEach((kind, i) => {
    const f = found[i] ?? { items: [], truncated: false };
    stuck[kind] = f.items.length;
    if (f.truncated) truncated.push(kind);
    for (const item of f.items) {
      if (samples.length >= settings.sweep.samplesLogged) break;
      samples.push({
        kind,
        key: item.key,
        etag: item.etag,
        ...(item.part !== undefined ? { part: Number(item.part) } : {}),
        status: item.status,
        updatedAt: item.updatedAt,
        attempts: Number(item.attempts ?? 0),
      });
    }
  });
  const total = kinds.reduce((n, k) => n + stuck[k], 0);

  metrics.addMetric(METRIC.filesStuck, MetricUnit.Count, total);
  for (const kind of kinds) metrics.addMetric(STUCK_METRICS[kind], MetricUnit.Count, stuck[kind]);
  metrics.addMetric(METRIC.canaryMissed, MetricUnit.Count, canaryCheck.missed ? 1 : 0);
  if (total > 0) logger.warn('Ledger items stuck', { stuck, truncated, samples });
  if (canaryCheck.missed) {
    logger.error('The notification canary never reached the ledger: S3 notifications may have stopped', {
      canary: canaryCheck,
    });
  }

  // The next canary. Failing to write it (a permission, a throttle) fails the run, after the metrics.
  const canarySentAt = await canary.send();
  logger.info('Ledger swept', { stuck, total, truncated, canary: canaryCheck, canarySentAt });
  return { stuck, total, truncated, samples, canary: canaryCheck, canarySentAt };
}

interface StatusQuery {
  readonly status: FileStatus;
  /** The key condition on the index's sort key, updatedAt. */
  readonly range: { readonly op: '<' | '>'; readonly value: string };
  readonly filter?: { readonly expression: string; readonly values: Record<string, unknown> };
}

/** The items of one status the query selects, page by page, reading at most maxItemsPerStatus. */
async function queryStatus(
  deps: SweepDeps,
  q: StatusQuery,
): Promise<{ items: LedgerItem[]; truncated: boolean }> {
  const { config } = deps;
  const { maxItemsPerStatus: maxItems, pageSize } = config;
  const items: LedgerItem[] = [];
  let read = 0;
  let start: Record<string, unknown> | undefined;
  do {
    const input: QueryCommandInput = {
      TableName: config.ledgerTable,
      IndexName: settings.ledger.statusIndex,
      KeyConditionExpression: `#status = :status AND updatedAt ${q.range.op} :updated`,
      ExpressionAttributeNames: { '#status': 'status' },
      ExpressionAttributeValues: { ':status': q.status, ':updated': q.range.value, ...q.filter?.values },
      ...(q.filter ? { FilterExpression: q.filter.expression } : {}),
      // Limit counts the items read before the filter: each page reads at most this much.
      Limit: Math.min(pageSize, maxItems - read),
      ExclusiveStartKey: start,
    };
    const out = await deps.doc.send(new QueryCommand(input));
    read += out.ScannedCount ?? out.Count ?? 0;
    // The canary's and the poller's items are not files (the index holds only items with a status).
    items.push(...((out.Items ?? []) as LedgerItem[]).filter((i) => i.pk.startsWith('s3://')));
    start = out.LastEvaluatedKey;
  } while (start && read < maxItems);
  return { items, truncated: start !== undefined };
}
