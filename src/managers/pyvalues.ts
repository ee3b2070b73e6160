/**
 * Python semantics for values a billiard-ts manager server holds: equality,
 * hashing (dict keys), ordering (list.sort) and repr, for the values the
 * pickle layer gives (spec: DESIGN.md "Values across the wire").
 */

import { PyFloat, PyFrozenSet, PyTuple, PythonException } from '../pickle/index.js';
import { LONG_KEY_CHARS } from '../pickle/v8-hash.js';

/** A Python exception to raise from a server method (`builtins.KeyError(key)` and the like). */
export function pyError(type: string, ...args: unknown[]): PythonException {
  return new PythonException(type.includes('.') ? type : `builtins.${type}`, args);
}

function num(v: unknown): number | bigint | null {
  if (typeof v === 'number' || typeof v === 'bigint') return v;
  if (typeof v === 'boolean') return v ? 1 : 0;
  if (v instanceof PyFloat) return v.valueOf();
  return null;
}

/** Python's `a == b` for wire values. */
export function pyEquals(a: unknown, b: unknown): boolean {
  if (a === b) return true;
  const na = num(a);
  const nb = num(b);
  if (na !== null && nb !== null) return typeof na === typeof nb ? na === nb : Number(na) === Number(nb);
  if (na !== null || nb !== null) return false;
  if (a === null || b === null || typeof a !== 'object' || typeof b !== 'object') return false;
  if (a instanceof Uint8Array && b instanceof Uint8Array) return a.length === b.length && a.every((x, i) => x === b[i]);
  if (Array.isArray(a) && Array.isArray(b)) {
    if ((a instanceof PyTuple) !== (b instanceof PyTuple)) return false;
    return a.length === b.length && a.every((x, i) => pyEquals(x, b[i]));
  }
  if (a instanceof Set && b instanceof Set) {
    if (a.size !== b.size) return false;
    const keys = new Set([...b].map(hashKey));
    return [...a].every((x) => keys.has(hashKey(x)));
  }
  const ea = entriesOf(a);
  const eb = entriesOf(b);
  if (ea !== null && eb !== null) {
    if (ea.length !== eb.length) return false;
    const m = new Map(eb.map(([k, v]) => [hashKey(k), v]));
    return ea.every(([k, v]) => m.has(hashKey(k)) && pyEquals(v, m.get(hashKey(k))));
  }
  return false;
}

/** The entries of a dict-like value (a Map, or a plain/null-prototype object), else null. */
export function entriesOf(v: unknown): Array<[unknown, unknown]> | null {
  if (v instanceof Map) return [...(v as Map<unknown, unknown>).entries()];
  if (v !== null && typeof v === 'object' && !Array.isArray(v) && !(v instanceof Uint8Array) && !(v instanceof Set)) {
    const proto = Object.getPrototypeOf(v) as unknown;
    if (proto === null || proto === Object.prototype) return Object.entries(v as Record<string, unknown>);
  }
  return null;
}

/**
 * A string that is equal for values Python hashes as the same dict key
 * (`1`, `1.0` and `True` alike); a TypeError-like Python exception for
 * unhashable values (lists, dicts, sets).
 */
export function hashKey(v: unknown): string {
  const key = rawKey(v);
  // V8 hashes a string over LONG_KEY_CHARS by its length alone, so a Map
  // compares each such key in full with every other of its length (a dict a
  // client fills with long keys would cost the square of their number): such
  // a key is kept as a SHA-256 digest instead.
  if (key.length <= LONG_KEY_CHARS) return key;
  // node:crypto on first use: importing it costs every program that imports billiard-ts milliseconds.
  return `H${process.getBuiltinModule('node:crypto').createHash('sha256').update(key).digest('base64')}`;
}

function rawKey(v: unknown): string {
  if (typeof v === 'string') return `s${v}`;
  const n = num(v);
  if (n !== null) {
    if (typeof n === 'bigint') return Number.isSafeInteger(Number(n)) ? `n${Number(n)}` : `n${n}`;
    return Object.is(n, -0) ? 'n0' : `n${n}`;
  }
  if (v === null || v === undefined) return 'N';
  if (v instanceof Uint8Array && !Object.prototype.hasOwnProperty.call(v, 'append')) return `b${Buffer.from(v).toString('hex')}`;
  if (v instanceof PyTuple) return `t(${v.map(hashKey).join(',')})`;
  if (v instanceof PyFrozenSet) return `f{${[...v].map(hashKey).sort().join(',')}}`;
  throw pyError('TypeError', `unhashable type: '${pyTypeName(v)}'`);
}

