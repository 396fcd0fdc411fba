import { Readable } from 'node:stream';
import { gzipSync } from 'node:zlib';
import {
  DeleteObjectsCommand,
  GetObjectCommand,
  ListObjectsV2Command,
  PutObjectCommand,
  S3Client,
} from '@aws-sdk/client-s3';
import { SendMessageBatchCommand, SQSClient } from '@aws-sdk/client-sqs';
import { sdkStreamMixin } from '@smithy/core/serde';
import { mockClient } from 'aws-sdk-client-mock';
import { parquetWriteBuffer } from 'hyparquet-writer';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { LeaseLostError } from '#shared/errors.ts';
import type { Checkpoint, CompletedStats, Ledger, PartRange } from '#shared/ledger.ts';
import { planParts } from '../../../functions/s3-trigger/fan-out.ts';
import { type IngestOutcome, ingestFile } from '../../../functions/s3-trigger/ingest.ts';
import { parseThreadDecider } from '../../../functions/s3-trigger/parsers/csv-thread.ts';
import { detectFormat } from '../../../functions/s3-trigger/parsers/index.ts';
import { HEADER_WINDOW_BYTES } from '../../../functions/s3-trigger/records.ts';
import { INGEST_DEFAULTS } from '../../helpers/ingest.ts';
import { fakeLedger } from '../../helpers/ledger.ts';
import { quietObservability } from '../../helpers/observability.ts';
import { decodeSignals } from '../../helpers/signals.ts';

/**
 * Checkpoints: a long file's progress is recorded only once everything before it is durable, and a
 * retried attempt resumes from it with exactly the rows, ids, rejects and totals of an uninterrupted run.
 */

const BOM = '\uFEFF';
const ROWS = 240;

function csvText(): string {
  const lines = [`${BOM}name,value,timestamp,note`];
  for (let i = 1; i <= ROWS; i++) {
    const value = i % 9 === 0 ? 'n/a' : String(i / 2);
    // Quoted newlines, multi-byte characters, empty lines and a ragged row now and then.
    const note = i % 5 === 0 ? `"line one\r\nline ${i} ünïcødé 😀"` : `plain ${i}`;
    lines.push(
      i % 31 === 0
        ? `ckpt,${value},${1_700_000_000 + i},${note},extra`
        : `ckpt,${value},${1_700_000_000 + i},${note}`,
    );
    if (i % 13 === 0) lines.push('');
  }
  return `${lines.join('\r\n')}\r\n`;
}

function ndjsonText(): string {
  const lines: string[] = [];
  for (let i = 1; i <= ROWS; i++) {
    if (i % 11 === 0) lines.push('{not json');
    else if (i % 17 === 0) lines.push('   ');
    else
      lines.push(
        JSON.stringify({
          name: 'ckpt',
          value: i % 9 === 0 ? 'n/a' : i,
          timestamp: 1_700_000_000 + i,
          t: 'é😀',
        }),
      );
  }
  return lines.join('\n');
}

function jsonText(): string {
  const rows = Array.from({ length: ROWS }, (_, i) => ({
    name: 'ckpt',
    value: i % 9 === 0 ? 'x' : i,
    timestamp: 1_700_000_000 + i,
  }));
  return JSON.stringify(rows, null, 1);
}

function parquetBytes(): Buffer {
  const ab = parquetWriteBuffer({
    columnData: [
      { name: 'name', type: 'STRING', data: Array.from({ length: ROWS }, () => 'ckpt') },
      {
        name: 'value',
        type: 'STRING',
        data: Array.from({ length: ROWS }, (_, i) => (i % 9 === 0 ? 'n/a' : String(i))),
      },
      {
        name: 'timestamp',
        type: 'INT64',
        data: BigInt64Array.from({ length: ROWS }, (_, i) => BigInt(1_700_000_000 + i)),
      },
    ],
    rowGroupSize: 40,
  });
  return Buffer.from(ab);
}

