import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { costMeter, gbSeconds, priceUnits, sqsBilledRequests, type UsageUnits } from '#shared/cost-meter.ts';

/**
 * The meter's arithmetic against docs/cost.md, as the benchmark last wrote it: the units of its "Per million
 * records" table, priced by the meter, give the dollars the document prints (to the units' rounding).
 */
const doc = readFileSync(new URL('../../../docs/cost.md', import.meta.url), 'utf8');

/** The two cells (packed design, per-row design) of the row whose first cell is `label`. */
function cells(label: string): [string, string] {
  const line = doc.split('\n').find((l) => l.startsWith(`| ${label} |`));
  if (!line) throw new Error(`docs/cost.md has no row "${label}": was the table renamed?`);
  const [, , a, b] = line.split('|').map((c) => c.trim());
  return [a as string, b as string];
}
const num = (cell: string) => Number(cell.replace(/[$,*]/g, ''));
/** What the document prints, within the rounding of its units and of its last digit. */
function expectPrinted(actual: number, printed: string): void {
  const value = num(printed);
  const decimals = printed.split('.')[1]?.replace(/\D/g, '').length ?? 0;
  expect(Math.abs(actual - value)).toBeLessThanOrEqual(0.01 * value + 0.5 * 10 ** -decimals);
}

function unitsOf(column: 0 | 1): UsageUnits {
  const [puts, gets] = (cells('S3 PUT / GET requests')[column] as string).split('/').map(num);
  return {
    sqsRequests: num(cells('SQS requests billed (send + receive + delete)')[column]),
    lambdaRequests: num(cells('Lambda invocations (scorer; the s3-trigger adds one per file)')[column]),
    lambdaGbSeconds: num(cells('Lambda GB-s (s3-trigger + scorer)')[column]),
    ddbWru: num(cells('DynamoDB WRU')[column]),
    ddbRru: num(cells('DynamoDB RRU')[column]),
    s3Puts: puts as number,
    s3Gets: gets as number,
  };
}

describe('cost meter', () => {
  it.each<[0 | 1, string]>([
    [0, 'packed (this design)'],
    [1, 'per row (the seeds)'],
  ])('prices the units of docs/cost.md (%s: %s) at the dollars it prints, line by line', (column) => {
    // Prepare
    const units = unitsOf(column);
    // Act
    const usd = priceUnits(units);
    // Assess
    expectPrinted(usd.sqs, cells('**SQS**')[column]);
    expectPrinted(usd.lambdaRequests, cells('**Lambda requests**')[column]);
    expectPrinted(usd.lambdaCompute, cells('**Lambda compute**')[column]);
    expectPrinted(usd.ddbWrites, cells('**DynamoDB writes**')[column]);
    expectPrinted(usd.ddbReads, cells('**DynamoDB reads**')[column]);
    expectPrinted(usd.s3Requests, cells('**S3 requests**')[column]);
  });

  it('scales what a few records cost to dollars per million records', () => {
    // Prepare: a thousandth of the document's million.
    const units = unitsOf(0);
    const thousandth = Object.fromEntries(
      Object.entries(units).map(([k, v]) => [k, v / 1000]),
    ) as unknown as UsageUnits;
    // Act
    const meter = costMeter(thousandth, 1000);
    // Assess
    expect(meter.usd.total).toBeCloseTo(priceUnits(units).total / 1000, 12);
    expect(meter.usdPerMillionRecords?.total).toBeCloseTo(priceUnits(units).total, 12);
    expect(costMeter(units, 0).usdPerMillionRecords).toBeNull();
  });

  it('bills SQS per started 64 KiB of a message, and Lambda per GB-s of its memory', () => {
    // Act + Assess
    expect([1, 65_536, 65_537, 1_048_576].map(sqsBilledRequests)).toEqual([1, 1, 2, 16]);
    expect(gbSeconds(1500, 2048)).toBe(3);
    expect(gbSeconds(0.2, 1024)).toBe(0.001);
  });
});
