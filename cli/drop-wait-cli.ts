/**
 * `pulse drop FILE… --wait`'s printing: one progress bar per file (bytes uploaded, then records ingested,
 * then records accounted for by the receipt) on a terminal, none otherwise or with --json; then each file's
 * receipt. The work is local/commands/operations.ts's `dropFiles` and local/commands/drop-wait.ts.
 */

import { basename } from 'node:path';
import { MultiBar, Presets, type SingleBar } from 'cli-progress';
import { type FileWait, waitExitCode, waitForFiles, waitSummary } from '../local/commands/drop-wait.ts';
import { dropFiles } from '../local/commands/operations.ts';
import type { Target } from '../local/commands/target.ts';
import { printable, printableJson } from '../local/commands/terminal.ts';
import { receiptText } from '../local/commands/verify-text.ts';

export interface DropWaitOptions {
  readonly timeoutSeconds: number;
  readonly json: boolean;
}

/** Drops `files` into the target's bucket, follows each to its end, prints, and sets the exit code. */
export async function dropAndWait(
  target: Target,
  files: readonly string[],
  o: DropWaitOptions,
): Promise<void> {
  const bars =
    !o.json && process.stdout.isTTY
      ? new MultiBar({ hideCursor: true, format: FORMAT }, Presets.shades_classic)
      : undefined;
  const barOf = new Map<string, SingleBar>();
  const name = (file: string) => printable(basename(file)).slice(0, 24).padEnd(24);
  const dropped = await dropFiles(target.clients.s3, target.bucket, files, (file, loaded, total) => {
    if (!bars) return;
    let bar = barOf.get(file);
    if (!bar) {
      bar = bars.create(total, 0, { file: name(file), phase: 'uploading', unit: 'bytes' });
      barOf.set(file, bar);
    }
    bar.setTotal(Math.max(total, 1));
    bar.update(loaded, { phase: 'uploading', unit: 'bytes' });
  });
  const onRound = (states: readonly FileWait[]) => {
    if (!bars) return;
    for (const s of states) {
      const bar = barOf.get(s.dropped.file);
      if (!bar) continue;
      // Ingesting: records read of the ledger's count so far; scoring: records accounted for of those read.
      const total = Math.max(s.read, 1);
      const value = s.phase === 'scoring' || s.phase === 'balanced' ? s.accounted : s.read;
      bar.setTotal(total);
      bar.update(Math.min(value, total), { phase: s.phase, unit: 'records' });
    }
  };
  let waited: FileWait[];
  try {
    waited = await waitForFiles(target, dropped, { timeoutMs: o.timeoutSeconds * 1000, onRound });
  } finally {
    bars?.stop();
  }
  const exitCode = waitExitCode(waited);
  if (o.json) {
    console.log(
      printableJson({
        exitCode,
        files: waited.map((w) => ({
          file: w.dropped.file,
          bucket: w.dropped.bucket,
          key: w.dropped.key,
          etag: w.dropped.etag,
          bytes: w.dropped.bytes,
          phase: w.phase,
          status: w.item?.status ?? null,
          read: w.read,
          timedOut: w.timedOut,
          receipt: w.receipt ?? null,
        })),
      }),
    );
  } else {
    for (const w of waited) {
      console.log(printable(waitSummary(w)));
      if (w.receipt) console.log(receiptText(w.receipt).join('\n'));
      console.log('');
    }
  }
  process.exitCode = exitCode;
}

const FORMAT = '{file} [{bar}] {value}/{total} {unit} {phase}';
