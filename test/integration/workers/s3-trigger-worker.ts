/**
 * A stand-alone s3-trigger worker for crash tests: the real handler behind the SQS event-source
 * emulation, in its own process, so that a test can kill it (SIGKILL) in the middle of a file.
 * Configuration comes from the environment, exactly as in Lambda; `PULSE_WORKER_TIMEOUT_SECONDS` is the
 * function timeout its event source enforces (default: the event source's).
 */
import { SQSClient } from '@aws-sdk/client-sqs';
import { settings } from '#shared/settings.ts';
import { startSqsEventSource } from '../../../local/event-sources/sqs.ts';

const queueUrl = process.argv[2];
const queueArn = process.argv[3];
if (!queueUrl || !queueArn) throw new Error('usage: s3-trigger-worker <file-events queue url> <queue arn>');

const { handler } = await import('../../../functions/s3-trigger/handler.ts');
startSqsEventSource({
  // The event source stands for Lambda's own poller: it reads the queue where it is, not through the
  // proxy the handler's calls may go through (AWS_ENDPOINT_URL).
  sqs: new SQSClient({ endpoint: new URL(queueUrl).origin }),
  queueUrl,
  queueArn,
  batchSize: settings.fileEvents.batchSize,
  handler: handler as never,
  ...(process.env.PULSE_WORKER_TIMEOUT_SECONDS
    ? { functionTimeoutSeconds: Number(process.env.PULSE_WORKER_TIMEOUT_SECONDS) }
    : {}),
});
process.stdout.write('ready\n');
