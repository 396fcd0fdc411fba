import type { S3Client } from '@aws-sdk/client-s3';
import { GetQueueAttributesCommand, type SQSClient } from '@aws-sdk/client-sqs';
import type { DynamoDBDocumentClient } from '@aws-sdk/lib-dynamodb';
import type { DbPollerConfig } from '#shared/config.ts';
import { METRIC } from '#shared/contract.ts';
import { type Logger, MetricUnit } from '#shared/observability.ts';
import { rejectsKey } from '#shared/quarantine.ts';
import { type SenderOptions, SignalSender } from '#shared/sender.ts';
import { RejectsBatch, SignalSink } from '#shared/sink.ts';
import { rejectsPath, rowRecord, watermarkSignalId } from './rejects.ts';
import { buildSql, lookbackFrom, type PolledRow, type PollerSql } from './sql.ts';
import type { MetricsSink } from './table-metrics.ts';
import { type Horizon, startWatermark } from './unreadable.ts';
import { type Watermark, WatermarkStore } from './watermark.ts';

/**
 * The db-poller's logic: claim (mark) or read past a watermark (watermark) a batch of rows, validate
 * them with the shared Signal schema, send the valid ones packed onto the signals queue, quarantine
 * the rest, and record progress (mark the rows / advance the watermark); round after round, until the
 * table is drained, the time budget is spent, the signals queue is too deep, or another poller moved
 * the watermark first.
 */

/** The slice of `pg` the poller uses: a `pg.Pool` (or `pg.Client`) satisfies it. */
export interface DbClient {
  query(text: string, values?: unknown[]): Promise<{ rows: unknown[] }>;
}
/** One connection checked out of a pool, held for a transaction. */
export interface DbSession extends DbClient {
  /** Returns the connection; with an error, the pool destroys it instead. */
  release(err?: Error | boolean): void;
  /** A `pg` client emits `error` when its connection drops between queries. */
  on?(event: 'error', listener: (err: Error) => void): unknown;
  removeListener?(event: 'error', listener: (err: Error) => void): unknown;
}
export interface DbPool extends DbClient {
  connect(): Promise<DbSession>;
}

export type PollerConfig = Pick<
  DbPollerConfig,
  | 'watermarkLookbackSeconds'
  | 'watermarkSkewSeconds'
  | 'signalsQueueUrl'
  | 'quarantineBucket'
  | 'table'
  | 'columns'
  | 'mode'
  | 'batchSize'
  | 'watermarkTable'
  | 'maxQueueDepth'
  | 'timeBudgetFraction'
  | 'maxMessageBytes'
  | 'where'
  | 'processedType'
  | 'initialWatermark'
>;

export interface PollerDeps {
  readonly db: DbPool;
  readonly sqs: SQSClient;
  readonly s3: S3Client;
  readonly doc: DynamoDBDocumentClient;
  readonly logger: Logger;
  /** Powertools Metrics, or the per-table view of it (table-metrics.ts). */
  readonly metrics: MetricsSink;
  readonly config: PollerConfig;
  /** The invocation's `context.getRemainingTimeInMillis`. */
  readonly remainingTimeMs: () => number;
  readonly now?: () => number;
  /** For tests: the sender's retry timing. */
  readonly senderOptions?: Omit<SenderOptions, 'maxMessageBytes'>;
}

export type StopReason = 'drained' | 'time-budget' | 'backpressure' | 'lost-race';

export interface PollSummary {
  readonly mode: 'mark' | 'watermark';
  readonly rounds: number;
  /** Rows claimed (mark) or read past the watermark (watermark). */
  readonly rows: number;
  /** watermark mode: rows read again by the lookback (their sends and rejects are not in `sent`, `rejected`). */
  readonly reread?: number;
  /** watermark mode: rows whose watermark column is NULL (quarantined, never sent). */
  readonly nullWatermark?: number;
  /**
   * watermark mode, clock-typed column: rows dated past {@link horizon} (`'infinity'` too) or `'-infinity'`:
   * quarantined, not read.
   */
  readonly outOfRange?: number;
  /**
   * watermark mode, clock-typed column: rows the watermark found at the start of the poll had left out of
   * reach (see `countStalled`); 0 when there was no watermark yet.
   */
  readonly stalled?: number;
  /** watermark mode, clock-typed column: the database's `now()` plus the skew; nothing past it was read. */
  readonly horizon?: string;
  /** watermark mode: the watermark was found past {@link horizon} and moved back, from and to. */
  readonly rewound?: {
    readonly from: { readonly value: string; readonly id: string };
    readonly to: { readonly value: string; readonly id: string };
  };
  readonly sent: number;
  readonly rejected: number;
  readonly stoppedBy: StopReason;
  readonly durationMs: number;
  /** watermark mode: where it stands now. */
  readonly watermark?: { readonly value: string; readonly id: string; readonly version: number };
}

