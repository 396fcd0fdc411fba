/**
 * Helpers the benchmark sections share: request counters, a DynamoDB-counting proxy, deterministic
 * data, timing. Nothing here is a test; it measures.
 */
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { createWriteStream } from 'node:fs';
import { createServer, request as httpRequest, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { SQSClient } from '@aws-sdk/client-sqs';
import { prng } from '../test/helpers/random.ts';

/** Requests sent on the wire, by command name (SDK retries included). */
export type RequestCounts = Map<string, number>;

/**
 * Counts each HTTP request a client sends. The middleware sits in the deserialize step, below the
 * retry middleware, so a retried call counts once per attempt, as AWS bills it.
 */
export function countRequests(client: SQSClient, counts: RequestCounts = new Map()): RequestCounts {
  client.middlewareStack.add(
    (next, context) => async (args) => {
      const name = context.commandName ?? 'unknown';
      counts.set(name, (counts.get(name) ?? 0) + 1);
      return next(args);
    },
    { step: 'deserialize', name: 'benchRequestCounter' },
  );
  return counts;
}

export const sum = (counts: RequestCounts) => [...counts.values()].reduce((a, b) => a + b, 0);

/** Items a DynamoDB call writes: each item of a transaction or batch write counts as one. */
export function itemsWritten(operation: string, body: unknown): number {
  const b = body as {
    TransactItems?: Record<string, unknown>[];
    RequestItems?: Record<string, unknown[]>;
  };
  switch (operation) {
    case 'PutItem':
    case 'UpdateItem':
    case 'DeleteItem':
      return 1;
    case 'TransactWriteItems':
      // ConditionCheck items read, they do not write.
      return (b.TransactItems ?? []).filter((i) => !('ConditionCheck' in i)).length;
    case 'BatchWriteItem':
      return Object.values(b.RequestItems ?? {}).reduce((n, list) => n + list.length, 0);
    default:
      return 0;
  }
}

export interface DynamoCounts {
  /** Calls by operation, retries included. */
  readonly calls: Map<string, number>;
  /** Items written (attempted) by successful calls. */
  itemsWritten: number;
  /** Items in calls that failed (a cancelled transaction writes nothing, but was sent). */
  itemsCancelled: number;
}

/**
 * An HTTP proxy in front of the DynamoDB endpoint that counts calls and items written, from the
 * requests on the wire (`X-Amz-Target: DynamoDB_20120810.<Operation>`). It lets the real scorer handler
 * run unmodified: its clients are private to its module, so no SDK middleware can be attached to them;
 * pointing AWS_ENDPOINT_URL_DYNAMODB here counts exactly what they send.
 */
export async function startDynamoCountingProxy(
  target: string,
): Promise<{ endpoint: string; counts: DynamoCounts; reset(): void; close(): Promise<void> }> {
  const upstream = new URL(target);
  let counts: DynamoCounts = { calls: new Map(), itemsWritten: 0, itemsCancelled: 0 };
  const server: Server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const body = Buffer.concat(chunks);
      const target = String(req.headers['x-amz-target'] ?? '');
      const op = target.split('.').pop() ?? 'unknown';
      counts.calls.set(op, (counts.calls.get(op) ?? 0) + 1);
      let items = 0;
      if (/Write|Put|Update|Delete/.test(op)) {
        try {
          items = itemsWritten(op, JSON.parse(body.toString('utf8')));
        } catch {
          items = 0;
        }
      }
      const forward = httpRequest(
        {
          host: upstream.hostname,
          port: upstream.port,
          method: req.method,
          path: req.url,
          headers: req.headers,
        },
        (up) => {
          if ((up.statusCode ?? 500) < 300) counts.itemsWritten += items;
          else counts.itemsCancelled += items;
          res.writeHead(up.statusCode ?? 502, up.headers);
          up.pipe(res);
        },
      );
      forward.on('error', (err) => {
        res.writeHead(502);
        res.end(String(err));
      });
      forward.end(body);
    });
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const { port } = server.address() as AddressInfo;
  return {
    endpoint: `http://127.0.0.1:${port}`,
    get counts() {
      return counts;
    },
    reset() {
      counts = { calls: new Map(), itemsWritten: 0, itemsCancelled: 0 };
    },
    close: () => closeServer(server),
  };
}

export async function closeServer(server: Server): Promise<void> {
  server.closeAllConnections();
  await new Promise<void>((resolve, reject) => server.close((err) => (err ? reject(err) : resolve())));
}

export { prng };

