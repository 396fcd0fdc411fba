/**
 * Where a receipt (receipts.ts: `pulse verify`, the ledger sweep) finds each row of an object version: the score objects (by the
 * tokens of the file's blocks, else by day), the file's rejects objects (the ledger names them) and the
 * scorer's (by day).
 */

import { gunzipSync } from 'node:zlib';
import { GetObjectCommand, ListObjectsV2Command, type S3Client } from '@aws-sdk/client-s3';
import type { DynamoDBDocumentClient } from '@aws-sdk/lib-dynamodb';
// The score objects' and blocks' formats are the scorer's: read through its own modules, never a copy.
import { decodeTokens } from '../functions/scorer/blocks.ts';
import { blockKey, streamIdOf } from '../functions/scorer/keys.ts';
import { decodeRecords, finalKey, pendingKey } from '../functions/scorer/score-store.ts';
import { readItems } from '../functions/scorer/state.ts';
import type { LedgerItem } from './ledger.ts';
import { settings } from './settings.ts';

/**
 * Where the receipts are counted from: the clients and the resources. A `pulse` command's target is one; the
 * ledger sweep builds one from its configuration.
 */
export interface ReceiptSources {
  readonly clients: { readonly s3: S3Client; readonly doc: DynamoDBDocumentClient };
  /** The ingest bucket (the files' rejects objects and the scorer's). */
  readonly bucket: string;
  readonly scoresBucket: string;
  readonly scoresTable: string;
}

/** What was found of one object version's rows. */
export interface Found {
  readonly scored: Set<number>;
  readonly quarantined: Set<number>;
  readonly byScorer: Set<number>;
  readonly duplicates: Set<number>;
  notRecords: number;
}

export const emptyFound = (): Found => ({
  scored: new Set(),
  quarantined: new Set(),
  byScorer: new Set(),
  duplicates: new Set(),
  notRecords: 0,
});

/** `s3://bucket/key@etag` of a ledger item (a file version, or one of its parts): its rows' refs start with it. */
export function streamOf(bucket: string, item: LedgerItem): string {
  // A part's sort key is not its etag: the etag field is, for the file and its parts alike.
  return `${item.pk.startsWith('s3://') ? item.pk : `s3://${bucket}/${item.pk}`}@${item.etag ?? item.sk}`;
}

/** The stream and row of a ref `<stream>#<row>`, or undefined for a ref of another shape. */
function rowOf(ref: string): { stream: string; row: number } | undefined {
  const hash = ref.lastIndexOf('#');
  if (hash < 0) return undefined;
  const row = Number(ref.slice(hash + 1));
  return Number.isInteger(row) && row > 0 ? { stream: ref.slice(0, hash), row } : undefined;
}

export const sleep = (ms: number) => new Promise<void>((resolveSleep) => setTimeout(resolveSleep, ms));

/** `yyyy-mm-dd` of every day from `fromMs` to `now`. */
export function days(fromMs: number, now: Date): string[] {
  const out: string[] = [];
  const start = Number.isFinite(fromMs) ? fromMs : now.getTime();
  for (let d = Date.UTC(...ymd(start)); d <= now.getTime(); d += 86_400_000) {
    out.push(new Date(d).toISOString().slice(0, 10));
  }
  return out;
}

function ymd(ms: number): [number, number, number] {
  const d = new Date(ms);
  return [d.getUTCFullYear(), d.getUTCMonth(), d.getUTCDate()];
}

async function listKeys(target: ReceiptSources, bucket: string, prefix: string): Promise<string[]> {
  const keys: string[] = [];
  let token: string | undefined;
  do {
    const out = await target.clients.s3.send(
      new ListObjectsV2Command({ Bucket: bucket, Prefix: prefix, ContinuationToken: token }),
    );
    for (const o of out.Contents ?? []) if (o.Key) keys.push(o.Key);
    token = out.NextContinuationToken;
  } while (token);
  return keys;
}

/** The object's bytes, or undefined when it is gone (a listed object deleted since). */
async function readObject(
  target: ReceiptSources,
  bucket: string,
  key: string,
): Promise<Uint8Array | undefined> {
  try {
    const out = await target.clients.s3.send(new GetObjectCommand({ Bucket: bucket, Key: key }));
    return await (out.Body as { transformToByteArray(): Promise<Uint8Array> }).transformToByteArray();
  } catch (err) {
    if ((err as Error).name === 'NoSuchKey') return undefined;
    throw err;
  }
}

