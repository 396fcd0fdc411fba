import { Readable } from 'node:stream';
import {
  GetObjectCommand,
  type GetObjectCommandInput,
  ListObjectsV2Command,
  type S3Client,
} from '@aws-sdk/client-s3';
import { BatchGetCommand, QueryCommand, ScanCommand, UpdateCommand } from '@aws-sdk/lib-dynamodb';
import { sdkStreamMixin } from '@smithy/core/serde';
import { mockClient } from 'aws-sdk-client-mock';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { LedgerItem } from '#shared/ledger.ts';
import { Bitmap, encodeTokens } from '../../../../functions/scorer/blocks.ts';
import { blockKey, streamIdOf } from '../../../../functions/scorer/keys.ts';
import {
  encodeRecords,
  finalKey,
  pendingKey,
  type ScoreRecord,
} from '../../../../functions/scorer/score-store.ts';
import { parseSince, verify, verifyExitCode } from '../../../../local/commands/verify.ts';
import { compactRows, receiptsText } from '../../../../local/commands/verify-text.ts';
import { mockableClients } from '../../../helpers/clients.ts';
import { BUCKET, fakeTarget, LEDGER, SCORES, SCORES_BUCKET } from '../../../helpers/target.ts';

const NOW = new Date('2024-06-02T12:00:00.000Z');
const STREAM = `s3://${BUCKET}/incoming/a.csv@e1`;

const item = (over: Partial<LedgerItem> = {}): LedgerItem => ({
  pk: `s3://${BUCKET}/incoming/a.csv`,
  sk: 'e1',
  bucket: BUCKET,
  key: 'incoming/a.csv',
  etag: 'e1',
  status: 'SUCCESS',
  attempts: 1,
  records: 4,
  rejected: 1,
  bytesRead: 100,
  rejectsKey: 'rejects/s3/pulse-bucket/incoming/a.csv@e1.ndjson',
  createdAt: '2024-06-01T23:59:00.000Z',
  updatedAt: '2024-06-02T00:01:00.000Z',
  ...over,
});

const score = (row: number, stream = STREAM): ScoreRecord => ({
  id: `${stream}#${row}`,
  kind: 's3',
  ref: `${stream}#${row}`,
  source: 'incoming/a.csv',
  name: 'cpu',
  value: row,
  timestamp: '2024-06-01T00:00:00.000Z',
  score: null,
  anomaly: false,
  samples: row - 1,
  model: 'zscore',
  scoredAt: '2024-06-02T00:00:00.000Z',
});

const ndjson = (lines: readonly object[]) => Buffer.from(lines.map((l) => JSON.stringify(l)).join('\n'));

