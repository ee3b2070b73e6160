/**
 * The unpickler's memo is sparse and bounded, and every load runs within
 * limits (src/pickle/README.md, "Limits"): `maxMemo` entries, `maxMarks`
 * open MARKs, and an allocation budget, `maxAllocBytes`, that opcodes and
 * registered handlers are charged against. Each limit fails with
 * UnpicklingError code LIMIT naming its option; below them loads behave as
 * CPython 3.11's (compat/peers/unpickle_probe.py runs the same bytes).
 */
import { spawnSync } from 'node:child_process';

import { beforeAll, describe, expect, test } from 'vitest';

import { defaultRegistry, dumps, loads, PyByteArray, PyDict, PyFrozenSet, PyGlobal, PyObject, PyTuple, tuple, UnpicklingError, type UnpicklerOptions } from '../src/pickle/index.js';
import { PEER_DIR, pythonFor } from './helpers/peers.js';
import { collidingKeys, v8KeyHash } from './helpers/v8-collisions.js';

const latin1 = (s: string): Uint8Array => new Uint8Array(Buffer.from(s, 'latin1'));
const hexOf = (b: Uint8Array): string => Buffer.from(b).toString('hex');
const u32 = (n: number): string => String.fromCharCode(n & 0xff, (n >>> 8) & 0xff, (n >>> 16) & 0xff, (n >>> 24) & 0xff);

function errorOf(data: Uint8Array, options?: UnpicklerOptions): UnpicklingError {
  try {
    loads(data, options);
  } catch (e) {
    expect(e).toBeInstanceOf(UnpicklingError);
    return e as UnpicklingError;
  }
  throw new Error('expected the load to fail');
}

function expectLimit(data: Uint8Array, option: string, options?: UnpicklerOptions): UnpicklingError {
  const e = errorOf(data, options);
  expect(e.code, e.message).toBe('LIMIT');
  expect(e.message).toContain(option);
  return e;
}

/** The value of a load as JSON, as compat/peers/unpickle_probe.py writes Python's. */
function plain(v: unknown): unknown {
  if (v === null || typeof v !== 'object') return v;
  if (Array.isArray(v)) return v.map(plain);
  if (v instanceof Map) return { dict: [...v].map(([k, x]) => [plain(k), plain(x)]) };
  if (v instanceof Uint8Array) return { bytes: hexOf(v) };
  if (Object.getPrototypeOf(v) === null) return { dict: Object.entries(v).map(([k, x]) => [k, plain(x)]) };
  return { repr: String(v) };
}

const FAR = 100_000; // far past the memo's end for billiard-ts, small enough for CPython's memo array
const far4 = u32(FAR);

/** Memo programs whose results CPython and billiard-ts must agree on. */
const MEMO_CASES: Array<[string, Uint8Array]> = [
  ['PUT and GET far past the end', latin1(`((lp${FAR}\n0g${FAR}\ng${FAR}\nt.`)],
  ['BINPUT and BINGET far past the end', latin1('\x80\x02(Nq\xff0]q\x050h\xffh\x05h\xfft.')],
  ['LONG_BINPUT and LONG_BINGET far past the end', latin1(`\x80\x02(Nr${far4}0j${far4}j${far4}t.`)],
  ['MEMOIZE counts far entries', latin1(`\x80\x04(Nr${far4}0\x8c\x01a\x94\x8c\x01b\x94h\x01h\x02j${far4}t.`)],
  ['MEMOIZE overwrites a far entry at the count', latin1('\x80\x04(Nq\x00\x8c\x01xq\x02\x8c\x01y\x94\x8c\x01z\x94h\x02q\x01h\x00h\x01h\x02t.')],
  ['dense entries catch up with a far one', latin1('\x80\x04(K\x0aq\x00K\x0bq\x02K\x0cq\x01K\x0dq\x02K\x0e\x94h\x00h\x01h\x02h\x03t.')],
  ['PUT overwrites without counting', latin1('\x80\x04(K\x01q\x00K\x02q\x00K\x03\x94h\x00h\x01t.')],
  ['a dict-representation restart with dense entries', latin1('\x80\x04(}\x942K\x01K\x02s0\x8c\x01a\x94h\x00h\x01t.')],
  ['a dict-representation restart with a far entry', latin1(`\x80\x04(}r${far4}0j${far4}K\x01K\x02s\x8c\x01a\x94h\x01t.`)],
  ['GET of a missing index beside far entries', latin1(`\x80\x02Nr${far4}h\x05.`)],
  ['LONG_BINGET one past a far entry', latin1(`\x80\x02Nr${far4}j${u32(FAR + 1)}.`)],
  ['GET of an index only a previous load had', latin1('\x80\x02h\x03.')],
];

let cpython = new Map<string, { raises: string | null; message: string; value?: unknown }>();

