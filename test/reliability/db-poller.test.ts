import { CreateSecretCommand, SecretsManagerClient } from '@aws-sdk/client-secrets-manager';
import type { Context, SQSEvent } from 'aws-lambda';
import pg from 'pg';
import { afterAll, afterEach, beforeAll, describe, expect, inject, it, vi } from 'vitest';
import type { DbPool, PollSummary } from '../../functions/db-poller/poller.ts';
import { poll } from '../../functions/db-poller/poller.ts';
import { LOCAL_CREDENTIALS, LOCAL_REGION } from '../../local/clients.ts';
import { lambdaContext } from '../../local/lambda-context.ts';
import { uniquePrefix } from '../../local/names.ts';
import { loadDbPollerConfig } from '../../shared/config.ts';
import { createObservability } from '../../shared/observability.ts';
import { decodeSignals } from '../helpers/signals.ts';
import { startWorker } from '../helpers/workers.ts';
import { type Handler, setUpPipeline, waitFor } from '../integration/pipeline.ts';
import { expectExactlyOnce, type Pipeline } from './invariants.ts';

/**
 * The db-poller under concurrency and crashes, against a real PostgreSQL and the scorer: pollers
 * racing on one table, and a poller that dies between sending its rows and committing their mark.
 * Every row ends scored exactly once and (mark mode) marked processed.
 */

type PollHandler = (event: unknown, context: Context) => Promise<PollSummary>;

