import { ENV } from '#shared/contract.ts';
import type { PulseDeployment } from './props.ts';

/**
 * The db-poller's settings as its environment (shared/contract.ts names the variables, shared/config.ts reads
 * them): one mapping, which the stack (infra/producers.ts) and the offline runtime (local/runtime/runtime.ts)
 * both use, so an option reaches the function the same way on AWS and offline. Resources (the secret, the
 * queue, the tables) are set by each of them.
 */
export function dbPollerEnvironment(p: PulseDeployment['dbPoller']): Record<string, string> {
  return {
    [ENV.dbMode]: p.mode,
    [ENV.dbTable]: p.table,
    [ENV.dbBatchSize]: String(p.batchSize),
    [ENV.maxQueueDepth]: String(p.maxQueueDepth),
    [ENV.watermarkLookbackSeconds]: String(p.watermarkLookbackSeconds),
    [ENV.watermarkSkewSeconds]: String(p.watermarkSkewSeconds),
    [ENV.dbProcessedType]: p.processedType,
    ...(p.columns ? { [ENV.dbColumns]: JSON.stringify(p.columns) } : {}),
    ...(p.where !== undefined ? { [ENV.dbWhere]: p.where } : {}),
    ...(p.initialWatermark !== undefined ? { [ENV.dbInitialWatermark]: p.initialWatermark } : {}),
  };
}
