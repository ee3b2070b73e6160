/**
 * What bench/queue.ts and bench/sync.ts share: the Python drivers
 * (bench/py_sync_bench.py --serve, one per library), sample statistics,
 * the rounds loop, and the results files under bench/results/.
 */

import { spawnSync } from 'node:child_process';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { cpus, loadavg } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

import { JsonLineWorker } from './json-worker.js';
import { fmt, quantiles, type Column } from './table.js';

export const BENCH_DIR = dirname(fileURLToPath(import.meta.url));
export const ROOT = dirname(BENCH_DIR);
const PY_SCRIPT = join(BENCH_DIR, 'py_sync_bench.py');

/** The two Python libraries measured, in the order of the tables. */
export const PY_LIBS = ['billiard', 'multiprocessing'] as const;
export type PyLib = (typeof PY_LIBS)[number];

export interface PyInfo {
  python: string;
  python_version: string;
  lib: PyLib;
  version: string;
  start_method: string;
}

// ------------------------------------------------------------------ pinning

export type PinMode = 'none' | 'same' | 'split';

/**
 * BENCH_PIN, as in bench/connection.ts: 'none' (default), 'same' (drivers
 * and children on CPU 0) or 'split' (drivers on CPU 0, children on CPU 1),
 * with taskset (every thread of a Node process; a Python driver's children
 * by os.sched_setaffinity).
 */
export interface Pinning {
  mode: PinMode;
  note: string;
  driverCpu: number | null;
  childCpu: number | null;
  /** Pins every thread of this process to the driver CPU; returns the undo. */
  pinSelf(): () => void;
  /** Pins every thread of a child (once its pid is known) to the child CPU. */
  pinChild(pid: () => number | null | undefined): Promise<void>;
}

export function makePinning(raw = process.env.BENCH_PIN): Pinning {
  const requested = (raw || 'none') as PinMode;
  if (!['none', 'same', 'split'].includes(requested)) throw new Error(`BENCH_PIN must be none, same or split, got ${JSON.stringify(raw)}`);
  const none: Pinning = { mode: 'none', note: 'unpinned', driverCpu: null, childCpu: null, pinSelf: () => () => undefined, pinChild: async () => undefined };
  if (requested === 'none') return none;
  if (spawnSync('taskset', ['--version'], { stdio: 'ignore' }).status !== 0) return { ...none, note: `BENCH_PIN=${requested} asked, but taskset is not installed: unpinned` };
  const mode: PinMode = requested === 'split' && cpus().length < 2 ? 'same' : requested;
  const childCpu = mode === 'split' ? 1 : 0;
  const taskset = (cpu: number, pid: number): void => {
    const r = spawnSync('taskset', ['-a', '-cp', String(cpu), String(pid)], { stdio: 'ignore' });
    if (r.status !== 0) throw new Error(`taskset -a -cp ${cpu} ${pid} failed`);
  };
  return {
    mode,
    note: mode === 'same' ? 'pinned: drivers and children on CPU 0' : 'pinned: drivers on CPU 0, children on CPU 1',
    driverCpu: 0,
    childCpu,
    pinSelf() {
      const pid = String(process.pid);
      const before = /mask:\s*([0-9a-fA-F,]+)/.exec(spawnSync('taskset', ['-p', pid], { encoding: 'utf8' }).stdout)?.[1];
      taskset(0, process.pid);
      return () => {
        if (before !== undefined) spawnSync('taskset', ['-a', '-p', before, pid], { stdio: 'ignore' });
      };
    },
    async pinChild(pid) {
      for (let i = 0; i < 1000; i++) {
        const p = pid();
        if (typeof p === 'number' && p > 0) return taskset(childCpu, p);
        await new Promise((r) => setTimeout(r, 10));
      }
      throw new Error('a child did not get a pid in 10 s');
    },
  };
}

/** The CPUs a process may run on (Linux), e.g. "0" or "0-1". */
export function allowedCpus(pid: number | 'self' = 'self'): string {
  try {
    return /^Cpus_allowed_list:\s*(.+)$/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1]?.trim() ?? '?';
  } catch {
    return '?';
  }
}

/** One `py_sync_bench.py --serve LIB` process: it times billiard's or multiprocessing's side. */
export class PyDriver {
  readonly lib: PyLib;
  readonly #worker: JsonLineWorker;
  constructor(python: string, lib: PyLib, pinning?: Pinning) {
    this.lib = lib;
    const prefix = pinning?.driverCpu == null ? [] : ['taskset', '-c', String(pinning.driverCpu)];
    const childCpu = pinning?.childCpu == null ? [] : ['--child-cpu', String(pinning.childCpu)];
    const command = [...prefix, python, PY_SCRIPT, '--serve', lib, ...childCpu];
    this.#worker = new JsonLineWorker(command, `py_sync_bench.py ${lib}`, { cwd: ROOT });
  }