beforeAll(async () => {
  const python = await Promise.resolve(pythonFor('3.11') as string | Promise<string>);
  const input = MEMO_CASES.map(([, b]) => `=${hexOf(b)}`).join('\n') + '\n';
  const r = spawnSync(python, [`${PEER_DIR}unpickle_probe.py`], { input, encoding: 'utf8' });
  expect(r.status, r.stderr).toBe(0);
  cpython = new Map(
    r.stdout
      .split('\n')
      .filter((l) => l !== '')
      .map((l) => JSON.parse(l) as { hex: string; raises: string | null; message: string; value?: unknown })
      .map((o) => [o.hex, o]),
  );
}, 60_000);

describe('the memo is sparse', () => {
  test('every memo opcode, far past the end, gives what CPython gives', () => {
    // A load with many dense entries first, so that its shared memo array is reused below.
    const many = loads(dumps(Array.from({ length: 300 }, (_, i) => [i])));
    expect((many as unknown[]).length).toBe(300);
    for (const [what, data] of MEMO_CASES) {
      const theirs = cpython.get(hexOf(data))!;
      let ours: { raises: string | null; value?: unknown };
      try {
        ours = { raises: null, value: plain(loads(data)) };
      } catch (e) {
        expect(e, what).toBeInstanceOf(UnpicklingError);
        expect((e as UnpicklingError).code, what).toBe('MEMO_MISSING');
        ours = { raises: 'UnpicklingError' };
      }
      expect(ours, what).toEqual(theirs.raises === null ? { raises: null, value: theirs.value } : { raises: theirs.raises });
    }
  });

  test('GET pushes the very object PUT stored, far entries too', () => {
    const t = loads(MEMO_CASES[0]![1]) as unknown[][];
    expect(t[0]).toBe(t[1]);
    const l = loads(MEMO_CASES[2]![1]) as unknown[];
    expect(l).toEqual([null, null]);
    // Across a restart of the load (a dict escaped, then took an int key), entries of the first pass are gone:
    // (d, [], []), the list MEMOIZEd at 1 (after the far entry) and fetched back.
    for (const index of [u32(FAR), u32(2 ** 27), u32(0xfffffff0)]) {
      const r = loads(latin1(`\x80\x04(}r${index}0j${index}K\x01K\x02s]\x94h\x01t.`)) as unknown[];
      expect(r[0]).toEqual(new PyDict([[1, 2]]));
      expect(r[1]).toEqual([]);
      expect(r[1]).toBe(r[2]);
    }
    const dense = loads(latin1('\x80\x04(}\x942K\x01K\x02s0]\x94h\x00h\x01t.')) as unknown[];
    expect(dense[0]).toBe(dense[2]);
    expect(dense[1]).toBe(dense[3]);
  });

  test('indexes up to 2**32 - 1 (and PUT up to 2**53 - 1) load at once, without an array of that size', () => {
    // Each of these used to fill a dense array up to the index: a fatal out-of-memory in Node.
    expect(loads(latin1(`Nr${u32(0xffffffff)}.`))).toBeNull();
    expect(loads(latin1(`Nr${u32(0x7fffffff)}.`))).toBeNull();
    expect(loads(latin1(`Nr${u32(0xffffffff)}0j${u32(0xffffffff)}.`))).toBeNull();
    expect(loads(latin1(`]p${2 ** 53 - 1}\n0g${2 ** 53 - 1}\n.`))).toEqual([]);
    expect(loads(latin1(`\x80\x02Nq\xffh\xff.`))).toBeNull();
    // The 16-byte pickle (LONG_BINPUT 0xfffffff0 of a dict that then takes an int key) ...
    const d16 = loads(new Uint8Array(Buffer.from('80047d72f0ffffff324b014b0273302e', 'hex')));
    expect(d16).toEqual(new PyDict([[1, 2]]));
    // ... and its 20-byte shape that goes through a restart of the load, at 0xfffffff0 and at 2**27.
    for (const index of [0xfffffff0, 2 ** 27]) {
      const bytes = latin1(`\x80\x02}r${u32(index)}0j${u32(index)}K\x01K\x02s.`);
      expect(loads(bytes), index.toString(16)).toEqual(new PyDict([[1, 2]]));
    }
    // After far entries, the next load's memo is dense and empty again.
    expect(loads(dumps([['a'], ['a']]))).toEqual([['a'], ['a']]);
    expect(errorOf(latin1('\x80\x02h\x00.')).code).toBe('MEMO_MISSING');
  });

  test('a PUT or GET index over 2**63 is an OverflowError, as in CPython; over 2**53 a LIMIT', () => {
    expect(errorOf(latin1(`Np${'9'.repeat(20)}\n.`)).pyType).toBe('builtins.OverflowError');
    expect(errorOf(latin1(`g${'9'.repeat(20)}\n.`)).pyType).toBe('builtins.OverflowError');
    expectLimit(latin1(`Np${2 ** 60}\n.`), 'PUT index');
  });

  test('a load nested in a handler keeps the outer memo', () => {
    const registry = defaultRegistry.extend();
    registry.register('test', 'inner', { call: (args) => loads(args[0] as Uint8Array, { registry }) });
    const inner = dumps(['x', 'x', ['y']]);
    // ('a', inner(...), 'a', 'b', inner(...), 'b'): memo entries before and after the inner load
    const data = latin1(
      '\x80\x04(\x8c\x01a\x94\x8c\x04test\x94\x8c\x05inner\x94\x93\x94C' +
        String.fromCharCode(inner.length) +
        Buffer.from(inner).toString('latin1') +
        '\x94\x85\x94R\x94h\x00\x8c\x01b\x94h\x06h\x07t.',
    );
    expect(loads(data, { registry })).toEqual(['a', ['x', 'x', ['y']], 'a', 'b', ['x', 'x', ['y']], 'b']);
  });
});

