import type { DbColumns } from '../../shared/config.ts';
import { ConfigError } from '../../shared/errors.ts';

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
}

/** Builds the poller's statements for a table and its column mapping. */
export function buildSql(table: string, columns: DbColumns): PollerSql {
  const t = quoteIdent(table);
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

  return {
    claim:
      `SELECT ${fields} FROM ${t} AS t WHERE t.${c.processed} = false ` +
      `ORDER BY ${c.id} LIMIT $1 FOR UPDATE SKIP LOCKED`,
    markProcessed: `UPDATE ${t} SET ${c.processed} = true WHERE ${quoteIdent(columns.id)} = ANY($1)`,
    readFirst:
      `SELECT ${wmFields} FROM ${t} AS t WHERE ${c.updatedAt} IS NOT NULL ` +
      `ORDER BY ${c.updatedAt}, ${c.id} LIMIT $1`,
    readAfter:
      `SELECT ${wmFields} FROM ${t} AS t WHERE (${c.updatedAt}, ${c.id}) > ($1, $2) ` +
      `ORDER BY ${c.updatedAt}, ${c.id} LIMIT $3`,
    rereadFirst:
      `SELECT ${wmFields} FROM ${t} AS t WHERE ${c.updatedAt} >= $1 AND (${c.updatedAt}, ${c.id}) <= ($2, $3) ` +
      `ORDER BY ${c.updatedAt}, ${c.id} LIMIT $4`,
    rereadAfter:
      `SELECT ${wmFields} FROM ${t} AS t WHERE (${c.updatedAt}, ${c.id}) > ($1, $2) ` +
      `AND (${c.updatedAt}, ${c.id}) <= ($3, $4) ORDER BY ${c.updatedAt}, ${c.id} LIMIT $5`,
    readNullWatermark:
      `SELECT ${fields}, count(*) OVER () AS ${COL.nulls} FROM ${t} AS t WHERE ${c.updatedAt} IS NULL ` +
      `ORDER BY ${c.id} LIMIT $1`,
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
