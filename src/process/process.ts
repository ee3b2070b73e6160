/**
 * `Process`: billiard's process object (spec/api.md §3). A child is always a
 * fresh process (see spawn.ts): a Node child imports the module of its
 * target; a Python child (a `pyfunc(...)` target) runs billiard's own spawn
 * entry point.
 *
 * Exit codes are Python's: 0 when the target returns, 1 when it throws (the
 * stack is printed as `Process <name>:` and the trace), n for
 * `process.exit(n)`, -N when killed by signal N.
 */

import { constants } from 'node:os';
import type { ChildProcess } from 'node:child_process';

import { kOnReadable } from '../connection/connection.js';
import { PyGlobal } from '../pickle/index.js';
import { currentProcess, nextChildIdentity } from './current.js';
import { AssertionError, ProcessStartupError, ValueError } from './errors.js';
import { formatRef, locateFunction } from './locate.js';
import { forkServer } from './forkserver.js';
import { launchNode, launchPython, type Launched } from './spawn.js';
import { getStartMethod, type StartMethod } from './start-method.js';

/** Options of {@link Process}: Python's keyword arguments. */
export interface ProcessOptions {
  /**
   * The function the child runs: an exported function of a module (found by
   * its module and export name), or `pyfunc('module.func')` to run a Python
   * function in a Python child. Without one, the child runs `run()`.
   */
  target?: ((...args: never[]) => unknown) | PyGlobal | null;
  /** Positional arguments of the target. */
  args?: Iterable<unknown>;
  /** Keyword arguments: a Python target gets them as such; a JS target gets them as a last argument. */
  kwargs?: Record<string, unknown> | null;
  /** Defaults to `<ClassName>-<identity>`, e.g. `Process-1`, `Process-1:2` in a child. */
  name?: string | null;
  /** A daemonic child dies with its parent; defaults to the parent's daemon flag. */
  daemon?: boolean | null;
  /** Environment of the child. Defaults to this process's. */
  env?: NodeJS.ProcessEnv;
  /** Python children: the interpreter (defaults to the one with billiard). */
  python?: string;
  /** Python children: directories added to the module search path (PYTHONPATH). */
  pythonPath?: readonly string[];
}

const children = new Set<Process>();
const daemons = new Set<Process>();
let exitHookInstalled = false;

function installExitHook(): void {
  if (exitHookInstalled) return;
  exitHookInstalled = true;
  // As Python's atexit: daemonic children are terminated when the parent exits.
  process.on('exit', () => {
    for (const p of daemons) {
      if (p.isAlive()) p.terminate();
    }
  });
}

/** A started child's state, kept out of the public object. */
interface Running {
  launched: Launched;
  exitcode: number | null;
  exited: Promise<number>;
  startupError: ProcessStartupError | null;
  /** The parent sent the child a signal: its death is not a start-up failure. */
  signalled: boolean;
}

/** Readiness of a child's exit, for `wait()` (Python's `sentinel`). */
class Sentinel {
  readonly [kOnReadable] = new Set<() => void>();
  #done = false;
  isReady(): boolean {
    return this.#done;
  }
  fire(): void {
    this.#done = true;
    for (const f of [...this[kOnReadable]]) f();
  }
}

/**
 * A process. `start()` launches the child and returns; `await join()` waits
 * for it. Subclass it and override `run()` to give the child a body (the
 * subclass must be an exported class, as the child imports it).
 */
export class Process {
  /** The start method of this class's processes; undefined: the default (see setStartMethod). */
  static startMethod: StartMethod | undefined = undefined;

  #target: ((...args: never[]) => unknown) | PyGlobal | null;
  #args: unknown[];
  #kwargs: Record<string, unknown>;
  #name: string;
  #daemon: boolean;
  #authkey: Uint8Array;
  readonly #identity: number[];
  readonly #parentPid: number;
  readonly #env: NodeJS.ProcessEnv | undefined;
  readonly #python: string | undefined;
  readonly #pythonPath: readonly string[] | undefined;
  #running: Running | null = null;
  #closed = false;
  readonly #sentinel = new Sentinel();

  constructor(options?: ProcessOptions) {
    this.#target = options?.target ?? null;
    if (this.#target !== null && typeof this.#target !== 'function' && !(this.#target instanceof PyGlobal)) {
      throw new TypeError('options.target must be a function or a pyfunc(...) reference');
    }
    this.#args = Array.from(options?.args ?? []);
    this.#kwargs = { ...(options?.kwargs ?? {}) };
    this.#identity = nextChildIdentity();
    this.#name = options?.name ?? `${new.target.name}-${this.#identity.join(':')}`;
    this.#daemon = options?.daemon ?? currentProcess().daemon;
    this.#authkey = new Uint8Array(currentProcess().authkey);
    this.#parentPid = process.pid;
    this.#env = options?.env;
    this.#python = options?.python;
    this.#pythonPath = options?.pythonPath;
  }

