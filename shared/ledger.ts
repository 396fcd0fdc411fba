import { ConditionalCheckFailedException } from '@aws-sdk/client-dynamodb';
import { type DynamoDBDocumentClient, GetCommand, UpdateCommand } from '@aws-sdk/lib-dynamodb';
import { LeaseLostError } from './errors.ts';

/**
 * The file ledger: one DynamoDB item per object version (pk = s3://bucket/key, sk = ETag), moved
 * DISCOVERED → PROCESSING → SUCCESS | FAILED | SKIPPED by conditional writes only.
 */

export type FileStatus = 'DISCOVERED' | 'PROCESSING' | 'SUCCESS' | 'FAILED' | 'SKIPPED';

/** One object version. */
export interface FileRef {
  readonly bucket: string;
  readonly key: string;
  readonly etag: string;
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
  /** Duplicate events seen after SUCCESS. */
  readonly duplicates?: number;
  readonly rejectsKey?: string;
  /** Every rejects object of the file, in order, when there is more than one (see `Checkpoint`). */
  readonly rejectsKeys?: string[];
  /** While PROCESSING, or FAILED and retryable: where the next attempt resumes. */
  readonly checkpoint?: Checkpoint;
  /** The checkpoint the attempt that finished the file started from. */
  readonly resumedFrom?: Checkpoint;
  readonly eventTime?: string;
  readonly createdAt: string;
  readonly updatedAt: string;
  readonly startedAt?: string;
  readonly finishedAt?: string;
}

/** What a claim found. */
export type ClaimResult =
  | {
      readonly claimed: true;
      readonly attempt: number;
      /** Left by an earlier attempt: resume from it. */
      readonly checkpoint?: Checkpoint;
    }
  | {
      readonly claimed: false;
      /**
       * duplicate: already SUCCESS; in-progress: another worker holds a live lease; failed: FAILED for
       * good (permanent, or out of attempts); skipped: SKIPPED; exhausted: a lease expired with no
       * attempts left (the item has now been marked FAILED).
       */
      readonly reason: 'duplicate' | 'in-progress' | 'failed' | 'skipped' | 'exhausted';
      readonly item?: LedgerItem;
    };

export interface LedgerOptions {
  readonly leaseSeconds: number;
  readonly maxAttempts: number;
  /** Injectable clock (epoch ms) for tests. */
  readonly now?: () => number;
}

export interface ClaimMeta {
  readonly versionId?: string;
  readonly size?: number;
  readonly eventTime?: string;
}

export function ledgerKey(file: FileRef): { pk: string; sk: string } {
  return { pk: `s3://${file.bucket}/${file.key}`, sk: file.etag };
}

export class Ledger {
  readonly #doc: DynamoDBDocumentClient;
  readonly #table: string;
  readonly #opts: LedgerOptions;

  constructor(doc: DynamoDBDocumentClient, table: string, opts: LedgerOptions) {
    this.#doc = doc;
    this.#table = table;
    this.#opts = opts;
  }

