/**
 * The pool worker (src/pool/worker.ts) driven over raw SimpleQueues, as a
 * pool drives it: billiard's TASK frames in, ACK / READY / DEATH out, the
 * chunk runners, failures as billiard's ExceptionInfo (which real billiard
 * unpickles), and the exit codes (0 on the sentinel, 155 after maxtasks).
 */
import { spawnSync } from 'node:child_process';

import { describe, expect, test } from 'vitest';

import { dumps, loads, Process, PyFloat, PyGlobal, PyTuple, SimpleQueue, tuple } from '../src/index.js';
import { ValueError } from '../src/process/errors.js';
import { ACK, ackFields, decodeAck, decodeReady, DEATH, encodeAckFrame, encodeReadyFrame, encodeTask, frameScratch, ExceptionInfo, funcRef, MAPSTAR, poolRegistry, READY, readyFields, RemoteTraceback, STARMAPSTAR } from '../src/pool/protocol.js';
import { poolWorker } from '../src/pool/worker.js';
import { add, boom, square, unpicklable } from './fixtures/pool-targets.js';
import { pythonFor } from './helpers/peers.js';

const hex = (b: Uint8Array): string => Buffer.from(b).toString('hex');
const registry = poolRegistry();

async function next(q: SimpleQueue): Promise<PyTuple> {
  return loads(await q.getPayload(), { registry }) as PyTuple;
}

function startWorker(maxtasks: number | null): { p: Process; inq: SimpleQueue; outq: SimpleQueue; raw: Uint8Array[] } {
  const inq = new SimpleQueue();
  const outq = new SimpleQueue();
  const p = new Process({ target: poolWorker, args: [inq, outq, null, [], maxtasks], daemon: true });
  p.start();
  return { p, inq, outq, raw: [] };
}

/** `good` cut at every length, with a byte added, and with each byte changed to each other value. */
function mutations(good: Uint8Array): Uint8Array[] {
  const variants: Uint8Array[] = [Uint8Array.of(...good, 0x2e)];
  for (let n = 0; n < good.length; n++) variants.push(good.subarray(0, n));
  for (let at = 0; at < good.length; at++) {
    for (let v = 0; v < 256; v++) {
      if (v === good[at]) continue;
      const b = good.slice();
      b[at] = v;
      variants.push(b);
    }
  }
  return variants;
}

/** The body of a pool message `(kind, body)` of `fields` fields, as the unpickler reads `b`; null for anything else. */
function bodyOf(b: Uint8Array, kind: number, fields: number): PyTuple | null {
  let m: unknown;
  try {
    m = loads(b);
  } catch {
    return null;
  }
  if (!(m instanceof PyTuple) || m.length !== 2 || m[0] !== kind || !(m[1] instanceof PyTuple) || m[1].length !== fields) return null;
  return m[1];
}

/** How many mutations of `goods` `decode` reads; each one it reads must read as `unpickle` reads it. */
function agreeing(goods: Uint8Array[], decode: (b: Uint8Array) => unknown, unpickle: (b: Uint8Array) => unknown): number {
  let decoded = 0;
  for (const good of goods) {
    for (const b of mutations(good)) {
      const fast = decode(b);
      if (fast === null) continue;
      decoded++;
      expect(fast).toEqual(unpickle(b));
    }
  }
  return decoded;
}

