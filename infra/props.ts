import * as z from 'zod';
import {
  DbColumnsSchema,
  duplicateTables,
  InitialWatermarkSchema,
  KafkaMappingsSchema,
  SqlFilterSchema,
} from '#shared/config.ts';
import { ENV } from '#shared/contract.ts';
import type { FieldMapping } from '#shared/field-mapping.ts';
import { checkRoutes, DEFAULT_ROUTES, RoutesError, type S3Route, S3RoutesSchema } from '#shared/routes.ts';
import {
  type KafkaPollerMode,
  kafkaMappingGroupId,
  settings,
  visibilityTimeoutFor,
} from '#shared/settings.ts';
import { encodeDbTables } from './db-poller-env.ts';
import { type KafkaSchemaRegistry, schemaRegistryProblems } from './kafka-schema-registry.ts';

/**
 * The props of {@link PulseIngest} that tune a deployment, every one optional with its default taken from
 * `shared/settings.ts`, and their resolution into one {@link PulseDeployment} the constructs read. Values
 * that the functions use reach them through their environment (shared/contract.ts names the variables,
 * shared/config.ts reads them), so nothing needs a hand edit on a deployed function.
 */

/** Where the database is: never looked up, so synth stays offline. */
export interface DatabaseSource {
  /** Secrets Manager secret with username, password, host, port, dbname (the RDS-managed shape). */
  readonly secretArn: string;
  /** The VPC the poller runs in to reach the database. @default none: the poller runs outside any VPC */
  readonly vpcId?: string;
  /** Its subnets (needed with `vpcId`). @default none */
  readonly subnetIds?: readonly string[];
  /** The security group the poller gets. @default none: Lambda's default for the VPC */
  readonly securityGroupId?: string;
}

/** How the Kafka event source mapping's pollers run. */
export interface KafkaPollers {
  /** @default settings.kafka.pollerMode ('provisioned') */
  readonly mode: KafkaPollerMode;
  /** Provisioned mode only. @default settings.kafka.provisionedPollers.minimum (1) */
  readonly minimum?: number;
  /** Provisioned mode only. @default settings.kafka.provisionedPollers.maximum (3) */
  readonly maximum?: number;
}

/** MSK, or self-managed Kafka with SASL/SCRAM credentials in a secret. */
export type KafkaSource = (
  | { readonly kind: 'msk'; readonly clusterArn: string; readonly topic: KafkaTopics }
  | {
      readonly kind: 'self-managed';
      readonly bootstrapServers: readonly string[];
      readonly topic: KafkaTopics;
      /** SASL/SCRAM: the username and password; MTLS: the client certificate chain and private key. */
      readonly secretArn: string;
      /**
       * How the event source authenticates to the brokers: SASL/SCRAM-SHA-512 or -256 (`SASL_SCRAM_*_AUTH`),
       * or mutual TLS with a client certificate (`CLIENT_CERTIFICATE_TLS_AUTH`). @default 'SASL_SCRAM_512'
       */
      readonly authentication?: KafkaAuthentication;
      /**
       * A secret holding the root CA certificate (PEM) the brokers' TLS certificates are signed by, when a
       * private CA signs them (`SERVER_ROOT_CA_CERTIFICATE`). @default none: the public CAs Lambda trusts
       */
      readonly rootCaSecretArn?: string;
    }
) & {
  readonly pollers?: KafkaPollers;
  /**
   * The Kafka consumer group the event source mapping joins (`AmazonManagedKafkaEventSourceConfig` /
   * `SelfManagedKafkaEventSourceConfig.ConsumerGroupId`): 1..200 of `[a-zA-Z0-9-/*:_+=.@]`. A mapping
   * created again with the same group resumes at the group's committed offsets (its starting position is
   * then ignored), and ACLs can name the group. Lambda cannot change it on an existing mapping: a new id
   * replaces the mapping. With several topics each topic's mapping joins `<consumerGroupId>.<topic>`
   * (`kafkaMappingGroupId`). @default none: Lambda uses the mapping's UUID, so a recreated mapping reads
   * from its starting position again
   */
  readonly consumerGroupId?: string;
  /**
   * Where a mapping whose group has no committed offsets starts: the oldest record (`TRIM_HORIZON`), only
   * new ones (`LATEST`), or the first record at or after `startingPositionTimestamp` (`AT_TIMESTAMP`).
   * @default settings.kafka.startingPosition ('TRIM_HORIZON')
   */
  readonly startingPosition?: 'TRIM_HORIZON' | 'LATEST' | 'AT_TIMESTAMP';
  /** `AT_TIMESTAMP` only, and needed there: Unix time in seconds. @default none */
  readonly startingPositionTimestamp?: number;
  /**
   * A schema registry (Confluent or AWS Glue) the event source mapping validates and deserializes records
   * through before invoking the kafka-consumer; provisioned pollers only (infra/kafka-schema-registry.ts).
   * @default none: values are read as `kafkaConsumer.valueFormat` says
   */
  readonly schemaRegistry?: KafkaSchemaRegistry;
};

/**
 * One topic, or several into the same pipeline: Lambda reads one topic per Kafka event source mapping, so
 * the kafka-consumer gets one mapping per topic (each with the same settings and on-failure bucket).
 */
