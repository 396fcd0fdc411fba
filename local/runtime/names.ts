import { randomBytes } from 'node:crypto';
import { settings } from '#shared/settings.ts';

/** Names of the resources of one offline deployment, all derived from one prefix. */
export interface ResourceNames {
  readonly prefix: string;
  /** The ingest bucket (also holds `rejects/`). */
  readonly bucket: string;
  readonly fileEventsQueue: string;
  readonly fileEventsDlq: string;
  readonly signalsQueue: string;
  readonly signalsDlq: string;
  /** The Kafka event source's on-failure destination (a bucket of its own, as in the stack). */
  readonly kafkaFailuresBucket: string;
  /** One "Object Created" event per object in the Kafka failures bucket (the alarm's queue). */
  readonly kafkaFailureNotices: string;
  /** The EventBridge rule that routes the failures bucket's "Object Created" events to the notices queue. */
  readonly kafkaFailuresRule: string;
  readonly ledgerTable: string;
  readonly scoresTable: string;
  /** Score records (`scores/`, `scores-pending/`). */
  readonly scoresBucket: string;
  readonly anomaliesTable: string;
}

/** The longest suffix appended to the prefix of a bucket name (`-kafka-failures`); S3 allows 63 characters. */
const KAFKA_FAILURES_SUFFIX = '-kafka-failures';
const MAX_PREFIX_LENGTH = 63 - KAFKA_FAILURES_SUFFIX.length;
const SCORES_BUCKET_SUFFIX = '-scores';
const PREFIX_PATTERN = /^[a-z0-9](?:[a-z0-9-]*[a-z0-9])?$/;

/**
 * Resource names for a prefix such as `pulse` (the default, `settings.appName`) or a unique per-test
 * prefix (see {@link uniquePrefix}). The prefix is lower-cased; it must then be letters, digits and
 * inner hyphens, at most 48 characters, so that `<prefix>-kafka-failures` is a valid S3 bucket name.
 * @throws RangeError when it is not.
 */
export function resourceNames(prefix: string = settings.appName): ResourceNames {
  const p = prefix.toLowerCase();
  if (!PREFIX_PATTERN.test(p) || p.length > MAX_PREFIX_LENGTH || p.includes('--') || p.startsWith('xn-')) {
    throw new RangeError(
      `resource prefix ${JSON.stringify(prefix)} is not usable: use 1..${MAX_PREFIX_LENGTH} lower-case letters, ` +
        'digits and single inner hyphens (it starts S3 bucket names)',
    );
  }
  return {
    prefix: p,
    bucket: `${p}-ingest`,
    fileEventsQueue: `${p}-file-events`,
    fileEventsDlq: `${p}-file-events-dlq`,
    signalsQueue: `${p}-signals`,
    signalsDlq: `${p}-signals-dlq`,
    kafkaFailuresBucket: `${p}${KAFKA_FAILURES_SUFFIX}`,
    kafkaFailureNotices: `${p}-kafka-failure-notices`,
    kafkaFailuresRule: `${p}-kafka-failure-created`,
    ledgerTable: `${p}-ledger`,
    scoresTable: `${p}-scores`,
    scoresBucket: `${p}${SCORES_BUCKET_SUFFIX}`,
    anomaliesTable: `${p}-anomalies`,
  };
}

/**
 * A prefix no other test file will use, for tests sharing one emulator: `tag` plus 8 random hex
 * digits (`emu1a2b3c4d`).
 */
export function uniquePrefix(tag = 't'): string {
  return `${tag.toLowerCase()}${randomBytes(4).toString('hex')}`;
}
