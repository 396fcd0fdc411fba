import { METRIC } from '#shared/contract.ts';
import { MetricUnit } from '#shared/observability.ts';
import { putRejects, rejectsKey } from '#shared/quarantine.ts';
import type { PollerDeps, PollSummary } from './poller.ts';
import { rejectsPath, rowRecord, watermarkSignalId } from './rejects.ts';
import {
  type HorizonSql,
  isClockType,
  type PolledRow,
  type PollerSql,
  type ProbeRow,
  type StallRow,
  versionTag,
} from './sql.ts';
import type { Watermark, WatermarkStore } from './watermark.ts';

/**
 * watermark mode: the rows a read past the watermark cannot return, and the watermark positions that would
 * leave rows behind. Rows with a NULL watermark column have no position; on a clock-typed column (timestamp,
 * timestamptz, date) rows dated past the database's `now()` plus the skew (a clock ahead, a typo,
 * `'infinity'`), and `'-infinity'`, are out of the readable range, so they can never drag the watermark into
 * the future. Each kind is counted every poll and quarantined; a stall (rows the watermark has left behind)
 * is counted too, and a watermark found past the horizon (stored by a version without it) is moved back.
 */

/** The database's clock at the start of a poll, when the watermark column is clock-typed. */
export interface Horizon {
  /** The database's `now()`, as text. */
  readonly now: string;
  /** `now()` plus the skew, as text: no row past it is read, so the watermark never moves past it. */
  readonly horizon: string;
  /** Whether the lookback applies to the column (a timestamp; not a date). */
  readonly lookback: boolean;
}

/** What watermark mode finds before its first read. */
export interface WatermarkStart {
  readonly watermark: Watermark | undefined;
  readonly nullWatermark: number;
  /** Undefined when the watermark column is not clock-typed. */
  readonly horizon?: Horizon;
  readonly outOfRange?: number;
  readonly stalled?: number;
  readonly rewound?: PollSummary['rewound'];
  /** Another poller moved the watermark while this one moved it back. */
  readonly lostRace?: boolean;
}

/**
 * watermark mode, before the reads: the watermark, the rows no read returns (NULL; on a clock-typed column,
 * out of the readable range) counted and quarantined, the stall counted, and a watermark found past the
 * horizon moved back (a conditional write, as an advance), so that a stall left by an older version heals.
 */
export async function startWatermark(
  deps: PollerDeps,
  sql: PollerSql,
  store: WatermarkStore,
  now: () => number,
): Promise<WatermarkStart> {
  const { metrics, logger } = deps;
  const found = await store.read();
  const nullWatermark = await quarantineNullWatermarks(deps, sql, now);
  const horizon = await readHorizon(deps, sql);
  if (!horizon) return { watermark: found, nullWatermark };
  const outOfRange = await quarantineOutOfRange(deps, sql.horizon, horizon, now);
  const stall = found ? await countStalled(deps, sql.horizon, horizon, found) : { stalled: 0, beyond: false };
  metrics.addMetric(METRIC.watermarkStalledRows, MetricUnit.Count, stall.stalled);
  if (stall.stalled > 0) {
    logger.warn('Rows the watermark left out of reach: no read returns them', {
      stalled: stall.stalled,
      watermark: found,
      horizon: horizon.horizon,
    });
  }
  const base = { nullWatermark, horizon, outOfRange, stalled: stall.stalled };
  if (!found || !stall.beyond) return { ...base, watermark: found };
  const to = await rewindTarget(deps, sql.horizon, horizon, found);
  const moved = await store.advance(found, to, { rewound: true });
  if (!moved) return { ...base, watermark: found, lostRace: true };
  const from = { value: found.value, id: found.id };
  logger.warn("The watermark lay past the database's now() plus the skew; moved back", {
    from,
    to,
    advancedAt: found.advancedAt,
    horizon: horizon.horizon,
  });
  return { ...base, watermark: moved, rewound: { from, to } };
}

/**
 * The watermark column's type and the database's clock (one statement). Undefined when the column is not
 * clock-typed (a version counter): nothing bounds it.
 */
async function readHorizon(deps: PollerDeps, sql: PollerSql): Promise<Horizon | undefined> {
  const { rows } = (await deps.db.query(sql.probe, [deps.config.watermarkSkewSeconds])) as {
    rows: ProbeRow[];
  };
  const probe = rows[0];
  if (!probe || !isClockType(probe.pulse_type)) return undefined;
  return { now: probe.pulse_now, horizon: probe.pulse_horizon, lookback: probe.pulse_type !== 'date' };
}

/**
 * Rows whose watermark column is NULL have no position, so no read ever returns them. Each poll counts them
 * (a metric, also when 0) and quarantines the first `batchSize` of them, by id, with the reason, under a key
 * that a poll finding the same rows overwrites (so one object per day while they stay).
 */
async function quarantineNullWatermarks(
  deps: PollerDeps,
  sql: PollerSql,
  now: () => number,
): Promise<number> {
  const { config, metrics } = deps;
  const c = config.columns;
  const { rows } = (await deps.db.query(sql.readNullWatermark, [config.batchSize])) as { rows: PolledRow[] };
  const count = Number(rows[0]?.pulse_nulls ?? 0);
  metrics.addMetric(METRIC.watermarkNullRows, MetricUnit.Count, count);
  if (rows.length === 0) return 0;
  const reason = `${c.updatedAt} is NULL: watermark mode cannot order this row`;
  const key = await quarantine(
    deps,
    rows,
    (row) => `db:${config.table}:${row.pulse_id}`,
    () => reason,
    'watermark-null',
    now,
  );
  deps.logger.warn('Rows with a NULL watermark column are never read; quarantined', {
    column: c.updatedAt,
    count,
    quarantined: rows.length,
    key,
  });
  return count;
}