export type KafkaTopics = string | readonly string[];

/** The topics of a Kafka source, as a list. */
export function kafkaTopicsOf(k: Pick<KafkaSource, 'topic'>): readonly string[] {
  return typeof k.topic === 'string' ? [k.topic] : k.topic;
}

/** A Kafka topic name: 1..249 of `[a-zA-Z0-9._-]`. */
const TOPIC = /^[a-zA-Z0-9._-]{1,249}$/;

/** How a self-managed Kafka event source authenticates. */
export type KafkaAuthentication = 'SASL_SCRAM_512' | 'SASL_SCRAM_256' | 'MTLS';

/** Lambda's ConsumerGroupId: 1..200 characters of `[a-zA-Z0-9-/*:_+=.@]` (API reference). */
export const KafkaConsumerGroupIdSchema = z
  .string()
  .min(1)
  .max(200)
  .regex(/^[a-zA-Z0-9\-/*:_+=.@]+$/, 'only letters, digits and - / * : _ + = . @');

/** Checks what Lambda would refuse in a Kafka source. Throws {@link PulsePropsError}. */
export function checkKafkaSource(k: KafkaSource): void {
  const topics = kafkaTopicsOf(k);
  const problems: string[] = [];
  if (topics.length === 0) problems.push('kafka.topic: at least one topic is needed');
  for (const t of topics) {
    if (!TOPIC.test(t))
      problems.push(`kafka.topic: "${t}" is not a Kafka topic name (1..249 of a-z A-Z 0-9 . _ -)`);
  }
  if (new Set(topics).size !== topics.length) problems.push('kafka.topic: a topic is given twice');
  for (const t of k.consumerGroupId === undefined ? [] : topics) {
    const group = kafkaMappingGroupId(k.consumerGroupId, t, topics) ?? '';
    const parsed = KafkaConsumerGroupIdSchema.safeParse(group);
    if (!parsed.success) {
      problems.push(
        `kafka.consumerGroupId: ${describeIssues(parsed.error)}${topics.length > 1 ? ` (in "${group}", the group of topic ${t})` : ''}`,
      );
      break;
    }
  }
  const at = k.startingPositionTimestamp;
  if (k.startingPosition === 'AT_TIMESTAMP') {
    if (at === undefined || !Number.isFinite(at) || at < 0) {
      problems.push(
        'kafka.startingPositionTimestamp (Unix seconds) is needed with startingPosition AT_TIMESTAMP',
      );
    }
  } else if (at !== undefined) {
    problems.push('kafka.startingPositionTimestamp applies to startingPosition AT_TIMESTAMP only');
  }
  if (k.schemaRegistry) {
    problems.push(...schemaRegistryProblems(k.schemaRegistry, k.pollers?.mode ?? settings.kafka.pollerMode));
  }
  if (problems.length > 0) throw new PulsePropsError(`PulseIngest props: ${problems.join('; ')}`);
}

/** An SQS queue a function consumes, and its event source. */
export interface ConsumedQueueProps {
  /** Messages per invocation. @default settings.fileEvents.batchSize (1) / settings.signals.batchSize (10) */
  readonly batchSize?: number;
  /** @default settings.fileEvents.maxBatchingWindowSeconds (0) / settings.signals.maxBatchingWindowSeconds (1) */
  readonly maxBatchingWindowSeconds?: number;
  /** Invocations the event source runs at once, 2..1000. @default 50 (file events) / 10 (signals) */
  readonly maxConcurrency?: number;
  /** Deliveries before a message moves to the DLQ. @default 5 */
  readonly maxReceiveCount?: number;
  /** Days a message is kept. @default 14 */
  readonly retentionDays?: number;
}

/** A function's size. */
export interface FunctionSizeProps {
  /** @default settings.functions.<function>.memoryMb */
  readonly memoryMb?: number;
  /** @default settings.functions.<function>.timeoutSeconds */
  readonly timeoutSeconds?: number;
}

/** One table of `dbPoller.tables`: the same keys as the one-table props, and its own schedule. */
export interface DbPollerTableProps {
  /** A plain SQL identifier; each table once. */
  readonly table: string;
  /** @default 'mark' */
  readonly mode?: 'mark' | 'watermark';
  /** Column names, merged over the defaults. @default settings.dbPoller.columns */
  readonly columns?: Readonly<Partial<Record<keyof typeof settings.dbPoller.columns, string>>>;
  /** An extra filter on the rows read, added as `AND (<where>)`. @default none */
  readonly where?: string;
  /** mark mode only: `boolean` or `integer`. @default 'boolean' */
  readonly processedType?: 'boolean' | 'integer';
  /** watermark mode only: where reading starts while no watermark is stored. @default none */
  readonly initialWatermark?: string;
  /** This table's schedule. @default dbPoller.scheduleRateMinutes */
  readonly scheduleRateMinutes?: number;
}

/** Everything about the deployment that is not a source: see each field's default. */
export interface PulseTuningProps {
  /** The file-events queue and s3-trigger's event source. @default settings.fileEvents */
  readonly fileEvents?: ConsumedQueueProps;
  /** The signals queue and the scorer's event source. @default settings.signals */
  readonly signals?: ConsumedQueueProps;
  /** The functions' memory and timeout; s3-trigger's reserved concurrency. @default settings.functions */
  readonly functions?: {
    readonly s3Trigger?: FunctionSizeProps & {
      /** @default none (settings.functions.s3Trigger.reservedConcurrency) */
      readonly reservedConcurrency?: number;
    };
    readonly scorer?: FunctionSizeProps;
    readonly dbPoller?: FunctionSizeProps;
    readonly kafkaConsumer?: FunctionSizeProps;
    readonly ledgerSweep?: FunctionSizeProps;
  };
  /** The file ledger (s3-trigger and the sweep). @default settings.ledger */
  readonly ledger?: {
    /** Claims of a file version before it stays FAILED; below fileEvents.maxReceiveCount. @default 3 */
    readonly maxAttempts?: number;
    /** @default 120 */
    readonly leaseSeconds?: number;
    /** Below leaseSeconds. @default 20 */
    readonly heartbeatSeconds?: number;
    /** @default 60 */
    readonly checkpointSeconds?: number;
  };
  /** Fan-out of large files. @default settings.fanOut (128 MiB, parts of 64 MiB) */
  readonly fanOut?: { readonly minBytes?: number; readonly partBytes?: number };
  /** Staging of large compressed files. @default settings.staging (32 MiB, objects of 16 MiB) */
  readonly staging?: { readonly minBytes?: number; readonly objectBytes?: number };
  /** The scoring model: z-score per series. @default settings.scoring (|z| ≥ 3 after 10 samples) */
  readonly scoring?: { readonly zThreshold?: number; readonly minSamples?: number };
  /** The db-poller, whatever database it reads. @default settings.dbPoller */
  readonly dbPoller?: {
    /** @default 1 */
    readonly scheduleRateMinutes?: number;
    /** @default 500 */
    readonly batchSize?: number;
    /** @default 'mark' */
    readonly mode?: 'mark' | 'watermark';
    /** @default 'signals' */
    readonly table?: string;
    /** Column names, merged over the defaults. @default settings.dbPoller.columns */
    readonly columns?: Readonly<Partial<Record<keyof typeof settings.dbPoller.columns, string>>>;
    /** @default 10000 */
    readonly maxQueueDepth?: number;
    /** @default 60 */
    readonly watermarkLookbackSeconds?: number;
    /** Below the lookback. @default 10 */
    readonly watermarkSkewSeconds?: number;
    /**
     * An extra filter on the rows read, added as `AND (<where>)` (e.g. `tenant = 'acme' AND kind IN ('cpu', 'mem')`);
     * what it may hold: shared/sql-filter.ts. @default none
     */
    readonly where?: string;
    /** mark mode: the processed flag is `boolean` (false / true) or `integer` (0 / 1). @default 'boolean' */
    readonly processedType?: 'boolean' | 'integer';
    /**
     * watermark mode: while no watermark is stored, read the rows whose `updatedAt` is at or after this (an
     * ISO-8601 date or time, or an integer for a version counter). @default none: from the first row
     */
    readonly initialWatermark?: string;
    /**
     * Several tables, each with its own mode, columns, filter, flag type, initial watermark and schedule
     * (one schedule per table, all invoking the one db-poller). Exclusive with the one-table keys above
     * (`table`, `mode`, `columns`, `where`, `processedType`, `initialWatermark`), which describe a single
     * table; `scheduleRateMinutes` above is each table's default. See docs/db-poller.md.
     * @default one table: the keys above
     */
    readonly tables?: readonly DbPollerTableProps[];
  };
  /** The kafka-consumer's event source and how it decodes values. @default settings.kafka, JSON values */
  readonly kafkaConsumer?: {
    /** @default 500 */
    readonly batchSize?: number;
    /** @default 1 */
    readonly maxBatchingWindowSeconds?: number;
    /** Provisioned pollers only: retries after the first attempt, 0..10000. @default 2 */
    readonly maximumRetryAttempts?: number;
    /** @default 'json' */
    readonly valueFormat?: 'json' | 'avro' | 'protobuf';
    /** The Avro schema (JSON text) or the `.proto` text. @default none (needed for avro and protobuf) */
    readonly valueSchema?: string;
    /** Protobuf only: the value's message type, e.g. `pulse.Signal`. @default none */
    readonly valueMessageType?: string;
    /**
     * Per topic, which value field is each signal field (`{ "meters": { "name": "metric", "value": "val" } }`),
     * applied as an S3 route's mapping is (shared/field-mapping.ts). @default none: the fields' own names
     */
    readonly mappings?: Readonly<Record<string, FieldMapping>>;
  };
  /** The ledger sweep. @default settings.sweep */
  readonly sweep?: {
    /** @default 5 */
    readonly scheduleRateMinutes?: number;
    /** Above the lease and the file-events visibility timeout. @default 2100 */
    readonly processingStuckSeconds?: number;
    /** @default 3600 */
    readonly splitStuckSeconds?: number;
    /** @default 900 */
    readonly canaryGraceSeconds?: number;
  };
  /** The ledger sweep's receipts of the files that ended since its last run. @default settings.receipts */
  readonly receipts?: {
    /** A file is verified once it has been SUCCESS this long (its last signals scored). @default 600 */
    readonly settleSeconds?: number;
    /** Files verified per sweep run at most; the rest wait for the next. @default 50 */
    readonly maxFilesPerRun?: number;
  };
  /** How long things are kept. */
  readonly retention?: {
    /** Function log groups (a CloudWatch Logs retention). @default 30 */
    readonly logDays?: number;
    /** Dead-letter queues, 1..14. @default 14 */
    readonly dlqDays?: number;
    /** The ingest and scores buckets' server access logs. @default 90 */
    readonly accessLogsDays?: number;
    /** Objects of the Kafka failures bucket. @default 35 */
    readonly kafkaFailuresDays?: number;
  };
  /** What the s3-trigger ingests from the bucket, and how (shared/routes.ts). */
  readonly s3?: S3Props;
  /** Alarm thresholds. @default settings.monitoring */
  readonly alarms?: {
    readonly maxMessageAgeSeconds?: { readonly fileEvents?: number; readonly signals?: number };
    /** Function errors in 5 minutes above this alarm. @default 0 */
    readonly maxErrors?: number;
    /** @default 0 */
    readonly maxThrottles?: number;
    /** @default 0 */
    readonly maxFilesFailed?: number;
    /** @default 3 */
    readonly pollerSilentPeriods?: number;
    /** @default 10000 */
    readonly maxKafkaOffsetLag?: number;
    /** @default 0 */
    readonly maxFilesStuck?: number;
  };
}

/**
 * The S3 side of a deployment: its routes, and how long the bucket keeps what the pipeline leaves behind.
 *
 * ```ts
 * s3: {
 *   routes: [
 *     { prefix: 'incoming/' },
 *     { prefix: 'eu/', include: ['eu/**\/*.csv'], mapping: { name: 'metric', value: 'val', timestamp: 'ts' },
 *       csv: { delimiter: ';' }, afterSuccess: { archivePrefix: 'archive/' } },
 *   ],
 * }
 * ```
 */
export interface S3Props {
  /**
   * Which keys are ingested, each route with its field mapping, CSV delimiter and after-success policy (the
   * first route that takes a key reads it; the bucket notifies under every route's prefix). The first
   * route must cover the notification canary's key (`incoming/.pulse-canary`).
   * @default one route: `{ prefix: 'incoming/' }` (every type the s3-trigger reads, fields by their own names, commas, keep)
   */
  readonly routes?: readonly S3Route[];
  /** Days the ingest bucket keeps objects the pipeline leaves behind (lifecycle rules). */
  readonly lifecycle?: {
    /** Objects under each route's archive prefix. @default settings.routes.archiveExpireDays (365) */
    readonly archiveExpireDays?: number;
    /** The quarantine (`rejects/`). @default settings.routes.rejectsExpireDays (90) */
    readonly rejectsExpireDays?: number;
    /** Noncurrent versions under each route's prefix (an object deleted or overwritten). @default settings.routes.noncurrentExpireDays (30) */
    readonly noncurrentExpireDays?: number;
  };
}

const int = (min: number, max = Number.MAX_SAFE_INTEGER) => z.number().int().min(min).max(max);
const queueSchema = z
  .object({
    batchSize: int(1, 10_000),
    maxBatchingWindowSeconds: int(0, 300),
    maxConcurrency: int(2, 1000),
    maxReceiveCount: int(1, 1000),
    retentionDays: int(1, 14),
  })
  .partial()
  .strict();
const size = z
  .object({ memoryMb: int(128, 10_240), timeoutSeconds: int(1, 900) })
  .partial()
  .strict();

const dbPollerTableSchema = z
  .object({
    table: z.string().regex(/^[A-Za-z_][A-Za-z0-9_]{0,62}$/, 'must be a plain SQL identifier'),
    mode: z.enum(['mark', 'watermark']).optional(),
    columns: DbColumnsSchema.partial().optional(),
    where: SqlFilterSchema.optional(),
    processedType: z.enum(['boolean', 'integer']).optional(),
    initialWatermark: InitialWatermarkSchema.optional(),
    scheduleRateMinutes: int(1, 1440).optional(),
  })
  .strict();

/** The shape and ranges of {@link PulseTuningProps}; unknown keys are refused (a typo is not a default). */
export const PulseTuningSchema = z
  .object({
    fileEvents: queueSchema,
    signals: queueSchema,
    functions: z
      .object({
        s3Trigger: size
          .extend({ reservedConcurrency: int(1) })
          .partial()
          .strict(),
        scorer: size,
        dbPoller: size,
        kafkaConsumer: size,
        ledgerSweep: size,
      })
      .partial()
      .strict(),
    ledger: z
      .object({
        maxAttempts: int(1, 100),
        leaseSeconds: int(1),
        heartbeatSeconds: int(1),
        checkpointSeconds: int(1),
      })
      .partial()
      .strict(),
    fanOut: z
      .object({ minBytes: int(1), partBytes: int(1) })
      .partial()
      .strict(),
    staging: z
      .object({ minBytes: int(1), objectBytes: int(1) })
      .partial()
      .strict(),
    scoring: z
      .object({ zThreshold: z.number().positive(), minSamples: int(1) })
      .partial()
      .strict(),
    dbPoller: z
      .object({
        scheduleRateMinutes: int(1, 1440),
        batchSize: int(1, 100_000),
        mode: z.enum(['mark', 'watermark']),
        table: z.string().regex(/^[A-Za-z_][A-Za-z0-9_]{0,62}$/, 'must be a plain SQL identifier'),
        columns: DbColumnsSchema.partial(),
        maxQueueDepth: int(1),
        watermarkLookbackSeconds: int(0),
        watermarkSkewSeconds: int(0),
        where: SqlFilterSchema,
        processedType: z.enum(['boolean', 'integer']),
        initialWatermark: InitialWatermarkSchema,
        tables: z.array(dbPollerTableSchema).min(1, 'lists no table'),
      })
      .partial()
      .strict(),
    kafkaConsumer: z
      .object({
        batchSize: int(1, 10_000),
        maxBatchingWindowSeconds: int(0, 300),
        maximumRetryAttempts: int(0, 10_000),
        valueFormat: z.enum(['json', 'avro', 'protobuf']),
        valueSchema: z.string().min(1),
        valueMessageType: z.string().min(1),
        mappings: KafkaMappingsSchema,
      })
      .partial()
      .strict(),
    sweep: z
      .object({
        scheduleRateMinutes: int(1, 1440),
        processingStuckSeconds: int(1),
        splitStuckSeconds: int(1),
        canaryGraceSeconds: int(1),
      })
      .partial()
      .strict(),
    receipts: z
      .object({ settleSeconds: int(1), maxFilesPerRun: int(1, 1000) })
      .partial()
      .strict(),
    retention: z
      .object({ logDays: int(1), dlqDays: int(1, 14), accessLogsDays: int(1), kafkaFailuresDays: int(1) })
      .partial()
      .strict(),
    s3: z
      .object({
        routes: S3RoutesSchema,
        lifecycle: z
          .object({ archiveExpireDays: int(1), rejectsExpireDays: int(1), noncurrentExpireDays: int(1) })
          .partial()
          .strict(),
      })
      .partial()
      .strict(),
    alarms: z
      .object({
        maxMessageAgeSeconds: z
          .object({ fileEvents: int(1), signals: int(1) })
          .partial()
          .strict(),
        maxErrors: int(0),
        maxThrottles: int(0),
        maxFilesFailed: int(0),
        pollerSilentPeriods: int(1),
        maxKafkaOffsetLag: int(0),
        maxFilesStuck: int(0),
      })
      .partial()
      .strict(),
  })
  .partial()
  .strict();

// The schema and the documented interface describe the same props.
type SchemaMatchesProps = z.infer<typeof PulseTuningSchema> extends PulseTuningProps ? true : never;
const schemaMatchesProps: SchemaMatchesProps = true;
void schemaMatchesProps;

/** A stage name: part of the stack name and of every name the deployment gives (alarms, Glue database). */
export const StageSchema = z
  .string()
  .regex(
    /^[a-z0-9](?:[a-z0-9-]{0,18}[a-z0-9])?$/,
    'must be 1-20 lowercase letters, digits or hyphens, starting and ending with a letter or digit',
  );

/** Every value of a deployment, resolved once: the props given, else `shared/settings.ts`. */
export interface PulseDeployment {
  /** `PulseIngest`, or `PulseIngest-<stage>`: prefix of alarm names and of the Glue database. */
  readonly name: string;
  readonly fileEvents: Required<ConsumedQueueProps>;
  readonly signals: Required<ConsumedQueueProps>;
  readonly functions: {
    readonly s3Trigger: Required<FunctionSizeProps> & { readonly reservedConcurrency: number | undefined };
    readonly scorer: Required<FunctionSizeProps>;
    readonly dbPoller: Required<FunctionSizeProps>;
    readonly kafkaConsumer: Required<FunctionSizeProps>;
    readonly ledgerSweep: Required<FunctionSizeProps>;
  };
  readonly ledger: Required<NonNullable<PulseTuningProps['ledger']>>;
  readonly fanOut: Required<NonNullable<PulseTuningProps['fanOut']>>;
  readonly staging: Required<NonNullable<PulseTuningProps['staging']>>;
  readonly scoring: Required<NonNullable<PulseTuningProps['scoring']>>;
  readonly dbPoller: Required<
    Pick<
      NonNullable<PulseTuningProps['dbPoller']>,
      | 'scheduleRateMinutes'
      | 'batchSize'
      | 'maxQueueDepth'
      | 'watermarkLookbackSeconds'
      | 'watermarkSkewSeconds'
    >
  > & {
    /** Every table polled (the one-table props make one), each with its schedule. */
    readonly tables: readonly DbPollerTable[];
  };
  readonly kafkaConsumer: Required<
    Pick<
      NonNullable<PulseTuningProps['kafkaConsumer']>,
      'batchSize' | 'maxBatchingWindowSeconds' | 'maximumRetryAttempts' | 'valueFormat'
    >
  > &
    Pick<NonNullable<PulseTuningProps['kafkaConsumer']>, 'valueSchema' | 'valueMessageType' | 'mappings'>;
  readonly sweep: Required<NonNullable<PulseTuningProps['sweep']>>;
  readonly receipts: Required<NonNullable<PulseTuningProps['receipts']>>;
  readonly retention: Required<NonNullable<PulseTuningProps['retention']>>;
  readonly alarms: Required<Omit<NonNullable<PulseTuningProps['alarms']>, 'maxMessageAgeSeconds'>> & {
    readonly maxMessageAgeSeconds: { readonly fileEvents: number; readonly signals: number };
  };
  /** The routes (checked: shared/routes.ts `checkRoutes`) and the bucket's lifecycle days. */
  readonly s3: {
    readonly routes: readonly S3Route[];
    readonly lifecycle: Required<NonNullable<S3Props['lifecycle']>>;
  };
}

/** One polled table, resolved: what DB_TABLES carries for it (infra/db-poller-env.ts), and its schedule. */
export type DbPollerTable = Required<
  Pick<DbPollerTableProps, 'table' | 'mode' | 'processedType' | 'scheduleRateMinutes'>
> &
  Pick<DbPollerTableProps, 'where' | 'initialWatermark'> & {
    /** Only the columns given (the function merges them over the defaults). @default none */
    readonly columns?: Readonly<Record<string, string>>;
  };

/** Thrown for props the deployment cannot be built with; the message names the prop. */
export class PulsePropsError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'PulsePropsError';
  }
}

