/**
 * billiard's synchronisation primitives (spec/api.md §6) over POSIX named
 * semaphores: Lock, RLock, Semaphore, BoundedSemaphore, Condition, Event
 * and Barrier. Their algorithms are billiard's own (Condition from three
 * semaphores, Event from a Condition and a Semaphore(0), Barrier from
 * threading.Barrier's state machine over 8 shared bytes), so a Python
 * process that received one through spawn takes part in the same protocol.
 *
 * What can wait on another process returns a Promise (`acquire`,
 * `Condition.wait`, `notify`, `Event.set`, `Barrier.wait`, ...): `notify`
 * waits until the woken process confirmed, and Event's methods take the
 * Condition's lock, which another process may hold.
 */

import { BilliardError } from '../pickle/errors.js';
import { AssertionError, RuntimeError } from '../process/errors.js';
import { monotonicDeadline } from './time.js';
import { isRebuilding, RECURSIVE_MUTEX, SEM_VALUE_MAX, SEMAPHORE, SemLock, type AcquireOptions } from './semlock.js';

export { RECURSIVE_MUTEX, SEM_VALUE_MAX, SEMAPHORE, SemLock, type AcquireOptions };

/** Something that can be taken and released: every lock here, and what `Condition` and `synchronized` accept. */
export interface LockLike {
  acquire(options?: AcquireOptions): Promise<boolean>;
  release(): void;
}

/** A held lock: disposing releases it (`using held = await lock.enter()`). */
export interface Held extends Disposable, AsyncDisposable {
  release(): void;
}

function held(lock: LockLike): Held {
  let done = false;
  const release = (): void => {
    if (done) return;
    done = true;
    lock.release();
  };
  return { release, [Symbol.dispose]: release, [Symbol.asyncDispose]: async () => release() };
}

/** Methods every SemLock-based primitive shares: `enter()` and `withLock()`. */
abstract class Primitive extends SemLock {
  /**
   * Takes it (waiting as long as it takes) and returns a handle whose
   * disposal releases it: `await using _ = await lock.enter()`, Python's
   * `with lock:`.
   */
  async enter(options?: { signal?: AbortSignal }): Promise<Held> {
    await this.acquire({ signal: options?.signal });
    return held(this);
  }

  /** Runs `body` holding it: `await lock.withLock(async () => ...)`. */
  async withLock<T>(body: () => T | Promise<T>, options?: { signal?: AbortSignal }): Promise<T> {
    await this.acquire({ signal: options?.signal });
    try {
      return await body();
    } finally {
      this.release();
    }
  }
}

/** A non-recursive lock (a semaphore of maximum 1): anyone may release it, as in billiard. */
export class Lock extends Primitive {
  constructor() {
    super(SEMAPHORE, 1, 1);
  }

  /** billiard's repr: `<Lock(owner=MainProcess)>`, `owner=None` or `owner=SomeOtherProcess`. */
  override toString(): string {
    try {
      if (this.isMine()) return `<Lock(owner=${ownerName()})>`;
      if (this.getValue() === 1) return '<Lock(owner=None)>';
      return '<Lock(owner=SomeOtherProcess)>';
    } catch {
      return '<Lock(owner=unknown)>';
    }
  }
}

/** A recursive lock: its holder (this process) may take it again; only the holder may release it. */
export class RLock extends Primitive {
  constructor() {
    super(RECURSIVE_MUTEX, 1, 1);
  }

  /** billiard's repr: `<RLock(MainProcess, 2)>`, `<RLock(None, 0)>`, `<RLock(SomeOtherProcess, nonzero)>`. */
  override toString(): string {
    try {
      if (this.isMine()) return `<RLock(${ownerName()}, ${this.count()})>`;
      if (this.getValue() === 1) return '<RLock(None, 0)>';
      return '<RLock(SomeOtherProcess, nonzero)>';
    } catch {
      return '<RLock(unknown, unknown)>';
    }
  }
}

let currentName = (): string => 'MainProcess';
/** Lets the facade name the current process in reprs. @internal */
export function setOwnerName(f: () => string): void {
  currentName = f;
}
function ownerName(): string {
  return currentName();
}

/** A counting semaphore: releases beyond the initial value are allowed (up to SEM_VALUE_MAX). */
export class Semaphore extends Primitive {
  /** `maxvalue` is BoundedSemaphore's. @internal */
  constructor(value = 1, maxvalue = SEM_VALUE_MAX) {
    super(SEMAPHORE, value, maxvalue);
  }

  /** The value for a repr; 'unknown' once closed, as billiard says. @internal */
  protected valueForRepr(): number | string {
    try {
      return this.getValue();
    } catch {
      return 'unknown';
    }
  }

  override toString(): string {
    return `<${this.constructor.name}(value=${this.valueForRepr()})>`;
  }
}

/** A semaphore that may not be released above its initial value (ValueError). */
export class BoundedSemaphore extends Semaphore {
  constructor(value = 1) {
    super(value, value);
  }

  override toString(): string {
    return `<BoundedSemaphore(value=${this.valueForRepr()}, maxvalue=${this.maxvalue})>`;
  }
}

