import * as z from 'zod';
import type { SchemaRegistryEnv } from '#shared/kafka-registry.ts';

/**
 * A schema registry the Kafka event source mapping validates records against before it invokes the
 * kafka-consumer (`KafkaSchemaRegistryConfig` of `AmazonManagedKafkaEventSourceConfig` /
 * `SelfManagedKafkaEventSourceConfig`; "Using schema registries with Kafka event sources in Lambda").
 * Provisioned pollers only: Lambda refuses a registry on an on-demand mapping.
 *
 * What Lambda does per record: it looks the record's schema up in the registry (a schema it cannot find
 * sends the record to the on-failure destination with `SCHEMA_NOT_FOUND`), deserializes it (a failure
 * sends it there with `DESERIALIZATION_ERROR`; without a destination the record is dropped), then
 * invokes the function with the value as JSON text (`recordFormat: 'JSON'`) or as the bare Avro /
 * Protobuf bytes without the registry's framing (`'SOURCE'`), and `valueSchemaMetadata` ({ dataFormat,
 * schemaId }) on the record.
 */
export type KafkaSchemaRegistry = (
  | {
      /** Confluent Cloud, or a self-managed Confluent Schema Registry. */
      readonly kind: 'confluent';
      /** The registry's URL, `https://…` (Lambda's `SchemaRegistryURI`). */
      readonly url: string;
      /**
       * How Lambda authenticates: HTTP basic auth (`BASIC_AUTH`: a secret with `username` and `password`,
       * Confluent Cloud's API key and secret) or a client certificate (`CLIENT_CERTIFICATE_TLS_AUTH`: a
       * secret with the certificate chain and private key). @default none: an open registry
       */
      readonly authentication?: 'BASIC_AUTH' | 'CLIENT_CERTIFICATE_TLS_AUTH';
      /** The secret `authentication` reads; needed with it. @default none */
      readonly secretArn?: string;
      /** A secret with the root CA (PEM) of a registry whose certificate a private CA signs. @default none */
      readonly rootCaSecretArn?: string;
    }
  | {
      /** An AWS Glue Schema Registry, read with the function's role (glue:GetRegistry, glue:GetSchemaVersion). */
      readonly kind: 'glue';
      /** `arn:aws:glue:<region>:<account>:registry/<name>` */
      readonly registryArn: string;
    }
) & {
  /**
   * What the function gets: `JSON`, the record deserialized by Lambda with its writer's schema from the
   * registry (old and new schema versions alike; the kafka-consumer reads it as a JSON value), or
   * `SOURCE`, the Avro / Protobuf bytes without the registry's framing (the kafka-consumer decodes them
   * with `kafkaConsumer.valueSchema`, one fixed schema). @default 'JSON'
   */
  readonly recordFormat?: 'JSON' | 'SOURCE';
  /**
   * Which parts of a record Lambda validates (and deserializes) through the registry. Pulse reads the
   * value; a key validated too reaches the function in the same format. @default ['VALUE']
   */
  readonly validate?: readonly ('KEY' | 'VALUE')[];
};

