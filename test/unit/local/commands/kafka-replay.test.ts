import { Readable } from 'node:stream';
import { GetObjectCommand, ListObjectsV2Command } from '@aws-sdk/client-s3';
import { DeleteMessageCommand, ReceiveMessageCommand } from '@aws-sdk/client-sqs';
import { BatchGetCommand, UpdateCommand } from '@aws-sdk/lib-dynamodb';
import { sdkStreamMixin } from '@smithy/core/serde';
import { mockClient } from 'aws-sdk-client-mock';
import { afterEach, describe, expect, it, vi } from 'vitest';
import type { KafkaEvent } from '../../../../functions/kafka-consumer/events.ts';
import {
  noticeKeys,
  type ReplayInvoker,
  replayKafkaFailures,
} from '../../../../local/commands/kafka-replay.ts';
import { mockableClients } from '../../../helpers/clients.ts';
import { fakeTarget, KAFKA_FAILURES_BUCKET, LEDGER, QUEUES } from '../../../helpers/target.ts';

const clients = mockableClients();
const target = fakeTarget(clients);

/** A stored event of one record of `pulse_signals-0` at `offset`. */
const eventFactory = (offset: number): KafkaEvent => ({
  eventSource: 'aws:kafka',
  eventSourceArn: 'arn:aws:kafka:us-east-1:000000000000:cluster/c/1',
  bootstrapServers: 'b:9098',
  records: {
    'pulse_signals-0': [
      {
        topic: 'pulse_signals',
        partition: 0,
        offset,
        timestamp: 1_718_000_000_000,
        timestampType: 'CREATE_TIME',
        value: Buffer.from('{"name":"x","value":1}').toString('base64'),
        headers: [],
      },
    ],
  },
});

/** The object Lambda writes to the S3 destination for that event (payload: the event as a string). */
const objectFactory = (offset: number, opts: { payload?: boolean } = {}) =>
  JSON.stringify({
    requestContext: {
      requestId: 'r',
      functionArn: 'arn:fn',
      condition: 'RetryAttemptsExhausted',
      approximateInvokeCount: 3,
    },
    responseContext: { statusCode: 200, executedVersion: '$LATEST', functionError: 'Unhandled' },
    version: '1.0',
    timestamp: '2024-06-01T00:00:00.000Z',
    KafkaBatchInfo: { batchSize: 1, bootstrapServers: 'b:9098', payloadSize: 100, recordsInfo: {} },
    ...(opts.payload === false ? {} : { payload: JSON.stringify(eventFactory(offset)) }),
  });

const body = (text: string) => sdkStreamMixin(Readable.from([Buffer.from(text)]));

/** S3's "Object Created" event for a key, as EventBridge puts it on the notices queue (the key as it is). */
const notice = (id: string, key: string) => ({
  MessageId: id,
  ReceiptHandle: `rh-${id}`,
  Body: JSON.stringify({
    version: '0',
    'detail-type': 'Object Created',
    source: 'aws.s3',
    detail: { version: '0', bucket: { name: 'failures' }, object: { key, size: 10, etag: 'e' } },
  }),
});

