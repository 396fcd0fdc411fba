import { AsyncLocalStorage } from 'node:async_hooks';
import type { AbsoluteLocation, InitializeHandlerOptions, InitializeMiddleware } from '@smithy/types';
import { sqsBilledRequests, type UsageUnits } from './cost-meter.ts';

/**
 * The live cost meter's recording half (docs/counters.md, "The cost meter"): the billed units a function
 * spends on one file, counted from its own SDK calls as they are made, and kept on the file's ledger item
 * (added with its hand-over and final writes), from where the ledger's counters sum them per source.
 *
 * - SQS: SendMessage(Batch) billed as AWS bills it, each 64 KiB of a request's payload (bodies and message
 *   attributes) one request; any other SQS call one request.
 * - S3: PUT, COPY, POST, LIST and the multipart calls in the dear class, GET and HEAD in the cheap one,
 *   DELETE free.
 * - DynamoDB: `ReturnConsumedCapacity: TOTAL` is set on each call (free) and the capacity DynamoDB reports
 *   is what is counted, read or write by the operation, never less than the least such a call is billed
 *   (1 a written item, 2 in a transaction; a call that reports none, such as a failed condition, counts
 *   that: a lower bound, as AWS bills per started KB written, 4 KB read).
 * - Lambda: GB-s of the wall time the invocation spent on the file (Lambda bills 1 ms steps × memory), and
 *   one request per file and invocation.
 *
 * Stored as integer-friendly attributes so that the counters' ADDs stay exact: Lambda time as MB-ms.
 */

/** The units as stored on a ledger item and in the counter items (attribute names). */
export const USAGE_ATTRS = {
  sqsRequests: 'u_sqs',
  ddbWru: 'u_wru',
  ddbRru: 'u_rru',
  lambdaMbMs: 'u_mbms',
  lambdaRequests: 'u_lreq',
  s3Puts: 'u_s3put',
  s3Gets: 'u_s3get',
} as const;

export type StoredUsage = Record<keyof typeof USAGE_ATTRS, number>;

export const USAGE_KEYS = Object.keys(USAGE_ATTRS) as (keyof typeof USAGE_ATTRS)[];

export const emptyUsage = (): StoredUsage => Object.fromEntries(USAGE_KEYS.map((k) => [k, 0])) as StoredUsage;

/** The stored units as the cost meter prices them (MB-ms to GB-s). */
export function toUsageUnits(u: StoredUsage): UsageUnits {
  return {
    sqsRequests: u.sqsRequests,
    ddbWru: u.ddbWru,
    ddbRru: u.ddbRru,
    lambdaGbSeconds: u.lambdaMbMs / 1024 / 1000,
    lambdaRequests: u.lambdaRequests,
    s3Puts: u.s3Puts,
    s3Gets: u.s3Gets,
  };
}

/** The sum of two takes (either may be absent). */
export function addUsage(a: StoredUsage | undefined, b: StoredUsage | undefined): StoredUsage | undefined {
  if (!a || !b) return a ?? b;
  return Object.fromEntries(USAGE_KEYS.map((k) => [k, a[k] + b[k]])) as StoredUsage;
}

/** The stored units of an item (absent attributes are 0). */
export function usageOf(item: Record<string, unknown> | undefined): StoredUsage {
  return Object.fromEntries(USAGE_KEYS.map((k) => [k, Number(item?.[USAGE_ATTRS[k]] ?? 0)])) as StoredUsage;
}

/** One file's units in one invocation, since it was last taken. */
export class UsageMeter {
  #units = emptyUsage();
  #since: number;
  #requestCounted = false;
  readonly #memoryMb: number;
  readonly #now: () => number;

  constructor(memoryMb: number, now: () => number = Date.now) {
    this.#memoryMb = memoryMb;
    this.#now = now;
    this.#since = now();
  }

  add(units: Partial<StoredUsage>): void {
    for (const k of USAGE_KEYS) this.#units[k] += units[k] ?? 0;
  }

  /**
   * The units spent since the last take (with the Lambda time up to now, and the invocation's request the
   * first time), and starts again from zero: what a ledger write adds to the item.
   */
  take(): StoredUsage {
    const now = this.#now();
    const out = {
      ...this.#units,
      lambdaMbMs: this.#units.lambdaMbMs + Math.max(0, Math.ceil(now - this.#since)) * this.#memoryMb,
      lambdaRequests: this.#units.lambdaRequests + (this.#requestCounted ? 0 : 1),
    };
    this.#units = emptyUsage();
    this.#since = now;
    this.#requestCounted = true;
    return out;
  }
}

const current = new AsyncLocalStorage<UsageMeter>();

/** Runs `fn` with `meter` as the meter the clients' calls are counted on. */
export function meteringWith<T>(meter: UsageMeter, fn: () => Promise<T>): Promise<T> {
  return current.run(meter, fn);
}

/** The meter of the file being worked on, if any. */
export function currentMeter(): UsageMeter | undefined {
  return current.getStore();
}

type Input = Record<string, unknown>;

const utf8 = (s: unknown) => (typeof s === 'string' ? Buffer.byteLength(s, 'utf8') : 0);

/** Bytes of a message's payload as SQS bills it: its body, and its attributes' names, types and values. */
function messageBytes(m: Input): number {
  let bytes = utf8(m.MessageBody);
  for (const [name, v] of Object.entries((m.MessageAttributes ?? {}) as Record<string, Input>)) {
    const value = v ?? {};
    const binary = value.BinaryValue as Uint8Array | undefined;
    bytes += utf8(name) + utf8(value.DataType) + utf8(value.StringValue) + (binary?.byteLength ?? 0);
  }
  return bytes;
}

