import type { Template } from 'aws-cdk-lib/assertions';
import { describe, expect, it } from 'vitest';
import { DB_AND_MSK_CONTEXT, STACK_SHAPES, synthTemplate } from '../helpers/stacks.ts';

type Resource = { Type: string; Properties: Record<string, unknown> };
type Statement = { Effect: string; Action: string | string[]; Resource: unknown };
type Document = { Statement: Statement[] };

/**
 * The only actions allowed on "*". Lambda attaches a VPC function's network interfaces with these ec2
 * actions; AWS gives the Describe* actions no resource-level permissions and the interfaces do not
 * exist before Lambda creates them (the list of AWSLambdaVPCAccessExecutionRole, without its logs:*).
 */
const ALLOWED_ON_ANY_RESOURCE = [
  'ec2:AssignPrivateIpAddresses',
  'ec2:CreateNetworkInterface',
  'ec2:DeleteNetworkInterface',
  'ec2:DescribeNetworkInterfaces',
  'ec2:DescribeSubnets',
  'ec2:UnassignPrivateIpAddresses',
];

/**
 * AWS managed policies (their statements are not in the template, so each is named here with why):
 * AWSLambdaBasicExecutionRole on CDK's own bucket-notifications handler (its logs), and
 * AWSLambdaMSKExecutionRole, which CDK's ManagedKafkaEventSource attaches to the kafka-consumer: the
 * event source's pollers need its kafka:DescribeCluster(V2)/GetBootstrapBrokers and ec2 network
 * interface actions on "*" in the cluster's VPC.
 */
const MANAGED_POLICIES: Record<string, string[]> = {
  BucketNotificationsHandler: ['AWSLambdaBasicExecutionRole'],
  ProducersKafkaConsumer: ['AWSLambdaMSKExecutionRole'],
};

const resourcesOf = (t: Template) => t.toJSON().Resources as Record<string, Resource>;
const actionsOf = (s: Statement) => [s.Action].flat();
const refs = (roles: unknown) => ((roles ?? []) as { Ref: string }[]).map((r) => r.Ref);

/** Every statement of every identity policy in the template, with the role(s) it is attached to. */
function identityStatements(t: Template): { role: string; statement: Statement }[] {
  return Object.entries(resourcesOf(t)).flatMap(([id, r]) => {
    if (r.Type === 'AWS::IAM::Policy' || r.Type === 'AWS::IAM::ManagedPolicy') {
      const doc = r.Properties.PolicyDocument as Document;
      return refs(r.Properties.Roles).flatMap((role) =>
        doc.Statement.map((statement) => ({ role, statement })),
      );
    }
    if (r.Type === 'AWS::IAM::Role') {
      const inline = (r.Properties.Policies ?? []) as { PolicyDocument: Document }[];
      return inline.flatMap((p) => p.PolicyDocument.Statement.map((statement) => ({ role: id, statement })));
    }
    if (r.Type === 'AWS::IAM::User' || r.Type === 'AWS::IAM::Group') {
      throw new Error(`unexpected ${r.Type} ${id}: this test only walks roles`);
    }
    return [];
  });
}

/** The role of the function whose logical id starts with `prefix` (followed by the 8-digit hash). */
function roleOf(t: Template, prefix: string): string {
  const fn = Object.entries(resourcesOf(t)).find(
    ([id, r]) => r.Type === 'AWS::Lambda::Function' && new RegExp(`^${prefix}[0-9A-F]{8}$`).test(id),
  );
  if (!fn) throw new Error(`no function ${prefix}`);
  return (fn[1].Properties.Role as { 'Fn::GetAtt': [string, string] })['Fn::GetAtt'][0];
}

/** The sorted, distinct actions granted to a function's role by the template's policies. */
function actionsOfFunction(t: Template, prefix: string): string[] {
  const role = roleOf(t, prefix);
  const actions = identityStatements(t)
    .filter((s) => s.role === role && s.statement.Effect === 'Allow')
    .flatMap((s) => actionsOf(s.statement));
  return [...new Set(actions)].sort();
}

const LOGS = ['logs:CreateLogStream', 'logs:PutLogEvents'];
const QUARANTINE = ['s3:AbortMultipartUpload', 's3:PutObject'];
/** What CDK's SqsEventSource grants the consuming function on its queue. */
const SQS_EVENT_SOURCE = [
  'sqs:ChangeMessageVisibility',
  'sqs:DeleteMessage',
  'sqs:GetQueueAttributes',
  'sqs:GetQueueUrl',
  'sqs:ReceiveMessage',
];