describe('maxMemo and maxMarks', () => {
  const memoized = (n: number): Uint8Array => latin1(`\x80\x04(${'N\x94'.repeat(n)}t.`);

  test('maxMemo bounds memo entries, dense and far', () => {
    expect((loads(memoized(10), { maxMemo: 10 }) as unknown[]).length).toBe(10);
    expectLimit(memoized(11), 'maxMemo', { maxMemo: 10 });
    expectLimit(latin1(`\x80\x02Nr${u32(FAR)}r${u32(FAR + 1)}.`), 'maxMemo', { maxMemo: 1 });
    expect(loads(latin1(`\x80\x02Nr${u32(FAR)}r${u32(FAR)}.`), { maxMemo: 1 })).toBeNull(); // an overwrite is no new entry
  });

  test('the default maxMemo lets a pickle of over a million memo entries load', () => {
    expect((loads(memoized(1_100_000)) as unknown[]).length).toBe(1_100_000);
  });

  test('maxMarks bounds the MARKs open at once; a million load by default, as in CPython', () => {
    expectLimit(latin1(`${'('.repeat(11)}N.`), 'maxMarks', { maxMarks: 10 });
    expect(loads(latin1(`${'('.repeat(10)}N.`), { maxMarks: 10 })).toBeNull();
    expect(loads(latin1(`${'('.repeat(1_000_000)}N.`))).toBeNull();
  });

  test('limit options are checked when the Unpickler is made', () => {
    for (const name of ['maxMemo', 'maxMarks', 'maxAllocBytes', 'maxLongDigits', 'maxLongBytes'] as const) {
      expect(() => loads(latin1('N.'), { [name]: -1 })).toThrow(`options.${name} must be a non-negative integer or Infinity`);
      expect(() => loads(latin1('N.'), { [name]: 1.5 })).toThrow(TypeError);
      expect(loads(latin1('N.'), { [name]: Infinity })).toBeNull();
    }
  });
});

