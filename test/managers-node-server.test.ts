/**
 * Python clients of a billiard-ts manager server: billiard 4.1's and the
 * standard library's managers (CPython 3.11, 3.12, 3.13) connect to a Node
 * manager started with `start()` (a Node child) and use every typeid it
 * serves; Node clients use the same server; Node objects are served to
 * both; proxies travel in pickles to Python and to Node children.
 */
import { afterAll, beforeAll, describe, expect, test } from 'vitest';

import { DictProxy, dumps, loads, Process, PyDict, pyfunc, RemoteError, SyncManager, tuple, UnpicklingError, type Address } from '../src/index.js';
import { collidingKeys } from './helpers/v8-collisions.js';
import { exerciseSyncManager } from './helpers/manager-scenario.js';
import { KEY, runPeerClient, type PeerResult } from './helpers/manager-peers.js';
import { type PyVersion } from './helpers/peers.js';
import { ManagedDict, ManagedNamespace } from '../src/managers/objects.js';
import { hashKey } from '../src/managers/pyvalues.js';
import { childUsesProxy, failTask, PeerManager, square } from './peers/manager-peer.js';


function failures(r: PeerResult): string[] {
  return r.failures.map((f) => `${f.name}: ${f.error}`);
}

const CLIENTS: Array<[label: string, version: PyVersion, impl: 'billiard' | 'mp']> = [
  ['billiard 4.1', '3.11', 'billiard'],
  ['CPython 3.11', '3.11', 'mp'],
  ['CPython 3.12', '3.12', 'mp'],
  ['CPython 3.13', '3.13', 'mp'],
];

let manager: PeerManager;
let address: Address;

beforeAll(async () => {
  manager = new PeerManager({ authkey: KEY });
  await manager.start();
  address = manager.address!;
}, 60_000);

afterAll(async () => {
  await manager?.shutdown();
});

describe.each(CLIENTS)('a %s client of a Node manager', (_label, version, impl) => {
  test('a SyncManager client uses every typeid the Node server serves', async () => {
    const r = await runPeerClient(version, impl, address, 'sync');
    expect(failures(r)).toEqual([]);
    expect(r.passed).toEqual(expect.arrayContaining(['dict.iterate', 'list.iterate', 'Event', 'Lock', 'RLock', 'Condition', 'Barrier', 'Namespace', 'Value', 'Array', 'Queue', 'JoinableQueue', 'refcount']));
    expect(r.ok).toBe(true);
  }, 60_000);

  test('the classic distributed queue: a BaseManager with register("get_queue") gets what Node put, and puts back', async () => {
    const q = await manager.get_queue();
    // one object, one id: a second create of the shared queue gives the same id (spec §9.2.3)
    const again = await manager.get_queue();
    expect(again._token.id).toBe(q._token.id);
    await again._decref();
    for (let i = 0; i < 3; i++) await q.put(i);
    const r = await runPeerClient(version, impl, address, 'queue', ['--n', '3']);
    expect(failures(r)).toEqual([]);
    expect(await q.get({ timeout: 5 })).toBe('py-done');
    expect(await q.qsize()).toBe(0);
    await q._decref();
  }, 60_000);

  test('a Node class served by the manager: its public methods, a method that waits without stalling other clients', async () => {
    const shared = await manager.get_counter();
    const before = await shared.value();
    const target = before + 3;
    const py = runPeerClient(version, impl, address, 'counter', ['--n', String(target)]);
    // The Python client's wait_for blocks on its connection; these calls go on meanwhile.
    await new Promise((r) => setTimeout(r, 300));
    for (let i = 0; i < 3; i++) await shared.inc();
    const r = await py;
    expect(failures(r)).toEqual([]);
    expect(r.exposed).toEqual(['inc', 'value', 'wait_for']);
    await shared._decref();
  }, 60_000);
});

