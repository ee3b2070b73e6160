/**
 * Building blocks of the pickle fuzzer's inputs: the PRNG, the opcode table,
 * byte helpers, the loads() option bits, and `Gen`, which writes mostly
 * well-formed opcode programs. Pure functions of a PRNG stream: nothing here
 * imports the code under test.
 */

// ====================================================================== PRNG

/** 32-bit finalizer (murmur3 fmix). */
export function mix32(x: number): number {
  x = Math.imul(x ^ (x >>> 16), 0x85ebca6b);
  x = Math.imul(x ^ (x >>> 13), 0xc2b2ae35);
  return (x ^ (x >>> 16)) >>> 0;
}

/** sfc32, seeded from (seed, stream): every input index gets its own stream. */
export class Rng {
  #a: number;
  #b: number;
  #c: number;
  #d: number;
  constructor(seed: number, stream: number) {
    this.#a = mix32(seed ^ 0x9e3779b9);
    this.#b = mix32(stream + 0x7f4a7c15);
    this.#c = mix32(this.#a ^ mix32(stream ^ 0x632be5ab));
    this.#d = 1;
    for (let i = 0; i < 12; i++) this.u32();
  }
  u32(): number {
    const t = (((this.#a + this.#b) | 0) + this.#d) | 0;
    this.#d = (this.#d + 1) | 0;
    this.#a = this.#b ^ (this.#b >>> 9);
    this.#b = (this.#c + (this.#c << 3)) | 0;
    this.#c = (this.#c << 21) | (this.#c >>> 11);
    this.#c = (this.#c + t) | 0;
    return t >>> 0;
  }
  /** Uniform in [0, n). */
  int(n: number): number {
    return n <= 1 ? 0 : Math.floor((this.u32() / 4294967296) * n);
  }
  /** Uniform in [lo, hi]. */
  range(lo: number, hi: number): number {
    return lo + this.int(hi - lo + 1);
  }
  chance(p: number): boolean {
    return this.u32() / 4294967296 < p;
  }
  pick<T>(items: readonly T[]): T {
    return items[this.int(items.length)]!;
  }
  bytes(n: number): Uint8Array {
    const out = new Uint8Array(n);
    for (let i = 0; i < n; i++) out[i] = this.u32() & 0xff;
    return out;
  }
  /** Small sizes most of the time: 0..2^k-1 with k uniform in 0..maxBits. */
  size(maxBits: number): number {
    return this.int(2 ** this.int(maxBits + 1));
  }
}

// ====================================================================== opcodes

/** How an opcode's argument is laid out (spec/pickle.md section 2). */
export type ArgKind = 'none' | 'line' | 'line2' | 'u1' | 'u2' | 'i4' | 'u4' | 'f8' | 'u8' | 'len1' | 'len4' | 'len8';

export const OP_ARGS: ReadonlyMap<number, ArgKind> = new Map<number, ArgKind>([
  [0x28, 'none'], [0x2e, 'none'], [0x30, 'none'], [0x31, 'none'], [0x32, 'none'], // MARK STOP POP POP_MARK DUP
  [0x46, 'line'], [0x49, 'line'], [0x4a, 'i4'], [0x4b, 'u1'], [0x4c, 'line'], [0x4d, 'u2'], [0x4e, 'none'], // FLOAT INT BININT BININT1 LONG BININT2 NONE
  [0x50, 'line'], [0x51, 'none'], [0x52, 'none'], [0x53, 'line'], [0x54, 'len4'], [0x55, 'len1'], // PERSID BINPERSID REDUCE STRING BINSTRING SHORT_BINSTRING
  [0x56, 'line'], [0x58, 'len4'], [0x61, 'none'], [0x62, 'none'], [0x63, 'line2'], [0x64, 'none'], // UNICODE BINUNICODE APPEND BUILD GLOBAL DICT
  [0x7d, 'none'], [0x65, 'none'], [0x67, 'line'], [0x68, 'u1'], [0x69, 'line2'], [0x6a, 'u4'], // EMPTY_DICT APPENDS GET BINGET INST LONG_BINGET
  [0x6c, 'none'], [0x5d, 'none'], [0x6f, 'none'], [0x70, 'line'], [0x71, 'u1'], [0x72, 'u4'], // LIST EMPTY_LIST OBJ PUT BINPUT LONG_BINPUT
  [0x73, 'none'], [0x74, 'none'], [0x29, 'none'], [0x75, 'none'], [0x47, 'f8'], [0x80, 'u1'], // SETITEM TUPLE EMPTY_TUPLE SETITEMS BINFLOAT PROTO
  [0x81, 'none'], [0x82, 'u1'], [0x83, 'u2'], [0x84, 'i4'], [0x85, 'none'], [0x86, 'none'], [0x87, 'none'], // NEWOBJ EXT1 EXT2 EXT4 TUPLE1-3
  [0x88, 'none'], [0x89, 'none'], [0x8a, 'len1'], [0x8b, 'len4'], [0x42, 'len4'], [0x43, 'len1'], // NEWTRUE NEWFALSE LONG1 LONG4 BINBYTES SHORT_BINBYTES
  [0x8c, 'len1'], [0x8d, 'len8'], [0x8e, 'len8'], [0x8f, 'none'], [0x90, 'none'], [0x91, 'none'], // SHORT_BINUNICODE BINUNICODE8 BINBYTES8 EMPTY_SET ADDITEMS FROZENSET
  [0x92, 'none'], [0x93, 'none'], [0x94, 'none'], [0x95, 'u8'], [0x96, 'len8'], [0x97, 'none'], [0x98, 'none'], // NEWOBJ_EX STACK_GLOBAL MEMOIZE FRAME BYTEARRAY8 NEXT_BUFFER READONLY_BUFFER
]);

export const OPCODES: readonly number[] = [...OP_ARGS.keys()];

export const WIDTH: Partial<Record<ArgKind, number>> = { u1: 1, u2: 2, i4: 4, u4: 4, f8: 8, u8: 8, len1: 1, len4: 4, len8: 8 };

export enum Op {
  MARK = 0x28, STOP = 0x2e, POP = 0x30, POP_MARK = 0x31, DUP = 0x32, FLOAT = 0x46, INT = 0x49, BININT = 0x4a,
  BININT1 = 0x4b, LONG = 0x4c, BININT2 = 0x4d, NONE = 0x4e, PERSID = 0x50, BINPERSID = 0x51, REDUCE = 0x52,
  STRING = 0x53, BINSTRING = 0x54, SHORT_BINSTRING = 0x55, UNICODE = 0x56, BINUNICODE = 0x58, APPEND = 0x61,
  BUILD = 0x62, GLOBAL = 0x63, DICT = 0x64, EMPTY_DICT = 0x7d, APPENDS = 0x65, GET = 0x67, BINGET = 0x68,
  INST = 0x69, LONG_BINGET = 0x6a, LIST = 0x6c, EMPTY_LIST = 0x5d, OBJ = 0x6f, PUT = 0x70, BINPUT = 0x71,
  LONG_BINPUT = 0x72, SETITEM = 0x73, TUPLE = 0x74, EMPTY_TUPLE = 0x29, SETITEMS = 0x75, BINFLOAT = 0x47,
  PROTO = 0x80, NEWOBJ = 0x81, EXT1 = 0x82, EXT2 = 0x83, EXT4 = 0x84, TUPLE1 = 0x85, TUPLE2 = 0x86, TUPLE3 = 0x87,
  NEWTRUE = 0x88, NEWFALSE = 0x89, LONG1 = 0x8a, LONG4 = 0x8b, BINBYTES = 0x42, SHORT_BINBYTES = 0x43,
  SHORT_BINUNICODE = 0x8c, BINUNICODE8 = 0x8d, BINBYTES8 = 0x8e, EMPTY_SET = 0x8f, ADDITEMS = 0x90,
  FROZENSET = 0x91, NEWOBJ_EX = 0x92, STACK_GLOBAL = 0x93, MEMOIZE = 0x94, FRAME = 0x95, BYTEARRAY8 = 0x96,
  NEXT_BUFFER = 0x97, READONLY_BUFFER = 0x98,
}

/** One opcode of a byte string: [pos, end) including its argument. */
export interface OpSpan {
  pos: number;
  end: number;
  code: number;
  kind: ArgKind;
}

/** walk() results of the seed pickles, which are mutated over and over. */
export const walkCache = new WeakMap<Uint8Array, OpSpan[]>();

/** Splits `d` into opcodes, stopping at STOP, an unknown opcode or a truncated argument. */
export function walk(d: Uint8Array): OpSpan[] {
  const cached = walkCache.get(d);
  if (cached !== undefined) return cached;
  const ops: OpSpan[] = [];
  let p = 0;
  while (p < d.length) {
    const code = d[p]!;
    const kind = OP_ARGS.get(code);
    if (kind === undefined) break;
    let e = p + 1;
    if (kind === 'line' || kind === 'line2') {
      for (let k = kind === 'line' ? 1 : 2; k > 0 && e > 0; k--) e = d.indexOf(0x0a, e) + 1;
      if (e <= 0) break;
    } else if (kind !== 'none') {
      const w = WIDTH[kind]!;
      if (kind.startsWith('len') && e + w <= d.length) {
        let n = 0;
        for (let k = w - 1; k >= 0; k--) n = n * 256 + d[e + k]!;
        e += w + n;
      } else {
        e += w;
      }
    }
    if (e > d.length) break;
    ops.push({ pos: p, end: e, code, kind });
    p = e;
    if (code === Op.STOP) break;
  }
  if (d.length > 256) walkCache.set(d, ops);
  return ops;
}

// ====================================================================== bytes helpers

/** Inputs are clamped to this length. */
export const MAX_INPUT = 1 << 20;

export const enc = new TextEncoder();

export function concat(...parts: ReadonlyArray<Uint8Array | readonly number[]>): Uint8Array {
  let n = 0;
  for (const p of parts) n += p.length;
  const out = new Uint8Array(n);
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}

export function latin1(s: string): Uint8Array {
  const out = new Uint8Array(s.length);
  for (let i = 0; i < s.length; i++) out[i] = s.charCodeAt(i) & 0xff;
  return out;
}

export function hex(b: Uint8Array): string {
  return Buffer.from(b.buffer, b.byteOffset, b.byteLength).toString('hex');
}

/** Writes `v` (taken modulo 2^(8w)) little-endian at `at`. */
export function writeLE(d: Uint8Array, at: number, w: number, v: bigint): void {
  for (let k = 0; k < w && at + k < d.length; k++) d[at + k] = Number((v >> BigInt(8 * k)) & 0xffn);
}

export function le(w: number, v: number | bigint): Uint8Array {
  const out = new Uint8Array(w);
  writeLE(out, 0, w, BigInt(v));
  return out;
}

/** Python's encode_long: minimal little-endian two's complement. */
export function encodeLong(v: bigint): Uint8Array {
  if (v === 0n) return new Uint8Array(0);
  const out: number[] = [];
  let x = v;
  for (;;) {
    out.push(Number(x & 0xffn));
    x >>= 8n;
    const signBit = (out[out.length - 1]! & 0x80) !== 0;
    if ((x === 0n && !signBit) || (x === -1n && signBit)) break;
  }
  return Uint8Array.from(out);
}

// ====================================================================== options

/**
 * Options of one loads() call, as a bitmask (so it fits in shared memory and
 * in a finding file): see SPEC_BITS.
 */
export const SPEC_BITS = {
  dictsMap: 1 << 0,
  intsBigint: 1 << 1,
  strict: 1 << 2,
  /** bits 3-5: encoding, 0 = default, then ENCODINGS[n - 1] */
  encodingShift: 3,
  floatsWrap: 1 << 6,
  zeroCopy: 1 << 7,
  noFixImports: 1 << 8,
  buffers: 1 << 9,
  persistentLoad: 1 << 10,
  /** Pass the input as a view at an odd offset into a larger buffer. */
  offsetView: 1 << 11,
  /** Pass the input as a Node Buffer. */
  nodeBuffer: 1 << 12,
  /** A registry with extension codes (EXT1/EXT2/EXT4), see extRegistry(). */
  extRegistry: 1 << 13,
  /** Tiny maxLongDigits / maxLongBytes. */
  smallLimits: 1 << 14,
} as const;

/** Bits of SPEC_BITS that are loads() options (the others change how the input is passed). */
export const OPTION_MASK = 0x7ff | SPEC_BITS.extRegistry | SPEC_BITS.smallLimits;

export const ENCODINGS = ['ascii', 'latin1', 'utf-8', 'bytes'] as const;
export function randomSpec(r: Rng): number {
  if (r.chance(0.5)) return 0;
  // The four variations of the brief, one at a time, most of the time.
  if (r.chance(0.6)) return r.pick([SPEC_BITS.dictsMap, SPEC_BITS.intsBigint, SPEC_BITS.strict, 4 << SPEC_BITS.encodingShift]);
  let s = 0;
  for (const bit of [SPEC_BITS.dictsMap, SPEC_BITS.intsBigint, SPEC_BITS.strict, SPEC_BITS.floatsWrap, SPEC_BITS.zeroCopy,
    SPEC_BITS.noFixImports, SPEC_BITS.buffers, SPEC_BITS.persistentLoad, SPEC_BITS.offsetView, SPEC_BITS.nodeBuffer,
    SPEC_BITS.extRegistry, SPEC_BITS.smallLimits]) {
    if (r.chance(0.25)) s |= bit;
  }
  if (r.chance(0.5)) s |= r.range(1, ENCODINGS.length) << SPEC_BITS.encodingShift;
  return s;
}

// ====================================================================== generators

export const NAMES: readonly string[] = [
  'a', 'b', 'x', 'args', 'state', 'module', 'name', 'items', '__proto__', 'constructor', 'prototype', '__class__', '__dict__',
  '__setstate__', '__reduce__', '__reduce_ex__', 'toString', 'valueOf', 'hasOwnProperty', '__defineGetter__', 'polluted',
  'then', 'length', 'size', '0', '1', '01', '-1', '1.5', '4294967294', '4294967295', '9007199254740993', '', ' ', 'é',
  '\u{1F600}', 'pyType', 'listItems', 'dictItems', 'kwargs', 'callable', 'buffer', 'readonly', 'int', 'is_safe', 'utc',
];

/** Python globals: the registered ones (their handlers run), Python 2 names, and unknown or hostile ones. */
export const GLOBALS: ReadonlyArray<readonly [string, string]> = [
  ['builtins', 'set'], ['builtins', 'frozenset'], ['builtins', 'bytearray'], ['builtins', 'bytes'], ['builtins', 'complex'],
  ['builtins', 'slice'], ['builtins', 'range'], ['builtins', 'ValueError'], ['builtins', 'Exception'], ['builtins', 'KeyError'],
  ['builtins', 'OSError'], ['builtins', 'ExceptionGroup'], ['builtins', 'UnicodeDecodeError'], ['_codecs', 'encode'],
  ['copyreg', '_reconstructor'], ['copy_reg', '_reconstructor'], ['datetime', 'datetime'], ['datetime', 'date'],
  ['datetime', 'time'], ['datetime', 'timedelta'], ['datetime', 'timezone'], ['decimal', 'Decimal'],
  ['collections', 'OrderedDict'], ['collections', 'defaultdict'], ['collections', 'Counter'], ['collections', 'deque'],
  ['uuid', 'UUID'], ['__builtin__', 'set'], ['__builtin__', 'object'], ['__builtin__', 'unicode'], ['__builtin__', 'xrange'],
  ['exceptions', 'StandardError'], ['builtins', 'object'], ['builtins', 'getattr'], ['builtins', 'eval'], ['os', 'system'],
  ['__main__', 'Point'], ['a', 'b.c'], ['__proto__', 'constructor'], ['builtins', '__proto__'], ['Object', 'prototype'],
  ['builtins', 'dict'], ['builtins', 'list'], ['UserDict', 'UserDict'], ['', ''],
];

export const FLOAT_TEXTS: readonly string[] = [
  '0', '-0.0', '1.5', '2.0', 'nan', '-nan', 'inf', '-inf', 'Infinity', 'NaN', '1e308', '1e309', '-1e309', '1e-400', '4.9e-324',
  '0x1p3', '1_000.5', ' 1.0', '1.0 ', '', '.', '1e', '+1.5', '1.7976931348623157e308', '9007199254740993',
];

export const INT_TEXTS: readonly string[] = [
  '0', '1', '-1', '00', '01', '02', '+5', '-0', ' 5', '5 ', '5L', '0x10', '1_000', '', '-', '2147483647', '2147483648',
  '-2147483649', '9007199254740991', '9007199254740992', '-9007199254740993', '18446744073709551616', '١٢', '1'.repeat(4300),
  '1'.repeat(4301), '0'.repeat(5000) + '1',
];

export const INTS: readonly bigint[] = [
  0n, 1n, -1n, 127n, 128n, 255n, 256n, -128n, -129n, 65535n, 65536n, 2n ** 31n - 1n, -(2n ** 31n), 2n ** 31n, 2n ** 32n,
  2n ** 53n - 1n, 2n ** 53n, 2n ** 53n + 1n, -(2n ** 53n) - 1n, 2n ** 63n, -(2n ** 63n), 2n ** 64n, 10n ** 100n, -(10n ** 100n),
];

export const DOUBLES: readonly number[] = [0, -0, 1.5, 2, NaN, Infinity, -Infinity, 5e-324, Number.MAX_VALUE, 2 ** 53, 1e16, 0.1, -1];

/** Strings as UTF-8 bytes, some of them invalid. */
export const RAW_STRS: readonly Uint8Array[] = [
  Uint8Array.of(0xff), Uint8Array.of(0xc3), Uint8Array.of(0xed, 0xa0, 0x80), Uint8Array.of(0xf4, 0x90, 0x80, 0x80),
  Uint8Array.of(0xc0, 0x80), Uint8Array.of(0xe0, 0x80, 0x80), Uint8Array.of(0xf0, 0x9f, 0x98, 0x80), Uint8Array.of(0x61, 0x00, 0x62),
  Uint8Array.of(0xe2, 0x82), Uint8Array.of(0x0a), Uint8Array.of(0xed), Uint8Array.of(0xed, 0x9f), Uint8Array.of(0xe0, 0xa0),
  Uint8Array.of(0xe0, 0x9f), Uint8Array.of(0xf0, 0x90), Uint8Array.of(0xf0, 0x8f), Uint8Array.of(0xf4, 0x8f), Uint8Array.of(0xf4, 0x90),
  Uint8Array.of(0xf5), Uint8Array.of(0x80), Uint8Array.of(0xc2),
];

export const INTERESTING_BYTES: readonly number[] = [0x00, 0x01, 0x0a, 0x7f, 0x80, 0xfe, 0xff, ...OPCODES];

/** Builds opcode programs that are mostly well-formed, so they reach the deeper parts of the decoder. */
/** A growable byte buffer with the part of Array's interface Gen uses. */
export class ByteSink {
  #buf = new Uint8Array(256);
  #n = 0;
  get length(): number {
    return this.#n;
  }
  /** Appends bytes (each taken modulo 256). */
  push(...bytes: number[]): void {
    this.#ensure(bytes.length);
    for (const b of bytes) this.#buf[this.#n++] = b;
  }
  append(b: Uint8Array | readonly number[]): void {
    this.#ensure(b.length);
    if (b instanceof Uint8Array) this.#buf.set(b, this.#n);
    else for (let i = 0; i < b.length; i++) this.#buf[this.#n + i] = b[i]!;
    this.#n += b.length;
  }
  last(): number | undefined {
    return this.#n > 0 ? this.#buf[this.#n - 1] : undefined;
  }
  bytes(): Uint8Array {
    return this.#buf.slice(0, this.#n);
  }
  #ensure(k: number): void {
    if (this.#n + k <= this.#buf.length) return;
    const next = new Uint8Array(Math.max(this.#buf.length * 2, this.#n + k));
    next.set(this.#buf.subarray(0, this.#n));
    this.#buf = next;
  }
}

export class Gen {
  readonly out = new ByteSink();
  /** Memo slots written so far. */
  memo = 0;
  constructor(readonly r: Rng) {}

  emit(...bytes: number[]): void {
    this.out.push(...bytes);
  }
  raw(b: Uint8Array | readonly number[]): void {
    this.out.append(b);
  }
  line(s: string): void {
    this.raw(latin1(s));
    this.out.push(0x0a);
  }

  /** A length-prefixed payload, with a wrong length now and then. */
  sized(code: number, width: number, payload: Uint8Array): void {
    const n = this.r.chance(0.03) ? BigInt(payload.length + this.r.range(-2, 2)) : BigInt(payload.length);
    this.emit(code);
    this.raw(le(width, n));
    this.raw(payload);
  }

  str(s: string | Uint8Array): void {
    const r = this.r;
    const b = typeof s === 'string' ? enc.encode(s) : s;
    const k = r.int(10);
    if (k < 4 && b.length < 256) this.sized(Op.SHORT_BINUNICODE, 1, b);
    else if (k < 7) this.sized(Op.BINUNICODE, 4, b);
    else if (k < 8) this.sized(Op.BINUNICODE8, 8, b);
    else {
      // UNICODE: raw-unicode-escape text
      const text = typeof s === 'string' ? s : new TextDecoder().decode(s);
      let t = '';
      for (const ch of text) {
        const cp = ch.codePointAt(0)!;
        t += cp < 0x100 && ch !== '\\' && ch !== '\n' ? ch : cp < 0x10000 ? `\\u${cp.toString(16).padStart(4, '0')}` : `\\U${cp.toString(16).padStart(8, '0')}`;
      }
      if (r.chance(0.1)) t += r.pick(['\\u12', '\\U00110000', '\\\\u0041', '\\', '\\U0010ffff', '\\x41']);
      this.emit(Op.UNICODE);
      this.line(t);
    }
  }

  name(): string | Uint8Array {
    const r = this.r;
    if (r.chance(0.08)) return r.chance(0.5) ? r.pick(RAW_STRS) : concat(enc.encode(r.pick(NAMES)), r.pick(RAW_STRS));
    if (r.chance(0.05)) {
      // Long strings, some with an encoded surrogate (the decoder's slow path).
      const long = r.pick(['n', 'é', '日', '\u{1F600}', '\\', '\n']).repeat(r.size(14));
      return r.chance(0.3) ? concat(enc.encode(long), Uint8Array.of(0xed, 0xa0, 0x80)) : long;
    }
    return r.pick(NAMES);
  }

  int(): void {
    const r = this.r;
    const k = r.int(9);
    const v = r.chance(0.3) ? BigInt(r.int(300) - 20) : r.pick(INTS);
    if (k === 0) this.emit(Op.BININT1, Number(v & 0xffn));
    else if (k === 1) this.emit(Op.BININT2, Number(v & 0xffn), Number((v >> 8n) & 0xffn));
    else if (k === 2) { this.emit(Op.BININT); this.raw(le(4, v)); }
    else if (k === 3) this.sized(Op.LONG1, 1, r.chance(0.1) ? r.bytes(r.size(8)) : encodeLong(v));
    else if (k === 4) this.sized(Op.LONG4, 4, r.chance(0.2) ? r.bytes(r.size(10)) : encodeLong(v));
    else if (k === 5) { this.emit(Op.INT); this.line(r.chance(0.5) ? r.pick(INT_TEXTS) : String(v)); }
    else if (k === 6) { this.emit(Op.LONG); this.line(r.chance(0.5) ? r.pick(INT_TEXTS) : `${v}L`); }
    else this.emit(r.pick([Op.NEWTRUE, Op.NEWFALSE, Op.NONE]));
  }

  float(): void {
    const r = this.r;
    if (r.chance(0.5)) {
      this.emit(Op.BINFLOAT);
      if (r.chance(0.2)) this.raw(r.bytes(8));
      else {
        const b = new Uint8Array(8);
        new DataView(b.buffer).setFloat64(0, r.pick(DOUBLES), false);
        this.raw(b);
      }
    } else {
      this.emit(Op.FLOAT);
      this.line(r.pick(FLOAT_TEXTS));
    }
  }

  bytes(): void {
    const r = this.r;
    const payload = r.bytes(r.size(6));
    const k = r.int(9);
    if (k < 3 && payload.length < 256) this.sized(Op.SHORT_BINBYTES, 1, payload);
    else if (k < 4) this.sized(Op.BINBYTES, 4, payload);
    else if (k < 5) this.sized(Op.BINBYTES8, 8, payload);
    else if (k < 6) this.sized(Op.BYTEARRAY8, 8, payload);
    else if (k < 7) this.sized(r.pick([Op.SHORT_BINSTRING, Op.BINSTRING]), r.chance(0.5) && payload.length < 256 ? 1 : 4, payload);
    else if (k < 8) {
      // STRING: a quoted, escaped Python 2 str
      this.emit(Op.STRING);
      const q = r.chance(0.8) ? "'" : '"';
      let t = q;
      for (const b of payload) t += b >= 0x20 && b < 0x7f && b !== 0x5c && b !== 0x27 && b !== 0x22 ? String.fromCharCode(b) : `\\x${b.toString(16).padStart(2, '0')}`;
      if (r.chance(0.3)) t += r.pick(['\\\\', "\\'", '\\"', '\\n', '\\t', '\\r', '\\a', '\\b', '\\f', '\\v', '\\0', '\\12', '\\777', '\\q', '\\x4', '\\x4g']);
      if (r.chance(0.05)) t += '\\';
      this.line(r.chance(0.05) ? t : t + q);
    } else {
      // protocol 0-2 bytes: _codecs.encode(str, 'latin1')
      this.global(['_codecs', 'encode']);
      this.emit(Op.MARK);
      this.str(String.fromCharCode(...payload));
      this.str(r.pick(['latin1', 'latin-1', 'utf-8', 'ascii', 'utf-16', 'bogus']));
      this.emit(Op.TUPLE, Op.REDUCE);
    }
  }

  global(g?: readonly [string, string]): void {
    const r = this.r;
    const [mod, name] = g ?? r.pick(GLOBALS);
    const k = r.int(10);
    if (k < 5) {
      this.emit(Op.GLOBAL);
      this.line(mod);
      this.line(name);
    } else if (k < 9) {
      this.str(mod);
      this.str(name);
      this.emit(Op.STACK_GLOBAL);
    } else {
      const code = r.pick([Op.EXT1, Op.EXT2, Op.EXT4]);
      this.emit(code);
      this.raw(le(code === Op.EXT1 ? 1 : code === Op.EXT2 ? 2 : 4, r.pick(INTS)));
    }
  }

  memoize(): void {
    const r = this.r;
    const k = r.int(10);
    if (k < 5) this.emit(Op.MEMOIZE);
    else if (k < 8) this.emit(Op.BINPUT, this.memo);
    else if (k < 9) { this.emit(Op.LONG_BINPUT); this.raw(le(4, r.chance(0.9) ? this.memo : r.pick(INTS))); }
    else { this.emit(Op.PUT); this.line(r.chance(0.9) ? String(this.memo) : r.pick(INT_TEXTS)); }
    this.memo++;
  }

  memoGet(): void {
    const r = this.r;
    const idx = this.memo > 0 && r.chance(0.9) ? r.int(this.memo) : r.int(4);
    const k = r.int(6);
    if (k < 4) this.emit(Op.BINGET, idx);
    else if (k < 5) { this.emit(Op.LONG_BINGET); this.raw(le(4, idx)); }
    else { this.emit(Op.GET); this.line(String(idx)); }
  }

  /** Pushes items between MARK and a closing opcode. */
  items(n: number, depth: number, pairs: boolean): void {
    for (let i = 0; i < n; i++) {
      if (pairs) this.key(depth);
      this.value(depth);
    }
  }

  key(depth: number): void {
    const r = this.r;
    const k = r.int(10);
    if (k < 7) this.str(this.name());
    else if (k < 8) this.int();
    else if (k < 9) { this.int(); this.emit(Op.TUPLE1); }
    else this.value(depth);
  }

  /** Arguments for a global's handler: generic, or shaped for the handler. */
  args(g: readonly [string, string], depth: number): void {
    const r = this.r;
    this.emit(Op.MARK);
    if (r.chance(0.5)) {
      const [mod, name] = g;
      const fq = `${mod}.${name}`;
      if (fq === 'datetime.datetime' || fq === 'datetime.date' || fq === 'datetime.time') {
        const n = r.chance(0.8) ? { 'datetime.datetime': 10, 'datetime.date': 4, 'datetime.time': 6 }[fq]! : r.size(4);
        const b = r.bytes(n);
        if (r.chance(0.5) && n >= 4 && fq !== 'datetime.time') { b[0] = 0x07; b[1] = 0xe8; b[2] = r.range(0, 13); b[3] = r.range(0, 32); }
        if (r.chance(0.5)) this.sized(Op.SHORT_BINBYTES, 1, b);
        else this.str(String.fromCharCode(...b));
        if (r.chance(0.3)) this.value(depth);
      } else if (fq === 'collections.deque') {
        this.emit(Op.EMPTY_LIST, Op.MARK);
        this.items(r.int(6), depth, false);
        this.emit(Op.APPENDS);
        if (r.chance(0.8)) this.emit(Op.BININT1, r.int(4));
      } else if (fq === 'decimal.Decimal') {
        this.str(r.pick(['1.5', 'NaN', '-Infinity', '1e999999999', 'abc', '', ' 1', '1_0', 'sNaN123', '-0']));
      } else if (['builtins.range', 'builtins.slice', 'datetime.timedelta', 'builtins.complex'].includes(fq)) {
        for (let i = r.int(4); i > 0; i--) (r.chance(0.8) ? this.int() : this.float());
      } else if (fq === 'builtins.bytes' || fq === 'builtins.bytearray' || fq === '_codecs.encode') {
        const k = r.int(3);
        if (k === 0) this.int();
        else if (k === 1) { this.str(this.name()); this.str(r.pick(['latin1', 'utf-8', 'ascii', 'utf-16', 'bogus'])); }
        else this.value(depth);
      } else {
        this.items(r.int(3), depth, false);
      }
    } else {
      this.items(r.int(4), depth, false);
    }
    this.emit(Op.TUPLE);
  }

  /** Pushes one value (when nothing was mutated). */
  value(depth: number): void {
    const r = this.r;
    if (depth <= 0 || r.chance(0.3)) {
      const k = r.int(14);
      if (k < 3) this.int();
      else if (k < 4) this.float();
      else if (k < 7) this.str(this.name());
      else if (k < 9) this.bytes();
      else if (k < 10) this.global();
      else if (k < 12 && this.memo > 0) this.memoGet();
      else if (k < 13) this.emit(Op.EMPTY_TUPLE);
      else this.emit(r.pick([Op.EMPTY_LIST, Op.EMPTY_DICT, Op.EMPTY_SET]));
      return;
    }
    const d = depth - 1;
    const n = r.size(3);
    switch (r.int(17)) {
      case 0: // list
        this.emit(Op.EMPTY_LIST);
        if (r.chance(0.5)) this.memoize();
        if (r.chance(0.5)) { this.emit(Op.MARK); this.items(n, d, false); this.emit(Op.APPENDS); }
        else for (let i = 0; i < n; i++) { this.value(d); this.emit(Op.APPEND); }
        return;
      case 1: // LIST / TUPLE / FROZENSET from a MARK
        this.emit(Op.MARK);
        this.items(n, d, false);
        this.emit(r.pick([Op.LIST, Op.TUPLE, Op.FROZENSET]));
        break;
      case 2: { // TUPLE1-3
        const k = r.range(1, 3);
        this.items(k, d, false);
        this.emit(Op.TUPLE1 + k - 1);
        break;
      }
      case 3: // dict
      case 4:
        this.emit(Op.EMPTY_DICT);
        if (r.chance(0.6)) this.memoize();
        if (r.chance(0.6)) { this.emit(Op.MARK); this.items(n, d, true); this.emit(Op.SETITEMS); }
        else for (let i = 0; i < n; i++) { this.key(d); this.value(d); this.emit(Op.SETITEM); }
        return;
      case 5: // DICT from a MARK
        this.emit(Op.MARK);
        this.items(n, d, true);
        this.emit(Op.DICT);
        break;
      case 6: // set
        this.emit(Op.EMPTY_SET);
        if (r.chance(0.5)) this.memoize();
        this.emit(Op.MARK);
        this.items(n, d, false);
        this.emit(Op.ADDITEMS);
        return;
      case 7: // REDUCE
      case 8: {
        const g = r.pick(GLOBALS);
        this.global(g);
        this.args(g, d);
        this.emit(Op.REDUCE);
        break;
      }
      case 9: { // NEWOBJ / NEWOBJ_EX
        const g = r.pick(GLOBALS);
        this.global(g);
        this.args(g, d);
        if (r.chance(0.5)) this.emit(Op.NEWOBJ);
        else { this.emit(Op.EMPTY_DICT, Op.MARK); this.items(r.int(3), d, true); this.emit(Op.SETITEMS, Op.NEWOBJ_EX); }
        break;
      }
      case 10: { // OBJ / INST
        const g = r.pick(GLOBALS);
        this.emit(Op.MARK);
        if (r.chance(0.5)) {
          this.global(g);
          this.items(r.int(3), d, false);
          this.emit(Op.OBJ);
        } else {
          this.items(r.int(3), d, false);
          this.emit(Op.INST);
          this.line(g[0]);
          this.line(g[1]);
        }
        break;
      }
      case 11: { // BUILD on a fresh object: state is a dict, (None, dict), (dict, dict) or anything
        const g = r.pick(GLOBALS);
        this.global(g);
        this.args(g, d);
        this.emit(r.chance(0.7) ? Op.REDUCE : Op.NEWOBJ);
        if (r.chance(0.3)) this.memoize();
        const k = r.int(4);
        if (k < 2) { this.emit(Op.EMPTY_DICT, Op.MARK); this.items(n, d, true); this.emit(Op.SETITEMS); }
        else if (k < 3) { this.emit(r.pick([Op.NONE, Op.EMPTY_DICT])); this.emit(Op.EMPTY_DICT, Op.MARK); this.items(n, d, true); this.emit(Op.SETITEMS, Op.TUPLE2); }
        else this.value(d);
        this.emit(Op.BUILD);
        break;
      }
      case 12: // change a memoized object after others took references to it
      case 13: {
        if (this.memo === 0) { this.int(); return; }
        this.memoGet();
        const k = r.int(6);
        if (k === 0) { this.key(d); this.value(d); this.emit(Op.SETITEM); }
        else if (k === 1) { this.emit(Op.MARK); this.items(r.range(1, 3), d, true); this.emit(Op.SETITEMS); }
        else if (k === 2) { this.value(d); this.emit(Op.APPEND); }
        else if (k === 3) { this.emit(Op.MARK); this.items(r.range(1, 3), d, false); this.emit(r.pick([Op.APPENDS, Op.ADDITEMS])); }
        else if (k === 4) { this.value(d); this.emit(Op.BUILD); }
        else { this.emit(Op.DUP, Op.TUPLE2); }
        return;
      }
      case 14: // shared reference: (v, v)
        this.value(d);
        this.emit(Op.DUP, Op.TUPLE2);
        break;
      case 15: // persistent ids and out-of-band buffers
        if (r.chance(0.3)) { this.emit(Op.PERSID); this.line(r.pick(['x', 'boom', '', 'é'])); }
        else if (r.chance(0.5)) { this.value(d); this.emit(Op.BINPERSID); }
        else {
          if (r.chance(0.3)) {
            this.emit(Op.MARK);
            for (let k = r.range(2, 6); k > 0; k--) this.emit(Op.NEXT_BUFFER);
            this.emit(Op.TUPLE);
          } else if (r.chance(0.5)) this.emit(Op.NEXT_BUFFER);
          else this.bytes();
          if (r.chance(0.7)) this.emit(Op.READONLY_BUFFER);
        }
        break;
      default: { // now and then, deep nesting: [[[...]]], ((((None,),),),), {'k': {'k': ...}}
        if (r.chance(0.85)) { this.memoGet(); return; }
        const n = r.pick([100, 1000, 10_000, 50_000]);
        const kind = r.int(3);
        const open = kind === 0 ? [Op.EMPTY_LIST] : kind === 1 ? [Op.MARK] : [Op.EMPTY_DICT, Op.SHORT_BINUNICODE, 1, 0x6b];
        const close = kind === 0 ? Op.APPEND : kind === 1 ? r.pick([Op.TUPLE, Op.LIST, Op.FROZENSET]) : Op.SETITEM;
        for (let i = 0; i < n; i++) this.raw(open);
        if (kind !== 0) this.emit(Op.NONE);
        for (let i = kind === 0 ? 1 : 0; i < n; i++) this.emit(close);
        return;
      }
    }
    if (r.chance(0.3)) this.memoize();
  }
}

/** A whole generated pickle: PROTO, maybe FRAME, one or more values, STOP. */
export function genProgram(r: Rng): Uint8Array {
  const proto = r.chance(0.95) ? r.int(6) : r.pick([6, 255]);
  const g = new Gen(r);
  if (proto >= 2 || r.chance(0.1)) g.emit(Op.PROTO, proto);
  const framed = proto >= 4 && r.chance(0.5);
  const frameAt = g.out.length;
  if (framed) g.raw([Op.FRAME, 0, 0, 0, 0, 0, 0, 0, 0]);
  const body = g.out.length;
  g.value(r.int(5));
  for (let extra = r.chance(0.15) ? r.range(1, 3) : 0; extra > 0; extra--) {
    g.value(r.int(3));
    g.emit(r.pick([Op.POP, Op.TUPLE2, Op.APPEND, Op.BUILD]));
  }
  g.emit(Op.STOP);
  const out = g.out.bytes();
  if (framed) writeLE(out, frameAt + 1, 8, r.chance(0.9) ? BigInt(out.length - body) : interesting(r, 8, out.length - body));
  return out;
}

/** One opcode with a plausible random argument. */
export function genRawOp(r: Rng): Uint8Array {
  const code = r.chance(0.95) ? r.pick(OPCODES) : r.int(256);
  const kind = OP_ARGS.get(code) ?? 'none';
  switch (kind) {
    case 'none': return Uint8Array.of(code);
    case 'line': {
      const text = code === Op.FLOAT ? r.pick(FLOAT_TEXTS) : code === Op.INT || code === Op.LONG || code === Op.GET || code === Op.PUT
        ? r.pick(INT_TEXTS.filter((t) => t.length < 100)) : r.chance(0.5) ? r.pick(NAMES) : `'${r.pick(NAMES)}'`;
      return concat([code], latin1(text), [0x0a]);
    }
    case 'line2': {
      const [m, n] = r.pick(GLOBALS);
      return concat([code], latin1(m), [0x0a], latin1(n), [0x0a]);
    }
    case 'len1': case 'len4': case 'len8': {
      const w = WIDTH[kind]!;
      const payload = r.chance(0.5) ? enc.encode(r.pick(NAMES)) : r.bytes(r.size(5));
      const n = r.chance(0.85) ? BigInt(payload.length) : interesting(r, w, payload.length);
      return concat([code], le(w, n), payload);
    }
    default: {
      const w = WIDTH[kind]!;
      return concat([code], r.chance(0.5) ? le(w, interesting(r, w, 0)) : r.bytes(w));
    }
  }
}

/** A length or index value that sits on a boundary for a field of `w` bytes. */
export function interesting(r: Rng, w: number, remaining: number): bigint {
  const bits = BigInt(8 * w);
  const rem = BigInt(Math.max(0, remaining));
  const vals: bigint[] = [0n, 1n, 2n, rem, rem + 1n, rem + 2n, rem > 0n ? rem - 1n : 0n, (1n << bits) - 1n, 1n << (bits - 1n), (1n << (bits - 1n)) - 1n];
  if (w >= 4) vals.push(0x1fffffe8n, 0x1fffffe9n, 0x10000n, 0xfffffffen);
  if (w >= 8) vals.push(2n ** 32n, 2n ** 53n - 1n, 2n ** 53n, 0x1fffff_ffffffffn, 0x200000_00000000n, 0xffffffff_00000000n);
  if (w === 2) vals.push(0x100n, 0x8000n);
  return r.pick(vals);
}

