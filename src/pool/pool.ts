/**
 * billiard's `Pool` (spec/pool.md, spec/api.md §4), on billiard's wire
 * protocol (protocol.ts) with one inqueue/outqueue pair per worker, as
 * Celery's AsynPool has (spec/pool.md §8b, §9.1 req. 16): no cross-process
 * lock is needed, a worker killed while idle cannot wedge the others, and
 * the pool knows which job each worker holds.
 *
 * The pool hands a worker one job at a time (a worker gets its next job
 * when it answers READY), so a worker that dies fails exactly the job it
 * held: with `WorkerLostError` when the job was acknowledged, and the job
 * goes back to the front of the queue when it was not. A dead worker is
 * replaced at once (its exit is seen when its outqueue reaches EOF, not by
 * polling). Results are dispatched by job id from one async reader loop per
 * worker; nothing here needs a thread.
 *
 * Every frame from a worker is hostile: an undecodable or malformed one
 * fails the job that worker holds (a typed error) and the pool runs on.
 */

import { availableParallelism, constants } from 'node:os';

import { TimeoutError } from '../connection/errors.js';
import { timeoutSeconds } from '../connection/timers.js';
import { EOFError, UnpicklingError } from '../pickle/errors.js';
import { loads, PyGlobal, PyTuple, tuple, type PickleRegistry } from '../pickle/index.js';
import { AssertionError, RestartFreqExceeded, Terminated, TimeLimitExceeded, ValueError, WorkerLostError } from '../process/errors.js';
import { ForkServerProcess, Process, SpawnProcess } from '../process/process.js';
import { getStartMethod } from '../process/start-method.js';
import { SimpleQueue } from '../queues/index.js';
import { ACK, DEATH, encodeTask, ExceptionInfo, funcRef, MAPSTAR, READY, STARMAPSTAR } from './protocol.js';
import { poolWorker } from './worker.js';
import { poolRegistry } from './protocol.js';

// eslint-disable-next-line @typescript-eslint/no-explicit-any -- any function, whatever its parameters
type AnyFn = (...args: any[]) => unknown;
/** A task function: an exported function of a module (found as Process targets are). */
export type PoolFunction = AnyFn | PyGlobal;

/** Options of {@link Pool}: billiard's keyword arguments (this slice's subset). */
export interface PoolOptions {
  /** Number of worker processes; defaults to the number of CPUs. */
  processes?: number | null;
  /** Called in each worker as `initializer(...initargs)` before its first job (an exported function). */
  initializer?: AnyFn | PyGlobal | null;
  initargs?: readonly unknown[];
  /** A worker exits (code 155) after this many tasks and is replaced; null: never. */
  maxtasksperchild?: number | null;
  /** The context (start method) of the workers: an object with `startMethod`, or a method name. */
  context?: { startMethod: string } | string | null;
  /**
   * Hard time limit of every job part, in seconds from its ACK: past it the
   * part fails with `TimeLimitExceeded` and its worker is killed (SIGTERM,
   * SIGKILL 0.1 s later) and replaced. null: none.
   */
  timeout?: number | null;
}

/** What a job is told when its hard time limit passes (billiard's `timeout_callback`). */
export type TimeoutCallback = (info: { soft: boolean; timeout: number }) => void;

/** Options of {@link Pool.applyAsync}. */
export interface ApplyOptions<T> {
  /** Keyword arguments: a JavaScript function gets them as its last argument. */
  kwds?: Record<string, unknown> | null;
  /** Called with the value on success (an exception it throws is logged and ignored). */
  callback?: ((value: T) => void) | null;
  /** Called with billiard's `ExceptionInfo` on failure (its `.exception` is the error). */
  errorCallback?: ((einfo: ExceptionInfo) => void) | null;
  /** This job's hard time limit in seconds, instead of the pool's (see {@link PoolOptions.timeout}). */
  timeout?: number | null;
  /** Called when the hard limit passes, after the result is set and before the worker is killed. */
  timeoutCallback?: TimeoutCallback | null;
}

/** Options of {@link Pool.mapAsync} and {@link Pool.starmapAsync}. */
export interface MapOptions<T> {
  /** Items per job; default `ceil(n / (4 * processes))`. */
  chunksize?: number | null;
  callback?: ((values: T[]) => void) | null;
  errorCallback?: ((einfo: ExceptionInfo) => void) | null;
}

const RUN = 0;
const CLOSE = 1;
const TERMINATE = 2;

/** Workers dying in a row before accepting a job, after which the jobs waiting fail. */
const START_FAILURE_LIMIT = 5;

/** A time limit option: null/undefined none, else positive seconds. */
function limitSeconds(v: number | null | undefined, name: string): number | null {
  if (v === null || v === undefined) return null;
  if (typeof v !== 'number' || !(v > 0) || !Number.isFinite(v)) throw new ValueError(`${name} must be a positive number of seconds or null`);
  return v;
}

