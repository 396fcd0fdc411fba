import { HeadObjectCommand, ListObjectsV2Command } from '@aws-sdk/client-s3';
import { SendMessageBatchCommand, SendMessageCommand } from '@aws-sdk/client-sqs';
import { BatchGetCommand, GetCommand, ScanCommand, UpdateCommand } from '@aws-sdk/lib-dynamodb';
import { mockClient } from 'aws-sdk-client-mock';
import { afterEach, describe, expect, it } from 'vitest';
import type { AwsClients } from '#shared/clients.ts';
import type { LedgerItem } from '#shared/ledger.ts';
import { backfillWindow } from '../../../../local/commands/backfill.ts';
import { mockableClients } from '../../../helpers/clients.ts';
import { BUCKET, fakeTarget, LEDGER } from '../../../helpers/target.ts';

const DAY = (d: number) => new Date(`2024-06-${String(d).padStart(2, '0')}T00:00:00.000Z`);
const object = (name: string, modified: Date) => ({
  Key: `incoming/${name}`,
  ETag: `"etag-${name}"`,
  Size: 10,
  LastModified: modified,
});
const item = (name: string, over: Partial<LedgerItem>): LedgerItem => ({
  pk: `s3://${BUCKET}/incoming/${name}`,
  sk: `etag-${name}`,
  bucket: BUCKET,
  key: `incoming/${name}`,
  etag: `etag-${name}`,
  status: 'SUCCESS',
  attempts: 1,
  records: 3,
  rejected: 0,
  bytesRead: 10,
  createdAt: '2024-06-01T00:00:00.000Z',
  updatedAt: '2024-06-03T00:00:00.000Z',
  ...over,
});
const sentKeys = (sqs: ReturnType<typeof mockClient>) =>
  sqs
    .commandCalls(SendMessageBatchCommand)
    .flatMap((c) =>
      ((c.args[0].input as SendMessageBatchCommand['input']).Entries ?? []).map(
        (e) => JSON.parse(e.MessageBody ?? '{}').key,
      ),
    );

describe('backfillWindow', () => {
  const clients: AwsClients = mockableClients();
  const s3 = mockClient(clients.s3);
  const sqs = mockClient(clients.sqs);
  const doc = mockClient(clients.doc);
  const target = fakeTarget(clients);
  afterEach(() => {
    s3.reset();
    sqs.reset();
    doc.reset();
  });

  it('enqueues only the objects last modified in the window that the ledger has not seen, and reads the ledger for those alone', async () => {
    // Prepare
    s3.on(ListObjectsV2Command).resolves({
      Contents: [
        object('before.csv', DAY(1)),
        object('first.csv', DAY(2)),
        object('known.csv', DAY(3)),
        object('last.csv', DAY(4)),
        object('until.csv', DAY(5)),
      ],
    });
    doc
      .on(BatchGetCommand)
      .resolves({ Responses: { [LEDGER]: [{ pk: item('known.csv', {}).pk, sk: 'etag-known.csv' }] } });
    sqs.on(SendMessageBatchCommand).resolves({ Successful: [], Failed: [] });
    // Act
    const result = await backfillWindow(target, 'incoming/', { since: DAY(2), until: DAY(5) });
    // Assess
    expect(result).toMatchObject({ listed: 5, outOfRange: 2, known: 1, enqueued: 2, forced: [] });
    expect(sentKeys(sqs)).toEqual(['incoming/first.csv', 'incoming/last.csv']);
    expect(s3).toHaveReceivedCommandWith(ListObjectsV2Command, { Bucket: BUCKET, Prefix: 'incoming/' });
    const asked = doc
      .commandCalls(BatchGetCommand)
      .flatMap((c) => c.args[0].input.RequestItems?.[LEDGER]?.Keys ?? []);
    expect(asked.map((k) => k.sk)).toEqual(['etag-first.csv', 'etag-known.csv', 'etag-last.csv']);
    expect(
      doc.commandCalls(BatchGetCommand)[0]?.args[0].input.RequestItems?.[LEDGER]?.ProjectionExpression,
    ).toBe('pk, sk');
    expect(doc).not.toHaveReceivedCommand(ScanCommand);
    expect(doc).not.toHaveReceivedCommand(UpdateCommand);
  });

  it('with --force, runs FAILED and SKIPPED versions again through the retry path, never a SUCCESS or one on its way', async () => {
    // Prepare
    const failed = item('failed.csv', { status: 'FAILED', retryable: false, errorType: 'AccessDenied' });
    const skipped = item('skipped.csv', { status: 'SKIPPED', errorType: 'Skipped', records: 0 });
    const done = item('done.csv', { status: 'SUCCESS' });
    const running = item('running.csv', { status: 'PROCESSING' });
    const transient = item('transient.csv', { status: 'FAILED', retryable: true });
    const all = [failed, skipped, done, running, transient];
    s3.on(ListObjectsV2Command).resolves({
      Contents: all.map((i) => object(i.key.slice('incoming/'.length), DAY(3))),
    });
    s3.on(HeadObjectCommand).callsFake((input) => ({
      ETag: `"etag-${String(input.Key).slice('incoming/'.length)}"`,
    }));
    doc.on(BatchGetCommand).resolves({ Responses: { [LEDGER]: all } });
    doc.on(UpdateCommand).resolves({});
    doc.on(GetCommand).resolves({});
    sqs.on(SendMessageCommand).resolves({ MessageId: 'm' });
    // Act
    const result = await backfillWindow(target, 'incoming/', { force: true, by: 'ops@box', now: DAY(9) });
    // Assess
    expect(result.enqueued).toBe(0);
    expect(Object.fromEntries(result.forced.map((f) => [f.key, f.outcome]))).toEqual({
      'incoming/failed.csv': 'retried',
      'incoming/skipped.csv': 'retried',
      'incoming/done.csv': 'kept',
      'incoming/running.csv': 'kept',
      'incoming/transient.csv': 'kept',
    });
    expect(result.forced.find((f) => f.key === 'incoming/done.csv')?.reason).toMatch(
      /never scored again .* upload the file again/,
    );
    // The retry path: a conditional reset recorded on the item, then its file event; for those two alone.
    const resets = doc.commandCalls(UpdateCommand).map((c) => c.args[0].input);
    expect(resets.map((u) => u.Key?.pk)).toEqual([failed.pk, skipped.pk]);
    for (const u of resets) expect(u.UpdateExpression).toContain('retries = list_append');
    const events = sqs
      .commandCalls(SendMessageCommand)
      .map((c) => JSON.parse(c.args[0].input.MessageBody ?? '{}').key);
    expect(events).toEqual(['incoming/failed.csv', 'incoming/skipped.csv']);
    expect(
      doc.commandCalls(BatchGetCommand)[0]?.args[0].input.RequestItems?.[LEDGER]?.ProjectionExpression,
    ).toBeUndefined();
  });
});
