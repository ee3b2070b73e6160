/**
 * CPython 3.14 (pyodide, CPython compiled to WebAssembly, with its own C
 * `_pickle`) against billiard-ts at protocol 5, 3.14's default: the
 * fixture corpus is built inside 3.14 by fixtures/make_pickle_fixtures.py
 * itself, pickled there, and compared with what billiard-ts writes for the
 * same described value; then each side loads the other's bytes.
 */
import { readFileSync } from 'node:fs';

import { loadPyodide, type PyodideInterface } from 'pyodide';
import { beforeAll, describe, expect, test } from 'vitest';

import { dumps, loads } from '../src/pickle/index.js';
import { buildValue, type Desc } from './helpers/describe.js';
import { firstDifference } from './helpers/fixtures.js';
import { pyDiff } from './helpers/pyequal.js';

let py: PyodideInterface;
let version = '';

interface Case {
  name: string;
  desc: Desc;
  pickle: Uint8Array;
}
let cases: Case[] = [];

/** Python-side helpers: the generator's corpus, and the interop tests' equality (nan, -0.0, exact types). */
const HELPERS = `
import json, math, pickle, sys
sys.setrecursionlimit(20000)
import make_pickle_fixtures as gen
from pyequal import same  # compat/peers/pyequal.py, written to pyodide's files below

def corpus():
    out = []
    for group, items in (('builtin', gen.builtin_corpus()), ('stdlib', gen.stdlib_corpus())):
        for name, v in items:
            v = gen.canonical_strings(v)
            out.append((name, json.dumps(gen.describe(v)), pickle.dumps(v, 5)))
    return out
`;

beforeAll(async () => {
  py = await loadPyodide();
  version = py.runPython('import sys; sys.version.split()[0]') as string;
  py.FS.writeFile('/home/pyodide/make_pickle_fixtures.py', readFileSync(new URL('../fixtures/make_pickle_fixtures.py', import.meta.url), 'utf8'));
  py.FS.writeFile('/home/pyodide/pyequal.py', readFileSync(new URL('../compat/peers/pyequal.py', import.meta.url), 'utf8'));
  py.runPython(`import sys; sys.path.insert(0, '/home/pyodide')\n${HELPERS}`);
  const raw = py.runPython('corpus()').toJs({ create_proxies: false }) as Array<[string, string, Uint8Array]>;
  cases = raw.map(([name, desc, pickle]) => ({ name, desc: JSON.parse(desc) as Desc, pickle: new Uint8Array(pickle) }));
}, 120_000);

describe('CPython 3.14 in pyodide', () => {
  test('is 3.14 and writes protocol 5 by default', () => {
    expect(version.startsWith('3.14')).toBe(true);
    expect(py.runPython('pickle.DEFAULT_PROTOCOL')).toBe(5);
    expect(cases.length).toBeGreaterThan(250);
  });

  test('billiard-ts dumps at protocol 5 the bytes 3.14 writes', () => {
    const failures: string[] = [];
    for (const c of cases) {
      const diff = firstDifference(dumps(buildValue(c.desc), { protocol: 5 }), c.pickle);
      if (diff !== 'identical') failures.push(`${c.name}: ${diff}`);
    }
    expect(failures).toEqual([]);
  });

  test('billiard-ts loads what 3.14 writes', () => {
    const failures: string[] = [];
    for (const c of cases) {
      const diff = pyDiff(loads(c.pickle, { floats: 'wrap-integral' }), buildValue(c.desc));
      if (diff !== null) failures.push(`${c.name}: ${diff}`);
    }
    expect(failures).toEqual([]);
  });

  test('3.14 loads what billiard-ts writes, to an equal value', () => {
    const check = py.runPython(`
def check(i, data):
    name, _, theirs = CORPUS[i]
    ours = pickle.loads(data.to_bytes())
    return same(pickle.loads(theirs), ours)
CORPUS = corpus()
check`) as unknown as ((i: number, data: Uint8Array) => boolean) & { destroy(): void };
    const failures: string[] = [];
    cases.forEach((c, i) => {
      const ours = dumps(loads(c.pickle, { floats: 'wrap-integral' }), { protocol: 5 });
      if (!check(i, ours)) failures.push(c.name);
    });
    check.destroy();
    expect(failures).toEqual([]);
  });
});
