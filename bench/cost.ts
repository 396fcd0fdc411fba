/**
 * AWS cost per million records, packed design vs per-row design, from what the benchmark measured
 * (request counts, items written, records per message, CPU-bound ingest rate) and list prices. Writes
 * docs/cost.md; the numbers in it come from bench/results.json of the same run.
 */
import { availableParallelism } from 'node:os';
import { settings } from '../shared/settings.ts';

/** us-east-1 list prices (on-demand / pay-per-request), as published in 2025; free tiers ignored. */
export const PRICES = {
  asOf: 'us-east-1 list prices as published in 2025 (DynamoDB on-demand after the November 2024 price cut); free tiers ignored',
  lambdaGbSecondArm: 0.0000133334,
  lambdaPerMillionRequests: 0.2,
  sqsPerMillionRequests: 0.4,
  ddbPerMillionWru: 0.625,
  ddbPerMillionRru: 0.125,
} as const;

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
  ddbBatchGetMs: 10,
  /** A TransactWriteItems call: a fixed part and a part per item. */
  ddbTransactBaseMs: 10,
  ddbTransactPerItemMs: 0.3,
  /** Series the scorer writes side by side (functions/scorer/scorer.ts SERIES_PARALLELISM). */
  scorerParallelism: 4,
  sqsBatch: 10,
  /** Transactional writes cost 2 WRU per item up to 1 KB; score and series items are well under 1 KB. */
  wruPerTransactionalItem: 2,
  /** A strongly consistent read of an item up to 4 KB, found or not, costs 1 RRU. */
  rruPerConsistentRead: 1,
} as const;

export interface CostInputs {
  /** From s3_csv.end_to_end (moto). */
  readonly recordsPerMessage: number;
  readonly sendCallsPer1k: number;
  readonly sendBilledPer1k: number;
  /** Records per second of one ingest process with a thin SQS endpoint (s3_csv.rss_small), CPU-bound. */
  readonly ingestRecordsPerS: number;
  /** From scorer.runs.series50. */
  readonly ddbItemsPerSignal: number;
  readonly ddbCallsPerSignal: Record<string, number>;
}

export interface DesignCost {
  readonly sqsRequests: number;
  readonly lambdaRequests: number;
  readonly lambdaGbSeconds: number;
  readonly ddbWru: number;
  readonly ddbRru: number;
  readonly usd: {
    sqs: number;
    lambdaRequests: number;
    lambdaCompute: number;
    ddbWrites: number;
    ddbReads: number;
    total: number;
  };
}

const M = 1_000_000;

function price(d: Omit<DesignCost, 'usd'>): DesignCost {
  const usd = {
    sqs: (d.sqsRequests / M) * PRICES.sqsPerMillionRequests,
    lambdaRequests: (d.lambdaRequests / M) * PRICES.lambdaPerMillionRequests,
    lambdaCompute: d.lambdaGbSeconds * PRICES.lambdaGbSecondArm,
    ddbWrites: (d.ddbWru / M) * PRICES.ddbPerMillionWru,
    ddbReads: (d.ddbRru / M) * PRICES.ddbPerMillionRru,
    total: 0,
  };
  usd.total = usd.sqs + usd.lambdaRequests + usd.lambdaCompute + usd.ddbWrites + usd.ddbReads;
  return { ...d, usd };
}

/** Scorer seconds for `n` signals from its DynamoDB calls per signal and the assumed latencies. */
function scorerSeconds(n: number, calls: Record<string, number>, itemsPerSignal: number): number {
  const a = ASSUMPTIONS;
  const transactions = (calls.TransactWriteItems ?? 0) * n;
  const ms =
    (calls.BatchGetItem ?? 0) * n * a.ddbBatchGetMs +
    (calls.GetItem ?? 0) * n * a.ddbGetItemMs +
    transactions * a.ddbTransactBaseMs +
    itemsPerSignal * n * a.ddbTransactPerItemMs;
  return ms / 1000 / a.scorerParallelism;
}

