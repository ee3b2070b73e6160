/**
 * Celery semantics of the Node worker (issue 13; spec/celery.md §8 tests 9,
 * 20, 21, 29, 30 and R-26, R-29): STARTED records, the prefetch window, ETA
 * tasks beside plain ones, mingle with a Python worker, worker and task
 * events, pickle results, the result size limit, kombu 5.3's tagged JSON.
 * Each test has its own redis-server and worker.
 */
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync } from 'node:fs';
import { hostname } from 'node:os';

import { Redis } from 'ioredis';
import { afterEach, describe, expect, it } from 'vitest';

import { Celery, Worker, type WorkerOptions } from '../src/celery/index.js';
import { pyJsonDumps, pyJsonLoads } from '../src/celery/pyjson.js';
import { pythonClient, startPythonWorker, startRedis, within, type RedisServer } from './helpers/celery.js';
import { pythonFor } from './helpers/peers.js';
import { waitUntil } from './helpers/until.js';

const TASKS = new URL('./peers/celery/tasks.ts', import.meta.url);

let redis: RedisServer | null = null;
let closers: Array<() => Promise<void>> = [];

afterEach(async () => {
  for (const c of closers.reverse()) await within(c(), 20).catch(() => {});
  closers = [];
  await redis?.stop();
  redis = null;
});

async function setUp(options: Partial<WorkerOptions> = {}): Promise<{ r: RedisServer; w: Worker; c: Celery }> {
  const r = await startRedis();
  redis = r;
  const w = new Worker({ app: TASKS, broker: r.url(0), resultBackend: r.url(1), concurrency: 2, log: () => {}, ...options });
  await w.start();
  closers.push(() => w.shutdown());
  const c = new Celery({ broker: r.url(0), backend: r.url(1), resultSerializer: options.resultSerializer });
  closers.push(() => c.close());
  return { r, w, c };
}

