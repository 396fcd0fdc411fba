/**
 * The contract between the stack and the runtime, as plain constants (no import: `cdk synth` loads no
 * Powertools and every `pulse` command no aws-cdk-lib through them). Both sides import the names from here:
 * the stack (`infra/`) sets the environment variables and outputs and watches the metrics; the functions read
 * the variables (`shared/config.ts`, once, at cold start) and emit the metrics; the offline runtime
 * (`local/`) sets the variables as the stack does and reads a deployed stack through its outputs.
 * `test/infra/env-contract.test.ts` holds the stack's function environments, the config schemas and the
 * offline runtime's environment to the same names.
 */

/** Names of the stack outputs; the CLI reads a deployed stack through them. */
export const OUTPUTS = {
  bucket: 'BucketName',
  fileEventsQueue: 'FileEventsQueueUrl',
  fileEventsDlq: 'FileEventsDlqUrl',
  signalsQueue: 'SignalsQueueUrl',
  signalsDlq: 'SignalsDlqUrl',
  ledgerTable: 'LedgerTableName',
  scoresTable: 'ScoresTableName',
  kafkaFailuresBucket: 'KafkaFailuresBucketName',
  kafkaFailureNotices: 'KafkaFailureNoticesQueueUrl',
  kafkaConsumerFunction: 'KafkaConsumerFunctionName',
  scoresBucket: 'ScoresBucketName',
  anomaliesTable: 'AnomaliesTableName',
  scoresGlueTable: 'ScoresGlueTable',
  alarmTopic: 'AlarmTopicArn',
  // `pulse doctor`: the functions whose event source mappings, configuration and logs it reads.
  s3TriggerFunction: 'S3TriggerFunctionName',
  scorerFunction: 'ScorerFunctionName',
  dbPollerFunction: 'DbPollerFunctionName',
} as const;

/**
 * Environment variables of the functions. Resource names are set by the stack (next to the grant on the
 * resource) and by the offline runtime; the rest have defaults in `shared/settings.ts` that the config
 * loaders apply, and are set only to override them.
 */
