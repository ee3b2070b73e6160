/**
 * Object dicts whose key sequence repeats are filled by a setter compiled
 * for that sequence (src/pickle/dict-shapes.ts) instead of the generic
 * store loop. Every case here is a pickle written by CPython 3.11 (or bytes
 * it loads), and the result must be what CPython loads, key order included:
 * repeated records, nested and interleaved shapes, more shapes than are
 * watched at once, keys that may not take the fast path (`__proto__`, array
 * indexes, long keys), duplicate keys, a second SETITEMS on a filled dict,
 * and the process flag that forbids code generation. The bound on compiles
 * that hostile input can cause is checked too. Nine-byte LONG1 ints, which
 * the same change touched, are checked against CPython value by value.
 */
import { execFileSync, spawnSync } from 'node:child_process';

import { beforeEach, describe, expect, test } from 'vitest';

import { MAX_COMPILES, resetShapes } from '../src/pickle/dict-shapes.js';
import { loads, PyDict } from '../src/pickle/index.js';
import { pythonFor } from './helpers/peers.js';

/** JSON of a loaded value in its own key order, written as Python's json writes it (a PyDict as an object). */
function json(v: unknown): string {
  if (v instanceof Map) return `{${[...v].map(([k, x]) => `${JSON.stringify(String(k))}:${json(x)}`).join(',')}}`;
  if (Array.isArray(v)) return `[${v.map(json).join(',')}]`;
  if (v !== null && typeof v === 'object') return `{${Object.keys(v).map((k) => `${JSON.stringify(k)}:${json((v as Record<string, unknown>)[k])}`).join(',')}}`;
  return JSON.stringify(v);
}

const CASES = String.raw`
import json, pickle, struct

def op_str(s):
    b = s.encode()
    return b'\x8c' + bytes([len(b)]) + b
def op_int(i):
    return b'J' + struct.pack('<i', i)

cases = {}
cases['records'] = [{'id': i, 'name': 'user%d' % i, 'score': i * 1.5 + 0.25, 'tags': ['a', 'b'], 'ok': i % 2 == 0} for i in range(200)]
cases['nested'] = [{'id': i, 'meta': {'x': i, 'y': -i, 'z': [i]}, 'name': 'n%d' % i} for i in range(100)]
cases['twelve shapes'] = [{('k%d_%d' % (s, j)): i + j for j in range(2 + s % 4)} for i in range(40) for s in range(12)]
cases['two orders'] = [({'a': i, 'b': i + 1} if i % 2 else {'b': i, 'a': i + 1}) for i in range(100)]
cases['same first key'] = [({'a': i, 'b': i} if i % 2 else {'a': i, 'c': i}) for i in range(100)]
cases['a prefix of another'] = [({'a': i, 'b': i, 'c': i} if i % 2 else {'a': -i, 'b': -i}) for i in range(100)]
cases['same keys, other values'] = [{'a': [i], 'b': {'c': i, 'd': str(i)}, 'e': None} for i in range(60)]
cases['__proto__'] = [{'__proto__': i, 'x': i + 1} for i in range(60)] + [{'x': i, '__proto__': 1} for i in range(60)]
cases['index keys'] = [{'1': i, 'b': i} for i in range(60)] + [{'b': i, '10': i} for i in range(60)]
cases['long keys'] = [{'k' * 65: i, 'b': i} for i in range(60)]
cases['24 keys'] = [{'k%d' % j: i for j in range(24)} for i in range(40)]
cases['25 keys'] = [{'k%d' % j: i for j in range(25)} for i in range(40)]
for proto in (1, 2, 4, 5):
    for name, v in cases.items():
        print(json.dumps([name, proto, pickle.dumps(v, proto).hex(), json.dumps(v, separators=(',', ':'))]))

# Bytes CPython's pickler does not write, that its unpickler reads: duplicate keys in one
# SETITEMS (the last wins), and a dict filled by two SETITEMS, each of a repeated sequence.
dup = b'\x80\x04]('
for i in range(40):
    dup += b'}(' + op_str('a') + op_int(i) + op_str('b') + op_int(1) + op_str('a') + op_int(-i) + b'u'
dup += b'e.'
two = b'\x80\x04]('
for i in range(40):
    two += b'}(' + op_str('a') + op_int(i) + op_str('b') + op_int(2) + b'u(' + op_str('c') + op_int(3) + op_str('a') + op_int(4) + op_str('d') + op_int(i) + b'u'
two += b'e.'
for name, b in (('duplicate keys', dup), ('two SETITEMS', two)):
    print(json.dumps([name, 4, b.hex(), json.dumps(pickle.loads(b), separators=(',', ':'))]))
`;

interface Case {
  name: string;
  protocol: number;
  bytes: Uint8Array;
  expected: string;
}

let cases: Case[] | undefined;
function allCases(): Case[] {
  cases ??= execFileSync(pythonFor('3.11'), ['-c', CASES], { encoding: 'utf8', maxBuffer: 64 * 1024 * 1024 })
    .trim()
    .split('\n')
    .map((line) => {
      const [name, protocol, hex, expected] = JSON.parse(line) as [string, number, string, string];
      return { name, protocol, bytes: Buffer.from(hex, 'hex'), expected };
    });
  return cases;
}

