import { createHash } from 'node:crypto';
import { DescribeTableCommand, DescribeTimeToLiveCommand } from '@aws-sdk/client-dynamodb';
import {
  CopyObjectCommand,
  CreateBucketCommand,
  CreateMultipartUploadCommand,
  DeleteBucketCommand,
  DeleteObjectCommand,
  DeleteObjectsCommand,
  GetBucketNotificationConfigurationCommand,
  GetBucketVersioningCommand,
  GetObjectCommand,
  HeadObjectCommand,
  ListObjectVersionsCommand,
  PutBucketVersioningCommand,
  PutObjectCommand,
  PutObjectTaggingCommand,
} from '@aws-sdk/client-s3';
import {
  CreateQueueCommand,
  GetQueueAttributesCommand,
  type Message,
  ReceiveMessageCommand,
  SendMessageBatchCommand,
  SendMessageCommand,
} from '@aws-sdk/client-sqs';
import { Upload } from '@aws-sdk/lib-storage';
import type { Context, SQSBatchResponse, SQSEvent, SQSRecord } from 'aws-lambda';
import { afterAll, afterEach, beforeAll, describe, expect, inject, it } from 'vitest';
import { settings, visibilityTimeoutFor } from '#shared/settings.ts';
import { parseFileEvents } from '../../functions/s3-trigger/events.ts';
import {
  type SqsEventSource,
  type SqsEventSourceLogger,
  startSqsEventSource,
} from '../../local/event-sources/sqs.ts';
import { destroyClients, makeClients } from '../../local/runtime/clients.ts';
import { resourceNames, uniquePrefix } from '../../local/runtime/names.ts';
import { createResources, deleteResources, type LocalResources } from '../../local/runtime/resources.ts';
import { waitUntil } from '../helpers/wait.ts';

/**
 * The offline building blocks against the moto server of the integration run: resources made from
 * shared/settings.ts, S3 → SQS notifications, and the emulated SQS event source mapping. Each file
 * uses its own resource prefix, so files can run in parallel against one server.
 */

const endpoint = inject('motoEndpoint');
const clients = makeClients(endpoint);
const prefix = uniquePrefix('emu');
const quiet: SqsEventSourceLogger = { debug() {}, info() {}, warn() {}, error() {} };

/** Receives until a poll comes back empty; leaves the messages invisible for a minute. */
async function drain(queueUrl: string): Promise<Message[]> {
  const all: Message[] = [];
  for (;;) {
    const out = await clients.sqs.send(
      new ReceiveMessageCommand({
        QueueUrl: queueUrl,
        MaxNumberOfMessages: 10,
        WaitTimeSeconds: 1,
        VisibilityTimeout: 60,
        MessageSystemAttributeNames: ['All'],
      }),
    );
    if (!out.Messages?.length) return all;
    all.push(...out.Messages);
  }
}

async function queueAttributes(queueUrl: string): Promise<Record<string, string>> {
  const out = await clients.sqs.send(
    new GetQueueAttributesCommand({ QueueUrl: queueUrl, AttributeNames: ['All'] }),
  );
  return out.Attributes ?? {};
}

async function queueDepth(queueUrl: string): Promise<number> {
  const a = await queueAttributes(queueUrl);
  return Number(a.ApproximateNumberOfMessages) + Number(a.ApproximateNumberOfMessagesNotVisible);
}

const isTestEvent = (m: Message) =>
  (JSON.parse(m.Body ?? '{}') as { Event?: string }).Event === 's3:TestEvent';

afterAll(() => {
  destroyClients(clients);
});

