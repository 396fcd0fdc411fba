import { ListObjectsV2Command } from '@aws-sdk/client-s3';
import { GetCommand, QueryCommand } from '@aws-sdk/lib-dynamodb';
import { mockClient } from 'aws-sdk-client-mock';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { LedgerItem } from '#shared/ledger.ts';
import type { Signal } from '#shared/signal.ts';
import { zScoreModel } from '../../../../functions/scorer/model.ts';
import { scoreBatch } from '../../../../functions/scorer/scorer.ts';
import { trace, traceExitCode, traceText } from '../../../../local/commands/trace.ts';
import { mockableClients } from '../../../helpers/clients.ts';
import { quietObservability } from '../../../helpers/observability.ts';
import { ANOMALIES, BUCKET, fakeTarget, LEDGER, SCORES, SCORES_BUCKET } from '../../../helpers/target.ts';
import { FakeAws } from '../../scorer/fake-aws.ts';

const FILE = `s3://${BUCKET}/incoming/t.csv@e1`;

const signal = (ref: string, kind: Signal['origin']['kind'], over: Partial<Signal> = {}): Signal => ({
  id: ref,
  name: 'cpu',
  value: 1,
  source: 'incoming/t.csv',
  timestamp: '2024-01-01T00:00:00.000Z',
  origin: { kind, ref },
  ...over,
});

const fileItem = (over: Partial<LedgerItem> = {}): LedgerItem => ({
  pk: `s3://${BUCKET}/incoming/t.csv`,
  sk: 'e1',
  bucket: BUCKET,
  key: 'incoming/t.csv',
  etag: 'e1',
  status: 'SUCCESS',
  attempts: 1,
  records: 2,
  rejected: 1,
  bytesRead: 80,
  rejectsKey: 'rejects/s3/t.ndjson',
  createdAt: '2024-01-01T00:00:00.000Z',
  updatedAt: '2024-01-01T00:01:00.000Z',
  ...over,
});

const rejectsLine = (ref: string, reason: string, row?: number) =>
  `${JSON.stringify({ ref, reason, ...(row !== undefined ? { row } : {}), raw: 'x,n/a' })}\n`;

