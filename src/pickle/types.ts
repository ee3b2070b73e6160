/**
 * JavaScript types for Python values that have no exact JavaScript
 * counterpart. The mapping is documented in ./README.md ("Values across the
 * wire" in DESIGN.md is the decision).
 */

import { DEFAULT_PROTOCOL } from './opcodes.js';
import { BUILTIN_FUNCTIONS } from './python-tables.js';

/**
 * The symbol of the method an object implements to say how it pickles: the
 * counterpart of Python's `__reduce_ex__(protocol)`. It returns a
 * {@link ReduceValue}.
 */
export const reduceEx: unique symbol = Symbol.for('billiard-ts.pickle.reduceEx') as never;

/**
 * The symbol of the method an object implements to take the state of a
 * `BUILD` opcode: the counterpart of Python's `__setstate__`.
 */
export const setState: unique symbol = Symbol.for('billiard-ts.pickle.setState') as never;

/** What an object's {@link reduceEx} method returns: the parts of a Python reduce tuple. */
export interface ReduceValue {
  /**
   * `'reduce'`: `callable(*args)` (REDUCE). `'newobj'`: `cls.__new__(cls, *args)`
   * (NEWOBJ); at protocols 0 and 1, with no `args`, written as
   * `copyreg._reconstructor(cls, object, None)` as CPython's
   * `object.__reduce_ex__` does for a plain class (so `cls` must be one), and
   * with `args` as `copyreg.__newobj__(cls, *args)`. `'newobj_ex'`:
   * `cls.__new__(cls, *args, **kwargs)`: NEWOBJ_EX at protocol 4 and up,
   * CPython's `functools.partial(cls.__new__, cls, *args, **kwargs)()` at 2
   * and 3, `copyreg.__newobj_ex__(cls, args, kwargs)` at 0 and 1. A `'reduce'`
   * whose callable is `copyreg.__newobj__` or `copyreg.__newobj_ex__` is
   * written as the matching `newobj` kind at protocol 2 and up, as CPython
   * does. Defaults to `'reduce'`.
   */
  kind?: 'reduce' | 'newobj' | 'newobj_ex';
  /** The callable (for `'reduce'`) or class (for the `newobj` kinds), usually a {@link PyGlobal}. */
  callable: unknown;
  /** Positional arguments; written as a tuple. */
  args: readonly unknown[];
  /** Keyword arguments, for `'newobj_ex'`. */
  kwargs?: unknown;
  /** State for BUILD; `undefined` (or `null`) means no BUILD. */
  state?: unknown;
  /** Items appended after construction (APPEND/APPENDS). */
  listItems?: Iterable<unknown>;
  /** Items set after construction (SETITEM/SETITEMS). */
  dictItems?: Iterable<readonly [unknown, unknown]>;
  /**
   * The sixth item of a Python reduce tuple: called as `stateSetter(obj, state)`
   * instead of BUILD (written `stateSetter obj state TUPLE2 REDUCE POP`).
   * Defaults to none (BUILD).
   */
  stateSetter?: unknown;
}

/**
 * A Python `tuple`: a frozen `Array` subclass. `Array.isArray` is true for it;
 * `map`/`filter`/`slice` return plain arrays.
 */
export class PyTuple<T = unknown> extends Array<T> {
  static override get [Symbol.species](): ArrayConstructor {
    return Array;
  }
  /** Builds a frozen tuple from the items given. */
  static override of<T>(...items: T[]): PyTuple<T> {
    return makeTuple(items);
  }
  /** Builds a frozen tuple from an iterable. */
  static override from<T>(items: Iterable<T> | ArrayLike<T>): PyTuple<T> {
    return makeTuple(Array.from(items));
  }
}

/**
 * Turns `items` (which the caller gives up) into a frozen {@link PyTuple}
 * without copying.
 */
export function makeTuple<T>(items: T[]): PyTuple<T> {
  Object.setPrototypeOf(items, PyTuple.prototype);
  return Object.freeze(items) as PyTuple<T>;
}

/** Builds a Python tuple: `tuple(1, 'a')` pickles as `(1, 'a')`; `tuple()` is the shared empty tuple. */
export function tuple<T extends unknown[]>(...items: T): PyTuple<T[number]> {
  return items.length === 0 ? EMPTY_TUPLE : makeTuple(items);
}

/** The empty tuple, shared (as Python's `()` is a singleton). */
export const EMPTY_TUPLE: PyTuple<never> = makeTuple<never>([]);

/** A Python `bytearray`; a plain `Uint8Array` is Python `bytes`. */
export class PyByteArray extends Uint8Array {
  /** Copies `data` into a new bytearray. */
  static fromBytes(data: ArrayLike<number>): PyByteArray {
    const out = new PyByteArray(data.length);
    out.set(data);
    return out;
  }
}

/** A Python `dict` whose keys are not all strings (or any dict, with `dicts: 'map'`). */
export class PyDict<K = unknown, V = unknown> extends Map<K, V> {}

