import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { Ledger, type LedgerItem } from '#shared/ledger.ts';
import { readLedgerCounts, settleCounts } from '#shared/ledger-counters.ts';
import { resetForRetry } from '#shared/ledger-retry.ts';
import { destroyClients, makeClients } from '../../local/runtime/clients.ts';
import { resourceNames, uniquePrefix } from '../../local/runtime/names.ts';
import { createResources, deleteResources } from '../../local/runtime/resources.ts';

/**
 * The ledger's counters (shared/ledger-counters.ts) against DynamoDB's own evaluation of the conditions and
 * transactions (moto): many files moved through the ledger at once by concurrent workers, each transition
 * settled, and settles repeated as a retried write or a second caller would, must leave exact totals.
 */

const SHARDS = 4;
const OPTS = { shards: SHARDS, tries: 50 };

describe('ledger counters under concurrent writers', () => {
  const clients = makeClients(inject('motoEndpoint'));
  const names = resourceNames(uniquePrefix('lct'));
  const settle = (file: Parameters<typeof settleCounts>[2], item?: Parameters<typeof settleCounts>[4]) =>
    settleCounts(clients.doc, names.ledgerTable, file, OPTS, item);
  const ledger = new Ledger(clients.doc, names.ledgerTable, { leaseSeconds: 60, maxAttempts: 3, settle });

  beforeAll(async () => {
    await createResources(clients, names);
  });
  afterAll(async () => {
    await deleteResources(clients, names);
    destroyClients(clients);
  });

  it('counts every file once in its final status, with exact sums, however many writers and settles race', async () => {
    // Prepare
    const FILES = 60;
    const files = Array.from({ length: FILES }, (_, i) => ({
      bucket: 'b',
      key: `incoming/count-${i}.csv`,
      etag: 'e1',
    }));
    // Act
    await Promise.all(
      files.map(async (file, i) => {
        // A duplicated event's claim is refused (moto does not serialize plain conditional writes with each
        // other, so the two claims are not raced here: that is DynamoDB's guarantee, not the counters').
        const owner = `w${i}`;
        expect((await ledger.claim(file, owner)).claimed).toBe(true);
        expect((await ledger.claim(file, `${owner}-dup`)).claimed).toBe(false);
        const stats = {
          records: i + 1,
          rejected: i % 3,
          bytesRead: 100 * (i + 1),
          durationMs: 1,
          firstErrors: [],
        };
        let ended: LedgerItem;
        if (i % 5 === 0) {
          await ledger.fail(file, owner, {
            ...stats,
            errorType: 'MalformedFileError',
            errorMessage: 'x',
            retryable: false,
          });
        } else if (i % 7 === 0) {
          await ledger.skip(file, 'unsupported', owner);
        } else {
          await ledger.succeed(file, owner, stats);
        }
        ended = (await ledger.get(file)) as LedgerItem;
        // A retried settle and a concurrent one (another worker's, the CLI's) change nothing more; nor does
        // one that read the item before the hook's settle committed (the race two settlers run).
        await Promise.all([
          settle(file),
          settle(file),
          settle(file),
          settle(file, { ...ended, counted: undefined }),
        ]);
      }),
    );
    const counts = await readLedgerCounts(clients.doc, names.ledgerTable, SHARDS);
    // Assess
    const failed = files.filter((_f, i) => i % 5 === 0).length;
    const skipped = files.filter((_f, i) => i % 5 !== 0 && i % 7 === 0).length;
    expect(counts.files).toEqual({
      DISCOVERED: 0,
      PROCESSING: 0,
      SPLIT: 0,
      SUCCESS: FILES - failed - skipped,
      FAILED: failed,
      SKIPPED: skipped,
    });
    // A skipped file's counts are zero (skip sets them so); the others count what they ended with.
    const ended = files.map((_f, i) => i).filter((i) => i % 5 === 0 || i % 7 !== 0);
    expect(counts.records).toBe(ended.reduce((n, i) => n + i + 1, 0));
    expect(counts.rejected).toBe(ended.reduce((n, i) => n + (i % 3), 0));
    expect(counts.bytesRead).toBe(ended.reduce((n, i) => n + 100 * (i + 1), 0));
  });

  it('moves a file back out of FAILED when an operator resets it for a retry, and into SUCCESS when the retry ends', async () => {
    // Prepare
    const before = await readLedgerCounts(clients.doc, names.ledgerTable, SHARDS);
    const file = { bucket: 'b', key: 'incoming/retried.csv', etag: 'e1' };
    await ledger.claim(file, 'w1');
    const stats = { records: 4, rejected: 4, bytesRead: 10, durationMs: 1, firstErrors: [] };
    await ledger.fail(file, 'w1', {
      ...stats,
      errorType: 'MalformedFileError',
      errorMessage: 'x',
      retryable: false,
    });
    const failed = await ledger.get(file);
    // Act
    await resetForRetry(
      clients.doc,
      names.ledgerTable,
      failed as NonNullable<typeof failed>,
      'op',
      new Date(),
    );
    await settle(file);
    const reset = await readLedgerCounts(clients.doc, names.ledgerTable, SHARDS);
    await ledger.claim(file, 'w2');
    await ledger.succeed(file, 'w2', { ...stats, rejected: 0 });
    const after = await readLedgerCounts(clients.doc, names.ledgerTable, SHARDS);
    // Assess
    expect(reset.files.FAILED).toBe(before.files.FAILED);
    expect(reset.files.DISCOVERED).toBe(before.files.DISCOVERED + 1);
    expect(reset.rejected).toBe(before.rejected);
    expect(after.files.SUCCESS).toBe(before.files.SUCCESS + 1);
    expect(after.files.DISCOVERED).toBe(before.files.DISCOVERED);
    expect(after.records).toBe(before.records + 4);
    expect(after.rejected).toBe(before.rejected);
  });
});