describe('maxAllocBytes', () => {
  /** `n` calls of `module.name(arg)` at protocol 2, each result dropped: a few bytes per call. */
  function calls(module: string, name: string, argOps: string, n: number): Uint8Array {
    let s = `\x80\x02c${module}\n${name}\nq\x00${argOps}\x85q\x01`;
    for (let i = 0; i < n; i++) s += 'h\x00h\x01R0';
    return latin1(`${s}N.`);
  }

  test("the issue's bomb: 514 calls of bytearray(2**20) in 3 KB fail before they allocate 514 MiB", () => {
    const bomb = calls('builtins', 'bytearray', 'J\x00\x00\x10\x00', 514);
    expect(bomb.length).toBeLessThan(3200);
    expectLimit(bomb, 'maxAllocBytes');
    expectLimit(calls('builtins', 'bytes', 'J\x00\x00\x10\x00', 514), 'maxAllocBytes');
  });

  test('below the budget, bytearray(n) and bytes(n) behave as in CPython, past the old 1 MiB cap', () => {
    const one = latin1('\x80\x02cbuiltins\nbytearray\nJ\x00\x00\x20\x00\x85R.'); // bytearray(2 MiB)
    const v = loads(one) as PyByteArray;
    expect(v).toBeInstanceOf(PyByteArray);
    expect(v.length).toBe(2 * 1024 * 1024);
    expect((loads(latin1('\x80\x02cbuiltins\nbytes\nK\x05\x85R.')) as Uint8Array).length).toBe(5);
    expectLimit(one, 'maxAllocBytes', { maxAllocBytes: 2 * 1024 * 1024 - 1 });
    expect(errorOf(latin1('\x80\x02cbuiltins\nbytes\nJ\xff\xff\xff\xff\x85R.')).code).toBe('HANDLER'); // bytes(-1)
  });

  test('every memo entry is charged in full: MEMOIZE with far entries present costs a far entry (64 bytes), not 8 less', () => {
    // One LONG_BINPUT far away, then 1,000 MEMOIZEs: each lands beside it in the far map.
    const data = latin1(`\x80\x04Nr${u32(1_000_000)}0${'N\x940'.repeat(1000)}N.`);
    expect(loads(data, { maxAllocBytes: 64 * 1001 + 64 })).toBe(null);
    expectLimit(data, 'maxAllocBytes', { maxAllocBytes: 64 * 1001 - 64 });
  });

  test('BINPUT and LONG_BINPUT entries are charged 8 bytes each, as MEMOIZE ones', () => {
    let long = '\x80\x02';
    for (let i = 0; i < 1000; i++) long += `Nr${u32(i)}0`;
    let short = '\x80\x02';
    for (let i = 0; i < 200; i++) short += `Nq${String.fromCharCode(i)}0`;
    expect(loads(latin1(`${long}N.`), { maxAllocBytes: 8 * 1000 })).toBe(null);
    expectLimit(latin1(`${long}N.`), 'maxAllocBytes', { maxAllocBytes: 8 * 1000 - 1 });
    expect(loads(latin1(`${short}N.`), { maxAllocBytes: 8 * 200 })).toBe(null);
    expectLimit(latin1(`${short}N.`), 'maxAllocBytes', { maxAllocBytes: 8 * 200 - 1 });
  });

  test('copies of a memoized argument are charged on every call', () => {
    // _codecs.encode(s, 'utf-8') of one 1 MB string, 200 times
    const big = 'x'.repeat(1_000_000);
    let s = `\x80\x02c_codecs\nencode\nq\x00X${u32(big.length)}${big}X\x05\x00\x00\x00utf-8\x86q\x01`;
    for (let i = 0; i < 200; i++) s += 'h\x00h\x01R0';
    expectLimit(latin1(`${s}N.`), 'maxAllocBytes');
    // set(l) of one list of 100,000 items, 1000 times
    let t = `\x80\x02cbuiltins\nset\nq\x00](${'K\x01'.repeat(100_000)}e\x85q\x01`;
    for (let i = 0; i < 1000; i++) t += 'h\x00h\x01R0';
    expectLimit(latin1(`${t}N.`), 'maxAllocBytes');
  });

  test('handlers that make an item of each byte or character are charged per item', () => {
    // collections.deque(b) of one 64 KiB bytes object, 512 times, kept (a fuzzer's handler bomb): 32M items.
    // The arguments alone (32 MiB) are within the budget; the items are not.
    const payload = 'y'.repeat(64 * 1024);
    let s = `\x80\x02ccollections\ndeque\nq\x00B${u32(payload.length)}${payload}\x85q\x01](`;
    for (let i = 0; i < 512; i++) s += 'h\x00h\x01R';
    expectLimit(latin1(`${s}e.`), 'maxAllocBytes');
    // set(s) of a 32 Ki-character str, 512 times
    expectLimit(calls('builtins', 'set', `X${u32(payload.length / 2)}${payload.slice(0, payload.length / 2)}`, 512), 'maxAllocBytes');
    // below the budget: as in Python, a deque of the bytes' ints
    expect([...(loads(latin1('\x80\x02ccollections\ndeque\nC\x03abc\x85R.')) as number[])]).toEqual([97, 98, 99]);
    // OrderedDict(b'...') is a TypeError in Python, not a dict of one entry per byte
    const od = latin1(`\x80\x02ccollections\nOrderedDict\nB${u32(payload.length)}${payload}\x85R.`);
    expect(errorOf(od).code).toBe('HANDLER');
  });

  test("handlers charge the budget through the load context, and their arguments are charged", () => {
    const registry = defaultRegistry.extend();
    const seen: number[] = [];
    registry.register('test', 'alloc', {
      call: (args, _g, context) => {
        context.alloc(args[0] as number);
        seen.push(args[0] as number);
        return null;
      },
    });
    registry.register('test', 'take', { call: () => 'ok' });
    const allocCall = (n: number): Uint8Array => latin1(`\x80\x02ctest\nalloc\nJ${u32(n)}\x85R.`);
    // The argument tuple (TUPLE1) costs 48.
    expect(loads(allocCall(1000), { registry, maxAllocBytes: 1048 })).toBeNull();
    expectLimit(allocCall(1001), 'maxAllocBytes', { registry, maxAllocBytes: 1048 });
    expect(seen).toEqual([1000]);
    // A 100-byte argument costs 100 bytes of budget at the call, on top of the 100 of the bytes themselves.
    const takeCall = latin1(`\x80\x02ctest\ntake\nC\x64${'y'.repeat(100)}\x85R.`);
    expect(loads(takeCall, { registry, maxAllocBytes: 248 })).toBe('ok');
    expectLimit(takeCall, 'maxAllocBytes', { registry, maxAllocBytes: 247 });
  });

  /** `data` loads with a budget of `exact` bytes and fails with LIMIT at one byte less. */
  function expectCost(data: Uint8Array, exact: number, what: string, options?: UnpicklerOptions): void {
    expect(() => loads(data, { ...options, maxAllocBytes: exact }), what).not.toThrow();
    expectLimit(data, 'maxAllocBytes', { ...options, maxAllocBytes: exact - 1 });
  }

  test('opcodes are charged for what they copy: strings, bytes, ints, batches, memo entries', () => {
    // Protocol 4 memoizes each of these containers, strings and bytes: 8 bytes a memo entry.
    const b = dumps(new Uint8Array(1000), { protocol: 4 });
    expectCost(b, 1000 + 8, 'bytes');
    // zero-copy views of the input cost nothing
    expectCost(b, 8, 'bytes, zero-copy', { zeroCopy: true });
    expectCost(dumps('s'.repeat(1000)), 1000 + 8, 'a str');
    expectCost(dumps(2n ** 8000n), 1001, 'a LONG4');
    expectCost(latin1(`L${'1'.repeat(2000)}\n.`), 2000, 'a LONG');
    // 1000 items: 8 bytes a list or tuple slot, 16 a dict entry or set element, plus the
    // container itself (a list 32, a set 160, a dict 96 as an object and 192 as a Map)
    const items = Array.from({ length: 1000 }, (_, i) => i);
    expectCost(dumps(items), 32 + 8000 + 8, 'a list');
    expectCost(dumps(new PyTuple(...items)), 8000 + 8, 'a tuple');
    expectCost(dumps(new Set(items)), 160 + 16_000 + 8, 'a set');
    expectCost(dumps(new Map(items.map((i) => [i, i]))), 96 + 16_000 + 8, 'a dict');
    // a memo entry far past the end costs 64
    expectCost(latin1(`Nr${u32(FAR)}.`), 64, 'a far memo entry');
  });

  test('a 64 MiB message loads with the default options', () => {
    const blob = new Uint8Array(64 * 1024 * 1024);
    blob[blob.length - 1] = 7;
    const v = loads(dumps(blob)) as Uint8Array;
    expect(v.length).toBe(blob.length);
    expect(v[v.length - 1]).toBe(7);
    // ... and a 64 MiB list of a million memoized strings (the bytes protocol 4 writes for it, less the framing)
    const n = 1 << 20;
    const item = (i: number): string => `${i}`.padStart(64, '.');
    const data = Buffer.alloc(5 + n * 67 + 2);
    data.write('\x80\x04]\x94(', 0, 'latin1');
    for (let i = 0, at = 5; i < n; i++, at += 67) data.write(`\x8c\x40${item(i)}\x94`, at, 'latin1');
    data.write('e.', 5 + n * 67, 'latin1');
    expect(data.length).toBeGreaterThan(64 * 1024 * 1024);
    const back = loads(new Uint8Array(data.buffer, data.byteOffset, data.length)) as string[];
    expect(back.length).toBe(n);
    expect(back[12345]).toBe(item(12345));
  });

  test('Infinity turns the budget off', () => {
    // bytearray(65 MiB) from a 40-byte pickle: over the default budget of a small input, allowed without one
    const big = latin1(`\x80\x02cbuiltins\nbytearray\nJ${u32(65 * 1024 * 1024)}\x85R.`);
    expectLimit(big, 'maxAllocBytes');
    expect((loads(big, { maxAllocBytes: Infinity }) as PyByteArray).length).toBe(65 * 1024 * 1024);
  });
});

