import { execFile } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { OUTPUTS } from '#shared/contract.ts';
import { REPO_ROOT } from '../../infra/constructs/pulse-function.ts';

const run = promisify(execFile);

/**
 * Another team's CDK app using the package as the README says: `pulse-ingest` in its node_modules (here a
 * link to this checkout, as `npm install <path>` makes one), aws-cdk-lib and constructs beside it, the
 * README's tsconfig.json, and an app run with tsx as this project's cdk.json runs its own.
 */
const APP = `import { App, Stack, type StackProps } from 'aws-cdk-lib';
import type { Construct } from 'constructs';
import { PulseIngest, type PulseIngestProps } from 'pulse-ingest';

class MetricsStack extends Stack {
  readonly pulse: PulseIngest;
  constructor(scope: Construct, id: string, props: StackProps & { readonly pulse: PulseIngestProps }) {
    super(scope, id, props);
    this.pulse = new PulseIngest(this, 'Pulse', props.pulse);
  }
}

const app = new App({ context: { 'aws:cdk:bundling-stacks': [] } });
const stack = new MetricsStack(app, 'Metrics-dev', {
  pulse: {
    stage: 'dev',
    scoring: { zThreshold: 4 },
    signals: { maxConcurrency: 20 },
    alarmEmail: 'ops@example.com',
    kafka: { kind: 'msk', clusterArn: 'arn:aws:kafka:eu-west-1:123456789012:cluster/c/1', topic: 'metrics' },
    existingBuckets: [{ bucket: 'metrics-landing', prefixes: ['in/'], notifications: 'eventbridge' }],
  },
});
const threshold: number = stack.pulse.deployment.scoring.zThreshold;

// A misspelt prop is a type error, not a silent default; and, from plain JavaScript or JSON, refused at synth.
let refused = '';
try {
  // @ts-expect-error zThrehsold is not a scoring prop
  new PulseIngest(new Stack(new App(), 'Typo'), 'Pulse', { scoring: { zThrehsold: 4 } });
} catch (err) {
  refused = (err as Error).message;
}

const template = app.synth().getStackByName('Metrics-dev').template as {
  Outputs: Record<string, unknown>;
  Resources: Record<string, { Type: string; Properties?: unknown }>;
};
const landingRules = Object.values(template.Resources).filter(
  (r) => r.Type === 'AWS::Events::Rule' && JSON.stringify(r.Properties).includes('metrics-landing'),
).length;
console.log(JSON.stringify({ threshold, refused, landingRules, outputs: Object.keys(template.Outputs).sort() }));
`;

/** The tsconfig.json the README gives for an app that runs its TypeScript with tsx. */
const TSCONFIG = {
  compilerOptions: {
    target: 'ES2023',
    lib: ['ES2023'],
    module: 'NodeNext',
    moduleResolution: 'NodeNext',
    strict: true,
    noEmit: true,
    allowImportingTsExtensions: true,
    skipLibCheck: true,
    types: ['node'],
  },
  include: ['app.ts'],
};

describe('a CDK app of its own that imports PulseIngest from the package root', () => {
  let dir: string;

  beforeAll(() => {
    dir = mkdtempSync(join(tmpdir(), 'pulse-consumer-'));
    mkdirSync(join(dir, 'node_modules', '@types'), { recursive: true });
    symlinkSync(REPO_ROOT, join(dir, 'node_modules', 'pulse-ingest'), 'dir');
    for (const dep of ['aws-cdk-lib', 'constructs', '@types/node']) {
      symlinkSync(join(REPO_ROOT, 'node_modules', dep), join(dir, 'node_modules', dep), 'dir');
    }
    writeFileSync(
      join(dir, 'package.json'),
      JSON.stringify({ name: 'metrics-app', type: 'module', private: true }),
    );
    writeFileSync(join(dir, 'tsconfig.json'), JSON.stringify(TSCONFIG, null, 2));
    writeFileSync(join(dir, 'app.ts'), APP);
  });

  afterAll(() => {
    rmSync(dir, { recursive: true, force: true });
  });

  it('type-checks with tsc (and a misspelt prop does not)', async () => {
    // Act
    const tsc = run(
      process.execPath,
      [join(REPO_ROOT, 'node_modules', 'typescript', 'bin', 'tsc'), '-p', dir],
      {
        cwd: dir,
      },
    );

    // Assess: tsc exits 0 only if the app compiles and the @ts-expect-error line is an error.
    await expect(tsc).resolves.toMatchObject({ stdout: '' });
  }, 240_000);

  it('synthesizes when run with tsx, its outputs under the names the pulse CLI reads', async () => {
    // Act
    const { stdout } = await run(
      process.execPath,
      [join(REPO_ROOT, 'node_modules', 'tsx', 'dist', 'cli.mjs'), 'app.ts'],
      {
        cwd: dir,
      },
    );

    // Assess
    const printed = JSON.parse(stdout.trim().split('\n').at(-1) ?? '{}') as {
      threshold: number;
      refused: string;
      landingRules: number;
      outputs: string[];
    };
    expect(printed.threshold).toBe(4);
    expect(printed.refused).toBe('PulseIngest props: scoring: Unrecognized key: "zThrehsold"');
    expect(printed.outputs).toEqual(Object.values(OUTPUTS).sort());
    // The bucket it already has, ingested through EventBridge: one rule on its Object Created events.
    expect(printed.landingRules).toBe(1);
  }, 240_000);
});
