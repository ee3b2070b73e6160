/**
 * Mutation fuzzer for the pickle decoder, `loads`.
 *
 *   npm run fuzz:pickle -- [--count N] [--seconds S] [--seed N] [--out DIR]
 *   npm run fuzz:pickle -- --replay <hex | finding.json> [--spec N]
 *   npm run fuzz:pickle -- --index N --seed S        (regenerate input N and run it)
 *
 * Inputs are CPython-made pickles (fixtures/pickles-cpython.json) mutated
 * byte-wise and opcode-wise, truncated at every offset, spliced, and
 * generated opcode programs. Input i is a pure function of (seed, i), so any
 * input can be regenerated with --index.
 *
 * Acceptable outcomes of loads(): a value, an UnpicklingError whose code is
 * not 'INTERNAL', or an EOFError. Findings: any other thrown value, an
 * 'INTERNAL' UnpicklingError, a slow input, global prototype pollution, a
 * decoder that no longer loads known-good pickles right, and (caught by the
 * main thread) a worker that hangs or dies (e.g. out of memory).
 *
 * The fuzz loop runs in a worker thread. Before each loads() the worker
 * publishes the input in shared memory, so when the worker hangs or dies the
 * main thread records that input, and restarts the worker at the next index.
 */

import { createHash, randomInt } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { fileURLToPath } from 'node:url';
import { isMainThread, parentPort, Worker, workerData } from 'node:worker_threads';
import { inflateSync } from 'node:zlib';

import {
  BilliardError,
  defaultRegistry,
  EMPTY_TUPLE,
  EOFError,
  loads,
  PickleBuffer,
  type PickleRegistry,
  PyByteArray,
  PyComplex,
  PyDate,
  PyDatetime,
  PyDecimal,
  PyDeque,
  PyDict,
  PyFloat,
  PyFrozenSet,
  PyGlobal,
  PyObject,
  PyRange,
  PySlice,
  PythonException,
  PyTime,
  PyTimedelta,
  PyTimezone,
  PyTuple,
  PyUUID,
  UnpicklingError,
  type UnpicklerOptions,
} from '../src/pickle/index.js';

// ====================================================================== config

interface Config {
  count: number;
  seconds: number;
  seed: number;
  out: string;
  slowMs: number;
  hangSeconds: number;
  checkEvery: number;
  maxSeedBytes: number;
  memoryMb: number;
  replay: string | undefined;
  index: number | undefined;
  spec: number | undefined;
}

const USAGE = `usage: npm run fuzz:pickle -- [options]
  --count N           inputs to run (default 200000)
  --seconds S         time limit (default 300); whichever of count and time ends first
  --seed N            PRNG seed (default: random, printed)
  --out DIR           findings directory (default /tmp/billiard-fuzz-findings)
  --slow-ms MS        an input slower than this is a finding (default 2000)
  --hang-seconds S    an input running this long is killed as a hang (default 60)
  --check-every N     known-good / full pollution check every N inputs (default 500)
  --max-seed-bytes N  skip corpus pickles larger than this (default 65536)
  --memory-mb N       worker heap limit; exceeding it is a 'crash' finding (default 4096)
  --replay HEX|FILE   run one input (hex, or a finding .json) in-process and print the outcome
  --index N           regenerate input N of --seed and run it in-process
  --spec N            options bitmask for --replay (see specOptions)`;

function parseArgs(argv: readonly string[]): Config {
  const cfg: Config = {
    count: 200_000,
    seconds: 300,
    seed: randomInt(0, 2 ** 31),
    out: '/tmp/billiard-fuzz-findings',
    slowMs: 2000,
    hangSeconds: 60,
    checkEvery: 500,
    maxSeedBytes: 65536,
    memoryMb: 4096,
    replay: undefined,
    index: undefined,
    spec: undefined,
  };
  const num = (name: string, v: string | undefined): number => {
    const n = Number(v);
    if (v === undefined || !Number.isFinite(n) || n < 0) throw new Error(`${name} needs a non-negative number`);
    return n;
  };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    const v = argv[i + 1];
    switch (a) {
      case '--count': cfg.count = Math.floor(num(a, v)); i++; break;
      case '--seconds': cfg.seconds = num(a, v); i++; break;
      case '--seed': cfg.seed = Math.floor(num(a, v)) >>> 0; i++; break;
      case '--out': if (v === undefined) throw new Error('--out needs a directory'); cfg.out = v; i++; break;
      case '--slow-ms': cfg.slowMs = num(a, v); i++; break;
      case '--hang-seconds': cfg.hangSeconds = num(a, v); i++; break;
      case '--check-every': cfg.checkEvery = Math.max(1, Math.floor(num(a, v))); i++; break;
      case '--max-seed-bytes': cfg.maxSeedBytes = Math.floor(num(a, v)); i++; break;
      case '--memory-mb': cfg.memoryMb = Math.floor(num(a, v)); i++; break;
      case '--replay': cfg.replay = v; i++; break;
      case '--index': cfg.index = Math.floor(num(a, v)); i++; break;
      case '--spec': cfg.spec = Math.floor(num(a, v)); i++; break;
      case '--help': case '-h': console.log(USAGE); process.exit(0); break;
      default: throw new Error(`unknown argument ${a}\n${USAGE}`);
    }
  }
  return cfg;
}

// ====================================================================== PRNG

/** 32-bit finalizer (murmur3 fmix). */
function mix32(x: number): number {
  x = Math.imul(x ^ (x >>> 16), 0x85ebca6b);
  x = Math.imul(x ^ (x >>> 13), 0xc2b2ae35);
  return (x ^ (x >>> 16)) >>> 0;
}

