/**
 * JavaScript classes for common Python standard-library values, with their
 * load handlers (registered in the default registry) and their reductions
 * (how they pickle). Each reproduces CPython 3.11's pickle bytes
 * (spec/pickle.md section 9).
 */

import { PickleError, PicklingError, UnpicklingError } from './errors.js';
import { PythonException } from './exceptions.js';
import { BUILTIN_EXCEPTIONS } from './python-tables.js';
import { handlerOf, NOT_HANDLED, UNLIMITED_LOAD_CONTEXT, type LoadContext, type PickleRegistry } from './registry.js';
import {
  EMPTY_TUPLE,
  makeTuple,
  PyByteArray,
  PyDict,
  PyFloat,
  PyFrozenSet,
  PyGlobal,
  pyFloat,
  reduceEx,
  setState,
  type PyTuple,
  type ReduceValue,
} from './types.js';
import { encodeUtf8Into } from './utf8.js';

// ---------------------------------------------------------------- helpers

function isInt(v: unknown): v is number | bigint {
  return (typeof v === 'number' && Number.isInteger(v)) || typeof v === 'bigint';
}

function toNumberInt(v: unknown, what: string): number {
  if (typeof v === 'number' && Number.isInteger(v)) return v;
  if (typeof v === 'bigint' && v >= BigInt(Number.MIN_SAFE_INTEGER) && v <= BigInt(Number.MAX_SAFE_INTEGER)) return Number(v);
  throw new TypeError(`${what} must be an integer`);
}

function toFloat(v: unknown): number {
  if (v instanceof PyFloat) return v.value;
  if (typeof v === 'number') return v;
  if (typeof v === 'bigint') return Number(v);
  throw new TypeError('expected a number');
}

/**
 * Entries of a decoded Python dict (null-prototype object or Map), and
 * nothing else: `Object.entries` of bytes or a placeholder would make an entry
 * per element (CPython raises TypeError for them too).
 */
function dictEntries(d: unknown): Array<[unknown, unknown]> {
  if (d instanceof Map) return Array.from(d.entries());
  if (d !== null && typeof d === 'object' && (Object.getPrototypeOf(d) === null || Object.getPrototypeOf(d) === Object.prototype)) return Object.entries(d);
  throw new TypeError('expected a dict');
}

function dictGet(d: unknown, k: string): unknown {
  if (d instanceof Map) return d.get(k);
  if (d !== null && typeof d === 'object' && Object.prototype.hasOwnProperty.call(d, k)) return (d as Record<string, unknown>)[k];
  return undefined;
}

/** Python's `bytes(...)`-like argument: bytes, or a str with an encoding. */
function bytesArg(v: unknown, what: string): Uint8Array {
  if (v instanceof Uint8Array) return v;
  throw new TypeError(`${what}: expected bytes`);
}

function g(module: string, name: string): PyGlobal {
  return new PyGlobal(module, name);
}

function checkRange(v: number, lo: number, hi: number, what: string): number {
  if (!Number.isInteger(v) || v < lo || v > hi) throw new RangeError(`${what} must be in ${lo}..${hi}`);
  return v;
}

// ---------------------------------------------------------------- datetime

/** Python's `datetime.timedelta`, normalized as Python keeps it. */
export class PyTimedelta {
  readonly days: number;
  readonly seconds: number;
  readonly microseconds: number;
  constructor(days = 0, seconds = 0, microseconds = 0) {
    // Normalize as Python does: 0 <= microseconds < 1e6, 0 <= seconds < 86400.
    let us = microseconds;
    let s = seconds + Math.floor(us / 1e6);
    us = ((us % 1e6) + 1e6) % 1e6;
    let d = days + Math.floor(s / 86400);
    s = ((s % 86400) + 86400) % 86400;
    if (!Number.isInteger(d) || !Number.isInteger(s) || !Number.isInteger(us)) throw new TypeError('timedelta fields must be integers');
    if (Math.abs(d) > 999999999) throw new RangeError('days must have magnitude <= 999999999');
    this.days = d === 0 ? 0 : d;
    this.seconds = s;
    this.microseconds = us;
  }
  /** The duration in seconds (Python's `total_seconds()`). */
  totalSeconds(): number {
    return (this.days * 86400 + this.seconds) + this.microseconds / 1e6;
  }
  [reduceEx](): ReduceValue {
    return { callable: g('datetime', 'timedelta'), args: [this.days, this.seconds, this.microseconds] };
  }
}

