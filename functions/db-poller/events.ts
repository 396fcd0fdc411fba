import * as z from 'zod';

/**
 * What EventBridge Scheduler passes: the schedule target's `Input`, verbatim. The poller needs nothing
 * from it; when the schedule fills in its context attributes
 * (`{"scheduledTime":"<aws.scheduler.scheduled-time>","executionId":"<aws.scheduler.execution-id>"}`)
 * they become correlation keys in the logs. Anything else (an empty payload, a console test event) is
 * accepted and ignored.
 */
export const SchedulerInvocationSchema = z
  .object({
    scheduledTime: z.string().optional().catch(undefined),
    executionId: z.string().optional().catch(undefined),
  })
  .loose()
  .catch({});
export type SchedulerInvocation = z.infer<typeof SchedulerInvocationSchema>;

export function parseSchedulerInvocation(event: unknown): { scheduledTime?: string; executionId?: string } {
  const e = SchedulerInvocationSchema.parse(event ?? {});
  return {
    ...(e.scheduledTime ? { scheduledTime: e.scheduledTime } : {}),
    ...(e.executionId ? { executionId: e.executionId } : {}),
  };
}
