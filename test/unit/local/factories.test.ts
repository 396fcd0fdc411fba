import { describe, expect, it } from 'vitest';
import { decodeS3Key, parseFileEvents } from '../../../functions/s3-trigger/events.ts';
import {
  encodeS3EventKey,
  lambdaContextFactory,
  s3EventRecordFactory,
  s3NotificationBody,
  s3TestEventBody,
  sqsEventFactory,
  sqsRecordFactory,
} from '../../helpers/factories.ts';

describe('test factories', () => {
  it('encodes keys as S3 notifications do, which the s3-trigger decodes back', () => {
    // Prepare
    const key = "incoming/2024 06/a+b%c (1)!'~é.csv";
    // Act
    const encoded = encodeS3EventKey(key);
    // Assess
    expect(encoded).toBe('incoming/2024+06/a%2Bb%25c+%281%29%21%27%7E%C3%A9.csv');
    expect(decodeS3Key(encoded)).toBe(key);
  });

  it('builds an S3 notification body the s3-trigger reads, and a test event it ignores', () => {
    // Prepare
    const record = s3EventRecordFactory({
      bucket: 'b',
      key: 'incoming/x y.csv',
      eTag: 'abc',
      size: 3,
      versionId: 'v1',
    });
    // Act
    const tasks = parseFileEvents(s3NotificationBody([record]));
    // Assess
    expect(record.s3.object).toMatchObject({
      key: 'incoming/x+y.csv',
      eTag: 'abc',
      size: 3,
      versionId: 'v1',
    });
    expect(tasks).toEqual([
      expect.objectContaining({
        bucket: 'b',
        key: 'incoming/x y.csv',
        etag: 'abc',
        versionId: 'v1',
        size: 3,
      }),
    ]);
    expect(parseFileEvents(s3TestEventBody('b'))).toEqual([]);
  });

  it('builds SQS records with a matching md5 and merged attribute overrides', () => {
    // Act
    const record = sqsRecordFactory({ a: 1 }, { attributes: { ApproximateReceiveCount: '3' } });
    const event = sqsEventFactory([record]);
    // Assess
    expect(record.body).toBe('{"a":1}');
    expect(record.md5OfBody).toBe('bb6cb5c68df4652941caf652a366f2d8');
    expect(record.attributes).toMatchObject({ ApproximateReceiveCount: '3', SenderId: expect.any(String) });
    expect(event.Records).toEqual([record]);
  });

  it('builds a Lambda context counting down from its timeout', () => {
    // Act
    const context = lambdaContextFactory(1000);
    // Assess
    expect(context.getRemainingTimeInMillis()).toBeLessThanOrEqual(1000);
    expect(context.getRemainingTimeInMillis()).toBeGreaterThan(900);
  });
});
