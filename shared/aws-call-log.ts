import { randomUUID } from 'node:crypto';
import { appendFileSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import type { AbsoluteLocation, InitializeHandlerOptions, InitializeMiddleware } from '@smithy/types';

/**
 * The record of AWS calls that tests ask for (`PULSE_AWS_CALL_LOG`, a directory; never set on Lambda):
 * each distinct call a function's clients make becomes one JSON line, which the IAM parity test
 * (test/iam/, docs/iam-parity.md) evaluates against the function's role in the synthesized template.
 * A line says which function, which operation, what the request names (bucket, key, prefix, version,
 * queue, table, index, DynamoDB items, secret; never a body) and how the call ended.
 */
export interface AwsCallRecord {
  readonly fn: string;
  /** The SDK client, e.g. `S3`, `SQS`, `DynamoDB`, `SecretsManager`. */
  readonly service: string;
  /** The operation, e.g. `GetObject`, `SendMessageBatch`, `TransactWriteItems`. */
  readonly op: string;
  /** The request's naming fields (`Bucket`, `Key`, `Prefix`, `VersionId`, `QueueUrl`, `TableName`, …). */
  readonly request: Readonly<Record<string, string>>;
  /** The S3 objects of a multi-object delete. */
  readonly objects?: readonly { readonly Key?: string; readonly VersionId?: string }[];
  /** The tables of a DynamoDB call's items (all of them, including items recorded by an earlier line). */
  readonly tables?: readonly string[];
  /** The DynamoDB items a call reads or writes that no earlier line recorded, with table and operation. */
  readonly items?: readonly ItemRef[];
  /** Kinds of items (table and operation) some of which were left out (see MAX_ITEMS_PER_KIND). */
  readonly moreItems?: readonly Omit<ItemRef, 'attributes'>[];
  /** `ok`, or the error's name and HTTP status (`NoSuchKey 404`). */
  readonly outcome: string;
}

/** One DynamoDB item of a call: `op` is what is done to it (`Get`, `Put`, `Update`, `Delete`, `ConditionCheck`). */
export interface ItemRef {
  readonly table: string;
  readonly op: string;
  /** The item's key (a `Key`), or its short string attributes (an `Item`: the key among them). */
  readonly attributes: Readonly<Record<string, string>>;
}

/** Request fields that name what a call acts on (a Query's key condition names its partition). */
const NAMING_FIELDS = [
  'Bucket',
  'Key',
  'Prefix',
  'VersionId',
  // CopyObject's source (`bucket/key?versionId=…`): it is read with s3:GetObject(Version).
  'CopySource',
  'QueueUrl',
  'TableName',
  'IndexName',
  'KeyConditionExpression',
  'SecretId',
] as const;
/** An attribute longer than this is no key (DynamoDB partition keys are at most 2,048 bytes). */
const MAX_KEY_LENGTH = 2048;
/**
 * Distinct items recorded per function, operation and table in a process. Items are what grows with the
 * data (a score item per signal): past this many, a call's further items are left out and it says so.
 */
const MAX_ITEMS_PER_KIND = 50;

type Input = Record<string, unknown>;

/** String attributes (plain, or DynamoDB's `{ S }` / `{ N }`) of a key or an item. */
function attributesOf(value: unknown): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [name, v] of Object.entries((value ?? {}) as Input)) {
    const s =
      typeof v === 'string'
        ? v
        : ((v as { S?: unknown; N?: unknown } | null)?.S ?? (v as { N?: unknown })?.N);
    if (typeof s === 'string' && s.length <= MAX_KEY_LENGTH) out[name] = s;
  }
  return out;
}

/** The items a DynamoDB request names, whatever its form (single, batch, transaction, query). */
function itemsOf(op: string, input: Input): ItemRef[] {
  const single = (table: unknown, itemOp: string, named: unknown): ItemRef[] =>
    typeof table === 'string' && named ? [{ table, op: itemOp, attributes: attributesOf(named) }] : [];
  const verb = op.replace(/Item$/, '');
  if (input.Key || input.Item) return single(input.TableName, verb, input.Key ?? input.Item);
  if (typeof input.KeyConditionExpression === 'string') {
    return single(input.TableName, 'Query', input.ExpressionAttributeValues);
  }
  const out: ItemRef[] = [];
  for (const [table, requests] of Object.entries((input.RequestItems ?? {}) as Input)) {
    if (Array.isArray(requests)) {
      for (const r of requests as { PutRequest?: { Item: unknown }; DeleteRequest?: { Key: unknown } }[]) {
        if (r.PutRequest) out.push(...single(table, 'Put', r.PutRequest.Item));
        if (r.DeleteRequest) out.push(...single(table, 'Delete', r.DeleteRequest.Key));
      }
    } else {
      for (const key of ((requests as { Keys?: unknown[] }).Keys ?? []) as unknown[]) {
        out.push(...single(table, 'Get', key));
      }
    }
  }
  for (const entry of (input.TransactItems ?? []) as Record<
    string,
    { TableName?: unknown; Key?: unknown; Item?: unknown }
  >[]) {
    for (const [itemOp, r] of Object.entries(entry))
      out.push(...single(r.TableName, itemOp, r.Key ?? r.Item));
  }
  return out;
}

