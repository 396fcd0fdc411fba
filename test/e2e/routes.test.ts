import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { GetObjectCommand, HeadObjectCommand, PutObjectCommand } from '@aws-sdk/client-s3';
import { QueryCommand } from '@aws-sdk/lib-dynamodb';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { AwsClients } from '#shared/clients.ts';
import type { LedgerItem } from '#shared/ledger.ts';
import type { PulseStatus } from '../../local/commands/status.ts';
import { destroyClients, makeClients } from '../../local/runtime/clients.ts';
import type { LocalState } from '../../local/runtime/state.ts';
import { ROUTES_CONFIG } from '../helpers/routes-config.ts';
import { type Cli, cli } from './cli.ts';

/**
 * A non-default configuration offline, as a user gives it (`pulse local up --config FILE`, the object
 * `-c pulse` takes): a second route, `meters/`, whose `;`-separated CSV files name their fields `metric`,
 * `val` and `ts`, and whose files are moved to `archive/` once they succeed. One file there, with rows that
 * quote a `;` and two bad rows: exact counts scored and quarantined, the version moved to the archive, and
 * the ledger recording it; a file the route's include pattern leaves out is SKIPPED with the reason.
 */
describe('routes offline: a ; CSV under a second prefix with its own mapping, archived after success', () => {
  let c: Cli;
  let state: LocalState;
  let clients: AwsClients;
  let bucket: string;
  const dir = mkdtempSync(join(tmpdir(), 'pulse-routes-'));
  const config = ROUTES_CONFIG;
  const ROWS = 60;
  const BAD = [17, 41];
  const csv = [
    'metric;val;ts;site',
    ...Array.from({ length: ROWS }, (_, i) => {
      const row = i + 1;
      const value = BAD.includes(row) ? 'n/a' : String(row * 1.5);
      return `meter-${row % 3};${value};${1_767_225_600 + row};"plant;${row}"`;
    }),
    '',
  ].join('\r\n');
  const ledgerItems = async (key: string): Promise<LedgerItem[]> =>
    ((
      await clients.doc.send(
        new QueryCommand({
          TableName: state.resources?.ledgerTable ?? '',
          KeyConditionExpression: 'pk = :pk',
          ExpressionAttributeValues: { ':pk': `s3://${bucket}/${key}` },
        }),
      )
    ).Items ?? []) as LedgerItem[];

  beforeAll(async () => {
    const configFile = join(dir, 'pulse.json');
    writeFileSync(configFile, JSON.stringify(config));
    c = cli();
    await c.pulse('local', 'up', '--detach', '--any-port', '--config', configFile);
    state = await c.state();
    clients = makeClients(state.moto?.endpoint ?? '');
    bucket = state.resources?.bucket ?? '';
  });

  afterAll(async () => {
    if (clients) destroyClients(clients);
    if (c) await c.pulse('local', 'down', '--wipe');
  });

  it('scores every good row once by the mapping, quarantines the bad ones, archives the version and records it', async () => {
    // Prepare
    const put = await clients.s3.send(
      new PutObjectCommand({ Bucket: bucket, Key: 'meters/2026/readings.csv', Body: csv }),
    );
    await clients.s3.send(
      new PutObjectCommand({ Bucket: bucket, Key: 'meters/2026/notes.json', Body: '[]' }),
    );
    // Act
    const settled = await c.waitForStatus(
      'both files ended and everything scored',
      (s: PulseStatus) =>
        s.files.length === 2 &&
        s.files.every((f) => f.status === 'SUCCESS' || f.status === 'SKIPPED') &&
        s.scored === ROWS - BAD.length &&
        s.queues.signals.visible + s.queues.signals.inFlight === 0,
      180_000,
    );
    // Assess
    expect(settled.scored).toBe(ROWS - BAD.length);
    expect(settled.seriesSamples).toBe(ROWS - BAD.length);
    expect(settled.rejected.s3).toBe(BAD.length);
    const [item] = await ledgerItems('meters/2026/readings.csv');
    expect(item).toMatchObject({
      status: 'SUCCESS',
      records: ROWS - BAD.length,
      rejected: BAD.length,
      afterSuccess: { action: 'archive', target: 'archive/meters/2026/readings.csv', at: expect.any(String) },
    });
    expect(item?.afterSuccess?.error).toBeUndefined();
    const [skipped] = await ledgerItems('meters/2026/notes.json');
    expect(skipped).toMatchObject({
      status: 'SKIPPED',
      errorMessage: 'no route takes meters/2026/notes.json: meters/ includes only meters/**/*.csv',
    });
    // The ingested version was moved: its bytes are in the archive, the version itself is gone.
    const archived = await clients.s3.send(
      new GetObjectCommand({ Bucket: bucket, Key: 'archive/meters/2026/readings.csv' }),
    );
    expect(await archived.Body?.transformToString()).toBe(csv);
    await expect(
      clients.s3.send(
        new HeadObjectCommand({ Bucket: bucket, Key: 'meters/2026/readings.csv', VersionId: put.VersionId }),
      ),
    ).rejects.toMatchObject({ $metadata: { httpStatusCode: 404 } });
    // The signals carry the mapped fields: row 1's name is its `metric`, its value its `val`.
    const score = JSON.parse(
      await c.pulse('scores', '--ref', `s3://${bucket}/meters/2026/readings.csv@${item?.etag}#1`, '--json'),
    );
    expect(JSON.stringify(score)).toContain('"name":"meter-1"');
    expect(JSON.stringify(score)).toContain('"value":1.5');
  });
});
