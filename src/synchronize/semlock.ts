/**
 * `SemLock`: a POSIX named semaphore with CPython's `_multiprocessing.SemLock`
 * semantics (Modules/_multiprocessing/semaphore.c), the base of Lock,
 * RLock, Semaphore and BoundedSemaphore. Python processes open the same
 * semaphore by name from the pickle billiard writes for spawn:
 * `billiard.synchronize.Lock` with state `(handle, kind, maxvalue, name)`.
 *
 * Ownership ("is mine", the recursion count) is per process: Node runs a
 * process's JavaScript on one thread, where CPython counts per thread.
 */

import { availableParallelism } from 'node:os';

import { cancelJob, jobId, Semaphore as NativeSem, type NativeSemaphore } from '../native/index.js';
import { NativeError } from '../native/index.js';
import { timeoutSeconds } from '../connection/timers.js';
import { setState } from '../pickle/index.js';
import { AssertionError, ValueError } from '../process/errors.js';
import { flushLaunches } from '../process/launcher.js';
import { registerSemaphore, unlinkSemaphore } from './tracker.js';
import { checkOptionNames, optionNames } from '../connection/options.js';

/** SemLock kinds, as CPython numbers them. */
export const RECURSIVE_MUTEX = 0;
export const SEMAPHORE = 1;
/** The largest semaphore value on Linux. */
export const SEM_VALUE_MAX = 2147483647;

/** Options of `acquire()`. */
export interface AcquireOptions {
  /** false: take it only if free now (Python's `block=False`). Default true. */
  block?: boolean;
  /** Seconds to wait (null or Infinity: for ever); honoured only when `block` is true. */
  timeout?: number | null;
  /** Gives up the wait (the promise rejects with the signal's reason). */
  signal?: AbortSignal;
}

const ACQUIRE_OPTIONS = optionNames<AcquireOptions>()({ block: 1, timeout: 1, signal: 1 });

const TRUE = Promise.resolve(true);
const FALSE = Promise.resolve(false);

/**
 * How long (ms) a blocking acquire watches a taken semaphore before it
 * parks the wait on a native thread: a holder on another CPU usually
 * releases within a few microseconds, and the park costs a thread hand-off
 * and an event-loop wake-up (~2x CPython's hand-off latency). 0 on one CPU.
 * `BILLIARD_TS_SPIN_US` sets it in microseconds (0: never spin). A Queue's
 * get watches its pipe as long before it parks.
 */
export const SPIN_MS = (() => {
  const env = Number(process.env.BILLIARD_TS_SPIN_US);
  if (Number.isFinite(env) && env >= 0) return env / 1000;
  return availableParallelism() > 1 ? 0.02 : 0;
})();

/**
 * The state word of glibc's sem_t (value, sleeping waiters) when the
 * addon vouches for its layout, else null; `BILLIARD_TS_SEM_WORD=0` turns
 * it off (every operation then calls sem_trywait/sem_post/sem_getvalue).
 */
function stateWord(sem: NativeSemaphore): Int32Array | null {
  if (process.env.BILLIARD_TS_SEM_WORD === '0') return null;
  const buffer = sem.word();
  if (buffer === undefined) return null;
  const word = new Int32Array(buffer, 0, 2);
  return Atomics.load(word, 0) === sem.getValue() ? word : null;
}

let rebuilding = 0;
/**
 * Makes an instance of `Cls` without creating anything (no semaphore, no
 * shared memory): the unpickler's NEWOBJ, before BUILD gives it its state.
 * @internal
 */
export function constructEmpty<T>(Cls: new () => T): T {
  rebuilding++;
  try {
    return new Cls();
  } finally {
    rebuilding--;
  }
}
/** True inside {@link constructEmpty}: constructors skip making things. @internal */
export function isRebuilding(): boolean {
  return rebuilding > 0;
}

const CHARS = 'abcdefghijklmnopqrstuvwxyz0123456789_';

/** CPython's name scheme: `/mp-` and 8 random characters of tempfile's alphabet. */
export function semaphoreName(): string {
  let s = '/mp-';
  for (let i = 0; i < 8; i++) s += CHARS[Math.floor(Math.random() * CHARS.length)];
  return s;
}

/** Unlinks a creator's name when its SemLock is collected (Python's Finalize with exitpriority 0). */
const collected = new FinalizationRegistry<string>((name) => unlinkSemaphore(name));

/** What a SemLock was made of, for `rebuild`. @internal */
export interface SemLockState {
  kind: number;
  maxvalue: number;
  name: string;
}

export class SemLock {
  /** RECURSIVE_MUTEX or SEMAPHORE. */
  readonly kind!: number;
  /** The highest value `release()` may raise it to. */
  readonly maxvalue!: number;
  /** The semaphore's name (`/mp-…`). */
  readonly name!: string;
  #sem!: NativeSemaphore;
  /**
   * glibc's sem_t word in the shared mapping ([0]: value, [1]: sleeping
   * waiters): uncontended takes and posts are Atomics on it, as
   * sem_trywait and sem_post do, instead of calls into the addon.
   */
  #word: Int32Array | null = null;
  /** Acquisitions by this process not yet released (CPython's `count`). */
  #count = 0;
  /** The job id of a wait for the semaphore running on a thread, and its promise; null when none runs. */
  #waitJob: number | null = null;
  #waiting: Promise<boolean> | null = null;

