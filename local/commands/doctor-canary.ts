import { PutObjectCommand, type S3Client } from '@aws-sdk/client-s3';
import { GetQueueAttributesCommand, type SQSClient } from '@aws-sdk/client-sqs';
import { type DynamoDBDocumentClient, GetCommand } from '@aws-sdk/lib-dynamodb';
import { settings } from '#shared/settings.ts';
import { type CanaryItem, canaryLedgerKey } from '../../functions/s3-trigger/canary.ts';
import { type DoctorCheck, errorText, grantHint } from './doctor.ts';

export interface CanaryRoundTripDeps {
  readonly s3: S3Client;
  readonly doc: DynamoDBDocumentClient;
  readonly sqs: SQSClient;
  readonly bucket: string;
  readonly ledgerTable: string;
  readonly fileEventsQueueUrl: string;
  /** How long to wait for the canary to show up in the ledger. */
  readonly timeoutMs: number;
  /** Between two reads of the ledger item. @default settings.doctor.canaryPollMs */
  readonly pollMs?: number;
  /** What to look at when the canary never arrives (the wiring differs offline and on AWS). */
  readonly notArrivedNext: string;
  readonly sleep?: (ms: number) => Promise<void>;
  readonly now?: () => number;
}

const ID = 'notifications';
const TITLE = 'Notifications (canary round trip)';

/**
 * Writes the notification canary (the object the ledger sweep writes, at its reserved key under the incoming
 * prefix; s3-trigger records it on its ledger item and ingests nothing) and waits until the ledger shows it.
 *
 * The canary counts as arrived when s3-trigger recorded this version (`seenVersionId`), or, when the
 * notifications carry no version id (an unversioned bucket; moto's notifications), when its count of canaries
 * seen grew. A canary version other than the one seen
 * before doctor started (the sweep's next one, written meanwhile) proves the same thing: a notification
 * made the whole way after doctor began. The item's times are not compared with this machine's clock,
 * which may be off. Doctor does not add its canary to the sweep's `sent` list: the sweep's alarm is its own.
 */
export async function canaryRoundTrip(deps: CanaryRoundTripDeps): Promise<DoctorCheck> {
  const sleep = deps.sleep ?? ((ms: number) => new Promise<void>((r) => setTimeout(r, ms)));
  const now = deps.now ?? Date.now;
  const key = settings.bucket.canaryKey;
  let before: CanaryItem | undefined;
  let versionId: string | undefined;
  const started = now();
  try {
    before = await readItem(deps);
    const sentAt = new Date(started).toISOString();
    const out = await deps.s3.send(
      new PutObjectCommand({
        Bucket: deps.bucket,
        Key: key,
        Body: JSON.stringify({ canary: true, sentAt, by: 'pulse doctor' }),
        ContentType: 'application/json',
      }),
    );
    versionId = out.VersionId;
  } catch (err) {
    return {
      id: ID,
      title: TITLE,
      status: 'cannot-check',
      summary: `could not write the canary s3://${deps.bucket}/${key} or read its ledger item: ${errorText(err)}`,
      next: grantHint(err) ?? 'Check that the bucket and the ledger table exist (see the outputs above).',
    };
  }
  const deadline = started + deps.timeoutMs;
  for (;;) {
    let item: CanaryItem | undefined;
    try {
      item = await readItem(deps);
    } catch (err) {
      return {
        id: ID,
        title: TITLE,
        status: 'cannot-check',
        summary: `could not read the canary's ledger item: ${errorText(err)}`,
        ...(grantHint(err) ? { next: grantHint(err) } : {}),
      };
    }
    if (arrived(before, item, versionId)) {
      const seconds = ((now() - started) / 1000).toFixed(1);
      return {
        id: ID,
        title: TITLE,
        status: 'ok',
        summary: `a canary under ${settings.bucket.incomingPrefix} reached s3-trigger and the ledger in ${seconds} s`,
        details: [`s3://${deps.bucket}/${key}${versionId ? ` (version ${versionId})` : ''}`],
      };
    }
    if (now() >= deadline) return notArrived(deps, versionId);
    await sleep(Math.min(deps.pollMs ?? settings.doctor.canaryPollMs, Math.max(0, deadline - now())));
  }
}

function arrived(before: CanaryItem | undefined, item: CanaryItem | undefined, versionId?: string): boolean {
  if (!item) return false;
  if (versionId !== undefined && item.seenVersionId === versionId) return true;
  const grew = Number(item.seenCount ?? 0) > Number(before?.seenCount ?? 0);
  // Notifications without version ids (an unversioned bucket; moto's) leave only the count to go by.
  if (versionId === undefined || item.seenVersionId === undefined) return grew;
  return grew && item.seenVersionId !== before?.seenVersionId;
}

async function readItem(deps: CanaryRoundTripDeps): Promise<CanaryItem | undefined> {
  const out = await deps.doc.send(
    new GetCommand({ TableName: deps.ledgerTable, Key: canaryLedgerKey(deps.bucket), ConsistentRead: true }),
  );
  return out.Item as CanaryItem | undefined;
}

/** The canary did not arrive in time: whether its event waits on the file-events queue says where it stopped. */
async function notArrived(deps: CanaryRoundTripDeps, versionId?: string): Promise<DoctorCheck> {
  const details = [
    `wrote s3://${deps.bucket}/${settings.bucket.canaryKey}${versionId ? ` (version ${versionId})` : ''}`,
  ];
  let waiting: number | undefined;
  try {
    const out = await deps.sqs.send(
      new GetQueueAttributesCommand({
        QueueUrl: deps.fileEventsQueueUrl,
        AttributeNames: ['ApproximateNumberOfMessages', 'ApproximateNumberOfMessagesNotVisible'],
      }),
    );
    waiting = Number(out.Attributes?.ApproximateNumberOfMessages ?? 0);
    details.push(
      `file-events queue: ${waiting} waiting, ${Number(out.Attributes?.ApproximateNumberOfMessagesNotVisible ?? 0)} in flight`,
    );
  } catch (err) {
    details.push(`file-events queue depth unreadable: ${errorText(err)}`);
  }
  const seconds = Math.round(deps.timeoutMs / 1000);
  const queued = waiting !== undefined && waiting > 0;
  return {
    id: ID,
    title: TITLE,
    status: 'problem',
    summary: queued
      ? `the canary did not reach the ledger within ${seconds} s, and the file-events queue holds ${waiting} message(s): s3-trigger is not consuming it`
      : `the canary did not reach the ledger within ${seconds} s`,
    next: queued
      ? "Look at s3-trigger's event source mapping (below: it must be Enabled) and its errors and throttles (its log group, the dashboard)."
      : deps.notArrivedNext,
    details,
  };
}
