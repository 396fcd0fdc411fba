/**
 * The stack's CloudWatch alarms (infra/monitoring.ts), evaluated offline on what the dashboard sees: a
 * {@link PulseStatus} and the samples before it, against the same `settings.monitoring` thresholds and
 * under the same names, so the offline dashboard and the deployed one speak of the same alarms.
 *
 * Where the offline run cannot read the metric an alarm watches, the evaluation approximates it and says
 * so in {@link ALARM_APPROXIMATIONS}; where it has no data at all, the state is INSUFFICIENT_DATA, as in
 * CloudWatch. The functions' error and throttle alarms have no offline counterpart (there is no Lambda
 * service to count them) and are left out.
 */

import { settings } from '#shared/settings.ts';
import type { PulseStatus } from '../commands/status.ts';
import type { QueueName } from '../commands/target.ts';
import type { Sample } from './history.ts';

export type AlarmState = 'OK' | 'ALARM' | 'INSUFFICIENT_DATA';

export interface AlarmEvaluation {
  /** The CloudWatch alarm's name in the deployed stack. */
  readonly name: string;
  readonly state: AlarmState;
  /** Why, in one sentence, with the numbers. */
  readonly reason: string;
}

/**
 * What the producers' runtime knows and the ledger, tables and queues do not. Optional: the offline
 * runtime adds it to the status it hands the dashboard; without it those alarms are INSUFFICIENT_DATA.
 */
export interface ProducerHealth {
  /** The db-poller's schedule, when it runs. */
  readonly poller?: {
    /** When a run last ended without an error (ISO-8601), null before the first. */
    readonly lastSuccessAt: string | null;
    /** When the schedule started (ISO-8601): a poller that never ran is silent from then on. */
    readonly since: string;
    /** The schedule's period. */
    readonly periodSeconds: number;
    /** Rows with a NULL watermark column the last successful watermark-mode run counted (none in mark mode). */
    readonly watermarkNullRows?: number;
    /**
     * Rows the watermark had left out of reach, as the last successful watermark-mode run on a timestamp
     * column counted them (none in mark mode or on a version counter).
     */
    readonly watermarkStalledRows?: number;
  };
  /**
   * Records between the Kafka consumer group's committed offsets and the topic's end, all partitions.
   * null: a Kafka event source runs but no lag could be read (missing data, which the alarm treats as
   * breaching, as CloudWatch does); absent: nothing reports on Kafka at all.
   */
  readonly kafkaOffsetLag?: number | null;
  /** The ledger sweep's schedule, when it runs. */
  readonly sweep?: {
    /** When a run last ended without an error (ISO-8601), null before the first. */
    readonly lastSuccessAt: string | null;
    /** When the schedule started (ISO-8601). */
    readonly since: string;
    readonly periodSeconds: number;
    /** The last successful run's stuck items by kind (processing, split, discovered, exhausted). */
    readonly stuck?: Readonly<Record<string, number>>;
    /** The last successful run's verdict on the notification canary due by then. */
    readonly canaryMissed?: boolean;
    /** The last successful run's receipts: files verified, and of those the ones that do not balance. */
    readonly receipts?: { readonly verified: number; readonly mismatches: number };
  };
}

/** The thresholds of `settings.monitoring` the offline alarms use (widened: tests pass others). */
export interface MonitoringSettings {
  readonly maxMessageAgeSeconds: { readonly fileEvents: number; readonly signals: number };
  readonly maxFilesFailed: number;
  readonly pollerSilentPeriods: number;
  readonly maxKafkaOffsetLag: number;
  /** @default settings.monitoring.maxFilesStuck */
  readonly maxFilesStuck?: number;
  /** @default settings.monitoring.sweepAlarmPeriods */
  readonly sweepAlarmPeriods?: number;
}

