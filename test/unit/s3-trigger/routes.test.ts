import { Readable } from 'node:stream';
import {
  CopyObjectCommand,
  DeleteObjectCommand,
  GetObjectCommand,
  GetObjectTaggingCommand,
  PutObjectCommand,
  PutObjectTaggingCommand,
  S3Client,
} from '@aws-sdk/client-s3';
import { SendMessageBatchCommand, SQSClient } from '@aws-sdk/client-sqs';
import { sdkStreamMixin } from '@smithy/core/serde';
import { mockClient } from 'aws-sdk-client-mock';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { Ledger } from '#shared/ledger.ts';
import { checkRoutes, resolveRoutes, type S3Route } from '#shared/routes.ts';
import { ingestFile } from '../../../functions/s3-trigger/ingest.ts';
import { parseCsv } from '../../../functions/s3-trigger/parsers/csv.ts';
import { findBoundaries } from '../../../functions/s3-trigger/split.ts';
import { INGEST_DEFAULTS } from '../../helpers/ingest.ts';
import { fakeLedger } from '../../helpers/ledger.ts';
import { quietObservability } from '../../helpers/observability.ts';
import { decodeSignals } from '../../helpers/signals.ts';
import { chunkings, collect, drain, OPTS, source } from './parsers/helpers.ts';

/** `;`-separated, with quoted fields holding `;`, a doubled quote and a line end. */
const SEMI = [
  'metric;val;ts;note',
  'cpu;1;2026-01-01T00:00:00Z;"a;b"',
  '"mem;x";2;2026-01-01T00:00:01Z;"say ""hi"""',
  'disk;3;2026-01-01T00:00:02Z;"two',
  'lines"',
  'net;4;2026-01-01T00:00:03Z;plain',
  '',
].join('\n');

describe('CSV delimiter', () => {
  it('parses a ; file with quoted fields holding ;, quotes and line ends, however it is chunked', async () => {
    for (const { name, chunks } of chunkings(SEMI)) {
      // Act
      const records = await collect(parseCsv(source(chunks), { ...OPTS, delimiter: ';' }));
      // Assess
      expect(
        records.map((r) => r.data),
        name,
      ).toEqual([
        { metric: 'cpu', val: '1', ts: '2026-01-01T00:00:00Z', note: 'a;b' },
        { metric: 'mem;x', val: '2', ts: '2026-01-01T00:00:01Z', note: 'say "hi"' },
        { metric: 'disk', val: '3', ts: '2026-01-01T00:00:02Z', note: 'two\nlines' },
        { metric: 'net', val: '4', ts: '2026-01-01T00:00:03Z', note: 'plain' },
      ]);
    }
  });

  it('finds, for a fan-out split of a ; file, exactly the record ends a single read gives', async () => {
    // Prepare
    const read = await collect(parseCsv(source([SEMI]), { ...OPTS, delimiter: ';', positions: true }));
    for (const { name, chunks } of chunkings(SEMI)) {
      // Act
      const plan = await findBoundaries('csv', source(chunks), {
        maxRecordBytes: OPTS.maxRecordBytes,
        delimiter: ';',
      });
      // Assess
      expect(plan.ok, name).toBe(true);
      if (plan.ok) expect(plan.points, name).toEqual(read.map((r) => ({ offset: r.end, row: r.row })));
    }
  });

  it('fails a header split by commas in a ; route, naming both', async () => {
    // Act
    const { error } = await drain(parseCsv(source(['a,b,c\n1,2,3\n']), { ...OPTS, delimiter: ';' }));
    // Assess
    expect(error?.message).toMatch(/fields must be separated by semicolons, and it has commas/);
  });
});

