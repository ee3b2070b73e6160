/**
 * Pool benchmark (`npm run bench -- pool`): billiard-ts's `Pool` against
 * billiard's and CPython's `multiprocessing.Pool` and the npm worker-thread
 * pools piscina, tinypool and workerpool, 2 workers each, on six measures:
 *
 * | row | measure |
 * | --- | ------- |
 * | start | create a pool of 2 and get the result of one trivial task (ms) |
 * | map | `map(square, 100,000 ints)`, default chunksize (items/s) |
 * | map chunksize 1 | `map(square, 10,000 ints, chunksize=1)` (items/s) |
 * | applyAsync | 10,000 `applyAsync(square, [i])`, then every result (tasks/s) |
 * | terminate | terminate an idle pool of 2, until its workers are gone (ms) |
 * | idle RSS | KiB per worker: VmRSS of each worker process; for the thread pools, the growth of the process's RSS per worker thread |
 * | idle USS | KiB per worker: private memory of each worker process (smaps_rollup's Private_Clean + Private_Dirty: what ending it gives back; not the shared pages of the node or python binary VmRSS counts); for the thread pools, the same growth as RSS |
 *
 * Every implementation is a driver process of its own that times its side
 * and answers one JSON line per command: `node bench/pool-driver.mjs` (plain
 * node on dist/, which this benchmark builds first, with
 * bench/pool-targets.ts compiled to JavaScript, so that no worker carries a
 * TypeScript loader) and `python3 bench/py_pool_bench.py` (the Python
 * `findPython()` finds). A *cycle* is a short pool life (start, terminate:
 * more samples of those rows), then one pool's life: start, RSS, the three
 * throughput rows, terminate. After one warm-up cycle at a tenth of the
 * sizes, each implementation runs one cycle per round, BENCH_ROUNDS rounds,
 * the order rotated each round. Within a cycle each throughput row first
 * runs once outside its samples (map at full size, its rate reported as the
 * cold map; map chunksize 1 and applyAsync at a tenth), so that the rows
 * measure a warmed pool (start is the cold measure), then is repeated while
 * it has taken less than BENCH_SECONDS / BENCH_ROUNDS (at least once, at
 * most 5 times). Each cell is the median of its samples, and its ratio is
 * against billiard-ts 'spawn' from the same run. Nothing asserts timings.
 */

import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';

import { transformSync } from 'esbuild';

import { buildDist } from './dist.js';
import type { BenchRunOptions } from './run.js';

import { BILLIARD_INSTALL_COMMAND, findPython } from '../src/process/python.js';
import { JsonLineWorker } from './json-worker.js';
import { BENCH_DIR, machine, markdownTable, rate, rotations, ROOT, stats, writeResults } from './sync-common.js';
import { fmt, formatTable, type Column } from './table.js';

/** The sizes of the rows (items or tasks), and the pool size. */
export const SIZES = { processes: 2, map_n: 100_000, map1_n: 10_000, apply_n: 10_000 } as const;
/** Repeats of a throughput row within one cycle, at most. */
const MAX_REPS = 5;
/** Short pool lives (start, terminate) a cycle begins with: start and terminate get 1 + this many samples a round. */
const EXTRA_STARTS = 1;
/** A cycle that has not answered after this long is stuck: the run stops. */
const STUCK_SECONDS = 180;

type Kind = 'billiard-ts' | 'python' | 'threads';

interface Impl {
  /** Driver name: billiard-ts-spawn, billiard-fork, piscina... */
  id: string;
  /** Column header. */
  label: string;
  kind: Kind;
  command: string[];
  worker?: JsonLineWorker;
}

/** What a driver answers to a cycle (seconds; rss in KiB). */
interface CycleResult {
  start: number;
  map: number[];
  map1: number[];
  apply: number[];
  terminate: number;
  /** Of the short pool lives before the main one. */
  start_extra: number[];
  terminate_extra: number[];
  /** The untimed warm-up map (full size) on the pool's fresh workers. */
  map_cold?: number;
  rss_kib?: number[];
  /** Private memory (USS) of each worker. */
  uss_kib?: number[];
}

