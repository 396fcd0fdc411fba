import {
  ConditionalCheckFailedException,
  DynamoDBClient,
  TransactionCanceledException,
} from '@aws-sdk/client-dynamodb';
import {
  BatchWriteCommand,
  DynamoDBDocumentClient,
  GetCommand,
  QueryCommand,
  TransactWriteCommand,
  UpdateCommand,
} from '@aws-sdk/lib-dynamodb';
import { mockClient } from 'aws-sdk-client-mock';
import { afterEach, describe, expect, it } from 'vitest';
import { LeaseLostError, TransientError } from '#shared/errors.ts';
import { type Checkpoint, Ledger, type LedgerItem, type PartRange } from '#shared/ledger.ts';

const file = { bucket: 'b', key: 'incoming/a.csv', etag: 'e1' };
const NOW = 1_700_000_000_000;
const conditionFailed = () =>
  new ConditionalCheckFailedException({ message: 'The conditional request failed', $metadata: {} });
const CHECKPOINT: Checkpoint = {
  kind: 'byte',
  position: 4096,
  row: 120,
  records: 118,
  rejected: 2,
  bytesRead: 8192,
  firstErrors: ['row 7: bad', 'row 9: bad'],
  rejectsKeys: ['rejects/s3/b/incoming/a.csv@e1.ndjson'],
  attempt: 1,
  savedAt: '2023-11-14T22:13:20.000Z',
};
const item = (over: Partial<LedgerItem>): LedgerItem => ({
  pk: 's3://b/incoming/a.csv',
  sk: 'e1',
  bucket: 'b',
  key: 'incoming/a.csv',
  etag: 'e1',
  status: 'PROCESSING',
  attempts: 1,
  records: 0,
  rejected: 0,
  bytesRead: 0,
  createdAt: 'x',
  updatedAt: 'x',
  ...over,
});