/** The message of a Zod error: each issue as `path.to.prop: what is wrong`. */
export function describeIssues(error: z.ZodError, root = ''): string {
  return error.issues
    .map((i) => {
      const path = [root, ...i.path.map(String)].filter(Boolean).join('.');
      return path ? `${path}: ${i.message}` : i.message;
    })
    .join('; ');
}

/**
 * Checks the tuning props (shape, ranges, and the relations between them that the pipeline relies on) and
 * merges them over the settings. Throws {@link PulsePropsError} naming every prop that is wrong.
 */
export function resolveDeployment(tuning: PulseTuningProps, stage?: string): PulseDeployment {
  const parsed = PulseTuningSchema.safeParse(tuning);
  if (!parsed.success) throw new PulsePropsError(`PulseIngest props: ${describeIssues(parsed.error)}`);
  if (stage !== undefined) {
    const s = StageSchema.safeParse(stage);
    if (!s.success) throw new PulsePropsError(`PulseIngest props: stage: ${describeIssues(s.error)}`);
  }
  const p = parsed.data;
  const f = settings.functions;
  const m = settings.monitoring;
  const d: PulseDeployment = {
    name: stage ? `${settings.stackName}-${stage}` : settings.stackName,
    fileEvents: pickQueue(settings.fileEvents, p.fileEvents),
    signals: pickQueue(settings.signals, p.signals),
    functions: {
      s3Trigger: {
        memoryMb: f.s3Trigger.memoryMb,
        timeoutSeconds: f.s3Trigger.timeoutSeconds,
        reservedConcurrency: f.s3Trigger.reservedConcurrency,
        ...p.functions?.s3Trigger,
      },
      scorer: { ...f.scorer, ...p.functions?.scorer },
      dbPoller: { ...f.dbPoller, ...p.functions?.dbPoller },
      kafkaConsumer: { ...f.kafkaConsumer, ...p.functions?.kafkaConsumer },
      ledgerSweep: { ...f.ledgerSweep, ...p.functions?.ledgerSweep },
    },
    ledger: {
      maxAttempts: settings.ledger.maxAttempts,
      leaseSeconds: settings.ledger.leaseSeconds,
      heartbeatSeconds: settings.ledger.heartbeatSeconds,
      checkpointSeconds: settings.ledger.checkpointSeconds,
      ...p.ledger,
    },
    fanOut: { minBytes: settings.fanOut.minBytes, partBytes: settings.fanOut.partBytes, ...p.fanOut },
    staging: { minBytes: settings.staging.minBytes, objectBytes: settings.staging.objectBytes, ...p.staging },
    scoring: {
      zThreshold: settings.scoring.zThreshold,
      minSamples: settings.scoring.minSamples,
      ...p.scoring,
    },
    dbPoller: resolveDbPoller(p.dbPoller ?? {}),
    kafkaConsumer: {
      batchSize: settings.kafka.batchSize,
      maxBatchingWindowSeconds: settings.kafka.maxBatchingWindowSeconds,
      maximumRetryAttempts: settings.kafka.maximumRetryAttempts,
      valueFormat: 'json',
      ...p.kafkaConsumer,
    },
    sweep: {
      scheduleRateMinutes: settings.sweep.scheduleRateMinutes,
      processingStuckSeconds: settings.sweep.processingStuckSeconds,
      splitStuckSeconds: settings.sweep.splitStuckSeconds,
      canaryGraceSeconds: settings.sweep.canaryGraceSeconds,
      ...p.sweep,
    },
    receipts: {
      settleSeconds: settings.receipts.settleSeconds,
      maxFilesPerRun: settings.receipts.maxFilesPerRun,
      ...p.receipts,
    },
    retention: {
      logDays: settings.logRetentionDays,
      dlqDays: settings.dlqRetentionDays,
      accessLogsDays: settings.bucket.accessLogsRetentionDays,
      kafkaFailuresDays: settings.kafka.failures.retentionDays,
      ...p.retention,
    },
    alarms: {
      maxErrors: m.maxErrors,
      maxThrottles: m.maxThrottles,
      maxFilesFailed: m.maxFilesFailed,
      pollerSilentPeriods: m.pollerSilentPeriods,
      maxKafkaOffsetLag: m.maxKafkaOffsetLag,
      maxFilesStuck: m.maxFilesStuck,
      ...p.alarms,
      maxMessageAgeSeconds: { ...m.maxMessageAgeSeconds, ...p.alarms?.maxMessageAgeSeconds },
    },
    s3: resolveS3(p.s3),
  };
  const problems = [...relationProblems(d), ...dbTablesProblems(p.dbPoller ?? {}, d)];
  if (problems.length > 0) throw new PulsePropsError(`PulseIngest props: ${problems.join('; ')}`);
  return d;
}

