import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { bundle } from '../../bench/bundles.ts';
import { runNode } from '../../bench/lib.ts';
import { REPO_ROOT } from '../../local/emulators/supervisor.ts';

const dir = mkdtempSync(join(tmpdir(), 'pulse-bundle-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe('bundles built with the functions esbuild options', () => {
  it('run the CSV parser thread from the bundle itself', async () => {
    // Prepare: the thread loads the file it is defined in, which in a function is its bundle
    const { js } = await bundle(join(REPO_ROOT, 'test/fixtures/bundles/csv-thread-entry.ts'), dir);

    // Act
    const { code, out, err } = await runNode([js], {});

    // Assess
    expect(err).toBe('');
    expect(code).toBe(0);
    expect(JSON.parse(out)).toEqual({
      records: 50_000,
      last: { row: 50_000, data: { name: 's5', value: '49999', note: 'a "q", 49999' } },
    });
  }, 60_000);

  it('decode Parquet of every codec in a decoder process running the bundle itself', async () => {
    // Prepare: the decoder process runs the file it is defined in, which in a function is its bundle
    const { js } = await bundle(join(REPO_ROOT, 'test/fixtures/bundles/parquet-decoder-entry.ts'), dir);
    const codecs = ['uncompressed', 'snappy', 'gzip', 'brotli', 'lz4_raw', 'zstd'];
    const files = codecs.map((c) =>
      join(REPO_ROOT, `test/fixtures/parquet/corpus/matrix-${c}-plain-v2.parquet`),
    );
    const hadoop = join(REPO_ROOT, 'test/fixtures/parquet/conformance/hadoop_lz4_compressed.parquet');

    // Act
    const { code, out, err } = await runNode([js, ...files, hadoop], {});

    // Assess
    expect(err).toBe('');
    expect(code).toBe(0);
    const read = JSON.parse(out) as Record<string, { rows: number; last: Record<string, unknown> }>;
    for (const c of codecs) {
      expect(read[`matrix-${c}-plain-v2.parquet`], c).toEqual({
        rows: 500,
        last: expect.objectContaining({ name: 'metric-4', value: 94.75, host: 'host-2', count: 499001497 }),
      });
    }
    expect(read['hadoop_lz4_compressed.parquet']).toEqual({
      rows: 4,
      last: { c0: 1593604801, c1: 'def', v11: 7.7 },
    });
  }, 60_000);
});
