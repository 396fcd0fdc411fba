/**
 * `pulse check`'s report as text for a person: aligned, every string from the file made
 * {@link printable} (keys, values and reasons come from whoever wrote the file).
 */

import { CHECK_EXIT, type CheckReport } from './check.ts';
import { printable, printableJson } from './terminal.ts';

const VERDICT_TEXT: Record<CheckReport['verdict'], string> = {
  ok: 'OK: would be ingested',
  rejects: 'REJECTS: more rows rejected than allowed',
  failed: 'FAILED: the file would fail',
  unsupported: 'SKIPPED: not a type the pipeline reads',
};

/** Columns padded to their widest cell (the last one left as it is). */
export function aligned(rows: readonly (readonly string[])[], indent = ''): string[] {
  const widths: number[] = [];
  for (const row of rows) {
    row.forEach((cell, i) => {
      widths[i] = Math.max(widths[i] ?? 0, [...cell].length);
    });
  }
  return rows.map(
    (row) =>
      indent +
      row
        .map((cell, i) =>
          i < row.length - 1 ? cell + ' '.repeat((widths[i] ?? 0) - [...cell].length) : cell,
        )
        .join('  ')
        .trimEnd(),
  );
}

const plural = (n: number, one: string, many = `${one}s`) => `${n} ${n === 1 ? one : many}`;

/** The report of one file, as lines. */
export function checkText(r: CheckReport): string[] {
  const lines: string[] = [printable(`${r.file}  →  ${r.key}`)];
  const field = (label: string, text: string) => lines.push(`  ${label.padEnd(9)}${printable(text)}`);
  field('verdict', `${VERDICT_TEXT[r.verdict]} (exit ${CHECK_EXIT[r.verdict]})`);
  if (r.format) field('format', `${r.format}${r.compression ? `, ${r.compression}-compressed` : ''}`);
  field('size', plural(r.bytes, 'byte'));
  if (r.format) {
    field(
      'records',
      `${r.records} read: ${r.signals} would be sent, ${r.rejected} rejected (${r.maxRejects} allowed: --max-rejects)`,
    );
  }
  if (r.failure) {
    const at = [
      r.failure.row !== undefined ? `row ${r.failure.row}` : '',
      r.failure.line !== undefined ? `line ${r.failure.line}` : '',
      r.failure.byte !== undefined ? `byte ${r.failure.byte}` : '',
    ].filter(Boolean);
    field('failure', `${r.failure.type}: ${r.failure.message}`);
    if (at.length > 0) field('', `at ${at.join(', ')}`);
    if (r.verdict === 'failed' && r.records > 0) {
      field('', `the ${plural(r.records, 'record')} before it would still be sent or rejected`);
    }
  }
  if (r.mapping) {
    const m = r.mapping;
    field('header', `no column named ${m.missing.map((f) => `\`${f}\``).join(', ')}`);
    for (const match of m.matches) {
      field('', `column \`${match.column}\` looks like \`${match.field}\`: ${match.why}`);
    }
    for (const f of m.unmatched) field('', `no column looks like \`${f}\``);
    if (m.headerLooksLikeData) {
      field(
        '',
        `its first line looks like a record, not a header: add a first line \`${m.renamedHeader.join(',')}\``,
      );
    } else if (r.format === 'csv' && m.matches.length > 0) {
      field('', `a header that would do: \`${m.renamedHeader.join(',')}\``);
    }
    if (m.matches.length > 0) {
      field(
        '',
        `renamed so, ${m.acceptedMapped} of the first ${plural(m.sampled, 'record')} would be sent (${m.acceptedAsIs} as they are)`,
      );
    }
  }
  if (r.firstRejects.length > 0) {
    lines.push(`  rejects  ${r.rejected > r.firstRejects.length ? `(first ${r.firstRejects.length})` : ''}`);
    lines.push(
      ...aligned(
        [
          ['row', 'byte', 'reason'],
          ...r.firstRejects.map((x) => [
            x.row !== undefined ? String(x.row) : '-',
            x.byte !== undefined ? String(x.byte) : '-',
            printable(x.reason),
          ]),
        ],
        '    ',
      ),
    );
  }
  if (r.firstSignals.length > 0) {
    lines.push(`  signals  ${r.signals > r.firstSignals.length ? `(first ${r.firstSignals.length})` : ''}`);
    for (const s of r.firstSignals) lines.push(`    ${printableJson(s, 0)}`);
  }
  return lines.map((l) => l.trimEnd());
}

/** The reports of several files and a closing line, as text. */
export function checkSummaryText(reports: readonly CheckReport[]): string {
  const out: string[] = [];
  for (const r of reports) out.push(...checkText(r), '');
  const count = (v: CheckReport['verdict']) => reports.filter((r) => r.verdict === v).length;
  out.push(
    `${plural(reports.length, 'file')} checked: ${count('ok')} ok, ${count('rejects')} with too many rejects, ` +
      `${count('failed')} failed, ${count('unsupported')} skipped`,
  );
  return out.join('\n');
}