describe('Node clients of a Node manager', () => {
  test('every SyncManager typeid, created and used from Node', async () => {
    const m = new SyncManager({ address, authkey: KEY });
    await m.connect();
    await exerciseSyncManager(m, 'node');
  }, 60_000);

  test('a Node class: methods called by name, a waiting call does not stall another caller, non-public names are refused', async () => {
    const c = await manager.Counter();
    expect(await c.inc()).toBe(1);
    expect(await c.inc(4)).toBe(5);
    const shared = await manager.get_counter();
    const start = await shared.value();
    // AutoProxy's methods are the exposed names, camelCased (wait_for -> waitFor).
    const waiting = shared.waitFor(start + 2, 10);
    await shared.inc();
    await shared.inc();
    expect(await waiting).toBe(true);
    await expect(c._callmethod('_hidden')).rejects.toThrow(/not in exposed/);
    await c._decref();
    await shared._decref();
  });

  test('a proxy pickled to a Python process rebuilds there (RebuildProxy, multiprocessing.managers names) and reaches the same object', async () => {
    const d = await manager.dict({ from_node: 'hi' });
    const hex = Buffer.from(dumps(d)).toString('hex');
    for (const [version, impl] of [['3.11', 'billiard'], ['3.13', 'mp']] as const) {
      await d.setItem('from_python', 'no');
      const r = await runPeerClient(version, impl, address, 'rebuild', ['--pickle', hex]);
      expect(failures(r)).toEqual([]);
      expect(r.type).toBe('DictProxy');
      expect(r.from_node).toBe('hi');
      expect(await d.getItem('from_python')).toBe('yes');
    }
    const n = await manager._numberOfObjects();
    await d._decref();
    expect(await manager._numberOfObjects()).toBe(n - 1);
  }, 60_000);

  test('a proxy given to a Node child process rebuilds there with the manager key and uses the object', async () => {
    const d = await manager.dict({ from_parent: 'hello' });
    const p = new Process({ target: childUsesProxy, args: [d] });
    await p.start();
    await p.join(30);
    expect(p.exitcode).toBe(0);
    expect(await d.getItem('from_child')).toBe(p.pid);
    await d._decref();
  }, 60_000);

  test("the Node server's Pool runs exported JS functions in Node workers: apply, map, starmap, AsyncResult and Iterator proxies; a Python function gets #TRACEBACK", async () => {
    const pool = await manager.Pool(2);
    try {
      expect(await pool.apply(square, [7])).toBe(49);
      expect(await pool.map(square, [1, 2, 3])).toEqual([1, 4, 9]);
      expect(await pool.starmap(square, [[4], [5]])).toEqual([16, 25]);
      const r = await pool.applyAsync(square, [9]);
      expect(r._token.typeid).toBe('AsyncResult');
      expect(await r.get(30)).toBe(81);
      expect(await r.ready()).toBe(true);
      expect(await r.successful()).toBe(true);
      await r._decref();
      const mr = await pool.mapAsync(square, [2, 3]);
      expect(await mr.get(30)).toEqual([4, 9]);
      await mr._decref();
      const it = await pool.imap(square, [1, 2, 3, 4]);
      const seen: unknown[] = [];
      for await (const v of it) seen.push(v);
      expect(seen).toEqual([1, 4, 9, 16]);
      const un = await pool.imapUnordered(square, [5, 6]);
      const got: number[] = [];
      for await (const v of un) got.push(v as number);
      expect(got.sort((a, b) => a - b)).toEqual([25, 36]);
      await expect(pool.apply(failTask, [1])).rejects.toThrow(/bad 1/);
      await expect(pool.apply(pyfunc('builtins.pow'), [2, 3])).rejects.toBeInstanceOf(RemoteError);
      await expect(pool.apply(pyfunc('builtins.pow'), [2, 3])).rejects.toThrow(/Python function/);
    } finally {
      await pool.terminate();
      await pool._decref();
    }
  }, 120_000);
});

describe('loadLimits of a Node manager and of its clients', () => {
  test('a value over the default limits is refused by the server (request) and by a client (reply); a manager with the limits raised serves it, in its start() child and in its proxies', async () => {
    // 2,000 bigint keys k << 64 share one V8 hash (test/helpers/v8-collisions.ts): over the default maxHashCollisions.
    const big = new Map(collidingKeys.shifted(2000).map((k, j) => [k, j]));
    await using raised = new SyncManager({ authkey: KEY, loadLimits: { maxHashCollisions: Infinity } });
    await raised.start();
    const d = await raised.dict();
    await d.setItem('big', big);
    expect(((await d.getItem('big')) as Map<bigint, number>).size).toBe(2000);

    // A client with the defaults, on the same server: the reply holding the dict does not load.
    const plain = new SyncManager({ address: raised.address, authkey: KEY });
    await plain.connect();
    const seen = new DictProxy(d._token, { manager: plain });
    await seen.setItem('small', 1);
    const err = await seen.getItem('big').catch((e: unknown) => e);
    expect(err).toBeInstanceOf(UnpicklingError);
    expect(String((err as Error).message)).toMatch(/maxHashCollisions/);
    expect(await seen.getItem('small')).toBe(1); // the connection is still in step

    // A server with the defaults: the request holding the dict does not load; the server goes on.
    await using strict = new SyncManager({ authkey: KEY });
    await strict.start();
    const s = await strict.dict();
    const refused = await s.setItem('big', big).catch((e: unknown) => e);
    expect(refused).toBeInstanceOf(Error);
    expect(String(refused)).toMatch(/maxHashCollisions/);
    await s.setItem('small', 2);
    expect(await s.getItem('small')).toBe(2);

    expect(() => new SyncManager({ loadLimits: { maxHashColisions: 1 } as never })).toThrow(/not a load limit/);
  }, 60_000);
});

