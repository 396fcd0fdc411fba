import type { ConsumerRecord } from '@aws-lambda-powertools/kafka/types';
import type { S3Client } from '@aws-sdk/client-s3';
import type { SQSClient } from '@aws-sdk/client-sqs';
import { METRIC } from '#shared/contract.ts';
import { describeError, isTransient } from '#shared/errors.ts';
import {
  type FieldMapping,
  MappingConflict,
  mapRecord,
  type PreparedMapping,
  prepareMapping,
} from '#shared/field-mapping.ts';
import type { SchemaRegistryEnv } from '#shared/kafka-registry.ts';
import { type Logger, type Metrics, MetricUnit } from '#shared/observability.ts';
import { rejectsKey } from '#shared/quarantine.ts';
import { type SenderOptions, SignalSender } from '#shared/sender.ts';
import { RejectsBatch, SignalSink } from '#shared/sink.ts';
import { clip, type DecodeResult, decodeValue, type ValueFormat } from './decode.ts';
import { recordAttributes, withRecordAttributes } from './record-attributes.ts';
import { unvalidatedReason } from './registry.ts';

export interface KafkaConsumeConfig {
  readonly signalsQueueUrl: string;
  readonly quarantineBucket: string;
  readonly valueFormat: ValueFormat;
  readonly maxMessageBytes: number;
  /** The schema registry the event source mapping validates values through, when there is one. */
  readonly schemaRegistry?: SchemaRegistryEnv;
  /** Per topic, the field mapping of its values (`KAFKA_MAPPINGS`). @default none */
  readonly mappings?: Readonly<{ [topic: string]: FieldMapping }>;
}

/** What consuming needs from the outside world; the handler builds it once per cold start. */
export interface KafkaConsumeDeps {
  readonly s3: S3Client;
  readonly sqs: SQSClient;
  readonly logger: Logger;
  readonly metrics: Metrics;
  readonly config: KafkaConsumeConfig;
  /** Backoff and batching of the sender; tests shorten the delays. */
  readonly senderOptions?: Omit<SenderOptions, 'maxMessageBytes'>;
}

export interface PartitionSummary {
  readonly topic: string;
  readonly partition: number;
  readonly firstOffset: number;
  readonly lastOffset: number;
  readonly sent: number;
  readonly quarantined: number;
  /** The quarantine object, when something was rejected. */
  readonly rejectsKey?: string;
}

type Record = ConsumerRecord<unknown, unknown>;

/** `kafka:<topic>:<partition>:<offset>`: the record's origin ref, and the signal id unless it brings its own. */
export function kafkaRef(topic: string, partition: number, offset: number | string): string {
  return `kafka:${topic}:${partition}:${offset}`;
}

/**
 * Consumes one Kafka batch, one topic-partition after another, each in offset order: decode, validate
 * with the shared signal schema, pack and send the valid signals (one sender per topic-partition), and
 * quarantine the rest with topic, partition, offset and reason. A bad record never fails the batch, so
 * it never blocks its partition. Only a failure to send or to quarantine (after the SDK's and the
 * sender's retries) throws: the event source then retries the batch, whose offsets yield the same
 * signal ids, and the scorer drops the repeats.
 */
export async function consumeKafkaRecords(
  records: readonly Record[],
  deps: KafkaConsumeDeps,
): Promise<PartitionSummary[]> {
  const summaries: PartitionSummary[] = [];
  for (const group of groupByPartition(records)) {
    summaries.push(await consumePartition(group, deps));
  }
  return summaries;
}

function groupByPartition(records: readonly Record[]): Record[][] {
  const groups = new Map<string, Record[]>();
  for (const r of records) {
    const key = `${r.topic}\u0000${r.partition}`;
    const group = groups.get(key);
    if (group) group.push(r);
    else groups.set(key, [r]);
  }
  return [...groups.values()];
}

/** A partition group's topic, partition and the range of its offsets (whatever the order of its records). */
function partitionOf(records: readonly Record[]) {
  const first = records[0];
  if (!first) throw new Error('empty partition group');
  let firstOffset = first.offset;
  let lastOffset = first.offset;
  for (const r of records) {
    firstOffset = Math.min(firstOffset, r.offset);
    lastOffset = Math.max(lastOffset, r.offset);
  }
  const { topic, partition } = first;
  return { topic, partition, firstOffset, lastOffset, range: `${firstOffset}-${lastOffset}` };
}

