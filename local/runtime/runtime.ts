/**
 * The offline runtime: the four real handlers in one Node process, fed by what AWS would manage —
 * the two SQS event source mappings (file-events → s3-trigger, signals → scorer), the poller's
 * schedule (db-poller) and the Kafka event source (kafka-consumer) — against the emulators that
 * `pulse local up` started (see stack.ts). Settings (batch sizes, windows, timeouts, schedule) come
 * from shared/settings.ts, as in the stack.
 */

import type { Context } from 'aws-lambda';
import { Kafka, logLevel } from 'kafkajs';
import { ENV, PLATFORM_ENV } from '#shared/contract.ts';
import type { SchemaRegistryEnv } from '#shared/kafka-registry.ts';
import { routesEnv } from '#shared/routes.ts';
import { kafkaMappingGroupId, settings, visibilityTimeoutFor } from '#shared/settings.ts';
import { dbPollerEnvironment } from '../../infra/db-poller-env.ts';
import { kafkaConsumerEnvironment } from '../../infra/kafka-consumer-env.ts';
import { type PulseDeployment, resolveDeployment } from '../../infra/props.ts';
import { StatusCollector } from '../commands/status.ts';
import { localTarget } from '../commands/target.ts';
import type { ProducerHealth } from '../dashboard/alarms.ts';
import { startDashboard } from '../dashboard/server.ts';
import { type KafkaHandler, startKafkaEventSource } from '../event-sources/kafka.ts';
import { emulatedMappingUuid, s3OnFailureDestination } from '../event-sources/kafka-failure-destinations.ts';
import { confluentLookup } from '../event-sources/kafka-registry.ts';
import { lambdaContext } from '../event-sources/lambda-context.ts';
import { type SqsHandler, startSqsEventSource } from '../event-sources/sqs.ts';
import { destroyClients, LOCAL_CREDENTIALS, LOCAL_REGION, makeClients } from './clients.ts';
import { resourceNames } from './names.ts';
import { localRoutes } from './offline-config.ts';
import { type LocalState, readState, updateState } from './state.ts';

/**
 * Invocations the offline run's emulated SQS event sources run at once per queue. Lambda scales a queue's
 * event source to many (up to `settings.<queue>.maxConcurrency`); one would be kinder than AWS (no two
 * scorers folding the same series, no two s3-triggers on parts of one file); two keep the races on a
 * two-core machine.
 */
export const OFFLINE_POLLERS_PER_QUEUE = 2;

/** How often the offline dashboard samples the pipeline's state. */
export const DASHBOARD_SAMPLE_MS = 5000;

export interface RuntimeLogger {
  info(message: string): void;
  warn(message: string, ...extra: unknown[]): void;
  error(message: string, ...extra: unknown[]): void;
}

export interface Runtime {
  /** Stops polling and waits for the invocations in flight. */
  stop(): Promise<void>;
  /** The poller's last success and the Kafka consumer group's lag, for the dashboard's alarms. */
  producerHealth(): Promise<ProducerHealth>;
}

