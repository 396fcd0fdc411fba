import { join } from 'node:path';
import { build } from 'esbuild';
import { describe, expect, it } from 'vitest';
import { REPO_ROOT } from '../../infra/constructs/pulse-function.ts';

/**
 * What each entry point loads: the names both sides agree on live in shared/contract.ts (plain constants), so
 * `cdk synth` does not load the functions' Powertools and no `pulse` command loads aws-cdk-lib or cdk-nag.
 * esbuild follows every import, dynamic ones included, and lists the packages left external.
 */
async function packagesLoadedBy(entry: string): Promise<string[]> {
  const result = await build({
    entryPoints: [join(REPO_ROOT, entry)],
    bundle: true,
    platform: 'node',
    format: 'esm',
    write: false,
    metafile: true,
    packages: 'external',
    logLevel: 'silent',
    outdir: join(REPO_ROOT, '.pulse', 'import-graph'),
  });
  const packages = new Set<string>();
  for (const input of Object.values(result.metafile.inputs)) {
    for (const imported of input.imports) {
      if (!imported.external || imported.path.startsWith('node:')) continue;
      const parts = imported.path.split('/');
      packages.add(parts.slice(0, imported.path.startsWith('@') ? 2 : 1).join('/'));
    }
  }
  return [...packages].sort();
}

describe('what the entry points load', () => {
  it('synthesizes the stack without loading Powertools', async () => {
    // Act
    const loaded = await packagesLoadedBy('infra/app.ts');
    // Assess
    expect(loaded).toContain('aws-cdk-lib');
    expect(loaded.filter((p) => p.startsWith('@aws-lambda-powertools/'))).toEqual([]);
  });

  it('runs the pulse CLI without loading aws-cdk-lib or cdk-nag', async () => {
    // Act
    const loaded = await packagesLoadedBy('cli/pulse.ts');
    // Assess
    expect(loaded).toContain('commander');
    expect(loaded.filter((p) => ['aws-cdk-lib', 'cdk-nag', 'constructs'].includes(p))).toEqual([]);
  });
});
