/**
 * Synchronisation benchmark (`npm run bench -- sync`): billiard-ts's Lock,
 * Value and Semaphore against billiard's and multiprocessing's (CPython,
 * timed by bench/py_sync_bench.py --serve), in one run.
 *
 * - Uncontended Lock: operations per second of acquire + release of a Lock
 *   no one else holds; Node with `await lock.acquire()` and with
 *   `lock.acquireSync()`, Python with `acquire()` (bound methods).
 * - Value: operations per second of reading and writing `.value` of a
 *   `Value('i')` (each under its RLock) and of a `RawValue('i')`.
 * - Contended hand-off: two processes pass the turn back and forth over two
 *   `Semaphore(0)` (ping-pong): the driver releases `ping` and takes `pong`,
 *   the child (bench/sync-targets.ts `pingpongServe`, or
 *   bench/py_sync_targets.py `pingpong_serve`) takes `ping` and releases
 *   `pong`. One sample is one round trip (two hand-offs) timed by the
 *   driver; the table gives the time per hand-off (half a round trip).
 *   Node waits either with `await acquire()` (the wait runs on a native
 *   thread, which wakes the event loop) or with `acquireSync()` (the event
 *   loop's thread waits).
 *
 * In-process loops run in batches of about 20 ms (one sample each); every
 * implementation gets BENCH_WARMUP_SECONDS of warm-up, then they take turns
 * in each of BENCH_ROUNDS rounds. Targets: Lock and Value >= 0.5x billiard's
 * operations per second; hand-off latency <= 1.0x billiard's.
 */

import type { BenchRunOptions } from './run.js';

import { Lock, Process, pyfunc, RawValue, Semaphore, Value } from '../src/index.js';
import { findPythonSync } from '../src/process/python.js';
import {
  BENCH_DIR,
  machine,
  makePinning,
  markdownTable,
  PY_LIBS,
  PyDriver,
  rate,
  ratio,
  rotations,
  since,
  stats,
  warmAndCalibrate,
  writeResults,
  type PyInfo,
  type Stats,
} from './sync-common.js';
import { pingpongServe } from './sync-targets.js';
import { fmt, formatTable, type Column } from './table.js';

/** Something measured in operations per second: `measure(n, batches)` gives seconds per batch of n. */
interface OpsImpl {
  label: string;
  node: boolean;
  measure(n: number, batches: number): Promise<number[]>;
}

/** Keeps reads from being optimised away (a module variable: its stores are observable). */
export let sink = 0;

function nodeLock(mode: 'async' | 'sync'): OpsImpl {
  const lock = new Lock();
  return {
    label: mode === 'async' ? 'billiard-ts: await acquire() + release()' : 'billiard-ts: acquireSync() + release()',
    node: true,
    async measure(n, batches) {
      const times: number[] = [];
      for (let b = 0; b < batches; b++) {
        const t0 = process.hrtime.bigint();
        if (mode === 'async') {
          for (let i = 0; i < n; i++) {
            await lock.acquire();
            lock.release();
          }
        } else {
          for (let i = 0; i < n; i++) {
            lock.acquireSync();
            lock.release();
          }
        }
        times.push(since(t0));
      }
      return times;
    },
  };
}

type ValueMode = 'get' | 'set' | 'rawget' | 'rawset';
const VALUE_MODES: readonly ValueMode[] = ['get', 'set', 'rawget', 'rawset'];
const VALUE_LABEL: Record<ValueMode, string> = {
  get: "Value('i').value read",
  set: "Value('i').value = i",
  rawget: "RawValue('i').value read",
  rawset: "RawValue('i').value = i",
};

function nodeValue(mode: ValueMode): OpsImpl {
  const v = mode.startsWith('raw') ? RawValue('i', 0) : Value('i', 0);
  return {
    label: 'billiard-ts',
    node: true,
    async measure(n, batches) {
      const times: number[] = [];
      for (let b = 0; b < batches; b++) {
        const t0 = process.hrtime.bigint();
        if (mode.endsWith('get')) {
          let s = 0;
          for (let i = 0; i < n; i++) s ^= v.value;
          sink ^= s;
        } else {
          for (let i = 0; i < n; i++) v.value = i;
        }
        times.push(since(t0));
      }
      return times;
    },
  };
}

