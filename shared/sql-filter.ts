/**
 * The db-poller's extra `WHERE` filter (`DB_WHERE`, prop `dbPoller.where`): a boolean SQL expression over the
 * polled table's columns, added as `AND (<filter>)` to every statement that reads rows. It is checked here,
 * at synth and at cold start, so that it can only ever be one parenthesised expression inside the poller's
 * own statements, lexed by PostgreSQL exactly as it is lexed here:
 *
 * - column names (plain, or double-quoted), string literals in single quotes (`''` for a quote; no
 *   backslash, no `E'…'`, `U&'…'`, `B'…'`, `X'…'` prefixes), numbers, `TRUE`, `FALSE`, `NULL`;
 * - `=`, `<>`, `!=`, `<`, `<=`, `>`, `>=`, `+`, `-`, `*`, `/`, `%`, `||`, casts `::type`, parentheses, commas;
 * - `AND`, `OR`, `NOT`, `IS [NOT] NULL | TRUE | FALSE | DISTINCT FROM`, `[NOT] IN (…)`, `BETWEEN … AND …`,
 *   `[NOT] LIKE | ILIKE`, `INTERVAL '…'`, `CURRENT_DATE`, `CURRENT_TIMESTAMP`;
 * - calls of the functions in {@link ALLOWED_FUNCTIONS} (no side effects, no locks, no other tables).
 *
 * Refused: `;`, comments, dollar quoting, placeholders (`$1`: the poller's own parameters), subqueries
 * (`SELECT`) and every other SQL keyword that could change a statement's shape (`FROM` outside
 * `IS DISTINCT FROM`, `ORDER`, `LIMIT`, `FOR`, `UNION`, …), unbalanced parentheses, and more than
 * {@link MAX_FILTER_LENGTH} characters. Whether the columns exist, and the expression is well typed, the
 * database says on the first poll.
 */

export const MAX_FILTER_LENGTH = 1000;

/** Functions a filter may call: pure, cheap, reading nothing but their arguments (and the clock). */
export const ALLOWED_FUNCTIONS = new Set([
  'abs',
  'ceil',
  'coalesce',
  'date_part',
  'date_trunc',
  'floor',
  'greatest',
  'least',
  'length',
  'lower',
  'now',
  'nullif',
  'round',
  'trim',
  'upper',
]);

/** Keywords a filter may use as keywords. */
const KEYWORDS = new Set([
  'and',
  'or',
  'not',
  'is',
  'null',
  'true',
  'false',
  'in',
  'between',
  'like',
  'ilike',
  'distinct',
  'interval',
  'current_date',
  'current_timestamp',
]);

/**
 * Reserved words of PostgreSQL (its keyword list's "reserved" ones and those that take a statement apart),
 * refused as bare words: a column of that name is written double-quoted.
 */
const REFUSED = new Set([
  'all',
  'analyse',
  'analyze',
  'any',
  'array',
  'as',
  'asc',
  'asymmetric',
  'both',
  'case',
  'cast',
  'check',
  'collate',
  'column',
  'constraint',
  'create',
  'current_catalog',
  'current_role',
  'current_time',
  'current_user',
  'default',
  'deferrable',
  'delete',
  'desc',
  'do',
  'else',
  'end',
  'except',
  'exists',
  'fetch',
  'for',
  'foreign',
  'from',
  'grant',
  'group',
  'having',
  'insert',
  'intersect',
  'into',
  'join',
  'lateral',
  'leading',
  'limit',
  'localtime',
  'localtimestamp',
  'offset',
  'on',
  'only',
  'order',
  'placing',
  'primary',
  'references',
  'returning',
  'select',
  'session_user',
  'similar',
  'some',
  'symmetric',
  'system_user',
  'table',
  'then',
  'to',
  'trailing',
  'union',
  'unique',
  'update',
  'user',
  'using',
  'values',
  'variadic',
  'when',
  'where',
  'window',
  'with',
]);

