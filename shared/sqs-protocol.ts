import { AwsJson1_0Protocol } from '@aws-sdk/core/protocols';
import { JsonCodec } from '@smithy/core/protocols';

/**
 * SQS clients for packed signals. Two settings of the SDK cost a third of an ingest's CPU on large
 * messages, for nothing a packed message needs:
 * - its default JSON codec writes every string into the request character by character in JavaScript;
 *   the codec it used before (still shipped, and selectable through `jsonCodec`) builds the request and
 *   calls `JSON.stringify`, which escapes a 1 MiB message body natively, several times faster;
 * - it hashes every message body with MD5 to compare with SQS's answer, a check TLS already makes
 *   (`md5: false` is the SDK's own switch for it).
 */
class StringifyingSqsProtocol extends AwsJson1_0Protocol {
  constructor(settings: ConstructorParameters<typeof AwsJson1_0Protocol>[0]) {
    // The settings the SDK's own codec is created with for this protocol.
    super({
      ...settings,
      jsonCodec: new JsonCodec({ timestampFormat: { useTrait: true, default: 7 }, jsonName: false }),
    });
  }
}

/** Options for an `SQSClient` (merged into the rest of its configuration). */
export const SQS_CLIENT_OPTIONS = { protocol: StringifyingSqsProtocol, md5: false } as const;