describe('decodeAck: the usual bytes of an ACK, read without the unpickler', () => {
  /** What the unpickler makes of `b` as an ACK's (job, i, time), or null when it is no ACK. */
  const viaLoads = (b: Uint8Array): [unknown, unknown, unknown] | null => {
    const body = bodyOf(b, ACK, 5);
    if (body === null) return null;
    // The pool takes an integral time (a PyFloat by default) as its number.
    const t = body[2];
    return [body[0], body[1], t instanceof PyFloat ? t.value : t];
  };
  const viaDecode = (b: Uint8Array): [unknown, unknown, unknown] | null => (decodeAck(b) ? [ackFields.job, ackFields.i, ackFields.time] : null);

  const cases: Array<[number, number | null, number, number, number | null]> = [
    [0, null, 1234.5678, 4242, null],
    [255, 0, 0.25, 1, 7],
    [256, 65535, 98765.4321, 65536, 65535],
    [2 ** 31 - 1, 2 ** 20, 1e-9, 2 ** 31 - 1, 3],
  ];

  test("a billiard-ts worker's ACK and CPython's at protocols 4 and 5 are read as the unpickler reads them; protocol 2 and 3 go to the unpickler", () => {
    for (const [job, i, t, pid, fd] of cases) {
      const b = dumps(tuple(ACK, tuple(job, i, t, pid, fd)));
      expect(viaDecode(b)).toEqual([job, i, t]);
      expect(viaDecode(b)).toEqual(viaLoads(b));
    }
    const script = [
      'import pickle, sys, json',
      'for job, i, t, pid, fd in json.loads(sys.argv[1]):',
      '    print(" ".join(pickle.dumps((0, (job, i, t, pid, fd)), protocol=p).hex() for p in (2, 3, 4, 5)))',
    ].join('\n');
    const r = spawnSync(pythonFor('3.11'), ['-c', script, JSON.stringify(cases)], { encoding: 'utf8' });
    expect(r.stderr).toBe('');
    const lines = r.stdout.trim().split('\n');
    expect(lines.length).toBe(cases.length);
    lines.forEach((line, k) => {
      const [p2, p3, p4, p5] = line.split(' ').map((h) => new Uint8Array(Buffer.from(h, 'hex')));
      const [job, i, t] = cases[k]!;
      expect(viaDecode(p4!)).toEqual([job, i, t]);
      expect(viaDecode(p5!)).toEqual([job, i, t]);
      expect(viaDecode(p2!)).toBeNull();
      expect(viaDecode(p3!)).toBeNull();
      expect(viaLoads(p2!)).toEqual([job, i, t]);
    });
  });

  test('no byte changed, cut or added makes it read an ACK the unpickler would not read the same way', () => {
    const decoded = agreeing(
      cases.map(([job, i, t, pid, fd]) => dumps(tuple(ACK, tuple(job, i, t, pid, fd)))),
      viaDecode,
      viaLoads,
    );
    // Changes inside the ints and the float still read (and agree); the test would be empty without them.
    expect(decoded).toBeGreaterThan(1000);
  });
});

describe('decodeReady: a READY of a plain value, read without the unpickler', () => {
  const viaLoads = (b: Uint8Array): unknown[] | null => {
    const body = bodyOf(b, READY, 4);
    if (body === null) return null;
    const [job, i, outcome, fd] = body as unknown as [unknown, unknown, unknown, unknown];
    if (!(outcome instanceof PyTuple) || outcome.length !== 2 || outcome[0] !== true) return null;
    return [job, i, outcome[1], fd];
  };
  const viaDecode = (b: Uint8Array): unknown[] | null => (decodeReady(b) ? [readyFields.job, readyFields.i, readyFields.value, readyFields.fd] : null);
  const values: unknown[] = [null, true, false, 0, 255, 256, 65535, 65536, -1, 2 ** 31 - 1, -(2 ** 31), 1.5, -2.25e-300, new PyFloat(2), new PyFloat(-0), Infinity, NaN];
  const frames = (): Uint8Array[] => values.flatMap((v, k) => [dumps(tuple(READY, tuple(k, null, tuple(true, v), null))), dumps(tuple(READY, tuple(70000 + k, k, tuple(true, v), 9)))]);

  test("a billiard-ts worker's READY and CPython's at protocols 4 and 5 are read as the unpickler reads them; other values, failures and protocols 2 and 3 go to the unpickler", () => {
    for (const b of frames()) {
      expect(viaDecode(b)).not.toBeNull();
      expect(viaDecode(b)).toEqual(viaLoads(b));
    }
    for (const other of ['a string', 2 ** 40, [1, 2], tuple(1, 2), new Uint8Array(3)]) {
      const b = dumps(tuple(READY, tuple(1, null, tuple(true, other), null)));
      expect(viaDecode(b)).toBeNull();
      expect(viaLoads(b)).not.toBeNull();
    }
    expect(viaDecode(dumps(tuple(READY, tuple(1, null, tuple(false, null), null))))).toBeNull();
    expect(viaDecode(dumps(tuple(ACK, tuple(1, null, 0.5, 2, null))))).toBeNull();
    const script = [
      'import pickle',
      'for v in (None, True, False, 0, 255, 65535, -1, 2**31 - 1, -2**31, 1.5, 2.0, -0.0, float("inf")):',
      '    for job, i, fd in ((3, None, None), (70000, 12, 9)):',
      '        print(" ".join(pickle.dumps((1, (job, i, (True, v), fd)), protocol=p).hex() for p in (2, 3, 4, 5)))',
    ].join('\n');
    const r = spawnSync(pythonFor('3.11'), ['-c', script], { encoding: 'utf8' });
    expect(r.stderr).toBe('');
    const lines = r.stdout.trim().split('\n');
    expect(lines.length).toBe(26);
    for (const line of lines) {
      const [p2, p3, p4, p5] = line.split(' ').map((h) => new Uint8Array(Buffer.from(h, 'hex')));
      expect(viaDecode(p4!)).not.toBeNull();
      expect(viaDecode(p4!)).toEqual(viaLoads(p4!));
      expect(viaDecode(p5!)).toEqual(viaLoads(p5!));
      expect(viaDecode(p2!)).toBeNull();
      expect(viaDecode(p3!)).toBeNull();
    }
  });

  test('no byte changed, cut or added makes it read a READY the unpickler would not read the same way', () => {
    expect(agreeing(frames(), viaDecode, viaLoads)).toBeGreaterThan(5000);
  });
});

