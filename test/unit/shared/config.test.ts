import { describe, expect, it } from 'vitest';
import { loadS3TriggerConfig, loadScorerConfig } from '../../../shared/config.ts';
import { ConfigError } from '../../../shared/errors.ts';
import { settings } from '../../../shared/settings.ts';

describe('config', () => {
  it('throws ConfigError naming the missing variable', () => {
    expect(() => loadS3TriggerConfig({ LEDGER_TABLE: 't', QUARANTINE_BUCKET: 'b' })).toThrow(
      new ConfigError('SIGNALS_QUEUE_URL is not set'),
    );
    expect(() => loadScorerConfig({ QUARANTINE_BUCKET: 'b' })).toThrow('SCORES_TABLE is not set');
  });

  it('fills defaults from the settings module', () => {
    const c = loadS3TriggerConfig({
      SIGNALS_QUEUE_URL: 'https://q',
      LEDGER_TABLE: 't',
      QUARANTINE_BUCKET: 'b',
    });
    expect(c).toEqual({
      s3ForcePathStyle: false,
      signalsQueueUrl: 'https://q',
      ledgerTable: 't',
      quarantineBucket: 'b',
      leaseSeconds: settings.ledger.leaseSeconds,
      heartbeatSeconds: settings.ledger.heartbeatSeconds,
      maxAttempts: settings.ledger.maxAttempts,
      maxMessageBytes: settings.signals.maxMessageBytes,
    });
  });

  it('rejects a malformed number', () => {
    expect(() =>
      loadS3TriggerConfig({
        SIGNALS_QUEUE_URL: 'q',
        LEDGER_TABLE: 't',
        QUARANTINE_BUCKET: 'b',
        LEDGER_LEASE_SECONDS: 'soon',
      }),
    ).toThrow(/LEDGER_LEASE_SECONDS/);
  });

  it('reads overrides and the path-style flag', () => {
    const c = loadScorerConfig({
      SCORES_TABLE: 's',
      QUARANTINE_BUCKET: 'b',
      Z_THRESHOLD: '2.5',
      S3_FORCE_PATH_STYLE: 'true',
    });
    expect(c.zThreshold).toBe(2.5);
    expect(c.s3ForcePathStyle).toBe(true);
  });
});
