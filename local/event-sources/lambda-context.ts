import { randomBytes, randomUUID } from 'node:crypto';
import type { Context } from 'aws-lambda';
import { LOCAL_REGION } from '../runtime/clients.ts';

/** The account id moto reports in ARNs; used in emulated function ARNs too. */
export const LOCAL_ACCOUNT_ID = '123456789012';

export interface LambdaContextOptions {
  /** @default 'pulse-local-function' */
  readonly functionName?: string;
  /** The function's timeout; getRemainingTimeInMillis counts down from it. @default 60_000 */
  readonly timeoutMs?: number;
  /** @default 1024 */
  readonly memoryMb?: number;
  /** @default us-east-1 */
  readonly region?: string;
  /** @default a random UUID, as Lambda makes one per invocation */
  readonly awsRequestId?: string;
  /** When the invocation started (epoch ms). @default now */
  readonly startedAt?: number;
}

/**
 * A Lambda `Context` as the Node.js runtime passes it, for one invocation: `getRemainingTimeInMillis`
 * counts down from the timeout in real time, and the deprecated `done`/`fail`/`succeed` throw, since
 * handlers here are async.
 */
export function lambdaContext(options: LambdaContextOptions = {}): Context {
  const functionName = options.functionName ?? 'pulse-local-function';
  const timeoutMs = options.timeoutMs ?? 60_000;
  const region = options.region ?? LOCAL_REGION;
  const deadline = (options.startedAt ?? Date.now()) + timeoutMs;
  const day = new Date().toISOString().slice(0, 10).replace(/-/g, '/');
  const unsupported = (name: string) => () => {
    throw new Error(`context.${name}() is not supported offline: return (or throw) from an async handler`);
  };
  return {
    callbackWaitsForEmptyEventLoop: true,
    functionName,
    functionVersion: '$LATEST',
    invokedFunctionArn: `arn:aws:lambda:${region}:${LOCAL_ACCOUNT_ID}:function:${functionName}`,
    memoryLimitInMB: String(options.memoryMb ?? 1024),
    awsRequestId: options.awsRequestId ?? randomUUID(),
    logGroupName: `/aws/lambda/${functionName}`,
    logStreamName: `${day}/[$LATEST]${randomBytes(16).toString('hex')}`,
    getRemainingTimeInMillis: () => Math.max(0, deadline - Date.now()),
    done: unsupported('done'),
    fail: unsupported('fail'),
    succeed: unsupported('succeed'),
  };
}
