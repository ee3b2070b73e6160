/**
 * billiard's `sharedctypes` (spec/api.md §7): values and arrays of C types
 * in shared memory, raw or behind a lock.
 *
 * - {@link RawValue} and {@link RawArray} allocate from the heap (heap.ts)
 *   and give a {@link CValue} or {@link CArray}: the counterparts of the
 *   ctypes objects billiard returns, with `.value`, `get(i)`/`set(i, v)`,
 *   slices, and a typed array over the shared bytes (`.typed`).
 * - {@link Value} and {@link Array} wrap them with a lock, as billiard does
 *   (`lock: false` gives the raw object): {@link Synchronized},
 *   {@link SynchronizedArray}, {@link SynchronizedString}.
 *
 * Reads and writes are synchronous. The lock of a synchronized wrapper is
 * taken with `acquireSync` (a short blocking wait, as in Python); its
 * default, a new `RLock`, comes from the factory the synchronize layer
 * installs with {@link setDefaultLockFactory}.
 */

import { AssertionError, AttributeError, IndexError, RuntimeError, TypeError, ValueError } from './errors.js';
import { BufferWrapper } from './heap.js';
import { pyTypeName, strRepr, typecodeInfo, wcharOf, type InputOf, type TypecodeInfo, type Typecode, type TypedArrayOf, type ValueOf } from './typecodes.js';

/** The global `Array`, which this module's `Array` function shadows for its importers. */
const JsArray = globalThis.Array;

/** Keeps a wrapper alive as long as a typed array view of its block. */
const kWrapper = Symbol('billiard-ts.sharedctypes.wrapper');

const kInspect = Symbol.for('nodejs.util.inspect.custom');

/** A typed array over `length` elements of `info`'s type at the start of `wrapper`'s block. */
function viewOf<T extends Typecode>(info: TypecodeInfo<T>, wrapper: BufferWrapper, length: number): TypedArrayOf[T] {
  const typed = new info.arrayType(wrapper.arena.buffer, wrapper.start, length) as TypedArrayOf[T];
  Object.defineProperty(typed, kWrapper, { value: wrapper });
  return typed;
}

/**
 * A C value in shared memory: what {@link RawValue} returns (in Python, a
 * ctypes object such as `c_int(5)` whose memory lives in an arena).
 */
export class CValue<T extends Typecode = Typecode> {
  /** The typecode (`'i'`, `'d'`...). */
  readonly typecode: T;
  readonly #info: TypecodeInfo<T>;
  readonly #wrapper: BufferWrapper;
  readonly #typed: TypedArrayOf[T];

  /** @internal Made by {@link RawValue}, {@link copy} and a child's rebuild; `wrapper` holds at least one element. */
  constructor(typecode: T, wrapper: BufferWrapper) {
    const info = typecodeInfo(typecode) as TypecodeInfo<T>;
    if (wrapper.getSize() < info.size) throw new ValueError(`a ${info.ctype} needs ${info.size} bytes, the block has ${wrapper.getSize()}`);
    this.typecode = typecode;
    this.#info = info;
    this.#wrapper = wrapper;
    this.#typed = viewOf(info, wrapper, 1);
  }

  /** The ctypes class name, `'c_int'`: the type a pickle of this value names (`ctypes.c_int`). */
  get ctype(): string {
    return this.#info.ctype;
  }

  /** The value, read from shared memory (`l`, `L`, `q`, `Q`: a bigint; `c`: one byte; `u`: one character). */
  get value(): ValueOf[T] {
    return this.#info.load(this.#typed[0]!);
  }

