import { ConditionalCheckFailedException } from '@aws-sdk/client-dynamodb';
import { DeleteObjectCommand, GetObjectCommand, PutObjectCommand } from '@aws-sdk/client-s3';
import { SendMessageBatchCommand } from '@aws-sdk/client-sqs';
import { GetCommand, QueryCommand, TransactWriteCommand, UpdateCommand } from '@aws-sdk/lib-dynamodb';
import type { BuildHandlerOptions, BuildMiddleware } from '@smithy/types';
import { mockClient } from 'aws-sdk-client-mock';
import { describe, expect, it } from 'vitest';
import type { AwsClients } from '#shared/clients.ts';
import { meteredMemoryMb } from '#shared/config.ts';
import { Ledger } from '#shared/ledger.ts';
import { countDelta, encodeSnapshot } from '#shared/ledger-counters.ts';
import {
  currentMeter,
  emptyUsage,
  meterAwsCalls,
  meteringWith,
  type StoredUsage,
  UsageMeter,
} from '#shared/usage-meter.ts';
import { mockableClients } from '../../helpers/clients.ts';

/**
 * The cost meter's recording (shared/usage-meter.ts): real SDK clients answered by a middleware in the
 * build step (after serialization, nothing leaves the process), so the meter sees the calls as sent.
 */
type Answer = (op: string, body: Record<string, unknown>) => Record<string, unknown> | Error;

function answeredClients(answer: Answer) {
  const clients = mockableClients();
  const sent: { op: string; body: Record<string, unknown> }[] = [];
  const stacks: { add(m: BuildMiddleware<object, object>, o: BuildHandlerOptions): void }[] = [
    clients.s3.middlewareStack,
    clients.sqs.middlewareStack,
    clients.ddb.middlewareStack,
  ];
  for (const stack of stacks) {
    stack.add(
      (_next, context) => async (args) => {
        const op = String(context.commandName).replace(/Command$/, '');
        const raw = (args.request as { body?: unknown }).body;
        const text = raw instanceof Uint8Array ? Buffer.from(raw).toString('utf8') : String(raw ?? '');
        // DynamoDB's requests are JSON; S3's and SQS's bodies are not looked at.
        const body = text.startsWith('{') ? (JSON.parse(text) as Record<string, unknown>) : {};
        sent.push({ op, body });
        const out = answer(op, body);
        if (out instanceof Error) throw out;
        return { output: { $metadata: {}, ...out }, response: {} } as never;
      },
      { step: 'build' },
    );
  }
  meterAwsCalls([clients.s3, clients.sqs, clients.ddb]);
  return { clients, sent };
}

const usage = (over: Partial<StoredUsage>): StoredUsage => ({ ...emptyUsage(), ...over });
const KB = 1024;

