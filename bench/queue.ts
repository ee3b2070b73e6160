/**
 * Queue benchmark (`npm run bench -- queue`): items per second through a
 * billiard `Queue` from one producer process to one consumer process,
 * small items (ints 0..n-1, or strings `'item-<i>'`), for
 *
 * | pair | producer | consumer (the driver, which times) |
 * | ---- | -------- | ---------------------------------- |
 * | Node -> Node | billiard-ts child (bench/sync-targets.ts) | this process |
 * | Node -> Python | this process | billiard child of this process (bench/py_sync_targets.py) |
 * | Python -> Node | billiard child of this process | this process |
 * | billiard -> billiard | child (fork) | bench/py_sync_bench.py --serve billiard |
 * | multiprocessing -> multiprocessing | child (fork) | py_sync_bench.py --serve multiprocessing |
 *
 * For Node -> Python the driver is the producer: it times from its command
 * to the consumer until the consumer's 'done'. Every child lives for the
 * whole run and serves batches on command (a Pipe), so no start-up is
 * timed. A batch is n items, n calibrated to about 80 ms per pair; one
 * sample is one batch (items/s = n / its time). Pairs take turns in each of
 * BENCH_ROUNDS rounds, after a warm-up of BENCH_WARMUP_SECONDS each.
 *
 * The queues are unbounded, unless an unbounded billiard-ts Queue loses
 * items (checked first, see `unboundedQueueWorks`): then every pair, the
 * Python ones too, uses Queue(256), and the report says so.
 *
 * The target is >= 1.0x billiard -> billiard. BENCH_PIN=same|split pins
 * drivers and children as in bench/connection.ts.
 */

import type { BenchRunOptions } from './run.js';

import { Pipe, Process, pyfunc, Queue, type Connection } from '../src/index.js';
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
import { queueServe } from './sync-targets.js';
import { fmt, formatTable, type Column } from './table.js';

/**
 * The bound used when an unbounded Queue loses items (see
 * {@link unboundedQueueWorks}): every pair, Python's too, then runs on
 * Queue(BOUNDED_MAXSIZE).
 */
const BOUNDED_MAXSIZE = 256;

/**
 * Whether 2000 ints put in one turn come back from an unbounded Queue (a
 * guard: they once did not, when a batch of more than IOV_MAX pieces made
 * writev fail; test/sync.test.ts covers that now).
 */
async function unboundedQueueWorks(): Promise<boolean> {
  const q = new Queue();
  try {
    for (let i = 0; i < 2000; i++) await q.put(i);
    for (let i = 0; i < 2000; i++) await q.get({ timeout: 2 });
    return q.feederError === null;
  } catch {
    return false;
  } finally {
    q.close();
  }
}

const KINDS = ['int', 'str'] as const;
type Kind = (typeof KINDS)[number];

interface Pair {
  label: string;
  producer: string;
  consumer: string;
  /** Seconds for each of `batches` batches of `n` items. */
  measure(kind: Kind, n: number, batches: number): Promise<number[]>;
  close(): Promise<void>;
  /** The child this process started, if any (for BENCH_PIN). */
  child?: Process;
}

/** A child serving `queueServe` (Node) or `queue_serve` (Python) on its own Queue and control Pipe. */
function startChild(python: string, runtime: 'node' | 'python', maxsize: number): { q: Queue; conn: Connection; child: Process } {
  const q = new Queue(maxsize);
  const [conn, theirs] = Pipe();
  const child =
    runtime === 'node'
      ? new Process({ target: queueServe, args: [q, theirs], daemon: true, name: 'queue-bench-node' })
      : new Process({ target: pyfunc('py_sync_targets.queue_serve'), args: [q, theirs], pythonPath: [BENCH_DIR], python, daemon: true, name: 'queue-bench-python' });
  child.start();
  theirs.close();
  return { q, conn, child };
}

async function stopChild({ q, conn, child }: { q: Queue; conn: Connection; child: Process }): Promise<void> {
  await conn.send(null);
  await child.join(10);
  if (child.exitcode === null) child.terminate();
  conn.close();
  q.close();
}

