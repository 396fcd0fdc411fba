import { HeadBucketCommand } from '@aws-sdk/client-s3';
import { GetQueueAttributesCommand } from '@aws-sdk/client-sqs';
import { Kafka, logLevel } from 'kafkajs';
import pg from 'pg';
import { isRunning } from '../emulators/supervisor.ts';
import type { LocalState } from '../runtime/state.ts';
import {
  cannotCheck,
  type DoctorCheck,
  type DoctorReport,
  dlqDepthCheck,
  doctorReport,
  errorText,
} from './doctor.ts';
import { canaryRoundTrip } from './doctor-canary.ts';
import { localTarget, type Target } from './target.ts';

export interface DoctorLocalOptions {
  readonly timeoutMs: number;
  readonly pollMs?: number;
}

const UP = 'Start it: npm run pulse -- local up --detach';

/**
 * The offline run's checks, those that mean something against the emulators: the run's processes, its
 * resources, notifications (the same canary round trip as on AWS: moto delivers the notification, the
 * runtime's emulated event source runs s3-trigger), the DLQs, and whether PostgreSQL and Kafka answer with
 * the table and topics the sources read. AWS credentials, stack outputs, VPCs and mapping states have no
 * offline counterpart and are not reported.
 */
export async function doctorLocal(
  state: LocalState | undefined,
  o: DoctorLocalOptions,
): Promise<DoctorReport> {
  const run = offlineRunCheck(state);
  if (!state?.moto || !state.resources || run.status === 'cannot-check') return doctorReport('local', [run]);
  const checks: DoctorCheck[] = [run];
  const target = localTarget(state);
  try {
    checks.push(await resourcesCheck(target));
    checks.push(
      state.runtime && isRunning(state.runtime)
        ? await canaryRoundTrip({
            ...target.clients,
            bucket: target.bucket,
            ledgerTable: target.ledgerTable,
            fileEventsQueueUrl: target.queues.fileEvents,
            timeoutMs: o.timeoutMs,
            ...(o.pollMs !== undefined ? { pollMs: o.pollMs } : {}),
            notArrivedNext: `Check the bucket's notification configuration (moto keeps what local up wrote unless something replaced it) and the runtime's log (${state.runtime.log}).`,
          })
        : cannotCheck(
            'notifications',
            'Notifications (canary round trip)',
            'the runtime process is not running: nothing would consume the event',
            UP,
          ),
    );
    checks.push(await dlqDepthCheck(target.clients.sqs, localDlqs(target)));
  } finally {
    target.close();
  }
  checks.push(await postgresCheck(state));
  checks.push(await kafkaLocalCheck(state));
  return doctorReport('local', checks);
}

/** The processes `local up` recorded: moto, PostgreSQL, Kafka and the runtime (the functions and their event sources). */
export function offlineRunCheck(state: LocalState | undefined): DoctorCheck {
  const id = 'offline-run';
  const title = 'Offline run';
  if (!state?.moto || !state.resources) return cannotCheck(id, title, 'the offline pipeline is not up', UP);
  const processes = [
    ['moto', state.moto],
    ['postgres', state.postgres],
    ['kafka', state.kafka],
    ['runtime', state.runtime],
  ] as const;
  const details = processes.map(
    ([name, p]) =>
      `${name}: ${p ? `pid ${p.pid}, ${isRunning(p) ? 'running' : 'not running'}` : 'not started'}`,
  );
  const down = processes.filter(([, p]) => !isRunning(p)).map(([name]) => name);
  if (!isRunning(state.moto)) {
    return cannotCheck(
      id,
      title,
      'moto (S3, SQS, DynamoDB) is not running',
      `${UP} (it starts what is not running).`,
    );
  }
  if (down.length > 0) {
    return {
      id,
      title,
      status: 'problem',
      summary: `not running: ${down.join(', ')}`,
      next: `${UP} (it starts what is not running).`,
      details,
    };
  }
  if (state.runtime && !state.runtime.ready) {
    return {
      id,
      title,
      status: 'problem',
      summary: 'the runtime has not reported ready',
      next: `Read its log: ${state.runtime.log}`,
      details,
    };
  }
  return { id, title, status: 'ok', summary: 'moto, PostgreSQL, Kafka and the runtime are running', details };
}