export function costModel(i: CostInputs): { packed: DesignCost; perRow: DesignCost } {
  const a = ASSUMPTIONS;
  const cpuShare = Math.min(1, a.s3TriggerMemoryMb / a.vcpuAtMb / a.benchCpus);
  const messages = M / i.recordsPerMessage;
  // Receiving bills each 64 KiB of payload returned, as sending does; deleting is one request per 10.
  const packedSqs = i.sendBilledPer1k * 1000 * 2 + messages / a.sqsBatch;
  const ingestSeconds = M / i.ingestRecordsPerS / cpuShare;
  const packed = price({
    sqsRequests: packedSqs,
    lambdaRequests: messages / a.sqsBatch,
    lambdaGbSeconds:
      (ingestSeconds * a.s3TriggerMemoryMb) / 1024 +
      (scorerSeconds(M, i.ddbCallsPerSignal, i.ddbItemsPerSignal) * a.scorerMemoryMb) / 1024,
    ddbWru: i.ddbItemsPerSignal * M * a.wruPerTransactionalItem,
    // Every signal's id is looked up once; each series is read once per batch (GetItem calls).
    ddbRru: (1 + (i.ddbCallsPerSignal.GetItem ?? 0)) * M * a.rruPerConsistentRead,
  });
  // Per row: one SendMessage per record (one 64 KiB unit each), received and deleted ten at a time.
  // The producer waits on each SendMessage; the scorer sees batches of ten one-signal messages, so a
  // series write per signal: two items per transaction, and per signal one id lookup and one series read.
  const perRowCalls = { BatchGetItem: 1 / a.sqsBatch, GetItem: 1, TransactWriteItems: 1 };
  const perRow = price({
    sqsRequests: M + (M / a.sqsBatch) * 2,
    lambdaRequests: M / a.sqsBatch,
    lambdaGbSeconds:
      ((ingestSeconds + (M * a.sqsSendMessageMs) / 1000) * a.s3TriggerMemoryMb) / 1024 +
      (scorerSeconds(M, perRowCalls, 2) * a.scorerMemoryMb) / 1024,
    ddbWru: 2 * M * a.wruPerTransactionalItem,
    ddbRru: 2 * M * a.rruPerConsistentRead,
  });
  return { packed, perRow };
}

const usd = (n: number) => (n >= 0.01 ? `$${n.toFixed(2)}` : `$${n.toFixed(4)}`);
const num = (n: number) => Math.round(n).toLocaleString('en-US');

