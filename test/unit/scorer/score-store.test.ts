import { DynamoDBClient } from '@aws-sdk/client-dynamodb';
import { S3Client } from '@aws-sdk/client-s3';
import { DynamoDBDocumentClient } from '@aws-sdk/lib-dynamodb';
import { mockClient } from 'aws-sdk-client-mock';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { newToken } from '../../../functions/scorer/blocks.ts';
import { seriesKey } from '../../../functions/scorer/keys.ts';
import {
  decodeRecords,
  encodeRecords,
  finalKey,
  pendingKey,
  type ScoreRecord,
  ScoreStore,
} from '../../../functions/scorer/score-store.ts';
import { FakeAws } from './fake-aws.ts';

const ddb = mockClient(DynamoDBDocumentClient);
const s3 = mockClient(S3Client);

const record = (i: number, anomaly = false): ScoreRecord => ({
  id: `kafka:t:0:${i}`,
  kind: 'kafka',
  ref: `kafka:t:0:${i}`,
  source: 't',
  name: 'cpu',
  value: i,
  timestamp: `2024-01-01T00:00:0${i}.000Z`,
  score: anomaly ? 9.5 : 0.1,
  anomaly,
  samples: i,
  model: 'zscore',
  scoredAt: '2024-01-02T00:00:00.000Z',
});

describe('the pending → final protocol', () => {
  let aws: FakeAws;
  const store = () =>
    new ScoreStore(
      new S3Client({}),
      DynamoDBDocumentClient.from(new DynamoDBClient({})),
      { scoresBucket: 'sb', anomaliesTable: 'anomalies' },
      async () => undefined,
    );
  beforeEach(() => {
    aws = new FakeAws(ddb, s3);
  });
  afterEach(() => {
    ddb.reset();
    s3.reset();
  });

  it('names objects by the token: pending under scores-pending/, final under the token’s day', () => {
    const token = newToken(Date.parse('2026-12-02T10:00:00Z'));
    expect(pendingKey(token)).toBe(`scores-pending/${token}.ndjson.gz`);
    expect(finalKey(token)).toBe(`scores/dt=2026-12-02/${token}.ndjson.gz`);
  });

  it('promotes after a commit: anomalies first, then the final object, then the pending one deleted', async () => {
    // Prepare
    const token = newToken(Date.now());
    const records = [record(1), record(2, true)];
    const body = encodeRecords(records);
    await store().putPending(token, body);
    // Act
    await store().promote(token, body, records);
    // Assess
    expect(aws.calls).toEqual([
      `PutObject ${pendingKey(token)}`,
      'BatchWriteItem',
      `PutObject ${finalKey(token)}`,
      `DeleteObject ${pendingKey(token)}`,
    ]);
    expect(decodeRecords(aws.objects.get(finalKey(token)) as Buffer)).toEqual(records);
    const anomalies = [...aws.table('anomalies').values()];
    expect(anomalies).toHaveLength(1);
    expect(anomalies[0]).toMatchObject({ series: seriesKey('t', 'cpu'), ref: 'kafka:t:0:2', score: 9.5 });
    expect(String(anomalies[0]?.at)).toMatch(/^2024-01-01T00:00:02.000Z#[0-9a-f]{16}$/);
    expect(String(anomalies[0]?.day)).toMatch(/^2024-01-02#[0-7]$/);
  });

  it('settles a token whose scorer died after its commit: the pending object becomes the final one, once', async () => {
    // Prepare
    const token = newToken(Date.now());
    const records = [record(1, true)];
    await store().putPending(token, encodeRecords(records));
    // Act
    const first = await store().settle(token);
    const second = await store().settle(token);
    // Assess
    expect([first, second]).toEqual([true, false]);
    expect([...aws.objects.keys()]).toEqual([finalKey(token)]);
    expect(decodeRecords(aws.objects.get(finalKey(token)) as Buffer)).toEqual(records);
    expect(aws.table('anomalies').size).toBe(1);
  });

  it('settles a token whose pending object is gone (promoted already) by doing nothing', async () => {
    // Prepare
    const token = newToken(Date.now());
    // Act
    const promoted = await store().settle(token);
    // Assess
    expect(promoted).toBe(false);
    expect(aws.calls).toEqual([`GetObject ${pendingKey(token)}`]);
  });

  it('gives the same final object whether the scorer promotes it or a recovery does, in either order', async () => {
    // Prepare
    const token = newToken(Date.now());
    const records = [record(1), record(2)];
    const body = encodeRecords(records);
    await store().putPending(token, body);
    // Act: a recovery starts, the scorer promotes, then the recovery finds the pending object gone.
    await store().promote(token, body, records);
    const late = await new ScoreStore(
      new S3Client({}),
      DynamoDBDocumentClient.from(new DynamoDBClient({})),
      { scoresBucket: 'sb', anomaliesTable: 'anomalies' },
      async () => undefined,
    ).settle(token);
    // Assess
    expect(late).toBe(false);
    expect([...aws.objects.keys()]).toEqual([finalKey(token)]);
  });
});