describe('ingestFile with routes', () => {
  const s3 = mockClient(S3Client);
  const sqs = mockClient(SQSClient);
  let obs: ReturnType<typeof quietObservability>;
  const body = (data: string) => ({ Body: sdkStreamMixin(Readable.from([Buffer.from(data)])) });
  const task = (key: string) => ({ bucket: 'b', key, etag: 'e1', size: 100, versionId: 'v1' });
  const deps = (ledger: ReturnType<typeof fakeLedger>, routes: S3Route[]) => ({
    s3: new S3Client({ region: 'us-east-1' }),
    sqs: new SQSClient({ region: 'us-east-1' }),
    ledger: ledger as unknown as Ledger,
    logger: obs.logger,
    metrics: obs.metrics,
    config: { ...INGEST_DEFAULTS, routes: resolveRoutes(checkRoutes(routes)) },
    owner: 'w1',
  });
  const sent = () =>
    sqs
      .commandCalls(SendMessageBatchCommand)
      .flatMap((c) => c.args[0].input.Entries ?? [])
      .flatMap((e) => decodeSignals(e.MessageBody ?? ''));
  const EU: S3Route = {
    prefix: 'eu/',
    mapping: { name: 'metric', value: 'val', timestamp: 'ts' },
    csv: { delimiter: ';' },
    afterSuccess: { archivePrefix: 'archive/' },
  };
  beforeEach(() => {
    obs = quietObservability();
    sqs.on(SendMessageBatchCommand).resolves({ Failed: [] });
    s3.on(PutObjectCommand).resolves({});
    s3.on(CopyObjectCommand).resolves({});
    s3.on(DeleteObjectCommand).resolves({});
  });
  afterEach(() => {
    s3.reset();
    sqs.reset();
  });

  it('records a key no route takes as SKIPPED with the reason, reading nothing', async () => {
    // Prepare
    const ledger = fakeLedger();
    // Act
    const out = await ingestFile(task('us/a.csv'), deps(ledger, [{ prefix: 'incoming/' }, EU]));
    // Assess
    expect(out).toEqual({ status: 'SKIPPED', reason: 'no route' });
    expect(ledger.skip).toHaveBeenCalledWith(
      expect.objectContaining({ key: 'us/a.csv' }),
      'no route takes us/a.csv: it is under none of the prefixes incoming/ eu/',
      undefined,
      expect.anything(),
    );
    expect(ledger.claim).not.toHaveBeenCalled();
    expect(s3).not.toHaveReceivedCommand(GetObjectCommand);
    expect(obs.total('FilesSkipped')).toBe(1);
  });

  it('reads a ; file by its route mapping, then archives the version it read and records it', async () => {
    // Prepare
    s3.on(GetObjectCommand).resolves(body(SEMI));
    const ledger = fakeLedger();
    // Act
    const out = await ingestFile(task('eu/m.csv'), deps(ledger, [{ prefix: 'incoming/' }, EU]));
    // Assess
    expect(out.status).toBe('SUCCESS');
    expect(sent().map((s: { name: string; value: number }) => [s.name, s.value])).toEqual([
      ['cpu', 1],
      ['mem;x', 2],
      ['disk', 3],
      ['net', 4],
    ]);
    expect(sent()[0]).toMatchObject({ attributes: { note: 'a;b' }, timestamp: '2026-01-01T00:00:00.000Z' });
    expect(s3).toHaveReceivedCommandWith(CopyObjectCommand, {
      Bucket: 'b',
      Key: 'archive/eu/m.csv',
      CopySource: 'b/eu/m.csv?versionId=v1',
    });
    expect(s3).toHaveReceivedCommandWith(DeleteObjectCommand, {
      Bucket: 'b',
      Key: 'eu/m.csv',
      VersionId: 'v1',
    });
    expect(ledger.recordAfterSuccess).toHaveBeenCalledWith(
      expect.objectContaining({ key: 'eu/m.csv', versionId: 'v1' }),
      { action: 'archive', at: expect.any(String), target: 'archive/eu/m.csv' },
    );
  });

  it('fails a CSV whose header names none of the mapped columns, saying which it expected', async () => {
    // Prepare
    s3.on(GetObjectCommand).resolves(body('name;value;timestamp\ncpu;1;1\n'));
    const ledger = fakeLedger();
    // Act
    const out = await ingestFile(task('eu/m.csv'), deps(ledger, [{ prefix: 'incoming/' }, EU]));
    // Assess
    expect(out.status).toBe('FAILED');
    expect(out.status === 'FAILED' && out.error).toMatch(
      /CSV header names none of the columns metric, val, ts/,
    );
    expect(s3).not.toHaveReceivedCommand(CopyObjectCommand);
  });

  it('records an after-success error without failing the file, and runs it again on a redelivery', async () => {
    // Prepare
    s3.on(GetObjectCommand).resolves(body('name,value,timestamp\ncpu,1,1\n'));
    s3.on(GetObjectTaggingCommand).resolves({ TagSet: [{ Key: 'team', Value: 'ops' }] });
    s3.on(PutObjectTaggingCommand).rejectsOnce(Object.assign(new Error('denied'), { name: 'AccessDenied' }));
    const routes: S3Route[] = [{ prefix: 'incoming/', afterSuccess: 'tag' }];
    const first = fakeLedger();
    // Act
    const out = await ingestFile(task('incoming/m.csv'), deps(first, routes));
    const again = fakeLedger({
      claimed: false,
      reason: 'duplicate',
      item: { afterSuccess: { action: 'tag', at: 't', error: 'AccessDenied: denied' } },
    } as unknown as Awaited<ReturnType<Ledger['claim']>>);
    const redelivered = await ingestFile(task('incoming/m.csv'), deps(again, routes));
    // Assess
    expect(out.status).toBe('SUCCESS');
    expect(first.recordAfterSuccess).toHaveBeenCalledWith(expect.anything(), {
      action: 'tag',
      at: expect.any(String),
      error: expect.stringContaining('denied'),
    });
    expect(redelivered.status).toBe('SKIPPED');
    expect(s3).toHaveReceivedCommandWith(PutObjectTaggingCommand, {
      Key: 'incoming/m.csv',
      VersionId: 'v1',
      Tagging: {
        TagSet: [
          { Key: 'team', Value: 'ops' },
          { Key: 'pulse-ingested', Value: 'true' },
        ],
      },
    });
    expect(again.recordAfterSuccess).toHaveBeenCalledWith(expect.anything(), {
      action: 'tag',
      at: expect.any(String),
    });
  });

  it('does not act again on a redelivery whose item records the action done', async () => {
    // Prepare
    const done = fakeLedger({
      claimed: false,
      reason: 'duplicate',
      item: { afterSuccess: { action: 'archive', at: 't', target: 'archive/eu/m.csv' } },
    } as unknown as Awaited<ReturnType<Ledger['claim']>>);
    // Act
    const out = await ingestFile(task('eu/m.csv'), deps(done, [{ prefix: 'incoming/' }, EU]));
    // Assess
    expect(out).toEqual({ status: 'SKIPPED', reason: 'duplicate' });
    expect(s3).not.toHaveReceivedCommand(CopyObjectCommand);
    expect(s3).not.toHaveReceivedCommand(DeleteObjectCommand);
    expect(done.recordAfterSuccess).not.toHaveBeenCalled();
  });
});
