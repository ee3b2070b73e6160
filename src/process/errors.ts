/**
 * The errors Python raises for process misuse, as typed classes: billiard
 * uses `assert` (AssertionError) for "cannot start a process twice" and the
 * like, and `ValueError` for a closed process object. Plus billiard's own
 * exceptions of the pool (spec/api.md section 2): `TimeLimitExceeded`,
 * `SoftTimeLimitExceeded`, `WorkerLostError`, `Terminated`,
 * `RestartFreqExceeded`, `CoroStop`.
 *
 * Every class pickles as the Python class it stands for, with Python's
 * `args`: the builtin-mirroring ones (`AssertionError`, `ValueError`,
 * `RuntimeError`) as the builtin (a builtin exception from Python loads as a
 * `PythonException`, which is `instanceof` these classes: see
 * src/pickle/exceptions.ts), billiard's as `billiard.exceptions.X`; loading
 * this module registers billiard's in the default registry, so that `loads`
 * gives these classes back.
 */

import { defaultRegistry } from '../pickle/default-registry.js';
import { BilliardError } from '../pickle/errors.js';
import { pyReprForMessage, strOfArgs } from '../pickle/exceptions.js';
import { floatRepr } from '../pickle/float-repr.js';
import { EMPTY_TUPLE, PyFloat, type PyTuple } from '../pickle/types.js';
import { ProcessError } from '../connection/errors.js';

/** Python's `AssertionError`: billiard's checks of process state. */
export class AssertionError extends BilliardError {
  static override readonly brand: string = 'builtins.AssertionError';
  constructor(message: string) {
    super(message, { code: 'ASSERTION' });
  }
}

/** Python's `ValueError`. */
export class ValueError extends BilliardError {
  static override readonly brand: string = 'builtins.ValueError';
  constructor(message: string, options?: { code?: string }) {
    super(message, { code: options?.code ?? 'VALUE' });
  }
}

/** Python's `RuntimeError`: setting the start method a second time without `force`. */
export class RuntimeError extends BilliardError {
  static override readonly brand: string = 'builtins.RuntimeError';
  constructor(message: string, options?: { code?: string }) {
    super(message, { code: options?.code ?? 'RUNTIME' });
  }
}

/**
 * A child failed before it ran its target: it could not import the target's
 * module, did not find the export, or died during start-up; or it could not
 * be spawned at all (`cause` says why). `Process.startupError` holds it
 * (`join()` resolves, as Python's); `exitcode` is the child's exit code, 1
 * when it never ran.
 */
export class ProcessStartupError extends ProcessError {
  static override readonly brand: string = 'billiard-ts.ProcessStartupError';
  /** The child's stack or message text, when it sent one. */
  readonly remoteStack: string | undefined;
  constructor(message: string, options?: { remoteStack?: string; cause?: unknown }) {
    super(message, { code: 'STARTUP', cause: options?.cause });
    this.remoteStack = options?.remoteStack;
  }
}

/** Python's `repr` of an args tuple, for the messages of billiard's time-limit errors. */
function argsRepr(args: readonly unknown[]): string {
  const item = (v: unknown): string => (v instanceof PyFloat ? floatRepr(v.value) : typeof v === 'number' && !Number.isInteger(v) ? floatRepr(v) : pyReprForMessage(v));
  if (args.length === 1) return `(${item(args[0])},)`;
  return `(${args.slice(0, 8).map(item).join(', ')}${args.length > 8 ? ', ...' : ''})`;
}

/**
 * billiard's `TimeLimitExceeded`: a job ran past its hard time limit and its
 * worker was terminated. Python raises it as `TimeLimitExceeded(timeout)`,
 * the limit in seconds (a float: a number given here pickles as one); its
 * message is Python's `str()`, `'TimeLimitExceeded(3.0,)'`.
 */
export class TimeLimitExceeded extends BilliardError {
  static override readonly brand: string = 'billiard.exceptions.TimeLimitExceeded';
  /** `timeout`: the limit, in seconds. */
  constructor(timeout?: number | PyFloat) {
    const args = timeout === undefined ? EMPTY_TUPLE : [typeof timeout === 'number' ? new PyFloat(timeout) : timeout];
    super(`TimeLimitExceeded${argsRepr(args)}`, { code: 'TIME_LIMIT', args });
  }
  /** The time limit in seconds (`args[0]`), when there is one. */
  get timeout(): number | undefined {
    const t = this.args[0];
    return t instanceof PyFloat ? t.value : typeof t === 'number' ? t : undefined;
  }
}

