import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { type _Object, ListObjectsV2Command, PutObjectCommand } from '@aws-sdk/client-s3';
import {
  ChangeMessageVisibilityBatchCommand,
  DeleteMessageCommand,
  GetQueueAttributesCommand,
  type Message,
  ReceiveMessageCommand,
  SendMessageBatchCommand,
  SendMessageCommand,
  StartMessageMoveTaskCommand,
} from '@aws-sdk/client-sqs';
import { BatchGetCommand, QueryCommand, ScanCommand } from '@aws-sdk/lib-dynamodb';
import { mockClient } from 'aws-sdk-client-mock';
import { afterAll, afterEach, describe, expect, it, vi } from 'vitest';
import type { AwsClients } from '#shared/clients.ts';
import type { LedgerItem } from '#shared/ledger.ts';
import { settings } from '#shared/settings.ts';
import { deflateMessage } from '#shared/signal.ts';
import {
  backfill,
  dropFiles,
  ledgerEntries,
  listDlq,
  redriveDlq,
} from '../../../../local/commands/operations.ts';
import type { Target } from '../../../../local/commands/target.ts';
import { mockableClients } from '../../../helpers/clients.ts';
import { BUCKET, fakeTarget, LEDGER, QUEUES } from '../../../helpers/target.ts';

const clientsFactory = mockableClients;

const targetFactory = (clients: AwsClients, kind: Target['kind'] = 'local') => fakeTarget(clients, kind);

const message = (id: string, over: Partial<Message> = {}): Message => ({
  MessageId: id,
  ReceiptHandle: `rh-${id}`,
  Body: `{"id":"${id}"}`,
  Attributes: { ApproximateReceiveCount: '3', SentTimestamp: '1700000000000' },
  ...over,
});

const ledgerItem = (over: Partial<LedgerItem>): LedgerItem => ({
  pk: `s3://${BUCKET}/incoming/a.csv`,
  sk: 'e1',
  bucket: BUCKET,
  key: 'incoming/a.csv',
  etag: 'e1',
  status: 'SUCCESS',
  attempts: 1,
  records: 1,
  rejected: 0,
  bytesRead: 10,
  createdAt: '2024-06-01T00:00:00.000Z',
  updatedAt: '2024-06-01T00:00:00.000Z',
  ...over,
});

/** The SQS calls in the order they were sent: command name, queue and body or receipt handle. */
const history = (calls: readonly { args: readonly [unknown, ...unknown[]] }[]) =>
  calls.map((c) => {
    const command = c.args[0] as {
      constructor: { name: string };
      input: { QueueUrl?: string; MessageBody?: string; ReceiptHandle?: string };
    };
    const { QueueUrl, MessageBody, ReceiptHandle } = command.input;
    const name = command.constructor.name.replace(/Command$/, '');
    return `${name} ${QueueUrl?.split('/').pop()} ${MessageBody ?? ReceiptHandle ?? ''}`.trim();
  });

describe('dropFiles', () => {
  const clients = clientsFactory();
  const s3 = mockClient(clients.s3);
  const dir = mkdtempSync(join(tmpdir(), 'pulse-drop-'));
  afterEach(() => s3.reset());
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it('uploads each file under incoming/<basename> and returns its unquoted ETag and size', async () => {
    // Prepare
    const file = join(dir, 'metrics.csv');
    const text = 'name,value,timestamp\ncpu,1,1700000000\n';
    writeFileSync(file, text);
    s3.on(PutObjectCommand).resolves({ ETag: '"abc123"' });
    // Act
    const dropped = await dropFiles(clients.s3, BUCKET, [file]);
    // Assess
    expect(dropped).toEqual([
      { file, bucket: BUCKET, key: 'incoming/metrics.csv', etag: 'abc123', bytes: Buffer.byteLength(text) },
    ]);
    expect(s3).toHaveReceivedCommandWith(PutObjectCommand, { Bucket: BUCKET, Key: 'incoming/metrics.csv' });
  });
});

