/**
 * What every reliability scenario checks at its end, over the part of the pipeline it used (selected
 * by signal id or origin): each expected signal scored exactly once and nothing else scored, the series
 * counts equal to what was scored (no lost update), no ledger item left PROCESSING, the quarantine
 * holding exactly the expected refs (each with a reason), and the DLQs at the expected depth.
 */

import { GetObjectCommand, ListObjectsV2Command } from '@aws-sdk/client-s3';
import { expect } from 'vitest';
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
  /** Which score items belong to the scenario (by the stored score item). */
  readonly scope: (score: { id: string; originRef: string; name: string; source: string }) => boolean;
  /** Every signal id the scenario must have scored, each exactly once. */
  readonly scoredIds: readonly string[];
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
  const scores = (await p.scoreItems())
    .filter((s) => s.kind === 'score')
    .map((s) => ({
      id: String(s.id),
      originRef: String(s.originRef),
      name: String(s.name),
      source: String(s.source),
    }))
    .filter(expected.scope);
  const counts = new Map<string, number>();
  for (const s of scores) counts.set(s.id, (counts.get(s.id) ?? 0) + 1);
  const twice = [...counts].filter(([, n]) => n > 1).map(([id]) => id);
  expect(twice, 'signals scored more than once').toEqual([]);
  const want = new Set(expected.scoredIds);
  expect(want.size, 'the scenario expects distinct ids').toBe(expected.scoredIds.length);
  const missing = [...want].filter((id) => !counts.has(id));
  const extra = [...counts.keys()].filter((id) => !want.has(id));
  expect(missing.slice(0, 5), `${missing.length} signal(s) never scored`).toEqual([]);
  expect(extra.slice(0, 5), `${extra.length} unexpected signal(s) scored`).toEqual([]);
  expect(scores).toHaveLength(expected.scoredIds.length);

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
