/**
 * Error classes of the pickle layer, and the branding every billiard-ts error
 * class uses.
 *
 * Each class carries the Python identity it stands for (its `brand`, the
 * `module.QualName` of the Python class) under `Symbol.for(...)`, so that
 * `instanceof` still matches when two copies of the package are loaded (as
 * undici does), and so that classes standing for the same Python class match
 * each other. Every error has a stable string `code`, the Python `args` it
 * pickles with, and pickles as its Python class (`dumps(new ValueError('x'))`
 * is Python's `ValueError('x')`).
 */

import { EMPTY_TUPLE, makeTuple, PyGlobal, reduceEx, setState, type ReduceValue } from './types.js';

const kBrands = Symbol.for('billiard-ts.error.brands');

type BrandedClass = { readonly brand?: string };

/** Collects the brand names of `cls` and all its ancestors, nearest first. */
function brandsOf(cls: unknown): string[] {
  const out: string[] = [];
  let c = cls as unknown;
  while (c !== null && typeof c === 'function') {
    const brand = Object.prototype.hasOwnProperty.call(c, 'brand') ? (c as BrandedClass).brand : undefined;
    if (brand) out.push(brand);
    c = Object.getPrototypeOf(c) as unknown;
  }
  return out;
}

/** True for a brand that names a Python class (not a billiard-ts-only one). */
function isPythonBrand(brand: string): boolean {
  return !brand.startsWith('billiard-ts.') && brand.lastIndexOf('.') > 0;
}

/**
 * @internal Adds brands to an error after construction: a
 * `PythonException` is also branded with its Python type and that type's
 * builtin bases, so that it satisfies `instanceof` for the billiard-ts class
 * standing for the same Python class.
 */
export function addBrands(err: BilliardError, extra: readonly string[]): void {
  const brands = [...err[kBrands], ...extra.filter((b) => !err[kBrands].includes(b))];
  Object.defineProperty(err, kBrands, { value: brands, enumerable: false, configurable: true });
}

/** Options every billiard-ts error constructor takes. */
export interface BilliardErrorOptions {
  /** The stable machine-readable code. */
  code?: string;
  /** The error that caused this one. */
  cause?: unknown;
  /** The Python `args` the error pickles with. Defaults to `(message,)`. */
  args?: readonly unknown[];
}

/**
 * Base of every error class billiard-ts defines. Each subclass names the
 * Python exception it stands for with its static `brand`; an error pickles as
 * the nearest such Python class, with its {@link BilliardError.args} and
 * {@link BilliardError.state}, as CPython's `BaseException.__reduce__` does
 * (`builtins.Exception` when no class in the chain names one).
 */
export class BilliardError extends Error {
  /** Stable identifier of the brand, `module.QualName` of the Python class. */
  static readonly brand: string = 'billiard-ts.BilliardError';
  /** A stable machine-readable code, e.g. `'TRUNCATED'`. */
  code: string;
  /** The Python exception's `args` (a tuple when pickled). Defaults to `(message,)`. */
  args: readonly unknown[];
  /** The Python exception's `__dict__` as pickled (BUILD state), or `undefined`. */
  state: unknown;
  /** @internal the brand names `instanceof` matches (see the top of this file). */
  declare readonly [kBrands]: readonly string[];

  constructor(message: string, options?: BilliardErrorOptions) {
    super(message, options?.cause === undefined ? undefined : { cause: options.cause });
    this.code = options?.code ?? 'ERROR';
    this.args = options?.args !== undefined ? makeTuple([...options.args]) : makeTuple([message]);
    this.state = undefined;
    Object.defineProperty(this, kBrands, { value: brandsOf(new.target), enumerable: false, configurable: true });
    Object.defineProperty(this, 'name', { value: new.target.name, enumerable: false, writable: true, configurable: true });
  }

  /** The qualified name of the Python class this error pickles as, e.g. `'builtins.ValueError'`. */
  get pyType(): string {
    return this[kBrands].find(isPythonBrand) ?? 'builtins.Exception';
  }

  static override [Symbol.hasInstance](obj: unknown): boolean {
    if (obj === null || (typeof obj !== 'object' && typeof obj !== 'function')) return false;
    const brands = (obj as { [kBrands]?: readonly string[] })[kBrands];
    if (Array.isArray(brands) && Object.prototype.hasOwnProperty.call(this, 'brand')) {
      return brands.includes((this as unknown as BrandedClass).brand as string);
    }
    return Function.prototype[Symbol.hasInstance].call(this, obj);
  }

  /** BUILD: keeps the pickled `__dict__`. */
  [setState](state: unknown): void {
    this.state = state;
  }

  /** Pickles as CPython's `BaseException.__reduce__`: `(type, args)` plus `__dict__` as state. */
  [reduceEx](): ReduceValue {
    const type = this.pyType;
    const dot = type.lastIndexOf('.');
    return { callable: new PyGlobal(type.slice(0, dot), type.slice(dot + 1)), args: this.args, state: this.state ?? undefined };
  }
}

