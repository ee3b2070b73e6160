/**
 * The unpickler: a loop over the opcodes of protocols 0 to 5 with an explicit
 * stack, mark stack and memo, as CPython's C unpickler runs them
 * (spec/pickle.md sections 1-3 and 11).
 *
 * Safety rules, each tested in test/pickle-bad-input.test.ts:
 * - no recursion: nesting depth costs heap, never call stack;
 * - every length is checked against the remaining input before anything is
 *   allocated for it;
 * - the memo is sparse (no index allocates in proportion to itself), and a
 *   load is bounded in memo entries, open MARKs and allocation (maxMemo,
 *   maxMarks, maxAllocBytes; test/pickle-limits.test.ts), handlers included;
 * - no prototype is ever written: dict keys go into null-prototype objects or
 *   Maps;
 * - globals resolve only through the registry; unregistered ones stay inert;
 * - every failure is an UnpicklingError (with a code) or an EOFError.
 */

import { SHAPE_MAX_KEYS, SHAPE_MIN_KEYS, shapeSetter, type ShapeSetter, watchShape } from './dict-shapes.js';
import {
  EOFError,
  UnpicklingAttributeError,
  UnpicklingError,
  UnpicklingOverflowError,
  UnpicklingTypeError,
  UnpicklingUnicodeDecodeError,
  UnpicklingValueError,
  type UnpicklingErrorClass,
  type UnpicklingErrorCode,
} from './errors.js';
import { parsePythonFloat } from './float-repr.js';
import { opName } from './opcodes.js';
import { IMPORT_MAPPING, NAME_MAPPING } from './python-tables.js';
import { handlerOf, NOT_HANDLED, type LoadContext, type PickleRegistry } from './registry.js';
import { KeyChains, keyHash, LONG_KEY_CHARS } from './v8-hash.js';
import { defaultRegistry } from './default-registry.js';
import {
  EMPTY_TUPLE,
  makeTuple,
  PickleBuffer,
  PyByteArray,
  PyDict,
  PyFloat,
  PyFrozenSet,
  PyGlobal,
  PyObject,
  PyTuple,
  isKnownFunction,
  setState,
} from './types.js';
import { decodeLatin1, decodeUtf8, Utf8Error } from './utf8.js';

/** Options of {@link loads} and {@link Unpickler}. Every field has a default. */
export interface UnpicklerOptions {
  /** Where globals are resolved. Defaults to the package's default registry (stdlib handlers). */
  registry?: PickleRegistry;
  /** Out-of-band buffers for protocol 5's NEXT_BUFFER, in order. Defaults to none. */
  buffers?: Iterable<unknown>;
  /** Resolves persistent ids (PERSID/BINPERSID). Defaults to none: such pickles are rejected. */
  persistentLoad?: (pid: unknown) => unknown;
  /** Map Python 2 names (`__builtin__`, `copy_reg`...) at protocols 0-2, as Python's `fix_imports`. Defaults to true. */
  fixImports?: boolean;
  /**
   * How Python 2 `str` (STRING, BINSTRING, SHORT_BINSTRING) is decoded:
   * `'ascii'` (Python's default), `'latin1'`, `'utf-8'`, or `'bytes'` to keep
   * them as bytes. Defaults to `'ascii'`.
   */
  encoding?: 'ascii' | 'latin1' | 'utf-8' | 'bytes';
  /**
   * `'auto'` (default): a dict whose keys are all strings, none of which looks
   * like an array index, becomes a null-prototype object; any other dict a
   * {@link PyDict}. `'map'`: every dict is a {@link PyDict}.
   */
  dicts?: 'auto' | 'map';
  /**
   * `'wrap-integral'` (default): an integral float (`0.0`, `2.0`, `-0.0`) loads
   * as a {@link PyFloat}, so that it pickles back as a float, not an int;
   * other floats load as numbers. `'number'`: every float a plain number
   * (lossy: `2.0` then pickles back as the int `2`).
   */
  floats?: 'number' | 'wrap-integral';
  /** `'auto'` (default): safe integers as `number`, others as `bigint`. `'bigint'`: every int a `bigint`. */
  ints?: 'auto' | 'bigint';
  /**
   * Reject what CPython tolerates: data after STOP, a stack left with more
   * than the result, unregistered globals (`FORBIDDEN_GLOBAL`). Defaults to false.
   */
  strict?: boolean;
  /** Decimal digits allowed in a text int (INT, LONG), as Python's `sys.int_max_str_digits`. Defaults to 4300. */
  maxLongDigits?: number;
  /** Bytes allowed in a binary int (LONG1, LONG4). Defaults to 16 MiB. */
  maxLongBytes?: number;
  /**
   * The allocation budget of one load, in bytes: what the load may allocate
   * in proportion to a length or count it reads (string and bytes payloads,
   * int digits, the items of MARK batches, memo entries, the arguments of
   * every registered handler it calls and what handlers charge through
   * {@link LoadContext.alloc}, such as `bytearray(n)`). Over it, the load
   * fails with `UnpicklingError` code `LIMIT`. Defaults to 64 MiB plus 16
   * bytes per byte of input (a 64 MiB pickle may allocate 1088 MiB; a 2 KB one
   * about 64 MiB). `Infinity` turns it off. See src/pickle/README.md, "Limits".
   */
  maxAllocBytes?: number;
  /** Memo entries a load may make (PUT, BINPUT, LONG_BINPUT, MEMOIZE). Defaults to 2**24 (16,777,216). */
  maxMemo?: number;
  /** MARKs open at once (the mark stack's depth). Defaults to 2**20 (1,048,576: CPython loads a million nested MARKs). */
  maxMarks?: number;
  /**
   * The deepest nesting of containers the result may have (a list in a list
   * is depth 2), for consumers that walk values recursively (JSON.stringify,
   * a recursive pickler, a pretty-printer): over it, `LIMIT`. Checked after
   * the load by a walk that costs about as much as the load; shared and
   * recursive references are walked once. Defaults to Infinity (not
   * checked): loading itself never recurses, and CPython loads a 200,000-deep
   * list.
   */
  maxDepth?: number;
  /**
   * Strings longer than {@link LONG_KEY_CHARS} (16,383) characters a load may
   * make keys of dicts or elements of sets, all together. V8 hashes such a
   * string by its length alone, so each one is compared in full with every
   * other of its length that a dict, a set or the engine's table of property
   * names holds: n of them cost n * n / 2 comparisons (2,000 keys of 20,000
   * characters, a 40 MB pickle: 6.6 s). Over it, `LIMIT`. Defaults to 64
   * (a 64 MiB pickle then costs at most about 0.3 s of such comparisons).
   */
  maxLongKeys?: number;
  /**
   * Comparisons V8 may make between number or bigint keys of the dicts and
   * sets of one load, as counted past 8 keys a bucket. V8 hashes numbers and
   * bigints with a fixed function, so crafted keys (or bigints equal in
   * their low 64 bits, such as `k << 64`) can all land in one bucket of a
   * hash table, where each is compared with every other: a dict of 40,000
   * keys `k << 64` took 5.9 s to load, and the cost grows with the square
   * of their number. The load computes V8's hashes of a sample of the keys
   * of tables of 64 keys or more and counts the keys that share buckets
   * (random keys: about 0.05 a key); over this, `LIMIT`. Defaults to
   * 1,048,576 plus 4 per byte of input (src/pickle/README.md, "Number keys").
   */
  maxHashCollisions?: number;
  /**
   * Return `bytes` as views into the input instead of copies: true for all
   * of them, or a number for those of at least that many bytes (a view keeps
   * the whole input alive, so a few large ones are where it pays). Defaults
   * to false (copies). A Connection loads a large message it assembled into
   * a buffer of its own with 1 MiB here.
   */
  zeroCopy?: boolean | number;
}

const MAX_JS_STRING_UNITS = 0x1fffffe8;



function zeroCopyMin(v: boolean | number | undefined): number {
  if (v === undefined || v === false) return Infinity;
  if (v === true) return 0;
  if (typeof v !== 'number' || Number.isNaN(v) || v < 0) throw new RangeError('options.zeroCopy must be a boolean or a non-negative number of bytes');
  return v;
}

type StringEncoding = 'ascii' | 'latin1' | 'utf-8' | 'bytes';

interface ResolvedOptions {
  fixImports: boolean;
  encoding: StringEncoding;
  dicts: 'auto' | 'map';
  floats: 'number' | 'wrap-integral';
  ints: 'auto' | 'bigint';
  strict: boolean;
  maxLongDigits: number;
  maxLongBytes: number;
  /** `undefined`: the default, which depends on the input's length. */
  maxAllocBytes: number | undefined;
  maxMemo: number;
  maxMarks: number;
  maxDepth: number;
  maxLongKeys: number;
  /** `undefined`: the default, which depends on the input's length. */
  maxHashCollisions: number | undefined;
  /** Bytes of at least this length are views (Infinity: none). */
  zeroCopy: number;
}

const DEFAULTS: Readonly<ResolvedOptions> = {
  fixImports: true,
  encoding: 'ascii',
  dicts: 'auto',
  floats: 'wrap-integral',
  ints: 'auto',
  strict: false,
  maxLongDigits: 4300,
  maxLongBytes: 16 * 1024 * 1024,
  maxAllocBytes: undefined,
  maxMemo: 2 ** 24,
  maxMarks: 2 ** 20,
  maxDepth: Infinity,
  maxLongKeys: 64,
  maxHashCollisions: undefined,
  zeroCopy: Infinity,
};

/** The default allocation budget: this much, plus {@link ALLOC_PER_INPUT_BYTE} per byte of input. */
const ALLOC_BASE = 64 * 1024 * 1024;
const ALLOC_PER_INPUT_BYTE = 16;
/** The default of maxHashCollisions: this much, plus {@link HASH_PER_INPUT_BYTE} per byte of input. */
const HASH_BASE = 1 << 20;
const HASH_PER_INPUT_BYTE = 4;
/**
 * One number or bigint key in this many, chosen at random, is counted
 * against maxHashCollisions (a power of two): crafted keys fill a bucket
 * whichever are counted, and random keys cost a few nanoseconds each rather
 * than the 15 to 50 of hashing and counting every one.
 */
const SAMPLE_EVERY = 8;
/** A random 32-bit number shifted right by this is a gap between counted keys, less one: 0 to 2 * SAMPLE_EVERY - 1. */
const SAMPLE_GAP_SHIFT = 32 - Math.log2(2 * SAMPLE_EVERY);
/** What a counted key's comparisons past CHAIN_FREE are charged: it stands for SAMPLE_EVERY keys, and its bucket's count for SAMPLE_EVERY times as many. */
const SAMPLE_COST = SAMPLE_EVERY * SAMPLE_EVERY;
/** Counted keys a bucket may hold before a new one is charged. */
const CHAIN_FREE = 8;
/** Tables with fewer keys than this are not counted (at most 64 * 64 / 2 comparisons). */
const CHAINS_MIN = 64;
/** What the budget is charged per item: a list or tuple slot; a dict entry or set element. */
const SLOT_COST = 8;
const ENTRY_COST = 16;
/** A memo entry far past the memo's end lives in a Map: this is its charge. */
const FAR_MEMO_COST = 64;
/**
 * What an object an opcode makes out of (almost) no input costs: its size in
 * V8's heap, measured. Without these, one input byte made a 152-byte empty
 * Set (EMPTY_SET), so a 64 MiB message of them asked for 10 GB (the fuzzer
 * found a megabyte of them taking a second of garbage collection).
 */
const LIST_COST = 32;
const TUPLE_COST = 48;
const DICT_COST = 96;
const MAP_COST = 192;
const SET_COST = 160;
const OBJECT_COST = 128;

/** The containers directly inside `v` (for checkDepth), or null when `v` holds none. */
function childrenOf(v: unknown): Iterable<unknown> | null {
  if (v === null || typeof v !== 'object' || v instanceof Uint8Array || v instanceof PyGlobal || v instanceof PyFloat) return null;
  if (Array.isArray(v)) return v;
  if (v instanceof Map) return [...v.keys(), ...v.values()];
  if (v instanceof Set) return v;
  if (v instanceof PyObject) return [v.callable, v.args, v.kwargs, v.state, v.listItems, v.dictItems];
  return Object.values(v as Record<string, unknown>);
}

