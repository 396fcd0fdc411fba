import {
  EventRecordFormat,
  type IEventSourceMapping,
  type IFunction,
  type ISchemaRegistry,
  KafkaSchemaRegistryAccessConfigType,
  type KafkaSchemaRegistryConfig,
  KafkaSchemaValidationAttribute,
} from 'aws-cdk-lib/aws-lambda';
import { GlueSchemaRegistry } from 'aws-cdk-lib/aws-lambda-event-sources';
import { type ISecret, Secret } from 'aws-cdk-lib/aws-secretsmanager';
import { NagSuppressions } from 'cdk-nag';
import type { Construct, IConstruct } from 'constructs';
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
 * The registry as CDK's event sources take it (`schemaRegistryConfig`). Glue: CDK's own, which grants the
 * function's role glue:GetRegistry on the registry and glue:GetSchemaVersion on it and its schemas.
 * Confluent: {@link ConfluentRegistry}, since CDK's requires a secret (an open registry has none) and
 * takes one access config (a private root CA needs a second).
 */
export function schemaRegistryOf(scope: Construct, r: KafkaSchemaRegistry): ISchemaRegistry {
  const eventRecordFormat = r.recordFormat === 'SOURCE' ? EventRecordFormat.SOURCE : EventRecordFormat.JSON;
  const schemaValidationConfigs = (r.validate ?? ['VALUE']).map((a) => ({
    attribute: a === 'KEY' ? KafkaSchemaValidationAttribute.KEY : KafkaSchemaValidationAttribute.VALUE,
  }));
  if (r.kind === 'glue') {
    return new GlueSchemaRegistry({
      schemaRegistryArn: r.registryArn,
      eventRecordFormat,
      schemaValidationConfigs,
    });
  }
  const secrets: [KafkaSchemaRegistryAccessConfigType, ISecret][] = [];
  if (r.authentication && r.secretArn) {
    secrets.push([
      KafkaSchemaRegistryAccessConfigType[r.authentication],
      Secret.fromSecretCompleteArn(scope, 'SchemaRegistrySecret', r.secretArn),
    ]);
  }
  if (r.rootCaSecretArn) {
    secrets.push([
      KafkaSchemaRegistryAccessConfigType.SERVER_ROOT_CA_CERTIFICATE,
      Secret.fromSecretCompleteArn(scope, 'SchemaRegistryRootCa', r.rootCaSecretArn),
    ]);
  }
  return new ConfluentRegistry(r.url, eventRecordFormat, schemaValidationConfigs, secrets);
}

/**
 * A Confluent registry with any of Lambda's access configs (none, an auth secret, a root CA, or both):
 * the pollers read each secret with the function's role, so each is granted to it.
 */
class ConfluentRegistry implements ISchemaRegistry {
  constructor(
    private readonly url: string,
    private readonly eventRecordFormat: EventRecordFormat,
    private readonly schemaValidationConfigs: KafkaSchemaRegistryConfig['schemaValidationConfigs'],
    private readonly secrets: readonly [KafkaSchemaRegistryAccessConfigType, ISecret][],
  ) {}

  bind(_target: IEventSourceMapping, targetHandler: IFunction): KafkaSchemaRegistryConfig {
    for (const [, secret] of this.secrets) secret.grantRead(targetHandler);
    return {
      schemaRegistryUri: this.url,
      eventRecordFormat: this.eventRecordFormat,
      schemaValidationConfigs: this.schemaValidationConfigs,
      ...(this.secrets.length > 0
        ? { accessConfigs: this.secrets.map(([type, secret]) => ({ type, uri: secret.secretArn })) }
        : {}),
    };
  }
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

/**
 * cdk-nag IAM5 on exactly the Glue registry's schemas (`schema/<registry>/*`), which CDK's
 * GlueSchemaRegistry grants glue:GetSchemaVersion on: Lambda reads the writer's schema version of each
 * record by its id, and those versions are the registry's schemas, named by the producers, not the stack.
 */
export function suppressGlueSchemaVersions(role: IConstruct): void {
  NagSuppressions.addResourceSuppressions(
    role,
    [
      {
        id: 'AwsSolutions-IAM5',
        reason:
          "The Kafka event source mapping reads each record's schema version (glue:GetSchemaVersion) from the configured Glue registry's schemas, which producers register: the grant is on that registry's schemas only (schema/<registry>/*).",
        appliesTo: [{ regex: '/^Resource::.*:schema\\/\\$\\{registryName\\}\\/\\*.*$/' }],
      },
    ],
    true,
  );
}
