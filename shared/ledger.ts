import { ConditionalCheckFailedException, TransactionCanceledException } from '@aws-sdk/client-dynamodb';
import {
  type DynamoDBDocumentClient,
  GetCommand,
  QueryCommand,
  TransactWriteCommand,
  UpdateCommand,
} from '@aws-sdk/lib-dynamodb';
import { batchWriteAll } from './dynamo-batch.ts';
import { type ErrorLocation, LeaseLostError, TransientError } from './errors.ts';
import { type RetryPolicy, retrying } from './retry.ts';

/**
 * The file ledger: one DynamoDB item per object version (pk = s3://bucket/key, sk = ETag), moved
 * DISCOVERED → PROCESSING → SUCCESS | FAILED | SKIPPED by conditional writes only.
 *
 * A large file that is split (fan-out) goes PROCESSING → SPLIT: its parts are items of their own
 * (sk = `<etag>#part-000007`), each claimed, checkpointed and finished like a file. A part that ends
 * (SUCCESS, or FAILED for good) counts itself on the file item in the same transaction, and whoever sees
 * the count complete moves the file SPLIT → SUCCESS | FAILED with the totals of its parts.
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
  /** Staged object `i` is `<prefix><i, six digits>` in the file's bucket. */
  readonly prefix: string;
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
   * A split file whose plan is recorded (`parts` set) is claimed after its lease expired even with no
   * attempts left: all that is left to do is announcing the parts it recorded and marking it SPLIT, which
   * reads nothing and may be repeated. Failing it instead would leave parts that may already run, or were
   * never announced, under a FAILED file. The queue's receive count still bounds the tries.
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
            ' OR (#status = :processing AND leaseExpiresAt < :now AND attribute_exists(parts))' +
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
      const parts = out.Attributes?.parts as number | undefined;
      const range = out.Attributes?.range as PartRange | undefined;
      const eventTime = out.Attributes?.eventTime as string | undefined;
      const attempt = Number(out.Attributes?.attempts ?? 1);
      const staging = out.Attributes?.staging as Staging | undefined;
      return {
        claimed: true,
        attempt,
        ...(checkpoint ? { checkpoint } : {}),
        ...(parts !== undefined ? { parts: Number(parts) } : {}),
        ...(range ? { range } : {}),
        ...(attempt >= this.#opts.maxAttempts ? { lastAttempt: true as const } : {}),
        ...(eventTime ? { eventTime } : {}),
        ...(staging ? { staging } : {}),
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
      case 'SPLIT':
        return { claimed: false, reason: 'split', item };
      case 'FAILED':
        if (item.retryable === true && Number(item.attempts) >= this.#opts.maxAttempts) {
          // Retryable, yet no claim can take it (left so by an older version): it ends for good now.
          const ended = await this.#exhaust(file, item);
          return { claimed: false, reason: ended ? 'exhausted' : 'failed', item };
        }
        return { claimed: false, reason: 'failed', item };
      case 'PROCESSING':
        if ((item.leaseExpiresAt ?? 0) < now && item.attempts >= this.#opts.maxAttempts) {
          const ended = await this.#expire(file, item);
          return { claimed: false, reason: ended ? 'exhausted' : 'in-progress', item };
        }
        return { claimed: false, reason: 'in-progress', item };
      default:
        // DISCOVERED between our write and read: another worker will claim it, or a redelivery will.
        return { claimed: false, reason: 'in-progress', item };
    }
  }

  /**
   * A crashed worker's lease expired and no attempts are left: FAILED for good (a part counted on its file).
   * True when this call ended it, false when another caller did (or the item moved on).
   */
  async #expire(file: FileRef, item: LedgerItem): Promise<boolean> {
    const iso = new Date(this.#now()).toISOString();
    try {
      await this.#write(
        file,
        {
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
        },
        { failed: true },
      );
      return true;
    } catch (err) {
      if (!(err instanceof ConditionalCheckFailedException)) throw err;
      return false;
    }
  }

  /**
   * An item left FAILED and retryable with no attempt left, which no claim can take: ends it FAILED for good
   * with its last error (a part counted on its file in the same transaction), and the rejects objects its
   * checkpoint lists. True when this call ended it: concurrent callers race on `retryable = true`, and only
   * one wins.
   */
  async #exhaust(file: FileRef, item: LedgerItem): Promise<boolean> {
    const iso = new Date(this.#now()).toISOString();
    const keys = item.checkpoint?.rejectsKeys ?? [];
    try {
      await this.#write(
        file,
        {
          TableName: this.#table,
          Key: ledgerKey(file),
          ConditionExpression: '#status = :failed AND retryable = :true AND attempts = :attempts',
          UpdateExpression:
            'SET retryable = :false, errorMessage = :msg, updatedAt = :iso' +
            (keys.length ? ', rejectsKey = :rejectsKey' : '') +
            (keys.length > 1 ? ', rejectsKeys = :rejectsKeys' : '') +
            ' REMOVE checkpoint',
          ExpressionAttributeNames: { '#status': 'status' },
          ExpressionAttributeValues: {
            ':failed': 'FAILED',
            ':true': true,
            ':false': false,
            ':attempts': item.attempts,
            ':msg': exhaustedMessage(item.errorMessage ?? item.errorType ?? 'failed', Number(item.attempts)),
            ':iso': iso,
            ...(keys.length ? { ':rejectsKey': keys[0] } : {}),
            ...(keys.length > 1 ? { ':rejectsKeys': keys } : {}),
          },
        },
        { failed: true },
      );
      return true;
    } catch (err) {
      if (!(err instanceof ConditionalCheckFailedException)) throw err;
      return false;
    }
  }

  /**
   * One conditional update; when it ends a part (`endsPart`), in a transaction with the count of ended
   * parts on its file, so that each part is counted exactly once. A failed condition on the item itself
   * throws ConditionalCheckFailedException either way.
   */
  async #write(file: FileRef, update: ConditionalUpdate, endsPart?: { failed: boolean }): Promise<void> {
    if (file.part === undefined || !endsPart) {
      await this.#doc.send(new UpdateCommand(update));
      return;
    }
    const command = new TransactWriteCommand({
      TransactItems: [
        { Update: update },
        {
          Update: {
            TableName: this.#table,
            Key: ledgerKey(wholeFile(file)),
            ConditionExpression: 'attribute_exists(parts)',
            UpdateExpression: `ADD partsDone :one${endsPart.failed ? ', partsFailed :one' : ''}`,
            ExpressionAttributeValues: { ':one': 1 },
          },
        },
      ],
    });
    // Parts ending at the same moment write the same file item: a cancelled transaction applied nothing, so
    // it is tried again; as is one cancelled by throttling.
    await retrying(
      async (attempt) => {
        try {
          await this.#doc.send(command);
        } catch (err) {
          throw this.#partEndError(file, err, attempt);
        }
      },
      { ...PART_END_RETRY, retryable: (err) => err instanceof TransientError },
    );
  }

  /** What a failed transaction ending a part means: the item's own condition, no file item, or a retry. */
  #partEndError(file: FileRef, err: unknown, attempt: number): unknown {
    if (!(err instanceof TransactionCanceledException)) return err;
    const [own, count] = err.CancellationReasons ?? [];
    if (own?.Code === 'ConditionalCheckFailed') {
      return new ConditionalCheckFailedException({
        message: own.Message ?? 'condition failed',
        $metadata: {},
      });
    }
    if (count?.Code === 'ConditionalCheckFailed') {
      return new Error(`part ${file.part} of ${ledgerKey(file).pk}@${file.etag} has no split file item`, {
        cause: err,
      });
    }
    const codes = (err.CancellationReasons ?? []).map((r) => r.Code ?? 'None');
    if (!codes.some((c) => RETRIED_CANCELLATIONS.has(c))) return err;
    return new TransientError(
      `ending part ${file.part} of ${ledgerKey(file).pk}@${file.etag}: transaction cancelled ${attempt} times (${codes.join(', ')})`,
      { cause: err },
    );
  }

  /**
   * Records how the owner split the file: one item per part (DISCOVERED, with its range), then `parts`
   * on the file item. Until `parts` is set no part has been announced, so a plan left half-written by a
   * crashed attempt is simply written again.
   */
  async planParts(
    file: FileRef,
    owner: string,
    ranges: readonly PartRange[],
    meta: ClaimMeta = {},
    staging?: Staging,
  ): Promise<void> {
    const iso = new Date(this.#now()).toISOString();
    const items = ranges.map((range, part) => ({
      ...ledgerKey({ ...wholeFile(file), part }),
      bucket: file.bucket,
      key: file.key,
      etag: file.etag,
      ...(meta.versionId ? { versionId: meta.versionId } : {}),
      status: 'DISCOVERED' as FileStatus,
      part,
      range,
      ...(staging ? { staging } : {}),
      attempts: 0,
      records: 0,
      rejected: 0,
      bytesRead: 0,
      createdAt: iso,
      updatedAt: iso,
    }));
    await batchWriteAll(
      this.#doc,
      this.#table,
      items.map((Item) => ({ PutRequest: { Item } })),
    );
    await this.#ownedUpdate(
      file,
      owner,
      'SET parts = :parts, partsDone = if_not_exists(partsDone, :zero), partsFailed = if_not_exists(partsFailed, :zero), updatedAt = :iso',
      { ':parts': ranges.length, ':zero': 0, ':iso': iso },
    );
  }

  /** PROCESSING → SPLIT once every part is announced: the lease ends, the parts carry the file. Owner only. */
  async markSplit(file: FileRef, owner: string): Promise<void> {
    await this.#ownedUpdate(
      file,
      owner,
      'SET #status = :split, updatedAt = :iso REMOVE leaseOwner, leaseExpiresAt, checkpoint',
      { ':split': 'SPLIT', ':iso': new Date(this.#now()).toISOString() },
    );
  }

  /** The part items of a split file, in part order. */
  async parts(file: FileRef): Promise<LedgerItem[]> {
    const key = ledgerKey(wholeFile(file));
    const items: LedgerItem[] = [];
    let start: Record<string, unknown> | undefined;
    do {
      const out = await this.#doc.send(
        new QueryCommand({
          TableName: this.#table,
          KeyConditionExpression: 'pk = :pk AND begins_with(sk, :prefix)',
          ExpressionAttributeValues: { ':pk': key.pk, ':prefix': `${file.etag}#part-` },
          ConsistentRead: true,
          ExclusiveStartKey: start,
        }),
      );
      items.push(...((out.Items ?? []) as LedgerItem[]));
      start = out.LastEvaluatedKey;
    } while (start);
    return items;
  }

  /**
   * Ends a split file once all its parts have ended: SUCCESS when every part succeeded, else FAILED (for
   * good), with the totals, first errors and rejects objects of its parts in part order. Anyone may call it
   * any number of times; one call ends the file and gets its outcome, the others get undefined.
   */
  async finishSplit(file: FileRef, firstErrorsKept: number): Promise<SplitOutcome | undefined> {
    const whole = wholeFile(file);
    const item = await this.get(whole);
    if (item?.status !== 'SPLIT' || item.parts === undefined) return undefined;
    if (Number(item.partsDone ?? 0) < Number(item.parts)) return undefined;
    const parts = (await this.parts(whole)).filter(
      (p) => p.part !== undefined && p.part < Number(item.parts),
    );
    parts.sort((a, b) => Number(a.part) - Number(b.part));
    const failed = parts.filter((p) => p.status !== 'SUCCESS');
    const rejectsKeys = parts.flatMap((p) => p.rejectsKeys ?? (p.rejectsKey ? [p.rejectsKey] : []));
    const firstErrors = parts.flatMap((p) => p.firstErrors ?? []).slice(0, firstErrorsKept);
    const now = this.#now();
    const started = Date.parse(item.startedAt ?? item.createdAt);
    const stats: CompletedStats = {
      records: parts.reduce((n, p) => n + Number(p.records ?? 0), 0),
      rejected: parts.reduce((n, p) => n + Number(p.rejected ?? 0), 0),
      bytesRead: parts.reduce((n, p) => n + Number(p.bytesRead ?? 0), 0),
      durationMs: Number.isFinite(started) ? Math.max(0, now - started) : 0,
      firstErrors,
      ...(rejectsKeys[0] ? { rejectsKey: rejectsKeys[0] } : {}),
      ...(rejectsKeys.length > 1 ? { rejectsKeys } : {}),
    };
    const status = failed.length > 0 ? 'FAILED' : 'SUCCESS';
    const firstFailure = failed[0];
    const iso = new Date(now).toISOString();
    try {
      await this.#doc.send(
        new UpdateCommand({
          TableName: this.#table,
          Key: ledgerKey(whole),
          ConditionExpression: '#status = :split AND partsDone = :parts',
          UpdateExpression:
            `SET #status = :status, ${completedSet(stats)}` +
            (firstFailure ? ', retryable = :false, errorType = :type, errorMessage = :msg' : ''),
          ExpressionAttributeNames: { '#status': 'status' },
          ExpressionAttributeValues: {
            ':split': 'SPLIT',
            ':parts': Number(item.parts),
            ':status': status,
            ':iso': iso,
            ...completedValues(stats),
            ...(firstFailure
              ? {
                  ':false': false,
                  ':type': firstFailure.errorType ?? 'PartFailed',
                  ':msg': `${failed.length} of ${parts.length} parts failed; part ${firstFailure.part} (rows after ${firstFailure.range?.row ?? '?'}): ${firstFailure.errorMessage ?? firstFailure.status}`,
                }
              : {}),
          },
        }),
      );
    } catch (err) {
      if (err instanceof ConditionalCheckFailedException) return undefined;
      throw err;
    }
    return {
      status,
      stats,
      parts: parts.length,
      partsFailed: failed.length,
      ...(item.eventTime ? { eventTime: item.eventTime } : {}),
      ...(item.staging ? { staging: item.staging } : {}),
    };
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
   * Records staged objects of a gzip file (`staging`: all complete, and, once `size` is set, the whole
   * stream), with a heartbeat: the next attempt resumes staging after the last of them. Lease owner only.
   */
  async stage(file: FileRef, owner: string, stats: FileStats, staging: Staging): Promise<void> {
    const now = this.#now();
    await this.#ownedUpdate(
      file,
      owner,
      `SET leaseExpiresAt = :expires, updatedAt = :iso, ${STATS_SET}, staging = :staging`,
      {
        ':expires': now + this.#opts.leaseSeconds * 1000,
        ':iso': new Date(now).toISOString(),
        ...statsValues(stats),
        ':staging': staging,
      },
    );
  }

  /**
   * Gives the lease up right after a checkpoint, so that a continuation claims the file at once: the lease
   * expires now. When the attempt `progressed`, it is not counted (a long file never runs out of attempts by
   * being long); one that did not (it mostly redid what the attempt before it had done) stays counted, and
   * `stalledHandOvers` counts it, so that a file whose continuations cannot get on runs out of attempts.
   * The item stays PROCESSING with its checkpoint. Lease owner only.
   */
  async handOver(file: FileRef, owner: string, progressed = true): Promise<void> {
    const now = this.#now();
    await this.#ownedUpdate(
      file,
      owner,
      'SET leaseExpiresAt = :expired, updatedAt = :iso, handOvers = if_not_exists(handOvers, :zero) + :one, ' +
        (progressed
          ? 'attempts = attempts - :one'
          : 'stalledHandOvers = if_not_exists(stalledHandOvers, :zero) + :one'),
      { ':expired': now - 1, ':iso': new Date(now).toISOString(), ':one': 1, ':zero': 0 },
    );
  }

  /** PROCESSING → SUCCESS, by the lease owner only. */
  async succeed(file: FileRef, owner: string, result: CompletedStats): Promise<void> {
    await this.#finish(file, owner, 'SUCCESS', result);
  }

  /**
   * PROCESSING → FAILED, by the lease owner only. A retryable failure may be claimed again while
   * attempts are left; a permanent one never is. A retryable failure on the item's last attempt is
   * permanent too: no claim could take the item again, so it would stay FAILED and retryable for ever, a
   * part uncounted on its file. It ends FAILED for good instead, with its error and how many attempts it
   * had (a part counted on its file in the same transaction). Returns how the item ended: `retryable`, or
   * `final`.
   */
  async fail(
    file: FileRef,
    owner: string,
    failure: CompletedStats & { errorType: string; errorMessage: string; retryable: boolean },
  ): Promise<'retryable' | 'final'> {
    let final = failure;
    if (failure.retryable) {
      const attempts = await this.#failRetryable(file, owner, failure);
      if (attempts === undefined) return 'retryable';
      final = {
        ...failure,
        retryable: false,
        errorMessage: exhaustedMessage(failure.errorMessage, attempts),
      };
    }
    await this.#finish(
      file,
      owner,
      'FAILED',
      final,
      'retryable = :retryable, errorType = :type, errorMessage = :msg, ',
      { ':retryable': false, ':type': final.errorType, ':msg': final.errorMessage },
    );
    return 'final';
  }

  /**
   * Records a retryable failure if the item has attempts left; otherwise changes nothing and returns the
   * item's attempts. The checkpoint stays (the next attempt resumes from it); the rejects objects are not
   * recorded (the checkpoint lists them). Throws LeaseLostError when the owner no longer holds the lease.
   */
  async #failRetryable(
    file: FileRef,
    owner: string,
    failure: CompletedStats & { errorType: string; errorMessage: string },
  ): Promise<number | undefined> {
    const iso = new Date(this.#now()).toISOString();
    const stats: CompletedStats = { ...failure, rejectsKey: undefined, rejectsKeys: undefined };
    try {
      await this.#doc.send(
        new UpdateCommand({
          TableName: this.#table,
          Key: ledgerKey(file),
          ConditionExpression: '#status = :processing AND leaseOwner = :owner AND attempts < :max',
          UpdateExpression:
            `SET #status = :failed, retryable = :true, errorType = :type, errorMessage = :msg, ${completedSet(stats)}` +
            ' REMOVE leaseOwner, leaseExpiresAt',
          ExpressionAttributeNames: { '#status': 'status' },
          ExpressionAttributeValues: {
            ':processing': 'PROCESSING',
            ':owner': owner,
            ':max': this.#opts.maxAttempts,
            ':failed': 'FAILED',
            ':true': true,
            ':type': failure.errorType,
            ':msg': failure.errorMessage,
            ':iso': iso,
            ...completedValues(stats),
          },
          ReturnValuesOnConditionCheckFailure: 'ALL_OLD',
        }),
      );
      return undefined;
    } catch (err) {
      if (!(err instanceof ConditionalCheckFailedException)) throw err;
      // The item as it was (DynamoDB's own attribute values): still ours, so out of attempts; else the lease is lost.
      const old = err.Item;
      if (old?.status?.S === 'PROCESSING' && old.leaseOwner?.S === owner && old.attempts?.N !== undefined) {
        return Number(old.attempts.N);
      }
      throw new LeaseLostError(`lease on ${ledgerKey(file).pk}@${file.etag} is no longer held by ${owner}`, {
        cause: err,
      });
    }
  }

  /**
   * Ends the owner's lease with a final status and the file's totals, for good: the checkpoint goes, and a
   * part counts itself on its file in the same transaction.
   */
  async #finish(
    file: FileRef,
    owner: string,
    status: 'SUCCESS' | 'FAILED',
    result: CompletedStats,
    extraSet = '',
    extraValues: Record<string, unknown> = {},
  ): Promise<void> {
    const iso = new Date(this.#now()).toISOString();
    const final = status === 'SUCCESS' ? ':success' : ':failed';
    await this.#ownedUpdate(
      file,
      owner,
      `SET #status = ${final}, ${extraSet}${completedSet(result)} REMOVE leaseOwner, leaseExpiresAt, checkpoint`,
      { [final]: status, ':iso': iso, ...extraValues, ...completedValues(result) },
      { failed: status === 'FAILED' },
    );
  }

  /**
   * Records an object version that will not be ingested (unsupported type, gone before it could be
   * read) as SKIPPED with the reason. Only an absent, DISCOVERED or own PROCESSING item is changed.
   */
  async skip(file: FileRef, reason: string, owner?: string, meta: ClaimMeta = {}): Promise<boolean> {
    if (file.part !== undefined) {
      // A skipped part would never be counted on its file, which would stay SPLIT for ever.
      throw new Error(
        `part ${file.part} of ${ledgerKey(file).pk}@${file.etag} cannot be skipped: it ends SUCCESS or FAILED`,
      );
    }
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
    endsPart?: { failed: boolean },
  ): Promise<void> {
    try {
      await this.#write(
        file,
        {
          TableName: this.#table,
          Key: ledgerKey(file),
          ConditionExpression: '#status = :processing AND leaseOwner = :owner',
          UpdateExpression: update,
          ExpressionAttributeNames: { '#status': 'status' },
          ExpressionAttributeValues: { ':processing': 'PROCESSING', ':owner': owner, ...values },
        },
        endsPart,
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

/** Why a transaction may be cancelled without anything being wrong with it: tried again. */
const RETRIED_CANCELLATIONS = new Set([
  'TransactionConflict',
  'ThrottlingError',
  'ProvisionedThroughputExceeded',
  'RequestLimitExceeded',
]);
/** A transaction ending a part that was cancelled (a concurrent part, throttling): 8 calls, from 50 ms doubling. */
const PART_END_RETRY: RetryPolicy = { attempts: 8, baseMs: 50, jitter: 'equal' };

/** One conditional UpdateItem, as a command or as an item of a transaction. */
interface ConditionalUpdate {
  readonly TableName: string;
  readonly Key: Record<string, unknown>;
  readonly ConditionExpression: string;
  readonly UpdateExpression: string;
  readonly ExpressionAttributeNames?: Record<string, string>;
  readonly ExpressionAttributeValues?: Record<string, unknown>;
}

const STATS_SET = 'records = :records, rejected = :rejected, bytesRead = :bytesRead';

/** The SET clauses of a finished item's totals (`:iso` is the caller's), and their values. */
function completedSet(r: CompletedStats): string {
  return (
    `durationMs = :duration, updatedAt = :iso, finishedAt = :iso, ${STATS_SET}` +
    (r.firstErrors.length ? ', firstErrors = :firstErrors' : '') +
    (r.rejectsKey ? ', rejectsKey = :rejectsKey' : '') +
    (r.rejectsKeys?.length ? ', rejectsKeys = :rejectsKeys' : '') +
    (r.resumedFrom ? ', resumedFrom = :resumedFrom' : '')
  );
}
function completedValues(r: CompletedStats): Record<string, unknown> {
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

/** The error of an item that ran out of attempts: its last error, and how many attempts it had. */
export function exhaustedMessage(lastError: string, attempts: number): string {
  return `${lastError} (still failing after ${attempts} attempts: no attempt is left)`;
}
