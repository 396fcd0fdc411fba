/**
 * Recorded AWS calls (shared/aws-call-log.ts) turned into what IAM authorizes: for each call, the
 * action(s) it needs, on which resource ARN, with which condition keys; and what a call's outcome implies
 * it needed besides (S3's 404 for a missing object).
 */
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { AwsCallRecord, ItemRef } from '#shared/aws-call-log.ts';
import { ACCOUNT, REGION } from './template.ts';

/** One authorization a call needs. */
export interface Authorization {
  readonly fn: string;
  /** The file of the record it comes from. */
  readonly file?: string;
  readonly action: string;
  /** The emulated resource's ARN. */
  readonly resource: string;
  /** Request condition keys (`s3:prefix`, `dynamodb:LeadingKeys`, …). */
  readonly context: Readonly<Record<string, string | string[]>>;
  /** The call, as a person reads it: `S3 GetObject s3://b/k → NoSuchKey 404`. */
  readonly call: string;
  /** Why a call needs this besides its own action (an implied requirement), if it does. */
  readonly implied?: string;
}

/** A LeadingKeys value for items a record left out: no condition on partition keys can allow it. */
export const UNRECORDED_KEY = '<items left out of the record>';

/** A record and the file it was read from (one per process and module instance of the recorder). */
export type RecordedCall = AwsCallRecord & { readonly file?: string };

/** Every record in a call-log directory (every process's file). */
export function readCallLog(dir: string): RecordedCall[] {
  if (!existsSync(dir)) return [];
  return readdirSync(dir)
    .filter((f) => f.endsWith('.ndjson'))
    .flatMap((file) =>
      readFileSync(join(dir, file), 'utf8')
        .split('\n')
        .filter(Boolean)
        .map((line) => ({ ...(JSON.parse(line) as AwsCallRecord), file })),
    );
}

/**
 * S3 answers 404 for a missing object only to a caller that may also list the bucket; to any other it
 * answers 403 AccessDenied (GetObject and HeadObject API reference, "Permissions"). AWS does not document
 * whether that check carries an `s3:prefix`: it is evaluated both without one and with the object's key.
 */
const NOT_FOUND_NEEDS_LIST =
  'S3 answers 404 (not 403) for a missing object only to a caller allowed s3:ListBucket on the bucket';

const s3Object = (bucket: string, key: string) => `arn:aws:s3:::${bucket}/${key}`;
const s3Bucket = (bucket: string) => `arn:aws:s3:::${bucket}`;

function queueArn(url: string): string {
  const [account, name] = new URL(url).pathname.split('/').filter(Boolean);
  return `arn:aws:sqs:${REGION}:${account}:${name}`;
}

const tableArn = (table: string, index?: string) =>
  `arn:aws:dynamodb:${REGION}:${ACCOUNT}:table/${table}${index ? `/index/${index}` : ''}`;

/** IAM actions of operations that have no action of their own name. */
const ACTION_OF: Record<string, Record<string, string>> = {
  S3: {
    HeadObject: 'GetObject',
    CreateMultipartUpload: 'PutObject',
    UploadPart: 'PutObject',
    CompleteMultipartUpload: 'PutObject',
    ListObjectsV2: 'ListBucket',
    ListObjects: 'ListBucket',
    ListObjectVersions: 'ListBucketVersions',
    ListMultipartUploads: 'ListBucketMultipartUploads',
    ListParts: 'ListMultipartUploadParts',
    HeadBucket: 'ListBucket',
  },
  SQS: {
    SendMessageBatch: 'SendMessage',
    DeleteMessageBatch: 'DeleteMessage',
    ChangeMessageVisibilityBatch: 'ChangeMessageVisibility',
  },
};

const SERVICE_PREFIX: Record<string, string> = {
  S3: 's3',
  SQS: 'sqs',
  DynamoDB: 'dynamodb',
  SecretsManager: 'secretsmanager',
};

/** The action a DynamoDB operation needs for one item: a transaction's items need their own. */
function itemAction(op: string, item: { readonly op: string }): string {
  if (op === 'TransactWriteItems' || op === 'TransactGetItems') {
    return `dynamodb:${item.op === 'ConditionCheck' ? 'ConditionCheckItem' : `${item.op}Item`}`;
  }
  return `dynamodb:${op}`;
}

/**
 * The partition key value of an item: its key attribute, or for a Query the value its key condition
 * compares the key attribute with (`pk = :pk`). Undefined when the record cannot say.
 */
function partitionValue(op: string, item: ItemRef, keyAttribute: string | undefined, keyCondition?: string) {
  if (!keyAttribute) return undefined;
  if (op !== 'Query') return item.attributes[keyAttribute];
  const placeholder = new RegExp(`(?:^|[\\s(])${keyAttribute}\\s*=\\s*(:[A-Za-z0-9_]+)`).exec(
    keyCondition ?? '',
  )?.[1];
  return placeholder ? item.attributes[placeholder] : undefined;
}

