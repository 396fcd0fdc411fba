import { mkdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { OutputFormat } from 'aws-cdk-lib/aws-lambda-nodejs';
import { type BuildOptions, build } from 'esbuild';
import { BUNDLING, type FunctionName, handlerEntry } from '../infra/constructs/pulse-function.ts';
import { median, round, runNode } from './lib.ts';

export const FUNCTIONS: readonly FunctionName[] = ['s3-trigger', 'scorer', 'db-poller', 'kafka-consumer'];

/** The BUNDLING keys translated below; a key added there and not here fails the benchmark. */
const MAPPED = new Set([
  'format',
  'target',
  'minify',
  'sourceMap',
  'sourcesContent',
  'keepNames',
  'mainFields',
  'externalModules',
  'banner',
]);

/** esbuild options equivalent to what NodejsFunction runs for BUNDLING (`esbuild --bundle --platform=node ...`). */
export function esbuildOptions(entry: string, outfile: string): BuildOptions {
  const unmapped = Object.keys(BUNDLING).filter((k) => !MAPPED.has(k));
  if (unmapped.length) throw new Error(`bench/bundles.ts does not translate BUNDLING.${unmapped.join(', ')}`);
  return {
    entryPoints: [entry],
    outfile,
    bundle: true,
    platform: 'node',
    format: BUNDLING.format === OutputFormat.ESM ? 'esm' : 'cjs',
    ...(BUNDLING.target ? { target: BUNDLING.target } : {}),
    minify: BUNDLING.minify ?? false,
    // NodejsFunction's `--sourcemap` writes index.mjs.map next to the bundle, linked by a comment.
    sourcemap: BUNDLING.sourceMap ? 'linked' : false,
    sourcesContent: BUNDLING.sourcesContent ?? true,
    keepNames: BUNDLING.keepNames ?? false,
    ...(BUNDLING.mainFields ? { mainFields: [...BUNDLING.mainFields] } : {}),
    external: [...(BUNDLING.externalModules ?? [])],
    ...(BUNDLING.banner ? { banner: { js: BUNDLING.banner } } : {}),
    logLevel: 'error',
  };
}

/** Bundles a TypeScript entry with the functions' options into `dir/index.mjs`. */
export async function bundle(
  entry: string,
  dir: string,
): Promise<{ js: string; jsBytes: number; mapBytes: number }> {
  mkdirSync(dir, { recursive: true });
  const js = join(dir, 'index.mjs');
  await build(esbuildOptions(entry, js));
  return { js, jsBytes: statSync(js).size, mapBytes: statSync(`${js}.map`).size };
}

/** Dummy values for every variable a function's configuration requires (shared/config.ts). */
const ENV: Record<FunctionName, Record<string, string>> = {
  's3-trigger': {
    SIGNALS_QUEUE_URL: 'https://sqs.us-east-1.amazonaws.com/123456789012/pulse-signals',
    LEDGER_TABLE: 'pulse-ledger',
    QUARANTINE_BUCKET: 'pulse-ingest',
  },
  scorer: {
    SCORES_TABLE: 'pulse-scores',
    SCORES_BUCKET: 'pulse-scores',
    ANOMALIES_TABLE: 'pulse-anomalies',
    QUARANTINE_BUCKET: 'pulse-ingest',
  },
  'db-poller': {
    SIGNALS_QUEUE_URL: 'https://sqs.us-east-1.amazonaws.com/123456789012/pulse-signals',
    QUARANTINE_BUCKET: 'pulse-ingest',
    DB_SECRET_ARN: 'arn:aws:secretsmanager:us-east-1:123456789012:secret:pulse-db',
    WATERMARK_TABLE: 'pulse-ledger',
  },
  'kafka-consumer': {
    SIGNALS_QUEUE_URL: 'https://sqs.us-east-1.amazonaws.com/123456789012/pulse-signals',
    QUARANTINE_BUCKET: 'pulse-ingest',
  },
};

/** Milliseconds a fresh Node process spends importing the bundle, and its whole run (spawn to exit). */
async function importOnce(
  js: string,
  env: Record<string, string>,
  sourceMaps = true,
): Promise<{ importMs: number; processMs: number }> {
  const code = `const t=performance.now();await import(${JSON.stringify(pathToFileURL(js).href)});process.stdout.write(String(performance.now()-t));`;
  const t0 = performance.now();
  const {
    code: code_,
    out,
    err,
  } = await runNode(['--input-type=module', '-e', code], {
    AWS_REGION: 'us-east-1',
    AWS_ACCESS_KEY_ID: 'test',
    AWS_SECRET_ACCESS_KEY: 'test',
    // As deployed (PulseFunction sets it): the source map is read when the bundle loads.
    ...(sourceMaps ? { NODE_OPTIONS: '--enable-source-maps' } : {}),
    POWERTOOLS_LOG_LEVEL: 'ERROR',
    ...env,
  });
  const processMs = performance.now() - t0;
  if (code_ !== 0) throw new Error(`importing ${js} failed (exit ${code_}): ${err.slice(-2000)}`);
  return { importMs: Number(out), processMs };
}

export interface BundleResult {
  readonly kb: number;
  readonly map_kb: number;
  /** Median import time over `runs` fresh processes. */
  readonly init_ms: number;
  readonly init_ms_runs: number[];
  /** The same without --enable-source-maps: what reading the source map costs at start-up. */
  readonly init_ms_without_source_maps: number;
  /** Median spawn-to-exit of the same processes (Node start-up included). */
  readonly process_ms: number;
}

export async function benchBundles(outDir: string, runs = 5): Promise<Record<string, BundleResult>> {
  const results: Record<string, BundleResult> = {};
  for (const name of FUNCTIONS) {
    const b = await bundle(handlerEntry(name), join(outDir, name));
    await importOnce(b.js, ENV[name]); // warm the file cache; not counted
    const samples: { importMs: number; processMs: number }[] = [];
    const plain: number[] = [];
    for (let i = 0; i < runs; i++) {
      samples.push(await importOnce(b.js, ENV[name]));
      plain.push((await importOnce(b.js, ENV[name], false)).importMs);
    }
    results[name] = {
      kb: round(b.jsBytes / 1024, 1),
      map_kb: round(b.mapBytes / 1024, 1),
      init_ms: round(median(samples.map((s) => s.importMs)), 1),
      init_ms_runs: samples.map((s) => round(s.importMs, 1)),
      init_ms_without_source_maps: round(median(plain), 1),
      process_ms: round(median(samples.map((s) => s.processMs)), 1),
    };
  }
  return results;
}