  /** Writes the value: integers wrap modulo 2^bits, `f` rounds to binary32, as ctypes does. */
  set value(value: InputOf[T]) {
    (this.#typed as { [i: number]: number | bigint })[0] = this.#info.store(value);
  }

  /** A one-element typed array over the shared bytes (native byte order). */
  get typed(): TypedArrayOf[T] {
    return this.#typed;
  }

  /** The block of shared memory behind the value (billiard's `_wrapper`). */
  get wrapper(): BufferWrapper {
    return this.#wrapper;
  }

  /** Its size in bytes (`ctypes.sizeof`). */
  get byteLength(): number {
    return this.#info.size;
  }

  /** Python's repr: `c_int(5)`, `c_char(b'a')`, `c_double(0.1)`. */
  toString(): string {
    return `${this.#info.ctype}(${this.#info.repr(this.value)})`;
  }

  /** @internal */
  [kInspect](): string {
    return this.toString();
  }
}

/** Python's `slice(start, stop).indices(length)` for a step of 1, as `[start, stop]` with `stop >= start`. */
function sliceIndices(length: number, start: number | undefined | null, stop: number | undefined | null): [number, number] {
  const clamp = (i: number | undefined | null, dflt: number): number => {
    if (i === undefined || i === null) return dflt;
    if (!Number.isInteger(i)) throw new TypeError('slice indices must be integers or None or have an __index__ method');
    if (i < 0) return Math.max(0, length + i);
    return Math.min(i, length);
  };
  const s = clamp(start, 0);
  const e = clamp(stop, length);
  return [s, Math.max(s, e)];
}

/** What a slice of each kind of array reads as: bytes for `c`, a string for `u`, an array otherwise. */
export type SliceOf<T extends Typecode> = T extends 'c' ? Uint8Array : T extends 'u' ? string : Array<ValueOf[T]>;

/** What a slice of each kind of array can be assigned from. */
export type SliceInputOf<T extends Typecode> = T extends 'u' ? string | Iterable<InputOf[T]> : Iterable<InputOf[T]>;

/** The elements of an initialiser or slice value: code points of a string, items of an iterable. */
function itemsOf(values: unknown): unknown[] {
  if (typeof values === 'string') return [...values];
  if (values !== null && typeof values === 'object' && Symbol.iterator in values) return JsArray.from(values as Iterable<unknown>);
  throw new TypeError(`object of type '${pyTypeName(values)}' has no len()`);
}

/**
 * A C array in shared memory: what {@link RawArray} returns (in Python, a
 * ctypes array such as `c_int_Array_3`). Elements are read and written with
 * `get(i)`/`set(i, v)` (negative indices count from the end), slices with
 * `getSlice`/`setSlice`, all of them with `typed`; arrays of `c` also have
 * `value` and `raw` (bytes), arrays of `u` `value` (a string).
 */
export class CArray<T extends Typecode = Typecode> {
  /** The element typecode. */
  readonly typecode: T;
  /** The number of elements. */
  readonly length: number;
  readonly #info: TypecodeInfo<T>;
  readonly #wrapper: BufferWrapper;
  readonly #typed: TypedArrayOf[T];

  /** @internal Made by {@link RawArray}, {@link copy} and a child's rebuild; `wrapper` holds `length` elements. */
  constructor(typecode: T, wrapper: BufferWrapper, length: number) {
    const info = typecodeInfo(typecode) as TypecodeInfo<T>;
    if (!Number.isSafeInteger(length) || length < 0) throw new ValueError(`Array length must be >= 0, not ${String(length)}`);
    if (wrapper.getSize() < info.size * length) {
      throw new ValueError(`a ${info.ctype} array of ${length} needs ${info.size * length} bytes, the block has ${wrapper.getSize()}`);
    }
    this.typecode = typecode;
    this.length = length;
    this.#info = info;
    this.#wrapper = wrapper;
    this.#typed = viewOf(info, wrapper, length);
  }

  /** The ctypes class name of an element, `'c_int'`. */
  get ctype(): string {
    return this.#info.ctype;
  }

  /** The Python name of the array type, `'c_int_Array_3'`. */
  get typeName(): string {
    return `${this.#info.ctype}_Array_${this.length}`;
  }

  /** A typed array over the elements, in native byte order (`c`: a `Uint8Array`; `u`: code points). */
  get typed(): TypedArrayOf[T] {
    return this.#typed;
  }

