import { existsSync, mkdirSync, readdirSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { type InstallOptions, runInstallScript } from './install-script.ts';
import { REPO_ROOT, startOnAPort, supervise } from './supervisor.ts';

/**
 * The moto server (S3, SQS, DynamoDB) from TypeScript: install it into the repository's `.venv`, start
 * a private instance on a free port (through the supervisor, `supervisor.ts`), stop it.
 * `scripts/emulators.sh start` keeps a long-lived server of its own (by pid file, `cli.ts`) apart from
 * the ones started here.
 */

/** The moto version the project pins (also in scripts/emulators.sh). */
export const MOTO_VERSION = '5.2.5';

const INSTALL_HINT =
  'Install it with: bash scripts/emulators.sh install   (needs Python >= 3.9 with its venv module)';

/** The emulator is not installed, cannot be installed, or does not start. The message says what to do. */
export class EmulatorUnavailableError extends Error {
  constructor(message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = 'EmulatorUnavailableError';
  }
}

export interface MotoPaths {
  readonly venv: string;
  readonly motoServer: string;
  readonly script: string;
}

export function motoPaths(root: string = REPO_ROOT): MotoPaths {
  const venv = join(root, '.venv');
  return {
    venv,
    motoServer: join(venv, 'bin', 'moto_server'),
    script: join(root, 'scripts', 'emulators.sh'),
  };
}

/** True when `.venv` holds moto_server and the pinned moto version. */
export function isMotoInstalled(root: string = REPO_ROOT): boolean {
  const { venv, motoServer } = motoPaths(root);
  if (!existsSync(motoServer)) return false;
  const lib = join(venv, 'lib');
  if (!existsSync(lib)) return false;
  return readdirSync(lib)
    .filter((d) => d.startsWith('python'))
    .some((d) => existsSync(join(lib, d, 'site-packages', `moto-${MOTO_VERSION}.dist-info`)));
}

export type EnsureMotoOptions = InstallOptions;

/**
 * Makes sure moto is installed in `.venv`, running `scripts/emulators.sh install` when it is not (on a
 * fresh clone that takes about half a minute). Returns the path of `moto_server`.
 * @throws EmulatorUnavailableError saying what is missing and how to install it.
 */
export async function ensureMotoInstalled(options: EnsureMotoOptions = {}): Promise<string> {
  const root = options.root ?? REPO_ROOT;
  const paths = motoPaths(root);
  if (isMotoInstalled(root)) return paths.motoServer;
  const run = await runInstallScript(paths.script, root, options.onOutput);
  if (run.error) {
    throw new EmulatorUnavailableError(
      `moto server is not installed and bash could not be run: ${run.error}. ${INSTALL_HINT}`,
      {
        cause: run.error,
      },
    );
  }
  const { code } = run;
  if (code !== 0 || !existsSync(paths.motoServer)) {
    throw new EmulatorUnavailableError(
      `moto server (moto[server]==${MOTO_VERSION}) is missing: ${paths.motoServer} does not exist and ` +
        `'bash scripts/emulators.sh install' failed (exit ${code}).\n` +
        `${run.tail.join('\n')}\n${INSTALL_HINT}`,
    );
  }
  return paths.motoServer;
}

export interface StartMotoOptions {
  /** @default a free port, so that a run never collides with a server someone already has */
  readonly port?: number;
  /** @default 127.0.0.1 */
  readonly host?: string;
  /** @default the repository root */
  readonly root?: string;
  /** @default `.pulse/log/moto-<port>.log` under the root, removed by a clean stop() */
  readonly logFile?: string;
  /** @default 30_000 */
  readonly readyTimeoutMs?: number;
  /**
   * Keep S3, SQS and DynamoDB state in this file: loaded at start, written when the server is
   * stopped with SIGTERM (scripts/moto_server.py). @default none: state lives in memory only
   */
  readonly stateFile?: string;
  /** Let the server outlive this Node process (`pulse local up --detach`). @default false */
  readonly detached?: boolean;
}

export interface MotoServer {
  /** For example `http://127.0.0.1:40123`. */
  readonly endpoint: string;
  readonly port: number;
  readonly pid: number;
  readonly logFile: string;
  /** Stops this server (SIGTERM, then SIGKILL after 5 s). Idempotent. */
  stop(): Promise<void>;
}

/**
 * Starts a moto server of our own and resolves once it answers. The process is also killed when this
 * Node process exits, so an interrupted test run does not leave it behind.
 * @throws EmulatorUnavailableError when moto is not installed or does not start.
 */
export async function startMoto(options: StartMotoOptions = {}): Promise<MotoServer> {
  const root = options.root ?? REPO_ROOT;
  const host = options.host ?? '127.0.0.1';
  const { motoServer } = motoPaths(root);
  if (!existsSync(motoServer)) {
    throw new EmulatorUnavailableError(
      `moto server is not installed (${motoServer} is missing). ${INSTALL_HINT}`,
    );
  }
  return startOnAPort(
    options.port,
    (port) => startOn(motoServer, host, port, root, options),
    unavailable,
    host,
  );
}

const unavailable = (message: string, options?: ErrorOptions) =>
  new EmulatorUnavailableError(message, options);

async function startOn(
  motoServer: string,
  host: string,
  port: number,
  root: string,
  options: StartMotoOptions,
): Promise<MotoServer> {
  const ownLog = options.logFile === undefined;
  const logFile = options.logFile ?? join(root, '.pulse', 'log', `moto-${port}.log`);
  mkdirSync(join(logFile, '..'), { recursive: true });
  const endpoint = `http://${host}:${port}`;
  // Through scripts/moto_server.py: moto itself, with TransactWriteItems made fast and isolated, and scans
  // and sends that do not slow down as a table or queue grows.
  const state = options.stateFile ? ['--state', options.stateFile] : [];
  const server = await supervise({
    name: 'moto server',
    command: join(motoServer, '..', 'python'),
    args: [join(root, 'scripts', 'moto_server.py'), ...state, '-H', host, '-p', String(port)],
    cwd: root,
    ports: [port],
    host,
    logFile,
    detached: options.detached ?? false,
    isReady: () => isMotoReady(endpoint),
    pollMs: 50,
    readyTimeoutMs: options.readyTimeoutMs ?? 30_000,
    stopSignal: 'SIGTERM', // moto_server.py saves its state file on SIGTERM
    stopGraceMs: 5000,
    portInUse: /address already in use/i,
    unavailable,
    spawnFailed: (err) => `could not run ${motoServer}: ${err.message}. ${INSTALL_HINT}`,
    notReady: () => `moto server did not answer on ${endpoint}/moto-api/ in time; see ${logFile}`,
    // The log of a server that started and stopped cleanly is of no interest; a failed start keeps its.
    cleanUp: (failedStart) => {
      if (ownLog && !failedStart) rmSync(logFile, { force: true });
    },
  });
  return { endpoint, port, pid: server.pid, logFile, stop: server.stop };
}

/** True when a moto server answers `GET /moto-api/` at the endpoint. */
export async function isMotoReady(endpoint: string): Promise<boolean> {
  try {
    const res = await fetch(`${endpoint}/moto-api/`, { signal: AbortSignal.timeout(1000) });
    await res.arrayBuffer();
    return res.ok;
  } catch {
    return false;
  }
}

/**
 * Waits until a moto server (one started elsewhere) answers at the endpoint.
 * @throws EmulatorUnavailableError when it does not within the timeout.
 */
export async function waitForMoto(endpoint: string, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await isMotoReady(endpoint))) {
    if (Date.now() > deadline) {
      throw new EmulatorUnavailableError(`no moto server answers at ${endpoint}/moto-api/`);
    }
    await new Promise((r) => setTimeout(r, 100));
  }
}
