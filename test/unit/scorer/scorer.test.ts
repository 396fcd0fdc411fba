import { DynamoDBClient, TransactionCanceledException } from '@aws-sdk/client-dynamodb';
import { S3Client } from '@aws-sdk/client-s3';
import { BatchGetCommand, DynamoDBDocumentClient } from '@aws-sdk/lib-dynamodb';
import { mockClient } from 'aws-sdk-client-mock';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { PermanentError, TransientError } from '#shared/errors.ts';
import { settings } from '#shared/settings.ts';
import { deflateMessage, encodeSignal, type Origin, type Signal } from '#shared/signal.ts';
import { Bitmap, decodeTokens } from '../../../functions/scorer/blocks.ts';
import { blockKey, dedupeKey, seriesKey, streamIdOf, totalsKey } from '../../../functions/scorer/keys.ts';
import { EMPTY_STATE, welford, zScoreModel } from '../../../functions/scorer/model.ts';
import { decodeRecords, finalKey, pendingKey } from '../../../functions/scorer/score-store.ts';
import { type ScorerDeps, scoreBatch } from '../../../functions/scorer/scorer.ts';
import { quietObservability } from '../../helpers/observability.ts';
import { FakeAws } from './fake-aws.ts';

const FILE = 's3://b/k@e';
const signal = (i: number, over: Partial<Signal> = {}): Signal => ({
  id: `${FILE}#${i}`,
  name: 'cpu',
  value: i,
  source: 'k',
  timestamp: '2024-01-01T00:00:00.000Z',
  origin: { kind: 's3', ref: `${FILE}#${i}` },
  ...over,
});
const body = (signals: unknown[]) => JSON.stringify({ v: 3, origin: { kind: 's3', ref: FILE }, signals });
const block0 = blockKey(streamIdOf('s3', FILE), 0);

// One mock per client class for the file: a second mockClient of the same class would undo the first.
const ddb = mockClient(DynamoDBDocumentClient);
const s3 = mockClient(S3Client);

