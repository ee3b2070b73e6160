/**
 * The Node Celery worker when things go wrong (issue 13; spec/celery.md
 * §2.6–2.10, §5.8, §8 tests 17, 22–24): the whole worker SIGKILLed with an
 * acks_late task, warm and cold shutdown of the command, the broker going
 * away and coming back, and hostile list elements. Real redis-server, the
 * real `billiard-ts celery worker` command, real Celery 5 clients.
 */
import { mkdtempSync, readFileSync, existsSync } from 'node:fs';
import { execFileSync } from 'node:child_process';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { afterEach, describe, expect, it } from 'vitest';

import { Celery, Worker } from '../src/celery/index.js';
import { pyJsonLoads } from '../src/celery/pyjson.js';
import { celeryPython, pythonClient, startNodeWorkerProcess, startRedis, within, type NodeWorkerProcess, type RedisServer } from './helpers/celery.js';
import { waitUntil } from './helpers/until.js';
import { collidingKeys } from './helpers/v8-collisions.js';

const TASKS = new URL('./peers/celery/tasks.ts', import.meta.url);

let redis: RedisServer | null = null;
let procs: NodeWorkerProcess[] = [];
let closers: Array<() => Promise<void>> = [];

afterEach(async () => {
  for (const c of closers.reverse()) await within(c(), 20).catch(() => {});
  for (const p of procs) {
    try {
      process.kill(-p.proc.pid!, 'SIGKILL');
    } catch {
      // already gone
    }
  }
  await redis?.stop();
  redis = null;
  procs = [];
  closers = [];
});

function client(r: RedisServer): Celery {
  const c = new Celery({ broker: r.url(0), backend: r.url(1) });
  closers.push(() => c.close());
  return c;
}

/** A fresh redis-server, a started Node worker of one process that logs nothing, and a client. */
async function quietWorker(): Promise<{ w: Worker; c: Celery }> {
  redis = await startRedis();
  const w = new Worker({ app: TASKS, broker: redis.url(0), resultBackend: redis.url(1), concurrency: 1, log: () => {} });
  await w.start();
  closers.push(() => w.shutdown());
  return { w, c: client(redis) };
}

function tmpFile(name: string): string {
  return join(mkdtempSync(join(tmpdir(), 'billiard-ts-celery-')), name);
}

