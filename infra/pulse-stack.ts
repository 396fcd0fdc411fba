import { Stack, type StackProps } from 'aws-cdk-lib';
import type { Construct } from 'constructs';
import { settings } from '#shared/settings.ts';
import { PulseIngest, type PulseIngestProps } from './pulse-ingest.ts';

export interface PulseStackProps extends StackProps, PulseIngestProps {}

/** The keys of {@link PulseIngestProps}, to tell them from the stack's own props. */
const PULSE_PROP_KEYS = {
  stage: true,
  database: true,
  kafka: true,
  alarmEmail: true,
  serverAccessLogs: true,
  fileEvents: true,
  signals: true,
  functions: true,
  ledger: true,
  fanOut: true,
  staging: true,
  scoring: true,
  dbPoller: true,
  kafkaConsumer: true,
  sweep: true,
  receipts: true,
  retention: true,
  alarms: true,
  existingBuckets: true,
  s3: true,
} as const satisfies Record<keyof PulseIngestProps, true>;

/** The stack name of a stage: `PulseIngest`, or `PulseIngest-<stage>`. */
export function stackNameFor(stage?: string): string {
  return stage ? `${settings.stackName}-${stage}` : settings.stackName;
}

/**
 * The project's own stack: one {@link PulseIngest} and nothing else. The construct's id is `Default`, which
 * CDK leaves out of logical ids, so the resources keep the ids they had when the stack built them itself
 * (a deployed stack updates in place rather than replacing its buckets and tables).
 */
export class PulseStack extends Stack {
  readonly pulse: PulseIngest;

  constructor(scope: Construct, id: string, props: PulseStackProps = {}) {
    const pulseProps: Record<string, unknown> = {};
    const stackProps: Record<string, unknown> = {};
    for (const [key, value] of Object.entries(props)) {
      (key in PULSE_PROP_KEYS ? pulseProps : stackProps)[key] = value;
    }
    super(scope, id, stackProps as StackProps);
    this.pulse = new PulseIngest(this, 'Default', pulseProps as PulseIngestProps);
  }

  get bucket() {
    return this.pulse.bucket;
  }
  get accessLogs() {
    return this.pulse.accessLogs;
  }
  get fileEvents() {
    return this.pulse.fileEvents;
  }
  get fileEventsDlq() {
    return this.pulse.fileEventsDlq;
  }
  get signals() {
    return this.pulse.signals;
  }
  get signalsDlq() {
    return this.pulse.signalsDlq;
  }
  get ledger() {
    return this.pulse.ledger;
  }
  get scores() {
    return this.pulse.scores;
  }
  get scoresBucket() {
    return this.pulse.scoresBucket;
  }
  get anomalies() {
    return this.pulse.anomalies;
  }
  get scoresGlueTable() {
    return this.pulse.scoresGlueTable;
  }
  get s3Trigger() {
    return this.pulse.s3Trigger;
  }
  get scorer() {
    return this.pulse.scorer;
  }
  get producers() {
    return this.pulse.producers;
  }
  get ledgerSweep() {
    return this.pulse.ledgerSweep;
  }
  get monitoring() {
    return this.pulse.monitoring;
  }
}
