/**
 * The synthesized template's permissions, made concrete for one offline deployment: each function's role
 * statements and the resource policies of the bucket and queues, with every CloudFormation token
 * (`Ref`, `Fn::GetAtt`, `Fn::Join`, pseudo parameters) resolved to the emulated resource it names.
 *
 * Which template resource is which emulated resource is stated once, in {@link RESOURCES}: a logical id
 * found through the stack's own properties, and the name `local/runtime/names.ts` gives it for a prefix. A token
 * naming a resource not listed there resolves to an ARN that matches nothing, so a grant can only ever
 * allow the one resource it names; a call on a resource not listed there matches no template resource.
 */
import type { CfnResource } from 'aws-cdk-lib';
import { Template } from 'aws-cdk-lib/assertions';
import type { IConstruct } from 'constructs';
import type { PulseStack } from '../../../infra/pulse-stack.ts';
import { LOCAL_ACCOUNT_ID } from '../../../local/event-sources/lambda-context.ts';
import { LOCAL_REGION } from '../../../local/runtime/clients.ts';
import { type ResourceNames, resourceNames } from '../../../local/runtime/names.ts';
import { ROUTES_CONFIG } from '../routes-config.ts';
import { buildStack, DB_AND_MSK_CONTEXT } from '../stacks.ts';

export const ACCOUNT = LOCAL_ACCOUNT_ID;
export const REGION = LOCAL_REGION;

/**
 * The template the calls are held to: the stack with a database (the poller live, its secret granted)
 * and a Kafka cluster, as the offline run emulates it, and the routes of the routes end-to-end test (the
 * default route first, so every other run's calls are held to the default grants).
 */
export const PARITY_CONTEXT = {
  ...DB_AND_MSK_CONTEXT,
  existingBuckets: JSON.stringify([
    {
      bucket: 'pulse-parity-users-data',
      prefixes: ['eb/', 'sns/', 'both/', 'sqs/'],
      notifications: 'eventbridge',
    },
  ]),
  pulse: JSON.stringify(ROUTES_CONFIG),
};

/**
 * A bucket the user already has (`existingBuckets`): the template names it by the literal name given as
 * context; an offline deployment's is `<prefix>-users-data`, created outside the pipeline by the test that
 * ingests from it (test/integration/existing-bucket.test.ts).
 */
export const EXISTING_BUCKET = {
  templateName: 'pulse-parity-users-data',
  nameFor: (prefix: string): string => `${prefix}-users-data`,
  prefixOf: (arn: string): string | undefined =>
    /^arn:aws:s3:::([a-z0-9-]+)-users-data(?:\/|$)/.exec(arn)?.[1],
};

export type PolicyDocument = { Version?: string; Statement: Statement[] };
export type Statement = {
  Sid?: string;
  Effect: 'Allow' | 'Deny';
  Action?: string | string[];
  NotAction?: string | string[];
  Resource?: unknown;
  NotResource?: unknown;
  Principal?: unknown;
  Condition?: Record<string, Record<string, unknown>>;
};
type Resource = { Type: string; Properties?: Record<string, unknown> };

/** A template resource and its emulated counterpart (its `Ref` and its ARN) for a prefix. */
interface ResourceBinding {
  readonly what: string;
  /** The resource's CloudFormation construct in the stack. */
  readonly construct: (stack: PulseStack) => IConstruct;
  /** Its emulated name (`Ref`) and ARN (`Fn::GetAtt … Arn`), from the prefix's names. */
  readonly local: (names: ResourceNames) => { readonly ref: string; readonly arn: string };
}

const queue = (name: string) => ({
  ref: `http://127.0.0.1/${ACCOUNT}/${name}`,
  arn: `arn:aws:sqs:${REGION}:${ACCOUNT}:${name}`,
});
const table = (name: string) => ({ ref: name, arn: `arn:aws:dynamodb:${REGION}:${ACCOUNT}:table/${name}` });

/** Every template resource a function's calls may name, with the emulated resource it stands for. */
export const RESOURCES: readonly ResourceBinding[] = [
  {
    what: 'ingest bucket',
    construct: (s) => s.bucket,
    local: (n) => ({ ref: n.bucket, arn: `arn:aws:s3:::${n.bucket}` }),
  },
  { what: 'file-events queue', construct: (s) => s.fileEvents, local: (n) => queue(n.fileEventsQueue) },
  { what: 'file-events DLQ', construct: (s) => s.fileEventsDlq, local: (n) => queue(n.fileEventsDlq) },
  { what: 'signals queue', construct: (s) => s.signals, local: (n) => queue(n.signalsQueue) },
  { what: 'signals DLQ', construct: (s) => s.signalsDlq, local: (n) => queue(n.signalsDlq) },
  { what: 'ledger table', construct: (s) => s.ledger, local: (n) => table(n.ledgerTable) },
  { what: 'scores table', construct: (s) => s.scores, local: (n) => table(n.scoresTable) },
  {
    what: 'scores bucket',
    construct: (s) => s.scoresBucket,
    local: (n) => ({ ref: n.scoresBucket, arn: `arn:aws:s3:::${n.scoresBucket}` }),
  },
  { what: 'anomalies table', construct: (s) => s.anomalies, local: (n) => table(n.anomaliesTable) },
];

