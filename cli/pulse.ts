/**
 * `pulse`: runs the pipeline offline and operates it, offline or deployed (`--stack NAME`).
 * Argument parsing and printing only; the work is in local/ (runtime/offline.ts, commands/operations.ts, commands/status.ts).
 *
 *   npm run pulse -- local up [--detach]     npm run pulse -- status [--json]
 *   npm run pulse -- demo                    npm run pulse -- drop FILE…
 */

import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { SingleBar } from 'cli-progress';
import { Command, InvalidArgumentError, Option } from 'commander';
import type { FileStatus } from '#shared/ledger.ts';
import { FILE_STATUSES } from '#shared/ledger-counters.ts';
import { checkRoutes, type ResolvedRoute, resolveRoutes, type S3Route } from '#shared/routes.ts';
import { settings } from '#shared/settings.ts';
import { ORIGIN_KINDS, type OriginKind } from '#shared/signal.ts';
import {
  describeIssues,
  type PulseTuningProps,
  PulseTuningSchema,
  resolveDeployment,
} from '../infra/props.ts';
import type { ReplayInvoker } from '../local/commands/kafka-replay.ts';
import {
  DLQ_SOURCES,
  dropFiles,
  listDlq,
  type RedrivableDlq,
  redriveDlq,
} from '../local/commands/operations.ts';
import { lookupSignal, seriesAnomalies } from '../local/commands/scores.ts';
import { type PulseStatus, StatusCollector } from '../local/commands/status.ts';
import { costLines } from '../local/commands/status-cost.ts';
import { localTarget, stackTarget, type Target } from '../local/commands/target.ts';
import { printable, printableJson, printableRow } from '../local/commands/terminal.ts';
import { REPO_ROOT } from '../local/emulators/supervisor.ts';
import { localDown, localUp, type Progress, type UpOptions } from '../local/runtime/offline.ts';
import { localExistingBuckets, notAppliedWarning } from '../local/runtime/offline-config.ts';
import { runRuntimeProcess, runtimeEnv } from '../local/runtime/runtime.ts';
import { DEFAULT_HOME, readState } from '../local/runtime/state.ts';

interface GlobalOptions {
  readonly home: string;
  readonly stack?: string;
  readonly region?: string;
}

const program = new Command('pulse')
  .description('Pulse Ingest: run the pipeline offline, and operate it offline or deployed')
  .option('--home <dir>', 'folder of the offline run (state, data, logs)', DEFAULT_HOME)
  .option(
    '--stack <name>',
    'act on this deployed stack (outputs read from CloudFormation) instead of the offline run',
  )
  .option('--region <region>', 'AWS region of --stack (default: the SDK default)')
  .version(packageVersion(), '-V, --version', 'print the version of pulse')
  .showHelpAfterError();

const globals = (): GlobalOptions => {
  const o = program.opts<GlobalOptions>();
  return { ...o, home: resolve(o.home) };
};

async function withTarget<T>(fn: (target: Target) => Promise<T>): Promise<T> {
  const g = globals();
  const target = g.stack ? await stackTarget(g.stack, g.region) : localTarget(readState(g.home));
  try {
    return await fn(target);
  } finally {
    target.close();
  }
}

const positiveInt = (name: string) => (raw: string) => {
  const n = Number(raw);
  if (!Number.isInteger(n) || n <= 0) throw new InvalidArgumentError(`${name} must be a positive integer`);
  return n;
};

const nonNegativeInt = (name: string) => (raw: string) => {
  const n = Number(raw);
  if (!Number.isInteger(n) || n < 0)
    throw new InvalidArgumentError(`${name} must be 0 or a positive integer`);
  return n;
};

const jsonObject = (name: string) => (raw: string) => {
  let value: unknown;
  try {
    value = JSON.parse(raw);
  } catch (err) {
    throw new InvalidArgumentError(`${name} must be JSON: ${(err as Error).message}`);
  }
  if (typeof value !== 'object' || value === null || Array.isArray(value))
    throw new InvalidArgumentError(`${name} must be a JSON object`);
  return value as Record<string, unknown>;
};

/**
 * What `local up` applies of `--config` (the `-c pulse` object, checked whole as the stack checks it, and
 * `existingBuckets`, the `-c existingBuckets` array): the routes, the db-poller's props with `--db-poller`
 * over them, the kafka-consumer's props and the existing buckets (`--existing-buckets` over the file's). The
 * keys it does not apply are named in a warning (local/runtime/offline-config.ts).
 */
function offlineProps(
  config: Record<string, unknown> | undefined,
  dbPoller: Record<string, unknown> | undefined,
  existingBuckets?: unknown,
): Pick<UpOptions, 's3' | 'dbPoller' | 'kafkaConsumer' | 'existingBuckets'> {
  const { existingBuckets: fromConfig, ...pulse } = config ?? {};
  const tuning = config ? resolveTuning(pulse) : {};
  const warning = config ? notAppliedWarning(pulse) : undefined;
  if (warning) console.warn(warning);
  const merged = { ...tuning.dbPoller, ...dbPoller };
  let buckets: UpOptions['existingBuckets'];
  try {
    buckets = localExistingBuckets(existingBuckets ?? fromConfig);
  } catch (err) {
    throw new InvalidArgumentError(`existingBuckets: ${(err as Error).message}`);
  }
  return {
    ...(tuning.s3 ? { s3: tuning.s3 } : {}),
    ...(Object.keys(merged).length > 0 ? { dbPoller: merged } : {}),
    ...(tuning.kafkaConsumer ? { kafkaConsumer: tuning.kafkaConsumer } : {}),
    ...(buckets ? { existingBuckets: buckets } : {}),
  };
}

/** `--config`'s object, checked as `-c pulse` is (PulseTuningSchema, then every relation). */
function resolveTuning(config: Record<string, unknown>): PulseTuningProps {
  const parsed = PulseTuningSchema.safeParse(config);
  if (!parsed.success) throw new InvalidArgumentError(`--config: ${describeIssues(parsed.error)}`);
  resolveDeployment(parsed.data);
  return parsed.data;
}

