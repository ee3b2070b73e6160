/**
 * The `Pool` typeid of a billiard-ts manager server: a billiard-ts Pool
 * owned by the server, driven by clients through `PoolProxy` (spec
 * manager.md §6). Its workers are Node processes, so the functions it runs
 * are JavaScript exports named by their module URL (what a billiard-ts
 * client's `PoolProxy` sends for a function); a Python function (a Python
 * client's `pow`) gets a `#TRACEBACK` saying a Node server cannot run it.
 *
 * A client may name any module on the server's machine: like CPython's
 * manager Pool (which unpickles and runs what authenticated clients send),
 * it runs code for anyone holding the authkey.
 */

import { PyGlobal } from '../pickle/index.js';
import { Pool, type ApplyResult } from '../pool/index.js';
import { bind, Managed, ManagedIterator, ServerTraceback } from './objects.js';
import { entriesOf, pyError, pyTypeName } from './pyvalues.js';

function func(v: unknown): PyGlobal {
  if (!(v instanceof PyGlobal)) throw pyError('TypeError', `a Pool task must be a function, not ${pyTypeName(v)}`);
  if (!/^(file|data|node):/.test(v.module)) {
    throw new ServerTraceback('TypeError', `${v.module}.${v.name} is a Python function: a billiard-ts manager's Pool runs JavaScript functions (exports named by module URL) in Node workers`);
  }
  return v;
}

function items(v: unknown, what: string): unknown[] {
  if (Array.isArray(v)) return [...(v as unknown[])];
  if (v instanceof Set) return [...v];
  throw pyError('TypeError', `'${pyTypeName(v)}' object is not iterable (${what})`);
}

function kwdsOf(v: unknown): Record<string, unknown> {
  if (v === null || v === undefined) return {};
  const e = entriesOf(v);
  if (e === null) throw pyError('TypeError', `kwds must be a dict, not ${pyTypeName(v)}`);
  return Object.fromEntries(e) as Record<string, unknown>;
}

function chunks(v: unknown): number | undefined {
  if (v === null || v === undefined) return undefined;
  if (typeof v !== 'number' || !Number.isInteger(v) || v < 1) throw pyError('ValueError', `chunksize must be a positive integer, not ${String(v)}`);
  return v;
}

function noCallbacks(callback: unknown, errorCallback: unknown): void {
  if ((callback ?? null) !== null || (errorCallback ?? null) !== null) throw pyError('TypeError', "a manager's Pool takes no callbacks: they would have to run in the server");
}

/** `apply_async`'s result on the server (the AsyncResult typeid): `get`, `ready`, `successful`, `wait`. */
export class ManagedAsyncResult extends Managed {
  readonly pyTypeName = 'ApplyResult';
  readonly exposed = ['get', 'ready', 'successful', 'wait'];
  readonly #r: ApplyResult<unknown>;

  constructor(r: ApplyResult<unknown>) {
    super();
    this.#r = r;
    r.then(undefined, () => undefined); // a failure is the client's to collect with get()
  }

  pyCall(name: string, args: readonly unknown[], kwds: Record<string, unknown>): unknown {
    switch (name) {
      case 'get':
        return this.#r.get(bind(name, [['timeout', null]], args, kwds)[0] as number | null);
      case 'wait':
        return this.#r.wait(bind(name, [['timeout', null]], args, kwds)[0] as number | null).then(() => null);
      case 'ready':
        bind(name, [], args, kwds);
        return this.#r.ready();
      case 'successful':
        bind(name, [], args, kwds);
        if (!this.#r.ready()) throw pyError('ValueError', `${String(this.#r)} not ready`);
        return this.#r.successful();
    }
    throw pyError('AttributeError', `'ApplyResult' object has no attribute '${name}'`);
  }
}

/** Python's `Pool(processes=None, initializer=None, initargs=(), maxtasksperchild=None)` on a Node server. */
export class ManagedPool extends Managed {
  readonly pyTypeName = 'Pool';
  readonly exposed = ['apply', 'apply_async', 'close', 'imap', 'imap_unordered', 'join', 'map', 'map_async', 'starmap', 'starmap_async', 'terminate', 'apply_async', 'map_async', 'starmap_async', 'imap', 'imap_unordered'];
  readonly pool: Pool;

  constructor(args: readonly unknown[], kwds: Record<string, unknown>) {
    super();
    const [processes, initializer, initargs, maxtasksperchild] = bind('Pool', [['processes', null], ['initializer', null], ['initargs', []], ['maxtasksperchild', null]], args, kwds);
    this.pool = new Pool({
      processes: processes as number | null,
      initializer: initializer === null ? null : func(initializer),
      initargs: items(initargs, 'initargs'),
      maxtasksperchild: maxtasksperchild as number | null,
    });
  }

  pyCall(name: string, args: readonly unknown[], kwds: Record<string, unknown>): unknown {
    const p = this.pool;
    switch (name) {
      case 'apply': {
        const [f, a, k] = bind(name, [['func'], ['args', []], ['kwds', null]], args, kwds);
        return p.apply(func(f), items(a, 'args'), { kwds: kwdsOf(k) });
      }
      case 'apply_async': {
        const [f, a, k, cb, ecb] = bind(name, [['func'], ['args', []], ['kwds', null], ['callback', null], ['error_callback', null]], args, kwds);
        noCallbacks(cb, ecb);
        return new ManagedAsyncResult(p.applyAsync(func(f), items(a, 'args'), { kwds: kwdsOf(k) }));
      }
      case 'map':
      case 'starmap': {
        const [f, it, cs] = bind(name, [['func'], ['iterable'], ['chunksize', null]], args, kwds);
        const list = items(it, 'iterable');
        return name === 'map' ? p.map(func(f), list, { chunksize: chunks(cs) }) : p.starmap(func(f), list.map((x) => items(x, 'starmap item')) as never, { chunksize: chunks(cs) });
      }
      case 'map_async':
      case 'starmap_async': {
        const [f, it, cs, cb, ecb] = bind(name, [['func'], ['iterable'], ['chunksize', null], ['callback', null], ['error_callback', null]], args, kwds);
        noCallbacks(cb, ecb);
        const list = items(it, 'iterable');
        const r = name === 'map_async' ? p.mapAsync(func(f), list, { chunksize: chunks(cs) }) : p.starmapAsync(func(f), list.map((x) => items(x, 'starmap item')) as never, { chunksize: chunks(cs) });
        return new ManagedAsyncResult(r as ApplyResult<unknown>);
      }
      case 'imap':
      case 'imap_unordered': {
        const [f, it, cs] = bind(name, [['func'], ['iterable'], ['chunksize', 1]], args, kwds);
        const list = items(it, 'iterable');
        const iter = name === 'imap' ? p.imap(func(f), list, { chunksize: chunks(cs) }) : p.imapUnordered(func(f), list, { chunksize: chunks(cs) });
        return new ManagedIterator(iter);
      }
      case 'close':
        bind(name, [], args, kwds);
        p.close();
        return null;
      case 'join':
        bind(name, [], args, kwds);
        return p.join().then(() => null);
      case 'terminate':
        bind(name, [], args, kwds);
        return p.terminate().then(() => null);
    }
    throw pyError('AttributeError', `'Pool' object has no attribute '${name}'`);
  }

  override pyDispose(): void {
    void this.pool.terminate().catch(() => undefined);
  }
}
