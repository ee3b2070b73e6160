/**
 * The Node side of the pool benchmark (bench/pool.ts): one implementation's
 * pools, timed in this process, a plain `node` on the compiled package
 * (dist/) and on the compiled bench/pool-targets.ts, so that neither it nor
 * its workers carry a TypeScript loader (as in bench/process-driver.mjs).
 *
 *   node --expose-gc bench/pool-driver.mjs --serve IMPL TARGETS_DIR
 *       one JSON command a line on stdin, one JSON answer a line on stdout
 *       (the protocol of bench/py_pool_bench.py: info, cycle, exit)
 *   node --expose-gc bench/pool-driver.mjs --thread-rss IMPL TARGETS_DIR
 *       worker-thread pools: prints the RSS growth of this process per
 *       worker thread, in KiB, as one JSON line, and exits
 *   node bench/pool-driver.mjs --alone IMPL TARGETS_DIR [ROWS] [N] [CYCLES]
 *       for profiling (`node --cpu-prof ...`): CYCLES cycles (default 1)
 *       of only the ROWS (comma-separated: map, map1, apply; default all)
 *       with N items each; prints the cycles' results as JSON
 *
 * IMPL: billiard-ts-spawn | billiard-ts-forkserver | piscina | tinypool |
 * workerpool. TARGETS_DIR holds pool-targets.mjs (square, noop, squareChunk)
 * and workerpool-worker.mjs (the same functions registered with
 * workerpool.worker), written by bench/pool.ts (`compileTargets`).
 *
 * A cycle is first cmd.extra_starts short pool lives (start, 0.05 s idle,
 * terminate: start_extra and terminate_extra), then one pool's life, every
 * measure on the same pool (seconds, performance.now()):
 *   start      from creating a pool of `processes` workers until the result
 *              of one noop(0) task is back
 *   rss        (billiard-ts, when asked) VmRSS in KiB of each worker
 *              process, once 20 noop tasks ran (chunksize 1) and 0.1 s passed
 *   (warm)     when cmd.warm: before each of the next three rows, the
 *              row once outside its samples: map at full size (its time is
 *              map_cold), map1 and apply at a tenth of their sizes
 *   map        map(square, items) with billiard's default chunksize
 *              ceil(n / (4 * processes)); the thread pools, which have no
 *              map, run squareChunk on chunks of that size
 *   map1       map(square, items, { chunksize: 1 }); the thread pools: one
 *              task per item, all submitted, then awaited together
 *   apply      applyAsync(square, [i]) for each i, then get() of each in
 *              order; the thread pools: run(i) / exec('square', [i])
 *   terminate  after 0.05 s idle: terminate() (billiard-ts: it resolves
 *              once the workers are gone), destroy() or terminate()
 * For 'billiard-ts-forkserver' the fork server's warm children are waited
 * for (untimed) before the start, and again after it, before the other
 * rows, so that no refill runs during them.
 */

import { readFileSync } from 'node:fs';
import { createInterface } from 'node:readline';
import { pathToFileURL } from 'node:url';

import Piscina from 'piscina';
import Tinypool from 'tinypool';
import workerpool from 'workerpool';

import { forkserver, Pool } from '../dist/index.js';

const [mode, impl, targetsDir, ...rest] = process.argv.slice(2);
if (!['--serve', '--thread-rss', '--alone'].includes(mode) || !impl || !targetsDir) {
  console.error('usage: node bench/pool-driver.mjs --serve|--thread-rss|--alone IMPL TARGETS_DIR');
  process.exit(2);
}
const targetsUrl = pathToFileURL(`${targetsDir}/pool-targets.mjs`).href;
const workerpoolScript = `${targetsDir}/workerpool-worker.mjs`;
const targets = await import(targetsUrl);
const { square, noop } = targets;

/** VmRSS of a process in KiB. */
function vmrss(pid = 'self') {
  return Number(/VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))[1]);
}

