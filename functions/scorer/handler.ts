import { BatchProcessor, EventType, processPartialResponse } from '@aws-lambda-powertools/batch';
import { injectLambdaContext } from '@aws-lambda-powertools/logger/middleware';
import { logMetrics } from '@aws-lambda-powertools/metrics/middleware';
import middy from '@middy/core';
import type { Context, SQSBatchResponse, SQSEvent, SQSRecord } from 'aws-lambda';
import { createClients } from '../../shared/clients.ts';
import { loadScorerConfig } from '../../shared/config.ts';
import { createObservability } from '../../shared/observability.ts';
import { zScoreModel } from './model.ts';
import { scoreMessage } from './scorer.ts';

const config = loadScorerConfig();
const clients = createClients(config);
const { logger, metrics } = createObservability('scorer');
const model = zScoreModel({ threshold: config.zThreshold, minSamples: config.minSamples });

async function recordHandler(record: SQSRecord): Promise<void> {
  logger.appendKeys({ messageId: record.messageId });
  try {
    const result = await scoreMessage(record.messageId, record.body, {
      ...clients,
      logger,
      metrics,
      model,
      config,
    });
    logger.debug('Message scored', { ...result });
  } finally {
    logger.removeKeys(['messageId']);
  }
}

const lambdaHandler = async (event: SQSEvent, context: Context): Promise<SQSBatchResponse> =>
  // A processor per invocation: it holds the batch's state, and the offline runtime may overlap invocations.
  processPartialResponse(event, recordHandler, new BatchProcessor(EventType.SQS), {
    context,
    processInParallel: false,
  });

export const handler = middy(lambdaHandler).use(injectLambdaContext(logger)).use(logMetrics(metrics));
