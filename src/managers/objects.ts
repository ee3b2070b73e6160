/**
 * The objects a billiard-ts manager server holds for SyncManager's typeids
 * (spec/manager.md §6): Python's `queue.Queue`, `threading` primitives,
 * `list`, `dict`, `Value`, `array.array`, `Namespace`, a Pool, and the
 * iterators and results their methods return, with the method names,
 * argument binding, return values and exceptions Python clients expect.
 *
 * Waiting methods (a queue's `get`, an event's `wait`, a lock's `acquire`)
 * wait asynchronously, so one client's blocking call never stalls another;
 * and a wait whose client hung up is cancelled, so a dead client never
 * takes an item off a queue (CPython's server does: spec §4.3).
 */

import { PyFrozenSet, PyGlobal, PyObject, PySlice, PyTuple, tuple } from '../pickle/index.js';
import { PyDictItems } from '../pickle/types.js';
import { LONG_KEY_CHARS } from '../pickle/v8-hash.js';
import { Timer } from '../connection/timers.js';
import { Empty, Full } from '../queues/index.js';
import { PyArray } from './array.js';
import { entriesOf, hashKey, pyCompare, pyEquals, pyError, pyRepr, pyTypeName } from './pyvalues.js';
import { ManagerValue, Namespace } from './values.js';

/** Who is calling: the serving connection's id, and a signal that fires when its client leaves. */
export interface CallContext {
  readonly id: number;
  readonly signal: AbortSignal;
}

/** A context for calls made outside a connection (tests, the server's own process). */
export const LOCAL_CONTEXT: CallContext = { id: 0, signal: new AbortController().signal };

/** An object whose methods a server calls by their Python names. */
export abstract class Managed {
  /** Python's type name, for messages. */
  abstract readonly pyTypeName: string;
  /** The names a client may call (the `exposed` of Python's registry). */
  abstract readonly exposed: readonly string[];
  /** Calls method `name` with positional `args` and keyword `kwds`. */
  abstract pyCall(name: string, args: readonly unknown[], kwds: Record<string, unknown>, ctx: CallContext): unknown;
  /** The value `#GETVALUE` sends (a copy, as Python pickles the referent). */
  pyGetValue(): unknown {
    throw pyError('TypeError', `cannot pickle '${this.pyTypeName}' object`);
  }
  pyRepr(): string {
    return `<${this.pyTypeName} object>`;
  }
  /** Called when the server drops its last reference. */
  pyDispose(): void {}
}

type Param = readonly [name: string, defaultValue?: unknown];
const REQUIRED = Symbol('required');

/** Binds Python-style positional and keyword arguments to `params`; a TypeError as Python's for extra, missing or repeated ones. */
export function bind(fname: string, params: readonly Param[], args: readonly unknown[], kwds: Record<string, unknown>): unknown[] {
  if (args.length > params.length) throw pyError('TypeError', `${fname}() takes ${params.length} positional arguments but ${args.length} were given`);
  const out: unknown[] = [...args];
  for (let i = args.length; i < params.length; i++) out.push(params[i]!.length > 1 ? params[i]![1] : REQUIRED);
  for (const [k, v] of Object.entries(kwds)) {
    const i = params.findIndex((p) => p[0] === k);
    if (i < 0) throw pyError('TypeError', `${fname}() got an unexpected keyword argument '${k}'`);
    if (i < args.length) throw pyError('TypeError', `${fname}() got multiple values for argument '${k}'`);
    out[i] = v;
  }
  const missing = out.findIndex((v) => v === REQUIRED);
  if (missing >= 0) throw pyError('TypeError', `${fname}() missing required argument: '${params[missing]![0]}'`);
  return out;
}

/** Thrown by a method to have the server answer `#TRACEBACK` (the server's own refusal, as CPython's for what it cannot run) rather than `#ERROR`. */
export class ServerTraceback extends Error {
  constructor(
    readonly pyType: string,
    readonly detail: string,
  ) {
    super(`${pyType}: ${detail}`);
    this.name = 'ServerTraceback';
  }
}

/** The error a wait gets when its client left: nothing is sent back, and nothing was taken. */
export class ClientGone extends Error {
  constructor() {
    super('the client left during the call');
    this.name = 'ClientGone';
  }
}

/** Seconds → ms, or null for no limit; Python's rules for negatives are the caller's. */
function ms(timeout: unknown, fname: string): number | null {
  if (timeout === null || timeout === undefined) return null;
  const t = Number(typeof timeout === 'object' ? (timeout as { valueOf(): unknown }).valueOf() : timeout);
  if (Number.isNaN(t)) throw pyError('TypeError', `${fname}: timeout must be a number`);
  return Math.max(0, t * 1000);
}

/** A set of waiting calls, woken together; each rechecks its condition. */
class Waiters {
  readonly #set = new Set<() => void>();

  get size(): number {
    return this.#set.size;
  }

  /** Waits until `ready()` holds (true), the deadline passes (false), or the client leaves (ClientGone). */
  async until(ready: () => boolean, timeoutMs: number | null, signal: AbortSignal): Promise<boolean> {
    const deadline = timeoutMs === null ? null : performance.now() + timeoutMs;
    while (!ready()) {
      if (signal.aborted) throw new ClientGone();
      const left = deadline === null ? null : deadline - performance.now();
      if (left !== null && left <= 0) return false;
      await new Promise<void>((resolve) => {
        let timer: Timer | undefined;
        const done = (): void => {
          this.#set.delete(done);
          timer?.cancel();
          signal.removeEventListener('abort', done);
          resolve();
        };
        this.#set.add(done);
        // A Timer, not setTimeout: past 2**31-1 ms setTimeout fires at once.
        if (left !== null) timer = new Timer(left / 1000, done);
        signal.addEventListener('abort', done, { once: true });
      });
    }
    return true;
  }

