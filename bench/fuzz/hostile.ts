/**
 * Generators aimed at resource bugs: the inputs a mutation fuzzer almost
 * never writes, because one field has to hold an extreme value and the
 * rest of the pickle has to be well formed for that value to matter.
 *
 * - `memo-huge`: memo indexes near 2**8, 2**16, 2**20, 2**24, 2**27, 2**31 and
 *   2**32 (PUT, BINPUT, LONG_BINPUT, MEMOIZE; GET, BINGET, LONG_BINGET), mixed
 *   with the dict-representation restart: a dict shared through DUP or the
 *   memo that then gets a key an object cannot hold, so the unpickler runs
 *   the load again with that dict made a PyDict (issue 7 item 2).
 * - `huge-length`: extreme declared lengths in every opcode that carries one
 *   (BINUNICODE, BINUNICODE8, BINBYTES, BINBYTES8, SHORT_*, BYTEARRAY8,
 *   BINSTRING, LONG1, LONG4, FRAME), with short, exact and off-by-one
 *   payloads, and very long text arguments.
 * - `huge-repeat`: huge repeat counts and batch sizes: marks, APPENDS /
 *   SETITEMS / ADDITEMS batches, DUP, MEMOIZE, deep nesting, shared
 *   references, many dict conversions.
 * - `handler-call`: every registered stdlib global (the default registry's,
 *   enumerated at start) called through REDUCE, NEWOBJ, NEWOBJ_EX, OBJ, INST
 *   and copyreg, with extreme arguments: ints near 2**20, 2**31, 2**53,
 *   negative, huge strings and bytes, wrong types, nested calls; BUILD states.
 * - `handler-bomb`: one handler call memoized and repeated up to a thousand
 *   times (5 bytes per call), the shape of the `bytearray(2**20)`
 *   amplification (issue 7 item 4).
 * - `hash-flood`: dicts and sets of number or bigint keys that share one
 *   bucket of V8's hash table (maxHashCollisions).
 */

import { collidingKeys } from '../../test/helpers/v8-collisions.js';
import { ByteSink, DOUBLES, enc, encodeLong, Gen, INTS, latin1, le, MAX_INPUT, NAMES, Op, type Rng } from './core.js';

/** A registered global, as the registry under test lists it. */
export interface HandlerInfo {
  module: string;
  name: string;
  /** Registered with registerException (all of them have call and newobj). */
  exception: boolean;
}

export interface Hostile {
  input: Uint8Array;
  /** Generator family (the first word) and what it chose. */
  how: string;
}

/** Room left for payloads under MAX_INPUT. */
const BUDGET = MAX_INPUT - 4096;

// ====================================================================== values

const MEMO_BASES: readonly number[] = [2 ** 8, 2 ** 16, 2 ** 20, 2 ** 24, 2 ** 27, 2 ** 28, 2 ** 30, 2 ** 31, 2 ** 32];
const MEMO_DELTAS: readonly number[] = [-17, -16, -2, -1, 0, 1, 2, 1024, 1025];
/** PUT/GET arguments beyond LONG_BINPUT's range. */
const HUGE_INDEX_TEXTS: readonly string[] = [
  '4294967295', '4294967296', '9007199254740991', '9007199254740993', '18446744073709551616', `1${'0'.repeat(30)}`,
  `${'0'.repeat(20)}1`, '2147483648',
];

function hugeIndex(r: Rng): number {
  if (r.chance(0.15)) return r.pick([0xfffffff0, 0xffffffff, 0xfffffffe]);
  return Math.min(0xffffffff, Math.max(0, r.pick(MEMO_BASES) + r.pick(MEMO_DELTAS)));
}

/** Ints that are sizes, counts or offsets to a handler. */
const SIZE_INTS: readonly bigint[] = [
  2n ** 20n - 1n, 2n ** 20n, 2n ** 20n + 1n, 2n ** 16n, 2n ** 24n, 2n ** 28n, 2n ** 31n - 1n, 2n ** 31n, 2n ** 32n, 2n ** 53n - 1n, 2n ** 53n,
  2n ** 53n + 1n, 2n ** 64n, -1n, -(2n ** 20n), -(2n ** 31n), -(2n ** 53n), -(2n ** 64n), 0n, 255n, 256n, 10n ** 100n,
];

/** A declared length for a field of `w` bytes (taken modulo 2**(8w), so some are negative to a signed field). */
function hugeLength(r: Rng, w: number): bigint {
  if (w === 1) return BigInt(r.pick([0x7f, 0x80, 0xfe, 0xff]));
  const vals: bigint[] = [
    2n ** 31n - 1n, 2n ** 31n, 2n ** 31n + 1n, 2n ** 32n - 1n, 2n ** 32n - 2n, 2n ** 28n, 0x1fffffe8n, 0x1fffffe9n, 2n ** 29n, 2n ** 30n,
    2n ** 30n - 1n, 2n ** 20n, 2n ** 20n + 1n, 2n ** 24n,
  ];
  if (w === 8) vals.push(2n ** 32n, 2n ** 32n + 1n, 2n ** 40n, 2n ** 53n - 1n, 2n ** 53n, 2n ** 53n + 1n, 2n ** 62n, 2n ** 63n - 1n, 2n ** 63n, 2n ** 64n - 1n);
  return r.pick(vals);
}

/** `n` bytes of one of a few patterns (ASCII, zeros, 0xff, UTF-8 two, three and four byte forms, encoded surrogates, random). */
function pattern(r: Rng, n: number): Uint8Array {
  const k = r.int(8);
  if (k === 7) return n <= 4096 ? r.bytes(n) : tile(r.bytes(4096), n);
  const unit = [[0x61], [0x00], [0xff], [0xc3, 0xa9], [0xe6, 0x97, 0xa5], [0xf0, 0x9f, 0x98, 0x80], [0xed, 0xa0, 0x80]][k]!;
  return tile(Uint8Array.from(unit), n);
}

