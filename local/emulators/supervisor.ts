/**
 * The one supervisor of the servers the offline run and the tests start (moto server, PostgreSQL, Kafka):
 * spawn a server with its output in a log file, wait until it answers, and stop it by its own pid. Each
 * server's module (`moto.ts`, `postgres.ts`, `kafka.ts`) says only what differs: its command line, how
 * to ask whether it is ready, how it is stopped and what its errors say. `scripts/*.sh start|stop|status`
 * reach the same code through `bin/emulator.js` (`cli.ts`).
 */

import { type ChildProcess, spawn } from 'node:child_process';
import { once } from 'node:events';
import { closeSync, openSync, readFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { fileURLToPath } from 'node:url';

/** The repository root (this file lives in `local/emulators/`). */
export const REPO_ROOT = fileURLToPath(new URL('../..', import.meta.url));

/**
 * The server exited during start-up because its port was taken (between our probe and its bind, or by
 * someone else). {@link startOnAPort} tries another free port; a caller that fixed the port gets the
 * server's own error, caused by this one.
 */
export class PortInUseError extends Error {
  constructor(message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = 'PortInUseError';
  }
}

/** Makes a server's own typed error (`EmulatorUnavailableError`, `PostgresUnavailableError`, …). */
export type UnavailableError = (message: string, options?: ErrorOptions) => Error;

/** One server to supervise: what differs between moto, PostgreSQL and Kafka. */
export interface ServerSpec {
  /** How messages name it: `moto server`, `postgres`, `Kafka`. */
  readonly name: string;
  readonly command: string;
  readonly args: readonly string[];
  readonly cwd: string;
  /**
   * The ports it listens on, each refused before it is spawned when something listens there already:
   * a server already there would answer the readiness check in its stead. @default none
   */
  readonly ports?: readonly number[];
  /** @default 127.0.0.1 */
  readonly host?: string;
  /** Its stdout and stderr (appended). */
  readonly logFile: string;
  /** Run it as this user (PostgreSQL refuses to run as root). @default ourselves */
  readonly uid?: number;
  readonly gid?: number;
  /** Let it outlive this Node process (`pulse local up --detach`, `scripts/*.sh start`). */
  readonly detached: boolean;
  /** Called with its pid as soon as it is spawned (to record it before it is ready). */
  readonly onSpawn?: (pid: number) => void;
  /** True once it answers. Asked every `pollMs` until `readyTimeoutMs` has passed. */
  readonly isReady: () => Promise<boolean>;
  readonly pollMs: number;
  readonly readyTimeoutMs: number;
  /** The signal of a clean stop (SIGTERM; PostgreSQL's fast shutdown is SIGINT), SIGKILL after `stopGraceMs`. */
  readonly stopSignal: NodeJS.Signals;
  readonly stopGraceMs: number;
  /** A log line saying its port was taken. @default none: it has no port that could be */
  readonly portInUse?: RegExp;
  readonly unavailable: UnavailableError;
  /** The message when the command cannot be run at all (not found, not executable). */
  readonly spawnFailed: (err: Error) => string;
  /** The message when it did not answer in time; `tail` is its log's end, read before it was stopped. */
  readonly notReady: (tail: string) => string;
  /** Runs once it has exited through `stop()`; `failedStart` when it was stopped for not answering in time. */
  readonly cleanUp?: (failedStart: boolean) => void;
}

/** A server started by {@link supervise}. */
export interface Supervised {
  readonly pid: number;
  /** Stops it (the spec's signal, then SIGKILL) and cleans up. Idempotent; resolves once it has exited. */
  stop(): Promise<void>;
}

const alive = (child: ChildProcess) => child.exitCode === null && child.signalCode === null;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/**
 * Spawns the server and resolves once it is ready. Unless detached, it is also killed when this Node
 * process exits, so an interrupted test run does not leave it behind.
 * @throws PortInUseError when it exited saying its port was taken; the spec's error otherwise.
 */
export async function supervise(spec: ServerSpec): Promise<Supervised> {
  const host = spec.host ?? '127.0.0.1';
  for (const port of spec.ports ?? []) {
    if (!(await isPortFree(port, host))) {
      throw new PortInUseError(`${spec.name} cannot listen on ${host}:${port}: address already in use`);
    }
  }
  const fd = openSync(spec.logFile, 'a');
  let child: ChildProcess;
  try {
    child = spawn(spec.command, spec.args, {
      cwd: spec.cwd,
      stdio: ['ignore', fd, fd],
      detached: spec.detached,
      ...(spec.uid === undefined ? {} : { uid: spec.uid }),
      ...(spec.gid === undefined ? {} : { gid: spec.gid }),
    });
  } finally {
    closeSync(fd);
  }
  const killOnExit = () => {
    if (alive(child)) child.kill('SIGKILL');
  };
  if (!spec.detached) process.once('exit', killOnExit);
  const spawnError = new Promise<Error>((resolve) => child.once('error', resolve));
  if (child.pid !== undefined) spec.onSpawn?.(child.pid);

  let stopping: Promise<void> | undefined;
  const stop = (failedStart = false) => {
    stopping ??= (async () => {
      process.removeListener('exit', killOnExit);
      if (alive(child)) {
        const exited = once(child, 'exit');
        child.kill(spec.stopSignal);
        const timer = setTimeout(() => child.kill('SIGKILL'), spec.stopGraceMs);
        await exited;
        clearTimeout(timer);
      }
      spec.cleanUp?.(failedStart);
    })();
    return stopping;
  };

  const deadline = Date.now() + spec.readyTimeoutMs;
  for (;;) {
    const failed = await Promise.race([spawnError, sleep(0).then(() => undefined)]);
    if (failed) {
      process.removeListener('exit', killOnExit);
      throw spec.unavailable(spec.spawnFailed(failed), { cause: failed });
    }
    if (!alive(child)) {
      process.removeListener('exit', killOnExit);
      const tail = logTail(spec.logFile);
      const message = `${spec.name} exited during start-up (code ${child.exitCode ?? child.signalCode}); ${spec.logFile}:\n${tail}`;
      throw spec.portInUse?.test(tail) ? new PortInUseError(message) : spec.unavailable(message);
    }
    if (await spec.isReady()) break;
    if (Date.now() > deadline) {
      const tail = logTail(spec.logFile);
      await stop(true);
      throw spec.unavailable(spec.notReady(tail));
    }
    await sleep(spec.pollMs);
  }
  if (child.pid === undefined) throw spec.unavailable(`${spec.name} started without a pid`);
  if (spec.detached) child.unref();
  return { pid: child.pid, stop: () => stop() };
}

/**
 * Starts a server on `port`, or, when none is given, on a free one, trying up to three free ports: one can
 * be taken between the probe and the server's bind.
 * @throws the server's own error (a {@link PortInUseError} as its cause when every port was taken).
 */
export async function startOnAPort<T>(
  port: number | undefined,
  start: (port: number) => Promise<T>,
  unavailable: UnavailableError,
  host = '127.0.0.1',
): Promise<T> {
  const attempts = port === undefined ? 3 : 1;
  let lastError: unknown;
  for (let attempt = 1; attempt <= attempts; attempt++) {
    try {
      return await start(port ?? (await freePort(host)));
    } catch (err) {
      if (!(err instanceof PortInUseError)) throw err;
      lastError = err;
    }
  }
  const err = lastError as PortInUseError;
  throw unavailable(err.message, { cause: err });
}

/** A TCP port nothing listens on right now. */
export async function freePort(host = '127.0.0.1'): Promise<number> {
  const server = createServer();
  server.listen(0, host);
  await once(server, 'listening');
  const address = server.address();
  server.close();
  await once(server, 'close');
  if (address === null || typeof address === 'string') throw new Error('could not find a free port');
  return address.port;
}

/** True when nothing listens on the port (it can be bound right now). */
export function isPortFree(port: number, host = '127.0.0.1'): Promise<boolean> {
  return new Promise((resolve) => {
    const server = createServer();
    server.once('error', () => resolve(false));
    server.listen(port, host, () => server.close(() => resolve(true)));
  });
}

/** The last lines of a server's log, for an error message; `(no log)` when there is none. */
export function logTail(file: string, lines = 20): string {
  try {
    return readFileSync(file, 'utf8').trimEnd().split('\n').slice(-lines).join('\n');
  } catch {
    return '(no log)';
  }
}

/** A process started earlier (by another command), recorded by pid. */
export interface ProcessRecord {
  readonly pid: number;
  /** A fragment of the process's command line that identifies it as ours. */
  readonly marker: string;
}

/**
 * True when the process runs and its command line holds the record's marker, so that a recycled pid is
 * never mistaken for ours (an exited process not yet reaped has an empty command line: not running).
 */
export function isRunning(record: ProcessRecord | undefined): boolean {
  if (!record) return false;
  try {
    process.kill(record.pid, 0);
  } catch {
    return false;
  }
  try {
    const cmdline = readFileSync(`/proc/${record.pid}/cmdline`, 'utf8').replaceAll('\0', ' ');
    return cmdline.includes(record.marker);
  } catch {
    // No /proc (macOS): the pid answering signal 0 is the best evidence there is.
    return true;
  }
}

/**
 * Stops a recorded process: `signal`, then SIGKILL after `graceMs`. Resolves once it has exited.
 * Does nothing (and resolves false) when the pid is gone or belongs to someone else now.
 */
export async function stopProcess(
  record: ProcessRecord | undefined,
  signal: NodeJS.Signals = 'SIGTERM',
  graceMs = 15_000,
): Promise<boolean> {
  if (!isRunning(record) || !record) return false;
  try {
    process.kill(record.pid, signal);
  } catch {
    return false;
  }
  const deadline = Date.now() + graceMs;
  while (isRunning(record)) {
    if (Date.now() > deadline) {
      try {
        process.kill(record.pid, 'SIGKILL');
      } catch {
        // exited meanwhile
      }
    }
    await sleep(100);
  }
  return true;
}
