import { App, Aspects } from 'aws-cdk-lib';
import { AwsSolutionsChecks } from 'cdk-nag';
import { pulseContext } from './context.ts';
import { PulseStack } from './pulse-stack.ts';

/**
 * The CDK app: the first user of the {@link PulseStack}'s construct. Its deployment comes from context
 * (cdk.json and `-c`, infra/context.ts), checked once. Synthesizes offline: no lookups, no credentials,
 * environment-agnostic.
 */
const app = new App();
const { stackName, props } = pulseContext((key) => app.node.tryGetContext(key));
new PulseStack(app, stackName, {
  description: 'Pulse Ingest: files, rows and messages into signals, scored exactly once',
  ...props,
});
// cdk-nag's AWS Solutions pack: an unsuppressed finding is an error annotation, and `cdk synth` fails on
// it. Suppressions sit next to the resource they concern, each with its reason.
Aspects.of(app).add(new AwsSolutionsChecks({ verbose: true }));
app.synth();