describe('counting the billed units of a file’s calls', () => {
  it('bills a SendMessageBatch per 64 KiB of its whole payload (bodies and attributes), not per call or per message', async () => {
    // Prepare
    const { clients } = answeredClients(() => ({ Successful: [], Failed: [] }));
    const meter = new UsageMeter(1024, () => 0);
    const body = 'x'.repeat(50 * KB);
    // Act
    await meteringWith(meter, async () => {
      // 3 × 50 KiB (+ attributes) = a little over 150 KiB: 3 units of 64 KiB.
      await clients.sqs.send(
        new SendMessageBatchCommand({
          QueueUrl: 'https://sqs.us-east-1.amazonaws.com/1/q',
          Entries: [0, 1, 2].map((i) => ({
            Id: String(i),
            MessageBody: body,
            MessageAttributes: { kind: { DataType: 'String', StringValue: 'packed' } },
          })),
        }),
      );
      // One small message: 1 unit.
      await clients.sqs.send(
        new SendMessageBatchCommand({
          QueueUrl: 'https://sqs.us-east-1.amazonaws.com/1/q',
          Entries: [{ Id: 'a', MessageBody: 'small' }],
        }),
      );
    });
    // Assess
    expect(meter.take()).toEqual(usage({ sqsRequests: 4, lambdaRequests: 1 }));
  });

  it('counts S3 GETs and PUTs by their request class and DELETE as free', async () => {
    // Prepare
    const { clients } = answeredClients(() => ({}));
    const meter = new UsageMeter(1024, () => 0);
    // Act
    await meteringWith(meter, async () => {
      await clients.s3.send(new GetObjectCommand({ Bucket: 'b', Key: 'k' }));
      await clients.s3.send(new GetObjectCommand({ Bucket: 'b', Key: 'k', Range: 'bytes=0-9' }));
      await clients.s3.send(new PutObjectCommand({ Bucket: 'b', Key: 'r', Body: 'x' }));
      await clients.s3.send(new DeleteObjectCommand({ Bucket: 'b', Key: 'r' }));
    });
    // Assess
    expect(meter.take()).toEqual(usage({ s3Gets: 2, s3Puts: 1, lambdaRequests: 1 }));
  });

  it('asks DynamoDB for its consumed capacity and counts what it reports; a call that fails is counted by its items (2 a transaction item)', async () => {
    // Prepare
    const cancelled = Object.assign(new Error('cancelled'), { name: 'TransactionCanceledException' });
    const { clients, sent } = answeredClients((op) => {
      if (op === 'UpdateItem') return { ConsumedCapacity: { TableName: 't', CapacityUnits: 3 } };
      if (op === 'GetItem') return { ConsumedCapacity: { TableName: 't', CapacityUnits: 1 } };
      return cancelled;
    });
    const meter = new UsageMeter(1024, () => 0);
    const input = { TableName: 't', Key: { pk: 'a', sk: 'b' } };
    // Act
    await meteringWith(meter, async () => {
      await clients.doc.send(
        new UpdateCommand({
          ...input,
          UpdateExpression: 'SET x = :x',
          ExpressionAttributeValues: { ':x': 1 },
        }),
      );
      await clients.doc.send(new GetCommand({ ...input, ConsistentRead: true }));
      await expect(
        clients.doc.send(
          new TransactWriteCommand({
            TransactItems: [
              {
                Update: { ...input, UpdateExpression: 'SET x = :x', ExpressionAttributeValues: { ':x': 1 } },
              },
              { Update: { ...input, UpdateExpression: 'ADD n :n', ExpressionAttributeValues: { ':n': 1 } } },
            ],
          }),
        ),
      ).rejects.toThrow('cancelled');
    });
    // Assess
    expect(sent.map((s) => s.body.ReturnConsumedCapacity)).toEqual(['TOTAL', 'TOTAL', 'TOTAL']);
    expect(meter.take()).toEqual(usage({ ddbWru: 3 + 4, ddbRru: 1, lambdaRequests: 1 }));
    expect(input).not.toHaveProperty('ReturnConsumedCapacity');
  });

  it('never counts less than DynamoDB bills a call, whatever the emulator reports (moto says 0.5 for an UpdateItem)', async () => {
    // Prepare
    const { clients } = answeredClients(() => ({ ConsumedCapacity: { TableName: 't', CapacityUnits: 0.5 } }));
    const meter = new UsageMeter(1024, () => 0);
    const input = { TableName: 't', Key: { pk: 'a', sk: 'b' } };
    // Act
    await meteringWith(meter, async () => {
      await clients.doc.send(
        new UpdateCommand({
          ...input,
          UpdateExpression: 'SET x = :x',
          ExpressionAttributeValues: { ':x': 1 },
        }),
      );
      await clients.doc.send(new GetCommand({ ...input, ConsistentRead: true }));
      await clients.doc.send(new GetCommand(input));
    });
    // Assess
    expect(meter.take()).toEqual(usage({ ddbWru: 1, ddbRru: 1.5, lambdaRequests: 1 }));
  });

  it('counts nothing outside a file’s work', async () => {
    // Prepare
    const { clients, sent } = answeredClients(() => ({}));
    // Act
    await clients.s3.send(new GetObjectCommand({ Bucket: 'b', Key: 'k' }));
    // Assess
    expect(sent).toHaveLength(1);
    expect(currentMeter()).toBeUndefined();
  });

  it('bills the Lambda time in MB-ms from each take to the next, and the invocation’s request once', () => {
    // Prepare
    let now = 1000;
    const meter = new UsageMeter(3538, () => now);
    // Act
    now += 250.2;
    const first = meter.take();
    now += 100;
    const second = meter.take();
    // Assess
    expect(first).toEqual(usage({ lambdaMbMs: 251 * 3538, lambdaRequests: 1 }));
    expect(second).toEqual(usage({ lambdaMbMs: 100 * 3538 }));
  });
});

