import type { S3Route } from '#shared/routes.ts';
import type { PulseDeployment } from './props.ts';

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