/**
 * billiard's `SoftTimeLimitExceeded`: a job ran past its soft time limit
 * (raised inside the task, which may clean up). No arguments; its message is
 * Python's `str()`, `'SoftTimeLimitExceeded()'`.
 */
export class SoftTimeLimitExceeded extends BilliardError {
  static override readonly brand: string = 'billiard.exceptions.SoftTimeLimitExceeded';
  constructor() {
    super('SoftTimeLimitExceeded()', { code: 'SOFT_TIME_LIMIT', args: EMPTY_TUPLE });
  }
}

/**
 * billiard's `WorkerLostError`: the worker running a job exited before it
 * reported a result (`'Worker exited prematurely: exitcode 7 Job: 12.'`).
 */
export class WorkerLostError extends BilliardError {
  static override readonly brand: string = 'billiard.exceptions.WorkerLostError';
  constructor(message?: string) {
    super(message ?? 'Worker exited prematurely', { code: 'WORKER_LOST', args: message === undefined ? EMPTY_TUPLE : [message] });
  }
}

/**
 * billiard's `Terminated`: the worker running a job was terminated on
 * request (`terminateJob`). Python raises it as `Terminated(n)`, `n` minus
 * the worker's exit code (the signal number: `Terminated(9)` after SIGKILL).
 */
export class Terminated extends BilliardError {
  static override readonly brand: string = 'billiard.exceptions.Terminated';
  constructor(signal?: number) {
    super(signal === undefined ? 'Terminated' : String(signal), { code: 'TERMINATED', args: signal === undefined ? EMPTY_TUPLE : [signal] });
  }
}

/** billiard's `RestartFreqExceeded`: workers restarted too often (`'<R> in <T>s'`). */
export class RestartFreqExceeded extends BilliardError {
  static override readonly brand: string = 'billiard.exceptions.RestartFreqExceeded';
  constructor(message?: string) {
    super(message ?? 'Restarts too fast', { code: 'RESTART_FREQ', args: message === undefined ? EMPTY_TUPLE : [message] });
  }
}

/**
 * billiard's `CoroStop`: the signal with which the pool's handler loops of
 * billiard stop (internal to billiard; here for completeness and to load it
 * when a peer sends one). Python raises it without arguments; `str()` is
 * `''`.
 */
export class CoroStop extends BilliardError {
  static override readonly brand: string = 'billiard.exceptions.CoroStop';
  constructor(message?: string) {
    super(message ?? '', { code: 'CORO_STOP', args: message === undefined ? EMPTY_TUPLE : [message] });
  }
}

/** The message of an error loaded from Python args (`str(e)`); `undefined` when there are none. */
function messageOf(args: PyTuple): string | undefined {
  return args.length === 0 ? undefined : strOfArgs(args);
}

// billiard's classes, under billiard.exceptions (where Python pickles them)
// and the re-exports of `billiard` and `billiard.context` (the three billiard exports).
const EXPORTED = ['billiard.exceptions', 'billiard', 'billiard.context'];
defaultRegistry.registerError(
  EXPORTED.map((m) => `${m}.TimeLimitExceeded`),
  (args) => {
    const e = new TimeLimitExceeded();
    e.message = `TimeLimitExceeded${argsRepr(args)}`;
    return e;
  },
);
defaultRegistry.registerError(
  EXPORTED.map((m) => `${m}.SoftTimeLimitExceeded`),
  (args) => {
    const e = new SoftTimeLimitExceeded();
    e.message = `SoftTimeLimitExceeded${argsRepr(args)}`;
    return e;
  },
);
defaultRegistry.registerError(
  EXPORTED.map((m) => `${m}.WorkerLostError`),
  (args) => new WorkerLostError(messageOf(args)),
);
defaultRegistry.registerError(['billiard.exceptions.Terminated'], (args) => {
  const e = new Terminated();
  e.message = messageOf(args) ?? 'Terminated';
  return e;
});
defaultRegistry.registerError(['billiard.exceptions.RestartFreqExceeded'], (args) => new RestartFreqExceeded(messageOf(args)));
defaultRegistry.registerError(['billiard.exceptions.CoroStop'], (args) => new CoroStop(messageOf(args)));