function pyOps(driver: PyDriver, req: Record<string, unknown>, label = driver.lib): OpsImpl {
  return {
    label,
    node: false,
    async measure(n, batches) {
      return (await driver.request<{ times: number[] }>({ ...req, n, batches })).times;
    },
  };
}

/** A hand-off pair: `roundTrips(n)` gives n round-trip times in ns. */
interface PingPong {
  label: string;
  /** The child this process started, if any (for BENCH_PIN). */
  child?: Process;
  node: boolean;
  nodeNode: boolean;
  roundTrips(n: number): Promise<number[]>;
  close(): Promise<void>;
}

function nodePingPong(child: 'node' | 'python', mode: 'async' | 'sync', python: string): PingPong {
  const ping = new Semaphore(0);
  const pong = new Semaphore(0);
  const stop = new Semaphore(0);
  const p =
    child === 'node'
      ? new Process({ target: pingpongServe, args: [ping, pong, stop, mode], daemon: true, name: `pingpong-node-${mode}` })
      : new Process({ target: pyfunc('py_sync_targets.pingpong_serve'), args: [ping, pong, stop], pythonPath: [BENCH_DIR], python, daemon: true, name: 'pingpong-python' });
  p.start();
  const how = mode === 'async' ? 'await acquire()' : 'acquireSync()';
  // The first round trip waits with await, whatever the mode: until the child
  // runs, this process's event loop must turn (it hands the child its start-up).
  let started = false;
  return {
    child: p,
    label: child === 'node' ? `Node <-> Node, ${how}` : `Node (${how}) <-> Python (billiard)`,
    node: true,
    nodeNode: child === 'node',
    async roundTrips(n) {
      if (!started) {
        ping.release();
        await pong.acquire();
        started = true;
      }
      const samples: number[] = new Array(n);
      if (mode === 'async') {
        for (let i = 0; i < n; i++) {
          const t0 = process.hrtime.bigint();
          ping.release();
          await pong.acquire();
          samples[i] = Number(process.hrtime.bigint() - t0);
        }
      } else {
        for (let i = 0; i < n; i++) {
          const t0 = process.hrtime.bigint();
          ping.release();
          pong.acquireSync();
          samples[i] = Number(process.hrtime.bigint() - t0);
        }
      }
      return samples;
    },
    async close() {
      stop.release();
      ping.release();
      await p.join(10);
      if (p.exitcode === null) p.terminate();
    },
  };
}

function pyPingPong(driver: PyDriver): PingPong {
  return {
    label: `${driver.lib} <-> ${driver.lib}`,
    node: false,
    nodeNode: false,
    async roundTrips(n) {
      return (await driver.request<{ samples: number[] }>({ op: 'pingpong', n })).samples;
    },
    close: async () => undefined,
  };
}

interface OpsCell {
  section: string;
  label: string;
  node: boolean;
  n: number;
  /** operations per second of each batch */
  samples: number[];
  stats: Stats;
  vsBilliard: number;
  vsMultiprocessing: number;
}

interface HandoffCell {
  label: string;
  node: boolean;
  nodeNode: boolean;
  /** µs per hand-off (half a round trip) */
  stats: Stats;
  vsBilliard: number;
  vsMultiprocessing: number;
}

/** Warms up, calibrates and measures a group of implementations of one operation, in alternating rounds. */
async function measureOps(section: string, impls: OpsImpl[], options: BenchRunOptions, batchSeconds: number): Promise<OpsCell[]> {
  const rounds = Math.max(1, Math.floor(options.rounds));
  const batches = Math.max(1, Math.round(options.seconds / rounds / batchSeconds));
  const sizes = new Map<string, number>();
  for (const impl of impls) {
    options.progress(`${section}: calibrating and warming up ${impl.label}`);
    const n = await warmAndCalibrate(async (m) => (await impl.measure(m, 1))[0]!, {
      warmup: options.warmupSeconds,
      target: batchSeconds,
      start: 10_000,
      min: 1000,
      max: 50_000_000,
    });
    sizes.set(impl.label, n);
  }
  const samples = new Map<string, number[]>(impls.map((i) => [i.label, []]));
  for (const [round, impl] of rotations(impls, rounds)) {
    options.progress(`${section}: round ${round + 1}/${rounds}, ${impl.label}`);
    const n = sizes.get(impl.label)!;
    for (const t of await impl.measure(n, batches)) samples.get(impl.label)!.push(n / t);
  }
  const median = (label: string): number => stats(samples.get(label)!).median;
  return impls.map((impl) => {
    const s = stats(samples.get(impl.label)!);
    return {
      section,
      label: impl.label,
      node: impl.node,
      n: sizes.get(impl.label)!,
      samples: samples.get(impl.label)!,
      stats: s,
      vsBilliard: s.median / median('billiard'),
      vsMultiprocessing: s.median / median('multiprocessing'),
    };
  });
}