describe('Celery semantics of the Node worker', () => {
  it('trackStarted: a running task is STARTED with {pid, hostname}', async () => {
    const { r, w } = await setUp({ trackStarted: true });
    const [out] = await pythonClient(r, [{ started: { task: 'tasks.sleeper', args: [1] } }]);
    expect(out).toMatchObject({ ok: 1, started: { state: 'STARTED', info: { hostname: w.hostname } } });
    expect(out!.started.info.pid).toEqual(expect.any(Number));
  });

  it('the prefetch window (concurrency 2, multiplier 1): acks_late holds 2 unacked and leaves 3 queued; early ack holds 2 more and leaves 1', async () => {
    const { r, c } = await setUp({ prefetchMultiplier: 1 });
    const late = [];
    for (let i = 0; i < 5; i++) late.push(await c.sendTask('tasks.lateSleeper', [1]));
    await waitUntil(async () => (await r.client.hlen('unacked')) === 2 && (await r.client.llen('celery')) === 3, 10, 'two acks_late deliveries');
    await new Promise((res) => setTimeout(res, 300));
    expect([await r.client.hlen('unacked'), await r.client.llen('celery')]).toEqual([2, 3]);
    for (const x of late) await x.get(20);
    const early = [];
    for (let i = 0; i < 5; i++) early.push(await c.sendTask('tasks.sleeper', [1]));
    await waitUntil(async () => (await r.client.llen('celery')) === 1, 10, 'four early-ack deliveries');
    await new Promise((res) => setTimeout(res, 300));
    expect([await r.client.hlen('unacked'), await r.client.llen('celery')]).toEqual([2, 1]);
    for (const x of early) await x.get(20);
  });

  it('tasks waiting for their ETA do not hold the prefetch window: plain tasks behind them run at once; scheduled lists them', async () => {
    const { w, c } = await setUp({ concurrency: 1, prefetchMultiplier: 1 });
    const later = [];
    for (let i = 0; i < 3; i++) later.push(await c.sendTask('tasks.add', [i, 100], {}, { countdown: 6 }));
    const now = [];
    const t0 = Date.now();
    for (let i = 0; i < 3; i++) now.push(await c.sendTask('tasks.add', [i, 1]));
    expect(await Promise.all(now.map((x) => x.get(10)))).toEqual([1, 2, 3]);
    expect(Date.now() - t0).toBeLessThan(5000);
    const scheduled = (await c.broadcast('scheduled', { destination: [w.hostname] }))[0]![w.hostname] as Array<{ eta: string; request: { id: string } }>;
    expect(scheduled.map((s) => s.request.id).sort()).toEqual(later.map((x) => x.id).sort());
    expect(await Promise.all(later.map((x) => x.get(20)))).toEqual([100, 101, 102]);
    expect(Date.now() - t0).toBeGreaterThanOrEqual(5000);
  });

  it('mingle: a Python worker started beside the Node worker syncs with it and learns its revoked ids', async () => {
    const { r, w, c } = await setUp();
    await c.revoke('mingle-revoked-0001');
    await waitUntil(async () => JSON.stringify(await c.broadcast('revoked', { destination: [w.hostname] })).includes('mingle-revoked-0001'), 10, 'the revoke');
    const py = await startPythonWorker(r, { mingle: true, name: 'mingler@%h' });
    try {
      expect(py.log()).toMatch(/mingle: sync with 1 nodes/);
      expect(py.log()).toMatch(/mingle: sync complete/);
      expect(py.log()).not.toMatch(/mingle: sync .* failed/);
      const [out] = await pythonClient(r, [{ control: 'revoked', timeout: 1 }]);
      expect(JSON.stringify(out!.ok)).toMatch(/mingler@[^"]+": \["mingle-revoked-0001"\]|"mingler@[^"]+":\s*\[[^\]]*"mingle-revoked-0001"/);
    } finally {
      await py.stop();
    }
  });

  it('worker events: worker-online, a heartbeat every 2 s, worker-offline at shutdown; with task events a task.multi array', async () => {
    const r = await startRedis();
    redis = r;
    const sub = new Redis(r.port, '127.0.0.1');
    closers.push(async () => sub.disconnect());
    const seen: Array<{ at: number; channel: string; body: unknown }> = [];
    sub.on('pmessage', (_p: string, channel: string, message: string) => {
      const env = pyJsonLoads(message) as { body: string };
      seen.push({ at: Date.now(), channel, body: pyJsonLoads(Buffer.from(env.body, 'base64').toString()) });
    });
    await sub.psubscribe('/0.celeryev/*');
    const w = new Worker({ app: TASKS, broker: r.url(0), resultBackend: r.url(1), concurrency: 1, taskEvents: true, log: () => {} });
    await w.start();
    const c = new Celery({ broker: r.url(0), backend: r.url(1) });
    closers.push(() => c.close());
    expect(await (await c.sendTask('tasks.add', [1, 2])).get(10)).toBe(3);
    await new Promise((res) => setTimeout(res, 4500));
    await w.shutdown();
    await new Promise((res) => setTimeout(res, 200));
    const types = seen.map((s) => (Array.isArray(s.body) ? (s.body as Array<{ type: string }>).map((e) => e.type).join('+') : (s.body as { type: string }).type));
    expect(types[0]).toBe('worker-online');
    expect(types[types.length - 1]).toBe('worker-offline');
    const beats = seen.filter((s) => (s.body as { type?: string }).type === 'worker-heartbeat').map((s) => s.at);
    expect(beats.length).toBeGreaterThanOrEqual(2);
    for (let i = 1; i < beats.length; i++) expect(Math.abs(beats[i]! - beats[i - 1]! - 2000)).toBeLessThan(300);
    const taskTypes = seen.filter((s) => s.channel === '/0.celeryev/task.multi').flatMap((s) => (s.body as Array<{ type: string }>).map((e) => e.type));
    expect(taskTypes).toEqual(['task-received', 'task-started', 'task-succeeded']);
    const online = seen[0]!.body as Record<string, unknown>;
    expect(Object.keys(online)).toEqual(['hostname', 'utcoffset', 'pid', 'clock', 'freq', 'active', 'processed', 'loadavg', 'sw_ident', 'sw_ver', 'sw_sys', 'timestamp', 'type']);
  });

  it('pickle results: a Python client with result_serializer=pickle reads values and re-raises exceptions', async () => {
    const { r } = await setUp({ resultSerializer: 'pickle' });
    const [ok, bad] = await pythonClient(r, [{ task: 'tasks.add', args: [2, 3] }, { task: 'tasks.boomPy', args: ['pickled'] }], { CELERY_RESULT_SERIALIZER: 'pickle' });
    expect(ok).toMatchObject({ ok: 5, state: 'SUCCESS' });
    expect(bad).toMatchObject({ state: 'FAILURE', error: { module: 'builtins', name: 'ValueError', args: ['pickled'], builtin: true } });
  });

  it('a result over the size limit is a FAILURE with the reason', async () => {
    const { c } = await setUp({ resultMaxBytes: 1000 });
    const r = await c.sendTask('tasks.echo', ['x'.repeat(2000)]);
    await expect(r.get(10)).rejects.toMatchObject({ pyName: 'EncodeError', args: [expect.stringMatching(/bytes, over the limit of 1000$/)] });
    expect(await (await c.sendTask('tasks.echo', ['small'])).get(10)).toBe('small');
  });

  it("pyJsonDumps writes what Python's json.dumps writes: ints to 2**63 in full, floats by repr, nesting, dict keys", () => {
    const script = [
      'import json',
      'values = [0, -5, 2**53 - 1, 2**53, 2**60, -(2**62), 1.5, 1e300, -0.0, 0.1, [], {}, {"a": [1, {"b": 2}], "c": None}, {1: "x", 2.5: True}, list(range(-3, 3))]',
      'for v in values: print(json.dumps(v))',
    ].join('\n');
    const r = spawnSync(pythonFor('3.11'), ['-c', script], { encoding: 'utf8' });
    expect(r.status, r.stderr).toBe(0);
    const values: unknown[] = [0, -5, 2 ** 53 - 1, 2 ** 53, 2 ** 60, -(2 ** 62), 1.5, 1e300, -0, 0.1, [], {}, { a: [1, { b: 2 }], c: null }, new Map<unknown, unknown>([[1, 'x'], [2.5, true]]), [-3, -2, -1, 0, 1, 2]];
    expect(values.map((v) => pyJsonDumps(v))).toEqual(r.stdout.trim().split('\n'));
  });

  it("kombu 5.3+'s tagged JSON values and Python's NaN/Infinity are read; a task body carrying them runs", async () => {
    expect(pyJsonLoads('{"a": {"__type__": "bytes", "__value__": "hi"}, "b": {"__type__": "uuid", "__value__": {"hex": "ab"}}, "c": [NaN, Infinity, -Infinity]}')).toEqual({
      a: new TextEncoder().encode('hi'),
      b: 'ab',
      c: [NaN, Infinity, -Infinity],
    });
    expect(() => pyJsonLoads('{"__type__": "nope", "__value__": 1}')).toThrow(/unknown tagged JSON type/);
    expect(pyJsonLoads('"NaN is a word"')).toBe('NaN is a word');
    expect(pyJsonDumps({ s: 'h\u00e9llo \u2603 \ud83d\ude00', n: [1, 2.5, NaN] })).toBe('{"s": "h\\u00e9llo \\u2603 \\ud83d\\ude00", "n": [1, 2.5, NaN]}');
    const { r } = await setUp();
    const body = '[[{"__type__": "datetime", "__value__": "2026-12-05T08:00:00+00:00"}], {}, {"callbacks": null, "errbacks": null, "chain": null, "chord": null}]';
    const env = `{"body": "${Buffer.from(body).toString('base64')}", "content-encoding": "utf-8", "content-type": "application/json", "headers": {"task": "tasks.echo", "id": "tagged-0001"}, "properties": {"delivery_info": {"exchange": "", "routing_key": "celery"}, "priority": 0, "body_encoding": "base64", "delivery_tag": "tag-tagged-0001"}}`;
    await r.client.lpush('celery', env);
    const c = new Celery({ broker: r.url(0), backend: r.url(1) });
    closers.push(() => c.close());
    expect(await c.asyncResult('tagged-0001').get(10)).toBe('2026-12-05T08:00:00+00:00');
  });

  it('start() resolves once every pool process has imported the app (as a prefork worker is ready)', async () => {
    const log = `${mkdtempSync('/tmp/billiard-ts-import-')}/pids`;
    process.env.CELERY_TASKS_IMPORT_LOG = log;
    try {
      const { w } = await setUp({ concurrency: 2 });
      const pids = readFileSync(log, 'utf8').trim().split('\n').map(Number);
      // This process (the worker's own import of the app; vitest may have imported it before) and both pool processes.
      expect(pids.filter((p) => p !== process.pid)).toHaveLength(2);
      const c = new Celery({ broker: redis!.url(0) });
      closers.push(() => c.close());
      const stats = (await c.broadcast('stats', { destination: [w.hostname] }))[0]![w.hostname] as { pool: { processes: number[] } };
      expect(pids.filter((p) => p !== process.pid).sort()).toEqual([...stats.pool.processes].sort());
    } finally {
      delete process.env.CELERY_TASKS_IMPORT_LOG;
    }
  });

  it('maxTasksPerChild: a pool process is replaced after that many tasks', async () => {
    const { c } = await setUp({ concurrency: 1, maxTasksPerChild: 2 });
    const pids = [];
    for (let i = 0; i < 4; i++) pids.push(await (await c.sendTask('tasks.pid')).get(20));
    expect(pids[0]).toBe(pids[1]);
    expect(pids[2]).toBe(pids[3]);
    expect(pids[2]).not.toBe(pids[0]);
  });

  it('the visibility sweep takes unacked_mutex with a token, skips while another holds it, and restores only messages past the timeout', async () => {
    const r = await startRedis();
    redis = r;
    const { RedisTransport } = await import('../src/celery/transport.js');
    const t = new RedisTransport(r.url(0), { visibilityTimeout: 1 });
    closers.push(() => t.close());
    const env = (tag: string): string => `{"body": "W10=", "content-encoding": "utf-8", "content-type": "application/json", "headers": {"task": "tasks.add", "id": "${tag}"}, "properties": {"delivery_info": {"exchange": "", "routing_key": "celery"}, "priority": 0, "body_encoding": "base64", "delivery_tag": "${tag}"}}`;
    await t.recordDelivery('old', env('old'), '', 'celery');
    await r.client.zadd('unacked_index', Date.now() / 1000 - 10, 'old');
    await t.recordDelivery('new', env('new'), '', 'celery');
    await r.client.set('unacked_mutex', 'someone-else', 'PX', 5000);
    expect(await t.sweep()).toBeNull();
    expect(await r.client.hlen('unacked')).toBe(2);
    await r.client.del('unacked_mutex');
    expect(await t.sweep()).toBe(1);
    expect(await r.client.hkeys('unacked')).toEqual(['new']);
    const restored = pyJsonLoads((await r.client.lrange('celery', 0, -1))[0]!) as { headers: Record<string, unknown>; properties: { delivery_info: Record<string, unknown> } };
    expect(restored.headers).toMatchObject({ id: 'old', redelivered: true });
    expect(restored.properties.delivery_info.redelivered).toBe(true);
    expect(await r.client.exists('unacked_mutex')).toBe(0);
  });

  it('documents a Celery hazard: an acks_late task running past the visibility timeout is restored by any kombu client (a Python ping) and runs twice', async () => {
    const { r, c } = await setUp({ concurrency: 2, transport: { visibilityTimeout: 2 } });
    const record = `${mkdtempSync('/tmp/billiard-ts-dup-')}/runs`;
    const res = await c.sendTask('tasks.lateRecord', [record, 4]);
    await new Promise((done) => setTimeout(done, 2500));
    await pythonClient(r, [{ control: 'ping', timeout: 0.5 }], { CELERY_VISIBILITY_TIMEOUT: '2' });
    expect(await res.get(20)).toBe('recorded');
    await waitUntil(() => existsSync(record) && readFileSync(record, 'utf8').trim().split('\n').length === 2, 20, 'the second run');
    const lines = readFileSync(record, 'utf8').trim().split('\n');
    expect(new Set(lines.map((l: string) => l.split(' ')[0])).size).toBe(1);
    await waitUntil(async () => (await r.client.hlen('unacked')) === 0, 20, 'both acks');
  });

  it('retries store RETRY (with the exception) before the final state; past maxRetries the exception given is raised', async () => {
    const { r, c } = await setUp();
    const sub = new Redis(r.port, '127.0.0.1');
    closers.push(async () => sub.disconnect());
    const statuses = new Map<string, Array<{ status: string; result: unknown }>>();
    sub.on('message', (channel: string, message: string) => {
      const id = channel.slice('celery-task-meta-'.length);
      statuses.set(id, [...(statuses.get(id) ?? []), pyJsonLoads(message) as { status: string; result: unknown }]);
    });
    await sub.subscribe('celery-task-meta-retry-ok-0001', 'celery-task-meta-retry-no-0001');
    const ok = await c.sendTask('tasks.retrier', [], {}, { id: 'retry-ok-0001' });
    const no = await c.sendTask('tasks.alwaysRetry', [], {}, { id: 'retry-no-0001' });
    expect(await ok.get(20)).toEqual(['done', 2]);
    await expect(no.get(20)).rejects.toMatchObject({ pyModule: 'builtins', pyName: 'KeyError', args: ['again 1'] });
    await waitUntil(() => (statuses.get('retry-no-0001') ?? []).length === 2 && (statuses.get('retry-ok-0001') ?? []).length === 3, 5, 'the records');
    expect(statuses.get('retry-ok-0001')!.map((x) => x.status)).toEqual(['RETRY', 'RETRY', 'SUCCESS']);
    expect(statuses.get('retry-ok-0001')![0]!.result).toEqual({ exc_type: 'KeyError', exc_message: ['again 0'], exc_module: 'builtins' });
    expect(statuses.get('retry-no-0001')!.map((x) => x.status)).toEqual(['RETRY', 'FAILURE']);
  });

  it('Reject with requeue puts an acksLate message back (it runs again); Reject without requeue and Ignore store nothing; all are acknowledged', async () => {
    const { r, c } = await setUp();
    const again = await c.sendTask('tasks.rejectOnce');
    expect(await again.get(20)).toBe('second time');
    const dropped = await c.sendTask('tasks.rejectDrop');
    const ignored = await c.sendTask('tasks.ignoreMe');
    const after = await c.sendTask('tasks.add', [1, 1]);
    expect(await after.get(20)).toBe(2);
    await new Promise((res) => setTimeout(res, 300));
    expect([await dropped.state(), await ignored.state()]).toEqual(['PENDING', 'PENDING']);
    await waitUntil(async () => (await r.client.hlen('unacked')) === 0, 10, 'the acks');
    expect(await r.client.llen('celery')).toBe(0);
  });

  it('bad options are a TypeError at construction', () => {
    const base = { app: TASKS, broker: 'redis://127.0.0.1:1/0' };
    expect(() => new Worker({ ...base, concurrency: 0 })).toThrow(/concurrency must be an integer >= 1/);
    expect(() => new Worker({ ...base, concurrency: 1.5 })).toThrow(TypeError);
    expect(() => new Worker({ ...base, prefetchMultiplier: -1 })).toThrow(/prefetchMultiplier/);
    expect(() => new Worker({ ...base, queues: [] })).toThrow(/queues/);
    expect(() => new Worker({ ...base, broker: 'http://x/' })).toThrow(/not a Redis URL/);
  });

  it('node names expand %h, %n and %d', () => {
    const w = new Worker({ app: TASKS, broker: 'redis://127.0.0.1:1/0', hostname: 'w1@%h|%n|%d' });
    const host = hostname();
    const dot = host.indexOf('.');
    expect(w.hostname).toBe(`w1@${host}|${dot < 0 ? host : host.slice(0, dot)}|${dot < 0 ? '' : host.slice(dot + 1)}`);
    w.transport.disconnect();
    w.backend?.disconnect();
  });
});

describe('JSON text from the broker', () => {
  it('more than 64 object keys over 16,383 characters is a SyntaxError (V8 compares such keys with each other), not a long parse', () => {
    const key = (i: number, pad = 16384): string => 'k'.repeat(pad - 8) + String(i).padStart(8, '0');
    const object = (n: number, sep = ': '): string => `{${Array.from({ length: n }, (_, i) => `"${key(i)}"${sep}${i}`).join(', ')}}`;
    expect(Object.keys(pyJsonLoads(object(64)) as object)).toHaveLength(64);
    expect(() => pyJsonLoads(object(65))).toThrow(SyntaxError);
    expect(() => pyJsonLoads(object(65))).toThrow(/more than 64 object keys longer than 16383 characters/);
    expect(() => pyJsonLoads(object(65, ' \n\t: '))).toThrow(SyntaxError);
    // Long string values, long keys of 16,383 characters, and escaped quotes inside keys do not count as long keys.
    expect((pyJsonLoads(`[${Array.from({ length: 100 }, (_, i) => `"${key(i)}"`).join(', ')}]`) as string[])[99]).toBe(key(99));
    expect(Object.keys(pyJsonLoads(`{${Array.from({ length: 100 }, (_, i) => `"${key(i, 16383)}": ${i}`).join(', ')}}`) as object)).toHaveLength(100);
    const quoted = (i: number): string => `\\"${'k'.repeat(16384)}\\": ${i}`;
    expect((pyJsonLoads(`[${Array.from({ length: 70 }, (_, i) => `"${quoted(i)}"`).join(', ')}]`) as string[])).toHaveLength(70);
  });
});
