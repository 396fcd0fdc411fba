import { once } from 'node:events';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { type AddressInfo, connect, createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it, vi } from 'vitest';
import {
  freePort,
  isRunning,
  logTail,
  PortInUseError,
  type ServerSpec,
  startOnAPort,
  supervise,
} from '../../../../local/emulators/supervisor.ts';

class FakeUnavailableError extends Error {
  constructor(message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = 'FakeUnavailableError';
  }
}

/**
 * A stand-in server (a Node process): `serve` listens on the port, `busy` exits as a server whose port is
 * taken, `crash` exits with another complaint, `silent` runs and never listens, `stubborn` listens and
 * ignores SIGTERM.
 */
const SERVER = `
const [mode, port] = process.argv.slice(1);
if (mode === 'busy') { console.log('Error: listen EADDRINUSE: address already in use 127.0.0.1:' + port); process.exit(1); }
if (mode === 'crash') { console.log('FATAL: configuration file has an error'); process.exit(3); }
if (mode === 'stubborn') process.on('SIGTERM', () => console.log('ignoring SIGTERM'));
else process.on('SIGTERM', () => { console.log('stopping'); process.exit(0); });
if (mode === 'serve' || mode === 'stubborn') {
  require('node:net').createServer((s) => s.end()).listen(Number(port), '127.0.0.1', () => console.log('listening'));
} else setInterval(() => {}, 1000);
`;

const answers = (port: number) => () =>
  new Promise<boolean>((resolve) => {
    const socket = connect({ host: '127.0.0.1', port });
    socket.once('connect', () => {
      socket.destroy();
      resolve(true);
    });
    socket.once('error', () => resolve(false));
  });

describe('supervise (spawn, wait until ready, stop by pid)', () => {
  const dirs: string[] = [];
  const specFactory = (mode: string, port: number, over: Partial<ServerSpec> = {}): ServerSpec => {
    const dir = mkdtempSync(join(tmpdir(), 'pulse-supervisor-'));
    dirs.push(dir);
    return {
      name: 'fake server',
      command: process.execPath,
      args: ['-e', SERVER, mode, String(port)],
      cwd: dir,
      logFile: join(dir, 'server.log'),
      detached: false,
      isReady: answers(port),
      pollMs: 20,
      readyTimeoutMs: 10_000,
      stopSignal: 'SIGTERM',
      stopGraceMs: 5000,
      portInUse: /address already in use/i,
      unavailable: (message, options) => new FakeUnavailableError(message, options),
      spawnFailed: (err) => `could not run the fake server: ${err.message}`,
      notReady: (tail) => `the fake server did not answer in time:\n${tail}`,
      ...over,
    };
  };
  afterEach(() => {
    for (const dir of dirs.splice(0)) rmSync(dir, { recursive: true, force: true });
  });

  it('resolves once the server answers, and stop() ends that process and then cleans up, once', async () => {
    // Prepare
    const port = await freePort();
    const cleanUp = vi.fn();
    const spec = specFactory('serve', port, { cleanUp });
    // Act
    const server = await supervise(spec);
    const answeredWhenStarted = await spec.isReady();
    const runningWhenStarted = isRunning({ pid: server.pid, marker: SERVER.slice(0, 40) });
    await Promise.all([server.stop(), server.stop()]);
    // Assess
    expect(answeredWhenStarted).toBe(true);
    expect(runningWhenStarted).toBe(true);
    expect(isRunning({ pid: server.pid, marker: SERVER.slice(0, 40) })).toBe(false);
    expect(cleanUp).toHaveBeenCalledTimes(1);
    expect(cleanUp).toHaveBeenCalledWith(false);
    expect(logTail(spec.logFile)).toBe('listening\nstopping');
  });

  it('gives its pid as soon as it is spawned, before the first readiness check, to be recorded', async () => {
    // Prepare
    const port = await freePort();
    const told: number[] = [];
    const toldBeforeFirstCheck: boolean[] = [];
    const spec = specFactory('serve', port);
    // Act
    const server = await supervise({
      ...spec,
      onSpawn: (pid) => told.push(pid),
      isReady: () => {
        toldBeforeFirstCheck.push(told.length === 1);
        return spec.isReady();
      },
    });
    await server.stop();
    // Assess
    expect(told).toEqual([server.pid]);
    expect(toldBeforeFirstCheck[0]).toBe(true);
  });

  it('rejects with PortInUseError when the server exits saying its port is taken', async () => {
    // Prepare
    const spec = specFactory('busy', await freePort());
    // Act
    const started = supervise(spec);
    // Assess
    await expect(started).rejects.toThrow(PortInUseError);
    await expect(started).rejects.toThrow(
      /fake server exited during start-up \(code 1\)[\s\S]*address already in use/,
    );
  });

  it('refuses a port another process listens on without spawning anything: that one would answer in its stead', async () => {
    // Prepare
    const holder = createServer().listen(0, '127.0.0.1');
    await once(holder, 'listening');
    const port = (holder.address() as AddressInfo).port;
    const spec = specFactory('serve', port, { ports: [port] });
    // Act
    const started = supervise(spec);
    // Assess
    await expect(started).rejects.toThrow(PortInUseError);
    await expect(started).rejects.toThrow(
      `fake server cannot listen on 127.0.0.1:${port}: address already in use`,
    );
    expect(existsSync(spec.logFile)).toBe(false);
    holder.close();
  });

  it("rejects with the server's own error, naming its exit code and its log's end, when it exits otherwise", async () => {
    // Prepare
    const spec = specFactory('crash', await freePort());
    // Act
    const started = supervise(spec);
    // Assess
    await expect(started).rejects.toThrow(FakeUnavailableError);
    await expect(started).rejects.toThrow(
      /fake server exited during start-up \(code 3\); .*server\.log:\nFATAL: configuration file has an error/,
    );
  });

  it("rejects with the server's own error when its command cannot be run", async () => {
    // Prepare
    const spec = specFactory('serve', await freePort(), { command: join(tmpdir(), 'no-such-server') });
    // Act
    const started = supervise(spec);
    // Assess
    await expect(started).rejects.toThrow(FakeUnavailableError);
    await expect(started).rejects.toThrow(/could not run the fake server: spawn .*no-such-server ENOENT/);
  });

  it('stops a server that does not answer in time and cleans up after a failed start, its log in the error', async () => {
    // Prepare
    const cleanUp = vi.fn();
    const spec = specFactory('silent', await freePort(), { readyTimeoutMs: 300, cleanUp });
    // Act
    const started = supervise(spec);
    // Assess
    await expect(started).rejects.toThrow(FakeUnavailableError);
    await expect(started).rejects.toThrow(/did not answer in time:\n\(no log\)|did not answer in time:\n$/);
    expect(cleanUp).toHaveBeenCalledWith(true);
  });

  it('kills a server that ignores the stop signal once the grace period is over', async () => {
    // Prepare
    const port = await freePort();
    const spec = specFactory('stubborn', port, { stopGraceMs: 300 });
    const server = await supervise(spec);
    // Act
    const began = Date.now();
    await server.stop();
    // Assess
    expect(Date.now() - began).toBeGreaterThanOrEqual(250);
    expect(await spec.isReady()).toBe(false);
    expect(logTail(spec.logFile)).toContain('ignoring SIGTERM');
  });
});

