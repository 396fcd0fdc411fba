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
import {
  readUnits,
  type WireValue,
  wireItemSize,
  wireValueSize,
  writeUnits,
} from '../functions/scorer/item-size.ts';
import { prng } from '../tools/random.ts';

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

/** DynamoDB's wire format: an item is a map of attribute values. */
type WireItem = Record<string, WireValue>;

export interface DynamoCounts {
  /** Calls by operation, retries included. */
  readonly calls: Map<string, number>;
  /** Items written by calls that succeeded (each item of a transaction or batch write counts as one). */
  itemsWritten: number;
  /** Items in calls that failed (a cancelled transaction writes nothing, but was sent). */
  itemsCancelled: number;
  /**
   * Write request units as AWS bills them, computed from the items' sizes: per started KB of the larger
   * of the item before and after (PutItem), 2 per KB for an item of a transaction, plus one write to a
   * global secondary index per item it projects (BatchWriteItem on a table with one).
   */
  wru: number;
  /** Write units of cancelled transactions (counted apart; AWS bills a cancelled transaction's writes too). */
  wruCancelled: number;
  /** Read request units: per started 4 KB of each item read strongly consistently, 1 per key not found. */
  rru: number;
}

/** Tables whose items a global secondary index projects (each write there is written to the index too). */
export type IndexedTables = (table: string) => number;

/**
 * An HTTP proxy in front of the DynamoDB endpoint that counts calls, items and capacity units from the
 * requests and responses on the wire (`X-Amz-Target: DynamoDB_20120810.<Operation>`). It lets the real
 * scorer handler run unmodified: its clients are private to its module, so no SDK middleware can be
 * attached to them; pointing AWS_ENDPOINT_URL_DYNAMODB here counts exactly what they send. Item sizes
 * follow functions/scorer/item-size.ts (AWS's published rules); the size an item had before a write is
 * the size the proxy last saw it written or read with.
 */
