/**
 * Proxies (spec/manager.md §2.4-§2.5, §4.2, §6.2, §7): client-side handles
 * of objects a manager holds. Every method is a remote call and returns a
 * Promise. A proxy owns one reference on the server: `incref` when it is
 * made, `decref` when it is released (`await proxy._decref()`,
 * `await using`, or when it is garbage-collected).
 *
 * Python's operator methods get names (spec/api.md §18.2): `__getitem__`
 * is `getItem`, `__setitem__` `setItem`, `__delitem__` `delItem`,
 * `__contains__` `contains`, `__len__` `len`, `__iter__` the async
 * iterator, `__next__` `next`; other names are camelCased (`get_nowait` is
 * `getNowait`). `_callmethod(name, args, kwds)` calls any exposed name as is.
 */

import type { Address, DigestName } from '../connection/index.js';
import { defaultRegistry, PyGlobal, PySlice, PythonException, tuple, type ReduceValue } from '../pickle/index.js';
import type { LoadLimits } from '../pickle/unpickler.js';
import { AuthenticationString, currentProcess } from '../process/index.js';
import { addExitHook } from '../process/exit-hooks.js';
import { addSpawnReducers } from '../process/reduction.js';
import { Channel, controlCall, poolFor, unwrap, type CallOptions, type Endpoint, type Reply, type ServingPool } from './client.js';
import { GETVALUE, PROXY, type Kwds } from './protocol.js';
import { localReferent } from './local.js';
import { addressKey, MP_MODULE, Token, wireAddress, type ManagersModule } from './token.js';
import { optionNames, optionsRejection } from '../connection/options.js';

/** What a proxy needs of the manager that made it. */
export interface ProxyManager {
  readonly address: Address | null;
  readonly authkey: Uint8Array;
  readonly digest: DigestName | 'legacy' | undefined;
  /** Limits on loading the server's replies (the manager's loadLimits), if any. */
  readonly loadLimits?: Readonly<LoadLimits>;
  /** True once the manager was shut down: released proxies then send nothing. */
  readonly isShutDown: boolean;
  /** The proxy type registered for `typeid`, if any. */
  proxyTypeFor(typeid: string): ProxyType | undefined;
}

/** Options of a proxy's constructor (Python's `BaseProxy(token, serializer, manager, authkey, exposed, incref)`). */
export interface ProxyOptions {
  manager?: ProxyManager | null;
  /** The manager's key; defaults to the manager's, else this process's authkey. */
  authkey?: Uint8Array | null;
  /** The server's exposed names (AutoProxy builds its methods from them). */
  exposed?: readonly string[] | null;
  /** Send `incref` (default true). */
  incref?: boolean;
  /** The handshake's challenge form; defaults to the manager's. */
  digest?: DigestName | 'legacy';
}

/** A proxy class, or the AutoProxy factory. */
export type ProxyType = (new (token: Token, options?: ProxyOptions) => BaseProxy) | AutoProxyFactory;

export interface AutoProxyFactory {
  (token: Token, options?: ProxyOptions): BaseProxy;
  readonly isAutoProxy: true;
}

/** Python names of the operator methods and their JS names. */
const DUNDER_NAMES: Record<string, string> = {
  __getitem__: 'getItem',
  __setitem__: 'setItem',
  __delitem__: 'delItem',
  __contains__: 'contains',
  __len__: 'len',
  __next__: 'next',
  __getattribute__: 'getAttribute',
  __setattr__: 'setAttr',
  __delattr__: 'delAttr',
};

/** The JS name of an exposed Python method name. */
export function jsMethodName(name: string): string {
  const d = DUNDER_NAMES[name];
  if (d !== undefined) return d;
  if (name.startsWith('__')) return name;
  return name.replace(/_+([a-z0-9])/g, (_m, c: string) => c.toUpperCase());
}

interface Held {
  endpoint: Endpoint;
  id: string;
  pool: ServingPool;
  manager: ProxyManager | null;
}

function sendDecref(h: Held): Promise<void> {
  if (h.manager?.isShutDown === true) return Promise.resolve();
  return controlCall(h.endpoint, 'decref', [h.id]).then(
    () => undefined,
    () => undefined, // Python swallows a failed decref too (logged at debug level).
  );
}

const finalizer = new FinalizationRegistry<Held>((h) => {
  void sendDecref(h).finally(() => h.pool.removeUser());
});

/** Live proxies of this process, released (decref) when the event loop is about to empty, as Python's exit finalizers do. */
const live = new Set<WeakRef<BaseProxy>>();
let exitHookInstalled = false;

