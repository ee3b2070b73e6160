/**
 * Pickle benchmark: billiard-ts vs CPython's C pickle vs the npm package
 * pickleparser, on the standard payload (10,000 small dicts), at several
 * protocols, in one run so the ratios are meaningful.
 *
 * CPython runs in a worker subprocess (bench/py_pickle_bench.py --serve),
 * which builds the payload and writes the pickles it makes; every JavaScript
 * loads reads those very bytes, and billiard-ts's dumps pickles the value it
 * loaded from them. For each cell the implementations are timed in
 * alternating rounds and their samples pooled, so that a change of machine
 * load hits all of them alike.
 */

import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import v8 from 'node:v8';
import vm from 'node:vm';

import { NameRegistry, Parser } from 'pickleparser';

import { dumps, loads } from '../src/pickle/index.js';
import { findPythonSync } from '../src/process/python.js';
import { fmt, formatTable, quantiles, type Column } from './table.js';
import { JsonLineWorker } from './json-worker.js';

/** Payload variants: the base added to each row's index in the 'big' field. */
export type Variant = 'big70' | 'big40';
const VARIANT_LABEL: Record<Variant, string> = { big70: '2**70', big40: '2**40' };
const VARIANT_BIG: Record<Variant, bigint> = { big70: 2n ** 70n, big40: 2n ** 40n };

export interface PickleBenchOptions {
  /** Seconds of measurement per cell and implementation (after warm-up). Default 1. */
  seconds?: number;
  /** Seconds of warm-up per cell and implementation. Default 0.25. */
  warmupSeconds?: number;
  /** Rounds the measurement is split into, alternating implementations. Default 4. */
  rounds?: number;
  /** Rows of the payload. Default 10,000. */
  rows?: number;
  /** Default [2, 4, 5]. */
  protocols?: readonly number[];
  /** Default ['big70', 'big40']. */
  variants?: readonly Variant[];
  /** Python interpreter; default findPythonSync(). */
  python?: string;
  /** Progress messages (not part of the report). Default: none. */
  progress?: (message: string) => void;
}

type Impl = 'CPython' | 'billiard-ts' | 'pickleparser';
/**
 * `dumps fresh`: dumps of a value made for that call (by loading the pickle,
 * outside the timed span), as a job's or a message's arguments are; `dumps`
 * pickles the same value again and again.
 */
type Op = 'dumps' | 'dumps fresh' | 'loads';
const IMPLS: readonly Impl[] = ['CPython', 'billiard-ts', 'pickleparser'];
const OPS: readonly Op[] = ['dumps', 'dumps fresh', 'loads'];

/** Statistics of one cell's samples; times in nanoseconds. */
interface Timing {
  medianNs: number;
  meanNs: number;
  minNs: number;
  /** Interquartile range over the median: how noisy the cell was. */
  spread: number;
  iterations: number;
}

/** A cell was timed, could not run (reason), or does not apply. */
type Cell = { kind: 'ok'; timing: Timing } | { kind: 'fails'; reason: string } | { kind: 'n/a' };

/** Memory of one loads result, in bytes. */
interface Memory {
  retained: number;
  /** CPython: tracemalloc peak; JS: heap growth over the call, before any explicit GC. */
  peak: number;
}

interface CaseResult {
  variant: Variant;
  protocol: number;
  bytes: number;
  cells: Map<`${Impl} ${Op}`, Cell>;
  /** dumps(loads(b, { floats: 'wrap-integral' })) equals CPython's bytes. */
  identical: boolean;
  /** dumps(loads(b)) with loads' default options equals CPython's bytes. */
  identicalDefault: boolean;
  memory: Map<Impl, Memory | string>;
}

interface PyInfo {
  python: string;
  implementation: string;
  executable: string;
  c_accelerator: boolean;
  gc_enabled: boolean;
}

interface PyCase {
  variant: Variant;
  protocol: number;
  path: string;
  bytes: number;
}

/** The Python worker: one JSON request per line in, one JSON answer per line out. */
class PythonWorker {
  readonly #worker: JsonLineWorker;

  constructor(python: string) {
    const script = join(dirname(fileURLToPath(import.meta.url)), 'py_pickle_bench.py');
    this.#worker = new JsonLineWorker([python, script, '--serve'], 'Python worker');
  }

  request<T>(req: Record<string, unknown>): Promise<T> {
    return this.#worker.request<T>(req);
  }

