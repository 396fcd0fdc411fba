import { DynamoDBClient } from '@aws-sdk/client-dynamodb';
import { EventBridgeClient } from '@aws-sdk/client-eventbridge';
import { S3Client } from '@aws-sdk/client-s3';
import { SQSClient } from '@aws-sdk/client-sqs';
import { DynamoDBDocumentClient } from '@aws-sdk/lib-dynamodb';
import { type AwsClients, DOC_TRANSLATE_CONFIG } from '#shared/clients.ts';
import { SQS_CLIENT_OPTIONS } from '#shared/sqs-protocol.ts';

/** The region the offline runtime uses; emulated ARNs and event records carry it. */
export const LOCAL_REGION = 'us-east-1';

/** Dummy credentials: moto accepts any, but the SDK refuses to sign without some. */
export const LOCAL_CREDENTIALS = { accessKeyId: 'test', secretAccessKey: 'test' } as const;

export interface MakeClientsOptions {
  /** SDK attempts per call (standard retry mode). @default 3 */
  readonly maxAttempts?: number;
}

/** The functions' clients ({@link AwsClients}) and what the offline run's resources need besides. */
export interface LocalClients extends AwsClients {
  /** EventBridge: the rule that routes the Kafka failures bucket's events to its notices queue. */
  readonly events: EventBridgeClient;
}

/**
 * AWS clients pointed at a local emulator (for example `http://127.0.0.1:5000`), shaped like the
 * functions' own clients ({@link AwsClients}) so they can be passed to the same logic.
 */
export function makeClients(endpoint: string, options: MakeClientsOptions = {}): LocalClients {
  const common = {
    endpoint,
    region: LOCAL_REGION,
    credentials: LOCAL_CREDENTIALS,
    maxAttempts: options.maxAttempts ?? 3,
  };
  const s3 = new S3Client({ ...common, forcePathStyle: true });
  const sqs = new SQSClient({ ...common, ...SQS_CLIENT_OPTIONS });
  const ddb = new DynamoDBClient(common);
  const doc = DynamoDBDocumentClient.from(ddb, DOC_TRANSLATE_CONFIG);
  const events = new EventBridgeClient(common);
  return { s3, sqs, ddb, doc, events };
}

/** Closes the clients' sockets so a process (or a test worker) can exit promptly. */
export function destroyClients(clients: AwsClients & { readonly events?: EventBridgeClient }): void {
  clients.events?.destroy();
  clients.doc.destroy();
  clients.ddb.destroy();
  clients.sqs.destroy();
  clients.s3.destroy();
}
