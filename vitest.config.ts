import { defineConfig } from 'vitest/config';

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
        },
      },
    ],
  },
});
