/**
 * AWS cost per million records, packed design vs per-row design, from what the benchmark measured
 * (request counts, items written, records per message, CPU-bound ingest rate) and list prices. Writes
 * docs/cost.md; the numbers in it come from bench/results.json of the same run.
 */
import { availableParallelism } from 'node:os';
import { priceUnits } from '#shared/cost-meter.ts';
import { PRICES } from '#shared/prices.ts';
import { settings } from '#shared/settings.ts';

// The price table is shared with the live cost meter (shared/cost-meter.ts): one table, one set of numbers.
export { PRICES };

/**
 * Assumptions the benchmark cannot measure offline. Each is stated in the document.
 * - Lambda gives a function CPU in proportion to its memory: one vCPU at 1,769 MB.
 * - Latencies of single calls inside one region, typical published figures.
 */
export const ASSUMPTIONS = {
  s3TriggerMemoryMb: settings.functions.s3Trigger.memoryMb,
  scorerMemoryMb: settings.functions.scorer.memoryMb,
  vcpuAtMb: settings.lambda.mbPerVcpu,
  /**
   * CPUs the measured ingest used: its CSV parser runs on a thread of its own where there are two
   * (parsers/csv-thread.ts), so it uses up to two.
   */
  benchCpus: Math.min(2, availableParallelism()),
  sqsSendMessageMs: 5,
  ddbGetItemMs: 4,
  ddbPutItemMs: 5,
  ddbBatchGetMs: 10,
  ddbBatchWriteMs: 10,
  /** A TransactWriteItems call: a fixed part and a part per item. */
  ddbTransactBaseMs: 10,
  ddbTransactPerItemMs: 0.3,
  /** S3 requests of objects of a few hundred KB in the same region. */
  s3PutMs: 40,
  s3GetMs: 20,
  s3DeleteMs: 15,
  /** The scorer's calls are one after another (its transactions run in order). */
  scorerParallelism: 1,
  sqsBatch: 10,
  /** The seeds' per-row design: 2 WRU per transactional item up to 1 KB, a score item per signal. */
  wruPerTransactionalItem: 2,
  /** A strongly consistent read of an item up to 4 KB, found or not, costs 1 RRU. */
  rruPerConsistentRead: 1,
  /**
   * DynamoDB storage of the applied state: a block item (at most 1 KB, plus the 100 bytes DynamoDB counts
   * per item) per 4,096 positions.
   */
  ddbBytesPerSignal: (1024 + 100) / settings.scoring.blockPositions,
} as const;

export interface CostInputs {
  /** From s3_csv.end_to_end (moto). */
  readonly recordsPerMessage: number;
  readonly sendCallsPer1k: number;
  readonly sendBilledPer1k: number;
  /** Records per second of one ingest process with a thin SQS endpoint (s3_csv.rss_small), CPU-bound. */
  readonly ingestRecordsPerS: number;
  /** From scorer.runs.series50: capacity units as AWS bills them, from the items' sizes. */
  readonly wruPerSignal: number;
  readonly rruPerSignal: number;
  readonly ddbCallsPerSignal: Record<string, number>;
  /** S3 requests on the scores bucket (`PUT scores`, `DELETE scores-pending`, …) per signal. */
  readonly s3RequestsPerSignal: Record<string, number>;
  readonly s3PutPerSignal: number;
  readonly s3GetPerSignal: number;
  /** Bytes of final score objects per signal (what S3 keeps). */
  readonly s3BytesPerSignal: number;
  /** The scorer's own CPU per 1,000 signals (parse, score, build, gzip), measured. */
  readonly scorerCpuMsPer1k?: number;
}

