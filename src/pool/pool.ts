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

import { EventEmitter } from 'node:events';
import { availableParallelism, constants } from 'node:os';

import { kBatch } from '../connection/connection.js';
import { TimeoutError } from '../connection/errors.js';
import { Timer, timeoutSeconds } from '../connection/timers.js';
import type { Sentinel } from '../connection/wait.js';
import { EOFError, UnpicklingError } from '../pickle/errors.js';
import { dumps, loads, PyFloat, PyGlobal, PyTuple, tuple, type PickleRegistry } from '../pickle/index.js';
import { makeTuple } from '../pickle/types.js';
import { checkLoadLimits, type LoadLimits, type UnpicklerOptions } from '../pickle/unpickler.js';
import { AssertionError, RestartFreqExceeded, Terminated, TimeLimitExceeded, ValueError, WorkerLostError } from '../process/errors.js';
import { AttributeError } from '../sharedctypes/errors.js';
import { packagePath } from '../native/package.js';
import { ForkServerProcess, Process, SpawnProcess } from '../process/process.js';
import { getStartMethod } from '../process/start-method.js';
import { requirePythonSync } from '../process/python.js';
import { Full, SimpleQueue } from '../queues/index.js';
import { ACK, ackFields, decodeAck, decodeReady, DEATH, encodeTaskFrame, ExceptionInfo, funcRef, MAPSTAR, NACK, READY, readyFields, STARMAPSTAR } from './protocol.js';
import { Fifo } from './fifo.js';
import { poolWorker } from './worker.js';
import { poolRegistry } from './protocol.js';
import { checkOptionNames, optionNames } from '../connection/options.js';

// eslint-disable-next-line @typescript-eslint/no-explicit-any -- any function, whatever its parameters
type AnyFn = (...args: any[]) => unknown;
/** A tuple without its last element: the positional arguments of a function whose last parameter takes the kwds. */
type DropLast<T extends readonly unknown[]> = T extends readonly [...infer H, unknown] ? H : T;
/** The last element of a tuple: what kwds must be for such a function. */
type Last<T extends readonly unknown[]> = T extends readonly [...unknown[], infer L] ? L : never;
/** A task function: an exported function of a module (found as Process targets are). */
export type PoolFunction = AnyFn | PyGlobal;

/** The target of a Python worker: compat/billiard_ts_worker.py's `run`. */
const PYTHON_WORKER = new PyGlobal('billiard_ts_worker', 'run');

/** Options of {@link Pool}: billiard's keyword arguments, camelCase, times in seconds. */
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
  /**
   * Soft time limit of every job part, in seconds from its ACK: past it the
   * worker gets SIGUSR1 and the task's AbortSignal (`currentTask().signal`)
   * is aborted with `SoftTimeLimitExceeded`. Synchronous JavaScript cannot
   * be interrupted and meets only the hard limit. null: none.
   */
  softTimeout?: number | null;
  /**
   * Seconds to keep waiting for the results of a worker whose process has
   * exited while something else still holds its result pipe open (default
   * 10, as billiard). A worker's death is normally seen at once.
   */
  lostWorkerTimeout?: number | null;
  /**
   * More than this many abnormal worker exits within `maxRestartFreq`
   * seconds (the count restarts at every accepted job) raise
   * `RestartFreqExceeded`: the jobs waiting fail with it and the pool
   * closes. null (the default): no limit (a back-off still applies).
   */
  maxRestarts?: number | null;
  /** The window of `maxRestarts`, in seconds (default 1). */
  maxRestartFreq?: number | null;
  /** Called with the worker's Process once it runs (also the `processUp` event). */
  onProcessUp?: ((proc: Process) => void) | null;
  /** Called with the worker's Process once it exited and was reaped (also the `processDown` event). */
  onProcessDown?: ((proc: Process) => void) | null;
  /** Called inside the worker as `onProcessExit(pid, exitcode)` before it exits: an exported function, as `initializer`. */
  onProcessExit?: AnyFn | PyGlobal | null;
  /** Called as `onTimeoutSet(result, softTimeout, timeout)` when an `applyAsync` job is accepted. */
  onTimeoutSet?: ((result: ApplyResult, softTimeout: number | null, timeout: number | null) => void) | null;
  /** Called as `onTimeoutCancel(result)` when an `applyAsync` job's result is set. */
  onTimeoutCancel?: ((result: ApplyResult) => void) | null;
  /**
   * billiard's putlocks. Jobs here always wait in the pool's process until a
   * worker is free; the caller's back-pressure is `await pool.waitForSlot()`
   * or `maxQueue` (JavaScript cannot block a caller).
   */
  putlocks?: boolean;
  /** Enables `restart()`. */
  allowRestart?: boolean;
  /**
   * The syn pipe (spec/pool.md §2.5): a worker waits after its ACK for the
   * pool's answer, so that a job discarded or aborted in between is skipped
   * (NACK) rather than run.
   */
  synack?: boolean;
  /** A worker whose peak RSS passes this many KiB after a task exits (155) and is replaced. */
  maxMemoryPerChild?: number | null;
  /**
   * false: per-call time limits are ignored unless the pool has a limit of
   * its own (billiard's default). Unset: they always work.
   */
  enableTimeouts?: boolean | null;
  /** billiard's `threads`: accepted for compatibility; this pool has no threads (everything runs on the event loop). */
  threads?: boolean;
  /** Parts that may wait for a worker before a submission throws `Full` (piscina's maxQueue); null: unbounded. */
  maxQueue?: number | null;
  /**
   * Parts a worker may hold at once: the one it runs, and the next ones
   * waiting in its pipe, so that it need not wait a round trip for its next
   * part. Idle workers are served first; 1 hands out one part at a time (a
   * part never waits behind another in a busy worker). The default,
   * `'auto'`, follows the parts' mean run time: 2 for parts of a
   * millisecond or more (one part at most waits behind a long one), up to
   * 32 for parts of a few microseconds (fewer round trips, fewer writes).
   */
  prefetch?: number | 'auto';
  /**
   * Python workers: every worker is a fresh Python process running
   * billiard's own `Worker` (so billiard must be installed for that
   * interpreter), and tasks are Python functions named with `pyfunc`
   * (`pool.applyAsync(pyfunc('operator.mul'), [6, 7])`). The initializer,
   * if any, is a Python function too. A pool is all Node or all Python: a
   * Node function given to a Python pool, or a Python one to a Node pool,
   * is refused when submitted (see src/pool/README.md).
   */
  python?: PythonWorkers | boolean | null;
  /**
   * Limits on loading what the workers send back (results, errors) and, in
   * Node workers, the jobs they are sent, over the unpickler's defaults:
   * for results that honestly need more (a dict of thousands of bigint keys
   * equal in their low 64 bits needs a higher `maxHashCollisions`). See
   * {@link LoadLimits}. Python workers load with Python's own unpickler.
   */
  loadLimits?: LoadLimits | null;
}

const POOL_OPTIONS = optionNames<PoolOptions>()({
  processes: 1, initializer: 1, initargs: 1, maxtasksperchild: 1, context: 1, timeout: 1, softTimeout: 1, lostWorkerTimeout: 1,
  maxRestarts: 1, maxRestartFreq: 1, onProcessUp: 1, onProcessDown: 1, onProcessExit: 1, onTimeoutSet: 1, onTimeoutCancel: 1,
  putlocks: 1, allowRestart: 1, synack: 1, maxMemoryPerChild: 1, enableTimeouts: 1, threads: 1, maxQueue: 1, prefetch: 1, python: 1, loadLimits: 1,
});

/** How a Python pool starts its workers. */
export interface PythonWorkers {
  /** The interpreter (default: `BILLIARD_PYTHON`, else the first `python3` that can import billiard). */
  executable?: string;
  /** Directories put before PYTHONPATH in the workers, where the task modules are. */
  path?: readonly string[];
}

/** What a job is told when its soft or hard time limit passes (billiard's `timeout_callback`). */
export type TimeoutCallback = (info: { soft: boolean; timeout: number }) => void;

/** Options every submission takes. */
export interface SubmitOptions {
  /** Hard time limit in seconds, instead of the pool's (see {@link PoolOptions.timeout}). */
  timeout?: number | null;
  /** Soft time limit in seconds, instead of the pool's (see {@link PoolOptions.softTimeout}). */
  softTimeout?: number | null;
  /** Called when the soft limit passes (before the signal) and when the hard one does (after the result is set). */
  timeoutCallback?: TimeoutCallback | null;
  /**
   * Aborting it fails the job with the signal's reason at once: a part still
   * waiting is dropped; a running one gets the soft limit's signal and its
   * worker is killed if it has not answered within 1 s.
   */
  signal?: AbortSignal | null;
  /** See {@link PoolOptions.lostWorkerTimeout}. */
  lostWorkerTimeout?: number | null;
  /** Callbacks that throw an instance of one of these classes are not caught: the error is thrown on the event loop. */
  callbacksPropagate?: ReadonlyArray<abstract new (...args: never[]) => unknown>;
  /** Any value, kept as the result's `correlationId`. */
  correlationId?: unknown;
}

/** Options of {@link Pool.applyAsync}. */
export interface ApplyOptions<T> extends SubmitOptions {
  /** Keyword arguments: a JavaScript function gets them as its last argument. */
  kwds?: Record<string, unknown> | null;
  /** Called with the value on success (an exception it throws is logged and ignored). */
  callback?: ((value: T) => void) | null;
  /** Called with billiard's `ExceptionInfo` on failure (its `.exception` is the error). */
  errorCallback?: ((einfo: ExceptionInfo) => void) | null;
  /** Called as `acceptCallback(pid, timeAccepted)` when a worker acknowledged the job (the worker's monotonic seconds). */
  acceptCallback?: ((pid: number, timeAccepted: number) => void) | null;
  /** billiard's putlock wait: accepted; see {@link PoolOptions.putlocks}. */
  waitforslot?: boolean | null;
}

