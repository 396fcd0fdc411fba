import { beforeAll, describe, expect, it } from 'vitest';
import type { AwsCallRecord } from '#shared/aws-call-log.ts';
import { rejectsKey, segmentKey } from '#shared/quarantine.ts';
import { resourceNames } from '../../local/runtime/names.ts';
import { describeRefusal, evaluateCalls } from '../helpers/iam/evaluate.ts';
import { ACCOUNT, type ParityTemplate, parityTemplate, REGION } from '../helpers/iam/template.ts';

/**
 * The IAM parity test's evaluation (test/helpers/iam/, docs/iam-parity.md) held to calls written out
 * here, so that its rules stand without emulators: the calls the functions make, each against its role
 * in the synthesized template, and the requirements a call's outcome implies.
 */
const n = resourceNames('iamt');
const queueUrl = (name: string) => `http://127.0.0.1:4566/${ACCOUNT}/${name}`;
const call = (fn: string, service: string, op: string, request: Record<string, string>, extra = {}) =>
  ({ fn, service, op, request, outcome: 'ok', ...extra }) as AwsCallRecord;
const item = (table: string, op: string, attributes: Record<string, string>) => ({ table, op, attributes });
const fileKey = 'incoming/iamt/data.csv';
const segments = segmentKey(rejectsKey('s3', `${n.bucket}/${fileKey}@etag1`), 21, 1);

