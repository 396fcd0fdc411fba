import { GetObjectCommand, PutBucketNotificationConfigurationCommand } from '@aws-sdk/client-s3';
import { GetCommand, PutCommand } from '@aws-sdk/lib-dynamodb';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { METRIC } from '#shared/contract.ts';
import { Ledger, ledgerKey } from '#shared/ledger.ts';
import { settings } from '#shared/settings.ts';
import { type CanaryItem, canaryLedgerKey } from '../../functions/s3-trigger/canary.ts';
import { type SweepOptions, sweepLedger } from '../../functions/s3-trigger/sweep.ts';
import { uniquePrefix } from '../../local/runtime/names.ts';
import { quietObservability } from '../helpers/observability.ts';
import { setUpPipeline, waitFor } from './pipeline.ts';

const HOUR = 3_600_000;

/**
 * The ledger sweep against moto: the status index finds the work nothing will carry on, and the canary
 * makes the real round trip — PutObject, the bucket's ObjectCreated notification to the file-events queue,
 * s3-trigger behind the SQS event-source emulation — until another tool overwrites the notification
 * configuration.
 */
describe('ledger sweep (moto)', () => {
  let p: Awaited<ReturnType<typeof setUpPipeline>>;
  let options: SweepOptions;

  beforeAll(async () => {
    p = await setUpPipeline(inject('motoEndpoint'), uniquePrefix('sweep'));
    options = {
      ledgerTable: p.names.ledgerTable,
      bucket: p.names.bucket,
      maxAttempts: 3,
      processingStuckSeconds: 30 * 60,
      splitStuckSeconds: 60 * 60,
      canaryGraceSeconds: 1,
      exhaustedLookbackHours: settings.sweep.exhaustedLookbackHours,
      maxItemsPerStatus: settings.sweep.maxItemsPerStatus,
      pageSize: settings.sweep.pageSize,
    };
  });
  afterAll(async () => {
    await p?.stopAll();
  });

  const sweep = (obs = quietObservability(), over: Partial<SweepOptions> = {}) =>
    sweepLedger({ ...p.clients, logger: obs.logger, metrics: obs.metrics, config: { ...options, ...over } });
  const canaryItem = async () =>
    (
      await p.clients.doc.send(
        new GetCommand({
          TableName: p.names.ledgerTable,
          Key: canaryLedgerKey(p.names.bucket),
          ConsistentRead: true,
        }),
      )
    ).Item as CanaryItem | undefined;

  it('finds a file stuck PROCESSING past its lease, a stuck SPLIT file and its parts, and an exhausted file, and leaves live work alone', async () => {
    // Prepare: a ledger whose clock is two hours back wrote the stuck items
    const bucket = p.names.bucket;
    const past = new Ledger(p.clients.doc, p.names.ledgerTable, {
      leaseSeconds: 120,
      maxAttempts: 3,
      now: () => Date.now() - 2 * HOUR,
    });
    const today = new Ledger(p.clients.doc, p.names.ledgerTable, { leaseSeconds: 120, maxAttempts: 3 });
    const ref = (key: string) => ({ bucket, key, etag: `etag-${key.length}` });
    await past.claim(ref('incoming/dead-worker.csv'), 'w1');
    await today.claim(ref('incoming/busy.csv'), 'w2');
    const split = ref('incoming/split-file.csv');
    await past.claim(split, 'w3');
    const range = (start: number) => ({ kind: 'byte' as const, start, end: start + 10, row: 0, endRow: 1 });
    await past.planParts(split, 'w3', [range(0), range(10)]);
    await past.markSplit(split, 'w3');
    // An item an older version left FAILED and retryable with no attempt left (the ledger now ends such an
    // attempt for good, so it is written as that version wrote it).
    const limbo = ref('incoming/limbo.csv');
    const twoHoursAgo = new Date(Date.now() - 2 * HOUR).toISOString();
    await p.clients.doc.send(
      new PutCommand({
        TableName: p.names.ledgerTable,
        Item: {
          ...ledgerKey(limbo),
          ...limbo,
          status: 'FAILED',
          retryable: true,
          attempts: 3,
          errorType: 'TransientError',
          errorMessage: 'throttled',
          records: 0,
          rejected: 0,
          bytesRead: 0,
          createdAt: twoHoursAgo,
          updatedAt: twoHoursAgo,
        },
      }),
    );
    const obs = quietObservability();

    // Act
    const result = await sweep(obs);

    // Assess
    expect(result.stuck).toEqual({ processing: 1, split: 1, discovered: 2, exhausted: 1 });
    expect(result.truncated).toEqual([]);
    const byKind = (kind: string) =>
      result.samples.filter((s) => s.kind === kind).map((s) => [s.key, s.part]);
    expect(byKind('processing')).toEqual([['incoming/dead-worker.csv', undefined]]);
    expect(byKind('split')).toEqual([['incoming/split-file.csv', undefined]]);
    expect(byKind('discovered').sort()).toEqual([
      ['incoming/split-file.csv', 0],
      ['incoming/split-file.csv', 1],
    ]);
    expect(byKind('exhausted')).toEqual([['incoming/limbo.csv', undefined]]);
    expect(obs.recorded[METRIC.filesStuck]).toEqual([5]);
    expect(obs.recorded[METRIC.filesStuckProcessing]).toEqual([1]);
  });

  it('sends a canary that the bucket notification carries to s3-trigger, and reports CanaryMissed once the notification configuration is overwritten', async () => {
    // Prepare: the earlier sweep of this file sent a canary too; s3-trigger records it once started
    p.start('fileEvents');
    const seenCount = async () => Number((await canaryItem())?.seenCount ?? 0);
    await waitFor(
      'the earlier canary recorded and the file-events queue drained',
      async () => (await seenCount()) >= 1 && (await p.queueDepth('fileEvents')) === 0,
      30_000,
    );
    const base = await seenCount();

    // Act 1: a canary through the real notification; the next sweep finds it seen
    const first = await sweep();
    await waitFor(
      's3-trigger to record the first canary',
      async () => (await seenCount()) >= base + 1,
      30_000,
    );
    await new Promise((r) => setTimeout(r, 1100));
    const obsSeen = quietObservability();
    const second = await sweep(obsSeen);
    await waitFor(
      's3-trigger to record the second canary',
      async () => (await seenCount()) >= base + 2,
      30_000,
    );

    // Act 2: another tool replaces the bucket's notification configuration with its own (none for us)
    await p.clients.s3.send(
      new PutBucketNotificationConfigurationCommand({
        Bucket: p.names.bucket,
        NotificationConfiguration: {},
      }),
    );
    const third = await sweep();
    await new Promise((r) => setTimeout(r, 2500));
    const obsMissed = quietObservability();
    const fourth = await sweep(obsMissed);

    // Assess: seen while the notification stood
    expect(first.canary.missed).toBe(false);
    expect(second.canary).toMatchObject({ missed: false, dueSentAt: first.canarySentAt });
    expect(obsSeen.recorded[METRIC.canaryMissed]).toEqual([0]);
    // ... missed once it was gone, and only the canary due then (the third) was judged
    expect(fourth.canary).toMatchObject({ missed: true, dueSentAt: third.canarySentAt });
    expect(obsMissed.recorded[METRIC.canaryMissed]).toEqual([1]);
    expect(await seenCount()).toBe(base + 2);
    // The canary object is there, and s3-trigger ingested nothing of it (no ledger item of its own).
    const object = await p.clients.s3.send(
      new GetObjectCommand({ Bucket: p.names.bucket, Key: settings.bucket.canaryKey }),
    );
    expect(JSON.parse((await object.Body?.transformToString()) ?? '{}')).toMatchObject({ canary: true });
    const items = await p.ledgerItems();
    expect(items.filter((i) => i.key === settings.bucket.canaryKey)).toEqual([]);
    expect((await canaryItem())?.sent?.slice(-4)).toEqual([
      first.canarySentAt,
      second.canarySentAt,
      third.canarySentAt,
      fourth.canarySentAt,
    ]);
  });
});