const FILES: Array<{ key: string; bytes: () => Buffer; kind: Checkpoint['kind'] }> = [
  { key: 'incoming/c.csv', bytes: () => Buffer.from(csvText()), kind: 'byte' },
  { key: 'incoming/c.ndjson', bytes: () => Buffer.from(ndjsonText()), kind: 'byte' },
  { key: 'incoming/c.json', bytes: () => Buffer.from(jsonText()), kind: 'record' },
  { key: 'incoming/c.csv.gz', bytes: () => gzipSync(csvText()), kind: 'record' },
  { key: 'incoming/c.parquet', bytes: () => parquetBytes(), kind: 'rowGroup' },
];

interface Rejected {
  readonly key: string;
  readonly rows: number[];
}

// One mock of each client for both runs below (a second mockClient of a class would take over from the first).
const s3 = mockClient(S3Client);
const sqs = mockClient(SQSClient);

// Every case holds whether CSV is parsed in the calling thread or on a thread of its own (csv-thread.ts).
describe.each(['off', 'on'] as const)('checkpoints (CSV parse thread %s)', (parseThread) => {
  let obs: ReturnType<typeof quietObservability>;
  /** What happened, in order: sends (signal rows), completed rejects objects, checkpoints. */
  let events: Array<
    | { type: 'sent'; ids: string[] }
    | { type: 'rejects'; key: string; rows: number[] }
    | { type: 'checkpoint'; checkpoint: Checkpoint }
  >;
  let getRanges: Array<string | undefined>;

  /** The object GetObject serves (ranged GETs included). */
  let object: Buffer = Buffer.alloc(0);
  const serve = (bytes: Buffer) => {
    object = bytes;
  };

  const deps = (ledger: ReturnType<typeof fakeLedger>) => {
    // Every reading of the clock moves it on: checkpoints fall due every few records.
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
        quarantineBucket: 'qb',
        heartbeatSeconds: 1,
        checkpointSeconds: 1,
        maxMessageBytes: 2048,
      },
      owner: 'w1',
      csvOnThread: parseThreadDecider({ mode: parseThread, minBytes: 0, cpus: 2 }),
      now: () => {
        t += 97;
        return t;
      },
    };
  };

  const sent = () => events.flatMap((e) => (e.type === 'sent' ? e.ids : []));
  const rejected = (): Rejected[] =>
    events.flatMap((e) => (e.type === 'rejects' ? [{ key: e.key, rows: e.rows }] : []));
  const checkpoints = () => events.flatMap((e) => (e.type === 'checkpoint' ? [e.checkpoint] : []));
  const rowOf = (id: string) => Number(id.slice(id.lastIndexOf('#') + 1));

  beforeEach(() => {
    obs = quietObservability();
    events = [];
    getRanges = [];
    sqs.on(SendMessageBatchCommand).callsFake((input: { Entries?: { MessageBody?: string }[] }) => {
      events.push({
        type: 'sent',
        ids: (input.Entries ?? []).flatMap((e) => decodeSignals(e.MessageBody ?? '').map((s) => s.id)),
      });
      return { Failed: [] };
    });
    s3.on(GetObjectCommand).callsFake((input: { Range?: string }) => {
      getRanges.push(input.Range);
      let slice = object;
      const m = /^bytes=(\d+)-(\d*)$/.exec(input.Range ?? '');
      if (m) slice = object.subarray(Number(m[1]), m[2] ? Number(m[2]) + 1 : object.length);
      // Small chunks, so that records straddle chunk boundaries.
      const chunks: Buffer[] = [];
      for (let at = 0; at < slice.length; at += 700) chunks.push(Buffer.from(slice.subarray(at, at + 700)));
      return { Body: sdkStreamMixin(Readable.from(chunks)), ContentLength: slice.length };
    });
    s3.on(PutObjectCommand).callsFake((input: { Key?: string; Body?: unknown }) => {
      const rows = String(input.Body)
        .trim()
        .split('\n')
        .map((l) => (JSON.parse(l) as { row?: number }).row ?? -1);
      events.push({ type: 'rejects', key: String(input.Key), rows });
      return {};
    });
  });
  afterEach(() => {
    s3.reset();
    sqs.reset();
  });

  /** One uninterrupted run: its outcome, what it sent and rejected, and the checkpoints it wrote. */
  async function uninterrupted(key: string, bytes: Buffer) {
    serve(bytes);
    const ledger = fakeLedger({ claimed: true, attempt: 1 });
    ledger.heartbeat.mockImplementation(async (_f, _o, _s, checkpoint) => {
      if (checkpoint) events.push({ type: 'checkpoint', checkpoint: structuredClone(checkpoint) });
    });
    const out = await ingestFile({ bucket: 'b', key, etag: 'e1', size: bytes.length }, deps(ledger));
    const result = { out, ledger, sent: sent(), rejected: rejected(), checkpoints: checkpoints() };
    events = [];
    getRanges = [];
    return result;
  }

  for (const f of FILES) {
    it(`writes ${f.kind} checkpoints of ${f.key} only when every signal and reject before them is durable`, async () => {
      // Prepare
      const bytes = f.bytes();
      serve(bytes);
      const ledger = fakeLedger({ claimed: true, attempt: 1 });
      const seen: Array<{ checkpoint: Checkpoint; sent: string[]; rejected: Rejected[] }> = [];
      ledger.heartbeat.mockImplementation(async (_f, _o, _s, checkpoint) => {
        if (checkpoint)
          seen.push({ checkpoint: structuredClone(checkpoint), sent: sent(), rejected: rejected() });
      });
      // Act
      const out = await ingestFile({ bucket: 'b', key: f.key, etag: 'e1', size: bytes.length }, deps(ledger));
      // Assess
      expect(out, JSON.stringify(out)).toMatchObject({ status: 'SUCCESS' });
      const all = sent();
      const allRejects = rejected().flatMap((r) => r.rows);
      expect(seen.length).toBeGreaterThan(2);
      for (const { checkpoint, sent: before, rejected: rejectsBefore } of seen) {
        expect(checkpoint.kind).toBe(f.kind);
        const validBefore = all.filter((id) => rowOf(id) <= checkpoint.row);
        // Exactly the valid rows before it, all sent: nothing after it has been processed yet.
        expect(before).toEqual(validBefore);
        const rejectRowsBefore = allRejects.filter((r) => r <= checkpoint.row);
        expect(rejectsBefore.flatMap((r) => r.rows).sort((a, b) => a - b)).toEqual(rejectRowsBefore);
        expect(checkpoint.rejectsKeys).toEqual(rejectsBefore.map((r) => r.key));
        expect(checkpoint.records).toBe(validBefore.length);
        expect(checkpoint.rejected).toBe(rejectRowsBefore.length);
      }
      // Rejects objects: the file's own key first, then one per checkpointed segment, all in the ledger.
      const done = ledger.succeed.mock.calls[0]?.[2];
      expect(done?.rejectsKey).toBe(`rejects/s3/b/${f.key}@e1.ndjson`);
      expect(done?.rejectsKeys).toEqual(rejected().map((r) => r.key));
      expect(done?.rejectsKeys?.slice(1).every((k) => /\.from-row-\d+\.attempt-1\.ndjson$/.test(k))).toBe(
        true,
      );
      expect(done?.resumedFrom).toBeUndefined();
    });

    it(`resumes ${f.key} from its ${f.kind} checkpoints with the rows, ids, rejects and totals of an uninterrupted run`, async () => {
      // Prepare
      const bytes = f.bytes();
      const full = await uninterrupted(f.key, bytes);
      expect(full.out.status).toBe('SUCCESS');
      const total = full.ledger.succeed.mock.calls[0]?.[2] as CompletedStats;
      const allRejectRows = full.rejected.flatMap((r) => r.rows);
      const picks = [
        full.checkpoints[0],
        full.checkpoints[Math.floor(full.checkpoints.length / 2)],
        full.checkpoints.at(-1),
      ];
      for (const checkpoint of picks) {
        if (!checkpoint) throw new Error('the uninterrupted run wrote no checkpoint');
        serve(bytes);
        const ledger = fakeLedger({ claimed: true, attempt: 2, checkpoint });
        // Act
        const out = await ingestFile(
          { bucket: 'b', key: f.key, etag: 'e1', size: bytes.length },
          deps(ledger),
        );
        // Assess
        expect(out.status).toBe('SUCCESS');
        expect(sent()).toEqual(full.sent.filter((id) => rowOf(id) > checkpoint.row));
        const rejects = rejected();
        expect(rejects.flatMap((r) => r.rows)).toEqual(allRejectRows.filter((r) => r > checkpoint.row));
        for (const r of rejects) {
          const from = /@e1\.from-row-(\d+)\.attempt-2\.ndjson$/.exec(r.key);
          expect(Number(from?.[1])).toBeGreaterThan(checkpoint.row);
        }
        const done = ledger.succeed.mock.calls[0]?.[2] as CompletedStats;
        expect(done).toMatchObject({
          records: total.records,
          rejected: total.rejected,
          resumedFrom: checkpoint,
        });
        expect(done.firstErrors).toEqual(total.firstErrors);
        expect([...(done.rejectsKeys ?? (done.rejectsKey ? [done.rejectsKey] : []))]).toEqual([
          ...checkpoint.rejectsKeys,
          ...rejects.map((r) => r.key),
        ]);
        const readNow = done.bytesRead - checkpoint.bytesRead;
        if (f.kind === 'byte') {
          // Only the header window again (CSV) and the bytes from the offset.
          expect(getRanges.at(-1)).toBe(`bytes=${checkpoint.position}-`);
          const header = f.key.endsWith('.csv') ? HEADER_WINDOW_BYTES : 0;
          expect(readNow).toBe(header + bytes.length - checkpoint.position);
        }
        // The footer again, and only the row groups from the checkpoint's.
        if (f.kind === 'rowGroup') expect(readNow).toBeLessThan(total.bytesRead);
        events = [];
        getRanges = [];
      }
    });
  }

  for (const f of FILES) {
    it(`hands ${f.key} over to continuations near the timeout; the chain sends exactly what one run sends`, async () => {
      // Prepare
      const bytes = f.bytes();
      const full = await uninterrupted(f.key, bytes);
      serve(bytes);
      let checkpoint: Checkpoint | undefined;
      const continued: unknown[] = [];
      let invocations = 0;
      let out: Awaited<ReturnType<typeof ingestFile>>;
      // Act: each invocation has plenty of time for 40 records, then less than the hand-over margin.
      do {
        invocations++;
        const ledger = fakeLedger({ claimed: true, attempt: 1, ...(checkpoint ? { checkpoint } : {}) });
        ledger.heartbeat.mockImplementation(async (_f, _o, _s, c) => {
          if (c) checkpoint = structuredClone(c);
        });
        let calls = 0;
        out = await ingestFile(
          { bucket: 'b', key: f.key, etag: 'e1', size: bytes.length },
          {
            ...deps(ledger),
            remainingMs: () => (++calls > 40 ? 1_000 : 600_000),
            continueLater: async (task) => {
              // The hand-over comes after the checkpoint that the continuation resumes from.
              expect(ledger.handOver).toHaveBeenCalledTimes(1);
              expect(ledger.heartbeat.mock.calls.at(-1)?.[3]).toBeDefined();
              continued.push(task);
            },
          },
        );
        if (out.status === 'CONTINUED') expect(out.checkpoint?.row).toBe(checkpoint?.row);
        else expect(ledger.handOver).not.toHaveBeenCalled();
      } while (out.status === 'CONTINUED' && invocations < 100);
      // Assess: every valid row sent once, in order, and every reject kept, across the chain.
      expect(out.status).toBe('SUCCESS');
      expect(invocations).toBeGreaterThan(2);
      expect(continued).toHaveLength(invocations - 1);
      expect(continued[0]).toMatchObject({ bucket: 'b', key: f.key, etag: 'e1', size: bytes.length });
      expect(sent()).toEqual(full.sent);
      expect(
        rejected()
          .flatMap((r) => r.rows)
          .sort((a, b) => a - b),
      ).toEqual(full.rejected.flatMap((r) => r.rows).sort((a, b) => a - b));
      if (out.status === 'SUCCESS') {
        const total = full.ledger.succeed.mock.calls[0]?.[2] as CompletedStats;
        expect(out.stats).toMatchObject({ records: total.records, rejected: total.rejected });
      }
    });
  }

  it('deletes the rejects segment an attempt completed but died before recording, when the next attempt ends', async () => {
    // Prepare: attempt 1 recorded the first checkpoint, then completed a segment at the next and died
    const bytes = FILES[0]?.bytes() ?? Buffer.alloc(0);
    const full = await uninterrupted('incoming/c.csv', bytes);
    const [first, second] = full.checkpoints;
    if (!first || !second) throw new Error('expected two checkpoints');
    const fileKey = 'rejects/s3/b/incoming/c.csv@e1.ndjson';
    const orphan = `rejects/s3/b/incoming/c.csv@e1.from-row-${second.row + 1}.attempt-1.ndjson`;
    const listed = [fileKey, ...first.rejectsKeys, orphan];
    s3.on(ListObjectsV2Command).callsFake((input: { Prefix?: string }) => ({
      Contents: listed.filter((k) => k.startsWith(input.Prefix ?? '')).map((Key) => ({ Key })),
    }));
    const deleted: string[] = [];
    s3.on(DeleteObjectsCommand).callsFake((input: { Delete?: { Objects?: { Key?: string }[] } }) => {
      deleted.push(...(input.Delete?.Objects ?? []).map((o) => o.Key ?? ''));
      return {};
    });
    serve(bytes);
    const ledger = fakeLedger({ claimed: true, attempt: 2, checkpoint: first });

    // Act
    const out = await ingestFile(
      { bucket: 'b', key: 'incoming/c.csv', etag: 'e1', size: bytes.length },
      deps(ledger),
    );

    // Assess: only the orphan goes; what the ledger lists stays
    expect(out.status).toBe('SUCCESS');
    expect(deleted).toEqual([orphan]);
    const done = ledger.succeed.mock.calls[0]?.[2] as CompletedStats;
    expect(done.rejectsKeys ?? []).not.toContain(orphan);
  });

  it('runs a file to its end when nothing can take it over (no continuation queue)', async () => {
    const bytes = FILES[0]?.bytes() ?? Buffer.alloc(0);
    serve(bytes);
    const ledger = fakeLedger({ claimed: true, attempt: 1 });
    const out = await ingestFile(
      { bucket: 'b', key: 'incoming/c.csv', etag: 'e1', size: bytes.length },
      { ...deps(ledger), remainingMs: () => 1 },
    );
    expect(out.status).toBe('SUCCESS');
  });

  it('re-reads only the header of a CSV before its checkpoint, with ranged GETs', async () => {
    // Prepare
    const text = csvText();
    const bytes = Buffer.from(text);
    const full = await uninterrupted('incoming/c.csv', bytes);
    const checkpoint = full.checkpoints[1] as Checkpoint;
    serve(bytes);
    // Act
    await ingestFile(
      { bucket: 'b', key: 'incoming/c.csv', etag: 'e1', size: bytes.length },
      deps(fakeLedger({ claimed: true, attempt: 2, checkpoint })),
    );
    // Assess
    expect(getRanges).toEqual([`bytes=0-${HEADER_WINDOW_BYTES - 1}`, `bytes=${checkpoint.position}-`]);
    // The checkpoint sits on a record boundary: the byte before it ends a line.
    expect(bytes[checkpoint.position - 1]).toBe(0x0a);
  });

  it('fails a CSV that breaks after its checkpoint at the row of the whole file, with no line of the re-read', async () => {
    // Prepare: a quoted field that never closes after the last row.
    const bytes = Buffer.from(`${csvText()}ckpt,1,1700009999,"never closed\r\nckpt,2,1700009999,x\r\n`);
    const full = await uninterrupted('incoming/c.csv', bytes);
    const whole = full.ledger.fail.mock.calls[0]?.[2]?.errorMessage ?? '';
    const location = /\(at row (\d+), line \d+\)$/.exec(whole);
    expect(whole).toMatch(/^CSV quoted field is never closed/);
    expect(location?.[1]).toBe(String(ROWS + 1));
    const checkpoint = full.checkpoints.at(-1) as Checkpoint;
    serve(bytes);
    const ledger = fakeLedger({ claimed: true, attempt: 2, checkpoint });
    // Act
    const out = await ingestFile(
      { bucket: 'b', key: 'incoming/c.csv', etag: 'e1', size: bytes.length },
      deps(ledger),
    );
    // Assess: the same row; the re-read's own row and line are nowhere in the message.
    expect(out.status).toBe('FAILED');
    expect(ledger.fail.mock.calls[0]?.[2]?.errorMessage).toBe(
      `CSV quoted field is never closed: the location is where its record starts, reading from byte ${checkpoint.position} (after row ${checkpoint.row}) (at row ${location?.[1]})`,
    );
  });

  it('stops as lease-lost, writing nothing more, when the lease is lost while a checkpoint is written', async () => {
    // Prepare
    const bytes = Buffer.from(csvText());
    serve(bytes);
    const ledger = fakeLedger({ claimed: true, attempt: 1 });
    let sentBefore = -1;
    ledger.heartbeat.mockImplementation(async (_f, _o, _s, checkpoint) => {
      if (!checkpoint) return;
      sentBefore = sent().length;
      throw new LeaseLostError('taken over');
    });
    // Act
    const out = await ingestFile(
      { bucket: 'b', key: 'incoming/c.csv', etag: 'e1', size: bytes.length },
      deps(ledger),
    );
    // Assess
    expect(out).toEqual({ status: 'SKIPPED', reason: 'lease-lost' });
    expect(ledger.succeed).not.toHaveBeenCalled();
    expect(ledger.fail).not.toHaveBeenCalled();
    expect(sentBefore).toBeGreaterThan(0);
    expect(sent()).toHaveLength(sentBefore);
  });

  it('does not checkpoint a file read faster than the checkpoint interval', async () => {
    // Prepare
    const bytes = Buffer.from(csvText());
    serve(bytes);
    const ledger = fakeLedger({ claimed: true, attempt: 1 });
    const d = deps(ledger);
    // Act
    const out = await ingestFile(
      { bucket: 'b', key: 'incoming/c.csv', etag: 'e1', size: bytes.length },
      { ...d, config: { ...d.config, heartbeatSeconds: 3600, checkpointSeconds: 3600 } },
    );
    // Assess
    expect(out.status).toBe('SUCCESS');
    expect(ledger.heartbeat).not.toHaveBeenCalled();
    expect(rejected().map((r) => r.key)).toEqual(['rejects/s3/b/incoming/c.csv@e1.ndjson']);
    expect(ledger.succeed.mock.calls[0]?.[2].rejectsKeys).toBeUndefined();
  });

  describe('fan-out', () => {
    const SPLITTABLE = FILES.filter((f) => f.kind !== 'record');
    const fanOut = (size: number) => ({ minBytes: 1, partBytes: Math.ceil(size / 5), maxParts: 10 });

    for (const f of SPLITTABLE) {
      it(`ingests the parts of ${f.key}, in any order, as exactly one uninterrupted run`, async () => {
        // Prepare
        const bytes = f.bytes();
        const whole = await uninterrupted(f.key, bytes);
        const format = detectFormat(f.key);
        if (!format) throw new Error(`no format for ${f.key}`);
        const plan = await planParts(
          new S3Client({ region: 'us-east-1' }),
          { bucket: 'b', key: f.key, etag: 'e1' },
          format,
          bytes.length,
          fanOut(bytes.length),
          () => {},
        );
        if (!plan.split) throw new Error(`not split: ${plan.reason}`);
        getRanges = [];
        // Act: the parts from last to first.
        const outs: IngestOutcome[] = [];
        for (const [part, range] of [...plan.ranges.entries()].reverse()) {
          const ledger = fakeLedger({ claimed: true, attempt: 1, range });
          outs.push(
            await ingestFile({ bucket: 'b', key: f.key, etag: 'e1', size: bytes.length, part }, deps(ledger)),
          );
          expect(ledger.succeed.mock.calls[0]?.[0]).toMatchObject({ part });
          expect(ledger.finishSplit).toHaveBeenCalledTimes(1);
        }
        // Assess
        expect(plan.ranges.length).toBeGreaterThanOrEqual(3);
        expect(outs.every((o) => o.status === 'SUCCESS')).toBe(true);
        expect([...sent()].sort()).toEqual([...whole.sent].sort());
        const rows = (r: Rejected[]) => r.flatMap((x) => x.rows).sort((a, b) => a - b);
        expect(rows(rejected())).toEqual(rows(whole.rejected));
        const total = (key: 'records' | 'rejected') =>
          outs.reduce((n, o) => n + (o.status === 'SUCCESS' ? o.stats[key] : 0), 0);
        const done = whole.out.status === 'SUCCESS' ? whole.out.stats : undefined;
        expect(total('records')).toBe(done?.records);
        expect(total('rejected')).toBe(done?.rejected);
        if (f.kind === 'byte') {
          // Each part reads its own bytes only (a CSV part also its header's first bytes).
          for (const range of plan.ranges) {
            if (range.start > 0) expect(getRanges).toContain(`bytes=${range.start}-${range.end - 1}`);
          }
        }
      });
    }

    it('splits a large file instead of reading it: parts recorded, announced, the file left SPLIT', async () => {
      // Prepare
      const bytes = Buffer.from(csvText());
      serve(bytes);
      const ledger = fakeLedger({ claimed: true, attempt: 1 });
      const announced: number[] = [];
      const base = deps(ledger);
      // Act
      const out = await ingestFile(
        { bucket: 'b', key: 'incoming/c.csv', etag: 'e1', size: bytes.length },
        {
          ...base,
          config: { ...base.config, fanOut: fanOut(bytes.length) },
          announceParts: async (parts) => {
            announced.push(...parts.map((p) => p.part));
          },
        },
      );
      // Assess
      const ranges = ledger.planParts.mock.calls[0]?.[2] as PartRange[];
      expect(out).toEqual({ status: 'SPLIT', parts: ranges.length });
      expect(announced).toEqual(ranges.map((_, i) => i));
      expect(ledger.markSplit).toHaveBeenCalledTimes(1);
      expect(ledger.finishSplit).toHaveBeenCalledTimes(1);
      expect(sent()).toEqual([]);
      expect(ledger.succeed).not.toHaveBeenCalled();
    });

    it('fails a part whose last row is not where the plan said, loudly', async () => {
      // Prepare: a plan that ends part 0 one row early (as if the scan had been wrong).
      const bytes = Buffer.from(ndjsonText());
      serve(bytes);
      const range: PartRange = {
        kind: 'byte',
        start: 0,
        end: bytes.indexOf('\n', 2000) + 1,
        row: 0,
        endRow: 1,
      };
      const ledger = fakeLedger({ claimed: true, attempt: 1, range });
      // Act
      const out = await ingestFile(
        { bucket: 'b', key: 'incoming/c.ndjson', etag: 'e1', size: bytes.length, part: 0 },
        deps(ledger),
      );
      // Assess
      expect(out).toMatchObject({ status: 'FAILED', part: 0 });
      expect(out.status === 'FAILED' && out.error).toMatch(
        /planned to end at row 1 but its last row read is \d+/,
      );
      expect(ledger.fail.mock.calls[0]?.[2]).toMatchObject({
        retryable: false,
        errorType: 'MalformedFileError',
      });
    });
  });
});
