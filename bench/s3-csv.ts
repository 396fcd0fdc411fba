import { PutObjectCommand } from '@aws-sdk/client-s3';
import { CreateQueueCommand, DeleteQueueCommand, SendMessageCommand } from '@aws-sdk/client-sqs';
import { Parser } from 'csv-parse';
import { parse as parseSync } from 'csv-parse/sync';
import type { AwsClients } from '#shared/clients.ts';
import { loadS3TriggerConfig } from '#shared/config.ts';
import { Ledger } from '#shared/ledger.ts';
import type { Logger, Metrics } from '#shared/observability.ts';
import { settings } from '#shared/settings.ts';
import { normaliseEntry } from '#shared/signal.ts';
import { ingestFile } from '../functions/s3-trigger/ingest.ts';
import { pieces } from '../functions/s3-trigger/parsers/bytes.ts';
import { CSV_OPTIONS, type CsvCore, parseCsv } from '../functions/s3-trigger/parsers/csv.ts';
import { parseThreadDecider } from '../functions/s3-trigger/parsers/csv-thread.ts';
import { makeClients } from '../local/runtime/clients.ts';
import type { LocalResources } from '../local/runtime/resources.ts';
import type { ChildInput, ChildOutput } from './ingest-child.ts';
import { countRequests, MB, median, type RequestCounts, round, runNode, sum, timed } from './lib.ts';

/** csv-parse alone, driven as parsers/csv.ts drives it (its synchronous core, 64 KiB pieces). Returns records. */
export function rawParse(data: Buffer): number {
  const core = (
    new Parser({ ...CSV_OPTIONS, max_record_size: settings.limits.maxRecordBytes }) as unknown as {
      api: CsvCore;
    }
  ).api;
  let records = 0;
  const push = () => {
    records++;
  };
  for (const piece of pieces(data)) {
    const err = core.parse(piece, false, push, () => {});
    if (err) throw err;
  }
  const err = core.parse(undefined, true, push, () => {});
  if (err) throw err;
  return records;
}

/** The bytes as an S3 body would arrive: 64 KiB chunks. */
async function* chunks(data: Buffer): AsyncGenerator<Buffer> {
  for (let i = 0; i < data.length; i += 64 * 1024) yield data.subarray(i, i + 64 * 1024);
}

/** The repository's parser (UTF-8 check, header, row mapping) on in-memory bytes. */
async function parserModule(data: Buffer): Promise<number> {
  let n = 0;
  for await (const rec of parseCsv(chunks(data), { maxRecordBytes: settings.limits.maxRecordBytes })) {
    if (rec.data) n++;
  }
  return n;
}

/**
 * The parser, then validation and normalisation into message entries (as ingest does), then their JSON
 * (what packing costs).
 */
async function parseValidateSerialise(data: Buffer, serialise: boolean): Promise<number> {
  const message = {
    kind: 's3',
    ref: 's3://bench/incoming/stage.csv@0123456789abcdef0123456789abcdef',
  } as const;
  let n = 0;
  let bytes = 0;
  for await (const rec of parseCsv(chunks(data), { maxRecordBytes: settings.limits.maxRecordBytes })) {
    if (!rec.data) continue;
    const r = normaliseEntry(rec.data, `#${rec.row}`, message, 'incoming/stage.csv');
    if (!r.ok) throw new Error(r.reason);
    if (serialise) bytes += Buffer.byteLength(JSON.stringify(r.entry));
    n++;
  }
  return serialise ? bytes : n;
}

/** Best of `reps` runs, in MB/s. */
async function rate(bytes: number, reps: number, fn: () => Promise<unknown> | unknown): Promise<number> {
  const seconds: number[] = [];
  for (let i = 0; i < reps; i++) {
    const t0 = performance.now();
    await fn();
    seconds.push((performance.now() - t0) / 1000);
  }
  return round(bytes / MB / Math.min(...seconds), 2);
}

export interface StageRates {
  readonly raw_parse_mb_per_s: number;
  readonly parser_module_mb_per_s: number;
  readonly parse_validate_mb_per_s: number;
  readonly parse_validate_json_mb_per_s: number;
  /** Bytes of signal JSON per byte of CSV (what goes onto the queue). */
  readonly json_bytes_per_csv_byte: number;
}

