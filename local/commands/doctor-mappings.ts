import {
  type EventSourceMappingConfiguration,
  type LambdaClient,
  ListEventSourceMappingsCommand,
} from '@aws-sdk/client-lambda';
import { type DoctorCheck, errorText, grantHint } from './doctor.ts';

/** Every event source mapping of a function (all pages). */
export async function listMappings(
  lambda: LambdaClient,
  functionName: string,
): Promise<EventSourceMappingConfiguration[]> {
  const all: EventSourceMappingConfiguration[] = [];
  let marker: string | undefined;
  do {
    const out = await lambda.send(
      new ListEventSourceMappingsCommand({
        FunctionName: functionName,
        ...(marker ? { Marker: marker } : {}),
      }),
    );
    all.push(...(out.EventSourceMappings ?? []));
    marker = out.NextMarker;
  } while (marker);
  return all;
}

/** A queue a function consumes through an SQS event source mapping. */
export interface ConsumedQueue {
  /** `file-events → s3-trigger` */
  readonly label: string;
  readonly functionName: string;
  readonly queueUrl: string;
}

/**
 * The queue's name and account as its ARN ends (`:<account>:<name>`), from its URL
 * (`https://sqs.<region>.amazonaws.com/<account>/<name>`): enough to recognise its mapping without knowing
 * the partition.
 */
export function queueArnSuffix(queueUrl: string): string {
  const [account, name] = new URL(queueUrl).pathname.split('/').filter(Boolean);
  return `:${account}:${name}`;
}

/** The SQS event source mappings of the file-events and signals queues: each must be Enabled. */
export async function sqsMappingsCheck(
  lambda: LambdaClient,
  queues: readonly ConsumedQueue[],
): Promise<DoctorCheck> {
  const id = 'event-sources';
  const title = 'Queue event sources';
  const details: string[] = [];
  const problems: string[] = [];
  const nexts: string[] = [];
  try {
    for (const q of queues) {
      const suffix = queueArnSuffix(q.queueUrl);
      const mapping = (await listMappings(lambda, q.functionName)).find((m) =>
        m.EventSourceArn?.endsWith(suffix),
      );
      if (!mapping) {
        details.push(`${q.label}: no event source mapping`);
        problems.push(`${q.label} has no event source mapping`);
        nexts.push(`Deploy the stack again (npx cdk deploy): it creates the mapping of ${q.label}.`);
        continue;
      }
      details.push(
        `${q.label} (mapping ${mapping.UUID}): ${mapping.State ?? '?'}` +
          (mapping.StateTransitionReason ? ` (${mapping.StateTransitionReason})` : ''),
      );
      if (mapping.State !== 'Enabled') {
        problems.push(`${q.label} is ${mapping.State ?? 'in no state'}`);
        nexts.push(stateNext(mapping));
      }
    }
  } catch (err) {
    const next = grantHint(err);
    return {
      id,
      title,
      status: 'cannot-check',
      summary: `could not read the event source mappings: ${errorText(err)}`,
      ...(next ? { next } : {}),
      details,
    };
  }
  if (problems.length === 0) return { id, title, status: 'ok', summary: 'every mapping Enabled', details };
  return { id, title, status: 'problem', summary: problems.join('; '), next: nexts.join(' '), details };
}

/** What to do about a mapping that is not Enabled. */
export function stateNext(m: Pick<EventSourceMappingConfiguration, 'State' | 'UUID'>): string {
  if (m.State === 'Disabled' || m.State === 'Disabling')
    return `Enable it: aws lambda update-event-source-mapping --uuid ${m.UUID} --enabled (and find out who disabled it).`;
  if (m.State === 'Creating' || m.State === 'Enabling' || m.State === 'Updating')
    return 'It is being set up: run doctor again in a minute or two.';
  return 'Deploy the stack again (npx cdk deploy), which recreates the mapping.';
}
