import { Readable } from 'node:stream';
import { GetObjectCommand, ListObjectsV2Command } from '@aws-sdk/client-s3';
import { GetQueueAttributesCommand } from '@aws-sdk/client-sqs';
import { BatchGetCommand, QueryCommand, ScanCommand } from '@aws-sdk/lib-dynamodb';
import { sdkStreamMixin } from '@smithy/core/serde';
import { mockClient } from 'aws-sdk-client-mock';
import { afterEach, describe, expect, it } from 'vitest';
import type { AwsClients } from '#shared/clients.ts';
import type { LedgerItem } from '#shared/ledger.ts';
import { counterKey } from '#shared/ledger-counters.ts';
import { settings } from '#shared/settings.ts';
import { totalsKey } from '../../../../functions/scorer/keys.ts';
import { RECENT_FILES, StatusCollector } from '../../../../local/commands/status.ts';
import type { Target } from '../../../../local/commands/target.ts';
import { mockableClients } from '../../../helpers/clients.ts';
import {
  ANOMALIES,
  BUCKET,
  fakeTarget,
  KAFKA_FAILURES_BUCKET,
  LEDGER,
  QUEUES,
  SCORES,
} from '../../../helpers/target.ts';

const ENDPOINTS = {
  s3: 'http://127.0.0.1:5000',
  sqs: 'http://127.0.0.1:5000',
  dynamodb: 'http://127.0.0.1:5000',
  dashboard: 'http://127.0.0.1:8080/',
};

const clientsFactory = mockableClients;

const targetFactory = (clients: AwsClients, kind: Target['kind'] = 'local') =>
  fakeTarget(clients, kind, { endpoints: ENDPOINTS });

const ledgerItem = (key: string, over: Partial<LedgerItem> = {}): LedgerItem => ({
  pk: `s3://${BUCKET}/${key}`,
  sk: `etag-${key}`,
  bucket: BUCKET,
  key,
  etag: `etag-${key}`,
  status: 'SUCCESS',
  attempts: 1,
  records: 10,
  rejected: 0,
  bytesRead: 100,
  createdAt: '2024-06-01T00:00:00.000Z',
  updatedAt: '2024-06-01T00:00:00.000Z',
  ...over,
});

/** A GetObject output whose body arrives in the given chunks (a fresh stream per call). */
const objectBody = (...chunks: string[]) => ({
  Body: sdkStreamMixin(Readable.from(chunks.map((c) => Buffer.from(c)))),
});