/** Python's `datetime.timezone`: a fixed offset and an optional name. */
export class PyTimezone {
  readonly offset: PyTimedelta;
  readonly name: string | undefined;
  constructor(offset: PyTimedelta, name?: string) {
    this.offset = offset;
    this.name = name;
  }
  /** `timezone.utc`. */
  static readonly utc: PyTimezone = new PyTimezone(new PyTimedelta(0, 0, 0));
  [reduceEx](): ReduceValue {
    return { callable: g('datetime', 'timezone'), args: this.name === undefined ? [this.offset] : [this.offset, this.name] };
  }
}

/** Python's `datetime.date`. */
export class PyDate {
  readonly year: number;
  readonly month: number;
  readonly day: number;
  constructor(year: number, month: number, day: number) {
    this.year = checkRange(year, 1, 9999, 'year');
    this.month = checkRange(month, 1, 12, 'month');
    this.day = checkRange(day, 1, 31, 'day');
  }
  /** The ISO form, `YYYY-MM-DD`. */
  toString(): string {
    return `${String(this.year).padStart(4, '0')}-${pad2(this.month)}-${pad2(this.day)}`;
  }
  [reduceEx](): ReduceValue {
    const state = new Uint8Array([this.year >> 8, this.year & 0xff, this.month, this.day]);
    return { callable: g('datetime', 'date'), args: [state] };
  }
}

function pad2(n: number): string {
  return n < 10 ? `0${n}` : String(n);
}

/** Python's `datetime.time`. */
export class PyTime {
  readonly hour: number;
  readonly minute: number;
  readonly second: number;
  readonly microsecond: number;
  readonly tzinfo: unknown;
  readonly fold: 0 | 1;
  constructor(hour = 0, minute = 0, second = 0, microsecond = 0, tzinfo: unknown = null, fold: 0 | 1 = 0) {
    this.hour = checkRange(hour, 0, 23, 'hour');
    this.minute = checkRange(minute, 0, 59, 'minute');
    this.second = checkRange(second, 0, 59, 'second');
    this.microsecond = checkRange(microsecond, 0, 999999, 'microsecond');
    this.tzinfo = tzinfo;
    this.fold = fold;
  }
  [reduceEx](protocol: number): ReduceValue {
    const us = this.microsecond;
    const h = this.hour | (this.fold && protocol > 3 ? 0x80 : 0);
    const state = new Uint8Array([h, this.minute, this.second, us >> 16, (us >> 8) & 0xff, us & 0xff]);
    return { callable: g('datetime', 'time'), args: this.tzinfo == null ? [state] : [state, this.tzinfo] };
  }
}

