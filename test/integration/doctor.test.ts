import { readFileSync } from 'node:fs';
import { PutBucketNotificationConfigurationCommand } from '@aws-sdk/client-s3';
import { Kafka, logLevel } from 'kafkajs';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { settings } from '#shared/settings.ts';
import { doctorLocal } from '../../local/commands/doctor-local.ts';
import { uniquePrefix } from '../../local/runtime/names.ts';
import type { LocalState } from '../../local/runtime/state.ts';
import { setUpPipeline } from './pipeline.ts';

/**
 * `pulse doctor` offline against the emulators: the canary goes the real way (PutObject, moto's ObjectCreated
 * notification to the file-events queue, s3-trigger behind the SQS event-source emulation, its ledger item),
 * PostgreSQL and Kafka answer with the table and topic. The run's processes are this test process (it runs
 * the event source and s3-trigger), recorded as `local up` records its own.
 */
describe('pulse doctor offline (moto, PostgreSQL, Kafka)', () => {
  let p: Awaited<ReturnType<typeof setUpPipeline>>;
  let state: LocalState;
  const table = `doctor_${Date.now().toString(36)}`;
  const topic = `doctor-${Date.now().toString(36)}`;

  beforeAll(async () => {
    // Prepare: the pipeline's resources, a table and a topic the sources read
    p = await setUpPipeline(inject('motoEndpoint'), uniquePrefix('doctor'));
    const db = new pg.Client({ connectionString: inject('postgresUrl') });
    await db.connect();
    await db.query(`CREATE TABLE ${table} (id bigserial PRIMARY KEY)`);
    await db.end();
    const admin = new Kafka({
      clientId: 'doctor-test',
      brokers: [inject('kafkaBrokers')],
      logLevel: logLevel.NOTHING,
    }).admin();
    await admin.connect();
    await admin.createTopics({ topics: [{ topic, numPartitions: 1 }], waitForLeaders: true });
    await admin.disconnect();
    // This process runs the event source and s3-trigger: it stands for the runtime (and the servers' records).
    const self = {
      pid: process.pid,
      marker: readFileSync('/proc/self/cmdline', 'utf8').split('\0')[0] ?? 'node',
    };
    const r = p.resources;
    state = {
      prefix: p.names.prefix,
      moto: { ...self, port: 0, endpoint: inject('motoEndpoint') },
      postgres: { ...self, port: 0, url: inject('postgresUrl') },
      kafka: { ...self, port: 0, brokers: inject('kafkaBrokers') },
      runtime: { ...self, ready: true, startedAt: new Date().toISOString(), log: '(this test)' },
      resources: {
        bucket: r.bucket,
        kafkaFailuresBucket: r.kafkaFailuresBucket,
        ledgerTable: r.tables.ledger,
        scoresTable: r.tables.scores,
        scoresBucket: r.scoresBucket,
        anomaliesTable: r.tables.anomalies,
        queues: r.queues,
        dbSecretArn: 'unused',
        dbUrl: inject('postgresUrl'),
        dbTable: table,
        topic,
      },
    };
    p.start('fileEvents');
  });
  afterAll(async () => {
    await p?.stopAll();
  });

  it('passes every offline check: the canary reaches the ledger through the notification and s3-trigger', async () => {
    // Act
    const report = await doctorLocal(state, { timeoutMs: 30_000, pollMs: 200 });

    // Assess
    expect(report.checks.map((c) => [c.id, c.status])).toEqual([
      ['offline-run', 'ok'],
      ['resources', 'ok'],
      ['notifications', 'ok'],
      ['dlqs', 'ok'],
      ['database', 'ok'],
      ['kafka', 'ok'],
    ]);
    expect(report.exitCode).toBe(0);
    expect(report.checks.find((c) => c.id === 'notifications')?.summary).toMatch(
      new RegExp(
        `^a canary under ${settings.bucket.incomingPrefix} reached s3-trigger and the ledger in [\\d.]+ s$`,
      ),
    );
    // s3-trigger recorded the canary and ingested nothing of it.
    expect((await p.ledgerItems()).filter((i) => i.key === settings.bucket.canaryKey)).toEqual([]);
  });

  it('reports the canary missing once another tool has replaced the notification configuration', async () => {
    // Prepare
    await p.clients.s3.send(
      new PutBucketNotificationConfigurationCommand({
        Bucket: p.names.bucket,
        NotificationConfiguration: {},
      }),
    );

    // Act
    const report = await doctorLocal(state, { timeoutMs: 3_000, pollMs: 200 });

    // Assess
    const n = report.checks.find((c) => c.id === 'notifications');
    expect(n).toMatchObject({ status: 'problem', summary: 'the canary did not reach the ledger within 3 s' });
    expect(n?.next).toMatch(/notification configuration/);
    expect(report.exitCode).toBe(1);
  });
});