/** The functions' environment, as the stack sets it (see infra/), pointed at the emulators. */
export function runtimeEnv(state: LocalState): Record<string, string> {
  const r = required(state.resources, 'resources');
  const moto = required(state.moto, 'moto');
  const lease = state.options?.leaseSeconds;
  const visibility = state.options?.visibilitySeconds;
  const sweep = state.options?.sweepSeconds;
  return {
    [PLATFORM_ENV.awsEndpointUrl]: moto.endpoint,
    [PLATFORM_ENV.awsRegion]: LOCAL_REGION,
    [PLATFORM_ENV.awsAccessKeyId]: LOCAL_CREDENTIALS.accessKeyId,
    [PLATFORM_ENV.awsSecretAccessKey]: LOCAL_CREDENTIALS.secretAccessKey,
    [ENV.s3ForcePathStyle]: 'true',
    [ENV.signalsQueueUrl]: r.queues.signals.url,
    [ENV.fileEventsQueueUrl]: r.queues.fileEvents.url,
    [ENV.ledgerTable]: r.ledgerTable,
    [ENV.scoresTable]: r.scoresTable,
    [ENV.scoresBucket]: required(r.scoresBucket, 'scores bucket'),
    [ENV.anomaliesTable]: required(r.anomaliesTable, 'anomalies table'),
    [ENV.quarantineBucket]: r.bucket,
    [ENV.ingestBucket]: r.bucket,
    [ENV.watermarkTable]: r.ledgerTable,
    [ENV.dbSecretArn]: r.dbSecretArn,
    [ENV.dbSsl]: 'false',
    // The routes, checked and set as the stack sets them (`pulse local up --config`).
    // With a route of its own for each prefix of an existing bucket, as the stack gives them.
    [ENV.s3Routes]: routesEnv(localRoutes(state.options)),
    // The db-poller's props, resolved and checked as the stack resolves them (PulsePropsError otherwise).
    ...dbPollerEnvironment(localDbPoller(state)),
    ...(lease
      ? {
          [ENV.leaseSeconds]: String(lease),
          [ENV.heartbeatSeconds]: String(Math.max(1, Math.floor(lease / 3))),
        }
      : {}),
    // Shortened timings shorten what the ledger sweep calls stuck, as the stack's settings relate them.
    ...(lease || visibility
      ? {
          [ENV.sweepProcessingStuckSeconds]: String(
            (visibility ?? visibilityTimeoutFor(settings.functions.s3Trigger.timeoutSeconds)) +
              (lease ?? settings.ledger.leaseSeconds),
          ),
        }
      : {}),
    ...(sweep ? { [ENV.sweepCanaryGraceSeconds]: String(2 * sweep) } : {}),
    // A shortened sweep verifies files sooner after they end (the offline run's scorer keeps up in seconds).
    ...(sweep ? { [ENV.receiptsSettleSeconds]: String(sweep) } : {}),
    [ENV.powertoolsServiceName]: 'pulse-local',
    [PLATFORM_ENV.powertoolsMetricsNamespace]: settings.metricsNamespace,
    // The functions' EMF metric lines go to the runtime's log, as they go to CloudWatch Logs on AWS.
    [PLATFORM_ENV.powertoolsLogLevel]: 'WARN',
    // The kafka-consumer's value settings and per-topic mappings, as the stack sets them.
    ...kafkaConsumerEnvironment(
      resolveDeployment({ kafkaConsumer: state.options?.kafkaConsumer ?? {} }).kafkaConsumer,
    ),
    ...(state.options?.kafkaSchemaRegistry
      ? { [ENV.kafkaSchemaRegistry]: JSON.stringify(LOCAL_SCHEMA_REGISTRY) }
      : {}),
  };
}

/** What `local up --kafka-registry` emulates: the stack's `kafka.schemaRegistry` with its defaults, Confluent. */
const LOCAL_SCHEMA_REGISTRY: SchemaRegistryEnv = {
  kind: 'confluent',
  recordFormat: 'JSON',
  validate: ['VALUE'],
};

/**
 * The offline run's db-poller, resolved as the stack resolves it: `--db-poller`'s props, polling the run's
 * own table unless they name their tables (`tables`, or `table`).
 */
export function localDbPoller(state: LocalState): PulseDeployment['dbPoller'] {
  const r = required(state.resources, 'resources');
  const given = state.options?.dbPoller;
  return resolveDeployment({ dbPoller: given?.tables ? given : { table: r.dbTable, ...given } }).dbPoller;
}

/**
 * Starts the runtime for an offline run whose emulators and resources `state` records. The handler
 * modules read their configuration when imported, so the environment is set first.
 */
