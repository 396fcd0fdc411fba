import type { AwsClients } from '#shared/clients.ts';
import type { QueueName, Target } from '../../local/commands/target.ts';

export const BUCKET = 'pulse-bucket';
export const LEDGER = 'pulse-ledger';
export const SCORES = 'pulse-scores';
export const KAFKA_FAILURES_BUCKET = 'pulse-kafka-failures';
export const SCORES_BUCKET = 'pulse-scores-bucket';
export const ANOMALIES = 'pulse-anomalies';
const ENDPOINT = 'http://127.0.0.1:5000';
export const QUEUES: Record<QueueName, string> = {
  fileEvents: `${ENDPOINT}/000000000000/pulse-file-events`,
  fileEventsDlq: `${ENDPOINT}/000000000000/pulse-file-events-dlq`,
  signals: `${ENDPOINT}/000000000000/pulse-signals`,
  signalsDlq: `${ENDPOINT}/000000000000/pulse-signals-dlq`,
  kafkaFailures: `${ENDPOINT}/000000000000/pulse-kafka-failures`,
};

/** A Target (see local/commands/target.ts) on the given (mocked) clients, with fixed resource names. */
export function fakeTarget(
  clients: AwsClients,
  kind: Target['kind'] = 'local',
  over: Partial<Target> = {},
): Target {
  return {
    kind,
    name: kind === 'local' ? 'local' : 'PulseIngest',
    clients,
    bucket: BUCKET,
    ledgerTable: LEDGER,
    scoresTable: SCORES,
    kafkaFailuresBucket: KAFKA_FAILURES_BUCKET,
    scoresBucket: SCORES_BUCKET,
    anomaliesTable: ANOMALIES,
    queues: QUEUES,
    endpoints: { s3: ENDPOINT, sqs: ENDPOINT, dynamodb: ENDPOINT },
    close: () => {},
    ...over,
  };
}
