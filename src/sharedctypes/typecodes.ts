/**
 * The typecodes of `billiard.sharedctypes.typecode_to_type` (spec/api.md
 * §7.1), plus `q`/`Q` as multiprocessing 3.11 has them: for each, the C
 * type's size and alignment on LP64 Linux and macOS, the typed array that
 * reads it in native byte order, the ctypes class a shared object of it
 * pickles as (`ctypes.c_int`...), and how a JavaScript value is stored and
 * read back.
 *
 * Storing follows ctypes: no range checks, integers wrap modulo 2^bits
 * (`b` 200 reads -56, `I` -1 reads 4294967295), `f` rounds to binary32; a
 * value of the wrong type is a `TypeError` with ctypes' message. `l`, `L`,
 * `q` and `Q` read as `bigint`.
 *
 * Verified with billiard 4.1 on CPython 3.11 (fixtures/sharedctypes/):
 * `typecode_to_type[code].__name__` is the ctype name below, and
 * `ctypes.c_longlong is ctypes.c_long` on LP64, so `q` and `Q` pickle as
 * `ctypes.c_long` and `ctypes.c_ulong`, exactly as multiprocessing's do.
 */

import { floatRepr } from '../pickle/float-repr.js';
import { PyByteArray, PyFloat, PyTuple } from '../pickle/types.js';
import { OverflowError, TypeError, ValueError } from './errors.js';

/** A typecode of billiard's table (`c u b B h H i I l L f d`), or `q`/`Q` (8-byte long long). */
export type Typecode = 'c' | 'u' | 'b' | 'B' | 'h' | 'H' | 'i' | 'I' | 'l' | 'L' | 'q' | 'Q' | 'f' | 'd';

/** What reading an element of each typecode gives. */
export interface ValueOf {
  /** One byte, as Python's `bytes` of length 1. */
  c: Uint8Array;
  /** One character (one code point). */
  u: string;
  b: number;
  B: number;
  h: number;
  H: number;
  i: number;
  I: number;
  l: bigint;
  L: bigint;
  q: bigint;
  Q: bigint;
  f: number;
  d: number;
}

/** A Python int: a number that is an integer, a bigint, or a boolean (Python's `bool` is an `int`). */
export type IntLike = number | bigint | boolean;

/** What writing an element of each typecode accepts. */
export interface InputOf {
  /** A `Uint8Array` of length 1, or an int 0-255. */
  c: Uint8Array | number | bigint;
  /** A string of exactly one code point. */
  u: string;
  b: IntLike;
  B: IntLike;
  h: IntLike;
  H: IntLike;
  i: IntLike;
  I: IntLike;
  l: IntLike;
  L: IntLike;
  q: IntLike;
  Q: IntLike;
  /** A number, a `PyFloat`, or an int (a bigint too large for a double is an `OverflowError`). */
  f: number | PyFloat | bigint | boolean;
  d: number | PyFloat | bigint | boolean;
}

/** The typed array that views elements of each typecode in native byte order. */
export interface TypedArrayOf {
  c: Uint8Array;
  u: Uint32Array;
  b: Int8Array;
  B: Uint8Array;
  h: Int16Array;
  H: Uint16Array;
  i: Int32Array;
  I: Uint32Array;
  l: BigInt64Array;
  L: BigUint64Array;
  q: BigInt64Array;
  Q: BigUint64Array;
  f: Float32Array;
  d: Float64Array;
}

/** A typed array constructor, as the table holds them. */
export type TypedArrayConstructor =
  | Uint8ArrayConstructor
  | Int8ArrayConstructor
  | Int16ArrayConstructor
  | Uint16ArrayConstructor
  | Int32ArrayConstructor
  | Uint32ArrayConstructor
  | BigInt64ArrayConstructor
  | BigUint64ArrayConstructor
  | Float32ArrayConstructor
  | Float64ArrayConstructor;

