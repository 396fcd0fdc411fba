#!/usr/bin/env node
// The Confluent Schema Registry stand-in (local/emulators/schema-registry-server.ts) as its own process,
// run through tsx so that the TypeScript sources need no build step; local/emulators/schema-registry.ts
// starts and stops it by pid.
import { register } from 'tsx/esm/api';

register();
const { main } = await import('../local/emulators/schema-registry-server.ts');
await main(process.argv.slice(2));
