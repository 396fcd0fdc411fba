import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { App, Aspects, Stack } from 'aws-cdk-lib';
import { Annotations, Match, Template } from 'aws-cdk-lib/assertions';
import { AwsSolutionsChecks } from 'cdk-nag';
import { describe, expect, it } from 'vitest';
import { loadKafkaConsumerConfig } from '#shared/config.ts';
import { ENV } from '#shared/contract.ts';
import { REPO_ROOT } from '../../infra/constructs/pulse-function.ts';
import { pulseContext } from '../../infra/context.ts';
import type { KafkaSchemaRegistry } from '../../infra/kafka-schema-registry.ts';
import type { KafkaSource } from '../../infra/props.ts';
import { PulseIngest, type PulseIngestProps } from '../../infra/pulse-ingest.ts';
import { runtimeEnv } from '../../local/runtime/runtime.ts';
import { localStateFactory } from '../helpers/factories.ts';

type Json = Record<string, unknown>;
type Resource = { Type: string; Properties: Json };

const cdkJson = JSON.parse(readFileSync(join(REPO_ROOT, 'cdk.json'), 'utf8')) as { context: Json };

function build(props: PulseIngestProps, nag = false): Stack {
  const app = new App({ context: { ...cdkJson.context, 'aws:cdk:bundling-stacks': [] } });
  const stack = new Stack(app, 'RegistryStack', { env: { account: '123456789012', region: 'eu-west-1' } });
  new PulseIngest(stack, 'Pulse', props);
  if (nag) Aspects.of(app).add(new AwsSolutionsChecks({ verbose: true }));
  return stack;
}
const resources = (t: Template) => Object.values(t.toJSON().Resources as Record<string, Resource>);
const kafkaMappings = (t: Template) =>
  resources(t).filter((r) => r.Type === 'AWS::Lambda::EventSourceMapping' && 'Topics' in r.Properties);
const consumerStatements = (t: Template) => {
  const fnRole = resources(t).find(
    (r) =>
      r.Type === 'AWS::Lambda::Function' &&
      JSON.stringify(r.Properties.Environment ?? {}).includes('"kafka-consumer"'),
  )?.Properties.Role as { 'Fn::GetAtt': string[] };
  const role = fnRole['Fn::GetAtt'][0];
  return resources(t)
    .filter((r) => r.Type === 'AWS::IAM::Policy' && JSON.stringify(r.Properties.Roles).includes(`"${role}"`))
    .flatMap((r) => (r.Properties.PolicyDocument as { Statement: Json[] }).Statement);
};
const consumerEnv = (t: Template): Json => {
  const fn = resources(t).find(
    (r) =>
      r.Type === 'AWS::Lambda::Function' &&
      JSON.stringify(r.Properties.Environment ?? {}).includes('"kafka-consumer"'),
  );
  return (fn?.Properties.Environment as { Variables: Json } | undefined)?.Variables ?? {};
};
/** The schema registry config of the mapping's source config (MSK or self-managed). */
const registryConfig = (m: Resource | undefined, key: string): unknown =>
  ((m?.Properties[key] ?? {}) as Json).SchemaRegistryConfig;
const nagErrors = (stack: Stack) =>
  Annotations.fromStack(stack)
    .findError('*', Match.anyValue())
    .map((a) => `${a.id}: ${String(a.entry.data).split('\n')[0]}`);

const MSK: KafkaSource = {
  kind: 'msk',
  clusterArn: 'arn:aws:kafka:eu-west-1:123456789012:cluster/pulse/abc',
  topic: ['sensors', 'meters'],
};
const SELF_MANAGED: KafkaSource = {
  kind: 'self-managed',
  bootstrapServers: ['b-1.example:9096'],
  topic: 'sensors',
  secretArn: 'arn:aws:secretsmanager:eu-west-1:123456789012:secret:kafka-scram-AbCdEf',
};
const BASIC = 'arn:aws:secretsmanager:eu-west-1:123456789012:secret:registry-basic-AbCdEf';
const ROOT_CA = 'arn:aws:secretsmanager:eu-west-1:123456789012:secret:registry-root-ca-AbCdEf';
const GLUE = 'arn:aws:glue:eu-west-1:123456789012:registry/pulse-schemas';
const CONFLUENT: KafkaSchemaRegistry = {
  kind: 'confluent',
  url: 'https://psrc-abc.eu-west-1.aws.confluent.cloud',
  authentication: 'BASIC_AUTH',
  secretArn: BASIC,
  rootCaSecretArn: ROOT_CA,
};

