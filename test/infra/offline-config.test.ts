import { describe, expect, it } from 'vitest';
import { ENV } from '#shared/contract.ts';
import {
  keysNotAppliedOffline,
  localExistingBuckets,
  notAppliedWarning,
  OFFLINE_CONFIG_KEYS,
} from '../../local/runtime/offline-config.ts';
import { runtimeEnv } from '../../local/runtime/runtime.ts';
import { localStateFactory } from '../helpers/factories.ts';
import { DB_AND_MSK_CONTEXT, synthTemplate } from '../helpers/stacks.ts';

/**
 * `pulse local up --config FILE` applies the same configuration the stack takes: `kafkaConsumer` (value
 * format and per-topic mappings) and `existingBuckets` reach the offline functions' environment exactly as
 * the synthesized template sets them, and a key the offline run does not apply is named.
 */

const KAFKA_CONSUMER = {
  valueFormat: 'json',
  mappings: {
    meters: { name: 'metric', value: 'val', timestamp: 'ts' },
    sensors: { name: 'sensor', value: 'reading' },
  },
} as const;

const EXISTING = [
  { bucket: 'arn:aws:s3:::users-data', prefixes: ['exports/', 'feeds/'], notifications: 's3-sqs' },
  { bucket: 'other-data', notifications: 'eventbridge' },
] as const;

const ROUTES = {
  routes: [
    { prefix: 'incoming/' },
    { prefix: 'feeds/', bucket: 'users-data', mapping: { name: 'metric', value: 'val' } },
  ],
};

/** One function's environment in the template, by its service name. */
function deployedEnv(context: Record<string, string>, service: string): Record<string, unknown> {
  const t = synthTemplate({ context: { ...DB_AND_MSK_CONTEXT, ...context } });
  for (const fn of Object.values(t.findResources('AWS::Lambda::Function'))) {
    const vars = (fn.Properties?.Environment?.Variables ?? {}) as Record<string, unknown>;
    if (vars[ENV.powertoolsServiceName] === service) return vars;
  }
  throw new Error(`no ${service} in the template`);
}

const kafkaValueSettings = (env: Record<string, unknown>) =>
  Object.fromEntries(
    [ENV.kafkaValueFormat, ENV.kafkaValueSchema, ENV.kafkaValueMessageType, ENV.kafkaMappings].map((k) => [
      k,
      env[k],
    ]),
  );

describe('the offline run takes the configuration the stack takes', () => {
  it('sets KAFKA_MAPPINGS (and the value format) on the offline kafka-consumer as the stack sets them', () => {
    // Prepare
    const deployed = deployedEnv(
      { pulse: JSON.stringify({ kafkaConsumer: KAFKA_CONSUMER }) },
      'kafka-consumer',
    );
    // Act
    const offline = runtimeEnv(localStateFactory({ kafkaConsumer: KAFKA_CONSUMER }));
    // Assess
    expect(JSON.parse(String(offline[ENV.kafkaMappings]))).toEqual(KAFKA_CONSUMER.mappings);
    expect(kafkaValueSettings(offline)).toEqual(kafkaValueSettings(deployed));
  });

  it("gives the offline s3-trigger the stack's S3_ROUTES for existing buckets' prefixes", () => {
    // Prepare
    const deployed = deployedEnv(
      { pulse: JSON.stringify({ s3: ROUTES }), existingBuckets: JSON.stringify(EXISTING) },
      's3-trigger',
    );
    // Act
    const offline = runtimeEnv(
      localStateFactory({ s3: ROUTES, existingBuckets: localExistingBuckets(EXISTING) ?? [] }),
    );
    // Assess
    expect(JSON.parse(offline[ENV.s3Routes] ?? '')).toEqual(JSON.parse(String(deployed[ENV.s3Routes])));
    expect(JSON.parse(offline[ENV.s3Routes] ?? '').map((r: { bucket?: string }) => r.bucket)).toContain(
      'other-data',
    );
  });

  it('names the keys it does not apply, and refuses SNS-wrapped notifications it cannot run', () => {
    // Act
    const notApplied = keysNotAppliedOffline({ s3: {}, scoring: {}, alarms: {}, kafkaConsumer: {} });
    // Assess
    expect(notApplied).toEqual(['alarms', 'scoring']);
    expect(notAppliedWarning({ s3: {}, scoring: {}, alarms: {} })).toBe(
      'warning: --config: not applied offline (checked only): alarms, scoring; applied: s3, dbPoller, kafkaConsumer, existingBuckets',
    );
    expect(notAppliedWarning({ s3: {}, dbPoller: {} })).toBeUndefined();
    expect(OFFLINE_CONFIG_KEYS).toContain('existingBuckets');
    expect(() =>
      localExistingBuckets([
        { bucket: 'b', notifications: { snsTopicArn: 'arn:aws:sns:eu-west-1:123456789012:bucket-events' } },
      ]),
    ).toThrow(/SNS-wrapped notifications .* are not run offline/);
  });
});
