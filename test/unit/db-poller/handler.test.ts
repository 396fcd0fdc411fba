import { readFileSync } from 'node:fs';
import { GetSecretValueCommand, SecretsManagerClient } from '@aws-sdk/client-secrets-manager';
import { GetQueueAttributesCommand, SendMessageBatchCommand, SQSClient } from '@aws-sdk/client-sqs';
import { mockClient } from 'aws-sdk-client-mock';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { parseSchedulerInvocation } from '../../../functions/db-poller/events.ts';
import { lambdaContextFactory } from '../../helpers/factories.ts';
import { pgRow } from './fake-db.ts';

/** `pg` replaced by fake pools that record how they were made; no network. */
const pg = vi.hoisted(() => ({
  created: [] as Record<string, unknown>[],
  respond: (_text: string): unknown[] | Error => [],
}));
vi.mock('pg', async () => {
  const { FakeDb } = await import('./fake-db.ts');
  class Pool extends FakeDb {
    constructor(opts: Record<string, unknown>) {
      super((text) => pg.respond(text));
      pg.created.push(opts);
    }
    on() {
      return this;
    }
    async end() {}
  }
  return { default: { Pool } };
});

const event = (name: string): unknown =>
  JSON.parse(readFileSync(new URL(`../../events/db-poller/${name}`, import.meta.url), 'utf8'));

const SECRET = {
  username: 'poller',
  password: 's3cr3t-Pa55word',
  host: 'db.cluster-abc.eu-west-1.rds.amazonaws.com',
  port: 5432,
  dbname: 'pulse',
  engine: 'postgres',
};

type Handler = (e: unknown, c: unknown) => Promise<{ rows: number; stoppedBy: string }>;

