/**
 * CPU profiles of a billiard-ts Pool on one row of the pool benchmark
 * (bench/pool.ts), parent and workers, and their top self-time frames
 * mapped back to src/ through dist/'s source maps. Not part of `npm run
 * bench` (no `run` export).
 *
 *   npm run build && node bench/pool-profile.mjs [apply|map1|map] [N] [--top K] [--out DIR] [--context spawn|forkserver]
 *
 * apply: N applyAsync(square, [i]) then every result (default N 10000);
 * map1: map(square, N ints, { chunksize: 1 }); map: map(square, N ints).
 * A pool of 2 runs the row 3 times (printing each rate), then close() and
 * join(), so that the workers exit normally and write their profiles. The
 * parent runs under `node --cpu-prof`; the workers run under it too,
 * through a wrapper script given to setExecutable() (billiard-ts drops
 * --cpu-prof from the flags children inherit, and NODE_OPTIONS may not
 * carry it). Profiles go to DIR (default a new temporary directory):
 * parent/ and workers/, `.cpuprofile` files for Chrome DevTools.
 *
 * Native calls (the addon's readFrame, writeBytes...) have no frames of
 * their own: their time, syscalls and any time the thread was descheduled
 * inside them included, is the self time of the JavaScript function that
 * calls them (the arrow functions of src/native/index.ts).
 */

import { spawnSync } from 'node:child_process';
import { chmodSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, writeFileSync, existsSync } from 'node:fs';
import { SourceMap } from 'node:module';
import { tmpdir } from 'node:os';
import { dirname, join, relative } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

const BENCH_DIR = dirname(fileURLToPath(import.meta.url));
const ROOT = dirname(BENCH_DIR);

function option(args, name, fallback) {
  const i = args.indexOf(name);
  return i >= 0 ? args[i + 1] : fallback;
}

/** The profiled run, in a child started with --cpu-prof: a pool, the row 3 times, close and join. */
async function profiled(row, n, context, targetsUrl, wrapper) {
  const { Pool, setExecutable } = await import(pathToFileURL(join(ROOT, 'dist', 'index.js')).href);
  const { square, noop } = await import(targetsUrl);
  setExecutable(wrapper);
  const pool = new Pool({ processes: 2, context, prefetch: Number(process.env.BENCH_PREFETCH ?? 2) });
  await pool.applyAsync(noop, [0]).get();
  const items = Array.from({ length: n }, (_, i) => i);
  for (let k = 0; k < 3; k++) {
    const t0 = performance.now();
    if (row === 'apply') {
      const results = items.map((i) => pool.applyAsync(square, [i]));
      for (const r of results) await r.get();
    } else if (row === 'map1') {
      await pool.map(square, items, { chunksize: 1 });
    } else {
      await pool.map(square, items);
    }
    console.log(`${row} ${n}: ${Math.round((n / (performance.now() - t0)) * 1000)}/s`);
  }
  pool.close();
  await pool.join();
}

const sourceMaps = new Map();

/** ` [src/file.ts:line]` for a frame of a dist/ file with a source map, else ''. */
function original(url, line, column) {
  if (!url.startsWith('file://')) return '';
  const path = fileURLToPath(url);
  if (!sourceMaps.has(path)) sourceMaps.set(path, existsSync(`${path}.map`) ? new SourceMap(JSON.parse(readFileSync(`${path}.map`, 'utf8'))) : null);
  const map = sourceMaps.get(path);
  const entry = map?.findEntry(line, column);
  if (!entry?.originalSource) return '';
  const source = entry.originalSource.startsWith('file://') ? fileURLToPath(entry.originalSource) : join(dirname(path), entry.originalSource);
  return ` [${relative(ROOT, source)}:${entry.originalLine + 1}]`;
}