/** The routes `check` reads with: the deployment's (`--config`), or one of `--mapping` and `--delimiter`. */
function checkRoutesOf(o: {
  config?: Record<string, unknown>;
  mapping?: Record<string, unknown>;
  delimiter?: string;
}): ResolvedRoute[] | undefined {
  if (o.config && (o.mapping || o.delimiter))
    throw new InvalidArgumentError('--config gives the routes: leave out --mapping and --delimiter');
  if (o.config) {
    // The same file as `local up --config`: its existingBuckets are the stack's context, not -c pulse.
    const { existingBuckets: _, ...pulse } = o.config;
    return resolveRoutes(resolveDeployment(resolveTuning(pulse)).s3.routes);
  }
  if (!o.mapping && !o.delimiter) return undefined;
  const delimiter = o.delimiter === '\\t' ? '\t' : o.delimiter;
  // One route taking every key, checked as a route of the deployment is.
  const [route] = checkRoutes([
    {
      prefix: settings.routes.defaultPrefix,
      ...(o.mapping ? { mapping: o.mapping } : {}),
      ...(delimiter ? { csv: { delimiter } } : {}),
    },
  ]);
  return resolveRoutes([{ ...route, prefix: '' } as S3Route]);
}

/** This package's version (package.json). */
function packageVersion(): string {
  return (JSON.parse(readFileSync(join(REPO_ROOT, 'package.json'), 'utf8')) as { version: string }).version;
}

// ------------------------------------------------------------------------------------------- local

const local = program.command('local').description('the offline pipeline on this machine');

local
  .command('up')
  .description('install what is missing, start the emulators and the runtime (Ctrl-C stops them)')
  .option('--detach', 'return once everything is ready, leaving it running (stop with `local down`)')
  .option('--prefix <prefix>', 'resource name prefix')
  .option('--any-port', 'use free ports rather than the usual ones (4566, 5433, 9092, 4580)')
  .option('--lease-seconds <n>', 'ledger lease (default: as deployed)', positiveInt('--lease-seconds'))
  .option(
    '--visibility-seconds <n>',
    'visibility timeout of the consumed queues (default: as deployed)',
    positiveInt('--visibility-seconds'),
  )
  .option(
    '--poll-seconds <n>',
    'run the db-poller this often (default: its schedule)',
    positiveInt('--poll-seconds'),
  )
  .option(
    '--sweep-seconds <n>',
    'run the ledger sweep this often (default: its schedule)',
    positiveInt('--sweep-seconds'),
  )
  .option(
    '--db-poller <json>',
    'the db-poller\'s props, as PulseIngest\'s dbPoller takes them (e.g. \'{"processedType":"integer"}\'; several tables, one schedule each: \'{"tables":[{"table":"a"},{"table":"b","mode":"watermark"}]}\')',
    jsonObject('--db-poller'),
  )
  .option(
    '--config <file>',
    "the deployment's props as JSON, the object -c pulse takes (checked as the stack checks them), and existingBuckets (the -c existingBuckets array); its s3 (routes, mapping, CSV delimiter, after success), dbPoller, kafkaConsumer (value format, per-topic mappings) and existingBuckets are applied offline, other keys are named in a warning",
    (path: string) => jsonObject('--config')(readFileSync(path, 'utf8')),
  )
  .option(
    '--existing-buckets <json>',
    'buckets created outside the pipeline (in moto), as the -c existingBuckets context takes them (e.g. \'[{"bucket":"my-data","prefixes":["in/"],"notifications":"s3-sqs"}]\'): each is connected to the file-events queue and its prefixes get routes of their own, as the stack does',
  )
  .option(
    '--kafka-group <id>',
    'the Kafka event source joins this consumer group, as the stack with -c kafkaConsumerGroupId (default: one per run)',
  )
  .option(
    '--kafka-starting-timestamp <time>',
    'a new consumer group starts at this time (ISO-8601 or Unix seconds), as the stack with -c kafkaStartingPosition=AT_TIMESTAMP',
    (v: string) => {
      const ms = /^\d+(\.\d+)?$/.test(v) ? Number(v) * 1000 : Date.parse(v);
      if (!Number.isFinite(ms)) throw new InvalidArgumentError('must be ISO-8601 or Unix seconds');
      return ms;
    },
  )
  .option(
    '--kafka-topic <topics>',
    'the Kafka event source reads these topics (comma-separated, one emulated mapping each), as the stack with -c kafkaTopic (default: pulse_signals)',
  )
  .option(
    '--kafka-registry',
    'start a Confluent Schema Registry stand-in and validate Kafka records through it, as the stack with kafka.schemaRegistry (JSON records)',
  )
  .action(
    async (o: {
      kafkaRegistry?: boolean;
      detach?: boolean;
      prefix?: string;
      anyPort?: boolean;
      leaseSeconds?: number;
      visibilitySeconds?: number;
      pollSeconds?: number;
      sweepSeconds?: number;
      dbPoller?: Record<string, unknown>;
      config?: Record<string, unknown>;
      existingBuckets?: string;
      kafkaGroup?: string;
      kafkaTopic?: string;
      kafkaStartingTimestamp?: number;
    }) => {
      const { home } = globals();
      const started = Date.now();
      // Ctrl-C (or SIGTERM) at any time, during start-up too, stops everything this run started.
      let interrupt: () => void = () => {};
      const interrupted = new Promise<void>((resolveStop) => {
        interrupt = resolveStop;
      });
      let stopping = false;
      const onSignal = () => {
        stopping = true;
        interrupt();
      };
      process.on('SIGINT', onSignal);
      process.on('SIGTERM', onSignal);
      const stopAll = async () => {
        console.log('\nstopping…');
        const stopped = await localDown({ home });
        console.log(`stopped: ${stopped.join(', ') || 'nothing was running'}`);
      };
      const up = localUp({
        home,
        progress: consoleProgress(),
        ...(o.prefix ? { prefix: o.prefix } : {}),
        ...(o.anyPort ? { anyPort: true } : {}),
        ...(o.leaseSeconds ? { leaseSeconds: o.leaseSeconds } : {}),
        ...(o.visibilitySeconds ? { visibilitySeconds: o.visibilitySeconds } : {}),
        ...(o.pollSeconds ? { pollSeconds: o.pollSeconds } : {}),
        ...(o.sweepSeconds ? { sweepSeconds: o.sweepSeconds } : {}),
        ...offlineProps(o.config, o.dbPoller, o.existingBuckets),
        ...(o.kafkaGroup ? { kafkaConsumerGroupId: o.kafkaGroup } : {}),
        ...(o.kafkaRegistry ? { kafkaSchemaRegistry: true } : {}),
        ...(o.kafkaStartingTimestamp !== undefined
          ? { kafkaStartingTimestampMs: o.kafkaStartingTimestamp }
          : {}),
        ...(o.kafkaTopic
          ? {
              kafkaTopics: o.kafkaTopic
                .split(',')
                .map((t) => t.trim())
                .filter(Boolean),
            }
          : {}),
      });
      const state = await Promise.race([up, interrupted.then(() => undefined)]);
      if (stopping || !state) {
        await up.catch(() => undefined); // let the start-up finish recording what it started
        await stopAll();
        process.exitCode = 130;
        return;
      }
      const target = localTarget(state);
      target.close();
      const e = target.endpoints;
      console.log(`\nPulse is up offline (${((Date.now() - started) / 1000).toFixed(1)} s).`);
      console.log(`  dashboard   ${e.dashboard ?? '(none)'}`);
      console.log(`  s3/sqs/ddb  ${e.s3}   bucket ${target.bucket}`);
      console.log(`  postgres    ${e.postgres}   table ${state.resources?.dbTable}`);
      console.log(`  kafka       ${e.kafka}   topic ${e.kafkaTopic}`);
      console.log(`  runtime log ${state.runtime?.log}`);
      console.log(
        '\nTry: npm run pulse -- demo   |   npm run pulse -- drop FILE   |   npm run pulse -- status',
      );
      if (o.detach) {
        process.off('SIGINT', onSignal);
        process.off('SIGTERM', onSignal);
        return;
      }
      console.log('\nRunning in the foreground: Ctrl-C stops everything (data is kept).');
      // A pending promise alone does not keep Node running: a timer does, until a signal comes.
      const keepAlive = setInterval(() => {}, 60_000);
      await interrupted;
      clearInterval(keepAlive);
      await stopAll();
    },
  );