  #now(): number {
    return this.#opts.now?.() ?? Date.now();
  }

  /**
   * Takes the lease on an object version. Succeeds only if no item exists, the item is DISCOVERED,
   * it FAILED transiently with attempts left, or its PROCESSING lease expired with attempts left.
   */
  async claim(file: FileRef, owner: string, meta: ClaimMeta = {}): Promise<ClaimResult> {
    const now = this.#now();
    const id = identity(file, meta, new Date(now).toISOString());
    try {
      const out = await this.#doc.send(
        new UpdateCommand({
          TableName: this.#table,
          Key: ledgerKey(file),
          ConditionExpression:
            'attribute_not_exists(pk) OR #status = :discovered' +
            ' OR (#status = :processing AND leaseExpiresAt < :now AND attempts < :max)' +
            ' OR (#status = :failed AND retryable = :true AND attempts < :max)',
          UpdateExpression:
            `SET #status = :processing, leaseOwner = :owner, leaseExpiresAt = :expires, ${id.set},` +
            ' attempts = if_not_exists(attempts, :zero) + :one, startedAt = :iso,' +
            ' records = :zero, rejected = :zero, bytesRead = :zero' +
            (meta.eventTime ? ', eventTime = if_not_exists(eventTime, :eventTime)' : '') +
            ' REMOVE errorType, errorMessage, firstErrors, finishedAt, durationMs, retryable, resumedFrom',
          ExpressionAttributeNames: id.names,
          ExpressionAttributeValues: {
            ...id.values,
            ':discovered': 'DISCOVERED',
            ':processing': 'PROCESSING',
            ':failed': 'FAILED',
            ':true': true,
            ':now': now,
            ':max': this.#opts.maxAttempts,
            ':owner': owner,
            ':expires': now + this.#opts.leaseSeconds * 1000,
            ':zero': 0,
            ':one': 1,
            ...(meta.eventTime ? { ':eventTime': meta.eventTime } : {}),
          },
          ReturnValues: 'ALL_NEW',
        }),
      );
      const checkpoint = out.Attributes?.checkpoint as Checkpoint | undefined;
      return {
        claimed: true,
        attempt: Number(out.Attributes?.attempts ?? 1),
        ...(checkpoint ? { checkpoint } : {}),
      };
    } catch (err) {
      if (!(err instanceof ConditionalCheckFailedException)) throw err;
    }
    const item = await this.get(file);
    if (!item) return { claimed: false, reason: 'in-progress' };
    switch (item.status) {
      case 'SUCCESS':
        return { claimed: false, reason: 'duplicate', item };
      case 'SKIPPED':
        return { claimed: false, reason: 'skipped', item };
      case 'FAILED':
        return { claimed: false, reason: 'failed', item };
      case 'PROCESSING':
        if ((item.leaseExpiresAt ?? 0) < now && item.attempts >= this.#opts.maxAttempts) {
          await this.#expire(file, item);
          return { claimed: false, reason: 'exhausted', item };
        }
        return { claimed: false, reason: 'in-progress', item };
      default:
        // DISCOVERED between our write and read: another worker will claim it, or a redelivery will.
        return { claimed: false, reason: 'in-progress', item };
    }
  }

  /** A crashed worker's lease expired and no attempts are left: FAILED for good. */
  async #expire(file: FileRef, item: LedgerItem): Promise<void> {
    const iso = new Date(this.#now()).toISOString();
    try {
      await this.#doc.send(
        new UpdateCommand({
          TableName: this.#table,
          Key: ledgerKey(file),
          ConditionExpression: '#status = :processing AND leaseOwner = :owner AND leaseExpiresAt = :expires',
          UpdateExpression:
            'SET #status = :failed, retryable = :false, errorType = :type, errorMessage = :msg,' +
            ' updatedAt = :iso, finishedAt = :iso REMOVE leaseOwner, leaseExpiresAt, checkpoint',
          ExpressionAttributeNames: { '#status': 'status' },
          ExpressionAttributeValues: {
            ':processing': 'PROCESSING',
            ':owner': item.leaseOwner ?? '',
            ':expires': item.leaseExpiresAt ?? 0,
            ':failed': 'FAILED',
            ':false': false,
            ':type': 'LeaseExpiredError',
            ':msg': `processing did not finish in ${item.attempts} attempts (the worker crashed or timed out each time)`,
            ':iso': iso,
          },
        }),
      );
    } catch (err) {
      if (!(err instanceof ConditionalCheckFailedException)) throw err;
    }
  }

  /**
   * Extends the lease and records progress, and a checkpoint when one is given (the caller has made
   * everything before it durable). Throws LeaseLostError if another worker took the lease.
   */
  async heartbeat(file: FileRef, owner: string, stats: FileStats, checkpoint?: Checkpoint): Promise<void> {
    const now = this.#now();
    await this.#ownedUpdate(
      file,
      owner,
      `SET leaseExpiresAt = :expires, updatedAt = :iso, ${STATS_SET}` +
        (checkpoint ? ', checkpoint = :checkpoint' : ''),
      {
        ':expires': now + this.#opts.leaseSeconds * 1000,
        ':iso': new Date(now).toISOString(),
        ...statsValues(stats),
        ...(checkpoint ? { ':checkpoint': checkpoint } : {}),
      },
    );
  }

  /**
   * Gives the lease up right after a checkpoint, so that a continuation claims the file at once: the lease
   * expires now, and this attempt is not counted (it made progress, so a long file never runs out of
   * attempts by being long). The item stays PROCESSING with its checkpoint. Lease owner only.
   */
  async handOver(file: FileRef, owner: string): Promise<void> {
    const now = this.#now();
    await this.#ownedUpdate(
      file,
      owner,
      'SET leaseExpiresAt = :expired, updatedAt = :iso, attempts = attempts - :one, handOvers = if_not_exists(handOvers, :zero) + :one',
      { ':expired': now - 1, ':iso': new Date(now).toISOString(), ':one': 1, ':zero': 0 },
    );
  }

  /** PROCESSING → SUCCESS, by the lease owner only. */
  async succeed(file: FileRef, owner: string, result: CompletedStats): Promise<void> {
    await this.#finish(file, owner, 'SUCCESS', result, false);
  }

  /**
   * PROCESSING → FAILED, by the lease owner only. A retryable failure may be claimed again while
   * attempts are left; a permanent one never is.
   */
  async fail(
    file: FileRef,
    owner: string,
    failure: CompletedStats & { errorType: string; errorMessage: string; retryable: boolean },
  ): Promise<void> {
    await this.#finish(
      file,
      owner,
      'FAILED',
      failure,
      failure.retryable,
      'retryable = :retryable, errorType = :type, errorMessage = :msg, ',
      {
        ':retryable': failure.retryable,
        ':type': failure.errorType,
        ':msg': failure.errorMessage,
      },
    );
  }

  /**
   * Ends the owner's lease with a final status and the file's totals. The checkpoint stays only for a
   * retryable failure: the next attempt resumes from it.
   */
  async #finish(
    file: FileRef,
    owner: string,
    status: 'SUCCESS' | 'FAILED',
    result: CompletedStats,
    keepCheckpoint: boolean,
    extraSet = '',
    extraValues: Record<string, unknown> = {},
  ): Promise<void> {
    const iso = new Date(this.#now()).toISOString();
    const final = status === 'SUCCESS' ? ':success' : ':failed';
    await this.#ownedUpdate(
      file,
      owner,
      `SET #status = ${final}, ${extraSet}durationMs = :duration, updatedAt = :iso, finishedAt = :iso, ${STATS_SET}` +
        (result.firstErrors.length ? ', firstErrors = :firstErrors' : '') +
        (result.rejectsKey ? ', rejectsKey = :rejectsKey' : '') +
        (result.rejectsKeys?.length ? ', rejectsKeys = :rejectsKeys' : '') +
        (result.resumedFrom ? ', resumedFrom = :resumedFrom' : '') +
        ' REMOVE leaseOwner, leaseExpiresAt' +
        (keepCheckpoint ? '' : ', checkpoint'),
      {
        [final]: status,
        ':duration': result.durationMs,
        ':iso': iso,
        ...extraValues,
        ...statsValues(result),
        ...(result.firstErrors.length ? { ':firstErrors': result.firstErrors } : {}),
        ...(result.rejectsKey ? { ':rejectsKey': result.rejectsKey } : {}),
        ...(result.rejectsKeys?.length ? { ':rejectsKeys': result.rejectsKeys } : {}),
        ...(result.resumedFrom ? { ':resumedFrom': result.resumedFrom } : {}),
      },
    );
  }

  /**
   * Records an object version that will not be ingested (unsupported type, gone before it could be
   * read) as SKIPPED with the reason. Only an absent, DISCOVERED or own PROCESSING item is changed.
   */
  async skip(file: FileRef, reason: string, owner?: string, meta: ClaimMeta = {}): Promise<boolean> {
    const id = identity(file, meta, new Date(this.#now()).toISOString());
    try {
      await this.#doc.send(
        new UpdateCommand({
          TableName: this.#table,
          Key: ledgerKey(file),
          ConditionExpression:
            'attribute_not_exists(pk) OR #status = :discovered OR (#status = :processing AND leaseOwner = :owner)',
          UpdateExpression:
            `SET #status = :skipped, ${id.set}, errorType = :type, errorMessage = :msg,` +
            ' attempts = if_not_exists(attempts, :zero), records = :zero, rejected = :zero,' +
            ' bytesRead = if_not_exists(bytesRead, :zero), finishedAt = :iso REMOVE leaseOwner, leaseExpiresAt, checkpoint',
          ExpressionAttributeNames: id.names,
          ExpressionAttributeValues: {
            ...id.values,
            ':discovered': 'DISCOVERED',
            ':processing': 'PROCESSING',
            ':owner': owner ?? '',
            ':skipped': 'SKIPPED',
            ':type': 'Skipped',
            ':msg': reason,
            ':zero': 0,
          },
        }),
      );
      return true;
    } catch (err) {
      if (err instanceof ConditionalCheckFailedException) return false;
      throw err;
    }
  }

  /** Counts a duplicate event for a version already ingested. */
  async recordDuplicate(file: FileRef): Promise<void> {
    const iso = new Date(this.#now()).toISOString();
    try {
      await this.#doc.send(
        new UpdateCommand({
          TableName: this.#table,
          Key: ledgerKey(file),
          ConditionExpression: '#status = :success',
          UpdateExpression: 'ADD duplicates :one SET lastDuplicateAt = :iso',
          ExpressionAttributeNames: { '#status': 'status' },
          ExpressionAttributeValues: { ':success': 'SUCCESS', ':one': 1, ':iso': iso },
        }),
      );
    } catch (err) {
      if (!(err instanceof ConditionalCheckFailedException)) throw err;
    }
  }

  /** Registers a version as DISCOVERED (backfill) unless the ledger already knows it. */
  async discover(file: FileRef, meta: ClaimMeta = {}): Promise<boolean> {
    const id = identity(file, meta, new Date(this.#now()).toISOString());
    try {
      await this.#doc.send(
        new UpdateCommand({
          TableName: this.#table,
          Key: ledgerKey(file),
          ConditionExpression: 'attribute_not_exists(pk)',
          UpdateExpression: `SET #status = :discovered, ${id.set}, attempts = :zero, records = :zero, rejected = :zero, bytesRead = :zero`,
          ExpressionAttributeNames: id.names,
          ExpressionAttributeValues: { ...id.values, ':discovered': 'DISCOVERED', ':zero': 0 },
        }),
      );
      return true;
    } catch (err) {
      if (err instanceof ConditionalCheckFailedException) return false;
      throw err;
    }
  }

  async get(file: FileRef): Promise<LedgerItem | undefined> {
    const out = await this.#doc.send(
      new GetCommand({ TableName: this.#table, Key: ledgerKey(file), ConsistentRead: true }),
    );
    return out.Item as LedgerItem | undefined;
  }

  async #ownedUpdate(
    file: FileRef,
    owner: string,
    update: string,
    values: Record<string, unknown>,
  ): Promise<void> {
    try {
      await this.#doc.send(
        new UpdateCommand({
          TableName: this.#table,
          Key: ledgerKey(file),
          ConditionExpression: '#status = :processing AND leaseOwner = :owner',
          UpdateExpression: update,
          ExpressionAttributeNames: { '#status': 'status' },
          ExpressionAttributeValues: { ':processing': 'PROCESSING', ':owner': owner, ...values },
        }),
      );
    } catch (err) {
      if (err instanceof ConditionalCheckFailedException) {
        throw new LeaseLostError(
          `lease on ${ledgerKey(file).pk}@${file.etag} is no longer held by ${owner}`,
          {
            cause: err,
          },
        );
      }
      throw err;
    }
  }
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

const STATS_SET = 'records = :records, rejected = :rejected, bytesRead = :bytesRead';

/** The SET clause, names and values that record which object version an item is about. */
function identity(file: FileRef, meta: ClaimMeta, iso: string) {
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
function statsValues(s: FileStats): Record<string, number> {
  return { ':records': s.records, ':rejected': s.rejected, ':bytesRead': s.bytesRead };
}
