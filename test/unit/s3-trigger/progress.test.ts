import { Readable } from 'node:stream';
import { gzipSync } from 'node:zlib';
import { GetObjectCommand, PutObjectCommand, S3Client } from '@aws-sdk/client-s3';
import { SendMessageBatchCommand, SQSClient } from '@aws-sdk/client-sqs';
import { sdkStreamMixin } from '@smithy/core/serde';
import { mockClient } from 'aws-sdk-client-mock';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { Checkpoint, Ledger } from '#shared/ledger.ts';
import { settings } from '#shared/settings.ts';
import { type IngestOutcome, ingestFile } from '../../../functions/s3-trigger/ingest.ts';
import { madeProgress } from '../../../functions/s3-trigger/progress.ts';
import { INGEST_DEFAULTS } from '../../helpers/ingest.ts';
import { fakeLedger } from '../../helpers/ledger.ts';
import { quietObservability } from '../../helpers/observability.ts';
import { decodeSignals } from '../../helpers/signals.ts';

/**
 * Hand-overs of a file resumed from a record checkpoint (a gzip file read whole, a JSON array): the records
 * before the checkpoint are parsed again, so each continuation redoes more. Skipping keeps the lease and
 * watches the clock; a continuation that made too little progress counts as an attempt, so the chain ends.
 *
 * The clock is fake and moves only with the bytes S3 serves (`MS_PER_CHUNK` per chunk of the compressed
 * object) and the signals SQS accepts (`MS_PER_SEND` per SendMessageBatch): a record parsed again to reach
 * the checkpoint costs its parse, a record read past it its parse and its send.
 */

const ROWS = 20_000;
const CHUNK_BYTES = 2048;
const MS_PER_CHUNK = 10;
const MS_PER_SEND = 20;
const MAX_ATTEMPTS = settings.ledger.maxAttempts;

function gzipCsv(rows: number): Buffer {
  const lines = ['name,value,timestamp,host'];
  for (let i = 1; i <= rows; i++) lines.push(`p,${i % 97},${1_700_000_000 + i},h${(i * 7919) % 10007}`);
  return gzipSync(`${lines.join('\n')}\n`);
}

describe('the progress rule', () => {
  it('counts a hand-over as progress when at least the configured share of its work was new', () => {
    // Prepare
    const share = settings.ledger.handOverMinFreshShare;
    // Act
    const cases = [
      { redone: 0, fresh: 1 },
      { redone: 900, fresh: 100 },
      { redone: 901, fresh: 99 },
      { redone: 5000, fresh: 0 },
      { redone: 0, fresh: 0 },
    ].map((w) => madeProgress(w, share));
    // Assess
    expect(share).toBe(0.1);
    expect(cases).toEqual([true, true, false, false, false]);
  });
});

