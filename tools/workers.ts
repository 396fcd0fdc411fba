/**
 * Child processes for crash tests and the bench: a worker script run with tsx, which prints `ready` once it
 * is listening; the caller kills it with SIGKILL (no cleanup of any kind runs) at the moment it chooses.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { once } from 'node:events';

export interface Worker {
  readonly child: ChildProcess;
  /** Everything the worker wrote on stdout, `ready` included. */
  readonly output: string[];
  /** Resolves with the exit code, or the signal that ended it. */
  readonly exited: Promise<number | NodeJS.Signals>;
  /** SIGKILL, then waits for the exit. Idempotent. */
  kill(): Promise<number | NodeJS.Signals>;
}

/** Starts `node --import tsx <script> ...args` with `env` added, resolving once it printed `ready`. */
export async function startWorker(
  script: string,
  args: readonly string[],
  env: Readonly<Record<string, string>>,
): Promise<Worker> {
  const child = spawn(process.execPath, ['--import', 'tsx', script, ...args], {
    env: { ...process.env, ...env },
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  const output: string[] = [];
  const exited = once(child, 'exit').then(([code, signal]) => (signal ?? code) as number | NodeJS.Signals);
  const ready = new Promise<void>((resolve) => {
    child.stdout?.on('data', (chunk: Buffer) => {
      output.push(...String(chunk).split('\n').filter(Boolean));
      if (output.includes('ready')) resolve();
    });
  });
  const outcome = await Promise.race([ready.then(() => 'ready' as const), exited]);
  if (outcome !== 'ready') throw new Error(`worker ${script} exited (${outcome}) before it was ready`);
  return {
    child,
    output,
    exited,
    kill: () => {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
      return exited;
    },
  };
}
