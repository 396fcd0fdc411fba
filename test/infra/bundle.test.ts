import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { bundle } from '../../bench/bundles.ts';
import { runNode } from '../../bench/lib.ts';
import { REPO_ROOT } from '../../local/emulators.ts';

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
});
