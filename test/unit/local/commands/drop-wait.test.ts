import { Readable } from 'node:stream';
import {
  GetObjectCommand,
  type GetObjectCommandInput,
  ListObjectsV2Command,
  type S3Client,
} from '@aws-sdk/client-s3';
import { BatchGetCommand, QueryCommand, UpdateCommand } from '@aws-sdk/lib-dynamodb';
import { sdkStreamMixin } from '@smithy/core/serde';
import { mockClient } from 'aws-sdk-client-mock';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { LedgerItem } from '#shared/ledger.ts';
import { encodeRecords, type ScoreRecord } from '../../../../functions/scorer/score-store.ts';
import { type FileWait, phaseOf, waitExitCode, waitForFiles } from '../../../../local/commands/drop-wait.ts';
import type { Dropped } from '../../../../local/commands/operations.ts';
import { mockableClients } from '../../../helpers/clients.ts';
import { BUCKET, fakeTarget, LEDGER, SCORES_BUCKET } from '../../../helpers/target.ts';

const START = Date.parse('2024-06-02T12:00:00.000Z');
const dropped: Dropped = {
  file: 'data/a.csv',
  bucket: BUCKET,
  key: 'incoming/a.csv',
  etag: 'e1',
  bytes: 100,
};
const STREAM = `s3://${BUCKET}/incoming/a.csv@e1`;

const item = (over: Partial<LedgerItem> = {}): LedgerItem => ({
  pk: `s3://${BUCKET}/incoming/a.csv`,
  sk: 'e1',
  bucket: BUCKET,
  key: 'incoming/a.csv',
  etag: 'e1',
  status: 'SUCCESS',
  attempts: 1,
  records: 2,
  rejected: 0,
  bytesRead: 100,
  createdAt: '2024-06-02T11:59:00.000Z',
  updatedAt: '2024-06-02T12:00:00.000Z',
  ...over,
});

const score = (row: number): ScoreRecord => ({
  id: `${STREAM}#${row}`,
  kind: 's3',
  ref: `${STREAM}#${row}`,
  source: 'incoming/a.csv',
  name: 'cpu',
  value: row,
  timestamp: '2024-06-01T00:00:00.000Z',
  score: null,
  anomaly: false,
  samples: 0,
  model: 'zscore',
  scoredAt: '2024-06-02T00:00:00.000Z',
});

describe('phaseOf (drop --wait’s state machine)', () => {
  it('goes queued → ingesting → scoring → balanced, and ends failed or skipped', () => {
    // Act
    const phases = {
      none: phaseOf(undefined, undefined),
      processing: phaseOf(item({ status: 'PROCESSING' }), undefined),
      split: phaseOf(item({ status: 'SPLIT' }), undefined),
      retryable: phaseOf(item({ status: 'FAILED', retryable: true }), undefined),
      failed: phaseOf(item({ status: 'FAILED', retryable: false }), undefined),
      skipped: phaseOf(item({ status: 'SKIPPED' }), undefined),
      success: phaseOf(item(), undefined),
    };
    // Assess
    expect(phases).toEqual({
      none: 'queued',
      processing: 'ingesting',
      split: 'ingesting',
      retryable: 'ingesting',
      failed: 'failed',
      skipped: 'skipped',
      success: 'scoring',
    });
  });
});

