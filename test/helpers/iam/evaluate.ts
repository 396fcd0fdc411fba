/**
 * Evaluates recorded AWS calls against the synthesized template with a real IAM policy evaluator
 * (@cloud-copilot/iam-simulate): each authorization a call needs, against its function's role statements
 * and the resource's own policy, tokens resolved for the deployment (prefix) the call's resource belongs to.
 */
import { runSimulation } from '@cloud-copilot/iam-simulate';
import { type Authorization, authorizationsOf, type RecordedCall } from './calls.ts';
import {
  ACCOUNT,
  DB_SECRET,
  type Deployment,
  deployment,
  identify,
  type ParityTemplate,
  type PolicyDocument,
  REGION,
  resolveTokens,
} from './template.ts';

/** An authorization the template does not give, or could not be evaluated. */
export interface Refusal {
  readonly fn: string;
  readonly action: string;
  readonly resource: string;
  readonly call: string;
  /** The request's condition keys. */
  readonly context?: Readonly<Record<string, string | string[]>>;
  /** `ImplicitlyDenied`, `ExplicitlyDenied`, or why it could not be evaluated. */
  readonly result: string;
  readonly implied?: string;
}

export interface ParityResult {
  /** Distinct authorizations evaluated. */
  readonly evaluated: number;
  /** Those allowed. */
  readonly allowed: number;
  readonly refused: readonly Refusal[];
  /** Calls whose resource is none of the template's resources (see RESOURCES in template.ts). */
  readonly unmapped: readonly Refusal[];
}

/** One line per refusal, for an assertion message. */
export const describeRefusal = (r: Refusal): string =>
  `${r.fn}: ${r.action} on ${r.resource}${
    r.context && Object.keys(r.context).length ? ` with ${JSON.stringify(r.context)}` : ''
  } — ${r.result}${r.implied ? ` (implied: ${r.implied})` : ''}; call: ${r.call}`;

const TLS = { 'aws:SecureTransport': 'true' };

/** Evaluates every authorization the records need, each distinct one once. */
export async function evaluateCalls(
  records: readonly RecordedCall[],
  template: ParityTemplate,
): Promise<ParityResult> {
  // The database secrets of each deployment, from the calls that read them: an offline deployment run twice
  // (two `pulse local up` of one name, each on a fresh emulator) has one secret ARN per run.
  const secrets = new Map<string, Set<string>>();
  for (const r of records) {
    const arn = r.service === 'SecretsManager' ? r.request.SecretId : undefined;
    const prefix = arn ? DB_SECRET.prefixOf(arn) : undefined;
    if (!arn || !prefix) continue;
    secrets.set(prefix, (secrets.get(prefix) ?? new Set()).add(arn));
  }
  // A deployment with its secret token resolved to the ARN a call names (a secret's own calls), else to any
  // of the deployment's (the other calls do not depend on it).
  const deployments = new Map<string, Deployment>();
  const deploymentOf = (prefix: string, resource: string) => {
    const secret = DB_SECRET.prefixOf(resource) === prefix ? resource : [...(secrets.get(prefix) ?? [])][0];
    const key = `${prefix}\n${secret ?? ''}`;
    let d = deployments.get(key);
    if (!d) {
      d = deployment(template, prefix, secret);
      deployments.set(key, d);
    }
    return d;
  };
  const tableKey = new Map<string, string | undefined>();
  const ctx = {
    partitionKeyOf(table: string) {
      if (!tableKey.has(table)) {
        const id = identify(template, `arn:aws:dynamodb:${REGION}:${ACCOUNT}:table/${table}`);
        tableKey.set(table, id && 'logicalId' in id ? template.partitionKeys.get(id.logicalId) : undefined);
      }
      return tableKey.get(table);
    },
  };

  const units = new Map<string, Authorization>();
  const unmapped: Refusal[] = [];
  for (const record of records) {
    let needed: Authorization[];
    try {
      needed = authorizationsOf(record, ctx);
    } catch (err) {
      unmapped.push({
        fn: record.fn,
        action: `${record.service}:${record.op}`,
        resource: '?',
        call: JSON.stringify(record),
        result: (err as Error).message,
      });
      continue;
    }
    for (const a of needed) units.set(JSON.stringify([a.fn, a.action, a.resource, a.context]), a);
  }

  const refused: Refusal[] = [];
  let allowed = 0;
  // A function's clients belong to one deployment: each token is resolved for the deployment of the resource
  // a call names, so a call on another deployment's resource must be caught here, not allowed there.
  const spans = new Map<string, Map<string, Authorization>>();
  for (const a of units.values()) {
    const target = identify(template, a.resource);
    if (!target || !a.file) continue;
    const seen = spans.get(`${a.file}|${a.fn}`) ?? new Map<string, Authorization>();
    spans.set(`${a.file}|${a.fn}`, seen);
    if (!seen.has(target.prefix)) seen.set(target.prefix, a);
  }
  for (const seen of spans.values()) {
    if (seen.size < 2) continue;
    const [first, ...others] = [...seen.values()];
    for (const a of others) {
      unmapped.push({
        fn: a.fn,
        action: a.action,
        resource: a.resource,
        call: a.call,
        result: `the same ${a.fn} also called ${first?.resource} (${first?.call}): one function's calls name one deployment's resources`,
      });
    }
  }
  for (const a of units.values()) {
    const refuse = (result: string) => ({
      fn: a.fn,
      action: a.action,
      resource: a.resource,
      call: a.call,
      context: a.context,
      result,
      ...(a.implied ? { implied: a.implied } : {}),
    });
    const role = template.roles.get(a.fn);
    const target = identify(template, a.resource);
    if (!role) {
      unmapped.push(refuse(`no function named ${a.fn} in the template (POWERTOOLS_SERVICE_NAME)`));
      continue;
    }
    if (!target) {
      unmapped.push(
        refuse(
          'the resource is none of the template’s resources (RESOURCES in test/helpers/iam/template.ts)',
        ),
      );
      continue;
    }
    const d = deploymentOf(target.prefix, a.resource);
    const identity: PolicyDocument = {
      Version: '2012-10-17',
      Statement: resolveTokens(template.statementsOf(role), d),
    };
    const resourcePolicy = 'logicalId' in target ? template.resourcePolicyOf(target.logicalId) : undefined;
    const response = await runSimulation(
      {
        identityPolicies: [{ name: `${role}-policies`, policy: identity }],
        serviceControlPolicies: [],
        resourceControlPolicies: [],
        ...(resourcePolicy ? { resourcePolicy: resolveTokens(resourcePolicy, d) } : {}),
        request: {
          action: a.action,
          principal: `arn:aws:iam::${ACCOUNT}:role/${role}`,
          resource: { accountId: ACCOUNT, resource: a.resource },
          contextVariables: { ...TLS, ...a.context },
        },
      },
      {},
    );
    if (response.resultType === 'error') {
      refused.push(refuse(`not evaluated: ${JSON.stringify(response.errors)}`));
    } else if (response.overallResult === 'Allowed') {
      allowed++;
    } else {
      refused.push(refuse(response.overallResult));
    }
  }
  return { evaluated: units.size, allowed, refused, unmapped };
}