/** The one-table keys of `dbPoller`, which `dbPoller.tables` replaces. */
const ONE_TABLE_KEYS = ['table', 'mode', 'columns', 'where', 'processedType', 'initialWatermark'] as const;

/** The db-poller's props resolved: the shared settings, and each table (one from the one-table keys). */
function resolveDbPoller(p: NonNullable<PulseTuningProps['dbPoller']>): PulseDeployment['dbPoller'] {
  const scheduleRateMinutes = p.scheduleRateMinutes ?? settings.dbPoller.scheduleRateMinutes;
  const entries: readonly DbPollerTableProps[] = p.tables ?? [
    {
      table: p.table ?? settings.dbPoller.table,
      ...(p.mode ? { mode: p.mode } : {}),
      ...(p.columns ? { columns: p.columns } : {}),
      ...(p.where !== undefined ? { where: p.where } : {}),
      ...(p.processedType ? { processedType: p.processedType } : {}),
      ...(p.initialWatermark !== undefined ? { initialWatermark: p.initialWatermark } : {}),
    },
  ];
  return {
    scheduleRateMinutes,
    batchSize: p.batchSize ?? settings.dbPoller.batchSize,
    maxQueueDepth: p.maxQueueDepth ?? settings.dbPoller.maxQueueDepth,
    watermarkLookbackSeconds: p.watermarkLookbackSeconds ?? settings.dbPoller.watermarkLookbackSeconds,
    watermarkSkewSeconds: p.watermarkSkewSeconds ?? settings.dbPoller.watermarkSkewSeconds,
    tables: entries.map((t) => ({
      table: t.table,
      mode: t.mode ?? settings.dbPoller.mode,
      processedType: t.processedType ?? settings.dbPoller.processedType,
      scheduleRateMinutes: t.scheduleRateMinutes ?? scheduleRateMinutes,
      ...(t.columns && Object.keys(t.columns).length > 0
        ? { columns: t.columns as Record<string, string> }
        : {}),
      ...(t.where !== undefined ? { where: t.where } : {}),
      ...(t.initialWatermark !== undefined ? { initialWatermark: t.initialWatermark } : {}),
    })),
  };
}

