import { randomBytes } from 'node:crypto';
import { gzipSync } from 'node:zlib';
import { GetObjectCommand, PutObjectCommand } from '@aws-sdk/client-s3';
import { parquetWriteBuffer } from 'hyparquet-writer';
import { afterAll, afterEach, beforeAll, describe, expect, inject, it } from 'vitest';
import type { Checkpoint, LedgerItem } from '#shared/ledger.ts';
import { parseParquet } from '../../functions/s3-trigger/parsers/parquet.ts';
import { type FaultProxy, startFaultProxy } from '../helpers/fault-proxy.ts';
import { startS3TriggerWorkerVia, type Worker } from '../helpers/workers.ts';
import { csvFile, setUpPipeline, waitFor } from './pipeline.ts';

/**
 * Checkpoints against moto: a worker killed (SIGKILL) after it checkpointed a long file leaves the item
 * PROCESSING with its checkpoint; the next worker to claim it resumes there. Every row is scored exactly
 * once, the rejects of both attempts are in the quarantine, and the totals are exact.
 */
describe('resume from a checkpoint after a crash (moto)', () => {
  let p: Awaited<ReturnType<typeof setUpPipeline>>;
  let slow: FaultProxy;
  let child: Worker | undefined;

  beforeAll(async () => {
    // Read by the in-process handler when setUpPipeline imports it, and passed on to the worker below.
    process.env.LEDGER_CHECKPOINT_SECONDS = '1';
    p = await setUpPipeline(inject('motoEndpoint'), `ckpt${randomBytes(3).toString('hex')}`, {
      leaseSeconds: 2,
      heartbeatSeconds: 1,
      visibility: { fileEvents: 4, signals: 4 },
    });
    // The worker's calls go through a proxy adding latency, so that a file takes seconds whatever the
    // emulator's speed: time for checkpoints to be written before the worker is killed.
    slow = await startFaultProxy({
      target: inject('motoEndpoint'),
      before: 0,
      after: 0,
      delayMs: 40,
      seed: 1,
    });
  });
  afterEach(async () => {
    await child?.kill();
    child = undefined;
    await p?.stopAll();
  });
  afterAll(async () => {
    await p?.stopAll();
    await slow?.close();
  });

  const item = async (key: string) => (await p.ledgerItems()).find((i) => i.key === key);

  /**
   * Drops the file, kills the worker once a checkpoint holding rejects is in the ledger, lets an
   * in-process worker finish the file, and checks what every resumed file must satisfy.
   */
  async function crashAndResume(
    key: string,
    body: Buffer,
    expected: { good: number; bad: number; badRows: number[]; series: string },
  ): Promise<{ done: LedgerItem; resumedFrom: Checkpoint }> {
    // Prepare: small messages make many SendMessageBatch calls.
    child = await startS3TriggerWorkerVia(p, slow.url, {
      SIGNALS_MAX_MESSAGE_BYTES: '1024',
      LEDGER_CHECKPOINT_SECONDS: '1',
    });

    // Act: drop the file, kill the worker right after a checkpoint that covers some rejects.
    await p.clients.s3.send(new PutObjectCommand({ Bucket: p.names.bucket, Key: key, Body: body }));
    const mid = await waitFor(
      `a checkpoint of ${key} with rejects in it`,
      async () => {
        const i = await item(key);
        if (i?.status !== 'PROCESSING' && i?.status !== undefined) {
          throw new Error(
            `${key} ended ${i.status} in ${i.durationMs} ms, before it could be killed after a checkpoint`,
          );
        }
        return i?.checkpoint && i.checkpoint.rejectsKeys.length > 0 ? i.checkpoint : undefined;
      },
      60_000,
    );
    await child.kill();
    child = undefined;
    const killed = await item(key);
    expect(killed?.status).toBe('PROCESSING');
    expect(killed?.checkpoint?.row).toBeGreaterThanOrEqual(mid.row);

    p.start('fileEvents');
    p.start('signals');

    // Assess: finished by the second attempt, from the checkpoint, with exact totals.
    const done = await waitFor(
      `${key} to be finished by another worker`,
      async () => {
        const i = await item(key);
        return i?.status === 'SUCCESS' ? i : undefined;
      },
      90_000,
    );
    expect(done).toMatchObject({ records: expected.good, rejected: expected.bad, attempts: 2 });
    expect(done.checkpoint).toBeUndefined();
    const resumedFrom = done.resumedFrom as Checkpoint;
    expect(resumedFrom).toMatchObject({ attempt: 1 });
    expect(resumedFrom.row).toBeGreaterThan(0);

    // Every reject once, in the objects the ledger lists: some written by each attempt.
    const keys = done.rejectsKeys ?? [String(done.rejectsKey)];
    expect(keys.some((k) => !k.includes('.attempt-2.'))).toBe(true);
    expect(keys.some((k) => k.includes('.attempt-2.'))).toBe(true);
    const rows: number[] = [];
    for (const k of keys) {
      const out = await p.clients.s3.send(new GetObjectCommand({ Bucket: p.names.bucket, Key: k }));
      const text = (await out.Body?.transformToString()) ?? '';
      for (const line of text.trim().split('\n')) rows.push((JSON.parse(line) as { row: number }).row);
    }
    expect(rows.sort((a, b) => a - b)).toEqual(expected.badRows);

    // Every valid row scored exactly once.
    await waitFor(
      'every row scored',
      async () => ((await p.series(key, expected.series))?.count ?? 0) >= expected.good,
      120_000,
    );
    await new Promise((r) => setTimeout(r, 2000));
    const scores = (await p.scoreRecords()).filter((x) => x.name === expected.series);
    expect(scores).toHaveLength(expected.good);
    expect(new Set(scores.map((s) => s.id)).size).toBe(expected.good);
    expect((await p.series(key, expected.series))?.count).toBe(expected.good);
    return { done, resumedFrom };
  }

  /** Bytes the Parquet reader fetches to read `file` from row group `from` on. */
  async function bytesFetched(file: Buffer, from: number): Promise<number> {
    let fetched = 0;
    const buffer = {
      byteLength: file.length,
      slice: async (start: number, end?: number) => {
        const bytes = file.subarray(start, end ?? file.length);
        fetched += bytes.length;
        return bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.length) as ArrayBuffer;
      },
    };
    for await (const _ of parseParquet(buffer, { maxRecordBytes: 1 << 20, fromRowGroup: from })) {
      // read every row
    }
    return fetched;
  }

  const badRowsOf = (rows: number, every: number) =>
    Array.from({ length: Math.floor(rows / every) }, (_, i) => (i + 1) * every);

  it('resumes a CSV from the byte offset of its checkpoint, reading less than the whole file again', async () => {
    const rows = 6000;
    const file = csvFile(rows, { name: 'ckpt_csv', badEvery: 97 });
    const body = Buffer.from(file.text);
    const { done, resumedFrom } = await crashAndResume('incoming/ckpt.csv', body, {
      good: file.good,
      bad: file.bad,
      badRows: badRowsOf(rows, 97),
      series: 'ckpt_csv',
    });
    expect(resumedFrom.kind).toBe('byte');
    // A record boundary: the byte before the offset ends a line.
    expect(body[resumedFrom.position - 1]).toBe(0x0a);
    expect(done.bytesRead - resumedFrom.bytesRead).toBeLessThan(body.length);
  }, 300_000);

  it('resumes a Parquet file from the row group of its checkpoint', async () => {
    const rows = 6000;
    const every = 97;
    const body = Buffer.from(
      parquetWriteBuffer({
        columnData: [
          { name: 'name', type: 'STRING', data: Array.from({ length: rows }, () => 'ckpt_parquet') },
          {
            name: 'value',
            type: 'STRING',
            data: Array.from({ length: rows }, (_, i) => ((i + 1) % every === 0 ? 'n/a' : String(i % 17))),
          },
          {
            name: 'timestamp',
            type: 'INT64',
            data: BigInt64Array.from({ length: rows }, (_, i) => BigInt(1_700_000_000 + i)),
          },
        ],
        rowGroupSize: 500,
      }),
    );
    const badRows = badRowsOf(rows, every);
    const { done, resumedFrom } = await crashAndResume('incoming/ckpt.parquet', body, {
      good: rows - badRows.length,
      bad: badRows.length,
      badRows,
      series: 'ckpt_parquet',
    });
    expect(resumedFrom.kind).toBe('rowGroup');
    // The checkpoint sits between row groups of 500 rows.
    expect(resumedFrom.row).toBe(resumedFrom.position * 500);
    // The second attempt fetched the footer and the row groups from the checkpoint's on: fewer bytes
    // than a read of the whole file fetches, exactly as many as a read from that row group.
    const fromStart = await bytesFetched(body, 0);
    const fromCheckpoint = await bytesFetched(body, resumedFrom.position);
    expect(fromCheckpoint).toBeLessThan(fromStart);
    expect(done.bytesRead - resumedFrom.bytesRead).toBe(fromCheckpoint);
  }, 300_000);

  it('resumes a gzip CSV by skipping the records its checkpoint counted', async () => {
    const rows = 6000;
    const file = csvFile(rows, { name: 'ckpt_gz', badEvery: 97 });
    const { resumedFrom } = await crashAndResume('incoming/ckpt.csv.gz', gzipSync(file.text), {
      good: file.good,
      bad: file.bad,
      badRows: badRowsOf(rows, 97),
      series: 'ckpt_gz',
    });
    expect(resumedFrom.kind).toBe('record');
    // CSV rows are records: the checkpoint counted exactly the rows before it.
    expect(resumedFrom.position).toBe(resumedFrom.row);
  }, 300_000);
});