/** This process gets what a child puts. */
function nodeConsumes(label: string, producer: string, python: string, runtime: 'node' | 'python', maxsize: number): Pair {
  const c = startChild(python, runtime, maxsize);
  const { q, conn } = c;
  return {
    label,
    producer,
    consumer: 'Node',
    child: c.child,
    async measure(kind, n, batches) {
      const times: number[] = [];
      for (let b = 0; b < batches; b++) {
        const t0 = process.hrtime.bigint();
        await conn.send(['produce', kind, n]);
        for (let i = 0; i < n; i++) await q.get();
        times.push(since(t0));
      }
      return times;
    },
    close: () => stopChild(c),
  };
}

/** This process puts what a child gets. */
function nodeProduces(label: string, consumer: string, python: string, runtime: 'node' | 'python', maxsize: number): Pair {
  const c = startChild(python, runtime, maxsize);
  const { q, conn } = c;
  return {
    label,
    producer: 'Node',
    consumer,
    child: c.child,
    async measure(kind, n, batches) {
      const times: number[] = [];
      for (let b = 0; b < batches; b++) {
        const t0 = process.hrtime.bigint();
        await conn.send(['consume', n]);
        if (kind === 'int') {
          for (let i = 0; i < n; i++) await q.put(i);
        } else {
          for (let i = 0; i < n; i++) await q.put(`item-${i}`);
        }
        if ((await conn.recv()) !== 'done') throw new Error('the consumer did not answer done');
        times.push(since(t0));
      }
      return times;
    },
    close: () => stopChild(c),
  };
}

function pythonPair(driver: PyDriver, maxsize: number): Pair {
  return {
    label: `${driver.lib} -> ${driver.lib}`,
    producer: `${driver.lib} (Python)`,
    consumer: `${driver.lib} (Python)`,
    async measure(kind, n, batches) {
      return (await driver.request<{ times: number[] }>({ op: 'queue', kind, n, batches, maxsize })).times;
    },
    close: () => driver.close(),
  };
}

/** A batch that has not finished after this long is stuck (a lost item): the run stops. */
const STUCK_SECONDS = 60;

