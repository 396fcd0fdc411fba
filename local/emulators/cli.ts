/**
 * `start`, `stop` and `status` of `scripts/emulators.sh`, `scripts/postgres.sh` and `scripts/kafka.sh`
 * (which call `node bin/emulator.js <server> <command> [PORT]`): one long-lived server of each kind for the
 * repository, on a fixed port, recorded by its pid under `.pulse/` and recognised by its command line, so
 * that `stop` stops only the server `start` started. Starting and stopping is the supervisor's
 * (`supervisor.ts`), as for the servers the tests and `pulse local up` start; installing stays in the
 * scripts (pip, apt, Maven). Idempotent: `start` leaves a running server alone, `stop` one that is not.
 * Exits 1 on failure, and from `status` when the server is not running.
 */

import { existsSync, mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { appendFile } from 'node:fs/promises';
import { join } from 'node:path';
import { runInstallScript } from './install-script.ts';
import { isKafkaInstalled, KAFKA_VERSION, startKafka } from './kafka.ts';
import { motoPaths, startMoto } from './moto.ts';
import { DEFAULT_PG_BIN, startPostgres } from './postgres.ts';
import { isPortFree, isRunning, REPO_ROOT, stopProcess } from './supervisor.ts';

const HOST = '127.0.0.1';
const RUN_DIR = join(REPO_ROOT, '.pulse', 'run');
const LOG_DIR = join(REPO_ROOT, '.pulse', 'log');

/** A failure the command reports as `<prefix>: error: <message>` (exit 1). */
class CommandError extends Error {
  constructor(message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = 'CommandError';
  }
}

interface Server {
  start(port: string | undefined): Promise<void>;
  stop(): Promise<void>;
  /** False when it is not running (exit 1). */
  status(): boolean;
}

type Say = (line: string) => void;

/** The pid in `file` (its first line) when that process runs and its command line holds `marker`. */
function ourPid(file: string, marker: string): number | undefined {
  if (!existsSync(file)) return undefined;
  const pid = Number((readFileSync(file, 'utf8').split('\n')[0] ?? '').replace(/\D/g, ''));
  return pid > 0 && isRunning({ pid, marker }) ? pid : undefined;
}

function readPort(file: string): string {
  try {
    return readFileSync(file, 'utf8').trim() || '?';
  } catch {
    return '?';
  }
}

function portArg(value: string, max: number): number {
  const port = /^\d+$/.test(value) ? Number(value) : Number.NaN;
  if (!(port >= 1 && port <= max)) throw new CommandError(`not a port: ${value}`);
  return port;
}

const seconds = (since: number) => Math.round((Date.now() - since) / 1000);
const stamp = () => new Date().toISOString().replace(/\.\d{3}Z$/, 'Z');

/** The moto server of `scripts/emulators.sh`: port 5000 (or $MOTO_PORT), `.pulse/run/moto.pid`. */
function moto(say: Say): Server {
  const pidFile = join(RUN_DIR, 'moto.pid');
  const portFile = join(RUN_DIR, 'moto.port');
  const logFile = join(LOG_DIR, 'moto.log');
  const marker = 'moto_server';
  const { venv, motoServer } = motoPaths();
  const version = () => {
    const lib = join(venv, 'lib');
    if (!existsSync(lib)) return undefined;
    for (const python of readdirSync(lib)) {
      const site = join(lib, python, 'site-packages');
      const info = existsSync(site)
        ? readdirSync(site).find((d) => /^moto-.+\.dist-info$/.test(d))
        : undefined;
      if (info) return info.slice('moto-'.length, -'.dist-info'.length);
    }
    return undefined;
  };
  return {
    async start(arg) {
      const port = portArg(arg ?? process.env.MOTO_PORT ?? '5000', 65535);
      if (!existsSync(motoServer)) {
        throw new CommandError(
          `moto is not installed (${motoServer} is missing). Run: bash scripts/emulators.sh install`,
        );
      }
      const pid = ourPid(pidFile, marker);
      if (pid) {
        const running = readPort(portFile);
        say(`moto already running: pid ${pid}, http://${HOST}:${running}`);
        if (arg !== undefined && running !== String(port)) {
          say(`(not starting a second one on port ${port}: run 'bash scripts/emulators.sh stop' first)`);
        }
        return;
      }
      if (!(await isPortFree(port))) {
        throw new CommandError(
          `port ${port} on ${HOST} is already in use by another process. Choose another: bash scripts/emulators.sh start PORT`,
        );
      }
      mkdirSync(RUN_DIR, { recursive: true });
      mkdirSync(LOG_DIR, { recursive: true });
      await appendFile(logFile, `\n=== ${stamp()} moto_server -H ${HOST} -p ${port}\n`);
      const began = Date.now();
      const server = await startMoto({ port, detached: true, logFile, readyTimeoutMs: 30_000 });
      writeFileSync(pidFile, `${server.pid}\n`);
      writeFileSync(portFile, `${port}\n`);
      say(
        `moto running: pid ${server.pid}, http://${HOST}:${port} (log: .pulse/log/moto.log, ready in ${seconds(began)}s)`,
      );
    },
    async stop() {
      const pid = ourPid(pidFile, marker);
      if (pid) await stopProcess({ pid, marker }, 'SIGTERM', 5000);
      rmSync(pidFile, { force: true });
      rmSync(portFile, { force: true });
      say(pid ? `moto stopped (pid ${pid})` : 'moto not running (no live server in .pulse/run/moto.pid)');
    },
    status() {
      const installed = version();
      if (!installed) say('moto not installed (run: bash scripts/emulators.sh install)');
      const pid = ourPid(pidFile, marker);
      if (pid) {
        say(`moto ${installed ?? '?'} running: pid ${pid}, http://${HOST}:${readPort(portFile)}`);
        return true;
      }
      if (installed) say(`moto ${installed} installed, not running`);
      return false;
    },
  };
}

/**
 * The PostgreSQL server of `scripts/postgres.sh`: data in `.pulse/postgres/data` (its own `postmaster.pid`
 * is the pid file), port 55432 (or $PG_PORT), installed and initialised by the script first.
 */
function postgres(say: Say): Server {
  const base = join(REPO_ROOT, '.pulse', 'postgres');
  const data = join(base, 'data');
  const portFile = join(base, 'port');
  const pidFile = join(data, 'postmaster.pid');
  const url = (port: string | number) => `postgres://postgres@${HOST}:${port}/postgres`;
  return {
    async start(arg) {
      const value = arg ?? process.env.PG_PORT ?? '55432';
      if (!/^\d+$/.test(value)) throw new CommandError(`port must be a number, got '${value}'`);
      const pid = ourPid(pidFile, data);
      if (pid) {
        say(`already running (pid ${pid}, port ${readPort(portFile)})`);
        return;
      }
      // Its lines already say `postgres: `.
      const install = await runInstallScript(join(REPO_ROOT, 'scripts', 'postgres.sh'), REPO_ROOT, (line) =>
        process.stdout.write(`${line}\n`),
      );
      if (install.code !== 0)
        throw new CommandError(`'bash scripts/postgres.sh install' failed (exit ${install.code})`);
      const server = await startPostgres({
        port: Number(value),
        dir: base,
        binDir: process.env.PG_BIN || DEFAULT_PG_BIN,
        install: false,
        detached: true,
        logFile: join(LOG_DIR, 'postgres.log'),
        socketDir: join(base, 'run'),
      });
      writeFileSync(portFile, `${value}\n`);
      say(`running (pid ${server.pid}) at ${url(value)}`);
    },
    async stop() {
      const pid = ourPid(pidFile, data);
      if (!pid) {
        say('not running');
        return;
      }
      await stopProcess({ pid, marker: data }, 'SIGINT', 60_000); // fast shutdown, as pg_ctl stop -m fast
      say(`stopped (pid ${pid})`);
    },
    status() {
      const pid = ourPid(pidFile, data);
      say(pid ? `running (pid ${pid}) at ${url(readPort(portFile))}` : 'not running');
      return pid !== undefined;
    },
  };
}

/**
 * The Kafka broker of `scripts/kafka.sh`: folder `.pulse/kafka` (storage in `data/`, formatted on the first
 * start), port 59092 (or $KAFKA_PORT), controller on the next port (or $KAFKA_CONTROLLER_PORT),
 * `.pulse/run/kafka.pid`; its command line carries `-Dpulse.kafka=<folder>`.
 */
function kafka(say: Say): Server {
  const base = join(REPO_ROOT, '.pulse', 'kafka');
  const pidFile = join(RUN_DIR, 'kafka.pid');
  const portFile = join(RUN_DIR, 'kafka.port');
  const logFile = join(LOG_DIR, 'kafka.log');
  const marker = `-Dpulse.kafka=${base}`;
  return {
    async start(arg) {
      const port = portArg(arg ?? process.env.KAFKA_PORT ?? '59092', 65534);
      const controllerPort = portArg(process.env.KAFKA_CONTROLLER_PORT ?? String(port + 1), 65535);
      if (!isKafkaInstalled()) {
        throw new CommandError(
          `Kafka ${KAFKA_VERSION} is not installed (.pulse/kafka/lib). Run: bash scripts/kafka.sh install`,
        );
      }
      const pid = ourPid(pidFile, marker);
      if (pid) {
        const running = readPort(portFile);
        say(`already running: pid ${pid}, bootstrap ${HOST}:${running}`);
        if (arg !== undefined && running !== String(port)) {
          say(`(not starting a second one on port ${port}: run 'bash scripts/kafka.sh stop' first)`);
        }
        return;
      }
      if (!(await isPortFree(port))) {
        throw new CommandError(
          `port ${port} on ${HOST} is already in use. Choose another: bash scripts/kafka.sh start PORT`,
        );
      }
      if (!(await isPortFree(controllerPort))) {
        throw new CommandError(
          `controller port ${controllerPort} on ${HOST} is already in use. Set KAFKA_CONTROLLER_PORT`,
        );
      }
      mkdirSync(RUN_DIR, { recursive: true });
      mkdirSync(LOG_DIR, { recursive: true });
      await appendFile(
        logFile,
        `\n=== ${stamp()} kafka.Kafka ${join(base, 'server.properties')} (port ${port}, controller ${controllerPort})\n`,
      );
      const began = Date.now();
      const broker = await startKafka({
        port,
        controllerPort,
        dir: base,
        install: false,
        detached: true,
        logFile,
        brokerConfig: { 'log.retention.hours': '24' },
        onFormat: (clusterId) => say(`formatting storage ${join(base, 'data')} (cluster id ${clusterId})`),
        readyTimeoutMs: 60_000,
      });
      writeFileSync(pidFile, `${broker.pid}\n`);
      writeFileSync(portFile, `${port}\n`);
      say(
        `running: pid ${broker.pid}, bootstrap ${HOST}:${port} (log: .pulse/log/kafka.log, ready in ${seconds(began)}s)`,
      );
    },
    async stop() {
      const pid = ourPid(pidFile, marker);
      if (pid) await stopProcess({ pid, marker }, 'SIGTERM', 30_000);
      rmSync(pidFile, { force: true });
      rmSync(portFile, { force: true });
      say(pid ? `stopped (pid ${pid})` : 'not running (no live broker in .pulse/run/kafka.pid)');
    },
    status() {
      const installed = isKafkaInstalled();
      if (!installed) say(`Kafka ${KAFKA_VERSION} not installed (run: bash scripts/kafka.sh install)`);
      const pid = ourPid(pidFile, marker);
      if (pid) {
        say(`Kafka ${KAFKA_VERSION} running: pid ${pid}, bootstrap ${HOST}:${readPort(portFile)}`);
        return true;
      }
      if (installed) say(`Kafka ${KAFKA_VERSION} installed, not running`);
      return false;
    },
  };
}

const SERVERS: Readonly<Record<string, (say: Say) => Server>> = { moto, postgres, kafka };

/** Runs `<server> start [PORT] | stop | status`; resolves with the exit code. */
export async function main(argv: readonly string[]): Promise<number> {
  const [name = '', command = '', port] = argv;
  const make = SERVERS[name];
  if (!make || !['start', 'stop', 'status'].includes(command)) {
    process.stderr.write('usage: node bin/emulator.js moto|postgres|kafka start [PORT] | stop | status\n');
    return 2;
  }
  // Each line starts with the script's name, as the scripts always printed them.
  const prefix = name === 'moto' ? 'emulators' : name;
  const server = make((line) => process.stdout.write(`${prefix}: ${line}\n`));
  try {
    if (command === 'start') await server.start(port);
    else if (command === 'stop') await server.stop();
    else return server.status() ? 0 : 1;
    return 0;
  } catch (err) {
    process.stderr.write(`${prefix}: error: ${(err as Error).message}\n`);
    return 1;
  }
}