describe('createResources', () => {
  const names = resourceNames(`${prefix}r`);
  let resources: LocalResources;

  beforeAll(async () => {
    resources = await createResources(clients, names);
  });
  afterAll(async () => {
    await deleteResources(clients, names);
  });

  it('creates each consumed queue with a RedrivePolicy to its DLQ and the settings of shared/settings.ts', async () => {
    // Prepare
    const { fileEvents, fileEventsDlq, signals, signalsDlq } = resources.queues;
    // Act
    const [fe, sig, feDlq, sigDlq] = await Promise.all(
      [fileEvents, signals, fileEventsDlq, signalsDlq].map((q) => queueAttributes(q.url)),
    );
    // Assess
    expect(JSON.parse(fe?.RedrivePolicy ?? '{}')).toEqual({
      deadLetterTargetArn: fileEventsDlq.arn,
      maxReceiveCount: settings.fileEvents.maxReceiveCount,
    });
    expect(JSON.parse(sig?.RedrivePolicy ?? '{}')).toEqual({
      deadLetterTargetArn: signalsDlq.arn,
      maxReceiveCount: settings.signals.maxReceiveCount,
    });
    expect(fe?.VisibilityTimeout).toBe(
      String(visibilityTimeoutFor(settings.functions.s3Trigger.timeoutSeconds)),
    );
    expect(sig?.VisibilityTimeout).toBe(
      String(visibilityTimeoutFor(settings.functions.scorer.timeoutSeconds)),
    );
    expect(sig?.MaximumMessageSize).toBe(String(settings.signals.queueMaximumMessageBytes));
    expect(fe?.MessageRetentionPeriod).toBe(String(settings.fileEvents.retentionDays * 86_400));
    expect(feDlq?.MessageRetentionPeriod).toBe(String(settings.dlqRetentionDays * 86_400));
    expect(sigDlq?.RedrivePolicy).toBeUndefined();
    expect(fileEvents).toMatchObject({
      name: names.fileEventsQueue,
      arn: expect.stringMatching(/^arn:aws:sqs:/),
    });
  });

  it('enables versioning and notifies the file-events queue of every object created under incoming/', async () => {
    // Act
    const versioning = await clients.s3.send(new GetBucketVersioningCommand({ Bucket: names.bucket }));
    const notification = await clients.s3.send(
      new GetBucketNotificationConfigurationCommand({ Bucket: names.bucket }),
    );
    // Assess
    expect(versioning.Status).toBe('Enabled');
    const configs = notification.QueueConfigurations ?? [];
    expect(configs).toHaveLength(1);
    expect(configs[0]?.QueueArn).toBe(resources.queues.fileEvents.arn);
    expect(configs[0]?.Events).toEqual(['s3:ObjectCreated:*']);
    expect((configs[0]?.Filter?.Key?.FilterRules ?? []).map((r) => [r.Name?.toLowerCase(), r.Value])).toEqual(
      [['prefix', settings.bucket.incomingPrefix]],
    );
  });

  it('creates the ledger table with its byStatus index and the scores table with TTL on expiresAt', async () => {
    // Act
    const { Table: ledger } = await clients.ddb.send(
      new DescribeTableCommand({ TableName: names.ledgerTable }),
    );
    const { Table: scores } = await clients.ddb.send(
      new DescribeTableCommand({ TableName: names.scoresTable }),
    );
    const ttl = await clients.ddb.send(new DescribeTimeToLiveCommand({ TableName: names.scoresTable }));
    // Assess
    expect(ledger?.KeySchema).toEqual([
      { AttributeName: 'pk', KeyType: 'HASH' },
      { AttributeName: 'sk', KeyType: 'RANGE' },
    ]);
    expect(ledger?.BillingModeSummary?.BillingMode).toBe('PAY_PER_REQUEST');
    expect(ledger?.GlobalSecondaryIndexes).toEqual([
      expect.objectContaining({
        IndexName: 'byStatus',
        KeySchema: [
          { AttributeName: 'status', KeyType: 'HASH' },
          { AttributeName: 'updatedAt', KeyType: 'RANGE' },
        ],
        Projection: { ProjectionType: 'ALL' },
      }),
    ]);
    expect(scores?.KeySchema).toEqual([{ AttributeName: 'pk', KeyType: 'HASH' }]);
    expect(scores?.BillingModeSummary?.BillingMode).toBe('PAY_PER_REQUEST');
    expect(ttl.TimeToLiveDescription).toMatchObject({
      TimeToLiveStatus: 'ENABLED',
      AttributeName: 'expiresAt',
    });
  });

  it('is idempotent: a second run converges attributes and does not put the notification again', async () => {
    // Prepare
    const before = (await drain(resources.queues.fileEvents.url)).filter(isTestEvent);
    // Act
    const again = await createResources(clients, names, { visibilityTimeoutSeconds: { fileEvents: 7 } });
    // Assess
    expect(before).toHaveLength(1);
    expect(again.queues).toEqual(resources.queues);
    expect((await queueAttributes(again.queues.fileEvents.url)).VisibilityTimeout).toBe('7');
    expect(await drain(again.queues.fileEvents.url)).toEqual([]);
  });
});

