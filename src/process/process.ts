/**
 * `Process`: billiard's process object (spec/api.md §3). A child is always a
 * fresh process (see spawn.ts): a Node child imports the module of its
 * target; a Python child (a `pyfunc(...)` target) runs billiard's own spawn
 * entry point.
 *
 * `start()` checks and pickles everything at once (a target that cannot
 * travel, an argument that cannot be pickled: it throws, and no child
 * exists), then hands the spawn to the launcher thread (launcher.ts) and
 * returns without waiting for it: the pid is known once `spawned` resolves.
 * A child that cannot be started (no such executable, no Python with
 * billiard for a `pyfunc` target, a module that fails to import) ends with
 * exit code 1 and `startupError` set; `join()` still resolves, as Python's.
 *
 * Exit codes are Python's: 0 when the target returns, 1 when it throws (the
 * stack is printed as `Process <name>:` and the trace), n for
 * `process.exit(n)`, -N when killed by signal N.
 */

import { constants } from 'node:os';

import { Sentinel } from '../connection/wait.js';
import { race, timeoutSeconds } from '../connection/timers.js';
import { PyGlobal } from '../pickle/index.js';
import { AuthenticationString } from './authkey.js';
import { currentProcess, isBootstrapping, nextChildIdentity } from './current.js';
import { AssertionError, ProcessStartupError, RuntimeError, ValueError } from './errors.js';
import { formatRef, locateFunction } from './locate.js';
import { forkServer } from './forkserver.js';
import { findPython, knownPython } from './python.js';
import { launchNode, launchPython, type Launched } from './spawn.js';
import { getStartMethod, type StartMethod } from './start-method.js';
import { checkOptionNames, optionNames } from '../connection/options.js';

/**
 * A function a child can run: an exported function of a module (the child
 * imports it by its module URL and export name).
 */
// eslint-disable-next-line @typescript-eslint/no-explicit-any -- any function, whatever its parameters
export type ProcessTarget = (...args: any[]) => unknown;

/** The parameters of a target before the one that receives `kwargs` (its last, or its rest parameter). */
type Leading<P extends readonly unknown[]> = number extends P['length'] ? P : Required<P> extends readonly [...infer I, unknown] ? I : never;
/** The parameter of a target that receives `kwargs`. */
type Trailing<P extends readonly unknown[]> = number extends P['length'] ? P[number] : Required<P> extends readonly [...unknown[], infer L] ? L : never;
/** `args` is required when the parameters are. */
type ArgsOption<P extends readonly unknown[]> = [] extends P ? { args?: P } : { args: P };

/** The options every process takes. */
export interface ProcessBaseOptions {
  /** Defaults to `<ClassName>-<identity>`, e.g. `Process-1`, `Process-1:2` in a child. */
  name?: string | null;
  /** A daemonic child dies with its parent; defaults to the parent's daemon flag. */
  daemon?: boolean | null;
  /** Environment of the child. Defaults to this process's (as it is when the child is spawned). */
  env?: NodeJS.ProcessEnv;
  /** Python children: the interpreter (defaults to the one with billiard, see findPython). */
  python?: string;
  /** Python children: directories added to the module search path (PYTHONPATH). */
  pythonPath?: readonly string[];
}

/**
 * Options of {@link Process}: Python's keyword arguments. `args` is typed
 * against the target's parameters; `kwargs`, for a JavaScript target, is
 * its last argument (so its type is the last parameter's).
 */
export type ProcessOptions<F extends ProcessTarget = ProcessTarget> = ProcessBaseOptions &
  (
    | ({
        /** The function the child runs: an exported function of a module (found by its module and export name). */
        target: F;
        kwargs?: null;
      } & ArgsOption<Parameters<F>>)
    | ({
        target: F;
        /** Keyword arguments: a JavaScript target gets them as its last argument. */
        kwargs: Trailing<Parameters<F>> & Record<string, unknown>;
      } & ArgsOption<Leading<Parameters<F>>>)
    | {
        /** `pyfunc('module.func')`: a Python function, run in a Python child. */
        target: PyGlobal;
        /** Positional arguments of the target. */
        args?: Iterable<unknown>;
        /** Keyword arguments of the target. */
        kwargs?: Record<string, unknown> | null;
      }
    | {
        /** No target: the child runs `run()` (of a subclass). */
        target?: null;
        args?: Iterable<unknown>;
        kwargs?: Record<string, unknown> | null;
      }
  );

const PROCESS_OPTIONS = optionNames<ProcessBaseOptions & { target?: unknown; args?: unknown; kwargs?: unknown }>()({
  name: 1, daemon: 1, env: 1, python: 1, pythonPath: 1, target: 1, args: 1, kwargs: 1,
});

