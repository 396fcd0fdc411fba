import type { DbColumns } from '#shared/config.ts';
import { digest } from '#shared/keys.ts';
import { type PolledRow, versionTag } from './sql.ts';

/** What a row's quarantine key says about why it is there, beyond a rejected batch. */
export type RejectsKind = 'versioned' | 'watermark-null' | 'watermark-out-of-range';

/** Ids used as they are in a rejects key: short, and plain in any key and tool (`-` joins two of them). */
const PLAIN_ID = /^[A-Za-z0-9_]{1,40}$/;

/**
 * The path under `rejects/db/` of one batch's rejects: `<table>/<date>/[<kind>/]<first>-<last>[.<digest>]`.
 * The first and last rejected ids are kept as they are when plain (`11-16`), else shown cut down to safe
 * characters; the digest (a sha256 of every reject's ref, `digest` of shared/keys.ts) is added then, and
 * whenever `kind` is given or the refs carry versions (watermark mode), so that the rejects of another
 * batch, or of another version of the same rows, never overwrite these, while the same batch read again
 * overwrites its own object. `versioned` adds no folder; the other kinds are a folder of their own.
 * `rejectsKey` bounds the whole key (a long table name included) to S3's limit.
 */
export function rejectsPath(
  table: string,
  day: Date,
  rejects: readonly { readonly id: string; readonly ref: string }[],
  kind?: RejectsKind,
): string {
  const first = rejects[0]?.id ?? '';
  const last = rejects.at(-1)?.id ?? '';
  const plain = PLAIN_ID.test(first) && PLAIN_ID.test(last);
  const shown = (id: string) => (PLAIN_ID.test(id) ? id : id.replace(/[^A-Za-z0-9_]/g, '_').slice(0, 24));
  const ids = `${shown(first)}-${shown(last)}`;
  const folder = kind && kind !== 'versioned' ? `${kind}/` : '';
  const dir = `${table}/${day.toISOString().slice(0, 10)}/${folder}`;
  if (plain && !kind) return `${dir}${ids}`;
  return `${dir}${ids}.${digest(
    rejects.map((r) => r.ref),
    16,
  )}`;
}

/** `db:<table>:<id>@<version>`: the id of one version of a row, in watermark mode. */
export function watermarkSignalId(table: string, row: Pick<PolledRow, 'pulse_id' | 'pulse_wm'>): string {
  return `db:${table}:${row.pulse_id}@${versionTag(String(row.pulse_wm))}`;
}

/** A polled row as the table holds it, by its column names (for a reject). */
export function rowRecord(c: DbColumns, row: PolledRow): Record<string, unknown> {
  return {
    [c.id]: row.pulse_id,
    [c.name]: row.pulse_name,
    [c.value]: row.pulse_value,
    ...(c.source ? { [c.source]: row.pulse_source } : {}),
    [c.timestamp]: row.pulse_ts,
  };
}
