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
});
