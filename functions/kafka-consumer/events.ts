import * as z from 'zod';
import { InvalidMessageError } from '#shared/errors.ts';

/**
 * The event the Lambda Kafka event source hands the function, for Amazon MSK (`aws:kafka`) and
 * self-managed Apache Kafka (`SelfManagedKafka`): records grouped by `<topic>-<partition>`, key and
 * value base64-encoded (either may be absent or null), header values as byte arrays.
 * See https://docs.aws.amazon.com/lambda/latest/dg/with-msk.html and .../with-kafka.html.
 */
const SchemaMetadataSchema = z.object({ dataFormat: z.string(), schemaId: z.string().optional() }).loose();

export const KafkaEventRecordSchema = z
  .object({
    topic: z.string().min(1),
    partition: z.number().int().nonnegative(),
    offset: z.number().int().nonnegative(),
    timestamp: z.number(),
    timestampType: z.enum(['CREATE_TIME', 'LOG_APPEND_TIME']),
    key: z.string().nullish(),
    value: z.string().nullish(),
    headers: z.array(z.record(z.string(), z.array(z.number().int()))).nullish(),
    valueSchemaMetadata: SchemaMetadataSchema.optional(),
    keySchemaMetadata: SchemaMetadataSchema.optional(),
  })
  .loose();
export type KafkaEventRecord = z.infer<typeof KafkaEventRecordSchema>;

export const KafkaEventSchema = z
  .object({
    eventSource: z.enum(['aws:kafka', 'SelfManagedKafka']),
    eventSourceArn: z.string().optional(),
    bootstrapServers: z.string().optional(),
    records: z.record(z.string(), z.array(KafkaEventRecordSchema)),
  })
  .loose();
export type KafkaEvent = z.infer<typeof KafkaEventSchema>;

/**
 * Checks the envelope and each record's position (topic, partition, offset). Only AWS builds this
 * event, so a mismatch is a platform or emulator bug: it throws InvalidMessageError and the batch
 * goes to the event source's retry and on-failure destination. Record *contents* are not judged here.
 */
export function parseKafkaEvent(event: unknown): KafkaEvent {
  const parsed = KafkaEventSchema.safeParse(event);
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    throw new InvalidMessageError(
      `not a Kafka event: ${issue ? `${issue.path.join('.') || 'event'}: ${issue.message}` : 'invalid'}`,
    );
  }
  return parsed.data;
}

/** `pulse_signals-0@15-17, pulse_signals-1@4-4`: what a log line needs to find the batch again. */
export function describeOffsetRanges(event: KafkaEvent): string {
  return Object.values(event.records)
    .filter((records) => records.length > 0)
    .map((records) => {
      const offsets = records.map((r) => r.offset);
      const first = records[0];
      return `${first?.topic}-${first?.partition}@${Math.min(...offsets)}-${Math.max(...offsets)}`;
    })
    .join(', ');
}
