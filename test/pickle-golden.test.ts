/**
 * billiard-ts against golden pickles written by CPython 3.11's C pickler
 * (fixtures/make_pickle_fixtures.py): dumps writes the same bytes, loads
 * reads them back to the described value, and objects of unmodelled classes
 * survive loads + dumps byte for byte.
 */
import { describe, expect, test } from 'vitest';

import { dumps, loads, PyDatetime, PyTime, PythonException } from '../src/pickle/index.js';
import { buildValue } from './helpers/describe.js';
import { firstDifference, goldenPickles } from './helpers/fixtures.js';
import { pyDiff } from './helpers/pyequal.js';

const golden = goldenPickles();

/**
 * What a protocol cannot carry, CPython loses too: `fold` is written only at
 * protocol 4+, and at protocols 0-2 every OSError subclass is written as
 * `exceptions.OSError` (spec/pickle.md sections 8.2 and 9.1).
 */
const LOSSY: Record<string, (value: unknown, protocol: number) => unknown> = {
  'datetime fold': (v, p) => {
    const d = v as PyDatetime;
    return p < 4 ? new PyDatetime(d.year, d.month, d.day, d.hour, d.minute, d.second, d.microsecond, d.tzinfo, 0) : v;
  },
  'time fold': (v, p) => {
    const t = v as PyTime;
    return p < 4 ? new PyTime(t.hour, t.minute, t.second, t.microsecond, t.tzinfo, 0) : v;
  },
  OSError: (v, p) => (p < 3 ? new PythonException('builtins.OSError', (v as PythonException).args) : v),
};

describe(`dumps writes CPython ${golden.python}'s bytes`, () => {
  for (const group of ['builtin', 'stdlib', 'random'] as const) {
    test(`${group} corpus, protocols 0-5`, () => {
      const failures: string[] = [];
      let checked = 0;
      for (const c of golden.cases.filter((x) => x.group === group)) {
        c.pickles.forEach((want, protocol) => {
          if (want === null) return;
          let got: Uint8Array;
          try {
            got = dumps(buildValue(c.desc), { protocol });
          } catch (e) {
            failures.push(`${c.name} p${protocol}: threw ${(e as Error).message}`);
            return;
          }
          checked++;
          const diff = firstDifference(got, want);
          if (diff !== 'identical') failures.push(`${c.name} p${protocol}: ${diff}`);
        });
      }
      expect(failures.slice(0, 20)).toEqual([]);
      expect(checked).toBeGreaterThan(group === 'random' ? 1000 : 100);
    });
  }
});

describe('loads reads CPython pickles to the described value', () => {
  for (const group of ['builtin', 'stdlib', 'random'] as const) {
    test(`${group} corpus, protocols 0-5`, () => {
      const failures: string[] = [];
      for (const c of golden.cases.filter((x) => x.group === group)) {
        c.pickles.forEach((bytes, protocol) => {
          if (bytes === null) return;
          const built = buildValue(c.desc);
          const want = LOSSY[c.name]?.(built, protocol) ?? built;
          try {
            const diff = pyDiff(loads(bytes, { floats: 'wrap-integral' }), want);
            if (diff !== null) failures.push(`${c.name} p${protocol}: ${diff}`);
          } catch (e) {
            failures.push(`${c.name} p${protocol}: threw ${(e as Error).message}`);
          }
        });
      }
      expect(failures.slice(0, 20)).toEqual([]);
    });
  }
});

describe('objects of unregistered classes re-pickle to the same bytes', () => {
  for (const c of golden.opaque) {
    test(c.notIdentical ? `${c.name} (an equal value: ${c.notIdentical})` : c.name, () => {
      let checked = 0;
      c.pickles.forEach((bytes, protocol) => {
        if (bytes === null) return;
        const value = loads(bytes, { floats: 'wrap-integral' });
        const got = dumps(value, { protocol });
        if (c.notIdentical) expect(pyDiff(loads(got, { floats: 'wrap-integral' }), value), `protocol ${protocol}`).toBeNull();
        else expect(firstDifference(got, bytes), `protocol ${protocol}`).toBe('identical');
        checked++;
      });
      expect(checked).toBeGreaterThan(0);
    });
  }
});