describe('startOnAPort', () => {
  const unavailable = (message: string, options?: ErrorOptions) => new FakeUnavailableError(message, options);

  it('tries another free port when the first one was taken', async () => {
    // Prepare
    const start = vi
      .fn<(port: number) => Promise<number>>()
      .mockRejectedValueOnce(new PortInUseError('address already in use'))
      .mockImplementation(async (port) => port);
    // Act
    const port = await startOnAPort(undefined, start, unavailable);
    // Assess
    expect(start).toHaveBeenCalledTimes(2);
    expect(port).toBe(start.mock.calls[1]?.[0]);
  });

  it("gives the server's own error, caused by PortInUseError, when the port it was given is taken", async () => {
    // Prepare
    const start = vi.fn().mockRejectedValue(new PortInUseError('address already in use'));
    // Act
    const started = startOnAPort(5999, start, unavailable);
    // Assess
    await expect(started).rejects.toThrow(FakeUnavailableError);
    await expect(started).rejects.toHaveProperty('cause', expect.any(PortInUseError));
    expect(start).toHaveBeenCalledExactlyOnceWith(5999);
  });

  it('tries no other port after any other failure', async () => {
    // Prepare
    const start = vi.fn().mockRejectedValue(new FakeUnavailableError('initdb failed'));
    // Act
    const started = startOnAPort(undefined, start, unavailable);
    // Assess
    await expect(started).rejects.toThrow('initdb failed');
    expect(start).toHaveBeenCalledTimes(1);
  });
});

describe('logTail', () => {
  it('says there is no log when the file is missing', () => {
    // Act / Assess
    expect(existsSync('/nonexistent/server.log')).toBe(false);
    expect(logTail('/nonexistent/server.log')).toBe('(no log)');
  });
});
