/**
 * What counts as a finding when one input runs in a child: the code under
 * test (loaded from --target), the options an input runs with, the
 * classification of what loads() did, the memory an input allocated, the
 * prototype-pollution guard and the known-good pickles.
 */

import { getHeapStatistics } from 'node:v8';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { fileURLToPath, pathToFileURL } from 'node:url';

import type * as PickleModule from '../../src/pickle/index.js';
import type { PickleRegistry, UnpicklerOptions } from '../../src/pickle/index.js';
import { concat, ENCODINGS, hex, OPTION_MASK, SPEC_BITS } from './core.js';
import type { Corpus } from './generate.js';
import type { HandlerInfo } from './hostile.js';

/** The pickle layer of the code under test. */
export type Pickle = typeof PickleModule;

/** This repository's root: the default target. */
export const ROOT = fileURLToPath(new URL('../..', import.meta.url));

/** Loads `<dir>/src/pickle/index.ts`, the code under test (tsx compiles it). */
export async function loadTarget(dir: string): Promise<Pickle> {
  return (await import(pathToFileURL(join(dir, 'src', 'pickle', 'index.ts')).href)) as Pickle;
}

/**
 * The globals the target's standard-library install registers, in order:
 * `installStdlib` run against a registry that only records.
 */
export function listHandlers(P: Pickle): HandlerInfo[] {
  const out: HandlerInfo[] = [];
  const recorder = new Proxy({}, {
    get(_t, prop) {
      if (prop === 'register') return (module: string, name: string) => { out.push({ module, name, exception: false }); return new P.PyGlobal(module, name); };
      if (prop === 'registerException') return (module: string, name: string) => { out.push({ module, name, exception: true }); return new P.PyGlobal(module, name); };
      if (prop === 'extend') return () => recorder;
      return () => undefined;
    },
  }) as unknown as PickleRegistry;
  P.installStdlib(recorder);
  return out;
}

// ====================================================================== options

const extRegistries = new WeakMap<Pickle, PickleRegistry>();

/** The default registry plus a few extension codes, some naming registered globals. */
function extRegistry(P: Pickle): PickleRegistry {
  let r = extRegistries.get(P);
  if (r === undefined) {
    r = P.defaultRegistry.extend();
    r.addExtension('builtins', 'set', 1);
    r.addExtension('copyreg', '_reconstructor', 2);
    r.addExtension('datetime', 'date', 255);
    r.addExtension('mod', 'Unknown', 256);
    r.addExtension('collections', 'deque', 65535);
    r.addExtension('builtins', 'ValueError', 0x7fffffff);
    extRegistries.set(P, r);
  }
  return r;
}

/** The loads() options of an options bitmask (see SPEC_BITS). */
export function specOptions(P: Pickle, spec: number): UnpicklerOptions | undefined {
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
    o.buffers = [new P.PickleBuffer(P.PyByteArray.fromBytes([6])), Uint8Array.of(1, 2, 3), P.PyByteArray.fromBytes([4, 5]), 'not a buffer'];
  }
  if (spec & SPEC_BITS.persistentLoad) o.persistentLoad = (pid) => (pid === 'boom' ? (() => { throw new Error('boom'); })() : ['pid', pid]);
  if (spec & SPEC_BITS.extRegistry) o.registry = extRegistry(P);
  if (spec & SPEC_BITS.smallLimits) {
    o.maxLongDigits = 10;
    o.maxLongBytes = 4;
  }
  return o;
}

/** A readable form of an options bitmask. */
export function specLabel(spec: number): string {
  const parts: string[] = [];
  if (spec & SPEC_BITS.dictsMap) parts.push('dicts=map');
  if (spec & SPEC_BITS.intsBigint) parts.push('ints=bigint');
  if (spec & SPEC_BITS.strict) parts.push('strict=true');
  const e = (spec >> SPEC_BITS.encodingShift) & 7;
  if (e >= 1 && e <= ENCODINGS.length) parts.push(`encoding=${ENCODINGS[e - 1]}`);
  if (spec & SPEC_BITS.floatsWrap) parts.push('floats=wrap-integral');
  if (spec & SPEC_BITS.zeroCopy) parts.push('zeroCopy=true');
  if (spec & SPEC_BITS.noFixImports) parts.push('fixImports=false');
  if (spec & SPEC_BITS.buffers) parts.push('buffers=[...]');
  if (spec & SPEC_BITS.persistentLoad) parts.push('persistentLoad=fn');
  if (spec & SPEC_BITS.extRegistry) parts.push('registry=with-extensions');
  if (spec & SPEC_BITS.smallLimits) parts.push('maxLongDigits=10 maxLongBytes=4');
  if (spec & SPEC_BITS.offsetView) parts.push('input=offset-view');
  if (spec & SPEC_BITS.nodeBuffer) parts.push('input=Buffer');
  return parts.length === 0 ? '(default options)' : parts.join(' ');
}