/** SQS units a request is billed as. */
export function sqsUnits(op: string, input: Input): number {
  if (op === 'SendMessage') return sqsBilledRequests(messageBytes(input));
  if (op === 'SendMessageBatch') {
    const entries = (input.Entries ?? []) as Input[];
    return sqsBilledRequests(entries.reduce((n, e) => n + messageBytes(e), 0));
  }
  return 1;
}

const S3_FREE = new Set(['DeleteObject', 'DeleteObjects', 'AbortMultipartUpload']);
const S3_DEAR = new Set([
  'PutObject',
  'CopyObject',
  'PostObject',
  'ListObjects',
  'ListObjectsV2',
  'ListObjectVersions',
  'CreateMultipartUpload',
  'UploadPart',
  'UploadPartCopy',
  'CompleteMultipartUpload',
  'ListParts',
  'ListMultipartUploads',
  'PutObjectTagging',
]);

/** The S3 request class of an operation. */
export function s3Units(op: string): Partial<StoredUsage> {
  if (S3_FREE.has(op)) return {};
  return S3_DEAR.has(op) ? { s3Puts: 1 } : { s3Gets: 1 };
}

const DDB_READS = new Set(['GetItem', 'BatchGetItem', 'Query', 'Scan', 'TransactGetItems']);
const DDB_WITH_CAPACITY = new Set([
  'GetItem',
  'BatchGetItem',
  'Query',
  'Scan',
  'TransactGetItems',
  'PutItem',
  'UpdateItem',
  'DeleteItem',
  'BatchWriteItem',
  'TransactWriteItems',
]);

/** Items a DynamoDB request names, and whether it is a transaction (billed twice an item). */
function itemCount(input: Input): { items: number; transaction: boolean } {
  if (Array.isArray(input.TransactItems)) return { items: input.TransactItems.length, transaction: true };
  let items = 0;
  for (const requests of Object.values((input.RequestItems ?? {}) as Input)) {
    items += Array.isArray(requests) ? requests.length : ((requests as Input).Keys as unknown[]).length;
  }
  return { items: Math.max(1, items), transaction: false };
}

/** The capacity units DynamoDB reported (one object, or one a table). */
function reportedCapacity(out: unknown): number | undefined {
  const cc = (out as { ConsumedCapacity?: unknown } | undefined)?.ConsumedCapacity;
  if (!cc) return undefined;
  const list = (Array.isArray(cc) ? cc : [cc]) as { CapacityUnits?: number }[];
  if (list.length === 0) return undefined;
  return list.reduce((n, c) => n + Number(c.CapacityUnits ?? 0), 0);
}

/**
 * The least a call can be billed: a write 1 unit an item (2 in a transaction), a read 1 an item when
 * strongly consistent (2 in a transaction), else half. DynamoDB never reports less; moto does (0.5 for any
 * UpdateItem or GetItem), and the offline run must not be kinder than AWS.
 */
function leastUnits(op: string, input: Input): number {
  const { items, transaction } = itemCount(input);
  if (transaction) return items * 2;
  if (!DDB_READS.has(op) || input.ConsistentRead === true) return items;
  return items / 2;
}

/** DynamoDB units of a call: as reported, at least {@link leastUnits} (also what a call reporting none counts). */
export function ddbUnits(op: string, input: Input, out: unknown): Partial<StoredUsage> {
  const units = Math.max(reportedCapacity(out) ?? 0, leastUnits(op, input));
  return DDB_READS.has(op) ? { ddbRru: units } : { ddbWru: units };
}

/** What an SDK client offers for this: its middleware stack (a document client shares its client's). */
export interface MeterableClient {
  readonly middlewareStack: {
    add(
      middleware: InitializeMiddleware<object, object>,
      options: InitializeHandlerOptions & AbsoluteLocation,
    ): void;
  };
}

/**
 * Counts the calls of `clients` (give a DynamoDB client or its document client, not both) on the meter of
 * the file being worked on; calls made outside a file's work are not counted.
 */
export function meterAwsCalls(clients: readonly MeterableClient[]): void {
  const middleware: InitializeMiddleware<object, object> = (next, context) => async (args) => {
    const meter = current.getStore();
    if (!meter) return next(args);
    const service = String(context.clientName ?? '').replace(/Client$/, '');
    const op = String(context.commandName ?? '').replace(/Command$/, '');
    const dynamo = service.startsWith('DynamoDB');
    const asked = args.input as Input;
    // A copy: the caller's input is left as it was.
    const input =
      dynamo && DDB_WITH_CAPACITY.has(op) && asked.ReturnConsumedCapacity === undefined
        ? { ...asked, ReturnConsumedCapacity: 'TOTAL' }
        : asked;
    const count = (out: unknown) => {
      if (dynamo) meter.add(ddbUnits(op, input, out));
      else if (service === 'SQS') meter.add({ sqsRequests: sqsUnits(op, input) });
      else if (service === 'S3') meter.add(s3Units(op));
    };
    try {
      const out = await next({ ...args, input });
      count(out.output);
      return out;
    } catch (err) {
      count(undefined);
      throw err;
    }
  };
  for (const client of clients) {
    client.middlewareStack.add(middleware, { step: 'initialize', priority: 'low', name: 'pulseUsageMeter' });
  }
}