/** billiard's job counter: one per process, shared by every pool and result kind, from 0. */
let jobCounter = 0;

function safeCall(fn: ((v: never) => void) | null | undefined, value: unknown): void {
  if (!fn) return;
  try {
    fn(value as never);
  } catch (e) {
    process.emitWarning(`Pool callback raised exception: ${String(e)}`, 'PoolCallbackWarning');
  }
}

function exitDescription(code: number | null): string {
  if (code !== null && code < 0) {
    const name = Object.entries(constants.signals).find(([, n]) => n === -code)?.[0];
    return `signal ${-code}${name ? ` (${name})` : ''}`;
  }
  return `exitcode ${code}`;
}

/** A job as the pool holds it until a worker answers READY for it. */
interface Task {
  job: number;
  i: number | null;
  payload: Uint8Array;
  result: ResultBase;
  acked: boolean;
  /** Its hard time limit in seconds (null: none), and what to tell when it passes. */
  limit: number | null;
  onTimeout: TimeoutCallback | null;
  /** Running from the ACK while a limit is set. */
  timer: NodeJS.Timeout | null;
}

/** What every result kind shares: acceptance, the pids, the set of failures. @internal */
abstract class ResultBase {
  /** The job id. */
  readonly job: number;
  /** @internal */ readonly pool: Pool;
  #pids: number[] = [];
  #accepted = 0;
  /** @internal */ readonly parts: number;

  constructor(pool: Pool, parts: number) {
    this.job = jobCounter++;
    this.pool = pool;
    this.parts = parts;
  }

  /** True once every part of the job was acknowledged by a worker. */
  accepted(): boolean {
    return this.#accepted >= this.parts;
  }

