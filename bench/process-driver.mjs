/**
 * One measurement run of the process benchmark (bench/process.ts), in a
 * plain `node` process that imports the compiled package (dist/), so that
 * neither it nor its children carry a TypeScript loader.
 *
 *   node bench/process-driver.mjs <impl> <children> <reps> [rss]
 *
 * impl: spawn | forkserver | forkserver-pool8 | forkserver-fixed | node-exit | node-byte.
 * Prints one JSON line: { times: [ms per rep], rss?: [KiB], pss?: [KiB] }.
 * Each run starts with one untimed rep (module caches, the fork server).
 */
import { spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { availableParallelism } from 'node:os';

import { forkserver, getContext, Pipe } from '../dist/index.js';
import { hello, helloThenIdle } from './process-targets.mjs';

const [impl, nArg, repsArg, rssArg] = process.argv.slice(2);
const n = Number(nArg);
const reps = Number(repsArg);
const rss = rssArg === 'rss';

/** VmRSS and Pss of a process, in KiB. */
function memory(pid) {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  const rollup = readFileSync(`/proc/${pid}/smaps_rollup`, 'utf8');
  return { rss: Number(/VmRSS:\s+(\d+)/.exec(status)[1]), pss: Number(/Pss:\s+(\d+)/.exec(rollup)[1]) };
}

/** n billiard-ts children; resolves with ms from the first start() to the last first message. */
async function billiardTs(ctx) {
  if (impl.startsWith('forkserver')) await forkserver.ensureRunning();
  const t0 = performance.now();
  const procs = [];
  const ends = [];
  for (let i = 0; i < n; i++) {
    const [a, b] = Pipe();
    const p = new ctx.Process({ target: rss ? helloThenIdle : hello, args: [b] });
    p.start();
    b.close();
    procs.push(p);
    ends.push(a);
  }
  await Promise.all(ends.map((a) => a.recv()));
  const ms = performance.now() - t0;
  const mem = rss ? await Promise.all(procs.map(async (p) => memory(await p.spawned))) : [];
  for (const a of ends) {
    if (rss) await a.send('bye');
    a.close();
  }
  for (const p of procs) await p.join();
  return { ms, mem };
}

/** n bare `node` processes: until each exits (node-exit) or writes its first byte (node-byte). */
async function bareNode() {
  const code = impl === 'node-exit' ? '0' : rss ? "process.stdout.write('x'); process.stdin.resume()" : "process.stdout.write('x')";
  const t0 = performance.now();
  const children = [];
  const done = [];
  for (let i = 0; i < n; i++) {
    const c = spawn(process.execPath, ['-e', code], { stdio: ['pipe', impl === 'node-exit' ? 'ignore' : 'pipe', 'inherit'] });
    children.push(c);
    done.push(new Promise((resolve) => (impl === 'node-exit' ? c.once('exit', resolve) : c.stdout.once('data', resolve))));
  }
  await Promise.all(done);
  const ms = performance.now() - t0;
  const mem = rss ? children.map((c) => memory(c.pid)) : [];
  await Promise.all(
    children.map((c) => {
      if (c.exitCode !== null) return undefined;
      const exited = new Promise((resolve) => c.once('exit', resolve));
      c.stdin.end();
      return exited;
    }),
  );
  return { ms, mem };
}

let once;
if (impl === 'spawn' || impl.startsWith('forkserver')) {
  if (impl === 'forkserver-pool8') forkserver.setPoolSize(8);
  // The size the adaptive pool starts from, fixed: how the default pool behaved before it adapted.
  if (impl === 'forkserver-fixed') forkserver.setPoolSize(Math.min(4, availableParallelism()));
  const ctx = getContext(impl === 'spawn' ? 'spawn' : 'forkserver');
  once = () => billiardTs(ctx);
} else if (impl === 'node-exit' || impl === 'node-byte') {
  once = bareNode;
} else {
  throw new Error(`unknown impl ${impl}`);
}

await once();
const times = [];
const rssOut = [];
const pssOut = [];
for (let r = 0; r < reps; r++) {
  const { ms, mem } = await once();
  times.push(ms);
  for (const m of mem) {
    rssOut.push(m.rss);
    pssOut.push(m.pss);
  }
}
console.log(JSON.stringify(rss ? { times, rss: rssOut, pss: pssOut } : { times }));
forkserver.setPoolSize(0);
