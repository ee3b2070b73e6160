/**
 * Contexts and start methods (spec/api.md §1, §1.1): one context object per
 * start method, whose factories are the top-level functions. Node cannot
 * fork: `'spawn'` (the default) starts a fresh `node`; `'forkserver'` hands
 * targets to pre-started children; `'fork'` is refused with the reason.
 */

import { availableParallelism } from 'node:os';

import { AuthenticationError, BufferTooShort, Pipe, ProcessError, TimeoutError, type Connection, type PipeOptions } from './connection/index.js';
import { currentProcess, parentProcess, type CurrentProcess, type ParentProcess } from './process/current.js';
import { getLogger, logToStderr, type Logger, type LogLevel } from './process/logger.js';
import { SoftTimeLimitExceeded, TimeLimitExceeded, ValueError, WorkerLostError } from './process/errors.js';
import { activeChildren, ForkServerProcess, Process, SpawnProcess } from './process/process.js';
import { forkServer } from './process/forkserver.js';
import { setNodeExecutable } from './process/spawn.js';
import { Empty, Full, JoinableQueue, Queue, SimpleQueue, type QueueOptions } from './queues/index.js';
import { Pool, type PoolOptions } from './pool/index.js';
import { SyncManager, type BaseManagerOptions } from './managers/index.js';
import { Array as SharedArray, RawArray, RawValue, Value, type Typecode } from './sharedctypes/index.js';
import { Barrier, BoundedSemaphore, Condition, Event, Lock, RLock, Semaphore, setOwnerName } from './synchronize/index.js';

setOwnerName(() => currentProcess().name);
import {
  checkMethod,
  getAllStartMethods,
  getStartMethod,
  setStartMethod,
  type StartMethod,
} from './process/start-method.js';

export { getAllStartMethods, getStartMethod, setStartMethod, type StartMethod };

/**
 * A context: the factories of one start method (Python's concrete
 * contexts, `SpawnContext` and `ForkServerContext`). Its functions are the
 * top-level ones; `Process` is the process class of its start method, and
 * the exception classes are there as Python's contexts carry them. Pools,
 * queues, locks, shared values and managers join it with their layers.
 */
export class Context {
  readonly startMethod: StartMethod;
  /** Processes of this context (`SpawnProcess` or `ForkServerProcess`). */
  readonly Process: typeof Process;
  readonly ProcessError = ProcessError;
  readonly BufferTooShort = BufferTooShort;
  readonly TimeoutError = TimeoutError;
  readonly AuthenticationError = AuthenticationError;
  readonly TimeLimitExceeded = TimeLimitExceeded;
  readonly SoftTimeLimitExceeded = SoftTimeLimitExceeded;
  readonly WorkerLostError = WorkerLostError;
  constructor(method: StartMethod) {
    this.startMethod = method;
    this.Process = method === 'forkserver' ? ForkServerProcess : SpawnProcess;
  }
  /** Python's `get_start_method()` of a concrete context: its own method. */
  getStartMethod(): StartMethod {
    return this.startMethod;
  }
  /** A concrete context's method cannot be changed (ValueError, as in billiard). */
  setStartMethod(_method?: string | null): never {
    throw new ValueError('cannot set start method of concrete context', { code: 'CONCRETE_CONTEXT' });
  }
  /** This context (no method), or the context of `method`. */
  getContext(method?: string | null): Context {
    return method === undefined || method === null ? this : getContext(method);
  }
  getAllStartMethods(): StartMethod[] {
    return getAllStartMethods();
  }
  readonly Empty = Empty;
  readonly Full = Full;
  Pipe(options?: PipeOptions): [Connection, Connection] {
    return Pipe(options);
  }
  Lock(): Lock {
    return new Lock();
  }
  RLock(): RLock {
    return new RLock();
  }
  Semaphore(value?: number): Semaphore {
    return new Semaphore(value);
  }
  BoundedSemaphore(value?: number): BoundedSemaphore {
    return new BoundedSemaphore(value);
  }
  Condition(lock?: Lock | RLock | null): Condition {
    return new Condition(lock);
  }
  Event(): Event {
    return new Event();
  }
  Barrier(parties: number, options?: { action?: (() => unknown) | null; timeout?: number | null }): Barrier {
    return new Barrier(parties, options);
  }
  Queue(maxsize?: number, options?: QueueOptions): Queue {
    return new Queue(maxsize, options);
  }
  JoinableQueue(maxsize?: number, options?: QueueOptions): JoinableQueue {
    return new JoinableQueue(maxsize, options);
  }
  SimpleQueue(options?: QueueOptions): SimpleQueue {
    return new SimpleQueue(options);
  }
  /** A started SyncManager whose server process starts with this context's method (billiard's `Manager()`). */
  async Manager(options?: Omit<BaseManagerOptions, 'context'>): Promise<SyncManager> {
    const m = new SyncManager({ ...options, context: this });
    await m.start();
    return m;
  }
  /** A Pool whose workers start with this context's method. */
  Pool(options?: Omit<PoolOptions, 'context'>): Pool {
    return new Pool({ ...options, context: this });
  }
  readonly Value = Value;
  readonly Array = SharedArray;
  readonly RawValue = RawValue;
  readonly RawArray = RawArray;
  currentProcess(): CurrentProcess {
    return currentProcess();
  }
  parentProcess(): ParentProcess | null {
    return parentProcess();
  }
  activeChildren(): Process[] {
    return activeChildren();
  }
  /** The number of CPUs (`os.availableParallelism()`). */
  cpuCount(): number {
    return availableParallelism();
  }
  setExecutable(path: string): void {
    setExecutable(path);
  }
  setForkserverPreload(modules: readonly string[]): void {
    setForkserverPreload(modules);
  }
  /** billiard's logger, named `'multiprocessing'` (see `getLogger`). */
  getLogger(): Logger {
    return getLogger();
  }
  /** Turns logging to stderr on, optionally setting the level; returns the logger (see `logToStderr`). */
  logToStderr(level?: LogLevel | null): Logger {
    return logToStderr(level);
  }
  freezeSupport(): void {}
  allowConnectionPickling(): void {}
  /** Always false: no context of Node forks. */
  forkingIsEnabled(): boolean {
    return false;
  }
}

