/**
 * The real parts of the Celery tests: a private `redis-server` (Debian's
 * package) on a free port with a temporary directory, real Celery 5 workers
 * and clients (Debian's python3-celery) for the Python side. A missing part
 * is an error naming the install command, never a skip.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

import { execa } from 'execa';
import { Redis } from 'ioredis';

import { findPythonSync } from '../../src/process/python.js';
import { PEER_DIR } from './peers.js';

export const CELERY_INSTALL_COMMAND = 'apt-get install -y redis-server python3-celery python3-redis';
const CELERY_DIR = join(PEER_DIR, 'celery');

let python: string | null = null;
/** The interpreter with billiard and Celery. */
export function celeryPython(): string {
  python ??= findPythonSync({ modules: ['billiard', 'celery', 'redis'] });
  return python;
}

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.on('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const port = (s.address() as { port: number }).port;
      s.close(() => resolve(port));
    });
  });
}

export interface RedisServer {
  port: number;
  /** redis://127.0.0.1:<port>/<db> */
  url(db?: number): string;
  /** A client for inspecting keys (closed by stop()). */
  client: Redis;
  /** Stops the server (SIGKILL after 3 s) and removes its directory. */
  stop(): Promise<void>;
  /** Kills the server (the broker going away); `restart()` brings it back on the same port. */
  kill(): Promise<void>;
  restart(): Promise<void>;
}

