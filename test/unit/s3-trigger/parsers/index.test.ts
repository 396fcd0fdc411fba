import { describe, expect, it } from 'vitest';
import { settings } from '#shared/settings.ts';
import { detectFormat, parseTextRecords } from '../../../../functions/s3-trigger/parsers/index.ts';
import { collect, OPTS, source } from './helpers.ts';

describe('detectFormat', () => {
  it.each([
    ['incoming/a.csv', { format: 'csv' }],
    ['incoming/a.json', { format: 'json' }],
    ['incoming/a.ndjson', { format: 'ndjson' }],
    ['incoming/a.jsonl', { format: 'ndjson' }],
    ['incoming/a.parquet', { format: 'parquet' }],
    ['incoming/a.csv.gz', { format: 'csv', compression: 'gzip' }],
    ['incoming/a.json.gz', { format: 'json', compression: 'gzip' }],
    ['incoming/a.ndjson.gz', { format: 'ndjson', compression: 'gzip' }],
    ['incoming/a.jsonl.gz', { format: 'ndjson', compression: 'gzip' }],
    ['incoming/a.parquet.gz', { format: 'parquet', compression: 'gzip' }],
    ['incoming/REPORT.CSV', { format: 'csv' }],
    ['incoming/Data.JsonL.GZ', { format: 'ndjson', compression: 'gzip' }],
    ['incoming/archive.2024.json', { format: 'json' }],
    ['incoming/a.csv.zst', { format: 'csv', compression: 'zstd' }],
    ['incoming/a.json.zst', { format: 'json', compression: 'zstd' }],
    ['incoming/a.ndjson.zst', { format: 'ndjson', compression: 'zstd' }],
    ['incoming/Data.JSONL.ZST', { format: 'ndjson', compression: 'zstd' }],
    ['incoming/a.parquet.zst', { format: 'parquet', compression: 'zstd' }],
  ])('reads %s as %o', (key, expected) => {
    // Act
    const detected = detectFormat(key);

    // Assess
    expect(detected).toEqual(expected);
  });

  it.each([
    ['incoming/a.txt'],
    ['incoming/a.gz'],
    ['incoming/a.zst'],
    ['incoming/a.csv.zst.gz'],
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
