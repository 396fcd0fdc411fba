import pg from 'pg';
import { afterEach, describe, expect, it } from 'vitest';
import { createDbPool, dbTypes } from '../../../functions/db-poller/db.ts';

const TIMESTAMP = 1114;

describe('db-poller database pool', () => {
  const tz = process.env.TZ;
  afterEach(() => {
    // Node applies a change of process.env.TZ at once; put the process's zone back.
    if (tz === undefined) delete process.env.TZ;
    else process.env.TZ = tz;
  });

  it('reads a timestamp without time zone as UTC, whatever the process time zone', () => {
    // Prepare
    process.env.TZ = 'America/New_York';
    const parse = dbTypes.getTypeParser(TIMESTAMP, 'text') as (text: string) => unknown;
    // Act
    const values = [
      parse('2024-05-01 10:00:00'),
      parse('2024-05-01 10:00:00.123456'),
      parse('0044-03-15 12:00:00 BC'),
      parse('infinity'),
    ];
    // Assess
    expect((values[0] as Date).toISOString()).toBe('2024-05-01T10:00:00.000Z');
    expect((values[1] as Date).toISOString()).toBe('2024-05-01T10:00:00.123Z');
    expect((values[2] as Date).toISOString()).toBe('-000043-03-15T12:00:00.000Z');
    expect(values[3]).toBe(Number.POSITIVE_INFINITY);
  });

  it('gives its pool these parsers, leaving the global ones (and other pools) as pg has them', async () => {
    // Prepare
    const creds = { username: 'u', password: 'p', host: '127.0.0.1', port: 5432, dbname: 'd' };
    process.env.TZ = 'America/New_York';
    // Act
    const pool = createDbPool(creds, { ssl: false });
    // Assess
    expect((pool as unknown as { options: { types: unknown } }).options.types).toBe(dbTypes);
    expect(dbTypes.getTypeParser(1184, 'text')).toBe(pg.types.getTypeParser(1184, 'text'));
    expect(dbTypes.getTypeParser(TIMESTAMP, 'text')).not.toBe(pg.types.getTypeParser(TIMESTAMP, 'text'));
    const global = pg.types.getTypeParser(TIMESTAMP, 'text') as (text: string) => Date;
    expect(global('2024-05-01 10:00:00').toISOString()).toBe('2024-05-01T14:00:00.000Z');
    await pool.end();
  });
});
