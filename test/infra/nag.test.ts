import { Annotations, Match } from 'aws-cdk-lib/assertions';
import { describe, expect, it } from 'vitest';
import { buildStack, STACK_SHAPES } from '../helpers/stacks.ts';

/** Every annotation of a kind on the stack, as "path: message". */
function annotations(kind: 'error' | 'warning', opts: Parameters<typeof buildStack>[0]): string[] {
  const stack = buildStack({ ...opts, nag: true });
  const found =
    kind === 'error'
      ? Annotations.fromStack(stack).findError('*', Match.anyValue())
      : Annotations.fromStack(stack).findWarning('*', Match.anyValue());
  return found.map((a) => `${a.id}: ${String(a.entry.data).split('\n')[0]}`);
}

describe('cdk-nag AwsSolutions', () => {
  it.each(STACK_SHAPES)('reports no error on the stack with %s', (_shape, context) => {
    // Act
    const errors = annotations('error', { context });

    // Assess
    expect(errors).toEqual([]);
  });

  it.each(STACK_SHAPES)('reports no AwsSolutions warning on the stack with %s', (_shape, context) => {
    // Act
    const warnings = annotations('warning', { context }).filter((w) => w.includes('AwsSolutions-'));

    // Assess
    expect(warnings).toEqual([]);
  });

  it('fails the stack on a finding nobody suppressed (buckets without access logs)', () => {
    // Prepare
    const props = { serverAccessLogs: false };

    // Act
    const errors = annotations('error', { props });

    // Assess
    expect(errors.sort()).toEqual([
      expect.stringMatching(/^\/Test\/Default\/IngestBucket\/Resource: AwsSolutions-S1: /),
      expect.stringMatching(
        /^\/Test\/Default\/Producers\/KafkaFailures\/Bucket\/Resource: AwsSolutions-S1: /,
      ),
      expect.stringMatching(/^\/Test\/Default\/ScoresBucket\/Resource: AwsSolutions-S1: /),
    ]);
  });
});
