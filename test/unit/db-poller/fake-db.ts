import type { DbPool, DbSession } from '../../../functions/db-poller/poller.ts';

/** One statement the poller ran: its SQL, parameters, and the session (0 = the pool itself). */
export interface RecordedQuery {
  readonly text: string;
  readonly values: readonly unknown[] | undefined;
  readonly session: number;
}

export type Responder = (text: string, values: readonly unknown[] | undefined) => unknown[] | Error;

/**
 * A stand-in for a `pg.Pool`: records every statement (with its parameters and the connection it ran
 * on) and answers from a responder; no network.
 */
export class FakeDb implements DbPool {
  readonly queries: RecordedQuery[] = [];
  readonly released: { session: number; err: unknown }[] = [];
  #sessions = 0;
  readonly #respond: Responder;

  constructor(respond: Responder = () => []) {
    this.#respond = respond;
  }

  async query(text: string, values?: unknown[]): Promise<{ rows: unknown[] }> {
    return this.#run(text, values, 0);
  }

  async connect(): Promise<DbSession> {
    const session = ++this.#sessions;
    return {
      query: (text: string, values?: unknown[]) => this.#run(text, values, session),
      release: (err?: Error | boolean) => {
        this.released.push({ session, err });
      },
    };
  }

  /** The statements in order, as their first word (BEGIN, SELECT, UPDATE, COMMIT, ROLLBACK). */
  verbs(): string[] {
    return this.queries.map((q) => (q.text.includes('set_config') ? 'SET' : (q.text.split(' ')[0] ?? '')));
  }

  async #run(text: string, values: unknown[] | undefined, session: number): Promise<{ rows: unknown[] }> {
    this.queries.push({ text, values: values ? [...values] : undefined, session });
    const out = this.#respond(text, values);
    if (out instanceof Error) throw out;
    return { rows: out };
  }
}

/** A row as the poller's SELECT returns it (pg: bigint id as text, float8 as number, timestamptz as Date). */
export function pgRow(id: number, overrides: Record<string, unknown> = {}) {
  return {
    pulse_id: String(id),
    pulse_name: 'cpu',
    pulse_value: id + 0.5,
    pulse_source: 'host-a',
    pulse_ts: new Date(Date.UTC(2024, 4, 1, 10, 0, 0, id)),
    ...overrides,
  };
}

/** Answers claim SELECTs (FOR UPDATE) from a list of batches, one per round; everything else with no rows. */
export function claimResponder(batches: unknown[][]): Responder {
  const queue = [...batches];
  return (text) => (text.includes('FOR UPDATE SKIP LOCKED') ? (queue.shift() ?? []) : []);
}