const OPERATORS = new Set(['=', '<>', '!=', '<', '<=', '>', '>=', '+', '-', '*', '/', '%', '||', '::']);
const OPERATOR_CHARS = /[+\-*/<>=~!@#%^&|`?:]/;

/** Why a filter is refused; undefined when it is allowed. */
export function checkSqlFilter(filter: string): string | undefined {
  if (filter.trim() === '') return 'is empty';
  if (filter.length > MAX_FILTER_LENGTH) return `is longer than ${MAX_FILTER_LENGTH} characters`;
  let depth = 0;
  let previousWord: string | undefined;
  let i = 0;
  while (i < filter.length) {
    const ch = filter.charAt(i);
    if (/[ \t\n\r]/.test(ch)) {
      i++;
      continue;
    }
    if (ch === "'") {
      const end = stringEnd(filter, i);
      if (end < 0) return 'has a string literal that is not closed';
      if (filter.slice(i, end).includes('\\')) return 'has a backslash in a string literal';
      i = end;
      previousWord = undefined;
      continue;
    }
    if (ch === '"') {
      const end = filter.indexOf('"', i + 1);
      if (end < 0 || end === i + 1) return 'has a quoted identifier that is not closed or is empty';
      i = end + 1;
      previousWord = undefined;
      continue;
    }
    const word = /^[A-Za-z_][A-Za-z0-9_]*/.exec(filter.slice(i))?.[0];
    if (word) {
      const next = filter.charAt(i + word.length);
      if (next === "'" || next === '"' || next === '$') {
        return `has ${word}${next}…: prefixed literals and quoted identifiers are not allowed (leave a space)`;
      }
      const lower = word.toLowerCase();
      const why = wordProblem(lower, filter.slice(i + word.length), previousWord);
      if (why) return why;
      previousWord = lower;
      i += word.length;
      continue;
    }
    const number = /^(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?/.exec(filter.slice(i))?.[0];
    if (number) {
      if (/^[A-Za-z_$]/.test(filter.charAt(i + number.length)))
        return `has ${number}… : a number runs into a word`;
      i += number.length;
      previousWord = undefined;
      continue;
    }
    if (OPERATOR_CHARS.test(ch)) {
      let end = i;
      while (end < filter.length && OPERATOR_CHARS.test(filter.charAt(end))) end++;
      const op = filter.slice(i, end);
      if (!OPERATORS.has(op))
        return `has the operator ${op} (allowed: ${[...OPERATORS].join(' ')}; put spaces between two)`;
      i = end;
      previousWord = undefined;
      continue;
    }
    if (ch === '(') depth++;
    else if (ch === ')') {
      depth--;
      if (depth < 0) return 'closes a parenthesis it did not open';
    } else if (ch !== ',') {
      return `has ${JSON.stringify(ch)}, which is not allowed`;
    }
    previousWord = undefined;
    i++;
  }
  if (depth !== 0) return 'leaves a parenthesis open';
  return undefined;
}

/** Index just past the string literal starting at `start` (`''` is a quote inside it), or -1. */
function stringEnd(text: string, start: number): number {
  let i = start + 1;
  while (i < text.length) {
    if (text.charAt(i) === "'") {
      if (text.charAt(i + 1) === "'") {
        i += 2;
        continue;
      }
      return i + 1;
    }
    i++;
  }
  return -1;
}

/** Why a bare word is refused, or undefined. `rest`: the text after it. */
function wordProblem(word: string, rest: string, previousWord: string | undefined): string | undefined {
  if (/^\s*\(/.test(rest) && !KEYWORDS.has(word)) {
    return ALLOWED_FUNCTIONS.has(word)
      ? undefined
      : `calls ${word}(), which is not one of the functions allowed (${[...ALLOWED_FUNCTIONS].join(', ')})`;
  }
  // `IS DISTINCT FROM` is the one place FROM is allowed.
  if (word === 'from' && previousWord === 'distinct') return undefined;
  if (REFUSED.has(word))
    return `has the SQL keyword ${word.toUpperCase()} (write a column of that name "double-quoted")`;
  return undefined;
}