/**
 * A condition variable over a lock (a new RLock by default), built from
 * three semaphores as billiard builds it, so waiters and notifiers may be
 * in different processes, Node or Python.
 */
export class Condition {
  /** @internal */ lock!: Lock | RLock;
  /** @internal */ sleepingCount!: Semaphore;
  /** @internal */ wokenCount!: Semaphore;
  /** @internal */ waitSemaphore!: Semaphore;

  constructor(lock?: Lock | RLock | null) {
    if (isRebuilding()) return;
    this.lock = lock ?? new RLock();
    this.sleepingCount = new Semaphore(0);
    this.wokenCount = new Semaphore(0);
    this.waitSemaphore = new Semaphore(0);
  }

  /** The lock's acquire. */
  acquire(options?: AcquireOptions): Promise<boolean> {
    return this.lock.acquire(options);
  }

  /** The lock's release. */
  release(): void {
    this.lock.release();
  }

  /** Takes the lock; disposing the result releases it (Python's `with cond:`). */
  enter(options?: { signal?: AbortSignal }): Promise<Held> {
    return this.lock.enter(options);
  }

  /** Runs `body` holding the lock. */
  withLock<T>(body: () => T | Promise<T>, options?: { signal?: AbortSignal }): Promise<T> {
    return this.lock.withLock(body, options);
  }

  toString(): string {
    let waiters: number | string;
    try {
      waiters = this.sleepingCount.getValue() - this.wokenCount.getValue();
    } catch {
      waiters = 'unknown';
    }
    return `<Condition(${String(this.lock)}, ${waiters})>`;
  }

  /**
   * Releases the lock, waits for a notify (or `timeout` seconds), takes
   * the lock back; resolves false on timeout. The caller must hold the lock.
   */
  async wait(timeout?: number | null): Promise<boolean> {
    if (!this.lock.isMine()) throw new AssertionError('must acquire() condition before using wait()');
    this.sleepingCount.release();
    const count = this.lock.count();
    for (let i = 0; i < count; i++) this.lock.release();
    try {
      return await this.waitSemaphore.acquire({ timeout: timeout ?? null });
    } finally {
      this.wokenCount.release();
      for (let i = 0; i < count; i++) await this.lock.acquire();
    }
  }

  /**
   * Waits until `predicate()` is truthy (or `timeout` seconds passed);
   * resolves with its last value. The caller must hold the lock.
   */
  async waitFor<T>(predicate: () => T | Promise<T>, timeout?: number | null): Promise<T> {
    let result = await predicate();
    if (result) return result;
    const deadline = monotonicDeadline(timeout);
    while (!result) {
      let wait: number | null = null;
      if (deadline !== null) {
        wait = (deadline - performance.now()) / 1000;
        if (wait <= 0) break;
      }
      await this.wait(wait);
      result = await predicate();
    }
    return result;
  }

  #checkNotify(): void {
    if (!this.lock.isMine()) throw new AssertionError('lock is not owned');
    if (this.waitSemaphore.acquireSync({ block: false })) throw new AssertionError('a waiter was woken but not counted');
    // Forget the sleepers that timed out (each left a woken count behind).
    while (this.wokenCount.acquireSync({ block: false })) {
      if (!this.sleepingCount.acquireSync({ block: false })) throw new AssertionError('sleeping count below woken count');
    }
  }

  /** Wakes one waiter, and resolves once it has woken. The caller must hold the lock. */
  async notify(): Promise<void> {
    this.#checkNotify();
    if (this.sleepingCount.acquireSync({ block: false })) {
      this.waitSemaphore.release();
      await this.wokenCount.acquire();
      this.waitSemaphore.acquireSync({ block: false });
    }
  }

  /** Wakes every waiter, and resolves once they have woken. The caller must hold the lock. */
  async notifyAll(): Promise<void> {
    this.#checkNotify();
    let sleepers = 0;
    while (this.sleepingCount.acquireSync({ block: false })) {
      this.waitSemaphore.release();
      sleepers++;
    }
    if (sleepers > 0) {
      for (let i = 0; i < sleepers; i++) await this.wokenCount.acquire();
      while (this.waitSemaphore.acquireSync({ block: false }));
    }
  }
}

/** A flag processes can wait for, built as billiard's: a Condition over a Lock, and a Semaphore(0) holding the flag. */
export class Event {
  /** @internal */ cond!: Condition;
  /** @internal */ flag!: Semaphore;

  constructor() {
    if (isRebuilding()) return;
    this.cond = new Condition(new Lock());
    this.flag = new Semaphore(0);
  }

  /** True when the flag is set. */
  async isSet(): Promise<boolean> {
    return this.cond.withLock(() => {
      if (this.flag.acquireSync({ block: false })) {
        this.flag.release();
        return true;
      }
      return false;
    });
  }

  /** Sets the flag and wakes every waiter. */
  async set(): Promise<void> {
    await this.cond.withLock(async () => {
      this.flag.acquireSync({ block: false });
      this.flag.release();
      await this.cond.notifyAll();
    });
  }