export async function run(options: BenchRunOptions): Promise<string> {
  const progress = options.progress;
  const rounds = Math.max(1, Math.floor(options.rounds));
  const batchSeconds = Math.min(0.05, Math.max(0.005, options.seconds / rounds / 10));
  const python = findPythonSync();

  const pinning = makePinning();
  const unpin = pinning.pinSelf();
  progress('starting Python drivers');
  const drivers = PY_LIBS.map((lib) => new PyDriver(python, lib, pinning));
  const info = await Promise.all(drivers.map((d) => d.request<PyInfo>({ op: 'info' })));
  const loadBefore = machine().loadavg1 as number;

  const ops: OpsCell[] = [];
  const handoffs: HandoffCell[] = [];
  const pairs: PingPong[] = [];
  try {
    ops.push(...(await measureOps('Lock', [nodeLock('async'), nodeLock('sync'), ...drivers.map((d) => pyOps(d, { op: 'lock' }))], options, batchSeconds)));
    for (const mode of VALUE_MODES) {
      ops.push(...(await measureOps(VALUE_LABEL[mode], [nodeValue(mode), ...drivers.map((d) => pyOps(d, { op: 'value', mode }))], options, batchSeconds)));
    }

    progress('hand-off: starting children');
    pairs.push(
      nodePingPong('node', 'async', python),
      nodePingPong('node', 'sync', python),
      nodePingPong('python', 'async', python),
      nodePingPong('python', 'sync', python),
      ...drivers.map(pyPingPong),
    );
    for (const pair of pairs) if (pair.child !== undefined) await pinning.pinChild(() => pair.child!.pid);
    const perRound = new Map<string, number>();
    for (const pair of pairs) {
      progress(`hand-off: warming up ${pair.label}`);
      const t0 = process.hrtime.bigint();
      do await pair.roundTrips(200);
      while (since(t0) < options.warmupSeconds);
      // Round trips in one round of BENCH_SECONDS / BENCH_ROUNDS, at the pace of a timed batch after the warm-up.
      const t1 = process.hrtime.bigint();
      await pair.roundTrips(500);
      perRound.set(pair.label, Math.max(200, Math.round((500 / since(t1)) * (options.seconds / rounds))));
    }
    const samples = new Map<string, number[]>(pairs.map((p) => [p.label, []]));
    for (const [round, pair] of rotations(pairs, rounds)) {
      progress(`hand-off: round ${round + 1}/${rounds}, ${pair.label}`);
      for (const rt of await pair.roundTrips(perRound.get(pair.label)!)) samples.get(pair.label)!.push(rt / 2 / 1000);
    }
    const median = (label: string): number => stats(samples.get(label)!).median;
    for (const pair of pairs) {
      const s = stats(samples.get(pair.label)!);
      handoffs.push({
        label: pair.label,
        node: pair.node,
        nodeNode: pair.nodeNode,
        stats: s,
        vsBilliard: s.median / median('billiard <-> billiard'),
        vsMultiprocessing: s.median / median('multiprocessing <-> multiprocessing'),
      });
    }
  } finally {
    progress('stopping children');
    await Promise.allSettled([...pairs.map((p) => p.close()), ...drivers.map((d) => d.close())]);
    unpin();
    progress('');
  }
  const loadAfter = machine().loadavg1 as number;

  const opsColumns: Column[] = [
    { header: 'operation' },
    { header: 'implementation' },
    { header: 'median ops/s', align: 'right' },
    { header: 'best ops/s', align: 'right' },
    { header: 'ns/op', align: 'right' },
    { header: 'IQR', align: 'right' },
    { header: 'vs billiard', align: 'right' },
    { header: 'vs multiprocessing', align: 'right' },
    { header: 'target >= 0.5x billiard', align: 'right' },
  ];
  const opsRows = ops.map((c) => [
    c.section,
    c.label,
    rate(c.stats.median),
    rate(c.stats.max),
    fmt(1e9 / c.stats.median),
    `${fmt(((c.stats.p75 - c.stats.p25) / c.stats.median) * 100, 2)}%`,
    `${fmt(c.vsBilliard)}x`,
    `${fmt(c.vsMultiprocessing)}x`,
    c.node ? (c.vsBilliard >= 0.5 ? 'met' : 'MISSED') : '',
  ]);
  const handoffColumns: Column[] = [
    { header: 'pair' },
    { header: 'median µs', align: 'right' },
    { header: 'p99 µs', align: 'right' },
    { header: 'min µs', align: 'right' },
    { header: 'IQR', align: 'right' },
    { header: 'hand-offs', align: 'right' },
    { header: 'vs billiard', align: 'right' },
    { header: 'vs multiprocessing', align: 'right' },
    { header: 'target <= 1.0x billiard', align: 'right' },
  ];
  const handoffRows = handoffs.map((c) => [
    c.label,
    fmt(c.stats.median),
    fmt(c.stats.p99),
    fmt(c.stats.min),
    `${fmt(((c.stats.p75 - c.stats.p25) / c.stats.median) * 100, 2)}%`,
    String(c.stats.n * 2),
    ratio(c.stats.median, c.stats.median / c.vsBilliard),
    ratio(c.stats.median, c.stats.median / c.vsMultiprocessing),
    c.nodeNode ? (c.vsBilliard <= 1 ? 'met' : 'MISSED') : '',
  ]);

  const py = info[0]!;
  const header = [
    `Uncontended Lock, Value/RawValue('i') and contended hand-off; Python ${py.python_version} (${py.python}), billiard ${py.version}, Python children by ${py.start_method}.`,
    `Medians of ${rounds} rounds (implementations alternate); ops: batches of ~${fmt(batchSeconds * 1000, 2)} ms, one sample each; hand-off: one sample per round trip, halved. Ratios against billiard and multiprocessing from this run. Load average ${fmt(loadBefore, 2)} before, ${fmt(loadAfter, 2)} after; ${pinning.note} (BENCH_PIN=${pinning.mode}).`,
  ];
  const missedOps = ops.filter((c) => c.node && c.vsBilliard < 0.5);
  const missedHandoff = handoffs.filter((c) => c.nodeNode && c.vsBilliard > 1);
  const verdicts = [
    missedOps.length === 0
      ? 'Target uncontended acquire+release and Value read/write >= 0.5x billiard: met.'
      : `Target uncontended acquire+release and Value read/write >= 0.5x billiard: missed by ${missedOps.map((c) => `${c.section} ${c.label} (${fmt(c.vsBilliard)}x)`).join('; ')}.`,
    missedHandoff.length === 0
      ? 'Target contended hand-off latency <= 1.0x billiard (Node <-> Node): met.'
      : `Target contended hand-off latency <= 1.0x billiard (Node <-> Node): missed by ${missedHandoff.map((c) => `${c.label} (${fmt(c.vsBilliard)}x)`).join('; ')}.`,
  ];
  const files = writeResults(
    'sync',
    {
      benchmark: 'sync',
      date: new Date().toISOString(),
      machine: machine(),
      python: info,
      settings: { seconds: options.seconds, warmupSeconds: options.warmupSeconds, rounds, batchSeconds, pin: pinning.mode },
      loadavg: [loadBefore, loadAfter],
      targets: { ops: 'ops/s >= 0.5x billiard', handoff: 'median µs per hand-off <= 1.0x billiard' },
      ops: ops.map((c) => ({ ...c, samples: c.samples.map((x) => Math.round(x)) })),
      handoffs,
    },
    [
      '## Locks, shared values and hand-off (`npm run bench -- sync`)',
      '',
      header.join('\n\n'),
      '',
      markdownTable(opsColumns, opsRows),
      '',
      markdownTable(handoffColumns, handoffRows),
      '',
      ...verdicts.map((v) => `- ${v}`),
    ].join('\n'),
  );
  return [
    ...header,
    '',
    formatTable(opsColumns, opsRows),
    '',
    formatTable(handoffColumns, handoffRows),
    '',
    ...verdicts,
    ...(files.length > 0 ? [`Results: ${files.join(', ')}`] : []),
  ].join('\n');
}