/** Python's `datetime.datetime`, with microseconds, `tzinfo` and `fold` kept. */
export class PyDatetime {
  readonly year: number;
  readonly month: number;
  readonly day: number;
  readonly hour: number;
  readonly minute: number;
  readonly second: number;
  readonly microsecond: number;
  readonly tzinfo: unknown;
  readonly fold: 0 | 1;
  constructor(year: number, month: number, day: number, hour = 0, minute = 0, second = 0, microsecond = 0, tzinfo: unknown = null, fold: 0 | 1 = 0) {
    this.year = checkRange(year, 1, 9999, 'year');
    this.month = checkRange(month, 1, 12, 'month');
    this.day = checkRange(day, 1, 31, 'day');
    this.hour = checkRange(hour, 0, 23, 'hour');
    this.minute = checkRange(minute, 0, 59, 'minute');
    this.second = checkRange(second, 0, 59, 'second');
    this.microsecond = checkRange(microsecond, 0, 999999, 'microsecond');
    this.tzinfo = tzinfo;
    this.fold = fold;
  }
  /**
   * A JavaScript `Date` for the same instant, when the tzinfo is a fixed
   * offset (or absent, taken as UTC). Microseconds below a millisecond are lost.
   */
  toDate(): Date {
    const offsetMs = this.tzinfo instanceof PyTimezone ? this.tzinfo.offset.totalSeconds() * 1000 : 0;
    return new Date(Date.UTC(this.year, this.month - 1, this.day, this.hour, this.minute, this.second, Math.floor(this.microsecond / 1000)) - offsetMs);
  }
  /** The naive UTC datetime of a JavaScript `Date` (with `tzinfo` `timezone.utc` when `utc` is set). */
  static fromDate(d: Date, options?: { utc?: boolean }): PyDatetime {
    return new PyDatetime(d.getUTCFullYear(), d.getUTCMonth() + 1, d.getUTCDate(), d.getUTCHours(), d.getUTCMinutes(), d.getUTCSeconds(), d.getUTCMilliseconds() * 1000, options?.utc ? PyTimezone.utc : null);
  }
  [reduceEx](protocol: number): ReduceValue {
    const us = this.microsecond;
    const m = this.month | (this.fold && protocol > 3 ? 0x80 : 0);
    const state = new Uint8Array([this.year >> 8, this.year & 0xff, m, this.day, this.hour, this.minute, this.second, us >> 16, (us >> 8) & 0xff, us & 0xff]);
    return { callable: g('datetime', 'datetime'), args: this.tzinfo == null ? [state] : [state, this.tzinfo] };
  }
}

function loadDatetime(args: PyTuple): PyDatetime {
  const a0 = args[0];
  if (a0 instanceof Uint8Array && a0.length === 10 && (a0[2]! & 0x7f) >= 1 && (a0[2]! & 0x7f) <= 12) {
    const s = a0;
    return new PyDatetime((s[0]! << 8) | s[1]!, s[2]! & 0x7f, s[3]!, s[4]!, s[5]!, s[6]!, (s[7]! << 16) | (s[8]! << 8) | s[9]!, args[1] ?? null, s[2]! & 0x80 ? 1 : 0);
  }
  const n = args.map((v, i) => (i < 7 ? toNumberInt(v, 'datetime field') : 0));
  return new PyDatetime(n[0]!, n[1]!, n[2]!, n[3] ?? 0, n[4] ?? 0, n[5] ?? 0, n[6] ?? 0, args[7] ?? null);
}

function loadDate(args: PyTuple): PyDate {
  const a0 = args[0];
  if (a0 instanceof Uint8Array && a0.length === 4) return new PyDate((a0[0]! << 8) | a0[1]!, a0[2]!, a0[3]!);
  return new PyDate(toNumberInt(args[0], 'year'), toNumberInt(args[1], 'month'), toNumberInt(args[2], 'day'));
}

function loadTime(args: PyTuple): PyTime {
  const a0 = args[0];
  if (a0 instanceof Uint8Array && a0.length === 6 && (a0[0]! & 0x7f) < 24) {
    const s = a0;
    return new PyTime(s[0]! & 0x7f, s[1]!, s[2]!, (s[3]! << 16) | (s[4]! << 8) | s[5]!, args[1] ?? null, s[0]! & 0x80 ? 1 : 0);
  }
  const n = args.map((v, i) => (i < 4 ? toNumberInt(v, 'time field') : 0));
  return new PyTime(n[0] ?? 0, n[1] ?? 0, n[2] ?? 0, n[3] ?? 0, args[4] ?? null);
}

// ---------------------------------------------------------------- numbers

/** Python's `decimal.Decimal`, kept as its string form. */
export class PyDecimal {
  readonly value: string;
  constructor(value: string) {
    this.value = value;
  }
  toString(): string {
    return this.value;
  }
  toJSON(): string {
    return this.value;
  }
  [reduceEx](): ReduceValue {
    return { callable: g('decimal', 'Decimal'), args: [this.value] };
  }
}

