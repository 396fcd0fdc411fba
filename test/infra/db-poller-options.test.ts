import { describe, expect, it } from 'vitest';
import { loadDbPollerConfig } from '#shared/config.ts';
import { ENV } from '#shared/contract.ts';
import { resolveDeployment } from '../../infra/props.ts';
import { runtimeEnv } from '../../local/runtime/runtime.ts';
import type { LocalState } from '../../local/runtime/state.ts';
import { localStateFactory } from '../helpers/factories.ts';
import { DB_AND_MSK_CONTEXT, synthTemplate } from '../helpers/stacks.ts';

/**
 * The db-poller's source options (issue 23: an extra WHERE filter, an integer processed flag, an initial
 * watermark) as props of the construct: checked at synth, set on the function, read by its config loader,
 * and set the same way by the offline runtime.
 */

const OPTIONS = {
  mode: 'watermark',
  table: 'events',
  columns: { updatedAt: 'updated_at' },
  where: "tenant = 'acme' AND kind IN ('cpu', 'mem')",
  processedType: 'integer',
  initialWatermark: '2024-05-01T00:00:00Z',
} as const;

/** An offline run's state, as `local up --db-poller '<json>'` records it. */
const stateWith = (dbPoller: unknown): LocalState => localStateFactory({ dbPoller: dbPoller as never });

/** The db-poller's environment in the template, with the app's context. */
function deployedEnv(pulse: unknown): Record<string, unknown> {
  const t = synthTemplate({ context: { ...DB_AND_MSK_CONTEXT, pulse: JSON.stringify({ dbPoller: pulse }) } });
  for (const fn of Object.values(t.findResources('AWS::Lambda::Function'))) {
    const vars = (fn.Properties?.Environment?.Variables ?? {}) as Record<string, unknown>;
    if (vars[ENV.powertoolsServiceName] === 'db-poller') return vars;
  }
  throw new Error('no db-poller in the template');
}

describe('db-poller source options', () => {
  it('reach the function through its environment, and its config loader reads them back', () => {
    // Act
    const env = deployedEnv(OPTIONS);
    // Assess: the one-table props travel as a list of one table (DB_TABLES).
    expect(JSON.parse(String(env[ENV.dbTables]))).toEqual([
      {
        table: OPTIONS.table,
        mode: OPTIONS.mode,
        processedType: 'integer',
        columns: OPTIONS.columns,
        where: OPTIONS.where,
        initialWatermark: OPTIONS.initialWatermark,
      },
    ]);
    const strings = Object.fromEntries(
      Object.entries(env).filter(([, v]) => typeof v === 'string'),
    ) as Record<string, string>;
    const config = loadDbPollerConfig({
      ...strings,
      SIGNALS_QUEUE_URL: 'http://q',
      QUARANTINE_BUCKET: 'b',
      WATERMARK_TABLE: 'l',
    });
    expect([config.where, config.processedType, config.initialWatermark]).toEqual([
      OPTIONS.where,
      'integer',
      OPTIONS.initialWatermark,
    ]);
  });

  it('are set by the offline runtime exactly as the stack sets them', () => {
    // Prepare
    const deployed = deployedEnv(OPTIONS);
    // Act
    const offline = runtimeEnv(stateWith(OPTIONS));
    // Assess: every db-poller setting (not a resource: the secret, the queue, TLS differ offline).
    const settingsOf = (env: Record<string, unknown>) =>
      Object.fromEntries(
        Object.entries(env).filter(
          ([k, v]) =>
            k.startsWith('DB_') && typeof v === 'string' && k !== ENV.dbSecretArn && k !== ENV.dbSsl,
        ),
      );
    expect(settingsOf(offline)).toEqual(settingsOf(deployed));
    expect(Object.keys(settingsOf(offline))).toEqual(expect.arrayContaining([ENV.dbTables]));
  });

  it("are refused at synth, and offline, when the filter could break the poller's statements or the watermark is relative", () => {
    // Assess
    expect(() => resolveDeployment({ dbPoller: { where: "a = 1) OR (b = 'x'" } })).toThrow(
      'dbPoller.where: the filter closes a parenthesis it did not open',
    );
    expect(() => resolveDeployment({ dbPoller: { where: 'a IN (SELECT id FROM other)' } })).toThrow(
      'dbPoller.where: the filter has the SQL keyword SELECT',
    );
    expect(() => resolveDeployment({ dbPoller: { initialWatermark: 'now' } })).toThrow(
      'dbPoller.initialWatermark: must be an integer or an ISO-8601 date or time',
    );
    expect(() => resolveDeployment({ dbPoller: { processedType: 'text' as never } })).toThrow(
      'dbPoller.processedType',
    );
    expect(() => deployedEnv({ where: 'x = 1; DROP TABLE events' })).toThrow('-c pulse: dbPoller.where');
    expect(() => runtimeEnv(stateWith({ where: 'pg_sleep(1) IS NULL' }))).toThrow(
      'dbPoller.where: the filter calls pg_sleep()',
    );
  });

  it('refuses them at cold start too, naming the variable', () => {
    // Prepare
    const base = {
      SIGNALS_QUEUE_URL: 'http://q',
      QUARANTINE_BUCKET: 'b',
      WATERMARK_TABLE: 'l',
      DB_SECRET_ARN: 's',
    };
    // Assess
    expect(() => loadDbPollerConfig({ ...base, DB_WHERE: "a = 'x' -- y" })).toThrow(
      'DB_WHERE: the filter has the operator --',
    );
    expect(() => loadDbPollerConfig({ ...base, DB_PROCESSED_TYPE: 'bit' })).toThrow(
      'DB_PROCESSED_TYPE must be boolean or integer',
    );
    expect(() => loadDbPollerConfig({ ...base, DB_INITIAL_WATERMARK: 'yesterday' })).toThrow(
      'DB_INITIAL_WATERMARK',
    );
    expect(loadDbPollerConfig(base)).toMatchObject({ processedType: 'boolean' });
    expect(loadDbPollerConfig(base).where).toBeUndefined();
  });
});
