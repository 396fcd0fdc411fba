import { DynamoDBClient, TransactionCanceledException } from '@aws-sdk/client-dynamodb';
import { PutObjectCommand, S3Client } from '@aws-sdk/client-s3';
import {
  BatchGetCommand,
  DynamoDBDocumentClient,
  GetCommand,
  TransactWriteCommand,
  type TransactWriteCommandInput,
} from '@aws-sdk/lib-dynamodb';
import { mockClient } from 'aws-sdk-client-mock';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { EMPTY_STATE, welford, zScoreModel } from '../../../functions/scorer/model.ts';
import { scoreBatch, scoreKey, scoreMessage, seriesKey } from '../../../functions/scorer/scorer.ts';
import { PermanentError, TransientError } from '../../../shared/errors.ts';
import { deflateMessage, encodeSignal, type Origin, type Signal } from '../../../shared/signal.ts';
import { quietObservability } from '../../helpers/observability.ts';

const signal = (i: number, over: Partial<Signal> = {}): Signal => ({
  id: `s3://b/k@e#${i}`,
  name: 'cpu',
  value: i,
  source: 'k',
  timestamp: '2024-01-01T00:00:00.000Z',
  origin: { kind: 's3', ref: `s3://b/k@e#${i}` },
  ...over,
});
const body = (signals: unknown[]) =>
  JSON.stringify({ v: 1, origin: { kind: 's3', ref: 's3://b/k@e' }, signals });

// One mock per client class for the file: a second mockClient of the same class would undo the first.
const ddb = mockClient(DynamoDBDocumentClient);
const s3 = mockClient(S3Client);

