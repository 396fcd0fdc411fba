import { mkdirSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { REPO_ROOT, startOnAPort, supervise } from './supervisor.ts';

/**
 * The Confluent Schema Registry stand-in (`schema-registry-server.ts`) as a server of its own, started
 * through the supervisor like moto, PostgreSQL and Kafka: on a free port of 127.0.0.1, ready once it
 * answers `GET /subjects`, stopped by its pid.
 */
export class SchemaRegistryUnavailableError extends Error {
  constructor(message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = 'SchemaRegistryUnavailableError';
  }
}

export interface StartSchemaRegistryOptions {
  /** @default a free port */
  readonly port?: number;
  /** @default 127.0.0.1 */
  readonly host?: string;
  /** Keep the registered schemas in this file (read at start). @default in memory only */
  readonly stateFile?: string;
  /** @default `.pulse/log/schema-registry-<port>.log`, removed by a clean stop() */
  readonly logFile?: string;
  /** Let it outlive this Node process (`pulse local up --detach`). @default false */
  readonly detached?: boolean;
}

export interface SchemaRegistryServer {
  /** For example `http://127.0.0.1:40123`. */
  readonly url: string;
  readonly port: number;
  readonly pid: number;
  /** Stops it (SIGTERM, then SIGKILL). Idempotent. */
  stop(): Promise<void>;
}

const unavailable = (message: string, options?: ErrorOptions) =>
  new SchemaRegistryUnavailableError(message, options);

export function startSchemaRegistry(options: StartSchemaRegistryOptions = {}): Promise<SchemaRegistryServer> {
  const host = options.host ?? '127.0.0.1';
  return startOnAPort(options.port, (port) => startOn(host, port, options), unavailable, host);
}

async function startOn(host: string, port: number, options: StartSchemaRegistryOptions) {
  const ownLog = options.logFile === undefined;
  const logFile = options.logFile ?? join(REPO_ROOT, '.pulse', 'log', `schema-registry-${port}.log`);
  mkdirSync(join(logFile, '..'), { recursive: true });
  const url = `http://${host}:${port}`;
  const state = options.stateFile ? ['--state', options.stateFile] : [];
  const server = await supervise({
    name: 'schema registry stand-in',
    command: process.execPath,
    args: [join(REPO_ROOT, 'bin', 'schema-registry.js'), '--host', host, '--port', String(port), ...state],
    cwd: REPO_ROOT,
    ports: [port],
    host,
    logFile,
    detached: options.detached ?? false,
    isReady: () => isSchemaRegistryReady(url),
    pollMs: 50,
    readyTimeoutMs: 20_000,
    stopSignal: 'SIGTERM',
    stopGraceMs: 3000,
    portInUse: /EADDRINUSE/,
    unavailable,
    spawnFailed: (err) => `could not run the schema registry stand-in: ${err.message}`,
    notReady: () => `the schema registry stand-in did not answer on ${url}/subjects in time; see ${logFile}`,
    cleanUp: (failedStart) => {
      if (ownLog && !failedStart) rmSync(logFile, { force: true });
    },
  });
  return { url, port, pid: server.pid, stop: server.stop };
}

/** True when a registry answers `GET /subjects` at the URL. */
export async function isSchemaRegistryReady(url: string): Promise<boolean> {
  try {
    const res = await fetch(`${url}/subjects`, { signal: AbortSignal.timeout(1000) });
    await res.arrayBuffer();
    return res.ok;
  } catch {
    return false;
  }
}
