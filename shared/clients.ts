import { DynamoDBClient } from '@aws-sdk/client-dynamodb';
import { S3Client } from '@aws-sdk/client-s3';
import { SQSClient } from '@aws-sdk/client-sqs';
import { DynamoDBDocumentClient } from '@aws-sdk/lib-dynamodb';
import { recordAwsCalls } from './aws-call-log.ts';
import type { ClientConfig } from './config.ts';
import { SQS_CLIENT_OPTIONS } from './sqs-protocol.ts';

/**
 * AWS clients, created once per cold start by a handler module and passed into the logic.
 * The SDK's standard retry mode (with backoff and jitter) covers throttling and 5xx on whole calls.
 * `AWS_ENDPOINT_URL` (read by the SDK itself) points them at local emulators offline.
 */
export interface AwsClients {
  readonly s3: S3Client;
  readonly sqs: SQSClient;
  readonly ddb: DynamoDBClient;
  readonly doc: DynamoDBDocumentClient;
}

const MAX_ATTEMPTS = 5;

/**
 * How the document clients translate items. Numbers are doubles everywhere in Pulse (a series' mean and
 * M2 grow past 2^53 with values of a few hundred million): written as they are, read back as numbers.
 * The SDK's defaults refuse to write a number past 2^53 and read one back as a BigInt, which fails for
 * `2e+16`: a series holding one could never be updated again.
 */
export const DOC_TRANSLATE_CONFIG = {
  marshallOptions: {
    removeUndefinedValues: true,
    convertClassInstanceToMap: false,
    allowImpreciseNumbers: true,
  },
  unmarshallOptions: { wrapNumbers: (text: string) => Number(text) },
} as const;

/**
 * The clients of the function `fn` (its folder name under functions/). When the configuration asks for it
 * (tests only), their calls are recorded for the IAM parity test.
 */
export function createClients(config: ClientConfig, fn: string): AwsClients {
  const s3 = new S3Client({ forcePathStyle: config.s3ForcePathStyle, maxAttempts: MAX_ATTEMPTS });
  const sqs = new SQSClient({ ...SQS_CLIENT_OPTIONS, maxAttempts: MAX_ATTEMPTS });
  const ddb = new DynamoDBClient({ maxAttempts: MAX_ATTEMPTS });
  // The document client shares the DynamoDB client's middleware stack, so recording `ddb` covers both.
  recordAwsCalls([s3, sqs, ddb], config.awsCallLog, fn);
  const doc = DynamoDBDocumentClient.from(ddb, DOC_TRANSLATE_CONFIG);
  return { s3, sqs, ddb, doc };
}