/** Python's `complex`. */
export class PyComplex {
  readonly real: number;
  readonly imag: number;
  constructor(real: number, imag = 0) {
    this.real = real;
    this.imag = imag;
  }
  [reduceEx](): ReduceValue {
    return { callable: g('builtins', 'complex'), args: [pyFloat(this.real), pyFloat(this.imag)] };
  }
}

/** Python's `range`. */
export class PyRange {
  readonly start: number | bigint;
  readonly stop: number | bigint;
  readonly step: number | bigint;
  constructor(start: number | bigint, stop: number | bigint, step: number | bigint = 1) {
    this.start = start;
    this.stop = stop;
    this.step = step;
  }
  [reduceEx](): ReduceValue {
    return { callable: g('builtins', 'range'), args: [this.start, this.stop, this.step] };
  }
}

/** Python's `slice`. */
export class PySlice {
  readonly start: unknown;
  readonly stop: unknown;
  readonly step: unknown;
  constructor(start: unknown, stop: unknown, step: unknown = null) {
    this.start = start;
    this.stop = stop;
    this.step = step;
  }
  [reduceEx](): ReduceValue {
    return { callable: g('builtins', 'slice'), args: [this.start, this.stop, this.step] };
  }
}

// ---------------------------------------------------------------- uuid

/** Python's `uuid.UUID`: the 128-bit integer and the `is_safe` value (0 safe, -1 unsafe, null unknown). */
export class PyUUID {
  int: bigint;
  isSafe: number | null;
  constructor(value: bigint | string = 0n, isSafe: number | null = null) {
    if (typeof value === 'string') {
      const hex = value.replace(/^urn:uuid:/i, '').replace(/[{}-]/g, '');
      if (!/^[0-9a-fA-F]{32}$/.test(hex)) throw new TypeError('badly formed hexadecimal UUID string');
      value = BigInt(`0x${hex}`);
    }
    if (value < 0n || value >= 1n << 128n) throw new RangeError('int is out of range (need a 128-bit value)');
    this.int = value;
    this.isSafe = isSafe;
  }
  /** The canonical `xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx` form. */
  toString(): string {
    const h = this.int.toString(16).padStart(32, '0');
    return `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20)}`;
  }
  [setState](state: unknown): void {
    const v = dictGet(state, 'int');
    if (!isInt(v)) throw new TypeError("UUID state needs an 'int'");
    this.int = BigInt(v);
    const safe = dictGet(state, 'is_safe');
    this.isSafe = safe === undefined ? null : toNumberInt(safe, 'is_safe');
  }
  [reduceEx](): ReduceValue {
    const state: Record<string, unknown> = { __proto__: null, int: this.int } as never;
    if (this.isSafe !== null) state.is_safe = this.isSafe;
    return { kind: 'newobj', callable: g('uuid', 'UUID'), args: [], state };
  }
}

// ---------------------------------------------------------------- collections

/** Python's `collections.OrderedDict`. */
export class PyOrderedDict<K = unknown, V = unknown> extends PyDict<K, V> {
  [reduceEx](): ReduceValue {
    return { callable: g('collections', 'OrderedDict'), args: [], dictItems: this.entries() };
  }
}

/** Python's `collections.defaultdict`; `defaultFactory` is a global such as `builtins.list`, or null. */
export class PyDefaultDict<K = unknown, V = unknown> extends PyDict<K, V> {
  defaultFactory: unknown;
  constructor(defaultFactory: unknown = null, entries?: Iterable<readonly [K, V]> | null) {
    super(entries);
    this.defaultFactory = defaultFactory;
  }
  [reduceEx](): ReduceValue {
    return { callable: g('collections', 'defaultdict'), args: this.defaultFactory == null ? [] : [this.defaultFactory], dictItems: this.entries() };
  }
}

/** Python's `collections.Counter`. */
export class PyCounter<K = unknown> extends PyDict<K, number | bigint> {
  [reduceEx](): ReduceValue {
    return { callable: g('collections', 'Counter'), args: [new PyDict(this)] };
  }
}

