/**
 * Manager benchmark (`npm run bench -- manager`): round trips per second
 * through manager proxies, one client at a time, for two operations:
 *
 * - `dict`: `d['k'] = i` then `d['k']` (`setItem`, `getItem` in Node) on a
 *   `SyncManager.dict()` proxy: two round trips;
 * - `queue`: `q.put(i)` then `q.get()` on a `SyncManager.Queue()` proxy:
 *   two round trips (the item is there when get asks, so get never waits).
 *
 * and four client -> server paths:
 *
 * | path | client (times) | server |
 * | ---- | -------------- | ------ |
 * | Node -> Node | this process | `new SyncManager().start()`: a Node child |
 * | Node -> Python | this process | billiard SyncManager, `bench/py_manager_bench.py --serve` (`m.start()`: a Python child) |
 * | Python -> Node | `py_manager_bench.py --client` (billiard) | the same Node child |
 * | billiard -> billiard | `py_manager_bench.py --client` (billiard) | the same Python server |
 *
 * The servers and the two Python clients live for the whole run, over TCP
 * on 127.0.0.1 with a fixed authkey; every client makes its dict and Queue
 * proxies once, so neither start-up nor connecting is timed. A batch is n
 * operations (2n round trips), n calibrated to about 50 ms per path; one
 * sample is one batch. Paths take turns in each of BENCH_ROUNDS rounds,
 * after a warm-up of BENCH_WARMUP_SECONDS each.
 *
 * "vs billiard" is billiard -> billiard's median time per round trip over
 * the path's (the same as the path's round trips/s over billiard's): >= 1.0x
 * means as fast as billiard or faster. The target (the issue's goal) is
 * >= 1.0x for every path with Node on either end.
 *
 * BENCH_PIN=same puts every process on CPU 0; BENCH_PIN=split puts the
 * clients (this process, the Python clients) on CPU 0 and the servers on
 * CPU 1 (taskset). Unpinned, on a small VM a ping-pong's cost is mostly the
 * scheduler's: see bench/README.md.
 */

import type { BenchRunOptions } from './run.js';

import { SyncManager, type DictProxy, type QueueProxy } from '../src/index.js';
import { findPythonSync } from '../src/process/python.js';
import { JsonLineWorker } from './json-worker.js';
import { allowedCpus, BENCH_DIR, machine, makePinning, markdownTable, rate, rotations, ROOT, since, stats, warmAndCalibrate, writeResults, type Pinning, type Stats } from './sync-common.js';
import { fmt, formatTable, type Column } from './table.js';
import { join } from 'node:path';

const PY_SCRIPT = join(BENCH_DIR, 'py_manager_bench.py');
const KEY = new TextEncoder().encode('bench-key');
const KEY_HEX = Buffer.from(KEY).toString('hex');

const KINDS = ['dict', 'queue'] as const;
type Kind = (typeof KINDS)[number];

/** Round trips of one operation of each kind. */
const ROUND_TRIPS_PER_OP = 2;

interface PyClientInfo {
  python: string;
  python_version: string;
  lib: string;
  version: string;
}

interface Path {
  label: string;
  client: string;
  server: string;
  /** Seconds for each of `batches` batches of `n` operations. */
  measure(kind: Kind, n: number, batches: number): Promise<number[]>;
  close(): Promise<void>;
}

/** `taskset -c CPU` as an argv prefix, or nothing. */
function taskset(cpu: number | null): string[] {
  return cpu === null ? [] : ['taskset', '-c', String(cpu)];
}

/** Ends a JsonLineWorker: `exit`, end of stdin, then SIGKILL (its group when `group`) after 10 s. */
async function stopWorker(w: JsonLineWorker, group: boolean): Promise<void> {
  w.tell({ op: 'exit' });
  w.end();
  const timer = setTimeout(() => (group ? w.killGroup() : w.kill('SIGKILL')), 10_000);
  await w.exited;
  clearTimeout(timer);
}

/** A billiard SyncManager server (`py_manager_bench.py --serve`); its address. */
async function startPythonServer(python: string, pinning: Pinning): Promise<{ worker: JsonLineWorker; address: [string, number]; pid: number }> {
  const worker = new JsonLineWorker([...taskset(pinning.childCpu), python, PY_SCRIPT, '--serve', '--authkey', KEY_HEX], 'py_manager_bench.py --serve', { cwd: ROOT, group: true });
  const { address, pid } = await worker.request<{ address: [string, number]; pid: number }>({ op: 'address' });
  return { worker, address, pid };
}

