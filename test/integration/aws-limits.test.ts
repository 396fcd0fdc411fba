import { randomBytes } from 'node:crypto';
import {
  BatchWriteItemCommand,
  CreateTableCommand,
  GetItemCommand,
  TransactWriteItemsCommand,
} from '@aws-sdk/client-dynamodb';
import { CreateBucketCommand, DeleteObjectsCommand, PutObjectCommand } from '@aws-sdk/client-s3';
import {
  CreateQueueCommand,
  GetQueueAttributesCommand,
  SendMessageBatchCommand,
  SendMessageCommand,
} from '@aws-sdk/client-sqs';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { destroyClients, makeClients } from '../../local/runtime/clients.ts';

/**
 * Request limits AWS enforces and moto as published does not (or counts differently), enforced by
 * scripts/moto_server.py so that the offline run is never kinder than AWS (docs/aws-fidelity.md). Each
 * test fails against moto without the launcher's fix.
 */

const clients = makeClients(inject('motoEndpoint'));
const tag = randomBytes(4).toString('hex');

afterAll(() => {
  destroyClients(clients);
});

/** The error a call failed with: its name and HTTP status, or undefined when it succeeded. */
async function refusal(call: Promise<unknown>): Promise<{ name: string; status?: number } | undefined> {
  try {
    await call;
    return undefined;
  } catch (err) {
    const e = err as { name: string; $metadata?: { httpStatusCode?: number } };
    return { name: e.name, status: e.$metadata?.httpStatusCode };
  }
}

describe('SQS limits', () => {
  let queueUrl = '';
  beforeAll(async () => {
    const out = await clients.sqs.send(
      new CreateQueueCommand({
        QueueName: `limits-${tag}`,
        Attributes: { MaximumMessageSize: String(256 * 1024) },
      }),
    );
    queueUrl = out.QueueUrl ?? '';
  });

  const depth = async () => {
    const out = await clients.sqs.send(
      new GetQueueAttributesCommand({ QueueUrl: queueUrl, AttributeNames: ['ApproximateNumberOfMessages'] }),
    );
    return Number(out.Attributes?.ApproximateNumberOfMessages);
  };

  it('refuses a message holding a character SQS does not allow (U+FFFE, U+0001) with InvalidMessageContents', async () => {
    // Act
    const nonCharacter = await refusal(
      clients.sqs.send(new SendMessageCommand({ QueueUrl: queueUrl, MessageBody: 'a\uFFFEb' })),
    );
    const control = await refusal(
      clients.sqs.send(new SendMessageCommand({ QueueUrl: queueUrl, MessageBody: 'a\u0001b' })),
    );
    // Assess
    expect(nonCharacter).toEqual({ name: 'InvalidMessageContents', status: 400 });
    expect(control).toEqual({ name: 'InvalidMessageContents', status: 400 });
  });

  it('fails only the batch entry with a forbidden character, and sends the others', async () => {
    // Prepare
    const before = await depth();
    // Act
    const out = await clients.sqs.send(
      new SendMessageBatchCommand({
        QueueUrl: queueUrl,
        Entries: [
          { Id: 'good1', MessageBody: 'fine' },
          { Id: 'bad', MessageBody: 'not \uFFFF fine' },
          { Id: 'good2', MessageBody: 'fine, é and 😀 included' },
        ],
      }),
    );
    // Assess
    expect(out.Successful?.map((s) => s.Id).sort()).toEqual(['good1', 'good2']);
    expect(out.Failed).toEqual([
      expect.objectContaining({ Id: 'bad', Code: 'InvalidMessageContents', SenderFault: true }),
    ]);
    expect(await depth()).toBe(before + 2);
  });

  it('measures the queue’s MaximumMessageSize in UTF-8 bytes, not characters', async () => {
    // Prepare: 100,000 three-byte characters are 300,000 bytes, over the queue's 262,144.
    const body = '€'.repeat(100_000);
    // Act
    const refused = await refusal(
      clients.sqs.send(new SendMessageCommand({ QueueUrl: queueUrl, MessageBody: body })),
    );
    // Assess
    expect(body.length).toBeLessThan(256 * 1024);
    expect(refused).toEqual({ name: 'InvalidParameterValue', status: 400 });
  });

  it('measures a batch’s 1 MiB total in UTF-8 bytes', async () => {
    // Prepare: a queue that takes 1 MiB messages, and five of 80,000 three-byte characters (1.2 MB).
    const big = await clients.sqs.send(
      new CreateQueueCommand({
        QueueName: `limits-big-${tag}`,
        Attributes: { MaximumMessageSize: String(1024 * 1024) },
      }),
    );
    // Act
    const refused = await refusal(
      clients.sqs.send(
        new SendMessageBatchCommand({
          QueueUrl: big.QueueUrl,
          Entries: Array.from({ length: 5 }, (_, i) => ({ Id: `e${i}`, MessageBody: '€'.repeat(80_000) })),
        }),
      ),
    );
    // Assess
    expect(refused).toEqual({ name: 'BatchRequestTooLong', status: 400 });
  });
});