/**
 * A dict held as its items, for a dict the program keeps in a table of its
 * own: it pickles as a Map of the same entries does, byte for byte, without
 * putting the keys in a V8 hash table first (keys that share V8's hash
 * buckets, such as bigints equal in their low 64 bits, would cost the
 * square of their number there; src/pickle/README.md, "Number keys"). A
 * manager's dict replies with one. Internal: not exported by the package.
 */
export class PyDictItems {
  constructor(readonly items: ReadonlyArray<readonly [unknown, unknown]>) {}
  get size(): number {
    return this.items.length;
  }
  [Symbol.iterator](): Iterator<readonly [unknown, unknown]> {
    return this.items[Symbol.iterator]();
  }
}

const kFrozen = Symbol('frozen');

/** A Python `frozenset`: a `Set` whose mutators throw once it is built. */
export class PyFrozenSet<T = unknown> extends Set<T> {
  constructor(items?: Iterable<T> | null) {
    super(items);
    Object.defineProperty(this, kFrozen, { value: true });
  }
  override add(value: T): this {
    if ((this as { [kFrozen]?: boolean })[kFrozen]) throw new TypeError('frozenset is immutable');
    return super.add(value);
  }
  override delete(_value: T): boolean {
    throw new TypeError('frozenset is immutable');
  }
  override clear(): void {
    throw new TypeError('frozenset is immutable');
  }
}

/**
 * A Python `float` that must stay a float even though its value is integral
 * (a plain `2` pickles as the int `2`). Loading gives one for every integral
 * float (`0.0`, `2.0`, `-0.0`, `1e300`) unless the option `floats: 'number'`
 * asks for plain numbers; other floats load as plain numbers.
 */
export class PyFloat {
  readonly value: number;
  constructor(value: number) {
    this.value = +value;
  }
  valueOf(): number {
    return this.value;
  }
  toString(): string {
    return String(this.value);
  }
  toJSON(): number {
    return this.value;
  }
}

/** Wraps a number so that it pickles as a Python `float`. */
export function pyFloat(value: number): PyFloat {
  return new PyFloat(value);
}

const kHandler = Symbol('billiard-ts.pickle.handler');

/**
 * A reference to a Python global (a class or a function) by module and
 * qualified name. It is inert: loading one never imports or calls anything.
 */
export class PyGlobal {
  readonly module: string;
  readonly name: string;
  /** @internal handler from the registry, if this global is a registered one. */
  declare [kHandler]?: unknown;
  constructor(module: string, name: string) {
    this.module = module;
    this.name = name;
  }
  /** `module.name`, as Python prints a qualified name. */
  get qualifiedName(): string {
    return `${this.module}.${this.name}`;
  }
  toString(): string {
    return `<PyGlobal ${this.module}.${this.name}>`;
  }
}

/** @internal */
export { kHandler };

/** Functions of the standard library that pickles name, besides those of `builtins`. */
const KNOWN_FUNCTIONS: ReadonlySet<string> = new Set([
  'copyreg\n_reconstructor',
  'copyreg\n__newobj__',
  'copyreg\n__newobj_ex__',
  '_codecs\nencode',
  'functools\nreduce',
]);

/**
 * @internal True when `g` names a function CPython knows is not a class (the
 * functions of `builtins`, and a few of the standard library that pickles
 * use): NEWOBJ refuses such a "class", as CPython does.
 */
export function isKnownFunction(g: PyGlobal): boolean {
  if (g.module === 'builtins') return BUILTIN_FUNCTIONS.has(g.name);
  return KNOWN_FUNCTIONS.has(`${g.module}\n${g.name}`);
}

/**
 * Names a Python function (or class) for a Python callee: `pyfunc('tasks.square')`
 * is the global `square` of module `tasks`; `pyfunc('pkg.mod:Outer.method')`
 * separates a dotted qualified name from its module with a colon.
 */
export function pyfunc(spec: string): PyGlobal {
  const colon = spec.indexOf(':');
  if (colon >= 0) return new PyGlobal(spec.slice(0, colon), spec.slice(colon + 1));
  const dot = spec.lastIndexOf('.');
  if (dot <= 0 || dot === spec.length - 1) {
    throw new TypeError(`pyfunc(${JSON.stringify(spec)}): expected 'module.name' or 'module:qual.name'`);
  }
  return new PyGlobal(spec.slice(0, dot), spec.slice(dot + 1));
}

/** `copyreg.__newobj__(cls, *args)`: `cls.__new__(cls, *args)`, callable at every protocol. */
const COPYREG_NEWOBJ = new PyGlobal('copyreg', '__newobj__');

/**
 * An inert placeholder for a Python object whose class is not registered: it
 * records how the object was built, and pickles back to an equal object
 * (the same bytes at the protocol it came in; src/pickle/README.md, "Byte
 * identity", says where other protocols differ from CPython's bytes).
 */