function tile(unit: Uint8Array, n: number): Uint8Array {
  const out = new Uint8Array(n);
  for (let i = 0; i < n; i++) out[i] = unit[i % unit.length]!;
  return out;
}

/** Pushes an int with one of the opcodes that can carry it. */
function pushInt(g: Gen, v: bigint): void {
  const r = g.r;
  const k = r.int(10);
  if (k < 7 && v >= 0n && v < 256n) g.emit(Op.BININT1, Number(v));
  else if (k < 7 && v >= -(2n ** 31n) && v < 2n ** 31n) { g.emit(Op.BININT); g.raw(le(4, v)); }
  else if (k < 9) { const b = encodeLong(v); g.emit(Op.LONG1, b.length); g.raw(b); }
  else { g.emit(r.chance(0.5) ? Op.INT : Op.LONG); g.line(r.chance(0.5) ? String(v) : `${v}L`); }
}

/** Pushes a str of about `n` UTF-8 bytes. */
function pushBigStr(g: Gen, n: number): void {
  const r = g.r;
  const unit = r.pick(['a', 'é', '日', '\u{1F600}', '\\', "'", '\n', '\u0000']);
  const s = unit.repeat(Math.max(0, Math.floor(n / enc.encode(unit).length)));
  const b = enc.encode(s);
  const k = r.int(10);
  if (k < 6) { g.emit(Op.BINUNICODE); g.raw(le(4, b.length)); g.raw(b); }
  else if (k < 8) { g.emit(Op.BINUNICODE8); g.raw(le(8, b.length)); g.raw(b); }
  else g.str(s);
}

function pushBigBytes(g: Gen, n: number): void {
  const r = g.r;
  const b = pattern(r, n);
  const k = r.int(4);
  if (k === 0 && n < 256) { g.emit(Op.SHORT_BINBYTES, n); g.raw(b); }
  else if (k <= 1) { g.emit(Op.BINBYTES); g.raw(le(4, n)); g.raw(b); }
  else if (k === 2) { g.emit(Op.BINBYTES8); g.raw(le(8, n)); g.raw(b); }
  else { g.emit(Op.BYTEARRAY8); g.raw(le(8, n)); g.raw(b); }
}

/**
 * A size from three tiers: small (80%), medium (18%) and large (2%). Large
 * inputs cost milliseconds each to build and to load, so they are kept rare;
 * the bugs this file is after come from declared values, not from bulk.
 */
function tier(r: Rng, small: readonly number[], medium: readonly number[], large: readonly number[], pMedium = 18, pLarge = 2): number {
  const x = r.int(100);
  return r.pick(x < 100 - pMedium - pLarge ? small : x < 100 - pLarge ? medium : large);
}

/** A size for a payload (bounded by what is left of the budget). */
function payloadSize(g: Gen): number {
  const r = g.r;
  const room = Math.max(0, BUDGET - g.out.length);
  const n = tier(r, [0, 1, 255, 256, 4096], [65536], [262144, 1 << 20]);
  return Math.min(n, Math.floor(room / 2));
}

// ====================================================================== memo-huge

function putOp(g: Gen, idx: number): string {
  const r = g.r;
  const k = r.int(20);
  if (k < 10) { g.emit(Op.LONG_BINPUT); g.raw(le(4, idx)); return `LONG_BINPUT ${idx}`; }
  if (k < 15) { g.emit(Op.PUT); g.line(String(idx)); return `PUT ${idx}`; }
  if (k < 16) { g.emit(Op.BINPUT, idx & 0xff); return `BINPUT ${idx & 0xff}`; }
  if (k < 18) {
    // An explicit huge PUT, then MEMOIZE (which writes at the count of filled slots).
    g.emit(Op.LONG_BINPUT); g.raw(le(4, idx)); g.emit(Op.MEMOIZE);
    return `LONG_BINPUT ${idx}+MEMOIZE`;
  }
  const t = r.pick(HUGE_INDEX_TEXTS);
  g.emit(Op.PUT); g.line(t);
  return `PUT ${t.length > 24 ? `${t.slice(0, 20)}...` : t}`;
}

function getOp(g: Gen, idx: number): string {
  const k = g.r.int(10);
  if (k < 5) { g.emit(Op.LONG_BINGET); g.raw(le(4, idx)); return 'LONG_BINGET'; }
  if (k < 8) { g.emit(Op.GET); g.line(String(idx)); return 'GET'; }
  g.emit(Op.BINGET, idx & 0xff);
  return 'BINGET';
}

/** Pushes a dict key an object dict cannot hold in order. */
function nonStrKey(g: Gen): string {
  const r = g.r;
  const k = r.int(8);
  if (k < 3) { g.emit(Op.BININT1, r.int(256)); return 'int-key'; }
  if (k < 4) { g.emit(Op.NONE); return 'None-key'; }
  if (k < 5) { g.emit(Op.EMPTY_TUPLE); return 'tuple-key'; }
  if (k < 6) { g.emit(Op.BINFLOAT); g.raw(le(8, 0x7ff8000000000000n)); return 'NaN-key'; }
  if (k < 7) { g.emit(Op.SHORT_BINBYTES, 1, 0x61); return 'bytes-key'; }
  g.str(r.pick(['0', '1', '7', '4294967294', '42']));
  return 'index-str-key';
}

/**
 * A container memoized at a huge index, shared (DUP, or POP and read back
 * from the memo), then given a non-string key: the restart path of
 * `#convertDict`. Some parts leave one of the steps out, or change the order.
 */
