import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Duration, RemovalPolicy } from 'aws-cdk-lib';
import { PolicyStatement, Role, ServicePrincipal } from 'aws-cdk-lib/aws-iam';
import { Architecture, Runtime } from 'aws-cdk-lib/aws-lambda';
import {
  type BundlingOptions,
  NodejsFunction,
  type NodejsFunctionProps,
  OutputFormat,
} from 'aws-cdk-lib/aws-lambda-nodejs';
import { LogGroup, RetentionDays } from 'aws-cdk-lib/aws-logs';
import { NagSuppressions } from 'cdk-nag';
import type { Construct } from 'constructs';
import { ENV, PLATFORM_ENV } from '#shared/contract.ts';
import { settings } from '#shared/settings.ts';

/** The repository root (this file is infra/constructs/pulse-function.ts). */
export const REPO_ROOT = join(dirname(fileURLToPath(import.meta.url)), '..', '..');

/**
 * The lock file the bundles' dependencies were locked with: the repository's, or, where the package is
 * installed into another app (npm leaves package-lock.json out of a package), none: CDK then finds the
 * app's own lock file from the working directory.
 */
const LOCK_FILE = join(REPO_ROOT, 'package-lock.json');

/** Folder names under functions/. */
export type FunctionName = 's3-trigger' | 'scorer' | 'db-poller' | 'kafka-consumer';

/**
 * The handler module of a function: `functions/<name>/handler.ts` under the repository root, or another
 * entry of the same folder (`sweep-handler.ts`, the ledger sweep of s3-trigger).
 */
export function handlerEntry(name: FunctionName, file = 'handler.ts'): string {
  return join(REPO_ROOT, 'functions', name, file);
}

/**
 * The CloudWatch Logs retention for a number of days. RetentionDays' values are the days themselves;
 * a number CloudWatch does not offer throws rather than silently becoming another retention.
 */
export function retentionFor(days: number): RetentionDays {
  const allowed = Object.values(RetentionDays).filter((v): v is RetentionDays => typeof v === 'number');
  const found = allowed.find((v) => v === days);
  if (found === undefined) throw new Error(`CloudWatch Logs has no ${days}-day retention`);
  return found;
}

/**
 * esbuild options of every function. ESM bundles have no `require`; some dependencies still call it,
 * so the banner defines one. The AWS SDK is bundled (not taken from the runtime) so the version tested
 * is the version deployed.
 */
export const BUNDLING: Readonly<BundlingOptions> = {
  format: OutputFormat.ESM,
  target: 'node22',
  minify: true,
  sourceMap: true,
  // Stack traces still name the TypeScript file and line; the sources themselves are left out of the map,
  // which --enable-source-maps reads and parses at every cold start (a third of the module init).
  sourcesContent: false,
  keepNames: true,
  mainFields: ['module', 'main'],
  externalModules: [],
  banner:
    "import { createRequire as __pulseCreateRequire } from 'node:module'; const require = __pulseCreateRequire(import.meta.url);",
};

/**
 * What Lambda needs to attach a function to a VPC: the actions of AWSLambdaVPCAccessExecutionRole
 * without its logs:* on every log group. AWS requires "*" for them (Describe* have no resource-level
 * permissions, and the network interfaces do not exist before Lambda creates them).
 */
export const VPC_ENI_ACTIONS = [
  'ec2:CreateNetworkInterface',
  'ec2:DescribeNetworkInterfaces',
  'ec2:DescribeSubnets',
  'ec2:DeleteNetworkInterface',
  'ec2:AssignPrivateIpAddresses',
  'ec2:UnassignPrivateIpAddresses',
] as const;