describe('the Node worker under faults', () => {
  it('an acks_late task whose whole worker is SIGKILLed stays in unacked, is restored by the next worker past the visibility timeout, and completes once', async () => {
    redis = await startRedis();
    const a = await startNodeWorkerProcess(redis, ['-c', '1', '--visibility-timeout', '2']);
    procs.push(a);
    const c = client(redis);
    const record = tmpFile('runs');
    const r = await c.sendTask('tasks.lateRecord', [record, 3]);
    await waitUntil(() => /Task tasks\.lateRecord\[[^\]]+\] received/.test(a.log()), 20, 'the first worker to receive the task');
    process.kill(-a.proc.pid!, 'SIGKILL');
    await a.exited;
    expect(await redis.client.hlen('unacked')).toBe(1);
    expect(existsSync(record)).toBe(false);
    await new Promise((res) => setTimeout(res, 2500));
    const b = await startNodeWorkerProcess(redis, ['-c', '1', '--visibility-timeout', '2']);
    procs.push(b);
    expect(await r.get(30)).toBe('recorded');
    expect(readFileSync(record, 'utf8').trim().split('\n')).toHaveLength(1);
    expect(b.log()).toMatch(/Restored 1 unacknowledged message/);
    await waitUntil(async () => (await redis!.client.hlen('unacked')) === 0, 10, 'the ack');
  });

  it('SIGTERM is a warm shutdown: the running task finishes, the prefetched ones go back to the front of the queue marked redelivered', async () => {
    redis = await startRedis();
    const w = await startNodeWorkerProcess(redis, ['-c', '1', '--prefetch-multiplier', '4']);
    procs.push(w);
    const c = client(redis);
    const running = await c.sendTask('tasks.sleeper', [2]);
    // Running, as `inspect active` says (a job handed to a pool process that has not started it goes back too).
    await waitUntil(async () => JSON.stringify(await c.broadcast('active', { timeout: 0.3 })).includes(running.id), 20, 'the sleeper to start');
    const queued = [];
    for (let i = 0; i < 3; i++) queued.push(await c.sendTask('tasks.add', [i, 100]));
    await waitUntil(() => (w.log().match(/Task tasks\.add\[[^\]]+\] received/g) ?? []).length === 3, 20, 'the adds to be prefetched');
    process.kill(w.proc.pid!, 'SIGTERM');
    expect(await w.exited).toBe(0);
    expect(await running.get(5)).toBe(2);
    const restored = (await redis.client.lrange('celery', 0, -1)).map((t) => pyJsonLoads(t) as { headers: { id: string; redelivered?: boolean }; properties: { delivery_info: { redelivered?: boolean } } });
    // RPUSHed in delivery order: the next BRPOP (from the right) takes the last one first.
    expect(restored.map((m) => m.headers.id)).toEqual(queued.map((q) => q.id));
    for (const m of restored) {
      expect(m.headers.redelivered).toBe(true);
      expect(m.properties.delivery_info.redelivered).toBe(true);
    }
    expect(await redis.client.hlen('unacked')).toBe(0);
    expect(w.log()).toMatch(/Restoring 3 unacknowledged message/);
    // Put back, not run (they waited in the pool behind the sleeper).
    for (const q of queued) expect(await q.state()).toBe('PENDING');
  });

  it('a second SIGTERM is a cold shutdown: acks_late running and reserved messages are restored, an early-ack running one is lost', async () => {
    redis = await startRedis();
    const w = await startNodeWorkerProcess(redis, ['-c', '2', '--prefetch-multiplier', '2']);
    procs.push(w);
    const c = client(redis);
    const record = tmpFile('runs');
    const late = await c.sendTask('tasks.lateRecord', [record, 30]);
    const early = await c.sendTask('tasks.sleeper', [30]);
    await waitUntil(async () => {
      const active = JSON.stringify(await c.broadcast('active', { timeout: 0.3 }));
      return active.includes(late.id) && active.includes(early.id);
    }, 20, 'both tasks to start');
    const reserved = await c.sendTask('tasks.add', [1, 2]);
    await waitUntil(() => (w.log().match(/received/g) ?? []).length === 3, 20, 'the third task to arrive');
    process.kill(w.proc.pid!, 'SIGTERM');
    await waitUntil(() => /warm shutdown/.test(w.log()), 10, 'the warm shutdown');
    process.kill(w.proc.pid!, 'SIGTERM');
    await w.exited;
    const ids = (await redis.client.lrange('celery', 0, -1)).map((t) => (pyJsonLoads(t) as { headers: { id: string } }).headers.id);
    expect(ids.sort()).toEqual([late.id, reserved.id].sort());
    expect(await early.state()).toBe('PENDING');
    expect(await redis.client.hlen('unacked')).toBe(0);
  });

  it('the broker going away and coming back: the running acks_late task is stored and acknowledged, and consuming goes on', async () => {
    redis = await startRedis({ persistent: true });
    const logs: string[] = [];
    const w = new Worker({ app: TASKS, broker: redis.url(0), resultBackend: redis.url(1), concurrency: 1, log: (_l, m) => logs.push(m) });
    await w.start();
    closers.push(() => w.shutdown());
    const c = client(redis);
    const record = tmpFile('runs');
    const r = await c.sendTask('tasks.lateRecord', [record, 1]);
    await waitUntil(() => logs.some((l) => /lateRecord.*received/.test(l)), 20, 'the task to arrive');
    // The task ends, and its result and ack are due, while the broker is away.
    await redis.kill();
    await new Promise((res) => setTimeout(res, 3000));
    await redis.restart();
    expect(await r.get(20)).toBe('recorded');
    await waitUntil(async () => (await redis!.client.hlen('unacked')) === 0, 20, 'the ack after the broker came back');
    const after = await c.sendTask('tasks.add', [40, 2]);
    expect(await after.get(20)).toBe(42);
    expect(readFileSync(record, 'utf8').trim().split('\n')).toHaveLength(1);
  });

  it('a broker that cannot be reached is logged (without the password) and retried; the worker stops cleanly', async () => {
    redis = await startRedis();
    const port = redis.port;
    await redis.kill();
    const logs: string[] = [];
    const w = new Worker({ app: TASKS, broker: `redis://:s3cret@127.0.0.1:${port}/0`, concurrency: 1, log: (level, m) => logs.push(`${level} ${m}`) });
    const starting = w.start().then(
      () => 'started',
      (e: Error) => `failed: ${e.message}`,
    );
    await waitUntil(() => logs.some((l) => l.includes('Cannot connect to')), 20, 'the connection error');
    expect(logs.find((l) => l.includes('Cannot connect to'))).toMatch(new RegExp(`^error consumer: Cannot connect to redis://:\\*\\*@127\\.0\\.0\\.1:${port}/0: .*Trying again`));
    expect(logs.join('\n')).not.toContain('s3cret');
    await redis.restart();
    expect(await starting).toBe('started');
    closers.push(() => w.shutdown());
  });

  it('hostile list elements are logged and removed, the worker goes on (where Celery 5.2 crashes on three of them)', async () => {
    redis = await startRedis();
    const logs: string[] = [];
    const rejected: string[] = [];
    const w = new Worker({ app: TASKS, broker: redis.url(0), resultBackend: redis.url(1), concurrency: 1, deadLetterQueue: 'dead', log: (level, m) => logs.push(`${level} ${m}`) });
    w.on('rejected', (e: { reason: string }) => rejected.push(e.reason));
    await w.start();
    closers.push(() => w.shutdown());
    const b64 = (s: string): string => Buffer.from(s).toString('base64');
    const props = (tag: string): string => `{"delivery_info": {"exchange": "", "routing_key": "celery"}, "priority": 0, "body_encoding": "base64", "delivery_tag": "${tag}"}`;
    const env = (body: string, headers: string, tag: string, type = 'application/json'): string =>
      `{"body": "${b64(body)}", "content-encoding": "utf-8", "content-type": "${type}", "headers": ${headers}, "properties": ${props(tag)}}`;
    const poison = [
      'garbage not json at all',
      `{"body": "${b64('[[1, 2], {}, {}]')}", "content-encoding": "utf-8", "content-type": "application/json", "headers": {"task": "tasks.add", "id": "p2"}, "properties": {"body_encoding": "base64", "delivery_tag": "t2"}}`,
      env('[[5, 6], {}]', '{"task": "tasks.add", "id": "p3"}', 't3'),
      env('not json', '{"task": "tasks.add", "id": "p4"}', 't4'),
      env('--- [1, 2]', '{"task": "tasks.add", "id": "p5"}', 't5', 'application/x-yaml'),
      env('[[1, 2], {}, {}]', '{}', 't6'),
      '\xff\xfe not utf-8',
      // JSON Redis's cjson reads (so the batch pop records it) but not UTF-8: its tag's bytes must still be acknowledged.
      env('[[1, 2], {}, {}]', '{"task": "tasks.add", "id": "p8"}', 't\xff8'),
    ];
    for (const p of poison) await redis.client.lpush('celery', Buffer.from(p, 'latin1'));
    const [ok] = await pythonClient(redis, [{ task: 'tasks.add', args: [2, 3] }]);
    expect(ok).toMatchObject({ ok: 5 });
    expect(rejected).toHaveLength(poison.length);
    expect(rejected.join('\n')).toMatch(/not JSON/);
    expect(rejected.join('\n')).toMatch(/delivery_info/);
    expect(rejected.join('\n')).toMatch(/not \[args, kwargs, embed\]/);
    expect(rejected.join('\n')).toMatch(/Can't decode message body/);
    expect(rejected.join('\n')).toMatch(/Refusing to deserialize untrusted content of type application\/x-yaml/);
    expect(rejected.join('\n')).toMatch(/unknown message/);
    expect(rejected.join('\n')).toMatch(/not UTF-8/);
    // Acknowledged: the ack and the result go out on separate connections, so the ack may land just after the result.
    await waitUntil(async () => (await redis!.client.hlen('unacked')) === 0, 10, 'every message to be acknowledged');
    expect(await redis.client.llen('celery')).toBe(0);
    // The four that cannot be used without their bytes (not JSON, no delivery_info, not UTF-8) keep them in the dead-letter list.
    expect(await redis.client.llen('dead')).toBe(4);
    // Those with an id get a FAILURE their senders can read.
    const p3 = JSON.parse((await redis.client.select(1).then(() => redis!.client.get('celery-task-meta-p3')))!);
    await redis.client.select(0);
    expect(p3).toMatchObject({ status: 'FAILURE', result: { exc_type: 'DecodeError', exc_module: 'kombu.exceptions' } });
  });

  it('messages over maxMessageBytes are dropped unread, from a batch pop and from BRPOP, and kept in the dead-letter list; the worker goes on', async () => {
    redis = await startRedis();
    const rejected: string[] = [];
    const rawSizes: number[] = [];
    const w = new Worker({ app: TASKS, broker: redis.url(0), resultBackend: redis.url(1), concurrency: 1, maxMessageBytes: 20_000, deadLetterQueue: 'dead', log: () => {} });
    w.on('rejected', (e: { reason: string; raw: Buffer }) => {
      rejected.push(e.reason);
      rawSizes.push(e.raw.length);
    });
    const c = client(redis);
    const big = 'x'.repeat(30_000);
    // Waiting when the worker starts: the batch pop leaves its bytes in Redis.
    await c.sendTask('tasks.echo', [big]);
    const first = await c.sendTask('tasks.add', [1, 2]);
    const waiting = await redis.client.lrangeBuffer('celery', 0, -1);
    await w.start();
    closers.push(() => w.shutdown());
    expect(await first.get(20)).toBe(3);
    // Arriving while the worker waits in BRPOP: taken whole, dropped before it is decoded.
    await waitUntil(async () => /blocked_clients:[1-9]/.test(await redis!.client.info('clients')), 10, 'the worker to wait in BRPOP');
    await c.sendTask('tasks.echo', [`${big}!`]);
    expect(await (await c.sendTask('tasks.add', [3, 4])).get(20)).toBe(7);
    await waitUntil(() => rejected.length === 2, 10, 'both large messages to be dropped');
    for (const r of rejected) expect(r).toMatch(/^a message of \d+ bytes, over maxMessageBytes \(20000\)$/);
    // The batch pop's never left Redis; BRPOP's came whole.
    expect(rawSizes[0]).toBe(0);
    expect(rawSizes[1]).toBeGreaterThan(20_000);
    const dead = await redis.client.lrangeBuffer('dead', 0, -1);
    expect(dead).toHaveLength(2);
    // The batch pop's is the very element that waited in the queue (the older of the two, at the list's tail).
    expect(dead[1]!.equals(waiting[1]!)).toBe(true);
    expect(dead.map((m) => (pyJsonLoads(m.toString()) as { headers: { task: string } }).headers.task)).toEqual(['tasks.echo', 'tasks.echo']);
    expect(dead[0]!.length).toBeGreaterThan(20_000);
    await waitUntil(async () => (await redis!.client.hlen('unacked')) === 0, 10, 'every message to be acknowledged');
    expect(await redis.client.llen('celery')).toBe(0);
    expect(() => new Worker({ app: TASKS, broker: redis!.url(0), maxMessageBytes: -1 })).toThrow(TypeError);
  });

  it('a pickled message over the unpickler\'s default limits is rejected (FAILURE DecodeError); a worker with loadLimits raised loads it, and so does its pool', async () => {
    redis = await startRedis();
    // 2,000 bigint keys k << 64 share one V8 hash (test/helpers/v8-collisions.ts): over the default maxHashCollisions.
    const big = new Map(collidingKeys.shifted(2000).map((k, j) => [k, j]));
    const c = client(redis);
    for (const loadLimits of [undefined, { maxHashCollisions: Infinity }]) {
      const rejected: string[] = [];
      const w = new Worker({ app: TASKS, broker: redis.url(0), resultBackend: redis.url(1), concurrency: 1, accept: ['json', 'pickle'], loadLimits, log: () => {} });
      w.on('rejected', (e: { reason: string }) => rejected.push(e.reason));
      await w.start();
      const r = await c.sendTask('tasks.size', [big], {}, { serializer: 'pickle' });
      if (loadLimits === undefined) {
        await expect(r.get(20)).rejects.toThrow(/Can't decode message body.*maxHashCollisions/);
        expect(rejected.join('\n')).toMatch(/maxHashCollisions/);
      } else {
        expect(await r.get(20)).toBe(2000);
        expect(rejected).toEqual([]);
      }
      expect(await (await c.sendTask('tasks.add', [1, 2])).get(20)).toBe(3);
      await w.shutdown();
    }
    expect(() => new Worker({ app: TASKS, broker: redis!.url(0), loadLimits: { maxHashColisions: 1 } as never })).toThrow(/not a load limit/);
  });

  it('a task waiting for a pool process is dropped when it expires or is revoked (REVOKED expired / revoked); the next one runs', async () => {
    const { w, c } = await quietWorker();
    const busy = await c.sendTask('tasks.sleeper', [2]);
    await waitUntil(async () => JSON.stringify(await c.broadcast('active', { timeout: 0.3 })).includes(busy.id), 20, 'the sleeper to start');
    const expiring = await c.sendTask('tasks.add', [1, 1], {}, { expires: 0.5 });
    const revoked = await c.sendTask('tasks.add', [2, 2]);
    const kept = await c.sendTask('tasks.add', [3, 3]);
    await waitUntil(async () => JSON.stringify(await c.broadcast('reserved', { timeout: 0.3 })).includes(kept.id), 20, 'the three to be reserved');
    await c.revoke(revoked.id);
    await expect(expiring.get(20)).rejects.toMatchObject({ pyModule: 'celery.exceptions', pyName: 'TaskRevokedError', args: ['expired'] });
    await expect(revoked.get(20)).rejects.toMatchObject({ pyName: 'TaskRevokedError', args: ['revoked'] });
    expect(await busy.get(20)).toBe(2);
    expect(await kept.get(20)).toBe(6);
    // Acknowledged: the ack and the result go out on separate connections, so the ack may land just after the result.
    await waitUntil(async () => (await redis!.client.hlen('unacked')) === 0, 10, 'every message to be acknowledged');
    const revokedList = (await c.broadcast('revoked', { timeout: 0.5 }))[0]![w.hostname] as string[];
    expect(revokedList.sort()).toEqual([expiring.id, revoked.id].sort());
  });

  it('revoked ids over 256 characters are remembered by digest: a task with such an id is still dropped, and the list stays small', async () => {
    const { w, c } = await quietWorker();
    const long = (i: number): string => `${'r'.repeat(100_000)}-${i}`;
    await c.revoke([long(1), long(2), 'short-revoked-id']);
    await waitUntil(async () => JSON.stringify(await c.broadcast('revoked', { timeout: 0.3 })).includes('short-revoked-id'), 20, 'the revoke');
    const revokedList = (await c.broadcast('revoked', { timeout: 0.5 }))[0]![w.hostname] as string[];
    expect(revokedList).toHaveLength(3);
    expect(revokedList).toContain('short-revoked-id');
    expect(Math.max(...revokedList.map((id) => id.length))).toBeLessThanOrEqual(256);
    // A task sent with a revoked long id is dropped as REVOKED; one with another long id runs.
    const dropped = await c.sendTask('tasks.add', [1, 2], {}, { id: long(2) });
    await expect(dropped.get(20)).rejects.toMatchObject({ pyName: 'TaskRevokedError', args: ['revoked'] });
    expect(await (await c.sendTask('tasks.add', [2, 3], {}, { id: long(3) })).get(20)).toBe(5);
  });

  it('a task already written to its pool process runs when it is revoked, or when a warm shutdown begins: its result is recorded, its message is not put back', async () => {
    const { w, c } = await quietWorker();
    const stats = (await c.broadcast('stats', { timeout: 1 }))[0]![w.hostname] as { pool: { processes: number[] } };
    const [poolPid] = stats.pool.processes;
    // A stopped pool process cannot read, ACK or start the job the worker writes to it.
    const handOver = async (args: [number, number]): Promise<ReturnType<Celery['sendTask']>> => {
      process.kill(poolPid!, 'SIGSTOP');
      const r = c.sendTask('tasks.add', args);
      await waitUntil(async () => (await redis!.client.llen('celery')) === 0 && (await redis!.client.hlen('unacked')) === 1, 20, 'the worker to take the task');
      await new Promise((res) => setTimeout(res, 200));
      return r;
    };
    try {
      const revoked = await handOver([2, 3]);
      await c.revoke(revoked.id);
      await new Promise((res) => setTimeout(res, 300));
      process.kill(poolPid!, 'SIGCONT');
      expect(await revoked.get(20)).toBe(5);
      const atShutdown = await handOver([4, 5]);
      const stopping = w.shutdown();
      // Past the consumer's stop (its BRPOP returns within its 1 s timeout), when the shutdown sorts its jobs.
      await new Promise((res) => setTimeout(res, 1500));
      process.kill(poolPid!, 'SIGCONT');
      await within(stopping, 20);
      expect(await atShutdown.get(20)).toBe(9);
      expect(await redis!.client.llen('celery')).toBe(0);
      expect(await redis!.client.hlen('unacked')).toBe(0);
    } finally {
      try {
        process.kill(poolPid!, 'SIGCONT');
      } catch {
        // gone
      }
    }
  });

  it('a result JSON cannot carry, or the pool cannot pickle, is a FAILURE with the reason', async () => {
    const { w, c } = await quietWorker();
    const r = await c.sendTask('tasks.unencodable');
    await expect(r.get(20)).rejects.toMatchObject({ pyModule: 'kombu.exceptions', pyName: 'EncodeError', args: ['Object of type Set is not JSON serializable'] });
    // One the pool process cannot even send back (a function): billiard's MaybeEncodingError.
    const f = await c.sendTask('tasks.unpicklable');
    await expect(f.get(20)).rejects.toMatchObject({ pyModule: 'billiard.pool', pyName: 'MaybeEncodingError' });
    expect(await (await c.sendTask('tasks.add', [1, 1])).get(20)).toBe(2);
  });
});

describe('examples/celery', () => {
  it("runs as the README says: the worker command on examples/celery/tasks.ts, and the Python side's delay() calls", async () => {
    redis = await startRedis();
    const w = await startNodeWorkerProcess(redis, ['-c', '2', '--result-backend', redis.url(0)], new URL('../examples/celery/tasks.ts', import.meta.url));
    procs.push(w);
    const out = execFileSync(celeryPython(), [new URL('../examples/celery/py_client.py', import.meta.url).pathname], { env: { ...process.env, CELERY_BROKER_URL: redis.url(0) }, encoding: 'utf8', timeout: 60000 });
    expect(out).toContain('add.delay(2, 3) -> 5');
    expect(out).toContain('slow(10) with a 1 s soft limit -> stopped by the soft time limit');
    expect(out).toMatch(/careful.delay\("Celery"\) -> hello Celery, from Node v\d+/);
  });
});
