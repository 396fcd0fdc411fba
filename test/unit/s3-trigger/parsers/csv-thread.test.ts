import { describe, expect, it } from 'vitest';
import { loadS3TriggerConfig } from '#shared/config.ts';
import { MalformedFileError, TransientError } from '#shared/errors.ts';
import { parseCsvBatches } from '../../../../functions/s3-trigger/parsers/csv.ts';
import {
  parseThreadDecider,
  terminateParseThread,
} from '../../../../functions/s3-trigger/parsers/csv-thread.ts';
import type { ParsedRecord, ParserOptions } from '../../../../functions/s3-trigger/parsers/types.ts';
import { drain, OPTS, prng, source, split } from './helpers.ts';

const INLINE: ParserOptions = { ...OPTS, positions: true };
const THREAD: ParserOptions = { ...INLINE, parseThread: true };

/** A CSV of `rows` data rows with quoting, multi-byte text, CRLF and LF, empty lines and ragged rows. */
function sampleCsv(rows: number): Buffer {
  const rnd = prng(rows);
  const lines = ['\ufeffname,value,note'];
  for (let i = 0; i < rows; i++) {
    const r = rnd();
    if (r < 0.05) lines.push(`ragged,${i}`);
    else if (r < 0.1) lines.push(`"quoted ""${i}""","${i}","two\nlines, é 😀"`);
    else if (r < 0.12) lines.push('');
    else lines.push(`series-${i % 37},${(rnd() * 1000).toFixed(3)},日本 ${i}`);
  }
  return Buffer.from(lines.map((l, i) => l + (i % 3 === 0 ? '\n' : '\r\n')).join(''));
}

async function records(chunks: Buffer[], opts = THREAD): Promise<ParsedRecord[]> {
  const out: ParsedRecord[] = [];
  for await (const batch of parseCsvBatches(source(chunks), opts)) out.push(...batch);
  return out;
}

describe('CSV parsed on its own thread', () => {
  it('is used for objects of 1 MiB or more on a Lambda of two vCPUs (3,538 MB), not on one of one', () => {
    // Prepare: the decision as the handler makes it, from the configuration Lambda's environment gives
    const decider = (memoryMb: string) =>
      parseThreadDecider(
        loadS3TriggerConfig({
          SIGNALS_QUEUE_URL: 'q',
          LEDGER_TABLE: 'l',
          QUARANTINE_BUCKET: 'b',
          AWS_LAMBDA_FUNCTION_MEMORY_SIZE: memoryMb,
        }).parseThread,
      );
    // Act
    const two = decider('3538');
    const one = decider('3537');
    // Assess
    expect(two(2 ** 20)).toBe(true);
    expect(two(2 ** 20 - 1)).toBe(false);
    expect(two(undefined)).toBe(false);
    expect(one(100 * 2 ** 20)).toBe(false);
  });

  it('gives the records, rows and end offsets the calling thread gives, whatever the chunking', async () => {
    // Prepare: large enough for many 64 KiB pieces, and chunks both smaller and larger than a piece
    const bytes = sampleCsv(40_000);
    const expected = await records([bytes], INLINE);
    const rnd = prng(7);

    for (const chunks of [
      [bytes],
      split(bytes, () => 1 + Math.floor(rnd() * 300_000)),
      split(bytes, () => 1 + Math.floor(rnd() * 5_000)),
    ]) {
      // Act
      const got = await records(chunks);

      // Assess
      expect(got).toEqual(expected);
    }
    expect(expected.length).toBeGreaterThan(38_000);
    expect(expected.some((r) => r.error !== undefined)).toBe(true);
  });

  it('parses several files at once, each its own', async () => {
    // Prepare
    const a = sampleCsv(5_000);
    const b = Buffer.from(`x,y\n${Array.from({ length: 5_000 }, (_, i) => `${i},${i * 2}`).join('\n')}\n`);

    // Act
    const [gotA, gotB] = await Promise.all([records(split(a, () => 4096)), records(split(b, () => 1000))]);

    // Assess
    expect(gotA).toEqual(await records([a], INLINE));
    expect(gotB).toEqual(await records([b], INLINE));
  });

  it('can be left part way through a file, and then parses the next file whole', async () => {
    // Prepare
    const bytes = sampleCsv(20_000);

    let closed = false;
    async function* body() {
      try {
        yield* source(split(bytes, () => 65_536));
      } finally {
        closed = true;
      }
    }

    // Act: read one batch, then stop (as a hand-over before the timeout does)
    for await (const batch of parseCsvBatches(body(), THREAD)) {
      expect(batch.length).toBeGreaterThan(0);
      break;
    }
    const next = await records(split(bytes, () => 65_536));

    // Assess: the source was closed (an S3 body's socket released), and the next file is whole
    expect(closed).toBe(true);
    expect(next).toEqual(await records([bytes], INLINE));
  });

  it('fails as the calling thread does, after yielding the records before the failure', async () => {
    // Prepare: an unclosed quote after many good records
    const bytes = Buffer.concat([sampleCsv(10_000), Buffer.from('bad,"never closed\n1,2,3\n')]);

    // Act
    const inline = await drain(parseCsvBatchesFlat(bytes, INLINE));
    const thread = await drain(parseCsvBatchesFlat(bytes, THREAD));

    // Assess
    expect(thread.error).toBeInstanceOf(MalformedFileError);
    expect(thread.error?.message).toBe(inline.error?.message);
    expect((thread.error as MalformedFileError).location).toEqual(
      (inline.error as MalformedFileError).location,
    );
    expect(thread.records).toEqual(inline.records);
  });

  it('fails the files it is parsing as retryable when the thread dies, then parses in the calling thread', async () => {
    // Prepare
    const bytes = sampleCsv(20_000);
    const parse = parseCsvBatches(source(split(bytes, () => 65_536)), THREAD);
    await parse.next();

    // Act
    await terminateParseThread();
    const failed = await drain(parse);
    const after = await records(split(bytes, () => 65_536));

    // Assess
    expect(failed.error).toBeInstanceOf(TransientError);
    expect(failed.error?.message).toContain('CSV parser thread');
    expect(after).toEqual(await records([bytes], INLINE));
  });
});

async function* parseCsvBatchesFlat(bytes: Buffer, opts: ParserOptions): AsyncGenerator<ParsedRecord> {
  for await (const batch of parseCsvBatches(source(split(bytes, () => 65_536)), opts)) yield* batch;
}
