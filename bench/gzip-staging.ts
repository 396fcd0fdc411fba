/**
 * `npx tsx bench/gzip-staging.ts`: a large `.csv.gz` (2 GiB uncompressed by default) ingested offline by a
 * short function, measured (issue 20, item 4). Not a test: it prints what it measured and exits 1 if the
 * file did not end SUCCESS with every row counted.
 *
 * Against a moto server of its own: the file is uploaded under incoming/ (multipart, streamed), the bucket
 * notifies the file-events queue, and the real s3-trigger handler runs in a child process behind the SQS
 * event-source emulation with a shortened timeout (`GZ_BENCH_TIMEOUT_SECONDS`, default 60, handing over
 * `GZ_BENCH_HAND_OVER_SECONDS`, default 15, before it): the file is staged, its staged copy split, and each
 * part read, in as many invocations as that takes, one at a time (offline, as `pulse local up` runs them).
 * Signals go to a sink that counts and drops them (moto would hold tens of millions of them in memory; the
 * scorer is not what is measured). Peak memory is the child's VmHWM from /proc.
 *
 * Environment: GZ_BENCH_MB (uncompressed MiB, default 2048), GZ_BENCH_LEVEL (gzip level, default 6).
 */
import { createReadStream, createWriteStream, mkdirSync, readFileSync, rmSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { pipeline } from 'node:stream/promises';
import { createGzip } from 'node:zlib';
import { Upload } from '@aws-sdk/lib-storage';
import { queryAll } from '#shared/dynamo-query.ts';
import { type LedgerItem, ledgerKey } from '#shared/ledger.ts';
import { settings } from '#shared/settings.ts';
import { startMoto } from '../local/emulators/moto.ts';
import { REPO_ROOT } from '../local/emulators/supervisor.ts';
import { destroyClients, LOCAL_CREDENTIALS, LOCAL_REGION, makeClients } from '../local/runtime/clients.ts';
import { resourceNames, uniquePrefix } from '../local/runtime/names.ts';
import { createResources } from '../local/runtime/resources.ts';
import { startWorker } from '../tools/workers.ts';
import { CSV_HEADER, csvRows, MB, round } from './lib.ts';
import { startSqsSink } from './servers.ts';

const WORK = join(REPO_ROOT, '.pulse', 'bench-gzip');
const BYTES = Number(process.env.GZ_BENCH_MB ?? 2048) * MB;
const LEVEL = Number(process.env.GZ_BENCH_LEVEL ?? 6);
const TIMEOUT_SECONDS = Number(process.env.GZ_BENCH_TIMEOUT_SECONDS ?? 60);
const HAND_OVER_SECONDS = Number(process.env.GZ_BENCH_HAND_OVER_SECONDS ?? 15);
const LEASE_SECONDS = 30;

const t0 = performance.now();
const log = (msg: string) =>
  process.stderr.write(`gzip-bench [${((performance.now() - t0) / 1000).toFixed(0).padStart(5)} s] ${msg}\n`);

/** Writes the gzip file: the CSV header, then a block of 16,000 generated rows over and over. */
async function writeGzipCsv(path: string, bytes: number): Promise<{ size: number; rows: number }> {
  const block = Buffer.from(csvRows(0, 16_000));
  let size = 0;
  let rows = 0;
  async function* csv(): AsyncGenerator<Buffer> {
    const header = Buffer.from(`${CSV_HEADER}\r\n`);
    size += header.length;
    yield header;
    while (size < bytes) {
      size += block.length;
      rows += 16_000;
      yield block;
    }
  }
  await pipeline(csv(), createGzip({ level: LEVEL }), createWriteStream(path));
  return { size, rows };
}

/** Peak and current resident memory of a process, in MiB (Linux). */
function memoryOf(pid: number): { peakMiB: number; rssMiB: number } {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  const kb = (field: string) => Number(new RegExp(`^${field}:\\s+(\\d+) kB`, 'm').exec(status)?.[1] ?? 0);
  return { peakMiB: round(kb('VmHWM') / 1024, 1), rssMiB: round(kb('VmRSS') / 1024, 1) };
}

async function main(): Promise<number> {
  rmSync(WORK, { recursive: true, force: true });
  mkdirSync(WORK, { recursive: true });
  const path = join(WORK, 'big.csv.gz');
  log(`writing ${BYTES / MB} MiB of CSV, gzip level ${LEVEL}`);
  const csv = await writeGzipCsv(path, BYTES);
  const compressed = statSync(path).size;
  log(`${csv.rows} rows, ${round(csv.size / MB)} MiB inflated, ${round(compressed / MB)} MiB compressed`);

  const moto = await startMoto();
  const sink = await startSqsSink();
  const clients = makeClients(moto.endpoint);
  let worker: Awaited<ReturnType<typeof startWorker>> | undefined;
  try {
    const names = resourceNames(uniquePrefix('gzb'));
    const resources = await createResources(clients, names, {
      visibilityTimeoutSeconds: {
        fileEvents: TIMEOUT_SECONDS * settings.visibilityTimeoutFactor,
        signals: 30,
      },
    });
    worker = await startWorker(
      'test/integration/workers/s3-trigger-worker.ts',
      [resources.queues.fileEvents.url, resources.queues.fileEvents.arn],
      {
        AWS_ENDPOINT_URL: moto.endpoint,
        AWS_REGION: LOCAL_REGION,
        AWS_ACCESS_KEY_ID: LOCAL_CREDENTIALS.accessKeyId,
        AWS_SECRET_ACCESS_KEY: LOCAL_CREDENTIALS.secretAccessKey,
        S3_FORCE_PATH_STYLE: 'true',
        SIGNALS_QUEUE_URL: sink.queueUrl,
        FILE_EVENTS_QUEUE_URL: resources.queues.fileEvents.url,
        LEDGER_TABLE: names.ledgerTable,
        QUARANTINE_BUCKET: names.bucket,
        LEDGER_LEASE_SECONDS: String(LEASE_SECONDS),
        LEDGER_HEARTBEAT_SECONDS: String(LEASE_SECONDS / 3),
        HAND_OVER_BEFORE_TIMEOUT_SECONDS: String(HAND_OVER_SECONDS),
        PULSE_WORKER_TIMEOUT_SECONDS: String(TIMEOUT_SECONDS),
        POWERTOOLS_METRICS_DISABLED: 'true',
        POWERTOOLS_LOG_LEVEL: 'WARN',
      },
    );
    const key = 'incoming/big.csv.gz';
    log(`uploading s3://${names.bucket}/${key}`);
    await new Upload({
      client: clients.s3,
      params: { Bucket: names.bucket, Key: key, Body: createReadStream(path) },
      partSize: 16 * MB,
    }).done();
    const started = performance.now();
    const pk = ledgerKey({ bucket: names.bucket, key, etag: '' }).pk;
    let file: LedgerItem | undefined;
    let stagedAt: number | undefined;
    let splitAt: number | undefined;
    let last = '';
    for (;;) {
      await new Promise((r) => setTimeout(r, 5000));
      const all = await listItems(clients, names.ledgerTable, pk);
      file = all.find((i) => i.part === undefined);
      const parts = all.filter((i) => i.part !== undefined);
      if (file?.staging?.size !== undefined && stagedAt === undefined) stagedAt = performance.now();
      if (file?.parts !== undefined && splitAt === undefined) splitAt = performance.now();
      const line =
        `file ${file?.status ?? '-'}, staged ${file?.staging?.objects ?? 0} objects` +
        `${file?.staging?.size !== undefined ? ' (done)' : ''}, parts ${parts.filter((p) => p.status === 'SUCCESS').length}/${file?.parts ?? '?'}, ` +
        `signals sent ${sink.stats.messages} messages, worker ${JSON.stringify(memoryOf(worker.child.pid as number))}`;
      if (line !== last) log(line);
      last = line;
      if (file?.status === 'SUCCESS' || file?.status === 'FAILED') break;
      if (worker.child.exitCode !== null) throw new Error('the worker exited');
    }
    const seconds = (performance.now() - started) / 1000;
    const memory = memoryOf(worker.child.pid as number);
    const all = await listItems(clients, names.ledgerTable, pk);
    const parts = all.filter((i) => i.part !== undefined);
    const invocations = all.reduce((n, i) => n + Number(i.handOvers ?? 0) + Number(i.attempts ?? 0), 0);
    const result = {
      uncompressedMiB: round(csv.size / MB, 1),
      compressedMiB: round(compressed / MB, 1),
      rows: csv.rows,
      functionTimeoutSeconds: TIMEOUT_SECONDS,
      handOverBeforeTimeoutSeconds: HAND_OVER_SECONDS,
      status: file?.status,
      error: file?.errorMessage,
      records: file?.records,
      rejected: file?.rejected,
      wallSeconds: round(seconds, 1),
      stagingSeconds: stagedAt !== undefined ? round((stagedAt - started) / 1000, 1) : undefined,
      stagingAndScanSeconds: splitAt !== undefined ? round((splitAt - started) / 1000, 1) : undefined,
      stagedObjects: file?.staging?.objects,
      parts: parts.length,
      invocations,
      fileAttempts: file?.attempts,
      fileHandOvers: file?.handOvers ?? 0,
      stalledHandOvers: all.reduce((n, i) => n + Number(i.stalledHandOvers ?? 0), 0),
      partAttempts: parts.reduce((n, i) => n + Number(i.attempts ?? 0), 0),
      partHandOvers: parts.reduce((n, i) => n + Number(i.handOvers ?? 0), 0),
      signalMessages: sink.stats.messages,
      workerPeakRssMiB: memory.peakMiB,
      workerRssAtEndMiB: memory.rssMiB,
      mbPerSecond: round(csv.size / MB / seconds, 2),
    };
    process.stdout.write(`${JSON.stringify(result, null, 2)}\n`);
    return result.status === 'SUCCESS' && result.records === csv.rows ? 0 : 1;
  } finally {
    await worker?.kill();
    destroyClients(clients);
    await sink.close();
    await moto.stop();
    rmSync(WORK, { recursive: true, force: true });
  }
}

/** The ledger items of one object key (the file's and its parts'). */
async function listItems(
  clients: ReturnType<typeof makeClients>,
  table: string,
  pk: string,
): Promise<LedgerItem[]> {
  return queryAll<LedgerItem>(clients.doc, {
    TableName: table,
    KeyConditionExpression: 'pk = :pk',
    ExpressionAttributeValues: { ':pk': pk },
    ConsistentRead: true,
  });
}

process.exitCode = await main();
