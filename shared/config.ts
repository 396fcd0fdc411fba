import { z } from 'zod';
import { ConfigError } from './errors.ts';
import { settings } from './settings.ts';

/**
 * The one place that reads `process.env`. Each function loads its configuration once, at cold start,
 * and gets a typed object or a {@link ConfigError} naming the variable that is missing or wrong.
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

const bool = z
  .enum(['true', 'false', '1', '0', ''])
  .optional()
  .transform((v) => v === 'true' || v === '1');

const common = {
  /** Local emulators want path-style S3 URLs (`http://127.0.0.1:port/bucket/key`). */
  S3_FORCE_PATH_STYLE: bool,
  POWERTOOLS_SERVICE_NAME: z.string().optional(),
};

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
}

export interface S3TriggerConfig extends ClientConfig {
  readonly signalsQueueUrl: string;
  readonly ledgerTable: string;
  readonly quarantineBucket: string;
  readonly leaseSeconds: number;
  readonly heartbeatSeconds: number;
  readonly maxAttempts: number;
  readonly maxMessageBytes: number;
}

/** Reads the s3-trigger's configuration. Throws ConfigError when a variable is missing. */
export function loadS3TriggerConfig(env: Env = process.env): S3TriggerConfig {
  const c = parse(
    {
      ...common,
      SIGNALS_QUEUE_URL: required('SIGNALS_QUEUE_URL'),
      LEDGER_TABLE: required('LEDGER_TABLE'),
      QUARANTINE_BUCKET: required('QUARANTINE_BUCKET'),
      LEDGER_LEASE_SECONDS: positiveInt('LEDGER_LEASE_SECONDS', settings.ledger.leaseSeconds),
      LEDGER_HEARTBEAT_SECONDS: positiveInt('LEDGER_HEARTBEAT_SECONDS', settings.ledger.heartbeatSeconds),
      LEDGER_MAX_ATTEMPTS: positiveInt('LEDGER_MAX_ATTEMPTS', settings.ledger.maxAttempts),
      SIGNALS_MAX_MESSAGE_BYTES: positiveInt('SIGNALS_MAX_MESSAGE_BYTES', settings.signals.maxMessageBytes),
    },
    env,
  );
  return {
    s3ForcePathStyle: c.S3_FORCE_PATH_STYLE,
    signalsQueueUrl: c.SIGNALS_QUEUE_URL,
    ledgerTable: c.LEDGER_TABLE,
    quarantineBucket: c.QUARANTINE_BUCKET,
    leaseSeconds: c.LEDGER_LEASE_SECONDS,
    heartbeatSeconds: c.LEDGER_HEARTBEAT_SECONDS,
    maxAttempts: c.LEDGER_MAX_ATTEMPTS,
    maxMessageBytes: c.SIGNALS_MAX_MESSAGE_BYTES,
  };
}

export interface ScorerConfig extends ClientConfig {
  readonly scoresTable: string;
  readonly quarantineBucket: string;
  readonly zThreshold: number;
  readonly minSamples: number;
  readonly scoreTtlDays: number;
}

/** Reads the scorer's configuration. Throws ConfigError when a variable is missing. */
export function loadScorerConfig(env: Env = process.env): ScorerConfig {
  const c = parse(
    {
      ...common,
      SCORES_TABLE: required('SCORES_TABLE'),
      QUARANTINE_BUCKET: required('QUARANTINE_BUCKET'),
      Z_THRESHOLD: z.coerce
        .number({ error: 'Z_THRESHOLD must be a number' })
        .positive('Z_THRESHOLD must be positive')
        .default(settings.scoring.zThreshold),
      MIN_SAMPLES: positiveInt('MIN_SAMPLES', settings.scoring.minSamples),
      SCORE_TTL_DAYS: positiveInt('SCORE_TTL_DAYS', settings.scoring.scoreTtlDays),
    },
    env,
  );
  return {
    s3ForcePathStyle: c.S3_FORCE_PATH_STYLE,
    scoresTable: c.SCORES_TABLE,
    quarantineBucket: c.QUARANTINE_BUCKET,
    zThreshold: c.Z_THRESHOLD,
    minSamples: c.MIN_SAMPLES,
    scoreTtlDays: c.SCORE_TTL_DAYS,
  };
}