/** Releases every live proxy of this process (decref each). */
async function releaseAll(): Promise<void> {
  const all = [...live].map((r) => r.deref()).filter((p): p is BaseProxy => p !== undefined && !p.disposed);
  live.clear();
  await Promise.all(all.map((p) => p._decref().catch(() => undefined)));
}

function installExitHook(): void {
  if (exitHookInstalled) return;
  exitHookInstalled = true;
  // A main process whose event loop empties, and a child whose target returned, release their proxies first.
  process.on('beforeExit', () => void releaseAll());
  addExitHook(releaseAll);
}

let proxyCount = 0;

/**
 * The base of every proxy: its token, its manager, its reference, and
 * `_callmethod`.
 */
export class BaseProxy {
  /** The Python class this proxy pickles as (`RebuildProxy(<module>.<pyName>, ...)`). */
  static readonly pyName: string = 'BaseProxy';
  /** Whether calls use one connection of this proxy's own (RLock, Condition: the server's owner is the connection). */
  static readonly ownConnection: boolean = false;

  readonly _token: Token;
  readonly _serializer = 'pickle';
  readonly _manager: ProxyManager | null;
  readonly _authkey: Uint8Array;
  /** The names the server exposes for this object (from `create`), when known. */
  readonly _exposed: readonly string[] | null;
  /** @internal */
  readonly _endpoint: Endpoint;
  readonly #pool: ServingPool;
  #channel: Channel | null = null;
  #ready: Promise<void>;
  #released = false;
  #owns = false;
  readonly #serial = ++proxyCount;
  readonly #ref = new WeakRef(this);

  constructor(token: Token, options?: ProxyOptions) {
    if (!(token instanceof Token)) throw new TypeError('a proxy needs a Token');
    this._token = token;
    this._manager = options?.manager ?? null;
    this._authkey = options?.authkey ?? this._manager?.authkey ?? currentProcess().authkey;
    this._exposed = options?.exposed ?? null;
    this._endpoint = { address: token.address, authkey: this._authkey, digest: options?.digest ?? this._manager?.digest, loadLimits: this._manager?.loadLimits };
    this.#pool = poolFor(this._endpoint);
    if ((this.constructor as typeof BaseProxy).ownConnection) this.#channel = this.#pool.channel();
    if (options?.incref === false) {
      this.#ready = Promise.resolve();
    } else {
      this.#ready = this._incref();
      this.#ready.catch(() => undefined);
    }
  }

  /** Settles once the proxy's `incref` is done (rejects if it failed). Named with `_` so that it never hides an exposed method (an AsyncResult's `ready`). */
  get _ready(): Promise<void> {
    return this.#ready;
  }

  /** True once its reference was released (`_decref`). */
  get disposed(): boolean {
    return this.#released;
  }

