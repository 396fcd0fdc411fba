/**
 * The offline runtime: the four real handlers in one Node process, fed by what AWS would manage —
 * the two SQS event source mappings (file-events → s3-trigger, signals → scorer), the poller's
 * schedule (db-poller) and the Kafka event source (kafka-consumer) — against the emulators that
 * `pulse local up` started (see stack.ts). Settings (batch sizes, windows, timeouts, schedule) come
 * from shared/settings.ts, as in the stack.
 */

import { SendMessageCommand } from '@aws-sdk/client-sqs';
import type { Context } from 'aws-lambda';
import { Kafka, logLevel } from 'kafkajs';
import { settings } from '../shared/settings.ts';
import type { ProducerHealth } from './alarms.ts';
import { LOCAL_CREDENTIALS, LOCAL_REGION, makeClients } from './clients.ts';
import { startDashboard } from './dashboard.ts';
import { type KafkaHandler, startKafkaEventSource } from './kafka-event-source.ts';
import { lambdaContext } from './lambda-context.ts';
import { type SqsHandler, startSqsEventSource } from './sqs-event-source.ts';
import { type LocalState, readState, updateState } from './state.ts';
import { StatusCollector } from './status.ts';
import { localTarget } from './target.ts';

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
  return {
    AWS_ENDPOINT_URL: moto.endpoint,
    AWS_REGION: LOCAL_REGION,
    AWS_ACCESS_KEY_ID: LOCAL_CREDENTIALS.accessKeyId,
    AWS_SECRET_ACCESS_KEY: LOCAL_CREDENTIALS.secretAccessKey,
    S3_FORCE_PATH_STYLE: 'true',
    SIGNALS_QUEUE_URL: r.queues.signals.url,
    FILE_EVENTS_QUEUE_URL: r.queues.fileEvents.url,
    LEDGER_TABLE: r.ledgerTable,
    SCORES_TABLE: r.scoresTable,
    SCORES_BUCKET: required(r.scoresBucket, 'scores bucket'),
    ANOMALIES_TABLE: required(r.anomaliesTable, 'anomalies table'),
    QUARANTINE_BUCKET: r.bucket,
    WATERMARK_TABLE: r.ledgerTable,
    DB_SECRET_ARN: r.dbSecretArn,
    DB_SSL: 'false',
    DB_TABLE: r.dbTable,
    ...(lease
      ? {
          LEDGER_LEASE_SECONDS: String(lease),
          LEDGER_HEARTBEAT_SECONDS: String(Math.max(1, Math.floor(lease / 3))),
        }
      : {}),
    POWERTOOLS_SERVICE_NAME: 'pulse-local',
    POWERTOOLS_METRICS_NAMESPACE: 'PulseIngest',
    // The functions' EMF metric lines go to the runtime's log, as they go to CloudWatch Logs on AWS.
    POWERTOOLS_LOG_LEVEL: 'WARN',
  };
}

/**
 * Starts the runtime for an offline run whose emulators and resources `state` records. The handler
 * modules read their configuration when imported, so the environment is set first.
 */
