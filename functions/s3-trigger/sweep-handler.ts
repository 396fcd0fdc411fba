import { injectLambdaContext } from '@aws-lambda-powertools/logger/middleware';
import { logMetrics } from '@aws-lambda-powertools/metrics/middleware';
import middy from '@middy/core';
import { createClients } from '#shared/clients.ts';
import { loadSweepConfig } from '#shared/config.ts';
import { createObservability } from '#shared/observability.ts';
import { sweepLedger } from './sweep.ts';

/**
 * The ledger sweep: the second entry of s3-trigger (it owns the ledger), invoked by its EventBridge
 * Scheduler schedule, whose event carries nothing the sweep needs. See sweep.ts.
 */
const config = loadSweepConfig();
const clients = createClients(config, 'ledger-sweep');
const { logger, metrics } = createObservability('ledger-sweep');

const lambdaHandler = async () => {
  const result = await sweepLedger({ ...clients, logger, metrics, config });
  return { stuck: result.stuck, total: result.total, truncated: result.truncated, canary: result.canary };
};

export const handler = middy(lambdaHandler).use(injectLambdaContext(logger)).use(logMetrics(metrics));
