import { randomBytes } from 'node:crypto';
import { CreateTableCommand, TransactionCanceledException } from '@aws-sdk/client-dynamodb';
import { GetCommand, PutCommand, TransactWriteCommand } from '@aws-sdk/lib-dynamodb';
import { beforeAll, describe, expect, inject, it } from 'vitest';
import { makeClients } from '../../local/runtime/clients.ts';

/**
 * The scorer's exactly-once rests on TransactWriteItems being all-or-nothing. moto is started through
 * scripts/moto_server.py, which replaces moto's whole-table backups with per-item ones; these tests
 * hold it to DynamoDB's behaviour.
 */
describe('TransactWriteItems on the emulator', () => {
  const table = `tx${randomBytes(4).toString('hex')}`;
  let c: ReturnType<typeof makeClients>;
  beforeAll(async () => {
    c = makeClients(inject('motoEndpoint'));
    await c.ddb.send(
      new CreateTableCommand({
        TableName: table,
        BillingMode: 'PAY_PER_REQUEST',
        AttributeDefinitions: [{ AttributeName: 'pk', AttributeType: 'S' }],
        KeySchema: [{ AttributeName: 'pk', KeyType: 'HASH' }],
      }),
    );
  });

  it('writes nothing when one condition fails, and says which one', async () => {
    // Prepare
    await c.doc.send(new PutCommand({ TableName: table, Item: { pk: 'exists', v: 1 } }));
    await c.doc.send(new PutCommand({ TableName: table, Item: { pk: 'series', version: 3, v: 'old' } }));
    // Act
    const err = await c.doc
      .send(
        new TransactWriteCommand({
          TransactItems: [
            {
              Put: {
                TableName: table,
                Item: { pk: 'new-1' },
                ConditionExpression: 'attribute_not_exists(pk)',
              },
            },
            {
              Put: {
                TableName: table,
                Item: { pk: 'series', version: 4, v: 'new' },
                ConditionExpression: 'version = :v',
                ExpressionAttributeValues: { ':v': 3 },
              },
            },
            {
              Put: {
                TableName: table,
                Item: { pk: 'exists', v: 2 },
                ConditionExpression: 'attribute_not_exists(pk)',
              },
            },
          ],
        }),
      )
      .catch((e: unknown) => e);
    // Assess
    expect(err).toBeInstanceOf(TransactionCanceledException);
    const reasons = (err as TransactionCanceledException).CancellationReasons?.map((r) => r.Code);
    expect(reasons).toEqual(['None', 'None', 'ConditionalCheckFailed']);
    expect(
      (await c.doc.send(new GetCommand({ TableName: table, Key: { pk: 'new-1' } }))).Item,
    ).toBeUndefined();
    expect((await c.doc.send(new GetCommand({ TableName: table, Key: { pk: 'series' } }))).Item).toEqual({
      pk: 'series',
      version: 3,
      v: 'old',
    });
    expect((await c.doc.send(new GetCommand({ TableName: table, Key: { pk: 'exists' } }))).Item).toEqual({
      pk: 'exists',
      v: 1,
    });
  });
});