export function genMemoHuge(r: Rng): Hostile {
  const g = new Gen(r);
  const proto = r.pick([0, 1, 2, 2, 3, 4, 4, 5]);
  if (proto >= 2 || r.chance(0.2)) g.emit(Op.PROTO, proto);
  const wrap = r.chance(0.2);
  if (wrap) g.emit(Op.MARK);
  if (r.chance(0.3)) {
    // A few ordinary memo slots first.
    for (let n = r.range(1, 3); n > 0; n--) {
      g.value(1);
      g.memoize();
      g.emit(Op.POP);
    }
  }
  const parts = r.chance(0.8) ? 1 : r.range(2, 9);
  const how: string[] = [];
  for (let p = 0; p < parts; p++) {
    const idx = hugeIndex(r);
    const c = r.int(10);
    if (c < 6) g.emit(Op.EMPTY_DICT);
    else if (c < 7) { g.emit(Op.MARK); g.str(g.name()); g.value(0); g.emit(Op.DICT); }
    else if (c < 8) { g.emit(Op.EMPTY_DICT, Op.MARK); g.str('a'); g.value(0); g.emit(Op.SETITEMS); }
    else if (c < 9) g.emit(r.pick([Op.EMPTY_LIST, Op.EMPTY_SET]));
    else g.value(1);
    const put = putOp(g, idx);
    const escapeFirst = r.chance(0.8);
    let escape = 'no-share';
    let key = 'no-key';
    const share = (): void => {
      const e = r.int(10);
      if (e < 3) { g.emit(Op.DUP); escape = 'DUP'; }
      else if (e < 7) { g.emit(Op.POP); escape = `POP+${getOp(g, idx)}`; }
      else if (e < 8) { g.emit(Op.EMPTY_LIST); escape = `list+${getOp(g, idx)}`; g.emit(Op.APPEND, Op.POP); }
    };
    const mutate = (): void => {
      const k = r.int(10);
      if (k < 5) { key = nonStrKey(g); g.value(0); g.emit(Op.SETITEM); }
      else if (k < 7) { g.emit(Op.MARK); g.str('s'); g.value(0); key = nonStrKey(g); g.value(0); g.emit(Op.SETITEMS); }
      else if (k < 9) { g.str(g.name()); g.value(0); g.emit(Op.SETITEM); key = 'str-key'; }
    };
    if (escapeFirst) { share(); mutate(); } else { mutate(); share(); }
    if (r.chance(0.3)) getOp(g, idx);
    how.push(`${put} ${escape} ${key}`);
  }
  const end = r.int(10);
  if (wrap) g.emit(Op.TUPLE);
  else if (end < 2) g.emit(Op.POP);
  g.emit(Op.STOP);
  return { input: g.out.bytes(), how: `memo-huge p${proto} ${how.join('; ')}` };
}

// ====================================================================== huge-length

type LengthOp = readonly [code: number, width: 1 | 4 | 8, name: string];

const LENGTH_OPS: readonly LengthOp[] = [
  [Op.BINUNICODE, 4, 'BINUNICODE'], [Op.BINUNICODE8, 8, 'BINUNICODE8'], [Op.BINBYTES, 4, 'BINBYTES'], [Op.BINBYTES8, 8, 'BINBYTES8'],
  [Op.SHORT_BINUNICODE, 1, 'SHORT_BINUNICODE'], [Op.SHORT_BINBYTES, 1, 'SHORT_BINBYTES'], [Op.SHORT_BINSTRING, 1, 'SHORT_BINSTRING'],
  [Op.BINSTRING, 4, 'BINSTRING'], [Op.BYTEARRAY8, 8, 'BYTEARRAY8'], [Op.LONG1, 1, 'LONG1'], [Op.LONG4, 4, 'LONG4'], [Op.FRAME, 8, 'FRAME'],
];

const LINE_OPS: ReadonlyArray<readonly [number, string]> = [
  [Op.INT, 'INT'], [Op.LONG, 'LONG'], [Op.FLOAT, 'FLOAT'], [Op.UNICODE, 'UNICODE'], [Op.STRING, 'STRING'], [Op.GLOBAL, 'GLOBAL'],
  [Op.INST, 'INST'], [Op.PUT, 'PUT'], [Op.GET, 'GET'], [Op.PERSID, 'PERSID'],
];

/** One text argument of about `n` characters, shaped for the opcode. */
function longLine(r: Rng, code: number, n: number): Uint8Array {
  switch (code) {
    case Op.INT: case Op.LONG: case Op.PUT: case Op.GET:
      return latin1((r.chance(0.2) ? '-' : '') + r.pick(['1', '0', '9']).repeat(n) + (code === Op.LONG && r.chance(0.5) ? 'L' : ''));
    case Op.FLOAT: return latin1(r.pick(['1', '0', '9']).repeat(n) + r.pick(['', '.5', 'e5', 'e-400']));
    case Op.UNICODE: return latin1(r.pick(['a', '\\u00e9', '\\U0001f600', '\\ud800', 'é']).repeat(Math.ceil(n / 6)));
    case Op.STRING: return latin1(`'${r.pick(['a', '\\x41', '\\\\', '\\n', '\\777']).repeat(Math.ceil(n / 4))}'`);
    default: return latin1(r.pick(['a', 'builtins', '.', 'é']).repeat(Math.ceil(n / 8)));
  }
}