describe('db-poller handler', () => {
  const sm = mockClient(SecretsManagerClient);
  const sqs = mockClient(SQSClient);

  /** A fresh module instance: a cold start. */
  const coldStart = async (): Promise<Handler> => {
    vi.resetModules();
    return (await import('../../../functions/db-poller/handler.ts')).handler as unknown as Handler;
  };

  beforeEach(() => {
    vi.stubEnv('SIGNALS_QUEUE_URL', 'https://sqs.us-east-1.amazonaws.com/123456789012/signals');
    vi.stubEnv('QUARANTINE_BUCKET', 'qb');
    vi.stubEnv('WATERMARK_TABLE', 'ledger');
    vi.stubEnv('DB_SECRET_ARN', 'arn:aws:secretsmanager:us-east-1:123456789012:secret:db-AbCdEf');
    vi.stubEnv('AWS_REGION', 'us-east-1');
    vi.stubEnv('POWERTOOLS_METRICS_DISABLED', 'true');
    vi.stubEnv('POWERTOOLS_LOG_LEVEL', 'SILENT');
    pg.created.length = 0;
    pg.respond = (text) => (text.includes('FOR UPDATE') ? [pgRow(1)] : []);
    sm.on(GetSecretValueCommand).resolves({ SecretString: JSON.stringify(SECRET) });
    sqs.on(GetQueueAttributesCommand).resolves({ Attributes: { ApproximateNumberOfMessages: '0' } });
    sqs.on(SendMessageBatchCommand).resolves({ Successful: [], Failed: [] });
  });
  afterEach(() => {
    sm.reset();
    sqs.reset();
    vi.unstubAllEnvs();
    vi.restoreAllMocks();
  });

  it('reads the secret once per cold start and reuses the pool while warm', async () => {
    // Prepare
    const handler = await coldStart();
    // Act
    const first = await handler(event('scheduler-invocation.json'), lambdaContextFactory(120_000));
    const second = await handler(event('scheduler-invocation-empty.json'), lambdaContextFactory(120_000));
    // Assess
    expect(first).toMatchObject({ rows: 1, stoppedBy: 'drained' });
    expect(second).toMatchObject({ rows: 1, stoppedBy: 'drained' });
    expect(sm).toHaveReceivedCommandTimes(GetSecretValueCommand, 1);
    expect(sm).toHaveReceivedCommandWith(GetSecretValueCommand, {
      SecretId: 'arn:aws:secretsmanager:us-east-1:123456789012:secret:db-AbCdEf',
    });
    expect(pg.created).toHaveLength(1);
    expect(pg.created[0]).toMatchObject({
      host: SECRET.host,
      port: 5432,
      database: 'pulse',
      user: 'poller',
      password: SECRET.password,
      ssl: { rejectUnauthorized: true },
      max: 1,
    });
  });

  it('never writes the password to the logs, even at DEBUG', async () => {
    // Prepare
    const written: string[] = [];
    for (const stream of [process.stdout, process.stderr]) {
      vi.spyOn(stream, 'write').mockImplementation((chunk: string | Uint8Array) => {
        written.push(String(chunk));
        return true;
      });
    }
    vi.stubEnv('POWERTOOLS_LOG_LEVEL', 'DEBUG');
    const handler = await coldStart();
    // Act
    await handler(event('scheduler-invocation.json'), lambdaContextFactory(120_000));
    pg.respond = () =>
      Object.assign(new Error('password authentication failed for user "poller"'), { code: '28P01' });
    await handler({}, lambdaContextFactory(120_000)).catch(() => undefined);
    // Assess
    expect(written.join('')).toContain('Poll finished');
    expect(written.join('')).not.toContain(SECRET.password);
  });

  it('reads the secret again after the database refuses the cached credentials (rotation)', async () => {
    // Prepare
    const handler = await coldStart();
    await handler({}, lambdaContextFactory(120_000));
    pg.respond = () => Object.assign(new Error('password authentication failed'), { code: '28P01' });
    // Act
    await expect(handler({}, lambdaContextFactory(120_000))).rejects.toThrow(
      /password authentication failed/,
    );
    pg.respond = () => [];
    await handler({}, lambdaContextFactory(120_000));
    // Assess
    expect(sm).toHaveReceivedCommandTimes(GetSecretValueCommand, 2);
    expect(pg.created).toHaveLength(2);
  });

  it('fails with a ConfigError naming the missing fields when the secret lacks the RDS shape', async () => {
    // Prepare
    sm.on(GetSecretValueCommand).resolves({ SecretString: JSON.stringify({ username: 'u', password: 'p' }) });
    const handler = await coldStart();
    // Act
    const run = handler({}, lambdaContextFactory(120_000));
    // Assess
    await expect(run).rejects.toMatchObject({
      name: 'ConfigError',
      message: expect.stringMatching(/: host$/),
    });
    expect(pg.created).toHaveLength(0);
  });

  it('warns once at cold start when watermark mode runs on the event time, and not when it runs on a commit time', async () => {
    // Prepare
    const written: string[] = [];
    for (const stream of [process.stdout, process.stderr]) {
      vi.spyOn(stream, 'write').mockImplementation((chunk: string | Uint8Array) => {
        written.push(String(chunk));
        return true;
      });
    }
    vi.stubEnv('POWERTOOLS_LOG_LEVEL', 'WARN');
    vi.stubEnv('DB_MODE', 'watermark');
    const warnings = () =>
      written
        .flatMap((chunk) => chunk.split('\n'))
        .filter((line) => line.includes('watermark mode orders rows by'))
        .map((line) => JSON.parse(line) as { level: string; message: string; table: string });
    // Act
    await coldStart();
    const onEventTime = warnings();
    written.length = 0;
    vi.stubEnv('DB_COLUMNS', JSON.stringify({ updatedAt: 'updated_at' }));
    await coldStart();
    const onCommitTime = warnings();
    // Assess
    expect(onEventTime).toEqual([
      expect.objectContaining({
        level: 'WARN',
        table: 'signals',
        message: expect.stringMatching(/^watermark mode orders rows by "timestamp", the event time/),
      }),
    ]);
    expect(onCommitTime).toEqual([]);
  });

  it('fails at cold start with a ConfigError when DB_SECRET_ARN is not set', async () => {
    vi.stubEnv('DB_SECRET_ARN', undefined as unknown as string);
    await expect(coldStart()).rejects.toThrow('DB_SECRET_ARN is not set');
  });
});

describe('parseSchedulerInvocation', () => {
  it('takes the schedule time and execution id as correlation keys when the schedule passes them', () => {
    expect(parseSchedulerInvocation(event('scheduler-invocation.json'))).toEqual({
      scheduledTime: '2024-05-01T10:00:00Z',
      executionId: 'c3b8c1f4-4c0e-4a0b-9d3c-1f2e3d4c5b6a',
    });
  });

  it('accepts an empty payload and anything else a console test sends', () => {
    expect(parseSchedulerInvocation(event('scheduler-invocation-empty.json'))).toEqual({});
    expect(parseSchedulerInvocation(undefined)).toEqual({});
    expect(parseSchedulerInvocation('ping')).toEqual({});
    expect(parseSchedulerInvocation({ scheduledTime: 5 })).toEqual({});
  });
});
