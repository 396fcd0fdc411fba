/**
 * What every reliability scenario checks at its end, over the part of the pipeline it used (selected
 * by signal id or origin): each expected signal scored exactly once and nothing else scored — one score
 * record in the score objects, applied in DynamoDB (its position's bit or its id item), nothing else
 * applied in its blocks, and no committed transaction whose scores were left pending — the series
 * counts equal to what was scored (no lost update), no ledger item left PROCESSING, the quarantine
 * holding exactly the expected refs (each with a reason), and the DLQs at the expected depth.
 */

import { GetObjectCommand, ListObjectsV2Command } from '@aws-sdk/client-s3';
import { expect } from 'vitest';
import { settings } from '#shared/settings.ts';
import type { OriginKind, Signal } from '#shared/signal.ts';
import { Bitmap, decodeTokens } from '../../functions/scorer/blocks.ts';
import { dedupeKey } from '../../functions/scorer/keys.ts';
import { readItems } from '../../functions/scorer/state.ts';
import type { setUpPipeline } from '../integration/pipeline.ts';

export type Pipeline = Awaited<ReturnType<typeof setUpPipeline>>;

export interface QuarantineLine {
  /** The quarantine object the line is in. */
  readonly key: string;
  readonly ref: string;
  readonly reason: string;
  readonly row?: number;
  readonly raw?: string;
  readonly record?: unknown;
}

/** Every line of every quarantine object under `rejects/<under>` in the pipeline's bucket. */
export async function quarantineLines(p: Pipeline, under = ''): Promise<QuarantineLine[]> {
  const lines: QuarantineLine[] = [];
  let token: string | undefined;
  do {
    const out = await p.clients.s3.send(
      new ListObjectsV2Command({
        Bucket: p.names.bucket,
        Prefix: `rejects/${under}`,
        ContinuationToken: token,
      }),
    );
    for (const o of out.Contents ?? []) {
      const body = await p.clients.s3.send(new GetObjectCommand({ Bucket: p.names.bucket, Key: o.Key }));
      for (const line of ((await body.Body?.transformToString()) ?? '').split('\n')) {
        if (line.trim()) lines.push({ key: String(o.Key), ...JSON.parse(line) });
      }
    }
    token = out.NextContinuationToken;
  } while (token);
  return lines;
}

export interface Expected {
  /** Which score records belong to the scenario. */
  readonly scope: (score: { id: string; originRef: string; name: string; source: string }) => boolean;
  /** Every signal id (or origin ref, with `by: 'ref'`) the scenario must have scored, each exactly once. */
  readonly scoredIds: readonly string[];
  /** What `scoredIds` holds: signal ids, or origin refs (when ids repeat across sources). @default 'id' */
  readonly by?: 'id' | 'ref';
  /** Series (source, name) → how many signals it must count. @default none checked */
  readonly series?: readonly { source: string; name: string; count: number }[];
  /** Ledger keys (object keys) of the scenario: none may be PROCESSING. @default none */
  readonly ledgerKeys?: (key: string) => boolean;
  /** Quarantine under `rejects/<under>`: the refs expected there (each once), with a reason each. */
  readonly quarantine?: { readonly under: string; readonly refs: readonly string[] };
  /** @default 0 and 0 */
  readonly dlq?: { readonly fileEvents?: number; readonly signals?: number };
}

/** Asserts the scenario's end state; returns the scores and quarantine lines for further checks. */
export async function expectExactlyOnce(p: Pipeline, expected: Expected) {
  const scores = (await p.scoreRecords())
    .map((s) => ({ id: s.id, originRef: s.ref, name: s.name, source: s.source, kind: s.kind }))
    .filter(expected.scope);
  const keyOf = (s: { id: string; originRef: string }) => (expected.by === 'ref' ? s.originRef : s.id);
  const counts = new Map<string, number>();
  for (const s of scores) counts.set(keyOf(s), (counts.get(keyOf(s)) ?? 0) + 1);
  const twice = [...counts].filter(([, n]) => n > 1).map(([id]) => id);
  expect(twice, 'signals scored more than once').toEqual([]);
  const want = new Set(expected.scoredIds);
  expect(want.size, 'the scenario expects distinct ids').toBe(expected.scoredIds.length);
  const missing = [...want].filter((id) => !counts.has(id));
  const extra = [...counts.keys()].filter((id) => !want.has(id));
  expect(missing.slice(0, 5), `${missing.length} signal(s) never scored`).toEqual([]);
  expect(extra.slice(0, 5), `${extra.length} unexpected signal(s) scored`).toEqual([]);
  expect(scores).toHaveLength(expected.scoredIds.length);
  await expectApplied(p, scores);

  for (const s of expected.series ?? []) {
    expect((await p.series(s.source, s.name))?.count, `series ${s.source}/${s.name}`).toBe(s.count);
  }

  const ledger = (await p.ledgerItems()).filter((i) => expected.ledgerKeys?.(i.key) ?? false);
  expect(
    ledger.filter((i) => i.status === 'PROCESSING').map((i) => i.key),
    'ledger items left PROCESSING',
  ).toEqual([]);

  let quarantined: QuarantineLine[] = [];
  if (expected.quarantine) {
    quarantined = await quarantineLines(p, expected.quarantine.under);
    expect(quarantined.map((l) => l.ref).sort()).toEqual([...expected.quarantine.refs].sort());
    for (const l of quarantined) expect(l.reason.length, `reason of ${l.ref}`).toBeGreaterThan(0);
  }

  expect(await p.queueDepth('fileEventsDlq'), 'file-events DLQ depth').toBe(expected.dlq?.fileEvents ?? 0);
  expect(await p.queueDepth('signalsDlq'), 'signals DLQ depth').toBe(expected.dlq?.signals ?? 0);
  return { scores, ledger, quarantined };
}

