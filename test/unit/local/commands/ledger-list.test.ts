import { QueryCommand, ScanCommand } from '@aws-sdk/lib-dynamodb';
import { mockClient } from 'aws-sdk-client-mock';
import { afterEach, describe, expect, it } from 'vitest';
import type { AwsClients } from '#shared/clients.ts';
import type { LedgerItem } from '#shared/ledger.ts';
import { settings } from '#shared/settings.ts';
import { listLedger } from '../../../../local/commands/ledger-list.ts';
import { mockableClients } from '../../../helpers/clients.ts';
import { BUCKET, fakeTarget, LEDGER } from '../../../helpers/target.ts';

const ledgerItem = (name: string, over: Partial<LedgerItem> = {}): LedgerItem => ({
  pk: `s3://${BUCKET}/incoming/${name}`,
  sk: 'e1',
  bucket: BUCKET,
  key: `incoming/${name}`,
  etag: 'e1',
  status: 'SUCCESS',
  attempts: 1,
  records: 1,
  rejected: 0,
  bytesRead: 1,
  createdAt: '2024-06-01T00:00:00.000Z',
  updatedAt: '2024-06-01T00:00:00.000Z',
  ...over,
});

/** What the mocked Queries were asked for, in order: their Limits summed bound what DynamoDB may read. */
const limits = (doc: ReturnType<typeof mockClient>) =>
  doc.commandCalls(QueryCommand).map((c) => (c.args[0].input as { Limit?: number }).Limit);

describe('listLedger', () => {
  const clients: AwsClients = mockableClients();
  const doc = mockClient(clients.doc);
  const target = fakeTarget(clients);
  afterEach(() => doc.reset());

  it('reads one key with a Query of its partition, no more than the limit, and gives a cursor to the rest', async () => {
    // Prepare
    const v1 = ledgerItem('a.csv', { sk: 'e1' });
    const v2 = ledgerItem('a.csv', { sk: 'e2' });
    doc.on(QueryCommand).resolves({ Items: [v1, v2], LastEvaluatedKey: { pk: v2.pk, sk: v2.sk } });
    // Act
    const page = await listLedger(target, { key: 'incoming/a.csv', limit: 2 });
    // Assess
    expect(page.items).toEqual([v1, v2]);
    expect(doc).toHaveReceivedCommandTimes(QueryCommand, 1);
    expect(doc).toHaveReceivedCommandWith(QueryCommand, {
      TableName: LEDGER,
      KeyConditionExpression: 'pk = :pk',
      ExpressionAttributeValues: { ':pk': `s3://${BUCKET}/incoming/a.csv` },
      Limit: 2,
    });
    expect(doc).not.toHaveReceivedCommand(ScanCommand);
    expect(page.next).toBeDefined();
  });

  it('starts the next page where the cursor says', async () => {
    // Prepare
    const last = ledgerItem('a.csv', { sk: 'e2' });
    doc.on(QueryCommand).resolvesOnce({ Items: [last], LastEvaluatedKey: { pk: last.pk, sk: last.sk } });
    const first = await listLedger(target, { key: 'incoming/a.csv', limit: 1 });
    doc.reset();
    doc.on(QueryCommand).resolves({ Items: [ledgerItem('a.csv', { sk: 'e3' })] });
    // Act
    const second = await listLedger(target, { key: 'incoming/a.csv', limit: 1, after: first.next as string });
    // Assess
    expect(doc.commandCalls(QueryCommand)[0]?.args[0].input.ExclusiveStartKey).toEqual({
      pk: last.pk,
      sk: last.sk,
    });
    expect(second.items.map((i) => i.sk)).toEqual(['e3']);
    expect(second.next).toBeUndefined();
  });

  it('pages the status index newest first, asking each page only for what is still missing', async () => {
    // Prepare: the first page comes back short (a part filtered out of it).
    const items = ['a', 'b', 'c'].map((n) => ledgerItem(`${n}.csv`, { status: 'FAILED' }));
    doc
      .on(QueryCommand)
      .resolvesOnce({ Items: items.slice(0, 1), LastEvaluatedKey: { pk: 'x', sk: 'y' } })
      .resolvesOnce({ Items: items.slice(1), LastEvaluatedKey: { pk: 'z', sk: 'w' } });
    // Act
    const page = await listLedger(target, { status: 'FAILED', limit: 3 });
    // Assess
    expect(page.items).toEqual(items);
    expect(limits(doc)).toEqual([3, 2]);
    expect(doc).toHaveReceivedNthCommandWith(QueryCommand, 1, {
      IndexName: settings.ledger.statusIndex,
      KeyConditionExpression: '#status = :status',
      ExpressionAttributeValues: { ':status': 'FAILED', ':s3': 's3://' },
      ScanIndexForward: false,
    });
    expect(doc.commandCalls(QueryCommand)[1]?.args[0].input.ExclusiveStartKey).toEqual({ pk: 'x', sk: 'y' });
    expect(doc).not.toHaveReceivedCommand(ScanCommand);
    expect(page.next).toBeDefined();
  });

  it('without a key or status, merges the newest of each status (one bounded Query each) and pages by time', async () => {
    // Prepare
    const at = (h: number) => `2024-06-01T${String(h).padStart(2, '0')}:00:00.000Z`;
    doc.on(QueryCommand).resolves({ Items: [] });
    doc
      .on(QueryCommand, { ExpressionAttributeValues: { ':status': 'SUCCESS', ':s3': 's3://' } })
      .resolves({ Items: [ledgerItem('s1', { updatedAt: at(9) }), ledgerItem('s2', { updatedAt: at(5) })] });
    doc
      .on(QueryCommand, { ExpressionAttributeValues: { ':status': 'FAILED', ':s3': 's3://' } })
      .resolves({ Items: [ledgerItem('f1', { status: 'FAILED', updatedAt: at(7) })] });
    // Act
    const page = await listLedger(target, { limit: 2 });
    // Assess
    expect(page.items.map((i) => i.key)).toEqual(['incoming/s1', 'incoming/f1']);
    expect(limits(doc)).toEqual(Array(6).fill(2));
    expect(doc).not.toHaveReceivedCommand(ScanCommand);
    // The next page: what was updated before the last entry printed.
    doc.reset();
    doc.on(QueryCommand).resolves({ Items: [] });
    await listLedger(target, { limit: 2, after: page.next as string });
    expect(doc).toHaveReceivedCommandWith(QueryCommand, {
      KeyConditionExpression: '#status = :status AND updatedAt < :before',
      ExpressionAttributeValues: { ':status': 'SUCCESS', ':s3': 's3://', ':before': at(7) },
    });
  });

  it('refuses a cursor it did not print, saying where to find one', async () => {
    // Act
    const listing = listLedger(target, { limit: 5, after: 'not-a-cursor' });
    // Assess
    await expect(listing).rejects.toThrow(/is not a cursor pulse ledger printed: copy it from "next:"/);
    expect(doc).not.toHaveReceivedCommand(QueryCommand);
  });
});