describe('waitForFiles (mocked AWS clients, as with --stack)', () => {
  const clients = mockableClients();
  const s3 = mockClient(clients.s3 as S3Client);
  const doc = mockClient(clients.doc);
  const target = fakeTarget(clients, 'aws');
  let clock: number;
  let scores: Record<string, Buffer>;
  const timing = {
    now: () => clock,
    sleep: async (ms: number) => {
      clock += ms;
    },
    pollMs: 1000,
  };
  /** The ledger answers each round with the next of `states` (the last one from then on). */
  const ledger = (...states: (LedgerItem | undefined)[]) => {
    let round = 0;
    doc.on(QueryCommand).callsFake(() => {
      const state = states[Math.min(round++, states.length - 1)];
      return { Items: state ? [state] : [] };
    });
  };
  const receiptsStored = () =>
    doc.commandCalls(UpdateCommand).map((c) => c.args[0].input.ExpressionAttributeValues?.[':receipt']);

  beforeEach(() => {
    clock = START;
    scores = {};
    doc.on(BatchGetCommand).resolves({ Responses: {} });
    doc.on(UpdateCommand).resolves({});
    s3.on(ListObjectsV2Command).callsFake((input: { Bucket: string; Prefix: string }) => ({
      Contents:
        input.Bucket === SCORES_BUCKET
          ? Object.keys(scores)
              .filter((k) => k.startsWith(input.Prefix))
              .map((Key) => ({ Key }))
          : [],
    }));
    s3.on(GetObjectCommand).callsFake((input: GetObjectCommandInput) => {
      const body = scores[input.Key as string];
      if (!body) throw Object.assign(new Error('The specified key does not exist.'), { name: 'NoSuchKey' });
      return { Body: sdkStreamMixin(Readable.from([body])) };
    });
  });
  afterEach(() => {
    s3.reset();
    doc.reset();
  });

  it('follows a file from the queue through ingesting to a balanced receipt, stores it, exit code 0', async () => {
    // Prepare
    ledger(undefined, item({ status: 'PROCESSING', records: 1 }), item());
    scores['scores/dt=2024-06-02/t1.ndjson.gz'] = encodeRecords([score(1), score(2)]);
    const rounds: FileWait['phase'][] = [];
    // Act
    const [f] = await waitForFiles(target, [dropped], {
      ...timing,
      timeoutMs: 60_000,
      onRound: (files) => rounds.push(...files.map((w) => w.phase)),
    });
    // Assess
    expect(rounds).toEqual(['queued', 'ingesting', 'balanced']);
    expect(f).toMatchObject({ phase: 'balanced', read: 2, scored: 2, accounted: 2, timedOut: false });
    expect(f?.receipt).toMatchObject({ object: STREAM, verdict: 'ok' });
    expect(waitExitCode(f ? [f] : [])).toBe(0);
    expect(doc).toHaveReceivedCommandWith(QueryCommand, {
      TableName: LEDGER,
      ExpressionAttributeValues: { ':pk': `s3://${BUCKET}/incoming/a.csv` },
    });
    expect(receiptsStored()).toEqual([
      expect.objectContaining({ by: 'pulse drop --wait', ok: true, read: 2 }),
    ]);
  });

  it('waits while the receipt does not balance, and at the timeout stores it unbalanced, exit code 2', async () => {
    // Prepare
    ledger(item());
    scores['scores/dt=2024-06-02/t1.ndjson.gz'] = encodeRecords([score(1)]);
    // Act
    const files = await waitForFiles(target, [dropped], { ...timing, timeoutMs: 5_000 });
    // Assess
    expect(files[0]).toMatchObject({ phase: 'scoring', accounted: 1, read: 2, timedOut: true });
    expect(waitExitCode(files)).toBe(2);
    expect(receiptsStored()).toEqual([
      expect.objectContaining({ ok: false, missing: { count: 1, rows: [2] } }),
    ]);
    expect(clock - START).toBe(5_000);
  });

  it('ends at once on a file FAILED for good (exit 3), and times out on one still retryable (exit 4)', async () => {
    // Prepare
    ledger(item({ status: 'FAILED', retryable: false, errorType: 'MalformedFileError' }));
    // Act
    const failed = await waitForFiles(target, [dropped], { ...timing, timeoutMs: 60_000 });
    doc.reset();
    ledger(item({ status: 'FAILED', retryable: true }));
    const retrying = await waitForFiles(target, [dropped], { ...timing, timeoutMs: 3_000 });
    // Assess
    expect(failed[0]).toMatchObject({ phase: 'failed', timedOut: false });
    expect(waitExitCode(failed)).toBe(3);
    expect(retrying[0]).toMatchObject({ phase: 'ingesting', timedOut: true });
    expect(waitExitCode(retrying)).toBe(4);
    expect(receiptsStored()).toEqual([]);
  });
});
