/**
 * The offline dashboard: a small HTTP server on 127.0.0.1 (node:http, nothing else) that samples a
 * status collector on an interval, keeps the samples in memory, evaluates the stack's alarms offline on
 * them (alarms.ts), and serves one self-contained page that charts and tabulates it all, live.
 *
 *   GET /              the page (SVG charts drawn by its script: nothing is fetched from elsewhere)
 *   GET /dashboard.css, /dashboard.js   its stylesheet and script (the CSP allows nothing inline)
 *   GET /api/status    {@link DashboardSnapshot}: the latest status, the alarms, the last sampling error
 *   GET /api/history   the samples, oldest first; `?since=<epoch ms>` returns only those taken after it
 *
 * The page polls both every sampling interval. A collector that fails (an emulator down) never stops the
 * server: the error is kept and shown on the page, over the last good data, until a sample succeeds.
 *
 * Only requests whose `Host` names the server itself (`127.0.0.1:<port>`, `localhost:<port>`, or
 * `[::1]:<port>` when it listens there) are answered; any other gets 421. A page on another site the
 * developer visits cannot read the status (object keys, errors quoting values, the local Postgres URL)
 * through DNS rebinding: its requests carry its own host name.
 */

import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { settings } from '#shared/settings.ts';
import type { PulseStatus } from '../commands/status.ts';
import {
  type AlarmEvaluation,
  evaluateAlarms,
  type MonitoringSettings,
  type ProducerHealth,
} from './alarms.ts';
import { History, type Sample, toSample } from './history.ts';
import { DASHBOARD_PAGE, DASHBOARD_SCRIPT, DASHBOARD_STYLE } from './page.ts';

export interface DashboardOptions {
  /** What to sample: a `StatusCollector`, or one that adds what the runtime knows ({@link ProducerHealth}). */
  readonly collector: { collect(): Promise<PulseStatus & ProducerHealth> };
  /** @default '127.0.0.1' */
  readonly host?: string;
  /** 0 takes a free port. @default 0 */
  readonly port?: number;
  /** @default 2000 */
  readonly sampleIntervalMs?: number;
  /** Samples kept. @default enough for 30 minutes at `sampleIntervalMs` (the longest alarm window is 15) */
  readonly historySize?: number;
  /** The alarm thresholds. @default settings.monitoring, as the stack's alarms */
  readonly monitoring?: MonitoringSettings;
  /**
   * A collection that takes longer counts as failed (the AWS SDK has no request timeout by default, and
   * an emulator that hangs must not freeze the page); its late result is dropped.
   * @default max(10 s, 5 × sampleIntervalMs)
   */
  readonly sampleTimeoutMs?: number;
}

export interface Dashboard {
  /** `http://host:port/`: the page. */
  readonly url: string;
  readonly port: number;
  /** Stops sampling (waiting for a sample under way) and closes the server and its connections. */
  stop(): Promise<void>;
}

/** The body of `GET /api/status`. */
export interface DashboardSnapshot {
  /** The last status collected, null until one was. */
  readonly status: (PulseStatus & ProducerHealth) | null;
  /** The alarms evaluated on it (empty until a status was collected). */
  readonly alarms: readonly AlarmEvaluation[];
  /** The last sampling's error, null when it succeeded. */
  readonly error: { readonly message: string; readonly at: string } | null;
  readonly sampleIntervalMs: number;
}

const DEFAULT_INTERVAL_MS = 2000;
const HISTORY_MS = 30 * 60_000;