  request<T>(req: Record<string, unknown>): Promise<T> {
    return this.#worker.request<T>(req);
  }

  /** Asks it to stop its children and exit, and waits (5 s at most, then SIGKILL). */
  async close(): Promise<void> {
    this.#worker.tell({ op: 'exit' });
    this.#worker.end();
    const timer = setTimeout(() => this.#worker.kill('SIGKILL'), 5000);
    await this.#worker.exited;
    clearTimeout(timer);
  }
}

/** Median, quartiles and extremes of samples. */
export interface Stats {
  median: number;
  p25: number;
  p75: number;
  p99: number;
  min: number;
  max: number;
  n: number;
}

export function stats(samples: readonly number[]): Stats {
  if (samples.length === 0) return { median: NaN, p25: NaN, p75: NaN, p99: NaN, min: NaN, max: NaN, n: 0 };
  const { at, sorted } = quantiles(samples);
  return { median: at(0.5), p25: at(0.25), p75: at(0.75), p99: at(0.99), min: sorted[0]!, max: sorted.at(-1)!, n: sorted.length };
}

/** `1.23x`, or `-` when either side is missing. */
export function ratio(a: number, b: number): string {
  return Number.isFinite(a) && Number.isFinite(b) && b !== 0 ? `${fmt(a / b)}x` : '-';
}

/** A rate with a k/M suffix: `152k`, `18.4M`. */
export function rate(perSecond: number): string {
  if (!Number.isFinite(perSecond)) return '-';
  if (perSecond >= 1e6) return `${fmt(perSecond / 1e6)}M`;
  if (perSecond >= 1e3) return `${fmt(perSecond / 1e3)}k`;
  return fmt(perSecond);
}

/** Seconds since `t0` (a `process.hrtime.bigint()`). */
export function since(t0: bigint): number {
  return Number(process.hrtime.bigint() - t0) / 1e9;
}

/** Each of `items`, `rounds` times, the order rotated each round (so no one always goes first). */
export function* rotations<T>(items: readonly T[], rounds: number): Generator<[round: number, item: T]> {
  for (let r = 0; r < rounds; r++) {
    for (let i = 0; i < items.length; i++) yield [r, items[(i + r) % items.length]!];
  }
}

/**
 * Warms `measure(n)` (seconds for n operations) up for `warmup` seconds,
 * then returns a batch size that takes about `target` seconds, from the
 * faster of two timed batches (n grows from `start` until a batch is long
 * enough to time).
 */
export async function warmAndCalibrate(
  measure: (n: number) => Promise<number>,
  options: { warmup: number; target: number; start: number; min: number; max: number },
): Promise<number> {
  let n = options.start;
  const t0 = process.hrtime.bigint();
  let t = await measure(n);
  while (since(t0) < options.warmup || t < options.target / 4) {
    if (t < options.target / 4 && n < options.max) n = Math.min(options.max, n * 4);
    t = await measure(n);
    if (n >= options.max) break;
  }
  t = Math.min(t, await measure(n));
  return Math.max(options.min, Math.min(options.max, Math.round((n * options.target) / Math.max(t, 1e-9))));
}

/** What the results files record about the machine. */
export function machine(): Record<string, unknown> {
  return {
    node: process.version,
    platform: `${process.platform}/${process.arch}`,
    cpus: cpus().length,
    cpu: cpus()[0]?.model ?? 'unknown',
    loadavg1: loadavg()[0],
  };
}

/**
 * Writes `bench/results/<name>.json` (everything measured) and
 * `bench/results/<name>.md` (the report's tables, for the README to quote).
 * BENCH_RESULTS_DIR moves them; BENCH_RESULTS_DIR=none writes nothing.
 * Returns the paths written.
 */
export function writeResults(name: string, json: unknown, markdown: string): string[] {
  const dir = process.env.BENCH_RESULTS_DIR || join(BENCH_DIR, 'results');
  if (dir === 'none') return [];
  mkdirSync(dir, { recursive: true });
  const jsonPath = join(dir, `${name}.json`);
  const mdPath = join(dir, `${name}.md`);
  writeFileSync(jsonPath, `${JSON.stringify(json, null, 2)}\n`);
  writeFileSync(mdPath, markdown.endsWith('\n') ? markdown : `${markdown}\n`);
  return [jsonPath, mdPath];
}

/** The same table as {@link formatTable}'s, as GitHub markdown. */
export function markdownTable(columns: readonly Column[], rows: readonly (readonly string[])[]): string {
  const line = (cells: readonly string[]): string => `| ${cells.join(' | ')} |`;
  return [line(columns.map((c) => c.header)), line(columns.map((c) => (c.align === 'right' ? '---:' : '---'))), ...rows.map(line)].join('\n');
}
