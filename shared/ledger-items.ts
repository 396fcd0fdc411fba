import type { ErrorLocation } from './errors.ts';
import { type StoredUsage, USAGE_ATTRS, USAGE_KEYS } from './usage-meter.ts';

/**
 * The ledger's items, keys and the update expressions they share: what `ledger.ts` (one object version's
 * way through the ledger) and `ledger-split.ts` (a split file and its parts) both write.
 */

export type FileStatus = 'DISCOVERED' | 'PROCESSING' | 'SPLIT' | 'SUCCESS' | 'FAILED' | 'SKIPPED';

/** One object version, or one part of it (`part`) when the version was split. */
export interface FileRef {
  readonly bucket: string;
  readonly key: string;
  readonly etag: string;
  /** 0-based part number: the ref is to that part's item. */
  readonly part?: number;
}

/**
 * What one part of a split file covers. `byte` (uncompressed CSV/NDJSON): bytes `[start, end)`, starting at
 * a record boundary; `rowGroup` (Parquet): row groups `[start, end)`. `row` is the row number of the last
 * record before the part (0 for the first), `endRow` that of the part's last record: the parts' rows are
 * numbered exactly as in a read of the whole file.
 */
export interface PartRange {
  readonly kind: 'byte' | 'rowGroup';
  readonly start: number;
  readonly end: number;
  readonly row: number;
  readonly endRow: number;
}

export interface FileStats {
  readonly records: number;
  readonly rejected: number;
  readonly bytesRead: number;
}

/**
 * Where a retried attempt resumes an object version, and the totals up to there. Written only at a point
 * where every valid signal before it has been sent (the sender flushed) and every reject before it is in
 * a completed quarantine object (listed in `rejectsKeys`).
 */
export interface Checkpoint extends FileStats {
  /**
   * `byte`: uncompressed CSV or NDJSON, `position` is the byte offset where the next record starts;
   * `rowGroup`: Parquet, `position` is the index of the next row group;
   * `record`: anything else (a JSON array, any gzip file), `position` records were parsed already and are
   * parsed again and skipped.
   */
  readonly kind: 'byte' | 'rowGroup' | 'record';
  readonly position: number;
  /** Row number of the last record before the checkpoint (0 when none). */
  readonly row: number;
  readonly firstErrors: string[];
  /** Completed rejects objects holding every reject before the checkpoint, in file order. */
  readonly rejectsKeys: string[];
  /** The attempt that wrote it. */
  readonly attempt: number;
  readonly savedAt: string;
}

/**
 * A gzip file inflated once into staged objects (`functions/s3-trigger/staging.ts`), which are then read
 * as the file's uncompressed bytes: object `i` holds bytes `[i × objectBytes, (i + 1) × objectBytes)` of
 * the inflated stream. Recorded on the file's item as each object completes, and on each part's item when
 * the staged copy is split.
 */
export interface Staging {
  /** Staged object `i` is `<prefix><i, six digits>` in {@link Staging.bucket}. */
  readonly prefix: string;
  /**
   * The bucket the staged objects are in: the pipeline's own (QUARANTINE_BUCKET), never a user's bucket the
   * file came from. Absent on items staged before it was recorded, which staged in the file's bucket.
   */
  readonly bucket?: string;
  readonly objectBytes: number;
  /** Staged objects complete so far. */
  readonly objects: number;
  /** Set once the whole stream is staged: its inflated size. */
  readonly size?: number;
  /** What the stream held besides its data (bytes after the last gzip member), each a reject without a row. */
  readonly leftOut?: string[];
  /** The stream failed after `size` bytes: reading the staged copy to its end fails with this, as a read of the file does. */
  readonly failure?: { readonly type: string; readonly reason: string; readonly location: ErrorLocation };
}