/**
 * Rows out of the readable range: past the horizon (read once the database's clock reaches them, with the
 * watermark still behind them), `'infinity'` and `'-infinity'` (never read). Each poll counts them (a metric,
 * also when 0) and quarantines the first `batchSize` of them in watermark order, each under its version's
 * ref, under a key that a poll finding the same rows overwrites.
 */
async function quarantineOutOfRange(
  deps: PollerDeps,
  sql: HorizonSql,
  horizon: Horizon,
  now: () => number,
): Promise<number> {
  const { config, metrics } = deps;
  const column = config.columns.updatedAt;
  const { rows } = (await deps.db.query(sql.readOutOfRange, [horizon.horizon, config.batchSize])) as {
    rows: PolledRow[];
  };
  const count = Number(rows[0]?.pulse_count ?? 0);
  metrics.addMetric(METRIC.watermarkOutOfRangeRows, MetricUnit.Count, count);
  if (rows.length === 0) return 0;
  const key = await quarantine(
    deps,
    rows,
    (row) => watermarkSignalId(config.table, row),
    (row) => outOfRangeReason(column, String(row.pulse_wm), config.watermarkSkewSeconds),
    'watermark-out-of-range',
    now,
  );
  deps.logger.warn("Rows dated past the database's now() plus the skew are not read; quarantined", {
    column,
    count,
    quarantined: rows.length,
    horizon: horizon.horizon,
    key,
  });
  return count;
}

/** Why a row out of the readable range is not read (`value`: the watermark column's text form). */
function outOfRangeReason(column: string, value: string, skewSeconds: number): string {
  if (value === 'infinity' || value === '-infinity') {
    return `${column} is '${value}': watermark mode never reads this row`;
  }
  return (
    `${column} ${versionTag(value)} is past the database's now() + ${skewSeconds} s: not read, and the ` +
    "watermark not moved, until the database's clock reaches it"
  );
}

/**
 * The stall count: rows of the fresh window (from `lookback - skew` seconds before the database's `now()`
 * up to the horizon) that lie more than the lookback behind the watermark, so that no read returns them.
 * Under a watermark within the horizon there are none (it is at most `skew` ahead of `now()`), so any is a
 * stall: a watermark past the horizon, or the database's clock gone back. Also says whether the watermark
 * lies past the horizon.
 */
async function countStalled(
  deps: PollerDeps,
  sql: HorizonSql,
  horizon: Horizon,
  watermark: Watermark,
): Promise<{ stalled: number; beyond: boolean }> {
  const { config } = deps;
  const lookback = horizon.lookback ? config.watermarkLookbackSeconds : 0;
  const fresh = Math.max(0, lookback - config.watermarkSkewSeconds);
  const { rows } = (await deps.db.query(sql.countStalled, [
    horizon.now,
    horizon.horizon,
    watermark.value,
    lookback,
    fresh,
  ])) as { rows: StallRow[] };
  const row = rows[0];
  return { stalled: Number(row?.pulse_count ?? 0), beyond: row?.pulse_beyond === true };
}

/**
 * Where a watermark found past the horizon moves back to. Every row committed before it was last advanced
 * (`advancedAt`) was read up to it; rows committed since, dated from then on, were left behind. So it
 * resumes after the last row dated before `advancedAt` less the lookback and the skew (no later than the
 * horizon); before every row when there is none, or when the item does not say when it was advanced.
 */
async function rewindTarget(
  deps: PollerDeps,
  sql: HorizonSql,
  horizon: Horizon,
  watermark: Watermark,
): Promise<{ value: string; id: string }> {
  const { config } = deps;
  const advancedAt = Date.parse(watermark.advancedAt ?? '');
  const back = (config.watermarkLookbackSeconds + config.watermarkSkewSeconds) * 1000;
  const instant = Number.isNaN(advancedAt) ? '-infinity' : new Date(advancedAt - back).toISOString();
  const { rows } = (await deps.db.query(sql.lastBefore, [instant, horizon.horizon])) as {
    rows: PolledRow[];
  };
  const last = rows[0];
  if (last && typeof last.pulse_wm === 'string') return { value: last.pulse_wm, id: last.pulse_id };
  // No row before it: resume before every row ('-infinity' is out of the readable range; the id only
  // needs to be one of the key's type).
  return { value: '-infinity', id: watermark.id };
}

/** Writes one object of rows quarantined by a watermark check; returns its key. */
async function quarantine(
  deps: PollerDeps,
  rows: readonly PolledRow[],
  ref: (row: PolledRow) => string,
  reason: (row: PolledRow) => string,
  kind: 'watermark-null' | 'watermark-out-of-range',
  now: () => number,
): Promise<string> {
  const { config } = deps;
  const rejects = rows.map((row) => ({
    id: row.pulse_id,
    ref: ref(row),
    reason: reason(row),
    record: rowRecord(config.columns, row),
  }));
  const key = rejectsKey('db', rejectsPath(config.table, new Date(now()), rejects, kind));
  await putRejects(
    deps.s3,
    config.quarantineBucket,
    key,
    rejects.map(({ id: _id, ...entry }) => entry),
  );
  return key;
}
