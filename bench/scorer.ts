/**
 * The scorer end to end on moto: signals packed by the real SignalSender onto a moto SQS queue,
 * received in batches of `settings.signals.batchSize` as the event source mapping would, and handed to
 * the real scorer handler, whose DynamoDB and S3 calls go through counting proxies to moto. Capacity
 * units are computed from the items on the wire as AWS bills them (bench/lib.ts): moto's own
 * ConsumedCapacity is not AWS's.
 */
import { DeleteMessageBatchCommand, ReceiveMessageCommand } from '@aws-sdk/client-sqs';
import { ScanCommand } from '@aws-sdk/lib-dynamodb';
import type { Context, SQSBatchResponse, SQSEvent, SQSRecord } from 'aws-lambda';
import type { AwsClients } from '#shared/clients.ts';
import { SignalSender } from '#shared/sender.ts';
import { settings } from '#shared/settings.ts';
import { expandSignals, parseSignal, readSignalMessage, type Signal } from '#shared/signal.ts';
import { newToken } from '../functions/scorer/blocks.ts';
import { dedupeKey, seriesKey } from '../functions/scorer/keys.ts';
import { zScoreModel } from '../functions/scorer/model.ts';
import type { Work } from '../functions/scorer/plan.ts';
import { encodeRecords } from '../functions/scorer/score-store.ts';
import { buildTransaction } from '../functions/scorer/transaction.ts';
import { lambdaContext } from '../local/event-sources/lambda-context.ts';
import { toSqsRecord } from '../local/event-sources/sqs.ts';
import type { LocalResources } from '../local/runtime/resources.ts';
import { type DynamoCounts, prng, round, type S3Counts } from './lib.ts';

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
  /** Write request units per signal, as AWS bills them (item sizes; 2 per KB in a transaction). */
  readonly wru_per_signal: number;
  /** Read request units per signal (strongly consistent; 1 per key not found). */
  readonly rru_per_signal: number;
  readonly ddb_calls: Record<string, number>;
  readonly ddb_calls_per_signal: number;
  readonly cancelled_items: number;
  /** S3 requests on the scores bucket by kind, and per signal. */
  readonly s3_requests: Record<string, number>;
  readonly s3_put_per_signal: number;
  readonly s3_get_per_signal: number;
  /** Bytes of final score objects (gzip NDJSON) per signal: what S3 stores. */
  readonly s3_bytes_per_signal: number;
  /** The scorer's own CPU for its signals (read, key, score, build, gzip), without any call: ms per 1,000. */
  readonly cpu_ms_per_1k_signals: number;
}

/**
 * The CPU the scorer spends on a batch besides waiting for AWS: reading and validating its messages,
 * keying each signal, scoring and building one transaction per batch, and the gzip NDJSON of its scores.
 */
function cpuPer1k(events: SQSEvent[]): number {
  const model = zScoreModel({
    threshold: settings.scoring.zThreshold,
    minSamples: settings.scoring.minSamples,
  });
  let signals = 0;
  const t0 = performance.now();
  for (const event of events) {
    const works: Work[] = [];
    for (const r of event.Records) {
      const read = readSignalMessage(r.body);
      if (!read.ok) continue;
      for (const raw of expandSignals(read.message)) {
        const parsed = parseSignal(raw);
        if (!parsed.ok) continue;
        const signal = parsed.signal;
        works.push({
          signal,
          key: dedupeKey(signal, settings.scoring.blockPositions),
          series: seriesKey(signal.source, signal.name),
          messageIds: new Set([r.messageId]),
        });
      }
    }
    const bySeries = new Map<string, Work[]>();
    for (const w of works) bySeries.set(w.series, [...(bySeries.get(w.series) ?? []), w]);
    const built = buildTransaction(
      { series: [...bySeries].map(([series, list]) => ({ series, signals: list })) },
      new Map(),
      new Map(),
      { table: 't', token: newToken(Date.now()), now: Date.now(), model, totalsShard: 0 },
    );
    encodeRecords(built.records);
    signals += works.length;
  }
  return ((performance.now() - t0) / signals) * 1000;
}

