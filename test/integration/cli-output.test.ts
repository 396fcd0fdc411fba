import { execFile } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { SendMessageCommand } from '@aws-sdk/client-sqs';
import { PutCommand } from '@aws-sdk/lib-dynamodb';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { listDlq, redriveDlq } from '../../local/commands/operations.ts';
import { localTargetAt } from '../../local/commands/target.ts';
import { REPO_ROOT } from '../../local/emulators/supervisor.ts';
import { makeClients } from '../../local/runtime/clients.ts';
import { resourceNames, uniquePrefix } from '../../local/runtime/names.ts';
import { createResources } from '../../local/runtime/resources.ts';
import { type LocalState, writeState } from '../../local/runtime/state.ts';

const run = promisify(execFile);

/** What a terminal may act on, or what hides or reorders text: none may reach it from the data. */
const UNSAFE =
  // biome-ignore lint/suspicious/noControlCharactersInRegex: finding control characters is the point.
  /[\u0000-\u0009\u000b-\u001f\u007f-\u009f\u061c\u200e\u200f\u2028\u2029\u202a-\u202e\u2066-\u2069]/u;

/**
 * The `pulse` CLI, in a child process as an operator runs it, listing a ledger whose object keys and error
 * messages hold an escape sequence (ESC and the C1 CSI), a line break and a bidirectional override, and a
 * DLQ message body with a C1 control and an override (SQS refuses ESC in a body): its tables and JSON carry
 * each as a visible escape, and nothing a terminal would act on.
 */