  /** @internal */
  protected constructor(kind: number, value: number, maxvalue: number);
  /** @internal */
  protected constructor(state: SemLockState);
  protected constructor(kindOrState: number | SemLockState, value?: number, maxvalue?: number) {
    if (rebuilding > 0) return;
    if (typeof kindOrState === 'object') {
      this.#init(kindOrState.kind, kindOrState.maxvalue, kindOrState.name, NativeSem.open(kindOrState.name));
      return;
    }
    const kind = kindOrState;
    if (kind !== RECURSIVE_MUTEX && kind !== SEMAPHORE) throw new ValueError('unrecognized kind');
    if (!Number.isInteger(value) || value! < 0 || value! > SEM_VALUE_MAX) throw new ValueError('invalid value');
    if (!Number.isInteger(maxvalue) || maxvalue! < 0 || maxvalue! > SEM_VALUE_MAX) throw new ValueError('invalid maxvalue');
    for (let attempt = 0; ; attempt++) {
      const name = semaphoreName();
      let sem: NativeSemaphore;
      try {
        sem = NativeSem.create(name, value!, false);
      } catch (e) {
        if (e instanceof NativeError && e.code === 'EEXIST' && attempt < 100) continue;
        throw e;
      }
      this.#init(kind, maxvalue!, name, sem);
      registerSemaphore(name);
      collected.register(this, name);
      return;
    }
  }