/** `arn:<partition>:glue:<region>:<account>:registry/<name>` (CDK's GlueSchemaRegistry checks the same). */
const GLUE_REGISTRY_ARN = /^arn:[^:]+:glue:[^:]+:[^:]+:registry\/([^/]+)$/;
/** Lambda's `SchemaRegistryURI`: 1..10000 of `[a-zA-Z0-9-/*:_+=.@]` (KafkaSchemaRegistryConfig API). */
const SCHEMA_REGISTRY_URI = /^[a-zA-Z0-9\-/*:_+=.@]{1,10000}$/;
/** A Secrets Manager secret ARN (Lambda's pattern for an access config's URI, simplified). */
const SECRET_ARN = /^arn:aws[a-zA-Z0-9-]*:secretsmanager:[a-z0-9-]+:\d{12}:secret:.+$/;

/** What Lambda would refuse in a schema registry on a mapping of this poller mode: one line each. */
export function schemaRegistryProblems(
  r: KafkaSchemaRegistry,
  pollerMode: 'provisioned' | 'on-demand',
): string[] {
  const problems: string[] = [];
  if (pollerMode !== 'provisioned') {
    problems.push(
      'kafka.schemaRegistry needs provisioned pollers: Lambda refuses a schema registry on an on-demand Kafka mapping',
    );
  }
  if (r.kind === 'confluent') {
    if (!/^https?:\/\/[^\s/]+/.test(r.url)) {
      problems.push(`kafka.schemaRegistry.url: "${r.url}" is not an http(s) URL`);
    } else if (!SCHEMA_REGISTRY_URI.test(r.url)) {
      problems.push(
        `kafka.schemaRegistry.url: "${r.url}" has characters Lambda's SchemaRegistryURI refuses (only a-z A-Z 0-9 - / * : _ + = . @)`,
      );
    }
    if ((r.authentication === undefined) !== (r.secretArn === undefined)) {
      problems.push('kafka.schemaRegistry: authentication and secretArn go together');
    }
    for (const [name, arn] of [
      ['secretArn', r.secretArn],
      ['rootCaSecretArn', r.rootCaSecretArn],
    ] as const) {
      if (arn !== undefined && !SECRET_ARN.test(arn)) {
        problems.push(`kafka.schemaRegistry.${name}: "${arn}" is not a Secrets Manager secret ARN`);
      }
    }
  } else if (!GLUE_REGISTRY_ARN.test(r.registryArn)) {
    problems.push(
      `kafka.schemaRegistry.registryArn: "${r.registryArn}" is not a Glue registry ARN (arn:aws:glue:<region>:<account>:registry/<name>)`,
    );
  }
  const validate = r.validate ?? ['VALUE'];
  if (validate.length === 0 || new Set(validate).size !== validate.length) {
    problems.push('kafka.schemaRegistry.validate: KEY and/or VALUE, each once');
  }
  return problems;
}

/** What the kafka-consumer is told of the registry (`KAFKA_SCHEMA_REGISTRY`). */
export function schemaRegistryEnv(r: KafkaSchemaRegistry): SchemaRegistryEnv {
  return { kind: r.kind, recordFormat: r.recordFormat ?? 'JSON', validate: [...(r.validate ?? ['VALUE'])] };
}

/**
 * What a registry's record format asks of the kafka-consumer's value format: `JSON` hands it JSON text
 * whatever the producers wrote, so the values are read as `json`; `SOURCE` hands it the bare bytes of the
 * registry's format, which `kafkaConsumer.valueFormat` (with its schema) must name.
 */
export function registryValueFormatProblems(
  r: KafkaSchemaRegistry,
  valueFormat: 'json' | 'avro' | 'protobuf',
): string[] {
  if (
    (r.recordFormat ?? 'JSON') === 'JSON' &&
    valueFormat !== 'json' &&
    (r.validate ?? ['VALUE']).includes('VALUE')
  ) {
    return [
      `kafkaConsumer.valueFormat must be json with kafka.schemaRegistry.recordFormat JSON (Lambda delivers each value deserialized, as JSON); it is ${valueFormat}`,
    ];
  }
  return [];
}

/** The shape of {@link KafkaSchemaRegistry}, for context (`-c kafkaSchemaRegistry='<json>'`); values are checked by {@link schemaRegistryProblems}. */
export const KafkaSchemaRegistrySchema = z
  .discriminatedUnion('kind', [
    z.strictObject({
      kind: z.literal('confluent'),
      url: z.string(),
      authentication: z.enum(['BASIC_AUTH', 'CLIENT_CERTIFICATE_TLS_AUTH']).optional(),
      secretArn: z.string().optional(),
      rootCaSecretArn: z.string().optional(),
      recordFormat: z.enum(['JSON', 'SOURCE']).optional(),
      validate: z.array(z.enum(['KEY', 'VALUE'])).optional(),
    }),
    z.strictObject({
      kind: z.literal('glue'),
      registryArn: z.string(),
      recordFormat: z.enum(['JSON', 'SOURCE']).optional(),
      validate: z.array(z.enum(['KEY', 'VALUE'])).optional(),
    }),
  ])
  .transform((r) => r as KafkaSchemaRegistry);