/**
 * What `dbPoller.tables` must not hold: one-table keys beside it (they would be ignored), a table twice (its
 * schedules would share one watermark item), an option of the other mode (ignored by the poller), and
 * more table settings than fit the function's environment.
 */
function dbTablesProblems(p: NonNullable<PulseTuningProps['dbPoller']>, d: PulseDeployment): string[] {
  const out: string[] = [];
  if (p.tables) {
    const beside = ONE_TABLE_KEYS.filter((k) => p[k] !== undefined);
    if (beside.length > 0) {
      out.push(
        `dbPoller.${beside.join(', dbPoller.')} cannot be given beside dbPoller.tables (they describe one table, and would be ignored): give them in each entry of dbPoller.tables`,
      );
    }
    const twice = duplicateTables(p.tables.map((t) => t.table));
    if (twice.length > 0) {
      out.push(`dbPoller.tables lists ${twice.map((t) => `"${t}"`).join(', ')} more than once`);
    }
    p.tables.forEach((t, i) => {
      const mode = t.mode ?? settings.dbPoller.mode;
      if (mode === 'mark' && t.initialWatermark !== undefined) {
        out.push(
          `dbPoller.tables[${i}] ("${t.table}"): initialWatermark applies to watermark mode, not mark`,
        );
      }
      if (mode === 'watermark' && t.processedType !== undefined) {
        out.push(`dbPoller.tables[${i}] ("${t.table}"): processedType applies to mark mode, not watermark`);
      }
    });
  }
  const bytes = Buffer.byteLength(encodeDbTables(d.dbPoller.tables), 'utf8');
  if (bytes > MAX_DB_TABLES_BYTES) {
    out.push(
      `dbPoller.tables: the tables' settings take ${bytes} bytes in the db-poller's environment (${ENV.dbTables}): at most ${MAX_DB_TABLES_BYTES} fit beside its other variables (Lambda allows 4 KB in all); shorten the filters or column names, or deploy a second stack for the other tables`,
    );
  }
  return out;
}

