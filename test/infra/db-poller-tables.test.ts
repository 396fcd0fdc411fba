import { Annotations, Match, type Template } from 'aws-cdk-lib/assertions';
import { beforeAll, describe, expect, it } from 'vitest';
import { dbPollerConfigFor, loadDbPollerConfig } from '#shared/config.ts';
import { ENV } from '#shared/contract.ts';
import { settings } from '#shared/settings.ts';
import { MAX_DB_TABLES_BYTES, type PulseTuningProps, resolveDeployment } from '../../infra/props.ts';
import { localDbPoller, runtimeEnv } from '../../local/runtime/runtime.ts';
import { localStateFactory } from '../helpers/factories.ts';
import { buildStack, DB_AND_MSK_CONTEXT, synthTemplate } from '../helpers/stacks.ts';

/**
 * Several db-poller tables (issue 23): `dbPoller.tables` gives one schedule per table, each naming its table
 * in its input, and every table's settings in the function's DB_TABLES, which its config loader reads back;
 * the offline runtime sets the same; contradictory lists are refused at synth, naming what is wrong.
 */

const TABLES = {
  scheduleRateMinutes: 2,
  tables: [
    { table: 'orders', mode: 'mark', processedType: 'integer', where: "tenant = 'acme'" },
    {
      table: 'readings',
      mode: 'watermark',
      columns: { updatedAt: 'updated_at' },
      initialWatermark: '2024-05-01T00:00:00Z',
      scheduleRateMinutes: 5,
    },
  ],
} as const satisfies PulseTuningProps['dbPoller'];

type Resource = { Properties?: Record<string, unknown> };

/** The db-poller's environment in a template. */
function pollerEnv(t: Template): Record<string, unknown> {
  for (const fn of Object.values(t.findResources('AWS::Lambda::Function')) as Resource[]) {
    const vars =
      (fn.Properties?.Environment as { Variables?: Record<string, unknown> } | undefined)?.Variables ?? {};
    if (vars[ENV.powertoolsServiceName] === 'db-poller') return vars;
  }
  throw new Error('no db-poller in the template');
}

/** Each schedule's rate and input (parsed), by the table its input names. */
function schedules(
  t: Template,
): Map<string, { rate: string; state: string; input: Record<string, unknown> }> {
  const out = new Map<string, { rate: string; state: string; input: Record<string, unknown> }>();
  for (const s of Object.values(t.findResources('AWS::Scheduler::Schedule')) as Resource[]) {
    const p = s.Properties ?? {};
    const target = p.Target as { Input?: string; Arn?: unknown };
    const input = JSON.parse(target.Input ?? '{}') as Record<string, unknown>;
    out.set(String(input.table), { rate: String(p.ScheduleExpression), state: String(p.State), input });
  }
  return out;
}

const pulse = (dbPoller: unknown) => ({ ...DB_AND_MSK_CONTEXT, pulse: JSON.stringify({ dbPoller }) });

