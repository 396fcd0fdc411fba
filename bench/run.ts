/**
 * `npm run bench`: throughput and scale of Pulse Ingest on this machine, against a moto server the
 * benchmark starts (and stops). Writes bench/results.json and prints a table with the targets of
 * issue 7. Not a test: it measures and reports, including what misses its target.
 *
 * Environment: BENCH_LARGE_MB (default 1024) sets the size of the large file of the peak-RSS run.
 */
import { spawnSync } from 'node:child_process';
import { mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { cpus, totalmem } from 'node:os';
import { join } from 'node:path';
import { createObservability } from '#shared/observability.ts';
import { startMoto } from '../local/emulators/moto.ts';
import { REPO_ROOT } from '../local/emulators/supervisor.ts';
import { destroyClients, makeClients } from '../local/runtime/clients.ts';
import { resourceNames, uniquePrefix } from '../local/runtime/names.ts';
import { createResources } from '../local/runtime/resources.ts';
import { type BundleResult, benchBundles, bundle } from './bundles.ts';
import { type CostInputs, costMarkdown, costModel } from './cost.ts';
import { type CsvCandidatesResult, formatCsvCandidates } from './csv-candidates/report.ts';
import type { ChildInput } from './ingest-child.ts';
import {
  csvBuffer,
  MB,
  round,
  runNode,
  startDynamoCountingProxy,
  startS3CountingProxy,
  writeCsvFile,
} from './lib.ts';
import { benchParquet, formatParquet, type ParquetCodecResult } from './parquet.ts';
import {
  benchEndToEnd,
  benchFanOut,
  benchNaive,
  benchStages,
  type FanOutResult,
  runIngestChild,
} from './s3-csv.ts';
import { benchHotSeries, benchScorer, type HotSeriesResult, type ScorerResult } from './scorer.ts';
import { startFileS3Server, startSqsSink } from './servers.ts';

const WORK = join(REPO_ROOT, '.pulse', 'bench');
const RESULTS = join(REPO_ROOT, 'bench', 'results.json');
const COST_DOC = join(REPO_ROOT, 'docs', 'cost.md');
const SMALL_BYTES = 10 * MB;
const LARGE_BYTES = Number(process.env.BENCH_LARGE_MB ?? 1024) * MB;
/** moto takes tens of milliseconds per SendMessage: a small file gives the naive rate in about half a minute. */
const NAIVE_BYTES = 64 * 1024;
/** The fan-out run: a file this large in this many parts. */
const FAN_OUT_BYTES = 64 * MB;
const FAN_OUT_PARTS = 8;
/** End-to-end rounds on the 10 MB file (each about two seconds with its bare parses). */
const E2E_ROUNDS = 7;
const SCORER_SCENARIOS = [
  { label: 'series50', signals: 20_000, series: 50 },
  { label: 'series1000', signals: 10_000, series: 1_000 },
] as const;
/** Scorer invocations at once on one series (issue 21: 5 batches of 10 × 2,000 signals). */
const HOT_SERIES_BATCHES = 5;
/** Write request units per second of a new on-demand table, and the default table quota (AWS). */
const FRESH_TABLE_WRU_PER_S = 4_000;
const TABLE_QUOTA_WRU_PER_S = 40_000;

const t0 = performance.now();
const log = (msg: string) =>
  process.stderr.write(`bench [${((performance.now() - t0) / 1000).toFixed(0).padStart(4)} s] ${msg}\n`);

/**
 * `bench/csv-candidates/candidates.ts --json` in a fresh Node process (its progress lines pass through),
 * after installing the candidates into that folder's own package (they are no dependency of the project).
 */
async function candidatesInChild(): Promise<CsvCandidatesResult> {
  const install = spawnSync(
    'npm',
    [
      'install',
      '--prefix',
      join(REPO_ROOT, 'bench', 'csv-candidates'),
      '--no-audit',
      '--no-fund',
      '--silent',
    ],
    { stdio: 'inherit' },
  );
  if (install.status !== 0) throw new Error(`installing the CSV candidates failed (${install.status})`);
  const { code, out, err } = await runNode(
    ['--import', 'tsx', join(REPO_ROOT, 'bench', 'csv-candidates', 'candidates.ts'), '--json'],
    { ...process.env } as Record<string, string>,
  );
  process.stderr.write(err);
  if (code !== 0) throw new Error(`CSV candidates process exited with ${code}`);
  return JSON.parse(out) as CsvCandidatesResult;
}

async function main(): Promise<void> {
  const started = performance.now();
  rmSync(WORK, { recursive: true, force: true });
  mkdirSync(WORK, { recursive: true });
  // Quiet handlers: their logs would drown the table; metrics are not wanted offline.
  Object.assign(process.env, { POWERTOOLS_LOG_LEVEL: 'ERROR', POWERTOOLS_METRICS_DISABLED: 'true' });
  const { logger, metrics } = createObservability('bench');

  log('bundling the four functions and timing their import in fresh processes');
  const bundles = await benchBundles(join(WORK, 'bundles'));
  const child = await bundle(join(REPO_ROOT, 'bench', 'ingest-child.ts'), join(WORK, 'ingest-child'));

  log('generating CSV data');
  const small = csvBuffer(SMALL_BYTES);
  const naiveData = csvBuffer(NAIVE_BYTES);
  const smallPath = join(WORK, 'small.csv');
  writeFileSync(smallPath, small.data);
  const largePath = join(WORK, 'large.csv');
  const large = await writeCsvFile(largePath, LARGE_BYTES);

  const moto = await startMoto();
  let anomaliesTable = '';
  const proxy = await startDynamoCountingProxy(moto.endpoint, (t) => (t === anomaliesTable ? 1 : 0));
  const s3Proxy = await startS3CountingProxy(moto.endpoint);
  const s3Files = await startFileS3Server();
  const sink = await startSqsSink();
  const clients = makeClients(moto.endpoint);
  try {
    const names = resourceNames(uniquePrefix('bench'));
    const resources = await createResources(clients, names);
    anomaliesTable = names.anomaliesTable;
    const deps = { endpoint: moto.endpoint, clients, resources, logger, metrics };

    log('in-memory parser stages on the 10 MB file');
    const stages = await benchStages(small.data, small.rows);
    // At once after the stages: a process left idle for a while has V8 shrink its young generation, and the
    // next seconds of parsing pay for it in collections (about 30% slower), which a busy function does not.
    log(
      `end to end on moto: 10 MB CSV, a warm-up ingest, then ${E2E_ROUNDS} ingests, each between two runs of csv-parse alone`,
    );
    const e2e = await benchEndToEnd(small.data, small.rows, E2E_ROUNDS, deps);
    log(`naive on moto: ${round(naiveData.data.length / 1024, 0)} KiB CSV, one SendMessage per row`);
    const naive = await benchNaive(naiveData.data, naiveData.rows, deps);
    // In a process of its own, because running csv-parse with other options (and six other parsers) here
    // would leave the JIT's view of csv-parse's code polluted for the runs after it (about 20% slower); moto
    // is idle by then.
    log(
      'CSV parser candidates (own process): cases, then best of 3 on the 10 MB file and its quoted variant',
    );
    const csvCandidates = await candidatesInChild();
    log(
      'Parquet: a Snappy and a ZSTD file of the same 1,000,000 rows, read by the parser (decoder process included)',
    );
    const parquet = await benchParquet();

    /** Serves a local file as an object and runs the bundled ingest child on it (`extra`: fan-out, part). */
    const serveAndIngest = (path: string, size: number, key: string) => {
      const etag = `${key.replace(/\W/g, '')}${size}`;
      s3Files.add('bench-files', key, { path, size, etag });
      return (extra: Partial<ChildInput> = {}) =>
        runIngestChild(child.js, {
          s3Endpoint: s3Files.endpoint,
          sqsEndpoint: sink.endpoint,
          queueUrl: sink.queueUrl,
          ddbEndpoint: moto.endpoint,
          ledgerTable: resources.tables.ledger,
          quarantineBucket: resources.bucket,
          bucket: 'bench-files',
          key,
          etag,
          size,
          ...extra,
        });
    };
    const rss = (path: string, size: number, key: string) => serveAndIngest(path, size, key)();
    log('peak RSS: 10 MB file in a fresh process');
    const rssSmall = await rss(smallPath, small.data.length, `incoming/rss-small-${Date.now()}.csv`);
    // The large run takes minutes of one core; it overlaps the scorer section to keep the benchmark
    // within its time budget. Peak RSS does not depend on how fast the process runs; what the overlap
    // lowers is throughput (the scorer's signals/s and this run's MB/s), so those err low, not high.
    log(`peak RSS: ${round(large.size / MB, 0)} MB file in a fresh process (alongside the scorer runs)`);
    const largeRun = rss(largePath, large.size, `incoming/rss-large-${Date.now()}.csv`);
    largeRun.catch(() => undefined);

    log('scorer: the real handler on packed messages, DynamoDB and S3 through counting proxies');
    const scorer = await runScorer(names, resources, clients, proxy, s3Proxy, moto.endpoint);
    log('waiting for the large peak-RSS run');
    const rssLarge = await largeRun;
    for (const r of [rssSmall, rssLarge]) if (r.status !== 'SUCCESS') throw new Error(`RSS run ${r.status}`);
    if (rssLarge.records !== large.rows)
      throw new Error(`large run sent ${rssLarge.records} of ${large.rows}`);
    const main = scorer.runs.series50;

    // Fan-out on an otherwise idle machine: a coordinator process plans the parts, then part processes
    // run as many at a time as the cores allow (on Lambda, every part has an invocation of its own).
    const fanPath = join(WORK, 'fan-out.csv');
    const fan = await writeCsvFile(fanPath, FAN_OUT_BYTES);
    // Each part process parses on a thread of its own and works on the records on its main thread, two CPUs
    // (as a 3,538 MB invocation has): as many at a time as the machine has pairs of CPUs.
    const partsAtOnce = Math.max(1, Math.floor(cpus().length / 2));
    log(
      `fan-out: ${round(fan.size / MB, 0)} MB CSV in ${FAN_OUT_PARTS} parts, ${partsAtOnce} part processes at a time (two CPUs each)`,
    );
    const fanOut = await benchFanOut(
      fan.size,
      fan.rows,
      FAN_OUT_PARTS,
      partsAtOnce,
      serveAndIngest(fanPath, fan.size, `incoming/fan-out-${Date.now()}.csv`),
    );
    rmSync(fanPath, { force: true });

    const results = {
      generated_at: new Date().toISOString(),
      machine: {
        node: process.version,
        cpus: cpus().length,
        cpu_model: cpus()[0]?.model ?? 'unknown',
        memory_gb: round(totalmem() / 1024 ** 3, 1),
        emulator: 'moto 5.2.5 (scripts/moto_server.py)',
      },
      s3_csv: {
        mb_per_s: e2e.mb_per_s,
        raw_parse_mb_per_s: e2e.raw_parse_mb_per_s,
        naive_mb_per_s: naive.mb_per_s,
        sqs_requests_per_1k_records: e2e.sqs_requests_per_1k_records,
        peak_rss_mb_small: round(rssSmall.maxRssMb, 1),
        peak_rss_mb_large: round(rssLarge.maxRssMb, 1),
        large_file_mb: round(large.size / MB, 1),
        end_to_end: e2e,
        stages,
        naive,
        rss_small: {
          ...rssSmall,
          file_mb: round(small.data.length / MB, 1),
          mb_per_s: round(small.data.length / MB / rssSmall.seconds, 2),
        },
        rss_large: {
          ...rssLarge,
          file_mb: round(large.size / MB, 1),
          mb_per_s: round(large.size / MB / rssLarge.seconds, 2),
        },
        fan_out: fanOut,
      },
      s3_parquet: parquet,
      scorer,
      bundles,
      csv_candidates: csvCandidates,
    };
    const costInputs: CostInputs = {
      recordsPerMessage: e2e.records / e2e.messages,
      sendCallsPer1k: e2e.sqs_requests_per_1k_records,
      sendBilledPer1k: e2e.sqs_billed_requests_per_1k_records,
      ingestRecordsPerS: rssSmall.records / rssSmall.seconds,
      ...scorerCostInputs(main),
    };
    const cost = { inputs: costInputs, per_million_records: costModel(costInputs) };
    const targets = evaluate({ ...results, cost });
    writeFileSync(RESULTS, `${JSON.stringify({ ...results, targets, cost }, null, 2)}\n`);
    mkdirSync(join(REPO_ROOT, 'docs'), { recursive: true });
    writeFileSync(COST_DOC, costMarkdown(costInputs, results.generated_at));
    printTable(results, targets);
    process.stdout.write(formatCsvCandidates(csvCandidates));
    log(`wrote ${RESULTS} in ${round((performance.now() - started) / 1000, 0)} s`);
  } finally {
    destroyClients(clients);
    await Promise.allSettled([proxy.close(), s3Proxy.close(), s3Files.close(), sink.close()]);
    await moto.stop();
    rmSync(largePath, { force: true });
  }
}

type Proxy<C> = { endpoint: string; counts: C; reset(): void };

/**
 * The scorer section: its handler, imported after its environment points its DynamoDB and S3 calls at
 * the counting proxies, on the scenarios of issue 21.
 */
async function runScorer(
  names: ReturnType<typeof resourceNames>,
  resources: Awaited<ReturnType<typeof createResources>>,
  clients: ReturnType<typeof makeClients>,
  proxy: Proxy<import('./lib.ts').DynamoCounts>,
  s3Proxy: Proxy<import('./lib.ts').S3Counts>,
  motoEndpoint: string,
) {
  Object.assign(process.env, {
    AWS_ENDPOINT_URL: motoEndpoint,
    AWS_ENDPOINT_URL_DYNAMODB: proxy.endpoint,
    AWS_ENDPOINT_URL_S3: s3Proxy.endpoint,
    AWS_REGION: 'us-east-1',
    AWS_ACCESS_KEY_ID: 'test',
    AWS_SECRET_ACCESS_KEY: 'test',
    S3_FORCE_PATH_STYLE: 'true',
    SCORES_TABLE: names.scoresTable,
    SCORES_BUCKET: names.scoresBucket,
    ANOMALIES_TABLE: names.anomaliesTable,
    QUARANTINE_BUCKET: names.bucket,
  });
  const handler = (await import('../functions/scorer/handler.ts')).handler as unknown as Parameters<
    typeof benchScorer
  >[1]['handler'];
  const deps = {
    clients,
    resources,
    handler,
    counts: () => proxy.counts,
    s3Counts: () => s3Proxy.counts,
    resetCounts: () => {
      proxy.reset();
      s3Proxy.reset();
    },
  };
  const runs: Record<string, ScorerResult> = {};
  for (const scenario of SCORER_SCENARIOS) {
    log(`scorer: ${scenario.signals} signals over ${scenario.series} series`);
    runs[scenario.label] = await benchScorer(scenario, deps);
  }
  log(`scorer: one series, ${HOT_SERIES_BATCHES} batches of 10 × 2,000 signals at once`);
  const hot = await benchHotSeries(HOT_SERIES_BATCHES, deps);
  const series50 = runs.series50 as ScorerResult;
  const series1000 = runs.series1000 as ScorerResult;
  const ceiling = (run: ScorerResult) => ({
    fresh_table: Math.floor(FRESH_TABLE_WRU_PER_S / run.wru_per_signal),
    table_quota: Math.floor(TABLE_QUOTA_WRU_PER_S / run.wru_per_signal),
  });
  return {
    signals_per_s: series50.signals_per_s,
    ddb_writes_per_signal: series50.ddb_writes_per_signal,
    /** Signals per second the write units allow: a fresh on-demand table (4,000 WRU/s), the default quota (40,000). */
    ceiling_signals_per_s: ceiling(series50).fresh_table,
    ceilings: { series50: ceiling(series50), series1000: ceiling(series1000) },
    runs: { series50, series1000, hot_series: hot } as {
      series50: ScorerResult;
      series1000: ScorerResult;
      hot_series: HotSeriesResult;
    },
  };
}

/** What the cost model takes from a scorer run. */
function scorerCostInputs(run: ScorerResult) {
  return {
    wruPerSignal: run.wru_per_signal,
    rruPerSignal: run.rru_per_signal,
    s3PutPerSignal: run.s3_put_per_signal,
    s3GetPerSignal: run.s3_get_per_signal,
    s3BytesPerSignal: run.s3_bytes_per_signal,
    scorerCpuMsPer1k: run.cpu_ms_per_1k_signals,
    ddbCallsPerSignal: Object.fromEntries(
      Object.entries(run.ddb_calls).map(([op, n]) => [op, n / run.signals]),
    ),
    s3RequestsPerSignal: Object.fromEntries(
      Object.entries(run.s3_requests).map(([op, n]) => [op, n / run.signals]),
    ),
  };
}

/** `BENCH_ONLY=scorer npm run bench`: the scorer section alone (printed, results.json untouched). */
async function scorerOnly(): Promise<void> {
  Object.assign(process.env, { POWERTOOLS_LOG_LEVEL: 'ERROR', POWERTOOLS_METRICS_DISABLED: 'true' });
  const moto = await startMoto();
  let anomaliesTable = '';
  const proxy = await startDynamoCountingProxy(moto.endpoint, (t) => (t === anomaliesTable ? 1 : 0));
  const s3Proxy = await startS3CountingProxy(moto.endpoint);
  const clients = makeClients(moto.endpoint);
  try {
    const names = resourceNames(uniquePrefix('bench'));
    const resources = await createResources(clients, names);
    anomaliesTable = names.anomaliesTable;
    const scorer = await runScorer(names, resources, clients, proxy, s3Proxy, moto.endpoint);
    const cost = costModel({
      recordsPerMessage: 1981,
      sendCallsPer1k: 0.051,
      sendBilledPer1k: 0.352,
      ingestRecordsPerS: 131_591,
      ...scorerCostInputs(scorer.runs.series50),
    });
    process.stdout.write(`${JSON.stringify({ scorer, cost_packed_usd: cost.packed.usd }, null, 2)}\n`);
  } finally {
    destroyClients(clients);
    await Promise.allSettled([proxy.close(), s3Proxy.close()]);
    await moto.stop();
  }
}

type Results = {
  machine: { cpus: number };
  s3_csv: {
    mb_per_s: number;
    raw_parse_mb_per_s: number;
    naive_mb_per_s: number;
    sqs_requests_per_1k_records: number;
    peak_rss_mb_small: number;
    peak_rss_mb_large: number;
    large_file_mb: number;
    fan_out: FanOutResult;
  };
  scorer: {
    ceiling_signals_per_s: number;
    ceilings: Record<string, { fresh_table: number; table_quota: number }>;
    runs: { series50: ScorerResult; series1000: ScorerResult; hot_series: HotSeriesResult };
  };
  cost?: { per_million_records: { packed: { usd: { total: number } } } };
  bundles: Record<string, BundleResult>;
  s3_parquet: ParquetCodecResult[];
};

interface Target {
  readonly what: string;
  readonly measured: string;
  readonly target: string;
  /** null: not assessed on this machine (`why` says why). */
  readonly pass: boolean | null;
  readonly why?: string;
}

/** The targets of issue 7, against what was measured. */
function evaluate(r: Results): Target[] {
  const c = r.s3_csv;
  const t: Target[] = [
    {
      what: `CSV end to end vs bare parser (one invocation, 10 MB; medians of ${E2E_ROUNDS} rounds after a warm-up, each between two bare parses)`,
      measured: `${round(c.mb_per_s / c.raw_parse_mb_per_s, 2)}x (${c.mb_per_s} / ${c.raw_parse_mb_per_s} MB/s)`,
      target: '>= 0.6x',
      pass: c.mb_per_s >= 0.6 * c.raw_parse_mb_per_s,
    },
    // Fan-out pays off only with parts side by side: with two or more at a time, the file must go faster
    // than one parser could read it. With one at a time (fewer than 4 CPUs: each part takes two), it can
    // only add the scan and the processes' start, so there is nothing to hold it to.
    {
      what: `CSV end to end, fan-out (${c.fan_out.file_mb} MB in ${c.fan_out.parts} parts, ${c.fan_out.concurrency} at a time) vs bare parser`,
      measured: `${round(c.fan_out.mb_per_s / c.raw_parse_mb_per_s, 2)}x (${c.fan_out.mb_per_s} / ${c.raw_parse_mb_per_s} MB/s)`,
      target: '>= 1.0x with 2+ parts at a time',
      ...(c.fan_out.concurrency >= 2
        ? { pass: c.fan_out.mb_per_s >= c.raw_parse_mb_per_s }
        : {
            pass: null,
            why: `${r.machine.cpus} CPUs: parts run one at a time (two CPUs each), so fan-out cannot be faster than one read here`,
          }),
    },
    {
      what: 'CSV end to end vs naive',
      measured: `${round(c.mb_per_s / c.naive_mb_per_s, 1)}x (${c.mb_per_s} / ${c.naive_mb_per_s} MB/s)`,
      target: '>= 10x',
      pass: c.mb_per_s >= 10 * c.naive_mb_per_s,
    },
    {
      what: 'SQS requests per 1,000 records',
      measured: String(c.sqs_requests_per_1k_records),
      target: '<= 2',
      pass: c.sqs_requests_per_1k_records <= 2,
    },
    {
      what: `Peak RSS ${c.large_file_mb} MB file vs 10 MB file`,
      measured: `+${round(c.peak_rss_mb_large - c.peak_rss_mb_small, 1)} MB (${c.peak_rss_mb_large} vs ${c.peak_rss_mb_small})`,
      target: '<= +64 MB, file >= 1024 MB',
      pass: c.peak_rss_mb_large - c.peak_rss_mb_small <= 64 && c.large_file_mb >= 1024,
    },
  ];
  const sc = r.scorer;
  const hot = sc.runs.hot_series;
  t.push(
    {
      what: 'scorer WRU per signal, 50 series (as AWS bills the items written)',
      measured: String(sc.runs.series50.wru_per_signal),
      target: '<= 0.1',
      pass: sc.runs.series50.wru_per_signal <= 0.1,
    },
    {
      what: 'scorer WRU per signal, 1,000 series',
      measured: String(sc.runs.series1000.wru_per_signal),
      target: '<= 0.3',
      pass: sc.runs.series1000.wru_per_signal <= 0.3,
    },
    {
      what: `scorer ceiling at a fresh on-demand table (${FRESH_TABLE_WRU_PER_S.toLocaleString('en-US')} WRU/s), 50 series`,
      measured: `${sc.ceiling_signals_per_s.toLocaleString('en-US')} signals/s (quota: ${sc.ceilings.series50?.table_quota.toLocaleString('en-US')})`,
      target: '>= 50,000',
      pass: sc.ceiling_signals_per_s >= 50_000,
    },
    {
      what: `hot series: ${hot.concurrent_batches} batches of 10 × 2,000 signals of one series at once`,
      measured: `scored ${hot.scored} of ${hot.signals}, a message failed at most ${hot.max_failures_per_message}×, dlq ${hot.dlq}`,
      target: 'scored = signals, <= 1 failure a message, dlq 0',
      pass: hot.scored === hot.signals && hot.max_failures_per_message <= 1 && hot.dlq === 0,
    },
  );
  if (r.cost) {
    const total = r.cost.per_million_records.packed.usd.total;
    t.push({
      what: 'cost per million records, packed, every line',
      measured: `$${total.toFixed(4)}`,
      target: '<= $0.15',
      pass: total <= 0.15,
    });
  }
  for (const [name, b] of Object.entries(r.bundles)) {
    t.push({ what: `${name} bundle size`, measured: `${b.kb} KB`, target: '<= 2048 KB', pass: b.kb <= 2048 });
    t.push({
      what: `${name} init (import)`,
      measured: `${b.init_ms} ms`,
      target: '<= 300 ms',
      pass: b.init_ms <= 300,
    });
  }
  return t;
}

function table(rows: string[][]): string {
  const widths = rows[0]?.map((_, i) => Math.max(...rows.map((r) => (r[i] ?? '').length))) ?? [];
  const line = (r: string[]) => r.map((cell, i) => cell.padEnd(widths[i] ?? 0)).join('  ');
  const [head, ...body] = rows;
  return [line(head ?? []), widths.map((w) => '-'.repeat(w)).join('  '), ...body.map(line)].join('\n');
}

function printTable(
  r: Results & { s3_csv: Record<string, unknown>; scorer: Record<string, unknown> },
  targets: Target[],
) {
  const c = r.s3_csv as Results['s3_csv'] & {
    end_to_end: {
      records: number;
      messages: number;
      warmup_s: number;
      sqs_billed_requests_per_1k_records: number;
      ratio_per_round: number[];
      runs_s: number[];
    };
    stages: Record<string, number>;
    naive: { file_mb: number; records: number };
    rss_small: { vmHwmMb?: number; mb_per_s: number };
    rss_large: { vmHwmMb?: number; mb_per_s: number; records: number };
  };
  const out: string[] = [];
  out.push('\nS3 CSV (s3-trigger)');
  out.push(
    table([
      ['measure', 'value'],
      [
        `end to end on moto, 10 MB, median of ${c.end_to_end.runs_s.length} rounds after a warm-up (MB/s)`,
        String(c.mb_per_s),
      ],
      ["warm-up round: the process's first ingest (s)", String(c.end_to_end.warmup_s)],
      [
        'csv-parse alone, same bytes, before and after each round (their mean), median (MB/s)',
        String(c.raw_parse_mb_per_s),
      ],
      ['end to end / csv-parse, each round', c.end_to_end.ratio_per_round.join(' ')],
      ['csv-parse alone, best of 3 in a row (MB/s)', String(c.stages.raw_parse_mb_per_s)],
      ['parsers/csv.ts (MB/s)', String(c.stages.parser_module_mb_per_s)],
      ['+ validate/normalise (MB/s)', String(c.stages.parse_validate_mb_per_s)],
      ['+ signal JSON (MB/s)', String(c.stages.parse_validate_json_mb_per_s)],
      ['naive: whole read + SendMessage per row (MB/s)', `${c.naive_mb_per_s} (${c.naive.file_mb} MB)`],
      ['SQS API requests per 1,000 records', String(c.sqs_requests_per_1k_records)],
      [
        'SQS billed requests (64 KiB units) per 1,000 records',
        String(c.end_to_end.sqs_billed_requests_per_1k_records),
      ],
      ['records / messages (10 MB)', `${c.end_to_end.records} / ${c.end_to_end.messages}`],
      [
        'peak RSS, 10 MB file (MB, maxRSS / VmHWM)',
        `${c.peak_rss_mb_small} / ${round(c.rss_small.vmHwmMb ?? Number.NaN, 1)}`,
      ],
      [
        `peak RSS, ${c.large_file_mb} MB file (MB, maxRSS / VmHWM)`,
        `${c.peak_rss_mb_large} / ${round(c.rss_large.vmHwmMb ?? Number.NaN, 1)}`,
      ],
      ['10 MB file through local S3/SQS servers, alone (MB/s)', String(c.rss_small.mb_per_s)],
      [
        `${c.large_file_mb} MB file through local S3/SQS servers, beside the scorer (MB/s)`,
        `${c.rss_large.mb_per_s} (${c.rss_large.records} records)`,
      ],
      [
        `fan-out: ${c.fan_out.file_mb} MB in ${c.fan_out.parts} parts, ${c.fan_out.concurrency} at a time (MB/s)`,
        `${c.fan_out.mb_per_s} (plan ${c.fan_out.plan_seconds} s, parts ${c.fan_out.parts_seconds} s, one part ${c.fan_out.part_mb_per_s} MB/s)`,
      ],
    ]),
  );
  out.push('\nS3 Parquet (parsers/parquet.ts from memory, decoder process included)');
  out.push(formatParquet(r.s3_parquet));
  out.push('\nScorer (real handler; DynamoDB and S3 on moto through counting proxies)');
  out.push(
    table([
      [
        'run',
        'series',
        'signals',
        'batches',
        'signals/s (moto)',
        'slowest batch s',
        'WRU/signal',
        'RRU/signal',
        'S3 PUT/signal',
        'DynamoDB calls',
      ],
      ...Object.entries(r.scorer.runs).map(([name, s]) => [
        name,
        String(s.series),
        String(s.signals),
        String(s.batches),
        String(s.signals_per_s),
        String(s.slowest_batch_s),
        String(s.wru_per_signal),
        String(s.rru_per_signal),
        String(s.s3_put_per_signal),
        Object.entries(s.ddb_calls)
          .map(([k, v]) => `${k} ${v}`)
          .join(', '),
      ]),
    ]),
  );
  out.push(
    '\nBundles (esbuild with the PulseFunction options; import in a fresh Node process with --enable-source-maps as deployed, median of 5)',
  );
  out.push(
    table([
      ['function', 'KB', 'map KB', 'init ms', 'init ms, no source maps', 'process ms'],
      ...Object.entries(r.bundles).map(([name, b]) => [
        name,
        String(b.kb),
        String(b.map_kb),
        String(b.init_ms),
        String(b.init_ms_without_source_maps),
        String(b.process_ms),
      ]),
    ]),
  );
  out.push('\nTargets (issue 7)');
  out.push(
    table([
      ['target', 'measured', 'wanted', 'result'],
      ...targets.map((t) => [
        t.what,
        t.measured,
        t.target,
        t.pass === null ? 'n/a' : t.pass ? 'PASS' : 'FAIL',
      ]),
    ]),
  );
  for (const t of targets) if (t.pass === null) out.push(`n/a: ${t.what}: ${t.why}`);
  process.stdout.write(`${out.join('\n')}\n`);
}

if (process.env.BENCH_ONLY === 'scorer') await scorerOnly();
else await main();
