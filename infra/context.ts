import * as z from 'zod';
import { settings } from '#shared/settings.ts';
import { type ExistingBucketSource, existingBucketsOf } from './existing-buckets.ts';
import { type KafkaSchemaRegistry, KafkaSchemaRegistrySchema } from './kafka-schema-registry.ts';
import {
  type DatabaseSource,
  describeIssues,
  type KafkaPollers,
  type KafkaSource,
  PulseTuningSchema,
  StageSchema,
} from './props.ts';
import type { PulseIngestProps } from './pulse-ingest.ts';
import { stackNameFor } from './pulse-stack.ts';

/**
 * The project's app reads its deployment from context (`cdk.json`'s `context`, and `-c key=value`, which
 * wins), checks it once and turns it into {@link PulseIngestProps}. Nothing is looked up, so `cdk synth`
 * stays offline.
 *
 * | context | becomes |
 * | --- | --- |
 * | `stage` | `stage` (and the stack name `PulseIngest-<stage>`) |
 * | `alarmEmail` | `alarmEmail` |
 * | `dbSecretArn`, `dbVpcId`, `dbSubnetIds` (comma-separated), `dbSecurityGroupId` | `database` |
 * | `mskClusterArn`, or `kafkaBootstrapServers` (comma-separated) and `kafkaSecretArn`, `kafkaAuthentication` (SASL_SCRAM_512, SASL_SCRAM_256, MTLS), `kafkaRootCaSecretArn`; `kafkaTopic` (comma-separated for several); `kafkaConsumerGroupId`; `kafkaStartingPosition`, `kafkaStartingTimestamp`; `kafkaPollerMode`, `kafkaMinPollers`, `kafkaMaxPollers` | `kafka` |
 * | `kafkaSchemaRegistry`: an object or its JSON text (`-c kafkaSchemaRegistry='{"kind":"glue","registryArn":"arn:aws:glue:…:registry/x"}'`) | `kafka.schemaRegistry` |
 * | `existingBuckets`: an array (in cdk.json) or its JSON text (`-c existingBuckets='[{"bucket":"my-data","prefixes":["in/"],"notifications":"eventbridge"}]'`) | `existingBuckets` |
 * | `pulse`: an object (in cdk.json) or its JSON text (`-c pulse='{"scoring":{"zThreshold":4}}'`) | every tuning prop (`scoring`, `signals`, `alarms`, …) |
 */

/** The project's stack, as the context describes it. */
export interface PulseAppContext {
  /** `PulseIngest`, or `PulseIngest-<stage>`. */
  readonly stackName: string;
  readonly props: PulseIngestProps;
}

/** Thrown for context the app cannot be built from; the message names the `-c` key. */
export class PulseContextError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'PulseContextError';
  }
}

/** A context value as a trimmed string; empty (or absent) is absent. */
const text = z
  .unknown()
  .transform((v) => (typeof v === 'string' ? v.trim() : v))
  .pipe(z.union([z.string(), z.undefined(), z.null()]))
  .transform((v) => (v ? v : undefined));
/** A comma-separated list (its empty items dropped). */
const list = text.transform((v) =>
  v
    ?.split(',')
    .map((s) => s.trim())
    .filter(Boolean),
);
const count = (key: string, max: number) =>
  z
    .union([z.number(), text])
    .transform((v) => (v === undefined ? undefined : Number(v)))
    .refine((n) => n === undefined || (Number.isInteger(n) && n >= 1 && n <= max), {
      message: `-c ${key} must be 1..${max}`,
    });