/** sfc32, seeded from (seed, stream): every input index gets its own stream. */
class Rng {
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
type ArgKind = 'none' | 'line' | 'line2' | 'u1' | 'u2' | 'i4' | 'u4' | 'f8' | 'u8' | 'len1' | 'len4' | 'len8';

const OP_ARGS: ReadonlyMap<number, ArgKind> = new Map<number, ArgKind>([
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

const OPCODES: readonly number[] = [...OP_ARGS.keys()];

const WIDTH: Partial<Record<ArgKind, number>> = { u1: 1, u2: 2, i4: 4, u4: 4, f8: 8, u8: 8, len1: 1, len4: 4, len8: 8 };

const enum Op {
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
interface OpSpan {
  pos: number;
  end: number;
  code: number;
  kind: ArgKind;
}

/** walk() results of the seed pickles, which are mutated over and over. */
const walkCache = new WeakMap<Uint8Array, OpSpan[]>();

/** Splits `d` into opcodes, stopping at STOP, an unknown opcode or a truncated argument. */
function walk(d: Uint8Array): OpSpan[] {
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

const enc = new TextEncoder();

function concat(...parts: ReadonlyArray<Uint8Array | readonly number[]>): Uint8Array {
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

function latin1(s: string): Uint8Array {
  const out = new Uint8Array(s.length);
  for (let i = 0; i < s.length; i++) out[i] = s.charCodeAt(i) & 0xff;
  return out;
}

function hex(b: Uint8Array): string {
  return Buffer.from(b.buffer, b.byteOffset, b.byteLength).toString('hex');
}

/** Writes `v` (taken modulo 2^(8w)) little-endian at `at`. */
function writeLE(d: Uint8Array, at: number, w: number, v: bigint): void {
  for (let k = 0; k < w && at + k < d.length; k++) d[at + k] = Number((v >> BigInt(8 * k)) & 0xffn);
}

function le(w: number, v: number | bigint): Uint8Array {
  const out = new Uint8Array(w);
  writeLE(out, 0, w, BigInt(v));
  return out;
}

/** Python's encode_long: minimal little-endian two's complement. */
function encodeLong(v: bigint): Uint8Array {
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

// ====================================================================== corpus

interface Corpus {
  /** Distinct seed pickles. */
  seeds: Uint8Array[];
  /** Truncation sweep: every (seed, offset) pair of seeds up to SWEEP_MAX_LEN bytes. */
  sweep: Array<[number, number]>;
  /** Known-good pickles and their expected fingerprints. */
  sentinels: Array<{ name: string; bytes: Uint8Array; expect: string }>;
}

/** Seeds of at most this many bytes are truncated at every offset. */
const SWEEP_MAX_LEN = 1024;
/** One input in this many is taken from the truncation sweep (while it lasts). */
const SWEEP_EVERY = 4;
/** Inputs are clamped to this length (the size of the shared input buffer). */
const MAX_INPUT = 1 << 20;
/** Extra example inputs kept per finding. */
const MAX_EXAMPLES = 5;

const FIXTURE = fileURLToPath(new URL('../fixtures/pickles-cpython.json', import.meta.url));

function decodeFixture(s: string): Uint8Array {
  if (s.startsWith('z:')) return new Uint8Array(inflateSync(Buffer.from(s.slice(2), 'base64')));
  return new Uint8Array(Buffer.from(s, 'hex'));
}

interface FixtureFile {
  cases: Array<{ name: string; pickles: Array<string | null> }>;
  opaque: Array<{ name: string; pickles: Array<string | null> }>;
}

function loadCorpus(maxSeedBytes: number): Corpus {
  const raw = JSON.parse(readFileSync(FIXTURE, 'utf8')) as FixtureFile;
  const seen = new Set<string>();
  const seeds: Uint8Array[] = [];
  for (const c of [...raw.cases, ...raw.opaque]) {
    for (const p of c.pickles) {
      if (p === null || p.length / 2 > maxSeedBytes * 4) continue;
      const b = decodeFixture(p);
      const key = hex(b);
      if (b.length > maxSeedBytes || seen.has(key)) continue;
      seen.add(key);
      seeds.push(b);
    }
  }
  const sweep: Array<[number, number]> = [];
  seeds.forEach((s, i) => {
    if (s.length <= SWEEP_MAX_LEN) for (let off = 0; off <= s.length; off++) sweep.push([i, off]);
  });
  return { seeds, sweep, sentinels: makeSentinels(raw) };
}

// ====================================================================== fingerprints and sentinels

/** A canonical text of a loaded value: class names, keys, items; shared references as #n. */
function fingerprint(v: unknown): string {
  const seen = new Map<object, number>();
  const go = (x: unknown, depth: number): string => {
    if (x === null) return 'None';
    switch (typeof x) {
      case 'undefined': return 'undefined';
      case 'boolean': return x ? 'True' : 'False';
      case 'number': return Object.is(x, -0) ? 'n:-0' : `n:${x}`;
      case 'bigint': return `b:${x}`;
      case 'string': return JSON.stringify(x);
      case 'symbol': return x.toString();
      case 'function': return `fn:${x.name}`;
      default: break;
    }
    const o = x as object;
    const ref = seen.get(o);
    if (ref !== undefined) return `#${ref}`;
    seen.set(o, seen.size);
    if (depth > 64) return '...';
    const proto = Object.getPrototypeOf(o) as { constructor?: { name?: string } } | null;
    const cls = proto === null ? 'null' : (proto.constructor?.name ?? '?');
    if (o instanceof Uint8Array) return `${cls}<${hex(o)}>`;
    if (Array.isArray(o)) return `${cls}[${o.map((i) => go(i, depth + 1)).join(',')}]`;
    if (o instanceof Map) return `${cls}{${[...o].map(([k, val]) => `${go(k, depth + 1)}:${go(val, depth + 1)}`).join(',')}}`;
    if (o instanceof Set) return `${cls}{${[...o].map((i) => go(i, depth + 1)).join(',')}}`;
    const rec = o as Record<string, unknown>;
    return `${cls}{${Object.keys(rec).map((k) => `${JSON.stringify(k)}:${go(rec[k], depth + 1)}`).join(',')}}`;
  };
  return go(v, 0);
}

/**
 * {'a': [1, 2.5, None, True, 'xé', b'\x00\xff', (1, 2), 2**70, -3],
 *  'b': {1: 'one', (2,): frozenset([3])}, 'c': set([4])}, pickled by CPython 3.11.
 */
const KNOWN_PICKLES: ReadonlyArray<[string, string]> = [
  ['known-p0', '286470300a56610a70310a286c70320a49310a6146322e350a614e614930310a615678e90a70330a61635f636f646563730a656e636f64650a70340a28565c7530303030ff0a70350a566c6174696e310a70360a7470370a5270380a612849310a49320a7470390a614c313138303539313632303731373431313330333432344c0a61492d330a617356620a7031300a28647031310a49310a566f6e650a7031320a732849320a747031330a635f5f6275696c74696e5f5f0a66726f7a656e7365740a7031340a28286c7031350a49330a61747031360a527031370a737356630a7031380a635f5f6275696c74696e5f5f0a7365740a7031390a28286c7032300a49340a61747032310a527032320a732e'],
  ['known-p2', '80027d71002858010000006171015d7102284b014740040000000000004e88580300000078c3a97103635f636f646563730a656e636f64650a7104580300000000c3bf710558060000006c6174696e3171068671075271084b014b028671098a090000000000000000404afdffffff65580100000062710a7d710b284b0158030000006f6e65710c4b0285710d635f5f6275696c74696e5f5f0a66726f7a656e7365740a710e5d710f4b0361857110527111755801000000637112635f5f6275696c74696e5f5f0a7365740a71135d71144b0461857115527116752e'],
  ['known-p5', '8005955e000000000000007d94288c0161945d94284b014740040000000000004e888c0378c3a994430200ff944b014b0286948a090000000000000000404afdffffff658c0162947d94284b018c036f6e65944b028594284b039194758c0163948f94284b0490752e'],
];

/** The value KNOWN_PICKLES stand for, built by hand. */
function knownValue(): unknown {
  const o = Object.create(null) as Record<string, unknown>;
  o['a'] = [1, 2.5, null, true, 'xé', Uint8Array.of(0, 0xff), PyTuple.of(1, 2), 2n ** 70n, -3];
  o['b'] = new PyDict<unknown, unknown>([[1, 'one'], [PyTuple.of(2), new PyFrozenSet([3])]]);
  o['c'] = new Set([4]);
  return o;
}

/** Known-good pickles: three with a hand-built expected value, and a few corpus ones checked against their first load. */
function makeSentinels(raw: FixtureFile): Corpus['sentinels'] {
  const expect = fingerprint(knownValue());
  const out: Corpus['sentinels'] = KNOWN_PICKLES.map(([name, h]) => ({ name, bytes: new Uint8Array(Buffer.from(h, 'hex')), expect }));
  for (const c of raw.cases.filter((_, i) => i % 61 === 7).slice(0, 6)) {
    const p = c.pickles[c.pickles.length - 1] ?? c.pickles[2];
    if (p === null || p === undefined) continue;
    const bytes = decodeFixture(p);
    try {
      out.push({ name: `corpus:${c.name}`, bytes, expect: fingerprint(loads(bytes)) });
    } catch {
      // not a usable sentinel
    }
  }
  return out;
}

/** Checks every sentinel; returns a description of the first that fails. */
function checkSentinels(sentinels: Corpus['sentinels']): string | undefined {
  for (const s of sentinels) {
    let got: string;
    try {
      got = fingerprint(loads(s.bytes));
    } catch (e) {
      return `${s.name}: loads threw ${describeThrown(e)}`;
    }
    if (got !== s.expect) return `${s.name}: loaded ${got.slice(0, 300)}, expected ${s.expect.slice(0, 300)}`;
  }
  return undefined;
}

// ====================================================================== prototype pollution

type Snapshot = { name: string; obj: object; keys: Map<PropertyKey, PropertyDescriptor> };

/**
 * Watches the built-in and library prototypes. `quick()` is cheap enough for
 * every input; `full()` compares every property descriptor.
 */
class PollutionGuard {
  readonly #snaps: Snapshot[] = [];
  readonly #objectKeys = Reflect.ownKeys(Object.prototype).length;
  readonly #arrayKeys = Reflect.ownKeys(Array.prototype).length;
  readonly #hot = [
    Object.prototype.toString, Object.prototype.hasOwnProperty, Object.prototype.valueOf, Array.prototype.push,
    Array.prototype.slice, Function.prototype.call, Map.prototype.set, Set.prototype.add,
  ];
  #globalKeys = Object.getOwnPropertyNames(globalThis).length;
  readonly #singletons: Array<[string, unknown, string]>;

  constructor() {
    const typed = Object.getPrototypeOf(Uint8Array.prototype) as object;
    const protos: Array<[string, object]> = [
      ['Object.prototype', Object.prototype], ['Array.prototype', Array.prototype], ['Function.prototype', Function.prototype],
      ['String.prototype', String.prototype], ['Number.prototype', Number.prototype], ['BigInt.prototype', BigInt.prototype],
      ['Boolean.prototype', Boolean.prototype], ['Symbol.prototype', Symbol.prototype], ['Map.prototype', Map.prototype],
      ['Set.prototype', Set.prototype], ['Uint8Array.prototype', Uint8Array.prototype], ['TypedArray.prototype', typed],
      ['ArrayBuffer.prototype', ArrayBuffer.prototype], ['DataView.prototype', DataView.prototype], ['Error.prototype', Error.prototype],
      ['TypeError.prototype', TypeError.prototype], ['RangeError.prototype', RangeError.prototype], ['RegExp.prototype', RegExp.prototype],
      ['Date.prototype', Date.prototype], ['Promise.prototype', Promise.prototype], ['Object', Object], ['Array', Array], ['JSON', JSON],
    ];
    const classes: Array<[string, { prototype: object }]> = Object.entries({
      PyTuple, PyDict, PyFrozenSet, PyByteArray, PyFloat, PyGlobal, PyObject, PickleBuffer, PythonException, BilliardError,
      UnpicklingError, EOFError, PyComplex, PyDate, PyDatetime, PyTime, PyTimedelta, PyTimezone, PyDecimal, PyRange, PySlice, PyUUID, PyDeque,
    });
    for (const [name, cls] of classes) protos.push([`${name}.prototype`, cls.prototype], [name, cls]);
    for (const [name, obj] of protos) this.#snaps.push({ name, obj, keys: this.#describe(obj) });
    this.#singletons = [['EMPTY_TUPLE', EMPTY_TUPLE, fingerprint(EMPTY_TUPLE)], ['PyTimezone.utc', PyTimezone.utc, fingerprint(PyTimezone.utc)]];
  }

  #describe(obj: object): Map<PropertyKey, PropertyDescriptor> {
    const m = new Map<PropertyKey, PropertyDescriptor>();
    for (const k of Reflect.ownKeys(obj)) m.set(k, Reflect.getOwnPropertyDescriptor(obj, k)!);
    return m;
  }

  quick(): string | undefined {
    const probe = {} as Record<string, unknown>;
    if (probe['polluted'] !== undefined) return '({}).polluted is defined';
    if (Object.getPrototypeOf(probe) !== Object.prototype || Object.getPrototypeOf(Object.prototype) !== null) return 'the prototype of {} changed';
    if (Reflect.ownKeys(Object.prototype).length !== this.#objectKeys) return 'Object.prototype gained or lost keys';
    if (Reflect.ownKeys(Array.prototype).length !== this.#arrayKeys) return 'Array.prototype gained or lost keys';
    const hot = [
      Object.prototype.toString, Object.prototype.hasOwnProperty, Object.prototype.valueOf, Array.prototype.push,
      Array.prototype.slice, Function.prototype.call, Map.prototype.set, Set.prototype.add,
    ];
    for (let i = 0; i < hot.length; i++) if (hot[i] !== this.#hot[i]) return 'a built-in method was replaced';
    return undefined;
  }

  full(): string | undefined {
    const quick = this.quick();
    if (quick !== undefined) return quick;
    for (const s of this.#snaps) {
      const keys = Reflect.ownKeys(s.obj);
      for (const k of keys) {
        const was = s.keys.get(k);
        if (was === undefined) return `${s.name} gained key ${String(k)}`;
        const now = Reflect.getOwnPropertyDescriptor(s.obj, k)!;
        if (now.value !== was.value && !(Number.isNaN(now.value) && Number.isNaN(was.value))) return `${s.name}.${String(k)} changed`;
        if (now.get !== was.get || now.set !== was.set) return `${s.name}.${String(k)} accessor changed`;
      }
      if (keys.length !== s.keys.size) return `${s.name} lost keys`;
    }
    for (const [name, obj, fp] of this.#singletons) if (fingerprint(obj) !== fp) return `shared singleton ${name} was mutated`;
    const g = Object.getOwnPropertyNames(globalThis).length;
    if (g !== this.#globalKeys) {
      this.#globalKeys = g;
      return 'globalThis gained or lost keys';
    }
    return undefined;
  }

  /** Undoes what `full()` would report on the prototypes, so one pollution is reported once. */
  restore(): void {
    for (const s of this.#snaps) {
      for (const k of Reflect.ownKeys(s.obj)) if (!s.keys.has(k)) Reflect.deleteProperty(s.obj, k);
      for (const [k, d] of s.keys) Reflect.defineProperty(s.obj, k, d);
    }
  }
}

// ====================================================================== options

/**
 * Options of one loads() call, as a bitmask (so it fits in shared memory and
 * in a finding file): see SPEC_BITS.
 */
const SPEC_BITS = {
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
const OPTION_MASK = 0x7ff | SPEC_BITS.extRegistry | SPEC_BITS.smallLimits;

let extRegistryCache: PickleRegistry | undefined;

/** The default registry plus a few extension codes, some naming registered globals. */
function extRegistry(): PickleRegistry {
  if (extRegistryCache === undefined) {
    const r = defaultRegistry.extend();
    r.addExtension('builtins', 'set', 1);
    r.addExtension('copyreg', '_reconstructor', 2);
    r.addExtension('datetime', 'date', 255);
    r.addExtension('mod', 'Unknown', 256);
    r.addExtension('collections', 'deque', 65535);
    r.addExtension('builtins', 'ValueError', 0x7fffffff);
    extRegistryCache = r;
  }
  return extRegistryCache;
}

const ENCODINGS = ['ascii', 'latin1', 'utf-8', 'bytes'] as const;

function specOptions(spec: number): UnpicklerOptions | undefined {
  if ((spec & OPTION_MASK) === 0) return undefined;
  const o: UnpicklerOptions = {};
  if (spec & SPEC_BITS.dictsMap) o.dicts = 'map';
  if (spec & SPEC_BITS.intsBigint) o.ints = 'bigint';
  if (spec & SPEC_BITS.strict) o.strict = true;
  const e = (spec >> SPEC_BITS.encodingShift) & 7;
  if (e >= 1 && e <= ENCODINGS.length) o.encoding = ENCODINGS[e - 1];
  if (spec & SPEC_BITS.floatsWrap) o.floats = 'wrap-integral';
  if (spec & SPEC_BITS.zeroCopy) o.zeroCopy = true;
  if (spec & SPEC_BITS.noFixImports) o.fixImports = false;
  if (spec & SPEC_BITS.buffers) {
    o.buffers = [new PickleBuffer(PyByteArray.fromBytes([6])), Uint8Array.of(1, 2, 3), PyByteArray.fromBytes([4, 5]), 'not a buffer'];
  }
  if (spec & SPEC_BITS.persistentLoad) o.persistentLoad = (pid) => (pid === 'boom' ? (() => { throw new Error('boom'); })() : ['pid', pid]);
  if (spec & SPEC_BITS.extRegistry) o.registry = extRegistry();
  if (spec & SPEC_BITS.smallLimits) {
    o.maxLongDigits = 10;
    o.maxLongBytes = 4;
  }
  return o;
}

function specLabel(spec: number): string {
  const o = specOptions(spec);
  const shown: Record<string, string> = { buffers: 'buffers=[...]', persistentLoad: 'persistentLoad=fn', registry: 'registry=with-extensions' };
  const parts = o === undefined ? [] : Object.entries(o).map(([k, v]) => shown[k] ?? `${k}=${String(v)}`);
  if (spec & SPEC_BITS.offsetView) parts.push('input=offset-view');
  if (spec & SPEC_BITS.nodeBuffer) parts.push('input=Buffer');
  return parts.length === 0 ? '(default options)' : parts.join(' ');
}

function randomSpec(r: Rng): number {
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

/** The byte string as loads() will see it, per the spec's input bits. */
function presentInput(input: Uint8Array, spec: number): Uint8Array {
  if (spec & SPEC_BITS.offsetView) {
    const big = new Uint8Array(input.length + 8);
    big.fill(0x2e);
    big.set(input, 3);
    return big.subarray(3, 3 + input.length);
  }
  if (spec & SPEC_BITS.nodeBuffer) return Buffer.from(input);
  return input;
}

// ====================================================================== generators

const NAMES: readonly string[] = [
  'a', 'b', 'x', 'args', 'state', 'module', 'name', 'items', '__proto__', 'constructor', 'prototype', '__class__', '__dict__',
  '__setstate__', '__reduce__', '__reduce_ex__', 'toString', 'valueOf', 'hasOwnProperty', '__defineGetter__', 'polluted',
  'then', 'length', 'size', '0', '1', '01', '-1', '1.5', '4294967294', '4294967295', '9007199254740993', '', ' ', 'é',
  '\u{1F600}', 'pyType', 'listItems', 'dictItems', 'kwargs', 'callable', 'buffer', 'readonly', 'int', 'is_safe', 'utc',
];

/** Python globals: the registered ones (their handlers run), Python 2 names, and unknown or hostile ones. */
const GLOBALS: ReadonlyArray<readonly [string, string]> = [
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

const FLOAT_TEXTS: readonly string[] = [
  '0', '-0.0', '1.5', '2.0', 'nan', '-nan', 'inf', '-inf', 'Infinity', 'NaN', '1e308', '1e309', '-1e309', '1e-400', '4.9e-324',
  '0x1p3', '1_000.5', ' 1.0', '1.0 ', '', '.', '1e', '+1.5', '1.7976931348623157e308', '9007199254740993',
];

const INT_TEXTS: readonly string[] = [
  '0', '1', '-1', '00', '01', '02', '+5', '-0', ' 5', '5 ', '5L', '0x10', '1_000', '', '-', '2147483647', '2147483648',
  '-2147483649', '9007199254740991', '9007199254740992', '-9007199254740993', '18446744073709551616', '١٢', '1'.repeat(4300),
  '1'.repeat(4301), '0'.repeat(5000) + '1',
];

const INTS: readonly bigint[] = [
  0n, 1n, -1n, 127n, 128n, 255n, 256n, -128n, -129n, 65535n, 65536n, 2n ** 31n - 1n, -(2n ** 31n), 2n ** 31n, 2n ** 32n,
  2n ** 53n - 1n, 2n ** 53n, 2n ** 53n + 1n, -(2n ** 53n) - 1n, 2n ** 63n, -(2n ** 63n), 2n ** 64n, 10n ** 100n, -(10n ** 100n),
];

const DOUBLES: readonly number[] = [0, -0, 1.5, 2, NaN, Infinity, -Infinity, 5e-324, Number.MAX_VALUE, 2 ** 53, 1e16, 0.1, -1];

/** Strings as UTF-8 bytes, some of them invalid. */
const RAW_STRS: readonly Uint8Array[] = [
  Uint8Array.of(0xff), Uint8Array.of(0xc3), Uint8Array.of(0xed, 0xa0, 0x80), Uint8Array.of(0xf4, 0x90, 0x80, 0x80),
  Uint8Array.of(0xc0, 0x80), Uint8Array.of(0xe0, 0x80, 0x80), Uint8Array.of(0xf0, 0x9f, 0x98, 0x80), Uint8Array.of(0x61, 0x00, 0x62),
  Uint8Array.of(0xe2, 0x82), Uint8Array.of(0x0a), Uint8Array.of(0xed), Uint8Array.of(0xed, 0x9f), Uint8Array.of(0xe0, 0xa0),
  Uint8Array.of(0xe0, 0x9f), Uint8Array.of(0xf0, 0x90), Uint8Array.of(0xf0, 0x8f), Uint8Array.of(0xf4, 0x8f), Uint8Array.of(0xf4, 0x90),
  Uint8Array.of(0xf5), Uint8Array.of(0x80), Uint8Array.of(0xc2),
];

const INTERESTING_BYTES: readonly number[] = [0x00, 0x01, 0x0a, 0x7f, 0x80, 0xfe, 0xff, ...OPCODES];

/** Builds opcode programs that are mostly well-formed, so they reach the deeper parts of the decoder. */
class Gen {
  readonly out: number[] = [];
  /** Memo slots written so far. */
  memo = 0;
  constructor(readonly r: Rng) {}

  emit(...bytes: number[]): void {
    for (const b of bytes) this.out.push(b & 0xff);
  }
  raw(b: Uint8Array | readonly number[]): void {
    for (const x of b) this.out.push(x);
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
function genProgram(r: Rng): Uint8Array {
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
  const out = Uint8Array.from(g.out);
  if (framed) writeLE(out, frameAt + 1, 8, r.chance(0.9) ? BigInt(out.length - body) : interesting(r, 8, out.length - body));
  return out;
}

/** One opcode with a plausible random argument. */
function genRawOp(r: Rng): Uint8Array {
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
function interesting(r: Rng, w: number, remaining: number): bigint {
  const bits = BigInt(8 * w);
  const rem = BigInt(Math.max(0, remaining));
  const vals: bigint[] = [0n, 1n, 2n, rem, rem + 1n, rem + 2n, rem > 0n ? rem - 1n : 0n, (1n << bits) - 1n, 1n << (bits - 1n), (1n << (bits - 1n)) - 1n];
  if (w >= 4) vals.push(0x1fffffe8n, 0x1fffffe9n, 0x10000n, 0xfffffffen);
  if (w >= 8) vals.push(2n ** 32n, 2n ** 53n - 1n, 2n ** 53n, 0x1fffff_ffffffffn, 0x200000_00000000n, 0xffffffff_00000000n);
  if (w === 2) vals.push(0x100n, 0x8000n);
  return r.pick(vals);
}

// ====================================================================== mutations

type Mutator = (r: Rng, d: Uint8Array, corpus: Corpus) => Uint8Array;

const clampPos = (r: Rng, d: Uint8Array): number => r.int(d.length + 1);

/** An opcode boundary of `d` (or a random offset when it does not parse). */
function boundary(r: Rng, d: Uint8Array, ops: OpSpan[]): number {
  if (ops.length === 0 || r.chance(0.1)) return clampPos(r, d);
  const op = r.pick(ops);
  return r.chance(0.5) ? op.pos : op.end;
}

const MUTATORS: ReadonlyArray<[string, number, Mutator]> = [
  ['flip-bits', 3, (r, d) => {
    const out = d.slice();
    for (let k = r.range(1, 4); k > 0 && out.length > 0; k--) out[r.int(out.length)] ^= 1 << r.int(8);
    return out;
  }],
  ['random-bytes', 3, (r, d) => {
    const out = d.slice();
    for (let k = r.range(1, 4); k > 0 && out.length > 0; k--) out[r.int(out.length)] = r.int(256);
    return out;
  }],
  ['interesting-byte', 4, (r, d) => {
    const out = d.slice();
    if (out.length === 0) return out;
    const ops = walk(d);
    const at = ops.length > 0 && r.chance(0.5) ? r.pick(ops).pos : r.int(out.length);
    out[at] = r.pick(INTERESTING_BYTES);
    return out;
  }],
  ['insert-bytes', 2, (r, d) => {
    const at = clampPos(r, d);
    const ins = r.chance(0.5) ? r.bytes(r.range(1, 16)) : Uint8Array.of(r.pick(INTERESTING_BYTES));
    return concat(d.subarray(0, at), ins, d.subarray(at));
  }],
  ['insert-op', 4, (r, d) => {
    const at = boundary(r, d, walk(d));
    const ins = r.chance(0.7) ? genRawOp(r) : concat(genRawOp(r), genRawOp(r), genRawOp(r));
    return concat(d.subarray(0, at), ins, d.subarray(at));
  }],
  ['delete-bytes', 2, (r, d) => {
    const at = r.int(d.length);
    const n = r.range(1, 16);
    return concat(d.subarray(0, at), d.subarray(Math.min(d.length, at + n)));
  }],
  ['delete-op', 3, (r, d) => {
    const ops = walk(d);
    if (ops.length === 0) return d.subarray(1);
    const a = r.int(ops.length);
    const b = Math.min(ops.length - 1, a + (r.chance(0.8) ? 0 : r.int(4)));
    return concat(d.subarray(0, ops[a]!.pos), d.subarray(ops[b]!.end));
  }],
  ['replace-op', 3, (r, d) => {
    const out = d.slice();
    const ops = walk(d);
    if (ops.length > 0) out[r.pick(ops).pos] = r.pick(OPCODES);
    return out;
  }],
  ['swap-ops', 2, (r, d) => {
    const ops = walk(d);
    if (ops.length < 2) return d;
    let a = r.int(ops.length);
    let b = r.int(ops.length);
    if (a === b) return d;
    if (a > b) [a, b] = [b, a];
    const A = ops[a]!;
    const B = ops[b]!;
    return concat(d.subarray(0, A.pos), d.subarray(B.pos, B.end), d.subarray(A.end, B.pos), d.subarray(A.pos, A.end), d.subarray(B.end));
  }],
  ['truncate', 2, (r, d) => d.subarray(0, r.int(d.length))],
  ['splice', 3, (r, d, c) => {
    const other = r.chance(0.8) ? r.pick(c.seeds) : genProgram(r);
    const opsA = walk(d);
    const opsB = walk(other);
    const a = boundary(r, d, opsA);
    const b = boundary(r, other, opsB);
    return concat(d.subarray(0, a), other.subarray(b));
  }],
  ['length-field', 6, (r, d) => {
    const out = d.slice();
    const ops = walk(d).filter((o) => WIDTH[o.kind] !== undefined);
    if (ops.length === 0 || r.chance(0.1)) {
      const w = r.pick([1, 2, 4, 8]);
      const at = r.int(Math.max(1, out.length));
      writeLE(out, at, w, interesting(r, w, out.length - at - w));
      return out;
    }
    const op = r.pick(ops);
    const w = WIDTH[op.kind]!;
    writeLE(out, op.pos + 1, w, interesting(r, w, out.length - op.pos - 1 - w));
    return out;
  }],
  ['duplicate', 3, (r, d) => {
    const ops = walk(d);
    let s: number;
    let e: number;
    if (ops.length > 0 && r.chance(0.7)) {
      const a = r.int(ops.length);
      const b = Math.min(ops.length - 1, a + r.int(4));
      s = ops[a]!.pos;
      e = ops[b]!.end;
    } else {
      s = r.int(d.length);
      e = Math.min(d.length, s + r.range(1, 32));
    }
    const piece = d.subarray(s, e);
    const times = Math.min(r.chance(0.7) ? r.range(1, 4) : 2 ** r.range(3, 14), Math.floor(MAX_INPUT / 2 / Math.max(1, piece.length)));
    const at = r.chance(0.5) ? e : boundary(r, d, ops);
    const parts: Uint8Array[] = [d.subarray(0, at)];
    for (let i = 0; i < times; i++) parts.push(piece);
    parts.push(d.subarray(at));
    return concat(...parts);
  }],
];

const MUTATOR_TOTAL = MUTATORS.reduce((n, m) => n + m[1], 0);

function pickMutator(r: Rng): Mutator {
  let x = r.int(MUTATOR_TOTAL);
  for (const [, w, m] of MUTATORS) {
    if (x < w) return m;
    x -= w;
  }
  return MUTATORS[0]![2];
}

function havoc(r: Rng, d: Uint8Array, corpus: Corpus, rounds: number): Uint8Array {
  for (let i = 0; i < rounds; i++) d = pickMutator(r)(r, d, corpus);
  return d;
}

/** Input number `index` of a run: a pure function of (seed, index, corpus). */
function generate(corpus: Corpus, seed: number, index: number): { input: Uint8Array; spec: number; how: string } {
  const r = new Rng(seed, index);
  const spec = randomSpec(r);
  let input: Uint8Array;
  let how: string;
  const sweepAt = index / SWEEP_EVERY;
  if (index % SWEEP_EVERY === 0 && sweepAt < corpus.sweep.length) {
    const [s, off] = corpus.sweep[sweepAt]!;
    input = corpus.seeds[s]!.subarray(0, off);
    how = `truncate seed ${s} at ${off}`;
  } else {
    const mode = r.int(100);
    if (mode < 5) {
      input = r.bytes(r.size(6));
      if (r.chance(0.5)) input = concat([Op.PROTO, r.int(6)], input);
      how = 'random bytes';
    } else if (mode < 13) {
      const parts: Uint8Array[] = r.chance(0.7) ? [Uint8Array.of(Op.PROTO, r.int(6))] : [];
      for (let n = r.range(1, 24); n > 0; n--) parts.push(genRawOp(r));
      if (r.chance(0.8)) parts.push(Uint8Array.of(Op.STOP));
      input = concat(...parts);
      how = 'random opcodes';
    } else if (mode < 40) {
      input = genProgram(r);
      if (r.chance(0.4)) input = havoc(r, input, corpus, r.range(1, 2));
      how = 'generated program';
    } else {
      const s = r.int(corpus.seeds.length);
      input = havoc(r, corpus.seeds[s]!, corpus, r.chance(0.5) ? 1 : r.range(2, 6));
      how = `mutated seed ${s}`;
    }
  }
  if (input.length > MAX_INPUT) input = input.subarray(0, MAX_INPUT);
  return { input, spec, how };
}

// ====================================================================== running one input

/** Outcome categories (exclusive, one per input). */
const CODES = [
  'TRUNCATED', 'INVALID_OPCODE', 'UNSUPPORTED_PROTOCOL', 'STACK_UNDERFLOW', 'NO_MARK', 'UNEXPECTED_MARK', 'ODD_ITEMS',
  'MEMO_MISSING', 'BAD_ARGUMENT', 'DECODE', 'TYPE', 'LIMIT', 'FORBIDDEN_GLOBAL', 'NO_BUFFERS', 'NO_PERSISTENT_LOAD',
  'BAD_EXTENSION', 'TRAILING_DATA', 'HANDLER',
] as const;

const CATEGORIES = [
  'value', 'EOFError', ...CODES.map((c) => `UnpicklingError ${c}`), 'UnpicklingError (other code)',
  'FINDING INTERNAL', 'FINDING foreign error', 'FINDING crash', 'FINDING hang',
] as const;

const CAT = Object.fromEntries(CATEGORIES.map((c, i) => [c, i])) as Record<(typeof CATEGORIES)[number], number>;

/** Counters after the categories. */
const C_INPUTS = CATEGORIES.length;
const C_SLOW = C_INPUTS + 1;
const C_POLLUTION = C_INPUTS + 2;
const C_BROKEN = C_INPUTS + 3;
const C_CHECKS = C_INPUTS + 4;
const C_RESTARTS = C_INPUTS + 5;
const N_COUNTERS = C_INPUTS + 6;

type FindingKind = 'internal' | 'foreign-error' | 'slow' | 'pollution' | 'decoder-broken' | 'crash' | 'hang';

interface Finding {
  kind: FindingKind;
  /** Dedup key: kind, error class and message (digits masked), top stack frame. */
  key: string;
  index: number;
  spec: number;
  inputHex: string;
  minimizedHex?: string;
  message: string;
  stack?: string;
  causeStack?: string;
  ms?: number;
  note?: string;
  /** A few more inputs that gave the same key: [input index, options spec, hex]. */
  examples?: Array<[number, number, string]>;
}

interface Result {
  category: number;
  ms: number;
  /** The error message, when loads threw. */
  error?: string;
  finding?: Omit<Finding, 'index' | 'spec' | 'inputHex'>;
}

function describeThrown(e: unknown): string {
  if (e instanceof Error) return `${e.name}: ${e.message}`;
  return `non-Error thrown: ${typeof e} ${String(e)}`;
}

const ROOT = fileURLToPath(new URL('..', import.meta.url));

/** The first "at ..." line of a stack, without the repository path. */
function topFrame(stack: string | undefined): string {
  const line = stack?.split('\n').find((l) => l.trimStart().startsWith('at ')) ?? '(no stack)';
  return line.trim().replaceAll(`file://${ROOT}`, '').replaceAll(ROOT, '');
}

function errorFinding(kind: 'internal' | 'foreign-error', e: unknown): NonNullable<Result['finding']> {
  const root = kind === 'internal' && e instanceof Error && e.cause !== undefined ? e.cause : e;
  const rootText = describeThrown(root).replace(/\d+/g, 'N').slice(0, 300);
  const stack = e instanceof Error ? e.stack : undefined;
  const causeStack = root !== e && root instanceof Error ? root.stack : undefined;
  return {
    kind,
    key: `${kind} | ${rootText} | ${topFrame(causeStack ?? stack)}`,
    message: describeThrown(e),
    ...(stack !== undefined ? { stack } : {}),
    ...(causeStack !== undefined ? { causeStack } : {}),
  };
}

function runOne(input: Uint8Array, spec: number): Result {
  const data = presentInput(input, spec);
  const options = specOptions(spec);
  const t0 = performance.now();
  let category: number;
  let finding: Result['finding'];
  let error: string | undefined;
  try {
    loads(data, options);
    category = CAT.value;
  } catch (e) {
    error = describeThrown(e);
    if (e instanceof EOFError) category = CAT.EOFError;
    else if (e instanceof UnpicklingError) {
      if (e.code === 'INTERNAL') {
        category = CAT['FINDING INTERNAL'];
        finding = errorFinding('internal', e);
      } else {
        const i = (CODES as readonly string[]).indexOf(e.code);
        category = i >= 0 ? CAT[`UnpicklingError ${CODES[i]!}`] : CAT['UnpicklingError (other code)'];
      }
    } else {
      category = CAT['FINDING foreign error'];
      finding = errorFinding('foreign-error', e);
    }
  }
  const ms = performance.now() - t0;
  const res: Result = { category, ms };
  if (error !== undefined) res.error = error;
  if (finding !== undefined) res.finding = finding;
  return res;
}

/** Shrinks an input while it still gives a finding with the same key (bounded in tries and time). */
function minimize(input: Uint8Array, spec: number, key: string, onTry: (candidate: Uint8Array) => void): Uint8Array {
  const deadline = Date.now() + 5000;
  let best = input;
  let tries = 0;
  const same = (c: Uint8Array): boolean => {
    tries++;
    onTry(c);
    return runOne(c, spec).finding?.key === key;
  };
  for (let chunk = best.length >> 1; chunk >= 1; chunk >>= 1) {
    for (let at = 0; at + chunk <= best.length; ) {
      if (tries > 4000 || Date.now() > deadline) return best;
      const c = concat(best.subarray(0, at), best.subarray(at + chunk));
      if (same(c)) best = c;
      else at += chunk;
    }
  }
  return best;
}

// ====================================================================== shared state

/** ctrl slots (Int32Array). */
const K_INDEX = 0;
const K_LEN = 1;
const K_SPEC = 2;
const K_RUNNING = 3;
/** clock slots (Float64Array). */
const T_START = 0;
const T_MAX = 1;
const T_MAX_INDEX = 2;
const T_TOTAL = 3;

interface Shared {
  ctrl: Int32Array;
  clock: Float64Array;
  counts: Int32Array;
  input: Uint8Array;
}

interface SharedBuffers {
  ctrl: SharedArrayBuffer;
  clock: SharedArrayBuffer;
  counts: SharedArrayBuffer;
  input: SharedArrayBuffer;
}

function attach(b: SharedBuffers): Shared {
  return { ctrl: new Int32Array(b.ctrl), clock: new Float64Array(b.clock), counts: new Int32Array(b.counts), input: new Uint8Array(b.input) };
}

interface WorkerInit {
  seed: number;
  start: number;
  count: number;
  deadline: number;
  slowMs: number;
  checkEvery: number;
  maxSeedBytes: number;
  knownKeys: string[];
  buffers: SharedBuffers;
}

type WorkerMessage =
  | { type: 'ready'; seeds: number; sweep: number; sentinels: number }
  | { type: 'finding'; finding: Finding }
  | { type: 'repeat'; key: string; ms?: number; example?: [number, number, string] }
  | { type: 'sample'; category: number; index: number; message: string }
  | { type: 'restart-me'; next: number }
  | { type: 'done'; next: number };

// ====================================================================== worker

function workerMain(init: WorkerInit): void {
  const port = parentPort!;
  const sh = attach(init.buffers);
  const corpus = loadCorpus(init.maxSeedBytes);
  const guard = new PollutionGuard();
  const known = new Set(init.knownKeys);
  const post = (m: WorkerMessage): void => port.postMessage(m);
  post({ type: 'ready', seeds: corpus.seeds.length, sweep: corpus.sweep.length, sentinels: corpus.sentinels.length });

  /** Shows the input in shared memory before running it, for the hang/crash watchdog. */
  const publish = (index: number, input: Uint8Array, spec: number): void => {
    const n = Math.min(input.length, sh.input.length);
    sh.input.set(input.subarray(0, n));
    sh.ctrl[K_INDEX] = index;
    sh.ctrl[K_LEN] = n;
    sh.ctrl[K_SPEC] = spec;
    sh.clock[T_START] = Date.now();
    Atomics.store(sh.ctrl, K_RUNNING, 1);
  };

  const repeats = new Map<string, number>();
  const report = (f: Finding): void => {
    if (known.has(f.key)) {
      const n = (repeats.get(f.key) ?? 0) + 1;
      repeats.set(f.key, n);
      const m: WorkerMessage = { type: 'repeat', key: f.key };
      if (f.ms !== undefined) m.ms = f.ms;
      // Keep a few more reproducers of each finding (short ones only).
      if (n <= MAX_EXAMPLES && f.inputHex.length <= 4096) m.example = [f.index, f.spec, f.inputHex];
      post(m);
      return;
    }
    known.add(f.key);
    post({ type: 'finding', finding: f });
  };

  const sampled = new Set<number>();
  let lastCheck = init.start;
  let i = init.start;
  for (; i < init.count; i++) {
    if ((i & 63) === 0 && Date.now() > init.deadline) break;
    const { input, spec } = generate(corpus, init.seed, i);
    publish(i, input, spec);
    const res = runOne(input, spec);
    Atomics.store(sh.ctrl, K_RUNNING, 0);

    sh.counts[res.category]++;
    sh.counts[C_INPUTS]++;
    sh.clock[T_TOTAL] += res.ms;
    if (res.ms > sh.clock[T_MAX]!) {
      sh.clock[T_MAX] = res.ms;
      sh.clock[T_MAX_INDEX] = i;
    }
    if (res.error !== undefined && !sampled.has(res.category)) {
      sampled.add(res.category);
      post({ type: 'sample', category: res.category, index: i, message: res.error.slice(0, 300) });
    }
    const base = (): Pick<Finding, 'index' | 'spec' | 'inputHex'> => ({ index: i, spec, inputHex: hex(input) });
    let checkNow = false;
    if (res.finding !== undefined) {
      const f: Finding = { ...base(), ...res.finding };
      if (!known.has(f.key)) {
        f.minimizedHex = hex(minimize(input, spec, f.key, (c) => publish(i, c, spec)));
        Atomics.store(sh.ctrl, K_RUNNING, 0);
      }
      report(f);
      checkNow = true;
    }
    if (res.ms > init.slowMs) {
      sh.counts[C_SLOW]++;
      report({ ...base(), kind: 'slow', key: `slow | ${CATEGORIES[res.category]!}`, message: `loads took ${res.ms.toFixed(0)} ms`, ms: res.ms });
    }
    const full = (i + 1) % init.checkEvery === 0;
    const polluted = full ? guard.full() : guard.quick();
    if (polluted !== undefined) {
      sh.counts[C_POLLUTION]++;
      const note = full ? `found by the full check after inputs ${lastCheck}..${i}` : 'found right after this input';
      report({ ...base(), kind: 'pollution', key: `pollution | ${polluted}`, message: polluted, note });
      guard.restore();
      checkNow = true;
    }
    if (full || checkNow) {
      sh.counts[C_CHECKS]++;
      const broken = checkSentinels(corpus.sentinels);
      if (broken !== undefined) {
        sh.counts[C_BROKEN]++;
        report({ ...base(), kind: 'decoder-broken', key: `decoder-broken | ${broken.replace(/\d+/g, 'N').slice(0, 200)}`, message: broken, note: `known-good pickles loaded right after input ${lastCheck - 1}, wrong after ${i}` });
        // Module state is damaged: continue in a fresh worker.
        post({ type: 'restart-me', next: i + 1 });
        return;
      }
      lastCheck = i + 1;
    }
  }
  post({ type: 'done', next: i });
}

// ====================================================================== main thread

function fmt(n: number): string {
  return Math.round(n).toLocaleString('en-US');
}

/** Runs one input in this thread and prints everything about it. */
function replayOne(input: Uint8Array, spec: number, label: string): void {
  console.log(`${label}: ${input.length} bytes, options ${specLabel(spec)} (spec ${spec})`);
  console.log(`  hex ${hex(input).slice(0, 2000)}${input.length > 1000 ? '...' : ''}`);
  const guard = new PollutionGuard();
  const t0 = performance.now();
  try {
    const v = loads(presentInput(input, spec), specOptions(spec));
    console.log(`  value (${(performance.now() - t0).toFixed(2)} ms): ${fingerprint(v).slice(0, 2000)}`);
  } catch (e) {
    console.log(`  threw (${(performance.now() - t0).toFixed(2)} ms): ${describeThrown(e)}`);
    if (e instanceof BilliardError) console.log(`  code ${e.code}`);
    if (e instanceof Error) {
      console.log(e.stack);
      if (e.cause instanceof Error) console.log(`  cause: ${e.cause.stack}`);
    }
  }
  console.log(`  pollution: ${guard.full() ?? 'none'}`);
}

function replayMain(cfg: Config): void {
  if (cfg.index !== undefined) {
    const corpus = loadCorpus(cfg.maxSeedBytes);
    const { input, spec, how } = generate(corpus, cfg.seed, cfg.index);
    replayOne(input, cfg.spec ?? spec, `input #${cfg.index} of seed ${cfg.seed} (${how})`);
    return;
  }
  const arg = cfg.replay!;
  if (existsSync(arg)) {
    const f = JSON.parse(readFileSync(arg, 'utf8')) as Finding;
    replayOne(new Uint8Array(Buffer.from(f.inputHex, 'hex')), cfg.spec ?? f.spec, `${arg} (input)`);
    if (f.minimizedHex !== undefined) replayOne(new Uint8Array(Buffer.from(f.minimizedHex, 'hex')), cfg.spec ?? f.spec, `${arg} (minimized)`);
    return;
  }
  replayOne(new Uint8Array(Buffer.from(arg.replace(/\s+/g, ''), 'hex')), cfg.spec ?? 0, 'input');
}

interface Recorded extends Finding {
  count: number;
  file: string;
}

async function fuzzMain(cfg: Config): Promise<number> {
  const started = Date.now();
  const deadline = started + cfg.seconds * 1000;
  const runDir = join(cfg.out, `seed-${cfg.seed}-${new Date(started).toISOString().replace(/[:.]/g, '-')}`);
  console.log(`pickle fuzz: seed ${cfg.seed}, count ${fmt(cfg.count)}, ${cfg.seconds} s, slow > ${cfg.slowMs} ms, hang > ${cfg.hangSeconds} s`);
  console.log(`  findings go to ${runDir}`);

  const buffers: SharedBuffers = {
    ctrl: new SharedArrayBuffer(8 * 4),
    clock: new SharedArrayBuffer(8 * 8),
    counts: new SharedArrayBuffer(N_COUNTERS * 4),
    input: new SharedArrayBuffer(MAX_INPUT),
  };
  const sh = attach(buffers);
  const findings = new Map<string, Recorded>();
  const samples = new Map<number, string>();
  let stopReason = 'count reached';

  const save = (r: Recorded): void => {
    mkdirSync(runDir, { recursive: true });
    const { file: _file, ...body } = r;
    writeFileSync(r.file, `${JSON.stringify({ ...body, seed: cfg.seed, options: specLabel(r.spec), replay: `npm run fuzz:pickle -- --replay ${r.file}` }, null, 2)}\n`);
  };
  const record = (f: Finding): void => {
    const file = join(runDir, `${f.kind}-${createHash('sha1').update(f.key).digest('hex').slice(0, 10)}.json`);
    const r: Recorded = { ...f, count: 1, file };
    findings.set(f.key, r);
    save(r);
    console.log(`  NEW FINDING [${f.kind}] #${f.index}: ${f.key}\n    ${f.minimizedHex ?? f.inputHex.slice(0, 200)}`);
  };

  const progress = (): void => {
    const c = sh.counts;
    const n = c[C_INPUTS]!;
    const secs = (Date.now() - started) / 1000;
    const pct = (i: number): string => (n === 0 ? '0' : ((100 * c[i]!) / n).toFixed(1));
    const total = [...findings.values()].reduce((s, f) => s + f.count, 0);
    console.log(`[${secs.toFixed(0).padStart(5)} s] ${fmt(n)} inputs, ${fmt(n / Math.max(secs, 1e-3))}/s; value ${pct(CAT.value)}%, EOF ${pct(CAT.EOFError)}%, `
      + `TRUNCATED ${pct(CAT['UnpicklingError TRUNCATED'])}%; findings ${findings.size} distinct / ${total}; slowest ${sh.clock[T_MAX]!.toFixed(1)} ms`);
  };

  let next = 0;
  let restarts = 0;
  for (;;) {
    const outcome = await runWorker(cfg, buffers, sh, next, deadline, [...findings.keys()], (m) => {
      if (m.type === 'finding') record(m.finding);
      else if (m.type === 'repeat') {
        const r = findings.get(m.key);
        if (r !== undefined) {
          r.count++;
          if (m.ms !== undefined && (r.ms ?? 0) < m.ms) r.ms = m.ms;
          if (m.example !== undefined && (r.examples ??= []).length < MAX_EXAMPLES) r.examples.push(m.example);
        }
      } else if (m.type === 'sample') {
        if (!samples.has(m.category)) samples.set(m.category, `#${m.index}: ${m.message}`);
      } else if (m.type === 'ready' && next === 0) {
        console.log(`  corpus: ${fmt(m.seeds)} distinct seed pickles, truncation sweep of ${fmt(m.sweep)} inputs, ${m.sentinels} known-good pickles`);
      }
    }, progress);
    if (outcome.kind === 'finished') {
      next = outcome.next;
      if (next < cfg.count) stopReason = 'time limit reached';
      break;
    }
    if (outcome.kind === 'interrupted') {
      stopReason = 'interrupted';
      break;
    }
    if (outcome.kind === 'fatal') {
      console.error(`harness failure: ${outcome.message}`);
      return 2;
    }
    // The worker hung, died, or asked for a fresh start.
    if (outcome.finding !== undefined) {
      const f = outcome.finding;
      const r = findings.get(f.key);
      if (r === undefined) record(f);
      else {
        r.count++;
        if ((r.examples ??= []).length < MAX_EXAMPLES && f.inputHex.length <= 4096) r.examples.push([f.index, f.spec, f.inputHex]);
      }
    }
    next = outcome.next;
    restarts++;
    sh.counts[C_RESTARTS]++;
    if (restarts > 200) {
      console.error('too many worker restarts; stopping');
      stopReason = 'too many restarts';
      break;
    }
    if (next >= cfg.count) break;
    if (Date.now() > deadline) {
      stopReason = 'time limit reached';
      break;
    }
  }

  for (const r of findings.values()) save(r);
  printSummary(cfg, sh, findings, samples, (Date.now() - started) / 1000, stopReason, runDir);
  return findings.size > 0 ? 1 : 0;
}

type WorkerOutcome =
  | { kind: 'finished'; next: number }
  | { kind: 'interrupted' }
  | { kind: 'fatal'; message: string }
  | { kind: 'restart'; next: number; finding?: Finding };

/** Runs one worker until it finishes, hangs, dies or asks to be restarted. */
function runWorker(
  cfg: Config,
  buffers: SharedBuffers,
  sh: Shared,
  start: number,
  deadline: number,
  knownKeys: string[],
  onMessage: (m: WorkerMessage) => void,
  progress: () => void,
): Promise<WorkerOutcome> {
  const init: WorkerInit = {
    seed: cfg.seed, start, count: cfg.count, deadline, slowMs: cfg.slowMs, checkEvery: cfg.checkEvery,
    maxSeedBytes: cfg.maxSeedBytes, knownKeys, buffers,
  };
  // Workers do not inherit tsx's loader hooks on Node 20: register them in the worker, then load this file.
  const boot = `import(${JSON.stringify(import.meta.resolve('tsx/esm/api'))}).then((m) => { m.register(); return import(${JSON.stringify(import.meta.url)}); })`;
  Atomics.store(sh.ctrl, K_RUNNING, 0);
  const worker = new Worker(boot, { eval: true, execArgv: [], workerData: init, resourceLimits: { maxOldGenerationSizeMb: cfg.memoryMb } });

  return new Promise((resolve) => {
    let settled: WorkerOutcome | undefined;
    let lastError: string | undefined;
    let lastProgress = Date.now();
    /** The input the worker is running now, as a finding of `kind`. */
    const current = (kind: 'hang' | 'crash', message: string): Finding => {
      const n = sh.ctrl[K_LEN]!;
      const input = sh.input.slice(0, n);
      return {
        kind, key: `${kind} | ${message.replace(/\d+/g, 'N')}`, index: sh.ctrl[K_INDEX]!, spec: sh.ctrl[K_SPEC]!, inputHex: hex(input), message,
        ms: Date.now() - sh.clock[T_START]!,
      };
    };
    const timer = setInterval(() => {
      if (Date.now() - lastProgress >= 10_000) {
        lastProgress = Date.now();
        progress();
      }
      if (Atomics.load(sh.ctrl, K_RUNNING) === 1 && Date.now() - sh.clock[T_START]! > cfg.hangSeconds * 1000) {
        const f = current('hang', `loads ran for more than ${cfg.hangSeconds} s`);
        settled = { kind: 'restart', next: f.index + 1, finding: f };
        sh.counts[CAT['FINDING hang']]!++;
        sh.counts[C_INPUTS]++;
        void worker.terminate();
      }
    }, 250);
    const onSigint = (): void => {
      settled ??= { kind: 'interrupted' };
      void worker.terminate();
    };
    process.once('SIGINT', onSigint);
    worker.on('message', (m: WorkerMessage) => {
      if (m.type === 'done') settled = { kind: 'finished', next: m.next };
      else if (m.type === 'restart-me') settled = { kind: 'restart', next: m.next };
      else onMessage(m);
    });
    worker.on('error', (e) => {
      lastError = describeThrown(e);
    });
    worker.on('exit', (code) => {
      clearInterval(timer);
      process.off('SIGINT', onSigint);
      if (settled !== undefined) return resolve(settled);
      if (Atomics.load(sh.ctrl, K_RUNNING) === 1) {
        // Died inside loads(): out of memory, or worse.
        const f = current('crash', `worker died (exit code ${code}): ${lastError ?? 'no error'}`);
        sh.counts[CAT['FINDING crash']]!++;
        sh.counts[C_INPUTS]++;
        return resolve({ kind: 'restart', next: f.index + 1, finding: f });
      }
      resolve({ kind: 'fatal', message: `worker exited (code ${code}) outside loads(): ${lastError ?? 'no error'}` });
    });
  });
}

function printSummary(cfg: Config, sh: Shared, findings: Map<string, Recorded>, samples: Map<number, string>, secs: number, stopReason: string, runDir: string): void {
  const c = sh.counts;
  const n = c[C_INPUTS]!;
  const lines: string[] = [];
  lines.push('', '=== pickle fuzz summary ===');
  lines.push(`seed              ${cfg.seed}`);
  lines.push(`inputs            ${fmt(n)} in ${secs.toFixed(1)} s (${fmt(n / Math.max(secs, 1e-3))} inputs/s), stopped: ${stopReason}`);
  lines.push(`time in loads()   ${(sh.clock[T_TOTAL]! / 1000).toFixed(1)} s, mean ${(n === 0 ? 0 : (sh.clock[T_TOTAL]! / n) * 1000).toFixed(1)} us`);
  lines.push(`slowest input     ${sh.clock[T_MAX]!.toFixed(2)} ms (input #${sh.clock[T_MAX_INDEX]!}; rerun with --index ${sh.clock[T_MAX_INDEX]!} --seed ${cfg.seed})`);
  lines.push(`worker restarts   ${c[C_RESTARTS]!}`);
  lines.push(`known-good checks ${fmt(c[C_CHECKS]!)} (failed ${c[C_BROKEN]!}); pollution detected ${c[C_POLLUTION]!}; slow inputs (> ${cfg.slowMs} ms) ${c[C_SLOW]!}`);
  lines.push('outcomes (with the first message seen):');
  CATEGORIES.forEach((name, i) => {
    if (c[i]! === 0 && name.startsWith('UnpicklingError')) return;
    const sample = samples.get(i);
    lines.push(`  ${name.padEnd(38)} ${fmt(c[i]!).padStart(10)} ${n === 0 ? '' : ((100 * c[i]!) / n).toFixed(2).padStart(6)}%${sample === undefined ? '' : `  ${sample.slice(0, 110)}`}`);
  });
  const total = [...findings.values()].reduce((s, f) => s + f.count, 0);
  lines.push(`findings: ${findings.size} distinct, ${fmt(total)} total${findings.size > 0 ? ` (files in ${runDir})` : ''}`);
  for (const f of findings.values()) {
    lines.push(`  [${f.kind}] x${f.count}: ${f.key}`);
    lines.push(`    first at input #${f.index}, options ${specLabel(f.spec)}${f.ms !== undefined ? `, ${f.ms.toFixed(0)} ms` : ''}`);
    lines.push(`    input     ${f.inputHex.length > 400 ? `${f.inputHex.slice(0, 400)}... (${f.inputHex.length / 2} bytes)` : f.inputHex}`);
    if (f.minimizedHex !== undefined) lines.push(`    minimized ${f.minimizedHex.length > 400 ? `${f.minimizedHex.slice(0, 400)}...` : f.minimizedHex}`);
    if (f.note !== undefined) lines.push(`    note      ${f.note}`);
    for (const [index, spec, h] of f.examples ?? []) lines.push(`    also      #${index} (${specLabel(spec)}): ${h.length > 200 ? `${h.slice(0, 200)}...` : h}`);
    lines.push(`    file      ${f.file}`);
  }
  console.log(lines.join('\n'));
}

// ====================================================================== entry

if (isMainThread) {
  let cfg: Config;
  try {
    cfg = parseArgs(process.argv.slice(2));
  } catch (e) {
    console.error((e as Error).message);
    process.exit(2);
  }
  if (cfg.replay !== undefined || cfg.index !== undefined) {
    replayMain(cfg);
  } else {
    process.exitCode = await fuzzMain(cfg);
  }
} else {
  workerMain(workerData as WorkerInit);
}
