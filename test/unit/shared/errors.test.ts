import { describe, expect, it } from 'vitest';
import { isTransient, MalformedFileError, PermanentError, TransientError } from '#shared/errors.ts';

describe('isTransient', () => {
  it.each([
    [{ name: 'ThrottlingException' }],
    [{ name: 'ProvisionedThroughputExceededException' }],
    [{ name: 'Whatever', $metadata: { httpStatusCode: 503 } }],
    [{ name: 'Whatever', $retryable: {} }],
    [{ name: 'Error', code: 'ECONNRESET' }],
    [new TransientError('x')],
    [new Error('wrapped', { cause: { name: 'SlowDown' } })],
  ])('treats %o as transient', (err) => {
    expect(isTransient(err)).toBe(true);
  });

  it.each([
    [new PermanentError('x')],
    [new MalformedFileError('bad')],
    [{ name: 'AccessDenied', $metadata: { httpStatusCode: 403 } }],
    [new TypeError('bug')],
    ['a string'],
  ])('treats %o as permanent', (err) => {
    expect(isTransient(err)).toBe(false);
  });

  it('says where a malformed file went wrong', () => {
    expect(new MalformedFileError('unclosed quote', { row: 4, byteOffset: 120 }).message).toBe(
      'unclosed quote (at row 4, byte 120)',
    );
  });
});
