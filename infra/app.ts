import { App } from 'aws-cdk-lib';
import { settings } from '../shared/settings.ts';
import { PulseStack } from './pulse-stack.ts';

/** The CDK app. Synthesizes offline: no lookups, no credentials, environment-agnostic. */
const app = new App();
new PulseStack(app, settings.stackName, {
  description: 'Pulse Ingest: files into signals, scored exactly once',
});
app.synth();
