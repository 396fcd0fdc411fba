import { Readable } from 'node:stream';
import { gzipSync, zstdCompressSync } from 'node:zlib';
import { GetObjectCommand, HeadObjectCommand, PutObjectCommand, S3Client } from '@aws-sdk/client-s3';
import { SendMessageBatchCommand, SQSClient } from '@aws-sdk/client-sqs';
import { sdkStreamMixin } from '@smithy/core/serde';
import { mockClient } from 'aws-sdk-client-mock';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { FileBusyError, LeaseLostError } from '#shared/errors.ts';
import type { Ledger } from '#shared/ledger.ts';
import { ingestFile } from '../../../functions/s3-trigger/ingest.ts';
import { INGEST_DEFAULTS } from '../../helpers/ingest.ts';
import { fakeLedger } from '../../helpers/ledger.ts';
import { quietObservability } from '../../helpers/observability.ts';
import { decodeSignals } from '../../helpers/signals.ts';

const task = (key: string) => ({ bucket: 'b', key, etag: 'e1', size: 100, versionId: 'v1' });
const body = (data: string | Buffer) => ({ Body: sdkStreamMixin(Readable.from([Buffer.from(data)])) });
const CSV =
  'name,value,timestamp,host\r\ncpu,1,2024-01-01T00:00:00Z,a\r\ncpu,oops,2024-01-01T00:00:01Z,b\r\ncpu,3,1704067202,c\r\n';
/** CSV's rows as JSON records. */
const ROWS = [
  { name: 'cpu', value: 1, timestamp: '2024-01-01T00:00:00Z', host: 'a' },
  { name: 'cpu', value: 'oops', timestamp: '2024-01-01T00:00:01Z', host: 'b' },
  { name: 'cpu', value: 3, timestamp: 1704067202, host: 'c' },
];

