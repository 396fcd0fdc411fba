import { UpdateCommand } from '@aws-sdk/lib-dynamodb';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { type FileRef, Ledger, type LedgerItem, type PartRange, wholeFile } from '#shared/ledger.ts';
import { destroyClients, makeClients } from '../../local/runtime/clients.ts';
import { resourceNames, uniquePrefix } from '../../local/runtime/names.ts';
import { createResources, deleteResources } from '../../local/runtime/resources.ts';

/**
 * The guard for the class "an item left in limbo": every way an attempt on a ledger item can end (each
 * Ledger method that ends one, and a crash that writes nothing), on a whole file and on a part of a split
 * file, on an early attempt and on the last, with DynamoDB's own evaluation of the conditions (moto).
 * After each, the next delivery of the event must either claim the item again or find it ended for good:
 * SUCCESS, SKIPPED, SPLIT (a file whose parts carry it) or FAILED and not retryable, a part counted exactly
 * once on its file, which then ends. Anything else (FAILED and retryable with no attempt left, a part that
 * ended uncounted) is an item no event will ever move again, with no alarm.
 */

const MAX = 3;
const LEASE_SECONDS = 60;
const RANGE: PartRange = { kind: 'byte', start: 0, end: 100, row: 0, endRow: 4 };
const DONE = { records: 4, rejected: 0, bytesRead: 100, durationMs: 5, firstErrors: [] };

/** How an attempt can end. `part: false`: never done to a part (`refused`: the ledger throws if it is). */
interface Ending {
  readonly name: string;
  readonly run: (ledger: Ledger, ref: FileRef, owner: string) => Promise<unknown>;
  readonly part?: 'refused' | false;
  readonly file?: false;
}

const ENDINGS: readonly Ending[] = [
  { name: 'succeed', run: (l, ref, owner) => l.succeed(ref, owner, DONE) },
  {
    name: 'fail, permanent',
    run: (l, ref, owner) =>
      l.fail(ref, owner, { ...DONE, errorType: 'MalformedFileError', errorMessage: 'bad', retryable: false }),
  },
  {
    name: 'fail, transient',
    run: (l, ref, owner) =>
      l.fail(ref, owner, { ...DONE, errorType: 'SlowDown', errorMessage: 'slow down', retryable: true }),
  },
  { name: 'crash (nothing written, the lease expires)', run: async () => undefined },
  { name: 'hand over', run: (l, ref, owner) => l.handOver(ref, owner) },
  { name: 'hand over without progress', run: (l, ref, owner) => l.handOver(ref, owner, false) },
  { name: 'skip (object gone)', run: (l, ref, owner) => l.skip(ref, 'gone', owner), part: 'refused' },
  {
    name: 'split: plan recorded, parts announced, SPLIT',
    run: async (l, ref, owner) => {
      await l.planParts(ref, owner, [RANGE]);
      await l.markSplit(ref, owner);
    },
    part: false,
  },
  {
    name: 'split: plan recorded, then a crash',
    run: (l, ref, owner) => l.planParts(ref, owner, [RANGE]),
    part: false,
  },
];

/** Every public Ledger method, by what it does; a new one must be placed here (and, if it ends an attempt, above). */
const ENDS_AN_ATTEMPT = ['succeed', 'fail', 'handOver', 'skip', 'markSplit'];
const OTHER_METHODS = [
  'constructor',
  'claim',
  'heartbeat',
  // Records a staged object of a large gzip file: progress, like a heartbeat, not an ending.
  'stage',
  'planParts',
  'finishSplit',
  'recordDuplicate',
  // Notes on a SUCCESS item what was done with its object after success: the attempt has ended already.
  'recordAfterSuccess',
  'discover',
  'get',
  'parts',
];

