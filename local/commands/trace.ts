/**
 * `pulse trace ID|ORIGIN`: from one record — its origin ref (`s3://bucket/key@etag#row`,
 * `kafka:topic:partition:offset`, `db:table:id`, as a score or an anomaly names it) or its own id with where
 * it is unique (`--from`) — to what happened to it: the ledger item of its file version (and the part that
 * read it), its score record (what the series held then: samples, score, anomaly), the series' state now,
 * or the quarantine line with its reason. Offline and on a deployed stack alike (a {@link Target}).
 *
 * Every read is by key, or a listing of one narrow prefix: the score by its block or id item
 * (scores.ts), the ledger by the version's partition, the quarantine by the rejects objects the ledger
 * names (a file), or those of the record's partition (Kafka: `rejects/kafka/<topic>/<partition>/`, only
 * the batches whose offsets hold it) or table (db: `rejects/db/<table>/`, at most
 * {@link REJECTS_OBJECTS_READ} objects, newest first).
 */

import { GetObjectCommand, ListObjectsV2Command, NoSuchKey } from '@aws-sdk/client-s3';
import { GetCommand, QueryCommand } from '@aws-sdk/lib-dynamodb';
import type { LedgerItem } from '#shared/ledger.ts';
import { settings } from '#shared/settings.ts';
import type { OriginKind } from '#shared/signal.ts';
import { seriesKey } from '../../functions/scorer/keys.ts';
import type { ScoreRecord } from '../../functions/scorer/score-store.ts';
import { lookupSignal, type SignalLookup } from './scores.ts';
import type { Target } from './target.ts';
import { printable } from './terminal.ts';

/** Rejects objects read at most for one db record (the table's folder, newest first). */
export const REJECTS_OBJECTS_READ = 50;

export type TraceVerdict = 'scored' | 'pending' | 'scored-elsewhere' | 'quarantined' | 'not-found';

export interface QuarantineRecord {
  /** The rejects object (in the pipeline's bucket). */
  readonly object: string;
  readonly reason: string;
  readonly row?: number;
  readonly raw?: string;
}

export interface SeriesState {
  readonly source: string;
  readonly name: string;
  readonly count: number;
  readonly mean: number;
  /** Sample standard deviation (0 below two samples). */
  readonly stddev: number;
  readonly anomalies: number;
}

export interface TraceLedger {
  /** The file version's item: status, attempts, counts, error, retries. */
  readonly file: LedgerItem;
  /** The part of a split file that read the row. */
  readonly part?: LedgerItem;
}

export interface Trace {
  readonly input: string;
  readonly kind: OriginKind;
  /** The record's origin ref (found from its own id when one was given). */
  readonly ref?: string;
  readonly verdict: TraceVerdict;
  readonly score: SignalLookup;
  /** A file's row: the ledger of its version (null: the ledger does not know the version). */
  readonly ledger?: TraceLedger | null;
  /** The series the score record names, as it is now. */
  readonly series?: SeriesState;
  readonly quarantine: readonly QuarantineRecord[];
  /** What the verdict means for this record, and what to do next. */
  readonly note?: string;
}

export interface TraceQuery {
  /** An origin ref, or a record's own id (then `from` says where it is unique). */
  readonly input: string;
  /** For an own id: `s3://bucket/key@etag`, `kafka:topic` or `db:table`. */
  readonly from?: string;
  readonly source?: string;
}