describe.each(['local', 'aws'] as const)('pulse trace (%s target)', (kind) => {
  const clients = mockableClients();
  const ddb = mockClient(clients.doc);
  const s3 = mockClient(clients.s3);
  const target = fakeTarget(clients, kind);
  let aws: FakeAws;
  const score = (signals: Signal[]) => {
    const obs = quietObservability();
    const origin = signals[0]?.origin ?? { kind: 's3', ref: FILE };
    return scoreBatch([{ messageId: 'm', body: JSON.stringify({ v: 3, origin, signals }) }], {
      ...clients,
      logger: obs.logger,
      metrics: obs.metrics,
      model: zScoreModel({ threshold: 3, minSamples: 2 }),
      config: {
        scoresTable: SCORES,
        scoresBucket: SCORES_BUCKET,
        anomaliesTable: ANOMALIES,
        quarantineBucket: 'q',
      },
      sleep: async () => undefined,
    });
  };
  beforeEach(() => {
    aws = new FakeAws(ddb, s3);
    // The series item, read by key from what the scorer wrote.
    ddb
      .on(GetCommand)
      .callsFake((input) => ({ Item: aws.table(input.TableName).get(String(input.Key?.pk)) }));
  });
  afterEach(() => {
    ddb.reset();
    s3.reset();
  });

  it('traces a scored row to its ledger item, its score record and its series now', async () => {
    // Prepare
    await score([signal(`${FILE}#1`, 's3', { value: 3 }), signal(`${FILE}#2`, 's3', { value: 5 })]);
    ddb.on(QueryCommand).resolves({ Items: [fileItem()] });
    // Act
    const t = await trace(target, { input: `${FILE}#2` });
    // Assess
    expect(t.verdict).toBe('scored');
    expect(traceExitCode(t)).toBe(0);
    expect(t.score).toMatchObject({ status: 'scored', record: { ref: `${FILE}#2`, value: 5, samples: 1 } });
    expect(t.ledger?.file).toMatchObject({ status: 'SUCCESS', etag: 'e1' });
    expect(t.series).toMatchObject({ source: 'incoming/t.csv', name: 'cpu', count: 2, mean: 4 });
    expect(t.series?.stddev).toBeCloseTo(Math.SQRT2, 6);
    expect(t.quarantine).toEqual([]);
    expect(ddb).toHaveReceivedCommandWith(QueryCommand, {
      TableName: LEDGER,
      KeyConditionExpression: 'pk = :pk AND begins_with(sk, :etag)',
      ExpressionAttributeValues: { ':pk': `s3://${BUCKET}/incoming/t.csv`, ':etag': 'e1' },
    });
    expect(traceText(t)).toContain('series     now 2 value(s), mean 4');
  });

  it('traces a rejected row to the quarantine line its ledger item names, with the reason', async () => {
    // Prepare
    ddb.on(QueryCommand).resolves({ Items: [fileItem()] });
    aws.objects.set(
      'rejects/s3/t.ndjson',
      Buffer.from(
        rejectsLine(`${FILE}#2`, 'value must be wholly numeric') + rejectsLine(`${FILE}#3`, 'other'),
      ),
    );
    // Act
    const t = await trace(target, { input: `${FILE}#2` });
    // Assess
    expect(t.verdict).toBe('quarantined');
    expect(traceExitCode(t)).toBe(2);
    expect(t.quarantine).toEqual([
      { object: 'rejects/s3/t.ndjson', reason: 'value must be wholly numeric', raw: 'x,n/a' },
    ]);
    expect(s3).not.toHaveReceivedCommand(ListObjectsV2Command);
    expect(traceText(t)).toContain('reason     value must be wholly numeric');
  });

  it('traces a Kafka offset to the rejects object of the batch whose offsets hold it, reading no other', async () => {
    // Prepare
    s3.on(ListObjectsV2Command).resolves({
      Contents: [{ Key: 'rejects/kafka/m/0/0-9.ndjson' }, { Key: 'rejects/kafka/m/0/10-19.ndjson' }],
    });
    aws.objects.set('rejects/kafka/m/0/10-19.ndjson', Buffer.from(rejectsLine('kafka:m:0:12', 'not JSON')));
    // Act
    const t = await trace(target, { input: 'kafka:m:0:12' });
    // Assess
    expect(t).toMatchObject({ kind: 'kafka', verdict: 'quarantined' });
    expect(t.quarantine.map((q) => q.reason)).toEqual(['not JSON']);
    expect(s3).toHaveReceivedCommandWith(ListObjectsV2Command, {
      Bucket: BUCKET,
      Prefix: 'rejects/kafka/m/0/',
    });
    expect(aws.calls.filter((c) => c.startsWith('GetObject rejects/'))).toEqual([
      'GetObject rejects/kafka/m/0/10-19.ndjson',
    ]);
    expect(ddb).not.toHaveReceivedCommand(QueryCommand);
  });

  it('traces a db record by its own id and table to its ref and score', async () => {
    // Prepare
    await score([signal('db:readings:7', 'db', { id: 'sensor-7', source: 'readings', value: 2 })]);
    // Act
    const t = await trace(target, { input: 'sensor-7', from: 'db:readings' });
    // Assess
    expect(t).toMatchObject({ kind: 'db', ref: 'db:readings:7', verdict: 'scored' });
    expect(t.series).toMatchObject({ source: 'readings', count: 1 });
  });

  it('finds a row of a file still PROCESSING nowhere, and says to trace it again later', async () => {
    // Prepare
    ddb.on(QueryCommand).resolves({ Items: [fileItem({ status: 'PROCESSING', rejectsKey: undefined })] });
    // Act
    const t = await trace(target, { input: `${FILE}#9` });
    // Assess
    expect(t.verdict).toBe('not-found');
    expect(traceExitCode(t)).toBe(3);
    expect(t.note).toMatch(/PROCESSING: not read to this row yet/);
  });

  it('says what to give when the input is neither a ref nor an id with --from', async () => {
    // Act
    const attempt = trace(target, { input: 'sensor-7' });
    // Assess
    await expect(attempt).rejects.toThrow(/not an origin ref.*give --from/);
  });
});
