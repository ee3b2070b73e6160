/**
 * Mixed-pool benchmark (`npm run bench -- pool-interop`), issue 11's speed
 * goal, 2 workers each, in one run:
 *
 * | pair | ours | baseline |
 * | ---- | ---- | -------- |
 * | Python workers | a billiard-ts Pool (Node) of Python workers (billiard's Worker) | a billiard Pool (Python) of Python workers |
 * | Node workers   | a billiard Pool (compat/billiard_ts.py's NodePool) of Node workers | the same NodePool class with Python workers |
 * | (relay mode)   | a billiard Pool whose workers are Python relays to Node children (spec/pool.md §8a.5, a prototype in bench/py_pool_interop.py) | the same |
 *
 * The measure is 10,000 applyAsync of a trivial task (square) then get() of
 * each result in order, in tasks/s. Every implementation is a driver process
 * of its own that times its side and answers one JSON line per command:
 * `node bench/pool-interop-driver.mjs` (plain node on dist/, which this
 * benchmark builds first) and `python3 bench/py_pool_interop.py`. Each
 * starts its pool once (the start time is reported, not compared), runs one
 * untimed batch of 1,000, then the implementations take turns for
 * BENCH_ROUNDS rounds (at least 3), the order rotated each round. A cell is
 * the median of its rounds; the ratio is ours over the baseline's median
 * from the same run. Nothing asserts timings. The goal (issue 11) is for
 * the first pair: a billiard-ts Pool drives Python workers at >= 1.0x the
 * throughput of billiard's own Pool. The second pair is reported for
 * comparison.
 */

import { join } from 'node:path';

import { buildDist } from './dist.js';
import type { BenchRunOptions } from './run.js';

import { BILLIARD_INSTALL_COMMAND, findPython } from '../src/process/python.js';
import { JsonLineWorker } from './json-worker.js';
import { compileTargets } from './pool.js';
import { BENCH_DIR, machine, markdownTable, rate, rotations, ROOT, stats, writeResults, type Stats } from './sync-common.js';
import { fmt, formatTable, type Column } from './table.js';

const PROCESSES = 2;
const N = 10_000;
const WARM_N = 1_000;

interface Impl {
  id: string;
  label: string;
  /** The implementation it is compared with (null: it is a baseline). */
  against: string | null;
  /** Whether the issue sets a goal for it (>= 1.0x its baseline), or it is reported for comparison only. */
  goal: boolean;
  command: string[];
  worker?: JsonLineWorker;
  start?: number;
  samples: number[];
}