export interface LedgerItem extends FileStats {
  readonly pk: string;
  readonly sk: string;
  readonly bucket: string;
  readonly key: string;
  readonly etag: string;
  readonly versionId?: string;
  readonly status: FileStatus;
  readonly attempts: number;
  readonly leaseOwner?: string;
  /** Epoch milliseconds. */
  readonly leaseExpiresAt?: number;
  readonly size?: number;
  readonly durationMs?: number;
  readonly errorType?: string;
  readonly errorMessage?: string;
  readonly firstErrors?: string[];
  /** False once a failure is permanent: the item is never claimed again. */
  readonly retryable?: boolean;
  /** Times an invocation near its timeout handed the file over to a continuation. */
  readonly handOvers?: number;
  /** Of those, the hand-overs that made too little progress to give their attempt back. */
  readonly stalledHandOvers?: number;
  /** Duplicate events seen after SUCCESS. */
  readonly duplicates?: number;
  readonly rejectsKey?: string;
  /** Every rejects object of the file, in order, when there is more than one (see `Checkpoint`). */
  readonly rejectsKeys?: string[];
  /** While PROCESSING, or FAILED and retryable: where the next attempt resumes. */
  readonly checkpoint?: Checkpoint;
  /** The checkpoint the attempt that finished the file started from. */
  readonly resumedFrom?: Checkpoint;
  /** A part's item: its number and what it covers. */
  readonly part?: number;
  readonly range?: PartRange;
  /** A gzip file read from its staged copy (the file's item, and its parts' when split). */
  readonly staging?: Staging;
  /** A split file: how many parts, how many have ended, and how many of those FAILED. */
  readonly parts?: number;
  readonly partsDone?: number;
  readonly partsFailed?: number;
  readonly eventTime?: string;
  /** Each operator retry of the version (`pulse ledger retry`), oldest first: who, when, and how it had ended. */
  readonly retries?: RetryRecord[];
  /** What the ledger's counters hold for this file (shared/ledger-counters.ts): `status|records|rejected|bytesRead`. */
  readonly counted?: string;
  /** What the s3-trigger did with the object once it SUCCEEDED (its route's `afterSuccess`), or its error. */
  readonly afterSuccess?: AfterSuccessRecord;
  readonly createdAt: string;
  readonly updatedAt: string;
  readonly startedAt?: string;
  readonly finishedAt?: string;
}

/**
 * What was done with an object version after it succeeded (its route's `afterSuccess`): tagged, archived to
 * `target` (its key there) or deleted, at `at`; or the `error` that stopped it (the item stays SUCCESS; a
 * redelivery of the event tries again).
 */
export interface AfterSuccessRecord {
  readonly action: 'tag' | 'archive' | 'delete';
  readonly at: string;
  readonly target?: string;
  readonly error?: string;
}

/**
 * An operator's reset of a FAILED version for another run (`pulse ledger retry`): who asked and when, and
 * the ending it replaced (its error, attempts and rejects objects are kept here, the item's own fields
 * cleared for the new run).
 */
export interface RetryRecord {
  readonly by: string;
  readonly at: string;
  readonly previous: {
    readonly status: FileStatus;
    readonly attempts: number;
    readonly errorType?: string;
    readonly errorMessage?: string;
    readonly finishedAt?: string;
    /** The upload's event time (the rerun's latency is not measured from it). */
    readonly eventTime?: string;
    readonly records: number;
    readonly rejected: number;
    readonly rejectsKeys?: string[];
  };
}

/** What a claim found. */
export type ClaimResult =
  | {
      readonly claimed: true;
      readonly attempt: number;
      /** Left by an earlier attempt: resume from it. */
      readonly checkpoint?: Checkpoint;
      /** A file: the number of parts an earlier attempt split it into (their items exist). */
      readonly parts?: number;
      /** A part: what it covers. */
      readonly range?: PartRange;
      /**
       * No attempt is left after this one: a transient failure now ends the item FAILED for good (see
       * {@link Ledger.fail}), so the caller ends it as a permanent failure, with its rejects kept.
       */
      readonly lastAttempt?: true;
      /** When the first event for this version happened (kept from the first claim that knew it). */
      readonly eventTime?: string;
      /** The file (or the file this part is of) is read from its staged copy; staged so far. */
      readonly staging?: Staging;
    }
  | {
      readonly claimed: false;
      /**
       * duplicate: already SUCCESS; in-progress: another worker holds a live lease; failed: FAILED for
       * good (permanent, or out of attempts); skipped: SKIPPED; exhausted: this call ended the item FAILED
       * for good because no attempt is left (a lease expired, or a transient failure left it retryable on
       * its last attempt), so it is reported exactly once; split: the file was split and its parts carry it on.
       */
      readonly reason: 'duplicate' | 'in-progress' | 'failed' | 'skipped' | 'exhausted' | 'split';
      readonly item?: LedgerItem;
    };

export interface LedgerOptions {
  readonly leaseSeconds: number;
  readonly maxAttempts: number;
  /** Injectable clock (epoch ms) for tests. */
  readonly now?: () => number;
  /**
   * Called after each status transition of a file item (not a part), with the item when the write returned
   * it: brings the ledger's counters up to date (shared/ledger-counters.ts). Its failure never fails the
   * transition: the item's next transition settles it.
   */
  readonly settle?: (file: FileRef, item?: LedgerItem) => Promise<unknown>;
  /**
   * The cost meter (shared/usage-meter.ts): the billed units spent on the file since the last call, added
   * to its item (and so, through the settle, to the counters) with its hand-over and final writes.
   */
  readonly usage?: () => StoredUsage | undefined;
}

export interface ClaimMeta {
  readonly versionId?: string;
  readonly size?: number;
  readonly eventTime?: string;
}

export function ledgerKey(file: FileRef): { pk: string; sk: string } {
  return {
    pk: `s3://${file.bucket}/${file.key}`,
    sk: file.part === undefined ? file.etag : partSortKey(file.etag, file.part),
  };
}

