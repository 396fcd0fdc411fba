/**
 * `npm run bench:split` (`npx tsx bench/split.ts [MB]`): how fast the fan-out coordinator's boundary scan
 * (functions/s3-trigger/split.ts) reads an uncompressed object, next to the parser a single invocation
 * would run on it. About 200 MB of each in memory, fed in 64 KiB chunks as an S3 body yields them:
 * - plain CSV: the benchmark's CSV (bench/lib.ts), one quoted field a row, CRLF;
 * - quoted CSV: every field quoted, doubled quotes and commas inside, a CRLF inside a quoted field;
 * - NDJSON: one small JSON object a line.
 * planSplit asks for 15 split points (16 parts); best of 5 runs. The parser runs once (it is slow).
 * Prints MB/s; it measures, it asserts nothing beyond the row counts agreeing.
 */
import { settings } from '#shared/settings.ts';
import { parseCsv } from '../functions/s3-trigger/parsers/csv.ts';
import { parseNdjson } from '../functions/s3-trigger/parsers/ndjson.ts';
import { planSplit, type SplitFormat } from '../functions/s3-trigger/split.ts';
import { csvBuffer, csvQuotedBuffer, MB, prng, round } from './lib.ts';

const CHUNK = 64 * 1024;
const PARTS = 16;
const RUNS = 5;

async function* chunks(data: Buffer): AsyncGenerator<Buffer> {
  for (let at = 0; at < data.length; at += CHUNK) yield data.subarray(at, at + CHUNK);
}

/** NDJSON of at least `bytes` bytes: a block of about 1 MiB of varied lines, repeated. */
function ndjsonBuffer(bytes: number): { data: Buffer; rows: number } {
  const rand = prng(11);
  let block = '';
  let blockRows = 0;
  while (block.length < MB) {
    const i = blockRows++;
    block += `${JSON.stringify({
      name: `cpu-${i % 50}`,
      value: Math.round(rand() * 100_000) / 1000,
      timestamp: 1_714_564_800 + (i % 86_400),
      tags: { host: `host "${i % 13}"`, region: ['us-east-1', 'eu-west-1'][i % 2] },
    })}\n`;
  }
  const blockBuf = Buffer.from(block);
  const copies = Math.ceil(bytes / blockBuf.length);
  return { data: Buffer.concat(Array.from({ length: copies }, () => blockBuf)), rows: copies * blockRows };
}

async function timeIt<T>(fn: () => Promise<T>): Promise<{ seconds: number; value: T }> {
  const t0 = performance.now();
  const value = await fn();
  return { seconds: (performance.now() - t0) / 1000, value };
}

async function bench(name: string, format: SplitFormat, data: Buffer, rows: number): Promise<void> {
  const mb = data.length / MB;
  const targets = Array.from({ length: PARTS - 1 }, (_, i) => Math.floor(((i + 1) * data.length) / PARTS));
  let best = Number.POSITIVE_INFINITY;
  for (let run = 0; run < RUNS; run++) {
    const { seconds, value: plan } = await timeIt(() =>
      planSplit(format, chunks(data), targets, { maxRecordBytes: settings.limits.maxRecordBytes }),
    );
    if (!plan.ok) throw new Error(`${name}: planSplit failed: ${plan.reason} at ${plan.offset}`);
    if (plan.rows !== rows) throw new Error(`${name}: planSplit counted ${plan.rows} rows, expected ${rows}`);
    best = Math.min(best, seconds);
  }
  const parse = format === 'csv' ? parseCsv : parseNdjson;
  const { seconds: parseSeconds, value: parsed } = await timeIt(async () => {
    let n = 0;
    for await (const _ of parse(chunks(data), { maxRecordBytes: MB, positions: true })) n++;
    return n;
  });
  if (parsed !== rows) throw new Error(`${name}: the parser read ${parsed} rows, expected ${rows}`);
  const split = mb / best;
  const parsing = mb / parseSeconds;
  console.log(
    `${name.padEnd(11)} ${round(mb, 1)} MB, ${rows} rows: planSplit ${round(split, 1)} MB/s, ` +
      `${format === 'csv' ? 'parseCsv' : 'parseNdjson'} ${round(parsing, 1)} MB/s (${round(split / parsing, 1)}×)`,
  );
}

const size = Number(process.argv[2] ?? 200) * MB;
console.log(`node ${process.version}, ${CHUNK / 1024} KiB chunks, ${PARTS} parts, planSplit best of ${RUNS}`);
{
  const { data, rows } = csvBuffer(size);
  await bench('plain CSV', 'csv', data, rows);
}
{
  const { data, rows } = csvQuotedBuffer(size);
  await bench('quoted CSV', 'csv', data, rows);
}
{
  const { data, rows } = ndjsonBuffer(size);
  await bench('NDJSON', 'ndjson', data, rows);
}
