/**
 * The stack as `cdk synth` builds it, in each shape the producers' context gives it (no database or
 * Kafka; a database in a VPC and MSK; self-managed Kafka), for infra tests that must hold in all of them.
 * Bundling is skipped: the templates are what is under test, not the handlers.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { App, Aspects } from 'aws-cdk-lib';
import { Template } from 'aws-cdk-lib/assertions';
import { AwsSolutionsChecks } from 'cdk-nag';
import { REPO_ROOT } from '../../infra/constructs/pulse-function.ts';
import { pulseContext } from '../../infra/context.ts';
import { PulseStack, type PulseStackProps } from '../../infra/pulse-stack.ts';

const cdkJson = JSON.parse(readFileSync(join(REPO_ROOT, 'cdk.json'), 'utf8')) as {
  context: Record<string, unknown>;
};

/** A database in a VPC (poller in its subnets) and an MSK cluster. */
export const DB_AND_MSK_CONTEXT = {
  dbSecretArn: 'arn:aws:secretsmanager:eu-west-1:123456789012:secret:pulse-db-AbCdEf',
  dbVpcId: 'vpc-0123456789abcdef0',
  dbSubnetIds: 'subnet-0aaaaaaaaaaaaaaaa,subnet-0bbbbbbbbbbbbbbbb',
  dbSecurityGroupId: 'sg-0123456789abcdef0',
  mskClusterArn: 'arn:aws:kafka:eu-west-1:123456789012:cluster/pulse/abc',
  kafkaTopic: 'pulse_signals',
};

/** Self-managed Kafka with SASL/SCRAM credentials in a secret, and an alarm e-mail. */
export const SELF_MANAGED_KAFKA_CONTEXT = {
  kafkaBootstrapServers: 'b-1.example:9096,b-2.example:9096',
  kafkaSecretArn: 'arn:aws:secretsmanager:eu-west-1:123456789012:secret:kafka-AbCdEf',
  alarmEmail: 'oncall@example.com',
};

/** Each shape of the stack, named for test titles. */
export const STACK_SHAPES = [
  ['no producers context', {}],
  ['a database in a VPC and MSK', DB_AND_MSK_CONTEXT],
  ['self-managed Kafka and an alarm e-mail', SELF_MANAGED_KAFKA_CONTEXT],
] as const satisfies readonly (readonly [string, Record<string, string>])[];

export interface SynthOptions {
  /** `-c key=value` context, as on the command line. @default none */
  readonly context?: Record<string, string>;
  /** Apply cdk-nag's AwsSolutionsChecks to the app, as infra/app.ts does. @default false */
  readonly nag?: boolean;
  /** Stack props that have no context key. @default none */
  readonly props?: Pick<PulseStackProps, 'serverAccessLogs'>;
  /** The stack's id. @default 'Test' */
  readonly stackId?: string;
}

/** A new app with cdk.json's context, and the stack built from it as infra/app.ts builds it. */
export function buildStack(opts: SynthOptions = {}): PulseStack {
  const app = new App({
    context: { ...cdkJson.context, ...opts.context, 'aws:cdk:bundling-stacks': [] },
  });
  const stack = new PulseStack(app, opts.stackId ?? 'Test', {
    ...pulseContext((k) => app.node.tryGetContext(k)).props,
    ...opts.props,
  });
  if (opts.nag) Aspects.of(app).add(new AwsSolutionsChecks({ verbose: true }));
  return stack;
}

/** The template of {@link buildStack}. */
export const synthTemplate = (opts: SynthOptions = {}): Template => Template.fromStack(buildStack(opts));