describe('scoreBatch', () => {
  let obs: ReturnType<typeof quietObservability>;
  let aws: FakeAws;
  const deps = (over: Partial<ScorerDeps> = {}): ScorerDeps => ({
    doc: DynamoDBDocumentClient.from(new DynamoDBClient({})),
    s3: new S3Client({}),
    logger: obs.logger,
    metrics: obs.metrics,
    model: zScoreModel({ threshold: 3, minSamples: 2 }),
    config: {
      scoresTable: 'scores',
      scoresBucket: 'sb',
      anomaliesTable: 'anomalies',
      quarantineBucket: 'qb',
    },
    now: () => Date.parse('2024-01-01T00:00:01.000Z'),
    sleep: async () => undefined,
    ...over,
  });
  const scores = () => aws.table('scores');
  const finals = () => [...aws.objects.keys()].filter((k) => k.startsWith(settings.scores.prefix));
  const pendings = () => [...aws.objects.keys()].filter((k) => k.startsWith(settings.scores.pendingPrefix));
  const records = () => finals().flatMap((k) => decodeRecords(aws.objects.get(k) as Buffer));
  const totals = () => {
    let scored = 0;
    let samples = 0;
    for (let i = 0; i < settings.scoring.totalsShards; i++) {
      scored += Number(scores().get(totalsKey(i))?.scored ?? 0);
      samples += Number(scores().get(totalsKey(i))?.samples ?? 0);
    }
    return { scored, samples };
  };

  beforeEach(() => {
    obs = quietObservability();
    aws = new FakeAws(ddb, s3);
  });
  afterEach(() => {
    ddb.reset();
    s3.reset();
  });

  it('keeps a file’s rows as bits of one block item, with the series, in one transaction: no item per signal', async () => {
    // Prepare: three messages, two series interleaved.
    const messages = [
      { messageId: 'm1', body: body([signal(1), signal(2, { name: 'mem' }), signal(3)]) },
      { messageId: 'm2', body: body([signal(4, { name: 'mem' }), signal(5)]) },
    ];
    // Act
    const out = await scoreBatch(messages, deps());
    // Assess
    expect(out).toMatchObject({ scored: 5, duplicates: 0, transactions: 1 });
    expect(out.failures.size).toBe(0);
    const kinds = [...scores().values()].map((i) => i.kind).sort();
    expect(kinds).toEqual(['applied', 'series', 'series', 'stream', 'totals']);
    const block = scores().get(block0);
    const bits = Bitmap.from(block?.b as Uint8Array);
    expect([1, 2, 3, 4, 5].every((b) => bits.has(b))).toBe(true);
    expect(bits.has(0) || bits.has(6)).toBe(false);
    expect(block).toMatchObject({ n: 5, v: 1 });
    expect(scores().get(seriesKey('k', 'cpu'))).toMatchObject({ count: 3, version: 1 });
    expect(totals()).toEqual({ scored: 5, samples: 5 });
  });

  it('writes the scores once, to the final object named by the token the block records, and no pending object is left', async () => {
    // Prepare
    const messages = [{ messageId: 'm1', body: body([signal(1), signal(2), signal(3)]) }];
    // Act
    await scoreBatch(messages, deps());
    // Assess
    const [token] = decodeTokens(scores().get(block0)?.t as Uint8Array);
    expect(finals()).toEqual([finalKey(token as string)]);
    expect(finals()[0]).toMatch(/^scores\/dt=2024-01-01\//);
    expect(pendings()).toEqual([]);
    expect(records().map((r) => [r.ref, r.value, r.samples])).toEqual([
      [`${FILE}#1`, 1, 0],
      [`${FILE}#2`, 2, 1],
      [`${FILE}#3`, 3, 2],
    ]);
    // In order: pending written, committed, final written, pending deleted.
    const order = aws.calls.filter((c) => /Object|Transact/.test(c));
    expect(order).toEqual([
      `PutObject ${pendingKey(token as string)}`,
      'TransactWriteItems',
      `PutObject ${finalKey(token as string)}`,
      `DeleteObject ${pendingKey(token as string)}`,
    ]);
  });

  it('writes the merged state: the same count, mean and M2 as folding every value of the batch', async () => {
    // Prepare
    const stored = [3, 4, 5].reduce(welford, EMPTY_STATE);
    scores().set(seriesKey('k', 'cpu'), { pk: seriesKey('k', 'cpu'), ...stored, version: 7, anomalies: 0 });
    const values = [10, 11, 12, 13];
    const messages = [
      { messageId: 'm1', body: body([signal(1, { value: 10 }), signal(2, { value: 11 })]) },
      { messageId: 'm2', body: body([signal(3, { value: 12 }), signal(4, { value: 13 })]) },
    ];
    // Act
    await scoreBatch(messages, deps());
    // Assess
    const expected = [3, 4, 5, ...values].reduce(welford, EMPTY_STATE);
    const item = scores().get(seriesKey('k', 'cpu'));
    expect(item?.count).toBe(expected.count);
    expect(item?.mean).toBeCloseTo(expected.mean, 12);
    expect(item?.m2).toBeCloseTo(expected.m2, 10);
    expect(item?.version).toBe(8);
  });

  it('drops what a redelivered message brings again, and promotes the pending scores its first scorer left behind', async () => {
    // Prepare: the first delivery commits, and its scorer dies before the final object is written.
    const messages = [{ messageId: 'm1', body: body([signal(1), signal(2)]) }];
    aws.beforePutObject = (key) => {
      if (key.startsWith(settings.scores.prefix)) throw new Error('the scorer died');
    };
    const first = await scoreBatch(messages, deps());
    expect(first.failures.has('m1')).toBe(true);
    expect(pendings()).toHaveLength(1);
    expect(finals()).toEqual([]);
    aws.beforePutObject = () => {};
    // Act: the redelivery.
    const again = await scoreBatch(messages, deps());
    // Assess
    expect(again).toMatchObject({ scored: 0, duplicates: 2, recovered: 1 });
    expect(again.failures.size).toBe(0);
    expect(pendings()).toEqual([]);
    expect(records().map((r) => r.ref)).toEqual([`${FILE}#1`, `${FILE}#2`]);
    expect(scores().get(seriesKey('k', 'cpu'))).toMatchObject({ count: 2 });
    expect(obs.total('ScoresRecovered')).toBe(1);
  });

  it('scores a repeat within the batch once, and fails both messages if that signal is not committed', async () => {
    // Prepare
    const messages = [
      { messageId: 'm1', body: body([signal(1)]) },
      { messageId: 'm2', body: body([signal(1)]) },
    ];
    // Act
    const out = await scoreBatch(messages, deps());
    // Assess
    expect(out).toMatchObject({ scored: 1, duplicates: 1 });
    expect(records()).toHaveLength(1);
  });

  it('keeps a record’s own id within its file version and source: two files, or two versions, score the same ids', async () => {
    // Prepare: rows that bring id "1" in two files, and in a corrected upload of the first.
    const own = (file: string, row: number, source: string) =>
      signal(row, { id: '1', source, origin: { kind: 's3', ref: `${file}#${row}` } });
    const messages = [
      { messageId: 'm1', body: body([own('s3://b/a.csv@v1', 1, 'a.csv')]) },
      { messageId: 'm2', body: body([own('s3://b/b.csv@v1', 1, 'b.csv')]) },
      { messageId: 'm3', body: body([own('s3://b/a.csv@v2', 1, 'a.csv')]) },
    ];
    // Act
    const out = await scoreBatch(messages, deps());
    // Assess
    expect(out).toMatchObject({ scored: 3, collisions: 0 });
    expect(
      records()
        .map((r) => r.ref)
        .sort(),
    ).toEqual(['s3://b/a.csv@v1#1', 's3://b/a.csv@v2#1', 's3://b/b.csv@v1#1']);
  });

  it('quarantines, counts and names both origins of an own id scored before from another ref, and acknowledges it', async () => {
    // Prepare: Kafka records bring their own id; "e-1" was scored from offset 5, arrives again from offset 9.
    const k = (offset: number) =>
      signal(offset, {
        id: 'e-1',
        source: 'topic',
        origin: { kind: 'kafka', ref: `kafka:topic:0:${offset}` },
      });
    await scoreBatch([{ messageId: 'm1', body: body([k(5)]) }], deps());
    // Act
    const out = await scoreBatch([{ messageId: 'm2', body: body([k(9)]) }], deps());
    const sameAgain = await scoreBatch([{ messageId: 'm3', body: body([k(5)]) }], deps());
    // Assess
    expect(out).toMatchObject({ scored: 0, collisions: 1 });
    expect(out.failures.size).toBe(0);
    expect(obs.total('IdCollisions')).toBe(1);
    const [quarantined] = [...aws.objects].filter(([key]) => key.includes('-collisions'));
    const line = JSON.parse(String(quarantined?.[1])) as { ref: string; reason: string };
    expect(line.ref).toBe('kafka:topic:0:9');
    expect(line.reason).toContain('already scored from kafka:topic:0:5');
    expect(line.reason).toContain('(kafka:topic:0:9)');
    expect(sameAgain).toMatchObject({ scored: 0, duplicates: 1, collisions: 0 });
    expect(records().map((r) => r.ref)).toEqual(['kafka:topic:0:5']);
  });

  it('retries a conflict with a fresh read and a new token, deleting the cancelled attempt’s pending object', async () => {
    // Prepare: another scorer commits the series between this scorer's read and its first commit.
    aws.beforeTransact = (_input, n) => {
      if (n === 0) {
        const s = scores().get(seriesKey('k', 'cpu'));
        scores().set(seriesKey('k', 'cpu'), {
          ...s,
          pk: seriesKey('k', 'cpu'),
          count: 1,
          mean: 0,
          m2: 0,
          version: 1,
        });
      }
    };
    // Act
    const out = await scoreBatch([{ messageId: 'm1', body: body([signal(1), signal(2)]) }], deps());
    // Assess
    expect(out).toMatchObject({ scored: 2, conflicts: 1, transactions: 1 });
    expect(pendings()).toEqual([]);
    expect(finals()).toHaveLength(1);
    expect(scores().get(seriesKey('k', 'cpu'))).toMatchObject({ count: 3, version: 2 });
    const deletes = aws.calls.filter((c) => c.startsWith('DeleteObject'));
    expect(deletes).toHaveLength(2); // the cancelled attempt's, and the committed one's after promotion
  });

  it('keeps retrying a hot series past any fixed count while the invocation has time: the count starts again after each commit', async () => {
    // Prepare: 30 conflicts before each of two transactions commits (the scorer once gave up after 20).
    let left = 30;
    aws.beforeTransact = () => {
      if (left-- > 0) {
        throw new TransactionCanceledException({
          message: 'Transaction cancelled',
          $metadata: {},
          CancellationReasons: [{ Code: 'TransactionConflict' }],
        });
      }
      left = 30;
    };
    const messages = [{ messageId: 'm1', body: body([signal(1), signal(2, { name: 'mem' })]) }];
    // Act: one series a transaction, so two transactions in a row.
    const out = await scoreBatch(messages, deps({ limits: { maxItems: 2 }, remainingMs: () => 50_000 }));
    // Assess
    expect(out.failures.size).toBe(0);
    expect(out).toMatchObject({ scored: 2, conflicts: 60, transactions: 2 });
  });

  it('gives back only the messages not yet committed when the invocation runs short of time', async () => {
    // Prepare: a series a transaction; the clock runs out after the first commits.
    let left = 30_000;
    aws.beforeTransact = () => {
      left = 5_000;
    };
    const messages = [
      { messageId: 'm1', body: body([signal(1)]) },
      { messageId: 'm2', body: body([signal(2, { name: 'mem' })]) },
    ];
    // Act
    const out = await scoreBatch(messages, deps({ limits: { maxItems: 2 }, remainingMs: () => left }));
    // Assess
    expect(out.scored).toBe(1);
    expect([...out.failures.keys()]).toEqual(['m2']);
    expect(out.failures.get('m2')).toBeInstanceOf(TransientError);
    expect(obs.total('ScorerDeadlineStops')).toBe(1);
  });

  it('treats an attempt whose response was lost as committed when the items record its token, and writes its scores once', async () => {
    // Prepare: the transaction is applied, then the response is lost (the SDK gives up with a 500).
    aws.beforeTransact = (input, n) => {
      if (n === 0) {
        aws.transact(input);
        throw Object.assign(new Error('We encountered an internal error'), {
          name: 'InternalServerError',
          $metadata: { httpStatusCode: 500 },
        });
      }
    };
    // Act
    const out = await scoreBatch([{ messageId: 'm1', body: body([signal(1), signal(2)]) }], deps());
    // Assess
    expect(out).toMatchObject({ scored: 2, transactions: 1, conflicts: 0 });
    expect(out.failures.size).toBe(0);
    expect(aws.calls.filter((c) => c === 'TransactWriteItems')).toHaveLength(1);
    expect(records()).toHaveLength(2);
    expect(pendings()).toEqual([]);
  });

  it('splits a transaction of several series that keeps failing, so that only the failing series’ messages come back', async () => {
    // Prepare: any transaction holding the "poison" series fails after the SDK's retries.
    aws.beforeTransact = (input) => {
      if (
        JSON.stringify(input.TransactItems, (_k, v) => (v instanceof Uint8Array ? '' : v)).includes('poison')
      ) {
        throw Object.assign(new Error('Service unavailable'), {
          name: 'ServiceUnavailable',
          $metadata: { httpStatusCode: 503 },
        });
      }
    };
    const messages = [
      { messageId: 'good', body: body([signal(1), signal(2)]) },
      { messageId: 'bad', body: body([signal(3, { name: 'poison' })]) },
    ];
    // Act
    const out = await scoreBatch(messages, deps());
    // Assess
    expect([...out.failures.keys()]).toEqual(['bad']);
    expect(out.scored).toBe(2);
    expect(records().map((r) => r.name)).toEqual(['cpu', 'cpu']);
    // The failed attempts may have committed as far as they know: their pending objects stay (the lifecycle
    // rule removes orphans), and no item records their tokens.
    expect(pendings().length).toBeGreaterThan(0);
  });

  it('fails a series DynamoDB refuses (ValidationError) for good, and still commits the others', async () => {
    // Prepare
    aws.beforeTransact = (input) => {
      const i = (input.TransactItems ?? []).findIndex((t) => t.Put?.Item?.name === 'refused');
      if (i >= 0) {
        const reasons = (input.TransactItems ?? []).map((_t, j) =>
          j === i
            ? { Code: 'ValidationError', Message: 'Item size has exceeded the maximum allowed size' }
            : { Code: 'None' },
        );
        throw new TransactionCanceledException({
          message: 'cancelled',
          $metadata: {},
          CancellationReasons: reasons,
        });
      }
    };
    const messages = [
      { messageId: 'good', body: body([signal(1)]) },
      { messageId: 'bad', body: body([signal(2, { name: 'refused' })]) },
    ];
    // Act
    const out = await scoreBatch(messages, deps());
    // Assess
    expect([...out.failures.keys()]).toEqual(['bad']);
    expect(out.failures.get('bad')).toBeInstanceOf(PermanentError);
    expect(out.scored).toBe(1);
  });

  it('splits a batch whose series need more than 100 items into transactions run one after another, each on the state the last left', async () => {
    // Prepare: 250 series of one signal each, in one file block.
    const messages = [
      {
        messageId: 'm1',
        body: body(Array.from({ length: 250 }, (_, i) => signal(i + 1, { name: `s${i}` }))),
      },
    ];
    // Act
    const out = await scoreBatch(messages, deps());
    // Assess: 99 items a transaction besides the totals: 98 series + the block, three times.
    expect(out).toMatchObject({ scored: 250, transactions: 3 });
    expect(scores().get(block0)).toMatchObject({ n: 250, v: 3 });
    expect(decodeTokens(scores().get(block0)?.t as Uint8Array)).toHaveLength(3);
    expect(finals()).toHaveLength(3);
  });

  it('keeps signals without a position (own ids, watermark row versions) in id items, conditioned on not existing', async () => {
    // Prepare
    const versioned = signal(1, {
      id: 'db:t:7@2024-01-01T00:00:00Z',
      origin: { kind: 'db', ref: 'db:t:7@2024-01-01T00:00:00Z' },
    });
    // Act
    const out = await scoreBatch([{ messageId: 'm1', body: body([versioned]) }], deps());
    // Assess
    expect(out.scored).toBe(1);
    const key = dedupeKey(versioned, settings.scoring.blockPositions);
    expect(key.type).toBe('id');
    expect(scores().get(key.type === 'id' ? key.key : '')).toMatchObject({
      kind: 'id',
      ref: versioned.origin.ref,
    });
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
      '4 (deflated)',
      (origin: Origin) => {
        const plain = JSON.stringify({ v: 3, origin, signals: [signal(1), signal(2, { id: 'own-2' })] });
        return deflateMessage(plain, origin, 2, 1);
      },
    ],
  ])('reads version %s messages as whole signals', async (_v, make) => {
    // Act
    const out = await scoreBatch([{ messageId: 'm1', body: make({ kind: 's3', ref: FILE }) }], deps());
    // Assess
    expect(out).toMatchObject({ scored: 2, rejected: 0 });
    expect(records().map((r) => [r.id, r.ref])).toEqual([
      [`${FILE}#1`, `${FILE}#1`],
      ['own-2', `${FILE}#2`],
    ]);
  });

  it('quarantines invalid signals and a body that is not a message, and scores the rest', async () => {
    // Act
    const out = await scoreBatch(
      [
        { messageId: 'm1', body: body([signal(1), { ...signal(2), value: 1e60 }]) },
        { messageId: 'm2', body: 'not json' },
      ],
      deps(),
    );
    // Assess
    expect(out).toMatchObject({ scored: 1, rejected: 2 });
    expect(out.failures.size).toBe(0);
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
    await scoreBatch([{ messageId: 'm1', body: text }], deps());
    await scoreBatch([{ messageId: 'm2', body: 'secret-token-XYZ is not json' }], deps());
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
    const quarantined = [...aws.objects.entries()]
      .filter(([k]) => k.startsWith('rejects/'))
      .map(([, v]) => String(v))
      .join('\n');
    expect(quarantined).toContain('7.123456e+55');
    expect(quarantined).toContain('secret-token');
  });

  it('gives every message back when the state cannot be read at all', async () => {
    // Prepare
    ddb.on(BatchGetCommand).rejects(
      Object.assign(new Error('throttled'), {
        name: 'ThrottlingException',
        $metadata: { httpStatusCode: 400 },
      }),
    );
    // Act
    const out = await scoreBatch([{ messageId: 'm1', body: body([signal(1)]) }], deps());
    // Assess
    expect([...out.failures.keys()]).toEqual(['m1']);
    expect(out.scored).toBe(0);
  });
});
