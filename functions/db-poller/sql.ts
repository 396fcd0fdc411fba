import { type DbColumns, INITIAL_WATERMARK } from '#shared/config.ts';
import { ConfigError } from '#shared/errors.ts';
import { checkSqlFilter } from '#shared/sql-filter.ts';

/**
 * The poller's SQL, built once from the configured table and column names. Identifiers are checked
 * against the plain-identifier pattern (config.ts validates them too; this is the second lock) and
 * always double-quoted; values are always parameters.
 */

const IDENTIFIER = /^[A-Za-z_][A-Za-z0-9_]{0,62}$/;

/** `"name"` for a plain SQL identifier; throws ConfigError for anything else. */
export function quoteIdent(name: string): string {
  if (!IDENTIFIER.test(name)) {
    throw new ConfigError(`${JSON.stringify(name)} is not a plain SQL identifier`);
  }
  return `"${name}"`;
}

/** Output column names of the poller's SELECTs (fixed aliases, so ORDER BY never binds to them). */
export const COL = {
  id: 'pulse_id',
  name: 'pulse_name',
  value: 'pulse_value',
  source: 'pulse_source',
  timestamp: 'pulse_ts',
  /** The watermark column as Postgres renders it as text: exact (microseconds), round-trips as a parameter. */
  watermark: 'pulse_wm',
  /** How many rows have a NULL watermark column. */
  nulls: 'pulse_nulls',
  /** How many rows a count or a windowed read matched (bigint as text). */
  count: 'pulse_count',
} as const;

/** A row as the poller's SELECTs return it. */
export interface PolledRow {
  /** The key, as text (bigint, uuid, ... all have a text form that casts back). */
  readonly pulse_id: string;
  readonly pulse_name: unknown;
  readonly pulse_value: unknown;
  readonly pulse_source?: unknown;
  readonly pulse_ts: unknown;
  /** Watermark mode only. */
  readonly pulse_wm?: string | null;
  /** {@link PollerSql.readNullWatermark} only: how many rows have a NULL watermark column (bigint as text). */
  readonly pulse_nulls?: string | number;
  /** {@link HorizonSql.readOutOfRange} only: how many rows lie out of the readable range (bigint as text). */
  readonly pulse_count?: string | number;
}

/** What {@link PollerSql.probe} returns: the watermark column's type and the database's clock, as text. */
export interface ProbeRow {
  /** `pg_typeof` of the watermark column: `timestamp with time zone`, `bigint`, ... */
  readonly pulse_type: string;
  /** The database's `now()`. */
  readonly pulse_now: string;
  /** The database's `now()` plus the skew: no row past it is read. */
  readonly pulse_horizon: string;
}

/** What {@link HorizonSql.countStalled} returns. */
export interface StallRow {
  /** Rows of the fresh window that sit behind the watermark's reach (bigint as text). */
  readonly pulse_count: string | number;
  /** Whether the watermark lies past the horizon (stored there by a version without the horizon). */
  readonly pulse_beyond: boolean;
}

/** Types whose values the database's clock orders: watermark mode bounds its reads by `now()` for these. */
const CLOCK_TYPES = new Set(['timestamp with time zone', 'timestamp without time zone', 'date']);

/** Whether a watermark column of this type (`pg_typeof`) is bounded by the database's clock. */
export function isClockType(type: string): boolean {
  return CLOCK_TYPES.has(type);
}

/**
 * watermark mode on a clock-typed column (timestamp, timestamptz, date): the statements that keep the reads
 * within the database's clock. `'-infinity'` and values past the horizon (`now()` plus the skew; `'infinity'`
 * too) are out of the readable range. Bounds are `timestamptz` parameters compared with the column (a
 * `timestamp` is read as UTC, the session's zone), so the column's index serves them.
 */
export interface HorizonSql {
  /** `$1` = limit, `$2` = horizon. As {@link PollerSql.readFirst}, within the readable range. */
  readonly readFirst: string;
  /** `$1` = value, `$2` = id, `$3` = limit, `$4` = horizon. As {@link PollerSql.readAfter}, within the readable range. */
  readonly readAfter: string;
  /**
   * `$1` = horizon, `$2` = limit. Rows out of the readable range (past the horizon, or `'-infinity'`), in
   * watermark order, each with the count of all of them.
   */
  readonly readOutOfRange: string;
  /**
   * `$1` = now, `$2` = horizon, `$3` = watermark value, `$4` = lookback seconds, `$5` = fresh seconds. How
   * many rows of the fresh window (from `$5` seconds before now up to the horizon) lie more than the lookback
   * behind the watermark, so that no read returns them; and whether the watermark lies past the horizon.
   */
  readonly countStalled: string;
  /**
   * `$1` = instant, `$2` = horizon (timestamptz text). The position of the last row dated before the earlier
   * of the two (greatest value, then id), `'-infinity'` left out: where a watermark moved back resumes.
   */
  readonly lastBefore: string;
}

