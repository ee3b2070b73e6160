/**
 * The worker side of the pool (spec/pool.md §3.2-3.5): the target of every
 * pool worker process. It reads one TASK frame at a time from its inqueue,
 * answers ACK, runs the function (sync or async), answers READY with
 * `(true, value)` or `(false, ExceptionInfo)`, and exits on the `None`
 * sentinel or EOF (code 0), or after `maxtasks` tasks or past
 * `maxMemoryPerChild` KiB of peak RSS (EX_RECYCLE, 155), sending DEATH
 * `(4, (pid, exitcode))` last. It writes nothing before its first job, as
 * billiard's worker.
 *
 * Soft time limits arrive as billiard sends them, SIGUSR1 (a listener keeps
 * Node's debugger from starting): the running task's AbortSignal
 * (`currentTask().signal`) is aborted with `SoftTimeLimitExceeded`. An async
 * task sees it at its next await of anything that takes the signal, or at
 * `currentTask().checkpoint()`; a task that catches it may clean up and
 * return. Synchronous JavaScript cannot be interrupted: it meets only the
 * hard limit.
 *
 * With a syn queue (`synack`), the worker waits after its ACK for the pool's
 * answer, `(ACK, ...)` to run the job or `(NACK, ...)` to skip it (no READY),
 * as Celery's AsynPool workers do (spec/pool.md §2.5).
 *
 * Functions arrive as global references (protocol.ts): `billiard.pool.mapstar`
 * and `starmapstar` are built in; any other is the export `name` of the module
 * at URL `module`, imported once, or (in a billiard pool) a Python function
 * with a registered Node implementation.
 *
 * Two entry points share the loop: `poolWorker` for a billiard-ts Pool (the
 * worker's own pipes, no locks) and `billiardPoolWorker` for a real billiard
 * Pool (compat/billiard_ts.py's NodePool: the pool's shared queues, under its
 * named semaphores).
 */

import { closeSync } from 'node:fs';

import { kBatch, kFlushBatch } from '../connection/connection.js';
import { defaultRegistry, PyGlobal, PyTuple, dumps, loads, tuple } from '../pickle/index.js';
import { checkLoadLimits, type LoadLimits, type UnpicklerOptions } from '../pickle/unpickler.js';
import { SoftTimeLimitExceeded } from '../process/errors.js';
import { importUserModule } from '../process/current.js';
import { parseRef } from '../process/locate.js';
import { quickenTierUp } from '../process/tierup.js';
import { SimpleQueue } from '../queues/index.js';
import { ACK, DEATH, encodeAckFrame, encodeReadyFrame, frameScratch, EX_FAILURE, EX_OK, EX_RECYCLE, exceptionInfoObject, MaybeEncodingError, NACK, READY, TASK, monotonic, decodeJobHead, jobHead } from './protocol.js';

type Fn = (...args: unknown[]) => unknown;

/** With BILLIARD_TS_TRACE_STARTUP set, a worker's first steps go to stderr, as a child's start-up does. */
const TRACE = process.env.BILLIARD_TS_TRACE_STARTUP !== undefined;
let traced = 0;
function mark(what: string): void {
  if (TRACE && traced++ < 6) process.stderr.write(`billiard-ts pool worker ${process.pid}: ${what} at ${performance.now().toFixed(1)} ms\n`);
}

let ownOutqueue: SimpleQueue | null = null;

/**
 * The outqueue of the pool worker this process is, or null. For tests that
 * play a hostile worker (a task writing frames of its own). @internal
 */
export function workerOutqueue(): SimpleQueue | null {
  return ownOutqueue;
}

/** What a running task can know about itself: `currentTask()` inside a pool task. */
export interface TaskContext {
  /** The job id, as the pool's result has it. */
  readonly job: number;
  /** The part: null for apply, the chunk (or item) index for map and imap. */
  readonly index: number | null;
  /**
   * Aborted with `SoftTimeLimitExceeded` when the soft time limit passes (or
   * the caller's AbortSignal fires): hand it to anything that takes a signal.
   */
  readonly signal: AbortSignal;
  /** Throws `SoftTimeLimitExceeded` once the soft limit has passed; a no-op before. */
  checkpoint(): void;
}

