/**
 * A small harness for integration tests: per-test-file resources on the shared moto server, the real
 * handlers wired to them through environment variables, and the SQS event-source emulation in front.
 */

import { GetObjectCommand, ListObjectsV2Command } from '@aws-sdk/client-s3';
import { GetQueueAttributesCommand, ReceiveMessageCommand } from '@aws-sdk/client-sqs';
import { GetCommand, ScanCommand } from '@aws-sdk/lib-dynamodb';
import type { Context, SQSBatchResponse, SQSEvent } from 'aws-lambda';
import type { LedgerItem } from '#shared/ledger.ts';
import { routesEnv, type S3Route } from '#shared/routes.ts';
import { settings } from '#shared/settings.ts';
import { seriesKey } from '../../functions/scorer/keys.ts';
import { decodeRecords, type ScoreRecord } from '../../functions/scorer/score-store.ts';
import type { Target } from '../../local/commands/target.ts';
import { startSqsEventSource } from '../../local/event-sources/sqs.ts';
import { makeClients } from '../../local/runtime/clients.ts';
import { resourceNames } from '../../local/runtime/names.ts';
import { createResources } from '../../local/runtime/resources.ts';
import { waitUntil } from '../helpers/wait.ts';

export type Handler = (event: SQSEvent, context: Context) => Promise<SQSBatchResponse | undefined>;

export interface PipelineOptions {
  readonly leaseSeconds?: number;
  readonly heartbeatSeconds?: number;
  readonly visibility?: { fileEvents?: number; signals?: number };
  /** Where the handlers send their AWS calls (e.g. a fault-injecting proxy). @default the emulator */
  readonly handlerEndpoint?: string;
  /** The s3-trigger's timeout as its event source enforces it. @default the event source's (900 s) */
  readonly s3TriggerTimeoutSeconds?: number;
  /** s3-trigger invocations at once (the parts of a split file run side by side). @default 1 */
  readonly s3TriggerConcurrency?: number;
  /** The s3-trigger's routes (S3_ROUTES), as the stack would set them. @default the default route */
  readonly routes?: readonly S3Route[];
}

/** Environment the handlers read at import time (see shared/config.ts). */
export function handlerEnv(
  endpoint: string,
  env: Awaited<ReturnType<typeof createResources>>,
  names: ReturnType<typeof resourceNames>,
  opts: PipelineOptions = {},
): Record<string, string> {
  return {
    AWS_ENDPOINT_URL: endpoint,
    AWS_REGION: 'us-east-1',
    AWS_ACCESS_KEY_ID: 'test',
    AWS_SECRET_ACCESS_KEY: 'test',
    S3_FORCE_PATH_STYLE: 'true',
    // On the handlers' endpoint (the SQS client sends to the queue URL's host).
    SIGNALS_QUEUE_URL: new URL(new URL(env.queues.signals.url).pathname, endpoint).toString(),
    FILE_EVENTS_QUEUE_URL: new URL(new URL(env.queues.fileEvents.url).pathname, endpoint).toString(),
    LEDGER_TABLE: names.ledgerTable,
    SCORES_TABLE: names.scoresTable,
    SCORES_BUCKET: names.scoresBucket,
    ANOMALIES_TABLE: names.anomaliesTable,
    QUARANTINE_BUCKET: names.bucket,
    LEDGER_LEASE_SECONDS: String(opts.leaseSeconds ?? 3),
    LEDGER_HEARTBEAT_SECONDS: String(opts.heartbeatSeconds ?? 1),
    POWERTOOLS_METRICS_DISABLED: 'true',
    POWERTOOLS_LOG_LEVEL: process.env.PULSE_TEST_LOG_LEVEL ?? 'ERROR',
    ...(opts.routes ? { S3_ROUTES: routesEnv(opts.routes) } : {}),
  };
}

