/** The characters SQS refuses in a message body that `JSON.stringify` leaves unescaped. */
const REFUSED = /[\uFFFE\uFFFF]/;
const REFUSED_ALL = /[\uFFFE\uFFFF]/g;

/**
 * JSON text as SQS accepts it in a message body. SQS allows only #x9, #xA, #xD, #x20–#xD7FF,
 * #xE000–#xFFFD and #x10000–#x10FFFF, and refuses the whole message otherwise (InvalidMessageContents).
 * `JSON.stringify` escapes control characters and lone surrogates, but not U+FFFE and U+FFFF (valid
 * Unicode, so valid in any input): they are escaped here. They can only stand inside a JSON string, where
 * the escape means the same, so the text parses to the same value.
 */
export function sqsSafeJson(json: string): string {
  if (!REFUSED.test(json)) return json;
  return json.replace(REFUSED_ALL, (c) => (c === '\uFFFE' ? '\\ufffe' : '\\uffff'));
}