/**
 * The database secret: the template names it by the ARN given as context (a literal, not a token); the
 * offline run's secret is `<prefix>/db` in the emulated Secrets Manager, whose ARN ends in a random suffix.
 */
export const DB_SECRET = {
  templateArn: PARITY_CONTEXT.dbSecretArn,
  prefixOf: (arn: string): string | undefined =>
    new RegExp(`^arn:aws:secretsmanager:${REGION}:${ACCOUNT}:secret:([a-z0-9-]+)/db-[A-Za-z0-9]{6}$`).exec(
      arn,
    )?.[1],
};

/** What an unmapped token resolves to: an ARN no real resource has, so it allows nothing. */
const unresolved = (what: string) => `arn:aws:pulse-unresolved:::${what}`;

/** A function's identity statements and the resource policies in the template. */
export interface ParityTemplate {
  /** Logical id of each function's role, by function name (its POWERTOOLS_SERVICE_NAME). */
  readonly roles: ReadonlyMap<string, string>;
  /** The partition key attribute of each table, by logical id. */
  readonly partitionKeys: ReadonlyMap<string, string>;
  /** Logical ids of the mapped resources, in {@link RESOURCES} order. */
  readonly logicalIds: readonly string[];
  /** The statements (tokens unresolved) of the role's identity policies. */
  statementsOf(roleId: string): Statement[];
  /** The resource policy (tokens unresolved) of the resource with this logical id, if any. */
  resourcePolicyOf(logicalId: string): PolicyDocument | undefined;
}

/** Reads the template of the stack built with {@link PARITY_CONTEXT}. */
export function parityTemplate(): ParityTemplate {
  const stack = buildStack({ context: PARITY_CONTEXT });
  const resources = Template.fromStack(stack).toJSON().Resources as Record<string, Resource>;
  const logicalIds = RESOURCES.map((r) =>
    stack.getLogicalId(r.construct(stack).node.defaultChild as CfnResource),
  );
  const roles = new Map<string, string>();
  const partitionKeys = new Map<string, string>();
  for (const [id, r] of Object.entries(resources)) {
    const p = r.Properties ?? {};
    if (r.Type === 'AWS::Lambda::Function') {
      const name = (p.Environment as { Variables?: Record<string, unknown> } | undefined)?.Variables
        ?.POWERTOOLS_SERVICE_NAME;
      const role = (p.Role as { 'Fn::GetAtt'?: [string, string] } | undefined)?.['Fn::GetAtt']?.[0];
      if (typeof name === 'string' && role) roles.set(name, role);
    }
    if (r.Type === 'AWS::DynamoDB::Table') {
      const hash = (p.KeySchema as { AttributeName: string; KeyType: string }[]).find(
        (k) => k.KeyType === 'HASH',
      );
      if (hash) partitionKeys.set(id, hash.AttributeName);
    }
  }
  const refs = (v: unknown) => [v].flat().map((x) => (x as { Ref?: string }).Ref);
  return {
    roles,
    partitionKeys,
    logicalIds,
    statementsOf(roleId) {
      return Object.values(resources)
        .flatMap((r) => {
          const p = r.Properties ?? {};
          if (
            (r.Type === 'AWS::IAM::Policy' || r.Type === 'AWS::IAM::ManagedPolicy') &&
            refs(p.Roles).includes(roleId)
          ) {
            return (p.PolicyDocument as PolicyDocument).Statement;
          }
          return [];
        })
        .concat(
          ((resources[roleId]?.Properties?.Policies ?? []) as { PolicyDocument: PolicyDocument }[]).flatMap(
            (x) => x.PolicyDocument.Statement,
          ),
        );
    },
    resourcePolicyOf(logicalId) {
      for (const r of Object.values(resources)) {
        const p = r.Properties ?? {};
        const attached =
          (r.Type === 'AWS::S3::BucketPolicy' && refs(p.Bucket).includes(logicalId)) ||
          (r.Type === 'AWS::SQS::QueuePolicy' && refs(p.Queues).includes(logicalId));
        if (attached) return p.PolicyDocument as PolicyDocument;
      }
      return undefined;
    },
  };
}

/** The emulated resources of one offline deployment (a prefix), by the logical id that stands for each. */
export interface Deployment {
  readonly prefix: string;
  readonly byLogicalId: ReadonlyMap<string, { readonly ref: string; readonly arn: string }>;
  /** The ARN of the prefix's database secret, when a call read it. */
  readonly dbSecretArn?: string;
}

