import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { App } from 'aws-cdk-lib';
import { Template } from 'aws-cdk-lib/assertions';
import { beforeAll, describe, expect, it } from 'vitest';
import { REPO_ROOT } from '../../infra/constructs/pulse-function.ts';
import { PulseStack } from '../../infra/pulse-stack.ts';
import {
  anomaliesTableInput,
  bucketNotificationConfiguration,
  dlqAttributes,
  ledgerTableInput,
  queueAttributes,
  scoresBucketLifecycle,
  scoresTableInput,
} from '../../local/runtime/resources.ts';

/**
 * The offline runtime creates its resources from the same settings as the stack. This holds the
 * synthesized template against what `local/` creates, so the two cannot drift apart.
 */
type Resource = { Type: string; Properties: Record<string, unknown> };

describe('the synthesized template and the offline resources agree', () => {
  let resources: Record<string, Resource>;
  const byId = (constructId: string, type: string) => {
    const found = Object.entries(resources).find(
      ([id, r]) => r.Type === type && new RegExp(`^${constructId}[0-9A-F]{8}$`).test(id),
    );
    if (!found) throw new Error(`no ${type} ${constructId}`);
    return found[1].Properties;
  };

  beforeAll(() => {
    const cdkJson = JSON.parse(readFileSync(join(REPO_ROOT, 'cdk.json'), 'utf8')) as {
      context: Record<string, unknown>;
    };
    const app = new App({ context: { ...cdkJson.context, 'aws:cdk:bundling-stacks': [] } });
    resources = Template.fromStack(new PulseStack(app, 'Parity')).toJSON().Resources;
    // A synth takes 5 s on an idle machine and over 10 s (vitest's default hook timeout) on a busy one.
  }, 60_000);

  it.each(['fileEvents', 'signals'] as const)(
    'creates the %s queue with the template’s attributes',
    (which) => {
      // Prepare
      const q = byId(which === 'fileEvents' ? 'FileEvents' : 'Signals', 'AWS::SQS::Queue');
      // Act
      const local = queueAttributes(which, 'arn:dlq');
      // Assess
      expect(Number(local.VisibilityTimeout)).toBe(q.VisibilityTimeout);
      expect(Number(local.MessageRetentionPeriod)).toBe(q.MessageRetentionPeriod);
      expect(JSON.parse(String(local.RedrivePolicy)).maxReceiveCount).toBe(
        (q.RedrivePolicy as { maxReceiveCount: number }).maxReceiveCount,
      );
      if (which === 'signals') expect(Number(local.MaximumMessageSize)).toBe(q.MaximumMessageSize);
    },
  );

  it('keeps dead letters as long as the template does', () => {
    expect(Number(dlqAttributes().MessageRetentionPeriod)).toBe(
      byId('FileEventsDlq', 'AWS::SQS::Queue').MessageRetentionPeriod,
    );
    expect(Number(dlqAttributes().MessageRetentionPeriod)).toBe(
      byId('SignalsDlq', 'AWS::SQS::Queue').MessageRetentionPeriod,
    );
  });

  it('notifies on the same events and filter rules', () => {
    // Prepare
    const custom = Object.values(resources).find((r) => r.Type === 'Custom::S3BucketNotifications');
    type Configs = {
      QueueConfigurations?: {
        Events: string[];
        Filter: { Key: { FilterRules: { Name: string; Value: string }[] } };
      }[];
    };
    const configs =
      (custom?.Properties.NotificationConfiguration as Configs | undefined)?.QueueConfigurations ?? [];
    const stackFilters = configs.map((c) => ({
      events: c.Events,
      rules: c.Filter.Key.FilterRules.map((r) => `${r.Name.toLowerCase()}=${r.Value}`).sort(),
    }));
    // Act
    const localFilters = (bucketNotificationConfiguration('arn:q').QueueConfigurations ?? []).map((c) => ({
      events: c.Events,
      rules: (c.Filter?.Key?.FilterRules ?? [])
        .map((r) => `${String(r.Name).toLowerCase()}=${r.Value}`)
        .sort(),
    }));
    // Assess
    const key = (f: { rules: string[] }) => f.rules.join('&');
    expect(localFilters.sort((a, b) => key(a).localeCompare(key(b)))).toEqual(
      stackFilters.sort((a, b) => key(a).localeCompare(key(b))),
    );
  });

  it('creates the ledger, scores and anomalies tables with the template’s keys and indexes', () => {
    const ledger = byId('Ledger', 'AWS::DynamoDB::Table');
    const scores = byId('Scores', 'AWS::DynamoDB::Table');
    const anomalies = byId('Anomalies', 'AWS::DynamoDB::Table');
    const localLedger = ledgerTableInput('l');
    expect(localLedger.KeySchema).toEqual(ledger?.KeySchema);
    const gsi = (
      ledger?.GlobalSecondaryIndexes as { IndexName: string; KeySchema: unknown }[] | undefined
    )?.[0];
    expect(localLedger.GlobalSecondaryIndexes?.[0]?.IndexName).toBe(gsi?.IndexName);
    expect(localLedger.GlobalSecondaryIndexes?.[0]?.KeySchema).toEqual(gsi?.KeySchema);
    expect(scoresTableInput('s').KeySchema).toEqual(scores?.KeySchema);
    const localAnomalies = anomaliesTableInput('a');
    expect(localAnomalies.KeySchema).toEqual(anomalies.KeySchema);
    expect(localAnomalies.GlobalSecondaryIndexes).toEqual(anomalies.GlobalSecondaryIndexes);
  });

  it('gives the scores bucket the template’s lifecycle rules (pending objects expire)', () => {
    // Prepare
    const rules = (
      byId('ScoresBucket', 'AWS::S3::Bucket').LifecycleConfiguration as { Rules: Record<string, unknown>[] }
    ).Rules;
    // Act
    const local = scoresBucketLifecycle().Rules;
    // Assess
    const pending = local.find((r) => r.Expiration);
    expect(rules).toContainEqual({
      Prefix: pending?.Filter.Prefix,
      ExpirationInDays: pending?.Expiration?.Days,
      Status: 'Enabled',
    });
    const abort = local.find((r) => r.AbortIncompleteMultipartUpload);
    expect(rules).toContainEqual({
      AbortIncompleteMultipartUpload: {
        DaysAfterInitiation: abort?.AbortIncompleteMultipartUpload?.DaysAfterInitiation,
      },
      Status: 'Enabled',
    });
  });
});
