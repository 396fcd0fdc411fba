import { DB_POLLER_TABLE_METRICS, METRIC_DIMENSION } from '#shared/contract.ts';
import type { Metrics } from '#shared/observability.ts';

/** The part of Powertools Metrics the poller uses. */
export interface MetricsSink {
  addMetric(name: string, unit: Parameters<Metrics['addMetric']>[1], value: number): unknown;
}

const PER_TABLE = new Set<string>(DB_POLLER_TABLE_METRICS);

/**
 * The poller's metrics for one table: every metric is added as before (dimension `service` only, what the
 * alarms and the totals read), and those of {@link DB_POLLER_TABLE_METRICS} are also published with the
 * `table` dimension, each as a single-metric EMF line (Powertools' `singleMetric`, which keeps the service
 * dimension). Adding the dimension to the shared instance instead would move every metric of the
 * invocation to `{service, table}`, out of reach of the alarms that read `{service}`.
 */
export function tableMetrics(metrics: Metrics, table: string): MetricsSink {
  return {
    addMetric(name, unit, value) {
      metrics.addMetric(name, unit, value);
      if (!PER_TABLE.has(name)) return;
      const single = metrics.singleMetric();
      single.addDimension(METRIC_DIMENSION.table, table);
      single.addMetric(name, unit, value);
    },
  };
}
