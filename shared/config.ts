import { availableParallelism } from 'node:os';
import * as z from 'zod';
import { ENV, PLATFORM_ENV } from './contract.ts';
import { ConfigError } from './errors.ts';
import { type FieldMapping, FieldMappingSchema } from './field-mapping.ts';
import { type SchemaRegistryEnv, SchemaRegistryEnvSchema } from './kafka-registry.ts';
import { checkRoutes, DEFAULT_ROUTES, type ResolvedRoute, resolveRoutes } from './routes.ts';
import { settings } from './settings.ts';
import { checkSqlFilter } from './sql-filter.ts';

/**
 * The one place that reads `process.env`. Each function loads its configuration once, at cold start,
 * and gets a typed object or a {@link ConfigError} naming the variable that is missing or wrong. Every
 * default is applied here (see the rule in `shared/settings.ts`): the logic receives resolved values.
 */

type Env = Record<string, string | undefined>;

const required = (name: string) =>
  z
    .string({ error: (iss) => (iss.input === undefined ? `${name} is not set` : `${name} must be a string`) })
    .trim()
    .min(1, `${name} is not set`);

const positiveInt = (name: string, fallback: number) =>
  z.coerce
    .number({ error: `${name} must be a number` })
    .int(`${name} must be a whole number`)
    .positive(`${name} must be positive`)
    .default(fallback);

const positiveNumber = (name: string, fallback: number) =>
  z.coerce
    .number({ error: `${name} must be a number` })
    .positive(`${name} must be positive`)
    .default(fallback);

const bool = z
  .enum(['true', 'false', '1', '0', ''])
  .optional()
  .transform((v) => v === 'true' || v === '1');

