/**
 * hyparquet-compressors' LZ4 module, imported by its path: the package's index also loads a WebAssembly Snappy
 * decoder when it is imported and pulls its own GZIP, Brotli and ZSTD decoders into the bundle, none of which
 * parquet-codecs.ts uses (it has Node's zlib for those). The package ships types for its index only.
 */
declare module 'hyparquet-compressors/src/lz4.js' {
  /** LZ4 as Hadoop frames it (big-endian sizes before each block), else one bare block; `outputLength` bytes. */
  export function decompressLz4(input: Uint8Array, outputLength: number): Uint8Array;
  /** One bare LZ4 block into `outputLength` bytes (what does not fit is dropped). */
  export function decompressLz4Raw(input: Uint8Array, outputLength: number): Uint8Array;
}