/** Options of {@link Pool.mapAsync} and {@link Pool.starmapAsync}. */
export interface MapOptions<T> extends SubmitOptions {
  /** Items per job; default `ceil(n / (4 * processes))`. */
  chunksize?: number | null;
  callback?: ((values: T[]) => void) | null;
  errorCallback?: ((einfo: ExceptionInfo) => void) | null;
}

/** Options of {@link Pool.imap} and {@link Pool.imapUnordered}. */
export interface IMapOptions extends SubmitOptions {
  /** Items per part (default 1). */
  chunksize?: number;
}

const SUBMIT_NAMES = { timeout: 1, softTimeout: 1, timeoutCallback: 1, signal: 1, lostWorkerTimeout: 1, callbacksPropagate: 1, correlationId: 1 } as const;
const APPLY_OPTIONS = optionNames<ApplyOptions<unknown>>()({ ...SUBMIT_NAMES, kwds: 1, callback: 1, errorCallback: 1, acceptCallback: 1, waitforslot: 1 });
const MAP_OPTIONS = optionNames<MapOptions<unknown>>()({ ...SUBMIT_NAMES, chunksize: 1, callback: 1, errorCallback: 1 });
const IMAP_OPTIONS = optionNames<IMapOptions>()({ ...SUBMIT_NAMES, chunksize: 1 });

/** Run and wait times of `stats()`, in milliseconds, over the last parts. */
export interface TimeSummary {
  count: number;
  mean: number;
  p50: number;
  p90: number;
  p99: number;
  max: number;
}

/** What `pool.stats()` tells. */
export interface PoolStats {
  /** The target worker count. */
  processes: number;
  /** Workers alive and taking jobs. */
  workers: number;
  /** Of them, workers without a job. */
  idle: number;
  /** Workers holding a part (running it, or about to). */
  running: number;
  /** Parts waiting for a worker. */
  queued: number;
  /** Parts finished since the pool started. */
  completed: number;
  /** Workers started since the pool started (replacements included). */
  started: number;
  /** Share of the workers' time spent running parts since the pool started, 0 to 1. */
  utilisation: number;
  /** From ACK to READY. */
  runTime: TimeSummary;
  /** From submission to ACK. */
  waitTime: TimeSummary;
}

/** The events of a Pool. */
export interface PoolEvents {
  processUp: [proc: Process];
  processDown: [proc: Process];
  processExit: [pid: number, exitcode: number | null];
  timeout: [info: { result: unknown; soft: boolean; timeout: number; pid: number | null }];
  drain: [];
}

const RUN = 0;
const CLOSE = 1;
const TERMINATE = 2;

/** Workers dying in a row before accepting a job, after which the jobs waiting fail. */
const START_FAILURE_LIMIT = 5;
/**
 * The default prefetch adapts to how long parts run: enough parts queued in
 * a worker's pipe to cover about AUTO_QUEUE_MS of work beyond the one it
 * runs, at least AUTO_PREFETCH_MIN in all (one waiting behind a long part),
 * at most AUTO_PREFETCH_MAX; AUTO_PREFETCH_START until the first part is
 * back. The mean run time is a moving average (weight AUTO_WEIGHT per part).
 */
const AUTO_QUEUE_MS = 1;
const AUTO_PREFETCH_MIN = 2;
const AUTO_PREFETCH_MAX = 32;
const AUTO_PREFETCH_START = 2;
const AUTO_WEIGHT = 0.25;
/** billiard's LOST_WORKER_TIMEOUT. */
const LOST_WORKER_TIMEOUT = 10;
/** How long a worker whose job was aborted may take to answer before it is killed (ms). */
const ABORT_GRACE_MS = 1000;

/**
 * Runs `decide` once the event loop has read what is waiting on the
 * descriptors: a timer that expires while this process was busy (or not
 * scheduled) runs before the poll phase of the same turn, where a worker's
 * result that came in meanwhile would be read. Deferred to the check phase,
 * a limit's kill sees that result and spares the worker (and the job keeps
 * its value), as it would have had the process been on time.
 */
function afterPendingReads(decide: () => void): void {
  setImmediate(decide);
}
/** Samples kept for stats(). */
const SAMPLES = 1024;
/** The syn pipe's answers, as Celery sends them. */
const SYN_ACK = dumps(tuple(ACK, tuple(0)));
const SYN_NACK = dumps(tuple(NACK, tuple(0)));
/** The None sentinel's frame: a worker exits. */
const SENTINEL_FRAME = new Uint8Array([0, 0, 0, 4, 0x80, 0x04, 0x4e, 0x2e]);

/** A time limit option: null/undefined none, else positive seconds. */
function limitSeconds(v: number | null | undefined, name: string): number | null {
  if (v === null || v === undefined) return null;
  if (typeof v !== 'number' || !(v > 0) || !Number.isFinite(v)) throw new ValueError(`${name} must be a positive number of seconds or null`);
  return v;
}

/** A count option: null/undefined none, else an integer >= min. */
function countOption(v: number | null | undefined, name: string, min: number): number | null {
  if (v === null || v === undefined) return null;
  if (!Number.isInteger(v) || v < min) throw new ValueError(`${name} must be an integer >= ${min} or null`);
  return v;
}

/** An optional function option. */
function callableOption<F>(v: F | null | undefined, name: string): F | null {
  if (v === null || v === undefined) return null;
  if (typeof v !== 'function') throw new TypeError(`${name} must be callable`);
  return v;
}

/** billiard's job counter: one per process, shared by every pool and result kind, from 0. */
let jobCounter = 0;

type Propagate = ReadonlyArray<abstract new (...args: never[]) => unknown>;

