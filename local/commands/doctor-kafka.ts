import {
  type EventSourceMappingConfiguration,
  GetEventSourceMappingCommand,
  type LambdaClient,
} from '@aws-sdk/client-lambda';
import { type DoctorCheck, errorText, grantHint } from './doctor.ts';
import { listMappings, stateNext } from './doctor-mappings.ts';

const ID = 'kafka';
const TITLE = 'Kafka source';

/**
 * What Lambda's `LastProcessingResult` problems mean and what to do, from "Troubleshooting Kafka event source
 * mapping errors" and "Configuring your Amazon MSK cluster and Amazon VPC network for Lambda" (Lambda
 * Developer Guide). The first pattern that matches AWS's words decides; AWS's own words are always shown too.
 */
const PROBLEM_WORDS: readonly { readonly match: RegExp; readonly next: string }[] = [
  {
    match: /connection error|failed to connect|timed? ?out|unreachable/i,
    next:
      "Lambda could not reach the brokers. The mapping connects from the cluster's own subnets with the cluster's " +
      'security groups (MSK), or from the subnets and security groups given for self-managed Kafka: a security ' +
      'group must allow inbound from itself on the broker ports (9092 plaintext, 9094 TLS, 9096 SASL/SCRAM, ' +
      '9098 IAM) and outbound on those ports and 443. In on-demand mode those subnets also need a NAT gateway, or ' +
      'VPC endpoints for Lambda and STS (and Secrets Manager when a secret authenticates); provisioned mode does ' +
      'not need them.',
  },
  {
    match: /failed to authorize/i,
    next:
      "The cluster's ACLs refuse the mapping's user: it needs DescribeConfigs on the cluster, Describe and Read " +
      "on the group (the consumer group id, or the mapping's UUID without one) and Describe and Read on the " +
      "topic. With IAM authentication (MSK), the kafka-consumer's role needs the kafka-cluster actions.",
  },
  {
    match: /sasl authentication failed/i,
    next: "The username or password in the Kafka secret (kafkaSecretArn) is wrong, or the MSK cluster's SCRAM secret association does not include it.",
  },
  {
    match: /server failed to authenticate lambda/i,
    next: 'The brokers refused the client certificate: the secret holds no certificate, the brokers do not use mTLS, or they do not trust its CA.',
  },
  {
    match: /lambda failed to authenticate server/i,
    next: "Lambda does not trust the brokers' certificate: give the root CA of a private CA (kafkaRootCaSecretArn), and check that the certificate names the broker's DNS name.",
  },
  {
    match: /certificate or private key is invalid/i,
    next: "The secret's `certificate` chain or `privateKey` is not valid PEM (an encrypted key needs `privateKeyPassword`).",
  },
  {
    match: /topic/i,
    next: 'Check that the topic exists on the cluster and is spelled as -c kafkaTopic names it.',
  },
];

/** Words for a Kafka mapping's last processing result; undefined when it reports no problem. */
export function kafkaProblemNext(lastProcessingResult: string | undefined): string | undefined {
  if (!lastProcessingResult || !/^PROBLEM/i.test(lastProcessingResult)) return undefined;
  return (
    PROBLEM_WORDS.find((w) => w.match.test(lastProcessingResult))?.next ??
    "Read AWS's words above, and the mapping in the Lambda console (Troubleshooting Kafka event source mapping errors)."
  );
}

/** The kafka-consumer's Kafka event source mappings: each one's state, why it is in it, and its last processing result. */
export async function kafkaCheck(lambda: LambdaClient, functionName: string): Promise<DoctorCheck> {
  let mappings: EventSourceMappingConfiguration[];
  try {
    const listed = (await listMappings(lambda, functionName)).filter(isKafka);
    mappings = [];
    for (const m of listed) {
      const out = await lambda.send(new GetEventSourceMappingCommand({ UUID: m.UUID }));
      mappings.push(out);
    }
  } catch (err) {
    return {
      id: ID,
      title: TITLE,
      status: 'cannot-check',
      summary: `could not read the kafka-consumer's event source mappings: ${errorText(err)}`,
      ...withNext(grantHint(err)),
    };
  }
  if (mappings.length === 0) {
    return {
      id: ID,
      title: TITLE,
      status: 'not-configured',
      summary:
        'no Kafka event source (deploy with -c mskClusterArn=… or -c kafkaBootstrapServers=… to add one)',
    };
  }
  const details: string[] = [];
  const nexts: string[] = [];
  const problems: string[] = [];
  for (const m of mappings) {
    const topic = m.Topics?.join(',') ?? '?';
    details.push(
      `topic ${topic} (mapping ${m.UUID}): ${m.State ?? '?'}` +
        (m.StateTransitionReason ? ` (${m.StateTransitionReason})` : '') +
        `; last processing result: ${m.LastProcessingResult ?? 'none yet'}`,
    );
    const resultNext = kafkaProblemNext(m.LastProcessingResult);
    if (m.State !== 'Enabled') {
      problems.push(`topic ${topic}: mapping ${m.State ?? 'in no state'}`);
      nexts.push(stateNext(m));
    }
    if (resultNext) {
      problems.push(`topic ${topic}: ${m.LastProcessingResult}`);
      nexts.push(resultNext);
    }
  }
  if (problems.length === 0) {
    return {
      id: ID,
      title: TITLE,
      status: 'ok',
      summary: `${mappings.length} mapping(s) enabled, no problem reported`,
      details,
    };
  }
  return {
    id: ID,
    title: TITLE,
    status: 'problem',
    summary: problems.join('; '),
    next: [...new Set(nexts)].join(' '),
    details,
  };
}

function isKafka(m: EventSourceMappingConfiguration): boolean {
  return (
    m.SelfManagedEventSource !== undefined ||
    /:kafka:/.test(m.EventSourceArn ?? '') ||
    (m.Topics?.length ?? 0) > 0
  );
}

function withNext(next: string | undefined): { next?: string } {
  return next ? { next } : {};
}