describe('the IAM parity evaluation of calls against the synthesized template', () => {
  let template: ParityTemplate;
  const refusals = async (records: AwsCallRecord[]) => {
    const result = await evaluateCalls(records, template);
    return [...result.refused, ...result.unmapped].map(describeRefusal);
  };

  beforeAll(() => {
    template = parityTemplate();
  });

  it('allows the s3-trigger to list and delete the stale rejects segments of earlier attempts', async () => {
    // Prepare
    const records = [
      call('s3-trigger', 'S3', 'ListObjectsV2', {
        Bucket: n.bucket,
        Prefix: segments.replace(/21\.attempt.*/, ''),
      }),
      call('s3-trigger', 'S3', 'DeleteObjects', { Bucket: n.bucket }, { objects: [{ Key: segments }] }),
    ];

    // Act
    const refused = await refusals(records);

    // Assess
    expect(refused).toEqual([]);
  });

  it('allows the s3-trigger the listing S3 asks before it answers 404 for an object deleted before the read', async () => {
    // Prepare: without s3:ListBucket, S3 answers 403 AccessDenied and the file would end FAILED.
    const gone = call(
      's3-trigger',
      'S3',
      'GetObject',
      { Bucket: n.bucket, Key: fileKey, VersionId: 'v1' },
      { outcome: 'NoSuchVersion 404' },
    );
    const head = call(
      's3-trigger',
      'S3',
      'HeadObject',
      { Bucket: n.bucket, Key: fileKey },
      { outcome: 'NotFound 404' },
    );

    // Act
    const result = await evaluateCalls([gone, head], template);

    // Assess: each read, and the implied listing both without an s3:prefix and with the object's key.
    expect([...result.refused, ...result.unmapped].map(describeRefusal)).toEqual([]);
    expect(result.evaluated).toBe(4);
  });

  it('refuses the listing a 404 implies to a function whose role has no s3:ListBucket', async () => {
    // Prepare: the scorer may write rejects, but not list the bucket.
    const gone = call(
      'scorer',
      'S3',
      'GetObject',
      { Bucket: n.bucket, Key: 'rejects/x.ndjson' },
      { outcome: 'NoSuchKey 404' },
    );

    // Act
    const refused = await refusals([gone]);

    // Assess
    expect(refused).toEqual([
      expect.stringMatching(
        /^scorer: s3:GetObject on arn:aws:s3:::iamt-ingest\/rejects\/x.ndjson — ImplicitlyDenied/,
      ),
      expect.stringMatching(
        /^scorer: s3:ListBucket on arn:aws:s3:::iamt-ingest — ImplicitlyDenied \(implied: S3 answers 404/,
      ),
      expect.stringMatching(
        /^scorer: s3:ListBucket on arn:aws:s3:::iamt-ingest with \{"s3:prefix":"rejects\/x.ndjson"\} — ImplicitlyDenied/,
      ),
    ]);
  });

  it('refuses the s3-trigger deleting or listing outside the rejects prefix', async () => {
    // Prepare
    const records = [
      call('s3-trigger', 'S3', 'DeleteObjects', { Bucket: n.bucket }, { objects: [{ Key: fileKey }] }),
      call('s3-trigger', 'S3', 'ListObjectsV2', { Bucket: n.bucket, Prefix: 'staging/' }),
    ];

    // Act
    const refused = await refusals(records);

    // Assess
    expect(refused).toEqual([
      expect.stringMatching(
        /^s3-trigger: s3:DeleteObject on arn:aws:s3:::iamt-ingest\/incoming\/iamt\/data.csv — ImplicitlyDenied/,
      ),
      expect.stringMatching(
        /^s3-trigger: s3:ListBucket on arn:aws:s3:::iamt-ingest with \{"s3:prefix":"staging\/"\} — ImplicitlyDenied/,
      ),
    ]);
  });

  it('allows the db-poller its watermark item in the ledger table, and no other item there', async () => {
    // Prepare
    const watermark = { pk: 'watermark#signals', sk: 'watermark' };
    const records = [
      call(
        'db-poller',
        'DynamoDB',
        'GetItem',
        {},
        { tables: [n.ledgerTable], items: [item(n.ledgerTable, 'Get', watermark)] },
      ),
      call(
        'db-poller',
        'DynamoDB',
        'PutItem',
        {},
        { tables: [n.ledgerTable], items: [item(n.ledgerTable, 'Put', { ...watermark, value: '2024' })] },
      ),
      call(
        'db-poller',
        'DynamoDB',
        'GetItem',
        {},
        {
          tables: [n.ledgerTable],
          items: [item(n.ledgerTable, 'Get', { pk: `s3://${n.bucket}/${fileKey}`, sk: 'etag1' })],
        },
      ),
    ];

    // Act
    const refused = await refusals(records);

    // Assess
    expect(refused).toEqual([
      expect.stringMatching(
        /^db-poller: dynamodb:GetItem on .*table\/iamt-ledger with \{"dynamodb:LeadingKeys":\["s3:\/\/iamt-ingest\/incoming\/iamt\/data.csv"\]\} — ImplicitlyDenied/,
      ),
    ]);
  });

  it('refuses items a record left out where the role allows only some partition keys', async () => {
    // Prepare: the recorder keeps a bounded number of items per kind; the rest are unknown keys.
    const records = [
      call(
        'db-poller',
        'DynamoDB',
        'GetItem',
        {},
        { tables: [n.ledgerTable], moreItems: [{ table: n.ledgerTable, op: 'Get' }] },
      ),
      call(
        'scorer',
        'DynamoDB',
        'TransactWriteItems',
        {},
        { tables: [n.scoresTable], moreItems: [{ table: n.scoresTable, op: 'Put' }] },
      ),
    ];

    // Act
    const refused = await refusals(records);

    // Assess: the scorer's grant has no condition on keys; the poller's has.
    expect(refused).toEqual([expect.stringMatching(/^db-poller: dynamodb:GetItem .* — ImplicitlyDenied/)]);
  });

  it('evaluates each item of a transaction with the action it performs', async () => {
    // Prepare: the scorer's transactions put its series and block items and update its totals.
    const ok = call(
      'scorer',
      'DynamoDB',
      'TransactWriteItems',
      {},
      {
        tables: [n.scoresTable],
        items: [
          item(n.scoresTable, 'Put', { pk: 'series#a' }),
          item(n.scoresTable, 'Update', { pk: 'totals#0' }),
        ],
      },
    );
    const no = call(
      'scorer',
      'DynamoDB',
      'TransactWriteItems',
      {},
      {
        tables: [n.scoresTable],
        items: [item(n.scoresTable, 'Delete', { pk: 'score#a' })],
      },
    );

    // Act
    const refused = await refusals([ok, no]);

    // Assess
    expect(refused).toEqual([
      expect.stringMatching(/^scorer: dynamodb:DeleteItem on .*table\/iamt-scores .* — ImplicitlyDenied/),
    ]);
  });

  it('gives a grant on one queue nothing on another: each token resolves to the one resource it names', async () => {
    // Prepare: the db-poller sends to the signals queue only.
    const records = [
      call('db-poller', 'SQS', 'SendMessageBatch', { QueueUrl: queueUrl(n.signalsQueue) }),
      call('db-poller', 'SQS', 'SendMessage', { QueueUrl: queueUrl(n.fileEventsQueue) }),
      call('s3-trigger', 'SQS', 'SendMessage', { QueueUrl: queueUrl(n.signalsDlq) }),
    ];

    // Act
    const refused = await refusals(records);

    // Assess
    expect(refused).toEqual([
      expect.stringMatching(
        /^db-poller: sqs:SendMessage on arn:aws:sqs:us-east-1:123456789012:iamt-file-events — ImplicitlyDenied/,
      ),
      expect.stringMatching(
        /^s3-trigger: sqs:SendMessage on arn:aws:sqs:us-east-1:123456789012:iamt-signals-dlq — ImplicitlyDenied/,
      ),
    ]);
  });

  it('reads the database secret only in the deployment it belongs to', async () => {
    // Prepare: the template grants the secret given as context; the offline run's is `<prefix>/db`.
    const secret = (prefix: string) =>
      `arn:aws:secretsmanager:${REGION}:${ACCOUNT}:secret:${prefix}/db-AbC123`;
    const records = [
      call('db-poller', 'SecretsManager', 'GetSecretValue', { SecretId: secret('iamt') }),
      call('kafka-consumer', 'SecretsManager', 'GetSecretValue', { SecretId: secret('iamt') }),
    ];

    // Act
    const refused = await refusals(records);

    // Assess
    expect(refused).toEqual([
      expect.stringMatching(/^kafka-consumer: secretsmanager:GetSecretValue .* — ImplicitlyDenied/),
    ]);
  });

  it('reports a function whose calls name the resources of two deployments', async () => {
    // Prepare: each deployment is evaluated with its own resources; one function instance belongs to one.
    const other = resourceNames('iamu');
    const records = [
      {
        ...call('scorer', 'S3', 'PutObject', { Bucket: n.bucket, Key: 'rejects/scorer/a.ndjson' }),
        file: 'f1',
      },
      {
        ...call('scorer', 'S3', 'PutObject', { Bucket: other.bucket, Key: 'rejects/scorer/b.ndjson' }),
        file: 'f1',
      },
      {
        ...call('scorer', 'S3', 'PutObject', { Bucket: other.bucket, Key: 'rejects/scorer/c.ndjson' }),
        file: 'f2',
      },
    ];

    // Act
    const refused = await refusals(records);

    // Assess
    expect(refused).toEqual([
      expect.stringMatching(
        /^scorer: s3:PutObject on arn:aws:s3:::iamu-ingest\/rejects\/scorer\/b.ndjson — the same scorer also called arn:aws:s3:::iamt-ingest/,
      ),
    ]);
  });

  it('reports a call on a resource the template does not declare, and one of a function it does not have', async () => {
    // Prepare
    const records = [
      call('s3-trigger', 'S3', 'GetObject', { Bucket: 'someone-elses-bucket', Key: 'incoming/x.csv' }),
      call('s3-trigger', 'SQS', 'SendMessage', { QueueUrl: queueUrl('iamt-kafka-failures') }),
      call('reporter', 'SQS', 'SendMessage', { QueueUrl: queueUrl(n.signalsQueue) }),
      call('s3-trigger', 'Lambda', 'Invoke', {}),
    ];

    // Act
    const refused = await refusals(records);

    // Assess
    expect(refused).toEqual([
      expect.stringMatching(/^s3-trigger: Lambda:Invoke on \? — s3-trigger: no IAM mapping for Lambda calls/),
      expect.stringMatching(
        /^s3-trigger: s3:GetObject on arn:aws:s3:::someone-elses-bucket\/incoming\/x.csv — the resource is none of the template’s resources/,
      ),
      expect.stringMatching(
        /^s3-trigger: sqs:SendMessage on arn:aws:sqs:us-east-1:123456789012:iamt-kafka-failures — the resource is none/,
      ),
      expect.stringMatching(/^reporter: sqs:SendMessage .* — no function named reporter in the template/),
    ]);
  });
});
