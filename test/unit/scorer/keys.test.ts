import { describe, expect, it } from 'vitest';
import type { Signal } from '#shared/signal.ts';
import { dedupeKey, positionOf, scopeOf, seriesKey } from '../../../functions/scorer/keys.ts';

const signal = (kind: Signal['origin']['kind'], ref: string, over: Partial<Signal> = {}): Signal => ({
  id: ref,
  name: 'cpu',
  value: 1,
  source: 'src',
  timestamp: '2024-01-01T00:00:00.000Z',
  origin: { kind, ref },
  ...over,
});

describe('dedupe keys', () => {
  it.each([
    ['s3', 's3://b/in/a.csv@etag1#17', 's3://b/in/a.csv@etag1', 17],
    ['s3', 's3://b/in/odd#name@x.csv@etag#3', 's3://b/in/odd#name@x.csv@etag', 3],
    ['kafka', 'kafka:pulse_signals:2:1048576', 'kafka:pulse_signals:2', 1048576],
    ['db', 'db:signals:1001', 'db:signals', 1001],
  ] as const)('reads %s ref %s as stream %s, position %i', (kind, ref, stream, position) => {
    // Act
    const at = positionOf(kind, ref);
    // Assess
    expect(at).toEqual({ stream, position });
  });

  it.each([
    ['db', 'db:signals:7@2024-01-01T10:00:00.000Z'], // a watermark-mode row version
    ['db', 'db:signals:abc'], // a text id
    ['s3', 's3://b/k@e#007'], // not canonical: would share a bit with #7
    ['s3', 's3://b/k@e'], // no row
    ['kafka', 'kafka:t:0:99999999999999999999'], // beyond a double's exact integers
    ['kafka', 'twice:0'], // not a Kafka ref at all
  ] as const)('gives %s ref %s no position (it gets an id item)', (kind, ref) => {
    // Act
    const key = dedupeKey(signal(kind, ref), 4096);
    // Assess
    expect(positionOf(kind, ref)).toBeUndefined();
    expect(key.type).toBe('id');
  });

  it('puts positions of one stream in blocks of B bits, and other streams in other blocks', () => {
    // Act
    const a = dedupeKey(signal('s3', 's3://b/k@e1#4095'), 4096);
    const b = dedupeKey(signal('s3', 's3://b/k@e1#4096'), 4096);
    const c = dedupeKey(signal('s3', 's3://b/k@e2#4095'), 4096);
    // Assess
    expect(a).toMatchObject({ type: 'position', bit: 4095 });
    expect(b).toMatchObject({ type: 'position', bit: 0 });
    if (a.type !== 'position' || b.type !== 'position' || c.type !== 'position') throw new Error('positions');
    expect(a.blockKey).not.toBe(b.blockKey);
    expect(a.streamId).toBe(b.streamId);
    expect(c.streamId).not.toBe(a.streamId);
    expect(a.blockKey).toMatch(/^applied#[0-9a-f]{32}#0$/);
  });

  it('keeps a record’s own id within its kind, scope and source: file version, topic, table', () => {
    // Prepare
    const own = (kind: Signal['origin']['kind'], ref: string, source = 'src', id = '1') =>
      dedupeKey(signal(kind, ref, { id, source }), 4096);
    // Act and assess: the same id is the same key only from the same scope and source.
    expect(own('s3', 's3://b/a.csv@v1#1')).toEqual(own('s3', 's3://b/a.csv@v1#9'));
    expect(own('s3', 's3://b/a.csv@v1#1')).not.toEqual(own('s3', 's3://b/a.csv@v2#1'));
    expect(own('s3', 's3://b/a.csv@v1#1')).not.toEqual(own('s3', 's3://b/b.csv@v1#1'));
    expect(own('s3', 's3://b/a.csv@v1#1', 'x')).not.toEqual(own('s3', 's3://b/a.csv@v1#1', 'y'));
    expect(own('kafka', 'kafka:t:0:5')).toEqual(own('kafka', 'kafka:t:3:8'));
    expect(own('kafka', 'kafka:t:0:5')).not.toEqual(own('kafka', 'kafka:u:0:5'));
    expect(own('kafka', 'kafka:t:0:5')).not.toEqual(own('db', 'db:t:5'));
    // A file's own id "kafka:t:0:5" cannot take the key of Kafka's record at that offset.
    expect(own('s3', 's3://b/a.csv@v1#1', 'src', 'kafka:t:0:5')).not.toEqual(
      dedupeKey(signal('kafka', 'kafka:t:0:5'), 4096),
    );
    expect(own('kafka', 'kafka:t:0:5')).toMatchObject({ type: 'id', own: true });
  });

  it('names the scope of own ids', () => {
    expect(scopeOf('s3', 's3://b/a.csv@v1#12')).toBe('s3://b/a.csv@v1');
    expect(scopeOf('kafka', 'kafka:t:0:5')).toBe('kafka:t');
    expect(scopeOf('db', 'db:signals:7@2024')).toBe('db:signals');
  });

  it('hashes a series key too long for DynamoDB, with a prefix no raw key can take', () => {
    // Act
    const long = seriesKey('s'.repeat(2000), 'cpu');
    // Assess
    expect(long).toMatch(/^series-sha256#[0-9a-f]{64}$/);
    expect(seriesKey('k', 'cpu')).toBe('series#["k","cpu"]');
  });
});