export interface DesignCost {
  readonly sqsRequests: number;
  readonly lambdaRequests: number;
  readonly lambdaGbSeconds: number;
  readonly ddbWru: number;
  readonly ddbRru: number;
  readonly s3Puts: number;
  readonly s3Gets: number;
  /** GB kept a month for the million scores (S3) and their dedupe state (DynamoDB). */
  readonly s3Gb: number;
  readonly ddbGb: number;
  /** TB an Athena query reading every score of the million scans. */
  readonly athenaTb: number;
  readonly usd: {
    sqs: number;
    lambdaRequests: number;
    lambdaCompute: number;
    ddbWrites: number;
    ddbReads: number;
    s3Requests: number;
    s3Storage: number;
    ddbStorage: number;
    glueAthena: number;
    total: number;
  };
}

const M = 1_000_000;

function price(d: Omit<DesignCost, 'usd'>): DesignCost {
  // The request and compute lines are the live cost meter's own arithmetic (shared/cost-meter.ts).
  const { total: _meterTotal, ...metered } = priceUnits(d);
  const usd = {
    ...metered,
    s3Storage: d.s3Gb * PRICES.s3PerGbMonth,
    ddbStorage: d.ddbGb * PRICES.ddbPerGbMonth,
    glueAthena: d.athenaTb * PRICES.athenaPerTbScanned,
    total: 0,
  };
  usd.total =
    usd.sqs +
    usd.lambdaRequests +
    usd.lambdaCompute +
    usd.ddbWrites +
    usd.ddbReads +
    usd.s3Requests +
    usd.s3Storage +
    usd.ddbStorage +
    usd.glueAthena;
  return { ...d, usd };
}

/**
 * Scorer seconds for `n` signals: its calls per signal at the assumed in-region latencies, one after
 * another, plus its own CPU.
 */
function scorerSeconds(
  n: number,
  calls: Record<string, number>,
  s3: Record<string, number>,
  itemsPerCall: number,
  cpuMsPer1k: number,
): number {
  const a = ASSUMPTIONS;
  const s3Of = (method: string) =>
    Object.entries(s3)
      .filter(([k]) => k.startsWith(`${method} `))
      .reduce((sum, [, v]) => sum + v, 0);
  const transactions = (calls.TransactWriteItems ?? 0) * n;
  const ms =
    (calls.BatchGetItem ?? 0) * n * a.ddbBatchGetMs +
    (calls.GetItem ?? 0) * n * a.ddbGetItemMs +
    (calls.PutItem ?? 0) * n * a.ddbPutItemMs +
    (calls.BatchWriteItem ?? 0) * n * a.ddbBatchWriteMs +
    transactions * (a.ddbTransactBaseMs + itemsPerCall * a.ddbTransactPerItemMs) +
    s3Of('PUT') * n * a.s3PutMs +
    s3Of('GET') * n * a.s3GetMs +
    s3Of('DELETE') * n * a.s3DeleteMs +
    // A function with less than one vCPU's memory runs CPU work slower in proportion.
    ((cpuMsPer1k * n) / 1000) * Math.max(1, a.vcpuAtMb / a.scorerMemoryMb);
  return ms / 1000 / a.scorerParallelism;
}