describe('hand-overs from a record checkpoint (gzip CSV)', () => {
  const s3 = mockClient(S3Client);
  const sqs = mockClient(SQSClient);
  let obs: ReturnType<typeof quietObservability>;
  let clock = 0;
  const object = gzipCsv(ROWS);

  beforeEach(() => {
    obs = quietObservability();
    clock = 0;
    sqs.on(SendMessageBatchCommand).callsFake(() => {
      clock += MS_PER_SEND;
      return { Failed: [] };
    });
    s3.on(PutObjectCommand).resolves({});
    s3.on(GetObjectCommand).callsFake(() => {
      async function* paced() {
        for (let at = 0; at < object.length; at += CHUNK_BYTES) {
          clock += MS_PER_CHUNK;
          yield Buffer.from(object.subarray(at, at + CHUNK_BYTES));
        }
      }
      return { Body: sdkStreamMixin(Readable.from(paced())), ContentLength: object.length };
    });
  });
  afterEach(() => {
    s3.reset();
    sqs.reset();
  });

  /** One invocation with `budgetMs` of (fake) time, handing over with `marginMs` left. */
  const invoke = (ledger: ReturnType<typeof fakeLedger>, budgetMs: number, marginMs: number) => {
    const started = clock;
    return ingestFile(
      { bucket: 'b', key: 'incoming/long.csv.gz', etag: 'e1', size: object.length },
      {
        s3: new S3Client({ region: 'us-east-1' }),
        sqs: new SQSClient({ region: 'us-east-1' }),
        ledger: ledger as unknown as Ledger,
        logger: obs.logger,
        metrics: obs.metrics,
        config: {
          ...INGEST_DEFAULTS,
          signalsQueueUrl: 'q',
          quarantineBucket: 'qb',
          heartbeatSeconds: 0.05,
          checkpointSeconds: 3600,
          maxMessageBytes: 4096,
          handOverBeforeTimeoutSeconds: marginMs / 1000,
          maxAttempts: MAX_ATTEMPTS,
        },
        owner: 'w1',
        now: () => clock,
        remainingMs: () => budgetMs - (clock - started),
        continueLater: async () => {},
      },
    );
  };

  /**
   * Runs the file as SQS and the ledger would: each continuation claims it (attempts + 1) and resumes from
   * the last checkpoint; a hand-over gives the attempt back when it says it progressed. Stops after
   * `bound` invocations whatever happens.
   */
  async function chain(budgetMs: number, marginMs: number, bound: number) {
    let attempts = 0;
    let checkpoint: Checkpoint | undefined;
    const progressed: boolean[] = [];
    let out: IngestOutcome | undefined;
    let invocations = 0;
    let last: ReturnType<typeof fakeLedger> | undefined;
    while (invocations < bound && (out === undefined || out.status === 'CONTINUED')) {
      invocations++;
      attempts++;
      const ledger = fakeLedger({ claimed: true, attempt: attempts, ...(checkpoint ? { checkpoint } : {}) });
      ledger.heartbeat.mockImplementation(async (_f, _o, _s, c) => {
        if (c) checkpoint = structuredClone(c);
      });
      ledger.handOver.mockImplementation(async (_f: unknown, _o: string, p: boolean | undefined) => {
        // The ledger's default: a hand-over gives its attempt back.
        progressed.push(p ?? true);
        if (p ?? true) attempts--;
      });
      out = await invoke(ledger, budgetMs, marginMs);
      last = ledger;
    }
    return { out, invocations, attempts, progressed, ledger: last };
  }

  it('keeps the lease while it parses the records before its checkpoint again, before sending any', async () => {
    // Prepare: a checkpoint two thirds into the file, and time for all of it.
    const checkpoint: Checkpoint = {
      kind: 'record',
      position: 13_000,
      row: 13_000,
      records: 13_000,
      rejected: 0,
      bytesRead: 0,
      firstErrors: [],
      rejectsKeys: [],
      attempt: 1,
      savedAt: new Date(0).toISOString(),
    };
    const ledger = fakeLedger({ claimed: true, attempt: 2, checkpoint });
    const beatsBeforeFirstSend: number[] = [];
    sqs.on(SendMessageBatchCommand).callsFake(() => {
      clock += MS_PER_SEND;
      beatsBeforeFirstSend.push(ledger.heartbeat.mock.calls.length);
      return { Failed: [] };
    });
    // Act
    const out = await invoke(ledger, 60_000, 1_000);
    // Assess
    expect(out.status).toBe('SUCCESS');
    expect(beatsBeforeFirstSend[0]).toBeGreaterThanOrEqual(3);
    for (const call of ledger.heartbeat.mock.calls.slice(0, beatsBeforeFirstSend[0])) {
      expect(call[3]).toBeUndefined();
    }
    const ids = sqs
      .commandCalls(SendMessageBatchCommand)
      .flatMap((c) => c.args[0].input.Entries ?? [])
      .flatMap((e) => decodeSignals(e.MessageBody ?? '').map((s) => s.id));
    expect(ids).toHaveLength(ROWS - 13_000);
    expect(ids[0]).toBe('s3://b/incoming/long.csv.gz@e1#13001');
  });

  it('hands over while it skips when the time runs out there, keeping its checkpoint and counting the attempt', async () => {
    // Prepare: a checkpoint near the end; time enough for about a third of the file.
    const checkpoint: Checkpoint = {
      kind: 'record',
      position: 19_000,
      row: 19_000,
      records: 18_990,
      rejected: 10,
      bytesRead: 123,
      firstErrors: ['row 5: x'],
      rejectsKeys: ['rejects/s3/b/incoming/long.csv.gz@e1.ndjson'],
      attempt: 1,
      savedAt: new Date(0).toISOString(),
    };
    const ledger = fakeLedger({ claimed: true, attempt: 1, checkpoint });
    // Act
    const out = await invoke(ledger, 250, 100);
    // Assess
    expect(out).toMatchObject({ status: 'CONTINUED', checkpoint: { kind: 'record', position: 19_000 } });
    expect(ledger.handOver).toHaveBeenCalledWith(expect.anything(), 'w1', false);
    // No checkpoint written: the one resumed from stays, with its totals and rejects.
    expect(ledger.heartbeat.mock.calls.every((c) => c[3] === undefined)).toBe(true);
    expect(sqs.commandCalls(SendMessageBatchCommand)).toHaveLength(0);
    expect(ledger.succeed).not.toHaveBeenCalled();
    expect(ledger.fail).not.toHaveBeenCalled();
  });

  it('ends a file whose continuations only redo what came before: FAILED for good once its attempts run out', async () => {
    // Prepare: an invocation has time to parse about half of the file again, and to read a fifth of it
    // for the first time: each continuation redoes more and gets less far, until parsing again takes all
    // its time. On the code before the rule, every hand-over gave its attempt back and the chain never
    // ended (past that point each invocation read a record or two past the checkpoint).
    const bound = 40;
    // Act
    const run = await chain(450, 150, bound);
    // Assess
    expect(run.invocations).toBeLessThan(bound);
    expect(run.out).toMatchObject({ status: 'FAILED' });
    expect(run.out?.status === 'FAILED' && run.out.error).toMatch(
      /^NoProgressError: attempt 3 of 3 ran out of time after parsing \d+ records again/,
    );
    // Hand-overs that got on first, then the attempts that did not, until none was left.
    const stalled = run.progressed.indexOf(false);
    expect(stalled).toBeGreaterThan(0);
    expect(run.progressed.slice(stalled)).toEqual(Array(MAX_ATTEMPTS - 1).fill(false));
    expect(run.invocations).toBe(run.progressed.length + 1);
    expect(run.ledger?.fail.mock.calls[0]?.[2]).toMatchObject({
      retryable: false,
      errorType: 'NoProgressError',
    });
  });

  it('gives every attempt back to a chain whose continuations get on: SUCCESS in attempt 1', async () => {
    // Prepare: time to read more than half of the file for the first time per invocation.
    // Act
    const run = await chain(1_000, 150, 40);
    // Assess
    expect(run.out?.status).toBe('SUCCESS');
    expect(run.invocations).toBeGreaterThan(1);
    expect(run.progressed.every(Boolean)).toBe(true);
    expect(run.attempts).toBe(1);
  });
});
