import { availableParallelism } from 'node:os';
import { describe, expect, it } from 'vitest';
import { loadS3TriggerConfig, loadScorerConfig, loadSweepConfig } from '#shared/config.ts';
import { ConfigError } from '#shared/errors.ts';
import { settings } from '#shared/settings.ts';

describe('config', () => {
  it('throws ConfigError naming the missing variable', () => {
    expect(() => loadS3TriggerConfig({ LEDGER_TABLE: 't', QUARANTINE_BUCKET: 'b' })).toThrow(
      new ConfigError('SIGNALS_QUEUE_URL is not set'),
    );
    expect(() => loadScorerConfig({ QUARANTINE_BUCKET: 'b' })).toThrow('SCORES_TABLE is not set');
    expect(() =>
      loadScorerConfig({ SCORES_TABLE: 's', ANOMALIES_TABLE: 'a', QUARANTINE_BUCKET: 'b' }),
    ).toThrow('SCORES_BUCKET is not set');
  });

  it('reads the ledger sweep’s table and bucket, with its thresholds from the settings unless overridden', () => {
    // Act
    const c = loadSweepConfig({ LEDGER_TABLE: 't', INGEST_BUCKET: 'b', SWEEP_SPLIT_STUCK_SECONDS: '30' });
    // Assess
    expect(c).toEqual({
      s3ForcePathStyle: false,
      ledgerTable: 't',
      bucket: 'b',
      maxAttempts: settings.ledger.maxAttempts,
      processingStuckSeconds: settings.sweep.processingStuckSeconds,
      splitStuckSeconds: 30,
      canaryGraceSeconds: settings.sweep.canaryGraceSeconds,
      exhaustedLookbackHours: settings.sweep.exhaustedLookbackHours,
      maxItemsPerStatus: settings.sweep.maxItemsPerStatus,
      pageSize: settings.sweep.pageSize,
    });
    expect(() => loadSweepConfig({ LEDGER_TABLE: 't' })).toThrow('INGEST_BUCKET is not set');
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
      checkpointSeconds: settings.ledger.checkpointSeconds,
      maxAttempts: settings.ledger.maxAttempts,
      maxMessageBytes: settings.signals.maxMessageBytes,
      handOverBeforeTimeoutSeconds: settings.ledger.handOverBeforeTimeoutSeconds,
      fanOut: settings.fanOut,
      staging: {
        minBytes: settings.staging.minBytes,
        objectBytes: settings.staging.objectBytes,
        bucket: 'b',
      },
      parseThread: {
        mode: settings.functions.s3Trigger.parseThread,
        minBytes: settings.functions.s3Trigger.parseThreadMinBytes,
        cpus: availableParallelism(),
      },
      routes: [expect.objectContaining({ prefix: 'incoming/', delimiter: ',', afterSuccess: 'keep' })],
    });
  });

  it('reads the routes from S3_ROUTES once, and refuses routes the stack would refuse, naming the variable', () => {
    // Prepare
    const base = { SIGNALS_QUEUE_URL: 'https://q', LEDGER_TABLE: 't', QUARANTINE_BUCKET: 'b' };
    const routes = [
      { prefix: 'incoming/' },
      { prefix: 'eu/', mapping: { name: 'metric' }, csv: { delimiter: ';' }, afterSuccess: 'delete' },
    ];
    // Act
    const c = loadS3TriggerConfig({ ...base, S3_ROUTES: JSON.stringify(routes) });
    // Assess
    expect(c.routes.map((r) => [r.prefix, r.delimiter, r.afterSuccess])).toEqual([
      ['incoming/', ',', 'keep'],
      ['eu/', ';', 'delete'],
    ]);
    expect(() => loadS3TriggerConfig({ ...base, S3_ROUTES: '[{' })).toThrow(/S3_ROUTES must be JSON/);
    expect(() =>
      loadS3TriggerConfig({
        ...base,
        S3_ROUTES: JSON.stringify([{ prefix: 'incoming/', csv: { delimiter: ':' } }]),
      }),
    ).toThrow(/S3_ROUTES\.0\.csv\.delimiter: csv.delimiter must be one of/);
  });

  it('reads the staging threshold and staged object size, and refuses a size that is not a positive whole number', () => {
    // Prepare
    const base = { SIGNALS_QUEUE_URL: 'https://q', LEDGER_TABLE: 't', QUARANTINE_BUCKET: 'b' };
    // Act
    const c = loadS3TriggerConfig({ ...base, STAGING_MIN_BYTES: '2000', STAGING_OBJECT_BYTES: '300' });
    // Assess
    // Staged copies go to the pipeline's own bucket (the rejects'), whichever bucket the file is in.
    expect(c.staging).toEqual({ minBytes: 2000, objectBytes: 300, bucket: 'b' });
    expect(() => loadS3TriggerConfig({ ...base, STAGING_OBJECT_BYTES: '1.5' })).toThrow(
      /STAGING_OBJECT_BYTES must be a whole number/,
    );
  });

  it('reads the fan-out threshold and part size, and refuses a part size that is not a positive whole number', () => {
    const base = { SIGNALS_QUEUE_URL: 'https://q', LEDGER_TABLE: 't', QUARANTINE_BUCKET: 'b' };
    expect(
      loadS3TriggerConfig({ ...base, FAN_OUT_MIN_BYTES: '1000', FAN_OUT_PART_BYTES: '500' }).fanOut,
    ).toEqual({
      minBytes: 1000,
      partBytes: 500,
      maxParts: settings.fanOut.maxParts,
    });
    expect(() => loadS3TriggerConfig({ ...base, FAN_OUT_PART_BYTES: '0' })).toThrow(
      /FAN_OUT_PART_BYTES must be positive/,
    );
  });

  it('reads the file-events queue for continuations, and refuses one that is not a URL', () => {
    const base = { SIGNALS_QUEUE_URL: 'https://q', LEDGER_TABLE: 't', QUARANTINE_BUCKET: 'b' };
    expect(loadS3TriggerConfig({ ...base, FILE_EVENTS_QUEUE_URL: 'https://sqs/f' }).fileEventsQueueUrl).toBe(
      'https://sqs/f',
    );
    expect(() => loadS3TriggerConfig({ ...base, FILE_EVENTS_QUEUE_URL: 'file events' })).toThrow(
      /FILE_EVENTS_QUEUE_URL must be a URL/,
    );
  });

  it('records AWS calls only where PULSE_AWS_CALL_LOG names an absolute directory', () => {
    // Prepare
    const base = { SIGNALS_QUEUE_URL: 'https://q', LEDGER_TABLE: 't', QUARANTINE_BUCKET: 'b' };

    // Act
    const recorded = loadScorerConfig({
      ...base,
      SCORES_TABLE: 's',
      SCORES_BUCKET: 'sb',
      ANOMALIES_TABLE: 'a',
      PULSE_AWS_CALL_LOG: '/tmp/calls',
    });

    const sweep = loadSweepConfig({
      LEDGER_TABLE: 't',
      INGEST_BUCKET: 'b',
      PULSE_AWS_CALL_LOG: '/tmp/calls',
    });

    // Assess: every function's configuration, the ledger sweep's too
    expect(recorded.awsCallLog).toBe('/tmp/calls');
    expect(sweep.awsCallLog).toBe('/tmp/calls');
    expect(loadS3TriggerConfig(base)).not.toHaveProperty('awsCallLog');
    expect(() => loadS3TriggerConfig({ ...base, PULSE_AWS_CALL_LOG: '.pulse/calls' })).toThrow(
      new ConfigError('PULSE_AWS_CALL_LOG must be an absolute directory path'),
    );
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
      SCORES_BUCKET: 'sb',
      ANOMALIES_TABLE: 'a',
      QUARANTINE_BUCKET: 'b',
      Z_THRESHOLD: '2.5',
      S3_FORCE_PATH_STYLE: 'true',
    });
    expect(c.zThreshold).toBe(2.5);
    expect(c.s3ForcePathStyle).toBe(true);
    expect(c).toMatchObject({ scoresTable: 's', scoresBucket: 'sb', anomaliesTable: 'a' });
  });
});

