import { BatchProcessor, EventType, processPartialResponse } from '@aws-lambda-powertools/batch';
import { injectLambdaContext } from '@aws-lambda-powertools/logger/middleware';
import { logMetrics } from '@aws-lambda-powertools/metrics/middleware';
import middy from '@middy/core';
import type { Context, SQSBatchResponse, SQSEvent, SQSRecord } from 'aws-lambda';
import { createClients } from '#shared/clients.ts';
import { loadScorerConfig } from '#shared/config.ts';
import { createObservability } from '#shared/observability.ts';
import { zScoreModel } from './model.ts';
import { type BatchResult, scoreBatch } from './scorer.ts';

const config = loadScorerConfig();
const clients = createClients(config, 'scorer');
const { logger, metrics } = createObservability('scorer');
const model = zScoreModel({ threshold: config.zThreshold, minSamples: config.minSamples });

const lambdaHandler = async (event: SQSEvent, context: Context): Promise<SQSBatchResponse> => {
  // The whole batch is scored together, so that a series costs one state write per batch, not per message.
  // The deadline: what is not committed with time in hand is given back, not lost to a timeout.
  const scoring = scoreBatch(
    event.Records.map((r) => ({ messageId: r.messageId, body: r.body })),
    { ...clients, logger, metrics, model, config, remainingMs: () => context.getRemainingTimeInMillis() },
  ).then((result) => {
    const { failures, ...counts } = result;
    logger.debug('Batch scored', { ...counts, failed: failures.size });
    return result;
  });
  // Powertools still builds the partial batch response: a record fails when its message must come back.
  const recordHandler = async (record: SQSRecord): Promise<void> => {
    const result: BatchResult = await scoring;
    if (result.failures.has(record.messageId)) throw result.failures.get(record.messageId);
  };
  // A processor per invocation: it holds the batch's state, and the offline runtime may overlap invocations.
  return processPartialResponse(event, recordHandler, new BatchProcessor(EventType.SQS), {
    context,
    processInParallel: false,
  });
};

export const handler = middy(lambdaHandler).use(injectLambdaContext(logger)).use(logMetrics(metrics));
