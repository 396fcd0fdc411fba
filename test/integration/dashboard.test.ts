import { randomBytes } from 'node:crypto';
import { existsSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { PutObjectCommand } from '@aws-sdk/client-s3';
import { type Browser, chromium } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { StatusCollector } from '../../local/commands/status.ts';
import type { Target } from '../../local/commands/target.ts';
import { ALARM_NAMES } from '../../local/dashboard/alarms.ts';
import { type Dashboard, type DashboardSnapshot, startDashboard } from '../../local/dashboard/server.ts';
import { REPO_ROOT } from '../../local/emulators/supervisor.ts';
import { csvFile, setUpPipeline, waitFor } from './pipeline.ts';

/** Debian's chromium (bash scripts/chromium.sh install): playwright-core downloads no browser. */
const CHROMIUM = '/usr/bin/chromium';
const SCREENSHOT = join(REPO_ROOT, 'test-results', 'dashboard.png');

/**
 * The offline dashboard in a real browser during an end-to-end run on moto: files dropped into the
 * bucket go through s3-trigger and the scorer, and the page shows them in its ledger, charts and alarms.
 */
describe('offline dashboard (chromium, moto)', () => {
  let p: Awaited<ReturnType<typeof setUpPipeline>>;
  let dashboard: Dashboard | undefined;
  let browser: Browser | undefined;

  beforeAll(async () => {
    const endpoint = inject('motoEndpoint');
    p = await setUpPipeline(endpoint, `dash${randomBytes(3).toString('hex')}`);
    const target: Target = p.target;
    dashboard = await startDashboard({ collector: new StatusCollector(target), sampleIntervalMs: 500 });
  });

  afterAll(async () => {
    await browser?.close();
    await dashboard?.stop();
    await p?.stopAll();
  });

  it('shows the dropped files in its ledger and charts, empty DLQs and FilesFailed in ALARM, and updates live', async () => {
    // Prepare
    if (!existsSync(CHROMIUM)) {
      throw new Error(
        `${CHROMIUM} is missing: the browser test needs Debian's chromium (bash scripts/chromium.sh install)`,
      );
    }
    if (!dashboard) throw new Error('the dashboard did not start');
    const url = dashboard.url;
    const clean = csvFile(120, { name: 'dash_clean' });
    const mixed = csvFile(200, { name: 'dash_mixed', badEvery: 10 });
    const files: [key: string, body: string][] = [
      ['incoming/dash-clean.csv', clean.text],
      ['incoming/dash-mixed.csv', mixed.text],
      ['incoming/dash-broken.csv', 'name,value,timestamp\nok,1,0\nbad,"2,0\nnever,3,0\n'],
    ];
    p.start('fileEvents');
    p.start('signals');

    // Act: drop the files, wait until the dashboard's own API has them settled and every signal scored.
    for (const [key, body] of files) {
      await p.clients.s3.send(new PutObjectCommand({ Bucket: p.names.bucket, Key: key, Body: body }));
    }
    const settled = await waitFor(
      'the dashboard to see the three files settled and their signals scored',
      async () => {
        const s = (await (await fetch(new URL('/api/status', url))).json()) as DashboardSnapshot;
        const done = s.status?.files.filter((f) => ['SUCCESS', 'FAILED'].includes(f.status)) ?? [];
        if (done.length === 3 && (s.status?.scored ?? 0) >= clean.good + mixed.good) return s;
        // waitFor reports the last error it saw: say how far it got.
        throw new Error(
          `${done.length} files settled, ${s.status?.scored} signals scored, error ${s.error?.message}`,
        );
      },
      60_000,
    );
    const broken = settled.status?.files.find((f) => f.key === 'incoming/dash-broken.csv');

    browser = await chromium.launch({
      executablePath: CHROMIUM,
      args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-dev-shm-usage'],
    });
    const page = await browser.newPage({ viewport: { width: 1400, height: 1000 } });
    const pageErrors: string[] = [];
    page.on('pageerror', (err) => pageErrors.push(err.message));
    // A Content-Security-Policy violation (something inline, or from elsewhere) is a console error.
    const consoleErrors: string[] = [];
    page.on('console', (m) => {
      if (m.type() === 'error') consoleErrors.push(m.text());
    });
    await page.goto(url);
    // Locators, not waitForFunction: the page's CSP (rightly) forbids the eval that would need.
    await page.locator('[data-testid="ledger-row"]').nth(2).waitFor({ timeout: 15_000 });
    await page.locator('body:not([data-samples="0"]):not([data-samples="1"])').waitFor({ timeout: 15_000 });
    mkdirSync(join(REPO_ROOT, 'test-results'), { recursive: true });
    await page.screenshot({ path: SCREENSHOT, fullPage: true });

    // Assess: the ledger table.
    const rows = [];
    for (const tr of await page.locator('[data-testid="ledger-row"]').all()) {
      const cell = async (id: string) => (await tr.locator(`[data-testid="${id}"]`).textContent())?.trim();
      rows.push({
        key: await cell('ledger-key'),
        status: await cell('ledger-status'),
        records: Number(await cell('ledger-records')),
        rejected: Number(await cell('ledger-rejected')),
        error: await cell('ledger-error'),
      });
    }
    const byKey = Object.fromEntries(rows.map((r) => [r.key, r]));
    expect(Object.keys(byKey).sort()).toEqual(files.map(([key]) => key).sort());
    expect(byKey['incoming/dash-clean.csv']).toMatchObject({ status: 'SUCCESS', records: 120, rejected: 0 });
    expect(byKey['incoming/dash-mixed.csv']).toMatchObject({ status: 'SUCCESS', records: 180, rejected: 20 });
    expect(byKey['incoming/dash-mixed.csv']?.error).toMatch(/^row 10: value must be wholly numeric/);
    expect(byKey['incoming/dash-broken.csv']).toMatchObject({
      status: 'FAILED',
      records: broken?.records,
      rejected: 0,
    });
    expect(byKey['incoming/dash-broken.csv']?.error).toMatch(/^MalformedFileError: /);
    expect(
      await page.locator('[data-testid="ledger-row"][data-status="FAILED"] .status-FAILED').count(),
    ).toBe(1);

    // The records chart: a line through every sample, up to all the records ingested.
    const records = page.locator('[data-testid="series-records"]');
    expect(Number(await records.getAttribute('data-points'))).toBeGreaterThanOrEqual(2);
    expect(Number(await records.getAttribute('data-max'))).toBe(120 + 180 + (broken?.records ?? 0));
    // Every valid row of the two good files is scored (and the broken file's rows read before the break may be).
    const scored = Number(await page.locator('[data-testid="series-scored"]').getAttribute('data-last'));
    expect(scored).toBeGreaterThanOrEqual(300);
    expect(scored).toBeLessThanOrEqual(300 + (broken?.records ?? 0));
    expect(await page.locator('[data-testid="legend-records"]').textContent()).toContain(
      `records ingested (files): ${300 + (broken?.records ?? 0)}`,
    );

    // The DLQ panel, and the queue chart's DLQ line.
    expect(await page.locator('[data-testid="dlq-depth-value"]').textContent()).toBe('0');
    expect(await page.locator('[data-testid="series-dlq"]').getAttribute('data-max')).toBe('0');

    // The alarms: a FAILED file fires FilesFailed; the DLQs stay OK.
    const alarm = (name: string) => page.locator(`[data-testid="alarm"][data-name="${name}"]`);
    expect(await alarm(ALARM_NAMES.filesFailed).getAttribute('data-state')).toBe('ALARM');
    expect(await alarm(ALARM_NAMES.filesFailed).textContent()).toContain('incoming/dash-broken.csv');
    expect(await alarm(ALARM_NAMES.fileEventsDlq).getAttribute('data-state')).toBe('OK');

    // Live: a file dropped now shows up on the open page, with no reload.
    await p.clients.s3.send(
      new PutObjectCommand({ Bucket: p.names.bucket, Key: 'incoming/dash-late.csv', Body: csvFile(5).text }),
    );
    await page
      .locator('[data-testid="ledger-row"][data-key="incoming/dash-late.csv"][data-status="SUCCESS"]')
      .waitFor({ timeout: 30_000 });
    expect(await page.locator('[data-testid="files-success-value"]').textContent()).toBe('3');

    expect(await page.locator('[data-testid="error-banner"]').isHidden()).toBe(true);
    expect(pageErrors).toEqual([]);
    expect(consoleErrors).toEqual([]);
    // The stylesheet, served apart from the page, applies: its grid puts the first two tiles side by side.
    const first = await page.locator('[data-testid="files-success"]').boundingBox();
    const second = await page.locator('[data-testid="files-failed"]').boundingBox();
    expect(second?.y).toBe(first?.y);
    expect(second?.x ?? 0).toBeGreaterThan((first?.x ?? 0) + (first?.width ?? 0) - 1);
    expect(existsSync(SCREENSHOT)).toBe(true);
  });
});
