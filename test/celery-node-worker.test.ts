/**
 * Python sends, Node works (issue 13, spec/celery.md §8 tests 7–16): a real
 * Celery 5 client (compat/peers/celery/client.py) against the billiard-ts
 * Worker, on a private redis-server.
 */
import { existsSync, mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { Worker } from '../src/celery/index.js';
import { celeryCommand, pythonClient, startPythonWorker, startRedis, type RedisServer } from './helpers/celery.js';
import { waitUntil } from './helpers/until.js';

const TASKS = new URL('./peers/celery/tasks.ts', import.meta.url);

describe('a Python Celery client and the Node worker', () => {
  let redis: RedisServer;
  let worker: Worker;
  const logs: string[] = [];

  beforeAll(async () => {
    redis = await startRedis();
    worker = new Worker({
      app: TASKS,
      broker: redis.url(0),
      resultBackend: redis.url(1),
      concurrency: 2,
      accept: ['json', 'pickle'],
      queues: ['celery', 'node'],
      log: (level, message) => logs.push(`${level}: ${message}`),
    });
    await worker.start();
  });

  afterAll(async () => {
    await worker?.shutdown();
    await redis?.stop();
  });

  it('add.delay(2, 3).get() is 5 with JSON and with pickle, and the record has Celery key order', async () => {
    const [json, pickle] = [
      await pythonClient(redis, [{ task: 'tasks.add', args: [2, 3] }]),
      await pythonClient(redis, [{ task: 'tasks.add', args: [20, 22] }], { CELERY_SERIALIZER: 'pickle' }),
    ];
    expect(json[0]).toMatchObject({ ok: 5, state: 'SUCCESS' });
    expect(pickle[0]).toMatchObject({ ok: 42, state: 'SUCCESS' });
    const stored = await redis.client.select(1).then(() => redis.client.get(`celery-task-meta-${json[0]!.id}`));
    await redis.client.select(0);
    expect(Object.keys(JSON.parse(stored!))).toEqual(['status', 'result', 'traceback', 'children', 'date_done', 'task_id']);
    expect(stored).toMatch(/^\{"status": "SUCCESS", "result": 5, "traceback": null, "children": \[\], "date_done": "\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}", "task_id": "/);
  });

  it('a Python exception type comes back as the real class; a Node Error as a same-named class; both with the traceback', async () => {
    const [py, js] = await pythonClient(redis, [
      { task: 'tasks.boomPy', args: ['bad value 7'] },
      { task: 'tasks.boomJs', args: ['js bad'] },
    ]);
    expect(py).toMatchObject({ state: 'FAILURE', error: { module: 'builtins', name: 'ValueError', args: ['bad value 7'], builtin: true } });
    expect(py!.error.traceback).toContain('boomPy');
    expect(js).toMatchObject({ state: 'FAILURE', error: { name: 'RangeError', args: ['js bad'], builtin: false } });
    expect(js!.error.traceback).toContain('RangeError: js bad');
  });

  it('a soft limit the task catches is a SUCCESS; uncaught it is SoftTimeLimitExceeded and the pool process lives on', async () => {
    const [caught, uncaught] = await pythonClient(redis, [
      { task: 'tasks.softCaught', args: [5], options: { soft_time_limit: 1 } },
      { task: 'tasks.softUncaught', args: [5], options: { soft_time_limit: 1 } },
    ]);
    expect(caught).toMatchObject({ ok: 'caught soft: SoftTimeLimitExceeded()', state: 'SUCCESS' });
    expect(uncaught).toMatchObject({ state: 'FAILURE', error: { module: 'billiard.exceptions', name: 'SoftTimeLimitExceeded', args: [] } });
  });

  it('a hard limit kills the pool process: TimeLimitExceeded(1), a new process, and the next task runs', async () => {
    const out = await pythonClient(redis, [
      { task: 'tasks.pid' },
      { task: 'tasks.spin', args: [30], options: { time_limit: 1 }, timeout: 10 },
      { task: 'tasks.add', args: [1, 1] },
    ]);
    expect(out[1]).toMatchObject({ state: 'FAILURE', error: { module: 'billiard.exceptions', name: 'TimeLimitExceeded', args: [1] } });
    expect(out[1]!.error.traceback).toBeNull();
    expect(out[2]).toMatchObject({ ok: 2 });
  });

  it('a retry with countdown runs again with retries + 1 and ends in SUCCESS', async () => {
    const [r] = await pythonClient(redis, [{ task: 'tasks.retrier', timeout: 20 }]);
    expect(r).toMatchObject({ ok: ['done', 2], state: 'SUCCESS' });
  });

  it('retry() with a misspelt option is a FAILURE TypeError naming it, not a retry', async () => {
    const [r] = await pythonClient(redis, [{ task: 'tasks.retryTypo', timeout: 10 }]);
    expect(r).toMatchObject({ state: 'FAILURE', error: { name: 'TypeError' } });
    expect(JSON.stringify(r)).toMatch(/unknown option 'countdwn'/);
  });

  it('an unknown task name is FAILURE NotRegistered, acknowledged, and the worker goes on', async () => {
    const [unknown, after] = await pythonClient(redis, [{ task: 'tasks.nonexistent' }, { task: 'tasks.add', args: [3, 4] }]);
    expect(unknown).toMatchObject({ state: 'FAILURE', error: { module: 'celery.exceptions', name: 'NotRegistered', args: ['tasks.nonexistent'] } });
    expect(after).toMatchObject({ ok: 7 });
    // Acknowledged: the ack and the result go out on separate connections, so the ack may land just after the result.
    await waitUntil(async () => (await redis.client.hlen('unacked')) === 0, 10, 'every message to be acknowledged');
  });

  it('ignore_result stores nothing', async () => {
    const [r] = await pythonClient(redis, [{ task: 'tasks.noresult', timeout: 2 }]);
    expect(r!.state).toBe('PENDING');
    expect(r!.error.name).toBe('TimeoutError');
  });

  it('a pool process killed mid-task gives WorkerLostError', async () => {
    const [r] = await pythonClient(redis, [{ task: 'tasks.suicide' }]);
    expect(r).toMatchObject({ state: 'FAILURE', error: { module: 'billiard.exceptions', name: 'WorkerLostError' } });
    expect(r!.error.args[0]).toMatch(/^Worker exited prematurely: signal 9 \(SIGKILL\) Job: \d+\.$/);
  });

  it('reject_on_worker_lost puts the message back: it runs again and succeeds', async () => {
    const [r] = await pythonClient(redis, [{ task: 'tasks.lateRowl', args: ['x'], timeout: 20 }]);
    expect(r).toMatchObject({ ok: 'done x', state: 'SUCCESS' });
  });

  it('revoke(terminate=True) ends a running task as REVOKED terminated, with the reply', async () => {
    const [r] = await pythonClient(redis, [{ revoke_running: { task: 'tasks.sleeper', args: [30] }, timeout: 15 }]);
    expect(r).toMatchObject({ state: 'REVOKED', error: { module: 'celery.exceptions', name: 'TaskRevokedError', args: ['terminated'] } });
    expect(r!.replies).toEqual([{ [worker.hostname]: { ok: `terminate: ${r!.id}` } }]);
  });

  it('celery inspect ping and active list the Node worker', async () => {
    const [ping, active] = await pythonClient(redis, [{ control: 'ping', timeout: 1 }, { control: 'active', timeout: 1 }]);
    expect(ping!.ok).toContainEqual({ [worker.hostname]: { ok: 'pong' } });
    expect(active!.ok).toEqual({ [worker.hostname]: [] });
  });

  it("celery's own inspect and status commands list the Node worker and print every reply it gives", async () => {
    const status = await celeryCommand(redis, ['status', '--timeout', '2']);
    expect(status.exitCode, status.stderr).toBe(0);
    expect(status.stdout).toContain(`${worker.hostname}: OK`);
    const ping = await celeryCommand(redis, ['inspect', 'ping', '-d', worker.hostname, '--timeout', '2']);
    expect(ping.stdout).toMatch(new RegExp(`->\\s+${worker.hostname}: OK\\s+pong`));
    for (const cmd of ['active', 'reserved', 'scheduled', 'revoked', 'stats', 'registered', 'active_queues', 'clock']) {
      const r = await celeryCommand(redis, ['inspect', cmd, '-d', worker.hostname, '--timeout', '2']);
      expect([cmd, r.exitCode, r.stderr]).toEqual([cmd, 0, '']);
      expect(r.stdout).toMatch(new RegExp(`->\\s+${worker.hostname}: OK`));
    }
    const registered = await celeryCommand(redis, ['inspect', 'registered', '-d', worker.hostname, '--timeout', '2']);
    expect(registered.stdout).toContain('tasks.add');
    const query = await celeryCommand(redis, ['inspect', 'query_task', 'nope', '-d', worker.hostname, '--timeout', '2']);
    expect(query.exitCode, query.stderr).toBe(0);
  });

  it('an unknown command is answered with a KeyError; pattern selection by glob picks the node or not', async () => {
    const [unknown, glob, miss] = await pythonClient(redis, [
      { broadcast: 'no_such_cmd', timeout: 1 },
      { broadcast: 'ping', pattern: 'celery@*', matcher: 'glob', timeout: 1 },
      { broadcast: 'ping', pattern: 'zz*', matcher: 'glob', timeout: 1 },
    ]);
    expect(unknown!.ok).toEqual([{ [worker.hostname]: { error: "KeyError('no_such_cmd')" } }]);
    expect(glob!.ok).toEqual([{ [worker.hostname]: { ok: 'pong' } }]);
    expect(miss!.ok).toEqual([]);
  });

  it('a pickle that names a global outside the registry is rejected and nothing runs', async () => {
    const marker = join(mkdtempSync(join(tmpdir(), 'billiard-ts-evil-')), 'pwned');
    const [r] = await pythonClient(redis, [{ evil: marker, timeout: 10 }]);
    expect(r).toMatchObject({ state: 'FAILURE', error: { name: 'DecodeError' } });
    expect(r!.error.args[0]).toMatch(/posix\.system|os\.system/);
    expect(existsSync(marker)).toBe(false);
  });

  it('link and link_error callbacks run after the task: the result (or the failed task id) prepended to their args', async () => {
    const [ok, failed] = await pythonClient(redis, [
      { link: { task: 'tasks.add', args: [1, 1], link: ['tasks.mul', [10], 'cb-ok-0001'], link_error: ['tasks.echo', [], 'eb-ok-0001'] }, callback_timeout: 1.5 },
      { link: { task: 'tasks.boomPy', args: ['linked'], link: ['tasks.mul', [10], 'cb-no-0001'], link_error: ['tasks.echo', [], 'eb-no-0001'] }, callback_timeout: 1.5 },
    ]);
    expect(ok).toMatchObject({ ok: 2, callbacks: [{ ok: 20 }, { state: 'PENDING' }] });
    expect(failed).toMatchObject({ state: 'FAILURE', callbacks: [{ state: 'PENDING' }, { ok: failed!.id }] });
  });

  it('a chord whose header runs on Node and whose body runs on a Python worker: [2, 4] * 3, and the chord keys are gone', async () => {
    const py = await startPythonWorker(redis, { queues: ['python'], concurrency: 1, name: 'chord@%h' });
    try {
      const [r] = await pythonClient(redis, [{ chord: { header: [['tasks.add', [1, 1], { queue: 'node' }], ['tasks.add', [2, 2], { queue: 'node' }]], body: ['tasks.mul', [3], { queue: 'python' }] }, timeout: 20 }]);
      expect(r).toMatchObject({ ok: [2, 4, 2, 4, 2, 4], state: 'SUCCESS' });
      await redis.client.select(1);
      const left = await redis.client.keys('celery-taskset-meta-*');
      await redis.client.select(0);
      expect(left).toEqual([]);
    } finally {
      await py.stop();
    }
  });

  it('a chain add.s(1, 2) | mul.s(10) runs its first link on Node and its second on a Python worker', async () => {
    const py = await startPythonWorker(redis, { queues: ['python'], concurrency: 1 });
    try {
      const [r] = await pythonClient(redis, [{ chain: [['tasks.add', [1, 2], { queue: 'node' }], ['tasks.mul', [10], { queue: 'python' }]], timeout: 20 }]);
      expect(r).toMatchObject({ ok: 30, state: 'SUCCESS' });
      expect(py.log()).toMatch(/Task tasks\.mul\[[^\]]+\] succeeded in [\d.]+s: 30/);
    } finally {
      await py.stop();
    }
  });
});
