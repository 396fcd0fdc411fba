/**
 * A scorer in its own process for crash tests: receives one batch from the signals queue and scores it
 * with the real logic, clients and configuration (from the environment, as in Lambda), killing itself
 * with SIGKILL the moment it is about to write a final score object: after its transaction committed,
 * before its scores left the pending object. The messages stay on the queue and come back after their
 * visibility timeout.
 */
import { DeleteMessageBatchCommand, ReceiveMessageCommand } from '@aws-sdk/client-sqs';
import { createClients } from '#shared/clients.ts';
import { loadScorerConfig } from '#shared/config.ts';
import { createObservability } from '#shared/observability.ts';
import { settings } from '#shared/settings.ts';
import { zScoreModel } from '../../../functions/scorer/model.ts';
import { scoreBatch } from '../../../functions/scorer/scorer.ts';

const queueUrl = process.argv[2];
if (!queueUrl) throw new Error('usage: scorer-worker <signals queue url>');

const config = loadScorerConfig();
const clients = createClients(config, 'scorer');
clients.s3.middlewareStack.add(
  (next, context) => async (args) => {
    const key = String((args.input as { Key?: unknown }).Key ?? '');
    if (context.commandName === 'PutObjectCommand' && key.startsWith(settings.scores.prefix)) {
      process.kill(process.pid, 'SIGKILL');
    }
    return next(args);
  },
  { step: 'initialize', name: 'dieBeforeFinalScores' },
);
const { logger, metrics } = createObservability('scorer');
process.stdout.write('ready\n');
const out = await clients.sqs.send(
  new ReceiveMessageCommand({ QueueUrl: queueUrl, MaxNumberOfMessages: 10, WaitTimeSeconds: 5 }),
);
const messages = (out.Messages ?? []).map((m) => ({ messageId: m.MessageId ?? '', body: m.Body ?? '' }));
const result = await scoreBatch(messages, {
  ...clients,
  logger,
  metrics,
  model: zScoreModel({ threshold: config.zThreshold, minSamples: config.minSamples }),
  config,
});
// Not reached when a transaction committed; what follows is what a scorer that lived would do.
const done = (out.Messages ?? []).filter((m) => !result.failures.has(m.MessageId ?? ''));
if (done.length > 0) {
  await clients.sqs.send(
    new DeleteMessageBatchCommand({
      QueueUrl: queueUrl,
      Entries: done.map((m, i) => ({ Id: String(i), ReceiptHandle: m.ReceiptHandle ?? '' })),
    }),
  );
}
process.stdout.write(`finished without dying (${result.scored} scored)\n`);