describe('DynamoDB limits', () => {
  const table = `limits${tag}`;
  beforeAll(async () => {
    await clients.ddb.send(
      new CreateTableCommand({
        TableName: table,
        BillingMode: 'PAY_PER_REQUEST',
        AttributeDefinitions: [{ AttributeName: 'pk', AttributeType: 'S' }],
        KeySchema: [{ AttributeName: 'pk', KeyType: 'HASH' }],
      }),
    );
  });

  it('refuses a BatchWriteItem of more than 25 requests, and writes none of them', async () => {
    // Act
    const refused = await refusal(
      clients.ddb.send(
        new BatchWriteItemCommand({
          RequestItems: {
            [table]: Array.from({ length: 26 }, (_, i) => ({
              PutRequest: { Item: { pk: { S: `bw${i}` } } },
            })),
          },
        }),
      ),
    );
    // Assess
    expect(refused).toEqual({ name: 'ValidationException', status: 400 });
    const first = await clients.ddb.send(new GetItemCommand({ TableName: table, Key: { pk: { S: 'bw0' } } }));
    expect(first.Item).toBeUndefined();
  });

  it('refuses a transaction whose items total more than 4 MB, and applies none of it', async () => {
    // Prepare: 14 puts of about 380 KB each (each under the 400 KB item limit), 5.3 MB in all.
    const value = 'x'.repeat(380 * 1024);
    // Act
    const refused = await refusal(
      clients.ddb.send(
        new TransactWriteItemsCommand({
          TransactItems: Array.from({ length: 14 }, (_, i) => ({
            Put: { TableName: table, Item: { pk: { S: `tx${i}` }, v: { S: value } } },
          })),
        }),
      ),
    );
    // Assess
    expect(refused).toEqual({ name: 'ValidationException', status: 400 });
    for (const i of [0, 13]) {
      const out = await clients.ddb.send(
        new GetItemCommand({ TableName: table, Key: { pk: { S: `tx${i}` } } }),
      );
      expect(out.Item).toBeUndefined();
    }
  });

  it('still applies a transaction under 4 MB', async () => {
    // Act
    await clients.ddb.send(
      new TransactWriteItemsCommand({
        TransactItems: Array.from({ length: 3 }, (_, i) => ({
          Put: { TableName: table, Item: { pk: { S: `ok${i}` }, v: { S: 'x'.repeat(300 * 1024) } } },
        })),
      }),
    );
    // Assess
    const out = await clients.ddb.send(new GetItemCommand({ TableName: table, Key: { pk: { S: 'ok2' } } }));
    expect(out.Item?.v?.S).toHaveLength(300 * 1024);
  });
});

describe('S3 limits', () => {
  const bucket = `limits-${tag}`;
  beforeAll(async () => {
    await clients.s3.send(new CreateBucketCommand({ Bucket: bucket }));
    await clients.s3.send(new PutObjectCommand({ Bucket: bucket, Key: 'k0', Body: 'x' }));
  });

  it('refuses a DeleteObjects of more than 1,000 keys (MalformedXML) and deletes nothing', async () => {
    // Act
    const refused = await refusal(
      clients.s3.send(
        new DeleteObjectsCommand({
          Bucket: bucket,
          Delete: { Objects: Array.from({ length: 1001 }, (_, i) => ({ Key: `k${i}` })), Quiet: true },
        }),
      ),
    );
    // Assess
    expect(refused).toEqual({ name: 'MalformedXML', status: 400 });
    const kept = await clients.s3.send(
      new DeleteObjectsCommand({ Bucket: bucket, Delete: { Objects: [{ Key: 'k0' }] } }),
    );
    expect(kept.Deleted?.map((d) => d.Key)).toEqual(['k0']);
  });
});