describe('replayKafkaFailures (mocked S3, SQS and DynamoDB)', () => {
  const s3 = mockClient(clients.s3);
  const sqs = mockClient(clients.sqs);
  const doc = mockClient(clients.doc);
  afterEach(() => {
    s3.reset();
    sqs.reset();
    doc.reset();
  });

  /** Three objects: a (offset 1, oldest), b (offset 2, replayed before), c (offset 3). */
  const bucketFactory = (over: { c?: string } = {}) => {
    s3.on(ListObjectsV2Command, { Bucket: KAFKA_FAILURES_BUCKET }).resolves({
      Contents: [
        {
          Key: 'aws/lambda/u/pulse_signals-0/c',
          ETag: '"ec"',
          Size: 10,
          LastModified: new Date('2024-06-01T00:03:00Z'),
        },
        {
          Key: 'aws/lambda/u/pulse_signals-0/a',
          ETag: '"ea"',
          Size: 10,
          LastModified: new Date('2024-06-01T00:01:00Z'),
        },
        {
          Key: 'aws/lambda/u/pulse_signals-0/b',
          ETag: '"eb"',
          Size: 10,
          LastModified: new Date('2024-06-01T00:02:00Z'),
        },
      ],
    });
    doc.on(BatchGetCommand).resolves({
      Responses: {
        [LEDGER]: [
          {
            pk: 'kafka-failure#aws/lambda/u/pulse_signals-0/b',
            sk: 'eb',
            replayStatus: 'REPLAYED',
            attempts: 1,
          },
        ],
      },
    });
    s3.on(GetObjectCommand, { Key: 'aws/lambda/u/pulse_signals-0/a' }).callsFake(() => ({
      Body: body(objectFactory(1)),
    }));
    s3.on(GetObjectCommand, { Key: 'aws/lambda/u/pulse_signals-0/c' }).callsFake(() => ({
      Body: body(over.c ?? objectFactory(3)),
    }));
    doc.on(UpdateCommand).resolves({});
    sqs
      .on(ReceiveMessageCommand)
      .resolvesOnce({
        Messages: [
          notice('n-a', 'aws/lambda/u/pulse_signals-0/a'),
          notice('n-b', 'aws/lambda/u/pulse_signals-0/b'),
          notice('n-c', 'aws/lambda/u/pulse_signals-0/c'),
          notice('n-gone', 'aws/lambda/u/pulse_signals-0/expired'),
        ],
      })
      .resolves({ Messages: [] });
    sqs.on(DeleteMessageCommand).resolves({});
  };
  const invokerFactory = (fail: (offset: number) => string | undefined = () => undefined) => {
    const offsets: number[] = [];
    const invoker: ReplayInvoker = {
      invoke: vi.fn(async (payload: string, event: KafkaEvent) => {
        const offset = Object.values(event.records).flat()[0]?.offset ?? -1;
        expect(JSON.parse(payload)).toEqual(event);
        offsets.push(offset);
        const error = fail(offset);
        return error ? { ok: false as const, error } : { ok: true as const };
      }),
    };
    return { invoker, offsets };
  };
  const updates = () =>
    doc.commandCalls(UpdateCommand).map((c) => ({
      key: c.args[0].input.Key,
      status: c.args[0].input.ExpressionAttributeValues?.[':status'],
      error: c.args[0].input.ExpressionAttributeValues?.[':error'],
    }));
  const deleted = () => sqs.commandCalls(DeleteMessageCommand).map((c) => c.args[0].input.ReceiptHandle);

  it('replays what was not replayed, oldest first, records each in the ledger, and clears their notices', async () => {
    // Prepare
    bucketFactory();
    const { invoker, offsets } = invokerFactory();

    // Act
    const result = await replayKafkaFailures(target, invoker);

    // Assess
    expect(offsets).toEqual([1, 3]);
    expect(result).toMatchObject({ replayed: 2, failed: [], skipped: 1, noticesDeleted: 4 });
    expect(updates()).toEqual([
      {
        key: { pk: 'kafka-failure#aws/lambda/u/pulse_signals-0/a', sk: 'ea' },
        status: 'REPLAYED',
        error: undefined,
      },
      {
        key: { pk: 'kafka-failure#aws/lambda/u/pulse_signals-0/c', sk: 'ec' },
        status: 'REPLAYED',
        error: undefined,
      },
    ]);
    // Each object read is the version the listing named.
    expect(s3.commandCalls(GetObjectCommand).map((c) => c.args[0].input.IfMatch)).toEqual(['"ea"', '"ec"']);
    expect(deleted().sort()).toEqual(['rh-n-a', 'rh-n-b', 'rh-n-c', 'rh-n-gone']);
    expect(sqs.commandCalls(ReceiveMessageCommand)[0]?.args[0].input.QueueUrl).toBe(QUEUES.kafkaFailures);
  });

  it('records a replay that fails again with its reason, and leaves its notice (the alarm) in place', async () => {
    // Prepare
    bucketFactory();
    const { invoker } = invokerFactory((o) =>
      o === 3 ? 'SendFailedError: 5 messages still failing' : undefined,
    );

    // Act
    const result = await replayKafkaFailures(target, invoker);

    // Assess
    expect(result.failed).toEqual([
      { key: 'aws/lambda/u/pulse_signals-0/c', error: 'SendFailedError: 5 messages still failing' },
    ]);
    expect(updates()[1]).toEqual({
      key: { pk: 'kafka-failure#aws/lambda/u/pulse_signals-0/c', sk: 'ec' },
      status: 'FAILED',
      error: 'SendFailedError: 5 messages still failing',
    });
    expect(deleted()).not.toContain('rh-n-c');
    expect(result.entries.find((e) => e.key.endsWith('/c'))).toMatchObject({ status: 'failed', attempts: 1 });
  });

  it('does not invoke for an object without payload, and says the records must be read from the topic', async () => {
    // Prepare
    bucketFactory({ c: objectFactory(3, { payload: false }) });
    const { invoker, offsets } = invokerFactory();

    // Act
    const result = await replayKafkaFailures(target, invoker);

    // Assess
    expect(offsets).toEqual([1]);
    expect(result.failed[0]?.error).toMatch(
      /^no payload \(RetryAttemptsExhausted\): the records must be read again/,
    );
  });

  it('with --dry-run lists every object and its status, and invokes, writes and deletes nothing', async () => {
    // Prepare
    bucketFactory();
    const { invoker, offsets } = invokerFactory();

    // Act
    const result = await replayKafkaFailures(target, invoker, { dryRun: true });

    // Assess
    expect(result.entries.map((e) => [e.key.slice(-1), e.status])).toEqual([
      ['a', 'pending'],
      ['b', 'replayed'],
      ['c', 'pending'],
    ]);
    expect(offsets).toEqual([]);
    expect(doc).not.toHaveReceivedCommand(UpdateCommand);
    expect(sqs).not.toHaveReceivedCommand(ReceiveMessageCommand);
  });
});

describe('noticeKeys', () => {
  it('reads the key of an "Object Created" event as it is; anything else names none', () => {
    // Act / Assess
    expect(noticeKeys(notice('1', 'aws/lambda/a b+c=d').Body)).toEqual(['aws/lambda/a b+c=d']);
    expect(
      noticeKeys(JSON.stringify({ 'detail-type': 'Object Deleted', detail: { object: { key: 'k' } } })),
    ).toEqual([]);
    expect(noticeKeys(JSON.stringify({ Event: 's3:TestEvent' }))).toEqual([]);
    expect(noticeKeys('not json')).toEqual([]);
  });
});