/**
 * Signals shaped like the CSV ingest's (s3 origin, two attributes unless `attributes` is false), spread
 * round-robin over the series.
 */
function makeSignals(run: string, n: number, series: number, attributes = true): Signal[] {
  const from = 0;
  const rand = prng(series + from);
  const base = Date.parse('2024-05-01T00:00:00.000Z');
  return Array.from({ length: n }, (_, k) => {
    const i = from + k;
    const s = i % series;
    const ref = `s3://bench/incoming/${run}.csv@0123456789abcdef0123456789abcdef#${i + 1}`;
    return {
      id: ref,
      name: `cpu-${s}`,
      value: s * 10 + rand() * 4,
      source: `bench-${run}`,
      timestamp: new Date(base + i * 1000).toISOString(),
      ...(attributes ? { attributes: { host: `host ${i % 13}`, region: 'eu-west-1' } } : {}),
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
  const sender = new SignalSender(
    clients.sqs,
    q.url,
    { kind: 's3', ref: `s3://bench/incoming/${run}.csv` },
    { maxMessageBytes: settings.signals.maxMessageBytes },
  );
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

export interface ScorerBenchDeps {
  readonly clients: AwsClients;
  readonly resources: LocalResources;
  readonly handler: Handler;
  readonly counts: () => DynamoCounts;
  readonly s3Counts: () => S3Counts;
  readonly resetCounts: () => void;
}

/** Runs one scenario. */
export async function benchScorer(scenario: ScorerScenario, deps: ScorerBenchDeps): Promise<ScorerResult> {
  const run = `${scenario.label}-${Date.now().toString(36)}`;
  const signals = makeSignals(run, scenario.signals, scenario.series);
  const { events, messages } = await queueAsEvents(deps.clients, deps.resources, signals, run);
  cpuPer1k(events); // warm-up
  const cpu = cpuPer1k(events);

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
  const s3 = deps.s3Counts();

  // The run must have scored every signal exactly once: the series counts add up to the signals sent.
  const scored = await seriesTotal(deps.clients, deps.resources.tables.scores, `bench-${run}`);
  if (scored !== scenario.signals) {
    throw new Error(`series state counts ${scored} signals, expected ${scenario.signals}`);
  }
  return {
    ...summarize(scenario, { messages, batches: events.length, seconds, slowestBatch }, counts, s3),
    cpu_ms_per_1k_signals: round(cpu, 1),
  };
}

function summarize(
  scenario: ScorerScenario,
  run: { messages: number; batches: number; seconds: number; slowestBatch: number },
  counts: DynamoCounts,
  s3: S3Counts,
): Omit<ScorerResult, 'cpu_ms_per_1k_signals'> {
  const n = scenario.signals;
  const calls = Object.fromEntries([...counts.calls.entries()].sort());
  const totalCalls = [...counts.calls.values()].reduce((a, b) => a + b, 0);
  const s3Requests = Object.fromEntries([...s3.requests.entries()].filter(([k]) => /scores/.test(k)).sort());
  const of = (method: string) =>
    Object.entries(s3Requests)
      .filter(([k]) => k.startsWith(`${method} `))
      .reduce((a, [, v]) => a + v, 0);
  return {
    signals: n,
    series: scenario.series,
    messages: run.messages,
    batches: run.batches,
    seconds: round(run.seconds, 2),
    slowest_batch_s: round(run.slowestBatch, 2),
    signals_per_s: Math.round(n / run.seconds),
    ddb_items_written: counts.itemsWritten,
    ddb_writes_per_signal: round(counts.itemsWritten / n, 4),
    wru_per_signal: round((counts.wru + counts.wruCancelled) / n, 4),
    rru_per_signal: round(counts.rru / n, 4),
    ddb_calls: calls,
    ddb_calls_per_signal: round(totalCalls / n, 4),
    cancelled_items: counts.itemsCancelled,
    s3_requests: s3Requests,
    s3_put_per_signal: round(of('PUT') / n, 5),
    s3_get_per_signal: round(of('GET') / n, 5),
    s3_bytes_per_signal: round(s3.finalBytes / n, 1),
  };
}

export interface HotSeriesResult extends Omit<ScorerResult, 'cpu_ms_per_1k_signals'> {
  /** Invocations at once, each a batch of `settings.signals.batchSize` messages of the one series. */
  readonly concurrent_batches: number;
  /** Signals the series counts at the end: every signal once. */
  readonly scored: number;
  /** Per message, the deliveries that reported it failed: the most of any message. */
  readonly max_failures_per_message: number;
  readonly failed_deliveries: number;
  /** Messages that failed maxReceiveCount times (they would be in the DLQ). */
  readonly dlq: number;
  readonly conflicts_wru_cancelled: number;
}

/**
 * One series, `batches` scorer invocations at once, each of 10 messages of 2,000 signals: they conflict on
 * the series item. Each runs with the function's real timeout; what one gives back (its partial batch
 * response) is delivered again, as SQS would, until everything is scored or a message has failed
 * maxReceiveCount times.
 */
export async function benchHotSeries(batches: number, deps: ScorerBenchDeps): Promise<HotSeriesResult> {
  const run = `hot-${Date.now().toString(36)}`;
  const perBatch = settings.signals.batchSize * settings.signals.maxSignalsPerMessage;
  // Without attributes, 2,000 signals fit one message (the byte budget would split larger ones).
  const signals = makeSignals(run, batches * perBatch, 1, false);
  const { events, messages } = await queueAsEvents(deps.clients, deps.resources, signals, run);
  if (events.length !== batches)
    throw new Error(`${events.length} batches of the hot series, expected ${batches}`);
  deps.resetCounts();
  const failures = new Map<string, number>();
  const t0 = performance.now();
  let slowestBatch = 0;
  let pending = events;
  let failedDeliveries = 0;
  while (pending.length > 0) {
    const outcomes = await Promise.all(
      pending.map(async (event) => {
        const b0 = performance.now();
        const out = await deps.handler(
          event,
          lambdaContext({ timeoutMs: settings.functions.scorer.timeoutSeconds * 1000 }),
        );
        slowestBatch = Math.max(slowestBatch, (performance.now() - b0) / 1000);
        return { event, failed: new Set(out.batchItemFailures.map((f) => f.itemIdentifier)) };
      }),
    );
    pending = [];
    for (const { event, failed } of outcomes) {
      const again = event.Records.filter((r) => failed.has(r.messageId));
      failedDeliveries += again.length;
      for (const r of again) failures.set(r.messageId, (failures.get(r.messageId) ?? 0) + 1);
      const alive = again.filter((r) => (failures.get(r.messageId) ?? 0) < settings.signals.maxReceiveCount);
      if (alive.length > 0) pending.push({ Records: alive });
    }
  }
  const seconds = (performance.now() - t0) / 1000;
  const scored = await seriesTotal(deps.clients, deps.resources.tables.scores, `bench-${run}`);
  const base = summarize(
    { label: 'hot_series', signals: signals.length, series: 1 },
    { messages, batches: events.length, seconds, slowestBatch },
    deps.counts(),
    deps.s3Counts(),
  );
  return {
    ...base,
    concurrent_batches: batches,
    scored,
    max_failures_per_message: Math.max(0, ...failures.values()),
    failed_deliveries: failedDeliveries,
    dlq: [...failures.values()].filter((n) => n >= settings.signals.maxReceiveCount).length,
    conflicts_wru_cancelled: deps.counts().wruCancelled,
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
