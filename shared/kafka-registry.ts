import * as z from 'zod';

/**
 * What the kafka-consumer is told of the schema registry the Kafka event source mapping validates
 * against (`KAFKA_SCHEMA_REGISTRY`, JSON): which registry, the record format Lambda delivers and which
 * parts of a record it validates. The stack writes it from `kafka.schemaRegistry`; the offline run's
 * event source emulation reads the same.
 */
export const SchemaRegistryEnvSchema = z.object({
  kind: z.enum(['confluent', 'glue']),
  recordFormat: z.enum(['JSON', 'SOURCE']),
  validate: z.array(z.enum(['KEY', 'VALUE'])).min(1),
});
export type SchemaRegistryEnv = z.infer<typeof SchemaRegistryEnvSchema>;
