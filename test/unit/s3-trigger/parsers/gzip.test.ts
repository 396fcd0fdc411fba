import { constants, crc32, deflateRawSync, gzipSync, inflateRawSync } from 'node:zlib';
import { describe, expect, it } from 'vitest';
import { InflationLimitError, MalformedFileError } from '#shared/errors.ts';
import { settings } from '#shared/settings.ts';
import { gunzipBounded, type TrailingData } from '../../../../functions/s3-trigger/parsers/gzip.ts';
import { drain, prng, source, split } from './helpers.ts';

const text = (n: number) => {
  const rnd = prng(7);
  return Buffer.from(Array.from({ length: n }, () => `${Math.floor(rnd() * 1e9)}`).join(','));
};

const MiB = 1024 * 1024;
const zeroMember = gzipSync(Buffer.alloc(MiB), { level: 9 });
/** `mib` MiB of zeros as concatenated gzip members: a bomb of about 1 KiB per MiB, built without compressing it. */
const zeros = (mib: number) => Buffer.concat(Array.from({ length: mib }, () => zeroMember));

/** About 2 MiB of gzip that does not compress to nothing. */
const largeGz = gzipSync(text(500_000), { level: 1 });

async function inflate(chunks: Buffer[], size?: number) {
  const { records, error } = await drain(gunzipBounded(source(chunks), size));
  return { bytes: Buffer.concat(records), error };
}

