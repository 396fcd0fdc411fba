import { randomBytes } from 'node:crypto';
import { PutObjectCommand } from '@aws-sdk/client-s3';
import { SendMessageCommand } from '@aws-sdk/client-sqs';
import type { Context } from 'aws-lambda';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import type { Signal } from '#shared/signal.ts';
import type { KafkaEvent } from '../../functions/kafka-consumer/events.ts';
import { trace, traceExitCode, traceText } from '../../local/commands/trace.ts';
import { lambdaContextFactory } from '../helpers/factories.ts';
import { kafkaEventFactory } from '../helpers/kafka.ts';
import { csvFile, setUpPipeline, waitFor } from './pipeline.ts';

/**
 * `pulse trace` offline, against moto and the real handlers: a file's row (scored, and one rejected), a
 * Kafka offset (the real kafka-consumer handler, given an event in the MSK shape: scored, and one
 * quarantined) and a db record by its ref and by its own id (its signals message sent as the db-poller
 * sends one: no PostgreSQL here), each traced to its ledger item, score and series, or quarantine reason.
 */
describe('pulse trace (moto)', () => {
  let p: Awaited<ReturnType<typeof setUpPipeline>>;
  const tag = randomBytes(3).toString('hex');
  const key = `incoming/trace-${tag}.csv`;
  const topic = `trace_${tag}`;
  const table = `readings_${tag}`;
  const file = csvFile(50, { name: 'trace_csv', badEvery: 10 });
  let etag = '';

  beforeAll(async () => {
    p = await setUpPipeline(inject('motoEndpoint'), `trc${tag}`);
    p.start('fileEvents');
    p.start('signals');
    await p.clients.s3.send(new PutObjectCommand({ Bucket: p.names.bucket, Key: key, Body: file.text }));
    // Kafka: offsets 100..103 of partition 1, the third not JSON.
    const kafkaConsumer = (await import('../../functions/kafka-consumer/handler.ts')).handler as unknown as (
      e: KafkaEvent,
      c: Context,
    ) => Promise<unknown>;
    const good = (value: number) => ({ name: 'trace_k', value, timestamp: '2024-06-10T08:00:00Z' });
    await kafkaConsumer(
      kafkaEventFactory([
        { topic, partition: 1, offset: 100, value: good(1) },
        { topic, partition: 1, offset: 101, value: good(2) },
        { topic, partition: 1, offset: 102, value: 'not json {' },
        { topic, partition: 1, offset: 103, value: good(3) },
      ]),
      lambdaContextFactory(),
    );
    // db: the message the db-poller sends for two rows of the table, one bringing its own id.
    const row = (id: string, value: number, own?: string): Signal => ({
      id: own ?? `db:${table}:${id}`,
      name: 'trace_db',
      value,
      source: table,
      timestamp: '2024-06-10T08:00:00.000Z',
      origin: { kind: 'db', ref: `db:${table}:${id}` },
    });
    await p.clients.sqs.send(
      new SendMessageCommand({
        QueueUrl: p.resources.queues.signals.url,
        MessageBody: JSON.stringify({
          v: 3,
          origin: { kind: 'db', ref: `db:${table}` },
          signals: [row('7', 10), row('8', 12, 'sensor-8')],
        }),
      }),
    );
    await waitFor('the file, the Kafka records and the db rows scored', async () => {
      const refs = (await p.scoreRecords()).map((r) => r.ref);
      const item = (await p.ledgerItems()).find((i) => i.key === key);
      etag = item?.etag ?? '';
      return (
        item?.status === 'SUCCESS' &&
        refs.filter((r) => r.includes(`/${key}@`)).length === file.good &&
        refs.filter((r) => r.startsWith(`kafka:${topic}:`)).length === 3 &&
        refs.filter((r) => r.startsWith(`db:${table}:`)).length === 2
      );
    });
  });
  afterAll(async () => {
    await p?.stopAll();
  });

  it('traces a row to its ledger item, score and series; and a rejected row to its reason', async () => {
    // Prepare
    const object = `s3://${p.names.bucket}/${key}@${etag}`;
    // Act
    const scored = await trace(p.target, { input: `${object}#3` });
    const rejected = await trace(p.target, { input: `${object}#10` });
    // Assess
    expect(scored).toMatchObject({
      verdict: 'scored',
      ledger: { file: { status: 'SUCCESS', records: file.good } },
    });
    expect(scored.score).toMatchObject({
      status: 'scored',
      record: { ref: `${object}#3`, name: 'trace_csv' },
    });
    expect(scored.series).toMatchObject({ source: key, name: 'trace_csv', count: file.good });
    expect(traceExitCode(scored)).toBe(0);
    expect(rejected.verdict).toBe('quarantined');
    expect(rejected.quarantine).toEqual([
      expect.objectContaining({ reason: expect.stringMatching(/numeric/), row: 10 }),
    ]);
    expect(traceExitCode(rejected)).toBe(2);
    expect(traceText(rejected)).toMatch(/QUARANTINED[\s\S]*reason/);
  });

  it('traces a Kafka offset to its score, and a poison offset to its quarantine reason', async () => {
    // Act
    const scored = await trace(p.target, { input: `kafka:${topic}:1:101` });
    const poison = await trace(p.target, { input: `kafka:${topic}:1:102` });
    // Assess
    expect(scored).toMatchObject({ kind: 'kafka', verdict: 'scored' });
    expect(scored.score).toMatchObject({ record: { value: 2, name: 'trace_k' } });
    expect(scored.series).toMatchObject({ name: 'trace_k', count: 3 });
    expect(poison).toMatchObject({ kind: 'kafka', verdict: 'quarantined' });
    expect(poison.quarantine[0]?.object).toMatch(new RegExp(`^rejects/kafka/${topic}/1/`));
    expect(poison.quarantine[0]?.reason.length).toBeGreaterThan(0);
  });

  it('traces a db record by its ref and by its own id with --from', async () => {
    // Act
    const byRef = await trace(p.target, { input: `db:${table}:7` });
    const byId = await trace(p.target, { input: 'sensor-8', from: `db:${table}` });
    const unknown = await trace(p.target, { input: `db:${table}:9` });
    // Assess
    expect(byRef).toMatchObject({ kind: 'db', verdict: 'scored', series: { source: table, count: 2 } });
    expect(byId).toMatchObject({ kind: 'db', ref: `db:${table}:8`, verdict: 'scored' });
    expect(byId.score).toMatchObject({ record: { id: 'sensor-8', value: 12 } });
    expect(unknown.verdict).toBe('not-found');
    expect(traceExitCode(unknown)).toBe(3);
  });
});