/** This process as the client of the server at `address`. */
async function nodeClient(label: string, server: string, address: readonly [string, number]): Promise<Path> {
  const m = new SyncManager({ address, authkey: KEY });
  await m.connect();
  const d: DictProxy = await m.dict();
  const q: QueueProxy = await m.Queue();
  return {
    label,
    client: 'Node',
    server,
    async measure(kind, n, batches) {
      const times: number[] = [];
      for (let b = 0; b < batches; b++) {
        if (kind === 'dict') {
          const t0 = process.hrtime.bigint();
          for (let i = 0; i < n; i++) {
            await d.setItem('k', i);
            await d.getItem('k');
          }
          times.push(since(t0));
        } else {
          const t0 = process.hrtime.bigint();
          for (let i = 0; i < n; i++) {
            await q.put(i);
            await q.get();
          }
          times.push(since(t0));
        }
      }
      return times;
    },
    async close() {
      await Promise.allSettled([d._decref(), q._decref()]);
    },
  };
}

/** A billiard client process (`py_manager_bench.py --client`) connected to the server at `address`. */
async function pythonClient(python: string, pinning: Pinning, label: string, server: string, address: readonly [string, number]): Promise<{ path: Path; info: PyClientInfo }> {
  const worker = new JsonLineWorker([...taskset(pinning.driverCpu), python, PY_SCRIPT, '--client', '--authkey', KEY_HEX], `py_manager_bench.py --client (${label})`, { cwd: ROOT });
  const info = await worker.request<PyClientInfo>({ op: 'info' });
  await worker.request({ op: 'connect', address: [...address] });
  return {
    info,
    path: {
      label,
      client: `billiard ${info.version} (Python)`,
      server,
      async measure(kind, n, batches) {
        return (await worker.request<{ times: number[] }>({ op: kind, n, batches })).times;
      },
      close: () => stopWorker(worker, false),
    },
  };
}

/** A batch that has not finished after this long is stuck: the run stops. */
const STUCK_SECONDS = 60;

async function unstuck<T>(p: Promise<T>, what: string): Promise<T> {
  const timer = setTimeout(() => {
    console.error(`\nmanager benchmark: ${what} did not finish in ${STUCK_SECONDS} s; stopping`);
    process.exit(1);
  }, STUCK_SECONDS * 1000);
  try {
    return await p;
  } finally {
    clearTimeout(timer);
  }
}

interface Cell {
  kind: Kind;
  path: string;
  client: string;
  server: string;
  /** operations a batch (2 round trips each) */
  n: number;
  /** round trips/s of each batch */
  samples: number[];
  stats: Stats;
  /** billiard -> billiard's median time per round trip over this path's */
  vsBilliard: number;
}

