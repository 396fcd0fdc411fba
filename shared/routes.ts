import picomatch from 'picomatch';
import * as z from 'zod';
import {
  type FieldMapping,
  FieldMappingSchema,
  type PreparedMapping,
  prepareMapping,
} from './field-mapping.ts';
import { settings } from './settings.ts';

/**
 * The S3 routes: which object keys the s3-trigger ingests, and how. One list, given as `PulseIngest`'s
 * `s3.routes` (or `-c pulse='{"s3":{"routes":[…]}}'`, or `pulse local up --config FILE`), checked at synth
 * ({@link checkRoutes}), carried to the s3-trigger in one environment variable (`S3_ROUTES`, JSON) and
 * checked again once at its cold start (shared/config.ts). The bucket's notifications cover every route's
 * prefix (`ingestPrefixes` in infra/routes.ts); a key no route takes is recorded SKIPPED with the reason.
 */

/** What the s3-trigger does with an object once it (every part of it) was ingested with SUCCESS. */
export type AfterSuccess = 'keep' | 'tag' | 'delete' | { readonly archivePrefix: string };

/** The CSV field delimiters a route may name. */
export type CsvDelimiter = (typeof settings.routes.csvDelimiters)[number];

/** One route, as a deployment gives it. */
export interface S3Route {
  /** The key prefix (`incoming/`); the bucket notifies on every object under it. */
  readonly prefix: string;
  /**
   * Only keys ending in one of these (any letter case), e.g. `['.csv', '.csv.gz']`; a key under the prefix
   * with another is recorded SKIPPED with the reason. @default every type the s3-trigger reads
   */
  readonly suffixes?: readonly string[];
  /** Glob patterns (picomatch) on the whole key: only keys matching one are taken. @default every key */
  readonly include?: readonly string[];
  /** Glob patterns on the whole key: keys matching one are not taken. @default none */
  readonly exclude?: readonly string[];
  /** The bucket this route reads. @default the pipeline's ingest bucket */
  readonly bucket?: string;
  /** Which source field is each signal field (`{ name: 'metric', value: 'val', timestamp: 'ts' }`). @default none: the fields' own names */
  readonly mapping?: FieldMapping;
  /** CSV files of this route. @default `{ delimiter: ',' }` */
  readonly csv?: { readonly delimiter: CsvDelimiter };
  /** What is done with a file once it succeeded. @default 'keep' */
  readonly afterSuccess?: AfterSuccess;
}

const prefix = z
  .string()
  .min(1, 'a route prefix must not be empty (it would take every key, rejects included)')
  .max(1024)
  .refine((p) => !p.startsWith('/'), 'an S3 key prefix does not start with "/"');

const glob = z.string().min(1).max(1024);

/** The shape of one route; unknown keys are refused. */
export const S3RouteSchema = z
  .object({
    prefix,
    suffixes: z
      .array(z.string().regex(/^\.[^/]+$/, 'a suffix starts with "." (e.g. ".csv.gz")'))
      .min(1)
      .optional(),
    include: z.array(glob).min(1).optional(),
    exclude: z.array(glob).min(1).optional(),
    bucket: z
      .string()
      .regex(/^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$/, 'an S3 bucket name')
      .optional(),
    mapping: FieldMappingSchema.optional(),
    csv: z
      .object({
        delimiter: z.enum(settings.routes.csvDelimiters, {
          error: () => 'csv.delimiter must be one of "," ";" "\\t" (tab) "|"',
        }),
      })
      .strict()
      .optional(),
    afterSuccess: z
      .union([z.enum(['keep', 'tag', 'delete']), z.object({ archivePrefix: prefix }).strict()])
      .optional(),
  })
  .strict();

/** A list of routes, the first taking the canary. */
export const S3RoutesSchema = z.array(S3RouteSchema).min(1, 'at least one route is needed');

/** A route with every default applied, and its matchers compiled. */
export interface ResolvedRoute {
  readonly prefix: string;
  readonly suffixes: readonly string[] | undefined;
  readonly include: readonly string[];
  readonly exclude: readonly string[];
  readonly bucket: string | undefined;
  readonly mapping: FieldMapping | undefined;
  readonly delimiter: CsvDelimiter;
  readonly afterSuccess: AfterSuccess;
  /** The mapping, ready for `mapRecord`. */
  readonly prepared: PreparedMapping | undefined;
  readonly matches: (key: string) => boolean;
}

/** The routes of a deployment that gives none: today's one prefix, read as it always was. */
export const DEFAULT_ROUTES: readonly S3Route[] = [{ prefix: settings.routes.defaultPrefix }];

/** Thrown for routes a deployment cannot run with; the message names each problem. */
export class RoutesError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'RoutesError';
  }
}

/** Applies the defaults and compiles the matchers of routes already checked by {@link checkRoutes}. */
export function resolveRoutes(routes: readonly S3Route[]): ResolvedRoute[] {
  return routes.map((r) => {
    const include = r.include ?? [];
    const exclude = r.exclude ?? [];
    const suffixes = r.suffixes?.map((s) => s.toLowerCase());
    // dot: a `*` also matches names starting with a dot; the key is matched whole, slashes included.
    const inc = include.length > 0 ? picomatch([...include], { dot: true }) : undefined;
    const exc = exclude.length > 0 ? picomatch([...exclude], { dot: true }) : undefined;
    return {
      prefix: r.prefix,
      suffixes,
      include,
      exclude,
      bucket: r.bucket,
      mapping: r.mapping,
      delimiter: r.csv?.delimiter ?? ',',
      afterSuccess: r.afterSuccess ?? 'keep',
      prepared: prepareMapping(r.mapping),
      matches: (key) => {
        if (!key.startsWith(r.prefix)) return false;
        if (suffixes && !suffixes.some((s) => key.toLowerCase().endsWith(s))) return false;
        if (inc && !inc(key)) return false;
        return !exc?.(key);
      },
    };
  });
}