local
  .command('down')
  .description('stop everything `local up` started (by process id); data is kept unless --wipe')
  .option('--wipe', 'also delete the data, so the next `up` starts from nothing')
  .option('--runtime-only', 'stop only the runtime process; the emulators keep running')
  .action(async (o: { wipe?: boolean; runtimeOnly?: boolean }) => {
    const { home } = globals();
    const stopped = await localDown({
      home,
      ...(o.wipe ? { wipe: true } : {}),
      ...(o.runtimeOnly ? { runtimeOnly: true } : {}),
    });
    console.log(
      `stopped: ${stopped.join(', ') || 'nothing was running'}${o.wipe ? `; removed ${home}` : ''}`,
    );
  });

local
  .command('runtime', { hidden: true })
  .description('the runtime process itself (started by `local up`)')
  .option('--dashboard-port <n>', 'port of the dashboard page', positiveInt('--dashboard-port'))
  .action(async (o: { dashboardPort?: number }) => {
    await runRuntimeProcess(globals().home, o.dashboardPort);
  });

// ---------------------------------------------------------------------------------------- doctor

program
  .command('doctor')
  .description(
    'is data getting through? credentials, the stack and its outputs, notifications (a canary to the ledger), event sources, DLQs, database and Kafka sources',
  )
  .option(
    '--timeout <seconds>',
    'how long the canary may take to reach the ledger',
    positiveInt('--timeout'),
    settings.doctor.canaryTimeoutSeconds,
  )
  .option(
    '--json',
    'print JSON: { exitCode, target, checks: [{ id, title, status, summary, next, details }] }',
  )
  .addHelpText(
    'after',
    `
Examples:
  npm run pulse -- doctor --stack PulseIngest-dev
  npm run pulse -- doctor                          (the offline run)

Exit codes: 0 every check passed (a source that is not configured counts as passed); 1 a problem was
found (what to do is printed under it); 2 no problem found, but a check could not be made (no credentials,
no access, no offline run).`,
  )
  .action(async (o: { timeout: number; json?: boolean }) => {
    const { doctorText } = await import('../local/commands/doctor-text.ts');
    const g = globals();
    let report: import('../local/commands/doctor.ts').DoctorReport;
    if (g.stack) {
      const { doctorStack } = await import('../local/commands/doctor-aws.ts');
      const { doctorClients } = await import('../local/commands/doctor-clients.ts');
      const clients = doctorClients(g.region);
      try {
        report = await doctorStack(clients, { stackName: g.stack, timeoutMs: o.timeout * 1000 });
      } finally {
        clients.close();
      }
    } else {
      const { doctorLocal } = await import('../local/commands/doctor-local.ts');
      report = await doctorLocal(readState(g.home), { timeoutMs: o.timeout * 1000 });
    }
    if (o.json) console.log(printableJson(report));
    else console.log(doctorText(report));
    process.exitCode = report.exitCode;
  });

// ------------------------------------------------------------------------------------------ demo

program
  .command('demo')
  .description('put a little sample data in the bucket, the table and the topic')
  .action(async () => {
    const { runDemo } = await import('../local/runtime/demo.ts');
    await withTarget(async (target) => {
      const result = await runDemo({
        s3: target.clients.s3,
        bucket: target.bucket,
        ...(target.endpoints.postgres ? { postgresUrl: target.endpoints.postgres } : {}),
        ...(target.endpoints.kafka ? { kafkaBrokers: target.endpoints.kafka } : {}),
        ...(target.endpoints.kafkaTopic ? { kafkaTopic: target.endpoints.kafkaTopic } : {}),
      });
      for (const f of result.files) console.log(`file     ${f.key}  (${f.records} records, ${f.bad} bad)`);
      console.log(`rows     ${result.rows} inserted into the signals table (1 bad)`);
      console.log(
        `messages ${result.messages} produced to ${target.endpoints.kafkaTopic ?? '(no topic)'} (1 bad)`,
      );
      console.log('Watch them arrive: npm run pulse -- status');
    });
  });

