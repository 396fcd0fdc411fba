import type { TestProject } from 'vitest/node';
import { startKafka, waitForKafka } from '../../local/emulators/kafka.ts';

declare module 'vitest' {
  export interface ProvidedContext {
    /** `127.0.0.1:<port>`: bootstrap servers of a private Kafka 3.9 broker (KRaft) for the integration run. */
    kafkaBrokers: string;
  }
}

/**
 * Global setup of the `integration` project: one private Kafka broker (KRaft, combined
 * broker+controller, fresh storage, free ports on 127.0.0.1) for the whole run; test files keep apart
 * by creating their own topics and consumer groups. Installs Kafka's jars (scripts/kafka.sh install,
 * Maven) when they are missing, and fails loudly when that is impossible: the kafka-consumer's
 * integration tests never pass without a real broker.
 *
 * `PULSE_KAFKA_BROKERS=127.0.0.1:59092` uses a broker already running instead (for example one from
 * `bash scripts/kafka.sh start`).
 */
export default async function setup(project: TestProject): Promise<() => Promise<void>> {
  const external = process.env.PULSE_KAFKA_BROKERS;
  if (external) {
    await waitForKafka(external, 5000).catch((err: unknown) => {
      throw new Error(
        `PULSE_KAFKA_BROKERS is ${external}, but no Kafka broker answers there. ` +
          'Start one (bash scripts/kafka.sh start) or unset PULSE_KAFKA_BROKERS to let the tests start their own.',
        { cause: err },
      );
    });
    project.provide('kafkaBrokers', external);
    return async () => {};
  }
  let broker: Awaited<ReturnType<typeof startKafka>>;
  try {
    broker = await startKafka();
  } catch (err) {
    throw new Error(
      `The integration tests need Apache Kafka 3.9, and it could not be installed or started: ${(err as Error).message}\n` +
        'Install it with: bash scripts/kafka.sh install   (needs Java >= 17 and Maven)',
      { cause: err },
    );
  }
  project.provide('kafkaBrokers', broker.brokers);
  return async () => {
    await broker.stop();
  };
}
