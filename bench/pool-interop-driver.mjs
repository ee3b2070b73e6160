/**
 * The Node side of the pool-interop benchmark (bench/pool-interop.ts): a
 * billiard-ts Pool of Python workers, timed in this process, a plain `node`
 * on the compiled package (dist/).
 *
 *   node bench/pool-interop-driver.mjs --serve PYTHON
 *
 * The protocol of bench/py_pool_interop.py: {"op": "start", "processes": P},
 * {"op": "apply", "n": N} (applyAsync(square, [i]) for i < N, then get() of
 * each in order), {"op": "exit"}. square is py_pool_bench.square, run by
 * billiard's Worker in the Python interpreter PYTHON.
 */

import { dirname } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';

import { Pool, pyfunc } from '../dist/index.js';

const [mode, python] = process.argv.slice(2);
if (mode !== '--serve' || !python) {
  console.error('usage: node bench/pool-interop-driver.mjs --serve PYTHON');
  process.exit(2);
}
const square = pyfunc('py_pool_bench.square');
const benchDir = dirname(fileURLToPath(import.meta.url));
let pool = null;

const ops = {
  async start(cmd) {
    const t0 = performance.now();
    pool = new Pool({ processes: cmd.processes, python: { executable: python, path: [benchDir] } });
    await pool.applyAsync(square, [0]).get();
    return { seconds: (performance.now() - t0) / 1000 };
  },
  async apply(cmd) {
    const t0 = performance.now();
    const results = new Array(cmd.n);
    for (let i = 0; i < cmd.n; i++) results[i] = pool.applyAsync(square, [i]);
    for (const r of results) await r.get();
    return { seconds: (performance.now() - t0) / 1000 };
  },
};

for await (const line of createInterface({ input: process.stdin })) {
  const cmd = JSON.parse(line);
  if (cmd.op === 'exit') break;
  let answer;
  try {
    answer = await ops[cmd.op](cmd);
  } catch (e) {
    answer = { error: String(e?.stack ?? e) };
  }
  process.stdout.write(`${JSON.stringify(answer)}\n`);
}
await pool?.terminate();
// stdin stays open (the benchmark keeps its end): end here.
process.exit(0);