const contexts = new Map<StartMethod, Context>();

/** The context of a start method, or of the default one (fixing the start method if unset). */
export function getContext(method?: string | null): Context {
  const m = method === undefined || method === null ? getStartMethod()! : checkMethod(method);
  let ctx = contexts.get(m);
  if (ctx === undefined) {
    ctx = new Context(m);
    contexts.set(m, ctx);
  }
  return ctx;
}

/**
 * Modules every fork server child imports before it is handed a target
 * (Python's `set_forkserver_preload`): specifiers or URLs.
 */
export function setForkserverPreload(modules: readonly string[]): void {
  forkServer().setPreload(modules);
}

/**
 * billiard's `forkserver` module. `ensureRunning()` starts the fork
 * server's children now and resolves once they wait (otherwise the first
 * `start()` of a forkserver process does it); during a burst, once the pool
 * the burst grew waits (the growth starts when the burst's cold children
 * have reported, `coldReportSeconds` at most). `setPoolSize(n)` is
 * billiard-ts only (Python's server forks on demand): how many children are
 * kept started and waiting. By default the pool adapts: it keeps the number
 * of CPUs (at most 4) until a burst of starts finds it empty, then grows by
 * one for each start that had to spawn a cold child, up to 8, and goes back
 * after 30 seconds without a start. `setPoolSize(n)` fixes the size,
 * `setPoolSize(null)` makes it adapt again. `start()` takes a waiting child
 * when there is one and starts a fresh one otherwise; each child taken is
 * replaced in the background.
 */
export const forkserver = Object.freeze({
  ensureRunning(): Promise<void> {
    return forkServer().ready();
  },
  setForkserverPreload,
  setPoolSize(size: number | null): void {
    forkServer().size = size;
  },
});

/** The `node` binary children run (Python's `set_executable`); default `process.execPath`. */
export function setExecutable(path: string): void {
  setNodeExecutable(path);
}

/** A no-op kept for parity: Python needs it for frozen Windows executables. */
export function freezeSupport(): void {}

/** A no-op kept for parity: Connections can always be pickled to children. */
export function allowConnectionPickling(): void {}

/** Always false: Node cannot fork (billiard's deprecated `forking_is_enabled`). */
export function forkingIsEnabled(): boolean {
  return false;
}

/** Deprecated in billiard; here it only warns, as forking cannot be enabled. */
export function forkingEnable(value: boolean): void {
  process.emitWarning(`forkingEnable(${String(value)}) has no effect: Node.js cannot fork`, 'DeprecationWarning');
}

/** The number of CPUs (`os.availableParallelism()`), as billiard's `cpu_count()`. */
export function cpuCount(): number {
  return availableParallelism();
}