/**
 * Throws LIMIT when `value` nests containers deeper than `max`. Iterative
 * (a depth-first walk with an explicit stack); each object is walked once,
 * at the depth it is first reached.
 */
function checkDepth(value: unknown, max: number): void {
  const seen = new Set<unknown>();
  const stack: Array<[unknown, number]> = [[value, 1]];
  while (stack.length > 0) {
    const [v, depth] = stack.pop()!;
    const children = childrenOf(v);
    if (children === null || seen.has(v)) continue;
    seen.add(v);
    if (depth > max) throw new UnpicklingError(`the result nests containers deeper than maxDepth (${max})`, { code: 'LIMIT' });
    for (const c of children) if (c !== null && typeof c === 'object') stack.push([c, depth + 1]);
  }
}

/** The key of a far memo index (see Unpickler's #memoFar): not an array-index string, hashed with the process's seed. */
function farKey(idx: number): string {
  return `m${idx}`;
}

/** The names of the options that bound what one load may cost. */
const LIMIT_NAMES = ['maxLongDigits', 'maxLongBytes', 'maxAllocBytes', 'maxMemo', 'maxMarks', 'maxDepth', 'maxLongKeys', 'maxHashCollisions'] as const;
type LimitName = (typeof LIMIT_NAMES)[number];

/**
 * The options of {@link UnpicklerOptions} that bound what one load may cost.
 * The layers that load what peers send (the Pool, the managers, the queues,
 * the Celery worker) take them as `loadLimits`, for data that honestly needs
 * more than the defaults allow.
 */
export type LoadLimits = Pick<UnpicklerOptions, LimitName>;

/** Reads a limit option, `undefined` when not given: a non-negative integer or Infinity. */
function limitOption(options: UnpicklerOptions | undefined, name: LimitName, where = 'options'): number | undefined {
  const v = options?.[name];
  if (v === undefined) return undefined;
  if (typeof v !== 'number' || !(v >= 0) || (!Number.isInteger(v) && v !== Infinity)) {
    throw new TypeError(`${where}.${name} must be a non-negative integer or Infinity, got ${String(v)}`);
  }
  return v;
}

/**
 * Checks a `loadLimits` option (`where` names it in errors): an object of
 * {@link LoadLimits} only, each a non-negative integer or Infinity. Returns
 * a frozen copy of the limits given, plain data that pickles to a child
 * process (and loads() resolves once), or undefined for none. @internal
 */
export function checkLoadLimits(value: unknown, where: string): Readonly<LoadLimits> | undefined {
  if (value === undefined || value === null) return undefined;
  if (typeof value !== 'object' || Array.isArray(value)) throw new TypeError(`${where} must be an object of unpickler limits, got ${String(value)}`);
  const out: Record<string, number> = {};
  for (const key of Object.keys(value)) {
    if (!(LIMIT_NAMES as readonly string[]).includes(key)) {
      throw new TypeError(`${where}.${key} is not a load limit (the limits: ${LIMIT_NAMES.join(', ')})`);
    }
    const v = limitOption(value as UnpicklerOptions, key as LimitName, where);
    if (v !== undefined) out[key] = v;
  }
  return Object.keys(out).length === 0 ? undefined : Object.freeze(out);
}

/** A stable text of checked limits (for keying things by them); '' for none. @internal */
export function loadLimitsKey(limits: Readonly<LoadLimits> | undefined): string {
  let k = '';
  if (limits === undefined) return k;
  for (const name of LIMIT_NAMES) if (limits[name] !== undefined) k += `${name}=${limits[name]};`;
  return k;
}

/**
 * The approximate size of a handler argument, charged before a registered
 * handler runs (most copy their arguments): a string's or bytes' length, a
 * container's items. Shallow: nested values were charged when they were made.
 */
function argSize(v: unknown): number {
  if (typeof v === 'string') return v.length * 2;
  if (v === null || typeof v !== 'object') return 0;
  if (v instanceof Uint8Array) return v.length;
  if (Array.isArray(v)) return v.length * SLOT_COST;
  if (v instanceof Map || v instanceof Set) return v.size * ENTRY_COST;
  if (Object.getPrototypeOf(v) === null) {
    let n = 0;
    for (const _ in v) n++;
    return n * ENTRY_COST;
  }
  return 0;
}

/** The 9th byte of a LONG1 as the signed top of a 72-bit integer, precomputed. */
const TOP_BYTE_72: readonly bigint[] = Array.from({ length: 256 }, (_, b) => BigInt.asIntN(72, BigInt(b) << 64n));

/**
 * The memo's dense array shared by loads, or null while one is using it
 * (loads can nest through handlers). Slots past a load's entries are always
 * `undefined`, so reading one directly is a miss.
 */
let sharedMemo: unknown[] | null = [];
/** Memo arrays longer than this are not kept between loads. */
const MEMO_KEEP_LIMIT = 1 << 20;
/** Python's `sys.maxsize` (2**63 - 1): a PUT or GET index above it is CPython's OverflowError. */
const PY_SSIZE_MAX = 2 ** 63;

/** Raised inside a pass that must be run again with some dicts forced to maps. */
class RestartWithMaps {
  constructor(readonly ordinals: Set<number>) {}
}

/** True for keys JavaScript objects would reorder (canonical array indexes). */
function isIndexKey(k: string): boolean {
  const c = k.charCodeAt(0);
  if (c < 48 || c > 57) return false;
  if (k.length === 1) return true;
  if (c === 48 || k.length > 10) return false;
  for (let i = 1; i < k.length; i++) {
    const d = k.charCodeAt(i);
    if (d < 48 || d > 57) return false;
  }
  return Number(k) < 4294967295;
}

/** True when `a` and `b` are the same callable: one object, or globals of one name. */
function sameCallable(a: unknown, b: unknown): boolean {
  return a === b || (a instanceof PyGlobal && b instanceof PyGlobal && a.module === b.module && a.name === b.name);
}

/** True when `v` is a Python value that cannot be a dict key or set element. */
function isUnhashable(v: unknown): boolean {
  if (v === null || typeof v !== 'object') return false;
  if (v instanceof PyTuple || v instanceof PyFrozenSet || v instanceof PyFloat || v instanceof PyGlobal) return false;
  if (v instanceof Uint8Array) return v instanceof PyByteArray;
  if (Array.isArray(v) || v instanceof Map || v instanceof Set) return true;
  const proto = Object.getPrototypeOf(v);
  return proto === null || proto === Object.prototype;
}

function typeName(v: unknown): string {
  if (v === null) return 'None';
  if (Array.isArray(v)) return v instanceof PyTuple ? 'tuple' : 'list';
  if (v instanceof PyDict) return 'dict';
  if (v instanceof Uint8Array) return v instanceof PyByteArray ? 'bytearray' : 'bytes';
  if (v instanceof PyGlobal) return `global ${v.module}.${v.name}`;
  if (v instanceof PyObject) return `object ${v.pyType ?? ''}`.trim();
  if (typeof v === 'object') {
    const p = Object.getPrototypeOf(v);
    if (p === null || p === Object.prototype) return 'dict';
    return (p as { constructor?: { name?: string } }).constructor?.name ?? 'object';
  }
  if (typeof v === 'number') return Number.isInteger(v) ? 'int' : 'float';
  if (typeof v === 'bigint') return 'int';
  if (typeof v === 'string') return 'str';
  if (typeof v === 'boolean') return 'bool';
  return typeof v;
}

/** Plain arrays (lists): APPEND/APPENDS push onto them directly; tuples and other objects go to #appendOther. */
const ARRAY_PROTO = Array.prototype;

/**
 * Object dicts are made by `new NullDict()` then given a null prototype,
 * rather than from `{}`: V8 gives `{}` room for 4 properties inside the
 * object, and a record with more gets a separate property array (an extra
 * allocation), while objects of a constructor get the room V8's slack
 * tracking settles on over its first 7 instances. The loop below makes those
 * settle at 8 properties (88 bytes per object; the benchmark's 6-key rows
 * took 96 with `{}`). Loads of the benchmark payload, alternating calls in
 * one process: 0.85-0.98x the time on min, 0.88-0.91x on median.
 */
function NullDict(this: Record<string, unknown>): void {}
const NullDictClass = NullDict as unknown as new () => Record<string, unknown>;
for (let i = 0; i < 8; i++) {
  const o = new NullDictClass();
  Object.setPrototypeOf(o, null);
  for (let k = 0; k < 8; k++) o[`k${k}`] = k;
}

function newObjectDict(): Record<string, unknown> {
  const o = new NullDictClass();
  Object.setPrototypeOf(o, null);
  return o;
}

/** The data of a reused Unpickler between loads. */
const EMPTY_BYTES = new Uint8Array(0);

/** Decodes a big-endian float64 through a scratch array (no DataView per load); the host's byte order decides the copy. */
const F64 = new Float64Array(1);
const F64_BYTES = new Uint8Array(F64.buffer);
const LITTLE_ENDIAN = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1;
export function f64be(d: Uint8Array, at: number): number {
  const b = F64_BYTES;
  if (LITTLE_ENDIAN) {
    b[0] = d[at + 7]!;
    b[1] = d[at + 6]!;
    b[2] = d[at + 5]!;
    b[3] = d[at + 4]!;
    b[4] = d[at + 3]!;
    b[5] = d[at + 2]!;
    b[6] = d[at + 1]!;
    b[7] = d[at]!;
  } else {
    for (let i = 0; i < 8; i++) b[i] = d[at + i]!;
  }
  return F64[0]!;
}

/** The little-endian uint32 at `at` (the caller checked the bounds). */
function u32le(d: Uint8Array, at: number): number {
  return (d[at]! | (d[at + 1]! << 8) | (d[at + 2]! << 16)) + d[at + 3]! * 0x1000000;
}

/** The little-endian int32 at `at`. */
function i32le(d: Uint8Array, at: number): number {
  return d[at]! | (d[at + 1]! << 8) | (d[at + 2]! << 16) | (d[at + 3]! << 24);
}

/** Resolved options of frozen option objects (the caller cannot change them afterwards). */
const resolvedFrozen = new WeakMap<UnpicklerOptions, ResolvedOptions>();

/**
 * The options with their defaults filled in and checked. No options: the
 * shared defaults. A frozen options object (`Object.freeze({ registry })`,
 * as the pool and the managers pass theirs) is resolved once.
 */
function resolveOptions(options: UnpicklerOptions | undefined): ResolvedOptions {
  if (options === undefined) return DEFAULTS;
  const frozen = Object.isFrozen(options);
  if (frozen) {
    const hit = resolvedFrozen.get(options);
    if (hit !== undefined) return hit;
  }
  const resolved: ResolvedOptions = {
    fixImports: options.fixImports ?? DEFAULTS.fixImports,
    encoding: options.encoding ?? DEFAULTS.encoding,
    dicts: options.dicts ?? DEFAULTS.dicts,
    floats: options.floats ?? DEFAULTS.floats,
    ints: options.ints ?? DEFAULTS.ints,
    strict: options.strict ?? DEFAULTS.strict,
    maxLongDigits: limitOption(options, 'maxLongDigits') ?? DEFAULTS.maxLongDigits,
    maxLongBytes: limitOption(options, 'maxLongBytes') ?? DEFAULTS.maxLongBytes,
    maxAllocBytes: limitOption(options, 'maxAllocBytes') ?? DEFAULTS.maxAllocBytes,
    maxMemo: limitOption(options, 'maxMemo') ?? DEFAULTS.maxMemo,
    maxMarks: limitOption(options, 'maxMarks') ?? DEFAULTS.maxMarks,
    maxDepth: limitOption(options, 'maxDepth') ?? DEFAULTS.maxDepth,
    maxLongKeys: limitOption(options, 'maxLongKeys') ?? DEFAULTS.maxLongKeys,
    maxHashCollisions: limitOption(options, 'maxHashCollisions'),
    zeroCopy: zeroCopyMin(options.zeroCopy),
  };
  if (frozen) resolvedFrozen.set(options, resolved);
  return resolved;
}

