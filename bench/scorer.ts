/**
 * The scorer end to end on moto: signals packed by the real SignalSender onto a moto SQS queue,
 * received in batches of `settings.signals.batchSize` as the event source mapping would, and handed to
 * the real scorer handler, whose DynamoDB calls go through a counting proxy to moto.
 */
import { DeleteMessageBatchCommand, ReceiveMessageCommand } from '@aws-sdk/client-sqs';
import { ScanCommand } from '@aws-sdk/lib-dynamodb';
import type { Context, SQSBatchResponse, SQSEvent, SQSRecord } from 'aws-lambda';
import { lambdaContext } from '../local/lambda-context.ts';
import type { LocalResources } from '../local/resources.ts';
import { toSqsRecord } from '../local/sqs-event-source.ts';
import type { AwsClients } from '../shared/clients.ts';
import { SignalSender } from '../shared/sender.ts';
import { settings } from '../shared/settings.ts';
import type { Signal } from '../shared/signal.ts';
import { type DynamoCounts, prng, round } from './lib.ts';

type Handler = (event: SQSEvent, context: Context) => Promise<SQSBatchResponse>;

export interface ScorerScenario {
  readonly label: string;
  readonly signals: number;
  readonly series: number;
}

export interface ScorerResult {
  readonly signals: number;
  readonly series: number;
  readonly messages: number;
  readonly batches: number;
  readonly seconds: number;
  /** The longest handler invocation (one batch), against moto. */
  readonly slowest_batch_s: number;
  readonly signals_per_s: number;
  readonly ddb_items_written: number;
  readonly ddb_writes_per_signal: number;
  readonly ddb_calls: Record<string, number>;
  readonly ddb_calls_per_signal: number;
  readonly cancelled_items: number;
}

/** Signals shaped like the CSV ingest's (s3 origin, two attributes), spread round-robin over the series. */
function makeSignals(run: string, n: number, series: number): Signal[] {
  const rand = prng(series);
  const base = Date.parse('2024-05-01T00:00:00.000Z');
  return Array.from({ length: n }, (_, i) => {
    const s = i % series;
    const ref = `s3://bench/incoming/${run}.csv@0123456789abcdef0123456789abcdef#${i + 1}`;
    return {
      id: ref,
      name: `cpu-${s}`,
      value: s * 10 + rand() * 4,
      source: `bench-${run}`,
      timestamp: new Date(base + i * 1000).toISOString(),
      attributes: { host: `host ${i % 13}`, region: 'eu-west-1' },
      origin: { kind: 's3' as const, ref },
    };
  });
}

/** Packs the signals onto the queue and receives them back as Lambda would batch them. */
async function queueAsEvents(
  clients: AwsClients,
  resources: LocalResources,
  signals: Signal[],
  run: string,
): Promise<{ events: SQSEvent[]; messages: number }> {
  const q = resources.queues.signals;
  const sender = new SignalSender(clients.sqs, q.url, { kind: 's3', ref: `s3://bench/incoming/${run}.csv` });
  for (const s of signals) await sender.add(s);
  await sender.flush();
  const records: SQSRecord[] = [];
  while (records.length < sender.stats.messages) {
    const out = await clients.sqs.send(
      new ReceiveMessageCommand({
        QueueUrl: q.url,
        MaxNumberOfMessages: settings.signals.batchSize,
        VisibilityTimeout: 600,
        WaitTimeSeconds: 1,
        MessageSystemAttributeNames: ['All'],
      }),
    );
    const messages = out.Messages ?? [];
    records.push(...messages.map((m) => toSqsRecord(m, q.arn)));
    if (messages.length) {
      await clients.sqs.send(
        new DeleteMessageBatchCommand({
          QueueUrl: q.url,
          Entries: messages.map((m, i) => ({ Id: String(i), ReceiptHandle: m.ReceiptHandle ?? '' })),
        }),
      );
    }
  }
  const events: SQSEvent[] = [];
  for (let i = 0; i < records.length; i += settings.signals.batchSize) {
    events.push({ Records: records.slice(i, i + settings.signals.batchSize) });
  }
  return { events, messages: sender.stats.messages };
}

/** Runs one scenario. `counts` is the proxy's counter, reset by the caller before. */
export async function benchScorer(
  scenario: ScorerScenario,
  deps: {
    readonly clients: AwsClients;
    readonly resources: LocalResources;
    readonly handler: Handler;
    readonly counts: () => DynamoCounts;
    readonly resetCounts: () => void;
  },
): Promise<ScorerResult> {
  const run = `${scenario.label}-${Date.now().toString(36)}`;
  const signals = makeSignals(run, scenario.signals, scenario.series);
  const { events, messages } = await queueAsEvents(deps.clients, deps.resources, signals, run);

  deps.resetCounts();
  const t0 = performance.now();
  let slowestBatch = 0;
  for (const event of events) {
    // moto is many times slower than DynamoDB: a batch that takes a second on AWS can take longer than
    // the function's 60 s here, so the context gets Lambda's longest timeout; slowest_batch_s shows it.
    const b0 = performance.now();
    const out = await deps.handler(event, lambdaContext({ timeoutMs: 900_000 }));
    slowestBatch = Math.max(slowestBatch, (performance.now() - b0) / 1000);
    if (out.batchItemFailures.length) {
      throw new Error(`scorer reported ${out.batchItemFailures.length} failed messages in the benchmark`);
    }
  }
  const seconds = (performance.now() - t0) / 1000;
  const counts = deps.counts();

  // The run must have scored every signal exactly once: the series counts add up to the signals sent.
  const scored = await seriesTotal(deps.clients, deps.resources.tables.scores, `bench-${run}`);
  if (scored !== scenario.signals) {
    throw new Error(`series state counts ${scored} signals, expected ${scenario.signals}`);
  }
  const calls = Object.fromEntries([...counts.calls.entries()].sort());
  const totalCalls = [...counts.calls.values()].reduce((a, b) => a + b, 0);
  return {
    signals: scenario.signals,
    series: scenario.series,
    messages,
    batches: events.length,
    seconds: round(seconds, 2),
    slowest_batch_s: round(slowestBatch, 2),
    signals_per_s: Math.round(scenario.signals / seconds),
    ddb_items_written: counts.itemsWritten,
    ddb_writes_per_signal: round(counts.itemsWritten / scenario.signals, 3),
    ddb_calls: calls,
    ddb_calls_per_signal: round(totalCalls / scenario.signals, 3),
    cancelled_items: counts.itemsCancelled,
  };
}

async function seriesTotal(clients: AwsClients, table: string, source: string): Promise<number> {
  let total = 0;
  let start: Record<string, unknown> | undefined;
  do {
    const out = await clients.doc.send(
      new ScanCommand({
        TableName: table,
        FilterExpression: '#kind = :series AND #source = :source',
        ExpressionAttributeNames: { '#kind': 'kind', '#source': 'source' },
        ExpressionAttributeValues: { ':series': 'series', ':source': source },
        ExclusiveStartKey: start,
      }),
    );
    for (const item of out.Items ?? []) total += Number(item.count);
    start = out.LastEvaluatedKey;
  } while (start);
  return total;
}
