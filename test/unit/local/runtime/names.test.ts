import { describe, expect, it } from 'vitest';
import { resourceNames, uniquePrefix } from '../../../../local/runtime/names.ts';

describe('resourceNames', () => {
  it('derives every resource name from the prefix', () => {
    // Act
    const names = resourceNames('pulse');
    // Assess
    expect(names).toEqual({
      prefix: 'pulse',
      bucket: 'pulse-ingest',
      fileEventsQueue: 'pulse-file-events',
      fileEventsDlq: 'pulse-file-events-dlq',
      signalsQueue: 'pulse-signals',
      signalsDlq: 'pulse-signals-dlq',
      kafkaFailuresBucket: 'pulse-kafka-failures',
      kafkaFailureNotices: 'pulse-kafka-failure-notices',
      kafkaFailuresRule: 'pulse-kafka-failure-created',
      ledgerTable: 'pulse-ledger',
      scoresTable: 'pulse-scores',
      scoresBucket: 'pulse-scores',
      anomaliesTable: 'pulse-anomalies',
    });
  });

  it('defaults to the app name of shared/settings.ts and lower-cases the prefix', () => {
    // Assess
    expect(resourceNames().bucket).toBe('pulse-ingest');
    expect(resourceNames('Team-A').bucket).toBe('team-a-ingest');
  });

  it.each(['', '-a', 'a-', 'a_b', 'a.b', 'a--b', 'xn-a', 'a b', 'x'.repeat(49)])(
    'rejects %j, which would not make a valid bucket name',
    (prefix) => {
      // Act / Assess
      expect(() => resourceNames(prefix)).toThrow(RangeError);
    },
  );

  it('accepts a prefix of 48 characters: the Kafka failures bucket name is then 63, the most S3 allows', () => {
    // Assess
    expect(resourceNames('x'.repeat(48)).kafkaFailuresBucket).toHaveLength(63);
  });
});

describe('uniquePrefix', () => {
  it('makes distinct, usable prefixes', () => {
    // Act
    const prefixes = Array.from({ length: 50 }, () => uniquePrefix('Emu'));
    // Assess
    expect(new Set(prefixes).size).toBe(50);
    for (const p of prefixes) {
      expect(p).toMatch(/^emu[0-9a-f]{8}$/);
      expect(() => resourceNames(p)).not.toThrow();
    }
  });
});