/** The top self-time frames of one profile, as text. */
function summary(file, top) {
  const profile = JSON.parse(readFileSync(file, 'utf8'));
  const nodes = new Map(profile.nodes.map((n) => [n.id, n]));
  const self = new Map();
  let total = 0;
  profile.samples.forEach((id, i) => {
    const dt = profile.timeDeltas[i] ?? 0;
    total += dt;
    const f = nodes.get(id).callFrame;
    const where = f.url ? ` ${relative(ROOT, f.url.startsWith('file://') ? fileURLToPath(f.url) : f.url)}:${f.lineNumber + 1}:${f.columnNumber + 1}` : '';
    const key = `${f.functionName || '(anonymous)'}${where}${original(f.url, f.lineNumber, f.columnNumber)}`;
    self.set(key, (self.get(key) ?? 0) + dt);
  });
  const idle = self.get('(idle)') ?? 0;
  const busy = total - idle;
  const lines = [`${file}: ${(total / 1000).toFixed(0)} ms sampled, ${(idle / 1000).toFixed(0)} ms idle, ${(busy / 1000).toFixed(0)} ms busy`];
  const rows = [...self.entries()].filter(([k]) => k !== '(idle)').sort((a, b) => b[1] - a[1]).slice(0, top);
  for (const [k, us] of rows) lines.push(`${(us / 1000).toFixed(1).padStart(9)} ms ${((100 * us) / busy).toFixed(1).padStart(5)}% of busy  ${k}`);
  return lines.join('\n');
}

const args = process.argv.slice(2);
if (args[0] === '--run') {
  const [, row, n, context, targetsUrl, wrapper] = args;
  await profiled(row, Number(n), context, targetsUrl, wrapper);
} else {
  const row = args[0] && !args[0].startsWith('--') ? args[0] : 'apply';
  const n = Number(args[1] && !args[1].startsWith('--') ? args[1] : 10000);
  if (!['apply', 'map1', 'map'].includes(row) || !(n > 0)) throw new Error('usage: node bench/pool-profile.mjs [apply|map1|map] [N] [--top K] [--out DIR] [--context spawn|forkserver]');
  const top = Number(option(args, '--top', 12));
  const context = option(args, '--context', 'spawn');
  const out = option(args, '--out', undefined) ?? mkdtempSync(join(tmpdir(), 'billiard-ts-pool-profile-'));
  if (!existsSync(join(ROOT, 'dist', 'index.js'))) throw new Error('dist/ is missing: npm run build first');
  mkdirSync(join(out, 'parent'), { recursive: true });
  mkdirSync(join(out, 'workers'), { recursive: true });

  // bench/pool-targets.ts as plain JavaScript, as bench/pool.ts compiles it.
  const { transformSync } = await import('esbuild');
  const { code } = transformSync(readFileSync(join(BENCH_DIR, 'pool-targets.ts'), 'utf8'), { loader: 'ts', format: 'esm', target: 'node20' });
  writeFileSync(join(out, 'pool-targets.mjs'), code);
  const wrapper = join(out, 'node-cpu-prof');
  writeFileSync(wrapper, `#!/bin/sh\nexec ${JSON.stringify(process.execPath)} --cpu-prof --cpu-prof-dir=${JSON.stringify(join(out, 'workers'))} "$@"\n`);
  chmodSync(wrapper, 0o755);

  const run = spawnSync(
    process.execPath,
    ['--cpu-prof', `--cpu-prof-dir=${join(out, 'parent')}`, fileURLToPath(import.meta.url), '--run', row, String(n), context, pathToFileURL(join(out, 'pool-targets.mjs')).href, wrapper],
    { cwd: ROOT, stdio: ['ignore', 'inherit', 'inherit'] },
  );
  if (run.status !== 0) throw new Error(`the profiled run failed (${run.status ?? run.signal})`);
  for (const part of ['parent', 'workers']) {
    for (const f of readdirSync(join(out, part)).filter((f) => f.endsWith('.cpuprofile')).sort()) {
      console.log(`\n${part}: ${summary(join(out, part, f), top)}`);
    }
  }
  console.log(`\nProfiles: ${out}`);
}