/** The Unpickler loads() reuses: null while it is in use, undefined before the first load. */
let spareUnpickler: Unpickler | null | undefined;

/**
 * Reads one pickle. `load()` returns the value; `position` is then the
 * offset just past its STOP opcode (bytes after it are left alone, as
 * Python's `pickle.load` leaves them in the file).
 */
export class Unpickler {
  // Not readonly: loads() reuses one Unpickler for consecutive loads (see loadOnce).
  #data: Uint8Array = EMPTY_BYTES;
  /** A DataView of #data, made when a load first needs one. */
  #view: DataView | null = null;
  #registry: PickleRegistry = defaultRegistry;
  #opts: ResolvedOptions = DEFAULTS;
  #persistentLoad: ((pid: unknown) => unknown) | undefined = undefined;
  #buffers: unknown[] | undefined = undefined;
  #bufferIndex = 0;
  /** The offset of the next byte to read. */
  position = 0;
  #start = 0;

  // Per-pass state.
  #stack: unknown[] = [];
  #marks: number[] = [];
  /**
   * The memo (spec/pickle.md 2.2), sparse and bounded: indexes 0 to
   * #memoLen - 1 are all occupied and live in the dense array #memo; any
   * other index lives in #memoFar. An index is written to the array only when
   * it is #memoLen (the array grows one slot at a time), so no index, however
   * large, allocates in proportion to itself. #memoCount counts the entries
   * of both (MEMOIZE's index). #memoFar is keyed by farKey(index), a string:
   * V8 hashes a number key with a fixed function, so a pickle could choose
   * far indexes that all land in one bucket (16,000 of them, 112 KB, took
   * 600 ms to load instead of 8, and the cost grows with their square);
   * string hashes are seeded per process.
   */
  #memo: unknown[] = [];
  #memoLen = 0;
  #memoFar: Map<string, unknown> | null = null;
  #memoCount = 0;
  /** What is left of the allocation budget (maxAllocBytes) for this load. */
  #budget = 0;
  /** Strings longer than LONG_KEY_CHARS made keys or set elements on this pass (maxLongKeys). */
  #longKeys = 0;
  /** What is left of maxHashCollisions on this pass. */
  #hashBudget = 0;
  /** How the number and bigint keys of this pass's dicts and sets share V8's buckets (maxHashCollisions). */
  #chains: Map<object, KeyChains> | null = null;
  /** The counts of a table that was empty when its first keys came (see #chainsOf). */
  readonly #freshChains = new KeyChains();
  /** The state of the xorshift generator that picks the keys counted (seeded for each pass). */
  #rng = 1;
  /** Keys until the next one counted (see #countKeys). */
  #skip = 1;
  readonly #context: LoadContext = {
    alloc: (bytes: number): void => this.#charge(bytes, 'a handler'),
    keys: (items: Iterable<unknown>): void => {
      const list = Array.isArray(items) ? items : Array.from(items);
      for (const k of list) if (typeof k === 'string' && k.length > LONG_KEY_CHARS) this.#longKey();
      if (list.length >= CHAINS_MIN) this.#countKeys(null, list, 0, 1);
    },
  };
  #proto = 0;
  /** Dict-ordinals forced to PyDict on this pass (see #convertDict). */
  #forced: Set<number> | null = null;
  #dictOrdinal = 0;
  /** The object dicts of this pass, in creation order (for restarts). */
  #autoDicts: unknown[] = [];
  /** Index of each object dict in #autoDicts, built the first time a restart needs it. */
  #autoIndex: Map<unknown, number> | null = null;
  /** Object dicts pushed again by GET or DUP: other objects may hold them. */
  #escaped: Set<unknown> | null = null;
  /** Object dicts replaced by a PyDict: memo reads of the old object give the new one. */
  #redirect: Map<unknown, unknown> | null = null;
  #restartOrdinals: Set<number> | null = null;
  #passes = 0;
  #opPos = 0;
  /** The offset just past the last REDUCE, NEWOBJ or NEWOBJ_EX (POP checks whether it drops that result). */
  #madeAt = -1;

  constructor(data: Uint8Array, options?: UnpicklerOptions) {
    this.#init(data, options);
  }

  #init(data: Uint8Array, options: UnpicklerOptions | undefined): void {
    if (!(data instanceof Uint8Array)) throw new TypeError('loads() needs a Uint8Array');
    // A plain view: Buffer#slice (and other subclasses) would not copy, and would leak their class.
    if (Object.getPrototypeOf(data) !== Uint8Array.prototype) data = new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
    this.#data = data;
    this.#view = null;
    this.#registry = options?.registry ?? defaultRegistry;
    this.#opts = resolveOptions(options);
    this.#persistentLoad = options?.persistentLoad;
    this.#buffers = options?.buffers === undefined ? undefined : Array.from(options.buffers);
    this.#bufferIndex = 0;
    this.position = 0;
    this.#start = 0;
    this.#forced = null;
    this.#passes = 0;
    this.#madeAt = -1;
  }

  #dataView(): DataView {
    const d = this.#data;
    return (this.#view ??= new DataView(d.buffer, d.byteOffset, d.byteLength));
  }

  /**
   * One load on a reused Unpickler (what `loads()` does): this instance
   * serves the next call once `load()` returned or threw, and holds nothing
   * of the last load meanwhile. A load inside a load (a registered handler
   * calling loads) gets an Unpickler of its own. @internal
   */
  static loadOnce(data: Uint8Array, options: UnpicklerOptions | undefined): unknown {
    if (spareUnpickler === null) return new Unpickler(data, options).load();
    const u = spareUnpickler ?? new Unpickler(EMPTY_BYTES);
    spareUnpickler = null;
    try {
      u.#init(data, options);
      return u.load();
    } finally {
      u.#data = EMPTY_BYTES;
      u.#view = null;
      u.#registry = defaultRegistry;
      u.#persistentLoad = undefined;
      u.#buffers = undefined;
      u.#stack = [];
      u.#marks = [];
      u.#autoDicts = [];
      u.#autoIndex = null;
      u.#escaped = null;
      u.#redirect = null;
      u.#restartOrdinals = null;
      spareUnpickler = u;
    }
  }

  /** Reads the pickle and returns its value. */
  load(): unknown {
    const start = this.position;
    // Borrow the shared memo array (kept between loads so that V8 need not
    // allocate, and the OS fault in, a new large one each time).
    const borrowed = sharedMemo !== null;
    const memo = sharedMemo ?? [];
    sharedMemo = null;
    this.#budget = this.#opts.maxAllocBytes ?? ALLOC_BASE + ALLOC_PER_INPUT_BYTE * (this.#data.length - start);
    try {
      return this.#loadWith(start, memo);
    } finally {
      // Drop references to this load's objects (the array only ever holds #memoLen of them).
      memo.fill(undefined, 0, this.#memoLen);
      this.#memoLen = 0;
      this.#memoFar = null;
      this.#chains = null;
      if (borrowed) sharedMemo = memo.length <= MEMO_KEEP_LIMIT ? memo : [];
    }
  }

  #loadWith(start: number, memo: unknown[]): unknown {
    for (;;) {
      this.#resetPass(start, memo);
      try {
        const value = this.#run();
        if (this.#restartOrdinals) {
          // Some dict became a Map after other objects took references to it:
          // run again with that dict created as a Map from the start.
          throw new RestartWithMaps(this.#restartOrdinals);
        }
        if (this.#opts.maxDepth !== Infinity) checkDepth(value, this.#opts.maxDepth);
        return value;
      } catch (e) {
        if (e instanceof RestartWithMaps) {
          if (++this.#passes > 8) throw new UnpicklingError('dicts keep changing representation', { code: 'LIMIT' });
          const merged = new Set([...(this.#forced ?? []), ...e.ordinals]);
          this.#forced = merged;
          continue;
        }
        throw this.#normalizeError(e);
      }
    }
  }

  #resetPass(start: number, memo: unknown[]): void {
    const forced = this.#forced;
    this.position = start;
    this.#stack = [];
    this.#marks = [];
    memo.fill(undefined, 0, this.#memoLen);
    this.#memo = memo;
    this.#memoLen = 0;
    this.#memoFar = null;
    this.#memoCount = 0;
    this.#longKeys = 0;
    this.#hashBudget = this.#opts.maxHashCollisions ?? HASH_BASE + HASH_PER_INPUT_BYTE * (this.#data.length - start);
    this.#chains = null;
    this.#rng = (Math.random() * 2 ** 32) | 0 || 1;
    this.#skip = 1 + Math.floor(Math.random() * SAMPLE_EVERY);
    this.#proto = 0;
    this.#dictOrdinal = 0;
    this.#autoDicts = [];
    this.#autoIndex = null;
    this.#escaped = null;
    this.#redirect = null;
    this.#restartOrdinals = null;
    this.#bufferIndex = 0;
    this.#forced = forced;
  }

  #normalizeError(e: unknown): Error {
    if (e instanceof UnpicklingError || e instanceof EOFError) return e;
    if (e instanceof RangeError && /Invalid string length|Maximum BigInt|too big|Array buffer allocation/i.test(e.message)) {
      return new UnpicklingError(`resource limit hit at offset ${this.#opPos}: ${e.message}`, { code: 'LIMIT', cause: e, position: this.#opPos });
    }
    return new UnpicklingError(`internal error at offset ${this.#opPos}: ${(e as Error)?.message ?? String(e)}`, { code: 'INTERNAL', cause: e, position: this.#opPos });
  }

  // ------------------------------------------------------------ errors

  /**
   * Throws an UnpicklingError: of class `as` where CPython raises a builtin
   * exception (spec/pickle.md 11.1; `DECODE` is always UnicodeDecodeError).
   */
  #fail(code: UnpicklingErrorCode, message: string, as?: UnpicklingErrorClass): never {
    const cls = as ?? (code === 'DECODE' ? UnpicklingUnicodeDecodeError : UnpicklingError);
    throw new cls(`${message} (opcode ${opName(this.#data[this.#opPos]!)} at offset ${this.#opPos})`, { code, position: this.#opPos });
  }

  /** Counts a key or set element longer than LONG_KEY_CHARS (maxLongKeys). */
  #longKey(): void {
    if (++this.#longKeys > this.#opts.maxLongKeys) {
      this.#fail('LIMIT', `more than maxLongKeys (${this.#opts.maxLongKeys}) dict keys or set elements longer than ${LONG_KEY_CHARS} characters`);
    }
  }

  /**
   * Counts the number and bigint keys at `items[from]`, `items[from + step]`,
   * ... against maxHashCollisions before they go into `table` (a Map or a
   * Set this pass fills; null: a table about to be made of them). One key in
   * about SAMPLE_EVERY is counted, chosen at random.
   */
  #countKeys(table: Map<unknown, unknown> | Set<unknown> | null, items: unknown[], from: number, step: number): void {
    let chains: KeyChains | null = null;
    let skip = this.#skip;
    // A key equal to the one before it is in the table already: it adds no key to a bucket.
    let last: unknown;
    for (let i = from; i < items.length; i += step) {
      const k = items[i];
      if (k === last) continue;
      last = k;
      if (((typeof k === 'number' && k === k) || typeof k === 'bigint') && --skip <= 0) {
        chains ??= this.#chainsOf(table, (items.length - i) / step);
        skip = this.#countPicked(chains, k);
      }
    }
    this.#skip = skip;
  }

  /**
   * The bucket counts of `table`, made from its keys so far on first use;
   * `coming` more keys are about to be added. A table still empty (or about
   * to be made) gets its keys from one batch (a dict of up to 1,000 keys, as
   * CPython writes, gets all of them): it is counted in one shared object,
   * used up before the next batch. Should more keys come later, the table's
   * keys are counted again then.
   */
  #chainsOf(table: Map<unknown, unknown> | Set<unknown> | null, coming: number): KeyChains {
    if (table === null || table.size === 0) return this.#freshChains.reset(coming / SAMPLE_EVERY);
    const all = (this.#chains ??= new Map());
    let chains = all.get(table);
    if (chains === undefined) {
      chains = new KeyChains(0, true);
      all.set(table, chains);
      let skip = this.#skip;
      for (const k of table.keys()) if (((typeof k === 'number' && k === k) || typeof k === 'bigint') && --skip <= 0) skip = this.#countPicked(chains, k);
      this.#skip = skip;
    }
    return chains;
  }

  /** Counts `key`; returns the keys until the next one counted: 1 to 2 * SAMPLE_EVERY, at random. */
  #countPicked(chains: KeyChains, key: number | bigint): number {
    let x = this.#rng;
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    this.#rng = x;
    const held = chains.add(keyHash(key));
    if (held > CHAIN_FREE && (this.#hashBudget -= (held - CHAIN_FREE) * SAMPLE_COST) < 0) {
      const limit = this.#opts.maxHashCollisions ?? HASH_BASE + HASH_PER_INPUT_BYTE * (this.#data.length - this.#start);
      this.#fail(
        'LIMIT',
        `number or bigint keys of a dict or set share V8's hash buckets: comparing them would take more than maxHashCollisions (${limit}) ` +
          '(crafted keys, or bigints equal in their low 64 bits)',
      );
    }
    return 1 + (x >>> SAMPLE_GAP_SHIFT);
  }

  /** Charges `bytes` to the load's allocation budget (maxAllocBytes). */
  #charge(bytes: number, what: string): void {
    if ((this.#budget -= bytes) < 0) this.#overBudget(what);
  }

  #overBudget(what: string): never {
    const limit = this.#opts.maxAllocBytes ?? ALLOC_BASE + ALLOC_PER_INPUT_BYTE * (this.#data.length - this.#start);
    this.#fail('LIMIT', `allocation budget exceeded by ${what}: the load would allocate more than maxAllocBytes (${limit} bytes)`);
  }

  #truncated(): never {
    throw new UnpicklingError(`pickle data was truncated (opcode ${opName(this.#data[this.#opPos]!)} at offset ${this.#opPos})`, {
      code: 'TRUNCATED',
      position: this.#opPos,
    });
  }

  #underflow(): never {
    if (this.#marks.length > 0 && this.#stack.length === this.#marks[this.#marks.length - 1]) {
      this.#fail('UNEXPECTED_MARK', 'unexpected MARK found');
    }
    this.#fail('STACK_UNDERFLOW', 'unpickling stack underflow');
  }

  // ------------------------------------------------------------ the loop

  #run(): unknown {
    const data = this.#data;
    // A load's first floats are decoded through a scratch array; past 8, through a DataView made once.
    let view: DataView | null = null;
    let floats = 0;
    const end = data.length;
    const stack = this.#stack;
    const marks = this.#marks;
    const memo = this.#memo;
    const bigints = this.#opts.ints === 'bigint';
    const wrapFloats = this.#opts.floats === 'wrap-integral';
    const autoDicts = this.#opts.dicts === 'auto';
    const zeroCopy = this.#opts.zeroCopy;
    const maxMarks = this.#opts.maxMarks;
    let pos = this.position;
    let fence = 0;
    let n = 0;

    for (;;) {
      if (pos >= end) {
        this.#opPos = pos;
        throw new EOFError();
      }
      this.#opPos = pos;
      const op = data[pos++]!;
      switch (op) {
        // ---------------------------------------------------- memo (hot)
        case 0x94: {
          // MEMOIZE
          if (stack.length <= fence) this.#underflow();
          const idx = this.#memoCount;
          // With no far entries the count is the dense length: append.
          if (this.#memoFar === null && idx < this.#opts.maxMemo && this.#budget >= SLOT_COST) {
            this.#budget -= SLOT_COST;
            memo[idx] = stack[stack.length - 1];
            this.#memoLen = this.#memoCount = idx + 1;
          } else this.#memoPut(idx, stack[stack.length - 1]);
          break;
        }
        case 0x68: {
          // BINGET
          if (pos >= end) this.#truncated();
          let v = memo[data[pos++]!];
          if (v === undefined) v = this.#memoFarGet(data[pos - 1]!);
          if (typeof v === 'object' && v !== null && Object.getPrototypeOf(v) === null) v = this.#reuseDict(v);
          stack.push(v);
          break;
        }
        case 0x6a: {
          // LONG_BINGET
          if (pos + 4 > end) this.#truncated();
          const idx = u32le(data, pos);
          pos += 4;
          let v = memo[idx];
          if (v === undefined) v = this.#memoFarGet(idx);
          if (typeof v === 'object' && v !== null && Object.getPrototypeOf(v) === null) v = this.#reuseDict(v);
          stack.push(v);
          break;
        }
        case 0x71: {
          // BINPUT
          if (pos >= end) this.#truncated();
          if (stack.length <= fence) this.#underflow();
          n = data[pos++]!;
          // The next dense slot (protocols 1 to 3 put every memo entry so): appended as MEMOIZE appends.
          if (n === this.#memoLen && this.#memoFar === null && n < this.#opts.maxMemo && this.#budget >= SLOT_COST) {
            this.#budget -= SLOT_COST;
            memo[n] = stack[stack.length - 1];
            this.#memoLen = this.#memoCount = n + 1;
          } else this.#memoPut(n, stack[stack.length - 1]);
          break;
        }
        case 0x72: {
          // LONG_BINPUT
          if (pos + 4 > end) this.#truncated();
          if (stack.length <= fence) this.#underflow();
          n = u32le(data, pos);
          pos += 4;
          if (n === this.#memoLen && this.#memoFar === null && n < this.#opts.maxMemo && this.#budget >= SLOT_COST) {
            this.#budget -= SLOT_COST;
            memo[n] = stack[stack.length - 1];
            this.#memoLen = this.#memoCount = n + 1;
          } else this.#memoPut(n, stack[stack.length - 1]);
          break;
        }

        // ---------------------------------------------------- strings and bytes (hot)
        case 0x8c: {
          // SHORT_BINUNICODE
          if (pos >= end) this.#truncated();
          n = data[pos++]!;
          if (pos + n > end) this.#truncated();
          if ((this.#budget -= n) < 0) this.#overBudget('a string');
          stack.push(this.#utf8(pos, pos + n));
          pos += n;
          break;
        }
        case 0x58: {
          // BINUNICODE
          if (pos + 4 > end) this.#truncated();
          n = u32le(data, pos);
          pos += 4;
          if (pos + n > end) this.#truncated();
          if ((this.#budget -= n) < 0) this.#overBudget('a string');
          stack.push(this.#utf8(pos, pos + n));
          pos += n;
          break;
        }
        case 0x43: {
          // SHORT_BINBYTES
          if (pos >= end) this.#truncated();
          n = data[pos++]!;
          if (pos + n > end) this.#truncated();
          if (n >= zeroCopy) stack.push(data.subarray(pos, pos + n));
          else {
            if ((this.#budget -= n) < 0) this.#overBudget('bytes');
            stack.push(data.slice(pos, pos + n));
          }
          pos += n;
          break;
        }
        case 0x42: {
          // BINBYTES
          if (pos + 4 > end) this.#truncated();
          n = u32le(data, pos);
          pos += 4;
          if (pos + n > end) this.#truncated();
          if (n >= zeroCopy) stack.push(data.subarray(pos, pos + n));
          else {
            if ((this.#budget -= n) < 0) this.#overBudget('bytes');
            stack.push(data.slice(pos, pos + n));
          }
          pos += n;
          break;
        }

        // ---------------------------------------------------- numbers (hot)
        case 0x4b: // BININT1
          if (pos >= end) this.#truncated();
          stack.push(bigints ? BigInt(data[pos++]!) : data[pos++]!);
          break;
        case 0x4d: // BININT2
          if (pos + 2 > end) this.#truncated();
          n = data[pos]! | (data[pos + 1]! << 8);
          pos += 2;
          stack.push(bigints ? BigInt(n) : n);
          break;
        case 0x4a: // BININT
          if (pos + 4 > end) this.#truncated();
          n = i32le(data, pos);
          pos += 4;
          stack.push(bigints ? BigInt(n) : n);
          break;
        case 0x47: {
          // BINFLOAT
          if (pos + 8 > end) this.#truncated();
          const f = (++floats > 8 ? (view ??= this.#dataView()).getFloat64(pos, false) : f64be(data, pos));
          pos += 8;
          stack.push(wrapFloats && Number.isInteger(f) ? new PyFloat(f) : f);
          break;
        }
        case 0x8a: {
          // LONG1
          if (pos >= end) this.#truncated();
          n = data[pos++]!;
          if (pos + n > end) this.#truncated();
          if (n > 8 && (this.#budget -= n) < 0) this.#overBudget('an int');
          stack.push(this.#binaryInt(pos, n));
          pos += n;
          break;
        }
        case 0x8b: {
          // LONG4
          if (pos + 4 > end) this.#truncated();
          n = i32le(data, pos);
          pos += 4;
          if (n < 0) this.#fail('BAD_ARGUMENT', 'LONG pickle has negative byte count');
          if (pos + n > end) this.#truncated();
          if (n > this.#opts.maxLongBytes) this.#fail('LIMIT', `LONG4 of ${n} bytes exceeds maxLongBytes (${this.#opts.maxLongBytes})`);
          this.#charge(n, 'an int');
          stack.push(this.#binaryInt(pos, n));
          pos += n;
          break;
        }
        case 0x4e: // NONE
          stack.push(null);
          break;
        case 0x88: // NEWTRUE
          stack.push(true);
          break;
        case 0x89: // NEWFALSE
          stack.push(false);
          break;

        // ---------------------------------------------------- containers (hot)
        case 0x28: // MARK
          if (marks.length >= maxMarks) this.#fail('LIMIT', `more than maxMarks (${maxMarks}) MARKs open at once`);
          marks.push(stack.length);
          fence = stack.length;
          break;
        case 0x5d: // EMPTY_LIST
          if ((this.#budget -= LIST_COST) < 0) this.#overBudget('a list');
          stack.push([]);
          break;
        case 0x7d: // EMPTY_DICT
          stack.push(this.#newDict(autoDicts));
          break;
        case 0x29: // EMPTY_TUPLE
          stack.push(EMPTY_TUPLE);
          break;
        case 0x61: {
          // APPEND
          if (stack.length - fence < 2) this.#underflow();
          const v = stack.pop();
          const list = stack[stack.length - 1];
          // A prototype check rather than `instanceof PyTuple`, which V8 ran as a generic builtin (2.8% of a load in perf).
          if (Array.isArray(list) && Object.getPrototypeOf(list) === ARRAY_PROTO) list.push(v);
          else this.#appendOther(list, [v]);
          break;
        }
        case 0x65: {
          // APPENDS
          if (marks.length === 0) this.#fail('NO_MARK', 'could not find MARK');
          const mark = marks.pop()!;
          fence = marks.length > 0 ? marks[marks.length - 1]! : 0;
          if (mark <= fence) this.#underflow();
          if ((this.#budget -= (stack.length - mark) * SLOT_COST) < 0) this.#overBudget('APPENDS');
          const list = stack[mark - 1];
          if (Array.isArray(list) && Object.getPrototypeOf(list) === ARRAY_PROTO) {
            for (let i = mark; i < stack.length; i++) list.push(stack[i]);
            // Popping is inlined; assigning length is a runtime call.
            while (stack.length > mark) stack.pop();
          } else {
            this.#appendOther(list, stack.splice(mark));
          }
          break;
        }
        case 0x73: {
          // SETITEM
          if (stack.length - fence < 3) this.#underflow();
          this.#setItems(stack.length - 3, stack.length - 2);
          stack.pop();
          stack.pop();
          break;
        }
        case 0x75: {
          // SETITEMS
          if (marks.length === 0) this.#fail('NO_MARK', 'could not find MARK');
          const mark = marks.pop()!;
          fence = marks.length > 0 ? marks[marks.length - 1]! : 0;
          if (mark <= fence) this.#underflow();
          if ((stack.length - mark) % 2 !== 0) this.#fail('ODD_ITEMS', 'odd number of items for SETITEMS');
          if ((this.#budget -= ((stack.length - mark) / 2) * ENTRY_COST) < 0) this.#overBudget('SETITEMS');
          this.#setItems(mark - 1, mark);
          while (stack.length > mark) stack.pop();
          break;
        }
        case 0x85: {
          // TUPLE1
          if (stack.length - fence < 1) this.#underflow();
          if ((this.#budget -= TUPLE_COST) < 0) this.#overBudget('a tuple');
          stack[stack.length - 1] = makeTuple([stack[stack.length - 1]]);
          break;
        }
        case 0x86: {
          // TUPLE2
          if (stack.length - fence < 2) this.#underflow();
          if ((this.#budget -= TUPLE_COST) < 0) this.#overBudget('a tuple');
          const b = stack.pop();
          stack[stack.length - 1] = makeTuple([stack[stack.length - 1], b]);
          break;
        }
        case 0x87: {
          // TUPLE3
          if (stack.length - fence < 3) this.#underflow();
          if ((this.#budget -= TUPLE_COST) < 0) this.#overBudget('a tuple');
          const c = stack.pop();
          const b = stack.pop();
          stack[stack.length - 1] = makeTuple([stack[stack.length - 1], b, c]);
          break;
        }
        case 0x74: {
          // TUPLE
          if (marks.length === 0) this.#fail('NO_MARK', 'could not find MARK');
          const mark = marks.pop()!;
          fence = marks.length > 0 ? marks[marks.length - 1]! : 0;
          if ((this.#budget -= (stack.length - mark) * SLOT_COST) < 0) this.#overBudget('TUPLE');
          const items = stack.splice(mark);
          stack.push(items.length === 0 ? EMPTY_TUPLE : makeTuple(items));
          break;
        }
        case 0x8f: // EMPTY_SET
          if ((this.#budget -= SET_COST) < 0) this.#overBudget('a set');
          stack.push(new Set());
          break;
        case 0x90: {
          // ADDITEMS
          if (marks.length === 0) this.#fail('NO_MARK', 'could not find MARK');
          const mark = marks.pop()!;
          fence = marks.length > 0 ? marks[marks.length - 1]! : 0;
          if (mark <= fence) this.#underflow();
          const set = stack[mark - 1];
          if (!(set instanceof Set) || set instanceof PyFrozenSet) this.#fail('TYPE', `'${typeName(set)}' object has no attribute 'add' (ADDITEMS)`, UnpicklingAttributeError);
          if ((this.#budget -= (stack.length - mark) * ENTRY_COST) < 0) this.#overBudget('ADDITEMS');
          if (set.size + stack.length - mark >= CHAINS_MIN) this.#countKeys(set, stack, mark, 1);
          for (let i = mark; i < stack.length; i++) {
            const v = stack[i];
            if (isUnhashable(v)) this.#fail('TYPE', `unhashable type: '${typeName(v)}'`, UnpicklingTypeError);
            if (typeof v === 'string' && v.length > LONG_KEY_CHARS) this.#longKey();
            set.add(v === v ? v : new PyFloat(NaN)); // NaN elements stay distinct, as in Python
          }
          while (stack.length > mark) stack.pop();
          break;
        }
        case 0x91: {
          // FROZENSET
          if (marks.length === 0) this.#fail('NO_MARK', 'could not find MARK');
          const mark = marks.pop()!;
          fence = marks.length > 0 ? marks[marks.length - 1]! : 0;
          if ((this.#budget -= SET_COST + (stack.length - mark) * ENTRY_COST) < 0) this.#overBudget('FROZENSET');
          const items = stack.splice(mark);
          if (items.length >= CHAINS_MIN) this.#countKeys(null, items, 0, 1);
          for (let i = 0; i < items.length; i++) {
            const v = items[i];
            if (isUnhashable(v)) this.#fail('TYPE', `unhashable type: '${typeName(v)}'`, UnpicklingTypeError);
            if (typeof v === 'string' && v.length > LONG_KEY_CHARS) this.#longKey();
            if (v !== v) items[i] = new PyFloat(NaN); // NaN elements stay distinct, as in Python
          }
          stack.push(new PyFrozenSet(items));
          break;
        }
        case 0x6c: {
          // LIST
          if (marks.length === 0) this.#fail('NO_MARK', 'could not find MARK');
          const mark = marks.pop()!;
          fence = marks.length > 0 ? marks[marks.length - 1]! : 0;
          if ((this.#budget -= (stack.length - mark) * SLOT_COST) < 0) this.#overBudget('LIST');
          stack.push(stack.splice(mark));
          break;
        }
        case 0x64: {
          // DICT
          if (marks.length === 0) this.#fail('NO_MARK', 'could not find MARK');
          const mark = marks.pop()!;
          fence = marks.length > 0 ? marks[marks.length - 1]! : 0;
          if ((stack.length - mark) % 2 !== 0) this.#fail('ODD_ITEMS', 'odd number of items for DICT');
          if ((this.#budget -= ((stack.length - mark) / 2) * ENTRY_COST) < 0) this.#overBudget('DICT');
          stack.splice(mark, 0, this.#newDict(autoDicts));
          this.#setItems(mark, mark + 1);
          stack.length = mark + 1;
          break;
        }

        // ---------------------------------------------------- stack
        case 0x30: // POP
          if (marks.length > 0 && marks[marks.length - 1] === stack.length) {
            marks.pop();
            fence = marks.length > 0 ? marks[marks.length - 1]! : 0;
          } else if (stack.length <= fence) {
            this.#underflow();
          } else {
            const v = stack.pop();
            // A placeholder just made and dropped: a state setter's call, or the first reduction of a recursive object.
            if (this.#madeAt === this.#opPos && v instanceof PyObject) this.#dropped(v, pos);
          }
          break;
        case 0x31: {
          // POP_MARK
          if (marks.length === 0) this.#fail('NO_MARK', 'could not find MARK');
          stack.length = marks.pop()!;
          fence = marks.length > 0 ? marks[marks.length - 1]! : 0;
          break;
        }
        case 0x32: {
          // DUP
          if (stack.length <= fence) this.#underflow();
          const v = stack[stack.length - 1];
          if (typeof v === 'object' && v !== null && Object.getPrototypeOf(v) === null) (this.#escaped ??= new Set()).add(v);
          stack.push(v);
          break;
        }

        // ---------------------------------------------------- framing and control
        case 0x95: {
          // FRAME
          if (pos + 8 > end) this.#truncated();
          const len = this.#u64(pos);
          pos += 8;
          if (len > end - pos) this.#truncated();
          break;
        }
        case 0x80: {
          // PROTO
          if (pos >= end) this.#truncated();
          const p = data[pos++]!;
          if (p > 5) this.#fail('UNSUPPORTED_PROTOCOL', `unsupported pickle protocol: ${p}`, UnpicklingValueError);
          this.#proto = p;
          break;
        }
        case 0x2e: {
          // STOP
          if (stack.length <= fence) this.#underflow();
          const v = stack.pop();
          this.position = pos;
          if (this.#opts.strict) {
            if (stack.length > 0 || marks.length > 0) this.#fail('TRAILING_DATA', 'stack not empty at STOP');
            if (pos < end) this.#fail('TRAILING_DATA', `${end - pos} bytes after STOP`);
          }
          return v;
        }

        // ---------------------------------------------------- objects
        case 0x93: {
          // STACK_GLOBAL
          if (stack.length - fence < 2) this.#underflow();
          const name = stack.pop();
          const module = stack.pop();
          if (typeof module !== 'string' || typeof name !== 'string') this.#fail('TYPE', 'STACK_GLOBAL requires str');
          stack.push(this.#findClass(module, name));
          break;
        }
        case 0x52: {
          // REDUCE
          if (stack.length - fence < 2) this.#underflow();
          const args = stack.pop();
          const callable = stack[stack.length - 1];
          stack[stack.length - 1] = this.#call(callable, args);
          this.#madeAt = pos;
          break;
        }
        case 0x81: {
          // NEWOBJ
          if (stack.length - fence < 2) this.#underflow();
          const args = stack.pop();
          const cls = stack[stack.length - 1];
          stack[stack.length - 1] = this.#newobj(cls, args, null, 'NEWOBJ');
          this.#madeAt = pos;
          break;
        }
        case 0x92: {
          // NEWOBJ_EX
          if (stack.length - fence < 3) this.#underflow();
          const kwargs = stack.pop();
          const args = stack.pop();
          const cls = stack[stack.length - 1];
          if (!this.#isDict(kwargs)) this.#fail('TYPE', `NEWOBJ_EX kwargs argument must be a dict, not ${typeName(kwargs)}`);
          stack[stack.length - 1] = this.#newobj(cls, args, kwargs, 'NEWOBJ_EX');
          this.#madeAt = pos;
          break;
        }
        case 0x62: {
          // BUILD
          if (stack.length - fence < 2) this.#underflow();
          const state = stack.pop();
          this.#build(stack[stack.length - 1], state);
          break;
        }

        default:
          this.position = pos;
          this.#rareOp(op);
          pos = this.position;
          fence = marks.length > 0 ? marks[marks.length - 1]! : 0;
      }
    }
  }

  /** Opcodes that protocol 0/1 and unusual pickles use: kept out of the hot loop. */
  #rareOp(op: number): void {
    const stack = this.#stack;
    const data = this.#data;
    const marks = this.#marks;
    switch (op) {
      case 0x49: {
        // INT
        const line = this.#line();
        if (line === '00' || line === '01') {
          stack.push(line === '01');
          return;
        }
        stack.push(this.#textInt(line, false));
        return;
      }
      case 0x4c: // LONG
        stack.push(this.#textInt(this.#line(), true));
        return;
      case 0x46: {
        // FLOAT
        const line = this.#line();
        const v = parsePythonFloat(line);
        if (v === undefined) this.#fail('BAD_ARGUMENT', `could not convert string to float: '${line}'`, UnpicklingValueError);
        if (v === null) this.#fail('BAD_ARGUMENT', 'value too large to convert to float', UnpicklingOverflowError);
        stack.push(this.#opts.floats === 'wrap-integral' && Number.isInteger(v) ? new PyFloat(v) : v);
        return;
      }
      case 0x56: {
        // UNICODE
        const line = this.#lineBytes();
        this.#charge(line[1] - line[0], 'a string');
        stack.push(this.#rawUnicodeEscape(line));
        return;
      }
      case 0x53: {
        // STRING
        const [s, e] = this.#lineBytes();
        const q = data[s];
        if (e - s < 2 || (q !== 0x27 && q !== 0x22) || data[e - 1] !== q) this.#fail('BAD_ARGUMENT', 'the STRING opcode argument must be quoted');
        this.#charge(e - s, 'a string');
        stack.push(this.#py2str(this.#unescapeBytes(s + 1, e - 1)));
        return;
      }
      case 0x54: {
        // BINSTRING
        const n = this.#need(4);
        const len = i32le(this.#data, n);
        if (len < 0) this.#fail('BAD_ARGUMENT', 'BINSTRING pickle has negative byte count');
        const at = this.#need(len);
        this.#charge(len, 'a string');
        stack.push(this.#py2str(data.slice(at, at + len)));
        return;
      }
      case 0x55: {
        // SHORT_BINSTRING
        const len = data[this.#need(1)]!;
        const at = this.#need(len);
        this.#charge(len, 'a string');
        stack.push(this.#py2str(data.slice(at, at + len)));
        return;
      }
      case 0x8d: {
        // BINUNICODE8
        const len = this.#u64(this.#need(8));
        if (len > data.length - this.position) this.#truncated();
        const at = this.#need(len);
        this.#charge(len, 'a string');
        stack.push(this.#utf8(at, at + len));
        return;
      }
      case 0x8e: {
        // BINBYTES8
        const len = this.#u64(this.#need(8));
        if (len > data.length - this.position) this.#truncated();
        const at = this.#need(len);
        if (len >= this.#opts.zeroCopy) stack.push(data.subarray(at, at + len));
        else {
          this.#charge(len, 'bytes');
          stack.push(data.slice(at, at + len));
        }
        return;
      }
      case 0x96: {
        // BYTEARRAY8
        const len = this.#u64(this.#need(8));
        if (len > data.length - this.position) this.#truncated();
        const at = this.#need(len);
        this.#charge(len, 'a bytearray');
        stack.push(PyByteArray.fromBytes(data.subarray(at, at + len)));
        return;
      }
      case 0x97: {
        // NEXT_BUFFER
        if (this.#buffers === undefined) this.#fail('NO_BUFFERS', 'pickle stream refers to out-of-band data but no buffers option was given');
        if (this.#bufferIndex >= this.#buffers.length) this.#fail('NO_BUFFERS', 'not enough out-of-band buffers');
        stack.push(this.#buffers[this.#bufferIndex++]);
        return;
      }
      case 0x98: {
        // READONLY_BUFFER
        if (stack.length <= this.#fence()) this.#underflow();
        const v = stack[stack.length - 1];
        if (v instanceof PickleBuffer) {
          if (!v.readonly) stack[stack.length - 1] = new PickleBuffer(v.buffer, { readonly: true });
        } else if (v instanceof PyByteArray) {
          stack[stack.length - 1] = new PickleBuffer(v, { readonly: true });
        } else if (!(v instanceof Uint8Array)) {
          this.#fail('TYPE', `READONLY_BUFFER needs a bytes-like object, not ${typeName(v)}`, UnpicklingTypeError);
        }
        return;
      }
      case 0x70: {
        // PUT
        const line = this.#line();
        if (!/^-?\d+$/.test(line)) this.#fail('BAD_ARGUMENT', `invalid PUT argument '${line}'`, UnpicklingValueError);
        if (line.startsWith('-')) this.#fail('BAD_ARGUMENT', 'negative PUT argument', UnpicklingValueError);
        const idx = Number(line);
        if (idx >= PY_SSIZE_MAX) this.#fail('BAD_ARGUMENT', `PUT index ${line} is too large (Python int too large to convert to C ssize_t)`, UnpicklingOverflowError);
        if (idx > Number.MAX_SAFE_INTEGER) this.#fail('LIMIT', `PUT index ${line} is too large`);
        if (stack.length <= this.#fence()) this.#underflow();
        this.#memoPut(idx, stack[stack.length - 1]);
        return;
      }
      case 0x67: {
        // GET
        const line = this.#line();
        if (!/^-?\d+$/.test(line)) this.#fail('BAD_ARGUMENT', `invalid GET argument '${line}'`, UnpicklingValueError);
        if (line.startsWith('-')) this.#fail('BAD_ARGUMENT', `Memo value not found at index ${line} (negative GET argument)`);
        const idx = Number(line);
        if (idx >= PY_SSIZE_MAX) this.#fail('BAD_ARGUMENT', `GET index ${line} is too large (Python int too large to convert to C ssize_t)`, UnpicklingOverflowError);
        let v = this.#memo[idx];
        if (v === undefined) v = this.#memoFarGet(idx);
        if (typeof v === 'object' && v !== null && Object.getPrototypeOf(v) === null) v = this.#reuseDict(v);
        stack.push(v);
        return;
      }
      case 0x63: {
        // GLOBAL
        const module = this.#utf8Line();
        const name = this.#utf8Line();
        stack.push(this.#findClass(module, name));
        return;
      }
      case 0x69: {
        // INST
        const module = this.#asciiLine();
        const name = this.#asciiLine();
        const mark = this.#popMark();
        const args = makeTuple(stack.splice(mark));
        stack.push(this.#instantiate(this.#findClass(module, name), args, 'INST'));
        return;
      }
      case 0x6f: {
        // OBJ
        const mark = this.#popMark();
        if (stack.length - mark < 1) this.#underflow();
        const items = stack.splice(mark);
        const cls = items.shift();
        stack.push(this.#instantiate(cls, makeTuple(items), 'OBJ'));
        return;
      }
      case 0x82: // EXT1
        this.#ext(data[this.#need(1)]!);
        return;
      case 0x83: {
        // EXT2
        const at = this.#need(2);
        this.#ext(data[at]! | (data[at + 1]! << 8));
        return;
      }
      case 0x84: // EXT4
        this.#ext(i32le(this.#data, this.#need(4)));
        return;
      case 0x50: {
        // PERSID
        const pid = this.#asciiLine();
        stack.push(this.#persistent(pid));
        return;
      }
      case 0x51: {
        // BINPERSID
        if (stack.length <= this.#fence()) this.#underflow();
        stack[stack.length - 1] = this.#persistent(stack[stack.length - 1]);
        return;
      }
      default:
        void marks;
        this.#fail('INVALID_OPCODE', `invalid load key, ${this.#describeByte(op)}`);
    }
  }

  #describeByte(op: number): string {
    return op >= 0x20 && op < 0x7f ? `'${String.fromCharCode(op)}'` : `'\\x${op.toString(16).padStart(2, '0')}'`;
  }

  #fence(): number {
    const m = this.#marks;
    return m.length > 0 ? m[m.length - 1]! : 0;
  }

  #popMark(): number {
    if (this.#marks.length === 0) this.#fail('NO_MARK', 'could not find MARK');
    return this.#marks.pop()!;
  }

  /** Reserves `n` argument bytes at `position`, returning where they start. */
  #need(n: number): number {
    const at = this.position;
    if (n > this.#data.length - at) this.#truncated();
    this.position = at + n;
    return at;
  }

  #u64(at: number): number {
    const data = this.#data;
    const lo = u32le(data, at);
    const hi = u32le(data, at + 4);
    if (hi >= 0x200000) this.#fail('LIMIT', 'length field of 2**53 bytes or more');
    return hi * 0x100000000 + lo;
  }

  // ------------------------------------------------------------ text arguments

  /** The bytes of a newline-terminated argument, without the newline. */
  #lineBytes(): [number, number] {
    const data = this.#data;
    const start = this.position;
    const nl = data.indexOf(0x0a, start);
    if (nl < 0) this.#truncated();
    this.position = nl + 1;
    return [start, nl];
  }

  /**
   * The argument of INT, LONG, FLOAT, PUT or GET as latin-1: a NUL inside is
   * rejected; an empty one is TRUNCATED, as CPython reads it.
   */
  #line(): string {
    const [s, e] = this.#lineBytes();
    if (e === s) this.#truncated();
    const data = this.#data;
    for (let i = s; i < e; i++) if (data[i] === 0) this.#fail('BAD_ARGUMENT', 'NUL byte in a text argument', UnpicklingValueError);
    return decodeLatin1(data, s, e);
  }

  #asciiLine(): string {
    const [s, e] = this.#lineBytes();
    const data = this.#data;
    for (let i = s; i < e; i++) if (data[i]! >= 0x80) this.#fail('DECODE', "'ascii' codec can't decode byte in a text argument");
    return decodeLatin1(data, s, e);
  }

  #utf8Line(): string {
    const [s, e] = this.#lineBytes();
    return this.#utf8(s, e);
  }

  #textInt(line: string, isLong: boolean): number | bigint {
    const m = /^([+-]?)(\d+)(L?)$/.exec(line);
    if (!m || (m[3] && !isLong)) this.#fail('BAD_ARGUMENT', `invalid literal for int(): '${line}'`, UnpicklingValueError);
    const digits = m[2]!;
    if (digits.length > this.#opts.maxLongDigits) {
      this.#fail('LIMIT', `Exceeds the limit (maxLongDigits, ${this.#opts.maxLongDigits} digits) for integer string conversion`, UnpicklingValueError);
    }
    if (digits.length > 16) this.#charge(digits.length, 'an int');
    return this.#intValue(BigInt(m[1] === '-' ? `-${digits}` : digits));
  }

  #intValue(v: bigint): number | bigint {
    if (this.#opts.ints === 'bigint') return v;
    return v >= -9007199254740991n && v <= 9007199254740991n ? Number(v) : v;
  }

  /** LONG1/LONG4 payload: little-endian two's complement of `n` bytes at `at`. */
  #binaryInt(at: number, n: number): number | bigint {
    const data = this.#data;
    if (n === 0) return this.#opts.ints === 'bigint' ? 0n : 0;
    if (n <= 6 && this.#opts.ints !== 'bigint') {
      let v = 0;
      for (let i = n - 1; i >= 0; i--) v = v * 256 + data[at + i]!;
      if (data[at + n - 1]! & 0x80) v -= 2 ** (8 * n);
      return v;
    }
    let v: bigint;
    if (n === 9 && this.#opts.ints !== 'bigint') {
      // 9 bytes (|v| >= 2**63 when minimal, as CPython writes them; 2**70 + i in the benchmark).
      // Only a top byte of 0 or 0xff can leave the value in Number's safe range; skipping the
      // BigInt comparisons otherwise saved 6 of 27 ns an int in a micro-benchmark.
      const lo = this.#dataView().getBigUint64(at, true);
      const top = data[at + 8]!;
      if (top === 0) return lo <= 9007199254740991n ? Number(lo) : lo;
      v = TOP_BYTE_72[top]! | lo;
      return top === 0xff && v >= -9007199254740991n ? Number(v) : v;
    }
    if (n <= 8) {
      let lo = 0;
      let hi = 0;
      for (let i = Math.min(n, 4) - 1; i >= 0; i--) lo = lo * 256 + data[at + i]!;
      for (let i = n - 1; i >= 4; i--) hi = hi * 256 + data[at + i]!;
      v = (BigInt(hi) << 32n) | BigInt(lo);
    } else if (n <= 16) {
      let lo = 0n;
      let hiBytes = 0n;
      lo = this.#dataView().getBigUint64(at, true);
      for (let i = n - 1; i >= 8; i--) hiBytes = (hiBytes << 8n) | BigInt(data[at + i]!);
      v = (hiBytes << 64n) | lo;
    } else {
      let hex = '';
      for (let i = n - 1; i >= 0; i--) {
        const b = data[at + i]!;
        hex += (b < 16 ? '0' : '') + b.toString(16);
      }
      v = BigInt(`0x${hex}`);
    }
    if (data[at + n - 1]! & 0x80) v -= 1n << BigInt(8 * n);
    return this.#intValue(v);
  }

  #utf8(s: number, e: number): string {
    if (e - s > MAX_JS_STRING_UNITS) this.#fail('LIMIT', `string of ${e - s} bytes is longer than JavaScript allows`);
    try {
      return decodeUtf8(this.#data, s, e);
    } catch (err) {
      if (err instanceof Utf8Error) this.#fail('DECODE', `'utf-8' codec can't decode: ${err.message}`);
      throw err;
    }
  }

  /** Python 2 `str` from STRING/BINSTRING/SHORT_BINSTRING, per the `encoding` option. */
  #py2str(bytes: Uint8Array): string | Uint8Array {
    const enc = this.#opts.encoding;
    if (enc === 'bytes') return bytes;
    if (enc === 'latin1') return decodeLatin1(bytes, 0, bytes.length);
    if (enc === 'utf-8') {
      try {
        return decodeUtf8(bytes, 0, bytes.length);
      } catch (err) {
        if (err instanceof Utf8Error) this.#fail('DECODE', `'utf-8' codec can't decode: ${err.message}`);
        throw err;
      }
    }
    for (let i = 0; i < bytes.length; i++) {
      if (bytes[i]! >= 0x80) this.#fail('DECODE', `'ascii' codec can't decode byte 0x${bytes[i]!.toString(16)} in position ${i}`);
    }
    return decodeLatin1(bytes, 0, bytes.length);
  }

  /** Python bytes-literal escapes (`codecs.escape_decode`) of STRING's quoted argument. */
  #unescapeBytes(s: number, e: number): Uint8Array {
    const data = this.#data;
    const out: number[] = [];
    for (let i = s; i < e; i++) {
      const c = data[i]!;
      if (c !== 0x5c || i + 1 >= e) {
        if (c === 0x5c) this.#fail('BAD_ARGUMENT', 'Trailing \\ in string', UnpicklingValueError);
        out.push(c);
        continue;
      }
      const d = data[++i]!;
      switch (d) {
        case 0x5c: out.push(0x5c); break;
        case 0x27: out.push(0x27); break;
        case 0x22: out.push(0x22); break;
        case 0x6e: out.push(0x0a); break; // \n
        case 0x74: out.push(0x09); break; // \t
        case 0x72: out.push(0x0d); break; // \r
        case 0x61: out.push(0x07); break; // \a
        case 0x62: out.push(0x08); break; // \b
        case 0x66: out.push(0x0c); break; // \f
        case 0x76: out.push(0x0b); break; // \v
        case 0x78: {
          // \xhh
          const h = i + 2 < e ? decodeLatin1(data, i + 1, i + 3) : '';
          if (!/^[0-9a-fA-F]{2}$/.test(h)) this.#fail('BAD_ARGUMENT', `invalid \\x escape at position ${i - 1 - s}`, UnpicklingValueError);
          out.push(parseInt(h, 16));
          i += 2;
          break;
        }
        default:
          if (d >= 0x30 && d <= 0x37) {
            let v = d - 0x30;
            for (let k = 0; k < 2 && i + 1 < e && data[i + 1]! >= 0x30 && data[i + 1]! <= 0x37; k++) v = v * 8 + (data[++i]! - 0x30);
            out.push(v & 0xff);
          } else {
            out.push(0x5c, d);
          }
      }
    }
    return Uint8Array.from(out);
  }

  /** Python's `raw-unicode-escape` decoder (UNICODE opcode), spec/pickle.md section 3. */
  #rawUnicodeEscape([s, e]: [number, number]): string {
    const data = this.#data;
    let out = '';
    let i = s;
    while (i < e) {
      const c = data[i]!;
      if (c === 0x5c) {
        // Count the run of backslashes: an escape needs an odd count.
        let j = i;
        while (j < e && data[j] === 0x5c) j++;
        const run = j - i;
        out += '\\'.repeat(run - 1);
        const kind = data[j];
        if (run % 2 === 1 && j < e && (kind === 0x75 || kind === 0x55)) {
          const digits = kind === 0x75 ? 4 : 8;
          const hex = j + 1 + digits <= e ? decodeLatin1(data, j + 1, j + 1 + digits) : '';
          if (!/^[0-9a-fA-F]+$/.test(hex) || hex.length !== digits) {
            this.#fail('DECODE', `'rawunicodeescape' codec can't decode bytes: truncated \\${kind === 0x75 ? 'uXXXX' : 'UXXXXXXXX'} escape`);
          }
          const cp = parseInt(hex, 16);
          if (cp > 0x10ffff) this.#fail('DECODE', "'rawunicodeescape' codec can't decode bytes: \\Uxxxxxxxx out of range");
          out += String.fromCodePoint(cp);
          i = j + 1 + digits;
        } else {
          out += '\\';
          i = j;
        }
      } else {
        let j = i;
        while (j < e && data[j] !== 0x5c) j++;
        out += decodeLatin1(data, i, j);
        i = j;
      }
    }
    return out;
  }

  // ------------------------------------------------------------ memo

  /** memo[idx] = v (PUT overwrites without changing the count; see #memo for the layout). */
  #memoPut(idx: number, v: unknown): void {
    const len = this.#memoLen;
    if (idx < len) {
      this.#memo[idx] = v;
      return;
    }
    let far = this.#memoFar;
    if (idx === len) {
      // The next dense slot: it may already be a far entry (then this overwrites it).
      if (far === null || !far.delete(farKey(idx))) this.#memoNewEntry(SLOT_COST);
      else if (far.size === 0) this.#memoFar = null;
      this.#memo[idx] = v;
      this.#memoLen = len + 1;
      return;
    }
    far ??= this.#memoFar = new Map();
    const key = farKey(idx);
    if (!far.has(key)) this.#memoNewEntry(FAR_MEMO_COST);
    far.set(key, v);
  }

  #memoNewEntry(cost: number): void {
    if (this.#memoCount >= this.#opts.maxMemo) this.#fail('LIMIT', `the memo would hold more than maxMemo (${this.#opts.maxMemo}) entries`);
    this.#charge(cost, 'a memo entry');
    this.#memoCount++;
  }

  /** memo[idx], or `undefined` when there is no such entry. */
  #memoGet(idx: number): unknown {
    const v = this.#memo[idx];
    return v !== undefined || this.#memoFar === null ? v : this.#memoFar.get(farKey(idx));
  }

  /** GET of an index the dense array does not hold: a far entry, or MEMO_MISSING. */
  #memoFarGet(idx: number): unknown {
    const v = this.#memoFar?.get(farKey(idx));
    if (v === undefined) this.#fail('MEMO_MISSING', `Memo value not found at index ${idx}`);
    return v;
  }

  // ------------------------------------------------------------ dicts

  #newDict(auto: boolean): unknown {
    const ordinal = this.#dictOrdinal++;
    if (!auto || (this.#forced !== null && this.#forced.has(ordinal))) {
      if ((this.#budget -= MAP_COST) < 0) this.#overBudget('a dict');
      return new PyDict();
    }
    if ((this.#budget -= DICT_COST) < 0) this.#overBudget('a dict');
    const d = newObjectDict();
    this.#autoIndex?.set(d, this.#autoDicts.length);
    this.#autoDicts.push(d);
    return d;
  }

  /** An object dict read from the memo: follow a replacement, and note that it escaped. */
  #reuseDict(v: unknown): unknown {
    const r = this.#redirect?.get(v);
    if (r !== undefined) return r;
    (this.#escaped ??= new Set()).add(v);
    return v;
  }

  #isDict(v: unknown): boolean {
    if (v instanceof Map) return true;
    return v !== null && typeof v === 'object' && Object.getPrototypeOf(v) === null;
  }

  /**
   * Sets the key/value pairs at `stack[from...]` into the dict (or
   * dict-like object) at `stack[at]`.
   */
  #setItems(at: number, from: number): void {
    const stack = this.#stack;
    let target = stack[at];
    if (target !== null && typeof target === 'object' && Object.getPrototypeOf(target) === null) {
      const obj = target as Record<string, unknown>;
      const count = (stack.length - from) >> 1;
      let watched: ShapeSetter | null | undefined;
      if (count >= SHAPE_MIN_KEYS && count <= SHAPE_MAX_KEYS) {
        watched = shapeSetter(stack, from, count);
        if (watched) {
          watched(obj, stack, from);
          return;
        }
      }
      let i = from;
      let plain = true;
      for (; i < stack.length; i += 2) {
        const k = stack[i];
        if (typeof k !== 'string' || isIndexKey(k)) break;
        if (k.length > LONG_KEY_CHARS) this.#longKey();
        if (k === '__proto__') {
          plain = false;
          Object.defineProperty(obj, k, { value: stack[i + 1], writable: true, enumerable: true, configurable: true });
        } else obj[k] = stack[i + 1];
      }
      if (i >= stack.length) {
        // A sequence seen again compiles a setter (./dict-shapes.ts).
        if (watched === undefined && plain && count >= SHAPE_MIN_KEYS && count <= SHAPE_MAX_KEYS) watchShape(stack, from, count);
        return;
      }
      target = this.#convertDict(at, obj);
      from = i;
    }
    if (target instanceof Map) {
      if (target.size + ((stack.length - from) >> 1) >= CHAINS_MIN) this.#countKeys(target, stack, from, 2);
      for (let i = from; i < stack.length; i += 2) {
        let k = stack[i];
        if (isUnhashable(k)) this.#fail('TYPE', `unhashable type: '${typeName(k)}'`, UnpicklingTypeError);
        if (typeof k === 'string' && k.length > LONG_KEY_CHARS) this.#longKey();
        // Python tells NaN keys apart by identity; a Map would merge them.
        if (k !== k) k = new PyFloat(NaN);
        target.set(k, stack[i + 1]);
      }
      return;
    }
    if (target instanceof PyObject) {
      const items = (target.dictItems ??= []);
      for (let i = from; i < stack.length; i += 2) items.push([stack[i], stack[i + 1]]);
      return;
    }
    this.#fail('TYPE', `'${typeName(target)}' object does not support item assignment`, UnpicklingTypeError);
  }

  /**
   * An object dict received a key an object cannot hold in order (not a
   * string, or an array index): it becomes a PyDict. When only its stack slot
   * and memo entries can refer to it (it was never pushed again by GET or
   * DUP), the slot is replaced and later memo reads are redirected; otherwise
   * the whole load runs again with this dict made a PyDict from the start.
   */
  #convertDict(at: number, obj: Record<string, unknown>): PyDict {
    const keys = Object.keys(obj);
    this.#charge(keys.length * ENTRY_COST, 'a dict becoming a PyDict');
    const map = new PyDict<unknown, unknown>();
    for (const k of keys) map.set(k, obj[k]);
    this.#stack[at] = map;
    (this.#redirect ??= new Map()).set(obj, map);
    if (this.#escaped?.has(obj)) {
      // Other objects may hold it: finish this pass (its result is dropped), then run again.
      if (this.#autoIndex === null) this.#autoIndex = new Map(this.#autoDicts.map((d, i) => [d, i]));
      const autoIndex = this.#autoIndex.get(obj);
      if (autoIndex === undefined) this.#fail('TYPE', 'dict of unknown origin cannot take a non-string key');
      (this.#restartOrdinals ??= new Set()).add(this.#ordinalOfAutoDict(autoIndex));
    }
    return map;
  }

  /** The creation ordinal (among all dicts) of the n-th object dict of this pass. */
  #ordinalOfAutoDict(autoIndex: number): number {
    // Dicts forced to PyDict are counted in ordinals but are not in #autoDicts.
    const forced = this.#forced;
    if (forced === null) return autoIndex;
    let seen = -1;
    for (let ordinal = 0; ; ordinal++) {
      if (!forced.has(ordinal)) seen++;
      if (seen === autoIndex) return ordinal;
    }
  }

  // ------------------------------------------------------------ objects

  #appendOther(target: unknown, items: unknown[]): void {
    if (target instanceof PyObject) {
      const list = (target.listItems ??= []);
      for (const v of items) list.push(v);
      return;
    }
    if (Array.isArray(target) && !(target instanceof PyTuple)) {
      for (const v of items) target.push(v);
      return;
    }
    this.#fail('TYPE', `'${typeName(target)}' object has no attribute 'append'`, UnpicklingAttributeError);
  }

  #findClass(module: string, name: string): PyGlobal {
    if (this.#proto < 3 && this.#opts.fixImports) {
      const mapped = NAME_MAPPING.get(`${module}\n${name}`);
      if (mapped !== undefined) {
        const nl = mapped.indexOf('\n');
        module = mapped.slice(0, nl);
        name = mapped.slice(nl + 1);
      } else {
        module = IMPORT_MAPPING.get(module) ?? module;
      }
    }
    if (this.#proto < 4 && name.includes('.')) this.#fail('BAD_ARGUMENT', `dotted global name '${name}' needs protocol 4 or higher`, UnpicklingAttributeError);
    const g = this.#registry.lookup(module, name);
    if (g !== undefined) return g;
    if (this.#opts.strict) this.#fail('FORBIDDEN_GLOBAL', `global '${module}.${name}' is not registered`);
    return new PyGlobal(module, name);
  }

  #checkCallable(callable: unknown, what: string): void {
    if (!(callable instanceof PyGlobal) && !(callable instanceof PyObject)) this.#fail('TYPE', `${what}: '${typeName(callable)}' object is not callable`, UnpicklingTypeError);
  }

  #call(callable: unknown, args: unknown): unknown {
    this.#checkCallable(callable, 'REDUCE');
    if (!(args instanceof PyTuple)) this.#fail('TYPE', `argument list must be a tuple, not ${typeName(args)}`, UnpicklingTypeError);
    if (callable instanceof PyGlobal) {
      const h = handlerOf(callable);
      if (h?.call) {
        const v = this.#runHandler(() => h.call!(args, callable, this.#context), args);
        if (v !== NOT_HANDLED) return v;
      }
      const same = this.#callAsNewobj(callable, args);
      if (same !== undefined) return same;
    } else if (args.length === 0 && callable instanceof PyObject) {
      const same = this.#partialNewobjEx(callable);
      if (same !== undefined) return same;
    }
    if ((this.#budget -= OBJECT_COST) < 0) this.#overBudget('an object');
    return new PyObject('reduce', callable, args);
  }

  /**
   * Calls of unregistered globals that are another opcode under another name,
   * loaded as that opcode so that they pickle back as CPython writes them:
   * `copyreg.__newobj__(cls, *args)` is NEWOBJ and
   * `copyreg.__newobj_ex__(cls, args, kwargs)` NEWOBJ_EX (written for those
   * at protocols 0 and 1); below protocol 4, `getattr(Outer, 'Inner')` is
   * CPython's way of writing the global `Outer.Inner`.
   */
  #callAsNewobj(callable: PyGlobal, args: PyTuple): unknown {
    const { module, name } = callable;
    if (module === 'copyreg') {
      if (name === '__newobj__' && args.length >= 1) return this.#newobj(args[0], makeTuple(args.slice(1)), null, 'copyreg.__newobj__');
      if (name === '__newobj_ex__' && args.length === 3 && args[1] instanceof PyTuple && this.#isDict(args[2])) {
        return this.#newobj(args[0], args[1], args[2], 'copyreg.__newobj_ex__');
      }
    } else if (module === 'builtins' && name === 'getattr' && this.#proto < 4 && args.length === 2) {
      const [owner, attr] = args;
      if (owner instanceof PyGlobal && typeof attr === 'string' && attr !== '' && !attr.includes('.')) {
        const dotted = `${owner.name}.${attr}`;
        return this.#registry.lookup(owner.module, dotted) ?? new PyGlobal(owner.module, dotted);
      }
    }
    return undefined;
  }

  /**
   * CPython's NEWOBJ_EX below protocol 4,
   * `functools.partial(cls.__new__, cls, *args, **kwargs)()` with `cls.__new__`
   * written as `getattr(cls, '__new__')`: loaded as NEWOBJ_EX.
   */
  #partialNewobjEx(p: PyObject): unknown {
    const f = p.callable;
    if (p.kind !== 'reduce' || !(f instanceof PyGlobal) || f.module !== 'functools' || f.name !== 'partial' || handlerOf(f) !== undefined) return undefined;
    if (p.args.length !== 1 || p.listItems !== undefined || p.dictItems !== undefined || p.stateSetter !== undefined) return undefined;
    const fn = p.args[0];
    const st = p.state;
    if (!(st instanceof PyTuple) || st.length !== 4 || st[0] !== fn || st[3] !== null || !(st[1] instanceof PyTuple) || st[1].length < 1 || !this.#isDict(st[2])) return undefined;
    const cls = st[1][0];
    if (!(cls instanceof PyGlobal) || !(fn instanceof PyGlobal) || fn.module !== cls.module || fn.name !== `${cls.name}.__new__`) return undefined;
    return this.#newobj(cls, makeTuple(st[1].slice(1)), st[2], 'NEWOBJ_EX');
  }

  /**
   * INST and OBJ: with arguments, `cls(*args)`; without, `cls.__new__(cls)`
   * as CPython does for a class (NEWOBJ: `__init__` does not run).
   */
  #instantiate(cls: unknown, args: PyTuple, what: string): unknown {
    if (args.length === 0 && (cls instanceof PyObject || (cls instanceof PyGlobal && !isKnownFunction(cls)))) {
      const h = cls instanceof PyGlobal ? handlerOf(cls) : undefined;
      if (h === undefined || h.newobj !== undefined || h.call === undefined) return this.#newobj(cls, args, null, what);
    }
    return this.#call(cls, args);
  }

  /**
   * A placeholder made by the opcode before a POP, which drops it. CPython
   * writes that in two places (spec/pickle.md 8.3): the first reduction of a
   * recursive object, followed by a GET of the second one, which keeps the
   * first one's arguments (PyObject.outerArgs); and a state setter's call,
   * `setter(obj, state)`, which obj keeps (PyObject.stateSetter).
   */
  #dropped(v: PyObject, pos: number): void {
    const next = this.#peekGet(pos);
    if (next instanceof PyObject && next !== v && next.kind === v.kind && next.outerArgs === undefined && sameCallable(next.callable, v.callable)) {
      next.outerArgs = v.args;
      next.outerKwargs = v.kwargs;
      return;
    }
    const target = v.args[0];
    if (v.kind === 'reduce' && v.args.length === 2 && target instanceof PyObject && target !== v) {
      target.stateSetter = v.callable;
      target.state = v.args[1];
    }
  }

  /** The memo value the GET, BINGET or LONG_BINGET at `pos` pushes, if that is the next opcode and the value exists. */
  #peekGet(pos: number): unknown {
    const data = this.#data;
    const op = data[pos];
    if (op === 0x68) return pos + 1 < data.length ? this.#memoGet(data[pos + 1]!) : undefined; // BINGET
    if (op === 0x6a) return pos + 4 < data.length ? this.#memoGet(u32le(data, pos + 1)) : undefined; // LONG_BINGET
    if (op === 0x67) {
      // GET: decimal digits and a newline
      let idx = 0;
      let i = pos + 1;
      for (; i < data.length && i < pos + 12 && data[i]! >= 0x30 && data[i]! <= 0x39; i++) idx = idx * 10 + data[i]! - 0x30;
      return i > pos + 1 && data[i] === 0x0a ? this.#memoGet(idx) : undefined;
    }
    return undefined;
  }

  #newobj(cls: unknown, args: unknown, kwargs: unknown, what: string): unknown {
    if (!(cls instanceof PyGlobal || cls instanceof PyObject) || (cls instanceof PyGlobal && isKnownFunction(cls))) {
      this.#fail('TYPE', `${what} class argument must be a type, not ${cls instanceof PyGlobal ? `the function ${cls.module}.${cls.name}` : typeName(cls)}`);
    }
    if (!(args instanceof PyTuple)) this.#fail('TYPE', `${what} args argument must be a tuple, not ${typeName(args)}`);
    if (cls instanceof PyGlobal) {
      const h = handlerOf(cls);
      if (h?.newobj) {
        const v = this.#runHandler(() => h.newobj!(args, kwargs, cls, this.#context), args);
        if (v !== NOT_HANDLED) return v;
      }
    }
    if ((this.#budget -= OBJECT_COST) < 0) this.#overBudget('an object');
    return kwargs === null ? new PyObject('newobj', cls, args) : new PyObject('newobj_ex', cls, args, kwargs);
  }

  /**
   * Runs a handler (a registered global's, a state setter, persistentLoad),
   * turning what it throws into UnpicklingError HANDLER. A registered
   * global's arguments are first charged to the allocation budget: most
   * handlers copy them.
   */
  #runHandler(f: () => unknown, args?: readonly unknown[]): unknown {
    if (args !== undefined) {
      let size = 0;
      for (let i = 0; i < args.length; i++) size += argSize(args[i]);
      this.#charge(size, 'the arguments of a handler');
    }
    let v: unknown;
    try {
      v = f();
    } catch (e) {
      if (e instanceof UnpicklingError) throw e;
      this.#fail('HANDLER', `handler failed: ${(e as Error)?.message ?? String(e)}`);
    }
    return v === undefined ? null : v;
  }

  #build(obj: unknown, state: unknown): void {
    const setter = obj !== null && typeof obj === 'object' ? (obj as { [setState]?: (s: unknown) => void })[setState] : undefined;
    if (typeof setter !== 'function') this.#fail('TYPE', `BUILD: a ${typeName(obj)} takes no state`);
    this.#runHandler(() => setter.call(obj, state));
  }

  #ext(code: number): void {
    if (code <= 0) this.#fail('BAD_EXTENSION', 'EXT specifies code <= 0');
    const g = this.#registry.extensionGlobal(code);
    if (g === undefined) this.#fail('BAD_EXTENSION', `unregistered extension code ${code}`, UnpicklingValueError);
    this.#stack.push(this.#registry.lookup(g.module, g.name) ?? g);
  }

  #persistent(pid: unknown): unknown {
    const f = this.#persistentLoad;
    if (f === undefined) {
      this.#fail('NO_PERSISTENT_LOAD', 'A load persistent id instruction was encountered, but no persistentLoad function was specified');
    }
    return this.#runHandler(() => f(pid));
  }
}


/**
 * Reads a pickle (protocols 0 to 5) and returns its value. Trailing bytes
 * after STOP are ignored, as in Python (use `strict` to reject them).
 */
export function loads(data: Uint8Array, options?: UnpicklerOptions): unknown {
  if (options === undefined && data.length <= SCALAR_MAX) {
    const v = quickScalar(data);
    if (v !== NOT_SCALAR) return v;
  }
  return Unpickler.loadOnce(data, options);
}

/** What {@link quickScalar} returns for a pickle it leaves to the Unpickler. */
export const NOT_SCALAR = Symbol('not a scalar');
/** The longest pickle {@link quickScalar} looks at: a protocol-4 frame of a 255-byte string. */
const SCALAR_MAX = 2 + 9 + 2 + 255 + 2;

/**
 * The value of a pickle that is one small int, a bool, None or a short
 * string, and nothing else: PROTO (2 to 5), maybe FRAME (of exactly the
 * rest), BININT1/BININT2/BININT/NONE/NEWTRUE/NEWFALSE/SHORT_BINUNICODE
 * (maybe MEMOIZEd), STOP, end. These are most of a queue's small items
 * (billiard's own benchmarks put ints), and the Unpickler's set-up costs more
 * than reading them. The result is the one the Unpickler gives with default
 * options; anything else, malformed input included, is NOT_SCALAR, and the
 * Unpickler reads it (and reports what is wrong).
 */
/** @internal (exported for its test) */
export function quickScalar(d: Uint8Array): unknown {
  const len = d.length;
  if (len < 4 || d[0] !== 0x80 || d[1]! < 2 || d[1]! > 5) return NOT_SCALAR;
  let pos = 2;
  if (d[pos] === 0x95) {
    // FRAME: an 8-byte little-endian length, which must be the rest exactly.
    if (len < 12 || d[3]! + d[4]! * 256 !== len - 11 || d[5] !== 0 || d[6] !== 0 || d[7] !== 0 || d[8] !== 0 || d[9] !== 0 || d[10] !== 0) return NOT_SCALAR;
    pos = 11;
  }
  let v: unknown;
  switch (d[pos++]) {
    case 0x4b: // BININT1
      v = d[pos++];
      break;
    case 0x4d: // BININT2
      v = d[pos]! | (d[pos + 1]! << 8);
      pos += 2;
      break;
    case 0x4a: // BININT
      v = d[pos]! | (d[pos + 1]! << 8) | (d[pos + 2]! << 16) | (d[pos + 3]! << 24);
      pos += 4;
      break;
    case 0x4e: // NONE
      v = null;
      break;
    case 0x88: // NEWTRUE
      v = true;
      break;
    case 0x89: // NEWFALSE
      v = false;
      break;
    case 0x8c: {
      // SHORT_BINUNICODE
      const n = d[pos++]!;
      if (pos + n + 1 > len) return NOT_SCALAR;
      try {
        v = decodeUtf8(d, pos, pos + n);
      } catch {
        return NOT_SCALAR;
      }
      pos += n;
      if (d[pos] === 0x94) pos++; // MEMOIZE
      break;
    }
    default:
      return NOT_SCALAR;
  }
  return pos === len - 1 && d[pos] === 0x2e ? v : NOT_SCALAR;
}