  close(): void {
    this.#worker.end();
  }
}

const now = (): bigint => process.hrtime.bigint();

/** global.gc when exposed (node --expose-gc); else one obtained by turning the V8 flag on at run time. */
function findGc(): { gc: (() => void) | undefined; how: string } {
  const exposed = (globalThis as { gc?: () => void }).gc;
  if (typeof exposed === 'function') return { gc: exposed, how: 'global.gc' };
  try {
    // The flag applies to contexts created afterwards, so a fresh one carries gc().
    v8.setFlagsFromString('--expose-gc');
    const fromContext: unknown = vm.runInNewContext('gc');
    if (typeof fromContext === 'function') return { gc: fromContext as () => void, how: 'v8 --expose-gc at run time' };
  } catch {
    // fall through: no gc
  }
  return { gc: undefined, how: 'none' };
}

/**
 * Single-call times of fn in ns: warm-up, then at least `seconds` of samples
 * (and 2 calls). Each result is dropped at once, as on the Python side:
 * keeping the previous one alive would make V8's young-generation GC copy it
 * and slow loads down by half.
 */
function sampleJs(fn: (input: unknown) => unknown, seconds: number, warmupSeconds: number, setup?: () => unknown): number[] {
  const warmEnd = now() + BigInt(Math.round(warmupSeconds * 1e9));
  do fn(setup?.());
  while (now() < warmEnd);
  const samples: number[] = [];
  const end = now() + BigInt(Math.round(seconds * 1e9));
  while (now() < end || samples.length < 2) {
    const input = setup?.(); // outside the timed span
    const t0 = now();
    fn(input);
    samples.push(Number(now() - t0));
  }
  return samples;
}

function summarize(samples: number[]): Timing {
  const { at, sorted: s } = quantiles(samples);
  const median = at(0.5);
  const mean = s.reduce((a, x) => a + x, 0) / s.length;
  return { medianNs: median, meanNs: mean, minNs: s[0]!, spread: (at(0.75) - at(0.25)) / median, iterations: s.length };
}

/** Keeps a result reachable across a GC (memory measurement). */
let keepAlive: unknown;

/** Heap retained by one call's result (after a GC) and heap growth over the call; needs gc. */
function measureMemory(fn: () => unknown, gc: () => void): Memory {
  const used = (): number => {
    const m = process.memoryUsage();
    return m.heapUsed + m.arrayBuffers;
  };
  gc();
  const before = used();
  keepAlive = fn();
  const peak = used() - before;
  gc();
  const retained = used() - before;
  keepAlive = undefined;
  return { retained, peak };
}

/** Spot-checks a loaded payload: row count and the fields of the last row. Returns a problem or null. */
function checkPayload(value: unknown, rows: number, variant: Variant): string | null {
  if (!Array.isArray(value)) return 'not an array';
  if (value.length !== rows) return `${value.length} rows`;
  const i = rows - 1;
  const row = value[i] as Record<string, unknown>;
  const blob = row.blob;
  const big = row.big;
  if (row.id !== i || row.name !== `user${i}` || Number(row.score) !== i * 1.5) return 'wrong id/name/score';
  if (!Array.isArray(row.tags) || row.tags.join() !== 'a,b') return 'wrong tags';
  if (!(blob instanceof Uint8Array) || blob.length !== 16 || blob.some((b) => b !== 0)) return 'blob is not 16 zero bytes';
  if ((typeof big !== 'number' && typeof big !== 'bigint') || BigInt(big) !== VARIANT_BIG[variant] + BigInt(i)) return 'wrong big';
  return null;
}

function equalBytes(a: Uint8Array, b: Uint8Array): boolean {
  return Buffer.from(a.buffer, a.byteOffset, a.byteLength).equals(b);
}

/** A pickleparser Parser that, like Python, turns protocol 0-2 bytes (`_codecs.encode(str, 'latin1')`) into bytes. */
function makePickleparser(): Parser {
  const names = new NameRegistry().register('_codecs', 'encode', (text: string, encoding: string) => {
    if (encoding !== 'latin1' && encoding !== 'latin-1') throw new Error(`_codecs.encode: unsupported encoding ${encoding}`);
    return Uint8Array.from(Buffer.from(text, 'latin1'));
  });
  return new Parser({ nameResolver: names });
}

const errorMessage = (e: unknown): string => (e instanceof Error ? e.message : String(e));

