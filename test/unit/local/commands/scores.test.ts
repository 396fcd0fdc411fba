import { mockClient } from 'aws-sdk-client-mock';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { settings } from '#shared/settings.ts';
import type { Signal } from '#shared/signal.ts';
import { zScoreModel } from '../../../../functions/scorer/model.ts';
import { scoreBatch } from '../../../../functions/scorer/scorer.ts';
import { lookupSignal, scoreTotals } from '../../../../local/commands/scores.ts';
import { mockableClients } from '../../../helpers/clients.ts';
import { quietObservability } from '../../../helpers/observability.ts';
import { ANOMALIES, fakeTarget, SCORES, SCORES_BUCKET } from '../../../helpers/target.ts';
import { FakeAws } from '../../scorer/fake-aws.ts';

const signal = (ref: string, over: Partial<Signal> = {}): Signal => ({
  id: ref,
  name: 'cpu',
  value: 1,
  source: 'k',
  timestamp: '2024-01-01T00:00:00.000Z',
  origin: { kind: 's3', ref },
  ...over,
});
const body = (signals: Signal[]) =>
  JSON.stringify({ v: 3, origin: { kind: 's3', ref: 's3://b/k@e' }, signals });

describe('pulse scores', () => {
  const clients = mockableClients();
  const ddb = mockClient(clients.doc);
  const s3 = mockClient(clients.s3);
  let aws: FakeAws;
  const target = () => fakeTarget(clients);
  const score = (signals: Signal[]) => {
    const obs = quietObservability();
    return scoreBatch([{ messageId: 'm', body: body(signals) }], {
      ...clients,
      logger: obs.logger,
      metrics: obs.metrics,
      model: zScoreModel({ threshold: 3, minSamples: 2 }),
      config: {
        scoresTable: SCORES,
        scoresBucket: SCORES_BUCKET,
        anomaliesTable: ANOMALIES,
        quarantineBucket: 'q',
      },
      sleep: async () => undefined,
    });
  };
  beforeEach(() => {
    aws = new FakeAws(ddb, s3);
  });
  afterEach(() => {
    ddb.reset();
    s3.reset();
  });

  it('finds a row’s score through its block’s tokens, and says so when it is not scored', async () => {
    // Prepare
    await score([signal('s3://b/k@e#1', { value: 3 }), signal('s3://b/k@e#2', { value: 4 })]);
    // Act
    const found = await lookupSignal(target(), { ref: 's3://b/k@e#2' });
    const missing = await lookupSignal(target(), { ref: 's3://b/k@e#3' });
    // Assess
    expect(found).toMatchObject({ status: 'scored', record: { ref: 's3://b/k@e#2', value: 4, samples: 1 } });
    expect(missing).toEqual({ status: 'not-scored' });
  });

  it('finds a record’s own id by its scope and source, and a score still pending promotion', async () => {
    // Prepare: the final object of the transaction could not be written.
    aws.beforePutObject = (key) => {
      if (key.startsWith(settings.scores.prefix)) throw new Error('down');
    };
    await score([signal('s3://b/k@e#7', { id: 'order-9' })]);
    // Act
    const found = await lookupSignal(target(), {
      id: 'order-9',
      from: 's3://b/k@e',
      kind: 's3',
      source: 'k',
    });
    // Assess
    expect(found.status).toBe('pending');
    expect(found.status === 'pending' && found.object.startsWith(settings.scores.pendingPrefix)).toBe(true);
  });

  it('sums the totals items: scored and samples as the transactions counted them', async () => {
    // Prepare
    await score([signal('s3://b/k@e#1'), signal('s3://b/k@e#2', { name: 'mem' })]);
    await score([signal('s3://b/k@e#2', { name: 'mem' }), signal('s3://b/k@e#3')]);
    // Act
    const totals = await scoreTotals(target());
    // Assess
    expect(totals).toMatchObject({ scored: 3, samples: 3, series: 2 });
  });
});