const ContextSchema = z.object({
  stage: text.pipe(z.union([StageSchema, z.undefined()])),
  alarmEmail: text.pipe(z.union([z.email('must be an e-mail address'), z.undefined()])),
  dbSecretArn: text,
  dbVpcId: text,
  dbSubnetIds: list,
  dbSecurityGroupId: text,
  mskClusterArn: text,
  kafkaBootstrapServers: list,
  kafkaSecretArn: text,
  kafkaTopic: list,
  kafkaConsumerGroupId: text,
  kafkaAuthentication: text.pipe(
    z.union([z.enum(['SASL_SCRAM_512', 'SASL_SCRAM_256', 'MTLS']), z.undefined()], {
      error: (iss) =>
        `-c kafkaAuthentication must be SASL_SCRAM_512, SASL_SCRAM_256 or MTLS, got ${String(iss.input)}`,
    }),
  ),
  kafkaRootCaSecretArn: text,
  kafkaStartingPosition: text.pipe(
    z.union([z.enum(['TRIM_HORIZON', 'LATEST', 'AT_TIMESTAMP']), z.undefined()], {
      error: (iss) =>
        `-c kafkaStartingPosition must be TRIM_HORIZON, LATEST or AT_TIMESTAMP, got ${String(iss.input)}`,
    }),
  ),
  /** Unix seconds, or ISO-8601 with a zone. */
  kafkaStartingTimestamp: z
    .union([z.number(), text])
    .transform((v) =>
      v === undefined
        ? undefined
        : /^\d+(\.\d+)?$/.test(String(v))
          ? Number(v)
          : Date.parse(String(v)) / 1000,
    )
    .refine((n) => n === undefined || Number.isFinite(n), {
      message: '-c kafkaStartingTimestamp must be Unix seconds or ISO-8601 (2026-01-01T00:00:00Z)',
    }),
  kafkaPollerMode: text.pipe(
    z.union([z.enum(['provisioned', 'on-demand']), z.undefined()], {
      error: (iss) => `-c kafkaPollerMode must be provisioned or on-demand, got ${String(iss.input)}`,
    }),
  ),
  kafkaMinPollers: count('kafkaMinPollers', 200),
  kafkaMaxPollers: count('kafkaMaxPollers', 2000),
  /** JSON of `kafka.schemaRegistry` (infra/kafka-schema-registry.ts). */
  kafkaSchemaRegistry: z.unknown(),
  pulse: z.unknown(),
  existingBuckets: z.unknown(),
});

/** Reads and checks the app's context. Throws {@link PulseContextError} saying which key is wrong and why. */
export function pulseContext(get: (key: string) => unknown): PulseAppContext {
  const raw = Object.fromEntries(Object.keys(ContextSchema.shape).map((k) => [k, get(k)]));
  const parsed = ContextSchema.safeParse(raw);
  if (!parsed.success) {
    throw new PulseContextError(
      parsed.error.issues
        .map((i) => (i.message.startsWith('-c ') ? i.message : `-c ${i.path.join('.')}: ${i.message}`))
        .join('; '),
    );
  }
  const c = parsed.data;
  const tuning = tuningOf(c.pulse);
  const database = databaseOf(c);
  const kafka = kafkaOf(c);
  const existingBuckets = existingBucketsContext(c.existingBuckets);
  return {
    stackName: stackNameFor(c.stage),
    props: {
      ...tuning,
      ...(c.stage ? { stage: c.stage } : {}),
      ...(c.alarmEmail ? { alarmEmail: c.alarmEmail } : {}),
      ...(database ? { database } : {}),
      ...(kafka ? { kafka } : {}),
      ...(existingBuckets ? { existingBuckets } : {}),
    },
  };
}

/** `existingBuckets`: an array, or its JSON text (infra/existing-buckets.ts). */
function existingBucketsContext(value: unknown): ExistingBucketSource[] | undefined {
  try {
    return existingBucketsOf(value);
  } catch (err) {
    const reason = err instanceof z.ZodError ? describeIssues(err) : (err as Error).message;
    throw new PulseContextError(`-c existingBuckets: ${reason}`);
  }
}

type Context = z.infer<typeof ContextSchema>;

/** `pulse`: an object, or its JSON text (a `-c` value is always text). */
function tuningOf(value: unknown): z.infer<typeof PulseTuningSchema> {
  if (value === undefined || value === null || value === '') return {};
  let object = value;
  if (typeof value === 'string') {
    try {
      object = JSON.parse(value);
    } catch (err) {
      throw new PulseContextError(`-c pulse must be JSON: ${(err as Error).message}`);
    }
  }
  const parsed = PulseTuningSchema.safeParse(object);
  if (!parsed.success) throw new PulseContextError(`-c pulse: ${describeIssues(parsed.error)}`);
  return parsed.data;
}

function databaseOf(c: Context): DatabaseSource | undefined {
  if (!c.dbSecretArn) {
    if (c.dbVpcId || c.dbSubnetIds?.length || c.dbSecurityGroupId) {
      throw new PulseContextError('-c dbVpcId, dbSubnetIds and dbSecurityGroupId need -c dbSecretArn');
    }
    return undefined;
  }
  if (c.dbVpcId && !c.dbSubnetIds?.length) {
    throw new PulseContextError('-c dbVpcId needs -c dbSubnetIds=subnet-a,subnet-b');
  }
  return {
    secretArn: c.dbSecretArn,
    ...(c.dbVpcId ? { vpcId: c.dbVpcId } : {}),
    ...(c.dbSubnetIds ? { subnetIds: c.dbSubnetIds } : {}),
    ...(c.dbSecurityGroupId ? { securityGroupId: c.dbSecurityGroupId } : {}),
  };
}