describe('ledgerEntries', () => {
  const clients = clientsFactory();
  const doc = mockClient(clients.doc);
  afterEach(() => doc.reset());

  it('queries the status index, page by page, when a status is given', async () => {
    // Prepare
    const a = ledgerItem({
      pk: `s3://${BUCKET}/incoming/a.csv`,
      status: 'FAILED',
      updatedAt: '2024-06-01T10:00:00Z',
    });
    const b = ledgerItem({
      pk: `s3://${BUCKET}/incoming/b.csv`,
      status: 'FAILED',
      updatedAt: '2024-06-01T11:00:00Z',
    });
    doc
      .on(QueryCommand)
      .resolvesOnce({ Items: [a], LastEvaluatedKey: { pk: a.pk, sk: a.sk } })
      .resolvesOnce({ Items: [b] });
    // Act
    const items = await ledgerEntries(targetFactory(clients), 'FAILED');
    // Assess
    expect(items).toEqual([b, a]);
    expect(doc).toHaveReceivedCommandTimes(QueryCommand, 2);
    expect(doc).toHaveReceivedCommandWith(QueryCommand, {
      TableName: LEDGER,
      IndexName: settings.ledger.statusIndex,
      KeyConditionExpression: '#status = :status',
      ExpressionAttributeNames: { '#status': 'status' },
      ExpressionAttributeValues: { ':status': 'FAILED' },
    });
    expect(doc.commandCalls(QueryCommand)[1]?.args[0].input.ExclusiveStartKey).toEqual({
      pk: a.pk,
      sk: a.sk,
    });
    expect(doc).not.toHaveReceivedCommand(ScanCommand);
  });

  it('scans the table without a status, drops the poller watermark and sorts by updatedAt descending', async () => {
    // Prepare
    const old = ledgerItem({ pk: `s3://${BUCKET}/incoming/old.csv`, updatedAt: '2024-06-01T08:00:00.000Z' });
    const mid = ledgerItem({ pk: `s3://${BUCKET}/incoming/mid.csv`, updatedAt: '2024-06-01T09:00:00.000Z' });
    const recent = ledgerItem({
      pk: `s3://${BUCKET}/incoming/new.csv`,
      updatedAt: '2024-06-01T12:00:00.000Z',
    });
    const watermark = { pk: 'watermark#signals', sk: 'watermark', updatedAt: '2024-06-02T00:00:00.000Z' };
    doc
      .on(ScanCommand)
      .resolvesOnce({
        Items: [mid, watermark],
        LastEvaluatedKey: { pk: 'watermark#signals', sk: 'watermark' },
      })
      .resolvesOnce({ Items: [old, recent] });
    // Act
    const items = await ledgerEntries(targetFactory(clients));
    // Assess
    expect(items.map((i) => i.pk)).toEqual([recent.pk, mid.pk, old.pk]);
    expect(doc).toHaveReceivedCommandTimes(ScanCommand, 2);
    expect(doc).toHaveReceivedNthCommandWith(ScanCommand, 1, { TableName: LEDGER });
    expect(doc.commandCalls(ScanCommand)[1]?.args[0].input.ExclusiveStartKey).toEqual({
      pk: 'watermark#signals',
      sk: 'watermark',
    });
    expect(doc).not.toHaveReceivedCommand(QueryCommand);
  });
});

