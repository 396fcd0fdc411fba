import { checkRoutes, RoutesError, type S3Route } from '#shared/routes.ts';
import { type PulseDeployment, PulsePropsError } from './props.ts';

/**
 * The prefixes a bucket must notify under so that the s3-trigger hears of every key a route may take: each
 * route's prefix (of the routes reading `bucket`; undefined: the pipeline's own ingest bucket), without
 * those inside another (S3 refuses two notification configurations whose prefixes overlap for one event
 * type, and the shorter one covers the longer). Sorted, so the template does not depend on route order.
 */
export function ingestPrefixes(deployment: Pick<PulseDeployment, 's3'>, bucket?: string): string[] {
  const prefixes = [
    ...new Set(deployment.s3.routes.filter((r) => r.bucket === bucket).map((r) => r.prefix)),
  ].sort();
  return prefixes.filter((p) => !prefixes.some((q) => q !== p && p.startsWith(q)));
}

/** The routes of the pipeline's own bucket whose after-success policy is `policy` (`archive`: any archive prefix). */
export function routesAfterSuccess(
  deployment: Pick<PulseDeployment, 's3'>,
  policy: 'tag' | 'delete' | 'archive',
): S3Route[] {
  return deployment.s3.routes.filter((r) => {
    if (r.bucket !== undefined) return false;
    const a = r.afterSuccess ?? 'keep';
    return policy === 'archive' ? typeof a === 'object' : a === policy;
  });
}

/** A bucket the user already has, as the routes see it: its name and the prefixes it notifies under. */
export interface ExistingBucketPrefixes {
  readonly name: string;
  readonly prefixes: readonly string[];
}

/**
 * The routes the s3-trigger reads: the props' routes, then, for each prefix of a bucket the user already has
 * (`existingBuckets`) that no route of that bucket names, a route of its own with the defaults (today's
 * field names, `,`, keep). A route naming a bucket must name one of `existingBuckets`, lie under one of its
 * prefixes (the only objects the s3-trigger hears of and may read there), and keep the object: the
 * s3-trigger never writes to a bucket of the user's.
 */
export function routesWithExistingBuckets(
  routes: readonly S3Route[],
  buckets: readonly ExistingBucketPrefixes[],
): S3Route[] {
  const problems: string[] = [];
  for (const r of routes) {
    if (r.bucket === undefined) continue;
    const b = buckets.find((x) => x.name === r.bucket);
    if (!b) {
      problems.push(`the route ${r.prefix} names bucket ${r.bucket}, which is not one of existingBuckets`);
      continue;
    }
    if (!b.prefixes.some((p) => r.prefix.startsWith(p))) {
      problems.push(
        `the route ${r.prefix} of bucket ${r.bucket} is under none of its existingBuckets prefixes (${b.prefixes.join(', ')})`,
      );
    }
    if ((r.afterSuccess ?? 'keep') !== 'keep') {
      problems.push(
        `the route ${r.prefix} of bucket ${r.bucket} must keep its objects: the s3-trigger only reads a bucket of yours`,
      );
    }
  }
  if (problems.length > 0) throw new PulsePropsError(`PulseIngest props: s3.routes: ${problems.join('; ')}`);
  const implicit = buckets.flatMap((b) =>
    b.prefixes
      .filter((p) => !routes.some((r) => r.bucket === b.name && r.prefix === p))
      .map((prefix): S3Route => ({ prefix, bucket: b.name })),
  );
  try {
    // Checked as the s3-trigger checks them at cold start: refused here, not there.
    return checkRoutes([...routes, ...implicit]);
  } catch (err) {
    if (err instanceof RoutesError) throw new PulsePropsError(`PulseIngest props: ${err.message}`);
    throw err;
  }
}
