import { describe, expect, it } from 'vitest';
import { printable, printableJson, printableRow } from '../../../../local/commands/terminal.ts';

describe('printable', () => {
  it('writes C0, DEL, C1, line separators and bidirectional controls as visible <U+XXXX>, and nothing else', () => {
    // Prepare
    const text = 'a\u001b[31mb\tc\nd\u007fe\u009bf\u2028g\u202eh\u2066i — é ✓';
    // Act
    const out = printable(text);
    // Assess
    expect(out).toBe('a<U+001B>[31mb<U+0009>c<U+000A>d<U+007F>e<U+009B>f<U+2028>g<U+202E>h<U+2066>i — é ✓');
    expect(printable(out)).toBe(out);
  });

  it('escapes the strings of a table row, keys included, and leaves numbers alone', () => {
    // Act
    const row = printableRow({ key: 'x\u001b[2Jy', records: 3, 'bad\nname': 'ok' });
    // Assess
    expect(row).toEqual({ key: 'x<U+001B>[2Jy', records: 3, 'bad<U+000A>name': 'ok' });
  });
});

describe('printableJson', () => {
  it('is the same JSON to a parser, with no raw DEL, C1 or bidirectional control left', () => {
    // Prepare
    const value = { key: 'a\u001b\u007f\u009b\u202e\u2029b', n: 1 };
    // Act
    const out = printableJson(value);
    // Assess
    expect(JSON.parse(out)).toEqual(value);
    expect(out).toContain('"a\\u001b\\u007f\\u009b\\u202e\\u2029b"');
    // biome-ignore lint/suspicious/noControlCharactersInRegex: finding control characters is the point.
    expect(out.replaceAll('\n', '')).not.toMatch(/[\u0000-\u001f\u007f-\u009f\u202e\u2029]/);
  });
});