// ------------------------------------------------------------------------------------------ drop

program
  .command('drop')
  .description('upload files to incoming/<basename> of the bucket (--wait: and follow each to its receipt)')
  .argument('<files...>', 'files to upload')
  .option('--bucket <bucket>', 'a bucket of your own instead of the pipeline’s')
  .option('--wait', 'follow each file to its final state (ingested, then scored) and print its receipt')
  .option('--timeout <seconds>', 'with --wait: give up after this long', positiveInt('--timeout'), 600)
  .option('--json', 'with --wait: print JSON { exitCode, files: [{ key, etag, phase, read, receipt, … }] }')
  .addHelpText(
    'after',
    `
Examples:
  npm run pulse -- drop data/readings.csv
  npm run pulse -- drop data/readings.csv data/events.ndjson --wait --timeout 300

With --wait, exit codes: 0 every file ended SUCCESS and its receipt balances (stored on its ledger item);
2 a receipt does not balance by the timeout; 3 a file FAILED or was SKIPPED; 4 a file had not ended by the
timeout; 1 pulse could not drop or follow (no offline run, no access). Progress bars only on a terminal.`,
  )
  .action(
    async (files: string[], o: { bucket?: string; wait?: boolean; timeout: number; json?: boolean }) => {
      if (o.wait) {
        if (o.bucket)
          throw new InvalidArgumentError('--wait follows the pipeline’s bucket: leave out --bucket');
        const { dropAndWait } = await import('./drop-wait-cli.ts');
        await withTarget((target) =>
          dropAndWait(target, files, { timeoutSeconds: o.timeout, json: o.json === true }),
        );
        return;
      }
      const run = async (s3: Target['clients']['s3'], bucket: string) => {
        for (const d of await dropFiles(s3, bucket, files)) {
          console.log(
            printable(`dropped ${d.file} → s3://${d.bucket}/${d.key} (${d.bytes} bytes, etag ${d.etag})`),
          );
        }
      };
      if (o.bucket && !globals().stack && !readState(globals().home)?.moto) {
        const { S3Client } = await import('@aws-sdk/client-s3');
        const region = globals().region;
        const s3 = new S3Client(region ? { region } : {});
        try {
          await run(s3, o.bucket);
        } finally {
          s3.destroy();
        }
        return;
      }
      await withTarget((target) => run(target.clients.s3, o.bucket ?? target.bucket));
    },
  );

// ----------------------------------------------------------------------------------------- check

program
  .command('check')
  .description(
    'read files as the deployed s3-trigger would, here, with no AWS and no emulator: format, records, rejects, signals',
  )
  .argument('<files...>', 'files to check')
  .option('--key <key>', 'the key the file would be uploaded to (one file; default: incoming/<basename>)')
  .option('--max-rejects <n>', 'rows rejected at most for a file to pass', nonNegativeInt('--max-rejects'), 0)
  .option('--signals <n>', 'signals listed per file (the first ones)', nonNegativeInt('--signals'), 5)
  .option(
    '--rejects <n>',
    'rejects listed per file (the first ones; all are counted)',
    nonNegativeInt('--rejects'),
    20,
  )
  .option(
    '--json',
    'print JSON: { exitCode, files: [{ verdict, records, signals, rejected, firstRejects, … }] }',
  )
  .option(
    '--config <file>',
    "the deployment's props (the -c pulse object): the file is read as the route that takes its key reads it",
    (path: string) => jsonObject('--config')(readFileSync(path, 'utf8')),
  )
  .option(
    '--mapping <json>',
    'the field mapping to read with, as a route gives it (e.g. \'{"name":"metric","value":"val","timestamp":"ts"}\')',
    jsonObject('--mapping'),
  )
  .option('--delimiter <d>', 'the CSV delimiter to read with, as a route gives it: , ; \\t or |')
  .addHelpText(
    'after',
    `
Example:
  npm run pulse -- check data/readings.csv data/events.ndjson.gz --max-rejects 10

Exit codes: 0 every file would be ingested (with at most --max-rejects rejected rows each);
2 a file has more rejected rows; 3 a file would fail, or be skipped as a type the pipeline does not read;
1 a file could not be checked (missing, unreadable) or the arguments are wrong. The worst file decides.`,
  )
  .action(
    async (
      files: string[],
      o: {
        key?: string;
        maxRejects: number;
        signals: number;
        rejects: number;
        json?: boolean;
        config?: Record<string, unknown>;
        mapping?: Record<string, unknown>;
        delimiter?: string;
      },
    ) => {
      const routes = checkRoutesOf(o);
      const { checkExitCode, checkFile } = await import('../local/commands/check.ts');
      const { checkSummaryText } = await import('../local/commands/check-text.ts');
      if (o.key && files.length > 1)
        throw new InvalidArgumentError('--key names the key of one file: give one file');
      const reports = [];
      const unreadable: { file: string; error: string }[] = [];
      for (const file of files) {
        try {
          reports.push(
            await checkFile(file, {
              maxRejects: o.maxRejects,
              signals: o.signals,
              rejects: o.rejects,
              ...(o.key ? { key: o.key } : {}),
              ...(routes ? { routes } : {}),
            }),
          );
        } catch (err) {
          const e = err as NodeJS.ErrnoException;
          const error =
            e.code === 'ENOENT'
              ? `no such file: ${file} (give the path of a file to check)`
              : `cannot check ${file}: ${e.message}`;
          unreadable.push({ file, error });
          if (!o.json) console.error(printable(`pulse: ${error}`));
        }
      }
      const exitCode = Math.max(checkExitCode(reports), unreadable.length > 0 ? 1 : 0);
      if (o.json) console.log(printableJson({ exitCode, files: reports, unreadable }));
      else if (reports.length > 0) console.log(checkSummaryText(reports));
      process.exitCode = exitCode;
    },
  );

