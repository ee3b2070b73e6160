/**
 * Python objects that pass through Node come out as Python wrote them: for
 * each case of compat/peers/roundtrip_classes.py (the kinds of objects
 * CPython's own pickle tests use), billiard-ts loads CPython's pickle at each
 * protocol 0-5 with the default options and dumps the result at each
 * protocol 0-5, and CPython loads every one of those to an object equal to
 * the original (a structural walk that follows cycles). One exchange with
 * each of CPython 3.11, 3.12 and 3.13 (compat/peers/pickle_roundtrip.py).
 *
 * Byte identity: a pickle dumped again at the protocol it came in at is
 * CPython 3.11's bytes; src/pickle/README.md ("Byte identity") lists the
 * re-dumps at another protocol that are equal but not CPython's bytes.
 */
import { spawn } from 'node:child_process';
import { createInterface } from 'node:readline';

import { describe, expect, test } from 'vitest';

import { defaultRegistry, dumps, loads, PicklingError, PyGlobal, PyObject, PyTuple, reduceEx, type ReduceValue } from '../src/pickle/index.js';
import { PEER_DIR, pythonFor, type PyVersion } from './helpers/peers.js';

interface PeerCase {
  name: string;
  pickles: Array<string | null>;
  raw?: boolean;
}

interface Verdict {
  name: string;
  from: number;
  to: number;
  ok: boolean;
  why: string | null;
  identical: boolean;
  /** CPython can write the original at protocol `to` (it cannot write a set holding itself below protocol 4). */
  writable: boolean;
}

/** Runs the exchange with one interpreter: its pickles in, billiard-ts's re-dumps out, its verdicts back. */
async function exchange(version: PyVersion): Promise<{ python: string; cases: PeerCase[]; verdicts: Verdict[] }> {
  const proc = spawn(await pythonFor(version), [`${PEER_DIR}pickle_roundtrip.py`], { stdio: ['pipe', 'pipe', 'pipe'] });
  let stderr = '';
  proc.stderr.on('data', (c: Buffer) => (stderr += c.toString()));
  const lines = createInterface({ input: proc.stdout })[Symbol.asyncIterator]();
  const next = async (): Promise<string> => {
    const r = await lines.next();
    if (r.done) throw new Error(`pickle_roundtrip.py (${version}) ended early: ${stderr}`);
    return r.value as string;
  };
  const first = JSON.parse(await next()) as { python: string; extensions: Array<[string, string, number]>; cases: PeerCase[] };
  const registry = defaultRegistry.extend();
  for (const [module, name, code] of first.extensions) registry.addExtension(module, name, code);

  const request: Array<Record<string, unknown>> = [];
  for (const c of first.cases) {
    c.pickles.forEach((hex, from) => {
      if (hex === null) return;
      let value: unknown;
      try {
        value = loads(new Uint8Array(Buffer.from(hex, 'hex')), { registry });
      } catch (e) {
        for (let to = 0; to <= 5; to++) request.push({ name: c.name, from, to, error: `loads: ${(e as Error).message}` });
        return;
      }
      for (let to = 0; to <= 5; to++) {
        try {
          request.push({ name: c.name, from, to, hex: Buffer.from(dumps(value, { protocol: to, registry })).toString('hex') });
        } catch (e) {
          request.push({ name: c.name, from, to, error: e instanceof PicklingError ? `dumps refused: ${e.message}` : `dumps: ${String(e)}` });
        }
      }
    });
  }
  proc.stdin.end(`${JSON.stringify(request)}\n`);
  const verdicts = JSON.parse(await next()) as Verdict[];
  expect(verdicts).toHaveLength(request.length);
  return { python: first.python, cases: first.cases, verdicts };
}

const label = (v: Verdict): string => `${v.name} p${v.from}->p${v.to}`;

describe('CPython loads what billiard-ts dumps of what it loaded from CPython', () => {
  for (const version of ['3.11', '3.12', '3.13'] as const) {
    test(`CPython ${version}, every case from and to protocols 0-5`, async () => {
      const { python, cases, verdicts } = await exchange(version);
      expect(python.startsWith(version)).toBe(true);
      expect(cases.length).toBeGreaterThan(80);
      // Where CPython cannot write the original at a protocol, billiard-ts may refuse too, with a PicklingError.
      const refusedAsCPython = (v: Verdict): boolean => !v.writable && v.why?.startsWith('billiard-ts: dumps refused:') === true;
      expect(verdicts.filter((v) => !v.ok && !refusedAsCPython(v)).map((v) => `${label(v)}: ${v.why}`)).toEqual([]);
      expect(verdicts.length).toBeGreaterThan(2500);
      if (version === '3.11') {
        // Dumped again at the protocol it came in at: CPython's own bytes.
        expect(verdicts.filter((v) => v.from === v.to && !v.identical && !cases.find((c) => c.name === v.name)?.raw).map(label)).toEqual([]);
      }
    });
  }
});