type RowId = 'start' | 'map' | 'map1' | 'apply' | 'terminate' | 'rss' | 'uss';
/** Samples by row, and the cold map's rate (not a row of the table: a note under it). */
type Samples = Record<RowId, number[]> & { mapCold: number[] };

interface Row {
  id: RowId;
  label: string;
  unit: string;
  /** true: a rate (higher is better); false: a time or a size (lower is better). */
  higherBetter: boolean;
}

const ROWS: Row[] = [
  { id: 'start', label: 'start: pool of 2 + first result', unit: 'ms', higherBetter: false },
  { id: 'map', label: `map ${SIZES.map_n / 1000}k ints, default chunksize`, unit: 'items/s', higherBetter: true },
  { id: 'map1', label: `map ${SIZES.map1_n / 1000}k ints, chunksize 1`, unit: 'items/s', higherBetter: true },
  { id: 'apply', label: `${SIZES.apply_n / 1000}k applyAsync, then all results`, unit: 'tasks/s', higherBetter: true },
  { id: 'terminate', label: 'terminate an idle pool of 2', unit: 'ms', higherBetter: false },
  { id: 'rss', label: 'idle RSS per worker', unit: 'MiB', higherBetter: false },
  { id: 'uss', label: 'idle private memory (USS) per worker', unit: 'MiB', higherBetter: false },
];

/** Rows the issue's goals are read on (USS is shown beside RSS, not a goal of its own). */
const GOAL_ROWS = ROWS.filter((r) => r.id !== 'uss');

const BASELINE = 'billiard-ts-spawn';
const NPM_PEERS = ['piscina', 'tinypool', 'workerpool'] as const;
const TS_IMPLS = ['billiard-ts-spawn', 'billiard-ts-forkserver'] as const;

/**
 * bench/pool-targets.ts as plain JavaScript (esbuild's transform: the file
 * imports nothing), plus workerpool's worker script that registers the same
 * functions, in a fresh temporary directory. Returns the directory.
 */
export function compileTargets(): string {
  const dir = mkdtempSync(join(tmpdir(), 'billiard-ts-bench-pool-'));
  const source = readFileSync(join(BENCH_DIR, 'pool-targets.ts'), 'utf8');
  const { code } = transformSync(source, { loader: 'ts', format: 'esm', target: 'node20', sourcefile: 'bench/pool-targets.ts' });
  writeFileSync(join(dir, 'pool-targets.mjs'), code);
  const workerpoolUrl = pathToFileURL(createRequire(import.meta.url).resolve('workerpool')).href;
  writeFileSync(
    join(dir, 'workerpool-worker.mjs'),
    [
      '// Written by bench/pool.ts: workerpool runs the functions a worker script registers.',
      `import workerpool from ${JSON.stringify(workerpoolUrl)};`,
      "import { noop, square, squareChunk } from './pool-targets.mjs';",
      'workerpool.worker({ noop, square, squareChunk });',
      '',
    ].join('\n'),
  );
  return dir;
}

/** `p`, or the end of this process with a message when it takes longer than STUCK_SECONDS. */
async function unstuck<T>(p: Promise<T>, what: string): Promise<T> {
  const timer = setTimeout(() => {
    console.error(`\npool benchmark: ${what} did not answer in ${STUCK_SECONDS} s; stopping`);
    process.exit(1);
  }, STUCK_SECONDS * 1000);
  try {
    return await p;
  } finally {
    clearTimeout(timer);
  }
}

async function pythonWithBilliard(): Promise<string> {
  try {
    return await findPython();
  } catch (e) {
    // findPython's message names the install command; say it for any other failure too.
    const message = (e as Error).message;
    throw new Error(`pool benchmark: the billiard and multiprocessing columns need a Python with billiard: ${message.includes(BILLIARD_INSTALL_COMMAND) ? message : `${message}. On Debian, as root: ${BILLIARD_INSTALL_COMMAND}`}`);
  }
}

/** Median, and the ratio of medians, of one implementation's samples of one row. */
interface Cell {
  samples: number[];
  median: number;
  min: number;
  max: number;
}