interface RoundResult {
  readonly rows: number;
  readonly sent: number;
  readonly rejected: number;
  readonly lostRace?: boolean;
}

/** What a poll has done so far, round after round. */
interface PollTally {
  rounds: number;
  rows: number;
  rereadRows: number;
  sent: number;
  rejected: number;
}

/** Runs rounds until drained or told to stop; throws on a failed send (after rolling back). */
export async function poll(deps: PollerDeps): Promise<PollSummary> {
  const { config } = deps;
  const now = deps.now ?? Date.now;
  const started = now();
  const deadline = started + config.timeBudgetFraction * deps.remainingTimeMs();
  const sql = buildSql(config.table, config.columns, {
    where: config.where,
    processedType: config.processedType,
    initialWatermark: config.mode === 'watermark' ? config.initialWatermark : undefined,
  });
  const store =
    config.mode === 'watermark'
      ? new WatermarkStore(deps.doc, config.watermarkTable, config.table)
      : undefined;
  const start = store ? await startWatermark(deps, sql, store, now) : undefined;
  let watermark = start?.watermark;
  let reread = watermark ? rereadWindow(config, watermark) : undefined;
  const tally: PollTally = { rounds: 0, rows: 0, rereadRows: 0, sent: 0, rejected: 0 };
  let stoppedBy: StopReason | undefined = start?.lostRace ? stop(deps, 'lost-race') : undefined;
  while (!stoppedBy) {
    stoppedBy = await stopBeforeRound(deps, deadline, now);
    if (stoppedBy) break;
    if (reread) {
      // Not a round: `rounds` counts the reads past the watermark.
      const out = await rereadRound(deps, sql, reread, now);
      tally.rereadRows += out.rows;
      reread = out.next;
      continue;
    }
    let round: RoundResult;
    if (store) {
      const out = await watermarkRound(deps, sql, store, watermark, start?.horizon, now);
      round = out;
      if (out.watermark) watermark = out.watermark;
    } else {
      round = await markRound(deps, sql, now, deadline);
    }
    tally.rounds++;
    tally.rows += round.rows;
    tally.sent += round.sent;
    tally.rejected += round.rejected;
    if (round.lostRace) stoppedBy = stop(deps, 'lost-race', 'advanced');
    // Fewer rows than asked for: drained (in mark mode, the rest is held by other pollers).
    else if (round.rows < config.batchSize) stoppedBy = 'drained';
  }
  // An empty run is a data point too (0 rows polled), not missing data.
  if (tally.rows === 0) deps.metrics.addMetric(METRIC.rowsPolled, MetricUnit.Count, 0);
  return {
    mode: config.mode,
    rounds: tally.rounds,
    rows: tally.rows,
    ...(store ? { reread: tally.rereadRows, nullWatermark: start?.nullWatermark } : {}),
    ...(start?.horizon
      ? { outOfRange: start.outOfRange, stalled: start.stalled, horizon: start.horizon.horizon }
      : {}),
    ...(start?.rewound ? { rewound: start.rewound } : {}),
    sent: tally.sent,
    rejected: tally.rejected,
    stoppedBy,
    durationMs: now() - started,
    ...(watermark ? { watermark } : {}),
  };
}

/** Why the poll stops before its next round (out of time, the signals queue too deep), or undefined. */
async function stopBeforeRound(
  deps: PollerDeps,
  deadline: number,
  now: () => number,
): Promise<StopReason | undefined> {
  if (now() >= deadline) return stop(deps, 'time-budget');
  const { config } = deps;
  const depth = await queueDepth(deps.sqs, config.signalsQueueUrl);
  if (depth <= config.maxQueueDepth) return undefined;
  deps.logger.warn('Signals queue is deep; stopping early', { depth, maxQueueDepth: config.maxQueueDepth });
  return stop(deps, 'backpressure');
}

/** Counts (and for a lost race, logs) a stop; `moved`: what the other poller did to the watermark. */
function stop(deps: PollerDeps, reason: StopReason, moved: 'moved' | 'advanced' = 'moved'): StopReason {
  const { metrics } = deps;
  if (reason === 'lost-race') {
    metrics.addMetric(METRIC.watermarkConflicts, MetricUnit.Count, 1);
    deps.logger.info(`Another poller ${moved} the watermark first; stopping`);
  } else if (reason === 'time-budget') {
    metrics.addMetric(METRIC.pollerTimeBudgetStops, MetricUnit.Count, 1);
  } else if (reason === 'backpressure') {
    metrics.addMetric(METRIC.pollerBackpressureStops, MetricUnit.Count, 1);
  }
  return reason;
}

