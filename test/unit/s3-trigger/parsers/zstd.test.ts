import { constants, zstdCompressSync } from 'node:zlib';
import { describe, expect, it } from 'vitest';
import { InflationLimitError, MalformedFileError, UnsupportedFormatError } from '#shared/errors.ts';
import type { TrailingData } from '../../../../functions/s3-trigger/parsers/gzip.ts';
import { unzstdBounded } from '../../../../functions/s3-trigger/parsers/zstd.ts';
import { drain, prng, source, split } from './helpers.ts';

const text = (n: number) => {
  const rnd = prng(11);
  return Buffer.from(Array.from({ length: n }, () => `${Math.floor(rnd() * 1e9)}`).join(','));
};

const MiB = 1024 * 1024;
/** zstd with a content checksum, as the `zstd` command writes by default. */
const zstd = (b: Buffer | string, level = 3) =>
  zstdCompressSync(b, {
    params: { [constants.ZSTD_c_compressionLevel]: level, [constants.ZSTD_c_checksumFlag]: 1 },
  });

async function inflate(chunks: Buffer[], size?: number, onTrailing?: (t: TrailingData) => void) {
  const { records, error } = await drain(unzstdBounded(source(chunks), size, undefined, onTrailing));
  return { bytes: Buffer.concat(records), error };
}

describe('unzstdBounded', () => {
  it('decompresses a zstd stream however it is chunked', async () => {
    // Prepare: blocks of every kind (raw, RLE and compressed) across 128 KiB boundaries
    const plain = Buffer.concat([text(60_000), Buffer.alloc(300_000, 'x'), text(20_000)]);
    const z = zstd(plain, 19);

    for (const chunks of [[z], split(z, () => 1), split(z, () => 7), split(z, () => 65_536)]) {
      // Act
      const { bytes, error } = await inflate(chunks, z.length);

      // Assess
      expect(error).toBeUndefined();
      expect(bytes.equals(plain)).toBe(true);
    }
  });

  it('reads every frame of a stream of several, and skips skippable frames', async () => {
    // Prepare: Node's own decoder stops after the first frame, without a word
    const skippable = Buffer.from([0x50, 0x2a, 0x4d, 0x18, 3, 0, 0, 0, 9, 9, 9]);
    const z = Buffer.concat([skippable, zstd('a,b\n1,2\n'), zstd('3,4\n'), skippable, zstd('5,6\n')]);

    // Act
    const { bytes, error } = await inflate(
      split(z, () => 5),
      z.length,
    );

    // Assess
    expect(error).toBeUndefined();
    expect(bytes.toString()).toBe('a,b\n1,2\n3,4\n5,6\n');
  });

  it.each([
    ['inside a block', (z: Buffer) => z.subarray(0, z.length - 20)],
    ['in the checksum', (z: Buffer) => z.subarray(0, z.length - 2)],
    ['in the frame header', (z: Buffer) => z.subarray(0, 5)],
  ])('fails a stream cut short %s as truncated (Node reports nothing)', async (_where, cut) => {
    // Prepare
    const z = cut(zstd(text(50_000)));

    // Act
    const { error } = await inflate([z], z.length);

    // Assess
    expect(error).toBeInstanceOf(MalformedFileError);
    expect(error?.message).toMatch(
      /^zstd: the file ends inside the \w+ of the frame at byte 0 \(it is truncated\)/,
    );
  });

  it('fails corrupt data with the offset of its frame', async () => {
    // Prepare: a second frame whose block data is garbled
    const first = zstd('a,b\n');
    const second = Buffer.from(zstd(text(20_000)));
    for (let i = 20; i < 60; i++) second[i] = (second[i] as number) ^ 0xa5;

    // Act
    const { bytes, error } = await inflate([Buffer.concat([first, second])]);

    // Assess
    expect(bytes.toString().startsWith('a,b\n')).toBe(true);
    expect(error).toBeInstanceOf(MalformedFileError);
    expect(error?.message).toContain(`zstd: the frame at byte ${first.length} is corrupt`);
  });

  it('stops a zstd bomb at the inflation bound', async () => {
    // Prepare: 256 MiB of zeros in about 8 KB
    const z = zstd(Buffer.alloc(256 * MiB), 19);

    // Act
    const { bytes, error } = await inflate(
      split(z, () => 4096),
      z.length,
    );

    // Assess
    expect(error).toBeInstanceOf(InflationLimitError);
    expect(error?.message).toMatch(/^zstd stream inflates past 67108864 bytes/);
    expect(bytes.length).toBeLessThanOrEqual(64 * MiB);
  });

  it('hands bytes after the last frame to onTrailingData, and takes zero bytes for padding', async () => {
    // Prepare
    const z = zstd('a,b\n1,2\n');
    const seen: TrailingData[] = [];

    // Act
    const padded = await inflate([Buffer.concat([z, Buffer.alloc(16)])]);
    const trailing = await inflate([Buffer.concat([z, Buffer.from('\r\n')])], undefined, (t) => seen.push(t));
    const strict = await inflate([Buffer.concat([z, Buffer.from('\r\n')])]);

    // Assess
    expect(padded).toEqual({ bytes: Buffer.from('a,b\n1,2\n'), error: undefined });
    expect(trailing).toEqual({ bytes: Buffer.from('a,b\n1,2\n'), error: undefined });
    expect(seen).toEqual([{ coding: 'zstd', byteOffset: z.length, bytes: 2, head: '0d0a' }]);
    expect(strict.error?.message).toBe(
      `zstd: 2 bytes after the end of the compressed data (from byte ${z.length}) are not zstd (hex 0d0a) (at byte ${z.length})`,
    );
  });

  it.each([
    ['an empty stream', Buffer.alloc(0), 'zstd: not a zstd stream (empty)'],
    [
      'gzip',
      Buffer.from([0x1f, 0x8b, 8, 0, 0, 0]),
      'zstd: not a zstd stream (it does not start with the bytes 28 b5 2f fd)',
    ],
  ])('fails %s as not zstd', async (_what, bytes, message) => {
    // Act
    const { error } = await inflate([bytes]);

    // Assess
    expect(error).toBeInstanceOf(MalformedFileError);
    expect(error?.message).toBe(`${message} (at byte 0)`);
  });

  it('fails a frame that needs a dictionary as one it cannot read', async () => {
    // Prepare: a frame header naming dictionary 7 (Dictionary_ID flag 1: one byte)
    const frame = Buffer.from([0x28, 0xb5, 0x2f, 0xfd, 0x01, 0x58, 0x07, 0x01, 0x00, 0x00]);

    // Act
    const { error } = await inflate([frame]);

    // Assess
    expect(error).toBeInstanceOf(UnsupportedFormatError);
    expect(error?.message).toContain('compressed with dictionary 7');
  });

  it('lets errors of the source itself through unchanged', async () => {
    // Prepare
    const failure = new Error('socket hang up');
    async function* failing() {
      yield zstd(text(10_000)).subarray(0, 100);
      throw failure;
    }

    // Act
    const { error } = await drain(unzstdBounded(failing(), undefined));

    // Assess
    expect(error).toBe(failure);
  });
});
