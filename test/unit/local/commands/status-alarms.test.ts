import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { alarmLines, offlineAlarms } from '../../../../local/commands/status-alarms.ts';
import { ALARM_NAMES } from '../../../../local/dashboard/alarms.ts';

describe('pulse status: the offline alarms', () => {
  let server: Server | undefined;
  afterEach(async () => {
    await new Promise<void>((r) => (server ? server.close(() => r()) : r()));
    server = undefined;
  });
  const serve = async (body: unknown): Promise<string> => {
    const s = createServer((req, res) => {
      if (req.url !== '/api/status') {
        res.writeHead(404).end();
        return;
      }
      res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify(body));
    });
    server = s;
    await new Promise<void>((r) => s.listen(0, '127.0.0.1', () => r()));
    return `http://127.0.0.1:${(s.address() as AddressInfo).port}/`;
  };

  it('shows the alarms the dashboard has in ALARM, the ledger sweep’s ReceiptMismatches among them', async () => {
    // Prepare
    const url = await serve({
      status: null,
      error: null,
      sampleIntervalMs: 2000,
      alarms: [
        { name: ALARM_NAMES.filesStuck, state: 'OK', reason: 'no ledger item stuck' },
        {
          name: ALARM_NAMES.receiptMismatches,
          state: 'ALARM',
          reason: '1 file of 3 verified do not balance',
        },
      ],
    });
    // Act
    const alarms = await offlineAlarms(url);
    // Assess
    expect(alarmLines(alarms)).toEqual([
      `alarm    ${ALARM_NAMES.receiptMismatches}: 1 file of 3 verified do not balance`,
    ]);
  });

  it('says so when none is in ALARM, or when the dashboard cannot be read', async () => {
    // Prepare
    const url = await serve({ status: null, error: null, sampleIntervalMs: 2000, alarms: [] });
    // Act
    const none = alarmLines(await offlineAlarms(url));
    const unreadable = alarmLines(await offlineAlarms('http://127.0.0.1:9/', 500));
    // Assess
    expect(none).toEqual(['alarms   none in ALARM (0 evaluated)']);
    expect(unreadable[0]).toContain('could not be read');
  });
});