export const ENV = {
  // Resources.
  signalsQueueUrl: 'SIGNALS_QUEUE_URL',
  fileEventsQueueUrl: 'FILE_EVENTS_QUEUE_URL',
  ledgerTable: 'LEDGER_TABLE',
  scoresTable: 'SCORES_TABLE',
  scoresBucket: 'SCORES_BUCKET',
  anomaliesTable: 'ANOMALIES_TABLE',
  quarantineBucket: 'QUARANTINE_BUCKET',
  /** The ledger sweep: the bucket its canary is written to. */
  ingestBucket: 'INGEST_BUCKET',
  /** The db-poller: the table holding its watermark (the ledger table). */
  watermarkTable: 'WATERMARK_TABLE',
  dbSecretArn: 'DB_SECRET_ARN',

  // Every function.
  /** Local emulators want path-style S3 URLs. */
  s3ForcePathStyle: 'S3_FORCE_PATH_STYLE',
  /** Tests only: record the function's AWS calls under this directory (shared/aws-call-log.ts). */
  awsCallLog: 'PULSE_AWS_CALL_LOG',
  powertoolsServiceName: 'POWERTOOLS_SERVICE_NAME',

  // s3-trigger (and the ledger sweep: maxAttempts and the sweep's thresholds).
  leaseSeconds: 'LEDGER_LEASE_SECONDS',
  heartbeatSeconds: 'LEDGER_HEARTBEAT_SECONDS',
  checkpointSeconds: 'LEDGER_CHECKPOINT_SECONDS',
  maxAttempts: 'LEDGER_MAX_ATTEMPTS',
  handOverBeforeTimeoutSeconds: 'HAND_OVER_BEFORE_TIMEOUT_SECONDS',
  fanOutMinBytes: 'FAN_OUT_MIN_BYTES',
  fanOutPartBytes: 'FAN_OUT_PART_BYTES',
  stagingMinBytes: 'STAGING_MIN_BYTES',
  stagingObjectBytes: 'STAGING_OBJECT_BYTES',
  sweepProcessingStuckSeconds: 'SWEEP_PROCESSING_STUCK_SECONDS',
  sweepSplitStuckSeconds: 'SWEEP_SPLIT_STUCK_SECONDS',
  sweepCanaryGraceSeconds: 'SWEEP_CANARY_GRACE_SECONDS',
  // The ledger sweep's verify half (settings.receipts).
  receiptsSettleSeconds: 'RECEIPTS_SETTLE_SECONDS',
  receiptsMaxFilesPerRun: 'RECEIPTS_MAX_FILES_PER_RUN',

  // s3-trigger: its routes (prefixes, include/exclude, mapping, CSV delimiter, after success), as JSON
  // (shared/routes.ts); unset: the default route.
  s3Routes: 'S3_ROUTES',

  // The producers.
  maxMessageBytes: 'SIGNALS_MAX_MESSAGE_BYTES',

  // scorer.
  zThreshold: 'Z_THRESHOLD',
  minSamples: 'MIN_SAMPLES',

  // db-poller.
  dbSsl: 'DB_SSL',
  dbTable: 'DB_TABLE',
  dbColumns: 'DB_COLUMNS',
  dbMode: 'DB_MODE',
  dbBatchSize: 'DB_BATCH_SIZE',
  maxQueueDepth: 'MAX_QUEUE_DEPTH',
  timeBudgetFraction: 'TIME_BUDGET_FRACTION',
  watermarkLookbackSeconds: 'DB_WATERMARK_LOOKBACK_SECONDS',
  watermarkSkewSeconds: 'DB_WATERMARK_SKEW_SECONDS',
  /** An extra filter on the polled rows (shared/sql-filter.ts says what is allowed). */
  dbWhere: 'DB_WHERE',
  /** mark mode: `boolean` (false / true) or `integer` (0 / 1). */
  dbProcessedType: 'DB_PROCESSED_TYPE',
  /** watermark mode: where reading starts while no watermark is stored. */
  dbInitialWatermark: 'DB_INITIAL_WATERMARK',
  /**
   * Several tables: each one's settings (table, mode, columns, where, processedType, initialWatermark) as a JSON
   * list; each invocation names its table (the schedule's input `{"table": …}`). Replaces DB_TABLE, DB_MODE,
   * DB_COLUMNS, DB_WHERE, DB_PROCESSED_TYPE and DB_INITIAL_WATERMARK, which describe one table.
   */
  dbTables: 'DB_TABLES',

  // kafka-consumer.
  kafkaValueFormat: 'KAFKA_VALUE_FORMAT',
  kafkaValueSchema: 'KAFKA_VALUE_SCHEMA',
  kafkaValueMessageType: 'KAFKA_VALUE_MESSAGE_TYPE',

  // kafka-consumer behind a schema registry (shared/kafka-registry.ts): JSON of kind, record format, validated parts.
  kafkaSchemaRegistry: 'KAFKA_SCHEMA_REGISTRY',
  /** Per topic, which value field is each signal field (JSON: `{ "<topic>": { "name": "metric", … } }`). */
  kafkaMappings: 'KAFKA_MAPPINGS',
} as const;

/**
 * Variables the platform reads, not the functions' code: set by the stack on every function (Powertools,
 * Node.js) or by Lambda itself, and by the offline runtime to reach the emulators.
 */
export const PLATFORM_ENV = {
  nodeOptions: 'NODE_OPTIONS',
  nodeExtraCaCerts: 'NODE_EXTRA_CA_CERTS',
  powertoolsMetricsNamespace: 'POWERTOOLS_METRICS_NAMESPACE',
  powertoolsLogLevel: 'POWERTOOLS_LOG_LEVEL',
  logLevel: 'LOG_LEVEL',
  /** Lambda sets it: the function's memory, which decides its CPUs (shared/config.ts). */
  lambdaMemory: 'AWS_LAMBDA_FUNCTION_MEMORY_SIZE',
  awsEndpointUrl: 'AWS_ENDPOINT_URL',
  awsRegion: 'AWS_REGION',
  awsAccessKeyId: 'AWS_ACCESS_KEY_ID',
  awsSecretAccessKey: 'AWS_SECRET_ACCESS_KEY',
} as const;

/**
 * Metric names (namespace `settings.metricsNamespace`): the functions emit them (Powertools Metrics, EMF),
 * the stack's dashboard and alarms and the offline dashboard read them.
 */