/**
 * The task running now: a worker runs one at a time, so a module variable
 * says which (no AsyncLocalStorage, whose promise hooks would tax every
 * await of every task). Its AbortController is made on first use.
 */
class RunningTask implements TaskContext {
  readonly job: number;
  readonly index: number | null;
  #controller: AbortController | null = null;
  /** The soft limit passed (the signal is aborted, or will be when made). */
  soft: SoftTimeLimitExceeded | null = null;
  constructor(job: number, index: number | null) {
    this.job = job;
    this.index = index;
  }
  get signal(): AbortSignal {
    if (this.#controller === null) {
      this.#controller = new AbortController();
      if (this.soft !== null) this.#controller.abort(this.soft);
    }
    return this.#controller.signal;
  }
  checkpoint(): void {
    if (this.soft !== null) throw this.soft;
  }
  /** The soft limit: the signal is aborted with SoftTimeLimitExceeded (once). */
  expire(): void {
    if (this.soft !== null) return;
    this.soft = new SoftTimeLimitExceeded();
    this.#controller?.abort(this.soft);
  }
}

let running: RunningTask | null = null;

/** The task running in this pool worker, or null outside one (between tasks, or not in a pool worker). */
export function currentTask(): TaskContext | null {
  return running;
}

function onSoftTimeout(): void {
  // A soft limit that arrives between tasks is ignored (billiard's worker exits with 1 then).
  running?.expire();
}

const imported = new Map<string, Fn>();

/** Python qualified names (`module.qualname`) with a Node implementation: a billiard pool's registry. */
const implementations = new Map<string, PyGlobal>();

/** The function a global reference names, in this process. */
export async function resolveFunction(ref: unknown): Promise<Fn> {
  if (!(ref instanceof PyGlobal)) throw new TypeError(`a task function must be a global reference, not ${typeof ref}`);
  const key = `${ref.module}#${ref.name}`;
  const hit = imported.get(key);
  if (hit !== undefined) return hit;
  let fn: unknown;
  if (ref.module === 'billiard.pool' && ref.name === 'mapstar') fn = mapstar;
  else if (ref.module === 'billiard.pool' && ref.name === 'starmapstar') fn = starmapstar;
  else {
    const impl = implementations.get(`${ref.module}.${ref.name}`);
    if (impl !== undefined) return resolveAlias(key, impl);
    if (!/^(file|data|node):/.test(ref.module)) throw new TypeError(`cannot run ${ref.module}.${ref.name} in a Node worker (a Python function needs a Python worker, or a Node implementation registered for it)`);
    const ns = await importUserModule(ref.module);
    fn = ns[ref.name];
    const def = ns.default as Record<string, unknown> | undefined;
    if (typeof fn !== 'function' && def !== null && typeof def === 'object' && Object.hasOwn(def, ref.name)) fn = def[ref.name];
  }
  if (typeof fn !== 'function') throw new TypeError(`module ${ref.module} has no exported function '${ref.name}'`);
  imported.set(key, fn as Fn);
  return fn as Fn;
}

/** The Node implementation `impl` of the Python function `key`, remembered under both names. */
async function resolveAlias(key: string, impl: PyGlobal): Promise<Fn> {
  const fn = await resolveFunction(impl);
  imported.set(key, fn);
  return fn;
}

/** Calls `fn(*args, **kwargs)`: a JavaScript function gets non-empty kwargs as its last argument. */
async function call(fn: Fn, args: readonly unknown[], kwargs: unknown): Promise<unknown> {
  return await invoke(fn, args, kwargs);
}

/** `fn(*args, **kwargs)` as it returns: a value, or a promise for an async function. */
function invoke(fn: Fn, args: readonly unknown[], kwargs: unknown): unknown {
  const kw = kwargs instanceof Map ? Object.fromEntries(kwargs) : kwargs;
  const hasKw = kw !== null && typeof kw === 'object' && Object.keys(kw).length > 0;
  return hasKw ? fn(...args, kw) : fn(...args);
}