/** A part's sort key: after its file's, in part order. */
export function partSortKey(etag: string, part: number): string {
  return `${etag}#part-${String(part).padStart(6, '0')}`;
}

/** The file a part belongs to. */
export function wholeFile(ref: FileRef): FileRef {
  return { bucket: ref.bucket, key: ref.key, etag: ref.etag };
}

/** How a split file ended, from the totals of its parts. */
export interface SplitOutcome {
  readonly status: 'SUCCESS' | 'FAILED';
  readonly stats: CompletedStats;
  readonly parts: number;
  readonly partsFailed: number;
  readonly eventTime?: string;
  /** The staged copy the parts read, to be deleted now. */
  readonly staging?: Staging;
}

/** Totals written when a file finishes. */
export interface CompletedStats extends FileStats {
  readonly durationMs: number;
  readonly firstErrors: string[];
  /** The first rejects object. */
  readonly rejectsKey?: string;
  /** Every rejects object, in order, when checkpoints split the rejects over several. */
  readonly rejectsKeys?: string[];
  /** The checkpoint this attempt resumed from. */
  readonly resumedFrom?: Checkpoint;
}

/** One conditional UpdateItem, as a command or as an item of a transaction. */
export interface ConditionalUpdate {
  readonly TableName: string;
  readonly Key: Record<string, unknown>;
  readonly ConditionExpression: string;
  readonly UpdateExpression: string;
  readonly ExpressionAttributeNames?: Record<string, string>;
  readonly ExpressionAttributeValues?: Record<string, unknown>;
}

export const STATS_SET = 'records = :records, rejected = :rejected, bytesRead = :bytesRead';

/** The SET clauses of a finished item's totals (`:iso` is the caller's), and their values. */
export function completedSet(r: CompletedStats): string {
  return (
    `durationMs = :duration, updatedAt = :iso, finishedAt = :iso, ${STATS_SET}` +
    (r.firstErrors.length ? ', firstErrors = :firstErrors' : '') +
    (r.rejectsKey ? ', rejectsKey = :rejectsKey' : '') +
    (r.rejectsKeys?.length ? ', rejectsKeys = :rejectsKeys' : '') +
    (r.resumedFrom ? ', resumedFrom = :resumedFrom' : '')
  );
}
export function completedValues(r: CompletedStats): Record<string, unknown> {
  return {
    ':duration': r.durationMs,
    ...statsValues(r),
    ...(r.firstErrors.length ? { ':firstErrors': r.firstErrors } : {}),
    ...(r.rejectsKey ? { ':rejectsKey': r.rejectsKey } : {}),
    ...(r.rejectsKeys?.length ? { ':rejectsKeys': r.rejectsKeys } : {}),
    ...(r.resumedFrom ? { ':resumedFrom': r.resumedFrom } : {}),
  };
}

/** The SET clause, names and values that record which object version an item is about. */
export function identity(file: FileRef, meta: ClaimMeta, iso: string) {
  return {
    set:
      '#bucket = :bucket, #key = :key, etag = :etag, createdAt = if_not_exists(createdAt, :iso), updatedAt = :iso' +
      (meta.versionId ? ', versionId = :versionId' : '') +
      (meta.size !== undefined ? ', #size = :size' : ''),
    names: {
      '#status': 'status',
      '#bucket': 'bucket',
      '#key': 'key',
      ...(meta.size !== undefined ? { '#size': 'size' } : {}),
    },
    values: {
      ':bucket': file.bucket,
      ':key': file.key,
      ':etag': file.etag,
      ':iso': iso,
      ...(meta.versionId ? { ':versionId': meta.versionId } : {}),
      ...(meta.size !== undefined ? { ':size': meta.size } : {}),
    },
  };
}
export function statsValues(s: FileStats): Record<string, number> {
  return { ':records': s.records, ':rejected': s.rejected, ':bytesRead': s.bytesRead };
}

/** The error of an item that ran out of attempts: its last error, and how many attempts it had. */
/** The ADD clause (leading space) and values that add `usage` to an item; nothing when there is none. */
export function usageAdd(usage: StoredUsage | undefined): { add: string; values: Record<string, number> } {
  const used = usage ? USAGE_KEYS.filter((k) => usage[k] !== 0) : [];
  if (!usage || used.length === 0) return { add: '', values: {} };
  return {
    add: ` ADD ${used.map((k) => `${USAGE_ATTRS[k]} :${USAGE_ATTRS[k]}`).join(', ')}`,
    values: Object.fromEntries(used.map((k) => [`:${USAGE_ATTRS[k]}`, usage[k]])),
  };
}

export function exhaustedMessage(lastError: string, attempts: number): string {
  return `${lastError} (still failing after ${attempts} attempts: no attempt is left)`;
}