/** One row of the table. */
export interface TypecodeInfo<T extends Typecode = Typecode> {
  readonly typecode: T;
  /** The ctypes class's name (`'c_int'`): a shared object pickles its type as the global `ctypes.<ctype>`. */
  readonly ctype: string;
  /** `sizeof` the C type, in bytes. */
  readonly size: number;
  /** The C type's alignment, in bytes. */
  readonly alignment: number;
  /** The typed array over elements of this type (native byte order). */
  readonly arrayType: TypedArrayConstructor;
  /**
   * Converts a JavaScript value to what the typed array stores (the typed
   * array then wraps it modulo 2^bits, or rounds it to binary32), throwing
   * ctypes' `TypeError` for a value of the wrong type.
   */
  store(value: unknown): number | bigint;
  /** Converts a stored element to the value reading gives. */
  load(stored: number | bigint): ValueOf[T];
  /** Python's `repr` of a value read (`5`, `b'a'`, `'x'`, `0.1`). */
  repr(value: ValueOf[T]): string;
}

/** The name of a value's Python type, for ctypes' messages. */
export function pyTypeName(value: unknown): string {
  if (value === null || value === undefined) return 'NoneType';
  switch (typeof value) {
    case 'boolean':
      return 'bool';
    case 'number':
      return Number.isInteger(value) ? 'int' : 'float';
    case 'bigint':
      return 'int';
    case 'string':
      return 'str';
    case 'function':
      return 'function';
    case 'symbol':
      return 'symbol';
    default:
      break;
  }
  if (value instanceof PyFloat) return 'float';
  if (value instanceof PyByteArray) return 'bytearray';
  if (value instanceof Uint8Array) return 'bytes';
  if (value instanceof PyTuple) return 'tuple';
  if (Array.isArray(value)) return 'list';
  if (value instanceof Map) return 'dict';
  const proto = Object.getPrototypeOf(value) as { constructor?: { name?: string } } | null;
  if (proto === null || proto === Object.prototype) return 'dict';
  return proto.constructor?.name || 'object';
}

/** An int for an integer type: a number that is an integer, a bigint or a boolean. */
function toInt(value: unknown): number | bigint {
  if (typeof value === 'number') {
    if (Number.isInteger(value)) return value;
  } else if (typeof value === 'bigint') {
    return value;
  } else if (typeof value === 'boolean') {
    return value ? 1 : 0;
  }
  throw new TypeError(`'${pyTypeName(value)}' object cannot be interpreted as an integer`);
}

/** Storing for an integer type of at most 32 bits: the typed array wraps a number itself. */
function storeSmallInt(bits: number, signed: boolean): (value: unknown) => number {
  return (value) => {
    const n = toInt(value);
    if (typeof n === 'number') return n;
    return Number(signed ? BigInt.asIntN(bits, n) : BigInt.asUintN(bits, n));
  };
}

/** Storing for a 64-bit integer type: a bigint, which the typed array wraps. */
function storeBigInt(value: unknown): bigint {
  const n = toInt(value);
  return typeof n === 'bigint' ? n : BigInt(n);
}

/** Storing for `f` and `d`: any real number (Python's `float()` of it). */
function storeFloat(value: unknown): number {
  if (typeof value === 'number') return value;
  if (value instanceof PyFloat) return value.value;
  if (typeof value === 'boolean') return value ? 1 : 0;
  if (typeof value === 'bigint') {
    const n = Number(value);
    if (!Number.isFinite(n)) throw new OverflowError('int too large to convert to float');
    return n;
  }
  throw new TypeError(`must be real number, not ${pyTypeName(value)}`);
}

const CHAR_EXPECTED = 'one character bytes, bytearray or integer expected';

