/**
 * Factories for the events Lambda hands to the functions, in the shapes AWS sends them, for unit
 * tests (no network). Every factory fills in plausible values; pass what the test is about.
 */
import { createHash, randomBytes, randomUUID } from 'node:crypto';
import type { Context, S3EventRecord, SQSEvent, SQSRecord, SQSRecordAttributes } from 'aws-lambda';
import { LOCAL_ACCOUNT_ID, lambdaContext } from '../../local/event-sources/lambda-context.ts';
import type { LocalState, RuntimeOptions } from '../../local/runtime/state.ts';

const REGION = 'us-east-1';

/** The ARN records of {@link sqsRecordFactory} carry unless told otherwise. */
export const TEST_QUEUE_ARN = `arn:aws:sqs:${REGION}:${LOCAL_ACCOUNT_ID}:test-queue`;

export type SqsRecordOverrides = Partial<Omit<SQSRecord, 'attributes'>> & {
  readonly attributes?: Partial<SQSRecordAttributes>;
};

/**
 * One record of an `SQSEvent`, as the Lambda SQS event source builds it. A body that is not a string
 * is JSON-encoded. `md5OfBody` matches the body; ids and the receipt handle are random.
 */
export function sqsRecordFactory(body: unknown, overrides: SqsRecordOverrides = {}): SQSRecord {
  const text = typeof body === 'string' ? body : JSON.stringify(body);
  const now = Date.now();
  const { attributes, ...rest } = overrides;
  return {
    messageId: randomUUID(),
    receiptHandle: randomBytes(48).toString('base64'),
    body: text,
    attributes: {
      ApproximateReceiveCount: '1',
      SentTimestamp: String(now - 5),
      SenderId: 'AIDAIENQZJOLO23YVJ4VO',
      ApproximateFirstReceiveTimestamp: String(now),
      ...attributes,
    },
    messageAttributes: {},
    md5OfBody: createHash('md5').update(text).digest('hex'),
    eventSource: 'aws:sqs',
    eventSourceARN: TEST_QUEUE_ARN,
    awsRegion: REGION,
    ...rest,
  };
}

/** An `SQSEvent` holding the records (build them with {@link sqsRecordFactory}). */
export function sqsEventFactory(records: readonly SQSRecord[]): SQSEvent {
  return { Records: [...records] };
}

export interface S3EventRecordInput {
  readonly bucket: string;
  /** The object key as stored; the record carries it URL-encoded, as S3 sends it (`a b.csv` → `a+b.csv`). */
  readonly key: string;
  /** Without quotes, as in S3 notifications. */
  readonly eTag: string;
  readonly size: number;
  /** Present when the bucket is versioned. */
  readonly versionId?: string;
  /** @default 'ObjectCreated:Put' */
  readonly eventName?: string;
  /** @default now */
  readonly eventTime?: string;
  /** @default 'test-config' */
  readonly configurationId?: string;
}

/**
 * One record of an S3 event notification, in the shape S3 sends to SQS (see
 * https://docs.aws.amazon.com/AmazonS3/latest/userguide/notification-content-structure.html).
 */
export function s3EventRecordFactory(input: S3EventRecordInput): S3EventRecord {
  const eventTime = input.eventTime ?? new Date().toISOString();
  return {
    eventVersion: '2.1',
    eventSource: 'aws:s3',
    awsRegion: REGION,
    eventTime,
    eventName: input.eventName ?? 'ObjectCreated:Put',
    userIdentity: { principalId: 'AWS:AIDAJDPLRKLG7UEXAMPLE' },
    requestParameters: { sourceIPAddress: '127.0.0.1' },
    responseElements: {
      'x-amz-request-id': randomBytes(8).toString('hex').toUpperCase(),
      'x-amz-id-2': randomBytes(48).toString('base64'),
    },
    s3: {
      s3SchemaVersion: '1.0',
      configurationId: input.configurationId ?? 'test-config',
      bucket: {
        name: input.bucket,
        ownerIdentity: { principalId: 'A3NL1KOZZKExample' },
        arn: `arn:aws:s3:::${input.bucket}`,
      },
      object: {
        key: encodeS3EventKey(input.key),
        size: input.size,
        eTag: input.eTag,
        ...(input.versionId !== undefined ? { versionId: input.versionId } : {}),
        sequencer: Date.parse(eventTime).toString(16).toUpperCase().padStart(18, '0'),
      },
    },
  };
}

/** The body of an SQS message S3 sends for these records: `{"Records":[...]}`. */
export function s3NotificationBody(records: readonly S3EventRecord[]): string {
  return JSON.stringify({ Records: records });
}

/** The body of the message S3 sends to a queue when a notification configuration is put on a bucket. */
export function s3TestEventBody(bucket: string): string {
  return JSON.stringify({
    Service: 'Amazon S3',
    Event: 's3:TestEvent',
    Time: new Date().toISOString(),
    Bucket: bucket,
    RequestId: randomBytes(8).toString('hex').toUpperCase(),
    HostId: randomBytes(48).toString('base64'),
  });
}

/**
 * A key as S3 writes it into event notifications: form-URL-encoded (space → `+`, `+` → `%2B`, UTF-8
 * percent-encoded), with `/` left as is.
 */
export function encodeS3EventKey(key: string): string {
  return encodeURIComponent(key)
    .replace(/[!'()~]/g, (c) => `%${c.charCodeAt(0).toString(16).toUpperCase()}`)
    .replace(/%20/g, '+')
    .replace(/%2F/g, '/');
}

/** A Lambda `Context` whose `getRemainingTimeInMillis` counts down from `timeoutMs` in real time. */
export function lambdaContextFactory(timeoutMs = 60_000, functionName = 'test-function'): Context {
  return lambdaContext({ timeoutMs, functionName });
}

/** An offline run's state with every resource, as `local up` records it, and the given run options. */
export function localStateFactory(options: RuntimeOptions = {}): LocalState {
  return {
    prefix: 'p',
    moto: { pid: 1, marker: 'm', port: 1, endpoint: 'http://127.0.0.1:1' },
    resources: {
      bucket: 'p-ingest',
      ledgerTable: 'p-ledger',
      scoresTable: 'p-scores',
      scoresBucket: 'p-scores-bucket',
      anomaliesTable: 'p-anomalies',
      queues: Object.fromEntries(
        ['fileEvents', 'fileEventsDlq', 'signals', 'signalsDlq', 'kafkaFailures'].map((q) => [
          q,
          { name: q, url: `http://127.0.0.1:1/${q}`, arn: `arn:${q}` },
        ]),
      ) as never,
      dbSecretArn: 'arn:secret',
      dbUrl: 'postgres://x',
      dbTable: 'signals',
      topic: 't',
    },
    options,
  };
}
