import { ENV } from '#shared/contract.ts';
import type { PulseDeployment } from './props.ts';

/**
 * The kafka-consumer's value settings as its environment (value format, schema, message type and the
 * per-topic field mappings): one mapping, which the stack (infra/producers.ts) and the offline runtime
 * (local/runtime/runtime.ts) both use, so `kafkaConsumer` reaches the function the same way on AWS and
 * offline. The schema registry comes from the Kafka source, not from these props, and is set by each of them.
 */
export function kafkaConsumerEnvironment(k: PulseDeployment['kafkaConsumer']): Record<string, string> {
  return {
    [ENV.kafkaValueFormat]: k.valueFormat,
    ...(k.valueSchema ? { [ENV.kafkaValueSchema]: k.valueSchema } : {}),
    ...(k.valueMessageType ? { [ENV.kafkaValueMessageType]: k.valueMessageType } : {}),
    ...(k.mappings ? { [ENV.kafkaMappings]: JSON.stringify(k.mappings) } : {}),
  };
}