describe('db-poller tables', () => {
  let t: Template;
  beforeAll(() => {
    t = synthTemplate({ context: pulse(TABLES) });
  }, 120_000);

  it('has one schedule per table, each naming its table in its input, at its own rate', () => {
    // Act
    const s = schedules(t);
    // Assess: the poller's own ledger-sweep schedule aside (its input names no table).
    expect([...s.keys()].filter((k) => k !== 'undefined').sort()).toEqual(['orders', 'readings']);
    expect(s.get('orders')).toMatchObject({
      rate: 'rate(2 minutes)',
      state: 'ENABLED',
      input: {
        table: 'orders',
        scheduledTime: '<aws.scheduler.scheduled-time>',
        executionId: '<aws.scheduler.execution-id>',
      },
    });
    expect(s.get('readings')).toMatchObject({ rate: 'rate(5 minutes)', input: { table: 'readings' } });
  });

  it("carries every table's settings in DB_TABLES, which the config loader reads back table by table", () => {
    // Prepare
    const vars = pollerEnv(t);
    const strings = Object.fromEntries(
      Object.entries(vars).filter(([, v]) => typeof v === 'string'),
    ) as Record<string, string>;
    // Act
    const config = loadDbPollerConfig({
      ...strings,
      SIGNALS_QUEUE_URL: 'q',
      QUARANTINE_BUCKET: 'b',
      WATERMARK_TABLE: 'l',
      DB_SECRET_ARN: 's',
    });
    const orders = dbPollerConfigFor(config, 'orders');
    const readings = dbPollerConfigFor(config, 'readings');
    // Assess: no one-table variable beside DB_TABLES.
    expect(Object.keys(vars)).not.toEqual(expect.arrayContaining([ENV.dbTable]));
    for (const one of [
      ENV.dbTable,
      ENV.dbMode,
      ENV.dbColumns,
      ENV.dbWhere,
      ENV.dbProcessedType,
      ENV.dbInitialWatermark,
    ])
      expect(vars[one]).toBeUndefined();
    expect(config.tables.map((x) => x.table)).toEqual(['orders', 'readings']);
    expect(orders).toMatchObject({ mode: 'mark', processedType: 'integer', where: "tenant = 'acme'" });
    expect(orders.initialWatermark).toBeUndefined();
    expect(readings).toMatchObject({
      mode: 'watermark',
      initialWatermark: '2024-05-01T00:00:00Z',
      columns: { ...settings.dbPoller.columns, updatedAt: 'updated_at' },
    });
    expect(readings.where).toBeUndefined();
  });

  it('is set by the offline runtime exactly as the stack sets it, one schedule per table', () => {
    // Prepare
    const state = localStateFactory({ dbPoller: TABLES as never });
    const deployed = pollerEnv(t);
    // Act
    const offline = runtimeEnv(state);
    const tables = localDbPoller(state).tables;
    // Assess
    for (const name of [
      ENV.dbTables,
      ENV.dbBatchSize,
      ENV.watermarkLookbackSeconds,
      ENV.watermarkSkewSeconds,
    ])
      expect(offline[name]).toEqual(deployed[name]);
    expect(tables.map((x) => [x.table, x.scheduleRateMinutes])).toEqual([
      ['orders', 2],
      ['readings', 5],
    ]);
  });

  it('watches each table: a silence alarm per table on its own schedule, lag per table on the dashboard', () => {
    // Act
    const alarms = (Object.values(t.findResources('AWS::CloudWatch::Alarm')) as Resource[]).map(
      (a) => a.Properties ?? {},
    );
    const silent = alarms.filter((a) => String(a.AlarmName).includes('PollerSilent-'));
    const dashboard = JSON.stringify(t.findResources('AWS::CloudWatch::Dashboard'));
    // Assess
    expect(silent.map((a) => [a.AlarmName, a.MetricName, a.Dimensions, a.Period])).toEqual([
      [
        'PulseIngest-PollerSilent-orders',
        'RowsPolled',
        [
          { Name: 'service', Value: 'db-poller' },
          { Name: 'table', Value: 'orders' },
        ],
        360,
      ],
      [
        'PulseIngest-PollerSilent-readings',
        'RowsPolled',
        [
          { Name: 'service', Value: 'db-poller' },
          { Name: 'table', Value: 'readings' },
        ],
        900,
      ],
    ]);
    expect(dashboard).toContain('Poller lag per table');
    expect(dashboard).toMatch(/PollerLag.{0,80}table.{0,20}readings/);
  });

  it('passes cdk-nag with several schedules invoking the one poller', () => {
    // Act
    const stack = buildStack({ context: pulse(TABLES), nag: true });
    const errors = Annotations.fromStack(stack).findError('*', Match.anyValue());
    const warnings = Annotations.fromStack(stack)
      .findWarning('*', Match.anyValue())
      .filter((w) => String(w.entry.data).includes('AwsSolutions-'));
    // Assess
    expect(errors.map((e) => `${e.id}: ${String(e.entry.data).split('\n')[0]}`)).toEqual([]);
    expect(warnings).toEqual([]);
  }, 120_000);

  it('keeps the one-table props as a list of one, on the schedule it always had', () => {
    // Act
    const one = synthTemplate({ context: pulse({ table: 'events', mode: 'watermark' }) });
    // Assess
    const s = schedules(one);
    expect(s.get('events')).toMatchObject({ input: { table: 'events' } });
    expect(
      Object.keys(one.findResources('AWS::Scheduler::Schedule')).some((id) =>
        id.startsWith('ProducersDbPollerSchedule'),
      ),
    ).toBe(true);
    expect(JSON.parse(String(pollerEnv(one)[ENV.dbTables]))).toEqual([
      { table: 'events', mode: 'watermark', processedType: settings.dbPoller.processedType },
    ]);
  }, 120_000);

  it('refuses at synth a table listed twice, one-table keys beside the list, an option of the other mode, an empty list', () => {
    // Assess
    expect(() =>
      resolveDeployment({ dbPoller: { tables: [{ table: 'a' }, { table: 'b' }, { table: 'a' }] } }),
    ).toThrow('dbPoller.tables lists "a" more than once');
    expect(() =>
      resolveDeployment({ dbPoller: { table: 'x', where: 'a = 1', tables: [{ table: 'a' }] } }),
    ).toThrow('dbPoller.table, dbPoller.where cannot be given beside dbPoller.tables');
    expect(() =>
      resolveDeployment({ dbPoller: { tables: [{ table: 'a', initialWatermark: '2024-01-01' }] } }),
    ).toThrow('dbPoller.tables[0] ("a"): initialWatermark applies to watermark mode, not mark');
    expect(() =>
      resolveDeployment({
        dbPoller: { tables: [{ table: 'a' }, { table: 'b', mode: 'watermark', processedType: 'integer' }] },
      }),
    ).toThrow('dbPoller.tables[1] ("b"): processedType applies to mark mode, not watermark');
    expect(() => resolveDeployment({ dbPoller: { tables: [] } })).toThrow('dbPoller.tables: lists no table');
    expect(() => resolveDeployment({ dbPoller: { tables: [{ table: 'a b' }] } })).toThrow(
      'dbPoller.tables.0.table: must be a plain SQL identifier',
    );
    expect(() =>
      resolveDeployment({ dbPoller: { tables: [{ table: 'a', where: 'x = 1; DROP TABLE a' }] } }),
    ).toThrow('dbPoller.tables.0.where: the filter');
  });

  it('refuses at synth, in the context and offline more tables than fit the 4 KB environment, saying why', () => {
    // Prepare: 40 tables with a 60-byte filter each.
    const many = Array.from({ length: 40 }, (_, i) => ({
      table: `table_${i}`,
      where: `tenant = 'acme' AND kind IN ('cpu', 'mem', 'disk', 'net')`,
    }));
    // Assess
    expect(() => resolveDeployment({ dbPoller: { tables: many } })).toThrow(
      new RegExp(
        `dbPoller.tables: the tables' settings take \\d+ bytes in the db-poller's environment \\(DB_TABLES\\): at most ${MAX_DB_TABLES_BYTES} fit`,
      ),
    );
    expect(() => resolveDeployment({ dbPoller: { tables: many.slice(0, 10) } })).not.toThrow();
    expect(() => synthTemplate({ context: pulse({ tables: many }) })).toThrow(
      "PulseIngest props: dbPoller.tables: the tables' settings take",
    );
    expect(() => runtimeEnv(localStateFactory({ dbPoller: { tables: many } as never }))).toThrow(
      'dbPoller.tables: the tables',
    );
  });
});