describe('StatusCollector', () => {
  const clients = clientsFactory();
  const s3 = mockClient(clients.s3);
  const sqs = mockClient(clients.sqs);
  const ddb = mockClient(clients.ddb);
  const doc = mockClient(clients.doc);
  afterEach(() => {
    s3.reset();
    sqs.reset();
    ddb.reset();
    doc.reset();
  });

  /** An empty pipeline: every scan, listing and queue empty. Tests add what they are about. */
  const emptyPipeline = () => {
    doc.on(ScanCommand).resolves({ Items: [], Count: 0 });
    doc.on(BatchGetCommand).resolves({ Responses: {} });
    doc.on(QueryCommand).resolves({ Items: [] });
    sqs.on(GetQueueAttributesCommand).resolves({
      Attributes: { ApproximateNumberOfMessages: '0', ApproximateNumberOfMessagesNotVisible: '0' },
    });
    s3.on(ListObjectsV2Command).resolves({});
  };
  const depth = (url: string, visible: number, inFlight: number) =>
    sqs.on(GetQueueAttributesCommand, { QueueUrl: url }).resolves({
      Attributes: {
        ApproximateNumberOfMessages: String(visible),
        ApproximateNumberOfMessagesNotVisible: String(inFlight),
      },
    });

  it('shows the most recent files from a bounded Query per status of the index, counts and sums from the counter items, and scans nothing', async () => {
    // Prepare
    emptyPipeline();
    const ok = ledgerItem('incoming/ok.csv', {
      records: 20,
      rejected: 2,
      updatedAt: '2024-06-01T10:00:00.000Z',
    });
    const failed = ledgerItem('incoming/bad.json', {
      status: 'FAILED',
      attempts: 3,
      rejected: 0,
      errorType: 'MalformedFileError',
      errorMessage: 'JSON ends early',
      updatedAt: '2024-06-01T12:00:00.000Z',
      durationMs: 1500,
      firstErrors: ['row 1: value is required'],
    });
    const running = ledgerItem('incoming/big.ndjson', {
      status: 'PROCESSING',
      rejected: 5,
      updatedAt: '2024-06-01T11:00:00.000Z',
    });
    const byStatus = (status: string, items: LedgerItem[]) =>
      doc
        .on(QueryCommand, {
          TableName: LEDGER,
          IndexName: settings.ledger.statusIndex,
          ExpressionAttributeValues: { ':status': status, ':s3': 's3://' },
        })
        .resolves({ Items: items });
    byStatus('SUCCESS', [ok]);
    byStatus('FAILED', [failed]);
    byStatus('PROCESSING', [running]);
    // Two shards of a ledger far larger than what is listed.
    doc.on(BatchGetCommand).callsFake((input) =>
      input.RequestItems?.[LEDGER]
        ? {
            Responses: {
              [LEDGER]: [
                { ...counterKey(0), n_SUCCESS: 700, n_FAILED: 1, records: 90_000, rejected: 40 },
                { ...counterKey(3), n_SUCCESS: 299, n_PROCESSING: 2, records: 10_000, rejected: 2 },
              ],
            },
          }
        : { Responses: {} },
    );
    // Act
    const status = await new StatusCollector(targetFactory(clients)).collect();
    // Assess
    expect(status.files.map((f) => f.key)).toEqual([
      'incoming/bad.json',
      'incoming/big.ndjson',
      'incoming/ok.csv',
    ]);
    expect(status.files[0]).toEqual({
      key: 'incoming/bad.json',
      etag: 'etag-incoming/bad.json',
      status: 'FAILED',
      records: 10,
      rejected: 0,
      error: 'MalformedFileError: JSON ends early',
      attempts: 3,
      updatedAt: '2024-06-01T12:00:00.000Z',
      durationMs: 1500,
      firstErrors: ['row 1: value is required'],
    });
    expect(status.files[2]?.error).toBeNull();
    expect(status.ledger).toEqual({
      DISCOVERED: 0,
      PROCESSING: 2,
      SPLIT: 0,
      SUCCESS: 999,
      FAILED: 1,
      SKIPPED: 0,
    });
    expect(status.filesTotal).toBe(1002);
    expect(status.records).toBe(100_000);
    expect(status.rejected.s3).toBe(42);
    expect(status.endpoints).toEqual(ENDPOINTS);
    expect(Number.isNaN(Date.parse(status.at))).toBe(false);
    expect(doc).not.toHaveReceivedCommand(ScanCommand);
    const queries = doc.commandCalls(QueryCommand, { TableName: LEDGER });
    expect(queries).toHaveLength(6);
    for (const q of queries) {
      expect(q.args[0].input).toMatchObject({
        IndexName: settings.ledger.statusIndex,
        Limit: RECENT_FILES,
        ScanIndexForward: false,
      });
      expect(q.args[0].input.ExclusiveStartKey).toBeUndefined();
    }
    const shardKeys = doc
      .commandCalls(BatchGetCommand)
      .flatMap((c) => (c.args[0].input.RequestItems?.[LEDGER]?.Keys ?? []) as unknown[]);
    expect(shardKeys).toEqual(
      Array.from({ length: settings.ledgerCounters.shards }, (_, i) => counterKey(i)),
    );
  });

  it('counts the db, kafka and scorer rejects from the lines of their quarantine objects', async () => {
    // Prepare
    emptyPipeline();
    s3.on(ListObjectsV2Command, { Prefix: 'rejects/db/' })
      .resolvesOnce({
        Contents: [{ Key: 'rejects/db/1.ndjson', ETag: '"d1"' }],
        NextContinuationToken: 'more',
      })
      .resolvesOnce({ Contents: [{ Key: 'rejects/db/2.ndjson', ETag: '"d2"' }] });
    s3.on(ListObjectsV2Command, { Prefix: 'rejects/kafka/' }).resolves({
      Contents: [{ Key: 'rejects/kafka/1.ndjson', ETag: '"k1"' }],
    });
    s3.on(ListObjectsV2Command, { Prefix: 'rejects/scorer/' }).resolves({
      Contents: [{ Key: 'rejects/scorer/1.ndjson', ETag: '"s1"' }],
    });
    s3.on(GetObjectCommand, { Key: 'rejects/db/1.ndjson' }).callsFake(() =>
      objectBody('{"a":1}\n{"a', '":2}\n{"a":3}\n'),
    );
    s3.on(GetObjectCommand, { Key: 'rejects/db/2.ndjson' }).callsFake(() => objectBody('{"b":1}\n{"b":2}\n'));
    s3.on(GetObjectCommand, { Key: 'rejects/kafka/1.ndjson' }).callsFake(() => objectBody('{"k":1}\n'));
    s3.on(GetObjectCommand, { Key: 'rejects/scorer/1.ndjson' }).callsFake(() =>
      objectBody('{"s":1}\n{"s":2}\n{"s":3}\n{"s":4}\n'),
    );
    doc
      .on(BatchGetCommand)
      .resolves({ Responses: { [LEDGER]: [{ ...counterKey(0), n_SUCCESS: 1, rejected: 4 }] } });
    // Act
    const status = await new StatusCollector(targetFactory(clients)).collect();
    // Assess
    expect(status.rejected).toEqual({ s3: 4, db: 5, kafka: 1, scorer: 4 });
    expect(s3).toHaveReceivedCommandWith(ListObjectsV2Command, { Bucket: BUCKET, Prefix: 'rejects/db/' });
    expect(s3.commandCalls(ListObjectsV2Command, { Prefix: 'rejects/db/' })[1]?.args[0].input).toMatchObject({
      ContinuationToken: 'more',
    });
    expect(s3).toHaveReceivedCommandWith(GetObjectCommand, { Bucket: BUCKET, Key: 'rejects/db/1.ndjson' });
  });

  it('reads each quarantine object once per ETag across collections', async () => {
    // Prepare
    emptyPipeline();
    s3.on(ListObjectsV2Command, { Prefix: 'rejects/kafka/' })
      .resolvesOnce({ Contents: [{ Key: 'rejects/kafka/1.ndjson', ETag: '"v1"' }] })
      .resolvesOnce({ Contents: [{ Key: 'rejects/kafka/1.ndjson', ETag: '"v1"' }] })
      .resolves({ Contents: [{ Key: 'rejects/kafka/1.ndjson', ETag: '"v2"' }] });
    s3.on(GetObjectCommand, { Key: 'rejects/kafka/1.ndjson' })
      .callsFakeOnce(() => objectBody('{"k":1}\n{"k":2}\n'))
      .callsFake(() => objectBody('{"k":1}\n{"k":2}\n{"k":3}\n'));
    const collector = new StatusCollector(targetFactory(clients));
    // Act
    const first = await collector.collect();
    const second = await collector.collect();
    const getsAfterSecond = s3.commandCalls(GetObjectCommand).length;
    const third = await collector.collect();
    // Assess
    expect(first.rejected.kafka).toBe(2);
    expect(second.rejected.kafka).toBe(2);
    expect(getsAfterSecond).toBe(1);
    expect(third.rejected.kafka).toBe(3);
    expect(s3).toHaveReceivedCommandTimes(GetObjectCommand, 2);
  });

  it('counts as dead letters the DLQ messages (visible and in flight) and the Kafka failure objects not replayed, not the notices', async () => {
    // Prepare: two failure objects, one replayed; three notices (one an S3 test event).
    emptyPipeline();
    depth(QUEUES.fileEvents, 100, 5);
    depth(QUEUES.signals, 40, 10);
    depth(QUEUES.fileEventsDlq, 2, 1);
    depth(QUEUES.signalsDlq, 1, 0);
    depth(QUEUES.kafkaFailures, 0, 3);
    s3.on(ListObjectsV2Command, { Bucket: KAFKA_FAILURES_BUCKET }).resolves({
      Contents: [
        { Key: 'aws/lambda/u/t-0/a', ETag: '"ea"', Size: 1, LastModified: new Date('2024-06-01T00:00:00Z') },
        { Key: 'aws/lambda/u/t-0/b', ETag: '"eb"', Size: 1, LastModified: new Date('2024-06-01T00:01:00Z') },
      ],
    });
    doc.on(BatchGetCommand).resolves({
      Responses: {
        [LEDGER]: [{ pk: 'kafka-failure#aws/lambda/u/t-0/a', sk: 'ea', replayStatus: 'REPLAYED' }],
      },
    });
    // Act
    const status = await new StatusCollector(targetFactory(clients)).collect();
    // Assess
    expect(status.kafkaFailures).toEqual({ awaitingReplay: 1, replayed: 1 });
    expect(status.dlq).toBe(5);
    expect(status.queues).toEqual({
      fileEvents: { visible: 100, inFlight: 5 },
      fileEventsDlq: { visible: 2, inFlight: 1 },
      signals: { visible: 40, inFlight: 10 },
      signalsDlq: { visible: 1, inFlight: 0 },
      kafkaFailures: { visible: 0, inFlight: 3 },
    });
    expect(sqs).toHaveReceivedCommandWith(GetQueueAttributesCommand, {
      QueueUrl: QUEUES.kafkaFailures,
      AttributeNames: ['ApproximateNumberOfMessages', 'ApproximateNumberOfMessagesNotVisible'],
    });
  });

  it('reads scored, samples, series and anomalies from the totals items, with one batch read and no scan of the scores table', async () => {
    // Prepare
    emptyPipeline();
    doc.on(BatchGetCommand).resolves({
      Responses: {
        [SCORES]: [
          { pk: totalsKey(0), scored: 30, samples: 30, series: 2, anomalies: 1 },
          { pk: totalsKey(7), scored: 18, samples: 18, series: 1, anomalies: 2 },
        ],
      },
    });
    // Act
    const status = await new StatusCollector(targetFactory(clients, 'local')).collect();
    // Assess
    expect(status).toMatchObject({ scored: 48, seriesSamples: 48, series: 3, anomalies: 3 });
    const keys = doc
      .commandCalls(BatchGetCommand)
      .flatMap((c) => (c.args[0].input.RequestItems?.[SCORES]?.Keys ?? []).map((k) => k.pk));
    expect(keys.sort()).toEqual(
      Array.from({ length: settings.scoring.totalsShards }, (_, i) => totalsKey(i)).sort(),
    );
    expect(doc.commandCalls(ScanCommand, { TableName: SCORES })).toHaveLength(0);
  });

  it('lists the recent anomalies, newest first, from the index of each day shard (today, then yesterday)', async () => {
    // Prepare
    emptyPipeline();
    const today = new Date().toISOString().slice(0, 10);
    const anomaly = (id: string, scoredAt: string, score: number | null) => ({
      id,
      ref: id,
      source: 'demo',
      name: 'cpu',
      value: 99,
      score,
      timestamp: '2024-06-01T10:00:00.000Z',
      scoredAt,
    });
    doc.on(QueryCommand).resolves({ Items: [] });
    doc
      .on(QueryCommand, { ExpressionAttributeValues: { ':day': `${today}#1` } })
      .resolves({ Items: [anomaly('a1', `${today}T10:00:01.000Z`, 4.2)] });
    doc
      .on(QueryCommand, { ExpressionAttributeValues: { ':day': `${today}#5` } })
      .resolves({ Items: [anomaly('a2', `${today}T11:00:00.000Z`, null)] });
    // Act
    const status = await new StatusCollector(targetFactory(clients)).collect();
    // Assess
    expect(status.recentAnomalies.map((a) => a.id)).toEqual(['a2', 'a1']);
    expect(status.recentAnomalies[0]?.score).toBeNull();
    expect(doc).toHaveReceivedCommandWith(QueryCommand, {
      TableName: ANOMALIES,
      IndexName: settings.scores.recentAnomaliesIndex,
      ScanIndexForward: false,
    });
  });
});
