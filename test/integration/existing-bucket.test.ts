import { randomBytes } from 'node:crypto';
import {
  CreateBucketCommand,
  GetBucketNotificationConfigurationCommand,
  PutBucketNotificationConfigurationCommand,
  PutBucketVersioningCommand,
  PutObjectCommand,
} from '@aws-sdk/client-s3';
import { CreateQueueCommand, GetQueueAttributesCommand, ReceiveMessageCommand } from '@aws-sdk/client-sqs';
import { afterAll, afterEach, beforeAll, describe, expect, inject, it } from 'vitest';
import { notificationFilter } from '#shared/ingest-filters.ts';
import { ledgerKey } from '#shared/ledger-items.ts';
import { DEFAULT_ROUTES } from '#shared/routes.ts';
import { parseFileEvents } from '../../functions/s3-trigger/events.ts';
import { routesWithExistingBuckets } from '../../infra/routes.ts';
import { connectExistingBucket } from '../../local/runtime/existing-buckets.ts';
import { csvFile, setUpPipeline, waitFor } from './pipeline.ts';

/**
 * A bucket the user already has (created outside the pipeline, with a notification of its own that must
 * survive), ingested through EventBridge "Object Created" events and through an SNS topic the bucket notifies
 * (raw delivery off): moto delivers both (scripts/moto_server.py sends the EventBridge events in AWS's shape).
 * The same object version through both shapes is one ledger item, ingested once.
 */

/** One SNS Query API call to moto (no SNS client in the project): the service is named in the credential scope. */
async function sns(endpoint: string, action: string, params: Record<string, string>): Promise<string> {
  const res = await fetch(endpoint, {
    method: 'POST',
    headers: {
      'content-type': 'application/x-www-form-urlencoded',
      authorization:
        'AWS4-HMAC-SHA256 Credential=test/20260101/us-east-1/sns/aws4_request, SignedHeaders=host, Signature=0',
    },
    body: new URLSearchParams({ Action: action, Version: '2010-03-31', ...params }).toString(),
  });
  const text = await res.text();
  if (!res.ok) throw new Error(`SNS ${action}: ${res.status} ${text}`);
  return text;
}

