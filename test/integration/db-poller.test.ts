import { randomBytes } from 'node:crypto';
import { CreateSecretCommand, SecretsManagerClient } from '@aws-sdk/client-secrets-manager';
import { GetCommand, PutCommand } from '@aws-sdk/lib-dynamodb';
import type { Context } from 'aws-lambda';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, inject, it, vi } from 'vitest';
import { settings } from '#shared/settings.ts';
import type { Signal } from '#shared/signal.ts';
import type { PollSummary } from '../../functions/db-poller/poller.ts';
import { lambdaContext } from '../../local/event-sources/lambda-context.ts';
import { destroyClients, LOCAL_CREDENTIALS, LOCAL_REGION, makeClients } from '../../local/runtime/clients.ts';
import { resourceNames } from '../../local/runtime/names.ts';
import { createResources, type LocalResources } from '../../local/runtime/resources.ts';
import { countById, drainSignals as drainSignalsOf } from '../helpers/signals.ts';
import { waitUntil } from '../helpers/wait.ts';

/**
 * The db-poller against a real PostgreSQL 15 (test/setup/postgres.ts) and moto (SQS, S3, DynamoDB,
 * Secrets Manager): the real handler, its credentials read from a secret, rows claimed with
 * FOR UPDATE SKIP LOCKED by concurrent pollers, and watermark mode across inserts and updates.
 */

type Handler = (event: unknown, context: Context) => Promise<PollSummary>;

const TABLE_DDL = (table: string) => `
  CREATE TABLE "${table}" (
    id bigserial PRIMARY KEY,
    name text,
    value double precision,
    source text,
    timestamp timestamptz,
    processed boolean NOT NULL DEFAULT false
  )`;

