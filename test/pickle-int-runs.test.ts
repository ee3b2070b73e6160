/**
 * Lists and tuples of ints: the pickler writes 32-bit ints among a list's or
 * a tuple's items without going through its general dispatch
 * (src/pickle/pickler.ts, #saveItems). The bytes must stay CPython's, at
 * every protocol: each int opcode's range, the ints around them that are
 * not 32-bit (floats, -0.0, bools, big ints), and the frames of protocol 4+
 * that a long list spans; and persistent_id, which sees every item.
 */
import { execFileSync } from 'node:child_process';

import { describe, expect, test } from 'vitest';

import { dumps, tuple } from '../src/pickle/index.js';
import { pythonFor } from './helpers/peers.js';

const EDGES = [0, 1, 127, 128, 255, 256, 65535, 65536, -1, -255, -256, -65535, -65536, 2 ** 31 - 1, -(2 ** 31), 2 ** 31, -(2 ** 31) - 1, 2 ** 40, -0, 1.5, 'a', null, true, false];

const PY = String.raw`
import io, pickle, sys
edges = [0, 1, 127, 128, 255, 256, 65535, 65536, -1, -255, -256, -65535, -65536, 2**31 - 1, -2**31, 2**31, -2**31 - 1, 2**40, -0.0, 1.5, 'a', None, True, False]
long = list(range(-30000, 30000, 7)) + [2**31 - 1, 65536, 255] * 3000
for proto in range(0, 6):
    print(pickle.dumps(edges, proto).hex(), pickle.dumps(tuple(edges), proto).hex(), pickle.dumps(long, proto).hex(), pickle.dumps(tuple(long), proto).hex())
class Seven(pickle.Pickler):
    def persistent_id(self, o):
        return 'seven' if type(o) is int and o == 7 else None
for proto in (1, 4):
    for v in ([1, 7, 2, 3], (1, 7, 2, 3)):
        f = io.BytesIO()
        Seven(f, proto).dump(v)
        print('persistent', f.getvalue().hex())
`;

describe('lists and tuples of ints: CPython 3.11 bytes', () => {
  test('edge values of each int opcode, among other items, and a long list across frames, at protocols 0-5', () => {
    const all = execFileSync(pythonFor('3.11'), ['-c', PY], { encoding: 'utf8', maxBuffer: 64 * 1024 * 1024 }).trim().split('\n');
    const lines = all.filter((l) => !l.startsWith('persistent '));
    expect(lines.length).toBe(6);
    const long: number[] = [];
    for (let x = -30000; x < 30000; x += 7) long.push(x);
    for (let k = 0; k < 3000; k++) long.push(2 ** 31 - 1, 65536, 255);
    lines.forEach((line, protocol) => {
      const [edges, edgesTuple, longList, longTuple] = line.split(' ');
      const hex = (v: unknown): string => Buffer.from(dumps(v, { protocol })).toString('hex');
      expect(hex(EDGES), `edges, protocol ${protocol}`).toBe(edges);
      expect(hex(tuple(...EDGES)), `edges tuple, protocol ${protocol}`).toBe(edgesTuple);
      expect(hex(long), `long list, protocol ${protocol}`).toBe(longList);
      expect(hex(Object.freeze(tuple(...long))), `long tuple, protocol ${protocol}`).toBe(longTuple);
    });
    // persistent_id is asked about every item, ints too.
    const persistentId = (o: unknown): unknown => (o === 7 ? 'seven' : undefined);
    const persistent = all.filter((l) => l.startsWith('persistent ')).map((l) => l.slice('persistent '.length));
    const ours = [1, 4].flatMap((protocol) => [[1, 7, 2, 3], tuple(1, 7, 2, 3)].map((v) => Buffer.from(dumps(v, { protocol, persistentId })).toString('hex')));
    expect(ours).toEqual(persistent);
  });
});
