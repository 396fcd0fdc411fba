import { allCustomMatcherWithAliases, type CustomMatcher } from 'aws-sdk-client-mock-vitest';
import { expect } from 'vitest';

// With the aliases (toReceiveCommandWith …), which the type declaration advertises too.
expect.extend(allCustomMatcherWithAliases);

declare module 'vitest' {
  // biome-ignore lint/suspicious/noExplicitAny: the matcher types are generic over the received value
  interface Assertion<T = any> extends CustomMatcher<T> {}
  interface AsymmetricMatchersContaining extends CustomMatcher {}
}
