import { describe, expect, it } from 'vitest';
import { ConfigError } from '#shared/errors.ts';
import { settings } from '#shared/settings.ts';
import {
  buildSql,
  isClockType,
  lookbackFrom,
  quoteIdent,
  versionTag,
} from '../../../functions/db-poller/sql.ts';

describe('db-poller SQL', () => {
  it('quotes every identifier from the table and column mapping', () => {
    // Prepare
    const columns = {
      id: 'row_id',
      name: 'metric',
      value: 'reading',
      source: 'origin_host',
      timestamp: 'observed_at',
      processed: 'done',
      updatedAt: 'updated_at',
    };
    // Act
    const sql = buildSql('Readings', columns);
    // Assess
    expect(sql.claim).toBe(
      'SELECT t."row_id"::text AS pulse_id, t."metric" AS pulse_name, t."reading" AS pulse_value, ' +
        't."origin_host" AS pulse_source, t."observed_at" AS pulse_ts FROM "Readings" AS t ' +
        'WHERE t."done" = false ORDER BY t."row_id" LIMIT $1 FOR UPDATE SKIP LOCKED',
    );
    expect(sql.markProcessed).toBe('UPDATE "Readings" SET "done" = true WHERE "row_id" = ANY($1)');
    expect(sql.readAfter).toContain('WHERE (t."updated_at", t."row_id") > ($1, $2)');
    expect(sql.readAfter).toContain('t."updated_at"::text AS pulse_wm');
    const { horizon, ...statements } = sql;
    for (const text of [...Object.values(statements), ...Object.values(horizon)]) {
      for (const name of ['Readings', ...Object.values(columns)]) {
        expect(text.split(name).length - 1).toBe(text.split(`"${name}"`).length - 1);
      }
    }
  });

  it('leaves the source column out when the mapping has none (the table name becomes the source)', () => {
    const { source: _source, ...columns } = settings.dbPoller.columns;
    expect(buildSql('signals', columns).claim).not.toContain('pulse_source');
  });

  it('refuses anything that is not a plain identifier, so nothing unchecked reaches the SQL', () => {
    expect(() => buildSql('signals; DROP TABLE x', settings.dbPoller.columns)).toThrow(ConfigError);
    expect(() => buildSql('signals', { ...settings.dbPoller.columns, name: 'name"--' })).toThrow(
      /not a plain SQL identifier/,
    );
    expect(() => quoteIdent('a b')).toThrow(ConfigError);
    expect(quoteIdent('_x9')).toBe('"_x9"');
  });

  it('turns the text form of a timestamptz into one ISO version tag whatever the session time zone', () => {
    expect(versionTag('2024-05-01 10:00:00.123456+00')).toBe('2024-05-01T10:00:00.123456Z');
    expect(versionTag('2024-05-01 12:00:00.5+02')).toBe('2024-05-01T10:00:00.500000Z');
    expect(versionTag('2024-05-01 04:30:00-05:30')).toBe('2024-05-01T10:00:00.000000Z');
    expect(versionTag('2024-05-01 00:00:00+00')).toBe('2024-05-01T00:00:00.000000Z');
    // timestamp without time zone keeps its wall clock; other types pass through.
    expect(versionTag('2024-05-01 10:00:00.25')).toBe('2024-05-01T10:00:00.250000');
    expect(versionTag('12345')).toBe('12345');
  });

  it('moves a watermark back by the lookback in a form Postgres casts back to the column type', () => {
    expect(lookbackFrom('2024-05-01 10:00:00.123456+00', 60)).toBe('2024-05-01T09:59:00.123Z');
    expect(lookbackFrom('2024-05-01 12:00:00+02', 30)).toBe('2024-05-01T09:59:30.000Z');
    expect(lookbackFrom('2024-05-01 00:00:10', 60)).toBe('2024-04-30T23:59:10.000');
    // Not a timestamp (a version counter, a date), or out of the ISO range: no lookback.
    expect(lookbackFrom('12345', 60)).toBeUndefined();
    expect(lookbackFrom('2024-05-01', 60)).toBeUndefined();
    expect(lookbackFrom('0001-01-01 00:00:10+00', 60)).toBeUndefined();
  });

  it('reads the rows with a NULL watermark column by id, each with the count of all of them', () => {
    const sql = buildSql('signals', { ...settings.dbPoller.columns, updatedAt: 'updated_at' });
    expect(sql.readNullWatermark).toMatch(
      /, count\(\*\) OVER \(\) AS pulse_nulls FROM "signals" AS t WHERE t\."updated_at" IS NULL ORDER BY t\."id" LIMIT \$1$/,
    );
  });

  it("takes the watermark column's type and the horizon from the database's clock, in one statement", () => {
    const sql = buildSql('signals', { ...settings.dbPoller.columns, updatedAt: 'updated_at' });
    expect(sql.probe).toBe(
      'SELECT pg_typeof((SELECT t."updated_at" FROM "signals" AS t LIMIT 0))::text AS pulse_type, ' +
        'now()::text AS pulse_now, (now() + make_interval(secs => $1))::text AS pulse_horizon',
    );
    expect(['timestamp with time zone', 'timestamp without time zone', 'date'].map(isClockType)).toEqual([
      true,
      true,
      true,
    ]);
    expect(['bigint', 'integer', 'text', 'numeric'].some(isClockType)).toBe(false);
  });

  it("reads a clock-typed watermark column only within '-infinity' < value <= the horizon, by the index order", () => {
    // Prepare
    const sql = buildSql('signals', { ...settings.dbPoller.columns, updatedAt: 'updated_at' });
    const readable = `t."updated_at" > '-infinity'::timestamptz AND t."updated_at" <=`;
    const fields =
      't."id"::text AS pulse_id, t."name" AS pulse_name, t."value" AS pulse_value, t."source" AS pulse_source, ' +
      't."timestamp" AS pulse_ts, t."updated_at"::text AS pulse_wm';
    // Act
    const h = sql.horizon;
    // Assess
    expect(h.readFirst).toMatch(
      /WHERE t\."updated_at" > '-infinity'::timestamptz AND t\."updated_at" <= \$2::timestamptz ORDER BY t\."updated_at", t\."id" LIMIT \$1$/,
    );
    expect(h.readAfter).toContain(
      `WHERE (t."updated_at", t."id") > ($1, $2) AND ${readable} $4::timestamptz`,
    );
    expect(h.readAfter).toMatch(/ORDER BY t\."updated_at", t\."id" LIMIT \$3$/);
    expect(h.readOutOfRange).toBe(
      'SELECT o.pulse_id, o.pulse_name, o.pulse_value, o.pulse_source, o.pulse_ts, o.pulse_wm, ' +
        `(SELECT count(*) FROM "signals" AS t WHERE t."updated_at" = '-infinity'::timestamptz) + ` +
        '(SELECT count(*) FROM "signals" AS t WHERE t."updated_at" > $1::timestamptz) AS pulse_count FROM (' +
        `(SELECT ${fields}, t."updated_at" AS pulse_at, t."id" AS pulse_key FROM "signals" AS t ` +
        `WHERE t."updated_at" = '-infinity'::timestamptz ORDER BY t."id" LIMIT $2) UNION ALL ` +
        `(SELECT ${fields}, t."updated_at" AS pulse_at, t."id" AS pulse_key FROM "signals" AS t ` +
        'WHERE t."updated_at" > $1::timestamptz ORDER BY t."updated_at", t."id" LIMIT $2)' +
        ') AS o ORDER BY o.pulse_at, o.pulse_key LIMIT $2',
    );
    // No OR: PostgreSQL answers `a > $1 OR a = '-infinity'` by scanning the whole index.
    for (const text of Object.values(h)) expect(text).not.toContain(' OR ');
    expect(h.countStalled).toBe(
      'SELECT count(*) AS pulse_count, ($3::timestamptz > $2::timestamptz) AS pulse_beyond FROM "signals" AS t ' +
        'WHERE t."updated_at" >= $1::timestamptz - make_interval(secs => $5) AND t."updated_at" <= $2::timestamptz ' +
        'AND t."updated_at" < $3::timestamptz - make_interval(secs => $4)',
    );
    expect(h.lastBefore).toBe(
      'SELECT t."updated_at"::text AS pulse_wm, t."id"::text AS pulse_id FROM "signals" AS t ' +
        `WHERE t."updated_at" > '-infinity'::timestamptz AND t."updated_at" < LEAST($1::timestamptz, $2::timestamptz) ` +
        'ORDER BY t."updated_at" DESC, t."id" DESC LIMIT 1',
    );
  });

  it('adds the extra filter, parenthesised, to every statement that reads rows, and to no other', () => {
    // Prepare
    const where = "tenant = 'acme' OR kind IN ('a', 'b')";
    const columns = { ...settings.dbPoller.columns, updatedAt: 'updated_at' };
    // Act
    const { horizon, probe, markProcessed, ...reads } = buildSql('signals', columns, { where });
    // Assess
    const filter = ` AND (${where})`;
    for (const [name, text] of [...Object.entries(reads), ...Object.entries(horizon)]) {
      // readOutOfRange reads twice and counts twice: each of its four parts is filtered.
      const expected = name === 'readOutOfRange' ? 4 : 1;
      expect([name, text.split(filter).length - 1]).toEqual([name, expected]);
    }
    expect(probe).not.toContain(where);
    expect(markProcessed).not.toContain(where);
    expect(reads.claim).toContain(
      `WHERE t."processed" = false${filter} ORDER BY t."id" LIMIT $1 FOR UPDATE SKIP LOCKED`,
    );
  });

  it('refuses a filter that could take a statement apart, as a ConfigError naming DB_WHERE', () => {
    expect(() => buildSql('signals', settings.dbPoller.columns, { where: 'true) OR (true' })).toThrow(
      /DB_WHERE closes a parenthesis/,
    );
    expect(() => buildSql('signals', settings.dbPoller.columns, { where: 'true; DROP TABLE x' })).toThrow(
      ConfigError,
    );
  });

  it('claims and marks an integer processed flag with 0 and 1', () => {
    // Act
    const sql = buildSql('signals', settings.dbPoller.columns, { processedType: 'integer' });
    // Assess
    expect(sql.claim).toContain('WHERE t."processed" = 0 ORDER BY');
    expect(sql.markProcessed).toBe('UPDATE "signals" SET "processed" = 1 WHERE "id" = ANY($1)');
  });

  it('bounds every read by position at the initial watermark, a literal, but not the NULL read nor the claim', () => {
    // Prepare
    const columns = { ...settings.dbPoller.columns, updatedAt: 'updated_at' };
    const where = "kind = 'keep'";
    // Act
    const { horizon, probe, markProcessed, claim, readNullWatermark, ...positioned } = buildSql(
      'signals',
      columns,
      { where, initialWatermark: '2024-05-01T00:00:00Z' },
    );
    // Assess
    const bound = ` AND t."updated_at" >= '2024-05-01T00:00:00Z' AND (${where})`;
    for (const [name, text] of [...Object.entries(positioned), ...Object.entries(horizon)]) {
      const expected = name === 'readOutOfRange' ? 4 : 1;
      expect([name, text.split(bound).length - 1]).toEqual([name, expected]);
    }
    expect(positioned.readFirst).toMatch(
      /WHERE t\."updated_at" IS NOT NULL AND t\."updated_at" >= '2024-05-01T00:00:00Z' AND \(kind = 'keep'\) ORDER BY/,
    );
    for (const text of [probe, markProcessed, claim, readNullWatermark])
      expect(text).not.toContain('2024-05-01');
    expect(readNullWatermark).toContain(`IS NULL AND (${where})`);
  });

  it('refuses an initial watermark that is not an integer or an ISO-8601 date or time (it is inlined)', () => {
    expect(() =>
      buildSql('signals', settings.dbPoller.columns, { initialWatermark: "2024-05-01' OR true --" }),
    ).toThrow(/DB_INITIAL_WATERMARK/);
    expect(buildSql('signals', settings.dbPoller.columns, { initialWatermark: '-42' }).readFirst).toContain(
      `t."timestamp" >= '-42'`,
    );
  });
});