/** Rows of the score objects `key` holds, added to their streams'. */
async function readScores(target: ReceiptSources, key: string, streams: Map<string, Found>): Promise<void> {
  const body = await readObject(target, target.scoresBucket, key);
  if (!body) return;
  for (const r of decodeRecords(body)) {
    const at = rowOf(r.ref);
    if (at) streams.get(at.stream)?.scored.add(at.row);
  }
}

/**
 * The score objects (final, else pending) of the transactions the files' blocks name: the blocks of rows
 * 1 to a little past the count read. Returns the keys read.
 */
export async function scoresByTokens(
  target: ReceiptSources,
  files: readonly LedgerItem[],
  streams: Map<string, Found>,
): Promise<Set<string>> {
  const per = settings.scoring.blockPositions;
  const keys: string[] = [];
  for (const f of files) {
    const id = streamIdOf('s3', streamOf(target.bucket, f));
    const last = Math.floor(((f.records ?? 0) + (f.rejected ?? 0)) / per) + 1;
    for (let block = 0; block <= last; block++) keys.push(blockKey(id, block));
  }
  const blocks = await readItems(target.clients.doc, target.scoresTable, keys, sleep);
  const tokens = new Set<string>();
  for (const item of blocks.values()) for (const t of decodeTokens(item.t as Uint8Array)) tokens.add(t);
  const read = new Set<string>();
  for (const token of tokens) {
    for (const key of [finalKey(token), pendingKey(token)]) {
      read.add(key);
      await readScores(target, key, streams);
    }
  }
  return read;
}

/** Every score object of `dayList`'s partitions and the pending ones, but those in `skip` (read already). */
export async function scanScores(
  target: ReceiptSources,
  dayList: readonly string[],
  streams: Map<string, Found>,
  skip: ReadonlySet<string> = new Set(),
): Promise<void> {
  const keys = [
    ...(await listKeys(target, target.scoresBucket, settings.scores.pendingPrefix)),
    ...(
      await Promise.all(
        dayList.map((d) => listKeys(target, target.scoresBucket, `${settings.scores.prefix}dt=${d}/`)),
      )
    ).flat(),
  ];
  for (const key of keys) if (!skip.has(key)) await readScores(target, key, streams);
}

interface RejectLine {
  readonly ref?: unknown;
  readonly row?: unknown;
  readonly reason?: unknown;
}

function rejectLines(body: Uint8Array, key: string): RejectLine[] {
  const text = (key.endsWith('.gz') ? gunzipSync(body) : Buffer.from(body)).toString('utf8');
  const lines: RejectLine[] = [];
  for (const line of text.split('\n')) {
    if (line.trim() === '') continue;
    try {
      lines.push(JSON.parse(line) as RejectLine);
    } catch {
      // Not a rejects line: nothing of it can be accounted for.
    }
  }
  return lines;
}

/** The file's own rejects objects (the ledger names them, parts' included). */
export async function scanRejects(
  target: ReceiptSources,
  items: readonly LedgerItem[],
  streams: Map<string, Found>,
): Promise<void> {
  for (const item of items) {
    const found = streams.get(streamOf(target.bucket, item));
    if (!found) continue;
    const keys = new Set([...(item.rejectsKey ? [item.rejectsKey] : []), ...(item.rejectsKeys ?? [])]);
    for (const key of keys) {
      const body = await readObject(target, target.bucket, key);
      if (!body) continue;
      for (const line of rejectLines(body, key)) {
        const at = typeof line.ref === 'string' ? rowOf(line.ref) : undefined;
        if (at) found.quarantined.add(at.row);
        else if (!/^(file|part \d+) failed: /.test(String(line.reason ?? ''))) found.notRecords++;
      }
    }
  }
}

/** The scorer's rejects (`rejects/scorer/<day>/…`): invalid signals, and own ids scored from another row. */
export async function scanScorerRejects(
  target: ReceiptSources,
  dayList: readonly string[],
  streams: Map<string, Found>,
): Promise<void> {
  const prefix = `${settings.bucket.rejectsPrefix}scorer/`;
  const keys = (
    await Promise.all(dayList.map((d) => listKeys(target, target.bucket, `${prefix}${d}/`)))
  ).flat();
  for (const key of keys) {
    const body = await readObject(target, target.bucket, key);
    if (!body) continue;
    for (const line of rejectLines(body, key)) {
      const at = typeof line.ref === 'string' ? rowOf(line.ref) : undefined;
      const found = at ? streams.get(at.stream) : undefined;
      if (!at || !found) continue;
      // The scorer writes the rows whose own id was scored from another row to objects of their own.
      if (key.endsWith('-collisions.ndjson')) found.duplicates.add(at.row);
      else found.byScorer.add(at.row);
    }
  }
}