/** The document, from the inputs and the model's result. */
export function costMarkdown(i: CostInputs, generatedAt: string): string {
  const { packed, perRow } = costModel(i);
  const a = ASSUMPTIONS;
  const row = (label: string, p: string, r: string) => `| ${label} | ${p} | ${r} |`;
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

## What was measured (bench/results.json)

| input | value | where |
| --- | --- | --- |
| records per packed message | ${i.recordsPerMessage.toFixed(0)} | \`s3_csv.end_to_end.records / messages\` |
| SendMessageBatch calls per 1,000 records | ${i.sendCallsPer1k} | \`s3_csv.sqs_requests_per_1k_records\` |
| billed SQS send requests (64 KiB units) per 1,000 records | ${i.sendBilledPer1k} | \`s3_csv.end_to_end.sqs_billed_requests_per_1k_records\` |
| ingest records/s, one process, thin SQS endpoint | ${num(i.ingestRecordsPerS)} | \`s3_csv.rss_small\` (records / seconds) |
| DynamoDB items written per signal (50 series) | ${i.ddbItemsPerSignal} | \`scorer.runs.series50.ddb_writes_per_signal\` |
| DynamoDB calls per signal (50 series) | ${Object.entries(i.ddbCallsPerSignal)
    .map(([k, v]) => `${k} ${v.toFixed(4)}`)
    .join(', ')} | \`scorer.runs.series50.ddb_calls\` / signals |

## Per million records

| | packed (this design) | per row (the seeds) |
| --- | --- | --- |
${row('SQS requests billed (send + receive + delete)', num(packed.sqsRequests), num(perRow.sqsRequests))}
${row('Lambda invocations (scorer; the s3-trigger adds one per file)', num(packed.lambdaRequests), num(perRow.lambdaRequests))}
${row('Lambda GB-s (s3-trigger + scorer)', packed.lambdaGbSeconds.toFixed(0), perRow.lambdaGbSeconds.toFixed(0))}
${row('DynamoDB WRU', num(packed.ddbWru), num(perRow.ddbWru))}
${row('DynamoDB RRU', num(packed.ddbRru), num(perRow.ddbRru))}
${row('**SQS**', usd(packed.usd.sqs), usd(perRow.usd.sqs))}
${row('**Lambda requests**', usd(packed.usd.lambdaRequests), usd(perRow.usd.lambdaRequests))}
${row('**Lambda compute**', usd(packed.usd.lambdaCompute), usd(perRow.usd.lambdaCompute))}
${row('**DynamoDB writes**', usd(packed.usd.ddbWrites), usd(perRow.usd.ddbWrites))}
${row('**DynamoDB reads**', usd(packed.usd.ddbReads), usd(perRow.usd.ddbReads))}
${row('**total**', `**${usd(packed.usd.total)}**`, `**${usd(perRow.usd.total)}**`)}

## How each line is computed

- **SQS, packed.** Sending is billed per 64 KiB of payload, not per call: the measured billed units
  per 1,000 records (${i.sendBilledPer1k}) are ${(i.sendBilledPer1k / i.sendCallsPer1k).toFixed(1)} times the calls (${i.sendCallsPer1k}), because a
  SendMessageBatch call carries up to 1 MiB. Packing saves requests per record, and deflating each
  message (\`settings.signals.deflateLevel\`) saves most of its bytes, but every byte sent is still
  paid for. Receiving is billed the same way (the same payload comes back),
  deleting is one DeleteMessageBatch per ${a.sqsBatch} messages. Empty receives of idle long polling
  are not counted.
- **SQS, per row.** One SendMessage per record (each under 64 KiB), then receive and delete ${a.sqsBatch}
  at a time: ${num(perRow.sqsRequests)} requests.
- **Lambda compute.** The s3-trigger is CPU-bound: ${num(i.ingestRecordsPerS)} records/s in one process
  on the benchmark machine, using ${a.benchCpus} of its cores (the CSV parser runs on a thread of its own),
  scaled by the CPU of a ${a.s3TriggerMemoryMb} MB function (${a.s3TriggerMemoryMb}/${a.vcpuAtMb} vCPUs, counted up to
  the ${a.benchCpus} used), assuming a benchmark core is worth a Lambda vCPU.
  The per-row producer additionally waits about ${a.sqsSendMessageMs} ms on each SendMessage (one at a
  time, as the seeds did). The scorer's time is modelled from its measured DynamoDB calls per signal
  with assumed in-region latencies (GetItem ${a.ddbGetItemMs} ms, BatchGetItem ${a.ddbBatchGetMs} ms,
  TransactWriteItems ${a.ddbTransactBaseMs} ms + ${a.ddbTransactPerItemMs} ms per item), ${a.scorerParallelism}
  series side by side, at ${a.scorerMemoryMb} MB. The throughput measured on moto is not used: moto
  is far slower than DynamoDB and would inflate this line.
- **DynamoDB writes.** Each item of a TransactWriteItems costs ${a.wruPerTransactionalItem} WRU (up to 1 KB).
  Packed: ${i.ddbItemsPerSignal} items per signal (a score item, plus one series item per series per
  transaction). Per row: a batch of ${a.sqsBatch} one-signal messages from different series writes a
  series item for nearly every signal, so 2 items per signal.
- **DynamoDB reads.** Strongly consistent; a key looked up costs ${a.rruPerConsistentRead} RRU whether
  or not the item exists. Every signal's id is looked up once (BatchGetItem, 100 keys a call), plus
  one series read per series per batch.

## What this says

- DynamoDB writes are most of the bill in both designs. The score item is written in the same
  transaction as the series state (that is what makes scoring exactly-once), and transactional writes
  cost twice a plain write. Per-batch aggregation keeps the series writes near zero per signal; what
  remains is the score item itself at ${a.wruPerTransactionalItem} WRU.
- Packing removes almost all per-record SQS and Lambda request cost. What is left in SQS scales with
  payload bytes: a message carries each signal once, without what the message already says (origin,
  id, default source), deflated: a message of ${i.recordsPerMessage.toFixed(0)} records is ${((i.sendBilledPer1k / 1000) * i.recordsPerMessage).toFixed(2)} billed 64 KiB units on average.
- The per-row design costs more in every line, and most in SQS requests and DynamoDB writes.
`;
}