export async function startRuntime(state: LocalState, logger: RuntimeLogger): Promise<Runtime> {
  const r = required(state.resources, 'resources');
  const kafka = required(state.kafka, 'kafka');
  Object.assign(process.env, runtimeEnv(state));
  const [s3Trigger, scorer, dbPoller, kafkaConsumer] = await Promise.all([
    import('../functions/s3-trigger/handler.ts'),
    import('../functions/scorer/handler.ts'),
    import('../functions/db-poller/handler.ts'),
    import('../functions/kafka-consumer/handler.ts'),
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
  const pollPeriodMs = (state.options?.pollSeconds ?? settings.dbPoller.scheduleRateMinutes * 60) * 1000;
  const schedule = startSchedule(
    dbPoller.handler as unknown as (event: unknown, context: Context) => Promise<unknown>,
    pollPeriodMs,
    prefixed(logger, 'pulse-db-poller'),
  );
  const kafkaSource = startKafkaEventSource({
    brokers: kafka.brokers,
    topic: r.topic,
    groupId: `${state.prefix}-kafka-consumer`,
    batchSize: settings.kafka.batchSize,
    maxBatchingWindowMs: settings.kafka.maxBatchingWindowSeconds * 1000,
    handler: kafkaConsumer.handler as unknown as KafkaHandler,
    functionName: 'pulse-kafka-consumer',
    logger: prefixed(logger, 'pulse-kafka-consumer'),
    // The on-failure destination, as the stack's SqsDlq: the batch's description goes to a queue.
    onFailure: async (failure) => {
      await clients.sqs.send(
        new SendMessageCommand({
          QueueUrl: r.queues.kafkaFailures.url,
          MessageBody: JSON.stringify(failure),
        }),
      );
    },
  });
  await kafkaSource.ready;
  const kafkaAdmin = new Kafka({
    clientId: 'pulse-local-lag',
    brokers: [kafka.brokers],
    logLevel: logLevel.NOTHING,
  }).admin();
  await kafkaAdmin.connect();
  const groupId = `${state.prefix}-kafka-consumer`;

  return {
    async producerHealth() {
      let kafkaOffsetLag: number | undefined;
      try {
        const [ends, committed] = await Promise.all([
          kafkaAdmin.fetchTopicOffsets(r.topic),
          kafkaAdmin.fetchOffsets({ groupId, topics: [r.topic] }),
        ]);
        const done = new Map(
          (committed[0]?.partitions ?? []).map((p) => [p.partition, Math.max(0, Number(p.offset))]),
        );
        kafkaOffsetLag = ends.reduce(
          (n, p) => n + Math.max(0, Number(p.high) - (done.get(p.partition) ?? 0)),
          0,
        );
      } catch (err) {
        logger.warn('could not read the Kafka consumer lag', err);
      }
      return {
        poller: { ...schedule.health(), periodSeconds: Math.round(pollPeriodMs / 1000) },
        ...(kafkaOffsetLag !== undefined ? { kafkaOffsetLag } : {}),
      };
    },
    async stop() {
      await kafkaAdmin.disconnect().catch(() => {});
      await Promise.all([files.stop(), signals.stop(), schedule.stop(), kafkaSource.stop()]);
      clients.s3.destroy();
      clients.sqs.destroy();
      clients.ddb.destroy();
    },
  };
}

/**
 * EventBridge Scheduler's part: invoke the poller every `periodMs` with the scheduler's event, never
 * two at once (a run longer than the period delays the next, as a Lambda with reserved concurrency 1).
 */
export function startSchedule(
  handler: (event: unknown, context: Context) => Promise<unknown>,
  periodMs: number,
  logger: RuntimeLogger,
): {
  stop(): Promise<void>;
  health(): { lastSuccessAt: string | null; since: string; watermarkNullRows?: number };
} {
  const since = new Date().toISOString();
  let lastSuccessAt: string | null = null;
  /** The last successful run's count of rows with a NULL watermark (watermark mode only). */
  let watermarkNullRows: number | undefined;
  let stopped = false;
  let running: Promise<void> = Promise.resolve();
  let timer: NodeJS.Timeout | undefined;
  const tick = () => {
    if (stopped) return;
    running = (async () => {
      const started = Date.now();
      // EventBridge Scheduler's payload for a Lambda target.
      const event = {
        scheduledTime: new Date(started).toISOString().replace(/\.\d{3}Z$/, 'Z'),
        executionId: crypto.randomUUID(),
      };
      try {
        const summary = (await handler(
          event,
          lambdaContext({
            functionName: 'pulse-db-poller',
            timeoutMs: settings.functions.dbPoller.timeoutSeconds * 1000,
          }),
        )) as { nullWatermark?: unknown } | undefined;
        lastSuccessAt = new Date().toISOString();
        watermarkNullRows = typeof summary?.nullWatermark === 'number' ? summary.nullWatermark : undefined;
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