/**
 * Records every call `client` makes into `file`, once per distinct line. Installed by
 * {@link recordAwsCalls} only when the configuration names a directory.
 */
function install(client: RecordableClient, dir: string, fn: string, file: string): void {
  const lines = new Set<string>();
  const itemsSeen = new Map<string, Set<string>>();
  /** Keeps the items not recorded yet, up to the limit of their kind; `more`: the kinds some were left out of. */
  const newItems = (op: string, items: ItemRef[]) => {
    const kept: ItemRef[] = [];
    const more = new Map<string, Omit<ItemRef, 'attributes'>>();
    for (const item of items) {
      const kind = `${op}|${item.op}|${item.table}`;
      const seen = itemsSeen.get(kind) ?? new Set<string>();
      itemsSeen.set(kind, seen);
      const id = JSON.stringify(item.attributes);
      if (seen.has(id)) continue;
      if (seen.size >= MAX_ITEMS_PER_KIND) more.set(kind, { table: item.table, op: item.op });
      else {
        seen.add(id);
        kept.push(item);
      }
    }
    return { kept, more: [...more.values()] };
  };
  const write = (record: AwsCallRecord) => {
    const line = JSON.stringify(record);
    if (lines.has(line)) return;
    lines.add(line);
    mkdirSync(dir, { recursive: true });
    appendFileSync(file, `${line}\n`);
  };
  const middleware: InitializeMiddleware<object, object> = (next, context) => async (args) => {
    const service = String(context.clientName ?? '').replace(/Client$/, '');
    const op = String(context.commandName ?? '').replace(/Command$/, '');
    const input = args.input as Input;
    const request: Record<string, string> = {};
    for (const field of NAMING_FIELDS) {
      if (typeof input[field] === 'string') request[field] = input[field];
    }
    const objects = (input.Delete as { Objects?: { Key?: string; VersionId?: string }[] } | undefined)
      ?.Objects;
    const all = service === 'DynamoDB' ? itemsOf(op, input) : [];
    const tables = [...new Set(all.map((i) => i.table))];
    const items = newItems(op, all);
    const record = (outcome: string): AwsCallRecord => ({
      fn,
      service,
      op,
      request,
      ...(objects ? { objects: objects.map(({ Key, VersionId }) => ({ Key, VersionId })) } : {}),
      ...(tables.length ? { tables } : {}),
      ...(items.kept.length ? { items: items.kept } : {}),
      ...(items.more.length ? { moreItems: items.more } : {}),
      outcome,
    });
    try {
      const out = await next(args);
      write(record('ok'));
      return out;
    } catch (err) {
      const e = err as { name?: string; $metadata?: { httpStatusCode?: number } };
      write(record(`${e.name ?? 'Error'} ${e.$metadata?.httpStatusCode ?? ''}`.trim()));
      throw err;
    }
  };
  // Once per logical call (retries happen later, in the finalize step); a document client's items are seen
  // as the code wrote them, a plain client's in DynamoDB's `{ S: … }` form.
  client.middlewareStack.add(middleware, { step: 'initialize', priority: 'low', name: 'pulseAwsCallLog' });
}

/** What an SDK client offers for this: its middleware stack (a document client shares its client's). */
export interface RecordableClient {
  readonly middlewareStack: {
    add(
      middleware: InitializeMiddleware<object, object>,
      options: InitializeHandlerOptions & AbsoluteLocation,
    ): void;
  };
}

/** This process's file under a call-log directory. */
const files = new Map<string, string>();

/**
 * Records the calls of a function's clients when `callLog` (a directory) is set; does nothing otherwise.
 */
export function recordAwsCalls(
  clients: readonly RecordableClient[],
  callLog: string | undefined,
  fn: string,
): void {
  if (!callLog) return;
  let file = files.get(callLog);
  if (!file) {
    file = join(callLog, `calls-${process.pid}-${randomUUID().slice(0, 8)}.ndjson`);
    files.set(callLog, file);
  }
  for (const client of clients) install(client, callLog, fn, file);
}
