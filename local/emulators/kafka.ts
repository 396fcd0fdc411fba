import { execFile } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { connect } from 'node:net';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { type InstallOptions, runInstallScript } from './install-script.ts';
import { freePort, REPO_ROOT, startOnAPort, supervise } from './supervisor.ts';

/**
 * A private Apache Kafka broker from TypeScript, for test setup and the offline runtime: Kafka 3.9 in
 * KRaft mode (one combined broker+controller), jars fetched from Maven Central by
 * `scripts/kafka.sh install` into `.pulse/kafka/lib`, a fresh storage folder under `.pulse/kafka/tmp-*`
 * formatted for each start, loopback only, free ports, removed again by `stop()`; started and stopped by
 * the supervisor (`supervisor.ts`). `scripts/kafka.sh start` keeps a long-lived broker of its own
 * (`.pulse/kafka/data`, port 59092, `cli.ts`) apart from the ones started here.
 */

/** The Kafka version the project pins (also in scripts/kafka.sh). MSK offers 3.9.x. */
export const KAFKA_VERSION = '3.9.1';

const execFileAsync = promisify(execFile);

const INSTALL_HINT =
  'Install it with: bash scripts/kafka.sh install   (needs Java >= 17 and Maven; fetches from Maven Central)';

/** Kafka is not installed, cannot be installed, or does not start. The message says what to do. */
export class KafkaUnavailableError extends Error {
  constructor(message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = 'KafkaUnavailableError';
  }
}

export interface KafkaPaths {
  readonly base: string;
  readonly lib: string;
  readonly stamp: string;
  readonly script: string;
}

export function kafkaPaths(root: string = REPO_ROOT): KafkaPaths {
  const base = join(root, '.pulse', 'kafka');
  const lib = join(base, 'lib');
  return { base, lib, stamp: join(lib, '.installed'), script: join(root, 'scripts', 'kafka.sh') };
}

/** True when `.pulse/kafka/lib` holds the pinned Kafka version's jars. */
export function isKafkaInstalled(root: string = REPO_ROOT): boolean {
  const { stamp } = kafkaPaths(root);
  try {
    return readFileSync(stamp, 'utf8').trim() === KAFKA_VERSION;
  } catch {
    return false;
  }
}

export type EnsureKafkaOptions = InstallOptions;

/**
 * Makes sure Kafka's jars are in `.pulse/kafka/lib`, running `scripts/kafka.sh install` when they are
 * not (Maven; about ten seconds with a warm network). Returns the lib folder.
 * @throws KafkaUnavailableError saying what is missing and how to install it.
 */
export async function ensureKafkaInstalled(options: EnsureKafkaOptions = {}): Promise<string> {
  const root = options.root ?? REPO_ROOT;
  const paths = kafkaPaths(root);
  if (isKafkaInstalled(root)) return paths.lib;
  const run = await runInstallScript(paths.script, root, options.onOutput);
  if (run.error) {
    throw new KafkaUnavailableError(
      `Kafka is not installed and bash could not be run: ${run.error}. ${INSTALL_HINT}`,
      {
        cause: run.error,
      },
    );
  }
  const { code } = run;
  if (code !== 0 || !isKafkaInstalled(root)) {
    throw new KafkaUnavailableError(
      `Kafka ${KAFKA_VERSION} is missing from ${paths.lib} and 'bash scripts/kafka.sh install' failed (exit ${code}).\n` +
        `${run.tail.join('\n')}\n${INSTALL_HINT}`,
    );
  }
  return paths.lib;
}

export interface StartKafkaOptions {
  /** The PLAINTEXT (client) port. @default a free port */
  readonly port?: number;
  /** @default the repository root */
  readonly root?: string;
  /** Run `scripts/kafka.sh install` when the jars are missing. @default true */
  readonly install?: boolean;
  /** @default `java` on the PATH (or $JAVA) */
  readonly java?: string;
  /** Extra broker settings (server.properties lines), e.g. `{ 'num.partitions': '3' }`. */
  readonly brokerConfig?: Readonly<Record<string, string>>;
  /** @default 60_000 */
  readonly readyTimeoutMs?: number;
  /**
   * A folder kept across runs (the offline run's `.pulse/local/kafka`): storage formatted on first
   * use, reused afterwards, never removed by stop(). @default a fresh folder, removed by stop()
   */
  readonly dir?: string;
  /** Let the broker outlive this Node process (`pulse local up --detach`). @default false */
  readonly detached?: boolean;
  /** The controller's port. @default a free port */
  readonly controllerPort?: number;
  /** @default `kafka.log` in the broker's folder */
  readonly logFile?: string;
  /** Told the new cluster id when the storage is about to be formatted (a folder's first start). */
  readonly onFormat?: (clusterId: string) => void;
}