describe('gunzipBounded', () => {
  it('inflates a gzip stream however it is chunked', async () => {
    // Prepare
    const plain = text(5_000);
    const gz = gzipSync(plain);

    for (const chunks of [[gz], split(gz, () => 1), split(gz, () => 4096)]) {
      // Act
      const { bytes, error } = await inflate(chunks, gz.length);

      // Assess
      expect(error).toBeUndefined();
      expect(bytes.equals(plain)).toBe(true);
    }
  });

  it('inflates concatenated gzip members as one stream', async () => {
    // Prepare
    const gz = Buffer.concat([gzipSync('a,b\n1,2\n'), gzipSync('3,4\n')]);

    // Act
    const { bytes, error } = await inflate([gz], gz.length);

    // Assess
    expect(error).toBeUndefined();
    expect(bytes.toString()).toBe('a,b\n1,2\n3,4\n');
  });

  it('inflates thousands of members, small and large, however they are chunked', async () => {
    // Prepare: one-line members (as appending to a .gz makes), and members inflating past 256 KiB (read
    // as a stream) among them.
    const parts = Array.from({ length: 3000 }, (_, i) =>
      i % 1000 === 500 ? text(60_000 + i) : Buffer.from(`cpu,${i},2024-01-01T00:00:00Z\n`),
    );
    const gz = Buffer.concat(parts.map((p) => gzipSync(p)));
    const plain = Buffer.concat(parts);
    const rnd = prng(11);

    for (const chunks of [[gz], split(gz, () => 1 + Math.floor(rnd() * 70_000)), split(gz, () => 4096)]) {
      // Act
      const { bytes, error } = await inflate(chunks, gz.length);

      // Assess
      expect(error).toBeUndefined();
      expect(bytes.equals(plain)).toBe(true);
    }
  });

  it('fails on input that does not start with the gzip magic bytes', async () => {
    // Act
    const { error } = await inflate([Buffer.from('a,b\n1,2\n')], 8);

    // Assess
    expect(error).toBeInstanceOf(MalformedFileError);
    expect(error?.message).toContain('not a gzip stream');
  });

  it.each([
    ['empty input', []],
    ['a single byte', [Buffer.from([0x1f])]],
  ])('fails on %s as not gzip', async (_name, chunks) => {
    // Act
    const { error } = await inflate(chunks);

    // Assess
    expect(error).toBeInstanceOf(MalformedFileError);
    expect(error?.message).toContain('not a gzip stream');
  });

  it('fails on corrupt compressed data with a gzip error', async () => {
    // Prepare
    const gz = gzipSync(text(20_000));
    for (let i = 100; i < 140; i++) gz[i] = 0xff;

    // Act
    const { error } = await inflate(
      split(gz, () => 1000),
      gz.length,
    );

    // Assess
    expect(error).toBeInstanceOf(MalformedFileError);
    expect(error).not.toBeInstanceOf(InflationLimitError);
    expect(error?.message).toMatch(/^gzip: /);
    expect((error as MalformedFileError).location.byteOffset).toEqual(expect.any(Number));
  });

  it('fails on a truncated stream, after inflating what was there', async () => {
    // Prepare
    const plain = text(20_000);
    const gz = gzipSync(plain);

    // Act
    const { bytes, error } = await inflate([gz.subarray(0, gz.length - 100)]);

    // Assess
    expect(error).toBeInstanceOf(MalformedFileError);
    expect(error?.message).toContain('truncated');
    expect(plain.subarray(0, bytes.length).equals(bytes)).toBe(true);
  });

  it('passes on what zlib inflated before corrupt data, but for its last 16 KiB at most, then fails', async () => {
    // Prepare: the first corruption (within a 16 KiB piece, past output of several 16 KiB chunks) that
    // zlib reports as such (others inflate to other bytes, caught by the member's CRC-32 at its end).
    const plain = text(60_000);
    const gz = gzipSync(plain);
    let found = false;
    for (let at = 12_000; at < 20_000 && !found; at += 250) {
      const bad = Buffer.from(gz);
      bad.fill(0xff, at, at + 40);
      const { bytes, error } = await inflate([bad], bad.length);
      if (!(error instanceof MalformedFileError) || error.message.includes('incorrect data check')) continue;
      found = true;
      const recoverable = inflateRawSync(bad.subarray(10, at), { finishFlush: constants.Z_SYNC_FLUSH });

      // Assess
      expect(error.message).toMatch(/^gzip: /);
      expect(bytes.equals(plain.subarray(0, bytes.length))).toBe(true);
      expect(bytes.length).toBeGreaterThanOrEqual(recoverable.length - 16 * 1024);
      expect(bytes.length).toBeGreaterThan(0);
    }
    expect(found).toBe(true);
  });

  it('passes on all zlib can inflate of a member cut short, then fails', async () => {
    // Prepare: cut in the middle of the deflate data of a member that inflates past 256 KiB.
    const plain = text(100_000);
    const gz = gzipSync(plain);
    const cut = gz.subarray(0, Math.floor(gz.length / 2));
    const recoverable = inflateRawSync(cut.subarray(10), { finishFlush: constants.Z_SYNC_FLUSH });

    for (const chunks of [[cut], split(cut, () => 1000)]) {
      // Act
      const { bytes, error } = await inflate(chunks, cut.length);

      // Assess
      expect(error).toBeInstanceOf(MalformedFileError);
      expect(error?.message).toContain('truncated');
      expect(bytes.length).toBe(recoverable.length);
      expect(bytes.equals(plain.subarray(0, bytes.length))).toBe(true);
    }
  });

  it.each([
    ['one chunk', (gz: Buffer) => [gz]],
    ['1000-byte chunks', (gz: Buffer) => split(gz, () => 1000)],
    ['7-byte chunks', (gz: Buffer) => split(gz, () => 7)],
  ])(
    'yields every byte zlib inflated before reporting a stream cut in its trailer (%s)',
    async (_name, chunk) => {
      // Prepare: a text that stays about 60 KiB compressed, so zlib inflates it in several 16 KiB pieces.
      const plain = text(7_000);
      const gz = gzipSync(plain);
      const cut = gz.subarray(0, gz.length - 1);

      // Act
      const { bytes, error } = await inflate(chunk(cut), cut.length);

      // Assess: all of the text (only the trailer is missing), then the error.
      expect(error).toBeInstanceOf(MalformedFileError);
      expect(error?.message).toContain('truncated');
      expect(bytes.length).toBe(plain.length);
      expect(bytes.equals(plain)).toBe(true);
    },
  );

  describe('after the last member', () => {
    const plain = text(20_000);
    const gz = gzipSync(plain);

    it.each([
      ['a line end', Buffer.from('\n')],
      ['a few bytes of text', Buffer.from('junk data here\n')],
      ['64 KiB of text', Buffer.alloc(64 * 1024, 'x')],
      ['text that starts with the first magic byte', Buffer.from([0x1f, 0x20, 0x41])],
    ])('passes on every inflated byte, then reports %s with where it starts', async (_name, tail) => {
      // Prepare
      const file = Buffer.concat([gz, tail]);
      for (const chunks of [[file], split(file, () => 1000), split(file, () => 7)]) {
        const seen: TrailingData[] = [];

        // Act
        const { records, error } = await drain(
          gunzipBounded(source(chunks), file.length, settings.limits, (t) => seen.push(t)),
        );

        // Assess
        expect(error).toBeUndefined();
        expect(Buffer.concat(records).equals(plain)).toBe(true);
        expect(seen).toEqual([
          { byteOffset: gz.length, bytes: tail.length, head: tail.subarray(0, 32).toString('hex') },
        ]);
      }
    });

    it('fails after every inflated byte when nobody takes the trailing data', async () => {
      // Act
      const { bytes, error } = await inflate([Buffer.concat([gz, Buffer.from('\n')])]);

      // Assess
      expect(bytes.equals(plain)).toBe(true);
      expect(error).toBeInstanceOf(MalformedFileError);
      expect((error as MalformedFileError).reason).toBe(
        `gzip: 1 byte after the end of the compressed data (from byte ${gz.length}) is not gzip (hex 0a)`,
      );
      expect((error as MalformedFileError).location.byteOffset).toBe(gz.length);
    });

    it('allows zero bytes (padding)', async () => {
      // Prepare
      const seen: TrailingData[] = [];

      // Act
      const { records, error } = await drain(
        gunzipBounded(source([gz, Buffer.alloc(512)]), undefined, settings.limits, (t) => seen.push(t)),
      );

      // Assess
      expect(error).toBeUndefined();
      expect(Buffer.concat(records).equals(plain)).toBe(true);
      expect(seen).toEqual([]);
    });
  });

  it('reads a member header with an extra field, a name, a comment and a header CRC', async () => {
    // Prepare: RFC 1952, flags FHCRC | FEXTRA | FNAME | FCOMMENT.
    const plain = Buffer.from('name,value\na,1\n');
    const fixed = Buffer.from([0x1f, 0x8b, 8, 0x1e, 0, 0, 0, 0, 0, 3]);
    const extra = Buffer.concat([Buffer.from([4, 0]), Buffer.from('AB\x02\x00', 'latin1')]);
    const head = Buffer.concat([fixed, extra, Buffer.from('data.csv\0comment\0')]);
    const hcrc = Buffer.alloc(2);
    hcrc.writeUInt16LE(crc32(head) & 0xffff);
    const trailer = Buffer.alloc(8);
    trailer.writeUInt32LE(crc32(plain), 0);
    trailer.writeUInt32LE(plain.length, 4);
    const gz = Buffer.concat([head, hcrc, deflateRawSync(plain), trailer]);

    // Act
    const { bytes, error } = await inflate(split(gz, () => 3));

    // Assess
    expect(error).toBeUndefined();
    expect(bytes.equals(plain)).toBe(true);
  });

  it.each([
    ['its CRC-32', 0, /incorrect data check in the member at byte 0/],
    ['its length', 4, /incorrect length check in the member at byte 0/],
  ])('fails a member whose trailer does not match %s, after its bytes', async (_name, at, message) => {
    // Prepare
    const plain = text(2_000);
    const gz = gzipSync(plain);
    gz[gz.length - 8 + at] = ((gz[gz.length - 8 + at] as number) + 1) & 0xff;

    // Act
    const { bytes, error } = await inflate([gz]);

    // Assess
    expect(bytes.equals(plain)).toBe(true);
    expect(error).toBeInstanceOf(MalformedFileError);
    expect(error?.message).toMatch(message);
    expect((error as MalformedFileError).location.byteOffset).toBe(gz.length - 8);
  });

  it('fails a second member cut inside its header as truncated', async () => {
    // Prepare
    const first = gzipSync('a,b\n');
    const gz = Buffer.concat([first, gzipSync('1,2\n').subarray(0, 5)]);

    // Act
    const { bytes, error } = await inflate([gz]);

    // Assess
    expect(bytes.toString()).toBe('a,b\n');
    expect(error).toBeInstanceOf(MalformedFileError);
    expect(error?.message).toContain('truncated');
    expect((error as MalformedFileError).location.byteOffset).toBe(first.length);
  });

  it('stops a gzip bomb at the bound without inflating it all', async () => {
    // Prepare
    const gz = zeros(200);
    const limits = { maxInflationRatio: 10, minInflatedBytesAllowed: MiB };
    const bound = Math.max(10 * gz.length, MiB);
    let inflated = 0;
    let error: unknown;

    // Act
    try {
      for await (const chunk of gunzipBounded(source(split(gz, () => 64 * 1024)), gz.length, limits)) {
        inflated += chunk.length;
      }
    } catch (err) {
      error = err;
    }

    // Assess
    expect(error).toBeInstanceOf(InflationLimitError);
    expect((error as Error).message).toContain(`past ${bound} bytes`);
    expect((error as Error).message).toContain(`${gz.length} compressed bytes`);
    expect(inflated).toBeLessThanOrEqual(bound);
    expect(inflated).toBeGreaterThan(bound - 64 * 1024);
    expect(inflated).toBeLessThan(200 * MiB);
  });

  it('bounds by the bytes read so far when the compressed size is unknown', async () => {
    // Prepare
    const gz = zeros(50);
    const limits = { maxInflationRatio: 10, minInflatedBytesAllowed: MiB };

    // Act
    const { error } = await drain(gunzipBounded(source(split(gz, () => 16 * 1024)), undefined, limits));

    // Assess
    expect(error).toBeInstanceOf(InflationLimitError);
  });

  it('allows the minimum inflated size however well a stream compresses', async () => {
    // Prepare
    const plain = Buffer.alloc(2 * MiB, 'a');
    const gz = gzipSync(plain, { level: 9 });
    const limits = { maxInflationRatio: 2, minInflatedBytesAllowed: 2 * MiB };

    // Act
    const { records, error } = await drain(gunzipBounded(source([gz]), gz.length, limits));

    // Assess
    expect(error).toBeUndefined();
    expect(Buffer.concat(records).length).toBe(plain.length);
  });

  it('uses the limits from settings by default', async () => {
    // Prepare
    const mib = settings.limits.minInflatedBytesAllowed / MiB + 1;
    const gz = zeros(mib);

    // Act
    const { error } = await inflate([gz], gz.length);

    // Assess
    expect(gz.length * settings.limits.maxInflationRatio).toBeLessThan(mib * MiB);
    expect(error).toBeInstanceOf(InflationLimitError);
  });

  it('pulls compressed bytes only as fast as inflated bytes are consumed', async () => {
    // Prepare
    const gz = largeGz;
    let pulled = 0;
    async function* counting() {
      for (const chunk of split(gz, () => 4096)) {
        pulled += chunk.length;
        yield chunk;
      }
    }
    const inflated = gunzipBounded(counting(), gz.length);

    // Act
    const first = await inflated.next();
    await new Promise((resolve) => setTimeout(resolve, 50));
    const pulledAfterFirstChunk = pulled;
    await inflated.return(undefined);

    // Assess
    expect(first.done).toBe(false);
    expect(gz.length).toBeGreaterThan(MiB);
    expect(pulledAfterFirstChunk).toBeLessThan(gz.length / 4);
  });

  it('lets errors of the source through unchanged', async () => {
    // Prepare
    const reset = Object.assign(new Error('socket hang up'), { code: 'ECONNRESET' });
    async function* failing() {
      yield gzipSync(text(1000)).subarray(0, 20);
      throw reset;
    }

    // Act
    const { error } = await drain(gunzipBounded(failing(), undefined));

    // Assess
    expect(error).toBe(reset);
  });

  it('releases the source when the consumer stops early', async () => {
    // Prepare
    const gz = largeGz;
    let released = false;
    async function* tracked() {
      try {
        for (const chunk of split(gz, () => 4096)) yield chunk;
      } finally {
        released = true;
      }
    }

    // Act
    for await (const _chunk of gunzipBounded(tracked(), gz.length)) break;
    await new Promise((resolve) => setTimeout(resolve, 20));

    // Assess
    expect(released).toBe(true);
  });
});
