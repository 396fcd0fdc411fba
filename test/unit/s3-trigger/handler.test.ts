import { Readable } from 'node:stream';
import { GetObjectCommand, PutObjectCommand, S3Client } from '@aws-sdk/client-s3';
import { SendMessageBatchCommand, SQSClient } from '@aws-sdk/client-sqs';
import { DynamoDBDocumentClient, UpdateCommand } from '@aws-sdk/lib-dynamodb';
import { sdkStreamMixin } from '@smithy/core/serde';
import { mockClient } from 'aws-sdk-client-mock';
import { afterEach, beforeAll, describe, expect, it, vi } from 'vitest';
import { settings } from '#shared/settings.ts';
import {
  lambdaContextFactory,
  s3EventRecordFactory,
  s3NotificationBody,
  s3TestEventBody,
  sqsEventFactory,
  sqsRecordFactory,
} from '../../helpers/factories.ts';

describe('s3-trigger handler', () => {
  const ddb = mockClient(DynamoDBDocumentClient);
  const s3 = mockClient(S3Client);
  const sqs = mockClient(SQSClient);
  let handler: (e: unknown, c: unknown) => Promise<{ batchItemFailures: { itemIdentifier: string }[] }>;

  beforeAll(async () => {
    vi.stubEnv('SIGNALS_QUEUE_URL', 'https://sqs.us-east-1.amazonaws.com/1/signals');
    vi.stubEnv('LEDGER_TABLE', 'ledger');
    vi.stubEnv('QUARANTINE_BUCKET', 'b');
    vi.stubEnv('AWS_REGION', 'us-east-1');
    vi.stubEnv('POWERTOOLS_METRICS_DISABLED', 'true');
    vi.stubEnv('POWERTOOLS_LOG_LEVEL', 'SILENT');
    handler = (await import('../../../functions/s3-trigger/handler.ts')).handler as never;
  });
  afterEach(() => {
    ddb.reset();
    s3.reset();
    sqs.reset();
  });

  it('acknowledges ingested files and the S3 test event, and fails only unreadable or throttled messages', async () => {
    // Prepare
    ddb.on(UpdateCommand).resolves({ Attributes: { attempts: 1 } });
    sqs.on(SendMessageBatchCommand).resolves({ Failed: [] });
    s3.on(PutObjectCommand).resolves({});
    s3.on(GetObjectCommand, { Key: 'incoming/ok.csv' }).resolves({
      Body: sdkStreamMixin(Readable.from([Buffer.from('name,value,timestamp\ncpu,1,0\n')])),
    });
    s3.on(GetObjectCommand, { Key: 'incoming/slow.csv' }).rejects(
      Object.assign(new Error('Please reduce your request rate.'), {
        name: 'SlowDown',
        $metadata: { httpStatusCode: 503 },
      }),
    );
    const ok = sqsRecordFactory(
      s3NotificationBody([
        s3EventRecordFactory({ bucket: 'b', key: 'incoming/ok.csv', eTag: 'e1', size: 30 }),
      ]),
    );
    const slow = sqsRecordFactory(
      s3NotificationBody([
        s3EventRecordFactory({ bucket: 'b', key: 'incoming/slow.csv', eTag: 'e2', size: 30 }),
      ]),
    );
    const testEvent = sqsRecordFactory(s3TestEventBody('b'));
    const garbage = sqsRecordFactory('not an event');
    // Act
    const out = await handler(sqsEventFactory([ok, slow, testEvent, garbage]), lambdaContextFactory());
    // Assess
    expect(out.batchItemFailures).toEqual([
      { itemIdentifier: slow.messageId },
      { itemIdentifier: garbage.messageId },
    ]);
    expect(sqs).toHaveReceivedCommandTimes(SendMessageBatchCommand, 1);
  });

  it('records the notification canary on its ledger item and ingests nothing of it', async () => {
    // Prepare
    ddb.on(UpdateCommand).resolves({});
    const canary = sqsRecordFactory(
      s3NotificationBody([
        s3EventRecordFactory({
          bucket: 'b',
          key: settings.bucket.canaryKey,
          eTag: 'e9',
          size: 40,
          versionId: 'v9',
          eventTime: '2024-06-01T12:00:00.000Z',
        }),
      ]),
    );
    // Act
    const out = await handler(sqsEventFactory([canary]), lambdaContextFactory());
    // Assess
    expect(out.batchItemFailures).toEqual([]);
    expect(ddb).toHaveReceivedCommandTimes(UpdateCommand, 1);
    const update = ddb.commandCalls(UpdateCommand)[0]?.args[0].input;
    expect(update?.Key).toEqual({ pk: `canary#s3://b/${settings.bucket.canaryKey}`, sk: 'canary' });
    expect(update?.ExpressionAttributeValues).toMatchObject({
      ':at': expect.any(String),
      ':version': 'v9',
      ':eventTime': '2024-06-01T12:00:00.000Z',
    });
    expect(s3).toHaveReceivedCommandTimes(GetObjectCommand, 0);
    expect(sqs).toHaveReceivedCommandTimes(SendMessageBatchCommand, 0);
  });
});
