import { Readable } from 'node:stream';
import { SendMessageBatchCommand, SQSClient, type SQSClientConfig } from '@aws-sdk/client-sqs';
import { HttpResponse } from '@smithy/core/protocols';
import { describe, expect, it } from 'vitest';
import { SQS_CLIENT_OPTIONS } from '#shared/sqs-protocol.ts';

/** A client whose requests never leave the process: it keeps each body and answers with `answer`. */
function capturing(options: Partial<SQSClientConfig>, answer: unknown) {
  const bodies: string[] = [];
  const client = new SQSClient({
    ...options,
    region: 'eu-west-1',
    credentials: { accessKeyId: 'a', secretAccessKey: 'b' },
    requestHandler: {
      handle: async (request: { body?: unknown }) => {
        bodies.push(String(request.body));
        return {
          response: new HttpResponse({
            statusCode: 200,
            headers: { 'content-type': 'application/x-amz-json-1.0' },
            body: Readable.from([Buffer.from(JSON.stringify(answer))]),
          }),
        };
      },
    },
  });
  return { client, bodies };
}

const entries = [
  {
    Id: '0',
    MessageBody: '{"v":3,"signals":[["#1","cpu",1.5,"2024-01-01T00:00:00.000Z",{"q":"a \\"b\\"\\n€😀"}]]}',
  },
  { Id: '1', MessageBody: 'plain\u0001\u2028text' },
];
const answer = {
  Successful: entries.map((e) => ({ Id: e.Id, MessageId: `m${e.Id}`, MD5OfMessageBody: '0'.repeat(32) })),
  Failed: [],
};

describe('SQS client options for packed signals', () => {
  it('sends the same request body as the SDK default codec', async () => {
    // Prepare
    const fast = capturing(SQS_CLIENT_OPTIONS, answer);
    const standard = capturing({ md5: false }, answer);
    const command = () =>
      new SendMessageBatchCommand({ QueueUrl: 'https://sqs.eu-west-1.amazonaws.com/1/q', Entries: entries });
    // Act
    await fast.client.send(command());
    await standard.client.send(command());
    // Assess: the same JSON, and message bodies that come back out exactly.
    const sent = JSON.parse(fast.bodies[0] ?? '');
    expect(sent).toEqual(JSON.parse(standard.bodies[0] ?? ''));
    expect(sent.Entries.map((e: { MessageBody: string }) => e.MessageBody)).toEqual(
      entries.map((e) => e.MessageBody),
    );
  });

  it('does not hash message bodies to check the MD5 SQS answers with (TLS checks the bytes)', async () => {
    // Prepare: an answer whose MD5s match no body; the SDK's default check would throw on it.
    const fast = capturing(SQS_CLIENT_OPTIONS, answer);
    const checking = capturing({}, answer);
    const command = () =>
      new SendMessageBatchCommand({ QueueUrl: 'https://sqs.eu-west-1.amazonaws.com/1/q', Entries: entries });
    // Act / Assess
    await expect(fast.client.send(command())).resolves.toMatchObject({ Failed: [] });
    await expect(checking.client.send(command())).rejects.toThrow(/MD5/i);
  });
});
