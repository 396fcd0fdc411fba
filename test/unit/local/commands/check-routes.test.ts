import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { checkRoutes, resolveRoutes } from '#shared/routes.ts';
import { checkFile } from '../../../../local/commands/check.ts';

describe('pulse check with routes', () => {
  const dir = mkdtempSync(join(tmpdir(), 'pulse-check-routes-'));
  const routes = resolveRoutes(
    checkRoutes([
      { prefix: 'incoming/' },
      {
        prefix: 'meters/',
        include: ['**/*.csv'],
        mapping: { name: 'metric', value: 'val', timestamp: 'ts' },
        csv: { delimiter: ';' },
      },
    ]),
  );
  const file = (name: string, body: string) => {
    const path = join(dir, name);
    writeFileSync(path, body);
    return path;
  };
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it('reads a file as the route that takes its key does: its delimiter and mapping', async () => {
    // Prepare
    const path = file(
      'm.csv',
      'metric;val;ts;site\ncpu;1.5;2026-01-01T00:00:00Z;"a;b"\ncpu;x;2026-01-01T00:00:01Z;c\n',
    );
    // Act
    const report = await checkFile(path, { key: 'meters/m.csv', routes, maxRejects: 1 });
    // Assess
    expect(report).toMatchObject({ verdict: 'ok', records: 2, signals: 1, rejected: 1 });
    expect(report.firstSignals[0]).toMatchObject({ name: 'cpu', value: 1.5, attributes: { site: 'a;b' } });
  });

  it('fails a file whose header names none of the mapped columns, saying which', async () => {
    // Prepare
    const path = file('n.csv', 'name;value;timestamp\ncpu;1;1\n');
    // Act
    const report = await checkFile(path, { key: 'meters/n.csv', routes });
    // Assess
    expect(report.verdict).toBe('failed');
    expect(report.failure?.message).toMatch(/names none of the columns metric, val, ts/);
  });

  it('says a key no route takes would be SKIPPED, and why', async () => {
    // Prepare
    const path = file('m.json', '[]');
    // Act
    const report = await checkFile(path, { key: 'meters/m.json', routes });
    // Assess
    expect(report).toMatchObject({
      verdict: 'unsupported',
      failure: {
        type: 'NoRoute',
        message: 'no route takes meters/m.json: meters/ includes only **/*.csv; it would be SKIPPED',
      },
    });
  });
});
