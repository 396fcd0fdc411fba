/**
 * `pulse ledger retry KEY|--failed [--since T]`: runs again object versions that FAILED for good, once their
 * cause is fixed, without uploading them again. For each version: the object must still hold it (HeadObject:
 * same ETag, and version when the ledger has one), the ledger item is reset FAILED → DISCOVERED with the
 * retry recorded on it (shared/ledger-retry.ts: who, when, the previous error), and a file event is sent, as
 * backfill sends one. The s3-trigger then claims it like a new version; the scorer's exactly-once drops any
 * row an earlier attempt had already sent.
 *
 * A version left DISCOVERED by an earlier retry (its event lost: the send failed after the reset) gets its
 * event again; until then the ledger sweep counts it as stuck DISCOVERED (`FilesStuckDiscovered`).
 */

import { hostname, userInfo } from 'node:os';
import { HeadObjectCommand } from '@aws-sdk/client-s3';
import { SendMessageCommand } from '@aws-sdk/client-sqs';
import { isObjectGone } from '#shared/errors.ts';
import { settleCounts } from '#shared/ledger-counters.ts';
import type { LedgerItem, RetryRecord } from '#shared/ledger-items.ts';
import { previousEnding, resetForRetry, retryRefusal } from '#shared/ledger-retry.ts';
import { settings } from '#shared/settings.ts';
import { fileEventMessage, ledgerEntries, ledgerVersions } from './operations.ts';
import type { Target } from './target.ts';
import { printable } from './terminal.ts';

/** Which versions: the FAILED versions of one key, or every FAILED file (updated since a time). */
export type RetrySelection = { readonly key: string } | { readonly failed: true; readonly since?: Date };

export type RetryOutcome = 'retried' | 'resent' | 'refused' | 'changed';

export interface RetryResult {
  /** `s3://bucket/key@etag`. */
  readonly object: string;
  readonly key: string;
  readonly etag: string;
  /**
   * - `retried`: reset and its file event sent;
   * - `resent`: an earlier retry had reset it, its file event is sent again;
   * - `refused`: not retried, `reason` says why and what to do;
   * - `changed`: the item changed between the read and the reset (a worker or another operator): run again.
   */
  readonly outcome: RetryOutcome;
  readonly reason?: string;
  /** How the version had ended, as kept on the item. */
  readonly previous?: RetryRecord['previous'];
}

export interface RetryOptions {
  /** Who asks, recorded on the item. @default user@host of this process */
  readonly by?: string;
  readonly now?: Date;
}

/** Retries the selected versions, one result each (none found: none). */
export async function retryVersions(
  target: Target,
  selection: RetrySelection,
  opts: RetryOptions = {},
): Promise<RetryResult[]> {
  const by = opts.by ?? defaultOperator();
  const now = opts.now ?? new Date();
  const items = await selected(target, selection);
  const results: RetryResult[] = [];
  for (const item of items) results.push(await retryOne(target, item, by, now));
  return results;
}

/** The exit code of `pulse ledger retry`: 0 every version retried; 2 some were not; 3 none found. */
export function retryExitCode(results: readonly RetryResult[]): number {
  if (results.length === 0) return 3;
  return results.every((r) => r.outcome === 'retried' || r.outcome === 'resent') ? 0 : 2;
}

async function selected(target: Target, selection: RetrySelection): Promise<LedgerItem[]> {
  if ('key' in selection) {
    // Every version of the key: its files (not their parts); a version that is not FAILED is refused by name.
    const files = (await ledgerVersions(target, selection.key)).filter((i) => i.part === undefined);
    const failed = files.filter((i) => i.status === 'FAILED' || awaitingRetry(i));
    return failed.length > 0 ? failed : files;
  }
  const since = selection.since?.toISOString();
  return (await ledgerEntries(target, 'FAILED')).filter(
    (i) => i.part === undefined && (since === undefined || String(i.updatedAt) >= since),
  );
}

/** Reset by a retry whose file event has not been claimed yet. */
function awaitingRetry(item: LedgerItem): boolean {
  return item.status === 'DISCOVERED' && (item.retries?.length ?? 0) > 0;
}

const COUNTERS = { shards: settings.ledgerCounters.shards, tries: settings.ledgerCounters.tries };

