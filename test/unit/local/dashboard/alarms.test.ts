import { describe, expect, it } from 'vitest';
import { settings } from '#shared/settings.ts';
import { ALARM_NAMES, evaluateAlarms } from '../../../../local/dashboard/alarms.ts';
import { type Sample, toSample } from '../../../../local/dashboard/history.ts';
import { fileRowFactory, type PulseStatusOverrides, pulseStatusFactory } from '../../../helpers/status.ts';

const NOW = Date.parse('2024-06-01T12:00:00.000Z');
const iso = (t: number) => new Date(t).toISOString();
const m = settings.monitoring;

/** A sample `secondsAgo` before NOW with these signals-queue and file-events depths. */
function sampleAt(secondsAgo: number, depth: { signals?: number; fileEvents?: number } = {}): Sample {
  return toSample(
    pulseStatusFactory({
      at: iso(NOW - secondsAgo * 1000),
      queues: {
        signals: { visible: depth.signals ?? 0 },
        fileEvents: { visible: depth.fileEvents ?? 0 },
      },
    }),
  );
}

function stateOf(
  name: string,
  overrides: PulseStatusOverrides & Record<string, unknown>,
  history: Sample[] = [],
) {
  const out = evaluateAlarms(pulseStatusFactory(overrides), history, m).find((a) => a.name === name);
  if (!out) throw new Error(`no alarm ${name}`);
  return out;
}

