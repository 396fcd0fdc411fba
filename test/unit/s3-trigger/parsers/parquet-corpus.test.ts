import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { parquetMetadataAsync } from 'hyparquet';
import { parquetHeader } from 'hyparquet/src/column.js';
import { describe, expect, it } from 'vitest';
import { normaliseSignal } from '#shared/signal.ts';
import { asyncBufferFromFile, parseParquet } from '../../../../functions/s3-trigger/parsers/parquet.ts';
import { collect, OPTS } from './helpers.ts';

/**
 * The corpus of test/fixtures/parquet/corpus, written by pyarrow, Polars and DuckDB with every codec
 * (generate.py, which also worked out expected.json from the values it wrote): every file is read into
 * exactly the signals, or rejects, that its rows must give.
 */

const CORPUS = fileURLToPath(new URL('../../../fixtures/parquet/corpus/', import.meta.url));

interface Expected {
  readonly signal?: {
    readonly name: string;
    readonly value: number;
    readonly timestamp: string;
    readonly attributes?: Record<string, unknown>;
  };
  readonly reject?: string;
}

interface CorpusFile {
  readonly dataset: string;
  readonly writer: string;
  readonly codec: string;
  readonly dictionary?: boolean;
  readonly pageVersion?: string;
}

const manifest = JSON.parse(readFileSync(`${CORPUS}expected.json`, 'utf8')) as {
  datasets: Record<string, Expected[]>;
  files: Record<string, CorpusFile>;
};
const files = Object.entries(manifest.files);

/** The type of the first data page of each column chunk of the file's first row group. */
async function dataPageTypes(path: string): Promise<Set<string>> {
  const file = await asyncBufferFromFile(path);
  const metadata = await parquetMetadataAsync(file);
  const types = new Set<string>();
  for (const chunk of metadata.row_groups[0]?.columns ?? []) {
    const meta = chunk.meta_data;
    if (!meta) continue;
    const bytes = await file.slice(Number(meta.data_page_offset), Number(meta.data_page_offset) + 1024);
    types.add(String(parquetHeader({ view: new DataView(bytes), offset: 0 }).type));
  }
  return types;
}

describe('the Parquet corpus of the usual writers', () => {
  it('holds every codec but LZO and Hadoop LZ4 (its conformance file is in parquet-wild.test.ts), from each writer', () => {
    // Act
    const byWriter = new Map<string, Set<string>>();
    for (const [, f] of files) {
      const writer = f.writer.split(' ')[0] as string;
      byWriter.set(writer, (byWriter.get(writer) ?? new Set()).add(f.codec));
    }

    // Assess
    const all = ['BROTLI', 'GZIP', 'LZ4_RAW', 'SNAPPY', 'UNCOMPRESSED', 'ZSTD'];
    expect([...byWriter.keys()].sort()).toEqual(['duckdb', 'polars', 'pyarrow']);
    for (const [writer, codecs] of byWriter) expect([...codecs].sort(), writer).toEqual(all);
  });

  it.each(files)('reads %s into exactly the expected signals and rejects', async (name, f) => {
    // Prepare
    const path = `${CORPUS}${name}`;
    const expected = manifest.datasets[f.dataset] as Expected[];
    const metadata = await parquetMetadataAsync(await asyncBufferFromFile(path));

    // Act
    const records = await collect(parseParquet(await asyncBufferFromFile(path), OPTS));
    const got = records.map((r): Expected => {
      if (r.error !== undefined) return { reject: r.error };
      const result = normaliseSignal(r.data, {
        origin: { kind: 's3', ref: `s3://corpus/${name}#${r.row}` },
        defaultSource: name,
      });
      if (!result.ok) return { reject: result.reason };
      const { name: n, value, timestamp, attributes } = result.signal;
      return { signal: { name: n, value, timestamp, ...(attributes ? { attributes } : {}) } };
    });

    // Assess
    const codecs = new Set(metadata.row_groups.flatMap((g) => g.columns.map((c) => c.meta_data?.codec)));
    expect([...codecs]).toEqual([f.codec]);
    if (f.pageVersion !== undefined) {
      expect(await dataPageTypes(path)).toEqual(
        new Set([f.pageVersion === '2.0' ? 'DATA_PAGE_V2' : 'DATA_PAGE']),
      );
    }
    expect(got.length).toBe(expected.length);
    for (const [i, e] of expected.entries()) {
      const g = got[i] as Expected;
      if (e.reject !== undefined) expect(g.reject, `row ${i + 1}`).toContain(e.reject);
      else expect(g, `row ${i + 1}`).toEqual(e);
    }
  });
});
