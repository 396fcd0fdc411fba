/**
 * The one settings module read by the CDK stack (`infra/`) and the offline runtime (`local/`), so the
 * two cannot drift. Plain constants: no environment, no I/O. Functions receive what they need of it
 * through environment variables set by the stack (see `shared/config.ts`).
 *
 * Settings and configuration, the rule:
 * - `shared/settings.ts` holds the defaults: plain constants the stack, the offline runtime and the
 *   functions all read.
 * - `shared/config.ts` resolves, once at cold start, every value a deployment can change (an environment
 *   variable, `shared/contract.ts` ENV), applying its default from settings there and nowhere else.
 * - Logic receives resolved values (a config object, options) and never falls back to a setting itself
 *   (no `x ?? settings.y`); a constant no deployment changes (a limit, a prefix) is read from settings
 *   where it is used. An options object with defaults is merged once, `{ ...DEFAULTS, ...options }`
 *   (middy's way), where the defaults are named.
 */

const KiB = 1024;
const MiB = 1024 * KiB;

/**
 * File suffixes s3-trigger reads, each also gzip- or zstd-compressed (`.csv.gz`, `.csv.zst`, ...), in any
 * letter case. The bucket
 * notifies on every object under the incoming prefix, whatever its name: an object of another type is
 * recorded in the ledger as SKIPPED with the reason, rather than never being seen.
 */
export const FILE_SUFFIXES = ['.csv', '.json', '.ndjson', '.jsonl', '.parquet'] as const;