async function queueDepth(sqs: SQSClient, queueUrl: string): Promise<number> {
  const out = await sqs.send(
    new GetQueueAttributesCommand({ QueueUrl: queueUrl, AttributeNames: ['ApproximateNumberOfMessages'] }),
  );
  return Number(out.Attributes?.ApproximateNumberOfMessages ?? 0);
}

/**
 * mark: one transaction per batch. Claim with FOR UPDATE SKIP LOCKED, send the valid rows, quarantine
 * the rejected ones, mark every claimed row processed, commit. Any failure rolls back: the rows stay
 * unprocessed and are sent again, with the same ids, by a later round or invocation.
 */
async function markRound(
  deps: PollerDeps,
  sql: PollerSql,
  now: () => number,
  deadline: number,
): Promise<RoundResult> {
  const { config } = deps;
  const session = await deps.db.connect();
  let broken: Error | undefined;
  // pg-pool listens for a client's 'error' only while it is idle: a connection that drops while this
  // transaction holds it (say, during the send) would otherwise be an uncaught exception that kills
  // the process. Noted here instead; the next query fails, the batch rolls back, the client is destroyed.
  const onError = (err: Error) => {
    broken ??= err;
  };
  session.on?.('error', onError);
  try {
    await session.query('BEGIN');
    // If this invocation dies while holding the row locks, the server ends the session (and rolls
    // back) once it has been idle past the invocation's end, instead of keeping the rows locked.
    const idleMs = Math.max(10_000, Math.ceil(deps.remainingTimeMs() + 5_000));
    await session.query("SELECT set_config('idle_in_transaction_session_timeout', $1, true)", [
      String(idleMs),
    ]);
    const { rows } = (await session.query(sql.claim, [config.batchSize])) as { rows: PolledRow[] };
    if (rows.length === 0) {
      await session.query('COMMIT');
      return { rows: 0, sent: 0, rejected: 0 };
    }
    const out = await sendRows(deps, rows, (row) => `db:${config.table}:${row.pulse_id}`, now, {
      versioned: false,
    });
    await session.query(sql.markProcessed, [rows.map((r) => r.pulse_id)]);
    await session.query('COMMIT');
    deps.logger.debug('Batch committed', { ...out, msLeftInBudget: deadline - now() });
    return out;
  } catch (err) {
    try {
      await session.query('ROLLBACK');
    } catch (rollbackErr) {
      broken = rollbackErr as Error;
    }
    deps.logger.error('Batch rolled back; its rows stay unprocessed', { error: err as Error });
    throw err;
  } finally {
    session.removeListener?.('error', onError);
    session.release(broken ?? false);
  }
}

/**
 * watermark: read-only on the database. Read the rows past `(updated_at, id)`, send them, then advance
 * the watermark with a conditional write; a lost race stops this poller (what it sent is a duplicate
 * of what the winner sent, and the scorer drops it by id).
 */
async function watermarkRound(
  deps: PollerDeps,
  sql: PollerSql,
  store: WatermarkStore,
  watermark: Watermark | undefined,
  horizon: Horizon | undefined,
  now: () => number,
): Promise<RoundResult & { watermark?: Watermark }> {
  const { config } = deps;
  const rows = await readPast(deps, sql, watermark, horizon);
  const last = rows.at(-1);
  if (!last || last.pulse_wm === null || last.pulse_wm === undefined)
    return { rows: 0, sent: 0, rejected: 0 };
  // A row's version is part of its id: an updated row is a new signal; re-reading one version is not.
  const out = await sendRows(deps, rows, (row) => watermarkSignalId(config.table, row), now, {
    versioned: true,
  });
  const next = await store.advance(watermark, { value: last.pulse_wm, id: last.pulse_id });
  if (!next) return { ...out, lostRace: true };
  return { ...out, watermark: next };
}

/**
 * The next batch past the watermark (from the first row without one; at or after the initial watermark, as
 * every read, when one is configured). On a clock-typed column, within the horizon: nothing past it is read,
 * so the watermark never moves past it.
 */
async function readPast(
  deps: PollerDeps,
  sql: PollerSql,
  watermark: Watermark | undefined,
  horizon: Horizon | undefined,
): Promise<PolledRow[]> {
  const { db, config } = deps;
  const limit = config.batchSize;
  const out = horizon
    ? watermark
      ? await db.query(sql.horizon.readAfter, [watermark.value, watermark.id, limit, horizon.horizon])
      : await db.query(sql.horizon.readFirst, [limit, horizon.horizon])
    : watermark
      ? await db.query(sql.readAfter, [watermark.value, watermark.id, limit])
      : await db.query(sql.readFirst, [limit]);
  return out.rows as PolledRow[];
}

/** What the lookback still has to read again: past `after` (from `from` at first) up to `upTo`. */
interface RereadWindow {
  readonly from: string;
  readonly after?: { readonly value: string; readonly id: string };
  readonly upTo: Watermark;
}

