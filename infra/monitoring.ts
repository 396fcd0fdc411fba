import { Duration, Stack } from 'aws-cdk-lib';
import {
  Alarm,
  ComparisonOperator,
  type IMetric,
  MathExpression,
  Metric,
  TreatMissingData,
} from 'aws-cdk-lib/aws-cloudwatch';
import { SnsAction } from 'aws-cdk-lib/aws-cloudwatch-actions';
import type { Table } from 'aws-cdk-lib/aws-dynamodb';
import { PolicyStatement, ServicePrincipal } from 'aws-cdk-lib/aws-iam';
import { Key } from 'aws-cdk-lib/aws-kms';
import { Topic } from 'aws-cdk-lib/aws-sns';
import { EmailSubscription } from 'aws-cdk-lib/aws-sns-subscriptions';
import type { Queue } from 'aws-cdk-lib/aws-sqs';
import { DefaultDashboardFactory, MonitoringFacade, SnsAlarmActionStrategy } from 'cdk-monitoring-constructs';
import { Construct } from 'constructs';
import { METRIC, METRIC_DIMENSION } from '#shared/contract.ts';
import { settings } from '#shared/settings.ts';
import type { PulseFunction } from './constructs/pulse-function.ts';
import type { PulseDeployment } from './props.ts';

export interface MonitoringProps {
  readonly fileEvents: Queue;
  readonly fileEventsDlq: Queue;
  readonly signals: Queue;
  readonly signalsDlq: Queue;
  /** The Kafka failures bucket's notices: one message per failure object not yet replayed. */
  readonly kafkaFailures: Queue;
  readonly ledger: Table;
  readonly scores: Table;
  readonly functions: {
    readonly s3Trigger: PulseFunction;
    readonly scorer: PulseFunction;
    readonly dbPoller: PulseFunction;
    readonly kafkaConsumer: PulseFunction;
    /** The ledger sweep (FilesStuck, CanaryMissed). */
    readonly ledgerSweep: PulseFunction;
  };
  /** The deployment's resolved values (infra/props.ts): its name (alarm names) and alarm thresholds. */
  readonly deployment: PulseDeployment;
  /** @default no email subscription */
  readonly alarmEmail?: string;
  /** The poller's schedule runs (a database was given): only then can it be silent. @default false */
  readonly pollerEnabled?: boolean;
  /** A Kafka event source exists: only then is there an offset lag. @default false */
  readonly kafkaEnabled?: boolean;
}

const PERIOD = Duration.minutes(5);

/** One Powertools (EMF) metric of one function: namespace from the settings, `service` the only dimension. */
export function pulseMetric(name: string, service: string, statistic = 'Sum'): Metric {
  return new Metric({
    namespace: settings.metricsNamespace,
    metricName: name,
    dimensionsMap: { service },
    statistic,
    period: PERIOD,
  });
}

/** A db-poller metric of one table (dimensions `service` and `table`: functions/db-poller/table-metrics.ts). */
export function pollerTableMetric(name: string, table: string, statistic = 'Sum', period = PERIOD): Metric {
  return new Metric({
    namespace: settings.metricsNamespace,
    metricName: name,
    dimensionsMap: { service: 'db-poller', [METRIC_DIMENSION.table]: table },
    statistic,
    period,
  });
}

/**
 * The dashboard and the alarms, next to what they watch: cdk-monitoring-constructs for the standard
 * queue, function and table widgets and alarms, and the pipeline's own metrics (files, records, rejects,
 * scores, poller, Kafka) as business widgets. Every alarm notifies one SNS topic.
 */
export class Monitoring extends Construct {
  readonly topic: Topic;
  /** The alarm topic's KMS key (customer managed, so CloudWatch can be allowed to use it). */
  readonly key: Key;
  readonly facade: MonitoringFacade;
  /** The alarms this construct declares itself (the facade's are in `facade.createdAlarms()`). */
  readonly businessAlarms: Alarm[] = [];
  /** Every alarm name starts with this and a hyphen (the deployment's name: `PulseIngest[-<stage>]`). */
  readonly namePrefix: string;