export class PyObject {
  /**
   * How the object was made: `'reduce'`, `callable(*args)` (REDUCE, and INST or
   * OBJ with arguments); `'newobj'`, `cls.__new__(cls, *args)` (NEWOBJ,
   * `copyreg.__newobj__(cls, *args)`, and INST or OBJ without arguments);
   * `'newobj_ex'`, `cls.__new__(cls, *args, **kwargs)` (NEWOBJ_EX,
   * `copyreg.__newobj_ex__`, and CPython's protocol 2-3 form of it,
   * `functools.partial(cls.__new__, cls, *args, **kwargs)()`).
   */
  kind: 'reduce' | 'newobj' | 'newobj_ex';
  /** The callable (REDUCE) or class (NEWOBJ). */
  callable: unknown;
  /** The positional arguments. */
  args: PyTuple;
  /** Keyword arguments of NEWOBJ_EX. */
  kwargs: unknown;
  /** The state given by BUILD, or to the state setter; `undefined` when there was none. */
  state: unknown;
  /** Items appended after construction; `undefined` when there were none. */
  listItems: unknown[] | undefined;
  /** Items set after construction; `undefined` when there were none. */
  dictItems: Array<[unknown, unknown]> | undefined;
  /**
   * The function the state went to instead of BUILD (the sixth item of a
   * reduce tuple, called as `stateSetter(obj, state)`); `undefined` for BUILD.
   */
  stateSetter: unknown;
  /**
   * Recursive objects only: the arguments of the object's first reduction.
   * When CPython meets an object again while writing the arguments of its
   * reduction, it writes a complete second reduction there, then drops the
   * first one's result (POP) and fetches the second (GET). `args` are the
   * second one's, these the first one's, and dumps writes each in its place:
   * a set subclass holding an object that holds the set needs a fresh list of
   * items in each. `undefined` otherwise.
   */
  outerArgs: PyTuple | undefined;
  /** With {@link outerArgs}: the keyword arguments of the first reduction. */
  outerKwargs: unknown;

  constructor(kind: 'reduce' | 'newobj' | 'newobj_ex', callable: unknown, args: PyTuple, kwargs?: unknown) {
    this.kind = kind;
    this.callable = callable;
    this.args = args;
    this.kwargs = kwargs;
    this.state = undefined;
    this.listItems = undefined;
    this.dictItems = undefined;
    this.stateSetter = undefined;
    this.outerArgs = undefined;
    this.outerKwargs = undefined;
  }

  /** The qualified name of the class or callable, when it is a global. */
  get pyType(): string | undefined {
    return this.callable instanceof PyGlobal ? this.callable.qualifiedName : undefined;
  }

  [setState](state: unknown): void {
    this.state = state;
  }

  [reduceEx](protocol: number = DEFAULT_PROTOCOL): ReduceValue {
    return reducePyObject(this, protocol, false);
  }
}

/**
 * @internal The reduce value of a placeholder at `protocol`; with `outer`,
 * that of its first reduction (its {@link PyObject.outerArgs}, when it has
 * them). Its class's Python bases are unknown, so NEWOBJ goes to protocols 0
 * and 1 as `copyreg.__newobj__(cls, *args)`, which is NEWOBJ itself, rather
 * than as `copyreg._reconstructor(cls, object, None)`, which is right only for
 * classes whose nearest builtin base is `object`.
 */
export function reducePyObject(o: PyObject, protocol: number, outer: boolean): ReduceValue {
  const args = outer && o.outerArgs !== undefined ? o.outerArgs : o.args;
  const kwargs = outer && o.outerArgs !== undefined ? o.outerKwargs : o.kwargs;
  if (o.kind === 'newobj' && protocol < 2) {
    return {
      kind: 'reduce',
      callable: COPYREG_NEWOBJ,
      args: [o.callable, ...args],
      state: o.state,
      listItems: o.listItems,
      dictItems: o.dictItems,
      stateSetter: o.stateSetter,
    };
  }
  return {
    kind: o.kind,
    callable: o.callable,
    args,
    kwargs,
    state: o.state,
    listItems: o.listItems,
    dictItems: o.dictItems,
    stateSetter: o.stateSetter,
  };
}

/**
 * Python's `pickle.PickleBuffer`: a buffer that protocol 5 can send out of
 * band. `readonly` buffers pickle in band as `bytes`, writable ones as
 * `bytearray`. Loading gives one for a READONLY_BUFFER applied to a writable
 * buffer (Python's read-only `memoryview`).
 */
export class PickleBuffer {
  readonly buffer: Uint8Array;
  readonly readonly: boolean;
  constructor(buffer: Uint8Array, options?: { readonly?: boolean }) {
    if (!(buffer instanceof Uint8Array)) throw new TypeError('PickleBuffer needs a Uint8Array');
    this.buffer = buffer;
    this.readonly = options?.readonly ?? !(buffer instanceof PyByteArray);
  }
  /** The bytes, as a `Uint8Array` view (Python's `PickleBuffer.raw()`). */
  raw(): Uint8Array {
    return this.buffer;
  }
}
