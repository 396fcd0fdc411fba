import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { InvalidMessageError } from '#shared/errors.ts';
import { ledgerKey } from '#shared/ledger-items.ts';
import { continuationMessage, parseFileEvents, partMessage } from '../../../functions/s3-trigger/events.ts';

const notification = (key: string, extra: Record<string, unknown> = {}) =>
  JSON.stringify({
    Records: [
      {
        eventName: 'ObjectCreated:Put',
        eventTime: '2024-01-01T00:00:00.000Z',
        s3: { bucket: { name: 'b' }, object: { key, size: 12, eTag: '"abc"', versionId: 'v1', ...extra } },
      },
    ],
  });

describe('parseFileEvents', () => {
  it('reads bucket, decoded key, ETag without quotes, version and size', () => {
    expect(parseFileEvents(notification('incoming/my+file%281%29.csv'))).toEqual([
      {
        bucket: 'b',
        key: 'incoming/my file(1).csv',
        etag: 'abc',
        versionId: 'v1',
        size: 12,
        eventTime: '2024-01-01T00:00:00.000Z',
      },
    ]);
  });

  it('ignores the test event S3 sends when notifications are configured', () => {
    expect(
      parseFileEvents(JSON.stringify({ Service: 'Amazon S3', Event: 's3:TestEvent', Bucket: 'b' })),
    ).toEqual([]);
  });

  it('ignores events that are not object creations', () => {
    const body = JSON.parse(notification('incoming/a.csv'));
    body.Records[0].eventName = 'ObjectRemoved:Delete';
    expect(parseFileEvents(JSON.stringify(body))).toEqual([]);
  });

  it('reads back the continuation a worker sends for a long file', () => {
    const task = { bucket: 'b', key: 'incoming/big file.csv', etag: 'e9', size: 5e9, versionId: 'v3' };
    expect(parseFileEvents(continuationMessage(task))).toEqual([task]);
    expect(JSON.parse(continuationMessage(task)).kind).toBe('continue');
  });

  it('reads back the announcement of one part of a split file, and its continuation', () => {
    const task = { bucket: 'b', key: 'incoming/big.csv', etag: 'e9', size: 5e9, versionId: 'v3', part: 7 };
    expect(parseFileEvents(partMessage(task))).toEqual([task]);
    expect(JSON.parse(partMessage(task)).kind).toBe('part');
    expect(parseFileEvents(continuationMessage(task))).toEqual([task]);
  });

  it('keeps the event time of the file in its continuations and part announcements', () => {
    const task = {
      bucket: 'b',
      key: 'incoming/big.csv',
      etag: 'e9',
      versionId: 'v3',
      eventTime: '2024-01-01T00:00:00.000Z',
    };
    expect(parseFileEvents(continuationMessage(task))).toEqual([task]);
    expect(parseFileEvents(partMessage({ ...task, part: 2 }))).toEqual([{ ...task, part: 2 }]);
  });

  it('refuses a part message without its part number or etag', () => {
    const body = { v: 1, kind: 'part', bucket: 'b', key: 'incoming/big.csv', etag: 'e9' };
    expect(() => parseFileEvents(JSON.stringify(body))).toThrow(
      /neither an S3 notification, an EventBridge event from S3 nor a backfill/,
    );
    expect(() => parseFileEvents(JSON.stringify({ ...body, etag: undefined, part: 1 }))).toThrow();
    expect(() => parseFileEvents(JSON.stringify({ ...body, part: -1 }))).toThrow();
  });

  it('reads a backfill request', () => {
    expect(
      parseFileEvents(
        JSON.stringify({ v: 1, kind: 'backfill', bucket: 'b', key: 'incoming/x.json', etag: '"e"' }),
      ),
    ).toEqual([{ bucket: 'b', key: 'incoming/x.json', etag: 'e' }]);
  });

  it('throws InvalidMessageError for a body that is not an event', () => {
    expect(() => parseFileEvents('{oops')).toThrow(InvalidMessageError);
    expect(() => parseFileEvents(JSON.stringify({ hello: 'world' }))).toThrow(/neither an S3 notification/);
  });

  it.each([
    ['a % not followed by two hex digits', 'incoming/100%.csv'],
    ['a truncated escape', 'incoming/a%2.csv'],
    ['an escape that is not UTF-8', 'incoming/caf%E9.csv'],
  ])('throws InvalidMessageError, naming the key, for %s in the event key', (_what, key) => {
    // Prepare: S3 escapes every % it sends; a key like these comes from something else writing events.
    const body = notification(key);

    // Act
    const act = () => parseFileEvents(body);

    // Assess
    expect(act).toThrow(InvalidMessageError);
    expect(act).toThrow(`file event key is not URL-encoded as S3 encodes it: ${JSON.stringify(key)}`);
  });
});

