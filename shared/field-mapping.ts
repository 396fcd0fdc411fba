import * as z from 'zod';

/**
 * Which source field (CSV column, JSON/NDJSON key, Parquet column, Kafka value key) stands for each field of
 * the signal, applied to a record before the signal schema normalises it (`shared/signal.ts`). One module
 * for the s3-trigger's routes (`shared/routes.ts`), `pulse check --mapping` and the kafka-consumer's
 * per-topic mapping; the db-poller has its own column mapping (`DB_COLUMNS`).
 */

/** The signal fields a mapping may rename. */
export const MAPPED_FIELDS = ['name', 'value', 'timestamp', 'id', 'source'] as const;
export type MappedField = (typeof MAPPED_FIELDS)[number];

/** `{ name: 'metric', value: 'val', timestamp: 'ts' }`: the signal's `name` is read from `metric`, … */
export type FieldMapping = Readonly<Partial<Record<MappedField, string>>>;

const column = z.string().min(1).max(256);

/** A field mapping: known signal fields only, each from one non-empty source field, no source used twice. */
export const FieldMappingSchema = z
  .object({ name: column, value: column, timestamp: column, id: column, source: column })
  .partial()
  .strict()
  .refine((m) => new Set(Object.values(m)).size === Object.values(m).length, {
    message: 'a source field is mapped to two signal fields',
  });

/** A mapping prepared once for many records: undefined when it renames nothing. */
export interface PreparedMapping {
  /** `[source, target]` for each field it renames. */
  readonly pairs: readonly (readonly [string, MappedField])[];
  readonly sources: ReadonlySet<string>;
}

/** Prepares `mapping` for {@link mapRecord}; undefined when it is empty or maps every field to itself. */
export function prepareMapping(mapping: FieldMapping | undefined): PreparedMapping | undefined {
  if (!mapping) return undefined;
  const pairs = MAPPED_FIELDS.flatMap((target) => {
    const source = mapping[target];
    return source !== undefined && source !== target ? [[source, target] as const] : [];
  });
  if (pairs.length === 0) return undefined;
  return { pairs, sources: new Set(pairs.map(([source]) => source)) };
}

/** A record the mapping cannot be applied to: why. */
export class MappingConflict {
  constructor(readonly error: string) {}
}

/**
 * The record with its mapped fields renamed (`metric` → `name`), every other field kept as it is (so it
 * becomes an attribute). A record that also has a field of a mapped target's own name (`name` beside
 * `metric` when `name` is read from `metric`) gives a {@link MappingConflict}: one of the two values would
 * otherwise be dropped.
 */
export function mapRecord(
  data: Record<string, unknown>,
  mapping: PreparedMapping | undefined,
): Record<string, unknown> | MappingConflict {
  if (!mapping) return data;
  const out: Record<string, unknown> = {};
  for (const key of Object.keys(data)) {
    if (mapping.sources.has(key)) continue;
    if (mapping.pairs.some(([source, target]) => target === key && source in data)) {
      const source = mapping.pairs.find(([, target]) => target === key)?.[0];
      return new MappingConflict(
        `field "${key}" is present, and "${key}" is mapped from "${source}": rename or drop one of them`,
      );
    }
    Object.defineProperty(out, key, {
      value: data[key],
      enumerable: true,
      writable: true,
      configurable: true,
    });
  }
  for (const [source, target] of mapping.pairs) {
    if (Object.hasOwn(data, source)) out[target] = data[source];
  }
  return out;
}

/**
 * The columns a CSV header must name at least one of (lower case): the source fields of `name`, `value`
 * and `timestamp` under the mapping (parsers/csv.ts fails a header naming none of them, saying which).
 */
export function expectedColumns(
  required: readonly MappedField[],
  mapping: FieldMapping | undefined,
): string[] {
  return required.map((f) => (mapping?.[f] ?? f).toLowerCase());
}