export function genHugeLength(r: Rng): Hostile {
  const g = new Gen(r);
  const proto = r.pick([1, 2, 3, 4, 4, 5, 5]);
  g.emit(Op.PROTO, proto);
  const framed = proto >= 4 && r.chance(0.3);
  const frameAt = g.out.length;
  if (framed) g.raw([Op.FRAME, 0, 0, 0, 0, 0, 0, 0, 0]);
  const body = g.out.length;
  let how: string;
  if (r.chance(0.2)) {
    // A very long text argument.
    const [code, name] = r.pick(LINE_OPS);
    const n = Math.min(tier(r, [4301, 8192], [65536], [262144, 1 << 20]), BUDGET);
    if (code === Op.INST || code === Op.PUT) g.emit(code === Op.INST ? Op.MARK : Op.NONE);
    g.emit(code);
    g.raw(longLine(r, code, n));
    g.emit(0x0a);
    if (code === Op.GLOBAL || code === Op.INST) g.line(r.chance(0.5) ? 'x' : 'a'.repeat(Math.min(n, 65536)));
    if (code === Op.PUT) g.emit(Op.POP);
    how = `huge-length line ${name} ${n}`;
  } else {
    const [code, width, name] = r.pick(LENGTH_OPS);
    const mode = r.int(20);
    let declared: bigint;
    let actual: number;
    if (mode < 10) {
      // Declared huge, a few bytes present.
      declared = hugeLength(r, width);
      actual = r.int(17);
    } else if (mode < 15) {
      // Declared = present, large.
      actual = width === 1 ? r.pick([0x7f, 0x80, 0xff]) : Math.min(tier(r, [256, 4096], [65536], [262144, 1000000, (1 << 20) - 64]), BUDGET);
      declared = BigInt(actual);
    } else {
      // Off by a little.
      actual = width === 1 ? r.range(0, 255) : r.pick([0, 1, 4096, 65536]);
      declared = BigInt(actual + r.pick([-2, -1, 1, 2]));
      if (declared < 0n) declared += 1n << BigInt(8 * width);
    }
    const repeat = r.chance(0.15) && actual > 0 && actual <= 65536 ? Math.min(r.pick([2, 16, 64, 1024]), Math.floor(BUDGET / (actual + 9))) : 1;
    for (let i = 0; i < repeat; i++) {
      g.emit(code);
      g.raw(le(width, declared));
      g.raw(pattern(r, actual));
      if (repeat > 1 && code !== Op.FRAME) g.emit(Op.POP);
    }
    how = `huge-length ${name} declared ${declared} present ${actual}${repeat > 1 ? ` x${repeat}` : ''}`;
    if (code === Op.FRAME) g.emit(Op.NONE);
  }
  // Make something of the value now and then.
  const k = r.int(10);
  if (k < 2) g.emit(Op.TUPLE1);
  else if (k < 3) { g.emit(Op.BINPUT, 0, Op.BINGET, 0, Op.TUPLE2); }
  g.emit(Op.STOP);
  const out = g.out.bytes();
  if (framed) {
    const len = r.chance(0.5) ? BigInt(out.length - body) : hugeLength(r, 8);
    const b = le(8, len);
    out.set(b, frameAt + 1);
  }
  return { input: out, how };
}

// ====================================================================== huge-repeat

function repeatCount(r: Rng, unit: number, room: number): number {
  const n = tier(r, [255, 256, 1000, 1001, 4096], [65535, 65536], [100_000, 250_000, 500_000, 1_000_000], 14, 1);
  return Math.max(1, Math.min(n, Math.floor(room / Math.max(1, unit))));
}

/** One batch item (or key/value pair when `pair`), as bytes, for item number i. */
function batchUnit(r: Rng, kind: number, i: number, pair: boolean): number[] {
  const item = (): number[] => {
    switch (kind) {
      case 0: return [Op.NONE];
      case 1: return [Op.BININT1, i & 0xff];
      case 2: return [Op.BININT2, i & 0xff, (i >> 8) & 0xff];
      case 3: return [Op.BININT, i & 0xff, (i >> 8) & 0xff, (i >> 16) & 0xff, (i >> 24) & 0xff];
      case 4: return [Op.BINGET, 0];
      case 5: return [Op.EMPTY_DICT];
      case 6: return [Op.EMPTY_LIST];
      case 7: return [Op.EMPTY_SET];
      case 8: return [Op.EMPTY_TUPLE];
      default: {
        const s = latin1(`k${i}`);
        return [Op.SHORT_BINUNICODE, s.length, ...s];
      }
    }
  };
  return pair ? [...(kind === 5 || kind === 6 || kind === 7 ? [Op.BININT, i & 0xff, (i >> 8) & 0xff, (i >> 16) & 0xff, (i >> 24) & 0xff] : item()), Op.NONE] : item();
}