describe('parseFileEvents, whichever shape delivered the object', () => {
  const eventBridge = readFileSync(
    new URL('../../events/s3-trigger/eventbridge-object-created.json', import.meta.url),
    'utf8',
  );
  const snsWrapped = readFileSync(
    new URL('../../events/s3-trigger/sns-s3-notification.json', import.meta.url),
    'utf8',
  );
  const snsTest = readFileSync(
    new URL('../../events/s3-trigger/sns-s3-test-event.json', import.meta.url),
    'utf8',
  );
  const expected = {
    bucket: 'amzn-s3-demo-bucket1',
    key: 'incoming/my file (1) é+ü.csv',
    etag: 'b1946ac92492d2347c6235b4d2611184',
    versionId: 'IYV3p45BT0ac8hjHg1houSdS1a.Mppz',
    size: 5,
  };

  it('takes the key of an EventBridge Object Created event as it is (not URL-encoded), with etag, version and size', () => {
    // Prepare
    const body = eventBridge;

    // Act
    const tasks = parseFileEvents(body);

    // Assess: a `+` stays a plus and `%` escapes are not decoded, unlike an S3 notification's key.
    expect(tasks).toEqual([{ ...expected, eventTime: '2021-11-12T00:00:00Z' }]);
  });

  it('keeps a literal %41 in an EventBridge key (decoding it would name another object)', () => {
    // Prepare
    const event = JSON.parse(eventBridge);
    event.detail.object.key = 'incoming/100%41 done+.csv';

    // Act
    const [task] = parseFileEvents(JSON.stringify(event));

    // Assess
    expect(task?.key).toBe('incoming/100%41 done+.csv');
  });

  it('unwraps an SNS Notification holding an S3 notification and decodes its key as S3 encodes it', () => {
    // Prepare
    const body = snsWrapped;

    // Act
    const tasks = parseFileEvents(body);

    // Assess
    expect(tasks).toEqual([{ ...expected, eventTime: '2021-11-12T00:00:00.123Z' }]);
  });

  it('gives the same ledger key for the same object version in all three shapes', () => {
    // Prepare: the S3 notification SNS carried, sent straight to the queue (S3 → SQS, or SNS raw delivery)
    const bare = JSON.parse(snsWrapped).Message as string;

    // Act
    const keys = [bare, snsWrapped, eventBridge].map((body) => {
      const [task] = parseFileEvents(body);
      if (!task?.etag) throw new Error('no task with an etag');
      return ledgerKey({ bucket: task.bucket, key: task.key, etag: task.etag });
    });

    // Assess
    expect(new Set(keys.map((k) => JSON.stringify(k))).size).toBe(1);
    expect(keys[0]?.pk).toBe('s3://amzn-s3-demo-bucket1/incoming/my file (1) é+ü.csv');
  });

  it('announces nothing for the S3 test event wrapped in SNS', () => {
    // Prepare
    const body = snsTest;

    // Act
    const tasks = parseFileEvents(body);

    // Assess
    expect(tasks).toEqual([]);
  });

  it('announces nothing for an S3 EventBridge event that is not an object creation', () => {
    // Prepare
    const event = JSON.parse(eventBridge);
    event['detail-type'] = 'Object Deleted';

    // Act
    const tasks = parseFileEvents(JSON.stringify(event));

    // Assess
    expect(tasks).toEqual([]);
  });

  it('reads an EventBridge event that an SNS topic carried (a rule targeting the topic)', () => {
    // Prepare
    const body = JSON.stringify({ ...JSON.parse(snsTest), Message: eventBridge });

    // Act
    const tasks = parseFileEvents(body);

    // Assess
    expect(tasks).toEqual([{ ...expected, eventTime: '2021-11-12T00:00:00Z' }]);
  });

  it.each([
    [
      'an EventBridge event from another source',
      () => JSON.stringify({ ...JSON.parse(eventBridge), source: 'aws.ec2' }),
      /EventBridge event from "aws.ec2"/,
    ],
    [
      'an aws.s3 EventBridge event without the object key',
      () => {
        const e = JSON.parse(eventBridge);
        delete e.detail.object.key;
        return JSON.stringify(e);
      },
      /aws.s3 EventBridge event without detail.object.key/,
    ],
    [
      'an SNS SubscriptionConfirmation',
      () => JSON.stringify({ ...JSON.parse(snsTest), Type: 'SubscriptionConfirmation' }),
      /SNS "SubscriptionConfirmation" .* not a Notification: the queue subscription to the topic is not confirmed/,
    ],
    [
      'an SNS Notification whose Message is not JSON',
      () => JSON.stringify({ ...JSON.parse(snsTest), Message: 'hello' }),
      /SNS Notification from arn:aws:sns:ca-central-1:111122223333:bucket-events whose Message is not JSON/,
    ],
    [
      'an SNS Notification whose Message is JSON but no S3 event',
      () => JSON.stringify({ ...JSON.parse(snsTest), Message: '{"hello":"world"}' }),
      /an SNS Notification whose Message is neither an S3 notification/,
    ],
    [
      'a backfill request wrapped in SNS (only S3 publishes to the topic)',
      () =>
        JSON.stringify({
          ...JSON.parse(snsTest),
          Message: JSON.stringify({ v: 1, kind: 'backfill', bucket: 'b', key: 'incoming/x.csv' }),
        }),
      /an SNS Notification whose Message is neither/,
    ],
  ])('throws InvalidMessageError for %s', (_what, body, message) => {
    // Prepare
    const text = body();

    // Act
    const act = () => parseFileEvents(text);

    // Assess
    expect(act).toThrow(InvalidMessageError);
    expect(act).toThrow(message);
  });
});
