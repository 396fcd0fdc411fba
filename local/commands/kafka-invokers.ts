/**
 * The two ways `pulse kafka replay` runs the kafka-consumer on a stored event: invoking the deployed
 * function (Lambda Invoke, RequestResponse: the operator needs `lambda:InvokeFunction` on it), or, offline,
 * calling the consumer's real handler in this process with the offline run's environment.
 */

import { InvokeCommand, type LambdaClient } from '@aws-sdk/client-lambda';
import type { Context } from 'aws-lambda';
import { settings } from '#shared/settings.ts';
import type { KafkaEvent } from '../../functions/kafka-consumer/events.ts';
import { lambdaContext } from '../event-sources/lambda-context.ts';
import type { ReplayInvoker } from './kafka-replay.ts';

/** The deployed function: a synchronous invocation whose function error is a failed replay. */
export function lambdaInvoker(lambda: LambdaClient, functionName: string): ReplayInvoker {
  return {
    async invoke(payload) {
      const out = await lambda.send(
        new InvokeCommand({
          FunctionName: functionName,
          InvocationType: 'RequestResponse',
          Payload: new TextEncoder().encode(payload),
        }),
      );
      if (!out.FunctionError) return { ok: true };
      const text = out.Payload ? new TextDecoder().decode(out.Payload) : '';
      let reason = text;
      try {
        const e = JSON.parse(text) as { errorType?: string; errorMessage?: string };
        reason = `${e.errorType ?? out.FunctionError}: ${e.errorMessage ?? ''}`.trim();
      } catch {
        // not JSON: keep the text
      }
      return { ok: false, error: reason || out.FunctionError };
    },
  };
}

/** A handler as the kafka-consumer exports it. */
export type KafkaConsumerHandler = (event: KafkaEvent, context: Context) => Promise<unknown>;

/** The handler in this process, held to the function's timeout as the event source holds it. */
export function handlerInvoker(
  handler: KafkaConsumerHandler,
  opts: { functionName?: string; timeoutSeconds?: number } = {},
): ReplayInvoker {
  const timeoutMs = (opts.timeoutSeconds ?? settings.functions.kafkaConsumer.timeoutSeconds) * 1000;
  const functionName = opts.functionName ?? 'pulse-kafka-consumer';
  return {
    async invoke(_payload, event) {
      let timer: NodeJS.Timeout | undefined;
      try {
        const run = Promise.resolve().then(() => handler(event, lambdaContext({ functionName, timeoutMs })));
        const timedOut = new Promise<'timeout'>((resolve) => {
          timer = setTimeout(() => resolve('timeout'), timeoutMs);
        });
        const result = await Promise.race([run, timedOut]);
        if (result === 'timeout') {
          run.catch(() => undefined);
          return { ok: false, error: `${functionName} timed out after ${timeoutMs} ms` };
        }
        return { ok: true };
      } catch (err) {
        const e = err as Error;
        return { ok: false, error: `${e.name ?? 'Error'}: ${e.message ?? String(err)}` };
      } finally {
        clearTimeout(timer);
      }
    },
  };
}
