/**
 * Micro-benchmarks behind the tuning of src/pickle (not part of `npm run
 * bench`, which needs Python). Run with plain node on a compiled build for
 * numbers that match production, or through tsx:
 *
 *   npx tsx bench/micro-pickle.ts                 dumps and loads of the benchmark payload
 *   npx tsx bench/micro-pickle.ts parts           the building blocks compared in comments of src/pickle
 *   npx tsx bench/micro-pickle.ts small           the protocol messages of a pool and a manager, beside
 *                                                 CPython's C pickler in the same run (BILLIARD_PYTHON, else python3)
 *   npx tsx bench/micro-pickle.ts --calls 400     samples per cell (default 300)
 *   npx tsx bench/micro-pickle.ts --p2            protocol 2 as well as 4
 *
 * The payload is bench/pickle.ts's: 10,000 rows of {'id', 'name', 'score',
 * 'tags', 'blob', 'big'}, built here in JavaScript (scores as PyFloat, so that
 * dumps writes the 568,789 bytes CPython writes for the 2**40 variant). Each cell prints the min and median of
 * single-call times and the CPU time per call (all threads, GC included).
 * This machine is noisy: compare builds by running them alternately several
 * times, not by one run.
 */

import { spawnSync } from 'node:child_process';

import { dumps, loads, PyFloat, tuple } from '../src/pickle/index.js';

const args = process.argv.slice(2);
const callsAt = args.indexOf('--calls');
const CALLS = callsAt >= 0 ? Number(args[callsAt + 1]) : 300;
const ROWS = 10_000;

function payload(big: 'big40' | 'big70'): unknown[] {
  // CPython folds b'\x00' * 16 into one constant: every row holds the same bytes object.
  const blob = new Uint8Array(16);
  const rows: unknown[] = [];
  for (let i = 0; i < ROWS; i++) {
    rows.push({
      id: i,
      name: `user${i}`,
      score: new PyFloat(i * 1.5),
      tags: ['a', 'b'],
      blob,
      big: big === 'big40' ? 2 ** 40 + i : 2n ** 70n + BigInt(i),
    });
  }
  return rows;
}

function time(label: string, fn: () => unknown, calls = CALLS): void {
  for (let i = 0; i < Math.max(50, calls / 4); i++) fn();
  const samples: number[] = [];
  const cpu0 = process.cpuUsage();
  for (let i = 0; i < calls; i++) {
    const t0 = process.hrtime.bigint();
    fn();
    samples.push(Number(process.hrtime.bigint() - t0) / 1e6);
  }
  const cpu = process.cpuUsage(cpu0);
  samples.sort((a, b) => a - b);
  const f = (x: number): string => x.toFixed(3).padStart(7);
  console.log(
    `${label.padEnd(34)} min ${f(samples[0]!)} ms  median ${f(samples[samples.length >> 1]!)} ms  cpu ${f((cpu.user + cpu.system) / 1e3 / calls)} ms`,
  );
}

function whole(): void {
  const protocols = args.includes('--p2') ? [2, 4] : [4];
  for (const variant of ['big40', 'big70'] as const) {
    const value = payload(variant);
    for (const protocol of protocols) {
      const bytes = dumps(value, { protocol });
      time(`dumps ${variant} p${protocol} (${bytes.length} B)`, () => dumps(value, { protocol }));
      time(`loads ${variant} p${protocol}`, () => loads(bytes));
    }
  }
}

/** Rows as loads makes them: null-prototype objects. */
function nullProtoRows(): Record<string, unknown>[] {
  const rows: Record<string, unknown>[] = [];
  for (let i = 0; i < ROWS; i++) {
    const d = {} as Record<string, unknown>;
    Object.setPrototypeOf(d, null);
    Object.assign(d, { id: i, name: `user${i}`, score: i * 1.5, tags: ['a'], blob: null, big: i });
    rows.push(d);
  }
  return rows;
}