  /** The block of shared memory behind the array (billiard's `_wrapper`). */
  get wrapper(): BufferWrapper {
    return this.#wrapper;
  }

  /** Its size in bytes (`ctypes.sizeof`). */
  get byteLength(): number {
    return this.#info.size * this.length;
  }

  #index(i: number): number {
    if (typeof i !== 'number' || !Number.isInteger(i)) throw new TypeError('indices must be integers');
    const j = i < 0 ? i + this.length : i;
    if (j < 0 || j >= this.length) throw new IndexError('invalid index');
    return j;
  }

  /** Element `i` (negative: from the end); `IndexError('invalid index')` outside the array. */
  get(i: number): ValueOf[T] {
    return this.#info.load(this.#typed[this.#index(i)]!);
  }

  /** Writes element `i` (negative: from the end), wrapping as ctypes does. */
  set(i: number, value: InputOf[T]): void {
    const j = this.#index(i);
    (this.#typed as { [i: number]: number | bigint })[j] = this.#info.store(value);
  }

  /**
   * Elements `[start, stop)`, with Python's slice rules (negative indices
   * count from the end, out-of-range ones are clipped): bytes for `c`, a
   * string for `u`, an array otherwise. A copy.
   */
  getSlice(start?: number | null, stop?: number | null): SliceOf<T> {
    const [s, e] = sliceIndices(this.length, start, stop);
    if (this.typecode === 'c') return (this.#typed as Uint8Array).slice(s, e) as SliceOf<T>;
    if (this.typecode === 'u') {
      let out = '';
      for (let i = s; i < e; i++) out += wcharOf((this.#typed as Uint32Array)[i]!);
      return out as SliceOf<T>;
    }
    const out: Array<ValueOf[T]> = [];
    for (let i = s; i < e; i++) out.push(this.#info.load(this.#typed[i]!));
    return out as SliceOf<T>;
  }

  /**
   * Writes `values` over `[start, stop)` (Python's slice rules); they must be
   * exactly as many as the slice's elements (`ValueError('Can only assign
   * sequence of same size')`). Every value is checked before any is written.
   */
  setSlice(start: number | null | undefined, stop: number | null | undefined, values: SliceInputOf<T>): void {
    const [s, e] = sliceIndices(this.length, start, stop);
    const items = itemsOf(values);
    if (items.length !== e - s) throw new ValueError('Can only assign sequence of same size');
    const stored = items.map((v) => this.#info.store(v));
    const typed = this.#typed as { [i: number]: number | bigint };
    for (let i = 0; i < stored.length; i++) typed[s + i] = stored[i]!;
  }

  /** All elements, as {@link getSlice} reads them (`a[:]`). */
  toArray(): SliceOf<T> {
    return this.getSlice();
  }

  /** The elements, one by one. */
  *[Symbol.iterator](): IterableIterator<ValueOf[T]> {
    for (let i = 0; i < this.length; i++) yield this.get(i);
  }

  #noAttribute(name: string): never {
    throw new AttributeError(`'${this.typeName}' object has no attribute '${name}'`);
  }

  /**
   * Arrays of `c`: the bytes up to the first NUL (a copy); arrays of `u`:
   * the characters up to the first NUL. Other arrays have no `value`
   * (`AttributeError`, as in Python).
   */
  get value(): T extends 'c' ? Uint8Array : T extends 'u' ? string : never {
    const typed = this.#typed as Uint8Array | Uint32Array;
    let end = typed.indexOf(0);
    if (end < 0) end = this.length;
    if (this.typecode === 'c') return typed.slice(0, end) as never;
    if (this.typecode === 'u') return this.getSlice(0, end) as never;
    return this.#noAttribute('value');
  }

  /**
   * Arrays of `c`: writes bytes and a NUL after them if there is room
   * (`ValueError('byte string too long')` beyond the array). Arrays of `u`:
   * the same with a string (`'string too long'`).
   */
  set value(value: T extends 'c' ? Uint8Array : T extends 'u' ? string : never) {
    if (this.typecode === 'c') {
      if (!(value instanceof Uint8Array)) throw new TypeError(`bytes expected instead of ${pyTypeName(value)} instance`);
      if (value.length > this.length) throw new ValueError('byte string too long');
      const typed = this.#typed as Uint8Array;
      typed.set(value);
      if (value.length < this.length) typed[value.length] = 0;
      return;
    }
    if (this.typecode === 'u') {
      if (typeof value !== 'string') throw new TypeError(`unicode string expected instead of ${pyTypeName(value)} instance`);
      const cps = [...(value as string)].map((ch) => ch.codePointAt(0)!);
      if (cps.length > this.length) throw new ValueError('string too long');
      const typed = this.#typed as Uint32Array;
      typed.set(cps);
      if (cps.length < this.length) typed[cps.length] = 0;
      return;
    }
    this.#noAttribute('value');
  }

  /** Arrays of `c`: all the bytes (a copy). Other arrays have no `raw`. */
  get raw(): T extends 'c' ? Uint8Array : never {
    if (this.typecode !== 'c') return this.#noAttribute('raw');
    return (this.#typed as Uint8Array).slice() as never;
  }

  /** Arrays of `c`: writes bytes from the start, without a NUL (`ValueError('byte string too long')` beyond the array). */
  set raw(value: T extends 'c' ? Uint8Array : never) {
    if (this.typecode !== 'c') this.#noAttribute('raw');
    if (!(value instanceof Uint8Array)) throw new TypeError(`a bytes-like object is required, not '${pyTypeName(value)}'`);
    if (value.length > this.length) throw new ValueError('byte string too long');
    (this.#typed as Uint8Array).set(value);
  }

  /** Python's repr, without the address: `<billiard.sharedctypes.c_int_Array_3 object>`. */
  toString(): string {
    return `<billiard.sharedctypes.${this.typeName} object>`;
  }

  /** @internal */
  [kInspect](): string {
    return this.toString();
  }
}

/** A raw shared object: a value or an array. */
export type RawShared = CValue | CArray;

/**
 * A new shared C value of `typecode`, zero unless `value` is given
 * (billiard's `RawValue(typecode, *args)`). An unknown typecode is
 * `TypeError('this type has no size')`, a value of the wrong type the
 * `TypeError` ctypes raises.
 */
export function RawValue<T extends Typecode>(typecode: T, value?: InputOf[T]): CValue<T> {
  const info = typecodeInfo(typecode);
  const stored = value === undefined ? undefined : info.store(value);
  const obj = new CValue(typecode, new BufferWrapper(info.size));
  if (stored !== undefined) (obj.typed as { [i: number]: number | bigint })[0] = stored;
  return obj;
}

/**
 * A new shared C array of `typecode` (billiard's `RawArray`): a number
 * gives that many zeros, anything iterable (an array, a typed array, a
 * string's characters) a copy of its items.
 */
export function RawArray<T extends Typecode>(typecode: T, sizeOrInitializer: number | bigint | SliceInputOf<T>): CArray<T> {
  const info = typecodeInfo(typecode);
  if (typeof sizeOrInitializer === 'number' || typeof sizeOrInitializer === 'bigint' || typeof sizeOrInitializer === 'boolean') {
    const n = Number(sizeOrInitializer);
    if (typeof sizeOrInitializer === 'number' && !Number.isInteger(n)) throw new TypeError(`object of type '${pyTypeName(n)}' has no len()`);
    if (n < 0) throw new ValueError(`Array length must be >= 0, not ${String(sizeOrInitializer)}`);
    return new CArray(typecode, new BufferWrapper(info.size * n), n);
  }
  const stored = itemsOf(sizeOrInitializer).map((v) => info.store(v));
  const arr = new CArray(typecode, new BufferWrapper(info.size * stored.length), stored.length);
  const typed = arr.typed as { [i: number]: number | bigint };
  for (let i = 0; i < stored.length; i++) typed[i] = stored[i]!;
  return arr;
}

/**
 * A new shared object of the same type, length and contents as `obj`
 * (billiard's `copy`).
 */
export function copy<T extends Typecode>(obj: CValue<T>): CValue<T>;
export function copy<T extends Typecode>(obj: CArray<T>): CArray<T>;
export function copy(obj: RawShared): RawShared {
  if (obj instanceof CValue) {
    const out = new CValue(obj.typecode, new BufferWrapper(obj.byteLength));
    out.wrapper.createMemoryview().set(obj.wrapper.createMemoryview().subarray(0, obj.byteLength));
    return out;
  }
  if (obj instanceof CArray) {
    const out = new CArray(obj.typecode, new BufferWrapper(obj.byteLength), obj.length);
    out.wrapper.createMemoryview().set(obj.wrapper.createMemoryview().subarray(0, obj.byteLength));
    return out;
  }
  throw new TypeError('this type has no size');
}

// ---- locks -----------------------------------------------------------------------

/**
 * The lock a synchronized wrapper needs: one that can be taken
 * synchronously (a short blocking wait, as Python's `acquire()` is), such as
 * the synchronize layer's `RLock`.
 */
export interface SyncLock {
  /** Takes the lock; `timeout` in seconds. Returns false if it was not taken. */
  acquireSync(options?: { block?: boolean; timeout?: number }): boolean;
  /** Gives it back. */
  release(): void;
}

/** A context whose `RLock()` makes the default lock (billiard's `ctx` keyword). */
export interface LockContext {
  RLock(): SyncLock;
}

let defaultLockFactory: (() => SyncLock) | undefined;

/**
 * Installs the factory of the lock {@link Value}, {@link Array} and
 * {@link synchronized} make when none is given (billiard: `ctx.RLock()`);
 * the synchronize layer installs its `RLock`. `null` removes it. Returns the
 * previous factory.
 */
export function setDefaultLockFactory(factory: (() => SyncLock) | null): (() => SyncLock) | undefined {
  const previous = defaultLockFactory;
  defaultLockFactory = factory ?? undefined;
  return previous;
}

function newLock(ctx: LockContext | null | undefined): SyncLock {
  if (ctx !== undefined && ctx !== null) return ctx.RLock();
  if (defaultLockFactory === undefined) {
    throw new RuntimeError('no default lock for shared values: pass { lock }, or import the synchronize layer (it installs RLock with setDefaultLockFactory)');
  }
  return defaultLockFactory();
}

/** A short repr of a value for messages, as Python's `%r` would give it. */
function reprOf(v: unknown): string {
  if (v === null || v === undefined) return 'None';
  if (typeof v === 'string') return strRepr(v);
  if (typeof v === 'boolean') return v ? 'True' : 'False';
  if (typeof v === 'number' || typeof v === 'bigint') return String(v);
  return `<${pyTypeName(v)} object>`;
}

function hasMethod(obj: unknown, name: string): boolean {
  return obj !== null && (typeof obj === 'object' || typeof obj === 'function') && typeof (obj as Record<string, unknown>)[name] === 'function';
}

/** Checks that `lock` can guard a shared value, with billiard's message when it cannot. */
function checkLock(lock: unknown): SyncLock {
  if (!hasMethod(lock, 'acquireSync') || !hasMethod(lock, 'release')) {
    if (!hasMethod(lock, 'acquire')) throw new AttributeError(`'${reprOf(lock)}' has no method 'acquire'`);
    throw new AttributeError(`'${reprOf(lock)}' has no method 'acquireSync' (a shared value's lock must be one that can be taken synchronously)`);
  }
  return lock as SyncLock;
}

// ---- synchronized wrappers ----------------------------------------------------------

/** Options of {@link SynchronizedBase} and {@link synchronized}. */
export interface SynchronizedOptions {
  /** Makes the lock when none is given (`ctx.RLock()`); defaults to the installed factory. */
  ctx?: LockContext | null;
}

/**
 * A raw shared object and the lock that guards it (billiard's
 * `SynchronizedBase`): `getObj()`, `getLock()`, `acquire()`/`release()`,
 * `withLock(fn)`.
 */
export class SynchronizedBase<O extends RawShared = RawShared> {
  readonly #obj: O;
  readonly #lock: SyncLock;

  /** Wraps `obj` with `lock`, or with a new `RLock` when none is given. */
  constructor(obj: O, lock?: SyncLock | null, options?: SynchronizedOptions) {
    this.#obj = obj;
    const l = lock === undefined || lock === null || (lock as unknown) === false ? newLock(options?.ctx) : lock;
    if (!hasMethod(l, 'acquireSync') || !hasMethod(l, 'release')) throw new AttributeError(`'${pyTypeName(l)}' object has no attribute 'acquire'`);
    this.#lock = l;
  }

  /** The raw shared object (billiard's `get_obj()`). */
  getObj(): O {
    return this.#obj;
  }

  /** The lock (billiard's `get_lock()`). */
  getLock(): SyncLock {
    return this.#lock;
  }

  /**
   * Takes the lock without blocking the event loop when the lock can
   * (its own async `acquire`), else with `acquireSync`. `timeout` in seconds.
   */
  acquire(options?: { block?: boolean; timeout?: number }): Promise<boolean> {
    const lock = this.#lock as SyncLock & { acquire?: (o?: { block?: boolean; timeout?: number }) => Promise<boolean> | boolean };
    try {
      if (typeof lock.acquire === 'function') return Promise.resolve(lock.acquire(options));
      return Promise.resolve(lock.acquireSync(options));
    } catch (e) {
      return Promise.reject(e);
    }
  }

  /** Takes the lock, blocking (billiard's `acquire()`); `timeout` in seconds. */
  acquireSync(options?: { block?: boolean; timeout?: number }): boolean {
    return this.#lock.acquireSync(options);
  }

  /** Gives the lock back. */
  release(): void {
    this.#lock.release();
  }

  /** Runs `fn` holding the lock (Python's `with wrapper:`), and releases it however `fn` ends. */
  async withLock<R>(fn: () => R | Promise<R>): Promise<R> {
    await this.acquire();
    try {
      return await fn();
    } finally {
      this.release();
    }
  }

  /** @internal Runs `fn` holding the lock, synchronously. */
  protected locked<R>(fn: (obj: O) => R): R {
    this.#lock.acquireSync();
    try {
      return fn(this.#obj);
    } finally {
      this.#lock.release();
    }
  }

  /** Python's repr: `<Synchronized wrapper for c_int(5)>`. */
  toString(): string {
    return `<${this.constructor.name} wrapper for ${String(this.#obj)}>`;
  }

  /** @internal */
  [kInspect](): string {
    return this.toString();
  }
}

/** A shared value behind a lock (billiard's `Synchronized`): `.value` reads and writes under it. */
export class Synchronized<T extends Typecode = Typecode> extends SynchronizedBase<CValue<T>> {
  /** Reads the value, holding the lock. */
  get value(): ValueOf[T] {
    return this.locked((obj) => obj.value);
  }

  /** Writes the value, holding the lock. */
  set value(value: InputOf[T]) {
    this.locked((obj) => {
      obj.value = value;
    });
  }
}

/** A shared array behind a lock (billiard's `SynchronizedArray`): each access holds the lock. */
export class SynchronizedArray<T extends Typecode = Typecode> extends SynchronizedBase<CArray<T>> {
  /** The number of elements (Python's `len()`; no lock needed). */
  get length(): number {
    return this.getObj().length;
  }

  /** Element `i`, holding the lock. */
  get(i: number): ValueOf[T] {
    return this.locked((obj) => obj.get(i));
  }

  /** Writes element `i`, holding the lock. */
  set(i: number, value: InputOf[T]): void {
    this.locked((obj) => obj.set(i, value));
  }

  /** Elements `[start, stop)` (Python's slice rules), holding the lock. */
  getSlice(start?: number | null, stop?: number | null): SliceOf<T> {
    return this.locked((obj) => obj.getSlice(start, stop));
  }

  /** Writes a slice of the same length, holding the lock. */
  setSlice(start: number | null | undefined, stop: number | null | undefined, values: SliceInputOf<T>): void {
    this.locked((obj) => obj.setSlice(start, stop, values));
  }

  /** All elements (`a[:]`), read under one hold of the lock. */
  toArray(): SliceOf<T> {
    return this.locked((obj) => obj.getSlice());
  }

  /** The elements one by one, each read under the lock (as Python's iteration by index does). */
  *[Symbol.iterator](): IterableIterator<ValueOf[T]> {
    for (let i = 0; i < this.length; i++) yield this.get(i);
  }
}

/** A shared `c` array behind a lock (billiard's `SynchronizedString`): `value` and `raw` under it. */
export class SynchronizedString extends SynchronizedArray<'c'> {
  /** The bytes up to the first NUL, holding the lock. */
  get value(): Uint8Array {
    return this.locked((obj) => obj.value);
  }

  /** Writes bytes and a NUL after them if there is room, holding the lock. */
  set value(value: Uint8Array) {
    this.locked((obj) => {
      obj.value = value;
    });
  }

  /** All the bytes, holding the lock. */
  get raw(): Uint8Array {
    return this.locked((obj) => obj.raw);
  }

  /** Writes bytes from the start, holding the lock. */
  set raw(value: Uint8Array) {
    this.locked((obj) => {
      obj.raw = value;
    });
  }
}

/**
 * Wraps a raw shared object with a lock (billiard's `synchronized(obj,
 * lock=None, ctx=None)`): a {@link Synchronized} for a value, a
 * {@link SynchronizedString} for an array of `c`, a
 * {@link SynchronizedArray} for other arrays. Without a lock, a new
 * `RLock`. Wrapping a wrapper is `AssertionError('object already synchronized')`.
 */
export function synchronized<T extends Typecode>(obj: CValue<T>, lock?: SyncLock | null, options?: SynchronizedOptions): Synchronized<T>;
export function synchronized(obj: CArray<'c'>, lock?: SyncLock | null, options?: SynchronizedOptions): SynchronizedString;
export function synchronized<T extends Typecode>(obj: CArray<T>, lock?: SyncLock | null, options?: SynchronizedOptions): SynchronizedArray<T>;
export function synchronized(obj: RawShared, lock?: SyncLock | null, options?: SynchronizedOptions): SynchronizedBase;
export function synchronized(obj: RawShared, lock?: SyncLock | null, options?: SynchronizedOptions): SynchronizedBase {
  if (obj instanceof SynchronizedBase) throw new AssertionError('object already synchronized');
  if (obj instanceof CValue) return new Synchronized(obj, lock, options);
  if (obj instanceof CArray) {
    if (obj.typecode === 'c') return new SynchronizedString(obj as CArray<'c'>, lock, options);
    return new SynchronizedArray(obj, lock, options);
  }
  throw new TypeError(`synchronized() wraps a shared value or array (RawValue, RawArray), not ${pyTypeName(obj)}`);
}

// ---- Value and Array ------------------------------------------------------------------

/** The keyword arguments of {@link Value} and {@link Array}. */
export interface ValueOptions {
  /**
   * `false`: return the raw object; `true`, `null` or absent: guard it with a
   * new `RLock`; a lock: guard it with that lock (it must have `acquireSync`).
   */
  lock?: SyncLock | boolean | null;
  /** Makes the new lock (`ctx.RLock()`); defaults to the installed factory. */
  ctx?: LockContext | null;
}

/** A raw-object options object: `{ lock: false }`. */
export type RawOptions = ValueOptions & { lock: false };

const VALUE_KEYS: ReadonlySet<string> = new Set(['lock', 'ctx']);

function isOptionsObject(v: unknown): v is ValueOptions {
  if (v === null || typeof v !== 'object') return false;
  const proto = Object.getPrototypeOf(v);
  return proto === Object.prototype || proto === null;
}

/** Refuses option keys billiard would not take as keywords. */
function checkOptionKeys(options: ValueOptions | undefined | null): void {
  if (options === undefined || options === null) return;
  const unknown = Object.keys(options).filter((k) => !VALUE_KEYS.has(k));
  if (unknown.length > 0) throw new ValueError(`unrecognized keyword argument(s): [${unknown.map(strRepr).join(', ')}]`);
}

/** The lock to wrap with, or false for the raw object. */
function lockFrom(options: ValueOptions | undefined | null): SyncLock | false {
  if (options === undefined || options === null) return newLock(undefined);
  const lock = options.lock;
  if (lock === false) return false;
  if (lock === true || lock === null || lock === undefined) return newLock(options.ctx);
  return checkLock(lock);
}

/**
 * A shared value guarded by a lock (billiard's `Value(typecode, *args,
 * lock=None, ctx=None)`); `{ lock: false }` gives the raw {@link CValue}.
 * The options may come second when there is no value:
 * `Value('i', { lock: false })`. Unknown options are
 * `ValueError('unrecognized keyword argument(s): [...]')`.
 */
export function Value<T extends Typecode>(typecode: T, value: InputOf[T] | undefined, options: RawOptions): CValue<T>;
export function Value<T extends Typecode>(typecode: T, options: RawOptions): CValue<T>;
export function Value<T extends Typecode>(typecode: T, value?: InputOf[T], options?: ValueOptions): Synchronized<T>;
export function Value<T extends Typecode>(typecode: T, options: ValueOptions): Synchronized<T>;
export function Value<T extends Typecode>(typecode: T, valueOrOptions?: InputOf[T] | ValueOptions, options?: ValueOptions): CValue<T> | Synchronized<T> {
  let value = valueOrOptions as InputOf[T] | undefined;
  if (options === undefined && isOptionsObject(valueOrOptions)) {
    options = valueOrOptions;
    value = undefined;
  }
  // billiard checks the keywords, then makes the object, then the lock.
  checkOptionKeys(options);
  const obj = RawValue(typecode, value);
  const lock = lockFrom(options);
  if (lock === false) return obj;
  return new Synchronized(obj, lock);
}

/**
 * A shared array guarded by a lock (billiard's `Array(typecode,
 * size_or_initializer, lock=None, ctx=None)`): a {@link SynchronizedString}
 * for `c`, a {@link SynchronizedArray} otherwise; `{ lock: false }` gives
 * the raw {@link CArray}.
 */
function ArrayFn<T extends Typecode>(typecode: T, sizeOrInitializer: number | bigint | SliceInputOf<T>, options: RawOptions): CArray<T>;
function ArrayFn(typecode: 'c', sizeOrInitializer: number | bigint | SliceInputOf<'c'>, options?: ValueOptions): SynchronizedString;
function ArrayFn<T extends Typecode>(typecode: T, sizeOrInitializer: number | bigint | SliceInputOf<T>, options?: ValueOptions): SynchronizedArray<T>;
function ArrayFn<T extends Typecode>(typecode: T, sizeOrInitializer: number | bigint | SliceInputOf<T>, options?: ValueOptions): CArray<T> | SynchronizedArray<T> {
  checkOptionKeys(options);
  const obj = RawArray(typecode, sizeOrInitializer);
  const lock = lockFrom(options);
  if (lock === false) return obj;
  return synchronized(obj, lock) as SynchronizedArray<T>;
}

export { ArrayFn as Array };

/** @internal For the child's rebuild: a raw value or array over a wrapper's block. */
export function rebuildShared(typecode: Typecode, wrapper: BufferWrapper, length: number | null): RawShared {
  return length === null ? new CValue(typecode, wrapper) : new CArray(typecode, wrapper, length);
}
