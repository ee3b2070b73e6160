/**
 * Every SyncManager typeid created and used from Node, asserted value by
 * value: run against a Python server (billiard 4.1, CPython 3.11–3.13) and
 * against a Node server, so both sides give the same answers.
 */
import { expect } from 'vitest';

import { ManagerValue, Namespace, PySlice, PythonException, RemoteError, type BaseProxy, type SyncManager } from '../../src/index.js';

/** The server on the other end: what differs between them (spec/manager.md §6.1). */
export type ServerKind = 'node' | 'billiard' | 'mp';

function pyType(e: unknown): string {
  if (e instanceof PythonException) return `${e.pyModule}.${e.pyName}`;
  const brand = (e as { constructor?: { brand?: string } })?.constructor?.brand;
  return brand ?? String((e as Error)?.name);
}

async function raises(p: Promise<unknown>, type: string): Promise<unknown> {
  const e = await p.then(
    (v) => {
      throw new Error(`expected ${type}, got the value ${String(v)}`);
    },
    (err: unknown) => err,
  );
  expect(pyType(e), String((e as Error)?.message)).toBe(type);
  return e;
}

async function collect<T>(it: AsyncIterable<T>): Promise<T[]> {
  const out: T[] = [];
  for await (const x of it) out.push(x);
  return out;
}