function kafkaOf(c: Context): KafkaSource | undefined {
  // `-c kafkaTopic=a,b`: several topics into one pipeline (one mapping each).
  const topic = !c.kafkaTopic?.length
    ? settings.kafka.topic
    : c.kafkaTopic.length === 1
      ? (c.kafkaTopic[0] ?? '')
      : c.kafkaTopic;
  const pollers = pollersOf(c);
  const registry = schemaRegistryOf(c.kafkaSchemaRegistry);
  const group = {
    ...(registry ? { schemaRegistry: registry } : {}),
    ...(c.kafkaConsumerGroupId ? { consumerGroupId: c.kafkaConsumerGroupId } : {}),
    ...(c.kafkaStartingPosition ? { startingPosition: c.kafkaStartingPosition } : {}),
    ...(c.kafkaStartingTimestamp !== undefined
      ? { startingPositionTimestamp: c.kafkaStartingTimestamp }
      : {}),
  };
  if (c.mskClusterArn) {
    if (c.kafkaAuthentication || c.kafkaRootCaSecretArn) {
      throw new PulseContextError(
        '-c kafkaAuthentication and kafkaRootCaSecretArn apply to self-managed Kafka (-c kafkaBootstrapServers) only: MSK is read with the function role (IAM)',
      );
    }
    return { kind: 'msk', clusterArn: c.mskClusterArn, topic, pollers, ...group };
  }
  if (c.kafkaBootstrapServers?.length) {
    if (!c.kafkaSecretArn) {
      throw new PulseContextError(
        '-c kafkaBootstrapServers needs -c kafkaSecretArn (SASL/SCRAM credentials)',
      );
    }
    return {
      kind: 'self-managed',
      bootstrapServers: c.kafkaBootstrapServers,
      topic,
      secretArn: c.kafkaSecretArn,
      pollers,
      ...group,
      ...(c.kafkaAuthentication ? { authentication: c.kafkaAuthentication } : {}),
      ...(c.kafkaRootCaSecretArn ? { rootCaSecretArn: c.kafkaRootCaSecretArn } : {}),
    };
  }
  if (c.kafkaConsumerGroupId) {
    throw new PulseContextError('-c kafkaConsumerGroupId needs -c mskClusterArn or -c kafkaBootstrapServers');
  }
  if (registry) {
    throw new PulseContextError('-c kafkaSchemaRegistry needs -c mskClusterArn or -c kafkaBootstrapServers');
  }
  return undefined;
}

/** `-c kafkaSchemaRegistry`: an object (in cdk.json) or its JSON text. */
function schemaRegistryOf(value: unknown): KafkaSchemaRegistry | undefined {
  if (value === undefined || value === null || value === '') return undefined;
  let object = value;
  if (typeof value === 'string') {
    try {
      object = JSON.parse(value);
    } catch (err) {
      throw new PulseContextError(`-c kafkaSchemaRegistry must be JSON: ${(err as Error).message}`);
    }
  }
  const parsed = KafkaSchemaRegistrySchema.safeParse(object);
  if (!parsed.success) throw new PulseContextError(`-c kafkaSchemaRegistry: ${describeIssues(parsed.error)}`);
  return parsed.data;
}

/** The pollers, checked as Lambda would check them. */
function pollersOf(c: Context): KafkaPollers {
  const mode = c.kafkaPollerMode ?? settings.kafka.pollerMode;
  const { kafkaMinPollers: minimum, kafkaMaxPollers: maximum } = c;
  if (mode === 'on-demand') {
    if (minimum !== undefined || maximum !== undefined) {
      throw new PulseContextError(
        '-c kafkaMinPollers / kafkaMaxPollers apply to -c kafkaPollerMode=provisioned only',
      );
    }
    return { mode };
  }
  const min = minimum ?? settings.kafka.provisionedPollers.minimum;
  const max = maximum ?? Math.max(min, settings.kafka.provisionedPollers.maximum);
  if (min > max) {
    throw new PulseContextError(`-c kafkaMinPollers (${min}) must not exceed -c kafkaMaxPollers (${max})`);
  }
  return { mode, minimum: min, maximum: max };
}
