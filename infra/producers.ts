import { type CfnResource, Duration, Fn, Stack } from 'aws-cdk-lib';
import type { ITable } from 'aws-cdk-lib/aws-dynamodb';
import { type ISecurityGroup, type IVpc, SecurityGroup, Subnet, Vpc } from 'aws-cdk-lib/aws-ec2';
import { PolicyStatement } from 'aws-cdk-lib/aws-iam';
import { StartingPosition } from 'aws-cdk-lib/aws-lambda';
import {
  AuthenticationMethod,
  ManagedKafkaEventSource,
  SelfManagedKafkaEventSource,
} from 'aws-cdk-lib/aws-lambda-event-sources';
import type { IBucket } from 'aws-cdk-lib/aws-s3';
import {
  ContextAttribute,
  Schedule,
  ScheduleExpression,
  ScheduleTargetInput,
} from 'aws-cdk-lib/aws-scheduler';
import { LambdaInvoke } from 'aws-cdk-lib/aws-scheduler-targets';
import { Secret } from 'aws-cdk-lib/aws-secretsmanager';
import type { IQueue } from 'aws-cdk-lib/aws-sqs';
import { NagSuppressions } from 'cdk-nag';
import { Construct } from 'constructs';
import { ENV, PLATFORM_ENV } from '#shared/contract.ts';
import { kafkaMappingGroupId, kafkaRetryPolicy, settings } from '#shared/settings.ts';
import { PulseFunction } from './constructs/pulse-function.ts';
import { dbPollerEnvironment } from './db-poller-env.ts';
import { kafkaConsumerEnvironment } from './kafka-consumer-env.ts';
import { KafkaFailures, S3WriteOnlyKafkaDestination } from './kafka-failures.ts';
import { schemaRegistryEnv } from './kafka-schema-registry.ts';
import { schemaRegistryOf, suppressGlueSchemaVersions } from './kafka-schema-registry-source.ts';
import {
  type DatabaseSource,
  type KafkaAuthentication,
  type KafkaPollers,
  type KafkaSource,
  kafkaTopicsOf,
  type PulseDeployment,
} from './props.ts';

/** A self-managed Kafka source's authentication, as the event source mapping names it. */
const AUTHENTICATION: Record<KafkaAuthentication, AuthenticationMethod> = {
  SASL_SCRAM_512: AuthenticationMethod.SASL_SCRAM_512_AUTH,
  SASL_SCRAM_256: AuthenticationMethod.SASL_SCRAM_256_AUTH,
  MTLS: AuthenticationMethod.CLIENT_CERTIFICATE_TLS_AUTH,
};

/** The database source (`-c dbSecretArn=…`): see {@link DatabaseSource}. */
export type DatabaseContext = DatabaseSource;
/** The Kafka source (`-c mskClusterArn=…` or `-c kafkaBootstrapServers=…`): see {@link KafkaSource}. */
export type KafkaContext = KafkaSource;
export type { KafkaPollers };

/** What the producers need of the stack: its resources, and grants that add the env var with the grant. */
export interface ProducerResources {
  readonly signals: IQueue;
  readonly ledger: ITable;
  grantSendSignals(fn: PulseFunction): void;
  grantQuarantine(fn: PulseFunction): void;
}

export interface ProducersProps {
  readonly resources: ProducerResources;
  /** The deployment's resolved values (infra/props.ts). */
  readonly deployment: PulseDeployment;
  /** @default the poller is deployed with its schedule disabled */
  readonly database?: DatabaseContext;
  /** @default no Kafka event source */
  readonly kafka?: KafkaContext;
  /** Where the Kafka failures bucket's server access logs go. @default none */
  readonly accessLogs?: IBucket;
}

