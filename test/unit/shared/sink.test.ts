import { PutObjectCommand, S3Client } from '@aws-sdk/client-s3';
import { SendMessageBatchCommand, SQSClient } from '@aws-sdk/client-sqs';
import { mockClient } from 'aws-sdk-client-mock';
import { afterEach, describe, expect, it } from 'vitest';
import { SendFailedError } from '#shared/errors.ts';
import type { RejectEntry } from '#shared/quarantine.ts';
import { SignalSender } from '#shared/sender.ts';
import { RejectsBatch, type RejectsOut, SignalSink } from '#shared/sink.ts';
import { decodeSignals } from '../../helpers/signals.ts';

const noSleep = async () => undefined;
const good = (i: number) => ({ name: 'cpu', value: i, timestamp: '2024-01-01T00:00:00.000Z' });

/** Rejects kept in memory, with what was done to them. */
class MemoryRejects implements RejectsOut {
  readonly written: RejectEntry[] = [];
  closed = 0;
  aborted = 0;
  async write(entry: RejectEntry): Promise<void> {
    this.written.push(entry);
  }
  async close(): Promise<string | undefined> {
    this.closed++;
    return this.written.length > 0 ? 'rejects/memory.ndjson' : undefined;
  }
  async abort(): Promise<void> {
    this.aborted++;
  }
}

// One mock of each client for the whole file (a second mockClient of the same class would replace the first).
const sqs = mockClient(SQSClient);
const s3 = mockClient(S3Client);
afterEach(() => {
  sqs.reset();
  s3.reset();
});

describe('SignalSink', () => {
  const sentSignals = () =>
    sqs
      .commandCalls(SendMessageBatchCommand)
      .flatMap((c) => c.args[0].input.Entries ?? [])
      .flatMap((e) => decodeSignals(e.MessageBody ?? ''));
  const sender = (ref: string, source: string) =>
    new SignalSender(
      new SQSClient({}),
      'q',
      { kind: ref.startsWith('s3:') ? 's3' : 'kafka', ref },
      {
        maxMessageBytes: 262_144,
        defaultSource: source,
        sleep: noSleep,
        attempts: 2,
      },
    );

  it('sends a row under its file origin and quarantines a bad one with its row, counting both from a checkpoint', async () => {
    // Prepare: an earlier attempt got to 10 sent, 1 rejected
    sqs.on(SendMessageBatchCommand).resolves({ Successful: [], Failed: [] });
    const rejects = new MemoryRejects();
    const sink = new SignalSink(sender('s3://b/k@e', 'k'), rejects, 2, {
      sent: 10,
      rejected: 1,
      firstErrors: ['row 3: value is required'],
    });
    // Act
    await sink.addAt(good(1), '#11', 11);
    await sink.addAt({ name: 'cpu', value: 'x', timestamp: '2024-01-01T00:00:00Z' }, '#12', 12);
    await sink.addAt({ value: 1 }, '#13', 13);
    const key = await sink.close();
    // Assess
    expect(sink.sent).toBe(11);
    expect(sink.rejected).toBe(3);
    // Two kept at most: the earlier attempt's and the first of this one.
    expect(sink.firstErrors).toHaveLength(2);
    expect(sink.firstErrors[1]).toMatch(/^row 12: /);
    expect(rejects.written.map((r) => [r.ref, r.row])).toEqual([
      ['s3://b/k@e#12', 12],
      ['s3://b/k@e#13', 13],
    ]);
    expect(rejects.written[1]?.record).toEqual({ value: 1 });
    expect(key).toBe('rejects/memory.ndjson');
    expect(sentSignals()).toEqual([
      expect.objectContaining({
        id: 's3://b/k@e#11',
        source: 'k',
        origin: { kind: 's3', ref: 's3://b/k@e#11' },
      }),
    ]);
  });

  it('sends a record with an origin of its own whole, and makes a reject’s details only for a reject', async () => {
    // Prepare
    sqs.on(SendMessageBatchCommand).resolves({ Successful: [], Failed: [] });
    const rejects = new MemoryRejects();
    const sink = new SignalSink(sender('kafka:t:0:5-6', 't'), rejects, 0);
    let detailsMade = 0;
    const details = () => {
      detailsMade++;
      return { raw: 'the raw text' };
    };
    const ctx = (offset: number) => ({
      origin: { kind: 'kafka' as const, ref: `kafka:t:0:${offset}` },
      defaultSource: 't',
    });
    // Act
    const sent = await sink.add(good(5), ctx(5), details);
    const rejected = await sink.add({ name: 'cpu' }, ctx(6), details);
    await sink.close();
    // Assess
    expect(sent.ok).toBe(true);
    expect(rejected.ok).toBe(false);
    expect(detailsMade).toBe(1);
    expect(rejects.written).toEqual([
      { ref: 'kafka:t:0:6', reason: expect.stringContaining('value'), raw: 'the raw text' },
    ]);
    expect(sentSignals()).toEqual([expect.objectContaining({ id: 'kafka:t:0:5', source: 't' })]);
    expect([sink.sent, sink.rejected]).toEqual([1, 1]);
  });

  it('puts no rejects when the signals could not be sent', async () => {
    // Prepare: SQS fails every entry, and the batch keeps a reject
    sqs.on(SendMessageBatchCommand).resolves({
      Successful: [],
      Failed: [{ Id: '0', Code: 'InternalError', SenderFault: false }],
    });
    const rejects = new RejectsBatch(new S3Client({}), 'bucket', () => 'rejects/kafka/t/0/5-6.ndjson');
    const sink = new SignalSink(sender('kafka:t:0:5-6', 't'), rejects, 0);
    await sink.add(good(5), { origin: { kind: 'kafka', ref: 'kafka:t:0:5' }, defaultSource: 't' });
    await sink.reject({ ref: 'kafka:t:0:6', reason: 'tombstone (null value)' });
    // Act
    const closing = sink.close();
    // Assess
    await expect(closing).rejects.toBeInstanceOf(SendFailedError);
    expect(s3).toHaveReceivedCommandTimes(PutObjectCommand, 0);
  });
});

