/**
 * The pickler: writes protocols 0 to 5 with the bytes CPython 3.11's C
 * pickler writes for the same value (spec/pickle.md sections 4-8 and
 * Appendix A): same opcodes, memo indexes, batching and framing.
 *
 * Memoization: objects by identity, as CPython does. Strings have no
 * identity in JavaScript, so they are memoized by value, in three separate
 * tables (data strings, module names of globals, qualified names of
 * globals), which reproduces CPython for literals, identifiers and dict keys
 * (spec/pickle.md section 12.3).
 */

import { PicklingError } from './errors.js';
import { floatRepr } from './float-repr.js';
import { DEFAULT_PROTOCOL, HIGHEST_PROTOCOL } from './opcodes.js';
import { BUILTIN_FUNCTIONS, REVERSE_IMPORT_MAPPING, REVERSE_NAME_MAPPING } from './python-tables.js';
import type { PickleRegistry } from './registry.js';
import { defaultRegistry } from './default-registry.js';
import {
  EMPTY_TUPLE,
  makeTuple,
  PickleBuffer,
  PyByteArray,
  PyDict,
  PyDictItems,
  PyFloat,
  PyFrozenSet,
  PyGlobal,
  PyObject,
  PyTuple,
  isKnownFunction,
  reduceEx,
  reducePyObject,
  type ReduceValue,
} from './types.js';
import { encodeUtf8Into } from './utf8.js';
import { LONG_KEY_CHARS } from './v8-hash.js';

/** Options of {@link dumps} and {@link Pickler}. Every field has a default. */
export interface PicklerOptions {
  /** Protocol 0 to 5; negative means the highest (5). Defaults to 4, what CPython 3.8-3.13 write. */
  protocol?: number;
  /** Write Python 2 names (`__builtin__`, `copy_reg`...) at protocols 0-2, as Python's `fix_imports`. Defaults to true. */
  fixImports?: boolean;
  /**
   * Protocol 5: called with each {@link PickleBuffer}; when it returns a
   * false value the buffer goes out of band (NEXT_BUFFER) and the caller
   * sends it separately. Defaults to none (every buffer in band).
   */
  bufferCallback?: (buffer: PickleBuffer) => unknown;
  /** Returns a persistent id for an object to write instead of it, or `null`/`undefined`. Defaults to none. */
  persistentId?: (obj: unknown) => unknown;
  /** Where reducers for user classes and extension codes are found. Defaults to the default registry. */
  registry?: PickleRegistry;
}

/** CPython's batch size for APPENDS/SETITEMS/ADDITEMS. */
const BATCHSIZE = 1000;
/** A frame is committed once it holds this many bytes (CPython's FRAME_SIZE_TARGET). */
const FRAME_SIZE_TARGET = 64 * 1024;
/** Frames smaller than this are written without a FRAME header (CPython's FRAME_SIZE_MIN). */
const FRAME_SIZE_MIN = 4;
/** FRAME opcode plus its 8-byte length. */
const FRAME_HEADER_SIZE = 9;

const INITIAL_CAPACITY = 2048;
/** Payloads this large are pieces of their own in {@link Pickler.dumpSegments} (not copied). */
export const SEGMENT_MIN = 1024 * 1024;
/** dumpSegments copies its output when it is at most this large and keeps its buffer; above, it hands the buffer over. */
const KEEP_BUFFER_MAX = 64 * 1024;
/** Key positions of object dicts whose memo indexes are remembered (see #saveDictKey). */
const SHAPE_CACHE_KEYS = 32;
/**
 * The stamped memo tables start over when stamps reach this, so that they stay
 * small integers, which V8 stores in a WeakMap or Map without allocating a
 * heap number for each: `generation * 2**32 + index` stamps made 30,000 of
 * them per dump of the benchmark payload, and a young-generation GC every 16
 * dumps instead of every 30.
 */
const STAMP_LIMIT = 2 ** 30;
/** String memo entries kept between dumps at most. */
const STRING_MEMO_LIMIT = 1 << 16;
/** Objects a dump memoizes by a scan before it uses the WeakMap (see Pickler's #smallObjs). */
const SMALL_MEMO = 8;
/**
 * A dump that looks up at least this many objects in the WeakMap, most of
 * them never seen by it, makes the next {@link FRESH_RUN} dumps memoize their
 * objects in a Map of their own instead (see Pickler's #dumpMemo).
 */
const FRESH_MIN = 16;
/** Dumps in a row that use the per-dump Map before one tries the WeakMap again. */
const FRESH_RUN = 16;
/**
 * A string longer than this is not looked up in the string memo: V8 hashes
 * it by its length alone (String::kMaxHashCalcLength), so every other
 * memoized string of its length is compared with it in full, and a dump of
 * 4,000 distinct 20,000-character strings took 38 s (CPython: 54 ms). It is
 * written in full each time it occurs, as CPython writes equal strings that
 * are distinct objects, and still takes its memo index.
 */
const UNHASHED_STRING_CHARS = LONG_KEY_CHARS;
/** Characters of memoized strings kept between dumps at most. */
const STRING_CHARS_LIMIT = 1 << 22;

/**
 * A string CPython holds as a different object from equal strings of user
 * data, in the protocol 0-2 form of bytes (`_codecs.encode(text, 'latin1')`):
 * `'fresh'`, the latin-1 text (a new object each time, never found in the
 * memo again), or `'codec'`, the codec name `'latin1'` (one interned object,
 * shared between all bytes of a pickle, apart from user strings).
 */
class SpecialStr {
  constructor(
    readonly value: string,
    readonly kind: 'fresh' | 'codec',
  ) {}
}

const LATIN1_CODEC = new SpecialStr('latin1', 'codec');

/** ASCII codes of the lowercase hex digits. */
const HEX_DIGITS = Uint8Array.from('0123456789abcdef', (c) => c.charCodeAt(0));

/** 2**k and -(2**k) as bigints, k <= 100 (#saveLong1Big). */
const POW2: readonly bigint[] = Array.from({ length: 101 }, (_, k) => 1n << BigInt(k));
const NEG_POW2: readonly bigint[] = POW2.map((x) => -x);
/** Scratch for reading the bits of a double (#saveLong1Big). */
const F64_BITS = new DataView(new ArrayBuffer(8));

const TWO64 = 1n << 64n;
const TWO128 = 1n << 128n;

/** Bit length of a non-negative bigint below 2**64. */
function bitLength64(x: bigint): number {
  if (x < 0x100000000n) return 32 - Math.clz32(Number(x));
  const hi = Number(x >> 32n);
  return 64 - Math.clz32(hi);
}

const kCopyreg = new PyGlobal('copyreg', '_reconstructor');
const kObject = new PyGlobal('builtins', 'object');
const kBytes = new PyGlobal('builtins', 'bytes');
const kBytearray = new PyGlobal('builtins', 'bytearray');
const kCodecsEncode = new PyGlobal('_codecs', 'encode');
const kSet = new PyGlobal('builtins', 'set');
const kFrozenset = new PyGlobal('builtins', 'frozenset');
const kGetattr = new PyGlobal('builtins', 'getattr');
const kNewobj = new PyGlobal('copyreg', '__newobj__');
const kNewobjEx = new PyGlobal('copyreg', '__newobj_ex__');
const kPartial = new PyGlobal('functools', 'partial');

/**
 * Prototypes of the common types, read once: the dispatch in #saveObject
 * compares against module constants instead of loading `X.prototype` per
 * object.
 */
const OBJECT_PROTO = Object.prototype;
const ARRAY_PROTO = Array.prototype;
const UINT8ARRAY_PROTO = Uint8Array.prototype;
const MAP_PROTO = Map.prototype;
const PYFLOAT_PROTO = PyFloat.prototype;
const PYTUPLE_PROTO = PyTuple.prototype;
const PYDICT_PROTO = PyDict.prototype;
const PYOBJECT_PROTO = PyObject.prototype;
const hasOwnProperty = Object.prototype.hasOwnProperty;

function typeNameOf(v: unknown): string {
  if (v === null) return 'null';
  if (typeof v !== 'object') return typeof v;
  const p = Object.getPrototypeOf(v) as { constructor?: { name?: string } } | null;
  return p?.constructor?.name ?? 'object';
}

/** Mutable containers Python cannot hash (so they cannot be dict keys or set elements). */
function isUnhashableKey(k: unknown): boolean {
  if (k === null || typeof k !== 'object') return false;
  if (k instanceof PyTuple || k instanceof PyFrozenSet || k instanceof PyFloat || k instanceof PyGlobal) return false;
  if (k instanceof Uint8Array) return k instanceof PyByteArray;
  if (Array.isArray(k) || k instanceof Map || k instanceof Set) return true;
  const p = Object.getPrototypeOf(k);
  return p === null || p === Object.prototype;
}

/** A copy of a kwargs dict (CPython's partial keeps its own). */
function copyKwargs(kwargs: unknown): unknown {
  if (kwargs === undefined || kwargs === null) return new PyDict();
  if (kwargs instanceof Map) return new PyDict(kwargs);
  if (typeof kwargs === 'object' && !Array.isArray(kwargs)) {
    const out = Object.create(null) as Record<string, unknown>;
    for (const k of Object.keys(kwargs)) Object.defineProperty(out, k, { value: (kwargs as Record<string, unknown>)[k], writable: true, enumerable: true, configurable: true });
    return out;
  }
  throw new PicklingError('NEWOBJ_EX kwargs must be a dict', { code: 'BAD_REDUCE' });
}