/** {@link DEFAULT_ROUTES}, resolved. */
export const DEFAULT_RESOLVED_ROUTES: readonly ResolvedRoute[] = resolveRoutes(DEFAULT_ROUTES);

/**
 * The first route that takes `key` of `bucket`. A route without a bucket takes keys of whichever bucket
 * notified (the stack wires only the ingest bucket to it).
 */
export function routeFor(
  routes: readonly ResolvedRoute[],
  bucket: string,
  key: string,
): ResolvedRoute | undefined {
  return routes.find((r) => (r.bucket === undefined || r.bucket === bucket) && r.matches(key));
}

/** Why no route takes `key` (the reason its ledger item is SKIPPED with). */
export function noRouteReason(routes: readonly ResolvedRoute[], bucket: string, key: string): string {
  const under = routes.filter((r) => key.startsWith(r.prefix));
  if (under.length === 0) {
    return `no route takes ${key}: it is under none of the prefixes ${routes.map((r) => r.prefix).join(' ')}`;
  }
  const why = under.map((r) => {
    if (r.suffixes && !r.suffixes.some((s) => key.toLowerCase().endsWith(s)))
      return `${r.prefix} takes only ${r.suffixes.join(' ')}`;
    if (r.include.length > 0 && !picomatch([...r.include], { dot: true })(key))
      return `${r.prefix} includes only ${r.include.join(' ')}`;
    if (r.exclude.length > 0) return `${r.prefix} excludes ${r.exclude.join(' ')}`;
    return `${r.prefix} reads another bucket than ${bucket}`;
  });
  return `no route takes ${key}: ${why.join('; ')}`;
}

/** Whether one prefix contains the other (a key under one may be under both). */
function overlap(a: string, b: string): boolean {
  return a.startsWith(b) || b.startsWith(a);
}

/** Mapping, CSV delimiter and after-success policy: what two overlapping routes must agree on. */
function settingsOf(r: S3Route): string {
  return JSON.stringify([r.mapping ?? {}, r.csv?.delimiter ?? ',', r.afterSuccess ?? 'keep']);
}

/**
 * Parses and checks a list of routes: the shape ({@link S3RoutesSchema}), and what would make the pipeline
 * go wrong: two overlapping prefixes with different settings (a key's mapping would depend on the route's
 * order), a prefix overlapping one the pipeline writes to in the same bucket (rejects, staging, an archive:
 * what it writes would be ingested again), the canary key not under the first route (the sweep's canary
 * would never reach the s3-trigger). Throws {@link RoutesError} naming every problem.
 */
export function checkRoutes(value: unknown, where = 's3.routes'): S3Route[] {
  const parsed = S3RoutesSchema.safeParse(value);
  if (!parsed.success) {
    throw new RoutesError(
      parsed.error.issues.map((i) => `${[where, ...i.path.map(String)].join('.')}: ${i.message}`).join('; '),
    );
  }
  const routes = parsed.data as S3Route[];
  const problems: string[] = [];
  const sameBucket = (a: S3Route, b: S3Route) => (a.bucket ?? '') === (b.bucket ?? '');
  routes.forEach((a, i) => {
    routes.forEach((b, j) => {
      if (j <= i || !sameBucket(a, b) || !overlap(a.prefix, b.prefix)) return;
      if (settingsOf(a) !== settingsOf(b)) {
        problems.push(
          `${where}[${i}] (${a.prefix}) and ${where}[${j}] (${b.prefix}) overlap with different mapping, csv or afterSuccess: a key under both would be read as the first says`,
        );
      }
    });
    const written: [string, string][] = [];
    if (a.bucket === undefined) {
      written.push(
        [settings.bucket.rejectsPrefix, 'the rejects prefix'],
        [settings.bucket.stagingPrefix, 'the staging prefix'],
      );
    }
    for (const b of routes) {
      if (sameBucket(a, b) && typeof b.afterSuccess === 'object')
        written.push([b.afterSuccess.archivePrefix, `the archive prefix ${b.afterSuccess.archivePrefix}`]);
    }
    for (const [p, what] of written) {
      if (overlap(a.prefix, p)) {
        problems.push(
          `${where}[${i}].prefix ${a.prefix} overlaps ${what} (${p}): an object the pipeline writes there would be ingested again`,
        );
      }
    }
  });
  const first = routes[0];
  if (first && (first.bucket !== undefined || !settings.bucket.canaryKey.startsWith(first.prefix))) {
    problems.push(
      `${where}[0] must read the ingest bucket under a prefix of the notification canary's key ${settings.bucket.canaryKey} (keep ${settings.routes.defaultPrefix} first): the ledger sweep's canary would never reach the s3-trigger`,
    );
  }
  const bytes = Buffer.byteLength(routesEnv(routes), 'utf8');
  if (bytes > settings.routes.maxEnvBytes) {
    problems.push(
      `${where} takes ${bytes} bytes of JSON: at most ${settings.routes.maxEnvBytes} fit the s3-trigger's environment (Lambda allows 4 KB in all)`,
    );
  }
  if (problems.length > 0) throw new RoutesError(problems.join('; '));
  return routes;
}

/** The value of the `S3_ROUTES` variable: the routes as compact JSON. */
export function routesEnv(routes: readonly S3Route[]): string {
  return JSON.stringify(routes);
}
