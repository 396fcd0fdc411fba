import { createHash } from 'node:crypto';

/**
 * Object keys built from outside input (an object key, a table name, row ids): kept readable where short,
 * and bounded whatever the input, since S3 refuses a key longer than {@link S3_MAX_KEY_BYTES}.
 */

/** S3's limit on an object key: 1,024 bytes of UTF-8 (longer keys are refused with `KeyTooLongError`). */
export const S3_MAX_KEY_BYTES = 1024;

/** What a shortened text ends with: `~` and 32 hex digits (128 bits) of its sha256. */
const DIGEST_SUFFIX_BYTES = 33;

/**
 * The sha256 of `parts`, each followed by a line end, as `length` hex digits: a short name for them that is
 * the same on every run.
 */
export function digest(parts: Iterable<string>, length = 32): string {
  const hash = createHash('sha256');
  for (const part of parts) hash.update(part).update('\n');
  return hash.digest('hex').slice(0, length);
}

/**
 * `text` itself when its UTF-8 takes at most `maxBytes - 4` bytes; otherwise its first bytes, cut at a
 * character boundary, then `~` and the {@link digest} of the whole text: between `maxBytes - 3` and
 * `maxBytes` bytes. A shortened text is thus always longer than any text kept as it is, so the two can never
 * be equal (a short key cannot be chosen to collide with a long one), and two long texts share a result
 * only if their first bytes and 128 bits of their sha256 agree.
 */
export function boundedKeyPart(text: string, maxBytes: number): string {
  if (maxBytes < 2 * DIGEST_SUFFIX_BYTES)
    throw new RangeError(`a key part needs more than ${maxBytes} bytes`);
  const bytes = Buffer.from(text, 'utf8');
  if (bytes.length <= maxBytes - 4) return text;
  let cut = maxBytes - DIGEST_SUFFIX_BYTES;
  // Back to the start of the character the cut falls in (UTF-8 continuation bytes are 10xxxxxx).
  while (cut > 0 && ((bytes[cut] as number) & 0xc0) === 0x80) cut--;
  return `${bytes.subarray(0, cut).toString('utf8')}~${digest([text])}`;
}