export async function run(options: BenchRunOptions): Promise<string> {
  const progress = options.progress;
  const rounds = Math.max(1, Math.floor(options.rounds));
  const roundSeconds = options.seconds / rounds;
  const batchSeconds = Math.min(0.2, Math.max(0.02, roundSeconds / 5));
  const batchesPerRound = Math.max(1, Math.round(roundSeconds / batchSeconds));
  const python = findPythonSync();

  const pinning = makePinning();
  const unpin = pinning.pinSelf();
  progress('starting servers');
  const nodeServer = new SyncManager({ authkey: KEY });
  const paths: Path[] = [];
  let pyServer: Awaited<ReturnType<typeof startPythonServer>> | null = null;
  let info: PyClientInfo | null = null;
  const cells: Cell[] = [];
  let loadBefore = NaN;
  let cpusUsed: Record<string, string> = {};
  try {
    const [, started] = await Promise.all([nodeServer.start(), startPythonServer(python, pinning)]);
    pyServer = started;
    // The Node server child inherited this process's CPU; 'split' moves it (every thread) to the servers' CPU.
    if (pinning.mode === 'split') await pinning.pinChild(() => nodeServer.process?.pid);
    cpusUsed = { driver: allowedCpus(), nodeServer: allowedCpus(nodeServer.process?.pid ?? 0), pythonServer: allowedCpus(pyServer.pid) };
    const nodeAddress = nodeServer.address as unknown as readonly [string, number];
    const nodeAddr: [string, number] = [String(nodeAddress[0]), Number(nodeAddress[1])];
    const pyAddr = pyServer.address;
    const nodeServerLabel = 'billiard-ts (Node child)';
    const pyServerLabel = 'billiard (Python child)';
    progress('connecting clients');
    paths.push(await nodeClient('Node -> Node', nodeServerLabel, nodeAddr));
    paths.push(await nodeClient('Node -> Python', pyServerLabel, pyAddr));
    const py1 = await pythonClient(python, pinning, 'Python -> Node', nodeServerLabel, nodeAddr);
    paths.push(py1.path);
    const py2 = await pythonClient(python, pinning, 'billiard -> billiard', pyServerLabel, pyAddr);
    paths.push(py2.path);
    info = py1.info;
    const baseLabel = py2.path.label;
    loadBefore = machine().loadavg1 as number;

    for (const kind of KINDS) {
      const sizes = new Map<string, number>();
      for (const path of paths) {
        progress(`${kind}: calibrating and warming up ${path.label}`);
        const n = await warmAndCalibrate(async (m) => (await unstuck(path.measure(kind, m, 1), path.label))[0]!, {
          warmup: options.warmupSeconds,
          target: batchSeconds,
          start: 50,
          min: 20,
          max: 1_000_000,
        });
        sizes.set(path.label, n);
      }
      const samples = new Map<string, number[]>(paths.map((p) => [p.label, []]));
      for (const [round, path] of rotations(paths, rounds)) {
        progress(`${kind}: round ${round + 1}/${rounds}, ${path.label}`);
        const n = sizes.get(path.label)!;
        for (const t of await unstuck(path.measure(kind, n, batchesPerRound), path.label)) samples.get(path.label)!.push((n * ROUND_TRIPS_PER_OP) / t);
      }
      const base = stats(samples.get(baseLabel)!).median;
      for (const path of paths) {
        const s = stats(samples.get(path.label)!);
        cells.push({ kind, path: path.label, client: path.client, server: path.server, n: sizes.get(path.label)!, samples: samples.get(path.label)!, stats: s, vsBilliard: s.median / base });
      }
    }
  } finally {
    progress('stopping clients and servers');
    await Promise.allSettled(paths.map((p) => p.close()));
    await Promise.allSettled([nodeServer.shutdown(), pyServer === null ? undefined : stopWorker(pyServer.worker, true)]);
    unpin();
    progress('');
  }
  const loadAfter = machine().loadavg1 as number;

  const columns: Column[] = [
    { header: 'op' },
    { header: 'client -> server' },
    { header: 'median round trips/s', align: 'right' },
    { header: 'median us/round trip', align: 'right' },
    { header: 'best round trips/s', align: 'right' },
    { header: 'IQR', align: 'right' },
    { header: 'batches x ops', align: 'right' },
    { header: 'vs billiard (t_billiard / t; >= 1.0x faster)', align: 'right' },
    { header: 'target >= 1.0x', align: 'right' },
  ];
  const isNode = (c: Cell): boolean => c.path.includes('Node');
  const rows = cells.map((c) => [
    c.kind,
    c.path,
    rate(c.stats.median),
    fmt(1e6 / c.stats.median),
    rate(c.stats.max),
    `${fmt(((c.stats.p75 - c.stats.p25) / c.stats.median) * 100, 2)}%`,
    `${c.stats.n} x ${c.n}`,
    `${fmt(c.vsBilliard)}x`,
    isNode(c) ? (c.vsBilliard >= 1 ? 'met' : 'MISSED') : 'baseline',
  ]);
  const header = [
    `Manager proxies, one client at a time over TCP on 127.0.0.1: 'dict' is d['k'] = i then d['k'] on a SyncManager.dict() proxy, 'queue' is q.put(i) then q.get() on a SyncManager.Queue() proxy; two round trips an op, rates and times are per round trip. Servers: a billiard-ts SyncManager.start() child (Node) and a billiard SyncManager.start() child (Python ${info?.python_version ?? '?'}, ${info?.python ?? python}, billiard ${info?.version ?? '?'}).`,
    `Median of ${rounds} rounds x ${batchesPerRound} batches of ~${fmt(batchSeconds * 1000, 2)} ms per path (paths alternate); "vs billiard" is billiard -> billiard's median time per round trip over the path's from this run (= the path's round trips/s over billiard's): >= 1.0x is as fast as billiard or faster. Load average ${fmt(loadBefore, 2)} before, ${fmt(loadAfter, 2)} after; ${pinning.mode === 'split' ? 'pinned: clients on CPU 0, servers on CPU 1' : pinning.note} (BENCH_PIN=${pinning.mode}; CPUs allowed: this process ${cpusUsed.driver ?? '?'}, Node server ${cpusUsed.nodeServer ?? '?'}, Python server ${cpusUsed.pythonServer ?? '?'}).`,
  ];
  const misses = cells.filter((c) => isNode(c) && c.vsBilliard < 1);
  const verdict =
    misses.length === 0
      ? "Target round-trip time <= billiard's (>= 1.0x): met by every path with Node on either end."
      : `Target round-trip time <= billiard's (>= 1.0x): missed by ${misses.map((c) => `${c.path} ${c.kind} (${fmt(c.vsBilliard)}x)`).join(', ')}.`;
  const files = writeResults(
    'manager',
    {
      benchmark: 'manager',
      date: new Date().toISOString(),
      machine: machine(),
      python: info,
      settings: { seconds: options.seconds, warmupSeconds: options.warmupSeconds, rounds, batchesPerRound, batchSeconds, roundTripsPerOp: ROUND_TRIPS_PER_OP, pin: pinning.mode, cpus: cpusUsed },
      loadavg: [loadBefore, loadAfter],
      target: "time per round trip <= billiard -> billiard's (vsBilliard >= 1.0)",
      cells: cells.map((c) => ({ ...c, samples: c.samples.map((x) => Math.round(x)) })),
    },
    ['## Manager round trips (`npm run bench -- manager`)', '', header.join('\n\n'), '', markdownTable(columns, rows), '', verdict].join('\n'),
  );
  return [...header, '', formatTable(columns, rows), '', verdict, ...(files.length > 0 ? [`Results: ${files.join(', ')}`] : [])].join('\n');
}
