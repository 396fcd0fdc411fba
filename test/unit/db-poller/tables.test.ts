import { Metrics, MetricUnit } from '@aws-lambda-powertools/metrics';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { dbPollerConfigFor, loadDbPollerConfig } from '#shared/config.ts';
import { METRIC } from '#shared/contract.ts';
import { settings } from '#shared/settings.ts';
import { tableMetrics } from '../../../functions/db-poller/table-metrics.ts';

/**
 * Several db-poller tables (issue 23), at the function's edge: DB_TABLES read and checked once at cold start,
 * the table an invocation names picked out of it (and nothing of another table carried over), and the
 * per-table metrics.
 */

const base = {
  SIGNALS_QUEUE_URL: 'q',
  DB_SECRET_ARN: 'arn:secret',
  WATERMARK_TABLE: 'ledger',
  QUARANTINE_BUCKET: 'b',
};
const withTables = (tables: unknown, extra: Record<string, string> = {}) => ({
  ...base,
  DB_TABLES: JSON.stringify(tables),
  ...extra,
});

describe('DB_TABLES', () => {
  it('reads every table with its own settings, the defaults applied and columns merged over them', () => {
    // Act
    const c = loadDbPollerConfig(
      withTables([
        { table: 'orders', processedType: 'integer', where: "tenant = 'acme'" },
        {
          table: 'readings',
          mode: 'watermark',
          columns: { updatedAt: 'updated_at' },
          initialWatermark: '42',
        },
      ]),
    );
    // Assess
    expect(c.namedTables).toBe(true);
    expect(c.tables).toEqual([
      {
        table: 'orders',
        mode: settings.dbPoller.mode,
        columns: settings.dbPoller.columns,
        processedType: 'integer',
        where: "tenant = 'acme'",
      },
      {
        table: 'readings',
        mode: 'watermark',
        columns: { ...settings.dbPoller.columns, updatedAt: 'updated_at' },
        processedType: settings.dbPoller.processedType,
        initialWatermark: '42',
      },
    ]);
  });

  it('refuses at cold start a list that is not JSON, empty, with an unknown key, a bad name, a table twice', () => {
    // Assess
    expect(() => loadDbPollerConfig({ ...base, DB_TABLES: '[{table:"a"}]' })).toThrow(
      'DB_TABLES must be a JSON list of tables',
    );
    expect(() => loadDbPollerConfig(withTables([]))).toThrow('DB_TABLES: lists no table');
    expect(() => loadDbPollerConfig(withTables([{ table: 'a', filter: 'x = 1' }]))).toThrow('DB_TABLES[0]');
    expect(() => loadDbPollerConfig(withTables([{ table: 'a' }, { table: 'b; drop' }]))).toThrow(
      'DB_TABLES[1].table: must be a plain SQL identifier',
    );
    expect(() => loadDbPollerConfig(withTables([{ table: 'a', mode: 'cdc' }]))).toThrow(
      'DB_TABLES[0].mode: must be mark or watermark',
    );
    expect(() => loadDbPollerConfig(withTables([{ table: 'a', where: 'x = 1 -- y' }]))).toThrow(
      'DB_TABLES[0].where: the filter has the operator --',
    );
    expect(() => loadDbPollerConfig(withTables([{ table: 'a' }, { table: 'b' }, { table: 'a' }]))).toThrow(
      'DB_TABLES lists "a" more than once',
    );
  });

  it('refuses the one-table variables beside it, naming them (one of the two would be ignored)', () => {
    // Assess
    expect(() =>
      loadDbPollerConfig(withTables([{ table: 'a' }], { DB_TABLE: 'a', DB_WHERE: 'x = 1' })),
    ).toThrow("DB_TABLE, DB_WHERE are set beside DB_TABLES: give each table's settings in DB_TABLES only");
  });
});

