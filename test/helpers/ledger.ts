import { vi } from 'vitest';
import type { Checkpoint, CompletedStats, FileStats, Ledger, Staging } from '#shared/ledger.ts';

/** A Ledger stand-in for ingest unit tests: every transition succeeds; the claim returns `claim`. */
export function fakeLedger(claim: Awaited<ReturnType<Ledger['claim']>> = { claimed: true, attempt: 1 }) {
  return {
    claim: vi.fn().mockResolvedValue(claim),
    heartbeat: vi
      .fn<(f: unknown, o: string, s: FileStats, c?: Checkpoint) => Promise<void>>()
      .mockResolvedValue(undefined),
    handOver: vi.fn().mockResolvedValue(undefined),
    stage: vi
      .fn<(f: unknown, o: string, s: FileStats, staging: Staging) => Promise<void>>()
      .mockResolvedValue(undefined),
    succeed: vi
      .fn<(f: unknown, o: string, r: CompletedStats) => Promise<void>>()
      .mockResolvedValue(undefined),
    fail: vi.fn().mockResolvedValue(undefined),
    skip: vi.fn().mockResolvedValue(true),
    recordDuplicate: vi.fn().mockResolvedValue(undefined),
    recordAfterSuccess: vi.fn().mockResolvedValue(undefined),
    planParts: vi.fn().mockResolvedValue(undefined),
    markSplit: vi.fn().mockResolvedValue(undefined),
    finishSplit: vi.fn().mockResolvedValue(undefined),
  };
}
