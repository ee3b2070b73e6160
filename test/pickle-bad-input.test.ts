/**
 * Malformed and hostile pickles: each ends in a typed error (UnpicklingError
 * with a stable code, or EOFError) in bounded time and memory, never a raw
 * JavaScript error, a hang or a polluted prototype. Inputs are from
 * spec/pickle.md section 11, where CPython's own reaction is recorded.
 */
import { describe, expect, test } from 'vitest';

import { dumps, EOFError, loads, PicklingError, PyDict, PyGlobal, PyObject, PyTuple, UnpicklingError, type UnpicklingErrorCode } from '../src/pickle/index.js';
import { goldenPickles } from './helpers/fixtures.js';

const h = (hex: string): Uint8Array => new Uint8Array(Buffer.from(hex, 'hex'));

function errorOf(data: Uint8Array, options?: Parameters<typeof loads>[1]): unknown {
  try {
    loads(data, options);
  } catch (e) {
    return e;
  }
  return undefined;
}

function expectCode(hex: string, code: UnpicklingErrorCode): UnpicklingError {
  const e = errorOf(h(hex));
  expect(e, `${hex} should fail`).toBeInstanceOf(UnpicklingError);
  expect((e as UnpicklingError).code, `${hex}: ${(e as Error).message}`).toBe(code);
  return e as UnpicklingError;
}

describe('truncation', () => {
  test('empty input and input ending between opcodes raise EOFError', () => {
    for (const hex of ['', '80044b01', '4e', '8004']) {
      const e = errorOf(h(hex));
      expect(e, hex).toBeInstanceOf(EOFError);
      expect((e as EOFError).code).toBe('EOF');
    }
  });

  test('input ending inside an argument raises UnpicklingError TRUNCATED', () => {
    expectCode('800458050000006162', 'TRUNCATED');
    expectCode('4a0100', 'TRUNCATED');
    expectCode('8c05616263', 'TRUNCATED');
    expectCode('4930', 'TRUNCATED'); // INT without its newline
  });

  test('every prefix of every golden pickle fails with a typed error', () => {
    let prefixes = 0;
    for (const c of goldenPickles().cases) {
      for (const full of c.pickles) {
        if (full === null || full.length > 300) continue;
        for (let cut = 0; cut < full.length; cut++) {
          const e = errorOf(full.subarray(0, cut));
          prefixes++;
          if (e instanceof EOFError) continue;
          expect(e, `${c.name} cut at ${cut}`).toBeInstanceOf(UnpicklingError);
          expect(['TRUNCATED', 'STACK_UNDERFLOW', 'UNEXPECTED_MARK', 'NO_MARK', 'ODD_ITEMS']).toContain((e as UnpicklingError).code);
        }
      }
    }
    expect(prefixes).toBeGreaterThan(10_000);
  });

  test('a FRAME longer than the data is TRUNCATED', () => {
    expectCode('80049510000000000000004b012e', 'TRUNCATED');
  });
});

describe('length fields are checked before any allocation', () => {
  test('the 8 bytes that hang pickleparser fail at once', () => {
    const t0 = process.hrtime.bigint();
    expectCode('800342fbffffff2e', 'TRUNCATED');
    expect(Number(process.hrtime.bigint() - t0)).toBeLessThan(5e9); // a hang guard, not a timing assertion
  });

  test('headers claiming gigabytes', () => {
    expectCode('800342ffffff7f61622e', 'TRUNCATED'); // BINBYTES 2 GiB
    expectCode('800596000000000100000061622e', 'TRUNCATED'); // BYTEARRAY8 4 GiB
    expectCode('8004580000008061622e', 'TRUNCATED'); // BINUNICODE 2 GiB
    // u8 lengths of 2**53 or more are refused before anything else (spec/pickle.md 13.14)
    expectCode('80048effffffffffffff7f61622e', 'LIMIT'); // BINBYTES8 2**63 - 1
    expectCode('8dffffffffffffff7f61622e', 'LIMIT'); // BINUNICODE8 2**63 - 1
    expectCode('800596ffffffffffffff7f61622e', 'LIMIT'); // BYTEARRAY8 2**63 - 1
    expectCode('800495ffffffffffffff7f4e2e', 'LIMIT'); // FRAME 2**63 - 1
    // below 2**53, longer than the input: TRUNCATED
    expectCode('80048e00000000000010002e', 'TRUNCATED'); // BINBYTES8 2**52
    expectCode('80048d00000000000010002e', 'TRUNCATED'); // BINUNICODE8 2**52
    expectCode('8004950000000000000100', 'TRUNCATED'); // FRAME 2**48
  });

  test('LONG4 with a negative length', () => {
    expectCode('80028bffffffff2e', 'BAD_ARGUMENT');
  });

  test('a sparse LONG_BINPUT index does not allocate an array of that size', () => {
    // Every memo path is in test/pickle-limits.test.ts; these are the shapes.
    expect(loads(h('4e72ffffff7f2e'))).toBeNull();
    expect(loads(h('4e72ffffffff2e'))).toBeNull();
    expect(loads(h('80047d72f0ffffff324b014b0273302e'))).toEqual(new PyDict([[1, 2]])); // then DUP, SETITEM
    expect(loads(h('80027d72f0ffffff306af0ffffff4b014b02732e'))).toEqual(new PyDict([[1, 2]])); // through a restart
  });
});

