/**
 * A manager server (Python's `managers.Server`, spec/manager.md §2–§4 and
 * §9.2): it holds objects by id, counts references, and answers the
 * protocol's requests over authenticated connections.
 *
 * Unlike CPython's thread-per-connection server it is one event loop, and it
 * survives any peer: handshakes run off the accept path with a deadline
 * (the connection layer's Listener), every request is parsed defensively,
 * frames are capped (`maxMessageSize`), each serving connection reads ahead
 * at most {@link MAX_PIPELINED} requests, and a method that waits (a
 * queue's `get`) waits asynchronously, so one client's blocking call never
 * stalls another. When a client hangs up during such a wait, the wait is
 * cancelled: a departed client never takes an item off a queue (CPython's
 * server does, and loses it: spec §4.3). References held by a departed
 * client are kept, as CPython keeps them.
 */

import { EventEmitter } from 'node:events';
import { EOFError, Listener, type Address, type Connection, type DigestName } from '../connection/index.js';
import { kSendNow } from '../connection/connection.js';
import { BilliardError, loads, PythonException, tuple, type UnpicklerOptions } from '../pickle/index.js';
import { checkLoadLimits, type LoadLimits } from '../pickle/unpickler.js';
import { addLocalServer, removeLocalServer } from './local.js';
import { ClientGone, Managed, ServerTraceback, type CallContext } from './objects.js';
import { ERROR, GETVALUE, PROXY, RETURN, TRACEBACK, UNSERIALIZABLE, type Kwds } from './protocol.js';
import type { ProxyType } from './proxy.js';
import { entriesOf, pyError, pyRepr, pyTypeName } from './pyvalues.js';
import { MP_MODULE, Token, type ManagersModule } from './token.js';
import { checkOptionNames, optionNames } from '../connection/options.js';

/** What builds a typeid's object: a function, or a class (called with `new`). */
export type ManagerCallable = ((...args: never[]) => unknown) | (new (...args: never[]) => unknown);

/** What `register()` records for a typeid (Python's registry tuple, plus `createMethod`). */
export interface TypeidEntry {
  /** Builds the object from the create request's arguments; null: the one argument is the object. */
  callable: ManagerCallable | null;
  /** Names clients may call; null: the object's public methods. */
  exposed: readonly string[] | null;
  /** Methods whose results are served as new objects of the given typeid (a `#PROXY` reply). */
  methodToTypeid: Readonly<Record<string, string>> | null;
  /** The client-side proxy class. */
  proxytype: ProxyType;
  createMethod: boolean;
  /** @internal Builds the object from Python-style args and kwds (the SyncManager typeids). */
  pyCreate?: (args: readonly unknown[], kwds: Kwds) => unknown;
}

export type Registry = Map<string, TypeidEntry>;

export interface ServerOptions {
  /** Where to listen; default a free TCP port on 127.0.0.1. */
  address?: Address | null;
  /** The key every client must prove. */
  authkey: Uint8Array;
  registry: Registry;
  /** The challenge form the server sends; `'sha256'` (default) is answered by every client version (billiard and 3.11 answer with MD5, which is accepted). */
  digest?: DigestName | 'legacy';
  /** Seconds a client has for the handshake; default 60. */
  handshakeTimeout?: number | null;
  /** The largest request frame accepted, in bytes (default 64 MiB); a longer one closes that connection. */
  maxMessageSize?: number;
  /** The module the `Token`s of `#PROXY` replies name: `'multiprocessing.managers'` (default, loadable by every client) or `'billiard.managers'`. */
  tokenModule?: ManagersModule;
  /** Whether a client may stop the server with `shutdown` (default true, as Python). */
  allowShutdown?: boolean;
  /** Connections held in their handshake or waiting to be served; see ListenerOptions.maxPending. */
  maxPending?: number;
  /** Limits on loading the clients' requests, over the unpickler's defaults (see {@link LoadLimits}). */
  loadLimits?: LoadLimits | null;
}

const SERVER_OPTIONS = optionNames<ServerOptions>()({
  address: 1, authkey: 1, registry: 1, digest: 1, handshakeTimeout: 1, maxMessageSize: 1, tokenModule: 1, allowShutdown: 1, maxPending: 1, loadLimits: 1,
});

/** Requests a serving connection reads ahead of the one being handled. */
const MAX_PIPELINED = 64;