/**
 * `functools.partial(cls.__new__, cls, *args, **kwargs)`, as CPython writes
 * NEWOBJ_EX before protocol 4: the partial's reduce value with its state
 * `(func, args, keywords, None)`. `cls.__new__` is the global
 * `cls.__new__`, written `getattr(cls, '__new__')` below protocol 4 and
 * memoized as one object, as CPython's is; CPython names an inherited
 * `__new__` by its owner (`getattr(object, '__new__')`), the same function.
 */
function newobjExPartial(cls: unknown, args: readonly unknown[], kwargs: unknown): PyObject {
  const fn = cls instanceof PyGlobal ? new PyGlobal(cls.module, `${cls.name}.__new__`) : new PyObject('reduce', kGetattr, makeTuple([cls, '__new__']));
  const partial = new PyObject('reduce', kPartial, makeTuple([fn]));
  partial.state = makeTuple([fn, makeTuple([cls, ...args]), copyKwargs(kwargs), null]);
  return partial;
}

/**
 * Writes pickles. One instance can be reused for many `dump` calls; its
 * output buffer is kept between them.
 */
export class Pickler {
  readonly protocol: number;
  readonly #fixImports: boolean;
  readonly #bufferCallback: ((b: PickleBuffer) => unknown) | undefined;
  readonly #persistentId: ((obj: unknown) => unknown) | undefined;
  readonly #registry: PickleRegistry;
  readonly #framing: boolean;

  #buf: Uint8Array;
  #view: DataView;
  #pos = 0;
  /** Offset of the current frame's reserved header, or -1 when no frame is open. */
  #frameStart = -1;

  #memoLen = 0;
  /**
   * Memo tables outlive a dump: each entry is stamped with the dump it
   * belongs to (`#base` + memo index, where `#base` grows by each dump's
   * memo length, so every stamp of an earlier dump is below the current
   * `#base`), so a new dump needs no clearing, which
   * would drop the tables and make V8 allocate (and the OS fault in) new
   * ones every time. Objects are held weakly; strings are dropped when the
   * tables grow past STRING_MEMO_LIMIT.
   */
  #objMemo = new WeakMap<object, number>();
  /**
   * The first SMALL_MEMO objects of a dump are memoized here, found by a scan
   * rather than by the WeakMap: most pickles (a queue item, a pool's job, a
   * manager's request) hold a handful of objects, and a WeakMap entry costs
   * an identity hash, a slot in a table that only grows, and the garbage
   * collector's ephemeron work long after the dump. The object that would
   * be the next one moves them all to #objMemo (#smallLen -1 until the dump
   * ends).
   */
  readonly #smallObjs: Array<object | undefined> = new Array<object | undefined>(SMALL_MEMO).fill(undefined);
  readonly #smallIdx: number[] = new Array<number>(SMALL_MEMO).fill(0);
  #smallLen = 0;
  /**
   * The memo of this dump's objects past the small memo when the last dumps
   * were of objects the WeakMap had never seen (a job's or a message's fresh
   * arguments), else null. A WeakMap entry for a new object costs its
   * identity hash, a slot in a table that only grows until a major GC clears
   * the dead keys, and the GC's ephemeron work: with new objects in every
   * dump the table grew without end and a dump of 10,000 fresh dicts took
   * 100 times as long as one of 10,000 dicts dumped before. A Map emptied
   * after the dump holds nothing past it and keeps no dead entries. One
   * dump in {@link FRESH_RUN} goes back to the WeakMap, which wins when the
   * same objects are dumped again (it then only updates their stamps).
   */
  #dumpMemo: Map<object, number> | null = null;
  readonly #freshMemo = new Map<object, number>();
  #freshRun = 0;
  /** This dump's WeakMap lookups, and those that found no entry at all. */
  #weakSeen = 0;
  #weakNew = 0;
  #strMemo = new Map<string, number>();
  #moduleMemo = new Map<string, number>();
  #nameMemo = new Map<string, number>();
  #globalMemo = new Map<string, number>();
  #codecMemo = new Map<string, number>();
  #stringChars = 0;
  /** Per key position of object dicts, the key last saved there and its memo index (this dump). */
  #shapeKeys: string[] = [];
  #shapeIndexes: number[] = [];
  /** Keys and values of the object dicts being saved, innermost last (see #saveObjectDict). */
  #scratchKeys: string[] = [];
  #scratchValues: unknown[] = [];
  #scratchTop = 0;
  /** The most of #scratchKeys/#scratchValues this dump used (cleared at its end). */
  #scratchHigh = 0;
  /** Stamps below it are from earlier dumps. */
  #base = 0;
  #busy = false;
  /** dumpSegments' pieces so far, and where the pickler's own current piece starts in #buf; null in dump(). */
  #segments: Uint8Array[] | null = null;
  #segmentStart = 0;
  #skipPersistentId = false;
  /** Recursive placeholders whose first reduction is being written (see PyObject.outerArgs). */
  #reducing: Set<PyObject> | null = null;