/** Retries one version (the explicit retry path `pulse backfill --force` takes too). */
export async function retryOne(
  target: Target,
  item: LedgerItem,
  by: string,
  now: Date,
): Promise<RetryResult> {
  const base = { object: `${item.pk}@${item.etag}`, key: item.key, etag: item.etag };
  const resend = awaitingRetry(item);
  const refusal = resend ? undefined : retryRefusal(item);
  if (refusal) return { ...base, outcome: 'refused', reason: refusal };
  const gone = await versionGone(target, item);
  if (gone) return { ...base, outcome: 'refused', reason: gone };
  if (!resend) {
    const reset = await resetForRetry(target.clients.doc, target.ledgerTable, item, by, now);
    if (reset === 'changed') {
      return {
        ...base,
        outcome: 'changed',
        reason:
          'the ledger item changed while it was being reset (a worker or another retry): run pulse ledger retry again',
      };
    }
    // FAILED → DISCOVERED: the ledger's counters follow (a failure to is left to the rerun's claim).
    await settleCounts(target.clients.doc, target.ledgerTable, item, COUNTERS).catch(() => false);
  }
  await target.clients.sqs.send(
    new SendMessageCommand({
      QueueUrl: target.queues.fileEvents,
      MessageBody: fileEventMessage({
        bucket: item.bucket,
        key: item.key,
        etag: item.etag,
        ...(item.size !== undefined ? { size: Number(item.size) } : {}),
        ...(item.versionId ? { versionId: item.versionId } : {}),
      }),
    }),
  );
  const previous = resend ? item.retries?.at(-1)?.previous : previousEnding(item);
  return { ...base, outcome: resend ? 'resent' : 'retried', ...(previous ? { previous } : {}) };
}

/** Why the object no longer holds the version (what to do instead), or undefined when it does. */
async function versionGone(target: Target, item: LedgerItem): Promise<string | undefined> {
  try {
    const head = await target.clients.s3.send(
      new HeadObjectCommand({
        Bucket: item.bucket,
        Key: item.key,
        ...(item.versionId ? { VersionId: item.versionId } : {}),
      }),
    );
    const etag = (head.ETag ?? '').replace(/^"|"$/g, '');
    if (etag === item.etag) return undefined;
    return `s3://${item.bucket}/${item.key} now holds another version (ETag ${etag}): that one is ingested on its own; upload the file again to run this one`;
  } catch (err) {
    // The s3-trigger's own test of a version that is gone (a 403 is not one: without s3:ListBucket S3 answers
    // 403 for a missing key, and the operator is told what was denied instead).
    if (isObjectGone(err)) {
      return `s3://${item.bucket}/${item.key}@${item.etag} no longer exists: upload the file again`;
    }
    throw err;
  }
}

/** `user@host` of this process, recorded as who asked for the retry. */
export function defaultOperator(): string {
  let user = 'unknown';
  try {
    user = userInfo().username;
  } catch {
    // No user entry for this uid (some containers): the host alone.
  }
  return `${user}@${hostname()}`;
}

const OUTCOME: Record<RetryOutcome, string> = {
  retried: 'RETRIED',
  resent: 'RESENT',
  refused: 'REFUSED',
  changed: 'CHANGED',
};

/** The results as text for a person: one block per version, keys and errors made {@link printable}. */
export function retryText(results: readonly RetryResult[]): string {
  if (results.length === 0)
    return 'no FAILED object version found to retry (see: pulse ledger --status FAILED)';
  const out: string[] = [];
  for (const r of results) {
    out.push(printable(`${r.object}  ${OUTCOME[r.outcome]}`));
    const p = r.previous;
    if (p) {
      const error = p.errorType ? `${p.errorType}: ${p.errorMessage ?? ''}` : '(no error recorded)';
      out.push(printable(`  was      ${p.status} after ${p.attempts} attempt(s): ${error}`));
    }
    if (r.reason) out.push(printable(`  why      ${r.reason}`));
    if (r.outcome === 'retried' || r.outcome === 'resent') {
      out.push(printable(`  follow   npm run pulse -- verify '${r.key}'`));
    }
    out.push('');
  }
  const n = (o: RetryOutcome) => results.filter((r) => r.outcome === o).length;
  out.push(
    `${results.length} object version(s): ${n('retried') + n('resent')} sent to the s3-trigger again, ` +
      `${n('refused')} refused, ${n('changed')} changed meanwhile`,
  );
  return out.join('\n');
}