/** The header of the benchmark CSV: the seeds' columns (name, value, source, timestamp) plus two attributes. */
export const CSV_HEADER = 'name,value,source,timestamp,host,region';
const REGIONS = ['us-east-1', 'eu-west-1', 'ap-southeast-2'];

/**
 * CSV text of rows `from..to-1` (no header): 50 series, values around a per-series level, epoch-second
 * timestamps, a quoted host attribute. About 65 bytes a row.
 */
export function csvRows(from: number, to: number, seed = 7): string {
  const rand = prng(seed + from);
  let out = '';
  for (let i = from; i < to; i++) {
    const series = i % 50;
    const value = (series * 10 + rand() * 4).toFixed(3);
    out += `cpu-${series},${value},web-${i % 7},${1_714_564_800 + (i % 86_400)},"host ${i % 13}",${REGIONS[i % 3]}\r\n`;
  }
  return out;
}

/** A CSV of at least `bytes` bytes, in memory. Returns the text and its data row count. */
export function csvBuffer(bytes: number): { data: Buffer; rows: number } {
  const parts = [`${CSV_HEADER}\r\n`];
  let size = parts[0]?.length ?? 0;
  let rows = 0;
  const step = 100;
  while (size < bytes) {
    const chunk = csvRows(rows, rows + step);
    parts.push(chunk);
    size += chunk.length;
    rows += step;
  }
  return { data: Buffer.from(parts.join('')), rows };
}

/**
 * Writes a CSV of at least `bytes` bytes to `path` without holding it. The rows of one generated block
 * (about 1 MiB) repeat, so that writing a gigabyte costs disk time, not CPU: ingest does not care that
 * values repeat, and signal ids come from row numbers, which do not.
 */
export async function writeCsvFile(path: string, bytes: number): Promise<{ size: number; rows: number }> {
  const block = Buffer.from(csvRows(0, 16_000));
  const out = createWriteStream(path);
  const header = `${CSV_HEADER}\r\n`;
  out.write(header);
  let size = header.length;
  let rows = 0;
  while (size < bytes) {
    if (!out.write(block)) await once(out, 'drain');
    size += block.length;
    rows += 16_000;
  }
  out.end();
  await once(out, 'finish');
  return { size, rows };
}

export const MB = 1024 * 1024;

export function median(values: number[]): number {
  const s = [...values].sort((a, b) => a - b);
  const mid = Math.floor(s.length / 2);
  return s.length % 2 ? (s[mid] as number) : ((s[mid - 1] as number) + (s[mid] as number)) / 2;
}

export const round = (n: number, digits = 2) => Math.round(n * 10 ** digits) / 10 ** digits;

/** Seconds `fn` takes, and what it returned. */
export async function timed<T>(fn: () => Promise<T>): Promise<{ seconds: number; value: T }> {
  const t0 = performance.now();
  const value = await fn();
  return { seconds: (performance.now() - t0) / 1000, value };
}

/** Runs this Node binary with `args` and only `env` (plus PATH); resolves with its exit code and output. */
export async function runNode(
  args: readonly string[],
  env: Record<string, string>,
): Promise<{ code: number | null; out: string; err: string }> {
  const child = spawn(process.execPath, args, {
    env: { PATH: process.env.PATH ?? '', ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  let err = '';
  child.stdout.on('data', (d: Buffer) => {
    out += d;
  });
  child.stderr.on('data', (d: Buffer) => {
    err += d;
  });
  const code = await new Promise<number | null>((resolve) => child.on('close', resolve));
  return { code, out, err };
}

/**
 * The quoted, CRLF-heavy variant of {@link csvBuffer}: every field quoted, a host with doubled quotes and
 * a comma, and a note field holding a CRLF inside its quotes. At least `bytes` bytes; returns the data
 * row count (each record spans two physical lines).
 */
export function csvQuotedBuffer(bytes: number, seed = 7): { data: Buffer; rows: number } {
  const parts = [`"${CSV_HEADER.split(',').join('","')}","note"\r\n`];
  let size = parts[0]?.length ?? 0;
  let rows = 0;
  const rand = prng(seed);
  while (size < bytes) {
    let block = '';
    for (let i = rows; i < rows + 100; i++) {
      const series = i % 50;
      const value = (series * 10 + rand() * 4).toFixed(3);
      block += `"cpu-${series}","${value}","web-${i % 7}","${1_714_564_800 + (i % 86_400)}","host ""${i % 13}"", rack ${i % 4}","${REGIONS[i % 3]}","line one, ${i}\r\nline two"\r\n`;
    }
    parts.push(block);
    size += block.length;
    rows += 100;
  }
  return { data: Buffer.from(parts.join('')), rows };
}