export async function run(options: BenchRunOptions): Promise<string> {
  const progress = options.progress;
  const rounds = Math.max(3, Math.floor(options.rounds));
  let python: string;
  try {
    python = await findPython();
  } catch (e) {
    throw new Error(`pool-interop needs a Python with billiard (${(e as Error).message}); on Debian, as root: ${BILLIARD_INSTALL_COMMAND}`);
  }
  buildDist(progress);
  const targets = join(compileTargets(), 'pool-targets.mjs');
  const py = (kind: string): string[] => [python, join(BENCH_DIR, 'py_pool_interop.py'), '--serve', kind, targets];
  const impls: Impl[] = [
    { id: 'ts-py', label: 'billiard-ts Pool -> Python workers', against: 'billiard-py', goal: true, command: [process.execPath, join(BENCH_DIR, 'pool-interop-driver.mjs'), '--serve', python], samples: [] },
    { id: 'billiard-py', label: 'billiard Pool -> Python workers', against: null, goal: false, command: py('billiard'), samples: [] },
    { id: 'nodepool-node', label: 'billiard NodePool -> Node workers', against: 'nodepool-py', goal: false, command: py('nodepool-node'), samples: [] },
    { id: 'nodepool-py', label: 'billiard NodePool -> Python workers', against: null, goal: false, command: py('nodepool-python'), samples: [] },
    { id: 'relay-node', label: 'billiard Pool -> Node workers behind relays', against: 'nodepool-py', goal: false, command: py('relay-node'), samples: [] },
  ];
  const loadBefore = Number(machine().loadavg1);
  try {
    for (const impl of impls) {
      progress(`starting ${impl.label}`);
      impl.worker = new JsonLineWorker(impl.command, impl.id, { cwd: ROOT });
      impl.start = (await impl.worker.request<{ seconds: number }>({ op: 'start', processes: PROCESSES })).seconds;
      await impl.worker.request({ op: 'apply', n: WARM_N });
    }
    for (const [round, impl] of rotations(impls, rounds)) {
      progress(`round ${round + 1}/${rounds}: ${impl.label}`);
      const { seconds } = await impl.worker!.request<{ seconds: number }>({ op: 'apply', n: N });
      impl.samples.push(N / seconds);
    }
  } catch (e) {
    console.error('pool-interop failed:', e);
    throw e;
  } finally {
    for (const impl of impls) impl.worker?.tell({ op: 'exit' });
    for (const impl of impls) await impl.worker?.exited;
  }
  progress('');
  const loadAfter = Number(machine().loadavg1);
  const byId = new Map(impls.map((i) => [i.id, i]));
  const cell = (impl: Impl): Stats => stats(impl.samples);
  const columns: Column[] = [
    { header: 'pool -> workers' },
    { header: 'tasks/s (median)', align: 'right' },
    { header: 'min', align: 'right' },
    { header: 'max', align: 'right' },
    { header: 'start (ms)', align: 'right' },
    { header: 'vs baseline (ours / baseline)', align: 'right' },
    { header: 'goal >= 1.0x', align: 'right' },
  ];
  const ratioOf = (impl: Impl): number | null => (impl.against === null ? null : cell(impl).median / cell(byId.get(impl.against)!).median);
  const rows = impls.map((impl) => {
    const s = cell(impl);
    const r = ratioOf(impl);
    return [impl.label, rate(s.median), rate(s.min), rate(s.max), fmt(impl.start! * 1000), r === null ? 'baseline' : `${fmt(r)}x`, !impl.goal ? (r === null ? '' : 'no goal') : r! >= 1 ? 'met' : 'MISSED'];
  });
  const header = [
    `${N.toLocaleString('en')} applyAsync(square, [i]) then every result, ${PROCESSES} workers, median of ${rounds} rounds (implementations alternate). Python ${python}; Node ${process.version}.`,
    `Load average ${fmt(loadBefore, 2)} before, ${fmt(loadAfter, 2)} after.`,
  ];
  const goals = impls.filter((i) => i.goal);
  const misses = goals.filter((i) => ratioOf(i)! < 1);
  const verdict =
    misses.length === 0
      ? `Goal (${goals.map((i) => i.label).join(', ')} >= 1.0x its baseline): met.`
      : `Goal (>= 1.0x the baseline): missed by ${misses.map((i) => `${i.label} (${fmt(ratioOf(i)!)}x)`).join(', ')}.`;
  const files = writeResults(
    'pool-interop',
    {
      benchmark: 'pool-interop',
      date: new Date().toISOString(),
      machine: machine(),
      python,
      settings: { processes: PROCESSES, n: N, warm: WARM_N, rounds },
      loadavg: [loadBefore, loadAfter],
      impls: impls.map((i) => ({ id: i.id, label: i.label, against: i.against, start: i.start, samples: i.samples.map(Math.round), ratio: ratioOf(i) })),
    },
    ['## Mixed pools (`npm run bench -- pool-interop`)', '', header.join('\n\n'), '', markdownTable(columns, rows), '', verdict].join('\n'),
  );
  return [...header, '', formatTable(columns, rows), '', verdict, ...(files.length > 0 ? [`Results: ${files.join(', ')}`] : [])].join('\n');
}