  constructor(options?: PicklerOptions) {
    let protocol = options?.protocol ?? DEFAULT_PROTOCOL;
    if (protocol < 0) protocol = HIGHEST_PROTOCOL;
    if (!Number.isInteger(protocol) || protocol > HIGHEST_PROTOCOL) {
      throw new RangeError(`options.protocol must be an integer from 0 to ${HIGHEST_PROTOCOL} (or negative for the highest)`);
    }
    this.protocol = protocol;
    this.#fixImports = options?.fixImports ?? true;
    this.#bufferCallback = options?.bufferCallback;
    if (this.#bufferCallback !== undefined && protocol < 5) throw new RangeError('options.bufferCallback needs protocol 5');
    this.#persistentId = options?.persistentId;
    this.#registry = options?.registry ?? defaultRegistry;
    this.#framing = protocol >= 4;
    this.#buf = new Uint8Array(INITIAL_CAPACITY);
    this.#view = new DataView(this.#buf.buffer);
  }

  /** True while a `dump` is running (the pickler is not reentrant). */
  get busy(): boolean {
    return this.#busy;
  }

  /**
   * Pickles `obj` and returns a view of the pickler's own buffer, valid until
   * the next `dump`. Use {@link dumps} for a copy. `reserve` bytes are left
   * free at the start of the view (the pickle follows them), so that a caller
   * can put a header there without copying the pickle.
   */
  dump(obj: unknown, reserve = 0): Uint8Array {
    this.#segments = null;
    return this.#dump(obj, reserve);
  }

  /** `dump(obj)` copied into a new array of its own (what `dumps` returns), without the view in between. @internal */
  dumpCopy(obj: unknown): Uint8Array {
    this.#segments = null;
    return this.#dump(obj, 0, true);
  }

  /**
   * Pickles `obj` into pieces that, written one after the other, are the
   * pickle (with `reserve` free bytes at the start of the first), without
   * copying large payloads: a `bytes`, `bytearray` or `PickleBuffer` of
   * {@link SEGMENT_MIN} bytes or more is a piece of its own, the caller's
   * very array (do not change it until the pieces are written). The pieces
   * belong to the caller: the pickler does not reuse them. This is how a
   * Connection sends a large message at the cost of no copy of it.
   */
  dumpSegments(obj: unknown, reserve = 0): Uint8Array[] {
    const segments: Uint8Array[] = [];
    this.#segments = segments;
    this.#segmentStart = 0;
    try {
      const tail = this.#dump(obj, reserve);
      segments.push(tail.subarray(this.#segmentStart));
    } finally {
      this.#segments = null;
    }
    if (this.#pos <= KEEP_BUFFER_MAX) {
      // Small: copy the pickler's part, keep its buffer for the next dump.
      for (let i = 0; i < segments.length; i++) if (segments[i]!.buffer === this.#buf.buffer) segments[i] = segments[i]!.slice();
    } else {
      // Large: hand the buffer over rather than copy it; the next dump starts a new one.
      this.#buf = new Uint8Array(INITIAL_CAPACITY);
      this.#view = new DataView(this.#buf.buffer);
    }
    return segments;
  }

  #dump(obj: unknown, reserve: number, copy = false): Uint8Array {
    if (this.#busy) throw new PicklingError('Pickler.dump called while a dump is running', { code: 'REENTRANT' });
    this.#busy = true;
    try {
      this.#pos = 0;
      this.#ensure(reserve);
      this.#pos = reserve;
      this.#frameStart = -1;
      this.#scratchTop = 0;
      this.#reducing?.clear();
      this.#nextGeneration();
      this.#memoLen = 0;
      this.#smallLen = 0;
      if (this.protocol >= 2) {
        this.#ensure(2);
        this.#buf[this.#pos++] = 0x80; // PROTO
        this.#buf[this.#pos++] = this.protocol;
      }
      if (this.#framing) this.#openFrame();
      try {
        this.#save(obj);
      } catch (e) {
        if (e instanceof RangeError && /call stack/i.test(e.message)) {
          throw new PicklingError('maximum recursion depth exceeded while pickling an object', { code: 'RECURSION', cause: e });
        }
        throw e;
      }
      this.#byte(0x2e); // STOP
      if (this.#framing) this.#commitFrame();
      return copy ? this.#buf.slice(0, this.#pos) : this.#buf.subarray(0, this.#pos);
    } finally {
      this.#busy = false;
      // Do not keep the caller's objects, keys and values alive.
      const objs = this.#smallObjs;
      for (let i = this.#smallLen < 0 ? SMALL_MEMO : this.#smallLen; i > 0; ) objs[--i] = undefined;
      this.#settleObjectMemo();
      const high = this.#scratchHigh;
      if (high > 0) {
        this.#scratchHigh = 0;
        if (high <= 4096) {
          const keys = this.#scratchKeys;
          const values = this.#scratchValues;
          for (let i = 0; i < high; i++) {
            keys[i] = '';
            values[i] = undefined;
          }
        } else {
          this.#scratchKeys = [];
          this.#scratchValues = [];
        }
      }
      if (this.#buf.length > 16 * 1024 * 1024 && this.#pos < this.#buf.length / 4) {
        // Do not keep a huge buffer alive for small pickles.
        this.#buf = new Uint8Array(INITIAL_CAPACITY);
        this.#view = new DataView(this.#buf.buffer);
      }
    }
  }

  // ------------------------------------------------------------ output

  #ensure(n: number): void {
    const need = this.#pos + n;
    if (need <= this.#buf.length) return;
    let cap = this.#buf.length * 2;
    while (cap < need) cap *= 2;
    const next = new Uint8Array(cap);
    next.set(this.#buf.subarray(0, this.#pos));
    this.#buf = next;
    this.#view = new DataView(next.buffer);
  }

  #byte(b: number): void {
    if (this.#pos >= this.#buf.length) this.#ensure(1);
    this.#buf[this.#pos++] = b;
  }

  #bytes2(a: number, b: number): void {
    if (this.#pos + 2 > this.#buf.length) this.#ensure(2);
    this.#buf[this.#pos++] = a;
    this.#buf[this.#pos++] = b;
  }

  #u32(op: number, v: number): void {
    this.#ensure(5);
    this.#buf[this.#pos] = op;
    this.#view.setUint32(this.#pos + 1, v, true);
    this.#pos += 5;
  }

  #u64(op: number, v: number): void {
    this.#ensure(9);
    this.#buf[this.#pos] = op;
    this.#view.setUint32(this.#pos + 1, v >>> 0, true);
    this.#view.setUint32(this.#pos + 5, Math.floor(v / 0x100000000), true);
    this.#pos += 9;
  }

  #ascii(s: string): void {
    this.#ensure(s.length);
    for (let i = 0; i < s.length; i++) this.#buf[this.#pos++] = s.charCodeAt(i);
  }

  #openFrame(): void {
    this.#ensure(FRAME_HEADER_SIZE);
    this.#frameStart = this.#pos;
    this.#pos += FRAME_HEADER_SIZE;
  }

  /** Closes the open frame: writes its header, or removes the reserved header if the frame is small. */
  #commitFrame(): void {
    const start = this.#frameStart;
    if (start < 0) return;
    const len = this.#pos - start - FRAME_HEADER_SIZE;
    if (len >= FRAME_SIZE_MIN) {
      this.#buf[start] = 0x95; // FRAME
      this.#view.setUint32(start + 1, len >>> 0, true);
      this.#view.setUint32(start + 5, Math.floor(len / 0x100000000), true);
    } else {
      this.#buf.copyWithin(start, start + FRAME_HEADER_SIZE, this.#pos);
      this.#pos -= FRAME_HEADER_SIZE;
    }
    this.#frameStart = -1;
  }

  /** Writes a large payload outside any frame, as CPython does for 64 KiB and more. */
  #writeUnframed(header: Uint8Array, payload: Uint8Array | null, str: string | null, strBytes: number): void {
    this.#commitFrame();
    const segments = this.#segments;
    if (segments !== null && payload !== null && payload.length >= SEGMENT_MIN) {
      // A piece of its own: what was written so far, then the caller's bytes, uncopied.
      this.#ensure(header.length);
      this.#buf.set(header, this.#pos);
      this.#pos += header.length;
      segments.push(this.#buf.subarray(this.#segmentStart, this.#pos), payload);
      this.#segmentStart = this.#pos;
      this.#openFrame();
      return;
    }
    this.#ensure(header.length + strBytes);
    this.#buf.set(header, this.#pos);
    this.#pos += header.length;
    if (payload !== null) {
      this.#buf.set(payload, this.#pos);
      this.#pos += payload.length;
    } else if (str !== null) {
      this.#pos = encodeUtf8Into(str, this.#buf, this.#pos);
    }
    this.#openFrame();
  }

  // ------------------------------------------------------------ memo

  /** Starts a new dump's stamps: above every stamp of the last dump (which may have thrown part-way). */
  #nextGeneration(): void {
    let base = this.#base + this.#memoLen;
    if (base >= STAMP_LIMIT) {
      this.#objMemo = new WeakMap();
      this.#clearStrings();
      base = 0;
    }
    this.#base = base;
    if (this.#freshRun > 0) {
      this.#freshRun--;
      this.#dumpMemo = this.#freshMemo;
    }
    if (this.#strMemo.size + this.#nameMemo.size > STRING_MEMO_LIMIT || this.#stringChars > STRING_CHARS_LIMIT) this.#clearStrings();
    if (this.#shapeKeys.length > 0) this.#shapeKeys.length = 0;
  }

  #clearStrings(): void {
    this.#strMemo.clear();
    this.#moduleMemo.clear();
    this.#nameMemo.clear();
    this.#globalMemo.clear();
    this.#codecMemo.clear();
    this.#stringChars = 0;
  }

  /** The memo index of `obj` in this dump, or -1. */
  #objIndex(obj: object): number {
    const n = this.#smallLen;
    if (n >= 0) {
      const objs = this.#smallObjs;
      for (let i = 0; i < n; i++) if (objs[i] === obj) return this.#smallIdx[i]!;
      return -1;
    }
    const m = this.#dumpMemo;
    if (m !== null) return m.get(obj) ?? -1;
    const v = this.#objMemo.get(obj);
    this.#weakSeen++;
    if (v === undefined) {
      this.#weakNew++;
      return -1;
    }
    return v >= this.#base ? v - this.#base : -1;
  }

  /** Writes the memo opcode for `obj` and records it. */
  #memoizeObj(obj: object): void {
    const idx = this.#memoize();
    const n = this.#smallLen;
    if (n >= 0) {
      if (n < SMALL_MEMO) {
        this.#smallObjs[n] = obj;
        this.#smallIdx[n] = idx;
        this.#smallLen = n + 1;
        return;
      }
      const m = this.#dumpMemo;
      if (m !== null) for (let i = 0; i < n; i++) m.set(this.#smallObjs[i]!, this.#smallIdx[i]!);
      else for (let i = 0; i < n; i++) this.#objMemo.set(this.#smallObjs[i]!, this.#base + this.#smallIdx[i]!);
      this.#smallLen = -1;
    }
    const m = this.#dumpMemo;
    if (m !== null) m.set(obj, idx);
    else this.#objMemo.set(obj, this.#base + idx);
  }

  /** After a dump: empties its Map, or judges from its WeakMap lookups which table the next dumps use. */
  #settleObjectMemo(): void {
    const m = this.#dumpMemo;
    if (m !== null) {
      if (m.size > 0) m.clear();
      this.#dumpMemo = null;
      return;
    }
    const seen = this.#weakSeen;
    if (seen === 0) return;
    const added = this.#weakNew;
    this.#weakSeen = 0;
    this.#weakNew = 0;
    if (seen >= FRESH_MIN && added * 2 > seen) this.#freshRun = FRESH_RUN;
  }

  /** The memo index of `key` in `table` in this dump, or -1. */
  #strIndex(table: Map<string, number>, key: string): number {
    const v = table.get(key);
    return v !== undefined && v >= this.#base ? v - this.#base : -1;
  }

  #memoizeStr(table: Map<string, number>, key: string): void {
    table.set(key, this.#base + this.#memoize());
    this.#stringChars += key.length;
  }