/** The byte string as loads() will see it, per the spec's input bits. */
export function presentInput(input: Uint8Array, spec: number): Uint8Array {
  if (spec & SPEC_BITS.offsetView) {
    const big = new Uint8Array(input.length + 8);
    big.fill(0x2e);
    big.set(input, 3);
    return big.subarray(3, 3 + input.length);
  }
  if (spec & SPEC_BITS.nodeBuffer) return Buffer.from(input);
  return input;
}

// ====================================================================== fingerprints and known-good pickles

/**
 * A canonical text of a loaded value: class names, keys, items; shared
 * references as #n. Past `budget` characters the text is cut short (and
 * ends in '...'), so that a replay of a bomb does not build a bomb of text.
 */
export function fingerprint(v: unknown, budget = Infinity): string {
  const seen = new Map<object, number>();
  let used = 0;
  const go = (x: unknown, depth: number): string => {
    if (used > budget) return '...';
    const s = one(x, depth);
    used += s.length;
    return s;
  };
  const list = (items: Iterable<unknown>, f: (i: unknown) => string): string => {
    const out: string[] = [];
    for (const i of items) {
      if (used > budget) {
        out.push('...');
        break;
      }
      out.push(f(i));
    }
    return out.join(',');
  };
  const one = (x: unknown, depth: number): string => {
    if (x === null) return 'None';
    switch (typeof x) {
      case 'undefined': return 'undefined';
      case 'boolean': return x ? 'True' : 'False';
      case 'number': return Object.is(x, -0) ? 'n:-0' : `n:${x}`;
      case 'bigint': return `b:${x}`;
      case 'string': return JSON.stringify(x.length > budget ? `${x.slice(0, 200)}...(${x.length} chars)` : x);
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
    if (o instanceof Uint8Array) return o.length > budget / 2 ? `${cls}<${hex(o.subarray(0, 100))}...(${o.length} bytes)>` : `${cls}<${hex(o)}>`;
    if (Array.isArray(o)) return `${cls}[${list(o, (i) => go(i, depth + 1))}]`;
    if (o instanceof Map) return `${cls}{${list(o, (e) => { const [k, val] = e as [unknown, unknown]; return `${go(k, depth + 1)}:${go(val, depth + 1)}`; })}}`;
    if (o instanceof Set) return `${cls}{${list(o, (i) => go(i, depth + 1))}}`;
    const rec = o as Record<string, unknown>;
    return `${cls}{${list(Object.keys(rec), (k) => `${JSON.stringify(k)}:${go(rec[k as string], depth + 1)}`)}}`;
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

export interface Sentinel {
  name: string;
  bytes: Uint8Array;
  expect: string;
}

/** Known-good pickles: three with a hand-built expected value, and a few corpus ones checked against their first load. */
export function makeSentinels(P: Pickle, corpus: Corpus): Sentinel[] {
  const o = Object.create(null) as Record<string, unknown>;
  o['a'] = [1, 2.5, null, true, 'xé', Uint8Array.of(0, 0xff), P.PyTuple.of(1, 2), 2n ** 70n, -3];
  o['b'] = new P.PyDict<unknown, unknown>([[1, 'one'], [P.PyTuple.of(2), new P.PyFrozenSet([3])]]);
  o['c'] = new Set([4]);
  const expect = fingerprint(o);
  const out: Sentinel[] = KNOWN_PICKLES.map(([name, h]) => ({ name, bytes: new Uint8Array(Buffer.from(h, 'hex')), expect }));
  for (const c of corpus.sentinelCases) {
    try {
      out.push({ ...c, expect: fingerprint(P.loads(c.bytes)) });
    } catch {
      // not a usable sentinel
    }
  }
  return out;
}

/** Checks every sentinel; returns a description of the first that fails. */
export function checkSentinels(P: Pickle, sentinels: readonly Sentinel[]): string | undefined {
  for (const s of sentinels) {
    let got: string;
    try {
      got = fingerprint(P.loads(s.bytes));
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
 * Watches the built-in prototypes and the target's classes. `quick()` is
 * cheap enough for every input; `full()` compares every property descriptor.
 */
export class PollutionGuard {
  readonly #snaps: Snapshot[] = [];
  readonly #objectKeys = Reflect.ownKeys(Object.prototype).length;
  readonly #arrayKeys = Reflect.ownKeys(Array.prototype).length;
  readonly #hot = PollutionGuard.#hotMethods();
  #globalKeys = Object.getOwnPropertyNames(globalThis).length;
  readonly #singletons: Array<[string, unknown, string]>;

  static #hotMethods(): unknown[] {
    return [
      Object.prototype.toString, Object.prototype.hasOwnProperty, Object.prototype.valueOf, Array.prototype.push,
      Array.prototype.slice, Function.prototype.call, Map.prototype.set, Set.prototype.add,
    ];
  }

  constructor(P: Pickle) {
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
      PyTuple: P.PyTuple, PyDict: P.PyDict, PyFrozenSet: P.PyFrozenSet, PyByteArray: P.PyByteArray, PyFloat: P.PyFloat, PyGlobal: P.PyGlobal,
      PyObject: P.PyObject, PickleBuffer: P.PickleBuffer, PythonException: P.PythonException, BilliardError: P.BilliardError,
      UnpicklingError: P.UnpicklingError, EOFError: P.EOFError, PyComplex: P.PyComplex, PyDate: P.PyDate, PyDatetime: P.PyDatetime,
      PyTime: P.PyTime, PyTimedelta: P.PyTimedelta, PyTimezone: P.PyTimezone, PyDecimal: P.PyDecimal, PyRange: P.PyRange, PySlice: P.PySlice,
      PyUUID: P.PyUUID, PyDeque: P.PyDeque, PyOrderedDict: P.PyOrderedDict, PyCounter: P.PyCounter, PyDefaultDict: P.PyDefaultDict,
    });
    for (const [name, cls] of classes) protos.push([`${name}.prototype`, cls.prototype], [name, cls]);
    for (const [name, obj] of protos) this.#snaps.push({ name, obj, keys: this.#describe(obj) });
    this.#singletons = [['EMPTY_TUPLE', P.EMPTY_TUPLE, fingerprint(P.EMPTY_TUPLE)], ['PyTimezone.utc', P.PyTimezone.utc, fingerprint(P.PyTimezone.utc)]];
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
    const hot = PollutionGuard.#hotMethods();
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

// ====================================================================== outcomes

/** The codes of UnpicklingError the fuzzer counts separately (INTERNAL is a finding). */
export const CODES = [
  'TRUNCATED', 'INVALID_OPCODE', 'UNSUPPORTED_PROTOCOL', 'STACK_UNDERFLOW', 'NO_MARK', 'UNEXPECTED_MARK', 'ODD_ITEMS',
  'MEMO_MISSING', 'BAD_ARGUMENT', 'DECODE', 'TYPE', 'LIMIT', 'FORBIDDEN_GLOBAL', 'NO_BUFFERS', 'NO_PERSISTENT_LOAD',
  'BAD_EXTENSION', 'TRAILING_DATA', 'HANDLER',
] as const;

/** Outcome categories, one per input. */
export const CATEGORIES = [
  'value', 'EOFError', ...CODES.map((c) => `UnpicklingError ${c}`), 'UnpicklingError (other code)',
  'FINDING INTERNAL', 'FINDING foreign error', 'FINDING masked resource error', 'FINDING crash', 'FINDING timeout', 'FINDING memory kill',
] as const;

export const CAT = Object.fromEntries(CATEGORIES.map((c, i) => [c, i])) as Record<(typeof CATEGORIES)[number], number>;

/** Counters after the categories: each input adds to one category, and maybe to these. */
export const C_SLOW = CATEGORIES.length;
export const C_MEMORY = C_SLOW + 1;
export const C_AMPLIFICATION = C_SLOW + 2;
export const C_POLLUTION = C_SLOW + 3;
export const C_CHECKS = C_SLOW + 4;
export const C_BROKEN = C_SLOW + 5;
export const N_COUNTERS = C_SLOW + 6;

export type FindingKind =
  | 'internal' | 'foreign-error' | 'masked-resource-error' | 'slow' | 'memory' | 'amplification' | 'pollution' | 'decoder-broken'
  | 'crash' | 'timeout';

export const FINDING_KINDS: readonly FindingKind[] = [
  'crash', 'timeout', 'memory', 'amplification', 'foreign-error', 'internal', 'masked-resource-error', 'slow', 'pollution', 'decoder-broken',
];

/** How a child ended, when it did not end on request. */
export interface Death {
  /** 'killed: time limit', 'killed: memory limit', 'exit code 134', 'signal SIGABRT', ... */
  reason: string;
  exitCode: number | null;
  signal: string | null;
  /** What the child was doing: 'loads', 'minimizing', 'known-good check'. */
  phase: string;
  /** The last lines of the child's stderr (V8 prints its fatal errors there). */
  stderrTail: string;
  /** RSS when last sampled and the child's peak RSS (VmHWM), MiB. */
  rssMiB: number;
  peakRssMiB: number;
  /** The child's RSS between batches before this input, MiB. */
  baselineRssMiB: number;
}

export interface Finding {
  kind: FindingKind;
  /** Dedup key: kind, then the error class and message (digits masked) and top stack frame, or the generator bucket. */
  key: string;
  seed: number;
  index: number;
  spec: number;
  how: string;
  inputHex: string;
  minimizedHex?: string;
  message: string;
  stack?: string;
  causeStack?: string;
  /** Time of the input (for a kill: until the kill). */
  ms?: number;
  /** Bytes the heap and external memory grew by over the input (value still alive, no GC forced). */
  growthBytes?: number;
  /** growthBytes per input byte. */
  ratio?: number;
  death?: Death;
  note?: string;
}

export interface Result {
  category: number;
  ms: number;
  growth: number;
  /** The error message, when loads threw. */
  error?: string;
  finding?: Pick<Finding, 'kind' | 'key' | 'message' | 'stack' | 'causeStack'>;
}

export function describeThrown(e: unknown): string {
  if (e instanceof Error) return `${e.name}: ${e.message}`;
  return `non-Error thrown: ${typeof e} ${String(e)}`;
}

/** The first "at ..." line of a stack, without the repository path. */
function topFrame(stack: string | undefined, root: string): string {
  const line = stack?.split('\n').find((l) => l.trimStart().startsWith('at ')) ?? '(no stack)';
  return line.trim().replaceAll(`file://${root}`, '').replaceAll(root, '');
}

function errorFinding(kind: 'internal' | 'foreign-error' | 'masked-resource-error', e: unknown, root: string): NonNullable<Result['finding']> {
  const root0 = kind === 'internal' && e instanceof Error && e.cause !== undefined ? e.cause : e;
  const rootText = describeThrown(root0).replace(/\d+/g, 'N').slice(0, 300);
  const stack = e instanceof Error ? e.stack : undefined;
  const causeStack = root0 !== e && root0 instanceof Error ? root0.stack : undefined;
  return {
    kind,
    key: `${kind} | ${rootText} | ${topFrame(causeStack ?? stack, root)}`,
    message: describeThrown(e),
    ...(stack !== undefined ? { stack } : {}),
    ...(causeStack !== undefined ? { causeStack } : {}),
  };
}

/** Messages of JavaScript's resource failures: thrown inside a handler they must become LIMIT, not HANDLER or TYPE. */
const RESOURCE_MESSAGE = /Invalid array length|Invalid typed array length|Array buffer allocation failed|Invalid string length|Maximum call stack size|out of memory|Maximum BigInt size|too big|Invalid table size/i;

function causeChainText(e: unknown): string {
  let text = '';
  for (let c: unknown = e, n = 0; c instanceof Error && n < 5; c = c.cause, n++) text += ` ${c.message}`;
  return text;
}

/** used_heap_size + external_memory: the V8 heap and ArrayBuffer backing stores. */
export function heapNow(): number {
  const h = getHeapStatistics();
  return h.used_heap_size + (h as { external_memory?: number }).external_memory!;
}

/** Runs loads() once and classifies what it did; measures the memory it grew by while its value is alive. */
export function runOne(P: Pickle, input: Uint8Array, spec: number, root: string): Result {
  const data = presentInput(input, spec);
  const options = specOptions(P, spec);
  let category: number;
  let finding: Result['finding'];
  let error: string | undefined;
  let value: unknown;
  const before = heapNow();
  const t0 = performance.now();
  try {
    value = P.loads(data, options);
    category = CAT.value;
  } catch (e) {
    value = e;
    error = describeThrown(e);
    if (e instanceof P.EOFError) category = CAT.EOFError;
    else if (e instanceof P.UnpicklingError) {
      if (e.code === 'INTERNAL') {
        category = CAT['FINDING INTERNAL'];
        finding = errorFinding('internal', e, root);
      } else if (e.code !== 'LIMIT' && RESOURCE_MESSAGE.test(causeChainText(e))) {
        category = CAT['FINDING masked resource error'];
        finding = errorFinding('masked-resource-error', e, root);
      } else {
        const i = (CODES as readonly string[]).indexOf(e.code);
        category = i >= 0 ? CAT[`UnpicklingError ${CODES[i]!}`] : CAT['UnpicklingError (other code)'];
      }
    } else {
      category = CAT['FINDING foreign error'];
      finding = errorFinding('foreign-error', e, root);
    }
  }
  const ms = performance.now() - t0;
  const growth = heapNow() - before;
  if (value === P) throw new Error('unreachable'); // keeps `value` alive until the measurement
  const res: Result = { category, ms, growth };
  if (error !== undefined) res.error = error;
  if (finding !== undefined) res.finding = finding;
  return res;
}

/** Shrinks an input while it still gives a finding with the same key (bounded in tries and time). */
export function minimize(P: Pickle, input: Uint8Array, spec: number, key: string, root: string, onTry: (candidate: Uint8Array) => void): Uint8Array {
  const deadline = Date.now() + 5000;
  let best = input;
  let tries = 0;
  const same = (c: Uint8Array): boolean => {
    tries++;
    onTry(c);
    return runOne(P, c, spec, root).finding?.key === key;
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

/**
 * Where findings of one generator bucket together when they carry no error
 * to key on (kills, memory, slow inputs): the family, plus the opcode, the
 * variant or the global it targets.
 */
export function bucketOf(how: string): string {
  const w = how.split(' ');
  switch (w[0]) {
    case 'memo-huge': {
      // How the dict got shared before its restart: DUP (issue 7's first shape) or a memo read (the second).
      const first = how.split(';')[0]!;
      return `memo-huge ${/ DUP /.test(first) ? 'DUP' : /GET /.test(first) ? 'memo-read' : 'unshared'}`;
    }
    case 'huge-length': return w[1] === 'line' ? `huge-length line ${w[2]}` : `huge-length ${w[1]}`;
    case 'huge-repeat': return `huge-repeat ${w[1]}`;
    case 'handler-call': return `handler-call ${w[1]}`;
    case 'handler-bomb': return `handler-bomb ${w[1]!.replace(/\(.*$/, '')}`;
    case 'hash-flood': return `hash-flood ${w[1]} ${w[2]}`;
    case 'truncate': return 'truncate-seed';
    default: return w[0]!;
  }
}

export function mib(n: number): string {
  return (n / 2 ** 20).toFixed(1);
}

/** Runs one input and describes everything about it (for --replay). */
export function describeRun(P: Pickle, guard: PollutionGuard, input: Uint8Array, spec: number, label: string): string {
  const lines: string[] = [];
  lines.push(`${label}: ${input.length} bytes, options ${specLabel(spec)} (spec ${spec})`);
  lines.push(`  hex ${hex(input.subarray(0, 1000))}${input.length > 1000 ? '...' : ''}`);
  const before = heapNow();
  const t0 = performance.now();
  let value: unknown;
  try {
    value = P.loads(presentInput(input, spec), specOptions(P, spec));
    lines.push(`  value (${(performance.now() - t0).toFixed(2)} ms): ${fingerprint(value, 2000).slice(0, 2000)}`);
  } catch (e) {
    value = e;
    lines.push(`  threw (${(performance.now() - t0).toFixed(2)} ms): ${describeThrown(e)}`);
    if (e instanceof P.UnpicklingError || e instanceof P.EOFError) {
      const masked = e.code !== 'LIMIT' && RESOURCE_MESSAGE.test(causeChainText(e));
      lines.push(`  code ${e.code}: ${e.code === 'INTERNAL' ? 'an internal error: a finding' : masked ? 'a resource failure reported as another code: a finding' : 'a typed error (acceptable)'}`);
    } else lines.push('  not an UnpicklingError or EOFError: a finding');
    if (e instanceof Error) {
      lines.push(e.stack ?? '');
      if (e.cause instanceof Error) lines.push(`  cause: ${e.cause.stack}`);
    }
  }
  const growth = heapNow() - before;
  lines.push(`  memory: heap + external grew by ${mib(growth)} MiB over the call (${Math.round(growth / Math.max(1, input.length))} bytes per input byte)`);
  if (value === P) lines.push('');
  lines.push(`  pollution: ${guard.full() ?? 'none'}`);
  return lines.join('\n');
}