export interface PollerSql {
  /** mark: `$1` = limit. Claims unprocessed rows, skipping rows other pollers hold. */
  readonly claim: string;
  /** mark: `$1` = ids (text[]). Marks every claimed row, valid and rejected alike. */
  readonly markProcessed: string;
  /** watermark: `$1` = limit. The first batch, when there is no watermark yet. */
  readonly readFirst: string;
  /** watermark: `$1` = watermark value (text), `$2` = id (text), `$3` = limit. */
  readonly readAfter: string;
  /**
   * watermark, the lookback's first page: rows from `$1` (the window's lower bound, text) up to and
   * including the watermark (`$2` value, `$3` id); `$4` = limit.
   */
  readonly rereadFirst: string;
  /** watermark, the lookback's next pages: past `($1, $2)` up to and including `($3, $4)`; `$5` = limit. */
  readonly rereadAfter: string;
  /**
   * watermark: `$1` = limit. Rows whose watermark column is NULL (no position, so never read by the
   * statements above), by id, each with the count of all of them.
   */
  readonly readNullWatermark: string;
  /**
   * watermark: `$1` = skew seconds. The watermark column's type, and the database's clock: `now()`, and
   * `now()` plus the skew (the horizon).
   */
  readonly probe: string;
  /** The statements of a clock-typed watermark column. */
  readonly horizon: HorizonSql;
}

/** The quoted table (`t`) and column expressions, and the select lists and order the statements share. */
interface SqlParts {
  readonly t: string;
  readonly c: {
    readonly id: string;
    readonly name: string;
    readonly value: string;
    readonly source: string | undefined;
    readonly timestamp: string;
    readonly processed: string;
    readonly updatedAt: string;
  };
  /** The signal's fields under their {@link COL} names. */
  readonly fields: string;
  /** {@link SqlParts.fields} and the watermark column as text. */
  readonly wmFields: string;
  /** Watermark order: the column, then the key. */
  readonly order: string;
  /** ` AND (<filter>)`, or empty: the configured extra filter, added to every read of rows. */
  readonly filter: string;
  /**
   * `<filter>` and, with an initial watermark, ` AND <updatedAt> >= '<initial>'`: what every read by position
   * (watermark mode) adds, so that no read, lookback or rewind returns a row before the initial watermark.
   */
  readonly positioned: string;
}

/** What a table's statements are built from beyond its columns. */
export interface SqlOptions {
  /** An extra filter (`DB_WHERE`), checked by {@link checkSqlFilter}. @default none */
  readonly where?: string | undefined;
  /** The type of the processed flag (mark mode). @default 'boolean' */
  readonly processedType?: 'boolean' | 'integer';
  /** watermark mode: no row whose watermark column lies before this is read (`DB_INITIAL_WATERMARK`). @default none */
  readonly initialWatermark?: string | undefined;
}

function sqlParts(table: string, columns: DbColumns, options: SqlOptions): SqlParts {
  const { where, initialWatermark: initial } = options;
  const t = quoteIdent(table);
  if (where !== undefined) {
    // config.ts checked it at cold start; this is the second lock.
    const why = checkSqlFilter(where);
    if (why) throw new ConfigError(`DB_WHERE ${why}`);
  }
  const c = {
    id: `t.${quoteIdent(columns.id)}`,
    name: `t.${quoteIdent(columns.name)}`,
    value: `t.${quoteIdent(columns.value)}`,
    source: columns.source ? `t.${quoteIdent(columns.source)}` : undefined,
    timestamp: `t.${quoteIdent(columns.timestamp)}`,
    processed: quoteIdent(columns.processed),
    updatedAt: `t.${quoteIdent(columns.updatedAt)}`,
  };
  const fields = [
    `${c.id}::text AS ${COL.id}`,
    `${c.name} AS ${COL.name}`,
    `${c.value} AS ${COL.value}`,
    ...(c.source ? [`${c.source} AS ${COL.source}`] : []),
    `${c.timestamp} AS ${COL.timestamp}`,
  ].join(', ');
  const wmFields = `${fields}, ${c.updatedAt}::text AS ${COL.watermark}`;
  const filter = where === undefined ? '' : ` AND (${where})`;
  // A literal, not a parameter (every statement would need one more): the pattern admits digits, '-', ':',
  // '.', 'T', 'Z', '+' and a space only (config.ts checked it at cold start; this is the second lock).
  if (initial !== undefined && !INITIAL_WATERMARK.test(initial)) {
    throw new ConfigError(
      `DB_INITIAL_WATERMARK ${JSON.stringify(initial)} is not an integer or an ISO-8601 date or time`,
    );
  }
  const since = initial === undefined ? '' : ` AND ${c.updatedAt} >= '${initial}'`;
  return {
    t,
    c,
    fields,
    wmFields,
    order: `ORDER BY ${c.updatedAt}, ${c.id}`,
    filter,
    positioned: `${since}${filter}`,
  };
}

