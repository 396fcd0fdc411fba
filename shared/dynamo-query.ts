import { type DynamoDBDocumentClient, paginateQuery, type QueryCommandInput } from '@aws-sdk/lib-dynamodb';

/** Every item a Query matches, page after page (the SDK's paginator follows `LastEvaluatedKey`). */
export async function queryAll<T>(doc: DynamoDBDocumentClient, input: QueryCommandInput): Promise<T[]> {
  const items: T[] = [];
  for await (const page of paginateQuery({ client: doc }, input)) items.push(...((page.Items ?? []) as T[]));
  return items;
}
