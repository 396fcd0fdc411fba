import { randomBytes } from 'node:crypto';
import { CreateSecretCommand, SecretsManagerClient } from '@aws-sdk/client-secrets-manager';
import { GetCommand, PutCommand } from '@aws-sdk/lib-dynamodb';
import type { Context } from 'aws-lambda';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, inject, it, vi } from 'vitest';
import type { PollSummary } from '../../functions/db-poller/poller.ts';
import { lambdaContext } from '../../local/event-sources/lambda-context.ts';
import { destroyClients, LOCAL_CREDENTIALS, LOCAL_REGION, makeClients } from '../../local/runtime/clients.ts';
import { resourceNames } from '../../local/runtime/names.ts';
import { createResources, type LocalResources } from '../../local/runtime/resources.ts';
import { countById, drainSignals as drainSignalsOf } from '../helpers/signals.ts';

/**
 * The db-poller's source options (issue 23) against a real PostgreSQL 15 and moto, through the real handler
 * and its environment: an extra WHERE filter, an integer processed flag, an initial watermark. Counts are exact.
 */

type Handler = (event: unknown, context: Context) => Promise<PollSummary>;

describe('db-poller options (PostgreSQL + moto)', () => {
  const endpoint = inject('motoEndpoint');
  const clients = makeClients(endpoint);
  const names = resourceNames(`dbo${randomBytes(3).toString('hex')}`);
  const dbName = `pulse_${names.prefix}`;
  let resources: LocalResources;
  let admin: pg.Client;
  let db: pg.Pool;
  let secretArn: string;

  /** A cold start of the real handler (a fresh module: its own config, secret cache and pool). */
  const coldStart = async (env: Record<string, string>): Promise<Handler> => {
    vi.unstubAllEnvs();
    for (const [k, v] of Object.entries(env)) vi.stubEnv(k, v);
    vi.resetModules();
    return (await import('../../functions/db-poller/handler.ts')).handler as unknown as Handler;
  };
  const env = (table: string, options: Record<string, string>): Record<string, string> => ({
    AWS_ENDPOINT_URL: endpoint,
    AWS_REGION: LOCAL_REGION,
    AWS_ACCESS_KEY_ID: LOCAL_CREDENTIALS.accessKeyId,
    AWS_SECRET_ACCESS_KEY: LOCAL_CREDENTIALS.secretAccessKey,
    S3_FORCE_PATH_STYLE: 'true',
    SIGNALS_QUEUE_URL: resources.queues.signals.url,
    QUARANTINE_BUCKET: names.bucket,
    WATERMARK_TABLE: names.ledgerTable,
    DB_SECRET_ARN: secretArn,
    DB_SSL: 'false',
    DB_TABLE: table,
    DB_BATCH_SIZE: '100',
    MAX_QUEUE_DEPTH: '100000',
    POWERTOOLS_METRICS_DISABLED: 'true',
    POWERTOOLS_LOG_LEVEL: 'ERROR',
    ...options,
  });
  const invoke = (handler: Handler) =>
    handler({}, lambdaContext({ timeoutMs: 120_000, functionName: 'db-poller' }));
  /** Several tables (DB_TABLES, as the stack sets it): the shared settings of env(), no one-table variable. */
  const tablesEnv = (tables: readonly Record<string, unknown>[], options: Record<string, string> = {}) =>
    Object.fromEntries(
      Object.entries({ ...env('', options), DB_TABLES: JSON.stringify(tables) }).filter(
        ([k]) => k !== 'DB_TABLE',
      ),
    );
  /** An invocation by a table's schedule (its input names the table). */
  const invokeTable = (handler: Handler, table: string) =>
    handler(
      { table, scheduledTime: '2026-01-01T00:00:00Z', executionId: `e-${table}` },
      lambdaContext({ timeoutMs: 120_000, functionName: 'db-poller' }),
    );
  const drainSignals = () => drainSignalsOf(clients.sqs, resources.queues.signals.url);
  const count = async (sql: string): Promise<number> => {
    const { rows } = await db.query<{ n: number }>(sql);
    return rows[0]?.n ?? -1;
  };

  beforeAll(async () => {
    const url = new URL(inject('postgresUrl'));
    admin = new pg.Client({ connectionString: url.toString() });
    admin.on('error', (err) => console.warn(`[db-poller options test] admin connection: ${err.message}`));
    await admin.connect();
    await admin.query(`CREATE DATABASE "${dbName}"`);
    const dbUrl = new URL(url);
    dbUrl.pathname = `/${dbName}`;
    db = new pg.Pool({ connectionString: dbUrl.toString(), max: 4 });
    db.on('error', (err) => console.warn(`[db-poller options test] pool connection: ${err.message}`));
    resources = await createResources(clients, names, { visibilityTimeoutSeconds: { signals: 60 } });
    const sm = new SecretsManagerClient({ endpoint, region: LOCAL_REGION, credentials: LOCAL_CREDENTIALS });
    const secret = await sm.send(
      new CreateSecretCommand({
        Name: `${names.prefix}/db`,
        SecretString: JSON.stringify({
          username: url.username || 'postgres',
          password: url.password || 'trust-auth-needs-none',
          host: url.hostname,
          port: Number(url.port),
          dbname: dbName,
        }),
      }),
    );
    sm.destroy();
    secretArn = secret.ARN ?? '';
  });
  afterAll(async () => {
    vi.unstubAllEnvs();
    await db?.end();
    if (admin) {
      await admin.query(`DROP DATABASE IF EXISTS "${dbName}" WITH (FORCE)`).catch(() => undefined);
      await admin.end();
    }
    destroyClients(clients);
  });

  it('mark mode on an integer processed flag with a WHERE filter: two pollers send exactly the matching rows once, and mark only them', async () => {
    // Prepare: 1,000 rows; 1 in 4 of another tenant, 1 in 10 a note whose text looks like SQL.
    await db.query(`
      CREATE TABLE int_flag (
        id bigserial PRIMARY KEY, name text, value double precision, source text, timestamp timestamptz,
        tenant text NOT NULL, note text, processed smallint NOT NULL DEFAULT 0
      )`);
    await db.query(`
      INSERT INTO int_flag (name, value, source, timestamp, tenant, note)
      SELECT 'm', i, 'h', timestamp '2024-05-01 00:00:00+00' + i * interval '1 second',
        CASE WHEN i % 4 = 0 THEN 'other' ELSE 'acme' END,
        CASE WHEN i % 10 = 0 THEN 'x'') OR (''1''=''1' ELSE NULL END
      FROM generate_series(1, 1000) AS i`);
    // A string literal holding ") OR ('1'='1": lexed as the database lexes it, it stays a literal.
    const where = "tenant = 'acme' AND note IS DISTINCT FROM 'x'') OR (''1''=''1'";
    const options = { DB_MODE: 'mark', DB_PROCESSED_TYPE: 'integer', DB_WHERE: where };
    const pollers = [await coldStart(env('int_flag', options)), await coldStart(env('int_flag', options))];
    const expected = await count(
      `SELECT count(*)::int AS n FROM int_flag WHERE tenant = 'acme' AND note IS NULL`,
    );
    // Act
    const summaries = await Promise.all(pollers.map(invoke));
    const again = await invoke(pollers[0] as Handler);
    // Assess
    expect(expected).toBe(700);
    const signals = await drainSignals();
    const counts = countById(signals);
    expect(counts.size).toBe(700);
    expect([...counts.values()].every((n) => n === 1)).toBe(true);
    expect(summaries.reduce((n, s) => n + s.sent, 0)).toBe(700);
    expect(again).toMatchObject({ rows: 0, sent: 0 });
    expect(await count('SELECT count(*)::int AS n FROM int_flag WHERE processed = 1')).toBe(700);
    expect(
      await count(
        `SELECT count(*)::int AS n FROM int_flag WHERE processed = 0 AND tenant = 'acme' AND note IS NULL`,
      ),
    ).toBe(0);
    expect(await count('SELECT count(*)::int AS n FROM int_flag WHERE processed = 0')).toBe(300);
  });

  it('watermark mode from an initial watermark with a WHERE filter: only matching rows at or after it, then only new ones', async () => {
    // Prepare: 600 rows a second apart from 00:00:01; the initial watermark at 00:05:00 (row 300).
    await db.query(`
      CREATE TABLE wm_initial (
        id bigserial PRIMARY KEY, name text, value double precision, source text,
        timestamp timestamptz, updated_at timestamptz, kind text NOT NULL, processed boolean NOT NULL DEFAULT false
      )`);
    await db.query(`
      INSERT INTO wm_initial (name, value, source, timestamp, updated_at, kind)
      SELECT 'w', i, 'h', t, t, CASE WHEN i % 3 = 0 THEN 'skip' ELSE 'keep' END
      FROM generate_series(1, 600) AS i, LATERAL (SELECT timestamp '2024-05-01 00:00:00+00' + i * interval '1 second' AS t) AS x`);
    const handler = await coldStart(
      env('wm_initial', {
        DB_MODE: 'watermark',
        DB_COLUMNS: JSON.stringify({ updatedAt: 'updated_at' }),
        DB_WHERE: "kind = 'keep'",
        DB_INITIAL_WATERMARK: '2024-05-01T00:05:00Z',
        DB_WATERMARK_LOOKBACK_SECONDS: '0',
      }),
    );
    // Act
    const first = await invoke(handler);
    const firstSignals = await drainSignals();
    await db.query(`
      INSERT INTO wm_initial (name, value, source, timestamp, updated_at, kind)
      SELECT 'w', 1000 + i, 'h', t, t, CASE WHEN i % 2 = 0 THEN 'skip' ELSE 'keep' END
      FROM generate_series(1, 10) AS i, LATERAL (SELECT timestamp '2024-05-01 01:00:00+00' + i * interval '1 second' AS t) AS x`);
    const second = await invoke(handler);
    const secondSignals = await drainSignals();
    // Assess: rows 300..600 whose number is not a multiple of 3: 301 - 101 = 200; then 5 of the 10 added.
    expect(first).toMatchObject({ rows: 200, sent: 200, rejected: 0 });
    expect(firstSignals).toHaveLength(200);
    expect(Math.min(...firstSignals.map((s) => s.value))).toBe(301);
    expect(firstSignals.every((s) => s.value % 3 !== 0 && s.value >= 300)).toBe(true);
    expect(second).toMatchObject({ rows: 5, sent: 5 });
    expect(secondSignals.map((s) => s.value).sort((a, b) => a - b)).toEqual([1001, 1003, 1005, 1007, 1009]);
    const item = await clients.doc.send(
      new GetCommand({ TableName: names.ledgerTable, Key: { pk: 'watermark#wm_initial', sk: 'watermark' } }),
    );
    expect(item.Item).toMatchObject({ id: '609', value: '2024-05-01 01:00:09+00' });
  });

  it('watermark mode on a bigint version counter from an integer initial watermark', async () => {
    // Prepare
    await db.query(`
      CREATE TABLE wm_version (
        id bigserial PRIMARY KEY, name text, value double precision, source text, timestamp timestamptz,
        version bigint NOT NULL, processed boolean NOT NULL DEFAULT false
      )`);
    await db.query(`
      INSERT INTO wm_version (name, value, source, timestamp, version)
      SELECT 'v', i, 'h', timestamp '2024-05-01 00:00:00+00' + i * interval '1 second', 10 * i
      FROM generate_series(1, 250) AS i`);
    const handler = await coldStart(
      env('wm_version', {
        DB_MODE: 'watermark',
        DB_COLUMNS: JSON.stringify({ updatedAt: 'version' }),
        DB_INITIAL_WATERMARK: '1000',
      }),
    );
    // Act
    const summary = await invoke(handler);
    const signals = await drainSignals();
    // Assess: versions 1000..2500, rows 100..250.
    expect(summary).toMatchObject({ rows: 151, sent: 151, stoppedBy: 'drained' });
    expect(signals.map((s) => s.value).sort((a, b) => a - b)[0]).toBe(100);
    expect(countById(signals).size).toBe(151);
  });

  it('watermark mode never goes back before the initial watermark, not even to heal a watermark left in the future', async () => {
    // Prepare: 4 rows an hour old (before the initial watermark), 3 rows of the last minute; a watermark an
    // older version left in 2999 with no advancedAt, which is moved back before every row.
    await db.query(`
      CREATE TABLE wm_bound (
        id bigserial PRIMARY KEY, name text, value double precision, source text, timestamp timestamptz,
        processed boolean NOT NULL DEFAULT false
      )`);
    await db.query(`
      INSERT INTO wm_bound (name, value, source, timestamp)
      SELECT 'old', i, 'h', now() - interval '1 hour' + i * interval '1 second' FROM generate_series(1, 4) AS i`);
    await db.query(`
      INSERT INTO wm_bound (name, value, source, timestamp)
      SELECT 'new', 10 + i, 'h', now() - interval '1 minute' + i * interval '1 second' FROM generate_series(1, 3) AS i`);
    const initial = new Date(Date.now() - 30 * 60_000).toISOString();
    await clients.doc.send(
      new PutCommand({
        TableName: names.ledgerTable,
        Item: {
          pk: 'watermark#wm_bound',
          sk: 'watermark',
          value: '2999-01-01 00:00:00+00',
          id: '1',
          version: 3,
        },
      }),
    );
    const handler = await coldStart(env('wm_bound', { DB_MODE: 'watermark', DB_INITIAL_WATERMARK: initial }));
    // Act
    const healing = await invoke(handler);
    const signals = await drainSignals();
    // Assess: moved back, then only the rows at or after the initial watermark read.
    expect(healing).toMatchObject({ rewound: { to: { value: '-infinity' } }, rows: 3, sent: 3 });
    expect(signals.map((s) => s.name).sort()).toEqual(['new', 'new', 'new']);
  });

  it('two tables in one run, each on its own schedule: a mark table (integer flag, filter) and a watermark table (initial watermark) polled at the same time, every matching row sent once', async () => {
    // Prepare: 400 mark rows, 1 in 4 of another tenant; 300 watermark rows a second apart, the initial
    // watermark at row 101.
    await db.query(`
      CREATE TABLE mt_mark (
        id bigserial PRIMARY KEY, name text, value double precision, source text, timestamp timestamptz,
        tenant text NOT NULL, processed integer NOT NULL DEFAULT 0
      )`);
    await db.query(`
      INSERT INTO mt_mark (name, value, source, timestamp, tenant)
      SELECT 'mark', i, 'h', timestamp '2024-05-01 00:00:00+00' + i * interval '1 second',
        CASE WHEN i % 4 = 0 THEN 'other' ELSE 'acme' END
      FROM generate_series(1, 400) AS i`);
    await db.query(`
      CREATE TABLE mt_wm (
        id bigserial PRIMARY KEY, metric text, reading double precision, timestamp timestamptz,
        updated_at timestamptz NOT NULL
      )`);
    await db.query(`
      INSERT INTO mt_wm (metric, reading, timestamp, updated_at)
      SELECT 'wm', i, t, t
      FROM generate_series(1, 300) AS i, LATERAL (SELECT timestamp '2024-06-01 00:00:00+00' + i * interval '1 second' AS t) AS x`);
    const tables = [
      { table: 'mt_mark', mode: 'mark', processedType: 'integer', where: "tenant = 'acme'" },
      {
        table: 'mt_wm',
        mode: 'watermark',
        columns: { name: 'metric', value: 'reading', source: 'metric', updatedAt: 'updated_at' },
        initialWatermark: '2024-06-01T00:01:41Z',
      },
    ];
    // Two instances of the function, as Lambda runs concurrent invocations.
    const a = await coldStart(tablesEnv(tables));
    const b = await coldStart(tablesEnv(tables));
    // Act: both tables' schedules fire at once, and the mark table's twice (two instances).
    const [markA, markB, wm] = await Promise.all([
      invokeTable(a, 'mt_mark'),
      invokeTable(b, 'mt_mark'),
      invokeTable(a, 'mt_wm'),
    ]);
    const signals = await drainSignals();
    const [markAgain, wmAgain] = await Promise.all([invokeTable(b, 'mt_mark'), invokeTable(b, 'mt_wm')]);
    const again = await drainSignals();
    // Assess: mark: the 300 acme rows, each once, marked 1; the 100 others untouched.
    const counts = countById(signals);
    const markIds = [...counts.keys()].filter((id) => id.startsWith('db:mt_mark:'));
    const wmIds = [...counts.keys()].filter((id) => id.startsWith('db:mt_wm:'));
    expect(markIds).toHaveLength(300);
    expect(markA.sent + markB.sent).toBe(300);
    expect([markA.mode, wm.mode]).toEqual(['mark', 'watermark']);
    expect(await count('SELECT count(*)::int AS n FROM mt_mark WHERE processed = 1')).toBe(300);
    expect(
      await count("SELECT count(*)::int AS n FROM mt_mark WHERE processed = 0 AND tenant = 'other'"),
    ).toBe(100);
    // Assess: watermark: rows 101..300 (at or after the initial watermark), each once, with its own mapping.
    expect(wmIds).toHaveLength(200);
    expect(wm).toMatchObject({ rows: 200, sent: 200, rejected: 0 });
    const wmSignals = signals.filter((s) => s.id.startsWith('db:mt_wm:'));
    expect(Math.min(...wmSignals.map((s) => s.value))).toBe(101);
    expect(new Set(wmSignals.map((s) => `${s.name}/${s.source}`))).toEqual(new Set(['wm/wm']));
    expect(signals).toHaveLength(500);
    expect([...counts.values()].every((n) => n === 1)).toBe(true);
    // Assess: each table keeps its own progress: no second send of a new row, the watermark item its own.
    expect(markAgain).toMatchObject({ rows: 0, sent: 0 });
    expect(wmAgain).toMatchObject({ rows: 0, sent: 0 });
    expect(again.filter((s) => s.id.startsWith('db:mt_mark:'))).toHaveLength(0);
    const items = await Promise.all(
      ['mt_wm', 'mt_mark'].map((t) =>
        clients.doc.send(
          new GetCommand({ TableName: names.ledgerTable, Key: { pk: `watermark#${t}`, sk: 'watermark' } }),
        ),
      ),
    );
    expect(items[0]?.Item).toMatchObject({ id: '300', value: '2024-06-01 00:05:00+00' });
    expect(items[1]?.Item).toBeUndefined();
  });

  it('refuses an invocation that names no table, or a table it does not poll, saying which it polls', async () => {
    // Prepare
    const handler = await coldStart(tablesEnv([{ table: 'mt_a' }, { table: 'mt_b', mode: 'watermark' }]));
    // Act
    const none = invoke(handler);
    const unknown = invokeTable(handler, 'mt_c');
    // Assess
    await expect(none).rejects.toThrow(
      'the invocation names no table: its input must be {"table": "<name>"}, one of mt_a, mt_b (DB_TABLES)',
    );
    await expect(unknown).rejects.toThrow(
      'the invocation names the table "mt_c", which this poller does not poll (mt_a, mt_b)',
    );
  });
});
