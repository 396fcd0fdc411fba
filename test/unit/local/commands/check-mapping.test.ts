import { describe, expect, it } from 'vitest';
import { suggestMapping } from '../../../../local/commands/check-mapping.ts';

describe('suggestMapping', () => {
  it('tells a value from an epoch timestamp by its values when the names say nothing', () => {
    // Prepare
    const sample = [
      { data: { a: 'cpu', b: '12.5', c: '1700000000' }, ok: false },
      { data: { a: 'mem', b: '3', c: '1700000060' }, ok: false },
    ];
    // Act
    const mapping = suggestMapping(sample);
    // Assess
    expect(mapping?.matches.map((m) => [m.column, m.field])).toEqual([
      ['a', 'name'],
      ['b', 'value'],
      ['c', 'timestamp'],
    ]);
    expect(mapping).toMatchObject({ acceptedAsIs: 0, acceptedMapped: 2, unmatched: [] });
  });

  it('prefers a column named like the field over one whose values merely fit', () => {
    // Prepare
    const sample = [
      { data: { name: 'cpu', priority: '7', reading: '12.5', timestamp: '1700000000' }, ok: false },
    ];
    // Act
    const mapping = suggestMapping(sample);
    // Assess
    expect(mapping?.missing).toEqual(['value']);
    expect(mapping?.matches).toEqual([expect.objectContaining({ field: 'value', column: 'reading' })]);
  });

  it('names the fields no column looks like, and suggests nothing when every record would be sent', () => {
    // Prepare
    const odd = [{ data: { flag: true, note: '' }, ok: false }];
    const fine = [{ data: { name: 'cpu', value: 1, timestamp: 1700000000 }, ok: true }];
    // Act
    const mapping = suggestMapping(odd);
    // Assess
    expect(mapping).toMatchObject({ matches: [], unmatched: ['name', 'value', 'timestamp'] });
    expect(suggestMapping(fine)).toBeUndefined();
  });

  it('renames a column called __proto__ as an own field, without touching any prototype', () => {
    // Prepare
    const data = JSON.parse('{"__proto__":"cpu","value":"1","timestamp":"1700000000"}') as Record<
      string,
      unknown
    >;
    // Act
    const mapping = suggestMapping([{ data, ok: false }]);
    // Assess
    expect(mapping?.matches).toEqual([expect.objectContaining({ field: 'name', column: '__proto__' })]);
    expect(mapping?.acceptedMapped).toBe(1);
    expect(({} as Record<string, unknown>).value).toBeUndefined();
  });
});
