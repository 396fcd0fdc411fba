import { PutObjectCommand } from '@aws-sdk/client-s3';
import { ChangeMessageVisibilityCommand, SendMessageBatchCommand } from '@aws-sdk/client-sqs';
import { afterAll, afterEach, beforeAll, describe, expect, inject, it } from 'vitest';
import type { Signal } from '#shared/signal.ts';
import { redriveDlq } from '../../local/commands/operations.ts';
import type { Target } from '../../local/commands/target.ts';
import { uniquePrefix } from '../../local/runtime/names.ts';
import { createResources } from '../../local/runtime/resources.ts';
import { type FaultProxy, startFaultProxy } from '../helpers/fault-proxy.ts';
import { decodeSignals } from '../helpers/signals.ts';
import { csvFile, setUpPipeline, waitFor } from '../integration/pipeline.ts';
import { expectExactlyOnce, goodRows, type Pipeline, s3Ids } from './invariants.ts';

/**
 * Poison messages: work that fails every time because something it depends on is broken (DynamoDB
 * refusing writes to one series; S3 failing reads of one object). After maxReceiveCount (2 here)
 * deliveries SQS moves the message to the DLQ while the rest of the traffic flows; once the cause is
 * fixed, `pulse dlq redrive` (redriveDlq) moves it back, and it completes, exactly once.
 */
