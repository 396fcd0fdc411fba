/**
 * Synthesizes the stack in every shape cfn-lint must pass (issue 22), each into its own cloud assembly under
 * cdk.out-shapes/<shape>/, for `bash scripts/cfn-lint.sh run` (npm run lint:cfn). Offline: no AWS call, no
 * lookup, no credentials, bundling skipped (the templates are what is linted, not the handlers). cdk-nag's
 * AwsSolutionsChecks runs on each app as infra/app.ts runs it; an error annotation fails the script, as it
 * fails `cdk synth`.
 *
 *   npx tsx tools/synth-shapes.ts            # every shape
 *   npx tsx tools/synth-shapes.ts default    # the shapes named
 */
import { readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { App, Aspects } from 'aws-cdk-lib';
import { AwsSolutionsChecks } from 'cdk-nag';
import { REPO_ROOT } from '../infra/constructs/pulse-function.ts';
import { pulseContext } from '../infra/context.ts';
import { PulseStack } from '../infra/pulse-stack.ts';

export const SHAPES_DIR = join(REPO_ROOT, 'cdk.out-shapes');

const DB_AND_MSK = {
  dbSecretArn: 'arn:aws:secretsmanager:eu-west-1:123456789012:secret:pulse-db-AbCdEf',
  dbVpcId: 'vpc-0123456789abcdef0',
  dbSubnetIds: 'subnet-0aaaaaaaaaaaaaaaa,subnet-0bbbbbbbbbbbbbbbb',
  dbSecurityGroupId: 'sg-0123456789abcdef0',
  mskClusterArn: 'arn:aws:kafka:eu-west-1:123456789012:cluster/pulse/abc',
  kafkaTopic: 'pulse_signals,meters',
};

const existing = (notifications: unknown) =>
  JSON.stringify([{ bucket: 'users-data', prefixes: ['exports/', 'feeds/'], notifications }]);

/** Each shape: its directory name, and the stages it builds (one stack each) with their `-c` context. */
export const CFN_SHAPES: readonly {
  readonly name: string;
  readonly stages: readonly Record<string, string>[];
}[] = [
  { name: 'default', stages: [{}] },
  { name: 'existing-bucket-sqs', stages: [{ existingBuckets: existing('s3-sqs') }] },
  { name: 'existing-bucket-eventbridge', stages: [{ existingBuckets: existing('eventbridge') }] },
  {
    name: 'existing-bucket-sns',
    stages: [
      { existingBuckets: existing({ snsTopicArn: 'arn:aws:sns:eu-west-1:123456789012:bucket-events' }) },
    ],
  },
  {
    name: 'two-prefixes',
    stages: [
      {
        pulse: JSON.stringify({
          s3: {
            routes: [
              { prefix: 'incoming/', afterSuccess: 'tag' },
              {
                prefix: 'eu/',
                include: ['eu/**/*.csv'],
                mapping: { name: 'metric', value: 'val', timestamp: 'ts' },
                csv: { delimiter: ';' },
                afterSuccess: { archivePrefix: 'archive/' },
              },
            ],
            lifecycle: { archiveExpireDays: 30 },
          },
        }),
      },
    ],
  },
  {
    name: 'database-and-kafka',
    stages: [
      {
        ...DB_AND_MSK,
        alarmEmail: 'oncall@example.com',
        pulse: JSON.stringify({ kafkaConsumer: { mappings: { meters: { name: 'metric', value: 'val' } } } }),
      },
    ],
  },
  {
    name: 'self-managed-kafka',
    stages: [
      {
        kafkaBootstrapServers: 'b-1.example:9096,b-2.example:9096',
        kafkaSecretArn: 'arn:aws:secretsmanager:eu-west-1:123456789012:secret:kafka-AbCdEf',
      },
    ],
  },
  { name: 'two-stages', stages: [{ stage: 'dev' }, { stage: 'prod' }] },
];

const cdkJson = JSON.parse(readFileSync(join(REPO_ROOT, 'cdk.json'), 'utf8')) as {
  context: Record<string, unknown>;
};

/** Synthesizes one shape into cdk.out-shapes/<name>/; returns its templates' paths and nag's errors. */
export function synthShape(shape: (typeof CFN_SHAPES)[number]): { templates: string[]; errors: string[] } {
  const outdir = join(SHAPES_DIR, shape.name);
  rmSync(outdir, { recursive: true, force: true });
  const app = new App({ outdir, context: { ...cdkJson.context, 'aws:cdk:bundling-stacks': [] } });
  for (const stage of shape.stages) {
    const get = (k: string) => (k in stage ? stage[k] : app.node.tryGetContext(k));
    const { stackName, props } = pulseContext(get);
    new PulseStack(app, stackName, { description: `Pulse Ingest (${shape.name})`, ...props });
  }
  Aspects.of(app).add(new AwsSolutionsChecks({ verbose: true }));
  const assembly = app.synth();
  return {
    templates: assembly.stacks.map((s) => s.templateFullPath),
    errors: assembly.stacks.flatMap((s) =>
      s.messages
        .filter((m) => m.level === 'error')
        .map((m) => `${s.stackName} ${m.id}: ${String(m.entry.data)}`),
    ),
  };
}

function main(names: readonly string[]): void {
  const unknown = names.filter((n) => !CFN_SHAPES.some((s) => s.name === n));
  if (unknown.length > 0) {
    console.error(
      `synth-shapes: no shape ${unknown.join(', ')} (shapes: ${CFN_SHAPES.map((s) => s.name).join(', ')})`,
    );
    process.exit(2);
  }
  if (names.length === 0) rmSync(SHAPES_DIR, { recursive: true, force: true });
  let failed = false;
  for (const shape of CFN_SHAPES.filter((s) => names.length === 0 || names.includes(s.name))) {
    const { templates, errors } = synthShape(shape);
    console.log(
      `synth-shapes: ${shape.name}: ${templates.map((t) => t.slice(REPO_ROOT.length + 1)).join(', ')}`,
    );
    for (const e of errors) console.error(`synth-shapes: ${shape.name}: cdk-nag error: ${e}`);
    failed ||= errors.length > 0;
  }
  if (failed) process.exit(1);
}

if (import.meta.url === `file://${process.argv[1]}`) main(process.argv.slice(2));
