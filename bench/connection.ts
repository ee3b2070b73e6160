/**
 * Connection benchmark: billiard-ts's Connection against billiard's, with
 * real processes on both ends, in one run so the ratios are meaningful.
 *
 * A pair is a driver (the process that times) and an echo child it starts
 * on an inherited socket pair end (Pipe) and, on demand, over TCP. Drivers
 * are a plain `node` process on dist/ (bench/conn-node-driver.mjs,
 * billiard-ts) or a billiard process (bench/py_conn_bench.py --serve);
 * children are bench/conn-echo-child.mjs (billiard-ts, plain `node` on
 * dist/) or bench/py_conn_bench.py --echo (billiard). No TypeScript loader
 * runs in a measured process. The four pairs
 * Node/Node, Node/billiard, billiard/Node and billiard/billiard run the same
 * commands; for each cell they take turns in alternating rounds, and their
 * samples are pooled, so that a change of machine load hits all of them alike.
 *
 * Measured: round trips of a small object and of 64 bytes (Pipe and TCP),
 * one-way throughput of 1 KiB, 64 KiB and 1 MiB messages both ways (Pipe and
 * TCP), and TCP Client() + authkey handshake against a Listener. Ratios are
 * against billiard/billiard measured in the same run.
 *
 * BENCH_PIN=none|same|split runs drivers and children under `taskset -c`:
 * all on CPU 0 (same), or drivers on CPU 0 and children on CPU 1 (split).
 */

import { spawnSync } from 'node:child_process';
import { cpus, loadavg } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

import { findPythonSync } from '../src/process/python.js';
import { measuresDist } from './dist.js';
import { fmt, formatTable, quantiles, type Column } from './table.js';
import { JsonLineWorker } from './json-worker.js';

export type PinMode = 'none' | 'same' | 'split';
type Impl = 'node' | 'python';
type Transport = 'pipe' | 'tcp';
type Payload = 'obj' | 'bytes';
/** 'send': the driver sends, the child receives; 'recv': the other way. */
type Dir = 'send' | 'recv';

export interface ConnectionBenchOptions {
  /** Seconds of round trips (and of connects) per cell and pair; throughput cells get half. Default 1. */
  seconds?: number;
  /** Seconds of warm-up per cell and pair (a tenth after the first round). Default 0.25. */
  warmupSeconds?: number;
  /** Rounds the measurement is split into, alternating pairs. Default 4. */
  rounds?: number;
  /** CPU pinning; default BENCH_PIN, else 'none'. */
  pin?: PinMode;
  /** Python interpreter; default findPythonSync(). */
  python?: string;
  /** Progress messages (not part of the report). Default: none. */
  progress?: (message: string) => void;
}

const BENCH_DIR = dirname(fileURLToPath(import.meta.url));
const ROOT = dirname(BENCH_DIR);
const PY_SCRIPT = join(BENCH_DIR, 'py_conn_bench.py');
/** How the Node processes start: plain node on dist/, or tsx on src/ with BENCH_SOURCE=src. */
const NODE = measuresDist ? [process.execPath] : [process.execPath, '--import', 'tsx'];
const NODE_CHILD_CMD = [...NODE, join(BENCH_DIR, 'conn-echo-child.mjs')];
const NODE_DRIVER = join(BENCH_DIR, 'conn-node-driver.mjs');
const SIZES = [1024, 64 * 1024, 1024 * 1024] as const;
/**
 * Messages per throughput batch (one sample is one batch): 1 MiB of 1 KiB
 * messages, 4 MiB of 64 KiB, 8 MiB of 1 MiB, so that even the slowest pair
 * fits a few batches in a round.
 */
const BATCH_COUNT: Readonly<Record<number, number>> = { 1024: 1024, [64 * 1024]: 64, [1024 * 1024]: 8 };
/** Connects per pair and round are capped at this many per second of BENCH_SECONDS (TIME_WAIT sockets). */
const CONNECTS_PER_SECOND_CAP = 2000;

