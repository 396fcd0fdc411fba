/**
 * The shape and the text of the CSV candidates comparison (`candidates.ts`), apart from the candidates
 * themselves: `bench/run.ts` reads and prints a result without loading the six parsers, which are installed
 * only into this folder's own package (`npm run bench:csv` installs them).
 */

export interface CaseResult {
  readonly pass: boolean;
  /** What went wrong, when it did: the records or the error, clipped. */
  readonly detail?: string;
}

export interface CandidateResult {
  readonly name: string;
  readonly package: string;
  readonly version: string;
  readonly driven: string;
  /** Best of `reps` runs, in MB/s, on the plain and the quoted data. */
  readonly mb_per_s_plain: number | null;
  readonly mb_per_s_quoted: number | null;
  readonly runs_s_plain: number[];
  readonly runs_s_quoted: number[];
  /** True when every speed run gave the right record count; else how many did not, and the first problem. */
  readonly records_ok: boolean | string;
  readonly cases: Record<string, CaseResult>;
  readonly cases_failed: string[];
}

export interface CsvCandidatesResult {
  readonly generated_at: string;
  readonly data: { plain_mb: number; quoted_mb: number; chunk_bytes: number; reps: number };
  readonly note: string;
  readonly cases: Record<string, string>;
  readonly candidates: CandidateResult[];
  /** The package of the fastest candidate (on the plain data) that passes every case, and that candidate. */
  readonly recommended: string;
  readonly recommended_driver: string;
}

function table(rows: string[][]): string {
  const widths = rows[0]?.map((_, i) => Math.max(...rows.map((r) => (r[i] ?? '').length))) ?? [];
  const line = (r: string[]) => r.map((cell, i) => cell.padEnd(widths[i] ?? 0)).join('  ');
  const [head, ...body] = rows;
  return [line(head ?? []), widths.map((w) => '-'.repeat(w)).join('  '), ...body.map(line)].join('\n');
}

/** The comparison as text: speed and failed cases per candidate, then what each failure was. */
export function formatCsvCandidates(r: CsvCandidatesResult): string {
  const out: string[] = [];
  out.push(
    `\nCSV parser candidates (${r.data.plain_mb} MB plain / ${r.data.quoted_mb} MB quoted, ${r.data.chunk_bytes / 1024} KiB chunks, ${r.note})`,
  );
  out.push(
    table([
      ['candidate', 'version', 'MB/s plain', 'MB/s quoted', 'cases failed'],
      ...r.candidates.map((c) => [
        c.name,
        c.version,
        String(c.mb_per_s_plain ?? '-'),
        String(c.mb_per_s_quoted ?? '-'),
        [c.records_ok === true ? '' : `speed data: ${c.records_ok}`, c.cases_failed.join(', ') || 'none']
          .filter(Boolean)
          .join('; '),
      ]),
    ]),
  );
  const failures = r.candidates.flatMap((c) =>
    Object.entries(c.cases)
      .filter(([, k]) => !k.pass)
      .map(([id, k]) => `  ${c.name} / ${id}: ${k.detail ?? ''}`),
  );
  if (failures.length > 0) out.push('\nHow they failed', ...failures);
  out.push(`\nFastest correct on every case: ${r.recommended} (${r.recommended_driver || 'no driver'})`);
  return `${out.join('\n')}\n`;
}