export function genRepeat(r: Rng): Hostile {
  const g = new Gen(r);
  const proto = r.pick([2, 3, 4, 5]);
  g.emit(Op.PROTO, proto);
  const room = BUDGET - 64;
  let how: string;
  const v = r.int(10);
  if (v < 1) {
    // Marks: MARK*n, then one of: a value, POP_MARK*n, TUPLE*n (nested empty tuples)
    const n = repeatCount(r, 2, room);
    for (let i = 0; i < n; i++) g.out.push(Op.MARK);
    const close = r.int(3);
    if (close === 0) g.emit(Op.NONE);
    else for (let i = 0; i < n; i++) g.out.push(close === 1 ? Op.POP_MARK : Op.TUPLE);
    if (close === 1) g.emit(Op.NONE);
    how = `huge-repeat MARK x${n} ${['value', 'POP_MARK', 'TUPLE'][close]}`;
  } else if (v < 5) {
    // One batch of n items.
    const kind = r.int(10);
    const target = r.int(9);
    if (kind === 4 || r.chance(0.1)) { g.emit(Op.EMPTY_LIST, Op.BINPUT, 0); }
    const pair = target === 1 || target === 6;
    const unitLen = batchUnit(r, kind, 0x1000000, pair).length;
    const n = repeatCount(r, unitLen, room);
    const open = [[Op.EMPTY_LIST], [Op.EMPTY_DICT], [Op.EMPTY_SET], [], [], [], [], [], []][target]!;
    g.raw(open);
    g.emit(Op.MARK);
    if (target === 7) pushGlobal(g, { module: 'builtins', name: 'ValueError', exception: true });
    for (let i = 0; i < n; i++) g.raw(batchUnit(r, kind, i, pair));
    const close = [Op.APPENDS, Op.SETITEMS, Op.ADDITEMS, Op.TUPLE, Op.LIST, Op.FROZENSET, Op.DICT, Op.OBJ, Op.INST][target]!;
    g.emit(close);
    if (close === Op.INST) { g.line('builtins'); g.line('ValueError'); }
    how = `huge-repeat batch ${['APPENDS', 'SETITEMS', 'ADDITEMS', 'TUPLE', 'LIST', 'FROZENSET', 'DICT', 'OBJ', 'INST'][target]} of ${n} item-kind ${kind}`;
  } else if (v < 6) {
    // DUP or MEMOIZE n times.
    const op = r.pick([Op.DUP, Op.MEMOIZE]);
    const n = repeatCount(r, 1, room);
    g.emit(Op.MARK);
    g.value(1);
    for (let i = 0; i < n; i++) g.out.push(op);
    g.emit(r.pick([Op.TUPLE, Op.LIST, Op.POP_MARK]));
    if (g.out.last() === Op.POP_MARK) g.emit(Op.NONE);
    how = `huge-repeat ${op === Op.DUP ? 'DUP' : 'MEMOIZE'} x${n}`;
  } else if (v < 7) {
    // A dense memo written by explicit PUTs 0..n-1.
    const n = repeatCount(r, 6, room);
    g.emit(Op.NONE);
    for (let i = 0; i < n; i++) { g.emit(Op.LONG_BINPUT); g.raw(le(4, i)); }
    g.emit(Op.LONG_BINGET); g.raw(le(4, n - 1));
    how = `huge-repeat LONG_BINPUT 0..${n - 1}`;
  } else if (v < 8) {
    // Deep nesting.
    const n = repeatCount(r, 3, room);
    const kind = r.int(3);
    if (kind === 0) { for (let i = 0; i < n; i++) g.out.push(Op.EMPTY_LIST); for (let i = 1; i < n; i++) g.out.push(Op.APPEND); }
    else if (kind === 1) { for (let i = 0; i < n; i++) g.out.push(Op.MARK); g.emit(Op.NONE); for (let i = 0; i < n; i++) g.out.push(Op.TUPLE); }
    else { for (let i = 0; i < n; i++) g.out.push(Op.EMPTY_DICT, Op.SHORT_BINUNICODE, 1, 0x6b); g.emit(Op.NONE); for (let i = 0; i < n; i++) g.out.push(Op.SETITEM); }
    how = `huge-repeat nesting ${['list', 'tuple', 'dict'][kind]} depth ${n}`;
  } else if (v < 9) {
    // Billion laughs: x = ['lol']; then levels of x = [x] * width.
    const width = tier(r, [10, 100], [1000], [1000]);
    const levels = Math.min(r.pick([9, 20, 100]), Math.floor(room / (width * 2 + 8)));
    g.emit(Op.SHORT_BINUNICODE, 3, 0x6c, 0x6f, 0x6c, Op.TUPLE1, Op.BINPUT, 0);
    for (let l = 0; l < levels; l++) {
      g.emit(Op.MARK);
      for (let i = 0; i < width; i++) g.out.push(Op.BINGET, 0);
      g.emit(r.chance(0.5) ? Op.LIST : Op.TUPLE, Op.BINPUT, 0);
    }
    how = `huge-repeat shared ${width}^${levels}`;
  } else {
    // Many dicts that become PyDicts, shared or not (each shared one makes the load run again).
    const n = repeatCount(r, 12, room);
    const shared = r.chance(0.5);
    g.emit(Op.EMPTY_LIST, Op.MARK);
    for (let i = 0; i < n; i++) {
      g.emit(Op.EMPTY_DICT);
      if (shared) { g.emit(Op.LONG_BINPUT); g.raw(le(4, i)); g.emit(Op.DUP, Op.POP); }
      g.emit(Op.BININT1, i & 0xff, Op.NONE, Op.SETITEM);
    }
    g.emit(Op.APPENDS);
    how = `huge-repeat dict-conversions x${n}${shared ? ' shared' : ''}`;
  }
  g.emit(Op.STOP);
  return { input: g.out.bytes(), how };
}

// ====================================================================== handler calls

/** Globals whose handlers allocate in proportion to an argument. */
const ALLOCATORS: ReadonlySet<string> = new Set([
  'builtins.bytearray', 'builtins.bytes', '_codecs.encode', 'builtins.set', 'builtins.frozenset', 'collections.deque',
  'collections.OrderedDict', 'collections.Counter', 'collections.defaultdict', 'builtins.range', 'decimal.Decimal',
]);

function pickHandler(r: Rng, handlers: readonly HandlerInfo[], allocatorBias: number): HandlerInfo {
  if (handlers.length === 0) return { module: 'builtins', name: 'bytearray', exception: false };
  if (r.chance(allocatorBias)) {
    const alloc = handlers.filter((h) => ALLOCATORS.has(`${h.module}.${h.name}`));
    if (alloc.length > 0) return r.pick(alloc);
  }
  const plain = handlers.filter((h) => !h.exception);
  if (plain.length > 0 && r.chance(0.85)) return r.pick(plain);
  return r.pick(handlers);
}