/** Calls a callback; what it throws is a warning, unless `propagate` names its class (then it is thrown on the event loop). */
function safeCall(fn: ((...v: never[]) => void) | null | undefined, args: unknown[], propagate?: Propagate | null): void {
  if (!fn) return;
  try {
    fn(...(args as never[]));
  } catch (e) {
    if (propagate?.some((cls) => e instanceof cls)) {
      process.nextTick(() => {
        throw e;
      });
      return;
    }
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

/** The result kinds a job has (MapResult is an ApplyResult). */
type AnyResult = ApplyResult<unknown> | IMapIterator<unknown>;

/** A job part as the pool holds it until a worker answers READY for it. */
interface Task {
  job: number;
  i: number | null;
  /** Its TASK frame, header included. */
  frame: Uint8Array;
  result: ResultBase;
  acked: boolean;
  /** Its hard and soft time limits in seconds (null: none), and what to tell when one passes. */
  limit: number | null;
  soft: number | null;
  onTimeout: TimeoutCallback | null;
  lostTimeout: number | null;
  /** Running from the ACK while a limit is set (the abort grace uses `timer` too). */
  timer: Timer | null;
  softTimer: Timer | null;
  softSent: boolean;
  /** performance.now() at submission and at ACK, for stats(). */
  submitted: number;
  ackedAt: number;
}

/** What every result kind shares: acceptance, the pids, the set of failures. @internal */
abstract class ResultBase {
  /** The job id. */
  readonly job: number;
  /** @internal */ readonly pool: Pool;
  #pids: number[] | null = null;
  #accepted = 0;
  #discarded = false;
  /** @internal the number of parts (an imap over an async iterable adds them as its input comes). */ parts: number;
  /** The `correlationId` given at submission, or undefined. */
  correlationId: unknown;
  /** @internal */ acceptCallback: ((pid: number, timeAccepted: number) => void) | null = null;
  /** @internal */ propagate: Propagate | null = null;
  /** @internal the caller's AbortSignal and its listener. */
  abort: { signal: AbortSignal; listener: () => void } | null = null;
  /**
   * @internal A part of the job has been written to a worker's pipe. Without
   * synack that part will run even if the job is aborted or discarded now
   * (its result is then ignored).
   */
  handedOver = false;

  constructor(pool: Pool, parts: number) {
    this.job = jobCounter++;
    this.pool = pool;
    this.parts = parts;
  }

  /**
   * Drops the job from the pool: parts still waiting never run (with synack,
   * one handed over but not yet confirmed is skipped too), and its result
   * and callbacks are ignored from now on (billiard's `discard`).
   */
  discard(): void {
    if (this.#discarded) return;
    this.#discarded = true;
    this.pool[kDiscard](this);
  }

  /** @internal */
  get discarded(): boolean {
    return this.#discarded;
  }

  /** Signals the workers running this job's parts (default SIGTERM): each part fails with `Terminated` (`pool.terminateJob`). */
  terminate(signal: NodeJS.Signals | number = 'SIGTERM'): void {
    for (const pid of this.pool[kRunningPids](this)) this.pool.terminateJob(pid, signal);
  }

  /** True once every part of the job was acknowledged by a worker. */
  accepted(): boolean {
    return this.#accepted >= this.parts;
  }

  /** The pids of the workers that acknowledged the job's parts. */
  workerPids(): number[] {
    return [...new Set(this.#pids ?? [])];
  }

  /** @internal */
  ack(pid: number, timeAccepted: number): void {
    this.#accepted++;
    (this.#pids ??= []).push(pid);
    if (this.acceptCallback) safeCall(this.acceptCallback, [pid, timeAccepted], this.propagate);
  }

  /** @internal a part's READY: ok and its value, or its ExceptionInfo. */
  abstract set(i: number | null, ok: boolean, value: unknown): void;
  /** @internal the job is settled: the pool forgets it. */
  abstract get done(): boolean;
}

/** Pool internals the results call. @internal */
const kDiscard = Symbol('discard');
const kRunningPids = Symbol('runningPids');


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
  // A Timer, not setTimeout: past 2**31-1 ms setTimeout fires at once (get(3e6) would time out).
  let timer: Timer | undefined;
  const expired = new Promise<boolean>((r) => (timer = new Timer(t, () => r(false))));
  try {
    return await Promise.race([promise.then(() => true), expired]);
  } finally {
    timer?.cancel();
  }
}

/**
 * The result of `applyAsync` (and the base of `mapAsync`'s): `await
 * r.get(timeout)`, `ready()`, `successful()`, `accepted()`,
 * `workerPids()`. It is thenable: `await r` is `await r.get()`.
 */
export class ApplyResult<T = unknown> extends ResultBase implements PromiseLike<T> {
  /** Made when something waits before the job is ready. */
  #settled: { promise: Promise<void>; resolve: () => void } | null = null;
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
    if (!this.#ready) await waitFor((this.#settled ??= latch()).promise, timeout);
  }

  /**
   * The value, or throws the job's error (its class kept: ours, Python's
   * builtins, billiard's). TimeoutError when not ready within `timeout` seconds.
   */
  get(timeout?: number | null): Promise<T> {
    if (this.#ready) return this.#success ? Promise.resolve(this.#value as T) : Promise.reject(this.#einfo!.exception);
    return this.#getLater(timeout);
  }

  async #getLater(timeout: number | null | undefined): Promise<T> {
    const settled = (this.#settled ??= latch()).promise;
    if (timeout === undefined || timeout === null) await settled;
    else if (!(await waitFor(settled, timeout))) throw new TimeoutError();
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
    this.#settled?.resolve();
    if (!this.discarded) safeCall(this.#callback, [value], this.propagate);
  }

  /** @internal */
  fail(einfo: ExceptionInfo): void {
    if (this.#ready) return;
    this.#ready = true;
    this.#success = false;
    this.#einfo = einfo;
    this.#settled?.resolve();
    if (!this.discarded) safeCall(this.#errorCallback, [einfo], this.propagate);
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
 * `await it.next(timeout)`. A failed item throws its error where it stands;
 * an input that throws throws its error after the items before it.
 */
export class IMapIterator<T = unknown> extends ResultBase implements AsyncIterableIterator<T> {
  readonly #ordered: boolean;
  readonly #chunked: boolean;
  /** Chunk (or item) index -> its values, ok or not. */
  readonly #arrived = new Map<number, { ok: boolean; values: unknown[] }>();
  /** Unordered: settled chunks in arrival order. */
  readonly #queue = new Fifo<{ ok: boolean; values: unknown[] }>();
  #nextIndex = 0;
  /** The values of the chunk being delivered, from #bufferAt on (an index: shift() on a chunk of 100,000 values is quadratic). */
  #buffer: unknown[] = [];
  #bufferAt = 0;
  #failed: ExceptionInfo | null = null;
  #consumed = 0;
  #arrivals = 0;
  #changed = latch();
  /** The input has ended (every part is known). */
  #complete = false;
  /** What the input threw, delivered after the items before it. */
  #inputError: { error: unknown } | null = null;

  /** @internal */
  constructor(pool: Pool, chunks: number, ordered: boolean, chunked: boolean) {
    super(pool, chunks);
    this.#ordered = ordered;
    this.#chunked = chunked;
  }

  /** @internal the input ended, having thrown `error` if given. */
  end(error?: { error: unknown }): void {
    this.#complete = true;
    this.#inputError = error ?? null;
    this.#wake();
  }

  #wake(): void {
    const wake = this.#changed;
    this.#changed = latch();
    wake.resolve();
  }

  /** @internal */
  get done(): boolean {
    return this.#complete && this.#arrivals >= this.parts;
  }

  get #consumedAll(): boolean {
    return this.#complete && this.#consumed >= this.parts;
  }

  /** True when every item was delivered. */
  ready(): boolean {
    return this.#consumedAll && this.#bufferAt >= this.#buffer.length;
  }

  /** @internal */
  set(i: number | null, ok: boolean, value: unknown): void {
    const k = typeof i === 'number' ? i : -1;
    if (k < 0 || k >= this.parts || this.#arrived.has(k) || (this.#ordered && k < this.#nextIndex)) return;
    const entry = ok ? { ok, values: this.#chunked ? (Array.isArray(value) ? value : [value]) : [value] } : { ok, values: [value] };
    this.#arrivals++;
    if (this.#ordered) this.#arrived.set(k, entry);
    else this.#queue.push(entry);
    this.#wake();
  }

  /** @internal fails every part not yet arrived (the pool was terminated). */
  failAll(einfo: ExceptionInfo): void {
    this.#failed = einfo;
    this.#wake();
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
      if (this.#bufferAt < this.#buffer.length) return { done: false, value: this.#buffer[this.#bufferAt++] as T };
      if (this.#consumedAll) {
        const input = this.#inputError;
        this.#inputError = null;
        if (input !== null) throw input.error;
        return { done: true, value: undefined };
      }
      const e = this.#take();
      if (e !== undefined) {
        this.#consumed++;
        if (!e.ok) throw (e.values[0] as ExceptionInfo).exception;
        this.#buffer = e.values;
        this.#bufferAt = 0;
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

/** A worker process and its own pair of queues (and syn queue with synack). */
interface Worker {
  proc: Process;
  inq: SimpleQueue;
  outq: SimpleQueue;
  synq: SimpleQueue | null;
  started: boolean;
  pid: number | null;
  /**
   * The parts sent to it and not answered yet, in the order it runs them:
   * `held[0]` is the one it runs (once acknowledged), the others wait in its
   * inqueue (at most `prefetch` in all).
   */
  held: Task[];
  /** Parts sent to it, for maxtasksperchild. */
  sent: number;
  /** Sent the None sentinel, DEATH seen, or being killed: no more jobs. */
  retiring: boolean;
  /** It acknowledged a job: it started well. */
  accepted: boolean;
  /** The pool killed it (a time limit, an abort): not an abnormal exit. */
  killed: boolean;
  /** terminateJob signalled it: its job fails with Terminated. */
  terminated: boolean;
  /** Its exit was handled: later messages are ignored. */
  dead: boolean;
  /** The #dispatch call that may give it parts (it had room for a batch when that call began). */
  fillIn: number;
  /** Resolves once it exited and was reaped. */
  gone: Promise<void>;
}

/** A bounded ring of samples (ms), for stats(). */
class Samples {
  readonly #values = new Float64Array(SAMPLES);
  #count = 0;
  add(v: number): void {
    this.#values[this.#count++ % SAMPLES] = v;
  }
  summary(): TimeSummary {
    const n = Math.min(this.#count, SAMPLES);
    if (n === 0) return { count: 0, mean: 0, p50: 0, p90: 0, p99: 0, max: 0 };
    const sorted = this.#values.slice(0, n).sort();
    const at = (q: number): number => sorted[Math.min(n - 1, Math.floor(q * n))]!;
    let sum = 0;
    for (const v of sorted) sum += v;
    return { count: n, mean: sum / n, p50: at(0.5), p90: at(0.9), p99: at(0.99), max: sorted[n - 1]! };
  }
}

/**
 * A pool of Node worker processes (billiard's `Pool`). Functions are
 * exported functions of a module, found as Process targets are. Results
 * arrive in the order the workers finish; every job's result is its own.
 *
 * `await using pool = new Pool({ processes: 4 })` terminates it at the end
 * of the block, as Python's `with Pool() as pool:`. It is an EventEmitter:
 * `processUp`, `processDown`, `processExit`, `timeout`, `drain`.
 */
export class Pool extends EventEmitter<PoolEvents> {
  #processes: number;
  readonly maxtasksperchild: number | null;
  /** The hard time limit of every job part (seconds), unless a call gives its own. */
  readonly timeout: number | null;
  /** The soft time limit of every job part (seconds), unless a call gives its own. */
  readonly softTimeout: number | null;
  readonly lostWorkerTimeout: number;
  readonly maxRestarts: number | null;
  readonly maxRestartFreq: number;
  readonly putlocks: boolean;
  readonly allowRestart: boolean;
  readonly synack: boolean;
  readonly maxMemoryPerChild: number | null;
  readonly enableTimeouts: boolean;
  readonly threads: boolean;
  readonly maxQueue: number | null;
  /** The prefetch option as given (a number), or null for 'auto'. */
  readonly #fixedPrefetch: number | null;
  /** Mean run time of the parts so far (ms, moving average); -1 before the first. */
  #meanRunMs = -1;
  readonly onProcessUp: ((proc: Process) => void) | null;
  readonly onProcessDown: ((proc: Process) => void) | null;
  readonly onTimeoutSet: ((result: ApplyResult, softTimeout: number | null, timeout: number | null) => void) | null;
  readonly onTimeoutCancel: ((result: ApplyResult) => void) | null;
  #state = RUN;
  readonly #initializer: PyGlobal | null;
  /** Python workers (see PoolOptions.python), or null for Node ones. */
  readonly #python: PythonWorkers | null;
  readonly #initargs: readonly unknown[];
  readonly #onProcessExit: PyGlobal | null;
  readonly #startMethod: string | undefined;
  readonly #workers = new Set<Worker>();
  readonly #tasks = new Fifo<Task>();
  readonly #cache = new Map<number, ResultBase>();
  /** Parts whose worker died after accepting them, until onJobProcessLost (or a subclass) settles them. */
  readonly #lost = new Map<ResultBase, Task[]>();
  readonly #registry: PickleRegistry = poolRegistry();
  /** Frozen: loads() resolves them once. */
  readonly #loadOptions: UnpicklerOptions;
  /** What the Node workers load their jobs with (PoolOptions.loadLimits). */
  readonly #loadLimits: Readonly<LoadLimits> | undefined;
  #workerCount = 0;
  /** Calls of #dispatch, to tell the parts one call hands out. */
  #dispatches = 0;
  /** Workers that died in a row before accepting any job (an initializer that throws...). */
  #startFailures = 0;
  /** Abnormal exits (performance.now()) since the last ACK, for maxRestarts. */
  #restarts: number[] = [];
  /** Workers that exited, for didStartOk(). */
  #exits = 0;
  /** Replacements waiting for their back-off delay. */
  #scheduled = 0;
  /** Resolved at the next change of state; made only when something waits (see #changedPromise). */
  #changed: { promise: Promise<void>; resolve: () => void } | null = null;
  readonly #born = performance.now();
  #busyMs = 0;
  #completed = 0;
  readonly #runTimes = new Samples();
  readonly #waitTimes = new Samples();
  /**
   * Workers are daemonic and do not keep this process alive; this handle
   * does, while a job is pending or join() waits (as Python's main thread
   * blocked in get() or join() keeps its process alive).
   */
  readonly #keepAlive: NodeJS.Timeout = setInterval(() => undefined, 1 << 30).unref(); // unref'd until a job is pending: a constructor that throws leaves nothing behind
  #joining = 0;

  constructor(options?: PoolOptions) {
    super();
    checkOptionNames(options, POOL_OPTIONS, 'new Pool()');
    const processes = options?.processes ?? availableParallelism();
    if (!Number.isInteger(processes) || processes < 1) throw new ValueError('Number of processes must be at least 1');
    const maxtasks = options?.maxtasksperchild ?? null;
    if (maxtasks !== null && (!Number.isInteger(maxtasks) || maxtasks < 1)) throw new ValueError('maxtasksperchild must be a positive int or None');
    const init = options?.initializer ?? null;
    if (init !== null && typeof init !== 'function' && !(init instanceof PyGlobal)) throw new TypeError('initializer must be a callable');
    const onExit = options?.onProcessExit ?? null;
    if (onExit !== null && typeof onExit !== 'function' && !(onExit instanceof PyGlobal)) throw new TypeError('on_process_exit must be callable');
    this.#loadLimits = checkLoadLimits(options?.loadLimits, 'options.loadLimits');
    this.#loadOptions = Object.freeze({ registry: this.#registry, ...this.#loadLimits });
    this.#processes = processes;
    this.maxtasksperchild = maxtasks;
    this.timeout = limitSeconds(options?.timeout, 'timeout');
    this.softTimeout = limitSeconds(options?.softTimeout, 'softTimeout');
    this.lostWorkerTimeout = limitSeconds(options?.lostWorkerTimeout, 'lostWorkerTimeout') ?? LOST_WORKER_TIMEOUT;
    this.maxRestarts = countOption(options?.maxRestarts, 'maxRestarts', 0);
    this.maxRestartFreq = limitSeconds(options?.maxRestartFreq, 'maxRestartFreq') ?? 1;
    this.maxMemoryPerChild = countOption(options?.maxMemoryPerChild, 'maxMemoryPerChild', 1);
    this.maxQueue = countOption(options?.maxQueue, 'maxQueue', 0);
    this.#fixedPrefetch = options?.prefetch === 'auto' ? null : countOption(options?.prefetch, 'prefetch', 1);
    this.putlocks = options?.putlocks ?? false;
    this.allowRestart = options?.allowRestart ?? false;
    this.synack = options?.synack ?? false;
    this.threads = options?.threads ?? true;
    // As billiard: forced on by a pool-level limit. Unset: per-call limits work anyway.
    this.enableTimeouts = options?.enableTimeouts ?? true;
    if (this.timeout !== null || this.softTimeout !== null) this.enableTimeouts = true;
    this.onProcessUp = callableOption(options?.onProcessUp, 'onProcessUp');
    this.onProcessDown = callableOption(options?.onProcessDown, 'onProcessDown');
    this.onTimeoutSet = callableOption(options?.onTimeoutSet, 'onTimeoutSet');
    this.onTimeoutCancel = callableOption(options?.onTimeoutCancel, 'onTimeoutCancel');
    const python = options?.python;
    this.#python = python === undefined || python === null || python === false ? null : python === true ? {} : { ...python };
    if (this.#python !== null) {
      if (init !== null && !(init instanceof PyGlobal)) throw new TypeError('the initializer of a Python pool must be a Python function (pyfunc)');
      if (onExit !== null) throw new TypeError('onProcessExit runs in a Node worker; a Python pool has none');
      // Python missing, or without billiard: a clear error here, not workers that die as they start.
      this.#python.executable = requirePythonSync(this.#python.executable);
    }
    this.#initializer = init === null ? null : funcRef(init);
    this.#initargs = [...(options?.initargs ?? [])];
    this.#onProcessExit = onExit === null ? null : funcRef(onExit);
    const ctx = options?.context;
    this.#startMethod = typeof ctx === 'string' ? ctx : (ctx?.startMethod ?? getStartMethod() ?? undefined);
    for (let n = 0; n < processes; n++) this.#startWorker();
  }

  /** A task function as the workers name it; a Node function for Python workers, or the reverse, is refused here. */
  #taskRef(fn: unknown): PyGlobal {
    if (this.#python !== null) {
      if (!(fn instanceof PyGlobal)) throw new TypeError("a Python pool runs Python functions: name one with pyfunc('module.name')");
      return fn;
    }
    const ref = funcRef(fn);
    if (fn instanceof PyGlobal && !/^(file|data|node):/.test(ref.module)) {
      throw new TypeError(`${ref.module}.${ref.name} is a Python function: run it in a Python pool (new Pool({ python: {} }))`);
    }
    return ref;
  }

  /** The target number of workers (`grow` and `shrink` change it). */
  get processes(): number {
    return this.#processes;
  }

  #refd = false;

  #updateRef(): void {
    const ref = this.#cache.size > 0 || this.#joining > 0;
    if (ref === this.#refd) return;
    this.#refd = ref;
    if (ref) this.#keepAlive.ref();
    else this.#keepAlive.unref();
  }

  // ----- workers

  #startWorker(): void {
    const queues = this.getProcessQueues();
    if (!Array.isArray(queues) || queues.length !== 3 || !(queues[0] instanceof SimpleQueue) || !(queues[1] instanceof SimpleQueue) || !(queues[2] === null || queues[2] instanceof SimpleQueue)) {
      throw new TypeError('getProcessQueues() must return [inq, outq, synq]: two SimpleQueues and a SimpleQueue or null');
    }
    const [inq, outq, synq] = queues;
    let proc: Process;
    if (this.#python !== null) {
      // billiard's Worker in a fresh Python process, on this worker's own queues (compat/billiard_ts_worker.py).
      const py = this.#python;
      proc = new SpawnProcess({
        target: PYTHON_WORKER,
        args: [inq, outq, synq, this.#initializer, [...this.#initargs], this.maxtasksperchild, this.maxMemoryPerChild],
        name: `SpawnPoolWorker-${++this.#workerCount}`,
        daemon: true,
        python: py.executable,
        pythonPath: [packagePath('compat'), ...(py.path ?? [])],
      });
    } else {
      const name = `${this.#startMethod === 'forkserver' ? 'ForkServer' : 'Spawn'}PoolWorker-${++this.#workerCount}`;
      const Cls = this.#startMethod === 'forkserver' ? ForkServerProcess : this.#startMethod === 'spawn' ? SpawnProcess : Process;
      const args: Parameters<typeof poolWorker> = [inq, outq, this.#initializer, [...this.#initargs], this.maxtasksperchild, synq, this.maxMemoryPerChild, this.#onProcessExit, this.#loadLimits ?? null];
      proc = new Cls({ target: poolWorker, args, name, daemon: true });
    }
    const w: Worker = {
      proc,
      inq,
      outq,
      synq,
      started: false,
      pid: null,
      held: [],
      sent: 0,
      retiring: false,
      accepted: false,
      killed: false,
      terminated: false,
      dead: false,
      fillIn: -1,
      gone: Promise.resolve(),
    };
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
    w.synq?.reader.close();
    w.started = true;
    if (w.pid !== null) {
      safeCall(this.onProcessUp, [w.proc]);
      this.#emit('processUp', w.proc);
    }
    this.#dispatch();
    let reading = true;
    const read = this.#readLoop(w).finally(() => {
      reading = false;
    });
    await w.proc.join();
    // Its results come before its EOF; something it left behind may hold the pipe open: wait lostWorkerTimeout at most.
    if (reading) {
      const lost = w.held[0]?.lostTimeout ?? this.lostWorkerTimeout;
      let timer: Timer | undefined;
      await Promise.race([read, new Promise<void>((r) => (timer = new Timer(lost, r)))]);
      timer?.cancel();
    }
    w.dead = true;
    w.inq.writer.close();
    w.synq?.writer.close();
    // A read still pending keeps its descriptor until it ends: closing it under the read could reuse the number.
    if (reading) void read.then(() => w.outq.reader.close());
    else w.outq.reader.close();
    this.#workerGone(w);
  }

  async #readLoop(w: Worker): Promise<void> {
    try {
      // The outqueue's read end is this process's alone: read as a stream, no lock, no thread. Each
      // frame is handled inside the read that completed it (no promise and microtask per message).
      await w.outq.reader.consumeFrames((payload) => this.#onFrame(w, payload));
    } catch (e) {
      // EOF: the worker is gone. Anything else (a bad length, a torn frame) broke the framing
      // for good: the worker is killed, and its death fails the job it holds.
      if (!(e instanceof EOFError && (e.code === 'EOF' || e.code === undefined)) && w.proc.exitcode === null) {
        process.emitWarning(`billiard-ts pool: worker ${w.pid} broke the framing of its outqueue (${String(e)}); killing it`, 'PoolWarning');
        w.proc.kill();
      }
    }
  }

  /** One frame from `w`'s outqueue (a view of the read buffer: consumed before this returns). */
  #onFrame(w: Worker, payload: Uint8Array): void {
    if (w.dead) return;
    // The usual bytes of an ACK, and of a READY of a plain value, are read without the unpickler.
    const ack = decodeAck(payload);
    if (ack || decodeReady(payload)) {
      try {
        if (ack) this.#onAck(w, ackFields.job, ackFields.i, ackFields.time);
        else this.#onReadyValue(w, readyFields.job, readyFields.i, readyFields.value, readyFields.fd);
      } catch (e) {
        this.#protocolError(w, `a message from worker ${w.pid} the pool could not handle`, e);
      }
      return;
    }
    let msg: unknown;
    try {
      msg = loads(payload, this.#loadOptions);
    } catch (e) {
      this.#protocolError(w, `an undecodable frame from worker ${w.pid}`, e);
      return;
    }
    try {
      this.#handle(w, msg);
    } catch (e) {
      this.#protocolError(w, `a message from worker ${w.pid} the pool could not handle`, e);
    }
  }

  /** A bad frame: the job the worker runs fails with a typed error; the pool runs on. */
  #protocolError(w: Worker, what: string, cause?: unknown): void {
    process.emitWarning(`billiard-ts pool: ${what}${cause === undefined ? '' : `: ${String(cause)}`}`, 'PoolWarning');
    const task = w.held[0];
    if (task === undefined) return;
    this.#release(w, task);
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
        return this.#onAck(w, body[0], body[1], body[2]);
      }
      case READY: {
        if (body.length !== 4) return this.#protocolError(w, `a READY of ${body.length} fields from worker ${w.pid}`);
        return this.#onReady(w, body[0], body[1], body[2], body[3]);
      }
      case DEATH:
        w.retiring = true;
        return;
      default:
        return; // unknown kinds are ignored, as billiard does (Celery's WORKER_UP among them)
    }
  }

  /** A READY `(job, i, outcome, inqW_fd)` from `w`: for the part it runs, the part's result. */
  #onReady(w: Worker, job: unknown, i: unknown, outcome: unknown, inqWFd: unknown): void {
    const task = w.held[0];
    if (task === undefined || task.job !== job || task.i !== i) return; // not the job it runs: ignored
    if (!(outcome instanceof PyTuple) || outcome.length !== 2 || typeof outcome[0] !== 'boolean') {
      return this.#protocolError(w, `a READY whose result is not an (ok, value) pair from worker ${w.pid}`);
    }
    if (!outcome[0] && !(outcome[1] instanceof ExceptionInfo)) {
      return this.#protocolError(w, `a failed READY without an ExceptionInfo from worker ${w.pid}`);
    }
    this.onJobReady(task.job, task.i, outcome, inqWFd);
    this.#ready(w, task, outcome[0], outcome[1]);
  }

  /** A READY of a plain value (decodeReady read it): its `(True, value)` pair is made only for a subclass's onJobReady. */
  #onReadyValue(w: Worker, job: number, i: number | null, value: unknown, inqWFd: unknown): void {
    const task = w.held[0];
    if (task === undefined || task.job !== job || task.i !== i) return; // not the job it runs: ignored
    if (this.onJobReady !== Pool.prototype.onJobReady) this.onJobReady(task.job, task.i, tuple(true, value), inqWFd);
    this.#ready(w, task, true, value);
  }

  #ready(w: Worker, task: Task, ok: boolean, value: unknown): void {
    // READY without ACK counts as the ACK (spec/pool.md §9.2).
    if (!task.acked) this.#accept(w, task, 0);
    this.#release(w, task);
    const ran = performance.now() - task.ackedAt;
    this.#busyMs += ran;
    this.#runTimes.add(ran);
    this.#meanRunMs = this.#meanRunMs < 0 ? ran : this.#meanRunMs + AUTO_WEIGHT * (ran - this.#meanRunMs);
    this.#completed++;
    this.#setResult(task, ok, value);
    this.#dispatch();
  }

  /** An ACK `(job, i, time_accepted, pid, fd)` from `w`: for the part it runs, that part is accepted (or skipped, with synack). */
  #onAck(w: Worker, job: unknown, i: unknown, timeAccepted: unknown): void {
    const task = w.held[0];
    if (task === undefined || task.job !== job || task.i !== i || task.acked) return; // not the job it runs: ignored
    if (w.synq !== null) {
      // The syn pipe: a part whose job was dropped meanwhile is skipped (NACK, no READY follows).
      const skip = task.result.discarded || task.result.done;
      const fd = w.synq.writer.closed ? -1 : w.synq.writer.fileno();
      this.#hook('sendAck', () => this.sendAck(skip ? NACK : ACK, task.job, task.i, fd));
      if (skip) {
        this.#release(w, task);
        this.#dispatch();
        return;
      }
    }
    // An integral time (a Python worker's, or ours on a whole second) unpickles as a PyFloat.
    this.#accept(w, task, typeof timeAccepted === 'number' ? timeAccepted : timeAccepted instanceof PyFloat ? timeAccepted.value : 0);
  }

  /** A part's ACK: it is the worker's for good, its limits start. */
  #accept(w: Worker, task: Task, timeAccepted: number): void {
    task.acked = true;
    task.ackedAt = performance.now();
    this.#waitTimes.add(task.ackedAt - task.submitted);
    w.accepted = true;
    this.#restarts.length = 0; // billiard's restart counter restarts at every ACK
    this.#startFailures = 0; // a worker takes jobs: the pool makes progress, whatever replacements do
    task.result.ack(w.pid!, timeAccepted);
    const r = task.result;
    if (this.onTimeoutSet !== null && isPlainApply(r)) safeCall(this.onTimeoutSet, [r, task.soft, task.limit]);
    this.#armLimits(w, task);
  }

  /** The worker no longer holds the part: its timers stop. */
  #release(w: Worker, task: Task): void {
    const k = w.held.indexOf(task);
    if (k >= 0) w.held.splice(k, 1);
    this.#disarm(task);
  }

  /** Starts the part's soft and hard time limits at its ACK. */
  #armLimits(w: Worker, task: Task): void {
    if (task.soft !== null) {
      const soft = task.soft;
      // A Timer keeps limits past setTimeout's 24.8 days (a bare setTimeout would fire after 1 ms).
      task.softTimer = new Timer(
        soft,
        () => {
          task.softTimer = null;
          if (w.held[0] !== task) return;
          this.#softLimit(w, task, soft);
        },
        { ref: false },
      );
    }
    if (task.limit !== null) {
      const limit = task.limit;
      const timer: Timer = new Timer(
        limit,
        () =>
          afterPendingReads(() => {
            if (task.timer === timer) task.timer = null;
            if (w.held[0] !== task) return;
            // The worker is killed for it: its death must not fail the task again.
            this.#release(w, task);
            this.#setResult(task, false, new ExceptionInfo(new TimeLimitExceeded(limit)));
            if (task.onTimeout) safeCall(task.onTimeout, [{ soft: false, timeout: limit }], task.result.propagate);
            this.#emit('timeout', { result: task.result, soft: false, timeout: limit, pid: w.pid });
            this.#kill(w);
          }),
        { ref: false },
      );
      task.timer = timer;
    }
  }

  /** The soft limit: told once per part, then SIGUSR1 to the worker (billiard's SIG_SOFT_TIMEOUT). */
  #softLimit(w: Worker, task: Task, soft: number | null): void {
    if (task.softSent) return;
    task.softSent = true;
    if (soft !== null) {
      if (task.onTimeout) safeCall(task.onTimeout, [{ soft: true, timeout: soft }], task.result.propagate);
      this.#emit('timeout', { result: task.result, soft: true, timeout: soft, pid: w.pid });
    }
    if (w.proc.exitcode === null && w.pid !== null) {
      try {
        process.kill(w.pid, 'SIGUSR1');
      } catch {
        // gone already
      }
    }
  }

  #disarm(task: Task): void {
    task.timer?.cancel();
    task.softTimer?.cancel();
    task.timer = null;
    task.softTimer = null;
  }

  /** SIGTERM, then SIGKILL 0.1 s later if it still runs (a synchronous loop never sees SIGTERM's handler); replaced at once. */
  #kill(w: Worker): void {
    w.retiring = true;
    w.killed = true;
    if (w.proc.exitcode === null) {
      w.proc.terminate();
      setTimeout(() => {
        if (w.proc.exitcode === null) w.proc.kill();
      }, 100).unref();
    }
    this.#replenish();
    this.#dispatch();
  }

  #setResult(task: Task, ok: boolean, value: unknown): void {
    const r = task.result;
    const was = r.done;
    if (r.discarded) return; // ignored from now on, as billiard's (it is out of the cache)
    r.set(task.i, ok, value);
    if (r.done) {
      this.#cache.delete(task.job);
      this.#lost.delete(r);
      if (!was) {
        if (r.abort !== null) r.abort.signal.removeEventListener('abort', r.abort.listener);
        if (this.onTimeoutCancel !== null && isPlainApply(r)) safeCall(this.onTimeoutCancel, [r]);
      }
    }
    this.#updateRef();
    this.#notify();
  }

  #emit<K extends keyof PoolEvents>(event: K, ...args: PoolEvents[K]): void {
    try {
      (this.emit as (e: K, ...a: PoolEvents[K]) => boolean)(event, ...args);
    } catch (e) {
      process.emitWarning(`Pool '${event}' listener raised exception: ${String(e)}`, 'PoolCallbackWarning');
    }
  }

  #workerGone(w: Worker): void {
    this.#workers.delete(w);
    this.#exits++;
    const exitcode = w.proc.exitcode;
    const held = w.held.splice(0);
    const requeue: Task[] = [];
    const lost = new Map<AnyResult, Task[]>();
    const written = new Set<AnyResult>();
    for (const task of held) this.#disarm(task);
    this.#hook('processFlushQueues', () => this.processFlushQueues(w.proc));
    // billiard's order: every job the worker held hears of it, then each part is settled or handed on.
    if (w.pid !== null) {
      const pid = w.pid;
      for (const r of new Set(held.map((t) => t.result as AnyResult))) this.#hook('onJobProcessDown', () => this.onJobProcessDown(r, pid));
    }
    for (const task of held) {
      const r = task.result as AnyResult;
      if (this.#state === TERMINATE || (w.terminated && task.acked)) {
        this.#setResult(task, false, new ExceptionInfo(new Terminated(-(exitcode ?? -15))));
      } else if (task.acked) {
        const parts = lost.get(r);
        if (parts === undefined) lost.set(r, [task]);
        else parts.push(task);
      } else {
        written.add(r);
        requeue.push(task); // handed over but never accepted: another worker runs it
      }
    }
    for (const r of written) if (!r.done) this.#hook('onPartialRead', () => this.onPartialRead(r, w.proc));
    this.#tasks.unshiftAll(requeue.filter((t) => !t.result.done && !t.result.discarded));
    for (const [r, parts] of lost) {
      if (r.done || r.discarded) continue;
      const known = this.#lost.get(r);
      if (known === undefined) this.#lost.set(r, parts);
      else known.push(...parts);
      this.#hook('onJobProcessLost', () => this.onJobProcessLost(r, w.pid ?? 0, exitcode ?? 0));
    }
    safeCall(this.onProcessDown, [w.proc]);
    this.#emit('processDown', w.proc);
    if (w.pid !== null) this.#emit('processExit', w.pid, exitcode);
    const abnormal = this.#state !== TERMINATE && !w.killed && !w.terminated && exitcode !== 0 && exitcode !== 155;
    if (w.accepted) this.#startFailures = 0;
    else if (abnormal) this.#startFailures++;
    if (abnormal && this.maxRestarts !== null) {
      const now = performance.now();
      this.#restarts = this.#restarts.filter((t) => now - t < this.maxRestartFreq * 1000);
      this.#restarts.push(now);
      if (this.#restarts.length > this.maxRestarts) {
        // billiard's restart_state: the pool closes (billiard then SIGTERMs its own process; this one does not).
        this.#failWaiting(new RestartFreqExceeded(`${this.maxRestarts} in ${this.maxRestartFreq}s`));
        this.close();
      }
    }
    if (this.maxRestarts === null && this.#startFailures >= START_FAILURE_LIMIT && this.#tasks.length > 0) {
      // Workers die before they take a job: fail what waits rather than hang (billiard restarts for ever).
      this.#failWaiting(new RestartFreqExceeded(`workers exited ${this.#startFailures} times in a row before accepting a job (last: ${exitDescription(exitcode)}; does the initializer throw?)`));
    }
    this.#replenish();
    this.#dispatch();
    this.#notify();
  }

  /** Calls an override point; what it throws becomes a warning (the pool runs on). */
  #hook(name: string, call: () => void): void {
    try {
      call();
    } catch (e) {
      process.emitWarning(`Pool.${name}() raised exception: ${String(e)}`, 'PoolCallbackWarning');
    }
  }

  #failWaiting(err: Error): void {
    for (const task of this.#tasks.drain()) this.#setResult(task, false, new ExceptionInfo(err));
  }

  /** Starts the workers missing, after a back-off delay when workers keep dying at start. */
  #replenish(): void {
    if (this.#state === TERMINATE || (this.#state === CLOSE && this.#tasks.length === 0)) return;
    const missing = this.#processes - this.#liveWorkers() - this.#scheduled;
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
      const still = this.#processes - this.#liveWorkers() - this.#scheduled;
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
    this.#changed = null;
    wake?.resolve();
  }

  /** A promise of the next change of state (a job settled, a worker came or went, a close...). */
  get #changedPromise(): Promise<void> {
    return (this.#changed ??= latch()).promise;
  }

  /**
   * Parts a worker may hold at once now: the prefetch option, or with
   * 'auto' (the default) what the parts' mean run time calls for.
   */
  get prefetch(): number {
    const fixed = this.#fixedPrefetch;
    if (fixed !== null) return fixed;
    const mean = this.#meanRunMs;
    if (mean < 0) return AUTO_PREFETCH_START;
    const depth = Math.ceil(AUTO_QUEUE_MS / Math.max(mean, 0.001)) + 1;
    return depth < AUTO_PREFETCH_MIN ? AUTO_PREFETCH_MIN : depth > AUTO_PREFETCH_MAX ? AUTO_PREFETCH_MAX : depth;
  }

  /**
   * Hands queued parts to workers: one to each idle worker first, then, while
   * parts are left, more to each up to `prefetch` (so that a worker finds its
   * next part in its pipe when it answers). The frames for one worker go out
   * in one write. After close, idle workers get the None sentinel once
   * nothing is left.
   */
  #dispatch(): void {
    const call = ++this.#dispatches;
    const hadTasks = this.#tasks.length > 0;
    // An idle worker takes parts at once; a busy one only once it has room for half its prefetch
    // (then it is filled up): fewer, fuller writes.
    const prefetch = this.prefetch;
    const room = prefetch - Math.max(1, prefetch >> 1);
    // The workers that take parts in this call, and the fewest parts one of them holds: no
    // depth at or below that gives anything (a burst of submissions mostly finds none).
    let least = prefetch;
    for (const w of this.#workers) {
      if (w.held.length > room || !w.started || w.retiring) continue;
      w.fillIn = call;
      if (w.held.length < least) least = w.held.length;
    }
    for (let depth = least + 1; depth <= prefetch && this.#tasks.length > 0; depth++) {
      // No part waits behind another while a worker is free or about to be (still starting).
      if (depth > 1 && this.#anyWorkerFree()) break;
      for (const w of this.#workers) {
        if (this.#tasks.length === 0) break;
        if (!w.started || w.retiring || w.held.length >= depth || w.fillIn !== call) continue;
        const task = this.#tasks.shift()!;
        w.held.push(task);
        task.result.handedOver = true;
        w.sent++;
        // Its last job: it exits after it (EX_RECYCLE), and gets nothing more.
        if (this.maxtasksperchild !== null && w.sent >= this.maxtasksperchild) w.retiring = true;
        this.#send(w, task.frame);
      }
    }
    if (this.#state === CLOSE && this.#tasks.length === 0) {
      for (const w of this.#workers) if (w.started && !w.retiring && w.held.length === 0) this.#retire(w);
    }
    if (this.#tasks.length > 0) this.#replenish();
    else if (hadTasks) this.#emit('drain');
  }

  /** A worker without parts, or still starting. */
  #anyWorkerFree(): boolean {
    for (const w of this.#workers) if (!w.retiring && (!w.started || w.held.length === 0)) return true;
    return false;
  }

  /**
   * Writes a frame to a worker's inqueue (its write end is this process's
   * alone: no lock). The frames of one tick for one worker leave in one
   * write, from the connection's batch buffer (no allocation when the
   * kernel takes them whole). A failed write is not reported: the worker
   * is gone, and its death hands its parts on.
   */
  #send(w: Worker, frame: Uint8Array): void {
    const writer = w.inq.writer;
    if (writer.closed) return;
    writer[kBatch](frame, true);
  }

  /** No more parts for it: the None sentinel follows the parts it holds, after which it exits (0). */
  #retire(w: Worker): void {
    w.retiring = true;
    this.#send(w, SENTINEL_FRAME);
    this.#replenish();
  }

  // ----- submitting

  #checkRunning(): void {
    if (this.#state !== RUN) throw new ValueError('Pool not running', { code: 'POOL_NOT_RUNNING' });
  }

  /** Queues a job's parts, all pickled first: one that cannot be pickled throws here, and nothing of the job is queued. */
  #submit(
    result: ResultBase,
    parts: ReadonlyArray<{ i: number | null; func: PyGlobal; args: readonly unknown[]; kwds?: Record<string, unknown> | null }>,
    options?: SubmitOptions,
  ): void {
    if (this.maxQueue !== null && this.#tasks.length >= this.maxQueue) {
      throw new Full(`the pool's queue is full (maxQueue ${this.maxQueue})`);
    }
    // As billiard: per-call limits count only with timeouts enabled (unset here means enabled).
    const perCall = this.enableTimeouts;
    const limit = perCall && options?.timeout !== undefined && options.timeout !== null ? limitSeconds(options.timeout, 'timeout') : this.timeout;
    const soft = perCall && options?.softTimeout !== undefined && options.softTimeout !== null ? limitSeconds(options.softTimeout, 'softTimeout') : this.softTimeout;
    const lostTimeout = limitSeconds(options?.lostWorkerTimeout, 'lostWorkerTimeout');
    const onTimeout = options?.timeoutCallback ?? null;
    const signal = options?.signal ?? null;
    const now = performance.now();
    const tasks: Task[] = parts.map(({ i, func, args, kwds }) => ({
      job: result.job,
      i,
      frame: encodeTaskFrame(result.job, i, func, args, kwds),
      result,
      acked: false,
      limit,
      soft,
      onTimeout,
      lostTimeout,
      timer: null,
      softTimer: null,
      softSent: false,
      submitted: now,
      ackedAt: now,
    }));
    result.correlationId = options?.correlationId;
    result.propagate = options?.callbacksPropagate ?? null;
    if (tasks.length === 0) return;
    if (signal !== null && result.abort === null) {
      if (signal.aborted) {
        for (const task of tasks) this.#setResult(task, false, new ExceptionInfo(signal.reason));
        return;
      }
      const listener = (): void => this.#aborted(result, signal.reason);
      signal.addEventListener('abort', listener, { once: true });
      result.abort = { signal, listener };
    }
    this.#cache.set(result.job, result);
    this.#tasks.pushAll(tasks);
    this.#updateRef();
  }

  /** The caller aborted a job: it fails with the reason; its waiting parts are dropped, its running ones take the soft path, then the hard one. */
  #aborted(result: ResultBase, reason: unknown): void {
    const einfo = new ExceptionInfo(reason);
    for (const task of this.#tasks.removeWhere((t) => t.result === result)) this.#setResult(task, false, einfo);
    for (const w of this.#workers) {
      const task = w.held.find((t) => t.result === result);
      if (task === undefined) continue;
      this.#setResult(task, false, einfo);
      if (!task.acked || w.held[0] !== task) continue; // with synack it is skipped at its ACK; otherwise it runs, its result ignored
      this.#softLimit(w, task, null);
      this.#disarm(task);
      const grace: Timer = new Timer(
        ABORT_GRACE_MS / 1000,
        () =>
          afterPendingReads(() => {
            if (task.timer === grace) task.timer = null;
            if (w.held[0] !== task) return;
            this.#release(w, task);
            this.#kill(w);
          }),
        { ref: false },
      );
      task.timer = grace;
    }
    if (result instanceof IMapIterator) result.failAll(einfo);
  }

  /** @internal discard(): the job's waiting parts are dropped and the pool forgets it. */
  [kDiscard](result: ResultBase): void {
    this.#tasks.removeWhere((t) => t.result === result);
    this.#lost.delete(result);
    this.#cache.delete(result.job);
    if (result.abort !== null) result.abort.signal.removeEventListener('abort', result.abort.listener);
    this.#updateRef();
    this.#notify();
  }

  /** @internal the pids of the workers running the job's parts now. */
  [kRunningPids](result: ResultBase): number[] {
    const pids: number[] = [];
    for (const w of this.#workers) if (w.held[0]?.result === result && w.held[0].acked && w.pid !== null) pids.push(w.pid);
    return pids;
  }

  /**
   * Runs `fn(...args)` in a worker; `args` is checked against `fn`'s
   * parameters. An argument that cannot be pickled, or a function a worker
   * cannot import, throws here. ValueError when the pool is not running
   * (billiard returns None); `Full` past `maxQueue`.
   */
  applyAsync<F extends AnyFn>(fn: F, args: Readonly<DropLast<Parameters<F>>>, options: ApplyOptions<Awaited<ReturnType<F>>> & { kwds: Last<Parameters<F>> }): ApplyResult<Awaited<ReturnType<F>>>;
  applyAsync<F extends AnyFn>(fn: F, args?: Readonly<Parameters<F>>, options?: ApplyOptions<Awaited<ReturnType<F>>>): ApplyResult<Awaited<ReturnType<F>>>;
  applyAsync<T = unknown>(fn: PyGlobal, args?: readonly unknown[], options?: ApplyOptions<T>): ApplyResult<T>;
  applyAsync(fn: AnyFn | PyGlobal, args: readonly unknown[] = [], options?: ApplyOptions<unknown>): ApplyResult<unknown> {
    checkOptionNames(options, APPLY_OPTIONS, 'Pool.applyAsync()');
    this.#checkRunning();
    const result = new ApplyResult<unknown>(this, 1, options?.callback, options?.errorCallback);
    result.acceptCallback = options?.acceptCallback ?? null;
    this.#submit(result, [{ i: null, func: this.#taskRef(fn), args, kwds: options?.kwds }], options);
    this.#dispatch();
    return result;
  }

  /** `applyAsync(...).get()`. */
  apply<F extends AnyFn>(fn: F, args: Readonly<DropLast<Parameters<F>>>, options: ApplyOptions<Awaited<ReturnType<F>>> & { kwds: Last<Parameters<F>> }): Promise<Awaited<ReturnType<F>>>;
  apply<F extends AnyFn>(fn: F, args?: Readonly<Parameters<F>>, options?: ApplyOptions<Awaited<ReturnType<F>>>): Promise<Awaited<ReturnType<F>>>;
  apply<T = unknown>(fn: PyGlobal, args?: readonly unknown[], options?: ApplyOptions<T>): Promise<T>;
  async apply(fn: AnyFn | PyGlobal, args: readonly unknown[] = [], options?: ApplyOptions<unknown>): Promise<unknown> {
    return this.applyAsync(fn as PyGlobal, args, options).get();
  }

  #chunksize(length: number, chunksize: number | null | undefined): number {
    if (chunksize === null || chunksize === undefined) return length === 0 ? 0 : Math.ceil(length / (this.#processes * 4));
    if (!Number.isInteger(chunksize) || chunksize < 1) throw new ValueError('chunksize must be a positive integer');
    return chunksize;
  }

  #mapAsync<T>(star: boolean, fn: PoolFunction, iterable: Iterable<unknown>, options?: MapOptions<T>): MapResult<T> {
    checkOptionNames(options, MAP_OPTIONS, star ? 'Pool.starmap()' : 'Pool.map()');
    this.#checkRunning();
    const items = [...iterable];
    const chunksize = this.#chunksize(items.length, options?.chunksize);
    const func = this.#taskRef(fn);
    const result = new MapResult<T>(this, items.length, chunksize, options);
    const parts = [];
    for (let k = 0; k * chunksize < items.length; k++) {
      // makeTuple takes the fresh slice as it is: a spread of a chunk into tuple() would copy it through the
      // stack, and throws RangeError past about 120,000 items (a default chunk of a map of a million items).
      const chunk = items.slice(k * chunksize, (k + 1) * chunksize);
      if (star) for (let n = 0; n < chunk.length; n++) chunk[n] = makeTuple(Array.from(chunk[n] as Iterable<unknown>));
      parts.push({ i: k, func: star ? STARMAPSTAR : MAPSTAR, args: [tuple(func, makeTuple(chunk))] });
    }
    this.#submit(result, parts, options);
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
  async map<F extends AnyFn>(fn: F | PyGlobal, iterable: Iterable<Parameters<F>[0]>, options?: MapOptions<Awaited<ReturnType<F>>>): Promise<Array<Awaited<ReturnType<F>>>> {
    return this.mapAsync(fn, iterable, options).get();
  }

  /** `starmapAsync(...).get()`. */
  async starmap<F extends AnyFn>(fn: F | PyGlobal, iterable: Iterable<Parameters<F>>, options?: MapOptions<Awaited<ReturnType<F>>>): Promise<Array<Awaited<ReturnType<F>>>> {
    return this.starmapAsync(fn, iterable, options).get();
  }

  #imap<T>(ordered: boolean, fn: PoolFunction, iterable: Iterable<unknown> | AsyncIterable<unknown>, options: IMapOptions | undefined): IMapIterator<T> {
    checkOptionNames(options, IMAP_OPTIONS, ordered ? 'Pool.imap()' : 'Pool.imapUnordered()');
    this.#checkRunning();
    const chunksize = options?.chunksize;
    const size = chunksize ?? 1;
    if (!Number.isInteger(size) || size < 1) throw new ValueError('Chunksize must be 1+, not ' + String(chunksize));
    const func = this.#taskRef(fn);
    const it = new IMapIterator<T>(this, 0, ordered, size > 1);
    const part = (k: number, items: unknown[]): { i: number; func: PyGlobal; args: unknown[] } =>
      size === 1 ? { i: k, func, args: [items[0]] } : { i: k, func: MAPSTAR, args: [tuple(func, makeTuple(items))] };
    if (Symbol.asyncIterator in Object(iterable)) {
      void this.#feed(it, iterable as AsyncIterable<unknown>, size, part, options);
      return it;
    }
    // A synchronous input is read now; one that throws ends at that position, its error delivered there.
    const items: unknown[] = [];
    let error: { error: unknown } | undefined;
    try {
      for (const x of iterable as Iterable<unknown>) items.push(x);
    } catch (e) {
      error = { error: e };
    }
    const parts = [];
    for (let k = 0; k * size < items.length; k++) parts.push(part(k, items.slice(k * size, (k + 1) * size)));
    it.parts = parts.length;
    this.#submit(it, parts, options);
    this.#inputEnded(it, error);
    this.#dispatch();
    return it;
  }

  /**
   * Reads an async input as the workers take it (at most two parts per
   * worker wait), submitting each chunk as it fills.
   */
  async #feed(
    it: IMapIterator<unknown>,
    input: AsyncIterable<unknown>,
    size: number,
    part: (k: number, items: unknown[]) => { i: number; func: PyGlobal; args: unknown[] },
    options: IMapOptions | undefined,
  ): Promise<void> {
    let k = 0;
    let chunk: unknown[] = [];
    const flush = (): void => {
      if (chunk.length === 0) return;
      const p = part(k, chunk);
      chunk = [];
      this.#submit(it, [p], options);
      it.parts = ++k;
      this.#dispatch();
    };
    try {
      for await (const x of input) {
        if (this.#state === TERMINATE || it.discarded) return;
        chunk.push(x);
        if (chunk.length === size) flush();
        while (this.#tasks.length >= 2 * this.#processes && this.#state !== TERMINATE) await this.#changedPromise;
      }
      flush();
      this.#inputEnded(it);
    } catch (e) {
      try {
        flush();
      } catch {
        // the part that could not be pickled is the error's position too
      }
      this.#inputEnded(it, { error: e });
    }
  }

  #inputEnded(it: IMapIterator<unknown>, error?: { error: unknown }): void {
    it.end(error);
    if (it.done) this.#cache.delete(it.job);
    this.#updateRef();
  }

  /** Results in input order, as they come: `for await (const v of pool.imap(fn, items))`. */
  imap<F extends AnyFn>(fn: F | PyGlobal, iterable: Iterable<Parameters<F>[0]> | AsyncIterable<Parameters<F>[0]>, options?: IMapOptions): IMapIterator<Awaited<ReturnType<F>>> {
    return this.#imap(true, fn, iterable, options);
  }

  /** Results in completion order. */
  imapUnordered<F extends AnyFn>(fn: F | PyGlobal, iterable: Iterable<Parameters<F>[0]> | AsyncIterable<Parameters<F>[0]>, options?: IMapOptions): IMapIterator<Awaited<ReturnType<F>>> {
    return this.#imap(false, fn, iterable, options);
  }

  /**
   * Resolves once fewer than `processes` parts are unfinished (billiard's
   * putlock, as an await: JavaScript cannot block a caller).
   */
  async waitForSlot(): Promise<void> {
    for (;;) {
      let busy = this.#tasks.length;
      for (const w of this.#workers) busy += w.held.length;
      if (busy < this.#processes || this.#state !== RUN) return;
      await this.#changedPromise;
    }
  }

  /** True when `maxQueue` parts wait: wait for the `drain` event before submitting more. */
  get needsDrain(): boolean {
    return this.maxQueue !== null && this.#tasks.length >= this.maxQueue;
  }

  // ----- running pools

  /** Adds `n` workers (billiard's `grow`). */
  grow(n = 1): void {
    if (!Number.isInteger(n) || n < 0) throw new ValueError('grow(n) needs an integer n >= 0');
    this.#processes += n;
    if (this.#state === RUN) this.#replenish();
    this.onGrow(n);
  }

  /**
   * Retires up to `n` idle workers and lowers the target by as many
   * (billiard's `shrink`); ValueError when every worker is busy.
   */
  shrink(n = 1): void {
    if (!Number.isInteger(n) || n < 0) throw new ValueError('shrink(n) needs an integer n >= 0');
    let done = 0;
    for (const w of this.#workers) {
      if (done >= n || this.#processes <= 1) break;
      if (!w.started || w.retiring || w.held.length > 0) continue;
      this.#processes--;
      this.#retire(w);
      done++;
      this.onShrink(1);
    }
    if (n > 0 && done === 0) throw new ValueError("Can't shrink pool. All processes busy!");
  }

  /** billiard's hook after `grow(n)` (a no-op): for subclasses. */
  onGrow(_n: number): void {}

  /** billiard's hook for each worker `shrink()` retires, called with 1 (a no-op): for subclasses. */
  onShrink(_n: number): void {}

  /**
   * billiard's hook on every READY message, before the result is set (a
   * no-op): `job` and `i` name the part, `obj` is the `(ok, value)` pair,
   * `inqWFd` the worker's inqueue descriptor as it sent it. For subclasses.
   */
  onJobReady(_job: number, _i: number | null, _obj: PyTuple, _inqWFd: unknown): void {}

  /**
   * The queues of the next worker (billiard's `get_process_queues`, Celery's
   * AsynPool gives each worker its own): `[inq, outq, synq]`, synq null
   * without synack. The pool keeps the write end of `inq` and the read end
   * of `outq` (and the write end of `synq`) and closes the others once the
   * worker started, so each call must return new queues. For subclasses.
   */
  getProcessQueues(): [SimpleQueue, SimpleQueue, SimpleQueue | null] {
    return [new SimpleQueue(), new SimpleQueue(), this.synack ? new SimpleQueue() : null];
  }

  /**
   * With synack, answers a worker's ACK of part `i` of `job` on its syn
   * pipe, whose write end in this process is the descriptor `fd`:
   * `response` is ACK (run it) or NACK (skip it: its job was discarded or
   * aborted meanwhile). billiard's base `send_ack` does nothing and needs a
   * subclass (Celery's AsynPool); this one writes billiard's `(ACK, (0,))`
   * or `(NACK, (0,))` pickle. An override must answer, or the worker waits.
   */
  sendAck(response: number, _job: number, _i: number | null, fd: number): void {
    for (const w of this.#workers) {
      const writer = w.synq?.writer;
      if (writer === undefined || writer.closed || writer.fileno() !== fd) continue;
      writer.sendBytes(response === NACK ? SYN_NACK : SYN_ACK).catch(() => undefined);
      return;
    }
  }

  /** billiard's hook as a worker is cleaned up after its exit, before its jobs are settled (a no-op): for subclasses. */
  processFlushQueues(_worker: Process): void {}

  /** billiard's hook for each job a worker held (running or waiting in its pipe) when it exited (a no-op): for subclasses. */
  onJobProcessDown(_job: ApplyResult<unknown> | IMapIterator<unknown>, _pidGone: number): void {}

  /**
   * Called for each job with a part written to a worker's pipe that the
   * worker exited without accepting, before the pool hands that part to
   * another worker (billiard's hook, a no-op): for subclasses.
   */
  onPartialRead(_job: ApplyResult<unknown> | IMapIterator<unknown>, _worker: Process): void {}

  /**
   * Called for each job whose part a worker accepted and had not answered
   * when it exited (after its pipe was read to the end, `lostWorkerTimeout`
   * at most), with the worker's pid and exit code (a signal as its negative
   * number). The base fails those parts with billiard's `WorkerLostError`;
   * an override that does not call it leaves them pending until
   * `markAsWorkerLost(job, exitcode)` or `terminate()`.
   */
  onJobProcessLost(job: ApplyResult<unknown> | IMapIterator<unknown>, _pid: number, exitcode: number): void {
    const parts = this.#lost.get(job);
    if (parts === undefined) return;
    const einfo = workerLost(exitcode, job.job);
    for (const task of parts) this.#setResult(task, false, einfo);
  }

  /** What the workers' exits wait on (billiard's `process_sentinels`: their sentinels), for `wait()`. */
  get processSentinels(): Sentinel[] {
    return [...this.#workers].map((w) => w.proc.sentinel);
  }

  /**
   * Fails every part of `result` still pending with billiard's
   * `WorkerLostError('Worker exited prematurely: <how> Job: <job>.')`
   * (billiard's `mark_as_worker_lost(job, exitcode)`); a part a worker still
   * runs goes on, its answer ignored.
   */
  markAsWorkerLost<T>(result: ApplyResult<T> | MapResult<T> | IMapIterator<T>, exitcode: number): void {
    const einfo = workerLost(exitcode, result.job);
    for (const task of this.#tasks.removeWhere((t) => t.result === result)) this.#setResult(task, false, einfo);
    for (const task of this.#lost.get(result) ?? []) this.#setResult(task, false, einfo);
    for (const w of this.#workers) for (const task of w.held) if (task.result === result) this.#setResult(task, false, einfo);
    if (result instanceof IMapIterator) result.failAll(einfo);
  }

  /** The CPUs this machine offers to the process (billiard's `Pool.cpu_count`). */
  cpuCount(): number {
    return availableParallelism();
  }

  /**
   * Replaces every worker: idle ones now, busy ones after their current
   * part (billiard's `restart`, which idle workers notice only after one
   * more job). Needs `allowRestart: true`.
   */
  restart(): void {
    if (!this.allowRestart) throw new AttributeError('restart() needs a pool created with allowRestart: true');
    if (this.#state !== RUN) return;
    // The sentinel goes after the parts each holds: a busy worker exits once it has answered them.
    for (const w of [...this.#workers]) if (!w.retiring && w.started) this.#retire(w);
  }

  /**
   * Sends `signal` (default SIGTERM) to the worker `pid` of this pool: the
   * part it runs fails with `Terminated(signal number)` once it exited
   * (billiard's `terminate_job`; no SIGKILL follows), and it is replaced.
   */
  terminateJob(pid: number, signal: NodeJS.Signals | number = 'SIGTERM'): void {
    for (const w of this.#workers) {
      if (w.pid !== pid || w.proc.exitcode !== null) continue;
      w.terminated = true;
      w.retiring = true;
      try {
        process.kill(pid, signal);
      } catch {
        // already gone
      }
      this.#replenish();
      return;
    }
  }

  /** Starts the workers missing now (billiard's `maintain_pool`; this pool also does it by itself). */
  maintainPool(): void {
    this.#replenish();
    this.#dispatch();
  }

  /** True while no worker has exited (billiard's `did_start_ok`). */
  didStartOk(): boolean {
    return this.#exits === 0;
  }

  /** Queue depth, workers, utilisation and run/wait-time percentiles. */
  stats(): PoolStats {
    let idle = 0;
    let running = 0;
    let workers = 0;
    let busyNow = 0;
    const now = performance.now();
    for (const w of this.#workers) {
      if (w.retiring || !w.started) continue;
      workers++;
      const first = w.held[0];
      if (first === undefined) idle++;
      else {
        running++;
        if (first.acked) busyNow += now - first.ackedAt;
      }
    }
    const span = (now - this.#born) * Math.max(1, this.#processes);
    return {
      processes: this.#processes,
      workers,
      idle,
      running,
      queued: this.#tasks.length,
      completed: this.#completed,
      started: this.#workerCount,
      utilisation: span > 0 ? Math.min(1, (this.#busyMs + busyNow) / span) : 0,
      runTime: this.#runTimes.summary(),
      waitTime: this.#waitTimes.summary(),
    };
  }

  // ----- lifecycle

  /** Stops accepting work; the workers exit once every submitted job is done. */
  close(): void {
    if (this.#state !== RUN) return;
    this.#state = CLOSE;
    this.#dispatch();
    this.#notify();
  }

  /**
   * Stops now: SIGTERM to every worker. Jobs not finished fail with
   * `Terminated` (billiard leaves them pending for ever). Resolves once the
   * workers are gone.
   */
  async terminate(): Promise<void> {
    if (this.#state !== TERMINATE) {
      this.#state = TERMINATE;
      this.#failWaiting(new Terminated(15));
      for (const w of this.#workers) {
        w.retiring = true;
        if (w.proc.exitcode === null) w.proc.terminate(); // one still being spawned gets it once it runs
      }
      for (const parts of [...this.#lost.values()]) for (const task of parts) this.#setResult(task, false, new ExceptionInfo(new Terminated(15)));
      for (const r of this.#cache.values()) {
        if (r instanceof IMapIterator) r.failAll(new ExceptionInfo(new Terminated(15)));
      }
      this.#notify();
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
        else await this.#changedPromise;
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

  override toString(): string {
    return `<Pool state=${['RUN', 'CLOSE', 'TERMINATE'][this.#state]} pool_size=${this.#workers.size}>`;
  }
}

/** An ApplyResult of applyAsync (not a map's): what onTimeoutSet/onTimeoutCancel see, as billiard. */
/** billiard's failure for a job whose worker is gone: `WorkerLostError('Worker exited prematurely: <how> Job: <job>.')`. */
function workerLost(exitcode: number | null, job: number): ExceptionInfo {
  return new ExceptionInfo(new WorkerLostError(`Worker exited prematurely: ${exitDescription(exitcode)} Job: ${job}.`));
}

function isPlainApply(r: ResultBase): r is ApplyResult {
  return r instanceof ApplyResult && !(r instanceof MapResult);
}
