import { PutObjectCommand, S3Client } from '@aws-sdk/client-s3';
import { DynamoDBDocumentClient, TransactWriteCommand } from '@aws-sdk/lib-dynamodb';
import { mockClient } from 'aws-sdk-client-mock';
import { afterEach, beforeAll, beforeEach, describe, expect, it, vi } from 'vitest';
import { lambdaContextFactory, sqsEventFactory, sqsRecordFactory } from '../../helpers/factories.ts';
import { FakeAws } from './fake-aws.ts';

const signal = (ref: string, name: string) => ({
  id: ref,
  name,
  value: 1,
  source: 'src',
  timestamp: '2024-01-01T00:00:00.000Z',
  origin: { kind: 'kafka', ref },
});
const message = (...signals: unknown[]) =>
  JSON.stringify({ v: 3, origin: { kind: 'kafka', ref: 'kafka:t:0' }, signals });

describe('scorer handler', () => {
  const ddb = mockClient(DynamoDBDocumentClient);
  const s3 = mockClient(S3Client);
  let aws: FakeAws;
  let handler: (e: unknown, c: unknown) => Promise<{ batchItemFailures: { itemIdentifier: string }[] }>;

  beforeAll(async () => {
    vi.stubEnv('SCORES_TABLE', 'scores');
    vi.stubEnv('SCORES_BUCKET', 'sb');
    vi.stubEnv('ANOMALIES_TABLE', 'anomalies');
    vi.stubEnv('QUARANTINE_BUCKET', 'qb');
    vi.stubEnv('AWS_REGION', 'us-east-1');
    vi.stubEnv('POWERTOOLS_METRICS_DISABLED', 'true');
    vi.stubEnv('POWERTOOLS_LOG_LEVEL', 'SILENT');
    handler = (await import('../../../functions/scorer/handler.ts')).handler as never;
  });
  beforeEach(() => {
    aws = new FakeAws(ddb, s3);
  });
  afterEach(() => {
    ddb.reset();
    s3.reset();
  });

  it('reports only the message whose series failed, so SQS redelivers just that one', async () => {
    // Prepare: DynamoDB refuses (after the SDK's retries) any transaction with the "throttled" series.
    aws.beforeTransact = (input) => {
      if ((input.TransactItems ?? []).some((i) => i.Put?.Item?.name === 'throttled')) {
        throw Object.assign(new Error('Rate exceeded'), {
          name: 'ThrottlingException',
          $metadata: { httpStatusCode: 400 },
        });
      }
    };
    const good = sqsRecordFactory(message(signal('kafka:t:0:1', 'fine')));
    const bad = sqsRecordFactory(message(signal('kafka:t:0:2', 'throttled')));
    // Act
    const out = await handler(sqsEventFactory([good, bad]), lambdaContextFactory());
    // Assess
    expect(out.batchItemFailures).toEqual([{ itemIdentifier: bad.messageId }]);
  });

  it('scores the batch together: one transaction for a series spread over several messages', async () => {
    // Prepare
    const records = [
      sqsRecordFactory(message(signal('kafka:t:0:1', 'cpu'), signal('kafka:t:0:2', 'cpu'))),
      sqsRecordFactory(message(signal('kafka:t:0:3', 'cpu'))),
    ];
    // Act
    const out = await handler(sqsEventFactory(records), lambdaContextFactory());
    // Assess: the series, the partition's block, the totals.
    expect(out.batchItemFailures).toEqual([]);
    const calls = ddb.commandCalls(TransactWriteCommand);
    expect(calls).toHaveLength(1);
    expect(calls[0]?.args[0].input.TransactItems).toHaveLength(3);
  });

  it('gives back, without timing out, the messages it has no time left to commit', async () => {
    // Prepare: the invocation has less time left than the scorer keeps in hand; one message is only rejects.
    const record = sqsRecordFactory(message(signal('kafka:t:0:1', 'cpu')));
    const invalid = sqsRecordFactory('{"not":"a batch"}');
    // Act
    const out = await handler(sqsEventFactory([record, invalid]), lambdaContextFactory(5_000));
    // Assess
    expect(out.batchItemFailures).toEqual([{ itemIdentifier: record.messageId }]);
    expect(ddb.commandCalls(TransactWriteCommand)).toHaveLength(0);
  });

  it('acknowledges a message of invalid signals after quarantining them', async () => {
    // Prepare
    const record = sqsRecordFactory('{"not":"a batch"}');
    // Act
    const out = await handler(sqsEventFactory([record]), lambdaContextFactory());
    // Assess
    expect(out.batchItemFailures).toEqual([]);
    expect(s3).toHaveReceivedCommandWith(PutObjectCommand, { Bucket: 'qb' });
  });
});
