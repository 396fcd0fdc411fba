import { Annotations, Match, type Template } from 'aws-cdk-lib/assertions';
import { describe, expect, it } from 'vitest';
import { loadS3TriggerConfig } from '#shared/config.ts';
import { resolveDeployment } from '../../infra/props.ts';
import { ingestPrefixes } from '../../infra/routes.ts';
import { buildStack, synthTemplate } from '../helpers/stacks.ts';

/** Two prefixes with different mappings and CSV delimiters, one archiving after success, one tagging. */
const TWO_ROUTES = {
  s3: {
    routes: [
      { prefix: 'incoming/', afterSuccess: 'tag' },
      {
        prefix: 'eu/',
        include: ['eu/**/*.csv'],
        mapping: { name: 'metric', value: 'val', timestamp: 'ts' },
        csv: { delimiter: ';' },
        afterSuccess: { archivePrefix: 'archive/' },
      },
    ],
    lifecycle: { archiveExpireDays: 30 },
  },
};
const context = { pulse: JSON.stringify(TWO_ROUTES) };

/** The s3-trigger's environment in the template. */
function s3TriggerEnv(t: Template): Record<string, string> {
  const fns = Object.values(t.findResources('AWS::Lambda::Function')) as {
    Properties: { Environment?: { Variables?: Record<string, unknown> }; Description?: string };
  }[];
  const fn = fns.find((f) => f.Properties.Description?.startsWith('ObjectCreated'));
  return (fn?.Properties.Environment?.Variables ?? {}) as Record<string, string>;
}

/** Each statement of the s3-trigger's policies as `action… on resource suffix…`. */
function statements(t: Template): { actions: string[]; resources: string[] }[] {
  const policies = Object.values(t.findResources('AWS::IAM::Policy')) as {
    Properties: {
      PolicyName: string;
      PolicyDocument: { Statement: { Action: unknown; Resource: unknown }[] };
    };
  }[];
  return policies
    .filter((p) => p.Properties.PolicyName.startsWith('S3Trigger'))
    .flatMap((p) => p.Properties.PolicyDocument.Statement)
    .map((s) => ({
      actions: [s.Action].flat() as string[],
      resources: ([s.Resource].flat() as unknown[]).map((r) => {
        const join = (r as { 'Fn::Join'?: [string, unknown[]] })['Fn::Join'];
        return join ? String(join[1].at(-1)) : String(r);
      }),
    }));
}

