import { beforeAll, describe, expect, it } from 'vitest';
import type * as z from 'zod';
import { CONFIG_ENV } from '#shared/config.ts';
import { ENV, PLATFORM_ENV } from '#shared/contract.ts';
import { runtimeEnv } from '../../local/runtime/runtime.ts';
import type { LocalState } from '../../local/runtime/state.ts';
import { localStateFactory } from '../helpers/factories.ts';
import { DB_AND_MSK_CONTEXT, synthTemplate } from '../helpers/stacks.ts';

/**
 * The environment contract (shared/contract.ts): the variables the stack sets on each function, the ones its
 * config loader reads (shared/config.ts) and the ones the offline runtime sets (local/runtime/runtime.ts) are the
 * same names. A variable renamed on one side only, or a resource the stack hands a function that the offline
 * run does not, fails here rather than at a cold start on AWS or offline.
 */
type Service = keyof typeof CONFIG_ENV;
const SERVICES = Object.keys(CONFIG_ENV) as Service[];
const PLATFORM = new Set<string>(Object.values(PLATFORM_ENV));

/** The variables a config schema reads, and those it cannot do without (no default, not optional). */
function schemaNames(service: Service): { all: string[]; required: string[] } {
  const shape = CONFIG_ENV[service] as Record<string, z.ZodType>;
  const all = Object.keys(shape);
  return { all, required: all.filter((name) => !shape[name]?.safeParse(undefined).success) };
}

/** An offline run's state with every resource and every shortened timing, as `local up` records it. */
const STATE: LocalState = localStateFactory({ leaseSeconds: 4, visibilitySeconds: 6, sweepSeconds: 5 });

describe('the environment contract: stack, config schemas and offline runtime name the same variables', () => {
  /** Each function's environment in the template (with a database and Kafka: every variable set), by service. */
  let stackEnv: Map<Service, Record<string, unknown>>;

  beforeAll(() => {
    const functions = synthTemplate({ context: DB_AND_MSK_CONTEXT }).findResources('AWS::Lambda::Function');
    stackEnv = new Map();
    for (const fn of Object.values(functions)) {
      const vars = (fn.Properties?.Environment?.Variables ?? {}) as Record<string, unknown>;
      const service = vars[ENV.powertoolsServiceName];
      if (typeof service === 'string') stackEnv.set(service as Service, vars);
    }
  }, 60_000);

  it('deploys one function per config loader', () => {
    // Assess
    expect([...stackEnv.keys()].sort()).toEqual([...SERVICES].sort());
  });

  it.each(SERVICES)('sets on %s only variables its config reads (or the platform does)', (service) => {
    // Prepare
    const { all } = schemaNames(service);
    // Act
    const unread = Object.keys(stackEnv.get(service) ?? {}).filter(
      (n) => !all.includes(n) && !PLATFORM.has(n),
    );
    // Assess
    expect(unread).toEqual([]);
  });

  it.each(SERVICES)('sets on %s every variable its config requires', (service) => {
    // Prepare
    const set = Object.keys(stackEnv.get(service) ?? {});
    // Act
    const missing = schemaNames(service).required.filter((n) => !set.includes(n));
    // Assess
    expect(missing).toEqual([]);
  });

  it.each(SERVICES)(
    'has the offline runtime set what %s requires and every resource the stack names for it',
    (service) => {
      // Prepare
      const offline = Object.keys(runtimeEnv(STATE));
      // A resource is a reference in the template (Ref, Fn::GetAtt, Fn::Join); a plain string is a setting
      // whose default the config loader applies offline too.
      const resources = Object.entries(stackEnv.get(service) ?? {})
        .filter(([name, value]) => typeof value !== 'string' && !PLATFORM.has(name))
        .map(([name]) => name);
      // Act
      const missing = [...schemaNames(service).required, ...resources].filter((n) => !offline.includes(n));
      // Assess
      expect(resources.length).toBeGreaterThan(0);
      expect(missing).toEqual([]);
    },
  );

  it('has the offline runtime set only variables some function reads (or the platform does)', () => {
    // Prepare
    const read = new Set(SERVICES.flatMap((s) => schemaNames(s).all));
    // Act
    const unread = Object.keys(runtimeEnv(STATE)).filter((n) => !read.has(n) && !PLATFORM.has(n));
    // Assess
    expect(unread).toEqual([]);
  });

  it('names in the contract every variable a config reads, and reads every name of the contract', () => {
    // Prepare
    const contract = new Set<string>(Object.values(ENV));
    const read = new Set(SERVICES.flatMap((s) => schemaNames(s).all));
    // Act
    const outside = [...read].filter((n) => !contract.has(n));
    const unused = [...contract].filter((n) => !read.has(n));
    // Assess
    expect(outside).toEqual([]);
    expect(unused).toEqual([]);
  });
});