export function costModel(i: CostInputs): { packed: DesignCost; perRow: DesignCost } {
  const a = ASSUMPTIONS;
  const cpuShare = Math.min(1, a.s3TriggerMemoryMb / a.vcpuAtMb / a.benchCpus);
  const messages = M / i.recordsPerMessage;
  // Receiving bills each 64 KiB of payload returned, as sending does; deleting is one request per 10.
  const packedSqs = i.sendBilledPer1k * 1000 * 2 + messages / a.sqsBatch;
  const ingestSeconds = M / i.ingestRecordsPerS / cpuShare;
  const cpu = i.scorerCpuMsPer1k ?? 0;
  const s3Bytes = i.s3BytesPerSignal * M;
  const packed = price({
    sqsRequests: packedSqs,
    lambdaRequests: messages / a.sqsBatch,
    lambdaGbSeconds:
      (ingestSeconds * a.s3TriggerMemoryMb) / 1024 +
      (scorerSeconds(M, i.ddbCallsPerSignal, i.s3RequestsPerSignal, 30, cpu) * a.scorerMemoryMb) / 1024,
    ddbWru: i.wruPerSignal * M,
    ddbRru: i.rruPerSignal * M,
    s3Puts: i.s3PutPerSignal * M,
    s3Gets: i.s3GetPerSignal * M,
    s3Gb: s3Bytes / 1024 ** 3,
    ddbGb: (a.ddbBytesPerSignal * M) / 1024 ** 3,
    athenaTb: Math.max(s3Bytes, 10 * 1024 ** 2) / 1024 ** 4,
  });
  // Per row: one SendMessage per record (one 64 KiB unit each), received and deleted ten at a time.
  // The producer waits on each SendMessage; the scorer sees batches of ten one-signal messages, so a
  // series write per signal: two items per transaction (a score item and the series), and per signal
  // one id lookup and one series read. Its score items are its store (no S3).
  const perRowCalls = { BatchGetItem: 1 / a.sqsBatch, GetItem: 1, TransactWriteItems: 1 };
  const perRow = price({
    sqsRequests: M + (M / a.sqsBatch) * 2,
    lambdaRequests: M / a.sqsBatch,
    lambdaGbSeconds:
      ((ingestSeconds + (M * a.sqsSendMessageMs) / 1000) * a.s3TriggerMemoryMb) / 1024 +
      (scorerSeconds(M, perRowCalls, {}, 2, cpu) * a.scorerMemoryMb) / 1024,
    ddbWru: 2 * M * a.wruPerTransactionalItem,
    ddbRru: 2 * M * a.rruPerConsistentRead,
    s3Puts: 0,
    s3Gets: 0,
    s3Gb: 0,
    ddbGb: (M * (300 + 100)) / 1024 ** 3,
    athenaTb: 0,
  });
  return { packed, perRow };
}

const usd = (n: number) =>
  n >= 1 ? `$${n.toFixed(2)}` : n >= 0.001 ? `$${n.toFixed(4)}` : `$${n.toFixed(5)}`;
const num = (n: number) => Math.round(n).toLocaleString('en-US');

