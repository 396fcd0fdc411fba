import { EventEmitter } from 'node:events';
import { ConditionalCheckFailedException, DynamoDBClient } from '@aws-sdk/client-dynamodb';
import { PutObjectCommand, S3Client } from '@aws-sdk/client-s3';
import { GetQueueAttributesCommand, SendMessageBatchCommand, SQSClient } from '@aws-sdk/client-sqs';
import { DynamoDBDocumentClient, GetCommand, PutCommand } from '@aws-sdk/lib-dynamodb';
import { mockClient } from 'aws-sdk-client-mock';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { settings } from '#shared/settings.ts';
import type { Signal } from '#shared/signal.ts';
import { type PollerConfig, type PollerDeps, poll } from '../../../functions/db-poller/poller.ts';
import { rejectsPath } from '../../../functions/db-poller/rejects.ts';
import { quietObservability } from '../../helpers/observability.ts';
import { decodeSignals } from '../../helpers/signals.ts';
import { claimResponder, FakeDb, pgRow, type Responder } from './fake-db.ts';

const QUEUE = 'https://sqs.us-east-1.amazonaws.com/123456789012/signals';

const baseConfig: PollerConfig = {
  signalsQueueUrl: QUEUE,
  quarantineBucket: 'qb',
  table: 'signals',
  columns: settings.dbPoller.columns,
  mode: 'mark',
  batchSize: 3,
  watermarkTable: 'ledger',
  maxQueueDepth: 1000,
  timeBudgetFraction: 0.8,
  maxMessageBytes: settings.signals.maxMessageBytes,
  watermarkLookbackSeconds: settings.dbPoller.watermarkLookbackSeconds,
  watermarkSkewSeconds: settings.dbPoller.watermarkSkewSeconds,
  processedType: settings.dbPoller.processedType,
};

