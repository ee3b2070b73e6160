/**
 * `BaseManager` and `SyncManager` (spec/manager.md §5–§6): a manager is a
 * client handle for a manager server, which it may also start (a Node
 * child process, `start()`), serve in this process (`getServer()`), or
 * reach on the network (`connect()`). Registered typeids become methods
 * that create an object on the server and return its proxy.
 */

import type { Address, DigestName } from '../connection/index.js';
import { Pipe, ProcessError } from '../connection/index.js';
import { PyGlobal } from '../pickle/index.js';
import { checkLoadLimits, type LoadLimits } from '../pickle/unpickler.js';
import { funcRef } from '../pool/protocol.js';
import { resolveFunction } from '../pool/worker.js';
import { ValueError } from '../process/errors.js';
import { getStartMethod } from '../process/start-method.js';
import { currentProcess, Process, SpawnProcess, ForkServerProcess } from '../process/index.js';
import { controlCall, dropPools, type Endpoint } from './client.js';
import { ManagedArray, ManagedBarrier, ManagedCondition, ManagedDict, ManagedEvent, ManagedList, ManagedLock, ManagedNamespace, ManagedQueue, ManagedValue, bind, Managed } from './objects.js';
import type { Kwds } from './protocol.js';
import {
  AcquirerProxy,
  ArrayProxy,
  AutoProxy,
  BarrierProxy,
  BaseProxy,
  ConditionProxy,
  DictProxy,
  EventProxy,
  IteratorProxy,
  ListProxy,
  makeProxy,
  NamespaceProxy,
  PoolProxy,
  QueueProxy,
  RLockProxy,
  setFuncRef,
  ValueProxy,
  type ProxyManager,
  type ProxyType,
} from './proxy.js';
import { ManagedPool } from './pool.js';
import { pyError, pyTypeName } from './pyvalues.js';
import { Server, type ManagerCallable, type Registry, type TypeidEntry } from './server.js';
import { MP_MODULE, Token, wireAddress, type ManagersModule } from './token.js';
import { checkOptionNames, optionNames } from '../connection/options.js';

setFuncRef(funcRef);

/** Python's `managers.State`. */
export const State = Object.freeze({ INITIAL: 0, STARTED: 1, SHUTDOWN: 2 } as const);

/** A manager's start method: `'spawn'`, `'forkserver'`, or a context with a `Process` class. */
export type ManagerContext = 'spawn' | 'forkserver' | { Process: typeof Process };

export interface BaseManagerOptions {
  /** The server's address: `[host, port]` (port 0: any free port) or an AF_UNIX path. `start()` defaults to a free port on 127.0.0.1. */
  address?: Address | null;
  /** The key; defaults to this process's authkey (remote clients must give it explicitly). */
  authkey?: Uint8Array | null;
  /** Only `'pickle'`: the `'xmlrpclib'` serializer is not supported. */
  serializer?: 'pickle';
  /** The start method of `start()`'s server process. */
  context?: ManagerContext | null;
  /** Seconds `shutdown()` waits at each step (join; terminate; kill), as CPython's `shutdown_timeout`; default 1. */
  shutdownTimeout?: number;
  /** The challenge form of the handshakes this side starts; default `'sha256'` (billiard and CPython 3.11 servers answer it). */
  digest?: DigestName | 'legacy';
  /** The module a Node server's Tokens name; default `'multiprocessing.managers'`, which every Python client can load. */
  tokenModule?: ManagersModule;
  /** Seconds to connect and authenticate before a call fails; default 60. */
  connectTimeout?: number | null;
  /**
   * Limits on loading what the other side sends, over the unpickler's
   * defaults (see {@link LoadLimits}): the replies this manager's proxies
   * read, and the requests of the server it starts or serves. For values
   * that honestly need more (a dict of thousands of bigint keys equal in
   * their low 64 bits needs a higher `maxHashCollisions`).
   */
  loadLimits?: LoadLimits | null;
}

/** What `register()` takes (Python's `register(typeid, callable, proxytype, exposed, method_to_typeid, create_method)`). */
export interface RegisterOptions {
  /** Builds the object on the server; called with `new` when it is a class. Clients of a remote server give none. */
  callable?: ManagerCallable | null;
  /** The client's proxy class; default {@link AutoProxy}. */
  proxytype?: ProxyType | null;
  /** The names clients may call; default the proxy's own list, else the object's public methods. */
  exposed?: readonly string[] | null;
  /** Methods whose results are served as new objects of a typeid (and reach the client as proxies). */
  methodToTypeid?: Readonly<Record<string, string>> | null;
  /** Add a method named `typeid` to the manager (default true). */
  createMethod?: boolean;
}