describe('Ledger', () => {
  const ddb = mockClient(DynamoDBDocumentClient);
  const ledger = new Ledger(DynamoDBDocumentClient.from(new DynamoDBClient({})), 'ledger', {
    leaseSeconds: 60,
    maxAttempts: 3,
    now: () => NOW,
  });
  afterEach(() => ddb.reset());

  it('claims a new object version with one conditional write that sets the lease', async () => {
    // Prepare
    ddb.on(UpdateCommand).resolves({ Attributes: { attempts: 1 } });
    // Act
    const out = await ledger.claim(file, 'w1', { size: 10, versionId: 'v1' });
    // Assess
    expect(out).toEqual({ claimed: true, attempt: 1 });
    const input = ddb.commandCalls(UpdateCommand)[0]?.args[0].input;
    expect(input?.Key).toEqual({ pk: 's3://b/incoming/a.csv', sk: 'e1' });
    expect(input?.ConditionExpression).toContain('attribute_not_exists(pk)');
    expect(input?.ConditionExpression).toContain('leaseExpiresAt < :now AND attempts < :max');
    expect(input?.ConditionExpression).toContain(
      '#status = :failed AND retryable = :true AND attempts < :max',
    );
    expect(input?.ExpressionAttributeValues).toMatchObject({
      ':processing': 'PROCESSING',
      ':owner': 'w1',
      ':expires': NOW + 60_000,
      ':now': NOW,
      ':max': 3,
      ':size': 10,
      ':versionId': 'v1',
    });
  });

  it('reports a duplicate when the version already SUCCEEDED', async () => {
    ddb.on(UpdateCommand).rejects(conditionFailed());
    ddb.on(GetCommand).resolves({ Item: item({ status: 'SUCCESS' }) });
    const out = await ledger.claim(file, 'w2');
    expect(out).toMatchObject({ claimed: false, reason: 'duplicate' });
  });

  it('reports in-progress when another worker holds a live lease', async () => {
    ddb.on(UpdateCommand).rejects(conditionFailed());
    ddb.on(GetCommand).resolves({ Item: item({ leaseOwner: 'w1', leaseExpiresAt: NOW + 1000 }) });
    expect(await ledger.claim(file, 'w2')).toMatchObject({ claimed: false, reason: 'in-progress' });
  });

  it('marks FAILED a version whose lease expired with no attempts left', async () => {
    // Prepare
    ddb.on(UpdateCommand).rejectsOnce(conditionFailed()).resolves({});
    ddb.on(GetCommand).resolves({ Item: item({ leaseOwner: 'w1', leaseExpiresAt: NOW - 1, attempts: 3 }) });
    // Act
    const out = await ledger.claim(file, 'w2');
    // Assess
    expect(out).toMatchObject({ claimed: false, reason: 'exhausted' });
    const expire = ddb.commandCalls(UpdateCommand)[1]?.args[0].input;
    expect(expire?.ConditionExpression).toBe(
      '#status = :processing AND leaseOwner = :owner AND leaseExpiresAt = :expires',
    );
    expect(expire?.ExpressionAttributeValues).toMatchObject({
      ':failed': 'FAILED',
      ':false': false,
      ':type': 'LeaseExpiredError',
    });
  });

  it('claims a split file whose plan is recorded after its lease expired, even with no attempts left', async () => {
    // Prepare: the coordinator recorded 4 parts, then died; attempts are used up.
    ddb.on(UpdateCommand).resolves({ Attributes: { attempts: 4, parts: 4 } });
    // Act
    const out = await ledger.claim(file, 'w2');
    // Assess: claimed to announce the recorded parts (only `parts` lifts the limit).
    expect(out).toEqual({ claimed: true, attempt: 4, parts: 4, lastAttempt: true });
    const input = ddb.commandCalls(UpdateCommand)[0]?.args[0].input;
    expect(input?.ConditionExpression).toContain(
      '(#status = :processing AND leaseExpiresAt < :now AND attribute_exists(parts))',
    );
  });

  it('reports failed for a permanently FAILED version', async () => {
    ddb.on(UpdateCommand).rejects(conditionFailed());
    ddb.on(GetCommand).resolves({ Item: item({ status: 'FAILED', retryable: false }) });
    expect(await ledger.claim(file, 'w2')).toMatchObject({ claimed: false, reason: 'failed' });
  });

  it('completes only as the lease owner', async () => {
    // Prepare
    ddb.on(UpdateCommand).resolves({});
    // Act
    await ledger.succeed(file, 'w1', {
      records: 5,
      rejected: 1,
      bytesRead: 100,
      durationMs: 7,
      firstErrors: ['row 2: bad'],
    });
    // Assess
    const input = ddb.commandCalls(UpdateCommand)[0]?.args[0].input;
    expect(input?.ConditionExpression).toBe('#status = :processing AND leaseOwner = :owner');
    expect(input?.ExpressionAttributeValues).toMatchObject({
      ':owner': 'w1',
      ':success': 'SUCCESS',
      ':records': 5,
      ':rejected': 1,
      ':bytesRead': 100,
      ':firstErrors': ['row 2: bad'],
    });
    expect(input?.UpdateExpression).toContain('REMOVE leaseOwner, leaseExpiresAt');
  });

  it('throws LeaseLostError when someone else owns the lease', async () => {
    ddb.on(UpdateCommand).rejects(conditionFailed());
    await expect(
      ledger.heartbeat(file, 'w1', { records: 1, rejected: 0, bytesRead: 1 }),
    ).rejects.toBeInstanceOf(LeaseLostError);
    await expect(
      ledger.fail(file, 'w1', {
        records: 0,
        rejected: 0,
        bytesRead: 0,
        durationMs: 1,
        firstErrors: [],
        errorType: 'X',
        errorMessage: 'y',
        retryable: false,
      }),
    ).rejects.toBeInstanceOf(LeaseLostError);
  });

  it('records a permanent failure as not retryable', async () => {
    ddb.on(UpdateCommand).resolves({});
    await ledger.fail(file, 'w1', {
      records: 2,
      rejected: 0,
      bytesRead: 9,
      durationMs: 1,
      firstErrors: [],
      errorType: 'MalformedFileError',
      errorMessage: 'bad quote (at line 3)',
      retryable: false,
    });
    expect(ddb.commandCalls(UpdateCommand)[0]?.args[0].input.ExpressionAttributeValues).toMatchObject({
      ':failed': 'FAILED',
      ':retryable': false,
      ':type': 'MalformedFileError',
      ':msg': 'bad quote (at line 3)',
    });
  });

  it('extends the lease on heartbeat', async () => {
    ddb.on(UpdateCommand).resolves({});
    await ledger.heartbeat(file, 'w1', { records: 10, rejected: 0, bytesRead: 500 });
    expect(ddb.commandCalls(UpdateCommand)[0]?.args[0].input.ExpressionAttributeValues).toMatchObject({
      ':expires': NOW + 60_000,
      ':records': 10,
    });
  });

  it('skips only a version it does not find processed', async () => {
    ddb.on(UpdateCommand).resolvesOnce({}).rejects(conditionFailed());
    expect(await ledger.skip(file, 'unsupported file type')).toBe(true);
    expect(await ledger.skip(file, 'unsupported file type')).toBe(false);
    expect(ddb.commandCalls(UpdateCommand)[0]?.args[0].input.ExpressionAttributeValues).toMatchObject({
      ':skipped': 'SKIPPED',
      ':msg': 'unsupported file type',
    });
  });

  it('counts a duplicate event on a SUCCESS item', async () => {
    ddb.on(UpdateCommand).resolves({});
    await ledger.recordDuplicate(file);
    const input = ddb.commandCalls(UpdateCommand)[0]?.args[0].input;
    expect(input?.UpdateExpression).toContain('ADD duplicates :one');
    expect(input?.ConditionExpression).toBe('#status = :success');
  });

  it('registers a version as DISCOVERED only when it is new', async () => {
    ddb.on(UpdateCommand).resolvesOnce({}).rejects(conditionFailed());
    expect(await ledger.discover(file, { size: 3 })).toBe(true);
    expect(await ledger.discover(file)).toBe(false);
  });

  describe('checkpoints', () => {
    it('hands a retried attempt the checkpoint an earlier attempt left', async () => {
      // Prepare
      ddb.on(UpdateCommand).resolves({ Attributes: { attempts: 2, checkpoint: CHECKPOINT } });
      // Act
      const out = await ledger.claim(file, 'w2');
      // Assess
      expect(out).toEqual({ claimed: true, attempt: 2, checkpoint: CHECKPOINT });
      const input = ddb.commandCalls(UpdateCommand)[0]?.args[0].input;
      expect(input?.ReturnValues).toBe('ALL_NEW');
      // The checkpoint itself survives the claim; a previous attempt's resumedFrom does not.
      expect(input?.UpdateExpression).not.toMatch(/REMOVE[^=]*checkpoint/);
      expect(input?.UpdateExpression).toMatch(/REMOVE .*resumedFrom/);
    });

    it('claims a first attempt without a checkpoint', async () => {
      ddb.on(UpdateCommand).resolves({ Attributes: { attempts: 1 } });
      expect(await ledger.claim(file, 'w1')).toEqual({ claimed: true, attempt: 1 });
    });

    it('writes a checkpoint with the heartbeat, only as the lease owner', async () => {
      // Prepare
      ddb.on(UpdateCommand).resolves({});
      // Act
      await ledger.heartbeat(file, 'w1', { records: 118, rejected: 2, bytesRead: 8192 }, CHECKPOINT);
      // Assess
      const input = ddb.commandCalls(UpdateCommand)[0]?.args[0].input;
      expect(input?.ConditionExpression).toBe('#status = :processing AND leaseOwner = :owner');
      expect(input?.UpdateExpression).toContain('checkpoint = :checkpoint');
      expect(input?.ExpressionAttributeValues).toMatchObject({
        ':owner': 'w1',
        ':checkpoint': CHECKPOINT,
        ':expires': NOW + 60_000,
        ':records': 118,
      });
    });

    it('does not touch the checkpoint on a plain heartbeat', async () => {
      ddb.on(UpdateCommand).resolves({});
      await ledger.heartbeat(file, 'w1', { records: 1, rejected: 0, bytesRead: 1 });
      expect(ddb.commandCalls(UpdateCommand)[0]?.args[0].input.UpdateExpression).not.toContain('checkpoint');
    });

    it('hands a file over as its owner: the lease expires now and the attempt is given back', async () => {
      // Prepare
      ddb.on(UpdateCommand).resolves({});
      // Act
      await ledger.handOver(file, 'w1');
      // Assess
      const input = ddb.commandCalls(UpdateCommand)[0]?.args[0].input;
      expect(input?.ConditionExpression).toBe('#status = :processing AND leaseOwner = :owner');
      expect(input?.UpdateExpression).toContain('leaseExpiresAt = :expired');
      expect(input?.UpdateExpression).toContain('attempts = attempts - :one');
      expect(input?.UpdateExpression).not.toMatch(/checkpoint|#status =/);
      // Already expired for the claim's `leaseExpiresAt < :now`.
      expect(input?.ExpressionAttributeValues?.[':expired']).toBeLessThan(NOW);
      expect(input?.ExpressionAttributeValues).toMatchObject({ ':owner': 'w1', ':one': 1 });
    });

    it('hands a file over without giving the attempt back when the attempt made no progress', async () => {
      // Prepare
      ddb.on(UpdateCommand).resolves({});
      // Act
      await ledger.handOver(file, 'w1', false);
      // Assess
      const input = ddb.commandCalls(UpdateCommand)[0]?.args[0].input;
      expect(input?.ConditionExpression).toBe('#status = :processing AND leaseOwner = :owner');
      expect(input?.UpdateExpression).toContain('leaseExpiresAt = :expired');
      expect(input?.UpdateExpression).not.toContain('attempts');
      expect(input?.UpdateExpression).toContain(
        'stalledHandOvers = if_not_exists(stalledHandOvers, :zero) + :one',
      );
      expect(input?.UpdateExpression).toContain('handOvers = if_not_exists(handOvers, :zero) + :one');
    });

    it('refuses to hand over a file whose lease another worker holds', async () => {
      ddb.on(UpdateCommand).rejects(conditionFailed());
      await expect(ledger.handOver(file, 'w1')).rejects.toBeInstanceOf(LeaseLostError);
    });

    it('throws LeaseLostError when the lease was lost before the checkpoint was written', async () => {
      ddb.on(UpdateCommand).rejects(conditionFailed());
      await expect(
        ledger.heartbeat(file, 'w1', { records: 118, rejected: 2, bytesRead: 8192 }, CHECKPOINT),
      ).rejects.toBeInstanceOf(LeaseLostError);
    });

    it('drops the checkpoint on SUCCESS and records where the attempt resumed from and every rejects object', async () => {
      // Prepare
      ddb.on(UpdateCommand).resolves({});
      const keys = [
        'rejects/s3/b/incoming/a.csv@e1.ndjson',
        'rejects/s3/b/incoming/a.csv@e1.from-row-121.attempt-2.ndjson',
      ];
      // Act
      await ledger.succeed(file, 'w2', {
        records: 300,
        rejected: 4,
        bytesRead: 9000,
        durationMs: 5,
        firstErrors: [],
        rejectsKey: keys[0],
        rejectsKeys: keys,
        resumedFrom: CHECKPOINT,
      });
      // Assess
      const input = ddb.commandCalls(UpdateCommand)[0]?.args[0].input;
      expect(input?.UpdateExpression).toMatch(/REMOVE leaseOwner, leaseExpiresAt, checkpoint$/);
      expect(input?.ExpressionAttributeValues).toMatchObject({
        ':resumedFrom': CHECKPOINT,
        ':rejectsKeys': keys,
        ':rejectsKey': keys[0],
      });
    });

    it('keeps the checkpoint through a retryable failure and drops it with a permanent one', async () => {
      // Prepare
      ddb.on(UpdateCommand).resolves({});
      const failure = {
        records: 2,
        rejected: 0,
        bytesRead: 9,
        durationMs: 1,
        firstErrors: [],
        errorType: 'SlowDown',
        errorMessage: 'slow down',
      };
      // Act
      await ledger.fail(file, 'w1', { ...failure, retryable: true });
      await ledger.fail(file, 'w1', { ...failure, retryable: false });
      // Assess
      const [retryable, permanent] = ddb
        .commandCalls(UpdateCommand)
        .map((c) => c.args[0].input.UpdateExpression);
      expect(retryable).not.toContain('checkpoint');
      expect(permanent).toMatch(/REMOVE leaseOwner, leaseExpiresAt, checkpoint$/);
    });
  });

  describe('split files', () => {
    const part = (n: number) => ({ ...file, part: n });
    const RANGES: PartRange[] = [
      { kind: 'byte', start: 0, end: 1000, row: 0, endRow: 40 },
      { kind: 'byte', start: 1000, end: 2100, row: 40, endRow: 81 },
    ];
    const partItem = (n: number, over: Partial<LedgerItem>): LedgerItem =>
      item({
        sk: `e1#part-00000${n}`,
        part: n,
        range: RANGES[n] as PartRange,
        status: 'SUCCESS',
        ...over,
      });
    const done = { records: 5, rejected: 1, bytesRead: 100, durationMs: 7, firstErrors: ['row 2: bad'] };

    it('keys a part after its file, in part order', async () => {
      // Prepare
      ddb.on(UpdateCommand).resolves({ Attributes: { attempts: 1, range: RANGES[1] } });
      // Act
      const out = await ledger.claim(part(1), 'w1');
      // Assess
      expect(out).toEqual({ claimed: true, attempt: 1, range: RANGES[1] });
      expect(ddb.commandCalls(UpdateCommand)[0]?.args[0].input.Key).toEqual({
        pk: 's3://b/incoming/a.csv',
        sk: 'e1#part-000001',
      });
    });

    it('records the plan: each part DISCOVERED with its range, then the count on the file as its owner', async () => {
      // Prepare
      ddb.on(BatchWriteCommand).resolves({});
      ddb.on(UpdateCommand).resolves({});
      // Act
      await ledger.planParts(file, 'w1', RANGES, { versionId: 'v1' });
      // Assess
      const puts = ddb.commandCalls(BatchWriteCommand)[0]?.args[0].input.RequestItems?.ledger ?? [];
      expect(puts.map((r) => r.PutRequest?.Item)).toEqual([
        expect.objectContaining({
          sk: 'e1#part-000000',
          status: 'DISCOVERED',
          part: 0,
          range: RANGES[0],
          versionId: 'v1',
        }),
        expect.objectContaining({
          sk: 'e1#part-000001',
          status: 'DISCOVERED',
          part: 1,
          range: RANGES[1],
          attempts: 0,
        }),
      ]);
      const update = ddb.commandCalls(UpdateCommand)[0]?.args[0].input;
      expect(update?.Key).toEqual({ pk: 's3://b/incoming/a.csv', sk: 'e1' });
      expect(update?.ConditionExpression).toBe('#status = :processing AND leaseOwner = :owner');
      expect(update?.ExpressionAttributeValues).toMatchObject({ ':parts': 2, ':owner': 'w1' });
    });

    it('fails transiently, the file left to be retried, when DynamoDB keeps leaving part items unprocessed', async () => {
      // Prepare
      ddb.on(BatchWriteCommand).callsFake((input: { RequestItems: Record<string, unknown[]> }) => ({
        UnprocessedItems: input.RequestItems,
      }));
      // Act
      const planning = ledger.planParts(file, 'w1', RANGES);
      // Assess
      await expect(planning).rejects.toBeInstanceOf(TransientError);
      expect(ddb.commandCalls(UpdateCommand)).toHaveLength(0);
    });

    it('reports a SPLIT file as split, not in progress', async () => {
      ddb.on(UpdateCommand).rejects(conditionFailed());
      ddb.on(GetCommand).resolves({ Item: item({ status: 'SPLIT', parts: 2 }) });
      expect(await ledger.claim(file, 'w2')).toMatchObject({ claimed: false, reason: 'split' });
    });

    it('ends a part and counts it on its file in one transaction; a retryable failure is not counted', async () => {
      // Prepare
      ddb.on(TransactWriteCommand).resolves({});
      ddb.on(UpdateCommand).resolves({});
      const failure = { ...done, errorType: 'X', errorMessage: 'y' };
      // Act
      await ledger.succeed(part(0), 'w1', done);
      await ledger.fail(part(1), 'w1', { ...failure, retryable: false });
      await ledger.fail(part(1), 'w1', { ...failure, retryable: true });
      // Assess
      const [ok, failed] = ddb.commandCalls(TransactWriteCommand).map((c) => c.args[0].input.TransactItems);
      expect(ok?.[0]?.Update?.Key).toEqual({ pk: 's3://b/incoming/a.csv', sk: 'e1#part-000000' });
      expect(ok?.[0]?.Update?.ConditionExpression).toBe('#status = :processing AND leaseOwner = :owner');
      expect(ok?.[1]?.Update).toMatchObject({
        Key: { pk: 's3://b/incoming/a.csv', sk: 'e1' },
        ConditionExpression: 'attribute_exists(parts)',
        UpdateExpression: 'ADD partsDone :one',
      });
      expect(failed?.[1]?.Update?.UpdateExpression).toBe('ADD partsDone :one, partsFailed :one');
      // The retryable failure: a plain update of the part, nothing counted.
      expect(ddb.commandCalls(UpdateCommand)).toHaveLength(1);
    });

    it('throws LeaseLostError when the transaction fails on the part, not on the count', async () => {
      // Prepare
      ddb.on(TransactWriteCommand).rejects(
        new TransactionCanceledException({
          message: 'cancelled',
          $metadata: {},
          CancellationReasons: [{ Code: 'ConditionalCheckFailed' }, { Code: 'None' }],
        }),
      );
      // Act / Assess
      await expect(ledger.succeed(part(0), 'w1', done)).rejects.toBeInstanceOf(LeaseLostError);
    });

    it('tries a transaction again that a concurrent part cancelled (nothing was applied)', async () => {
      // Prepare: two parts end at once; DynamoDB cancels one transaction with TransactionConflict.
      ddb
        .on(TransactWriteCommand)
        .rejectsOnce(
          new TransactionCanceledException({
            message: 'cancelled',
            $metadata: {},
            CancellationReasons: [{ Code: 'None' }, { Code: 'TransactionConflict' }],
          }),
        )
        .resolves({});
      // Act
      await ledger.succeed(part(1), 'w1', done);
      // Assess
      expect(ddb.commandCalls(TransactWriteCommand)).toHaveLength(2);
    });

    it('ends the file once every part has: totals, first errors and rejects objects in part order', async () => {
      // Prepare
      ddb.on(GetCommand).resolves({
        Item: item({
          status: 'SPLIT',
          parts: 2,
          partsDone: 2,
          partsFailed: 0,
          startedAt: '2023-11-14T22:13:10.000Z',
        }),
      });
      ddb.on(QueryCommand).resolves({
        Items: [
          partItem(1, {
            records: 30,
            rejected: 2,
            bytesRead: 1100,
            firstErrors: ['row 50: b'],
            rejectsKey: 'r1',
          }),
          partItem(0, {
            records: 39,
            rejected: 1,
            bytesRead: 1000,
            firstErrors: ['row 3: a'],
            rejectsKeys: ['r0', 'r0b'],
          }),
        ],
      });
      ddb.on(UpdateCommand).resolves({});
      // Act
      const out = await ledger.finishSplit(file, 10);
      // Assess
      expect(out).toMatchObject({
        status: 'SUCCESS',
        parts: 2,
        partsFailed: 0,
        stats: {
          records: 69,
          rejected: 3,
          bytesRead: 2100,
          durationMs: 10_000,
          firstErrors: ['row 3: a', 'row 50: b'],
          rejectsKey: 'r0',
          rejectsKeys: ['r0', 'r0b', 'r1'],
        },
      });
      const update = ddb.commandCalls(UpdateCommand)[0]?.args[0].input;
      expect(update?.ConditionExpression).toBe('#status = :split AND partsDone = :parts');
      expect(update?.ExpressionAttributeValues).toMatchObject({
        ':status': 'SUCCESS',
        ':records': 69,
        ':parts': 2,
      });
    });

    it('ends the file FAILED for good when a part failed, naming it', async () => {
      // Prepare
      ddb
        .on(GetCommand)
        .resolves({ Item: item({ status: 'SPLIT', parts: 2, partsDone: 2, partsFailed: 1 }) });
      ddb.on(QueryCommand).resolves({
        Items: [
          partItem(0, {}),
          partItem(1, { status: 'FAILED', errorType: 'MalformedFileError', errorMessage: 'unclosed quote' }),
        ],
      });
      ddb.on(UpdateCommand).resolves({});
      // Act
      const out = await ledger.finishSplit(file, 10);
      // Assess
      expect(out).toMatchObject({ status: 'FAILED', partsFailed: 1 });
      expect(ddb.commandCalls(UpdateCommand)[0]?.args[0].input.ExpressionAttributeValues).toMatchObject({
        ':status': 'FAILED',
        ':false': false,
        ':type': 'MalformedFileError',
        ':msg': '1 of 2 parts failed; part 1 (rows after 40): unclosed quote',
      });
    });

    it('leaves the file alone while parts are still running, or when another caller ended it first', async () => {
      // Prepare
      ddb.on(GetCommand).resolvesOnce({ Item: item({ status: 'SPLIT', parts: 2, partsDone: 1 }) });
      // Act
      const running = await ledger.finishSplit(file, 10);
      ddb.on(GetCommand).resolves({ Item: item({ status: 'SPLIT', parts: 2, partsDone: 2 }) });
      ddb.on(QueryCommand).resolves({ Items: [partItem(0, {}), partItem(1, {})] });
      ddb.on(UpdateCommand).rejects(conditionFailed());
      const raced = await ledger.finishSplit(file, 10);
      // Assess
      expect(running).toBeUndefined();
      expect(raced).toBeUndefined();
      expect(ddb.commandCalls(UpdateCommand)).toHaveLength(1);
    });
  });

  describe('attempts running out', () => {
    const part = { ...file, part: 1 };
    const failure = {
      records: 2,
      rejected: 1,
      bytesRead: 9,
      durationMs: 1,
      firstErrors: ['row 2: bad'],
      errorType: 'SlowDown',
      errorMessage: 'slow down',
    };
    /** DynamoDB's answer to a failed condition with ReturnValuesOnConditionCheckFailure ALL_OLD. */
    const conditionFailedOn = (old: Record<string, unknown>) =>
      new ConditionalCheckFailedException({
        message: 'The conditional request failed',
        $metadata: {},
        Item: old as never,
      });
    const own = (attempts: number, owner = 'w1') => ({
      status: { S: 'PROCESSING' },
      leaseOwner: { S: owner },
      attempts: { N: String(attempts) },
    });

    it('tells the claim of the last attempt that no attempt is left, and the first event time', async () => {
      // Prepare
      ddb
        .on(UpdateCommand)
        .resolvesOnce({ Attributes: { attempts: 2, eventTime: '2024-01-01T00:00:00.000Z' } })
        .resolves({ Attributes: { attempts: 3 } });
      // Act
      const second = await ledger.claim(file, 'w1');
      const third = await ledger.claim(file, 'w2');
      // Assess
      expect(second).toEqual({ claimed: true, attempt: 2, eventTime: '2024-01-01T00:00:00.000Z' });
      expect(third).toEqual({ claimed: true, attempt: 3, lastAttempt: true });
    });

    it('records a transient failure as retryable only while the item has attempts left', async () => {
      // Prepare
      ddb.on(UpdateCommand).resolves({});
      // Act
      const out = await ledger.fail(part, 'w1', { ...failure, retryable: true });
      // Assess: one plain update, nothing counted on the file, the checkpoint kept.
      expect(out).toBe('retryable');
      const input = ddb.commandCalls(UpdateCommand)[0]?.args[0].input;
      expect(input?.ConditionExpression).toBe(
        '#status = :processing AND leaseOwner = :owner AND attempts < :max',
      );
      expect(input?.ReturnValuesOnConditionCheckFailure).toBe('ALL_OLD');
      expect(input?.UpdateExpression).not.toContain('checkpoint');
      expect(input?.ExpressionAttributeValues).toMatchObject({
        ':true': true,
        ':max': 3,
        ':type': 'SlowDown',
      });
      expect(ddb.commandCalls(TransactWriteCommand)).toHaveLength(0);
    });

    it('ends a part failing transiently on its last attempt FAILED for good, counted on its file in the same transaction', async () => {
      // Prepare: the retryable write finds the item still ours, on its third attempt of three.
      ddb.on(UpdateCommand).rejects(conditionFailedOn(own(3)));
      ddb.on(TransactWriteCommand).resolves({});
      // Act
      const out = await ledger.fail(part, 'w1', { ...failure, retryable: true });
      // Assess
      expect(out).toBe('final');
      const [end, count] = ddb.commandCalls(TransactWriteCommand)[0]?.args[0].input.TransactItems ?? [];
      expect(end?.Update?.Key).toEqual({ pk: 's3://b/incoming/a.csv', sk: 'e1#part-000001' });
      expect(end?.Update?.ConditionExpression).toBe('#status = :processing AND leaseOwner = :owner');
      expect(end?.Update?.UpdateExpression).toMatch(/REMOVE leaseOwner, leaseExpiresAt, checkpoint$/);
      expect(end?.Update?.ExpressionAttributeValues).toMatchObject({
        ':failed': 'FAILED',
        ':retryable': false,
        ':type': 'SlowDown',
        ':msg': 'slow down (still failing after 3 attempts: no attempt is left)',
        ':records': 2,
      });
      expect(count?.Update).toMatchObject({
        Key: { pk: 's3://b/incoming/a.csv', sk: 'e1' },
        UpdateExpression: 'ADD partsDone :one, partsFailed :one',
      });
    });

    it('ends a whole file failing transiently on its last attempt FAILED for good', async () => {
      // Prepare
      ddb
        .on(UpdateCommand)
        .rejectsOnce(conditionFailedOn(own(3)))
        .resolves({});
      // Act
      const out = await ledger.fail(file, 'w1', { ...failure, retryable: true });
      // Assess
      expect(out).toBe('final');
      const end = ddb.commandCalls(UpdateCommand)[1]?.args[0].input;
      expect(end?.ExpressionAttributeValues).toMatchObject({
        ':retryable': false,
        ':msg': 'slow down (still failing after 3 attempts: no attempt is left)',
      });
    });

    it('throws LeaseLostError when a transient failure finds the lease taken, and writes nothing more', async () => {
      // Prepare
      ddb.on(UpdateCommand).rejects(conditionFailedOn(own(2, 'w2')));
      // Act / Assess
      await expect(ledger.fail(part, 'w1', { ...failure, retryable: true })).rejects.toBeInstanceOf(
        LeaseLostError,
      );
      expect(ddb.commandCalls(UpdateCommand)).toHaveLength(1);
      expect(ddb.commandCalls(TransactWriteCommand)).toHaveLength(0);
    });

    it('ends an item found FAILED and retryable with no attempt left, once, with the rejects its checkpoint lists', async () => {
      // Prepare: left so by an older version; two redeliveries find it.
      const keys = [
        'rejects/s3/b/incoming/a.csv@e1.ndjson',
        'rejects/s3/b/incoming/a.csv@e1.from-row-121.attempt-2.ndjson',
      ];
      const stuck = item({
        status: 'FAILED',
        retryable: true,
        attempts: 3,
        errorType: 'SlowDown',
        errorMessage: 'slow down',
        checkpoint: { ...CHECKPOINT, rejectsKeys: keys },
      });
      ddb.on(GetCommand).resolves({ Item: stuck });
      ddb
        .on(UpdateCommand)
        .rejectsOnce(conditionFailed())
        .resolvesOnce({})
        .rejectsOnce(conditionFailed())
        .rejects(conditionFailed());
      // Act
      const first = await ledger.claim(file, 'w2');
      const second = await ledger.claim(file, 'w3');
      // Assess: only the caller that ended it is told `exhausted` (and counts it).
      expect(first).toMatchObject({ claimed: false, reason: 'exhausted' });
      expect(second).toMatchObject({ claimed: false, reason: 'failed' });
      const end = ddb.commandCalls(UpdateCommand)[1]?.args[0].input;
      expect(end?.ConditionExpression).toBe(
        '#status = :failed AND retryable = :true AND attempts = :attempts',
      );
      expect(end?.UpdateExpression).toMatch(/REMOVE checkpoint$/);
      expect(end?.ExpressionAttributeValues).toMatchObject({
        ':false': false,
        ':attempts': 3,
        ':msg': 'slow down (still failing after 3 attempts: no attempt is left)',
        ':rejectsKey': keys[0],
        ':rejectsKeys': keys,
      });
    });

    it('counts a part found FAILED and retryable with no attempt left on its file, in the same transaction', async () => {
      // Prepare
      ddb.on(UpdateCommand).rejects(conditionFailed());
      ddb.on(GetCommand).resolves({
        Item: item({ sk: 'e1#part-000001', part: 1, status: 'FAILED', retryable: true, attempts: 3 }),
      });
      ddb.on(TransactWriteCommand).resolves({});
      // Act
      const out = await ledger.claim(part, 'w2');
      // Assess
      expect(out).toMatchObject({ claimed: false, reason: 'exhausted' });
      const [end, count] = ddb.commandCalls(TransactWriteCommand)[0]?.args[0].input.TransactItems ?? [];
      expect(end?.Update?.ConditionExpression).toBe(
        '#status = :failed AND retryable = :true AND attempts = :attempts',
      );
      expect(count?.Update?.UpdateExpression).toBe('ADD partsDone :one, partsFailed :one');
    });

    it('reports an expired lease with no attempt left as exhausted only to the caller that ended it', async () => {
      // Prepare: two redeliveries find the crashed worker's item; the second loses the race to end it.
      ddb.on(UpdateCommand).rejectsOnce(conditionFailed()).resolvesOnce({}).rejects(conditionFailed());
      ddb.on(GetCommand).resolves({ Item: item({ leaseOwner: 'w1', leaseExpiresAt: NOW - 1, attempts: 3 }) });
      // Act
      const first = await ledger.claim(file, 'w2');
      const second = await ledger.claim(file, 'w3');
      // Assess
      expect(first).toMatchObject({ claimed: false, reason: 'exhausted' });
      expect(second).toMatchObject({ claimed: false, reason: 'in-progress' });
    });

    it('never skips a part: a skipped part would never be counted on its file', async () => {
      await expect(ledger.skip(part, 'gone', 'w1')).rejects.toThrow(/cannot be skipped/);
      expect(ddb.commandCalls(UpdateCommand)).toHaveLength(0);
    });
  });
});
