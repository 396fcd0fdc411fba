import { request } from 'node:http';
import { afterEach, describe, expect, it } from 'vitest';
import type { PulseStatus } from '../../../../local/commands/status.ts';
import type { ProducerHealth } from '../../../../local/dashboard/alarms.ts';
import type { Sample } from '../../../../local/dashboard/history.ts';
import {
  type Dashboard,
  type DashboardSnapshot,
  describeError,
  hostHeaders,
  startDashboard,
} from '../../../../local/dashboard/server.ts';
import { fileRowFactory, pulseStatusFactory } from '../../../helpers/status.ts';
import { waitUntil } from '../../../helpers/wait.ts';

/** A collector whose statuses count up one second and ten records a call; `fail` makes it throw. */
class FakeCollector {
  calls = 0;
  fail: Error | undefined;
  extra: Partial<PulseStatus> & ProducerHealth = {};

  async collect(): Promise<PulseStatus & ProducerHealth> {
    this.calls++;
    if (this.fail) throw this.fail;
    return {
      ...pulseStatusFactory({
        at: new Date(Date.parse('2024-06-01T12:00:00Z') + this.calls * 1000).toISOString(),
        files: [fileRowFactory({ records: this.calls * 10, updatedAt: '2024-06-01T12:00:00.000Z' })],
        queues: { signals: { visible: 3 } },
      }),
      ...this.extra,
    };
  }
}

