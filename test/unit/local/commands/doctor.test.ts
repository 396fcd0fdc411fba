import { execFile } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, describe, expect, it } from 'vitest';
import { type DoctorCheck, doctorExitCode, doctorReport } from '../../../../local/commands/doctor.ts';
import { kafkaProblemNext } from '../../../../local/commands/doctor-kafka.ts';
import { offlineRunCheck } from '../../../../local/commands/doctor-local.ts';
import { doctorText } from '../../../../local/commands/doctor-text.ts';
import { REPO_ROOT } from '../../../../local/emulators/supervisor.ts';

const run = promisify(execFile);
const check = (id: string, status: DoctorCheck['status'], next?: string): DoctorCheck => ({
  id,
  title: id,
  status,
  summary: `${id} is ${status}`,
  ...(next ? { next } : {}),
});

describe('doctorExitCode', () => {
  it.each([
    ['every check ok', ['ok', 'ok'], 0],
    ['a source not configured', ['ok', 'not-configured'], 0],
    ['a problem', ['ok', 'problem', 'cannot-check'], 1],
    ['a check that could not be made, and no problem', ['ok', 'cannot-check'], 2],
  ] as const)('is right for %s', (_what, statuses, expected) => {
    // Act
    const code = doctorExitCode(statuses.map((s, i) => check(`c${i}`, s)));
    // Assess
    expect(code).toBe(expected);
  });
});

describe('doctorText', () => {
  it('marks each check, prints what to do under a problem, and keeps control characters from the terminal', () => {
    // Prepare
    const report = doctorReport('PulseIngest', [
      check('stack', 'ok'),
      {
        ...check('kafka', 'problem', 'Fix the security group.'),
        summary: 'PROBLEM: \u001b[31mConnection error',
      },
      check('database', 'not-configured'),
    ]);

    // Act
    const text = doctorText(report);

    // Assess
    expect(text.split('\n')).toEqual([
      'pulse doctor: PulseIngest',
      'ok      stack: stack is ok',
      'PROBLEM kafka: PROBLEM: <U+001B>[31mConnection error',
      '        → Fix the security group.',
      '-       database: database is not-configured',
      '1 problem(s) found.',
    ]);
  });
});

describe('kafkaProblemNext', () => {
  it.each([
    ['PROBLEM: Connection error. Please check your event source connection configuration.', /broker ports/],
    ['PROBLEM: Cluster failed to authorize Lambda.', /ACLs/],
    ['PROBLEM: SASL authentication failed.', /username or password/],
    ['PROBLEM: Server failed to authenticate Lambda.', /client certificate/],
    ['PROBLEM: Lambda failed to authenticate server.', /root CA/],
    ['PROBLEM: Provided certificate or private key is invalid.', /PEM/],
    ['PROBLEM: Something new.', /AWS's words/],
  ])('gives words for %s', (result, words) => {
    // Act
    const next = kafkaProblemNext(result);
    // Assess
    expect(next).toMatch(words);
  });

  it('gives none for a mapping that reports no problem', () => {
    // Act
    const results = ['OK', 'No records processed', undefined].map(kafkaProblemNext);
    // Assess
    expect(results).toEqual([undefined, undefined, undefined]);
  });
});

describe('offlineRunCheck', () => {
  it('cannot check when the offline run is not up', () => {
    // Act
    const c = offlineRunCheck(undefined);
    // Assess
    expect(c).toMatchObject({
      id: 'offline-run',
      status: 'cannot-check',
      next: 'Start it: npm run pulse -- local up --detach',
    });
  });
});

describe('pulse doctor (CLI)', () => {
  const home = mkdtempSync(join(tmpdir(), 'pulse-doctor-'));
  afterAll(() => rmSync(home, { recursive: true, force: true }));

  it('prints JSON and exits 2 when there is no offline run to check', async () => {
    // Act
    const out = await run('node', ['bin/pulse.js', '--home', home, 'doctor', '--json'], {
      cwd: REPO_ROOT,
    }).then(
      () => {
        throw new Error('pulse doctor exited 0');
      },
      (err: { code: number; stdout: string }) => err,
    );

    // Assess
    expect(out.code).toBe(2);
    expect(JSON.parse(out.stdout)).toEqual({
      exitCode: 2,
      target: 'local',
      checks: [
        {
          id: 'offline-run',
          title: 'Offline run',
          status: 'cannot-check',
          summary: 'the offline pipeline is not up',
          next: 'Start it: npm run pulse -- local up --detach',
        },
      ],
    });
  });

  it('with --stack and no AWS region, says so and exits 2 without calling AWS', async () => {
    // Prepare: no region and no credentials from anywhere (environment, config files)
    const env: NodeJS.ProcessEnv = {
      ...process.env,
      AWS_CONFIG_FILE: '/dev/null',
      AWS_SHARED_CREDENTIALS_FILE: '/dev/null',
    };
    for (const k of [
      'AWS_REGION',
      'AWS_DEFAULT_REGION',
      'AWS_PROFILE',
      'AWS_ACCESS_KEY_ID',
      'AWS_SECRET_ACCESS_KEY',
    ])
      delete env[k];

    // Act
    const out = await run('node', ['bin/pulse.js', 'doctor', '--stack', 'PulseIngest', '--json'], {
      cwd: REPO_ROOT,
      env,
    }).then(
      () => {
        throw new Error('pulse doctor exited 0');
      },
      (err: { code: number; stdout: string }) => err,
    );

    // Assess
    const report = JSON.parse(out.stdout) as {
      exitCode: number;
      checks: { id: string; status: string; summary: string }[];
    };
    expect(out.code).toBe(2);
    expect(report.exitCode).toBe(2);
    expect(report.checks[0]).toMatchObject({
      id: 'credentials',
      status: 'cannot-check',
      summary: 'no AWS region: Region is missing',
    });
    expect(report.checks.map((c) => c.id)).toEqual([
      'credentials',
      'stack',
      'outputs',
      'notifications',
      'event-sources',
      'dlqs',
      'database',
      'kafka',
    ]);
  });

  it('refuses a timeout that is not a positive number of seconds', async () => {
    // Act
    const out = await run('node', ['bin/pulse.js', '--home', home, 'doctor', '--timeout', '0'], {
      cwd: REPO_ROOT,
    }).then(
      () => ({ code: 0, stderr: '' }),
      (err: { code: number; stderr: string }) => err,
    );

    // Assess
    expect(out.code).toBe(1);
    expect(out.stderr).toMatch(/--timeout must be a positive integer/);
  });
});