/** The document, from the inputs and the model's result. */
export function costMarkdown(i: CostInputs, generatedAt: string): string {
  const { packed, perRow } = costModel(i);
  const a = ASSUMPTIONS;
  const row = (label: string, p: string, r: string) => `| ${label} | ${p} | ${r} |`;
  const s3 = Object.entries(i.s3RequestsPerSignal)
    .map(([k, v]) => `${k} ${(v * 1000).toFixed(3)}`)
    .join(', ');
  return `# Cost per million records

Generated by \`npm run bench\` (bench/cost.ts) on ${generatedAt}, from the counts in
\`bench/results.json\` of the same run. Prices: ${PRICES.asOf}.

| price | value |
| --- | --- |
| Lambda (arm64) compute | $${PRICES.lambdaGbSecondArm} per GB-s |
| Lambda requests | $${PRICES.lambdaPerMillionRequests} per million |
| SQS standard requests (each 64 KiB of payload billed as one request) | $${PRICES.sqsPerMillionRequests} per million |
| DynamoDB on-demand writes | $${PRICES.ddbPerMillionWru} per million WRU |
| DynamoDB on-demand reads | $${PRICES.ddbPerMillionRru} per million RRU |
| DynamoDB storage (Standard) | $${PRICES.ddbPerGbMonth} per GB-month |
| S3 Standard PUT / GET (DELETE is free) | $${PRICES.s3PerThousandPut} / $${PRICES.s3PerThousandGet} per 1,000 |
| S3 Standard storage | $${PRICES.s3PerGbMonth} per GB-month |
| Athena | $${PRICES.athenaPerTbScanned} per TB scanned (10 MB minimum a query) |
| Glue Data Catalog | a database and a table: within the free million objects and requests |

## What was measured (bench/results.json)

| input | value | where |
| --- | --- | --- |
| records per packed message | ${i.recordsPerMessage.toFixed(0)} | \`s3_csv.end_to_end.records / messages\` |
| SendMessageBatch calls per 1,000 records | ${i.sendCallsPer1k} | \`s3_csv.sqs_requests_per_1k_records\` |
| billed SQS send requests (64 KiB units) per 1,000 records | ${i.sendBilledPer1k} | \`s3_csv.end_to_end.sqs_billed_requests_per_1k_records\` |
| ingest records/s, one process, thin SQS endpoint | ${num(i.ingestRecordsPerS)} | \`s3_csv.rss_small\` (records / seconds) |
| DynamoDB WRU per signal (50 series), from the items' sizes | ${i.wruPerSignal} | \`scorer.runs.series50.wru_per_signal\` |
| DynamoDB RRU per signal (50 series) | ${i.rruPerSignal} | \`scorer.runs.series50.rru_per_signal\` |
| DynamoDB calls per 1,000 signals (50 series) | ${Object.entries(i.ddbCallsPerSignal)
    .map(([k, v]) => `${k} ${(v * 1000).toFixed(3)}`)
    .join(', ')} | \`scorer.runs.series50.ddb_calls\` / signals |
| S3 requests per 1,000 signals (50 series) | ${s3} | \`scorer.runs.series50.s3_requests\` / signals |
| bytes of score objects per signal (gzip NDJSON) | ${i.s3BytesPerSignal} | \`scorer.runs.series50.s3_bytes_per_signal\` |
| scorer CPU per 1,000 signals (parse, score, build, gzip) | ${(i.scorerCpuMsPer1k ?? 0).toFixed(1)} ms | \`scorer.cpu_ms_per_1k_signals\` |

## Per million records

| | packed, positions and S3 scores (this design) | per row, a score item per signal (the seeds) |
| --- | --- | --- |
${row('SQS requests billed (send + receive + delete)', num(packed.sqsRequests), num(perRow.sqsRequests))}
${row('Lambda invocations (scorer; the s3-trigger adds one per file)', num(packed.lambdaRequests), num(perRow.lambdaRequests))}
${row('Lambda GB-s (s3-trigger + scorer)', packed.lambdaGbSeconds.toFixed(0), perRow.lambdaGbSeconds.toFixed(0))}
${row('DynamoDB WRU', num(packed.ddbWru), num(perRow.ddbWru))}
${row('DynamoDB RRU', num(packed.ddbRru), num(perRow.ddbRru))}
${row('S3 PUT / GET requests', `${num(packed.s3Puts)} / ${num(packed.s3Gets)}`, '0 / 0')}
${row('S3 GB stored (score objects)', packed.s3Gb.toFixed(4), '0')}
${row('DynamoDB GB stored (dedupe state)', packed.ddbGb.toFixed(5), perRow.ddbGb.toFixed(3))}
${row('**SQS**', usd(packed.usd.sqs), usd(perRow.usd.sqs))}
${row('**Lambda requests**', usd(packed.usd.lambdaRequests), usd(perRow.usd.lambdaRequests))}
${row('**Lambda compute**', usd(packed.usd.lambdaCompute), usd(perRow.usd.lambdaCompute))}
${row('**DynamoDB writes**', usd(packed.usd.ddbWrites), usd(perRow.usd.ddbWrites))}
${row('**DynamoDB reads**', usd(packed.usd.ddbReads), usd(perRow.usd.ddbReads))}
${row('**S3 requests**', usd(packed.usd.s3Requests), usd(perRow.usd.s3Requests))}
${row('**S3 storage, per month kept**', usd(packed.usd.s3Storage), usd(perRow.usd.s3Storage))}
${row('**DynamoDB storage, per month kept**', usd(packed.usd.ddbStorage), usd(perRow.usd.ddbStorage))}
${row('**Glue + Athena (one query reading every score)**', usd(packed.usd.glueAthena), usd(perRow.usd.glueAthena))}
${row('**total**', `**${usd(packed.usd.total)}**`, `**${usd(perRow.usd.total)}**`)}

## How each line is computed

- **SQS, packed.** Sending is billed per 64 KiB of payload, not per call: the measured billed units
  per 1,000 records (${i.sendBilledPer1k}) are ${(i.sendBilledPer1k / i.sendCallsPer1k).toFixed(1)} times the calls (${i.sendCallsPer1k}), because a
  SendMessageBatch call carries up to 1 MiB. Receiving is billed the same way (the same payload comes
  back), deleting is one DeleteMessageBatch per ${a.sqsBatch} messages. Empty receives of idle long
  polling are not counted.
- **SQS, per row.** One SendMessage per record (each under 64 KiB), then receive and delete ${a.sqsBatch}
  at a time: ${num(perRow.sqsRequests)} requests.
- **Lambda compute.** The s3-trigger is CPU-bound: ${num(i.ingestRecordsPerS)} records/s in one process
  on the benchmark machine, using ${a.benchCpus} of its cores, scaled by the CPU of a ${a.s3TriggerMemoryMb} MB
  function (${a.s3TriggerMemoryMb}/${a.vcpuAtMb} vCPUs, counted up to the ${a.benchCpus} used). The scorer's time
  is its measured calls per signal at assumed in-region latencies (BatchGetItem ${a.ddbBatchGetMs} ms,
  TransactWriteItems ${a.ddbTransactBaseMs} ms + ${a.ddbTransactPerItemMs} ms an item, PutItem ${a.ddbPutItemMs} ms,
  BatchWriteItem ${a.ddbBatchWriteMs} ms, S3 PUT ${a.s3PutMs} ms, GET ${a.s3GetMs} ms, DELETE ${a.s3DeleteMs} ms), one
  after another, plus its measured CPU, at ${a.scorerMemoryMb} MB. moto's own speed is not used.
- **DynamoDB writes.** Measured, not modelled: the benchmark's proxy bills every item the scorer writes
  as AWS does — per started KB of the larger of the item before and after, twice for an item of a
  transaction, and once more for each write to the anomalies table's index. A batch of 20,000 signals
  of 50 series is one transaction: 50 series items, 5 block items (bitmaps of 4,096 rows) and a totals
  item, then the batch's anomalies (one item and one index entry each). No item per signal.
- **DynamoDB reads.** Measured: strongly consistent, 1 RRU per started 4 KB of an item read and per key
  not found: the series and the blocks a batch touches (the totals are only written).
- **S3.** Measured: per transaction a pending object PUT, a final object PUT and the pending object's
  DELETE (free); GETs only when a redelivery recovers a pending object or a block's old tokens are
  settled. Storage: the final objects' bytes, per month they are kept.
- **DynamoDB storage.** A block item per 4,096 positions (at most 1 KB, plus 100 bytes per item); series
  and totals are a handful of items. Signals without a position (a record's own id, a watermark-mode row
  version) cost an id item each instead: about 150 bytes stored and 2 WRU written per signal
  (docs/scoring.md).
- **Glue and Athena.** The Glue database and table are two catalog objects (free up to a million
  objects and requests a month). Athena bills per query the bytes it reads: the line is one query that
  reads every score of the million once.

## What this says

- The score item per signal was most of the bill (${usd(perRow.usd.ddbWrites)} of DynamoDB writes per million). Kept
  by position, a signal costs ${i.wruPerSignal} WRU: the series and block items are written once per
  transaction, and a transaction holds a batch.
- Scores on S3 cost ${usd(packed.usd.s3Requests + packed.usd.s3Storage)} per million (requests, and a month of storage):
  three requests per transaction, not per signal.
- Packing removes almost all per-record SQS and Lambda request cost; what is left scales with the
  payload bytes.

## The live meter (\`pulse status\`)

This table is an estimate for the whole pipeline, from the benchmark's counts. \`pulse status\` prices, with
the same price table (\`shared/prices.ts\`), what the pipeline measured as it ran: the s3-trigger's SQS
sends, S3 requests, DynamoDB units and Lambda GB-s per file, kept on each file's ledger item and summed by
the ledger's counters (\`docs/counters.md\`, "The cost meter"). It covers the s3-trigger only so far (the
scorer, most of this table, and the other producers are not metered yet); offline, its Lambda line is the
machine's wall time with the emulators' latency in it.
`;
}
