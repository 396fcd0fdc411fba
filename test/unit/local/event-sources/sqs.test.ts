import {
  ChangeMessageVisibilityBatchCommand,
  DeleteMessageBatchCommand,
  type Message,
  ReceiveMessageCommand,
  SQSClient,
} from '@aws-sdk/client-sqs';
import type { SQSEvent } from 'aws-lambda';
import { mockClient } from 'aws-sdk-client-mock';
import { afterEach, describe, expect, it } from 'vitest';
import {
  interpretBatchResponse,
  parseQueueArn,
  type SqsEventSource,
  type SqsEventSourceLogger,
  type SqsHandler,
  startSqsEventSource,
  toSqsRecord,
} from '../../../../local/event-sources/sqs.ts';
import { sqsRecordFactory } from '../../../helpers/factories.ts';
import { waitUntil } from '../../../helpers/wait.ts';

const QUEUE_ARN = 'arn:aws:sqs:eu-west-1:123456789012:unit-queue';
const quiet: SqsEventSourceLogger = { debug() {}, info() {}, warn() {}, error() {} };

const message = (id: string, body = `body-${id}`): Message => ({
  MessageId: id,
  ReceiptHandle: `rh-${id}`,
  Body: body,
  MD5OfBody: 'md5',
  Attributes: {
    ApproximateReceiveCount: '2',
    SentTimestamp: '1700000000000',
    SenderId: 'AIDA',
    ApproximateFirstReceiveTimestamp: '1700000000100',
  },
});

describe('toSqsRecord', () => {
  it('builds the record Lambda would, in the same key order', () => {
    // Act
    const record = toSqsRecord(
      {
        ...message('1'),
        MessageAttributes: {
          s: { DataType: 'String', StringValue: 'v' },
          b: { DataType: 'Binary', BinaryValue: new Uint8Array([1, 2, 3]) },
        },
        MD5OfMessageAttributes: 'md5attrs',
      },
      QUEUE_ARN,
    );
    // Assess
    expect(record).toEqual({
      messageId: '1',
      receiptHandle: 'rh-1',
      body: 'body-1',
      attributes: {
        ApproximateReceiveCount: '2',
        SentTimestamp: '1700000000000',
        SenderId: 'AIDA',
        ApproximateFirstReceiveTimestamp: '1700000000100',
      },
      messageAttributes: {
        s: { stringValue: 'v', stringListValues: [], binaryListValues: [], dataType: 'String' },
        b: { binaryValue: 'AQID', stringListValues: [], binaryListValues: [], dataType: 'Binary' },
      },
      md5OfBody: 'md5',
      md5OfMessageAttributes: 'md5attrs',
      eventSource: 'aws:sqs',
      eventSourceARN: QUEUE_ARN,
      awsRegion: 'eu-west-1',
    });
    expect(Object.keys(record)[0]).toBe('messageId');
  });
});

describe('interpretBatchResponse', () => {
  const records = [sqsRecordFactory('a', { messageId: 'a' }), sqsRecordFactory('b', { messageId: 'b' })];

  it.each([undefined, null, {}, { batchItemFailures: [] }, { batchItemFailures: null }])(
    'reads %j as success of the whole batch',
    (response) => {
      // Assess
      expect(interpretBatchResponse(response, records)).toEqual({ ok: true, failedIds: new Set() });
    },
  );

  it('fails only the listed records', () => {
    // Assess
    expect(interpretBatchResponse({ batchItemFailures: [{ itemIdentifier: 'b' }] }, records)).toEqual({
      ok: true,
      failedIds: new Set(['b']),
    });
  });

  it.each([
    { batchItemFailures: [{ itemIdentifier: '' }] },
    { batchItemFailures: [{ itemIdentifier: null }] },
    { batchItemFailures: [{ id: 'a' }] },
    { batchItemFailures: [{ itemIdentifier: 'not-in-batch' }] },
    { batchItemFailures: 'a' },
    'ok',
    [],
  ])('reads %j as failure of the whole batch, as Lambda does', (response) => {
    // Assess
    expect(interpretBatchResponse(response, records).ok).toBe(false);
  });
});

describe('parseQueueArn', () => {
  it('reads region, account and name, and rejects what is not a queue ARN', () => {
    // Assess
    expect(parseQueueArn(QUEUE_ARN)).toEqual({
      region: 'eu-west-1',
      accountId: '123456789012',
      queueName: 'unit-queue',
    });
    expect(() => parseQueueArn('arn:aws:sns:eu-west-1:1:topic')).toThrow(RangeError);
    expect(() => parseQueueArn('https://sqs/queue')).toThrow(RangeError);
  });
});

