import { ConditionalCheckFailedException } from '@aws-sdk/client-dynamodb';
import { type DynamoDBDocumentClient, GetCommand, PutCommand } from '@aws-sdk/lib-dynamodb';
import { settings } from '#shared/settings.ts';

/**
 * The watermark of watermark mode: the last `(updated_at, id)` sent, one item per table in the
 * ledger table (`pk = watermark#<table>`, `sk = watermark`), advanced only by a conditional write on
 * its version, so two pollers never both advance it from the same position.
 */
export interface Watermark {
  /** The watermark column's value, in Postgres' text form (exact; cast back by the query). */
  readonly value: string;
  /** The last row's key, as text. */
  readonly id: string;
  /** 0 when no item exists yet. */
  readonly version: number;
  /** When it was last moved (ISO-8601, the poller's clock), when the item says. */
  readonly advancedAt?: string;
}

export interface WatermarkItem {
  readonly pk: string;
  readonly sk: 'watermark';
  readonly value: string;
  readonly id: string;
  readonly version: number;
  readonly table: string;
  readonly advancedAt: string;
  /** Set when a poll moved the watermark back (it lay past the database's clock): where it was. */
  readonly rewoundFrom?: { readonly value: string; readonly id: string };
}

export const watermarkKey = (table: string) => ({
  pk: `${settings.dbPoller.watermarkKeyPrefix}${table}`,
  sk: 'watermark' as const,
});

export class WatermarkStore {
  readonly #doc: DynamoDBDocumentClient;
  readonly #tableName: string;
  readonly #dbTable: string;

  constructor(doc: DynamoDBDocumentClient, tableName: string, dbTable: string) {
    this.#doc = doc;
    this.#tableName = tableName;
    this.#dbTable = dbTable;
  }

  /** The current watermark (strongly consistent), or undefined when nothing was sent yet. */
  async read(): Promise<Watermark | undefined> {
    const out = await this.#doc.send(
      new GetCommand({ TableName: this.#tableName, Key: watermarkKey(this.#dbTable), ConsistentRead: true }),
    );
    const item = out.Item as Partial<WatermarkItem> | undefined;
    if (!item || typeof item.value !== 'string' || typeof item.id !== 'string') return undefined;
    return {
      value: item.value,
      id: item.id,
      version: Number(item.version ?? 0),
      ...(typeof item.advancedAt === 'string' ? { advancedAt: item.advancedAt } : {}),
    };
  }

  /**
   * Moves the watermark from `from` (version 0: no item yet) to `to`. Returns the new watermark, or
   * undefined when another poller moved it first (the race is lost; nothing is written). `rewound`: the
   * move is backwards, and the item keeps where it came from.
   */
  async advance(
    from: Watermark | undefined,
    to: { value: string; id: string },
    opts: { readonly rewound?: boolean } = {},
  ): Promise<Watermark | undefined> {
    const version = (from?.version ?? 0) + 1;
    const advancedAt = new Date().toISOString();
    const item: WatermarkItem = {
      ...watermarkKey(this.#dbTable),
      value: to.value,
      id: to.id,
      version,
      table: this.#dbTable,
      advancedAt,
      ...(opts.rewound && from ? { rewoundFrom: { value: from.value, id: from.id } } : {}),
    };
    try {
      await this.#doc.send(
        new PutCommand({
          TableName: this.#tableName,
          Item: item,
          ...(from && from.version > 0
            ? {
                ConditionExpression: '#version = :version',
                ExpressionAttributeNames: { '#version': 'version' },
                ExpressionAttributeValues: { ':version': from.version },
              }
            : { ConditionExpression: 'attribute_not_exists(pk)' }),
        }),
      );
    } catch (err) {
      if (isConditionFailed(err)) return undefined;
      throw err;
    }
    return { value: to.value, id: to.id, version, advancedAt };
  }
}

function isConditionFailed(err: unknown): boolean {
  return (
    err instanceof ConditionalCheckFailedException ||
    (err as { name?: string } | null)?.name === 'ConditionalCheckFailedException'
  );
}