describe('startDashboard', () => {
  let dashboard: Dashboard | undefined;
  const get = async (path: string, init?: RequestInit) => {
    if (!dashboard) throw new Error('no dashboard');
    return fetch(new URL(path, dashboard.url), init);
  };
  const snapshot = async () => (await (await get('/api/status')).json()) as DashboardSnapshot;
  const history = async (query = '') =>
    ((await (await get(`/api/history${query}`)).json()) as { samples: Sample[] }).samples;

  afterEach(async () => {
    await dashboard?.stop();
    dashboard = undefined;
  });

  it('listens on a free port of 127.0.0.1 and serves its page, stylesheet and script, nothing inline', async () => {
    // Prepare
    dashboard = await startDashboard({ collector: new FakeCollector() });
    // Act
    const res = await get('/');
    const html = await res.text();
    const js = await get('/dashboard.js');
    const script = await js.text();
    const css = await get('/dashboard.css');
    // Assess
    expect(dashboard.url).toBe(`http://127.0.0.1:${dashboard.port}/`);
    expect(dashboard.port).toBeGreaterThan(0);
    expect(res.status).toBe(200);
    expect(res.headers.get('content-type')).toBe('text/html; charset=utf-8');
    const csp = res.headers.get('content-security-policy') ?? '';
    expect(csp).toContain("connect-src 'self'");
    expect(csp).toContain("script-src 'self'");
    expect(csp).toContain("style-src 'self'");
    expect(csp).not.toContain('unsafe-inline');
    for (const id of [
      'chart-records',
      'chart-queues',
      'ledger-table',
      'anomalies-table',
      'alarms',
      'error-banner',
    ]) {
      expect(html).toContain(`data-testid="${id}"`);
    }
    // Nothing inline (the policy would block it) and nothing from elsewhere.
    expect(html).not.toMatch(/<script>|<style>|\sstyle=|\son[a-z]+=/i);
    expect(html).toContain('<script src="/dashboard.js"></script>');
    expect(html).toContain('<link rel="stylesheet" href="/dashboard.css">');
    expect(html).not.toMatch(/https?:\/\//i);
    expect(js.headers.get('content-type')).toBe('text/javascript; charset=utf-8');
    expect(css.status).toBe(200);
    expect(css.headers.get('content-type')).toBe('text/css; charset=utf-8');
    expect(await css.text()).toContain('.tile');
    // Its script at least parses (the browser test runs it).
    expect(script.length).toBeGreaterThan(1000);
    expect(() => new Function(script)).not.toThrow();
  });

  it('answers 421, without the status, to a request whose Host is not its own address (DNS rebinding)', async () => {
    // Prepare
    dashboard = await startDashboard({ collector: new FakeCollector(), sampleIntervalMs: 60_000 });
    const port = dashboard.port;
    // Act
    const rebound = await rawGet(port, '/api/status', `attacker.example:${port}`);
    const otherPort = await rawGet(port, '/api/status', `127.0.0.1:${port + 1}`);
    const page = await rawGet(port, '/', 'attacker.example');
    const noHost = await rawGet(port, '/api/history', undefined);
    const byIp = await rawGet(port, '/api/status', `127.0.0.1:${port}`);
    const byName = await rawGet(port, '/api/status', `LocalHost:${port}`);
    // Assess
    for (const refused of [rebound, otherPort, page]) {
      expect(refused.status).toBe(421);
      expect(refused.body).not.toContain('"status"');
    }
    // Node's server itself refuses an HTTP/1.1 request without a Host (requireHostHeader).
    expect(noHost.status).toBe(400);
    expect(noHost.body).not.toContain('"status"');
    expect(byIp.status).toBe(200);
    expect(JSON.parse(byIp.body)).toHaveProperty('status');
    expect(byName.status).toBe(200);
  });
  it('answers /api/status with the latest status and the alarms evaluated on it', async () => {
    // Prepare
    const collector = new FakeCollector();
    collector.extra = {
      files: [
        fileRowFactory({ key: 'incoming/bad.csv', status: 'FAILED', updatedAt: '2024-06-01T12:00:00.500Z' }),
      ],
      kafkaOffsetLag: 7,
    };
    dashboard = await startDashboard({ collector, sampleIntervalMs: 60_000 });
    // Act
    const body = await snapshot();
    // Assess
    expect(body.error).toBeNull();
    expect(body.sampleIntervalMs).toBe(60_000);
    expect(body.status?.files.map((f) => f.key)).toEqual(['incoming/bad.csv']);
    expect(body.status?.kafkaOffsetLag).toBe(7);
    const states = Object.fromEntries(body.alarms.map((a) => [a.name, a.state]));
    expect(states).toMatchObject({
      'PulseIngest-FilesFailed': 'ALARM',
      'PulseIngest-KafkaOffsetLag': 'OK',
      'PulseIngest-PollerSilent': 'INSUFFICIENT_DATA',
      'PulseIngest-Signals-DLQ-Queue-Message-Count-Max-Critical': 'OK',
    });
  });

  it('samples on its interval into /api/history, and ?since= returns only the newer samples', async () => {
    // Prepare
    const collector = new FakeCollector();
    dashboard = await startDashboard({ collector, sampleIntervalMs: 20 });
    // Act
    const all = await waitUntil('four samples', async () => {
      const s = await history();
      return s.length >= 4 ? s : undefined;
    });
    const newer = await history(`?since=${all[1]?.t}`);
    // Assess
    expect(all[0]).toEqual({
      t: Date.parse('2024-06-01T12:00:01Z'),
      records: 10,
      rejected: { s3: 0, db: 0, kafka: 0, scorer: 0 },
      scored: 0,
      anomalies: 0,
      queues: { fileEvents: 0, fileEventsDlq: 0, signals: 3, signalsDlq: 0, kafkaFailures: 0 },
      dlq: 0,
      filesFailed: 0,
    });
    expect(all.map((s) => s.records).slice(0, 4)).toEqual([10, 20, 30, 40]);
    expect(newer[0]?.t).toBe(all[2]?.t);
    expect((await get('/api/history?since=soon')).status).toBe(400);
  });

  it('keeps at most historySize samples, dropping the oldest', async () => {
    // Prepare
    const collector = new FakeCollector();
    dashboard = await startDashboard({ collector, sampleIntervalMs: 10, historySize: 3 });
    // Act
    await waitUntil('six samples taken', () => collector.calls >= 6);
    const samples = await history();
    // Assess
    expect(samples).toHaveLength(3);
    expect(samples[0]?.records).toBeGreaterThan(10);
  });

  it('reports a failing collector as an error over the last good status, and recovers', async () => {
    // Prepare
    const collector = new FakeCollector();
    dashboard = await startDashboard({ collector, sampleIntervalMs: 20 });
    const good = await snapshot();
    // Act
    collector.fail = Object.assign(new Error('connect ECONNREFUSED 127.0.0.1:5000'), {
      code: 'ECONNREFUSED',
    });
    const failing = await waitUntil('the error', async () => {
      const s = await snapshot();
      return s.error ? s : undefined;
    });
    collector.fail = undefined;
    const recovered = await waitUntil('recovery', async () => {
      const s = await snapshot();
      return s.error === null && s.status?.at !== good.status?.at ? s : undefined;
    });
    // Assess
    expect(failing.error?.message).toBe('Error (ECONNREFUSED): connect ECONNREFUSED 127.0.0.1:5000');
    expect(failing.status?.at).toBeDefined();
    expect(failing.alarms.length).toBeGreaterThan(0);
    expect(recovered.status).not.toBeNull();
  });

  it('starts even when the first sample fails, with no status and the error', async () => {
    // Prepare
    const collector = new FakeCollector();
    collector.fail = new Error('moto is down');
    // Act
    dashboard = await startDashboard({ collector, sampleIntervalMs: 60_000 });
    const body = await snapshot();
    // Assess
    expect(body).toMatchObject({ status: null, alarms: [], error: { message: 'Error: moto is down' } });
    expect((await get('/')).status).toBe(200);
  });

  it('counts a collection that hangs as failed after sampleTimeoutMs, and keeps sampling', async () => {
    // Prepare
    const collector = new FakeCollector();
    const real = collector.collect.bind(collector);
    let hang = true;
    collector.collect = () => (hang ? new Promise<never>(() => {}) : real());
    // Act
    dashboard = await startDashboard({ collector, sampleIntervalMs: 20, sampleTimeoutMs: 50 });
    const hung = await snapshot();
    hang = false;
    const recovered = await waitUntil('a sample after the hang', async () => {
      const s = await snapshot();
      return s.status ? s : undefined;
    });
    // Assess
    expect(hung).toMatchObject({
      status: null,
      error: { message: 'Error: collecting the status took longer than 50 ms' },
    });
    expect(recovered.error).toBeNull();
  });

  it('answers 404 for an unknown path and 405 for anything but GET and HEAD', async () => {
    // Prepare
    dashboard = await startDashboard({ collector: new FakeCollector(), sampleIntervalMs: 60_000 });
    // Act
    const missing = await get('/nope');
    const post = await get('/api/status', { method: 'POST' });
    const head = await get('/api/status', { method: 'HEAD' });
    // Assess
    expect(missing.status).toBe(404);
    expect(post.status).toBe(405);
    expect(post.headers.get('allow')).toBe('GET, HEAD');
    expect(head.status).toBe(200);
    expect(await head.text()).toBe('');
  });

  it('stops sampling and closes its port on stop()', async () => {
    // Prepare
    const collector = new FakeCollector();
    const started = await startDashboard({ collector, sampleIntervalMs: 10 });
    await waitUntil('two samples', () => collector.calls >= 2);
    // Act
    await started.stop();
    const calls = collector.calls;
    await new Promise((r) => setTimeout(r, 60));
    // Assess
    expect(collector.calls).toBe(calls);
    await expect(fetch(started.url)).rejects.toThrow();
  });
});

describe('hostHeaders', () => {
  it('names the loopback address and localhost, and [::1] only for a server listening there', () => {
    // Act / Assess
    expect([...hostHeaders('127.0.0.1', 4580)].sort()).toEqual(['127.0.0.1:4580', 'localhost:4580']);
    expect([...hostHeaders('::1', 4580)].sort()).toEqual(['[::1]:4580', 'localhost:4580']);
  });
});

/** A GET with exactly this Host header (fetch sets its own), or none. */
function rawGet(port: number, path: string, host: string | undefined) {
  return new Promise<{ status: number; body: string }>((resolve, reject) => {
    const req = request({ host: '127.0.0.1', port, path, method: 'GET', setHost: false }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (c: string) => {
        body += c;
      });
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
    });
    if (host !== undefined) req.setHeader('Host', host);
    req.on('error', reject);
    req.end();
  });
}

describe('describeError', () => {
  it('lists the parts of an AggregateError, which has no message of its own', () => {
    // Prepare
    const err = new AggregateError([
      Object.assign(new Error('connect ECONNREFUSED ::1:5000'), { code: 'ECONNREFUSED' }),
      Object.assign(new Error('connect ECONNREFUSED 127.0.0.1:5000'), { code: 'ECONNREFUSED' }),
    ]);
    // Act / Assess
    expect(describeError(err)).toBe(
      'AggregateError: Error (ECONNREFUSED): connect ECONNREFUSED ::1:5000; Error (ECONNREFUSED): connect ECONNREFUSED 127.0.0.1:5000',
    );
  });
});
