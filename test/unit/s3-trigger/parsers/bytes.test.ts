import { describe, expect, it } from 'vitest';
import {
  clipRaw,
  firstInvalidUtf8,
  pieces,
  stripBom,
  Utf8StreamValidator,
} from '../../../../functions/s3-trigger/parsers/bytes.ts';
import { chunkings, collect, source } from './helpers.ts';

/** Runs the validator over chunks; the first invalid offset, or -1. */
function validate(chunks: Buffer[]): number {
  const v = new Utf8StreamValidator();
  for (const c of chunks) {
    const bad = v.push(c);
    if (bad !== -1) return bad;
  }
  return v.end();
}

describe('firstInvalidUtf8', () => {
  it.each([
    ['ASCII', [0x61, 0x62], -1],
    ['2-, 3- and 4-byte characters', [...Buffer.from('é€😀')], -1],
    ['a lone continuation byte', [0x61, 0x80], 1],
    ['an overlong 2-byte form', [0x61, 0xc0, 0xaf], 1],
    ['an overlong 3-byte form', [0xe0, 0x80, 0xaf], 0],
    ['a UTF-16 surrogate', [0x61, 0x61, 0xed, 0xa0, 0x80], 2],
    ['a code point above U+10FFFF', [0xf4, 0x90, 0x80, 0x80], 0],
    ['a byte that never occurs', [0x61, 0xff], 1],
    ['a sequence cut short', [0x61, 0xe2, 0x82], 1],
    ['a lead byte followed by ASCII', [0xe2, 0x28, 0xa1], 0],
  ])('finds %s', (_name, bytes, expected) => {
    // Act
    const at = firstInvalidUtf8(Uint8Array.from(bytes));

    // Assess
    expect(at).toBe(expected);
  });
});

describe('Utf8StreamValidator', () => {
  it('accepts valid text whatever the chunk boundaries, characters split across chunks included', () => {
    // Prepare
    const text = Buffer.from('a é € 😀 日本語 end 😀');

    for (const { name, chunks } of chunkings(text)) {
      // Act
      const bad = validate(chunks);

      // Assess
      expect(bad, name).toBe(-1);
    }
  });

  it.each([
    ['an invalid byte', Buffer.concat([Buffer.from('ab€'), Buffer.from([0xff]), Buffer.from('cd')]), 5],
    [
      'a character cut off by the end',
      Buffer.concat([Buffer.from('abc'), Buffer.from([0xf0, 0x9f, 0x98])]),
      3,
    ],
    ['a lead byte followed by ASCII', Buffer.concat([Buffer.from('€'), Buffer.from([0xe2, 0x28, 0xa1])]), 3],
    ['a surrogate', Buffer.concat([Buffer.from('x'), Buffer.from([0xed, 0xb0, 0x80])]), 1],
  ])('reports %s at its stream offset whatever the chunk boundaries', (_name, bytes, expected) => {
    for (const { name, chunks } of chunkings(bytes)) {
      // Act
      const bad = validate(chunks);

      // Assess
      expect(bad, name).toBe(expected);
    }
  });
});

describe('stripBom', () => {
  it('removes a BOM split across chunks and reports its length', async () => {
    // Prepare
    const bytes = Buffer.from('\ufeffname');
    let bom = 0;

    for (const { name, chunks } of chunkings(bytes)) {
      bom = 0;
      // Act
      const out = Buffer.concat(
        await collect(
          stripBom(source(chunks), (n) => {
            bom += n;
          }),
        ),
      );

      // Assess
      expect(out.toString(), name).toBe('name');
      expect(bom, name).toBe(3);
    }
  });

  it.each([
    ['no BOM', 'name', 'name'],
    ['a partial BOM-like prefix', '\xef\xbbx', '\xef\xbbx'],
    ['only the first BOM byte', '\xef', '\xef'],
    ['nothing', '', ''],
  ])('leaves a stream with %s as it is', async (_name, latin1, expected) => {
    // Act
    const out = Buffer.concat(await collect(stripBom(source([Buffer.from(latin1, 'latin1')]))));

    // Assess
    expect(out.toString('latin1')).toBe(expected);
  });
});

describe('pieces', () => {
  it('cuts a large chunk into views of at most the given size', () => {
    // Act
    const out = [...pieces(Buffer.alloc(10, 1), 4)];

    // Assess
    expect(out.map((p) => p.length)).toEqual([4, 4, 2]);
  });
});

describe('clipRaw', () => {
  it('clips long text with an ellipsis and leaves short text alone', () => {
    // Act
    const long = clipRaw('abcdef', 3);
    const short = clipRaw('abc', 3);

    // Assess
    expect(long).toBe('abc…');
    expect(short).toBe('abc');
  });
});