describe('poison messages: DLQ after maxReceiveCount, redriven once fixed', () => {
  let p: Pipeline;
  let proxy: FaultProxy;
  /** What is broken right now. */
  const broken = new Set<'series' | 'file'>();
  let target: Target;

  beforeAll(async () => {
    const moto = inject('motoEndpoint');
    proxy = await startFaultProxy({
      target: moto,
      before: 0,
      after: 0,
      seed: 3,
      failWhen: ({ service, operation, body }) => {
        if (broken.has('series') && operation.endsWith('.TransactWriteItems') && body.includes('rdlq_poison'))
          return 500;
        if (broken.has('file') && service === 's3' && operation.includes('/incoming/rdlq/poison.csv'))
          return 500;
        return undefined;
      },
    });
    p = await setUpPipeline(moto, uniquePrefix('rdlq'), {
      handlerEndpoint: proxy.url,
      leaseSeconds: 3,
      heartbeatSeconds: 1,
      visibility: { fileEvents: 2, signals: 2 },
    });
    await createResources(p.clients, p.names, {
      visibilityTimeoutSeconds: { fileEvents: 2, signals: 2 },
      maxReceiveCount: { fileEvents: 2, signals: 2 },
    });
    target = p.target;
  });
  afterEach(async () => {
    broken.clear();
    await p?.stopAll();
  });
  afterAll(async () => {
    await p?.stopAll();
    await proxy?.close();
  });

  it('a signals message whose series cannot be written reaches the DLQ; redriven after the fix, it is scored once', async () => {
    // Prepare: three good messages and one whose series DynamoDB refuses.
    const make = (name: string, n: number): Signal[] =>
      Array.from({ length: n }, (_, i) => ({
        id: `${name}:${i}`,
        name,
        value: i % 7,
        source: 'rdlq',
        timestamp: new Date(1_700_000_000_000 + i).toISOString(),
        origin: { kind: 'kafka', ref: `${name}:${i}` },
      }));
    const good = make('rdlq_good', 90);
    const poison = make('rdlq_poison', 20);
    const bodies = [good.slice(0, 30), good.slice(30, 60), poison, good.slice(60)].map((s) =>
      JSON.stringify({ v: 3, origin: { kind: 'kafka', ref: 'rdlq' }, signals: s }),
    );
    broken.add('series');
    await p.clients.sqs.send(
      new SendMessageBatchCommand({
        QueueUrl: p.resources.queues.signals.url,
        Entries: bodies.map((b, i) => ({ Id: String(i), MessageBody: b })),
      }),
    );

    // Act
    p.start('signals');
    await waitFor(
      'the poison message in the DLQ, the rest scored',
      async () =>
        (await p.queueDepth('signalsDlq')) === 1 &&
        (await p.queueDepth('signals')) === 0 &&
        ((await p.series('rdlq', 'rdlq_good'))?.count ?? 0) >= 90,
      60_000,
    );
    const [inDlq] = await p.peek('signalsDlq');
    // Visible again at once, for the redrive.
    await p.clients.sqs.send(
      new ChangeMessageVisibilityCommand({
        QueueUrl: p.resources.queues.signalsDlq.url,
        ReceiptHandle: inDlq?.ReceiptHandle,
        VisibilityTimeout: 0,
      }),
    );
    const beforeFix = await p.series('rdlq', 'rdlq_poison');
    broken.delete('series');
    const redriven = await redriveDlq(target, ['signalsDlq']);
    await waitFor(
      'the redriven message scored',
      async () =>
        ((await p.series('rdlq', 'rdlq_poison'))?.count ?? 0) >= 20 && (await p.queueDepth('signals')) === 0,
      60_000,
    );

    // Assess
    expect(decodeSignals(inDlq?.Body ?? '').map((s: Signal) => s.id)).toEqual(poison.map((s) => s.id));
    expect(beforeFix).toBeUndefined();
    expect(proxy.stats.dynamodb?.ruled ?? 0).toBeGreaterThan(0);
    expect(redriven).toEqual([{ dlq: 'signalsDlq', to: 'signals', moved: 1 }]);
    await expectExactlyOnce(p, {
      scope: (s) => s.id.startsWith('rdlq_'),
      scoredIds: [...good, ...poison].map((s) => s.id),
      series: [
        { source: 'rdlq', name: 'rdlq_good', count: 90 },
        { source: 'rdlq', name: 'rdlq_poison', count: 20 },
      ],
      quarantine: { under: 'scorer/', refs: [] },
    });
  });

  it('a file event whose object cannot be read reaches the DLQ; redriven after the fix, the file succeeds in its last attempt', async () => {
    // Prepare
    const key = 'incoming/rdlq/poison.csv';
    const file = csvFile(200, { name: 'rdlq_file' });
    broken.add('file');
    p.start('fileEvents');
    p.start('signals');

    // Act
    const put = await p.clients.s3.send(
      new PutObjectCommand({ Bucket: p.names.bucket, Key: key, Body: file.text }),
    );
    const etag = put.ETag?.replace(/"/g, '') ?? '';
    await waitFor(
      'the file event in the DLQ',
      async () => (await p.queueDepth('fileEventsDlq')) === 1,
      60_000,
    );
    const parked = (await p.ledgerItems()).find((i) => i.key === key);
    broken.delete('file');
    const redriven = await redriveDlq(target, ['fileEventsDlq']);
    const done = await waitFor(
      'the file ingested',
      async () => {
        const i = (await p.ledgerItems()).find((x) => x.key === key);
        return i?.status === 'SUCCESS' ? i : undefined;
      },
      60_000,
    );
    await waitFor(
      'its rows scored',
      async () =>
        ((await p.series(key, 'rdlq_file'))?.count ?? 0) >= 200 &&
        (await p.queueDepth('signals')) + (await p.queueDepth('fileEvents')) === 0,
      60_000,
    );

    // Assess: FAILED (retryable) while parked, with the cause; then the third and last attempt succeeds.
    expect(parked).toMatchObject({ status: 'FAILED', retryable: true, attempts: 2 });
    expect(redriven).toEqual([{ dlq: 'fileEventsDlq', to: 'fileEvents', moved: 1 }]);
    expect(done).toMatchObject({ attempts: 3, records: 200 });
    await expectExactlyOnce(p, {
      scope: (s) => s.originRef.includes(`/${key}@`),
      scoredIds: s3Ids(p.names.bucket, key, etag, goodRows(200)),
      series: [{ source: key, name: 'rdlq_file', count: 200 }],
      ledgerKeys: (k) => k === key,
      quarantine: { under: `s3/${p.names.bucket}/${key}`, refs: [] },
    });
  });
});