describe('an existing bucket through EventBridge and SNS (moto)', () => {
  const endpoint = inject('motoEndpoint');
  const prefix = `exb${randomBytes(3).toString('hex')}`;
  const userBucket = `${prefix}-users-data`;
  let p: Awaited<ReturnType<typeof setUpPipeline>>;
  let otherQueueUrl: string;

  beforeAll(async () => {
    // The routes the stack gives the s3-trigger for this bucket's prefixes (infra/routes.ts).
    const routes = routesWithExistingBuckets(DEFAULT_ROUTES, [
      { name: userBucket, prefixes: ['eb/', 'sns/', 'both/', 'sqs/'] },
    ]);
    p = await setUpPipeline(endpoint, prefix, { routes });
    const { s3, sqs } = p.clients;
    // The user's bucket, versioned, with a notification of its own to a queue of theirs.
    await s3.send(new CreateBucketCommand({ Bucket: userBucket }));
    await s3.send(
      new PutBucketVersioningCommand({ Bucket: userBucket, VersioningConfiguration: { Status: 'Enabled' } }),
    );
    const other = await sqs.send(new CreateQueueCommand({ QueueName: `${prefix}-users-own` }));
    otherQueueUrl = String(other.QueueUrl);
    const otherArn = (
      await sqs.send(new GetQueueAttributesCommand({ QueueUrl: otherQueueUrl, AttributeNames: ['QueueArn'] }))
    ).Attributes?.QueueArn;
    // The topic the bucket notifies, and the file-events queue subscribed to it (raw delivery off).
    const created = await sns(endpoint, 'CreateTopic', { Name: `${prefix}-bucket-events` });
    const topicArn = /<TopicArn>([^<]+)<\/TopicArn>/.exec(created)?.[1] ?? '';
    await sns(endpoint, 'Subscribe', {
      TopicArn: topicArn,
      Protocol: 'sqs',
      Endpoint: p.resources.queues.fileEvents.arn,
    });
    // What the user's configuration holds: their own notification, the topic under sns/ and both/, and
    // EventBridge on (README: "Ingest from a bucket you already have").
    await s3.send(
      new PutBucketNotificationConfigurationCommand({
        Bucket: userBucket,
        NotificationConfiguration: {
          QueueConfigurations: [
            {
              Id: 'theirs',
              QueueArn: otherArn,
              Events: ['s3:ObjectCreated:*'],
              Filter: notificationFilter('reports/'),
            },
          ],
          TopicConfigurations: ['sns/', 'both/'].map((prefix) => ({
            Id: `pulse-${prefix}`,
            TopicArn: topicArn,
            Events: ['s3:ObjectCreated:*'],
            Filter: notificationFilter(prefix),
          })),
          EventBridgeConfiguration: {},
        },
      }),
    );
    // What `pulse local` does for existingBuckets (local/runtime/existing-buckets.ts): the stack's rule for
    // eb/ and both/, and an S3 → SQS notification for sqs/ added to the owner's configuration.
    const fileEventsArn = p.resources.queues.fileEvents.arn;
    await connectExistingBucket(
      p.clients,
      { bucket: userBucket, prefixes: ['eb/', 'both/'], notifications: 'eventbridge' },
      fileEventsArn,
      `${prefix}-objects`,
    );
    await connectExistingBucket(
      p.clients,
      { bucket: userBucket, prefixes: ['sqs/'], notifications: 's3-sqs' },
      fileEventsArn,
      `${prefix}-unused`,
    );
  });
  afterEach(async () => {
    await p.stopAll();
  });
  afterAll(async () => {
    await p?.stopAll();
  });

  const put = async (key: string, body: string) => {
    const out = await p.clients.s3.send(new PutObjectCommand({ Bucket: userBucket, Key: key, Body: body }));
    return { etag: out.ETag?.replace(/"/g, '') ?? '', versionId: out.VersionId };
  };
  const settled = (key: string) =>
    waitFor(`ledger item for ${key} to settle`, async () => {
      const i = (await p.ledgerItems()).find((x) => x.bucket === userBucket && x.key === key);
      return i && ['SUCCESS', 'FAILED', 'SKIPPED'].includes(i.status) ? i : undefined;
    });

  it.each([
    ['EventBridge', 'eb/'],
    ['SNS-wrapped notifications', 'sns/'],
    ['S3 → SQS notifications added to its configuration', 'sqs/'],
  ])(
    'ingests a file of the existing bucket delivered as %s: SUCCESS with exact counts',
    async (_shape, dir) => {
      // Prepare
      const file = csvFile(300, { name: `exb_${dir.slice(0, -1)}`, badEvery: 30 });
      p.start('fileEvents');
      // Act
      const { etag, versionId } = await put(`${dir}metrics.csv`, file.text);
      // Assess
      const item = await settled(`${dir}metrics.csv`);
      expect(item).toMatchObject({
        status: 'SUCCESS',
        etag,
        // moto's S3 notifications carry no versionId (AWS's do); its EventBridge events do.
        ...(dir === 'eb/' ? { versionId } : {}),
        records: file.good,
        rejected: file.bad,
        attempts: 1,
      });
      // Rejects went to the pipeline's own bucket, never to the user's.
      expect(String(item.rejectsKey)).toMatch(/^rejects\//);
    },
  );

  it('ingests a key with spaces and unicode once, under one ledger key, when both shapes deliver it', async () => {
    // Prepare
    const key = 'both/März report (v1) + ü.csv';
    const file = csvFile(120, { name: 'exb_both' });
    p.start('fileEvents');
    // Act
    const { etag } = await put(key, file.text);
    // Assess: one item, under the key as stored, ingested once; the second shape's delivery a duplicate.
    const item = await settled(key);
    expect(item).toMatchObject({ status: 'SUCCESS', records: file.good, rejected: 0, attempts: 1 });
    expect({ pk: item.pk, sk: item.sk }).toEqual(ledgerKey({ bucket: userBucket, key, etag }));
    const withDuplicate = await waitFor('the second delivery recorded as a duplicate', async () => {
      const i = (await p.ledgerItems()).find((x) => x.pk === item.pk);
      return i && Number((i as { duplicates?: number }).duplicates ?? 0) >= 1 ? i : undefined;
    });
    expect((withDuplicate as { duplicates?: number }).duplicates).toBe(1);
    expect((await p.ledgerItems()).filter((x) => x.bucket === userBucket && x.key === key)).toHaveLength(1);
  });

  it("leaves the user's own notification working: their queue still gets their prefix's events", async () => {
    // Prepare
    const key = 'reports/q3.txt';
    // Act
    await put(key, 'theirs');
    // Assess
    const config = await p.clients.s3.send(
      new GetBucketNotificationConfigurationCommand({ Bucket: userBucket }),
    );
    expect(config.QueueConfigurations?.map((c) => c.Id)).toEqual(['theirs', 'pulse-sqs/']);
    expect(config.TopicConfigurations?.map((c) => c.Id)).toEqual(['pulse-sns/', 'pulse-both/']);
    expect(config.EventBridgeConfiguration).toEqual({});
    const got = await waitFor('their notification', async () => {
      const out = await p.clients.sqs.send(
        new ReceiveMessageCommand({ QueueUrl: otherQueueUrl, MaxNumberOfMessages: 10, WaitTimeSeconds: 1 }),
      );
      const bodies = (out.Messages ?? []).map((m) => String(m.Body));
      return bodies.find((b) => parseFileEvents(b).some((t) => t.key === key));
    });
    expect(JSON.parse(got).Records[0].s3.bucket.name).toBe(userBucket);
  });
});