function pushGlobal(g: Gen, h: HandlerInfo): void {
  if (g.r.chance(0.6)) {
    g.emit(Op.GLOBAL);
    g.line(h.module);
    g.line(h.name);
  } else {
    for (const s of [h.module, h.name]) {
      const b = enc.encode(s);
      g.emit(Op.SHORT_BINUNICODE, b.length);
      g.raw(b);
    }
    g.emit(Op.STACK_GLOBAL);
  }
}

/** Pushes one argument at an extreme: sizes, floats, huge str/bytes, wrong types, nested calls, lists, dicts. */
function pushExtremeArg(g: Gen, handlers: readonly HandlerInfo[], depth: number): void {
  const r = g.r;
  const k = r.int(100);
  if (k < 35) pushInt(g, r.chance(0.8) ? r.pick(SIZE_INTS) : r.pick(INTS));
  else if (k < 42) {
    const b = new Uint8Array(8);
    new DataView(b.buffer).setFloat64(0, r.pick([...DOUBLES, 2 ** 20, 2 ** 31, 1e300, -1e300]), false);
    g.emit(Op.BINFLOAT);
    g.raw(b);
  } else if (k < 54) pushBigStr(g, payloadSize(g));
  else if (k < 62) pushBigBytes(g, payloadSize(g));
  else if (k < 72) {
    const w = r.int(9);
    if (w < 7) g.emit([Op.NONE, Op.NEWTRUE, Op.EMPTY_LIST, Op.EMPTY_DICT, Op.EMPTY_SET, Op.EMPTY_TUPLE, Op.NEWFALSE][w]!);
    else if (w < 8) pushGlobal(g, pickHandler(r, handlers, 0.3));
    else g.str(r.pick(['latin1', 'utf-8', 'ascii', 'utf-16', 'bogus', '', 'LATIN_1', 'UTF8']));
  } else if (k < 82 && depth > 0) emitCall(g, handlers, pickHandler(r, handlers, 0.5), depth - 1);
  else if (k < 91) {
    // A list (or tuple) of n small ints.
    const n = Math.min(tier(r, [0, 1, 256], [4096], [65536]), Math.floor(Math.max(0, BUDGET - g.out.length) / 4));
    g.emit(Op.EMPTY_LIST, Op.MARK);
    for (let i = 0; i < n; i++) g.out.push(Op.BININT1, i & 0xff);
    if (r.chance(0.1)) pushInt(g, r.pick(SIZE_INTS));
    g.emit(Op.APPENDS);
  } else {
    // A dict of n keys.
    const n = Math.min(tier(r, [0, 1, 16], [1000], [10000]), Math.floor(Math.max(0, BUDGET - g.out.length) / 16));
    g.emit(Op.EMPTY_DICT, Op.MARK);
    const strKeys = r.chance(0.6);
    for (let i = 0; i < n; i++) {
      if (strKeys) { const s = latin1(r.chance(0.9) ? `k${i}` : r.pick(NAMES)); g.emit(Op.SHORT_BINUNICODE, s.length); g.raw(s); }
      else pushInt(g, BigInt(i));
      pushInt(g, r.chance(0.9) ? BigInt(i) : r.pick(SIZE_INTS));
    }
    g.emit(Op.SETITEMS);
  }
}

/** Arguments shaped for one handler, at their limits (null when there is no special shape). */
function shapedArgs(g: Gen, h: HandlerInfo, handlers: readonly HandlerInfo[], depth: number): number | null {
  const r = g.r;
  const fq = `${h.module}.${h.name}`;
  const int = (v?: bigint): void => pushInt(g, v ?? r.pick(SIZE_INTS));
  switch (fq) {
    case 'builtins.bytearray': case 'builtins.bytes':
      if (r.chance(0.5)) { int(r.chance(0.5) ? r.pick([2n ** 20n - 1n, 2n ** 20n]) : undefined); return 1; }
      if (r.chance(0.5)) { pushBigStr(g, payloadSize(g)); g.str(r.pick(['utf-8', 'latin1', 'ascii', 'utf-16'])); return 2; }
      return null;
    case '_codecs.encode':
      pushBigStr(g, payloadSize(g));
      g.str(r.pick(['utf-8', 'latin1', 'latin-1', 'ascii', 'bogus']));
      return 2;
    case 'collections.deque':
      if (r.chance(0.5)) emitCall(g, handlers, { module: 'builtins', name: 'bytearray', exception: false }, depth);
      else pushExtremeArg(g, handlers, depth);
      int();
      return 2;
    case 'builtins.range': case 'builtins.slice': case 'datetime.timedelta': case 'builtins.complex': {
      const n = r.range(1, 3);
      for (let i = 0; i < n; i++) int();
      return n;
    }
    case 'datetime.datetime': case 'datetime.date': case 'datetime.time': {
      if (r.chance(0.5)) {
        const n = { 'datetime.datetime': 10, 'datetime.date': 4, 'datetime.time': 6 }[fq]!;
        const b = r.chance(0.5) ? new Uint8Array(n).fill(0xff) : r.bytes(n);
        g.emit(Op.SHORT_BINBYTES, n);
        g.raw(b);
        if (r.chance(0.5)) pushExtremeArg(g, handlers, depth);
        return 1;
      }
      const n = r.range(1, 8);
      for (let i = 0; i < n; i++) int();
      return n;
    }
    case 'datetime.timezone':
      emitCall(g, handlers, { module: 'datetime', name: 'timedelta', exception: false }, depth);
      if (r.chance(0.5)) pushBigStr(g, payloadSize(g));
      return null;
    case 'decimal.Decimal':
      if (r.chance(0.5)) { pushBigStr(g, payloadSize(g)); return 1; }
      return null;
    default:
      if (h.exception && r.chance(0.5)) {
        // Many arguments, or one huge one: the message is built from them.
        const n = r.pick([1, 2, 8, 1000]);
        for (let i = 0; i < n; i++) (i < 2 && r.chance(0.5) ? pushBigStr(g, payloadSize(g)) : int());
        return n;
      }
      return null;
  }
}

