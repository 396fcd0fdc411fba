import { Readable } from 'node:stream';
import {
  GetObjectCommand,
  type GetObjectCommandInput,
  ListObjectsV2Command,
  type S3Client,
} from '@aws-sdk/client-s3';
import { BatchGetCommand, GetCommand, QueryCommand, UpdateCommand } from '@aws-sdk/lib-dynamodb';
import { sdkStreamMixin } from '@smithy/core/serde';
import { mockClient } from 'aws-sdk-client-mock';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { VerifySweepConfig } from '#shared/config.ts';
import { METRIC } from '#shared/contract.ts';
import type { LedgerItem } from '#shared/ledger.ts';
import { settings } from '#shared/settings.ts';
import { verifyRecentFiles } from '../../../functions/s3-trigger/verify-sweep.ts';
import { encodeRecords, type ScoreRecord } from '../../../functions/scorer/score-store.ts';
import { mockableClients } from '../../helpers/clients.ts';
import { quietObservability } from '../../helpers/observability.ts';

const NOW = Date.parse('2024-06-02T12:00:00.000Z');
const iso = (ms: number) => new Date(ms).toISOString();
const minutes = (n: number) => n * 60_000;
const BUCKET = 'ingest';
const SCORES_BUCKET = 'scores-bucket';

const config: VerifySweepConfig = {
  ledgerTable: 'ledger',
  bucket: BUCKET,
  scoresTable: 'scores',
  scoresBucket: SCORES_BUCKET,
  settleSeconds: 600,
  maxFilesPerRun: 50,
  filesPerBatch: 10,
  stopBeforeTimeoutSeconds: 60,
  firstLookbackHours: 24,
  pageSize: 200,
};

/** A file that reached SUCCESS `agoMinutes` ago, with `records` sent and none rejected. */
const file = (key: string, agoMinutes: number, over: Partial<LedgerItem> = {}): LedgerItem => ({
  pk: `s3://${BUCKET}/${key}`,
  sk: `etag-${key}`,
  bucket: BUCKET,
  key,
  etag: `etag-${key}`,
  status: 'SUCCESS',
  attempts: 1,
  records: 2,
  rejected: 0,
  bytesRead: 10,
  createdAt: iso(NOW - minutes(agoMinutes + 1)),
  updatedAt: iso(NOW - minutes(agoMinutes)),
  ...over,
});

const score = (f: LedgerItem, row: number): ScoreRecord => {
  const ref = `${f.pk}@${f.etag}#${row}`;
  return {
    id: ref,
    kind: 's3',
    ref,
    source: f.key,
    name: 'cpu',
    value: row,
    timestamp: '2024-06-01T00:00:00.000Z',
    score: null,
    anomaly: false,
    samples: 0,
    model: 'zscore',
    scoredAt: '2024-06-02T00:00:00.000Z',
  };
};