/** The in-memory stages, each on the same bytes. */
export async function benchStages(data: Buffer, rows: number): Promise<StageRates> {
  const records = rawParse(data);
  if (records !== rows + 1) throw new Error(`csv-parse read ${records} records, expected ${rows + 1}`);
  if ((await parserModule(data)) !== rows) throw new Error('parseCsv did not read every row');
  const jsonBytes = await parseValidateSerialise(data, true);
  return {
    raw_parse_mb_per_s: await rate(data.length, 3, () => rawParse(data)),
    parser_module_mb_per_s: await rate(data.length, 2, () => parserModule(data)),
    parse_validate_mb_per_s: await rate(data.length, 2, () => parseValidateSerialise(data, false)),
    parse_validate_json_mb_per_s: await rate(data.length, 2, () => parseValidateSerialise(data, true)),
    json_bytes_per_csv_byte: round(jsonBytes / data.length, 2),
  };
}

export interface E2eResult {
  readonly file_mb: number;
  readonly records: number;
  /** The round before the counted ones: the first ingest of the process (parse thread start, cold code). */
  readonly warmup_s: number;
  readonly runs_s: number[];
  /** Median of the runs. */
  readonly mb_per_s: number;
  /**
   * csv-parse alone on the same bytes, once before the first run and once after each (the machine's speed
   * drifts by tens of percent within seconds, so each run is compared with the two bare parses around it).
   */
  readonly raw_parse_runs_s: number[];
  /** The median of each run's bare parse: the mean of the two around it. */
  readonly raw_parse_mb_per_s: number;
  /** Each run's throughput over its bare parse (the mean of the two around it). */
  readonly ratio_per_round: number[];
  readonly sqs_requests: Record<string, number>;
  readonly sqs_requests_per_1k_records: number;
  /** SQS bills each 64 KiB of a call's payload as one request. */
  readonly sqs_billed_requests_per_1k_records: number;
  readonly messages: number;
}

interface E2eDeps {
  /** The moto endpoint: the ingest gets SQS clients of its own there, so only its requests are counted. */
  readonly endpoint: string;
  readonly clients: AwsClients;
  readonly resources: LocalResources;
  readonly logger: Logger;
  readonly metrics: Metrics;
}

/** Counts SendMessageBatch payload bytes, billed per started 64 KiB by SQS. */
function countBilledSqs(sqs: AwsClients['sqs']): { billed: number; messages: number } {
  const out = { billed: 0, messages: 0 };
  sqs.middlewareStack.add(
    (next) => async (args) => {
      const input = (args as { input?: { Entries?: { MessageBody?: string }[]; MessageBody?: string } })
        .input;
      const bodies =
        input?.Entries?.map((e) => e.MessageBody ?? '') ?? (input?.MessageBody ? [input.MessageBody] : []);
      const bytes = bodies.reduce((n, b) => n + Buffer.byteLength(b), 0);
      out.billed += Math.max(1, Math.ceil(bytes / (64 * 1024)));
      out.messages += bodies.length;
      return next(args);
    },
    { step: 'deserialize', name: 'benchBilledSqs' },
  );
  return out;
}

/**
 * A queue of its own for one run, with the signals queue's message size, deleted afterwards so that
 * moto's memory stays flat (PurgeQueue is allowed once a minute only).
 */
async function withQueue<T>(clients: AwsClients, name: string, fn: (url: string) => Promise<T>): Promise<T> {
  const created = await clients.sqs.send(
    new CreateQueueCommand({
      QueueName: name,
      Attributes: { MaximumMessageSize: String(settings.signals.queueMaximumMessageBytes) },
    }),
  );
  const url = created.QueueUrl ?? '';
  try {
    return await fn(url);
  } finally {
    await clients.sqs.send(new DeleteQueueCommand({ QueueUrl: url }));
  }
}

