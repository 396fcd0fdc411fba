import { PutObjectCommand, S3Client } from '@aws-sdk/client-s3';
import { DynamoDBDocumentClient, GetCommand, QueryCommand, UpdateCommand } from '@aws-sdk/lib-dynamodb';
import { mockClient } from 'aws-sdk-client-mock';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { METRIC } from '#shared/contract.ts';
import { settings, visibilityTimeoutFor } from '#shared/settings.ts';
import { canaryLedgerKey, checkCanary } from '../../../functions/s3-trigger/canary.ts';
import { type SweepOptions, sweepLedger } from '../../../functions/s3-trigger/sweep.ts';
import { mockableClients } from '../../helpers/clients.ts';
import { quietObservability } from '../../helpers/observability.ts';

const NOW = Date.parse('2024-06-01T12:00:00.000Z');
const iso = (ms: number) => new Date(ms).toISOString();
const minutes = (n: number) => n * 60_000;

const config: SweepOptions = {
  ledgerTable: 'ledger',
  bucket: 'ingest',
  maxAttempts: 3,
  processingStuckSeconds: 35 * 60,
  splitStuckSeconds: 60 * 60,
  canaryGraceSeconds: 15 * 60,
  exhaustedLookbackHours: settings.sweep.exhaustedLookbackHours,
  maxItemsPerStatus: settings.sweep.maxItemsPerStatus,
  pageSize: settings.sweep.pageSize,
};

/** A ledger item of an object version as the status index returns it. */
const item = (key: string, status: string, over: Record<string, unknown> = {}) => ({
  pk: `s3://ingest/${key}`,
  sk: 'etag1',
  bucket: 'ingest',
  key,
  etag: 'etag1',
  status,
  attempts: 1,
  updatedAt: iso(NOW - minutes(90)),
  ...over,
});

