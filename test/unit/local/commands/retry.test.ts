import { ConditionalCheckFailedException } from '@aws-sdk/client-dynamodb';
import { HeadObjectCommand, NotFound } from '@aws-sdk/client-s3';
import { SendMessageCommand } from '@aws-sdk/client-sqs';
import { QueryCommand, UpdateCommand } from '@aws-sdk/lib-dynamodb';
import { mockClient } from 'aws-sdk-client-mock';
import { afterEach, describe, expect, it } from 'vitest';
import type { AwsClients } from '#shared/clients.ts';
import type { LedgerItem } from '#shared/ledger.ts';
import { settings } from '#shared/settings.ts';
import { retryExitCode, retryText, retryVersions } from '../../../../local/commands/retry.ts';
import type { Target } from '../../../../local/commands/target.ts';
import { mockableClients } from '../../../helpers/clients.ts';
import { BUCKET, fakeTarget, LEDGER, QUEUES } from '../../../helpers/target.ts';

const failedItem = (over: Partial<LedgerItem> = {}): LedgerItem => ({
  pk: `s3://${BUCKET}/incoming/a.csv`,
  sk: 'e1',
  bucket: BUCKET,
  key: 'incoming/a.csv',
  etag: 'e1',
  size: 120,
  status: 'FAILED',
  retryable: false,
  attempts: 1,
  records: 4,
  rejected: 1,
  bytesRead: 60,
  errorType: 'AccessDenied',
  errorMessage: 'Access Denied',
  rejectsKey: 'rejects/incoming/a.csv/e1-1.ndjson',
  createdAt: '2024-06-01T00:00:00.000Z',
  updatedAt: '2024-06-01T00:05:00.000Z',
  finishedAt: '2024-06-01T00:05:00.000Z',
  ...over,
});

const NOW = new Date('2024-06-02T09:00:00.000Z');

