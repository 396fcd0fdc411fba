import { existsSync, rmSync } from 'node:fs';
import { describe, expect, inject, it } from 'vitest';
import { KafkaUnavailableError, startKafka } from '../../local/emulators/kafka.ts';
import { EmulatorUnavailableError, startMoto } from '../../local/emulators/moto.ts';
import { PostgresUnavailableError, startPostgres } from '../../local/emulators/postgres.ts';
import { PortInUseError } from '../../local/emulators/supervisor.ts';

/**
 * The three servers through the one supervisor (local/emulators/supervisor.ts), as real processes: a port
 * taken by someone else, a server that does not answer in time. The moto server of the integration run
 * holds the port the others are asked to take.
 */

const takenPort = Number(new URL(inject('motoEndpoint')).port);

describe('the emulators on a port someone else holds', () => {
  it.each([
    ['moto server', () => startMoto({ port: takenPort }), EmulatorUnavailableError],
    ['PostgreSQL', () => startPostgres({ port: takenPort }), PostgresUnavailableError],
    ['Kafka', () => startKafka({ port: takenPort }), KafkaUnavailableError],
  ])(
    '%s fails with its own error, caused by PortInUseError, instead of taking the other server for itself',
    async (_, start, Unavailable) => {
      // Act
      const started = start();
      // Assess
      await expect(started).rejects.toThrow(Unavailable);
      await expect(started).rejects.toThrow(/address already in use/i);
      await expect(started).rejects.toHaveProperty('cause', expect.any(PortInUseError));
    },
  );
});

describe('a moto server that does not answer in time', () => {
  it('is stopped, and its log, which the error names, is kept', async () => {
    // Act
    const error = await startMoto({ readyTimeoutMs: 1 }).then(
      () => undefined,
      (err: unknown) => err,
    );
    // Assess
    expect(error).toBeInstanceOf(EmulatorUnavailableError);
    const log = /did not answer on http:\/\/127\.0\.0\.1:\d+\/moto-api\/ in time; see (.+)$/.exec(
      (error as Error).message,
    )?.[1];
    expect(log).toMatch(/\.pulse\/log\/moto-\d+\.log$/);
    expect(existsSync(log ?? '')).toBe(true);
    rmSync(log ?? '', { force: true });
  });
});