/** End to end on moto: the object in moto S3, the ledger in moto DynamoDB, the signals onto moto SQS. */
export async function benchEndToEnd(
  data: Buffer,
  rows: number,
  reps: number,
  deps: E2eDeps,
): Promise<E2eResult> {
  const { clients, resources } = deps;
  const ingestSqs = makeClients(deps.endpoint).sqs;
  const counts: RequestCounts = countRequests(ingestSqs);
  const billed = countBilledSqs(ingestSqs);
  const ledger = new Ledger(clients.doc, resources.tables.ledger, {
    leaseSeconds: settings.ledger.leaseSeconds,
    maxAttempts: settings.ledger.maxAttempts,
  });
  const config = loadS3TriggerConfig({
    SIGNALS_QUEUE_URL: 'resolved per run',
    LEDGER_TABLE: resources.tables.ledger,
    QUARANTINE_BUCKET: resources.bucket,
  });
  const runs: number[] = [];
  const rawRuns: number[] = [];
  let warmup = 0;
  let firstRun: { requests: Record<string, number>; billed: number; messages: number } | undefined;
  // Round -1 warms up: the first file a process ingests also starts the parse thread and has its code
  // compiled (its time is kept as `warmup_s`).
  for (let i = -1; i < reps; i++) {
    const key = `incoming/bench-e2e-${Date.now().toString(36)}-${i}.csv`;
    const put = await clients.s3.send(
      new PutObjectCommand({ Bucket: resources.bucket, Key: key, Body: data, ContentType: 'text/csv' }),
    );
    const etag = (put.ETag ?? '').replaceAll('"', '');
    counts.clear();
    billed.billed = 0;
    billed.messages = 0;
    // The warm-up round has no bare parse to pair with: csv-parse alone is warm from the stages already.
    if (i === 0) rawRuns.push((await timed(async () => rawParse(data))).seconds);
    const { seconds, value: outcome } = await withQueue(
      clients,
      `${resources.names.prefix}-e2e-${i}`,
      (queueUrl) =>
        timed(() =>
          ingestFile(
            { bucket: resources.bucket, key, etag, size: data.length },
            {
              s3: clients.s3,
              sqs: ingestSqs,
              ledger,
              logger: deps.logger,
              metrics: deps.metrics,
              owner: `bench-e2e-${i}`,
              // As the handler resolves and decides them (shared/config.ts, parsers/csv-thread.ts).
              csvOnThread: parseThreadDecider(config.parseThread),
              config: {
                signalsQueueUrl: queueUrl,
                quarantineBucket: resources.bucket,
                heartbeatSeconds: config.heartbeatSeconds,
                checkpointSeconds: config.checkpointSeconds,
                handOverBeforeTimeoutSeconds: config.handOverBeforeTimeoutSeconds,
                maxAttempts: config.maxAttempts,
                maxMessageBytes: config.maxMessageBytes,
              },
            },
          ),
        ),
    );
    if (outcome.status !== 'SUCCESS' || outcome.stats.records !== rows) {
      throw new Error(`end-to-end ingest did not send every row: ${JSON.stringify(outcome)}`);
    }
    if (i < 0) {
      warmup = seconds;
      continue;
    }
    runs.push(seconds);
    rawRuns.push((await timed(async () => rawParse(data))).seconds);
    firstRun ??= {
      requests: Object.fromEntries(counts),
      billed: billed.billed,
      messages: billed.messages,
    };
  }
  ingestSqs.destroy();
  const run = firstRun as NonNullable<typeof firstRun>;
  const requests = Object.values(run.requests).reduce((a, b) => a + b, 0);
  const rawAround = runs.map((_, i) => ((rawRuns[i] as number) + (rawRuns[i + 1] as number)) / 2);
  return {
    file_mb: round(data.length / MB, 2),
    records: rows,
    warmup_s: round(warmup, 2),
    runs_s: runs.map((s) => round(s, 2)),
    mb_per_s: round(data.length / MB / median(runs), 2),
    raw_parse_runs_s: rawRuns.map((s) => round(s, 3)),
    raw_parse_mb_per_s: round(data.length / MB / median(rawAround), 2),
    ratio_per_round: runs.map((s, i) => round((rawAround[i] as number) / s, 2)),
    sqs_requests: run.requests,
    sqs_requests_per_1k_records: round((requests / rows) * 1000, 3),
    sqs_billed_requests_per_1k_records: round((run.billed / rows) * 1000, 3),
    messages: run.messages,
  };
}

export interface NaiveResult {
  readonly file_mb: number;
  readonly records: number;
  readonly seconds: number;
  readonly mb_per_s: number;
  readonly sqs_requests_per_1k_records: number;
}

/**
 * The seeds' way, on moto: GetObject read whole into a string, parse it whole, one SendMessage per row
 * with the row as JSON, one at a time.
 */