describe('pulse CLI output of keys and reasons from outside', () => {
  const home = mkdtempSync(join(tmpdir(), 'pulse-cli-output-'));
  const hostileKey = 'incoming/\u001b]0;owned\u0007\u001b[2J\u009b31mred\nfake-row\u202egpj.csv';
  const hostileReason = 'bad row near "\u001b[31m" \u009b1m';

  beforeAll(async () => {
    const endpoint = inject('motoEndpoint');
    const clients = makeClients(endpoint);
    const names = resourceNames(uniquePrefix('cliout'));
    const resources = await createResources(clients, names);
    const state: LocalState = {
      prefix: names.prefix,
      moto: { pid: 0, marker: 'none', port: Number(new URL(endpoint).port), endpoint },
      resources: {
        bucket: names.bucket,
        kafkaFailuresBucket: resources.kafkaFailuresBucket,
        ledgerTable: names.ledgerTable,
        scoresTable: names.scoresTable,
        scoresBucket: resources.scoresBucket,
        anomaliesTable: names.anomaliesTable,
        queues: resources.queues,
        dbSecretArn: '',
        dbUrl: '',
        dbTable: 'signals',
        topic: 'none',
      },
    };
    writeState(home, state);
    const at = new Date().toISOString();
    await clients.doc.send(
      new PutCommand({
        TableName: names.ledgerTable,
        Item: {
          pk: `s3://${names.bucket}/${hostileKey}`,
          sk: 'etag1',
          bucket: names.bucket,
          key: hostileKey,
          etag: 'etag1',
          status: 'FAILED',
          attempts: 1,
          records: 0,
          rejected: 0,
          bytesRead: 0,
          errorType: 'MalformedFileError',
          errorMessage: hostileReason,
          firstErrors: [hostileReason],
          createdAt: at,
          updatedAt: at,
        },
      }),
    );
    await clients.sqs.send(
      new SendMessageCommand({
        QueueUrl: resources.queues.fileEventsDlq.url,
        MessageBody: 'a body with \u009b2J and \u202e reversed',
      }),
    );
    clients.s3.destroy();
    clients.sqs.destroy();
    clients.ddb.destroy();
  });
  afterAll(() => rmSync(home, { recursive: true, force: true }));

  const pulse = async (...args: string[]) =>
    (
      await run(process.execPath, [join(REPO_ROOT, 'bin', 'pulse.js'), '--home', home, ...args], {
        cwd: REPO_ROOT,
        timeout: 120_000,
      })
    ).stdout;

  /** stdout and the exit code of a run that may exit non-zero. */
  const pulseExit = async (...args: string[]): Promise<{ code: number; stdout: string }> => {
    try {
      return { code: 0, stdout: await pulse(...args) };
    } catch (err) {
      const e = err as { code?: number; stdout?: string };
      return { code: Number(e.code ?? -1), stdout: String(e.stdout ?? '') };
    }
  };

  it('ledger retry and trace name the hostile key escaped, with their exit codes', async () => {
    // Prepare: the FAILED version's object was never in the bucket.
    const ref = `s3://${JSON.parse(await pulse('ledger', '--json'))[0].bucket}/${hostileKey}@etag1#1`;
    // Act
    const retry = await pulseExit('ledger', 'retry', '--failed');
    const retryJson = await pulseExit('ledger', 'retry', '--failed', '--json');
    const traced = await pulseExit('trace', ref);
    const tracedJson = await pulseExit('trace', ref, '--json');
    // Assess
    for (const [command, out] of Object.entries({ retry, retryJson, traced, tracedJson })) {
      expect(out.stdout.match(UNSAFE)?.[0], `${command} printed a control character`).toBeUndefined();
    }
    expect(retry.code).toBe(2);
    expect(retry.stdout).toContain('<U+001B>[2J<U+009B>31mred<U+000A>fake-row<U+202E>gpj.csv');
    expect(retry.stdout).toMatch(/REFUSED[\s\S]*no longer exists: upload the file again/);
    const retried = JSON.parse(retryJson.stdout) as {
      exitCode: number;
      results: { key: string; outcome: string }[];
    };
    expect(retried.exitCode).toBe(2);
    expect(retried.results).toEqual([expect.objectContaining({ key: hostileKey, outcome: 'refused' })]);
    expect(traced.code).toBe(3);
    expect(traced.stdout).toMatch(/NOT FOUND[\s\S]*its file FAILED \(MalformedFileError\)/);
    const t = JSON.parse(tracedJson.stdout) as { exitCode: number; trace: { ref: string; verdict: string } };
    expect(t).toMatchObject({ exitCode: 3, trace: { ref, verdict: 'not-found' } });
  });

  it('prints the ledger, the status and the DLQs with every control character escaped', async () => {
    // Act
    const outputs = {
      ledger: await pulse('ledger'),
      ledgerJson: await pulse('ledger', '--json'),
      status: await pulse('status'),
      statusJson: await pulse('status', '--json'),
      dlq: await pulse('dlq', 'list'),
      dlqJson: await pulse('dlq', 'list', '--json'),
    };
    // Assess
    for (const [command, out] of Object.entries(outputs)) {
      expect(out.match(UNSAFE)?.[0], `${command} printed a control character`).toBeUndefined();
    }
    expect(outputs.ledger).toContain('<U+001B>[2J<U+009B>31mred<U+000A>fake-row<U+202E>gpj.csv');
    expect(outputs.status).toContain('<U+009B>1m');
    expect(outputs.dlq).toContain('<U+009B>2J and <U+202E> reversed');
    // The JSON is the same data to a parser: keys and reasons exactly as stored.
    const [item] = JSON.parse(outputs.ledgerJson) as { key: string; errorMessage: string }[];
    expect(item?.key).toBe(hostileKey);
    expect(item?.errorMessage).toBe(hostileReason);
    const status = JSON.parse(outputs.statusJson) as { files: { key: string }[] };
    expect(status.files.map((f) => f.key)).toEqual([hostileKey]);
    const [message] = JSON.parse(outputs.dlqJson) as { body: string }[];
    expect(message?.body).toBe('a body with \u009b2J and \u202e reversed');
  });
  it('lists the DLQ twice in a row and a redrive right after still finds its message (a listing consumes nothing)', async () => {
    // Prepare: the message the other test listed (runs after it: a redrive moves it away)
    const target = localTargetAt(home);
    // Act
    const first = await listDlq(target);
    const second = await listDlq(target);
    const [moved] = await redriveDlq(target, ['fileEventsDlq']);
    // Assess: the old listing hid each message for a second, so the second listing and the redrive saw nothing
    expect(first.filter((m) => m.queue === 'fileEventsDlq')).toHaveLength(1);
    expect(second.filter((m) => m.queue === 'fileEventsDlq')).toHaveLength(1);
    expect(moved).toMatchObject({ dlq: 'fileEventsDlq', to: 'fileEvents', moved: 1 });
  });
});
