/**
 * CPU profiles of a Node -> Node manager round-trip loop (the first row of
 * bench/manager.ts), client and server, and their top self-time functions.
 * Not part of `npm run bench` (no `run` export).
 *
 *   npx tsx bench/manager-profile.ts [N] [--top K] [--out DIR]
 *
 * Starts two Node processes under `node --cpu-prof --import tsx`: a server
 * (`... manager-profile.ts serve`: a SyncManager's `getServer()` served in
 * that process, so the profile sees it; billiard-ts drops --cpu-prof from
 * the flags a `start()` child inherits) and a client (`... client HOST PORT
 * N`: N x (d['k'] = i; d['k']) on a dict proxy, then N x (q.put(i); q.get())
 * on a Queue proxy, default N 20000, after a warm-up of 2000 of each). Both
 * exit normally, so their profiles are written to DIR/server and DIR/client
 * (default a new temporary directory), `.cpuprofile` files for Chrome
 * DevTools; the top K (default 15) functions by self time of each are
 * printed. Set BENCH_PIN-style pinning yourself (`taskset -c 0 npx tsx ...`)
 * if wanted: children inherit the affinity.
 */

import { spawn } from 'node:child_process';
import { mkdirSync, mkdtempSync, readdirSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, relative } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';

import { SyncManager } from '../src/index.js';

const KEY = new TextEncoder().encode('bench-key');
const SELF = fileURLToPath(import.meta.url);
const ROOT = join(SELF, '..', '..');

function option(args: string[], name: string, fallback: string): string {
  const i = args.indexOf(name);
  return i >= 0 ? args[i + 1]! : fallback;
}

async function serve(): Promise<void> {
  const m = new SyncManager({ address: ['127.0.0.1', 0], authkey: KEY });
  const server = m.getServer();
  void server.serveForever();
  await server.ready;
  const address = server.address as unknown as readonly [string, number];
  process.stdout.write(`${JSON.stringify([String(address[0]), Number(address[1])])}\n`);
  // Until stdin ends: then a normal exit, which writes the profile.
  process.stdin.resume();
  await new Promise((resolve) => process.stdin.on('end', resolve));
  await server.close();
  process.exit(0);
}

async function client(host: string, port: number, n: number): Promise<void> {
  const m = new SyncManager({ address: [host, port], authkey: KEY });
  await m.connect();
  const d = await m.dict();
  const q = await m.Queue();
  const loop = async (count: number): Promise<[number, number]> => {
    let t0 = performance.now();
    for (let i = 0; i < count; i++) {
      await d.setItem('k', i);
      await d.getItem('k');
    }
    const dictUs = ((performance.now() - t0) * 1000) / (2 * count);
    t0 = performance.now();
    for (let i = 0; i < count; i++) {
      await q.put(i);
      await q.get();
    }
    return [dictUs, ((performance.now() - t0) * 1000) / (2 * count)];
  };
  await loop(2000);
  const [dictUs, queueUs] = await loop(n);
  console.log(`client: ${n} ops each; dict ${dictUs.toFixed(1)} us/round trip, queue ${queueUs.toFixed(1)} us/round trip`);
  await d._decref();
  await q._decref();
  process.exit(0);
}

interface ProfileNode {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number };
}

/** Self time (ms) by function of a .cpuprofile, highest first. */
function selfTimes(file: string): { total: number; rows: [string, number][] } {
  const profile = JSON.parse(readFileSync(file, 'utf8')) as { nodes: ProfileNode[]; samples: number[]; timeDeltas: number[] };
  const byId = new Map(profile.nodes.map((node) => [node.id, node]));
  const ms = new Map<string, number>();
  let total = 0;
  profile.samples.forEach((id, i) => {
    const frame = byId.get(id)!.callFrame;
    const where = frame.url ? `${relative(ROOT, frame.url.startsWith('file:') ? fileURLToPath(frame.url) : frame.url)}:${frame.lineNumber + 1}` : '';
    const key = `${frame.functionName || '(anonymous)'} ${where}`.trim();
    const dt = (profile.timeDeltas[i] ?? 0) / 1000;
    ms.set(key, (ms.get(key) ?? 0) + dt);
    total += dt;
  });
  return { total, rows: [...ms].sort((a, b) => b[1] - a[1]) };
}

/**
 * The top self-time functions of the main thread's profile in `dir` (the
 * one with the most busy time: tsx's loader thread writes one too).
 */
function report(name: string, dir: string, top: number): void {
  const profiles = readdirSync(dir)
    .filter((f) => f.endsWith('.cpuprofile'))
    .map((f) => {
      const { total, rows } = selfTimes(join(dir, f));
      return { f, total, rows: rows.filter(([k]) => k !== '(idle)'), busy: rows.filter(([k]) => k !== '(idle)').reduce((s, [, v]) => s + v, 0) };
    })
    .sort((a, b) => b.busy - a.busy);
  const main = profiles[0];
  if (main === undefined) return console.log(`\n${name}: no profile in ${dir}`);
  console.log(`\n${name} (${join(dir, main.f)}): ${main.total.toFixed(0)} ms sampled, ${main.busy.toFixed(0)} ms not idle; self time, % of not idle:`);
  for (const [k, v] of main.rows.slice(0, top)) console.log(`  ${v.toFixed(1).padStart(8)} ms  ${((v / main.busy) * 100).toFixed(1).padStart(5)}%  ${k}`);
}

function profiled(dir: string, args: string[]) {
  mkdirSync(dir, { recursive: true });
  return spawn(process.execPath, ['--cpu-prof', '--cpu-prof-dir', dir, '--import', 'tsx', SELF, ...args], { cwd: ROOT, stdio: ['pipe', 'pipe', 'inherit'] });
}

async function main(): Promise<void> {
  const args = process.argv.slice(2);
  if (args[0] === 'serve') return serve();
  if (args[0] === 'client') return client(args[1]!, Number(args[2]), Number(args[3]));
  const n = Number(args.find((a) => /^\d+$/.test(a)) ?? 20000);
  const top = Number(option(args, '--top', '15'));
  const out = option(args, '--out', '') || mkdtempSync(join(tmpdir(), 'manager-profile-'));
  const server = profiled(join(out, 'server'), ['serve']);
  const serverExited = new Promise((resolve) => server.on('exit', resolve));
  const first = await createInterface({ input: server.stdout })[Symbol.asyncIterator]().next();
  if (first.done === true) throw new Error('the server exited before printing its address');
  const [host, port] = JSON.parse(first.value as string) as [string, number];
  const clientProc = profiled(join(out, 'client'), ['client', host, String(port), String(n)]);
  clientProc.stdout.pipe(process.stdout);
  const code = await new Promise((resolve) => clientProc.on('exit', resolve));
  server.stdin.end();
  await serverExited;
  if (code !== 0) throw new Error(`the client exited with ${String(code)}`);
  report('client', join(out, 'client'), top);
  report('server', join(out, 'server'), top);
}

main().catch((e: unknown) => {
  console.error(e);
  process.exit(1);
});