describe("a worker's ACK and plain READY frames, written without the pickler", () => {
  /** The frame Connection.send writes for `msg`: 4-byte big-endian length, then the protocol-4 pickle. */
  const frameOf = (msg: unknown): string => {
    const p = dumps(msg);
    const h = Buffer.alloc(4);
    h.writeInt32BE(p.length);
    return h.toString('hex') + Buffer.from(p).toString('hex');
  };
  /** The frame an encoder wrote (its length returned), as hex; null when it wrote none (0). */
  const written = (n: number): Uint8Array | null => (n === 0 ? null : frameScratch.slice(0, n));
  const hex = (n: number): string | null => (n === 0 ? null : Buffer.from(frameScratch.subarray(0, n)).toString('hex'));
  const INTS = [0, 1, 255, 256, 65535, 65536, 2 ** 31 - 1, -1, -256, -(2 ** 31)];
  const TIMES = [0.5, 1234.5678, 98765.4321, 1e-9, 12345, 1e300, -2.5];
  const VALUES: unknown[] = [null, true, false, 0, 7, 300, 70000, -5, 2 ** 31 - 1, 1.5, -0.25, 3e-300, -0];
  /** Whether the encoder writes `v` itself: None, a 32-bit int, or a finite float that is not integral (-0.0 included). */
  const fits = (v: unknown): boolean =>
    v === null || (typeof v === 'number' && (Number.isInteger(v) && !Object.is(v, -0) ? v >= -(2 ** 31) && v < 2 ** 31 : Number.isFinite(v)));

  test('the same bytes as the pickler writes, for every int size, None, integral and fractional times, and every plain value', () => {
    let n = 0;
    for (const job of INTS) {
      for (const i of [null, ...INTS]) {
        for (const t of TIMES) {
          const fd = n % 3 === 0 ? null : INTS[n % INTS.length]!;
          const pid = INTS[(n * 7) % INTS.length]!;
          const ack = encodeAckFrame(job, i, t, pid, fd);
          // A time beyond 32 bits that is integral (1e300) is an int to the pickler: left to it.
          if (!fits(t)) expect(ack).toBe(0);
          else expect(hex(ack), `ACK ${job} ${i} ${t} ${pid} ${fd}`).toBe(frameOf(tuple(ACK, tuple(job, i, t, pid, fd))));
          n++;
        }
        for (const v of VALUES) {
          const fd = n % 3 === 0 ? null : INTS[n % INTS.length]!;
          expect(hex(encodeReadyFrame(job, i, v, fd)), `READY ${job} ${i} ${String(v)} ${fd}`).toBe(frameOf(tuple(READY, tuple(job, i, tuple(true, v), fd))));
          n++;
        }
      }
    }
    expect(n).toBeGreaterThan(2000);
  });

  test('fields it does not write are left to the pickler (0)', () => {
    expect(encodeAckFrame(2 ** 31, null, 1.5, 7, null)).toBe(0);
    expect(encodeAckFrame(1, null, Number.NaN, 7, null)).toBe(0);
    expect(encodeAckFrame(1, null, Infinity, 7, null)).toBe(0);
    expect(encodeAckFrame(1, -0, 1.5, 7, null)).toBe(0);
    expect(encodeAckFrame('1' as never, null, 1.5, 7, null)).toBe(0);
    for (const v of [undefined, 'text', 2 ** 31, 2n, Number.NaN, -Infinity, new PyFloat(2), [1], { a: 1 }]) expect(encodeReadyFrame(1, null, v, 3), String(v)).toBe(0);
  });

  test("CPython's pickle of the same messages has the same bytes; decodeAck and decodeReady read them", () => {
    const acks: Array<[number, number | null, number, number, number | null]> = [
      [0, null, 1234.5678, 4242, null],
      [65536, 300, 0.001, 70000, 9],
      [-1, 0, 12345, 1, null],
    ];
    const readies: Array<[number, number | null, unknown, number | null]> = [
      [3, null, null, 5],
      [256, 2, true, 5],
      [70000, null, false, null],
      [9, 1, -70000, 5],
      [10, null, 2.75, 11],
    ];
    const script = [
      'import pickle, struct, sys, json',
      'acks, readies = json.loads(sys.argv[1])',
      'frame = lambda o: (lambda p: (struct.pack(">i", len(p)) + p).hex())(pickle.dumps(o, protocol=4))',
      'for job, i, t, pid, fd in acks: print(frame((0, (job, i, t, pid, fd))))',
      'for job, i, v, fd in readies: print(frame((1, (job, i, (True, v), fd))))',
    ].join('\n');
    const r = spawnSync(pythonFor('3.11'), ['-c', script, JSON.stringify([acks, readies])], { encoding: 'utf8' });
    expect(r.stderr).toBe('');
    const lines = r.stdout.trim().split('\n');
    expect(lines.length).toBe(acks.length + readies.length);
    acks.forEach(([job, i, t, pid, fd], k) => {
      // CPython writes an integral float time as BINFLOAT; a JavaScript number that is integral is an int.
      if (Number.isInteger(t)) return;
      const ours = written(encodeAckFrame(job, i, t, pid, fd))!;
      expect(Buffer.from(ours).toString('hex')).toBe(lines[k]);
      expect(decodeAck(ours.subarray(4))).toBe(true);
      expect([ackFields.job, ackFields.i, ackFields.time]).toEqual([job, i, t]);
    });
    readies.forEach(([job, i, v, fd], k) => {
      const ours = written(encodeReadyFrame(job, i, v, fd))!;
      expect(Buffer.from(ours).toString('hex')).toBe(lines[acks.length + k]);
      expect(decodeReady(ours.subarray(4))).toBe(true);
      expect([readyFields.job, readyFields.i, readyFields.value, readyFields.fd]).toEqual([job, i, v, fd]);
    });
  });
});