/** Pushes a call of `h` and leaves its result on the stack. */
function emitCall(g: Gen, handlers: readonly HandlerInfo[], h: HandlerInfo, depth: number): string {
  const r = g.r;
  const style = r.int(20);
  const args = (): void => {
    g.emit(Op.MARK);
    if (r.chance(0.6) && shapedArgs(g, h, handlers, depth) !== null) { /* shaped */ }
    else for (let n = r.pick([0, 1, 1, 2, 2, 3, 4, 8]); n > 0; n--) pushExtremeArg(g, handlers, depth);
    g.emit(Op.TUPLE);
  };
  let how: string;
  if (style < 11) { pushGlobal(g, h); args(); g.emit(Op.REDUCE); how = 'REDUCE'; }
  else if (style < 14) { pushGlobal(g, h); args(); g.emit(Op.NEWOBJ); how = 'NEWOBJ'; }
  else if (style < 15) {
    pushGlobal(g, h); args();
    g.emit(Op.EMPTY_DICT, Op.MARK);
    for (let n = r.range(0, 2); n > 0; n--) { g.str(r.pick(['maxlen', 'int', 'x', '__proto__'])); pushExtremeArg(g, handlers, 0); }
    g.emit(Op.SETITEMS, Op.NEWOBJ_EX);
    how = 'NEWOBJ_EX';
  } else if (style < 16) {
    g.emit(Op.MARK); pushGlobal(g, h);
    for (let n = r.range(0, 3); n > 0; n--) pushExtremeArg(g, handlers, depth);
    g.emit(Op.OBJ);
    how = 'OBJ';
  } else if (style < 17) {
    g.emit(Op.MARK);
    for (let n = r.range(0, 3); n > 0; n--) pushExtremeArg(g, handlers, depth);
    g.emit(Op.INST); g.line(h.module); g.line(h.name);
    how = 'INST';
  } else if (style < 18) {
    pushGlobal(g, { module: 'copyreg', name: '_reconstructor', exception: false });
    pushGlobal(g, h); pushGlobal(g, { module: 'builtins', name: 'object', exception: false }); g.emit(Op.NONE, Op.TUPLE3, Op.REDUCE);
    how = 'copyreg';
  } else {
    pushGlobal(g, h); args(); g.emit(r.chance(0.5) ? Op.REDUCE : Op.NEWOBJ);
    // BUILD with a state at its limits.
    const s = r.int(4);
    if (s === 0) { g.emit(Op.EMPTY_DICT, Op.MARK); g.str('int'); pushInt(g, r.pick(SIZE_INTS)); g.str('is_safe'); pushExtremeArg(g, handlers, 0); g.emit(Op.SETITEMS); }
    else if (s === 1) { g.emit(Op.NONE, Op.EMPTY_DICT, Op.MARK); g.str(r.pick(['__proto__', 'constructor', 'x'])); pushExtremeArg(g, handlers, 0); g.emit(Op.SETITEMS, Op.TUPLE2); }
    else pushExtremeArg(g, handlers, depth);
    g.emit(Op.BUILD);
    how = 'BUILD';
  }
  return `${h.module}.${h.name} ${how}`;
}

export function genHandlerCall(r: Rng, handlers: readonly HandlerInfo[]): Hostile {
  const g = new Gen(r);
  const proto = r.pick([0, 1, 2, 3, 4, 5]);
  if (proto >= 2 || r.chance(0.2)) g.emit(Op.PROTO, proto);
  const calls: string[] = [];
  for (let n = r.chance(0.8) ? 1 : r.range(2, 4); n > 0; n--) calls.push(emitCall(g, handlers, pickHandler(r, handlers, 0.2), 2));
  if (calls.length > 1) g.emit(Op.TUPLE2);
  g.emit(Op.STOP);
  return { input: g.out.bytes(), how: `handler-call ${calls.join('; ')}` };
}

/**
 * One call memoized (callable in slot 0, argument tuple in slot 1) and made
 * again K times at 5 bytes each (BINGET 0, BINGET 1, REDUCE), into a list,
 * a dict or a chain where each result is the next call's argument.
 */
