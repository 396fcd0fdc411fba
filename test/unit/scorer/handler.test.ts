import { PutObjectCommand, S3Client } from '@aws-sdk/client-s3';
import {
  BatchGetCommand,
  DynamoDBDocumentClient,
  GetCommand,
  TransactWriteCommand,
} from '@aws-sdk/lib-dynamodb';
import { mockClient } from 'aws-sdk-client-mock';
import { afterEach, beforeAll, describe, expect, it, vi } from 'vitest';
import { lambdaContextFactory, sqsEventFactory, sqsRecordFactory } from '../../helpers/factories.ts';

const signal = (id: string, name: string) => ({
  id,
  name,
  value: 1,
  source: 'src',
  timestamp: '2024-01-01T00:00:00.000Z',
  origin: { kind: 's3', ref: id },
});
const message = (...signals: unknown[]) =>
  JSON.stringify({ v: 1, origin: { kind: 's3', ref: 'o' }, signals });

describe('scorer handler', () => {
  const ddb = mockClient(DynamoDBDocumentClient);
  const s3 = mockClient(S3Client);
  let handler: (e: unknown, c: unknown) => Promise<{ batchItemFailures: { itemIdentifier: string }[] }>;

  beforeAll(async () => {
    vi.stubEnv('SCORES_TABLE', 'scores');
    vi.stubEnv('QUARANTINE_BUCKET', 'qb');
    vi.stubEnv('AWS_REGION', 'us-east-1');
    vi.stubEnv('POWERTOOLS_METRICS_DISABLED', 'true');
    vi.stubEnv('POWERTOOLS_LOG_LEVEL', 'SILENT');
    handler = (await import('../../../functions/scorer/handler.ts')).handler as never;
  });
  afterEach(() => {
    ddb.reset();
    s3.reset();
  });

  it('reports only the message whose scoring failed transiently, so SQS redelivers just that one', async () => {
    // Prepare
    ddb.on(BatchGetCommand).resolves({ Responses: { scores: [] } });
    ddb.on(GetCommand).resolves({});
    ddb
      .on(TransactWriteCommand)
      .callsFake((input: { TransactItems: { Put: { Item: { name?: string } } }[] }) => {
        if (input.TransactItems[0]?.Put.Item.name === 'throttled') {
          throw Object.assign(new Error('Rate exceeded'), {
            name: 'ThrottlingException',
            $metadata: { httpStatusCode: 400 },
          });
        }
        return {};
      });
    const good = sqsRecordFactory(message(signal('a', 'fine')));
    const bad = sqsRecordFactory(message(signal('b', 'throttled')));
    // Act
    const out = await handler(sqsEventFactory([good, bad]), lambdaContextFactory());
    // Assess
    expect(out.batchItemFailures).toEqual([{ itemIdentifier: bad.messageId }]);
  });

  it('scores the batch together: one transaction for a series spread over several messages', async () => {
    // Prepare
    ddb.on(BatchGetCommand).resolves({ Responses: { scores: [] } });
    ddb.on(GetCommand).resolves({});
    ddb.on(TransactWriteCommand).resolves({});
    const records = [
      sqsRecordFactory(message(signal('a', 'cpu'), signal('b', 'cpu'))),
      sqsRecordFactory(message(signal('c', 'cpu'))),
    ];
    // Act
    const out = await handler(sqsEventFactory(records), lambdaContextFactory());
    // Assess
    expect(out.batchItemFailures).toEqual([]);
    const calls = ddb.commandCalls(TransactWriteCommand);
    expect(calls).toHaveLength(1);
    expect(calls[0]?.args[0].input.TransactItems).toHaveLength(4);
  });

  it('acknowledges a message of invalid signals after quarantining them', async () => {
    s3.on(PutObjectCommand).resolves({});
    const record = sqsRecordFactory('{"not":"a batch"}');
    const out = await handler(sqsEventFactory([record]), lambdaContextFactory());
    expect(out.batchItemFailures).toEqual([]);
    expect(s3).toHaveReceivedCommandWith(PutObjectCommand, { Bucket: 'qb' });
  });
});