const prefix = settings.stackName;
/** The alarm names, as cdk-monitoring-constructs (queues) and infra/monitoring.ts (the others) make them. */
export const ALARM_NAMES = {
  fileEventsDlq: `${prefix}-FileEvents-DLQ-Queue-Message-Count-Max-Critical`,
  signalsDlq: `${prefix}-Signals-DLQ-Queue-Message-Count-Max-Critical`,
  kafkaFailures: `${prefix}-KafkaFailures-Queue-Message-Count-Max-Critical`,
  filesFailed: `${prefix}-FilesFailed`,
  fileEventsAge: `${prefix}-FileEvents-Queue-Message-Age-Max-Critical`,
  signalsAge: `${prefix}-Signals-Queue-Message-Age-Max-Critical`,
  pollerSilent: `${prefix}-PollerSilent`,
  watermarkNullRows: `${prefix}-WatermarkNullRows`,
  watermarkStalled: `${prefix}-WatermarkStalled`,
  kafkaOffsetLag: `${prefix}-KafkaOffsetLag`,
  filesStuck: `${prefix}-FilesStuck`,
  notificationsSilent: `${prefix}-NotificationsSilent`,
  receiptMismatches: `${prefix}-ReceiptMismatches`,
} as const;

/** How each offline evaluation differs from the CloudWatch alarm of the same name. */
export const ALARM_APPROXIMATIONS = {
  dlq: 'CloudWatch watches ApproximateNumberOfMessagesVisible; offline counts visible + in flight, as `pulse status` does.',
  filesFailed:
    'CloudWatch sums the FilesFailed metric over a 5-minute period; offline counts ledger rows FAILED whose last update is within the last 5 minutes.',
  messageAge:
    'SQS does not report the age of the oldest message (CloudWatch does). Offline: ALARM when the queue held messages at every sample of the last maxMessageAgeSeconds and its depth never went down, so no message need have left it.',
  pollerSilent:
    'CloudWatch counts successful invocations in pollerSilentPeriods schedule periods; offline compares the time since the last successful run (or since the schedule started) with the same window.',
  watermarkNullRows:
    'CloudWatch takes the maximum of the WatermarkNullRows metric over 5 minutes; offline uses the count of the last successful poll.',
  watermarkStalled:
    'CloudWatch takes the maximum of the WatermarkStalledRows metric over 5 minutes; offline uses the count of the last successful poll.',
  kafkaOffsetLag:
    'CloudWatch reads the event source mapping’s OffsetLag and treats its absence (a disabled or failing trigger) as breaching; offline uses the lag the runtime reads from the consumer group’s committed offsets, and ALARM when it runs a Kafka source but cannot read one.',
  filesStuck:
    'CloudWatch takes the maximum of FilesStuck over sweepAlarmPeriods schedule periods, missing data breaching; offline uses the last successful sweep, and ALARM when none succeeded within that window.',
  notificationsSilent:
    'CloudWatch takes the maximum of CanaryMissed over sweepAlarmPeriods schedule periods, missing data breaching; offline uses the last successful sweep, and ALARM when none succeeded within that window.',
  receiptMismatches:
    'CloudWatch takes the maximum of ReceiptMismatches over sweepAlarmPeriods schedule periods, missing data breaching; offline uses the last successful sweep (so a mismatch clears once a later run verifies only balanced files, as CloudWatch once its period passes), and ALARM when none succeeded within that window.',
} as const;

const FILES_FAILED_WINDOW_MS = 5 * 60_000;

/**
 * The offline alarms, in a fixed order: the two DLQs and the Kafka failures bucket's notices, files FAILED,
 * the oldest-message age of the two consumed queues, poller silence, rows the poller cannot read (NULL
 * watermark, a stalled watermark), Kafka offset lag, ledger items stuck, notifications silent (the sweep's
 * canary), receipts that do not balance (the sweep's). Pure: `status.at` is "now".
 *
 * @param history samples oldest first; those at or after `status.at` are ignored (the status is the newest)
 */