export interface KafkaBroker {
  /** `127.0.0.1:<port>`: the bootstrap servers string for a client. */
  readonly brokers: string;
  readonly port: number;
  readonly pid: number;
  /** The broker's folder (storage, configuration, log), removed by stop(). */
  readonly dir: string;
  readonly logFile: string;
  /** Stops the broker (SIGTERM, SIGKILL after 15 s) and removes its folder. Idempotent. */
  stop(): Promise<void>;
}

/** The broker settings for one combined broker+controller on loopback (as scripts/kafka.sh writes). */
export function serverProperties(opts: {
  port: number;
  controllerPort: number;
  logDir: string;
  extra?: Readonly<Record<string, string>>;
}): string {
  const host = '127.0.0.1';
  const props: Record<string, string> = {
    'process.roles': 'broker,controller',
    'node.id': '1',
    'controller.quorum.voters': `1@${host}:${opts.controllerPort}`,
    listeners: `PLAINTEXT://${host}:${opts.port},CONTROLLER://${host}:${opts.controllerPort}`,
    'advertised.listeners': `PLAINTEXT://${host}:${opts.port}`,
    'listener.security.protocol.map': 'PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT',
    'controller.listener.names': 'CONTROLLER',
    'inter.broker.listener.name': 'PLAINTEXT',
    'log.dirs': opts.logDir,
    'num.partitions': '1',
    'default.replication.factor': '1',
    'offsets.topic.replication.factor': '1',
    'offsets.topic.num.partitions': '10',
    'transaction.state.log.replication.factor': '1',
    'transaction.state.log.min.isr': '1',
    'auto.create.topics.enable': 'false',
    // A consumer group's first join is not held back 3 s waiting for more members.
    'group.initial.rebalance.delay.ms': '0',
    'log.segment.bytes': String(64 * 1024 * 1024),
    ...opts.extra,
  };
  return `${Object.entries(props)
    .map(([k, v]) => `${k}=${v}`)
    .join('\n')}\n`;
}

const LOG4J = `log4j.rootLogger=WARN, stdout
log4j.appender.stdout=org.apache.log4j.ConsoleAppender
log4j.appender.stdout.layout=org.apache.log4j.PatternLayout
log4j.appender.stdout.layout.ConversionPattern=[%d] %p %m (%c)%n
log4j.logger.kafka.server.KafkaRaftServer=INFO
log4j.logger.kafka.Kafka=INFO
`;

/**
 * Starts a private broker and resolves once it answers a Metadata request listing itself. The process
 * is also killed when this Node process exits, so an interrupted test run does not leave it behind.
 * @throws KafkaUnavailableError when Kafka is not installed (and cannot be) or does not start.
 */
export async function startKafka(options: StartKafkaOptions = {}): Promise<KafkaBroker> {
  const root = options.root ?? REPO_ROOT;
  if (options.install !== false) await ensureKafkaInstalled({ root });
  if (!isKafkaInstalled(root)) {
    throw new KafkaUnavailableError(
      `Kafka ${KAFKA_VERSION} is not installed (.pulse/kafka/lib). ${INSTALL_HINT}`,
    );
  }
  const java = options.java ?? process.env.JAVA ?? 'java';
  const { base, lib } = kafkaPaths(root);
  mkdirSync(base, { recursive: true });

  return startOnAPort(
    options.port,
    async (port) => {
      let controllerPort = options.controllerPort ?? (await freePort());
      while (controllerPort === port) controllerPort = await freePort();
      const keep = options.dir !== undefined;
      if (keep) mkdirSync(options.dir, { recursive: true });
      const dir = options.dir ?? mkdtempSync(join(base, 'tmp-'));
      try {
        return await startOn({ java, lib, dir, port, controllerPort, options, keep });
      } catch (err) {
        if (!keep) rmSync(dir, { recursive: true, force: true });
        throw err;
      }
    },
    unavailable,
  );
}

const unavailable = (message: string, options?: ErrorOptions) => new KafkaUnavailableError(message, options);

async function formatStorage(
  java: string,
  jvm: string[],
  dir: string,
  propsFile: string,
  onFormat: ((clusterId: string) => void) | undefined,
): Promise<void> {
  try {
    const { stdout } = await execFileAsync(java, [...jvm, 'kafka.tools.StorageTool', 'random-uuid'], {
      cwd: dir,
    });
    const clusterId = stdout.trim().split('\n').pop() ?? '';
    if (!/^[A-Za-z0-9_-]{22}$/.test(clusterId))
      throw new Error(`random-uuid printed ${JSON.stringify(stdout)}`);
    onFormat?.(clusterId);
    await execFileAsync(
      java,
      [...jvm, 'kafka.tools.StorageTool', 'format', '-t', clusterId, '-c', propsFile],
      {
        cwd: dir,
      },
    );
  } catch (err) {
    const e = err as { code?: string; stderr?: string; message?: string };
    if (e.code === 'ENOENT') {
      throw new KafkaUnavailableError(
        `'${java}' not found: Kafka needs Java >= 17 (apt-get install -y openjdk-17-jre-headless, or set JAVA)`,
        { cause: err },
      );
    }
    throw new KafkaUnavailableError(
      `formatting Kafka's storage failed: ${e.stderr?.trim() || e.message || String(err)}`,
      { cause: err },
    );
  }
}