interface Held {
  readonly id: string;
  readonly obj: unknown;
  readonly typeid: string;
  readonly exposed: readonly string[];
  readonly exposedSet: ReadonlySet<string>;
  readonly methodToTypeid: Readonly<Record<string, string>> | null;
  refcount: number;
}

/** An error that becomes a `#TRACEBACK` reply (the server's own failure, not the method's). */
const TracebackReply = ServerTraceback;
type TracebackReply = ServerTraceback;

function tracebackText(where: string, pyType: string, detail: string): string {
  return `Traceback (most recent call last):\n  File "billiard-ts/managers/server", in ${where}\n${pyType}${detail === '' ? '' : `: ${detail}`}\n`;
}

const quote = (v: unknown): string => pyRepr(v);

/** Whether `fn` is a class (called with `new`). */
function isClass(fn: unknown): boolean {
  return typeof fn === 'function' && /^class[\s{]/.test(Function.prototype.toString.call(fn));
}

/** The public method names of a Node object: functions on its prototype chain (and own), not `_`-prefixed, sorted (Python's `public_methods`). */
export function publicMethods(obj: unknown): string[] {
  if (obj instanceof Managed) return [...obj.exposed];
  const names = new Set<string>();
  for (let o = obj as object | null; o !== null && o !== Object.prototype && o !== Function.prototype; o = Object.getPrototypeOf(o) as object | null) {
    for (const k of Object.getOwnPropertyNames(o)) {
      if (k === 'constructor' || k.startsWith('_') || k.startsWith('#')) continue;
      const d = Object.getOwnPropertyDescriptor(o, k);
      if (d !== undefined && typeof d.value === 'function') names.add(k);
    }
  }
  return [...names].sort();
}

/** kwds as a string-keyed record, or a TypeError as Python's for `**x` of a non-mapping. */
function kwdsRecord(kwds: unknown, fname: string): Kwds {
  if (kwds === null || kwds === undefined) return Object.create(null) as Kwds;
  const entries = entriesOf(kwds);
  if (entries === null) throw pyError('TypeError', `${fname}() argument after ** must be a mapping, not ${pyTypeName(kwds)}`);
  const out = Object.create(null) as Kwds;
  for (const [k, v] of entries) {
    if (typeof k !== 'string') throw pyError('TypeError', 'keywords must be strings');
    out[k] = v;
  }
  return out;
}

function argsArray(args: unknown, fname: string): unknown[] {
  if (Array.isArray(args)) return [...(args as unknown[])];
  throw pyError('TypeError', `${fname}() argument after * must be an iterable, not ${pyTypeName(args)}`);
}

/** The exception a reply carries for a thrown value: Python exceptions as they are, JS errors as the nearest builtin. */
function asPythonError(e: unknown): Error {
  if (e instanceof PythonException || e instanceof BilliardError) return e;
  if (e instanceof TypeError) return pyError('TypeError', e.message);
  // V8's stack overflow (a walk of a value nested too deep, as hashing a deep tuple key) is Python's RecursionError.
  if (e instanceof RangeError && /Maximum call stack size exceeded/.test(e.message)) return pyError('RecursionError', 'maximum recursion depth exceeded');
  if (e instanceof RangeError) return pyError('ValueError', e.message);
  if (e instanceof Error) return pyError('Exception', `${e.name}: ${e.message}`);
  return pyError('Exception', String(e));
}

/** Calls a registered callable the Python way: positional args, then kwds as a trailing object when there are any. */
function callUser(fn: ManagerCallable, args: readonly unknown[], kwds: Kwds): unknown {
  const all = Object.keys(kwds).length > 0 ? [...args, kwds] : [...args];
  const f = fn as unknown as (...a: unknown[]) => unknown;
  return isClass(fn) ? new (fn as unknown as new (...a: unknown[]) => unknown)(...all) : f(...all);
}

let nextConnId = 1;

export interface ServerEvents {
  /** A connection failed in a way that concerns the operator (not a client's ordinary hang-up). */
  connectionError: [error: Error];
}

/**
 * A manager server. `await server.serveForever()` serves until a client
 * sends `shutdown` (when allowed) or `server.close()` is called.
 */
export class Server extends EventEmitter<ServerEvents> {
  readonly registry: Registry;
  readonly #listener: Listener;
  readonly #tokenModule: ManagersModule;
  readonly #allowShutdown: boolean;
  readonly #held = new Map<string, Held>();
  readonly #ids = new WeakMap<object, string>();
  readonly #conns = new Set<Connection>();
  readonly #loadOptions: UnpicklerOptions | undefined;
  #nextId = 0x7f0000000000 + Math.floor(Math.random() * 0x100000) * 0x1000;
  #closed = false;
  #stopped: Promise<void>;
  #stop!: () => void;
  #serving = false;
  readonly ready: Promise<void>;

  constructor(options: ServerOptions) {
    super();
    checkOptionNames(options, SERVER_OPTIONS, 'new Server()');
    this.registry = options.registry;
    this.#tokenModule = options.tokenModule ?? MP_MODULE;
    this.#allowShutdown = options.allowShutdown ?? true;
    this.#loadOptions = checkLoadLimits(options.loadLimits, 'options.loadLimits');
    this.#listener = new Listener({
      address: options.address ?? ['127.0.0.1', 0],
      authkey: options.authkey,
      digest: options.digest,
      handshakeTimeout: options.handshakeTimeout,
      maxPending: options.maxPending,
      connection: options.maxMessageSize === undefined ? undefined : { maxMessageSize: options.maxMessageSize },
    });
    this.#stopped = new Promise<void>((resolve) => (this.#stop = resolve));
    this.ready = this.#listener.ready.then(() => addLocalServer(this.address, this));
  }

  /** The bound address: `[host, port]` or a path. */
  get address(): Address {
    return this.#listener.address;
  }

  get closed(): boolean {
    return this.#closed;
  }

  /** Live objects (Python's `number_of_objects`). */
  get numberOfObjects(): number {
    return this.#held.size;
  }

  /** Accepts and serves connections until `shutdown` or {@link close}. */
  async serveForever(): Promise<void> {
    await this.ready;
    if (!this.#serving) {
      this.#serving = true;
      void this.#acceptLoop();
    }
    await this.#stopped;
  }

  /** Stops: closes the listener and every connection; objects are dropped. */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#listener.close();
    for (const c of this.#conns) c.close();
    this.#conns.clear();
    if (this.#listener.address !== undefined) removeLocalServer(this.address, this);
    for (const h of this.#held.values()) this.#dispose(h);
    this.#held.clear();
    this.#stop();
  }

  async [Symbol.asyncDispose](): Promise<void> {
    this.close();
  }

  /** The object with id `id`, for a proxy rebuilt in this process (billiard: the referent itself). @internal */
  referent(id: string): { found: boolean; value?: unknown } {
    const h = this.#held.get(id);
    return h === undefined ? { found: false } : { found: true, value: h.obj };
  }

  async #acceptLoop(): Promise<void> {
    while (!this.#closed) {
      let conn: Connection;
      try {
        conn = await this.#listener.accept();
      } catch (e) {
        if (this.#closed) return;
        this.emit('connectionError', e as Error);
        continue;
      }
      if (this.#closed) {
        conn.close();
        return;
      }
      this.#conns.add(conn);
      void this.#handle(conn).finally(() => {
        this.#conns.delete(conn);
        conn.close();
      });
    }
  }

  /** Decodes one request frame: the 4-tuple, or a TracebackReply. */
  #decode(frame: Uint8Array): [unknown, unknown, unknown, unknown] {
    let req: unknown;
    try {
      req = loads(frame, this.#loadOptions);
    } catch (e) {
      const err = e as Error;
      throw new TracebackReply(err.name === 'UnpicklingError' ? '_pickle.UnpicklingError' : err.name || 'UnpicklingError', err.message);
    }
    if (!Array.isArray(req)) throw new TracebackReply('TypeError', `cannot unpack non-iterable ${pyTypeName(req)} object`);
    if (req.length !== 4) throw new TracebackReply('ValueError', req.length < 4 ? `not enough values to unpack (expected 4, got ${req.length})` : 'too many values to unpack (expected 4)');
    return req as [unknown, unknown, unknown, unknown];
  }

  /** Sends a reply; a reply that will not pickle goes as `#UNSERIALIZABLE`. False when the connection is gone. */
  async #reply(conn: Connection, kind: string, payload: unknown, fallback = false): Promise<boolean> {
    if (conn.closed) return false;
    try {
      // The reply is written without waiting for the write; only a full socket buffer is waited for.
      const pending = conn[kSendNow](tuple(kind, payload));
      if (pending !== null) await pending;
      return true;
    } catch (e) {
      if (conn.closed || !conn.writable || fallback) return false;
      if (kind === ERROR) {
        // An exception that will not pickle: send what it says as a builtin Exception.
        const err = payload as Error;
        return this.#reply(conn, ERROR, pyError('Exception', `${err.name}: ${err.message}`), true);
      }
      let text: string;
      try {
        text = `(${quote(kind)}, ${pyRepr(payload)})`;
      } catch {
        text = `(${quote(kind)}, <${pyTypeName(payload)}>)`;
      }
      return this.#reply(conn, UNSERIALIZABLE, `${text}: ${(e as Error).message}`, true);
    }
  }

  async #handle(conn: Connection): Promise<void> {
    let frame: Uint8Array;
    try {
      frame = await conn.recvBytes();
    } catch {
      return; // hung up, or a frame over the limit: nothing to answer
    }
    let methodname: unknown;
    let args: unknown;
    let kwds: unknown;
    try {
      [, methodname, args, kwds] = this.#decode(frame);
      if (typeof methodname !== 'string') throw new TracebackReply('AssertionError', `${quote(methodname)} unrecognized`);
    } catch (e) {
      const t = e as TracebackReply;
      await this.#reply(conn, TRACEBACK, tracebackText('handle_request', t.pyType, t.detail));
      return;
    }
    let result: unknown;
    try {
      const a = argsArray(args, methodname);
      const k = kwdsRecord(kwds, methodname);
      result = this.#public(methodname, a, k);
    } catch (e) {
      const err = e instanceof TracebackReply ? e : asPythonError(e);
      const [pyType, detail] = err instanceof TracebackReply ? [err.pyType, err.detail] : describe(err);
      await this.#reply(conn, TRACEBACK, tracebackText(methodname, pyType, detail));
      return;
    }
    const sent = await this.#reply(conn, RETURN, result);
    if (!sent) return;
    if (methodname === 'accept_connection') await this.#serveClient(conn);
    else if (methodname === 'shutdown') this.close();
  }

  /** The public methods of §2.3 (all but accept_connection's serving, which follows its reply). */
  #public(name: string, args: unknown[], kwds: Kwds): unknown {
    const noKwds = (): void => {
      const k = Object.keys(kwds);
      if (k.length > 0) throw pyError('TypeError', `${name}() got an unexpected keyword argument '${k[0]}'`);
    };
    const arity = (n: number, names: string): void => {
      noKwds();
      if (args.length !== n) throw pyError('TypeError', `${name}() takes ${n} positional argument${n === 1 ? '' : 's'} (${names}) but ${args.length} were given`);
    };
    switch (name) {
      case 'dummy':
        arity(0, '');
        return null;
      case 'accept_connection':
        arity(1, 'name');
        return null;
      case 'number_of_objects':
        arity(0, '');
        return this.#held.size;
      case 'debug_info':
        arity(0, '');
        return [...this.#held.entries()]
          .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))
          .map(([id, h]) => `  ${id}:       refcount=${h.refcount}\n    ${strOf(h.obj).slice(0, 75)}`)
          .join('\n');
      case 'get_methods': {
        arity(1, 'token');
        const token = args[0];
        if (!(token instanceof Token)) throw pyError('AttributeError', `'${pyTypeName(token)}' object has no attribute 'id'`);
        return tuple(...this.#lookup(token.id).exposed);
      }
      case 'incref': {
        arity(1, 'ident');
        this.#lookup(args[0]).refcount++;
        return null;
      }
      case 'decref': {
        arity(1, 'ident');
        const h = this.#lookup(args[0]);
        if (--h.refcount <= 0) {
          this.#held.delete(args[0] as string);
          this.#dispose(h);
        }
        return null;
      }
      case 'create': {
        if (args.length === 0) throw pyError('TypeError', "create() missing 1 required positional argument: 'typeid'");
        const [typeid, ...rest] = args;
        const entry = typeof typeid === 'string' ? this.registry.get(typeid) : undefined;
        if (entry === undefined) throw new TracebackReply('KeyError', quote(typeid));
        let obj: unknown;
        if (entry.pyCreate !== undefined) obj = entry.pyCreate(rest, kwds);
        else if (entry.callable === null) {
          if (rest.length !== 1 || Object.keys(kwds).length > 0) throw pyError('ValueError', 'Without callable, must have one non-keyword argument');
          obj = rest[0];
        } else obj = callUser(entry.callable, rest, kwds);
        if (obj !== null && typeof obj === 'object' && typeof (obj as PromiseLike<unknown>).then === 'function') {
          throw pyError('TypeError', `the callable of typeid ${quote(typeid)} returned a Promise; a manager's callables must return the object itself`);
        }
        const h = this.#hold(typeid as string, obj, entry.exposed, entry.methodToTypeid);
        h.refcount++;
        return tuple(h.id, tuple(...h.exposed));
      }
      case 'shutdown':
        arity(0, '');
        if (!this.#allowShutdown) throw new TracebackReply('PermissionError', 'this server does not accept shutdown requests');
        return null;
    }
    throw new TracebackReply('AssertionError', `${quote(name)} unrecognized`);
  }

  #lookup(ident: unknown): Held {
    const h = typeof ident === 'string' ? this.#held.get(ident) : undefined;
    if (h === undefined) throw new TracebackReply('KeyError', quote(ident));
    return h;
  }

  /** Stores `obj` (or finds it, with the same id) and returns its entry; the caller counts the reference. */
  #hold(typeid: string, obj: unknown, exposed: readonly string[] | null, methodToTypeid: Readonly<Record<string, string>> | null): Held {
    const isObj = obj !== null && (typeof obj === 'object' || typeof obj === 'function');
    let id = isObj ? this.#ids.get(obj as object) : undefined;
    const existing = id === undefined ? undefined : this.#held.get(id);
    if (existing !== undefined) return existing;
    if (id === undefined) {
      id = (this.#nextId += 0x30).toString(16);
      if (isObj) this.#ids.set(obj as object, id);
    }
    // Python appends method_to_typeid's keys to the exposed list; a Managed object's own list already has them, as CPython sends it.
    const extra = Object.keys(methodToTypeid ?? {});
    const names = exposed !== null ? [...exposed, ...extra] : obj instanceof Managed ? [...obj.exposed] : [...publicMethods(obj), ...extra];
    const h: Held = { id, obj, typeid, exposed: names, exposedSet: new Set(names), methodToTypeid, refcount: 0 };
    this.#held.set(id, h);
    return h;
  }

  #dispose(h: Held): void {
    if (h.obj instanceof Managed) {
      try {
        h.obj.pyDispose();
      } catch (e) {
        this.emit('connectionError', e as Error);
      }
    }
  }

  /** A serving connection (§2.4): requests in order until EOF; reads ahead a bounded number so a hang-up is seen during a wait. */
  async #serveClient(conn: Connection): Promise<void> {
    const left = new AbortController();
    const ctx: CallContext = { id: nextConnId++, signal: left.signal };
    const queue: Uint8Array[] = [];
    const sig: { wake: (() => void) | null; resume: (() => void) | null } = { wake: null, resume: null };
    let ended = false;
    const reader = (async (): Promise<void> => {
      try {
        while (!this.#closed) {
          if (queue.length >= MAX_PIPELINED) await new Promise<void>((r) => (sig.resume = r));
          queue.push(await conn.recvBytes());
          sig.wake?.();
        }
      } catch (e) {
        if (!(e instanceof EOFError)) conn.close(); // an over-long frame or a framing error: close it
      } finally {
        ended = true;
        left.abort();
        sig.wake?.();
      }
    })();
    try {
      for (;;) {
        if (queue.length === 0) {
          if (ended) break;
          await new Promise<void>((r) => (sig.wake = r));
          sig.wake = null;
          continue;
        }
        const frame = queue.shift()!;
        if (sig.resume !== null && queue.length < MAX_PIPELINED) {
          const r = sig.resume;
          sig.resume = null;
          r();
        }
        const [kind, payload] = await this.#serveRequest(frame, ctx);
        if (kind === null) continue; // the client left during the call: nothing to send
        if (!(await this.#reply(conn, kind, payload))) break;
      }
    } finally {
      left.abort();
      conn.close();
      await reader;
    }
  }

  /** One request on a serving connection → the reply, or [null] when its client left. */
  async #serveRequest(frame: Uint8Array, ctx: CallContext): Promise<[string | null, unknown]> {
    let ident: unknown;
    let methodname: unknown;
    let args: unknown;
    let kwds: unknown;
    let h: Held;
    try {
      [ident, methodname, args, kwds] = this.#decode(frame);
      if (typeof methodname !== 'string') throw new TracebackReply('TypeError', `attribute name must be string, not '${pyTypeName(methodname)}'`);
      h = this.#lookup(ident);
      if (!h.exposedSet.has(methodname) && methodname !== '__str__' && methodname !== '__repr__' && methodname !== GETVALUE) {
        throw new TracebackReply('AttributeError', `method ${quote(methodname)} of ${typeLabel(h.obj)} object is not in exposed=${exposedRepr(h.exposed)}`);
      }
    } catch (e) {
      if (e instanceof TracebackReply) return [TRACEBACK, tracebackText('serve_client', e.pyType, e.detail)];
      const [pyType, detail] = describe(asPythonError(e));
      return [TRACEBACK, tracebackText('serve_client', pyType, detail)];
    }
    let result: unknown;
    try {
      const a = argsArray(args, methodname);
      const k = kwdsRecord(kwds, methodname);
      result = await this.#call(h, methodname, a, k, ctx);
    } catch (e) {
      if (e instanceof ClientGone || ctx.signal.aborted) return [null, null];
      if (e instanceof ServerTraceback) return [TRACEBACK, tracebackText(methodname, e.pyType, e.detail)];
      return [ERROR, asPythonError(e)];
    }
    const typeid = h.methodToTypeid?.[methodname];
    if (typeid !== undefined) {
      const entry = this.registry.get(typeid);
      if (entry === undefined) return [TRACEBACK, tracebackText('serve_client', 'KeyError', quote(typeid))];
      const nh = this.#hold(typeid, result, entry.exposed, entry.methodToTypeid);
      nh.refcount++;
      return [PROXY, tuple(tuple(...nh.exposed), new Token(typeid, this.address, nh.id, this.#tokenModule))];
    }
    return [RETURN, result];
  }

  async #call(h: Held, name: string, args: unknown[], kwds: Kwds, ctx: CallContext): Promise<unknown> {
    const obj = h.obj;
    if (obj instanceof Managed && (h.exposedSet.has(name) || name === GETVALUE)) {
      if (name === GETVALUE) return obj.pyGetValue();
      return await obj.pyCall(name, args, kwds, ctx);
    }
    if (name === GETVALUE && !h.exposedSet.has(name)) return obj;
    if ((name === '__str__' || name === '__repr__') && !h.exposedSet.has(name)) return strOf(obj);
    const target = obj as Record<string, unknown>;
    const fn = obj !== null && obj !== undefined ? (target[name] ?? target[jsName(name)]) : undefined;
    if (typeof fn !== 'function') throw pyError('AttributeError', `'${pyTypeName(obj)}' object has no attribute '${name}'`);
    const all = Object.keys(kwds).length > 0 ? [...args, kwds] : args;
    return await (fn as (...a: unknown[]) => unknown).apply(obj, all);
  }
}

/** Python method name → the JS name of a Node class's method (`get_nowait` → `getNowait`). */
function jsName(name: string): string {
  return name.replace(/_([a-z])/g, (_, c: string) => c.toUpperCase());
}

function strOf(obj: unknown): string {
  if (obj instanceof Managed) return obj.pyRepr();
  if (obj !== null && typeof obj === 'object') {
    const ts = (obj as { toString?: unknown }).toString;
    if (typeof ts === 'function' && ts !== Object.prototype.toString) return String(ts.call(obj));
    const name = (obj as object).constructor?.name;
    if (name !== undefined && name !== 'Object') return `<${name} object>`;
  }
  return pyRepr(obj);
}

function typeLabel(obj: unknown): string {
  return `<class '${obj instanceof Managed ? obj.pyTypeName : pyTypeName(obj)}'>`;
}

function exposedRepr(names: readonly string[]): string {
  return names.length === 0 ? 'set()' : `{${[...new Set(names)].map((n) => quote(n)).join(', ')}}`;
}

/** [Python type name, str(exc)] of an exception, for a traceback text. */
function describe(e: Error): [string, string] {
  if (e instanceof PythonException) {
    const name = e.pyModule === 'builtins' ? e.pyName : `${e.pyModule}.${e.pyName}`;
    const args = e.args as unknown as unknown[];
    const detail = e.pyName === 'KeyError' && args.length === 1 ? quote(args[0]) : args.length === 1 ? String(args[0]) : args.length === 0 ? '' : pyRepr(e.args);
    return [name, detail];
  }
  return [e.name, e.message];
}

