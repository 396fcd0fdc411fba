import { Readable } from 'node:stream';
import { gunzipSync, gzipSync, zstdCompressSync } from 'node:zlib';
import { DeleteObjectsCommand, GetObjectCommand, PutObjectCommand, S3Client } from '@aws-sdk/client-s3';
import { SendMessageBatchCommand, SQSClient } from '@aws-sdk/client-sqs';
import { sdkStreamMixin } from '@smithy/core/serde';
import { mockClient } from 'aws-sdk-client-mock';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { Checkpoint, Ledger, PartRange, Staging } from '#shared/ledger.ts';
import { settings } from '#shared/settings.ts';
import { type IngestDeps, type IngestOutcome, ingestFile } from '../../../functions/s3-trigger/ingest.ts';
import { stagedObjectKey } from '../../../functions/s3-trigger/source.ts';
import { stageObject, stagingPrefix } from '../../../functions/s3-trigger/staging.ts';
import { INGEST_DEFAULTS } from '../../helpers/ingest.ts';
import { fakeLedger } from '../../helpers/ledger.ts';
import { quietObservability } from '../../helpers/observability.ts';
import { decodeSignals } from '../../helpers/signals.ts';

/**
 * Staging: a large gzip file inflated once into staged objects and read from them as an uncompressed file.
 * Whatever the hand-overs and the split, the ids sent, the rows rejected and the totals are exactly those
 * of a read of the gzip file itself. S3 is an in-memory store behind the mocked client.
 */

const KEY = 'incoming/big.csv.gz';
const BUCKET = 'b';
const ROWS = 3000;

function csvText(rows = ROWS): string {
  const lines = ['name,value,timestamp,note'];
  for (let i = 1; i <= rows; i++) {
    const value = i % 37 === 0 ? 'n/a' : String(i / 4);
    const note = i % 11 === 0 ? `"two\nlines, ${i}"` : `plain ${i}`;
    lines.push(`stg,${value},${1_700_000_000 + i},${note}`);
  }
  return `${lines.join('\r\n')}\r\n`;
}

const s3 = mockClient(S3Client);
const sqs = mockClient(SQSClient);