  wakeAll(): void {
    for (const w of [...this.#set]) w();
  }
}

function str(v: unknown, what: string): string {
  if (typeof v !== 'string') throw pyError('TypeError', `${what} must be str, not ${pyTypeName(v)}`);
  return v;
}

function int(v: unknown, what: string): number {
  if (typeof v === 'boolean') return v ? 1 : 0;
  if (typeof v === 'bigint') return Number(v);
  if (typeof v !== 'number' || !Number.isInteger(v)) throw pyError('TypeError', `'${pyTypeName(v)}' object cannot be interpreted as an integer (${what})`);
  return v;
}

function unknownMethod(obj: Managed, name: string): never {
  throw pyError('AttributeError', `'${obj.pyTypeName}' object has no attribute '${name}'`);
}

// ------------------------------------------------------------------ queue.Queue

/** Python's `queue.Queue(maxsize=0)` (the Queue and JoinableQueue typeids). */
export class ManagedQueue extends Managed {
  readonly pyTypeName = 'Queue';
  readonly exposed = ['empty', 'full', 'get', 'get_nowait', 'join', 'put', 'put_nowait', 'qsize', 'task_done'];
  readonly maxsize: number;
  readonly #items: unknown[] = [];
  #head = 0;
  #unfinished = 0;
  readonly #notEmpty = new Waiters();
  readonly #notFull = new Waiters();
  readonly #allDone = new Waiters();

  constructor(maxsize = 0) {
    super();
    this.maxsize = maxsize;
  }

  get size(): number {
    return this.#items.length - this.#head;
  }

  #full(): boolean {
    return this.maxsize > 0 && this.size >= this.maxsize;
  }

  #take(): unknown {
    const v = this.#items[this.#head];
    this.#items[this.#head++] = undefined;
    if (this.#head > 1024 && this.#head * 2 > this.#items.length) {
      this.#items.splice(0, this.#head);
      this.#head = 0;
    }
    this.#notFull.wakeAll();
    return v;
  }

