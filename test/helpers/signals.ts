import { DeleteMessageBatchCommand, ReceiveMessageCommand, type SQSClient } from '@aws-sdk/client-sqs';
import { expandSignals, readSignalMessage, type Signal } from '#shared/signal.ts';

/** Receives and deletes every message on a signals queue; returns the signals they carry. */
export async function drainSignals(sqs: SQSClient, queueUrl: string): Promise<Signal[]> {
  const signals: Signal[] = [];
  for (let empty = 0; empty < 2; ) {
    const out = await sqs.send(
      new ReceiveMessageCommand({
        QueueUrl: queueUrl,
        MaxNumberOfMessages: 10,
        WaitTimeSeconds: 0,
        VisibilityTimeout: 60,
      }),
    );
    const messages = out.Messages ?? [];
    if (messages.length === 0) {
      empty++;
      continue;
    }
    empty = 0;
    for (const m of messages) signals.push(...decodeSignals(m.Body ?? ''));
    await sqs.send(
      new DeleteMessageBatchCommand({
        QueueUrl: queueUrl,
        Entries: messages.map((m, i) => ({ Id: String(i), ReceiptHandle: m.ReceiptHandle })),
      }),
    );
  }
  return signals;
}

/** How many times each signal id occurs. */
export function countById(signals: readonly Signal[]): Map<string, number> {
  const counts = new Map<string, number>();
  for (const s of signals) counts.set(s.id, (counts.get(s.id) ?? 0) + 1);
  return counts;
}

/** The whole signals a packed message body carries (any message version). */
export function decodeSignals(body: string): Signal[] {
  const read = readSignalMessage(body);
  if (!read.ok) throw new Error(read.reason);
  return expandSignals(read.message) as Signal[];
}
