import { describe, expect, it } from 'vitest';
import { checkSqlFilter, MAX_FILTER_LENGTH } from '#shared/sql-filter.ts';

/**
 * The db-poller's extra WHERE filter: what it may hold (an expression over the row's columns) and what is
 * refused because it could take the poller's own statements apart or reach past the row.
 */
describe('checkSqlFilter', () => {
  it.each([
    "tenant = 'acme'",
    "tenant = 'acme' AND kind IN ('cpu', 'mem')",
    'value >= 0 AND NOT (source IS NULL)',
    "lower(source) LIKE 'host-%' OR source ILIKE 'H%'",
    "timestamp > now() - interval '7 days'",
    "timestamp >= '2024-05-01T00:00:00Z'::timestamptz",
    'value BETWEEN -1.5 AND 2e3',
    'source IS DISTINCT FROM name',
    '"Select" = 1 AND "order" <> 2',
    "note = 'it''s (not) a -- comment; /* either */'",
    'coalesce(weight, 1) * value % 2 = 0',
    "kind || '-x' != 'a-x'",
  ])('allows %s', (filter) => {
    // Act
    const why = checkSqlFilter(filter);
    // Assess
    expect(why).toBeUndefined();
  });

  it.each([
    ['', /is empty/],
    ["tenant = 'acme'; DELETE FROM signals", /";"/],
    ["tenant = 'acme') OR (true", /closes a parenthesis it did not open/],
    ['(tenant = 1', /leaves a parenthesis open/],
    ["tenant = 'acme' -- the rest", /operator --/],
    ["tenant = 'acme' /* x */", /operator \/\*/],
    ['id = $1', /"\$"/],
    ['x = $$a$$', /"\$"/],
    ["tenant = E'\\' ) OR true --'", /prefixed literals/],
    ["tenant = 'a\\'", /backslash/],
    ['id IN (SELECT id FROM other)', /keyword SELECT/],
    ['true ORDER BY id', /keyword ORDER/],
    ['true LIMIT 1', /keyword LIMIT/],
    ['true UNION ALL', /keyword UNION/],
    ['pg_sleep(10) IS NULL', /calls pg_sleep\(\)/],
    ["set_config('a', 'b', true) = 'b'", /calls set_config\(\)/],
    ['t.value > 0', /"\."/],
    ["tenant = 'open", /not closed/],
    ['a=-1', /operator =-/],
    [`x = '${'y'.repeat(MAX_FILTER_LENGTH)}'`, /longer than/],
    ['tenant\u00a0= 1', /not allowed/],
  ])('refuses %s', (filter, reason) => {
    // Act
    const why = checkSqlFilter(filter);
    // Assess
    expect(why).toMatch(reason);
  });
});