describe('pool protocol frames', () => {
  test("a TASK is billiard's bytes: apply_async(tasks.add, (2, 3)) as job 0 (spec/pool.md §2.3)", () => {
    expect(hex(encodeTask(0, null, new PyGlobal('tasks', 'add'), [2, 3], null))).toBe(
      '80049523000000000000004b02284b004e8c057461736b73948c036164649493944b024b0386947d94749486942e',
    );
    expect(hex(encodeTask(1, 0, MAPSTAR, [tuple(tuple(new PyGlobal('tasks', 'sq'), tuple(1, 2)))][0], null))).toBe(
      '80049543000000000000004b02284b014b008c0d62696c6c696172642e706f6f6c948c076d6170737461729493948c057461736b73948c0273719493944b014b028694869485947d94749486942e',
    );
  });
});

describe('the pool worker', () => {
  test('ACK then READY per job, mapstar/starmapstar chunks, a failure as ExceptionInfo, DEATH and exit 155 after maxtasks', async () => {
    const { p, inq, outq } = startWorker(4);
    await inq.sendPayload(encodeTask(0, null, funcRef(square), [7], null));
    await inq.sendPayload(encodeTask(1, 0, MAPSTAR, [tuple(funcRef(square), tuple(1, 2, 3))], null));
    await inq.sendPayload(encodeTask(2, 1, STARMAPSTAR, [tuple(funcRef(add), tuple(tuple(1, 2), tuple(3, 4)))], null));
    await inq.sendPayload(encodeTask(3, null, funcRef(boom), ['bad'], null));
    const pid = await p.spawned;
    const ack = await next(outq);
    expect(ack[0]).toBe(ACK);
    expect([...(ack[1] as PyTuple)].slice(0, 2)).toEqual([0, null]);
    expect(typeof (ack[1] as PyTuple)[2]).toBe('number');
    expect((ack[1] as PyTuple)[3]).toBe(pid);
    expect((ack[1] as PyTuple)[4]).toBe(null);
    const ready = await next(outq);
    expect(ready[0]).toBe(READY);
    expect([...(ready[1] as PyTuple)].slice(0, 3)).toEqual([0, null, tuple(true, 49)]);
    expect(typeof (ready[1] as PyTuple)[3]).toBe('number');
    expect((await next(outq))[0]).toBe(ACK);
    expect([...((await next(outq))[1] as PyTuple)].slice(0, 3)).toEqual([1, 0, tuple(true, [1, 4, 9])]);
    expect((await next(outq))[0]).toBe(ACK);
    expect([...((await next(outq))[1] as PyTuple)].slice(0, 3)).toEqual([2, 1, tuple(true, [3, 7])]);
    expect((await next(outq))[0]).toBe(ACK);
    const failed = (await next(outq))[1] as PyTuple;
    const [ok, einfo] = failed[2] as PyTuple;
    expect(ok).toBe(false);
    expect(einfo).toBeInstanceOf(ExceptionInfo);
    const info = einfo as ExceptionInfo;
    expect(info.exception).toBeInstanceOf(ValueError);
    expect((info.exception as Error).message).toContain('bad');
    expect((info.exception as Error).cause).toBeInstanceOf(RemoteTraceback);
    expect(info.traceback).toMatch(/^Traceback \(most recent call last\):\n/);
    expect(info.traceback).toMatch(/File ".*pool-targets\.ts", line \d+, in boom\n/);
    expect(info.traceback).toMatch(/ValueError: bad\n$/);
    expect([...(await next(outq))]).toEqual([DEATH, tuple(pid, 155)]);
    await p.join(20);
    expect(p.exitcode).toBe(155);
  });

  test('a failure READY unpickles in real billiard as the exception with its traceback text; an unpicklable result is MaybeEncodingError', async () => {
    const { p, inq, outq } = startWorker(null);
    await inq.sendPayload(encodeTask(5, null, funcRef(boom), ['boom'], null));
    await inq.sendPayload(encodeTask(6, null, funcRef(unpicklable), [], null));
    await inq.sendPayload(new Uint8Array([0x80, 0x04, 0x4e, 0x2e])); // None: exit
    const frames: Uint8Array[] = [];
    for (let k = 0; k < 5; k++) frames.push(await outq.getPayload());
    const enc = loads(frames[3], { registry }) as PyTuple;
    const encInfo = ((enc[1] as PyTuple)[2] as PyTuple)[1] as ExceptionInfo;
    expect((encInfo.exception as Error).name).toBe('MaybeEncodingError');
    expect((encInfo.exception as Error).message).toMatch(/^Error sending result: /);
    expect((loads(frames[4]) as PyTuple)[0]).toBe(DEATH);
    await p.join(20);
    expect(p.exitcode).toBe(0);
    const script = [
      'import pickle, sys',
      'for h in sys.argv[1:]:',
      '    kind, (job, i, (ok, einfo), fd) = pickle.loads(bytes.fromhex(h))',
      '    exc = einfo.exception',
      '    print(type(einfo).__name__, type(exc).__module__ + "." + type(exc).__name__, str(exc), type(exc.__cause__).__name__, einfo.traceback.splitlines()[-1])',
    ].join('\n');
    const r = spawnSync(pythonFor('3.11'), ['-c', script, hex(frames[1]), hex(frames[3])], { encoding: 'utf8' });
    expect(r.stderr).toBe('');
    const lines = r.stdout.trim().split('\n');
    expect(lines[0]).toBe('ExceptionInfo builtins.ValueError boom RemoteTraceback ValueError: boom');
    expect(lines[1]).toMatch(/^ExceptionInfo billiard\.pool\.MaybeEncodingError Error sending result: .* RemoteTraceback billiard\.pool\.MaybeEncodingError: Error sending result: /);
  });

  test("a READY from billiard's own worker code (a full ExceptionInfo with its traceback chain) loads as the exception with its RemoteTraceback", () => {
    const script = [
      'import pickle',
      'from billiard.einfo import ExceptionInfo',
      'def f(): raise KeyError("missing")',
      'try:',
      '    f()',
      'except Exception:',
      '    ei = ExceptionInfo()',
      'print(pickle.dumps((1, (3, None, (False, ei), 4)), protocol=4).hex())',
    ].join('\n');
    const r = spawnSync(pythonFor('3.11'), ['-c', script], { encoding: 'utf8' });
    expect(r.stderr).toBe('');
    const msg = loads(Buffer.from(r.stdout.trim(), 'hex'), { registry }) as PyTuple;
    const [job, i, [ok, einfo]] = msg[1] as unknown as [number, null, [boolean, ExceptionInfo]];
    expect([msg[0], job, i, ok]).toEqual([READY, 3, null, false]);
    expect(einfo).toBeInstanceOf(ExceptionInfo);
    expect((einfo.exception as { pyType: string }).pyType).toBe('builtins.KeyError');
    expect((einfo.exception as Error).cause).toBeInstanceOf(RemoteTraceback);
    expect(einfo.traceback).toMatch(/, in f\n/);
    expect(einfo.traceback).toMatch(/KeyError: 'missing'\n?$/);
  });
});