  /**
   * The child's body. By default it calls the target with the arguments
   * (awaiting a returned promise). Runs in the child only.
   */
  run(): unknown {
    const self = this as unknown as { __billiardTarget?: (...a: unknown[]) => unknown; __billiardArgs?: unknown[]; __billiardKwargs?: Record<string, unknown> };
    // In the child a subclass instance is rebuilt without its constructor: the target comes from the bootstrap.
    const target = #target in this ? this.#target : self.__billiardTarget;
    if (typeof target !== 'function') return undefined;
    const args = #target in this ? this.#args : (self.__billiardArgs ?? []);
    const kwargs = #target in this ? this.#kwargs : self.__billiardKwargs;
    return kwargs !== undefined && Object.keys(kwargs).length > 0 ? (target as (...a: unknown[]) => unknown)(...args, kwargs) : (target as (...a: unknown[]) => unknown)(...args);
  }

  #checkClosed(): void {
    if (this.#closed) throw new ValueError('process object is closed', { code: 'CLOSED' });
  }

  /** Starts the child. Throws at once when the target or an argument cannot be sent. */
  start(): void {
    this.#checkClosed();
    if (this.#running !== null) throw new AssertionError('cannot start a process twice');
    if (this.#parentPid !== process.pid) throw new AssertionError('can only start a process object created by current process');
    const prep = {
      name: this.#name,
      authkey: this.#authkey,
      identity: this.#identity,
      daemon: this.#daemon,
      parentPid: process.pid,
      parentName: currentProcess().name,
      dir: process.cwd(),
      startMethod: 'spawn',
    };
    let launched: Launched;
    const target = this.#target;
    const method = (this.constructor as typeof Process).startMethod ?? getStartMethod()!;
    prep.startMethod = method;
    if (target instanceof PyGlobal) {
      launched = launchPython(prep, target, this.#args, this.#kwargs, { python: this.#python, env: this.#env, pythonPath: this.#pythonPath });
    } else {
      const overridesRun = this.run !== Process.prototype.run;
      const cls = overridesRun ? formatRef(locateFunction(this.constructor)) : null;
      const state: Record<string, unknown> = overridesRun ? { ...(this as object) } : {};
      const spec = { target: target === null ? null : formatRef(locateFunction(target)), cls, args: this.#args, kwargs: this.#kwargs, state };
      launched = method === 'forkserver' ? forkServer().launch(prep, spec, { env: this.#env }) : launchNode(prep, spec, { env: this.#env });
    }
    this.#attach(launched);
  }

  #attach(launched: Launched): void {
    const child = launched.child;
    let resolveExit!: (code: number) => void;
    const running: Running = {
      launched,
      exitcode: null,
      exited: new Promise<number>((r) => (resolveExit = r)),
      startupError: null,
      signalled: false,
    };
    this.#running = running;
    children.add(this);
    let ready = launched.report === null;
    child.on('error', (e: Error) => {
      running.startupError ??= new ProcessStartupError(`could not start the child process: ${e.message}`, { cause: e });
      if (running.exitcode === null) {
        running.exitcode = 1;
        this.#sentinel.fire();
        resolveExit(1);
      }
    });
    child.on('exit', (code: number | null, signal: NodeJS.Signals | null) => {
      running.exitcode = code ?? -(constants.signals[signal as keyof typeof constants.signals] ?? 0);
      if (!ready && !running.signalled && running.startupError === null) {
        running.startupError = new ProcessStartupError(`child ${this.#name} exited with code ${running.exitcode} before it started running its target`);
      }
      children.delete(this);
      daemons.delete(this);
      launched.release();
      this.#sentinel.fire();
      resolveExit(running.exitcode);
    });
    void launched.report?.then((m) => {
      if (m?.[0] === 'ready') ready = true;
      else if (m?.[0] === 'error') {
        running.startupError = new ProcessStartupError(`child ${this.#name} could not start its target: ${String(m[2])}`, { remoteStack: String(m[3] ?? '') });
      }
    });
    if (this.#daemon) {
      daemons.add(this);
      installExitHook();
      child.unref();
      launched.unref();
    }
  }

  /**
   * Waits for the child to exit, or for `timeout` seconds (it resolves either
   * way, as Python's join). Rejects with ProcessStartupError when the child
   * failed before running its target.
   */
  async join(timeout?: number | null): Promise<void> {
    this.#checkClosed();
    if (this.#parentPid !== process.pid) throw new AssertionError('can only join a child process');
    const running = this.#running;
    if (running === null) throw new AssertionError('can only join a started process');
    if (timeout === undefined || timeout === null) await running.exited;
    else {
      if (typeof timeout !== 'number' || Number.isNaN(timeout)) throw new TypeError('timeout must be a number of seconds or null');
      let timer: NodeJS.Timeout | undefined;
      await Promise.race([running.exited, new Promise<void>((r) => (timer = setTimeout(r, Math.max(0, timeout) * 1000)))]);
      if (timer) clearTimeout(timer);
    }
    if (running.exitcode !== null && running.startupError !== null) throw running.startupError;
  }

  /** True between `start()` and the child's exit (for `currentProcess()`, always true). */
  isAlive(): boolean {
    this.#checkClosed();
    return this.#running !== null && this.#running.exitcode === null;
  }

  #signal(sig: NodeJS.Signals): void {
    this.#checkClosed();
    const running = this.#running;
    if (running === null) throw new AssertionError('can only signal a started process');
    if (running.exitcode !== null) return;
    running.signalled = true;
    try {
      running.launched.child.kill(sig);
    } catch {
      // ESRCH: already gone
    }
  }

  /** Sends SIGTERM (billiard's `TERM_SIGNAL`). */
  terminate(): void {
    this.#signal('SIGTERM');
  }

  /** Sends SIGKILL (Python 3.7+'s `kill()`). */
  kill(): void {
    this.#signal('SIGKILL');
  }

  /** billiard's `terminate_controlled()`: terminate, marked as intended. */
  terminateControlled(): void {
    this.terminate();
  }

  /**
   * Releases the process object. A running process cannot be closed
   * (ValueError, as CPython); afterwards every method raises ValueError.
   */
  close(): void {
    if (this.#closed) return;
    if (this.#running !== null && this.#running.exitcode === null) {
      throw new ValueError('Cannot close a process while it is still running. You should first call join() or terminate().', { code: 'RUNNING' });
    }
    this.#running?.launched.release();
    this.#closed = true;
  }

  /** The child's pid; null before start. */
  get pid(): number | null {
    if (!(#running in this)) return process.pid;
    this.#checkClosed();
    return this.#running?.launched.child.pid ?? null;
  }

  /** Same as `pid`. */
  get ident(): number | null {
    return this.pid;
  }

  /** The exit code: null before the child exited; -N when killed by signal N. */
  get exitcode(): number | null {
    this.#checkClosed();
    return this.#running?.exitcode ?? null;
  }

  /** Resolves with the exit code once the child has exited. */
  get exited(): Promise<number> {
    if (this.#running === null) return Promise.reject(new AssertionError('can only wait for a started process'));
    return this.#running.exited;
  }

  /** Something `wait()` accepts that becomes ready when the child exits (Python's `sentinel`). */
  get sentinel(): Sentinel {
    this.#checkClosed();
    if (this.#running === null) throw new ValueError('process not started', { code: 'NOT_STARTED' });
    return this.#sentinel;
  }

  get name(): string {
    return #name in this ? this.#name : currentProcess().name;
  }

  set name(value: string) {
    if (typeof value !== 'string') throw new AssertionError('name must be a string');
    this.#name = value;
  }

  get daemon(): boolean {
    return #daemon in this ? this.#daemon : currentProcess().daemon;
  }

  set daemon(value: boolean) {
    if (this.#running !== null) throw new AssertionError('process has already started');
    this.#daemon = Boolean(value);
  }

  get authkey(): Uint8Array {
    return #authkey in this ? this.#authkey : currentProcess().authkey;
  }

  set authkey(value: Uint8Array) {
    if (!(value instanceof Uint8Array)) throw new TypeError('authkey must be a Uint8Array (bytes)');
    this.#authkey = new Uint8Array(value);
  }

  toString(): string {
    const state = this.#running === null ? 'initial' : this.#running.exitcode === null ? 'started' : `stopped${this.#running.exitcode === 0 ? '' : `[${this.#running.exitcode}]`}`;
    return `<${this.constructor.name}(${this.#name}, ${state}${this.#daemon ? ' daemon' : ''})>`;
  }
}

/** The started children of this process that have not exited (Python's `active_children()`). */
export function activeChildren(): Process[] {
  return [...children].filter((p) => p.isAlive());
}

/** Processes started with the `'spawn'` start method (a fresh `node`), whatever the default. */
export class SpawnProcess extends Process {
  static override startMethod: StartMethod | undefined = 'spawn';
}

/** Processes started from the fork server's warm children (see forkserver.ts). */
export class ForkServerProcess extends Process {
  static override startMethod: StartMethod | undefined = 'forkserver';
}