describe('verifyRecentFiles (the ledger sweep’s receipts)', () => {
  const clients = mockableClients();
  const s3 = mockClient(clients.s3 as S3Client);
  const doc = mockClient(clients.doc);
  let obs: ReturnType<typeof quietObservability>;
  /** The cursor item as the table holds it (the fake honours the update's forward-only condition loosely). */
  let cursorItem: Record<string, unknown> | undefined;
  /** The score objects of the day, by key. */
  let scoreObjects: Record<string, Buffer>;

  const deps = (over: Partial<VerifySweepConfig> = {}) => ({
    doc: clients.doc,
    s3: clients.s3,
    logger: obs.logger,
    metrics: obs.metrics,
    config: { ...config, ...over },
    now: () => NOW,
  });
  /** The status index holding `items` (one page), as Query returns them: by updatedAt. */
  const index = (items: readonly LedgerItem[]) =>
    doc
      .on(QueryCommand, { IndexName: settings.ledger.statusIndex })
      .callsFake((input: { ExpressionAttributeValues: Record<string, string> }) => {
        const { ':from': from, ':until': until } = input.ExpressionAttributeValues;
        const inRange = items.filter(
          (i) =>
            i.status === 'SUCCESS' && i.updatedAt >= (from as string) && i.updatedAt <= (until as string),
        );
        return { Items: [...inRange].sort((a, b) => a.updatedAt.localeCompare(b.updatedAt)) };
      });
  const receiptUpdates = () =>
    doc
      .commandCalls(UpdateCommand)
      .map((c) => c.args[0].input)
      .filter((i) => i.Key?.pk !== settings.receipts.cursorKey.pk);

  beforeEach(() => {
    obs = quietObservability();
    cursorItem = undefined;
    scoreObjects = {};
    doc.on(GetCommand).callsFake(() => ({ Item: cursorItem }));
    doc.on(UpdateCommand).resolves({});
    doc.on(UpdateCommand, { Key: settings.receipts.cursorKey }).callsFake((input) => {
      cursorItem = { ...settings.receipts.cursorKey, cursor: input.ExpressionAttributeValues[':cursor'] };
      return {};
    });
    doc.on(BatchGetCommand).resolves({ Responses: {} });
    s3.on(ListObjectsV2Command).callsFake((input: { Bucket: string; Prefix: string }) => ({
      Contents:
        input.Bucket === SCORES_BUCKET
          ? Object.keys(scoreObjects)
              .filter((k) => k.startsWith(input.Prefix))
              .map((Key) => ({ Key }))
          : [],
    }));
    s3.on(GetObjectCommand).callsFake((input: GetObjectCommandInput) => {
      const body = scoreObjects[input.Key as string];
      if (!body) throw Object.assign(new Error('The specified key does not exist.'), { name: 'NoSuchKey' });
      return { Body: sdkStreamMixin(Readable.from([body])) };
    });
  });
  afterEach(() => {
    s3.reset();
    doc.reset();
  });

  it('verifies the SUCCESS files that settled since its last run, stores their receipts and moves its cursor', async () => {
    // Prepare
    const last = file('incoming/last-run.csv', 90);
    cursorItem = {
      ...settings.receipts.cursorKey,
      cursor: { updatedAt: last.updatedAt, pk: last.pk, sk: last.sk },
    };
    const a = file('incoming/a.csv', 60);
    const b = file('incoming/b.csv', 30);
    const fresh = file('incoming/fresh.csv', 5);
    const part = { ...file('incoming/b.csv', 30), sk: 'etag-incoming/b.csv#part-000001', part: 1 };
    const canary = { ...file('x', 40), pk: 'canary#notifications' };
    index([last, a, b, fresh, part, canary, file('incoming/failed.csv', 50, { status: 'FAILED' })]);
    scoreObjects['scores/dt=2024-06-02/t1.ndjson.gz'] = encodeRecords([
      score(a, 1),
      score(a, 2),
      score(b, 1),
      score(b, 2),
    ]);
    // Act
    const result = await verifyRecentFiles(deps());
    // Assess: read from the index between the cursor and the settle time, nothing else of the ledger
    expect(doc).toHaveReceivedCommandWith(QueryCommand, {
      IndexName: settings.ledger.statusIndex,
      KeyConditionExpression: '#status = :status AND updatedAt BETWEEN :from AND :until',
      ExpressionAttributeValues: {
        ':status': 'SUCCESS',
        ':from': last.updatedAt,
        ':until': iso(NOW - 600_000),
      },
    });
    expect(result).toMatchObject({ verified: 2, mismatches: 0, behind: false });
    expect(receiptUpdates().map((u) => [u.Key, u.ExpressionAttributeValues?.[':receipt']])).toEqual([
      [
        { pk: a.pk, sk: a.sk },
        expect.objectContaining({ by: 'ledger-sweep', status: 'SUCCESS', read: 2, scored: 2, ok: true }),
      ],
      [{ pk: b.pk, sk: b.sk }, expect.objectContaining({ read: 2, scored: 2, ok: true })],
    ]);
    expect(receiptUpdates()[0]?.ConditionExpression).toContain('#status = :status');
    expect(cursorItem?.cursor).toEqual({ updatedAt: b.updatedAt, pk: b.pk, sk: b.sk });
    expect(obs.recorded[METRIC.filesVerified]).toEqual([2]);
    expect(obs.recorded[METRIC.receiptMismatches]).toEqual([0]);
  });

  it('emits ReceiptMismatches and stores a receipt that does not balance, with its missing rows', async () => {
    // Prepare
    const a = file('incoming/a.csv', 60, { records: 3 });
    index([a]);
    scoreObjects['scores/dt=2024-06-02/t1.ndjson.gz'] = encodeRecords([score(a, 1), score(a, 3)]);
    // Act
    const result = await verifyRecentFiles(deps());
    // Assess
    expect(result).toMatchObject({
      verified: 1,
      mismatches: 1,
      mismatched: [{ object: `${a.pk}@${a.etag}`, missing: 1 }],
    });
    expect(receiptUpdates()[0]?.ExpressionAttributeValues?.[':receipt']).toMatchObject({
      ok: false,
      missing: { count: 1, rows: [2] },
    });
    expect(obs.recorded[METRIC.receiptMismatches]).toEqual([1]);
  });

  it('verifies at most maxFilesPerRun files a run, and the next run resumes after the last one', async () => {
    // Prepare
    const a = file('incoming/a.csv', 60);
    const b = file('incoming/b.csv', 30);
    index([a, b]);
    scoreObjects['scores/dt=2024-06-02/t1.ndjson.gz'] = encodeRecords([
      score(a, 1),
      score(a, 2),
      score(b, 1),
      score(b, 2),
    ]);
    // Act
    const first = await verifyRecentFiles(deps({ maxFilesPerRun: 1 }));
    const second = await verifyRecentFiles(deps({ maxFilesPerRun: 1 }));
    const third = await verifyRecentFiles(deps({ maxFilesPerRun: 1 }));
    // Assess
    expect(first).toMatchObject({ verified: 1, behind: true, cursor: { pk: a.pk } });
    expect(second).toMatchObject({ verified: 1, behind: false, cursor: { pk: b.pk } });
    expect(third).toMatchObject({ verified: 0, mismatches: 0 });
    expect(receiptUpdates().map((u) => u.Key?.pk)).toEqual([a.pk, b.pk]);
    expect(obs.recorded[METRIC.filesVerified]).toEqual([1, 1, 0]);
  });

  it('leaves out no file of the same updatedAt as the cursor when a run stops between them', async () => {
    // Prepare: two files ended in the same millisecond; the index returns them in no set order
    const b = file('incoming/b.csv', 60);
    const a = { ...file('incoming/a.csv', 60), updatedAt: b.updatedAt };
    doc.on(QueryCommand, { IndexName: settings.ledger.statusIndex }).resolves({ Items: [b, a] });
    scoreObjects['scores/dt=2024-06-02/t1.ndjson.gz'] = encodeRecords([
      score(a, 1),
      score(a, 2),
      score(b, 1),
      score(b, 2),
    ]);
    // Act
    const first = await verifyRecentFiles(deps({ maxFilesPerRun: 1 }));
    const second = await verifyRecentFiles(deps({ maxFilesPerRun: 1 }));
    const third = await verifyRecentFiles(deps({ maxFilesPerRun: 1 }));
    // Assess: in (updatedAt, pk, sk) order, each once
    expect([first, second, third].map((r) => r.verified)).toEqual([1, 1, 0]);
    expect(receiptUpdates().map((u) => u.Key?.pk)).toEqual([a.pk, b.pk]);
    expect(doc.commandCalls(QueryCommand).at(-1)?.args[0].input.ExpressionAttributeValues?.[':from']).toBe(
      b.updatedAt,
    );
  });

  it('starts firstLookbackHours back on its first run, and leaves the cursor in place when the time left is short', async () => {
    // Prepare
    const a = file('incoming/a.csv', 60);
    index([a]);
    // Act
    const out = await verifyRecentFiles({ ...deps(), remainingMs: () => 30_000 });
    // Assess
    expect(doc).toHaveReceivedCommandWith(QueryCommand, {
      ExpressionAttributeValues: {
        ':status': 'SUCCESS',
        ':from': iso(NOW - 24 * 3_600_000),
        ':until': iso(NOW - 600_000),
      },
    });
    expect(out).toMatchObject({ verified: 0, behind: true });
    expect(receiptUpdates()).toEqual([]);
    expect(cursorItem).toBeUndefined();
    expect(obs.recorded[METRIC.receiptMismatches]).toEqual([0]);
  });
});