describe('S3 notifications to the file-events queue', () => {
  const names = resourceNames(`${prefix}n`);
  let resources: LocalResources;

  beforeAll(async () => {
    resources = await createResources(clients, names);
    // moto, like S3, sends an s3:TestEvent when the configuration is put.
    const first = await drain(resources.queues.fileEvents.url);
    expect(first.map((m) => JSON.parse(m.Body ?? '{}'))).toEqual([
      expect.objectContaining({ Service: 'Amazon S3', Event: 's3:TestEvent', Bucket: names.bucket }),
    ]);
  });
  afterAll(async () => {
    await deleteResources(clients, names);
  });

  it('delivers ObjectCreated for incoming/a.csv and incoming/A.TXT, and nothing for other/a.csv', async () => {
    // Act
    const put = await clients.s3.send(
      new PutObjectCommand({ Bucket: names.bucket, Key: 'incoming/a.csv', Body: 'x,y\n1,2\n' }),
    );
    await clients.s3.send(new PutObjectCommand({ Bucket: names.bucket, Key: 'incoming/A.TXT', Body: 'x' }));
    await clients.s3.send(new PutObjectCommand({ Bucket: names.bucket, Key: 'other/a.csv', Body: 'x' }));
    const messages = await drain(resources.queues.fileEvents.url);
    // Assess
    const records = messages.flatMap((m) => JSON.parse(m.Body ?? '{}').Records ?? []);
    expect(
      records.map((r: { s3: { object: { key: string } } }) => decodeURIComponent(r.s3.object.key)).sort(),
    ).toEqual(['incoming/A.TXT', 'incoming/a.csv']);
    const record = records.find(
      (r: { s3: { object: { key: string } } }) => decodeURIComponent(r.s3.object.key) === 'incoming/a.csv',
    );
    expect(record).toMatchObject({
      eventSource: 'aws:s3',
      eventName: 'ObjectCreated:Put',
      awsRegion: 'us-east-1',
      s3: { bucket: { name: names.bucket, arn: `arn:aws:s3:::${names.bucket}` }, object: { size: 8 } },
    });
    expect(record.s3.object.eTag).toBe(put.ETag?.replace(/"/g, ''));
  });

  it("URL-encodes the key as S3 does, and the s3-trigger's parser reads the notification back", async () => {
    // Prepare
    const key = 'incoming/a b+c%d é.csv.gz';
    // Act
    const put = await clients.s3.send(new PutObjectCommand({ Bucket: names.bucket, Key: key, Body: 'data' }));
    const [message] = await drain(resources.queues.fileEvents.url);
    // Assess
    const raw = JSON.parse(message?.Body ?? '{}').Records[0].s3.object.key as string;
    expect(raw).not.toContain(' ');
    expect(raw).toContain('%2Bc%25d+%C3%A9');
    expect(parseFileEvents(message?.Body ?? '')).toEqual([
      expect.objectContaining({ bucket: names.bucket, key, etag: put.ETag?.replace(/"/g, ''), size: 4 }),
    ]);
  });
});

describe("S3's limit on key length, enforced offline as on AWS", () => {
  const bucket = `${prefix}-keys`;
  const bytes = (key: string) => Buffer.byteLength(key, 'utf8');
  /** What the call failed with: S3's error code and HTTP status (the SDK names an error by its code). */
  const refusal = async (call: Promise<unknown>) =>
    call.then(
      () => 'accepted',
      (err: { name?: string; $metadata?: { httpStatusCode?: number } }) =>
        `${err.name} ${err.$metadata?.httpStatusCode}`,
    );

  beforeAll(async () => {
    await clients.s3.send(new CreateBucketCommand({ Bucket: bucket }));
  });
  afterAll(async () => {
    await clients.s3.send(new DeleteObjectCommand({ Bucket: bucket, Key: 'k'.repeat(1024) }));
    await clients.s3.send(new DeleteObjectCommand({ Bucket: bucket, Key: 'short' }));
    await clients.s3.send(new DeleteBucketCommand({ Bucket: bucket }));
  });

  it('accepts a key of 1,024 bytes and refuses one byte more with 400 KeyTooLongError, on every request that names it', async () => {
    // Prepare: the longest key S3 accepts, one byte more, and a key of fewer characters but more bytes.
    const longest = 'k'.repeat(1024);
    const over = 'k'.repeat(1025);
    const wide = '€'.repeat(342);
    expect([bytes(longest), bytes(over), wide.length, bytes(wide)]).toEqual([1024, 1025, 342, 1026]);
    await clients.s3.send(new PutObjectCommand({ Bucket: bucket, Key: 'short', Body: 'x' }));

    // Act
    const accepted = await refusal(
      clients.s3.send(new PutObjectCommand({ Bucket: bucket, Key: longest, Body: 'x' })),
    );
    const refused = {
      putObject: await refusal(
        clients.s3.send(new PutObjectCommand({ Bucket: bucket, Key: over, Body: 'x' })),
      ),
      putObjectWide: await refusal(
        clients.s3.send(new PutObjectCommand({ Bucket: bucket, Key: wide, Body: 'x' })),
      ),
      createMultipartUpload: await refusal(
        clients.s3.send(new CreateMultipartUploadCommand({ Bucket: bucket, Key: over })),
      ),
      upload: await refusal(
        new Upload({ client: clients.s3, params: { Bucket: bucket, Key: over, Body: 'x' } }).done(),
      ),
      copyObject: await refusal(
        clients.s3.send(new CopyObjectCommand({ Bucket: bucket, Key: over, CopySource: `${bucket}/short` })),
      ),
      getObject: await refusal(clients.s3.send(new GetObjectCommand({ Bucket: bucket, Key: over }))),
      deleteObject: await refusal(clients.s3.send(new DeleteObjectCommand({ Bucket: bucket, Key: over }))),
      putObjectTagging: await refusal(
        clients.s3.send(
          new PutObjectTaggingCommand({
            Bucket: bucket,
            Key: over,
            Tagging: { TagSet: [{ Key: 'a', Value: 'b' }] },
          }),
        ),
      ),
    };
    // HEAD has no body: the SDK sees only the status.
    const head = await refusal(clients.s3.send(new HeadObjectCommand({ Bucket: bucket, Key: over })));

    // Assess
    expect(accepted).toBe('accepted');
    expect(refused).toEqual({
      putObject: 'KeyTooLongError 400',
      putObjectWide: 'KeyTooLongError 400',
      createMultipartUpload: 'KeyTooLongError 400',
      upload: 'KeyTooLongError 400',
      copyObject: 'KeyTooLongError 400',
      getObject: 'KeyTooLongError 400',
      deleteObject: 'KeyTooLongError 400',
      putObjectTagging: 'KeyTooLongError 400',
    });
    expect(head).toMatch(/ 400$/);
  });
});

describe('S3 reads of a named version under an ETag, as the s3-trigger makes them', () => {
  const bucket = `${prefix}-versions`;

  beforeAll(async () => {
    await clients.s3.send(new CreateBucketCommand({ Bucket: bucket }));
    await clients.s3.send(
      new PutBucketVersioningCommand({ Bucket: bucket, VersioningConfiguration: { Status: 'Enabled' } }),
    );
  });
  afterAll(async () => {
    const out = await clients.s3.send(new ListObjectVersionsCommand({ Bucket: bucket }));
    const versions = (out.Versions ?? []).map((v) => ({ Key: v.Key, VersionId: v.VersionId }));
    if (versions.length) {
      await clients.s3.send(new DeleteObjectsCommand({ Bucket: bucket, Delete: { Objects: versions } }));
    }
    await clients.s3.send(new DeleteBucketCommand({ Bucket: bucket }));
  });

  it("serves a version under its own ETag and answers 412 PreconditionFailed under another version's", async () => {
    // Prepare: two versions of one key.
    const v1 = await clients.s3.send(new PutObjectCommand({ Bucket: bucket, Key: 'a.csv', Body: 'one' }));
    const v2 = await clients.s3.send(new PutObjectCommand({ Bucket: bucket, Key: 'a.csv', Body: 'two' }));
    const read = (VersionId: string | undefined, IfMatch: string | undefined) =>
      clients.s3.send(new GetObjectCommand({ Bucket: bucket, Key: 'a.csv', VersionId, IfMatch })).then(
        async (out) => String(await out.Body?.transformToString()),
        (err: { name?: string; $metadata?: { httpStatusCode?: number } }) =>
          `${err.name} ${err.$metadata?.httpStatusCode}`,
      );
    // Act
    const own = await read(v1.VersionId, v1.ETag);
    const other = await read(v1.VersionId, v2.ETag);
    // Assess
    expect(own).toBe('one');
    expect(other).toBe('PreconditionFailed 412');
  });
});

describe('SQS event source emulation', () => {
  const sources: SqsEventSource[] = [];
  let queueCount = 0;

  /** A queue of this test's own with a 1 s visibility timeout and a DLQ after maxReceiveCount. */
  async function testQueue(maxReceiveCount = settings.fileEvents.maxReceiveCount) {
    const name = `${prefix}-es-${++queueCount}`;
    const dlq = await clients.sqs.send(new CreateQueueCommand({ QueueName: `${name}-dlq` }));
    const dlqUrl = dlq.QueueUrl ?? '';
    const dlqArn = (await queueAttributes(dlqUrl)).QueueArn ?? '';
    const queue = await clients.sqs.send(
      new CreateQueueCommand({
        QueueName: name,
        Attributes: {
          VisibilityTimeout: '1',
          RedrivePolicy: JSON.stringify({ deadLetterTargetArn: dlqArn, maxReceiveCount }),
        },
      }),
    );
    const url = queue.QueueUrl ?? '';
    return { url, arn: (await queueAttributes(url)).QueueArn ?? '', dlqUrl };
  }

  async function send(url: string, bodies: string[]) {
    for (let i = 0; i < bodies.length; i += 10) {
      await clients.sqs.send(
        new SendMessageBatchCommand({
          QueueUrl: url,
          Entries: bodies.slice(i, i + 10).map((b, j) => ({ Id: `e${j}`, MessageBody: b })),
        }),
      );
    }
  }

  /** A handler that records what it was given and answers with `respond`. */
  function recorder(respond: (record: SQSRecord) => 'ok' | 'fail' = () => 'ok') {
    const seen: { body: string; receiveCount: number; at: number; batch: number }[] = [];
    const events: SQSEvent[] = [];
    const contexts: Context[] = [];
    const handler = async (event: SQSEvent, context: Context): Promise<SQSBatchResponse> => {
      events.push(event);
      contexts.push(context);
      const failures = [];
      for (const record of event.Records) {
        seen.push({
          body: record.body,
          receiveCount: Number(record.attributes.ApproximateReceiveCount),
          at: Date.now(),
          batch: events.length,
        });
        if (respond(record) === 'fail') failures.push({ itemIdentifier: record.messageId });
      }
      return { batchItemFailures: failures };
    };
    return { handler, seen, events, contexts };
  }

  afterEach(async () => {
    await Promise.all(sources.splice(0).map((s) => s.stop()));
  });

  it('invokes the handler with records in the AWS SQSEvent shape and a Lambda context', async () => {
    // Prepare
    const q = await testQueue();
    const r = recorder();
    await clients.sqs.send(
      new SendMessageCommand({
        QueueUrl: q.url,
        MessageBody: '{"hello":"world"}',
        MessageAttributes: { kind: { DataType: 'String', StringValue: 'greeting' } },
      }),
    );
    // Act
    const source = startSqsEventSource({
      sqs: clients.sqs,
      queueUrl: q.url,
      queueArn: q.arn,
      batchSize: 10,
      handler: r.handler,
      functionTimeoutSeconds: 30,
      functionName: 'shape-test',
      logger: quiet,
    });
    sources.push(source);
    await waitUntil('one invocation', () => r.events.length === 1);
    // Assess
    const record = r.events[0]?.Records[0];
    expect(Object.keys(record ?? {})).toEqual([
      'messageId',
      'receiptHandle',
      'body',
      'attributes',
      'messageAttributes',
      'md5OfBody',
      'md5OfMessageAttributes',
      'eventSource',
      'eventSourceARN',
      'awsRegion',
    ]);
    expect(record).toMatchObject({
      body: '{"hello":"world"}',
      md5OfBody: createHash('md5').update('{"hello":"world"}').digest('hex'),
      messageAttributes: {
        kind: { stringValue: 'greeting', stringListValues: [], binaryListValues: [], dataType: 'String' },
      },
      eventSource: 'aws:sqs',
      eventSourceARN: q.arn,
      awsRegion: 'us-east-1',
    });
    expect(record?.attributes).toEqual({
      ApproximateReceiveCount: '1',
      SentTimestamp: expect.stringMatching(/^\d{13}$/),
      SenderId: expect.any(String),
      ApproximateFirstReceiveTimestamp: expect.stringMatching(/^\d{13}$/),
    });
    const context = r.contexts[0];
    expect(context).toMatchObject({
      functionName: 'shape-test',
      functionVersion: '$LATEST',
      invokedFunctionArn: 'arn:aws:lambda:us-east-1:123456789012:function:shape-test',
      awsRequestId: expect.stringMatching(/^[0-9a-f-]{36}$/),
    });
    expect(context?.getRemainingTimeInMillis()).toBeGreaterThan(25_000);
    expect(context?.getRemainingTimeInMillis()).toBeLessThanOrEqual(30_000);
  });

  it('deletes the messages the handler handled, in batches of at most batchSize', async () => {
    // Prepare
    const q = await testQueue();
    const bodies = Array.from({ length: 7 }, (_, i) => `m${i}`);
    await send(q.url, bodies);
    const r = recorder();
    // Act
    const source = startSqsEventSource({
      sqs: clients.sqs,
      queueUrl: q.url,
      queueArn: q.arn,
      batchSize: 3,
      handler: r.handler,
      logger: quiet,
    });
    sources.push(source);
    await waitUntil('all 7 handled', () => r.seen.length >= 7);
    await source.idle();
    // Assess
    expect(r.seen.map((s) => s.body).sort()).toEqual(bodies);
    expect(Math.max(...r.events.map((e) => e.Records.length))).toBeLessThanOrEqual(3);
    expect(source.stats).toMatchObject({ deleted: 7, itemFailures: 0, failedInvocations: 0 });
    expect(await queueDepth(q.url)).toBe(0);
  });

  it('delivers a batch item failure again after the visibility timeout, and deletes the rest', async () => {
    // Prepare
    const q = await testQueue();
    await send(q.url, ['a', 'b', 'c']);
    const r = recorder((rec) =>
      rec.body === 'b' && rec.attributes.ApproximateReceiveCount === '1' ? 'fail' : 'ok',
    );
    // Act
    sources.push(
      startSqsEventSource({
        sqs: clients.sqs,
        queueUrl: q.url,
        queueArn: q.arn,
        batchSize: 10,
        handler: r.handler,
        logger: quiet,
      }),
    );
    await waitUntil('b delivered twice', () => r.seen.filter((s) => s.body === 'b').length === 2, {
      timeoutMs: 15_000,
    });
    // Assess
    const b = r.seen.filter((s) => s.body === 'b');
    expect(b.map((s) => s.receiveCount)).toEqual([1, 2]);
    expect((b[1]?.at ?? 0) - (b[0]?.at ?? 0)).toBeGreaterThanOrEqual(900);
    await waitUntil('queue empty', async () => (await queueDepth(q.url)) === 0);
    expect(r.seen.filter((s) => s.body !== 'b').map((s) => [s.body, s.receiveCount])).toEqual([
      ['a', 1],
      ['c', 1],
    ]);
  });

  it('deletes nothing when the handler throws: the whole batch comes back', async () => {
    // Prepare
    const q = await testQueue();
    await send(q.url, ['x', 'y']);
    let calls = 0;
    const deliveries: string[][] = [];
    const handler = async (event: SQSEvent) => {
      deliveries.push(
        event.Records.map((rec) => `${rec.body}@${rec.attributes.ApproximateReceiveCount}`).sort(),
      );
      if (++calls === 1) throw new Error('boom');
      return { batchItemFailures: [] };
    };
    // Act
    const source = startSqsEventSource({
      sqs: clients.sqs,
      queueUrl: q.url,
      queueArn: q.arn,
      batchSize: 10,
      handler,
      logger: quiet,
    });
    sources.push(source);
    await waitUntil(
      'both redelivered and handled',
      () => deliveries.flat().filter((d) => d.endsWith('@2')).length === 2,
      {
        timeoutMs: 15_000,
      },
    );
    await waitUntil('queue empty', async () => (await queueDepth(q.url)) === 0);
    // Assess
    expect(deliveries.flat().sort()).toEqual(['x@1', 'x@2', 'y@1', 'y@2']);
    expect(source.stats.failedInvocations).toBe(1);
  });

  it('moves a message that always fails to the DLQ after maxReceiveCount deliveries', async () => {
    // Prepare
    const maxReceiveCount = settings.fileEvents.maxReceiveCount;
    const q = await testQueue(maxReceiveCount);
    await send(q.url, ['poison', 'fine']);
    const r = recorder((rec) => (rec.body === 'poison' ? 'fail' : 'ok'));
    // Act
    sources.push(
      startSqsEventSource({
        sqs: clients.sqs,
        queueUrl: q.url,
        queueArn: q.arn,
        batchSize: 10,
        handler: r.handler,
        logger: quiet,
      }),
    );
    const dead = await waitUntil(
      'the poison message in the DLQ',
      async () => {
        const out = await clients.sqs.send(
          new ReceiveMessageCommand({ QueueUrl: q.dlqUrl, WaitTimeSeconds: 1 }),
        );
        return out.Messages?.[0];
      },
      { timeoutMs: 30_000 },
    );
    // Assess
    expect(dead.Body).toBe('poison');
    const poison = r.seen.filter((s) => s.body === 'poison');
    expect(poison.map((s) => s.receiveCount)).toEqual(
      Array.from({ length: maxReceiveCount }, (_, i) => i + 1),
    );
    expect(r.seen.filter((s) => s.body === 'fine')).toHaveLength(1);
    expect(await queueDepth(q.url)).toBe(0);
  });

  it('stop() waits for the running invocation, deletes its messages, and polls no more', async () => {
    // Prepare
    const q = await testQueue();
    await send(q.url, ['slow']);
    let release: () => void = () => {};
    const gate = new Promise<void>((resolve) => {
      release = resolve;
    });
    let started = false;
    const handler = async () => {
      started = true;
      await gate;
    };
    const source = startSqsEventSource({
      sqs: clients.sqs,
      queueUrl: q.url,
      queueArn: q.arn,
      batchSize: 1,
      handler,
      logger: quiet,
    });
    await waitUntil('the invocation to start', () => started);
    // Act
    const stopping = source.stop();
    setTimeout(release, 300);
    await stopping;
    const polls = source.stats.polls;
    await send(q.url, ['after stop']);
    await new Promise((resolve) => setTimeout(resolve, 1500));
    // Assess
    expect(source.stats).toMatchObject({ invocations: 1, deleted: 1, polls });
    expect(Number((await queueAttributes(q.url)).ApproximateNumberOfMessages)).toBe(1);
  });
});
