/**
 * Where a `pulse` command acts: the offline run (resources recorded in `.pulse/local/state.json`) or
 * a deployed stack (`--stack NAME`: resources from its CloudFormation outputs, real AWS clients).
 */

import { CloudFormationClient, DescribeStacksCommand } from '@aws-sdk/client-cloudformation';
import { DynamoDBClient } from '@aws-sdk/client-dynamodb';
import { S3Client } from '@aws-sdk/client-s3';
import { SQSClient } from '@aws-sdk/client-sqs';
import { DynamoDBDocumentClient } from '@aws-sdk/lib-dynamodb';
import { type AwsClients, DOC_TRANSLATE_CONFIG } from '#shared/clients.ts';
import { OUTPUTS } from '#shared/contract.ts';
import { destroyClients, makeClients } from '../runtime/clients.ts';
import { resourceNames } from '../runtime/names.ts';
import { type LocalState, readState } from '../runtime/state.ts';

export interface Endpoints {
  readonly s3: string;
  readonly sqs: string;
  readonly dynamodb: string;
  /** A connection URL (offline run only). */
  readonly postgres?: string;
  /** `host:port` (offline run only). */
  readonly kafka?: string;
  readonly kafkaTopic?: string;
  /** The offline dashboard page. */
  readonly dashboard?: string;
}

/** `kafkaFailures`: the notices of the Kafka failures bucket, one message per failure object not yet replayed. */
export type QueueName = 'fileEvents' | 'fileEventsDlq' | 'signals' | 'signalsDlq' | 'kafkaFailures';

export interface Target {
  readonly kind: 'local' | 'aws';
  /** The stack name, or `local`. */
  readonly name: string;
  readonly clients: AwsClients;
  readonly bucket: string;
  readonly ledgerTable: string;
  readonly scoresTable: string;
  /** The Kafka event source's on-failure destination (batches that failed every retry, records included). */
  readonly kafkaFailuresBucket: string;
  /** The deployed kafka-consumer (`pulse kafka replay --stack` invokes it); offline, the runtime's handler. */
  readonly kafkaConsumerFunction?: string;
  /** Score records (`scores/dt=…/<token>.ndjson.gz`). */
  readonly scoresBucket: string;
  readonly anomaliesTable: string;
  /** `database.table` of the score records in Glue (Athena), on a deployed stack. */
  readonly scoresGlueTable?: string;
  /** Queue URLs. */
  readonly queues: Readonly<Record<QueueName, string>>;
  readonly endpoints: Endpoints;
  /** Closes the clients' sockets. */
  close(): void;
}

/** Raised when a command needs something that is not there (no local run, a missing output). */
export class TargetUnavailableError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'TargetUnavailableError';
  }
}

/** The offline run described by `state` (see `pulse local up`). */
export function localTarget(state: LocalState | undefined): Target {
  if (!state?.moto || !state.resources) {
    throw new TargetUnavailableError(
      'the offline pipeline is not up: run `npm run pulse -- local up --detach` first (or pass --stack NAME)',
    );
  }
  const r = state.resources;
  const clients = makeClients(state.moto.endpoint);
  return {
    kind: 'local',
    name: 'local',
    clients,
    bucket: r.bucket,
    ledgerTable: r.ledgerTable,
    scoresTable: r.scoresTable,
    kafkaFailuresBucket: r.kafkaFailuresBucket ?? resourceNames(state.prefix).kafkaFailuresBucket,
    scoresBucket: r.scoresBucket ?? '',
    anomaliesTable: r.anomaliesTable ?? '',
    queues: {
      fileEvents: r.queues.fileEvents.url,
      fileEventsDlq: r.queues.fileEventsDlq.url,
      signals: r.queues.signals.url,
      signalsDlq: r.queues.signalsDlq.url,
      kafkaFailures: r.queues.kafkaFailures.url,
    },
    endpoints: {
      s3: state.moto.endpoint,
      sqs: state.moto.endpoint,
      dynamodb: state.moto.endpoint,
      ...(state.postgres ? { postgres: r.dbUrl } : {}),
      ...(state.kafka ? { kafka: state.kafka.brokers, kafkaTopic: r.topic } : {}),
      ...(state.runtime?.dashboard ? { dashboard: state.runtime.dashboard } : {}),
    },
    close: () => destroyClients(clients),
  };
}

export function localTargetAt(home: string): Target {
  return localTarget(readState(home));
}

/** A deployed stack, found by name in the default (or given) region with the default credentials. */
export async function stackTarget(stackName: string, region?: string): Promise<Target> {
  const cfn = new CloudFormationClient(region ? { region } : {});
  let outputs: Record<string, string>;
  try {
    const out = await cfn.send(new DescribeStacksCommand({ StackName: stackName }));
    const stack = out.Stacks?.[0];
    if (!stack) throw new TargetUnavailableError(`stack ${stackName} not found`);
    outputs = Object.fromEntries((stack.Outputs ?? []).map((o) => [o.OutputKey ?? '', o.OutputValue ?? '']));
  } catch (err) {
    // DescribeStacks answers a missing stack with a ValidationError.
    if (err instanceof Error && /does not exist/.test(err.message)) {
      throw new TargetUnavailableError(`stack ${stackName} not found: ${err.message}`);
    }
    throw err;
  } finally {
    cfn.destroy();
  }
  const need = (key: string): string => {
    const value = outputs[key];
    if (!value) throw new TargetUnavailableError(`stack ${stackName} has no output ${key}`);
    return value;
  };
  const names = {
    bucket: need(OUTPUTS.bucket),
    ledgerTable: need(OUTPUTS.ledgerTable),
    scoresTable: need(OUTPUTS.scoresTable),
    kafkaFailuresBucket: need(OUTPUTS.kafkaFailuresBucket),
    kafkaConsumerFunction: need(OUTPUTS.kafkaConsumerFunction),
    scoresBucket: need(OUTPUTS.scoresBucket),
    anomaliesTable: need(OUTPUTS.anomaliesTable),
    scoresGlueTable: need(OUTPUTS.scoresGlueTable),
    queues: {
      fileEvents: need(OUTPUTS.fileEventsQueue),
      fileEventsDlq: need(OUTPUTS.fileEventsDlq),
      signals: need(OUTPUTS.signalsQueue),
      signalsDlq: need(OUTPUTS.signalsDlq),
      kafkaFailures: need(OUTPUTS.kafkaFailureNotices),
    },
  };
  const s3 = new S3Client(region ? { region } : {});
  const sqs = new SQSClient(region ? { region } : {});
  const ddb = new DynamoDBClient(region ? { region } : {});
  const doc = DynamoDBDocumentClient.from(ddb, DOC_TRANSLATE_CONFIG);
  const clients = { s3, sqs, ddb, doc };
  const resolvedRegion = await sqs.config.region();
  return {
    kind: 'aws',
    name: stackName,
    clients,
    ...names,
    endpoints: {
      s3: `https://s3.${resolvedRegion}.amazonaws.com`,
      sqs: `https://sqs.${resolvedRegion}.amazonaws.com`,
      dynamodb: `https://dynamodb.${resolvedRegion}.amazonaws.com`,
    },
    close: () => destroyClients(clients),
  };
}