describe('RejectsBatch', () => {
  it('puts its rejects in one object under the key made of them, and nothing when there are none', async () => {
    // Prepare
    s3.on(PutObjectCommand).resolves({});
    const batch = new RejectsBatch(
      new S3Client({}),
      'bucket',
      (entries) => `rejects/db/t/${entries.map((e) => e.ref.split(':').at(-1)).join('-')}.ndjson`,
    );
    const empty = new RejectsBatch(new S3Client({}), 'bucket', () => 'never');
    await batch.write({ ref: 'db:t:11', reason: 'a' });
    await batch.write({ ref: 'db:t:16', reason: 'b' });
    // Act
    const key = await batch.close();
    const none = await empty.close();
    // Assess
    expect(key).toBe('rejects/db/t/11-16.ndjson');
    expect(none).toBeUndefined();
    expect(s3).toHaveReceivedCommandTimes(PutObjectCommand, 1);
    const body = String(s3.commandCalls(PutObjectCommand)[0]?.args[0].input.Body);
    expect(
      body
        .trim()
        .split('\n')
        .map((l) => JSON.parse(l).ref),
    ).toEqual(['db:t:11', 'db:t:16']);
  });

  it('forgets what it gathered when aborted', async () => {
    // Prepare
    const batch = new RejectsBatch(new S3Client({}), 'bucket', () => 'rejects/x.ndjson');
    await batch.write({ ref: 'db:t:1', reason: 'a' });
    // Act
    await batch.abort();
    const key = await batch.close();
    // Assess
    expect(key).toBeUndefined();
    expect(s3).toHaveReceivedCommandTimes(PutObjectCommand, 0);
  });
});