describe('dicts of a repeated key sequence load as CPython loads them', () => {
  beforeEach(() => {
    resetShapes();
  });

  test('every case, at protocols 1, 2, 4 and 5, each loaded three times in turn', () => {
    const all = allCases();
    expect(all.length).toBe(50);
    // Three passes: the first watches and compiles, the later ones run compiled setters with
    // another load's key strings.
    for (let pass = 0; pass < 3; pass++) {
      for (const c of all) expect(json(loads(c.bytes)), `${c.name}, protocol ${c.protocol}, pass ${pass}`).toBe(c.expected);
    }
  });

  test('repeated records do run compiled setters', () => {
    const records = allCases().find((c) => c.name === 'records' && c.protocol === 4)!;
    loads(records.bytes);
    expect(resetShapes().compiles).toBe(1);
  });

  test('keys that cannot take the fast path are never compiled for', () => {
    for (const name of ['__proto__', 'index keys', 'long keys', '25 keys']) {
      for (const c of allCases().filter((x) => x.name === name)) {
        resetShapes();
        const v = loads(c.bytes);
        expect(json(v), `${name}, protocol ${c.protocol}`).toBe(c.expected);
        expect(resetShapes().compiles, `${name}, protocol ${c.protocol}`).toBe(0);
      }
    }
    // The first of the '__proto__' rows keeps its key as an own property, not a prototype.
    const proto = allCases().find((c) => c.name === '__proto__')!;
    const rows = loads(proto.bytes) as Array<Record<string, unknown>>;
    expect(Object.getPrototypeOf(rows[59])).toBe(null);
    expect(Object.keys(rows[59]!)).toEqual(['__proto__', 'x']);
    // Index keys make the dict a PyDict, as before.
    const index = allCases().find((c) => c.name === 'index keys')!;
    expect((loads(index.bytes) as unknown[])[0]).toBeInstanceOf(PyDict);
  });

  test('hostile input: a stream of ever new key sequences compiles at most MAX_COMPILES setters in all', () => {
    const py = String.raw`
import pickle, sys
shapes = [{('s%d_a' % s): 0, ('s%d_b' % s): 1} for s in range(${MAX_COMPILES + 100})]
sys.stdout.write(pickle.dumps([dict(d) for d in shapes for _ in range(20)], 4).hex())
`;
    const bytes = Buffer.from(execFileSync(pythonFor('3.11'), ['-c', py], { encoding: 'utf8', maxBuffer: 64 * 1024 * 1024 }), 'hex');
    const rows = loads(bytes) as Array<Record<string, number>>;
    expect(rows.length).toBe((MAX_COMPILES + 100) * 20);
    expect(Object.keys(rows.at(-1)!)).toEqual([`s${MAX_COMPILES + 99}_a`, `s${MAX_COMPILES + 99}_b`]);
    expect(resetShapes().compiles).toBe(MAX_COMPILES);
  });

  test('with code generation from strings disallowed, dicts load through the generic path', () => {
    const records = allCases().find((c) => c.name === 'nested' && c.protocol === 4)!;
    const script = `
      import { loads } from './src/pickle/index.ts';
      const bytes = Buffer.from(process.env.PICKLE_HEX, 'hex');
      let out = '';
      for (let i = 0; i < 3; i++) out = JSON.stringify(loads(bytes));
      process.stdout.write(out);
    `;
    const r = spawnSync(process.execPath, ['--disallow-code-generation-from-strings', '--import', 'tsx', '--input-type=module', '-e', script], { encoding: 'utf8', timeout: 60_000, env: { ...process.env, PICKLE_HEX: Buffer.from(records.bytes).toString('hex') } });
    expect(r.stderr).toBe('');
    expect(r.stdout).toBe(records.expected);
  });
});

describe('nine-byte LONG1 ints load as CPython loads them', () => {
  test('minimal and padded encodings around 2**53, 2**63 and 2**64, both signs', () => {
    const py = String.raw`
vals = [0, 5, -1, -5, 2**53 - 1, -(2**53 - 1), 2**53, -2**53, 2**63 - 1, -2**63, 2**63, -2**63 - 1, 2**64 - 1, 2**64, -2**64, -2**64 + 1, -2**64 - 1, 2**70 + 5, 2**71 - 1, -2**71, -2**70]
import pickle
for v in vals:
    b = b'\x80\x02\x8a\x09' + v.to_bytes(9, 'little', signed=True) + b'.'
    print(b.hex(), repr(pickle.loads(b)))
`;
    const lines = execFileSync(pythonFor('3.11'), ['-c', py], { encoding: 'utf8' }).trim().split('\n');
    expect(lines.length).toBe(21);
    for (const line of lines) {
      const [hex, repr] = line.split(' ') as [string, string];
      const v = loads(Buffer.from(hex, 'hex'));
      const big = BigInt(repr);
      const safe = big >= -(2n ** 53n - 1n) && big <= 2n ** 53n - 1n;
      // Ints in Number's safe range load as numbers, the others as bigints.
      expect(v, repr).toBe(safe ? Number(big) : big);
    }
  });
});
