import { describe, expect, it } from 'vitest';
import { settings } from '#shared/settings.ts';
import {
  Bitmap,
  decodeTokens,
  encodeTokens,
  newToken,
  TOKEN_BYTES,
  tokenDate,
} from '../../../functions/scorer/blocks.ts';
import { itemSize } from '../../../functions/scorer/item-size.ts';
import { blockKey } from '../../../functions/scorer/keys.ts';
import { blockItem } from '../../../functions/scorer/transaction.ts';

describe('block bitmaps', () => {
  it('sets each bit once, counts them, and stores only up to the last set byte', () => {
    // Prepare
    const bits = Bitmap.empty();
    // Act
    const first = [3, 9, 3, 100].map((b) => bits.set(b));
    // Assess
    expect(first).toEqual([true, true, false, true]);
    expect(bits.count).toBe(3);
    expect([3, 9, 100, 4, 101].map((b) => bits.has(b))).toEqual([true, true, true, false, false]);
    expect(bits.toBytes()).toHaveLength(13);
    const back = Bitmap.from(bits.toBytes());
    expect(back.count).toBe(3);
    expect(back.has(100)).toBe(true);
  });

  it('keeps a clone apart from its original', () => {
    // Prepare
    const a = Bitmap.empty();
    a.set(1);
    // Act
    const b = a.clone();
    b.set(2);
    // Assess
    expect(a.has(2)).toBe(false);
    expect(b.count).toBe(2);
  });
});

describe('tokens', () => {
  it('packs each token into 10 bytes and back, date included', () => {
    // Prepare
    const tokens = [
      newToken(Date.parse('2026-12-02T23:59:59Z')),
      newToken(Date.parse('2030-01-01T00:00:00Z')),
    ];
    // Act
    const packed = encodeTokens(tokens);
    // Assess
    expect(packed).toHaveLength(2 * TOKEN_BYTES);
    expect(decodeTokens(packed)).toEqual(tokens);
    expect(tokenDate(tokens[0] as string)).toBe('2026-12-02');
  });
});

describe('block items', () => {
  it('stay within one write unit (1 KB) full of bits and tokens, so a block write costs 2 WRU in a transaction', () => {
    // Prepare: every position applied, as many tokens as a block keeps, a long block number.
    const bits = Bitmap.empty();
    for (let i = 0; i < settings.scoring.blockPositions; i++) bits.set(i);
    const tokens = Array.from({ length: settings.scoring.maxBlockTokens }, () => newToken(Date.now()));
    // Act
    const size = itemSize(
      blockItem(blockKey('f'.repeat(32), 2 ** 40), { exists: true, bits, version: 1e9, tokens }),
    );
    // Assess
    expect(size).toBeLessThanOrEqual(1024);
  });
});