/** Python's `collections.deque`, with its `maxlen` (null for unbounded). */
export class PyDeque<T = unknown> extends Array<T> {
  maxlen: number | null = null;
  static override get [Symbol.species](): ArrayConstructor {
    return Array;
  }
  /** A deque holding `items`, bounded by `maxlen` when given. */
  static create<T>(items: Iterable<T> = [], maxlen: number | null = null): PyDeque<T> {
    // One array of the right size, then given this class (pushing item by item onto
    // the subclass took 1.7 s and twice the memory for 4 million items).
    let all = Array.from(items);
    if (maxlen !== null && all.length > maxlen) all = all.slice(all.length - maxlen);
    Object.setPrototypeOf(all, PyDeque.prototype);
    const d = all as PyDeque<T>;
    d.maxlen = maxlen;
    return d;
  }
  [reduceEx](): ReduceValue {
    return { callable: g('collections', 'deque'), args: this.maxlen === null ? [] : [EMPTY_TUPLE, this.maxlen], listItems: this.values() };
  }
}

// ---------------------------------------------------------------- builtins

/** `str.encode(encoding)` for the encodings protocol 0-2 bytes use; `context` is charged for the result. */
function encodeStr(s: string, encoding: string, context: LoadContext = UNLIMITED_LOAD_CONTEXT): Uint8Array {
  const enc = encoding.toLowerCase().replace(/_/g, '-');
  if (enc === 'latin1' || enc === 'latin-1' || enc === 'iso-8859-1' || enc === 'iso8859-1' || enc === 'ascii') {
    context.alloc(s.length);
    const limit = enc === 'ascii' ? 0x80 : 0x100;
    const out = new Uint8Array(s.length);
    for (let i = 0; i < s.length; i++) {
      const c = s.charCodeAt(i);
      if (c >= limit) throw new RangeError(`'${enc}' codec can't encode character at position ${i}`);
      out[i] = c;
    }
    return out;
  }
  if (enc === 'utf-8' || enc === 'utf8') {
    context.alloc(s.length * 3);
    const buf = new Uint8Array(s.length * 3);
    return buf.slice(0, encodeUtf8Into(s, buf, 0));
  }
  throw new RangeError(`unsupported encoding ${encoding}`);
}

function intListToBytes(items: unknown, what: string): Uint8Array {
  if (!Array.isArray(items)) throw new TypeError(`${what}: expected a list of ints`);
  const out = new Uint8Array(items.length);
  items.forEach((v, i) => {
    out[i] = checkRange(toNumberInt(v, what), 0, 255, `${what} item`);
  });
  return out;
}

/**
 * The bytes of `bytes(...)`/`bytearray(...)`: of a str and an encoding, of
 * bytes (the argument itself, not copied), of a count (zeros, charged to the
 * load's budget first: `bytearray(n)` is the cheapest way to ask for memory),
 * or of a list of ints.
 */
function bytesFromArgs(args: PyTuple, what: string, context: LoadContext): Uint8Array {
  if (args.length === 0) return new Uint8Array(0);
  const a0 = args[0];
  if (typeof a0 === 'string') {
    if (typeof args[1] !== 'string') throw new TypeError(`${what}: string argument without an encoding`);
    return encodeStr(a0, args[1], context);
  }
  // CPython: an encoding with anything but a str is a TypeError.
  if (args.length > 1) throw new TypeError(`${what}: encoding without a string argument`);
  if (a0 instanceof Uint8Array) return a0;
  if (isInt(a0)) {
    if (a0 < 0) throw new RangeError(`${what}: negative count`);
    const n = toNumberInt(a0, `${what} count`);
    context.alloc(n);
    return new Uint8Array(n);
  }
  return intListToBytes(a0, what);
}

/**
 * The items of an iterable argument (set, frozenset, deque). The handler
 * makes a collection of them, charged to `context` per item: bytes and
 * strings become one item per byte or character, far more than their size.
 */
