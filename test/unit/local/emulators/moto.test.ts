import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import {
  EmulatorUnavailableError,
  ensureMotoInstalled,
  isMotoInstalled,
  isMotoReady,
  startMoto,
} from '../../../../local/emulators/moto.ts';
import { freePort } from '../../../../local/emulators/supervisor.ts';

describe('moto install and start, without moto', () => {
  const roots: string[] = [];
  const fakeRoot = (installScript?: string) => {
    const root = mkdtempSync(join(tmpdir(), 'pulse-emu-'));
    roots.push(root);
    if (installScript !== undefined) {
      mkdirSync(join(root, 'scripts'));
      writeFileSync(join(root, 'scripts', 'emulators.sh'), installScript);
    }
    return root;
  };
  afterEach(() => {
    for (const root of roots.splice(0)) rmSync(root, { recursive: true, force: true });
  });

  it('reports moto as not installed in a fresh clone', () => {
    // Assess
    expect(isMotoInstalled(fakeRoot())).toBe(false);
  });

  it('fails with what is missing, the install output and the install command when installing fails', async () => {
    // Prepare
    const root = fakeRoot('echo "emulators: error: python3 not found" >&2; exit 1\n');
    const lines: string[] = [];
    // Act
    const result = ensureMotoInstalled({ root, onOutput: (line) => lines.push(line) });
    // Assess
    await expect(result).rejects.toThrow(EmulatorUnavailableError);
    await expect(result).rejects.toThrow(
      /moto_server does not exist[\s\S]*python3 not found[\s\S]*bash scripts\/emulators.sh install/,
    );
    expect(lines).toEqual(['emulators: error: python3 not found']);
  });

  it('refuses to start moto that is not installed, saying how to install it', async () => {
    // Act / Assess
    await expect(startMoto({ root: fakeRoot() })).rejects.toThrow(
      /not installed[\s\S]*bash scripts\/emulators.sh install/,
    );
  });

  it('finds no moto server on a port nothing listens on', async () => {
    // Act / Assess
    expect(await isMotoReady(`http://127.0.0.1:${await freePort()}`)).toBe(false);
  });
});
