/**
 * `pulse verify`'s receipts as text for a person: one block per object version, every key made
 * {@link printable}.
 */

import { printable } from './terminal.ts';
import type { Receipt } from './verify.ts';

const VERDICT: Record<Receipt['verdict'], string> = {
  ok: 'OK: every record read is accounted for',
  mismatch: 'MISMATCH',
  unfinished: 'UNFINISHED: not SUCCESS or FAILED yet, nothing to reconcile',
};

/** One receipt, as lines. */
export function receiptText(r: Receipt): string[] {
  const lines = [printable(`${r.object}  ${r.status}`), `  verdict  ${VERDICT[r.verdict]}`];
  lines.push(
    `  read     ${r.read} (ledger: ${r.ledger.records} sent + ${r.ledger.rejected} rejected)`,
    `  found    ${r.scored} scored + ${r.quarantined} quarantined + ${r.quarantinedByScorer} quarantined by the scorer` +
      ` + ${r.duplicates} duplicates dropped + ${r.notRecords} not records`,
  );
  if (r.missing > 0) {
    const more = r.missing > r.missingRows.length ? ` (first ${r.missingRows.length})` : '';
    lines.push(
      `  missing  ${r.missing} record(s) read are found nowhere: rows${more} ${compactRows(r.missingRows)}`,
    );
    if (r.appliedWithoutScore.length > 0) {
      lines.push(
        `           of these, rows ${compactRows(r.appliedWithoutScore)} are applied in the scores table: scored, their score records lost (a score object deleted?)`,
      );
    }
    const first = r.missingRows[0];
    if (first !== undefined) {
      lines.push(printable(`           look one up: npm run pulse -- scores --ref '${r.object}#${first}'`));
    }
  } else if (r.missing < 0) {
    lines.push(`  extra    ${-r.missing} more row(s) found than the ledger counted as read`);
  }
  return lines;
}

/** `1-3, 7, 9-10` */
export function compactRows(rows: readonly number[]): string {
  const parts: string[] = [];
  let i = 0;
  while (i < rows.length) {
    let j = i;
    while (j + 1 < rows.length && (rows[j + 1] as number) === (rows[j] as number) + 1) j++;
    parts.push(j > i ? `${rows[i]}-${rows[j]}` : String(rows[i]));
    i = j + 1;
  }
  return parts.join(', ');
}

/** Every receipt and a closing line. */
export function receiptsText(receipts: readonly Receipt[]): string {
  if (receipts.length === 0) return 'no object version found to verify (see: pulse ledger)';
  const out: string[] = [];
  for (const r of receipts) out.push(...receiptText(r), '');
  const n = (v: Receipt['verdict']) => receipts.filter((r) => r.verdict === v).length;
  out.push(
    `${receipts.length} object version(s): ${n('ok')} ok, ${n('mismatch')} mismatched, ${n('unfinished')} unfinished`,
  );
  return out.join('\n');
}
