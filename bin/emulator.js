#!/usr/bin/env node
// `start`, `stop` and `status` of scripts/emulators.sh, postgres.sh and kafka.sh (local/emulators/cli.ts),
// run through tsx so that the TypeScript sources need no build step.
import { register } from 'tsx/esm/api';

register();
const { main } = await import('../local/emulators/cli.ts');
// Exit now: the servers started run detached, and nothing else is left to wait for.
process.exit(await main(process.argv.slice(2)));
