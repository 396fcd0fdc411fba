import type { CheckStatus, DoctorReport } from './doctor.ts';
import { printable } from './terminal.ts';

const MARK: Record<CheckStatus, string> = {
  ok: 'ok     ',
  problem: 'PROBLEM',
  'cannot-check': '??     ',
  'not-configured': '-      ',
};

/** The report for a terminal: one line per check, its facts indented, and what to do next under a problem. */
export function doctorText(report: DoctorReport): string {
  const lines = [`pulse doctor: ${report.target}`];
  for (const c of report.checks) {
    lines.push(`${MARK[c.status]} ${c.title}: ${c.summary}`);
    for (const d of c.details ?? []) lines.push(`          ${d}`);
    if (c.next && c.status !== 'ok') lines.push(`        → ${c.next}`);
  }
  const counts = (s: CheckStatus) => report.checks.filter((c) => c.status === s).length;
  lines.push(
    report.exitCode === 0
      ? 'All checks passed.'
      : report.exitCode === 1
        ? `${counts('problem')} problem(s) found.`
        : `No problem found, but ${counts('cannot-check')} check(s) could not be made.`,
  );
  // What AWS and the stack say (reasons, log lines, names) comes from outside: printable() keeps it inert.
  return lines.map(printable).join('\n');
}