describe('db-poller (PostgreSQL + moto)', () => {
  const endpoint = inject('motoEndpoint');
  const clients = makeClients(endpoint);
  const names = resourceNames(`dbp${randomBytes(3).toString('hex')}`);
  const dbName = `pulse_${names.prefix}`;
  let resources: LocalResources;
  let admin: pg.Client;
  let db: pg.Pool;
  let secretArn: string;

  /** A cold start of the real handler (a fresh module: its own config, secret cache and pool). */
  const coldStart = async (env: Record<string, string>): Promise<Handler> => {
    for (const [k, v] of Object.entries(env)) vi.stubEnv(k, v);
    vi.resetModules();
    return (await import('../../functions/db-poller/handler.ts')).handler as unknown as Handler;
  };
  const env = (table: string, mode: 'mark' | 'watermark'): Record<string, string> => ({
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
    DB_MODE: mode,
    MAX_QUEUE_DEPTH: '100000',
    POWERTOOLS_METRICS_DISABLED: 'true',
    POWERTOOLS_LOG_LEVEL: 'ERROR',
  });
  const invoke = (handler: Handler) =>
    handler({}, lambdaContext({ timeoutMs: 120_000, functionName: 'db-poller' }));

  const drainSignals = () => drainSignalsOf(clients.sqs, resources.queues.signals.url);

  beforeAll(async () => {
    const url = new URL(inject('postgresUrl'));
    admin = new pg.Client({ connectionString: url.toString() });
    // The test's own connections: a server ending one while it idles is not what these tests are about,
    // and without a listener it would be an uncaught error. The pollers' own connections are not covered.
    admin.on('error', (err) => console.warn(`[db-poller test] admin connection: ${err.message}`));
    await admin.connect();
    await admin.query(`CREATE DATABASE "${dbName}"`);
    const dbUrl = new URL(url);
    dbUrl.pathname = `/${dbName}`;
    db = new pg.Pool({ connectionString: dbUrl.toString(), max: 4 });
    db.on('error', (err) => console.warn(`[db-poller test] pool connection: ${err.message}`));

    resources = await createResources(clients, names, { visibilityTimeoutSeconds: { signals: 60 } });
    const sm = new SecretsManagerClient({ endpoint, region: LOCAL_REGION, credentials: LOCAL_CREDENTIALS });
    const secret = await sm.send(
      new CreateSecretCommand({
        Name: `${names.prefix}/db`,
        SecretString: JSON.stringify({
          engine: 'postgres',
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

  it('three pollers at once over 10,000 rows: every row sent exactly once and marked processed', async () => {
    // Prepare
    await db.query(TABLE_DDL('signals'));
    await db.query(`
      INSERT INTO signals (name, value, source, timestamp)
      SELECT 'load', i * 0.5, 'host-' || (i % 7), timestamp '2024-05-01 00:00:00+00' + i * interval '1 second'
      FROM generate_series(1, 10000) AS i`);
    const pollers = [];
    for (let i = 0; i < 3; i++) pollers.push(await coldStart(env('signals', 'mark')));
    // Act
    const started = performance.now();
    const summaries = await Promise.all(pollers.map(invoke));
    const elapsedMs = performance.now() - started;
    // Assess
    const signals = await drainSignals();
    const counts = countById(signals);
    const { rows: ids } = await db.query<{ id: string }>('SELECT id::text FROM signals ORDER BY id');
    expect(ids).toHaveLength(10_000);
    expect(counts.size).toBe(10_000);
    expect([...counts.values()].every((n) => n === 1)).toBe(true);
    expect(ids.every(({ id }) => counts.get(`db:signals:${id}`) === 1)).toBe(true);
    const { rows: left } = await db.query<{ n: number }>(
      'SELECT count(*)::int AS n FROM signals WHERE NOT processed',
    );
    expect(left[0]?.n).toBe(0);
    expect(summaries.reduce((n, s) => n + s.rows, 0)).toBe(10_000);
    expect(summaries.every((s) => s.stoppedBy === 'drained')).toBe(true);
    const sample = signals.find((s) => s.id === 'db:signals:2');
    expect(sample).toEqual({
      id: 'db:signals:2',
      name: 'load',
      value: 1,
      source: 'host-2',
      timestamp: '2024-05-01T00:00:02.000Z',
      origin: { kind: 'db', ref: 'db:signals:2' },
    });
    console.info(
      `[db-poller] 10,000 rows, 3 pollers: ${elapsedMs.toFixed(0)} ms, ` +
        `${Math.round(10_000 / (elapsedMs / 1000))} rows/s; rows per poller ${summaries.map((s) => s.rows).join('/')}, ` +
        `rounds ${summaries.map((s) => s.rounds).join('/')}, ${signals.length} signals in SQS messages`,
    );
  });

  it('quarantines rows that fail validation and marks them, so they are not polled again', async () => {
    // Prepare
    await db.query(TABLE_DDL('bad_rows'));
    await db.query(`
      INSERT INTO bad_rows (name, value, source, timestamp) VALUES
        ('ok', 1, NULL, '2024-05-01T00:00:00Z'),
        (NULL, 2, 's', '2024-05-01T00:00:00Z'),
        ('nan', 'NaN', 's', '2024-05-01T00:00:00Z'),
        ('no-ts', 4, 's', NULL)`);
    const handler = await coldStart(env('bad_rows', 'mark'));
    // Act
    const first = await invoke(handler);
    const again = await invoke(handler);
    // Assess
    expect(first).toMatchObject({ rows: 4, sent: 1, rejected: 3 });
    expect(again).toMatchObject({ rows: 0 });
    const signals = await drainSignals();
    expect(signals.map((s) => [s.id, s.source])).toEqual([['db:bad_rows:1', 'bad_rows']]);
    const day = new Date().toISOString().slice(0, 10);
    const body = await clients.s3.send(
      new (await import('@aws-sdk/client-s3')).GetObjectCommand({
        Bucket: names.bucket,
        Key: `rejects/db/bad_rows/${day}/2-4.ndjson`,
      }),
    );
    const lines = ((await body.Body?.transformToString()) ?? '')
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l));
    expect(lines.map((l: { ref: string; reason: string }) => [l.ref, l.reason])).toEqual([
      ['db:bad_rows:2', 'name is required'],
      ['db:bad_rows:3', 'value must be finite, got NaN'],
      ['db:bad_rows:4', 'timestamp is required'],
    ]);
    const { rows } = await db.query<{ n: number }>(
      'SELECT count(*)::int AS n FROM bad_rows WHERE NOT processed',
    );
    expect(rows[0]?.n).toBe(0);
  });

  it('watermark mode after rows are added and updated: none missed, repeats only from the lookback and identical', async () => {
    // Prepare: 1,200 rows, read in rounds of 500.
    await db.query(TABLE_DDL('wm_rows'));
    await db.query(`
      INSERT INTO wm_rows (name, value, source, timestamp)
      SELECT 'wm', i, 'h', timestamp '2024-05-01 00:00:00+00' + i * interval '1 millisecond' + interval '17 microseconds'
      FROM generate_series(1, 1200) AS i`);
    const handler = await coldStart(env('wm_rows', 'watermark'));
    const first = await invoke(handler);
    const firstSignals = await drainSignals();
    // Act: 150 rows added, 100 rows updated (a new value and a newer timestamp), then two more polls.
    await db.query(`
      INSERT INTO wm_rows (name, value, source, timestamp)
      SELECT 'wm', 5000 + i, 'h', timestamp '2024-05-02 00:00:00+00' + i * interval '1 millisecond'
      FROM generate_series(1, 150) AS i`);
    await db.query(`
      UPDATE wm_rows SET value = value + 100000, timestamp = timestamp '2024-05-03 00:00:00.123456+00' + id * interval '1 microsecond'
      WHERE id % 12 = 0 AND id <= 1200`);
    const second = await invoke(handler);
    const secondSignals = await drainSignals();
    const third = await invoke(handler);
    const thirdSignals = await drainSignals();
    // Assess
    expect(first).toMatchObject({ rows: 1200, sent: 1200, rounds: 3, reread: 0 });
    expect(firstSignals).toHaveLength(1200);
    // The lookback (60 s behind the watermark) reads again every row up to the watermark (the 1,200 span
    // 1.2 s) less the 100 updated since, which are now past it; the next poll, those 100 updated versions.
    expect(second).toMatchObject({ rows: 250, sent: 250, reread: 1100 });
    expect(third).toMatchObject({ rows: 0, sent: 0, reread: 100 });
    // What the lookback sends again is the same signal, id and all: the scorer drops it.
    const byId = new Map(firstSignals.map((s) => [s.id, s]));
    const repeats: Signal[] = [];
    for (const s of [...secondSignals, ...thirdSignals]) {
      if (byId.has(s.id)) repeats.push(s);
      else byId.set(s.id, s);
    }
    expect(repeats).toHaveLength(1100 + 100);
    for (const s of repeats) expect(s).toEqual(byId.get(s.id));
    const all = [...byId.values()];
    const counts = countById(all);
    expect(counts.size).toBe(1200 + 250);
    // Every version of every row: 1,200 originals, 150 added, 100 updated versions.
    const rowIds = (signals: Signal[]) =>
      new Set(signals.map((s) => s.id.replace(/^db:wm_rows:(\d+)@.*$/, '$1')));
    expect(rowIds(firstSignals).size).toBe(1200);
    const updated = all.filter((s) => s.value >= 100000);
    expect(updated).toHaveLength(100);
    expect(all.filter((s) => s.value >= 5000 && s.value < 100000)).toHaveLength(150);
    expect(firstSignals.find((s) => s.id.startsWith('db:wm_rows:12@'))?.id).toBe(
      'db:wm_rows:12@2024-05-01T00:00:00.012017Z',
    );
    expect(updated.find((s) => s.id.startsWith('db:wm_rows:12@'))).toMatchObject({
      id: 'db:wm_rows:12@2024-05-03T00:00:00.123468Z',
      value: 100012,
      timestamp: '2024-05-03T00:00:00.123Z',
    });
    const item = await clients.doc.send(
      new GetCommand({ TableName: names.ledgerTable, Key: { pk: 'watermark#wm_rows', sk: 'watermark' } }),
    );
    expect(item.Item).toMatchObject({ id: '1200', version: second.watermark?.version });
    const { rows: unchanged } = await db.query<{ n: number }>(
      'SELECT count(*)::int AS n FROM wm_rows WHERE processed',
    );
    expect(unchanged[0]?.n).toBe(0);
  });

  it('watermark mode sends a row whose transaction commits after a poll read past its timestamp (lookback)', async () => {
    // Prepare: "timestamp" is set when a transaction starts; a slow one commits after a faster one was polled.
    await db.query(TABLE_DDL('wm_late'));
    await db.query('ALTER TABLE wm_late ALTER COLUMN timestamp SET DEFAULT now()');
    const handler = await coldStart(env('wm_late', 'watermark'));
    const slow = await db.connect();
    await slow.query('BEGIN');
    await slow.query(`INSERT INTO wm_late (name, value) VALUES ('slow', 1)`);
    await new Promise((r) => setTimeout(r, 50));
    await db.query(`INSERT INTO wm_late (name, value) VALUES ('fast', 2)`);
    const first = await invoke(handler);
    const firstSignals = await drainSignals();
    await slow.query('COMMIT');
    slow.release();
    // Act
    const second = await invoke(handler);
    const secondSignals = await drainSignals();
    // Assess
    expect(first).toMatchObject({ rows: 1, sent: 1 });
    expect(firstSignals.map((s) => s.name)).toEqual(['fast']);
    expect(second).toMatchObject({ rows: 0, reread: 2 });
    expect(secondSignals.map((s) => s.name).sort()).toEqual(['fast', 'slow']);
    expect(secondSignals.find((s) => s.name === 'fast')).toEqual(firstSignals[0]);
  });

  it('watermark mode quarantines rows whose watermark column is NULL instead of never reading them', async () => {
    // Prepare: the default mapping orders by "timestamp"; one row has none.
    await db.query(TABLE_DDL('wm_null'));
    await db.query(`
      INSERT INTO wm_null (name, value, source, timestamp) VALUES
        ('a', 1, 'h', '2024-05-01T00:00:00Z'), ('no-ts', 2, 'h', NULL), ('c', 3, 'h', '2024-05-01T00:00:01Z')`);
    const handler = await coldStart(env('wm_null', 'watermark'));
    // Act
    const summary = await invoke(handler);
    const again = await invoke(handler);
    // Assess
    expect(summary).toMatchObject({ rows: 2, sent: 2, nullWatermark: 1 });
    expect(again).toMatchObject({ rows: 0, reread: 2, nullWatermark: 1 });
    expect((await drainSignals()).map((s) => s.name).sort()).toEqual(['a', 'a', 'c', 'c']);
    const { ListObjectsV2Command, GetObjectCommand } = await import('@aws-sdk/client-s3');
    const day = new Date().toISOString().slice(0, 10);
    const listed = await clients.s3.send(
      new ListObjectsV2Command({ Bucket: names.bucket, Prefix: `rejects/db/wm_null/${day}/watermark-null/` }),
    );
    expect(listed.Contents).toHaveLength(1);
    const body = await clients.s3.send(
      new GetObjectCommand({ Bucket: names.bucket, Key: listed.Contents?.[0]?.Key ?? '' }),
    );
    const lines = ((await body.Body?.transformToString()) ?? '')
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l));
    expect(lines.map((l: { ref: string; reason: string }) => [l.ref, l.reason])).toEqual([
      ['db:wm_null:2', 'timestamp is NULL: watermark mode cannot order this row'],
    ]);
  });

  /** Every line of the quarantine objects under `rejects/db/<table>/<today>/<folder>/`, and the objects' keys. */
  const quarantined = async (table: string, folder: string) => {
    const { ListObjectsV2Command, GetObjectCommand } = await import('@aws-sdk/client-s3');
    const day = new Date().toISOString().slice(0, 10);
    const listed = await clients.s3.send(
      new ListObjectsV2Command({ Bucket: names.bucket, Prefix: `rejects/db/${table}/${day}/${folder}/` }),
    );
    const keys = (listed.Contents ?? []).map((o) => o.Key ?? '');
    const lines: { ref: string; reason: string }[] = [];
    for (const key of keys) {
      const body = await clients.s3.send(new GetObjectCommand({ Bucket: names.bucket, Key: key }));
      for (const l of ((await body.Body?.transformToString()) ?? '').trim().split('\n'))
        lines.push(JSON.parse(l));
    }
    return { keys, lines };
  };
  const watermarkItem = async (table: string) =>
    (
      await clients.doc.send(
        new GetCommand({ TableName: names.ledgerTable, Key: { pk: `watermark#${table}`, sk: 'watermark' } }),
      )
    ).Item as { value: string; id: string; version: number } | undefined;
  /** Whether a watermark value lies within the database's now() plus `skew` seconds (asked of the database). */
  const withinHorizon = async (value: string, skew: number) =>
    (
      await db.query<{ ok: boolean }>('SELECT $1::timestamptz <= now() + make_interval(secs => $2) AS ok', [
        value,
        skew,
      ])
    ).rows[0]?.ok;

  it("watermark mode never reads past the database's now() plus the skew: far-future, 'infinity' and '-infinity' rows are quarantined and later rows still read", async () => {
    // Prepare: with the default mapping the watermark is the event time; three rows lie out of range.
    await db.query(TABLE_DDL('wm_future'));
    await db.query('CREATE INDEX ON wm_future (timestamp, id)');
    await db.query(`
      INSERT INTO wm_future (name, value, source, timestamp) VALUES
        ('a', 1, 'h', now() - interval '30 seconds'), ('far', 2, 'h', '2999-01-01T00:00:00Z'),
        ('inf', 3, 'h', 'infinity'), ('b', 4, 'h', now() - interval '20 seconds'), ('ninf', 5, 'h', '-infinity')`);
    const handler = await coldStart(env('wm_future', 'watermark'));
    // Act: a poll, two rows written after it, another poll.
    const first = await invoke(handler);
    await db.query(
      `INSERT INTO wm_future (name, value, source, timestamp) VALUES ('c', 6, 'h', now()), ('d', 7, 'h', now())`,
    );
    const second = await invoke(handler);
    const signals = await drainSignals();
    // Assess: every row within the horizon sent (a and b again by the lookback), none of the other three.
    expect([...new Set(signals.map((s) => s.name))].sort()).toEqual(['a', 'b', 'c', 'd']);
    expect(countById(signals).size).toBe(4);
    expect(first).toMatchObject({ rows: 2, sent: 2, outOfRange: 3, stalled: 0 });
    expect(second).toMatchObject({ rows: 2, sent: 2, reread: 2, outOfRange: 3, stalled: 0 });
    const item = await watermarkItem('wm_future');
    expect(item).toMatchObject({ id: '7' });
    expect(await withinHorizon(item?.value ?? 'infinity', settings.dbPoller.watermarkSkewSeconds)).toBe(true);
    expect(second.watermark?.value).toBe(item?.value);
    // Quarantined by both polls under one key, in watermark order, each with its version and reason.
    const { keys, lines } = await quarantined('wm_future', 'watermark-out-of-range');
    expect(keys).toHaveLength(1);
    expect(lines.map((l) => [l.ref, l.reason])).toEqual([
      ['db:wm_future:5@-infinity', "timestamp is '-infinity': watermark mode never reads this row"],
      [
        'db:wm_future:2@2999-01-01T00:00:00.000000Z',
        `timestamp 2999-01-01T00:00:00.000000Z is past the database's now() + ${settings.dbPoller.watermarkSkewSeconds} s: not read, and the watermark not moved, until the database's clock reaches it`,
      ],
      ['db:wm_future:3@infinity', "timestamp is 'infinity': watermark mode never reads this row"],
    ]);
  });

  it("watermark mode reads a row dated past the horizon, like any other, once the database's clock reaches it", async () => {
    // Prepare: a 1 s skew; one row 3 s ahead of the database's clock.
    await db.query(TABLE_DDL('wm_ahead'));
    await db.query(`
      INSERT INTO wm_ahead (name, value, source, timestamp) VALUES
        ('now', 1, 'h', now()), ('ahead', 2, 'h', now() + interval '3 seconds')`);
    const handler = await coldStart({ ...env('wm_ahead', 'watermark'), DB_WATERMARK_SKEW_SECONDS: '1' });
    const first = await invoke(handler);
    const firstSignals = await drainSignals();
    // Act: once the database's clock (plus the skew) reaches it.
    await waitUntil("the database's clock to reach the row", async () => {
      const { rows } = await db.query<{ due: boolean }>(
        `SELECT now() + interval '1 second' >= timestamp AS due FROM wm_ahead WHERE name = 'ahead'`,
      );
      return rows[0]?.due === true;
    });
    const second = await invoke(handler);
    const secondSignals = await drainSignals();
    // Assess: held (quarantined, the watermark behind it) then read past the watermark, under the same id.
    expect(first).toMatchObject({ rows: 1, outOfRange: 1 });
    expect(firstSignals.map((s) => s.name)).toEqual(['now']);
    const { lines } = await quarantined('wm_ahead', 'watermark-out-of-range');
    expect(lines).toHaveLength(1);
    expect(second).toMatchObject({ rows: 1, sent: 1, outOfRange: 0, stalled: 0 });
    const ahead = secondSignals.find((s) => s.name === 'ahead');
    expect(ahead?.id).toBe(lines[0]?.ref);
    expect((await watermarkItem('wm_ahead'))?.id).toBe('2');
  });

  it('watermark mode heals a watermark an older version left in the future: the stranded rows are sent, the stall counted once', async () => {
    // Prepare: rows read before the stall, then an older version moved the watermark to 2999 (40 s ago) and
    // five rows were written since: more than the lookback behind that watermark, so never read.
    await db.query(TABLE_DDL('wm_heal'));
    await db.query(`
      INSERT INTO wm_heal (name, value, source, timestamp) VALUES
        ('before', 1, 'h', now() - interval '302 seconds'), ('before', 2, 'h', now() - interval '301 seconds'),
        ('before', 3, 'h', now() - interval '300 seconds'), ('far', 4, 'h', '2999-01-01T00:00:00Z')`);
    await db.query(`
      INSERT INTO wm_heal (name, value, source, timestamp)
      SELECT 'stranded', 10 + i, 'h', now() - interval '30 seconds' + i * interval '5 seconds'
      FROM generate_series(1, 5) AS i`);
    await clients.doc.send(
      new PutCommand({
        TableName: names.ledgerTable,
        Item: {
          pk: 'watermark#wm_heal',
          sk: 'watermark',
          value: '2999-01-01 00:00:00+00',
          id: '4',
          version: 7,
          table: 'wm_heal',
          advancedAt: new Date(Date.now() - 40_000).toISOString(),
        },
      }),
    );
    const handler = await coldStart(env('wm_heal', 'watermark'));
    // Act
    const healing = await invoke(handler);
    const after = await invoke(handler);
    const signals = await drainSignals();
    // Assess: moved back to the last row before the stall (less lookback and skew), the five rows sent.
    const stranded = signals.filter((s) => s.name === 'stranded');
    expect(countById(stranded).size).toBe(5);
    expect(signals.some((s) => s.name === 'far')).toBe(false);
    expect(healing).toMatchObject({
      stalled: 5,
      rewound: { from: { value: '2999-01-01 00:00:00+00', id: '4' }, to: { id: '3' } },
      rows: 5,
      sent: 5,
      outOfRange: 1,
    });
    expect(after).toMatchObject({ stalled: 0, rows: 0 });
    expect(after).not.toHaveProperty('rewound');
    const item = await watermarkItem('wm_heal');
    expect(item).toMatchObject({ id: '9', version: 9 });
    expect(await withinHorizon(item?.value ?? 'infinity', settings.dbPoller.watermarkSkewSeconds)).toBe(true);
  });

  it('watermark mode bounds a timestamp without time zone column by the same clock, and leaves a bigint version counter unbounded', async () => {
    // Prepare: a wall-clock timestamp column (read as UTC) and a version counter, each with a row far ahead.
    await db.query(TABLE_DDL('wm_local'));
    await db.query('ALTER TABLE wm_local ALTER COLUMN timestamp TYPE timestamp without time zone');
    await db.query(`
      INSERT INTO wm_local (name, value, source, timestamp) VALUES
        ('now', 1, 'h', now() AT TIME ZONE 'UTC'), ('far', 2, 'h', '2999-01-01 00:00:00')`);
    await db.query(TABLE_DDL('wm_counter'));
    await db.query('ALTER TABLE wm_counter ADD COLUMN version bigint');
    await db.query(`
      INSERT INTO wm_counter (name, value, source, timestamp, version) VALUES
        ('one', 1, 'h', now(), 1), ('big', 2, 'h', now(), 9000000000000000000)`);
    const local = await coldStart(env('wm_local', 'watermark'));
    const localSummary = await invoke(local);
    const localSignals = await drainSignals();
    const counter = await coldStart({
      ...env('wm_counter', 'watermark'),
      DB_COLUMNS: JSON.stringify({ updatedAt: 'version' }),
    });
    // Act
    const counterSummary = await invoke(counter);
    const counterSignals = await drainSignals();
    // Assess
    expect(localSignals.map((s) => s.name)).toEqual(['now']);
    expect(localSummary).toMatchObject({ rows: 1, outOfRange: 1, stalled: 0 });
    const { lines } = await quarantined('wm_local', 'watermark-out-of-range');
    expect(lines.map((l) => l.ref)).toEqual(['db:wm_local:2@2999-01-01T00:00:00.000000']);
    expect(counterSignals.map((s) => s.name)).toEqual(['one', 'big']);
    expect(counterSummary).toMatchObject({ rows: 2, watermark: { value: '9000000000000000000', id: '2' } });
    expect(counterSummary).not.toHaveProperty('horizon');
  });

  it('reads a timestamp without time zone as UTC whatever the poller process time zone', async () => {
    // Prepare
    await db.query(TABLE_DDL('local_ts'));
    await db.query('ALTER TABLE local_ts ALTER COLUMN timestamp TYPE timestamp without time zone');
    await db.query(`INSERT INTO local_ts (name, value) VALUES ('cpu', 1)`);
    await db.query(`UPDATE local_ts SET timestamp = '2024-05-01 10:00:00'`);
    const handler = await coldStart(env('local_ts', 'mark'));
    const tz = process.env.TZ;
    process.env.TZ = 'America/New_York';
    // Act
    let summary: PollSummary;
    try {
      summary = await invoke(handler);
    } finally {
      if (tz === undefined) delete process.env.TZ;
      else process.env.TZ = tz;
    }
    // Assess
    expect(summary).toMatchObject({ rows: 1, sent: 1 });
    expect((await drainSignals()).map((s) => s.timestamp)).toEqual(['2024-05-01T10:00:00.000Z']);
  });
});
