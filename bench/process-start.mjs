/**
 * How long `Process.start()` holds the event loop, per child, and the wall
 * time of starting many children together (issue 7). Not a test: tests never
 * assert timings.
 *
 *   node bench/process-start.mjs [children=50] [spawn|forkserver] js dist [gap ms]
 *   node --import tsx bench/process-start.mjs [children=50] [spawn|forkserver] ts src [gap ms]
 *
 * `js dist` is a compiled program: plain `node` on the built package (run
 * `npm run build` first) with a JavaScript target, so that neither it nor
 * its children load a TypeScript loader. `ts src` runs the sources and a
 * TypeScript target under tsx, children included. With a gap, the starts
 * are that many milliseconds apart (default: one turn of the event loop,
 * i.e. all at once), so that fewer children compete with the parent for the
 * CPU and the times measure start() rather than the wait for a core.
 *
 * Prints one JSON line: the start() times in ms (median, p90, max, the
 * first call, the sum over all children), the event loop's delays seen by
 * monitorEventLoopDelay (median, 99th percentile, largest: with dozens of
 * children starting on a few cores they also count the time the thread
 * waited for a CPU), and the wall time from the first start() to the last
 * child's first message and to the last exit.
 */
import { monitorEventLoopDelay } from 'node:perf_hooks';

const n = Number(process.argv[2] ?? 50);
const method = process.argv[3] ?? 'spawn';
const lang = process.argv[4] ?? 'js';
const build = process.argv[5] ?? 'dist';
const gapMs = Number(process.argv[6] ?? 0);
const { forkserver, getContext, Pipe } = await import(build === 'dist' ? '../dist/index.js' : '../src/index.ts');
const { hello: target } = await import(lang === 'ts' ? './process-start-target.ts' : './process-targets.mjs');

function pct(xs, q) {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor(q * s.length))];
}

const ctx = getContext(method);
if (method === 'forkserver') await forkserver.ensureRunning();
const h = monitorEventLoopDelay({ resolution: 5 });
h.enable();
const t0 = performance.now();
const starts = [];
const firsts = [];
const procs = [];
for (let i = 0; i < n; i++) {
  const [a, b] = Pipe();
  const p = new ctx.Process({ target, args: [b] });
  const s = performance.now();
  p.start();
  starts.push(performance.now() - s);
  b.close();
  procs.push(p);
  firsts.push(a.recv().finally(() => a.close()));
  // Let the loop turn between starts, as a pool starting workers would.
  await new Promise((r) => (gapMs > 0 ? setTimeout(r, gapMs) : setImmediate(r)));
}
await Promise.all(firsts);
const tFirst = performance.now() - t0;
for (const p of procs) await p.join();
const tExit = performance.now() - t0;
h.disable();
const r = (x) => Math.round(x * 10) / 10;
console.log(
  JSON.stringify({
    children: n,
    method,
    lang,
    build,
    gapMs,
    startMs: { median: r(pct(starts, 0.5)), p90: r(pct(starts, 0.9)), max: r(Math.max(...starts)), first: r(starts[0]), sum: r(starts.reduce((x, y) => x + y, 0)) },
    loopDelayMs: { p50: r(h.percentile(50) / 1e6), p99: r(h.percentile(99) / 1e6), max: r(h.max / 1e6) },
    wallToFirstMessagesMs: Math.round(tFirst),
    wallToExitMs: Math.round(tExit),
    exitcodes: [...new Set(procs.map((p) => p.exitcode))],
  }),
);
if (process.env.BENCH_PRINT_STARTS) console.log(starts.map((x) => r(x)).join(' '));
forkserver.setPoolSize(0);
