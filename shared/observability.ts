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

/** Metric names, one place, so dashboards and tests agree. */
export const METRIC = {
  filesClaimed: 'FilesClaimed',
  filesSucceeded: 'FilesSucceeded',
  filesFailed: 'FilesFailed',
  filesSkipped: 'FilesSkipped',
  /** Long files checkpointed and handed over to a fresh invocation before a timeout. */
  filesContinued: 'FilesContinued',
  /** Large files split into parts (fan-out), and the parts announced. */
  filesSplit: 'FilesSplit',
  partsAnnounced: 'PartsAnnounced',
  recordsIngested: 'RecordsIngested',
  recordsRejected: 'RecordsRejected',
  bytesRead: 'BytesRead',
  fileLatency: 'FileLatency',
  signalsScored: 'SignalsScored',
  signalsDuplicate: 'SignalsDuplicate',
  signalsRejected: 'SignalsRejected',
  anomalies: 'Anomalies',
  scoringLatency: 'ScoringLatency',
  seriesConflicts: 'SeriesConflicts',
  /** A record's own id already scored from another origin: the record is quarantined (docs/scoring.md). */
  idCollisions: 'IdCollisions',
  /** Pending score objects a scorer promoted for a transaction whose own scorer died after its commit. */
  scoresRecovered: 'ScoresRecovered',
  /** Messages given back (partial batch response) because the invocation ran short of time. */
  scorerDeadlineStops: 'ScorerDeadlineStops',
  rowsPolled: 'RowsPolled',
  rowsSent: 'RowsSent',
  rowsRejected: 'RowsRejected',
  /** Milliseconds from the oldest row's event time to the poll that read it (per round, the maximum). */
  pollerLag: 'PollerLag',
  pollerBackpressureStops: 'PollerBackpressureStops',
  pollerTimeBudgetStops: 'PollerTimeBudgetStops',
  watermarkConflicts: 'WatermarkConflicts',
  /** watermark mode, every poll: rows whose watermark column is NULL (never read; quarantined). */
  watermarkNullRows: 'WatermarkNullRows',
  /**
   * watermark mode on a timestamp/date column, every poll: rows dated past the database's now() plus the
   * skew (`'infinity'` too) or `'-infinity'` (not read, the watermark not moved; quarantined).
   */
  watermarkOutOfRangeRows: 'WatermarkOutOfRangeRows',
  /**
   * watermark mode on a timestamp/date column, every poll: rows of the last moments by the database's clock
   * that sit more than the lookback behind the watermark, so no read returns them (a stalled watermark).
   */
  watermarkStalledRows: 'WatermarkStalledRows',
  /** watermark mode: rows read again by the lookback (not counted in RowsPolled / RowsSent). */
  rowsReread: 'RowsReread',
  /** The ledger sweep, each run: ledger items nothing will carry on, in all and by kind. */
  filesStuck: 'FilesStuck',
  filesStuckProcessing: 'FilesStuckProcessing',
  filesStuckSplit: 'FilesStuckSplit',
  filesStuckDiscovered: 'FilesStuckDiscovered',
  filesStuckExhausted: 'FilesStuckExhausted',
  /** The ledger sweep, each run: 1 when the canary due by now never reached the ledger, else 0. */
  canaryMissed: 'CanaryMissed',
  kafkaRecordsDecoded: 'KafkaRecordsDecoded',
  kafkaRecordsQuarantined: 'KafkaRecordsQuarantined',
} as const;
