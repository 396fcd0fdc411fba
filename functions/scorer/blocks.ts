import { randomBytes } from 'node:crypto';

/**
 * A block item's bitmap: bit `i` set when position `block × B + i` of its stream is applied. Stored as
 * DynamoDB Binary, trimmed after its last non-zero byte (a block filling up grows to B/8 bytes).
 */
export class Bitmap {
  #bytes: Uint8Array;
  #count: number;

  private constructor(bytes: Uint8Array, count: number) {
    this.#bytes = bytes;
    this.#count = count;
  }

  static empty(): Bitmap {
    return new Bitmap(new Uint8Array(0), 0);
  }

  static from(bytes: Uint8Array | undefined): Bitmap {
    const copy = new Uint8Array(bytes ?? []);
    let count = 0;
    for (const b of copy) count += popcount(b);
    return new Bitmap(copy, count);
  }

  has(bit: number): boolean {
    const byte = bit >> 3;
    return byte < this.#bytes.length && ((this.#bytes[byte] as number) & (1 << (bit & 7))) !== 0;
  }

  /** Sets the bit; false when it was set already. */
  set(bit: number): boolean {
    if (this.has(bit)) return false;
    const byte = bit >> 3;
    if (byte >= this.#bytes.length) {
      const grown = new Uint8Array(byte + 1);
      grown.set(this.#bytes);
      this.#bytes = grown;
    }
    this.#bytes[byte] = (this.#bytes[byte] as number) | (1 << (bit & 7));
    this.#count++;
    return true;
  }

  /** Bits set. */
  get count(): number {
    return this.#count;
  }

  /** The bytes to store, without trailing zero bytes. */
  toBytes(): Uint8Array {
    let end = this.#bytes.length;
    while (end > 0 && this.#bytes[end - 1] === 0) end--;
    return this.#bytes.slice(0, end);
  }

  clone(): Bitmap {
    return new Bitmap(this.#bytes.slice(), this.#count);
  }
}

function popcount(b: number): number {
  let n = 0;
  for (let x = b; x; x &= x - 1) n++;
  return n;
}

/**
 * A transaction attempt's token: the UTC date it was made and 64 random bits, `yyyymmdd-<16 hex>`. The
 * attempt's scores are written under it (`scores-pending/<token>…`, then `scores/dt=<date>/<token>…`),
 * and the items it applies record it.
 */
export function newToken(nowMs: number): string {
  return `${new Date(nowMs).toISOString().slice(0, 10).replace(/-/g, '')}-${randomBytes(8).toString('hex')}`;
}

const TOKEN = /^(\d{4})(\d{2})(\d{2})-([0-9a-f]{16})$/;

/** `yyyy-mm-dd` of a token (the partition its final object goes to). */
export function tokenDate(token: string): string {
  const m = TOKEN.exec(token);
  if (!m) throw new Error(`not a score token: ${token}`);
  return `${m[1]}-${m[2]}-${m[3]}`;
}

export function isToken(text: string): boolean {
  return TOKEN.test(text);
}

const DAY_MS = 86_400_000;
/** Bytes of one token in a block item: the day (2 bytes, days since 1970) and the 8 random bytes. */
export const TOKEN_BYTES = 10;

/** Tokens packed for a block item: 10 bytes each (a list of strings would take 26). */
export function encodeTokens(tokens: readonly string[]): Uint8Array {
  const out = new Uint8Array(tokens.length * TOKEN_BYTES);
  tokens.forEach((token, i) => {
    const m = TOKEN.exec(token);
    if (!m) throw new Error(`not a score token: ${token}`);
    const day = Date.UTC(Number(m[1]), Number(m[2]) - 1, Number(m[3])) / DAY_MS;
    out[i * TOKEN_BYTES] = day >> 8;
    out[i * TOKEN_BYTES + 1] = day & 0xff;
    out.set(Buffer.from(m[4] as string, 'hex'), i * TOKEN_BYTES + 2);
  });
  return out;
}

export function decodeTokens(bytes: Uint8Array | undefined): string[] {
  const tokens: string[] = [];
  if (!bytes) return tokens;
  for (let i = 0; i + TOKEN_BYTES <= bytes.length; i += TOKEN_BYTES) {
    const day = ((bytes[i] as number) << 8) | (bytes[i + 1] as number);
    const date = new Date(day * DAY_MS).toISOString().slice(0, 10).replace(/-/g, '');
    tokens.push(`${date}-${Buffer.from(bytes.subarray(i + 2, i + TOKEN_BYTES)).toString('hex')}`);
  }
  return tokens;
}