describe('malformed opcode streams', () => {
  test('unknown opcode', () => {
    expect(expectCode('ff', 'INVALID_OPCODE').message).toContain("'\\xff'");
    expectCode('7a', 'INVALID_OPCODE');
  });

  test('unsupported protocol', () => {
    expectCode('80064e2e', 'UNSUPPORTED_PROTOCOL');
  });

  test('stack underflow', () => {
    for (const hex of ['302e', '2e', '5d612e', '71002e', '8004942e', '4e522e', '4e812e', '4e622e', '4e932e', '4e4e922e']) expectCode(hex, 'STACK_UNDERFLOW');
  });

  test('MARK misuse', () => {
    expectCode('282e', 'UNEXPECTED_MARK');
    expectCode('4b01742e', 'NO_MARK');
    expectCode('312e', 'NO_MARK');
    expectCode('5d4b01652e', 'NO_MARK');
    expectCode('7d284b01752e', 'ODD_ITEMS');
    expectCode('284b01642e', 'ODD_ITEMS');
    expectCode('28284e612e', 'STACK_UNDERFLOW'); // APPEND with nothing above the mark
  });

  test('memo misses and bad memo arguments', () => {
    for (const hex of ['68052e', '6a050000002e', '67350a2e']) expect(expectCode(hex, 'MEMO_MISSING').message).toContain('index 5');
    // MEMOIZE takes the count of entries, not the highest index + 1 (spec/pickle.md 2.2)
    expectCode('80044e8c01619471058c0162946801862e', 'MEMO_MISSING');
    expect(loads(h('80044e8c01619471058c0162946802862e'))).toEqual(['b', 'b']);
    expectCode('67780a2e', 'BAD_ARGUMENT');
    expectCode('4e702d310a2e', 'BAD_ARGUMENT');
  });

  test('bad text arguments', () => {
    expectCode('496162630a2e', 'BAD_ARGUMENT'); // INT abc
    expectCode('49307831300a2e', 'BAD_ARGUMENT'); // INT 0x10: only decimal digits
    expectCode('4931003132330a2e', 'BAD_ARGUMENT'); // NUL inside a text argument
    expectCode(`4c${'31'.repeat(5000)}0a2e`, 'LIMIT'); // 5000 digits > 4300
    expectCode('466162630a2e', 'BAD_ARGUMENT');
    expectCode('46315f300a2e', 'BAD_ARGUMENT');
    expectCode('4631653530300a2e', 'BAD_ARGUMENT'); // 1e500 overflows
    expectCode('536162630a2e', 'BAD_ARGUMENT'); // unquoted STRING
    expectCode('5327e9270a2e', 'DECODE'); // non-ASCII STRING
    expectCode('5502e9612e', 'DECODE');
    expectCode('56615c7532300a2e', 'DECODE'); // truncated \u escape
    expectCode('5802000000fffe2e', 'DECODE'); // invalid UTF-8
    expectCode('8c03c0af612e', 'DECODE'); // overlong encoding
  });

  test('lone surrogates encoded in UTF-8 are accepted (surrogatepass)', () => {
    expect(loads(h('80049509000000000000008c0578eda08079942e'))).toBe('x\ud800y');
  });

  test('type errors the VM would hit', () => {
    expectCode('80044b014b02932e', 'TYPE'); // STACK_GLOBAL with ints
    expectCode('4b0129522e', 'TYPE'); // REDUCE on an int
    expectCode('636275696c74696e730a6c656e0a4b01522e', 'TYPE'); // REDUCE args not a tuple
    expectCode('80024b0129812e', 'TYPE'); // NEWOBJ on an int
    expectCode('80054b01982e', 'TYPE'); // READONLY_BUFFER on an int
    expectCode('7d285d4b01752e', 'TYPE'); // a list as a dict key
    expectCode('8004285d912e', 'TYPE'); // a list in a frozenset
    expectCode('80048f94285d902e', 'TYPE'); // a list added to a set
    expectCode('4b014b02612e', 'TYPE'); // APPEND to an int
    expectCode('4e4b014b02732e', 'TYPE'); // SETITEM into None
    expectCode('80044e284b01902e', 'TYPE'); // ADDITEMS on None
    expectCode('80048c016d8c0143934b017d922e', 'TYPE'); // NEWOBJ_EX args not a tuple
    expectCode('80048c016d8c014393294b01922e', 'TYPE'); // NEWOBJ_EX kwargs not a dict
  });

  test('extensions, persistent ids and out-of-band buffers without their hooks', () => {
    expectCode('800282012e', 'BAD_EXTENSION');
    expectCode('800282002e', 'BAD_EXTENSION');
    expectCode('50666f6f0a2e', 'NO_PERSISTENT_LOAD');
    expectCode('4b01512e', 'NO_PERSISTENT_LOAD');
    expectCode('8005972e', 'NO_BUFFERS');
    const e = errorOf(h('80059797862e'), { buffers: [new Uint8Array(1)] });
    expect((e as UnpicklingError).code).toBe('NO_BUFFERS');
  });

  test('dotted global names need protocol 4', () => {
    expect(loads(h('8004636275696c74696e730a7374722e6a6f696e0a2e'))).toBeInstanceOf(PyGlobal);
    expectCode('8002636275696c74696e730a7374722e6a6f696e0a2e', 'BAD_ARGUMENT');
  });
});

