import { deflateSync } from 'node:zlib';
import { describe, expect, it } from 'vitest';
import {
  confluentFrame,
  glueFrame,
  messageIndexBytes,
  RegistryFramingError,
  readConfluentMessageIndexes,
  readFraming,
  readGlueMessageIndex,
} from '#shared/registry-wire.ts';

describe('schema registry wire formats', () => {
  it("reads Confluent's framing: magic 0, a 4-byte big-endian schema id, the payload", () => {
    // Prepare
    const bytes = Buffer.from([0, 0, 0, 1, 0x2c, 0xaa, 0xbb]);
    // Act
    const framing = readFraming(bytes);
    // Assess
    expect(framing).toEqual({ kind: 'confluent', schemaId: '300', payload: Buffer.from([0xaa, 0xbb]) });
    expect(confluentFrame(300, Buffer.from([0xaa, 0xbb]))).toEqual(bytes);
  });

  it("reads Glue's framing: header 3, compression 0 or 5 (zlib, inflated), the schema version id", () => {
    // Prepare
    const id = Buffer.from('8f6b1f525d3c4c2e9a411b2c3d4e5f60', 'hex');
    const payload = Buffer.from('avro bytes');
    const plain = Buffer.concat([Buffer.from([3, 0]), id, payload]);
    const zlib = Buffer.concat([Buffer.from([3, 5]), id, deflateSync(payload)]);
    // Act
    const a = readFraming(plain);
    const b = readFraming(zlib);
    // Assess
    expect(a).toEqual({
      kind: 'glue',
      schemaId: '8f6b1f52-5d3c-4c2e-9a41-1b2c3d4e5f60',
      compression: 'none',
      payload,
    });
    expect(b).toEqual({ ...a, compression: 'zlib' });
    expect(glueFrame('8f6b1f52-5d3c-4c2e-9a41-1b2c3d4e5f60', payload)).toEqual(plain);
    expect(readFraming(glueFrame('8f6b1f52-5d3c-4c2e-9a41-1b2c3d4e5f60', payload, true))).toEqual(b);
  });

  it('refuses bytes without a framing, a framing cut short, an unknown compression, a zlib bomb', () => {
    // Prepare
    const id = Buffer.alloc(16, 1);
    const bomb = Buffer.concat([Buffer.from([3, 5]), id, deflateSync(Buffer.alloc(2 * 1024 * 1024))]);
    // Assess
    expect(() => readFraming(Buffer.from('{"name":"cpu"}'))).toThrow(
      /no schema registry framing \(first byte 123/,
    );
    expect(() => readFraming(Buffer.from([0, 0, 1]))).toThrow('Confluent framing cut short');
    expect(() => readFraming(Buffer.from([3, 0, 1, 2]))).toThrow('Glue framing cut short');
    expect(() => readFraming(Buffer.concat([Buffer.from([3, 9]), id]))).toThrow('unknown compression byte 9');
    expect(() => readFraming(bomb, 1024 * 1024)).toThrow(RegistryFramingError);
    expect(() => readFraming(Buffer.alloc(0))).toThrow('empty value');
  });

  it("reads Confluent protobuf message indexes (zigzag varints; [0] as one 0 byte) and Glue's one varint", () => {
    // Prepare
    const message = Buffer.from([0x0a, 0x01, 0x61]);
    // Act
    const first = readConfluentMessageIndexes(Buffer.concat([Buffer.from([0]), message]));
    // count 2 → zigzag 4; indexes 1, 0 → 2, 0
    const nested = readConfluentMessageIndexes(Buffer.concat([Buffer.from([4, 2, 0]), message]));
    const glue = readGlueMessageIndex(Buffer.concat([Buffer.from([0]), message]));
    // Assess
    expect(first).toEqual({ indexes: [0], message });
    expect(nested).toEqual({ indexes: [1, 0], message });
    expect(glue).toEqual({ indexes: [0], message });
    expect(messageIndexBytes([0])).toEqual(Buffer.from([0]));
    expect(messageIndexBytes([1, 0])).toEqual(Buffer.from([4, 2, 0]));
    expect(() => readConfluentMessageIndexes(Buffer.from([4, 0x80]))).toThrow('runs past the end');
  });
});
