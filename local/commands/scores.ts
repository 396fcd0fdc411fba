/**
 * Reading what the scorer wrote (docs/scoring.md), on the offline run and on a deployed stack alike: the
 * running totals `pulse status` shows, the recent anomalies, one signal's score (`pulse scores --ref`,
 * `--id`), and a series' anomalies (`pulse scores --series`). Every read is by key or by one partition:
 * nothing here scans what grows with the signals.
 */

import { GetObjectCommand, NoSuchKey } from '@aws-sdk/client-s3';
import { QueryCommand } from '@aws-sdk/lib-dynamodb';
import { settings } from '#shared/settings.ts';
import { ORIGIN_KINDS, type OriginKind } from '#shared/signal.ts';
import { Bitmap, decodeTokens } from '../../functions/scorer/blocks.ts';
import {
  blockKey,
  idKey,
  positionOf,
  scopeOf,
  seriesKey,
  streamIdOf,
  totalsKey,
} from '../../functions/scorer/keys.ts';
import { decodeRecords, finalKey, pendingKey, type ScoreRecord } from '../../functions/scorer/score-store.ts';
import { readItems } from '../../functions/scorer/state.ts';
import type { Target } from './target.ts';

export interface ScoreTotals {
  /** Signals applied: positions set in blocks plus id items, as the transactions that applied them counted. */
  readonly scored: number;
  /** Samples the series gained in the same transactions: equal to `scored` when nothing was folded twice. */
  readonly samples: number;
  readonly series: number;
  readonly anomalies: number;
}

const noSleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

/** The running totals: one BatchGetItem of the totals items. */
export async function scoreTotals(target: Target): Promise<ScoreTotals> {
  const keys = Array.from({ length: settings.scoring.totalsShards }, (_, i) => totalsKey(i));
  const items = await readItems(target.clients.doc, target.scoresTable, keys, noSleep);
  let scored = 0;
  let samples = 0;
  let series = 0;
  let anomalies = 0;
  for (const item of items.values()) {
    scored += Number(item.scored ?? 0);
    samples += Number(item.samples ?? 0);
    series += Number(item.series ?? 0);
    anomalies += Number(item.anomalies ?? 0);
  }
  return { scored, samples, series, anomalies };
}

export interface Anomaly {
  readonly id: string;
  readonly ref: string;
  readonly source: string;
  readonly name: string;
  readonly value: number;
  /** null when the model gave none (a constant series broken by another value). */
  readonly score: number | null;
  readonly timestamp: string;
  readonly scoredAt: string;
}

function toAnomaly(i: Record<string, unknown>): Anomaly {
  return {
    id: String(i.id ?? ''),
    ref: String(i.ref ?? ''),
    source: String(i.source ?? ''),
    name: String(i.name ?? ''),
    value: Number(i.value),
    score: i.score === null || i.score === undefined ? null : Number(i.score),
    timestamp: String(i.timestamp ?? ''),
    scoredAt: String(i.scoredAt ?? ''),
  };
}

/** The latest `limit` anomalies scored today or yesterday (UTC): the recent-anomalies index, per shard. */
export async function recentAnomalies(target: Target, limit: number, now = Date.now()): Promise<Anomaly[]> {
  const found: Anomaly[] = [];
  for (const day of [0, 1].map((d) => new Date(now - d * 86_400_000).toISOString().slice(0, 10))) {
    const shards = await Promise.all(
      Array.from({ length: settings.scoring.recentAnomalyShards }, async (_, shard) => {
        const out = await target.clients.doc.send(
          new QueryCommand({
            TableName: target.anomaliesTable,
            IndexName: settings.scores.recentAnomaliesIndex,
            KeyConditionExpression: '#day = :day',
            ExpressionAttributeNames: { '#day': 'day' },
            ExpressionAttributeValues: { ':day': `${day}#${shard}` },
            ScanIndexForward: false,
            Limit: limit,
          }),
        );
        return (out.Items ?? []).map(toAnomaly);
      }),
    );
    found.push(...shards.flat());
    if (found.length >= limit) break;
  }
  return found.sort((a, b) => b.scoredAt.localeCompare(a.scoredAt)).slice(0, limit);
}

/** A series' anomalies in time order (the newest `limit`), with one Query of its partition. */
export async function seriesAnomalies(
  target: Target,
  source: string,
  name: string,
  limit = 100,
): Promise<Anomaly[]> {
  const out = await target.clients.doc.send(
    new QueryCommand({
      TableName: target.anomaliesTable,
      KeyConditionExpression: '#series = :series',
      ExpressionAttributeNames: { '#series': 'series' },
      ExpressionAttributeValues: { ':series': seriesKey(source, name) },
      ScanIndexForward: false,
      Limit: limit,
    }),
  );
  return (out.Items ?? []).map(toAnomaly).reverse();
}