/**
 * The bytes of DB_TABLES that fit the db-poller's 4 KB environment: its other variables (the queue URL,
 * the secret ARN, the bucket and table names, a few numbers) take under 1 KB.
 */
export const MAX_DB_TABLES_BYTES = 3 * 1024;

/** The routes, checked as the s3-trigger checks them at cold start, and the lifecycle days. */
function resolveS3(s3: S3Props | undefined): PulseDeployment['s3'] {
  let routes: S3Route[];
  try {
    routes = checkRoutes(s3?.routes ?? DEFAULT_ROUTES);
  } catch (err) {
    if (err instanceof RoutesError) throw new PulsePropsError(`PulseIngest props: ${err.message}`);
    throw err;
  }
  return {
    routes,
    lifecycle: {
      archiveExpireDays: settings.routes.archiveExpireDays,
      rejectsExpireDays: settings.routes.rejectsExpireDays,
      noncurrentExpireDays: settings.routes.noncurrentExpireDays,
      ...s3?.lifecycle,
    },
  };
}

function pickQueue(
  defaults: Required<ConsumedQueueProps>,
  given: ConsumedQueueProps | undefined,
): Required<ConsumedQueueProps> {
  return {
    batchSize: defaults.batchSize,
    maxBatchingWindowSeconds: defaults.maxBatchingWindowSeconds,
    maxConcurrency: defaults.maxConcurrency,
    maxReceiveCount: defaults.maxReceiveCount,
    retentionDays: defaults.retentionDays,
    ...given,
  };
}

