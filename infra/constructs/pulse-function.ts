import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Duration, RemovalPolicy } from 'aws-cdk-lib';
import { Architecture, Runtime } from 'aws-cdk-lib/aws-lambda';
import { NodejsFunction, OutputFormat } from 'aws-cdk-lib/aws-lambda-nodejs';
import { LogGroup, RetentionDays } from 'aws-cdk-lib/aws-logs';
import type { Construct } from 'constructs';
import { settings } from '../../shared/settings.ts';

/** The repository root (this file is infra/constructs/pulse-function.ts). */
export const REPO_ROOT = join(dirname(fileURLToPath(import.meta.url)), '..', '..');

/** Folder names under functions/. */
export type FunctionName = 's3-trigger' | 'scorer' | 'db-poller' | 'kafka-consumer';

/** The handler module of a function. */
export function handlerEntry(name: FunctionName): string {
  return join(REPO_ROOT, 'functions', name, 'handler.ts');
}

const RETENTION: Record<number, RetentionDays> = {
  7: RetentionDays.ONE_WEEK,
  14: RetentionDays.TWO_WEEKS,
  30: RetentionDays.ONE_MONTH,
  90: RetentionDays.THREE_MONTHS,
};

export interface PulseFunctionProps {
  /** The folder under functions/ holding `handler.ts`. */
  readonly name: FunctionName;
  readonly timeoutSeconds: number;
  readonly memoryMb: number;
  /** Environment variables, added to the ones every function gets. @default none */
  readonly environment?: Record<string, string>;
  /** @default settings.logRetentionDays */
  readonly logRetentionDays?: number;
}

/**
 * Every Pulse function: Node.js 22 on arm64, its own log group with retention, source maps, Powertools
 * service name and metrics namespace, and an esbuild bundle (ESM, minified, AWS SDK included).
 */
export class PulseFunction extends NodejsFunction {
  constructor(scope: Construct, id: string, props: PulseFunctionProps) {
    const logGroup = new LogGroup(scope, `${id}Logs`, {
      retention: RETENTION[props.logRetentionDays ?? settings.logRetentionDays] ?? RetentionDays.ONE_MONTH,
      removalPolicy: RemovalPolicy.DESTROY,
    });
    super(scope, id, {
      entry: handlerEntry(props.name),
      handler: 'handler',
      runtime: Runtime.NODEJS_22_X,
      architecture: Architecture.ARM_64,
      timeout: Duration.seconds(props.timeoutSeconds),
      memorySize: props.memoryMb,
      logGroup,
      projectRoot: REPO_ROOT,
      depsLockFilePath: join(REPO_ROOT, 'package-lock.json'),
      environment: {
        NODE_OPTIONS: '--enable-source-maps',
        POWERTOOLS_SERVICE_NAME: props.name,
        POWERTOOLS_METRICS_NAMESPACE: settings.metricsNamespace,
        POWERTOOLS_LOG_LEVEL: 'INFO',
        ...props.environment,
      },
      bundling: {
        format: OutputFormat.ESM,
        target: 'node22',
        minify: true,
        sourceMap: true,
        keepNames: true,
        mainFields: ['module', 'main'],
        externalModules: [],
        // Some dependencies still call require(); give ESM bundles one.
        banner:
          "import { createRequire as __pulseCreateRequire } from 'node:module'; const require = __pulseCreateRequire(import.meta.url);",
      },
    });
  }
}
