import { App, Aspects } from 'aws-cdk-lib';
import { AwsSolutionsChecks } from 'cdk-nag';
import { settings } from '#shared/settings.ts';
import { producersContext } from './producers.ts';
import { PulseStack } from './pulse-stack.ts';

/** The CDK app. Synthesizes offline: no lookups, no credentials, environment-agnostic. */
const app = new App();
new PulseStack(app, settings.stackName, {
  description: 'Pulse Ingest: files, rows and messages into signals, scored exactly once',
  // -c dbSecretArn=… -c dbVpcId=… -c dbSubnetIds=… -c dbSecurityGroupId=…; -c mskClusterArn=… or -c kafkaBootstrapServers=… -c kafkaSecretArn=…; -c kafkaTopic=…
  ...producersContext((key) => app.node.tryGetContext(key)),
  ...(typeof app.node.tryGetContext('alarmEmail') === 'string'
    ? { alarmEmail: app.node.tryGetContext('alarmEmail') }
    : {}),
});
// cdk-nag's AWS Solutions pack: an unsuppressed finding is an error annotation, and `cdk synth` fails on
// it. Suppressions sit next to the resource they concern, each with its reason.
Aspects.of(app).add(new AwsSolutionsChecks({ verbose: true }));
app.synth();
