import { type ChildProcess, execFileSync, spawn } from 'node:child_process';
import { once } from 'node:events';
import { chownSync, closeSync, existsSync, mkdirSync, mkdtempSync, openSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import pg from 'pg';
import { logTail } from './install-script.ts';
import { freePort, REPO_ROOT } from './moto.ts';

/**
 * A private PostgreSQL server from TypeScript, for test setup and the offline runtime: a fresh data
 * folder under `.pulse/postgres/`, initdb, the server on 127.0.0.1 and a free port, trust
 * authentication, no durability (a throwaway database), removed again by `stop()`.
 * `scripts/postgres.sh` keeps a long-lived server of its own (`.pulse/postgres/data`, port 55432) apart
 * from the ones started here. PostgreSQL refuses to run as root: as root, the server runs as `postgres`.
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

  const attempts = options.port === undefined ? 3 : 1;
  let lastError: unknown;
  for (let attempt = 1; attempt <= attempts; attempt++) {
    const port = options.port ?? (await freePort());
    try {
      return await startOn(binDir, dir, dataDir, port, ids, {
        readyTimeoutMs: options.readyTimeoutMs ?? 60_000,
        keep,
        detached: options.detached ?? false,
      });
    } catch (err) {
      lastError = err;
      if (!(err instanceof PortInUseError)) break;
    }
  }
  remove();
  throw lastError;
}

class PortInUseError extends PostgresUnavailableError {}

async function startOn(
  binDir: string,
  dir: string,
  dataDir: string,
  port: number,
  ids: { uid?: number; gid?: number },
  opts: { readyTimeoutMs: number; keep: boolean; detached: boolean },
): Promise<PostgresServer> {
  const { readyTimeoutMs } = opts;
  const logFile = join(dir, `postgres-${port}.log`);
  const fd = openSync(logFile, 'a');
  let child: ChildProcess;
  try {
    child = spawn(
      join(binDir, 'postgres'),
      [
        '-D',
        dataDir,
        '-p',
        String(port),
        '-c',
        'listen_addresses=127.0.0.1',
        '-k',
        dir,
        '-c',
        'fsync=off',
        '-c',
        'synchronous_commit=off',
        '-c',
        'full_page_writes=off',
        '-c',
        'max_connections=200',
      ],
      { cwd: dir, stdio: ['ignore', fd, fd], detached: opts.detached, ...ids },
    );
  } finally {
    closeSync(fd);
  }
  const killOnExit = () => {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  };
  if (!opts.detached) process.once('exit', killOnExit);
  const spawnError = new Promise<Error>((resolve) => child.once('error', resolve));
  const url = `postgres://postgres@127.0.0.1:${port}/postgres`;

  let stopped = false;
  const stop = async () => {
    if (stopped) return;
    stopped = true;
    process.removeListener('exit', killOnExit);
    if (child.exitCode === null && child.signalCode === null) {
      const exited = once(child, 'exit');
      child.kill('SIGINT'); // fast shutdown: roll back open transactions, close connections
      const timer = setTimeout(() => child.kill('SIGKILL'), 10_000);
      await exited;
      clearTimeout(timer);
    }
    if (!opts.keep) rmSync(dir, { recursive: true, force: true });
  };

  const deadline = Date.now() + readyTimeoutMs;
  for (;;) {
    const failed = await Promise.race([
      spawnError,
      new Promise<undefined>((r) => setTimeout(() => r(undefined), 0)),
    ]);
    if (failed) {
      process.removeListener('exit', killOnExit);
      throw new PostgresUnavailableError(
        `could not run ${binDir}/postgres: ${failed.message}. ${INSTALL_HINT}`,
        {
          cause: failed,
        },
      );
    }
    if (child.exitCode !== null || child.signalCode !== null) {
      process.removeListener('exit', killOnExit);
      const tail = logTail(logFile);
      const message = `postgres exited during start-up (code ${child.exitCode ?? child.signalCode}); ${logFile}:\n${tail}`;
      throw /could not bind|address already in use/i.test(tail)
        ? new PortInUseError(message)
        : new PostgresUnavailableError(message);
    }
    if (await isPostgresReady(url)) break;
    if (Date.now() > deadline) {
      const tail = logTail(logFile);
      await stop();
      throw new PostgresUnavailableError(`postgres did not accept connections on ${url} in time:\n${tail}`);
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  if (child.pid === undefined) throw new PostgresUnavailableError('postgres started without a pid');
  if (opts.detached) child.unref();
  return { url, port, pid: child.pid, dataDir, stop };
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