export async function setUpPipeline(endpoint: string, prefix: string, opts: PipelineOptions = {}) {
  const clients = makeClients(endpoint);
  const names = resourceNames(prefix);
  const resources = await createResources(clients, names, {
    visibilityTimeoutSeconds: {
      fileEvents: opts.visibility?.fileEvents ?? 4,
      signals: opts.visibility?.signals ?? 4,
    },
  });
  const env = handlerEnv(opts.handlerEndpoint ?? endpoint, resources, names, opts);
  Object.assign(process.env, env);
  const s3Trigger = (await import('../../functions/s3-trigger/handler.ts')).handler as unknown as Handler;
  const scorer = (await import('../../functions/scorer/handler.ts')).handler as unknown as Handler;

  const sources: { stop(): Promise<void> }[] = [];
  const start = (
    which: 'fileEvents' | 'signals',
    handler: Handler = which === 'fileEvents' ? s3Trigger : scorer,
  ) => {
    const q = resources.queues[which];
    const cfg = which === 'fileEvents' ? settings.fileEvents : settings.signals;
    const source = startSqsEventSource({
      sqs: clients.sqs,
      queueUrl: q.url,
      queueArn: q.arn,
      batchSize: cfg.batchSize,
      handler,
      ...(which === 'fileEvents' && opts.s3TriggerTimeoutSeconds
        ? { functionTimeoutSeconds: opts.s3TriggerTimeoutSeconds }
        : {}),
      ...(which === 'fileEvents' && opts.s3TriggerConcurrency
        ? { concurrency: opts.s3TriggerConcurrency }
        : {}),
    });
    sources.push(source);
    return source;
  };

  const ledgerItems = async (): Promise<LedgerItem[]> => {
    const items: LedgerItem[] = [];
    let start: Record<string, unknown> | undefined;
    do {
      const out = await clients.doc.send(
        new ScanCommand({ TableName: names.ledgerTable, ExclusiveStartKey: start, ConsistentRead: true }),
      );
      items.push(...((out.Items ?? []) as LedgerItem[]));
      start = out.LastEvaluatedKey;
    } while (start);
    // The files' items (and their parts): not the ledger's counter items (shared/ledger-counters.ts).
    return items.filter((i) => String(i.pk).startsWith('s3://'));
  };

  const scoreItems = async (): Promise<Record<string, unknown>[]> => {
    const items: Record<string, unknown>[] = [];
    let start: Record<string, unknown> | undefined;
    do {
      const out = await clients.doc.send(
        new ScanCommand({ TableName: names.scoresTable, ExclusiveStartKey: start, ConsistentRead: true }),
      );
      items.push(...(out.Items ?? []));
      start = out.LastEvaluatedKey;
    } while (start);
    return items;
  };

  /** Keys of the objects under `prefix` in the scores bucket. */
  const scoreObjects = async (prefix: string): Promise<string[]> => {
    const keys: string[] = [];
    let token: string | undefined;
    do {
      const out = await clients.s3.send(
        new ListObjectsV2Command({ Bucket: names.scoresBucket, Prefix: prefix, ContinuationToken: token }),
      );
      for (const o of out.Contents ?? []) if (o.Key) keys.push(o.Key);
      token = out.NextContinuationToken;
    } while (token);
    return keys;
  };

  /** Every score record in the final score objects (`scores/`): one per scored signal. */
  const scoreRecords = async (): Promise<(ScoreRecord & { object: string })[]> => {
    const records: (ScoreRecord & { object: string })[] = [];
    for (const key of await scoreObjects(settings.scores.prefix)) {
      const out = await clients.s3.send(new GetObjectCommand({ Bucket: names.scoresBucket, Key: key }));
      const body = await (out.Body as { transformToByteArray(): Promise<Uint8Array> }).transformToByteArray();
      for (const r of decodeRecords(body)) records.push({ ...r, object: key });
    }
    return records;
  };

  /** The scorer's running state of one series (one read, not a scan). */
  const series = async (source: string, name: string) => {
    const out = await clients.doc.send(
      new GetCommand({
        TableName: names.scoresTable,
        Key: { pk: seriesKey(source, name) },
        ConsistentRead: true,
      }),
    );
    return out.Item as { count: number; mean: number; m2: number; version: number } | undefined;
  };

  const queueDepth = async (
    which: 'fileEvents' | 'fileEventsDlq' | 'signals' | 'signalsDlq' | 'kafkaFailures',
  ) => {
    const out = await clients.sqs.send(
      new GetQueueAttributesCommand({
        QueueUrl: resources.queues[which].url,
        AttributeNames: ['ApproximateNumberOfMessages', 'ApproximateNumberOfMessagesNotVisible'],
      }),
    );
    return (
      Number(out.Attributes?.ApproximateNumberOfMessages ?? 0) +
      Number(out.Attributes?.ApproximateNumberOfMessagesNotVisible ?? 0)
    );
  };

  /** Reads (and leaves to reappear after their visibility timeout) the messages on a queue. */
  const peek = async (which: 'fileEventsDlq' | 'signalsDlq' | 'signals') => {
    const out = await clients.sqs.send(
      new ReceiveMessageCommand({
        QueueUrl: resources.queues[which].url,
        MaxNumberOfMessages: 10,
        WaitTimeSeconds: 1,
        VisibilityTimeout: 1,
      }),
    );
    return out.Messages ?? [];
  };

  /** The pipeline as a `pulse` command sees it (see local/commands/target.ts), on these clients. */
  const target: Target = {
    kind: 'local',
    name: 'local',
    clients,
    bucket: names.bucket,
    ledgerTable: names.ledgerTable,
    scoresTable: names.scoresTable,
    scoresBucket: names.scoresBucket,
    anomaliesTable: names.anomaliesTable,
    kafkaFailuresBucket: resources.kafkaFailuresBucket,
    queues: {
      fileEvents: resources.queues.fileEvents.url,
      fileEventsDlq: resources.queues.fileEventsDlq.url,
      signals: resources.queues.signals.url,
      signalsDlq: resources.queues.signalsDlq.url,
      kafkaFailures: resources.queues.kafkaFailures.url,
    },
    endpoints: { s3: endpoint, sqs: endpoint, dynamodb: endpoint },
    close: () => {},
  };

  const stopAll = async () => {
    await Promise.all(sources.splice(0).map((s) => s.stop()));
  };

  return {
    clients,
    names,
    resources,
    env,
    s3Trigger,
    scorer,
    start,
    ledgerItems,
    scoreItems,
    scoreObjects,
    scoreRecords,
    series,
    queueDepth,
    peek,
    stopAll,
    target,
  };
}

/** Polls until `check` returns a value that is not undefined/false (see test/helpers/wait.ts). */
export function waitFor<T>(
  what: string,
  check: () => Promise<T | undefined | false>,
  timeoutMs = 60_000,
): Promise<T> {
  return waitUntil(what, check, { timeoutMs, intervalMs: 200 });
}

/** A CSV of `rows` records for one series, every `badEvery`-th row with a non-numeric value. */
export function csvFile(
  rows: number,
  opts: { name?: string; badEvery?: number } = {},
): { text: string; good: number; bad: number } {
  const lines = ['id,name,value,timestamp,host'];
  let good = 0;
  let bad = 0;
  for (let i = 1; i <= rows; i++) {
    const isBad = opts.badEvery !== undefined && i % opts.badEvery === 0;
    if (isBad) bad++;
    else good++;
    lines.push(
      `,${opts.name ?? 'cpu'},${isBad ? 'n/a' : (i % 17) + 0.5},${1_700_000_000 + i},"host ${i % 3}"`,
    );
  }
  return { text: `${lines.join('\r\n')}\r\n`, good, bad };
}
