/**
 * Strings of every length from 0 to 40 bytes, decoded as CPython decodes
 * them (UTF-8 with surrogatepass). Short ones take src/pickle/utf8.ts's
 * one-step ASCII path (up to 16 bytes), then a scan (up to 31), then
 * TextDecoder: a byte that is not ASCII at any position of any length must
 * send the string to the general decoder, and bytes that are not UTF-8 must
 * fail as they fail in CPython. Real CPython makes the pickles and says what
 * each one loads to.
 */
import { execFileSync } from 'node:child_process';

import { expect, test } from 'vitest';

import { loads, UnpicklingError } from '../src/pickle/index.js';
import { pythonFor } from './helpers/peers.js';

const PY = String.raw`
import json, pickle
def case(raw):
    # SHORT_BINUNICODE at protocol 4, written by hand so that invalid UTF-8 can be given too
    data = b'\x80\x04\x8c' + bytes([len(raw)]) + raw + b'.'
    try:
        out = {'value': pickle.loads(data)}
    except UnicodeDecodeError:
        out = {'error': 'UnicodeDecodeError'}
    out['hex'] = data.hex()
    print(json.dumps(out))
inserts = [b'\xc3\xa9', b'\xe2\x82\xac', b'\xf0\x9f\x98\x80', b'\xed\xa0\x80',  # é, €, an emoji, a lone surrogate
           b'\x80', b'\xff', b'\xc3', b'\xe2\x82', b'\xed\xa0']                  # not UTF-8 (cut short, or a bad start)
for n in range(0, 41):
    base = bytes(0x61 + (i % 26) for i in range(n))
    case(base)
    for pos in range(n + 1):
        for ins in inserts:
            raw = (base[:pos] + ins + base[pos:])[:max(n, len(ins))]
            case(raw)
`;

test('every length and position: the string CPython loads, or its decode error', () => {
  const lines = execFileSync(pythonFor('3.11'), ['-c', PY], { encoding: 'utf8', maxBuffer: 64 * 1024 * 1024 }).trim().split('\n');
  expect(lines.length).toBeGreaterThan(4000);
  let decoded = 0;
  let refused = 0;
  for (const line of lines) {
    const c = JSON.parse(line) as { hex: string; value?: string; error?: string };
    const bytes = Uint8Array.from(Buffer.from(c.hex, 'hex'));
    if (c.error === undefined) {
      expect(loads(bytes), c.hex).toBe(c.value);
      decoded++;
    } else {
      let err: unknown;
      try {
        loads(bytes);
      } catch (e) {
        err = e;
      }
      expect(err, c.hex).toBeInstanceOf(UnpicklingError);
      expect((err as UnpicklingError).code, c.hex).toBe('DECODE');
      refused++;
    }
  }
  // Both outcomes were exercised at every length class.
  expect(decoded).toBeGreaterThan(1000);
  expect(refused).toBeGreaterThan(1000);
});
