/**
 * The part of avro-js (CommonJS, untyped) this function uses: parsing a schema at cold start so a
 * wrong KAFKA_VALUE_SCHEMA fails loudly instead of quarantining every record. The Powertools Kafka
 * utility loads the same package to decode values.
 */
declare module 'avro-js' {
  export interface AvroType {
    fromBuffer(buffer: Buffer): unknown;
    toBuffer(value: unknown): Buffer;
  }
  const avro: { parse(schema: string | object): AvroType };
  export default avro;
}
