import { describe, expect, it } from 'vitest';
import { itemSize, numberSize, wireItemSize, writeUnits } from '../../../functions/scorer/item-size.ts';

describe('DynamoDB item sizes', () => {
  it('counts names and values as AWS documents them', () => {
    // Act and assess: a string's UTF-8 bytes, a number's digits (2 a byte, plus 1), a binary's bytes,
    // a boolean 1, a list 3 plus 1 an element.
    expect(itemSize({ pk: 'abc' })).toBe(2 + 3);
    expect(itemSize({ n: 12345 })).toBe(1 + 4);
    expect(itemSize({ b: new Uint8Array(10) })).toBe(1 + 10);
    expect(itemSize({ ok: true })).toBe(2 + 1);
    expect(itemSize({ l: ['a', 'bc'] })).toBe(1 + 3 + (1 + 1) + (1 + 2));
    expect(itemSize({ s: 'é' })).toBe(1 + 2);
    expect(numberSize(0.0012)).toBe(2);
    expect(numberSize(1e-7)).toBe(2);
  });

  it('gives the same size from the wire format the benchmark sees', () => {
    // Prepare
    const item = {
      pk: 'series#x',
      count: 123456,
      mean: 2.5,
      m2: 1e20,
      tags: ['a', 'b'],
      b: new Uint8Array(7),
      ok: false,
    };
    const wire = {
      pk: { S: 'series#x' },
      count: { N: '123456' },
      mean: { N: '2.5' },
      m2: { N: '100000000000000000000' },
      tags: { L: [{ S: 'a' }, { S: 'b' }] },
      b: { B: Buffer.alloc(7).toString('base64') },
      ok: { BOOL: false },
    };
    // Act
    const sizes = [wireItemSize(wire), itemSize(item)];
    // Assess
    expect(sizes[0]).toBe(sizes[1]);
  });

  it('bills a write unit per started KB', () => {
    expect([1, 1024, 1025, 4096].map(writeUnits)).toEqual([1, 1, 2, 4]);
  });
});
