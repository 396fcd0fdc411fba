import type { DbTableEntry } from '#shared/config.ts';
import { ENV } from '#shared/contract.ts';
import type { DbPollerTable, PulseDeployment } from './props.ts';

/**
 * The db-poller's settings as its environment (shared/contract.ts names the variables, shared/config.ts reads
 * them): one mapping, which the stack (infra/producers.ts) and the offline runtime (local/runtime/runtime.ts)
 * both use, so an option reaches the function the same way on AWS and offline. Resources (the secret, the
 * queue, the tables) are set by each of them. Every table's own settings travel in DB_TABLES (each schedule
 * names its table in its input); a one-table deployment is a list of one.
 */
export function dbPollerEnvironment(p: PulseDeployment['dbPoller']): Record<string, string> {
  return {
    [ENV.dbTables]: encodeDbTables(p.tables),
    [ENV.dbBatchSize]: String(p.batchSize),
    [ENV.maxQueueDepth]: String(p.maxQueueDepth),
    [ENV.watermarkLookbackSeconds]: String(p.watermarkLookbackSeconds),
    [ENV.watermarkSkewSeconds]: String(p.watermarkSkewSeconds),
  };
}

/**
 * DB_TABLES: each table as shared/config.ts's `DbTableEntrySchema` reads it (the schedule stays with the
 * stack). Mode and flag type are always written; the rest only when given, to keep the 4 KB environment for
 * the tables (infra/props.ts refuses more than fits).
 */
export function encodeDbTables(tables: readonly DbPollerTable[]): string {
  return JSON.stringify(
    tables.map(
      (t): DbTableEntry => ({
        table: t.table,
        mode: t.mode,
        processedType: t.processedType,
        ...(t.columns ? { columns: t.columns } : {}),
        ...(t.where !== undefined ? { where: t.where } : {}),
        ...(t.initialWatermark !== undefined ? { initialWatermark: t.initialWatermark } : {}),
      }),
    ),
  );
}