/** A process's private memory (USS) in KiB: the pages no other process maps, what ending it gives back. */
function uss(pid) {
  const rollup = readFileSync(`/proc/${pid}/smaps_rollup`, 'utf8');
  return Number(/Private_Clean:\s+(\d+)/.exec(rollup)[1]) + Number(/Private_Dirty:\s+(\d+)/.exec(rollup)[1]);
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const now = () => performance.now() / 1000;

/** billiard's default chunksize for n items and p processes. */
const defaultChunksize = (n, p) => Math.ceil(n / (4 * p));

function chunks(items, size) {
  const out = [];
  for (let i = 0; i < items.length; i += size) out.push(items.slice(i, i + size));
  return out;
}

/** A pool of one implementation behind the operations a cycle times. */
function adapter(name, processes) {
  if (name === 'billiard-ts-spawn' || name === 'billiard-ts-forkserver') {
    const context = name === 'billiard-ts-spawn' ? 'spawn' : 'forkserver';
    let pool;
    return {
      threads: false,
      async before() {
        if (context === 'forkserver') await forkserver.ensureRunning();
      },
      create() {
        pool = new Pool({ processes, context });
      },
      first: () => pool.applyAsync(noop, [0]).get(),
      pids: () => pool.pids,
      warmEach: () => pool.map(noop, Array.from({ length: 20 }, (_, i) => i), { chunksize: 1 }),
      map: (items) => pool.map(square, items),
      map1: (items) => pool.map(square, items, { chunksize: 1 }),
      async apply(n) {
        const results = new Array(n);
        for (let i = 0; i < n; i++) results[i] = pool.applyAsync(square, [i]);
        let last;
        for (const r of results) last = await r.get();
        return last;
      },
      terminate: () => pool.terminate(),
    };
  }
  // Worker-thread pools: run(x, name) submits one task.
  let run;
  let destroy;
  let create;
  if (name === 'piscina') {
    create = () => {
      const pool = new Piscina({ filename: targetsUrl, minThreads: processes, maxThreads: processes });
      run = (x, fn) => pool.run(x, { name: fn });
      destroy = () => pool.destroy();
    };
  } else if (name === 'tinypool') {
    create = () => {
      const pool = new Tinypool({ filename: targetsUrl, minThreads: processes, maxThreads: processes });
      run = (x, fn) => pool.run(x, { name: fn });
      destroy = () => pool.destroy();
    };
  } else if (name === 'workerpool') {
    create = () => {
      const pool = workerpool.pool(workerpoolScript, { minWorkers: processes, maxWorkers: processes, workerType: 'thread' });
      run = (x, fn) => pool.exec(fn, [x]);
      destroy = () => pool.terminate();
    };
  } else {
    throw new Error(`unknown implementation ${name}`);
  }
  return {
    threads: true,
    async before() {},
    create: () => create(),
    first: () => run(0, 'noop'),
    pids: () => [],
    warmEach: () => Promise.all(Array.from({ length: 20 }, (_, i) => run(i, 'noop'))),
    async map(items) {
      const parts = await Promise.all(chunks(items, defaultChunksize(items.length, processes)).map((c) => run(c, 'squareChunk')));
      return parts.flat();
    },
    map1: (items) => Promise.all(items.map((x) => run(x, 'square'))),
    async apply(n) {
      const results = new Array(n);
      for (let i = 0; i < n; i++) results[i] = run(i, 'square');
      let last;
      for (const r of results) last = await r;
      return last;
    },
    terminate: () => destroy(),
  };
}

const range = (n) => Array.from({ length: n }, (_, i) => i);

function check(what, got, want) {
  if (got !== want) throw new Error(`${impl}: ${what} gave ${got}, not ${want}`);
}

async function repeat(fn, rowSeconds, maxReps) {
  const times = [];
  for (;;) {
    const t0 = now();
    await fn();
    times.push(now() - t0);
    if (times.reduce((a, b) => a + b, 0) >= rowSeconds || times.length >= maxReps) return times;
  }
}

/** One pool's life (see the file comment); `rows` limits the throughput rows run. */
async function cycle(cmd, rows = ['map', 'map1', 'apply']) {
  const processes = cmd.processes ?? 2;
  const rowSeconds = cmd.row_seconds ?? 0;
  const maxReps = cmd.max_reps ?? 1;
  const mapItems = range(cmd.map_n);
  const map1Items = range(cmd.map1_n);
  const out = { start_extra: [], terminate_extra: [] };
  // cmd.extra_starts: short lives first (start, 0.05 s idle, terminate), for more samples of those two rows.
  for (let k = 0; k < (cmd.extra_starts ?? 0); k++) {
    const b = adapter(impl, processes);
    await b.before();
    let t = now();
    b.create();
    await b.first();
    out.start_extra.push(now() - t);
    await b.before();
    await sleep(50);
    t = now();
    await b.terminate();
    out.terminate_extra.push(now() - t);
  }
  const a = adapter(impl, processes);
  await a.before();
  let t0 = now();
  a.create();
  await a.first();
  out.start = now() - t0;
  try {
    await a.before(); // forkserver: the warm children taken are replaced before anything else is timed
    if (cmd.rss && !a.threads) {
      await a.warmEach();
      await sleep(100);
      out.rss_kib = a.pids().map((pid) => vmrss(pid));
      out.uss_kib = a.pids().map((pid) => uss(pid));
    }
    // With cmd.warm each row first runs once on the same pool, outside its samples: map at full size
    // (its time is map_cold: a fresh Node worker's pickler is not optimized yet), map1 and apply at a
    // tenth of theirs. The rows then measure a warmed pool; start is the cold row.
    const tenth = (items) => items.slice(0, Math.max(1, Math.floor(items.length / 10)));
    if (rows.includes('map')) {
      if (cmd.warm) out.map_cold = (await repeat(() => a.map(mapItems), 0, 1))[0];
      out.map = await repeat(async () => check('map', (await a.map(mapItems)).at(-1), (cmd.map_n - 1) ** 2), rowSeconds, maxReps);
    }
    if (rows.includes('map1')) {
      if (cmd.warm) await a.map1(tenth(map1Items));
      out.map1 = await repeat(async () => check('map1', (await a.map1(map1Items)).at(-1), (cmd.map1_n - 1) ** 2), rowSeconds, maxReps);
    }
    if (rows.includes('apply')) {
      if (cmd.warm) await a.apply(Math.max(1, Math.floor(cmd.apply_n / 10)));
      out.apply = await repeat(async () => check('apply', await a.apply(cmd.apply_n), (cmd.apply_n - 1) ** 2), rowSeconds, maxReps);
    }
    await sleep(50);
  } finally {
    t0 = now();
    await a.terminate();
    out.terminate = now() - t0;
  }
  return out;
}

/**
 * Worker-thread pools: how much this process's RSS grows per worker thread,
 * from a pool of `processes` threads that each ran a noop task and are idle.
 * Measured in a process that has done nothing else (the library and the
 * targets imported, a GC before each reading).
 */
async function threadRss(processes = 2) {
  const a = adapter(impl, processes);
  if (!a.threads) throw new Error(`${impl} is not a worker-thread pool`);
  await sleep(100);
  globalThis.gc?.();
  const before = vmrss();
  a.create();
  await a.first();
  await a.warmEach();
  await sleep(200);
  globalThis.gc?.();
  const after = vmrss();
  await a.terminate();
  return { rss_before_kib: before, rss_after_kib: after, per_worker_kib: (after - before) / processes, gc: typeof globalThis.gc === 'function' };
}

function info() {
  const version = (pkg) => JSON.parse(readFileSync(new URL(`../node_modules/${pkg}/package.json`, import.meta.url), 'utf8')).version;
  const lib = impl.startsWith('billiard-ts') ? 'billiard-ts' : impl;
  return {
    impl,
    node: process.version,
    version: lib === 'billiard-ts' ? JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8')).version : version(lib),
  };
}

if (mode === '--thread-rss') {
  console.log(JSON.stringify(await threadRss()));
  process.exit(0);
} else if (mode === '--alone') {
  const rows = rest[0] ? rest[0].split(',') : undefined;
  const n = Number(rest[1] ?? 10000);
  const cycles = Number(rest[2] ?? 1);
  const results = [];
  for (let c = 0; c < cycles; c++) results.push(await cycle({ map_n: n, map1_n: n, apply_n: n, warm: true }, rows));
  console.log(JSON.stringify(results));
  if (impl === 'billiard-ts-forkserver') forkserver.setPoolSize(0);
} else {
  const lines = createInterface({ input: process.stdin });
  for await (const line of lines) {
    const cmd = JSON.parse(line);
    if (cmd.op === 'exit') break;
    let answer;
    try {
      answer = cmd.op === 'info' ? info() : await cycle(cmd);
    } catch (e) {
      answer = { error: String(e?.stack ?? e) };
    }
    process.stdout.write(`${JSON.stringify(answer)}\n`);
  }
  lines.close();
  if (impl === 'billiard-ts-forkserver') forkserver.setPoolSize(0);
}
