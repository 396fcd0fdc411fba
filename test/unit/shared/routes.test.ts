import { describe, expect, it } from 'vitest';
import { MappingConflict, mapRecord, prepareMapping } from '#shared/field-mapping.ts';
import { checkRoutes, noRouteReason, resolveRoutes, routeFor } from '#shared/routes.ts';

describe('S3 routes', () => {
  const routes = resolveRoutes(
    checkRoutes([
      { prefix: 'incoming/' },
      {
        prefix: 'eu/',
        suffixes: ['.csv', '.csv.gz'],
        include: ['eu/**/meters-*'],
        exclude: ['eu/**/tmp/**'],
        mapping: { name: 'metric', value: 'val', timestamp: 'ts' },
        csv: { delimiter: ';' },
        afterSuccess: { archivePrefix: 'archive/' },
      },
    ]),
  );

  it('takes a key by the first route whose prefix, suffix, include and exclude all hold', () => {
    // Act
    const taken = routeFor(routes, 'b', 'eu/2026/meters-a.CSV');
    const plain = routeFor(routes, 'b', 'incoming/x.json');
    // Assess
    expect(taken).toMatchObject({
      prefix: 'eu/',
      delimiter: ';',
      afterSuccess: { archivePrefix: 'archive/' },
    });
    expect(plain).toMatchObject({ prefix: 'incoming/', delimiter: ',', afterSuccess: 'keep' });
    expect(routeFor(routes, 'b', 'eu/2026/meters-a.json')).toBeUndefined();
    expect(routeFor(routes, 'b', 'eu/2026/other.csv')).toBeUndefined();
    expect(routeFor(routes, 'b', 'eu/tmp/meters-a.csv')).toBeUndefined();
    expect(routeFor(routes, 'b', 'us/meters-a.csv')).toBeUndefined();
  });

  it('says why no route takes a key', () => {
    // Act
    const reasons = ['eu/2026/meters-a.json', 'eu/2026/other.csv', 'us/a.csv'].map((k) =>
      noRouteReason(routes, 'b', k),
    );
    // Assess
    expect(reasons).toEqual([
      'no route takes eu/2026/meters-a.json: eu/ takes only .csv .csv.gz',
      'no route takes eu/2026/other.csv: eu/ includes only eu/**/meters-*',
      'no route takes us/a.csv: it is under none of the prefixes incoming/ eu/',
    ]);
  });

  it.each([
    [
      'overlapping prefixes with different settings',
      [{ prefix: 'incoming/' }, { prefix: 'incoming/eu/', csv: { delimiter: ';' } }],
      /s3.routes\[0\] \(incoming\/\) and s3.routes\[1\] \(incoming\/eu\/\) overlap/,
    ],
    [
      'a prefix holding the rejects prefix',
      [{ prefix: 'incoming/' }, { prefix: 'rej' }],
      /s3.routes\[1\].prefix rej overlaps the rejects prefix \(rejects\/\)/,
    ],
    [
      'a prefix inside the staging prefix',
      [{ prefix: 'incoming/' }, { prefix: 'staging/x/' }],
      /overlaps the staging prefix/,
    ],
    [
      'an archive prefix under a route prefix',
      [{ prefix: 'incoming/', afterSuccess: { archivePrefix: 'incoming/done/' } }],
      /s3.routes\[0\].prefix incoming\/ overlaps the archive prefix incoming\/done\//,
    ],
    [
      'a first route that does not cover the canary key',
      [{ prefix: 'eu/' }, { prefix: 'incoming/' }],
      /s3.routes\[0\] must read the ingest bucket under a prefix of the notification canary's key/,
    ],
    ['an empty prefix', [{ prefix: '' }], /a route prefix must not be empty/],
    [
      'a delimiter other than , ; tab |',
      [{ prefix: 'incoming/', csv: { delimiter: ':' } }],
      /s3.routes.0.csv.delimiter: csv.delimiter must be one of/,
    ],
    [
      'a mapping of an unknown field',
      [{ prefix: 'incoming/', mapping: { metric: 'name' } }],
      /s3.routes.0.mapping: Unrecognized key: "metric"/,
    ],
    [
      'one source field mapped twice',
      [{ prefix: 'incoming/', mapping: { name: 'x', source: 'x' } }],
      /a source field is mapped to two signal fields/,
    ],
    ['an unknown after-success policy', [{ prefix: 'incoming/', afterSuccess: 'move' }], /afterSuccess/],
  ])('refuses %s', (_what, given, message) => {
    // Act
    const check = () => checkRoutes(given);
    // Assess
    expect(check).toThrow(message);
  });

  it('accepts overlapping prefixes that read alike', () => {
    // Act
    const checked = checkRoutes([{ prefix: 'incoming/' }, { prefix: 'incoming/eu/', include: ['**/*.csv'] }]);
    // Assess
    expect(checked).toHaveLength(2);
  });
});

describe('field mapping', () => {
  const mapping = prepareMapping({ name: 'metric', value: 'val', timestamp: 'ts' });

  it('renames the mapped fields and keeps every other field as it is', () => {
    // Act
    const out = mapRecord({ metric: 'cpu', val: '1.5', ts: '2026-01-01T00:00:00Z', host: 'a' }, mapping);
    // Assess
    expect(out).toEqual({ name: 'cpu', value: '1.5', timestamp: '2026-01-01T00:00:00Z', host: 'a' });
  });

  it('gives a conflict, not a dropped value, when a record has both a mapped field and its target', () => {
    // Act
    const out = mapRecord({ metric: 'cpu', name: 'other', val: 1, ts: 1 }, mapping);
    // Assess
    expect(out).toBeInstanceOf(MappingConflict);
    expect((out as MappingConflict).error).toBe(
      'field "name" is present, and "name" is mapped from "metric": rename or drop one of them',
    );
  });

  it('leaves a record alone without a mapping, or with one that maps fields to themselves', () => {
    // Prepare
    const record = { name: 'cpu', value: 1, timestamp: 1 };
    // Act
    const identity = prepareMapping({ name: 'name' });
    // Assess
    expect(identity).toBeUndefined();
    expect(mapRecord(record, undefined)).toBe(record);
  });
});