  /** Python's `_incref`: one more reference on the server, released with this proxy. */
  async _incref(): Promise<void> {
    await controlCall(this._endpoint, 'incref', [this._token.id]);
    if (this.#owns) return;
    this.#owns = true;
    this.#pool.addUser();
    finalizer.register(this, { endpoint: this._endpoint, id: this._token.id, pool: this.#pool, manager: this._manager }, this);
    live.add(this.#ref);
    installExitHook();
  }

  /**
   * Python's `_decref`, done once: releases this proxy's reference (also
   * what `await using` and garbage collection do). Calls fail afterwards.
   */
  async _decref(): Promise<void> {
    if (this.#released) return;
    this.#released = true;
    live.delete(this.#ref);
    this.#channel?.close();
    try {
      await this.#ready;
    } catch {
      return;
    }
    if (!this.#owns) return;
    finalizer.unregister(this);
    const held: Held = { endpoint: this._endpoint, id: this._token.id, pool: this.#pool, manager: this._manager };
    try {
      await sendDecref(held);
    } finally {
      this.#pool.removeUser();
    }
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this._decref();
  }

  /**
   * Python's `_callmethod`: calls `methodname` on the referent and returns
   * its result; a `#PROXY` reply becomes a new proxy, an `#ERROR` reply
   * throws the server's exception, `#TRACEBACK` a {@link RemoteError}.
   */
  async _callmethod(methodname: string, args: readonly unknown[] = [], kwds?: Kwds | null, options?: CallOptions): Promise<unknown> {
    if (this.#released) throw new Error(`this ${this.constructor.name} was disposed (its reference released)`);
    await this.#ready;
    const via = this.#channel ?? this.#pool;
    const reply = await via.call(this._token.id, methodname, args, kwds, options);
    if (reply[0] === PROXY) return this.#proxyFrom(reply);
    return unwrap(reply);
  }

  async #proxyFrom(reply: Reply): Promise<BaseProxy> {
    const payload = reply[1];
    const token = Array.isArray(payload) ? (payload[1] as unknown) : undefined;
    if (!Array.isArray(payload) || payload.length !== 2 || !(token instanceof Token)) throw new TypeError('malformed #PROXY reply');
    const exposed = Array.isArray(payload[0]) ? (payload[0] as string[]) : null;
    // The address inside is the server's own idea of it; calls go where this proxy's went (spec §2.5).
    token.address = this._token.address;
    const endpoint = this._endpoint;
    try {
      const type = this._manager?.proxyTypeFor(token.typeid) ?? builtinProxyType(token.typeid);
      const proxy = makeProxy(type, token, { manager: this._manager, authkey: this._authkey, exposed, digest: endpoint.digest });
      await proxy._ready;
      return proxy;
    } finally {
      // Release the reference the server's create took, whatever happened (or the object leaks).
      await controlCall(endpoint, 'decref', [token.id]).catch(() => undefined);
    }
  }

  /** Python's `_getvalue()`: a copy of the referent. */
  _getvalue(): Promise<unknown> {
    return this._callmethod(GETVALUE);
  }

  /** Python's `str(proxy)`: the referent's repr, from the server. */
  str(): Promise<string> {
    return this._callmethod('__repr__') as Promise<string>;
  }

  toString(): string {
    return `<${this.constructor.name} object, typeid ${JSON.stringify(this._token.typeid)} at 0x${this.#serial.toString(16)}>`;
  }
}

function rebuildReduce(p: BaseProxy, withAuthkey: boolean): ReduceValue {
  const module: ManagersModule = p._token.module;
  const cls = p.constructor as typeof BaseProxy;
  const kwds: Record<string, unknown> = Object.create(null);
  let func: PyGlobal;
  if (cls.pyName === 'AutoProxy' || isAuto(p)) {
    func = new PyGlobal(module, 'AutoProxy');
    kwds.exposed = tuple(...(p._exposed ?? []));
  } else {
    func = new PyGlobal(module, cls.pyName);
  }
  if (withAuthkey) kwds.authkey = new AuthenticationString(p._authkey);
  const token = new Token(p._token.typeid, wireAddress(p._token.address), p._token.id, module);
  return { callable: new PyGlobal(module, 'RebuildProxy'), args: [func, token, 'pickle', kwds] };
}

const kAuto = Symbol('billiard-ts.managers.auto');

function isAuto(p: BaseProxy): boolean {
  return (p as unknown as Record<symbol, unknown>)[kAuto] === true;
}

// ------------------------------------------------------------------ AutoProxy

const autoClasses = new Map<string, new (token: Token, options?: ProxyOptions) => BaseProxy>();

/** Python's `MakeProxyType(name, exposed)`: a proxy class with one forwarding method per exposed name. */
export function MakeProxyType(name: string, exposed: readonly string[]): new (token: Token, options?: ProxyOptions) => BaseProxy {
  const key = `${name}\n${[...exposed].join('\n')}`;
  const hit = autoClasses.get(key);
  if (hit) return hit;
  const cls = { [name]: class extends BaseProxy {} }[name]!;
  Object.defineProperty(cls, 'pyName', { value: 'AutoProxy' });
  for (const py of new Set(exposed)) {
    const js = jsMethodName(py);
    if (js in BaseProxy.prototype || js === 'constructor') continue;
    Object.defineProperty(cls.prototype, js, {
      value: function (this: BaseProxy, ...args: unknown[]) {
        return this._callmethod(py, args);
      },
      writable: true,
      configurable: true,
    });
  }
  Object.defineProperty(cls.prototype, kAuto, { value: true });
  autoClasses.set(key, cls);
  return cls;
}

/**
 * Python's `AutoProxy`: a proxy whose methods are the server's exposed
 * names (from `create`, or asked with `get_methods`). Methods are
 * `(...args) => Promise`; keyword arguments go through `_callmethod`.
 */
export const AutoProxy: AutoProxyFactory = Object.assign(
  function AutoProxy(token: Token, options?: ProxyOptions): BaseProxy {
    const exposed = options?.exposed ?? [];
    const Cls = MakeProxyType(`AutoProxy[${token.typeid}]`, exposed);
    return new Cls(token, { ...options, exposed });
  },
  { isAutoProxy: true as const },
);

/** Makes a proxy of `type` (a class, or AutoProxy). */
export function makeProxy(type: ProxyType, token: Token, options?: ProxyOptions): BaseProxy {
  if ((type as AutoProxyFactory).isAutoProxy === true) return (type as AutoProxyFactory)(token, options);
  return new (type as new (token: Token, options?: ProxyOptions) => BaseProxy)(token, options);
}

/** Asks a server for an object's exposed names (`get_methods`), for an AutoProxy made without them. */
export async function getMethods(endpoint: Endpoint, token: Token): Promise<string[]> {
  const r = await controlCall(endpoint, 'get_methods', [token]);
  return [...(r as string[])];
}

// ------------------------------------------------------------------ typed proxies

function timeoutArgs(timeout: number | null | undefined): unknown[] {
  return [timeout ?? null];
}

/** Options of `acquire`. */
export interface ProxyAcquireOptions extends CallOptions {
  /** false: fail at once (resolve false) when not free. Default true. */
  block?: boolean;
  /** Seconds to wait (null: for ever); only when `block`. */
  timeout?: number | null;
}

const PROXY_ACQUIRE_OPTIONS = optionNames<ProxyAcquireOptions>()({ block: 1, timeout: 1, signal: 1 });

/** Proxies of Lock, RLock, Semaphore and BoundedSemaphore (Python's AcquirerProxy). */
export class AcquirerProxy extends BaseProxy {
  static override readonly pyName: string = 'AcquirerProxy';

  /** `acquire(blocking=True, timeout=None)`: sent as `(blocking,)` or `(blocking, timeout)`, as Python's proxy does. */
  acquire(options?: ProxyAcquireOptions): Promise<boolean> {
    const bad = optionsRejection(options, PROXY_ACQUIRE_OPTIONS, 'AcquirerProxy.acquire()');
    if (bad !== null) return bad;
    const block = options?.block ?? true;
    const args = options?.timeout === undefined || options.timeout === null ? [block] : [block, options.timeout];
    return this._callmethod('acquire', args, null, options) as Promise<boolean>;
  }

  release(): Promise<void> {
    return this._callmethod('release') as Promise<never>;
  }

  /** `locked()` (servers of CPython 3.14 and billiard-ts). */
  locked(): Promise<boolean> {
    return this._callmethod('locked') as Promise<boolean>;
  }
}

/** A proxy of an RLock: like AcquirerProxy, on a connection of its own, since the server's owner of an RLock is the connection (a Python thread). */
export class RLockProxy extends AcquirerProxy {
  static override readonly ownConnection: boolean = true;
}

/** Proxies of Condition (Python's ConditionProxy): on a connection of their own, as the condition's lock is owned by it. */
export class ConditionProxy extends AcquirerProxy {
  static override readonly pyName: string = 'ConditionProxy';
  static override readonly ownConnection: boolean = true;

  /** `wait(timeout=None)`: true when notified, false on timeout. */
  wait(timeout?: number | null): Promise<boolean> {
    return this._callmethod('wait', timeoutArgs(timeout)) as Promise<boolean>;
  }

  /** `notify(n=1)`, sent as `(n,)` (billiard's own server takes no argument: pass none to it). */
  notify(n?: number): Promise<void> {
    return this._callmethod('notify', n === undefined ? [] : [n]) as Promise<void>;
  }

  notifyAll(): Promise<void> {
    return this._callmethod('notify_all') as Promise<void>;
  }

  /** `wait_for(predicate, timeout=None)`: evaluated here, with repeated `wait` calls, as Python's proxy does. */
  async waitFor<T>(predicate: () => T | Promise<T>, timeout?: number | null): Promise<T> {
    let result = await predicate();
    if (result) return result;
    const end = timeout === undefined || timeout === null ? null : performance.now() + timeout * 1000;
    let left: number | null = timeout ?? null;
    while (!result) {
      if (end !== null) {
        left = (end - performance.now()) / 1000;
        if (left <= 0) break;
      }
      await this.wait(left);
      result = await predicate();
    }
    return result;
  }
}

/** Proxies of Event. */
export class EventProxy extends BaseProxy {
  static override readonly pyName: string = 'EventProxy';
  isSet(): Promise<boolean> {
    return this._callmethod('is_set') as Promise<boolean>;
  }
  set(): Promise<void> {
    return this._callmethod('set') as Promise<void>;
  }
  clear(): Promise<void> {
    return this._callmethod('clear') as Promise<void>;
  }
  /** `wait(timeout=None)`: the timeout is always sent, as Python's proxy does. */
  wait(timeout?: number | null, options?: CallOptions): Promise<boolean> {
    return this._callmethod('wait', timeoutArgs(timeout), null, options) as Promise<boolean>;
  }
}

/** Proxies of Barrier. */
export class BarrierProxy extends BaseProxy {
  static override readonly pyName: string = 'BarrierProxy';
  wait(timeout?: number | null, options?: CallOptions): Promise<number> {
    return this._callmethod('wait', timeoutArgs(timeout), null, options) as Promise<number>;
  }
  abort(): Promise<void> {
    return this._callmethod('abort') as Promise<void>;
  }
  reset(): Promise<void> {
    return this._callmethod('reset') as Promise<void>;
  }
  parties(): Promise<number> {
    return this._callmethod('__getattribute__', ['parties']) as Promise<number>;
  }
  nWaiting(): Promise<number> {
    return this._callmethod('__getattribute__', ['n_waiting']) as Promise<number>;
  }
  broken(): Promise<boolean> {
    return this._callmethod('__getattribute__', ['broken']) as Promise<boolean>;
  }
}

/** Proxies of Namespace: attributes read, set and deleted remotely. */
export class NamespaceProxy extends BaseProxy {
  static override readonly pyName: string = 'NamespaceProxy';
  get(name: string): Promise<unknown> {
    return this._callmethod('__getattribute__', [name]);
  }
  set(name: string, value: unknown): Promise<void> {
    return this._callmethod('__setattr__', [name, value]) as Promise<void>;
  }
  delete(name: string): Promise<void> {
    return this._callmethod('__delattr__', [name]) as Promise<void>;
  }
}

/** Proxies of Value. */
export class ValueProxy<T = unknown> extends BaseProxy {
  static override readonly pyName: string = 'ValueProxy';
  get(): Promise<T> {
    return this._callmethod('get') as Promise<T>;
  }
  set(value: T): Promise<void> {
    return this._callmethod('set', [value]) as Promise<void>;
  }
}

/** Proxies of Array (an `array.array` on the server). */
export class ArrayProxy extends BaseProxy {
  static override readonly pyName: string = 'ArrayProxy';
  len(): Promise<number> {
    return this._callmethod('__len__') as Promise<number>;
  }
  getItem(i: number | PySlice): Promise<unknown> {
    return this._callmethod('__getitem__', [i]);
  }
  setItem(i: number | PySlice, value: unknown): Promise<void> {
    return this._callmethod('__setitem__', [i, value]) as Promise<void>;
  }
}

function isIndexError(e: unknown): boolean {
  return e instanceof PythonException && e.pyName === 'IndexError';
}

function isStopIteration(e: unknown): boolean {
  return e instanceof PythonException && e.pyName === 'StopIteration';
}

/** Proxies of list. `for await (const x of list)` reads items one by one, as Python's iteration does. */
export class ListProxy<T = unknown> extends BaseProxy {
  static override readonly pyName: string = 'ListProxy';
  len(): Promise<number> {
    return this._callmethod('__len__') as Promise<number>;
  }
  getItem(i: number | PySlice): Promise<T> {
    return this._callmethod('__getitem__', [i]) as Promise<T>;
  }
  /** `l[a:b]` (step optional). */
  slice(start: number | null, stop: number | null, step: number | null = null): Promise<T[]> {
    return this._callmethod('__getitem__', [new PySlice(start, stop, step)]) as Promise<T[]>;
  }
  setItem(i: number | PySlice, value: unknown): Promise<void> {
    return this._callmethod('__setitem__', [i, value]) as Promise<void>;
  }
  delItem(i: number | PySlice): Promise<void> {
    return this._callmethod('__delitem__', [i]) as Promise<void>;
  }
  contains(value: unknown): Promise<boolean> {
    return this._callmethod('__contains__', [value]) as Promise<boolean>;
  }
  append(value: T): Promise<void> {
    return this._callmethod('append', [value]) as Promise<void>;
  }
  /** Also Python's `l += items`. */
  extend(items: Iterable<T>): Promise<void> {
    return this._callmethod('extend', [[...items]]) as Promise<void>;
  }
  insert(i: number, value: T): Promise<void> {
    return this._callmethod('insert', [i, value]) as Promise<void>;
  }
  pop(i?: number): Promise<T> {
    return this._callmethod('pop', i === undefined ? [] : [i]) as Promise<T>;
  }
  remove(value: T): Promise<void> {
    return this._callmethod('remove', [value]) as Promise<void>;
  }
  index(value: T, start?: number, stop?: number): Promise<number> {
    const args: unknown[] = [value];
    if (start !== undefined) args.push(start);
    if (stop !== undefined) args.push(stop);
    return this._callmethod('index', args) as Promise<number>;
  }
  count(value: T): Promise<number> {
    return this._callmethod('count', [value]) as Promise<number>;
  }
  reverse(): Promise<void> {
    return this._callmethod('reverse') as Promise<void>;
  }
  /** `sort(reverse=...)` (a key function cannot travel to a server). */
  sort(options?: { reverse?: boolean }): Promise<void> {
    return this._callmethod('sort', [], options?.reverse === undefined ? null : { reverse: options.reverse }) as Promise<void>;
  }
  /** `l + other`: a new list (not a proxy). */
  add(other: Iterable<T>): Promise<T[]> {
    return this._callmethod('__add__', [[...other]]) as Promise<T[]>;
  }
  /** `l * n`: a new list. */
  mul(n: number): Promise<T[]> {
    return this._callmethod('__mul__', [n]) as Promise<T[]>;
  }
  /** `l *= n`: repeats the shared list in place; resolves to this proxy, as Python's does. */
  async imul(n: number): Promise<this> {
    await this._callmethod('__imul__', [n]);
    return this;
  }
  async *[Symbol.asyncIterator](): AsyncGenerator<T, void, undefined> {
    for (let i = 0; ; i++) {
      let v: T;
      try {
        v = await this.getItem(i);
      } catch (e) {
        if (isIndexError(e)) return;
        throw e;
      }
      yield v;
    }
  }
}

/** Proxies of an iterator on the server (what `dict.__iter__` and `Pool.imap` return). */
export class IteratorProxy<T = unknown> extends BaseProxy implements AsyncIterator<T> {
  static override readonly pyName: string = 'IteratorProxy';
  /** `__next__`: the next item, or done at the server's StopIteration. */
  async next(): Promise<IteratorResult<T, undefined>> {
    try {
      return { value: (await this._callmethod('__next__')) as T, done: false };
    } catch (e) {
      if (isStopIteration(e)) return { value: undefined, done: true };
      throw e;
    }
  }
  send(value: unknown): Promise<T> {
    return this._callmethod('send', [value]) as Promise<T>;
  }
  throw(value: unknown): Promise<never> {
    return this._callmethod('throw', [value]) as Promise<never>;
  }
  close(): Promise<void> {
    return this._callmethod('close') as Promise<void>;
  }
  [Symbol.asyncIterator](): AsyncIterator<T> {
    return this;
  }
}

/** Proxies of dict. Iteration uses `__iter__` where the server exposes it, else `keys()` (billiard's server has no `__iter__`). */
export class DictProxy<K = unknown, V = unknown> extends BaseProxy {
  static override readonly pyName: string = 'DictProxy';
  len(): Promise<number> {
    return this._callmethod('__len__') as Promise<number>;
  }
  getItem(key: K): Promise<V> {
    return this._callmethod('__getitem__', [key]) as Promise<V>;
  }
  setItem(key: K, value: V): Promise<void> {
    return this._callmethod('__setitem__', [key, value]) as Promise<void>;
  }
  delItem(key: K): Promise<void> {
    return this._callmethod('__delitem__', [key]) as Promise<void>;
  }
  contains(key: K): Promise<boolean> {
    return this._callmethod('__contains__', [key]) as Promise<boolean>;
  }
  get(key: K, defaultValue: V | null = null): Promise<V | null> {
    return this._callmethod('get', [key, defaultValue]) as Promise<V | null>;
  }
  /** The keys, as a list (dict views travel as lists). */
  keys(): Promise<K[]> {
    return this._callmethod('keys') as Promise<K[]>;
  }
  values(): Promise<V[]> {
    return this._callmethod('values') as Promise<V[]>;
  }
  /** The items, as `[key, value]` pairs (Python tuples). */
  items(): Promise<Array<readonly [K, V]>> {
    return this._callmethod('items') as Promise<Array<readonly [K, V]>>;
  }
  /** `update(other)`: a plain object, a Map or pairs. */
  update(other: unknown): Promise<void> {
    return this._callmethod('update', [other]) as Promise<void>;
  }
  pop(key: K, ...defaultValue: [V?]): Promise<V> {
    return this._callmethod('pop', [key, ...defaultValue]) as Promise<V>;
  }
  popitem(): Promise<readonly [K, V]> {
    return this._callmethod('popitem') as Promise<readonly [K, V]>;
  }
  setdefault(key: K, defaultValue: V | null = null): Promise<V> {
    return this._callmethod('setdefault', [key, defaultValue]) as Promise<V>;
  }
  /** A copy of the dict, by value. */
  copy(): Promise<unknown> {
    return this._callmethod('copy');
  }
  clear(): Promise<void> {
    return this._callmethod('clear') as Promise<void>;
  }
  async *[Symbol.asyncIterator](): AsyncGenerator<K, void, undefined> {
    if (this._exposed !== null && !this._exposed.includes('__iter__')) {
      yield* await this.keys();
      return;
    }
    const it = (await this._callmethod('__iter__')) as BaseProxy;
    try {
      if (!(it instanceof IteratorProxy)) throw new TypeError('__iter__ did not return an iterator proxy');
      for (;;) {
        const r = await it.next();
        if (r.done === true) return;
        yield r.value as K;
      }
    } finally {
      await it._decref();
    }
  }
}

/** Options of a queue proxy's `put`. */
export interface ProxyPutOptions extends CallOptions {
  block?: boolean;
  timeout?: number | null;
}

const PROXY_PUT_OPTIONS = optionNames<ProxyPutOptions>()({ block: 1, timeout: 1, signal: 1 });

/** Proxies of Queue and JoinableQueue (AutoProxy in Python, with the names of `queue.Queue`). */
export class QueueProxy<T = unknown> extends BaseProxy {
  static override readonly pyName: string = 'AutoProxy';
  put(item: T, options?: ProxyPutOptions): Promise<void> {
    const bad = optionsRejection(options, PROXY_PUT_OPTIONS, 'QueueProxy.put()');
    if (bad !== null) return bad;
    const args = options?.block === undefined && (options?.timeout ?? null) === null ? [item] : [item, options?.block ?? true, options?.timeout ?? null];
    return this._callmethod('put', args, null, options) as Promise<void>;
  }
  get(options?: ProxyPutOptions): Promise<T> {
    const bad = optionsRejection(options, PROXY_PUT_OPTIONS, 'QueueProxy.get()');
    if (bad !== null) return bad;
    const args = options?.block === undefined && (options?.timeout ?? null) === null ? [] : [options?.block ?? true, options?.timeout ?? null];
    return this._callmethod('get', args, null, options) as Promise<T>;
  }
  putNowait(item: T): Promise<void> {
    return this._callmethod('put_nowait', [item]) as Promise<void>;
  }
  getNowait(): Promise<T> {
    return this._callmethod('get_nowait') as Promise<T>;
  }
  qsize(): Promise<number> {
    return this._callmethod('qsize') as Promise<number>;
  }
  empty(): Promise<boolean> {
    return this._callmethod('empty') as Promise<boolean>;
  }
  full(): Promise<boolean> {
    return this._callmethod('full') as Promise<boolean>;
  }
  taskDone(): Promise<void> {
    return this._callmethod('task_done') as Promise<void>;
  }
  join(options?: CallOptions): Promise<void> {
    return this._callmethod('join', [], null, options) as Promise<void>;
  }
}

/** A function a manager's Pool runs: `pyfunc('mod.f')` for a Python server; an exported JS function for a billiard-ts server. */
export type PoolFunc = PyGlobal | ((...args: never[]) => unknown);

let funcRefOf: ((fn: unknown) => PyGlobal) | null = null;
/** @internal the pool layer's function references (set by the manager module, which may import the pool). */
export function setFuncRef(f: (fn: unknown) => PyGlobal): void {
  funcRefOf = f;
}

function ref(fn: PoolFunc): PyGlobal {
  if (fn instanceof PyGlobal) return fn;
  if (funcRefOf === null) throw new TypeError('a JS function needs the pool layer to travel');
  return funcRefOf(fn);
}

/** Proxies of a manager's Pool: `*Async` methods give AsyncResult proxies, `imap*` iterator proxies. */
export class PoolProxy extends BaseProxy {
  static override readonly pyName: string = 'PoolProxy';
  apply(fn: PoolFunc, args: readonly unknown[] = [], kwds?: Kwds): Promise<unknown> {
    return this._callmethod('apply', [ref(fn), tuple(...args), kwds ?? Object.create(null)]);
  }
  applyAsync(fn: PoolFunc, args: readonly unknown[] = [], kwds?: Kwds): Promise<BaseProxy & AsyncResultMethods> {
    return this._callmethod('apply_async', [ref(fn), tuple(...args), kwds ?? Object.create(null)]) as Promise<BaseProxy & AsyncResultMethods>;
  }
  map(fn: PoolFunc, items: Iterable<unknown>, chunksize?: number): Promise<unknown[]> {
    return this._callmethod('map', chunksize === undefined ? [ref(fn), [...items]] : [ref(fn), [...items], chunksize]) as Promise<unknown[]>;
  }
  mapAsync(fn: PoolFunc, items: Iterable<unknown>, chunksize?: number): Promise<BaseProxy & AsyncResultMethods> {
    return this._callmethod('map_async', chunksize === undefined ? [ref(fn), [...items]] : [ref(fn), [...items], chunksize]) as Promise<BaseProxy & AsyncResultMethods>;
  }
  starmap(fn: PoolFunc, items: Iterable<readonly unknown[]>, chunksize?: number): Promise<unknown[]> {
    const list = [...items].map((a) => tuple(...a));
    return this._callmethod('starmap', chunksize === undefined ? [ref(fn), list] : [ref(fn), list, chunksize]) as Promise<unknown[]>;
  }
  starmapAsync(fn: PoolFunc, items: Iterable<readonly unknown[]>, chunksize?: number): Promise<BaseProxy & AsyncResultMethods> {
    const list = [...items].map((a) => tuple(...a));
    return this._callmethod('starmap_async', chunksize === undefined ? [ref(fn), list] : [ref(fn), list, chunksize]) as Promise<BaseProxy & AsyncResultMethods>;
  }
  imap(fn: PoolFunc, items: Iterable<unknown>, chunksize?: number): Promise<IteratorProxy> {
    return this._callmethod('imap', chunksize === undefined ? [ref(fn), [...items]] : [ref(fn), [...items], chunksize]) as Promise<IteratorProxy>;
  }
  imapUnordered(fn: PoolFunc, items: Iterable<unknown>, chunksize?: number): Promise<IteratorProxy> {
    return this._callmethod('imap_unordered', chunksize === undefined ? [ref(fn), [...items]] : [ref(fn), [...items], chunksize]) as Promise<IteratorProxy>;
  }
  close(): Promise<void> {
    return this._callmethod('close') as Promise<void>;
  }
  join(): Promise<void> {
    return this._callmethod('join') as Promise<void>;
  }
  terminate(): Promise<void> {
    return this._callmethod('terminate') as Promise<void>;
  }
}

/** The methods of an AsyncResult proxy (an AutoProxy: `get`, `ready`, `successful`, `wait`). */
export interface AsyncResultMethods {
  get(timeout?: number | null): Promise<unknown>;
  ready(): Promise<boolean>;
  successful(): Promise<boolean>;
  wait(timeout?: number | null): Promise<void>;
}

const BUILTIN_TYPES: Record<string, ProxyType> = {
  Iterator: IteratorProxy,
  AsyncResult: AutoProxy,
};

/** The proxy type of a `#PROXY` reply's typeid when the manager has none registered (or there is no manager). */
export function builtinProxyType(typeid: string): ProxyType {
  return BUILTIN_TYPES[typeid] ?? AutoProxy;
}

// ------------------------------------------------------------------ RebuildProxy

const PROXY_CLASSES = new Map<string, ProxyType>([
  ['AcquirerProxy', AcquirerProxy],
  ['ConditionProxy', ConditionProxy],
  ['EventProxy', EventProxy],
  ['BarrierProxy', BarrierProxy],
  ['NamespaceProxy', NamespaceProxy],
  ['ValueProxy', ValueProxy],
  ['ArrayProxy', ArrayProxy],
  ['ListProxy', ListProxy],
  ['BaseListProxy', ListProxy],
  ['DictProxy', DictProxy],
  ['IteratorProxy', IteratorProxy],
  ['PoolProxy', PoolProxy],
  ['BasePoolProxy', PoolProxy],
  ['AutoProxy', AutoProxy],
]);

/** Registers a proxy class under its Python name, so that its pickles rebuild here. */
export function registerProxyClass(pyName: string, type: ProxyType): void {
  PROXY_CLASSES.set(pyName, type);
}

function rebuildProxy(args: readonly unknown[]): unknown {
  const [func, token, serializer, kwdsIn] = args as [unknown, unknown, unknown, unknown];
  if (!(func instanceof PyGlobal) || !(token instanceof Token)) throw new TypeError('RebuildProxy(func, token, serializer, kwds): bad arguments');
  if (serializer !== 'pickle') throw new TypeError(`RebuildProxy: serializer ${JSON.stringify(serializer)} is not supported`);
  const kwds = (kwdsIn !== null && typeof kwdsIn === 'object' ? kwdsIn : {}) as Record<string, unknown>;
  // A proxy of an object this process serves is the object itself (billiard's rule).
  const local = localReferent(token);
  if (local.found) return local.value;
  const type = PROXY_CLASSES.get(func.name);
  if (type === undefined) throw new TypeError(`RebuildProxy: unknown proxy type ${func.module}.${func.name}`);
  const authkey = kwds.authkey instanceof Uint8Array ? new Uint8Array(kwds.authkey) : null;
  const exposed = Array.isArray(kwds.exposed) ? (kwds.exposed as string[]).filter((x) => typeof x === 'string') : null;
  return makeProxy(type, token, { authkey, exposed, incref: kwds.incref !== false });
}

for (const module of [MP_MODULE, 'billiard.managers']) {
  defaultRegistry.register(module, 'RebuildProxy', { call: rebuildProxy });
}

// A proxy pickles as `RebuildProxy(cls, token, 'pickle', kwds)`, without the key...
defaultRegistry.registerReducer(BaseProxy, (p: BaseProxy) => rebuildReduce(p, false));
// ...but while spawning a child, a proxy carries its manager's key, as Python's does.
addSpawnReducers(import.meta.url, (registry) => {
  registry.registerReducer(BaseProxy, (p: BaseProxy) => rebuildReduce(p, true));
});

export { addressKey };