describe('listDlq', () => {
  const clients = clientsFactory();
  const sqs = mockClient(clients.sqs);
  afterEach(() => sqs.reset());

  it('peeks, lists a message received twice once, and makes every peeked message visible again at once', async () => {
    // Prepare
    sqs.on(ReceiveMessageCommand).resolves({});
    sqs
      .on(ReceiveMessageCommand, { QueueUrl: QUEUES.fileEventsDlq })
      .resolvesOnce({ Messages: [message('m1'), message('m2')] })
      .resolvesOnce({ Messages: [message('m2'), message('m3', { Body: 'x'.repeat(400) })] })
      .resolvesOnce({ Messages: [message('m1')] })
      .resolves({});
    sqs
      .on(ReceiveMessageCommand, { QueueUrl: QUEUES.kafkaFailures })
      .resolvesOnce({ Messages: [message('k1')] })
      .resolves({});
    // Act
    const messages = await listDlq(targetFactory(clients));
    // Assess
    expect(messages.map((m) => `${m.queue}/${m.messageId}`)).toEqual([
      'fileEventsDlq/m1',
      'fileEventsDlq/m2',
      'fileEventsDlq/m3',
      'kafkaFailures/k1',
    ]);
    expect(messages[0]).toEqual({
      queue: 'fileEventsDlq',
      messageId: 'm1',
      receiveCount: 3,
      sentAt: '2023-11-14T22:13:20.000Z',
      body: '{"id":"m1"}',
    });
    expect(messages[2]?.body).toHaveLength(300);
    const receives = sqs.commandCalls(ReceiveMessageCommand);
    expect(receives.length).toBeGreaterThan(0);
    for (const call of receives) expect(call.args[0].input.VisibilityTimeout).toBe(10);
    // Released with the latest receipt handle of each message, so a redrive right after finds them all.
    const released = sqs
      .commandCalls(ChangeMessageVisibilityBatchCommand)
      .map((c) => [
        c.args[0].input.QueueUrl,
        (c.args[0].input.Entries ?? []).map((e) => [e.ReceiptHandle, e.VisibilityTimeout]),
      ]);
    expect(released).toEqual([
      [
        QUEUES.fileEventsDlq,
        [
          ['rh-m1', 0],
          ['rh-m2', 0],
          ['rh-m3', 0],
        ],
      ],
      [QUEUES.kafkaFailures, [['rh-k1', 0]]],
    ]);
    expect(sqs).toHaveReceivedCommandWith(ReceiveMessageCommand, { QueueUrl: QUEUES.signalsDlq });
    expect(sqs).not.toHaveReceivedCommand(DeleteMessageCommand);
    expect(sqs).not.toHaveReceivedCommand(SendMessageCommand);
  });

  it('shows what a deflated signal message wraps', async () => {
    // Prepare
    const plain = JSON.stringify({
      v: 3,
      origin: { kind: 's3', ref: 's3://b/k@e' },
      signals: [['#2', 'cpu', 1]],
    });
    const deflated = deflateMessage(plain, { kind: 's3', ref: 's3://b/k@e' }, 1, 1);
    sqs.on(ReceiveMessageCommand).resolves({});
    sqs
      .on(ReceiveMessageCommand, { QueueUrl: QUEUES.signalsDlq })
      .resolvesOnce({ Messages: [message('s1', { Body: deflated })] })
      .resolves({});
    // Act
    const messages = await listDlq(targetFactory(clients));
    // Assess
    expect(messages.map((m) => m.body)).toEqual([plain]);
  });

  it('lists at most max messages of a queue', async () => {
    // Prepare
    const ten = Array.from({ length: 10 }, (_, n) => message(`m${n}`));
    sqs.on(ReceiveMessageCommand).resolves({});
    sqs
      .on(ReceiveMessageCommand, { QueueUrl: QUEUES.signalsDlq })
      .resolvesOnce({ Messages: ten })
      .resolves({});
    // Act
    const messages = await listDlq(targetFactory(clients), 3);
    // Assess
    expect(messages.filter((m) => m.queue === 'signalsDlq')).toHaveLength(3);
    // The ones received past max are released too.
    const released = sqs.commandCalls(ChangeMessageVisibilityBatchCommand);
    expect(released.flatMap((c) => c.args[0].input.Entries ?? [])).toHaveLength(10);
  });
});