export async function startRuntime(state: LocalState, logger: RuntimeLogger): Promise<Runtime> {
  const r = required(state.resources, 'resources');
  const kafka = required(state.kafka, 'kafka');
  Object.assign(process.env, runtimeEnv(state));
  const [s3Trigger, scorer, dbPoller, kafkaConsumer, ledgerSweep] = await Promise.all([
    import('../../functions/s3-trigger/handler.ts'),
    import('../../functions/scorer/handler.ts'),
    import('../../functions/db-poller/handler.ts'),
    import('../../functions/kafka-consumer/handler.ts'),
    import('../../functions/s3-trigger/sweep-handler.ts'),
  ]);
  const clients = makeClients(required(state.moto, 'moto').endpoint);
  const visibility = state.options?.visibilitySeconds;
  const sqsSource = (
    which: 'fileEvents' | 'signals',
    handler: SqsHandler,
    functionName: string,
    timeoutSeconds: number,
  ) =>
    startSqsEventSource({
      sqs: clients.sqs,
      queueUrl: r.queues[which].url,
      queueArn: r.queues[which].arn,
      batchSize: settings[which].batchSize,
      maxBatchingWindowSeconds: settings[which].maxBatchingWindowSeconds,
      handler,
      functionName,
      functionTimeoutSeconds: timeoutSeconds,
      ...(visibility ? { visibilityTimeoutSeconds: visibility } : {}),
      // Lambda runs several invocations of a queue's function at once (up to its maximum concurrency): so
      // does the offline run, if fewer, so that what concurrent invocations race on is raced on here too.
      concurrency: Math.min(OFFLINE_POLLERS_PER_QUEUE, settings[which].maxConcurrency),
      logger: prefixed(logger, functionName),
    });

  const files = sqsSource(
    'fileEvents',
    s3Trigger.handler as unknown as SqsHandler,
    'pulse-s3-trigger',
    settings.functions.s3Trigger.timeoutSeconds,
  );
  const signals = sqsSource(
    'signals',
    scorer.handler as unknown as SqsHandler,
    'pulse-scorer',
    settings.functions.scorer.timeoutSeconds,
  );
  // One schedule per table, as the stack has, each naming its table in the event.
  const pollSchedules = localDbPoller(state).tables.map((t) => {
    const periodMs = (state.options?.pollSeconds ?? t.scheduleRateMinutes * 60) * 1000;
    const schedule = startSchedule(
      dbPoller.handler as unknown as (event: unknown, context: Context) => Promise<unknown>,
      periodMs,
      prefixed(logger, `pulse-db-poller ${t.table}`),
      undefined,
      { table: t.table },
    );
    return { schedule, periodMs };
  });
  const topics = kafkaTopicsOfState(state, r.topic);
  // The ledger sweep's schedule (EventBridge Scheduler in the stack), on the settings' rate.
  const sweepPeriodMs = (state.options?.sweepSeconds ?? settings.sweep.scheduleRateMinutes * 60) * 1000;
  const sweepSchedule = startSchedule(
    ledgerSweep.handler as unknown as (event: unknown, context: Context) => Promise<unknown>,
    sweepPeriodMs,
    prefixed(logger, 'pulse-ledger-sweep'),
    { functionName: 'pulse-ledger-sweep', timeoutSeconds: settings.functions.ledgerSweep.timeoutSeconds },
  );
  // One emulated mapping per topic, as the stack has.
  const kafkaSources = topics.map((topic) => {
    const groupId = kafkaGroupIdOf(state, topic, topics);
    return {
      topic,
      groupId,
      source: startKafkaEventSource({
        brokers: kafka.brokers,
        topic,
        groupId,
        ...(state.options?.kafkaStartingTimestampMs !== undefined
          ? {
              startingPosition: 'AT_TIMESTAMP',
              startingPositionTimestampMs: state.options.kafkaStartingTimestampMs,
            }
          : {}),
        batchSize: settings.kafka.batchSize,
        maxBatchingWindowMs: settings.kafka.maxBatchingWindowSeconds * 1000,
        handler: kafkaConsumer.handler as unknown as KafkaHandler,
        functionName: 'pulse-kafka-consumer',
        logger: prefixed(logger, 'pulse-kafka-consumer'),
        // The stack's poller mode and on-failure destination: the failures bucket, records included.
        pollerMode: settings.kafka.pollerMode,
        onFailure: s3OnFailureDestination({
          s3: clients.s3,
          bucket: r.kafkaFailuresBucket ?? resourceNames(state.prefix).kafkaFailuresBucket,
          esmUuid: emulatedMappingUuid(groupId),
        }),
        ...(state.options?.kafkaSchemaRegistry
          ? {
              schemaRegistry: {
                env: LOCAL_SCHEMA_REGISTRY,
                lookup: confluentLookup(required(state.schemaRegistry, 'schema registry').url),
              },
            }
          : {}),
      }),
    };
  });
  await Promise.all(kafkaSources.map((k) => k.source.ready));
  const kafkaAdmin = new Kafka({
    clientId: 'pulse-local-lag',
    brokers: [kafka.brokers],
    logLevel: logLevel.NOTHING,
  }).admin();
  await kafkaAdmin.connect();

  return {
    async producerHealth() {
      // null when it cannot be read: the alarm treats that as breaching, as CloudWatch the missing OffsetLag.
      let kafkaOffsetLag: number | null = null;
      try {
        // Summed over the topics' mappings (CloudWatch's OffsetLag is per mapping; the alarm takes the function's).
        let lag = 0;
        for (const { topic, groupId } of kafkaSources) {
          const [ends, committed] = await Promise.all([
            kafkaAdmin.fetchTopicOffsets(topic),
            kafkaAdmin.fetchOffsets({ groupId, topics: [topic] }),
          ]);
          const done = new Map(
            (committed[0]?.partitions ?? []).map((p) => [p.partition, Math.max(0, Number(p.offset))]),
          );
          lag += ends.reduce((n, p) => n + Math.max(0, Number(p.high) - (done.get(p.partition) ?? 0)), 0);
        }
        kafkaOffsetLag = lag;
      } catch (err) {
        logger.warn('could not read the Kafka consumer lag', err);
      }
      const swept = sweepSchedule.health();
      return {
        poller: pollersHealth(pollSchedules),
        kafkaOffsetLag,
        sweep: {
          since: swept.since,
          lastSuccessAt: swept.lastSuccessAt,
          periodSeconds: Math.round(sweepPeriodMs / 1000),
          ...sweepReport(swept.lastResult),
        },
      };
    },
    async stop() {
      await kafkaAdmin.disconnect().catch(() => {});
      await Promise.all([
        files.stop(),
        signals.stop(),
        ...pollSchedules.map((p) => p.schedule.stop()),
        sweepSchedule.stop(),
        ...kafkaSources.map((k) => k.source.stop()),
      ]);
      destroyClients(clients);
    },
  };
}