const S3_REF = /^s3:\/\/([^/]+)\/(.+)@([^@#/]+)#(\d+)$/s;
const KAFKA_REF = /^kafka:(.+):(\d+):(\d+)$/s;
const DB_REF = /^db:([^:]+):(.+)$/s;

/** The kind of an origin ref, or undefined when the text is not one. */
export function refKind(text: string): OriginKind | undefined {
  if (S3_REF.test(text)) return 's3';
  if (KAFKA_REF.test(text)) return 'kafka';
  if (DB_REF.test(text)) return 'db';
  return undefined;
}

/** Traces one record. Throws, saying what to give, when the input is neither a ref nor an id with `from`. */
export async function trace(target: Target, q: TraceQuery): Promise<Trace> {
  const asRef = refKind(q.input);
  if (!asRef && q.from === undefined) {
    throw new Error(
      `${JSON.stringify(q.input)} is not an origin ref (s3://bucket/key@etag#row, kafka:topic:partition:offset, db:table:id): for a record's own id, give --from s3://bucket/key@etag, kafka:topic or db:table`,
    );
  }
  const kind = asRef ?? kindOfScope(q.from ?? '');
  const score = asRef
    ? await lookupSignal(target, { ref: q.input, kind })
    : await lookupSignal(target, {
        id: q.input,
        kind,
        from: q.from as string,
        ...(q.source ? { source: q.source } : {}),
      });
  const record = score.status === 'scored' ? score.record : undefined;
  const ref = asRef ? q.input : record?.ref;
  const ledger = ref && kind === 's3' ? await ledgerOf(target, ref) : undefined;
  const series = record ? await seriesState(target, record) : undefined;
  const quarantine = ref && score.status === 'not-scored' ? await quarantined(target, kind, ref, ledger) : [];
  const verdict: TraceVerdict =
    score.status !== 'not-scored' ? score.status : quarantine.length > 0 ? 'quarantined' : 'not-found';
  const note = noteOf(verdict, ledger, ref);
  return {
    input: q.input,
    kind,
    ...(ref ? { ref } : {}),
    verdict,
    score,
    ...(ledger !== undefined ? { ledger } : {}),
    ...(series ? { series } : {}),
    quarantine,
    ...(note ? { note } : {}),
  };
}

/** The exit code of `pulse trace`: 0 scored (or being written); 2 quarantined; 3 found nowhere. */
export function traceExitCode(t: Trace): number {
  if (t.verdict === 'quarantined') return 2;
  if (t.verdict === 'not-found') return 3;
  return 0;
}

function kindOfScope(scope: string): OriginKind {
  if (scope.startsWith('s3://')) return 's3';
  if (scope.startsWith('kafka:')) return 'kafka';
  if (scope.startsWith('db:')) return 'db';
  throw new Error(`--from takes s3://bucket/key@etag, kafka:topic or db:table, not ${JSON.stringify(scope)}`);
}

/** The ledger items of the row's file version: the file's, and the part's that covers the row. */
async function ledgerOf(target: Target, ref: string): Promise<TraceLedger | null> {
  const m = S3_REF.exec(ref);
  if (!m) return null;
  const [, bucket, key, etag, rowText] = m as unknown as [string, string, string, string, string];
  const row = Number(rowText);
  const out = await target.clients.doc.send(
    new QueryCommand({
      TableName: target.ledgerTable,
      KeyConditionExpression: 'pk = :pk AND begins_with(sk, :etag)',
      ExpressionAttributeValues: { ':pk': `s3://${bucket}/${key}`, ':etag': etag },
      ConsistentRead: true,
    }),
  );
  const items = (out.Items ?? []) as LedgerItem[];
  const file = items.find((i) => i.sk === etag);
  if (!file) return null;
  const part = items.find(
    (i) => i.part !== undefined && i.range !== undefined && i.range.row < row && row <= i.range.endRow,
  );
  return { file, ...(part ? { part } : {}) };
}

async function seriesState(target: Target, record: ScoreRecord): Promise<SeriesState | undefined> {
  const out = await target.clients.doc.send(
    new GetCommand({ TableName: target.scoresTable, Key: { pk: seriesKey(record.source, record.name) } }),
  );
  const item = out.Item;
  if (!item) return undefined;
  const count = Number(item.count ?? 0);
  const m2 = Number(item.m2 ?? 0);
  return {
    source: record.source,
    name: record.name,
    count,
    mean: Number(item.mean ?? 0),
    stddev: count > 1 ? Math.sqrt(m2 / (count - 1)) : 0,
    anomalies: Number(item.anomalies ?? 0),
  };
}

/** The quarantine lines of this ref, from the rejects objects that can hold it. */
async function quarantined(
  target: Target,
  kind: OriginKind,
  ref: string,
  ledger: TraceLedger | null | undefined,
): Promise<QuarantineRecord[]> {
  const objects = await candidateObjects(target, kind, ref, ledger);
  const found: QuarantineRecord[] = [];
  for (const object of objects) {
    for (const line of await linesOf(target, object)) {
      if (line.ref !== ref) continue;
      found.push({
        object,
        reason: String(line.reason ?? ''),
        ...(typeof line.row === 'number' ? { row: line.row } : {}),
        ...(typeof line.raw === 'string' ? { raw: line.raw } : {}),
      });
    }
  }
  return found;
}

async function candidateObjects(
  target: Target,
  kind: OriginKind,
  ref: string,
  ledger: TraceLedger | null | undefined,
): Promise<string[]> {
  if (kind === 's3') {
    const keys = new Set<string>();
    for (const item of [ledger?.file, ledger?.part]) {
      if (!item) continue;
      if (item.rejectsKey) keys.add(item.rejectsKey);
      for (const k of item.rejectsKeys ?? []) keys.add(k);
    }
    return [...keys];
  }
  if (kind === 'kafka') {
    const [, topic, partition, offsetText] = KAFKA_REF.exec(ref) as unknown as [
      string,
      string,
      string,
      string,
    ];
    const offset = Number(offsetText);
    const keys = await listKeys(target, `${settings.bucket.rejectsPrefix}kafka/${topic}/${partition}/`);
    return keys.filter((k) => {
      const range = /(\d+)-(\d+)(?:\.[^/]*)?\.ndjson$/.exec(k);
      return !range || (Number(range[1]) <= offset && offset <= Number(range[2]));
    });
  }
  const [, table] = DB_REF.exec(ref) as unknown as [string, string];
  const keys = await listKeys(target, `${settings.bucket.rejectsPrefix}db/${table}/`);
  // Newest days first (the day is in the key), at most REJECTS_OBJECTS_READ.
  return keys.sort((a, b) => b.localeCompare(a)).slice(0, REJECTS_OBJECTS_READ);
}

async function listKeys(target: Target, prefix: string): Promise<string[]> {
  const keys: string[] = [];
  let token: string | undefined;
  do {
    const out = await target.clients.s3.send(
      new ListObjectsV2Command({ Bucket: target.bucket, Prefix: prefix, ContinuationToken: token }),
    );
    for (const o of out.Contents ?? []) if (o.Key) keys.push(o.Key);
    token = out.NextContinuationToken;
  } while (token);
  return keys;
}

async function linesOf(target: Target, key: string): Promise<Record<string, unknown>[]> {
  try {
    const out = await target.clients.s3.send(new GetObjectCommand({ Bucket: target.bucket, Key: key }));
    const body = await (out.Body as { transformToByteArray(): Promise<Uint8Array> }).transformToByteArray();
    const text = Buffer.from(body).toString('utf8');
    const lines: Record<string, unknown>[] = [];
    for (const line of text.split('\n')) {
      if (!line.trim()) continue;
      try {
        lines.push(JSON.parse(line) as Record<string, unknown>);
      } catch {
        // A line that is not JSON is no quarantine record: skipped.
      }
    }
    return lines;
  } catch (err) {
    if (err instanceof NoSuchKey || (err as Error).name === 'NoSuchKey') return [];
    throw err;
  }
}

function noteOf(verdict: TraceVerdict, ledger: TraceLedger | null | undefined, ref: string | undefined) {
  if (verdict !== 'not-found') return undefined;
  if (ledger === null)
    return 'the ledger does not know this file version: was it uploaded under incoming/? (pulse ledger)';
  const status = ledger?.part?.status ?? ledger?.file.status;
  if (status === 'PROCESSING' || status === 'DISCOVERED' || status === 'SPLIT') {
    return `its file is ${status}: not read to this row yet; trace it again later`;
  }
  if (status === 'FAILED') {
    return `its file FAILED (${ledger?.file.errorType ?? 'error'}): the row may never have been read; once the cause is fixed: pulse ledger retry`;
  }
  if (!ref) return 'no record with this id was scored (its ref is unknown): check --from and --source';
  return 'neither scored nor quarantined: the row may be past the end of its file, or its signal still on the queue';
}

const VERDICT: Record<TraceVerdict, string> = {
  scored: 'SCORED',
  pending: 'SCORED, its score object not promoted yet',
  'scored-elsewhere': 'SCORED, its score record in an older object',
  quarantined: 'QUARANTINED',
  'not-found': 'NOT FOUND',
};

/** The trace as text for a person: keys, reasons and raw lines made {@link printable}. */
export function traceText(t: Trace): string {
  const out = [printable(`${t.ref ?? t.input}  ${VERDICT[t.verdict]}`)];
  const row = (label: string, text: string) => out.push(printable(`  ${label.padEnd(10)} ${text}`));
  if (t.ledger === null) row('ledger', 'no item for this file version');
  else if (t.ledger) {
    const f = t.ledger.file;
    const error = f.errorType ? `, ${f.errorType}: ${f.errorMessage ?? ''}` : '';
    row(
      'ledger',
      `${f.status}, attempt(s) ${f.attempts}, ${f.records ?? 0} sent, ${f.rejected ?? 0} rejected${error}`,
    );
    if (t.ledger.part) {
      const p = t.ledger.part;
      row('part', `${p.part} (rows ${(p.range?.row ?? 0) + 1}-${p.range?.endRow ?? '?'}): ${p.status}`);
    }
    for (const r of f.retries ?? []) {
      row('retried', `${r.at} by ${r.by} (was ${r.previous.status}: ${r.previous.errorType ?? ''})`);
    }
  }
  if (t.score.status === 'scored') {
    const r = t.score.record;
    row('signal', `${r.id}: ${r.source} / ${r.name} = ${r.value} at ${r.timestamp}`);
    row(
      'score',
      `${r.score ?? 'none (too few samples)'}${r.anomaly ? ', ANOMALY' : ''}; the series held ${r.samples} value(s) then (${r.model}), scored ${r.scoredAt}`,
    );
    row('object', `s3://.../${t.score.object}`);
  } else if (t.score.status === 'pending') row('score', `being written (${t.score.object})`);
  else if (t.score.status === 'scored-elsewhere') row('score', t.score.hint);
  if (t.series) {
    const s = t.series;
    row(
      'series',
      `now ${s.count} value(s), mean ${round(s.mean)}, stddev ${round(s.stddev)}, ${s.anomalies} anomalies`,
    );
  }
  for (const q of t.quarantine) {
    row('reason', q.reason);
    row('rejects', `${q.object}${q.row !== undefined ? ` (row ${q.row})` : ''}`);
    if (q.raw !== undefined) row('raw', q.raw.slice(0, 200));
  }
  if (t.note) row('note', t.note);
  return out.join('\n');
}

function round(n: number): string {
  return Number.isFinite(n) ? String(Math.round(n * 1000) / 1000) : String(n);
}