export interface PulseFunctionProps
  extends Pick<
    NodejsFunctionProps,
    'vpc' | 'vpcSubnets' | 'securityGroups' | 'reservedConcurrentExecutions' | 'description'
  > {
  /** The folder under functions/ holding `handler.ts`; also the Powertools service name. */
  readonly name: FunctionName;
  /**
   * A second entry of the folder: its file and its Powertools service name (the folder's name is the
   * first entry's).
   * @default `handler.ts`, service `name`
   */
  readonly entry?: { readonly file: string; readonly service: string };
  readonly timeoutSeconds: number;
  readonly memoryMb: number;
  /**
   * Environment variables, added to the ones every function gets. Prefer `addEnvironment` next to the
   * grant on the resource the variable names.
   * @default none
   */
  readonly environment?: Readonly<Record<string, string>>;
  /** @default settings.logRetentionDays */
  readonly logRetentionDays?: number;
}

/**
 * Every Pulse function: Node.js 22 on arm64, its own log group with retention, source maps, Powertools
 * service name and metrics namespace, and an esbuild bundle (ESM, minified, AWS SDK included). Its role
 * starts with writes to its own log group only (no AWSLambdaBasicExecutionRole, which allows writing to
 * every log group); the stack grants the rest.
 */
export class PulseFunction extends NodejsFunction {
  /** The function's log group (retention from the settings). */
  readonly logs: LogGroup;

  constructor(scope: Construct, id: string, props: PulseFunctionProps) {
    // The log group must exist before super() takes it, so it is a sibling of the function.
    const logs = new LogGroup(scope, `${id}Logs`, {
      retention: retentionFor(props.logRetentionDays ?? settings.logRetentionDays),
      removalPolicy: RemovalPolicy.DESTROY,
    });
    const role = new Role(scope, `${id}Role`, {
      assumedBy: new ServicePrincipal('lambda.amazonaws.com'),
      description: `Execution role of the ${props.entry?.service ?? props.name} function`,
    });
    logs.grantWrite(role);
    if (props.vpc) {
      role.addToPolicy(new PolicyStatement({ actions: [...VPC_ENI_ACTIONS], resources: ['*'] }));
      NagSuppressions.addResourceSuppressions(
        role,
        [
          {
            id: 'AwsSolutions-IAM5',
            reason:
              'Lambda creates, describes and deletes the network interfaces of a VPC function; AWS allows these ec2 actions only on "*" (VPC_ENI_ACTIONS).',
            appliesTo: ['Resource::*'],
          },
        ],
        true,
      );
    }
    super(scope, id, {
      entry: handlerEntry(props.name, props.entry?.file),
      handler: 'handler',
      runtime: Runtime.NODEJS_22_X,
      architecture: Architecture.ARM_64,
      timeout: Duration.seconds(props.timeoutSeconds),
      memorySize: props.memoryMb,
      logGroup: logs,
      role,
      projectRoot: REPO_ROOT,
      ...(existsSync(LOCK_FILE) ? { depsLockFilePath: LOCK_FILE } : {}),
      environment: {
        [PLATFORM_ENV.nodeOptions]: '--enable-source-maps',
        [ENV.powertoolsServiceName]: props.entry?.service ?? props.name,
        [PLATFORM_ENV.powertoolsMetricsNamespace]: settings.metricsNamespace,
        // Powertools Logger reads LOG_LEVEL when POWERTOOLS_LOG_LEVEL is not set.
        [PLATFORM_ENV.logLevel]: 'INFO',
        ...props.environment,
      },
      bundling: BUNDLING,
      vpc: props.vpc,
      vpcSubnets: props.vpcSubnets,
      securityGroups: props.securityGroups,
      reservedConcurrentExecutions: props.reservedConcurrentExecutions,
      description: props.description,
    });
    this.logs = logs;
    NagSuppressions.addResourceSuppressions(this, [
      {
        id: 'AwsSolutions-L1',
        reason:
          'Node.js 22 on purpose: the bundles target node22, the tests run on Node 22 (package.json "node" 22.x); moving to a newer runtime is its own change.',
      },
    ]);
  }
}