describe('scoreMessage', () => {
  let obs: ReturnType<typeof quietObservability>;
  const deps = () => ({
    doc: DynamoDBDocumentClient.from(new DynamoDBClient({})),
    s3: new S3Client({}),
    logger: obs.logger,
    metrics: obs.metrics,
    model: zScoreModel({ threshold: 3, minSamples: 2 }),
    config: { scoresTable: 'scores', quarantineBucket: 'qb', scoreTtlDays: 90 },
    now: () => Date.parse('2024-01-01T00:00:01.000Z'),
    sleep: async () => undefined,
  });
  beforeEach(() => {
    obs = quietObservability();
    ddb.on(BatchGetCommand).resolves({ Responses: { scores: [] } });
    ddb.on(GetCommand).resolves({});
    ddb.on(TransactWriteCommand).resolves({});
    s3.on(PutObjectCommand).resolves({});
  });
  afterEach(() => {
    ddb.reset();
    s3.reset();
  });

  it('writes each score only if absent, in one transaction with the versioned series state', async () => {
    // Prepare
    ddb
      .on(GetCommand)
      .resolves({ Item: { pk: seriesKey('k', 'cpu'), count: 2, mean: 1.5, m2: 0.5, version: 4 } });
    // Act
    const out = await scoreMessage('m1', body([signal(1), signal(2), signal(3)]), deps());
    // Assess
    expect(out).toMatchObject({ scored: 3, duplicates: 0, rejected: 0 });
    const items = ddb.commandCalls(TransactWriteCommand)[0]?.args[0].input.TransactItems ?? [];
    expect(items).toHaveLength(4);
    expect(items[0]?.Put?.Item).toMatchObject({
      pk: scoreKey('s3://b/k@e#1'),
      id: 's3://b/k@e#1',
      value: 1,
      model: 'zscore',
    });
    expect(items[0]?.Put?.ConditionExpression).toBe('attribute_not_exists(pk)');
    expect(items[3]?.Put?.Item).toMatchObject({ pk: seriesKey('k', 'cpu'), count: 5, version: 5 });
    expect(items[3]?.Put?.ConditionExpression).toBe('#version = :version');
    expect(items[3]?.Put?.ExpressionAttributeValues).toEqual({ ':version': 4 });
    expect(obs.total('SignalsScored')).toBe(3);
  });

  it.each([
    [
      '3',
      (origin: Origin) => {
        const entries = [signal(1), signal(2, { id: 'own-2' })].map((s) => encodeSignal(s, origin, 'k'));
        return `{"v":3,"origin":${JSON.stringify(origin)},"source":"k","signals":[${entries.join(',')}]}`;
      },
    ],
    [
      '2',
      (origin: Origin) => {
        const { timestamp, value } = signal(1);
        const entries = [
          { at: '#1', name: 'cpu', value, source: 'k', timestamp },
          { at: '#2', id: 'own-2', name: 'cpu', value, source: 'k', timestamp },
        ];
        return JSON.stringify({ v: 2, origin, signals: entries });
      },
    ],
  ])(
    'reads version %s messages (entries relative to the message origin) as whole signals',
    async (_v, body) => {
      // Prepare: what SignalSender writes (version 3), or wrote before (version 2).
      const origin = { kind: 's3' as const, ref: 's3://b/k@e' };
      // Act
      const out = await scoreMessage('m1', body(origin), deps());
      // Assess
      expect(out).toMatchObject({ scored: 2, rejected: 0 });
      const items = ddb.commandCalls(TransactWriteCommand)[0]?.args[0].input.TransactItems ?? [];
      expect(items.slice(0, 2).map((i) => [i.Put?.Item?.id, i.Put?.Item?.originRef])).toEqual([
        ['s3://b/k@e#1', 's3://b/k@e#1'],
        ['own-2', 's3://b/k@e#2'],
      ]);
    },
  );

  it('drops signals that are already scored (a redelivered message)', async () => {
    ddb
      .on(BatchGetCommand)
      .resolves({ Responses: { scores: [{ id: 's3://b/k@e#1' }, { id: 's3://b/k@e#2' }] } });
    const out = await scoreMessage('m1', body([signal(1), signal(2), signal(3)]), deps());
    expect(out).toMatchObject({ scored: 1, duplicates: 2 });
    const items = ddb.commandCalls(TransactWriteCommand)[0]?.args[0].input.TransactItems ?? [];
    expect(items).toHaveLength(2);
    expect(items[0]?.Put?.Item?.id).toBe('s3://b/k@e#3');
  });

  it('drops a repeated id within one message', async () => {
    const out = await scoreMessage('m1', body([signal(1), signal(1)]), deps());
    expect(out).toMatchObject({ scored: 1, duplicates: 1 });
  });

  it('re-reads the series and retries when a concurrent scorer moved it', async () => {
    // Prepare
    ddb
      .on(TransactWriteCommand)
      .rejectsOnce(new TransactionCanceledException({ message: 'cancelled', $metadata: {} }))
      .resolves({});
    // Act
    const out = await scoreMessage('m1', body([signal(1)]), deps());
    // Assess
    expect(out).toMatchObject({ scored: 1, conflicts: 1 });
    expect(ddb.commandCalls(TransactWriteCommand)).toHaveLength(2);
    expect(ddb.commandCalls(GetCommand)).toHaveLength(2);
  });

  it('fails transiently when the series keeps conflicting', async () => {
    ddb
      .on(TransactWriteCommand)
      .rejects(new TransactionCanceledException({ message: 'cancelled', $metadata: {} }));
    await expect(scoreMessage('m1', body([signal(1)]), deps())).rejects.toBeInstanceOf(TransientError);
  });

  it("fails for good, with DynamoDB's reason, a write it refuses as invalid, instead of retrying it as a conflict", async () => {
    ddb.on(TransactWriteCommand).rejects(
      new TransactionCanceledException({
        message: 'cancelled',
        $metadata: {},
        CancellationReasons: [{ Code: 'None' }, { Code: 'ValidationError', Message: 'Number overflow' }],
      }),
    );
    const act = scoreMessage('m1', body([signal(1)]), deps());
    await expect(act).rejects.toBeInstanceOf(PermanentError);
    await expect(act).rejects.toThrow(/DynamoDB refused the write: Number overflow/);
    expect(ddb.commandCalls(TransactWriteCommand)).toHaveLength(1);
  });

  it('quarantines a value beyond what a series can keep, and scores the rest', async () => {
    const out = await scoreMessage('m1', body([signal(1), { ...signal(2), value: 1e60 }]), deps());
    expect(out).toMatchObject({ scored: 1, rejected: 1 });
  });

  it('never gives a hashed key to a raw id that reads like one', () => {
    const long = 'L'.repeat(1024);
    const hashed = scoreKey(long);
    expect(hashed).toMatch(/^score-sha256#[0-9a-f]{64}$/);
    expect(scoreKey(`sha256:${hashed.slice('score-sha256#'.length)}`)).not.toBe(hashed);
    expect(scoreKey(hashed)).not.toBe(hashed);
  });

  it('quarantines invalid signals and scores the rest', async () => {
    // Act: the message, then the same body again under another message id (redriven from the DLQ)
    const text = body([signal(1), { ...signal(2), value: 'NaN' }, { nope: true }]);
    const out = await scoreMessage('m1', text, deps());
    await scoreMessage('m2', text, deps());
    // Assess: one rejects object for the body, whatever the message id
    expect(out).toMatchObject({ scored: 1, rejected: 2 });
    const put = s3.commandCalls(PutObjectCommand)[0]?.args[0].input;
    expect(put?.Bucket).toBe('qb');
    expect(put?.Key).toMatch(/^rejects\/scorer\/2024-01-01\/[0-9a-f]{32}\.ndjson$/);
    expect(s3.commandCalls(PutObjectCommand)[1]?.args[0].input.Key).toBe(put?.Key);
    const lines = String(put?.Body)
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l));
    expect(lines).toHaveLength(2);
    expect(lines[0]).toMatchObject({ ref: 's3://b/k@e#2', reason: expect.stringMatching(/^value/) });
  });

  it("logs what kind of reason each quarantined signal had, never the record's values (the quarantine keeps them)", async () => {
    // Prepare: a reason that quotes the value, an attribute key of the record's own, a body the JSON parser quotes
    const warn = vi.spyOn(obs.logger, 'warn');
    const text = body([
      signal(1),
      { ...signal(2), value: 7.123456e55 },
      { ...signal(3), attributes: { 'secret-attribute-key': { nested: 'x' } } },
    ]);
    // Act
    await scoreMessage('m1', text, deps());
    await scoreMessage('m2', 'secret-token-XYZ is not json', deps());
    // Assess
    const logged = JSON.stringify(warn.mock.calls);
    expect(logged).not.toContain('7.123456e+55');
    expect(logged).not.toContain('secret-attribute-key');
    expect(logged).not.toContain('secret-token');
    expect(warn).toHaveBeenCalledWith('Quarantined invalid signals', {
      messageId: 'm1',
      rejected: 2,
      reasons: { 'value:custom': 1, 'attributes:invalid_union': 1 },
      rejectsKey: expect.stringMatching(/^rejects\/scorer\//),
    });
    expect(warn).toHaveBeenCalledWith(
      'Quarantined invalid signals',
      expect.objectContaining({ messageId: 'm2', reasons: { 'message:not-json': 1 } }),
    );
    const quarantined = s3
      .commandCalls(PutObjectCommand)
      .map((c) => String(c.args[0].input.Body))
      .join('\n');
    expect(quarantined).toContain('7.123456e+55');
    expect(quarantined).toContain('secret-token');
  });

  it('quarantines a message that is not JSON instead of retrying it', async () => {
    const out = await scoreMessage('m9', 'not json', deps());
    expect(out.rejected).toBe(1);
    const lines = String(s3.commandCalls(PutObjectCommand)[0]?.args[0].input.Body).trim().split('\n');
    expect(JSON.parse(lines[0] ?? '{}')).toMatchObject({ ref: 'sqs:m9', raw: 'not json' });
    expect(ddb.commandCalls(TransactWriteCommand)).toHaveLength(0);
  });

  it('scores a deflated (version 4) message as its plain message, and quarantines one that does not inflate', async () => {
    const origin: Origin = { kind: 's3', ref: 's3://b/k@e' };
    const plain = body([signal(1), signal(2)]);
    const out = await scoreMessage('m1', deflateMessage(plain, origin, 2, 1), deps());
    expect(out).toMatchObject({ scored: 2, rejected: 0 });
    const corrupt = JSON.stringify({ v: 4, origin, count: 2, deflated: 'AAAA' });
    const bad = await scoreMessage('m2', corrupt, deps());
    expect(bad).toMatchObject({ scored: 0, rejected: 1 });
    const lines = String(s3.commandCalls(PutObjectCommand)[0]?.args[0].input.Body).trim().split('\n');
    expect(JSON.parse(lines[0] ?? '{}')).toMatchObject({
      ref: 'sqs:m2',
      reason: expect.stringMatching(/^message's deflated signals do not inflate/),
      record: { v: 4, count: 2 },
    });
  });

  it('splits a large series into transactions of at most 100 items', async () => {
    const signals = Array.from({ length: 250 }, (_, i) => signal(i + 1));
    let version = 0;
    ddb
      .on(GetCommand)
      .callsFake(() => ({ Item: version ? { count: 1, mean: 1, m2: 0, version } : undefined }));
    ddb.on(TransactWriteCommand).callsFake(() => {
      version++;
      return {};
    });
    const out = await scoreMessage('m1', body(signals), deps());
    expect(out.scored).toBe(250);
    const calls = ddb.commandCalls(TransactWriteCommand);
    expect(calls.map((c) => c.args[0].input.TransactItems?.length)).toEqual([100, 100, 53]);
    // The series is read once; each chunk starts from the state the previous one wrote.
    expect(ddb.commandCalls(GetCommand)).toHaveLength(1);
    const seriesPuts = calls.map((c) => c.args[0].input.TransactItems?.at(-1)?.Put);
    expect(seriesPuts.map((p) => p?.ExpressionAttributeValues?.[':version'])).toEqual([undefined, 1, 2]);
    expect(seriesPuts.map((p) => p?.Item?.count)).toEqual([99, 198, 250]);
  });

  it('keeps long keys within DynamoDB limits by hashing them', () => {
    expect(scoreKey('x'.repeat(5000)).length).toBeLessThan(100);
    expect(scoreKey('short')).toBe('score#short');
  });
});

describe('scoreBatch', () => {
  let obs: ReturnType<typeof quietObservability>;
  const deps = () => ({
    doc: DynamoDBDocumentClient.from(new DynamoDBClient({})),
    s3: new S3Client({}),
    logger: obs.logger,
    metrics: obs.metrics,
    model: zScoreModel({ threshold: 3, minSamples: 2 }),
    config: { scoresTable: 'scores', quarantineBucket: 'qb', scoreTtlDays: 90 },
    now: () => Date.parse('2024-01-01T00:00:01.000Z'),
    sleep: async () => undefined,
  });
  const cpu = (i: number) => signal(i, { name: 'cpu' });
  const mem = (i: number) => signal(i, { name: 'mem' });
  type Items = NonNullable<TransactWriteCommandInput['TransactItems']>;
  const transactions = (): Items[] =>
    ddb.commandCalls(TransactWriteCommand).map((c) => c.args[0].input.TransactItems ?? []);
  const seriesWrites = (items: Items) => items.filter((i) => i.Put?.Item?.kind === 'series');
  beforeEach(() => {
    obs = quietObservability();
    ddb.on(BatchGetCommand).resolves({ Responses: { scores: [] } });
    ddb.on(GetCommand).resolves({});
    ddb.on(TransactWriteCommand).resolves({});
    s3.on(PutObjectCommand).resolves({});
  });
  afterEach(() => {
    ddb.reset();
    s3.reset();
  });

  it('writes each series once per batch, however many messages carry it', async () => {
    // Prepare: three messages, two series interleaved in each.
    const messages = [
      { messageId: 'm1', body: body([cpu(1), mem(2), cpu(3)]) },
      { messageId: 'm2', body: body([mem(4), cpu(5)]) },
      { messageId: 'm3', body: body([cpu(6), mem(7), mem(8)]) },
    ];
    // Act
    const out = await scoreBatch(messages, deps());
    // Assess
    expect(out).toMatchObject({ scored: 8, duplicates: 0, seriesWrites: 2 });
    expect(out.failures.size).toBe(0);
    const txs = transactions();
    expect(txs).toHaveLength(2);
    const byName: Record<string, Items> = Object.fromEntries(
      txs.map((items) => [String(seriesWrites(items)[0]?.Put?.Item?.name), items]),
    );
    expect(byName.cpu?.map((i) => i.Put?.Item?.id)).toEqual([
      's3://b/k@e#1',
      's3://b/k@e#3',
      's3://b/k@e#5',
      's3://b/k@e#6',
      undefined,
    ]);
    expect(seriesWrites(byName.cpu ?? [])).toHaveLength(1);
    expect(seriesWrites(byName.mem ?? [])[0]?.Put?.Item).toMatchObject({
      pk: seriesKey('k', 'mem'),
      count: 4,
      version: 1,
    });
    // One series read each, and one lookup of already scored ids for the whole batch.
    expect(ddb.commandCalls(GetCommand)).toHaveLength(2);
    expect(ddb.commandCalls(BatchGetCommand)).toHaveLength(1);
  });

  it('writes the merged state: the same count, mean and M2 as folding every value of the batch', async () => {
    // Prepare
    const stored = [3, 4, 5].reduce(welford, EMPTY_STATE);
    ddb.on(GetCommand).resolves({ Item: { pk: seriesKey('k', 'cpu'), ...stored, version: 7 } });
    const values = [10, 11, 12, 13];
    const messages = [
      { messageId: 'm1', body: body([signal(1, { value: 10 }), signal(2, { value: 11 })]) },
      { messageId: 'm2', body: body([signal(3, { value: 12 }), signal(4, { value: 13 })]) },
    ];
    // Act
    await scoreBatch(messages, deps());
    // Assess
    const expected = [3, 4, 5, ...values].reduce(welford, EMPTY_STATE);
    const [tx] = transactions();
    const series = seriesWrites(tx ?? [])[0]?.Put;
    expect(series?.Item?.count).toBe(expected.count);
    expect(series?.Item?.mean).toBeCloseTo(expected.mean, 12);
    expect(series?.Item?.m2).toBeCloseTo(expected.m2, 10);
    expect(series?.ExpressionAttributeValues).toEqual({ ':version': 7 });
    expect(series?.Item?.version).toBe(8);
  });

  it('drops the already scored subset of a redelivered batch and scores only the rest', async () => {
    // Prepare: m1 was scored before (redelivered), m2 is new; both carry the cpu series.
    ddb
      .on(BatchGetCommand)
      .resolves({ Responses: { scores: [{ id: 's3://b/k@e#1' }, { id: 's3://b/k@e#2' }] } });
    const messages = [
      { messageId: 'm1', body: body([cpu(1), cpu(2)]) },
      { messageId: 'm2', body: body([cpu(3), mem(4)]) },
    ];
    // Act
    const out = await scoreBatch(messages, deps());
    // Assess
    expect(out).toMatchObject({ scored: 2, duplicates: 2 });
    const ids = transactions().flatMap((items) =>
      items.filter((i) => i.Put?.Item?.kind === 'score').map((i) => i.Put?.Item?.id),
    );
    expect(ids.sort()).toEqual(['s3://b/k@e#3', 's3://b/k@e#4']);
    expect(obs.total('SignalsDuplicate')).toBe(2);
  });

  it('skips a series whose signals of this batch were all scored before, without writing it', async () => {
    ddb.on(BatchGetCommand).resolves({ Responses: { scores: [{ id: 's3://b/k@e#1' }] } });
    const out = await scoreBatch([{ messageId: 'm1', body: body([cpu(1), mem(2)]) }], deps());
    expect(out).toMatchObject({ scored: 1, duplicates: 1, seriesWrites: 1 });
    expect(transactions()).toHaveLength(1);
    expect(ddb.commandCalls(GetCommand)).toHaveLength(1);
  });

  it('retries with only the new signals when another scorer committed some of them meanwhile', async () => {
    // Prepare: the lookup finds nothing; then the transaction is cancelled because #2 got scored in between.
    ddb
      .on(BatchGetCommand)
      .resolvesOnce({ Responses: { scores: [] } })
      .resolves({ Responses: { scores: [{ id: 's3://b/k@e#2' }] } });
    ddb
      .on(GetCommand)
      .resolvesOnce({ Item: { pk: seriesKey('k', 'cpu'), count: 2, mean: 1, m2: 0, version: 3 } })
      .resolves({ Item: { pk: seriesKey('k', 'cpu'), count: 3, mean: 1, m2: 0, version: 4 } });
    ddb
      .on(TransactWriteCommand)
      .rejectsOnce(new TransactionCanceledException({ message: 'cancelled', $metadata: {} }))
      .resolves({});
    const messages = [
      { messageId: 'm1', body: body([cpu(1), cpu(2)]) },
      { messageId: 'm2', body: body([cpu(3)]) },
    ];
    // Act
    const out = await scoreBatch(messages, deps());
    // Assess
    expect(out).toMatchObject({ scored: 2, duplicates: 1, conflicts: 1, seriesWrites: 1 });
    expect(out.failures.size).toBe(0);
    const [first, retry] = transactions();
    expect(first).toHaveLength(4);
    expect(retry?.map((i) => i.Put?.Item?.id)).toEqual(['s3://b/k@e#1', 's3://b/k@e#3', undefined]);
    // The retry is conditioned on the re-read version and builds on the re-read state.
    expect(seriesWrites(retry ?? [])[0]?.Put).toMatchObject({
      ExpressionAttributeValues: { ':version': 4 },
      Item: { count: 5, version: 5 },
    });
  });

  it('re-reads a series whose version moved and retries on top of the new state', async () => {
    // Prepare
    ddb
      .on(GetCommand)
      .resolvesOnce({ Item: { pk: seriesKey('k', 'cpu'), count: 2, mean: 1, m2: 0, version: 3 } })
      .resolves({ Item: { pk: seriesKey('k', 'cpu'), count: 10, mean: 1, m2: 0, version: 9 } });
    ddb
      .on(TransactWriteCommand)
      .rejectsOnce(new TransactionCanceledException({ message: 'cancelled', $metadata: {} }))
      .resolves({});
    // Act
    const out = await scoreBatch(
      [
        { messageId: 'm1', body: body([cpu(1)]) },
        { messageId: 'm2', body: body([cpu(2)]) },
      ],
      deps(),
    );
    // Assess
    expect(out).toMatchObject({ scored: 2, conflicts: 1, duplicates: 0 });
    const [first, retry] = transactions().map((items) => seriesWrites(items)[0]?.Put);
    expect(first).toMatchObject({ ExpressionAttributeValues: { ':version': 3 }, Item: { count: 4 } });
    expect(retry).toMatchObject({
      ExpressionAttributeValues: { ':version': 9 },
      Item: { count: 12, version: 10 },
    });
  });

  it('fails only the messages that carry a series that could not be written', async () => {
    // Prepare: every write of the mem series is throttled.
    ddb.on(TransactWriteCommand).callsFake((input: TransactWriteCommandInput) => {
      if (input.TransactItems?.some((i) => i.Put?.Item?.name === 'mem')) {
        throw Object.assign(new Error('Rate exceeded'), { name: 'ThrottlingException' });
      }
      return {};
    });
    const messages = [
      { messageId: 'cpu-only', body: body([cpu(1)]) },
      { messageId: 'both', body: body([cpu(2), mem(3)]) },
      { messageId: 'mem-only', body: body([mem(4)]) },
    ];
    // Act
    const out = await scoreBatch(messages, deps());
    // Assess
    expect([...out.failures.keys()].sort()).toEqual(['both', 'mem-only']);
    expect(out.scored).toBe(2);
  });

  it('keeps the chunks already committed when a later chunk of the series fails', async () => {
    ddb
      .on(TransactWriteCommand)
      .resolvesOnce({})
      .rejects(Object.assign(new Error('boom'), { name: 'InternalServerError' }));
    const signals = Array.from({ length: 120 }, (_, i) => cpu(i + 1));
    const out = await scoreBatch(
      [
        { messageId: 'm1', body: body(signals.slice(0, 60)) },
        { messageId: 'm2', body: body(signals.slice(60)) },
      ],
      deps(),
    );
    expect(out.scored).toBe(99);
    expect([...out.failures.keys()].sort()).toEqual(['m1', 'm2']);
  });

  it('scores a signal id carried by two messages of the batch once', async () => {
    const out = await scoreBatch(
      [
        { messageId: 'm1', body: body([cpu(1)]) },
        { messageId: 'm2', body: body([cpu(1), cpu(2)]) },
      ],
      deps(),
    );
    expect(out).toMatchObject({ scored: 2, duplicates: 1 });
    expect(transactions()[0]).toHaveLength(3);
  });

  it('redelivers a message whose rejects could not be quarantined, and scores the others', async () => {
    s3.on(PutObjectCommand).rejects(Object.assign(new Error('slow down'), { name: 'SlowDown' }));
    const out = await scoreBatch(
      [
        { messageId: 'bad', body: body([cpu(1), { nope: true }]) },
        { messageId: 'good', body: body([cpu(2)]) },
      ],
      deps(),
    );
    expect([...out.failures.keys()]).toEqual(['bad']);
    expect(out.scored).toBe(1);
    expect(transactions()[0]?.[0]?.Put?.Item?.id).toBe('s3://b/k@e#2');
  });
});
