import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { gzipSync, zstdCompressSync } from 'node:zlib';
import { GetObjectCommand, PutObjectCommand } from '@aws-sdk/client-s3';
import { SendMessageCommand } from '@aws-sdk/client-sqs';
import { parquetWriteBuffer } from 'hyparquet-writer';
import { afterAll, afterEach, beforeAll, describe, expect, inject, it } from 'vitest';
import { sqsEventFactory, sqsRecordFactory } from '../helpers/factories.ts';
import { csvFile, setUpPipeline, waitFor } from './pipeline.ts';

/**
 * The S3 path end to end against moto: a dropped file → ledger SUCCESS → its signals scored once.
 */
describe('S3 path (moto)', () => {
  let p: Awaited<ReturnType<typeof setUpPipeline>>;
  const put = async (key: string, body: string | Buffer) => {
    const out = await p.clients.s3.send(
      new PutObjectCommand({ Bucket: p.names.bucket, Key: key, Body: body }),
    );
    return out.ETag?.replace(/"/g, '') ?? '';
  };
  const item = async (key: string) => (await p.ledgerItems()).find((i) => i.key === key);
  const settled = (key: string) =>
    waitFor(`ledger item for ${key} to settle`, async () => {
      const i = await item(key);
      return i && ['SUCCESS', 'FAILED', 'SKIPPED'].includes(i.status) ? i : undefined;
    });
  const scoresOf = async (prefix: string) => (await p.scoreRecords()).filter((s) => s.ref.startsWith(prefix));
  const seriesOf = async (name: string) =>
    (await p.scoreItems()).find((s) => s.kind === 'series' && s.name === name);

  beforeAll(async () => {
    p = await setUpPipeline(inject('motoEndpoint'), `s3p${randomBytes(3).toString('hex')}`);
  });
  afterEach(async () => {
    await p.stopAll();
  });
  afterAll(async () => {
    await p?.stopAll();
  });

  it('ingests a dropped CSV: ledger SUCCESS, rejects quarantined with reasons, every valid row scored once', async () => {
    // Prepare
    const file = csvFile(500, { name: 'e2e_csv', badEvery: 50 });
    p.start('fileEvents');
    p.start('signals');
    // Act
    const etag = await put('incoming/e2e.csv', file.text);
    // Assess
    const ledger = await settled('incoming/e2e.csv');
    expect(ledger).toMatchObject({
      status: 'SUCCESS',
      etag,
      records: file.good,
      rejected: file.bad,
      attempts: 1,
    });
    expect(ledger.firstErrors?.[0]).toMatch(/^row 50: value must be wholly numeric, got "n\/a"/);
    const rejects = await p.clients.s3.send(
      new GetObjectCommand({ Bucket: p.names.bucket, Key: String(ledger.rejectsKey) }),
    );
    const lines = (await rejects.Body?.transformToString())?.trim().split('\n') ?? [];
    expect(lines).toHaveLength(file.bad);
    expect(JSON.parse(lines[0] ?? '{}')).toMatchObject({ row: 50, reason: expect.stringMatching(/value/) });
    const scores = await waitFor('all rows scored', async () => {
      const s = await scoresOf(`s3://${p.names.bucket}/incoming/e2e.csv@`);
      return s.length >= file.good ? s : undefined;
    });
    expect(new Set(scores.map((s) => s.id)).size).toBe(file.good);
    const series = await seriesOf('e2e_csv');
    expect(series?.count).toBe(file.good);
  });

  it('ingests every format: JSON array, single JSON object, NDJSON, JSONL, Parquet, and gzip', async () => {
    // Prepare
    p.start('fileEvents');
    const rec = (i: number) => ({ name: 'fmt', value: i, timestamp: '2024-06-01T00:00:00Z', tag: `t${i}` });
    const parquet = Buffer.from(
      parquetWriteBuffer({
        columnData: [
          { name: 'name', type: 'STRING', data: ['fmt', 'fmt', 'fmt'] },
          { name: 'value', type: 'DOUBLE', data: Float64Array.from([10, 11, 12]) },
          { name: 'timestamp', type: 'TIMESTAMP', data: [new Date(0), new Date(1000), new Date(2000)] },
        ],
        rowGroupSize: 2,
      }),
    );
    const files: [string, string | Buffer, number][] = [
      ['incoming/f.json', JSON.stringify([rec(1), rec(2), { name: 'fmt', value: 'bad', timestamp: 0 }]), 2],
      ['incoming/one.json', JSON.stringify(rec(3)), 1],
      ['incoming/f.ndjson', `${JSON.stringify(rec(4))}\n\n${JSON.stringify(rec(5))}\nnot json\n`, 2],
      ['incoming/f.jsonl', `${JSON.stringify(rec(6))}\r\n`, 1],
      ['incoming/f.csv.gz', gzipSync('name,value,timestamp\nfmt,7,1700000000000\nfmt,8,1700000000001\n'), 2],
      ['incoming/f.ndjson.gz', gzipSync(`${JSON.stringify(rec(9))}\n`), 1],
      ['incoming/f.parquet', parquet, 3],
      ['incoming/f.parquet.gz', gzipSync(parquet), 3],
    ];
    // Act
    for (const [key, body] of files) await put(key, body);
    // Assess
    for (const [key, , records] of files) {
      const i = await settled(key);
      expect({ key, status: i.status, records: i.records }).toEqual({ key, status: 'SUCCESS', records });
    }
    expect((await item('incoming/f.json'))?.rejected).toBe(1);
    expect((await item('incoming/f.ndjson'))?.rejected).toBe(1);
  });

  it('ingests zstd text files, an object stored with Content-Encoding zstd, and Parquet of every codec', async () => {
    // Prepare
    p.start('fileEvents');
    const rec = (i: number) => ({ name: 'wild', value: i, timestamp: '2024-06-01T00:00:00Z' });
    const corpus = (name: string) =>
      readFileSync(new URL(`../fixtures/parquet/corpus/${name}`, import.meta.url));
    const files: [string, string | Buffer, number, string?][] = [
      ['incoming/w.csv.zst', zstdCompressSync('name,value,timestamp\nwild,1,1700000000000\nwild,x,1\n'), 1],
      [
        'incoming/w.ndjson.zst',
        zstdCompressSync(`${JSON.stringify(rec(2))}\n${JSON.stringify(rec(3))}\n`),
        2,
      ],
      ['incoming/w.json.zst', zstdCompressSync(JSON.stringify([rec(4)])), 1],
      ['incoming/w-encoded.csv', zstdCompressSync('name,value,timestamp\nwild,5,1700000000000\n'), 1, 'zstd'],
      ...['zstd', 'gzip', 'brotli', 'lz4_raw', 'snappy'].map((codec): [string, Buffer, number] => [
        `incoming/w-${codec}.parquet`,
        corpus(`matrix-${codec}-dict-v2.parquet`),
        500,
      ]),
    ];
    // Act
    for (const [key, body, , encoding] of files) {
      await p.clients.s3.send(
        new PutObjectCommand({
          Bucket: p.names.bucket,
          Key: key,
          Body: body,
          ...(encoding ? { ContentEncoding: encoding } : {}),
        }),
      );
    }
    // Assess
    for (const [key, , records] of files) {
      const i = await settled(key);
      expect({ key, status: i.status, records: i.records }).toEqual({ key, status: 'SUCCESS', records });
    }
    expect((await item('incoming/w.csv.zst'))?.rejected).toBe(1);
  });

  it('hears of every object under incoming/: an upper-case REPORT.CSV is ingested, other types are SKIPPED with the reason', async () => {
    // Prepare: S3 matches notification suffixes case-sensitively, so neither would be heard of with `.csv`
    // rules; each must end in the ledger rather than sit in the bucket unseen.
    p.start('fileEvents');
    const csv = 'name,value,timestamp\nupper,1,1700000000\nupper,2,1700000001\n';
    // Act
    await put('incoming/REPORT.CSV', csv);
    await put('incoming/Data Export.TSV', 'name\tvalue\n');
    await put('incoming/README', 'notes');
    // Assess
    expect(await settled('incoming/REPORT.CSV')).toMatchObject({ status: 'SUCCESS', records: 2 });
    for (const key of ['incoming/Data Export.TSV', 'incoming/README']) {
      expect(await settled(key)).toMatchObject({
        status: 'SKIPPED',
        errorMessage: expect.stringContaining(`unsupported file type: ${key} (expected .csv .json`),
      });
    }
  });

  it('delivers the same event 3 times concurrently: one run, each row sent once, no duplicate scores', async () => {
    // Prepare
    const file = csvFile(300, { name: 'e2e_dup' });
    const etag = await put('incoming/dup.csv', file.text);
    const body = JSON.stringify({
      Records: [
        {
          eventName: 'ObjectCreated:Put',
          s3: {
            bucket: { name: p.names.bucket },
            object: { key: 'incoming/dup.csv', eTag: etag, size: file.text.length },
          },
        },
      ],
    });
    // Act: three deliveries at once, straight into the handler (the notification of the put is a fourth).
    const event = () => sqsEventFactory([sqsRecordFactory(body)]);
    const results = await Promise.allSettled([
      p.s3Trigger(event(), ctx()),
      p.s3Trigger(event(), ctx()),
      p.s3Trigger(event(), ctx()),
    ]);
    p.start('fileEvents');
    p.start('signals');
    // Assess: one delivery ran the file; the others found it busy (retried later) or done (skipped).
    // (A batch whose only record failed makes the handler throw, as Lambda expects, so SQS redelivers it.)
    const ran = results.filter(
      (r) => r.status === 'fulfilled' && (r.value?.batchItemFailures?.length ?? 0) === 0,
    );
    expect(ran.length).toBeGreaterThanOrEqual(1);
    const ledger = await settled('incoming/dup.csv');
    expect(ledger).toMatchObject({ status: 'SUCCESS', attempts: 1, records: file.good });
    await waitFor(
      'dup series scored',
      async () => ((await seriesOf('e2e_dup'))?.count as number) >= file.good,
    );
    await waitFor(
      'the fourth delivery counted as a duplicate',
      async () => ((await item('incoming/dup.csv'))?.duplicates ?? 0) >= 1,
    );
    await new Promise((r) => setTimeout(r, 1500));
    const scores = await scoresOf(`s3://${p.names.bucket}/incoming/dup.csv@`);
    expect(scores).toHaveLength(file.good);
    expect((await seriesOf('e2e_dup'))?.count).toBe(file.good);
  });

  it('ends a malformed file FAILED with where it broke, acknowledges it, and still ingests the next file', async () => {
    // Prepare
    p.start('fileEvents');
    // Act
    await put('incoming/broken.csv', 'name,value,timestamp\nok,1,0\nbad,"2,0\nnever,3,0\n');
    await put('incoming/after.csv', 'name,value,timestamp\nok,1,0\n');
    // Assess
    const broken = await settled('incoming/broken.csv');
    expect(broken).toMatchObject({
      status: 'FAILED',
      retryable: false,
      errorType: 'MalformedFileError',
      attempts: 1,
    });
    expect(broken.errorMessage).toMatch(/line|byte/);
    expect(await settled('incoming/after.csv')).toMatchObject({ status: 'SUCCESS', records: 1 });
    expect(await p.queueDepth('fileEventsDlq')).toBe(0);
  });

  it('skips a duplicate event for an ETag already ingested, and ingests a new ETag under the same key', async () => {
    // Prepare
    p.start('fileEvents');
    const first = await put('incoming/again.csv', 'name,value,timestamp\nagain,1,0\n');
    await settled('incoming/again.csv');
    // Act: a replay of the first version's event, then new content under the same key.
    await p.clients.sqs.send(
      new SendMessageCommand({
        QueueUrl: p.resources.queues.fileEvents.url,
        MessageBody: JSON.stringify({
          Records: [
            {
              eventName: 'ObjectCreated:Put',
              s3: { bucket: { name: p.names.bucket }, object: { key: 'incoming/again.csv', eTag: first } },
            },
          ],
        }),
      }),
    );
    const second = await put('incoming/again.csv', 'name,value,timestamp\nagain,2,0\nagain,3,0\n');
    // Assess
    const v2 = await waitFor('second version', async () =>
      (await p.ledgerItems()).find((i) => i.etag === second && i.status === 'SUCCESS'),
    );
    expect(v2.records).toBe(2);
    const v1 = await waitFor('duplicate counted', async () =>
      (await p.ledgerItems()).find((i) => i.etag === first && (i.duplicates ?? 0) >= 1),
    );
    expect(v1).toMatchObject({ status: 'SUCCESS', records: 1, attempts: 1 });
  });

  it('moves a message that can never be handled to the DLQ after maxReceiveCount', async () => {
    // Prepare
    p.start('fileEvents');
    // Act
    await p.clients.sqs.send(
      new SendMessageCommand({
        QueueUrl: p.resources.queues.fileEvents.url,
        MessageBody: 'this is not an S3 event',
      }),
    );
    // Assess
    const dead = await waitFor(
      'poison message in the DLQ',
      async () => {
        const msgs = await p.peek('fileEventsDlq');
        return msgs.find((m) => m.Body === 'this is not an S3 event');
      },
      90_000,
    );
    expect(dead.Body).toBe('this is not an S3 event');
  });
});

function ctx() {
  return {
    awsRequestId: randomBytes(8).toString('hex'),
    functionName: 's3-trigger',
    getRemainingTimeInMillis: () => 60_000,
  } as never;
}
