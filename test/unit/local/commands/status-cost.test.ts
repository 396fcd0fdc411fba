import { ListObjectsV2Command } from '@aws-sdk/client-s3';
import { GetQueueAttributesCommand } from '@aws-sdk/client-sqs';
import { BatchGetCommand, QueryCommand } from '@aws-sdk/lib-dynamodb';
import { mockClient } from 'aws-sdk-client-mock';
import { afterEach, describe, expect, it } from 'vitest';
import { costMeter } from '#shared/cost-meter.ts';
import { counterKey } from '#shared/ledger-counters.ts';
import { StatusCollector } from '../../../../local/commands/status.ts';
import { costLines, MEASURED_BASIS, usd } from '../../../../local/commands/status-cost.ts';
import { mockableClients } from '../../../helpers/clients.ts';
import { fakeTarget, LEDGER } from '../../../helpers/target.ts';

describe('the live cost meter in pulse status', () => {
  const clients = mockableClients();
  const s3 = mockClient(clients.s3);
  const sqs = mockClient(clients.sqs);
  const doc = mockClient(clients.doc);
  afterEach(() => {
    s3.reset();
    sqs.reset();
    doc.reset();
  });

  const pipelineWithShards = (shards: Record<string, unknown>[]) => {
    doc.on(QueryCommand).resolves({ Items: [] });
    doc
      .on(BatchGetCommand)
      .callsFake((input) =>
        input.RequestItems?.[LEDGER] ? { Responses: { [LEDGER]: shards } } : { Responses: {} },
      );
    sqs.on(GetQueueAttributesCommand).resolves({ Attributes: {} });
    s3.on(ListObjectsV2Command).resolves({});
  };

  it('sums the units of the counter shards and prices them per million records of the s3 source', async () => {
    // Prepare
    pipelineWithShards([
      {
        ...counterKey(0),
        n_SUCCESS: 3,
        records: 600_000,
        u_sqs: 200,
        u_wru: 30,
        u_rru: 6,
        u_mbms: 2_000_000,
        u_lreq: 3,
        u_s3put: 4,
        u_s3get: 3,
      },
      {
        ...counterKey(5),
        n_SUCCESS: 2,
        records: 400_000,
        u_sqs: 150,
        u_wru: 20,
        u_rru: 4,
        u_mbms: 1_072_000,
        u_lreq: 2,
        u_s3put: 1,
        u_s3get: 2,
      },
    ]);
    // Act
    const status = await new StatusCollector(fakeTarget(clients, 'local')).collect();
    // Assess
    const units = {
      sqsRequests: 350,
      ddbWru: 50,
      ddbRru: 10,
      lambdaGbSeconds: 3_072_000 / 1024 / 1000,
      lambdaRequests: 5,
      s3Puts: 5,
      s3Gets: 5,
    };
    expect(status.cost).toEqual([{ source: 's3', basis: MEASURED_BASIS, ...costMeter(units, 1_000_000) }]);
    // 1M records: the dollars per million are the dollars.
    const cost = status.cost[0];
    expect(cost?.usdPerMillionRecords?.total).toBeCloseTo(cost?.usd.total ?? Number.NaN, 12);
    // 350 SQS units at $0.4/M, 3 GB-s at $0.0000133334, 50 WRU at $0.625/M, 10 RRU at $0.125/M, 5 req at $0.2/M,
    // 5 PUT at $0.005/1000 and 5 GET at $0.0004/1000.
    const expected =
      350 * 0.4e-6 +
      3 * 0.0000133334 +
      50 * 0.625e-6 +
      10 * 0.125e-6 +
      5 * 0.2e-6 +
      5 * 0.005e-3 +
      5 * 0.0004e-3;
    expect(cost?.usd.total).toBeCloseTo(expected, 12);
  });

  it('shows no cost for a source whose files carry no unit (nothing measured is not zero)', async () => {
    // Prepare
    pipelineWithShards([{ ...counterKey(0), n_SUCCESS: 3, records: 600 }]);
    // Act
    const status = await new StatusCollector(fakeTarget(clients, 'local')).collect();
    // Assess
    expect(status.cost).toEqual([]);
    expect(costLines(status.cost)).toEqual([]);
  });

  it('prints small dollars with two significant digits rather than as zero, never in exponent notation', () => {
    // Act
    const printed = [usd(0.0000294), usd(0.00098), usd(0.0000002), usd(0.0015), usd(3.9312)];
    // Assess
    expect(printed).toEqual(['$0.000029', '$0.00098', '$0.00000020', '$0.0015', '$3.93']);
  });

  it('prints the dollars per million records, labelled as measured, and the units', () => {
    // Prepare
    const meter = costMeter(
      {
        sqsRequests: 2,
        ddbWru: 14,
        ddbRru: 3,
        lambdaGbSeconds: 0.5,
        lambdaRequests: 1,
        s3Puts: 1,
        s3Gets: 1,
      },
      1000,
    );
    // Act
    const lines = costLines([{ source: 's3', basis: MEASURED_BASIS, ...meter }]);
    // Assess
    expect(lines).toEqual([
      `cost     s3: ${usd(meter.usdPerMillionRecords?.total ?? 0)} per million records (${usd(meter.usd.total)} for 1000 records; ${MEASURED_BASIS})`,
      '         s3 units: SQS 2 req, DynamoDB 14 WRU / 3 RRU, Lambda 0.500 GB-s / 1 req, S3 1 PUT / 1 GET',
    ]);
  });
});
