import { gunzipSync, gzipSync } from 'node:zlib';
import {
  DeleteObjectCommand,
  GetObjectCommand,
  NoSuchKey,
  PutObjectCommand,
  type S3Client,
} from '@aws-sdk/client-s3';
import type { DynamoDBDocumentClient } from '@aws-sdk/lib-dynamodb';
import { batchWriteAll, UNPROCESSED_RETRY } from '#shared/dynamo-batch.ts';
import { settings } from '#shared/settings.ts';
import type { OriginKind } from '#shared/signal.ts';
import { tokenDate } from './blocks.ts';
import { seriesKey, sha256 } from './keys.ts';

/**
 * Scores in bulk, exactly once (docs/scoring.md). Each transaction attempt has a token; its scores are
 *  1. written to `scores-pending/<token>.ndjson.gz` before it commits (the items it commits record the
 *     token),
 *  2. after it commits: its anomalies written to the anomalies table, the final object
 *     `scores/dt=<date>/<token>.ndjson.gz` written, and the pending object deleted ({@link promote});
 *  3. on a conflict, the pending object is deleted; an attempt that may have committed leaves it.
 * Whoever later finds the token on an applied position runs {@link ScoreStore.settle}: a pending object
 * still there (its scorer died between commit and promotion) is promoted from its own bytes. Every step
 * writes the same keys with the same bytes, so running it twice, or two scorers at once, changes nothing.
 */

/** One signal's score, a line of a score object (and a row of the Glue table). */
export interface ScoreRecord {
  readonly id: string;
  /** The origin's kind and ref. */
  readonly kind: OriginKind;
  readonly ref: string;
  readonly source: string;
  readonly name: string;
  readonly value: number;
  readonly timestamp: string;
  /** null when the model gives none yet (too few samples). */
  readonly score: number | null;
  readonly anomaly: boolean;
  /** Values the series held before this one. */
  readonly samples: number;
  readonly model: string;
  readonly scoredAt: string;
}

export const pendingKey = (token: string) => `${settings.scores.pendingPrefix}${token}.ndjson.gz`;
export const finalKey = (token: string) =>
  `${settings.scores.prefix}dt=${tokenDate(token)}/${token}.ndjson.gz`;

/** NDJSON, gzip-compressed (Athena reads `.gz` objects as gzip). */
export function encodeRecords(records: readonly ScoreRecord[]): Buffer {
  let text = '';
  for (const r of records) text += `${JSON.stringify(r)}\n`;
  return gzipSync(text, { level: 4 });
}

export function decodeRecords(body: Uint8Array): ScoreRecord[] {
  return gunzipSync(body)
    .toString('utf8')
    .split('\n')
    .filter((line) => line.length > 0)
    .map((line) => JSON.parse(line) as ScoreRecord);
}

/**
 * The anomalies table's item of one anomalous score: by series (the series item's key), in time order;
 * and by day (`<date>#<shard>`, the recent-anomalies index) for the dashboard. Keyed by the signal's ref,
 * so writing it again (a recovery) overwrites it.
 */
export function anomalyItem(r: ScoreRecord): Record<string, unknown> {
  const refHash = sha256(r.ref);
  const shard = Number.parseInt(refHash.slice(0, 8), 16) % settings.scoring.recentAnomalyShards;
  return {
    series: seriesKey(r.source, r.name),
    at: `${r.timestamp}#${refHash.slice(0, 16)}`,
    id: r.id,
    ref: r.ref,
    source: r.source,
    name: r.name,
    value: r.value,
    score: r.score,
    timestamp: r.timestamp,
    scoredAt: r.scoredAt,
    day: `${r.scoredAt.slice(0, 10)}#${shard}`,
  };
}

export interface ScoreStoreConfig {
  readonly scoresBucket: string;
  readonly anomaliesTable: string;
}

/**
 * Tokens known settled: their pending object is gone for good (it is written only before its commit),
 * so a warm scorer need not look again.
 */
const settled = new Set<string>();

function remember(token: string): void {
  if (settled.size >= 100_000) settled.clear();
  settled.add(token);
}

export class ScoreStore {
  readonly #s3: S3Client;
  readonly #doc: DynamoDBDocumentClient;
  readonly #config: ScoreStoreConfig;
  readonly #sleep: (ms: number) => Promise<void>;

  constructor(
    s3: S3Client,
    doc: DynamoDBDocumentClient,
    config: ScoreStoreConfig,
    sleep: (ms: number) => Promise<void>,
  ) {
    this.#s3 = s3;
    this.#doc = doc;
    this.#config = config;
    this.#sleep = sleep;
  }

  async putPending(token: string, body: Buffer): Promise<void> {
    await this.#s3.send(
      new PutObjectCommand({
        Bucket: this.#config.scoresBucket,
        Key: pendingKey(token),
        Body: body,
        ContentType: 'application/x-ndjson',
        ContentEncoding: 'gzip',
      }),
    );
  }

  /** After a commit: anomalies, the final object, then the pending object deleted. */
  async promote(token: string, body: Buffer, records: readonly ScoreRecord[]): Promise<void> {
    await this.writeAnomalies(records.filter((r) => r.anomaly));
    await this.#s3.send(
      new PutObjectCommand({
        Bucket: this.#config.scoresBucket,
        Key: finalKey(token),
        Body: body,
        ContentType: 'application/x-ndjson',
        ContentEncoding: 'gzip',
      }),
    );
    await this.deletePending(token);
    remember(token);
  }

  async deletePending(token: string): Promise<void> {
    await this.#s3.send(
      new DeleteObjectCommand({ Bucket: this.#config.scoresBucket, Key: pendingKey(token) }),
    );
  }

  /**
   * For a token found on an applied position or id: promotes its pending object if it is still there.
   * Returns whether it had to.
   */
  async settle(token: string): Promise<boolean> {
    if (settled.has(token)) return false;
    let body: Buffer;
    try {
      const out = await this.#s3.send(
        new GetObjectCommand({ Bucket: this.#config.scoresBucket, Key: pendingKey(token) }),
      );
      body = Buffer.from(
        await (out.Body as { transformToByteArray(): Promise<Uint8Array> }).transformToByteArray(),
      );
    } catch (err) {
      if (err instanceof NoSuchKey || (err as Error).name === 'NoSuchKey') {
        remember(token);
        return false;
      }
      throw err;
    }
    await this.promote(token, body, decodeRecords(body));
    return true;
  }

  /** BatchWriteItem, 25 a call, retrying what DynamoDB leaves unprocessed (shared/dynamo-batch.ts). */
  async writeAnomalies(records: readonly ScoreRecord[]): Promise<void> {
    await batchWriteAll(
      this.#doc,
      this.#config.anomaliesTable,
      records.map((r) => ({ PutRequest: { Item: anomalyItem(r) } })),
      { ...UNPROCESSED_RETRY, sleep: this.#sleep },
    );
  }
}
