/** Worker processes of the test pipeline: an s3-trigger worker whose AWS calls go through a proxy. */
import { startWorker, type Worker } from '../../tools/workers.ts';

export { startWorker, type Worker };

/** What {@link startS3TriggerWorkerVia} needs of a test pipeline (test/integration/pipeline.ts). */
interface PipelineLike {
  readonly env: Readonly<Record<string, string>>;
  readonly resources: {
    readonly queues: { readonly fileEvents: { readonly url: string; readonly arn: string } };
  };
}

/**
 * An s3-trigger worker process on the pipeline's file-events queue whose AWS calls, the sends to its
 * queues included, all go through `proxyUrl` (a latency or fault proxy); `env` is added on top.
 */
export function startS3TriggerWorkerVia(
  p: PipelineLike,
  proxyUrl: string,
  env: Readonly<Record<string, string>> = {},
): Promise<Worker> {
  const viaProxy = (queueUrl: string | undefined) =>
    new URL(new URL(queueUrl ?? '').pathname, proxyUrl).toString();
  return startWorker(
    'test/integration/workers/s3-trigger-worker.ts',
    [p.resources.queues.fileEvents.url, p.resources.queues.fileEvents.arn],
    {
      ...p.env,
      AWS_ENDPOINT_URL: proxyUrl,
      SIGNALS_QUEUE_URL: viaProxy(p.env.SIGNALS_QUEUE_URL),
      FILE_EVENTS_QUEUE_URL: viaProxy(p.env.FILE_EVENTS_QUEUE_URL),
      ...env,
    },
  );
}
