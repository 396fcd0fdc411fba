/**
 * What a Lambda Kafka event source mapping writes to its on-failure destination, emulated for the
 * offline run: exactly the documented shapes, so that what the offline run keeps is what AWS keeps.
 *
 * - An S3 destination gets one JSON object per discarded batch: the invocation record (requestContext,
 *   responseContext, version, timestamp, KafkaBatchInfo) and `payload`, the whole event as an escaped
 *   JSON string ("Capturing discarded batches for Amazon MSK and self-managed Apache Kafka event
 *   sources"). The key follows the layout Lambda documents for stream sources' S3 destinations,
 *   `aws/lambda/<ESM-UUID>/<shardID>/YYYY/MM/DD/YYYY-MM-DDTHH.MM.SS-<Random UUID>`, with the batch's
 *   `<topic>-<partition>` for the shard (Lambda's Kafka page does not give the key; nothing in Pulse
 *   relies on it: replay lists the whole bucket).
 * - An SQS (or SNS) destination gets the invocation record only: topic, partition and offsets, not the
 *   records, which are gone once the topic's retention passes.
 */

import { createHash, randomUUID } from 'node:crypto';
import { PutObjectCommand, type S3Client } from '@aws-sdk/client-s3';
import { SendMessageCommand, type SQSClient } from '@aws-sdk/client-sqs';
import type { KafkaBatchFailure, KafkaFailureRecord } from './kafka.ts';

/** The object Lambda writes to an S3 on-failure destination for one discarded Kafka batch. */
export type KafkaFailureObject = KafkaFailureRecord & { readonly payload: string };

/** The S3 destination's object for a failure: the record, then the event as a JSON string. */
export function kafkaFailureObject(failure: KafkaBatchFailure): KafkaFailureObject {
  return { ...failure.record, payload: JSON.stringify(failure.event) };
}

/** `aws/lambda/<ESM-UUID>/<topic>-<partition>/YYYY/MM/DD/YYYY-MM-DDTHH.MM.SS-<Random UUID>`, in UTC. */
export function kafkaFailureObjectKey(
  esmUuid: string,
  topicPartition: string,
  at: Date,
  random: string = randomUUID(),
): string {
  const iso = at.toISOString(); // 2024-06-01T12:34:56.789Z
  const day = iso.slice(0, 10);
  const time = iso.slice(11, 19).replaceAll(':', '.');
  return `aws/lambda/${esmUuid}/${topicPartition}/${day.replaceAll('-', '/')}/${day}T${time}-${random}`;
}

/**
 * A stable UUID for an emulated event source mapping, from its consumer group (Lambda's mapping keeps
 * its UUID for its life; so does an offline run's).
 */
export function emulatedMappingUuid(groupId: string): string {
  const h = createHash('sha256').update(`pulse-esm:${groupId}`).digest('hex');
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-4${h.slice(13, 16)}-a${h.slice(17, 20)}-${h.slice(20, 32)}`;
}

/** An S3 on-failure destination: one object per discarded batch, records included. */
export function s3OnFailureDestination(opts: {
  readonly s3: S3Client;
  readonly bucket: string;
  readonly esmUuid: string;
  /** @default the time of the failure */
  readonly now?: () => Date;
}): (failure: KafkaBatchFailure) => Promise<void> {
  return async (failure) => {
    const at = opts.now?.() ?? new Date();
    await opts.s3.send(
      new PutObjectCommand({
        Bucket: opts.bucket,
        Key: kafkaFailureObjectKey(opts.esmUuid, failure.topicPartition, at),
        Body: JSON.stringify(kafkaFailureObject(failure)),
        ContentType: 'application/json',
      }),
    );
  };
}

/** An SQS on-failure destination: the invocation record only (offsets, no records), as Lambda sends it. */
export function sqsOnFailureDestination(opts: {
  readonly sqs: SQSClient;
  readonly queueUrl: string;
}): (failure: KafkaBatchFailure) => Promise<void> {
  return async (failure) => {
    await opts.sqs.send(
      new SendMessageCommand({ QueueUrl: opts.queueUrl, MessageBody: JSON.stringify(failure.record) }),
    );
  };
}