describe('producer config', () => {
  const base = {
    SIGNALS_QUEUE_URL: 'q',
    DB_SECRET_ARN: 'arn:secret',
    WATERMARK_TABLE: 'ledger',
    QUARANTINE_BUCKET: 'b',
  };

  it('defaults the db-poller to the seeds table in mark mode with TLS on', async () => {
    const { loadDbPollerConfig } = await import('#shared/config.ts');
    const c = loadDbPollerConfig(base);
    expect(c).toMatchObject({
      table: 'signals',
      mode: 'mark',
      dbSsl: true,
      columns: { id: 'id', processed: 'processed' },
      watermarkLookbackSeconds: 60,
    });
  });

  it('reads the watermark lookback in whole seconds, 0 turning it off, and refuses anything else', async () => {
    const { loadDbPollerConfig } = await import('#shared/config.ts');
    expect(loadDbPollerConfig({ ...base, DB_WATERMARK_LOOKBACK_SECONDS: '0' }).watermarkLookbackSeconds).toBe(
      0,
    );
    expect(
      loadDbPollerConfig({ ...base, DB_WATERMARK_LOOKBACK_SECONDS: '300' }).watermarkLookbackSeconds,
    ).toBe(300);
    for (const bad of ['-1', '1.5', 'soon']) {
      expect(() => loadDbPollerConfig({ ...base, DB_WATERMARK_LOOKBACK_SECONDS: bad })).toThrow(
        /DB_WATERMARK_LOOKBACK_SECONDS must be a whole number of seconds, 0 or more/,
      );
    }
  });

  it('reads the watermark skew in whole seconds, and refuses one that is not below the lookback', async () => {
    // Prepare
    const { loadDbPollerConfig } = await import('#shared/config.ts');
    // Act
    const byDefault = loadDbPollerConfig(base);
    const set = loadDbPollerConfig({ ...base, DB_WATERMARK_SKEW_SECONDS: '0' });
    const noLookback = loadDbPollerConfig({
      ...base,
      DB_WATERMARK_LOOKBACK_SECONDS: '0',
      DB_WATERMARK_SKEW_SECONDS: '300',
    });
    // Assess
    expect(byDefault.watermarkSkewSeconds).toBe(settings.dbPoller.watermarkSkewSeconds);
    expect(byDefault.watermarkSkewSeconds).toBeLessThan(byDefault.watermarkLookbackSeconds);
    expect(set.watermarkSkewSeconds).toBe(0);
    expect(noLookback.watermarkSkewSeconds).toBe(300);
    for (const bad of ['-1', '2.5', 'later']) {
      expect(() => loadDbPollerConfig({ ...base, DB_WATERMARK_SKEW_SECONDS: bad })).toThrow(
        /DB_WATERMARK_SKEW_SECONDS must be a whole number of seconds, 0 or more/,
      );
    }
    expect(() => loadDbPollerConfig({ ...base, DB_WATERMARK_SKEW_SECONDS: '60' })).toThrow(
      'DB_WATERMARK_SKEW_SECONDS (60) must be less than DB_WATERMARK_LOOKBACK_SECONDS (60)',
    );
  });

  it('warns about watermark mode on the event time (the default mapping), and about nothing else', async () => {
    // Prepare
    const { dbPollerConfigWarnings, loadDbPollerConfig } = await import('#shared/config.ts');
    const columns = JSON.stringify({ updatedAt: 'updated_at' });
    // Act
    const eventTime = dbPollerConfigWarnings(loadDbPollerConfig({ ...base, DB_MODE: 'watermark' }));
    const commitTime = dbPollerConfigWarnings(
      loadDbPollerConfig({ ...base, DB_MODE: 'watermark', DB_COLUMNS: columns }),
    );
    const mark = dbPollerConfigWarnings(loadDbPollerConfig({ ...base, DB_MODE: 'mark' }));
    // Assess
    expect(eventTime).toEqual([
      expect.stringMatching(/^watermark mode orders rows by "timestamp", the event time/),
    ]);
    expect(eventTime[0]).toContain('more than 60 s (DB_WATERMARK_LOOKBACK_SECONDS)');
    expect(commitTime).toEqual([]);
    expect(mark).toEqual([]);
  });

  it('refuses a table or column name that is not a plain identifier', async () => {
    const { loadDbPollerConfig } = await import('#shared/config.ts');
    expect(() => loadDbPollerConfig({ ...base, DB_TABLE: 'signals; drop table x' })).toThrow(
      /DB_TABLE must be a plain SQL identifier/,
    );
    expect(() => loadDbPollerConfig({ ...base, DB_COLUMNS: '{"name":"x\\" or 1=1"}' })).toThrow(/DB_COLUMNS/);
  });

  it('needs a schema for Avro or Protobuf Kafka values', async () => {
    const { loadKafkaConsumerConfig } = await import('#shared/config.ts');
    expect(() =>
      loadKafkaConsumerConfig({ SIGNALS_QUEUE_URL: 'q', QUARANTINE_BUCKET: 'b', KAFKA_VALUE_FORMAT: 'avro' }),
    ).toThrow('KAFKA_VALUE_SCHEMA is not set (needed for avro values)');
    expect(loadKafkaConsumerConfig({ SIGNALS_QUEUE_URL: 'q', QUARANTINE_BUCKET: 'b' }).valueFormat).toBe(
      'json',
    );
  });

  it('needs the message type name next to the .proto for Protobuf Kafka values', async () => {
    const { loadKafkaConsumerConfig } = await import('#shared/config.ts');
    const protobuf = {
      SIGNALS_QUEUE_URL: 'q',
      QUARANTINE_BUCKET: 'b',
      KAFKA_VALUE_FORMAT: 'protobuf',
      KAFKA_VALUE_SCHEMA: 'syntax = "proto3"; package pulse; message Signal { string name = 1; }',
    };
    expect(() => loadKafkaConsumerConfig(protobuf)).toThrow(
      new ConfigError('KAFKA_VALUE_MESSAGE_TYPE is not set (needed for protobuf values)'),
    );
    expect(loadKafkaConsumerConfig({ ...protobuf, KAFKA_VALUE_MESSAGE_TYPE: 'pulse.Signal' })).toMatchObject({
      valueFormat: 'protobuf',
      valueMessageType: 'pulse.Signal',
    });
  });
});