describe('redriveDlq', () => {
  const clients = clientsFactory();
  const sqs = mockClient(clients.sqs);
  afterEach(() => sqs.reset());

  it('offline, sends each message to the source queue before deleting it from the DLQ, until the DLQ is empty', async () => {
    // Prepare
    const attributes = { traceId: { DataType: 'String', StringValue: 't-1' } };
    sqs
      .on(ReceiveMessageCommand, { QueueUrl: QUEUES.fileEventsDlq })
      .resolvesOnce({ Messages: [message('m1', { MessageAttributes: attributes }), message('m2')] })
      .resolvesOnce({ Messages: [message('m3')] })
      .resolves({ Messages: [] });
    sqs.on(SendMessageCommand).resolves({ MessageId: 'new' });
    sqs.on(DeleteMessageCommand).resolves({});
    // Act
    const results = await redriveDlq(targetFactory(clients), ['fileEventsDlq']);
    // Assess
    expect(results).toEqual([{ dlq: 'fileEventsDlq', to: 'fileEvents', moved: 3 }]);
    expect(history(sqs.calls())).toEqual([
      'ReceiveMessage pulse-file-events-dlq',
      'SendMessage pulse-file-events {"id":"m1"}',
      'DeleteMessage pulse-file-events-dlq rh-m1',
      'SendMessage pulse-file-events {"id":"m2"}',
      'DeleteMessage pulse-file-events-dlq rh-m2',
      'ReceiveMessage pulse-file-events-dlq',
      'SendMessage pulse-file-events {"id":"m3"}',
      'DeleteMessage pulse-file-events-dlq rh-m3',
      'ReceiveMessage pulse-file-events-dlq',
    ]);
    expect(sqs).toHaveReceivedCommandWith(ReceiveMessageCommand, { MessageAttributeNames: ['All'] });
    const sends = sqs.commandCalls(SendMessageCommand).map((c) => c.args[0].input);
    expect(sends[0]).toEqual({
      QueueUrl: QUEUES.fileEvents,
      MessageBody: '{"id":"m1"}',
      MessageAttributes: attributes,
    });
    expect(sends[1]).not.toHaveProperty('MessageAttributes');
    expect(sqs).not.toHaveReceivedCommand(StartMessageMoveTaskCommand);
  });

  it('offline, redrives both DLQs to their own source queues by default', async () => {
    // Prepare
    sqs.on(ReceiveMessageCommand).resolves({});
    sqs
      .on(ReceiveMessageCommand, { QueueUrl: QUEUES.signalsDlq })
      .resolvesOnce({ Messages: [message('s1')] })
      .resolves({});
    sqs.on(SendMessageCommand).resolves({ MessageId: 'new' });
    sqs.on(DeleteMessageCommand).resolves({});
    // Act
    const results = await redriveDlq(targetFactory(clients));
    // Assess
    expect(results).toEqual([
      { dlq: 'fileEventsDlq', to: 'fileEvents', moved: 0 },
      { dlq: 'signalsDlq', to: 'signals', moved: 1 },
    ]);
    expect(sqs).toHaveReceivedCommandTimes(SendMessageCommand, 1);
    expect(sqs).toHaveReceivedCommandWith(SendMessageCommand, {
      QueueUrl: QUEUES.signals,
      MessageBody: '{"id":"s1"}',
    });
    expect(sqs).toHaveReceivedCommandWith(DeleteMessageCommand, {
      QueueUrl: QUEUES.signalsDlq,
      ReceiptHandle: 'rh-s1',
    });
  });

  it('offline, never deletes a message whose send failed', async () => {
    // Prepare
    sqs
      .on(ReceiveMessageCommand, { QueueUrl: QUEUES.fileEventsDlq })
      .resolvesOnce({ Messages: [message('m1'), message('m2')] })
      .resolves({});
    sqs.on(SendMessageCommand).rejects(new Error('QueueDoesNotExist'));
    sqs.on(DeleteMessageCommand).resolves({});
    // Act
    const act = redriveDlq(targetFactory(clients), ['fileEventsDlq']);
    // Assess
    await expect(act).rejects.toThrow(
      `could not send message m1 to ${QUEUES.fileEvents}: Error: QueueDoesNotExist`,
    );
    expect(sqs).toHaveReceivedCommandTimes(SendMessageCommand, 1);
    expect(sqs).not.toHaveReceivedCommand(DeleteMessageCommand);
  });

  it('offline, leaves in the DLQ a message its source queue refuses, says why, and moves the others', async () => {
    // Prepare
    sqs.on(ReceiveMessageCommand).resolves({});
    sqs
      .on(ReceiveMessageCommand, { QueueUrl: QUEUES.signalsDlq })
      .resolvesOnce({ Messages: [message('big'), message('ok')] })
      // The refused message comes back once its visibility runs out: it is not tried again.
      .resolvesOnce({ Messages: [message('big')] })
      .resolves({});
    sqs.on(SendMessageCommand, { MessageBody: '{"id":"big"}' }).rejects(
      Object.assign(new Error('Message must be shorter than 262144 bytes.'), {
        name: 'InvalidParameterValue',
      }),
    );
    sqs.on(SendMessageCommand, { MessageBody: '{"id":"ok"}' }).resolves({ MessageId: 'new' });
    sqs.on(DeleteMessageCommand).resolves({});
    // Act
    const results = await redriveDlq(targetFactory(clients), ['signalsDlq']);
    // Assess
    expect(results).toEqual([
      {
        dlq: 'signalsDlq',
        to: 'signals',
        moved: 1,
        kept: [
          { messageId: 'big', reason: 'InvalidParameterValue: Message must be shorter than 262144 bytes.' },
        ],
      },
    ]);
    expect(sqs).toHaveReceivedCommandTimes(SendMessageCommand, 2);
    expect(sqs).toHaveReceivedCommandTimes(DeleteMessageCommand, 1);
    expect(sqs).toHaveReceivedCommandWith(DeleteMessageCommand, { ReceiptHandle: 'rh-ok' });
  });

  it("on AWS, starts SQS's message move task from the DLQ's ARN and moves nothing itself", async () => {
    // Prepare
    const arn = 'arn:aws:sqs:eu-west-1:123456789012:pulse-file-events-dlq';
    sqs
      .on(GetQueueAttributesCommand, { QueueUrl: QUEUES.fileEventsDlq })
      .resolves({ Attributes: { QueueArn: arn } });
    sqs.on(StartMessageMoveTaskCommand).resolves({ TaskHandle: 'task-1' });
    // Act
    const results = await redriveDlq(targetFactory(clients, 'aws'), ['fileEventsDlq']);
    // Assess
    expect(results).toEqual([{ dlq: 'fileEventsDlq', to: 'fileEvents', moved: 0, taskHandle: 'task-1' }]);
    expect(sqs).toHaveReceivedCommandWith(GetQueueAttributesCommand, {
      QueueUrl: QUEUES.fileEventsDlq,
      AttributeNames: ['QueueArn'],
    });
    expect(sqs).toHaveReceivedCommandTimes(StartMessageMoveTaskCommand, 1);
    expect(sqs).toHaveReceivedCommandWith(StartMessageMoveTaskCommand, { SourceArn: arn });
    expect(sqs).not.toHaveReceivedCommand(ReceiveMessageCommand);
    expect(sqs).not.toHaveReceivedCommand(SendMessageCommand);
    expect(sqs).not.toHaveReceivedCommand(DeleteMessageCommand);
  });

  it('on AWS, fails when the DLQ has no ARN, without starting a task', async () => {
    // Prepare
    sqs.on(GetQueueAttributesCommand).resolves({ Attributes: {} });
    // Act
    const act = redriveDlq(targetFactory(clients, 'aws'), ['signalsDlq']);
    // Assess
    await expect(act).rejects.toThrow(`no QueueArn for ${QUEUES.signalsDlq}`);
    expect(sqs).not.toHaveReceivedCommand(StartMessageMoveTaskCommand);
  });
});