describe('kafka.schemaRegistry', () => {
  it('puts a Confluent registry (basic auth, private root CA, JSON records, value validated) on every MSK mapping, and lets the role read both secrets', () => {
    // Prepare
    const stack = build({ kafka: { ...MSK, schemaRegistry: CONFLUENT } });

    // Act
    const t = Template.fromStack(stack);

    // Assess
    const mappings = kafkaMappings(t);
    expect(mappings).toHaveLength(2);
    for (const m of mappings) {
      expect(m.Properties.AmazonManagedKafkaEventSourceConfig).toMatchObject({
        SchemaRegistryConfig: {
          SchemaRegistryURI: CONFLUENT.kind === 'confluent' ? CONFLUENT.url : '',
          EventRecordFormat: 'JSON',
          SchemaValidationConfigs: [{ Attribute: 'VALUE' }],
          AccessConfigs: [
            { Type: 'BASIC_AUTH', URI: BASIC },
            { Type: 'SERVER_ROOT_CA_CERTIFICATE', URI: ROOT_CA },
          ],
        },
      });
      expect(m.Properties.ProvisionedPollerConfig).toBeDefined();
    }
    const reads = consumerStatements(t).filter((s) =>
      JSON.stringify(s.Action).includes('secretsmanager:GetSecretValue'),
    );
    expect(JSON.stringify(reads)).toContain(BASIC);
    expect(JSON.stringify(reads)).toContain(ROOT_CA);
    const env = consumerEnv(t);
    expect(JSON.parse(String(env[ENV.kafkaSchemaRegistry]))).toEqual({
      kind: 'confluent',
      recordFormat: 'JSON',
      validate: ['VALUE'],
    });
    // The function reads what the stack wrote.
    const config = loadKafkaConsumerConfig({
      ...Object.fromEntries(Object.entries(env).map(([k, v]) => [k, typeof v === 'string' ? v : 'x'])),
    });
    expect(config.schemaRegistry).toEqual({ kind: 'confluent', recordFormat: 'JSON', validate: ['VALUE'] });
  });

  it('puts an open Confluent registry on a mapping without access configs', () => {
    // Act
    const t = Template.fromStack(
      build({
        kafka: {
          ...SELF_MANAGED,
          schemaRegistry: { kind: 'confluent', url: 'http://registry.internal:8081' },
        },
      }),
    );

    // Assess
    const [m] = kafkaMappings(t);
    expect(registryConfig(m, 'SelfManagedKafkaEventSourceConfig')).toEqual({
      SchemaRegistryURI: 'http://registry.internal:8081',
      EventRecordFormat: 'JSON',
      SchemaValidationConfigs: [{ Attribute: 'VALUE' }],
    });
  });

  it('puts a Glue registry (SOURCE records, key and value validated) on a self-managed mapping, with glue:GetRegistry and glue:GetSchemaVersion on that registry only', () => {
    // Prepare
    const stack = build({
      kafka: {
        ...SELF_MANAGED,
        schemaRegistry: {
          kind: 'glue',
          registryArn: GLUE,
          recordFormat: 'SOURCE',
          validate: ['KEY', 'VALUE'],
        },
      },
      kafkaConsumer: { valueFormat: 'avro', valueSchema: '{"type":"record","name":"S","fields":[]}' },
    });

    // Act
    const t = Template.fromStack(stack);

    // Assess
    const [m] = kafkaMappings(t);
    expect(registryConfig(m, 'SelfManagedKafkaEventSourceConfig')).toEqual({
      SchemaRegistryURI: GLUE,
      EventRecordFormat: 'SOURCE',
      SchemaValidationConfigs: [{ Attribute: 'KEY' }, { Attribute: 'VALUE' }],
    });
    const glue = consumerStatements(t).filter((s) => JSON.stringify(s.Action).includes('glue:'));
    expect(glue).toEqual(
      expect.arrayContaining([
        expect.objectContaining({ Action: 'glue:GetRegistry', Effect: 'Allow', Resource: GLUE }),
        expect.objectContaining({ Action: 'glue:GetSchemaVersion', Effect: 'Allow' }),
      ]),
    );
    const versions = JSON.stringify(glue.find((s) => s.Action === 'glue:GetSchemaVersion')?.Resource);
    expect(versions).toContain(GLUE);
    // biome-ignore lint/suspicious/noTemplateCurlyInString: CloudFormation's Fn::Sub, not a template literal
    expect(versions).toContain(':schema/${registryName}/*');
    expect(versions).toContain('"registryName":"pulse-schemas"');
  });

  it('passes cdk-nag with either registry', () => {
    // Act
    const confluent = build({ kafka: { ...MSK, schemaRegistry: CONFLUENT } }, true);
    const glue = build({ kafka: { ...MSK, schemaRegistry: { kind: 'glue', registryArn: GLUE } } }, true);

    // Assess
    expect(nagErrors(confluent)).toEqual([]);
    expect(nagErrors(glue)).toEqual([]);
  });

  it('refuses what Lambda refuses: a registry on on-demand pollers, a Glue ARN that is no registry, auth without its secret, JSON records read as Avro', () => {
    // Assess
    expect(() =>
      build({ kafka: { ...MSK, pollers: { mode: 'on-demand' }, schemaRegistry: CONFLUENT } }),
    ).toThrow('kafka.schemaRegistry needs provisioned pollers');
    expect(() =>
      build({
        kafka: {
          ...MSK,
          schemaRegistry: { kind: 'glue', registryArn: 'arn:aws:glue:eu-west-1:1:schema/x/y' },
        },
      }),
    ).toThrow('is not a Glue registry ARN');
    expect(() =>
      build({
        kafka: {
          ...MSK,
          schemaRegistry: { kind: 'confluent', url: 'https://r.example', authentication: 'BASIC_AUTH' },
        },
      }),
    ).toThrow('authentication and secretArn go together');
    expect(() =>
      build({ kafka: { ...MSK, schemaRegistry: { kind: 'confluent', url: 'https://r.example/?tenant=a' } } }),
    ).toThrow("has characters Lambda's SchemaRegistryURI refuses");
    expect(() =>
      build({
        kafka: { ...MSK, schemaRegistry: { kind: 'glue', registryArn: GLUE } },
        kafkaConsumer: { valueFormat: 'avro', valueSchema: '{"type":"record","name":"S","fields":[]}' },
      }),
    ).toThrow('kafkaConsumer.valueFormat must be json with kafka.schemaRegistry.recordFormat JSON');
  });

  it('takes the registry from context as JSON (-c kafkaSchemaRegistry), and refuses it without a Kafka source or with an unknown key', () => {
    // Prepare
    const registry = { kind: 'glue', registryArn: GLUE, recordFormat: 'JSON' };
    const get = (c: Record<string, unknown>) => (k: string) => c[k];
    // Act
    const { props } = pulseContext(
      get({
        mskClusterArn: 'arn:aws:kafka:eu-west-1:123456789012:cluster/p/abc',
        kafkaSchemaRegistry: JSON.stringify(registry),
      }),
    );
    // Assess
    expect(props.kafka?.schemaRegistry).toEqual(registry);
    expect(() => pulseContext(get({ kafkaSchemaRegistry: JSON.stringify(registry) }))).toThrow(
      '-c kafkaSchemaRegistry needs -c mskClusterArn or -c kafkaBootstrapServers',
    );
    expect(() =>
      pulseContext(
        get({
          mskClusterArn: 'arn:aws:kafka:eu-west-1:123456789012:cluster/p/abc',
          kafkaSchemaRegistry: JSON.stringify({ ...registry, registryUrl: 'x' }),
        }),
      ),
    ).toThrow('-c kafkaSchemaRegistry:');
  });

  it('gives the offline kafka-consumer (local up --kafka-registry) what the stack gives it with a Confluent registry and its defaults', () => {
    // Prepare
    const t = Template.fromStack(
      build({ kafka: { ...MSK, schemaRegistry: { kind: 'confluent', url: 'https://r.example' } } }),
    );
    // Act
    const offline = runtimeEnv(localStateFactory({ kafkaSchemaRegistry: true }));
    const without = runtimeEnv(localStateFactory({}));
    // Assess
    expect(offline[ENV.kafkaSchemaRegistry]).toBe(consumerEnv(t)[ENV.kafkaSchemaRegistry]);
    expect(without[ENV.kafkaSchemaRegistry]).toBeUndefined();
  });
});