/** Runs `func` on each item of a chunk, one after the other; `spread`: each item is an argument list. */
async function runChunk(pair: unknown, spread: boolean): Promise<unknown[]> {
  const [ref, chunk] = pair as [unknown, unknown[]];
  const fn = await resolveFunction(ref);
  const out: unknown[] = [];
  for (const x of chunk) {
    const r = spread ? fn(...(x as unknown[])) : fn(x);
    // A plain value is kept as it is: an await per item would cost a microtask turn per item.
    out.push(isThenable(r) ? await r : r);
  }
  return out;
}

function isThenable(v: unknown): v is PromiseLike<unknown> {
  return v !== null && (typeof v === 'object' || typeof v === 'function') && typeof (v as { then?: unknown }).then === 'function';
}

/** billiard's `mapstar((func, chunk))`: `[func(x) for x in chunk]`. */
const mapstar = (pair: unknown): Promise<unknown[]> => runChunk(pair, false);

/** billiard's `starmapstar((func, chunk))`: `[func(*x) for x in chunk]`. */
const starmapstar = (pair: unknown): Promise<unknown[]> => runChunk(pair, true);

function reprOf(v: unknown): string {
  try {
    return typeof v === 'string' ? `'${v}'` : String(v);
  } catch {
    return '<unprintable>';
  }
}

/**
 * Pickles the READY of a job with `write`; a result that cannot be pickled
 * becomes a MaybeEncodingError failure (§2.6).
 */
function writeReady<T>(write: (msg: unknown) => T, job: unknown, i: unknown, ok: boolean, value: unknown, inqWFd: number): T {
  try {
    return write(tuple(READY, tuple(job, i, tuple(ok, ok ? value : exceptionInfoObject(value)), inqWFd)));
  } catch (e) {
    const err = new MaybeEncodingError(reprOf(e), reprOf(value));
    return write(tuple(READY, tuple(job, i, tuple(false, exceptionInfoObject(err)), inqWFd)));
  }
}

/**
 * The error a task that did not catch its soft limit failed with: an
 * AbortError thrown after the soft limit (what Node's APIs throw for an
 * aborted signal, the reason as its cause) is reported as the
 * SoftTimeLimitExceeded it stands for.
 */
function softOrOwn(e: unknown, task: RunningTask): unknown {
  if (task.soft !== null && e !== task.soft && e instanceof Error && e.name === 'AbortError') return task.soft;
  return e;
}

/** A task's result: its value, or (ok false) what it threw. */
interface TaskOutcome {
  ok: boolean;
  value: unknown;
}

/**
 * Runs one task. A function already imported that returns a plain value is
 * run and answered without a promise or a microtask turn (three of each per
 * job before); a first call, or an async function, goes the awaited way.
 */
function runTask(job: unknown, i: unknown, func: unknown, args: unknown, kwargs: unknown): TaskOutcome | Promise<TaskOutcome> {
  const task = new RunningTask(job as number, (i ?? null) as number | null);
  running = task;
  const fn = func instanceof PyGlobal ? imported.get(`${func.module}#${func.name}`) : undefined;
  if (fn === undefined) return runTaskAwaited(task, func, args, kwargs);
  let r: unknown;
  try {
    r = invoke(fn, Array.isArray(args) ? args : [args], kwargs);
  } catch (e) {
    running = null;
    return { ok: false, value: softOrOwn(e, task) };
  }
  if (!isThenable(r)) {
    running = null;
    return { ok: true, value: r };
  }
  return settleTask(task, r);
}

async function runTaskAwaited(task: RunningTask, func: unknown, args: unknown, kwargs: unknown): Promise<TaskOutcome> {
  try {
    const fn = await resolveFunction(func);
    const value = await call(fn, Array.isArray(args) ? args : [args], kwargs);
    return { ok: true, value };
  } catch (e) {
    return { ok: false, value: softOrOwn(e, task) };
  } finally {
    running = null;
  }
}

async function settleTask(task: RunningTask, pending: PromiseLike<unknown>): Promise<TaskOutcome> {
  try {
    return { ok: true, value: await pending };
  } catch (e) {
    return { ok: false, value: softOrOwn(e, task) };
  } finally {
    running = null;
  }
}

