import type { S3Route } from '#shared/routes.ts';
import {
  existingBucketsOf,
  sourceBucketName,
  sourcePrefixes,
  sourceProblems,
} from '../../infra/existing-bucket-sources.ts';
import { PulsePropsError, resolveDeployment } from '../../infra/props.ts';
import { routesWithExistingBuckets } from '../../infra/routes.ts';
import type { LocalExistingBucket } from './existing-buckets.ts';
import type { RuntimeOptions } from './state.ts';

/**
 * What `pulse local up --config FILE` applies of the deployment's configuration (the object `-c pulse` takes,
 * plus `existingBuckets`, the array the `-c existingBuckets` context takes). Every other key of the file is
 * checked as the stack checks it but not applied offline, and `local up` names those keys in a warning.
 */
export const OFFLINE_CONFIG_KEYS = ['s3', 'dbPoller', 'kafkaConsumer', 'existingBuckets'] as const;

/** The keys of `config` the offline run does not apply, sorted. */
export function keysNotAppliedOffline(config: Record<string, unknown>): string[] {
  const applied: readonly string[] = OFFLINE_CONFIG_KEYS;
  return Object.keys(config)
    .filter((k) => !applied.includes(k))
    .sort();
}

/** The warning `local up --config` prints for the keys it does not apply; undefined when it applies them all. */
export function notAppliedWarning(config: Record<string, unknown>): string | undefined {
  const notApplied = keysNotAppliedOffline(config);
  if (notApplied.length === 0) return undefined;
  return `warning: --config: not applied offline (checked only): ${notApplied.join(', ')}; applied: ${OFFLINE_CONFIG_KEYS.join(', ')}`;
}

/**
 * `existingBuckets` as the offline run takes it: the `-c existingBuckets` JSON (an array, or its text),
 * checked as the construct checks it, each bucket by name (an ARN's name), its prefixes defaulted. SNS-wrapped
 * notifications are refused: the offline run makes no SNS subscription, and saying nothing would let a
 * configuration pass offline that it does not run.
 */
export function localExistingBuckets(value: unknown): LocalExistingBucket[] | undefined {
  const sources = existingBucketsOf(value);
  if (!sources || sources.length === 0) return undefined;
  const problems = sourceProblems(sources);
  if (problems.length > 0) throw new PulsePropsError(`PulseIngest props: ${problems.join('; ')}`);
  return sources.map((s, i) => {
    const notifications = s.notifications ?? 's3-sqs';
    if (typeof notifications !== 'string')
      throw new Error(
        `existingBuckets[${i}]: SNS-wrapped notifications (snsTopicArn) are not run offline; use "s3-sqs" or "eventbridge"`,
      );
    return { bucket: sourceBucketName(s.bucket), prefixes: [...sourcePrefixes(s)], notifications };
  });
}

/**
 * The routes the offline s3-trigger reads (S3_ROUTES): the options' routes, then a route of its own for each
 * prefix of an existing bucket no route names, as the stack gives them (`routesWithExistingBuckets`).
 */
export function localRoutes(options: Pick<RuntimeOptions, 's3' | 'existingBuckets'> | undefined): S3Route[] {
  return routesWithExistingBuckets(
    resolveDeployment({ s3: options?.s3 ?? {} }).s3.routes,
    (options?.existingBuckets ?? []).map((b) => ({ name: b.bucket, prefixes: b.prefixes })),
  );
}

/** The name of the EventBridge rule of the existing bucket at `index` (eventbridge mode). */
export const existingBucketRuleName = (prefix: string, index: number): string =>
  `${prefix}-existing-bucket-${index}`;