/** Runs the benchmark and returns its report (tables and notes). */
export async function run(options: PickleBenchOptions = {}): Promise<string> {
  const seconds = options.seconds ?? 1;
  const warmupSeconds = options.warmupSeconds ?? 0.25;
  const rounds = Math.max(1, Math.floor(options.rounds ?? 4));
  const rows = options.rows ?? 10_000;
  const protocols = options.protocols ?? [2, 4, 5];
  const variants = options.variants ?? (['big70', 'big40'] as const);
  const progress = options.progress ?? ((): void => {});
  const python = options.python ?? findPythonSync();
  const { gc, how: gcHow } = findGc();

  const dir = await mkdtemp(join(tmpdir(), 'billiard-ts-bench-'));
  const worker = new PythonWorker(python);
  try {
    const py = await worker.request<PyInfo>({ cmd: 'info' });
    progress('CPython: building the payloads and pickles');
    const { cases } = await worker.request<{ cases: PyCase[] }>({ cmd: 'prepare', out_dir: dir, rows, variants, protocols });

    const results: CaseResult[] = [];
    for (const pc of cases) {
      const label = `${VARIANT_LABEL[pc.variant]} p${pc.protocol}`;
      const data = new Uint8Array(await readFile(pc.path));

      // billiard-ts: loads keeps integral floats (0.0, 3.0...) as PyFloat by default, so its value is the Python value.
      const problem = checkPayload(loads(data), rows, pc.variant);
      if (problem !== null) throw new Error(`billiard-ts loads of ${label}: ${problem}`);
      const value = loads(data, { floats: 'wrap-integral' });
      const identical = equalBytes(dumps(value, { protocol: pc.protocol }), data);
      const identicalDefault = equalBytes(dumps(loads(data), { protocol: pc.protocol }), data);

      // pickleparser: loads only, and only where it reads the payload correctly.
      const parser = makePickleparser();
      let ppProblem: string | null;
      try {
        ppProblem = checkPayload(parser.parse(data), rows, pc.variant);
      } catch (e) {
        ppProblem = `throws: ${errorMessage(e)}`;
      }

      // What each implementation runs; a string is why it cannot.
      const jsFns: Record<`${'billiard-ts' | 'pickleparser'} ${Op}`, ((input: unknown) => unknown) | string | null> = {
        'billiard-ts dumps': () => dumps(value, { protocol: pc.protocol }),
        'billiard-ts dumps fresh': (fresh) => dumps(fresh, { protocol: pc.protocol }),
        'pickleparser dumps fresh': null,
        'billiard-ts loads': () => loads(data),
        'pickleparser dumps': null,
        'pickleparser loads': ppProblem ?? (() => parser.parse(data)),
      };

      const cells = new Map<`${Impl} ${Op}`, Cell>();
      for (const op of OPS) {
        const impls = IMPLS.filter((impl) => impl === 'CPython' || typeof jsFns[`${impl} ${op}`] === 'function');
        const samples = new Map<Impl, number[]>(impls.map((impl) => [impl, []]));
        for (let round = 0; round < rounds; round++) {
          // Rotate the order each round; warm up fully in the first round only.
          const warm = round === 0 ? warmupSeconds : warmupSeconds / 10;
          for (let k = 0; k < impls.length; k++) {
            const impl = impls[(k + round) % impls.length]!;
            progress(`${op} ${label}: ${impl}, round ${round + 1}/${rounds}`);
            let got: number[];
            if (impl === 'CPython') {
              const req = { cmd: 'time', variant: pc.variant, protocol: pc.protocol, op, seconds: seconds / rounds, warmup: warm };
              got = (await worker.request<{ samples_ns: number[] }>(req)).samples_ns;
            } else {
              gc?.();
              const setup = op === 'dumps fresh' ? (): unknown => loads(data, { floats: 'wrap-integral' }) : undefined;
              got = sampleJs(jsFns[`${impl} ${op}`] as (input: unknown) => unknown, seconds / rounds, warm, setup);
            }
            samples.get(impl)!.push(...got);
          }
        }
        for (const impl of IMPLS) {
          const s = samples.get(impl);
          const why = impl === 'CPython' ? null : jsFns[`${impl} ${op}`];
          cells.set(`${impl} ${op}`, s ? { kind: 'ok', timing: summarize(s) } : typeof why === 'string' ? { kind: 'fails', reason: why } : { kind: 'n/a' });
        }
      }

      const memory = new Map<Impl, Memory | string>();
      const pm = await worker.request<{ retained_bytes: number; peak_bytes: number }>({ cmd: 'memory', variant: pc.variant, protocol: pc.protocol });
      memory.set('CPython', { retained: pm.retained_bytes, peak: pm.peak_bytes });
      memory.set('billiard-ts', gc ? measureMemory(() => loads(data), gc) : 'no gc');
      memory.set('pickleparser', ppProblem !== null ? 'fails' : gc ? measureMemory(() => parser.parse(data), gc) : 'no gc');

      results.push({ variant: pc.variant, protocol: pc.protocol, bytes: pc.bytes, cells, identical, identicalDefault, memory });
    }
    progress('');
    return report({ py, python, rows, results, seconds, warmupSeconds, rounds, gcHow });
  } finally {
    worker.close();
    await rm(dir, { recursive: true, force: true });
  }
}