describe('S3 routes in the stack', () => {
  it('notifies under every route prefix and gives the s3-trigger the routes in S3_ROUTES, as it reads them', () => {
    // Act
    const t = synthTemplate({ context });
    // Assess
    t.hasResourceProperties('Custom::S3BucketNotifications', {
      NotificationConfiguration: {
        QueueConfigurations: [
          Match.objectLike({ Filter: { Key: { FilterRules: [{ Name: 'prefix', Value: 'eu/' }] } } }),
          Match.objectLike({ Filter: { Key: { FilterRules: [{ Name: 'prefix', Value: 'incoming/' }] } } }),
        ],
      },
    });
    const env = s3TriggerEnv(t);
    expect(JSON.parse(env.S3_ROUTES ?? '')).toEqual(TWO_ROUTES.s3.routes);
    const config = loadS3TriggerConfig({
      S3_ROUTES: env.S3_ROUTES,
      SIGNALS_QUEUE_URL: 'https://q',
      LEDGER_TABLE: 't',
      QUARANTINE_BUCKET: 'b',
    });
    expect(config.routes.map((r) => [r.prefix, r.delimiter, r.mapping])).toEqual([
      ['incoming/', ',', undefined],
      ['eu/', ';', { name: 'metric', value: 'val', timestamp: 'ts' }],
    ]);
  });

  it('grants each after-success action on its own prefixes only', () => {
    // Act
    const s = statements(synthTemplate({ context }));
    // Assess
    const on = (action: string) => s.filter((x) => x.actions.includes(action)).flatMap((x) => x.resources);
    expect(on('s3:GetObjectVersion')).toEqual(['/eu/*', '/incoming/*']);
    expect(on('s3:PutObjectVersionTagging')).toEqual(['/incoming/*']);
    expect(on('s3:DeleteObjectVersion')).toEqual(['/eu/*']);
    expect(on('s3:PutObject')).toContain('/archive/*');
    expect(on('s3:PutObject')).not.toContain('/eu/*');
  });

  it('expires archived objects, rejects and noncurrent versions under each route prefix', () => {
    // Act
    const t = synthTemplate({ context });
    // Assess
    for (const rule of [
      { Id: 'rejects-expire', Prefix: 'rejects/', ExpirationInDays: 90 },
      { Prefix: 'archive/', ExpirationInDays: 30, NoncurrentVersionExpiration: { NoncurrentDays: 30 } },
      { Prefix: 'eu/', NoncurrentVersionExpiration: { NoncurrentDays: 30 } },
      { Prefix: 'incoming/', NoncurrentVersionExpiration: { NoncurrentDays: 30 } },
    ]) {
      t.hasResourceProperties('AWS::S3::Bucket', {
        LifecycleConfiguration: { Rules: Match.arrayWith([Match.objectLike(rule)]) },
      });
    }
  });

  it('passes cdk-nag with two routes', () => {
    // Act
    const stack = buildStack({ context, nag: true });
    // Assess
    const errors = Annotations.fromStack(stack).findError('*', Match.anyValue());
    const warnings = Annotations.fromStack(stack)
      .findWarning('*', Match.anyValue())
      .filter((w) => String(w.entry.data).includes('AwsSolutions-'));
    expect([...errors, ...warnings].map((a) => String(a.entry.data).split('\n')[0])).toEqual([]);
  });

  it('notifies under the default incoming/ prefix alone without routes', () => {
    // Act
    const t = synthTemplate();
    // Assess
    t.hasResourceProperties('Custom::S3BucketNotifications', {
      NotificationConfiguration: {
        QueueConfigurations: [
          Match.objectLike({ Filter: { Key: { FilterRules: [{ Name: 'prefix', Value: 'incoming/' }] } } }),
        ],
      },
    });
    expect(JSON.parse(s3TriggerEnv(t).S3_ROUTES ?? '')).toEqual([{ prefix: 'incoming/' }]);
  });

  it('gives the prefixes of a bucket the user already has routes of their own, and takes a route of that bucket with its own mapping', () => {
    // Prepare: their bucket notifies under metrics/ and drops/; metrics/ has its own mapping and delimiter.
    const own = {
      prefix: 'metrics/',
      bucket: 'their-data',
      mapping: { name: 'metric' },
      csv: { delimiter: ';' },
    };
    // Act
    const t = synthTemplate({
      context: {
        existingBuckets: JSON.stringify([{ bucket: 'their-data', prefixes: ['metrics/', 'drops/'] }]),
        pulse: JSON.stringify({ s3: { routes: [{ prefix: 'incoming/' }, own] } }),
      },
    });
    // Assess: the s3-trigger reads each key of their bucket under the route that takes it.
    const env = s3TriggerEnv(t);
    const config = loadS3TriggerConfig({
      S3_ROUTES: env.S3_ROUTES,
      SIGNALS_QUEUE_URL: 'https://q',
      LEDGER_TABLE: 't',
      QUARANTINE_BUCKET: 'b',
    });
    expect(config.routes.map((r) => [r.bucket, r.prefix, r.delimiter, r.mapping])).toEqual([
      [undefined, 'incoming/', ',', undefined],
      ['their-data', 'metrics/', ';', { name: 'metric' }],
      ['their-data', 'drops/', ',', undefined],
    ]);
  });

  it.each([
    [{ prefix: 'other/', bucket: 'their-data' }, /under none of its existingBuckets prefixes/],
    [{ prefix: 'metrics/', bucket: 'their-data', afterSuccess: 'delete' }, /must keep its objects/],
    // The prefix's own route (the defaults) would take the same keys with other settings.
    [{ prefix: 'metrics/eu/', bucket: 'their-data', csv: { delimiter: ';' } }, /overlap with different/],
  ])('refuses at synth a route of a bucket the user already has: %j', (route, message) => {
    // Act
    const synth = () =>
      buildStack({
        context: {
          existingBuckets: JSON.stringify([{ bucket: 'their-data', prefixes: ['metrics/'] }]),
          pulse: JSON.stringify({ s3: { routes: [{ prefix: 'incoming/' }, route] } }),
        },
      });
    // Assess
    expect(synth).toThrow(message);
  });

  it('notifies once under a prefix that holds another route prefix (S3 refuses overlapping notifications)', () => {
    // Prepare
    const d = resolveDeployment({
      s3: { routes: [{ prefix: 'incoming/' }, { prefix: 'incoming/eu/' }, { prefix: 'b/' }] },
    });
    // Act
    const prefixes = ingestPrefixes(d);
    // Assess
    expect(prefixes).toEqual(['b/', 'incoming/']);
  });

  it('gives the kafka-consumer its per-topic mappings in KAFKA_MAPPINGS', () => {
    // Prepare
    const mappings = { pulse_signals: { name: 'metric', value: 'val' } };
    // Act
    const t = synthTemplate({ context: { pulse: JSON.stringify({ kafkaConsumer: { mappings } }) } });
    // Assess
    t.hasResourceProperties('AWS::Lambda::Function', {
      Description: Match.stringLikeRegexp('^MSK'),
      Environment: { Variables: Match.objectLike({ KAFKA_MAPPINGS: JSON.stringify(mappings) }) },
    });
  });

  it.each([
    [
      [{ prefix: 'incoming/' }, { prefix: 'incoming/x/', mapping: { name: 'm' } }],
      /s3.routes\[0\] \(incoming\/\) and s3.routes\[1\] \(incoming\/x\/\) overlap/,
    ],
    [[{ prefix: 'incoming/' }, { prefix: 'rejects/old/' }], /overlaps the rejects prefix/],
    [[{ prefix: 'eu/' }], /canary/],
    [
      [{ prefix: 'incoming/' }, { prefix: 'x/', bucket: 'their-bucket' }],
      /names bucket their-bucket, which is not one of existingBuckets/,
    ],
  ])('refuses at synth routes %j', (routes, message) => {
    // Act
    const synth = () => buildStack({ context: { pulse: JSON.stringify({ s3: { routes } }) } });
    // Assess
    expect(synth).toThrow(message);
  });
});