export function evaluateAlarms(
  status: PulseStatus & ProducerHealth,
  history: readonly Sample[],
  monitoring: MonitoringSettings = settings.monitoring,
): AlarmEvaluation[] {
  const now = Date.parse(status.at);
  return [
    dlqAlarm(ALARM_NAMES.fileEventsDlq, status, 'fileEventsDlq'),
    dlqAlarm(ALARM_NAMES.signalsDlq, status, 'signalsDlq'),
    dlqAlarm(ALARM_NAMES.kafkaFailures, status, 'kafkaFailures'),
    filesFailedAlarm(status, now, monitoring.maxFilesFailed),
    messageAgeAlarm(
      ALARM_NAMES.fileEventsAge,
      status,
      history,
      now,
      'fileEvents',
      monitoring.maxMessageAgeSeconds.fileEvents,
    ),
    messageAgeAlarm(
      ALARM_NAMES.signalsAge,
      status,
      history,
      now,
      'signals',
      monitoring.maxMessageAgeSeconds.signals,
    ),
    pollerSilentAlarm(status, now, monitoring.pollerSilentPeriods),
    watermarkNullRowsAlarm(status),
    watermarkStalledAlarm(status),
    kafkaLagAlarm(status, monitoring.maxKafkaOffsetLag),
    filesStuckAlarm(status, now, monitoring),
    notificationsSilentAlarm(status, now, monitoring),
    receiptMismatchesAlarm(status, now, monitoring),
  ];
}

/**
 * The sweep's last successful run, if it is recent enough to count: undefined with an evaluation when it
 * is not (no sweep reported: INSUFFICIENT_DATA; none within the alarm's window: ALARM, as CloudWatch's
 * missing data is breaching).
 */
function recentSweep(
  name: string,
  status: ProducerHealth,
  now: number,
  monitoring: MonitoringSettings,
): { sweep: NonNullable<ProducerHealth['sweep']> } | { evaluation: AlarmEvaluation } {
  const sweep = status.sweep;
  if (!sweep) {
    return {
      evaluation: {
        name,
        state: 'INSUFFICIENT_DATA',
        reason: 'no ledger sweep runs are reported to the dashboard',
      },
    };
  }
  const periods = monitoring.sweepAlarmPeriods ?? settings.monitoring.sweepAlarmPeriods;
  const windowSeconds = periods * sweep.periodSeconds;
  const from = sweep.lastSuccessAt ?? sweep.since;
  const silentSeconds = Math.round((now - Date.parse(from)) / 1000);
  if (silentSeconds > windowSeconds) {
    return {
      evaluation: {
        name,
        state: 'ALARM',
        reason: `${sweep.lastSuccessAt ? `the last successful ledger sweep was ${silentSeconds} s ago` : `no successful ledger sweep in the ${silentSeconds} s since its schedule started`} (missing data is breaching: ${periods} periods of ${sweep.periodSeconds} s)`,
      },
    };
  }
  if (!sweep.lastSuccessAt) {
    return { evaluation: { name, state: 'INSUFFICIENT_DATA', reason: 'the ledger sweep has not run yet' } };
  }
  return { sweep };
}

function filesStuckAlarm(
  status: ProducerHealth,
  now: number,
  monitoring: MonitoringSettings,
): AlarmEvaluation {
  const name = ALARM_NAMES.filesStuck;
  const recent = recentSweep(name, status, now, monitoring);
  if ('evaluation' in recent) return recent.evaluation;
  const stuck = recent.sweep.stuck ?? {};
  const total = Object.values(stuck).reduce((n, v) => n + v, 0);
  const threshold = monitoring.maxFilesStuck ?? settings.monitoring.maxFilesStuck;
  const kinds = Object.entries(stuck)
    .filter(([, n]) => n > 0)
    .map(([kind, n]) => `${n} ${kind}`)
    .join(', ');
  return total > threshold
    ? {
        name,
        state: 'ALARM',
        reason: `${plural(total, 'ledger item')} stuck at the last sweep (${kinds}; threshold: > ${threshold}): see pulse ledger`,
      }
    : { name, state: 'OK', reason: `no ledger item stuck at the last sweep (threshold: > ${threshold})` };
}