/** Python's type name of a wire value, for messages. */
export function pyTypeName(v: unknown): string {
  if (v === null || v === undefined) return 'NoneType';
  if (typeof v === 'boolean') return 'bool';
  if (typeof v === 'number') return Number.isInteger(v) ? 'int' : 'float';
  if (typeof v === 'bigint') return 'int';
  if (typeof v === 'string') return 'str';
  if (v instanceof PyFloat) return 'float';
  if (v instanceof PyTuple) return 'tuple';
  if (Array.isArray(v)) return 'list';
  if (v instanceof PyFrozenSet) return 'frozenset';
  if (v instanceof Set) return 'set';
  if (v instanceof Uint8Array) return 'bytes';
  if (entriesOf(v) !== null) return 'dict';
  return (v as object).constructor?.name ?? 'object';
}

function typeRank(v: unknown): string {
  if (num(v) !== null) return 'number';
  return pyTypeName(v);
}

/** Python's `a < b` ordering for sort: numbers, strings, bytes, and lists/tuples of them; TypeError otherwise. */
export function pyCompare(a: unknown, b: unknown): number {
  const ta = typeRank(a);
  const tb = typeRank(b);
  if (ta !== tb) throw pyError('TypeError', `'<' not supported between instances of '${pyTypeName(a)}' and '${pyTypeName(b)}'`);
  if (ta === 'number') {
    const x = num(a)!;
    const y = num(b)!;
    return x < y ? -1 : x > y ? 1 : 0;
  }
  if (ta === 'str') return (a as string) < (b as string) ? -1 : (a as string) > (b as string) ? 1 : 0;
  if (ta === 'bytes') return Buffer.compare(a as Uint8Array, b as Uint8Array);
  if (Array.isArray(a) && Array.isArray(b)) {
    for (let i = 0; i < Math.min(a.length, b.length); i++) {
      if (pyEquals(a[i], b[i])) continue;
      return pyCompare(a[i], b[i]);
    }
    return a.length - b.length;
  }
  throw pyError('TypeError', `'<' not supported between instances of '${pyTypeName(a)}' and '${pyTypeName(b)}'`);
}

/** A short Python-like repr, for `__repr__` and `debug_info`. */
export function pyRepr(v: unknown, depth = 0): string {
  if (depth > 20) return '...';
  if (v === null || v === undefined) return 'None';
  if (typeof v === 'boolean') return v ? 'True' : 'False';
  if (typeof v === 'number') return Number.isInteger(v) ? String(v) : Number.isNaN(v) ? 'nan' : !Number.isFinite(v) ? (v > 0 ? 'inf' : '-inf') : String(v);
  if (typeof v === 'bigint') return String(v);
  if (v instanceof PyFloat) return `${v.valueOf()}.0`.replace(/\.0\.0$/, '.0');
  if (typeof v === 'string') return `'${v.replace(/\\/g, '\\\\').replace(/'/g, "\\'").replace(/\n/g, '\\n')}'`;
  if (v instanceof PyTuple) return v.length === 1 ? `(${pyRepr(v[0], depth + 1)},)` : `(${v.map((x) => pyRepr(x, depth + 1)).join(', ')})`;
  if (Array.isArray(v)) return `[${v.map((x) => pyRepr(x, depth + 1)).join(', ')}]`;
  if (v instanceof Uint8Array) return `b'${[...v].map((c) => (c >= 32 && c < 127 && c !== 39 && c !== 92 ? String.fromCharCode(c) : `\\x${c.toString(16).padStart(2, '0')}`)).join('')}'`;
  if (v instanceof Set) return v.size === 0 ? 'set()' : `{${[...v].map((x) => pyRepr(x, depth + 1)).join(', ')}}`;
  const e = entriesOf(v);
  if (e !== null) return `{${e.map(([k, x]) => `${pyRepr(k, depth + 1)}: ${pyRepr(x, depth + 1)}`).join(', ')}}`;
  const r = (v as { pyRepr?: () => string }).pyRepr;
  if (typeof r === 'function') return r.call(v);
  return String(v);
}
