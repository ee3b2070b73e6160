/**
 * `npm run bench`: runs every benchmark module of bench/ (a .ts file that
 * exports a `run(options)` function) and prints the report each returns.
 *
 *   npm run bench                 every benchmark
 *   npm run bench -- pickle       only bench/pickle.ts
 *   npm run bench -- queue sync   Queue throughput; Lock, Value, hand-off
 *
 * Environment: BENCH_SECONDS (measurement per cell and implementation,
 * default 1), BENCH_WARMUP_SECONDS (warm-up, default 0.25), BENCH_ROUNDS
 * (alternating rounds the measurement is split into, default 4),
 * BENCH_SOURCE (default: dist/, built first, is what every row measures, as
 * installed users run it; `src` measures src/ under tsx instead, whose
 * keepNames wrappers cost up to 30% in the pickle codec).
 */

import { readdir, readFile } from 'node:fs/promises';
import { arch, cpus, platform } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

/** Options every benchmark's run() receives. */
export interface BenchRunOptions {
  seconds: number;
  warmupSeconds: number;
  rounds: number;
  progress: (message: string) => void;
}

type BenchModule = { run?: (options: BenchRunOptions) => Promise<unknown> };

import { buildDist, loadFromDist, measuresDist } from './dist.js';

const benchDir = dirname(fileURLToPath(import.meta.url));

/**
 * Benchmark modules: .ts files of bench/ whose source exports run(). The
 * source is checked before importing so that scripts that do their work on
 * import (such as a fuzzer) are not started.
 */
async function findBenchmarks(): Promise<string[]> {
  const names: string[] = [];
  for (const file of (await readdir(benchDir)).sort()) {
    if (!file.endsWith('.ts') || file.endsWith('.d.ts') || file === 'run.ts') continue;
    const source = await readFile(join(benchDir, file), 'utf8');
    if (/^export\s+(async\s+)?function\s+run\s*\(/m.test(source)) names.push(file.slice(0, -3));
  }
  return names;
}

function positiveNumber(name: string, fallback: number): number {
  const raw = process.env[name];
  if (raw === undefined || raw === '') return fallback;
  const value = Number(raw);
  if (!Number.isFinite(value) || value <= 0) throw new Error(`${name} must be a positive number, got ${JSON.stringify(raw)}`);
  return value;
}

/** Progress on one overwritten stderr line, only when stderr is a terminal. */
function makeProgress(name: string): (message: string) => void {
  if (!process.stderr.isTTY) return () => {};
  return (message) => {
    process.stderr.write(`\r\x1b[2K${message ? `[${name}] ${message}` : ''}`);
  };
}

async function main(): Promise<void> {
  const seconds = positiveNumber('BENCH_SECONDS', 1);
  const warmupSeconds = positiveNumber('BENCH_WARMUP_SECONDS', 0.25);
  const rounds = Math.ceil(positiveNumber('BENCH_ROUNDS', 4));
  const available = await findBenchmarks();
  const wanted = process.argv.slice(2);
  const unknown = wanted.filter((w) => !available.includes(w));
  if (unknown.length > 0) throw new Error(`unknown benchmark(s): ${unknown.join(', ')} (available: ${available.join(', ')})`);
  const selected = wanted.length > 0 ? wanted : available;

  const cpu = cpus()[0]?.model ?? 'unknown CPU';
  console.log(`billiard-ts benchmarks: Node ${process.version} on ${platform()}/${arch()}, ${cpus().length} x ${cpu}`);
  console.log(`BENCH_SECONDS=${seconds} BENCH_WARMUP_SECONDS=${warmupSeconds} BENCH_ROUNDS=${rounds}`);
  if (measuresDist) {
    buildDist(makeProgress('run'));
    loadFromDist();
    console.log('measuring the compiled package (dist/); BENCH_SOURCE=src measures src/ under tsx');
  } else {
    console.log('measuring src/ under tsx (BENCH_SOURCE=src)');
  }
  for (const name of selected) {
    const started = process.hrtime.bigint();
    const mod = (await import(pathToFileURL(join(benchDir, `${name}.ts`)).href)) as BenchModule;
    if (typeof mod.run !== 'function') throw new Error(`bench/${name}.ts does not export run()`);
    const result = await mod.run({ seconds, warmupSeconds, rounds, progress: makeProgress(name) });
    console.log('');
    if (typeof result === 'string') console.log(result);
    const elapsed = Number(process.hrtime.bigint() - started) / 1e9;
    console.log(`(${name}: ${elapsed.toFixed(1)} s)`);
  }
}

main().catch((e: unknown) => {
  console.error(e instanceof Error ? (e.stack ?? e.message) : e);
  process.exitCode = 1;
});