/** Builds the poller's statements for a table and its column mapping. */
export function buildSql(table: string, columns: DbColumns, options: SqlOptions = {}): PollerSql {
  const parts = sqlParts(table, columns, options);
  const { t, c, fields, wmFields, filter, positioned } = parts;
  const [unprocessed, processed] = options.processedType === 'integer' ? ['0', '1'] : ['false', 'true'];
  return {
    claim:
      `SELECT ${fields} FROM ${t} AS t WHERE t.${c.processed} = ${unprocessed}${filter} ` +
      `ORDER BY ${c.id} LIMIT $1 FOR UPDATE SKIP LOCKED`,
    markProcessed: `UPDATE ${t} SET ${c.processed} = ${processed} WHERE ${quoteIdent(columns.id)} = ANY($1)`,
    readFirst:
      `SELECT ${wmFields} FROM ${t} AS t WHERE ${c.updatedAt} IS NOT NULL${positioned} ` +
      `ORDER BY ${c.updatedAt}, ${c.id} LIMIT $1`,
    readAfter:
      `SELECT ${wmFields} FROM ${t} AS t WHERE (${c.updatedAt}, ${c.id}) > ($1, $2)${positioned} ` +
      `ORDER BY ${c.updatedAt}, ${c.id} LIMIT $3`,
    rereadFirst:
      `SELECT ${wmFields} FROM ${t} AS t WHERE ${c.updatedAt} >= $1 AND (${c.updatedAt}, ${c.id}) <= ($2, $3)${positioned} ` +
      `ORDER BY ${c.updatedAt}, ${c.id} LIMIT $4`,
    rereadAfter:
      `SELECT ${wmFields} FROM ${t} AS t WHERE (${c.updatedAt}, ${c.id}) > ($1, $2) ` +
      `AND (${c.updatedAt}, ${c.id}) <= ($3, $4)${positioned} ORDER BY ${c.updatedAt}, ${c.id} LIMIT $5`,
    readNullWatermark:
      `SELECT ${fields}, count(*) OVER () AS ${COL.nulls} FROM ${t} AS t WHERE ${c.updatedAt} IS NULL${filter} ` +
      `ORDER BY ${c.id} LIMIT $1`,
    probe:
      `SELECT pg_typeof((SELECT ${c.updatedAt} FROM ${t} AS t LIMIT 0))::text AS pulse_type, ` +
      'now()::text AS pulse_now, (now() + make_interval(secs => $1))::text AS pulse_horizon',
    horizon: horizonSql(parts),
  };
}

