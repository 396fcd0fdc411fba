import { type ChildProcess, spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, beforeEach, describe, expect, it } from 'vitest';
import { isRunning, stopProcess } from '../../../../local/emulators/supervisor.ts';
import {
  type LocalState,
  readState,
  statePath,
  updateState,
  writeState,
} from '../../../../local/runtime/state.ts';

const stateFactory = (over: Partial<LocalState> = {}): LocalState => ({
  prefix: 'pulse-unit',
  moto: { pid: 1234, marker: 'moto_server', port: 5000, endpoint: 'http://127.0.0.1:5000' },
  options: { leaseSeconds: 5 },
  ...over,
});

/** A fragment of this process's own command line, as isRunning reads it. */
const ownMarker = (): string => {
  const args = readFileSync('/proc/self/cmdline', 'utf8').split('\0').filter(Boolean);
  return args.at(-1) ?? args[0] ?? '';
};

/** Spawns a child and resolves with its pid once it has exited (and been reaped). */
const deadPid = (): Promise<number> =>
  new Promise((resolve, reject) => {
    const child = spawn('true');
    child.on('error', reject);
    child.on('exit', () => (child.pid ? resolve(child.pid) : reject(new Error('no pid'))));
  });

describe('state file', () => {
  let home = '';
  beforeEach(() => {
    home = mkdtempSync(join(tmpdir(), 'pulse-state-'));
  });
  afterEach(() => rmSync(home, { recursive: true, force: true }));

  it('reads back what it wrote', () => {
    // Prepare
    const state = stateFactory();
    // Act
    writeState(home, state);
    const read = readState(home);
    // Assess
    expect(read).toEqual(state);
    expect(existsSync(`${statePath(home)}.tmp`)).toBe(false);
  });

  it('reads nothing when there is no state file', () => {
    // Act
    const read = readState(join(home, 'nowhere'));
    // Assess
    expect(read).toBeUndefined();
  });

  it('creates the state for the prefix when there is none, then changes the one there is', () => {
    // Prepare
    const dir = join(home, 'not', 'yet');
    // Act
    const created = updateState(dir, 'pulse-new', (s) => {
      s.options = { pollSeconds: 2 };
    });
    const changed = updateState(dir, 'pulse-other', (s) => {
      s.options = { ...s.options, leaseSeconds: 7 };
    });
    // Assess
    expect(created).toEqual({ prefix: 'pulse-new', options: { pollSeconds: 2 } });
    expect(changed).toEqual({ prefix: 'pulse-new', options: { pollSeconds: 2, leaseSeconds: 7 } });
    expect(readState(dir)).toEqual(changed);
  });
});

describe('isRunning', () => {
  it('is true for a running process whose command line holds the marker', () => {
    // Act
    const running = isRunning({ pid: process.pid, marker: ownMarker() });
    // Assess
    expect(running).toBe(true);
  });

  it('is false when the pid now belongs to another program', () => {
    // Act
    const running = isRunning({ pid: process.pid, marker: 'moto_server --port 59999 not-this-process' });
    // Assess
    expect(running).toBe(false);
  });

  it('is false for a process that has exited', async () => {
    // Prepare
    const pid = await deadPid();
    // Act
    const running = isRunning({ pid, marker: 'true' });
    // Assess
    expect(running).toBe(false);
  });

  it('is false without a record', () => {
    // Act
    const running = isRunning(undefined);
    // Assess
    expect(running).toBe(false);
  });
});

describe('stopProcess', () => {
  const children: ChildProcess[] = [];
  afterAll(() => {
    for (const child of children)
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  });

  it('stops a running process it recognises and resolves once it has exited', async () => {
    // Prepare
    const child = spawn('sleep', ['30'], { stdio: 'ignore' });
    children.push(child);
    const exited = new Promise((resolve) => child.on('exit', (_code, signal) => resolve(signal)));
    const record = { pid: child.pid ?? -1, marker: 'sleep 30' };
    expect(isRunning(record)).toBe(true);
    // Act
    const stopped = await stopProcess(record, 'SIGTERM', 5_000);
    // Assess
    expect(stopped).toBe(true);
    expect(await exited).toBe('SIGTERM');
    expect(isRunning(record)).toBe(false);
  });

  it('leaves alone a process whose command line does not hold the marker', async () => {
    // Prepare
    const child = spawn('sleep', ['30'], { stdio: 'ignore' });
    children.push(child);
    const record = { pid: child.pid ?? -1, marker: 'moto_server' };
    // Act
    const stopped = await stopProcess(record, 'SIGTERM', 1_000);
    // Assess
    expect(stopped).toBe(false);
    expect(isRunning({ pid: record.pid, marker: 'sleep 30' })).toBe(true);
  });

  it('returns false for a process that is not running', async () => {
    // Prepare
    const pid = await deadPid();
    // Act
    const stopped = await stopProcess({ pid, marker: 'true' });
    // Assess
    expect(stopped).toBe(false);
  });
});