function notificationsSilentAlarm(
  status: ProducerHealth,
  now: number,
  monitoring: MonitoringSettings,
): AlarmEvaluation {
  const name = ALARM_NAMES.notificationsSilent;
  const recent = recentSweep(name, status, now, monitoring);
  if ('evaluation' in recent) return recent.evaluation;
  return recent.sweep.canaryMissed
    ? {
        name,
        state: 'ALARM',
        reason: `the notification canary (${settings.bucket.canaryKey}) never reached the ledger: are the bucket's notifications still configured?`,
      }
    : { name, state: 'OK', reason: 'the notification canary due by the last sweep reached the ledger' };
}

function receiptMismatchesAlarm(
  status: ProducerHealth,
  now: number,
  monitoring: MonitoringSettings,
): AlarmEvaluation {
  const name = ALARM_NAMES.receiptMismatches;
  const recent = recentSweep(name, status, now, monitoring);
  if ('evaluation' in recent) return recent.evaluation;
  const r = recent.sweep.receipts;
  if (!r) return { name, state: 'INSUFFICIENT_DATA', reason: 'the last sweep reported no receipts' };
  return r.mismatches > 0
    ? {
        name,
        state: 'ALARM',
        reason: `${plural(r.mismatches, 'file')} of ${r.verified} verified at the last sweep do not balance (records read found neither scored nor quarantined): see pulse verify --since 1h`,
      }
    : { name, state: 'OK', reason: `the ${plural(r.verified, 'file')} verified at the last sweep balance` };
}

function depthOf(status: PulseStatus, queue: QueueName): number {
  const d = status.queues[queue];
  return d.visible + d.inFlight;
}

function dlqAlarm(name: string, status: PulseStatus, queue: QueueName): AlarmEvaluation {
  const depth = depthOf(status, queue);
  return depth > 0
    ? { name, state: 'ALARM', reason: `${plural(depth, 'message')} in ${queue} (threshold: > 0)` }
    : { name, state: 'OK', reason: `${queue} is empty` };
}

function filesFailedAlarm(status: PulseStatus, now: number, threshold: number): AlarmEvaluation {
  const name = ALARM_NAMES.filesFailed;
  const recent = status.files.filter(
    (f) => f.status === 'FAILED' && now - Date.parse(f.updatedAt) <= FILES_FAILED_WINDOW_MS,
  );
  const keys = recent.map((f) => f.key).join(', ');
  return recent.length > threshold
    ? {
        name,
        state: 'ALARM',
        reason: `${plural(recent.length, 'file')} ended FAILED in the last 5 minutes (threshold: > ${threshold}): ${keys}`,
      }
    : {
        name,
        state: 'OK',
        reason: `${plural(recent.length, 'file')} ended FAILED in the last 5 minutes (threshold: > ${threshold})`,
      };
}

function messageAgeAlarm(
  name: string,
  status: PulseStatus,
  history: readonly Sample[],
  now: number,
  queue: QueueName,
  maxAgeSeconds: number,
): AlarmEvaluation {
  const depthNow = depthOf(status, queue);
  if (depthNow === 0) return { name, state: 'OK', reason: `${queue} is empty` };
  const points = [
    ...history.filter((s) => s.t < now).map((s) => ({ t: s.t, depth: s.queues[queue] })),
    { t: now, depth: depthNow },
  ];
  const windowStart = now - maxAgeSeconds * 1000;
  // The last sample at or before the window's start: the window is covered from there on.
  let anchor = -1;
  for (let i = 0; i < points.length; i++)
    if ((points[i]?.t ?? Number.POSITIVE_INFINITY) <= windowStart) anchor = i;
  if (anchor < 0) {
    const covered = Math.round((now - (points[0]?.t ?? now)) / 1000);
    return {
      name,
      state: 'INSUFFICIENT_DATA',
      reason: `${plural(depthNow, 'message')} in ${queue}; the samples cover ${covered} s of the ${maxAgeSeconds} s needed to tell their age`,
    };
  }
  const window = points.slice(anchor);
  const stuck = window.every((p, i) => p.depth > 0 && (i === 0 || p.depth >= (window[i - 1]?.depth ?? 0)));
  return stuck
    ? {
        name,
        state: 'ALARM',
        reason: `${queue} held messages (now ${depthNow}) and did not shrink for ${maxAgeSeconds} s: its oldest message is likely older than that`,
      }
    : {
        name,
        state: 'OK',
        reason: `${queue} (now ${depthNow}) emptied or shrank within the last ${maxAgeSeconds} s`,
      };
}

