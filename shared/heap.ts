import { setFlagsFromString } from 'node:v8';

/**
 * Lets V8's heap grow by at most `percent` % of what survived the last full collection before it collects
 * again (V8's own factor is up to 4×, chosen from how fast collection is).
 *
 * s3-trigger keeps little alive (about 40 MB), but its garbage is mostly strings too large for the young
 * generation: message bodies and SendMessageBatch requests of up to 1 MiB, which only a full collection
 * frees. With V8's factor the heap settled about 80 MB above a small file's peak after 15 s of a large
 * file (peak RSS 262 vs 177 MB); with 100 % about 23 MB above it, at no measurable cost in speed
 * (`npm run bench`, docs/cost.md). V8 reads the flag at each collection, so it can be set once the
 * process runs, as a Lambda function must: NODE_OPTIONS does not accept it.
 */
export function limitHeapGrowth(percent: number): void {
  if (!Number.isInteger(percent) || percent < 10 || percent > 1000) {
    throw new RangeError(`heap growth must be a whole percentage from 10 to 1000, got ${percent}`);
  }
  setFlagsFromString(`--heap-growing-percent=${percent}`);
}