describe('the units on the file’s item', () => {
  it('adds the units of the file’s calls to its item with the final write, and a hand-over’s with the hand-over', async () => {
    // Prepare
    const clients: AwsClients = mockableClients();
    const doc = mockClient(clients.doc);
    doc.on(UpdateCommand).resolves({});
    let now = 0;
    const meter = new UsageMeter(1000, () => now);
    const ledger = new Ledger(clients.doc, 'ledger', {
      leaseSeconds: 60,
      maxAttempts: 3,
      usage: () => currentMeter()?.take(),
    });
    const file = { bucket: 'b', key: 'k.csv', etag: 'e' };
    const stats = { records: 10, rejected: 0, bytesRead: 100, durationMs: 5, firstErrors: [] };
    // Act
    await meteringWith(meter, async () => {
      meter.add({ sqsRequests: 2, s3Gets: 1 });
      now = 40;
      await ledger.handOver(file, 'owner');
      meter.add({ sqsRequests: 1, s3Puts: 1, ddbWru: 2 });
      now = 100;
      await ledger.succeed(file, 'owner', stats);
    });
    // Assess
    const [handOver, succeed] = doc.commandCalls(UpdateCommand).map((c) => c.args[0].input);
    expect(handOver?.UpdateExpression).toMatch(
      / ADD u_sqs :u_sqs, u_mbms :u_mbms, u_lreq :u_lreq, u_s3get :u_s3get$/,
    );
    expect(handOver?.ExpressionAttributeValues).toMatchObject({
      ':u_sqs': 2,
      ':u_s3get': 1,
      ':u_mbms': 40_000,
      ':u_lreq': 1,
    });
    expect(succeed?.UpdateExpression).toMatch(
      / ADD u_sqs :u_sqs, u_wru :u_wru, u_mbms :u_mbms, u_s3put :u_s3put$/,
    );
    expect(succeed?.ExpressionAttributeValues).toMatchObject({
      ':u_sqs': 1,
      ':u_wru': 2,
      ':u_mbms': 60_000,
      ':u_s3put': 1,
    });
    expect(succeed?.ExpressionAttributeValues).not.toHaveProperty(':u_lreq');
  });

  it('adds a split file’s planning units when it is marked SPLIT, and its parts’ units when it ends', async () => {
    // Prepare
    const clients: AwsClients = mockableClients();
    const doc = mockClient(clients.doc);
    const file = { bucket: 'b', key: 'big.csv', etag: 'e' };
    const pk = 's3://b/big.csv';
    doc.on(UpdateCommand).resolves({});
    doc.on(GetCommand).resolves({
      Item: { pk, sk: 'e', status: 'SPLIT', parts: 2, partsDone: 2, startedAt: '2024-06-01T00:00:00.000Z' },
    });
    const part = (n: number, u: Record<string, number>) => ({
      pk,
      sk: `e#part-00000${n}`,
      part: n,
      status: 'SUCCESS',
      records: 10,
      rejected: 0,
      bytesRead: 100,
      ...u,
    });
    doc.on(QueryCommand).resolves({
      Items: [
        part(0, { u_sqs: 3, u_wru: 4, u_mbms: 1000, u_lreq: 1, u_s3get: 2 }),
        part(1, { u_sqs: 2, u_wru: 5, u_mbms: 500, u_lreq: 1, u_s3get: 1, u_s3put: 1 }),
      ],
    });
    const meter = new UsageMeter(1000, () => 0);
    const ledger = new Ledger(clients.doc, 'ledger', {
      leaseSeconds: 60,
      maxAttempts: 3,
      usage: () => currentMeter()?.take(),
    });
    // Act
    await meteringWith(meter, async () => {
      meter.add({ s3Gets: 1, sqsRequests: 1 });
      await ledger.markSplit(file, 'owner');
    });
    const outcome = await ledger.finishSplit(file, 5);
    // Assess
    const [marked, ended] = doc.commandCalls(UpdateCommand).map((c) => c.args[0].input);
    expect(outcome?.status).toBe('SUCCESS');
    expect(marked?.UpdateExpression).toContain(' ADD u_sqs :u_sqs, u_lreq :u_lreq, u_s3get :u_s3get');
    expect(marked?.ExpressionAttributeValues).toMatchObject({ ':u_sqs': 1, ':u_s3get': 1, ':u_lreq': 1 });
    expect(ended?.UpdateExpression).toMatch(
      / ADD u_sqs :u_sqs, u_wru :u_wru, u_mbms :u_mbms, u_lreq :u_lreq, u_s3put :u_s3put, u_s3get :u_s3get$/,
    );
    expect(ended?.ExpressionAttributeValues).toMatchObject({
      ':u_sqs': 5,
      ':u_wru': 9,
      ':u_mbms': 1500,
      ':u_lreq': 2,
      ':u_s3put': 1,
      ':u_s3get': 3,
    });
  });

  it('hands the units of a retryable failure refused for want of attempts on to the write that ends the file', async () => {
    // Prepare
    const clients: AwsClients = mockableClients();
    const doc = mockClient(clients.doc);
    const refused = new ConditionalCheckFailedException({
      message: 'The conditional request failed',
      $metadata: {},
      Item: { status: { S: 'PROCESSING' }, leaseOwner: { S: 'owner' }, attempts: { N: '3' } },
    });
    doc.on(UpdateCommand).rejectsOnce(refused).resolves({});
    const meter = new UsageMeter(1000, () => 0);
    const ledger = new Ledger(clients.doc, 'ledger', {
      leaseSeconds: 60,
      maxAttempts: 3,
      usage: () => currentMeter()?.take(),
    });
    const failure = {
      records: 1,
      rejected: 0,
      bytesRead: 1,
      durationMs: 1,
      firstErrors: [],
      errorType: 'TransientError',
      errorMessage: 'throttled',
      retryable: true,
    };
    // Act
    const ended = await meteringWith(meter, async () => {
      meter.add({ sqsRequests: 7 });
      return ledger.fail({ bucket: 'b', key: 'k.csv', etag: 'e' }, 'owner', failure);
    });
    // Assess
    const [first, second] = doc.commandCalls(UpdateCommand).map((c) => c.args[0].input);
    expect(ended).toBe('final');
    expect(first?.ExpressionAttributeValues).toMatchObject({ ':u_sqs': 7 });
    expect(second?.ExpressionAttributeValues).toMatchObject({ ':u_sqs': 7, ':u_lreq': 1 });
  });

  it('writes no ADD when the ledger has no meter (the other producers, the CLI)', async () => {
    // Prepare
    const clients: AwsClients = mockableClients();
    const doc = mockClient(clients.doc);
    doc.on(UpdateCommand).resolves({});
    const ledger = new Ledger(clients.doc, 'ledger', { leaseSeconds: 60, maxAttempts: 3 });
    // Act
    await ledger.succeed({ bucket: 'b', key: 'k.csv', etag: 'e' }, 'owner', {
      records: 1,
      rejected: 0,
      bytesRead: 1,
      durationMs: 1,
      firstErrors: [],
    });
    // Assess
    expect(doc.commandCalls(UpdateCommand)[0]?.args[0].input.UpdateExpression).not.toContain('ADD');
  });
});