describe("a Node manager's dict with keys over 16,383 characters", () => {
  test('their table keys are digests V8 hashes by content, and the keys keep Python equality', () => {
    const long = (i: number, tail = ''): string => 'k'.repeat(16384) + String(i).padStart(8, '0') + tail;
    // V8 hashes a string over 16,383 characters by its length alone: the table key must be shorter.
    expect(hashKey(long(1)).length).toBeLessThanOrEqual(16383);
    expect(hashKey(new TextEncoder().encode(long(1))).length).toBeLessThanOrEqual(16383);
    expect(hashKey(long(1))).not.toBe(hashKey(long(2)));
    expect(hashKey(long(1))).toBe(hashKey(long(1).slice(0)));
    expect(hashKey(long(1))).not.toBe(hashKey(new TextEncoder().encode(long(1))));
    expect(hashKey('short')).toBe('sshort');
    const d = new ManagedDict();
    for (let i = 0; i < 100; i++) d.set(long(i), i);
    d.set(long(5), 'again');
    expect(d.size).toBe(100);
    expect(d.pyCall('__getitem__', [long(5)], {})).toBe('again');
    expect(d.pyCall('__contains__', [long(100)], {})).toBe(false);
    expect((d.pyCall('keys', [], {}) as string[])[99]).toBe(long(99));
  });
});

describe("a Node manager's dict with keys that share V8's hash buckets", () => {
  test('copy() and #GETVALUE are pickled from its items, never put in a Map', () => {
    // V8 hashes a bigint by its low 64 bits: k << 64 for every k shares one bucket,
    // and a Map of 40,000 of them took 6 s to fill. The dict keeps them by strings.
    const d = new ManagedDict();
    const entries: Array<[unknown, unknown]> = [['first', 0]];
    for (let k = 1; k <= 3000; k++) entries.push([BigInt(k) << 64n, k]);
    entries.push([tuple(1, 'x'), null]);
    for (const [k, v] of entries) d.set(k, v);
    for (const value of [d.pyCall('copy', [], {}), d.pyGetValue()]) {
      expect(value).not.toBeInstanceOf(Map);
      for (const protocol of [0, 2, 4, 5]) expect(Buffer.from(dumps(value, { protocol })).equals(Buffer.from(dumps(new PyDict(entries), { protocol })))).toBe(true);
    }
    // A copy is a copy: later changes to the dict do not reach it.
    const copy = d.pyCall('copy', [], {});
    d.set('first', 'changed');
    expect(loads(dumps(copy), { maxHashCollisions: Infinity })).toEqual(new PyDict(entries));
    // dict(d) and list(d) of another managed dict take its keys and items in order.
    expect(new ManagedDict(d).pyCall('keys', [], {})).toEqual(d.keyList());
    expect(d.keyList()).toEqual(entries.map(([k]) => k));
  });
});

describe("a Node manager's Namespace with attribute names over 16,383 characters", () => {
  test('it holds at most 64 of them (V8 compares each with every other), and any number of others', () => {
    const long = (i: number): string => 'a'.repeat(16384) + String(i).padStart(8, '0');
    const ns = new ManagedNamespace();
    for (let i = 0; i < 64; i++) ns.pyCall('__setattr__', [long(i), i], {});
    ns.pyCall('__setattr__', [long(5), 'again'], {});
    expect(() => ns.pyCall('__setattr__', [long(64), 64], {})).toThrow(/at most 64 attribute names longer than 16383/);
    for (let i = 0; i < 1000; i++) ns.pyCall('__setattr__', [`short${i}`, i], {});
    expect(ns.pyCall('__getattribute__', [long(5)], {})).toBe('again');
    // Deleting one makes room for another.
    ns.pyCall('__delattr__', [long(0)], {});
    ns.pyCall('__setattr__', [long(64), 64], {});
    expect(ns.pyCall('__getattribute__', [long(64)], {})).toBe(64);
    expect(() => ns.pyCall('__setattr__', [long(65), 65], {})).toThrow(/at most 64/);
    expect(() => ns.pyCall('__setattr__', [long(66), 66], {})).toThrow(expect.objectContaining({ pyName: 'ValueError' }));
  });
});
