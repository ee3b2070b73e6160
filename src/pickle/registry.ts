/**
 * The registry of Python globals: the only way a pickle's GLOBAL,
 * STACK_GLOBAL, INST or EXT opcode reaches code. An unregistered name loads
 * as an inert {@link PyGlobal}; calling it (REDUCE, NEWOBJ) gives an inert
 * {@link PyObject}. A registered name carries a handler that builds a
 * JavaScript value from the arguments, and nothing else is ever called.
 *
 * The registry also holds reducers for user classes (how an instance
 * pickles) and copyreg's extension codes (spec/pickle.md section 8.6).
 */

import { withArgs, type BilliardError } from './errors.js';
import { PythonException } from './exceptions.js';
import { kHandler, PyGlobal, type PyTuple, type ReduceValue } from './types.js';

/** Returned by a handler to say "treat this call as unregistered" (an inert {@link PyObject}). */
export const NOT_HANDLED: unique symbol = Symbol('billiard-ts.pickle.NOT_HANDLED');

/**
 * What the unpickler hands a handler besides its arguments: the load's
 * allocation budget (the `maxAllocBytes` option of `loads`).
 */
export interface LoadContext {
  /**
   * Charges `bytes` to the load's allocation budget, throwing an
   * `UnpicklingError` with code `LIMIT` when the budget is spent. A handler
   * calls it before it allocates in proportion to an argument's value (as
   * `bytearray(n)` does); the unpickler has already charged the size of the
   * arguments themselves (see src/pickle/README.md, "Limits").
   */
  alloc(bytes: number): void;
  /**
   * Counts the strings among `items` that the handler is about to make keys
   * of a Map, an object or a Set against the load's `maxLongKeys` (strings
   * longer than 16,383 characters), throwing an `UnpicklingError` with code
   * `LIMIT` past it. A handler that builds such a collection from a list it
   * was given calls it first; keys of dicts the pickle itself made were
   * counted when they were loaded.
   */
  keys?(items: Iterable<unknown>): void;
}

/** A context for handlers called outside a load (no budget). */
export const UNLIMITED_LOAD_CONTEXT: LoadContext = Object.freeze({ alloc(): void {}, keys(): void {} });

/** What a registered Python global does when a pickle uses it. */
export interface GlobalHandler {
  /** REDUCE (and INST/OBJ): the global called as `global(*args)`. */
  call?(args: PyTuple, global: PyGlobal, context: LoadContext): unknown;
  /** NEWOBJ and NEWOBJ_EX: `cls.__new__(cls, *args, **kwargs)`; `kwargs` is `null` for NEWOBJ. */
  newobj?(args: PyTuple, kwargs: unknown, global: PyGlobal, context: LoadContext): unknown;
}

/** How instances of a JavaScript class pickle: the counterpart of `copyreg.pickle`. */
export type Reducer<T = never> = (obj: T, protocol: number) => ReduceValue;

function key(module: string, name: string): string {
  return `${module}\n${name}`;
}

/**
 * A set of registered globals, reducers and extension codes. Registries
 * chain: `registry.extend()` makes a child that sees its parent's entries and
 * can add or override its own.
 */
export class PickleRegistry {
  readonly #parent: PickleRegistry | undefined;
  readonly #globals = new Map<string, PyGlobal>();
  readonly #reducers = new Map<unknown, Reducer<never>>();
  readonly #extByCode = new Map<number, PyGlobal>();
  readonly #extByName = new Map<string, number>();

  constructor(parent?: PickleRegistry) {
    this.#parent = parent;
  }

  /** A child registry that falls back to this one. */
  extend(): PickleRegistry {
    return new PickleRegistry(this);
  }

  /**
   * Registers `module.name` with a handler and returns its canonical
   * {@link PyGlobal} (the value a pickle of the bare global loads as).
   */
  register(module: string, name: string, handler: GlobalHandler): PyGlobal {
    const g = new PyGlobal(module, name);
    Object.defineProperty(g, kHandler, { value: handler, enumerable: false });
    Object.freeze(g);
    this.#globals.set(key(module, name), g);
    return g;
  }

  /**
   * Registers a Python exception class: loading `module.name(*args)` gives a
   * {@link PythonException} of that type.
   */
  registerException(module: string, name: string): PyGlobal {
    return this.register(module, name, {
      call: (args, g) => new PythonException(g, args),
      newobj: (args, _kwargs, g) => new PythonException(g, args),
    });
  }

