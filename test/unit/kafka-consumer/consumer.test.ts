import { PutObjectCommand, S3Client } from '@aws-sdk/client-s3';
import { SendMessageBatchCommand, SQSClient } from '@aws-sdk/client-sqs';
import { mockClient } from 'aws-sdk-client-mock';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { SendFailedError } from '#shared/errors.ts';
import { consumeKafkaRecords, type KafkaConsumeDeps } from '../../../functions/kafka-consumer/consumer.ts';
import { consumerRecordsOf, type KafkaRecordInput, kafkaEventFactory } from '../../helpers/kafka.ts';
import { quietObservability } from '../../helpers/observability.ts';
import { quarantined, sentMessages, sentSignals } from './helpers.ts';

const good = (name: string, value: unknown = 1) => ({ name, value, timestamp: '2024-06-10T08:00:00Z' });

describe('consumeKafkaRecords', () => {
  const sqs = mockClient(SQSClient);
  const s3 = mockClient(S3Client);
  afterEach(() => {
    sqs.reset();
    s3.reset();
  });

  const deps = (over: Partial<KafkaConsumeDeps> = {}) => {
    const obs = quietObservability();
    const d: KafkaConsumeDeps = {
      s3: new S3Client({ region: 'us-east-1' }),
      sqs: new SQSClient({ region: 'us-east-1' }),
      logger: obs.logger,
      metrics: obs.metrics,
      config: {
        signalsQueueUrl: 'q',
        quarantineBucket: 'qb',
        valueFormat: 'json',
        maxMessageBytes: 256 * 1024,
      },
      senderOptions: { sleep: async () => undefined },
      ...over,
    };
    return { deps: d, ...obs };
  };
  const consume = async (records: KafkaRecordInput[], d = deps().deps) =>
    consumeKafkaRecords(await consumerRecordsOf(kafkaEventFactory(records)), d);

  it('sends valid records in one SendMessageBatch, with ids kafka:<topic>:<partition>:<offset>', async () => {
    // Prepare
    sqs.on(SendMessageBatchCommand).resolves({ Failed: [] });
    // Act
    const out = await consume([
      { offset: 40, value: good('cpu') },
      { offset: 41, value: good('mem', '2.5') },
      { offset: 42, value: good('disk', 3) },
    ]);
    // Assess
    expect(sqs).toHaveReceivedCommandTimes(SendMessageBatchCommand, 1);
    expect(sentSignals(sqs).map((s) => s.id)).toEqual([
      'kafka:pulse_signals:0:40',
      'kafka:pulse_signals:0:41',
      'kafka:pulse_signals:0:42',
    ]);
    expect(sentSignals(sqs)[1]).toEqual({
      id: 'kafka:pulse_signals:0:41',
      name: 'mem',
      value: 2.5,
      source: 'pulse_signals',
      timestamp: '2024-06-10T08:00:00.000Z',
      origin: { kind: 'kafka', ref: 'kafka:pulse_signals:0:41' },
    });
    expect(sentMessages(sqs)[0]?.origin).toEqual({ kind: 'kafka', ref: 'kafka:pulse_signals:0:40-42' });
    expect(out).toEqual([
      { topic: 'pulse_signals', partition: 0, firstOffset: 40, lastOffset: 42, sent: 3, quarantined: 0 },
    ]);
    expect(s3).toHaveReceivedCommandTimes(PutObjectCommand, 0);
  });

  it('keeps the id and source a message brings, and every other field as attributes', async () => {
    // Prepare
    sqs.on(SendMessageBatchCommand).resolves({ Failed: [] });
    // Act
    await consume([{ value: { ...good('cpu'), id: 'evt-1', source: 'host-a', region: 'eu', ok: true } }]);
    // Assess
    expect(sentSignals(sqs)[0]).toMatchObject({
      id: 'evt-1',
      source: 'host-a',
      attributes: { region: 'eu', ok: true },
      origin: { kind: 'kafka', ref: 'kafka:pulse_signals:0:100' },
    });
  });

  it('takes the Kafka record timestamp when the message has none', async () => {
    // Prepare
    sqs.on(SendMessageBatchCommand).resolves({ Failed: [] });
    // Act
    await consume([{ value: { name: 'cpu', value: 1 }, timestamp: 1_718_006_400_123 }]);
    // Assess
    expect(sentSignals(sqs)[0]?.timestamp).toBe('2024-06-10T08:00:00.123Z');
  });

  it('reads the Kafka record timestamp as milliseconds, even before 2001, and a negative one as none', async () => {
    // Prepare
    sqs.on(SendMessageBatchCommand).resolves({ Failed: [] });
    s3.on(PutObjectCommand).resolves({});
    const noTimestamp = { name: 'cpu', value: 1 };
    // Act
    await consume([
      { offset: 1, value: noTimestamp, timestamp: -1 }, // Kafka's NO_TIMESTAMP
      { offset: 2, value: noTimestamp, timestamp: 946_681_200_000 }, // below 1e12, yet milliseconds
      { offset: 3, value: noTimestamp, timestamp: 1_718_006_400_000 },
      // The message's own timestamp keeps its meaning: below 1e12 is epoch seconds.
      { offset: 4, value: { ...noTimestamp, timestamp: 946_681_200 }, timestamp: -1 },
    ]);
    // Assess
    expect(sentSignals(sqs).map((s) => [s.id, s.timestamp])).toEqual([
      ['kafka:pulse_signals:0:2', '1999-12-31T23:00:00.000Z'],
      ['kafka:pulse_signals:0:3', '2024-06-10T08:00:00.000Z'],
      ['kafka:pulse_signals:0:4', '1999-12-31T23:00:00.000Z'],
    ]);
    expect(quarantined(s3)['rejects/kafka/pulse_signals/0/1-4.ndjson']).toEqual([
      expect.objectContaining({ ref: 'kafka:pulse_signals:0:1', reason: 'timestamp is required' }),
    ]);
  });

  it('sends each partition of an event under its own origin, and quarantines each under its own key', async () => {
    // Prepare
    sqs.on(SendMessageBatchCommand).resolves({ Failed: [] });
    s3.on(PutObjectCommand).resolves({});
    // Act
    const out = await consume([
      { partition: 0, offset: 10, value: good('a') },
      { partition: 1, offset: 5, value: good('b') },
      { partition: 0, offset: 11, value: 'oops' },
      { topic: 'other', partition: 0, offset: 7, value: good('c') },
      { partition: 1, offset: 6, value: good('d') },
    ]);
    // Assess
    expect(sentMessages(sqs).map((m) => [m.origin.ref, m.signals.map((s) => s.id)])).toEqual([
      ['kafka:pulse_signals:0:10-11', ['kafka:pulse_signals:0:10']],
      ['kafka:pulse_signals:1:5-6', ['kafka:pulse_signals:1:5', 'kafka:pulse_signals:1:6']],
      ['kafka:other:0:7-7', ['kafka:other:0:7']],
    ]);
    expect(Object.keys(quarantined(s3))).toEqual(['rejects/kafka/pulse_signals/0/10-11.ndjson']);
    expect(out.map((p) => [p.topic, p.partition, p.sent, p.quarantined])).toEqual([
      ['pulse_signals', 0, 1, 1],
      ['pulse_signals', 1, 2, 0],
      ['other', 0, 1, 0],
    ]);
  });

  it.each([
    {
      kind: 'a value that is not JSON',
      input: { value: 'not json {' },
      reason: /^value is not JSON/,
      raw: 'not json {',
    },
    {
      kind: 'JSON that is an array',
      input: { value: [1, 2] },
      reason: /^record must be an object, not an array$/,
      raw: '[1,2]',
    },
    {
      kind: 'JSON that is a string',
      input: { value: '"cpu"' },
      reason: /^record must be an object, not a string$/,
      raw: '"cpu"',
    },
    { kind: 'JSON that is a number', input: { value: '42' }, reason: /not a number$/, raw: '42' },
    {
      kind: 'JSON failing the schema',
      input: { value: good('cpu', '12x') },
      reason: /^value must be wholly numeric, got "12x"$/,
      raw: JSON.stringify(good('cpu', '12x')),
    },
    {
      kind: 'JSON missing its name',
      input: { value: { value: 1, timestamp: 0 } },
      reason: /^name is required$/,
      raw: '{"value":1,"timestamp":0}',
    },
    { kind: 'a tombstone', input: { value: null }, reason: /^tombstone \(null value\)$/, raw: undefined },
    {
      kind: 'a value that is not base64',
      input: { value: '', rawValue: 'not*base64' },
      reason: /^value could not be decoded as base64 UTF-8 text: /,
      raw: 'not*base64',
    },
  ])(
    'quarantines $kind with topic, partition, offset and reason, and returns normally',
    async ({ input, reason, raw }) => {
      // Prepare
      sqs.on(SendMessageBatchCommand).resolves({ Failed: [] });
      s3.on(PutObjectCommand).resolves({});
      const { deps: d, total } = deps();
      // Act
      const out = await consume(
        [
          { partition: 3, offset: 70, value: good('before') },
          { partition: 3, offset: 71, ...input },
          { partition: 3, offset: 72, value: good('after') },
        ],
        d,
      );
      // Assess
      expect(sentSignals(sqs).map((s) => s.id)).toEqual([
        'kafka:pulse_signals:3:70',
        'kafka:pulse_signals:3:72',
      ]);
      const lines = quarantined(s3)['rejects/kafka/pulse_signals/3/70-72.ndjson'];
      expect(lines).toHaveLength(1);
      expect(lines?.[0]?.ref).toBe('kafka:pulse_signals:3:71');
      expect(lines?.[0]?.reason).toMatch(reason);
      expect(lines?.[0]?.raw).toBe(raw);
      expect(out[0]).toMatchObject({
        sent: 2,
        quarantined: 1,
        rejectsKey: 'rejects/kafka/pulse_signals/3/70-72.ndjson',
      });
      expect(total('KafkaRecordsDecoded')).toBe(2);
      expect(total('KafkaRecordsQuarantined')).toBe(1);
    },
  );

  it('quarantines a batch of nothing but bad records in one object and sends nothing', async () => {
    // Prepare
    s3.on(PutObjectCommand).resolves({});
    // Act
    await consume([{ value: 'x' }, { value: null }, { value: good('cpu', '12x') }]);
    // Assess
    expect(sqs).toHaveReceivedCommandTimes(SendMessageBatchCommand, 0);
    expect(s3).toHaveReceivedCommandTimes(PutObjectCommand, 1);
    expect(quarantined(s3)['rejects/kafka/pulse_signals/0/100-102.ndjson']?.map((l) => l.ref)).toEqual([
      'kafka:pulse_signals:0:100',
      'kafka:pulse_signals:0:101',
      'kafka:pulse_signals:0:102',
    ]);
  });

  it('quarantines a value that is not UTF-8, naming the byte, instead of sending it with U+FFFD', async () => {
    // Prepare
    sqs.on(SendMessageBatchCommand).resolves({ Failed: [] });
    s3.on(PutObjectCommand).resolves({});
    const latin1 = Buffer.concat([
      Buffer.from('{"name":"temp_'),
      Buffer.from([0xb0]), // the Latin-1 degree sign
      Buffer.from('C","value":21.5,"timestamp":"2024-06-10T08:00:00Z"}'),
    ]);
    // Act
    const out = await consume([
      { offset: 1, value: new Uint8Array(latin1) },
      { offset: 2, value: good('temp_\uFFFDC') }, // a real U+FFFD is valid UTF-8
      { offset: 3, value: good('cpu') },
    ]);
    // Assess
    expect(sentSignals(sqs).map((s) => [s.id, s.name])).toEqual([
      ['kafka:pulse_signals:0:2', 'temp_\uFFFDC'],
      ['kafka:pulse_signals:0:3', 'cpu'],
    ]);
    expect(quarantined(s3)['rejects/kafka/pulse_signals/0/1-3.ndjson']).toEqual([
      expect.objectContaining({
        ref: 'kafka:pulse_signals:0:1',
        reason: 'value is not valid UTF-8 (at byte 14)',
        raw: latin1.toString('base64'),
      }),
    ]);
    expect(out[0]).toMatchObject({ sent: 2, quarantined: 1 });
  });

  it('clips the raw text of a large rejected value', async () => {
    // Prepare
    s3.on(PutObjectCommand).resolves({});
    // Act
    await consume([{ value: `not json ${'x'.repeat(10_000)}` }]);
    // Assess
    const raw = quarantined(s3)['rejects/kafka/pulse_signals/0/100-100.ndjson']?.[0]?.raw ?? '';
    expect(raw.length).toBeLessThanOrEqual(2049);
    expect(raw.startsWith('not json x')).toBe(true);
  });

  it('keeps a text key and headers as kafka.key and kafka.header.<name>, a repeated header once per value, nothing for a null key', async () => {
    // Prepare
    sqs.on(SendMessageBatchCommand).resolves({ Failed: [] });
    // Act
    await consume([
      { value: good('a') },
      { key: null, value: good('b') },
      {
        key: 'host-a',
        headers: [{ 'content-type': 'application/json' }, { trace: 'abc' }, { trace: 'def' }],
        value: { ...good('c'), region: 'eu' },
      },
      { key: '', value: good('d') },
    ]);
    // Assess
    const signals = sentSignals(sqs);
    expect(signals.map((s) => s.name)).toEqual(['a', 'b', 'c', 'd']);
    expect(signals[0]?.attributes).toBeUndefined();
    expect(signals[1]?.attributes).toBeUndefined();
    expect(signals[2]?.attributes).toEqual({
      region: 'eu',
      'kafka.key': 'host-a',
      'kafka.header.content-type': 'application/json',
      'kafka.header.trace': 'abc',
      'kafka.header.trace#2': 'def',
    });
    expect(signals[3]?.attributes).toEqual({ 'kafka.key': '' });
  });

  it('keeps a key or header that is not text in base64, under a name ending .base64', async () => {
    // Prepare
    sqs.on(SendMessageBatchCommand).resolves({ Failed: [] });
    const longKey = Buffer.from([0, 0, 0, 0, 0, 0, 0x30, 0x39]); // a big-endian 12345: valid UTF-8, not text
    const notUtf8 = Buffer.from([0xc3, 0x28, 0xff]);
    // Act
    await consume([
      { key: longKey, headers: [{ 'trace-bin': notUtf8 }, { tenant: 'zürich' }], value: good('a') },
    ]);
    // Assess
    expect(sentSignals(sqs)[0]?.attributes).toEqual({
      'kafka.key.base64': longKey.toString('base64'),
      'kafka.header.trace-bin.base64': notUtf8.toString('base64'),
      'kafka.header.tenant': 'zürich',
    });
  });

  it('quarantines a record whose value has a field of the name its key or a header takes, instead of overwriting either', async () => {
    // Prepare
    sqs.on(SendMessageBatchCommand).resolves({ Failed: [] });
    s3.on(PutObjectCommand).resolves({});
    // Act
    const out = await consume([
      { offset: 7, key: 'k1', value: { ...good('a'), 'kafka.key': 'mine' } },
      { offset: 8, headers: [{ h: 'x' }], value: { ...good('b'), attributes: { 'kafka.header.h': 'y' } } },
      { offset: 9, key: 'k3', value: good('c') },
    ]);
    // Assess
    expect(sentSignals(sqs).map((s) => s.name)).toEqual(['c']);
    const lines = quarantined(s3)['rejects/kafka/pulse_signals/0/7-9.ndjson'] ?? [];
    expect(lines.map((l) => [l.ref, l.reason])).toEqual([
      ['kafka:pulse_signals:0:7', "kafka.key given by the value and by the record's key or headers"],
      ['kafka:pulse_signals:0:8', "kafka.header.h given by the value and by the record's key or headers"],
    ]);
    expect(out[0]).toMatchObject({ sent: 1, quarantined: 2 });
  });

  it('throws when SQS keeps failing the entries, so the event source retries the batch', async () => {
    // Prepare
    sqs.on(SendMessageBatchCommand).resolves({
      Failed: [{ Id: '0', Code: 'InternalError', SenderFault: false }],
    });
    // Act
    const act = consume([{ value: good('cpu') }]);
    // Assess
    await expect(act).rejects.toBeInstanceOf(SendFailedError);
  });

  it('throws when the quarantine write is throttled, after sending the good records', async () => {
    // Prepare
    sqs.on(SendMessageBatchCommand).resolves({ Failed: [] });
    s3.on(PutObjectCommand).rejects(
      Object.assign(new Error('Please reduce your request rate.'), {
        name: 'SlowDown',
        $metadata: { httpStatusCode: 503 },
      }),
    );
    // Act
    const act = consume([{ value: good('cpu') }, { value: 'bad' }]);
    // Assess
    await expect(act).rejects.toMatchObject({ name: 'SlowDown' });
    expect(sentSignals(sqs)).toHaveLength(1);
  });

  it('yields the same signal ids and quarantine key when the same batch is delivered twice', async () => {
    // Prepare
    sqs.on(SendMessageBatchCommand).resolves({ Failed: [] });
    s3.on(PutObjectCommand).resolves({});
    const event = kafkaEventFactory([
      { offset: 8, value: good('a') },
      { offset: 9, value: 'bad' },
      { offset: 10, value: good('b') },
    ]);
    // Act
    await consumeKafkaRecords(await consumerRecordsOf(event), deps().deps);
    await consumeKafkaRecords(await consumerRecordsOf(event), deps().deps);
    // Assess
    const ids = sentSignals(sqs).map((s) => s.id);
    expect(ids).toEqual([
      'kafka:pulse_signals:0:8',
      'kafka:pulse_signals:0:10',
      'kafka:pulse_signals:0:8',
      'kafka:pulse_signals:0:10',
    ]);
    const keys = s3.commandCalls(PutObjectCommand).map((c) => c.args[0].input.Key);
    expect(keys).toEqual([
      'rejects/kafka/pulse_signals/0/8-10.ndjson',
      'rejects/kafka/pulse_signals/0/8-10.ndjson',
    ]);
  });

  it('logs topic-partition-offset ranges and refs, never record payloads', async () => {
    // Prepare
    sqs.on(SendMessageBatchCommand).resolves({ Failed: [] });
    s3.on(PutObjectCommand).resolves({});
    const { Logger } = await import('@aws-lambda-powertools/logger');
    const logger = new Logger({ serviceName: 'test', logLevel: 'DEBUG' });
    const written: string[] = [];
    const out = vi.spyOn(process.stdout, 'write').mockImplementation((chunk) => {
      written.push(String(chunk));
      return true;
    });
    const err = vi.spyOn(process.stderr, 'write').mockImplementation((chunk) => {
      written.push(String(chunk));
      return true;
    });
    const consoleError = vi.spyOn(console, 'error').mockImplementation(() => undefined);
    // Act
    try {
      await consume(
        [
          { offset: 1, value: good('SECRET-NAME') },
          { offset: 2, value: 'SECRET-NOT-JSON' },
          { offset: 3, value: good('cpu', 'SECRET-VALUE') },
        ],
        deps({ logger }).deps,
      );
    } finally {
      out.mockRestore();
      err.mockRestore();
    }
    consoleError.mockRestore();
    // Assess
    const logs = written.join('');
    expect(logs).toContain('"kafkaTopicPartition":"pulse_signals-0"');
    expect(logs).toContain('"kafkaOffsets":"1-3"');
    expect(logs).toContain('kafka:pulse_signals:0:2');
    expect(logs).not.toContain('SECRET');
    expect(consoleError).not.toHaveBeenCalled();
  });
});
