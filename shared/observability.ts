import { Logger } from '@aws-lambda-powertools/logger';
import { Metrics, MetricUnit } from '@aws-lambda-powertools/metrics';
import { settings } from './settings.ts';

export type { Logger, Metrics };
export { MetricUnit };

/**
 * Powertools Logger (JSON; level from POWERTOOLS_LOG_LEVEL / LOG_LEVEL) and Metrics (EMF, one
 * namespace; the service name is the only default dimension) for one function.
 */
export function createObservability(serviceName: string): { logger: Logger; metrics: Metrics } {
  const logger = new Logger({ serviceName });
  const metrics = new Metrics({
    namespace: settings.metricsNamespace,
    serviceName,
    // Metrics' own messages (one string each) go through the function's logger. Its warning that an
    // invocation had no metrics to publish (an event acknowledged without work) is routine here: logged
    // at DEBUG instead of as an unstructured console line per such invocation.
    logger: {
      debug: (message: unknown) => logger.debug(String(message)),
      info: (message: unknown) => logger.info(String(message)),
      warn: (message: unknown) =>
        String(message).startsWith('No application metrics')
          ? logger.debug(String(message))
          : logger.warn(String(message)),
      error: (message: unknown) => logger.error(String(message)),
    },
  });
  return { logger, metrics };
}
