/**
 * The fuzz supervisor: runs inputs in child processes it can lose.
 *
 * The inputs 0..count-1 of a seed are cut into batches (ranges of indexes).
 * Each child (--jobs of them) runs one batch at a time and answers with the
 * outcome counts and any findings. Every 100 ms the supervisor reads each
 * busy child's status file (which input, since when) and its RSS from
 * /proc, and kills the child (SIGKILL) when one input has run past the time
 * limit, or the RSS has grown past the memory limit since that input
 * started, or past the absolute RSS cap. When a child dies, for that reason
 * or its own (a V8 fatal error, an abort, a signal), the supervisor rebuilds
 * the input it was running from (seed, index), records a finding with the
 * kill reason, exit code or signal, the tail of the child's stderr, the time
 * and the memory, starts a fresh child and goes on from the next index.
 *
 * A summary is written at the end, also after Ctrl-C (SIGINT) or SIGTERM,
 * and a snapshot of it every minute while the run lasts.
 */

import { type ChildProcess, spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { appendFileSync, existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

import { hex } from './core.js';
import { FAMILIES, generate, type GenContext, loadCorpus, parseFamilies } from './generate.js';
import {
  bucketOf, C_AMPLIFICATION, C_BROKEN, C_CHECKS, C_MEMORY, C_POLLUTION, C_SLOW, CAT, CATEGORIES, type Death, describeRun, type Finding,
  FINDING_KINDS, type FindingKind, listHandlers, loadTarget, N_COUNTERS, PollutionGuard, specLabel,
} from './oracle.js';
import { type ChildConfig, type FromChild, Phase, PHASE_NAMES, StatusReader, type ToChild } from './protocol.js';

export interface Config {
  count: number;
  /** 0: no time limit. */
  seconds: number;
  seed: number;
  out: string;
  target: string;
  jobs: number;
  batch: number;
  batchMs: number;
  slowMs: number;
  timeLimitMs: number;
  memoryLimitMb: number;
  maxRssMb: number;
  childHeapMb: number;
  ampRatio: number;
  ampMinMb: number;
  checkEvery: number;
  maxSeedBytes: number;
  replay: string | undefined;
  index: number | undefined;
  spec: number | undefined;
  inProcess: boolean;
  /** --families, as given (undefined: the default weights). */
  families: string | undefined;
}

const CHILD_SCRIPT = fileURLToPath(new URL('./child.ts', import.meta.url));
const TSX_LOADER = import.meta.resolve('tsx');
const TICK_MS = 100;
/** Extra example inputs kept per finding. */
const MAX_EXAMPLES = 5;

function fmt(n: number): string {
  return Math.round(n).toLocaleString('en-US');
}

/** VmRSS and VmHWM of a process, in bytes (0 when it is gone). */
function procMemory(pid: number): { rss: number; hwm: number } {
  try {
    const s = readFileSync(`/proc/${pid}/status`, 'utf8');
    const kb = (name: string): number => Number(new RegExp(`^${name}:\\s+(\\d+) kB`, 'm').exec(s)?.[1] ?? 0) * 1024;
    return { rss: kb('VmRSS'), hwm: kb('VmHWM') };
  } catch {
    return { rss: 0, hwm: 0 };
  }
}

/** The line of a dead child's stderr that says what killed it. */
function fatalLine(stderr: string): string | undefined {
  const lines = stderr.split('\n').map((l) => l.trim()).filter((l) => l.length > 0);
  return lines.find((l) => /FATAL ERROR|Fatal error|Fatal JavaScript|Check failed|Segmentation fault|out of memory/i.test(l))
    ?? lines.find((l) => /^\w*Error\b|^Uncaught/.test(l));
}

type BatchOutcome =
  | { kind: 'done'; msg: Extract<FromChild, { type: 'batch-done' }> }
  | { kind: 'died'; code: number | null; signal: NodeJS.Signals | null };

let childSerial = 0;
/** Status files of live children, removed on exit even when a second Ctrl-C exits at once. */
const liveStatusFiles = new Set<string>();
process.once('exit', () => {
  for (const p of liveStatusFiles) for (const f of [p, `${p}.cand`]) rmSync(f, { force: true });
});

/** One child process and what the supervisor knows of it. */
class Child {
  readonly proc: ChildProcess;
  readonly statusPath: string;
  readonly status: StatusReader;
  readonly startedAt = Date.now();
  stderrTail = '';
  /** Why the supervisor killed it ('time limit', 'memory limit', 'stop'), if it did. */
  killReason: string | null = null;
  killDetail = '';
  busy = false;
  baselineRss = 0;
  lastRss = 0;
  peakRss = 0;
  /** The status sequence number the RSS below was first seen with, and that RSS. */
  #seq = -1;
  #rssAtSeqStart = 0;
  readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  #onMessage: ((m: FromChild) => void) | null = null;
  readonly #pending: FromChild[] = [];

  constructor(cfg: Config, dir: string) {
    const id = ++childSerial;
    this.statusPath = join(dir, `child-${process.pid}-${id}.status`);
    this.status = new StatusReader(this.statusPath);
    liveStatusFiles.add(this.statusPath);
    this.proc = spawn(process.execPath, ['--import', TSX_LOADER, `--max-old-space-size=${cfg.childHeapMb}`, '--expose-gc', CHILD_SCRIPT], {
      stdio: ['ignore', 'pipe', 'pipe', 'ipc'],
    });
    const keep = (chunk: Buffer): void => {
      this.stderrTail = (this.stderrTail + chunk.toString('utf8')).slice(-16384);
    };
    this.proc.stderr!.on('data', keep);
    this.proc.stdout!.on('data', keep);
    this.proc.on('message', (m: FromChild) => {
      if (this.#onMessage !== null) this.#onMessage(m);
      else this.#pending.push(m);
    });
    this.proc.on('error', (e) => {
      this.stderrTail += `\nspawn error: ${e.message}`;
    });
    this.exited = new Promise((resolve) => this.proc.once('exit', (code, signal) => resolve({ code, signal })));
  }

  send(m: ToChild): void {
    if (this.proc.connected) this.proc.send(m);
  }

  /** Messages go to `f` (those that came before it first). */
  listen(f: ((m: FromChild) => void) | null): void {
    this.#onMessage = f;
    if (f !== null) while (this.#pending.length > 0) f(this.#pending.shift()!);
  }

  kill(reason: string, detail = ''): void {
    if (this.killReason === null) {
      this.killReason = reason;
      this.killDetail = detail;
    }
    this.proc.kill('SIGKILL');
  }

  /** Called every tick while the child works: enforces the time and memory limits. */
  watch(cfg: Config): void {
    const pid = this.proc.pid;
    if (pid === undefined || this.killReason !== null) return;
    const { rss, hwm } = procMemory(pid);
    if (rss > 0) this.lastRss = rss;
    this.peakRss = Math.max(this.peakRss, hwm, rss);
    const st = this.status.read();
    if (st === undefined || st.phase === Phase.IDLE) return;
    if (st.seq !== this.#seq) {
      this.#seq = st.seq;
      this.#rssAtSeqStart = Math.max(rss, this.baselineRss);
    }
    const ran = Date.now() - st.startMs;
    const which = st.index >= 0 ? `input #${st.index}` : 'the input';
    if (ran > cfg.timeLimitMs) {
      this.kill('time limit', `${PHASE_NAMES[st.phase]} of ${which} ran for ${ran} ms (limit ${cfg.timeLimitMs} ms); RSS ${mb(this.#rssAtSeqStart)} -> ${mb(rss)} MiB`);
    } else if (rss - this.#rssAtSeqStart > cfg.memoryLimitMb * 2 ** 20) {
      this.kill('memory limit', `RSS grew from ${mb(this.#rssAtSeqStart)} to ${mb(rss)} MiB in ${ran} ms of ${which} (limit +${cfg.memoryLimitMb} MiB)`);
    } else if (rss > cfg.maxRssMb * 2 ** 20) {
      this.kill('memory limit', `RSS ${mb(rss)} MiB above the cap of ${cfg.maxRssMb} MiB during ${which}`);
    }
  }

  close(): void {
    this.status.close();
    for (const p of [this.statusPath, `${this.statusPath}.cand`]) rmSync(p, { force: true });
    liveStatusFiles.delete(this.statusPath);
  }
}

function mb(n: number): string {
  return (n / 2 ** 20).toFixed(0);
}

/** Starts a child and waits until it has loaded the target and the corpus. */
async function startChild(cfg: Config, dir: string, knownKeys: string[], onReady: (m: Extract<FromChild, { type: 'ready' }>) => void): Promise<Child> {
  const child = new Child(cfg, dir);
  const childCfg: ChildConfig = {
    target: cfg.target, seed: cfg.seed, maxSeedBytes: cfg.maxSeedBytes, slowMs: cfg.slowMs, memoryLimitBytes: cfg.memoryLimitMb * 2 ** 20,
    ampRatio: cfg.ampRatio, ampMinBytes: cfg.ampMinMb * 2 ** 20, checkEvery: cfg.checkEvery, batchMs: cfg.batchMs,
    statusPath: child.statusPath, knownKeys, families: cfg.families,
  };
  child.send({ type: 'init', cfg: childCfg });
  const ready = await Promise.race([
    new Promise<Extract<FromChild, { type: 'ready' }>>((resolve) => child.listen((m) => { if (m.type === 'ready') resolve(m); })),
    child.exited.then(() => undefined),
  ]);
  child.listen(null);
  if (ready === undefined) {
    child.close();
    throw new Error(`fuzz child failed to start:\n${child.stderrTail.slice(-4000)}`);
  }
  child.baselineRss = ready.rss;
  onReady(ready);
  return child;
}

interface Recorded extends Finding {
  count: number;
  file: string;
  firstSeconds: number;
  examples?: Array<[number, number, string]>;
}

/** Runs a fuzz campaign; returns the exit code (0 clean, 1 findings, 130 interrupted). */
export async function fuzzMain(cfg: Config): Promise<number> {
  const started = Date.now();
  const deadline = cfg.seconds > 0 ? started + cfg.seconds * 1000 : Infinity;
  const runDir = join(cfg.out, `seed-${cfg.seed}-${new Date(started).toISOString().replace(/[:.]/g, '-')}`);
  mkdirSync(runDir, { recursive: true });
  const statusDir = existsSync('/dev/shm') ? '/dev/shm' : tmpdir();

  const P = await loadTarget(cfg.target);
  const corpus = loadCorpus(cfg.maxSeedBytes);
  const handlers = listHandlers(P);
  const ctx: GenContext = { corpus, handlers, ...familyOptions(cfg) };

  const log = (s: string): void => {
    console.log(s);
  };
  log(`pickle fuzz: seed ${cfg.seed}, count ${fmt(cfg.count)}, ${cfg.seconds > 0 ? `${cfg.seconds} s` : 'no time limit'}, ${cfg.jobs} child${cfg.jobs > 1 ? 'ren' : ''}`);
  log(`  target ${cfg.target}; limits: ${cfg.timeLimitMs} ms per input, +${cfg.memoryLimitMb} MiB per input, RSS cap ${cfg.maxRssMb} MiB, child heap ${cfg.childHeapMb} MiB; slow > ${cfg.slowMs} ms; amplification > ${cfg.ampRatio} bytes/byte and > ${cfg.ampMinMb} MiB`);
  log(`  corpus: ${fmt(corpus.seeds.length)} distinct seed pickles, truncation sweep of ${fmt(corpus.sweep.length)} inputs; ${handlers.length} registered globals`);
  log(`  findings go to ${runDir}`);

  const counts = new Array<number>(N_COUNTERS).fill(0);
  let inputs = 0;
  let lost = 0;
  let totalMs = 0;
  let slowest = { ms: 0, index: -1 };
  let hungriest = { bytes: 0, index: -1 };
  let deaths = 0;
  const findings = new Map<string, Recorded>();
  const firstByKind = new Map<FindingKind, { index: number; seconds: number; key: string }>();
  const samples = new Map<number, string>();
  let stopReason = 'count reached';
  let stopping = false;

  const children = new Set<Child>();
  const broadcast = (key: string): void => {
    for (const c of children) c.send({ type: 'known', key });
  };

  const save = (r: Recorded): void => {
    const { file: _file, ...body } = r;
    writeFileSync(r.file, `${JSON.stringify({ ...body, options: specLabel(r.spec), replay: `npm run fuzz:pickle -- --replay ${r.file}${cfg.target !== DEFAULT_TARGET ? ` --target ${cfg.target}` : ''}` }, null, 2)}\n`);
  };
  const record = (f: Finding): void => {
    const seconds = (Date.now() - started) / 1000;
    const r0 = findings.get(f.key);
    if (r0 !== undefined) {
      r0.count++;
      if (f.ms !== undefined && (r0.ms ?? 0) < f.ms) r0.ms = f.ms;
      if ((r0.examples ??= []).length < MAX_EXAMPLES && f.inputHex.length <= 4096) r0.examples.push([f.index, f.spec, f.inputHex]);
      return;
    }
    const file = join(runDir, `${f.kind}-${createHash('sha1').update(f.key).digest('hex').slice(0, 10)}.json`);
    const r: Recorded = { ...f, count: 1, file, firstSeconds: seconds };
    findings.set(f.key, r);
    if (!firstByKind.has(f.kind)) firstByKind.set(f.kind, { index: f.index, seconds, key: f.key });
    save(r);
    broadcast(f.key);
    const line = `[${seconds.toFixed(1)} s] NEW FINDING ${f.kind} at input #${f.index} (${f.how}): ${f.key}${f.death ? ` [${f.death.reason}]` : ''}`;
    appendFileSync(join(runDir, 'findings.log'), `${line}\n  ${f.minimizedHex ?? f.inputHex.slice(0, 400)}\n`);
    log(`  ${line}\n    ${(f.minimizedHex ?? f.inputHex).slice(0, 200)}${f.inputHex.length > 200 ? '...' : ''}`);
  };

  const onMessage = (m: FromChild): void => {
    if (m.type === 'finding') record(m.finding);
    else if (m.type === 'repeat') {
      const r = findings.get(m.key);
      if (r !== undefined) {
        r.count++;
        if (m.ms !== undefined && (r.ms ?? 0) < m.ms) r.ms = m.ms;
        if (m.example !== undefined && (r.examples ??= []).length < MAX_EXAMPLES) r.examples.push(m.example);
      }
    } else if (m.type === 'sample') {
      if (!samples.has(m.category)) samples.set(m.category, `#${m.index}: ${m.message}`);
    }
  };

  // ------------------------------------------------------------ work queue
  let cursor = 0;
  const pending: Array<[number, number]> = [];
  const takeRange = (): [number, number] | undefined => {
    if (stopping) return undefined;
    if (Date.now() > deadline) {
      stopReason = 'time limit reached';
      return undefined;
    }
    if (pending.length > 0) return pending.shift();
    if (cursor >= cfg.count) return undefined;
    const r: [number, number] = [cursor, Math.min(cfg.count, cursor + cfg.batch)];
    cursor = r[1];
    return r;
  };

  const deathFinding = (child: Child, code: number | null, signal: NodeJS.Signals | null): Finding | undefined => {
    const st = child.status.read();
    const phase = st?.phase ?? Phase.IDLE;
    const index = st?.index ?? -1;
    if (index < 0) return undefined;
    const g = generate(ctx, cfg.seed, index);
    let inputHex = hex(g.input);
    let note: string | undefined;
    if (phase === Phase.MINIMIZE) {
      const cand = `${child.statusPath}.cand`;
      if (existsSync(cand)) inputHex = hex(new Uint8Array(readFileSync(cand)));
      note = `died while minimizing an error finding of input #${index}: the input here is the shrunk candidate it was running (--index ${index} --seed ${cfg.seed} rebuilds the original)`;
    } else if (phase === Phase.CHECK) {
      note = `died in the known-good check that follows input #${index}`;
    } else if (phase === Phase.IDLE) {
      note = `died between inputs, after input #${index - 1}`;
    }
    const kind: FindingKind = child.killReason === 'time limit' ? 'timeout' : child.killReason === 'memory limit' ? 'memory' : 'crash';
    const exitText = signal !== null ? `signal ${signal}${signal === 'SIGABRT' ? ' (exit status 134 in a shell)' : ''}` : `exit code ${code}`;
    const fatal = fatalLine(child.stderrTail);
    const reason = child.killReason !== null ? `killed: ${child.killReason} (SIGKILL from the supervisor)` : `died: ${exitText}`;
    const death: Death = {
      reason, exitCode: code, signal, phase: PHASE_NAMES[phase], stderrTail: child.stderrTail.slice(-3000),
      rssMiB: Math.round(child.lastRss / 2 ** 20), peakRssMiB: Math.round(child.peakRss / 2 ** 20), baselineRssMiB: Math.round(child.baselineRss / 2 ** 20),
    };
    const bucket = bucketOf(g.how);
    const message = kind === 'crash'
      ? `child died (${exitText}) running input #${index}: ${fatal ?? 'no error on stderr'}`
      : child.killDetail;
    const key = kind === 'crash' ? `crash | ${bucket} | ${(fatal ?? exitText).replace(/\d+/g, 'N').replace(/^\[N:0xN\]\s*/, '').slice(0, 200)}` : `${kind} | ${bucket}`;
    const f: Finding = {
      kind, key, seed: cfg.seed, index, spec: g.spec, how: g.how, inputHex, message, death,
      ms: st !== undefined && phase !== Phase.IDLE ? Date.now() - st.startMs : 0,
    };
    if (note !== undefined) f.note = note;
    return f;
  };

  // ------------------------------------------------------------ progress and summary
  const progress = (): void => {
    const secs = (Date.now() - started) / 1000;
    const total = [...findings.values()].reduce((s, f) => s + f.count, 0);
    const pct = (i: number): string => (inputs === 0 ? '0' : ((100 * counts[i]!) / inputs).toFixed(1));
    log(`[${secs.toFixed(0).padStart(5)} s] ${fmt(inputs)} inputs, ${fmt(inputs / Math.max(secs, 1e-3))}/s; value ${pct(CAT.value)}%, TRUNCATED ${pct(CAT['UnpicklingError TRUNCATED'])}%, LIMIT ${pct(CAT['UnpicklingError LIMIT'])}%; children lost ${deaths}; findings ${findings.size} distinct / ${total}`);
  };
  const summary = (final: boolean): string => {
    const secs = (Date.now() - started) / 1000;
    const lines: string[] = [];
    lines.push('', `=== pickle fuzz summary${final ? '' : ' (run in progress)'} ===`);
    lines.push(`seed              ${cfg.seed}   (rerun: npm run fuzz:pickle -- --seed ${cfg.seed} --count ${cfg.count}${cfg.target !== DEFAULT_TARGET ? ` --target ${cfg.target}` : ''}${cfg.families !== undefined ? ` --families ${cfg.families}` : ''})`);
    lines.push(`target            ${cfg.target}`);
    if (cfg.families !== undefined) lines.push(`families          ${cfg.families}`);
    lines.push(`inputs            ${fmt(inputs)} in ${secs.toFixed(1)} s (${fmt(inputs / Math.max(secs, 1e-3))} inputs/s), stopped: ${final ? stopReason : '-'}`);
    lines.push(`                  of which ${fmt(lost)} ran in a child that died later in its batch (outcome not counted)`);
    lines.push(`time in loads()   ${(totalMs / 1000).toFixed(1)} s, mean ${(inputs === 0 ? 0 : (totalMs / inputs) * 1000).toFixed(1)} us; slowest completed input ${slowest.ms.toFixed(1)} ms (#${slowest.index})`);
    lines.push(`most memory       ${(hungriest.bytes / 2 ** 20).toFixed(1)} MiB over one completed input (#${hungriest.index})`);
    lines.push(`children lost     ${deaths} (killed for time or memory, or died)`);
    lines.push(`known-good checks ${fmt(counts[C_CHECKS]!)} (failed ${counts[C_BROKEN]!}); pollution ${counts[C_POLLUTION]!}; slow (> ${cfg.slowMs} ms) ${counts[C_SLOW]!}; memory (> ${cfg.memoryLimitMb} MiB) ${counts[C_MEMORY]!}; amplification ${counts[C_AMPLIFICATION]!}`);
    lines.push('outcomes (with the first message seen):');
    CATEGORIES.forEach((name, i) => {
      if (counts[i]! === 0 && name.startsWith('UnpicklingError')) return;
      const sample = samples.get(i);
      lines.push(`  ${name.padEnd(38)} ${fmt(counts[i]!).padStart(11)} ${inputs === 0 ? '' : ((100 * counts[i]!) / inputs).toFixed(3).padStart(7)}%${sample === undefined ? '' : `  ${sample.slice(0, 110)}`}`);
    });
    const byKind = new Map<FindingKind, { distinct: number; total: number }>();
    for (const f of findings.values()) {
      const k = byKind.get(f.kind) ?? { distinct: 0, total: 0 };
      k.distinct++;
      k.total += f.count;
      byKind.set(f.kind, k);
    }
    const total = [...findings.values()].reduce((s, f) => s + f.count, 0);
    lines.push(`findings: ${findings.size} distinct, ${fmt(total)} inputs${findings.size > 0 ? ` (files in ${runDir})` : ''}`);
    for (const kind of FINDING_KINDS) {
      const k = byKind.get(kind);
      if (k === undefined) continue;
      const first = firstByKind.get(kind)!;
      lines.push(`  ${kind.padEnd(22)} ${String(k.distinct).padStart(4)} distinct, ${fmt(k.total).padStart(7)} inputs; first at input #${first.index} after ${first.seconds.toFixed(1)} s`);
    }
    for (const f of findings.values()) {
      lines.push(`  [${f.kind}] x${f.count}: ${f.key}`);
      lines.push(`    first at input #${f.index} after ${f.firstSeconds.toFixed(1)} s (${f.how.slice(0, 160)}), options ${specLabel(f.spec)}${f.ms !== undefined ? `, ${f.ms.toFixed(0)} ms` : ''}`);
      lines.push(`    ${f.message.slice(0, 300)}`);
      if (f.death !== undefined) lines.push(`    ${f.death.reason}; phase ${f.death.phase}; RSS ${f.death.rssMiB} MiB (peak ${f.death.peakRssMiB}, baseline ${f.death.baselineRssMiB})`);
      lines.push(`    input     ${f.inputHex.length > 400 ? `${f.inputHex.slice(0, 400)}... (${f.inputHex.length / 2} bytes)` : f.inputHex}`);
      if (f.minimizedHex !== undefined) lines.push(`    minimized ${f.minimizedHex.length > 400 ? `${f.minimizedHex.slice(0, 400)}...` : f.minimizedHex}`);
      if (f.note !== undefined) lines.push(`    note      ${f.note}`);
      lines.push(`    file      ${f.file}`);
    }
    return lines.join('\n');
  };
  const writeSummary = (final: boolean): void => {
    const secs = (Date.now() - started) / 1000;
    const byKind: Record<string, { distinct: number; inputs: number; firstIndex: number; firstSeconds: number }> = {};
    for (const f of findings.values()) {
      const k = (byKind[f.kind] ??= { distinct: 0, inputs: 0, firstIndex: firstByKind.get(f.kind)!.index, firstSeconds: firstByKind.get(f.kind)!.seconds });
      k.distinct++;
      k.inputs += f.count;
    }
    const json = {
      final, seed: cfg.seed, target: cfg.target, count: cfg.count, stopReason: final ? stopReason : null, seconds: secs, inputs,
      inputsPerSecond: inputs / Math.max(secs, 1e-3), lost, childrenLost: deaths, families: familyOptions(cfg).families ?? FAMILIES,
      limits: { timeLimitMs: cfg.timeLimitMs, memoryLimitMb: cfg.memoryLimitMb, maxRssMb: cfg.maxRssMb, childHeapMb: cfg.childHeapMb, slowMs: cfg.slowMs, ampRatio: cfg.ampRatio, ampMinMb: cfg.ampMinMb },
      outcomes: Object.fromEntries(CATEGORIES.map((c, i) => [c, counts[i]])),
      findingsByKind: byKind,
      findings: [...findings.values()].map((f) => ({ kind: f.kind, key: f.key, count: f.count, firstIndex: f.index, firstSeconds: f.firstSeconds, how: f.how, reason: f.death?.reason, file: f.file })),
    };
    writeFileSync(join(runDir, 'summary.json'), `${JSON.stringify(json, null, 2)}\n`);
    writeFileSync(join(runDir, 'summary.txt'), `${summary(final)}\n`);
  };

  // ------------------------------------------------------------ signals and the monitor
  let signalledAt = 0;
  const onSignal = (sig: NodeJS.Signals): void => {
    // A second Ctrl-C exits at once. (One Ctrl-C can arrive twice: from the
    // terminal to the process group, and relayed by tsx's parent process.)
    if (signalledAt > 0) {
      if (Date.now() - signalledAt < 1000) return;
      for (const c of children) c.kill('stop');
      process.exit(130);
    }
    signalledAt = Date.now();
    stopReason = sig === 'SIGINT' ? 'interrupted (Ctrl-C)' : `stopped by ${sig}`;
    stopping = true;
    for (const c of children) c.kill('stop');
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
  let lastProgress = Date.now();
  let lastSnapshot = Date.now();
  const monitor = setInterval(() => {
    for (const c of children) if (c.busy) c.watch(cfg);
    const now = Date.now();
    if (now - lastProgress >= 10_000) {
      lastProgress = now;
      progress();
    }
    if (now - lastSnapshot >= 60_000) {
      lastSnapshot = now;
      writeSummary(false);
    }
  }, TICK_MS);

  // ------------------------------------------------------------ one slot: a child after another
  let startFailures = 0;
  let harnessError: string | undefined;
  const slot = async (): Promise<void> => {
    while (!stopping) {
      let range = takeRange();
      if (range === undefined) return;
      let child: Child;
      try {
        child = await startChild(cfg, statusDir, [...findings.keys()], () => {});
        startFailures = 0;
      } catch (e) {
        pending.unshift(range);
        if (++startFailures >= 3 || stopping) {
          harnessError ??= (e as Error).message;
          stopping = true;
          stopReason = 'harness failure';
          return;
        }
        continue;
      }
      children.add(child);
      child.listen(onMessage);
      try {
        while (range !== undefined) {
          const [start, end] = range;
          child.busy = true;
          child.send({ type: 'batch', start, end });
          const outcome: BatchOutcome = await Promise.race([
            new Promise<BatchOutcome>((resolve) => child.listen((m) => {
              if (m.type === 'batch-done') resolve({ kind: 'done', msg: m });
              else onMessage(m);
            })),
            child.exited.then(({ code, signal }): BatchOutcome => ({ kind: 'died', code, signal })),
          ]);
          child.busy = false;
          if (outcome.kind === 'done') {
            const m = outcome.msg;
            for (let i = 0; i < N_COUNTERS; i++) counts[i]! += m.counts[i]!;
            inputs += m.next - start;
            totalMs += m.totalMs;
            if (m.maxMs > slowest.ms) slowest = { ms: m.maxMs, index: m.maxIndex };
            if (m.maxGrowth > hungriest.bytes) hungriest = { bytes: m.maxGrowth, index: m.maxGrowthIndex };
            if (m.rss > 0) child.baselineRss = m.rss;
            if (m.next < end) pending.unshift([m.next, end]);
            // A child that found the decoder broken exits: a fresh one takes over.
            if (m.exiting === true) break;
            range = takeRange();
            continue;
          }
          // The child is gone.
          if (child.killReason === 'stop') {
            pending.unshift(range);
            break;
          }
          deaths++;
          const f = deathFinding(child, outcome.code, outcome.signal);
          if (f === undefined) {
            pending.unshift(range);
            harnessError ??= `a child died outside any input (${outcome.signal ?? outcome.code}):\n${child.stderrTail.slice(-3000)}`;
            stopping = true;
            stopReason = 'harness failure';
            break;
          }
          const st = child.status.read();
          if (st?.phase === Phase.LOADS || st?.phase === Phase.MINIMIZE) {
            counts[f.kind === 'timeout' ? CAT['FINDING timeout'] : f.kind === 'memory' ? CAT['FINDING memory kill'] : CAT['FINDING crash']]!++;
            inputs += f.index - start + 1;
            lost += f.index - start;
          } else {
            inputs += f.index - start + 1;
            lost += f.index - start + 1;
          }
          record(f);
          if (f.index + 1 < end) pending.unshift([f.index + 1, end]);
          break;
        }
      } finally {
        children.delete(child);
        if (child.proc.exitCode === null && child.proc.signalCode === null) {
          child.proc.disconnect();
          child.kill('stop');
        }
        await child.exited;
        child.close();
      }
    }
  };

  await Promise.all(Array.from({ length: cfg.jobs }, () => slot()));
  clearInterval(monitor);
  process.off('SIGINT', onSignal);
  process.off('SIGTERM', onSignal);
  if (harnessError !== undefined) console.error(`harness failure: ${harnessError}`);
  writeSummary(true);
  console.log(summary(true));
  if (harnessError !== undefined) return 2;
  if (stopReason.startsWith('interrupted') || stopReason.startsWith('stopped')) return 130;
  return findings.size > 0 ? 1 : 0;
}

/** The generator weights of --families, for a GenContext. */
function familyOptions(cfg: { families: string | undefined }): Pick<GenContext, 'families' | 'sweep'> {
  return cfg.families === undefined ? {} : parseFamilies(cfg.families);
}

export const DEFAULT_TARGET = fileURLToPath(new URL('../..', import.meta.url)).replace(/\/$/, '');

// ====================================================================== replay

interface ReplayInput {
  input: Uint8Array;
  spec: number;
  label: string;
}

function replayInputs(cfg: Config, ctx: () => GenContext): ReplayInput[] {
  if (cfg.index !== undefined) {
    const g = generate(ctx(), cfg.seed, cfg.index);
    return [{ input: g.input, spec: cfg.spec ?? g.spec, label: `input #${cfg.index} of seed ${cfg.seed} (${g.how.slice(0, 200)})` }];
  }
  const arg = cfg.replay!;
  if (existsSync(arg)) {
    const text = readFileSync(arg, 'utf8');
    if (text.trimStart().startsWith('{')) {
      const f = JSON.parse(text) as Finding;
      const out: ReplayInput[] = [{ input: new Uint8Array(Buffer.from(f.inputHex, 'hex')), spec: cfg.spec ?? f.spec, label: `${arg} (input #${f.index}, ${f.kind})` }];
      if (f.minimizedHex !== undefined) out.push({ input: new Uint8Array(Buffer.from(f.minimizedHex, 'hex')), spec: cfg.spec ?? f.spec, label: `${arg} (minimized)` });
      return out;
    }
    // A file of raw pickle bytes, or of hex.
    const raw = readFileSync(arg);
    const asHex = raw.toString('latin1').replace(/\s+/g, '');
    const isHex = /^([0-9a-fA-F]{2})+$/.test(asHex);
    return [{ input: isHex ? new Uint8Array(Buffer.from(asHex, 'hex')) : new Uint8Array(raw), spec: cfg.spec ?? 0, label: arg }];
  }
  return [{ input: new Uint8Array(Buffer.from(arg.replace(/\s+/g, ''), 'hex')), spec: cfg.spec ?? 0, label: 'input' }];
}

/** Runs one input (or a finding's input and its minimized form) and prints what happened; in a child unless --in-process. */
export async function replayMain(cfg: Config): Promise<number> {
  let ctx: GenContext | undefined;
  let P: Awaited<ReturnType<typeof loadTarget>> | undefined;
  const getP = async (): Promise<NonNullable<typeof P>> => (P ??= await loadTarget(cfg.target));
  if (cfg.index !== undefined) {
    const p = await getP();
    ctx = { corpus: loadCorpus(cfg.maxSeedBytes), handlers: listHandlers(p), ...familyOptions(cfg) };
  }
  const inputs = replayInputs(cfg, () => ctx!);
  if (cfg.inProcess) {
    const p = await getP();
    const guard = new PollutionGuard(p);
    for (const r of inputs) console.log(describeRun(p, guard, r.input, r.spec, r.label));
    return 0;
  }
  const dir = existsSync('/dev/shm') ? '/dev/shm' : tmpdir();
  let code = 0;
  for (const r of inputs) {
    const child = await startChild(cfg, dir, [], () => {});
    child.busy = true;
    const timer = setInterval(() => child.watch(cfg), TICK_MS);
    const started = Date.now();
    child.send({ type: 'replay', hex: hex(r.input), spec: r.spec, label: r.label });
    const res = await Promise.race([
      new Promise<string>((resolve) => child.listen((m) => { if (m.type === 'replay-done') resolve(m.text); })),
      child.exited.then(({ code: c, signal }) => ({ c, signal })),
    ]);
    clearInterval(timer);
    if (typeof res === 'string') {
      console.log(res);
      console.log(`  child: RSS ${mb(child.lastRss)} MiB (peak ${mb(child.peakRss)} MiB)`);
      child.proc.disconnect();
    } else {
      code = 1;
      const how = child.killReason !== null ? `killed: ${child.killReason} (${child.killDetail})` : `died: ${res.signal !== null ? `signal ${res.signal}` : `exit code ${res.c}`}`;
      console.log(`${r.label}: ${r.input.length} bytes, options ${specLabel(r.spec)}`);
      console.log(`  hex ${hex(r.input.subarray(0, 1000))}${r.input.length > 1000 ? '...' : ''}`);
      console.log(`  the child running it ${how} after ${Date.now() - started} ms; RSS ${mb(child.lastRss)} MiB (peak ${mb(child.peakRss)} MiB)`);
      const fatal = fatalLine(child.stderrTail);
      if (fatal !== undefined) console.log(`  ${fatal}`);
      console.log(`  stderr tail:\n${child.stderrTail.slice(-2000).replace(/^/gm, '    | ')}`);
    }
    await child.exited;
    child.close();
  }
  return code;
}