/** Storing for `c`: a 1-byte `Uint8Array` or an int 0-255. */
function storeChar(value: unknown): number {
  if (value instanceof Uint8Array) {
    if (value.length === 1) return value[0]!;
  } else if (typeof value === 'number' || typeof value === 'bigint' || typeof value === 'boolean') {
    const n = typeof value === 'boolean' ? (value ? 1 : 0) : Number(value);
    if (Number.isInteger(n) && n >= 0 && n <= 255) return n;
  }
  throw new TypeError(CHAR_EXPECTED);
}

/** Storing for `u`: a string of one code point (a surrogate pair counts as one, a lone surrogate is kept). */
function storeWchar(value: unknown): number {
  if (typeof value !== 'string') throw new TypeError(`unicode string expected instead of ${pyTypeName(value)} instance`);
  const cp = value.codePointAt(0);
  if (cp === undefined || value.length !== (cp > 0xffff ? 2 : 1)) throw new TypeError('one character unicode string expected');
  return cp;
}

/** Reading `u`: the code point as a string; beyond U+10FFFF Python refuses, as here. */
export function wcharOf(cp: number): string {
  if (cp > 0x10ffff) throw new ValueError(`character U+${cp.toString(16)} is not in range [U+0000; U+10ffff]`);
  return String.fromCodePoint(cp);
}

/** Python's `repr` of a `bytes` value. */
export function bytesRepr(bytes: Uint8Array): string {
  let hasSingle = false;
  let hasDouble = false;
  for (const b of bytes) {
    if (b === 0x27) hasSingle = true;
    else if (b === 0x22) hasDouble = true;
  }
  const quote = hasSingle && !hasDouble ? '"' : "'";
  let out = `b${quote}`;
  for (const b of bytes) {
    if (b === 0x5c) out += '\\\\';
    else if (b === 0x09) out += '\\t';
    else if (b === 0x0a) out += '\\n';
    else if (b === 0x0d) out += '\\r';
    else if (b === quote.charCodeAt(0)) out += `\\${quote}`;
    else if (b < 0x20 || b >= 0x7f) out += `\\x${b.toString(16).padStart(2, '0')}`;
    else out += String.fromCharCode(b);
  }
  return out + quote;
}

/**
 * Python's `repr` of a `str`: quotes chosen as Python chooses them, escapes
 * for backslash, tab, newline, carriage return and the other control
 * characters. (Python also escapes the non-printable characters outside
 * ASCII by their Unicode category; this keeps them as they are, and
 * escapes only lone surrogates.)
 */
export function strRepr(s: string): string {
  const quote = s.includes("'") && !s.includes('"') ? '"' : "'";
  let out = quote;
  for (const ch of s) {
    const cp = ch.codePointAt(0)!;
    if (ch === '\\') out += '\\\\';
    else if (ch === '\t') out += '\\t';
    else if (ch === '\n') out += '\\n';
    else if (ch === '\r') out += '\\r';
    else if (ch === quote) out += `\\${quote}`;
    else if (cp < 0x20 || (cp >= 0x7f && cp <= 0xa0)) out += `\\x${cp.toString(16).padStart(2, '0')}`;
    else if (cp >= 0xd800 && cp <= 0xdfff) out += `\\u${cp.toString(16)}`;
    else out += ch;
  }
  return out + quote;
}

function intRow<T extends 'b' | 'B' | 'h' | 'H' | 'i' | 'I'>(typecode: T, ctype: string, arrayType: TypedArrayConstructor, bits: number, signed: boolean): TypecodeInfo<T> {
  return {
    typecode,
    ctype,
    size: bits / 8,
    alignment: bits / 8,
    arrayType,
    store: storeSmallInt(bits, signed),
    load: (stored) => stored as ValueOf[T],
    repr: (value) => String(value),
  };
}

function bigRow<T extends 'l' | 'L' | 'q' | 'Q'>(typecode: T, ctype: string, arrayType: TypedArrayConstructor): TypecodeInfo<T> {
  return {
    typecode,
    ctype,
    size: 8,
    alignment: 8,
    arrayType,
    store: storeBigInt,
    load: (stored) => stored as ValueOf[T],
    repr: (value) => String(value),
  };
}

