import { CloudFormationClient } from '@aws-sdk/client-cloudformation';
import { CloudWatchLogsClient } from '@aws-sdk/client-cloudwatch-logs';
import { DynamoDBClient } from '@aws-sdk/client-dynamodb';
import { EC2Client } from '@aws-sdk/client-ec2';
import { LambdaClient } from '@aws-sdk/client-lambda';
import { S3Client } from '@aws-sdk/client-s3';
import { SecretsManagerClient } from '@aws-sdk/client-secrets-manager';
import { SQSClient } from '@aws-sdk/client-sqs';
import { STSClient } from '@aws-sdk/client-sts';
import { DynamoDBDocumentClient } from '@aws-sdk/lib-dynamodb';
import { DOC_TRANSLATE_CONFIG } from '#shared/clients.ts';
import type { DoctorAwsClients } from './doctor-aws.ts';

/** The clients of `pulse doctor --stack`, with the default credentials and the given (or default) region. */
export function doctorClients(region?: string): DoctorAwsClients & { close(): void } {
  const config = region ? { region } : {};
  const ddb = new DynamoDBClient(config);
  const c = {
    sts: new STSClient(config),
    cfn: new CloudFormationClient(config),
    s3: new S3Client(config),
    sqs: new SQSClient(config),
    doc: DynamoDBDocumentClient.from(ddb, DOC_TRANSLATE_CONFIG),
    lambda: new LambdaClient(config),
    ec2: new EC2Client(config),
    secrets: new SecretsManagerClient(config),
    logs: new CloudWatchLogsClient(config),
  };
  return {
    ...c,
    // The document client does not own the DynamoDB client it wraps: both are closed.
    close: () => {
      for (const client of [c.sts, c.cfn, c.s3, c.sqs, c.doc, ddb, c.lambda, c.ec2, c.secrets, c.logs])
        client.destroy();
    },
  };
}
