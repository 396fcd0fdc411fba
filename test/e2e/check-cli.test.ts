import { execFile } from 'node:child_process';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { describe, expect, it } from 'vitest';
import { REPO_ROOT } from '../../local/emulators/supervisor.ts';

const run = promisify(execFile);
const FIXTURES = join(REPO_ROOT, 'test', 'fixtures', 'check');

/** `node bin/pulse.js …args` as an operator (or a CI job gating an upload) runs it: its exit code and output. */
async function pulse(...args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  try {
    const out = await run(process.execPath, [join(REPO_ROOT, 'bin', 'pulse.js'), ...args], {
      cwd: REPO_ROOT,
      timeout: 120_000,
    });
    return { code: 0, ...out };
  } catch (err) {
    const e = err as { code?: number; stdout?: string; stderr?: string };
    if (typeof e.code !== 'number') throw err;
    return { code: e.code, stdout: e.stdout ?? '', stderr: e.stderr ?? '' };
  }
}

/** `pulse check` needs no emulator and no AWS: none is started here. */
describe('pulse check, end to end', () => {
  it('passes a good file with exit code 0 and shows its signals', async () => {
    // Act
    const out = await pulse('check', join(FIXTURES, 'good.csv'));
    // Assess
    expect(out.code).toBe(0);
    expect(out.stdout).toContain('OK: would be ingested');
    expect(out.stdout).toContain('3 read: 3 would be sent, 0 rejected');
    expect(out.stdout).toContain('"ref":"s3://<bucket>/incoming/good.csv@<etag>#1"');
  });

  it('fails a file whose header names other columns (exit 3), saying which columns would do', async () => {
    // Act
    const out = await pulse('check', join(FIXTURES, 'mapped.csv'));
    // Assess
    expect(out.code).toBe(3);
    expect(out.stdout).toContain('column `metric` looks like `name`');
    expect(out.stdout).toContain('column `reading` looks like `value`');
    expect(out.stdout).toContain('column `time` looks like `timestamp`');
    expect(out.stdout).toContain('a header that would do: `name,value,timestamp,host`');
  });

  it('fails a broken file (exit 3) with where it breaks and the rows rejected before', async () => {
    // Act
    const out = await pulse('check', '--json', join(FIXTURES, 'broken.csv'));
    // Assess
    expect(out.code).toBe(3);
    const json = JSON.parse(out.stdout);
    expect(json.exitCode).toBe(3);
    expect(json.files[0]).toMatchObject({
      verdict: 'failed',
      records: 2,
      signals: 1,
      rejected: 1,
      firstRejects: [{ row: 2, reason: 'value must be wholly numeric, got "n/a"' }],
      failure: { type: 'MalformedFileError', row: 3 },
    });
  });

  it('gates on --max-rejects for a compressed file: exit 2 over it, 0 within it', async () => {
    // Act
    const strict = await pulse('check', join(FIXTURES, 'one-bad.ndjson.gz'));
    const lenient = await pulse('check', '--max-rejects', '1', '--json', join(FIXTURES, 'one-bad.ndjson.gz'));
    // Assess
    expect(strict.code).toBe(2);
    expect(strict.stdout).toContain('ndjson, gzip-compressed');
    expect(strict.stdout).toMatch(
      /row {2}byte {2}reason\n {4}2 {4}48 {4}value must be wholly numeric, got "12x"/,
    );
    expect(lenient.code).toBe(0);
    expect(JSON.parse(lenient.stdout).files[0]).toMatchObject({ verdict: 'ok', signals: 2, rejected: 1 });
  });

  it('exits with the worst verdict of several files, and 1 alone for a file that is not there', async () => {
    // Act
    const several = await pulse('check', join(FIXTURES, 'good.csv'), join(FIXTURES, 'one-bad.ndjson.gz'));
    const missing = await pulse('check', join(FIXTURES, 'no-such-file.csv'));
    // Assess
    expect(several.code).toBe(2);
    expect(several.stdout).toContain('2 files checked: 1 ok, 1 with too many rejects, 0 failed, 0 skipped');
    expect(missing.code).toBe(1);
    expect(missing.stderr).toContain('no such file');
  });

  it('prints its version and a help with an example and the exit codes', async () => {
    // Act
    const version = await pulse('--version');
    const help = await pulse('check', '--help');
    // Assess
    expect(version.stdout.trim()).toMatch(/^\d+\.\d+\.\d+/);
    expect(help.code).toBe(0);
    expect(help.stdout).toContain('Example:');
    expect(help.stdout).toContain('Exit codes:');
  });
});
