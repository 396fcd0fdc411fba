import { type CostMeter, costMeter, type UsageUnits } from '#shared/cost-meter.ts';
import type { LedgerCounts } from '#shared/ledger-counters.ts';
import { toUsageUnits, USAGE_KEYS } from '#shared/usage-meter.ts';

/**
 * The live cost meter of `pulse status` (docs/counters.md, "The cost meter"): per source, the billed units
 * the pipeline counted from its own calls as it ran, priced with the one price table (shared/prices.ts) and
 * brought to dollars per million records. Only what is measured is shown: a source the pipeline does not
 * meter yet is absent, not zero.
 */
export interface SourceCost extends CostMeter {
  readonly source: 's3';
  /** Where the numbers come from, said with them. */
  readonly basis: string;
}

export const MEASURED_BASIS =
  "measured from the pipeline's own counts (the s3-trigger's calls, summed by the ledger counters)";

/** The s3 source's meter from the ledger's counters; none while no file carried any unit. */
export function s3Cost(counts: LedgerCounts): SourceCost[] {
  if (USAGE_KEYS.every((k) => counts.usage[k] === 0)) return [];
  return [{ source: 's3', basis: MEASURED_BASIS, ...costMeter(toUsageUnits(counts.usage), counts.records) }];
}

/**
 * Dollars: cents above $1, four decimals above a tenth of a cent, else two significant digits, never in
 * exponent notation (`toPrecision` writes 2e-7 as "2.0e-7").
 */
export const usd = (v: number) =>
  `$${v >= 1 ? v.toFixed(2) : v >= 0.001 || v <= 0 ? v.toFixed(4) : v.toFixed(Math.min(20, 1 - Math.floor(Math.log10(v))))}`;
const num = (v: number) => (Number.isInteger(v) ? String(v) : v.toFixed(3));

function unitsText(u: UsageUnits): string {
  return (
    `SQS ${num(u.sqsRequests)} req, DynamoDB ${num(u.ddbWru)} WRU / ${num(u.ddbRru)} RRU, ` +
    `Lambda ${num(u.lambdaGbSeconds)} GB-s / ${num(u.lambdaRequests)} req, S3 ${num(u.s3Puts)} PUT / ${num(u.s3Gets)} GET`
  );
}

/** The text lines of `pulse status` for the meters (none when nothing was measured). */
export function costLines(costs: readonly SourceCost[]): string[] {
  const lines: string[] = [];
  for (const c of costs) {
    const per = c.usdPerMillionRecords;
    lines.push(
      `cost     ${c.source}: ${per ? `${usd(per.total)} per million records` : 'no record counted yet'}` +
        ` (${usd(c.usd.total)} for ${c.records} records; ${c.basis})`,
    );
    lines.push(`         ${c.source} units: ${unitsText(c.units)}`);
  }
  return lines;
}