describe.each(['local', 'aws'] as const)('retryVersions (%s target)', (kind) => {
  const clients: AwsClients = mockableClients();
  const doc = mockClient(clients.doc);
  const s3 = mockClient(clients.s3);
  const sqs = mockClient(clients.sqs);
  const target: Target = fakeTarget(clients, kind);
  afterEach(() => {
    doc.reset();
    s3.reset();
    sqs.reset();
  });

  it('resets a FAILED version to DISCOVERED with who, when and the previous error, then sends its file event', async () => {
    // Prepare
    const item = failedItem();
    doc.on(QueryCommand).resolves({ Items: [item] });
    doc.on(UpdateCommand).resolves({});
    s3.on(HeadObjectCommand).resolves({ ETag: '"e1"' });
    sqs.on(SendMessageCommand).resolves({ MessageId: 'm1' });
    // Act
    const results = await retryVersions(target, { key: 'incoming/a.csv' }, { by: 'ops@box', now: NOW });
    // Assess
    const previous = {
      status: 'FAILED',
      attempts: 1,
      errorType: 'AccessDenied',
      errorMessage: 'Access Denied',
      finishedAt: '2024-06-01T00:05:00.000Z',
      records: 4,
      rejected: 1,
      rejectsKeys: ['rejects/incoming/a.csv/e1-1.ndjson'],
    };
    expect(results).toEqual([
      {
        object: `s3://${BUCKET}/incoming/a.csv@e1`,
        key: 'incoming/a.csv',
        etag: 'e1',
        outcome: 'retried',
        previous,
      },
    ]);
    expect(retryExitCode(results)).toBe(0);
    const update = doc.commandCalls(UpdateCommand)[0]?.args[0].input;
    expect(update?.Key).toEqual({ pk: item.pk, sk: 'e1' });
    expect(update?.ConditionExpression).toContain(
      '(#status = :failed OR #status = :skipped) AND attempts = :attempts',
    );
    expect(update?.ConditionExpression).toContain('updatedAt = :updatedAt');
    expect(update?.ConditionExpression).toContain('retryable = :false');
    expect(update?.UpdateExpression).toContain('#status = :discovered, attempts = :zero');
    expect(update?.UpdateExpression).toContain(
      'retries = list_append(if_not_exists(retries, :none), :record)',
    );
    expect(update?.ExpressionAttributeValues).toMatchObject({
      ':attempts': 1,
      ':updatedAt': '2024-06-01T00:05:00.000Z',
      ':record': [{ by: 'ops@box', at: NOW.toISOString(), previous }],
    });
    expect(s3).toHaveReceivedCommandWith(HeadObjectCommand, { Bucket: BUCKET, Key: 'incoming/a.csv' });
    expect(sqs).toHaveReceivedCommandWith(SendMessageCommand, { QueueUrl: QUEUES.fileEvents });
    expect(JSON.parse(sqs.commandCalls(SendMessageCommand)[0]?.args[0].input.MessageBody ?? '')).toEqual({
      v: 1,
      kind: 'backfill',
      bucket: BUCKET,
      key: 'incoming/a.csv',
      etag: 'e1',
      size: 120,
    });
  });

  it('--failed reads the status index and retries only the files updated since the time', async () => {
    // Prepare
    const recent = failedItem({
      pk: `s3://${BUCKET}/incoming/new.csv`,
      key: 'incoming/new.csv',
      etag: 'e2',
      sk: 'e2',
    });
    const old = failedItem({ updatedAt: '2024-05-01T00:00:00.000Z' });
    const part = failedItem({ sk: 'e1#part-000001', part: 1, updatedAt: '2024-06-01T00:06:00.000Z' });
    doc.on(QueryCommand).resolves({ Items: [recent, old, part] });
    doc.on(UpdateCommand).resolves({});
    s3.on(HeadObjectCommand).resolves({ ETag: '"e2"' });
    sqs.on(SendMessageCommand).resolves({ MessageId: 'm1' });
    // Act
    const results = await retryVersions(
      target,
      { failed: true, since: new Date('2024-06-01T00:00:00.000Z') },
      { by: 'ops', now: NOW },
    );
    // Assess
    expect(results.map((r) => [r.key, r.outcome])).toEqual([['incoming/new.csv', 'retried']]);
    expect(doc).toHaveReceivedCommandWith(QueryCommand, {
      TableName: LEDGER,
      IndexName: settings.ledger.statusIndex,
      ExpressionAttributeValues: { ':status': 'FAILED' },
    });
    expect(doc).toHaveReceivedCommandTimes(UpdateCommand, 1);
  });

  it('refuses a version still being retried, and a split file, without writing or sending anything', async () => {
    // Prepare
    const retrying = failedItem({ retryable: true, attempts: 2 });
    const split = failedItem({ sk: 'e3', etag: 'e3', parts: 4, partsDone: 4, partsFailed: 1 });
    doc.on(QueryCommand).resolves({ Items: [retrying, split] });
    // Act
    const results = await retryVersions(target, { key: 'incoming/a.csv' }, { by: 'ops', now: NOW });
    // Assess
    expect(results.map((r) => r.outcome)).toEqual(['refused', 'refused']);
    expect(results[0]?.reason).toMatch(/still being retried.*pulse dlq redrive/);
    expect(results[1]?.reason).toMatch(/split into 4 parts/);
    expect(retryExitCode(results)).toBe(2);
    expect(doc).not.toHaveReceivedCommand(UpdateCommand);
    expect(sqs).not.toHaveReceivedCommand(SendMessageCommand);
  });

  it('refuses a version the bucket no longer holds (replaced or deleted): upload it again', async () => {
    // Prepare
    doc.on(QueryCommand).resolves({ Items: [failedItem(), failedItem({ sk: 'e0', etag: 'e0' })] });
    s3.on(HeadObjectCommand)
      .resolvesOnce({ ETag: '"e9"' })
      .rejectsOnce(new NotFound({ message: 'Not Found', $metadata: { httpStatusCode: 404 } }));
    // Act
    const results = await retryVersions(target, { key: 'incoming/a.csv' }, { by: 'ops', now: NOW });
    // Assess
    expect(results.map((r) => r.outcome)).toEqual(['refused', 'refused']);
    expect(results[0]?.reason).toMatch(/now holds another version \(ETag e9\)/);
    expect(results[1]?.reason).toMatch(/no longer exists: upload the file again/);
    expect(doc).not.toHaveReceivedCommand(UpdateCommand);
    expect(sqs).not.toHaveReceivedCommand(SendMessageCommand);
  });

  it('reports a version changed meanwhile (the conditional reset failed) and sends nothing for it', async () => {
    // Prepare
    doc.on(QueryCommand).resolves({ Items: [failedItem()] });
    doc.on(UpdateCommand).rejects(new ConditionalCheckFailedException({ message: 'no', $metadata: {} }));
    s3.on(HeadObjectCommand).resolves({ ETag: '"e1"' });
    // Act
    const results = await retryVersions(target, { key: 'incoming/a.csv' }, { by: 'ops', now: NOW });
    // Assess
    expect(results.map((r) => r.outcome)).toEqual(['changed']);
    expect(retryExitCode(results)).toBe(2);
    expect(sqs).not.toHaveReceivedCommand(SendMessageCommand);
  });

  it('sends again the file event of a version an earlier retry reset (its event lost), without a second reset', async () => {
    // Prepare
    const record = {
      by: 'ops',
      at: '2024-06-02T08:00:00.000Z',
      previous: { status: 'FAILED' as const, attempts: 1, records: 0, rejected: 0 },
    };
    const item = failedItem({ status: 'DISCOVERED', attempts: 0, retries: [record] });
    const done = failedItem({ sk: 'e0', etag: 'e0', status: 'SUCCESS' });
    doc.on(QueryCommand).resolves({ Items: [item, done] });
    s3.on(HeadObjectCommand).resolves({ ETag: '"e1"' });
    sqs.on(SendMessageCommand).resolves({ MessageId: 'm1' });
    // Act
    const results = await retryVersions(target, { key: 'incoming/a.csv' }, { by: 'ops', now: NOW });
    // Assess
    expect(results).toEqual([
      expect.objectContaining({ etag: 'e1', outcome: 'resent', previous: record.previous }),
    ]);
    expect(doc).not.toHaveReceivedCommand(UpdateCommand);
    expect(sqs).toHaveReceivedCommandTimes(SendMessageCommand, 1);
  });

  it('names each version of a key that did not fail, when none did', async () => {
    // Prepare
    doc.on(QueryCommand).resolves({ Items: [failedItem({ status: 'SUCCESS' })] });
    // Act
    const results = await retryVersions(target, { key: 'incoming/a.csv' }, { by: 'ops', now: NOW });
    // Assess
    expect(results).toEqual([
      expect.objectContaining({
        outcome: 'refused',
        reason: expect.stringMatching(/is SUCCESS, not FAILED/),
      }),
    ]);
    expect(s3).not.toHaveReceivedCommand(HeadObjectCommand);
  });
});