function jvmArgs(lib: string, log4jFile: string, dir: string): string[] {
  return [
    '-Xms128m',
    '-Xmx512m',
    '-XX:+UseG1GC',
    '-XX:MaxGCPauseMillis=20',
    '-Djava.awt.headless=true',
    `-Dlog4j.configuration=file:${log4jFile}`,
    // Marks the process as ours (ps shows which folder it belongs to).
    `-Dpulse.kafka=${dir}`,
    '-cp',
    `${lib}/*`,
  ];
}

async function startOn(args: {
  java: string;
  lib: string;
  dir: string;
  port: number;
  controllerPort: number;
  options: StartKafkaOptions;
  keep: boolean;
}): Promise<KafkaBroker> {
  const { java, lib, dir, port, controllerPort, options, keep } = args;
  const log4jFile = join(dir, 'log4j.properties');
  const propsFile = join(dir, 'server.properties');
  const logFile = options.logFile ?? join(dir, 'kafka.log');
  writeFileSync(log4jFile, LOG4J);
  writeFileSync(
    propsFile,
    serverProperties({
      port,
      controllerPort,
      logDir: join(dir, 'data'),
      ...(options.brokerConfig ? { extra: options.brokerConfig } : {}),
    }),
  );
  const jvm = jvmArgs(lib, log4jFile, dir);

  // Storage: a fresh cluster id, formatted once for this folder (a kept folder is formatted already).
  if (!existsSync(join(dir, 'data', 'meta.properties'))) {
    await formatStorage(java, jvm, dir, propsFile, options.onFormat);
  }

  const brokers = `127.0.0.1:${port}`;
  const broker = await supervise({
    name: 'Kafka',
    command: java,
    args: [...jvm, 'kafka.Kafka', propsFile],
    cwd: dir,
    ports: [port, controllerPort],
    logFile,
    detached: options.detached ?? false,
    isReady: () => isKafkaReady(brokers),
    pollMs: 200,
    readyTimeoutMs: options.readyTimeoutMs ?? 60_000,
    stopSignal: 'SIGTERM', // controlled shutdown
    stopGraceMs: 15_000,
    portInUse: /address already in use|BindException/i,
    unavailable,
    spawnFailed: (err) => `could not run ${java}: ${err.message}. ${INSTALL_HINT}`,
    notReady: (tail) => `Kafka did not answer on ${brokers} in time:\n${tail}`,
    cleanUp: () => {
      if (!keep) rmSync(dir, { recursive: true, force: true });
    },
  });
  return { brokers, port, pid: broker.pid, dir, logFile, stop: broker.stop };
}

/**
 * True when a broker at `host:port` answers a Metadata request (v0, all topics) listing at least one
 * broker: the listener is open and the broker has registered with the controller. A raw request, so
 * that probing a broker still starting logs nothing.
 */
export function isKafkaReady(brokers: string, timeoutMs = 2000): Promise<boolean> {
  const first = brokers.split(',')[0] ?? '';
  const i = first.lastIndexOf(':');
  const host = first.slice(0, i);
  const port = Number(first.slice(i + 1));
  return new Promise((resolve) => {
    const clientId = Buffer.from('pulse-ready-check');
    const body = Buffer.alloc(2 + 2 + 4 + 2 + clientId.length + 4);
    let o = body.writeInt16BE(3, 0); // Metadata
    o = body.writeInt16BE(0, o); // version 0
    o = body.writeInt32BE(7, o); // correlation id
    o = body.writeInt16BE(clientId.length, o);
    o += clientId.copy(body, o);
    body.writeInt32BE(0, o); // topics: [] (all)
    const size = Buffer.alloc(4);
    size.writeInt32BE(body.length);
    const socket = connect({ host, port });
    let buf = Buffer.alloc(0);
    const done = (ok: boolean) => {
      socket.destroy();
      resolve(ok);
    };
    socket.setTimeout(timeoutMs, () => done(false));
    socket.on('error', () => done(false));
    socket.on('connect', () => socket.write(Buffer.concat([size, body])));
    socket.on('data', (chunk: Buffer) => {
      buf = Buffer.concat([buf, chunk]);
      if (buf.length < 4 || buf.length < 4 + buf.readInt32BE(0)) return;
      done(buf.length >= 12 && buf.readInt32BE(4) === 7 && buf.readInt32BE(8) >= 1);
    });
  });
}

/**
 * Waits until a broker (one started elsewhere, e.g. by `scripts/kafka.sh start`) answers.
 * @throws KafkaUnavailableError when it does not within the timeout.
 */
export async function waitForKafka(brokers: string, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await isKafkaReady(brokers))) {
    if (Date.now() > deadline) throw new KafkaUnavailableError(`no Kafka broker answers at ${brokers}`);
    await new Promise((r) => setTimeout(r, 200));
  }
}
