/**
 * A Python exception as a JavaScript error: what `loads` gives for a pickled
 * exception of a registered class (every builtin one, and those users
 * register), and what a Node peer pickles to raise one in Python.
 */

import { addBrands, BilliardError } from './errors.js';
import { BUILTIN_EXCEPTION_BASES } from './python-tables.js';
import { EMPTY_TUPLE, makeTuple, PyGlobal, reduceEx, setState, type PyTuple, type ReduceValue } from './types.js';

/** Characters of a string argument shown in an exception's message. */
const MESSAGE_STRING_CHARS = 200;

/** A short, Python-like rendering of a value, for messages only. */
export function pyReprForMessage(v: unknown, depth = 0): string {
  if (v === null || v === undefined) return 'None';
  if (typeof v === 'boolean') return v ? 'True' : 'False';
  if (typeof v === 'string') {
    // At most MESSAGE_STRING_CHARS of it: a message must not cost in proportion to a peer's data.
    const head = v.length > MESSAGE_STRING_CHARS ? v.slice(0, MESSAGE_STRING_CHARS) : v;
    return `'${head.replace(/\\/g, '\\\\').replace(/'/g, "\\'").replace(/\n/g, '\\n')}'${head === v ? '' : '...'}`;
  }
  if (typeof v === 'number' || typeof v === 'bigint') return String(v);
  if (depth > 2) return '...';
  if (Array.isArray(v)) {
    const inner = v.slice(0, 8).map((x) => pyReprForMessage(x, depth + 1)).join(', ');
    const more = v.length > 8 ? ', ...' : '';
    if (Object.getPrototypeOf(v) !== Array.prototype) return `(${inner}${v.length === 1 ? ',' : ''}${more})`;
    return `[${inner}${more}]`;
  }
  if (v instanceof Uint8Array) return `b'${Array.from(v.subarray(0, 32), (b) => (b >= 0x20 && b < 0x7f && b !== 0x27 && b !== 0x5c ? String.fromCharCode(b) : `\\x${b.toString(16).padStart(2, '0')}`)).join('')}'`;
  if (v instanceof PyGlobal) return `<class '${v.module}.${v.name}'>`;
  return Object.prototype.toString.call(v);
}

/** Python's `str(exception)`: empty, the one argument's str, or the args tuple's repr (its first 8 items). */
export function strOfArgs(args: readonly unknown[]): string {
  if (args.length === 0) return '';
  if (args.length === 1) return typeof args[0] === 'string' ? args[0] : pyReprForMessage(args[0]);
  const more = args.length > 8 ? ', ...' : '';
  return `(${args.slice(0, 8).map((a) => pyReprForMessage(a)).join(', ')}${more})`;
}

/**
 * The brands of a Python exception type: the type, and for a builtin its
 * builtin bases (`builtins.FileNotFoundError` is also `builtins.OSError`).
 */
function pythonBrands(module: string, name: string): string[] {
  const out = [`${module}.${name}`];
  if (module === 'builtins') for (const base of BUILTIN_EXCEPTION_BASES.get(name) ?? []) out.push(`builtins.${base}`);
  return out;
}

/**
 * A Python exception, identified by its qualified type name
 * (`'builtins.ValueError'`), with its `args`, the state pickled beside them
 * (`e.__dict__`, e.g. `__notes__`) and, when a peer sent one, its traceback
 * text.
 *
 * It is what `loads` gives for a pickled builtin exception (and for the
 * classes users register with `registerException`). It is branded with its
 * Python type and, for a builtin, that type's builtin bases, so it satisfies
 * `instanceof` for billiard-ts's class of the same Python class: a loaded
 * `ValueError('x')` is `instanceof` process/errors.ts's `ValueError`, a
 * `FileNotFoundError` is `instanceof` connection/errors.ts's `OSError`, an
 * `EOFError` is `instanceof` `EOFError`. Those classes are the errors
 * billiard-ts itself raises; they pickle as the builtin they stand for.
 */
export class PythonException extends BilliardError {
  static override readonly brand: string = 'billiard-ts.PythonException';
  /** The module of the Python class, e.g. `'builtins'`. */
  readonly pyModule: string;
  /** The qualified name of the Python class inside its module, e.g. `'ValueError'`. */
  readonly pyName: string;
  /** The exception's `args`. */
  declare args: PyTuple;
  /** The remote traceback text, when one travelled with the exception. */
  traceback: string | undefined;

  constructor(pyType: string | PyGlobal, args: Iterable<unknown> = EMPTY_TUPLE, options?: { state?: unknown; traceback?: string; cause?: unknown }) {
    let module: string;
    let name: string;
    if (pyType instanceof PyGlobal) {
      module = pyType.module;
      name = pyType.name;
    } else {
      const dot = pyType.lastIndexOf('.');
      module = dot > 0 ? pyType.slice(0, dot) : 'builtins';
      name = dot > 0 ? pyType.slice(dot + 1) : pyType;
    }
    const argTuple = makeTuple(Array.from(args));
    const text = strOfArgs(argTuple);
    super(text ? `${name}: ${text}` : name, { code: 'PYTHON_EXCEPTION', cause: options?.cause });
    this.pyModule = module;
    this.pyName = name;
    this.args = argTuple;
    this.state = options?.state;
    this.traceback = options?.traceback;
    addBrands(this, pythonBrands(module, name));
  }

  /** `module.Name`, e.g. `'builtins.ValueError'`. */
  override get pyType(): string {
    return `${this.pyModule}.${this.pyName}`;
  }

  override [setState](state: unknown): void {
    this.state = state;
  }

  /** Pickles as CPython's `BaseException.__reduce__`: `(type, args)` plus `__dict__` as state. */
  override [reduceEx](): ReduceValue {
    return { callable: new PyGlobal(this.pyModule, this.pyName), args: this.args, state: this.state ?? undefined };
  }
}
