import { createHash } from 'node:crypto';
import type { OriginKind, Signal } from '#shared/signal.ts';

/**
 * What "already scored" is kept by, for one signal (docs/scoring.md):
 * - a *position*: a signal whose id is its origin ref, and whose ref is a stream followed by a whole
 *   number (a file version's row `s3://bucket/key@etag#17`, a Kafka partition's offset
 *   `kafka:topic:3:42`, a mark-mode table's integer id `db:table:1001`), is one bit of a block item;
 * - an *id item*: any other signal (a record that brings its own id, a watermark-mode row version
 *   `db:table:7@…`, a text id) has an item of its own.
 */
export type DedupeKey = PositionKey | IdKey;

export interface PositionKey {
  readonly type: 'position';
  /** The stream: the ref without its position (`s3://bucket/key@etag`, `kafka:topic:3`, `db:table`). */
  readonly stream: string;
  /** 32 hex digits of sha256(kind|stream): what the stream's items are keyed by. */
  readonly streamId: string;
  /** The block item (`applied#<streamId>#<block>`). */
  readonly blockKey: string;
  readonly bit: number;
}

export interface IdKey {
  readonly type: 'id';
  /** The id item's key (`id#<kind>#<hash>`). */
  readonly key: string;
  /**
   * True for a record's own id, which dedupes within its scope: the same id from another origin ref is a
   * collision. False for a ref without a dense position, whose key is the ref itself.
   */
  readonly own: boolean;
}

/** A canonical whole number (no sign, no leading zero) that is exact as a double. */
const WHOLE = /^(?:0|[1-9]\d{0,15})$/;

/**
 * Each kind's refs as stream + position. The position must be canonical, so that the mapping is one to
 * one: `#007` and `#7` are two refs, and only the second has a position (the first gets an id item).
 */
const POSITIONED: Readonly<Record<OriginKind, RegExp>> = {
  // The key may hold '#' and '@': the position is what follows the last '#'.
  s3: /^(s3:\/\/[^/]+\/.*)#(\d+)$/,
  // Topic names are [A-Za-z0-9._-]; partitions are whole numbers.
  kafka: /^(kafka:[A-Za-z0-9._-]+:(?:0|[1-9]\d*)):(\d+)$/,
  // Table names are plain SQL identifiers (shared/config.ts): a watermark version's `@…` never matches.
  db: /^(db:[A-Za-z_][A-Za-z0-9_]*):(\d+)$/,
};

/** A ref's stream and position, when it has one. */
export function positionOf(kind: OriginKind, ref: string): { stream: string; position: number } | undefined {
  const m = POSITIONED[kind].exec(ref);
  if (!m || !WHOLE.test(m[2] as string)) return undefined;
  const position = Number(m[2]);
  return Number.isSafeInteger(position) ? { stream: m[1] as string, position } : undefined;
}

/**
 * Where a record's own id is unique (docs/scoring.md): its file version (`s3://bucket/key@etag`, so that a
 * corrected file uploaded again is scored), its topic (`kafka:topic`), its table (`db:table`). A ref of
 * another shape is its own scope.
 */
export function scopeOf(kind: OriginKind, ref: string): string {
  if (kind === 's3') {
    const hash = ref.lastIndexOf('#');
    return hash > 0 && /^\d+$/.test(ref.slice(hash + 1)) ? ref.slice(0, hash) : ref;
  }
  const m = /^(kafka|db):([^:]+):/.exec(ref);
  return m && m[1] === kind ? `${m[1]}:${m[2]}` : ref;
}

const STREAM_IDS = new Map<string, string>();

/** 32 hex digits (128 bits) of sha256(kind|stream); remembered, as a batch has few streams. */
export function streamIdOf(kind: OriginKind, stream: string): string {
  const k = `${kind}|${stream}`;
  let id = STREAM_IDS.get(k);
  if (id === undefined) {
    id = sha256(k).slice(0, 32);
    if (STREAM_IDS.size >= 10_000) STREAM_IDS.clear();
    STREAM_IDS.set(k, id);
  }
  return id;
}

export const blockKey = (streamId: string, block: number) => `applied#${streamId}#${block}`;
export const streamKey = (streamId: string) => `stream#${streamId}`;
export const totalsKey = (shard: number) => `totals#${shard}`;

/** The key of an id item: a record's own id in its scope, or a ref without a position. */
export function idKey(kind: OriginKind, parts: readonly string[]): string {
  return `id#${kind}#${sha256(JSON.stringify(parts)).slice(0, 40)}`;
}

/** Where `signal` is kept as applied, with blocks of `blockPositions` positions. */
export function dedupeKey(signal: Signal, blockPositions: number): DedupeKey {
  const { kind, ref } = signal.origin;
  if (signal.id !== ref) {
    return { type: 'id', own: true, key: idKey(kind, ['own', scopeOf(kind, ref), signal.source, signal.id]) };
  }
  const at = positionOf(kind, ref);
  if (!at) return { type: 'id', own: false, key: idKey(kind, ['ref', ref]) };
  const streamId = streamIdOf(kind, at.stream);
  const block = Math.floor(at.position / blockPositions);
  return {
    type: 'position',
    stream: at.stream,
    streamId,
    blockKey: blockKey(streamId, block),
    bit: at.position - block * blockPositions,
  };
}

/** Keys longer than this many bytes are hashed (DynamoDB allows 2048 for a partition key). */
const MAX_KEY_BYTES = 1024;

/**
 * The series item's key, `series#["source","name"]`, or `series-sha256#<hex>` when that is too long (a
 * prefix of its own, so that no raw key can take the key of a hashed one).
 */
export function seriesKey(source: string, name: string): string {
  const raw = JSON.stringify([source, name]);
  const key = `series#${raw}`;
  if (Buffer.byteLength(key) <= MAX_KEY_BYTES) return key;
  return `series-sha256#${sha256(raw)}`;
}

export function sha256(text: string): string {
  return createHash('sha256').update(text).digest('hex');
}
