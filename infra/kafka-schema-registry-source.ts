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
import type { KafkaSchemaRegistry } from './kafka-schema-registry.ts';

// The CDK side of `kafka.schemaRegistry`: kafka-schema-registry.ts holds the props and their checks,
// which the pulse CLI loads without aws-cdk-lib.

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
