import { RemovalPolicy } from 'aws-cdk-lib';
import { BillingMode, TableEncryption } from 'aws-cdk-lib/aws-dynamodb';
import { BlockPublicAccess, BucketEncryption } from 'aws-cdk-lib/aws-s3';

/**
 * What every bucket of the stack has, whatever it holds: server-side encryption, no public access, TLS only,
 * kept when the stack is deleted. Spread into a bucket's props first; the bucket adds what is its own.
 */
export const SECURE_BUCKET = {
  encryption: BucketEncryption.S3_MANAGED,
  blockPublicAccess: BlockPublicAccess.BLOCK_ALL,
  enforceSSL: true,
  removalPolicy: RemovalPolicy.RETAIN,
} as const;

/**
 * What every table of the stack has: on-demand, point-in-time recovery, encryption at rest, kept when the
 * stack is deleted. Spread into a table's props first; the table adds its keys and what is its own.
 */
export const SECURE_TABLE = {
  billingMode: BillingMode.PAY_PER_REQUEST,
  pointInTimeRecoverySpecification: { pointInTimeRecoveryEnabled: true },
  encryption: TableEncryption.AWS_MANAGED,
  removalPolicy: RemovalPolicy.RETAIN,
} as const;