export function deployment(template: ParityTemplate, prefix: string, dbSecretArn?: string): Deployment {
  const names = resourceNames(prefix);
  const byLogicalId = new Map(
    RESOURCES.map((r, i) => [template.logicalIds[i] as string, r.local(names)] as const),
  );
  return { prefix, byLogicalId, ...(dbSecretArn ? { dbSecretArn } : {}) };
}

/**
 * Resolves every CloudFormation intrinsic in `value` for `d`: `Ref` and `Fn::GetAtt … Arn` of a mapped
 * resource, pseudo parameters, `Fn::Join`, the database secret's context ARN and the existing bucket's
 * context name. Anything else throws.
 */
export function resolveTokens<T>(value: T, d: Deployment): T {
  const walk = (v: unknown): unknown => {
    if (typeof v === 'string') {
      if (v === DB_SECRET.templateArn) return d.dbSecretArn ?? unresolved('database secret');
      return v.replace(`:s3:::${EXISTING_BUCKET.templateName}`, `:s3:::${EXISTING_BUCKET.nameFor(d.prefix)}`);
    }
    if (Array.isArray(v)) return v.map(walk);
    if (v === null || typeof v !== 'object') return v;
    const o = v as Record<string, unknown>;
    const keys = Object.keys(o);
    if (keys.length === 1 && keys[0] === 'Ref') {
      const id = String(o.Ref);
      const pseudo: Record<string, string> = {
        'AWS::AccountId': ACCOUNT,
        'AWS::Region': REGION,
        'AWS::Partition': 'aws',
        'AWS::URLSuffix': 'amazonaws.com',
      };
      return pseudo[id] ?? d.byLogicalId.get(id)?.ref ?? unresolved(id);
    }
    if (keys.length === 1 && keys[0] === 'Fn::GetAtt') {
      const [id, attr] = o['Fn::GetAtt'] as [string, string];
      if (attr !== 'Arn') return unresolved(`${id}.${attr}`);
      return d.byLogicalId.get(id)?.arn ?? unresolved(`${id}.Arn`);
    }
    if (keys.length === 1 && keys[0] === 'Fn::Join') {
      const [sep, parts] = o['Fn::Join'] as [string, unknown[]];
      return (walk(parts) as unknown[]).map(String).join(sep);
    }
    if (keys.some((k) => k.startsWith('Fn::'))) {
      throw new Error(`the IAM parity test does not resolve ${keys.join(', ')} yet: ${JSON.stringify(v)}`);
    }
    return Object.fromEntries(keys.map((k) => [k, walk(o[k])]));
  };
  return walk(value) as T;
}

/**
 * Which mapped resource of which deployment an emulated ARN names (an object ARN names its bucket, an
 * index ARN its table), or undefined when it is none of them.
 */
export function identify(
  template: ParityTemplate,
  arn: string,
):
  | { readonly prefix: string; readonly logicalId: string }
  | { readonly prefix: string; readonly secret: true }
  | { readonly prefix: string; readonly existingBucket: true }
  | undefined {
  const secretPrefix = DB_SECRET.prefixOf(arn);
  if (secretPrefix) return { prefix: secretPrefix, secret: true };
  const existingPrefix = EXISTING_BUCKET.prefixOf(arn);
  if (existingPrefix) return { prefix: existingPrefix, existingBucket: true };
  const probe = resourceNames('p');
  const name =
    /^arn:aws:s3:::([^/]+)/.exec(arn)?.[1] ??
    /^arn:aws:sqs:[^:]+:[^:]+:(.+)$/.exec(arn)?.[1] ??
    /^arn:aws:dynamodb:[^:]+:[^:]+:table\/([^/]+)/.exec(arn)?.[1];
  if (!name) return undefined;
  for (const [i, r] of RESOURCES.entries()) {
    const probeArn = r.local(probe).arn;
    // The name's suffix after the prefix, as resourceNames gives it for the probe prefix `p`.
    const suffix = nameOfArn(probeArn).slice(1);
    if (!name.endsWith(suffix) || name.length <= suffix.length) continue;
    const prefix = name.slice(0, -suffix.length);
    let own: string;
    try {
      own = r.local(resourceNames(prefix)).arn;
    } catch {
      continue;
    }
    if (arn === own || arn.startsWith(`${own}/`))
      return { prefix, logicalId: template.logicalIds[i] as string };
  }
  return undefined;
}

function nameOfArn(arn: string): string {
  return (
    /^arn:aws:s3:::([^/]+)/.exec(arn)?.[1] ??
    /^arn:aws:sqs:[^:]+:[^:]+:(.+)$/.exec(arn)?.[1] ??
    /^arn:aws:dynamodb:[^:]+:[^:]+:table\/([^/]+)/.exec(arn)?.[1] ??
    ''
  );
}