describe('staging a gzip file', () => {
  let store: Map<string, Buffer>;
  let puts: string[];
  let obs: ReturnType<typeof quietObservability>;
  let sent: string[];

  beforeEach(() => {
    obs = quietObservability();
    store = new Map();
    puts = [];
    sent = [];
    s3.on(GetObjectCommand).callsFake((input: { Key?: string; Range?: string }) => {
      const object = store.get(String(input.Key));
      if (!object) throw Object.assign(new Error('NoSuchKey'), { name: 'NoSuchKey' });
      const m = /^bytes=(\d+)-(\d*)$/.exec(input.Range ?? '');
      const slice = m ? object.subarray(Number(m[1]), m[2] ? Number(m[2]) + 1 : object.length) : object;
      const chunks: Buffer[] = [];
      for (let at = 0; at < slice.length; at += 1000) chunks.push(Buffer.from(slice.subarray(at, at + 1000)));
      return { Body: sdkStreamMixin(Readable.from(chunks)), ContentLength: slice.length };
    });
    s3.on(PutObjectCommand).callsFake((input: { Key?: string; Body?: unknown }) => {
      const key = String(input.Key);
      puts.push(key);
      store.set(key, Buffer.isBuffer(input.Body) ? input.Body : Buffer.from(String(input.Body)));
      return {};
    });
    s3.on(DeleteObjectsCommand).callsFake((input: { Delete?: { Objects?: { Key?: string }[] } }) => {
      for (const o of input.Delete?.Objects ?? []) store.delete(String(o.Key));
      return {};
    });
    sqs.on(SendMessageBatchCommand).callsFake((input: { Entries?: { MessageBody?: string }[] }) => {
      sent.push(...(input.Entries ?? []).flatMap((e) => decodeSignals(e.MessageBody ?? '').map((s) => s.id)));
      return { Failed: [] };
    });
  });
  afterEach(() => {
    s3.reset();
    sqs.reset();
  });

  const file = { bucket: BUCKET, key: KEY, etag: 'e1' };
  const staged = () => [...store.keys()].filter((k) => k.startsWith(settings.bucket.stagingPrefix)).sort();
  /** The rows of the rejects written (quarantine objects under rejects/). */
  const rejectedRows = () =>
    [...store.entries()]
      .filter(([k]) => k.startsWith('rejects/'))
      .flatMap(([, v]) =>
        v
          .toString()
          .trim()
          .split('\n')
          .map((l) => (JSON.parse(l) as { row?: number }).row ?? -1),
      )
      .sort((a, b) => a - b);

  const deps = (
    ledger: ReturnType<typeof fakeLedger>,
    over: { staging?: boolean; remainingMs?: () => number; fanOut?: boolean; objectBytes?: number } = {},
  ): IngestDeps => {
    let t = 0;
    return {
      s3: new S3Client({ region: 'us-east-1' }),
      sqs: new SQSClient({ region: 'us-east-1' }),
      ledger: ledger as unknown as Ledger,
      logger: obs.logger,
      metrics: obs.metrics,
      config: {
        ...INGEST_DEFAULTS,
        signalsQueueUrl: 'q',
        quarantineBucket: BUCKET,
        heartbeatSeconds: 1,
        checkpointSeconds: 1,
        maxMessageBytes: 2048,
        ...(over.staging === false
          ? {}
          : { staging: { minBytes: 100, objectBytes: over.objectBytes ?? 7000 } }),
        ...(over.fanOut ? { fanOut: { minBytes: 20_000, partBytes: 30_000, maxParts: 10 } } : {}),
      },
      owner: 'w1',
      now: () => {
        t += 97;
        return t;
      },
      announceParts: async () => {},
      ...(over.remainingMs ? { remainingMs: over.remainingMs, continueLater: async () => {} } : {}),
    };
  };

  /** A read of the gzip file itself (no staging): what every staged run must send and reject. */
  async function direct(object: Buffer) {
    store.set(KEY, object);
    const ledger = fakeLedger({ claimed: true, attempt: 1 });
    const out = await ingestFile({ ...file, size: object.length }, deps(ledger, { staging: false }));
    const result = { out, sent: [...sent], rejected: rejectedRows(), ledger };
    sent = [];
    for (const k of [...store.keys()]) if (k.startsWith('rejects/')) store.delete(k);
    return result;
  }

  it('writes the inflated bytes in objects of the configured size, each recorded before the next is written', async () => {
    // Prepare
    const object = gzipSync(csvText());
    store.set(KEY, object);
    const recorded: Array<{ staging: Staging; puts: number }> = [];
    // Act
    const done = await stageObject(
      new S3Client({ region: 'us-east-1' }),
      file,
      object.length,
      { prefix: stagingPrefix(file), objectBytes: 7000, objects: 0 },
      {
        onBytes: () => {},
        pace: async () => {},
        staged: async (staging) => {
          recorded.push({ staging: structuredClone(staging), puts: puts.length });
        },
        outOfTime: () => false,
      },
    );
    // Assess
    const inflated = gunzipSync(object);
    expect(done).toMatchObject({ objects: Math.ceil(inflated.length / 7000), size: inflated.length });
    expect(Buffer.concat(staged().map((k) => store.get(k) as Buffer))).toEqual(inflated);
    expect(staged()[0]).toBe(`staging/${stagingPrefix(file).split('/')[1]}/000000`);
    expect(recorded.map((r) => r.staging.objects)).toEqual([
      ...Array.from({ length: recorded.length - 1 }, (_, i) => i + 1),
      done?.objects,
    ]);
    // Each object is on S3 before the ledger hears of it, and nothing is written before that.
    for (const r of recorded) expect(r.puts).toBe(r.staging.objects);
  });

  it('stages a zstd file (several frames) as its key says, into exactly the bytes it decompresses to', async () => {
    // Prepare
    const text = Buffer.from(csvText());
    const half = text.length >> 1;
    const object = Buffer.concat([
      zstdCompressSync(text.subarray(0, half)),
      zstdCompressSync(text.subarray(half)),
    ]);
    const zst = { ...file, key: 'incoming/big.csv.zst' };
    store.set(zst.key, object);

    // Act
    const done = await stageObject(
      new S3Client({ region: 'us-east-1' }),
      zst,
      object.length,
      { prefix: stagingPrefix(zst), objectBytes: 7000, objects: 0 },
      { onBytes: () => {}, pace: async () => {}, staged: async () => {}, outOfTime: () => false },
    );

    // Assess
    expect(done).toMatchObject({ objects: Math.ceil(text.length / 7000), size: text.length });
    expect(Buffer.concat(staged().map((k) => store.get(k) as Buffer))).toEqual(text);
  });

  it('resumes after its last staged object: inflates again from the start, drops what is staged, writes only the rest', async () => {
    // Prepare
    const object = gzipSync(csvText());
    store.set(KEY, object);
    const prefix = stagingPrefix(file);
    let calls = 0;
    const first = await stageObject(
      new S3Client({ region: 'us-east-1' }),
      file,
      object.length,
      { prefix, objectBytes: 7000, objects: 0 },
      { onBytes: () => {}, pace: async () => {}, staged: async () => {}, outOfTime: () => ++calls >= 3 },
    );
    const before = new Map(staged().map((k) => [k, store.get(k)]));
    puts = [];
    const paced: number[] = [];
    // Act
    const done = await stageObject(
      new S3Client({ region: 'us-east-1' }),
      file,
      object.length,
      { prefix, objectBytes: 7000, objects: 3 },
      {
        onBytes: () => {},
        pace: async (redone) => {
          paced.push(redone);
        },
        staged: async () => {},
        outOfTime: () => false,
      },
    );
    // Assess
    expect(first).toBeUndefined();
    expect([...before.keys()]).toEqual([0, 1, 2].map((i) => stagedObjectKey({ prefix } as Staging, i)));
    expect(puts[0]).toBe(stagedObjectKey({ prefix } as Staging, 3));
    expect(puts).toHaveLength((done?.objects ?? 0) - 3);
    expect(paced.at(-1)).toBe(3 * 7000);
    expect(Buffer.concat(staged().map((k) => store.get(k) as Buffer))).toEqual(gunzipSync(object));
  });

  it('stages a truncated file up to where it breaks and records the failure; trailing bytes are recorded as left out', async () => {
    // Prepare
    const whole = gzipSync(csvText());
    const truncated = whole.subarray(0, whole.length - 500);
    const trailing = Buffer.concat([whole, Buffer.from('\r\n')]);
    const run = async (object: Buffer, key: string) => {
      store.set(key, object);
      const ref = { ...file, key };
      return stageObject(
        new S3Client({ region: 'us-east-1' }),
        ref,
        object.length,
        { prefix: stagingPrefix(ref), objectBytes: 7000, objects: 0 },
        { onBytes: () => {}, pace: async () => {}, staged: async () => {}, outOfTime: () => false },
      );
    };
    // Act
    const broken = await run(truncated, 'incoming/t.csv.gz');
    const extra = await run(trailing, 'incoming/x.csv.gz');
    // Assess
    expect(broken?.failure).toMatchObject({ type: 'MalformedFileError' });
    expect(broken?.failure?.reason).toMatch(/^gzip: /);
    expect(broken?.size).toBeGreaterThan(0);
    expect(extra?.leftOut).toEqual([
      'gzip: 2 bytes after the end of the compressed data (from byte ' +
        `${whole.length}) are not gzip (hex 0d0a): left out; every record before it was read`,
    ]);
    expect(extra?.failure).toBeUndefined();
  });

  it('hands over while staging and while reading the staged copy; the chain sends, rejects and counts exactly what a read of the gzip file does, then deletes the copy', async () => {
    // Prepare
    const object = Buffer.concat([gzipSync(csvText()), Buffer.from('\n')]);
    const whole = await direct(object);
    expect(whole.out.status).toBe('SUCCESS');
    store.set(KEY, object);
    let staging: Staging | undefined;
    let checkpoint: Checkpoint | undefined;
    const outcomes: IngestOutcome[] = [];
    let last: ReturnType<typeof fakeLedger> | undefined;
    // Act: each invocation has time for 300 looks at the clock (one per staged object of 250 bytes, or per
    // record read), then less than the margin.
    do {
      const ledger = fakeLedger({
        claimed: true,
        attempt: 1,
        ...(staging ? { staging } : {}),
        ...(checkpoint ? { checkpoint } : {}),
      });
      ledger.stage.mockImplementation(async (_f, _o, _s, s) => {
        staging = structuredClone(s);
      });
      ledger.heartbeat.mockImplementation(async (_f, _o, _s, c) => {
        if (c) checkpoint = structuredClone(c);
      });
      let calls = 0;
      outcomes.push(
        await ingestFile(
          { ...file, size: object.length },
          deps(ledger, { objectBytes: 250, remainingMs: () => (++calls > 300 ? 1_000 : 600_000) }),
        ),
      );
      last = ledger;
    } while (outcomes.at(-1)?.status === 'CONTINUED' && outcomes.length < 200);
    // Assess
    const end = outcomes.at(-1);
    expect(end?.status).toBe('SUCCESS');
    const whileStaging = outcomes.filter((o) => o.status === 'CONTINUED' && o.checkpoint === undefined);
    const whileReading = outcomes.filter((o) => o.status === 'CONTINUED' && o.checkpoint !== undefined);
    expect(whileStaging.length).toBeGreaterThan(0);
    expect(whileReading.length).toBeGreaterThan(0);
    expect(whileReading.every((o) => o.status === 'CONTINUED' && o.checkpoint?.kind === 'byte')).toBe(true);
    expect(sent).toEqual(whole.sent);
    expect(rejectedRows()).toEqual(whole.rejected);
    const total = whole.ledger.succeed.mock.calls[0]?.[2];
    const done = last?.succeed.mock.calls[0]?.[2];
    expect(done).toMatchObject({ records: total?.records, rejected: total?.rejected });
    expect(done?.firstErrors).toEqual(total?.firstErrors);
    // The trailing line end is one reject without a row, as in the read of the file itself.
    expect(whole.rejected.filter((r) => r === -1)).toHaveLength(1);
    expect(staging?.leftOut).toHaveLength(1);
    expect(staged()).toEqual([]);
  });

  it('splits a staged copy into parts that read it: ids, rejects and totals as a read of the gzip file', async () => {
    // Prepare
    const object = gzipSync(csvText());
    const whole = await direct(object);
    store.set(KEY, object);
    const coordinator = fakeLedger({ claimed: true, attempt: 1 });
    let staging: Staging | undefined;
    coordinator.stage.mockImplementation(async (_f, _o, _s, s) => {
      staging = structuredClone(s);
    });
    // Act
    const split = await ingestFile({ ...file, size: object.length }, deps(coordinator, { fanOut: true }));
    const [, , ranges, , partStaging] = coordinator.planParts.mock.calls[0] as [
      unknown,
      string,
      PartRange[],
      unknown,
      Staging,
    ];
    const parts: IngestOutcome[] = [];
    for (const [part, range] of [...ranges.entries()].reverse()) {
      const ledger = fakeLedger({ claimed: true, attempt: 1, range, staging: partStaging });
      if (part === 0) ledger.finishSplit.mockResolvedValue({ status: 'SUCCESS', staging: partStaging });
      parts.push(await ingestFile({ ...file, size: object.length, part }, deps(ledger, { fanOut: true })));
    }
    // Assess
    expect(split).toEqual({ status: 'SPLIT', parts: ranges.length });
    expect(ranges.length).toBeGreaterThanOrEqual(3);
    expect(partStaging).toEqual(staging);
    expect(partStaging.size).toBe(gunzipSync(object).length);
    expect(parts.every((o) => o.status === 'SUCCESS')).toBe(true);
    expect([...sent].sort()).toEqual([...whole.sent].sort());
    expect(rejectedRows()).toEqual(whole.rejected);
    const sum = (k: 'records' | 'rejected') =>
      parts.reduce((n, o) => n + (o.status === 'SUCCESS' ? o.stats[k] : 0), 0);
    const total = whole.ledger.succeed.mock.calls[0]?.[2];
    expect(sum('records')).toBe(total?.records);
    expect(sum('rejected')).toBe(total?.rejected);
    // The part that ended the file deleted the staged copy.
    expect(staged()).toEqual([]);
  });

  it('counts a continuation that runs out of time before it stages one more object as an attempt, and fails the file on the last', async () => {
    // Prepare: three objects staged; no time left at all.
    const object = gzipSync(csvText());
    store.set(KEY, object);
    const staging: Staging = { prefix: stagingPrefix(file), objectBytes: 7000, objects: 3 };
    const run = async (attempt: number) => {
      const ledger = fakeLedger({ claimed: true, attempt, staging });
      const out = await ingestFile({ ...file, size: object.length }, deps(ledger, { remainingMs: () => 1 }));
      return { out, ledger };
    };
    // Act
    const first = await run(1);
    const last = await run(settings.ledger.maxAttempts);
    // Assess
    expect(first.out).toMatchObject({ status: 'CONTINUED' });
    expect(first.out.status === 'CONTINUED' && first.out.checkpoint).toBeUndefined();
    expect(first.ledger.handOver).toHaveBeenCalledWith(expect.anything(), 'w1', false);
    expect(last.out).toMatchObject({ status: 'FAILED' });
    expect(last.out.status === 'FAILED' && last.out.error).toMatch(
      /^NoProgressError: attempt 3 of 3 ran out of time after inflating 21000 bytes again to reach its last staged object, before it could stage one more$/,
    );
    expect(last.ledger.handOver).not.toHaveBeenCalled();
    expect(puts.filter((k) => k.startsWith(settings.bucket.stagingPrefix))).toEqual([]);
  });

  it('fails a truncated file read from its staged copy as a read of the file fails it: same rows sent, same error', async () => {
    // Prepare
    const good = gzipSync(csvText());
    const object = good.subarray(0, good.length - 300);
    const whole = await direct(object);
    store.set(KEY, object);
    const ledger = fakeLedger({ claimed: true, attempt: 1 });
    // Act
    const out = await ingestFile({ ...file, size: object.length }, deps(ledger));
    // Assess
    expect(whole.out.status).toBe('FAILED');
    expect(out).toEqual({ ...whole.out, stats: expect.anything() });
    expect(ledger.fail.mock.calls[0]?.[2]).toMatchObject({
      retryable: false,
      errorType: whole.ledger.fail.mock.calls[0]?.[2].errorType,
      errorMessage: whole.ledger.fail.mock.calls[0]?.[2].errorMessage,
      records: whole.ledger.fail.mock.calls[0]?.[2].records,
    });
    expect(sent).toEqual(whole.sent);
    expect(staged()).toEqual([]);
  });
});