describe('messages', () => {
  test("a loaded exception's message shows at most 200 characters of a string argument (the fuzzer's IndentationError bomb took 2 s)", () => {
    const big = "'".repeat(65536);
    // builtins.IndentationError(big, 1): two arguments, so str(e) is the repr of the args tuple.
    const pickle = dumps(new PyObject('reduce', new PyGlobal('builtins', 'IndentationError'), tuple(big, 1)));
    const e = loads(pickle) as Error & { args: unknown[] };
    expect(e.args[0]).toBe(big);
    expect(e.message.length).toBeLessThan(500); // 200 quotes escaped, and the name
    expect(e.message).toContain("...");
  });
});

test('bytearray(n, encoding) and bytes(b, encoding) are refused, as CPython refuses them (the fuzzer allocated through them)', () => {
  for (const [name, arg] of [['bytearray', 5], ['bytes', new Uint8Array(3)]] as const) {
    const pickle = dumps(new PyObject('reduce', new PyGlobal('builtins', name), tuple(arg, 'latin1')), { protocol: 2 });
    expect(() => loads(pickle), name).toThrow(UnpicklingError);
  }
  expect(loads(dumps(new PyObject('reduce', new PyGlobal('builtins', 'bytearray'), tuple(3)), { protocol: 2 }))).toEqual(PyByteArray.fromBytes([0, 0, 0]));
});

test('set() and frozenset() of bytes and of a str give the distinct bytes and characters, as in CPython', () => {
  const load = (name: string, arg: unknown): unknown => loads(dumps(new PyObject('reduce', new PyGlobal('builtins', name), tuple(arg)), { protocol: 2 }));
  expect(load('set', new Uint8Array([97, 97, 98]))).toEqual(new Set([97, 98]));
  expect(load('set', 'aab')).toEqual(new Set(['a', 'b']));
  expect([...(load('frozenset', 'x\u{1F600}x') as Set<string>)]).toEqual(['x', '\u{1F600}']);
  expect(load('set', [NaN, NaN]) as Set<unknown>).toHaveProperty('size', 2);
});