export async function exerciseSyncManager(m: SyncManager, server: ServerKind): Promise<void> {
  const n0 = await m._numberOfObjects();
  const proxies: BaseProxy[] = [];
  const keep = <P extends BaseProxy>(p: P): P => (proxies.push(p), p);

  // dict
  const d = keep(await m.dict({ a: 1 }));
  await d.setItem('b', 2);
  expect(await d.len()).toBe(2);
  expect(await d.getItem('a')).toBe(1);
  expect(await d.contains('b')).toBe(true);
  expect(await d.contains('zz')).toBe(false);
  expect(await d.get('zz', 7)).toBe(7);
  expect(await d.keys()).toEqual(['a', 'b']);
  expect(await d.values()).toEqual([1, 2]);
  expect(await d.items()).toEqual([['a', 1], ['b', 2]]);
  await d.update({ c: 3 });
  expect(await d.pop('c')).toBe(3);
  expect(await d.setdefault('e', 5)).toBe(5);
  await d.delItem('e');
  await raises(d.getItem('missing'), 'builtins.KeyError');
  expect(await d._getvalue()).toEqual({ a: 1, b: 2 });
  expect(await d.str()).toBe("{'a': 1, 'b': 2}");
  // iteration: CPython and Node serve __iter__ as an Iterator proxy; billiard has none (keys() instead)
  expect(await collect(d)).toEqual(['a', 'b']);
  await d.clear();
  expect(await d.len()).toBe(0);

  // list
  const l = keep(await m.list([3, 1, 2]));
  await l.append(4);
  await l.extend([5, 6]);
  expect(await l.len()).toBe(6);
  expect(await l.getItem(0)).toBe(3);
  expect(await l.getItem(-1)).toBe(6);
  expect(await l.slice(1, 3)).toEqual([1, 2]);
  expect(await l.getItem(new PySlice(null, null, 2))).toEqual([3, 2, 5]);
  await l.setItem(0, 30);
  await l.delItem(-1);
  expect(await l.index(2)).toBe(2);
  expect(await l.count(30)).toBe(1);
  await l.insert(0, 0);
  expect(await l.pop()).toBe(5);
  await l.remove(0);
  await l.sort();
  expect(await l._getvalue()).toEqual([1, 2, 4, 30]);
  await l.sort({ reverse: true });
  await l.reverse();
  expect(await l.contains(4)).toBe(true);
  expect(await l.add([9])).toEqual([1, 2, 4, 30, 9]);
  expect(await l.mul(2)).toEqual([1, 2, 4, 30, 1, 2, 4, 30]);
  expect(await collect(l)).toEqual([1, 2, 4, 30]);
  await raises(l.getItem(99), 'builtins.IndexError');
  await raises(l.index(12345), 'builtins.ValueError');

  // Event
  const ev = keep(await m.Event());
  expect(await ev.isSet()).toBe(false);
  expect(await ev.wait(0.05)).toBe(false);
  await ev.set();
  expect(await ev.isSet()).toBe(true);
  expect(await ev.wait(1)).toBe(true);
  await ev.clear();
  expect(await ev.isSet()).toBe(false);

  // Lock, RLock, Semaphore, BoundedSemaphore
  const lock = keep(await m.Lock());
  expect(await lock.acquire()).toBe(true);
  expect(await lock.acquire({ block: false })).toBe(false);
  expect(await lock.acquire({ timeout: 0.05 })).toBe(false);
  await lock.release();
  await raises(lock.release(), 'builtins.RuntimeError');
  const rl = keep(await m.RLock());
  expect(await rl.acquire()).toBe(true);
  expect(await rl.acquire()).toBe(true);
  await rl.release();
  await rl.release();
  await raises(rl.release(), 'builtins.RuntimeError');
  const sem = keep(await m.Semaphore(2));
  expect(await sem.acquire()).toBe(true);
  expect(await sem.acquire()).toBe(true);
  expect(await sem.acquire({ block: false })).toBe(false);
  await sem.release();
  await sem.release();
  await sem.release(); // an unbounded semaphore may go above its start value
  const bs = keep(await m.BoundedSemaphore(1));
  expect(await bs.acquire()).toBe(true);
  await bs.release();
  await raises(bs.release(), 'builtins.ValueError');

  // Condition: a waiter woken by a notify from another caller (its own serving connection)
  const cond = keep(await m.Condition());
  expect(await cond.acquire()).toBe(true);
  expect(await cond.wait(0.05)).toBe(false);
  await cond.release();
  const cond2 = keep(await m.Condition());
  await cond2.acquire();
  const waiting = cond2.wait(10);
  const notifier = (async (): Promise<void> => {
    // A second proxy of the same Condition has its own connection: it is another owner.
    const twin = keep(new (cond2.constructor as new (...a: unknown[]) => typeof cond2)(cond2._token, { manager: m, authkey: m.authkey }));
    await twin._ready;
    await twin.acquire();
    await twin.notify();
    await twin.release();
  })();
  await notifier;
  expect(await waiting).toBe(true);
  await cond2.release();
  await raises(cond2.notify(), 'builtins.RuntimeError');

  // Barrier
  const b = keep(await m.Barrier(1));
  expect(await b.wait()).toBe(0);
  expect(await b.parties()).toBe(1);
  expect(await b.nWaiting()).toBe(0);
  expect(await b.broken()).toBe(false);
  await b.abort();
  expect(await b.broken()).toBe(true);
  await raises(b.wait(), 'threading.BrokenBarrierError');
  await b.reset();
  expect(await b.broken()).toBe(false);

  // Namespace
  const ns = keep(await m.Namespace({ x: 1 }));
  expect(await ns.get('x')).toBe(1);
  await ns.set('y', 'two');
  expect(await ns.get('y')).toBe('two');
  await ns.delete('y');
  await raises(ns.get('y'), 'builtins.AttributeError');
  expect(await ns.str()).toBe('Namespace(x=1)');
  const nsValue = await ns._getvalue();
  expect(nsValue).toBeInstanceOf(Namespace);
  expect({ ...(nsValue as Namespace) }).toEqual({ x: 1 });

  // Value and Array
  const v = keep(await m.Value('i', 5));
  expect(await v.get()).toBe(5);
  await v.set(6);
  expect(await v.get()).toBe(6);
  const vValue = await v._getvalue();
  expect(vValue).toBeInstanceOf(ManagerValue);
  expect(vValue).toMatchObject({ typecode: 'i', value: 6 });
  const arr = keep(await m.Array('i', [1, 2, 3]));
  expect(await arr.len()).toBe(3);
  expect(await arr.getItem(1)).toBe(2);
  await arr.setItem(1, 20);
  expect(await arr.getItem(new PySlice(0, 2, null))).toMatchObject({ typecode: 'i', items: [1, 20] });

  // Queue and JoinableQueue
  const q = keep(await m.Queue(2));
  await q.put('a');
  await q.put(['b', 2]);
  expect(await q.qsize()).toBe(2);
  expect(await q.full()).toBe(true);
  await raises(q.putNowait('c'), 'queue.Full');
  expect(await q.get()).toBe('a');
  expect(await q.get()).toEqual(['b', 2]);
  expect(await q.empty()).toBe(true);
  await raises(q.getNowait(), '_queue.Empty');
  await raises(q.get({ timeout: 0.05 }), '_queue.Empty');
  // a blocking get, completed by a put from another caller
  const pending = q.get({ timeout: 10 });
  await q.put('late');
  expect(await pending).toBe('late');
  const jq = keep(await m.JoinableQueue());
  await jq.put(1);
  expect(await jq.get()).toBe(1);
  await jq.taskDone();
  await jq.join();
  await raises(jq.taskDone(), 'builtins.ValueError');

  // an error a method raises keeps the connection usable; a non-exposed name is a RemoteError (#TRACEBACK)
  await expect(d._callmethod('not_a_method')).rejects.toBeInstanceOf(RemoteError);
  expect(await d.len()).toBe(0);

  // reference counting: every proxy released, the server holds what it held before
  expect(await m._numberOfObjects()).toBe(n0 + new Set(proxies.map((p) => p._token.id)).size);
  for (const p of proxies) await p._decref();
  expect(await m._numberOfObjects()).toBe(n0);
}