/**
 * CopyObject writes its destination (s3:PutObject) and reads its source, `bucket/key?versionId=…` URL-encoded:
 * s3:GetObjectVersion with a version id, else s3:GetObject (CopyObject API reference, "Permissions").
 */
function copyAuthorizations(
  r: RecordedCall['request'],
  auth: (action: string, resource: string) => Authorization,
): Authorization[] {
  const source = String(r.CopySource ?? '');
  const [path = '', query = ''] = source.split('?');
  const decoded = decodeURIComponent(path.replace(/^\//, ''));
  const slash = decoded.indexOf('/');
  const versioned = new URLSearchParams(query).has('versionId');
  return [
    auth('s3:PutObject', s3Object(r.Bucket ?? '', r.Key ?? '')),
    auth(
      versioned ? 's3:GetObjectVersion' : 's3:GetObject',
      s3Object(decoded.slice(0, slash), decoded.slice(slash + 1)),
    ),
  ];
}

export interface CallContext {
  /** The partition key attribute of an emulated table, from the template's key schema. */
  partitionKeyOf(table: string): string | undefined;
}

/** What one recorded call needs IAM to allow. Throws on a service this does not know. */
export function authorizationsOf(record: RecordedCall, ctx: CallContext): Authorization[] {
  const { fn, file, service, op, request: r } = record;
  const prefix = SERVICE_PREFIX[service];
  if (!prefix)
    throw new Error(`${fn}: no IAM mapping for ${service} calls (${op}): add one to ${import.meta.url}`);
  const action = `${prefix}:${ACTION_OF[service]?.[op] ?? op}`;
  const call = `${service} ${op} ${describe(record)} → ${record.outcome}`;
  const auth = (a: string, resource: string, context: Record<string, string | string[]> = {}) => ({
    fn,
    ...(file ? { file } : {}),
    action: a,
    resource,
    context,
    call,
  });

  if (service === 'S3') {
    const bucket = r.Bucket ?? '';
    if (op === 'DeleteObjects') {
      return (record.objects ?? []).map((o) =>
        auth(o.VersionId ? 's3:DeleteObjectVersion' : 's3:DeleteObject', s3Object(bucket, o.Key ?? '')),
      );
    }
    if (r.Key === undefined) {
      return [auth(action, s3Bucket(bucket), r.Prefix !== undefined ? { 's3:prefix': r.Prefix } : {})];
    }
    if (op === 'CopyObject') return copyAuthorizations(r, auth);
    const versioned =
      r.VersionId !== undefined &&
      ['s3:GetObject', 's3:DeleteObject', 's3:GetObjectTagging', 's3:PutObjectTagging'].includes(action)
        ? 'Version'
        : '';
    const own = auth(`${action}${versioned}`, s3Object(bucket, r.Key));
    const notFound = / 404$/.test(record.outcome) && action === 's3:GetObject';
    if (!notFound) return [own];
    const list = (context: Record<string, string>) => ({
      ...auth('s3:ListBucket', s3Bucket(bucket), context),
      implied: NOT_FOUND_NEEDS_LIST,
    });
    return [own, list({}), list({ 's3:prefix': r.Key })];
  }

  if (service === 'SQS') return [auth(action, queueArn(r.QueueUrl ?? ''))];

  if (service === 'SecretsManager') return [auth(action, r.SecretId ?? '')];

  // DynamoDB: each item it names (a batch or transaction, several); a table-level call, the table.
  const units: Authorization[] = [];
  // A transaction's items are each authorized as their own operation, within the transaction.
  const enclosing: Record<string, string> = op.startsWith('Transact')
    ? { 'dynamodb:EnclosingOperation': op }
    : {};
  for (const item of record.items ?? []) {
    const value = partitionValue(op, item, ctx.partitionKeyOf(item.table), r.KeyConditionExpression);
    units.push(
      auth(itemAction(op, item), tableArn(item.table, r.IndexName), {
        'dynamodb:LeadingKeys': [value ?? UNRECORDED_KEY],
        ...enclosing,
      }),
    );
  }
  for (const kind of record.moreItems ?? []) {
    units.push(
      auth(itemAction(op, kind), tableArn(kind.table, r.IndexName), {
        'dynamodb:LeadingKeys': [UNRECORDED_KEY],
        ...enclosing,
      }),
    );
  }
  if (!record.tables?.length && r.TableName) units.push(auth(action, tableArn(r.TableName, r.IndexName)));
  return units;
}

function describe(record: AwsCallRecord): string {
  const r = record.request;
  if (r.Bucket) return `s3://${r.Bucket}/${r.Key ?? (r.Prefix !== undefined ? `${r.Prefix}*` : '')}`;
  if (r.QueueUrl) return r.QueueUrl;
  if (r.SecretId) return r.SecretId;
  return [...(record.tables ?? []), ...(r.TableName ? [r.TableName] : [])].join(', ');
}
