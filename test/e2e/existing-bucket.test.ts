import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { CreateBucketCommand, PutBucketVersioningCommand, PutObjectCommand } from '@aws-sdk/client-s3';
import { QueryCommand } from '@aws-sdk/lib-dynamodb';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { AwsClients } from '#shared/clients.ts';
import type { LedgerItem } from '#shared/ledger.ts';
import type { PulseStatus } from '../../local/commands/status.ts';
import { destroyClients, makeClients } from '../../local/runtime/clients.ts';
import type { LocalState } from '../../local/runtime/state.ts';
import { EXISTING_BUCKET } from '../helpers/iam/template.ts';
import { type Cli, cli } from './cli.ts';

/**
 * A bucket the user already has, offline: created outside the pipeline (in the run's moto), then named by
 * `pulse local up --config FILE` (`existingBuckets`, the `-c existingBuckets` JSON, S3 → SQS notifications)
 * with a route of its own mapping `metric,val,ts`. The runtime, already running, is started again with the
 * new configuration; a file under the bucket's prefix is scored with exact counts, and its ledger item names
 * the user's bucket. The bucket is named as the IAM parity template's existing bucket, so the s3-trigger's
 * reads of it are held to the grants the stack gives.
 */
describe('an existing bucket offline: local up --config names it', () => {
  let c: Cli;
  let state: LocalState;
  let clients: AwsClients;
  let userBucket: string;
  const dir = mkdtempSync(join(tmpdir(), 'pulse-existing-'));
  const ROWS = 40;
  const BAD = [7, 33];
  const csv = [
    'metric,val,ts',
    ...Array.from({ length: ROWS }, (_, i) => {
      const row = i + 1;
      return `meter-${row % 4},${BAD.includes(row) ? 'n/a' : String(row * 2)},${1_767_225_600 + row}`;
    }),
    '',
  ].join('\n');

  beforeAll(async () => {
    c = cli();
    await c.pulse('local', 'up', '--detach', '--any-port');
    state = await c.state();
    clients = makeClients(state.moto?.endpoint ?? '');
    // The user's bucket, made outside the pipeline, versioned.
    userBucket = EXISTING_BUCKET.nameFor(state.prefix);
    await clients.s3.send(new CreateBucketCommand({ Bucket: userBucket }));
    await clients.s3.send(
      new PutBucketVersioningCommand({ Bucket: userBucket, VersioningConfiguration: { Status: 'Enabled' } }),
    );
    const configFile = join(dir, 'pulse.json');
    writeFileSync(
      configFile,
      JSON.stringify({
        s3: {
          routes: [
            { prefix: 'incoming/' },
            {
              prefix: 'sqs/',
              bucket: userBucket,
              mapping: { name: 'metric', value: 'val', timestamp: 'ts' },
            },
          ],
        },
        existingBuckets: [{ bucket: userBucket, prefixes: ['sqs/'], notifications: 's3-sqs' }],
      }),
    );
    await c.pulse('local', 'up', '--detach', '--any-port', '--config', configFile);
  });

  afterAll(async () => {
    if (clients) destroyClients(clients);
    if (c) await c.pulse('local', 'down', '--wipe');
  });

  it('scores every good row of a file under its prefix once, by the route of that bucket', async () => {
    // Prepare
    const key = 'sqs/2026/meters.csv';
    // Act
    await clients.s3.send(new PutObjectCommand({ Bucket: userBucket, Key: key, Body: csv }));
    const settled = await c.waitForStatus(
      'the file ended and everything scored',
      (s: PulseStatus) =>
        s.files.some((f) => f.status === 'SUCCESS') &&
        s.scored === ROWS - BAD.length &&
        s.queues.signals.visible + s.queues.signals.inFlight === 0,
      180_000,
    );
    // Assess
    expect(settled.scored).toBe(ROWS - BAD.length);
    expect(settled.rejected.s3).toBe(BAD.length);
    const items = ((
      await clients.doc.send(
        new QueryCommand({
          TableName: state.resources?.ledgerTable ?? '',
          KeyConditionExpression: 'pk = :pk',
          ExpressionAttributeValues: { ':pk': `s3://${userBucket}/${key}` },
        }),
      )
    ).Items ?? []) as LedgerItem[];
    expect(items).toHaveLength(1);
    expect(items[0]).toMatchObject({ status: 'SUCCESS', records: ROWS - BAD.length, rejected: BAD.length });
  });
});