  /** Clears the flag. */
  async clear(): Promise<void> {
    await this.cond.withLock(() => {
      this.flag.acquireSync({ block: false });
    });
  }

  /** Waits until the flag is set or `timeout` seconds passed; resolves with the flag. */
  async wait(timeout?: number | null): Promise<boolean> {
    return this.cond.withLock(async () => {
      if (this.flag.acquireSync({ block: false })) this.flag.release();
      else await this.cond.wait(timeout);
      if (this.flag.acquireSync({ block: false })) {
        this.flag.release();
        return true;
      }
      return false;
    });
  }
}

/** Python's `threading.BrokenBarrierError` (a RuntimeError): a Barrier was aborted, reset or timed out while waiting. */
export class BrokenBarrierError extends RuntimeError {
  static override readonly brand: string = 'threading.BrokenBarrierError';
  constructor(message = '') {
    super(message);
  }
}

/** 8 shared bytes: the Barrier's state and count (two C ints), as billiard keeps them in a BufferWrapper. */
export interface BarrierMemory {
  /** Two Int32 slots: [state, count]. */
  readonly ints: Int32Array;
}

let barrierMemory: (() => BarrierMemory) | null = null;
/** How a Barrier gets its shared bytes (the sharedctypes layer's BufferWrapper). @internal */
export function setBarrierMemory(factory: () => BarrierMemory): void {
  barrierMemory = factory;
}

/**
 * A barrier for `parties` processes (threading.Barrier's algorithm, its
 * state in shared memory): `wait()` resolves with the arrival index once
 * all arrived; `abort()` or a timeout breaks it (BrokenBarrierError for
 * every waiter) until `reset()`.
 */
export class Barrier {
  /** @internal */ partiesCount!: number;
  /** @internal */ action!: (() => unknown) | null;
  /** @internal */ defaultTimeout!: number | null;
  /** @internal */ cond!: Condition;
  /** @internal */ memory!: BarrierMemory;

  constructor(parties: number, options?: { action?: (() => unknown) | null; timeout?: number | null }) {
    if (isRebuilding()) return;
    if (!Number.isInteger(parties) || parties < 1) throw new BilliardError('parties must be > 0', { code: 'VALUE' });
    if (barrierMemory === null) throw new RuntimeError('Barrier needs the sharedctypes layer (import billiard-ts)');
    this.partiesCount = parties;
    this.action = options?.action ?? null;
    this.defaultTimeout = options?.timeout ?? null;
    this.cond = new Condition();
    this.memory = barrierMemory();
    this.#state = 0;
    this.#count = 0;
  }

  get #state(): number {
    return this.memory.ints[0]!;
  }
  set #state(v: number) {
    this.memory.ints[0] = v;
  }
  get #count(): number {
    return this.memory.ints[1]!;
  }
  set #count(v: number) {
    this.memory.ints[1] = v;
  }

  /** Waits for every party; resolves with this arrival's index (0 … parties-1). */
  async wait(timeout?: number | null): Promise<number> {
    const t = timeout === undefined || timeout === null ? this.defaultTimeout : timeout;
    return this.cond.withLock(async () => {
      // Wait while the barrier drains or resets.
      while (this.#state === -1 || this.#state === 1) await this.cond.wait();
      if (this.#state < 0) throw new BrokenBarrierError();
      const index = this.#count;
      this.#count = index + 1;
      try {
        if (index + 1 === this.partiesCount) {
          await this.#release();
        } else {
          const ok = await this.cond.waitFor(() => this.#state !== 0, t);
          if (!ok) {
            await this.#break();
            throw new BrokenBarrierError();
          }
          if (this.#state < 0) throw new BrokenBarrierError();
        }
        return index;
      } finally {
        this.#count = this.#count - 1;
        if (this.#count === 0 && (this.#state === -1 || this.#state === 1)) {
          this.#state = 0;
          await this.cond.notifyAll();
        }
      }
    });
  }

  async #release(): Promise<void> {
    try {
      if (this.action !== null) await this.action();
      this.#state = 1;
      await this.cond.notifyAll();
    } catch (e) {
      await this.#break();
      throw e;
    }
  }

  async #break(): Promise<void> {
    this.#state = -2;
    await this.cond.notifyAll();
  }

  /** Returns the barrier to its empty state; current waiters get BrokenBarrierError. */
  async reset(): Promise<void> {
    await this.cond.withLock(async () => {
      if (this.#count > 0) {
        if (this.#state === 0 || this.#state === -2) this.#state = -1;
      } else {
        this.#state = 0;
      }
      await this.cond.notifyAll();
    });
  }

  /** Breaks the barrier: current and future waiters get BrokenBarrierError until reset(). */
  async abort(): Promise<void> {
    await this.cond.withLock(() => this.#break());
  }

  /** The number of parties. */
  get parties(): number {
    return this.partiesCount;
  }

  /** The number of parties waiting now. */
  get nWaiting(): number {
    return this.#state === 0 ? this.#count : 0;
  }

  /** True when broken. */
  get broken(): boolean {
    return this.#state === -2;
  }
}