const MANAGER_OPTIONS = optionNames<BaseManagerOptions>()({
  address: 1, authkey: 1, serializer: 1, context: 1, shutdownTimeout: 1, digest: 1, tokenModule: 1, connectTimeout: 1, loadLimits: 1,
});
const REGISTER_OPTIONS = optionNames<RegisterOptions>()({ callable: 1, proxytype: 1, exposed: 1, methodToTypeid: 1, createMethod: 1 });

const kRegistry = Symbol('billiard-ts.managers.registry');

type ManagerClass = typeof BaseManager;

function registryOf(cls: ManagerClass): Registry {
  const own = Object.hasOwn(cls, kRegistry) ? (cls as unknown as Record<symbol, Registry>)[kRegistry] : undefined;
  if (own !== undefined) return own;
  // Copy the parent's registry on first use in a subclass, as Python does.
  const parent = Object.getPrototypeOf(cls) as ManagerClass | null;
  const copy: Registry = new Map(parent !== null && typeof parent === 'function' && kRegistry in parent ? registryOf(parent) : []);
  Object.defineProperty(cls, kRegistry, { value: copy, enumerable: false });
  return copy;
}

function contextProcess(context: ManagerContext | null | undefined): typeof Process {
  if (context === null || context === undefined) return getStartMethod() === 'forkserver' ? ForkServerProcess : SpawnProcess;
  if (context === 'spawn') return SpawnProcess;
  if (context === 'forkserver') return ForkServerProcess;
  if (typeof context === 'object' && typeof context.Process === 'function') return context.Process;
  throw new TypeError(`options.context must be 'spawn', 'forkserver' or a context, not ${String(context)}`);
}

/**
 * A manager: a handle on a manager server. `start()` runs a server in a
 * child process; `connect()` reaches a running one; `getServer()` builds
 * one to serve from this process.
 */
export class BaseManager implements ProxyManager {
  readonly #options: BaseManagerOptions;
  readonly #authkey: Uint8Array;
  #address: Address | null;
  #state: number = State.INITIAL;
  #process: Process | null = null;
  #server: Server | null = null;
  readonly #loadLimits: Readonly<LoadLimits> | undefined;

  constructor(options?: BaseManagerOptions) {
    checkOptionNames(options, MANAGER_OPTIONS, `new ${new.target.name}()`);
    const o = options ?? {};
    this.#loadLimits = checkLoadLimits(o.loadLimits, 'options.loadLimits');
    if (o.serializer !== undefined && o.serializer !== 'pickle') throw new ValueError(`unsupported serializer ${JSON.stringify(o.serializer)}: billiard-ts speaks 'pickle' only`);
    this.#options = o;
    this.#authkey = new Uint8Array(o.authkey ?? currentProcess().authkey);
    this.#address = o.address ?? null;
  }

  /**
   * Registers a typeid on this manager class (and its subclasses): on a
   * server, `callable` builds the object a client's `create` asks for; on a
   * client, `proxytype` is the proxy it gets. With `createMethod` (the
   * default) the class gains a method named `typeid`, so that
   * `await m.get_queue()` returns a proxy; declare it for TypeScript with
   * `declare get_queue: () => Promise<QueueProxy>`.
   */
  static register(typeid: string, options?: RegisterOptions): void {
    if (typeof typeid !== 'string' || typeid === '') throw new TypeError('typeid must be a non-empty string');
    checkOptionNames(options, REGISTER_OPTIONS, `${this.name}.register()`);
    const o = options ?? {};
    const proxytype = o.proxytype ?? AutoProxy;
    const m2t = o.methodToTypeid ?? null;
    if (m2t !== null) for (const [k, v] of Object.entries(m2t)) if (typeof k !== 'string' || typeof v !== 'string') throw new TypeError('methodToTypeid maps names to typeids (strings)');
    const proxyExposed = (proxytype as { exposed?: readonly string[] }).exposed;
    const entry: TypeidEntry = {
      callable: o.callable ?? null,
      exposed: o.exposed ?? proxyExposed ?? null,
      methodToTypeid: m2t,
      proxytype,
      createMethod: o.createMethod ?? true,
    };
    registryOf(this).set(typeid, entry);
    if (entry.createMethod && !Object.hasOwn(this.prototype, typeid)) {
      Object.defineProperty(this.prototype, typeid, {
        configurable: true,
        writable: true,
        value: function (this: BaseManager, ...args: unknown[]) {
          return this.createProxy(typeid, args);
        },
      });
    }
  }

