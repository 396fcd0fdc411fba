import { CreateSecretCommand, SecretsManagerClient } from '@aws-sdk/client-secrets-manager';
import type { Context, SQSEvent } from 'aws-lambda';
import pg from 'pg';
import { afterAll, afterEach, beforeAll, describe, expect, inject, it, vi } from 'vitest';
import { loadDbPollerConfig } from '#shared/config.ts';
import { createObservability } from '#shared/observability.ts';
import { settings } from '#shared/settings.ts';
import type { DbPool, PollSummary } from '../../functions/db-poller/poller.ts';
import { poll } from '../../functions/db-poller/poller.ts';
import { watermarkSignalId } from '../../functions/db-poller/rejects.ts';
import { lambdaContext } from '../../local/event-sources/lambda-context.ts';
import { LOCAL_CREDENTIALS, LOCAL_REGION } from '../../local/runtime/clients.ts';
import { uniquePrefix } from '../../local/runtime/names.ts';
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

  it("watermark mode with a far-future row and 'infinity' among the rows, and a stall an older version left: every row scored once", async () => {
    // Prepare: 40 rows from 2 min ago, with a row dated 2999 and one dated 'infinity' among them; the
    // watermark is the event time (the default mapping). Metrics on, to read the stall metric's EMF.
    const table = 'rdb_future';
    const skew = settings.dbPoller.watermarkSkewSeconds;
    await db.query(`
      CREATE TABLE "${table}" (
        id bigserial PRIMARY KEY, name text, value double precision, source text,
        timestamp timestamptz, processed boolean NOT NULL DEFAULT false)`);
    await db.query(`CREATE INDEX ON "${table}" (timestamp, id)`);
    const insertRows = (n: number, from: string, step: string) =>
      db.query(`
        INSERT INTO "${table}" (name, value, source, timestamp)
        SELECT '${table}', (i % 13) * 1.5, 'rdb', now() - interval '${from}' + i * interval '${step}'
        FROM generate_series(1, ${n}) AS i`);
    await insertRows(20, '120 seconds', '1 second');
    await db.query(`
      INSERT INTO "${table}" (name, value, source, timestamp) VALUES
        ('${table}', 1, 'rdb', '2999-06-01T00:00:00Z'), ('${table}', 2, 'rdb', 'infinity')`);
    await insertRows(20, '100 seconds', '1 second');
    const outOfRange = (
      await db.query<{ id: string }>(`SELECT id::text FROM "${table}" WHERE timestamp > now() ORDER BY id`)
    ).rows.map((r) => r.id);
    const handler = await coldStart({ ...env(table, 'watermark'), POWERTOOLS_METRICS_DISABLED: 'false' });
    const stalledMetric: number[] = [];
    const stalledByTable: number[] = [];
    const pollOnce = async () => {
      const write = process.stdout.write.bind(process.stdout);
      const spy = vi.spyOn(process.stdout, 'write').mockImplementation((chunk: string | Uint8Array) => {
        const text = String(chunk);
        if (!text.includes('"CloudWatchMetrics"')) return write(chunk);
        for (const line of text.split('\n').filter((l) => l.includes('"WatermarkStalledRows"'))) {
          // Each poll emits it twice: under `service` (the alarm's) and again under its table.
          const emf = JSON.parse(line) as { WatermarkStalledRows: number; table?: string };
          (emf.table === undefined ? stalledMetric : stalledByTable).push(Number(emf.WatermarkStalledRows));
        }
        return true;
      });
      try {
        return await invoke(handler);
      } finally {
        spy.mockRestore();
      }
    };

    // Act: a poll; 30 more rows; a poll; then an older version's poll moves the watermark to the 2999 row
    // (as it did before the horizon) and 20 rows are written behind it; two polls of this version.
    const first = await pollOnce();
    await insertRows(30, '5 seconds', '100 milliseconds');
    const second = await pollOnce();
    const { GetCommand, PutCommand } = await import('@aws-sdk/lib-dynamodb');
    const key = { pk: `watermark#${table}`, sk: 'watermark' };
    const current = await p.clients.doc.send(
      new GetCommand({ TableName: p.names.ledgerTable, Key: key, ConsistentRead: true }),
    );
    await p.clients.doc.send(
      new PutCommand({
        TableName: p.names.ledgerTable,
        Item: {
          ...key,
          value: '2999-06-01 00:00:00+00',
          id: outOfRange[0],
          version: Number(current.Item?.version) + 1,
          table,
          advancedAt: new Date().toISOString(),
        },
      }),
    );
    await insertRows(20, '3 seconds', '100 milliseconds');
    const healing = await pollOnce();
    const healed = await pollOnce();
    p.start('signals', countingScorer);
    const normal = (
      await db.query<{ id: string; wm: string }>(
        `SELECT id::text, timestamp::text AS wm FROM "${table}" WHERE timestamp <= now() ORDER BY id`,
      )
    ).rows.map((r) => watermarkSignalId(table, { pulse_id: r.id, pulse_wm: r.wm }));
    // Every message was sent before the scorer started: once the queue is empty, all are scored.
    await waitFor(
      `${table}: the signals queue drained`,
      async () => (await p.queueDepth('signals')) === 0,
      90_000,
    );

    // Assess: each of the 90 rows within the clock scored once; the two others quarantined, not scored.
    expect(normal).toHaveLength(90);
    const { quarantined } = await expectExactlyOnce(p, {
      scope: scope(table),
      scoredIds: normal,
      series: [{ source: 'rdb', name: table, count: 90 }],
      quarantine: {
        under: `db/${table}/`,
        refs: [
          `db:${table}:${outOfRange[0]}@2999-06-01T00:00:00.000000Z`,
          `db:${table}:${outOfRange[1]}@infinity`,
        ],
      },
    });
    expect(quarantined.map((l) => l.reason)).toEqual([
      expect.stringContaining(`is past the database's now() + ${skew} s`),
      "timestamp is 'infinity': watermark mode never reads this row",
    ]);
    expect(quarantined.every((l) => l.key.includes('/watermark-out-of-range/'))).toBe(true);
    // The watermark within the database's now() plus the skew after every poll of this version.
    for (const s of [first, second, healing, healed]) {
      const { rows } = await db.query<{ ok: boolean }>(
        'SELECT $1::timestamptz <= now() + make_interval(secs => $2) AS ok',
        [s.watermark?.value, skew],
      );
      expect(rows[0]?.ok, `watermark ${s.watermark?.value}`).toBe(true);
    }
    expect([first, second, healing, healed].map((s) => s.outOfRange)).toEqual([2, 2, 2, 2]);
    // The stall: none at first; counted (summary and metric) by the poll that found the watermark in the
    // future and moved it back; cleared at the next.
    expect(healing.rewound?.from).toEqual({ value: '2999-06-01 00:00:00+00', id: outOfRange[0] });
    expect(healing.stalled).toBeGreaterThanOrEqual(20);
    expect([first.stalled, second.stalled, healed.stalled]).toEqual([0, 0, 0]);
    expect(stalledMetric).toEqual([0, 0, healing.stalled, 0]);
    expect(stalledByTable).toEqual(stalledMetric);
    expect(await unprocessed(table)).toBe(92);
  });
});
