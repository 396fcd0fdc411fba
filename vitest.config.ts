import { randomBytes } from 'node:crypto';
import { mkdirSync, readdirSync, rmSync, statSync } from 'node:fs';
import { isAbsolute, join, resolve } from 'node:path';
import { defineConfig } from 'vitest/config';

/**
 * Where the functions record their AWS calls during the integration, reliability and end-to-end tests
 * (shared/aws-call-log.ts), for the IAM parity test that runs after them (project `iam`, docs/iam-parity.md):
 * a folder per `vitest run`, unless PULSE_AWS_CALL_LOG names one (to evaluate the calls of an earlier run).
 */
const CALL_LOGS = resolve('.pulse', 'aws-calls');
const callLog = (() => {
  const given = process.env.PULSE_AWS_CALL_LOG;
  if (given) return isAbsolute(given) ? given : resolve(given);
  mkdirSync(CALL_LOGS, { recursive: true });
  // Runs of earlier days are of no use to anyone: keep the folder from growing.
  for (const old of readdirSync(CALL_LOGS)) {
    const path = join(CALL_LOGS, old);
    if (Date.now() - statSync(path).mtimeMs > 86_400_000) rmSync(path, { recursive: true, force: true });
  }
  return join(
    CALL_LOGS,
    `${new Date().toISOString().replace(/[:.]/g, '-')}-${randomBytes(3).toString('hex')}`,
  );
})();
const recording = { PULSE_AWS_CALL_LOG: callLog };

export default defineConfig({
  test: {
    projects: [
      {
        test: {
          name: 'unit',
          include: ['test/unit/**/*.test.ts', 'test/infra/**/*.test.ts'],
          setupFiles: ['test/setup/matchers.ts'],
          testTimeout: 60_000,
          // Infra tests synthesize stacks in hooks; with every file synthesizing in parallel, the first
          // synthesis (loading aws-cdk-lib) can take longer than the 10 s default.
          hookTimeout: 60_000,
        },
      },
      {
        test: {
          name: 'integration',
          include: ['test/integration/**/*.test.ts'],
          setupFiles: ['test/setup/matchers.ts'],
          globalSetup: ['test/setup/emulators.ts', 'test/setup/postgres.ts', 'test/setup/kafka.ts'],
          testTimeout: 120_000,
          hookTimeout: 300_000,
          env: recording,
        },
      },
      {
        test: {
          // Faults, duplicates, crashes and hostile input (npm run test:reliability; docs/reliability.md):
          // against moto, PostgreSQL and Kafka from the global setup, and property-based parser tests.
          name: 'reliability',
          include: ['test/reliability/**/*.test.ts'],
          setupFiles: ['test/setup/matchers.ts'],
          globalSetup: ['test/setup/emulators.ts', 'test/setup/postgres.ts', 'test/setup/kafka.ts'],
          testTimeout: 300_000,
          hookTimeout: 300_000,
          env: recording,
        },
      },
      {
        test: {
          // The pulse CLI end to end: it installs and starts its own emulators (see test/e2e/cli.ts).
          name: 'e2e',
          include: ['test/e2e/**/*.test.ts'],
          setupFiles: ['test/setup/matchers.ts'],
          testTimeout: 480_000,
          hookTimeout: 300_000,
          env: recording,
        },
      },
      {
        test: {
          // The IAM parity test (docs/iam-parity.md): every AWS call the projects above recorded, evaluated
          // against its function's role in the synthesized template. After them (a later group).
          name: 'iam',
          include: ['test/iam/**/*.test.ts'],
          testTimeout: 300_000,
          hookTimeout: 300_000,
          env: recording,
          sequence: { groupOrder: 1 },
        },
      },
    ],
  },
});