export async function benchNaive(data: Buffer, rows: number, deps: E2eDeps): Promise<NaiveResult> {
  const { clients, resources } = deps;
  const counts: RequestCounts = new Map();
  const key = `incoming/bench-naive-${Date.now().toString(36)}.csv`;
  await clients.s3.send(new PutObjectCommand({ Bucket: resources.bucket, Key: key, Body: data }));
  const { seconds } = await withQueue(clients, `${resources.names.prefix}-naive`, (queueUrl) =>
    timed(async () => {
      const { GetObjectCommand } = await import('@aws-sdk/client-s3');
      const obj = await clients.s3.send(new GetObjectCommand({ Bucket: resources.bucket, Key: key }));
      const text = (await obj.Body?.transformToString('utf8')) ?? '';
      const records = parseSync(text, { columns: true, bom: true, skip_empty_lines: true }) as Record<
        string,
        string
      >[];
      if (records.length !== rows) throw new Error(`naive read ${records.length} rows, expected ${rows}`);
      for (const row of records) {
        await clients.sqs.send(
          new SendMessageCommand({ QueueUrl: queueUrl, MessageBody: JSON.stringify(row) }),
        );
        counts.set('SendMessage', (counts.get('SendMessage') ?? 0) + 1);
      }
    }),
  );
  return {
    file_mb: round(data.length / MB, 2),
    records: rows,
    seconds: round(seconds, 2),
    mb_per_s: round(data.length / MB / seconds, 3),
    sqs_requests_per_1k_records: round((sum(counts) / rows) * 1000, 1),
  };
}

/** Runs the bundled ingest child on one file and returns what it measured. */
export async function runIngestChild(childJs: string, input: ChildInput): Promise<ChildOutput> {
  const { code, out, err } = await runNode(['--enable-source-maps', childJs, JSON.stringify(input)], {
    POWERTOOLS_LOG_LEVEL: 'ERROR',
    POWERTOOLS_METRICS_DISABLED: 'true',
    AWS_REGION: 'us-east-1',
  });
  const last = out.trim().split('\n').pop() ?? '';
  if (code !== 0 || !last.startsWith('{')) {
    throw new Error(`ingest child failed (exit ${code}): ${err.slice(-2000)}${out.slice(-2000)}`);
  }
  return JSON.parse(last) as ChildOutput;
}

export interface FanOutResult {
  readonly file_mb: number;
  readonly parts: number;
  /** Part processes run at once (the machine's cores). */
  readonly concurrency: number;
  /** The coordinator: claim, the boundary scan over the whole file, the part items. */
  readonly plan_seconds: number;
  /** From the first part started to the last part done. */
  readonly parts_seconds: number;
  /** The file end to end: plan + parts. */
  readonly mb_per_s: number;
  /** One part's own rate, the median. */
  readonly part_mb_per_s: number;
  readonly records: number;
}

/**
 * Fan-out end to end: a coordinator process splits the file (its scan reads every byte), then the parts
 * are ingested by separate processes, `concurrency` at a time, as Lambda would run them side by side.
 * `run` starts one bundled ingest child on the file with the extra input given.
 */
export async function benchFanOut(
  size: number,
  rows: number,
  parts: number,
  concurrency: number,
  run: (extra: Partial<ChildInput>) => Promise<ChildOutput>,
): Promise<FanOutResult> {
  const t0 = performance.now();
  const plan = await run({ fanOut: { minBytes: 1, partBytes: Math.ceil(size / parts), maxParts: parts } });
  const planSeconds = (performance.now() - t0) / 1000;
  const count = plan.parts;
  if (plan.status !== 'SPLIT' || !count) throw new Error(`fan-out coordinator ended ${plan.status}`);
  const t1 = performance.now();
  const queue = Array.from({ length: count }, (_, i) => i);
  const outs: ChildOutput[] = [];
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      for (let part = queue.shift(); part !== undefined; part = queue.shift()) {
        const out = await run({ part });
        if (out.status !== 'SUCCESS') throw new Error(`part ${part} ended ${out.status}`);
        outs.push(out);
      }
    }),
  );
  const partsSeconds = (performance.now() - t1) / 1000;
  const records = outs.reduce((n, o) => n + o.records, 0);
  if (records !== rows) throw new Error(`fan-out sent ${records} of ${rows} records`);
  const rates = outs.map((o) => size / count / MB / o.seconds).sort((a, b) => a - b);
  return {
    file_mb: round(size / MB, 1),
    parts: count,
    concurrency,
    plan_seconds: round(planSeconds, 2),
    parts_seconds: round(partsSeconds, 2),
    mb_per_s: round(size / MB / (planSeconds + partsSeconds), 2),
    part_mb_per_s: round(rates[Math.floor(rates.length / 2)] ?? 0, 2),
    records,
  };
}
