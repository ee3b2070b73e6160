#!/usr/bin/env node
/**
 * `npx billiard-ts celery worker --app ./tasks.js --broker redis://... ...`:
 * the Node Celery worker as a command, with Celery's option names. The
 * first SIGTERM or SIGINT is a warm shutdown (running tasks finish, the
 * prefetched ones go back to the queue); a second one, or SIGQUIT, is cold.
 *
 * A TypeScript app (`--app ./tasks.ts`) needs a loader: when the process has
 * none and `tsx` can be found from the current directory, the command runs
 * itself again under `node --import tsx`.
 */
import { spawn } from 'node:child_process';
import { createRequire } from 'node:module';
import { resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import { parseArgs } from 'node:util';

import { isMainProcess } from '../process/current.js';
import { quickenTierUp } from '../process/tierup.js';
import type { Serializer } from './message.js';
import { Worker, type LogLevel } from './worker.js';

const USAGE = `usage: billiard-ts celery worker --app MODULE [options]

  --app, -A MODULE              the module whose exported functions are the tasks
  --app-name NAME               task names are NAME.<export> (default: the module's file name)
  --broker, -b URL              redis://host:port/db (default $CELERY_BROKER_URL)
  --result-backend URL          redis://host:port/db (default $CELERY_RESULT_BACKEND, else the broker)
  --concurrency, -c N           pool processes (default: the number of CPUs)
  --soft-time-limit SECONDS     default soft time limit
  --time-limit SECONDS          default hard time limit
  --max-tasks-per-child N       replace a pool process after N tasks
  --max-memory-per-child KIB    replace a pool process past this resident memory
  --queues, -Q A,B              queues to consume (default celery)
  --prefetch-multiplier N       unacknowledged messages per process (default 4; 0: no limit)
  --hostname, -n NAME           node name (default celery@%h)
  --loglevel, -l LEVEL          debug, info, warning, error, critical (default warning)
  --accept A,B                  body serializers accepted: json, pickle (default json)
  --result-serializer NAME      json or pickle (default json)
  --result-expires SECONDS      result lifetime (default 86400)
  --visibility-timeout SECONDS  kombu's visibility timeout (default 3600)
  --acks-late                   acknowledge after the task ran, unless the task says otherwise
  --track-started               store STARTED when a task begins
  --without-heartbeat           send no worker events
  --task-events, -E             send task events (task.multi batches)
  --dead-letter-queue LIST      push unusable messages' bytes to this Redis list
  --max-message-bytes N         drop messages over N bytes unread (default 64 MiB; 0: no limit)
`;

const LOADERS = /(^|[=\s])(tsx|ts-node)/;

function needsLoader(app: string): boolean {
  return /\.[cm]?tsx?$/.test(app) && !process.execArgv.some((a) => LOADERS.test(a)) && !process.env.BILLIARD_TS_CELERY_REEXEC;
}

function num(v: string | undefined, name: string): number | null {
  if (v === undefined) return null;
  const n = Number(v);
  if (!Number.isFinite(n) || n < 0) throw new TypeError(`--${name} takes a non-negative number, not ${JSON.stringify(v)}`);
  return n;
}

function list(v: string | undefined): string[] | undefined {
  return v === undefined ? undefined : v.split(',').map((s) => s.trim()).filter(Boolean);
}

function serializers(v: string | undefined): Serializer[] | undefined {
  const names = list(v);
  if (names === undefined) return undefined;
  for (const n of names) if (n !== 'json' && n !== 'pickle') throw new TypeError(`unknown serializer ${JSON.stringify(n)} (json or pickle)`);
  return names as Serializer[];
}

/** Runs `argv` (without node and the script). Resolves with the exit code. */
export async function main(argv: readonly string[]): Promise<number> {
  if (argv[0] !== 'celery' || argv[1] !== 'worker') {
    process.stderr.write(USAGE);
    return argv.includes('--help') || argv.includes('-h') ? 0 : 2;
  }
  // The worker's main process runs the consumer loop for its whole life, as a pool worker its task loop.
  quickenTierUp();
  const { values } = parseArgs({
    args: argv.slice(2),
    options: {
      app: { type: 'string', short: 'A' },
      'app-name': { type: 'string' },
      broker: { type: 'string', short: 'b' },
      'result-backend': { type: 'string' },
      concurrency: { type: 'string', short: 'c' },
      'soft-time-limit': { type: 'string' },
      'time-limit': { type: 'string' },
      'max-tasks-per-child': { type: 'string' },
      'max-memory-per-child': { type: 'string' },
      queues: { type: 'string', short: 'Q' },
      'prefetch-multiplier': { type: 'string' },
      hostname: { type: 'string', short: 'n' },
      loglevel: { type: 'string', short: 'l' },
      accept: { type: 'string' },
      'result-serializer': { type: 'string' },
      'result-expires': { type: 'string' },
      'visibility-timeout': { type: 'string' },
      'acks-late': { type: 'boolean' },
      'track-started': { type: 'boolean' },
      'without-heartbeat': { type: 'boolean' },
      'task-events': { type: 'boolean', short: 'E' },
      'dead-letter-queue': { type: 'string' },
      'max-message-bytes': { type: 'string' },
      help: { type: 'boolean', short: 'h' },
    },
    strict: true,
  });
  if (values.help) {
    process.stdout.write(USAGE);
    return 0;
  }
  const app = values.app;
  const broker = values.broker ?? process.env.CELERY_BROKER_URL;
  if (!app || !broker) {
    process.stderr.write(`billiard-ts celery worker: --app and --broker are required\n\n${USAGE}`);
    return 2;
  }
  if (needsLoader(app)) return reexecWithTsx(argv);
  const level = (values.loglevel ?? 'warning').toLowerCase();
  if (!['debug', 'info', 'warning', 'error', 'critical'].includes(level)) throw new TypeError(`unknown log level ${JSON.stringify(values.loglevel)}`);
  const resultSerializer = serializers(values['result-serializer'])?.[0];
  const visibility = num(values['visibility-timeout'], 'visibility-timeout');
  const worker = new Worker({
    app: pathToFileURL(resolve(app)),
    appName: values['app-name'],
    broker,
    resultBackend: values['result-backend'] ?? process.env.CELERY_RESULT_BACKEND ?? broker,
    concurrency: num(values.concurrency, 'concurrency') ?? undefined,
    softTimeLimit: num(values['soft-time-limit'], 'soft-time-limit'),
    timeLimit: num(values['time-limit'], 'time-limit'),
    maxTasksPerChild: num(values['max-tasks-per-child'], 'max-tasks-per-child'),
    maxMemoryPerChild: num(values['max-memory-per-child'], 'max-memory-per-child'),
    queues: list(values.queues),
    prefetchMultiplier: num(values['prefetch-multiplier'], 'prefetch-multiplier') ?? undefined,
    hostname: values.hostname,
    loglevel: level as LogLevel,
    accept: serializers(values.accept),
    resultSerializer,
    resultExpires: num(values['result-expires'], 'result-expires') ?? undefined,
    transport: visibility === null ? undefined : { visibilityTimeout: visibility },
    acksLate: values['acks-late'] ?? false,
    trackStarted: values['track-started'] ?? false,
    heartbeat: !values['without-heartbeat'],
    taskEvents: values['task-events'] ?? false,
    deadLetterQueue: values['dead-letter-queue'] ?? null,
    maxMessageBytes: num(values['max-message-bytes'], 'max-message-bytes') ?? undefined,
  });
  let signals = 0;
  let done: Promise<void> | null = null;
  const onSignal = (sig: NodeJS.Signals): void => {
    signals++;
    if (sig === 'SIGQUIT' || signals > 1) {
      process.stderr.write(`worker: cold shutdown (${sig})\n`);
      done = worker.terminate();
    } else {
      process.stderr.write(`worker: warm shutdown (${sig})\n`);
      done = worker.shutdown();
    }
  };
  process.on('SIGTERM', onSignal);
  process.on('SIGINT', onSignal);
  process.on('SIGQUIT', onSignal);
  await worker.start();
  process.stderr.write(`${worker.hostname} ready. Tasks: ${[...worker.tasks.keys()].join(', ')}\n`);
  await new Promise<void>((r) => worker.once('close', r));
  await done;
  return 0;
}

/** Runs this command again under `node --import tsx` (a TypeScript app), forwarding signals. */
function reexecWithTsx(argv: readonly string[]): Promise<number> {
  let tsx: string;
  try {
    tsx = createRequire(pathToFileURL(resolve('package.json'))).resolve('tsx');
  } catch {
    process.stderr.write('billiard-ts celery worker: a TypeScript app needs a loader; install tsx (npm i -D tsx) or run: node --import tsx node_modules/.bin/billiard-ts ...\n');
    return Promise.resolve(2);
  }
  void tsx;
  const child = spawn(process.execPath, ['--import', 'tsx', ...process.execArgv, process.argv[1] as string, ...argv], {
    stdio: 'inherit',
    env: { ...process.env, BILLIARD_TS_CELERY_REEXEC: '1' },
  });
  for (const sig of ['SIGTERM', 'SIGINT', 'SIGQUIT'] as const) process.on(sig, () => child.kill(sig));
  return new Promise((r) => child.on('exit', (code, signal) => r(code ?? (signal ? 128 + (signal === 'SIGKILL' ? 9 : 15) : 1))));
}

if (isMainProcess(import.meta)) {
  main(process.argv.slice(2)).then(
    (code) => process.exit(code),
    (e: unknown) => {
      process.stderr.write(`billiard-ts celery worker: ${(e as Error).message ?? String(e)}\n`);
      process.exit(1);
    },
  );
}