// ---------------------------------------------------------------------------------------- verify

program
  .command('verify')
  .description(
    'a receipt per object version: records read = scored + quarantined (+ duplicates dropped), counted from the score and rejects objects',
  )
  .argument('[key]', 'an object key (incoming/x.csv, or s3://bucket/key): every version of it')
  .option(
    '--since <time>',
    'every file the ledger updated since: a time (ISO-8601) or a duration (90m, 24h, 7d)',
  )
  .option(
    '--json',
    'print JSON: { exitCode, receipts: [{ object, verdict, read, scored, quarantined, missingRows, … }] }',
  )
  .addHelpText(
    'after',
    `
Examples:
  npm run pulse -- verify incoming/readings.csv
  npm run pulse -- verify --since 24h --stack PulseIngest

Exit codes: 0 every version verified balances; 2 one does not (its missing rows are listed);
3 no version found, or none has finished yet; 1 pulse could not verify (no offline run, no access).`,
  )
  .action(async (key: string | undefined, o: { since?: string; json?: boolean }) => {
    const { parseSince, verify, verifyExitCode } = await import('../local/commands/verify.ts');
    const { receiptsText } = await import('../local/commands/verify-text.ts');
    if ((key === undefined) === (o.since === undefined)) {
      throw new InvalidArgumentError('give an object key, or --since TIME (not both)');
    }
    const selection = key !== undefined ? { key } : { since: parseSince(o.since as string) };
    await withTarget(async (target) => {
      const receipts = await verify(target, selection);
      const exitCode = verifyExitCode(receipts);
      if (o.json) console.log(printableJson({ exitCode, receipts }));
      else console.log(receiptsText(receipts));
      process.exitCode = exitCode;
    });
  });

// ---------------------------------------------------------------------------------------- status

program
  .command('status')
  .description('the ledger and the counts (scored, rejected, DLQ)')
  .option('--json', 'print JSON (files, scored, rejected, dlq, cost, endpoints, …)')
  .action(async (o: { json?: boolean }) => {
    await withTarget(async (target) => {
      const status = await new StatusCollector(target).collect();
      // Offline, the alarms the dashboard evaluates (the ledger sweep's ReceiptMismatches among them).
      const { alarmLines, offlineAlarms } = await import('../local/commands/status-alarms.ts');
      const alarms = status.endpoints.dashboard ? await offlineAlarms(status.endpoints.dashboard) : undefined;
      if (o.json) console.log(printableJson(alarms ? { ...status, alarms } : status));
      else {
        printStatus(status);
        if (status.endpoints.dashboard) for (const line of alarmLines(alarms)) console.log(printable(line));
      }
    });
  });

program
  .command('scores')
  .description("a signal's score (--ref, or --id with --from), or a series' anomalies (--series SOURCE NAME)")
  .option('--ref <ref>', 'origin ref: s3://bucket/key@etag#row, kafka:topic:partition:offset, db:table:id')
  .option('--id <id>', "a record's own id (with --from, and --source when the record brought one)")
  .option('--from <scope>', 'where the id is unique: s3://bucket/key@etag, kafka:topic or db:table')
  .option('--source <source>', "the record's source (default: the object key, topic or table)")
  .addOption(new Option('--kind <kind>', 'origin kind, when the ref does not say').choices([...ORIGIN_KINDS]))
  .option('--series <source-and-name...>', "a series' anomalies: its source and name")
  .option('--limit <n>', 'anomalies at most (newest)', positiveInt('--limit'), 100)
  .option('--json', 'print JSON')
  .action(
    async (o: {
      ref?: string;
      id?: string;
      from?: string;
      source?: string;
      kind?: OriginKind;
      series?: string[];
      limit: number;
      json?: boolean;
    }) => {
      await withTarget(async (target) => {
        if (o.series) {
          const [source, name] = o.series;
          if (source === undefined || name === undefined || o.series.length !== 2) {
            throw new InvalidArgumentError('--series takes two values: the source and the name');
          }
          const anomalies = await seriesAnomalies(target, source, name, o.limit);
          if (o.json) console.log(JSON.stringify(anomalies, null, 2));
          else if (anomalies.length === 0) console.log(`no anomalies in series ${source} / ${name}`);
          else
            console.table(
              anomalies.map(({ ref, value, score, timestamp }) => ({ timestamp, value, score, ref })),
            );
          return;
        }
        if (!o.ref && !(o.id && o.from)) {
          throw new InvalidArgumentError('give --ref REF, --id ID --from SCOPE, or --series SOURCE NAME');
        }
        const found = await lookupSignal(target, {
          ...(o.ref ? { ref: o.ref } : {}),
          ...(o.id ? { id: o.id } : {}),
          ...(o.from ? { from: o.from } : {}),
          ...(o.source ? { source: o.source } : {}),
          ...(o.kind ? { kind: o.kind } : {}),
        });
        if (o.json) console.log(JSON.stringify(found, null, 2));
        else if (found.status === 'scored') console.log(JSON.stringify(found.record, null, 2));
        else if (found.status === 'pending')
          console.log(`scored; its scores are being written (${found.object})`);
        else if (found.status === 'scored-elsewhere') console.log(`scored; ${found.hint}`);
        else console.log('not scored');
        if (found.status === 'not-scored') process.exitCode = 1;
      });
    },
  );