const common = {
  /** Local emulators want path-style S3 URLs (`http://127.0.0.1:port/bucket/key`). */
  S3_FORCE_PATH_STYLE: bool,
  [ENV.powertoolsServiceName]: z.string().optional(),
  /** Tests only: a directory to record the function's AWS calls in (shared/aws-call-log.ts). */
  [ENV.awsCallLog]: z
    .string()
    .regex(/^\//, 'PULSE_AWS_CALL_LOG must be an absolute directory path')
    .optional(),
};

/** The {@link ClientConfig} part of a parsed configuration. */
const clientConfig = (c: { S3_FORCE_PATH_STYLE: boolean; PULSE_AWS_CALL_LOG?: string | undefined }) => ({
  s3ForcePathStyle: c.S3_FORCE_PATH_STYLE,
  ...(c.PULSE_AWS_CALL_LOG ? { awsCallLog: c.PULSE_AWS_CALL_LOG } : {}),
});

/** The memory Lambda gives the running function, in MB (its runtime sets it); undefined off Lambda. */
function lambdaMemoryMb(env: Env): number | undefined {
  const mb = Number(env[PLATFORM_ENV.lambdaMemory]);
  return mb > 0 ? mb : undefined;
}

/** The CPUs the function has: on Lambda one per `settings.lambda.mbPerVcpu` of memory, else the machine's. */
function cpusOf(env: Env): number {
  const mb = lambdaMemoryMb(env);
  return mb !== undefined ? Math.floor(mb / settings.lambda.mbPerVcpu) : availableParallelism();
}

function parse<T extends z.ZodRawShape>(shape: T, env: Env): z.infer<z.ZodObject<T>> {
  const result = z.object(shape).safeParse(env);
  if (!result.success) {
    const first = result.error.issues[0];
    const message = first?.message ?? 'invalid configuration';
    const name = first?.path[0];
    throw new ConfigError(
      typeof name === 'string' && !message.includes(name) ? `${name}: ${message}` : message,
    );
  }
  return result.data;
}

/** Settings every function's AWS clients need. */
export interface ClientConfig {
  readonly s3ForcePathStyle: boolean;
  /**
   * Record every AWS call of the function's clients under this directory (`PULSE_AWS_CALL_LOG`), for the
   * IAM parity test; never set on Lambda. @default no recording
   */
  readonly awsCallLog?: string;
}

/** Whether the s3-trigger parses CSV on a thread of its own, and what `auto` weighs (parsers/csv-thread.ts). */
export interface ParseThreadPolicy {
  readonly mode: 'auto' | 'on' | 'off';
  /** `auto`: objects of at least this many bytes. */
  readonly minBytes: number;
  /** `auto`: the CPUs the function has (on Lambda, from its memory); at least 2. */
  readonly cpus: number;
}

export interface S3TriggerConfig extends ClientConfig {
  readonly signalsQueueUrl: string;
  readonly ledgerTable: string;
  readonly quarantineBucket: string;
  readonly leaseSeconds: number;
  readonly heartbeatSeconds: number;
  readonly checkpointSeconds: number;
  readonly maxAttempts: number;
  readonly maxMessageBytes: number;
  /** Where a continuation of a long file is sent; without it, a file runs until the invocation ends. */
  readonly fileEventsQueueUrl?: string;
  readonly handOverBeforeTimeoutSeconds: number;
  /** Fan-out of large files (only with `fileEventsQueueUrl`): see settings.fanOut. */
  readonly fanOut: { readonly minBytes: number; readonly partBytes: number; readonly maxParts: number };
  /** Staging of large gzip files (only with `fileEventsQueueUrl`): see settings.staging. */
  readonly staging: {
    readonly minBytes: number;
    readonly objectBytes: number;
    /** The pipeline's own bucket (QUARANTINE_BUCKET), where staged copies go. */
    readonly bucket: string;
  };
  /** CSV parsed on a thread of its own: see settings.functions.s3Trigger.parseThread. */
  readonly parseThread: ParseThreadPolicy;
  /** What is ingested and how (`S3_ROUTES`, shared/routes.ts); the default route when unset. */
  readonly routes: readonly ResolvedRoute[];
}

/** The environment variables the s3-trigger reads (with their defaults from settings). */
const S3_TRIGGER_ENV = {
  ...common,
  [ENV.signalsQueueUrl]: required(ENV.signalsQueueUrl),
  [ENV.ledgerTable]: required(ENV.ledgerTable),
  [ENV.quarantineBucket]: required(ENV.quarantineBucket),
  [ENV.leaseSeconds]: positiveInt(ENV.leaseSeconds, settings.ledger.leaseSeconds),
  [ENV.heartbeatSeconds]: positiveInt(ENV.heartbeatSeconds, settings.ledger.heartbeatSeconds),
  [ENV.checkpointSeconds]: positiveInt(ENV.checkpointSeconds, settings.ledger.checkpointSeconds),
  [ENV.maxAttempts]: positiveInt(ENV.maxAttempts, settings.ledger.maxAttempts),
  [ENV.maxMessageBytes]: positiveInt(ENV.maxMessageBytes, settings.signals.maxMessageBytes),
  [ENV.fileEventsQueueUrl]: z.url({ error: 'FILE_EVENTS_QUEUE_URL must be a URL' }).optional(),
  [ENV.handOverBeforeTimeoutSeconds]: positiveNumber(
    ENV.handOverBeforeTimeoutSeconds,
    settings.ledger.handOverBeforeTimeoutSeconds,
  ),
  [ENV.fanOutMinBytes]: positiveInt(ENV.fanOutMinBytes, settings.fanOut.minBytes),
  [ENV.fanOutPartBytes]: positiveInt(ENV.fanOutPartBytes, settings.fanOut.partBytes),
  [ENV.stagingMinBytes]: positiveInt(ENV.stagingMinBytes, settings.staging.minBytes),
  [ENV.stagingObjectBytes]: positiveInt(ENV.stagingObjectBytes, settings.staging.objectBytes),
  [ENV.s3Routes]: z.string().optional(),
};

/** Reads the s3-trigger's configuration. Throws ConfigError when a variable is missing. */
export function loadS3TriggerConfig(env: Env = process.env): S3TriggerConfig {
  const c = parse(S3_TRIGGER_ENV, env);
  return {
    ...clientConfig(c),
    signalsQueueUrl: c.SIGNALS_QUEUE_URL,
    ...(c.FILE_EVENTS_QUEUE_URL ? { fileEventsQueueUrl: c.FILE_EVENTS_QUEUE_URL } : {}),
    handOverBeforeTimeoutSeconds: c.HAND_OVER_BEFORE_TIMEOUT_SECONDS,
    ledgerTable: c.LEDGER_TABLE,
    quarantineBucket: c.QUARANTINE_BUCKET,
    leaseSeconds: c.LEDGER_LEASE_SECONDS,
    heartbeatSeconds: c.LEDGER_HEARTBEAT_SECONDS,
    checkpointSeconds: c.LEDGER_CHECKPOINT_SECONDS,
    maxAttempts: c.LEDGER_MAX_ATTEMPTS,
    maxMessageBytes: c.SIGNALS_MAX_MESSAGE_BYTES,
    fanOut: {
      minBytes: c.FAN_OUT_MIN_BYTES,
      partBytes: c.FAN_OUT_PART_BYTES,
      maxParts: settings.fanOut.maxParts,
    },
    // Staged copies go to the pipeline's own bucket (the rejects'), never to a user's bucket a file came from.
    staging: {
      minBytes: c.STAGING_MIN_BYTES,
      objectBytes: c.STAGING_OBJECT_BYTES,
      bucket: c.QUARANTINE_BUCKET,
    },
    parseThread: {
      mode: settings.functions.s3Trigger.parseThread,
      minBytes: settings.functions.s3Trigger.parseThreadMinBytes,
      cpus: cpusOf(env),
    },
    routes: routesOf(c.S3_ROUTES),
  };
}

/** `S3_ROUTES`: JSON routes checked as the stack checks them (shared/routes.ts); the default route when unset. */
function routesOf(value: string | undefined): ResolvedRoute[] {
  if (value === undefined || value.trim() === '') return resolveRoutes(DEFAULT_ROUTES);
  let json: unknown;
  try {
    json = JSON.parse(value);
  } catch (err) {
    throw new ConfigError(`${ENV.s3Routes} must be JSON: ${(err as Error).message}`);
  }
  try {
    return resolveRoutes(checkRoutes(json, ENV.s3Routes));
  } catch (err) {
    throw new ConfigError((err as Error).message, { cause: err });
  }
}

export interface SweepConfig extends ClientConfig {
  readonly ledgerTable: string;
  /** The ingest bucket: the canary goes under its incoming prefix. */
  readonly bucket: string;
  readonly maxAttempts: number;
  /** See settings.sweep. */
  readonly processingStuckSeconds: number;
  readonly splitStuckSeconds: number;
  readonly canaryGraceSeconds: number;
  /** Not deployed values: settings.sweep's, resolved here like the rest. */
  readonly exhaustedLookbackHours: number;
  readonly maxItemsPerStatus: number;
  readonly pageSize: number;
}

/** The environment variables the ledger sweep reads (with their defaults from settings). */
const SWEEP_ENV = {
  ...common,
  [ENV.ledgerTable]: required(ENV.ledgerTable),
  [ENV.ingestBucket]: required(ENV.ingestBucket),
  [ENV.maxAttempts]: positiveInt(ENV.maxAttempts, settings.ledger.maxAttempts),
  [ENV.sweepProcessingStuckSeconds]: positiveInt(
    ENV.sweepProcessingStuckSeconds,
    settings.sweep.processingStuckSeconds,
  ),
  [ENV.sweepSplitStuckSeconds]: positiveInt(ENV.sweepSplitStuckSeconds, settings.sweep.splitStuckSeconds),
  [ENV.sweepCanaryGraceSeconds]: positiveInt(ENV.sweepCanaryGraceSeconds, settings.sweep.canaryGraceSeconds),
};

/** Reads the ledger sweep's configuration. Throws ConfigError when a variable is missing. */
export function loadSweepConfig(env: Env = process.env): SweepConfig {
  const c = parse(SWEEP_ENV, env);
  return {
    ...clientConfig(c),
    ledgerTable: c.LEDGER_TABLE,
    bucket: c.INGEST_BUCKET,
    maxAttempts: c.LEDGER_MAX_ATTEMPTS,
    processingStuckSeconds: c.SWEEP_PROCESSING_STUCK_SECONDS,
    splitStuckSeconds: c.SWEEP_SPLIT_STUCK_SECONDS,
    canaryGraceSeconds: c.SWEEP_CANARY_GRACE_SECONDS,
    exhaustedLookbackHours: settings.sweep.exhaustedLookbackHours,
    maxItemsPerStatus: settings.sweep.maxItemsPerStatus,
    pageSize: settings.sweep.pageSize,
  };
}

/** What the ledger sweep's verify half reads (functions/s3-trigger/verify-sweep.ts). */
export interface VerifySweepConfig {
  readonly ledgerTable: string;
  /** The ingest bucket: the files' rejects objects and the scorer's. */
  readonly bucket: string;
  readonly scoresTable: string;
  readonly scoresBucket: string;
  /** See settings.receipts. */
  readonly settleSeconds: number;
  readonly maxFilesPerRun: number;
  /** Not deployed values: settings.receipts', resolved here like the rest. */
  readonly filesPerBatch: number;
  readonly stopBeforeTimeoutSeconds: number;
  readonly firstLookbackHours: number;
  readonly pageSize: number;
}

/** The environment variables the ledger sweep's verify half reads, beyond the sweep's own. */
const VERIFY_SWEEP_ENV = {
  [ENV.ledgerTable]: required(ENV.ledgerTable),
  [ENV.ingestBucket]: required(ENV.ingestBucket),
  [ENV.scoresTable]: required(ENV.scoresTable),
  [ENV.scoresBucket]: required(ENV.scoresBucket),
  [ENV.receiptsSettleSeconds]: positiveInt(ENV.receiptsSettleSeconds, settings.receipts.settleSeconds),
  [ENV.receiptsMaxFilesPerRun]: positiveInt(ENV.receiptsMaxFilesPerRun, settings.receipts.maxFilesPerRun),
};

/** Reads the ledger sweep's verify configuration. Throws ConfigError when a variable is missing. */
export function loadVerifySweepConfig(env: Env = process.env): VerifySweepConfig {
  const c = parse(VERIFY_SWEEP_ENV, env);
  return {
    ledgerTable: c.LEDGER_TABLE,
    bucket: c.INGEST_BUCKET,
    scoresTable: c.SCORES_TABLE,
    scoresBucket: c.SCORES_BUCKET,
    settleSeconds: c.RECEIPTS_SETTLE_SECONDS,
    maxFilesPerRun: c.RECEIPTS_MAX_FILES_PER_RUN,
    filesPerBatch: settings.receipts.filesPerBatch,
    stopBeforeTimeoutSeconds: settings.receipts.stopBeforeTimeoutSeconds,
    firstLookbackHours: settings.receipts.firstLookbackHours,
    pageSize: settings.sweep.pageSize,
  };
}

export interface ScorerConfig extends ClientConfig {
  /** Series states, applied positions (blocks), id items, running totals. */
  readonly scoresTable: string;
  /** Score records in bulk (pending and final NDJSON.gz objects). */
  readonly scoresBucket: string;
  /** One item per anomaly, by series. */
  readonly anomaliesTable: string;
  readonly quarantineBucket: string;
  readonly zThreshold: number;
  readonly minSamples: number;
}

/** The environment variables the scorer reads (with their defaults from settings). */
const SCORER_ENV = {
  ...common,
  [ENV.scoresTable]: required(ENV.scoresTable),
  [ENV.scoresBucket]: required(ENV.scoresBucket),
  [ENV.anomaliesTable]: required(ENV.anomaliesTable),
  [ENV.quarantineBucket]: required(ENV.quarantineBucket),
  [ENV.zThreshold]: z.coerce
    .number({ error: 'Z_THRESHOLD must be a number' })
    .positive('Z_THRESHOLD must be positive')
    .default(settings.scoring.zThreshold),
  [ENV.minSamples]: positiveInt(ENV.minSamples, settings.scoring.minSamples),
};

/** Reads the scorer's configuration. Throws ConfigError when a variable is missing. */
export function loadScorerConfig(env: Env = process.env): ScorerConfig {
  const c = parse(SCORER_ENV, env);
  return {
    ...clientConfig(c),
    scoresTable: c.SCORES_TABLE,
    scoresBucket: c.SCORES_BUCKET,
    anomaliesTable: c.ANOMALIES_TABLE,
    quarantineBucket: c.QUARANTINE_BUCKET,
    zThreshold: c.Z_THRESHOLD,
    minSamples: c.MIN_SAMPLES,
  };
}

const identifier = /^[A-Za-z_][A-Za-z0-9_]{0,62}$/;

/** Column mapping of the polled table: every name a plain SQL identifier, quoted when used. */
export const DbColumnsSchema = z
  .object({
    id: z.string().regex(identifier),
    name: z.string().regex(identifier),
    value: z.string().regex(identifier),
    source: z.string().regex(identifier).optional(),
    timestamp: z.string().regex(identifier),
    processed: z.string().regex(identifier),
    updatedAt: z.string().regex(identifier),
  })
  .strict();
export type DbColumns = z.infer<typeof DbColumnsSchema>;

export interface DbPollerConfig extends ClientConfig {
  readonly signalsQueueUrl: string;
  /** Rows that fail validation are written here under rejects/db/. */
  readonly quarantineBucket: string;
  /** Secrets Manager secret with the RDS-managed shape: username, password, host, port, dbname. */
  readonly dbSecretArn: string;
  /** TLS to the database; on by default, off only for a local emulator. */
  readonly dbSsl: boolean;
  readonly table: string;
  readonly columns: DbColumns;
  readonly mode: 'mark' | 'watermark';
  readonly batchSize: number;
  /** DynamoDB table holding the watermark (the ledger table, item `watermark#<table>`). */
  readonly watermarkTable: string;
  readonly maxQueueDepth: number;
  readonly timeBudgetFraction: number;
  readonly maxMessageBytes: number;
  /** watermark mode: how far behind the watermark each poll reads again (0: not at all). */
  readonly watermarkLookbackSeconds: number;
  /** watermark mode: how far past the database's `now()` a row may lie and still be read. */
  readonly watermarkSkewSeconds: number;
  /** An extra filter on the rows read (shared/sql-filter.ts). @default none */
  readonly where?: string;
  /** mark mode: the processed flag's type. */
  readonly processedType: 'boolean' | 'integer';
  /** watermark mode: where reading starts while no watermark is stored. @default none: the first row */
  readonly initialWatermark?: string;
  /**
   * Every table this function polls, each with its own settings (DB_TABLES; else the one table of DB_TABLE,
   * DB_MODE, …). The table fields above (`table`, `columns`, `mode`, …) are the first table's; an invocation
   * polls the one {@link dbPollerConfigFor} picks. Names are unique.
   */
  readonly tables: readonly DbTableConfig[];
  /** The tables come from DB_TABLES: each invocation must name its table (the schedule's input). */
  readonly namedTables: boolean;
}

/** One polled table's own settings (an entry of DB_TABLES), defaults applied. */
export interface DbTableConfig {
  readonly table: string;
  readonly columns: DbColumns;
  readonly mode: 'mark' | 'watermark';
  /** An extra filter on the rows read (shared/sql-filter.ts). @default none */
  readonly where?: string;
  /** mark mode: the processed flag's type. */
  readonly processedType: 'boolean' | 'integer';
  /** watermark mode: where reading starts while no watermark is stored. @default none: the first row */
  readonly initialWatermark?: string;
}

/** An initial watermark: an integer (a version counter) or an ISO-8601 date or time, a fixed point. */
export const INITIAL_WATERMARK =
  /^(?:-?\d{1,19}|\d{4}-\d{2}-\d{2}(?:[T ]\d{2}:\d{2}(?::\d{2}(?:\.\d{1,6})?)?(?:Z|[+-]\d{2}(?::?\d{2})?)?)?)$/;

/** The Zod check of an extra filter (DB_WHERE, prop dbPoller.where). */
export const SqlFilterSchema = z.string().superRefine((v, ctx) => {
  const why = checkSqlFilter(v);
  if (why) ctx.addIssue({ code: 'custom', message: `the filter ${why}` });
});

/** The Zod check of an initial watermark (DB_INITIAL_WATERMARK, prop dbPoller.initialWatermark). */
export const InitialWatermarkSchema = z
  .string()
  .regex(
    INITIAL_WATERMARK,
    'must be an integer or an ISO-8601 date or time (2024-05-01, 2024-05-01T00:00:00Z), not a relative value such as now',
  );

/**
 * One entry of DB_TABLES as infra/db-poller-env.ts writes it: only what differs from the defaults, `columns`
 * merged over `settings.dbPoller.columns`. Unknown keys are refused (a typo is not a default).
 */
export const DbTableEntrySchema = z
  .object({
    table: z.string().regex(identifier, 'must be a plain SQL identifier'),
    mode: z.enum(['mark', 'watermark'], { error: 'must be mark or watermark' }).optional(),
    columns: DbColumnsSchema.partial().optional(),
    where: SqlFilterSchema.optional(),
    processedType: z.enum(['boolean', 'integer'], { error: 'must be boolean or integer' }).optional(),
    initialWatermark: InitialWatermarkSchema.optional(),
  })
  .strict();
export type DbTableEntry = z.infer<typeof DbTableEntrySchema>;

/** The settings of one table, defaults applied. */
function dbTableConfig(e: DbTableEntry): DbTableConfig {
  return {
    table: e.table,
    columns: { ...settings.dbPoller.columns, ...e.columns },
    mode: e.mode ?? settings.dbPoller.mode,
    ...(e.where ? { where: e.where } : {}),
    processedType: e.processedType ?? settings.dbPoller.processedType,
    ...(e.initialWatermark ? { initialWatermark: e.initialWatermark } : {}),
  };
}

/** DB_TABLES: a JSON list of {@link DbTableEntrySchema}, at least one, each table once. */
const DbTablesEnvSchema = z
  .string()
  .optional()
  .transform((v, ctx) => {
    if (v === undefined || v.trim() === '') return undefined;
    let json: unknown;
    try {
      json = JSON.parse(v);
    } catch {
      ctx.addIssue({ code: 'custom', message: 'DB_TABLES must be a JSON list of tables' });
      return z.NEVER;
    }
    const parsed = z.array(DbTableEntrySchema).min(1, 'lists no table').safeParse(json);
    if (!parsed.success) {
      const i = parsed.error.issues[0];
      const path = (i?.path ?? []).map((k) => (typeof k === 'number' ? `[${k}]` : `.${String(k)}`)).join('');
      ctx.addIssue({ code: 'custom', message: `DB_TABLES${path}: ${i?.message ?? 'invalid'}` });
      return z.NEVER;
    }
    const twice = duplicateTables(parsed.data.map((t) => t.table));
    if (twice.length > 0) {
      ctx.addIssue({
        code: 'custom',
        message: `DB_TABLES lists ${twice.map((t) => `"${t}"`).join(', ')} more than once`,
      });
      return z.NEVER;
    }
    return parsed.data.map(dbTableConfig);
  });

/** The table names that appear more than once, each named once. */
export function duplicateTables(names: readonly string[]): string[] {
  const seen = new Set<string>();
  const twice = new Set<string>();
  for (const n of names) (seen.has(n) ? twice : seen).add(n);
  return [...twice];
}

/** The one-table variables that DB_TABLES replaces: set beside it, one of them would be ignored. */
const SINGLE_TABLE_ENV = [
  ENV.dbTable,
  ENV.dbMode,
  ENV.dbColumns,
  ENV.dbWhere,
  ENV.dbProcessedType,
  ENV.dbInitialWatermark,
] as const;

/** The environment variables the db-poller reads (with their defaults from settings). */
const DB_POLLER_ENV = {
  ...common,
  [ENV.signalsQueueUrl]: required(ENV.signalsQueueUrl),
  [ENV.dbSecretArn]: required(ENV.dbSecretArn),
  [ENV.quarantineBucket]: required(ENV.quarantineBucket),
  [ENV.dbSsl]: z
    .enum(['true', 'false'])
    .default('true')
    .transform((v) => v === 'true'),
  [ENV.dbTable]: z
    .string()
    .regex(identifier, 'DB_TABLE must be a plain SQL identifier')
    .default(settings.dbPoller.table),
  [ENV.dbColumns]: z
    .string()
    .optional()
    .transform((v, ctx) => {
      if (!v) return settings.dbPoller.columns;
      try {
        return DbColumnsSchema.parse({ ...settings.dbPoller.columns, ...JSON.parse(v) });
      } catch {
        ctx.addIssue({
          code: 'custom',
          message: 'DB_COLUMNS must be JSON mapping fields to plain SQL identifiers',
        });
        return z.NEVER;
      }
    }),
  [ENV.dbMode]: z
    .enum(['mark', 'watermark'], { error: 'DB_MODE must be mark or watermark' })
    .default(settings.dbPoller.mode),
  [ENV.dbBatchSize]: positiveInt(ENV.dbBatchSize, settings.dbPoller.batchSize),
  [ENV.watermarkTable]: required(ENV.watermarkTable),
  [ENV.maxQueueDepth]: positiveInt(ENV.maxQueueDepth, settings.dbPoller.maxQueueDepth),
  [ENV.timeBudgetFraction]: z.coerce.number().gt(0).lte(1).default(settings.dbPoller.timeBudgetFraction),
  [ENV.watermarkLookbackSeconds]: z.coerce
    .number({ error: 'DB_WATERMARK_LOOKBACK_SECONDS must be a whole number of seconds, 0 or more' })
    .int('DB_WATERMARK_LOOKBACK_SECONDS must be a whole number of seconds, 0 or more')
    .min(0, 'DB_WATERMARK_LOOKBACK_SECONDS must be a whole number of seconds, 0 or more')
    .default(settings.dbPoller.watermarkLookbackSeconds),
  [ENV.watermarkSkewSeconds]: z.coerce
    .number({ error: 'DB_WATERMARK_SKEW_SECONDS must be a whole number of seconds, 0 or more' })
    .int('DB_WATERMARK_SKEW_SECONDS must be a whole number of seconds, 0 or more')
    .min(0, 'DB_WATERMARK_SKEW_SECONDS must be a whole number of seconds, 0 or more')
    .default(settings.dbPoller.watermarkSkewSeconds),
  [ENV.maxMessageBytes]: positiveInt(ENV.maxMessageBytes, settings.signals.maxMessageBytes),
  [ENV.dbWhere]: SqlFilterSchema.optional(),
  [ENV.dbProcessedType]: z
    .enum(['boolean', 'integer'], { error: 'DB_PROCESSED_TYPE must be boolean or integer' })
    .default(settings.dbPoller.processedType),
  [ENV.dbInitialWatermark]: InitialWatermarkSchema.optional(),
  [ENV.dbTables]: DbTablesEnvSchema,
};

/** Reads the db-poller's configuration. Throws ConfigError when a variable is missing or wrong. */
export function loadDbPollerConfig(env: Env = process.env): DbPollerConfig {
  const c = parse(DB_POLLER_ENV, env);
  const both = c.DB_TABLES ? SINGLE_TABLE_ENV.filter((name) => env[name] !== undefined) : [];
  if (both.length > 0) {
    throw new ConfigError(
      `${both.join(', ')} ${both.length > 1 ? 'are' : 'is'} set beside DB_TABLES: give each table's settings in DB_TABLES only`,
    );
  }
  const lookback = c.DB_WATERMARK_LOOKBACK_SECONDS;
  const skew = c.DB_WATERMARK_SKEW_SECONDS;
  if (lookback > 0 && skew >= lookback) {
    // A row `skew` ahead moves the watermark that far past the present; a row written just after it, with
    // the present as its time, would then sit `skew` behind the watermark: never read unless within the lookback.
    throw new ConfigError(
      `DB_WATERMARK_SKEW_SECONDS (${skew}) must be less than DB_WATERMARK_LOOKBACK_SECONDS (${lookback}): ` +
        'rows written after one that far ahead would fall behind the lookback and never be read',
    );
  }
  const single: DbTableConfig = {
    table: c.DB_TABLE,
    columns: c.DB_COLUMNS,
    mode: c.DB_MODE,
    ...(c.DB_WHERE ? { where: c.DB_WHERE } : {}),
    processedType: c.DB_PROCESSED_TYPE,
    ...(c.DB_INITIAL_WATERMARK ? { initialWatermark: c.DB_INITIAL_WATERMARK } : {}),
  };
  const tables = c.DB_TABLES ?? [single];
  const first = tables[0] ?? single;
  return {
    ...clientConfig(c),
    signalsQueueUrl: c.SIGNALS_QUEUE_URL,
    quarantineBucket: c.QUARANTINE_BUCKET,
    dbSecretArn: c.DB_SECRET_ARN,
    dbSsl: c.DB_SSL,
    ...first,
    batchSize: c.DB_BATCH_SIZE,
    watermarkTable: c.WATERMARK_TABLE,
    maxQueueDepth: c.MAX_QUEUE_DEPTH,
    timeBudgetFraction: c.TIME_BUDGET_FRACTION,
    maxMessageBytes: c.SIGNALS_MAX_MESSAGE_BYTES,
    watermarkLookbackSeconds: lookback,
    watermarkSkewSeconds: skew,
    tables,
    namedTables: c.DB_TABLES !== undefined,
  };
}

/**
 * The settings one invocation polls with: the table its input names (the schedule's `{"table": …}`), or,
 * when the function has one table from DB_TABLE (no DB_TABLES), that one. Throws {@link ConfigError}
 * saying which tables there are when the input names none of them, or none at all under DB_TABLES.
 */
export function dbPollerConfigFor<C extends DbPollerConfig>(
  config: C,
  table: string | undefined,
): C & DbTableConfig {
  const known = config.tables.map((t) => t.table).join(', ');
  // The first table's fields leave with it: an option the chosen table lacks (`where`) must not carry over.
  const {
    table: _t,
    columns: _c,
    mode: _m,
    where: _w,
    processedType: _p,
    initialWatermark: _i,
    ...shared
  } = config;
  const pick = (t: DbTableConfig) => ({ ...shared, ...t }) as C & DbTableConfig;
  if (table === undefined) {
    const only = config.tables[0];
    if (!config.namedTables && only && config.tables.length === 1) return pick(only);
    throw new ConfigError(
      `the invocation names no table: its input must be {"table": "<name>"}, one of ${known} (DB_TABLES)`,
    );
  }
  const found = config.tables.find((t) => t.table === table);
  if (!found) {
    throw new ConfigError(
      `the invocation names the table "${table}", which this poller does not poll (${known})`,
    );
  }
  return pick(found);
}

/**
 * What an operator must hear about a db-poller configuration that works but can lose rows, logged once
 * at cold start: watermark mode ordered by the event's own time (the default mapping) instead of a time
 * the database sets when it writes the row.
 */
export function dbPollerConfigWarnings(
  config: Pick<DbTableConfig, 'mode' | 'columns'> & Pick<DbPollerConfig, 'watermarkLookbackSeconds'>,
): string[] {
  const { mode, columns } = config;
  if (mode !== 'watermark' || columns.updatedAt !== columns.timestamp) return [];
  return [
    `watermark mode orders rows by "${columns.updatedAt}", the event time (DB_COLUMNS updatedAt = timestamp): ` +
      `a row whose event time is more than ${config.watermarkLookbackSeconds} s (DB_WATERMARK_LOOKBACK_SECONDS) ` +
      'behind the newest one read when it is written is never read. Map updatedAt to a column the database ' +
      'sets on every write (updated_at = clock_timestamp() in a trigger), or use mark mode (docs/db-poller.md).',
  ];
}

export interface KafkaConsumerConfig extends ClientConfig {
  readonly signalsQueueUrl: string;
  readonly quarantineBucket: string;
  /** How record values are encoded. */
  readonly valueFormat: 'json' | 'avro' | 'protobuf';
  /** The Avro schema (JSON text) or the `.proto` text needed for those formats. */
  readonly valueSchema?: string;
  /** Protobuf only: the fully qualified name of the value's message type, e.g. `pulse.Signal`. */
  readonly valueMessageType?: string;
  readonly maxMessageBytes: number;
  /** The schema registry the event source mapping validates records through, when there is one. */
  readonly schemaRegistry?: SchemaRegistryEnv;
  /** Per topic, the field mapping of its values (`KAFKA_MAPPINGS`). @default none */
  readonly mappings?: Readonly<Record<string, FieldMapping>>;
}

/** Per Kafka topic, the field mapping of its values (`PulseIngest`'s `kafkaConsumer.mappings`). */
export const KafkaMappingsSchema = z.record(
  z.string().regex(/^[a-zA-Z0-9._-]{1,249}$/, 'a Kafka topic name'),
  FieldMappingSchema,
);

/** The environment variables the kafka-consumer reads (with their defaults from settings). */
const KAFKA_CONSUMER_ENV = {
  ...common,
  [ENV.signalsQueueUrl]: required(ENV.signalsQueueUrl),
  [ENV.quarantineBucket]: required(ENV.quarantineBucket),
  [ENV.kafkaValueFormat]: z
    .enum(['json', 'avro', 'protobuf'], { error: 'KAFKA_VALUE_FORMAT must be json, avro or protobuf' })
    .default('json'),
  [ENV.kafkaValueSchema]: z.string().optional(),
  [ENV.kafkaValueMessageType]: z.string().trim().optional(),
  [ENV.maxMessageBytes]: positiveInt(ENV.maxMessageBytes, settings.signals.maxMessageBytes),
  [ENV.kafkaSchemaRegistry]: z
    .string()
    .optional()
    .transform((v, ctx) => {
      if (!v) return undefined;
      try {
        return SchemaRegistryEnvSchema.parse(JSON.parse(v));
      } catch {
        ctx.addIssue({
          code: 'custom',
          message: 'KAFKA_SCHEMA_REGISTRY must be JSON: { kind, recordFormat, validate }',
        });
        return z.NEVER;
      }
    }),
  [ENV.kafkaMappings]: z
    .string()
    .optional()
    .transform((v, ctx) => {
      if (v === undefined || v.trim() === '') return undefined;
      try {
        const parsed = KafkaMappingsSchema.safeParse(JSON.parse(v));
        if (parsed.success) return parsed.data;
      } catch {
        // Reported below.
      }
      ctx.addIssue({
        code: 'custom',
        message: 'KAFKA_MAPPINGS must be JSON: { "<topic>": { "name": "<field>", … } }',
      });
      return z.NEVER;
    }),
};

/** Reads the kafka-consumer's configuration. Throws ConfigError when a variable is missing or wrong. */
export function loadKafkaConsumerConfig(env: Env = process.env): KafkaConsumerConfig {
  const c = parse(KAFKA_CONSUMER_ENV, env);
  if (c.KAFKA_VALUE_FORMAT !== 'json' && !c.KAFKA_VALUE_SCHEMA) {
    throw new ConfigError(`KAFKA_VALUE_SCHEMA is not set (needed for ${c.KAFKA_VALUE_FORMAT} values)`);
  }
  if (c.KAFKA_VALUE_FORMAT === 'protobuf' && !c.KAFKA_VALUE_MESSAGE_TYPE) {
    throw new ConfigError('KAFKA_VALUE_MESSAGE_TYPE is not set (needed for protobuf values)');
  }
  return {
    ...clientConfig(c),
    signalsQueueUrl: c.SIGNALS_QUEUE_URL,
    quarantineBucket: c.QUARANTINE_BUCKET,
    valueFormat: c.KAFKA_VALUE_FORMAT,
    ...(c.KAFKA_MAPPINGS ? { mappings: c.KAFKA_MAPPINGS } : {}),
    ...(c.KAFKA_VALUE_SCHEMA ? { valueSchema: c.KAFKA_VALUE_SCHEMA } : {}),
    ...(c.KAFKA_VALUE_FORMAT === 'protobuf' && c.KAFKA_VALUE_MESSAGE_TYPE
      ? { valueMessageType: c.KAFKA_VALUE_MESSAGE_TYPE }
      : {}),
    maxMessageBytes: c.SIGNALS_MAX_MESSAGE_BYTES,
    ...(c.KAFKA_SCHEMA_REGISTRY ? { schemaRegistry: c.KAFKA_SCHEMA_REGISTRY } : {}),
  };
}

/**
 * The environment each function reads, by its Powertools service name: what the environment contract test
 * (`test/infra/env-contract.test.ts`) holds the stack and the offline runtime to.
 */
export const CONFIG_ENV = {
  's3-trigger': S3_TRIGGER_ENV,
  'ledger-sweep': { ...SWEEP_ENV, ...VERIFY_SWEEP_ENV },
  scorer: SCORER_ENV,
  'db-poller': DB_POLLER_ENV,
  'kafka-consumer': KAFKA_CONSUMER_ENV,
} as const satisfies Record<string, z.ZodRawShape>;

/**
 * The memory the cost meter bills a function's time at (shared/usage-meter.ts): what Lambda gives it, or off
 * Lambda (the offline runtime) the memory the stack deploys it with.
 */
export function meteredMemoryMb(deployedMb: number, env: Env = process.env): number {
  return lambdaMemoryMb(env) ?? deployedMb;
}
