import { DynamoDBClient } from '@aws-sdk/client-dynamodb';
import { SendMessageBatchCommand, SQSClient } from '@aws-sdk/client-sqs';
import { BatchGetCommand, BatchWriteCommand, DynamoDBDocumentClient } from '@aws-sdk/lib-dynamodb';
import { mockClient } from 'aws-sdk-client-mock';
import { afterEach, describe, expect, it } from 'vitest';
import { sendInBatches, sendMessageBatch } from '#shared/batch-send.ts';
import { batchGetAll, batchWriteAll } from '#shared/dynamo-batch.ts';
import { MessageRefusedError, SendFailedError, TransientError } from '#shared/errors.ts';
import { backoffDelay, type RetryPolicy, retrying, retryLeftovers } from '#shared/retry.ts';

/** A policy whose pauses are recorded instead of waited. */
function recorded(over: Partial<RetryPolicy> = {}): { policy: RetryPolicy; pauses: number[] } {
  const pauses: number[] = [];
  const policy: RetryPolicy = {
    attempts: 4,
    baseMs: 100,
    jitter: 'none',
    sleep: async (ms) => {
      pauses.push(ms);
    },
    ...over,
  };
  return { policy, pauses };
}

describe('backoffDelay', () => {
  it('doubles from the base up to the bound, and jitters within the pause', () => {
    // Act
    const plain = [1, 2, 3, 4, 5].map((r) => backoffDelay(r, { baseMs: 100, maxMs: 500, jitter: 'none' }));
    const full = backoffDelay(3, { baseMs: 100, jitter: 'full' }, () => 0.5);
    const equal = backoffDelay(3, { baseMs: 100, jitter: 'equal' }, () => 0);
    // Assess
    expect(plain).toEqual([100, 200, 400, 500, 500]);
    expect(full).toBe(200);
    expect(equal).toBe(200);
  });
});

describe('retryLeftovers', () => {
  it('calls again with only what the last call left over, pausing between calls, until nothing is left', async () => {
    // Prepare
    const { policy, pauses } = recorded();
    const calls: string[][] = [];
    // Act
    const made = await retryLeftovers(
      ['a', 'b', 'c'],
      async (items) => {
        calls.push([...items]);
        return items.slice(1);
      },
      { ...policy, exhausted: () => new Error('never') },
    );
    // Assess
    expect(calls).toEqual([['a', 'b', 'c'], ['b', 'c'], ['c']]);
    expect(made).toBe(3);
    expect(pauses).toEqual([100, 200]);
  });

  it('throws what exhausted makes once its attempts are spent with something left', async () => {
    // Prepare
    const { policy } = recorded({ attempts: 2 });
    // Act
    const run = retryLeftovers(['a'], async (items) => items, {
      ...policy,
      exhausted: (left, attempts) => new Error(`${left.join()} left after ${attempts}`),
    });
    // Assess
    await expect(run).rejects.toThrow('a left after 2');
  });
});

describe('retrying', () => {
  it('retries what is retryable, up to its attempts, and throws anything else at once', async () => {
    // Prepare
    const { policy, pauses } = recorded({ attempts: 3 });
    let calls = 0;
    const flaky = async () => {
      calls++;
      if (calls < 3) throw new TransientError('again');
      return 'done';
    };
    // Act
    const result = await retrying(flaky, { ...policy, retryable: (e) => e instanceof TransientError });
    const permanent = retrying(
      async () => {
        throw new Error('no');
      },
      { ...policy, retryable: (e) => e instanceof TransientError },
    );
    // Assess
    expect(result).toBe('done');
    expect(pauses).toEqual([100, 200]);
    await expect(permanent).rejects.toThrow('no');
  });
});