function iterableItems(v: unknown, what: string, context: LoadContext = UNLIMITED_LOAD_CONTEXT): Iterable<unknown> {
  if (v === undefined) return [];
  const count = Array.isArray(v) || typeof v === 'string' || v instanceof Uint8Array ? v.length : v instanceof Set || v instanceof Map ? v.size : -1;
  if (count < 0) throw new TypeError(`${what}: argument is not iterable`);
  // A string's items are strings of one character: those outside latin-1 are new heap strings (about 24 bytes each).
  context.alloc(count * (typeof v === 'string' ? ITEM_COST + CHAR_STRING_COST : ITEM_COST));
  return v instanceof Map ? v.keys() : (v as Iterable<unknown>);
}

/**
 * iterableItems for the elements of a set: a list's items are counted
 * against the load's maxLongKeys (a dict's keys, a set's elements and a
 * string's characters were, or cannot be long).
 */
function hashedItems(v: unknown, what: string, context: LoadContext = UNLIMITED_LOAD_CONTEXT): Iterable<unknown> {
  const items = iterableItems(v, what, context);
  if (Array.isArray(items)) context.keys?.(items);
  return items;
}

/** What a handler charges per item of a collection it makes (a slot, an element's share of a Set). */
const ITEM_COST = 16;
/** What one character of a string costs as an item of its own (a one-character heap string). */
const CHAR_STRING_COST = 24;

/**
 * Set elements with each NaN as its own PyFloat: Python tells NaNs apart by
 * identity, a JS Set merges them. Bytes and strings hold no NaN and go to
 * the Set as they are (an intermediate array of their items made
 * `set(64 KiB bytes)` through the memo cost 700 ms per budget's worth).
 */
function distinctNaN(items: Iterable<unknown>): Iterable<unknown> {
  if (items instanceof Uint8Array || typeof items === 'string') return items;
  return Array.from(items, (v) => (v !== v ? new PyFloat(NaN) : v));
}

/**
 * Registers the standard-library handlers in `registry`. The default registry
 * has them; call this on a fresh `new PickleRegistry()` to start from the
 * same set.
 */