describe('retryText and retryExitCode', () => {
  it('prints each version with its previous error, control characters made visible, and a count', () => {
    // Prepare
    const results = [
      {
        object: `s3://${BUCKET}/incoming/a\u001b[31m.csv@e1`,
        key: 'incoming/a\u001b[31m.csv',
        etag: 'e1',
        outcome: 'retried' as const,
        previous: {
          status: 'FAILED' as const,
          attempts: 1,
          errorType: 'AccessDenied',
          errorMessage: 'Access Denied',
          records: 0,
          rejected: 0,
        },
      },
      {
        object: `s3://${BUCKET}/incoming/b.csv@e2`,
        key: 'incoming/b.csv',
        etag: 'e2',
        outcome: 'refused' as const,
        reason: 'it is SUCCESS',
      },
    ];
    // Act
    const text = retryText(results);
    // Assess
    expect(text).not.toContain('\u001b');
    expect(text).toContain('RETRIED');
    expect(text).toContain('was      FAILED after 1 attempt(s): AccessDenied: Access Denied');
    expect(text).toContain('why      it is SUCCESS');
    expect(text).toContain(
      '2 object version(s): 1 sent to the s3-trigger again, 1 refused, 0 changed meanwhile',
    );
    expect(retryText([])).toMatch(/no FAILED object version found/);
    expect(retryExitCode([])).toBe(3);
  });
});
