import { PutCommand, TransactWriteCommand } from '@aws-sdk/lib-dynamodb';
import { METRIC } from '#shared/contract.ts';
import { PermanentError, TransientError } from '#shared/errors.ts';
import { MetricUnit } from '#shared/observability.ts';
import { backoffDelay } from '#shared/retry.ts';
import { settings } from '#shared/settings.ts';
import { newToken } from './blocks.ts';
import { itemSize } from './item-size.ts';
import { streamKey } from './keys.ts';
import { type Group, type ItemSizes, planGroups, type SeriesWork, type Work } from './plan.ts';
import { encodeRecords, ScoreStore } from './score-store.ts';
import type { ScorerDeps, ScorerLimits } from './scorer.ts';
import { readItems, type StoredId, type StoredSeries, toStoredId, toStoredSeries } from './state.ts';
import {
  type BlockState,
  type Built,
  buildTransaction,
  classifyFailure,
  EMPTY_BLOCK,
  type Failure,
  idItem,
  seriesItem,
  toBlockState,
} from './transaction.ts';

/** What applying a batch's signals came to. */
export interface Applied {
  scored: number;
  duplicates: number;
  anomalies: number;
  conflicts: number;
  transactions: number;
  recovered: number;
  /** Sum over scored signals of (scored at − signal timestamp), ms. */
  latencySum: number;
  readonly committed: Set<Work>;
  /** Signals not committed (or whose scores could not be written), with why. */
  readonly failed: Map<Work, unknown>;
  /** Records whose own id was already applied from another origin ref. */
  readonly collisions: { work: Work; scoredFrom: string }[];
}

/** One attempt of a group's transaction: built, its pending score object written under its token. */
interface Attempt {
  readonly built: Built;
  readonly token: string;
  readonly body: Buffer;
}

/**
 * What follows an attempt that failed: groups to run instead of it (none: it is settled, committed or
 * failed), or the group to try again (after a backoff when the attempt conflicted).
 */
type AfterFailure = { readonly instead: Group[] } | { readonly retry: Group; readonly conflicted: boolean };

/** Attempts of one transaction when nothing bounds the time (tests, tools). */
const MAX_ATTEMPTS_WITHOUT_DEADLINE = 100;
/** Settlements (GETs of pending objects) in flight at once. */
const SETTLE_PARALLELISM = 8;

/**
 * Applies a batch's signals: reads what they need (series, blocks, id items), drops what is applied
 * already (collecting the tokens to settle) and what collides, plans the transactions, and runs them one
 * after another, each with the pending → commit → promote protocol of {@link ScoreStore}. The state it
 * holds is what DynamoDB held when read, moved on by each commit (so a later transaction of the batch
 * needs no second read), and read again after a failed attempt.
 */