/** The peak RSS of this process in KiB (`ru_maxrss`, as billiard measures it). */
function peakRssKiB(): number {
  return process.resourceUsage().maxRSS;
}

/** What a worker loop is given: the queues, the task limits, and how the queues are shared. */
interface LoopOptions {
  inq: SimpleQueue;
  outq: SimpleQueue;
  synq: SimpleQueue | null;
  initializer: PyGlobal | null;
  initargs: unknown[] | PyTuple | null;
  maxtasks: number | null;
  maxMemoryPerChild: number | null;
  onExit: PyGlobal | null;
  /** What jobs are loaded with (the pool's loadLimits), or undefined for the defaults. */
  loadOptions: UnpicklerOptions | undefined;
  /**
   * The queues are billiard's own, shared by every worker of a billiard
   * Pool: each job frame is read under the inqueue's read lock (exactly one
   * frame, no read-ahead). A reply of 4096 bytes or less leaves in one
   * write(2), which the pipe keeps whole, without the write lock: a worker
   * killed just after it (billiard kills for time limits) then holds no lock
   * that would wedge the pool; a larger reply takes the outqueue's write lock.
   * Otherwise the queues are this worker's alone (a billiard-ts Pool).
   */
  shared: boolean;
}

/**
 * The body of a pool worker process. `initializer` is a global reference
 * (or null) called as `initializer(...initargs)` before the first job;
 * `maxtasks` null means no limit; `synq` (or null) is the syn queue of
 * synack; `maxMemoryPerChild` is in KiB (null: no limit); `onExit` (a global
 * reference, or null) is called as `onExit(pid, exitcode)` before DEATH;
 * `loadLimits` (the pool's, or null) bound the loads of its jobs.
 */
export async function poolWorker(
  inq: SimpleQueue,
  outq: SimpleQueue,
  initializer: PyGlobal | null,
  initargs: unknown[] | PyTuple | null,
  maxtasks: number | null,
  synq: SimpleQueue | null = null,
  maxMemoryPerChild: number | null = null,
  onExit: PyGlobal | null = null,
  loadLimits: LoadLimits | null = null,
): Promise<void> {
  const loadOptions = checkLoadLimits(loadLimits, 'loadLimits');
  await workLoop({ inq, outq, synq, initializer, initargs, maxtasks, maxMemoryPerChild, onExit, loadOptions, shared: false });
}

/** A `'<module URL>#<export>'` string as the global reference it names. */
function refOf(spec: string): PyGlobal {
  const { url, name } = parseRef(spec);
  return new PyGlobal(url, name);
}

// `billiard_ts.node_task('<url>#<export>')` (compat/billiard_ts.py), as a Python pool pickles a Node task.
defaultRegistry.register('billiard_ts', 'node_task', { call: (args) => refOf(String(args[0])) });

/**
 * The body of a Node worker of a real billiard Pool (compat/billiard_ts.py's
 * `NodePool`, spec/pool.md §8a): billiard's own inqueue and outqueue, shared
 * with the pool's other workers (Node or Python) and guarded by its named
 * semaphores, which this process takes as billiard's workers do.
 * `initializer` is a `'<module URL>#<export>'` string (or null); `aliases`
 * maps Python qualified names (`module.qualname`, as pickle writes them) to
 * the `'<module URL>#<export>'` of their Node implementation; `loadLimits`
 * (or null) bound the loads of its jobs (see LoadLimits).
 */