  #add(item: unknown): void {
    this.#items.push(item);
    this.#unfinished++;
    this.#notEmpty.wakeAll();
  }

  async put(item: unknown, block: unknown = true, timeout: unknown = null, ctx: CallContext = LOCAL_CONTEXT): Promise<void> {
    if (this.#full()) {
      if (!block) throw new Full();
      const t = ms(timeout, 'put');
      if (t !== null && Number(timeout) < 0) throw pyError('ValueError', "'timeout' must be a non-negative number");
      if (!(await this.#notFull.until(() => !this.#full(), t, ctx.signal))) throw new Full();
    }
    this.#add(item);
  }

  async get(block: unknown = true, timeout: unknown = null, ctx: CallContext = LOCAL_CONTEXT): Promise<unknown> {
    if (this.size === 0) {
      if (!block) throw new Empty();
      const t = ms(timeout, 'get');
      if (t !== null && Number(timeout) < 0) throw pyError('ValueError', "'timeout' must be a non-negative number");
      if (!(await this.#notEmpty.until(() => this.size > 0, t, ctx.signal))) throw new Empty();
    }
    return this.#take();
  }

  pyCall(name: string, args: readonly unknown[], kwds: Record<string, unknown>, ctx: CallContext): unknown {
    switch (name) {
      case 'put': {
        const [item, block, timeout] = bind('put', [['item'], ['block', true], ['timeout', null]], args, kwds);
        return this.put(item, block, timeout, ctx);
      }
      case 'put_nowait':
        return this.put(bind('put_nowait', [['item']], args, kwds)[0], false, null, ctx);
      case 'get': {
        const [block, timeout] = bind('get', [['block', true], ['timeout', null]], args, kwds);
        return this.get(block, timeout, ctx);
      }
      case 'get_nowait':
        bind('get_nowait', [], args, kwds);
        return this.get(false, null, ctx);
      case 'qsize':
        bind(name, [], args, kwds);
        return this.size;
      case 'empty':
        bind(name, [], args, kwds);
        return this.size === 0;
      case 'full':
        bind(name, [], args, kwds);
        return this.#full();
      case 'task_done':
        bind(name, [], args, kwds);
        if (this.#unfinished <= 0) throw pyError('ValueError', 'task_done() called too many times');
        if (--this.#unfinished === 0) this.#allDone.wakeAll();
        return null;
      case 'join':
        bind(name, [], args, kwds);
        return this.#allDone.until(() => this.#unfinished === 0, null, ctx.signal).then(() => null);
      default:
        return unknownMethod(this, name);
    }
  }

  override pyRepr(): string {
    return `<queue.Queue object (${this.size} items)>`;
  }
}

// ------------------------------------------------------------------ threading

/** Python's `threading.Event`. */
export class ManagedEvent extends Managed {
  readonly pyTypeName = 'Event';
  readonly exposed = ['is_set', 'set', 'clear', 'wait'];
  #flag = false;
  readonly #waiters = new Waiters();

  pyCall(name: string, args: readonly unknown[], kwds: Record<string, unknown>, ctx: CallContext): unknown {
    switch (name) {
      case 'is_set':
        bind(name, [], args, kwds);
        return this.#flag;
      case 'set':
        bind(name, [], args, kwds);
        this.#flag = true;
        this.#waiters.wakeAll();
        return null;
      case 'clear':
        bind(name, [], args, kwds);
        this.#flag = false;
        return null;
      case 'wait': {
        const [timeout] = bind('wait', [['timeout', null]], args, kwds);
        return this.#waiters.until(() => this.#flag, ms(timeout, 'wait'), ctx.signal);
      }
      default:
        return unknownMethod(this, name);
    }
  }

  override pyRepr(): string {
    return `<threading.Event at 0x0: ${this.#flag ? 'set' : 'unset'}>`;
  }
}

/** `acquire(blocking=True, timeout=-1)`'s rules: a timeout with blocking=False is a ValueError; -1 means none. */
function acquireTimeout(blocking: unknown, timeout: unknown): number | null {
  const t = timeout === null || timeout === undefined ? -1 : Number(timeout);
  if (!blocking && t !== -1) throw pyError('ValueError', "can't specify timeout for non-blocking acquire");
  if (t < 0 && t !== -1) throw pyError('ValueError', 'timeout value must be a non-negative number');
  return t === -1 ? null : t * 1000;
}

/**
 * Python's `threading.Lock`, `RLock` (owner: the calling connection, as a
 * Python server's owner is its serving thread), `Semaphore` and
 * `BoundedSemaphore`.
 */
export class ManagedLock extends Managed {
  readonly pyTypeName: string;
  readonly exposed = ['acquire', 'release', 'locked'];
  readonly #kind: 'Lock' | 'RLock' | 'Semaphore' | 'BoundedSemaphore';
  #value: number;
  readonly #initial: number;
  #owner = 0;
  #count = 0;
  readonly #waiters = new Waiters();

  constructor(kind: 'Lock' | 'RLock' | 'Semaphore' | 'BoundedSemaphore', value = 1) {
    super();
    if (value < 0) throw pyError('ValueError', 'semaphore initial value must be >= 0');
    this.pyTypeName = kind;
    this.#kind = kind;
    this.#value = kind === 'Lock' || kind === 'RLock' ? 1 : value;
    this.#initial = this.#value;
  }

  #free(ctx: CallContext): boolean {
    return this.#value > 0 || (this.#kind === 'RLock' && this.#owner === ctx.id);
  }

  /** Takes the lock now if it is free for `ctx`. */
  tryAcquire(ctx: CallContext): boolean {
    if (this.#kind === 'RLock' && this.#count > 0 && this.#owner === ctx.id) {
      this.#count++;
      return true;
    }
    if (this.#value <= 0) return false;
    this.#value--;
    if (this.#kind === 'RLock') {
      this.#owner = ctx.id;
      this.#count = 1;
    }
    return true;
  }

  async acquire(blocking: unknown, timeout: unknown, ctx: CallContext): Promise<boolean> {
    const t = acquireTimeout(blocking, timeout);
    if (this.tryAcquire(ctx)) return true;
    if (!blocking) return false;
    for (;;) {
      const start = performance.now();
      if (!(await this.#waiters.until(() => this.#free(ctx), t, ctx.signal))) return false;
      if (this.tryAcquire(ctx)) return true;
      if (t !== null && performance.now() - start >= t) return false;
    }
  }

  /** Does `ctx` own this RLock (or is this Lock held)? */
  ownedBy(ctx: CallContext): boolean {
    return this.#kind === 'RLock' ? this.#count > 0 && this.#owner === ctx.id : this.#value === 0;
  }

  release(ctx: CallContext, n = 1): void {
    switch (this.#kind) {
      case 'Lock':
        if (this.#value > 0) throw pyError('RuntimeError', 'release unlocked lock');
        this.#value = 1;
        break;
      case 'RLock':
        if (this.#count === 0 || this.#owner !== ctx.id) throw pyError('RuntimeError', 'cannot release un-acquired lock');
        if (--this.#count === 0) {
          this.#owner = 0;
          this.#value = 1;
        }
        break;
      case 'BoundedSemaphore':
        if (this.#value + n > this.#initial) throw pyError('ValueError', 'Semaphore released too many times');
        this.#value += n;
        break;
      default:
        if (n < 1) throw pyError('ValueError', 'n must be one or more');
        this.#value += n;
    }
    this.#waiters.wakeAll();
  }

  /** For Condition.wait: releases an RLock completely; returns the count to restore. */
  releaseAll(ctx: CallContext): number {
    if (this.#kind !== 'RLock') {
      this.release(ctx);
      return 1;
    }
    if (this.#count === 0 || this.#owner !== ctx.id) throw pyError('RuntimeError', 'cannot release un-acquired lock');
    const c = this.#count;
    this.#count = 0;
    this.#owner = 0;
    this.#value = 1;
    this.#waiters.wakeAll();
    return c;
  }

  /** For Condition.wait: takes the lock back with the saved count (waiting as long as it takes). */
  async restore(ctx: CallContext, count: number): Promise<void> {
    await this.acquire(true, null, ctx);
    if (this.#kind === 'RLock') this.#count = count;
  }

  pyCall(name: string, args: readonly unknown[], kwds: Record<string, unknown>, ctx: CallContext): unknown {
    switch (name) {
      case 'acquire': {
        const [blocking, timeout] = bind('acquire', [['blocking', true], ['timeout', -1]], args, kwds);
        return this.acquire(blocking, timeout, ctx);
      }
      case 'release': {
        const sem = this.#kind === 'Semaphore' || this.#kind === 'BoundedSemaphore';
        const [n] = bind('release', sem ? [['n', 1]] : [], args, kwds);
        this.release(ctx, sem ? int(n, 'n') : 1);
        return null;
      }
      case 'locked':
        bind(name, [], args, kwds);
        return this.#value === 0;
      default:
        return unknownMethod(this, name);
    }
  }

  override pyRepr(): string {
    if (this.#kind === 'Lock') return `<unlocked _thread.lock object>`.replace('unlocked', this.#value === 0 ? 'locked' : 'unlocked');
    if (this.#kind === 'RLock') return `<unlocked _thread.RLock object owner=0 count=${this.#count}>`.replace('unlocked', this.#count > 0 ? 'locked' : 'unlocked');
    return `<threading.${this.#kind} at 0x0: value=${this.#value}>`;
  }
}

/** Python's `threading.Condition(lock=None)`: an RLock of its own, waits notified in FIFO order. */
export class ManagedCondition extends Managed {
  readonly pyTypeName = 'Condition';
  readonly exposed = ['acquire', 'release', 'locked', 'wait', 'notify', 'notify_all'];
  readonly lock: ManagedLock;
  readonly #waiting: Array<{ notified: boolean; wake: () => void }> = [];

  constructor(lock?: ManagedLock) {
    super();
    this.lock = lock ?? new ManagedLock('RLock');
  }

  async wait(timeout: unknown, ctx: CallContext): Promise<boolean> {
    if (!this.lock.ownedBy(ctx)) throw pyError('RuntimeError', 'cannot wait on un-acquired lock');
    const t = ms(timeout, 'wait');
    const me = { notified: false, wake: (): void => undefined };
    const woken = new Promise<void>((resolve) => (me.wake = resolve));
    this.#waiting.push(me);
    const saved = this.lock.releaseAll(ctx);
    let timer: Timer | undefined;
    const onAbort = (): void => me.wake();
    try {
      if (t !== null) timer = new Timer(t / 1000, () => me.wake());
      ctx.signal.addEventListener('abort', onAbort, { once: true });
      await woken;
    } finally {
      timer?.cancel();
      ctx.signal.removeEventListener('abort', onAbort);
      const i = this.#waiting.indexOf(me);
      if (i >= 0) this.#waiting.splice(i, 1);
    }
    if (ctx.signal.aborted) throw new ClientGone();
    await this.lock.restore(ctx, saved);
    return me.notified;
  }

  notify(n: number, ctx: CallContext): void {
    if (!this.lock.ownedBy(ctx)) throw pyError('RuntimeError', 'cannot notify on un-acquired lock');
    for (const w of this.#waiting.splice(0, Math.max(0, n))) {
      w.notified = true;
      w.wake();
    }
  }

  pyCall(name: string, args: readonly unknown[], kwds: Record<string, unknown>, ctx: CallContext): unknown {
    switch (name) {
      case 'acquire':
      case 'release':
      case 'locked':
        return this.lock.pyCall(name, args, kwds, ctx);
      case 'wait': {
        const [timeout] = bind('wait', [['timeout', null]], args, kwds);
        return this.wait(timeout, ctx);
      }
      case 'notify': {
        const [n] = bind('notify', [['n', 1]], args, kwds);
        this.notify(int(n, 'n'), ctx);
        return null;
      }
      case 'notify_all':
      case 'notifyAll':
        bind(name, [], args, kwds);
        this.notify(this.#waiting.length, ctx);
        return null;
      default:
        return unknownMethod(this, name);
    }
  }

  override pyRepr(): string {
    return `<Condition(${this.lock.pyRepr()}, ${this.#waiting.length})>`;
  }
}

/** Python's `threading.BrokenBarrierError`. */
function brokenBarrier(): Error {
  return pyError('threading.BrokenBarrierError');
}

/** Python's `threading.Barrier(parties, action=None, timeout=None)` (an action cannot travel: it must be None). */
export class ManagedBarrier extends Managed {
  readonly pyTypeName = 'Barrier';
  readonly exposed = ['__getattribute__', 'wait', 'abort', 'reset'];
  readonly parties: number;
  readonly #timeout: unknown;
  #count = 0;
  #generation = 0;
  #broken = false;
  readonly #waiters = new Waiters();

  constructor(parties: number, timeout: unknown = null) {
    super();
    if (parties < 1) throw pyError('ValueError', 'parties must be >= 1');
    this.parties = parties;
    this.#timeout = timeout;
  }

  async wait(timeout: unknown, ctx: CallContext): Promise<number> {
    if (this.#broken) throw brokenBarrier();
    const index = this.#count++;
    const gen = this.#generation;
    if (this.#count === this.parties) {
      this.#count = 0;
      this.#generation++;
      this.#waiters.wakeAll();
      return index;
    }
    const t = ms(timeout ?? this.#timeout, 'wait');
    let passed: boolean;
    try {
      passed = await this.#waiters.until(() => this.#generation !== gen || this.#broken, t, ctx.signal);
    } catch (e) {
      this.#breakBarrier();
      throw e;
    }
    if (this.#generation !== gen) return index;
    if (!passed) this.#breakBarrier();
    throw brokenBarrier();
  }

  #breakBarrier(): void {
    this.#broken = true;
    this.#count = 0;
    this.#waiters.wakeAll();
  }

  pyCall(name: string, args: readonly unknown[], kwds: Record<string, unknown>, ctx: CallContext): unknown {
    switch (name) {
      case 'wait': {
        const [timeout] = bind('wait', [['timeout', null]], args, kwds);
        return this.wait(timeout, ctx);
      }
      case 'abort':
        bind(name, [], args, kwds);
        this.#breakBarrier();
        return null;
      case 'reset':
        bind(name, [], args, kwds);
        if (this.#count > 0) this.#breakBarrier();
        this.#generation++;
        this.#broken = false;
        this.#count = 0;
        this.#waiters.wakeAll();
        return null;
      case '__getattribute__': {
        const [attr] = bind('__getattribute__', [['name']], args, kwds);
        switch (str(attr, 'attribute name')) {
          case 'parties':
            return this.parties;
          case 'n_waiting':
            return this.#count;
          case 'broken':
            return this.#broken;
          default:
            throw pyError('AttributeError', `'Barrier' object has no attribute '${String(attr)}'`);
        }
      }
      default:
        return unknownMethod(this, name);
    }
  }

  override pyRepr(): string {
    return `<threading.Barrier at 0x0: waiters=${this.#count}/${this.parties}>`;
  }
}

// ------------------------------------------------------------------ list, dict

function index(i: unknown, length: number, what: string, clamp = false): number {
  let n = int(i, `${what} indices`);
  if (n < 0) n += length;
  if (clamp) return Math.min(Math.max(n, 0), length);
  if (n < 0 || n >= length) throw pyError('IndexError', `${what} index out of range`);
  return n;
}

/** The indices a slice selects (Python's `slice.indices`). */
function sliceIndices(s: PySlice, length: number): number[] {
  const step = s.step === null || s.step === undefined ? 1 : int(s.step, 'slice');
  if (step === 0) throw pyError('ValueError', 'slice step cannot be zero');
  const norm = (v: unknown, dflt: number, lo: number, hi: number): number => {
    if (v === null || v === undefined) return dflt;
    let n = int(v, 'slice');
    if (n < 0) n += length;
    return Math.min(Math.max(n, lo), hi);
  };
  const out: number[] = [];
  if (step > 0) {
    const start = norm(s.start, 0, 0, length);
    const stop = norm(s.stop, length, 0, length);
    for (let i = start; i < stop; i += step) out.push(i);
  } else {
    const start = norm(s.start, length - 1, -1, length - 1);
    const stop = norm(s.stop, -1, -1, length - 1);
    for (let i = start; i > stop; i += step) out.push(i);
  }
  return out;
}

/**
 * The most items a served list may hold: past it, a request that would grow
 * one (`l * 10**12`, say) is a MemoryError for that caller, as an allocation
 * that fails is in Python, not a server that dies of an exhausted heap.
 */
const MAX_LIST_ITEMS = 1 << 26;
/**
 * Attribute names longer than LONG_KEY_CHARS a Namespace holds at most: V8
 * hashes such a string by its length alone, so n of them cost n * n / 2
 * comparisons in full (the unpickler's maxLongKeys allows as many in a load).
 */
const NAMESPACE_LONG_NAMES = 64;

function checkSize(n: number): void {
  if (n > MAX_LIST_ITEMS) throw pyError('MemoryError', `a served list holds at most ${MAX_LIST_ITEMS} items, not ${n}`);
}

function iterableItems(v: unknown, fname: string): unknown[] {
  if (Array.isArray(v)) return [...v];
  if (typeof v === 'string') return [...v];
  if (v instanceof Set || v instanceof Map) return [...(v as Iterable<unknown>)].map((x) => (Array.isArray(x) && v instanceof Map ? x[0] : x));
  if (v instanceof Uint8Array) return [...v];
  const e = entriesOf(v);
  if (e !== null) return e.map(([k]) => k);
  if (v instanceof PyArray) return [...v.items];
  throw pyError('TypeError', `'${pyTypeName(v)}' object is not iterable (${fname})`);
}

/** Python's `list`. */
export class ManagedList extends Managed {
  readonly pyTypeName = 'list';
  readonly exposed = ['__add__', '__contains__', '__delitem__', '__getitem__', '__len__', '__mul__', '__reversed__', '__rmul__', '__setitem__', 'append', 'clear', 'copy', 'count', 'extend', 'index', 'insert', 'pop', 'remove', 'reverse', 'sort', '__imul__'];
  items: unknown[];

  constructor(items: unknown[] = []) {
    super();
    this.items = items;
  }

  pyCall(name: string, args: readonly unknown[], kwds: Record<string, unknown>): unknown {
    const a = this.items;
    const one = (): unknown => bind(name, [['x']], args, kwds)[0];
    switch (name) {
      case '__len__':
        bind(name, [], args, kwds);
        return a.length;
      case '__getitem__': {
        const i = one();
        if (i instanceof PySlice) return sliceIndices(i, a.length).map((k) => a[k]);
        return a[index(i, a.length, 'list')];
      }
      case '__setitem__': {
        const [i, v] = bind(name, [['index'], ['value']], args, kwds);
        if (i instanceof PySlice) {
          const idx = sliceIndices(i, a.length);
          const vals = iterableItems(v, name);
          const step = i.step === null || i.step === undefined ? 1 : int(i.step, 'slice');
          if (step === 1) {
            const start = idx.length > 0 ? idx[0]! : Math.min(Math.max(i.start === null ? 0 : index(i.start, a.length, 'list', true), 0), a.length);
            checkSize(a.length - idx.length + vals.length);
            // Rebuilt, not spliced with a spread: a spread of 150,000+ values overflows the stack.
            const rebuilt = a.slice(0, start).concat(vals, a.slice(start + idx.length));
            a.length = 0;
            for (const x of rebuilt) a.push(x);
          } else {
            if (vals.length !== idx.length) throw pyError('ValueError', `attempt to assign sequence of size ${vals.length} to extended slice of size ${idx.length}`);
            idx.forEach((k, j) => (a[k] = vals[j]));
          }
          return null;
        }
        a[index(i, a.length, 'list assignment')] = v;
        return null;
      }
      case '__delitem__': {
        const i = one();
        if (i instanceof PySlice) {
          for (const k of sliceIndices(i, a.length).sort((x, y) => y - x)) a.splice(k, 1);
          return null;
        }
        a.splice(index(i, a.length, 'list assignment'), 1);
        return null;
      }
      case '__contains__': {
        const v = one();
        return a.some((x) => pyEquals(x, v));
      }
      case 'append':
        a.push(one());
        return null;
      case 'extend': {
        const more = iterableItems(one(), name);
        checkSize(a.length + more.length);
        for (const x of more) a.push(x);
        return null;
      }
      case 'insert': {
        const [i, v] = bind(name, [['index'], ['object']], args, kwds);
        a.splice(index(i, a.length, 'list', true), 0, v);
        return null;
      }
      case 'pop': {
        const [i] = bind(name, [['index', -1]], args, kwds);
        if (a.length === 0) throw pyError('IndexError', 'pop from empty list');
        return a.splice(index(i, a.length, 'pop'), 1)[0];
      }
      case 'remove': {
        const v = one();
        const k = a.findIndex((x) => pyEquals(x, v));
        if (k < 0) throw pyError('ValueError', 'list.remove(x): x not in list');
        a.splice(k, 1);
        return null;
      }
      case 'index': {
        const [v, start, stop] = bind(name, [['value'], ['start', 0], ['stop', a.length]], args, kwds);
        const s = index(start, a.length, 'list', true);
        const e = index(stop, a.length, 'list', true);
        for (let k = s; k < e; k++) if (pyEquals(a[k], v)) return k;
        throw pyError('ValueError', `${pyRepr(v)} is not in list`);
      }
      case 'count': {
        const v = one();
        return a.filter((x) => pyEquals(x, v)).length;
      }
      case 'reverse':
        bind(name, [], args, kwds);
        a.reverse();
        return null;
      case 'sort': {
        if (args.length > 0) throw pyError('TypeError', 'sort() takes no positional arguments');
        const [key, reverse] = bind(name, [['key', null], ['reverse', false]], [], kwds);
        if (key !== null) throw pyError('TypeError', 'a key function cannot be run by a billiard-ts manager');
        const sorted = [...a].sort(pyCompare);
        if (reverse) sorted.reverse();
        for (let k = 0; k < sorted.length; k++) a[k] = sorted[k];
        return null;
      }
      case 'clear':
        bind(name, [], args, kwds);
        a.length = 0;
        return null;
      case 'copy':
        bind(name, [], args, kwds);
        return [...a];
      case '__add__': {
        const v = one();
        if (!Array.isArray(v) || v instanceof PyTuple) throw pyError('TypeError', `can only concatenate list (not "${pyTypeName(v)}") to list`);
        return [...a, ...v];
      }
      case '__mul__':
      case '__rmul__': {
        const n = int(one(), 'repeat count');
        const out: unknown[] = [];
        if (n > 0 && a.length > 0) {
          checkSize(a.length * n);
          for (let k = 0; k < n; k++) for (const x of a) out.push(x);
        }
        return out;
      }
      case '__imul__': {
        const n = int(one(), 'repeat count');
        const copy = [...a];
        if (n > 0 && copy.length > 0) checkSize(copy.length * n);
        a.length = 0;
        if (copy.length > 0) for (let k = 0; k < n; k++) for (const x of copy) a.push(x);
        return [...a];
      }
      case '__reversed__':
        bind(name, [], args, kwds);
        return [...a].reverse();
      default:
        return unknownMethod(this, name);
    }
  }

  override pyGetValue(): unknown {
    return [...this.items];
  }

  override pyRepr(): string {
    return pyRepr(this.items);
  }
}

/** Python's `dict`: keys compared as Python hashes them (`1`, `1.0`, `True` are one key; tuples by value). */
export class ManagedDict extends Managed {
  readonly pyTypeName = 'dict';
  readonly exposed = ['__contains__', '__delitem__', '__getitem__', '__iter__', '__len__', '__setitem__', 'clear', 'copy', 'get', 'items', 'keys', 'pop', 'popitem', 'setdefault', 'update', 'values', '__iter__'];
  readonly #map = new Map<string, [unknown, unknown]>();

  constructor(init?: unknown, kwds?: Record<string, unknown>) {
    super();
    if (init !== undefined && init !== null) this.#update(init);
    if (kwds) for (const [k, v] of Object.entries(kwds)) this.set(k, v);
  }

  get size(): number {
    return this.#map.size;
  }

  set(k: unknown, v: unknown): void {
    const h = hashKey(k);
    const had = this.#map.get(h);
    if (had) had[1] = v;
    else this.#map.set(h, [k, v]);
  }

  #update(other: unknown): void {
    const e = entriesOf(other);
    if (e !== null) {
      for (const [k, v] of e) this.set(k, v);
      return;
    }
    if (other instanceof ManagedDict) {
      for (const [k, v] of other.#map.values()) this.set(k, v);
      return;
    }
    if (Array.isArray(other)) {
      other.forEach((pair, i) => {
        if (!Array.isArray(pair) || pair.length !== 2) throw pyError('ValueError', `dictionary update sequence element #${i} has length ${Array.isArray(pair) ? pair.length : 1}; 2 is required`);
        this.set(pair[0], pair[1]);
      });
      return;
    }
    throw pyError('TypeError', `'${pyTypeName(other)}' object is not iterable`);
  }

  /**
   * A copy of the dict that pickles as a dict. Not a Map: its keys would go
   * into a V8 hash table, where a client's keys that share V8's buckets
   * (bigints equal in their low 64 bits, or crafted numbers, stored here by
   * strings) would cost the square of their number (40,000 keys `k << 64`:
   * 5.7 s for one `copy()`, 24 ms without the Map).
   */
  toValue(): PyDictItems {
    return new PyDictItems(Array.from(this.#map.values(), ([k, v]) => [k, v] as const));
  }

  /** The keys, in order. */
  keyList(): unknown[] {
    return Array.from(this.#map.values(), ([k]) => k);
  }

  pyCall(name: string, args: readonly unknown[], kwds: Record<string, unknown>): unknown {
    const m = this.#map;
    switch (name) {
      case '__len__':
        bind(name, [], args, kwds);
        return m.size;
      case '__getitem__': {
        const [k] = bind(name, [['key']], args, kwds);
        const hit = m.get(hashKey(k));
        if (!hit) throw pyError('KeyError', k);
        return hit[1];
      }
      case '__setitem__': {
        const [k, v] = bind(name, [['key'], ['value']], args, kwds);
        this.set(k, v);
        return null;
      }
      case '__delitem__': {
        const [k] = bind(name, [['key']], args, kwds);
        if (!m.delete(hashKey(k))) throw pyError('KeyError', k);
        return null;
      }
      case '__contains__': {
        const [k] = bind(name, [['key']], args, kwds);
        return m.has(hashKey(k));
      }
      case 'get': {
        const [k, d] = bind(name, [['key'], ['default', null]], args, kwds);
        return m.get(hashKey(k))?.[1] ?? (m.has(hashKey(k)) ? m.get(hashKey(k))![1] : d);
      }
      case 'keys':
        bind(name, [], args, kwds);
        return [...m.values()].map(([k]) => k);
      case 'values':
        bind(name, [], args, kwds);
        return [...m.values()].map(([, v]) => v);
      case 'items':
        bind(name, [], args, kwds);
        return [...m.values()].map(([k, v]) => tuple(k, v));
      case 'update': {
        if (args.length > 1) throw pyError('TypeError', `update expected at most 1 argument, got ${args.length}`);
        if (args.length === 1) this.#update(args[0]);
        for (const [k, v] of Object.entries(kwds)) this.set(k, v);
        return null;
      }
      case 'pop': {
        if (args.length < 1 || args.length > 2) throw pyError('TypeError', `pop expected 1 or 2 arguments, got ${args.length}`);
        const h = hashKey(args[0]);
        const hit = m.get(h);
        if (!hit) {
          if (args.length === 2) return args[1];
          throw pyError('KeyError', args[0]);
        }
        m.delete(h);
        return hit[1];
      }
      case 'popitem': {
        bind(name, [], args, kwds);
        const last = [...m.keys()].pop();
        if (last === undefined) throw pyError('KeyError', 'popitem(): dictionary is empty');
        const [k, v] = m.get(last)!;
        m.delete(last);
        return tuple(k, v);
      }
      case 'setdefault': {
        const [k, d] = bind(name, [['key'], ['default', null]], args, kwds);
        const hit = m.get(hashKey(k));
        if (hit) return hit[1];
        this.set(k, d);
        return d;
      }
      case 'copy':
        bind(name, [], args, kwds);
        return this.toValue();
      case 'clear':
        bind(name, [], args, kwds);
        m.clear();
        return null;
      case '__iter__':
        bind(name, [], args, kwds);
        return new ManagedIterator([...m.values()].map(([k]) => k)[Symbol.iterator]());
      case 'has_key': {
        // billiard's DictProxy lists it; Python 3 dicts have no such method.
        return unknownMethod(this, name);
      }
      default:
        return unknownMethod(this, name);
    }
  }

  override pyGetValue(): unknown {
    return this.toValue();
  }

  override pyRepr(): string {
    return `{${[...this.#map.values()].map(([k, v]) => `${pyRepr(k)}: ${pyRepr(v)}`).join(', ')}}`;
  }
}

/** An iterator on the server: `__next__` until StopIteration (what `#PROXY` Iterator replies hold). */
export class ManagedIterator extends Managed {
  readonly pyTypeName = 'iterator';
  readonly exposed = ['__next__', 'send', 'throw', 'close'];
  readonly #it: Iterator<unknown> | AsyncIterator<unknown>;
  #done = false;

  constructor(it: Iterator<unknown> | AsyncIterator<unknown>) {
    super();
    this.#it = it;
  }

  async #next(value?: unknown): Promise<unknown> {
    if (this.#done) throw pyError('StopIteration');
    const r = await (value === undefined ? this.#it.next() : this.#it.next(value));
    if (r.done === true) {
      this.#done = true;
      throw pyError('StopIteration');
    }
    return r.value;
  }

  pyCall(name: string, args: readonly unknown[], kwds: Record<string, unknown>): unknown {
    switch (name) {
      case '__next__':
        bind(name, [], args, kwds);
        return this.#next();
      case 'send':
        return this.#next(bind(name, [['value']], args, kwds)[0]);
      case 'throw':
        this.#done = true;
        void this.#it.return?.();
        throw args[0] instanceof Error ? args[0] : pyError('TypeError', 'throw() needs an exception');
      case 'close':
        bind(name, [], args, kwds);
        this.#done = true;
        return Promise.resolve(this.#it.return?.()).then(() => null);
      default:
        return unknownMethod(this, name);
    }
  }

  override pyDispose(): void {
    if (!this.#done) void Promise.resolve(this.#it.return?.()).catch(() => undefined);
  }
}

// ------------------------------------------------------------------ Value, Array, Namespace

/** The managers module's `Value(typecode, value, lock=True)`: a plain holder (not shared memory). */
export class ManagedValue extends Managed {
  readonly pyTypeName = 'Value';
  readonly exposed = ['get', 'set'];
  readonly typecode: unknown;
  value: unknown;

  constructor(typecode: unknown, value: unknown) {
    super();
    this.typecode = typecode;
    this.value = value;
  }

  pyCall(name: string, args: readonly unknown[], kwds: Record<string, unknown>): unknown {
    switch (name) {
      case 'get':
        bind(name, [], args, kwds);
        return this.value;
      case 'set':
        this.value = bind(name, [['value']], args, kwds)[0];
        return null;
      default:
        return unknownMethod(this, name);
    }
  }

  /** A `managers.Value` (pickles as `multiprocessing.managers.Value` with the state `{'_typecode': ..., '_value': ...}`, spec §9.2.9). */
  override pyGetValue(): unknown {
    return new ManagerValue(this.typecode, this.value);
  }

  override pyRepr(): string {
    return `Value(${pyRepr(this.typecode)}, ${pyRepr(this.value)})`;
  }
}

/** `array.array(typecode, sequence)`, the Array typeid. */
export class ManagedArray extends Managed {
  readonly pyTypeName = 'array.array';
  readonly exposed = ['__len__', '__getitem__', '__setitem__'];
  readonly array: PyArray;

  constructor(typecode: unknown, sequence: unknown) {
    super();
    this.array = new PyArray(str(typecode, 'typecode'), iterableItems(sequence ?? [], 'array') as Array<number | bigint>);
  }

  pyCall(name: string, args: readonly unknown[], kwds: Record<string, unknown>): unknown {
    const a = this.array.items;
    switch (name) {
      case '__len__':
        bind(name, [], args, kwds);
        return a.length;
      case '__getitem__': {
        const [i] = bind(name, [['index']], args, kwds);
        if (i instanceof PySlice) return new PyArray(this.array.typecode, sliceIndices(i, a.length).map((k) => a[k]!));
        return a[index(i, a.length, 'array')];
      }
      case '__setitem__': {
        const [i, v] = bind(name, [['index'], ['value']], args, kwds);
        if (i instanceof PySlice) {
          const idx = sliceIndices(i, a.length);
          const vals = v instanceof PyArray ? v.items : iterableItems(v, name);
          if (vals.length !== idx.length) throw pyError('ValueError', 'can only assign array of the same length to a slice here');
          idx.forEach((k, j) => (a[k] = PyArray.check(this.array.typecode, vals[j])));
          return null;
        }
        const k = index(i, a.length, 'array assignment');
        try {
          a[k] = PyArray.check(this.array.typecode, v);
        } catch (e) {
          throw e instanceof RangeError ? pyError('OverflowError', e.message) : pyError('TypeError', (e as Error).message);
        }
        return null;
      }
      default:
        return unknownMethod(this, name);
    }
  }

  override pyGetValue(): unknown {
    return new PyArray(this.array.typecode, this.array.items);
  }

  override pyRepr(): string {
    return this.array.toString();
  }
}

/** The managers module's `Namespace(**kwds)`. */
export class ManagedNamespace extends Managed {
  readonly pyTypeName = 'Namespace';
  readonly exposed = ['__getattribute__', '__setattr__', '__delattr__'];
  readonly attrs = new Map<string, unknown>();
  /** Attribute names longer than LONG_KEY_CHARS (at most NAMESPACE_LONG_NAMES). */
  #longNames = 0;

  constructor(kwds?: Record<string, unknown>) {
    super();
    // kwds come from a load, which allows 64 keys over LONG_KEY_CHARS (maxLongKeys).
    if (kwds) for (const [k, v] of Object.entries(kwds)) this.pyCall('__setattr__', [k, v], {});
  }

  #dict(): Record<string, unknown> {
    const d: Record<string, unknown> = Object.create(null);
    for (const [k, v] of this.attrs) d[k] = v;
    return d;
  }

  pyCall(name: string, args: readonly unknown[], kwds: Record<string, unknown>): unknown {
    switch (name) {
      case '__getattribute__': {
        const attr = str(bind(name, [['name']], args, kwds)[0], 'attribute name');
        if (attr === '__dict__') return this.#dict();
        if (!this.attrs.has(attr)) throw pyError('AttributeError', `'Namespace' object has no attribute '${attr}'`);
        return this.attrs.get(attr);
      }
      case '__setattr__': {
        const [attr, v] = bind(name, [['name'], ['value']], args, kwds);
        const key = str(attr, 'attribute name');
        if (key.length > LONG_KEY_CHARS && !this.attrs.has(key)) {
          // V8 hashes such a name by its length alone: each is compared with every other in the table.
          if (this.#longNames >= NAMESPACE_LONG_NAMES) {
            throw pyError('ValueError', `a billiard-ts manager's Namespace holds at most ${NAMESPACE_LONG_NAMES} attribute names longer than ${LONG_KEY_CHARS} characters`);
          }
          this.#longNames++;
        }
        this.attrs.set(key, v);
        return null;
      }
      case '__delattr__': {
        const attr = str(bind(name, [['name']], args, kwds)[0], 'attribute name');
        if (!this.attrs.delete(attr)) throw pyError('AttributeError', `'Namespace' object has no attribute '${attr}'`);
        if (attr.length > LONG_KEY_CHARS) this.#longNames--;
        return null;
      }
      default:
        return unknownMethod(this, name);
    }
  }

  /** A `managers.Namespace` of its attributes (pickles as `multiprocessing.managers.Namespace` with its attribute dict as state). */
  override pyGetValue(): unknown {
    return new Namespace(this.#dict());
  }

  override pyRepr(): string {
    const items = [...this.attrs].filter(([k]) => !k.startsWith('_')).sort(([a], [b]) => (a < b ? -1 : 1));
    return `Namespace(${items.map(([k, v]) => `${k}=${pyRepr(v)}`).join(', ')})`;
  }
}

export { PyFrozenSet };
