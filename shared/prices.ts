/**
 * AWS list prices: the one table that the benchmark's cost document (bench/cost.ts → docs/cost.md) and the
 * live cost meter of `pulse status` (shared/cost-meter.ts) both price with.
 */

/** us-east-1 list prices (on-demand / pay-per-request), as published in 2025; free tiers ignored. */
export const PRICES = {
  asOf: 'us-east-1 list prices as published in 2025 (DynamoDB on-demand after the November 2024 price cut); free tiers ignored',
  lambdaGbSecondArm: 0.0000133334,
  lambdaPerMillionRequests: 0.2,
  sqsPerMillionRequests: 0.4,
  ddbPerMillionWru: 0.625,
  ddbPerMillionRru: 0.125,
  /** S3 Standard: PUT, COPY, POST, LIST per 1,000 requests; GET per 1,000; DELETE is free. */
  s3PerThousandPut: 0.005,
  s3PerThousandGet: 0.0004,
  s3PerGbMonth: 0.023,
  /** DynamoDB Standard table class storage, per GB-month (the first 25 GB free tier ignored). */
  ddbPerGbMonth: 0.25,
  /** Athena, per TB scanned (10 MB minimum per query). */
  athenaPerTbScanned: 5,
} as const;