  /**
   * Registers a billiard-ts error class under one or more Python names
   * (`module.Name`, e.g. the stdlib name and billiard's aliases): loading
   * any of them gives `make(args)` with the pickled `args` kept on it (and
   * BUILD state on its `state`). The class's own `pyType` says how it pickles.
   */
  registerError(qualifiedNames: readonly string[], make: (args: PyTuple) => BilliardError): void {
    const load = (args: PyTuple): BilliardError => withArgs(make(args), args);
    for (const qualified of qualifiedNames) {
      const dot = qualified.lastIndexOf('.');
      if (dot <= 0) throw new TypeError(`registerError: '${qualified}' is not a qualified name (module.Name)`);
      this.register(qualified.slice(0, dot), qualified.slice(dot + 1), { call: load, newobj: load });
    }
  }

  /** The registered global `module.name`, if any (this registry, then its parents). */
  lookup(module: string, name: string): PyGlobal | undefined {
    return this.#globals.get(key(module, name)) ?? this.#parent?.lookup(module, name);
  }

  /** The registered global `module.name`, or a fresh inert one. */
  resolve(module: string, name: string): PyGlobal {
    return this.lookup(module, name) ?? new PyGlobal(module, name);
  }

  /** Says how instances of `cls` pickle. */
  registerReducer<T>(cls: abstract new (...args: never[]) => T, reducer: Reducer<T>): void {
    this.#reducers.set(cls, reducer as Reducer<never>);
  }

  /** The reducer registered for `obj`'s class or the nearest ancestor class, if any. */
  reducerFor(obj: object): Reducer<never> | undefined {
    if (this.#reducers.size > 0) {
      for (let p = Object.getPrototypeOf(obj) as { constructor?: unknown } | null; p; p = Object.getPrototypeOf(p) as typeof p) {
        const ctor = Object.prototype.hasOwnProperty.call(p, 'constructor') ? p.constructor : undefined;
        const r = ctor === undefined ? undefined : this.#reducers.get(ctor);
        if (r) return r;
      }
    }
    return this.#parent?.reducerFor(obj);
  }

  /**
   * Registers an extension code, as `copyreg.add_extension` does: the global
   * is written as EXT1/EXT2/EXT4 at protocol 2 and up, and those opcodes load
   * it. Both peers must register the same codes.
   */
  addExtension(module: string, name: string, code: number): void {
    if (!Number.isInteger(code) || code < 1 || code > 0x7fffffff) throw new RangeError('extension code out of range (1 to 0x7fffffff)');
    const k = key(module, name);
    const byName = this.#extByName.get(k);
    const byCode = this.#extByCode.get(code);
    if ((byName !== undefined && byName !== code) || (byCode && key(byCode.module, byCode.name) !== k)) {
      throw new Error(`extension code ${code} or ${module}.${name} is already registered differently`);
    }
    this.#extByName.set(k, code);
    this.#extByCode.set(code, new PyGlobal(module, name));
  }

  /** Removes an extension code (`copyreg.remove_extension`). */
  removeExtension(module: string, name: string, code: number): void {
    const k = key(module, name);
    if (this.#extByName.get(k) !== code) throw new Error(`${module}.${name} is not registered with code ${code}`);
    this.#extByName.delete(k);
    this.#extByCode.delete(code);
  }

  /** The global an extension code stands for, if registered. */
  extensionGlobal(code: number): PyGlobal | undefined {
    return this.#extByCode.get(code) ?? this.#parent?.extensionGlobal(code);
  }

  /** The extension code of `module.name`, if registered. */
  extensionCode(module: string, name: string): number | undefined {
    return this.#extByName.get(key(module, name)) ?? this.#parent?.extensionCode(module, name);
  }

  /** @internal whether any extension codes exist (a fast check for the pickler). */
  get hasExtensions(): boolean {
    return this.#extByName.size > 0 || (this.#parent?.hasExtensions ?? false);
  }
}

/** @internal the handler of a global, if it is a registered one. */
export function handlerOf(g: PyGlobal): GlobalHandler | undefined {
  return g[kHandler] as GlobalHandler | undefined;
}