export const settings = {
  /** Prefix of every resource name the offline runtime creates, and of the CloudFormation stack. */
  appName: 'pulse',
  stackName: 'PulseIngest',
  /** Namespace of every Powertools metric. */
  metricsNamespace: 'PulseIngest',

  bucket: {
    /** Objects under this prefix are ingested. */
    incomingPrefix: 'incoming/',
    /** Rejected records are written here as NDJSON, one reason per line. */
    rejectsPrefix: 'rejects/',
    /**
     * Inflated copies of large gzip files (`staging` below) are written here, never under the incoming
     * prefix: the bucket notifies only under that one, so a staged object never triggers ingestion.
     */
    stagingPrefix: 'staging/',
    /**
     * Days the data of a deleted rejects object (a stale segment an earlier attempt left) is kept as a
     * noncurrent version of the versioned bucket before S3 removes it.
     */
    rejectsNoncurrentDays: 7,
    /** What s3-trigger reads (named in the reason an object of another type is skipped with). */
    suffixes: [
      ...FILE_SUFFIXES,
      ...FILE_SUFFIXES.map((s) => `${s}.gz`),
      ...FILE_SUFFIXES.map((s) => `${s}.zst`),
    ],
    /** Parts of a multipart upload never completed are removed after this many days. */
    abortIncompleteMultipartUploadDays: 7,
    /** The bucket's server access logs (in their own bucket) are kept this many days. */
    accessLogsRetentionDays: 90,
    /**
     * The notification canary (see `sweep`): a tiny object the ledger sweep writes here on each run, under
     * the incoming prefix so that the bucket's notification carries it to s3-trigger, which records it in the
     * ledger and ingests nothing. One key, so its older versions are all that piles up: they expire after
     * `canaryNoncurrentDays`.
     */
    canaryKey: 'incoming/.pulse-canary',
    canaryNoncurrentDays: 1,
  },

  /**
   * The S3 routes (`shared/routes.ts`, `PulseIngest`'s `s3.routes`): which keys are ingested, with which
   * field mapping and CSV delimiter, and what is done with a file once it succeeded.
   */
  routes: {
    /** Without `s3.routes`: one route, the incoming prefix, as the stack read before routes existed. */
    defaultPrefix: 'incoming/',
    /** The CSV delimiters a route may name (`csv.delimiter`); a comma when none. */
    csvDelimiters: [',', ';', '\t', '|'],
    /** Objects archived after success under the ingest bucket expire after this many days. */
    archiveExpireDays: 365,
    /** Rejects objects (the quarantine under `rejects/`) expire after this many days. */
    rejectsExpireDays: 90,
    /** Noncurrent versions of ingested objects (a delete or an overwrite) expire after this many days. */
    noncurrentExpireDays: 30,
    /** The tag set on an object after success with `afterSuccess: 'tag'`. */
    tagKey: 'pulse-ingested',
    /**
     * Bytes of the `S3_ROUTES` variable: Lambda allows 4 KB of environment per function (names and
     * values), and the s3-trigger's other variables take under 1 KB.
     */
    maxEnvBytes: 2.5 * 1024,
  },

  /** S3 ObjectCreated notifications, consumed by s3-trigger. */
  fileEvents: {
    /**
     * One file (or part of a split file) per invocation: the parts of a split file run side by side in
     * invocations of their own instead of one after another in a batch.
     */
    batchSize: 1,
    maxBatchingWindowSeconds: 0,
    /**
     * s3-trigger invocations the queue's event source runs at once (its maximum concurrency, 2..1000):
     * files and the parts of split files beyond it wait on the queue, not in throttled invocations, so
     * a burst of uploads or a file split into hundreds of parts cannot take the account's concurrency or
     * flood the signals queue and the scorer.
     */
    maxConcurrency: 50,
    /** Deliveries before a message that could not be handled at all moves to the DLQ (3..10). */
    maxReceiveCount: 5,
    retentionDays: 14,
  },

  /** Packed signals, consumed by the scorer. */
  signals: {
    /**
     * Byte budget of one packed message, before deflating (see deflateLevel). SQS allows 1 MiB;
     * SendMessageBatch 1 MiB in all. 256 KiB keeps at least four messages per batch call and
     * batchSize × size (2.5 MiB) well under the 6 MB invocation payload, deflated or not.
     */
    maxMessageBytes: 256 * KiB,
    /** The queue's MaximumMessageSize, set explicitly (the default would be 256 KiB too). */
    queueMaximumMessageBytes: 256 * KiB,
    /**
     * Signals in one packed message at most, whatever their size: a scorer invocation scores at most
     * batchSize × this (20,000), so its duration does not grow as signals get smaller on the wire.
     */
    maxSignalsPerMessage: 2000,
    /**
     * zlib level at which a packed message is deflated (a version 4 message: see SignalMessageSchema);
     * 0 sends messages as plain JSON. The benchmark's 2,000-signal messages shrink from about 177 KB to
     * 42 KB at level 1, for about 1 ms of CPU each: SQS bills 64 KiB units, so one billed unit instead of
     * three, and SendMessageBatch carries ten messages instead of five. A message deflation does not
     * shrink is sent plain.
     */
    deflateLevel: 1 as number,
    batchSize: 10,
    maxBatchingWindowSeconds: 1,
    /**
     * Scorer invocations the queue's event source runs at once (its maximum concurrency, 2..1000). Batches
     * of the same series conflict on its state and retry; more than this waits on the queue rather than in
     * conflicts (docs/scale.md says when to raise it).
     */
    maxConcurrency: 10,
    maxReceiveCount: 5,
    retentionDays: 14,
    /** SendMessageBatch limits. */
    maxEntriesPerBatch: 10,
    maxBatchBytes: 1 * MiB,
    /**
     * SendMessageBatch calls a sender keeps in flight: the next batch is packed while SQS answers the
     * others, so its latency is hidden. Each holds up to maxBatchBytes (a few MB of memory in all).
     */
    maxInFlightBatches: 2,
    /** Attempts for entries that keep failing inside one send, with exponential backoff. */
    sendAttempts: 6,
    sendBaseDelayMs: 50,
  },

  /** Dead-letter queues keep messages for the longest time SQS allows. */
  dlqRetentionDays: 14,
  /** Queue visibility timeout = this × the consuming function's timeout (AWS recommends ≥ 6). */
  visibilityTimeoutFactor: 6,

  lambda: {
    /** Lambda gives CPU in proportion to memory: one whole vCPU per this many MB. */
    mbPerVcpu: 1769,
  },

  functions: {
    /**
     * s3-trigger is CPU-bound (parsing and packing), and Lambda gives CPU in proportion to memory, one
     * whole vCPU per 1,769 MB. With two (3,538 MB) a CSV file is parsed on one while its records are
     * validated, packed and sent on the other (`parseThread`); with less, a file takes longer in
     * proportion, and the GB-seconds per file (the cost) stay about the same. Its memory use is flat (about
     * 260 MB with the parse thread), with the heap allowed to grow by `heapGrowingPercent` between full collections
     * (shared/heap.ts).
     */
    s3Trigger: {
      timeoutSeconds: 300,
      memoryMb: 3538,
      reservedConcurrency: undefined as number | undefined,
      heapGrowingPercent: 100,
      /**
       * CSV parsing on a thread of its own (`parsers/csv-thread.ts`), so that the parser and the work on
       * its records use two CPUs: `auto` for objects of at least `parseThreadMinBytes` when the function
       * has two vCPUs' worth of memory (2 × `lambda.mbPerVcpu`) or, off Lambda, two CPUs.
       */
      parseThread: 'auto' as 'auto' | 'on' | 'off',
      parseThreadMinBytes: 1 * MiB,
    },
    /**
     * One whole vCPU (1,769 MB): scoring a batch of 20,000 signals and compressing their scores is CPU work
     * done between reading the series states and committing them, and a shorter window means fewer
     * conflicts on a hot series. Waiting on DynamoDB and S3 costs a few GB-ms a batch more than at 512 MB.
     */
    scorer: { timeoutSeconds: 60, memoryMb: 1769 },
    dbPoller: { timeoutSeconds: 120, memoryMb: 512 },
    kafkaConsumer: { timeoutSeconds: 120, memoryMb: 512 },
    /**
     * The ledger sweep (a second entry of s3-trigger): a few bounded queries and one small object, then the
     * receipts of the files that ended since its last run (`receipts`: at most maxFilesPerRun, reading their
     * score and rejects objects), which need the longer timeout and the memory to read a score object whole.
     */
    ledgerSweep: { timeoutSeconds: 300, memoryMb: 512 },
  },
  logRetentionDays: 30,

  ledger: {
    /** Claims of one object version before it stays FAILED for good. Below fileEvents.maxReceiveCount. */
    maxAttempts: 3,
    /** A worker's lease on a file; renewed by a heartbeat while it works. */
    leaseSeconds: 120,
    heartbeatSeconds: 20,
    /**
     * A long file's progress is checkpointed (with the heartbeat that falls due after this many seconds):
     * a retried attempt resumes there instead of starting over. Each checkpoint first flushes the signals
     * buffered and completes the rejects object being written.
     */
    checkpointSeconds: 60,
    /**
     * An invocation with less time than this left checkpoints, hands the file over (its lease expires at
     * once and the attempt is not counted, since it made progress) and sends a continuation message to
     * the file-events queue: a file of any length goes on in fresh invocations instead of timing out.
     */
    handOverBeforeTimeoutSeconds: 45,
    /**
     * A hand-over gives its attempt back only when the invocation made progress: at least this share of
     * the records it parsed was new. A record checkpoint (JSON, a gzip file read whole) is resumed by
     * parsing the records before it again: an invocation that mostly redid that counts as an attempt, so a
     * file too long to get back to its checkpoint within one invocation ends FAILED (`NoProgressError`)
     * instead of being handed over forever. (Staging, which resumes by inflating again the bytes before its
     * last staged object, progresses when it stages one more object.)
     */
    handOverMinFreshShare: 0.1,
    /** How many rejected-record reasons the ledger item keeps (all of them go to the quarantine). */
    firstErrorsKept: 10,
    /** The ledger's index on status (partition) and updatedAt (sort). */
    statusIndex: 'byStatus',
  },

  /**
   * The ledger sweep (functions/s3-trigger/sweep.ts), a second entry of s3-trigger on an EventBridge
   * Scheduler schedule: it counts work nothing will carry on (FilesStuck) from the ledger's status index, and
   * checks that the previous notification canary reached the ledger (CanaryMissed).
   */
  sweep: {
    scheduleRateMinutes: 5,
    /**
     * A PROCESSING item (file or part) not written for this long, and whose lease is not live, is stuck. Its
     * worker heartbeats every `ledger.heartbeatSeconds`; after a crash its event comes back within the
     * file-events visibility timeout (6 × 300 s), and a claim then takes it over: 35 minutes is beyond both
     * (a test holds this against the settings).
     */
    processingStuckSeconds: 35 * 60,
    /** A SPLIT file (its parts not all ended) or a DISCOVERED item (a part never claimed) older than this is stuck. */
    splitStuckSeconds: 60 * 60,
    /**
     * FAILED items updated within this window are checked for an exhausted retryable failure (attempts used
     * up, so no delivery claims it again, yet not failed for good). Bounds the read: older FAILED items
     * have alarmed for a day already.
     */
    exhaustedLookbackHours: 24,
    /** Items read from the index per status and run, in pages of `pageSize`: the read stays bounded. */
    maxItemsPerStatus: 2000,
    pageSize: 200,
    /** Stuck items named in the sweep's log line, at most. */
    samplesLogged: 10,
    /**
     * The canary written this long ago or more must have reached the ledger, or CanaryMissed: as long as
     * the file-events queue's age alarm waits (a backlog delays the canary as much as any file).
     */
    canaryGraceSeconds: 15 * 60,
    /** Canary send times the ledger keeps (enough to cover canaryGraceSeconds at the schedule's rate). */
    canaryHistory: 12,
  },

  /**
   * The verify half of the ledger sweep (functions/s3-trigger/verify-sweep.ts): on each of the sweep's runs,
   * the receipts (shared/receipts.ts) of the files that reached SUCCESS since its last run, stored on their
   * ledger items, and ReceiptMismatches / FilesVerified.
   */
  receipts: {
    /**
     * A file is verified once it has been SUCCESS this long: its last signals may still be on the signals
     * queue when the file ends, and a receipt counted before they are scored would not balance. Above the
     * scorer's usual lag; a backlog longer than this is the signals queue's age alarm first.
     */
    settleSeconds: 10 * 60,
    /** Files verified per run at most (the sweep's timeout bounds the work): the rest wait for the next run. */
    maxFilesPerRun: 50,
    /** Files counted together (one listing of the scorer's rejects); the cursor moves after each batch. */
    filesPerBatch: 10,
    /** A run stops starting batches with less time than this left (the cursor keeps its place). */
    stopBeforeTimeoutSeconds: 60,
    /** With no cursor yet (the first run), files that reached SUCCESS this far back are verified. */
    firstLookbackHours: 24,
    /** The ledger item that keeps the sweep's place (the last file verified): not a file. */
    cursorKey: { pk: 'sweep#verify', sk: 'cursor' },
  },

  /**
   * Fan-out: an uncompressed CSV, NDJSON or Parquet object of at least `minBytes` is split into parts of
   * about `partBytes` (CSV/NDJSON at record boundaries, Parquet at row groups), each a message on the
   * file-events queue ingested by an invocation of its own; at most `maxParts` (larger files get larger
   * parts). `FAN_OUT_MIN_BYTES` / `FAN_OUT_PART_BYTES` override the first two.
   */
  fanOut: {
    minBytes: 128 * MiB,
    partBytes: 64 * MiB,
    maxParts: 200,
  },

  /**
   * Staging: a gzip-compressed CSV or NDJSON object of at least `minBytes` (compressed) is inflated once into
   * staged objects of `objectBytes` each under `bucket.stagingPrefix`; the file is then read from them as an
   * uncompressed file (byte checkpoints, and fan-out when it is large enough) instead of being inflated from
   * its start by every continuation. `STAGING_MIN_BYTES` / `STAGING_OBJECT_BYTES` override the two. See
   * docs/fan-out.md.
   */
  staging: {
    minBytes: 32 * MiB,
    objectBytes: 16 * MiB,
    /**
     * Staged objects are deleted when their file ends; the bucket's lifecycle rule removes any left behind
     * (a file that never ended) after this many days: past the longest a file-events message lives
     * (retention and DLQ retention both count from its first enqueue), so no part can still need them.
     */
    expireDays: 15,
    /** The bucket is versioned: a deleted staged object's data (now noncurrent) goes after this many days. */
    noncurrentExpireDays: 1,
  },

  limits: {
    /** A record larger than this (bytes of its text, or of its JSON) is rejected. */
    maxRecordBytes: 1 * MiB,
    /** A normalised signal larger than this (JSON bytes) is rejected: it must fit a packed message. */
    maxSignalBytes: 64 * KiB,
    /** Decompressed bytes allowed per compressed byte, and at least this many in all. */
    maxInflationRatio: 200,
    minInflatedBytesAllowed: 64 * MiB,
    /**
     * Parquet row groups are decoded in a worker thread held to a deadline and a heap: a corrupt file the
     * decoder would loop on, or a tiny one claiming billions of rows, fails with a clear error instead of
     * hanging the function or running it out of memory.
     */
    parquetDecoder: { baseSeconds: 30, perMiBSeconds: 2, heapMb: 384 },
  },

  scoring: {
    /** |z| at or above this is an anomaly. */
    zThreshold: 3,
    /** Samples a series needs before anomalies are flagged. */
    minSamples: 10,
    /**
     * Positions per block item (`applied#<stream>#<block>`): a bitmap of this many bits (512 bytes), so a
     * file's rows, a Kafka partition's offsets or a table's ids cost one small item per 4,096 signals
     * instead of one per signal (docs/scoring.md).
     */
    blockPositions: 4096,
    /**
     * Tokens (of the transactions that applied positions in it) a block item keeps, 10 bytes each: with the
     * bitmap this keeps a block under 1 KB (one write unit). Older tokens are settled (their pending score
     * object promoted if a scorer died before it could) and dropped when a transaction would add one more.
     */
    maxBlockTokens: 36,
    /** Shards of the running totals (`totals#<n>`) that `pulse status` reads instead of scanning. */
    totalsShards: 16,
    /** Shards of the anomalies table's index of recent anomalies, per day (spreads its writes). */
    recentAnomalyShards: 8,
    /**
     * A transaction that conflicts is retried with jittered exponential backoff, from this many ms up to
     * `conflictMaxDelayMs`, as long as the invocation has more than `deadlineMarginSeconds` left; the
     * conflict count starts again after every commit.
     */
    conflictBaseDelayMs: 20,
    conflictMaxDelayMs: 2000,
    /**
     * Time the scorer keeps in hand before its function's timeout: no transaction is started with less
     * left, and the messages not yet committed are reported failed (the partial batch response) instead
     * of timing out the whole batch.
     */
    deadlineMarginSeconds: 10,
    /**
     * Score items of the first design (one per signal) expire on this attribute (DynamoDB TTL, epoch
     * seconds). The current scorer writes none; the table keeps TTL on so that the old items age out.
     */
    ttlAttribute: 'expiresAt',
  },

  /** Scores in bulk: one NDJSON.gz object per committed transaction, in a bucket of their own. */
  scores: {
    /** Final score objects, `scores/dt=<yyyy-mm-dd>/<token>.ndjson.gz` (the Glue table's location). */
    prefix: 'scores/',
    /** Written before a transaction commits, promoted to `prefix` after (docs/scoring.md). */
    pendingPrefix: 'scores-pending/',
    /** The Glue table over `prefix` (Athena, partition projection on `dt`), in the stack's database. */
    glueTable: 'scores',
    /** The anomalies table's index of recent anomalies: partition `day` (`<date>#<shard>`), sort `scoredAt`. */
    recentAnomaliesIndex: 'recent',
  },

  /** Alarm thresholds (CloudWatch, and the offline dashboard later). */
  monitoring: {
    /** A queue's oldest message older than this is an alarm (file-events, signals). */
    maxMessageAgeSeconds: { fileEvents: 900, signals: 300 },
    /** Function errors / throttles in one 5-minute period above this are an alarm. */
    maxErrors: 0,
    maxThrottles: 0,
    /** Files ending FAILED in one 5-minute period above this are an alarm. */
    maxFilesFailed: 0,
    /** The poller is silent when it has not run successfully within this many schedule periods. */
    pollerSilentPeriods: 3,
    /** Kafka offset lag (records) above this is an alarm. */
    maxKafkaOffsetLag: 10_000,
    /** Stuck ledger items (all kinds) above this are an alarm. */
    maxFilesStuck: 0,
    /**
     * The sweep's alarms read this many schedule periods at once: a run a little late must not leave a
     * period without data (missing data is breaching: a sweep that stopped running is an alarm).
     */
    sweepAlarmPeriods: 2,
  },

  dbPoller: {
    scheduleRateMinutes: 1,
    /** Rows claimed (mark) or read (watermark) per round trip. */
    batchSize: 500,
    mode: 'mark' as 'mark' | 'watermark',
    /** The seeds' table and its columns; both are configuration (DB_TABLE, DB_COLUMNS). */
    table: 'signals',
    /**
     * Watermark mode keeps its position in the ledger table, partition key `<prefix><table>`; the poller's
     * role may read and write only items whose partition key starts with it.
     */
    watermarkKeyPrefix: 'watermark#',
    columns: {
      id: 'id',
      name: 'name',
      value: 'value',
      source: 'source',
      timestamp: 'timestamp',
      processed: 'processed',
      /** The column watermark mode orders by (with id as the tie-breaker). */
      updatedAt: 'timestamp',
    },
    /** mark mode: the processed flag is `boolean` (false, then true) or `integer` (0, then 1). */
    processedType: 'boolean' as 'boolean' | 'integer',
    /** Stop early when the signals queue holds more visible messages than this (backpressure). */
    maxQueueDepth: 10_000,
    /** Share of the invocation's remaining time the poller may spend before it stops and returns. */
    timeBudgetFraction: 0.8,
    /**
     * watermark mode: each poll first reads again the rows this many seconds behind the watermark, so a
     * row committed after a poll read past its position is still sent (the scorer drops the repeats). 0
     * turns it off (DB_WATERMARK_LOOKBACK_SECONDS). See docs/db-poller.md.
     */
    watermarkLookbackSeconds: 60,
    /**
     * watermark mode, on a timestamp or date column: no poll reads a row whose watermark column lies past
     * the database's `now()` plus this many seconds (a clock ahead, a typo, `'infinity'`), so the watermark
     * never moves past it either; such rows are quarantined until the database's clock reaches them
     * (DB_WATERMARK_SKEW_SECONDS). Must be below the lookback: a row this far ahead moves the watermark
     * this far past the present, and rows written after it must still fall within the lookback. See
     * docs/db-poller.md.
     */
    watermarkSkewSeconds: 10,
  },

  kafka: {
    topic: 'pulse_signals',
    batchSize: 500,
    maxBatchingWindowSeconds: 1,
    startingPosition: 'TRIM_HORIZON' as const,
    /**
     * How the event source mapping's pollers scale (`-c kafkaPollerMode=provisioned|on-demand`). Lambda
     * lets a Kafka mapping bound its retries and split failing batches only in provisioned mode
     * (docs: "Configuring error handling controls for Kafka event sources"); in on-demand mode a batch
     * whose invocation fails is retried whole until it succeeds or its records leave the topic, which
     * stalls its partition. Provisioned is the default: a failing batch reaches the on-failure bucket,
     * records and all, after its retries, and nothing waits on the topic's retention to be lost. It costs
     * event poller units (EPU-hours) for `provisionedPollers.minimum` pollers at least.
     */
    pollerMode: 'provisioned' as KafkaPollerMode,
    /** Provisioned mode (`-c kafkaMinPollers=… -c kafkaMaxPollers=…`): 1..200 and 1..2000; Lambda caps the maximum at the topic's partitions. */
    provisionedPollers: { minimum: 1, maximum: 3 },
    /** Provisioned mode only: retries after the first attempt (0..10000; Lambda's default is -1, forever). */
    maximumRetryAttempts: 2 as number,
    /** Provisioned mode only: a failing batch of more than one record is split in two, each half retried on its own. */
    bisectBatchOnFunctionError: true as boolean,
    /**
     * The on-failure destination, an S3 bucket of its own: Lambda writes each discarded batch there as
     * one JSON object (the invocation record with the whole event as `payload`); `pulse kafka replay`
     * feeds them back. Objects expire after `retentionDays` (longer than a topic's usual 7 days, so a
     * failure is not lost sooner than the topic would have lost it), older versions after
     * `noncurrentRetentionDays`.
     */
    failures: {
      retentionDays: 35,
      noncurrentRetentionDays: 7,
      /** The ledger item recording a replay of one failure object: `<prefix><object key>`. */
      replayKeyPrefix: 'kafka-failure#',
    },
  },

  /** `pulse doctor` (local/commands/doctor*.ts). */
  doctor: {
    /**
     * How long the canary may take to reach the ledger (`--timeout`). S3 delivers most notifications in
     * seconds, some after a minute or more; the ledger sweep's own alarm waits `sweep.canaryGraceSeconds`.
     */
    canaryTimeoutSeconds: 60,
    /** Between two reads of the canary's ledger item. */
    canaryPollMs: 1000,
    /** How far back the db-poller's log group is read for its last run and last error. */
    pollerLogLookbackMinutes: 60,
  },

  /**
   * The ledger's running counts (shared/ledger-counters.ts, docs/counters.md): files per status and their
   * records, rejects and bytes, in counter items of the ledger table that `pulse status` and the dashboard
   * read instead of the ledger.
   */
  ledgerCounters: {
    /** Counter items the additions are spread over: concurrent transactions on one item conflict. */
    shards: 8,
    /** Settles tried (a read and a transaction each) after a transition before leaving it to the next one. */
    tries: 5,
  },
} as const;