function cellOf(samples: number[]): Cell {
  const s = stats(samples);
  return { samples, median: s.median, min: s.min, max: s.max };
}

/** A row's value as printed: ms with 3 digits, rates with k/M, MiB with 3 digits. */
function show(row: Row, v: number): string {
  if (!Number.isFinite(v)) return '-';
  return row.unit === 'ms' || row.unit === 'MiB' ? fmt(v) : rate(v);
}

/** How many times better `a` is than `b` on a row: above 1 when `a` is ahead. */
function advantage(row: Row, a: number, b: number): number {
  return row.higherBetter ? a / b : b / a;
}

export async function run(options: BenchRunOptions): Promise<string> {
  const progress = options.progress;
  const rounds = Math.max(1, Math.floor(options.rounds));
  const rowSeconds = options.seconds / rounds;
  const python = await pythonWithBilliard();

  buildDist(progress);
  const targetsDir = compileTargets();

  const driver = join(BENCH_DIR, 'pool-driver.mjs');
  const node = (id: string): string[] => [process.execPath, '--expose-gc', driver, '--serve', id, targetsDir];
  const py = (lib: string, method: string): string[] => [python, join(BENCH_DIR, 'py_pool_bench.py'), '--serve', lib, method];
  const impls: Impl[] = [
    { id: 'billiard-ts-spawn', label: 'billiard-ts spawn', kind: 'billiard-ts', command: node('billiard-ts-spawn') },
    { id: 'billiard-ts-forkserver', label: 'billiard-ts forkserver', kind: 'billiard-ts', command: node('billiard-ts-forkserver') },
    { id: 'billiard-fork', label: 'billiard fork', kind: 'python', command: py('billiard', 'fork') },
    { id: 'billiard-spawn', label: 'billiard spawn', kind: 'python', command: py('billiard', 'spawn') },
    { id: 'multiprocessing-fork', label: 'mp fork', kind: 'python', command: py('multiprocessing', 'fork') },
    { id: 'multiprocessing-spawn', label: 'mp spawn', kind: 'python', command: py('multiprocessing', 'spawn') },
    ...NPM_PEERS.map((id): Impl => ({ id, label: id, kind: 'threads', command: node(id) })),
  ];

  const samples = new Map<string, Samples>(impls.map((i) => [i.id, { start: [], map: [], map1: [], apply: [], terminate: [], rss: [], uss: [], mapCold: [] }]));
  const info: Record<string, unknown> = {};
  const threadRss: Record<string, unknown[]> = {};
  /** Cycles that hung, by implementation. */
  const hangs = new Map<string, number>();
  const loadBefore = machine().loadavg1 as number;
  const started = process.hrtime.bigint();
  try {
    progress('starting the drivers');
    for (const impl of impls) impl.worker = new JsonLineWorker(impl.command, `pool driver ${impl.id}`, { cwd: ROOT, group: true });
    for (const impl of impls) info[impl.id] = await unstuck(impl.worker!.request({ op: 'info' }), `${impl.id} info`);

    // A cycle that does not answer in STUCK_SECONDS (billiard's terminate/join can hang for ever) is
    // not counted: its driver and every process it started are killed, and a new driver takes over.
    const cycle = async (impl: Impl, scale: number, rss: boolean): Promise<CycleResult | null> => {
      let timer: NodeJS.Timeout | undefined;
      const stuck = new Promise<null>((resolve) => (timer = setTimeout(() => resolve(null), STUCK_SECONDS * 1000)));
      const answer = impl.worker!.request<CycleResult>({
          op: 'cycle',
          processes: SIZES.processes,
          map_n: Math.round(SIZES.map_n * scale),
          map1_n: Math.round(SIZES.map1_n * scale),
          apply_n: Math.round(SIZES.apply_n * scale),
          row_seconds: scale === 1 ? rowSeconds : 0,
          max_reps: scale === 1 ? MAX_REPS : 1,
          warm: scale === 1,
          extra_starts: scale === 1 ? EXTRA_STARTS : 0,
          rss,
        });
      try {
        const r = await Promise.race([answer, stuck]);
        if (r !== null) return r;
      } finally {
        clearTimeout(timer);
      }
      answer.catch(() => undefined);
      hangs.set(impl.id, (hangs.get(impl.id) ?? 0) + 1);
      console.error(`\npool benchmark: a ${impl.label} cycle did not answer in ${STUCK_SECONDS} s: not counted; its driver is killed and restarted`);
      impl.worker!.killGroup();
      await impl.worker!.exited;
      impl.worker = new JsonLineWorker(impl.command, `pool driver ${impl.id}`, { cwd: ROOT, group: true });
      await unstuck(impl.worker.request({ op: 'info' }), `${impl.id} info`);
      return null;
    };

    // Warm-up: module caches, JIT, the fork server's first children, Python's imports in the workers.
    for (const impl of impls) {
      progress(`warm-up: ${impl.label}`);
      const t0 = process.hrtime.bigint();
      do await cycle(impl, 0.1, false); // (a hung warm-up cycle is counted in the note too)
      while (Number(process.hrtime.bigint() - t0) / 1e9 < options.warmupSeconds);
    }

    for (const [round, impl] of rotations(impls, rounds)) {
      progress(`round ${round + 1}/${rounds}: ${impl.label}`);
      const r = await cycle(impl, 1, true);
      if (r === null) continue;
      const s = samples.get(impl.id)!;
      for (const t of [...r.start_extra, r.start]) s.start.push(t * 1000);
      for (const t of [...r.terminate_extra, r.terminate]) s.terminate.push(t * 1000);
      for (const t of r.map) s.map.push(SIZES.map_n / t);
      if (r.map_cold !== undefined) s.mapCold.push(SIZES.map_n / r.map_cold);
      for (const t of r.map1) s.map1.push(SIZES.map1_n / t);
      for (const t of r.apply) s.apply.push(SIZES.apply_n / t);
      for (const kib of r.rss_kib ?? []) s.rss.push(kib / 1024);
      for (const kib of r.uss_kib ?? []) s.uss.push(kib / 1024);
      if (impl.kind === 'threads') {
        // RSS growth per thread, in a fresh process each round (RSS does not shrink after a pool is destroyed).
        progress(`round ${round + 1}/${rounds}: ${impl.label}, RSS per thread`);
        const out = spawnSync(process.execPath, ['--expose-gc', driver, '--thread-rss', impl.id, targetsDir], { cwd: ROOT, encoding: 'utf8', timeout: 60_000 });
        if (out.status !== 0) throw new Error(`${impl.id} --thread-rss failed (${out.status ?? out.signal}):\n${out.stderr}`);
        const m = JSON.parse(out.stdout.trim().split('\n').at(-1)!) as { per_worker_kib: number };
        (threadRss[impl.id] ??= []).push(m);
        s.rss.push(m.per_worker_kib / 1024);
        // A thread's growth is all this process's own: its private memory too.
        s.uss.push(m.per_worker_kib / 1024);
      }
    }
  } finally {
    progress('stopping the drivers');
    await Promise.allSettled(
      impls.map(async (impl) => {
        const w = impl.worker;
        if (w === undefined) return;
        w.tell({ op: 'exit' });
        w.end();
        const timer = setTimeout(() => w.kill('SIGKILL'), 10_000);
        await w.exited;
        clearTimeout(timer);
      }),
    );
    rmSync(targetsDir, { recursive: true, force: true });
    progress('');
  }
  const seconds = Number(process.hrtime.bigint() - started) / 1e9;
  const loadAfter = machine().loadavg1 as number;

  const cells = new Map<string, Map<RowId, Cell>>();
  for (const impl of impls) {
    const s = samples.get(impl.id)!;
    cells.set(impl.id, new Map(ROWS.map((row) => [row.id, cellOf(s[row.id])])));
  }
  const med = (id: string, row: RowId): number => cells.get(id)!.get(row)!.median;

  // ----- the table: a column per implementation, a row per measure
  const columns: Column[] = [{ header: 'measure' }, { header: 'unit' }, ...impls.map((i) => ({ header: i.label, align: 'right' as const }))];
  const rows = ROWS.map((row) => [
    row.label,
    `${row.unit} (${row.higherBetter ? 'higher' : 'lower'} is better)`,
    ...impls.map((impl) => {
      const v = med(impl.id, row.id);
      const base = med(BASELINE, row.id);
      return Number.isFinite(v) ? `${show(row, v)} (${fmt(v / base)}x)` : '-';
    }),
  ]);

  // ----- goals
  type Verdict = { goal: string; cells: string[]; met: boolean | null };
  const goals: Verdict[] = [];
  const ratioCell = (r: number, ok: boolean): string => `${fmt(r)}x ${ok ? 'met' : 'MISSED'}`;
  const row = (id: RowId): Row => ROWS.find((r) => r.id === id)!;
  /** billiard-ts's throughput over the slower-to-beat of a Python library's two start methods. */
  const vsPython = (goal: string, rowId: RowId, lib: 'billiard' | 'multiprocessing', atLeast: number): void => {
    const per = TS_IMPLS.map((ts) => {
      const rs = ['fork', 'spawn'].map((m) => med(ts, rowId) / med(`${lib}-${m}`, rowId));
      const worst = Math.min(...rs);
      return { text: `${rs.map((r) => `${fmt(r)}x`).join(' / ')} ${worst >= atLeast ? 'met' : 'MISSED'}`, ok: worst >= atLeast };
    });
    goals.push({ goal, cells: per.map((p) => p.text), met: per.every((p) => p.ok) });
  };
  vsPython(`applyAsync tasks/s >= 2x billiard (vs fork / spawn)`, 'apply', 'billiard', 2);
  vsPython(`applyAsync tasks/s >= 1x multiprocessing (vs fork / spawn)`, 'apply', 'multiprocessing', 1);
  vsPython(`map chunksize 1 items/s >= 5x billiard (vs fork / spawn)`, 'map1', 'billiard', 5);
  {
    const cold = med('billiard-ts-spawn', 'start') / med('billiard-spawn', 'start');
    const warm = med('billiard-ts-forkserver', 'start') / med('billiard-spawn', 'start');
    goals.push({ goal: 'start <= 1.0x billiard spawn (cold, billiard-ts spawn)', cells: [ratioCell(cold, cold <= 1), ''], met: cold <= 1 });
    goals.push({ goal: 'start <= 0.5x billiard spawn (warm, billiard-ts forkserver)', cells: ['', ratioCell(warm, warm <= 0.5)], met: warm <= 0.5 });
  }
  for (const r of GOAL_ROWS) {
    const per = TS_IMPLS.map((ts) => {
      const adv = NPM_PEERS.map((peer) => ({ peer, a: advantage(r, med(ts, r.id), med(peer, r.id)) }));
      const worst = adv.reduce((a, b) => (b.a < a.a ? b : a));
      return { text: `${fmt(worst.a)}x vs ${worst.peer} ${worst.a >= 1 ? 'met' : 'MISSED'}`, ok: worst.a >= 1 };
    });
    goals.push({ goal: `ahead of every npm peer: ${r.id === 'map1' ? 'map chunksize 1' : r.id === 'apply' ? 'applyAsync' : r.id === 'rss' ? 'idle RSS' : r.label.split(/[:,]/)[0]}`, cells: per.map((p) => p.text), met: per.every((p) => p.ok) });
  }
  const goalColumns: Column[] = [{ header: 'goal' }, { header: 'billiard-ts spawn', align: 'right' }, { header: 'billiard-ts forkserver', align: 'right' }, { header: 'goal met?' }];
  const goalRows = goals.map((g) => [g.goal, ...g.cells, g.met === null ? '' : g.met ? 'yes' : 'NO']);

  // ----- report
  const pyInfo = info['billiard-fork'] as { python: string; python_version: string; version: string };
  const mpInfo = info['multiprocessing-fork'] as { version: string };
  const versions = ['billiard-ts', ...NPM_PEERS].map((id) => {
    const i = (info[id === 'billiard-ts' ? 'billiard-ts-spawn' : id] ?? {}) as { version?: string };
    return `${id} ${i.version ?? '?'}`;
  });
  const header = [
    `Pool of ${SIZES.processes} workers (processes, or threads for piscina/tinypool/workerpool): ${versions.join(', ')} on Node ${process.version} (plain node on dist/, no TypeScript loader); billiard ${pyInfo.version} and multiprocessing on Python ${pyInfo.python_version} (${pyInfo.python}, multiprocessing ${mpInfo.version}).`,
    `Each cell: the median over ${rounds} rounds (${1 + EXTRA_STARTS} pool lives per round for start and terminate, one for the others; each throughput row first run once on that pool outside its samples, map at full size and the others at a tenth, then repeated up to ${MAX_REPS} times while under ${fmt(rowSeconds, 2)} s), then (the ratio to billiard-ts spawn's median, the baseline). Rates: higher is better; ms and MiB: lower is better.`,
    `The thread pools have no map: "map, default chunksize" runs squareChunk on chunks of billiard's default size (ceil(n / 8) = ${Math.ceil(SIZES.map_n / (4 * SIZES.processes))}), "chunksize 1" one task per item. Idle RSS: VmRSS of each worker process (fork workers count pages shared with their parent); for the thread pools, the growth of the process's RSS per worker thread (after GC, in a fresh process). Idle USS: the private memory of each worker process (Private_Clean + Private_Dirty of /proc/<pid>/smaps_rollup: what ending it gives back, without the executable's and libraries' pages it shares with every other process); for the thread pools, the same growth (a thread's memory is its process's own). USS is shown beside RSS; the goals are read on RSS. Load average ${fmt(loadBefore, 2)} before, ${fmt(loadAfter, 2)} after; ${fmt(seconds, 3)} s of cycles.`,
  ];
  const hung = [...hangs].map(([id, n]) => `${impls.find((i) => i.id === id)!.label} ${n}`);
  const legend =
    'mp = CPython multiprocessing.Pool; billiard-ts forkserver: the fork server\'s warm children are ready before each start (not timed).' +
    (hung.length > 0 ? ` Cycles that hung (not counted; the driver was killed and restarted): ${hung.join(', ')}.` : '');
  const coldMap = `Cold map (the map row's first run, on the new pool's workers; not in the samples above), items/s: ${impls
    .map((i) => `${i.label} ${rate(stats(samples.get(i.id)!.mapCold).median)}`)
    .join(', ')}.`;
  const allMet = goals.every((g) => g.met !== false);
  const verdict = allMet ? 'Every goal met.' : `Goals missed: ${goals.filter((g) => g.met === false).length} of ${goals.length}.`;

  const files = writeResults(
    'pool',
    {
      benchmark: 'pool',
      date: new Date().toISOString(),
      machine: machine(),
      drivers: info,
      settings: { seconds: options.seconds, warmupSeconds: options.warmupSeconds, rounds, rowSeconds, maxReps: MAX_REPS, sizes: SIZES },
      loadavg: [loadBefore, loadAfter],
      baseline: BASELINE,
      rows: ROWS.map((r) => ({
        ...r,
        cells: Object.fromEntries(impls.map((i) => [i.id, { ...cells.get(i.id)!.get(r.id)!, vsBaseline: med(i.id, r.id) / med(BASELINE, r.id) }])),
      })),
      mapCold: Object.fromEntries(impls.map((i) => [i.id, cellOf(samples.get(i.id)!.mapCold)])),
      threadRss,
      goals: goals.map((g) => ({ goal: g.goal, spawn: g.cells[0], forkserver: g.cells[1], met: g.met })),
    },
    ['## Pool (`npm run bench -- pool`)', '', header.join('\n\n'), '', legend, '', markdownTable(columns, rows), '', coldMap, '', markdownTable(goalColumns, goalRows), '', verdict].join('\n'),
  );
  return [...header, legend, '', formatTable(columns, rows), '', coldMap, '', formatTable(goalColumns, goalRows), '', verdict, ...(files.length > 0 ? [`Results: ${files.join(', ')}`] : [])].join('\n');
}
