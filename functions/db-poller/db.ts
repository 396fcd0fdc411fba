import { GetSecretValueCommand, type SecretsManagerClient } from '@aws-sdk/client-secrets-manager';
import pg from 'pg';
import * as z from 'zod';
import { ConfigError } from '#shared/errors.ts';
import type { DbPool } from './poller.ts';

/**
 * The database connection of one warm Lambda instance: the secret is read once (cached), the pool is
 * created on first use and kept while the instance is warm. Nothing here ever logs the secret.
 */

/** The RDS secret shape (what `DatabaseSecret` / RDS rotation write). */
export const DbSecretSchema = z.object({
  username: z.string().min(1),
  password: z.string().min(1),
  host: z.string().min(1),
  port: z.coerce.number().int().positive().default(5432),
  dbname: z.string().min(1).default('postgres'),
});
export type DbCredentials = z.infer<typeof DbSecretSchema>;

/** Reads and validates the secret; the error names the missing field, never a value. */
export async function readDbSecret(sm: SecretsManagerClient, secretId: string): Promise<DbCredentials> {
  const out = await sm.send(new GetSecretValueCommand({ SecretId: secretId }));
  if (!out.SecretString) throw new ConfigError(`secret ${secretId} has no SecretString`);
  let json: unknown;
  try {
    json = JSON.parse(out.SecretString);
  } catch {
    throw new ConfigError(`secret ${secretId} is not JSON`);
  }
  const parsed = DbSecretSchema.safeParse(json);
  if (!parsed.success) {
    const fields = parsed.error.issues.map((i) => i.path.join('.')).join(', ');
    throw new ConfigError(
      `secret ${secretId} lacks the RDS shape {username,password,host,port,dbname}: ${fields}`,
    );
  }
  return parsed.data;
}

export interface DbPoolOptions {
  readonly ssl: boolean;
  /** Connections per instance: Lambda runs one invocation at a time, so 1. */
  readonly max?: number;
  readonly connectionTimeoutMillis?: number;
}

/** Postgres type OIDs (`pg.types.builtins`): `timestamp` and `timestamptz`. */
const TIMESTAMP_OID = 1114;
const TIMESTAMPTZ_OID = 1184;

/**
 * Reads a `timestamp without time zone` (text form `2024-05-01 10:00:00[.ffffff][ BC]`) as UTC. pg's
 * default parses it as the process's local time, so the same row would give a different instant under
 * another `TZ`.
 */
export function parseTimestampAsUtc(text: string): unknown {
  const parseTimestamptz = pg.types.getTypeParser(TIMESTAMPTZ_OID, 'text');
  if (/^-?infinity$/.test(text)) return parseTimestamptz(text);
  return parseTimestamptz(text.replace(/( BC)?$/, '+00$1'));
}

/**
 * The pool's type parsers: pg's defaults, but `timestamp without time zone` read as UTC. Passed per pool
 * (pg's `types` option), so the global parsers other pools in the process use stay as they are.
 */
export const dbTypes: pg.CustomTypesConfig = {
  getTypeParser: ((oid: number, format?: 'text' | 'binary') =>
    oid === TIMESTAMP_OID && format !== 'binary'
      ? parseTimestampAsUtc
      : pg.types.getTypeParser(oid, format)) as pg.CustomTypesConfig['getTypeParser'],
};

/**
 * A `pg.Pool` for the credentials; the session runs in UTC and `timestamp without time zone` values are
 * read as UTC, so timestamps render and parse the same whatever the process's `TZ`.
 */
export function createDbPool(creds: DbCredentials, opts: DbPoolOptions): pg.Pool {
  return new pg.Pool({
    host: creds.host,
    port: creds.port,
    database: creds.dbname,
    user: creds.username,
    password: creds.password,
    // TLS with certificate verification. On Lambda, NODE_EXTRA_CA_CERTS=/var/runtime/ca-cert.pem adds
    // the RDS certificate authorities to Node's store.
    ssl: opts.ssl ? { rejectUnauthorized: true } : false,
    max: opts.max ?? 1,
    connectionTimeoutMillis: opts.connectionTimeoutMillis ?? 10_000,
    idleTimeoutMillis: 0,
    options: '-c TimeZone=UTC',
    types: dbTypes,
    application_name: 'pulse-db-poller',
  });
}

/** Postgres errors that mean the cached credentials are stale (rotated password) or wrong. */
const AUTH_FAILURES = new Set(['28P01', '28000']);

/**
 * The instance's pool, created lazily from the secret, which is fetched once and reused. When the
 * database refuses the credentials (the secret was rotated), the cache is dropped so the next
 * invocation reads the secret again.
 */
export class LazyDbPool {
  readonly #load: () => Promise<DbCredentials>;
  readonly #create: (creds: DbCredentials) => DbPool & { end(): Promise<void> };
  #pool: Promise<DbPool & { end(): Promise<void> }> | undefined;

  constructor(
    load: () => Promise<DbCredentials>,
    create: (creds: DbCredentials) => DbPool & { end(): Promise<void> },
  ) {
    this.#load = load;
    this.#create = create;
  }

  /** The pool, reading the secret on the first call only. */
  get(): Promise<DbPool> {
    if (!this.#pool) {
      const pending = this.#load().then((creds) => {
        const pool = this.#create(creds);
        // An idle client's error (the server restarted) must not crash the process; pg drops it.
        (pool as unknown as { on?: (e: string, f: (err: Error) => void) => void }).on?.('error', () => {});
        return pool;
      });
      pending.catch(() => {
        if (this.#pool === pending) this.#pool = undefined;
      });
      this.#pool = pending;
    }
    return this.#pool;
  }

  /** Drops the pool (and the cached secret) when the error says the credentials no longer work. */
  async invalidateOn(err: unknown): Promise<boolean> {
    const code = (err as { code?: unknown } | null)?.code;
    if (typeof code !== 'string' || !AUTH_FAILURES.has(code) || !this.#pool) return false;
    const pool = this.#pool;
    this.#pool = undefined;
    await pool.then((p) => p.end()).catch(() => undefined);
    return true;
  }
}
