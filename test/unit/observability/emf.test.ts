import { Readable } from 'node:stream';
import { DeleteObjectCommand, GetObjectCommand, PutObjectCommand, S3Client } from '@aws-sdk/client-s3';
import { SendMessageBatchCommand, SQSClient } from '@aws-sdk/client-sqs';
import {
  BatchGetCommand,
  DynamoDBDocumentClient,
  TransactWriteCommand,
  UpdateCommand,
} from '@aws-sdk/lib-dynamodb';
import { sdkStreamMixin } from '@smithy/core/serde';
import { mockClient } from 'aws-sdk-client-mock';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { METRIC } from '#shared/contract.ts';
import { settings } from '#shared/settings.ts';
import { idKey } from '../../../functions/scorer/keys.ts';
import {
  lambdaContextFactory,
  s3EventRecordFactory,
  s3NotificationBody,
  sqsEventFactory,
  sqsRecordFactory,
} from '../../helpers/factories.ts';

/** What each handler publishes as CloudWatch EMF: one namespace, the service as the only dimension. */
type Emf = {
  _aws: { CloudWatchMetrics: { Namespace: string; Dimensions: string[][]; Metrics: { Name: string }[] }[] };
} & Record<string, unknown>;

function captureEmf() {
  const lines: string[] = [];
  const spy = vi.spyOn(process.stdout, 'write').mockImplementation((chunk: string | Uint8Array) => {
    lines.push(String(chunk));
    return true;
  });
  return {
    spy,
    blobs: () =>
      lines
        .flatMap((l) => l.split('\n'))
        .filter((l) => l.includes('"CloudWatchMetrics"'))
        .map((l) => JSON.parse(l) as Emf),
  };
}

describe('EMF metrics', () => {
  const ddb = mockClient(DynamoDBDocumentClient);
  const s3 = mockClient(S3Client);
  const sqs = mockClient(SQSClient);

  beforeAll(() => {
    vi.stubEnv('AWS_REGION', 'us-east-1');
    vi.stubEnv('SIGNALS_QUEUE_URL', 'https://sqs.us-east-1.amazonaws.com/1/signals');
    vi.stubEnv('LEDGER_TABLE', 'ledger');
    vi.stubEnv('SCORES_TABLE', 'scores');
    vi.stubEnv('SCORES_BUCKET', 'scores-bucket');
    vi.stubEnv('ANOMALIES_TABLE', 'anomalies');
    vi.stubEnv('QUARANTINE_BUCKET', 'b');
    vi.stubEnv('POWERTOOLS_METRICS_DISABLED', 'false');
    vi.stubEnv('POWERTOOLS_METRICS_NAMESPACE', settings.metricsNamespace);
    vi.stubEnv('POWERTOOLS_LOG_LEVEL', 'SILENT');
  });
  afterAll(() => vi.unstubAllEnvs());

  it('s3-trigger publishes files, records, rejects and bytes under the service dimension', async () => {
    // Prepare
    const csv = 'name,value,timestamp\ncpu,1,0\ncpu,x,0\ncpu,3,0\n';
    ddb.on(UpdateCommand).resolves({ Attributes: { attempts: 1 } });
    sqs.on(SendMessageBatchCommand).resolves({ Failed: [] });
    s3.on(PutObjectCommand).resolves({});
    s3.on(GetObjectCommand).resolves({ Body: sdkStreamMixin(Readable.from([Buffer.from(csv)])) });
    const { handler } = await import('../../../functions/s3-trigger/handler.ts');
    const event = sqsEventFactory([
      sqsRecordFactory(
        s3NotificationBody([
          s3EventRecordFactory({ bucket: 'b', key: 'incoming/m.csv', eTag: 'e', size: csv.length }),
        ]),
      ),
    ]);
    const out = captureEmf();
    // Act
    await (handler as unknown as (e: unknown, c: unknown) => Promise<unknown>)(event, lambdaContextFactory());
    out.spy.mockRestore();
    // Assess
    const [emf] = out.blobs();
    expect(emf?._aws.CloudWatchMetrics[0]?.Namespace).toBe(settings.metricsNamespace);
    expect(emf?._aws.CloudWatchMetrics[0]?.Dimensions).toEqual([['service']]);
    expect(emf).toMatchObject({
      service: 's3-trigger',
      [METRIC.filesClaimed]: 1,
      [METRIC.filesSucceeded]: 1,
      [METRIC.recordsIngested]: 2,
      [METRIC.recordsRejected]: 1,
      [METRIC.bytesRead]: csv.length,
    });
  });

  it('scorer publishes signals scored, duplicates, rejects and anomalies', async () => {
    // Prepare
    // "dup" is applied already: its id item (a ref without a position) exists, from the same ref.
    ddb
      .on(BatchGetCommand)
      .resolves({ Responses: { scores: [{ pk: idKey('s3', ['ref', 'dup']), ref: 'dup' }] } });
    ddb.on(TransactWriteCommand).resolves({});
    s3.on(PutObjectCommand).resolves({});
    s3.on(DeleteObjectCommand).resolves({});
    const signal = (id: string) => ({
      id,
      name: 'm',
      value: 1,
      source: 's',
      timestamp: '2024-01-01T00:00:00.000Z',
      origin: { kind: 's3', ref: id },
    });
    const body = JSON.stringify({
      v: 3,
      origin: { kind: 's3', ref: 'o' },
      signals: [signal('a'), signal('dup'), { bad: true }],
    });
    const { handler } = await import('../../../functions/scorer/handler.ts');
    const out = captureEmf();
    // Act
    await (handler as unknown as (e: unknown, c: unknown) => Promise<unknown>)(
      sqsEventFactory([sqsRecordFactory(body)]),
      lambdaContextFactory(),
    );
    out.spy.mockRestore();
    // Assess
    const [emf] = out.blobs();
    expect(emf).toMatchObject({
      service: 'scorer',
      [METRIC.signalsScored]: 1,
      [METRIC.signalsDuplicate]: 1,
      [METRIC.signalsRejected]: 1,
      [METRIC.anomalies]: 0,
    });
  });
});
