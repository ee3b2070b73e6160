/**
 * A fuzz child: runs the inputs of the batches its supervisor sends and
 * reports outcomes, findings and counts over IPC. It expects to be lost:
 * before each loads() it writes the input's index to the status file (see
 * ./protocol.ts), so when V8 aborts, the kernel kills it or the supervisor
 * kills it for time or memory, the supervisor knows which input did it.
 *
 * Started by ./supervisor.ts as
 *   node --import tsx --max-old-space-size=N --expose-gc bench/fuzz/child.ts
 */

import { writeFileSync } from 'node:fs';

import { hex } from './core.js';
import { generate, type GenContext, loadCorpus, parseFamilies } from './generate.js';
import {
  bucketOf, C_AMPLIFICATION, C_BROKEN, C_CHECKS, C_MEMORY, C_POLLUTION, C_SLOW, CATEGORIES, checkSentinels, describeRun, type Finding,
  listHandlers, loadTarget, makeSentinels, mib, minimize, N_COUNTERS, type Pickle, PollutionGuard, runOne, type Sentinel,
} from './oracle.js';
import { type ChildConfig, type FromChild, Phase, StatusWriter, type ToChild } from './protocol.js';

/**
 * The unpickler's default allocation budget (src/pickle/unpickler.ts:
 * 64 MiB plus 16 bytes per input byte). A load that grows memory well past it
 * has an allocation the budget does not see (16 MiB of EMPTY_SET, charged
 * nothing, took 2.6 GB).
 */
const BUDGET_BASE = 64 * 2 ** 20;
const BUDGET_PER_BYTE = 16;
const OVER_BUDGET_FACTOR = 1.5;

/** Extra example inputs kept per finding. */
const MAX_EXAMPLES = 5;
/** Growth over one input after which the child collects garbage before going on. */
const GC_AFTER_BYTES = 64 * 2 ** 20;

interface State {
  cfg: ChildConfig;
  P: Pickle;
  ctx: GenContext;
  sentinels: Sentinel[];
  guard: PollutionGuard;
  status: StatusWriter;
  known: Set<string>;
  repeats: Map<string, number>;
  sampled: Set<number>;
  sinceCheck: number;
}

let state: State | undefined;

const send = (m: FromChild): void => {
  process.send!(m);
};

const gc = (globalThis as { gc?: () => void }).gc;

async function init(cfg: ChildConfig): Promise<void> {
  const P = await loadTarget(cfg.target);
  const corpus = loadCorpus(cfg.maxSeedBytes);
  const handlers = listHandlers(P);
  const sentinels = makeSentinels(P, corpus);
  state = {
    cfg, P, ctx: { corpus, handlers, ...(cfg.families === undefined ? {} : parseFamilies(cfg.families)) }, sentinels, guard: new PollutionGuard(P), status: new StatusWriter(cfg.statusPath),
    known: new Set(cfg.knownKeys), repeats: new Map(), sampled: new Set(), sinceCheck: 0,
  };
  state.status.publish(-1, Phase.IDLE, 0);
  send({ type: 'ready', seeds: corpus.seeds.length, sweep: corpus.sweep.length, sentinels: sentinels.length, handlers: handlers.length, rss: process.memoryUsage.rss() });
}

function report(s: State, f: Finding): void {
  if (s.known.has(f.key)) {
    const n = (s.repeats.get(f.key) ?? 0) + 1;
    s.repeats.set(f.key, n);
    const m: FromChild = { type: 'repeat', key: f.key };
    if (f.ms !== undefined) m.ms = f.ms;
    if (n <= MAX_EXAMPLES && f.inputHex.length <= 4096) m.example = [f.index, f.spec, f.inputHex];
    send(m);
    return;
  }
  s.known.add(f.key);
  send({ type: 'finding', finding: f });
}

