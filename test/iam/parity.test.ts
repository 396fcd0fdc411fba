/**
 * The IAM parity test (docs/iam-parity.md). moto enforces no IAM, so a call the deployed role would refuse
 * passes every emulated test; this holds each AWS call the functions made during this run's integration,
 * reliability and end-to-end tests (recorded under PULSE_AWS_CALL_LOG, see vitest.config.ts) against the
 * function's role in the synthesized template, with a real IAM policy evaluator. It runs after them.
 */
import { beforeAll, describe, expect, it } from 'vitest';
import { type RecordedCall, readCallLog } from '../helpers/iam/calls.ts';
import { describeRefusal, evaluateCalls, type ParityResult } from '../helpers/iam/evaluate.ts';
import { parityTemplate } from '../helpers/iam/template.ts';

const FUNCTIONS = ['s3-trigger', 'scorer', 'db-poller', 'kafka-consumer', 'ledger-sweep'] as const;

describe('every AWS call the functions made in this run is allowed by their role in the template', () => {
  const dir = process.env.PULSE_AWS_CALL_LOG ?? '';
  let records: RecordedCall[];
  let result: ParityResult;

  beforeAll(async () => {
    records = readCallLog(dir);
    result =
      records.length > 0
        ? await evaluateCalls(records, parityTemplate())
        : { evaluated: 0, allowed: 0, refused: [], unmapped: [] };
  });

  it.each(FUNCTIONS)('recorded calls of the %s', (fn) => {
    // Assess: without them this test would pass on nothing.
    expect(
      records.filter((r) => r.fn === fn).length,
      `no AWS call of the ${fn} was recorded under ${dir || '(PULSE_AWS_CALL_LOG is not set)'}: the calls ` +
        'are recorded by the integration, reliability and e2e projects of the same `vitest run` (npm test); ' +
        'to evaluate an earlier run, set PULSE_AWS_CALL_LOG to its folder (docs/iam-parity.md)',
    ).toBeGreaterThan(0);
  });

  it('holds each call to a resource the template declares', () => {
    // Assess
    expect(result.unmapped.map(describeRefusal)).toEqual([]);
  });

  it.each(FUNCTIONS)('allows every call the %s made (and what its outcome implies it needed)', (fn) => {
    // Act
    const refused = result.refused.filter((r) => r.fn === fn);

    // Assess
    expect(result.evaluated, 'no call was evaluated').toBeGreaterThan(0);
    expect(refused.map(describeRefusal)).toEqual([]);
  });
});
