import { DynamoDBClient } from '@aws-sdk/client-dynamodb';
import { S3Client } from '@aws-sdk/client-s3';
import { SQSClient } from '@aws-sdk/client-sqs';
import { DynamoDBDocumentClient } from '@aws-sdk/lib-dynamodb';
import { type AwsClients, DOC_TRANSLATE_CONFIG } from '#shared/clients.ts';

const common = { region: 'us-east-1', credentials: { accessKeyId: 'test', secretAccessKey: 'test' } };

/** Real SDK clients, shaped as the offline run builds them, for a test to mock per instance. */
export function mockableClients(): AwsClients {
  const ddb = new DynamoDBClient(common);
  return {
    s3: new S3Client({ ...common, forcePathStyle: true }),
    sqs: new SQSClient(common),
    ddb,
    doc: DynamoDBDocumentClient.from(ddb, DOC_TRANSLATE_CONFIG),
  };
}
