import { loadS3TriggerConfig } from '#shared/config.ts';
import type { IngestConfig } from '../../functions/s3-trigger/ingest.ts';

/**
 * The s3-trigger's configuration as its handler resolves it (shared/config.ts: every default applied once),
 * for tests that call `ingestFile` directly: they spread it and override what they test. Without fan-out
 * and staging, which a test asks for when it wants them.
 */
export const INGEST_DEFAULTS: IngestConfig = (() => {
  const c = loadS3TriggerConfig({ SIGNALS_QUEUE_URL: 'q', LEDGER_TABLE: 'ledger', QUARANTINE_BUCKET: 'qb' });
  return {
    signalsQueueUrl: c.signalsQueueUrl,
    quarantineBucket: c.quarantineBucket,
    heartbeatSeconds: c.heartbeatSeconds,
    checkpointSeconds: c.checkpointSeconds,
    maxMessageBytes: c.maxMessageBytes,
    handOverBeforeTimeoutSeconds: c.handOverBeforeTimeoutSeconds,
    maxAttempts: c.maxAttempts,
  };
})();
