/**
 * An HTTP proxy in front of the emulator that fails a share of the AWS calls passing through it, as
 * throttled or failing services do: before the call (503, nothing applied: throttling), as a 400
 * throttling error (DynamoDB's ProvisionedThroughputExceededException / ThrottlingException, SQS's
 * ThrottlingException, S3's SlowDown 503), or after it (the emulator applied the call, the caller gets a
 * 500: a lost response). A `failWhen` rule fails chosen calls every time (a broken dependency) until
 * `heal()`. Seeded, so a run is repeatable. Point the handlers' `AWS_ENDPOINT_URL` at `url`.
 */

import { createServer, request, type Server } from 'node:http';
import { prng } from '../../tools/random.ts';

export interface FaultProxyOptions {
  /** The emulator, e.g. `http://127.0.0.1:40123`. */
  readonly target: string;
  /** Share of calls failed before reaching the emulator (0..1). */
  readonly before: number;
  /** Share of calls applied by the emulator whose response is replaced by a 500 (0..1). */
  readonly after: number;
  /** Share of calls answered with the service's throttling error, nothing applied (0..1). @default 0 */
  readonly throttle?: number;
  /**
   * Fails every call it returns a status for (500 or 503: a service error; 400: throttling; 403: access
   * denied, which no SDK retries), whatever the shares say, until `heal()`. Sees the service, the
   * `X-Amz-Target` operation (or S3's method and path), the request headers (an S3 GET's `range`, say) and
   * the request body.
   */
  readonly failWhen?: (call: ProxiedCall) => 400 | 403 | 500 | 503 | undefined;
  /** Latency added to every call before it is forwarded (a slow network), in ms. @default 0 */
  readonly delayMs?: number;
  readonly seed: number;
}

/** One call through the proxy, as {@link FaultProxyOptions.failWhen} sees it. */
export interface ProxiedCall {
  readonly service: Service;
  /** `DynamoDB_20120810.TransactWriteItems`, `AmazonSQS.SendMessageBatch`, or `GET /bucket/key` for S3. */
  readonly operation: string;
  /** The request headers, names in lower case. */
  readonly headers: Readonly<Record<string, string | string[] | undefined>>;
  readonly body: string;
}

type Service = 'dynamodb' | 'sqs' | 's3';

interface ServiceStats {
  calls: number;
  before: number;
  after: number;
  throttled: number;
  /** Calls failed by `failWhen`. */
  ruled: number;
}

export interface FaultProxy {
  readonly url: string;
  /** Calls seen, failed before, failed after, throttled, failed by rule; per service (dynamodb, sqs, s3). */
  readonly stats: Record<string, ServiceStats>;
  /** Stops injecting faults (calls pass through untouched). */
  heal(): void;
  close(): Promise<void>;
}

function serviceOf(headers: Record<string, string | string[] | undefined>): Service {
  const target = String(headers['x-amz-target'] ?? '');
  if (target.startsWith('DynamoDB')) return 'dynamodb';
  if (target.startsWith('AmazonSQS')) return 'sqs';
  const auth = String(headers.authorization ?? '');
  if (auth.includes('/sqs/')) return 'sqs';
  if (auth.includes('/dynamodb/')) return 'dynamodb';
  return 's3';
}

/** An error response in the shape each service's protocol uses, so the SDK classifies it. */
function errorResponse(service: string, status: number, seq: number): { type: string; body: string } {
  if (service === 's3') {
    const code =
      status === 403 ? 'AccessDenied' : status === 503 || status === 400 ? 'SlowDown' : 'InternalError';
    return {
      type: 'application/xml',
      body: `<?xml version="1.0" encoding="UTF-8"?><Error><Code>${code}</Code><Message>injected fault</Message></Error>`,
    };
  }
  // DynamoDB throttles with either code (on- and over-provisioned tables); SQS with ThrottlingException.
  const throttled =
    service === 'dynamodb' && seq % 2 === 0
      ? 'ProvisionedThroughputExceededException'
      : 'ThrottlingException';
  const type =
    status === 400
      ? throttled
      : status === 403
        ? 'AccessDeniedException'
        : status === 503
          ? 'ServiceUnavailable'
          : 'InternalFailure';
  return {
    type: 'application/x-amz-json-1.0',
    body: JSON.stringify({ __type: type, message: 'injected fault' }),
  };
}

export async function startFaultProxy(options: FaultProxyOptions): Promise<FaultProxy> {
  const target = new URL(options.target);
  const random = prng(options.seed);
  let healed = false;
  const stats: FaultProxy['stats'] = {};
  const server: Server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', async () => {
      if (options.delayMs) await new Promise((r) => setTimeout(r, options.delayMs));
      if (req.socket.destroyed) return; // the caller is gone (a killed worker): forward nothing
      const service = serviceOf(req.headers);
      const s = stats[service] ?? { calls: 0, before: 0, after: 0, throttled: 0, ruled: 0 };
      stats[service] = s;
      s.calls++;
      const fail = (status: number) => {
        const { type, body } = errorResponse(service, status, s.calls);
        res.writeHead(status, { 'content-type': type, 'content-length': Buffer.byteLength(body) });
        res.end(body);
      };
      const operation = String(req.headers['x-amz-target'] ?? `${req.method} ${req.url}`);
      const ruled = healed
        ? undefined
        : options.failWhen?.({
            service,
            operation,
            headers: req.headers,
            body: Buffer.concat(chunks).toString('utf8'),
          });
      if (ruled !== undefined) {
        s.ruled++;
        fail(service === 's3' && ruled === 400 ? 503 : ruled);
        return;
      }
      const throttle = options.throttle ?? 0;
      // Every service's first call fails before, its second loses its response and, with throttling on,
      // its third is throttled, whatever the dice say, so that each kind of fault surely happens on each
      // service; then the shares apply.
      const roll =
        s.calls === 1
          ? 0
          : s.calls === 2
            ? options.before
            : s.calls === 3 && throttle > 0
              ? options.before + options.after
              : random();
      if (!healed && roll < options.before) {
        s.before++;
        fail(503);
        return;
      }
      if (
        !healed &&
        roll >= options.before + options.after &&
        roll < options.before + options.after + throttle
      ) {
        s.throttled++;
        fail(service === 's3' ? 503 : 400);
        return;
      }
      const dropAfter = !healed && roll >= options.before && roll < options.before + options.after;
      const upstream = request(
        {
          host: target.hostname,
          port: target.port,
          method: req.method,
          path: req.url,
          headers: req.headers,
        },
        (up) => {
          const body: Buffer[] = [];
          up.on('data', (c: Buffer) => body.push(c));
          up.on('end', () => {
            if (dropAfter) {
              s.after++;
              fail(500);
              return;
            }
            res.writeHead(up.statusCode ?? 502, up.headers);
            res.end(Buffer.concat(body));
          });
        },
      );
      upstream.on('error', () => fail(502));
      upstream.end(Buffer.concat(chunks));
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const address = server.address();
  const port = typeof address === 'object' && address ? address.port : 0;
  return {
    url: `http://127.0.0.1:${port}`,
    stats,
    heal: () => {
      healed = true;
    },
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}
