import { Readable } from 'node:stream';
import { gzipSync } from 'node:zlib';
import { DeleteObjectsCommand, GetObjectCommand, PutObjectCommand, S3Client } from '@aws-sdk/client-s3';
import { SendMessageBatchCommand, SQSClient } from '@aws-sdk/client-sqs';
import { sdkStreamMixin } from '@smithy/core/serde';
import { mockClient } from 'aws-sdk-client-mock';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { Ledger } from '#shared/ledger.ts';
import { DEFAULT_ROUTES, resolveRoutes } from '#shared/routes.ts';
import { settings } from '#shared/settings.ts';
import { type IngestDeps, ingestFile } from '../../../functions/s3-trigger/ingest.ts';
import { routesWithExistingBuckets } from '../../../infra/routes.ts';
import { INGEST_DEFAULTS } from '../../helpers/ingest.ts';
import { fakeLedger } from '../../helpers/ledger.ts';
import { quietObservability } from '../../helpers/observability.ts';

/**
 * A file from a bucket the user already has is staged in the pipeline's own bucket (the rejects'), never in
 * the user's: the s3-trigger may only read there (infra/existing-buckets.ts). S3 is an in-memory store of
 * `bucket/key` behind the mocked client.
 */

const SOURCE = 'users-data';
const OWN = 'pulse-own';
const KEY = 'in/big file.csv.gz';

const s3 = mockClient(S3Client);
const sqs = mockClient(SQSClient);

describe('staging a file from an existing bucket', () => {
  let store: Map<string, Buffer>;
  let writes: string[];

  beforeEach(() => {
    store = new Map();
    writes = [];
    s3.on(GetObjectCommand).callsFake((input: { Bucket?: string; Key?: string; Range?: string }) => {
      const object = store.get(`${input.Bucket}/${input.Key}`);
      if (!object) throw Object.assign(new Error('NoSuchKey'), { name: 'NoSuchKey' });
      const m = /^bytes=(\d+)-(\d*)$/.exec(input.Range ?? '');
      const slice = m ? object.subarray(Number(m[1]), m[2] ? Number(m[2]) + 1 : object.length) : object;
      return { Body: sdkStreamMixin(Readable.from([Buffer.from(slice)])), ContentLength: slice.length };
    });
    s3.on(PutObjectCommand).callsFake((input: { Bucket?: string; Key?: string; Body?: unknown }) => {
      writes.push(`put ${input.Bucket}/${String(input.Key).split('/')[0]}/`);
      store.set(
        `${input.Bucket}/${input.Key}`,
        Buffer.isBuffer(input.Body) ? input.Body : Buffer.from(String(input.Body)),
      );
      return {};
    });
    s3.on(DeleteObjectsCommand).callsFake(
      (input: { Bucket?: string; Delete?: { Objects?: { Key?: string }[] } }) => {
        writes.push(`delete ${input.Bucket}`);
        for (const o of input.Delete?.Objects ?? []) store.delete(`${input.Bucket}/${o.Key}`);
        return {};
      },
    );
    sqs.on(SendMessageBatchCommand).resolves({ Failed: [] });
  });
  afterEach(() => {
    s3.reset();
    sqs.reset();
  });

  it('writes, reads and deletes the staged copy in the pipeline bucket, and records that bucket', async () => {
    // Prepare
    const lines = ['name,value,timestamp'];
    for (let i = 1; i <= 500; i++) lines.push(`stg,${i % 50 === 0 ? 'x' : i},${1_700_000_000 + i}`);
    const object = gzipSync(`${lines.join('\n')}\n`);
    store.set(`${SOURCE}/${KEY}`, object);
    const ledger = fakeLedger({ claimed: true, attempt: 1 });
    const obs = quietObservability();
    const deps: IngestDeps = {
      s3: new S3Client({ region: 'us-east-1' }),
      sqs: new SQSClient({ region: 'us-east-1' }),
      ledger: ledger as unknown as Ledger,
      logger: obs.logger,
      metrics: obs.metrics,
      config: {
        ...INGEST_DEFAULTS,
        quarantineBucket: OWN,
        staging: { minBytes: 100, objectBytes: 2000, bucket: OWN },
        // The routes the stack gives a bucket of the user's (infra/routes.ts): its prefix read as the default.
        routes: resolveRoutes(
          routesWithExistingBuckets(DEFAULT_ROUTES, [{ name: SOURCE, prefixes: ['in/'] }]),
        ),
      },
      owner: 'w1',
      announceParts: async () => {},
    };

    // Act
    const out = await ingestFile({ bucket: SOURCE, key: KEY, etag: 'e1', size: object.length }, deps);

    // Assess
    expect(out.status).toBe('SUCCESS');
    expect(ledger.succeed.mock.calls[0]?.[2]).toMatchObject({ records: 490, rejected: 10 });
    expect(ledger.stage.mock.calls.map((c) => c[3].bucket)).toEqual(ledger.stage.mock.calls.map(() => OWN));
    expect(new Set(writes)).toEqual(
      new Set([
        `put ${OWN}/${settings.bucket.stagingPrefix}`,
        `put ${OWN}/${settings.bucket.rejectsPrefix}`,
        `delete ${OWN}`,
      ]),
    );
    const stagedReads = s3
      .commandCalls(GetObjectCommand)
      .map((c) => c.args[0].input)
      .filter((i) => String(i.Key).startsWith(settings.bucket.stagingPrefix));
    expect(stagedReads.length).toBeGreaterThan(0);
    expect(stagedReads.every((i) => i.Bucket === OWN)).toBe(true);
    expect([...store.keys()].filter((k) => k.startsWith(`${OWN}/${settings.bucket.stagingPrefix}`))).toEqual(
      [],
    );
  });
});