/** Options of {@link Process.join}. */
export interface JoinOptions {
  /** Gives up the wait: the promise rejects with the signal's reason (the child runs on). */
  signal?: AbortSignal;
}

const JOIN_OPTIONS = optionNames<JoinOptions>()({ signal: 1 });

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

/** A promise and its resolver. */
function settable<T>(): { promise: Promise<T>; resolve: (value: T) => void } {
  let resolve!: (value: T) => void;
  const promise = new Promise<T>((r) => (resolve = r));
  return { promise, resolve };
}

/** A started child's state, kept out of the public object. */
interface Running {
  launched: Launched;
  exitcode: number | null;
  startupError: ProcessStartupError | null;
  /** The parent sent the child a signal: its death is not a start-up failure. */
  signalled: boolean;
}

/** What `join` rejects with internally when its timeout passes (it then resolves). */
const TIMED_OUT = new Error('join timed out');

/**
 * A process. `start()` launches the child and returns; `await join()` waits
 * for it. Subclass it and override `run()` to give the child a body (the
 * subclass must be an exported class, as the child imports it).
 *
 * `await using p = new Process(...)` terminates the child if it still runs
 * when the scope ends, waits for it, and closes the object.
 */
export class Process<F extends ProcessTarget = ProcessTarget> {
  /** The start method of this class's processes; undefined: the default (see setStartMethod). */
  static startMethod: StartMethod | undefined = undefined;

  #target: ProcessTarget | PyGlobal | null;
  #args: unknown[];
  #kwargs: Record<string, unknown>;
  #name: string;
  #daemon: boolean;
  #authkey: AuthenticationString;
  readonly #identity: number[];
  readonly #parentPid: number;
  readonly #env: NodeJS.ProcessEnv | undefined;
  readonly #python: string | undefined;
  readonly #pythonPath: readonly string[] | undefined;
  #running: Running | null = null;
  #closed = false;
  readonly #sentinel = new Sentinel();
  readonly #exited = settable<number>();
  readonly #spawned = settable<number | null>();