/** Starts sampling and serving. Resolves once the server listens and the first sample was attempted. */
export async function startDashboard(options: DashboardOptions): Promise<Dashboard> {
  const host = options.host ?? '127.0.0.1';
  const intervalMs = options.sampleIntervalMs ?? DEFAULT_INTERVAL_MS;
  if (!(intervalMs > 0)) throw new RangeError(`sampleIntervalMs must be > 0, got ${intervalMs}`);
  const history = new History(options.historySize ?? Math.ceil(HISTORY_MS / intervalMs));
  const monitoring = options.monitoring ?? settings.monitoring;
  const timeoutMs = options.sampleTimeoutMs ?? Math.max(10_000, 5 * intervalMs);

  let snapshot: DashboardSnapshot = { status: null, alarms: [], error: null, sampleIntervalMs: intervalMs };
  const sample = async (): Promise<void> => {
    let timeout: NodeJS.Timeout | undefined;
    try {
      const status = await Promise.race([
        options.collector.collect(),
        new Promise<never>((_, reject) => {
          timeout = setTimeout(
            () => reject(new Error(`collecting the status took longer than ${timeoutMs} ms`)),
            timeoutMs,
          );
        }),
      ]);
      history.push(toSample(status));
      snapshot = {
        status,
        alarms: evaluateAlarms(status, history.all(), monitoring),
        error: null,
        sampleIntervalMs: intervalMs,
      };
    } catch (err) {
      snapshot = { ...snapshot, error: { message: describeError(err), at: new Date().toISOString() } };
    } finally {
      clearTimeout(timeout);
    }
  };

  let stopped = false;
  let timer: NodeJS.Timeout | undefined;
  let current: Promise<void> = sample();
  const schedule = () => {
    if (stopped) return;
    timer = setTimeout(() => {
      current = sample().then(schedule);
    }, intervalMs);
  };

  let allowedHosts: ReadonlySet<string> = new Set();
  const server = createServer((req, res) => {
    try {
      if (!allowedHosts.has((req.headers.host ?? '').toLowerCase())) {
        send(
          res,
          421,
          'application/json',
          JSON.stringify({ error: 'this server answers only to its own address (127.0.0.1 or localhost)' }),
        );
        return;
      }
      route(req, res, () => snapshot, history);
    } catch (err) {
      send(res, 500, 'application/json', JSON.stringify({ error: describeError(err) }));
    }
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(options.port ?? 0, host, () => {
      server.off('error', reject);
      resolve();
    });
  });
  const port = (server.address() as AddressInfo).port;
  const urlHost = host.includes(':') ? `[${host}]` : host;
  allowedHosts = hostHeaders(host, port);
  await current;
  schedule();

  return {
    url: `http://${urlHost}:${port}/`,
    port,
    async stop() {
      stopped = true;
      clearTimeout(timer);
      await current;
      clearTimeout(timer);
      await new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      });
    },
  };
}

/** The lower-case `Host` values that name a server listening on `host`:`port`. */
export function hostHeaders(host: string, port: number): ReadonlySet<string> {
  const h = host.toLowerCase();
  const names = [h.includes(':') ? `[${h}]` : h];
  if (h === '127.0.0.1' || h === '::1' || h === 'localhost') names.push('localhost');
  if (h === 'localhost') names.push('127.0.0.1', '[::1]');
  return new Set(names.map((n) => `${n}:${port}`));
}

/** Nothing inline, nothing from elsewhere: scripts, styles and requests go to this server only. */
const PAGE_CSP =
  "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src data:; " +
  "base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

function route(
  req: IncomingMessage,
  res: ServerResponse,
  snapshot: () => DashboardSnapshot,
  history: History,
): void {
  if (req.method !== 'GET' && req.method !== 'HEAD') {
    res.setHeader('Allow', 'GET, HEAD');
    send(res, 405, 'application/json', JSON.stringify({ error: `${req.method} is not allowed` }));
    return;
  }
  const url = new URL(req.url ?? '/', 'http://dashboard');
  switch (url.pathname) {
    case '/':
      res.setHeader('Content-Security-Policy', PAGE_CSP);
      send(res, 200, 'text/html; charset=utf-8', DASHBOARD_PAGE);
      return;
    case '/dashboard.js':
      send(res, 200, 'text/javascript; charset=utf-8', DASHBOARD_SCRIPT);
      return;
    case '/dashboard.css':
      send(res, 200, 'text/css; charset=utf-8', DASHBOARD_STYLE);
      return;
    case '/api/status':
      send(res, 200, 'application/json', JSON.stringify(snapshot()));
      return;
    case '/api/history': {
      const since = url.searchParams.get('since');
      const t = since === null ? Number.NEGATIVE_INFINITY : Number(since);
      if (Number.isNaN(t)) {
        send(res, 400, 'application/json', JSON.stringify({ error: `since must be epoch milliseconds` }));
        return;
      }
      const samples: Sample[] = history.since(t);
      send(res, 200, 'application/json', JSON.stringify({ samples }));
      return;
    }
    case '/favicon.ico':
      send(res, 204, 'text/plain', '');
      return;
    default:
      send(res, 404, 'application/json', JSON.stringify({ error: `no such page: ${url.pathname}` }));
  }
}

function send(res: ServerResponse, code: number, type: string, body: string): void {
  res.writeHead(code, {
    'Content-Type': type,
    'Content-Length': Buffer.byteLength(body),
    'Cache-Control': 'no-store',
    'X-Content-Type-Options': 'nosniff',
  });
  res.end(res.req.method === 'HEAD' ? undefined : body);
}

/** One line: `Name (CODE): message`; an AggregateError (both loopback addresses refused) lists its parts. */
export function describeError(err: unknown): string {
  if (!(err instanceof Error)) return String(err);
  const code = (err as { code?: unknown }).code;
  let message = err.message;
  if (!message && err instanceof AggregateError) message = err.errors.map(describeError).join('; ');
  return `${err.name}${typeof code === 'string' ? ` (${code})` : ''}: ${message || 'no message'}`;
}
