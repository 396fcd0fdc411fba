/**
 * Functions over a length limit (`npm run lint:length`, which `npm run lint` runs after Biome; issue 26:
 * "no function in functions/ or shared/ is over ~80 lines without a reason in a comment").
 *
 * Every function-like node (declarations, methods, accessors, constructors, arrow functions and function
 * expressions) of the TypeScript files under the given folders is measured with a real parse (the compiler
 * API), from the first line of its signature to its closing line, comments and blank lines included; a
 * nested function counts in its parent's length and is also measured on its own. One over the limit fails
 * the check unless a `// long: <reason>` comment stands right before it (before its statement, for a
 * function assigned to a variable or a property; the reason may go on over the line comments after it).
 *
 * Usage: `tsx tools/long-functions.ts [--limit N] [--all] [folder or file...]` (default: 80, functions/ and shared/);
 * `--all` lists every function over the limit, the excused ones too. Exits 1 when one is not excused.
 */
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { join, relative, resolve, sep } from 'node:path';
import { fileURLToPath } from 'node:url';
import ts from 'typescript';

/** The length a function may have without a `// long:` reason. */
export const DEFAULT_LIMIT = 80;

/** The folders checked when none is given. */
export const DEFAULT_ROOTS: readonly string[] = ['functions', 'shared'];

/** One measured function. */
export interface FunctionLength {
  /** Path relative to the working directory, with `/` separators. */
  readonly file: string;
  /** `name`, `Class#method`, `Class.staticMethod`, `variable`, or `<anonymous>` (with its line). */
  readonly name: string;
  /** 1-based line of its signature. */
  readonly line: number;
  readonly lines: number;
  /** The reason of its `// long:` comment, when it has one. */
  readonly reason?: string;
}

const LONG_COMMENT = /^\/\/\s*long:\s*(\S.*)$/;

/** Every function-like node of one source text, with its length and its `// long:` reason if any. */
export function measureSource(file: string, text: string): FunctionLength[] {
  const source = ts.createSourceFile(file, text, ts.ScriptTarget.Latest, true, ts.ScriptKind.TS);
  const found: FunctionLength[] = [];
  const visit = (node: ts.Node): void => {
    if (ts.isFunctionLike(node) && 'body' in node && node.body !== undefined) {
      const start = source.getLineAndCharacterOfPosition(node.getStart(source)).line;
      const end = source.getLineAndCharacterOfPosition(node.getEnd()).line;
      const reason = longReason(node, text);
      found.push({
        file,
        name: nameOf(node, source),
        line: start + 1,
        lines: end - start + 1,
        ...(reason === undefined ? {} : { reason }),
      });
    }
    ts.forEachChild(node, visit);
  };
  visit(source);
  return found;
}

/** The reason of the `// long: <reason>` comment right before the function or the statement holding it. */
function longReason(node: ts.Node, text: string): string | undefined {
  for (const holder of holders(node)) {
    const ranges = ts.getLeadingCommentRanges(text, holder.getFullStart()) ?? [];
    for (const [i, range] of ranges.entries()) {
      const match = LONG_COMMENT.exec(text.slice(range.pos, range.end).trim());
      if (!match?.[1]) continue;
      // The reason goes on over the line comments that follow it.
      const more = ranges
        .slice(i + 1)
        .filter((r) => r.kind === ts.SyntaxKind.SingleLineCommentTrivia)
        .map((r) => text.slice(r.pos + 2, r.end).trim());
      return [match[1].trim(), ...more].join(' ');
    }
  }
  return undefined;
}

/** The node and what it is the value of (`const f = () => …`, `{ f: () => … }`, `export default …`). */
function holders(node: ts.Node): ts.Node[] {
  const chain: ts.Node[] = [node];
  let current: ts.Node = node;
  while (
    current.parent &&
    (ts.isVariableDeclaration(current.parent) ||
      ts.isVariableDeclarationList(current.parent) ||
      ts.isVariableStatement(current.parent) ||
      ts.isPropertyAssignment(current.parent) ||
      ts.isPropertyDeclaration(current.parent) ||
      ts.isExportAssignment(current.parent))
  ) {
    current = current.parent;
    chain.push(current);
  }
  return chain;
}