  constructor(scope: Construct, id: string, props: MonitoringProps) {
    super(scope, id);
    const d = props.deployment;
    const m = d.alarms;
    this.namePrefix = d.name;
    // CloudWatch publishes alarms to an encrypted topic only if the key's policy lets it use the key, and
    // the AWS managed alias/aws/sns key's policy cannot be changed: so a key of our own, rotated yearly.
    const cloudwatch = new ServicePrincipal('cloudwatch.amazonaws.com');
    const sameAccount = { StringEquals: { 'aws:SourceAccount': Stack.of(this).account } };
    this.key = new Key(this, 'TopicKey', {
      description: 'Pulse Ingest alarm topic: SNS encryption that CloudWatch alarms can publish through',
      enableKeyRotation: true,
    });
    this.key.addToResourcePolicy(
      new PolicyStatement({
        principals: [cloudwatch],
        actions: ['kms:Decrypt', 'kms:GenerateDataKey*'],
        resources: ['*'],
        conditions: sameAccount,
      }),
    );
    this.topic = new Topic(this, 'Alarms', {
      displayName: 'Pulse Ingest alarms',
      masterKey: this.key,
      enforceSSL: true,
    });
    // The topic's own policy replaces SNS's default one, so CloudWatch's publishing is allowed explicitly.
    this.topic.addToResourcePolicy(
      new PolicyStatement({
        principals: [cloudwatch],
        actions: ['sns:Publish'],
        resources: [this.topic.topicArn],
        conditions: sameAccount,
      }),
    );
    if (props.alarmEmail) this.topic.addSubscription(new EmailSubscription(props.alarmEmail));

    this.facade = new MonitoringFacade(this, 'Dashboard', {
      // CloudWatch dashboard names are the account's: named after the deployment, so stages do not collide
      // (the facade would name it after its construct id, "Dashboard", in every copy).
      dashboardFactory: new DefaultDashboardFactory(this, 'Dashboards', { dashboardNamePrefix: d.name }),
      alarmFactoryDefaults: {
        alarmNamePrefix: d.name,
        actionsEnabled: true,
        action: new SnsAlarmActionStrategy({ onAlarmTopic: this.topic }),
        datapointsToAlarm: 1,
      },
      metricFactoryDefaults: {},
    });
    const f = this.facade;
    f.addLargeHeader('Pulse Ingest');

    // Business widgets: what went in, what came out.
    f.monitorCustom({
      alarmFriendlyName: 'Pipeline',
      humanReadableName: 'Files, records and scores',
      metricGroups: [
        {
          title: 'Files',
          metrics: [METRIC.filesClaimed, METRIC.filesSucceeded, METRIC.filesFailed, METRIC.filesSkipped].map(
            (n) => pulseMetric(n, 's3-trigger'),
          ),
        },
        {
          title: 'Records and rejects',
          metrics: [
            pulseMetric(METRIC.recordsIngested, 's3-trigger'),
            pulseMetric(METRIC.recordsRejected, 's3-trigger'),
            pulseMetric(METRIC.rowsSent, 'db-poller'),
            pulseMetric(METRIC.rowsRejected, 'db-poller'),
            pulseMetric(METRIC.kafkaRecordsDecoded, 'kafka-consumer'),
            pulseMetric(METRIC.kafkaRecordsQuarantined, 'kafka-consumer'),
          ],
        },
        {
          title: 'Scorer throughput',
          metrics: [
            METRIC.signalsScored,
            METRIC.signalsDuplicate,
            METRIC.signalsRejected,
            METRIC.anomalies,
          ].map((n) => pulseMetric(n, 'scorer')),
        },
        {
          title: 'Latency (ms)',
          metrics: [
            pulseMetric(METRIC.scoringLatency, 'scorer', 'p99'),
            pulseMetric(METRIC.fileLatency, 's3-trigger', 'p99'),
          ],
        },
        {
          title: 'Poller',
          metrics: [
            pulseMetric(METRIC.rowsPolled, 'db-poller'),
            pulseMetric(METRIC.rowsReread, 'db-poller'),
            pulseMetric(METRIC.watermarkNullRows, 'db-poller'),
            pulseMetric(METRIC.watermarkOutOfRangeRows, 'db-poller', 'Maximum'),
            pulseMetric(METRIC.watermarkStalledRows, 'db-poller', 'Maximum'),
            pulseMetric(METRIC.pollerBackpressureStops, 'db-poller'),
            pulseMetric(METRIC.pollerTimeBudgetStops, 'db-poller'),
          ],
        },
        {
          title: 'Poller lag (ms, oldest row read)',
          metrics: [pulseMetric(METRIC.pollerLag, 'db-poller', 'Maximum')],
        },
        {
          title: 'Poller lag per table (ms, oldest row read)',
          metrics: d.dbPoller.tables.map((t) =>
            pollerTableMetric(METRIC.pollerLag, t.table, 'Maximum').with({ label: t.table }),
          ),
        },
        {
          title: 'Rows sent per table',
          metrics: d.dbPoller.tables.map((t) =>
            pollerTableMetric(METRIC.rowsSent, t.table).with({ label: t.table }),
          ),
        },
        {
          title: 'Kafka offset lag',
          metrics: [this.kafkaLag(props.functions.kafkaConsumer.functionName)],
        },
        {
          title: 'Ledger sweep: stuck items, notification canary missed',
          metrics: [
            METRIC.filesStuckProcessing,
            METRIC.filesStuckSplit,
            METRIC.filesStuckDiscovered,
            METRIC.filesStuckExhausted,
            METRIC.canaryMissed,
          ].map((n) => pulseMetric(n, 'ledger-sweep', 'Maximum')),
        },
        {
          title: 'Ledger sweep: files verified, receipts that do not balance',
          metrics: [
            pulseMetric(METRIC.filesVerified, 'ledger-sweep', 'Sum'),
            pulseMetric(METRIC.receiptMismatches, 'ledger-sweep', 'Maximum'),
          ],
        },
      ],
    });

    // Queues: depth and oldest message age, and every DLQ alarms on its first message.
    const queue = (q: Queue, dlq: Queue, name: string, maxAge?: number) =>
      f.monitorSqsQueueWithDlq({
        queue: q,
        deadLetterQueue: dlq,
        alarmFriendlyName: name,
        humanReadableName: name,
        ...(maxAge !== undefined
          ? { addQueueMaxMessageAgeAlarm: { Critical: { maxAgeInSeconds: maxAge } } }
          : {}),
        addDeadLetterQueueMaxSizeAlarm: { Critical: { maxMessageCount: 0 } },
      });
    queue(props.fileEvents, props.fileEventsDlq, 'FileEvents', m.maxMessageAgeSeconds.fileEvents);
    queue(props.signals, props.signalsDlq, 'Signals', m.maxMessageAgeSeconds.signals);
    f.monitorSqsQueue({
      queue: props.kafkaFailures,
      alarmFriendlyName: 'KafkaFailures',
      humanReadableName: 'Kafka batches in the on-failure bucket, not yet replayed (pulse kafka replay)',
      addQueueMaxSizeAlarm: { Critical: { maxMessageCount: 0 } },
    });

    // Functions: invocations, errors, throttles, duration p99, concurrency.
    for (const [name, fn] of Object.entries(props.functions)) {
      f.monitorLambdaFunction({
        lambdaFunction: fn,
        alarmFriendlyName: name,
        humanReadableName: name,
        addFaultCountAlarm: { Critical: { maxErrorCount: m.maxErrors } },
        addThrottlesCountAlarm: { Critical: { maxErrorCount: m.maxThrottles } },
      });
    }
    f.monitorDynamoTable({
      table: props.ledger,
      alarmFriendlyName: 'Ledger',
      humanReadableName: 'File ledger',
    });
    f.monitorDynamoTable({ table: props.scores, alarmFriendlyName: 'Scores', humanReadableName: 'Scores' });

    // Business alarms.
    this.alarm('FilesFailed', pulseMetric(METRIC.filesFailed, 's3-trigger'), {
      threshold: m.maxFilesFailed,
      description: 'Files ended FAILED: see the ledger (status FAILED) for what and where.',
    });
    // The ledger sweep reports on every run: a period without its data (it stopped running) is an alarm.
    const sweepPeriod = Duration.minutes(d.sweep.scheduleRateMinutes * settings.monitoring.sweepAlarmPeriods);
    const sweepMetric = (name: string) =>
      pulseMetric(name, 'ledger-sweep', 'Maximum').with({ period: sweepPeriod });
    this.alarm('FilesStuck', sweepMetric(METRIC.filesStuck), {
      threshold: m.maxFilesStuck,
      missing: TreatMissingData.BREACHING,
      description:
        'Ledger items nothing will carry on: PROCESSING past their lease and redelivery, SPLIT or DISCOVERED for an hour, or FAILED retryable with no attempts left (FilesStuck* by kind; the sweep logs their keys). Also fires when the ledger sweep stops reporting.',
    });
    this.alarm('NotificationsSilent', sweepMetric(METRIC.canaryMissed), {
      threshold: 0,
      missing: TreatMissingData.BREACHING,
      description: `The S3 notification canary (${settings.bucket.canaryKey}) the ledger sweep wrote ${d.sweep.canaryGraceSeconds / 60} minutes ago never reached the ledger: check the bucket's notification configuration and the file-events queue policy. Also fires when the ledger sweep stops reporting.`,
    });

    // The sweep's receipts: a file that reached SUCCESS and whose records are not all found scored or
    // quarantined. Missing data is breaching as for the sweep's other alarms (a sweep that stopped verifies nothing).
    this.alarm('ReceiptMismatches', sweepMetric(METRIC.receiptMismatches), {
      threshold: 0,
      missing: TreatMissingData.BREACHING,
      description: `Files ended SUCCESS whose receipts do not balance: records read that are neither scored nor quarantined, counted by the ledger sweep ${d.receipts.settleSeconds / 60} minutes after they ended (the sweep logs the objects and rows; see pulse verify KEY). Also fires when the ledger sweep stops reporting.`,
    });

    if (props.pollerEnabled) {
      const periods = m.pollerSilentPeriods;
      // The slowest table's schedule: the function runs at least that often while every schedule does.
      const slowest = Math.max(...d.dbPoller.tables.map((t) => t.scheduleRateMinutes));
      const window = Duration.minutes(slowest * periods);
      const ok = new MathExpression({
        expression: 'invocations - errors',
        usingMetrics: {
          invocations: props.functions.dbPoller.metricInvocations({ period: window, statistic: 'Sum' }),
          errors: props.functions.dbPoller.metricErrors({ period: window, statistic: 'Sum' }),
        },
        period: window,
        label: 'successful poller runs',
      });
      this.alarm('PollerSilent', ok, {
        threshold: 1,
        comparison: ComparisonOperator.LESS_THAN_THRESHOLD,
        missing: TreatMissingData.BREACHING,
        description: `The db-poller has not run successfully in ${periods} schedule periods.`,
      });
      // Several tables: each one's polls report RowsPolled under its table (0 when there was nothing), so a
      // table whose polls stop (its schedule, a failing statement) is silent on its own.
      if (d.dbPoller.tables.length > 1) {
        for (const t of d.dbPoller.tables) {
          const tableWindow = Duration.minutes(t.scheduleRateMinutes * periods);
          this.alarm(
            `PollerSilent-${t.table}`,
            pollerTableMetric(METRIC.rowsPolled, t.table, 'SampleCount', tableWindow),
            {
              threshold: 1,
              comparison: ComparisonOperator.LESS_THAN_THRESHOLD,
              missing: TreatMissingData.BREACHING,
              description: `No poll of the table ${t.table} has finished in ${periods} of its schedule periods (${t.scheduleRateMinutes} min).`,
            },
          );
        }
      }
      // Watermark mode only (the metric is never sent in mark mode: missing data is not breaching).
      this.alarm('WatermarkNullRows', pulseMetric(METRIC.watermarkNullRows, 'db-poller', 'Maximum'), {
        threshold: 0,
        description:
          'Rows of the polled table have a NULL watermark column: watermark mode never reads them. They are quarantined under rejects/db/<table>/<date>/watermark-null/ (see docs/db-poller.md).',
      });
      // Watermark mode on a timestamp or date column only (missing data is not breaching).
      this.alarm('WatermarkStalled', pulseMetric(METRIC.watermarkStalledRows, 'db-poller', 'Maximum'), {
        threshold: 0,
        description:
          "Rows written in the last moments by the database's clock sit more than the lookback behind the watermark: no poll reads them. The poll that counts them moves a watermark found past the database's now() plus the skew back; if this stays in ALARM, see docs/db-poller.md (stalls).",
      });
    }
    if (props.kafkaEnabled) {
      // Lambda reports OffsetLag only while the event source mapping consumes: a disabled or broken
      // trigger makes the metric disappear, which must not read as "no lag".
      this.alarm('KafkaOffsetLag', this.kafkaLag(props.functions.kafkaConsumer.functionName), {
        threshold: m.maxKafkaOffsetLag,
        missing: TreatMissingData.BREACHING,
        description:
          'The kafka-consumer is falling behind its topic, or its event source reports no offset lag at all (disabled or failing trigger).',
      });
    }
  }

  private kafkaLag(functionName: string): Metric {
    return new Metric({
      namespace: 'AWS/Lambda',
      metricName: 'OffsetLag',
      dimensionsMap: { FunctionName: functionName },
      statistic: 'Maximum',
      period: PERIOD,
    });
  }

  private alarm(
    id: string,
    metric: IMetric,
    opts: {
      threshold: number;
      description: string;
      comparison?: ComparisonOperator;
      missing?: TreatMissingData;
    },
  ): void {
    const alarm = new Alarm(this, id, {
      alarmName: `${this.namePrefix}-${id}`,
      alarmDescription: opts.description,
      metric,
      threshold: opts.threshold,
      evaluationPeriods: 1,
      comparisonOperator: opts.comparison ?? ComparisonOperator.GREATER_THAN_THRESHOLD,
      treatMissingData: opts.missing ?? TreatMissingData.NOT_BREACHING,
    });
    alarm.addAlarmAction(new SnsAction(this.topic));
    this.businessAlarms.push(alarm);
  }
}