/** `p`, or the end of this process with a message when it takes longer than STUCK_SECONDS. */
async function unstuck<T>(p: Promise<T>, what: string): Promise<T> {
  const timer = setTimeout(() => {
    console.error(`\nqueue benchmark: ${what} did not finish in ${STUCK_SECONDS} s (an item lost?); stopping`);
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
  pair: string;
  producer: string;
  consumer: string;
  n: number;
  /** items/s of each batch */
  samples: number[];
  stats: Stats;
  vsBilliard: number;
}

export async function run(options: BenchRunOptions): Promise<string> {
  const progress = options.progress;
  const rounds = Math.max(1, Math.floor(options.rounds));
  const roundSeconds = options.seconds / rounds;
  const batchSeconds = Math.min(0.2, Math.max(0.02, roundSeconds / 3));
  const batchesPerRound = Math.max(1, Math.round(roundSeconds / batchSeconds));
  const python = findPythonSync();

  const pinning = makePinning();
  const unpin = pinning.pinSelf();
  progress('starting children');
  const drivers = PY_LIBS.map((lib) => new PyDriver(python, lib, pinning));
  const info = await Promise.all(drivers.map((d) => d.request<PyInfo>({ op: 'info' })));
  progress('checking that an unbounded Queue keeps every item');
  const unbounded = await unboundedQueueWorks();
  const maxsize = unbounded ? 0 : BOUNDED_MAXSIZE;
  const pairs: Pair[] = [
    nodeConsumes('Node -> Node', 'Node', python, 'node', maxsize),
    nodeProduces('Node -> Python', 'billiard (Python)', python, 'python', maxsize),
    nodeConsumes('Python -> Node', 'billiard (Python)', python, 'python', maxsize),
    ...drivers.map((d) => pythonPair(d, maxsize)),
  ];
  const billiardLabel = pairs[3]!.label;
  const loadBefore = machine().loadavg1 as number;

  const cells: Cell[] = [];
  try {
    for (const pair of pairs) if (pair.child !== undefined) await pinning.pinChild(() => pair.child!.pid);
    for (const kind of KINDS) {
      const sizes = new Map<string, number>();
      for (const pair of pairs) {
        progress(`${kind}: calibrating and warming up ${pair.label}`);
        const n = await warmAndCalibrate(async (m) => (await unstuck(pair.measure(kind, m, 1), pair.label))[0]!, {
          warmup: options.warmupSeconds,
          target: batchSeconds,
          start: 1000,
          min: 1000,
          max: 2_000_000,
        });
        sizes.set(pair.label, n);
      }
      const samples = new Map<string, number[]>(pairs.map((p) => [p.label, []]));
      for (const [round, pair] of rotations(pairs, rounds)) {
        progress(`${kind}: round ${round + 1}/${rounds}, ${pair.label}`);
        const n = sizes.get(pair.label)!;
        for (const t of await unstuck(pair.measure(kind, n, batchesPerRound), pair.label)) samples.get(pair.label)!.push(n / t);
      }
      const base = stats(samples.get(billiardLabel)!).median;
      for (const pair of pairs) {
        const s = stats(samples.get(pair.label)!);
        cells.push({ kind, pair: pair.label, producer: pair.producer, consumer: pair.consumer, n: sizes.get(pair.label)!, samples: samples.get(pair.label)!, stats: s, vsBilliard: s.median / base });
      }
    }
  } finally {
    progress('stopping children');
    await Promise.allSettled(pairs.map((p) => p.close()));
    unpin();
    progress('');
  }
  const loadAfter = machine().loadavg1 as number;

  const columns: Column[] = [
    { header: 'items' },
    { header: 'producer -> consumer' },
    { header: 'median items/s', align: 'right' },
    { header: 'best items/s', align: 'right' },
    { header: 'IQR', align: 'right' },
    { header: 'batches x n', align: 'right' },
    { header: 'vs billiard', align: 'right' },
    { header: 'target >= 1.0x', align: 'right' },
  ];
  const isNode = (c: Cell): boolean => c.producer === 'Node' || c.consumer === 'Node';
  const rows = cells.map((c) => [
    c.kind,
    c.pair,
    rate(c.stats.median),
    rate(c.stats.max),
    `${fmt(((c.stats.p75 - c.stats.p25) / c.stats.median) * 100, 2)}%`,
    `${c.stats.n} x ${c.n}`,
    ratio(c.stats.median, c.stats.median / c.vsBilliard),
    isNode(c) ? (c.vsBilliard >= 1 ? 'met' : 'MISSED') : '',
  ]);
  const py = info[0]!;
  const header = [
    ...(unbounded
      ? []
      : [
          `NOTE: an unbounded billiard-ts Queue loses items here (2000 ints put in one turn: writev of more than IOV_MAX iovecs fails with EINVAL in the feeder), so every pair runs on Queue(${BOUNDED_MAXSIZE}).`,
        ]),
    `Queue${maxsize > 0 ? `(maxsize=${maxsize})` : ''} put -> get, one producer and one consumer process; items are ints 0..n-1 ('int') or 'item-<i>' strings ('str'); Python ${py.python_version} (${py.python}), billiard ${info[0]!.version}, start method ${py.start_method} for Python -> Python.`,
    `Median of ${rounds} rounds x ${batchesPerRound} batches of ~${fmt(batchSeconds * 1000, 2)} ms per pair (pairs alternate); "vs billiard" is the median over billiard -> billiard's from this run. Load average ${fmt(loadBefore, 2)} before, ${fmt(loadAfter, 2)} after; ${pinning.note} (BENCH_PIN=${pinning.mode}).`,
  ];
  const misses = cells.filter((c) => isNode(c) && c.vsBilliard < 1);
  const verdict =
    misses.length === 0
      ? 'Target Queue >= 1.0x billiard items/s: met by every Node pair.'
      : `Target Queue >= 1.0x billiard items/s: missed by ${misses.map((c) => `${c.pair} ${c.kind} (${fmt(c.vsBilliard)}x)`).join(', ')}.`;
  const files = writeResults(
    'queue',
    {
      benchmark: 'queue',
      date: new Date().toISOString(),
      machine: machine(),
      python: info,
      settings: { seconds: options.seconds, warmupSeconds: options.warmupSeconds, rounds, batchesPerRound, batchSeconds, pin: pinning.mode, maxsize },
      loadavg: [loadBefore, loadAfter],
      target: 'items/s >= 1.0x billiard -> billiard',
      cells: cells.map((c) => ({ ...c, samples: c.samples.map((x) => Math.round(x)) })),
    },
    ['## Queue throughput (`npm run bench -- queue`)', '', header.join('\n\n'), '', markdownTable(columns, rows), '', verdict].join('\n'),
  );
  return [...header, '', formatTable(columns, rows), '', verdict, ...(files.length > 0 ? [`Results: ${files.join(', ')}`] : [])].join('\n');
}
