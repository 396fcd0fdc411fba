import { spawn } from 'node:child_process';
import { once } from 'node:events';

/** What running one of the project's `scripts/*.sh install` steps gave. */
export interface InstallRun {
  /** The exit code, or null when bash could not be started (see `error`). */
  readonly code: number | null;
  /** Its last lines of output (stdout and stderr), for an error message. */
  readonly tail: string[];
  readonly error?: Error;
}

/**
 * Runs `bash <script> install` in `root`, passing each output line to `onOutput` (stderr by default),
 * and resolves when it ends. Never throws: the caller turns a failure into its own typed error.
 */
export async function runInstallScript(
  script: string,
  root: string,
  onOutput: (line: string) => void = (line) => process.stderr.write(`${line}\n`),
): Promise<InstallRun> {
  const output: string[] = [];
  const child = spawn('bash', [script, 'install'], { cwd: root, stdio: ['ignore', 'pipe', 'pipe'] });
  const collect = (chunk: Buffer) => {
    for (const line of chunk.toString('utf8').split('\n')) {
      if (line.trim() === '') continue;
      output.push(line);
      onOutput(line);
    }
  };
  child.stdout.on('data', collect);
  child.stderr.on('data', collect);
  const result = await Promise.race([
    once(child, 'exit').then(([code]) => ({ code: code as number | null })),
    once(child, 'error').then(([err]) => ({ code: null, error: err as Error })),
  ]);
  return { ...result, tail: output.slice(-10) };
}

/** Options of the `ensure…Installed` functions. */
export interface InstallOptions {
  /** @default the repository root */
  readonly root?: string;
  /** Receives the install script's progress lines. @default written to stderr */
  readonly onOutput?: (line: string) => void;
}