describe('db-poller: concurrent pollers and crashes between send and commit', () => {
  const endpoint = inject('motoEndpoint');
  let p: Pipeline;
  let admin: pg.Client;
  let db: pg.Pool;
  let dbName: string;
  let secretArn: string;
  /** How many times the scorer was handed each signal id (redeliveries included). */
  const handed = new Map<string, number>();

  const env = (table: string, mode: 'mark' | 'watermark'): Record<string, string> => ({
    AWS_ENDPOINT_URL: endpoint,
    AWS_REGION: LOCAL_REGION,
    AWS_ACCESS_KEY_ID: LOCAL_CREDENTIALS.accessKeyId,
    AWS_SECRET_ACCESS_KEY: LOCAL_CREDENTIALS.secretAccessKey,
    S3_FORCE_PATH_STYLE: 'true',
    SIGNALS_QUEUE_URL: p.resources.queues.signals.url,
    QUARANTINE_BUCKET: p.names.bucket,
    WATERMARK_TABLE: p.names.ledgerTable,
    DB_SECRET_ARN: secretArn,
    DB_SSL: 'false',
    DB_TABLE: table,
    DB_MODE: mode,
    DB_BATCH_SIZE: '100',
    MAX_QUEUE_DEPTH: '100000',
    POWERTOOLS_METRICS_DISABLED: 'true',
    POWERTOOLS_LOG_LEVEL: 'ERROR',
  });
  /** A cold start of the real handler: a fresh module, its own configuration, secret cache and pool. */
  const coldStart = async (vars: Record<string, string>): Promise<PollHandler> => {
    for (const [k, v] of Object.entries(vars)) vi.stubEnv(k, v);
    vi.resetModules();
    return (await import('../../functions/db-poller/handler.ts')).handler as unknown as PollHandler;
  };
  const invoke = (handler: PollHandler) =>
    handler({}, lambdaContext({ timeoutMs: 120_000, functionName: 'db-poller' }));
  const createTable = async (table: string, rows: number) => {
    await db.query(`
      CREATE TABLE "${table}" (
        id bigserial PRIMARY KEY, name text, value double precision, source text,
        timestamp timestamptz, processed boolean NOT NULL DEFAULT false)`);
    await db.query(`
      INSERT INTO "${table}" (name, value, source, timestamp)
      SELECT '${table}', (i % 13) * 1.5, 'rdb', timestamp '2024-05-01 00:00:00+00' + i * interval '1 second'
      FROM generate_series(1, ${rows}) AS i`);
  };
  const unprocessed = async (table: string) =>
    (await db.query<{ n: number }>(`SELECT count(*)::int AS n FROM "${table}" WHERE NOT processed`)).rows[0]
      ?.n;
  const ids = (table: string, n: number) => Array.from({ length: n }, (_, i) => `db:${table}:${i + 1}`);
  const scoredAll = (table: string, n: number) =>
    waitFor(
      `${table}: every row scored, the queue drained`,
      async () => ((await p.series('rdb', table))?.count ?? 0) >= n && (await p.queueDepth('signals')) === 0,
      90_000,
    );
  const scope = (table: string) => (s: { id: string }) => s.id.startsWith(`db:${table}:`);

  beforeAll(async () => {
    p = await setUpPipeline(endpoint, uniquePrefix('rdb'), { visibility: { signals: 4 } });
    dbName = `pulse_${p.names.prefix}`;
    const url = new URL(inject('postgresUrl'));
    admin = new pg.Client({ connectionString: url.toString() });
    await admin.connect();
    await admin.query(`CREATE DATABASE "${dbName}"`);
    const dbUrl = new URL(url);
    dbUrl.pathname = `/${dbName}`;
    db = new pg.Pool({ connectionString: dbUrl.toString(), max: 4 });
    // As the handler's pool does (LazyDbPool): a connection that dies is reported here, not thrown.
    db.on('error', () => {});
    const sm = new SecretsManagerClient({ endpoint, region: LOCAL_REGION, credentials: LOCAL_CREDENTIALS });
    const secret = await sm.send(
      new CreateSecretCommand({
        Name: `${p.names.prefix}/db`,
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
  afterEach(async () => {
    await p?.stopAll();
  });
  afterAll(async () => {
    vi.unstubAllEnvs();
    await p?.stopAll();
    await db?.end();
    if (admin) {
      await admin.query(`DROP DATABASE IF EXISTS "${dbName}" WITH (FORCE)`).catch(() => undefined);
      await admin.end();
    }
  });

  /** The scorer, counting what it is handed. */
  const countingScorer: Handler = async (event: SQSEvent, context) => {
    for (const r of event.Records) {
      for (const s of decodeSignals(r.body)) {
        handed.set(s.id, (handed.get(s.id) ?? 0) + 1);
      }
    }
    return p.scorer(event, context);
  };

  it('three pollers at once in mark mode: every row sent once, marked, scored once', async () => {
    // Prepare
    const table = 'rdb_mark3';
    await createTable(table, 600);
    const pollers = [];
    for (let i = 0; i < 3; i++) pollers.push(await coldStart(env(table, 'mark')));

    // Act
    const summaries = await Promise.all(pollers.map(invoke));
    p.start('signals', countingScorer);
    await scoredAll(table, 600);

    // Assess: FOR UPDATE SKIP LOCKED split the rows; none sent twice.
    expect(summaries.reduce((n, s) => n + s.rows, 0)).toBe(600);
    expect(summaries.reduce((n, s) => n + s.sent, 0)).toBe(600);
    expect(await unprocessed(table)).toBe(0);
    expect(ids(table, 600).every((id) => handed.get(id) === 1)).toBe(true);
    await expectExactlyOnce(p, {
      scope: scope(table),
      scoredIds: ids(table, 600),
      series: [{ source: 'rdb', name: table, count: 600 }],
      quarantine: { under: `db/${table}/`, refs: [] },
    });
  });

  it('three pollers at once in watermark mode: every row scored once, whatever the lost races re-sent', async () => {
    // Prepare
    const table = 'rdb_wm3';
    await createTable(table, 600);
    const pollers = [];
    for (let i = 0; i < 3; i++) pollers.push(await coldStart(env(table, 'watermark')));

    // Act: three at once, then one more run to pick up whatever the losers left.
    const summaries = await Promise.all(pollers.map(invoke));
    const last = await invoke(pollers[0] as PollHandler);
    p.start('signals', countingScorer);
    await scoredAll(table, 600);

    // Assess: each row's one version scored once; the database untouched.
    expect(last.rows).toBe(0);
    expect(summaries.reduce((n, s) => n + s.sent, 0)).toBeGreaterThanOrEqual(600);
    const scored = (await p.scoreRecords()).filter((s) => scope(table)({ id: s.id }));
    const rowIds = scored
      .map((s) => String(s.id).replace(/^db:rdb_wm3:(\d+)@.*$/, '$1'))
      .sort((a, b) => +a - +b);
    expect(rowIds).toEqual(Array.from({ length: 600 }, (_, i) => String(i + 1)));
    await expectExactlyOnce(p, {
      scope: scope(table),
      scoredIds: scored.map((s) => String(s.id)),
      series: [{ source: 'rdb', name: table, count: 600 }],
      quarantine: { under: `db/${table}/`, refs: [] },
    });
    expect(await unprocessed(table)).toBe(600);
  });

  it('a poller killed (SIGKILL) between send and commit: its rows are sent again and scored once', async () => {
    // Prepare
    const table = 'rdb_killed';
    await createTable(table, 250);

    // Act: the child claims rows 1-100, sends them, and dies before marking them.
    const worker = await startWorker('test/integration/workers/db-poller-worker.ts', [], env(table, 'mark'));
    expect(await worker.exited).toBe('SIGKILL');
    expect(worker.output).not.toContain('finished without dying');
    const afterCrash = await unprocessed(table);
    const handler = await coldStart(env(table, 'mark'));
    const next = await waitFor('the next poll to get the rows (the dead session is gone)', async () => {
      const s = await invoke(handler);
      return s.rows > 0 ? s : undefined;
    });
    p.start('signals', countingScorer);
    await scoredAll(table, 250);

    // Assess: nothing was marked by the dead poller; the next one re-sent rows 1-100 with the same ids.
    expect(afterCrash).toBe(250);
    expect(next).toMatchObject({ rows: 250, sent: 250 });
    expect(await unprocessed(table)).toBe(0);
    const all = ids(table, 250);
    expect(all.slice(0, 100).every((id) => (handed.get(id) ?? 0) >= 2)).toBe(true);
    await expectExactlyOnce(p, {
      scope: scope(table),
      scoredIds: all,
      series: [{ source: 'rdb', name: table, count: 250 }],
      quarantine: { under: `db/${table}/`, refs: [] },
    });
  });

  it("a poller whose transaction's connection is destroyed before the commit: rows re-sent, scored once", async () => {
    // Prepare: the real poll logic with a pool whose session loses its socket at the mark.
    const table = 'rdb_conn';
    await createTable(table, 150);
    const config = loadDbPollerConfig(env(table, 'mark'));
    const { logger, metrics } = createObservability('db-poller');
    const cutting: DbPool = {
      query: (text, values) => db.query(text, values),
      async connect() {
        const session = await db.connect();
        return {
          query(text: string, values?: unknown[]) {
            if (/^\s*UPDATE\b/i.test(text)) {
              (
                session as unknown as { connection: { stream: { destroy(): void } } }
              ).connection.stream.destroy();
            }
            return session.query(text, values);
          },
          release: (err?: Error | boolean) => session.release(err),
          on: (event: 'error', listener: (err: Error) => void) => session.on(event, listener),
          removeListener: (event: 'error', listener: (err: Error) => void) =>
            session.removeListener(event, listener),
        };
      },
    };
    const deps = { ...p.clients, logger, metrics, config, remainingTimeMs: () => 60_000 };

    // Act
    const failed = await poll({ ...deps, db: cutting }).then(
      () => undefined,
      (err: unknown) => err,
    );
    const afterCut = await unprocessed(table);
    const retry = await waitFor('the next poll to get the rows', async () => {
      const s = await poll({ ...deps, db });
      return s.rows > 0 ? s : undefined;
    });
    p.start('signals', countingScorer);
    await scoredAll(table, 150);

    // Assess
    expect(failed).toBeInstanceOf(Error);
    expect(afterCut).toBe(150);
    expect(retry).toMatchObject({ rows: 150, sent: 150 });
    expect(await unprocessed(table)).toBe(0);
    const all = ids(table, 150);
    expect(all.slice(0, 100).every((id) => (handed.get(id) ?? 0) >= 2)).toBe(true);
    await expectExactlyOnce(p, {
      scope: scope(table),
      scoredIds: all,
      series: [{ source: 'rdb', name: table, count: 150 }],
      quarantine: { under: `db/${table}/`, refs: [] },
    });
  });
});
