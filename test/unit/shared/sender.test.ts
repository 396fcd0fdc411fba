import { SendMessageBatchCommand, SQSClient } from '@aws-sdk/client-sqs';
import { mockClient } from 'aws-sdk-client-mock';
import { afterEach, describe, expect, it } from 'vitest';
import { PermanentError, SendFailedError } from '#shared/errors.ts';
import { SignalSender } from '#shared/sender.ts';
import { settings } from '#shared/settings.ts';
import { readableMessageBody, type Signal } from '#shared/signal.ts';
import { decodeSignals } from '../../helpers/signals.ts';

const origin = { kind: 's3' as const, ref: 's3://b/k@e' };
const signal = (i: number, pad = 0): Signal => ({
  id: `s3://b/k@e#${i}`,
  name: 'cpu',
  value: i,
  source: 'k',
  timestamp: '2024-01-01T00:00:00.000Z',
  ...(pad ? { attributes: { pad: 'x'.repeat(pad) } } : {}),
  origin: { kind: 's3', ref: `s3://b/k@e#${i}` },
});
const noSleep = async () => undefined;

describe('SignalSender', () => {
  const sqs = mockClient(SQSClient);
  afterEach(() => sqs.reset());
  /** The bodies of every message sent, in order. */
  const sentBodies = () =>
    sqs
      .commandCalls(SendMessageBatchCommand)
      .flatMap((c) => c.args[0].input.Entries ?? [])
      .map((e) => e.MessageBody ?? '');

  it('packs many signals into one message and one SendMessageBatch call', async () => {
    // Prepare: plain JSON messages (deflation is the next test's)
    sqs.on(SendMessageBatchCommand).resolves({ Successful: [], Failed: [] });
    const sender = new SignalSender(new SQSClient({}), 'q', origin, {
      maxMessageBytes: settings.signals.maxMessageBytes,
      sleep: noSleep,
      defaultSource: 'k',
      deflateLevel: 0,
    });
    // Act
    for (let i = 1; i <= 1000; i++) await sender.add(signal(i));
    await sender.flush();
    // Assess
    expect(sqs).toHaveReceivedCommandTimes(SendMessageBatchCommand, 1);
    const entries = sqs.commandCalls(SendMessageBatchCommand)[0]?.args[0].input.Entries ?? [];
    expect(entries).toHaveLength(1);
    const body = JSON.parse(entries[0]?.MessageBody ?? '{}');
    expect(body.v).toBe(3);
    expect(body.origin).toEqual(origin);
    expect(body.source).toBe('k');
    // Each entry leaves out what the message says: the ref is the rest after its origin's, the id that ref,
    // the source the message's.
    expect(body.signals[999]).toEqual(['#1000', 'cpu', 1000, '2024-01-01T00:00:00.000Z']);
    const signals = decodeSignals(entries[0]?.MessageBody ?? '');
    expect(signals).toHaveLength(1000);
    expect(signals[999]).toEqual(signal(1000));
    expect(sender.stats).toMatchObject({ signals: 1000, messages: 1, requests: 1 });
  });

  it('deflates each message into a version 4 message that reads back as the same signals', async () => {
    // Prepare
    sqs.on(SendMessageBatchCommand).resolves({ Successful: [], Failed: [] });
    const plain = new SignalSender(new SQSClient({}), 'q', origin, {
      maxMessageBytes: settings.signals.maxMessageBytes,
      sleep: noSleep,
      defaultSource: 'k',
      deflateLevel: 0,
    });
    const deflating = new SignalSender(new SQSClient({}), 'q', origin, {
      maxMessageBytes: settings.signals.maxMessageBytes,
      sleep: noSleep,
      defaultSource: 'k',
    });
    const signals = Array.from({ length: 24_000 }, (_, i) => ({
      ...signal(i + 1),
      value: (i * 7919) % 1000,
      attributes: { host: `host-${i % 13}`, note: `taken on rack ${i % 4} of room ${i % 9}` },
    }));
    // Act
    for (const s of signals) await plain.add(s);
    await plain.flush();
    const plainBodies = sentBodies();
    sqs.resetHistory();
    for (const s of signals) await deflating.add(s);
    await deflating.flush();
    // Assess: the same messages, each wrapped with its origin and count readable, and at least 3 times
    // smaller; the same signals back, in order; stats count the bytes sent.
    const bodies = sentBodies();
    expect(bodies).toHaveLength(plainBodies.length);
    bodies.forEach((body, i) => {
      const wrapper = JSON.parse(body);
      expect(Object.keys(wrapper)).toEqual(['v', 'origin', 'count', 'deflated']);
      expect(wrapper).toMatchObject({ v: 4, origin, count: decodeSignals(plainBodies[i] ?? '').length });
      expect(Buffer.byteLength(body) * 3).toBeLessThan(Buffer.byteLength(plainBodies[i] ?? ''));
      expect(readableMessageBody(body)).toBe(plainBodies[i]);
    });
    expect(bodies.flatMap((b) => decodeSignals(b))).toEqual(signals);
    const bytes = (list: string[]) => list.reduce((n, b) => n + Buffer.byteLength(b), 0);
    expect(deflating.stats.bytes).toBe(bytes(bodies));
    expect(plain.stats.bytes).toBe(bytes(plainBodies));
    // Smaller messages: more of them in each call (4 plain 256 KiB messages fill one).
    expect(deflating.stats.requests).toBeLessThan(plain.stats.requests);
  });

  it('escapes U+FFFE and U+FFFF, which SQS refuses in a body and JSON.stringify leaves as they are', async () => {
    // Prepare: valid Unicode in any input; SQS answers InvalidMessageContents for the whole message.
    sqs.on(SendMessageBatchCommand).resolves({ Successful: [], Failed: [] });
    const odd = (i: number): Signal => ({
      ...signal(i),
      name: `cpu\uFFFF${i}`,
      attributes: { note: 'a\uFFFEb' },
      source: 'k\uFFFF',
    });
    for (const deflateLevel of [0, 1]) {
      sqs.resetHistory();
      const sender = new SignalSender(
        new SQSClient({}),
        'q',
        { kind: 's3', ref: 's3://b/k\uFFFF@e' },
        {
          maxMessageBytes: settings.signals.maxMessageBytes,
          sleep: noSleep,
          defaultSource: 'k',
          deflateLevel,
        },
      );
      // Act: one signal (measured alone) and enough for the bulk path
      for (let i = 1; i <= 40; i++)
        await sender.add({ ...odd(i), origin: { kind: 's3', ref: `s3://b/k\uFFFF@e#${i}` } });
      await sender.flush();
      // Assess
      const bodies = sentBodies();
      expect(bodies.length).toBeGreaterThan(0);
      for (const b of bodies) expect(b).not.toMatch(/[\uFFFE\uFFFF]/);
      const back = bodies.flatMap((b) => decodeSignals(b));
      expect(back).toHaveLength(40);
      expect(back[39]).toEqual({
        ...odd(40),
        origin: { kind: 's3', ref: 's3://b/k\uFFFF@e#40' },
        id: 's3://b/k@e#40',
      });
    }
  });

  it('refuses a deflate level zlib does not have, before sending anything', () => {
    for (const deflateLevel of [-1, 10, 1.5, Number.NaN]) {
      expect(
        () =>
          new SignalSender(new SQSClient({}), 'q', origin, {
            maxMessageBytes: settings.signals.maxMessageBytes,
            deflateLevel,
          }),
      ).toThrow(/deflateLevel must be a whole number from 0 \(off\) to 9/);
    }
  });

  it('sends a message as plain JSON when deflating would not make it smaller', async () => {
    // Prepare: one small signal, which the wrapper and base64 make larger than its plain message.
    sqs.on(SendMessageBatchCommand).resolves({ Successful: [], Failed: [] });
    const sender = new SignalSender(new SQSClient({}), 'q', origin, {
      maxMessageBytes: settings.signals.maxMessageBytes,
      sleep: noSleep,
    });
    // Act
    await sender.add(signal(1));
    await sender.flush();
    // Assess
    const bodies = sentBodies();
    expect(bodies).toHaveLength(1);
    expect(JSON.parse(bodies[0] ?? '').v).toBe(3);
    expect(decodeSignals(bodies[0] ?? '')).toEqual([signal(1)]);
    expect(sender.stats.bytes).toBe(Buffer.byteLength(bodies[0] ?? ''));
  });

  it('keeps every message under the byte budget and every call within 10 entries and 1 MiB', async () => {
    // Prepare
    sqs.on(SendMessageBatchCommand).resolves({ Failed: [] });
    const sender = new SignalSender(new SQSClient({}), 'q', origin, {
      maxMessageBytes: 64 * 1024,
      sleep: noSleep,
    });
    // Act
    for (let i = 1; i <= 5000; i++) await sender.add(signal(i, 200));
    await sender.flush();
    // Assess
    const calls = sqs.commandCalls(SendMessageBatchCommand);
    let total = 0;
    for (const call of calls) {
      const entries = call.args[0].input.Entries ?? [];
      expect(entries.length).toBeLessThanOrEqual(10);
      const bytes = entries.reduce((n, e) => n + Buffer.byteLength(e.MessageBody ?? ''), 0);
      expect(bytes).toBeLessThanOrEqual(1024 * 1024);
      for (const e of entries) {
        expect(Buffer.byteLength(e.MessageBody ?? '')).toBeLessThanOrEqual(64 * 1024);
        total += decodeSignals(e.MessageBody ?? '').length;
      }
    }
    expect(total).toBe(5000);
    expect(calls.length).toBeGreaterThan(1);
  });

  it.each([
    ['ASCII', 'x'],
    ['2-byte', 'é'],
    ['3-byte', '€'],
    ['4-byte (surrogate pairs)', '😀'],
    ['mixed', 'aé€😀'],
  ])('fills messages to the byte budget, never over it, with %s characters', async (_label, unit) => {
    // Prepare: signals of varied lengths in characters, so that the byte count cannot be guessed from them.
    sqs.on(SendMessageBatchCommand).resolves({ Failed: [] });
    const max = 16 * 1024;
    const sender = new SignalSender(new SQSClient({}), 'q', origin, {
      maxMessageBytes: max,
      sleep: noSleep,
      deflateLevel: 0,
    });
    const signals = Array.from({ length: 3000 }, (_, i) => ({
      ...signal(i + 1),
      attributes: { pad: unit.repeat(1 + ((i * 37) % 90)) },
    }));
    // Act
    for (const s of signals) await sender.add(s);
    await sender.flush();
    // Assess: every message within the budget less the slack kept for SQS; each but the last too full to
    // take the first signal of the next; all signals there, in order.
    const bodies = sentBodies();
    const limit = max - 512;
    const decoded = bodies.map((b) => decodeSignals(b));
    bodies.forEach((body, i) => {
      const bytes = Buffer.byteLength(body);
      expect(bytes).toBeLessThanOrEqual(limit);
      const next = decoded[i + 1]?.[0];
      if (next) {
        const entry = JSON.parse(body).signals.length > 0 ? 1 : 0;
        const nextBytes = Buffer.byteLength(
          JSON.stringify(['#', next.name, next.value, next.timestamp, next.attributes]),
        );
        expect(bytes + entry + nextBytes).toBeGreaterThan(limit - 40);
      }
    });
    expect(decoded.flat()).toEqual(signals);
  });

  it('keeps messages within the budget when signals grow larger than the ones before them', async () => {
    // Prepare: signals are serialised many at a time at the size the earlier ones took; here small ones
    // are followed by ones ten times larger, then small ones again.
    sqs.on(SendMessageBatchCommand).resolves({ Failed: [] });
    const max = 16 * 1024;
    const sender = new SignalSender(new SQSClient({}), 'q', origin, {
      maxMessageBytes: max,
      sleep: noSleep,
      deflateLevel: 0,
    });
    const signals = Array.from({ length: 900 }, (_, i) => signal(i + 1, i >= 300 && i < 600 ? 400 : 20));
    // Act
    for (const s of signals) await sender.add(s);
    await sender.flush();
    // Assess
    const bodies = sentBodies();
    for (const body of bodies) expect(Buffer.byteLength(body)).toBeLessThanOrEqual(max - 512);
    expect(bodies.flatMap((b) => decodeSignals(b))).toEqual(signals);
    expect(sender.pending).toBe(0);
  });

  it('puts at most maxSignalsPerMessage signals in a message, however small they are', async () => {
    // Prepare
    sqs.on(SendMessageBatchCommand).resolves({ Failed: [] });
    const sender = new SignalSender(new SQSClient({}), 'q', origin, {
      maxMessageBytes: settings.signals.maxMessageBytes,
      maxSignalsPerMessage: 300,
      defaultSource: 'k',
      sleep: noSleep,
    });
    // Act
    for (let i = 1; i <= 1000; i++) await sender.add(signal(i));
    await sender.flush();
    // Assess
    const bodies = sentBodies().map((b) => decodeSignals(b));
    expect(bodies.map((b) => b.length)).toEqual([300, 300, 300, 100]);
    expect(bodies.flat()).toEqual(Array.from({ length: 1000 }, (_, i) => signal(i + 1)));
  });

  it('retries only the entries that failed', async () => {
    // Prepare
    sqs
      .on(SendMessageBatchCommand)
      .resolvesOnce({ Failed: [{ Id: '1', Code: 'InternalError', SenderFault: false }] })
      .resolves({ Failed: [] });
    const sender = new SignalSender(new SQSClient({}), 'q', origin, {
      maxMessageBytes: 4096,
      sleep: noSleep,
    });
    // Act
    for (let i = 1; i <= 150; i++) await sender.add(signal(i));
    await sender.flush();
    // Assess
    const calls = sqs.commandCalls(SendMessageBatchCommand);
    expect(calls).toHaveLength(2);
    const first = calls[0]?.args[0].input.Entries ?? [];
    const retry = calls[1]?.args[0].input.Entries ?? [];
    expect(first.length).toBeGreaterThan(1);
    expect(retry).toHaveLength(1);
    expect(retry[0]).toEqual(first[1]);
    expect(sender.stats.retriedEntries).toBe(1);
  });

  it('returns a promise only when a signal must wait for the call in flight', async () => {
    // Prepare: no call settles until released.
    let release: (() => void) | undefined;
    const gate = new Promise<void>((r) => {
      release = r;
    });
    sqs.on(SendMessageBatchCommand).callsFake(async () => {
      await gate;
      return { Failed: [] };
    });
    const sender = new SignalSender(new SQSClient({}), 'q', origin, {
      maxMessageBytes: 1024,
      maxEntries: 1,
      sleep: noSleep,
    });
    // Act: add until a signal has to wait (a returned promise still pending after 20 ms).
    const pendingAfter = async (p: Promise<void>) =>
      Promise.race([p.then(() => false), new Promise<boolean>((r) => setTimeout(() => r(true), 20))]);
    let waited: Promise<void> | undefined;
    let added = 0;
    let returned = 0;
    while (!waited && added < 1000) {
      const p = sender.add(signal(++added));
      if (!p) continue;
      returned++;
      if (await pendingAfter(p)) waited = p;
    }
    // Assess: most signals were buffered without a promise; the one that waits resolves once the call does.
    expect(waited).toBeInstanceOf(Promise);
    expect(returned).toBeLessThan(added / 2);
    release?.();
    await waited;
    await sender.flush();
    expect(sender.stats.signals).toBe(added);
  });

  it('keeps up to maxInFlight calls in flight while it packs the next, never more', async () => {
    // Prepare: every call waits 5 ms; count how many are open at once.
    let open = 0;
    let most = 0;
    sqs.on(SendMessageBatchCommand).callsFake(async () => {
      open++;
      most = Math.max(most, open);
      await new Promise((r) => setTimeout(r, 5));
      open--;
      return { Failed: [] };
    });
    const sender = new SignalSender(new SQSClient({}), 'q', origin, {
      maxMessageBytes: 1024,
      maxEntries: 1,
      maxInFlight: 3,
      sleep: noSleep,
    });
    // Act
    for (let i = 1; i <= 300; i++) await sender.add(signal(i));
    await sender.flush();
    // Assess
    expect(most).toBe(3);
    expect(open).toBe(0);
    const sent = sentBodies().flatMap((b) => decodeSignals(b));
    expect(sent.map((x) => x.value)).toEqual(Array.from({ length: 300 }, (_, i) => i + 1));
  });

  it('surfaces a call that failed while others were in flight, at the latest on flush', async () => {
    // Prepare: the second call fails for good (sender at fault); the others succeed.
    let n = 0;
    sqs.on(SendMessageBatchCommand).callsFake(async () => {
      const call = ++n;
      await new Promise((r) => setTimeout(r, 2));
      return call === 2
        ? { Failed: [{ Id: '0', Code: 'InvalidMessageContents', SenderFault: true }] }
        : { Failed: [] };
    });
    const sender = new SignalSender(new SQSClient({}), 'q', origin, {
      maxMessageBytes: 1024,
      maxEntries: 1,
      maxInFlight: 3,
      sleep: noSleep,
    });
    // Act
    const run = async () => {
      for (let i = 1; i <= 40; i++) await sender.add(signal(i));
      await sender.flush();
    };
    // Assess
    await expect(run()).rejects.toBeInstanceOf(PermanentError);
  });

  it('gives up with a transient SendFailedError after the configured attempts', async () => {
    sqs
      .on(SendMessageBatchCommand)
      .resolves({ Failed: [{ Id: '0', Code: 'ServiceUnavailable', SenderFault: false }] });
    const sender = new SignalSender(new SQSClient({}), 'q', origin, {
      maxMessageBytes: settings.signals.maxMessageBytes,
      attempts: 3,
      sleep: noSleep,
    });
    await sender.add(signal(1));
    await expect(sender.flush()).rejects.toBeInstanceOf(SendFailedError);
    expect(sqs).toHaveReceivedCommandTimes(SendMessageBatchCommand, 3);
  });

  it('fails permanently when SQS says the sender is at fault', async () => {
    sqs
      .on(SendMessageBatchCommand)
      .resolves({ Failed: [{ Id: '0', Code: 'InvalidMessageContents', SenderFault: true }] });
    const sender = new SignalSender(new SQSClient({}), 'q', origin, {
      maxMessageBytes: settings.signals.maxMessageBytes,
      sleep: noSleep,
    });
    await sender.add(signal(1));
    await expect(sender.flush()).rejects.toBeInstanceOf(PermanentError);
  });

  it('refuses a signal larger than a message', async () => {
    const sender = new SignalSender(new SQSClient({}), 'q', origin, {
      maxMessageBytes: 2048,
      sleep: noSleep,
    });
    expect(() => sender.add(signal(1, 4000))).toThrow(PermanentError);
    expect(sender.stats.signals).toBe(0);
    expect(sender.pending).toBe(0);
  });

  it('sends nothing when nothing was added', async () => {
    const sender = new SignalSender(new SQSClient({}), 'q', origin, {
      maxMessageBytes: settings.signals.maxMessageBytes,
    });
    await sender.flush();
    expect(sqs).not.toHaveReceivedCommand(SendMessageBatchCommand);
  });
});