  /** @internal registers a SyncManager typeid with its Python-style constructor. */
  static registerBuiltin(typeid: string, pyCreate: TypeidEntry['pyCreate'] | null, proxytype: ProxyType, options?: { exposed?: readonly string[]; methodToTypeid?: Record<string, string>; createMethod?: boolean }): void {
    registryOf(this).set(typeid, {
      callable: null,
      exposed: options?.exposed ?? null,
      methodToTypeid: options?.methodToTypeid ?? null,
      proxytype,
      createMethod: options?.createMethod ?? true,
      pyCreate: pyCreate ?? undefined,
    });
  }

  /** This class's registry (typeid → entry). */
  static get registry(): ReadonlyMap<string, TypeidEntry> {
    return registryOf(this);
  }

  get address(): Address | null {
    return this.#address;
  }

  get authkey(): Uint8Array {
    return this.#authkey;
  }

  get digest(): DigestName | 'legacy' | undefined {
    return this.#options.digest;
  }

  /** The limits (checked) on loading what the other side sends (BaseManagerOptions.loadLimits), or undefined. */
  get loadLimits(): Readonly<LoadLimits> | undefined {
    return this.#loadLimits;
  }

  /** `State.INITIAL`, `State.STARTED` or `State.SHUTDOWN`. */
  get state(): number {
    return this.#state;
  }

  get isShutDown(): boolean {
    return this.#state === State.SHUTDOWN;
  }

  /** The server process of `start()`, else null. */
  get process(): Process | null {
    return this.#process;
  }

  proxyTypeFor(typeid: string): ProxyType | undefined {
    return registryOf(this.constructor as ManagerClass).get(typeid)?.proxytype;
  }