/**
 * The tables' schedules as the offline alarms read one poller: silent from the oldest last success (a table
 * that stopped is silence, as each table's PollerSilent alarm in the stack), over the slowest period; the
 * watermark counts summed over the tables that report them.
 */
export function pollersHealth(
  schedules: readonly { schedule: ReturnType<typeof startSchedule>; periodMs: number }[],
): ReturnType<ReturnType<typeof startSchedule>['health']> & { periodSeconds: number } {
  const all = schedules.map((s) => s.schedule.health());
  const oldest = (values: readonly (string | null)[]): string | null =>
    values.includes(null) ? null : ([...values].sort()[0] ?? null);
  const sum = (values: readonly (number | undefined)[]): number | undefined =>
    values.some((v) => v !== undefined) ? values.reduce<number>((n, v) => n + (v ?? 0), 0) : undefined;
  const nulls = sum(all.map((h) => h.watermarkNullRows));
  const stalled = sum(all.map((h) => h.watermarkStalledRows));
  return {
    lastSuccessAt: oldest(all.map((h) => h.lastSuccessAt)),
    since: oldest(all.map((h) => h.since)) ?? new Date().toISOString(),
    ...(nulls !== undefined ? { watermarkNullRows: nulls } : {}),
    ...(stalled !== undefined ? { watermarkStalledRows: stalled } : {}),
    periodSeconds: Math.round(Math.max(...schedules.map((s) => s.periodMs)) / 1000),
  };
}

