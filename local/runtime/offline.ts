/**
 * `pulse local up` / `down`: installs what is missing, starts the emulators (moto server, PostgreSQL,
 * Kafka) as processes of their own that outlive the command, creates the resources from the
 * settings, the `signals` table and the `pulse_signals` topic, then starts the runtime process
 * (runtime.ts). Everything started is recorded by pid in `<home>/state.json`; `down` stops exactly
 * those processes. Data stays in `<home>` (moto's state is saved when it stops) unless wiped.
 */

import { chmodSync, existsSync, mkdirSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import {
  CreateSecretCommand,
  PutSecretValueCommand,
  ResourceNotFoundException,
  SecretsManagerClient,
} from '@aws-sdk/client-secrets-manager';
import { Kafka, logLevel } from 'kafkajs';
import pg from 'pg';
import { settings } from '#shared/settings.ts';
import { resolveDeployment } from '../../infra/props.ts';
import { ingestPrefixes } from '../../infra/routes.ts';
import { ensureKafkaInstalled, isKafkaReady, startKafka } from '../emulators/kafka.ts';
import { ensureMotoInstalled, isMotoReady, startMoto } from '../emulators/moto.ts';
import { ensurePostgresInstalled, isPostgresReady, startPostgres } from '../emulators/postgres.ts';
import { isSchemaRegistryReady, startSchemaRegistry } from '../emulators/schema-registry.ts';
import {
  isPortFree,
  isRunning,
  type ProcessRecord,
  REPO_ROOT,
  stopProcess,
  supervise,
} from '../emulators/supervisor.ts';
import { destroyClients, LOCAL_CREDENTIALS, LOCAL_REGION, makeClients } from './clients.ts';
import { connectExistingBucket } from './existing-buckets.ts';
import { resourceNames } from './names.ts';
import { existingBucketRuleName, localRoutes } from './offline-config.ts';
import { createResources } from './resources.ts';
import { type LocalState, type RuntimeOptions, readState, updateState } from './state.ts';

/** Preferred ports, used when free (a previous run's port first): stable URLs for a newcomer. */
export const PREFERRED_PORTS = { moto: 4566, postgres: 5433, kafka: 9092, dashboard: 4580 } as const;

/** The table the poller reads, as the seeds had it. */
export const SIGNALS_TABLE_DDL = `CREATE TABLE IF NOT EXISTS "${settings.dbPoller.table}" (
  id bigserial PRIMARY KEY,
  name text,
  value double precision,
  source text,
  "timestamp" timestamptz,
  processed boolean NOT NULL DEFAULT false
)`;

/** The offline run's database (in the local PostgreSQL server). */
export const LOCAL_DATABASE = 'pulse';

export interface Progress {
  /** A step begins. */
  step(message: string): void;
  /** The current step is done (with what it found, e.g. `already running`). */
  done(detail?: string): void;
  /** A line of an install script's output. */
  detail(line: string): void;
}

export interface UpOptions extends RuntimeOptions {
  /** Folder holding the state, the data and the logs. */
  readonly home: string;
  /** Resource name prefix. @default settings.appName */
  readonly prefix?: string;
  /** Use free ports instead of the preferred ones (tests, several runs side by side). @default false */
  readonly anyPort?: boolean;
  /** Start the runtime process (false: emulators and resources only). @default true */
  readonly runtime?: boolean;
  readonly progress: Progress;
}

export class LocalRunError extends Error {
  constructor(message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = 'LocalRunError';
  }
}

/** Brings the offline pipeline up; idempotent (what runs already is kept). Returns the state. */
export async function localUp(options: UpOptions): Promise<LocalState> {
  const { home, progress } = options;
  const prefix = options.prefix ?? readState(home)?.prefix ?? settings.appName;
  mkdirSync(join(home, 'log'), { recursive: true });
  // As root, PostgreSQL runs as the postgres user (see ../emulators/postgres.ts), which must reach its folder.
  if (process.getuid?.() === 0) chmodSync(home, 0o755);
  const save = (change: (s: LocalState) => void) => updateState(home, prefix, change);
  // The db-poller's props are checked before anything starts, as the construct checks them.
  if (options.dbPoller) resolveDeployment({ dbPoller: options.dbPoller });
  // So are the routes (PulsePropsError naming the route otherwise).
  if (options.s3) resolveDeployment({ s3: options.s3 });
  // And the existing buckets' routes, with the props' own, as the construct checks them.
  if (options.existingBuckets) localRoutes(options);
  if (options.kafkaConsumer) resolveDeployment({ kafkaConsumer: options.kafkaConsumer });
  // A runtime already running with other options is started again: its environment is read once.
  const optionsBefore = JSON.stringify(readState(home)?.options ?? {});
  save((s) => {
    s.options = {
      ...(options.leaseSeconds ? { leaseSeconds: options.leaseSeconds } : {}),
      ...(options.visibilitySeconds ? { visibilitySeconds: options.visibilitySeconds } : {}),
      ...(options.pollSeconds ? { pollSeconds: options.pollSeconds } : {}),
      ...(options.sweepSeconds ? { sweepSeconds: options.sweepSeconds } : {}),
      ...(options.dbPoller ? { dbPoller: options.dbPoller } : {}),
      ...(options.s3 ? { s3: options.s3 } : {}),
      ...(options.kafkaConsumerGroupId ? { kafkaConsumerGroupId: options.kafkaConsumerGroupId } : {}),
      ...(options.kafkaTopics?.length ? { kafkaTopics: options.kafkaTopics } : {}),
      ...(options.kafkaStartingTimestampMs !== undefined
        ? { kafkaStartingTimestampMs: options.kafkaStartingTimestampMs }
        : {}),
      ...(options.kafkaSchemaRegistry ? { kafkaSchemaRegistry: true } : {}),
      ...(options.kafkaConsumer ? { kafkaConsumer: options.kafkaConsumer } : {}),
      ...(options.existingBuckets?.length ? { existingBuckets: options.existingBuckets } : {}),
    };
  });
  const prev = readState(home);
  const optionsChanged = JSON.stringify(prev?.options ?? {}) !== optionsBefore;
  const port = async (name: keyof typeof PREFERRED_PORTS, last: number | undefined) =>
    options.anyPort ? undefined : await firstFree([last, PREFERRED_PORTS[name]]);

  progress.step('installing what is missing (moto, PostgreSQL, Kafka)');
  await ensureMotoInstalled({ onOutput: progress.detail });
  ensurePostgresInstalled();
  await ensureKafkaInstalled({ onOutput: progress.detail });
  progress.done();

  // The three emulators start side by side; each is recorded as soon as it runs, so that `down`
  // stops it even when another fails to start.
  progress.step('starting moto server, PostgreSQL and Kafka');
  const [moto, postgres, kafka] = await Promise.all([
    (async () => {
      if (isRunning(prev?.moto) && prev?.moto && (await isMotoReady(prev.moto.endpoint))) return prev.moto;
      await stopProcess(prev?.moto); // running but not answering
      const stateFile = join(home, 'moto-state.pickle');
      const server = await startMoto({
        ...optionalPort(await port('moto', prev?.moto?.port)),
        stateFile,
        detached: true,
        logFile: join(home, 'log', 'moto.log'),
        readyTimeoutMs: 120_000, // loading a large saved state takes a while
      });
      const record = { pid: server.pid, marker: stateFile, port: server.port, endpoint: server.endpoint };
      save((s) => {
        s.moto = record;
      });
      return record;
    })(),
    (async () => {
      if (isRunning(prev?.postgres) && prev?.postgres && (await isPostgresReady(prev.postgres.url)))
        return prev.postgres;
      await stopProcess(prev?.postgres, 'SIGINT'); // running but not answering
      const dir = join(home, 'postgres');
      const server = await startPostgres({
        ...optionalPort(await port('postgres', prev?.postgres?.port)),
        dir,
        detached: true,
      });
      const record = { pid: server.pid, marker: server.dataDir, port: server.port, url: server.url };
      save((s) => {
        s.postgres = record;
      });
      return record;
    })(),
    (async () => {
      if (isRunning(prev?.kafka) && prev?.kafka && (await isKafkaReady(prev.kafka.brokers)))
        return prev.kafka;
      await stopProcess(prev?.kafka);
      const dir = join(home, 'kafka');
      const broker = await startKafka({
        ...optionalPort(await port('kafka', prev?.kafka?.port)),
        dir,
        detached: true,
        brokerConfig: { 'num.partitions': '3' },
      });
      const record = {
        pid: broker.pid,
        marker: `-Dpulse.kafka=${dir}`,
        port: broker.port,
        brokers: broker.brokers,
      };
      save((s) => {
        s.kafka = record;
      });
      return record;
    })(),
  ]);
  progress.done(`${moto.endpoint}, postgres :${postgres.port}, kafka ${kafka.brokers}`);
  if (options.kafkaSchemaRegistry) {
    progress.step('starting the schema registry stand-in');
    progress.done((await startRegistryStandIn(home, prev, save)).url);
  }

  progress.step('creating the bucket, queues, tables, database table and topic');
  const resources = await createLocalResources(prefix, moto.endpoint, postgres.url, kafka.brokers, options);
  const state = save((s) => {
    s.resources = resources;
  });
  progress.done();

  if (options.runtime === false) return state;
  if (optionsChanged && (await stopProcess(state.runtime)))
    progress.detail('the runtime ran with other options: started again with these');
  progress.step('starting the runtime (event sources, schedule, Kafka consumer, dashboard)');
  const runtimeState = await startRuntimeProcess(home, prefix, await port('dashboard', undefined));
  progress.done(runtimeState.runtime?.dashboard ? `dashboard ${runtimeState.runtime.dashboard}` : undefined);
  return runtimeState;
}

async function createLocalResources(
  prefix: string,
  endpoint: string,
  postgresUrl: string,
  brokers: string,
  options: UpOptions,
): Promise<NonNullable<LocalState['resources']>> {
  const names = resourceNames(prefix);
  const clients = makeClients(endpoint);
  try {
    const visibility = options.visibilitySeconds;
    const created = await createResources(clients, names, {
      ...(visibility ? { visibilityTimeoutSeconds: { fileEvents: visibility, signals: visibility } } : {}),
      ingestPrefixes: ingestPrefixes(resolveDeployment(options.s3 ? { s3: options.s3 } : {})),
    });
    await connectExistingBuckets(clients, prefix, created.queues.fileEvents.arn, options);
    const dbUrl = await ensureDatabase(postgresUrl);
    const dbSecretArn = await ensureDbSecret(endpoint, `${prefix}/db`, dbUrl);
    for (const topic of options.kafkaTopics ?? [settings.kafka.topic]) await ensureTopic(brokers, topic);
    return {
      bucket: names.bucket,
      kafkaFailuresBucket: created.kafkaFailuresBucket,
      ledgerTable: names.ledgerTable,
      scoresTable: names.scoresTable,
      scoresBucket: names.scoresBucket,
      anomaliesTable: names.anomaliesTable,
      queues: created.queues,
      dbSecretArn,
      dbUrl,
      dbTable: settings.dbPoller.table,
      topic: settings.kafka.topic,
    };
  } finally {
    destroyClients(clients);
  }
}

/**
 * Connects each of `existingBuckets` (created outside the pipeline, in moto) to the file-events queue as the
 * stack connects it (local/runtime/existing-buckets.ts); a bucket that is not there is an error naming it.
 */
async function connectExistingBuckets(
  clients: ReturnType<typeof makeClients>,
  prefix: string,
  fileEventsQueueArn: string,
  options: UpOptions,
): Promise<void> {
  for (const [i, source] of (options.existingBuckets ?? []).entries()) {
    try {
      await connectExistingBucket(clients, source, fileEventsQueueArn, existingBucketRuleName(prefix, i));
    } catch (err) {
      throw new LocalRunError(
        `existingBuckets: could not connect bucket ${source.bucket} (${source.notifications}): ${(err as Error).message}. Create it first (it is the user's, not the pipeline's)`,
        { cause: err },
      );
    }
  }
}

/** Creates the `pulse` database and its `signals` table when missing; returns the database's URL. */
async function ensureDatabase(serverUrl: string): Promise<string> {
  const admin = new pg.Client({ connectionString: serverUrl });
  await admin.connect();
  try {
    const found = await admin.query('SELECT 1 FROM pg_database WHERE datname = $1', [LOCAL_DATABASE]);
    if (found.rowCount === 0) await admin.query(`CREATE DATABASE "${LOCAL_DATABASE}"`);
  } finally {
    await admin.end();
  }
  const url = new URL(serverUrl);
  url.pathname = `/${LOCAL_DATABASE}`;
  const db = new pg.Client({ connectionString: url.toString() });
  await db.connect();
  try {
    await db.query(SIGNALS_TABLE_DDL);
  } finally {
    await db.end();
  }
  return url.toString();
}

/** The poller's credentials, as an RDS-shaped secret in the emulated Secrets Manager. */
async function ensureDbSecret(endpoint: string, name: string, dbUrl: string): Promise<string> {
  const url = new URL(dbUrl);
  const secret = JSON.stringify({
    engine: 'postgres',
    username: url.username || 'postgres',
    password: url.password || 'trust-auth-needs-none',
    host: url.hostname,
    port: Number(url.port),
    dbname: url.pathname.slice(1),
  });
  const sm = new SecretsManagerClient({ endpoint, region: LOCAL_REGION, credentials: LOCAL_CREDENTIALS });
  try {
    try {
      const out = await sm.send(new PutSecretValueCommand({ SecretId: name, SecretString: secret }));
      return out.ARN ?? '';
    } catch (err) {
      if (!(err instanceof ResourceNotFoundException)) throw err;
      const out = await sm.send(new CreateSecretCommand({ Name: name, SecretString: secret }));
      return out.ARN ?? '';
    }
  } finally {
    sm.destroy();
  }
}

async function ensureTopic(brokers: string, topic: string): Promise<void> {
  const kafka = new Kafka({ clientId: 'pulse-local', brokers: [brokers], logLevel: logLevel.NOTHING });
  const admin = kafka.admin();
  await admin.connect();
  try {
    const topics = await admin.listTopics();
    if (!topics.includes(topic)) {
      await admin.createTopics({
        topics: [{ topic, numPartitions: 3, replicationFactor: 1 }],
        waitForLeaders: true,
      });
    }
  } finally {
    await admin.disconnect();
  }
}

/** The runtime's command line: this CLI's hidden `local runtime` command. */
function runtimeCommand(home: string): { command: string; args: string[]; marker: string } {
  const marker = `runtime --home ${home}`;
  return {
    command: process.execPath,
    args: [join(REPO_ROOT, 'bin', 'pulse.js'), 'local', 'runtime', '--home', home],
    marker,
  };
}

async function startRuntimeProcess(home: string, prefix: string, dashboardPort: number | undefined) {
  const current = readState(home);
  if (isRunning(current?.runtime) && current?.runtime?.ready) return current;
  const { command, args, marker } = runtimeCommand(home);
  const log = join(home, 'log', 'runtime.log');
  let pid: number | undefined;
  await supervise({
    name: 'the runtime',
    command,
    args: [...args, ...(dashboardPort ? ['--dashboard-port', String(dashboardPort)] : [])],
    cwd: REPO_ROOT,
    logFile: log,
    detached: true,
    // Recorded at once, so that `down` stops it even when it never becomes ready; it says it is ready there.
    onSpawn: (spawned) => {
      pid = spawned;
      updateState(home, prefix, (s) => {
        s.runtime = { pid: spawned, marker, ready: false, startedAt: new Date().toISOString(), log };
      });
    },
    isReady: async () => {
      const s = readState(home);
      return s?.runtime?.pid === pid && s?.runtime?.ready === true;
    },
    pollMs: 200,
    readyTimeoutMs: 120_000,
    stopSignal: 'SIGTERM',
    stopGraceMs: 15_000,
    unavailable: (message, options) => new LocalRunError(message, options),
    spawnFailed: (err) => `could not start the runtime (${command}): ${err.message}; see ${log}`,
    notReady: (tail) => `the runtime did not become ready within 2 minutes; ${log}:\n${tail}`,
  });
  const state = readState(home);
  if (!state) throw new LocalRunError(`the runtime started, but ${home}/state.json is gone`);
  return state;
}

export interface DownOptions {
  readonly home: string;
  /** Remove the data too: the next `up` starts from nothing. */
  readonly wipe?: boolean;
  /** Stop only the runtime process (the emulators keep running). */
  readonly runtimeOnly?: boolean;
}

/** Stops what `up` started, by pid: the runtime first, then the emulators. Returns what it stopped. */
export async function localDown(options: DownOptions): Promise<string[]> {
  const { home } = options;
  const state = readState(home);
  const stopped: string[] = [];
  if (state) {
    const stop = async (
      name: string,
      record: ProcessRecord | undefined,
      signal: NodeJS.Signals = 'SIGTERM',
    ) => {
      if (await stopProcess(record, signal)) stopped.push(name);
    };
    await stop('runtime', state.runtime);
    if (!options.runtimeOnly) {
      // moto saves its state on SIGTERM; PostgreSQL's SIGINT is a fast shutdown.
      await Promise.all([
        stop('moto', state.moto),
        stop('kafka', state.kafka),
        stop('schema-registry', state.schemaRegistry),
        stop('postgres', state.postgres, 'SIGINT'),
      ]);
    }
    updateState(home, state.prefix, (s) => {
      delete s.runtime;
      if (!options.runtimeOnly) {
        delete s.moto;
        delete s.postgres;
        delete s.kafka;
        delete s.schemaRegistry;
      }
    });
  }
  if (options.wipe && existsSync(home)) rmSync(home, { recursive: true, force: true });
  return stopped;
}

/** The registry stand-in of `--kafka-registry`, kept when it answers; its schemas in `<home>/schema-registry.json`. */
async function startRegistryStandIn(
  home: string,
  prev: LocalState | undefined,
  save: (change: (s: LocalState) => void) => LocalState,
): Promise<NonNullable<LocalState['schemaRegistry']>> {
  const running = prev?.schemaRegistry;
  if (running && isRunning(running) && (await isSchemaRegistryReady(running.url))) return running;
  await stopProcess(running);
  const stateFile = join(home, 'schema-registry.json');
  const server = await startSchemaRegistry({
    stateFile,
    detached: true,
    logFile: join(home, 'log', 'schema-registry.log'),
  });
  const record = { pid: server.pid, marker: stateFile, port: server.port, url: server.url };
  save((s) => {
    s.schemaRegistry = record;
  });
  return record;
}

function optionalPort(port: number | undefined): { port?: number } {
  return port === undefined ? {} : { port };
}

/** The first of the candidate ports that is free on 127.0.0.1, or undefined (then any free port). */
async function firstFree(candidates: readonly (number | undefined)[]): Promise<number | undefined> {
  for (const p of candidates) {
    if (p !== undefined && (await isPortFree(p))) return p;
  }
  return undefined;
}