program
  .command('trace')
  .description(
    'from a record (its origin ref, or its own id with --from) to what happened to it: ledger, score, series, or quarantine reason',
  )
  .argument(
    '<id-or-origin>',
    's3://bucket/key@etag#row, kafka:topic:partition:offset, db:table:id, or an own id with --from',
  )
  .option('--from <scope>', "an own id's scope: s3://bucket/key@etag, kafka:topic or db:table")
  .option(
    '--source <source>',
    "the record's source, when it brought one (default: the object key, topic or table)",
  )
  .option(
    '--json',
    'print JSON: { exitCode, trace: { verdict, ref, ledger, score, series, quarantine, note } }',
  )
  .addHelpText(
    'after',
    `
Examples:
  npm run pulse -- trace 's3://pulse-ingest/incoming/readings.csv@0a1b2c#42'
  npm run pulse -- trace kafka:metrics:0:1187 --stack PulseIngest
  npm run pulse -- trace db:readings:981
  npm run pulse -- trace sensor-17 --from db:readings

Exit codes: 0 the record was scored (or its score is being written); 2 it was quarantined (the reason is
printed); 3 it was found nowhere (the note says what its file's ledger says); 1 pulse could not trace it
(not a ref and no --from, no offline run, no access).`,
  )
  .action(async (input: string, o: { from?: string; source?: string; json?: boolean }) => {
    const { trace, traceExitCode, traceText } = await import('../local/commands/trace.ts');
    await withTarget(async (target) => {
      const t = await trace(target, {
        input,
        ...(o.from ? { from: o.from } : {}),
        ...(o.source ? { source: o.source } : {}),
      });
      const exitCode = traceExitCode(t);
      if (o.json) console.log(printableJson({ exitCode, trace: t }));
      else console.log(traceText(t));
      process.exitCode = exitCode;
    });
  });

const ledger = program
  .command('ledger')
  .description('the ledger: one line per object version')
  .addOption(new Option('--status <status>', 'only entries in this state').choices(FILE_STATUSES))
  .option(
    '--key <key>',
    'only the versions (and parts) of this object key: incoming/x.csv or s3://bucket/key',
  )
  .option('--limit <n>', 'entries at most, most recently updated first', positiveInt('--limit'), 50)
  .option('--after <cursor>', 'the next page: the cursor the previous page printed after "next:"')
  .option('--json', 'print JSON (the entries; the next cursor goes to stderr)')
  .addHelpText(
    'after',
    `
Examples:
  npm run pulse -- ledger --status FAILED --limit 20
  npm run pulse -- ledger --key incoming/readings.csv --json

Reads only about what it prints: a Query of the key, or of the status index (newest first), never a Scan
(docs/counters.md). When more entries are left, stderr says how to get them: next: pulse ledger ... --after C.`,
  )
  .action(async (o: { status?: FileStatus; key?: string; limit: number; after?: string; json?: boolean }) => {
    await withTarget(async (target) => {
      const { listLedger } = await import('../local/commands/ledger-list.ts');
      const page = await listLedger(target, {
        limit: o.limit,
        ...(o.key !== undefined ? { key: o.key } : {}),
        ...(o.status !== undefined ? { status: o.status } : {}),
        ...(o.after !== undefined ? { after: o.after } : {}),
      });
      const items = page.items;
      if (page.next) process.stderr.write(`next: pulse ledger${ledgerArgs(o)} --after ${page.next}\n`);
      if (o.json) {
        console.log(printableJson(items));
        return;
      }
      // Keys and reasons come from outside: printable() keeps their control characters off the terminal.
      console.table(
        items.map((i) =>
          printableRow({
            key: i.key,
            etag: i.etag.slice(0, 10),
            // A split file's parts are listed under it, by number.
            part: i.part ?? (i.parts !== undefined ? `${i.partsDone ?? 0}/${i.parts} done` : ''),
            status: i.status,
            attempts: i.attempts,
            records: i.records ?? 0,
            rejected: i.rejected ?? 0,
            updated: i.updatedAt,
            error: i.errorType ? `${i.errorType}: ${i.errorMessage ?? ''}`.slice(0, 80) : '',
          }),
        ),
      );
    });
  });

/** The selection of a `pulse ledger` call, as arguments for its next page. */
function ledgerArgs(o: { status?: FileStatus; key?: string; limit: number; json?: boolean }): string {
  const quote = (v: string) => (/^[\w./:@-]+$/.test(v) ? v : `'${v.replace(/'/g, "'\\''")}'`);
  return printable(
    (o.key !== undefined ? ` --key ${quote(o.key)}` : '') +
      (o.status ? ` --status ${o.status}` : '') +
      ` --limit ${o.limit}` +
      (o.json ? ' --json' : ''),
  );
}

ledger
  .command('retry')
  .description(
    'run again object versions that FAILED for good, once the cause is fixed (no upload): the reset is recorded on the item',
  )
  .argument('[key]', 'an object key (incoming/x.csv, or s3://bucket/key): its FAILED versions')
  .option('--failed', 'every FAILED object version')
  .option(
    '--since <time>',
    'with --failed: those the ledger updated since a time (ISO-8601) or a duration (90m, 24h, 7d)',
  )
  .option('--by <who>', 'who asks, recorded on the item (default: user@host)')
  .option('--json', 'print JSON: { exitCode, results: [{ object, outcome, reason, previous }] }')
  .addHelpText(
    'after',
    `
Examples:
  npm run pulse -- ledger retry incoming/readings.csv
  npm run pulse -- ledger retry --failed --since 24h --stack PulseIngest

Each version is reset FAILED -> DISCOVERED (who, when and the previous error kept in its "retries") and
its file event sent again; follow it with: pulse verify KEY.
Exit codes: 0 every version selected was sent again; 2 one was refused (still retryable, split, replaced
or deleted in the bucket) or changed meanwhile; 3 none found; 1 pulse could not retry (no offline run, no access).`,
  )
  .action(
    async (
      key: string | undefined,
      o: { failed?: boolean; since?: string; by?: string; json?: boolean },
      command: Command,
    ) => {
      // `ledger` has a --json of its own, which commander gives the parent when it follows the subcommand.
      const json = o.json === true || command.optsWithGlobals<{ json?: boolean }>().json === true;
      const { parseSince } = await import('../local/commands/verify.ts');
      const { retryExitCode, retryText, retryVersions } = await import('../local/commands/retry.ts');
      if ((key === undefined) === (o.failed === undefined)) {
        throw new InvalidArgumentError('give an object key, or --failed (not both)');
      }
      if (o.since !== undefined && !o.failed) throw new InvalidArgumentError('--since goes with --failed');
      const selection =
        key !== undefined
          ? { key }
          : { failed: true as const, ...(o.since !== undefined ? { since: parseSince(o.since) } : {}) };
      await withTarget(async (target) => {
        const results = await retryVersions(target, selection, o.by ? { by: o.by } : {});
        const exitCode = retryExitCode(results);
        if (json) console.log(printableJson({ exitCode, results }));
        else console.log(retryText(results));
        process.exitCode = exitCode;
      });
    },
  );

