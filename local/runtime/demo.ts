/**
 * `pulse demo`: a little sample data in every source, so a newcomer sees the charts move — files of
 * three formats in the bucket (a few bad rows among them, to show the quarantine), rows in the
 * `signals` table and messages on the topic. Each run adds new data (new keys, new rows, new offsets).
 */

import { PutObjectCommand, type S3Client } from '@aws-sdk/client-s3';
import { Kafka, logLevel, Partitioners } from 'kafkajs';
import pg from 'pg';
import { settings } from '#shared/settings.ts';

export interface DemoResult {
  readonly files: { key: string; records: number; bad: number }[];
  readonly rows: number;
  readonly messages: number;
}

const SERIES = [
  { name: 'cpu', base: 40, spread: 5 },
  { name: 'latency_ms', base: 120, spread: 15 },
  { name: 'queue_depth', base: 300, spread: 30 },
] as const;

/** A value around the series' base; every 37th point is a spike (an anomaly once enough samples exist). */
function value(series: (typeof SERIES)[number], i: number): number {
  const noise = Math.sin(i * 1.7) * series.spread;
  const spike = i > 0 && i % 37 === 0 ? series.spread * 12 : 0;
  return Math.round((series.base + noise + spike) * 100) / 100;
}

export function demoCsv(points: number, start: number): { text: string; records: number; bad: number } {
  const lines = ['name,value,timestamp,source,host'];
  let records = 0;
  let bad = 0;
  for (let i = 0; i < points; i++) {
    for (const [n, s] of SERIES.entries()) {
      lines.push(`${s.name},${value(s, i)},${start + i * 60},demo-csv,host-${n}`);
      records++;
    }
  }
  lines.push('cpu,not-a-number,1700000000,demo-csv,host-x');
  lines.push(',12,1700000000,demo-csv,host-x');
  bad += 2;
  return { text: `${lines.join('\n')}\n`, records, bad };
}

export function demoNdjson(points: number, start: number): { text: string; records: number; bad: number } {
  const lines: string[] = [];
  for (let i = 0; i < points; i++) {
    lines.push(
      JSON.stringify({
        name: 'temperature',
        value: 21 + Math.cos(i) * 2 + (i % 41 === 40 ? 15 : 0),
        timestamp: new Date((start + i * 60) * 1000).toISOString(),
        source: 'demo-ndjson',
        room: 'lab',
      }),
    );
  }
  lines.push('{"name": "temperature", "value": "warm"}');
  return { text: `${lines.join('\n')}\n`, records: points, bad: 1 };
}

export function demoJson(points: number, start: number): { text: string; records: number; bad: number } {
  const records = Array.from({ length: points }, (_, i) => ({
    name: 'humidity',
    value: 55 + Math.sin(i / 3) * 4,
    timestamp: (start + i * 60) * 1000,
    source: 'demo-json',
  }));
  return { text: JSON.stringify(records), records: points, bad: 0 };
}

export interface DemoTargets {
  readonly s3: S3Client;
  readonly bucket: string;
  /** The local database's URL; rows are skipped without one (a deployed stack). */
  readonly postgresUrl?: string;
  readonly kafkaBrokers?: string;
  readonly kafkaTopic?: string;
}

export async function runDemo(targets: DemoTargets, now = Date.now()): Promise<DemoResult> {
  const start = Math.floor(now / 1000) - 200 * 60;
  const stamp = new Date(now)
    .toISOString()
    .replace(/[-:]/g, '')
    .replace(/\.\d+Z$/, 'Z');
  const files = [
    { key: `${settings.bucket.incomingPrefix}demo-metrics-${stamp}.csv`, ...demoCsv(150, start) },
    { key: `${settings.bucket.incomingPrefix}demo-rooms-${stamp}.ndjson`, ...demoNdjson(120, start) },
    { key: `${settings.bucket.incomingPrefix}demo-humidity-${stamp}.json`, ...demoJson(60, start) },
  ];
  for (const f of files) {
    await targets.s3.send(new PutObjectCommand({ Bucket: targets.bucket, Key: f.key, Body: f.text }));
  }

  let rows = 0;
  if (targets.postgresUrl) {
    const db = new pg.Client({ connectionString: targets.postgresUrl });
    await db.connect();
    try {
      const values: unknown[] = [];
      const tuples: string[] = [];
      for (let i = 0; i < 60; i++) {
        const p = values.length;
        tuples.push(`($${p + 1}, $${p + 2}, $${p + 3}, to_timestamp($${p + 4}))`);
        values.push('disk_used_pct', 70 + (i % 10) + (i === 55 ? 25 : 0), 'demo-db', start + i * 60);
      }
      await db.query(
        `INSERT INTO "${settings.dbPoller.table}" (name, value, source, "timestamp") VALUES ${tuples.join(', ')}`,
        values,
      );
      // One row the schema rejects (no name): quarantined by the poller, with its reason.
      await db.query(
        `INSERT INTO "${settings.dbPoller.table}" (name, value, "timestamp") VALUES (NULL, 1, now())`,
      );
      rows = 61;
    } finally {
      await db.end();
    }
  }

  let messages = 0;
  if (targets.kafkaBrokers && targets.kafkaTopic) {
    const kafka = new Kafka({
      clientId: 'pulse-demo',
      brokers: [targets.kafkaBrokers],
      logLevel: logLevel.NOTHING,
    });
    const producer = kafka.producer({ createPartitioner: Partitioners.DefaultPartitioner });
    await producer.connect();
    try {
      const batch = Array.from({ length: 80 }, (_, i) => ({
        key: `sensor-${i % 4}`,
        value: JSON.stringify({
          name: 'vibration',
          value: 0.3 + (i % 7) * 0.01 + (i === 77 ? 2 : 0),
          timestamp: new Date((start + i * 60) * 1000).toISOString(),
          source: `demo-kafka-sensor-${i % 4}`,
        }),
      }));
      batch.push({ key: 'sensor-x', value: 'this is not JSON' });
      await producer.send({ topic: targets.kafkaTopic, messages: batch });
      messages = batch.length;
    } finally {
      await producer.disconnect();
    }
  }
  return { files: files.map(({ key, records, bad }) => ({ key, records, bad })), rows, messages };
}