async function consumePartition(records: Record[], deps: KafkaConsumeDeps): Promise<PartitionSummary> {
  const { logger, metrics, config } = deps;
  const { topic, partition, firstOffset, lastOffset, range } = partitionOf(records);
  logger.appendKeys({ kafkaTopicPartition: `${topic}-${partition}`, kafkaOffsets: range });
  try {
    const sender = new SignalSender(
      deps.sqs,
      config.signalsQueueUrl,
      { kind: 'kafka', ref: kafkaRef(topic, partition, range) },
      { ...deps.senderOptions, maxMessageBytes: config.maxMessageBytes, defaultSource: topic },
    );
    // Keyed by the whole batch's offsets: a retried batch rewrites the same object.
    const rejects = new RejectsBatch(deps.s3, config.quarantineBucket, () =>
      rejectsKey('kafka', `${topic}/${partition}/${range}`),
    );
    const sink = new SignalSink(sender, rejects, 0);
    const mapping = prepareMapping(config.mappings?.[topic]);
    for (const record of records) await consumeRecord(sink, record, config, mapping);
    let key: string | undefined;
    try {
      key = await sink.close();
    } catch (err) {
      logger.error('Kafka batch not delivered; the event source will retry it', {
        error: describeError(err),
        transient: isTransient(err),
      });
      throw err;
    }
    metrics.addMetric(METRIC.kafkaRecordsDecoded, MetricUnit.Count, sink.sent);
    metrics.addMetric(METRIC.kafkaRecordsQuarantined, MetricUnit.Count, sink.rejected);
    // Refs and counts only: record payloads and reasons (which quote values) stay in the quarantine.
    logger.info('Kafka records consumed', {
      records: records.length,
      sent: sink.sent,
      quarantined: sink.rejected,
      messages: sender.stats.messages,
      ...(key ? { rejectsKey: key, firstRejected: rejects.entries.slice(0, 5).map((r) => r.ref) } : {}),
    });
    return {
      topic,
      partition,
      firstOffset,
      lastOffset,
      sent: sink.sent,
      quarantined: sink.rejected,
      ...(key ? { rejectsKey: key } : {}),
    };
  } finally {
    logger.removeKeys(['kafkaTopicPartition', 'kafkaOffsets']);
  }
}

/**
 * Decodes one record and hands it to the sink with its key and headers as attributes: sent, or
 * quarantined with its offset and reason.
 */
async function consumeRecord(
  sink: SignalSink,
  record: Record,
  config: Pick<KafkaConsumeConfig, 'valueFormat' | 'schemaRegistry'>,
  mapping: PreparedMapping | undefined,
): Promise<void> {
  const { valueFormat } = config;
  const ref = kafkaRef(record.topic, record.partition, record.offset);
  const unvalidated = unvalidatedReason(record, config.schemaRegistry);
  if (unvalidated) {
    await sink.reject({ ref, reason: unvalidated, raw: clip(record.originalValue ?? '') });
    return;
  }
  const decoded = mapDecoded(decodeValue(record, valueFormat), mapping);
  if (!decoded.ok) {
    await sink.reject({
      ref,
      reason: decoded.reason,
      ...(decoded.raw !== undefined ? { raw: decoded.raw } : {}),
    });
    return;
  }
  // The key and headers travel as attributes (record-attributes.ts names them).
  const withRecord = withRecordAttributes(
    decoded.value,
    recordAttributes(record.originalKey, record.originalHeaders),
  );
  if (!withRecord.ok) {
    await sink.reject({ ref, reason: withRecord.reason, raw: decoded.raw });
    return;
  }
  await sink.add(
    withRecordTimestamp(withRecord.value, record.timestamp),
    { origin: { kind: 'kafka', ref }, defaultSource: record.topic },
    () => ({
      raw: decoded.raw,
      // Binary formats: the decoded record says more than its base64.
      ...(valueFormat !== 'json' ? { record: decoded.value } : {}),
    }),
  );
}

/** The topic's field mapping applied to a decoded value (an object; anything else is left to the schema). */
function mapDecoded(decoded: DecodeResult, mapping: PreparedMapping | undefined): DecodeResult {
  if (!decoded.ok || !mapping) return decoded;
  const v = decoded.value;
  if (typeof v !== 'object' || v === null || Array.isArray(v)) return decoded;
  const mapped = mapRecord(v as { [k: string]: unknown }, mapping);
  return mapped instanceof MappingConflict
    ? { ok: false, reason: mapped.error, raw: decoded.raw }
    : { ...decoded, value: mapped };
}

/**
 * A message without its own `timestamp` takes its Kafka record's (producer create time or broker
 * append time). That one is always epoch milliseconds, so it goes in as a Date: as a bare number the
 * normaliser's "below 1e12 means epoch seconds" rule, meant for payload timestamps, would read a
 * pre-2001 record timestamp as seconds. A negative one is Kafka's NO_TIMESTAMP (-1): the message then
 * has no timestamp at all and is quarantined as such ("timestamp is required").
 */
function withRecordTimestamp(value: unknown, timestamp: number | undefined): unknown {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) return value;
  const v = value as { timestamp?: unknown };
  if (v.timestamp !== undefined && v.timestamp !== null) return value;
  if (timestamp === undefined || !Number.isFinite(timestamp) || timestamp < 0) return value;
  return { ...value, timestamp: new Date(timestamp) };
}
