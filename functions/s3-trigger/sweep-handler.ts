import { injectLambdaContext } from '@aws-lambda-powertools/logger/middleware';
import { logMetrics } from '@aws-lambda-powertools/metrics/middleware';
import middy from '@middy/core';
import type { Context } from 'aws-lambda';
import { createClients } from '#shared/clients.ts';
import { loadSweepConfig, loadVerifySweepConfig } from '#shared/config.ts';
import { createObservability } from '#shared/observability.ts';
import { sweepLedger } from './sweep.ts';
import { verifyRecentFiles } from './verify-sweep.ts';

/**
 * The ledger sweep: the second entry of s3-trigger (it owns the ledger), invoked by its EventBridge
 * Scheduler schedule, whose event carries nothing the sweep needs. See sweep.ts, then verify-sweep.ts.
 */
const config = loadSweepConfig();
const verifyConfig = loadVerifySweepConfig();
const clients = createClients(config, 'ledger-sweep');
const { logger, metrics } = createObservability('ledger-sweep');

const lambdaHandler = async (_event: unknown, context: Context) => {
  const result = await sweepLedger({ ...clients, logger, metrics, config });
  // Then the receipts of the files that ended since the last run (verify-sweep.ts), within the time left.
  const verify = await verifyRecentFiles({
    ...clients,
    logger,
    metrics,
    config: verifyConfig,
    remainingMs: () => context.getRemainingTimeInMillis(),
  });
  return {
    stuck: result.stuck,
    total: result.total,
    truncated: result.truncated,
    canary: result.canary,
    verify: { verified: verify.verified, mismatches: verify.mismatches, behind: verify.behind },
  };
};

export const handler = middy(lambdaHandler).use(injectLambdaContext(logger)).use(logMetrics(metrics));