/** The topics the offline run's Kafka event source reads: one emulated mapping each. */
export function kafkaTopicsOfState(
  state: Pick<LocalState, 'options'>,
  resourceTopic: string,
): readonly string[] {
  return state.options?.kafkaTopics?.length ? state.options.kafkaTopics : [resourceTopic];
}

/**
 * The consumer group of the emulated mapping reading `topic`: the configured one, as the stack derives it
 * per topic (`kafkaMappingGroupId`), else one per offline run and topic (Lambda: each mapping's UUID).
 */
export function kafkaGroupIdOf(
  state: Pick<LocalState, 'prefix' | 'options'>,
  topic: string,
  topics: readonly string[] = [topic],
): string {
  const group = state.options?.kafkaConsumerGroupId ?? `${state.prefix}-kafka-consumer`;
  return kafkaMappingGroupId(group, topic, topics) ?? group;
}

/** What the sweep's last successful run returned (functions/s3-trigger/sweep-handler.ts), for the alarms. */
function sweepReport(result: unknown): {
  stuck?: Record<string, number>;
  canaryMissed?: boolean;
  receipts?: { verified: number; mismatches: number };
} {
  const r = result as
    | {
        stuck?: unknown;
        canary?: { missed?: unknown };
        verify?: { verified?: unknown; mismatches?: unknown };
      }
    | undefined;
  const v = r?.verify;
  const stuck =
    r?.stuck && typeof r.stuck === 'object'
      ? Object.fromEntries(
          Object.entries(r.stuck).filter((e): e is [string, number] => typeof e[1] === 'number'),
        )
      : undefined;
  return {
    ...(stuck ? { stuck } : {}),
    ...(typeof r?.canary?.missed === 'boolean' ? { canaryMissed: r.canary.missed } : {}),
    ...(typeof v?.verified === 'number' && typeof v.mismatches === 'number'
      ? { receipts: { verified: v.verified, mismatches: v.mismatches } }
      : {}),
  };
}

/**
 * EventBridge Scheduler's part: invoke a scheduled function (the poller, the ledger sweep) every
 * `periodMs` with the scheduler's event, never two at once (a run longer than the period delays the next,
 * as a Lambda with reserved concurrency 1).
 */
export function startSchedule(
  handler: (event: unknown, context: Context) => Promise<unknown>,
  periodMs: number,
  logger: RuntimeLogger,
  fn: { readonly functionName: string; readonly timeoutSeconds: number } = {
    functionName: 'pulse-db-poller',
    timeoutSeconds: settings.functions.dbPoller.timeoutSeconds,
  },
  /** The schedule's input (the db-poller's `{"table": …}`), with the scheduler's context attributes. */
  input: Readonly<Record<string, string>> = {},
): {
  stop(): Promise<void>;
  health(): {
    lastSuccessAt: string | null;
    since: string;
    watermarkNullRows?: number;
    watermarkStalledRows?: number;
    /** What the last successful run returned. */
    lastResult?: unknown;
  };
} {
  const since = new Date().toISOString();
  let lastSuccessAt: string | null = null;
  let lastResult: unknown;
  /** The last successful run's count of rows with a NULL watermark (watermark mode only). */
  let watermarkNullRows: number | undefined;
  /** The last successful run's count of rows a stalled watermark left behind (watermark mode, timestamp column). */
  let watermarkStalledRows: number | undefined;
  let stopped = false;
  let running: Promise<void> = Promise.resolve();
  let timer: NodeJS.Timeout | undefined;
  const tick = () => {
    if (stopped) return;
    running = (async () => {
      const started = Date.now();
      // EventBridge Scheduler's payload for a Lambda target.
      const event = {
        ...input,
        scheduledTime: new Date(started).toISOString().replace(/\.\d{3}Z$/, 'Z'),
        executionId: crypto.randomUUID(),
      };
      try {
        const summary = (await handler(
          event,
          lambdaContext({ functionName: fn.functionName, timeoutMs: fn.timeoutSeconds * 1000 }),
        )) as { nullWatermark?: unknown; stalled?: unknown } | undefined;
        lastSuccessAt = new Date().toISOString();
        lastResult = summary;
        watermarkNullRows = typeof summary?.nullWatermark === 'number' ? summary.nullWatermark : undefined;
        watermarkStalledRows = typeof summary?.stalled === 'number' ? summary.stalled : undefined;
      } catch (err) {
        logger.error('scheduled invocation failed', err);
      }
      if (!stopped) timer = setTimeout(tick, Math.max(0, periodMs - (Date.now() - started)));
    })();
  };
  timer = setTimeout(tick, 0);
  return {
    health: () => ({
      lastSuccessAt,
      since,
      ...(watermarkNullRows !== undefined ? { watermarkNullRows } : {}),
      ...(watermarkStalledRows !== undefined ? { watermarkStalledRows } : {}),
      ...(lastResult !== undefined ? { lastResult } : {}),
    }),
    async stop() {
      stopped = true;
      clearTimeout(timer);
      await running;
    },
  };
}