describe('sweepLedger', () => {
  const ddb = mockClient(DynamoDBDocumentClient);
  const s3 = mockClient(S3Client);
  let obs: ReturnType<typeof quietObservability>;
  const deps = (over: Partial<SweepOptions> = {}) => ({
    ...mockableClients(),
    logger: obs.logger,
    metrics: obs.metrics,
    config: { ...config, ...over },
    now: () => NOW,
  });
  const queryFor = (status: string) =>
    ddb
      .commandCalls(QueryCommand)
      .filter((c) => c.args[0].input.ExpressionAttributeValues?.[':status'] === status);

  beforeEach(() => {
    obs = quietObservability();
    ddb.on(QueryCommand).resolves({ Items: [], Count: 0, ScannedCount: 0 });
    ddb.on(GetCommand).resolves({});
    ddb.on(UpdateCommand).resolves({});
    s3.on(PutObjectCommand).resolves({ VersionId: 'v1' });
  });
  afterEach(() => {
    ddb.reset();
    s3.reset();
  });

  it('counts stuck items by kind from the status index, emits FilesStuck in all and by kind, and names them', async () => {
    // Prepare
    ddb
      .on(QueryCommand, { ExpressionAttributeValues: { ':status': 'PROCESSING' } }, false)
      .resolves({ Items: [item('incoming/dead.csv', 'PROCESSING', { part: 3 })], Count: 1, ScannedCount: 1 });
    ddb
      .on(QueryCommand, { ExpressionAttributeValues: { ':status': 'SPLIT' } }, false)
      .resolves({ Items: [item('incoming/big.csv', 'SPLIT')], Count: 1, ScannedCount: 1 });
    ddb.on(QueryCommand, { ExpressionAttributeValues: { ':status': 'FAILED' } }, false).resolves({
      Items: [item('incoming/limbo.csv', 'FAILED', { retryable: true, attempts: 3 })],
      Count: 1,
      ScannedCount: 4,
    });
    // Act
    const result = await sweepLedger(deps());
    // Assess: what was found
    expect(result.stuck).toEqual({ processing: 1, split: 1, discovered: 0, exhausted: 1 });
    expect(result.total).toBe(3);
    expect(result.truncated).toEqual([]);
    expect(result.samples).toEqual([
      expect.objectContaining({ kind: 'processing', key: 'incoming/dead.csv', part: 3 }),
      expect.objectContaining({ kind: 'split', key: 'incoming/big.csv' }),
      expect.objectContaining({ kind: 'exhausted', key: 'incoming/limbo.csv', attempts: 3 }),
    ]);
    expect(obs.recorded[METRIC.filesStuck]).toEqual([3]);
    expect(obs.recorded[METRIC.filesStuckProcessing]).toEqual([1]);
    expect(obs.recorded[METRIC.filesStuckSplit]).toEqual([1]);
    expect(obs.recorded[METRIC.filesStuckDiscovered]).toEqual([0]);
    expect(obs.recorded[METRIC.filesStuckExhausted]).toEqual([1]);
    // Assess: how it was asked, on the index, with only the items old enough
    const processing = queryFor('PROCESSING')[0]?.args[0].input;
    expect(processing).toMatchObject({
      TableName: 'ledger',
      IndexName: settings.ledger.statusIndex,
      KeyConditionExpression: '#status = :status AND updatedAt < :updated',
      FilterExpression: 'attribute_not_exists(leaseExpiresAt) OR leaseExpiresAt < :now',
      ExpressionAttributeValues: { ':status': 'PROCESSING', ':updated': iso(NOW - minutes(35)), ':now': NOW },
    });
    expect(queryFor('SPLIT')[0]?.args[0].input.ExpressionAttributeValues).toEqual({
      ':status': 'SPLIT',
      ':updated': iso(NOW - minutes(60)),
    });
    expect(queryFor('DISCOVERED')).toHaveLength(1);
    expect(queryFor('FAILED')[0]?.args[0].input).toMatchObject({
      KeyConditionExpression: '#status = :status AND updatedAt > :updated',
      FilterExpression: 'retryable = :true AND attempts >= :max',
      ExpressionAttributeValues: { ':updated': iso(NOW - 24 * minutes(60)), ':true': true, ':max': 3 },
    });
  });

  it('reads a status page by page, and stops at maxItemsPerStatus, reporting the kind as truncated', async () => {
    // Prepare: PROCESSING has three full pages and more; each page is read up to pageSize before the filter
    const page = (n: number) => ({
      Items: [item(`incoming/p${n}.csv`, 'PROCESSING')],
      Count: 1,
      ScannedCount: 2,
      LastEvaluatedKey: { pk: `s3://ingest/incoming/p${n}.csv`, sk: 'etag1' },
    });
    ddb
      .on(QueryCommand, { ExpressionAttributeValues: { ':status': 'PROCESSING' } }, false)
      .resolvesOnce(page(1))
      .resolvesOnce(page(2))
      .resolvesOnce(page(3))
      .resolves(page(4));
    ddb
      .on(QueryCommand, { ExpressionAttributeValues: { ':status': 'SPLIT' } }, false)
      .resolvesOnce({ ...page(5), Items: [] })
      .resolves({ Items: [item('incoming/s.csv', 'SPLIT')], Count: 1, ScannedCount: 1 });
    // Act
    const result = await sweepLedger(deps({ pageSize: 2, maxItemsPerStatus: 6 }));
    // Assess
    const pages = queryFor('PROCESSING').map((c) => c.args[0].input);
    expect(pages).toHaveLength(3);
    expect(pages.map((p) => p.Limit)).toEqual([2, 2, 2]);
    expect(pages[1]?.ExclusiveStartKey).toEqual({ pk: 's3://ingest/incoming/p1.csv', sk: 'etag1' });
    expect(result.stuck.processing).toBe(3);
    expect(result.truncated).toEqual(['processing']);
    expect(queryFor('SPLIT')).toHaveLength(2);
    expect(result.stuck.split).toBe(1);
  });

  it('sends the next canary under the reserved key, and keeps the newest send times on its ledger item', async () => {
    // Prepare
    const sent = Array.from({ length: settings.sweep.canaryHistory }, (_, i) =>
      iso(NOW - minutes(5 * (settings.sweep.canaryHistory - i))),
    );
    ddb
      .on(GetCommand)
      .resolves({ Item: { ...canaryLedgerKey('ingest'), sent, seenAt: iso(NOW - minutes(4)) } });
    // Act
    const result = await sweepLedger(deps());
    // Assess
    expect(s3).toHaveReceivedCommandWith(PutObjectCommand, {
      Bucket: 'ingest',
      Key: settings.bucket.canaryKey,
    });
    const update = ddb.commandCalls(UpdateCommand)[0]?.args[0].input;
    expect(update?.Key).toEqual(canaryLedgerKey('ingest'));
    expect(update?.ExpressionAttributeValues?.[':sent']).toEqual([...sent.slice(1), iso(NOW)]);
    expect(result.canarySentAt).toBe(iso(NOW));
    expect(result.canary.missed).toBe(false);
    expect(obs.recorded[METRIC.canaryMissed]).toEqual([0]);
  });

  it('reports CanaryMissed when the canary due by now was never seen after it was sent, and logs it as an error', async () => {
    // Prepare: sent 20 and 15 minutes ago; seen last 30 minutes ago
    const error = vi.spyOn(obs.logger, 'error');
    ddb.on(GetCommand).resolves({
      Item: {
        ...canaryLedgerKey('ingest'),
        sent: [iso(NOW - minutes(20)), iso(NOW - minutes(15)), iso(NOW - minutes(5))],
        seenAt: iso(NOW - minutes(30)),
      },
    });
    // Act
    const result = await sweepLedger(deps());
    // Assess
    expect(result.canary).toEqual({
      missed: true,
      dueSentAt: iso(NOW - minutes(15)),
      seenAt: iso(NOW - minutes(30)),
    });
    expect(obs.recorded[METRIC.canaryMissed]).toEqual([1]);
    expect(error).toHaveBeenCalledWith(expect.stringContaining('notification canary'), expect.anything());
  });

  it('fails the run when the canary cannot be written, after emitting the metrics', async () => {
    // Prepare
    s3.on(PutObjectCommand).rejects(Object.assign(new Error('Access Denied'), { name: 'AccessDenied' }));
    // Act
    const run = sweepLedger(deps());
    // Assess
    await expect(run).rejects.toThrow('Access Denied');
    expect(obs.recorded[METRIC.filesStuck]).toEqual([0]);
    expect(obs.recorded[METRIC.canaryMissed]).toEqual([0]);
  });
});