export async function billiardPoolWorker(
  inq: SimpleQueue,
  outq: SimpleQueue,
  synq: SimpleQueue | null,
  maxtasks: number | null,
  maxMemoryPerChild: number | null,
  initializer: string | null,
  initargs: unknown[] | PyTuple | null,
  aliases: Map<string, string> | Record<string, string> | null,
  loadLimits: LoadLimits | null = null,
): Promise<void> {
  const loadOptions = checkLoadLimits(loadLimits, 'loadLimits');
  const entries = aliases instanceof Map ? [...aliases] : Object.entries(aliases ?? {});
  for (const [name, spec] of entries) implementations.set(String(name), refOf(String(spec)));
  // The pool answers DEATH, shrink() and terminate() with SIGTERM. A worker idle in its read holds
  // the inqueue's lock: give the locks back before dying, or every other worker would wait forever
  // (billiard's own workers release them as their SystemExit unwinds).
  // A wait for a lock may have taken it on its thread without this process knowing yet: settle those first.
  process.on('SIGTERM', () => {
    process.removeAllListeners('SIGTERM'); // a second SIGTERM ends it at once
    void Promise.all([inq.rlock.settleWait(), outq.wlock.settleWait()]).then(() => {
      if (inq.rlock.isMine()) {
        // The read waiting under the lock runs on a pool thread: close its descriptor first, so that
        // it cannot take a job the next worker should get once the lock is free.
        try {
          closeSync(inq.reader.fileno());
        } catch {
          // already closed
        }
        inq.rlock.release();
      }
      if (outq.wlock.isMine()) outq.wlock.release();
      process.kill(process.pid, 'SIGTERM');
    });
  });
  await workLoop({
    inq,
    outq,
    synq,
    initializer: initializer === null ? null : refOf(initializer),
    initargs,
    maxtasks,
    maxMemoryPerChild,
    onExit: null,
    loadOptions,
    shared: true,
  });
}

