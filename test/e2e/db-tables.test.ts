import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { PulseStatus } from '../../local/commands/status.ts';
import { isRunning } from '../../local/emulators/supervisor.ts';
import { type Cli, cli } from './cli.ts';

/**
 * Several db-poller tables offline, as a user runs them (issue 23): `pulse local up --db-poller` with a list
 * of two tables in different modes, one emulated schedule each; rows of both scored exactly once.
 */
describe('several db-poller tables offline (pulse CLI end to end)', () => {
  let c: Cli;
  const tables = [
    // The offline run's own table, in mark mode, leaving out one source.
    { table: 'signals', where: "source IS DISTINCT FROM 'skip'" },
    // A table of the user's, created after `up`, read past a watermark from an initial one.
    {
      table: 'readings',
      mode: 'watermark',
      columns: { updatedAt: 'updated_at' },
      initialWatermark: '2024-06-01T00:00:00Z',
    },
  ];
  const settled = (s: PulseStatus) => s.queues.signals.visible + s.queues.signals.inFlight === 0;

  beforeAll(async () => {
    c = cli();
    await c.pulse(
      'local',
      'up',
      '--detach',
      '--any-port',
      '--poll-seconds',
      '2',
      '--db-poller',
      JSON.stringify({ tables }),
    );
  });

  afterAll(async () => {
    if (!c) return;
    const before = await c.state().catch(() => undefined);
    await c.pulse('local', 'down', '--wipe');
    for (const p of [before?.runtime, before?.moto, before?.postgres, before?.kafka]) {
      expect(isRunning(p)).toBe(false);
    }
  });

  it('scores the rows of both tables once each: the mark table within its filter, the watermark table from its initial watermark', async () => {
    // Prepare
    const before = await c.status();
    const db = new pg.Client({ connectionString: before.endpoints.postgres });
    await db.connect();

    // Act: 100 rows of signals (20 left out by the filter); 120 readings a second apart from 23:59:01, the
    // initial watermark at 00:00:00 (rows 60..120: 61, and 80 of signals).
    try {
      await db.query(`
        CREATE TABLE readings (
          id bigserial PRIMARY KEY, name text, value double precision, source text, timestamp timestamptz,
          updated_at timestamptz NOT NULL
        )`);
      await db.query(`
        INSERT INTO readings (name, value, source, timestamp, updated_at)
        SELECT 'reading', i, 'sensor', t, t
        FROM generate_series(1, 120) AS i,
          LATERAL (SELECT timestamp '2024-05-31 23:59:00+00' + i * interval '1 second' AS t) AS x`);
      await db.query(`
        INSERT INTO signals (name, value, source, "timestamp")
        SELECT 'mark', i, CASE WHEN i % 5 = 0 THEN 'skip' ELSE 'plant' END, now() FROM generate_series(1, 100) AS i`);
    } finally {
      await db.end();
    }
    await c.waitForStatus('both tables scored', (s) => s.scored >= before.scored + 141 && settled(s));
    // A few more polls of each table: nothing new, nothing scored again.
    await new Promise((r) => setTimeout(r, 6_000));
    const s = await c.waitForStatus('settled', settled);

    // Assess
    expect(s.scored).toBe(before.scored + 141);
    expect(s.seriesSamples).toBe(s.scored);
    expect(s.rejected.db).toBe(0);
    expect(s.dlq).toBe(0);
    const check = new pg.Client({ connectionString: before.endpoints.postgres });
    await check.connect();
    const marked = await check.query(
      'SELECT source, processed, count(*)::int AS n FROM signals GROUP BY 1, 2 ORDER BY 1, 2',
    );
    await check.end();
    expect(marked.rows).toEqual([
      { source: 'plant', processed: true, n: 80 },
      { source: 'skip', processed: false, n: 20 },
    ]);
  });
});
