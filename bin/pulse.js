#!/usr/bin/env node
// The `pulse` CLI (cli/pulse.ts), run through tsx so that the TypeScript sources need no build step.
import { register } from 'tsx/esm/api';

register();
await import('../cli/pulse.ts');