test('objects made from a single opcode byte are charged their size: megabytes of EMPTY_SET, EMPTY_DICT, EMPTY_LIST or TUPLE1 stop at the budget', () => {
  for (const [op, what] of [[0x8f, 'a set'], [0x7d, 'a dict'], [0x5d, 'a list']] as const) {
    const n = 8 * 1024 * 1024;
    const data = new Uint8Array(n + 3);
    data.set([0x80, 4]);
    data.fill(op, 2, n + 2);
    data[n + 2] = 0x2e;
    // Charged 32 to 160 bytes each against 64 MiB + 16 bytes per input byte: 8 Mi of them exceed it.
    expect(() => loads(data), what).toThrow(expect.objectContaining({ code: 'LIMIT', message: expect.stringContaining(what) }));
  }
  const tuples = new Uint8Array(4 * 1024 * 1024 + 4);
  tuples.set([0x80, 4, 0x4e]);
  tuples.fill(0x85, 3, tuples.length - 1); // None, then TUPLE1 over and over: ((((None,),),),...)
  tuples[tuples.length - 1] = 0x2e;
  expect(() => loads(tuples)).toThrow(expect.objectContaining({ code: 'LIMIT' }));
  // Within the budget they still load, as in CPython.
  const some = new Uint8Array([0x80, 4, 0x5d, ...new Uint8Array(1000).fill(0x8f), 0x2e]);
  expect(loads(some)).toEqual(new Set());
});

test('maxDepth bounds the nesting of the result, for consumers that recurse; off by default, as in CPython', () => {
  const deep = new Uint8Array([0x80, 4, ...new Uint8Array(200_000).fill(0x5d), ...new Uint8Array(199_999).fill(0x61), 0x2e]);
  expect(Array.isArray(loads(deep))).toBe(true); // CPython loads it too
  expect(() => loads(deep, { maxDepth: 1000 })).toThrow(expect.objectContaining({ code: 'LIMIT', message: expect.stringContaining('maxDepth') }));
  expect(loads(dumps([[1]]), { maxDepth: 2 })).toEqual([[1]]);
  expect(() => loads(dumps([[1]]), { maxDepth: 1 })).toThrow(expect.objectContaining({ code: 'LIMIT' }));
  expect(() => loads(dumps({ a: { b: new Set([tuple(1)]) } }), { maxDepth: 3 })).toThrow(expect.objectContaining({ code: 'LIMIT' }));
  // A recursive list is walked once: l = [l] has depth 1.
  const l: unknown[] = [];
  l.push(l);
  expect(loads(dumps(l), { maxDepth: 1 })).toHaveLength(1);
  expect(() => loads(dumps(1), { maxDepth: -1 })).toThrow(TypeError);
});

test('deque() and set() of a str are charged for a string per character, and a deque is made in one array (the fuzzer: 120 MiB for a 68 MiB budget)', () => {
  const call = (name: string, arg: unknown): Uint8Array => dumps(new PyObject('reduce', new PyGlobal('collections', name), tuple(arg)), { protocol: 2 });
  const text = '\u65e5'.repeat(1000);
  // 1000 characters: 16 a slot plus 24 a one-character string, on top of the argument's 2 bytes a character.
  expect(() => loads(call('deque', text), { maxAllocBytes: 30_000 })).toThrow(expect.objectContaining({ code: 'LIMIT' }));
  const d = loads(call('deque', text), { maxAllocBytes: 50_000 }) as string[];
  expect(d).toHaveLength(1000);
  expect(d[999]).toBe('\u65e5');
  expect(Object.getPrototypeOf(d).constructor.name).toBe('PyDeque');
});

