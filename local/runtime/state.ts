/**
 * What `pulse local up` started and created, kept in `<home>/state.json` (home defaults to the
 * git-ignored `.pulse/local`), so that `down`, `status` and the runtime process find it again.
 * Processes are recorded by pid and recognised by their command line, so a recycled pid is never
 * mistaken for ours (`isRunning` and `stopProcess` of `../emulators/supervisor.ts`).
 */

import { existsSync, mkdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { PulseTuningProps } from '../../infra/props.ts';
import { type ProcessRecord, REPO_ROOT } from '../emulators/supervisor.ts';
import type { LocalExistingBucket } from './existing-buckets.ts';
import type { QueueRef } from './resources.ts';

export const DEFAULT_HOME = join(REPO_ROOT, '.pulse', 'local');

export interface LocalState {
  readonly prefix: string;
  moto?: ProcessRecord & { readonly port: number; readonly endpoint: string };
  postgres?: ProcessRecord & { readonly port: number; readonly url: string };
  kafka?: ProcessRecord & { readonly port: number; readonly brokers: string };
  /** The Confluent Schema Registry stand-in, with `local up --kafka-registry`. */
  schemaRegistry?: ProcessRecord & { readonly port: number; readonly url: string };
  runtime?: ProcessRecord & {
    readonly ready: boolean;
    readonly startedAt: string;
    readonly dashboard?: string;
    readonly log: string;
  };
  resources?: {
    readonly bucket: string;
    /** The Kafka event source's on-failure destination (absent in a state written before it existed). */
    readonly kafkaFailuresBucket?: string;
    readonly ledgerTable: string;
    readonly scoresTable: string;
    /** Absent in the state of an offline run created before scores went to S3: `local up` adds them. */
    readonly scoresBucket?: string;
    readonly anomaliesTable?: string;
    readonly queues: Readonly<
      // kafkaFailures: the notices of the Kafka failures bucket (one per failure object).
      Record<'fileEvents' | 'fileEventsDlq' | 'signals' | 'signalsDlq' | 'kafkaFailures', QueueRef>
    >;
    readonly dbSecretArn: string;
    /** The offline run's database (the server's `pulse` database). */
    readonly dbUrl: string;
    readonly dbTable: string;
    readonly topic: string;
  };
  /** Overrides for recovery tests and demos (see `pulse local up --help`). */
  options?: RuntimeOptions;
}

export interface RuntimeOptions {
  /** The ledger lease (s3-trigger). @default settings.ledger.leaseSeconds */
  readonly leaseSeconds?: number;
  /** Visibility timeout of both consumed queues. @default 6 × the consumer's timeout, as deployed */
  readonly visibilitySeconds?: number;
  /** The poller's schedule. @default settings.dbPoller.scheduleRateMinutes */
  readonly pollSeconds?: number;
  /**
   * The ledger sweep's schedule; its canary is then due after two periods instead of
   * settings.sweep.canaryGraceSeconds. @default settings.sweep.scheduleRateMinutes
   */
  readonly sweepSeconds?: number;
  /**
   * The db-poller's props, as `PulseIngest` takes them (`dbPoller`: mode, table, columns, where, processedType,
   * initialWatermark, …, or `tables`: one emulated schedule each), checked and set on the function as the stack
   * sets them. @default settings.dbPoller, on the offline run's own table
   */
  readonly dbPoller?: PulseTuningProps['dbPoller'];
  /**
   * The S3 props, as `PulseIngest` takes them (`s3.routes`: prefixes, mapping, CSV delimiter, after success),
   * from `pulse local up --config FILE`: the bucket notifies under the routes' prefixes and the s3-trigger
   * gets them in S3_ROUTES, as the stack sets them. @default the default route
   */
  readonly s3?: PulseTuningProps['s3'];
  /**
   * The Kafka consumer group of the emulated event source (the stack's `kafka.consumerGroupId`). The
   * broker keeps its committed offsets, so a runtime started again with the same group resumes there.
   * @default `<prefix>-kafka-consumer`, one group per offline run, as Lambda's per-mapping UUID
   */
  readonly kafkaConsumerGroupId?: string;
  /**
   * The topics the emulated Kafka event source reads, one emulated mapping each (the stack's
   * `kafka.topic`, one or several); each is created when missing. @default [settings.kafka.topic]
   */
  readonly kafkaTopics?: readonly string[];
  /**
   * The stack's `AT_TIMESTAMP` starting position, in epoch milliseconds: a group without committed offsets
   * starts at each partition's first record at or after it. @default settings.kafka.startingPosition
   */
  readonly kafkaStartingTimestampMs?: number;
  /**
   * The stack's `kafka.schemaRegistry` (Confluent, JSON records, value validated): a Confluent Schema
   * Registry stand-in is started, and the emulated mappings validate each record through it. @default none
   */
  readonly kafkaSchemaRegistry?: boolean;
  /**
   * The kafka-consumer's props, as `PulseIngest` takes them (`kafkaConsumer`: value format, schema, per-topic
   * `mappings`), from `pulse local up --config FILE`: set on the function as the stack sets them
   * (infra/kafka-consumer-env.ts). @default settings.kafkaConsumer
   */
  readonly kafkaConsumer?: PulseTuningProps['kafkaConsumer'];
  /**
   * Buckets created outside the pipeline (`existingBuckets`, from `pulse local up --config FILE` or
   * `--existing-buckets`): each is connected to the file-events queue as the stack connects it, and its
   * prefixes get routes of their own in S3_ROUTES (local/runtime/offline-config.ts). @default none
   */
  readonly existingBuckets?: readonly LocalExistingBucket[];
}

export function statePath(home: string): string {
  return join(home, 'state.json');
}

export function readState(home: string): LocalState | undefined {
  const file = statePath(home);
  if (!existsSync(file)) return undefined;
  return JSON.parse(readFileSync(file, 'utf8')) as LocalState;
}

/** Writes atomically (rename), so a reader never sees half a file. */
export function writeState(home: string, state: LocalState): void {
  mkdirSync(home, { recursive: true });
  const file = statePath(home);
  writeFileSync(`${file}.tmp`, `${JSON.stringify(state, null, 2)}\n`);
  renameSync(`${file}.tmp`, file);
}

/** Applies `change` to the current state (or a new one for `prefix`) and writes it back. */
export function updateState(home: string, prefix: string, change: (s: LocalState) => void): LocalState {
  const state = readState(home) ?? { prefix };
  change(state);
  writeState(home, state);
  return state;
}