  constructor(options?: ProcessOptions<F>) {
    checkOptionNames(options, PROCESS_OPTIONS, `new ${new.target.name}()`);
    const target = options?.target ?? null;
    if (target !== null && typeof target !== 'function' && !(target instanceof PyGlobal)) {
      throw new TypeError('options.target must be a function or a pyfunc(...) reference');
    }
    this.#target = target;
    this.#args = Array.from(options?.args ?? []);
    this.#kwargs = { ...(options?.kwargs ?? {}) };
    this.#identity = nextChildIdentity();
    this.#name = options?.name ?? `${new.target.name}-${this.#identity.join(':')}`;
    this.#daemon = options?.daemon ?? currentProcess().daemon;
    this.#authkey = new AuthenticationString(currentProcess().authkey);
    this.#parentPid = process.pid;
    this.#env = options?.env;
    this.#python = options?.python;
    this.#pythonPath = options?.pythonPath;
    // A Python target needs the interpreter: look for it now, so that start() finds it known.
    if (target instanceof PyGlobal && this.#python === undefined && knownPython() === undefined) findPython().catch(() => undefined);
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

  /**
   * Starts the child. Throws at once when the target or an argument cannot
   * be sent (no child exists then); returns without waiting for the spawn
   * itself, which the launcher thread does (see `spawned`).
   */
  start(): void {
    this.#checkClosed();
    if (this.#running !== null) throw new AssertionError('cannot start a process twice');
    if (this.#parentPid !== process.pid) throw new AssertionError('can only start a process object created by current process');
    if (isBootstrapping()) {
      throw new RuntimeError(
        'An attempt has been made to start a new process before the current process has finished its bootstrapping phase: ' +
          'a child imports the main module to find its target, so the code that starts processes there must sit under ' +
          '`if (isMainProcess(import.meta)) { ... }` (Python\'s `if __name__ == "__main__":`).',
        { code: 'BOOTSTRAPPING' },
      );
    }
    const method = (this.constructor as typeof Process).startMethod ?? getStartMethod()!;
    const prep = {
      name: this.#name,
      authkey: this.#authkey,
      identity: this.#identity,
      daemon: this.#daemon,
      parentPid: process.pid,
      parentName: currentProcess().name,
      dir: process.cwd(),
      startMethod: method,
    };
    let launched: Launched;
    const target = this.#target;
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
    const running: Running = { launched, exitcode: null, startupError: null, signalled: false };
    this.#running = running;
    children.add(this);
    let ready = launched.report === null;
    const finish = (code: number): void => {
      if (running.exitcode !== null) return;
      running.exitcode = code;
      children.delete(this);
      daemons.delete(this);
      launched.release();
      this.#spawned.resolve(null);
      this.#sentinel.fire();
      this.#exited.resolve(code);
    };
    // A fork server's warm child runs already.
    if (child.pid !== undefined) this.#spawned.resolve(child.pid);
    else child.on('spawn', () => this.#spawned.resolve(child.pid ?? null));
    child.on('error', (e: Error) => {
      // An error about a running child (a failed kill, say) is not its end: its exit will come.
      if (child.pid !== undefined) return;
      running.startupError ??= new ProcessStartupError(`could not start the child process ${this.#name}: ${e.message}`, { cause: e });
      finish(1);
    });
    child.on('exit', (code: number | null, signal: NodeJS.Signals | null) => {
      const exitcode = code ?? -(constants.signals[signal as keyof typeof constants.signals] ?? 0);
      if (!ready && !running.signalled && running.startupError === null) {
        running.startupError = new ProcessStartupError(`child ${this.#name} exited with code ${exitcode} before it started running its target`);
      }
      finish(exitcode);
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
   * Waits for the child to exit, or for `timeout` seconds (null or Infinity:
   * for ever); it resolves either way, as Python's join, and also when the
   * child could not start (see `startupError` and `exitcode`). With
   * `options.signal`, an abort rejects the wait with the signal's reason.
   */
  async join(timeout?: number | null, options?: JoinOptions): Promise<void> {
    checkOptionNames(options, JOIN_OPTIONS, 'Process.join()');
    this.#checkClosed();
    if (this.#parentPid !== process.pid) throw new AssertionError('can only join a child process');
    const running = this.#running;
    if (running === null) throw new AssertionError('can only join a started process');
    const seconds = timeoutSeconds(timeout);
    if (running.exitcode !== null) return;
    try {
      await race(this.#exited.promise, { seconds, signal: options?.signal, onTimeout: () => TIMED_OUT });
    } catch (e) {
      if (e !== TIMED_OUT) throw e;
    }
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
    running.launched.child.kill(sig);
  }

  /** Sends SIGTERM (billiard's `TERM_SIGNAL`); a child still being spawned gets it once it runs. */
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

  /** `await using`: terminates the child if it still runs, waits for it to exit, then closes the object. */
  async [Symbol.asyncDispose](): Promise<void> {
    if (this.#closed) return;
    const running = this.#running;
    if (running !== null && running.exitcode === null) {
      this.terminate();
      await this.#exited.promise;
    }
    this.close();
  }

  /** The child's pid: null before start and until the child is spawned (see `spawned`). */
  get pid(): number | null {
    if (!(#running in this)) return process.pid;
    this.#checkClosed();
    return this.#running?.launched.child.pid ?? null;
  }

  /** Same as `pid`. */
  get ident(): number | null {
    return this.pid;
  }

  /** The exit code: null before the child exited; -N when killed by signal N; 1 when it could not start. */
  get exitcode(): number | null {
    this.#checkClosed();
    return this.#running?.exitcode ?? null;
  }

  /**
   * Why the child could not start (its executable, its interpreter, its
   * target's module, or a death before its target ran), once it is known;
   * else null. The child's `exitcode` is then 1 (or its own code).
   */
  get startupError(): ProcessStartupError | null {
    return this.#running?.startupError ?? null;
  }

  /**
   * Resolves with the child's pid once it has been spawned, or with null if
   * it could not be; pending until `start()` is called. Never rejects.
   */
  get spawned(): Promise<number | null> {
    if (!(#spawned in this)) return Promise.resolve(process.pid);
    return this.#spawned.promise;
  }

  /**
   * Resolves with the exit code once the child has exited (also one that
   * could not start); pending until `start()` is called. Never rejects.
   */
  get exited(): Promise<number> {
    if (!(#exited in this)) return new Promise<number>(() => undefined);
    return this.#exited.promise;
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

  /** The child's authkey (an {@link AuthenticationString}, which refuses to be pickled); defaults to the parent's. */
  get authkey(): AuthenticationString {
    return #authkey in this ? this.#authkey : currentProcess().authkey;
  }

  set authkey(value: Uint8Array) {
    if (!(value instanceof Uint8Array)) throw new TypeError('authkey must be a Uint8Array (bytes)');
    this.#authkey = new AuthenticationString(value);
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
export class SpawnProcess<F extends ProcessTarget = ProcessTarget> extends Process<F> {
  static override startMethod: StartMethod | undefined = 'spawn';
}

/** Processes started from the fork server's warm children (see forkserver.ts). */
export class ForkServerProcess<F extends ProcessTarget = ProcessTarget> extends Process<F> {
  static override startMethod: StartMethod | undefined = 'forkserver';
}
