/**
 * The offline alarms for `pulse status`: the dashboard (local/dashboard/server.ts) evaluates the stack's
 * alarms on its samples and the runtime's health (the ledger sweep's last run: FilesStuck,
 * NotificationsSilent, ReceiptMismatches, …); `pulse status` shows the ones in ALARM. A deployed stack's
 * alarms are CloudWatch's (its console, or `aws cloudwatch describe-alarms --state-value ALARM`).
 */

import type { AlarmEvaluation } from '../dashboard/alarms.ts';
import type { DashboardSnapshot } from '../dashboard/server.ts';

/** The alarms the offline dashboard at `url` evaluated last, or undefined when it cannot be read. */
export async function offlineAlarms(
  url: string,
  timeoutMs = 2000,
): Promise<readonly AlarmEvaluation[] | undefined> {
  try {
    const res = await fetch(new URL('/api/status', url), { signal: AbortSignal.timeout(timeoutMs) });
    if (!res.ok) return undefined;
    return ((await res.json()) as DashboardSnapshot).alarms;
  } catch {
    return undefined;
  }
}

/** Lines for a person: each alarm in ALARM with its reason, or that none is. */
export function alarmLines(alarms: readonly AlarmEvaluation[] | undefined): string[] {
  if (!alarms) return ['alarms   (the offline dashboard could not be read: is `pulse local up` running?)'];
  const firing = alarms.filter((a) => a.state === 'ALARM');
  if (firing.length === 0) return [`alarms   none in ALARM (${alarms.length} evaluated)`];
  return firing.map((a) => `alarm    ${a.name}: ${a.reason}`);
}
