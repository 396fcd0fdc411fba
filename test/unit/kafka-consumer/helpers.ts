import { PutObjectCommand, type S3Client } from '@aws-sdk/client-s3';
import { SendMessageBatchCommand, type SQSClient } from '@aws-sdk/client-sqs';
import type { AwsClientStub } from 'aws-sdk-client-mock';
import { readSignalMessage } from '#shared/signal.ts';

/** The packed messages the mocked SQS client received, in order (a deflated message as the one it wraps). */
export function sentMessages(sqs: AwsClientStub<SQSClient>) {
  return sqs
    .commandCalls(SendMessageBatchCommand)
    .flatMap((call) => call.args[0].input.Entries ?? [])
    .map((e) => {
      const read = readSignalMessage(e.MessageBody ?? '');
      if (!read.ok) throw new Error(read.reason);
      return read.message as {
        v: number;
        origin: { kind: string; ref: string };
        signals: { id: string; [k: string]: unknown }[];
      };
    });
}

/** Every signal the mocked SQS client received, in order. */
export function sentSignals(sqs: AwsClientStub<SQSClient>) {
  return sentMessages(sqs).flatMap((m) => m.signals);
}

/** The quarantine objects the mocked S3 client received: key → NDJSON lines. */
export function quarantined(s3: AwsClientStub<S3Client>) {
  return Object.fromEntries(
    s3.commandCalls(PutObjectCommand).map((call) => {
      const { Key, Body } = call.args[0].input;
      const lines = String(Body)
        .split('\n')
        .filter(Boolean)
        .map((l) => JSON.parse(l) as { ref: string; reason: string; raw?: string; record?: unknown });
      return [Key ?? '', lines];
    }),
  );
}
