import type { Checkpoint, ClaimResult, Staging } from '#shared/ledger.ts';
import type { FileTask } from './events.ts';
import type { IngestDeps } from './ingest-types.ts';
import type { DetectedFormat } from './parsers/index.ts';
import { canResume, type ReadLimit, type ResumePoint } from './records.ts';
import type { ObjectVersion } from './source.ts';
import { stageable, stagingPrefix } from './staging.ts';

/** A claim the ledger granted. */
export type Claimed = Extract<ClaimResult, { claimed: true }>;

/** What a run reads: from where, to where, and in which form. */
export interface ReadPlan {
  /** A large gzip file is read from its staged copy (staging.ts), staged first where it is not yet. */
  readonly staging?: Staging;
  /** What the records are read from: the staged copy is the file's bytes uncompressed. */
  readonly readFormat: DetectedFormat;
  /** A checkpoint left by an earlier attempt: everything before it is sent and quarantined already. */
  readonly resumedFrom?: Checkpoint;
  /** Where reading starts: the checkpoint, else the part's first record (after its start). */
  readonly start?: ResumePoint;
  /** Where a part's reading stops. */
  readonly until?: ReadLimit;
}

/** Plans the read of a claimed file (or part): see {@link ReadPlan}. */
export function planRead(
  task: FileTask,
  file: ObjectVersion,
  format: DetectedFormat,
  size: number | undefined,
  claim: Claimed,
  deps: IngestDeps,
): ReadPlan {
  const { range } = claim;
  const opts = deps.config.staging;
  const staging: Staging | undefined =
    claim.staging ??
    (task.part === undefined &&
    !claim.checkpoint &&
    deps.announceParts &&
    opts &&
    stageable(format, size, opts)
      ? {
          prefix: stagingPrefix(file),
          objectBytes: opts.objectBytes,
          objects: 0,
          ...(opts.bucket ? { bucket: opts.bucket } : {}),
        }
      : undefined);
  const readFormat: DetectedFormat = staging ? { format: format.format } : format;
  let resumedFrom = claim.checkpoint;
  if (resumedFrom && !canResume(readFormat, resumedFrom)) {
    deps.logger.warn('Ignoring a checkpoint this format cannot resume from', { checkpoint: resumedFrom });
    resumedFrom = undefined;
  }
  const partStart: ResumePoint | undefined =
    range && (range.start > 0 || range.row > 0)
      ? { kind: range.kind, position: range.start, row: range.row }
      : undefined;
  const start = resumedFrom ?? partStart;
  return {
    ...(staging ? { staging } : {}),
    readFormat,
    ...(resumedFrom ? { resumedFrom } : {}),
    ...(start ? { start } : {}),
    ...(range ? { until: { kind: range.kind, position: range.end } } : {}),
  };
}
