/**
 * Node sends, Python works (issue 13, spec/celery.md §8 tests 1–6 and 31):
 * the billiard-ts Celery client against real Celery 5 workers, its messages
 * compared with those a real Celery client writes, and a mixed fleet of a
 * Python and a Node worker sharing one queue.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { PythonException } from '../src/pickle/exceptions.js';
import { Celery, signature, Worker } from '../src/celery/index.js';
import { pyJsonLoads } from '../src/celery/pyjson.js';
import { pythonClient, startPythonWorker, startRedis, type PythonWorker, type RedisServer } from './helpers/celery.js';
import { waitUntil } from './helpers/until.js';

type Msg = { body: string; headers: Record<string, unknown>; properties: Record<string, unknown> & { delivery_info: Record<string, unknown> } };

describe('the Node client and Python Celery workers', () => {
  let redis: RedisServer;
  let py: PythonWorker;
  let app: Celery;

  beforeAll(async () => {
    redis = await startRedis();
    py = await startPythonWorker(redis, { queues: ['celery'], concurrency: 2 });
    app = new Celery({ broker: redis.url(0), backend: redis.url(1) });
  });

  afterAll(async () => {
    await app?.close();
    await py?.stop();
    await redis?.stop();
  });

  it("sendTask('tasks.mul', [6, 7]) runs on the Python worker and get() is 42", async () => {
    const r = await app.sendTask('tasks.mul', [6, 7]);
    expect(await r.get(20)).toBe(42);
    expect(await r.state()).toBe('SUCCESS');
  });

  it("a Python failure is thrown by get() as a PythonException with Python's traceback", async () => {
    const r = await app.sendTask('tasks.add', ['a', 1]);
    const err = await r.get(20).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(PythonException);
    expect(err).toMatchObject({ pyModule: 'builtins', pyName: 'TypeError' });
    expect((err as PythonException).traceback).toMatch(/^Traceback \(most recent call last\):/);
    expect(await r.get(1, { propagate: false })).toBeInstanceOf(PythonException);
  });

  it('link and linkError from Node: the Python worker sends the callback with the result, the errback with the task id', async () => {
    const ok = await app.sendTask('tasks.add', [1, 1], {}, { link: signature('tasks.mul', [10], {}, { task_id: 'node-link-0001' }) });
    expect(await ok.get(20)).toBe(2);
    expect(await app.asyncResult('node-link-0001').get(20)).toBe(20);
    // (Celery calls an errback task of more than one parameter old-style, in place: echo takes one.)
    const bad = await app.sendTask('tasks.add', ['a', 1], {}, { linkError: signature('tasks.echo', [], {}, { task_id: 'node-link-0002' }) });
    await expect(bad.get(20)).rejects.toMatchObject({ pyName: 'TypeError' });
    expect(await app.asyncResult('node-link-0002').get(20)).toBe(bad.id);
  });

  it('a chain sent from Node (add(1, 2) | mul(10)) runs on the Python worker: 30', async () => {
    const r = await app.chain([signature('tasks.add', [1, 2]), signature('tasks.mul', [10])]);
    expect(await r.get(20)).toBe(30);
  });

  it('a timeout is a TimeoutError, and ping lists the Python worker', async () => {
    const r = await app.sendTask('tasks.sleeper', [3]);
    await expect(r.get(0.2)).rejects.toMatchObject({ name: 'TimeoutError' });
    // Broadcasts at once from one client each get their replies.
    // (The first ends at its first reply and cleans the reply queue up.)
    const node = Object.keys((await app.ping({ timeout: 1 }))[0]!)[0]!;
    const all = await Promise.all([app.ping({ destination: [node], timeout: 2 }), app.ping({ timeout: 1 }), app.ping({ timeout: 1 })]);
    for (const pongs of all) expect(pongs.some((p) => Object.values(p).some((v) => (v as { ok?: string }).ok === 'pong'))).toBe(true);
    expect(await r.get(20)).toBe(3);
    // A timeout past setTimeout's cap (24.8 days) waits for the result.
    const patient = await app.sendTask('tasks.sleeper', [1]);
    expect(await patient.get(3e6)).toBe(1);
  });

  it('revoke(id, { terminate: true }) from Node ends a task running on the Python worker: REVOKED terminated', async () => {
    const r = await app.sendTask('tasks.sleeper', [30]);
    await waitUntil(async () => JSON.stringify(await app.broadcast('active', { timeout: 0.5 })).includes(r.id), 20, 'the task to start');
    const replies = await app.revoke(r.id, { terminate: true, signal: 'SIGKILL', reply: true, timeout: 1 });
    expect(JSON.stringify(replies)).toContain(`terminate: ${r.id}`);
    await expect(r.get(20)).rejects.toMatchObject({ pyModule: 'celery.exceptions', pyName: 'TaskRevokedError', args: ['terminated'] });
  });

  it("the envelope, headers, properties and body are laid out as a real Celery client's (JSON and pickle, countdown, expires, limits)", async () => {
    const options = { queue: 'capture', countdown: 30, expires: 60, soft_time_limit: 5, time_limit: 10, priority: 7 };
    await pythonClient(redis, [{ send: 'tasks.add', args: [2, 3], options }, { send: 'tasks.add', args: [2, 3], options: { queue: 'capture' } }]);
    await pythonClient(redis, [{ send: 'tasks.add', args: [2, 3], options: { queue: 'capture' } }], { CELERY_SERIALIZER: 'pickle' });
    await app.sendTask('tasks.add', [2, 3], {}, { queue: 'capture', countdown: 30, expires: 60, softTimeLimit: 5, timeLimit: 10, priority: 7 });
    await app.sendTask('tasks.add', [2, 3], {}, { queue: 'capture' });
    await app.sendTask('tasks.add', [2, 3], {}, { queue: 'capture', serializer: 'pickle' });
    // LPUSH: the oldest is last.
    const plain = (await redis.client.lrange('capture', 0, -1)).reverse().map((t) => ({ text: t, msg: pyJsonLoads(t) as Msg }));
    const stepped = (await redis.client.lrange('capture\x06\x166', 0, -1)).reverse().map((t) => ({ text: t, msg: pyJsonLoads(t) as Msg }));
    expect(plain).toHaveLength(4);
    expect(stepped).toHaveLength(2);
    const [pyJson, pyPickle, nodeJson, nodePickle] = plain as [{ text: string; msg: Msg }, { text: string; msg: Msg }, { text: string; msg: Msg }, { text: string; msg: Msg }];
    const [pyLimits, nodeLimits] = stepped as [{ text: string; msg: Msg }, { text: string; msg: Msg }];
    for (const [p, n] of [[pyJson, nodeJson], [pyPickle, nodePickle], [pyLimits, nodeLimits]] as const) {
      expect(Object.keys(n.msg)).toEqual(Object.keys(p.msg));
      expect(Object.keys(n.msg.headers)).toEqual(Object.keys(p.msg.headers));
      expect(Object.keys(n.msg.properties)).toEqual(Object.keys(p.msg.properties));
      expect(n.msg.body).toBe(p.msg.body);
      for (const k of ['lang', 'task', 'shadow', 'group', 'group_index', 'retries', 'timelimit', 'parent_id', 'argsrepr', 'kwargsrepr', 'ignore_result']) expect([k, n.msg.headers[k]]).toEqual([k, p.msg.headers[k]]);
      for (const k of ['delivery_mode', 'delivery_info', 'priority', 'body_encoding', 'expiration']) expect([k, n.msg.properties[k]]).toEqual([k, p.msg.properties[k]]);
      expect(n.msg.headers.root_id).toBe(n.msg.headers.id);
      expect(n.msg.properties.correlation_id).toBe(n.msg.headers.id);
      // Python's json.dumps layout: ", " and ": " separators.
      expect(n.text).toMatch(/^\{"body": "[^"]+", "content-encoding": "(utf-8|binary)", "content-type": "application\/(json|x-python-serialize)", "headers": \{"lang": "py", /);
    }
    expect(nodeLimits.msg.headers.timelimit).toEqual([10, 5]);
    expect(nodeLimits.msg.properties.expiration).toBe('60000');
    for (const m of [nodeLimits.msg, pyLimits.msg]) {
      expect(m.headers.eta).toMatch(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{6})?\+00:00$/);
      expect(Math.abs(Date.parse(m.headers.eta as string) - Date.now() - 30000)).toBeLessThan(10000);
    }
    // The pickle body is the 69 bytes of spec/celery.md 1.6, byte for byte.
    expect(Buffer.from(nodePickle.msg.body, 'base64').toString('hex')).toBe('8004953a000000000000004b024b0386947d947d94288c0963616c6c6261636b73944e8c086572726261636b73944e8c05636861696e944e8c0563686f7264944e7587942e');
  });

  it('priorities go to their step lists and a Python worker serves lower numbers first (0, 5, 3, 9)', async () => {
    const order: string[] = [];
    for (const p of [9, 0, 5, 3]) order.push((await app.sendTask('tasks.add', [p, 0], {}, { queue: 'prio', priority: p })).id);
    expect(await redis.client.exists('prio', 'prio\x06\x163', 'prio\x06\x169')).toBe(3);
    const one = await startPythonWorker(redis, { queues: ['prio'], concurrency: 1, name: 'prio@%h' });
    try {
      await waitUntil(() => (one.log().match(/Task tasks\.add\[[^\]]+\] succeeded/g) ?? []).length === 4, 20, 'the four tasks');
      const ran = [...one.log().matchAll(/Task tasks\.add\[([^\]]+)\] succeeded/g)].map((m) => m[1]);
      expect(ran).toEqual([order[1], order[2], order[3], order[0]]);
    } finally {
      await one.stop();
    }
  });

  it('a Python worker and a Node worker on one queue share 1,000 tasks: every one completes exactly once', async () => {
    const node = new Worker({ app: new URL('./peers/celery/tasks.ts', import.meta.url), broker: redis.url(0), resultBackend: redis.url(1), concurrency: 2, log: () => {} });
    await node.start();
    const logStart = py.log().length;
    let nodeRan = 0;
    try {
      const results = [];
      for (let i = 0; i < 1000; i++) results.push(await app.sendTask('tasks.add', [i, 1]));
      const values = await Promise.all(results.map((r) => r.get(120)));
      expect(values).toEqual(Array.from({ length: 1000 }, (_, i) => i + 1));
      const stats = (await app.broadcast('stats', { destination: [node.hostname], timeout: 2 }))[0]![node.hostname] as { total: Record<string, number> };
      nodeRan = stats.total['tasks.add'] ?? 0;
    } finally {
      await node.shutdown();
    }
    const pyRan = [...py.log().slice(logStart).matchAll(/Task tasks\.add\[[^\]]+\] succeeded in [\d.]+s: (\d+)/g)].filter((m) => Number(m[1]) >= 1 && Number(m[1]) <= 1000).length;
    expect(nodeRan).toBeGreaterThan(0);
    expect(pyRan).toBeGreaterThan(0);
    expect(nodeRan + pyRan).toBe(1000);
    expect(await redis.client.hlen('unacked')).toBe(0);
  });
});

describe("the client's result subscription when Redis drops it", () => {
  it('resultBackend, the Worker\'s name for the backend, is the backend too', async () => {
    const redis = await startRedis();
    const app = new Celery({ broker: redis.url(0), resultBackend: redis.url(1) });
    try {
      const record = JSON.stringify({ status: 'SUCCESS', result: 'from db 1', traceback: null, children: [], date_done: '2026-12-08T00:00:00.000000', task_id: 'rb-0001' });
      await redis.client.select(1);
      await redis.client.set('celery-task-meta-rb-0001', record);
      await redis.client.select(0);
      expect(await app.asyncResult('rb-0001').get(5)).toBe('from db 1');
      expect(() => new Celery({ broker: redis.url(0), backend: redis.url(1), resultBackend: redis.url(2) })).toThrow(TypeError);
    } finally {
      await app.close();
      await redis.stop();
    }
  });

  it('Redis drops the subscriber: the client subscribes again, then reads back what was stored meanwhile, and a later result arrives', async () => {
    const redis = await startRedis();
    const app = new Celery({ broker: redis.url(0), backend: redis.url(1) });
    const monitor = await redis.client.duplicate().monitor();
    try {
      const id = 'resubscribe-0001';
      const key = `celery-task-meta-${id}`;
      const r = app.asyncResult(id);
      const got = r.get(30);
      await waitUntil(async () => ((await redis.client.pubsub('NUMSUB', key)) as [string, number])[1] === 1, 10, 'the subscription');
      const seen: string[] = [];
      monitor.on('monitor', (_time: string, args: string[]) => {
        if (args.includes(key)) seen.push(args[0]!.toUpperCase());
      });
      // Redis drops a subscriber whose unread output passes client-output-buffer-limit (32 MB by
      // default), with the messages in it: here every subscriber is dropped at once.
      await redis.client.call('CLIENT', 'KILL', 'TYPE', 'pubsub');
      await waitUntil(() => seen.includes('MGET') && seen.includes('SUBSCRIBE'), 10, 'the read-back and the subscription again');
      // A result published before the SUBSCRIBE and stored after the MGET would be lost for good.
      expect(seen.indexOf('SUBSCRIBE')).toBeLessThan(seen.indexOf('MGET'));
      const record = JSON.stringify({ status: 'SUCCESS', result: 7, traceback: null, children: [], date_done: '2026-12-08T00:00:00.000000', task_id: id });
      await redis.client.select(1);
      await redis.client.set(key, record);
      await redis.client.publish(key, record);
      await redis.client.select(0);
      expect(await got).toBe(7);
    } finally {
      monitor.disconnect();
      await app.close();
      await redis.stop();
    }
  });
});