describe('the table of an invocation', () => {
  const config = loadDbPollerConfig(
    withTables([
      { table: 'orders', where: "tenant = 'acme'", processedType: 'integer' },
      { table: 'readings', mode: 'watermark' },
    ]),
  );

  it("is the one its input names, with that table's settings only", () => {
    // Act
    const readings = dbPollerConfigFor(config, 'readings');
    const orders = dbPollerConfigFor(config, 'orders');
    // Assess: the first table's filter and flag type do not carry over to the second.
    expect(readings).toMatchObject({ table: 'readings', mode: 'watermark', processedType: 'boolean' });
    expect('where' in readings).toBe(false);
    expect(orders).toMatchObject({ table: 'orders', mode: 'mark', where: "tenant = 'acme'" });
    expect(readings).toMatchObject({ signalsQueueUrl: 'q', batchSize: settings.dbPoller.batchSize });
  });

  it('is an error when the input names none, or a table the poller does not poll', () => {
    // Assess
    expect(() => dbPollerConfigFor(config, undefined)).toThrow(
      'the invocation names no table: its input must be {"table": "<name>"}, one of orders, readings (DB_TABLES)',
    );
    expect(() => dbPollerConfigFor(config, 'Orders')).toThrow(
      'the invocation names the table "Orders", which this poller does not poll (orders, readings)',
    );
  });

  it('is the one table of DB_TABLE when there is no DB_TABLES, named or not', () => {
    // Prepare
    const one = loadDbPollerConfig({ ...base, DB_TABLE: 'events', DB_MODE: 'watermark' });
    // Act
    const unnamed = dbPollerConfigFor(one, undefined);
    // Assess
    expect(one.namedTables).toBe(false);
    expect(unnamed).toMatchObject({ table: 'events', mode: 'watermark' });
    expect(dbPollerConfigFor(one, 'events').table).toBe('events');
    expect(() => dbPollerConfigFor(one, 'other')).toThrow('does not poll (events)');
  });
});

describe('per-table metrics', () => {
  afterEach(() => {
    vi.unstubAllEnvs();
    vi.restoreAllMocks();
  });

  it("publishes the poller's table metrics with a table dimension too, and keeps every metric under service alone", () => {
    // Prepare: Powertools prints EMF to the global console in dev mode.
    vi.stubEnv('POWERTOOLS_DEV', 'true');
    vi.stubEnv('POWERTOOLS_METRICS_DISABLED', 'false');
    const lines: string[] = [];
    vi.spyOn(console, 'log').mockImplementation((line: unknown) => void lines.push(String(line)));
    const metrics = new Metrics({ namespace: 'Test', serviceName: 'db-poller' });
    const m = tableMetrics(metrics, 'readings');
    // Act
    m.addMetric(METRIC.pollerLag, MetricUnit.Milliseconds, 1500);
    m.addMetric(METRIC.watermarkConflicts, MetricUnit.Count, 1);
    metrics.publishStoredMetrics();
    // Assess
    const emf = lines.map(
      (l) =>
        JSON.parse(l) as {
          _aws: { CloudWatchMetrics: { Dimensions: string[][]; Metrics: { Name: string }[] }[] };
          table?: string;
        } & Record<string, unknown>,
    );
    const perTable = emf.filter((e) => e.table === 'readings');
    const shared = emf.filter((e) => e.table === undefined);
    expect(perTable).toHaveLength(1);
    expect(perTable[0]?._aws.CloudWatchMetrics[0]?.Dimensions).toEqual([['service', 'table']]);
    expect(perTable[0]?.[METRIC.pollerLag]).toBe(1500);
    expect(perTable[0]?._aws.CloudWatchMetrics[0]?.Metrics.map((x) => x.Name)).toEqual([METRIC.pollerLag]);
    expect(shared).toHaveLength(1);
    expect(shared[0]?._aws.CloudWatchMetrics[0]?.Dimensions).toEqual([['service']]);
    expect(shared[0]).toMatchObject({ [METRIC.pollerLag]: 1500, [METRIC.watermarkConflicts]: 1 });
  });
});