export function installStdlib(registry: PickleRegistry): void {
  const r = registry;
  // builtins
  r.register('builtins', 'set', { call: (a, _g, context) => new Set(distinctNaN(hashedItems(a[0], 'set', context))) });
  // list(items): how CPython's managers send dict views (`rebuild_as_list`, spec/manager.md).
  r.register('builtins', 'list', { call: (a, _g, context) => Array.from(iterableItems(a[0], 'list', context)) });
  r.register('builtins', 'frozenset', { call: (a, _g, context) => new PyFrozenSet(distinctNaN(hashedItems(a[0], 'frozenset', context))) });
  r.register('builtins', 'bytearray', {
    call: (a, _g, context) => {
      const b = bytesFromArgs(a, 'bytearray', context);
      // bytearray(n) is n zeros already: made as a bytearray, not copied into one.
      return isInt(a[0]) ? new PyByteArray(b.buffer as ArrayBuffer, b.byteOffset, b.length) : PyByteArray.fromBytes(b);
    },
  });
  r.register('builtins', 'bytes', {
    call: (a, _g, context) => {
      const b = bytesFromArgs(a, 'bytes', context);
      return b === a[0] ? Uint8Array.from(b) : b;
    },
  });
  r.register('builtins', 'complex', { call: (a) => new PyComplex(a.length > 0 ? toFloat(a[0]) : 0, a.length > 1 ? toFloat(a[1]) : 0) });
  r.register('builtins', 'slice', { call: (a) => (a.length === 1 ? new PySlice(null, a[0], null) : new PySlice(a[0], a[1], a.length > 2 ? a[2] : null)) });
  r.register('builtins', 'range', {
    call: (a) => {
      if (!a.every(isInt) || a.length < 1 || a.length > 3) throw new TypeError('range expects 1 to 3 integers');
      return a.length === 1 ? new PyRange(0, a[0] as number, 1) : new PyRange(a[0] as number, a[1] as number, (a[2] as number | undefined) ?? 1);
    },
  });
  for (const name of BUILTIN_EXCEPTIONS) r.registerException('builtins', name);
  // pickle's own errors, under the module CPython pickles them with (_pickle) and the one they are
  // known by (pickle, as billiard-ts's classes pickle): the billiard-ts classes, with the args kept.
  const errorText = (a: PyTuple): string => (a.length === 0 ? '' : String(a[0]));
  r.registerError(['pickle.PickleError', '_pickle.PickleError'], (a) => new PickleError(errorText(a)));
  r.registerError(['pickle.PicklingError', '_pickle.PicklingError'], (a) => new PicklingError(errorText(a)));
  r.registerError(['pickle.UnpicklingError', '_pickle.UnpicklingError'], (a) => new UnpicklingError(errorText(a)));
  // _codecs.encode: protocol 0-2 bytes
  r.register('_codecs', 'encode', {
    call: (a, _g, context) => {
      if (typeof a[0] !== 'string') throw new TypeError('_codecs.encode expects a str');
      return encodeStr(a[0], typeof a[1] === 'string' ? a[1] : 'utf-8', context);
    },
  });
  // copyreg._reconstructor: protocol 0-1 objects of registered classes
  r.register('copyreg', '_reconstructor', {
    call: (a, _g, context) => {
      const [cls, base, state] = a;
      if (cls instanceof PyGlobal && base instanceof PyGlobal && base.module === 'builtins' && base.name === 'object' && state == null) {
        const h = handlerOf(cls);
        if (h?.newobj) return h.newobj(EMPTY_TUPLE, null, cls, context);
      }
      return NOT_HANDLED;
    },
  });
  // datetime
  r.register('datetime', 'datetime', { call: loadDatetime });
  r.register('datetime', 'date', { call: loadDate });
  r.register('datetime', 'time', { call: loadTime });
  r.register('datetime', 'timedelta', {
    call: (a) => new PyTimedelta(a.length > 0 ? toNumberInt(a[0], 'days') : 0, a.length > 1 ? toNumberInt(a[1], 'seconds') : 0, a.length > 2 ? toNumberInt(a[2], 'microseconds') : 0),
  });
  r.register('datetime', 'timezone', {
    call: (a) => {
      if (!(a[0] instanceof PyTimedelta)) throw new TypeError('timezone() argument 1 must be datetime.timedelta');
      if (a.length > 1 && typeof a[1] !== 'string') throw new TypeError('timezone() argument 2 must be str');
      const off = a[0];
      if (a.length === 1 && off.days === 0 && off.seconds === 0 && off.microseconds === 0) return PyTimezone.utc;
      return new PyTimezone(off, a[1] as string | undefined);
    },
  });
  // decimal
  r.register('decimal', 'Decimal', {
    call: (a) => {
      if (typeof a[0] === 'string') return new PyDecimal(a[0]);
      if (isInt(a[0])) return new PyDecimal(String(a[0]));
      throw new TypeError('Decimal expects a str');
    },
  });
  // collections
  r.register('collections', 'OrderedDict', { call: (a) => new PyOrderedDict(a.length > 0 ? dictEntries(a[0]) : undefined) });
  r.register('collections', 'defaultdict', { call: (a) => new PyDefaultDict(a.length > 0 ? a[0] : null, a.length > 1 ? dictEntries(a[1]) : undefined) });
  r.register('collections', 'Counter', {
    call: (a) => {
      const c = new PyCounter();
      if (a.length > 0) for (const [k, v] of dictEntries(a[0])) c.set(k, v as number);
      return c;
    },
  });
  r.register('collections', 'deque', {
    call: (a, _g, context) => {
      const maxlen = a.length > 1 && a[1] !== null ? toNumberInt(a[1], 'maxlen') : null;
      return PyDeque.create(a.length > 0 ? iterableItems(a[0], 'deque', context) : [], maxlen);
    },
  });
  // uuid
  r.register('uuid', 'UUID', { newobj: () => new PyUUID(0n) });
}



