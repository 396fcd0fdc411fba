import { type ChildProcess, execFile, spawn } from 'node:child_process';
import {
  chmodSync,
  cpSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readFileSync,
  rmSync,
  symlinkSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { isKafkaReady } from '../../local/emulators/kafka.ts';
import { isMotoReady } from '../../local/emulators/moto.ts';
import { isPostgresReady } from '../../local/emulators/postgres.ts';
import { freePort, isPortFree, isRunning, REPO_ROOT } from '../../local/emulators/supervisor.ts';

/**
 * `bash scripts/emulators.sh`, `postgres.sh` and `kafka.sh` `start|stop|status`, thin wrappers over the
 * TypeScript supervisor (local/emulators/cli.ts), run as a person runs them. In a copy of the scripts and
 * sources, so that their pid files and data never meet the repository's own servers.
 */

interface Run {
  readonly code: number;
  readonly stdout: string;
  readonly stderr: string;
}

let root = '';
const run = (script: string, ...args: string[]): Promise<Run> =>
  new Promise((resolve) => {
    execFile('bash', [join(root, 'scripts', script), ...args], { cwd: root }, (err, stdout, stderr) => {
      const code = err ? (typeof err.code === 'number' ? err.code : 1) : 0;
      resolve({ code, stdout, stderr });
    });
  });

beforeAll(() => {
  root = mkdtempSync(join(tmpdir(), 'pulse-scripts-'));
  // As root, PostgreSQL runs as the postgres user, which must reach its folder.
  chmodSync(root, 0o755);
  for (const entry of ['scripts', 'bin', 'local', 'package.json']) {
    cpSync(join(REPO_ROOT, entry), join(root, entry), { recursive: true });
  }
  symlinkSync(join(REPO_ROOT, 'node_modules'), join(root, 'node_modules'));
  symlinkSync(join(REPO_ROOT, '.venv'), join(root, '.venv'));
  // Kafka's jars, installed by the global setup; the broker's storage and configuration stay in the copy.
  mkdirSync(join(root, '.pulse', 'kafka'), { recursive: true });
  symlinkSync(join(REPO_ROOT, '.pulse', 'kafka', 'lib'), join(root, '.pulse', 'kafka', 'lib'));
});

afterAll(async () => {
  await run('emulators.sh', 'stop');
  await run('postgres.sh', 'stop');
  await run('kafka.sh', 'stop');
  rmSync(root, { recursive: true, force: true });
});

describe('bash scripts/emulators.sh start|stop|status', () => {
  it('starts moto once on the port asked for, reports it, and stops exactly that server', async () => {
    // Prepare
    const port = await freePort();
    const endpoint = `http://127.0.0.1:${port}`;
    // Act
    const before = await run('emulators.sh', 'status');
    const started = await run('emulators.sh', 'start', String(port));
    const pid = Number(readFileSync(join(root, '.pulse', 'run', 'moto.pid'), 'utf8'));
    const answered = await isMotoReady(endpoint);
    const again = await run('emulators.sh', 'start', String(port));
    const status = await run('emulators.sh', 'status');
    const stopped = await run('emulators.sh', 'stop');
    const after = await run('emulators.sh', 'status');
    // Assess
    expect(before).toMatchObject({ code: 1, stdout: 'emulators: moto 5.2.5 installed, not running\n' });
    expect(started.code).toBe(0);
    expect(started.stdout).toMatch(
      new RegExp(
        `^emulators: moto running: pid ${pid}, ${endpoint} \\(log: .pulse/log/moto.log, ready in \\d+s\\)\n$`,
      ),
    );
    expect(answered).toBe(true);
    expect(again).toMatchObject({
      code: 0,
      stdout: `emulators: moto already running: pid ${pid}, ${endpoint}\n`,
    });
    expect(status).toMatchObject({
      code: 0,
      stdout: `emulators: moto 5.2.5 running: pid ${pid}, ${endpoint}\n`,
    });
    expect(stopped).toMatchObject({ code: 0, stdout: `emulators: moto stopped (pid ${pid})\n` });
    expect(isRunning({ pid, marker: 'moto_server' })).toBe(false);
    expect(await isMotoReady(endpoint)).toBe(false);
    expect(after.code).toBe(1);
    expect(existsSync(join(root, '.pulse', 'run', 'moto.pid'))).toBe(false);
  });

  it('refuses a port another process holds, and stops no process but its own', async () => {
    // Prepare
    const port = await freePort();
    const other: ChildProcess = spawn('sleep', ['30']);
    mkdirSync(join(root, '.pulse', 'run'), { recursive: true });
    writeFileSync(join(root, '.pulse', 'run', 'moto.pid'), `${other.pid}\n`);
    const holder = spawn(process.execPath, [
      '-e',
      `require('node:net').createServer().listen(${port}, '127.0.0.1', () => console.log('up'))`,
    ]);
    await new Promise((resolve) => holder.stdout?.once('data', resolve));
    // Act
    const refused = await run('emulators.sh', 'start', String(port));
    const stopped = await run('emulators.sh', 'stop');
    // Assess
    expect(refused.code).toBe(1);
    expect(refused.stderr).toBe(
      `emulators: error: port ${port} on 127.0.0.1 is already in use by another process. Choose another: bash scripts/emulators.sh start PORT\n`,
    );
    expect(stopped).toMatchObject({
      code: 0,
      stdout: 'emulators: moto not running (no live server in .pulse/run/moto.pid)\n',
    });
    expect(other.exitCode).toBeNull();
    expect(other.signalCode).toBeNull();
    other.kill();
    holder.kill();
  });
});

describe('bash scripts/postgres.sh start|stop|status', () => {
  it('installs and starts a server on the port asked for, reports it, and stops it', async () => {
    // Prepare
    const port = await freePort();
    const url = `postgres://postgres@127.0.0.1:${port}/postgres`;
    // Act
    const started = await run('postgres.sh', 'start', String(port));
    const answered = await isPostgresReady(url);
    const again = await run('postgres.sh', 'start');
    const status = await run('postgres.sh', 'status');
    const stopped = await run('postgres.sh', 'stop');
    const after = await run('postgres.sh', 'status');
    // Assess
    expect(started.code).toBe(0);
    const pid = /running \(pid (\d+)\)/.exec(started.stdout)?.[1];
    expect(started.stdout).toMatch(
      new RegExp(
        `^postgres: initdb .*/\\.pulse/postgres/data\npostgres: running \\(pid ${pid}\\) at ${url}\n$`,
      ),
    );
    expect(answered).toBe(true);
    expect(again).toMatchObject({
      code: 0,
      stdout: `postgres: already running (pid ${pid}, port ${port})\n`,
    });
    expect(status).toMatchObject({ code: 0, stdout: `postgres: running (pid ${pid}) at ${url}\n` });
    expect(stopped).toMatchObject({ code: 0, stdout: `postgres: stopped (pid ${pid})\n` });
    expect(await isPostgresReady(url)).toBe(false);
    expect(after).toMatchObject({ code: 1, stdout: 'postgres: not running\n' });
  });
});

describe('bash scripts/kafka.sh start|stop|status', () => {
  it('starts a broker on the port asked for (its controller on the next), reports it, and stops exactly that broker', async () => {
    // Prepare
    let port = await freePort();
    while (!(await isPortFree(port + 1))) port = await freePort();
    const brokers = `127.0.0.1:${port}`;
    // Act
    const before = await run('kafka.sh', 'status');
    const started = await run('kafka.sh', 'start', String(port));
    const pid = Number(readFileSync(join(root, '.pulse', 'run', 'kafka.pid'), 'utf8'));
    const answered = await isKafkaReady(brokers);
    const again = await run('kafka.sh', 'start', String(port + 2));
    const status = await run('kafka.sh', 'status');
    const stopped = await run('kafka.sh', 'stop');
    const after = await run('kafka.sh', 'status');
    // Assess
    expect(before).toMatchObject({ code: 1, stdout: 'kafka: Kafka 3.9.1 installed, not running\n' });
    expect(started.code).toBe(0);
    expect(started.stdout).toMatch(
      new RegExp(
        `^kafka: formatting storage .*/\\.pulse/kafka/data \\(cluster id [\\w-]{22}\\)\nkafka: running: pid ${pid}, bootstrap ${brokers} \\(log: .pulse/log/kafka.log, ready in \\d+s\\)\n$`,
      ),
    );
    expect(answered).toBe(true);
    expect(again).toMatchObject({
      code: 0,
      stdout:
        `kafka: already running: pid ${pid}, bootstrap ${brokers}\n` +
        `kafka: (not starting a second one on port ${port + 2}: run 'bash scripts/kafka.sh stop' first)\n`,
    });
    expect(status).toMatchObject({
      code: 0,
      stdout: `kafka: Kafka 3.9.1 running: pid ${pid}, bootstrap ${brokers}\n`,
    });
    expect(stopped).toMatchObject({ code: 0, stdout: `kafka: stopped (pid ${pid})\n` });
    expect(isRunning({ pid, marker: '-Dpulse.kafka=' })).toBe(false);
    expect(after.code).toBe(1);
  });
});
