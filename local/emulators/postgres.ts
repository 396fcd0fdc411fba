import { execFileSync } from 'node:child_process';
import { chownSync, existsSync, mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import pg from 'pg';
import { REPO_ROOT, startOnAPort, supervise } from './supervisor.ts';

/**
 * A private PostgreSQL server from TypeScript, for test setup and the offline runtime: a fresh data
 * folder under `.pulse/postgres/`, initdb, the server on 127.0.0.1 and a free port, trust
 * authentication, no durability (a throwaway database), removed again by `stop()`.
 * Started and stopped by the supervisor (`supervisor.ts`). `scripts/postgres.sh start` keeps a long-lived
 * server of its own (`.pulse/postgres/data`, port 55432, `cli.ts`) apart from the ones started here. PostgreSQL refuses to run as root: as root, the server runs as `postgres`.
 */

export const PG_MAJOR = 15;
export const DEFAULT_PG_BIN = `/usr/lib/postgresql/${PG_MAJOR}/bin`;

const INSTALL_HINT = `Install it with: bash scripts/postgres.sh install   (as root: apt-get install -y postgresql-${PG_MAJOR})`;

/** PostgreSQL is not installed, cannot be installed, or does not start. The message says what to do. */
export class PostgresUnavailableError extends Error {
  constructor(message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = 'PostgresUnavailableError';
  }
}

export interface StartPostgresOptions {
  /** @default a free port */
  readonly port?: number;
  /** Folder of initdb and postgres. @default /usr/lib/postgresql/15/bin */
  readonly binDir?: string;
  /** @default the repository root */
  readonly root?: string;
  /** Install PostgreSQL (scripts/postgres.sh install) when its binaries are missing. @default true */
  readonly install?: boolean;
  /** @default 60_000 */
  readonly readyTimeoutMs?: number;
  /**
   * A folder kept across runs (the offline run's `.pulse/local/postgres`): initialised on first use,
   * reused afterwards, never removed by stop(). @default a fresh folder under `.pulse/postgres`, removed by stop()
   */
  readonly dir?: string;
  /** Let the server outlive this Node process (`pulse local up --detach`). @default false */
  readonly detached?: boolean;
  /** @default `postgres-<port>.log` in the server's folder */
  readonly logFile?: string;
  /** The folder of its Unix socket. @default the server's folder */
  readonly socketDir?: string;
}

export interface PostgresServer {
  /** `postgres://postgres@127.0.0.1:<port>/postgres` (trust authentication: no password). */
  readonly url: string;
  readonly port: number;
  readonly pid: number;
  readonly dataDir: string;
  /** Stops the server (fast shutdown, SIGKILL after 10 s) and removes its folder. Idempotent. */
  stop(): Promise<void>;
}

/** Runs `scripts/postgres.sh install` when the binaries are missing; returns the bin folder. */
export function ensurePostgresInstalled(binDir = DEFAULT_PG_BIN, root = REPO_ROOT): string {
  if (binariesPresent(binDir)) return binDir;
  try {
    execFileSync('bash', [join(root, 'scripts', 'postgres.sh'), 'install'], {
      cwd: root,
      stdio: ['ignore', 'pipe', 'pipe'],
      env: { ...process.env, PG_BIN: binDir },
    });
  } catch (err) {
    const stderr = (err as { stderr?: Buffer }).stderr?.toString().trim();
    throw new PostgresUnavailableError(
      `PostgreSQL ${PG_MAJOR} is not installed (${binDir}/initdb is missing) and could not be installed: ${stderr ?? err}\n${INSTALL_HINT}`,
      { cause: err },
    );
  }
  if (!binariesPresent(binDir)) {
    throw new PostgresUnavailableError(`PostgreSQL binaries still missing in ${binDir}. ${INSTALL_HINT}`);
  }
  return binDir;
}

function binariesPresent(binDir: string): boolean {
  return ['initdb', 'postgres'].every((b) => existsSync(join(binDir, b)));
}

/** The uid/gid to run the server as: `postgres` when we are root, ourselves otherwise. */
function owner(): { uid: number; gid: number } | undefined {
  if (process.getuid?.() !== 0) return undefined;
  try {
    const uid = Number(execFileSync('id', ['-u', 'postgres']).toString().trim());
    const gid = Number(execFileSync('id', ['-g', 'postgres']).toString().trim());
    return { uid, gid };
  } catch (err) {
    throw new PostgresUnavailableError(
      "running as root, and there is no 'postgres' user to run the server as (the Debian package creates it)",
      { cause: err },
    );
  }
}

/**
 * Starts a private server and resolves once it accepts connections. The process is also killed when
 * this Node process exits, so an interrupted test run does not leave it behind.
 */
export async function startPostgres(options: StartPostgresOptions = {}): Promise<PostgresServer> {
  const root = options.root ?? REPO_ROOT;
  const binDir =
    options.install === false
      ? (options.binDir ?? DEFAULT_PG_BIN)
      : ensurePostgresInstalled(options.binDir ?? DEFAULT_PG_BIN, root);
  if (!binariesPresent(binDir)) {
    throw new PostgresUnavailableError(
      `PostgreSQL is not installed (${binDir}/initdb is missing). ${INSTALL_HINT}`,
    );
  }
  const user = owner();
  const base = join(root, '.pulse', 'postgres');
  mkdirSync(options.dir ?? base, { recursive: true });
  const keep = options.dir !== undefined;
  const dir = options.dir ?? mkdtempSync(join(base, 'tmp-'));
  if (user) chownSync(dir, user.uid, user.gid);
  const dataDir = join(dir, 'data');
  const ids = user ? { uid: user.uid, gid: user.gid } : {};
  const remove = () => {
    if (!keep) rmSync(dir, { recursive: true, force: true });
  };
  try {
    if (!existsSync(join(dataDir, 'PG_VERSION'))) {
      rmSync(dataDir, { recursive: true, force: true });
      execFileSync(
        join(binDir, 'initdb'),
        [
          '-D',
          dataDir,
          '--username=postgres',
          '--auth=trust',
          '--encoding=UTF8',
          '--locale=C.UTF-8',
          '--no-sync',
          '--no-instructions',
        ],
        { cwd: dir, stdio: ['ignore', 'pipe', 'pipe'], ...ids },
      );
    }
  } catch (err) {
    remove();
    throw new PostgresUnavailableError(
      `initdb failed: ${(err as { stderr?: Buffer }).stderr?.toString().trim() ?? err}`,
      { cause: err },
    );
  }

  try {
    return await startOnAPort(
      options.port,
      (port) =>
        startOn(binDir, dir, dataDir, port, ids, {
          readyTimeoutMs: options.readyTimeoutMs ?? 60_000,
          keep,
          detached: options.detached ?? false,
          logFile: options.logFile ?? join(dir, `postgres-${port}.log`),
          socketDir: options.socketDir ?? dir,
        }),
      unavailable,
    );
  } catch (err) {
    remove();
    throw err;
  }
}

const unavailable = (message: string, options?: ErrorOptions) =>
  new PostgresUnavailableError(message, options);

async function startOn(
  binDir: string,
  dir: string,
  dataDir: string,
  port: number,
  ids: { uid?: number; gid?: number },
  opts: { readyTimeoutMs: number; keep: boolean; detached: boolean; logFile: string; socketDir: string },
): Promise<PostgresServer> {
  const url = `postgres://postgres@127.0.0.1:${port}/postgres`;
  const server = await supervise({
    name: 'postgres',
    command: join(binDir, 'postgres'),
    // Loopback only, our own socket folder, and no durability (a throwaway database).
    args: [
      '-D',
      dataDir,
      '-p',
      String(port),
      '-c',
      'listen_addresses=127.0.0.1',
      '-k',
      opts.socketDir,
      '-c',
      'fsync=off',
      '-c',
      'synchronous_commit=off',
      '-c',
      'full_page_writes=off',
      '-c',
      'max_connections=200',
    ],
    cwd: dir,
    ports: [port],
    logFile: opts.logFile,
    ...ids,
    detached: opts.detached,
    isReady: () => isPostgresReady(url),
    pollMs: 100,
    readyTimeoutMs: opts.readyTimeoutMs,
    stopSignal: 'SIGINT', // fast shutdown: roll back open transactions, close connections
    stopGraceMs: 10_000,
    portInUse: /could not bind|address already in use/i,
    unavailable,
    spawnFailed: (err) => `could not run ${binDir}/postgres: ${err.message}. ${INSTALL_HINT}`,
    notReady: (tail) => `postgres did not accept connections on ${url} in time:\n${tail}`,
    cleanUp: () => {
      if (!opts.keep) rmSync(dir, { recursive: true, force: true });
    },
  });
  return { url, port, pid: server.pid, dataDir, stop: server.stop };
}

/** True when a server at the URL answers `SELECT 1`. */
export async function isPostgresReady(url: string): Promise<boolean> {
  const client = new pg.Client({ connectionString: url, connectionTimeoutMillis: 1000 });
  client.on('error', () => {});
  try {
    await client.connect();
    await client.query('SELECT 1');
    return true;
  } catch {
    return false;
  } finally {
    await client.end().catch(() => undefined);
  }
}

/** Waits until a server (one started elsewhere) accepts connections at the URL. */
export async function waitForPostgres(url: string, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await isPostgresReady(url))) {
    if (Date.now() > deadline) throw new PostgresUnavailableError(`no PostgreSQL server answers at ${url}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}