  #endpoint(): Endpoint {
    if (this.#address === null) throw new ProcessError('the manager has no address: start() or connect() it first');
    return { address: this.#address, authkey: this.#authkey, digest: this.#options.digest, connectTimeout: this.#options.connectTimeout, loadLimits: this.#loadLimits };
  }

  /** A server for this manager's registry, to serve from this process: `await m.getServer().serveForever()`. */
  getServer(): Server {
    if (this.#state !== State.INITIAL) throw new ProcessError(this.#state === State.SHUTDOWN ? 'Manager has shut down' : 'Already started server');
    const server = new Server({
      address: this.#address ?? ['127.0.0.1', 0],
      authkey: this.#authkey,
      registry: registryOf(this.constructor as ManagerClass),
      tokenModule: this.#options.tokenModule,
      loadLimits: this.#loadLimits,
    });
    this.#server = server;
    void server.ready.then(
      () => {
        this.#address = server.address;
      },
      () => undefined,
    );
    return server;
  }

  /** Connects to a running server (a `dummy` request proves the address and key). */
  async connect(): Promise<void> {
    await controlCall(this.#endpoint(), 'dummy');
    this.#state = State.STARTED;
  }

  /**
   * Starts a server in a child process and learns its address. The child
   * imports this manager's class, so it must be an export of the main
   * module or of a registered module, and its `register()` calls must run
   * when that module is imported (as Python needs under spawn).
   */
  async start(initializer?: ((...args: never[]) => unknown) | PyGlobal | null, initargs: readonly unknown[] = []): Promise<void> {
    if (this.#state !== State.INITIAL) throw new ProcessError(this.#state === State.SHUTDOWN ? 'Manager has shut down' : 'Already started server');
    if (initializer !== undefined && initializer !== null && typeof initializer !== 'function' && !(initializer instanceof PyGlobal)) throw new TypeError('initializer must be a function');
    const cls = funcRef(this.constructor);
    const init = initializer === undefined || initializer === null ? null : funcRef(initializer);
    const [reader, writer] = Pipe({ duplex: false });
    const Cls = contextProcess(this.#options.context);
    const name = `${this.constructor.name}-${++managerCount}`;
    const proc = new Cls({
      target: runManagerServer,
      args: [cls, this.#address === null ? null : wireAddress(this.#address), this.#authkey, writer, init, [...initargs], this.#options.tokenModule ?? MP_MODULE, this.#loadLimits ?? null],
      name,
      daemon: true,
    });
    proc.authkey = this.#authkey;
    await proc.start();
    writer.close();
    try {
      const address = await reader.recv();
      this.#address = Array.isArray(address) ? (address as Address) : (address as Address);
    } finally {
      reader.close();
    }
    this.#process = proc;
    this.#state = State.STARTED;
  }

  /** Waits for the server process to end (`timeout` in seconds). */
  async join(timeout?: number | null): Promise<void> {
    if (this.#process !== null) await this.#process.join(timeout ?? null);
  }

  /**
   * Stops a server this manager started (or serves): a `shutdown` request,
   * then join, terminate and kill, each waiting `shutdownTimeout` seconds.
   * Proxies released afterwards send nothing.
   */
  async shutdown(): Promise<void> {
    if (this.#state === State.SHUTDOWN) return;
    const proc = this.#process;
    if (proc === null && this.#server === null) throw new ProcessError('shutdown() needs a manager started with start() or getServer(); a connected manager has no shutdown');
    const wait = this.#options.shutdownTimeout ?? 1.0;
    try {
      if (proc !== null && proc.isAlive()) {
        try {
          await controlCall({ ...this.#endpoint(), connectTimeout: wait }, 'shutdown');
        } catch {
          // The server may already be gone; the escalation below handles a hung one.
        }
        await proc.join(wait);
        if (proc.isAlive()) {
          proc.terminate();
          await proc.join(wait);
          if (proc.isAlive()) {
            proc.kill();
            await proc.join();
          }
        }
      }
      this.#server?.close();
    } finally {
      this.#state = State.SHUTDOWN;
      if (this.#address !== null) dropPools(this.#address);
    }
  }

  async [Symbol.asyncDispose](): Promise<void> {
    if (this.#state === State.STARTED && (this.#process !== null || this.#server !== null)) await this.shutdown();
  }

  /** Python's `_create`: `[id, exposed]` of a new object of `typeid`. */
  async _create(typeid: string, args: readonly unknown[] = [], kwds?: Kwds | null): Promise<[string, string[] | null]> {
    const reply = await controlCall(this.#endpoint(), 'create', [typeid, ...args], kwds);
    if (!Array.isArray(reply) || reply.length !== 2 || typeof reply[0] !== 'string') throw new ValueError(`malformed create reply from the manager: ${String(reply)}`);
    const exposed = Array.isArray(reply[1]) ? (reply[1] as unknown[]).filter((x): x is string => typeof x === 'string') : null;
    return [reply[0], exposed];
  }

  /**
   * Creates an object of `typeid` on the server and returns its proxy (what
   * the typeid methods do): `create`, the proxy's `incref`, then `decref`
   * of create's reference.
   */
  async createProxy<P extends BaseProxy = BaseProxy>(typeid: string, args: readonly unknown[] = [], kwds?: Kwds | null): Promise<P> {
    if (this.#state !== State.STARTED && this.#server === null) throw new ProcessError('the manager is not started: start() or connect() it first');
    const entry = registryOf(this.constructor as ManagerClass).get(typeid);
    const [id, exposed] = await this._create(typeid, args, kwds);
    const token = new Token(typeid, this.#address!, id);
    const proxy = makeProxy(entry?.proxytype ?? AutoProxy, token, { manager: this, authkey: this.#authkey, exposed, digest: this.#options.digest });
    try {
      await proxy._ready;
    } finally {
      await controlCall(this.#endpoint(), 'decref', [id]).catch(() => undefined);
    }
    return proxy as P;
  }

  /** The server's `debug_info` text. */
  async _debugInfo(): Promise<string> {
    return (await controlCall(this.#endpoint(), 'debug_info')) as string;
  }

  /** Objects the server holds. */
  async _numberOfObjects(): Promise<number> {
    return Number(await controlCall(this.#endpoint(), 'number_of_objects'));
  }
}

let managerCount = 0;

/**
 * The target of `start()`'s child: builds the manager class's server, sends
 * its address through `writer`, and serves until shut down. @internal
 */
export async function runManagerServer(
  cls: PyGlobal,
  address: Address | null,
  authkey: Uint8Array,
  writer: { send(v: unknown): Promise<void>; close(): void },
  initializer: PyGlobal | null,
  initargs: unknown[],
  tokenModule: ManagersModule,
  loadLimits: LoadLimits | null = null,
): Promise<void> {
  const Cls = (await resolveFunction(cls)) as unknown as new (o: BaseManagerOptions) => BaseManager;
  if (initializer !== null) await (await resolveFunction(initializer))(...(initargs ?? []));
  const manager = new Cls({ address, authkey, tokenModule, loadLimits });
  const server = manager.getServer();
  await server.ready;
  await writer.send(wireAddress(server.address));
  writer.close();
  await server.serveForever();
}

// ------------------------------------------------------------------ SyncManager

function items(v: unknown, what: string): unknown[] {
  if (v === null || v === undefined) return [];
  if (v instanceof ManagedList) return [...v.items];
  if (typeof v === 'string') return [...v];
  if (v instanceof Map) return [...v.keys()];
  if (v instanceof ManagedDict) return v.keyList();
  if (typeof v === 'object' && Symbol.iterator in (v as object)) return [...(v as Iterable<unknown>)];
  throw pyError('TypeError', `'${pyTypeName(v)}' object is not iterable (${what})`);
}

function lockArg(v: unknown): ManagedLock | undefined {
  if (v === null || v === undefined) return undefined;
  if (v instanceof ManagedLock) return v;
  throw pyError('TypeError', `Condition's lock must be a Lock or RLock of this manager, not ${v instanceof Managed ? v.pyTypeName : pyTypeName(v)}`);
}

function number(v: unknown, what: string): number {
  if (typeof v === 'boolean') return v ? 1 : 0;
  if (typeof v === 'bigint') return Number(v);
  if (typeof v !== 'number' || !Number.isInteger(v)) throw pyError('TypeError', `'${pyTypeName(v)}' object cannot be interpreted as an integer (${what})`);
  return v;
}

/**
 * A manager with SyncManager's typeids (Python's `SyncManager`): `Queue`,
 * `JoinableQueue`, `Event`, `Lock`, `RLock`, `Semaphore`,
 * `BoundedSemaphore`, `Condition`, `Barrier`, `Pool`, `list`, `dict`,
 * `Value`, `Array`, `Namespace`, and the `Iterator`/`AsyncResult` typeids
 * of `#PROXY` replies. A Node-hosted SyncManager's Pool runs JavaScript
 * functions in Node workers.
 */
export class SyncManager extends BaseManager {
  Queue(maxsize = 0): Promise<QueueProxy> {
    return this.createProxy('Queue', [maxsize]);
  }
  JoinableQueue(maxsize = 0): Promise<QueueProxy> {
    return this.createProxy('JoinableQueue', [maxsize]);
  }
  Event(): Promise<EventProxy> {
    return this.createProxy('Event');
  }
  Lock(): Promise<AcquirerProxy> {
    return this.createProxy('Lock');
  }
  RLock(): Promise<RLockProxy> {
    return this.createProxy('RLock');
  }
  Semaphore(value = 1): Promise<AcquirerProxy> {
    return this.createProxy('Semaphore', [value]);
  }
  BoundedSemaphore(value = 1): Promise<AcquirerProxy> {
    return this.createProxy('BoundedSemaphore', [value]);
  }
  /** A Condition over `lock` (a Lock or RLock proxy of this manager), else over a new RLock. */
  Condition(lock?: AcquirerProxy | null): Promise<ConditionProxy> {
    return this.createProxy('Condition', lock === undefined || lock === null ? [] : [lock]);
  }
  Barrier(parties: number, options?: { timeout?: number | null }): Promise<BarrierProxy> {
    return this.createProxy('Barrier', [parties], options?.timeout === undefined ? null : { timeout: options.timeout });
  }
  /** A Pool of the server's with `processes` workers: Python functions (`pyfunc`) on a Python server, exported JS functions on a Node one. */
  Pool(processes?: number | null, kwds?: Kwds): Promise<PoolProxy> {
    return this.createProxy('Pool', processes === undefined ? [] : [processes], kwds);
  }
  list<T = unknown>(iterable?: Iterable<T>): Promise<ListProxy<T>> {
    return this.createProxy('list', iterable === undefined ? [] : [[...iterable]]);
  }
  /** A dict: from a Map, entries or an object, plus string-keyed `kwds`. */
  dict<K = unknown, V = unknown>(init?: Map<K, V> | Iterable<readonly [K, V]> | Record<string, V> | null, kwds?: Record<string, V>): Promise<DictProxy<K, V>> {
    let arg: unknown[] = [];
    if (init !== undefined && init !== null) arg = [init instanceof Map || !(Symbol.iterator in (init as object)) ? init : new Map(init as Iterable<[K, V]>)];
    return this.createProxy('dict', arg, kwds ?? null);
  }
  Value<T = unknown>(typecode: string | null, value: T): Promise<ValueProxy<T>> {
    return this.createProxy('Value', [typecode, value]);
  }
  Array(typecode: string, sequence: Iterable<number | bigint>): Promise<ArrayProxy> {
    return this.createProxy('Array', [typecode, [...sequence]]);
  }
  /** A Namespace with the attributes of `kwds`. */
  Namespace(kwds?: Record<string, unknown>): Promise<NamespaceProxy> {
    return this.createProxy('Namespace', [], kwds ?? null);
  }
}

const S = SyncManager;
S.registerBuiltin('Queue', (a, k) => new ManagedQueue(number(bind('Queue', [['maxsize', 0]], a, k)[0], 'maxsize')), QueueProxy);
S.registerBuiltin('JoinableQueue', (a, k) => new ManagedQueue(number(bind('Queue', [['maxsize', 0]], a, k)[0], 'maxsize')), QueueProxy);
S.registerBuiltin('Event', (a, k) => (bind('Event', [], a, k), new ManagedEvent()), EventProxy);
S.registerBuiltin('Lock', (a, k) => (bind('Lock', [], a, k), new ManagedLock('Lock')), AcquirerProxy);
S.registerBuiltin('RLock', (a, k) => (bind('RLock', [], a, k), new ManagedLock('RLock')), RLockProxy);
S.registerBuiltin('Semaphore', (a, k) => new ManagedLock('Semaphore', number(bind('Semaphore', [['value', 1]], a, k)[0], 'value')), AcquirerProxy);
S.registerBuiltin('BoundedSemaphore', (a, k) => new ManagedLock('BoundedSemaphore', number(bind('BoundedSemaphore', [['value', 1]], a, k)[0], 'value')), AcquirerProxy);
S.registerBuiltin('Condition', (a, k) => new ManagedCondition(lockArg(bind('Condition', [['lock', null]], a, k)[0])), ConditionProxy);
S.registerBuiltin(
  'Barrier',
  (a, k) => {
    const [parties, action, timeout] = bind('Barrier', [['parties'], ['action', null], ['timeout', null]], a, k);
    if (action !== null) throw pyError('TypeError', "a billiard-ts manager's Barrier takes no action (the client's callable cannot run here)");
    return new ManagedBarrier(number(parties, 'parties'), timeout);
  },
  BarrierProxy,
);
S.registerBuiltin('Pool', (a, k) => new ManagedPool(a, k), PoolProxy, {
  methodToTypeid: { apply_async: 'AsyncResult', map_async: 'AsyncResult', starmap_async: 'AsyncResult', imap: 'Iterator', imap_unordered: 'Iterator' },
});
S.registerBuiltin('list', (a, k) => new ManagedList(items(bind('list', [['iterable', null]], a, k)[0], 'list')), ListProxy);
S.registerBuiltin(
  'dict',
  (a, k) => {
    if (a.length > 1) throw pyError('TypeError', `dict expected at most 1 argument, got ${a.length}`);
    return new ManagedDict(a[0], k);
  },
  DictProxy,
  { methodToTypeid: { __iter__: 'Iterator' } },
);
S.registerBuiltin(
  'Value',
  (a, k) => {
    const [typecode, value] = bind('Value', [['typecode'], ['value'], ['lock', true]], a, k);
    return new ManagedValue(typecode, value);
  },
  ValueProxy,
);
S.registerBuiltin(
  'Array',
  (a, k) => {
    const [typecode, sequence] = bind('Array', [['typecode'], ['sequence'], ['lock', true]], a, k);
    return new ManagedArray(typecode, items(sequence, 'Array'));
  },
  ArrayProxy,
);
S.registerBuiltin(
  'Namespace',
  (a, k) => {
    if (a.length > 0) throw pyError('TypeError', `Namespace() takes no positional arguments (${a.length} given)`);
    return new ManagedNamespace(k);
  },
  NamespaceProxy,
);
S.registerBuiltin('Iterator', null, IteratorProxy, { createMethod: false });
S.registerBuiltin('AsyncResult', null, AutoProxy, { createMethod: false });

/** A started SyncManager (billiard's top-level `Manager()`). */
export async function Manager(options?: BaseManagerOptions): Promise<SyncManager> {
  const m = new SyncManager(options);
  await m.start();
  return m;
}