/** What is known of one signal. */
export type SignalLookup =
  | { readonly status: 'not-scored' }
  | { readonly status: 'scored'; readonly record: ScoreRecord; readonly object: string }
  /** Applied, and its score was written under a token the item has since let go of (docs/scoring.md). */
  | { readonly status: 'scored-elsewhere'; readonly hint: string }
  /** Applied, its transaction's scores not promoted yet (a scorer between commit and promotion). */
  | { readonly status: 'pending'; readonly object: string };

export interface SignalQuery {
  /** The signal's origin ref (`s3://bucket/key@etag#row`, `kafka:topic:p:offset`, `db:table:id`). */
  readonly ref?: string;
  /** A record's own id, with where it came from: its origin kind, scope (`from`) and source. */
  readonly id?: string;
  readonly kind?: OriginKind;
  /** The id's scope: `s3://bucket/key@etag`, `kafka:topic` or `db:table`. */
  readonly from?: string;
  readonly source?: string;
}

/** Finds one signal's score: its block or id item says whether it is applied and under which token(s). */
export async function lookupSignal(target: Target, q: SignalQuery): Promise<SignalLookup> {
  const doc = target.clients.doc;
  let tokens: string[];
  let match: (r: ScoreRecord) => boolean;
  if (q.ref !== undefined && q.id === undefined) {
    const ref = q.ref;
    const kind = q.kind ?? kindOfRef(ref);
    const at = positionOf(kind, ref);
    match = (r) => r.ref === ref;
    if (at) {
      const id = streamIdOf(kind, at.stream);
      const block = Math.floor(at.position / settings.scoring.blockPositions);
      const items = await readItems(doc, target.scoresTable, [blockKey(id, block)], noSleep);
      const item = items.get(blockKey(id, block));
      if (
        !item ||
        !Bitmap.from(item.b as Uint8Array).has(at.position - block * settings.scoring.blockPositions)
      ) {
        return { status: 'not-scored' };
      }
      tokens = decodeTokens(item.t as Uint8Array).reverse();
    } else {
      const key = idKey(kind, ['ref', ref]);
      const item = (await readItems(doc, target.scoresTable, [key], noSleep)).get(key);
      if (!item) return { status: 'not-scored' };
      tokens = [String(item.tk)];
    }
  } else if (q.id !== undefined) {
    const id = q.id;
    const kind = q.kind ?? kindOfRef(q.from ?? '');
    const from = q.from ?? '';
    const source = q.source ?? defaultSource(from);
    const key = idKey(kind, ['own', scopeOf(kind, from), source, id]);
    const item = (await readItems(doc, target.scoresTable, [key], noSleep)).get(key);
    if (!item) return { status: 'not-scored' };
    tokens = [String(item.tk)];
    const ref = String(item.ref);
    match = (r) => r.ref === ref && r.id === id;
  } else {
    throw new Error('give a ref, or an id with --from');
  }
  for (const token of tokens) {
    const record = await findIn(target, finalKey(token), match);
    if (record) return { status: 'scored', record, object: finalKey(token) };
  }
  for (const token of tokens) {
    if (await findIn(target, pendingKey(token), match))
      return { status: 'pending', object: pendingKey(token) };
  }
  const table = target.scoresGlueTable ?? `the Glue table ${settings.scores.glueTable}`;
  return {
    status: 'scored-elsewhere',
    hint: `its score is in an older object of s3://${target.scoresBucket}/${settings.scores.prefix}; on AWS: SELECT * FROM ${table} WHERE ref = '${q.ref ?? ''}'${q.id ? ` AND id = '${q.id}'` : ''}`,
  };
}

async function findIn(
  target: Target,
  key: string,
  match: (r: ScoreRecord) => boolean,
): Promise<ScoreRecord | undefined> {
  try {
    const out = await target.clients.s3.send(new GetObjectCommand({ Bucket: target.scoresBucket, Key: key }));
    const body = await (out.Body as { transformToByteArray(): Promise<Uint8Array> }).transformToByteArray();
    return decodeRecords(body).find(match);
  } catch (err) {
    if (err instanceof NoSuchKey || (err as Error).name === 'NoSuchKey') return undefined;
    throw err;
  }
}

function kindOfRef(ref: string): OriginKind {
  const kind = ORIGIN_KINDS.find((k) => ref.startsWith(k === 's3' ? 's3://' : `${k}:`));
  if (!kind) throw new Error(`cannot tell the origin kind of ${JSON.stringify(ref)}: give --kind`);
  return kind;
}

/** A record's default source: the object key, topic or table of its origin. */
function defaultSource(from: string): string {
  const s3 = /^s3:\/\/[^/]+\/(.*)@[^@]*$/.exec(from);
  if (s3) return s3[1] as string;
  const m = /^(?:kafka|db):([^:]+)/.exec(from);
  return m ? (m[1] as string) : from;
}