const h = (hex: string): Uint8Array => new Uint8Array(Buffer.from(hex, 'hex'));
const hex = (b: Uint8Array): string => Buffer.from(b).toString('hex');

/**
 * The same, byte for byte, for one object of each kind of issue 7 (items
 * 16-21). Hex written by CPython 3.11 for classes of `__main__`: the input,
 * and as the expected output what CPython writes for the object or, where
 * billiard-ts cannot know the class's bases, for the same reduce value.
 */
describe('placeholders keep how CPython built them', () => {
  test("NEWOBJ at protocols 0 and 1 is copyreg.__newobj__(cls, *args), keeping the arguments (myint(4), an int subclass)", () => {
    const p2 = h('8002635f5f6d61696e5f5f0a6d79696e740a71004b048571018171027d710358030000007374727104580100000034710573622e');
    const v = loads(p2) as PyObject;
    expect(v.kind).toBe('newobj');
    expect([...v.args]).toEqual([4]);
    // CPython's bytes for the reduce value (copyreg.__newobj__, (myint, 4), {'str': '4'}) at protocol 0.
    expect(hex(dumps(v, { protocol: 0 }))).toBe(
      '63636f70795f7265670a5f5f6e65776f626a5f5f0a70300a28635f5f6d61696e5f5f0a6d79696e740a70310a49340a7470320a5270330a286470340a567374720a70350a56340a70360a73622e',
    );
    // ...which loads back as NEWOBJ, and goes out again as CPython's protocol 2 bytes.
    const back = loads(dumps(v, { protocol: 0 })) as PyObject;
    expect([back.kind, (back.callable as PyGlobal).qualifiedName, ...back.args]).toEqual(['newobj', '__main__.myint', 4]);
    expect(hex(dumps(back, { protocol: 2 }))).toBe(hex(p2));
    // As CPython's save_reduce, a reduce value calling copyreg.__newobj__ is NEWOBJ from protocol 2 on.
    class Standin {
      [reduceEx](): ReduceValue {
        return { callable: new PyGlobal('copyreg', '__newobj__'), args: [v.callable, 4], state: v.state };
      }
    }
    expect(hex(dumps(new Standin(), { protocol: 2 }))).toBe(hex(p2));
  });

  test('a recursive set subclass keeps the fresh list of each of its two reductions (o.attr = MySet([o]))', () => {
    const pickles: Record<number, string> = {
      1: '635f5f6d61696e5f5f0a4d795365740a7100285d710163636f70795f7265670a5f7265636f6e7374727563746f720a710228635f5f6d61696e5f5f0a4f626a6563740a7103635f5f6275696c74696e5f5f0a6f626a6563740a71044e7471055271067d710758040000006174747271086800285d710968066174710a52710b73626174710c5230680b2e',
      2: '8002635f5f6d61696e5f5f0a4d795365740a71005d7101635f5f6d61696e5f5f0a4f626a6563740a7102298171037d7104580400000061747472710568005d7106680361857107527108736261857109523068082e',
      4: '80049545000000000000008c085f5f6d61696e5f5f948c054d795365749493945d9468008c064f626a6563749493942981947d948c04617474729468025d946806618594529473626185945230680b2e',
    };
    for (const [p, bytes] of Object.entries(pickles)) {
      const s = loads(h(bytes)) as PyObject;
      expect(s.outerArgs, `protocol ${p}`).toBeInstanceOf(PyTuple);
      expect(s.outerArgs![0]).not.toBe(s.args[0]); // two lists, each [o]
      expect(hex(dumps(s, { protocol: Number(p) }))).toBe(bytes);
    }
    expect(hex(dumps(loads(h(pickles[2]!)), { protocol: 4 }))).toBe(pickles[4]);
  });

  test('a state setter (the 6th item of a reduce value) is kept and written back', () => {
    const p0 = '635f5f6d61696e5f5f0a530a70300a28745270310a635f5f6d61696e5f5f0a7365747465720a70320a67310a286470330a56610a70340a49310a738652302e';
    const p4 = '80049530000000000000008c085f5f6d61696e5f5f948c015394939429529468008c0673657474657294939468037d948c0161944b01738652302e';
    const v = loads(h(p4)) as PyObject;
    expect((v.stateSetter as PyGlobal).qualifiedName).toBe('__main__.setter');
    expect(v.state).toEqual({ a: 1 });
    expect(hex(dumps(v, { protocol: 4 }))).toBe(p4);
    expect(hex(dumps(v, { protocol: 0 }))).toBe(p0);
    expect(hex(dumps(loads(h(p0)), { protocol: 4 }))).toBe(p4);
  });

  test("NEWOBJ_EX below protocol 4 is CPython's functools.partial(cls.__new__, cls, *args, **kwargs)() (KwOnly(k=3))", () => {
    const p2 = h('80026366756e63746f6f6c730a7061727469616c0a7100635f5f6275696c74696e5f5f0a676574617474720a7101635f5f6d61696e5f5f0a4b774f6e6c790a710258070000005f5f6e65775f5f710386710452710585710652710728680568028571087d710958010000006b710a4b03734e74710b622952710c7d710d680a4b0373622e');
    const p4 = h('8004952b000000000000008c085f5f6d61696e5f5f948c064b774f6e6c79949394297d948c016b944b037392947d9468044b0373622e');
    expect(hex(dumps(loads(p4), { protocol: 2 }))).toBe(hex(p2));
    const fromP2 = loads(p2) as PyObject;
    expect(fromP2.kind).toBe('newobj_ex');
    expect(hex(dumps(fromP2, { protocol: 4 }))).toBe(hex(p4));
    // Protocols 0 and 1: CPython's bytes for the reduce value (copyreg.__newobj_ex__, (KwOnly, (), {'k': 3}), {'k': 3}).
    expect(hex(dumps(loads(p4), { protocol: 1 }))).toBe(
      '63636f70795f7265670a5f5f6e65776f626a5f65785f5f0a710028635f5f6d61696e5f5f0a4b774f6e6c790a7101297d710258010000006b71034b03737471045271057d710668034b0373622e',
    );
  });

  test('INST and OBJ without arguments are cls.__new__(cls), not a call that runs __init__', () => {
    for (const bytes of ['28695f5f6d61696e5f5f0a440a70300a286470310a622e', '28635f5f6d61696e5f5f0a440a71006f7d710162 2e'.replace(' ', '')]) {
      const v = loads(h(bytes)) as PyObject;
      expect(v.kind).toBe('newobj');
      expect(v.args).toHaveLength(0);
      // GLOBAL __main__.D, EMPTY_TUPLE, NEWOBJ, then BUILD with the (empty) dict state.
      expect(hex(dumps(v, { protocol: 2 }))).toBe('8002635f5f6d61696e5f5f0a440a7100298171017d710262 2e'.replace(' ', ''));
    }
    // With arguments INST calls the class.
    expect((loads(h('2849310a695f5f6d61696e5f5f0a440a70300a2e')) as PyObject).kind).toBe('reduce');
  });

  test("a class reached through getattr(Outer, 'Inner') is a NEWOBJ class; a function is not", () => {
    const p2 = h('8002635f5f6275696c74696e5f5f0a676574617474720a7100635f5f6d61696e5f5f0a4f757465720a71015805000000496e6e65727102867103527104298171052e');
    const v = loads(p2) as PyObject;
    expect((v.callable as PyGlobal).qualifiedName).toBe('__main__.Outer.Inner');
    expect(hex(dumps(v, { protocol: 2 }))).toBe(hex(p2));
    expect(hex(dumps(v, { protocol: 4 }))).toBe('8004951f000000000000008c085f5f6d61696e5f5f948c0b4f757465722e496e6e65729493942981942e');
    for (const bad of ['636275696c74696e730a6c656e0a29812e', '635f5f6275696c74696e5f5f0a6c656e0a29812e', '8004636275696c74696e730a6c656e0a297d922e']) {
      expect(() => loads(h(bad)), bad).toThrow(expect.objectContaining({ name: 'UnpicklingError', code: 'TYPE' }));
    }
    class NewLen {
      [reduceEx](): ReduceValue {
        return { kind: 'newobj', callable: new PyGlobal('builtins', 'len'), args: [] };
      }
    }
    expect(() => dumps(new NewLen(), { protocol: 2 })).toThrow(PicklingError);
  });
});