describe('checkCanary', () => {
  it('judges nothing before a canary is due, and accepts a later canary seen as proof', () => {
    // Prepare
    const sent = [iso(NOW - minutes(20)), iso(NOW - minutes(2))];
    // Act / Assess
    expect(checkCanary(undefined, NOW, 900)).toEqual({ missed: false });
    expect(checkCanary({ ...canaryLedgerKey('b'), sent: [iso(NOW - minutes(2))] }, NOW, 900).missed).toBe(
      false,
    );
    expect(checkCanary({ ...canaryLedgerKey('b'), sent }, NOW, 900).missed).toBe(true);
    expect(
      checkCanary({ ...canaryLedgerKey('b'), sent, seenAt: iso(NOW - minutes(1)) }, NOW, 900).missed,
    ).toBe(false);
  });
});

describe('settings.sweep', () => {
  it('calls a PROCESSING item stuck only after a redelivery would have taken it over', () => {
    // Assess: the file-events visibility timeout, then a lease, must both have run out.
    const redelivery = visibilityTimeoutFor(settings.functions.s3Trigger.timeoutSeconds);
    expect(settings.sweep.processingStuckSeconds).toBeGreaterThan(redelivery + settings.ledger.leaseSeconds);
    expect(settings.sweep.canaryGraceSeconds).toBeGreaterThanOrEqual(
      settings.monitoring.maxMessageAgeSeconds.fileEvents,
    );
    expect(settings.sweep.canaryHistory * settings.sweep.scheduleRateMinutes * 60).toBeGreaterThan(
      settings.sweep.canaryGraceSeconds,
    );
  });
});
