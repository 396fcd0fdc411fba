import { randomBytes } from 'node:crypto';
import {
  CreateQueueCommand,
  DeleteQueueCommand,
  GetQueueAttributesCommand,
  ReceiveMessageCommand,
  SendMessageBatchCommand,
  SendMessageCommand,
} from '@aws-sdk/client-sqs';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { makeClients } from '../../local/runtime/clients.ts';

/**
 * scripts/moto_server.py keeps moto from scanning a whole queue for each message sent: while a message
 * is sent, the queue attributes moto reads hold only whether it deduplicates by content. These tests
 * hold the emulator to SQS's behaviour where that flag and the attributes matter.
 */
describe('SQS on the emulator', () => {
  let c: ReturnType<typeof makeClients>;
  const urls: string[] = [];
  const queue = async (attributes: Record<string, string> = {}, fifo = false): Promise<string> => {
    const name = `sqs${randomBytes(4).toString('hex')}${fifo ? '.fifo' : ''}`;
    const out = await c.sqs.send(
      new CreateQueueCommand({
        QueueName: name,
        Attributes: { ...(fifo ? { FifoQueue: 'true' } : {}), ...attributes },
      }),
    );
    urls.push(out.QueueUrl ?? '');
    return out.QueueUrl ?? '';
  };
  const counts = async (url: string) => {
    const out = await c.sqs.send(
      new GetQueueAttributesCommand({
        QueueUrl: url,
        AttributeNames: [
          'ApproximateNumberOfMessages',
          'ApproximateNumberOfMessagesNotVisible',
          'ContentBasedDeduplication',
        ],
      }),
    );
    return out.Attributes ?? {};
  };

  beforeAll(() => {
    c = makeClients(inject('motoEndpoint'));
  });
  afterAll(async () => {
    for (const QueueUrl of urls) await c.sqs.send(new DeleteQueueCommand({ QueueUrl }));
  });

  it('still counts the messages of a standard queue, visible and in flight', async () => {
    // Prepare
    const url = await queue();
    for (let i = 0; i < 3; i++) {
      await c.sqs.send(
        new SendMessageBatchCommand({
          QueueUrl: url,
          Entries: Array.from({ length: 10 }, (_, k) => ({ Id: String(k), MessageBody: `m${i}-${k}` })),
        }),
      );
    }
    // Act
    const before = await counts(url);
    await c.sqs.send(
      new ReceiveMessageCommand({ QueueUrl: url, MaxNumberOfMessages: 4, VisibilityTimeout: 60 }),
    );
    const after = await counts(url);
    // Assess
    expect(before).toMatchObject({
      ApproximateNumberOfMessages: '30',
      ApproximateNumberOfMessagesNotVisible: '0',
    });
    expect(after).toMatchObject({
      ApproximateNumberOfMessages: '26',
      ApproximateNumberOfMessagesNotVisible: '4',
    });
  });

  it('drops a repeated body on a FIFO queue that deduplicates by content, and only there', async () => {
    // Prepare
    const byContent = await queue({ ContentBasedDeduplication: 'true' }, true);
    const byId = await queue({}, true);
    // Act
    for (const body of ['same', 'same', 'other']) {
      await c.sqs.send(
        new SendMessageCommand({ QueueUrl: byContent, MessageBody: body, MessageGroupId: 'g' }),
      );
    }
    for (const [body, id] of [
      ['same', 'a'],
      ['same', 'b'],
      ['other', 'a'],
    ]) {
      await c.sqs.send(
        new SendMessageCommand({
          QueueUrl: byId,
          MessageBody: body,
          MessageGroupId: 'g',
          MessageDeduplicationId: id,
        }),
      );
    }
    // Assess
    expect(await counts(byContent)).toMatchObject({
      ApproximateNumberOfMessages: '2',
      ContentBasedDeduplication: 'true',
    });
    expect(await counts(byId)).toMatchObject({
      ApproximateNumberOfMessages: '2',
      ContentBasedDeduplication: 'false',
    });
  });
});