/** The Kafka event source mapping's poller scaling mode (see `settings.kafka.pollerMode`). */
export type KafkaPollerMode = 'provisioned' | 'on-demand';

/** What the Kafka event source mapping does with a batch whose invocation fails, in one poller mode. */
export interface KafkaRetryPolicy {
  readonly mode: KafkaPollerMode;
  /** Retries after the first attempt; -1 retries until the records leave the topic. */
  readonly maximumRetryAttempts: number;
  readonly bisectBatchOnFunctionError: boolean;
}

/**
 * The retry policy a Kafka mapping has in `mode`, for the stack (what it may set) and the offline event
 * source (what it emulates). Provisioned mode: the settings, except that Lambda applies at most 10
 * retries when retries are infinite and an on-failure destination is set. On-demand mode: the error
 * handling controls are not available, so a failing batch is retried whole, forever, never split.
 */
export function kafkaRetryPolicy(
  mode: KafkaPollerMode,
  kafka: Pick<Settings['kafka'], 'maximumRetryAttempts' | 'bisectBatchOnFunctionError'> = settings.kafka,
): KafkaRetryPolicy {
  if (mode === 'on-demand') return { mode, maximumRetryAttempts: -1, bisectBatchOnFunctionError: false };
  return {
    mode,
    maximumRetryAttempts: kafka.maximumRetryAttempts === -1 ? 10 : kafka.maximumRetryAttempts,
    bisectBatchOnFunctionError: kafka.bisectBatchOnFunctionError,
  };
}

