import { describe, expect, it } from 'vitest';
import { settings } from '#shared/settings.ts';
import { detectFormat, parseTextRecords } from '../../../../functions/s3-trigger/parsers/index.ts';
import { collect, OPTS, source } from './helpers.ts';

describe('detectFormat', () => {
  it.each([
    ['incoming/a.csv', { format: 'csv', gzip: false }],
    ['incoming/a.json', { format: 'json', gzip: false }],
    ['incoming/a.ndjson', { format: 'ndjson', gzip: false }],
    ['incoming/a.jsonl', { format: 'ndjson', gzip: false }],
    ['incoming/a.parquet', { format: 'parquet', gzip: false }],
    ['incoming/a.csv.gz', { format: 'csv', gzip: true }],
    ['incoming/a.json.gz', { format: 'json', gzip: true }],
    ['incoming/a.ndjson.gz', { format: 'ndjson', gzip: true }],
    ['incoming/a.jsonl.gz', { format: 'ndjson', gzip: true }],
    ['incoming/a.parquet.gz', { format: 'parquet', gzip: true }],
    ['incoming/REPORT.CSV', { format: 'csv', gzip: false }],
    ['incoming/Data.JsonL.GZ', { format: 'ndjson', gzip: true }],
    ['incoming/archive.2024.json', { format: 'json', gzip: false }],
  ])('reads %s as %o', (key, expected) => {
    // Act
    const detected = detectFormat(key);

    // Assess
    expect(detected).toEqual(expected);
  });

  it.each([
    ['incoming/a.txt'],
    ['incoming/a.gz'],
    ['incoming/a.tar.gz'],
    ['incoming/a.csv.bak'],
    ['incoming/a.csv.zip'],
    ['incoming/a.csvx'],
    ['incoming/csv'],
    ['incoming/'],
  ])('does not recognise %s', (key) => {
    // Act
    const detected = detectFormat(key);

    // Assess
    expect(detected).toBeUndefined();
  });

  it('recognises every suffix the bucket notifies on', () => {
    // Act
    const detected = settings.bucket.suffixes.map((suffix) => detectFormat(`incoming/file${suffix}`));

    // Assess
    expect(detected.every((d) => d !== undefined)).toBe(true);
  });
});

describe('parseTextRecords', () => {
  it.each([
    ['csv', 'a\n1\n'],
    ['json', '[{"a":"1"}]'],
    ['ndjson', '{"a":"1"}\n'],
  ] as const)('parses %s with its parser', async (format, text) => {
    // Act
    const records = await collect(parseTextRecords(format, source([text]), OPTS));

    // Assess
    expect(records).toEqual([{ row: 1, data: { a: '1' } }]);
  });
});