function nameOf(node: ts.SignatureDeclaration, source: ts.SourceFile): string {
  const own = node.name ? propertyName(node.name) : undefined;
  if (ts.isMethodDeclaration(node) || ts.isGetAccessor(node) || ts.isSetAccessor(node)) {
    return memberName(node, own ?? '<computed>');
  }
  if (ts.isConstructorDeclaration(node)) return memberName(node, 'constructor');
  if (own) return own;
  const parent = node.parent;
  if (parent && ts.isVariableDeclaration(parent) && ts.isIdentifier(parent.name)) return parent.name.text;
  if (parent && (ts.isPropertyAssignment(parent) || ts.isPropertyDeclaration(parent))) {
    const key = propertyName(parent.name) ?? '<computed>';
    return ts.isPropertyDeclaration(parent) ? memberName(parent, key) : key;
  }
  const line = source.getLineAndCharacterOfPosition(node.getStart(source)).line + 1;
  return `<anonymous:${line}>`;
}

function memberName(member: ts.ClassElement | ts.ObjectLiteralElement, name: string): string {
  const holder = member.parent;
  if (holder && (ts.isClassDeclaration(holder) || ts.isClassExpression(holder))) {
    const className = holder.name?.text ?? '<class>';
    const isStatic = ts.canHaveModifiers(member)
      ? (ts.getModifiers(member) ?? []).some((m) => m.kind === ts.SyntaxKind.StaticKeyword)
      : false;
    return `${className}${isStatic ? '.' : '#'}${name.replace(/^#/, '')}`;
  }
  return name;
}

function propertyName(name: ts.PropertyName | ts.BindingName): string | undefined {
  if (ts.isIdentifier(name) || ts.isPrivateIdentifier(name) || ts.isStringLiteral(name)) return name.text;
  if (ts.isNumericLiteral(name)) return name.text;
  return undefined;
}

/** The `.ts` files under a folder (declaration files left out), sorted; a file is itself. */
export function sourceFiles(root: string): string[] {
  if (!statSync(root).isDirectory()) return [root];
  const files: string[] = [];
  const walk = (dir: string): void => {
    for (const entry of readdirSync(dir).sort()) {
      if (entry === 'node_modules') continue;
      const path = join(dir, entry);
      if (statSync(path).isDirectory()) walk(path);
      else if (entry.endsWith('.ts') && !entry.endsWith('.d.ts')) files.push(path);
    }
  };
  walk(root);
  return files;
}

/** The functions over `limit` lines under `roots` (relative to `cwd`), excused or not. */
export function longFunctions(
  roots: readonly string[],
  limit: number,
  cwd = process.cwd(),
): FunctionLength[] {
  return roots
    .flatMap((root) => sourceFiles(resolve(cwd, root)))
    .flatMap((path) => measureSource(relative(cwd, path).split(sep).join('/'), readFileSync(path, 'utf8')))
    .filter((fn) => fn.lines > limit);
}

function main(args: readonly string[]): number {
  let limit = DEFAULT_LIMIT;
  let all = false;
  const roots: string[] = [];
  for (let i = 0; i < args.length; i++) {
    const arg = args[i];
    if (arg === '--limit') {
      limit = Number(args[++i]);
      if (!Number.isInteger(limit) || limit < 1) throw new Error('--limit takes a positive integer');
    } else if (arg === '--all') all = true;
    else if (arg !== undefined) roots.push(arg);
  }
  const long = longFunctions(roots.length > 0 ? roots : DEFAULT_ROOTS, limit);
  const failing = long.filter((fn) => fn.reason === undefined);
  for (const fn of all ? long : failing) {
    const why = fn.reason !== undefined ? ` (long: ${fn.reason})` : '';
    console.log(`${fn.file}:${fn.line} ${fn.name}: ${fn.lines} lines${why}`);
  }
  if (failing.length > 0) {
    console.error(
      `${failing.length} function(s) over ${limit} lines: shorten them, or say why in a \`// long: <reason>\` comment right before them`,
    );
    return 1;
  }
  console.log(`no function over ${limit} lines without a reason (${long.length} excused)`);
  return 0;
}

if (process.argv[1] && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  process.exitCode = main(process.argv.slice(2));
}