/** The db-poller on an EventBridge Scheduler schedule, and the kafka-consumer behind its event source. */
export class Producers extends Construct {
  readonly dbPoller: PulseFunction;
  /** The first table's schedule (see {@link schedules}). */
  readonly schedule: Schedule;
  /** One schedule per polled table, in the order of `dbPoller.tables`. */
  readonly schedules: readonly Schedule[];
  readonly kafkaConsumer: PulseFunction;
  /** The Kafka event source's on-failure bucket (batches that failed every retry, records included) and its notices. */
  readonly kafkaFailures: KafkaFailures;

  constructor(scope: Construct, id: string, props: ProducersProps) {
    super(scope, id);
    const { resources, deployment: d } = props;
    const db = props.database;

    let vpc: IVpc | undefined;
    let securityGroups: ISecurityGroup[] | undefined;
    if (db?.vpcId && db.subnetIds?.length) {
      vpc = Vpc.fromVpcAttributes(this, 'DbVpc', {
        vpcId: db.vpcId,
        availabilityZones: Fn.getAzs(),
        privateSubnetIds: [...db.subnetIds],
      });
      if (db.securityGroupId) {
        securityGroups = [SecurityGroup.fromSecurityGroupId(this, 'DbSecurityGroup', db.securityGroupId)];
      }
    }

    this.dbPoller = new PulseFunction(this, 'DbPoller', {
      name: 'db-poller',
      timeoutSeconds: d.functions.dbPoller.timeoutSeconds,
      memoryMb: d.functions.dbPoller.memoryMb,
      logRetentionDays: d.retention.logDays,
      description: 'Scheduled: unprocessed rows (or rows past a watermark) → signals queue',
      environment: {
        ...dbPollerEnvironment(d.dbPoller),
        // The RDS certificate authorities the Lambda runtime ships, so TLS to the database is verified.
        [PLATFORM_ENV.nodeExtraCaCerts]: '/var/runtime/ca-cert.pem',
        ...(db ? { [ENV.dbSecretArn]: db.secretArn } : {}),
      },
      ...(vpc
        ? {
            vpc,
            vpcSubnets: {
              subnets: (db?.subnetIds ?? []).map((s, i) => Subnet.fromSubnetId(this, `DbSubnet${i}`, s)),
            },
            ...(securityGroups ? { securityGroups } : {}),
          }
        : {}),
    });
    resources.grantSendSignals(this.dbPoller);
    resources.grantQuarantine(this.dbPoller);
    // Backpressure: the poller reads the signals queue's depth before each round.
    this.dbPoller.addToRolePolicy(
      new PolicyStatement({ actions: ['sqs:GetQueueAttributes'], resources: [resources.signals.queueArn] }),
    );
    // The watermark lives in the ledger table (item `watermark#<table>`): read, then a conditional put, and
    // only on the watermark items: the file items beside them are none of the poller's business.
    this.dbPoller.addToRolePolicy(
      new PolicyStatement({
        actions: ['dynamodb:GetItem', 'dynamodb:PutItem'],
        resources: [resources.ledger.tableArn],
        conditions: {
          'ForAllValues:StringLike': { 'dynamodb:LeadingKeys': [`${settings.dbPoller.watermarkKeyPrefix}*`] },
        },
      }),
    );
    this.dbPoller.addEnvironment(ENV.watermarkTable, resources.ledger.tableName);
    // The credentials are read from Secrets Manager at cold start; only the secret's ARN is in the environment.
    if (db) {
      this.dbPoller.addToRolePolicy(
        new PolicyStatement({ actions: ['secretsmanager:GetSecretValue'], resources: [db.secretArn] }),
      );
    }

    // One schedule per table, all invoking the one poller; each input names its table (DB_TABLES holds its
    // settings). A one-table deployment keeps the id it always had.
    const tables = d.dbPoller.tables;
    this.schedules = tables.map(
      (t) =>
        new Schedule(this, tables.length === 1 ? 'DbPollerSchedule' : `DbPollerSchedule-${t.table}`, {
          schedule: ScheduleExpression.rate(Duration.minutes(t.scheduleRateMinutes)),
          target: new LambdaInvoke(this.dbPoller, {
            retryAttempts: 0,
            input: ScheduleTargetInput.fromObject({
              table: t.table,
              scheduledTime: ContextAttribute.scheduledTime,
              executionId: ContextAttribute.executionId,
            }),
          }),
          // Without a database the poller is deployed but never runs (see the README to enable it).
          enabled: db !== undefined,
          description: `Polls the table ${t.table} (${t.mode} mode)`,
        }),
    );
    this.schedule = this.schedules[0] as Schedule;
    this.suppressSchedulerInvokeQualifiers();

    this.kafkaFailures = new KafkaFailures(this, 'KafkaFailures', {
      retentionDays: d.retention.kafkaFailuresDays,
      dlqRetentionDays: d.retention.dlqDays,
      ...(props.accessLogs ? { accessLogs: props.accessLogs } : {}),
    });
    this.kafkaConsumer = new PulseFunction(this, 'KafkaConsumer', {
      name: 'kafka-consumer',
      timeoutSeconds: d.functions.kafkaConsumer.timeoutSeconds,
      memoryMb: d.functions.kafkaConsumer.memoryMb,
      logRetentionDays: d.retention.logDays,
      description: 'MSK / self-managed Kafka → decode, validate, pack → signals queue',
      environment: {
        ...kafkaConsumerEnvironment(d.kafkaConsumer),
        ...(props.kafka?.schemaRegistry
          ? { [ENV.kafkaSchemaRegistry]: JSON.stringify(schemaRegistryEnv(props.kafka.schemaRegistry)) }
          : {}),
      },
    });
    resources.grantSendSignals(this.kafkaConsumer);
    resources.grantQuarantine(this.kafkaConsumer);

    const k = props.kafka;
    if (k) {
      const pollers = k.pollers ?? { mode: settings.kafka.pollerMode };
      const policy = kafkaRetryPolicy(pollers.mode, {
        maximumRetryAttempts: d.kafkaConsumer.maximumRetryAttempts,
        bisectBatchOnFunctionError: settings.kafka.bisectBatchOnFunctionError,
      });
      const common = {
        batchSize: d.kafkaConsumer.batchSize,
        maxBatchingWindow: Duration.seconds(d.kafkaConsumer.maxBatchingWindowSeconds),
        startingPosition: StartingPosition[k.startingPosition ?? settings.kafka.startingPosition],
        ...(k.startingPositionTimestamp !== undefined
          ? { startingPositionTimestamp: k.startingPositionTimestamp }
          : {}),
        onFailure: new S3WriteOnlyKafkaDestination(this.kafkaFailures.bucket),
        // Lambda accepts the error handling controls on a Kafka mapping in provisioned mode only; there
        // they bound the retries, so a failing batch reaches the bucket instead of stalling its partition.
        ...(pollers.mode === 'provisioned'
          ? {
              provisionedPollerConfig: {
                minimumPollers: pollers.minimum ?? settings.kafka.provisionedPollers.minimum,
                maximumPollers: pollers.maximum ?? settings.kafka.provisionedPollers.maximum,
              },
              retryAttempts: policy.maximumRetryAttempts,
              bisectBatchOnError: policy.bisectBatchOnFunctionError,
            }
          : {}),
      };
      this.suppressKafkaDestinationObjects();
      if (k.kind === 'msk') {
        NagSuppressions.addResourceSuppressions(
          this.kafkaConsumer.role ?? this.kafkaConsumer,
          [
            {
              id: 'AwsSolutions-IAM4',
              reason:
                "CDK's ManagedKafkaEventSource attaches it: the event source mapping's pollers need its kafka:Describe*/GetBootstrapBrokers and ec2 network-interface actions in the cluster's VPC, which AWS keeps current in this policy.",
              appliesTo: [
                'Policy::arn:<AWS::Partition>:iam::aws:policy/service-role/AWSLambdaMSKExecutionRole',
              ],
            },
          ],
          true,
        );
      }
      const secret =
        k.kind === 'self-managed'
          ? Secret.fromSecretCompleteArn(this, 'KafkaSecret', k.secretArn)
          : undefined;
      const rootCa =
        k.kind === 'self-managed' && k.rootCaSecretArn
          ? Secret.fromSecretCompleteArn(this, 'KafkaRootCa', k.rootCaSecretArn)
          : undefined;
      // The pollers read the root CA with the function's role, as they read the credentials (which CDK
      // grants); CDK grants nothing for the root CA.
      rootCa?.grantRead(this.kafkaConsumer);
      // One registry for every mapping (its secrets are granted once per mapping: the same statements).
      const registry = k.schemaRegistry ? schemaRegistryOf(this, k.schemaRegistry) : undefined;
      if (k.schemaRegistry?.kind === 'glue')
        suppressGlueSchemaVersions(this.kafkaConsumer.role ?? this.kafkaConsumer);
      // Lambda reads one topic per Kafka mapping: one mapping per topic, all into the one function.
      const topics = kafkaTopicsOf(k);
      for (const topic of topics) {
        const groupId = kafkaMappingGroupId(k.consumerGroupId, topic, topics);
        const mapping = {
          ...common,
          topic,
          ...(groupId ? { consumerGroupId: groupId } : {}),
          ...(registry ? { schemaRegistryConfig: registry } : {}),
        };
        this.kafkaConsumer.addEventSource(
          k.kind === 'msk'
            ? new ManagedKafkaEventSource({ ...mapping, clusterArn: k.clusterArn })
            : new SelfManagedKafkaEventSource({
                ...mapping,
                bootstrapServers: [...k.bootstrapServers],
                ...(secret ? { secret } : {}),
                authenticationMethod: AUTHENTICATION[k.authentication ?? 'SASL_SCRAM_512'],
                ...(rootCa ? { rootCACertificate: rootCa } : {}),
              }),
        );
      }
    }
  }

