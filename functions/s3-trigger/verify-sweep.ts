import type { S3Client } from '@aws-sdk/client-s3';
import { type DynamoDBDocumentClient, GetCommand, QueryCommand, UpdateCommand } from '@aws-sdk/lib-dynamodb';
import type { VerifySweepConfig } from '#shared/config.ts';
import { METRIC } from '#shared/contract.ts';
import type { LedgerItem } from '#shared/ledger.ts';
import { type Logger, type Metrics, MetricUnit } from '#shared/observability.ts';
import { storeReceipts } from '#shared/receipt-store.ts';
import { type Receipt, receiptsOf } from '#shared/receipts.ts';
import { settings } from '#shared/settings.ts';

/**
 * The verify half of the ledger sweep: on each run, the receipts (shared/receipts.ts) of the files that
 * reached SUCCESS since the last run, stored on their ledger items (shared/receipt-store.ts), and two
 * metrics: FilesVerified and ReceiptMismatches (the alarm).
 *
 * Which files: the status index (partition `status`, sort `updatedAt`) read for SUCCESS between the cursor
 * (the last file verified, kept on the ledger item `settings.receipts.cursorKey`) and `settleSeconds` ago
 * (a file's last signals may still be on the signals queue when it ends), oldest first, at most
 * `maxFilesPerRun`. Only those items are read, never the ledger in full; the cursor moves after each batch,
 * so a run stopped by its timeout, or one that found more than it may verify, resumes where it stopped.
 */

export interface VerifySweepDeps {
  readonly doc: DynamoDBDocumentClient;
  readonly s3: S3Client;
  readonly logger: Logger;
  readonly metrics: Metrics;
  readonly config: VerifySweepConfig;
  readonly now?: () => number;
  /** The invocation's time left (Lambda's `getRemainingTimeInMillis`); unbounded without it. */
  readonly remainingMs?: () => number;
}

/** Where the sweep stopped: the last file verified, in the index's order (updatedAt, then pk, sk). */
export interface VerifyCursor {
  readonly updatedAt: string;
  readonly pk: string;
  readonly sk: string;
}

export interface VerifySweepResult {
  /** Files whose receipts were counted this run. */
  readonly verified: number;
  /** Of those, the ones that do not balance. */
  readonly mismatches: number;
  /** The first of them: object and missing count. */
  readonly mismatched: readonly { readonly object: string; readonly missing: number }[];
  /** More files are due than this run verified (maxFilesPerRun, or the time left): the next run goes on. */
  readonly behind: boolean;
  readonly cursor?: VerifyCursor;
}

const BY = 'ledger-sweep';

/** One run of the verify half: see above. */
export async function verifyRecentFiles(deps: VerifySweepDeps): Promise<VerifySweepResult> {
  const { config, logger, metrics } = deps;
  const now = (deps.now ?? Date.now)();
  const start = await readCursor(deps);
  const from = start?.updatedAt ?? new Date(now - config.firstLookbackHours * 3_600_000).toISOString();
  const until = new Date(now - config.settleSeconds * 1000).toISOString();
  const { files, more } = await dueFiles(deps, from, until, start);

  let cursor = start;
  const mismatched: Receipt[] = [];
  let verified = 0;
  let stoppedEarly = false;
  for (let i = 0; i < files.length; i += config.filesPerBatch) {
    if (deps.remainingMs && deps.remainingMs() < config.stopBeforeTimeoutSeconds * 1000) {
      stoppedEarly = true;
      break;
    }
    const batch = files.slice(i, i + config.filesPerBatch);
    const items = [...batch, ...(await partsOf(deps, batch))];
    const at = new Date((deps.now ?? Date.now)());
    const receipts = await receiptsOf(
      {
        clients: { s3: deps.s3, doc: deps.doc },
        bucket: config.bucket,
        scoresBucket: config.scoresBucket,
        scoresTable: config.scoresTable,
      },
      items,
      at,
    );
    await storeReceipts(deps.doc, config.ledgerTable, config.bucket, items, receipts, at, BY);
    verified += receipts.length;
    mismatched.push(...receipts.filter((r) => r.verdict === 'mismatch'));
    const last = batch[batch.length - 1] as LedgerItem;
    cursor = { updatedAt: last.updatedAt, pk: last.pk, sk: last.sk };
    await writeCursor(deps, cursor);
  }

  metrics.addMetric(METRIC.filesVerified, MetricUnit.Count, verified);
  metrics.addMetric(METRIC.receiptMismatches, MetricUnit.Count, mismatched.length);
  const sample = mismatched.slice(0, settings.sweep.samplesLogged).map((r) => ({
    object: r.object,
    read: r.read,
    missing: r.missing,
    missingRows: r.missingRows.slice(0, 10),
  }));
  if (mismatched.length > 0) {
    logger.error('Receipts that do not balance: records read that are found nowhere (see pulse verify KEY)', {
      mismatches: mismatched.length,
      sample,
    });
  }
  const behind = more || stoppedEarly;
  logger.info('Receipts verified', { verified, mismatches: mismatched.length, behind, cursor });
  return {
    verified,
    mismatches: mismatched.length,
    mismatched: sample.map(({ object, missing }) => ({ object, missing })),
    behind,
    ...(cursor ? { cursor } : {}),
  };
}