/** The lookback window behind the watermark, or undefined when it is off or does not apply. */
function rereadWindow(config: PollerConfig, watermark: Watermark): RereadWindow | undefined {
  const seconds = config.watermarkLookbackSeconds;
  if (!(seconds > 0)) return undefined;
  const from = lookbackFrom(watermark.value, seconds);
  return from === undefined ? undefined : { from, upTo: watermark };
}

/**
 * watermark, the lookback: reads a page of the rows at or behind the watermark (within the window) and
 * sends them again with their versioned ids: a row committed after an earlier poll had read past its
 * position is sent now, and the ones already sent are dropped by the scorer. The watermark is not moved.
 */
async function rereadRound(
  deps: PollerDeps,
  sql: PollerSql,
  window: RereadWindow,
  now: () => number,
): Promise<RoundResult & { next?: RereadWindow }> {
  const { config } = deps;
  const { upTo } = window;
  const { rows } = (
    window.after
      ? await deps.db.query(sql.rereadAfter, [
          window.after.value,
          window.after.id,
          upTo.value,
          upTo.id,
          config.batchSize,
        ])
      : await deps.db.query(sql.rereadFirst, [window.from, upTo.value, upTo.id, config.batchSize])
  ) as { rows: PolledRow[] };
  if (rows.length === 0) return { rows: 0, sent: 0, rejected: 0 };
  const out = await sendRows(deps, rows, (row) => watermarkSignalId(config.table, row), now, {
    versioned: true,
    reread: true,
  });
  const last = rows.at(-1);
  if (rows.length < config.batchSize || !last || last.pulse_wm === null || last.pulse_wm === undefined)
    return out;
  return { ...out, next: { ...window, after: { value: last.pulse_wm, id: last.pulse_id } } };
}

/**
 * Validates rows, sends the valid ones packed, quarantines the rest (the shared sink); throws when the
 * send fails. `versioned`: the signal ids carry the row's version (watermark mode), so the rejects key
 * must too. `reread`: rows read again by the lookback, counted apart from the rows polled.
 */
async function sendRows(
  deps: PollerDeps,
  rows: readonly PolledRow[],
  signalId: (row: PolledRow) => string,
  now: () => number,
  opts: { readonly versioned: boolean; readonly reread?: boolean },
): Promise<RoundResult> {
  const { config, metrics } = deps;
  const c = config.columns;
  const sender = new SignalSender(
    deps.sqs,
    config.signalsQueueUrl,
    { kind: 'db', ref: `db:${config.table}` },
    { ...deps.senderOptions, maxMessageBytes: config.maxMessageBytes, defaultSource: config.table },
  );
  /** The ids of the rejected rows, in the order of their rejects (the rejects key names them). */
  const rejectedIds: string[] = [];
  const rejects = new RejectsBatch(deps.s3, config.quarantineBucket, (entries) => {
    const named = entries.map((e, i) => ({ id: rejectedIds[i] ?? '', ref: e.ref }));
    return rejectsKey(
      'db',
      rejectsPath(config.table, new Date(now()), named, opts.versioned ? 'versioned' : undefined),
    );
  });
  const sink = new SignalSink(sender, rejects, 0);
  let oldest = Number.POSITIVE_INFINITY;
  for (const row of rows) {
    const id = signalId(row);
    const record: Record<string, unknown> = {
      id,
      name: row.pulse_name,
      value: row.pulse_value,
      ...(c.source ? { source: row.pulse_source } : {}),
      timestamp: row.pulse_ts,
    };
    const ctx = { origin: { kind: 'db', ref: id }, defaultSource: config.table } as const;
    const out = await sink.add(record, ctx, () => ({ record: rowRecord(c, row) }));
    if (out.ok) oldest = Math.min(oldest, Date.parse(out.signal.timestamp));
    else rejectedIds.push(row.pulse_id);
  }
  if (sink.sent > 0 && !opts.reread) {
    metrics.addMetric(METRIC.pollerLag, MetricUnit.Milliseconds, Math.max(0, now() - oldest));
  }
  const key = await sink.close();
  const first = rejects.entries[0];
  if (key && first) {
    // Where the rejects are, not why: a reason quotes the row's values, which stay in the quarantine.
    deps.logger.warn('Rows rejected', { rejected: sink.rejected, firstRef: first.ref, rejectsKey: key });
  }
  if (opts.reread) {
    metrics.addMetric(METRIC.rowsReread, MetricUnit.Count, rows.length);
  } else {
    metrics.addMetric(METRIC.rowsPolled, MetricUnit.Count, rows.length);
    metrics.addMetric(METRIC.rowsSent, MetricUnit.Count, sink.sent);
    if (sink.rejected > 0) metrics.addMetric(METRIC.rowsRejected, MetricUnit.Count, sink.rejected);
  }
  return { rows: rows.length, sent: sink.sent, rejected: sink.rejected };
}