describe('backfill', () => {
  const clients = clientsFactory();
  const s3 = mockClient(clients.s3);
  const sqs = mockClient(clients.sqs);
  const doc = mockClient(clients.doc);
  afterEach(() => {
    s3.reset();
    sqs.reset();
    doc.reset();
  });

  const object = (key: string, etag = `etag-${key}`, size = 100): _Object => ({
    Key: key,
    ETag: `"${etag}"`,
    Size: size,
  });
  const keyOf = (key: string) => ({ pk: `s3://${BUCKET}/${key}`, sk: `etag-${key}` });
  const bodies = (calls: readonly { args: readonly [SendMessageBatchCommand, ...unknown[]] }[]) =>
    calls.flatMap((c) =>
      (c.args[0].input.Entries ?? []).map(
        (e) => JSON.parse(e.MessageBody ?? '{}') as Record<string, unknown>,
      ),
    );

  it('lists every page, skips folder markers, rejects and the sweep’s canary, and enqueues every object the ledger has not seen', async () => {
    // Prepare
    const page1 = Array.from({ length: 12 }, (_, n) => object(`incoming/p1-${n}.csv`));
    const page2 = [
      object('incoming/q.ndjson.gz', 'etag-q', 42),
      object('incoming/r.parquet'),
      object('incoming/s.json'),
    ];
    s3.on(ListObjectsV2Command)
      .resolvesOnce({
        Contents: [...page1, object('incoming/readme.txt'), object('incoming/2024/')],
        NextContinuationToken: 'page-2',
      })
      .resolvesOnce({
        Contents: [
          object('incoming/sheet.xlsx'),
          object('rejects/s3/x.ndjson'),
          object(settings.bucket.canaryKey),
          ...page2,
        ],
      });
    // The ledger holds p1-0 and (on the retry of its unprocessed keys) r.parquet.
    doc
      .on(BatchGetCommand)
      .resolvesOnce({
        Responses: { [LEDGER]: [keyOf('incoming/p1-0.csv')] },
        UnprocessedKeys: {
          [LEDGER]: { Keys: [keyOf('incoming/r.parquet')], ProjectionExpression: 'pk, sk' },
        },
      })
      .resolvesOnce({ Responses: { [LEDGER]: [keyOf('incoming/r.parquet')] }, UnprocessedKeys: {} });
    sqs.on(SendMessageBatchCommand).resolves({ Successful: [], Failed: [] });
    const progress = { listed: vi.fn(), checked: vi.fn() };
    // Act
    const result = await backfill(targetFactory(clients), 'incoming/', progress);
    // Assess
    // Objects of types s3-trigger does not read are enqueued too: it records them as SKIPPED, with the reason.
    expect(result).toEqual({ listed: 19, outOfRange: 0, ignored: 2, known: 2, enqueued: 15 });
    expect(s3).toHaveReceivedCommandTimes(ListObjectsV2Command, 2);
    expect(s3).toHaveReceivedNthCommandWith(ListObjectsV2Command, 1, { Bucket: BUCKET, Prefix: 'incoming/' });
    expect(s3.commandCalls(ListObjectsV2Command)[0]?.args[0].input.ContinuationToken).toBeUndefined();
    expect(s3).toHaveReceivedNthCommandWith(ListObjectsV2Command, 2, {
      Bucket: BUCKET,
      Prefix: 'incoming/',
      ContinuationToken: 'page-2',
    });

    const gets = doc.commandCalls(BatchGetCommand).map((c) => c.args[0].input.RequestItems);
    expect(gets).toHaveLength(2);
    expect(gets[0]?.[LEDGER]?.Keys).toHaveLength(17);
    expect(gets[0]?.[LEDGER]?.Keys).toContainEqual({
      pk: `s3://${BUCKET}/incoming/q.ndjson.gz`,
      sk: 'etag-q',
    });
    expect(gets[1]).toEqual({
      [LEDGER]: { Keys: [keyOf('incoming/r.parquet')], ProjectionExpression: 'pk, sk' },
    });

    const batches = sqs.commandCalls(SendMessageBatchCommand);
    for (const b of batches) {
      expect(b.args[0].input.QueueUrl).toBe(QUEUES.fileEvents);
      expect(b.args[0].input.Entries?.length).toBeLessThanOrEqual(10);
      const ids = (b.args[0].input.Entries ?? []).map((e) => e.Id);
      expect(new Set(ids).size).toBe(ids.length);
    }
    const sent = bodies(batches);
    expect(sent.map((m) => m.key).sort()).toEqual(
      [
        ...page1.slice(1).map((o) => o.Key),
        'incoming/readme.txt',
        'incoming/sheet.xlsx',
        'incoming/q.ndjson.gz',
        'incoming/s.json',
      ].sort(),
    );
    expect(sent).toContainEqual({
      v: 1,
      kind: 'backfill',
      bucket: BUCKET,
      key: 'incoming/q.ndjson.gz',
      etag: 'etag-q',
      size: 42,
    });

    expect(progress.listed.mock.calls).toEqual([[14], [19]]);
    expect(progress.checked).toHaveBeenLastCalledWith(17, 17);
  });

  it('backfills a bucket the pipeline ingests from besides its own: lists it, checks and names it', async () => {
    // Prepare
    s3.on(ListObjectsV2Command).resolves({ Contents: [object('metrics/a.csv')] });
    doc.on(BatchGetCommand).resolves({ Responses: { [LEDGER]: [] } });
    sqs.on(SendMessageBatchCommand).resolves({ Successful: [], Failed: [] });
    // Act
    const result = await backfill(targetFactory(clients), 'metrics/', undefined, { bucket: 'users-data' });
    // Assess
    expect(result.enqueued).toBe(1);
    expect(s3).toHaveReceivedCommandWith(ListObjectsV2Command, { Bucket: 'users-data', Prefix: 'metrics/' });
    const keys = doc.commandCalls(BatchGetCommand)[0]?.args[0].input.RequestItems?.[LEDGER]?.Keys;
    expect(keys?.[0]?.pk).toBe('s3://users-data/metrics/a.csv');
    const entry = sqs.commandCalls(SendMessageBatchCommand)[0]?.args[0].input.Entries?.[0];
    expect(JSON.parse(entry?.MessageBody ?? '{}')).toMatchObject({
      bucket: 'users-data',
      key: 'metrics/a.csv',
    });
  });

  it('escapes in its messages the U+FFFE and U+FFFF an S3 key may hold, which SQS refuses', async () => {
    // Prepare
    s3.on(ListObjectsV2Command).resolves({ Contents: [object('incoming/b\uFFFF\uFFFE.csv')] });
    doc.on(BatchGetCommand).resolves({ Responses: { [LEDGER]: [] } });
    sqs.on(SendMessageBatchCommand).resolves({ Successful: [], Failed: [] });
    // Act
    await backfill(targetFactory(clients), 'incoming/');
    // Assess
    const entry = sqs.commandCalls(SendMessageBatchCommand)[0]?.args[0].input.Entries?.[0];
    expect(entry?.MessageBody).not.toMatch(/[\uFFFE\uFFFF]/);
    expect(JSON.parse(entry?.MessageBody ?? '{}').key).toBe('incoming/b\uFFFF\uFFFE.csv');
  });

  it("stops at once, naming the object, when SQS refuses a backfill message as the sender's fault", async () => {
    // Prepare
    s3.on(ListObjectsV2Command).resolves({ Contents: [object('incoming/a.csv'), object('incoming/b.csv')] });
    doc.on(BatchGetCommand).resolves({ Responses: { [LEDGER]: [] } });
    sqs.on(SendMessageBatchCommand).resolves({
      Failed: [{ Id: '1', SenderFault: true, Code: 'InvalidMessageContents', Message: 'bad character' }],
    });
    // Act / Assess
    await expect(backfill(targetFactory(clients), 'incoming/')).rejects.toThrow(
      'SQS refused the backfill message of incoming/b.csv: InvalidMessageContents: bad character',
    );
    expect(sqs).toHaveReceivedCommandTimes(SendMessageBatchCommand, 1);
  });

  it('resends only the entries a batch reported as failed', async () => {
    // Prepare
    s3.on(ListObjectsV2Command).resolves({
      Contents: [object('incoming/a.csv'), object('incoming/b.csv'), object('incoming/c.csv')],
    });
    doc.on(BatchGetCommand).resolves({ Responses: { [LEDGER]: [] } });
    sqs
      .on(SendMessageBatchCommand)
      .resolvesOnce({
        Successful: [
          { Id: '0', MessageId: 'x', MD5OfMessageBody: 'm' },
          { Id: '2', MessageId: 'z', MD5OfMessageBody: 'm' },
        ],
        Failed: [{ Id: '1', SenderFault: false, Code: 'InternalError' }],
      })
      .resolves({ Successful: [{ Id: '1', MessageId: 'y', MD5OfMessageBody: 'm' }], Failed: [] });
    // Act
    const result = await backfill(targetFactory(clients), 'incoming/');
    // Assess
    expect(result).toEqual({ listed: 3, outOfRange: 0, ignored: 0, known: 0, enqueued: 3 });
    const calls = sqs.commandCalls(SendMessageBatchCommand);
    expect(calls).toHaveLength(2);
    expect(calls[0]?.args[0].input.Entries).toHaveLength(3);
    const resent = calls[1]?.args[0].input.Entries ?? [];
    expect(resent).toHaveLength(1);
    expect(resent[0]?.Id).toBe('1');
    expect(JSON.parse(resent[0]?.MessageBody ?? '{}').key).toBe('incoming/b.csv');
  });

  it('checks the ledger at most 100 keys at a time', async () => {
    // Prepare
    s3.on(ListObjectsV2Command).resolves({
      Contents: Array.from({ length: 150 }, (_, n) => object(`incoming/f${n}.json`)),
    });
    doc.on(BatchGetCommand).callsFake((input: { RequestItems: Record<string, { Keys: unknown[] }> }) => ({
      Responses: { [LEDGER]: input.RequestItems[LEDGER]?.Keys ?? [] },
    }));
    const progress = { listed: vi.fn(), checked: vi.fn() };
    // Act
    const result = await backfill(targetFactory(clients), 'incoming/', progress);
    // Assess
    expect(result).toEqual({ listed: 150, outOfRange: 0, ignored: 0, known: 150, enqueued: 0 });
    const sizes = doc
      .commandCalls(BatchGetCommand)
      .map((c) => c.args[0].input.RequestItems?.[LEDGER]?.Keys?.length);
    expect(sizes).toEqual([100, 50]);
    expect(progress.checked.mock.calls).toEqual([
      [100, 150],
      [150, 150],
    ]);
    expect(sqs).not.toHaveReceivedCommand(SendMessageBatchCommand);
  });
});