export const METRIC = {
  filesClaimed: 'FilesClaimed',
  filesSucceeded: 'FilesSucceeded',
  filesFailed: 'FilesFailed',
  filesSkipped: 'FilesSkipped',
  /** Long files checkpointed and handed over to a fresh invocation before a timeout. */
  filesContinued: 'FilesContinued',
  /** Large files split into parts (fan-out), and the parts announced. */
  filesSplit: 'FilesSplit',
  partsAnnounced: 'PartsAnnounced',
  recordsIngested: 'RecordsIngested',
  recordsRejected: 'RecordsRejected',
  bytesRead: 'BytesRead',
  fileLatency: 'FileLatency',
  signalsScored: 'SignalsScored',
  signalsDuplicate: 'SignalsDuplicate',
  signalsRejected: 'SignalsRejected',
  anomalies: 'Anomalies',
  scoringLatency: 'ScoringLatency',
  seriesConflicts: 'SeriesConflicts',
  /** A record's own id already scored from another origin: the record is quarantined (docs/scoring.md). */
  idCollisions: 'IdCollisions',
  /** Pending score objects a scorer promoted for a transaction whose own scorer died after its commit. */
  scoresRecovered: 'ScoresRecovered',
  /** Messages given back (partial batch response) because the invocation ran short of time. */
  scorerDeadlineStops: 'ScorerDeadlineStops',
  rowsPolled: 'RowsPolled',
  rowsSent: 'RowsSent',
  rowsRejected: 'RowsRejected',
  /** Milliseconds from the oldest row's event time to the poll that read it (per round, the maximum). */
  pollerLag: 'PollerLag',
  pollerBackpressureStops: 'PollerBackpressureStops',
  pollerTimeBudgetStops: 'PollerTimeBudgetStops',
  watermarkConflicts: 'WatermarkConflicts',
  /** watermark mode, every poll: rows whose watermark column is NULL (never read; quarantined). */
  watermarkNullRows: 'WatermarkNullRows',
  /**
   * watermark mode on a timestamp/date column, every poll: rows dated past the database's now() plus the
   * skew (`'infinity'` too) or `'-infinity'` (not read, the watermark not moved; quarantined).
   */
  watermarkOutOfRangeRows: 'WatermarkOutOfRangeRows',
  /**
   * watermark mode on a timestamp/date column, every poll: rows of the last moments by the database's clock
   * that sit more than the lookback behind the watermark, so no read returns them (a stalled watermark).
   */
  watermarkStalledRows: 'WatermarkStalledRows',
  /** watermark mode: rows read again by the lookback (not counted in RowsPolled / RowsSent). */
  rowsReread: 'RowsReread',
  /** The ledger sweep, each run: ledger items nothing will carry on, in all and by kind. */
  filesStuck: 'FilesStuck',
  filesStuckProcessing: 'FilesStuckProcessing',
  filesStuckSplit: 'FilesStuckSplit',
  filesStuckDiscovered: 'FilesStuckDiscovered',
  filesStuckExhausted: 'FilesStuckExhausted',
  /** The ledger sweep, each run: 1 when the canary due by now never reached the ledger, else 0. */
  canaryMissed: 'CanaryMissed',
  /** The ledger sweep, each run: files whose receipts it counted and stored, and of those the ones that do not balance. */
  filesVerified: 'FilesVerified',
  receiptMismatches: 'ReceiptMismatches',
  kafkaRecordsDecoded: 'KafkaRecordsDecoded',
  kafkaRecordsQuarantined: 'KafkaRecordsQuarantined',
} as const;

/**
 * The db-poller's per-table metrics: each is emitted twice, as it always was (dimension `service` alone: the
 * poller's alarms and totals) and again with the dimension {@link METRIC_DIMENSION}.table (the table polled),
 * which the dashboard graphs one line per table.
 */
export const METRIC_DIMENSION = { table: 'table' } as const;
export const DB_POLLER_TABLE_METRICS = [
  METRIC.pollerLag,
  METRIC.rowsPolled,
  METRIC.rowsSent,
  METRIC.rowsRejected,
  METRIC.watermarkNullRows,
  METRIC.watermarkOutOfRangeRows,
  METRIC.watermarkStalledRows,
] as const;
