import { describe, expect, it } from 'vitest';
import { settings, visibilityTimeoutFor } from '#shared/settings.ts';
import {
  bucketNotificationConfiguration,
  dlqAttributes,
  ledgerTableInput,
  queueAttributes,
  scoresTableInput,
} from '../../../../local/runtime/resources.ts';

const DLQ_ARN = 'arn:aws:sqs:us-east-1:123456789012:x-dlq';

describe('queueAttributes', () => {
  it('takes visibility timeout, retention, redrive and message size from shared/settings.ts', () => {
    // Act
    const fileEvents = queueAttributes('fileEvents', DLQ_ARN);
    const signals = queueAttributes('signals', DLQ_ARN);
    // Assess
    expect(fileEvents).toEqual({
      VisibilityTimeout: String(visibilityTimeoutFor(settings.functions.s3Trigger.timeoutSeconds)),
      MessageRetentionPeriod: String(settings.fileEvents.retentionDays * 86_400),
      RedrivePolicy: JSON.stringify({
        deadLetterTargetArn: DLQ_ARN,
        maxReceiveCount: settings.fileEvents.maxReceiveCount,
      }),
    });
    expect(signals).toMatchObject({
      VisibilityTimeout: String(visibilityTimeoutFor(settings.functions.scorer.timeoutSeconds)),
      MaximumMessageSize: String(settings.signals.queueMaximumMessageBytes),
    });
    expect(JSON.parse(signals.RedrivePolicy ?? '{}').maxReceiveCount).toBe(settings.signals.maxReceiveCount);
    expect(dlqAttributes()).toEqual({ MessageRetentionPeriod: String(settings.dlqRetentionDays * 86_400) });
  });

  it('applies overrides only to the queue they name', () => {
    // Act
    const options = { visibilityTimeoutSeconds: { signals: 2 }, maxReceiveCount: { signals: 3 } };
    const fileEvents = queueAttributes('fileEvents', DLQ_ARN, options);
    const signals = queueAttributes('signals', DLQ_ARN, options);
    // Assess
    expect(signals.VisibilityTimeout).toBe('2');
    expect(JSON.parse(signals.RedrivePolicy ?? '{}').maxReceiveCount).toBe(3);
    expect(fileEvents.VisibilityTimeout).toBe(
      String(visibilityTimeoutFor(settings.functions.s3Trigger.timeoutSeconds)),
    );
  });
});

describe('bucketNotificationConfiguration', () => {
  it('sends ObjectCreated of every object under the incoming prefix to the queue, whatever its suffix', () => {
    // Act
    const config = bucketNotificationConfiguration('arn:q');
    // Assess
    expect(config.QueueConfigurations).toEqual([
      {
        Id: 'ingest',
        QueueArn: 'arn:q',
        Events: ['s3:ObjectCreated:*'],
        Filter: { Key: { FilterRules: [{ Name: 'prefix', Value: settings.bucket.incomingPrefix }] } },
      },
    ]);
  });
});

describe('table definitions', () => {
  it('keys the ledger on pk/sk with a byStatus index, and the scores table on pk, both on demand', () => {
    // Act
    const ledger = ledgerTableInput('l');
    const scores = scoresTableInput('s');
    // Assess
    expect(ledger).toMatchObject({ TableName: 'l', BillingMode: 'PAY_PER_REQUEST' });
    expect(ledger.GlobalSecondaryIndexes?.[0]).toEqual({
      IndexName: 'byStatus',
      KeySchema: [
        { AttributeName: 'status', KeyType: 'HASH' },
        { AttributeName: 'updatedAt', KeyType: 'RANGE' },
      ],
      Projection: { ProjectionType: 'ALL' },
    });
    expect(scores).toMatchObject({
      TableName: 's',
      BillingMode: 'PAY_PER_REQUEST',
      KeySchema: [{ AttributeName: 'pk', KeyType: 'HASH' }],
    });
  });
});
