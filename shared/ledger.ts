import { ConditionalCheckFailedException } from '@aws-sdk/client-dynamodb';
import { type DynamoDBDocumentClient, GetCommand, UpdateCommand } from '@aws-sdk/lib-dynamodb';
import { LeaseLostError } from './errors.ts';
import {
  type AfterSuccessRecord,
  type Checkpoint,
  type ClaimMeta,
  type ClaimResult,
  type CompletedStats,
  type ConditionalUpdate,
  completedSet,
  completedValues,
  exhaustedMessage,
  type FileRef,
  type FileStats,
  identity,
  type LedgerItem,
  type LedgerOptions,
  ledgerKey,
  type PartRange,
  type SplitOutcome,
  STATS_SET,
  type Staging,
  statsValues,
  usageAdd,
} from './ledger-items.ts';
import { endPart, finishSplit, type LedgerStore, markSplit, partItems, planParts } from './ledger-split.ts';
import { addUsage, type StoredUsage } from './usage-meter.ts';

// The items, keys and update expressions are ledger-items.ts's; re-exported for the ledger's users.
export {
  type AfterSuccessRecord,
  type Checkpoint,
  type ClaimMeta,
  type ClaimResult,
  type CompletedStats,
  exhaustedMessage,
  type FileRef,
  type FileStats,
  type FileStatus,
  type LedgerItem,
  type LedgerOptions,
  ledgerKey,
  type PartRange,
  partSortKey,
  type SplitOutcome,
  type Staging,
  wholeFile,
} from './ledger-items.ts';

/**
 * The file ledger: one DynamoDB item per object version (pk = s3://bucket/key, sk = ETag), moved
 * DISCOVERED → PROCESSING → SUCCESS | FAILED | SKIPPED by conditional writes only.
 *
 * A large file that is split (fan-out) goes PROCESSING → SPLIT: its parts are items of their own
 * (sk = `<etag>#part-000007`), each claimed, checkpointed and finished like a file. A part that ends
 * (SUCCESS, or FAILED for good) counts itself on the file item in the same transaction, and whoever sees
 * the count complete moves the file SPLIT → SUCCESS | FAILED with the totals of its parts: that half is
 * ledger-split.ts's, the items and keys ledger-items.ts's.
 */

export class Ledger {
  readonly #doc: DynamoDBDocumentClient;
  readonly #table: string;
  readonly #opts: LedgerOptions;
  /** What the split-file half (ledger-split.ts) works through. */
  readonly #store: LedgerStore;