describe('hostile values', () => {
  test('100k-deep nesting loads without recursion', () => {
    const depth = 100_000;
    const data = h(`8004${'5d'.repeat(depth)}${'61'.repeat(depth - 1)}2e`);
    let v = loads(data) as unknown[];
    let d = 1;
    while (v.length === 1) {
      v = v[0] as unknown[];
      d++;
    }
    expect(d).toBe(depth);
    // {'k': {'k': ... {'k': None}}}
    const dicts = h(`8004${'7d8c016b94'.repeat(depth)}${'4e73'}${'73'.repeat(depth - 1)}2e`);
    let dv = loads(dicts) as Record<string, unknown> | null;
    d = 0;
    while (dv !== null) {
      expect(Object.keys(dv)).toEqual(['k']);
      dv = dv.k as Record<string, unknown> | null;
      d++;
    }
    expect(d).toBe(depth);
    // ((((...)),),) : depth - 1 one-item tuples around the empty one
    const tuples = h(`8004${'28'.repeat(depth)}${'74'.repeat(depth)}2e`);
    let tv = loads(tuples) as unknown[];
    d = 1;
    while (tv.length === 1) {
      expect(tv).toBeInstanceOf(PyTuple);
      tv = tv[0] as unknown[];
      d++;
    }
    expect(tv).toEqual([]);
    expect(d).toBe(depth);
  });

  test('nesting a million deep fails to pickle with a typed error, not a crash', () => {
    let v: unknown[] = [];
    for (let i = 0; i < 1_000_000; i++) v = [v];
    let err: unknown;
    try {
      dumps(v);
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(PicklingError);
    expect((err as PicklingError).code).toBe('RECURSION');
    expect(dumps([[1]])).toEqual(dumps([[1]])); // the shared pickler still works
  });

  test('the billion-laughs pickle loads as a shared DAG', () => {
    // x = ['lol']; nine times x = [x] * 10: 10**9 leaves in a few hundred bytes.
    let x: unknown = ['lol'];
    for (let i = 0; i < 9; i++) x = Array(10).fill(x);
    const bytes = dumps(x);
    expect(bytes.length).toBeLessThan(400);
    let v = loads(bytes) as unknown[];
    for (let i = 0; i < 9; i++) {
      expect(v.length).toBe(10);
      expect(v[0]).toBe(v[9]);
      v = v[0] as unknown[];
    }
    expect(v).toEqual(['lol']);
  });

  test('wide batches of a million items decode without argument spreading', () => {
    const n = 1_000_000;
    const parts = ['80045d9428'];
    parts.push('4e'.repeat(n));
    parts.push('652e');
    const list = loads(h(parts.join(''))) as unknown[];
    expect(list.length).toBe(n);
    const t = loads(h(`8004${'28'}${'4e'.repeat(n)}742e`)) as unknown[];
    expect(t.length).toBe(n);
    const fs = loads(h(`8004${'28'}${'4b01'.repeat(n)}912e`)) as Set<unknown>;
    expect(fs.size).toBe(1);
  });

  test('dict keys __proto__, constructor and prototype are ordinary keys', () => {
    // {'__proto__': {'polluted': 1}, 'constructor': 2, 'prototype': 3, '__defineGetter__': 4}
    const source = new Map<string, unknown>([['__proto__', new Map([['polluted', 1]])], ['constructor', 2], ['prototype', 3], ['__defineGetter__', 4]]);
    const v = loads(dumps(source)) as Record<string, unknown>;
    expect(Object.getPrototypeOf(v)).toBeNull();
    expect(Object.keys(v)).toEqual(['__proto__', 'constructor', 'prototype', '__defineGetter__']);
    expect((v['__proto__'] as Record<string, unknown>).polluted).toBe(1);
    expect((v as { polluted?: unknown }).polluted).toBeUndefined();
    expect(({} as { polluted?: unknown }).polluted).toBeUndefined();
    // CPython's own bytes for a dict with a __proto__ key
    const cp = loads(h('80049520000000000000007d948c095f5f70726f746f5f5f947d948c08706f6c6c75746564944b0173732e')) as Record<string, unknown>;
    expect(Object.getPrototypeOf(cp)).toBeNull();
    expect(Object.keys(cp)).toEqual(['__proto__']);
    expect(({} as { polluted?: unknown }).polluted).toBeUndefined();
  });

  test('BUILD state with a __proto__ key on a placeholder writes no prototype', () => {
    const obj = loads(h('8004952b000000000000008c085f5f6d61696e5f5f948c05506f696e749493942981947d948c095f5f70726f746f5f5f944b0173622e')) as PyObject;
    expect(obj).toBeInstanceOf(PyObject);
    expect(Object.getPrototypeOf(obj.state)).toBeNull();
    expect(Object.keys(obj.state as object)).toEqual(['__proto__']);
    expect(({} as { polluted?: unknown }).polluted).toBeUndefined();
  });

  test('unregistered globals stay inert; strict mode refuses them', () => {
    const payload = h('636f730a73797374656d0a2853276563686f2070776e6564270a74522e'); // os.system('echo pwned')
    const v = loads(payload) as PyObject;
    expect(v).toBeInstanceOf(PyObject);
    expect(v.pyType).toBe('os.system');
    expect(v.args).toEqual(['echo pwned']);
    expect((errorOf(payload, { strict: true }) as UnpicklingError).code).toBe('FORBIDDEN_GLOBAL');
  });

  test('every error is an UnpicklingError or EOFError, never a raw JavaScript error', () => {
    // A few thousand single-byte mutations of golden pickles (the fuzz script runs millions).
    let rnd = 12345;
    const next = (): number => (rnd = (rnd * 1103515245 + 12345) % 2147483648);
    let runs = 0;
    for (const c of goldenPickles().cases.slice(0, 120)) {
      for (const p of c.pickles) {
        if (p === null || p.length > 2048) continue;
        for (let k = 0; k < 8; k++) {
          const m = p.slice();
          m[next() % m.length] = next() % 256;
          const e = errorOf(m);
          runs++;
          if (e === undefined) continue;
          expect(e instanceof UnpicklingError || e instanceof EOFError, String(e)).toBe(true);
          if (e instanceof UnpicklingError) expect(e.code).not.toBe('INTERNAL');
        }
      }
    }
    expect(runs).toBeGreaterThan(1000);
    expect(({} as { polluted?: unknown }).polluted).toBeUndefined();
  });
});

describe('what CPython tolerates', () => {
  test('leftover stack, leftover marks and trailing bytes; strict refuses them', () => {
    expect(loads(h('4b014b022e'))).toBe(2);
    expect(loads(h('284b012e'))).toBe(1);
    expect(loads(h('4b012e67617262616765'))).toBe(1);
    expect((errorOf(h('4b014b022e'), { strict: true }) as UnpicklingError).code).toBe('TRAILING_DATA');
    expect((errorOf(h('4b012e67617262616765'), { strict: true }) as UnpicklingError).code).toBe('TRAILING_DATA');
  });

  test('PROTO anywhere, opcodes across frame ends, DUP, INST and OBJ', () => {
    expect(loads(h('80024b0180054b02862e'))).toEqual([1, 2]);
    expect(loads(h('80049502000000000000004b01942e'))).toBe(1);
    expect(loads(h('4b01322e'))).toBe(1);
    const inst = loads(h('2869636f6c6c656374696f6e730a4f726465726564446963740a2e')); // INST collections OrderedDict
    expect(inst).toBeInstanceOf(Map);
  });

  test('MEMOIZE after explicit PUTs and PUT overwrites', () => {
    // None PUT 5 (one entry), 'a' MEMOIZE (index 1), 'b' MEMOIZE (index 2), BINGET 1
    expect(loads(h('80044e71058c0161948c0162946801' + '2e'))).toBe('a');
  });
});
