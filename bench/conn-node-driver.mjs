/**
 * The billiard-ts driver of the connection benchmark (bench/connection.ts):
 * a plain `node` process on the compiled package (dist/), as an installed
 * user runs it, that starts its echo child (Node or billiard) on an
 * inherited socket pair end and times round trips, throughput batches and
 * connects. It answers the same JSON lines on stdin/stdout as
 * `bench/py_conn_bench.py --serve` (the billiard driver), so that the two
 * drivers are interchangeable:
 *
 *   node bench/conn-node-driver.mjs --child node|python --python PATH
 *        [--child-prefix JSON] [--node-child JSON]
 *
 *   {"cmd": "info"}                                     -> {"driver": {...}, "child": {...}}
 *   {"cmd": "rtt", "transport", "payload", "seconds", "warmup"}       -> {"samples_ns": [...]}
 *   {"cmd": "tput", "transport", "dir", "size", "count", "seconds", "warmup"} -> {"batches": [[bytes, ns], ...]}
 *   {"cmd": "connect", "seconds", "warmup", "max_count"} -> {"samples_ns": [...]}
 *   {"cmd": "exit"}
 *
 * With BENCH_SOURCE=src it loads src/ (run it with `--import tsx`).
 */

import { spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { createInterface } from 'node:readline';
import { parseArgs } from 'node:util';

const { Client, Listener, Pipe, tuple } = await import(process.env.BENCH_SOURCE === 'src' ? '../src/index.ts' : '../dist/index.js');

const { values } = parseArgs({
  options: {
    child: { type: 'string' },
    python: { type: 'string' },
    'child-prefix': { type: 'string', default: '[]' },
    'node-child': { type: 'string', default: '[]' },
  },
});
const PY_SCRIPT = new URL('./py_conn_bench.py', import.meta.url).pathname;
const OBJ = { id: 1, name: 'x' };
const BYTES64 = new Uint8Array(64).fill(0x78);
const AUTHKEY = new TextEncoder().encode('billiard-ts connection benchmark');

const now = () => process.hrtime.bigint();
const ns = (seconds) => BigInt(Math.round(seconds * 1e9));

/** The CPUs this process may run on (Linux), e.g. "0" or "0-1". */
function allowedCpus() {
  try {
    return /^Cpus_allowed_list:\s*(.+)$/m.exec(readFileSync('/proc/self/status', 'utf8'))?.[1]?.trim() ?? '?';
  } catch {
    return '?';
  }
}

/** This process drives; the child (Node or billiard) echoes on an inherited socket pair end. */
class Driver {
  #pipe;
  #conn;
  #transport = 'pipe';
  #listener = null;
  #connectAddress = null;
  #connectEstimateNs = null;
  #exited;
  #sources = new Map();

  constructor(child, python, childPrefix, nodeChild) {
    const [mine, theirs] = Pipe();
    const cmd = child === 'node' ? [...nodeChild, '--fd', '3'] : [python, PY_SCRIPT, '--echo', '--fd', '3'];
    const full = [...childPrefix, ...cmd];
    // The child's end becomes its fd 3; this process never opens it, so it stays blocking for Python.
    const proc = spawn(full[0], full.slice(1), { stdio: ['ignore', 'ignore', 'inherit', theirs.fileno()] });
    theirs.close();
    this.#exited = new Promise((resolve) => proc.on('exit', resolve));
    proc.on('error', () => undefined);
    this.#pipe = mine;
    this.#conn = mine;
  }

  async #use(transport) {
    if (transport === this.#transport) return;
    if (transport === 'tcp') {
      this.#listener ??= await Listener.create(['127.0.0.1', 0]);
      await this.#pipe.send(tuple('tcp', this.#listener.address));
      this.#conn = await this.#listener.accept();
    } else {
      await this.#conn.send(tuple('back'));
      this.#conn.close();
      this.#conn = this.#pipe;
    }
    this.#transport = transport;
  }

  async info() {
    await this.#conn.send(tuple('info'));
    const child = await this.#conn.recv();
    return { driver: { impl: 'billiard-ts', runtime: `Node ${process.version}`, pid: process.pid, cpus: allowedCpus() }, child: { ...child } };
  }

  async rtt({ transport, payload, seconds, warmup }) {
    await this.#use(transport);
    const c = this.#conn;
    const samples = [];
    // Two inlined loops, as billiard's driver has: no extra call or promise per round trip.
    if (payload === 'obj') {
      await c.send(tuple('echo_obj'));
      const warmEnd = now() + ns(warmup);
      while (now() < warmEnd) {
        await c.send(OBJ);
        await c.recv();
      }
      const end = now() + ns(seconds);
      for (;;) {
        const t0 = now();
        await c.send(OBJ);
        await c.recv();
        const t1 = now();
        samples.push(Number(t1 - t0));
        if (t1 >= end && samples.length >= 2) break;
      }
      await c.send(null);
    } else {
      await c.send(tuple('echo_bytes'));
      const warmEnd = now() + ns(warmup);
      while (now() < warmEnd) {
        await c.sendBytes(BYTES64);
        await c.recvBytes();
      }
      const end = now() + ns(seconds);
      for (;;) {
        const t0 = now();
        await c.sendBytes(BYTES64);
        await c.recvBytes();
        const t1 = now();
        samples.push(Number(t1 - t0));
        if (t1 >= end && samples.length >= 2) break;
      }
      await c.sendBytes(new Uint8Array(0));
    }
    return { samples_ns: samples };
  }

  async #batch(dir, size, count) {
    const c = this.#conn;
    let buf = this.#sources.get(size);
    if (buf === undefined) this.#sources.set(size, (buf = new Uint8Array(size).fill(0x78)));
    const t0 = now();
    let total = 0;
    if (dir === 'send') {
      await c.send(tuple('sink', count));
      for (let i = 0; i < count; i++) await c.sendBytes(buf);
      total = (await c.recv())[1];
    } else {
      await c.send(tuple('source', count, size));
      for (let i = 0; i < count; i++) total += (await c.recvBytes()).length;
    }
    const t1 = now();
    if (total !== size * count) throw new Error(`${total} bytes arrived, ${size * count} expected`);
    return [total, Number(t1 - t0)];
  }

  async tput({ transport, dir, size, count, seconds, warmup }) {
    await this.#use(transport);
    const warmEnd = now() + ns(warmup);
    while (now() < warmEnd) await this.#batch(dir, size, count);
    const batches = [];
    const end = now() + ns(seconds);
    while (batches.length === 0 || now() < end) batches.push(await this.#batch(dir, size, count));
    return { batches };
  }

  async #connects(n, samples) {
    await this.#conn.send(tuple('accept', n));
    for (let i = 0; i < n; i++) {
      const t0 = now();
      const c = await Client(this.#connectAddress, { authkey: AUTHKEY });
      const t1 = now();
      c.close();
      samples?.push(Number(t1 - t0));
    }
    const reply = await this.#conn.recv();
    if (reply[0] !== 'accepted' || reply[1] !== n) throw new Error(`unexpected reply ${String(reply)}`);
  }

  async connect({ seconds, warmup, max_count: maxCount }) {
    if (this.#connectAddress === null) {
      await this.#conn.send(tuple('listen', AUTHKEY));
      this.#connectAddress = (await this.#conn.recv())[1];
    }
    if (this.#connectEstimateNs === null) {
      const est = [];
      await this.#connects(10, est);
      this.#connectEstimateNs = Math.max(1, est.sort((a, b) => a - b)[est.length >> 1]);
    } else {
      await this.#connects(Math.max(1, Math.min(50, Math.floor((warmup * 1e9) / this.#connectEstimateNs))), null);
    }
    const n = Math.max(5, Math.min(maxCount, Math.floor((seconds * 1e9) / this.#connectEstimateNs) + 1));
    const samples = [];
    await this.#connects(n, samples);
    return { samples_ns: samples };
  }

  async close() {
    try {
      if (this.#connectAddress !== null) {
        await this.#conn.send(tuple('unlisten'));
        await this.#conn.recv();
      }
      await this.#use('pipe');
      await this.#pipe.send(tuple('exit'));
    } finally {
      this.#pipe.close();
      this.#listener?.close();
      await Promise.race([this.#exited, new Promise((r) => setTimeout(r, 10_000).unref())]);
    }
  }
}

const driver = new Driver(values.child, values.python, JSON.parse(values['child-prefix']), JSON.parse(values['node-child']));
const lines = createInterface({ input: process.stdin });
try {
  for await (const line of lines) {
    const { cmd, ...req } = JSON.parse(line);
    if (cmd === 'exit') break;
    let answer;
    try {
      if (cmd === 'info') answer = await driver.info();
      else if (cmd === 'rtt') answer = await driver.rtt(req);
      else if (cmd === 'tput') answer = await driver.tput(req);
      else if (cmd === 'connect') answer = await driver.connect(req);
      else throw new Error(`unknown command ${JSON.stringify(cmd)}`);
    } catch (e) {
      answer = { error: `${e?.name ?? 'Error'}: ${e?.message ?? String(e)}` };
    }
    process.stdout.write(`${JSON.stringify(answer)}\n`);
  }
} finally {
  await driver.close();
  lines.close();
}