describe('verify (mocked AWS clients, as with --stack)', () => {
  const clients = mockableClients();
  const s3 = mockClient(clients.s3 as S3Client);
  const doc = mockClient(clients.doc);
  const target = fakeTarget(clients, 'aws');
  beforeEach(() => {
    // No block by default: the score objects are found by listing the days.
    doc.on(BatchGetCommand).resolves({ Responses: {} });
  });
  afterEach(() => {
    s3.reset();
    doc.reset();
  });

  /** The buckets as `objects` (bucket → key → bytes): listed by prefix, read by key. */
  const serve = (objects: Record<string, Record<string, Buffer>>) => {
    s3.on(ListObjectsV2Command).callsFake((input: { Bucket: string; Prefix: string }) => ({
      Contents: Object.keys(objects[input.Bucket] ?? {})
        .filter((k) => k.startsWith(input.Prefix))
        .map((Key) => ({ Key })),
    }));
    s3.on(GetObjectCommand).callsFake((input: GetObjectCommandInput) => {
      const body = objects[input.Bucket as string]?.[input.Key as string];
      if (!body) throw Object.assign(new Error('The specified key does not exist.'), { name: 'NoSuchKey' });
      return { Body: sdkStreamMixin(Readable.from([body])) };
    });
  };

  it('balances rows scored (final and pending objects, over days) and quarantined against the ledger', async () => {
    // Prepare
    doc.on(QueryCommand).resolves({ Items: [item()] });
    serve({
      [SCORES_BUCKET]: {
        'scores/dt=2024-06-01/t1.ndjson.gz': encodeRecords([
          score(1),
          score(2),
          score(1, `s3://${BUCKET}/other@x`),
        ]),
        'scores/dt=2024-06-02/t2.ndjson.gz': encodeRecords([score(3)]),
        'scores-pending/t3.ndjson.gz': encodeRecords([score(5)]),
      },
      [BUCKET]: {
        [item().rejectsKey as string]: ndjson([{ ref: `${STREAM}#4`, row: 4, reason: 'value is required' }]),
      },
    });
    // Act
    const receipts = await verify(target, { key: 'incoming/a.csv' }, NOW);
    // Assess
    expect(receipts).toEqual([
      expect.objectContaining({
        object: STREAM,
        read: 5,
        scored: 4,
        quarantined: 1,
        missing: 0,
        missingRows: [],
        verdict: 'ok',
      }),
    ]);
    expect(verifyExitCode(receipts)).toBe(0);
    expect(doc).toHaveReceivedCommandWith(QueryCommand, {
      TableName: LEDGER,
      ExpressionAttributeValues: { ':pk': `s3://${BUCKET}/incoming/a.csv` },
    });
    expect(s3).toHaveReceivedCommandWith(ListObjectsV2Command, { Prefix: 'scores/dt=2024-06-01/' });
    expect(s3).toHaveReceivedCommandWith(ListObjectsV2Command, { Prefix: 'scores/dt=2024-06-02/' });
  });

  it('stores the receipt on the item, and with credentials that may not write the ledger still returns it', async () => {
    // Prepare
    doc.on(QueryCommand).resolves({ Items: [item({ records: 1, rejected: 0, rejectsKey: undefined })] });
    serve({ [SCORES_BUCKET]: { 'scores/dt=2024-06-02/t1.ndjson.gz': encodeRecords([score(1)]) } });
    // Act
    const stored = await verify(target, { key: 'incoming/a.csv' }, NOW);
    doc
      .on(UpdateCommand)
      .rejects(Object.assign(new Error('not authorized'), { name: 'AccessDeniedException' }));
    const readOnly = await verify(target, { key: 'incoming/a.csv' }, NOW);
    // Assess
    expect(doc).toHaveReceivedCommandWith(UpdateCommand, {
      TableName: LEDGER,
      Key: { pk: `s3://${BUCKET}/incoming/a.csv`, sk: 'e1' },
      UpdateExpression: 'SET #receipt = :receipt',
      ExpressionAttributeValues: expect.objectContaining({
        ':receipt': expect.objectContaining({ at: NOW.toISOString(), by: 'pulse verify', ok: true, read: 1 }),
      }),
    });
    expect(readOnly).toEqual(stored);
    expect(readOnly[0]?.verdict).toBe('ok');
  });

  it('reads the score objects the file’s blocks name, and lists no day when they balance it', async () => {
    // Prepare
    doc.on(QueryCommand).resolves({ Items: [item({ records: 3, rejected: 0, rejectsKey: undefined })] });
    const bits = Bitmap.empty();
    for (const row of [1, 2, 3]) bits.set(row);
    const tokens = ['20240601-0000000000000001', '20240602-0000000000000002'];
    const block = blockKey(streamIdOf('s3', STREAM), 0);
    doc
      .on(BatchGetCommand)
      .resolves({ Responses: { [SCORES]: [{ pk: block, b: bits.toBytes(), t: encodeTokens(tokens) }] } });
    serve({
      [SCORES_BUCKET]: {
        [finalKey(tokens[0] as string)]: encodeRecords([score(1), score(2)]),
        [pendingKey(tokens[1] as string)]: encodeRecords([score(3)]),
      },
    });
    // Act
    const receipts = await verify(target, { key: 'incoming/a.csv' }, NOW);
    // Assess
    expect(receipts[0]).toMatchObject({ scored: 3, missing: 0, verdict: 'ok' });
    expect(s3).toHaveReceivedCommandWith(GetObjectCommand, {
      Key: 'scores/dt=2024-06-01/20240601-0000000000000001.ndjson.gz',
    });
    expect(s3).not.toHaveReceivedCommandWith(ListObjectsV2Command, { Prefix: 'scores/dt=2024-06-01/' });
  });

  it('counts the rejects of a split file’s parts with the file', async () => {
    // Prepare
    // Each part's item: its sort key is not the etag, and it names its own rejects object.
    const part = (n: number) =>
      item({ sk: `e1#part#${n}`, part: n, rejectsKey: `rejects/s3/a.csv@e1.part-${n}.ndjson` });
    const parts = [part(1), part(2)];
    doc
      .on(QueryCommand)
      .resolves({ Items: [item({ records: 2, rejected: 2, rejectsKey: undefined, parts: 2 }), ...parts] });
    serve({
      [SCORES_BUCKET]: { 'scores/dt=2024-06-02/t.ndjson.gz': encodeRecords([score(1), score(3)]) },
      [BUCKET]: Object.fromEntries(
        parts.map((p, i) => {
          const row = 2 * (i + 1);
          return [p.rejectsKey as string, ndjson([{ ref: `${STREAM}#${row}`, row, reason: 'bad' }])];
        }),
      ),
    });
    // Act
    const receipts = await verify(target, { key: 'incoming/a.csv' }, NOW);
    // Assess
    expect(receipts).toHaveLength(1);
    expect(receipts[0]).toMatchObject({ read: 4, scored: 2, quarantined: 2, missing: 0, verdict: 'ok' });
  });

  it('lists the rows found nowhere, and which of them the scorer applied (score record lost), exit code 2', async () => {
    // Prepare
    doc.on(QueryCommand).resolves({ Items: [item({ records: 6, rejected: 0, rejectsKey: undefined })] });
    serve({ [SCORES_BUCKET]: { 'scores/dt=2024-06-02/t.ndjson.gz': encodeRecords([score(1), score(4)]) } });
    const bits = Bitmap.empty();
    for (const row of [1, 3, 4]) bits.set(row);
    const block = blockKey(streamIdOf('s3', STREAM), 0);
    doc.on(BatchGetCommand).resolves({ Responses: { [SCORES]: [{ pk: block, b: bits.toBytes() }] } });
    // Act
    const receipts = await verify(target, { key: 'incoming/a.csv' }, NOW);
    // Assess
    expect(receipts[0]).toMatchObject({
      verdict: 'mismatch',
      missing: 4,
      missingRows: [2, 3, 5, 6],
      appliedWithoutScore: [3],
    });
    expect(verifyExitCode(receipts)).toBe(2);
    expect(doc).toHaveReceivedCommandWith(BatchGetCommand, {
      RequestItems: { [SCORES]: expect.objectContaining({ Keys: [{ pk: block }] }) },
    });
    const text = receiptsText(receipts);
    expect(text).toContain('4 record(s) read are found nowhere: rows 2-3, 5-6');
    expect(text).toContain('of these, rows 3 are applied in the scores table');
  });

  it('names rows dropped as duplicates and rejects that are not records; a file failure line is neither', async () => {
    // Prepare
    doc.on(QueryCommand).resolves({ Items: [item({ records: 3, rejected: 1, status: 'FAILED' })] });
    serve({
      [SCORES_BUCKET]: { 'scores/dt=2024-06-02/t.ndjson.gz': encodeRecords([score(1), score(2)]) },
      [BUCKET]: {
        [item().rejectsKey as string]: ndjson([
          { ref: STREAM, reason: 'gzip: 4 bytes after the end of the compressed data: left out' },
          { ref: STREAM, reason: 'file failed: MalformedFileError: quoted field is never closed' },
        ]),
        'rejects/scorer/2024-06-02/abc-collisions.ndjson': ndjson([
          { ref: `${STREAM}#3`, reason: `id "7" of source "s" was already scored from ${STREAM}#1` },
        ]),
      },
    });
    // Act
    const [receipt] = await verify(target, { key: 'incoming/a.csv' }, NOW);
    // Assess
    expect(receipt).toMatchObject({ duplicates: 1, notRecords: 1, scored: 2, missing: 0, verdict: 'ok' });
  });

  it('counts the scorer’s quarantine, reports an unfinished version, and finds nothing for an unknown key', async () => {
    // Prepare
    doc
      .on(QueryCommand)
      .resolvesOnce({ Items: [item({ records: 1, rejected: 0, rejectsKey: undefined })] })
      .resolvesOnce({ Items: [item({ status: 'PROCESSING' })] })
      .resolvesOnce({ Items: [] });
    serve({
      [BUCKET]: {
        'rejects/scorer/2024-06-02/def.ndjson': ndjson([{ ref: `${STREAM}#1`, reason: 'value: too large' }]),
      },
    });
    // Act
    const byScorer = await verify(target, { key: 'incoming/a.csv' }, NOW);
    const unfinished = await verify(target, { key: 'incoming/a.csv' }, NOW);
    const none = await verify(target, { key: 'incoming/none.csv' }, NOW);
    // Assess
    expect(byScorer[0]).toMatchObject({ quarantinedByScorer: 1, verdict: 'ok' });
    expect(unfinished[0]?.verdict).toBe('unfinished');
    expect(verifyExitCode(unfinished)).toBe(3);
    expect(none).toEqual([]);
    expect(verifyExitCode(none)).toBe(3);
  });

  it('selects the files the ledger updated since a time, and leaves out the items that are not files', async () => {
    // Prepare
    doc.on(ScanCommand).resolves({
      Items: [
        item(),
        item({ pk: `s3://${BUCKET}/incoming/old.csv`, updatedAt: '2024-05-01T00:00:00.000Z' }),
        { pk: 'watermark#signals', sk: 'x', updatedAt: '2024-06-02T00:00:00.000Z' },
      ],
    });
    doc.on(BatchGetCommand).resolves({ Responses: {} });
    serve({});
    // Act
    const receipts = await verify(target, { since: new Date('2024-06-02T00:00:00.000Z') }, NOW);
    // Assess
    expect(receipts.map((r) => r.key)).toEqual(['incoming/a.csv']);
  });
});

describe('parseSince and compactRows', () => {
  it('reads an ISO time or a duration back from now, and refuses anything else', () => {
    // Assess
    expect(parseSince('24h', NOW).toISOString()).toBe('2024-06-01T12:00:00.000Z');
    expect(parseSince('90m', NOW).toISOString()).toBe('2024-06-02T10:30:00.000Z');
    expect(parseSince('2024-01-01T00:00:00Z', NOW).toISOString()).toBe('2024-01-01T00:00:00.000Z');
    expect(() => parseSince('yesterday', NOW)).toThrow(/--since takes a time/);
  });

  it('writes runs of rows as ranges', () => {
    // Assess
    expect(compactRows([1, 2, 3, 7, 9, 10])).toBe('1-3, 7, 9-10');
  });
});
