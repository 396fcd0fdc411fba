import * as z from 'zod';

/**
 * What EventBridge Scheduler passes: the schedule target's `Input`, verbatim. The stack's schedules (one per
 * table) name the table to poll (`table`); when the schedule fills in its context attributes
 * (`{"scheduledTime":"<aws.scheduler.scheduled-time>","executionId":"<aws.scheduler.execution-id>"}`)
 * they become correlation keys in the logs. Anything else (an empty payload, a console test event) is
 * accepted and ignored.
 */
export const SchedulerInvocationSchema = z
  .object({
    scheduledTime: z.string().optional().catch(undefined),
    executionId: z.string().optional().catch(undefined),
    /** The table this invocation polls (one of the function's tables: shared/config.ts dbPollerConfigFor). */
    table: z.string().optional().catch(undefined),
  })
  .loose()
  .catch({});
export type SchedulerInvocation = z.infer<typeof SchedulerInvocationSchema>;

export function parseSchedulerInvocation(event: unknown): {
  scheduledTime?: string;
  executionId?: string;
  table?: string;
} {
  const e = SchedulerInvocationSchema.parse(event ?? {});
  return {
    ...(e.scheduledTime ? { scheduledTime: e.scheduledTime } : {}),
    ...(e.executionId ? { executionId: e.executionId } : {}),
    ...(e.table !== undefined ? { table: e.table } : {}),
  };
}