function parts(): void {
  // Dict iteration (src/pickle/pickler.ts #saveObjectDict).
  const rows = nullProtoRows();
  const hasOwn = Object.prototype.hasOwnProperty;
  const scratchKeys: string[] = [];
  const scratchValues: unknown[] = [];
  let sink = 0;
  time('dict items: Object.keys + values', () => {
    for (const d of rows) {
      const k = Object.keys(d);
      const v = Object.values(d);
      for (let i = 0; i < k.length; i++) if (v[i] !== undefined) sink += k[i]!.length;
    }
  });
  time('dict items: for-in into scratch', () => {
    for (const d of rows) {
      let n = 0;
      for (const k in d) {
        if (!hasOwn.call(d, k)) continue;
        scratchKeys[n] = k;
        scratchValues[n] = d[k];
        n++;
      }
      for (let i = 0; i < n; i++) if (scratchValues[i] !== undefined) sink += scratchKeys[i]!.length;
    }
  });

  // The data-string memo: a dump's lookups, each name missing once, then 'a'
  // and 'b' found. An open-addressing table in the pickler was tried and
  // dropped: no faster than the Map inside whole dumps.
  const names = rows.map((r) => r.name as string);
  const seq: string[] = [];
  for (const n of names) seq.push(n, 'a', 'b');
  const map = new Map<string, number>();
  let base = 1;
  time('string memo: Map get + set', () => {
    base += seq.length;
    let idx = 0;
    for (const s of seq) {
      const v = map.get(s);
      if (v !== undefined && v >= base) sink += v;
      else map.set(s, base + idx++);
    }
  });
  const slots = 1 << 15;
  const keys = new Array<string>(slots).fill('');
  const hashes = new Int32Array(slots);
  const stamps = new Float64Array(slots);
  time('string memo: open addressing', () => {
    base += seq.length;
    let idx = 0;
    const mask = slots - 1;
    for (const s of seq) {
      let h = 0x811c9dc5 ^ s.length;
      for (let i = 0; i < s.length; i++) h = Math.imul(h ^ s.charCodeAt(i), 0x01000193);
      h = Math.imul(h ^ (h >>> 16), 0x85ebca6b);
      h ^= h >>> 13;
      let j = h & mask;
      for (;;) {
        const stamp = stamps[j]!;
        if (stamp < base) {
          keys[j] = s;
          hashes[j] = h;
          stamps[j] = base + idx++;
          break;
        }
        if (hashes[j] === h && keys[j] === s) {
          sink += stamp;
          break;
        }
        j = (j + 1) & mask;
      }
    }
  });
  if (sink === 42) console.log('');
}

/**
 * The messages every pool job and manager call pickles: a READY, an ACK (with
 * the monotonic time, a float) and a manager request. ns per call over
 * 600,000 calls (the three in turn), beside CPython's pickle on the same
 * three, run from here so that both sides share the machine's state.
 */
function small(): void {
  const values = [tuple(1, tuple(12, null, tuple(true, 144), 7)), tuple(0, tuple(12, null, new PyFloat(123456.789), 4242, null)), tuple('7f0a', '__getitem__', tuple('key'), {})];
  const pickles = values.map((v) => dumps(v));
  const N = 600_000;
  const rate = (fn: (k: number) => unknown): number => {
    for (let k = 0; k < N / 4; k++) fn(k % 3);
    const t = process.hrtime.bigint();
    for (let k = 0; k < N; k++) fn(k % 3);
    return Number(process.hrtime.bigint() - t) / N;
  };
  const py = `
import pickle, time
objs = [(1, (12, None, (True, 144), 7)), (0, (12, None, 123456.789, 4242, None)), ('7f0a', '__getitem__', ('key',), {})]
ps = [pickle.dumps(o, 4) for o in objs]
N = ${N}
def rate(fn):
    for k in range(N // 4): fn(k % 3)
    t = time.perf_counter_ns()
    for k in range(N): fn(k % 3)
    return (time.perf_counter_ns() - t) / N
loop = rate(lambda k: None)
print(rate(lambda k: pickle.dumps(objs[k], 4)) - loop, rate(lambda k: pickle.loads(ps[k])) - loop)
`;
  const python = process.env.BILLIARD_PYTHON ?? 'python3';
  for (let round = 0; round < 3; round++) {
    const jsLoop = rate(() => undefined);
    const jsDumps = rate((k) => dumps(values[k])) - jsLoop;
    const jsLoads = rate((k) => loads(pickles[k]!)) - jsLoop;
    const r = spawnSync(python, ['-c', py], { encoding: 'utf8' });
    if (r.status !== 0) throw new Error(`${python} failed: ${r.stderr}`);
    const [pyDumps, pyLoads] = r.stdout.trim().split(/\s+/).map(Number) as [number, number];
    console.log(
      `round ${round + 1}: dumps ${jsDumps.toFixed(0)} ns (CPython ${pyDumps.toFixed(0)} ns, ${(pyDumps / jsDumps).toFixed(2)}x)  loads ${jsLoads.toFixed(0)} ns (CPython ${pyLoads.toFixed(0)} ns, ${(pyLoads / jsLoads).toFixed(2)}x)`,
    );
  }
}

if (args.includes('parts')) parts();
else if (args.includes('small')) small();
else whole();
