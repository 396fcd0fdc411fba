import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { CFN_SHAPES, synthShape } from '../../tools/synth-shapes.ts';

/**
 * The shapes `npm run lint:cfn` lints (tools/synth-shapes.ts): each synthesizes offline, with no cdk-nag
 * error, into templates that are the shape they are named for, so cfn-lint sees every shape the issue lists.
 */

type Template = { Resources: Record<string, { Type: string; Properties?: Record<string, unknown> }> };
const read = (path: string): Template => JSON.parse(readFileSync(path, 'utf8')) as Template;
const types = (t: Template): string[] => Object.values(t.Resources).map((r) => r.Type);

/** What marks each shape in its template(s). */
const MARKS: Record<string, (ts: Template[]) => boolean> = {
  default: (ts) =>
    ts.length === 1 &&
    !JSON.stringify(ts[0]).includes('users-data') &&
    !JSON.stringify(ts[0]).includes('arn:aws:kafka:'),
  'existing-bucket-sqs': (ts) =>
    JSON.stringify(ts[0]).includes('users-data') &&
    types(ts[0] as Template).includes('Custom::S3BucketNotifications'),
  'existing-bucket-eventbridge': (ts) =>
    JSON.stringify(ts[0]).includes('"users-data"') && JSON.stringify(ts[0]).includes('Object Created'),
  'existing-bucket-sns': (ts) => types(ts[0] as Template).includes('AWS::SNS::Subscription'),
  'two-prefixes': (ts) => JSON.stringify(ts[0]).includes('eu/') && JSON.stringify(ts[0]).includes('archive/'),
  'database-and-kafka': (ts) =>
    JSON.stringify(ts[0]).includes('arn:aws:kafka:') &&
    JSON.stringify(ts[0]).includes('subnet-0aaaaaaaaaaaaaaaa'),
  'self-managed-kafka': (ts) => JSON.stringify(ts[0]).includes('b-1.example:9096'),
  'two-stages': (ts) => ts.length === 2,
};

describe('the shapes cfn-lint runs on', () => {
  it.each(CFN_SHAPES.map((s) => [s.name, s] as const))(
    '%s synthesizes with no cdk-nag error, as that shape',
    (name, shape) => {
      // Act
      const { templates, errors } = synthShape(shape);
      // Assess
      expect(errors).toEqual([]);
      expect(MARKS[name]?.(templates.map(read))).toBe(true);
    },
  );
});
