import { PRICES } from './prices.ts';

/**
 * The cost meter (docs/counters.md): billed units (SQS requests in 64 KiB units, DynamoDB RRU/WRU, Lambda
 * GB-s and requests, S3 requests) priced with the one price table (shared/prices.ts) that docs/cost.md is
 * priced with, and brought to dollars per million records. bench/cost.ts prices its request and compute
 * lines through {@link priceUnits} too, so the document and the meter cannot disagree on the arithmetic.
 */

export interface UsageUnits {
  /** SQS requests as billed: each 64 KiB of a message's payload is one (send, receive and delete alike). */
  readonly sqsRequests: number;
  readonly ddbWru: number;
  readonly ddbRru: number;
  readonly lambdaGbSeconds: number;
  readonly lambdaRequests: number;
  /** S3 PUT, COPY, POST and LIST requests (the dearer class). */
  readonly s3Puts: number;
  /** S3 GET (and all other non-free) requests. */
  readonly s3Gets: number;
}

export interface UsageDollars {
  readonly sqs: number;
  readonly lambdaRequests: number;
  readonly lambdaCompute: number;
  readonly ddbWrites: number;
  readonly ddbReads: number;
  readonly s3Requests: number;
  readonly total: number;
}

const M = 1_000_000;
/** SQS bills each 64 KiB chunk of a payload as one request. */
export const SQS_BILLING_CHUNK_BYTES = 64 * 1024;

/** SQS requests a message of `bytes` is billed as (at least one). */
export function sqsBilledRequests(bytes: number): number {
  return Math.max(1, Math.ceil(bytes / SQS_BILLING_CHUNK_BYTES));
}

/** Dollars for the units, line by line, at {@link PRICES}. */
export function priceUnits(u: UsageUnits): UsageDollars {
  const lines = {
    sqs: (u.sqsRequests / M) * PRICES.sqsPerMillionRequests,
    lambdaRequests: (u.lambdaRequests / M) * PRICES.lambdaPerMillionRequests,
    lambdaCompute: u.lambdaGbSeconds * PRICES.lambdaGbSecondArm,
    ddbWrites: (u.ddbWru / M) * PRICES.ddbPerMillionWru,
    ddbReads: (u.ddbRru / M) * PRICES.ddbPerMillionRru,
    s3Requests: (u.s3Puts / 1000) * PRICES.s3PerThousandPut + (u.s3Gets / 1000) * PRICES.s3PerThousandGet,
  };
  return { ...lines, total: Object.values(lines).reduce((a, b) => a + b, 0) };
}

export interface CostMeter {
  readonly records: number;
  readonly units: UsageUnits;
  readonly usd: UsageDollars;
  /** The same dollars scaled to a million records (null when no record was counted yet). */
  readonly usdPerMillionRecords: UsageDollars | null;
}

/** The meter for `units` spent on `records` records. */
export function costMeter(units: UsageUnits, records: number): CostMeter {
  const usd = priceUnits(units);
  const scale = records > 0 ? M / records : 0;
  const perMillion =
    records > 0
      ? (Object.fromEntries(Object.entries(usd).map(([k, v]) => [k, v * scale])) as unknown as UsageDollars)
      : null;
  return { records, units, usd, usdPerMillionRecords: perMillion };
}

/** Lambda GB-s of `durationMs` at `memoryMb` (Lambda bills duration in 1 ms steps). */
export function gbSeconds(durationMs: number, memoryMb: number): number {
  return (Math.ceil(durationMs) / 1000) * (memoryMb / 1024);
}
