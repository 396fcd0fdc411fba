import { TransactionCanceledException } from '@aws-sdk/client-dynamodb';
import {
  DeleteObjectCommand,
  GetObjectCommand,
  NoSuchKey,
  PutObjectCommand,
  type S3Client,
} from '@aws-sdk/client-s3';
import {
  BatchGetCommand,
  BatchWriteCommand,
  type DynamoDBDocumentClient,
  PutCommand,
  TransactWriteCommand,
  type TransactWriteCommandInput,
} from '@aws-sdk/lib-dynamodb';
import type { AwsClientStub } from 'aws-sdk-client-mock';

type Item = Record<string, unknown>;
type TransactItem = NonNullable<TransactWriteCommandInput['TransactItems']>[number];

/**
 * In-memory DynamoDB tables and S3 buckets behind aws-sdk-client-mock stubs, with the semantics the scorer
 * relies on: BatchGetItem by `pk`, TransactWriteItems all-or-nothing with the condition expressions the
 * scorer writes (`attribute_not_exists(pk)`, `#version = :version`, `#v = :v`) and `ADD` updates,
 * cancellation reasons per item; PutItem, BatchWriteItem; S3 PutObject, GetObject (NoSuchKey when absent),
 * DeleteObject. Tests put faults in front with `beforeTransact`.
 */
export class FakeAws {
  readonly tables = new Map<string, Map<string, Item>>();
  readonly objects = new Map<string, Buffer>();
  /** Calls in order, by command name (and key for S3). */
  readonly calls: string[] = [];
  /** Runs before each TransactWriteItems is applied; throw to fail it, or change the tables first. */
  beforeTransact: (input: TransactWriteCommandInput, n: number) => void = () => {};
  /** Runs before each PutObject; throw to fail it. */
  beforePutObject: (key: string) => void = () => {};
  #transactions = 0;

  constructor(ddb: AwsClientStub<DynamoDBDocumentClient>, s3: AwsClientStub<S3Client>) {
    ddb.on(BatchGetCommand).callsFake((input) => {
      this.calls.push('BatchGetItem');
      const Responses: Record<string, Item[]> = {};
      for (const [table, req] of Object.entries(input.RequestItems ?? {})) {
        Responses[table] = (req as { Keys: Item[] }).Keys.map((k) =>
          this.table(table).get(String(k.pk)),
        ).filter((i): i is Item => i !== undefined);
      }
      return { Responses };
    });
    ddb.on(PutCommand).callsFake((input) => {
      this.calls.push('PutItem');
      this.table(input.TableName).set(String(input.Item.pk), structuredClone(input.Item));
      return {};
    });
    ddb.on(BatchWriteCommand).callsFake((input) => {
      this.calls.push('BatchWriteItem');
      for (const [table, requests] of Object.entries(input.RequestItems ?? {})) {
        for (const r of requests as { PutRequest: { Item: Item } }[]) {
          const item = r.PutRequest.Item;
          this.table(table).set(`${item.series}|${item.at}`, structuredClone(item));
        }
      }
      return {};
    });
    ddb.on(TransactWriteCommand).callsFake((input: TransactWriteCommandInput) => {
      this.calls.push('TransactWriteItems');
      this.beforeTransact(input, this.#transactions++);
      this.transact(input);
      return {};
    });
    s3.on(PutObjectCommand).callsFake((input) => {
      this.calls.push(`PutObject ${input.Key}`);
      this.beforePutObject(String(input.Key));
      this.objects.set(String(input.Key), Buffer.from(input.Body as Uint8Array));
      return {};
    });
    s3.on(GetObjectCommand).callsFake((input) => {
      this.calls.push(`GetObject ${input.Key}`);
      const body = this.objects.get(String(input.Key));
      if (!body) throw new NoSuchKey({ message: 'The specified key does not exist.', $metadata: {} });
      return { Body: { transformToByteArray: async () => new Uint8Array(body) } };
    });
    s3.on(DeleteObjectCommand).callsFake((input) => {
      this.calls.push(`DeleteObject ${input.Key}`);
      this.objects.delete(String(input.Key));
      return {};
    });
  }

  table(name: string | undefined): Map<string, Item> {
    const key = String(name);
    let t = this.tables.get(key);
    if (!t) {
      t = new Map();
      this.tables.set(key, t);
    }
    return t;
  }

  /** Applies a transaction, or throws TransactionCanceledException with a reason per item. */
  transact(input: TransactWriteCommandInput): void {
    const items = input.TransactItems ?? [];
    const reasons = items.map((i) =>
      this.#holds(i) ? { Code: 'None' } : { Code: 'ConditionalCheckFailed' },
    );
    if (reasons.some((r) => r.Code !== 'None')) {
      throw new TransactionCanceledException({
        message: 'Transaction cancelled',
        $metadata: {},
        CancellationReasons: reasons,
      });
    }
    for (const i of items) {
      if (i.Put?.Item) this.table(i.Put.TableName).set(String(i.Put.Item.pk), structuredClone(i.Put.Item));
      if (i.Update) {
        const t = this.table(i.Update.TableName);
        const key = String(i.Update.Key?.pk);
        const item: Item = { ...(t.get(key) ?? { pk: key }) };
        const names = i.Update.ExpressionAttributeNames ?? {};
        const values = i.Update.ExpressionAttributeValues ?? {};
        const set = /SET (.*?)(?: ADD |$)/.exec(i.Update.UpdateExpression ?? '')?.[1] ?? '';
        for (const part of set.split(',').filter((p) => p.trim())) {
          const [name, value] = part.split('=').map((x) => x.trim());
          item[names[name as string] ?? (name as string)] = values[value as string];
        }
        const add = /ADD (.*)$/.exec(i.Update.UpdateExpression ?? '')?.[1] ?? '';
        for (const part of add.split(',')) {
          const [name, value] = part.trim().split(/\s+/);
          const attr = names[name as string] ?? (name as string);
          item[attr] = Number(item[attr] ?? 0) + Number(values[value as string]);
        }
        t.set(key, item);
      }
    }
  }

  #holds(i: TransactItem): boolean {
    const op = i.Put ?? i.Update;
    if (!op?.ConditionExpression) return true;
    const key = i.Put ? String(i.Put.Item?.pk) : String(i.Update?.Key?.pk);
    const stored = this.table(op.TableName).get(key);
    if (op.ConditionExpression === 'attribute_not_exists(pk)') return stored === undefined;
    const m = /^(#\w+) = (:\w+)$/.exec(op.ConditionExpression);
    if (!m) throw new Error(`the fake does not know ${op.ConditionExpression}`);
    const attr = op.ExpressionAttributeNames?.[m[1] as string] as string;
    return stored !== undefined && stored[attr] === op.ExpressionAttributeValues?.[m[2] as string];
  }
}
