import { Logger } from '@aws-lambda-powertools/logger';
import { Metrics } from '@aws-lambda-powertools/metrics';
import { vi } from 'vitest';

/** A logger that prints nothing, and metrics whose values tests can read back. */
export function quietObservability() {
  const logger = new Logger({ serviceName: 'test', logLevel: 'SILENT' });
  const metrics = new Metrics({ namespace: 'Test', serviceName: 'test' });
  const recorded: Record<string, number[]> = {};
  vi.spyOn(metrics, 'addMetric').mockImplementation((name: string, _unit, value: number) => {
    const list = recorded[name] ?? [];
    list.push(value);
    recorded[name] = list;
    return metrics;
  });
  const total = (name: string) => (recorded[name] ?? []).reduce((a, b) => a + b, 0);
  return { logger, metrics, recorded, total };
}
