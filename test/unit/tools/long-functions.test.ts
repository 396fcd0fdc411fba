import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { longFunctions, measureSource } from '../../../tools/long-functions.ts';

/** A statement body of `n` lines. */
const body = (n: number): string => Array.from({ length: n }, (_, i) => `  const v${i} = ${i};`).join('\n');

describe('measureSource', () => {
  it('measures each kind of function from its signature to its closing line, and names it', () => {
    // Prepare
    const text = [
      '/** Doc comments are not counted. */',
      'export function declared(a: number): number {',
      body(3),
      '  return a;',
      '}',
      'const arrow = (x: number) => {',
      body(2),
      '};',
      'class Box {',
      '  constructor() {}',
      '  #run(): void {',
      body(1),
      '  }',
      '  static make(): Box {',
      '    return new Box();',
      '  }',
      '  get size(): number {',
      '    return 1;',
      '  }',
      '}',
      'const table = { pick: function () { return 1; } };',
      '[1].map((n) => n + 1);',
      'declare function bodiless(): void;',
    ].join('\n');
    // Act
    const found = measureSource('x.ts', text);
    // Assess
    expect(found.map(({ name, line, lines }) => ({ name, line, lines }))).toEqual([
      { name: 'declared', line: 2, lines: 6 },
      { name: 'arrow', line: 8, lines: 4 },
      { name: 'Box#constructor', line: 13, lines: 1 },
      { name: 'Box#run', line: 14, lines: 3 },
      { name: 'Box.make', line: 17, lines: 3 },
      { name: 'Box#size', line: 20, lines: 3 },
      { name: 'pick', line: 24, lines: 1 },
      { name: '<anonymous:25>', line: 25, lines: 1 },
    ]);
  });

  it('counts a nested function in its parent and on its own', () => {
    // Prepare
    const text = ['function outer() {', '  const inner = () => {', body(5), '  };', '}'].join('\n');
    // Act
    const found = measureSource('x.ts', text);
    // Assess
    expect(found.map(({ name, lines }) => [name, lines])).toEqual([
      ['outer', 9],
      ['inner', 7],
    ]);
  });

  it('reads the reason of a `// long:` comment right before the function or its statement, and only there', () => {
    // Prepare
    const text = [
      '// long: one pass over the bytes;',
      '// split, it runs slower',
      'function scan() {}',
      '/** Docs. */',
      '// long: a table of cases',
      'export const cases = () => {};',
      'class C {',
      '  // long: the state machine reads best whole',
      '  step(): void {}',
      '}',
      '// long:',
      'function emptyReason() {}',
      '// longer than it should be',
      'function notAReason() {}',
      'function inside() {',
      '  // long: not before the function',
      '  return 1;',
      '}',
    ].join('\n');
    // Act
    const found = measureSource('x.ts', text);
    // Assess
    expect(Object.fromEntries(found.map((fn) => [fn.name, fn.reason ?? null]))).toEqual({
      scan: 'one pass over the bytes; split, it runs slower',
      cases: 'a table of cases',
      'C#step': 'the state machine reads best whole',
      emptyReason: null,
      notAReason: null,
      inside: null,
    });
  });
});

describe('longFunctions', () => {
  let dir: string | undefined;
  afterEach(() => {
    if (dir) rmSync(dir, { recursive: true, force: true });
    dir = undefined;
  });

  it('lists the functions over the limit under the given folders, with paths relative to the root', () => {
    // Prepare
    dir = mkdtempSync(join(tmpdir(), 'long-functions-'));
    mkdirSync(join(dir, 'shared', 'deep'), { recursive: true });
    writeFileSync(
      join(dir, 'shared', 'deep', 'a.ts'),
      `function long() {\n${body(9)}\n}\nfunction short() {}\n`,
    );
    writeFileSync(join(dir, 'shared', 'types.d.ts'), `declare function f(): void;\n`);
    writeFileSync(join(dir, 'shared', 'notes.md'), `function long() {\n${body(20)}\n}\n`);
    // Act
    const long = longFunctions(['shared'], 10, dir);
    // Assess
    expect(long).toEqual([{ file: 'shared/deep/a.ts', name: 'long', line: 1, lines: 11 }]);
  });
});