function prefixed(logger: RuntimeLogger, name: string) {
  return {
    debug: () => {},
    info: (message: string) => logger.info(`[${name}] ${message}`),
    warn: (message: string, ...extra: unknown[]) => logger.warn(`[${name}] ${message}`, ...extra),
    error: (message: string, ...extra: unknown[]) => logger.error(`[${name}] ${message}`, ...extra),
  };
}

function required<T>(value: T | undefined, what: string): T {
  if (value === undefined) throw new Error(`the offline run's state has no ${what}: run \`pulse local up\``);
  return value;
}

/**
 * The runtime process (`pulse local runtime`, started detached by `pulse local up`): starts the
 * runtime for the offline run in `home`, records itself ready in the state, and stops cleanly on
 * SIGTERM or SIGINT (the invocations in flight finish; a SIGKILL loses nothing either: unfinished
 * messages reappear after their visibility timeout and leases expire).
 */
export async function runRuntimeProcess(home: string, dashboardPort?: number): Promise<void> {
  const state = readState(home);
  if (!state) throw new Error(`no offline run in ${home}: run \`pulse local up\``);
  const stamp = () => new Date().toISOString();
  const logger: RuntimeLogger = {
    info: (m) => console.log(`${stamp()} INFO ${m}`),
    warn: (m, ...extra) => console.warn(`${stamp()} WARN ${m}`, ...extra),
    error: (m, ...extra) => console.error(`${stamp()} ERROR ${m}`, ...extra),
  };
  const runtime = await startRuntime(state, logger);
  const target = localTarget(state);
  const collector = new StatusCollector(target);
  const dashboard = await startDashboard({
    collector: {
      collect: async () => {
        const [status, health] = await Promise.all([collector.collect(), runtime.producerHealth()]);
        return { ...status, ...health };
      },
    },
    port: dashboardPort ?? 0,
    // Each sample scans the ledger and the scores table's series: keep the emulator's load low.
    sampleIntervalMs: DASHBOARD_SAMPLE_MS,
  });
  updateState(home, state.prefix, (s) => {
    s.runtime = {
      pid: process.pid,
      marker: s.runtime?.marker ?? `runtime --home ${home}`,
      log: s.runtime?.log ?? '',
      startedAt: s.runtime?.startedAt ?? stamp(),
      ready: true,
      dashboard: dashboard.url,
    };
  });
  logger.info(`runtime ready (pid ${process.pid})`);
  const signal = await new Promise<NodeJS.Signals>((resolve) => {
    process.once('SIGTERM', () => resolve('SIGTERM'));
    process.once('SIGINT', () => resolve('SIGINT'));
  });
  logger.info(`${signal}: stopping after the invocations in flight`);
  await Promise.all([runtime.stop(), dashboard.stop()]);
  target.close();
  logger.info('runtime stopped');
  process.exit(0);
}
