import { describe, expect, it } from 'vitest';
import { normaliseSignal, SignalSchema } from '#shared/signal.ts';
import { demoCsv, demoJson, demoNdjson } from '../../../../local/runtime/demo.ts';

/** 2024-06-01T00:00:00Z in epoch seconds, as runDemo passes it. */
const START = 1_717_200_000;

/** Splits records into those the pipeline would score (a valid Signal) and those it would reject. */
const classify = (records: readonly unknown[], key: string) => {
  const good: unknown[] = [];
  const bad: string[] = [];
  records.forEach((record, row) => {
    const out = normaliseSignal(record, {
      origin: { kind: 's3', ref: `s3://demo/${key}@etag#${row + 1}` },
      defaultSource: key,
    });
    if (out.ok && SignalSchema.safeParse(out.signal).success) good.push(out.signal);
    else bad.push(out.ok ? 'schema' : out.reason);
  });
  return { good, bad };
};

/** The demo CSV has no quoting: a header line, then one record per line. */
const csvRecords = (text: string): Record<string, string>[] => {
  const [header = '', ...lines] = text.split('\n').filter((l) => l !== '');
  const columns = header.split(',');
  return lines.map((line) => {
    const cells = line.split(',');
    expect(cells).toHaveLength(columns.length);
    return Object.fromEntries(columns.map((c, n) => [c, cells[n] ?? '']));
  });
};

describe('demoCsv', () => {
  it('holds as many good rows as it says, three series per point, and bad rows the schema rejects', () => {
    // Act
    const csv = demoCsv(40, START);
    // Assess
    expect(csv.text.endsWith('\n')).toBe(true);
    const rows = csvRecords(csv.text);
    expect(rows).toHaveLength(csv.records + csv.bad);
    expect(csv.records).toBe(120);
    expect(csv.bad).toBe(2);
    const { good, bad } = classify(rows, 'incoming/demo.csv');
    expect(good).toHaveLength(csv.records);
    expect(bad).toHaveLength(csv.bad);
    expect(bad.join('\n')).toMatch(/value must be wholly numeric/);
    expect(bad.join('\n')).toMatch(/name is required/);
    expect(new Set(rows.slice(0, csv.records).map((r) => r.name))).toEqual(
      new Set(['cpu', 'latency_ms', 'queue_depth']),
    );
  });
});

describe('demoNdjson', () => {
  it('holds as many good lines as it says and one bad line the schema rejects', () => {
    // Act
    const ndjson = demoNdjson(45, START);
    // Assess
    expect(ndjson.text.endsWith('\n')).toBe(true);
    const lines = ndjson.text.split('\n').filter((l) => l !== '');
    expect(lines).toHaveLength(ndjson.records + ndjson.bad);
    expect(ndjson).toMatchObject({ records: 45, bad: 1 });
    const { good, bad } = classify(
      lines.map((l) => JSON.parse(l)),
      'incoming/demo.ndjson',
    );
    expect(good).toHaveLength(ndjson.records);
    expect(bad).toHaveLength(ndjson.bad);
    expect(bad[0]).toMatch(/value must be wholly numeric/);
    expect(bad[0]).toMatch(/timestamp is required/);
  });
});

describe('demoJson', () => {
  it('is one JSON array of as many valid records as it says', () => {
    // Act
    const json = demoJson(60, START);
    // Assess
    const records = JSON.parse(json.text) as unknown[];
    expect(Array.isArray(records)).toBe(true);
    expect(records).toHaveLength(json.records);
    expect(json).toMatchObject({ records: 60, bad: 0 });
    const { good, bad } = classify(records, 'incoming/demo.json');
    expect(good).toHaveLength(60);
    expect(bad).toEqual([]);
  });

  it('stamps the records from the start time, a minute apart', () => {
    // Act
    const records = JSON.parse(demoJson(3, START).text) as { timestamp: number }[];
    // Assess
    const { good } = classify(records, 'incoming/demo.json');
    expect(good.map((s) => (s as { timestamp: string }).timestamp)).toEqual([
      '2024-06-01T00:00:00.000Z',
      '2024-06-01T00:01:00.000Z',
      '2024-06-01T00:02:00.000Z',
    ]);
  });
});
