import { kafkaConsumer } from '@aws-lambda-powertools/kafka';
import type { ConsumerRecords, MSKEvent } from '@aws-lambda-powertools/kafka/types';
import { injectLambdaContext } from '@aws-lambda-powertools/logger/middleware';
import { logMetrics } from '@aws-lambda-powertools/metrics/middleware';
import middy from '@middy/core';
import type { Context } from 'aws-lambda';
import { createClients } from '#shared/clients.ts';
import { loadKafkaConsumerConfig } from '#shared/config.ts';
import { createObservability } from '#shared/observability.ts';
import { consumeKafkaRecords, type PartitionSummary } from './consumer.ts';
import { valueDecoder } from './decode.ts';
import { describeOffsetRanges, type KafkaEvent, parseKafkaEvent } from './events.ts';

const config = loadKafkaConsumerConfig();
const clients = createClients(config, 'kafka-consumer');
const { logger, metrics } = createObservability('kafka-consumer');
const decodeValues = await valueDecoder(config);

// The Powertools wrapper decodes lazily: each record's `value` getter decodes (and may throw) on access.
// Avro and Protobuf values get their getter from decodeValues (see valueDecoder for why not from the wrapper).
const consume = kafkaConsumer((event: ConsumerRecords<unknown, unknown>) =>
  consumeKafkaRecords(decodeValues(event.records), { ...clients, logger, metrics, config }),
);

const lambdaHandler = async (event: unknown, context: Context): Promise<PartitionSummary[]> => {
  const parsed = parseKafkaEvent(event);
  logger.appendKeys({ kafkaBatch: describeOffsetRanges(parsed) });
  try {
    // Self-managed events have the MSK shape minus the ARN; the utility reads only `records`.
    return (await consume(parsed as MSKEvent, context)) as PartitionSummary[];
  } finally {
    logger.removeKeys(['kafkaBatch']);
  }
};

/** MSK or self-managed Kafka event source; throws only when the batch must be retried. */
export const handler = middy<KafkaEvent, PartitionSummary[], Error, Context>(lambdaHandler)
  .use(injectLambdaContext(logger))
  .use(logMetrics(metrics));