describe('ledger: no ending leaves an item in limbo', () => {
  const clients = makeClients(inject('motoEndpoint'));
  const names = resourceNames(uniquePrefix('ldg'));
  let clock = Date.now();
  const ledger = new Ledger(clients.doc, names.ledgerTable, {
    leaseSeconds: LEASE_SECONDS,
    maxAttempts: MAX,
    now: () => clock,
  });
  const leaseExpires = () => {
    clock += (LEASE_SECONDS + 1) * 1000;
  };
  let n = 0;

  beforeAll(async () => {
    await createResources(clients, names);
  });
  afterAll(async () => {
    await deleteResources(clients, names);
    destroyClients(clients);
  });

  /** A fresh item: a whole file, or the one part of a file split by a coordinator. */
  async function fresh(kind: 'file' | 'part'): Promise<FileRef> {
    const file = { bucket: 'b', key: `incoming/ledger-${++n}.csv`, etag: 'e1' };
    if (kind === 'file') return file;
    await ledger.claim(file, 'coordinator');
    await ledger.planParts(file, 'coordinator', [RANGE]);
    await ledger.markSplit(file, 'coordinator');
    return { ...file, part: 0 };
  }

  /** Claims `ref` for attempt `attempt`, the attempts before it having crashed. */
  async function claimAttempt(ref: FileRef, attempt: number): Promise<string> {
    for (let a = 1; a <= attempt; a++) {
      if (a > 1) leaseExpires();
      const claim = await ledger.claim(ref, `w${a}`);
      expect(claim, `claim of attempt ${a}`).toMatchObject({ claimed: true, attempt: a });
    }
    return `w${attempt}`;
  }

  /**
   * The next delivery, once every lease has expired: claims the item again, or finds it ended for good
   * (a part counted once on its file, which that delivery ends). A second delivery then changes nothing.
   */
  async function expectNotInLimbo(ref: FileRef): Promise<'claimable' | 'ended'> {
    leaseExpires();
    const claim = await ledger.claim(ref, 'next');
    if (claim.claimed) return 'claimable';
    const item = (await ledger.get(ref)) as LedgerItem;
    const state = `${item.status}${item.retryable !== undefined ? ` retryable=${item.retryable}` : ''} attempts=${item.attempts}`;
    expect(
      item.status === 'SUCCESS' ||
        item.status === 'SKIPPED' ||
        item.status === 'SPLIT' ||
        (item.status === 'FAILED' && item.retryable === false),
      `neither claimable nor ended for good: ${state} (claim: ${claim.reason})`,
    ).toBe(true);
    const again = await ledger.claim(ref, 'next-again');
    expect(again, 'a second delivery').toMatchObject({ claimed: false });
    expect(again.claimed === false && again.reason, 'ended once').not.toBe('exhausted');
    if (ref.part !== undefined) {
      const file = wholeFile(ref);
      expect(await ledger.get(file), 'the part counted once on its file').toMatchObject({
        partsDone: 1,
        partsFailed: item.status === 'FAILED' ? 1 : 0,
      });
      await ledger.finishSplit(file, 10);
      expect((await ledger.get(file))?.status, 'the file ended by its last part').toBe(
        item.status === 'SUCCESS' ? 'SUCCESS' : 'FAILED',
      );
    }
    return 'ended';
  }

  it('knows what each Ledger method does', () => {
    expect(Object.getOwnPropertyNames(Ledger.prototype).sort()).toEqual(
      [...ENDS_AN_ATTEMPT, ...OTHER_METHODS].sort(),
    );
  });

  for (const kind of ['file', 'part'] as const) {
    for (const attempt of [1, MAX]) {
      for (const ending of ENDINGS) {
        if (ending[kind] === false) continue;
        it(`a ${kind}, attempt ${attempt} of ${MAX}: ${ending.name}`, async () => {
          // Prepare
          const ref = await fresh(kind);
          const owner = await claimAttempt(ref, attempt);
          // Act
          const run = ending.run(ledger, ref, owner);
          // Assess
          if (kind === 'part' && ending.part === 'refused') await expect(run).rejects.toThrow();
          else await run;
          await expectNotInLimbo(ref);
        });
      }
    }
  }

  it('ends, once, an item an older version left FAILED and retryable with no attempt left', async () => {
    for (const kind of ['file', 'part'] as const) {
      // Prepare: the last attempt failed transiently under a version that wrote it retryable.
      const ref = await fresh(kind);
      await claimAttempt(ref, MAX);
      await clients.doc.send(
        new UpdateCommand({
          TableName: names.ledgerTable,
          Key: {
            pk: `s3://${ref.bucket}/${ref.key}`,
            sk: ref.part === undefined ? ref.etag : `${ref.etag}#part-000000`,
          },
          UpdateExpression:
            'SET #status = :failed, retryable = :true, errorType = :type, errorMessage = :msg REMOVE leaseOwner, leaseExpiresAt',
          ExpressionAttributeNames: { '#status': 'status' },
          ExpressionAttributeValues: {
            ':failed': 'FAILED',
            ':true': true,
            ':type': 'SlowDown',
            ':msg': 'slow down',
          },
        }),
      );
      // Act
      const outcome = await expectNotInLimbo(ref);
      // Assess
      expect(outcome, kind).toBe('ended');
      expect(await ledger.get(ref), kind).toMatchObject({
        status: 'FAILED',
        retryable: false,
        errorType: 'SlowDown',
        errorMessage: `slow down (still failing after ${MAX} attempts: no attempt is left)`,
      });
    }
  });
});