/** (updatedAt, pk, sk) order: the cursor's. */
function after(item: LedgerItem, cursor: VerifyCursor | undefined): boolean {
  if (!cursor) return true;
  if (item.updatedAt !== cursor.updatedAt) return item.updatedAt > cursor.updatedAt;
  if (item.pk !== cursor.pk) return item.pk > cursor.pk;
  return item.sk > cursor.sk;
}

const byCursorOrder = (a: LedgerItem, b: LedgerItem) =>
  a.updatedAt.localeCompare(b.updatedAt) || a.pk.localeCompare(b.pk) || a.sk.localeCompare(b.sk);

/**
 * The SUCCESS files of the status index with updatedAt in [from, until] and after the cursor, oldest first,
 * at most maxFilesPerRun; `more` when the index holds more. Items of the cursor's own time are read again
 * (the index does not order items of one time) and left out by {@link after}.
 */
async function dueFiles(
  deps: VerifySweepDeps,
  from: string,
  until: string,
  cursor: VerifyCursor | undefined,
): Promise<{ files: LedgerItem[]; more: boolean }> {
  const { config } = deps;
  if (from > until) return { files: [], more: false };
  const files: LedgerItem[] = [];
  let start: Record<string, unknown> | undefined;
  let lastTime: string | undefined;
  // The index returns items by updatedAt (items of one time in no set order): past maxFilesPerRun, read on
  // only while the last time read is the boundary file's, so that none of that time is left out.
  const boundaryTied = () => lastTime === files[config.maxFilesPerRun - 1]?.updatedAt;
  do {
    const out = await deps.doc.send(
      new QueryCommand({
        TableName: config.ledgerTable,
        IndexName: settings.ledger.statusIndex,
        KeyConditionExpression: '#status = :status AND updatedAt BETWEEN :from AND :until',
        ExpressionAttributeNames: { '#status': 'status' },
        ExpressionAttributeValues: { ':status': 'SUCCESS', ':from': from, ':until': until },
        Limit: config.pageSize,
        ExclusiveStartKey: start,
      }),
    );
    for (const item of (out.Items ?? []) as LedgerItem[]) {
      lastTime = item.updatedAt;
      // Files only: not their parts (counted with their file), nor the canary's or the poller's items.
      if (item.pk.startsWith('s3://') && item.part === undefined && after(item, cursor)) files.push(item);
    }
    start = out.LastEvaluatedKey;
  } while (start && (files.length < config.maxFilesPerRun || boundaryTied()));
  files.sort(byCursorOrder);
  const more = start !== undefined || files.length > config.maxFilesPerRun;
  return { files: files.slice(0, config.maxFilesPerRun), more };
}

/** The part items of the split files among `files` (their rejects objects are the file's). */
async function partsOf(deps: VerifySweepDeps, files: readonly LedgerItem[]): Promise<LedgerItem[]> {
  const parts: LedgerItem[] = [];
  for (const f of files) {
    if (f.parts === undefined) continue;
    let start: Record<string, unknown> | undefined;
    do {
      const out = await deps.doc.send(
        new QueryCommand({
          TableName: deps.config.ledgerTable,
          KeyConditionExpression: 'pk = :pk AND begins_with(sk, :parts)',
          ExpressionAttributeValues: { ':pk': f.pk, ':parts': `${f.sk}#part-` },
          ExclusiveStartKey: start,
        }),
      );
      parts.push(...((out.Items ?? []) as LedgerItem[]));
      start = out.LastEvaluatedKey;
    } while (start);
  }
  return parts;
}

async function readCursor(deps: VerifySweepDeps): Promise<VerifyCursor | undefined> {
  const out = await deps.doc.send(
    new GetCommand({
      TableName: deps.config.ledgerTable,
      Key: settings.receipts.cursorKey,
      ConsistentRead: true,
    }),
  );
  const c = out.Item?.cursor as VerifyCursor | undefined;
  return c && typeof c.updatedAt === 'string' ? c : undefined;
}

/** Moves the cursor forward only (two runs at once never move it back). */
async function writeCursor(deps: VerifySweepDeps, cursor: VerifyCursor): Promise<void> {
  try {
    await deps.doc.send(
      new UpdateCommand({
        TableName: deps.config.ledgerTable,
        Key: settings.receipts.cursorKey,
        UpdateExpression: 'SET #cursor = :cursor',
        ConditionExpression: 'attribute_not_exists(#cursor) OR #cursor.updatedAt <= :updatedAt',
        ExpressionAttributeNames: { '#cursor': 'cursor' },
        ExpressionAttributeValues: { ':cursor': cursor, ':updatedAt': cursor.updatedAt },
      }),
    );
  } catch (err) {
    if ((err as Error).name !== 'ConditionalCheckFailedException') throw err;
    deps.logger.warn('Another run moved the verify cursor further: kept', { cursor });
  }
}