const IMPL_NAME: Record<Impl, string> = { node: 'billiard-ts', python: 'billiard' };
const DIRECTIONS: readonly Dir[] = ['send', 'recv'];

const now = (): bigint => process.hrtime.bigint();

interface ProcInfo {
  impl: string;
  runtime: string;
  pid: number;
  cpus: string;
}

/** One driver with its echo child: the same operations whichever runtime each is. */
interface Pair {
  readonly driver: Impl;
  readonly child: Impl;
  info(): Promise<{ driver: ProcInfo; child: ProcInfo }>;
  /** Round-trip times in ns. */
  rtt(transport: Transport, payload: Payload, seconds: number, warmup: number): Promise<number[]>;
  /** [bytes, ns] per batch of `count` messages of `size` bytes. */
  tput(transport: Transport, dir: Dir, size: number, count: number, seconds: number, warmup: number): Promise<Array<[number, number]>>;
  /** Client(address, authkey) times in ns, to the child's Listener. */
  connect(seconds: number, warmup: number, maxCount: number): Promise<number[]>;
  close(): Promise<void>;
}

// ------------------------------------------------------------------ pinning

interface Pinning {
  mode: PinMode;
  /** Prefix of the drivers' command lines (billiard drivers). */
  driverPrefix: string[];
  /** Prefix of the children's command lines. */
  childPrefix: string[];
  note: string;
}

function hasTaskset(): boolean {
  const r = spawnSync('taskset', ['--version'], { stdio: 'ignore' });
  return r.status === 0;
}

function makePinning(requested: PinMode): Pinning {
  const none: Pinning = { mode: 'none', driverPrefix: [], childPrefix: [], note: 'unpinned' };
  if (requested === 'none') return none;
  if (!hasTaskset()) return { ...none, note: `BENCH_PIN=${requested} asked, but taskset (util-linux) is not installed: running unpinned` };
  let mode = requested;
  let note = '';
  if (mode === 'split' && cpus().length < 2) {
    mode = 'same';
    note = `BENCH_PIN=split needs 2 CPUs, this machine has ${cpus().length}: running BENCH_PIN=same. `;
  }
  const childCpu = mode === 'split' ? '1' : '0';
  note += mode === 'same' ? 'pinned: drivers and children on CPU 0 (taskset -c 0)' : 'pinned: drivers on CPU 0, children on CPU 1 (taskset -c)';
  return {
    mode,
    driverPrefix: ['taskset', '-c', '0'],
    childPrefix: ['taskset', '-c', childCpu],
    note,
  };
}

/** Waits for a child's exit, at most 10 s (the timer does not keep the process alive). */
function exitOrTimeout(exited: Promise<unknown>): Promise<unknown> {
  return Promise.race([exited, new Promise((r) => setTimeout(r, 10_000).unref())]);
}

// ------------------------------------------------------------------ drivers

/**
 * A driver process with its child, one JSON request per line: billiard's
 * (py_conn_bench.py --serve) or billiard-ts's (conn-node-driver.mjs), which
 * answer the same requests.
 */
class DriverPair implements Pair {
  readonly #worker: JsonLineWorker;

  constructor(
    readonly driver: Impl,
    readonly child: Impl,
    python: string,
    driverPrefix: readonly string[],
    childPrefix: readonly string[],
  ) {
    const command =
      driver === 'python'
        ? [python, PY_SCRIPT, '--serve', '--child', child, '--child-prefix', JSON.stringify(childPrefix), ...(child === 'node' ? ['--node-cmd', JSON.stringify(NODE_CHILD_CMD)] : [])]
        : [...NODE, NODE_DRIVER, '--child', child, '--python', python, '--child-prefix', JSON.stringify(childPrefix), '--node-child', JSON.stringify(NODE_CHILD_CMD)];
    this.#worker = new JsonLineWorker([...driverPrefix, ...command], `${IMPL_NAME[driver]} driver`, { cwd: ROOT });
  }