export function genHandlerBomb(r: Rng, handlers: readonly HandlerInfo[]): Hostile {
  const g = new Gen(r);
  g.emit(Op.PROTO, r.pick([2, 3, 4, 5]));
  const h = pickHandler(r, handlers, 0.6);
  pushGlobal(g, h);
  g.emit(Op.BINPUT, 0);
  g.emit(Op.MARK);
  const a = r.int(10);
  let arg: string;
  if (a < 6) {
    const v = r.chance(0.5) ? r.pick([2n ** 20n - 1n, 2n ** 20n]) : r.pick(SIZE_INTS);
    pushInt(g, v);
    arg = String(v);
  } else if (a < 8) {
    const n = Math.min(tier(r, [4096], [65536], [262144]), BUDGET / 2);
    if (r.chance(0.5)) pushBigStr(g, n);
    else pushBigBytes(g, n);
    arg = `${n}-byte payload`;
  } else {
    // A nested call as the argument: deque(bytearray(2**20)), bytes(bytearray(n)), set(...).
    const inner = pickHandler(r, handlers, 0.8);
    emitCall(g, handlers, inner, 1);
    arg = `${inner.module}.${inner.name}(...)`;
  }
  if (r.chance(0.3)) g.str(r.pick(['utf-8', 'latin1']));
  g.emit(Op.TUPLE, Op.BINPUT, 1);
  const k = r.pick([17, 32, 64, 128, 256, 513, 1024]);
  const shape = r.int(10);
  if (shape < 6) {
    g.emit(Op.EMPTY_LIST, Op.MARK);
    for (let i = 0; i < k; i++) g.out.push(Op.BINGET, 0, Op.BINGET, 1, Op.REDUCE);
    g.emit(Op.APPENDS);
  } else if (shape < 8) {
    g.emit(Op.EMPTY_DICT, Op.MARK);
    for (let i = 0; i < k; i++) g.out.push(Op.BININT2, i & 0xff, i >> 8, Op.BINGET, 0, Op.BINGET, 1, Op.REDUCE);
    g.emit(Op.SETITEMS);
  } else {
    // Chain: x = h(*args); then x = h(x), through memo slot 2.
    g.emit(Op.BINGET, 0, Op.BINGET, 1, Op.REDUCE);
    for (let i = 1; i < k; i++) g.out.push(Op.BINPUT, 2, Op.POP, Op.BINGET, 0, Op.BINGET, 2, Op.TUPLE1, Op.REDUCE);
  }
  g.emit(Op.STOP);
  return { input: g.out.bytes(), how: `handler-bomb ${h.module}.${h.name}(${arg}) x${k} ${shape < 6 ? 'list' : shape < 8 ? 'dict' : 'chain'}` };
}

// ====================================================================== hash-flood

// Keys that share one bucket of V8's table, made by inverting V8's unseeded
// integer hashes (test/helpers/v8-collisions.ts; src/pickle/v8-hash.ts).
const FLOOD_KINDS = ['int32', 'float', 'u64', 'shift64'] as const;
const FLOOD_CONTAINERS = ['dict', 'setitem', 'set', 'frozenset', 'set()'] as const;

/**
 * `hash-flood`: a dict or set (SETITEMS, SETITEM one by one, ADDITEMS,
 * FROZENSET, or builtins.set of a list) of up to 60,000 number or bigint
 * keys that all share one bucket of V8's table: int32s equal in the low 16
 * bits of their hash, crafted floats and 64-bit bigints with one hash, or
 * bigints k << 64. Without maxHashCollisions a load costs the square of
 * their number (40,000 `k << 64` keys: 5.9 s), which the supervisor reports
 * as `slow` or `timeout`.
 */
/** The encoded keys of each kind, made once a process (inverting the hashes takes a few microseconds a key). */
const floodCache = new Map<string, Uint8Array[]>();

function floodKeys(kind: (typeof FLOOD_KINDS)[number], n: number, sign: bigint): Uint8Array[] {
  const id = `${kind} ${sign}`;
  let keys = floodCache.get(id);
  if (keys === undefined || keys.length < n) {
    const values: Array<number | bigint> =
      kind === 'int32' ? collidingKeys.int32s(n) : kind === 'float' ? collidingKeys.floats(n) : kind === 'u64' ? collidingKeys.u64s(n) : collidingKeys.shifted(n).map((v) => (v < 0n ? -v : v) * sign);
    const view = new DataView(new ArrayBuffer(8));
    keys = values.map((v) => {
      if (typeof v === 'bigint') {
        const b = encodeLong(v);
        return Uint8Array.of(Op.LONG1, b.length, ...b);
      }
      if (kind === 'int32') return Uint8Array.of(Op.BININT, ...le(4, BigInt.asUintN(32, BigInt(v))));
      view.setFloat64(0, v);
      return Uint8Array.of(Op.BINFLOAT, ...new Uint8Array(view.buffer)); // big-endian, as BINFLOAT
    });
    floodCache.set(id, keys);
  }
  return keys.slice(0, n);
}

export function genHashFlood(r: Rng): Hostile {
  const kind = r.pick(FLOOD_KINDS);
  const container = r.pick(FLOOD_CONTAINERS);
  // int32s can share only the low 16 bits of their hash (65,536 of them at most).
  const n = r.pick(kind === 'int32' ? [100, 1000, 5000, 20000] : [100, 1000, 5000, 20000, 60000]);
  const keys = floodKeys(kind, n, r.chance(0.5) ? 1n : -1n);
  const out = new ByteSink();
  out.push(Op.PROTO, 4);
  const batches = (close: number, value: boolean): void => {
    for (let i = 0; i < keys.length; i += 1000) {
      out.push(Op.MARK);
      for (const k of keys.slice(i, i + 1000)) {
        out.append(k);
        if (value) out.push(Op.NONE);
      }
      out.push(close);
    }
  };
  if (container === 'dict') {
    out.push(Op.EMPTY_DICT);
    batches(Op.SETITEMS, true);
  } else if (container === 'setitem') {
    out.push(Op.EMPTY_DICT);
    for (const k of keys) {
      out.append(k);
      out.push(Op.NONE, Op.SETITEM);
    }
  } else if (container === 'set') {
    out.push(Op.EMPTY_SET);
    batches(Op.ADDITEMS, false);
  } else if (container === 'frozenset') {
    out.push(Op.MARK);
    for (const k of keys) out.append(k);
    out.push(Op.FROZENSET);
  } else {
    out.append(latin1('cbuiltins\nset\n'));
    out.push(Op.EMPTY_LIST);
    batches(Op.APPENDS, false);
    out.push(Op.TUPLE1, Op.REDUCE);
  }
  out.push(Op.STOP);
  return { input: out.bytes(), how: `hash-flood ${kind} ${container} x${n}` };
}