describe('startSqsEventSource', () => {
  const sqs = mockClient(SQSClient);
  const sources: SqsEventSource[] = [];
  afterEach(async () => {
    await Promise.all(sources.splice(0).map((s) => s.stop()));
    sqs.reset();
  });

  /** Receives `batches` in turn, then nothing. */
  const start = (batches: Message[][], handler: SqsHandler, extra: { batchSize?: number } = {}) => {
    const receive = sqs.on(ReceiveMessageCommand);
    for (const batch of batches) receive.resolvesOnce({ Messages: batch });
    receive.resolves({ Messages: [] });
    sqs.on(DeleteMessageBatchCommand).resolves({ Successful: [], Failed: [] });
    const source = startSqsEventSource({
      sqs: new SQSClient({ region: 'eu-west-1' }),
      queueUrl: 'https://q',
      queueArn: QUEUE_ARN,
      batchSize: extra.batchSize ?? 10,
      handler,
      logger: quiet,
    });
    sources.push(source);
    return source;
  };
  const deletedHandles = () =>
    sqs
      .commandCalls(DeleteMessageBatchCommand)
      .flatMap((c) => (c.args[0].input.Entries ?? []).map((e) => e.ReceiptHandle));

  it('polls with the batch size and every attribute, and deletes a batch the handler handled', async () => {
    // Prepare
    const events: SQSEvent[] = [];
    // Act
    const source = start(
      [[message('1'), message('2')]],
      async (event) => {
        events.push(event);
      },
      { batchSize: 4 },
    );
    await source.idle();
    // Assess
    expect(sqs).toHaveReceivedCommandWith(ReceiveMessageCommand, {
      QueueUrl: 'https://q',
      MaxNumberOfMessages: 4,
      WaitTimeSeconds: 1,
      AttributeNames: ['All'],
      MessageSystemAttributeNames: ['All'],
      MessageAttributeNames: ['All'],
    });
    expect(events.map((e) => e.Records.map((r) => r.messageId))).toEqual([['1', '2']]);
    expect(deletedHandles()).toEqual(['rh-1', 'rh-2']);
    expect(source.stats).toMatchObject({ invocations: 1, received: 2, deleted: 2, failedInvocations: 0 });
  });

  it('deletes all but the records listed in batchItemFailures', async () => {
    // Act
    const source = start([[message('1'), message('2'), message('3')]], async () => ({
      batchItemFailures: [{ itemIdentifier: '2' }],
    }));
    await source.idle();
    // Assess
    expect(deletedHandles()).toEqual(['rh-1', 'rh-3']);
    expect(source.stats).toMatchObject({ deleted: 2, itemFailures: 1 });
  });

  it.each([
    ['throws', async () => Promise.reject(new Error('boom'))],
    ['names a record not in the batch', async () => ({ batchItemFailures: [{ itemIdentifier: 'nope' }] })],
  ] as [string, SqsHandler][])('deletes nothing when the handler %s', async (_, handler) => {
    // Act
    const source = start([[message('1'), message('2')]], handler);
    await source.idle();
    // Assess
    expect(sqs).not.toHaveReceivedCommand(DeleteMessageBatchCommand);
    expect(source.stats).toMatchObject({ invocations: 1, deleted: 0, failedInvocations: 1 });
  });

  it('passes a Lambda context counting down from the function timeout', async () => {
    // Prepare
    let remaining = 0;
    let functionName = '';
    const receive = sqs.on(ReceiveMessageCommand);
    receive.resolvesOnce({ Messages: [message('1')] }).resolves({});
    sqs.on(DeleteMessageBatchCommand).resolves({});
    // Act
    const source = startSqsEventSource({
      sqs: new SQSClient({ region: 'eu-west-1' }),
      queueUrl: 'https://q',
      queueArn: QUEUE_ARN,
      batchSize: 1,
      functionTimeoutSeconds: 5,
      handler: async (_event, context) => {
        remaining = context.getRemainingTimeInMillis();
        functionName = context.functionName;
      },
      logger: quiet,
    });
    sources.push(source);
    await source.idle();
    // Assess
    expect(remaining).toBeGreaterThan(4000);
    expect(remaining).toBeLessThanOrEqual(5000);
    expect(functionName).toBe('unit-queue-consumer');
  });

  it('fails an invocation that outlives the function timeout, and deletes nothing', async () => {
    // Prepare
    const receive = sqs.on(ReceiveMessageCommand);
    receive.resolvesOnce({ Messages: [message('1')] }).resolves({});
    let finish: () => void = () => {};
    // Act
    const source = startSqsEventSource({
      sqs: new SQSClient({ region: 'eu-west-1' }),
      queueUrl: 'https://q',
      queueArn: QUEUE_ARN,
      batchSize: 1,
      functionTimeoutSeconds: 0.2,
      handler: () =>
        new Promise<void>((resolve) => {
          finish = resolve;
        }),
      logger: quiet,
    });
    sources.push(source);
    await waitUntil('the timeout', () => source.stats.failedInvocations === 1);
    finish();
    // Assess
    expect(sqs).not.toHaveReceivedCommand(DeleteMessageBatchCommand);
  });

  it('gives messages received while stopping back to the queue instead of invoking', async () => {
    // Prepare
    let resolveReceive: (value: { Messages: Message[] }) => void = () => {};
    sqs.on(ReceiveMessageCommand).callsFake(
      () =>
        new Promise((resolve) => {
          resolveReceive = resolve;
        }),
    );
    sqs.on(ChangeMessageVisibilityBatchCommand).resolves({});
    let invoked = false;
    const source = startSqsEventSource({
      sqs: new SQSClient({ region: 'eu-west-1' }),
      queueUrl: 'https://q',
      queueArn: QUEUE_ARN,
      batchSize: 10,
      handler: async () => {
        invoked = true;
      },
      logger: quiet,
    });
    await waitUntil('a poll', () => source.stats.polls === 1);
    // Act
    const stopping = source.stop();
    resolveReceive({ Messages: [message('1')] });
    await stopping;
    // Assess
    expect(invoked).toBe(false);
    expect(sqs).toHaveReceivedCommandWith(ChangeMessageVisibilityBatchCommand, {
      Entries: [{ Id: 'm0', ReceiptHandle: 'rh-1', VisibilityTimeout: 0 }],
    });
  });

  it('refuses a batch size that one ReceiveMessage call cannot fetch', () => {
    // Act / Assess
    expect(() =>
      startSqsEventSource({
        sqs: new SQSClient({}),
        queueUrl: 'q',
        queueArn: QUEUE_ARN,
        batchSize: 11,
        handler: async () => {},
      }),
    ).toThrow(/batchSize must be 1\.\.10/);
  });
});
