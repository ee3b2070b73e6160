/**
 * Start latency under 'forkserver' of a child given a Queue and a Value:
 * from start() to the first item the child puts on the queue, against the
 * same child given only a Connection. Not part of `npm run bench` (no
 * `run` export); prints one line per case.
 *
 *   npx tsx bench/forkserver-start.ts [reps]
 */
import { forkserver, getContext, isMainProcess, Pipe, Queue, Value, type Connection, type Synchronized } from '../src/index.js';

export async function putHello(q: Queue, v: Synchronized<'i'>): Promise<void> {
  v.value = 1;
  await q.put('hi');
}

export async function sendHello(conn: Connection): Promise<void> {
  await conn.send('hi');
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[s.length >> 1]!;
}

if (isMainProcess(import.meta)) {
  const reps = Number(process.argv[2] ?? 10);
  const ctx = getContext('forkserver');
  const cases: Record<string, number[]> = { 'Queue+Value': [], Connection: [] };
  for (let i = 0; i < reps; i++) {
    // Every round starts with a full pool of warm children.
    await forkserver.ensureRunning();
    await new Promise((r) => setTimeout(r, 200));
    {
      const q = new Queue();
      const v = Value('i', 0);
      const t0 = performance.now();
      const p = new ctx.Process({ target: putHello, args: [q, v] });
      p.start();
      await q.get();
      cases['Queue+Value']!.push(performance.now() - t0);
      await p.join();
      q.close();
    }
    await forkserver.ensureRunning();
    await new Promise((r) => setTimeout(r, 200));
    {
      const [a, b] = Pipe();
      const t0 = performance.now();
      const p = new ctx.Process({ target: sendHello, args: [b] });
      p.start();
      b.close();
      await a.recv();
      cases.Connection!.push(performance.now() - t0);
      await p.join();
      a.close();
    }
  }
  for (const [name, xs] of Object.entries(cases)) {
    console.log(`${name.padEnd(12)} median ${median(xs).toFixed(0)} ms, min ${Math.min(...xs).toFixed(0)}, max ${Math.max(...xs).toFixed(0)} (${xs.length} starts)`);
  }
  forkserver.setPoolSize(0);
}