  #memoize(): number {
    const idx = this.#memoLen++;
    const p = this.protocol;
    if (p >= 4) this.#byte(0x94); // MEMOIZE
    else if (p >= 1) {
      if (idx < 256) this.#bytes2(0x71, idx); // BINPUT
      else this.#u32(0x72, idx); // LONG_BINPUT
    } else {
      this.#ascii(`p${idx}\n`); // PUT
    }
    return idx;
  }

  #get(idx: number): void {
    const p = this.protocol;
    if (p >= 1) {
      if (idx < 256) this.#bytes2(0x68, idx); // BINGET
      else this.#u32(0x6a, idx); // LONG_BINGET
    } else {
      this.#ascii(`g${idx}\n`); // GET
    }
  }

  // ------------------------------------------------------------ dispatch

  #save(obj: unknown): void {
    if (this.#frameStart >= 0 && this.#pos - this.#frameStart - FRAME_HEADER_SIZE >= FRAME_SIZE_TARGET) {
      this.#commitFrame();
      this.#openFrame();
    }
    if (this.#persistentId !== undefined) {
      // The id itself is saved without asking for its own id (CPython's pers_save).
      if (this.#skipPersistentId) this.#skipPersistentId = false;
      else if (this.#savePersistent(obj)) return;
    }
    // An if-chain rather than `switch (typeof obj)`: TurboFan turns each
    // `typeof x === '...'` into a type check, where the switch made it call
    // the Typeof builtin for every value (1.7% of a dump in perf). Objects and
    // strings, the most frequent, come first.
    if (typeof obj === 'object') {
      if (obj === null) this.#byte(0x4e); // NONE
      else this.#saveObject(obj);
    } else if (typeof obj === 'string') {
      this.#saveStr(obj);
    } else if (typeof obj === 'number') {
      this.#saveNumber(obj);
    } else if (typeof obj === 'bigint') {
      this.#saveInt(obj);
    } else if (typeof obj === 'boolean') {
      if (this.protocol >= 2) this.#byte(obj ? 0x88 : 0x89); // NEWTRUE / NEWFALSE
      else this.#ascii(obj ? 'I01\n' : 'I00\n');
    } else if (typeof obj === 'undefined') {
      this.#byte(0x4e); // NONE
    } else {
      throw new PicklingError(`cannot pickle a ${typeof obj}`, { code: 'UNPICKLABLE' });
    }
  }

  #saveObject(obj: object): void {
    const proto = Object.getPrototypeOf(obj);
    // Objects that pickle as atoms (never memoized) come first.
    if (proto === PYFLOAT_PROTO) {
      this.#saveFloat((obj as PyFloat).value);
      return;
    }
    const idx = this.#objIndex(obj);
    if (idx >= 0) {
      this.#get(idx);
      return;
    }
    if (proto === null || proto === OBJECT_PROTO) this.#saveObjectDict(obj as Record<string, unknown>);
    else if (proto === ARRAY_PROTO) this.#saveList(obj as unknown[]);
    else if (proto === UINT8ARRAY_PROTO) this.#saveBytes(obj as Uint8Array);
    else if (proto === PYTUPLE_PROTO) this.#saveTuple(obj as PyTuple);
    else if (proto === MAP_PROTO || proto === PYDICT_PROTO || proto === PyDictItems.prototype) this.#saveMap(obj as Map<unknown, unknown> | PyDictItems);
    else if (proto === PyByteArray.prototype) this.#saveByteArray(obj as PyByteArray);
    else if (proto === Set.prototype) this.#saveSet(obj as Set<unknown>);
    else if (proto === PyFrozenSet.prototype) this.#saveFrozenSet(obj as PyFrozenSet);
    else if (proto === PyGlobal.prototype) this.#saveGlobal(obj as PyGlobal);
    else if (proto === PickleBuffer.prototype) this.#savePickleBuffer(obj as PickleBuffer);
    else if (proto === PYOBJECT_PROTO) this.#savePyObject(obj as PyObject);
    else this.#saveOther(obj);
  }

  /** Objects with a reduce method or a registered reducer; subclasses of the builtin containers otherwise. */
  #saveOther(obj: object): void {
    const method = (obj as { [reduceEx]?: (protocol: number) => ReduceValue })[reduceEx];
    if (typeof method === 'function') {
      this.#saveReduce(method.call(obj, this.protocol), obj);
      return;
    }
    const reducer = this.#registry.reducerFor(obj);
    if (reducer !== undefined) {
      this.#saveReduce((reducer as (o: object, p: number) => ReduceValue)(obj, this.protocol), obj);
      return;
    }
    if (obj instanceof PyTuple) this.#saveTuple(obj);
    else if (Array.isArray(obj)) this.#saveList(obj);
    else if (obj instanceof PyFrozenSet) this.#saveFrozenSet(obj);
    else if (obj instanceof Set) this.#saveSet(obj);
    else if (obj instanceof Map) this.#saveMap(obj);
    else if (obj instanceof PyByteArray) this.#saveByteArray(obj);
    else if (obj instanceof Uint8Array) this.#saveBytes(obj);
    else if (obj instanceof PyGlobal) this.#saveGlobal(obj);
    else {
      const hint = obj instanceof Date ? ' (use PyDatetime.fromDate)' : typeof obj === 'function' ? ' (functions travel as PyGlobal references)' : '';
      throw new PicklingError(`cannot pickle a ${typeNameOf(obj)}: no reduceEx method and no reducer registered${hint}`, { code: 'UNPICKLABLE' });
    }
  }

  #savePersistent(obj: unknown): boolean {
    const pid = this.#persistentId!(obj);
    if (pid === null || pid === undefined) return false;
    if (this.protocol === 0) {
      const text = typeof pid === 'string' ? pid : typeof pid === 'number' || typeof pid === 'bigint' ? String(pid) : null;
      if (text === null) throw new PicklingError('persistent IDs in protocol 0 must be ASCII strings', { code: 'BAD_PERSISTENT_ID' });
      if (!/^[\x00-\x09\x0b-\x7f]*$/.test(text)) throw new PicklingError('persistent IDs in protocol 0 must be ASCII strings without a newline', { code: 'BAD_PERSISTENT_ID' });
      this.#ascii(`P${text}\n`);
      return true;
    }
    this.#skipPersistentId = true;
    this.#save(pid);
    this.#byte(0x51); // BINPERSID
    return true;
  }

  // ------------------------------------------------------------ atoms

  #saveNumber(x: number): void {
    if ((x | 0) === x && (x !== 0 || 1 / x > 0)) {
      this.#saveInt32(x);
      return;
    }
    if (Number.isSafeInteger(x) && x !== 0) {
      if (this.protocol >= 2) this.#saveLong1Number(x);
      else this.#saveInt(BigInt(x));
      return;
    }
    this.#saveFloat(x);
  }

  /** LONG1 of a safe integer outside the 32-bit range, without a detour through bigint. */
  #saveLong1Number(x: number): void {
    const abs = x < 0 ? -x : x;
    const nbits = 64 - Math.clz32(Math.floor(abs / 0x100000000)); // abs >= 2**31, so the high word decides
    let nbytes = (nbits >> 3) + 1;
    if (x < 0 && (nbits & 7) === 0 && abs === 2 ** (nbits - 1)) nbytes--;
    this.#ensure(2 + 8);
    const at = this.#pos;
    this.#buf[at] = 0x8a; // LONG1
    this.#buf[at + 1] = nbytes;
    // Two's complement in 64 bits, little-endian; bytes past nbytes are scratch.
    this.#view.setUint32(at + 2, x >>> 0, true);
    this.#view.setInt32(at + 6, Math.floor(x / 0x100000000), true);
    this.#pos = at + 2 + nbytes;
  }

  #saveInt32(x: number): void {
    const p = this.protocol;
    if (p >= 1) {
      if (x >= 0 && x < 256) this.#bytes2(0x4b, x); // BININT1
      else if (x >= 0 && x < 65536) {
        this.#ensure(3);
        this.#buf[this.#pos++] = 0x4d; // BININT2
        this.#buf[this.#pos++] = x & 0xff;
        this.#buf[this.#pos++] = x >> 8;
      } else {
        this.#ensure(5);
        this.#buf[this.#pos] = 0x4a; // BININT
        this.#view.setInt32(this.#pos + 1, x, true);
        this.#pos += 5;
      }
    } else {
      this.#ascii(`I${x}\n`);
    }
  }

  #saveInt(v: bigint): void {
    // Number(v) rounds to the nearest double, which keeps these range tests
    // exact (the bounds are doubles), and is v itself below 2**53.
    const f = Number(v);
    if (f >= -2147483648 && f <= 2147483647) {
      this.#saveInt32(f);
      return;
    }
    const p = this.protocol;
    if (p < 2) {
      const text = v.toString();
      if (text.replace('-', '').length > 4300) {
        throw new PicklingError('Exceeds the limit (4300 digits) for integer string conversion; use protocol 2 or higher', { code: 'INT_TOO_LARGE' });
      }
      this.#ascii(`L${text}L\n`);
      return;
    }
    if (f > -(2 ** 53) && f < 2 ** 53) {
      this.#saveLong1Number(f);
      return;
    }
    if (f > -(2 ** 100) && f < 2 ** 100) {
      this.#saveLong1Big(v, f);
      return;
    }
    // LONG1/LONG4: the shortest little-endian two's complement (spec/pickle.md 4.2).
    const neg = v < 0n;
    const abs = neg ? -v : v;
    let nbits: number;
    let high = 0n; // bits 64..127 of |v| when |v| < 2**128
    if (abs < TWO64) nbits = bitLength64(abs);
    else if (abs < TWO128) {
      high = abs >> 64n;
      nbits = 64 + bitLength64(high);
    } else {
      const hex = abs.toString(16);
      nbits = hex.length * 4 - (Math.clz32(parseInt(hex[0]!, 16)) - 28);
    }
    let nbytes = (nbits >> 3) + 1;
    // -(2**(8k-1)) is its own 256's complement in k bytes: no sign byte needed.
    if (neg && (nbits & 7) === 0 && abs === 1n << BigInt(nbits - 1)) nbytes--;
    this.#ensure(5 + nbytes + 16);
    const buf = this.#buf;
    if (nbytes < 256) {
      buf[this.#pos++] = 0x8a; // LONG1
      buf[this.#pos++] = nbytes;
    } else {
      buf[this.#pos] = 0x8b; // LONG4
      this.#view.setInt32(this.#pos + 1, nbytes, true);
      this.#pos += 5;
    }
    const view = this.#view;
    if (nbytes <= 8) {
      view.setBigUint64(this.#pos, BigInt.asUintN(64, v), true);
    } else if (nbytes <= 16) {
      // Bytes past nbytes are scratch: the next write overwrites them.
      view.setBigUint64(this.#pos, BigInt.asUintN(64, v), true);
      view.setBigUint64(this.#pos + 8, neg ? BigInt.asUintN(64, v >> 64n) : high, true);
    } else {
      const hex = BigInt.asUintN(nbytes * 8, v).toString(16).padStart(nbytes * 2, '0');
      for (let k = 0; k < nbytes; k++) {
        const at = hex.length - 2 * (k + 1);
        buf[this.#pos + k] = parseInt(hex.slice(at, at + 2), 16);
      }
    }
    this.#pos += nbytes;
  }

  /**
   * LONG1 of a bigint with 2**53 <= |v| < 2**100 (`f` is Number(v)), with
   * no BigInt arithmetic: the general code below made two BigInts and eight
   * BigInt builtin calls per value. The bit length comes from the exponent
   * of `f`, DataView writes the low 64 bits, and the high part is computed in
   * doubles, exactly at this size. Dumps of the 2**70 payload: 0.87x the
   * time on min, 0.93x on median (separate processes, 8 each), 0.94-0.99x
   * alternating in one process; 16 young-generation GCs per 500 dumps
   * instead of 60.
   */
  #saveLong1Big(v: bigint, f: number): void {
    const neg = f < 0;
    F64_BITS.setFloat64(0, neg ? -f : f);
    const hi = F64_BITS.getUint32(0);
    const e = (hi >>> 20) - 1023; // |f| = 1.m * 2**e
    // |f| is a power of two when its mantissa is zero: |v| may then lie just below it.
    const pow2 = (hi & 0xfffff) === 0 && F64_BITS.getUint32(4) === 0;
    let nbits = e + 1;
    if (pow2 && (neg ? v > NEG_POW2[e]! : v < POW2[e]!)) nbits = e;
    let nbytes = (nbits >> 3) + 1;
    // -(2**(8k-1)) is its own 256's complement in k bytes: no sign byte needed.
    if (neg && pow2 && nbits === e + 1 && (nbits & 7) === 0 && v === NEG_POW2[e]!) nbytes--;
    this.#ensure(2 + 16);
    const at = this.#pos;
    const view = this.#view;
    this.#buf[at] = 0x8a; // LONG1
    this.#buf[at + 1] = nbytes;
    // The low 64 bits in two's complement; bytes past nbytes are scratch (the next write overwrites them).
    view.setBigUint64(at + 2, v, true);
    if (nbytes > 8) {
      // v = high * 2**64 + low with 0 <= low < 2**64. `low` below is within 2**10 of it and f within
      // 2**46 of v, so (f - low) / 2**64 is within 2**-16 of the integer high: rounding gives it exactly.
      const low = view.getUint32(at + 2, true) + view.getUint32(at + 6, true) * 2 ** 32;
      const high = Math.round((f - low) / 2 ** 64);
      view.setUint32(at + 10, high >>> 0, true);
      view.setInt32(at + 14, Math.floor(high / 2 ** 32), true);
    }
    this.#pos = at + 2 + nbytes;
  }

  #saveFloat(x: number): void {
    if (this.protocol >= 1) {
      this.#ensure(9);
      this.#buf[this.#pos] = 0x47; // BINFLOAT
      this.#view.setFloat64(this.#pos + 1, x, false);
      this.#pos += 9;
    } else {
      this.#ascii(`F${floatRepr(x)}\n`);
    }
  }

  // ------------------------------------------------------------ str, bytes

  #saveStr(s: string): void {
    if (s.length > UNHASHED_STRING_CHARS) {
      // Written in full each time, memoized by number only: see UNHASHED_STRING_CHARS.
      this.#writeStr(s);
      this.#memoize();
      return;
    }
    const idx = this.#strIndex(this.#strMemo, s);
    if (idx >= 0) {
      this.#get(idx);
      return;
    }
    this.#writeStr(s);
    this.#memoizeStr(this.#strMemo, s);
  }

  /** Writes a str opcode and its payload (no memo). */
  #writeStr(s: string): void {
    const p = this.protocol;
    if (p === 0) {
      this.#writeRawUnicodeEscape(s);
      return;
    }
    const n = s.length;
    const maxBytes = n * 3;
    if (p >= 4 && maxBytes < 256) {
      // SHORT_BINUNICODE: the length surely fits in one byte.
      this.#ensure(2 + maxBytes);
      const start = this.#pos;
      const end = encodeUtf8Into(s, this.#buf, start + 2);
      this.#buf[start] = 0x8c;
      this.#buf[start + 1] = end - start - 2;
      this.#pos = end;
      return;
    }
    if (this.#framing && maxBytes >= FRAME_SIZE_TARGET) {
      // Possibly a large payload: it goes outside frames if its UTF-8 is 64 KiB or more.
      const bytes = new Uint8Array(maxBytes);
      const len = encodeUtf8Into(s, bytes, 0);
      if (len >= FRAME_SIZE_TARGET) {
        this.#writeUnframed(this.#strHeader(len), bytes.subarray(0, len), null, len);
        return;
      }
      this.#writeStrBytes(bytes.subarray(0, len));
      return;
    }
    // Reserve the 5-byte header; shrink to SHORT_BINUNICODE if the result is short at protocol 4+.
    this.#ensure(5 + maxBytes);
    const start = this.#pos;
    const end = encodeUtf8Into(s, this.#buf, start + 5);
    const len = end - start - 5;
    if (p >= 4 && len < 256) {
      this.#buf.copyWithin(start + 2, start + 5, end);
      this.#buf[start] = 0x8c;
      this.#buf[start + 1] = len;
      this.#pos = end - 3;
    } else {
      this.#buf[start] = 0x58; // BINUNICODE
      this.#view.setUint32(start + 1, len, true);
      this.#pos = end;
    }
  }

  #strHeader(len: number): Uint8Array {
    if (len > 0xffffffff) {
      const h = new Uint8Array(9);
      h[0] = 0x8d; // BINUNICODE8
      new DataView(h.buffer).setUint32(1, len >>> 0, true);
      new DataView(h.buffer).setUint32(5, Math.floor(len / 0x100000000), true);
      return h;
    }
    const h = new Uint8Array(5);
    h[0] = 0x58; // BINUNICODE
    new DataView(h.buffer).setUint32(1, len, true);
    return h;
  }

  #writeStrBytes(bytes: Uint8Array): void {
    const len = bytes.length;
    if (this.protocol >= 4 && len < 256) this.#bytes2(0x8c, len);
    else this.#u32(0x58, len);
    this.#ensure(len);
    this.#buf.set(bytes, this.#pos);
    this.#pos += len;
  }

  /** Protocol 0's UNICODE argument: raw-unicode-escape with CPython's extra escapes. */
  #writeRawUnicodeEscape(s: string): void {
    this.#ensure(2 + s.length * 10);
    const buf = this.#buf;
    let pos = this.#pos;
    buf[pos++] = 0x56; // UNICODE
    for (let i = 0; i < s.length; i++) {
      let c = s.charCodeAt(i);
      if (c >= 0xd800 && c <= 0xdbff && i + 1 < s.length) {
        const d = s.charCodeAt(i + 1);
        if (d >= 0xdc00 && d <= 0xdfff) {
          c = 0x10000 + ((c - 0xd800) << 10) + (d - 0xdc00);
          i++;
        }
      }
      if (c >= 0x10000) {
        buf[pos++] = 0x5c;
        buf[pos++] = 0x55; // \U
        for (let shift = 28; shift >= 0; shift -= 4) buf[pos++] = HEX_DIGITS[(c >> shift) & 15]!;
      } else if (c >= 0x100 || c === 0x5c || c === 0 || c === 0x0a || c === 0x0d || c === 0x1a) {
        buf[pos++] = 0x5c;
        buf[pos++] = 0x75; // \u
        for (let shift = 12; shift >= 0; shift -= 4) buf[pos++] = HEX_DIGITS[(c >> shift) & 15]!;
      } else {
        buf[pos++] = c;
      }
    }
    buf[pos++] = 0x0a;
    this.#pos = pos;
  }

  #saveBytes(b: Uint8Array): void {
    const p = this.protocol;
    if (p < 3) {
      // bytes(), or _codecs.encode(latin1 text, 'latin1') (spec/pickle.md section 4.5).
      if (b.length === 0) this.#saveReduce({ callable: kBytes, args: EMPTY_TUPLE }, b);
      else {
        let text = '';
        for (let i = 0; i < b.length; i += 8192) text += String.fromCharCode.apply(null, b.subarray(i, i + 8192) as unknown as number[]);
        // CPython caches one-character latin-1 strings, so those are shared with user strings.
        const arg = text.length === 1 ? text : new SpecialStr(text, 'fresh');
        this.#saveReduce({ callable: kCodecsEncode, args: [arg, LATIN1_CODEC] }, b);
      }
      return;
    }
    this.#writeBinary(b, 0x43, 0x42, 0x8e);
    this.#memoizeObj(b);
  }

  /** bytes-like payload with the short (u1), 4-byte and 8-byte length opcodes. */
  #writeBinary(b: Uint8Array, shortOp: number, op4: number, op8: number): void {
    const len = b.length;
    if (this.#framing && len >= FRAME_SIZE_TARGET) {
      const header = new Uint8Array(len > 0xffffffff ? 9 : 5);
      const hv = new DataView(header.buffer);
      if (len > 0xffffffff) {
        header[0] = op8;
        hv.setUint32(1, len >>> 0, true);
        hv.setUint32(5, Math.floor(len / 0x100000000), true);
      } else {
        header[0] = op4;
        hv.setUint32(1, len, true);
      }
      this.#writeUnframed(header, b, null, len);
      return;
    }
    if (len < 256 && shortOp >= 0) this.#bytes2(shortOp, len);
    else if (len <= 0xffffffff && op4 >= 0) this.#u32(op4, len);
    else if (op8 >= 0 && this.protocol >= 4) this.#u64(op8, len);
    else throw new PicklingError('serializing a bytes object larger than 4 GiB requires pickle protocol 4 or higher', { code: 'TOO_LARGE' });
    this.#ensure(len);
    this.#buf.set(b, this.#pos);
    this.#pos += len;
  }

  #saveByteArray(b: PyByteArray): void {
    if (this.protocol < 5) {
      const args = b.length === 0 ? EMPTY_TUPLE : [new Uint8Array(b)];
      this.#saveReduce({ callable: kBytearray, args }, b);
      return;
    }
    // BYTEARRAY8
    const len = b.length;
    if (len >= FRAME_SIZE_TARGET) {
      const header = new Uint8Array(9);
      header[0] = 0x96;
      new DataView(header.buffer).setUint32(1, len >>> 0, true);
      new DataView(header.buffer).setUint32(5, Math.floor(len / 0x100000000), true);
      this.#writeUnframed(header, b, null, len);
    } else {
      this.#u64(0x96, len);
      this.#ensure(len);
      this.#buf.set(b, this.#pos);
      this.#pos += len;
    }
    this.#memoizeObj(b);
  }

  #savePickleBuffer(pb: PickleBuffer): void {
    if (this.protocol < 5) throw new PicklingError('PickleBuffer can only be pickled with protocol >= 5', { code: 'PROTOCOL' });
    const inBand = this.#bufferCallback === undefined || Boolean(this.#bufferCallback(pb));
    if (inBand) {
      if (pb.readonly) this.#writeBinary(pb.buffer, 0x43, 0x42, 0x8e);
      else {
        const len = pb.buffer.length;
        if (len >= FRAME_SIZE_TARGET) {
          const header = new Uint8Array(9);
          header[0] = 0x96;
          new DataView(header.buffer).setUint32(1, len >>> 0, true);
          new DataView(header.buffer).setUint32(5, Math.floor(len / 0x100000000), true);
          this.#writeUnframed(header, pb.buffer, null, len);
        } else {
          this.#u64(0x96, len);
          this.#ensure(len);
          this.#buf.set(pb.buffer, this.#pos);
          this.#pos += len;
        }
      }
      this.#memoizeObj(pb);
      return;
    }
    this.#byte(0x97); // NEXT_BUFFER
    if (pb.readonly) this.#byte(0x98); // READONLY_BUFFER
  }

  // ------------------------------------------------------------ containers

  #saveList(list: readonly unknown[]): void {
    if (this.protocol >= 1) this.#byte(0x5d); // EMPTY_LIST
    else this.#bytes2(0x28, 0x6c); // MARK LIST
    this.#memoizeObj(list);
    this.#batchListExact(list);
  }

  /** Items of an exact list: APPEND for a single item, else MARK..APPENDS batches (spec 4.9, path 1). */
  #batchListExact(list: readonly unknown[]): void {
    const n = list.length;
    if (n === 0) return;
    if (this.protocol === 0) {
      for (let i = 0; i < n; i++) {
        this.#save(list[i]);
        this.#byte(0x61); // APPEND
      }
      return;
    }
    if (n === 1) {
      this.#save(list[0]);
      this.#byte(0x61); // APPEND
      return;
    }
    let i = 0;
    while (i < n) {
      this.#byte(0x28); // MARK
      const stop = Math.min(n, i + BATCHSIZE);
      this.#saveItems(list, i, stop);
      i = stop;
      this.#byte(0x65); // APPENDS
    }
  }

  /**
   * `#save` of `items[from]` to `items[to - 1]`, with a 32-bit int written
   * here (the bytes `#save` writes for it, framing included) instead of
   * through `#save`'s dispatch: lists and tuples of ints are common, and
   * this halves their cost.
   */
  #saveItems(items: readonly unknown[], from: number, to: number): void {
    const inline = this.#persistentId === undefined && this.protocol >= 1;
    for (let i = from; i < to; i++) {
      const v = items[i];
      if (!inline || typeof v !== 'number' || (v | 0) !== v || (v === 0 && 1 / v < 0)) {
        this.#save(v);
        continue;
      }
      if (this.#frameStart >= 0 && this.#pos - this.#frameStart - FRAME_HEADER_SIZE >= FRAME_SIZE_TARGET) {
        this.#commitFrame();
        this.#openFrame();
      }
      if (this.#pos + 5 > this.#buf.length) this.#ensure(5);
      const buf = this.#buf;
      const p = this.#pos;
      if (v >= 0 && v < 256) {
        buf[p] = 0x4b; // BININT1
        buf[p + 1] = v;
        this.#pos = p + 2;
      } else if (v >= 0 && v < 65536) {
        buf[p] = 0x4d; // BININT2
        buf[p + 1] = v & 0xff;
        buf[p + 2] = v >> 8;
        this.#pos = p + 3;
      } else {
        buf[p] = 0x4a; // BININT, little-endian
        buf[p + 1] = v & 0xff;
        buf[p + 2] = (v >> 8) & 0xff;
        buf[p + 3] = (v >> 16) & 0xff;
        buf[p + 4] = (v >>> 24) & 0xff;
        this.#pos = p + 5;
      }
    }
  }

  /** Items of a reduce's listitems iterator (spec 4.9, path 2). */
  #batchListIter(items: Iterable<unknown>): void {
    const it = items[Symbol.iterator]();
    if (this.protocol === 0) {
      for (let r = it.next(); !r.done; r = it.next()) {
        this.#save(r.value);
        this.#byte(0x61); // APPEND
      }
      return;
    }
    for (;;) {
      const first = it.next();
      if (first.done) return;
      const second = it.next();
      if (second.done) {
        this.#save(first.value);
        this.#byte(0x61); // APPEND
        return;
      }
      this.#byte(0x28); // MARK
      this.#save(first.value);
      this.#save(second.value);
      let n = 2;
      while (n < BATCHSIZE) {
        const r = it.next();
        if (r.done) break;
        this.#save(r.value);
        n++;
      }
      this.#byte(0x65); // APPENDS
      if (n < BATCHSIZE) return;
    }
  }

  #saveObjectDict(d: Record<string, unknown>): void {
    this.#openDict(d);
    // Keys and values are all read before anything is saved, as
    // Object.keys/Object.values did, but into scratch arrays shared by nested
    // dicts (a stack: this dict's items sit at [start, end)) instead of two new
    // arrays per dict. for-in with the hasOwnProperty filter yields exactly
    // Object.keys's keys, in the same order, and V8 runs it from the map's
    // enum cache: about 30 instead of 38 ns per 6-key dict
    // (`bench/micro-pickle.ts parts`), and 10% less CPU per dump.
    const keys = this.#scratchKeys;
    const values = this.#scratchValues;
    const start = this.#scratchTop;
    let end = start;
    for (const k in d) {
      if (!hasOwnProperty.call(d, k)) continue;
      keys[end] = k;
      values[end] = d[k];
      end++;
    }
    const n = end - start;
    if (n === 0) return;
    this.#scratchTop = end;
    if (end > this.#scratchHigh) this.#scratchHigh = end;
    if (this.protocol === 0 || n === 1) {
      for (let i = 0; i < n; i++) {
        this.#saveDictKey(keys[start + i]!, i);
        this.#save(values[start + i]);
        this.#byte(0x73); // SETITEM
      }
      this.#scratchTop = start;
      return;
    }
    // CPython's batch_dict_exact: a dict of exactly k*1000 items ends with an empty MARK SETITEMS.
    let i = 0;
    let batch: number;
    do {
      this.#byte(0x28); // MARK
      const stop = Math.min(n, i + BATCHSIZE);
      batch = stop - i;
      for (; i < stop; i++) {
        this.#saveDictKey(keys[start + i]!, i);
        this.#save(values[start + i]);
      }
      this.#byte(0x75); // SETITEMS
    } while (batch === BATCHSIZE);
    this.#scratchTop = start;
  }

  /**
   * Saves the i-th key of an object dict. Records of one shape repeat their
   * keys in order, so the memo index of the key last seen at position i is
   * kept: a hit is a pointer comparison instead of a string-table lookup.
   */
  #saveDictKey(k: string, i: number): void {
    if (i < SHAPE_CACHE_KEYS && this.#persistentId === undefined && this.#shapeKeys[i] === k) {
      if (this.#frameStart >= 0 && this.#pos - this.#frameStart - FRAME_HEADER_SIZE >= FRAME_SIZE_TARGET) {
        this.#commitFrame();
        this.#openFrame();
      }
      this.#get(this.#shapeIndexes[i]!);
      return;
    }
    this.#save(k);
    if (i < SHAPE_CACHE_KEYS && k.length <= UNHASHED_STRING_CHARS) {
      const idx = this.#strIndex(this.#strMemo, k);
      if (idx >= 0) {
        this.#shapeKeys[i] = k;
        this.#shapeIndexes[i] = idx;
      }
    }
  }

  #openDict(d: object): void {
    if (this.protocol >= 1) this.#byte(0x7d); // EMPTY_DICT
    else this.#bytes2(0x28, 0x64); // MARK DICT
    this.#memoizeObj(d);
  }

  #saveMap(m: Map<unknown, unknown> | PyDictItems): void {
    this.#openDict(m);
    const n = m.size;
    if (n === 0) return;
    if (this.protocol === 0 || n === 1) {
      for (const [k, v] of m) {
        this.#checkKey(k);
        this.#save(k);
        this.#save(v);
        this.#byte(0x73); // SETITEM
      }
      return;
    }
    let count = 0;
    this.#byte(0x28); // MARK
    for (const [k, v] of m) {
      if (count === BATCHSIZE) {
        this.#bytes2(0x75, 0x28); // SETITEMS, MARK
        count = 0;
      }
      this.#checkKey(k);
      this.#save(k);
      this.#save(v);
      count++;
    }
    this.#byte(0x75); // SETITEMS
    // As CPython's do-while loop: a full last batch is followed by an empty one.
    if (count === BATCHSIZE) this.#bytes2(0x28, 0x75);
  }

  #checkKey(k: unknown): void {
    if (isUnhashableKey(k)) throw new PicklingError(`unhashable type: a ${typeNameOf(k)} cannot be a dict key or set element`, { code: 'UNHASHABLE' });
  }

  /** Items of a reduce's dictitems iterator (spec 4.9, path 2). */
  #batchDictIter(items: Iterable<readonly [unknown, unknown]>): void {
    const it = items[Symbol.iterator]();
    const pair = (r: IteratorResult<readonly [unknown, unknown]>): readonly [unknown, unknown] => {
      const p = r.value;
      if (!Array.isArray(p) || p.length !== 2) throw new PicklingError('dictitems must yield [key, value] pairs', { code: 'BAD_REDUCE' });
      return p as unknown as readonly [unknown, unknown];
    };
    if (this.protocol === 0) {
      for (let r = it.next(); !r.done; r = it.next()) {
        const [k, v] = pair(r);
        this.#save(k);
        this.#save(v);
        this.#byte(0x73); // SETITEM
      }
      return;
    }
    for (;;) {
      const first = it.next();
      if (first.done) return;
      const second = it.next();
      if (second.done) {
        const [k, v] = pair(first);
        this.#save(k);
        this.#save(v);
        this.#byte(0x73); // SETITEM
        return;
      }
      this.#byte(0x28); // MARK
      for (const r of [first, second]) {
        const [k, v] = pair(r);
        this.#save(k);
        this.#save(v);
      }
      let n = 2;
      while (n < BATCHSIZE) {
        const r = it.next();
        if (r.done) break;
        const [k, v] = pair(r);
        this.#save(k);
        this.#save(v);
        n++;
      }
      this.#byte(0x75); // SETITEMS
      if (n < BATCHSIZE) return;
    }
  }

  #saveTuple(t: readonly unknown[]): void {
    const n = t.length;
    const p = this.protocol;
    if (n === 0) {
      if (p >= 1) this.#byte(0x29); // EMPTY_TUPLE
      else this.#bytes2(0x28, 0x74); // MARK TUPLE
      return;
    }
    if (p >= 2 && n <= 3) {
      for (let i = 0; i < n; i++) this.#save(t[i]);
      const idx = this.#objIndex(t);
      if (idx >= 0) {
        // The tuple was reached through its own items: discard them and fetch it.
        for (let i = 0; i < n; i++) this.#byte(0x30); // POP
        this.#get(idx);
        return;
      }
      this.#byte(0x84 + n); // TUPLE1 / TUPLE2 / TUPLE3
      this.#memoizeObj(t);
      return;
    }
    this.#byte(0x28); // MARK
    this.#saveItems(t, 0, n);
    const idx = this.#objIndex(t);
    if (idx >= 0) {
      if (p >= 1) this.#byte(0x31); // POP_MARK
      else for (let i = 0; i <= n; i++) this.#byte(0x30); // POP
      this.#get(idx);
      return;
    }
    this.#byte(0x74); // TUPLE
    this.#memoizeObj(t);
  }

  #saveSet(s: Set<unknown>): void {
    if (this.protocol < 4) {
      this.#saveReduce({ callable: kSet, args: [Array.from(s)] }, s);
      return;
    }
    this.#byte(0x8f); // EMPTY_SET
    this.#memoizeObj(s);
    if (s.size === 0) return;
    let count = 0;
    this.#byte(0x28); // MARK
    for (const v of s) {
      if (count === BATCHSIZE) {
        this.#bytes2(0x90, 0x28); // ADDITEMS, MARK
        count = 0;
      }
      this.#checkKey(v);
      this.#save(v);
      count++;
    }
    this.#byte(0x90); // ADDITEMS
    // As CPython's do-while loop: a full last batch is followed by an empty one.
    if (count === BATCHSIZE) this.#bytes2(0x28, 0x90);
  }

  #saveFrozenSet(s: PyFrozenSet): void {
    if (this.protocol < 4) {
      this.#saveReduce({ callable: kFrozenset, args: [Array.from(s)] }, s);
      return;
    }
    this.#byte(0x28); // MARK
    for (const v of s) {
      this.#checkKey(v);
      this.#save(v);
    }
    const idx = this.#objIndex(s);
    if (idx >= 0) {
      this.#byte(0x31); // POP_MARK
      this.#get(idx);
      return;
    }
    this.#byte(0x91); // FROZENSET
    this.#memoizeObj(s);
  }

  // ------------------------------------------------------------ globals and reduce

  #saveGlobal(g: PyGlobal): void {
    const key = `${g.module}\n${g.name}`;
    const idx = this.#strIndex(this.#globalMemo, key);
    if (idx >= 0) {
      this.#get(idx);
      return;
    }
    const p = this.protocol;
    if (p >= 2 && this.#registry.hasExtensions) {
      const code = this.#registry.extensionCode(g.module, g.name);
      if (code !== undefined) {
        if (code <= 0xff) this.#bytes2(0x82, code); // EXT1
        else if (code <= 0xffff) {
          this.#ensure(3);
          this.#buf[this.#pos++] = 0x83; // EXT2
          this.#buf[this.#pos++] = code & 0xff;
          this.#buf[this.#pos++] = code >> 8;
        } else this.#u32(0x84, code); // EXT4
        return;
      }
    }
    if (p >= 4) {
      // CPython holds 'builtins' as two str objects: one for builtin functions, one for builtin types.
      const moduleKey = g.module === 'builtins' && BUILTIN_FUNCTIONS.has(g.name) ? 'builtins\u0000function' : g.module;
      this.#saveNameStr(g.module, this.#moduleMemo, moduleKey);
      this.#saveNameStr(g.name, this.#nameMemo);
      this.#byte(0x93); // STACK_GLOBAL
    } else if (g.name.includes('.')) {
      // Protocols < 4 cannot name nested objects: getattr(parent, last) (CPython 3.11's form).
      const dot = g.name.lastIndexOf('.');
      const parent = new PyGlobal(g.module, g.name.slice(0, dot));
      this.#saveReduce({ callable: kGetattr, args: [parent, g.name.slice(dot + 1)] }, null);
    } else {
      let module = g.module;
      let name = g.name;
      if (p < 3 && this.#fixImports) {
        const mapped = REVERSE_NAME_MAPPING.get(key);
        if (mapped !== undefined) {
          const nl = mapped.indexOf('\n');
          module = mapped.slice(0, nl);
          name = mapped.slice(nl + 1);
        } else {
          module = REVERSE_IMPORT_MAPPING.get(module) ?? module;
        }
      }
      if (p < 3 && (/[^\x00-\x7f]/.test(module) || /[^\x00-\x7f]/.test(name))) {
        throw new PicklingError(`can't pickle global identifier '${g.module}.${g.name}' using pickle protocol ${p}`, { code: 'NON_ASCII_GLOBAL' });
      }
      if (module.includes('\n') || name.includes('\n')) throw new PicklingError('global names cannot contain newlines', { code: 'BAD_GLOBAL' });
      this.#byte(0x63); // GLOBAL
      const bytes = new Uint8Array((module.length + name.length) * 3 + 2);
      let n = encodeUtf8Into(module, bytes, 0);
      bytes[n++] = 0x0a;
      n = encodeUtf8Into(name, bytes, n);
      bytes[n++] = 0x0a;
      this.#ensure(n);
      this.#buf.set(bytes.subarray(0, n), this.#pos);
      this.#pos += n;
    }
    this.#memoizeStr(this.#globalMemo, key);
  }

  /** The module or qualified name of a STACK_GLOBAL, memoized in its own table. */
  #saveNameStr(s: string, table: Map<string, number>, key: string = s): void {
    if (this.#frameStart >= 0 && this.#pos - this.#frameStart - FRAME_HEADER_SIZE >= FRAME_SIZE_TARGET) {
      this.#commitFrame();
      this.#openFrame();
    }
    const idx = this.#strIndex(table, key);
    if (idx >= 0) {
      this.#get(idx);
      return;
    }
    this.#writeStr(s);
    this.#memoizeStr(table, key);
  }

  /**
   * A placeholder. A recursive one (with `outerArgs`) is written as CPython
   * wrote it: its first reduction with `outerArgs`, and the reduction nested
   * in them (met again while they are written) with `args`; the first one's
   * result is then dropped for the second's (POP, GET).
   */
  #savePyObject(o: PyObject): void {
    if (o.outerArgs === undefined) {
      this.#saveReduce(reducePyObject(o, this.protocol, false), o);
      return;
    }
    const reducing = (this.#reducing ??= new Set());
    if (reducing.has(o)) {
      this.#saveReduce(reducePyObject(o, this.protocol, false), o);
      return;
    }
    reducing.add(o);
    try {
      this.#saveReduce(reducePyObject(o, this.protocol, true), o);
    } finally {
      reducing.delete(o);
    }
  }

  /**
   * Writes a reduce value as CPython's `save_reduce` does (spec/pickle.md
   * section 8.3): callable and args (or class and args for NEWOBJ), the memo
   * entry of `obj` (or, when writing the arguments saved `obj` itself, POP
   * and a GET of it, and nothing more), list and dict items, then the state
   * with BUILD or through the state setter.
   */
  #saveReduce(rv: ReduceValue, obj: object | null): void {
    if (rv === null || typeof rv !== 'object') throw new PicklingError('a reduce function must return a ReduceValue object', { code: 'BAD_REDUCE' });
    const p = this.protocol;
    let kind = rv.kind ?? 'reduce';
    let callable = rv.callable;
    let args = rv.args;
    let kwargs = rv.kwargs;
    if (kind === 'reduce' && p >= 2 && callable instanceof PyGlobal && (callable.module === 'copyreg' || callable.module === 'copy_reg') && Array.isArray(args)) {
      // As CPython: copyreg.__newobj__(cls, *args) is NEWOBJ, copyreg.__newobj_ex__(cls, args, kwargs) NEWOBJ_EX.
      if (callable.name === '__newobj__' && args.length >= 1) {
        kind = 'newobj';
        callable = args[0];
        args = args.slice(1);
      } else if (callable.name === '__newobj_ex__' && args.length === 3 && Array.isArray(args[1])) {
        kind = 'newobj_ex';
        callable = args[0];
        kwargs = args[2];
        args = args[1] as unknown[];
      }
    }
    if (kind === 'newobj') {
      if (p >= 2) {
        this.#checkNewobjClass(callable);
        this.#save(callable);
        this.#saveArgs(args);
        this.#byte(0x81); // NEWOBJ
      } else if (Array.isArray(args) && args.length === 0) {
        // copyreg._reconstructor(cls, object, None), as object.__reduce_ex__ writes a plain class's objects.
        this.#save(kCopyreg);
        this.#saveArgs([callable, kObject, null]);
        this.#byte(0x52); // REDUCE
      } else {
        this.#save(kNewobj);
        this.#saveArgs([callable, ...this.#argsArray(args)]);
        this.#byte(0x52); // REDUCE
      }
    } else if (kind === 'newobj_ex') {
      if (p >= 4) {
        this.#checkNewobjClass(callable);
        this.#save(callable);
        this.#saveArgs(args);
        this.#save(kwargs ?? new PyDict());
        this.#byte(0x92); // NEWOBJ_EX
      } else if (p >= 2) {
        // CPython's form below protocol 4: functools.partial(cls.__new__, cls, *args, **kwargs)().
        this.#checkNewobjClass(callable);
        this.#save(newobjExPartial(callable, this.#argsArray(args), kwargs));
        this.#byte(0x29); // EMPTY_TUPLE
        this.#byte(0x52); // REDUCE
      } else {
        this.#save(kNewobjEx);
        this.#saveArgs([callable, args instanceof PyTuple ? args : makeTuple(this.#argsArray(args).slice()), kwargs ?? new PyDict()]);
        this.#byte(0x52); // REDUCE
      }
    } else {
      this.#save(callable);
      this.#saveArgs(args);
      this.#byte(0x52); // REDUCE
    }
    if (obj !== null) {
      const idx = this.#objIndex(obj);
      if (idx >= 0) {
        // Writing the arguments wrote obj: drop this result and fetch that one, which has its items and state.
        this.#byte(0x30); // POP
        this.#get(idx);
        return;
      }
      this.#memoizeObj(obj);
    }
    if (rv.listItems != null) this.#batchListIter(rv.listItems);
    if (rv.dictItems != null) this.#batchDictIter(rv.dictItems);
    const state = rv.state;
    if (state !== undefined && state !== null) {
      const setter = rv.stateSetter;
      if (setter !== undefined && setter !== null) {
        if (obj === null) throw new PicklingError('a state setter needs the object it sets', { code: 'BAD_REDUCE' });
        // setter(obj, state), its result dropped (CPython's save_reduce writes TUPLE2 at every protocol).
        this.#save(setter);
        this.#save(obj);
        this.#save(state);
        this.#bytes2(0x86, 0x52); // TUPLE2, REDUCE
        this.#byte(0x30); // POP
      } else {
        this.#save(state);
        this.#byte(0x62); // BUILD
      }
    }
  }

  #argsArray(args: unknown): readonly unknown[] {
    if (!Array.isArray(args)) throw new PicklingError('reduce args must be an array or a tuple', { code: 'BAD_REDUCE' });
    return args;
  }

  /** NEWOBJ needs a class: refuse the functions of `builtins` (CPython: "args[0] from __newobj__ args is not a type"). */
  #checkNewobjClass(cls: unknown): void {
    if (cls instanceof PyGlobal && isKnownFunction(cls)) {
      throw new PicklingError(`NEWOBJ needs a class, not the function ${cls.module}.${cls.name}`, { code: 'BAD_REDUCE' });
    }
  }

  /** Saves reduce arguments as a tuple: a PyTuple as itself (memo identity kept), an array as a new tuple. */
  #saveArgs(args: readonly unknown[]): void {
    if (!Array.isArray(args)) throw new PicklingError('reduce args must be an array or a tuple', { code: 'BAD_REDUCE' });
    if (args instanceof PyTuple) {
      this.#save(args);
      return;
    }
    this.#saveTupleWithSpecial(makeTuple(args.slice()));
  }

  /** A tuple that may hold SpecialStr items. */
  #saveTupleWithSpecial(t: PyTuple): void {
    if (!t.some((x) => x instanceof SpecialStr)) {
      this.#save(t);
      return;
    }
    const saveItem = (x: unknown): void => {
      if (!(x instanceof SpecialStr)) {
        this.#save(x);
        return;
      }
      if (this.#frameStart >= 0 && this.#pos - this.#frameStart - FRAME_HEADER_SIZE >= FRAME_SIZE_TARGET) {
        this.#commitFrame();
        this.#openFrame();
      }
      if (x.kind === 'codec') {
        const idx = this.#strIndex(this.#codecMemo, x.value);
        if (idx >= 0) {
          this.#get(idx);
          return;
        }
        this.#writeStr(x.value);
        this.#memoizeStr(this.#codecMemo, x.value);
        return;
      }
      this.#writeStr(x.value);
      this.#memoize();
    };
    const n = t.length;
    if (this.protocol >= 2 && n <= 3) {
      t.forEach(saveItem);
      this.#byte(0x84 + n);
    } else {
      this.#byte(0x28); // MARK
      t.forEach(saveItem);
      this.#byte(0x74); // TUPLE
    }
    this.#memoize();
  }
}

/** One reusable pickler per protocol for plain `dumps` calls (their buffers are kept). */
const sharedPicklers: Array<Pickler | undefined> = [];

/**
 * Pickles `obj` (protocol 4 unless `options.protocol` says otherwise) and
 * returns a new `Uint8Array`.
 */
export function dumps(obj: unknown, options?: PicklerOptions): Uint8Array {
  const plain = options === undefined || (options.bufferCallback === undefined && options.persistentId === undefined && options.registry === undefined && options.fixImports !== false);
  if (!plain) return new Pickler(options).dumpCopy(obj);
  let protocol = options?.protocol ?? DEFAULT_PROTOCOL;
  if (protocol < 0) protocol = HIGHEST_PROTOCOL;
  let p = sharedPicklers[protocol];
  if (p === undefined || p.busy) {
    p = new Pickler({ protocol });
    sharedPicklers[protocol] ??= p;
  }
  return p.dumpCopy(obj);
}