// ------------------------------------------------------------------------------------------- dlq

const dlq = program.command('dlq').description('dead-letter queues');

dlq
  .command('list')
  .description('peek at the messages in the DLQs (nothing is consumed)')
  .option('--json', 'print JSON')
  .action(async (o: { json?: boolean }) => {
    await withTarget(async (target) => {
      const messages = await listDlq(target);
      if (o.json) console.log(printableJson(messages));
      else if (messages.length === 0) console.log('the DLQs are empty');
      else console.table(messages.map((m) => printableRow({ ...m, body: m.body.slice(0, 100) })));
    });
  });

dlq
  .command('redrive')
  .description('move DLQ messages back to their source queue (after the cause is fixed)')
  .addOption(
    new Option('--queue <queue>', 'only this DLQ').choices(Object.keys(DLQ_SOURCES) as RedrivableDlq[]),
  )
  .action(async (o: { queue?: RedrivableDlq }) => {
    await withTarget(async (target) => {
      const results = await redriveDlq(target, o.queue ? [o.queue] : undefined);
      for (const r of results) {
        console.log(
          r.taskHandle
            ? `${r.dlq} → ${r.to}: message move task started (${r.taskHandle})`
            : `${r.dlq} → ${r.to}: ${r.moved} message(s) moved`,
        );
        for (const k of r.kept ?? []) {
          console.log(
            printable(`  kept in ${r.dlq}: message ${k.messageId}, which ${r.to} refused: ${k.reason}`),
          );
        }
        if (r.kept?.length) process.exitCode = 1;
      }
    });
  });

// ----------------------------------------------------------------------------------------- kafka

const kafka = program.command('kafka').description('the Kafka event source');

kafka
  .command('replay')
  .description(
    'feed the batches in the Kafka failures bucket back through the kafka-consumer (each record is scored once)',
  )
  .option('--dry-run', 'list the failure objects and what replay would do; invoke and change nothing')
  .option('--json', 'print JSON')
  .action(async (o: { dryRun?: boolean; json?: boolean }) => {
    const { replayKafkaFailures } = await import('../local/commands/kafka-replay.ts');
    await withTarget(async (target) => {
      const invoker = o.dryRun ? undefined : await replayInvoker(target);
      const result = await replayKafkaFailures(target, invoker, {
        ...(o.dryRun ? { dryRun: true } : {}),
        ...(o.json
          ? {}
          : {
              onObject: (e, outcome) => {
                if (outcome === 'skipped') return;
                console.log(
                  `${outcome === 'replayed' ? 'replayed' : 'FAILED  '} ${e.key}  ${e.ranges ?? ''}${e.error ? `  ${e.error}` : ''}`,
                );
              },
            }),
      });
      if (o.json) console.log(JSON.stringify(result, null, 2));
      else if (o.dryRun) {
        if (result.entries.length === 0) console.log('the Kafka failures bucket is empty');
        for (const e of result.entries) {
          const what =
            e.status === 'replayed'
              ? `replayed ${e.replayedAt ?? ''}`
              : `would replay (${e.status}${e.error ? `: ${e.error}` : ''})`;
          console.log(`${e.key}  ${e.lastModified}  ${e.size} bytes  ${what}`);
        }
      } else {
        console.log(
          `${result.replayed} replayed, ${result.failed.length} failed again, ${result.skipped} already replayed; ` +
            `${result.noticesDeleted} notice(s) cleared`,
        );
      }
      if (result.failed.length > 0) process.exitCode = 1;
    });
  });

/** The deployed kafka-consumer (`--stack`), or offline its real handler with the offline run's environment. */
async function replayInvoker(target: Target): Promise<ReplayInvoker> {
  const { handlerInvoker, lambdaInvoker } = await import('../local/commands/kafka-invokers.ts');
  if (target.kind === 'aws') {
    const { LambdaClient } = await import('@aws-sdk/client-lambda');
    const region = globals().region;
    if (!target.kafkaConsumerFunction) throw new Error(`stack ${target.name} names no kafka-consumer`);
    return lambdaInvoker(new LambdaClient(region ? { region } : {}), target.kafkaConsumerFunction);
  }
  const state = readState(globals().home);
  if (!state) throw new Error('the offline pipeline is not up: run `npm run pulse -- local up --detach`');
  // The handler module reads its configuration when imported: the environment comes first.
  Object.assign(process.env, runtimeEnv(state));
  const { handler } = await import('../functions/kafka-consumer/handler.ts');
  return handlerInvoker(handler as unknown as Parameters<typeof handlerInvoker>[0]);
}

// -------------------------------------------------------------------------------------- backfill