export class Applier {
  readonly #deps: ScorerDeps;
  readonly #limits: ScorerLimits;
  readonly #store: ScoreStore;
  readonly #now: () => number;
  readonly #sleep: (ms: number) => Promise<void>;
  readonly #series = new Map<string, StoredSeries | undefined>();
  readonly #blocks = new Map<string, BlockState>();
  readonly #ids = new Map<string, StoredId | undefined>();
  /** Tokens found on applied positions and ids, with the signals whose messages wait on them. */
  readonly #toSettle = new Map<string, Set<Work>>();
  readonly #streamsWritten = new Set<string>();
  readonly #out: Applied = {
    scored: 0,
    duplicates: 0,
    anomalies: 0,
    conflicts: 0,
    transactions: 0,
    recovered: 0,
    latencySum: 0,
    committed: new Set(),
    failed: new Map(),
    collisions: [],
  };

  constructor(deps: ScorerDeps, limits: ScorerLimits) {
    this.#deps = deps;
    this.#limits = limits;
    this.#now = deps.now ?? Date.now;
    this.#sleep = deps.sleep ?? ((ms: number) => new Promise((r) => setTimeout(r, ms)));
    this.#store = new ScoreStore(deps.s3, deps.doc, deps.config, this.#sleep);
  }

  /** Throws only when the batch's state could not be read at all. */
  async apply(all: readonly SeriesWork[]): Promise<Applied> {
    await this.#read(all.flatMap((s) => s.signals));
    const pending = all.map((s) => ({ series: s.series, signals: this.#unapplied(s.signals) }));
    const groups = planGroups(pending, this.#limits, this.#sizes(all));
    while (groups.length > 0) {
      const group = groups.shift() as Group;
      if (this.#outOfTime()) {
        const err = new TransientError('the invocation ran short of time before this transaction');
        this.#deps.metrics.addMetric(METRIC.scorerDeadlineStops, MetricUnit.Count, 1);
        for (const g of [group, ...groups.splice(0)]) this.#fail(g, err);
        break;
      }
      groups.unshift(...(await this.#run(group)));
    }
    await this.#settleAll();
    return this.#out;
  }

  /**
   * Runs one group's transaction until it commits or cannot. Returns groups to run next in its place (its
   * halves, when a transaction of several series failed in a way that one of them may cause).
   */
  async #run(initial: Group): Promise<Group[]> {
    let group = initial;
    let conflicts = 0;
    for (let attempt = 1; ; attempt++) {
      if (group.series.every((s) => s.signals.length === 0)) return [];
      if (this.#outOfTime() || (!this.#deps.remainingMs && attempt > MAX_ATTEMPTS_WITHOUT_DEADLINE)) {
        this.#deps.metrics.addMetric(METRIC.scorerDeadlineStops, MetricUnit.Count, 1);
        this.#fail(group, new TransientError(`transaction still conflicting after ${conflicts} conflicts`));
        return [];
      }
      const tx = await this.#prepare(group);
      if (tx === undefined) return [];
      try {
        await this.#deps.doc.send(new TransactWriteCommand(tx.built.input));
        this.#commit(group, tx.built);
        await this.#promote(group, tx.token, tx.body, tx.built);
        return [];
      } catch (err) {
        const next = await this.#afterFailure(group, tx, err);
        if ('instead' in next) return next.instead;
        group = next.retry;
        if (next.conflicted) {
          conflicts++;
          this.#out.conflicts++;
          await this.#backoff(conflicts);
        }
      }
    }
  }

  /**
   * Builds one attempt of a group's transaction and writes its pending score object (after pruning the
   * tokens its blocks carry and writing its stream positions); undefined when that failed (the group
   * failed with it).
   */
  async #prepare(group: Group): Promise<Attempt | undefined> {
    try {
      await this.#pruneTokens(group);
      await this.#writeStreams(group);
      const token = newToken(this.#now());
      const built = buildTransaction(group, this.#series, this.#blocks, {
        table: this.#deps.config.scoresTable,
        token,
        now: this.#now(),
        model: this.#deps.model,
        totalsShard: Math.floor(Math.random() * settings.scoring.totalsShards),
      });
      const body = encodeRecords(built.records);
      await this.#store.putPending(token, body);
      return { built, token, body };
    } catch (err) {
      this.#fail(group, err);
      return undefined;
    }
  }

  /** After an attempt that did not commit as far as it knows: what to run instead, or what to try again. */
  async #afterFailure(group: Group, tx: Attempt, err: unknown): Promise<AfterFailure> {
    const failure = classifyFailure(err);
    if (failure.kind === 'invalid') return this.#refused(group, tx, failure, err);
    // Did it commit after all (a response lost, then retried by the SDK)? The items record the token.
    let committed: boolean;
    try {
      committed = await this.#reread(group, tx.token);
    } catch (readErr) {
      this.#fail(group, readErr);
      return { instead: [] };
    }
    if (committed) {
      this.#count(group, tx.built);
      await this.#promote(group, tx.token, tx.body, tx.built);
      return { instead: [] };
    }
    // Cancelled: it wrote nothing and never will, so its pending object goes (best effort: an
    // orphan is removed by the bucket's lifecycle rule). Anything else may still commit: it stays.
    if (failure.kind === 'conflict') await this.#store.deletePending(tx.token).catch(() => undefined);
    const left: Group = {
      series: group.series.map((s) => ({ series: s.series, signals: this.#unapplied(s.signals) })),
    };
    if (failure.kind === 'conflict') return { retry: left, conflicted: true };
    const live = left.series.filter((s) => s.signals.length > 0);
    if (live.length > 1) {
      // One of them may be what fails (a poison series): each half on its own.
      const half = Math.ceil(live.length / 2);
      return { instead: [{ series: live.slice(0, half) }, { series: live.slice(half) }] };
    }
    this.#deps.logger.warn('Transaction failed; its messages will be delivered again', {
      series: live[0]?.series,
      error: (err as Error).message,
    });
    this.#fail(left, err);
    return { instead: [] };
  }

  /**
   * DynamoDB refused an item of the transaction (not a conflict: it would again). The series it belongs
   * to fails; the others are tried again without it. An item shared by several series fails the group.
   */
  async #refused(
    group: Group,
    tx: Attempt,
    failure: Extract<Failure, { kind: 'invalid' }>,
    err: unknown,
  ): Promise<AfterFailure> {
    const refused = tx.built.itemSeries[failure.index];
    const why = new PermanentError(`DynamoDB refused the write: ${failure.message}`, { cause: err });
    await this.#store.deletePending(tx.token).catch(() => undefined);
    if (refused === null || refused === undefined) {
      this.#fail(group, why);
      return { instead: [] };
    }
    this.#deps.logger.warn('Series refused by DynamoDB; its messages will be delivered again', {
      series: refused,
      error: failure.message,
    });
    this.#fail({ series: group.series.filter((s) => s.series === refused) }, why);
    return { retry: { series: group.series.filter((s) => s.series !== refused) }, conflicted: false };
  }

  /** After a commit: the state moves on to what the transaction wrote. */
  #commit(group: Group, built: Built): void {
    for (const [key, next] of built.next.series) this.#series.set(key, next);
    for (const [key, next] of built.next.blocks) this.#blocks.set(key, next);
    for (const [key, next] of built.next.ids) this.#ids.set(key, next);
    this.#count(group, built);
  }

  #count(group: Group, built: Built): void {
    this.#out.transactions++;
    this.#out.scored += built.counts.scored;
    this.#out.anomalies += built.counts.anomalies;
    const now = this.#now();
    for (const s of group.series) {
      for (const w of s.signals) {
        this.#out.committed.add(w);
        this.#out.latencySum += Math.max(0, now - Date.parse(w.signal.timestamp));
      }
    }
  }

  /** Anomalies, final object, pending deleted. A failure gives the messages back: their redelivery recovers it. */
  async #promote(group: Group, token: string, body: Buffer, built: Built): Promise<void> {
    try {
      await this.#store.promote(token, body, built.records);
    } catch (err) {
      this.#deps.logger.warn('Committed scores could not be written yet; the messages will recover them', {
        token,
        error: (err as Error).message,
      });
      this.#fail(group, err);
    }
  }

  /**
   * Reads the group's items again (after a failed attempt); true when they hold `token`, i.e. the attempt
   * committed after all.
   */
  async #reread(group: Group, token: string): Promise<boolean> {
    const works = group.series.flatMap((s) => s.signals);
    for (const s of group.series) this.#series.delete(s.series);
    for (const w of works) {
      if (w.key.type === 'position') this.#blocks.delete(w.key.blockKey);
      else this.#ids.delete(w.key.key);
    }
    await this.#read(
      works,
      group.series.map((s) => s.series),
    );
    for (const w of works) {
      if (w.key.type === 'position' && this.#blocks.get(w.key.blockKey)?.tokens.includes(token)) return true;
      if (w.key.type === 'id' && this.#ids.get(w.key.key)?.token === token) return true;
    }
    return false;
  }

  /** Reads the items `works` need that are not known yet (and the series named). */
  async #read(works: readonly Work[], series: readonly string[] = []): Promise<void> {
    const keys = new Set<string>();
    for (const s of series) if (!this.#series.has(s)) keys.add(s);
    for (const w of works) {
      if (!this.#series.has(w.series)) keys.add(w.series);
      if (w.key.type === 'position') {
        if (!this.#blocks.has(w.key.blockKey)) keys.add(w.key.blockKey);
      } else if (!this.#ids.has(w.key.key)) keys.add(w.key.key);
    }
    if (keys.size === 0) return;
    const items = await readItems(this.#deps.doc, this.#deps.config.scoresTable, keys, this.#sleep);
    for (const w of works) {
      if (!this.#series.has(w.series)) this.#series.set(w.series, toStoredSeries(items.get(w.series)));
      if (w.key.type === 'position') {
        if (!this.#blocks.has(w.key.blockKey))
          this.#blocks.set(w.key.blockKey, toBlockState(items.get(w.key.blockKey)));
      } else if (!this.#ids.has(w.key.key)) this.#ids.set(w.key.key, toStoredId(items.get(w.key.key)));
    }
    for (const s of series) if (!this.#series.has(s)) this.#series.set(s, toStoredSeries(items.get(s)));
  }

  /** The signals not applied yet; the others are counted as duplicates or collisions. */
  #unapplied(works: readonly Work[]): Work[] {
    return works.filter((w) => {
      if (this.#out.failed.has(w)) return false;
      if (w.key.type === 'position') {
        const block = this.#blocks.get(w.key.blockKey) ?? EMPTY_BLOCK;
        if (!block.bits.has(w.key.bit)) return true;
        this.#duplicate(w, block.tokens);
        return false;
      }
      const stored = this.#ids.get(w.key.key);
      if (!stored) return true;
      if (stored.ref === w.signal.origin.ref) this.#duplicate(w, stored.token ? [stored.token] : []);
      else this.#out.collisions.push({ work: w, scoredFrom: stored.ref });
      return false;
    });
  }

  #duplicate(w: Work, tokens: readonly string[]): void {
    this.#out.duplicates++;
    for (const t of tokens) {
      const waiting = this.#toSettle.get(t) ?? new Set();
      waiting.add(w);
      this.#toSettle.set(t, waiting);
    }
  }

  /**
   * A block keeps at most `maxBlockTokens` tokens: before a transaction would add one more, its oldest
   * are settled (their pending objects promoted if still there) and dropped, which is safe since a settled
   * token's pending object can never come back.
   */
  async #pruneTokens(group: Group): Promise<void> {
    const max = this.#limits.maxBlockTokens;
    const keys = new Set<string>();
    for (const s of group.series)
      for (const w of s.signals) if (w.key.type === 'position') keys.add(w.key.blockKey);
    for (const key of keys) {
      const block = this.#blocks.get(key);
      if (!block || block.tokens.length < max) continue;
      const drop = block.tokens.slice(0, block.tokens.length - max + 1);
      const promoted = await Promise.all(drop.map((t) => this.#store.settle(t)));
      this.#out.recovered += promoted.filter(Boolean).length;
      this.#blocks.set(key, { ...block, tokens: block.tokens.slice(drop.length) });
    }
  }

  /** A stream's full ref, once, beside its first block (its items are keyed by a hash of it). */
  async #writeStreams(group: Group): Promise<void> {
    for (const s of group.series) {
      for (const w of s.signals) {
        if (w.key.type !== 'position' || this.#streamsWritten.has(w.key.streamId)) continue;
        if (this.#blocks.get(w.key.blockKey)?.exists) continue;
        await this.#deps.doc.send(
          new PutCommand({
            TableName: this.#deps.config.scoresTable,
            Item: {
              pk: streamKey(w.key.streamId),
              kind: 'stream',
              ref: w.key.stream,
              origin: w.signal.origin.kind,
            },
          }),
        );
        this.#streamsWritten.add(w.key.streamId);
      }
    }
  }

  async #settleAll(): Promise<void> {
    const tokens = [...this.#toSettle.keys()];
    const worker = async () => {
      for (let t = tokens.shift(); t !== undefined; t = tokens.shift()) {
        const token = t;
        try {
          if (await this.#store.settle(token)) {
            this.#out.recovered++;
            this.#deps.logger.warn(
              'Recovered the scores of a transaction whose scorer died after committing',
              {
                token,
              },
            );
          }
        } catch (err) {
          for (const w of this.#toSettle.get(token) ?? [])
            if (!this.#out.failed.has(w)) this.#out.failed.set(w, err);
        }
      }
    };
    await Promise.all(Array.from({ length: Math.min(SETTLE_PARALLELISM, tokens.length) }, worker));
  }

  #fail(group: Group, err: unknown): void {
    for (const s of group.series)
      for (const w of s.signals) if (!this.#out.failed.has(w)) this.#out.failed.set(w, err);
  }

  #outOfTime(): boolean {
    const left = this.#deps.remainingMs?.();
    return left !== undefined && left < this.#limits.deadlineMarginMs;
  }

  /** Jittered exponential backoff, within the time left. */
  async #backoff(conflicts: number): Promise<void> {
    const { conflictBaseDelayMs: base, conflictMaxDelayMs: max } = settings.scoring;
    let delay = backoffDelay(conflicts, { baseMs: base, maxMs: max, jitter: 'full' });
    const left = this.#deps.remainingMs?.();
    if (left !== undefined) delay = Math.max(0, Math.min(delay, left - this.#limits.deadlineMarginMs));
    await this.#sleep(delay);
  }

  /**
   * Sizes the planner counts per item, each at its largest (numbers of 17 digits, a full block), so that a
   * transaction never outgrows DynamoDB's 4 MB.
   */
  #sizes(all: readonly SeriesWork[]): ItemSizes {
    const now = new Date(this.#now()).toISOString();
    const first = new Map(all.map((s) => [s.series, s.signals[0] as Work]));
    const big = Math.PI * 1e10;
    return {
      series: (key) => {
        const next = { count: big, mean: big, m2: big, anomalies: big, version: big };
        const w = first.get(key);
        return w ? itemSize(seriesItem(key, w, next, now)) : 4096;
      },
      block: () => MAX_BLOCK_BYTES,
      id: (w) => itemSize(idItem(w, newToken(0))),
    };
  }
}

/** A block item at its largest: the settings keep it within one write unit (test/unit/scorer/blocks.test.ts). */
const MAX_BLOCK_BYTES = 1024;