  #request<T>(req: Record<string, unknown>): Promise<T> {
    return this.#worker.request<T>(req);
  }

  info(): Promise<{ driver: ProcInfo; child: ProcInfo }> {
    return this.#request({ cmd: 'info' });
  }

  async rtt(transport: Transport, payload: Payload, seconds: number, warmup: number): Promise<number[]> {
    return (await this.#request<{ samples_ns: number[] }>({ cmd: 'rtt', transport, payload, seconds, warmup })).samples_ns;
  }

  async tput(transport: Transport, dir: Dir, size: number, count: number, seconds: number, warmup: number): Promise<Array<[number, number]>> {
    return (await this.#request<{ batches: Array<[number, number]> }>({ cmd: 'tput', transport, dir, size, count, seconds, warmup })).batches;
  }

  async connect(seconds: number, warmup: number, maxCount: number): Promise<number[]> {
    return (await this.#request<{ samples_ns: number[] }>({ cmd: 'connect', seconds, warmup, max_count: maxCount })).samples_ns;
  }

  async close(): Promise<void> {
    this.#worker.tell({ cmd: 'exit' });
    this.#worker.end();
    await exitOrTimeout(this.#worker.exited);
  }
}

// ------------------------------------------------------------------ statistics

/** Statistics of a cell's samples (ns, or MB/s for throughput). */
interface Stats {
  median: number;
  p99: number;
  min: number;
  max: number;
  /** Interquartile range over the median. */
  spread: number;
  n: number;
}

function stats(samples: readonly number[]): Stats {
  const { at, sorted: s } = quantiles(samples);
  const median = at(0.5);
  return { median, p99: at(0.99), min: s[0]!, max: s[s.length - 1]!, spread: (at(0.75) - at(0.25)) / median, n: s.length };
}

const pairKey = (p: { driver: Impl; child: Impl }): string => `${p.driver}/${p.child}`;
const BASELINE = 'python/python';

/**
 * Runs one cell: `rounds` rounds, each pair in turn (the order rotates each
 * round), full warm-up in the first round only. Returns the pooled samples by pair.
 */
async function cell<T>(pairs: readonly Pair[], rounds: number, warmup: number, label: string, progress: (m: string) => void, fn: (p: Pair, warm: number) => Promise<T[]>): Promise<Map<string, T[]>> {
  const out = new Map<string, T[]>(pairs.map((p) => [pairKey(p), []]));
  for (let round = 0; round < rounds; round++) {
    const warm = round === 0 ? warmup : warmup / 10;
    for (let k = 0; k < pairs.length; k++) {
      const p = pairs[(k + round) % pairs.length]!;
      progress(`${label}: ${IMPL_NAME[p.driver]} -> ${IMPL_NAME[p.child]}, round ${round + 1}/${rounds}`);
      out.get(pairKey(p))!.push(...(await fn(p, warm)));
    }
  }
  return out;
}

// ------------------------------------------------------------------ run

interface RttResult {
  transport: Transport;
  payload: Payload;
  byPair: Map<string, Stats>;
}

interface TputResult {
  transport: Transport;
  dir: Dir;
  size: number;
  count: number;
  /** MB/s per batch. */
  byPair: Map<string, Stats>;
}

/** Runs the benchmark and returns its report (tables and notes). */
export async function run(options: ConnectionBenchOptions = {}): Promise<string> {
  const seconds = options.seconds ?? 1;
  const warmupSeconds = options.warmupSeconds ?? 0.25;
  const rounds = Math.max(1, Math.floor(options.rounds ?? 4));
  const progress = options.progress ?? ((): void => {});
  const requested = options.pin ?? parsePin(process.env.BENCH_PIN);
  const python = options.python ?? findPythonSync();
  const pinning = makePinning(requested);

  const started = now();
  const loadBefore = loadavg()[0]!;
  const pairs: Pair[] = [];
  try {
    progress('starting the drivers and echo children');
    for (const driver of ['node', 'python'] as const) {
      for (const child of ['node', 'python'] as const) pairs.push(new DriverPair(driver, child, python, pinning.driverPrefix, pinning.childPrefix));
    }
    const infos = new Map<string, { driver: ProcInfo; child: ProcInfo }>();
    for (const p of pairs) infos.set(pairKey(p), await p.info());

    const perRound = seconds / rounds;
    const warm = warmupSeconds;
    const rtts: RttResult[] = [];
    const tputs: TputResult[] = [];
    for (const transport of ['pipe', 'tcp'] as const) {
      for (const payload of ['obj', 'bytes'] as const) {
        const label = `round trip ${transport} ${payload}`;
        const got = await cell(pairs, rounds, warm, label, progress, (p, w) => p.rtt(transport, payload, perRound, w));
        rtts.push({ transport, payload, byPair: new Map([...got].map(([k, v]) => [k, stats(v)])) });
      }
      for (const dir of DIRECTIONS) {
        for (const size of SIZES) {
          const count = BATCH_COUNT[size]!;
          const label = `throughput ${transport} ${dir} ${size} B`;
          const got = await cell(pairs, rounds, warm / 2, label, progress, (p, w) => p.tput(transport, dir, size, count, perRound / 2, w));
          const byPair = new Map([...got].map(([k, v]) => [k, stats(v.map(([bytes, t]) => (bytes / t) * 1e3))]));
          tputs.push({ transport, dir, size, count, byPair });
        }
      }
    }
    const maxCount = Math.max(5, Math.ceil((CONNECTS_PER_SECOND_CAP * seconds) / rounds));
    const connects = await cell(pairs, rounds, warm, 'connect + handshake', progress, (p, w) => p.connect(perRound, w, maxCount));
    const connectStats = new Map([...connects].map(([k, v]) => [k, stats(v)]));
    progress('');
    const elapsed = Number(now() - started) / 1e9;
    const load: [number, number] = [loadBefore, loadavg()[0]!];
    return report({ python, pinning, infos, rtts, tputs, connectStats, seconds, warmupSeconds, rounds, elapsed, load });
  } finally {
    await Promise.allSettled(pairs.map((p) => p.close()));
  }
}

function parsePin(raw: string | undefined): PinMode {
  if (raw === undefined || raw === '') return 'none';
  if (raw === 'none' || raw === 'same' || raw === 'split') return raw;
  throw new Error(`BENCH_PIN must be none, same or split, got ${JSON.stringify(raw)}`);
}

// ------------------------------------------------------------------ report

interface ReportInput {
  python: string;
  pinning: Pinning;
  infos: Map<string, { driver: ProcInfo; child: ProcInfo }>;
  rtts: RttResult[];
  tputs: TputResult[];
  connectStats: Map<string, Stats>;
  seconds: number;
  warmupSeconds: number;
  rounds: number;
  elapsed: number;
  /** 1-minute load average before and after. */
  load: [number, number];
}

const PAIR_ORDER = ['node/node', 'node/python', 'python/node', 'python/python'];
const us = (nsValue: number): string => fmt(nsValue / 1e3);
const pct = (x: number): string => `${Math.round(x * 100)}%`;
const times = (x: number): string => `${x.toFixed(2)}x`;
const sizeLabel = (n: number): string => (n >= 1024 * 1024 ? `${n / (1024 * 1024)} MiB` : `${n / 1024} KiB`);

function names(key: string): [string, string] {
  const [d, c] = key.split('/') as [Impl, Impl];
  return [IMPL_NAME[d], IMPL_NAME[c]];
}

function geomean(xs: readonly number[]): number {
  return Math.exp(xs.reduce((s, x) => s + Math.log(x), 0) / xs.length);
}

function report(r: ReportInput): string {
  const out: string[] = [];
  const py = r.infos.get(BASELINE)!;
  out.push('== connection ==');
  out.push(`billiard-ts on Node ${process.version}; ${py.driver.impl} on ${py.driver.runtime} (${r.python})`);
  out.push(`pairs: driver (times, parent) -> echo child; Pipe = AF_UNIX socket pair end inherited by the child (fd), TCP = Listener/Client on 127.0.0.1 without authkey`);
  out.push(`timing: >= ${fmt(r.seconds / r.rounds)} s per pair and round trip cell (${fmt(r.seconds / r.rounds / 2)} s per throughput cell) in each of ${r.rounds} alternating rounds, after ${r.warmupSeconds} s warm-up (a tenth in later rounds)`);
  out.push(`pinning: ${r.pinning.note}`);
  const cpuLine = PAIR_ORDER.map((k) => {
    const i = r.infos.get(k)!;
    const [d, c] = names(k);
    return `${d} driver ${i.driver.cpus} / ${c} child ${i.child.cpus}`;
  });
  out.push(`allowed CPUs: ${cpuLine.join('; ')}`);
  out.push('');

  // Round trips.
  const rttRows: string[][] = [];
  const rttRatioRows: string[][] = [];
  const rttLogs = new Map<string, number[]>();
  for (const c of r.rtts) {
    const base = c.byPair.get(BASELINE)!;
    for (const key of PAIR_ORDER) {
      const s = c.byPair.get(key)!;
      const [d, ch] = names(key);
      const what = c.payload === 'obj' ? "{'id': 1, 'name': 'x'}" : '64 bytes';
      rttRows.push([c.transport, what, d, ch, us(s.median), us(s.p99), us(s.min), pct(s.spread), String(s.n)]);
      if (key !== BASELINE) {
        const m = s.median / base.median;
        const p = s.p99 / base.p99;
        rttLogs.set(key, [...(rttLogs.get(key) ?? []), m]);
        rttRatioRows.push([c.transport, what, d, ch, times(m), times(p), times(s.min / base.min)]);
      }
    }
  }
  out.push('round trip: send + recv of the echo (send/recv for the object, send_bytes/recv_bytes for 64 bytes); µs');
  const rttCols: Column[] = [
    { header: 'transport' }, { header: 'payload' }, { header: 'driver' }, { header: 'echo child' },
    { header: 'median µs', align: 'right' }, { header: 'p99 µs', align: 'right' }, { header: 'min µs', align: 'right' },
    { header: 'IQR', align: 'right' }, { header: 'round trips', align: 'right' },
  ];
  out.push(formatTable(rttCols, rttRows));
  out.push('');

  // Throughput.
  const tputRows: string[][] = [];
  const tputRatioRows: string[][] = [];
  const tputLogs = new Map<string, number[]>();
  for (const c of r.tputs) {
    const base = c.byPair.get(BASELINE)!;
    for (const key of PAIR_ORDER) {
      const s = c.byPair.get(key)!;
      const [d, ch] = names(key);
      const [sender, receiver] = c.dir === 'send' ? [d, ch] : [ch, d];
      const timedBy = c.dir === 'send' ? 'sender' : 'receiver';
      tputRows.push([c.transport, sizeLabel(c.size), sender, receiver, timedBy, fmt(s.median), fmt(s.max), pct(s.spread), fmt((s.median * 1e6) / c.size), String(s.n)]);
      if (key !== BASELINE) {
        const m = s.median / base.median;
        tputLogs.set(key, [...(tputLogs.get(key) ?? []), m]);
        tputRatioRows.push([c.transport, sizeLabel(c.size), sender, receiver, timedBy, times(m), times(s.max / base.max)]);
      }
    }
  }
  const batches = SIZES.map((n) => `${BATCH_COUNT[n]} x ${sizeLabel(n)}`).join(', ');
  out.push(`one-way throughput: batches of K send_bytes (${batches}); the receiver counts the bytes and the batch ends when it has them all; MB/s = 10^6 bytes/s, one sample per batch`);
  out.push(formatTable(
    [
      { header: 'transport' }, { header: 'size' }, { header: 'sender' }, { header: 'receiver' }, { header: 'driver (times)' },
      { header: 'median MB/s', align: 'right' }, { header: 'best MB/s', align: 'right' }, { header: 'IQR', align: 'right' },
      { header: 'msgs/s', align: 'right' }, { header: 'batches', align: 'right' },
    ],
    tputRows,
  ));
  out.push('');

  // Connect + handshake.
  const connRows: string[][] = [];
  const connRatioRows: string[][] = [];
  const connBase = r.connectStats.get(BASELINE)!;
  for (const key of PAIR_ORDER) {
    const s = r.connectStats.get(key)!;
    const [d, ch] = names(key);
    connRows.push([d, ch, us(s.median), us(s.p99), us(s.min), pct(s.spread), String(s.n)]);
    if (key !== BASELINE) connRatioRows.push([d, ch, times(s.median / connBase.median), times(s.p99 / connBase.p99), times(s.min / connBase.min)]);
  }
  out.push('connect + handshake: Client(address, authkey) to a Listener(("127.0.0.1", 0), authkey) in the child, both handshake directions (the listener accepts and closes); µs');
  out.push(formatTable(
    [
      { header: 'client (driver)' }, { header: 'listener (child)' }, { header: 'median µs', align: 'right' }, { header: 'p99 µs', align: 'right' },
      { header: 'min µs', align: 'right' }, { header: 'IQR', align: 'right' }, { header: 'connects', align: 'right' },
    ],
    connRows,
  ));
  out.push('');

  // Ratios.
  out.push('round trip vs billiard -> billiard (time / billiard time; <= 1.00x is the goal)');
  out.push(formatTable(
    [
      { header: 'transport' }, { header: 'payload' }, { header: 'driver' }, { header: 'echo child' },
      { header: 'median', align: 'right' }, { header: 'p99', align: 'right' }, { header: 'min', align: 'right' },
    ],
    rttRatioRows,
  ));
  out.push(`geometric means of the median ratios: ${[...rttLogs].map(([k, xs]) => `${names(k).join(' -> ')} ${times(geomean(xs))}`).join('; ')}`);
  out.push('');
  out.push('throughput vs billiard -> billiard in the same direction of the pair (MB/s / billiard MB/s; >= 1.00x is the goal)');
  out.push(formatTable(
    [
      { header: 'transport' }, { header: 'size' }, { header: 'sender' }, { header: 'receiver' }, { header: 'driver (times)' },
      { header: 'median', align: 'right' }, { header: 'best', align: 'right' },
    ],
    tputRatioRows,
  ));
  out.push(`geometric means of the median ratios: ${[...tputLogs].map(([k, xs]) => `${names(k).join(' / ')} ${times(geomean(xs))}`).join('; ')}`);
  out.push('');
  out.push('connect + handshake vs billiard -> billiard (time / billiard time; <= 1.00x is the goal)');
  out.push(formatTable(
    [{ header: 'client' }, { header: 'listener' }, { header: 'median', align: 'right' }, { header: 'p99', align: 'right' }, { header: 'min', align: 'right' }],
    connRatioRows,
  ));
  out.push('');
  out.push('notes:');
  out.push('- billiard-ts challenges in the {sha256} form, billiard with 20 random bytes and HMAC-MD5; each side answers in kind, so a handshake\'s cost depends on which side challenges');
  out.push('- billiard does not set TCP_NODELAY; billiard-ts does on both ends of its TCP connections');
  out.push(`- measured in ${r.elapsed.toFixed(1)} s; 1-minute load average ${r.load[0].toFixed(2)} before, ${r.load[1].toFixed(2)} after (${cpus().length} CPUs): other load on the machine shows in p99 and IQR first`);
  return out.join('\n');
}
