/**
 * The part of avro-js (CommonJS, untyped) this function uses to decode Avro values: `parse` with a
 * type hook, a custom long type (`LongType.using`) and a logical type wrapping unions. See the
 * package's doc/API.md and doc/Advanced-usage.md.
 */
declare module 'avro-js' {
  export interface AvroType {
    fromBuffer(buffer: Buffer): unknown;
    toBuffer(value: unknown): Buffer;
    isValid(value: unknown): boolean;
    /** The full name of a named type; with `noRef`, the type's kind for the others (`'long'`, `'array'`). */
    getName(noRef?: boolean): string | undefined;
  }

  export interface UnionType extends AvroType {
    getTypes(): AvroType[];
  }

  export interface ParseOptions {
    /** Called before each type is created; a type it returns is used in place of the one parsed. */
    typeHook?: (attrs: unknown, opts: ParseOptions) => AvroType | undefined;
  }

  /** What `LongType.using` needs to represent longs; `fromBuffer` gets the 8 bytes, little-endian. */
  export interface LongTypeMethods<T> {
    fromBuffer(buffer: Buffer): T;
    toBuffer(value: T): Buffer;
    fromJSON(json: unknown): T;
    toJSON(value: T): unknown;
    isValid(value: unknown): boolean;
    compare(a: T, b: T): number;
  }

  /** A type whose values are converted from (and to) those of the type its `attrs` describe. */
  export class LogicalType implements AvroType {
    constructor(attrs: unknown, opts?: ParseOptions, types?: readonly unknown[]);
    fromBuffer(buffer: Buffer): unknown;
    toBuffer(value: unknown): Buffer;
    isValid(value: unknown): boolean;
    getName(noRef?: boolean): string | undefined;
    getUnderlyingType(): AvroType;
    protected _fromValue(value: unknown): unknown;
    protected _toValue(value: unknown): unknown;
  }

  const avro: {
    parse(schema: string | object, opts?: ParseOptions): AvroType;
    types: {
      LogicalType: typeof LogicalType;
      LongType: { using<T>(methods: LongTypeMethods<T>, noUnpack?: boolean): AvroType };
    };
  };
  export default avro;
}