program
  .command('backfill')
  .description(
    'enqueue objects under a prefix that the ledger has not seen (e.g. from before the notification)',
  )
  .requiredOption('--prefix <prefix>', 'key prefix, e.g. incoming/2024/')
  .option(
    '--since <time>',
    'only objects last modified at or after: a time (ISO-8601) or a duration (90m, 24h, 7d)',
  )
  .option('--until <time>', 'only objects last modified before: a time or a duration ago')
  .option(
    '--force',
    'also run again the versions the ledger has FAILED (for good) or SKIPPED, as pulse ledger retry does',
  )
  .option('--bucket <name>', 'a bucket the stack ingests from besides its own (existingBuckets)')
  .option('--by <who>', 'with --force: who asks, recorded on each item retried (default: user@host)')
  .option(
    '--json',
    'print JSON: { listed, outOfRange, ignored, known, enqueued, forced: [{ key, etag, outcome, reason }] }',
  )
  .addHelpText(
    'after',
    `
Examples:
  npm run pulse -- backfill --prefix incoming/2024/ --since 2024-05-01T00:00:00Z --until 2024-06-01T00:00:00Z
  npm run pulse -- backfill --prefix incoming/ --since 7d --force --stack PulseIngest

S3 lists by key, not by time: every object under the prefix is listed (one LIST request per 1,000 keys,
$0.005 per 1,000 requests), so give the narrowest prefix; --since/--until bound what is enqueued.
Versions the ledger already has are left alone; --force runs the FAILED and SKIPPED ones again through the
retry path (the reset is recorded on the item), never a SUCCESS (upload it again to ingest a new version).
Exit codes: 0 done; 2 --force could not run some version again (see forced); 1 pulse could not backfill.`,
  )
  .action(
    async (o: {
      prefix: string;
      since?: string;
      until?: string;
      force?: boolean;
      by?: string;
      bucket?: string;
      json?: boolean;
    }) => {
      const { parseSince } = await import('../local/commands/verify.ts');
      const { backfillWindow } = await import('../local/commands/backfill.ts');
      const window = {
        ...(o.since !== undefined ? { since: parseSince(o.since) } : {}),
        ...(o.until !== undefined ? { until: untilTime(parseSince, o.until) } : {}),
        ...(o.force ? { force: true } : {}),
        ...(o.by !== undefined ? { by: o.by } : {}),
        ...(o.bucket !== undefined ? { bucket: o.bucket } : {}),
      };
      await withTarget(async (target) => {
        const bar = new SingleBar({
          format: 'backfill [{bar}] {value}/{total} objects checked',
          hideCursor: true,
          noTTYOutput: true,
          notTTYSchedule: 2000,
        });
        let started = false;
        const result = await backfillWindow(target, o.prefix, window, {
          listed: (n) => process.stderr.write(`\rlisted ${n} objects`),
          checked: (done, total) => {
            if (!started) {
              process.stderr.write('\n');
              bar.start(total, 0);
              started = true;
            }
            bar.update(done);
          },
        });
        if (started) bar.stop();
        else process.stderr.write('\n');
        const failedToForce = result.forced.some((f) => f.outcome === 'refused' || f.outcome === 'changed');
        process.exitCode = failedToForce ? 2 : 0;
        if (o.json) {
          console.log(printableJson(result));
          return;
        }
        console.log(
          `listed ${result.listed}: ${result.enqueued} enqueued, ${result.known} already in the ledger, ` +
            `${result.outOfRange} modified outside the window, ${result.ignored} folder markers or rejects ignored`,
        );
        for (const f of result.forced) {
          console.log(
            printable(`${f.outcome.padEnd(8)} ${f.key}@${f.etag}${f.reason ? `  ${f.reason}` : ''}`),
          );
        }
      });
    },
  );

/** `--until`, read as `--since` is (a time, or a duration ago), its error naming --until. */
function untilTime(parseSince: (text: string) => Date, text: string): Date {
  try {
    return parseSince(text);
  } catch (err) {
    throw new InvalidArgumentError((err as Error).message.replace('--since', '--until'));
  }
}

// ----------------------------------------------------------------------------------------- synth

program
  .command('synth')
  .description('print the CloudFormation template (cdk synth; no AWS credentials needed)')
  .argument('[cdkArgs...]', 'more arguments for cdk synth, e.g. -c alarmEmail=ops@example.com')
  .action((cdkArgs: string[]) => {
    const out = spawnSync('npx', ['--no-install', 'cdk', 'synth', ...cdkArgs], {
      cwd: REPO_ROOT,
      stdio: 'inherit',
    });
    process.exitCode = out.status ?? 1;
  });

// -------------------------------------------------------------------------------------- printing

function consoleProgress(): Progress {
  let started = 0;
  return {
    step(message) {
      started = Date.now();
      process.stderr.write(`• ${message}… `);
    },
    done(detail) {
      process.stderr.write(
        `done (${((Date.now() - started) / 1000).toFixed(1)} s)${detail ? `: ${detail}` : ''}\n`,
      );
    },
    detail(line) {
      process.stderr.write(`\n    ${line}`);
    },
  };
}

function printStatus(s: PulseStatus): void {
  const l = s.ledger;
  console.log(
    `files    ${s.filesTotal}  (SUCCESS ${l.SUCCESS}, PROCESSING ${l.PROCESSING}, FAILED ${l.FAILED}, SKIPPED ${l.SKIPPED}, DISCOVERED ${l.DISCOVERED})`,
  );
  console.log(`scored   ${s.scored} signals in ${s.series} series, ${s.anomalies} anomalies`);
  console.log(
    `rejected s3 ${s.rejected.s3}, db ${s.rejected.db}, kafka ${s.rejected.kafka}, scorer ${s.rejected.scorer}`,
  );
  console.log(
    `queues   file-events ${s.queues.fileEvents.visible}+${s.queues.fileEvents.inFlight} in flight, ` +
      `signals ${s.queues.signals.visible}+${s.queues.signals.inFlight} in flight`,
  );
  console.log(`dlq      ${s.dlq}${s.dlq > 0 ? '  (see: pulse dlq list)' : ''}`);
  console.log(
    `kafka    ${s.kafkaFailures.awaitingReplay} failed batch(es) await replay${s.kafkaFailures.awaitingReplay > 0 ? '  (see: pulse kafka replay --dry-run)' : ''}, ${s.kafkaFailures.replayed} replayed`,
  );
  for (const line of costLines(s.cost)) console.log(line);
  if (s.endpoints.dashboard) console.log(`dashboard ${s.endpoints.dashboard}`);
  if (s.files.length > 0) {
    console.table(
      s.files.slice(0, 30).map((f) =>
        printableRow({
          key: f.key,
          status: f.status,
          records: f.records,
          rejected: f.rejected,
          error: f.error?.slice(0, 80) ?? '',
        }),
      ),
    );
    if (s.filesTotal > s.files.length) {
      console.log(
        `… the ${s.files.length} most recent of ${s.filesTotal} (pulse ledger --limit N, --status S)`,
      );
    }
  }
}

program.parseAsync(process.argv).catch((err: unknown) => {
  const e = err as Error;
  // Errors name keys and quote what AWS said: printable() too.
  console.error(printable(`pulse: ${e.name && e.name !== 'Error' ? `${e.name}: ` : ''}${e.message}`));
  process.exitCode = 1;
});
