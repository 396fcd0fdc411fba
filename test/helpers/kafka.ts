/**
 * Kafka events in the shapes the Lambda event source sends (MSK `aws:kafka` and `SelfManagedKafka`),
 * for unit tests: values and keys base64-encoded, header values as byte arrays, records grouped by
 * `<topic>-<partition>` with offsets counted per partition.
 */
import { kafkaConsumer } from '@aws-lambda-powertools/kafka';
import type {
  ConsumerRecord,
  ConsumerRecords,
  MSKEvent,
  SchemaConfig,
} from '@aws-lambda-powertools/kafka/types';
import type { KafkaEvent, KafkaEventRecord } from '../../functions/kafka-consumer/events.ts';
import { LOCAL_ACCOUNT_ID } from '../../local/event-sources/lambda-context.ts';
import { lambdaContextFactory } from './factories.ts';

export const TEST_CLUSTER_ARN = `arn:aws:kafka:us-east-1:${LOCAL_ACCOUNT_ID}:cluster/pulse/751d2973-a626-431c-9d4e-d7975eb44dd7-2`;
export const TEST_BOOTSTRAP_SERVERS =
  'b-1.pulse.a1bcde.c1.kafka.us-east-1.amazonaws.com:9092,b-2.pulse.a1bcde.c1.kafka.us-east-1.amazonaws.com:9092';

export interface KafkaRecordInput {
  /** @default 'pulse_signals' */
  readonly topic?: string;
  /** @default 0 */
  readonly partition?: number;
  /** @default the previous offset of the partition + 1, starting at 100 */
  readonly offset?: number;
  /**
   * A string is sent as its UTF-8 bytes, bytes as they are, `null` as a tombstone; anything else is
   * JSON-encoded. Use {@link rawValue} for a value field that is not valid base64.
   */
  readonly value: unknown;
  /** The `value` field exactly as the event carries it (base64 or not). */
  readonly rawValue?: string;
  /** Omitted from the record when undefined; `null` when null. */
  readonly key?: string | Uint8Array | null;
  /** A string is sent as its UTF-8 bytes, bytes as they are. */
  readonly headers?: readonly Readonly<Record<string, string | Uint8Array>>[];
  /** @default 1_718_000_000_000 + offset */
  readonly timestamp?: number;
  readonly timestampType?: 'CREATE_TIME' | 'LOG_APPEND_TIME';
  /**
   * What the event source mapping adds when it validates against a schema registry: a numeric
   * `schemaId` for Confluent, a UUID for Glue. Omitted from the record when undefined.
   */
  readonly valueSchemaMetadata?: { readonly dataFormat: string; readonly schemaId?: string };
}

export interface KafkaEventOptions {
  /** @default 'aws:kafka' */
  readonly eventSource?: 'aws:kafka' | 'SelfManagedKafka';
}

/** Base64 of a value as a producer would send it (see {@link KafkaRecordInput.value}). */
export function encodeKafkaValue(value: unknown): string {
  if (typeof value === 'string') return Buffer.from(value, 'utf8').toString('base64');
  if (value instanceof Uint8Array) return Buffer.from(value).toString('base64');
  return Buffer.from(JSON.stringify(value), 'utf8').toString('base64');
}

/** A Kafka event holding these records. */
export function kafkaEventFactory(
  records: readonly KafkaRecordInput[],
  options: KafkaEventOptions = {},
): KafkaEvent {
  const grouped: Record<string, KafkaEventRecord[]> = {};
  const next = new Map<string, number>();
  for (const input of records) {
    const topic = input.topic ?? 'pulse_signals';
    const partition = input.partition ?? 0;
    const group = `${topic}-${partition}`;
    const offset = input.offset ?? next.get(group) ?? 100;
    next.set(group, offset + 1);
    const record: KafkaEventRecord = {
      topic,
      partition,
      offset,
      timestamp: input.timestamp ?? 1_718_000_000_000 + offset,
      timestampType: input.timestampType ?? 'CREATE_TIME',
      ...(input.key !== undefined ? { key: input.key === null ? null : encodeKafkaValue(input.key) } : {}),
      value: input.rawValue ?? (input.value === null ? null : encodeKafkaValue(input.value)),
      headers: (input.headers ?? []).map((h) =>
        Object.fromEntries(
          Object.entries(h).map(([k, v]) => [k, [...(typeof v === 'string' ? Buffer.from(v, 'utf8') : v)]]),
        ),
      ),
      ...(input.valueSchemaMetadata ? { valueSchemaMetadata: { ...input.valueSchemaMetadata } } : {}),
    };
    grouped[group] ??= [];
    grouped[group].push(record);
  }
  const eventSource = options.eventSource ?? 'aws:kafka';
  return eventSource === 'aws:kafka'
    ? {
        eventSource,
        eventSourceArn: TEST_CLUSTER_ARN,
        bootstrapServers: TEST_BOOTSTRAP_SERVERS,
        records: grouped,
      }
    : { eventSource, bootstrapServers: TEST_BOOTSTRAP_SERVERS, records: grouped };
}

/** The records as the Powertools `kafkaConsumer` wrapper hands them to a handler (values decoded lazily). */
export async function consumerRecordsOf(
  event: KafkaEvent,
  schemaConfig?: SchemaConfig,
): Promise<ConsumerRecord<unknown, unknown>[]> {
  const unwrap = kafkaConsumer(async (e: ConsumerRecords<unknown, unknown>) => e.records, schemaConfig);
  return (await unwrap(event as MSKEvent, lambdaContextFactory())) as ConsumerRecord<unknown, unknown>[];
}