  /** The pids of the workers that acknowledged the job's parts. */
  workerPids(): number[] {
    return [...new Set(this.#pids)];
  }

  /** @internal */
  ack(pid: number): void {
    this.#accepted++;
    this.#pids.push(pid);
  }

  /** @internal a part's READY: ok and its value, or its ExceptionInfo. */
  abstract set(i: number | null, ok: boolean, value: unknown): void;
  /** @internal the job is settled: the pool forgets it. */
  abstract get done(): boolean;
}

/** A promise that never rejects, and its resolver. */
function latch(): { promise: Promise<void>; resolve: () => void } {
  let resolve!: () => void;
  const promise = new Promise<void>((r) => (resolve = r));
  return { promise, resolve };
}

async function waitFor(promise: Promise<void>, timeout: number | null | undefined): Promise<boolean> {
  const t = timeoutSeconds(timeout);
  if (t === null) {
    await promise;
    return true;
  }
  let timer: NodeJS.Timeout | undefined;
  const expired = new Promise<boolean>((r) => (timer = setTimeout(() => r(false), t * 1000)));
  try {
    return await Promise.race([promise.then(() => true), expired]);
  } finally {
    clearTimeout(timer);
  }
}

/**
 * The result of `applyAsync` (and the base of `mapAsync`'s): `await
 * r.get(timeout)`, `ready()`, `successful()`, `accepted()`,
 * `workerPids()`. It is thenable: `await r` is `await r.get()`.
 */
export class ApplyResult<T = unknown> extends ResultBase implements PromiseLike<T> {
  #settled = latch();
  #ready = false;
  #success = false;
  #value: unknown;
  #einfo: ExceptionInfo | null = null;
  readonly #callback: ((value: T) => void) | null | undefined;
  readonly #errorCallback: ((einfo: ExceptionInfo) => void) | null | undefined;

  /** @internal */
  constructor(pool: Pool, parts: number, callback?: ((value: T) => void) | null, errorCallback?: ((einfo: ExceptionInfo) => void) | null) {
    super(pool, parts);
    this.#callback = callback;
    this.#errorCallback = errorCallback;
  }

  /** True once the job has a value or an error. */
  ready(): boolean {
    return this.#ready;
  }

  /** Whether the job succeeded; AssertionError (billiard's) when not ready. */
  successful(): boolean {
    if (!this.#ready) throw new AssertionError(`${String(this)} not ready`);
    return this.#success;
  }

  /** Waits until the job is ready or `timeout` seconds passed (null: for ever). */
  async wait(timeout?: number | null): Promise<void> {
    await waitFor(this.#settled.promise, timeout);
  }

  /**
   * The value, or throws the job's error (its class kept: ours, Python's
   * builtins, billiard's). TimeoutError when not ready within `timeout` seconds.
   */
  async get(timeout?: number | null): Promise<T> {
    if (!(await waitFor(this.#settled.promise, timeout))) throw new TimeoutError();
    if (this.#success) return this.#value as T;
    throw this.#einfo!.exception;
  }

  then<A = T, B = never>(onfulfilled?: ((value: T) => A | PromiseLike<A>) | null, onrejected?: ((reason: unknown) => B | PromiseLike<B>) | null): Promise<A | B> {
    return this.get().then(onfulfilled, onrejected);
  }

  /** @internal */
  get done(): boolean {
    return this.#ready;
  }

  /** @internal */
  set(_i: number | null, ok: boolean, value: unknown): void {
    if (this.#ready) return;
    if (ok) this.succeed(value as T);
    else this.fail(value as ExceptionInfo);
  }

  /** @internal */
  succeed(value: T): void {
    if (this.#ready) return;
    this.#ready = true;
    this.#success = true;
    this.#value = value;
    this.#settled.resolve();
    safeCall(this.#callback, value);
  }

  /** @internal */
  fail(einfo: ExceptionInfo): void {
    if (this.#ready) return;
    this.#ready = true;
    this.#success = false;
    this.#einfo = einfo;
    this.#settled.resolve();
    safeCall(this.#errorCallback, einfo);
  }

  override toString(): string {
    return `<${this.constructor.name}: ${this.job} ack:${this.accepted() ? 'True' : 'False'} ready:${this.#ready ? 'True' : 'False'}>`;
  }
}

/**
 * The result of `mapAsync`/`starmapAsync`: one job in chunks. It is ready
 * when every chunk is, or at the first failed chunk (billiard's rule).
 */
export class MapResult<T = unknown> extends ApplyResult<T[]> {
  readonly #values: T[];
  readonly #chunksize: number;
  #left: number;

  /** @internal */
  constructor(pool: Pool, length: number, chunksize: number, options?: MapOptions<T>) {
    const chunks = chunksize === 0 ? 0 : Math.ceil(length / chunksize);
    super(pool, chunks, options?.callback, options?.errorCallback);
    this.#values = new Array<T>(length);
    this.#chunksize = chunksize;
    this.#left = chunks;
    if (chunks === 0) this.succeed([]);
  }

  /** @internal */
  override set(i: number | null, ok: boolean, value: unknown): void {
    if (this.ready()) return;
    if (!ok) return this.fail(value as ExceptionInfo);
    const k = typeof i === 'number' ? i : -1;
    const start = k * this.#chunksize;
    if (!Array.isArray(value) || k < 0 || start >= this.#values.length) {
      return this.fail(badMessage(`a map chunk answer that does not fit job ${this.job} (chunk ${String(i)})`));
    }
    for (let n = 0; n < value.length && start + n < this.#values.length; n++) this.#values[start + n] = value[n] as T;
    if (--this.#left === 0) this.succeed(this.#values);
  }
}

/**
 * The iterator of `imap`/`imapUnordered`: `for await (const v of it)`, or
 * `await it.next(timeout)`. A failed item throws its error where it stands.
 */
export class IMapIterator<T = unknown> extends ResultBase implements AsyncIterableIterator<T> {
  readonly #ordered: boolean;
  readonly #chunked: boolean;
  /** Chunk (or item) index -> its values, ok or not. */
  readonly #arrived = new Map<number, { ok: boolean; values: unknown[] }>();
  /** Unordered: settled chunks in arrival order. */
  readonly #queue: Array<{ ok: boolean; values: unknown[] }> = [];
  #nextIndex = 0;
  #buffer: unknown[] = [];
  #failed: ExceptionInfo | null = null;
  #consumed = 0;
  #arrivals = 0;
  #changed = latch();

  /** @internal */
  constructor(pool: Pool, chunks: number, ordered: boolean, chunked: boolean) {
    super(pool, chunks);
    this.#ordered = ordered;
    this.#chunked = chunked;
  }

  /** @internal */
  get done(): boolean {
    return this.#arrivals >= this.parts;
  }

  get #consumedAll(): boolean {
    return this.#consumed >= this.parts;
  }

  /** True when every item was delivered. */
  ready(): boolean {
    return this.#consumedAll && this.#buffer.length === 0;
  }

  /** @internal */
  set(i: number | null, ok: boolean, value: unknown): void {
    const k = typeof i === 'number' ? i : -1;
    if (k < 0 || k >= this.parts || this.#arrived.has(k) || (this.#ordered && k < this.#nextIndex)) return;
    const entry = ok ? { ok, values: this.#chunked ? (Array.isArray(value) ? value : [value]) : [value] } : { ok, values: [value] };
    this.#arrivals++;
    if (this.#ordered) this.#arrived.set(k, entry);
    else this.#queue.push(entry);
    const wake = this.#changed;
    this.#changed = latch();
    wake.resolve();
  }

  /** @internal fails every part not yet arrived (the pool was terminated). */
  failAll(einfo: ExceptionInfo): void {
    this.#failed = einfo;
    const wake = this.#changed;
    this.#changed = latch();
    wake.resolve();
  }

  #take(): { ok: boolean; values: unknown[] } | undefined {
    if (this.#ordered) {
      const e = this.#arrived.get(this.#nextIndex);
      if (e === undefined) return undefined;
      this.#arrived.delete(this.#nextIndex++);
      return e;
    }
    return this.#queue.shift();
  }

  /** The next value; TimeoutError when none comes within `timeout` seconds. */
  async next(timeout?: number | null): Promise<IteratorResult<T>> {
    for (;;) {
      if (this.#buffer.length > 0) return { done: false, value: this.#buffer.shift() as T };
      if (this.#consumedAll) return { done: true, value: undefined };
      const e = this.#take();
      if (e !== undefined) {
        this.#consumed++;
        if (!e.ok) throw (e.values[0] as ExceptionInfo).exception;
        this.#buffer = [...e.values];
        continue;
      }
      if (this.#failed !== null) throw this.#failed.exception;
      if (!(await waitFor(this.#changed.promise, timeout))) throw new TimeoutError();
    }
  }

  async return(): Promise<IteratorResult<T>> {
    return { done: true, value: undefined };
  }

  [Symbol.asyncIterator](): this {
    return this;
  }
}

function badMessage(what: string, cause?: unknown): ExceptionInfo {
  return new ExceptionInfo(new UnpicklingError(`bad message from a pool worker: ${what}`, { code: 'BAD_POOL_MESSAGE', cause } as never));
}

/** A worker process and its own pair of queues. */
interface Worker {
  proc: Process;
  inq: SimpleQueue;
  outq: SimpleQueue;
  /** Resolves with the pid once the child exists. */
  started: boolean;
  pid: number | null;
  /** The job it holds (sent, no READY yet). */
  current: Task | null;
  /** Jobs sent to it, for maxtasksperchild. */
  sent: number;
  /** Sent the None sentinel, or DEATH seen: no more jobs. */
  retiring: boolean;
  /** It acknowledged a job: it started well. */
  accepted: boolean;
  /** Resolves once it exited and its outqueue was drained. */
  gone: Promise<void>;
}

/**
 * A pool of Node worker processes (billiard's `Pool`). Functions are
 * exported functions of a module, found as Process targets are. Results
 * arrive in the order the workers finish; every job's result is its own.
 *
 * `await using pool = new Pool({ processes: 4 })` terminates it at the end
 * of the block, as Python's `with Pool() as pool:`.
 */
export class Pool {
  readonly processes: number;
  readonly maxtasksperchild: number | null;
  /** The hard time limit of every job part (seconds), unless a call gives its own. */
  readonly timeout: number | null;
  #state = RUN;
  readonly #initializer: PyGlobal | null;
  readonly #initargs: readonly unknown[];
  readonly #startMethod: string | undefined;
  readonly #workers = new Set<Worker>();
  readonly #tasks: Task[] = [];
  readonly #cache = new Map<number, ResultBase>();
  readonly #registry: PickleRegistry = poolRegistry();
  #workerCount = 0;
  /** Workers that died in a row before accepting any job (an initializer that throws...). */
  #startFailures = 0;
  /** Replacements waiting for their back-off delay. */
  #scheduled = 0;
  #changed = latch();
  /**
   * Workers are daemonic and do not keep this process alive; this handle
   * does, while a job is pending or join() waits (as Python's main thread
   * blocked in get() or join() keeps its process alive).
   */
  readonly #keepAlive: NodeJS.Timeout = setInterval(() => undefined, 1 << 30);
  #joining = 0;

  constructor(options?: PoolOptions) {
    const processes = options?.processes ?? availableParallelism();
    if (!Number.isInteger(processes) || processes < 1) throw new ValueError('Number of processes must be at least 1');
    const maxtasks = options?.maxtasksperchild ?? null;
    if (maxtasks !== null && (!Number.isInteger(maxtasks) || maxtasks < 1)) throw new ValueError('maxtasksperchild must be a positive int or None');
    const init = options?.initializer ?? null;
    if (init !== null && typeof init !== 'function' && !(init instanceof PyGlobal)) throw new TypeError('initializer must be a callable');
    this.processes = processes;
    this.maxtasksperchild = maxtasks;
    this.timeout = limitSeconds(options?.timeout, 'timeout');
    this.#initializer = init === null ? null : funcRef(init);
    this.#initargs = [...(options?.initargs ?? [])];
    const ctx = options?.context;
    this.#startMethod = typeof ctx === 'string' ? ctx : (ctx?.startMethod ?? getStartMethod() ?? undefined);
    this.#keepAlive.unref();
    for (let n = 0; n < processes; n++) this.#startWorker();
  }

  #updateRef(): void {
    if (this.#cache.size > 0 || this.#joining > 0) this.#keepAlive.ref();
    else this.#keepAlive.unref();
  }

  // ----- workers

  #startWorker(): void {
    const inq = new SimpleQueue();
    const outq = new SimpleQueue();
    const name = `${this.#startMethod === 'forkserver' ? 'ForkServer' : 'Spawn'}PoolWorker-${++this.#workerCount}`;
    const Cls = this.#startMethod === 'forkserver' ? ForkServerProcess : this.#startMethod === 'spawn' ? SpawnProcess : Process;
    const proc = new Cls({ target: poolWorker, args: [inq, outq, this.#initializer, [...this.#initargs], this.maxtasksperchild], name, daemon: true });
    const w: Worker = { proc, inq, outq, started: false, pid: null, current: null, sent: 0, retiring: false, accepted: false, gone: Promise.resolve() };
    proc.start();
    this.#workers.add(w);
    w.gone = this.#runWorker(w);
  }

  async #runWorker(w: Worker): Promise<void> {
    w.pid = await w.proc.spawned;
    // The child has its copies: the pool keeps the inqueue's write end and the outqueue's read end only,
    // so that the outqueue reaches EOF when the worker is gone.
    w.inq.reader.close();
    w.outq.writer.close();
    w.started = true;
    this.#dispatch();
    await this.#readLoop(w);
    await w.proc.join();
    w.inq.writer.close();
    w.outq.reader.close();
    this.#workerGone(w);
  }

  async #readLoop(w: Worker): Promise<void> {
    for (;;) {
      let payload: Uint8Array;
      try {
        payload = await w.outq.getPayload();
      } catch (e) {
        // EOF: the worker is gone. Anything else (a bad length, a torn frame) broke the framing
        // for good: the worker is killed, and its death fails the job it holds.
        if (!(e instanceof EOFError && e.code === 'EOF') && w.proc.exitcode === null) {
          process.emitWarning(`billiard-ts pool: worker ${w.pid} broke the framing of its outqueue (${String(e)}); killing it`, 'PoolWarning');
          w.proc.kill();
        }
        return;
      }
      let msg: unknown;
      try {
        msg = loads(payload, { registry: this.#registry });
      } catch (e) {
        this.#protocolError(w, `an undecodable frame from worker ${w.pid}`, e);
        continue;
      }
      try {
        this.#handle(w, msg);
      } catch (e) {
        this.#protocolError(w, `a message from worker ${w.pid} the pool could not handle`, e);
      }
    }
  }

  /** A bad frame: the job the worker holds fails with a typed error; the pool runs on. */
  #protocolError(w: Worker, what: string, cause?: unknown): void {
    process.emitWarning(`billiard-ts pool: ${what}${cause === undefined ? '' : `: ${String(cause)}`}`, 'PoolWarning');
    const task = w.current;
    if (task === null) return;
    w.current = null;
    this.#disarm(task);
    this.#setResult(task, false, badMessage(what, cause));
    this.#dispatch();
  }

  #handle(w: Worker, msg: unknown): void {
    if (!(msg instanceof PyTuple) || msg.length !== 2 || !(msg[1] instanceof PyTuple)) {
      return this.#protocolError(w, `a message from worker ${w.pid} that is not a (kind, body) pair`);
    }
    const [kind, body] = msg as unknown as [unknown, PyTuple];
    switch (kind) {
      case ACK: {
        if (body.length !== 5) return this.#protocolError(w, `an ACK of ${body.length} fields from worker ${w.pid}`);
        const [job, i] = body as unknown as [unknown, unknown];
        const task = w.current;
        if (task === null || task.job !== job || task.i !== i || task.acked) return; // not the job it holds: ignored
        task.acked = true;
        w.accepted = true;
        task.result.ack(w.pid!);
        this.#armLimit(w, task);
        return;
      }
      case READY: {
        if (body.length !== 4) return this.#protocolError(w, `a READY of ${body.length} fields from worker ${w.pid}`);
        const [job, i, outcome] = body as unknown as [unknown, unknown, unknown];
        const task = w.current;
        if (task === null || task.job !== job || task.i !== i) return; // not the job it holds: ignored
        if (!(outcome instanceof PyTuple) || outcome.length !== 2 || typeof outcome[0] !== 'boolean') {
          return this.#protocolError(w, `a READY whose result is not an (ok, value) pair from worker ${w.pid}`);
        }
        if (!outcome[0] && !(outcome[1] instanceof ExceptionInfo)) {
          return this.#protocolError(w, `a failed READY without an ExceptionInfo from worker ${w.pid}`);
        }
        // READY without ACK counts as the ACK (spec/pool.md §9.2).
        w.accepted = true;
        if (!task.acked) {
          task.acked = true;
          task.result.ack(w.pid!);
        }
        w.current = null;
        this.#disarm(task);
        this.#setResult(task, outcome[0], outcome[1]);
        this.#dispatch();
        return;
      }
      case DEATH:
        w.retiring = true;
        return;
      default:
        return; // unknown kinds are ignored, as billiard does (Celery's WORKER_UP among them)
    }
  }

  /** Starts the task's hard time limit at its ACK, when it has one. */
  #armLimit(w: Worker, task: Task): void {
    if (task.limit === null) return;
    const limit = task.limit;
    task.timer = setTimeout(() => {
      task.timer = null;
      if (w.current !== task) return;
      // The worker is killed for it: its death must not fail the task again.
      w.current = null;
      w.retiring = true;
      this.#setResult(task, false, new ExceptionInfo(new TimeLimitExceeded(limit)));
      if (task.onTimeout) safeCall(task.onTimeout, { soft: false, timeout: limit });
      this.#kill(w);
      this.#replenish();
      this.#dispatch();
    }, limit * 1000);
    task.timer.unref();
  }

  #disarm(task: Task): void {
    if (task.timer !== null) clearTimeout(task.timer);
    task.timer = null;
  }

  /** SIGTERM, then SIGKILL 0.1 s later if it still runs (a synchronous loop never sees SIGTERM's handler). */
  #kill(w: Worker): void {
    if (w.proc.exitcode !== null) return;
    w.proc.terminate();
    setTimeout(() => {
      if (w.proc.exitcode === null) w.proc.kill();
    }, 100).unref();
  }

  #setResult(task: Task, ok: boolean, value: unknown): void {
    task.result.set(task.i, ok, value);
    if (task.result.done) this.#cache.delete(task.job);
    this.#updateRef();
    this.#notify();
  }

  #workerGone(w: Worker): void {
    this.#workers.delete(w);
    const task = w.current;
    w.current = null;
    if (task !== null) {
      this.#disarm(task);
      if (task.acked || this.#state === TERMINATE) {
        const exitcode = w.proc.exitcode;
        const err = this.#state === TERMINATE ? new Terminated(-(exitcode ?? -15)) : new WorkerLostError(`Worker exited prematurely: ${exitDescription(exitcode)} Job: ${task.job}.`);
        this.#setResult(task, false, new ExceptionInfo(err));
      } else {
        this.#tasks.unshift(task); // handed over but never accepted: another worker runs it
      }
    }
    const exitcode = w.proc.exitcode;
    if (w.accepted) this.#startFailures = 0;
    else if (this.#state !== TERMINATE && exitcode !== 0 && exitcode !== 155) this.#startFailures++;
    if (this.#startFailures >= START_FAILURE_LIMIT && this.#tasks.length > 0) {
      // Workers die before they take a job: fail what waits rather than hang (billiard restarts for ever).
      const err = `workers exited ${this.#startFailures} times in a row before accepting a job (last: ${exitDescription(exitcode)}; does the initializer throw?)`;
      for (const task of this.#tasks.splice(0)) this.#setResult(task, false, new ExceptionInfo(new RestartFreqExceeded(err)));
    }
    this.#replenish();
    this.#dispatch();
    this.#notify();
  }

  /** Starts the workers missing, after a back-off delay when workers keep dying at start. */
  #replenish(): void {
    if (this.#state === TERMINATE || (this.#state === CLOSE && this.#tasks.length === 0)) return;
    const missing = this.processes - this.#liveWorkers() - this.#scheduled;
    if (missing <= 0) return;
    if (this.#startFailures === 0) {
      for (let n = 0; n < missing; n++) this.#startWorker();
      return;
    }
    const delay = Math.min(0.1 * 2 ** (this.#startFailures - 1), 5);
    this.#scheduled += missing;
    setTimeout(() => {
      this.#scheduled -= missing;
      if (this.#state === TERMINATE || (this.#state === CLOSE && this.#tasks.length === 0)) return this.#notify();
      const still = this.processes - this.#liveWorkers() - this.#scheduled;
      for (let k = 0; k < still; k++) this.#startWorker();
      this.#dispatch();
      this.#notify();
    }, delay * 1000).unref();
  }

  #liveWorkers(): number {
    let n = 0;
    for (const w of this.#workers) if (!w.retiring) n++;
    return n;
  }

  #notify(): void {
    const wake = this.#changed;
    this.#changed = latch();
    wake.resolve();
  }

  /** Hands queued jobs to idle workers; after close, sends idle workers the None sentinel once nothing is left. */
  #dispatch(): void {
    for (const w of this.#workers) {
      if (!w.started || w.retiring || w.current !== null) continue;
      const task = this.#tasks.shift();
      if (task === undefined) {
        if (this.#state === CLOSE) this.#retire(w);
        continue;
      }
      w.current = task;
      w.sent++;
      // Its last job: it exits after it (EX_RECYCLE), and gets nothing more.
      if (this.maxtasksperchild !== null && w.sent >= this.maxtasksperchild) w.retiring = true;
      w.inq.sendPayload(task.payload).catch(() => {
        // The worker is gone: its death hands the job on.
      });
    }
    if (this.#tasks.length > 0) this.#replenish();
  }

  #retire(w: Worker): void {
    w.retiring = true;
    w.inq.sendPayload(new Uint8Array([0x80, 0x04, 0x4e, 0x2e])).catch(() => undefined);
  }

  // ----- submitting

  #checkRunning(): void {
    if (this.#state !== RUN) throw new ValueError('Pool not running', { code: 'POOL_NOT_RUNNING' });
  }

  /** Queues a job's parts, all pickled first: one that cannot be pickled throws here, and nothing of the job is queued. */
  #submit(
    result: ResultBase,
    parts: ReadonlyArray<{ i: number | null; func: PyGlobal; args: readonly unknown[]; kwds?: Record<string, unknown> | null }>,
    limits?: { timeout?: number | null; timeoutCallback?: TimeoutCallback | null },
  ): void {
    const limit = limits?.timeout === undefined || limits.timeout === null ? this.timeout : limitSeconds(limits.timeout, 'timeout');
    const onTimeout = limits?.timeoutCallback ?? null;
    const tasks: Task[] = parts.map(({ i, func, args, kwds }) => ({
      job: result.job,
      i,
      payload: encodeTask(result.job, i, func, args, kwds),
      result,
      acked: false,
      limit,
      onTimeout,
      timer: null,
    }));
    if (tasks.length === 0) return;
    this.#cache.set(result.job, result);
    this.#tasks.push(...tasks);
    this.#updateRef();
  }

  /**
   * Runs `fn(...args)` in a worker. An argument that cannot be pickled, or a
   * function a worker cannot import, throws here. ValueError when the pool
   * is not running (billiard returns None).
   */
  applyAsync<F extends AnyFn>(fn: F | PyGlobal, args: readonly unknown[] = [], options?: ApplyOptions<Awaited<ReturnType<F>>>): ApplyResult<Awaited<ReturnType<F>>> {
    this.#checkRunning();
    const result = new ApplyResult<Awaited<ReturnType<F>>>(this, 1, options?.callback, options?.errorCallback);
    this.#submit(result, [{ i: null, func: funcRef(fn), args, kwds: options?.kwds }], options);
    this.#dispatch();
    return result;
  }

  /** `applyAsync(...).get()`. */
  async apply<F extends AnyFn>(fn: F | PyGlobal, args: readonly unknown[] = [], options?: { kwds?: Record<string, unknown> | null; timeout?: number | null }): Promise<Awaited<ReturnType<F>>> {
    return this.applyAsync(fn, args, options).get();
  }

  #chunksize(length: number, chunksize: number | null | undefined): number {
    if (chunksize === null || chunksize === undefined) return length === 0 ? 0 : Math.ceil(length / (this.processes * 4));
    if (!Number.isInteger(chunksize) || chunksize < 1) throw new ValueError('chunksize must be a positive integer');
    return chunksize;
  }

  #mapAsync<T>(star: boolean, fn: PoolFunction, iterable: Iterable<unknown>, options?: MapOptions<T>): MapResult<T> {
    this.#checkRunning();
    const items = [...iterable];
    const chunksize = this.#chunksize(items.length, options?.chunksize);
    const func = funcRef(fn);
    const result = new MapResult<T>(this, items.length, chunksize, options);
    const parts = [];
    for (let k = 0; k * chunksize < items.length; k++) {
      const chunk = items.slice(k * chunksize, (k + 1) * chunksize).map((x) => (star ? tuple(...(x as unknown[])) : x));
      parts.push({ i: k, func: star ? STARMAPSTAR : MAPSTAR, args: [tuple(func, tuple(...chunk))] });
    }
    this.#submit(result, parts);
    this.#dispatch();
    return result;
  }

  /** `fn(x)` for each item, in chunks; ready at the first failed chunk. */
  mapAsync<F extends AnyFn>(fn: F | PyGlobal, iterable: Iterable<Parameters<F>[0]>, options?: MapOptions<Awaited<ReturnType<F>>>): MapResult<Awaited<ReturnType<F>>> {
    return this.#mapAsync(false, fn, iterable, options);
  }

  /** `fn(...item)` for each item, in chunks. */
  starmapAsync<F extends AnyFn>(fn: F | PyGlobal, iterable: Iterable<Parameters<F>>, options?: MapOptions<Awaited<ReturnType<F>>>): MapResult<Awaited<ReturnType<F>>> {
    return this.#mapAsync(true, fn, iterable, options);
  }

  /** `mapAsync(...).get()`: the results in input order. */
  async map<F extends AnyFn>(fn: F | PyGlobal, iterable: Iterable<Parameters<F>[0]>, options?: { chunksize?: number | null }): Promise<Array<Awaited<ReturnType<F>>>> {
    return this.mapAsync(fn, iterable, options).get();
  }

  /** `starmapAsync(...).get()`. */
  async starmap<F extends AnyFn>(fn: F | PyGlobal, iterable: Iterable<Parameters<F>>, options?: { chunksize?: number | null }): Promise<Array<Awaited<ReturnType<F>>>> {
    return this.starmapAsync(fn, iterable, options).get();
  }

  #imap<T>(ordered: boolean, fn: PoolFunction, iterable: Iterable<unknown>, chunksize: number | undefined): IMapIterator<T> {
    this.#checkRunning();
    const size = chunksize ?? 1;
    if (!Number.isInteger(size) || size < 1) throw new ValueError('Chunksize must be 1+, not ' + String(chunksize));
    const items = [...iterable];
    const func = funcRef(fn);
    const chunks = Math.ceil(items.length / size);
    const it = new IMapIterator<T>(this, chunks, ordered, size > 1);
    const parts = [];
    for (let k = 0; k < chunks; k++) {
      if (size === 1) parts.push({ i: k, func, args: [items[k]] });
      else parts.push({ i: k, func: MAPSTAR, args: [tuple(func, tuple(...items.slice(k * size, (k + 1) * size)))] });
    }
    this.#submit(it, parts);
    this.#dispatch();
    return it;
  }

  /** Results in input order, as they come: `for await (const v of pool.imap(fn, items))`. */
  imap<F extends AnyFn>(fn: F | PyGlobal, iterable: Iterable<Parameters<F>[0]>, options?: { chunksize?: number }): IMapIterator<Awaited<ReturnType<F>>> {
    return this.#imap(true, fn, iterable, options?.chunksize);
  }

  /** Results in completion order. */
  imapUnordered<F extends AnyFn>(fn: F | PyGlobal, iterable: Iterable<Parameters<F>[0]>, options?: { chunksize?: number }): IMapIterator<Awaited<ReturnType<F>>> {
    return this.#imap(false, fn, iterable, options?.chunksize);
  }

  // ----- lifecycle

  /** Stops accepting work; the workers exit once every submitted job is done. */
  close(): void {
    if (this.#state !== RUN) return;
    this.#state = CLOSE;
    this.#dispatch();
  }

  /**
   * Stops now: SIGTERM to every worker. Jobs not finished fail with
   * `Terminated` (billiard leaves them pending for ever). Resolves once the
   * workers are gone.
   */
  async terminate(): Promise<void> {
    if (this.#state !== TERMINATE) {
      this.#state = TERMINATE;
      const pending = this.#tasks.splice(0);
      for (const task of pending) this.#setResult(task, false, new ExceptionInfo(new Terminated(15)));
      for (const w of this.#workers) {
        w.retiring = true;
        if (w.proc.exitcode === null) w.proc.terminate(); // one still being spawned gets it once it runs
      }
      for (const r of this.#cache.values()) {
        if (r instanceof IMapIterator) r.failAll(new ExceptionInfo(new Terminated(15)));
      }
    }
    await this.join();
  }

  /** Waits for every worker to exit; AssertionError unless close() or terminate() came first. */
  async join(): Promise<void> {
    if (this.#state === RUN) throw new AssertionError('Pool is still running');
    this.#joining++;
    this.#updateRef();
    try {
      while (this.#workers.size > 0 || this.#scheduled > 0) {
        if (this.#workers.size > 0) await Promise.all([...this.#workers].map((w) => w.gone));
        else await this.#changed.promise;
      }
    } finally {
      this.#joining--;
      this.#updateRef();
    }
    clearInterval(this.#keepAlive);
  }

  /** `await using pool = new Pool()`: terminate at the end, as Python's `__exit__`. */
  async [Symbol.asyncDispose](): Promise<void> {
    await this.terminate();
  }

  /** The pids of the current workers. */
  get pids(): number[] {
    return [...this.#workers].map((w) => w.pid).filter((p): p is number => p !== null);
  }

  toString(): string {
    return `<Pool state=${['RUN', 'CLOSE', 'TERMINATE'][this.#state]} pool_size=${this.#workers.size}>`;
  }
}