/** Starts a private redis-server on a free port; `persistent` keeps its data across kill()/restart() (an append-only file synced on every write). */
export async function startRedis(options: { persistent?: boolean } = {}): Promise<RedisServer> {
  const probe = spawnSync('redis-server', ['--version'], { encoding: 'utf8' });
  if (probe.error) throw new Error(`redis-server is not installed (${probe.error.message}). On Debian, as root: ${CELERY_INSTALL_COMMAND}`);
  const dir = mkdtempSync(join(tmpdir(), 'billiard-ts-redis-'));
  const port = await freePort();
  let proc: ChildProcess;
  const launch = async (): Promise<void> => {
    proc = spawn('redis-server', ['--port', String(port), '--bind', '127.0.0.1', '--dir', dir, '--save', '', '--daemonize', 'no', ...(options.persistent ? ['--appendonly', 'yes', '--appendfsync', 'always'] : ['--appendonly', 'no'])], { stdio: 'ignore' });
    const deadline = Date.now() + 10000;
    for (;;) {
      const probeClient = new Redis({ port, host: '127.0.0.1', lazyConnect: true, retryStrategy: () => null, maxRetriesPerRequest: 0 });
      probeClient.on('error', () => {});
      try {
        await probeClient.connect();
        await probeClient.ping();
        probeClient.disconnect();
        return;
      } catch {
        probeClient.disconnect();
        if (Date.now() > deadline) throw new Error(`redis-server did not start on port ${port}`);
        await new Promise((r) => setTimeout(r, 50));
      }
    }
  };
  await launch();
  // A test that fails before stop() (a hook timing out, say) must not leave the server running.
  const onExit = (): void => {
    proc.kill('SIGKILL');
    rmSync(dir, { recursive: true, force: true });
  };
  process.once('exit', onExit);
  const client = new Redis({ port, host: '127.0.0.1', maxRetriesPerRequest: null });
  client.on('error', () => {});
  const kill = async (): Promise<void> => {
    if (proc.exitCode !== null || proc.signalCode !== null) return;
    const gone = new Promise((r) => proc.once('exit', r));
    proc.kill('SIGKILL');
    await gone;
  };
  return {
    port,
    url: (db = 0) => `redis://127.0.0.1:${port}/${db}`,
    client,
    kill,
    restart: launch,
    async stop() {
      process.removeListener('exit', onExit);
      client.disconnect();
      if (proc.exitCode === null && proc.signalCode === null) {
        const gone = new Promise((r) => proc.once('exit', r));
        proc.kill('SIGTERM');
        const t = setTimeout(() => proc.kill('SIGKILL'), 3000);
        await gone;
        clearTimeout(t);
      }
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

function celeryEnv(redis: RedisServer, extra?: Record<string, string>): NodeJS.ProcessEnv {
  return {
    ...process.env,
    CELERY_BROKER: redis.url(0),
    CELERY_BACKEND: redis.url(1),
    C_FORCE_ROOT: '1',
    PYTHONPATH: CELERY_DIR,
    PYTHONDONTWRITEBYTECODE: '1',
    ...extra,
  };
}

/** Runs compat/peers/celery/client.py with these operations; one parsed JSON line per operation. */
export async function pythonClient(redis: RedisServer, ops: unknown[], env?: Record<string, string>): Promise<Array<Record<string, any>>> {
  const r = await execa(celeryPython(), [join(CELERY_DIR, 'client.py'), JSON.stringify(ops)], { env: celeryEnv(redis, env), cwd: CELERY_DIR, reject: false, timeout: 120000 });
  if (r.exitCode !== 0) throw new Error(`the Python Celery client failed (${r.exitCode}): ${r.stderr}`);
  return r.stdout
    .split('\n')
    .filter((l) => l.trim() !== '')
    .map((l) => JSON.parse(l) as Record<string, any>);
}

/** Runs the real `celery -A tasks <args>` command (compat/peers/celery/tasks.py's app). */
export async function celeryCommand(redis: RedisServer, args: string[]): Promise<{ exitCode: number; stdout: string; stderr: string }> {
  const r = await execa(celeryPython(), ['-m', 'celery', '-A', 'tasks', ...args], { env: celeryEnv(redis), cwd: CELERY_DIR, reject: false, timeout: 60000 });
  return { exitCode: r.exitCode ?? -1, stdout: r.stdout, stderr: r.stderr };
}

export interface PythonWorker {
  proc: ChildProcess;
  log(): string;
  /** Warm shutdown (SIGTERM) and wait. */
  stop(): Promise<void>;
}

/** Starts a real `celery -A tasks worker` and waits until it is ready. */
export async function startPythonWorker(redis: RedisServer, options: { queues?: string[]; concurrency?: number; name?: string; env?: Record<string, string>; mingle?: boolean } = {}): Promise<PythonWorker> {
  const args = ['-m', 'celery', '-A', 'tasks', 'worker', '--pool', 'prefork', '-c', String(options.concurrency ?? 2), '-n', options.name ?? 'py@%h', '-Q', (options.queues ?? ['celery']).join(','), '--loglevel', 'INFO'];
  if (!options.mingle) args.push('--without-mingle');
  const proc = spawn(celeryPython(), args, { env: celeryEnv(redis, options.env), cwd: CELERY_DIR, stdio: ['ignore', 'pipe', 'pipe'] });
  let log = '';
  const onData = (c: Buffer): void => {
    log += c.toString();
  };
  proc.stdout?.on('data', onData);
  proc.stderr?.on('data', onData);
  const exited = new Promise<void>((r) => proc.once('exit', () => r()));
  const deadline = Date.now() + 60000;
  while (!/ ready\./.test(log)) {
    if (proc.exitCode !== null) throw new Error(`the Python Celery worker exited: ${log}`);
    if (Date.now() > deadline) {
      proc.kill('SIGKILL');
      throw new Error(`the Python Celery worker did not start: ${log}`);
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  return {
    proc,
    log: () => log,
    async stop() {
      if (proc.exitCode !== null || proc.signalCode !== null) return;
      proc.kill('SIGTERM');
      const t = setTimeout(() => proc.kill('SIGKILL'), 15000);
      await exited;
      clearTimeout(t);
    },
  };
}

export interface NodeWorkerProcess {
  proc: ChildProcess;
  log(): string;
  /** Resolves with the exit code (or 128 + signal). */
  exited: Promise<number>;
}

const CLI = new URL('../../src/celery/cli.ts', import.meta.url);
const NODE_TASKS = new URL('../peers/celery/tasks.ts', import.meta.url);

/** Starts `billiard-ts celery worker` (src/celery/cli.ts under tsx) as its own process group, and waits until it is ready. */
export async function startNodeWorkerProcess(redis: RedisServer, args: string[] = [], app: URL = NODE_TASKS): Promise<NodeWorkerProcess> {
  const tsx = fileURLToPath(new URL('../../node_modules/tsx/dist/cli.mjs', import.meta.url));
  const proc = spawn(process.execPath, [tsx, fileURLToPath(CLI), 'celery', 'worker', '--app', fileURLToPath(app), '--broker', redis.url(0), '--result-backend', redis.url(1), '-l', 'info', ...args], {
    stdio: ['ignore', 'pipe', 'pipe'],
    detached: true,
  });
  let log = '';
  proc.stdout?.on('data', (c: Buffer) => (log += c.toString()));
  proc.stderr?.on('data', (c: Buffer) => (log += c.toString()));
  const exited = new Promise<number>((r) => proc.once('exit', (code, signal) => r(code ?? 128 + (signal === 'SIGKILL' ? 9 : 15))));
  const deadline = Date.now() + 60000;
  while (!/ ready\. Tasks:/.test(log)) {
    if (proc.exitCode !== null) throw new Error(`the Node Celery worker exited: ${log}`);
    if (Date.now() > deadline) {
      process.kill(-proc.pid!, 'SIGKILL');
      throw new Error(`the Node Celery worker did not start: ${log}`);
    }
    await new Promise((r) => setTimeout(r, 50));
  }
  return { proc, log: () => log, exited };
}

/** `p`, or undefined after `seconds` (a cleanup step that hangs must not keep the next ones from running). */
export function within<T>(p: Promise<T>, seconds: number): Promise<T | undefined> {
  let timer: NodeJS.Timeout | undefined;
  return Promise.race([p, new Promise<undefined>((r) => (timer = setTimeout(() => r(undefined), seconds * 1000)))]).finally(() => clearTimeout(timer));
}