/**
 * Gives a freshly made error the Python `args` it was loaded with (and keeps
 * them a tuple): what the load handlers of billiard-ts's exception classes
 * return. See {@link PickleRegistry.registerError}.
 */
export function withArgs<T extends BilliardError>(err: T, args: readonly unknown[]): T {
  err.args = args.length === 0 ? EMPTY_TUPLE : makeTuple([...args]);
  return err;
}

/** Python's `EOFError`: input ended where a new item (opcode, frame) was expected. */
export class EOFError extends BilliardError {
  static override readonly brand: string = 'builtins.EOFError';
  constructor(message = 'Ran out of input', options?: { code?: string; cause?: unknown }) {
    super(message, { code: 'EOF', ...options });
  }
}

/** Python's `pickle.PickleError`. */
export class PickleError extends BilliardError {
  static override readonly brand: string = 'pickle.PickleError';
}

/** Python's `pickle.PicklingError`: a value cannot be pickled. */
export class PicklingError extends PickleError {
  static override readonly brand: string = 'pickle.PicklingError';
  constructor(message: string, options?: { code?: string; cause?: unknown }) {
    super(message, { code: 'UNPICKLABLE', ...options });
  }
}

/**
 * The codes an {@link UnpicklingError} carries. `TRUNCATED` means the input
 * ended inside an opcode's argument or a frame (Python: "pickle data was
 * truncated"); input that ends between opcodes raises {@link EOFError}.
 */
export type UnpicklingErrorCode =
  | 'TRUNCATED'
  | 'INVALID_OPCODE'
  | 'UNSUPPORTED_PROTOCOL'
  | 'STACK_UNDERFLOW'
  | 'NO_MARK'
  | 'UNEXPECTED_MARK'
  | 'ODD_ITEMS'
  | 'MEMO_MISSING'
  | 'BAD_ARGUMENT'
  | 'DECODE'
  | 'TYPE'
  | 'LIMIT'
  | 'FORBIDDEN_GLOBAL'
  | 'NO_BUFFERS'
  | 'NO_PERSISTENT_LOAD'
  | 'BAD_EXTENSION'
  | 'TRAILING_DATA'
  | 'HANDLER'
  | 'INTERNAL';

/** Python's `pickle.UnpicklingError`: the bytes are not a valid pickle. */
export class UnpicklingError extends PickleError {
  static override readonly brand: string = 'pickle.UnpicklingError';
  declare code: UnpicklingErrorCode;
  /** Offset in the input of the opcode being executed, when known. */
  position: number | undefined;
  constructor(message: string, options?: { code?: UnpicklingErrorCode; cause?: unknown; position?: number }) {
    super(message, { code: options?.code ?? 'BAD_ARGUMENT', cause: options?.cause });
    this.position = options?.position;
  }
}

/*
 * Where CPython's unpickler raises a builtin exception rather than
 * UnpicklingError (spec/pickle.md section 11.1), loads raises one of these:
 * still an UnpicklingError (with its `code` and `position`), branded with
 * the Python class, so that `instanceof` the billiard-ts class standing for
 * that Python class holds too (process/errors.ts's `ValueError` for
 * `UnpicklingValueError`), `pyType` names it, and it pickles as it.
 */

/** CPython's `ValueError` from the unpickler: a bad text argument, PROTO > 5, an unregistered extension code, a text int over `maxLongDigits`. */
export class UnpicklingValueError extends UnpicklingError {
  static override readonly brand: string = 'builtins.ValueError';
}

/** CPython's `UnicodeDecodeError` (a `ValueError`): a string argument that does not decode (code `DECODE`). */
export class UnpicklingUnicodeDecodeError extends UnpicklingValueError {
  static override readonly brand: string = 'builtins.UnicodeDecodeError';
}

/** CPython's `TypeError`: REDUCE of a non-callable or with non-tuple arguments, an unhashable key, READONLY_BUFFER of a non-buffer. */
export class UnpicklingTypeError extends UnpicklingError {
  static override readonly brand: string = 'builtins.TypeError';
}

/** CPython's `AttributeError`: APPEND(S) or ADDITEMS on an object without `append`/`add`, a dotted global name below protocol 4. */
export class UnpicklingAttributeError extends UnpicklingError {
  static override readonly brand: string = 'builtins.AttributeError';
}

/** CPython's `OverflowError`: a FLOAT out of range, a memo index over 2**63 - 1, a BINBYTES8 longer than memory. */
export class UnpicklingOverflowError extends UnpicklingError {
  static override readonly brand: string = 'builtins.OverflowError';
}

/** The UnpicklingError classes that stand for a Python builtin exception, as the unpickler picks them. */
export type UnpicklingErrorClass =
  | typeof UnpicklingError
  | typeof UnpicklingValueError
  | typeof UnpicklingUnicodeDecodeError
  | typeof UnpicklingTypeError
  | typeof UnpicklingAttributeError
  | typeof UnpicklingOverflowError;