describe('the units in the counters', () => {
  const snap = (over: Record<string, number> = {}) => ({
    status: 'SUCCESS' as const,
    records: 10,
    rejected: 1,
    bytesRead: 100,
    u_sqs: 0,
    u_wru: 0,
    u_rru: 0,
    u_mbms: 0,
    u_lreq: 0,
    u_s3put: 0,
    u_s3get: 0,
    ...over,
  });

  it('reads a snapshot without units as before the meter, so that items counted then are not settled again', () => {
    // Act
    const encoded = encodeSnapshot(snap());
    // Assess
    expect(encoded).toBe('SUCCESS|10|1|100');
  });

  it('moves the counters by the units the item gained since it was counted', () => {
    // Prepare
    const before = snap({ u_sqs: 2, u_mbms: 40_000, u_lreq: 1 });
    const after = snap({ u_sqs: 3, u_wru: 2, u_mbms: 100_000, u_lreq: 1 });
    // Act
    const delta = countDelta(before, after);
    // Assess
    expect(encodeSnapshot(after)).toBe('SUCCESS|10|1|100|3|2|0|100000|1|0|0');
    expect(delta).toEqual({ u_sqs: 1, u_wru: 2, u_mbms: 60_000 });
  });
});

describe('the memory the meter bills Lambda time at', () => {
  it('is what Lambda gives the function, or off Lambda the memory the stack deploys it with', () => {
    // Act
    const onLambda = meteredMemoryMb(3538, { AWS_LAMBDA_FUNCTION_MEMORY_SIZE: '1769' });
    const offline = meteredMemoryMb(3538, {});
    // Assess
    expect(onLambda).toBe(1769);
    expect(offline).toBe(3538);
  });
});