function watermarkNullRowsAlarm(status: PulseStatus & ProducerHealth): AlarmEvaluation {
  const name = ALARM_NAMES.watermarkNullRows;
  const count = status.poller?.watermarkNullRows;
  if (!status.poller) {
    return { name, state: 'INSUFFICIENT_DATA', reason: 'no db-poller runs are reported to the dashboard' };
  }
  if (count === undefined) {
    // As in CloudWatch, where the metric is missing (mark mode, or no run yet) and missing is not breaching.
    return { name, state: 'OK', reason: 'no watermark-mode poll has counted rows with a NULL watermark' };
  }
  return count > 0
    ? {
        name,
        state: 'ALARM',
        reason: `${plural(count, 'row')} with a NULL watermark column at the last poll (threshold: > 0): never read, quarantined`,
      }
    : { name, state: 'OK', reason: 'no row has a NULL watermark column' };
}

function watermarkStalledAlarm(status: PulseStatus & ProducerHealth): AlarmEvaluation {
  const name = ALARM_NAMES.watermarkStalled;
  if (!status.poller) {
    return { name, state: 'INSUFFICIENT_DATA', reason: 'no db-poller runs are reported to the dashboard' };
  }
  const count = status.poller.watermarkStalledRows;
  if (count === undefined) {
    // As in CloudWatch, where the metric is missing (mark mode, a version counter, no run yet).
    return { name, state: 'OK', reason: 'no watermark-mode poll on a timestamp column has counted a stall' };
  }
  return count > 0
    ? {
        name,
        state: 'ALARM',
        reason: `${plural(count, 'recent row')} more than the lookback behind the watermark at the last poll (threshold: > 0): no poll reads them`,
      }
    : { name, state: 'OK', reason: 'no recent row is out of the watermark’s reach' };
}

function pollerSilentAlarm(
  status: PulseStatus & ProducerHealth,
  now: number,
  periods: number,
): AlarmEvaluation {
  const name = ALARM_NAMES.pollerSilent;
  const poller = status.poller;
  if (!poller) {
    return { name, state: 'INSUFFICIENT_DATA', reason: 'no db-poller runs are reported to the dashboard' };
  }
  const windowSeconds = periods * poller.periodSeconds;
  const from = poller.lastSuccessAt ?? poller.since;
  const silentSeconds = Math.round((now - Date.parse(from)) / 1000);
  const what = poller.lastSuccessAt
    ? `last successful run ${silentSeconds} s ago`
    : `no successful run in the ${silentSeconds} s since the schedule started`;
  return silentSeconds > windowSeconds
    ? {
        name,
        state: 'ALARM',
        reason: `${what} (threshold: ${periods} periods of ${poller.periodSeconds} s)`,
      }
    : { name, state: 'OK', reason: `${what} (threshold: ${periods} periods of ${poller.periodSeconds} s)` };
}

function kafkaLagAlarm(status: ProducerHealth, threshold: number): AlarmEvaluation {
  const name = ALARM_NAMES.kafkaOffsetLag;
  const lag = status.kafkaOffsetLag;
  if (lag === undefined) {
    return { name, state: 'INSUFFICIENT_DATA', reason: 'no Kafka offset lag is reported to the dashboard' };
  }
  if (lag === null) {
    return {
      name,
      state: 'ALARM',
      reason:
        'the Kafka event source reports no offset lag (missing data is breaching: a stopped or failing consumer)',
    };
  }
  return lag > threshold
    ? { name, state: 'ALARM', reason: `offset lag ${lag} records (threshold: > ${threshold})` }
    : { name, state: 'OK', reason: `offset lag ${lag} records (threshold: > ${threshold})` };
}

function plural(n: number, word: string): string {
  return `${n} ${word}${n === 1 ? '' : 's'}`;
}