/** "3.21M", "512k": a rate with an SI suffix. */
function si(value: number): string {
  if (value >= 1e9) return `${fmt(value / 1e9)}G`;
  if (value >= 1e6) return `${fmt(value / 1e6)}M`;
  if (value >= 1e3) return `${fmt(value / 1e3)}k`;
  return fmt(value);
}

const mb = (bytes: number): string => fmt(bytes / 1e6);

interface ReportInput {
  py: PyInfo;
  python: string;
  rows: number;
  results: CaseResult[];
  seconds: number;
  warmupSeconds: number;
  rounds: number;
  gcHow: string;
}

/** Formats the tables: timings, ratios, memory, notes. */
function report({ py, python, rows, results, seconds, warmupSeconds, rounds, gcHow }: ReportInput): string {
  const out: string[] = [];
  out.push('== pickle ==');
  out.push(`Node ${process.version} (V8 ${process.versions.v8}); Python ${py.python} (${py.implementation}, ${python}, C pickle: ${py.c_accelerator ? 'yes' : 'NO'}, gc ${py.gc_enabled ? 'on' : 'off'})`);
  out.push(`payload: list of ${rows} dicts {'id': i, 'name': 'user%d' % i, 'score': i * 1.5, 'tags': ['a', 'b'], 'blob': b'\\x00' * 16, 'big': BIG + i}`);
  out.push(`timing: single calls, >= ${seconds} s per cell and implementation in ${rounds} alternating rounds, after ${warmupSeconds} s warm-up; Node gc between rounds: ${gcHow}`);
  out.push('');

  // Timings.
  const columns: Column[] = [
    { header: 'op' }, { header: 'BIG' }, { header: 'proto', align: 'right' }, { header: 'implementation' },
    { header: 'pickle bytes', align: 'right' }, { header: 'median ms', align: 'right' }, { header: 'mean ms', align: 'right' },
    { header: 'min ms', align: 'right' }, { header: 'IQR', align: 'right' }, { header: 'MB/s', align: 'right' }, { header: 'rows/s', align: 'right' },
    { header: 'calls', align: 'right' }, { header: 'same bytes as CPython' },
  ];
  const table: string[][] = [];
  for (const op of OPS) {
    for (const r of results) {
      for (const impl of IMPLS) {
        const cell = r.cells.get(`${impl} ${op}`);
        if (cell === undefined || cell.kind === 'n/a') continue;
        const head = [op, VARIANT_LABEL[r.variant], String(r.protocol), impl, String(r.bytes)];
        if (cell.kind === 'fails') {
          table.push([...head, 'fails']);
          continue;
        }
        const t = cell.timing;
        const perSecond = 1e9 / t.medianNs;
        const same = impl === 'billiard-ts' && op === 'dumps' ? (r.identical ? 'yes' : 'NO') : '';
        table.push([
          ...head, fmt(t.medianNs / 1e6), fmt(t.meanNs / 1e6), fmt(t.minNs / 1e6), `${Math.round(t.spread * 100)}%`,
          fmt((r.bytes * perSecond) / 1e6), si(rows * perSecond), String(t.iterations), same,
        ]);
      }
    }
  }
  out.push(formatTable(columns, table));
  out.push('');

  // Ratios: throughput of billiard-ts over the other's (> 1 means billiard-ts is faster).
  const ratio = (r: CaseResult, op: Op, other: Impl, stat: 'medianNs' | 'minNs'): number | string => {
    const mine = r.cells.get(`billiard-ts ${op}`);
    const theirs = r.cells.get(`${other} ${op}`);
    if (mine?.kind !== 'ok') return mine?.kind ?? '-';
    if (theirs?.kind !== 'ok') return theirs?.kind === 'fails' ? 'fails' : '-';
    return theirs.timing[stat] / mine.timing[stat];
  };
  const show = (x: number | string): string => (typeof x === 'number' ? `${x.toFixed(2)}x` : x);
  const ratioRows: string[][] = [];
  const logs = new Map<string, number[]>(); // column -> log ratios, for the geometric means
  for (const op of OPS) {
    for (const r of results) {
      const row: [string, number | string][] = [
        ['vs CPython', ratio(r, op, 'CPython', 'medianNs')],
        ['vs pickleparser', op === 'loads' ? ratio(r, op, 'pickleparser', 'medianNs') : '-'],
        ['vs CPython (min)', ratio(r, op, 'CPython', 'minNs')],
      ];
      for (const [key, x] of row) if (typeof x === 'number') logs.set(`${op} ${key}`, [...(logs.get(`${op} ${key}`) ?? []), Math.log(x)]);
      ratioRows.push([op, VARIANT_LABEL[r.variant], String(r.protocol), ...row.map(([, x]) => show(x))]);
    }
  }
  out.push('billiard-ts throughput ratio (other time / billiard-ts time, medians unless marked min; > 1.00x means billiard-ts is faster)');
  out.push(formatTable(
    [
      { header: 'op' }, { header: 'BIG' }, { header: 'proto', align: 'right' }, { header: 'vs CPython C pickle', align: 'right' },
      { header: 'vs pickleparser', align: 'right' }, { header: 'vs CPython (min)', align: 'right' },
    ],
    ratioRows,
  ));
  const geomeans = [...logs].map(([key, xs]) => `${key} ${Math.exp(xs.reduce((s, x) => s + x, 0) / xs.length).toFixed(2)}x`);
  if (geomeans.length > 0) out.push(`geometric means: ${geomeans.join('; ')}`);
  out.push('');

  // Memory of one loads result, at one protocol (the result does not depend on it).
  const memProtocol = results.some((r) => r.protocol === 4) ? 4 : results[0]?.protocol;
  const memRows: string[][] = [];
  for (const r of results) {
    if (r.protocol !== memProtocol) continue;
    for (const impl of IMPLS) {
      const m = r.memory.get(impl);
      if (m !== undefined) memRows.push([VARIANT_LABEL[r.variant], impl, ...(typeof m === 'string' ? [m] : [mb(m.retained), mb(m.peak)])]);
    }
  }
  if (memRows.length > 0) {
    out.push(`memory of one loads at protocol ${memProtocol} (MB; CPython: tracemalloc; Node: heapUsed + arrayBuffers)`);
    out.push(formatTable(
      [{ header: 'BIG' }, { header: 'implementation' }, { header: 'result retained', align: 'right' }, { header: 'peak / growth during call', align: 'right' }],
      memRows,
    ));
    out.push('');
  }

  // Notes.
  const notes: string[] = [];
  const notSame = results.filter((r) => !r.identical).map((r) => `${VARIANT_LABEL[r.variant]} p${r.protocol}`);
  if (notSame.length > 0) notes.push(`billiard-ts dumps output differs from CPython's for: ${notSame.join(', ')}`);
  if (results.some((r) => !r.identicalDefault)) {
    notes.push("billiard-ts dumps(loads(b)) with loads' default options differs from CPython's bytes");
  }
  const ppFailures = new Map<string, string[]>(); // reason -> cases
  for (const r of results) {
    const pp = r.cells.get('pickleparser loads');
    if (pp?.kind === 'fails') ppFailures.set(pp.reason, [...(ppFailures.get(pp.reason) ?? []), `${VARIANT_LABEL[r.variant]} p${r.protocol}`]);
  }
  for (const [reason, which] of ppFailures) notes.push(`pickleparser fails on ${which.join(', ')}: ${reason}`);
  notes.push('pickleparser is given a resolver for _codecs.encode so that protocol 2 bytes load as bytes (without it they load as placeholder objects)');
  out.push('notes:');
  for (const n of notes) out.push(`- ${n}`);
  return out.join('\n');
}
