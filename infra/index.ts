/**
 * The package root (`import { PulseIngest } from 'pulse-ingest'`): the construct that builds the whole
 * pipeline, its props, and the project's own stack and context reader for apps that want them as they are.
 */

export { type PulseAppContext, PulseContextError, pulseContext } from './context.ts';
export {
  type BucketNotifications,
  type ExistingBucketSource,
  ExistingBuckets,
} from './existing-buckets.ts';
export type { KafkaSchemaRegistry } from './kafka-schema-registry.ts';
export type {
  ConsumedQueueProps,
  DatabaseSource,
  FunctionSizeProps,
  KafkaPollers,
  KafkaSource,
  PulseDeployment,
  PulseTuningProps,
} from './props.ts';
export { PulsePropsError, resolveDeployment } from './props.ts';
export { AccountBoundQueueDestination, PulseIngest, type PulseIngestProps } from './pulse-ingest.ts';
export { PulseStack, type PulseStackProps, stackNameFor } from './pulse-stack.ts';