describe('evaluateAlarms', () => {
  it('names every alarm like its CloudWatch counterpart, in a fixed order', () => {
    // Act
    const alarms = evaluateAlarms(pulseStatusFactory(), [], m);
    // Assess
    expect(alarms.map((a) => a.name)).toEqual([
      'PulseIngest-FileEvents-DLQ-Queue-Message-Count-Max-Critical',
      'PulseIngest-Signals-DLQ-Queue-Message-Count-Max-Critical',
      'PulseIngest-KafkaFailures-Queue-Message-Count-Max-Critical',
      'PulseIngest-FilesFailed',
      'PulseIngest-FileEvents-Queue-Message-Age-Max-Critical',
      'PulseIngest-Signals-Queue-Message-Age-Max-Critical',
      'PulseIngest-PollerSilent',
      'PulseIngest-WatermarkNullRows',
      'PulseIngest-WatermarkStalled',
      'PulseIngest-KafkaOffsetLag',
      'PulseIngest-FilesStuck',
      'PulseIngest-NotificationsSilent',
      'PulseIngest-ReceiptMismatches',
    ]);
  });

  it('is OK everywhere it has data on an idle, empty run', () => {
    // Act
    const alarms = evaluateAlarms(pulseStatusFactory(), [], m);
    // Assess
    expect(Object.fromEntries(alarms.map((a) => [a.name, a.state]))).toEqual({
      [ALARM_NAMES.fileEventsDlq]: 'OK',
      [ALARM_NAMES.signalsDlq]: 'OK',
      [ALARM_NAMES.kafkaFailures]: 'OK',
      [ALARM_NAMES.filesFailed]: 'OK',
      [ALARM_NAMES.fileEventsAge]: 'OK',
      [ALARM_NAMES.signalsAge]: 'OK',
      [ALARM_NAMES.pollerSilent]: 'INSUFFICIENT_DATA',
      [ALARM_NAMES.watermarkNullRows]: 'INSUFFICIENT_DATA',
      [ALARM_NAMES.watermarkStalled]: 'INSUFFICIENT_DATA',
      [ALARM_NAMES.kafkaOffsetLag]: 'INSUFFICIENT_DATA',
      [ALARM_NAMES.filesStuck]: 'INSUFFICIENT_DATA',
      [ALARM_NAMES.notificationsSilent]: 'INSUFFICIENT_DATA',
      [ALARM_NAMES.receiptMismatches]: 'INSUFFICIENT_DATA',
    });
  });

  it.each([
    ['fileEventsDlq', ALARM_NAMES.fileEventsDlq],
    ['signalsDlq', ALARM_NAMES.signalsDlq],
    ['kafkaFailures', ALARM_NAMES.kafkaFailures],
  ] as const)('alarms on the first message in %s, visible or in flight', (queue, name) => {
    // Act
    const visible = stateOf(name, { queues: { [queue]: { visible: 1 } } });
    const inFlight = stateOf(name, { queues: { [queue]: { inFlight: 2 } } });
    const elsewhere = stateOf(name, { queues: { fileEvents: { visible: 5 } } });
    // Assess
    expect(visible).toMatchObject({ state: 'ALARM', reason: `1 message in ${queue} (threshold: > 0)` });
    expect(inFlight.state).toBe('ALARM');
    expect(elsewhere.state).toBe('OK');
  });

  it('alarms on files FAILED within the last 5 minutes, above maxFilesFailed, naming them', () => {
    // Prepare
    const failed = (key: string, secondsAgo: number) =>
      fileRowFactory({
        key,
        status: 'FAILED',
        error: 'MalformedFileError: x',
        updatedAt: iso(NOW - secondsAgo * 1000),
      });
    // Act
    const recent = stateOf(ALARM_NAMES.filesFailed, {
      files: [failed('incoming/new.csv', 30), failed('incoming/old.csv', 301), fileRowFactory()],
    });
    const old = stateOf(ALARM_NAMES.filesFailed, { files: [failed('incoming/old.csv', 301)] });
    const tolerant = evaluateAlarms(pulseStatusFactory({ files: [failed('incoming/new.csv', 30)] }), [], {
      ...m,
      maxFilesFailed: 1,
    }).find((a) => a.name === ALARM_NAMES.filesFailed);
    // Assess
    expect(recent.state).toBe('ALARM');
    expect(recent.reason).toBe(
      '1 file ended FAILED in the last 5 minutes (threshold: > 0): incoming/new.csv',
    );
    expect(old.state).toBe('OK');
    expect(tolerant?.state).toBe('OK');
  });

  describe('oldest message age (approximated from the depth history)', () => {
    const age = m.maxMessageAgeSeconds.signals;

    it('is OK when the queue is empty now, whatever came before', () => {
      // Act
      const out = stateOf(ALARM_NAMES.signalsAge, {}, [sampleAt(age + 10, { signals: 50 })]);
      // Assess
      expect(out).toMatchObject({ state: 'OK', reason: 'signals is empty' });
    });

    it('has INSUFFICIENT_DATA for a non-empty queue while the samples cover less than the threshold', () => {
      // Act
      const out = stateOf(ALARM_NAMES.signalsAge, { queues: { signals: { visible: 3 } } }, [
        sampleAt(age - 10, { signals: 3 }),
      ]);
      // Assess
      expect(out.state).toBe('INSUFFICIENT_DATA');
      expect(out.reason).toContain(`cover ${age - 10} s of the ${age} s`);
    });

    it('alarms when the queue held messages at every sample of the window and never shrank', () => {
      // Prepare
      const history = [
        sampleAt(age + 100, { signals: 0 }),
        sampleAt(age + 5, { signals: 2 }),
        sampleAt(age / 2, { signals: 2 }),
        sampleAt(10, { signals: 4 }),
      ];
      // Act
      const out = stateOf(
        ALARM_NAMES.signalsAge,
        { queues: { signals: { visible: 3, inFlight: 1 } } },
        history,
      );
      // Assess
      expect(out.state).toBe('ALARM');
      expect(out.reason).toContain(`did not shrink for ${age} s`);
    });

    it('is OK when the queue shrank or was empty at some sample within the window', () => {
      // Prepare
      const shrank = [sampleAt(age + 5, { signals: 9 }), sampleAt(age / 2, { signals: 4 })];
      const emptied = [
        sampleAt(age + 5, { signals: 2 }),
        sampleAt(age / 2, { signals: 0 }),
        sampleAt(5, { signals: 2 }),
      ];
      // Act
      const a = stateOf(ALARM_NAMES.signalsAge, { queues: { signals: { visible: 9 } } }, shrank);
      const b = stateOf(ALARM_NAMES.signalsAge, { queues: { signals: { visible: 2 } } }, emptied);
      // Assess
      expect(a.state).toBe('OK');
      expect(b.state).toBe('OK');
    });

    it('uses each queue’s own threshold: the file-events queue waits maxMessageAgeSeconds.fileEvents', () => {
      // Prepare: stuck for longer than the signals threshold, shorter than the file-events one.
      const history = [sampleAt(age + 5, { fileEvents: 1, signals: 1 })];
      const status = { queues: { fileEvents: { visible: 1 }, signals: { visible: 1 } } };
      // Act
      const fileEvents = stateOf(ALARM_NAMES.fileEventsAge, status, history);
      const signals = stateOf(ALARM_NAMES.signalsAge, status, history);
      // Assess
      expect(m.maxMessageAgeSeconds.fileEvents).toBeGreaterThan(age + 5);
      expect(fileEvents.state).toBe('INSUFFICIENT_DATA');
      expect(signals.state).toBe('ALARM');
    });

    it('ignores samples at or after the status itself', () => {
      // Prepare: a "future" sample that would otherwise anchor nothing and add an empty point.
      const history = [sampleAt(age + 5, { signals: 1 }), sampleAt(-30, { signals: 0 })];
      // Act
      const out = stateOf(ALARM_NAMES.signalsAge, { queues: { signals: { visible: 1 } } }, history);
      // Assess
      expect(out.state).toBe('ALARM');
    });
  });

  describe('poller silence', () => {
    const period = 60;
    const poller = (lastSuccessSecondsAgo: number | null, sinceSecondsAgo: number) => ({
      poller: {
        lastSuccessAt: lastSuccessSecondsAgo === null ? null : iso(NOW - lastSuccessSecondsAgo * 1000),
        since: iso(NOW - sinceSecondsAgo * 1000),
        periodSeconds: period,
      },
    });
    const window = m.pollerSilentPeriods * period;

    it('is OK while the last successful run is within pollerSilentPeriods periods', () => {
      expect(stateOf(ALARM_NAMES.pollerSilent, poller(window - 1, 3600)).state).toBe('OK');
    });

    it('alarms when the last successful run is older than pollerSilentPeriods periods', () => {
      // Act
      const out = stateOf(ALARM_NAMES.pollerSilent, poller(window + 1, 3600));
      // Assess
      expect(out).toMatchObject({
        state: 'ALARM',
        reason: `last successful run ${window + 1} s ago (threshold: ${m.pollerSilentPeriods} periods of ${period} s)`,
      });
    });

    it('counts a poller that never succeeded as silent from when its schedule started', () => {
      expect(stateOf(ALARM_NAMES.pollerSilent, poller(null, window - 5)).state).toBe('OK');
      expect(stateOf(ALARM_NAMES.pollerSilent, poller(null, window + 5)).state).toBe('ALARM');
    });
  });

  describe('rows with a NULL watermark column', () => {
    const poller = (watermarkNullRows?: number) => ({
      poller: {
        lastSuccessAt: iso(NOW),
        since: iso(NOW - 3_600_000),
        periodSeconds: 60,
        ...(watermarkNullRows !== undefined ? { watermarkNullRows } : {}),
      },
    });

    it('alarms when the last poll counted any, saying how many', () => {
      expect(stateOf(ALARM_NAMES.watermarkNullRows, poller(3))).toMatchObject({
        state: 'ALARM',
        reason:
          '3 rows with a NULL watermark column at the last poll (threshold: > 0): never read, quarantined',
      });
    });

    it('is OK when the last poll counted none, or the poller reports no count (mark mode), as missing data is', () => {
      expect(stateOf(ALARM_NAMES.watermarkNullRows, poller(0)).state).toBe('OK');
      expect(stateOf(ALARM_NAMES.watermarkNullRows, poller()).state).toBe('OK');
    });
  });

  describe('a stalled watermark', () => {
    const poller = (watermarkStalledRows?: number) => ({
      poller: {
        lastSuccessAt: iso(NOW),
        since: iso(NOW - 3_600_000),
        periodSeconds: 60,
        ...(watermarkStalledRows !== undefined ? { watermarkStalledRows } : {}),
      },
    });

    it('alarms when the last poll counted recent rows out of the watermark’s reach, saying how many', () => {
      expect(stateOf(ALARM_NAMES.watermarkStalled, poller(12))).toMatchObject({
        state: 'ALARM',
        reason:
          '12 recent rows more than the lookback behind the watermark at the last poll (threshold: > 0): no poll reads them',
      });
    });

    it('clears once a poll counts none, and is OK when no poll reports a count (mark mode), as missing data is', () => {
      expect(stateOf(ALARM_NAMES.watermarkStalled, poller(0)).state).toBe('OK');
      expect(stateOf(ALARM_NAMES.watermarkStalled, poller()).state).toBe('OK');
      expect(stateOf(ALARM_NAMES.watermarkStalled, {}).state).toBe('INSUFFICIENT_DATA');
    });
  });

  it('alarms on a Kafka offset lag above maxKafkaOffsetLag, when one is reported', () => {
    expect(stateOf(ALARM_NAMES.kafkaOffsetLag, { kafkaOffsetLag: m.maxKafkaOffsetLag }).state).toBe('OK');
    expect(stateOf(ALARM_NAMES.kafkaOffsetLag, { kafkaOffsetLag: m.maxKafkaOffsetLag + 1 }).state).toBe(
      'ALARM',
    );
    expect(stateOf(ALARM_NAMES.kafkaOffsetLag, {}).state).toBe('INSUFFICIENT_DATA');
  });

  it('treats a Kafka source that reports no offset lag as breaching (CloudWatch: missing OffsetLag is breaching)', () => {
    // Act
    const missing = stateOf(ALARM_NAMES.kafkaOffsetLag, { kafkaOffsetLag: null });
    // Assess
    expect(missing.state).toBe('ALARM');
    expect(missing.reason).toContain('no offset lag');
  });

  describe('the ledger sweep’s alarms', () => {
    const sweep = (over: Record<string, unknown> = {}) => ({
      at: iso(NOW),
      sweep: {
        since: iso(NOW - 3_600_000),
        lastSuccessAt: iso(NOW - 60_000),
        periodSeconds: 300,
        stuck: { processing: 0, split: 0, discovered: 0, exhausted: 0 },
        canaryMissed: false,
        ...over,
      },
    });

    it('alarms on stuck ledger items at the last sweep, by kind, and on a missed canary', () => {
      // Act
      const stuck = stateOf(
        ALARM_NAMES.filesStuck,
        sweep({ stuck: { processing: 1, split: 2, exhausted: 0 } }),
      );
      const missed = stateOf(ALARM_NAMES.notificationsSilent, sweep({ canaryMissed: true }));
      // Assess
      expect(stuck).toMatchObject({
        state: 'ALARM',
        reason: expect.stringContaining('3 ledger items stuck'),
      });
      expect(stuck.reason).toContain('1 processing, 2 split');
      expect(missed.state).toBe('ALARM');
      expect(stateOf(ALARM_NAMES.filesStuck, sweep()).state).toBe('OK');
      expect(stateOf(ALARM_NAMES.notificationsSilent, sweep()).state).toBe('OK');
    });

    it('alarms on a receipt that does not balance at the last sweep, and is OK when all balance', () => {
      // Act
      const red = stateOf(ALARM_NAMES.receiptMismatches, sweep({ receipts: { verified: 4, mismatches: 1 } }));
      const green = stateOf(
        ALARM_NAMES.receiptMismatches,
        sweep({ receipts: { verified: 4, mismatches: 0 } }),
      );
      const unreported = stateOf(ALARM_NAMES.receiptMismatches, sweep());
      // Assess
      expect(red).toMatchObject({ state: 'ALARM', reason: expect.stringContaining('1 file of 4 verified') });
      expect(green.state).toBe('OK');
      expect(unreported.state).toBe('INSUFFICIENT_DATA');
    });

    it('treats a sweep that has not succeeded within its periods as breaching, as CloudWatch’s missing data', () => {
      // Act: the last success 11 minutes ago, with two periods of 5 minutes allowed; or never, for 11 minutes
      const late = sweep({ lastSuccessAt: iso(NOW - 11 * 60_000) });
      const never = sweep({ lastSuccessAt: null, since: iso(NOW - 11 * 60_000) });
      const starting = sweep({ lastSuccessAt: null, since: iso(NOW - 60_000) });
      // Assess
      for (const name of [
        ALARM_NAMES.filesStuck,
        ALARM_NAMES.notificationsSilent,
        ALARM_NAMES.receiptMismatches,
      ]) {
        expect(stateOf(name, late)).toMatchObject({
          state: 'ALARM',
          reason: expect.stringContaining('660 s ago'),
        });
        expect(stateOf(name, never).state).toBe('ALARM');
        expect(stateOf(name, starting).state).toBe('INSUFFICIENT_DATA');
      }
    });
  });
});