/**
 * The consumer group of the mapping that reads `topic`, for the stack and the offline event source alike.
 * Lambda takes one topic per Kafka event source mapping and wants each mapping's ConsumerGroupId unique
 * among all Kafka event sources: with one topic the group is `consumerGroupId` itself; with several, each
 * mapping's is `<consumerGroupId>.<topic>`. Undefined when none is configured (Lambda: the mapping's UUID).
 */
export function kafkaMappingGroupId(
  consumerGroupId: string | undefined,
  topic: string,
  topics: readonly string[],
): string | undefined {
  if (consumerGroupId === undefined) return undefined;
  return topics.length > 1 ? `${consumerGroupId}.${topic}` : consumerGroupId;
}

export type Settings = typeof settings;

/**
 * Days after which a pending score object is removed (the scores bucket's lifecycle rule): longer than any
 * message that could still recover it can live. A signals message lives at most its queue's retention, and
 * in the DLQ at most the DLQ's retention from its original enqueue time (standard queues keep it); a
 * redrive is a new message, so its pending objects were promoted by the delivery that found them, or are
 * found again by it. One day on top for clocks and the redrive itself. A deployment's own retentions may be
 * given (infra/props.ts); the settings' by default.
 */
export function pendingScoresExpirationDays(
  retention: { readonly signalsDays: number; readonly dlqDays: number } = {
    signalsDays: settings.signals.retentionDays,
    dlqDays: settings.dlqRetentionDays,
  },
): number {
  return Math.max(retention.signalsDays, retention.dlqDays) + retention.signalsDays + 1;
}

/** The visibility timeout of a queue consumed by a function with this timeout. */
export function visibilityTimeoutFor(functionTimeoutSeconds: number): number {
  return functionTimeoutSeconds * settings.visibilityTimeoutFactor;
}

/**
 * The EventBridge pattern of the events that put a notice on the Kafka failure notices queue: S3's "Object
 * Created" events of the failures bucket. The bucket sends its events to EventBridge rather than straight
 * to the queue because EventBridge sends no test event when the configuration is written (an S3 → SQS
 * notification does), so the queue's first message, and so its alarm, is always a real failure. The stack's
 * rule and the offline run's rule are both built from this.
 */
export function kafkaFailureNoticePattern(bucketName: string): {
  readonly source: string[];
  readonly 'detail-type': string[];
  readonly detail: { readonly bucket: { readonly name: string[] } };
} {
  return {
    source: ['aws.s3'],
    'detail-type': ['Object Created'],
    detail: { bucket: { name: [bucketName] } },
  };
}