function floatRow<T extends 'f' | 'd'>(typecode: T, ctype: string, arrayType: TypedArrayConstructor, size: number): TypecodeInfo<T> {
  return {
    typecode,
    ctype,
    size,
    alignment: size,
    arrayType,
    store: storeFloat,
    load: (stored) => stored as ValueOf[T],
    repr: (value) => floatRepr(value as number),
  };
}

/**
 * The table, by typecode (billiard's `typecode_to_type`, plus `q`/`Q`).
 * Sizes are those of LP64 (Linux, macOS): `l` and `L` are 8 bytes, `u`
 * (`wchar_t`) 4.
 */
export const TYPECODES: { readonly [T in Typecode]: TypecodeInfo<T> } = Object.freeze({
  c: {
    typecode: 'c',
    ctype: 'c_char',
    size: 1,
    alignment: 1,
    arrayType: Uint8Array,
    store: storeChar,
    load: (stored: number | bigint) => Uint8Array.of(Number(stored)),
    repr: (value: Uint8Array) => bytesRepr(value),
  },
  u: {
    typecode: 'u',
    ctype: 'c_wchar',
    size: 4,
    alignment: 4,
    arrayType: Uint32Array,
    store: storeWchar,
    load: (stored: number | bigint) => wcharOf(Number(stored)),
    repr: (value: string) => strRepr(value),
  },
  b: intRow('b', 'c_byte', Int8Array, 8, true),
  B: intRow('B', 'c_ubyte', Uint8Array, 8, false),
  h: intRow('h', 'c_short', Int16Array, 16, true),
  H: intRow('H', 'c_ushort', Uint16Array, 16, false),
  i: intRow('i', 'c_int', Int32Array, 32, true),
  I: intRow('I', 'c_uint', Uint32Array, 32, false),
  l: bigRow('l', 'c_long', BigInt64Array),
  L: bigRow('L', 'c_ulong', BigUint64Array),
  // ctypes.c_longlong is ctypes.c_long on LP64: its pickles say c_long.
  q: bigRow('q', 'c_long', BigInt64Array),
  Q: bigRow('Q', 'c_ulong', BigUint64Array),
  f: floatRow('f', 'c_float', Float32Array, 4),
  d: floatRow('d', 'c_double', Float64Array, 8),
});

/**
 * The row of a typecode. Anything else is what billiard raises for it:
 * `typecode_to_type.get(code, code)` hands the unknown code to
 * `ctypes.sizeof`, hence `TypeError('this type has no size')`.
 */
export function typecodeInfo(typecode: unknown): TypecodeInfo {
  if (typeof typecode === 'string' && Object.prototype.hasOwnProperty.call(TYPECODES, typecode)) {
    return TYPECODES[typecode as Typecode] as TypecodeInfo;
  }
  throw new TypeError('this type has no size');
}

/** The ctypes names a pickle may carry, to the typecode a child rebuilds them with. */
const BY_CTYPE: ReadonlyMap<string, Typecode> = new Map<string, Typecode>([
  ['c_char', 'c'],
  ['c_wchar', 'u'],
  ['c_byte', 'b'],
  ['c_ubyte', 'B'],
  ['c_short', 'h'],
  ['c_ushort', 'H'],
  ['c_int', 'i'],
  ['c_uint', 'I'],
  ['c_long', 'l'],
  ['c_ulong', 'L'],
  // Never written by CPython on LP64 (they are c_long/c_ulong there), but 8 bytes wherever they exist apart.
  ['c_longlong', 'q'],
  ['c_ulonglong', 'Q'],
  ['c_float', 'f'],
  ['c_double', 'd'],
]);

/** The typecode of the ctypes class `ctypes.<name>`, if the table has it. */
export function typecodeOfCtype(name: string): Typecode | undefined {
  return BY_CTYPE.get(name);
}