async function resourcesCheck(target: Target): Promise<DoctorCheck> {
  try {
    await target.clients.s3.send(new HeadBucketCommand({ Bucket: target.bucket }));
    await target.clients.sqs.send(
      new GetQueueAttributesCommand({ QueueUrl: target.queues.fileEvents, AttributeNames: ['QueueArn'] }),
    );
    return {
      id: 'resources',
      title: 'Offline resources',
      status: 'ok',
      summary: `bucket ${target.bucket} and the queues answer`,
    };
  } catch (err) {
    return {
      id: 'resources',
      title: 'Offline resources',
      status: 'problem',
      summary: `the bucket or the file-events queue is missing: ${errorText(err)}`,
      next: 'Run `npm run pulse -- local up --detach` again (it creates what is missing), or `local down --wipe` first to start afresh.',
    };
  }
}

export function localDlqs(target: Pick<Target, 'queues'>) {
  return [
    {
      label: 'file-events DLQ',
      url: target.queues.fileEventsDlq,
      next: '`pulse dlq list`, fix the cause, then `pulse dlq redrive`.',
    },
    {
      label: 'signals DLQ',
      url: target.queues.signalsDlq,
      next: '`pulse dlq list`, fix the cause, then `pulse dlq redrive`.',
    },
    {
      label: 'Kafka failure notices',
      url: target.queues.kafkaFailures,
      next: '`pulse kafka replay --dry-run`, then `pulse kafka replay`.',
    },
  ];
}

/** PostgreSQL answers, and the table the poller reads exists. */
export async function postgresCheck(state: Pick<LocalState, 'resources' | 'options'>): Promise<DoctorCheck> {
  const id = 'database';
  const title = 'Database source (PostgreSQL)';
  const url = state.resources?.dbUrl;
  const table = state.options?.dbPoller?.table ?? state.resources?.dbTable;
  if (!url || !table) return cannotCheck(id, title, 'the offline run records no database', UP);
  const db = new pg.Client({ connectionString: url, connectionTimeoutMillis: 3000 });
  try {
    await db.connect();
    const out = await db.query<{ found: string | null }>('SELECT to_regclass($1)::text AS found', [table]);
    if (!out.rows[0]?.found) {
      return {
        id,
        title,
        status: 'problem',
        summary: `no table ${table}`,
        next: 'Run `npm run pulse -- local up --detach` again: it creates the table.',
      };
    }
    return { id, title, status: 'ok', summary: `PostgreSQL answers; table ${table} exists` };
  } catch (err) {
    return {
      id,
      title,
      status: 'problem',
      summary: `PostgreSQL does not answer: ${errorText(err)}`,
      next: UP,
    };
  } finally {
    await db.end().catch(() => undefined);
  }
}

/** The broker answers, and the topics the emulated event source reads exist. */
export async function kafkaLocalCheck(
  state: Pick<LocalState, 'kafka' | 'resources' | 'options'>,
): Promise<DoctorCheck> {
  const id = 'kafka';
  const title = 'Kafka source (broker)';
  const brokers = state.kafka?.brokers;
  const topics = state.options?.kafkaTopics ?? (state.resources?.topic ? [state.resources.topic] : []);
  if (!brokers) return cannotCheck(id, title, 'the offline run records no Kafka broker', UP);
  const admin = new Kafka({
    clientId: 'pulse-doctor',
    brokers: [brokers],
    logLevel: logLevel.NOTHING,
    connectionTimeout: 3000,
    retry: { retries: 1 },
  }).admin();
  try {
    await admin.connect();
    const existing = new Set(await admin.listTopics());
    const missing = topics.filter((t) => !existing.has(t));
    if (missing.length > 0) {
      return {
        id,
        title,
        status: 'problem',
        summary: `no topic ${missing.join(', ')}`,
        next: 'Run `npm run pulse -- local up --detach` again: it creates the topics.',
      };
    }
    return { id, title, status: 'ok', summary: `the broker answers; topic(s) ${topics.join(', ')} exist` };
  } catch (err) {
    return {
      id,
      title,
      status: 'problem',
      summary: `the broker at ${brokers} does not answer: ${errorText(err)}`,
      next: UP,
    };
  } finally {
    await admin.disconnect().catch(() => undefined);
  }
}
