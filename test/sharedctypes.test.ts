/**
 * Shared ctypes against billiard 4.1: the bytes of every typecode, the
 * wrapping rules and error messages, the heap's placements, and the spawn
 * pickles, from fixtures/sharedctypes/billiard.json (written by
 * fixtures/sharedctypes/billiard_sharedctypes.py) and from billiard run live.
 * The allocator runs on plain ArrayBuffers (a memory arena backend) except
 * in the tests marked "native", which map real arenas shared with Python.
 */
import { spawn, spawnSync } from 'node:child_process';
import { closeSync, openSync, readFileSync, readlinkSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { runInNewContext } from 'node:vm';
import { setFlagsFromString } from 'node:v8';

import { afterEach, beforeEach, describe, expect, test } from 'vitest';

import { floatRepr } from '../src/pickle/float-repr.js';
import { defaultRegistry, dumps, loads, PyFloat, PyGlobal, reduceEx, setState, tuple, type ReduceValue } from '../src/pickle/index.js';
import {
  Array as SharedArray,
  BufferWrapper,
  CArray,
  copy,
  CValue,
  getTempDir,
  Heap,
  allocateInts,
  intsOf,
  RawArray,
  RawValue,
  registerChildRebuilders,
  registerSpawnReducers,
  setArenaBackend,
  setDefaultLockFactory,
  Synchronized,
  SynchronizedArray,
  SynchronizedString,
  synchronized,
  TYPECODES,
  Value,
  type ArenaBackend,
  type SyncLock,
  type Typecode,
} from '../src/sharedctypes/index.js';
import { firstDifference, hex } from './helpers/fixtures.js';
import { pythonFor } from './helpers/peers.js';

const SCRIPT = fileURLToPath(new URL('../fixtures/sharedctypes/billiard_sharedctypes.py', import.meta.url));

type Tagged = [string, ...unknown[]];

interface Golden {
  layouts: Array<{ kind: 'value' | 'array'; code: Typecode; init: Tagged | null; hex: string; read: Tagged; repr?: string; ctype?: string }>;
  errors: Array<{
    fn: string;
    code: string;
    args: Tagged[];
    kw?: Record<string, Tagged>;
    init?: Tagged;
    op?: string;
    result?: Tagged;
    error?: [string, string];
    hex?: string;
  }>;
  heap: Array<{ ops: Array<['m' | 'f', number]>; blocks: Array<[number, number, number] | null>; arenas: number[] }>;
  pickles: Array<{ name: string; hex: string; locks: Array<[number, number, number, string | null]> }>;
  unspawned: Array<{ name: string; error: [string, string] }>;
  reprs: Array<{ name: string; repr: string }>;
}

const golden = JSON.parse(readFileSync(new URL('../fixtures/sharedctypes/billiard.json', import.meta.url), 'utf8')) as Golden;

/** A tagged value of the fixture as the JavaScript value a user would pass. */
function decode(v: Tagged): unknown {
  switch (v[0]) {
    case 'int': {
      const b = BigInt(v[1] as string);
      return b >= BigInt(Number.MIN_SAFE_INTEGER) && b <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(b) : b;
    }
    case 'float': {
      const s = v[1] as string;
      return new PyFloat(s === 'inf' ? Infinity : s === '-inf' ? -Infinity : s === 'nan' ? NaN : Number(s));
    }
    case 'bytes':
      return new Uint8Array(Buffer.from(v[1] as string, 'hex'));
    case 'str':
      return v[1];
    case 'bool':
      return v[1];
    case 'none':
      return null;
    case 'list':
      return (v[1] as Tagged[]).map(decode);
    default:
      throw new Error(`tag ${v[0]}`);
  }
}

/** A value read from billiard-ts, tagged as the fixture tags Python's (floats for `f` and `d`). */
function encode(v: unknown, code: string): Tagged {
  if (v === undefined || v === null) return ['none'];
  if (typeof v === 'boolean') return ['bool', v];
  if (typeof v === 'bigint') return ['int', String(v)];
  if (typeof v === 'number') return code === 'f' || code === 'd' ? ['float', floatRepr(v)] : ['int', String(v)];
  if (v instanceof Uint8Array) return ['bytes', hex(v)];
  if (typeof v === 'string') return ['str', v];
  if (Array.isArray(v)) return ['list', v.map((x) => encode(x, code))];
  throw new Error(`cannot encode ${String(v)}`);
}

/** Arenas in plain memory; the same descriptor maps the same buffer, as a shared file would. */
class MemoryArenas implements ArenaBackend {
  next = 100;
  readonly buffers = new Map<number, ArrayBuffer>();
  create(size: number): { fd: number; buffer: ArrayBuffer } {
    const fd = this.next++;
    const buffer = new ArrayBuffer(size);
    this.buffers.set(fd, buffer);
    return { fd, buffer };
  }
  map(fd: number, size: number): ArrayBuffer {
    const buffer = this.buffers.get(fd);
    if (buffer === undefined || buffer.byteLength !== size) throw new Error(`no arena ${fd} of ${size} bytes`);
    return buffer;
  }
}

/** A lock that counts, for one process (the synchronize layer provides the real RLock). */
class CountingLock implements SyncLock {
  depth = 0;
  acquires = 0;
  acquireSync(): boolean {
    this.depth++;
    this.acquires++;
    return true;
  }
  release(): void {
    if (this.depth === 0) throw new Error('released too many times');
    this.depth--;
  }
}

/** A lock whose pickle is that of a billiard RLock with the given state (handle, kind, maxvalue, name). */
class PickledLock extends CountingLock {
  constructor(readonly state: readonly unknown[]) {
    super();
  }
  [reduceEx](): ReduceValue {
    return { kind: 'newobj', callable: new PyGlobal('billiard.synchronize', 'RLock'), args: [], state: tuple(...this.state) };
  }
}

/** The spawn plan of the fixtures: descriptors numbered 4, 5, ... in the order the pickle meets them. */
function spawnPlan(): { registry: ReturnType<typeof defaultRegistry.extend>; numbers: Map<number, number> } {
  const numbers = new Map<number, number>();
  const registry = defaultRegistry.extend();
  registerSpawnReducers(registry, (fd) => {
    if (!numbers.has(fd)) numbers.set(fd, 4 + numbers.size);
    return numbers.get(fd)!;
  });
  return { registry, numbers };
}

function expectPyError(f: () => unknown, [name, message]: [string, string]): void {
  let thrown: unknown;
  try {
    f();
  } catch (e) {
    thrown = e;
  }
  expect(thrown, `expected ${name}: ${message}`).toBeInstanceOf(Error);
  expect([(thrown as Error).name, (thrown as Error).message]).toEqual([name, message]);
}

let memory: MemoryArenas;
let previousBackend: ArenaBackend;

beforeEach(() => {
  memory = new MemoryArenas();
  previousBackend = setArenaBackend(memory);
  BufferWrapper.heap = new Heap();
  setDefaultLockFactory(() => new CountingLock());
});

afterEach(() => {
  setArenaBackend(previousBackend);
  setDefaultLockFactory(null);
});

test('the golden file is what the installed billiard gives now (live run of its script)', () => {
  const r = spawnSync(pythonFor('3.11'), [SCRIPT], { encoding: 'utf8', maxBuffer: 64 << 20 });
  expect(r.status, r.stderr).toBe(0);
  const live = JSON.parse(r.stdout) as Golden;
  const stable = (g: Golden): unknown => ({
    layouts: g.layouts,
    errors: g.errors,
    heap: g.heap,
    unspawned: g.unspawned,
    // A lock's state (its handle and random name) and an array's address differ from run to run.
    pickles: g.pickles.filter((p) => p.locks.length === 0),
    reprs: g.reprs.map((x) => x.repr.replace(/ at 0x[0-9a-f]+>/, '>')),
  });
  expect(stable(live)).toEqual(stable(golden));
});

describe('typecodes', () => {
  test('sizes and ctypes names are those of billiard on LP64', () => {
    const rows = Object.values(TYPECODES).map((t) => [t.typecode, t.ctype, t.size, t.alignment]);
    expect(rows).toEqual([
      ['c', 'c_char', 1, 1],
      ['u', 'c_wchar', 4, 4],
      ['b', 'c_byte', 1, 1],
      ['B', 'c_ubyte', 1, 1],
      ['h', 'c_short', 2, 2],
      ['H', 'c_ushort', 2, 2],
      ['i', 'c_int', 4, 4],
      ['I', 'c_uint', 4, 4],
      ['l', 'c_long', 8, 8],
      ['L', 'c_ulong', 8, 8],
      ['q', 'c_long', 8, 8],
      ['Q', 'c_ulong', 8, 8],
      ['f', 'c_float', 4, 4],
      ['d', 'c_double', 8, 8],
    ]);
  });

  test("spec/api.md §7.1's verified bytes", () => {
    expect(hex(RawArray('i', [1, -2]).wrapper.createMemoryview())).toBe('01000000feffffff');
    expect(hex(RawArray('d', [1.0]).wrapper.createMemoryview())).toBe('000000000000f03f');
    expect(hex(RawArray('u', 'hé').wrapper.createMemoryview())).toBe('68000000e9000000');
    expect(Value('b', 200, { lock: false }).value).toBe(-56);
    expect(RawValue('I', -1).value).toBe(4294967295);
    expect(RawValue('f', 0.1).value).toBe(0.10000000149011612);
    expect(Value('c', 97, { lock: false }).value).toEqual(new Uint8Array([97]));
  });

  test('every typecode writes the bytes billiard writes and reads back what billiard reads', () => {
    expect(golden.layouts.length).toBeGreaterThan(300);
    for (const c of golden.layouts) {
      const what = `${c.kind} ${c.code} ${JSON.stringify(c.init)}`;
      if (c.kind === 'value') {
        const v = c.init === null ? RawValue(c.code) : RawValue(c.code, decode(c.init) as never);
        expect(hex(v.wrapper.createMemoryview()), what).toBe(c.hex);
        expect(encode(v.value, c.code), what).toEqual(c.read);
        expect(String(v), what).toBe(c.repr);
      } else {
        const a = RawArray(c.code, decode(c.init!) as never);
        expect(hex(a.wrapper.createMemoryview()), what).toBe(c.hex);
        expect(encode(a.toArray(), c.code), what).toEqual(c.read);
        expect(a.typeName, what).toBe(c.ctype);
      }
    }
  });

  test('the typed view is the shared memory, in native byte order', () => {
    RawValue('d', 1); // so that the array does not start the arena
    const a = RawArray('i', [1, 2, 3]);
    expect(a.typed).toBeInstanceOf(Int32Array);
    expect(a.typed.byteOffset).toBe(8);
    a.typed[1] = -7;
    expect(a.get(1)).toBe(-7);
    expect(hex(a.wrapper.createMemoryview())).toBe('01000000f9ffffff03000000');
    a.set(2, 2 ** 32 + 5);
    expect(a.typed[2]).toBe(5);
    const l = RawValue('l', 5);
    expect(l.typed).toBeInstanceOf(BigInt64Array);
    l.value = 2n ** 64n - 1n;
    expect(l.value).toBe(-1n);
    expect(l.typed[0]).toBe(-1n);
    const c = RawArray('c', 3);
    expect(c.typed).toBeInstanceOf(Uint8Array);
    expect(RawArray('u', 2).typed).toBeInstanceOf(Uint32Array);
  });
});

describe('errors and operations, as billiard raises and does them', () => {
  test('bad typecodes and initialisers raise the class and message billiard raises', () => {
    let n = 0;
    for (const c of golden.errors.filter((e) => e.fn !== 'array')) {
      const args = c.args.map(decode);
      const kw = c.kw && Object.keys(c.kw).length > 0 ? Object.fromEntries(Object.entries(c.kw).map(([k, v]) => [k, decode(v)])) : undefined;
      const call = (): unknown => {
        switch (c.fn) {
          case 'RawValue':
            return RawValue(c.code as Typecode, ...(args as [never]));
          case 'RawArray':
            return RawArray(c.code as Typecode, args[0] as never);
          case 'Value':
            return Value(c.code as Typecode, args[0] as never, kw as never);
          case 'Array':
            return SharedArray(c.code as Typecode, args[0] as never, kw as never);
          default:
            throw new Error(c.fn);
        }
      };
      expectPyError(call, c.error!);
      n++;
    }
    expect(n).toBeGreaterThan(40);
  });

  test('array operations give billiard’s results, bytes and errors', () => {
    let n = 0;
    for (const c of golden.errors.filter((e) => e.fn === 'array')) {
      const arr = RawArray(c.code as Typecode, decode(c.init!) as never);
      const args = c.args.map(decode) as [never, never, never];
      const run = (): unknown => {
        switch (c.op) {
          case 'get':
            return arr.get(args[0]);
          case 'set':
            return arr.set(args[0], args[1]);
          case 'getSlice':
            return arr.getSlice(args[0], args[1]);
          case 'setSlice':
            return arr.setSlice(args[0], args[1], args[2]);
          case 'value':
            return arr.value;
          case 'raw':
            return arr.raw;
          case 'setValue':
            (arr as CArray<'c'>).value = args[0];
            return undefined;
          case 'setRaw':
            (arr as CArray<'c'>).raw = args[0];
            return undefined;
          default:
            throw new Error(c.op);
        }
      };
      const what = `${c.code} ${JSON.stringify(c.init)} ${c.op} ${JSON.stringify(c.args)}`;
      if (c.error) expectPyError(run, c.error);
      else expect(encode(run(), c.code), what).toEqual(c.result);
      expect(hex(arr.wrapper.createMemoryview()), what).toBe(c.hex);
      n++;
    }
    expect(n).toBeGreaterThan(25);
  });

  test('reprs of synchronized wrappers are billiard’s (an array’s without its address)', () => {
    const objs: Record<string, () => { toString(): string }> = {
      'Value i 3': () => Value('i', 3),
      'Value c 0': () => Value('c', 0),
      'Value d 1.5': () => Value('d', 1.5),
      'Value u x': () => Value('u', 'x'),
      'Value l 7': () => Value('l', 7),
      'Value f 0.1': () => Value('f', 0.1),
      'Value c quote': () => Value('c', new Uint8Array([0x27])),
      'Value u quote': () => Value('u', "'"),
      'Array i 3': () => SharedArray('i', 3),
      'Array c ab': () => SharedArray('c', new Uint8Array([97, 98])),
    };
    for (const { name, repr } of golden.reprs) {
      expect(String(objs[name]!()), name).toBe(repr.replace(/ at 0x[0-9a-f]+>/, '>'));
    }
  });

  test('Value and Array: lock false gives the raw object, a lock is used as is, a default one is made', () => {
    expect(Value('i', 3, { lock: false })).toBeInstanceOf(CValue);
    expect(Value('i', { lock: false })).toBeInstanceOf(CValue);
    expect(SharedArray('i', 3, { lock: false })).toBeInstanceOf(CArray);
    const lock = new CountingLock();
    const v = Value('i', 3, { lock });
    expect(v).toBeInstanceOf(Synchronized);
    expect(v.getLock()).toBe(lock);
    expect(v.getObj().value).toBe(3);
    expect(SharedArray('c', 2)).toBeInstanceOf(SynchronizedString);
    expect(SharedArray('d', 2, { lock: true })).toBeInstanceOf(SynchronizedArray);
    expect(Value('d', 2, { lock: null }).getLock()).toBeInstanceOf(CountingLock);
    const ctxLock = new CountingLock();
    expect(Value('i', 1, { ctx: { RLock: () => ctxLock } }).getLock()).toBe(ctxLock);
    // A lock with only an async acquire cannot guard a synchronous .value.
    expectPyError(() => Value('i', 1, { lock: { acquire: async () => true, release() {} } as never }), [
      'AttributeError',
      "'<dict object>' has no method 'acquireSync' (a shared value's lock must be one that can be taken synchronously)",
    ]);
    setDefaultLockFactory(null);
    expect(() => Value('i', 1)).toThrow(/no default lock/);
  });

  test('every read and write of a synchronized wrapper holds the lock once and releases it', async () => {
    const lock = new CountingLock();
    const v = Value('i', 3, { lock });
    v.value = 2 ** 31;
    expect(v.value).toBe(-(2 ** 31));
    expect([lock.acquires, lock.depth]).toEqual([2, 0]);
    const a = SharedArray('h', [1, 2, 3], { lock });
    lock.acquires = 0;
    a.set(-1, 40000);
    expect(a.get(2)).toBe(40000 - 65536);
    expect(a.getSlice(0, 2)).toEqual([1, 2]);
    a.setSlice(0, 2, [7, 8]);
    expect(a.toArray()).toEqual([7, 8, -25536]);
    expect([...a]).toEqual([7, 8, -25536]);
    expect(a.length).toBe(3);
    expect([lock.acquires, lock.depth]).toEqual([8, 0]);
    expect(() => a.get(3)).toThrow('invalid index');
    expect(lock.depth).toBe(0);
    const s = SharedArray('c', new Uint8Array([120, 121, 122]), { lock });
    s.value = new Uint8Array([97]);
    expect(s.raw).toEqual(new Uint8Array([97, 0, 122]));
    expect(s.value).toEqual(new Uint8Array([97]));
    expect(await v.withLock(() => lock.depth)).toBe(1);
    expect(lock.depth).toBe(0);
    expect(v.acquireSync()).toBe(true);
    v.release();
    expect(lock.depth).toBe(0);
  });

  test('synchronized() of a wrapper is an AssertionError; copy() copies type, length and bytes', () => {
    const v = Value('i', 3);
    expectPyError(() => synchronized(v as never), ['AssertionError', 'object already synchronized']);
    expect(synchronized(RawArray('c', 2))).toBeInstanceOf(SynchronizedString);
    expect(synchronized(RawArray('i', 2))).toBeInstanceOf(SynchronizedArray);
    const a = RawArray('d', [0.5, 1.5]);
    const b = copy(a);
    expect(b).toBeInstanceOf(CArray);
    expect([b.typecode, b.length, b.toArray()]).toEqual(['d', 2, [0.5, 1.5]]);
    b.set(0, 9);
    expect(a.get(0)).toBe(0.5);
    expect(copy(RawValue('u', 'é')).value).toBe('é');
    expectPyError(() => copy(v as never), ['TypeError', 'this type has no size']);
  });
});

/** Runs a heap sequence ("m" size / "f" n-th malloc) on a fresh billiard-ts Heap, in the fixture's form. */
function runHeap(ops: Array<['m' | 'f', number]>): { blocks: Array<[number, number, number] | null>; arenas: number[] } {
  const heap = new Heap();
  const blocks: Array<ReturnType<Heap['malloc']>> = [];
  const out: Array<[number, number, number] | null> = [];
  for (const [op, n] of ops) {
    if (op === 'm') {
      const block = heap.malloc(n);
      blocks.push(block);
      out.push([heap.arenas.indexOf(block[0]), block[1], block[2]]);
    } else {
      heap.free(blocks[n]!);
      out.push(null);
    }
  }
  return { blocks: out, arenas: heap.arenas.map((a) => a.size) };
}

/** A seeded sequence of mallocs and frees (xorshift). */
function randomOps(seed: number, count: number): Array<['m' | 'f', number]> {
  let x = seed;
  const rand = (n: number): number => {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    return (x >>> 0) % n;
  };
  const ops: Array<['m' | 'f', number]> = [];
  const live: number[] = [];
  let mallocs = 0;
  for (let i = 0; i < count; i++) {
    if (live.length > 0 && rand(3) === 0) {
      const j = rand(live.length);
      ops.push(['f', live[j]!]);
      live.splice(j, 1);
    } else {
      const size = rand(4) === 0 ? rand(9000) : rand(64);
      ops.push(['m', size]);
      live.push(mallocs++);
    }
  }
  return ops;
}

describe('the heap places blocks where billiard’s does', () => {
  test('fixed sequences (golden)', () => {
    for (const seq of golden.heap) expect(runHeap(seq.ops), JSON.stringify(seq.ops)).toEqual({ blocks: seq.blocks, arenas: seq.arenas });
  });

  test('random sequences, against billiard’s Heap run live', () => {
    const sequences = [1, 2, 3, 4, 5, 6].map((seed) => randomOps(seed * 7919, 400));
    const r = spawnSync(pythonFor('3.11'), [SCRIPT, 'heap'], { input: JSON.stringify(sequences), encoding: 'utf8', maxBuffer: 64 << 20 });
    expect(r.status, r.stderr).toBe(0);
    const theirs = JSON.parse(r.stdout) as Golden['heap'];
    expect(theirs.length).toBe(sequences.length);
    for (let i = 0; i < sequences.length; i++) {
      expect(runHeap(sequences[i]!)).toEqual({ blocks: theirs[i]!.blocks, arenas: theirs[i]!.arenas });
    }
  });

  test('a 4-byte value takes [0, 8) of a 4096-byte first arena, the next 1-byte value [8, 16)', () => {
    const i = RawValue('i', 1);
    const b = RawValue('b', 1);
    expect([i.wrapper.state[0].slice(1), i.wrapper.getSize()]).toEqual([[0, 8], 4]);
    expect([b.wrapper.state[0].slice(1), b.wrapper.getSize()]).toEqual([[8, 16], 1]);
    expect(BufferWrapper.heap.arenas.map((a) => a.size)).toEqual([4096]);
    expect(() => i.wrapper.getAddress()).toThrow("'NoneType' object has no attribute 'address_of_buffer'");
  });

  test("a Barrier's two shared ints: 8 bytes of the heap, rebuilt from the wrapper", () => {
    RawValue('b', 1);
    const m = allocateInts(2);
    expect([m.wrapper.state[0].slice(1), m.wrapper.getSize(), m.ints.length]).toEqual([[8, 16], 8, 2]);
    m.ints[1] = -2;
    expect(hex(m.wrapper.createMemoryview())).toBe('00000000feffffff');
    const again = intsOf(BufferWrapper.fromState(m.wrapper.state));
    expect([...again.ints]).toEqual([0, -2]);
    again.ints[0] = 5;
    expect(m.ints[0]).toBe(5);
  });

  test('a collected value gives its block back; a typed view keeps it', async () => {
    setFlagsFromString('--expose-gc');
    const gc = runInNewContext('gc') as () => void;
    const collect = async (): Promise<void> => {
      for (let i = 0; i < 5; i++) {
        gc();
        await new Promise((resolve) => setTimeout(resolve, 10));
      }
    };
    const heap = BufferWrapper.heap;
    let view: Int32Array | undefined = (() => RawValue('i', 5).typed)();
    (() => RawValue('i', 6))();
    await collect();
    expect(heap.allocatedBlocks.size).toBe(1);
    expect(view![0]).toBe(5);
    view = undefined;
    await collect();
    expect(heap.allocatedBlocks.size).toBe(0);
  });
});

/** The JavaScript counterparts of the fixture's pickle cases. */
const PICKLE_CASES: Record<string, (lock: () => PickledLock) => unknown> = {
  'RawValue i 5': () => RawValue('i', 5),
  'RawValue of every typecode': () => [...'cubBhHiIlLfd'].map((c) => RawValue(c as Typecode)),
  'RawValue q Q (c_longlong, c_ulonglong)': () => [RawValue('q', -2), RawValue('Q', 2)],
  'value and array in one arena': () => [RawValue('i', 1), RawArray('d', [1.0, 2.5])],
  'RawArray c': () => RawArray('c', new TextEncoder().encode('hello')),
  'RawArray u': () => RawArray('u', 'hé'),
  'the same value twice': () => {
    const v = RawValue('h', 3);
    return [v, v, tuple(v)];
  },
  'three arenas': () => [RawArray('b', 5000), RawValue('h', 1), RawArray('d', 1100), RawArray('B', 3000), RawValue('l', -1)],
  'Value i with lock': (L) => Value('i', 7, { lock: L() }),
  'Array c with lock': (L) => SharedArray('c', new Uint8Array([97, 98]), { lock: L() }),
  'Array d with lock': (L) => SharedArray('d', [0.5, 1.5], { lock: L() }),
  'two Values sharing a lock': (L) => {
    const lock = L();
    return [Value('i', 1, { lock }), Value('l', 2, { lock })];
  },
  'a dict of shared objects': (L) => ({ counter: Value('I', 3, { lock: L() }), raw: RawArray('H', [1, 2]) }),
};

describe('pickling for a spawned child', () => {
  test('every case pickles to billiard’s bytes while spawning (golden)', () => {
    expect(golden.pickles.map((c) => c.name)).toEqual(Object.keys(PICKLE_CASES));
    for (const c of golden.pickles) {
      BufferWrapper.heap = new Heap();
      const states = [...c.locks];
      const obj = PICKLE_CASES[c.name]!(() => new PickledLock(states.shift()!));
      const { registry } = spawnPlan();
      const bytes = dumps(obj, { registry });
      const want = new Uint8Array(Buffer.from(c.hex, 'hex'));
      expect(firstDifference(bytes, want), c.name).toBe('identical');
    }
  });

  test('outside spawning, pickling a shared object raises billiard’s RuntimeError', () => {
    const objs: Record<string, () => unknown> = {
      'RawValue i': () => RawValue('i'),
      'RawArray d 2': () => RawArray('d', 2),
      'Value i': () => Value('i', 3),
      'Array i 2': () => SharedArray('i', 2),
      'Array c 2': () => SharedArray('c', 2),
    };
    for (const { name, error } of golden.unspawned) {
      const obj = objs[name]!();
      expectPyError(() => dumps(obj), error);
    }
    expect(() => dumps(BufferWrapper.heap.arenas[0])).toThrow('Arena objects should only be shared between processes through inheritance');
  });

  test("a child rebuilds billiard's pickles over the same memory", () => {
    // The parent's objects, pickled by billiard-ts, then loaded as a child would.
    const lock = new PickledLock([1, 0, 1, '/mp-test']);
    const v = Value('i', 7, { lock });
    const s = SharedArray('c', new Uint8Array([104, 105]), { lock });
    const a = RawArray('d', 1100);
    const { registry, numbers } = spawnPlan();
    const bytes = dumps([v, s, a], { registry });
    const back = new Map([...numbers].map(([fd, child]) => [child, fd]));
    const child = defaultRegistry.extend();
    // The lock is the synchronize layer's to rebuild; here a stand-in.
    child.register('billiard.synchronize', 'RLock', { newobj: () => Object.assign(new CountingLock(), { [setState]: () => {} }) });
    registerChildRebuilders(child, (childFd) => back.get(childFd)!);
    const [cv, cs, ca] = loads(bytes, { registry: child }) as [Synchronized<'i'>, SynchronizedString, CArray<'d'>];
    expect(cv).toBeInstanceOf(Synchronized);
    expect(cs).toBeInstanceOf(SynchronizedString);
    expect(ca).toBeInstanceOf(CArray);
    expect([cv.value, cs.value, ca.length]).toEqual([7, new Uint8Array([104, 105]), 1100]);
    cv.value = 41;
    ca.set(1099, 2.5);
    expect(v.value).toBe(41);
    expect(a.get(1099)).toBe(2.5);
    // A rebuilt wrapper belongs to the parent's heap: the child never frees it.
    expect(cv.getObj().wrapper.state[0][1]).toBe(v.getObj().wrapper.state[0][1]);
  });

  test("billiard's own bytes rebuild in a child, q/Q and every typecode included (golden)", () => {
    for (const c of golden.pickles.filter((p) => p.locks.length === 0)) {
      BufferWrapper.heap = new Heap();
      const mine = PICKLE_CASES[c.name]!(() => {
        throw new Error('no lock');
      });
      const { registry, numbers } = spawnPlan();
      dumps(mine, { registry });
      const back = new Map([...numbers].map(([fd, child]) => [child, fd]));
      const child = defaultRegistry.extend();
      registerChildRebuilders(child, (childFd) => back.get(childFd)!);
      const rebuilt = loads(new Uint8Array(Buffer.from(c.hex, 'hex')), { registry: child });
      const flat = (x: unknown): unknown[] => (Array.isArray(x) ? x.flatMap(flat) : [x]);
      const pairs = flat(mine).map((m, i) => [m, flat(rebuilt)[i]] as const);
      for (const [m, r] of pairs) {
        expect(r, c.name).toBeInstanceOf((m as object).constructor);
        expect((r as CValue).ctype, c.name).toBe((m as CValue).ctype);
        expect(r instanceof CValue ? r.value : (r as CArray).toArray(), c.name).toEqual(m instanceof CValue ? m.value : (m as CArray).toArray());
        expect(hex((r as CValue).wrapper.createMemoryview()), c.name).toBe(hex((m as CValue).wrapper.createMemoryview()));
        expect((r as CValue).wrapper.arena.buffer, c.name).toBe((m as CValue).wrapper.arena.buffer);
      }
    }
  });
});

describe('native arenas shared with Python (billiard on the other end)', () => {
  let saved: ArenaBackend;
  beforeEach(() => {
    saved = setArenaBackend(null);
    BufferWrapper.heap = new Heap();
  });
  afterEach(() => {
    setArenaBackend(saved);
  });

  test('arenas are unlinked pym-<pid>- files in this process’s pymp- directory', () => {
    const dir = getTempDir();
    expect(dirname(dir)).toBe(tmpdir());
    expect(dir).toMatch(/\/pymp-[a-z0-9_]{8}$/);
    expect(getTempDir()).toBe(dir);
    RawValue('i', 1);
    const arena = BufferWrapper.heap.arenas[0]!;
    expect(arena.size).toBe(4096);
    expect(readlinkSync(`/proc/self/fd/${arena.fd}`)).toMatch(new RegExp(`^${dir}/pym-${process.pid}-[^/]+ \\(deleted\\)$`));
  });

  test('a billiard child maps the arena a billiard-ts pickle hands it, and both see each other’s writes', async () => {
    const v = RawValue('i', 5);
    const a = RawArray('d', [0.5, 1.5, 2.5]);
    const arena = v.wrapper.arena;
    const registry = defaultRegistry.extend();
    registerSpawnReducers(registry, () => 3);
    const bytes = dumps([v, a], { registry });
    const code = [
      'import sys',
      'from billiard.reduction import ForkingPickler',
      'v, a = ForkingPickler.loads(bytes.fromhex(sys.stdin.readline()))',
      'print(v.value, a[:], type(v).__name__, type(a).__name__, flush=True)',
      'v.value = -42; a[2] = 9.75',
      'print("written", flush=True)',
      'sys.stdin.readline()',
      'print(v.value, flush=True)',
    ].join('\n');
    const child = spawn(pythonFor('3.11'), ['-c', code], { stdio: ['pipe', 'pipe', 'pipe', arena.fd] });
    const lines: string[] = [];
    let err = '';
    child.stderr!.on('data', (d: Buffer) => (err += d.toString()));
    // 'close' comes after the child's stdout is read to its end: a last line printed just before it exits is not lost.
    let closed: number | null | undefined;
    child.once('close', (c) => (closed = c));
    const nextLine = (): Promise<string> =>
      new Promise((resolve, reject) => {
        const check = (): void => {
          const got = lines.shift();
          if (got !== undefined) resolve(got);
          else if (closed !== undefined) reject(new Error(`python exited ${closed}: ${err}`));
          else setTimeout(check, 5);
        };
        check();
      });
    let buf = '';
    child.stdout!.on('data', (d: Buffer) => {
      buf += d.toString();
      let nl: number;
      while ((nl = buf.indexOf('\n')) >= 0) {
        lines.push(buf.slice(0, nl));
        buf = buf.slice(nl + 1);
      }
    });
    child.stdin!.write(hex(bytes) + '\n');
    expect(await nextLine()).toBe('5 [0.5, 1.5, 2.5] c_int c_double_Array_3');
    expect(await nextLine()).toBe('written');
    expect([v.value, a.toArray()]).toEqual([-42, [0.5, 1.5, 9.75]]);
    v.value = 2 ** 31 + 1;
    child.stdin!.write('\n');
    expect(await nextLine()).toBe(String(-(2 ** 31) + 1));
    child.stdin!.end();
  });

  test('billiard-ts rebuilds a billiard parent’s pickle over the parent’s own arena', async () => {
    // billiard pickles its objects while spawning (the arena's fd is passed as itself);
    // this process opens that descriptor through /proc, as a child would inherit it.
    const code = [
      'import sys, os',
      'from billiard import context, reduction, sharedctypes',
      'from billiard.popen_spawn_posix import _DupFd',
      'class P:',
      '    DupFd = _DupFd',
      '    def duplicate_for_child(self, fd): return fd',
      "v = sharedctypes.RawValue('l', -3); a = sharedctypes.RawArray('u', 'h\\u00e9!'); q = sharedctypes.RawValue('H', 65535)",
      'context.set_spawning_popen(P())',
      'data = bytes(reduction.ForkingPickler.dumps([v, a, q]))',
      'context.set_spawning_popen(None)',
      'print(os.getpid(), data.hex(), flush=True)',
      'sys.stdin.readline()',
      'print(v.value, a.value, q.value, flush=True)',
    ].join('\n');
    const child = spawn(pythonFor('3.11'), ['-c', code], { stdio: ['pipe', 'pipe', 'inherit'] });
    const out: string[] = [];
    let buf = '';
    const line = (): Promise<string> =>
      new Promise((resolve) => {
        const check = (): void => (out.length > 0 ? resolve(out.shift()!) : void setTimeout(check, 5));
        check();
      });
    child.stdout!.on('data', (d: Buffer) => {
      buf += d.toString();
      let nl: number;
      while ((nl = buf.indexOf('\n')) >= 0) {
        out.push(buf.slice(0, nl));
        buf = buf.slice(nl + 1);
      }
    });
    const [pid, data] = (await line()).split(' ');
    const opened: number[] = [];
    const registry = defaultRegistry.extend();
    registerChildRebuilders(registry, (childFd) => {
      const fd = openSync(`/proc/${pid}/fd/${childFd}`, 'r+');
      opened.push(fd);
      return fd;
    });
    const [v, a, q] = loads(new Uint8Array(Buffer.from(data!, 'hex')), { registry }) as [CValue<'l'>, CArray<'u'>, CValue<'H'>];
    expect([v.value, a.value, q.value]).toEqual([-3n, 'hé!', 65535]);
    v.value = 2n ** 63n;
    a.value = 'ok';
    q.value = -1;
    child.stdin!.write('\n');
    expect(await line()).toBe(`${-(2n ** 63n)} ok 65535`);
    child.stdin!.end();
    for (const fd of opened) closeSync(fd);
  });
});