/** The statements of a clock-typed watermark column ({@link HorizonSql}). */
function horizonSql({ t, c, wmFields, order, positioned }: SqlParts): HorizonSql {
  const readable = (horizon: string) =>
    `${c.updatedAt} > '-infinity'::timestamptz AND ${c.updatedAt} <= ${horizon}::timestamptz${positioned}`;
  const minusInfinity = `${c.updatedAt} = '-infinity'::timestamptz${positioned}`;
  const pastHorizon = `${c.updatedAt} > $1::timestamptz${positioned}`;
  // The out-of-range read's branches carry their sort keys (the column and the key, typed) for the merge.
  const orderedFields = `${wmFields}, ${c.updatedAt} AS pulse_at, ${c.id} AS pulse_key`;
  const outputs = [
    COL.id,
    COL.name,
    COL.value,
    ...(c.source ? [COL.source] : []),
    COL.timestamp,
    COL.watermark,
  ];
  return {
    readFirst: `SELECT ${wmFields} FROM ${t} AS t WHERE ${readable('$2')} ${order} LIMIT $1`,
    readAfter:
      `SELECT ${wmFields} FROM ${t} AS t WHERE (${c.updatedAt}, ${c.id}) > ($1, $2) AND ${readable('$4')} ` +
      `${order} LIMIT $3`,
    // Two index range scans merged, not one OR, which PostgreSQL reads as a scan of the whole index.
    readOutOfRange:
      `SELECT ${outputs.map((o) => `o.${o}`).join(', ')}, ` +
      `(SELECT count(*) FROM ${t} AS t WHERE ${minusInfinity}) + ` +
      `(SELECT count(*) FROM ${t} AS t WHERE ${pastHorizon}) AS ${COL.count} FROM (` +
      `(SELECT ${orderedFields} FROM ${t} AS t WHERE ${minusInfinity} ORDER BY ${c.id} LIMIT $2) UNION ALL ` +
      `(SELECT ${orderedFields} FROM ${t} AS t WHERE ${pastHorizon} ${order} LIMIT $2)` +
      ') AS o ORDER BY o.pulse_at, o.pulse_key LIMIT $2',
    countStalled:
      `SELECT count(*) AS ${COL.count}, ($3::timestamptz > $2::timestamptz) AS pulse_beyond FROM ${t} AS t ` +
      `WHERE ${c.updatedAt} >= $1::timestamptz - make_interval(secs => $5) AND ${c.updatedAt} <= $2::timestamptz ` +
      `AND ${c.updatedAt} < $3::timestamptz - make_interval(secs => $4)${positioned}`,
    lastBefore:
      `SELECT ${c.updatedAt}::text AS ${COL.watermark}, ${c.id}::text AS ${COL.id} FROM ${t} AS t ` +
      `WHERE ${c.updatedAt} > '-infinity'::timestamptz AND ${c.updatedAt} < LEAST($1::timestamptz, $2::timestamptz)${positioned} ` +
      `ORDER BY ${c.updatedAt} DESC, ${c.id} DESC LIMIT 1`,
  };
}

const PG_TIMESTAMP =
  /^(\d{4,})-(\d{2})-(\d{2}) (\d{2}):(\d{2}):(\d{2})(?:\.(\d{1,6}))?(?:([+-])(\d{2})(?::(\d{2}))?(?::(\d{2}))?)?$/;

/**
 * A stable version tag for a row, from the text form of its watermark column: a timestamp becomes
 * ISO-8601 UTC with microseconds (`2024-05-01T10:00:00.123456Z`) whatever the session's TimeZone;
 * a `timestamp without time zone` keeps its wall-clock value (no `Z`); anything else (a bigint version
 * counter, a date) is used as it is.
 */
export function versionTag(text: string): string {
  const m = PG_TIMESTAMP.exec(text);
  if (!m) return text;
  const [, y, mo, d, h, mi, s, frac, sign, oh, om, os] = m;
  const micros = (frac ?? '').padEnd(6, '0');
  if (!sign) return `${y}-${mo}-${d}T${h}:${mi}:${s}.${micros}`;
  const offsetSeconds =
    (sign === '-' ? -1 : 1) * (Number(oh) * 3600 + Number(om ?? 0) * 60 + Number(os ?? 0));
  const utcSeconds =
    Date.UTC(Number(y), Number(mo) - 1, Number(d), Number(h), Number(mi), Number(s)) / 1000 - offsetSeconds;
  const date = new Date(utcSeconds * 1000);
  if (Number.isNaN(date.getTime())) return text;
  return `${date.toISOString().slice(0, 19)}.${micros}Z`;
}

/**
 * The lower bound of watermark mode's lookback window: the watermark's text form moved back `seconds`, in
 * a form Postgres casts back to the column's type (ISO-8601, with `Z` for a `timestamptz`, without a zone
 * for a `timestamp`); sub-millisecond digits are dropped, which only widens the window. Undefined when
 * the watermark column is not a timestamp (a version counter, a date): the lookback does not apply.
 */
export function lookbackFrom(text: string, seconds: number): string | undefined {
  const m = PG_TIMESTAMP.exec(text);
  if (!m) return undefined;
  const [, y, mo, d, h, mi, s, frac, sign, oh, om, os] = m;
  const offsetSeconds = sign
    ? (sign === '-' ? -1 : 1) * (Number(oh) * 3600 + Number(om ?? 0) * 60 + Number(os ?? 0))
    : 0;
  // setUTCFullYear, not Date.UTC, which reads years 0-99 as 1900-1999.
  const date = new Date(0);
  date.setUTCFullYear(Number(y), Number(mo) - 1, Number(d));
  date.setUTCHours(Number(h), Number(mi), Number(s), Math.floor(Number(`0.${frac ?? '0'}`) * 1000));
  const ms = date.getTime() - (offsetSeconds + seconds) * 1000;
  date.setTime(ms);
  const year = date.getUTCFullYear();
  if (Number.isNaN(ms) || year < 1 || year > 9999) return undefined;
  const iso = date.toISOString();
  return sign ? iso : iso.slice(0, -1);
}
