import { randomUUID } from 'node:crypto';
import { BatchProcessor, EventType, processPartialResponse } from '@aws-lambda-powertools/batch';
import { injectLambdaContext } from '@aws-lambda-powertools/logger/middleware';
import { logMetrics } from '@aws-lambda-powertools/metrics/middleware';
import middy from '@middy/core';
import type { Context, SQSBatchResponse, SQSEvent, SQSRecord } from 'aws-lambda';
import { createClients } from '#shared/clients.ts';
import { loadS3TriggerConfig, meteredMemoryMb } from '#shared/config.ts';
import { limitHeapGrowth } from '#shared/heap.ts';
import { Ledger } from '#shared/ledger.ts';
import { countersSettler } from '#shared/ledger-counters.ts';
import { createObservability } from '#shared/observability.ts';
import { settings } from '#shared/settings.ts';
import { currentMeter, meterAwsCalls, meteringWith, UsageMeter } from '#shared/usage-meter.ts';
import { isCanary, recordCanarySeen } from './canary.ts';
import { fileEventsSender, parseFileEvents } from './events.ts';
import { ingestFile } from './ingest.ts';
import { parseThreadDecider } from './parsers/csv-thread.ts';

limitHeapGrowth(settings.functions.s3Trigger.heapGrowingPercent);
const config = loadS3TriggerConfig();
const clients = createClients(config, 's3-trigger');
const { logger, metrics } = createObservability('s3-trigger');
// The cost meter: each file's billed units, counted from these clients' calls (the document client shares
// the DynamoDB client's middleware stack) and added to its ledger item (docs/counters.md).
meterAwsCalls([clients.s3, clients.sqs, clients.ddb]);
const memoryMb = meteredMemoryMb(settings.functions.s3Trigger.memoryMb);
/** Decided once: whether a CSV object of a given size is parsed on a thread of its own. */
const csvOnThread = parseThreadDecider(config.parseThread);
const ledger = new Ledger(clients.doc, config.ledgerTable, {
  leaseSeconds: config.leaseSeconds,
  maxAttempts: config.maxAttempts,
  settle: countersSettler(clients.doc, config.ledgerTable, logger),
  usage: () => currentMeter()?.take(),
});

/** Continuations of long files and the parts of split files, on the file-events queue (events.ts). */
const fileEvents = config.fileEventsQueueUrl
  ? fileEventsSender(clients.sqs, config.fileEventsQueueUrl)
  : undefined;

async function recordHandler(record: SQSRecord, context?: Context): Promise<void> {
  logger.appendKeys({ messageId: record.messageId });
  try {
    for (const task of parseFileEvents(record.body)) {
      if (isCanary(task)) {
        // The ledger sweep's notification canary: recorded, never ingested (canary.ts).
        await recordCanarySeen(clients.doc, config.ledgerTable, task);
        logger.info('Notification canary recorded', { objectKey: task.key, versionId: task.versionId });
        continue;
      }
      await meteringWith(new UsageMeter(memoryMb), () =>
        ingestFile(task, {
          ...clients,
          ledger,
          logger,
          metrics,
          config,
          owner: `${record.messageId}/${randomUUID()}`,
          csvOnThread,
          ...(context && fileEvents
            ? {
                remainingMs: () => context.getRemainingTimeInMillis(),
                continueLater: fileEvents.continueLater,
              }
            : {}),
          ...(fileEvents ? { announceParts: fileEvents.announceParts } : {}),
        }),
      );
    }
  } finally {
    logger.removeKeys(['messageId']);
  }
}

const lambdaHandler = async (event: SQSEvent, context: Context): Promise<SQSBatchResponse> =>
  // A processor per invocation: it holds the batch's state, and the offline runtime may overlap invocations.
  processPartialResponse(event, recordHandler, new BatchProcessor(EventType.SQS), {
    context,
    processInParallel: false,
  });

export const handler = middy(lambdaHandler).use(injectLambdaContext(logger)).use(logMetrics(metrics));
