/**
 * Drives the `pulse` CLI as a user does, in a child process, against an offline run of its own (a
 * temporary `--home` and free ports, so it never touches a developer's own `pulse local up`).
 */

import { execFile } from 'node:child_process';
import { mkdtempSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import type { PulseStatus } from '../../local/commands/status.ts';
import { REPO_ROOT } from '../../local/emulators/supervisor.ts';
import type { LocalState } from '../../local/runtime/state.ts';
import { waitUntil } from '../helpers/wait.ts';

const run = promisify(execFile);

export interface Cli {
  readonly home: string;
  /** Runs `pulse --home <home> …args`; rejects with its output when it exits non-zero. */
  pulse(...args: string[]): Promise<string>;
  status(): Promise<PulseStatus>;
  state(): Promise<LocalState>;
  /** Polls `pulse status --json` until `check` holds; fails with the last status seen. */
  waitForStatus(what: string, check: (s: PulseStatus) => boolean, timeoutMs?: number): Promise<PulseStatus>;
}

export function cli(): Cli {
  const home = mkdtempSync(join(REPO_ROOT, '.pulse', 'e2e-'));
  const pulse = async (...args: string[]) => {
    try {
      const out = await run(process.execPath, [join(REPO_ROOT, 'bin', 'pulse.js'), '--home', home, ...args], {
        cwd: REPO_ROOT,
        maxBuffer: 64 * 1024 * 1024,
        timeout: 300_000,
      });
      return out.stdout;
    } catch (err) {
      const e = err as { stdout?: string; stderr?: string; message: string };
      throw new Error(`pulse ${args.join(' ')} failed: ${e.message}\n${e.stdout ?? ''}\n${e.stderr ?? ''}`);
    }
  };
  const status = async () => JSON.parse(await pulse('status', '--json')) as PulseStatus;
  return {
    home,
    pulse,
    status,
    state: async () => JSON.parse((await import('node:fs')).readFileSync(join(home, 'state.json'), 'utf8')),
    waitForStatus: (what, check, timeoutMs = 120_000) =>
      waitUntil(
        what,
        async () => {
          const s = await status();
          if (check(s)) return s;
          // Thrown so that a timeout reports the last status seen.
          throw new Error(
            JSON.stringify({
              ...s,
              endpoints: undefined,
              files: s.files.map((f) => [f.key, f.status, f.records, f.rejected, f.error]),
            }),
          );
        },
        { timeoutMs, intervalMs: 2000 },
      ),
  };
}