export async function startDynamoCountingProxy(
  target: string,
  indexes: IndexedTables = () => 0,
): Promise<{ endpoint: string; counts: DynamoCounts; reset(): void; close(): Promise<void> }> {
  const upstream = new URL(target);
  const fresh = (): DynamoCounts => ({
    calls: new Map(),
    itemsWritten: 0,
    itemsCancelled: 0,
    wru: 0,
    wruCancelled: 0,
    rru: 0,
  });
  let counts = fresh();
  /** Last known size of each item, by table and key. */
  const sizes = new Map<string, number>();
  const keyOf = (table: string, key: WireItem) => `${table}|${JSON.stringify(key)}`;
  const keyOfItem = (table: string, item: WireItem) =>
    keyOf(table, item.pk ? { pk: item.pk } : { series: item.series as WireValue, at: item.at as WireValue });

  /** The write units a request will cost if it succeeds, and the sizes it leaves. */
  const writeCost = (op: string, body: Record<string, unknown>) => {
    let wru = 0;
    let items = 0;
    const after = new Map<string, number>();
    const put = (table: string, item: WireItem, factor: number) => {
      const key = keyOfItem(table, item);
      const size = wireItemSize(item);
      wru += factor * writeUnits(Math.max(size, sizes.get(key) ?? 0)) + indexes(table) * writeUnits(size);
      after.set(key, size);
      items++;
    };
    if (op === 'TransactWriteItems') {
      for (const t of (body.TransactItems ?? []) as Record<string, Record<string, unknown>>[]) {
        if (t.Put) put(String(t.Put.TableName), t.Put.Item as WireItem, 2);
        if (t.Update) {
          // The item after an update: what was known of it, or its key and the values set.
          const table = String(t.Update.TableName);
          const key = keyOf(table, t.Update.Key as WireItem);
          const values = Object.values((t.Update.ExpressionAttributeValues ?? {}) as WireItem);
          const estimate =
            wireItemSize(t.Update.Key as WireItem) + values.reduce((n, v) => n + 10 + wireValueSize(v), 0);
          const size = Math.max(sizes.get(key) ?? 0, estimate);
          wru += 2 * writeUnits(size);
          after.set(key, size);
          items++;
        }
        if (t.Delete) items++;
      }
    } else if (op === 'PutItem') {
      put(String(body.TableName), body.Item as WireItem, 1);
    } else if (op === 'BatchWriteItem') {
      for (const [table, requests] of Object.entries(
        (body.RequestItems ?? {}) as Record<string, Record<string, unknown>[]>,
      )) {
        for (const r of requests) if (r.PutRequest) put(table, (r.PutRequest as { Item: WireItem }).Item, 1);
      }
    } else if (op === 'UpdateItem' || op === 'DeleteItem') {
      wru += 1;
      items++;
    }
    return { wru, items, after };
  };

  /** Read units of a BatchGetItem, from the keys asked for and the items returned. */
  const readCost = (request: Record<string, unknown>, response: Record<string, unknown>) => {
    let rru = 0;
    const asked = (request.RequestItems ?? {}) as Record<string, { Keys: WireItem[] }>;
    const got = (response.Responses ?? {}) as Record<string, WireItem[]>;
    const unprocessed = (response.UnprocessedKeys ?? {}) as Record<string, { Keys: WireItem[] }>;
    for (const [table, { Keys }] of Object.entries(asked)) {
      const items = got[table] ?? [];
      for (const item of items) {
        const size = wireItemSize(item);
        sizes.set(keyOfItem(table, item), size);
        rru += readUnits(size);
      }
      const missing = Keys.length - items.length - (unprocessed[table]?.Keys.length ?? 0);
      rru += Math.max(0, missing);
    }
    return rru;
  };

  const server: Server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const body = Buffer.concat(chunks);
      const op =
        String(req.headers['x-amz-target'] ?? '')
          .split('.')
          .pop() ?? 'unknown';
      counts.calls.set(op, (counts.calls.get(op) ?? 0) + 1);
      let request: Record<string, unknown> = {};
      try {
        request = JSON.parse(body.toString('utf8'));
      } catch {
        request = {};
      }
      const cost = /Write|Put|Update|Delete/.test(op) ? writeCost(op, request) : undefined;
      const mine = counts;
      const forward = httpRequest(
        {
          host: upstream.hostname,
          port: upstream.port,
          method: req.method,
          path: req.url,
          headers: req.headers,
        },
        (up) => {
          const ok = (up.statusCode ?? 500) < 300;
          const out: Buffer[] = [];
          up.on('data', (c: Buffer) => out.push(c));
          up.on('end', () => {
            const text = Buffer.concat(out);
            if (cost && ok) {
              mine.itemsWritten += cost.items;
              mine.wru += cost.wru;
              for (const [k, v] of cost.after) sizes.set(k, v);
            } else if (cost) {
              mine.itemsCancelled += cost.items;
              if (op === 'TransactWriteItems') mine.wruCancelled += cost.wru;
            }
            if (op === 'BatchGetItem' && ok) {
              try {
                mine.rru += readCost(request, JSON.parse(text.toString('utf8')));
              } catch {
                // not JSON: nothing to count
              }
            } else if ((op === 'GetItem' || op === 'Query' || op === 'Scan') && ok) {
              mine.rru += 1;
            }
            res.writeHead(up.statusCode ?? 502, up.headers);
            res.end(text);
          });
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
      counts = fresh();
    },
    close: () => closeServer(server),
  };
}

export interface S3Counts {
  /** Requests by `<METHOD> <first key segment>` (e.g. `PUT scores`, `GET scores-pending`). */
  readonly requests: Map<string, number>;
  /** Bytes PUT under `scores/` (the final score objects, what is stored). */
  finalBytes: number;
}

/** An HTTP proxy in front of the S3 endpoint (path-style) that counts requests by method and prefix. */
export async function startS3CountingProxy(
  target: string,
): Promise<{ endpoint: string; counts: S3Counts; reset(): void; close(): Promise<void> }> {
  const upstream = new URL(target);
  const fresh = (): S3Counts => ({ requests: new Map(), finalBytes: 0 });
  let counts = fresh();
  const server: Server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const body = Buffer.concat(chunks);
      const path = decodeURIComponent(new URL(req.url ?? '/', 'http://x').pathname);
      const [, , first = ''] = path.split('/');
      const label = `${req.method} ${first}`;
      counts.requests.set(label, (counts.requests.get(label) ?? 0) + 1);
      if (req.method === 'PUT' && first === 'scores') counts.finalBytes += body.length;
      const forward = httpRequest(
        {
          host: upstream.hostname,
          port: upstream.port,
          method: req.method,
          path: req.url,
          headers: req.headers,
        },
        (up) => {
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
      counts = fresh();
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