describe('ingestFile', () => {
  const s3 = mockClient(S3Client);
  const sqs = mockClient(SQSClient);
  let obs: ReturnType<typeof quietObservability>;
  const deps = (ledger: ReturnType<typeof fakeLedger>) => ({
    s3: new S3Client({ region: 'us-east-1' }),
    sqs: new SQSClient({ region: 'us-east-1' }),
    ledger: ledger as unknown as Ledger,
    logger: obs.logger,
    metrics: obs.metrics,
    config: {
      ...INGEST_DEFAULTS,
      signalsQueueUrl: 'q',
      quarantineBucket: 'qb',
      heartbeatSeconds: 20,
      maxMessageBytes: 256 * 1024,
    },
    owner: 'w1',
  });
  const sentSignals = () =>
    sqs
      .commandCalls(SendMessageBatchCommand)
      .flatMap((c) => c.args[0].input.Entries ?? [])
      .flatMap((e) => decodeSignals(e.MessageBody ?? ''));
  beforeEach(() => {
    obs = quietObservability();
    sqs.on(SendMessageBatchCommand).resolves({ Failed: [] });
    s3.on(PutObjectCommand).resolves({});
  });
  afterEach(() => {
    s3.reset();
    sqs.reset();
  });

  it('claims, sends valid rows packed, quarantines bad ones with reasons and completes the ledger item', async () => {
    // Prepare
    s3.on(GetObjectCommand).resolves(body(CSV));
    const ledger = fakeLedger();
    // Act
    const out = await ingestFile(task('incoming/a.csv'), deps(ledger));
    // Assess
    expect(out.status).toBe('SUCCESS');
    expect(ledger.claim).toHaveBeenCalledWith(
      { bucket: 'b', key: 'incoming/a.csv', etag: 'e1', versionId: 'v1' },
      'w1',
      { versionId: 'v1', size: 100 },
    );
    expect(s3).toHaveReceivedCommandWith(GetObjectCommand, {
      Bucket: 'b',
      Key: 'incoming/a.csv',
      VersionId: 'v1',
    });
    const signals = sentSignals();
    expect(signals.map((s: { id: string }) => s.id)).toEqual([
      's3://b/incoming/a.csv@e1#1',
      's3://b/incoming/a.csv@e1#3',
    ]);
    expect(signals[1]).toMatchObject({
      value: 3,
      source: 'incoming/a.csv',
      timestamp: '2024-01-01T00:00:02.000Z',
      attributes: { host: 'c' },
    });
    expect(sqs).toHaveReceivedCommandTimes(SendMessageBatchCommand, 1);
    const reject = s3.commandCalls(PutObjectCommand)[0]?.args[0].input;
    expect(reject?.Key).toBe('rejects/s3/b/incoming/a.csv@e1.ndjson');
    expect(ledger.succeed).toHaveBeenCalledWith(
      expect.anything(),
      'w1',
      expect.objectContaining({
        records: 2,
        rejected: 1,
        bytesRead: Buffer.byteLength(CSV),
        firstErrors: [expect.stringMatching(/^row 2: value must be wholly numeric/)],
        rejectsKey: 'rejects/s3/b/incoming/a.csv@e1.ndjson',
      }),
    );
    expect(obs.total('RecordsIngested')).toBe(2);
    expect(obs.total('RecordsRejected')).toBe(1);
  });

  it('reads a gzip-compressed file', async () => {
    s3.on(GetObjectCommand).resolves(body(gzipSync(CSV)));
    const out = await ingestFile(task('incoming/a.csv.gz'), deps(fakeLedger()));
    expect(out.status).toBe('SUCCESS');
    expect(sentSignals()).toHaveLength(2);
  });

  it('reads a gzip file with bytes after its end, and keeps those bytes as a reject with where they start', async () => {
    // Prepare: a line end appended to the compressed file, as some tools do.
    const gz = gzipSync(CSV);
    s3.on(GetObjectCommand).resolves(body(Buffer.concat([gz, Buffer.from('\n')])));
    const ledger = fakeLedger();

    // Act
    const out = await ingestFile(task('incoming/a.csv.gz'), deps(ledger));

    // Assess: every row as usual, and the extra byte quarantined (a file-level reject, without a row).
    expect(out.status).toBe('SUCCESS');
    expect(sentSignals()).toHaveLength(2);
    const reason = `gzip: 1 byte after the end of the compressed data (from byte ${gz.length}) is not gzip (hex 0a): left out; every record before it was read`;
    expect(ledger.succeed).toHaveBeenCalledWith(
      expect.anything(),
      'w1',
      expect.objectContaining({
        records: 2,
        rejected: 2,
        firstErrors: [expect.stringMatching(/^row 2: /), reason],
      }),
    );
    const rejects = String(s3.commandCalls(PutObjectCommand)[0]?.args[0].input.Body)
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l));
    expect(rejects[1]).toMatchObject({ ref: 's3://b/incoming/a.csv.gz@e1', reason });
    expect(rejects[1].row).toBeUndefined();
  });

  it('reads a plain-named object stored with Content-Encoding gzip in any spelling (GZIP, x-gzip)', async () => {
    for (const ContentEncoding of ['gzip', 'GZIP', ' x-gzip ']) {
      sqs.resetHistory();
      s3.on(GetObjectCommand).resolves({ ...body(gzipSync(CSV)), ContentEncoding });
      const out = await ingestFile(task('incoming/a.csv'), deps(fakeLedger()));
      expect({ ContentEncoding, status: out.status }).toEqual({ ContentEncoding, status: 'SUCCESS' });
      expect(sentSignals()).toHaveLength(2);
    }
  });

  it.each([
    ['incoming/a.csv.zst', CSV],
    ['incoming/a.ndjson.zst', `${ROWS.map((r) => JSON.stringify(r)).join('\n')}\n`],
    ['incoming/a.json.zst', JSON.stringify(ROWS)],
  ])('reads a zstd-compressed %s', async (key, text) => {
    // Prepare
    s3.on(GetObjectCommand).resolves(body(zstdCompressSync(text)));
    const ledger = fakeLedger();

    // Act
    const out = await ingestFile(task(key), deps(ledger));

    // Assess
    expect(out.status).toBe('SUCCESS');
    expect(sentSignals().map((s) => [s.name, s.value])).toEqual([
      ['cpu', 1],
      ['cpu', 3],
    ]);
    expect(ledger.succeed).toHaveBeenCalledWith(
      expect.anything(),
      'w1',
      expect.objectContaining({ records: 2, rejected: 1 }),
    );
  });

  it('reads a plain-named object stored with Content-Encoding zstd (in any letter case)', async () => {
    for (const ContentEncoding of ['zstd', 'ZSTD']) {
      // Prepare
      sqs.resetHistory();
      s3.on(GetObjectCommand).resolves({ ...body(zstdCompressSync(CSV)), ContentEncoding });

      // Act
      const out = await ingestFile(task('incoming/a.csv'), deps(fakeLedger()));

      // Assess
      expect({ ContentEncoding, status: out.status }).toEqual({ ContentEncoding, status: 'SUCCESS' });
      expect(sentSignals()).toHaveLength(2);
    }
  });

  it('ends a truncated .csv.zst FAILED as truncated, not as an empty file', async () => {
    // Prepare: Node's zstd decoder alone would read nothing and say nothing
    const z = zstdCompressSync(CSV);
    s3.on(GetObjectCommand).resolves(body(z.subarray(0, z.length - 4)));

    // Act
    const out = await ingestFile(task('incoming/a.csv.zst'), deps(fakeLedger()));

    // Assess
    expect(out.status).toBe('FAILED');
    expect(out.status === 'FAILED' && out.error).toMatch(
      /^MalformedFileError: zstd: the file ends inside the/,
    );
  });

  it('skips a duplicate event for a version already ingested, sending nothing', async () => {
    const ledger = fakeLedger({ claimed: false, reason: 'duplicate' });
    const out = await ingestFile(task('incoming/a.csv'), deps(ledger));
    expect(out).toEqual({ status: 'SKIPPED', reason: 'duplicate' });
    expect(ledger.recordDuplicate).toHaveBeenCalled();
    expect(s3).not.toHaveReceivedCommand(GetObjectCommand);
    expect(sqs).not.toHaveReceivedCommand(SendMessageBatchCommand);
  });

  it('leaves an event for a file another worker is ingesting to be retried', async () => {
    const ledger = fakeLedger({ claimed: false, reason: 'in-progress' });
    await expect(ingestFile(task('incoming/a.csv'), deps(ledger))).rejects.toBeInstanceOf(FileBusyError);
    expect(s3).not.toHaveReceivedCommand(GetObjectCommand);
  });

  it('ends a malformed file FAILED at once with where it broke, after sending the rows before it', async () => {
    // Prepare
    s3.on(GetObjectCommand).resolves(body('name,value,timestamp\ncpu,1,0\ncpu,"2,0\n'));
    const ledger = fakeLedger();
    // Act
    const out = await ingestFile(task('incoming/bad.csv'), deps(ledger));
    // Assess
    expect(out.status).toBe('FAILED');
    expect(ledger.fail).toHaveBeenCalledWith(
      expect.anything(),
      'w1',
      expect.objectContaining({
        retryable: false,
        errorType: 'MalformedFileError',
        errorMessage: expect.stringMatching(/line|byte|row/),
        records: 1,
      }),
    );
    expect(sentSignals()).toHaveLength(1);
    const lines = String(s3.commandCalls(PutObjectCommand)[0]?.args[0].input.Body ?? '');
    expect(lines).toMatch(/file failed: MalformedFileError/);
  });

  it('ends the file FAILED with the reason when SQS refuses a message for good, instead of throwing', async () => {
    // Prepare
    s3.on(GetObjectCommand).resolves(body(CSV));
    sqs
      .on(SendMessageBatchCommand)
      .resolves({ Failed: [{ Id: '0', Code: 'InvalidMessageContents', SenderFault: true, Message: 'bad' }] });
    const ledger = fakeLedger();
    // Act
    const out = await ingestFile(task('incoming/a.csv'), deps(ledger));
    // Assess
    expect(out).toMatchObject({
      status: 'FAILED',
      error: expect.stringMatching(/SQS rejected a message: InvalidMessageContents/),
    });
    expect(ledger.fail).toHaveBeenCalledWith(
      expect.anything(),
      'w1',
      expect.objectContaining({ retryable: false, errorType: 'PermanentError' }),
    );
    const quarantined = s3
      .commandCalls(PutObjectCommand)
      .map((c) => String(c.args[0].input.Body ?? ''))
      .join('');
    expect(quarantined).toMatch(/file failed: PermanentError: SQS rejected a message/);
  });

  it('retries the file when the send before a permanent failure fails transiently', async () => {
    // Prepare: a row, then a quoting error; the row's message gets no answer SQS can be sure of
    s3.on(GetObjectCommand).resolves(body('name,value,timestamp\ncpu,1,0\ncpu,"2,0\n'));
    sqs.on(SendMessageBatchCommand).rejects(
      Object.assign(new Error('throttled'), {
        name: 'ThrottlingException',
        $metadata: { httpStatusCode: 400 },
      }),
    );
    const ledger = fakeLedger();
    // Act / Assess: not ended FAILED with that row unsent, but left for the event's next delivery
    await expect(ingestFile(task('incoming/bad.csv'), deps(ledger))).rejects.toThrow('throttled');
    expect(ledger.fail).toHaveBeenCalledWith(
      expect.anything(),
      'w1',
      expect.objectContaining({ retryable: true, errorType: 'ThrottlingException' }),
    );
  });

  it('quarantines a record nested too deeply to be written back as JSON, and reads on', async () => {
    // Prepare: JSON.parse reads the nesting, JSON.stringify (the attribute, then the reject) cannot
    const deep = `{"name":"cpu","value":1,"timestamp":0,"x":${'['.repeat(100_000)}${']'.repeat(100_000)}}`;
    s3.on(GetObjectCommand).resolves(body(`${deep}\n{"name":"cpu","value":2,"timestamp":0}\n`));
    const ledger = fakeLedger();
    // Act
    const out = await ingestFile(task('incoming/deep.ndjson'), deps(ledger));
    // Assess
    expect(out).toMatchObject({ status: 'SUCCESS', stats: { records: 1, rejected: 1 } });
    expect(sentSignals()).toHaveLength(1);
    const lines = s3
      .commandCalls(PutObjectCommand)
      .map((c) => String(c.args[0].input.Body ?? ''))
      .join('')
      .trim()
      .split('\n');
    expect(lines).toHaveLength(1);
    expect(JSON.parse(lines[0] ?? '{}')).toMatchObject({
      ref: 's3://b/incoming/deep.ndjson@e1#1',
      row: 1,
      reason: expect.stringMatching(/^x cannot be kept as an attribute/),
      recordOmitted: expect.stringMatching(/^the record could not be written as JSON/),
    });
  });

  it('ends a CSV file without a header FAILED, rather than taking its first row for the header', async () => {
    // Prepare
    s3.on(GetObjectCommand).resolves(body('cpu,1,2024-01-01T00:00:00Z\n'));
    const ledger = fakeLedger();
    // Act
    const out = await ingestFile(task('incoming/headless.csv'), deps(ledger));
    // Assess
    expect(out).toMatchObject({
      status: 'FAILED',
      error: expect.stringContaining('CSV header names none of the columns name, value, timestamp'),
    });
    expect(sentSignals()).toHaveLength(0);
  });

  it('marks a transient failure retryable and throws so that SQS redelivers the event', async () => {
    s3.on(GetObjectCommand).rejects(
      Object.assign(new Error('slow down'), { name: 'SlowDown', $metadata: { httpStatusCode: 503 } }),
    );
    const ledger = fakeLedger();
    await expect(ingestFile(task('incoming/a.csv'), deps(ledger))).rejects.toThrow('slow down');
    expect(ledger.fail).toHaveBeenCalledWith(
      expect.anything(),
      'w1',
      expect.objectContaining({ retryable: true, errorType: 'SlowDown' }),
    );
  });

  it('records a file of an unsupported type as SKIPPED without claiming it', async () => {
    const ledger = fakeLedger();
    const out = await ingestFile(task('incoming/notes.txt'), deps(ledger));
    expect(out.status).toBe('SKIPPED');
    expect(ledger.skip).toHaveBeenCalledWith(
      expect.anything(),
      expect.stringMatching(/unsupported file type/),
      undefined,
      expect.anything(),
    );
    expect(ledger.claim).not.toHaveBeenCalled();
  });

  it('records a version deleted before it was read as SKIPPED', async () => {
    s3.on(GetObjectCommand).rejects(
      Object.assign(new Error('gone'), { name: 'NoSuchVersion', $metadata: { httpStatusCode: 404 } }),
    );
    const ledger = fakeLedger();
    const out = await ingestFile(task('incoming/a.csv'), deps(ledger));
    expect(out).toEqual({ status: 'SKIPPED', reason: 'object gone' });
    expect(ledger.skip).toHaveBeenCalledWith(
      expect.anything(),
      expect.stringMatching(/deleted or overwritten/),
      'w1',
      expect.anything(),
    );
  });

  it('stops quietly when its lease was taken over', async () => {
    s3.on(GetObjectCommand).resolves(body(CSV));
    const ledger = fakeLedger();
    ledger.succeed.mockRejectedValue(new LeaseLostError('lost'));
    const out = await ingestFile(task('incoming/a.csv'), deps(ledger));
    expect(out).toEqual({ status: 'SKIPPED', reason: 'lease-lost' });
  });

  it('never ingests objects under the rejects prefix', async () => {
    const ledger = fakeLedger();
    const out = await ingestFile(task('rejects/s3/x.csv'), deps(ledger));
    expect(out.status).toBe('SKIPPED');
    expect(ledger.claim).not.toHaveBeenCalled();
  });

  describe('attempts running out', () => {
    const slowDown = () =>
      Object.assign(new Error('slow down'), { name: 'SlowDown', $metadata: { httpStatusCode: 503 } });
    const RANGE = { kind: 'byte' as const, start: 100, end: 200, row: 2, endRow: 4 };

    it('ends a file failing transiently on its last attempt FAILED for good, and acknowledges the event', async () => {
      // Prepare
      s3.on(GetObjectCommand).rejects(slowDown());
      const ledger = fakeLedger({ claimed: true, attempt: 3, lastAttempt: true });
      ledger.fail.mockResolvedValue('final');
      // Act
      const out = await ingestFile(task('incoming/a.csv'), deps(ledger));
      // Assess: resolved (the message is deleted), not thrown; counted as a failed file.
      expect(out).toMatchObject({ status: 'FAILED', error: expect.stringMatching(/^SlowDown: slow down/) });
      expect(ledger.fail).toHaveBeenCalledTimes(1);
      expect(ledger.fail).toHaveBeenCalledWith(
        expect.anything(),
        'w1',
        expect.objectContaining({
          retryable: false,
          errorType: 'SlowDown',
          errorMessage: 'slow down (still failing after 3 attempts: no attempt is left)',
        }),
      );
      expect(obs.total('FilesFailed')).toBe(1);
      const quarantined = String(s3.commandCalls(PutObjectCommand)[0]?.args[0].input.Body ?? '');
      expect(quarantined).toMatch(/file failed: SlowDown: slow down \(still failing after 3 attempts/);
    });

    it('acknowledges a file the ledger ended for good because its transient failure found no attempt left', async () => {
      // Prepare: the claim did not know (the ledger decides on its own item).
      s3.on(GetObjectCommand).rejects(slowDown());
      const ledger = fakeLedger({ claimed: true, attempt: 2 });
      ledger.fail.mockResolvedValue('final');
      // Act
      const out = await ingestFile(task('incoming/a.csv'), deps(ledger));
      // Assess
      expect(out).toMatchObject({ status: 'FAILED' });
      expect(ledger.fail).toHaveBeenCalledWith(
        expect.anything(),
        'w1',
        expect.objectContaining({ retryable: true }),
      );
      expect(obs.total('FilesFailed')).toBe(1);
    });

    it('ends a part failing transiently on its last attempt for good, and its file when it was the last part', async () => {
      // Prepare
      s3.on(GetObjectCommand).rejects(slowDown());
      const ledger = fakeLedger({ claimed: true, attempt: 3, lastAttempt: true, range: RANGE });
      ledger.fail.mockResolvedValue('final');
      ledger.finishSplit.mockResolvedValue({
        status: 'FAILED',
        stats: { records: 3, rejected: 0, bytesRead: 100, durationMs: 1, firstErrors: [] },
        parts: 2,
        partsFailed: 1,
      });
      // Act
      const out = await ingestFile({ ...task('incoming/a.csv'), part: 1 }, deps(ledger));
      // Assess
      expect(out).toMatchObject({ status: 'FAILED', part: 1, file: 'FAILED' });
      expect(ledger.fail).toHaveBeenCalledWith(
        { bucket: 'b', key: 'incoming/a.csv', etag: 'e1', versionId: 'v1', part: 1 },
        'w1',
        expect.objectContaining({ retryable: false, errorType: 'SlowDown' }),
      );
      expect(obs.total('FilesFailed')).toBe(1);
    });
  });

  describe('rejects keys and quarantine failures', () => {
    const longKey = `incoming/${'k'.repeat(977)}.csv`;

    it("quarantines the rejects of a file whose key is near S3's limit under a bounded key, the same each attempt", async () => {
      // Prepare: a 990-byte object key.
      expect(Buffer.byteLength(longKey)).toBe(990);
      s3.on(GetObjectCommand).callsFake(() => body(CSV));
      // Act
      const first = await ingestFile(task(longKey), deps(fakeLedger()));
      const again = await ingestFile(task(longKey), deps(fakeLedger({ claimed: true, attempt: 2 })));
      // Assess
      expect(first.status).toBe('SUCCESS');
      expect(again.status).toBe('SUCCESS');
      const [key, keyAgain] = s3.commandCalls(PutObjectCommand).map((c) => String(c.args[0].input.Key));
      expect(Buffer.byteLength(String(key))).toBeLessThanOrEqual(1024 - 48);
      expect(key).toMatch(/^rejects\/s3\/b\/incoming\/kkkk.*~[0-9a-f]{32}\.ndjson$/);
      expect(keyAgain).toBe(key);
    });

    it('ends the file FAILED with the real reason when S3 refuses its rejects object, instead of throwing', async () => {
      // Prepare
      s3.on(GetObjectCommand).resolves(body(CSV));
      s3.on(PutObjectCommand).rejects(
        Object.assign(new Error('Your key is too long'), {
          name: 'KeyTooLongError',
          $metadata: { httpStatusCode: 400 },
        }),
      );
      const ledger = fakeLedger();
      // Act
      const out = await ingestFile(task('incoming/a.csv'), deps(ledger));
      // Assess: FAILED for good, naming the object and S3's answer; never a lease left to expire.
      expect(out.status).toBe('FAILED');
      expect(ledger.succeed).not.toHaveBeenCalled();
      expect(ledger.fail).toHaveBeenCalledTimes(1);
      expect(ledger.fail).toHaveBeenCalledWith(
        expect.anything(),
        'w1',
        expect.objectContaining({
          retryable: false,
          errorType: 'QuarantineError',
          errorMessage:
            'rejects could not be written to s3://qb/rejects/s3/b/incoming/a.csv@e1.ndjson: KeyTooLongError: Your key is too long',
          records: 2,
          rejected: 1,
        }),
      );
      expect(obs.total('FilesFailed')).toBe(1);
    });

    it('retries the file when its rejects object fails transiently and attempts are left', async () => {
      // Prepare
      s3.on(GetObjectCommand).resolves(body(CSV));
      s3.on(PutObjectCommand).rejects(
        Object.assign(new Error('slow down'), { name: 'SlowDown', $metadata: { httpStatusCode: 503 } }),
      );
      const ledger = fakeLedger();
      // Act / Assess
      await expect(ingestFile(task('incoming/a.csv'), deps(ledger))).rejects.toThrow(
        /rejects could not be written/,
      );
      expect(ledger.fail).toHaveBeenCalledWith(
        expect.anything(),
        'w1',
        expect.objectContaining({ retryable: true, errorType: 'QuarantineError' }),
      );
    });
  });

  describe('the version read', () => {
    it('reads the version it names only under the ETag it names', async () => {
      // Prepare
      s3.on(GetObjectCommand).resolves(body(CSV));
      // Act
      await ingestFile(task('incoming/a.csv'), deps(fakeLedger()));
      // Assess
      expect(s3).toHaveReceivedCommandWith(GetObjectCommand, { VersionId: 'v1', IfMatch: '"e1"' });
    });

    it('skips, as gone, a version whose ETag is not the one its message names (412)', async () => {
      // Prepare
      s3.on(GetObjectCommand).rejects(
        Object.assign(new Error('At least one of the pre-conditions you specified did not hold'), {
          name: 'PreconditionFailed',
          $metadata: { httpStatusCode: 412 },
        }),
      );
      const ledger = fakeLedger();
      // Act
      const out = await ingestFile(task('incoming/a.csv'), deps(ledger));
      // Assess
      expect(out).toEqual({ status: 'SKIPPED', reason: 'object gone' });
      expect(sentSignals()).toHaveLength(0);
    });

    it('looks up the ETag of the version an event names, not of the current version', async () => {
      // Prepare
      s3.on(HeadObjectCommand).resolves({ ETag: '"e0"', ContentLength: 100, VersionId: 'v0' });
      s3.on(GetObjectCommand).resolves(body(CSV));
      const ledger = fakeLedger();
      // Act
      await ingestFile({ bucket: 'b', key: 'incoming/a.csv', versionId: 'v0' }, deps(ledger));
      // Assess
      expect(s3).toHaveReceivedCommandWith(HeadObjectCommand, { VersionId: 'v0' });
      expect(s3).toHaveReceivedCommandWith(GetObjectCommand, { VersionId: 'v0', IfMatch: '"e0"' });
    });

    it("measures a continued file from the first event's time, which the ledger keeps", async () => {
      // Prepare: a continuation message without the event time.
      s3.on(GetObjectCommand).resolves(body(CSV));
      const eventTime = new Date(Date.now() - 60_000).toISOString();
      // Act
      await ingestFile(task('incoming/a.csv'), deps(fakeLedger({ claimed: true, attempt: 1, eventTime })));
      // Assess
      expect(obs.recorded.FileLatency?.[0]).toBeGreaterThanOrEqual(60_000);
    });
  });
});