  #init(kind: number, maxvalue: number, name: string, sem: NativeSemaphore): void {
    (this as { kind: number }).kind = kind;
    (this as { maxvalue: number }).maxvalue = maxvalue;
    (this as { name: string }).name = name;
    this.#sem = sem;
    this.#word = stateWord(sem);
  }

  /** sem_trywait. */
  #tryWait(): boolean {
    const w = this.#word;
    if (w === null) return this.#sem.tryWait();
    // A free Lock holds 1: one compare-and-swap takes it.
    if (Atomics.compareExchange(w, 0, 1, 0) === 1) return true;
    for (;;) {
      const v = Atomics.load(w, 0);
      if (v <= 0) return false;
      if (Atomics.compareExchange(w, 0, v, v - 1) === v) return true;
    }
  }

  /** sem_post, refusing (ValueError) to raise the value to more than `max`. */
  #post(max: number): void {
    const w = this.#word;
    if (w === null) {
      if (this.#sem.getValue() >= max) throw new ValueError('semaphore or lock released too many times');
      this.#sem.post();
      return;
    }
    // A held Lock (or an empty semaphore) holds 0: one compare-and-swap releases it.
    let done = max >= 1 && Atomics.compareExchange(w, 0, 0, 1) === 0;
    while (!done) {
      const v = Atomics.load(w, 0);
      if (v >= max) throw new ValueError('semaphore or lock released too many times');
      if (v >= SEM_VALUE_MAX) {
        this.#sem.post(); // EOVERFLOW, from the addon
        return;
      }
      done = Atomics.compareExchange(w, 0, v, v + 1) === v;
    }
    // A waiter that counted itself before the increment sleeps on the word.
    if (Atomics.load(w, 1) !== 0) this.#sem.wake();
  }

  /** Watches the word up to SPIN_MS for a post from another CPU, and takes it. */
  #spin(): boolean {
    const w = this.#word;
    if (w === null || SPIN_MS <= 0) return false;
    const end = performance.now() + SPIN_MS;
    do {
      for (let i = 0; i < 64; i++) {
        const v = Atomics.load(w, 0);
        if (v > 0 && Atomics.compareExchange(w, 0, v, v - 1) === v) return true;
      }
    } while (performance.now() < end);
    return false;
  }

  /**
   * BUILD of the spawn pickle: `(handle, kind, maxvalue, name)`; opens the
   * name (the handle is the sender's address, meaningless here).
   * @internal
   */
  [setState](state: unknown): void {
    const [, kind, maxvalue, name] = Array.isArray(state) ? state : [];
    if ((kind !== RECURSIVE_MUTEX && kind !== SEMAPHORE) || typeof maxvalue !== 'number' || typeof name !== 'string') {
      throw new TypeError('a SemLock state is (handle, kind, maxvalue, name)');
    }
    this.#init(kind, maxvalue, name, NativeSem.open(name));
  }

  /** The `sem_t` address (what CPython pickles as the handle; unused on POSIX). */
  get handle(): number {
    return this.#sem.handle;
  }

  /**
   * Takes the lock or decrements the semaphore; resolves true when taken,
   * false when `block` is false and it was not free, or the timeout passed.
   * The wait runs off the event loop.
   */
  acquire(options?: AcquireOptions): Promise<boolean> {
    try {
      checkOptionNames(options, ACQUIRE_OPTIONS, `${this.constructor.name}.acquire()`);
      const r = this.#acquireNow(options);
      if (r !== null) return r ? TRUE : FALSE;
      if (this.#spin()) {
        this.#count++;
        return TRUE;
      }
    } catch (e) {
      return Promise.reject(e);
    }
    return this.#acquireLater(options);
  }

  /** The non-waiting part of acquire: a result, or null to wait. */
  #acquireNow(options: AcquireOptions | undefined): boolean | null {
    if (this.kind === RECURSIVE_MUTEX && this.#count > 0) {
      this.#count++;
      return true;
    }
    if (this.#tryWait()) {
      this.#count++;
      return true;
    }
    if (options?.block === false) return false;
    const timeout = timeoutSeconds(options?.timeout);
    if (timeout === 0) return false;
    options?.signal?.throwIfAborted();
    return null;
  }

  async #acquireLater(options: AcquireOptions | undefined): Promise<boolean> {
    const timeout = timeoutSeconds(options?.timeout);
    const signal = options?.signal;
    const id = jobId();
    const onAbort = (): void => {
      cancelJob(id);
    };
    signal?.addEventListener('abort', onAbort, { once: true });
    const waiting = this.#sem.wait(timeout ?? -1, id);
    this.#waitJob = id;
    this.#waiting = waiting;
    try {
      const taken = await waiting;
      if (taken) {
        this.#count++;
        return true;
      }
      signal?.throwIfAborted();
      return false;
    } finally {
      if (this.#waitJob === id) {
        this.#waitJob = null;
        this.#waiting = null;
      }
      signal?.removeEventListener('abort', onAbort);
    }
  }

  /**
   * @internal Stops a wait for the semaphore that runs on a thread, and
   * resolves once it has settled: if the thread took the semaphore
   * meanwhile, this process holds it then (`isMine()`), and can give it
   * back. Between the thread's taking it and the event loop's hearing of
   * it, `isMine()` is still false: a process about to die must call this
   * before it releases what it holds, or the semaphore stays taken for
   * ever (the pool worker's SIGTERM).
   */
  async settleWait(): Promise<void> {
    const waiting = this.#waiting;
    if (waiting === null || this.#waitJob === null) return;
    cancelJob(this.#waitJob);
    // acquire()'s own continuation, queued first, counts the acquisition before this one resumes.
    await waiting.catch(() => false);
  }

  /**
   * Takes it, blocking this thread (the event loop) up to `timeout` seconds:
   * for short critical sections, as Python's `Value.value` takes its lock.
   * A lock this process holds and cannot re-enter would never be released
   * while the thread blocks: that is an AssertionError, not a hang.
   */
  acquireSync(options?: { block?: boolean; timeout?: number | null }): boolean {
    const now = this.#acquireNow(options);
    if (now !== null) return now;
    if (this.#count > 0 && this.maxvalue === 1) {
      throw new AssertionError('acquireSync() of a lock this process holds would block for ever: release it first, or use an RLock');
    }
    if (this.#spin()) {
      this.#count++;
      return true;
    }
    const timeout = timeoutSeconds(options?.timeout);
    // The holder may be a child start()ed in this turn, not spawned yet.
    flushLaunches();
    const taken = this.#sem.waitSync(timeout ?? -1);
    if (taken) this.#count++;
    return taken;
  }

  /**
   * Releases the lock or increments the semaphore. An RLock not held by
   * this process: AssertionError; a Lock or BoundedSemaphore already at its
   * maximum: ValueError('semaphore or lock released too many times').
   */
  release(): void {
    if (this.kind === RECURSIVE_MUTEX) {
      if (this.#count <= 0) throw new AssertionError('attempt to release recursive lock not owned by thread');
      if (this.#count > 1) {
        this.#count--;
        return;
      }
      this.#post(SEM_VALUE_MAX);
    } else {
      this.#post(this.maxvalue);
    }
    this.#count--;
  }

  /** True when this process holds it (CPython's `_is_mine()`). */
  isMine(): boolean {
    return this.#count > 0;
  }

  /** This process's acquisitions not yet released (CPython's `_count()`). */
  count(): number {
    return this.#count;
  }

  /** The semaphore's value now (CPython's `_get_value()`). */
  getValue(): number {
    if (this.#word !== null) return Atomics.load(this.#word, 0);
    return this.#sem.getValue();
  }

  /** True when the value is 0 (CPython's `_is_zero()`). */
  isZero(): boolean {
    return this.getValue() === 0;
  }

  /** The pickled state billiard writes for spawn: `(handle, kind, maxvalue, name)`. @internal */
  spawnState(): [number, number, number, string] {
    return [this.handle, this.kind, this.maxvalue, this.name];
  }

  /**
   * Closes this process's handle. The name stays until its creator
   * unlinks it (at exit, when collected, or by {@link unlinkNow}).
   */
  close(): void {
    this.#word = null;
    this.#sem.close();
  }

  /** Unlinks the name now if this process created it (children can no longer open it). */
  unlinkNow(): void {
    unlinkSemaphore(this.name);
  }
}
