import { PutObjectCommand, type S3Client } from '@aws-sdk/client-s3';
import { type DynamoDBDocumentClient, GetCommand, UpdateCommand } from '@aws-sdk/lib-dynamodb';
import { settings } from '#shared/settings.ts';
import type { FileTask } from './events.ts';

/**
 * The notification canary: proof that the bucket's ObjectCreated notifications still reach s3-trigger
 * (another tool may overwrite a bucket's notification configuration, or a queue policy break, and then
 * nothing arrives and nothing fails). The ledger sweep writes a tiny object under a reserved key of the
 * incoming prefix on every run; the notification carries it to the file-events queue and s3-trigger, which
 * records it on one ledger item and ingests nothing. The next sweeps check that the canary written
 * `canaryGraceSeconds` ago or earlier was seen after it was written.
 *
 * The ledger item (`pk = canary#s3://<bucket>/<key>`, `sk = canary`) holds `sent` (the sweep's send times,
 * newest last, written by the sweep) and `seenAt` (when s3-trigger last recorded a canary, written by
 * s3-trigger): two writers, two attributes, so neither write can undo the other.
 */

export interface CanaryItem {
  readonly pk: string;
  readonly sk: 'canary';
  /** ISO-8601 times at which the sweep started writing a canary, oldest first. */
  readonly sent?: readonly string[];
  /** ISO-8601: when s3-trigger last recorded a canary notification. */
  readonly seenAt?: string;
  readonly seenVersionId?: string;
  readonly seenEventTime?: string;
  readonly seenCount?: number;
}

/** The canary's ledger key for the ingest bucket. */
export function canaryLedgerKey(bucket: string): { pk: string; sk: 'canary' } {
  return { pk: `canary#s3://${bucket}/${settings.bucket.canaryKey}`, sk: 'canary' };
}

/** True for a file event about the canary object, which s3-trigger records and never ingests. */
export function isCanary(task: Pick<FileTask, 'key'>): boolean {
  return task.key === settings.bucket.canaryKey;
}

/** s3-trigger's part: records that a canary notification arrived (any number of times: last one wins). */
export async function recordCanarySeen(
  doc: DynamoDBDocumentClient,
  table: string,
  task: FileTask,
  now: () => number = Date.now,
): Promise<void> {
  await doc.send(
    new UpdateCommand({
      TableName: table,
      Key: canaryLedgerKey(task.bucket),
      UpdateExpression:
        'SET seenAt = :at' +
        (task.versionId ? ', seenVersionId = :version' : '') +
        (task.eventTime ? ', seenEventTime = :eventTime' : '') +
        ' ADD seenCount :one',
      ExpressionAttributeValues: {
        ':at': new Date(now()).toISOString(),
        ':one': 1,
        ...(task.versionId ? { ':version': task.versionId } : {}),
        ...(task.eventTime ? { ':eventTime': task.eventTime } : {}),
      },
    }),
  );
}

/** How the canary due by now fared. */
export interface CanaryCheck {
  /** The newest canary sent at least `graceSeconds` ago was never seen after it was sent. */
  readonly missed: boolean;
  /** That canary's send time; absent before any canary is due (first runs after a deploy). */
  readonly dueSentAt?: string;
  readonly seenAt?: string;
}

/**
 * Judges the canary from its ledger item: the newest send at least `graceSeconds` old must have been seen
 * after it. A later canary seen proves notifications flow as well; an earlier one seen late can only delay
 * the alarm by a run, never raise a false one.
 */
export function checkCanary(item: CanaryItem | undefined, now: number, graceSeconds: number): CanaryCheck {
  const due = [...(item?.sent ?? [])].reverse().find((t) => now - Date.parse(t) >= graceSeconds * 1000);
  const seenAt = item?.seenAt;
  if (due === undefined) return { missed: false, ...(seenAt ? { seenAt } : {}) };
  const missed = seenAt === undefined || Date.parse(seenAt) < Date.parse(due);
  return { missed, dueSentAt: due, ...(seenAt ? { seenAt } : {}) };
}

export interface CanaryDeps {
  readonly doc: DynamoDBDocumentClient;
  readonly s3: S3Client;
  readonly table: string;
  readonly bucket: string;
  readonly graceSeconds: number;
  readonly now: () => number;
}

/** The sweep's part: reads the canary item, judges the canary due by now, then writes the next canary. */
export class Canary {
  readonly #deps: CanaryDeps;
  #item: CanaryItem | undefined;

  constructor(deps: CanaryDeps) {
    this.#deps = deps;
  }

  /** Reads the item (strongly consistent) and judges the canary due by now. */
  async check(): Promise<CanaryCheck> {
    const { doc, table, bucket, graceSeconds, now } = this.#deps;
    const out = await doc.send(
      new GetCommand({ TableName: table, Key: canaryLedgerKey(bucket), ConsistentRead: true }),
    );
    this.#item = out.Item as CanaryItem | undefined;
    return checkCanary(this.#item, now(), graceSeconds);
  }

  /**
   * Writes the next canary object, then adds its send time (taken before the write, so that s3-trigger can
   * never record it earlier) to the item, keeping the newest `settings.sweep.canaryHistory`. If the sweep
   * dies between the two, the canary is simply not counted on: no false alarm.
   */
  async send(): Promise<string> {
    const { doc, s3, table, bucket, now } = this.#deps;
    const sentAt = new Date(now()).toISOString();
    await s3.send(
      new PutObjectCommand({
        Bucket: bucket,
        Key: settings.bucket.canaryKey,
        Body: JSON.stringify({ canary: true, sentAt }),
        ContentType: 'application/json',
      }),
    );
    const sent = [...(this.#item?.sent ?? []), sentAt].slice(-settings.sweep.canaryHistory);
    await doc.send(
      new UpdateCommand({
        TableName: table,
        Key: canaryLedgerKey(bucket),
        UpdateExpression: 'SET sent = :sent',
        ExpressionAttributeValues: { ':sent': sent },
      }),
    );
    return sentAt;
  }
}
