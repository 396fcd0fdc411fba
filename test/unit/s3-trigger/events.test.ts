import { describe, expect, it } from 'vitest';
import { InvalidMessageError } from '#shared/errors.ts';
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
    expect(() => parseFileEvents(JSON.stringify(body))).toThrow(/neither an S3 notification nor a backfill/);
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
