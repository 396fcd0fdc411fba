import { injectLambdaContext } from '@aws-lambda-powertools/logger/middleware';
import { logMetrics } from '@aws-lambda-powertools/metrics/middleware';
import { SecretsManagerClient } from '@aws-sdk/client-secrets-manager';
import middy from '@middy/core';
import type { Context } from 'aws-lambda';
import { recordAwsCalls } from '#shared/aws-call-log.ts';
import { createClients } from '#shared/clients.ts';
import { dbPollerConfigFor, dbPollerConfigWarnings, loadDbPollerConfig } from '#shared/config.ts';
import { createObservability } from '#shared/observability.ts';
import { createDbPool, LazyDbPool, readDbSecret } from './db.ts';
import { parseSchedulerInvocation } from './events.ts';
import { type PollSummary, poll } from './poller.ts';
import { tableMetrics } from './table-metrics.ts';

const config = loadDbPollerConfig();
const clients = createClients(config, 'db-poller');
const secrets = new SecretsManagerClient({ maxAttempts: 5 });
recordAwsCalls([secrets], config.awsCallLog, 'db-poller');
const { logger, metrics } = createObservability('db-poller');
// Once per cold start: a configuration that works but can lose rows (watermark mode on the event time).
for (const t of config.tables) {
  for (const warning of dbPollerConfigWarnings({
    ...t,
    watermarkLookbackSeconds: config.watermarkLookbackSeconds,
  }))
    logger.warn(warning, { table: t.table });
}
// The secret is read on the first invocation and the pool kept while the instance is warm.
const db = new LazyDbPool(
  () => readDbSecret(secrets, config.dbSecretArn),
  (creds) => createDbPool(creds, { ssl: config.dbSsl }),
);

const lambdaHandler = async (event: unknown, context: Context): Promise<PollSummary> => {
  const { table, ...invocation } = parseSchedulerInvocation(event);
  logger.appendKeys({ ...invocation, ...(table !== undefined ? { table } : {}) });
  // Each schedule names its table; an input naming none of this poller's tables fails the invocation.
  const tableConfig = dbPollerConfigFor(config, table);
  logger.appendKeys({ table: tableConfig.table, mode: tableConfig.mode });
  try {
    const summary = await poll({
      db: await db.get(),
      ...clients,
      logger,
      metrics: tableMetrics(metrics, tableConfig.table),
      config: tableConfig,
      remainingTimeMs: () => context.getRemainingTimeInMillis(),
    });
    logger.info('Poll finished', { ...summary });
    return summary;
  } catch (err) {
    if (await db.invalidateOn(err))
      logger.warn('Database refused the credentials; the secret is read again next time');
    throw err;
  }
};

export const handler = middy(lambdaHandler)
  .use(injectLambdaContext(logger, { resetKeys: true }))
  .use(logMetrics(metrics));
