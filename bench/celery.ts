/**
 * `npm run bench -- celery` (issue 13): tasks per second through Redis for a
 * trivial task (`tasks.add`), 10,000 tasks, concurrency 2, results stored in
 * the Redis backend. The billiard-ts worker (its command, soft and hard
 * limits on) against a Python Celery 5 worker (prefork pool, same
 * concurrency, same broker) and against `celery-node` (one event loop; it has
 * no concurrency setting), each on a fresh redis-server.
 *
 * Each round starts the worker, waits until it is ready, pushes the 10,000
 * messages in one pipeline (the clock starts before the first) and stops the
 * clock when the 10,000th result key exists. Worker events are off for the
 * billiard-ts and Python workers alike (celery-node sends none).
 *
 * Environment: CELERY_BENCH_TASKS (default 10000), BENCH_ROUNDS (rounds per
 * worker, alternating, default 4; this benchmark uses at most 3).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { fileURLToPath } from 'node:url';

import { buildTaskMessage } from '../src/celery/message.js';
import { celeryPython, startRedis, type RedisServer } from '../test/helpers/celery.js';
import { waitUntil } from '../test/helpers/until.js';
import { PEER_DIR } from '../test/helpers/peers.js';
import { measuresDist } from './dist.js';
import type { BenchRunOptions } from './run.js';
import { fmt, formatTable } from './table.js';

const TSX = fileURLToPath(new URL('../node_modules/tsx/dist/cli.mjs', import.meta.url));
/**
 * The worker command as installed (dist/celery/cli.js, which bench/run.ts
 * builds) on a plain JavaScript app; BENCH_SOURCE=src: src/celery/cli.ts
 * under tsx on the TypeScript test app.
 */
const WORKER_COMMAND = measuresDist
  ? [fileURLToPath(new URL('../dist/celery/cli.js', import.meta.url)), 'celery', 'worker', '--app', fileURLToPath(new URL('./celery-app/tasks.mjs', import.meta.url))]
  : [TSX, fileURLToPath(new URL('../src/celery/cli.ts', import.meta.url)), 'celery', 'worker', '--app', fileURLToPath(new URL('../test/peers/celery/tasks.ts', import.meta.url))];
const CELERY_NODE = fileURLToPath(new URL('./celery-node-worker.cjs', import.meta.url));

type Impl = 'billiard-ts' | 'python celery' | 'celery-node';

function startWorker(impl: Impl, redis: RedisServer): ChildProcess {
  const env = { ...process.env, CELERY_BROKER: redis.url(0), CELERY_BACKEND: redis.url(1), C_FORCE_ROOT: '1', PYTHONPATH: `${PEER_DIR}celery`, PYTHONDONTWRITEBYTECODE: '1' };
  const opts = { env, stdio: ['ignore', 'pipe', 'pipe'] as ['ignore', 'pipe', 'pipe'], detached: true };
  switch (impl) {
    case 'billiard-ts':
      return spawn(process.execPath, [...WORKER_COMMAND, '--broker', redis.url(0), '--result-backend', redis.url(1), '-c', '2', '--soft-time-limit', '10', '--time-limit', '20', '--without-heartbeat', '-l', 'info'], opts);
    case 'python celery':
      return spawn(celeryPython(), ['-m', 'celery', '-A', 'tasks', 'worker', '--pool', 'prefork', '-c', '2', '-Q', 'celery', '--without-mingle', '--without-gossip', '--without-heartbeat', '-l', 'INFO'], { ...opts, cwd: `${PEER_DIR}celery` });
    case 'celery-node':
      return spawn(process.execPath, [CELERY_NODE], opts);
  }
}

async function round(impl: Impl, n: number): Promise<number> {
  const redis = await startRedis();
  const proc = startWorker(impl, redis);
  let log = '';
  proc.stdout?.on('data', (c: Buffer) => (log += c.toString()));
  proc.stderr?.on('data', (c: Buffer) => (log += c.toString()));
  try {
    await waitUntil(() => / ready\./.test(log), 60, `${impl} to start: ${log}`);
    const messages = Array.from({ length: n }, (_, i) => buildTaskMessage({ name: 'tasks.add', args: [i, 1] }).text);
    const results = redis.client.duplicate();
    await results.select(1);
    const t0 = process.hrtime.bigint();
    const p = redis.client.pipeline();
    p.sadd('_kombu.binding.celery', 'celery\x06\x16\x06\x16celery');
    for (const m of messages) p.lpush('celery', m);
    await p.exec();
    await waitUntil(async () => (await results.dbsize()) >= n, 600, `${n} results from ${impl}`);
    const seconds = Number(process.hrtime.bigint() - t0) / 1e9;
    results.disconnect();
    return n / seconds;
  } finally {
    try {
      process.kill(-proc.pid!, 'SIGKILL');
    } catch {
      // gone
    }
    await redis.stop();
  }
}

export async function run(options: BenchRunOptions): Promise<string> {
  const n = Number(process.env.CELERY_BENCH_TASKS ?? 10000);
  const rounds = Math.min(3, options.rounds);
  const impls: Impl[] = ['billiard-ts', 'python celery', 'celery-node'];
  const rates = new Map<Impl, number[]>(impls.map((i) => [i, []]));
  for (let r = 0; r < rounds; r++) {
    for (const impl of impls) {
      options.progress(`${impl}, round ${r + 1}/${rounds}`);
      rates.get(impl)!.push(await round(impl, n));
    }
  }
  options.progress('');
  const median = (xs: number[]): number => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
  const py = median(rates.get('python celery')!);
  const rows = impls.map((impl) => {
    const m = median(rates.get(impl)!);
    return [impl, fmt(m), rates.get(impl)!.map((x) => fmt(x)).join(' '), `${fmt(m / py)}x`];
  });
  return [
    `Celery worker throughput: ${n} trivial tasks (tasks.add) through Redis, results stored, concurrency 2 (celery-node: one event loop); median of ${rounds} rounds`,
    formatTable([{ header: 'worker' }, { header: 'tasks/s', align: 'right' }, { header: 'rounds', align: 'right' }, { header: 'vs python celery', align: 'right' }], rows),
  ].join('\n');
}
