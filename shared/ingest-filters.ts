/**
 * The filters that carry object creations under the ingest prefixes of a bucket to the file-events queue, built
 * from a list of prefixes in one place for the stack (infra/) and the offline run (local/): S3 event
 * notification filters (one configuration per prefix: a filter takes one prefix rule) and the EventBridge
 * pattern of a rule. Plain data, no CDK, so the `pulse` CLI and the offline run can load it.
 */

/** The `Filter` of one S3 event notification configuration: objects under `prefix`. */
export function notificationFilter(prefix: string): {
  Key: { FilterRules: { Name: 'prefix'; Value: string }[] };
} {
  return { Key: { FilterRules: [{ Name: 'prefix', Value: prefix }] } };
}

/**
 * The EventBridge pattern of object creations in `bucketName` under any of `prefixes` (a key is matched as it
 * is: EventBridge events do not URL-encode it). CDK's `EventPattern` spelling (`detailType`); the offline run
 * writes it with {@link eventPatternJson}.
 */
export function objectCreatedPattern(
  bucketName: string,
  prefixes: readonly string[],
): {
  source: string[];
  detailType: string[];
  detail: { bucket: { name: string[] }; object: { key: { prefix: string }[] } };
} {
  return {
    source: ['aws.s3'],
    detailType: ['Object Created'],
    detail: { bucket: { name: [bucketName] }, object: { key: prefixes.map((prefix) => ({ prefix })) } },
  };
}

/** A pattern of {@link objectCreatedPattern} as EventBridge's API takes it (`detail-type`). */
export function eventPatternJson(pattern: ReturnType<typeof objectCreatedPattern>): string {
  const { detailType, ...rest } = pattern;
  return JSON.stringify({ ...rest, 'detail-type': detailType });
}
