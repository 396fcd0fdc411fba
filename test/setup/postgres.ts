import type { TestProject } from 'vitest/node';
import { startPostgres, waitForPostgres } from '../../local/emulators/postgres.ts';

declare module 'vitest' {
  export interface ProvidedContext {
    /** `postgres://postgres@127.0.0.1:<port>/postgres`: a private PostgreSQL server for the integration run. */
    postgresUrl: string;
  }
}

/**
 * Global setup of the `integration` project: one private PostgreSQL 15 server (fresh data folder,
 * free port, trust auth on 127.0.0.1) for the whole run; test files keep apart by creating their own
 * database. Installs PostgreSQL (scripts/postgres.sh install) when it is missing, and fails loudly when
 * that is impossible: the db-poller's integration tests never pass without a real database.
 *
 * `PULSE_POSTGRES_URL=postgres://postgres@127.0.0.1:55432/postgres` uses a server already running
 * instead (for example one from `bash scripts/postgres.sh start`); its user must be allowed to CREATE DATABASE.
 */
export default async function setup(project: TestProject): Promise<() => Promise<void>> {
  const external = process.env.PULSE_POSTGRES_URL;
  if (external) {
    await waitForPostgres(external, 5000).catch((err: unknown) => {
      throw new Error(
        `PULSE_POSTGRES_URL is ${external}, but no PostgreSQL server answers there. ` +
          'Start one (bash scripts/postgres.sh start) or unset PULSE_POSTGRES_URL to let the tests start their own.',
        { cause: err },
      );
    });
    project.provide('postgresUrl', external);
    return async () => {};
  }
  let server: Awaited<ReturnType<typeof startPostgres>>;
  try {
    server = await startPostgres();
  } catch (err) {
    throw new Error(
      `The integration tests need PostgreSQL 15, and it could not be started: ${(err as Error).message}`,
      { cause: err },
    );
  }
  project.provide('postgresUrl', server.url);
  return async () => {
    await server.stop();
  };
}
