/**
 * A db-poller in its own process for crash tests: one poll (mark mode) with the real logic, clients
 * and configuration (from the environment, as in Lambda), which kills itself with SIGKILL at the
 * moment it is about to mark its claimed rows processed: after the send, before the commit. Nothing
 * of the transaction survives but what the database does with a vanished client.
 */
import { SecretsManagerClient } from '@aws-sdk/client-secrets-manager';
import { createClients } from '#shared/clients.ts';
import { loadDbPollerConfig } from '#shared/config.ts';
import { createObservability } from '#shared/observability.ts';
import { createDbPool, readDbSecret } from '../../../functions/db-poller/db.ts';
import { type DbPool, poll } from '../../../functions/db-poller/poller.ts';

const config = loadDbPollerConfig();
const creds = await readDbSecret(new SecretsManagerClient({}), config.dbSecretArn);
const pool = createDbPool(creds, { ssl: config.dbSsl });
const dying: DbPool = {
  query: (text, values) => pool.query(text, values),
  async connect() {
    const session = await pool.connect();
    return {
      query(text: string, values?: unknown[]) {
        if (/^\s*UPDATE\b/i.test(text)) process.kill(process.pid, 'SIGKILL');
        return session.query(text, values);
      },
      release: (err?: Error | boolean) => session.release(err),
    };
  },
};
const { logger, metrics } = createObservability('db-poller');
process.stdout.write('ready\n');
await poll({
  db: dying,
  ...createClients(config, 'db-poller'),
  logger,
  metrics,
  config,
  remainingTimeMs: () => 60_000,
});
process.stdout.write('finished without dying\n');