describe('sendMessageBatch', () => {
  const sqs = mockClient(SQSClient);
  afterEach(() => sqs.reset());
  const entries = ['1', '2', '3'].map((Id) => ({ Id, MessageBody: `body ${Id}` }));

  it('sends again only the entries that failed, and counts the calls and the entries retried', async () => {
    // Prepare
    sqs
      .on(SendMessageBatchCommand)
      .resolvesOnce({ Failed: [{ Id: '2', Code: 'InternalError', SenderFault: false }] })
      .resolves({ Failed: [] });
    const stats = { requests: 0, retriedEntries: 0 };
    // Act
    await sendMessageBatch(new SQSClient({}), 'q', entries, recorded().policy, stats);
    // Assess
    const sent = sqs
      .commandCalls(SendMessageBatchCommand)
      .map((c) => c.args[0].input.Entries?.map((e) => e.Id));
    expect(sent).toEqual([['1', '2', '3'], ['2']]);
    expect(stats).toEqual({ requests: 2, retriedEntries: 1 });
  });

  it('names the entry SQS refuses as the sender’s fault, without sending it again', async () => {
    // Prepare
    sqs.on(SendMessageBatchCommand).resolves({
      Failed: [{ Id: '3', Code: 'InvalidMessageContents', Message: 'bad character', SenderFault: true }],
    });
    // Act
    const run = sendMessageBatch(new SQSClient({}), 'q', entries, recorded().policy);
    // Assess
    await expect(run).rejects.toBeInstanceOf(MessageRefusedError);
    await expect(run).rejects.toMatchObject({ entryId: '3', code: 'InvalidMessageContents' });
    expect(sqs.commandCalls(SendMessageBatchCommand)).toHaveLength(1);
  });

  it('gives up with a transient SendFailedError after its attempts, and sends any number ten at a time', async () => {
    // Prepare
    sqs
      .on(SendMessageBatchCommand)
      .resolves({ Failed: [{ Id: '1', Code: 'ServiceUnavailable', SenderFault: false }] });
    const many = Array.from({ length: 23 }, (_, i) => ({ Id: String(i), MessageBody: 'b' }));
    // Act
    const failing = sendMessageBatch(new SQSClient({}), 'q', entries, recorded({ attempts: 3 }).policy);
    // Assess
    await expect(failing).rejects.toBeInstanceOf(SendFailedError);
    await expect(failing).rejects.toThrow('1 messages still failing after 3 attempts: ServiceUnavailable');
    sqs.reset();
    sqs.on(SendMessageBatchCommand).resolves({ Failed: [] });
    await sendInBatches(new SQSClient({}), 'q', many, recorded().policy);
    expect(sqs.commandCalls(SendMessageBatchCommand).map((c) => c.args[0].input.Entries?.length)).toEqual([
      10, 10, 3,
    ]);
  });
});

describe('batchWriteAll and batchGetAll', () => {
  const ddb = mockClient(DynamoDBDocumentClient);
  afterEach(() => ddb.reset());
  const doc = DynamoDBDocumentClient.from(new DynamoDBClient({ region: 'us-east-1' }));

  it('writes 25 requests a call and writes again what DynamoDB left unprocessed', async () => {
    // Prepare
    const requests = Array.from({ length: 30 }, (_, i) => ({ PutRequest: { Item: { pk: `k${i}` } } }));
    ddb
      .on(BatchWriteCommand)
      .resolvesOnce({ UnprocessedItems: { t: [requests[3] as never] } })
      .resolves({});
    // Act
    await batchWriteAll(doc, 't', requests, recorded().policy);
    // Assess
    const sizes = ddb.commandCalls(BatchWriteCommand).map((c) => c.args[0].input.RequestItems?.t?.length);
    expect(sizes).toEqual([25, 1, 5]);
  });

  it('fails transiently when DynamoDB keeps leaving requests unprocessed', async () => {
    // Prepare
    const requests = [{ PutRequest: { Item: { pk: 'k' } } }];
    ddb.on(BatchWriteCommand).resolves({ UnprocessedItems: { t: requests as never } });
    // Act
    const run = batchWriteAll(doc, 't', requests, recorded({ attempts: 3 }).policy);
    // Assess
    await expect(run).rejects.toBeInstanceOf(TransientError);
    expect(ddb.commandCalls(BatchWriteCommand)).toHaveLength(3);
  });

  it('reads 100 keys a call, strongly consistent when asked, and reads again the keys left unprocessed', async () => {
    // Prepare
    const keys = Array.from({ length: 101 }, (_, i) => ({ pk: `k${i}` }));
    ddb
      .on(BatchGetCommand)
      .resolvesOnce({ Responses: { t: [{ pk: 'k0' }] }, UnprocessedKeys: { t: { Keys: [{ pk: 'k1' }] } } })
      .resolves({ Responses: { t: [{ pk: 'k1' }] } });
    const found: unknown[] = [];
    // Act
    await batchGetAll(doc, 't', keys, (item) => found.push(item.pk), {
      consistent: true,
      policy: recorded().policy,
    });
    // Assess
    const calls = ddb.commandCalls(BatchGetCommand).map((c) => c.args[0].input.RequestItems?.t);
    expect(calls.map((c) => c?.Keys?.length)).toEqual([100, 1, 1]);
    expect(calls.every((c) => c?.ConsistentRead === true)).toBe(true);
    expect(found).toEqual(['k0', 'k1', 'k1']);
  });
});
