/**
 * One s3-trigger ingest in a process of its own, so that its peak RSS is the ingest's alone. The
 * benchmark bundles this file with the functions' esbuild options and runs it with plain Node, as
 * Lambda runs a bundle. Input: one JSON argument (endpoints, names, the file); output: one JSON line.
 * With `fanOut`, the file is split (the parts announced are returned, not sent); with `part`, one part
 * of a split file is ingested.
 */

import { readFileSync } from 'node:fs';
import { isMainThread } from 'node:worker_threads';
import { DynamoDBClient } from '@aws-sdk/client-dynamodb';
import { S3Client } from '@aws-sdk/client-s3';
import { SQSClient } from '@aws-sdk/client-sqs';
import { DynamoDBDocumentClient } from '@aws-sdk/lib-dynamodb';
import { DOC_TRANSLATE_CONFIG } from '#shared/clients.ts';
import { loadS3TriggerConfig } from '#shared/config.ts';
import { limitHeapGrowth } from '#shared/heap.ts';
import { Ledger } from '#shared/ledger.ts';
import { createObservability } from '#shared/observability.ts';
import { settings } from '#shared/settings.ts';
import { SQS_CLIENT_OPTIONS } from '#shared/sqs-protocol.ts';
import type { FanOutOptions } from '../functions/s3-trigger/fan-out.ts';
import { ingestFile } from '../functions/s3-trigger/ingest.ts';
import { parseThreadDecider } from '../functions/s3-trigger/parsers/csv-thread.ts';
import { countRequests, sum } from './lib.ts';

export interface ChildInput {
  readonly s3Endpoint: string;
  readonly sqsEndpoint: string;
  readonly queueUrl: string;
  readonly ddbEndpoint: string;
  readonly ledgerTable: string;
  readonly quarantineBucket: string;
  readonly bucket: string;
  readonly key: string;
  readonly etag: string;
  readonly size: number;
  readonly fanOut?: FanOutOptions;
  readonly part?: number;
}

export interface ChildOutput {
  readonly status: string;
  readonly records: number;
  readonly seconds: number;
  /** process.resourceUsage().maxRSS, in MiB. */
  readonly maxRssMb: number;
  /** VmHWM from /proc/self/status, in MiB (the kernel's own peak RSS), when readable. */
  readonly vmHwmMb?: number;
  readonly sqsRequests: number;
  /** With `fanOut`: the parts the file was split into. */
  readonly parts?: number;
}

/**
 * The bundle also runs in the CSV parser's thread and the Parquet decoder's process (parsers/csv-thread.ts,
 * parsers/parquet.ts load the bundle they are part of): only the main thread of the process the benchmark
 * started ingests.
 */
if (isMainThread && process.argv[2]?.startsWith('{')) await main();

async function main(): Promise<void> {
  // As the function's handler does (shared/heap.ts).
  limitHeapGrowth(settings.functions.s3Trigger.heapGrowingPercent);

  const input = JSON.parse(process.argv[2] ?? '{}') as ChildInput;
  const common = {
    region: 'us-east-1',
    credentials: { accessKeyId: 'test', secretAccessKey: 'test' },
    maxAttempts: 5,
  };
  const s3 = new S3Client({ ...common, endpoint: input.s3Endpoint, forcePathStyle: true });
  // The function's own SQS options (shared/clients.ts), so that the child sends as s3-trigger does.
  const sqs = new SQSClient({ ...common, endpoint: input.sqsEndpoint, ...SQS_CLIENT_OPTIONS });
  const ddb = new DynamoDBClient({ ...common, endpoint: input.ddbEndpoint });
  const doc = DynamoDBDocumentClient.from(ddb, DOC_TRANSLATE_CONFIG);
  const sqsCounts = countRequests(sqs);
  const { logger, metrics } = createObservability('s3-trigger');
  const ledger = new Ledger(doc, input.ledgerTable, {
    leaseSeconds: settings.ledger.leaseSeconds,
    maxAttempts: settings.ledger.maxAttempts,
  });

  const config = loadS3TriggerConfig({
    SIGNALS_QUEUE_URL: input.queueUrl,
    LEDGER_TABLE: input.ledgerTable,
    QUARANTINE_BUCKET: input.quarantineBucket,
  });
  let announced = 0;
  const t0 = performance.now();
  const outcome = await ingestFile(
    {
      bucket: input.bucket,
      key: input.key,
      etag: input.etag,
      size: input.size,
      ...(input.part !== undefined ? { part: input.part } : {}),
    },
    {
      ...(input.fanOut
        ? {
            announceParts: async (parts) => {
              announced += parts.length;
            },
          }
        : {}),
      s3,
      sqs,
      ledger,
      logger,
      metrics,
      owner: `bench-${process.pid}`,
      // As the handler resolves and decides them (shared/config.ts, parsers/csv-thread.ts).
      csvOnThread: parseThreadDecider(config.parseThread),
      config: {
        signalsQueueUrl: input.queueUrl,
        quarantineBucket: input.quarantineBucket,
        heartbeatSeconds: config.heartbeatSeconds,
        checkpointSeconds: config.checkpointSeconds,
        handOverBeforeTimeoutSeconds: config.handOverBeforeTimeoutSeconds,
        maxAttempts: config.maxAttempts,
        maxMessageBytes: config.maxMessageBytes,
        ...(input.fanOut ? { fanOut: input.fanOut } : {}),
      },
    },
  );
  const seconds = (performance.now() - t0) / 1000;

  const hwm = (() => {
    try {
      const m = /VmHWM:\s+(\d+) kB/.exec(readFileSync('/proc/self/status', 'utf8'));
      return m ? Number(m[1]) / 1024 : undefined;
    } catch {
      return undefined;
    }
  })();
  const out: ChildOutput = {
    status: outcome.status,
    records: outcome.status === 'SUCCESS' ? outcome.stats.records : 0,
    seconds,
    maxRssMb: process.resourceUsage().maxRSS / 1024,
    ...(hwm !== undefined ? { vmHwmMb: hwm } : {}),
    sqsRequests: sum(sqsCounts),
    ...(outcome.status === 'SPLIT' ? { parts: announced } : {}),
  };
  process.stdout.write(`${JSON.stringify(out)}\n`);
  for (const c of [s3, sqs, ddb]) c.destroy();
}
