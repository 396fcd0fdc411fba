/**
 * `pulse doctor`: is this deployment (or the offline run) wired so that data gets through? Each check says
 * what it found, in words, and what to do next. The checks of a deployed stack are in `doctor-aws.ts`
 * (and `doctor-database.ts`, `doctor-kafka.ts`), those of the offline run in `doctor-local.ts`; the canary
 * round trip both make is `doctor-canary.ts`; the text output is `doctor-text.ts`.
 */

import { GetQueueAttributesCommand, type SQSClient } from '@aws-sdk/client-sqs';

/**
 * `ok`: fine. `problem`: something is wrong (what to do is in `next`). `cannot-check`: doctor could not tell
 * (no access, an earlier check failed, no offline run). `not-configured`: the source is not set up, which
 * is no fault (a stack without a database or Kafka source).
 */
export type CheckStatus = 'ok' | 'problem' | 'cannot-check' | 'not-configured';

export interface DoctorCheck {
  /** A stable id for scripts: `credentials`, `stack`, `outputs`, `notifications`, `event-sources`, `dlqs`, `database`, `kafka`, … */
  readonly id: string;
  readonly title: string;
  readonly status: CheckStatus;
  /** What was found, in words. */
  readonly summary: string;
  /** What to do next (problems and checks that could not be made). */
  readonly next?: string;
  /** The facts behind the summary, one per line (names, states, times). */
  readonly details?: readonly string[];
}

/** Exit codes: 0 every check ok (or not configured); 1 a problem; 2 nothing wrong found, but a check could not be made. */
export type DoctorExitCode = 0 | 1 | 2;

export interface DoctorReport {
  readonly exitCode: DoctorExitCode;
  /** The stack name, or `local`. */
  readonly target: string;
  readonly checks: readonly DoctorCheck[];
}

export function doctorExitCode(checks: readonly DoctorCheck[]): DoctorExitCode {
  if (checks.some((c) => c.status === 'problem')) return 1;
  if (checks.some((c) => c.status === 'cannot-check')) return 2;
  return 0;
}

export function doctorReport(target: string, checks: readonly DoctorCheck[]): DoctorReport {
  return { exitCode: doctorExitCode(checks), target, checks };
}

/** A check that could not be made because an earlier one failed (or an error stopped it). */
export function cannotCheck(id: string, title: string, why: string, next?: string): DoctorCheck {
  return { id, title, status: 'cannot-check', summary: why, ...(next ? { next } : {}) };
}

/** An error's name and message, for a check's words. */
export function errorText(err: unknown): string {
  const e = err as { name?: string; message?: string } | null;
  const name = e?.name && e.name !== 'Error' ? `${e.name}: ` : '';
  return `${name}${e?.message ?? String(err)}`;
}

/** True when AWS refused the call for lack of permission (the check cannot tell, rather than a fault). */
export function isAccessDenied(err: unknown): boolean {
  const name = (err as { name?: string } | null)?.name ?? '';
  return /AccessDenied|UnauthorizedOperation|AuthorizationError|NotAuthorized/i.test(name);
}

export interface DlqQueue {
  /** What the queue holds, in words: `file-events DLQ`. */
  readonly label: string;
  readonly url: string;
  /** What to do when it holds messages. */
  readonly next: string;
}

/** The depth of each dead-letter queue (and the Kafka failure notices): a message in one is a problem. */
export async function dlqDepthCheck(sqs: SQSClient, queues: readonly DlqQueue[]): Promise<DoctorCheck> {
  const title = 'Dead-letter queues';
  const depths: { queue: DlqQueue; depth: number }[] = [];
  try {
    for (const queue of queues) {
      const out = await sqs.send(
        new GetQueueAttributesCommand({
          QueueUrl: queue.url,
          AttributeNames: ['ApproximateNumberOfMessages'],
        }),
      );
      depths.push({ queue, depth: Number(out.Attributes?.ApproximateNumberOfMessages ?? 0) });
    }
  } catch (err) {
    return cannotCheck('dlqs', title, `could not read a queue's depth: ${errorText(err)}`, grantHint(err));
  }
  const details = depths.map((d) => `${d.queue.label}: ${d.depth} message(s)`);
  const full = depths.filter((d) => d.depth > 0);
  if (full.length === 0) return { id: 'dlqs', title, status: 'ok', summary: 'all empty', details };
  return {
    id: 'dlqs',
    title,
    status: 'problem',
    summary: full.map((d) => `${d.queue.label} holds ${d.depth}`).join('; '),
    next: full.map((d) => d.queue.next).join(' '),
    details,
  };
}

/** Words for a refused call: which permission the operator lacks. */
export function grantHint(err: unknown): string | undefined {
  return isAccessDenied(err)
    ? 'Your credentials lack a permission doctor needs (docs/aws-fidelity.md lists them, under the pulse CLI).'
    : undefined;
}
