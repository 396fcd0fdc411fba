import type { ConsumerRecord } from '@aws-lambda-powertools/kafka/types';
import type { SchemaRegistryEnv } from '#shared/kafka-registry.ts';
import { readFraming } from '#shared/registry-wire.ts';

/**
 * Why a record must be quarantined because the schema registry did not validate it, or undefined.
 *
 * With a registry on the event source mapping every value Lambda invokes the function with carries
 * `valueSchemaMetadata`. One without it never went through the registry: the mapping sent it to the
 * on-failure destination (`SCHEMA_NOT_FOUND`, `DESERIALIZATION_ERROR`) and `pulse kafka replay` brings it
 * back from there with its bytes as the producer wrote them. Its schema id is read from those bytes
 * (shared/registry-wire.ts) so the reason names it, with the record's topic, partition and offset.
 */
export function unvalidatedReason(
  record: ConsumerRecord<unknown, unknown>,
  registry: SchemaRegistryEnv | undefined,
): string | undefined {
  if (!registry?.validate.includes('VALUE')) return undefined;
  if (record.valueSchemaMetadata !== undefined) return undefined;
  const value = record.originalValue;
  if (value === null || value === undefined) return undefined;
  const where = `(topic ${record.topic}, partition ${record.partition}, offset ${record.offset})`;
  try {
    const framing = readFraming(Buffer.from(value, 'base64'));
    const id =
      framing.kind === 'glue'
        ? `Glue schema version ${framing.schemaId}`
        : `Confluent schema id ${framing.schemaId}`;
    const other =
      framing.kind !== registry.kind
        ? `, framed for a ${framing.kind} registry, not the ${registry.kind} one`
        : '';
    return `value not validated by the schema registry: ${id}${other} is unknown to the registry or the value does not deserialize with it (the event source mapping discarded it as SCHEMA_NOT_FOUND or DESERIALIZATION_ERROR) ${where}`;
  } catch (err) {
    return `value not validated by the schema registry and it carries no schema id: ${(err as Error).message} ${where}`;
  }
}
