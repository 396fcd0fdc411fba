import { PutRuleCommand, PutTargetsCommand } from '@aws-sdk/client-eventbridge';
import {
  GetBucketNotificationConfigurationCommand,
  type NotificationConfiguration,
  PutBucketNotificationConfigurationCommand,
  type QueueConfiguration,
} from '@aws-sdk/client-s3';
import { eventPatternJson, notificationFilter, objectCreatedPattern } from '#shared/ingest-filters.ts';
import type { ResourceClients } from './resources.ts';

/**
 * The offline run's side of `existingBuckets` (infra/existing-buckets.ts): a bucket created outside the
 * pipeline, connected to the file-events queue as the stack connects it, its owner's configuration kept.
 * - `s3-sqs`: the bucket's notification configuration is read and put back with one queue configuration
 *   per prefix added (ids `pulse-<prefix>`), every other entry kept, as CDK's custom resource does for a
 *   bucket it did not create; nothing is put when they are there already (each put sends a test event).
 * - `eventbridge`: a rule on the default bus with the stack's pattern, its target the file-events queue.
 *   The bucket's owner turns EventBridge on (moto then delivers, in AWS's shape: scripts/moto_server.py).
 * SNS-wrapped notifications need an SNS subscription, which the offline run does not make (no SNS client):
 * `test/integration/existing-bucket.test.ts` subscribes by hand.
 */
export interface LocalExistingBucket {
  readonly bucket: string;
  readonly prefixes: readonly string[];
  readonly notifications: 's3-sqs' | 'eventbridge';
}

/** Connects `source` to the queue; idempotent. `ruleName` names the EventBridge rule of an `eventbridge` one. */
export async function connectExistingBucket(
  clients: ResourceClients,
  source: LocalExistingBucket,
  fileEventsQueueArn: string,
  ruleName: string,
): Promise<void> {
  if (source.notifications === 'eventbridge') {
    await clients.events.send(
      new PutRuleCommand({
        Name: ruleName,
        EventPattern: eventPatternJson(objectCreatedPattern(source.bucket, source.prefixes)),
        State: 'ENABLED',
      }),
    );
    await clients.events.send(
      new PutTargetsCommand({ Rule: ruleName, Targets: [{ Id: 'file-events', Arn: fileEventsQueueArn }] }),
    );
    return;
  }
  const current = await clients.s3.send(
    new GetBucketNotificationConfigurationCommand({ Bucket: source.bucket }),
  );
  const wanted = withIngestNotifications(current, source.prefixes, fileEventsQueueArn);
  if (wanted) {
    await clients.s3.send(
      new PutBucketNotificationConfigurationCommand({
        Bucket: source.bucket,
        NotificationConfiguration: wanted,
      }),
    );
  }
}

/**
 * `current` with a queue configuration per prefix to the file-events queue added, every entry of its owner
 * kept; undefined when they are all there already.
 */
export function withIngestNotifications(
  current: NotificationConfiguration,
  prefixes: readonly string[],
  queueArn: string,
): NotificationConfiguration | undefined {
  const ours: QueueConfiguration[] = prefixes.map((prefix) => ({
    Id: `pulse-${prefix}`,
    QueueArn: queueArn,
    Events: ['s3:ObjectCreated:*'],
    Filter: notificationFilter(prefix),
  }));
  const queues = current.QueueConfigurations ?? [];
  const missing = ours.filter((o) => !queues.some((q) => q.Id === o.Id && q.QueueArn === queueArn));
  if (missing.length === 0) return undefined;
  const {
    QueueConfigurations: _,
    TopicConfigurations,
    LambdaFunctionConfigurations,
    EventBridgeConfiguration,
  } = current;
  return {
    QueueConfigurations: [...queues.filter((q) => !missing.some((m) => m.Id === q.Id)), ...missing],
    ...(TopicConfigurations?.length ? { TopicConfigurations } : {}),
    ...(LambdaFunctionConfigurations?.length ? { LambdaFunctionConfigurations } : {}),
    ...(EventBridgeConfiguration ? { EventBridgeConfiguration } : {}),
  };
}
