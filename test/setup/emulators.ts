import type { TestProject } from 'vitest/node';
import { ensureMotoInstalled, startMoto, waitForMoto } from '../../local/emulators/moto.ts';

declare module 'vitest' {
  export interface ProvidedContext {
    /** Endpoint of the moto server (S3, SQS, DynamoDB) shared by the integration run. */
    motoEndpoint: string;
  }
}

/**
 * Global setup of the `integration` project: one moto server, on a free port, for the whole run
 * (test files keep apart by resource prefix), stopped afterwards. Installs moto into `.venv` on a fresh
 * clone. Fails loudly when that is impossible: integration tests never pass without their emulator.
 *
 * `PULSE_MOTO_ENDPOINT=http://127.0.0.1:5000` uses a server already running instead (for example one
 * from `bash scripts/emulators.sh start`, to look at its state while the tests run).
 */
export default async function setup(project: TestProject): Promise<() => Promise<void>> {
  const external = process.env.PULSE_MOTO_ENDPOINT;
  if (external) {
    await waitForMoto(external, 5000).catch((err: unknown) => {
      throw new Error(
        `PULSE_MOTO_ENDPOINT is ${external}, but no moto server answers there. ` +
          'Start one (bash scripts/emulators.sh start) or unset PULSE_MOTO_ENDPOINT to let the tests start their own.',
        { cause: err },
      );
    });
    project.provide('motoEndpoint', external);
    return async () => {};
  }

  try {
    await ensureMotoInstalled({ onOutput: (line) => process.stderr.write(`[integration setup] ${line}\n`) });
  } catch (err) {
    throw new Error(
      `The integration tests need the moto server, and it is missing: ${(err as Error).message}\n` +
        'Install it with: bash scripts/emulators.sh install   (creates .venv, needs Python >= 3.9 with venv)',
      { cause: err },
    );
  }
  const moto = await startMoto();
  project.provide('motoEndpoint', moto.endpoint);
  return async () => {
    await moto.stop();
  };
}