  /**
   * cdk-nag IAM5 on exactly `<failures bucket>/*` in the kafka-consumer's policy: the event source mapping
   * writes each discarded batch under a key of its own choosing (a UUID in it) in that one bucket.
   */
  private suppressKafkaDestinationObjects(): void {
    const bucketId = Stack.of(this).getLogicalId(this.kafkaFailures.bucket.node.defaultChild as CfnResource);
    NagSuppressions.addResourceSuppressions(
      this.kafkaConsumer.role ?? this.kafkaConsumer,
      [
        {
          id: 'AwsSolutions-IAM5',
          reason:
            'The Kafka event source mapping writes each discarded batch to the on-failure bucket under a key Lambda chooses (with a random UUID); the wildcard is the object key in that one bucket, which holds nothing else.',
          appliesTo: [`Resource::<${bucketId}.Arn>/*`],
        },
      ],
      true,
    );
  }

  /**
   * EventBridge Scheduler's LambdaInvoke target grants lambda:InvokeFunction on the poller and on
   * `<poller ARN>:*` (its versions and aliases) through one stack-level role; only that second ARN is
   * suppressed, on that role.
   */
  private suppressSchedulerInvokeQualifiers(): void {
    const stack = Stack.of(this);
    const roles = stack.node.children.filter((c) => c.node.id.startsWith('SchedulerRoleForTarget-'));
    if (roles.length === 0)
      throw new Error('the schedule target role (SchedulerRoleForTarget-*) was not found');
    const fnId = stack.getLogicalId(this.dbPoller.node.defaultChild as CfnResource);
    for (const role of roles) {
      NagSuppressions.addResourceSuppressions(
        role,
        [
          {
            id: 'AwsSolutions-IAM5',
            reason:
              'The wildcard is the qualifier (version or alias) of the one db-poller function the schedule invokes, as granted by LambdaInvoke.',
            appliesTo: [`Resource::<${fnId}.Arn>:*`],
          },
        ],
        true,
      );
    }
  }
}