describe('strings longer than 16,383 characters as keys (V8 hashes them by length alone)', () => {
  const LONG = 16384;
  const longKey = (i: number, length = LONG): string => 'k'.repeat(length - 8) + String(i).padStart(8, '0');
  const keys = (n: number, length = LONG): string[] => Array.from({ length: n }, (_, i) => longKey(i, length));
  const objectDict = (ks: string[]): Record<string, number> => Object.fromEntries(ks.map((k, i) => [k, i]));

  test('maxLongKeys (64 by default) bounds them per load: object dicts, PyDicts, sets, frozensets and set() of a list', () => {
    const cases: Array<[string, (ks: string[]) => Uint8Array]> = [
      ['an object dict', (ks) => dumps(objectDict(ks))],
      ['two object dicts, counted together', (ks) => dumps([objectDict(ks.slice(0, ks.length >> 1)), objectDict(ks.slice(ks.length >> 1))])],
      ['a PyDict', (ks) => dumps(new PyDict<unknown, unknown>([[1, 'int key first'], ...ks.map((k): [string, number] => [k, 0])]))],
      ['a dict loaded as a Map', (ks) => dumps(objectDict(ks))],
      ['a set (ADDITEMS)', (ks) => dumps(new Set(ks), { protocol: 4 })],
      ['a frozenset (FROZENSET)', (ks) => dumps(new PyFrozenSet(ks), { protocol: 4 })],
      ['a set at protocol 2 (builtins.set of a list)', (ks) => dumps(new Set(ks), { protocol: 2 })],
    ];
    for (const [what, make] of cases) {
      const options = what === 'a dict loaded as a Map' ? ({ dicts: 'map' } as const) : {};
      expect(() => loads(make(keys(64)), options), what).not.toThrow();
      const e = expectLimit(make(keys(65)), 'maxLongKeys', options);
      expect(e.message, what).toContain('16383');
      expect(() => loads(make(keys(65)), { ...options, maxLongKeys: 65 }), what).not.toThrow();
      expectLimit(make(keys(3)), 'maxLongKeys', { ...options, maxLongKeys: 2 });
    }
    // A key of 16,383 characters is hashed by its content: not counted.
    expect(Object.keys(loads(dumps(objectDict(keys(100, LONG - 1)))) as object)).toHaveLength(100);
    // Long strings as list items or values are not keys.
    expect(loads(dumps({ k: keys(100), l: keys(100) }))).toEqual({ k: keys(100), l: keys(100) });
    expect(() => loads(dumps(1), { maxLongKeys: -1 })).toThrow(TypeError);
  });

  test('dumps writes each occurrence of such a string in full, as CPython writes equal strings that are distinct objects', async () => {
    const python = await Promise.resolve(pythonFor('3.11') as string | Promise<string>);
    // In Python: three distinct objects of the same long text, and one 16,383-character string used twice.
    const script = [
      'import pickle, sys',
      `def long(): return ''.join(['k'] * ${LONG - 8}) + '00000007'`,
      `short = 'k' * ${LONG - 1}`,
      'value = [long(), {long(): long()}, short, short]',
      'for p in (2, 4, 5): print(pickle.dumps(value, protocol=p).hex())',
    ].join('\n');
    const r = spawnSync(python, ['-c', script], { encoding: 'utf8', maxBuffer: 64 * 1024 * 1024 });
    expect(r.status, r.stderr).toBe(0);
    const expected = r.stdout.trim().split('\n');
    const s = longKey(7);
    const short = 'k'.repeat(LONG - 1);
    const value = [s, { [s]: s }, short, short];
    expect([2, 4, 5].map((protocol) => hexOf(dumps(value, { protocol })))).toEqual(expected);
  });
});