describe('db-poller poll()', () => {
  const sqs = mockClient(SQSClient);
  const s3 = mockClient(S3Client);
  const doc = mockClient(DynamoDBDocumentClient);
  let obs: ReturnType<typeof quietObservability>;

  const deps = (
    db: FakeDb,
    overrides: Partial<Omit<PollerDeps, 'config'>> & { config?: Partial<PollerConfig> } = {},
  ) => {
    const { config, ...rest } = overrides;
    return {
      db,
      sqs: new SQSClient({ region: 'us-east-1' }),
      s3: new S3Client({ region: 'us-east-1' }),
      doc: DynamoDBDocumentClient.from(new DynamoDBClient({ region: 'us-east-1' })),
      logger: obs.logger,
      metrics: obs.metrics,
      config: { ...baseConfig, ...config },
      remainingTimeMs: () => 60_000,
      senderOptions: { sleep: async () => {}, attempts: 2 },
      ...rest,
    } satisfies PollerDeps;
  };

  /** Every signal sent, in order, unpacked from the SendMessageBatch calls. */
  const sentSignals = (): Signal[] =>
    sqs
      .commandCalls(SendMessageBatchCommand)
      .flatMap((c) => c.args[0].input.Entries ?? [])
      .flatMap((e) => decodeSignals(e.MessageBody ?? ''));

  beforeEach(() => {
    obs = quietObservability();
    sqs.on(GetQueueAttributesCommand).resolves({ Attributes: { ApproximateNumberOfMessages: '0' } });
    sqs.on(SendMessageBatchCommand).resolves({ Successful: [], Failed: [] });
    s3.on(PutObjectCommand).resolves({});
  });
  afterEach(() => {
    sqs.reset();
    s3.reset();
    doc.reset();
  });

  describe('mark mode', () => {
    it('claims with FOR UPDATE SKIP LOCKED, sends the batch packed, marks every claimed row and commits', async () => {
      // Prepare
      const db = new FakeDb(claimResponder([[pgRow(1), pgRow(2)]]));
      // Act
      const summary = await poll(deps(db));
      // Assess
      expect(db.verbs()).toEqual(['BEGIN', 'SET', 'SELECT', 'UPDATE', 'COMMIT']);
      const claim = db.queries[2];
      expect(claim?.text).toMatch(
        /WHERE t\."processed" = false ORDER BY t\."id" LIMIT \$1 FOR UPDATE SKIP LOCKED$/,
      );
      expect(claim?.values).toEqual([3]);
      expect(db.queries[3]).toMatchObject({
        text: 'UPDATE "signals" SET "processed" = true WHERE "id" = ANY($1)',
        values: [['1', '2']],
      });
      expect(new Set(db.queries.map((q) => q.session))).toEqual(new Set([1]));
      expect(db.released).toEqual([{ session: 1, err: false }]);
      // One SendMessageBatch call, one message carrying both signals.
      expect(sqs).toHaveReceivedCommandTimes(SendMessageBatchCommand, 1);
      const entries = sqs.commandCalls(SendMessageBatchCommand)[0]?.args[0].input.Entries ?? [];
      expect(entries).toHaveLength(1);
      expect(JSON.parse(entries[0]?.MessageBody ?? '{}')).toMatchObject({
        v: 3,
        origin: { kind: 'db', ref: 'db:signals' },
      });
      expect(sentSignals()).toEqual([
        {
          id: 'db:signals:1',
          name: 'cpu',
          value: 1.5,
          source: 'host-a',
          timestamp: '2024-05-01T10:00:00.001Z',
          origin: { kind: 'db', ref: 'db:signals:1' },
        },
        expect.objectContaining({ id: 'db:signals:2', origin: { kind: 'db', ref: 'db:signals:2' } }),
      ]);
      expect(summary).toMatchObject({
        mode: 'mark',
        rounds: 1,
        rows: 2,
        sent: 2,
        rejected: 0,
        stoppedBy: 'drained',
      });
      expect(obs.total('RowsPolled')).toBe(2);
    });

    it('reports the poller lag: from the event time of the oldest polled row to the poll', async () => {
      // Prepare: pgRow timestamps are 2024-05-01T10:00:00.00nZ; the poll runs one minute later.
      const db = new FakeDb(claimResponder([[pgRow(1), pgRow(2)]]));
      // Act
      await poll(deps(db, { now: () => Date.parse('2024-05-01T10:01:00.001Z') }));
      // Assess
      expect(obs.recorded.PollerLag).toEqual([60_000]);
    });

    it('reports 0 rows polled, not no data, for an empty run', async () => {
      // Prepare
      const db = new FakeDb(claimResponder([[]]));
      // Act
      await poll(deps(db));
      // Assess
      expect(obs.recorded.RowsPolled).toEqual([0]);
      expect(obs.recorded.PollerLag).toBeUndefined();
    });

    it('rolls back when the send fails: no UPDATE, no COMMIT, the rows stay unprocessed', async () => {
      // Prepare
      sqs.on(SendMessageBatchCommand).resolves({
        Failed: [{ Id: '0', Code: 'InternalError', SenderFault: false }],
      });
      const db = new FakeDb(claimResponder([[pgRow(1), pgRow(2)]]));
      // Act
      const run = poll(deps(db));
      // Assess
      await expect(run).rejects.toThrow(/still failing/);
      expect(db.verbs()).toEqual(['BEGIN', 'SET', 'SELECT', 'ROLLBACK']);
      expect(db.released).toEqual([{ session: 1, err: false }]);
    });

    it('destroys the connection when even the ROLLBACK fails', async () => {
      // Prepare
      sqs.on(SendMessageBatchCommand).rejects(new Error('socket hang up'));
      const lost = new Error('Connection terminated');
      const claim = claimResponder([[pgRow(1)]]);
      const db = new FakeDb((text, values) => (text === 'ROLLBACK' ? lost : claim(text, values)));
      // Act
      const run = poll(deps(db));
      // Assess
      await expect(run).rejects.toThrow('socket hang up');
      expect(db.released).toEqual([{ session: 1, err: lost }]);
    });

    it('survives the connection dropping while it holds the transaction: rolled back, destroyed, no uncaught error', async () => {
      // Prepare: a session that, like a pg client, emits 'error' when its connection drops mid-send.
      const lost = new Error('Connection terminated unexpectedly');
      const claim = claimResponder([[pgRow(1)]]);
      let dropped = false;
      const db = new FakeDb((text, values) => (dropped && text !== 'ROLLBACK' ? lost : claim(text, values)));
      const session = new EventEmitter();
      const connect = db.connect.bind(db);
      db.connect = async () => Object.assign(session, await connect());
      let emitted: boolean | undefined;
      sqs.on(SendMessageBatchCommand).callsFake(() => {
        dropped = true;
        emitted = session.emit('error', lost);
        return { Successful: [{ Id: '0', MessageId: 'm', MD5OfMessageBody: '' }], Failed: [] };
      });
      // Act
      const run = poll(deps(db));
      // Assess: the error reached a listener (an unheard 'error' event throws), and the client is destroyed.
      await expect(run).rejects.toThrow(lost);
      expect(emitted).toBe(true);
      expect(session.listenerCount('error')).toBe(0);
      expect(db.released).toEqual([{ session: 1, err: lost }]);
    });

    it('quarantines rows that fail validation, with id and reason, and marks them with the valid ones', async () => {
      // Prepare: every kind of bad row a table can hold.
      const rows = [
        pgRow(10),
        pgRow(11, { pulse_name: null }),
        pgRow(12, { pulse_value: Number.NaN }),
        pgRow(13, { pulse_value: '12x' }),
        pgRow(14, { pulse_ts: null }),
        pgRow(15, { pulse_name: 'n'.repeat(257) }),
        pgRow(16, { pulse_ts: '2024-05-01 10:00:00' }),
        pgRow(17, { pulse_value: '42', pulse_source: null }),
      ];
      const db = new FakeDb(claimResponder([rows]));
      // Act
      const summary = await poll(
        deps(db, { config: { batchSize: 500 }, now: () => Date.UTC(2024, 4, 2, 3) }),
      );
      // Assess
      expect(summary).toMatchObject({ rows: 8, sent: 2, rejected: 6 });
      expect(sentSignals().map((s) => [s.id, s.value, s.source])).toEqual([
        ['db:signals:10', 10.5, 'host-a'],
        ['db:signals:17', 42, 'signals'],
      ]);
      expect(db.queries.find((q) => q.text.startsWith('UPDATE'))?.values).toEqual([
        ['10', '11', '12', '13', '14', '15', '16', '17'],
      ]);
      expect(db.verbs().at(-1)).toBe('COMMIT');
      expect(s3).toHaveReceivedCommandWith(PutObjectCommand, {
        Bucket: 'qb',
        Key: 'rejects/db/signals/2024-05-02/11-16.ndjson',
      });
      const body = String(s3.commandCalls(PutObjectCommand)[0]?.args[0].input.Body);
      const lines = body
        .trim()
        .split('\n')
        .map((l) => JSON.parse(l) as { ref: string; reason: string; record: Record<string, unknown> });
      expect(lines.map((l) => [l.ref, l.reason])).toEqual([
        ['db:signals:11', 'name is required'],
        ['db:signals:12', 'value must be finite, got NaN'],
        ['db:signals:13', 'value must be wholly numeric, got "12x"'],
        ['db:signals:14', 'timestamp is required'],
        ['db:signals:15', 'name is longer than 256 characters (257)'],
        ['db:signals:16', expect.stringMatching(/has no time zone/)],
      ]);
      expect(lines[0]?.record).toMatchObject({ id: '11', name: null, value: 11.5 });
      expect(obs.total('RowsRejected')).toBe(6);
    });

    it("logs where a batch's rejects are, never the reasons (they quote the row's values)", async () => {
      // Prepare: a value the reason quotes
      const warn = vi.spyOn(obs.logger, 'warn');
      const db = new FakeDb(claimResponder([[pgRow(20, { pulse_value: 'secret-4711x' })]]));
      // Act
      await poll(deps(db, { config: { batchSize: 500 }, now: () => Date.UTC(2024, 4, 2, 3) }));
      // Assess
      expect(JSON.stringify(warn.mock.calls)).not.toContain('secret-4711x');
      expect(warn).toHaveBeenCalledWith('Rows rejected', {
        rejected: 1,
        firstRef: 'db:signals:20',
        rejectsKey: 'rejects/db/signals/2024-05-02/20-20.ndjson',
      });
      expect(String(s3.commandCalls(PutObjectCommand)[0]?.args[0].input.Body)).toContain('secret-4711x');
    });

    it("keeps the rejects key of long or unsafe ids well under S3's 1,024 bytes, one key per batch", async () => {
      // Prepare: text keys, 600 characters or holding a slash, in two batches; S3 refuses keys over 1,024 bytes.
      s3.on(PutObjectCommand).callsFake(async (input: { Key: string }) => {
        if (Buffer.byteLength(input.Key) > 1024)
          throw Object.assign(new Error('too long'), { name: 'KeyTooLongError' });
        return {};
      });
      const bad = { pulse_value: 'bad' };
      const db = new FakeDb(
        claimResponder([
          [
            { ...pgRow(0, bad), pulse_id: 'a'.repeat(600) },
            { ...pgRow(0, bad), pulse_id: `${'b'.repeat(600)}/x` },
          ],
          [
            { ...pgRow(0, bad), pulse_id: 'a'.repeat(601) },
            { ...pgRow(0, bad), pulse_id: `${'b'.repeat(600)}/y` },
          ],
        ]),
      );
      // Act
      const first = await poll(deps(db, { now: () => Date.UTC(2024, 4, 2, 3) }));
      const second = await poll(deps(db, { now: () => Date.UTC(2024, 4, 2, 3) }));
      // Assess
      expect(first).toMatchObject({ rows: 2, rejected: 2 });
      expect(second).toMatchObject({ rows: 2, rejected: 2 });
      expect(db.verbs().filter((v) => v === 'COMMIT')).toHaveLength(2);
      const keys = s3.commandCalls(PutObjectCommand).map((c) => c.args[0].input.Key ?? '');
      expect(keys).toHaveLength(2);
      for (const key of keys) {
        expect(Buffer.byteLength(key)).toBeLessThan(256);
        expect(key).toMatch(/^rejects\/db\/signals\/2024-05-02\/a{24}-b{24}\.[0-9a-f]{16}\.ndjson$/);
      }
      expect(new Set(keys).size).toBe(2);
    });

    it('bounds the rejects path whatever the table name and ids, and keeps plain ids as they are', () => {
      // Prepare
      const day = new Date(Date.UTC(2024, 4, 2));
      const table = 't'.repeat(63);
      const huge = [
        { id: 'é/'.repeat(5000), ref: 'r1' },
        { id: 'z'.repeat(10_000), ref: 'r2' },
      ];
      // Act
      const long = rejectsPath(table, day, huge);
      const plain = rejectsPath('signals', day, [
        { id: '11', ref: 'db:signals:11' },
        { id: '16', ref: 'db:signals:16' },
      ]);
      // Assess
      expect(Buffer.byteLength(long)).toBeLessThan(200);
      expect(plain).toBe('signals/2024-05-02/11-16');
      // Ids that only differ past what the key shows, or that read the same once joined, get their own keys.
      expect(
        rejectsPath('s', day, [
          { id: 'a-b', ref: 'a-b' },
          { id: 'c', ref: 'c' },
        ]),
      ).not.toBe(
        rejectsPath('s', day, [
          { id: 'a', ref: 'a' },
          { id: 'b-c', ref: 'b-c' },
        ]),
      );
      expect(rejectsPath('s', day, [{ id: 'x'.repeat(50), ref: '1' }])).not.toBe(
        rejectsPath('s', day, [{ id: 'x'.repeat(51), ref: '2' }]),
      );
    });

    it('loops round after round until a round comes back short (drained)', async () => {
      // Prepare
      const db = new FakeDb(
        claimResponder([[pgRow(1), pgRow(2), pgRow(3)], [pgRow(4), pgRow(5), pgRow(6)], [pgRow(7)]]),
      );
      // Act
      const summary = await poll(deps(db));
      // Assess
      expect(summary).toMatchObject({ rounds: 3, rows: 7, sent: 7, stoppedBy: 'drained' });
      expect(db.verbs().filter((v) => v === 'COMMIT')).toHaveLength(3);
      expect(sqs).toHaveReceivedCommandTimes(GetQueueAttributesCommand, 3);
    });

    it('stops before a round when the signals queue is deeper than maxQueueDepth, and counts the stop', async () => {
      // Prepare
      sqs.on(GetQueueAttributesCommand).resolves({ Attributes: { ApproximateNumberOfMessages: '1001' } });
      const db = new FakeDb(claimResponder([[pgRow(1)]]));
      // Act
      const summary = await poll(deps(db));
      // Assess
      expect(summary).toMatchObject({ rounds: 0, rows: 0, stoppedBy: 'backpressure' });
      expect(db.queries).toEqual([]);
      expect(sqs).toHaveReceivedCommandWith(GetQueueAttributesCommand, {
        QueueUrl: QUEUE,
        AttributeNames: ['ApproximateNumberOfMessages'],
      });
      expect(obs.total('PollerBackpressureStops')).toBe(1);
    });

    it('stops once timeBudgetFraction of the remaining time is spent, leaving the rest for the next run', async () => {
      // Prepare: 10 s remaining × 0.5 = 5 s of budget; each round takes 3 s.
      let clock = 1_000_000;
      const claim = claimResponder([
        [pgRow(1), pgRow(2), pgRow(3)],
        [pgRow(4), pgRow(5), pgRow(6)],
        [pgRow(7), pgRow(8), pgRow(9)],
      ]);
      const db = new FakeDb((text, values) => {
        if (text.includes('FOR UPDATE')) clock += 3000;
        return claim(text, values);
      });
      // Act
      const summary = await poll(
        deps(db, { now: () => clock, remainingTimeMs: () => 10_000, config: { timeBudgetFraction: 0.5 } }),
      );
      // Assess
      expect(summary).toMatchObject({ rounds: 2, rows: 6, stoppedBy: 'time-budget' });
      expect(obs.total('PollerTimeBudgetStops')).toBe(1);
    });

    it('bounds how long the server keeps the row locks of a frozen invocation', async () => {
      // Prepare
      const db = new FakeDb(claimResponder([[pgRow(1)]]));
      // Act
      await poll(deps(db, { remainingTimeMs: () => 30_000 }));
      // Assess
      expect(db.queries[1]).toEqual({
        text: "SELECT set_config('idle_in_transaction_session_timeout', $1, true)",
        values: ['35000'],
        session: 1,
      });
    });
  });

  describe('watermark mode', () => {
    const wmRow = (id: number, wm: string, overrides: Record<string, unknown> = {}) => ({
      ...pgRow(id, overrides),
      pulse_wm: wm,
    });
    const isNullCheck = (text: string) => text.includes('IS NULL ORDER BY');
    const isReread = (text: string) => text.includes(') <= (');
    const isProbe = (text: string) => text.includes('pg_typeof');
    const isOutOfRange = (text: string) => text.includes("= '-infinity'::timestamptz ORDER BY");
    const isStallCount = (text: string) => text.includes('AS pulse_beyond');
    const isLastBefore = (text: string) => text.includes('DESC LIMIT 1');
    const isCheck = (text: string) =>
      [isNullCheck, isReread, isProbe, isOutOfRange, isStallCount, isLastBefore].some((f) => f(text));
    /** The database's clock as the fakes report it: 10:10 on 2024-05-01, a 10 s skew. */
    const DB_NOW = '2024-05-01 10:10:00.000001+00';
    const HORIZON = '2024-05-01 10:10:10.000001+00';
    interface Checks {
      nulls?: unknown[];
      reread?: unknown[][];
      /** The watermark column's type (`pg_typeof`). */
      type?: string;
      outOfRange?: unknown[];
      stall?: { pulse_count: string; pulse_beyond: boolean };
      lastBefore?: unknown[];
    }
    /**
     * Answers the forward reads from `batches`, the NULL check from `nulls`, the lookback from `reread`, and
     * the horizon's statements from the rest (a timestamptz column, nothing out of range, no stall).
     */
    const watermarkResponder = (batches: unknown[][], checks: Checks = {}): Responder => {
      const queue = [...batches];
      const back = [...(checks.reread ?? [])];
      return (text) => {
        if (!text.startsWith('SELECT')) return new Error(`unexpected ${text}`);
        if (isNullCheck(text)) return checks.nulls ?? [];
        if (isReread(text)) return back.shift() ?? [];
        if (isProbe(text))
          return [
            {
              pulse_type: checks.type ?? 'timestamp with time zone',
              pulse_now: DB_NOW,
              pulse_horizon: HORIZON,
            },
          ];
        if (isOutOfRange(text)) return checks.outOfRange ?? [];
        if (isStallCount(text)) return [checks.stall ?? { pulse_count: '0', pulse_beyond: false }];
        if (isLastBefore(text)) return checks.lastBefore ?? [];
        return queue.shift() ?? [];
      };
    };
    /** The forward reads (past the watermark), in order. */
    const forwardReads = (db: FakeDb) => db.queries.filter((q) => !isCheck(q.text));

    it('reads past the stored watermark, sends versioned ids, and advances it with a conditional write', async () => {
      // Prepare
      doc.on(GetCommand).resolves({
        Item: {
          pk: 'watermark#signals',
          sk: 'watermark',
          value: '2024-05-01 09:00:00+00',
          id: '7',
          version: 4,
        },
      });
      doc.on(PutCommand).resolves({});
      const db = new FakeDb(
        watermarkResponder([[wmRow(8, '2024-05-01 10:00:00.123456+00'), wmRow(9, '2024-05-01 12:00:00+02')]]),
      );
      // Act
      const summary = await poll(deps(db, { config: { mode: 'watermark' } }));
      // Assess: the checks (NULL, the database's clock, out of range, stall), the lookback (nothing there),
      // then the read past the watermark, up to the database's now() plus the skew.
      expect(db.queries.map((q) => q.text.split(' ')[0])).toEqual(Array(6).fill('SELECT'));
      const [read] = forwardReads(db);
      expect(read?.text).toMatch(
        /WHERE \(t\."timestamp", t\."id"\) > \(\$1, \$2\) AND t\."timestamp" > '-infinity'::timestamptz AND t\."timestamp" <= \$4::timestamptz ORDER BY t\."timestamp", t\."id" LIMIT \$3$/,
      );
      expect(read?.values).toEqual(['2024-05-01 09:00:00+00', '7', 3, HORIZON]);
      expect(sentSignals().map((s) => s.id)).toEqual([
        'db:signals:8@2024-05-01T10:00:00.123456Z',
        'db:signals:9@2024-05-01T10:00:00.000000Z',
      ]);
      expect(doc).toHaveReceivedCommandWith(GetCommand, {
        TableName: 'ledger',
        Key: { pk: 'watermark#signals', sk: 'watermark' },
        ConsistentRead: true,
      });
      expect(doc).toHaveReceivedCommandWith(PutCommand, {
        TableName: 'ledger',
        Item: expect.objectContaining({ value: '2024-05-01 12:00:00+02', id: '9', version: 5 }),
        ConditionExpression: '#version = :version',
        ExpressionAttributeValues: { ':version': 4 },
      });
      expect(summary).toMatchObject({
        mode: 'watermark',
        rows: 2,
        stoppedBy: 'drained',
        watermark: { value: '2024-05-01 12:00:00+02', id: '9', version: 5 },
      });
    });

    it('starts from the beginning when there is no watermark, creating the item only if nobody else did', async () => {
      // Prepare
      doc.on(GetCommand).resolves({});
      doc.on(PutCommand).resolves({});
      const db = new FakeDb(
        watermarkResponder([
          [
            wmRow(1, '2024-05-01 10:00:00+00'),
            wmRow(2, '2024-05-01 10:00:01+00'),
            wmRow(3, '2024-05-01 10:00:02+00'),
          ],
          [wmRow(4, '2024-05-01 10:00:03+00')],
        ]),
      );
      // Act
      const summary = await poll(deps(db, { config: { mode: 'watermark' } }));
      // Assess
      const reads = forwardReads(db);
      expect(reads[0]?.text).toMatch(
        /WHERE t\."timestamp" > '-infinity'::timestamptz AND t\."timestamp" <= \$2::timestamptz ORDER BY/,
      );
      expect(reads[0]?.values).toEqual([3, HORIZON]);
      expect(reads[1]?.values).toEqual(['2024-05-01 10:00:02+00', '3', 3, HORIZON]);
      // No watermark yet: nothing to look back at.
      expect(db.queries.filter((q) => isReread(q.text))).toEqual([]);
      const puts = doc.commandCalls(PutCommand).map((c) => c.args[0].input);
      expect(puts[0]).toMatchObject({
        ConditionExpression: 'attribute_not_exists(pk)',
        Item: { version: 1 },
      });
      expect(puts[1]).toMatchObject({
        ConditionExpression: '#version = :version',
        ExpressionAttributeValues: { ':version': 1 },
        Item: { version: 2, id: '4' },
      });
      expect(summary).toMatchObject({ rounds: 2, rows: 4, stoppedBy: 'drained' });
    });

    it('stops when another poller advanced the watermark first (the race is lost, nothing overwritten)', async () => {
      // Prepare
      doc.on(GetCommand).resolves({ Item: { value: '2024-05-01 09:00:00+00', id: '7', version: 4 } });
      doc
        .on(PutCommand)
        .rejects(
          new ConditionalCheckFailedException({ message: 'The conditional request failed', $metadata: {} }),
        );
      const db = new FakeDb(
        watermarkResponder([
          [
            wmRow(8, '2024-05-01 10:00:00+00'),
            wmRow(9, '2024-05-01 10:00:01+00'),
            wmRow(10, '2024-05-01 10:00:02+00'),
          ],
        ]),
      );
      // Act
      const summary = await poll(deps(db, { config: { mode: 'watermark' } }));
      // Assess
      expect(summary).toMatchObject({ rounds: 1, rows: 3, stoppedBy: 'lost-race' });
      expect(summary.watermark).toMatchObject({ version: 4 });
      expect(forwardReads(db)).toHaveLength(1);
      expect(obs.total('WatermarkConflicts')).toBe(1);
    });

    it('keeps the rejects of each version of a row: a second version rejected the same day gets its own key', async () => {
      // Prepare: row 1 rejected, then updated (a new watermark value) and rejected again; then the
      // first version's batch read once more (a retry) writes its own object again.
      let stored: Record<string, unknown> | undefined;
      doc.on(GetCommand).callsFake(async () => ({ Item: stored }));
      doc.on(PutCommand).callsFake(async (input: { Item: Record<string, unknown> }) => {
        stored = input.Item;
        return {};
      });
      const v1 = wmRow(1, '2024-05-01 10:00:00+00', { pulse_value: 'twelve' });
      const v2 = wmRow(1, '2024-05-01 11:00:00+00', { pulse_value: 'thirteen' });
      const config = { mode: 'watermark' as const, watermarkLookbackSeconds: 0 };
      const at = () => Date.UTC(2024, 4, 2, 3);
      // Act
      await poll(deps(new FakeDb(watermarkResponder([[v1]])), { config, now: at }));
      await poll(deps(new FakeDb(watermarkResponder([[v2]])), { config, now: at }));
      stored = undefined;
      await poll(deps(new FakeDb(watermarkResponder([[v1]])), { config, now: at }));
      // Assess
      const puts = s3.commandCalls(PutObjectCommand).map((c) => c.args[0].input);
      const keys = puts.map((p) => p.Key ?? '');
      expect(keys).toHaveLength(3);
      expect(keys[0]).toMatch(/^rejects\/db\/signals\/2024-05-02\/1-1\.[0-9a-f]{16}\.ndjson$/);
      expect(keys[1]).not.toBe(keys[0]);
      expect(keys[2]).toBe(keys[0]);
      expect(String(puts[0]?.Body)).toContain('"ref":"db:signals:1@2024-05-01T10:00:00.000000Z"');
      expect(String(puts[1]?.Body)).toContain('"ref":"db:signals:1@2024-05-01T11:00:00.000000Z"');
    });

    it('quarantines rows whose watermark column is NULL, every poll, and counts them in a metric', async () => {
      // Prepare: two rows have no watermark value (the count comes with each row, as bigint text).
      doc.on(GetCommand).resolves({});
      doc.on(PutCommand).resolves({});
      const nulls = [
        { ...pgRow(4), pulse_nulls: '2' },
        { ...pgRow(9, { pulse_value: 'bad' }), pulse_nulls: '2' },
      ];
      const config = {
        mode: 'watermark' as const,
        columns: { ...baseConfig.columns, updatedAt: 'updated_at' },
      };
      const at = () => Date.UTC(2024, 4, 2, 3);
      // Act
      const first = await poll(deps(new FakeDb(watermarkResponder([[]], { nulls })), { config, now: at }));
      const again = await poll(deps(new FakeDb(watermarkResponder([[]], { nulls })), { config, now: at }));
      const none = await poll(deps(new FakeDb(watermarkResponder([[]])), { config, now: at }));
      // Assess
      expect(first).toMatchObject({ nullWatermark: 2, rows: 0, sent: 0 });
      expect(again).toMatchObject({ nullWatermark: 2 });
      expect(none).toMatchObject({ nullWatermark: 0 });
      expect(obs.recorded.WatermarkNullRows).toEqual([2, 2, 0]);
      expect(sentSignals()).toEqual([]);
      const puts = s3.commandCalls(PutObjectCommand).map((c) => c.args[0].input);
      expect(puts).toHaveLength(2);
      // The same rows found again overwrite their object; they are not new rejects.
      expect(puts[1]?.Key).toBe(puts[0]?.Key);
      expect(puts[0]?.Key).toMatch(
        /^rejects\/db\/signals\/2024-05-02\/watermark-null\/4-9\.[0-9a-f]{16}\.ndjson$/,
      );
      const lines = String(puts[0]?.Body)
        .trim()
        .split('\n')
        .map((l) => JSON.parse(l) as { ref: string; reason: string; record: Record<string, unknown> });
      expect(lines.map((l) => [l.ref, l.reason])).toEqual([
        ['db:signals:4', 'updated_at is NULL: watermark mode cannot order this row'],
        ['db:signals:9', 'updated_at is NULL: watermark mode cannot order this row'],
      ]);
      expect(lines[0]?.record).toMatchObject({ id: '4', name: 'cpu' });
      expect(obs.recorded.RowsRejected).toBeUndefined();
    });

    it('reads the rows within the lookback behind the watermark again, so a row committed late is sent', async () => {
      // Prepare: the watermark stands at (10:05, 2); row 3 was committed after that poll with 10:04:30.
      doc.on(GetCommand).resolves({ Item: { value: '2024-05-01 10:05:00+00', id: '2', version: 4 } });
      doc.on(PutCommand).resolves({});
      const db = new FakeDb(
        watermarkResponder([[wmRow(4, '2024-05-01 10:06:00+00')]], {
          reread: [
            [
              wmRow(3, '2024-05-01 10:04:30+00'),
              wmRow(1, '2024-05-01 10:04:45+00'),
              wmRow(2, '2024-05-01 10:05:00+00'),
            ],
            [],
          ],
        }),
      );
      // Act
      const summary = await poll(deps(db, { config: { mode: 'watermark', watermarkLookbackSeconds: 90 } }));
      // Assess: the window from 90 s behind the watermark, up to and including it, paged by (value, id).
      const rereads = db.queries.filter((q) => isReread(q.text));
      expect(rereads.map((q) => q.values)).toEqual([
        ['2024-05-01T10:03:30.000Z', '2024-05-01 10:05:00+00', '2', 3],
        ['2024-05-01 10:05:00+00', '2', '2024-05-01 10:05:00+00', '2', 3],
      ]);
      expect(rereads[0]?.text).toMatch(
        /WHERE t\."timestamp" >= \$1 AND \(t\."timestamp", t\."id"\) <= \(\$2, \$3\) ORDER BY t\."timestamp", t\."id" LIMIT \$4$/,
      );
      expect(sentSignals().map((s) => s.id)).toEqual([
        'db:signals:3@2024-05-01T10:04:30.000000Z',
        'db:signals:1@2024-05-01T10:04:45.000000Z',
        'db:signals:2@2024-05-01T10:05:00.000000Z',
        'db:signals:4@2024-05-01T10:06:00.000000Z',
      ]);
      // The watermark moves only with the rows read past it.
      expect(doc).toHaveReceivedCommandWith(PutCommand, {
        Item: expect.objectContaining({ value: '2024-05-01 10:06:00+00', id: '4', version: 5 }),
      });
      expect(summary).toMatchObject({ rounds: 1, rows: 1, sent: 1, reread: 3, stoppedBy: 'drained' });
      expect(obs.total('RowsPolled')).toBe(1);
      expect(obs.total('RowsReread')).toBe(3);
    });

    it("looks back the settings' 60 s by default, and not at all when the lookback is 0 or the column is no timestamp", async () => {
      // Prepare
      const item = (value: string) => ({ Item: { value, id: '2', version: 4 } });
      doc.on(PutCommand).resolves({});
      const rereadsOf = async (value: string, config: Partial<PollerConfig>) => {
        doc.on(GetCommand).resolves(item(value));
        const db = new FakeDb(watermarkResponder([[]]));
        await poll(deps(db, { config: { mode: 'watermark', ...config } }));
        return db.queries.filter((q) => isReread(q.text)).map((q) => q.values?.[0]);
      };
      // Act
      const byDefault = await rereadsOf('2024-05-01 10:05:00.5+00', {});
      const wallClock = await rereadsOf('2024-05-01 10:05:00', {});
      const off = await rereadsOf('2024-05-01 10:05:00+00', { watermarkLookbackSeconds: 0 });
      const counter = await rereadsOf('12345', {});
      // Assess
      expect(byDefault).toEqual(['2024-05-01T10:04:00.500Z']);
      expect(wallClock).toEqual(['2024-05-01T10:04:00.000']);
      expect(off).toEqual([]);
      expect(counter).toEqual([]);
    });

    it('does not advance the watermark when the send fails', async () => {
      // Prepare
      doc.on(GetCommand).resolves({});
      sqs
        .on(SendMessageBatchCommand)
        .resolves({ Failed: [{ Id: '0', Code: 'InternalError', SenderFault: false }] });
      const db = new FakeDb(watermarkResponder([[wmRow(1, '2024-05-01 10:00:00+00')]]));
      // Act
      const run = poll(deps(db, { config: { mode: 'watermark' } }));
      // Assess
      await expect(run).rejects.toThrow(/still failing/);
      expect(doc).not.toHaveReceivedCommand(PutCommand);
    });

    describe("bounded by the database's clock", () => {
      const rowsOutOfRange = [
        wmRow(4, '-infinity', { pulse_ts: Number.NEGATIVE_INFINITY, pulse_count: '3' }),
        wmRow(7, '2999-01-01 00:00:00+00', { pulse_count: '3' }),
        wmRow(9, 'infinity', { pulse_ts: Number.POSITIVE_INFINITY, pulse_count: '3' }),
      ];

      it("reads nothing past now() plus the skew, and quarantines what lies there (and '-infinity') with the reason, every poll under one key", async () => {
        // Prepare
        let stored: Record<string, unknown> | undefined;
        doc.on(GetCommand).callsFake(async () => ({ Item: stored }));
        doc.on(PutCommand).callsFake(async (input: { Item: Record<string, unknown> }) => {
          stored = input.Item;
          return {};
        });
        const at = () => Date.UTC(2024, 4, 1, 10, 10);
        const config = { mode: 'watermark' as const };
        const db = () =>
          new FakeDb(
            watermarkResponder([[wmRow(1, '2024-05-01 10:00:00+00'), wmRow(2, '2024-05-01 10:09:59+00')]], {
              outOfRange: rowsOutOfRange,
            }),
          );
        // Act
        const first = await poll(deps(db(), { config, now: at }));
        const again = await poll(deps(db(), { config, now: at }));
        // Assess: only the rows within the horizon are sent; the watermark stays at the last of them.
        expect(first).toMatchObject({ rows: 2, sent: 2, outOfRange: 3, stalled: 0, horizon: HORIZON });
        expect(first.watermark).toMatchObject({ value: '2024-05-01 10:09:59+00', id: '2' });
        expect(again).toMatchObject({ outOfRange: 3, stalled: 0 });
        expect(sentSignals().map((s) => s.id)).toEqual([
          'db:signals:1@2024-05-01T10:00:00.000000Z',
          'db:signals:2@2024-05-01T10:09:59.000000Z',
          'db:signals:1@2024-05-01T10:00:00.000000Z',
          'db:signals:2@2024-05-01T10:09:59.000000Z',
        ]);
        expect(obs.recorded.WatermarkOutOfRangeRows).toEqual([3, 3]);
        const puts = s3.commandCalls(PutObjectCommand).map((c) => c.args[0].input);
        expect(puts).toHaveLength(2);
        expect(puts[1]?.Key).toBe(puts[0]?.Key);
        expect(puts[0]?.Key).toMatch(
          /^rejects\/db\/signals\/2024-05-01\/watermark-out-of-range\/4-9\.[0-9a-f]{16}\.ndjson$/,
        );
        const lines = String(puts[0]?.Body)
          .trim()
          .split('\n')
          .map((l) => JSON.parse(l) as { ref: string; reason: string });
        expect(lines.map((l) => [l.ref, l.reason])).toEqual([
          ['db:signals:4@-infinity', "timestamp is '-infinity': watermark mode never reads this row"],
          [
            'db:signals:7@2999-01-01T00:00:00.000000Z',
            "timestamp 2999-01-01T00:00:00.000000Z is past the database's now() + 10 s: not read, and the watermark not moved, until the database's clock reaches it",
          ],
          ['db:signals:9@infinity', "timestamp is 'infinity': watermark mode never reads this row"],
        ]);
        expect(obs.recorded.RowsRejected).toBeUndefined();
      });

      it("takes the horizon from the database's clock with the configured skew, not from the function's", async () => {
        // Prepare
        doc.on(GetCommand).resolves({});
        doc.on(PutCommand).resolves({});
        const db = new FakeDb(watermarkResponder([[]]));
        // Act
        const summary = await poll(
          deps(db, { config: { mode: 'watermark', watermarkSkewSeconds: 42 }, now: () => 0 }),
        );
        // Assess
        const probe = db.queries.find((q) => q.text.includes('pg_typeof'));
        expect(probe?.values).toEqual([42]);
        expect(
          db.queries.find((q) => q.text.includes("= '-infinity'::timestamptz ORDER BY"))?.values,
        ).toEqual([HORIZON, 3]);
        expect(forwardReads(db)[0]?.values).toEqual([3, HORIZON]);
        expect(summary.horizon).toBe(HORIZON);
      });

      it('counts the rows a watermark stored past the horizon left behind, and moves it back to where they start', async () => {
        // Prepare: an older version moved the watermark to 2999 at 10:05:30; rows written since are stranded.
        doc.on(GetCommand).resolves({
          Item: {
            value: '2999-01-01 00:00:00+00',
            id: '7',
            version: 12,
            advancedAt: '2024-05-01T10:05:30.000Z',
          },
        });
        doc.on(PutCommand).resolves({});
        const db = new FakeDb(
          watermarkResponder([[wmRow(8, '2024-05-01 10:05:00+00'), wmRow(10, '2024-05-01 10:09:00+00')]], {
            stall: { pulse_count: '4', pulse_beyond: true },
            lastBefore: [{ pulse_wm: '2024-05-01 10:04:19+00', pulse_id: '6' }],
          }),
        );
        // Act
        const summary = await poll(
          deps(db, { config: { mode: 'watermark', watermarkLookbackSeconds: 60, watermarkSkewSeconds: 10 } }),
        );
        // Assess: the stall counted in the fresh window behind the stored watermark's lookback.
        const stall = db.queries.find((q) => q.text.includes('AS pulse_beyond'));
        expect(stall?.values).toEqual([DB_NOW, HORIZON, '2999-01-01 00:00:00+00', 60, 50]);
        expect(obs.recorded.WatermarkStalledRows).toEqual([4]);
        // Moved back (conditionally) to the last row before advancedAt less the lookback and the skew.
        expect(db.queries.find((q) => q.text.includes('DESC LIMIT 1'))?.values).toEqual([
          '2024-05-01T10:04:20.000Z',
          HORIZON,
        ]);
        const puts = doc.commandCalls(PutCommand).map((c) => c.args[0].input);
        expect(puts[0]).toMatchObject({
          Item: {
            value: '2024-05-01 10:04:19+00',
            id: '6',
            version: 13,
            rewoundFrom: { value: '2999-01-01 00:00:00+00', id: '7' },
          },
          ConditionExpression: '#version = :version',
          ExpressionAttributeValues: { ':version': 12 },
        });
        // The reads resume there: the stranded rows are sent, and the watermark advances from the new version.
        expect(forwardReads(db)[0]?.values).toEqual(['2024-05-01 10:04:19+00', '6', 3, HORIZON]);
        expect(sentSignals().map((s) => s.id)).toEqual([
          'db:signals:8@2024-05-01T10:05:00.000000Z',
          'db:signals:10@2024-05-01T10:09:00.000000Z',
        ]);
        expect(puts[1]).toMatchObject({
          Item: { value: '2024-05-01 10:09:00+00', id: '10', version: 14 },
          ExpressionAttributeValues: { ':version': 13 },
        });
        expect(puts[1]?.Item).not.toHaveProperty('rewoundFrom');
        expect(summary).toMatchObject({
          stalled: 4,
          rows: 2,
          rewound: {
            from: { value: '2999-01-01 00:00:00+00', id: '7' },
            to: { value: '2024-05-01 10:04:19+00', id: '6' },
          },
          watermark: { value: '2024-05-01 10:09:00+00', version: 14 },
        });
      });

      it('moves a watermark past the horizon back before every row when none is dated before the stall', async () => {
        // Prepare: no advancedAt on the item (written by hand), and no row before the instant.
        doc.on(GetCommand).resolves({ Item: { value: 'infinity', id: '9', version: 2 } });
        doc.on(PutCommand).resolves({});
        const db = new FakeDb(
          watermarkResponder([[wmRow(1, '2024-05-01 10:00:00+00')]], {
            stall: { pulse_count: '1', pulse_beyond: true },
          }),
        );
        // Act
        const summary = await poll(deps(db, { config: { mode: 'watermark' } }));
        // Assess
        expect(db.queries.find((q) => q.text.includes('DESC LIMIT 1'))?.values).toEqual([
          '-infinity',
          HORIZON,
        ]);
        expect(summary.rewound?.to).toEqual({ value: '-infinity', id: '9' });
        expect(forwardReads(db)[0]?.values).toEqual(['-infinity', '9', 3, HORIZON]);
        expect(summary).toMatchObject({ rows: 1, sent: 1, stoppedBy: 'drained' });
      });

      it('stops without reading when another poller moves the watermark while this one moves it back', async () => {
        // Prepare
        doc.on(GetCommand).resolves({
          Item: {
            value: '2999-01-01 00:00:00+00',
            id: '7',
            version: 12,
            advancedAt: '2024-05-01T10:05:30.000Z',
          },
        });
        doc
          .on(PutCommand)
          .rejects(
            new ConditionalCheckFailedException({ message: 'The conditional request failed', $metadata: {} }),
          );
        const db = new FakeDb(
          watermarkResponder([[wmRow(8, '2024-05-01 10:05:00+00')]], {
            stall: { pulse_count: '1', pulse_beyond: true },
          }),
        );
        // Act
        const summary = await poll(deps(db, { config: { mode: 'watermark' } }));
        // Assess
        expect(summary).toMatchObject({ rounds: 0, rows: 0, stoppedBy: 'lost-race', stalled: 1 });
        expect(summary).not.toHaveProperty('rewound');
        expect(forwardReads(db)).toEqual([]);
        expect(sentSignals()).toEqual([]);
        expect(obs.total('WatermarkConflicts')).toBe(1);
      });

      it('reports no stall, and moves nothing, under a watermark within the horizon', async () => {
        // Prepare
        doc.on(GetCommand).resolves({ Item: { value: '2024-05-01 10:09:00+00', id: '5', version: 3 } });
        doc.on(PutCommand).resolves({});
        const db = new FakeDb(watermarkResponder([[]]));
        // Act
        const summary = await poll(deps(db, { config: { mode: 'watermark' } }));
        // Assess
        expect(summary).toMatchObject({ stalled: 0, outOfRange: 0, rows: 0 });
        expect(summary).not.toHaveProperty('rewound');
        expect(obs.recorded.WatermarkStalledRows).toEqual([0]);
        expect(db.queries.filter((q) => q.text.includes('DESC LIMIT 1'))).toEqual([]);
        expect(doc).not.toHaveReceivedCommand(PutCommand);
      });

      it('leaves a watermark column that is no timestamp (a version counter) unbounded, with no clock checks', async () => {
        // Prepare
        doc.on(GetCommand).resolves({ Item: { value: '41', id: '5', version: 3 } });
        doc.on(PutCommand).resolves({});
        const db = new FakeDb(watermarkResponder([[wmRow(6, '42')]], { type: 'bigint' }));
        // Act
        const summary = await poll(deps(db, { config: { mode: 'watermark' } }));
        // Assess
        const [read] = forwardReads(db);
        expect(read?.text).not.toContain('infinity');
        expect(read?.values).toEqual(['41', '5', 3]);
        expect(
          db.queries.filter((q) => q.text.includes('pulse_beyond') || q.text.includes('pulse_count')),
        ).toEqual([]);
        expect(summary).toMatchObject({ rows: 1, sent: 1 });
        expect(summary).not.toHaveProperty('horizon');
        expect(summary).not.toHaveProperty('stalled');
        expect(obs.recorded.WatermarkStalledRows).toBeUndefined();
        expect(obs.recorded.WatermarkOutOfRangeRows).toBeUndefined();
      });
    });
  });
});
