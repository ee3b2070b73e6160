/**
 * loads() reads a pickle that is one small int, bool, None or short string
 * without building an Unpickler (src/pickle/unpickler.ts, quickScalar). It
 * must give exactly what the Unpickler gives: for CPython's own pickles of
 * such values at protocols 2 to 5, and for every truncation and every
 * one-byte change of them (value, or error class and message, the same).
 * Passing an options object ({}) takes the Unpickler's path.
 */
import { execFileSync } from 'node:child_process';

import { describe, expect, test } from 'vitest';

import { loads } from '../src/pickle/index.js';
import { NOT_SCALAR, quickScalar } from '../src/pickle/unpickler.js';
import { pythonFor } from './helpers/peers.js';

const PY = String.raw`
import pickle, sys
values = [0, 1, 5, 127, 128, 255, 256, 1000, 65535, 65536, -1, -128, -129, -2**31, 2**31 - 1, 2**31, 2**40,
          True, False, None, '', 'a', 'item-1234', 'é€😀', 'x' * 200, 'x' * 255, 'x' * 256, 'x' * 300,
          b'', b'ab', 1.5, 3.0, (), [], {}]
for v in values:
    for proto in (2, 3, 4, 5):
        print(pickle.dumps(v, proto).hex())
`;

function outcome(f: () => unknown): unknown {
  try {
    const v = f();
    return { value: v };
  } catch (e) {
    return { error: (e as Error).constructor.name, message: (e as Error).message };
  }
}

describe('loads() of small scalars', () => {
  const pickles = execFileSync(pythonFor('3.11'), ['-c', PY], { encoding: 'utf8' })
    .trim()
    .split('\n')
    .map((h) => Uint8Array.from(Buffer.from(h, 'hex')));

  test('CPython pickles load as the Unpickler loads them', () => {
    expect(pickles.length).toBe(35 * 4);
    for (const p of pickles) expect(outcome(() => loads(p))).toEqual(outcome(() => loads(p, {})));
    // The shortcut takes the ints that fit in 32 bits, the bools, None and
    // the strings of up to 255 bytes at protocols 4 and 5 (2 and 3 write
    // BINUNICODE and BINPUT); the rest go to the Unpickler.
    const taken = pickles.map((p) => quickScalar(p) !== NOT_SCALAR);
    const all = [true, true, true, true];
    const none = [false, false, false, false];
    const expected = [...Array(15).fill(all), none, none, all, all, all, ...Array(6).fill([false, false, true, true]), ...Array(9).fill(none)].flat();
    expect(taken).toEqual(expected);
  });

  test('every truncation and every one-byte change gives the Unpickler result', () => {
    let cases = 0;
    for (const p of pickles) {
      if (p.length > 40) continue;
      for (let n = 0; n < p.length; n++) {
        const cut = p.subarray(0, n);
        expect(outcome(() => loads(cut)), `${Buffer.from(cut).toString('hex')}`).toEqual(outcome(() => loads(cut, {})));
        cases++;
      }
      for (let i = 0; i < p.length; i++) {
        for (const b of [0x00, 0x01, 0x2e, 0x4b, 0x4d, 0x4a, 0x4e, 0x80, 0x88, 0x8c, 0x94, 0x95, 0xff, p[i]! ^ 0x01, p[i]! ^ 0x80]) {
          const q = Uint8Array.from(p);
          q[i] = b;
          expect(outcome(() => loads(q)), `${Buffer.from(q).toString('hex')}`).toEqual(outcome(() => loads(q, {})));
          cases++;
        }
      }
      // Trailing bytes after STOP are ignored, as in Python.
      const longer = Uint8Array.from([...p, 0x4b, 0x07]);
      expect(outcome(() => loads(longer))).toEqual(outcome(() => loads(longer, {})));
    }
    expect(cases).toBeGreaterThan(1000);
  });
});
