import { DynamoDBClient, TransactionCanceledException } from '@aws-sdk/client-dynamodb';
import { PutObjectCommand, S3Client } from '@aws-sdk/client-s3';
import {
  BatchGetCommand,
  DynamoDBDocumentClient,
  GetCommand,
  TransactWriteCommand,
} from '@aws-sdk/lib-dynamodb';
import { mockClient } from 'aws-sdk-client-mock';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { zScoreModel } from '../../../functions/scorer/model.ts';
import { scoreKey, scoreMessage, seriesKey } from '../../../functions/scorer/scorer.ts';
import { TransientError } from '../../../shared/errors.ts';
import type { Signal } from '../../../shared/signal.ts';
import { quietObservability } from '../../helpers/observability.ts';

const signal = (i: number, over: Partial<Signal> = {}): Signal => ({
  id: `s3://b/k@e#${i}`,
  name: 'cpu',
  value: i,
  source: 'k',
  timestamp: '2024-01-01T00:00:00.000Z',
  origin: { kind: 's3', ref: `s3://b/k@e#${i}` },
  ...over,
});
const body = (signals: unknown[]) =>
  JSON.stringify({ v: 1, origin: { kind: 's3', ref: 's3://b/k@e' }, signals });

describe('scoreMessage', () => {
  const ddb = mockClient(DynamoDBDocumentClient);
  const s3 = mockClient(S3Client);
  let obs: ReturnType<typeof quietObservability>;
  const deps = () => ({
    doc: DynamoDBDocumentClient.from(new DynamoDBClient({})),
    s3: new S3Client({}),
    logger: obs.logger,
    metrics: obs.metrics,
    model: zScoreModel({ threshold: 3, minSamples: 2 }),
    config: { scoresTable: 'scores', quarantineBucket: 'qb', scoreTtlDays: 90 },
    now: () => Date.parse('2024-01-01T00:00:01.000Z'),
    sleep: async () => undefined,
  });
  beforeEach(() => {
    obs = quietObservability();
    ddb.on(BatchGetCommand).resolves({ Responses: { scores: [] } });
    ddb.on(GetCommand).resolves({});
    ddb.on(TransactWriteCommand).resolves({});
    s3.on(PutObjectCommand).resolves({});
  });
  afterEach(() => {
    ddb.reset();
    s3.reset();
  });

  it('writes each score only if absent, in one transaction with the versioned series state', async () => {
    // Prepare
    ddb
      .on(GetCommand)
      .resolves({ Item: { pk: seriesKey('k', 'cpu'), count: 2, mean: 1.5, m2: 0.5, version: 4 } });
    // Act
    const out = await scoreMessage('m1', body([signal(1), signal(2), signal(3)]), deps());
    // Assess
    expect(out).toMatchObject({ scored: 3, duplicates: 0, rejected: 0 });
    const items = ddb.commandCalls(TransactWriteCommand)[0]?.args[0].input.TransactItems ?? [];
    expect(items).toHaveLength(4);
    expect(items[0]?.Put?.Item).toMatchObject({
      pk: scoreKey('s3://b/k@e#1'),
      id: 's3://b/k@e#1',
      value: 1,
      model: 'zscore',
    });
    expect(items[0]?.Put?.ConditionExpression).toBe('attribute_not_exists(pk)');
    expect(items[3]?.Put?.Item).toMatchObject({ pk: seriesKey('k', 'cpu'), count: 5, version: 5 });
    expect(items[3]?.Put?.ConditionExpression).toBe('#version = :version');
    expect(items[3]?.Put?.ExpressionAttributeValues).toEqual({ ':version': 4 });
    expect(obs.total('SignalsScored')).toBe(3);
  });

  it('drops signals that are already scored (a redelivered message)', async () => {
    ddb
      .on(BatchGetCommand)
      .resolves({ Responses: { scores: [{ id: 's3://b/k@e#1' }, { id: 's3://b/k@e#2' }] } });
    const out = await scoreMessage('m1', body([signal(1), signal(2), signal(3)]), deps());
    expect(out).toMatchObject({ scored: 1, duplicates: 2 });
    const items = ddb.commandCalls(TransactWriteCommand)[0]?.args[0].input.TransactItems ?? [];
    expect(items).toHaveLength(2);
    expect(items[0]?.Put?.Item?.id).toBe('s3://b/k@e#3');
  });

  it('drops a repeated id within one message', async () => {
    const out = await scoreMessage('m1', body([signal(1), signal(1)]), deps());
    expect(out).toMatchObject({ scored: 1, duplicates: 1 });
  });

  it('re-reads the series and retries when a concurrent scorer moved it', async () => {
    // Prepare
    ddb
      .on(TransactWriteCommand)
      .rejectsOnce(new TransactionCanceledException({ message: 'cancelled', $metadata: {} }))
      .resolves({});
    // Act
    const out = await scoreMessage('m1', body([signal(1)]), deps());
    // Assess
    expect(out).toMatchObject({ scored: 1, conflicts: 1 });
    expect(ddb.commandCalls(TransactWriteCommand)).toHaveLength(2);
    expect(ddb.commandCalls(GetCommand)).toHaveLength(2);
  });

  it('fails transiently when the series keeps conflicting', async () => {
    ddb
      .on(TransactWriteCommand)
      .rejects(new TransactionCanceledException({ message: 'cancelled', $metadata: {} }));
    await expect(scoreMessage('m1', body([signal(1)]), deps())).rejects.toBeInstanceOf(TransientError);
  });

  it('quarantines invalid signals and scores the rest', async () => {
    // Act
    const out = await scoreMessage(
      'm1',
      body([signal(1), { ...signal(2), value: 'NaN' }, { nope: true }]),
      deps(),
    );
    // Assess
    expect(out).toMatchObject({ scored: 1, rejected: 2 });
    const put = s3.commandCalls(PutObjectCommand)[0]?.args[0].input;
    expect(put?.Bucket).toBe('qb');
    expect(put?.Key).toBe('rejects/scorer/2024-01-01/m1.ndjson');
    const lines = String(put?.Body)
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l));
    expect(lines).toHaveLength(2);
    expect(lines[0]).toMatchObject({ ref: 's3://b/k@e#2', reason: expect.stringMatching(/^value/) });
  });

  it('quarantines a message that is not JSON instead of retrying it', async () => {
    const out = await scoreMessage('m9', 'not json', deps());
    expect(out.rejected).toBe(1);
    const lines = String(s3.commandCalls(PutObjectCommand)[0]?.args[0].input.Body).trim().split('\n');
    expect(JSON.parse(lines[0] ?? '{}')).toMatchObject({ ref: 'sqs:m9', raw: 'not json' });
    expect(ddb.commandCalls(TransactWriteCommand)).toHaveLength(0);
  });

  it('splits a large series into transactions of at most 100 items', async () => {
    const signals = Array.from({ length: 250 }, (_, i) => signal(i + 1));
    let version = 0;
    ddb
      .on(GetCommand)
      .callsFake(() => ({ Item: version ? { count: 1, mean: 1, m2: 0, version } : undefined }));
    ddb.on(TransactWriteCommand).callsFake(() => {
      version++;
      return {};
    });
    const out = await scoreMessage('m1', body(signals), deps());
    expect(out.scored).toBe(250);
    const calls = ddb.commandCalls(TransactWriteCommand);
    expect(calls.map((c) => c.args[0].input.TransactItems?.length)).toEqual([100, 100, 53]);
  });

  it('keeps long keys within DynamoDB limits by hashing them', () => {
    expect(scoreKey('x'.repeat(5000)).length).toBeLessThan(100);
    expect(scoreKey('short')).toBe('score#short');
  });
});