  constructor(doc: DynamoDBDocumentClient, table: string, opts: LedgerOptions) {
    this.#doc = doc;
    this.#table = table;
    this.#opts = opts;
    this.#store = {
      doc,
      table,
      now: () => this.#now(),
      ownedUpdate: (file, owner, update, values) => this.#ownedUpdate(file, owner, update, values),
      get: (file) => this.get(file),
    };
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
      await this.#settled(file, out.Attributes as LedgerItem | undefined);
      return claimed(out.Attributes ?? {}, this.#opts.maxAttempts);
    } catch (err) {
      if (!(err instanceof ConditionalCheckFailedException)) throw err;
    }
    return this.#notClaimed(file, now);
  }

  /**
   * Why a claim was refused, from the item as it is now; a FAILED or expired PROCESSING item that no claim
   * can take any more is ended for good here.
   */
  async #notClaimed(file: FileRef, now: number): Promise<ClaimResult> {
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
      await this.#settled(file);
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
      await this.#settled(file);
      return true;
    } catch (err) {
      if (!(err instanceof ConditionalCheckFailedException)) throw err;
      return false;
    }
  }

  /**
   * Records how the owner split the file: one item per part (DISCOVERED, with its range), then `parts`
   * on the file item (ledger-split.ts).
   */
  planParts(
    file: FileRef,
    owner: string,
    ranges: readonly PartRange[],
    meta: ClaimMeta = {},
    staging?: Staging,
  ): Promise<void> {
    return planParts(this.#store, file, owner, ranges, meta, staging);
  }

  /** PROCESSING → SPLIT once every part is announced: the lease ends, the parts carry the file. Owner only. */
  async markSplit(file: FileRef, owner: string): Promise<void> {
    await markSplit(this.#store, file, owner, this.#opts.usage?.());
    await this.#settled(file);
  }

  /** The part items of a split file, in part order. */
  parts(file: FileRef): Promise<LedgerItem[]> {
    return partItems(this.#store, file);
  }

  /**
   * Ends a split file once all its parts have ended (ledger-split.ts): one call ends it and gets its
   * outcome, the others get undefined.
   */
  async finishSplit(file: FileRef, firstErrorsKept: number): Promise<SplitOutcome | undefined> {
    const outcome = await finishSplit(this.#store, file, firstErrorsKept);
    if (outcome !== undefined) await this.#settled(file);
    return outcome;
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
    const usage = usageAdd(this.#opts.usage?.());
    await this.#ownedUpdate(
      file,
      owner,
      'SET leaseExpiresAt = :expired, updatedAt = :iso, handOvers = if_not_exists(handOvers, :zero) + :one, ' +
        (progressed
          ? 'attempts = attempts - :one'
          : 'stalledHandOvers = if_not_exists(stalledHandOvers, :zero) + :one') +
        usage.add,
      { ':expired': now - 1, ':iso': new Date(now).toISOString(), ':one': 1, ':zero': 0, ...usage.values },
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
    // The cost meter's units: taken once, so that a retryable write refused (no attempt left) hands them on.
    const usage = this.#opts.usage?.();
    if (failure.retryable) {
      const attempts = await this.#failRetryable(file, owner, failure, usage);
      if (attempts === undefined) {
        await this.#settled(file);
        return 'retryable';
      }
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
      usage,
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
    taken: StoredUsage | undefined,
  ): Promise<number | undefined> {
    const iso = new Date(this.#now()).toISOString();
    const stats: CompletedStats = { ...failure, rejectsKey: undefined, rejectsKeys: undefined };
    const usage = usageAdd(taken);
    try {
      await this.#doc.send(
        new UpdateCommand({
          TableName: this.#table,
          Key: ledgerKey(file),
          ConditionExpression: '#status = :processing AND leaseOwner = :owner AND attempts < :max',
          UpdateExpression:
            `SET #status = :failed, retryable = :true, errorType = :type, errorMessage = :msg, ${completedSet(stats)}` +
            ' REMOVE leaseOwner, leaseExpiresAt' +
            usage.add,
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
            ...usage.values,
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
    taken?: StoredUsage,
  ): Promise<void> {
    const iso = new Date(this.#now()).toISOString();
    const final = status === 'SUCCESS' ? ':success' : ':failed';
    const usage = usageAdd(addUsage(taken, this.#opts.usage?.()));
    await this.#ownedUpdate(
      file,
      owner,
      `SET #status = ${final}, ${extraSet}${completedSet(result)} REMOVE leaseOwner, leaseExpiresAt, checkpoint${usage.add}`,
      { [final]: status, ':iso': iso, ...extraValues, ...completedValues(result), ...usage.values },
      { failed: status === 'FAILED' },
    );
    await this.#settled(file);
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
      await this.#settled(file);
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

  /**
   * Records on a SUCCESS item what was done with its object after success (or the error); nothing when the
   * item is no longer SUCCESS. A later record replaces an earlier one (a retried error).
   */
  async recordAfterSuccess(file: FileRef, record: AfterSuccessRecord): Promise<void> {
    try {
      await this.#doc.send(
        new UpdateCommand({
          TableName: this.#table,
          Key: ledgerKey(file),
          ConditionExpression: '#status = :success',
          UpdateExpression: 'SET afterSuccess = :record',
          ExpressionAttributeNames: { '#status': 'status' },
          ExpressionAttributeValues: { ':success': 'SUCCESS', ':record': record },
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
      await this.#settled(file);
      return true;
    } catch (err) {
      if (err instanceof ConditionalCheckFailedException) return false;
      throw err;
    }
  }

  /**
   * After a status transition of a file item: the counters are brought up to date (ledger-counters.ts), a
   * failure to do so left to the item's next transition, never failing this one.
   */
  async #settled(file: FileRef, item?: LedgerItem): Promise<void> {
    if (!this.#opts.settle || file.part !== undefined) return;
    try {
      await this.#opts.settle(file, item);
    } catch {
      // The hook reports its own failures; the transition stands.
    }
  }

  async get(file: FileRef): Promise<LedgerItem | undefined> {
    const out = await this.#doc.send(
      new GetCommand({ TableName: this.#table, Key: ledgerKey(file), ConsistentRead: true }),
    );
    return out.Item as LedgerItem | undefined;
  }

  /**
   * One conditional update; when it ends a part (`endsPart`), in a transaction with the count of ended
   * parts on its file (ledger-split.ts), so that each part is counted exactly once.
   */
  async #write(file: FileRef, update: ConditionalUpdate, endsPart?: { failed: boolean }): Promise<void> {
    if (file.part === undefined || !endsPart) await this.#doc.send(new UpdateCommand(update));
    else await endPart(this.#store, file, update, endsPart.failed);
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

/** A claim taken: what the item, as the claim left it, says the attempt resumes from. */
function claimed(attributes: Record<string, unknown>, maxAttempts: number): ClaimResult {
  const checkpoint = attributes.checkpoint as Checkpoint | undefined;
  const parts = attributes.parts as number | undefined;
  const range = attributes.range as PartRange | undefined;
  const eventTime = attributes.eventTime as string | undefined;
  const attempt = Number(attributes.attempts ?? 1);
  const staging = attributes.staging as Staging | undefined;
  return {
    claimed: true,
    attempt,
    ...(checkpoint ? { checkpoint } : {}),
    ...(parts !== undefined ? { parts: Number(parts) } : {}),
    ...(range ? { range } : {}),
    ...(attempt >= maxAttempts ? { lastAttempt: true as const } : {}),
    ...(eventTime ? { eventTime } : {}),
    ...(staging ? { staging } : {}),
  };
}
