/**
 * Text for a terminal. Object keys, error reasons and message bodies come from outside (anyone who can
 * upload a file names its key): printed raw, an escape sequence in one could recolour, retitle or rewrite
 * the operator's terminal, a line break could forge a row, a bidirectional override could reorder what
 * they read. Every line the `pulse` CLI prints from the data goes through here.
 */

/**
 * C0 controls (ESC, CR, LF, TAB…), DEL, C1 controls (CSI U+009B and the rest: some terminals act on them),
 * the line and paragraph separators, and the bidirectional marks, embeddings, overrides and isolates.
 */
// biome-ignore lint/suspicious/noControlCharactersInRegex: matching control characters is the point.
const UNSAFE = /[\u0000-\u001f\u007f-\u009f\u061c\u200e\u200f\u2028\u2029\u202a-\u202e\u2066-\u2069]/g;
/** The same without C0, which JSON.stringify already escapes inside strings (and uses for indentation). */
const UNSAFE_IN_JSON = /[\u007f-\u009f\u061c\u200e\u200f\u2028\u2029\u202a-\u202e\u2066-\u2069]/g;

const hex4 = (c: string) => (c.codePointAt(0) ?? 0).toString(16).toUpperCase().padStart(4, '0');

/**
 * `text` with each unsafe character written as `<U+001B>`: visible, on one line, harmless, and left alone
 * by console.table (which would double a backslash).
 */
export function printable(text: string): string {
  return text.replace(UNSAFE, (c) => `<U+${hex4(c)}>`);
}

/**
 * JSON of `value` (indented by `space`) with the unsafe characters JSON.stringify leaves raw written as
 * `\uXXXX` escapes: the same JSON to a parser, nothing a terminal acts on.
 */
export function printableJson(value: unknown, space = 2): string {
  return JSON.stringify(value, null, space).replace(UNSAFE_IN_JSON, (c) => `\\u${hex4(c).toLowerCase()}`);
}

/** A row for console.table whose strings are {@link printable} (numbers and the rest left as they are). */
export function printableRow<T extends Record<string, unknown>>(row: T): T {
  return Object.fromEntries(
    Object.entries(row).map(([k, v]) => [printable(k), typeof v === 'string' ? printable(v) : v]),
  ) as T;
}