describe('number and bigint keys that share V8 hash buckets (V8 hashes them without a seed)', () => {
  // Keys crafted with V8's hashes as test/helpers/v8-collisions.ts writes them (ints: one hash in their low 16 bits).
  const crafted = {
    'int32s': (n: number): number[] => collidingKeys.int32s(n),
    'floats': (n: number): number[] => collidingKeys.floats(n),
    'bigints below 2**64': (n: number): bigint[] => collidingKeys.u64s(n),
    'bigints k << 64 (equal low 64 bits)': (n: number): bigint[] => collidingKeys.shifted(n),
  };
  const containers: Array<[string, (ks: Array<number | bigint>) => Uint8Array, UnpicklerOptions?]> = [
    ['a dict', (ks) => dumps(new PyDict(ks.map((k) => [k, null])))],
    ['a dict loaded as a Map', (ks) => dumps(new PyDict(ks.map((k) => [k, null]))), { dicts: 'map' }],
    ['a set (ADDITEMS)', (ks) => dumps(new Set(ks), { protocol: 4 })],
    ['a frozenset (FROZENSET)', (ks) => dumps(new PyFrozenSet(ks), { protocol: 4 })],
    ['a set at protocol 2 (builtins.set of a list)', (ks) => dumps(new Set(ks), { protocol: 2 })],
    ['a dict at protocol 0 (SETITEM)', (ks) => dumps(new PyDict(ks.map((k) => [k, null])), { protocol: 0 })],
  ];

  test('the crafted keys do have one V8 hash each kind', () => {
    for (const [kind, make] of Object.entries(crafted)) {
      const hashes = new Set(make(50).map((k) => (kind === 'int32s' ? v8KeyHash(k) & 0xffff : v8KeyHash(k))));
      expect(hashes.size, kind).toBe(1);
    }
  });

  test('keyHash is V8\'s hash of a number or bigint key', async () => {
    const { keyHash } = await import('../src/pickle/v8-hash.js');
    const samples: Array<number | bigint> = [0, -0, 1, -1, 2 ** 31 - 1, -(2 ** 31), 2 ** 31, 2 ** 32, 2 ** 53, -(2 ** 53), 0.5, -1.5, 1e300, 5e-324, Infinity, -Infinity, 0n, 1n, -1n, 2n ** 64n, 2n ** 64n - 1n, -(2n ** 70n) - 5n, 2n ** 200n + 12345n];
    for (let i = 0; i < 2000; i++) {
      samples.push((Math.random() * 2 ** 32) | 0, (Math.random() - 0.5) * 10 ** (Math.random() * 60 - 30), Math.floor(Math.random() * 2 ** 53));
      samples.push(BigInt(Math.floor(Math.random() * 2 ** 53)) * BigInt(Math.floor(Math.random() * 2 ** 53)) * (i % 2 ? -1n : 1n));
    }
    for (const k of samples) expect(keyHash(k), String(k)).toBe(v8KeyHash(k));
  });

  test('maxHashCollisions bounds the comparisons crafted keys would cost, in every kind of dict and set', () => {
    for (const [kind, make] of Object.entries(crafted)) {
      const keys = make(3000);
      for (const [what, dump, options] of containers) {
        const data = dump(keys);
        const e = expectLimit(data, 'maxHashCollisions', options);
        expect(e.message, `${kind} in ${what}`).toContain('low 64 bits');
        const loaded = loads(data, { ...options, maxHashCollisions: Infinity }) as Map<unknown, unknown> | Set<unknown>;
        expect(loaded.size, `${kind} in ${what}`).toBe(3000);
      }
    }
  });

  test('the count follows the comparisons, for one dict and for several in one load', () => {
    // n keys in one bucket cost V8 about n * n / 2 comparisons. One key in
    // about 8, at random, is counted (and charged for 8), so the count is
    // near that, not equal to it: the bounds below are 7 standard deviations
    // or more away from where it falls.
    const n = 2000;
    const one = dumps(new PyDict(crafted['bigints k << 64 (equal low 64 bits)'](n).map((k) => [k, 0])));
    const comparisons = (n * n) / 2;
    expectLimit(one, 'maxHashCollisions', { maxHashCollisions: comparisons / 4 });
    expect((loads(one, { maxHashCollisions: comparisons * 4 }) as Map<unknown, unknown>).size).toBe(n);
    // Two such dicts in one load are charged together: each alone stays well under the limit, both go over it.
    const m = 4000;
    const dictOf = (keys: Array<number | bigint>): PyDict => new PyDict(keys.map((k) => [k, 0]));
    const limit = 9_500_000; // about 1.4 times what one dict of 4,000 is charged
    expect((loads(dumps(dictOf(crafted['int32s'](m))), { maxHashCollisions: limit }) as Map<unknown, unknown>).size).toBe(m);
    expect((loads(dumps(dictOf(crafted['floats'](m))), { maxHashCollisions: limit }) as Map<unknown, unknown>).size).toBe(m);
    expectLimit(dumps([dictOf(crafted['int32s'](m)), dictOf(crafted['floats'](m))]), 'maxHashCollisions', { maxHashCollisions: limit });
    expect(() => loads(dumps(1), { maxHashCollisions: -1 })).toThrow(TypeError);
  });

  test('keys as Python programs make them load: sequences, steps, floats, timestamps, 64-bit ids, and a few k << 64', () => {
    const n = 100_000;
    const patterns: Record<string, (i: number) => number | bigint> = {
      'range(n)': (i) => i,
      'negative': (i) => -i,
      'steps of 2**20': (i) => i * 2 ** 20,
      'steps of 2**32': (i) => i * 2 ** 32,
      'i + 0.5': (i) => i + 0.5,
      'i / 10': (i) => i / 10,
      'time.time() in ms steps': (i) => 1.7e9 + i / 1000,
      'ns timestamps': (i) => 1_700_000_000_000_000_000n + BigInt(i) * 1000n,
      '2**64 + i': (i) => 2n ** 64n + BigInt(i),
      '(i << 64) | i': (i) => (BigInt(i) << 64n) | BigInt(i),
      'random 64-bit ids': () => BigInt(Math.floor(Math.random() * 2 ** 32)) * 2n ** 32n + BigInt(Math.floor(Math.random() * 2 ** 32)),
      'random floats': () => Math.random(),
    };
    for (const [what, f] of Object.entries(patterns)) {
      const keys = Array.from({ length: n }, (_, i) => f(i));
      const d = loads(dumps(new PyDict(keys.map((k) => [k, 0])))) as Map<unknown, unknown>;
      expect(d.size, what).toBe(new Set(keys).size);
      expect((loads(dumps(new Set(keys), { protocol: 4 })) as Set<unknown>).size, what).toBe(d.size);
    }
    // 1,000 bigints with equal low 64 bits (500,000 comparisons) are within the default.
    const shifted = crafted['bigints k << 64 (equal low 64 bits)'](1000);
    expect((loads(dumps(new PyDict(shifted.map((k) => [k, 0])))) as Map<unknown, unknown>).size).toBe(1000);
  });
});