function runBatch(s: State, start: number, end: number): void {
  const { cfg, P, status } = s;
  const counts = new Array<number>(N_COUNTERS).fill(0);
  let totalMs = 0;
  let maxMs = 0;
  let maxIndex = start;
  let maxGrowth = 0;
  let maxGrowthIndex = start;
  const stopAt = Date.now() + cfg.batchMs;
  let i = start;
  for (; i < end; i++) {
    if (i > start && (i & 15) === 0 && Date.now() > stopAt) break;
    const { input, spec, how } = generate(s.ctx, cfg.seed, i);
    status.publish(i, Phase.LOADS, input.length);
    const res = runOne(P, input, spec, cfg.target);
    counts[res.category]!++;
    totalMs += res.ms;
    if (res.ms > maxMs) { maxMs = res.ms; maxIndex = i; }
    if (res.growth > maxGrowth) { maxGrowth = res.growth; maxGrowthIndex = i; }
    if (res.error !== undefined && !s.sampled.has(res.category)) {
      s.sampled.add(res.category);
      send({ type: 'sample', category: res.category, index: i, message: res.error.slice(0, 300) });
    }
    const base = (): Pick<Finding, 'seed' | 'index' | 'spec' | 'how' | 'inputHex' | 'ms' | 'growthBytes' | 'ratio'> => ({
      seed: cfg.seed, index: i, spec, how, inputHex: hex(input), ms: res.ms, growthBytes: res.growth, ratio: res.growth / Math.max(1, input.length),
    });
    let checkNow = false;
    if (res.finding !== undefined) {
      const f: Finding = { ...base(), ...res.finding };
      if (!s.known.has(f.key)) {
        f.minimizedHex = hex(minimize(P, input, spec, f.key, cfg.target, (c) => {
          writeFileSync(`${cfg.statusPath}.cand`, c);
          status.publish(i, Phase.MINIMIZE, c.length);
        }));
      }
      report(s, f);
      checkNow = true;
    }
    const bucket = bucketOf(how);
    if (res.ms > cfg.slowMs) {
      counts[C_SLOW]!++;
      report(s, { ...base(), kind: 'slow', key: `slow | ${bucket}`, message: `loads took ${res.ms.toFixed(0)} ms (${CATEGORIES[res.category]})` });
    }
    if (res.growth > cfg.memoryLimitBytes) {
      counts[C_MEMORY]!++;
      report(s, { ...base(), kind: 'memory', key: `memory | ${bucket}`, message: `memory grew by ${mib(res.growth)} MiB over one input of ${input.length} bytes (limit ${mib(cfg.memoryLimitBytes)} MiB; ${CATEGORIES[res.category]})` });
    } else if (res.growth > OVER_BUDGET_FACTOR * (BUDGET_BASE + BUDGET_PER_BYTE * input.length)) {
      // More than the unpickler's default allocation budget allows: some allocation is not charged, or charged too little.
      counts[C_AMPLIFICATION]!++;
      report(s, { ...base(), kind: 'amplification', key: `over budget | ${bucket}`, message: `${mib(res.growth)} MiB allocated for ${input.length} input bytes: over ${OVER_BUDGET_FACTOR}x the default maxAllocBytes (${mib(BUDGET_BASE + BUDGET_PER_BYTE * input.length)} MiB; ${CATEGORIES[res.category]})` });
    } else if (res.growth > cfg.ampMinBytes && res.growth / Math.max(1, input.length) > cfg.ampRatio) {
      counts[C_AMPLIFICATION]!++;
      report(s, { ...base(), kind: 'amplification', key: `amplification | ${bucket}`, message: `${mib(res.growth)} MiB allocated for ${input.length} input bytes: ${Math.round(res.growth / Math.max(1, input.length))} bytes per byte (limit ${cfg.ampRatio}; ${CATEGORIES[res.category]})` });
    }
    if (res.growth > GC_AFTER_BYTES && gc !== undefined) gc();
    s.sinceCheck++;
    const full = s.sinceCheck >= cfg.checkEvery;
    const polluted = full ? s.guard.full() : s.guard.quick();
    if (polluted !== undefined) {
      counts[C_POLLUTION]!++;
      report(s, { ...base(), kind: 'pollution', key: `pollution | ${polluted}`, message: polluted, note: full ? `found by the full check after the last ${s.sinceCheck} inputs` : 'found right after this input' });
      s.guard.restore();
      checkNow = true;
    }
    if (full || checkNow) {
      s.sinceCheck = 0;
      counts[C_CHECKS]!++;
      status.publish(i, Phase.CHECK, 0);
      const broken = checkSentinels(P, s.sentinels);
      if (broken !== undefined) {
        counts[C_BROKEN]!++;
        report(s, { ...base(), kind: 'decoder-broken', key: `decoder-broken | ${broken.replace(/\d+/g, 'N').slice(0, 200)}`, message: broken, note: 'known-good pickles load wrong after this input: the child exits so that a fresh one takes over' });
        // Module state is damaged: a fresh child takes over.
        const done: FromChild = { type: 'batch-done', next: i + 1, counts, totalMs, maxMs, maxIndex, maxGrowth, maxGrowthIndex, rss: process.memoryUsage.rss(), exiting: true };
        process.send!(done, undefined, {}, () => process.exit(3));
        return;
      }
    }
  }
  status.publish(i, Phase.IDLE, 0);
  send({ type: 'batch-done', next: i, counts, totalMs, maxMs, maxIndex, maxGrowth, maxGrowthIndex, rss: process.memoryUsage.rss() });
}

// The supervisor handles Ctrl-C (which the terminal sends to the whole process group) and kills us.
process.on('SIGINT', () => {});
process.on('disconnect', () => process.exit(0));
process.on('message', (m: ToChild) => {
  if (m.type === 'init') {
    void init(m.cfg).catch((e: unknown) => {
      console.error(`fuzz child: init failed: ${(e as Error)?.stack ?? String(e)}`);
      process.exit(2);
    });
    return;
  }
  const s = state;
  if (s === undefined) throw new Error(`fuzz child: ${m.type} before init`);
  if (m.type === 'known') s.known.add(m.key);
  else if (m.type === 'batch') runBatch(s, m.start, m.end);
  else if (m.type === 'replay') {
    const input = new Uint8Array(Buffer.from(m.hex, 'hex'));
    s.status.publish(-1, Phase.LOADS, input.length);
    const text = describeRun(s.P, s.guard, input, m.spec, m.label);
    s.status.publish(-1, Phase.IDLE, 0);
    send({ type: 'replay-done', text });
  }
});