describe.each(STACK_SHAPES)('IAM of the stack with %s', (_shape, context) => {
  const t = synthTemplate({ context });
  const statements = identityStatements(t);
  const withDbAndMsk = context === DB_AND_MSK_CONTEXT;

  it('grants no wildcard action ("*", "service:*" or any "*" in an action)', () => {
    // Act
    const actions = statements.flatMap((s) => actionsOf(s.statement));

    // Assess
    expect(actions.length).toBeGreaterThan(0);
    expect(actions.filter((a) => a.includes('*'))).toEqual([]);
  });

  it('grants an action on "*" only when AWS requires it (a VPC function’s network interfaces)', () => {
    // Act
    const onAny = statements.filter((s) => [s.statement.Resource].flat().includes('*'));

    // Assess
    for (const { statement } of onAny) {
      expect(statement.Effect).toBe('Allow');
      expect(actionsOf(statement).sort()).toEqual(ALLOWED_ON_ANY_RESOURCE);
    }
    // Only the poller in the database's VPC needs them.
    expect(onAny.map((s) => s.role)).toEqual(withDbAndMsk ? [roleOf(t, 'ProducersDbPoller')] : []);
  });

  it('puts a wildcard inside a resource only for object keys under incoming/, rejects/, staging/, scores/, scores-pending/, the Kafka failures bucket’s keys and the poller’s qualifiers', () => {
    // Prepare
    const allowed = [
      /^\/incoming\/\*$/,
      /^\/rejects\/\*$/,
      /^\/staging\/\*$/,
      /^\/scores\/\*$/,
      /^\/scores-pending\/\*$/,
      /^:\*$/,
    ];
    // The on-failure bucket holds only what the Kafka event source writes, under keys Lambda chooses.
    const kafkaFailures =
      /^\{"Fn::Join":\["",\[\{"Fn::GetAtt":\["ProducersKafkaFailuresBucket[0-9A-F]{8}","Arn"\]\},"\/\*"\]\]\}$/;

    // Act
    const parts = statements
      .flatMap((s) => [s.statement.Resource].flat())
      .filter((r) => r !== '*' && !kafkaFailures.test(JSON.stringify(r)))
      .flatMap((r) => JSON.stringify(r).match(/"[^"]*\*[^"]*"/g) ?? [])
      .map((p) => JSON.parse(p) as string);

    // Assess
    expect(parts.length).toBeGreaterThan(0);
    for (const part of parts)
      expect(
        allowed.some((re) => re.test(part)),
        part,
      ).toBe(true);
  });

  it('attaches only the AWS managed policies listed, each to the role it is for', () => {
    // Act
    const attached = Object.entries(resourcesOf(t))
      .filter(([, r]) => r.Type === 'AWS::IAM::Role')
      .flatMap(([id, r]) =>
        ((r.Properties.ManagedPolicyArns ?? []) as unknown[]).map((arn) => ({
          role: id,
          policy: JSON.stringify(arn).match(/:iam::aws:policy\/(?:service-role\/)?([A-Za-z]+)/)?.[1],
        })),
      );

    // Assess
    for (const { role, policy } of attached) {
      const owner = Object.keys(MANAGED_POLICIES).find((prefix) => role.startsWith(prefix));
      expect(owner && MANAGED_POLICIES[owner]?.includes(String(policy)), `${role}: ${policy}`).toBe(true);
    }
    const kafka = attached.filter((a) => a.policy === 'AWSLambdaMSKExecutionRole');
    expect(kafka.map((a) => a.role)).toEqual(withDbAndMsk ? [roleOf(t, 'ProducersKafkaConsumer')] : []);
    expect(attached.some((a) => /^(S3Trigger|Scorer|ProducersDbPoller)/.test(a.role))).toBe(false);
  });

  it('gives the s3-trigger only the actions it uses', () => {
    expect(actionsOfFunction(t, 'S3Trigger')).toEqual(
      [
        ...LOGS,
        ...QUARANTINE,
        ...SQS_EVENT_SOURCE,
        'dynamodb:BatchWriteItem',
        'dynamodb:GetItem',
        'dynamodb:Query',
        'dynamodb:UpdateItem',
        's3:DeleteObject',
        's3:GetObject',
        's3:GetObjectVersion',
        's3:ListBucket',
        'sqs:SendMessage',
      ].sort(),
    );
  });

  it('lets the s3-trigger list the bucket only under incoming/ (or naming no prefix) and rejects/', () => {
    // Act
    const role = roleOf(t, 'S3Trigger');
    const lists = statements
      .filter((s) => s.role === role && actionsOf(s.statement).includes('s3:ListBucket'))
      .map((s) => s.statement as Statement & { Condition?: unknown });

    // Assess: a 404 for a missing incoming/ object needs the listing (IfExists: S3 does not say whether that
    // check carries a prefix); deleting stale rejects segments lists under rejects/.
    expect(lists.map((s) => s.Condition)).toEqual([
      { StringLikeIfExists: { 's3:prefix': ['incoming/*'] } },
      { StringLike: { 's3:prefix': ['rejects/*'] } },
    ]);
  });

  it('lets the db-poller read and write only the watermark items of the ledger table', () => {
    // Act
    const role = roleOf(t, 'ProducersDbPoller');
    const ledger = statements
      .filter((s) => s.role === role && actionsOf(s.statement).some((a) => a.startsWith('dynamodb:')))
      .map((s) => s.statement as Statement & { Condition?: unknown });

    // Assess
    expect(ledger.map((s) => s.Condition)).toEqual([
      { 'ForAllValues:StringLike': { 'dynamodb:LeadingKeys': ['watermark#*'] } },
    ]);
  });

  it('lets the s3-trigger write, read and delete staged copies under staging/ only', () => {
    // Act
    const role = roleOf(t, 'S3Trigger');
    const staging = statements.filter(
      (s) => s.role === role && JSON.stringify(s.statement.Resource).includes('/staging/*'),
    );
    const deletes = statements.filter(
      (s) => s.role === role && actionsOf(s.statement).includes('s3:DeleteObject'),
    );

    // Assess
    expect(staging.map((s) => actionsOf(s.statement).sort())).toEqual([
      ['s3:DeleteObject', 's3:GetObject', 's3:PutObject'],
    ]);
    // Deleting is otherwise only the stale rejects segments' (its own test).
    expect(
      deletes
        .map((s) => JSON.stringify(s.statement.Resource))
        .every((r) => /\/(staging|rejects)\/\*/.test(r)),
    ).toBe(true);
  });

  it('gives the scorer only the actions it uses', () => {
    expect(actionsOfFunction(t, 'Scorer')).toEqual(
      [
        ...LOGS,
        ...QUARANTINE,
        ...SQS_EVENT_SOURCE,
        'dynamodb:BatchGetItem',
        'dynamodb:BatchWriteItem',
        'dynamodb:PutItem',
        'dynamodb:UpdateItem',
        's3:DeleteObject',
        's3:GetObject',
        's3:ListBucket',
      ].sort(),
    );
  });

  it('gives the db-poller only the actions it uses', () => {
    expect(actionsOfFunction(t, 'ProducersDbPoller')).toEqual(
      [
        ...LOGS,
        ...QUARANTINE,
        'dynamodb:GetItem',
        'dynamodb:PutItem',
        'sqs:GetQueueAttributes',
        'sqs:SendMessage',
        ...(withDbAndMsk ? ['secretsmanager:GetSecretValue', ...ALLOWED_ON_ANY_RESOURCE] : []),
      ].sort(),
    );
  });

  it('gives the kafka-consumer only the actions it and its event source use', () => {
    // Prepare: what the event source itself needs (CDK's grants for MSK and for SASL/SCRAM secrets).
    const eventSource = withDbAndMsk
      ? ['kafka:DescribeCluster', 'kafka:GetBootstrapBrokers', 'kafka:ListScramSecrets']
      : 'kafkaSecretArn' in context
        ? ['secretsmanager:DescribeSecret', 'secretsmanager:GetSecretValue']
        : [];

    // Assess
    // The on-failure bucket: what Lambda's docs list for an S3 destination, when there is a mapping.
    const destination = eventSource.length > 0 ? ['s3:ListBucket'] : [];
    expect(actionsOfFunction(t, 'ProducersKafkaConsumer')).toEqual(
      [...LOGS, ...QUARANTINE, 'sqs:SendMessage', ...eventSource, ...destination].sort(),
    );
  });

  it('lets each function write logs only to its own log group', () => {
    for (const fn of [
      'S3Trigger',
      'Scorer',
      'ProducersDbPoller',
      'ProducersKafkaConsumer',
      'LedgerSweepFunction',
    ]) {
      // Act
      const role = roleOf(t, fn);
      const logs = statements.filter(
        (s) => s.role === role && actionsOf(s.statement).some((a) => a.startsWith('logs:')),
      );

      // Assess
      expect(logs.map((s) => s.statement.Resource)).toEqual([
        { 'Fn::GetAtt': [expect.stringMatching(new RegExp(`^${fn}Logs[0-9A-F]{8}$`)), 'Arn'] },
      ]);
    }
  });
});
