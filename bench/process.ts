/**
 * Process start-up benchmark: start-to-first-message of one child, and of
 * 8 children started together, for billiard-ts ('spawn', and 'forkserver'
 * with the default adaptive pool, a pool of 8 and the base pool fixed), bare `node` processes
 * (until exit, and until the first byte on stdout), and billiard and
 * multiprocessing (CPython 3.11) with 'spawn', 'fork' and 'forkserver'; and
 * the memory of an idle child (RSS and PSS).
 *
 * Every measurement is a driver process (bench/process-driver.mjs, plain
 * `node` on the compiled package in dist/, which this benchmark builds
 * first; bench/py_process_bench.py for Python) that makes one untimed start
 * and then `reps` timed ones. Implementations take turns in each round, so
 * that changes of machine load hit them alike. Ratios are against bare
 * `node` to the first byte (the goal: the bootstrap adds at most 20%) and
 * against billiard's 'spawn' (the goal: forkserver at most 0.5x), from the
 * same run.
 */

import { spawnSync } from 'node:child_process';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

import { findPythonSync } from '../src/process/python.js';
import { buildDist } from './dist.js';
import { fmt, formatTable, type Column } from './table.js';

const BENCH_DIR = dirname(fileURLToPath(import.meta.url));
const ROOT = dirname(BENCH_DIR);

export interface ProcessBenchOptions {
  /** Rounds (each implementation runs once per round and cell). Default 4. */
  rounds?: number;
  /** Timed starts per driver run with one child. Default 5; with 8 children, 2. */
  reps?: number;
  python?: string;
  progress?: (message: string) => void;
}

interface Impl {
  label: string;
  /** The driver command without its last three arguments (children, reps, rss). */
  command: string[];
  /** False where an idle child's memory is not meaningful (a process that exits at once). */
  rss: boolean;
}

interface DriverResult {
  times: number[];
  rss?: number[];
  pss?: number[];
}

function median(xs: readonly number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 === 1 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
}

function drive(impl: Impl, children: number, reps: number, rss: boolean): DriverResult {
  const args = [...impl.command.slice(1), String(children), String(reps), ...(rss ? ['rss'] : [])];
  const r = spawnSync(impl.command[0]!, args, { cwd: ROOT, encoding: 'utf8', timeout: 600_000 });
  if (r.status !== 0) throw new Error(`${impl.label} (${children} children) failed (${r.status ?? r.signal}):\n${r.stderr}`);
  const line = r.stdout.trim().split('\n').at(-1)!;
  return JSON.parse(line) as DriverResult;
}

export async function run(options: ProcessBenchOptions = {}): Promise<string> {
  const rounds = Math.max(1, Math.floor(options.rounds ?? 4));
  const progress = options.progress ?? ((): void => {});
  const python = options.python ?? findPythonSync();

  buildDist(progress);

  const node = (impl: string): string[] => [process.execPath, join(BENCH_DIR, 'process-driver.mjs'), impl];
  const py = (lib: string, method: string): string[] => [python, join(BENCH_DIR, 'py_process_bench.py'), lib, method];
  const impls: Impl[] = [
    { label: 'billiard-ts spawn', command: node('spawn'), rss: true },
    { label: 'billiard-ts forkserver', command: node('forkserver'), rss: true },
    { label: 'billiard-ts forkserver, pool of 8', command: node('forkserver-pool8'), rss: true },
    { label: 'billiard-ts forkserver, fixed base pool', command: node('forkserver-fixed'), rss: false },
    { label: 'node -e 0, to exit', command: node('node-exit'), rss: false },
    { label: 'node, to first byte', command: node('node-byte'), rss: true },
    ...['spawn', 'fork', 'forkserver'].flatMap((m) => [
      { label: `billiard ${m}`, command: py('billiard', m), rss: true },
      { label: `multiprocessing ${m}`, command: py('multiprocessing', m), rss: true },
    ]),
  ];
  const cells = [
    { children: 1, reps: options.reps ?? 5 },
    { children: 8, reps: Math.max(1, Math.round((options.reps ?? 5) / 2.5)) },
  ];

  const times = new Map<string, number[]>();
  const key = (impl: Impl, children: number): string => `${impl.label}|${children}`;
  for (let round = 0; round < rounds; round++) {
    for (const cell of cells) {
      for (const impl of impls) {
        progress(`round ${round + 1}/${rounds}: ${impl.label}, ${cell.children} child${cell.children > 1 ? 'ren' : ''}`);
        const r = drive(impl, cell.children, cell.reps, false);
        const k = key(impl, cell.children);
        times.set(k, [...(times.get(k) ?? []), ...r.times]);
      }
    }
  }
  const memory = new Map<string, { rss: number; pss: number }>();
  for (const impl of impls.filter((i) => i.rss)) {
    progress(`idle child memory: ${impl.label}`);
    const r = drive(impl, 1, 3, true);
    memory.set(impl.label, { rss: median(r.rss!), pss: median(r.pss!) });
  }
  progress('');

  const stat = (impl: Impl, children: number): { med: number; min: number } => {
    const t = times.get(key(impl, children))!;
    return { med: median(t), min: Math.min(...t) };
  };
  const bare = impls.find((i) => i.label === 'node, to first byte')!;
  const billiardSpawn = impls.find((i) => i.label === 'billiard spawn')!;
  const columns: Column[] = [
    { header: 'implementation' },
    ...cells.flatMap((c) => [
      { header: `${c.children}: median ms`, align: 'right' as const },
      { header: `${c.children}: min ms`, align: 'right' as const },
      { header: `${c.children}: vs node`, align: 'right' as const },
      { header: `${c.children}: vs billiard spawn`, align: 'right' as const },
    ]),
    { header: 'idle RSS MiB', align: 'right' },
    { header: 'idle PSS MiB', align: 'right' },
  ];
  const rows = impls.map((impl) => {
    const mem = memory.get(impl.label);
    return [
      impl.label,
      ...cells.flatMap((c) => {
        const s = stat(impl, c.children);
        return [fmt(s.med), fmt(s.min), `${fmt(s.med / stat(bare, c.children).med)}x`, `${fmt(s.med / stat(billiardSpawn, c.children).med)}x`];
      }),
      mem === undefined ? '' : fmt(mem.rss / 1024),
      mem === undefined ? '' : fmt(mem.pss / 1024),
    ];
  });
  const overhead = (c: number): string => `${fmt((stat(impls[0]!, c).med / stat(bare, c).med - 1) * 100)}%`;
  const fsRatio = (impl: Impl, c: number): string => `${fmt(stat(impl, c).med / stat(billiardSpawn, c).med)}x`;
  return [
    `Start-to-first-message (ms) of 1 child and of 8 children started together; ${rounds} rounds, CPython ${spawnSync(python, ['-c', 'import sys; print(sys.version.split()[0])'], { encoding: 'utf8' }).stdout.trim()} (${python}).`,
    'Ratios of medians: "vs node" against bare node to its first byte, "vs billiard spawn" against billiard spawn, both from this run.',
    '',
    formatTable(columns, rows),
    '',
    `Goal 1, the bootstrap adds <= 20% to a bare Node start: billiard-ts spawn adds ${overhead(1)} (1 child), ${overhead(8)} (8 children).`,
    `Goal 2, forkserver <= 0.5x billiard spawn: ${fsRatio(impls[1]!, 1)} (1 child), ${fsRatio(impls[1]!, 8)} (8 children, the adaptive default pool after its first burst; ${fsRatio(impls[2]!, 8)} with a pool of 8; ${fsRatio(impls[3]!, 8)} with the base pool fixed).`,
  ].join('\n');
}
