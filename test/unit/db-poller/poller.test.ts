import { EventEmitter } from 'node:events';
import { ConditionalCheckFailedException, DynamoDBClient } from '@aws-sdk/client-dynamodb';
import { PutObjectCommand, S3Client } from '@aws-sdk/client-s3';
import { GetQueueAttributesCommand, SendMessageBatchCommand, SQSClient } from '@aws-sdk/client-sqs';
import { DynamoDBDocumentClient, GetCommand, PutCommand } from '@aws-sdk/lib-dynamodb';
import { mockClient } from 'aws-sdk-client-mock';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { type PollerConfig, type PollerDeps, poll } from '../../../functions/db-poller/poller.ts';
import { settings } from '../../../shared/settings.ts';
import type { Signal } from '../../../shared/signal.ts';
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
    const watermarkResponder = (batches: unknown[][]): Responder => {
      const queue = [...batches];
      return (text) => (text.startsWith('SELECT') ? (queue.shift() ?? []) : new Error(`unexpected ${text}`));
    };

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
      // Assess
      expect(db.verbs()).toEqual(['SELECT']);
      expect(db.queries[0]?.text).toMatch(
        /WHERE \(t\."timestamp", t\."id"\) > \(\$1, \$2\) ORDER BY t\."timestamp", t\."id" LIMIT \$3$/,
      );
      expect(db.queries[0]?.values).toEqual(['2024-05-01 09:00:00+00', '7', 3]);
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
      expect(db.queries[0]?.text).toMatch(/WHERE t\."timestamp" IS NOT NULL ORDER BY/);
      expect(db.queries[0]?.values).toEqual([3]);
      expect(db.queries[1]?.values).toEqual(['2024-05-01 10:00:02+00', '3', 3]);
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
      expect(db.queries).toHaveLength(1);
      expect(obs.total('WatermarkConflicts')).toBe(1);
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
  });
});