async function workLoop(o: LoopOptions): Promise<void> {
  const { inq, outq, synq, maxtasks, maxMemoryPerChild, shared } = o;
  const inqWFd = inq.writer.fileno();
  inq.writer.close();
  outq.reader.close();
  const synqWFd = synq === null ? null : synq.writer.fileno();
  synq?.writer.close();
  ownOutqueue = outq;
  quickenTierUp();
  mark('started');
  process.on('SIGUSR1', onSoftTimeout);
  // Ctrl-C reaches the whole process group: the pool's process decides, its workers ignore SIGINT (as billiard's).
  process.on('SIGINT', () => undefined);
  // An initializer that throws ends the worker with exit code 1 and no frame written (as billiard's).
  if (o.initializer !== null) await call(await resolveFunction(o.initializer), [...(o.initargs ?? [])], null);

  // A queue of this worker's alone: its write end is a stream, no lock. A READY waits in the
  // connection's batch for the next job's ACK, so that both leave in one write when that job is
  // already in the inqueue; the ACK is always flushed before its job runs, and a READY by the end
  // of the tick at the latest. A batched frame allocates nothing when the kernel takes it whole.
  // A failed write is not reported: the pool is gone, and the next read says so.
  // A shared queue: every frame is written whole under the write lock before the worker goes on.
  // Never a stream on a shared queue's pipe: a stream sets O_NONBLOCK on the open file description,
  // which every worker of the pool shares, and a Python worker's write into a full pipe then fails
  // with BlockingIOError (that worker dies, its job is lost).
  const out = outq.writer;
  const flush = (): void => {
    if (!shared) out[kFlushBatch]();
  };
  const ignore = (): void => undefined;
  const batch = (msg: unknown): void => out[kBatch](msg);
  const pickled = (msg: unknown): Uint8Array => dumps(msg);

  let completed = 0;
  let exitcode = EX_OK;
  for (;;) {
    if (maxtasks !== null && completed >= maxtasks) {
      exitcode = EX_RECYCLE;
      break;
    }
    if (maxMemoryPerChild !== null && completed > 0 && peakRssKiB() > maxMemoryPerChild) {
      process.stderr.write(`billiard-ts pool worker ${process.pid}: child process exiting after exceeding memory limit (${peakRssKiB()}KiB / ${maxMemoryPerChild}KiB)\n`);
      exitcode = EX_RECYCLE;
      break;
    }
    let payload: Uint8Array;
    try {
      // Shared: one whole frame under the read lock. Our own: a stream, no lock, no thread.
      payload = shared ? await inq.getPayload() : await inq.reader.recvFrame();
    } catch {
      break; // EOF (the pool is gone) or a broken pipe: an orderly exit
    }
    mark('job read');
    let msg: unknown;
    try {
      msg = loads(payload, o.loadOptions);
    } catch (e) {
      if (decodeJobHead(payload)) {
        // A job whose arguments will not load (over a load limit): the frame was read whole, so the
        // pipe is in step; that job fails with the error, and the worker goes on. Dying instead would
        // hand the same job to every replacement in turn.
        const { job, i } = jobHead;
        const accepted = monotonic();
        const ack = tuple(ACK, tuple(job, i, accepted, process.pid, synqWFd));
        if (shared) await outq.sendPayloadAtomic(dumps(ack)).catch(ignore);
        else {
          batch(ack);
          flush();
        }
        if (synq !== null) {
          try {
            await synq.reader.recv(); // the pool's answer to the ACK: a NACKed job needs no failure, but one does no harm
          } catch {
            break; // the pool is gone
          }
        }
        if (shared) await outq.sendPayloadAtomic(writeReady(pickled, job, i, false, e, inqWFd)).catch(ignore);
        else writeReady(batch, job, i, false, e, inqWFd);
        completed++;
        continue;
      }
      process.stderr.write(`billiard-ts pool worker ${process.pid}: undecodable job frame: ${String(e)}\n`);
      exitcode = EX_FAILURE;
      break;
    }
    if (msg === null) break;
    if (!(msg instanceof PyTuple) || msg.length !== 2 || msg[0] !== TASK || !(msg[1] instanceof PyTuple) || msg[1].length !== 5) {
      process.stderr.write(`billiard-ts pool worker ${process.pid}: not a TASK message\n`);
      exitcode = EX_FAILURE;
      break;
    }
    // Indexed, not destructured: destructuring a PyTuple (an Array subclass) allocates an iterator.
    const body = msg[1] as PyTuple;
    const job = body[0];
    const i = body[1];
    const func = body[2];
    const args = body[3];
    const kwargs = body[4];
    const accepted = monotonic();
    if (shared) {
      await outq.sendPayloadAtomic(dumps(tuple(ACK, tuple(job, i, accepted, process.pid, synqWFd)))).catch(ignore);
    } else {
      // The usual ACK is written straight into a frame (protocol.ts, encodeAckFrame): the same bytes.
      const n = encodeAckFrame(job as number, i as number | null, accepted, process.pid, synqWFd);
      if (n > 0) out[kBatch](frameScratch, true, n);
      else out[kBatch](tuple(ACK, tuple(job, i, accepted, process.pid, synqWFd)));
      flush();
    }
    mark('ACK sent');
    if (synq !== null) {
      let answer: unknown;
      try {
        answer = await synq.reader.recv();
      } catch {
        break; // the pool is gone
      }
      // Only the first element counts, as in billiard's worker: NACK skips the job, anything else runs it.
      if (answer instanceof PyTuple && answer[0] === NACK) continue;
    }
    const outcome = runTask(job, i, func, args, kwargs);
    const { ok, value } = outcome instanceof Promise ? await outcome : outcome;
    if (shared) await outq.sendPayloadAtomic(writeReady(pickled, job, i, ok, value, inqWFd)).catch(ignore);
    else {
      const n = ok ? encodeReadyFrame(job as number, i as number | null, value, inqWFd) : 0;
      if (n > 0) out[kBatch](frameScratch, true, n);
      else writeReady(batch, job, i, ok, value, inqWFd);
    }
    completed++;
  }
  flush();
  if (o.onExit !== null) {
    try {
      await call(await resolveFunction(o.onExit), [process.pid, exitcode], null);
    } catch (e) {
      process.stderr.write(`billiard-ts pool worker ${process.pid}: on_process_exit raised: ${String(e)}\n`);
    }
  }
  if (shared) {
    // billiard's pool answers DEATH with SIGTERM: that signal now ends the worker with its own code.
    process.removeAllListeners('SIGTERM');
    process.on('SIGTERM', () => process.exit(exitcode));
  }
  try {
    const death = tuple(DEATH, tuple(process.pid, exitcode));
    await (shared ? outq.sendPayloadAtomic(dumps(death)) : outq.writer.send(death));
  } catch {
    // the pool is gone
  }
  if (exitcode !== EX_OK) process.exit(exitcode);
}
