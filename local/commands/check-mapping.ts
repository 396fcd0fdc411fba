/**
 * For `pulse check`: when a file's records lack a required field (`name`, `value`, `timestamp`), the column
 * that most likely holds it — "column `metric` looks like `name`" — judged by its name (the field in
 * another letter case or with spaces, or a usual name for it) and by its values (those the deployed
 * validation would take for the field), and how many of the records sampled would be sent were the
 * columns so named.
 */

import { normaliseSignal, REQUIRED_FIELDS } from '#shared/signal.ts';

export type RequiredField = (typeof REQUIRED_FIELDS)[number];

/** A record read, and whether it would be sent as it is. */
export interface MappingSample {
  readonly data: Record<string, unknown>;
  readonly ok: boolean;
}

/** A column that looks like a missing field, and why. */
export interface ColumnMatch {
  readonly field: RequiredField;
  readonly column: string;
  readonly why: string;
}

export interface ColumnMapping {
  /** Required fields that records sampled and rejected lack. */
  readonly missing: readonly RequiredField[];
  /** The columns that look like them (at most one each). */
  readonly matches: readonly ColumnMatch[];
  /** Missing fields no column looks like. */
  readonly unmatched: readonly RequiredField[];
  /** Records sampled, those that would be sent as they are, and those that would with the columns renamed. */
  readonly sampled: number;
  readonly acceptedAsIs: number;
  readonly acceptedMapped: number;
  /** The columns in order, each matched one under its field's name: a CSV header that would do. */
  readonly renamedHeader: readonly string[];
  /**
   * Each matched column's own name is a value of its field (`cpu`, `12.5`, a timestamp): the "header" is
   * most likely a record, and the file needs a header line added rather than renamed.
   */
  readonly headerLooksLikeData: boolean;
}

/** Usual names of each field in other tools' exports, lower case with only letters and digits. */
const SYNONYMS: Readonly<Record<RequiredField, ReadonlySet<string>>> = {
  name: new Set([
    'metric',
    'metricname',
    'measurement',
    'measure',
    'series',
    'seriesname',
    'signal',
    'signalname',
    'sensor',
    'label',
    'kpi',
    'indicator',
    'variable',
    'key',
  ]),
  value: new Set([
    'val',
    'metricvalue',
    'reading',
    'amount',
    'quantity',
    'qty',
    'count',
    'number',
    'num',
    'level',
    'y',
    'v',
  ]),
  timestamp: new Set([
    'time',
    'ts',
    'date',
    'datetime',
    'at',
    'when',
    'epoch',
    'eventtime',
    'eventtimestamp',
    'timestamputc',
    'timeutc',
    'createdat',
    'occurredat',
    'observedat',
    'recordedat',
    'timestampms',
    't',
  ]),
};

/**
 * Epoch seconds from 2001 on: a number below it is far more likely a measurement than a time, for a
 * guess by values alone (the validation itself takes any epoch time).
 */
const EPOCH_GUESS_MIN = 1e9;

/** A valid record in every field but the one probed. */
const PROBE = { name: 'probe', value: 1, timestamp: 1_700_000_000_000 } as const;
const PROBE_CTX = { origin: { kind: 's3', ref: 'probe' }, defaultSource: 'probe' } as const;

/** Whether the deployed validation takes `v` for `field` (and, for a guess by values, it looks the part). */
function looksLike(field: RequiredField, v: unknown): boolean {
  if (!normaliseSignal({ ...PROBE, [field]: v }, PROBE_CTX).ok) return false;
  const numeric =
    typeof v === 'number' || (typeof v === 'string' && v.trim() !== '' && !Number.isNaN(Number(v)));
  switch (field) {
    case 'name':
      return !numeric;
    case 'value':
      return numeric;
    case 'timestamp':
      return !numeric || Number(v) >= EPOCH_GUESS_MIN;
  }
}

const squash = (key: string) => key.toLowerCase().replace(/[^a-z0-9]/g, '');

interface Candidate extends ColumnMatch {
  readonly score: number;
}

/**
 * The mapping of the required fields that rejected records of `sample` lack to columns of `sample`, or
 * undefined when no rejected record lacks one (records rejected for their values are not a header problem).
 */
export function suggestMapping(
  sample: readonly MappingSample[],
  /** The columns in file order (a CSV header), when known: an object puts integer-like keys first. */
  columnOrder?: readonly string[],
): ColumnMapping | undefined {
  const columns = new Set<string>();
  for (const { data } of sample) for (const k of Object.keys(data)) columns.add(k);
  const lacking = (f: RequiredField, data: Record<string, unknown>) => !Object.hasOwn(data, f);
  const missing = REQUIRED_FIELDS.filter((f) => sample.some((s) => !s.ok && lacking(f, s.data)));
  if (missing.length === 0) return undefined;
  const candidates: Candidate[] = [];
  for (const column of columns) {
    if ((REQUIRED_FIELDS as readonly string[]).includes(column)) continue;
    const values = sample.map((s) => s.data[column]).filter((v) => v !== undefined && v !== null && v !== '');
    for (const field of missing) {
      const share = values.length > 0 ? values.filter((v) => looksLike(field, v)).length / values.length : 0;
      const pct = `${Math.round(share * 100)}% of its values sampled`;
      if (column.trim().toLowerCase() === field) {
        candidates.push({
          field,
          column,
          why: 'the same name in another letter case or with spaces (names are matched exactly)',
          score: 3 + share,
        });
      } else if (SYNONYMS[field].has(squash(column))) {
        candidates.push({
          field,
          column,
          why: `a usual name for \`${field}\`; ${pct} fit`,
          score: 2 + share,
        });
      } else if (share >= 0.9) {
        candidates.push({ field, column, why: `its values look like a \`${field}\` (${pct})`, score: share });
      }
    }
  }
  // The best-scored match first; each field and each column used once.
  candidates.sort((a, b) => b.score - a.score);
  const matches: ColumnMatch[] = [];
  const used = new Set<string>();
  for (const c of candidates) {
    if (used.has(c.column) || matches.some((m) => m.field === c.field)) continue;
    used.add(c.column);
    matches.push({ field: c.field, column: c.column, why: c.why });
  }
  matches.sort((a, b) => REQUIRED_FIELDS.indexOf(a.field) - REQUIRED_FIELDS.indexOf(b.field));
  const acceptedMapped = sample.filter(
    ({ data }) => normaliseSignal(renamed(data, matches), PROBE_CTX).ok,
  ).length;
  const order = columnOrder ?? Object.keys(sample[0]?.data ?? {});
  return {
    missing,
    matches,
    renamedHeader: order.map((k) => matches.find((m) => m.column === k)?.field ?? k),
    // Any word passes for a name: a value or a timestamp must be among them.
    headerLooksLikeData:
      matches.some((m) => m.field !== 'name') && matches.every((m) => looksLike(m.field, m.column)),
    unmatched: missing.filter((f) => !matches.some((m) => m.field === f)),
    sampled: sample.length,
    acceptedAsIs: sample.filter((s) => s.ok).length,
    acceptedMapped,
  };
}

/** `data` with each matched column renamed to its field. */
function renamed(data: Record<string, unknown>, matches: readonly ColumnMatch[]): Record<string, unknown> {
  // fromEntries defines each key as its own property (a `__proto__` column included).
  return Object.fromEntries(
    Object.entries(data).map(([k, v]) => [matches.find((m) => m.column === k)?.field ?? k, v]),
  );
}