/** The bytes of a Kafka value schema that fit the kafka-consumer's 4 KB environment with its other variables. */
export const MAX_VALUE_SCHEMA_BYTES = 3 * 1024;

/** What the pipeline relies on between values (each holds for the settings' defaults). */
function relationProblems(d: PulseDeployment): string[] {
  const out: string[] = [];
  if (d.ledger.maxAttempts >= d.fileEvents.maxReceiveCount) {
    out.push(
      `ledger.maxAttempts (${d.ledger.maxAttempts}) must be below fileEvents.maxReceiveCount (${d.fileEvents.maxReceiveCount}): the last attempt must end the file FAILED before its event moves to the DLQ`,
    );
  }
  if (d.ledger.heartbeatSeconds >= d.ledger.leaseSeconds) {
    out.push(
      `ledger.heartbeatSeconds (${d.ledger.heartbeatSeconds}) must be below ledger.leaseSeconds (${d.ledger.leaseSeconds})`,
    );
  }
  const handOver = settings.ledger.handOverBeforeTimeoutSeconds;
  if (d.functions.s3Trigger.timeoutSeconds <= 2 * handOver) {
    out.push(
      `functions.s3Trigger.timeoutSeconds (${d.functions.s3Trigger.timeoutSeconds}) must exceed twice the hand-over margin (${handOver} s): a long file hands over ${handOver} s before the timeout, and each invocation must get real work done first`,
    );
  }
  const margin = settings.scoring.deadlineMarginSeconds;
  if (d.functions.scorer.timeoutSeconds <= 2 * margin) {
    out.push(
      `functions.scorer.timeoutSeconds (${d.functions.scorer.timeoutSeconds}) must exceed twice the scorer's deadline margin (${margin} s): it starts no transaction with less than that left`,
    );
  }
  const visibility = visibilityTimeoutFor(d.functions.s3Trigger.timeoutSeconds);
  if (d.sweep.processingStuckSeconds <= Math.max(d.ledger.leaseSeconds, visibility)) {
    out.push(
      `sweep.processingStuckSeconds (${d.sweep.processingStuckSeconds}) must exceed the lease (${d.ledger.leaseSeconds} s) and the file-events visibility timeout (${visibility} s), or live work is reported stuck`,
    );
  }
  const { watermarkLookbackSeconds: lookback, watermarkSkewSeconds: skew } = d.dbPoller;
  if (lookback > 0 && skew >= lookback) {
    out.push(
      `dbPoller.watermarkSkewSeconds (${skew}) must be below dbPoller.watermarkLookbackSeconds (${lookback})`,
    );
  }
  const k = d.kafkaConsumer;
  if (k.valueFormat !== 'json' && !k.valueSchema) {
    out.push(`kafkaConsumer.valueSchema is needed for ${k.valueFormat} values`);
  }
  if (k.valueFormat === 'protobuf' && !k.valueMessageType) {
    out.push('kafkaConsumer.valueMessageType is needed for protobuf values');
  }
  // Lambda allows 4 KB of environment variables per function, names and values together; the schema
  // travels in one (KAFKA_VALUE_SCHEMA) beside the queue URL, the bucket and the others (under 1 KB).
  const schemaBytes =
    Buffer.byteLength(k.valueSchema ?? '', 'utf8') +
    (k.mappings ? Buffer.byteLength(JSON.stringify(k.mappings), 'utf8') : 0);
  if (schemaBytes > MAX_VALUE_SCHEMA_BYTES) {
    out.push(
      `kafkaConsumer.valueSchema${k.mappings ? ' and mappings are' : ' is'} ${schemaBytes} bytes: at most ${MAX_VALUE_SCHEMA_BYTES} fit the kafka-consumer's environment (Lambda allows 4 KB in all)`,
    );
  }
  return out;
}