/**
 * The DynamoDB side of "scored exactly once": each scored signal applied (its position's bit, or its id
 * item naming its origin), no other position of their blocks applied, and no pending score object left
 * for a transaction those items record (committed, so its scores must have been promoted).
 */
async function expectApplied(
  p: Pipeline,
  scores: readonly { id: string; originRef: string; source: string; kind: OriginKind; name: string }[],
): Promise<void> {
  const wantBits = new Map<string, Set<number>>();
  const ids = new Map<string, string>();
  for (const s of scores) {
    const signal = { id: s.id, source: s.source, origin: { kind: s.kind, ref: s.originRef } } as Signal;
    const key = dedupeKey(signal, settings.scoring.blockPositions);
    if (key.type === 'position') {
      const bits = wantBits.get(key.blockKey) ?? new Set();
      bits.add(key.bit);
      wantBits.set(key.blockKey, bits);
    } else {
      ids.set(key.key, s.originRef);
    }
  }
  const items = await readItems(
    p.clients.doc,
    p.names.scoresTable,
    [...wantBits.keys(), ...ids.keys()],
    (ms) => new Promise((r) => setTimeout(r, ms)),
  );
  const committed = new Set<string>();
  const wrongBlocks: string[] = [];
  for (const [key, want] of wantBits) {
    const item = items.get(key);
    const bits = Bitmap.from(item?.b as Uint8Array | undefined);
    const set: number[] = [];
    for (let i = 0; i < settings.scoring.blockPositions; i++) if (bits.has(i)) set.push(i);
    if (set.length !== want.size || set.some((b) => !want.has(b)) || Number(item?.n) !== set.length) {
      wrongBlocks.push(`${key}: ${set.length} applied (n=${item?.n}), ${want.size} scored`);
    }
    for (const t of decodeTokens(item?.t as Uint8Array | undefined)) committed.add(t);
  }
  expect(wrongBlocks.slice(0, 5), 'blocks whose applied positions are not the scored ones').toEqual([]);
  const wrongIds = [...ids].filter(([key, ref]) => items.get(key)?.ref !== ref);
  expect(wrongIds.slice(0, 5), 'scored signals without their id item').toEqual([]);
  for (const key of ids.keys()) committed.add(String(items.get(key)?.tk));
  const pending = (await p.scoreObjects(settings.scores.pendingPrefix)).map((k) =>
    k.slice(settings.scores.pendingPrefix.length).replace(/\.ndjson\.gz$/, ''),
  );
  expect(
    pending.filter((t) => committed.has(t)),
    'committed transactions whose scores were left pending',
  ).toEqual([]);
}

/** The signal ids the s3-trigger gives the rows of one object version (`s3://bucket/key@etag#row`). */
export function s3Ids(bucket: string, key: string, etag: string, rows: Iterable<number>): string[] {
  return [...rows].map((r) => `s3://${bucket}/${key}@${etag}#${r}`);
}

/** 1..n, skipping the rows `csvFile` makes bad (every `badEvery`-th). */
export function goodRows(n: number, badEvery?: number): number[] {
  const rows: number[] = [];
  for (let i = 1; i <= n; i++) if (badEvery === undefined || i % badEvery !== 0) rows.push(i);
  return rows;
}

/** The body S3 sends the file-events queue for one ObjectCreated event. */
export function objectCreated(
  bucket: string,
  key: string,
  etag: string,
  size: number,
  versionId?: string,
): string {
  return JSON.stringify({
    Records: [
      {
        eventName: 'ObjectCreated:Put',
        s3: {
          bucket: { name: bucket },
          object: { key: encodeURIComponent(key), eTag: etag, size, ...(versionId ? { versionId } : {}) },
        },
      },
    ],
  });
}
