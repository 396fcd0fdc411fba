import { mkdtempSync, readdirSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { GetObjectCommand } from '@aws-sdk/client-s3';
import { SendMessageBatchCommand } from '@aws-sdk/client-sqs';
import { BatchGetCommand, TransactWriteCommand } from '@aws-sdk/lib-dynamodb';
import type { BuildHandlerOptions, BuildMiddleware } from '@smithy/types';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import type { AwsCallRecord } from '#shared/aws-call-log.ts';
import { type AwsClients, createClients } from '#shared/clients.ts';

/**
 * The recording the IAM parity test reads (shared/aws-call-log.ts): real SDK clients, answered by a
 * middleware in the build step (after serialization, before any network), so nothing leaves the process.
 */
describe('recording the AWS calls of a function’s clients', () => {
  let dir: string;
  let answer: () => never | { output: { $metadata: object } };

  const answering = (clients: AwsClients) => {
    const stacks: { add(m: BuildMiddleware<object, object>, o: BuildHandlerOptions): void }[] = [
      clients.s3.middlewareStack,
      clients.sqs.middlewareStack,
      clients.ddb.middlewareStack,
    ];
    for (const stack of stacks) stack.add(() => async () => answer() as never, { step: 'build' });
    return clients;
  };
  const recorded = (): AwsCallRecord[] =>
    readdirSync(dir).flatMap((f) =>
      readFileSync(join(dir, f), 'utf8')
        .split('\n')
        .filter(Boolean)
        .map((l) => JSON.parse(l) as AwsCallRecord),
    );

  beforeEach(() => {
    vi.stubEnv('AWS_REGION', 'us-east-1');
    vi.stubEnv('AWS_ACCESS_KEY_ID', 'test');
    vi.stubEnv('AWS_SECRET_ACCESS_KEY', 'test');
    dir = join(mkdtempSync(join(tmpdir(), 'pulse-calls-')), 'run');
    answer = () => ({ output: { $metadata: {} } });
  });
  afterEach(() => {
    vi.unstubAllEnvs();
  });

  it('records each distinct call once, with what it names and how it ended, never a body', async () => {
    // Prepare
    const clients = answering(createClients({ s3ForcePathStyle: true, awsCallLog: dir }, 'scorer'));
    const get = new GetObjectCommand({ Bucket: 'b', Key: 'incoming/a.csv', VersionId: 'v1' });

    // Act
    await clients.s3.send(get);
    await clients.s3.send(get);
    answer = () => {
      throw Object.assign(new Error('gone'), { name: 'NoSuchVersion', $metadata: { httpStatusCode: 404 } });
    };
    await expect(clients.s3.send(get)).rejects.toThrow('gone');
    answer = () => ({ output: { $metadata: {} } });
    await clients.sqs.send(
      new SendMessageBatchCommand({
        QueueUrl: 'https://sqs.us-east-1.amazonaws.com/123456789012/signals',
        Entries: [{ Id: '1', MessageBody: 'secret payload' }],
      }),
    );
    await clients.doc.send(
      new TransactWriteCommand({
        TransactItems: [
          { Put: { TableName: 'scores', Item: { pk: 'score#1', value: 3.5, note: 'x' } } },
          { Update: { TableName: 'scores', Key: { pk: 'series#a' }, UpdateExpression: 'SET n = :n' } },
        ],
      }),
    );

    // Assess
    const request = { Bucket: 'b', Key: 'incoming/a.csv', VersionId: 'v1' };
    expect(recorded()).toEqual([
      { fn: 'scorer', service: 'S3', op: 'GetObject', request, outcome: 'ok' },
      { fn: 'scorer', service: 'S3', op: 'GetObject', request, outcome: 'NoSuchVersion 404' },
      {
        fn: 'scorer',
        service: 'SQS',
        op: 'SendMessageBatch',
        request: { QueueUrl: 'https://sqs.us-east-1.amazonaws.com/123456789012/signals' },
        outcome: 'ok',
      },
      {
        fn: 'scorer',
        service: 'DynamoDB',
        op: 'TransactWriteItems',
        request: {},
        tables: ['scores'],
        items: [
          { table: 'scores', op: 'Put', attributes: { pk: 'score#1', note: 'x' } },
          { table: 'scores', op: 'Update', attributes: { pk: 'series#a' } },
        ],
        outcome: 'ok',
      },
    ]);
    expect(JSON.stringify(recorded())).not.toContain('secret payload');
  });

  it('keeps a bounded number of items of a kind, and says which kinds it left some out of', async () => {
    // Prepare: a score item per signal grows with the data; the record must not.
    const clients = answering(createClients({ s3ForcePathStyle: true, awsCallLog: dir }, 'scorer'));
    const keys = Array.from({ length: 80 }, (_, i) => ({ pk: `score#${i}` }));

    // Act
    await clients.doc.send(new BatchGetCommand({ RequestItems: { scores: { Keys: keys } } }));
    await clients.doc.send(new BatchGetCommand({ RequestItems: { scores: { Keys: keys } } }));

    // Assess
    const [first, second, ...more] = recorded();
    expect(more).toEqual([]);
    expect(first?.items).toHaveLength(50);
    expect(first?.moreItems).toEqual([{ table: 'scores', op: 'Get' }]);
    expect(second).toMatchObject({ tables: ['scores'], moreItems: [{ table: 'scores', op: 'Get' }] });
    expect(second?.items).toBeUndefined();
  });

  it('adds nothing to the clients when no directory is configured (as on Lambda)', () => {
    // Act
    const clients = createClients({ s3ForcePathStyle: false }, 's3-trigger');

    // Assess
    for (const c of [clients.s3, clients.sqs, clients.ddb]) {
      expect(c.middlewareStack.identify().some((m) => m.startsWith('pulseAwsCallLog'))).toBe(false);
    }
  });
});
