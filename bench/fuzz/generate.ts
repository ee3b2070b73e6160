/**
 * The pickle fuzzer's inputs. Input i of a run is a pure function of the
 * seed, i, the corpus (fixtures/pickles-cpython.json) and the list of
 * registered globals of the code under test, so the supervisor can rebuild
 * the input a dead child was running from its index alone.
 *
 * Families: the truncation sweep of the corpus (one input in four while it
 * lasts), random bytes, random opcodes, generated programs, mutated corpus
 * pickles, and the hostile generators of ./hostile.ts.
 */

import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { inflateSync } from 'node:zlib';

import {
  concat, genProgram, genRawOp, hex, interesting, INTERESTING_BYTES, MAX_INPUT, Op, OPCODES, type OpSpan, randomSpec, Rng, walk, WIDTH, writeLE,
} from './core.js';
import { genHandlerBomb, genHandlerCall, genHashFlood, genHugeLength, genMemoHuge, genRepeat, type HandlerInfo } from './hostile.js';
// ====================================================================== corpus

export interface Corpus {
  /** Distinct seed pickles. */
  seeds: Uint8Array[];
  /** Truncation sweep: every (seed, offset) pair of seeds up to SWEEP_MAX_LEN bytes. */
  sweep: Array<[number, number]>;
  /** A few fixture cases (name, pickle) the oracle turns into known-good checks. */
  sentinelCases: Array<{ name: string; bytes: Uint8Array }>;
}

/** Seeds of at most this many bytes are truncated at every offset. */
const SWEEP_MAX_LEN = 1024;
/** One input in this many is taken from the truncation sweep (while it lasts). */
const SWEEP_EVERY = 4;

const FIXTURE = fileURLToPath(new URL('../../fixtures/pickles-cpython.json', import.meta.url));

function decodeFixture(s: string): Uint8Array {
  if (s.startsWith('z:')) return new Uint8Array(inflateSync(Buffer.from(s.slice(2), 'base64')));
  return new Uint8Array(Buffer.from(s, 'hex'));
}

interface FixtureFile {
  cases: Array<{ name: string; pickles: Array<string | null> }>;
  opaque: Array<{ name: string; pickles: Array<string | null> }>;
}

export function loadCorpus(maxSeedBytes: number): Corpus {
  const raw = JSON.parse(readFileSync(FIXTURE, 'utf8')) as FixtureFile;
  const seen = new Set<string>();
  const seeds: Uint8Array[] = [];
  for (const c of [...raw.cases, ...raw.opaque]) {
    for (const p of c.pickles) {
      if (p === null || p.length / 2 > maxSeedBytes * 4) continue;
      const b = decodeFixture(p);
      const key = hex(b);
      if (b.length > maxSeedBytes || seen.has(key)) continue;
      seen.add(key);
      seeds.push(b);
    }
  }
  const sweep: Array<[number, number]> = [];
  seeds.forEach((s, i) => {
    if (s.length <= SWEEP_MAX_LEN) for (let off = 0; off <= s.length; off++) sweep.push([i, off]);
  });
  const sentinelCases: Corpus['sentinelCases'] = [];
  for (const c of raw.cases.filter((_, i) => i % 61 === 7).slice(0, 6)) {
    const p = c.pickles[c.pickles.length - 1] ?? c.pickles[2];
    if (p !== null && p !== undefined) sentinelCases.push({ name: `corpus:${c.name}`, bytes: decodeFixture(p) });
  }
  return { seeds, sweep, sentinelCases };
}

// ====================================================================== mutations

type Mutator = (r: Rng, d: Uint8Array, corpus: Corpus) => Uint8Array;

const clampPos = (r: Rng, d: Uint8Array): number => r.int(d.length + 1);

/** An opcode boundary of `d` (or a random offset when it does not parse). */
function boundary(r: Rng, d: Uint8Array, ops: OpSpan[]): number {
  if (ops.length === 0 || r.chance(0.1)) return clampPos(r, d);
  const op = r.pick(ops);
  return r.chance(0.5) ? op.pos : op.end;
}

const MUTATORS: ReadonlyArray<[string, number, Mutator]> = [
  ['flip-bits', 3, (r, d) => {
    const out = d.slice();
    for (let k = r.range(1, 4); k > 0 && out.length > 0; k--) out[r.int(out.length)] ^= 1 << r.int(8);
    return out;
  }],
  ['random-bytes', 3, (r, d) => {
    const out = d.slice();
    for (let k = r.range(1, 4); k > 0 && out.length > 0; k--) out[r.int(out.length)] = r.int(256);
    return out;
  }],
  ['interesting-byte', 4, (r, d) => {
    const out = d.slice();
    if (out.length === 0) return out;
    const ops = walk(d);
    const at = ops.length > 0 && r.chance(0.5) ? r.pick(ops).pos : r.int(out.length);
    out[at] = r.pick(INTERESTING_BYTES);
    return out;
  }],
  ['insert-bytes', 2, (r, d) => {
    const at = clampPos(r, d);
    const ins = r.chance(0.5) ? r.bytes(r.range(1, 16)) : Uint8Array.of(r.pick(INTERESTING_BYTES));
    return concat(d.subarray(0, at), ins, d.subarray(at));
  }],
  ['insert-op', 4, (r, d) => {
    const at = boundary(r, d, walk(d));
    const ins = r.chance(0.7) ? genRawOp(r) : concat(genRawOp(r), genRawOp(r), genRawOp(r));
    return concat(d.subarray(0, at), ins, d.subarray(at));
  }],
  ['delete-bytes', 2, (r, d) => {
    const at = r.int(d.length);
    const n = r.range(1, 16);
    return concat(d.subarray(0, at), d.subarray(Math.min(d.length, at + n)));
  }],
  ['delete-op', 3, (r, d) => {
    const ops = walk(d);
    if (ops.length === 0) return d.subarray(1);
    const a = r.int(ops.length);
    const b = Math.min(ops.length - 1, a + (r.chance(0.8) ? 0 : r.int(4)));
    return concat(d.subarray(0, ops[a]!.pos), d.subarray(ops[b]!.end));
  }],
  ['replace-op', 3, (r, d) => {
    const out = d.slice();
    const ops = walk(d);
    if (ops.length > 0) out[r.pick(ops).pos] = r.pick(OPCODES);
    return out;
  }],
  ['swap-ops', 2, (r, d) => {
    const ops = walk(d);
    if (ops.length < 2) return d;
    let a = r.int(ops.length);
    let b = r.int(ops.length);
    if (a === b) return d;
    if (a > b) [a, b] = [b, a];
    const A = ops[a]!;
    const B = ops[b]!;
    return concat(d.subarray(0, A.pos), d.subarray(B.pos, B.end), d.subarray(A.end, B.pos), d.subarray(A.pos, A.end), d.subarray(B.end));
  }],
  ['truncate', 2, (r, d) => d.subarray(0, r.int(d.length))],
  ['splice', 3, (r, d, c) => {
    const other = r.chance(0.8) ? r.pick(c.seeds) : genProgram(r);
    const opsA = walk(d);
    const opsB = walk(other);
    const a = boundary(r, d, opsA);
    const b = boundary(r, other, opsB);
    return concat(d.subarray(0, a), other.subarray(b));
  }],
  ['length-field', 6, (r, d) => {
    const out = d.slice();
    const ops = walk(d).filter((o) => WIDTH[o.kind] !== undefined);
    if (ops.length === 0 || r.chance(0.1)) {
      const w = r.pick([1, 2, 4, 8]);
      const at = r.int(Math.max(1, out.length));
      writeLE(out, at, w, interesting(r, w, out.length - at - w));
      return out;
    }
    const op = r.pick(ops);
    const w = WIDTH[op.kind]!;
    writeLE(out, op.pos + 1, w, interesting(r, w, out.length - op.pos - 1 - w));
    return out;
  }],
  ['duplicate', 3, (r, d) => {
    const ops = walk(d);
    let s: number;
    let e: number;
    if (ops.length > 0 && r.chance(0.7)) {
      const a = r.int(ops.length);
      const b = Math.min(ops.length - 1, a + r.int(4));
      s = ops[a]!.pos;
      e = ops[b]!.end;
    } else {
      s = r.int(d.length);
      e = Math.min(d.length, s + r.range(1, 32));
    }
    const piece = d.subarray(s, e);
    const times = Math.min(r.chance(0.7) ? r.range(1, 4) : 2 ** r.range(3, 14), Math.floor(MAX_INPUT / 2 / Math.max(1, piece.length)));
    const at = r.chance(0.5) ? e : boundary(r, d, ops);
    const parts: Uint8Array[] = [d.subarray(0, at)];
    for (let i = 0; i < times; i++) parts.push(piece);
    parts.push(d.subarray(at));
    return concat(...parts);
  }],
];

const MUTATOR_TOTAL = MUTATORS.reduce((n, m) => n + m[1], 0);

function pickMutator(r: Rng): Mutator {
  let x = r.int(MUTATOR_TOTAL);
  for (const [, w, m] of MUTATORS) {
    if (x < w) return m;
    x -= w;
  }
  return MUTATORS[0]![2];
}

function havoc(r: Rng, d: Uint8Array, corpus: Corpus, rounds: number): Uint8Array {
  for (let i = 0; i < rounds; i++) d = pickMutator(r)(r, d, corpus);
  return d;
}

/** One generated input: the bytes, the loads() options bitmask and how it was made. */
export interface Generated {
  input: Uint8Array;
  spec: number;
  /** The generator (first word: its family) and what it chose. */
  how: string;
}

/** What generate() needs besides (seed, index). */
export interface GenContext {
  corpus: Corpus;
  /** The registered globals of the registry under test, in registration order. */
  handlers: readonly HandlerInfo[];
  /** Family weights (default FAMILIES). */
  families?: ReadonlyArray<readonly [string, number]>;
  /** Whether one input in four comes from the truncation sweep while it lasts (default true). */
  sweep?: boolean;
}

/**
 * The generator families and their weights (per 1000 inputs outside the
 * truncation sweep). The hostile ones are weighted so that each shape of
 * issue 7 (a memo index near 2**32 with a dict restart; bytearray(2**20)
 * repeated) turns up in the first few thousand inputs of a run.
 */
export const FAMILIES: ReadonlyArray<readonly [name: string, weight: number]> = [
  ['random-bytes', 40],
  ['random-opcodes', 70],
  ['generated-program', 250],
  ['memo-huge', 15],
  ['huge-length', 40],
  ['huge-repeat', 30],
  ['handler-call', 45],
  ['handler-bomb', 30],
  ['hash-flood', 10],
  ['mutated-seed', 480],
];

/**
 * Parses `--families`: `name=weight,...` with names from FAMILIES, plus
 * `truncate-seed` (the sweep: on unless its weight is 0). With the word
 * `only`, families not named get weight 0 (and the sweep is off unless named).
 */
export function parseFamilies(spec: string): { families: Array<[string, number]>; sweep: boolean } {
  const given = new Map<string, number>();
  let only = false;
  for (const part of spec.split(',').map((s) => s.trim()).filter((s) => s.length > 0)) {
    if (part === 'only') { only = true; continue; }
    const [name, w] = part.split('=');
    if (name !== 'truncate-seed' && !FAMILIES.some(([n]) => n === name)) throw new Error(`unknown generator family '${name}' (families: truncate-seed, ${FAMILIES.map(([n]) => n).join(', ')})`);
    const weight = w === undefined ? 1 : Number(w);
    if (!Number.isFinite(weight) || weight < 0) throw new Error(`bad weight in '${part}'`);
    given.set(name!, weight);
  }
  const out = FAMILIES.map(([n, w]): [string, number] => [n, given.get(n) ?? (only ? 0 : w)]);
  if (out.every(([, w]) => w === 0)) throw new Error('every generator family has weight 0');
  const sweepWeight = given.get('truncate-seed');
  return { families: out, sweep: sweepWeight === undefined ? !only : sweepWeight > 0 };
}

/** Input number `index` of a run: a pure function of (seed, index, corpus, handlers). */
export function generate(ctx: GenContext, seed: number, index: number): Generated {
  const { corpus, handlers } = ctx;
  const r = new Rng(seed, index);
  const spec = randomSpec(r);
  let input: Uint8Array;
  let how: string;
  const sweepAt = index / SWEEP_EVERY;
  if (ctx.sweep !== false && index % SWEEP_EVERY === 0 && sweepAt < corpus.sweep.length) {
    const [s, off] = corpus.sweep[sweepAt]!;
    input = corpus.seeds[s]!.subarray(0, off);
    how = `truncate seed ${s} at ${off}`;
  } else {
    const families = ctx.families ?? FAMILIES;
    let x = r.int(families.reduce((n, f) => n + f[1], 0));
    let family = families[0]![0];
    for (const [name, w] of families) {
      if (x < w) { family = name; break; }
      x -= w;
    }
    switch (family) {
      case 'random-bytes':
        input = r.bytes(r.size(6));
        if (r.chance(0.5)) input = concat([Op.PROTO, r.int(6)], input);
        how = 'random-bytes';
        break;
      case 'random-opcodes': {
        const parts: Uint8Array[] = r.chance(0.7) ? [Uint8Array.of(Op.PROTO, r.int(6))] : [];
        for (let n = r.range(1, 24); n > 0; n--) parts.push(genRawOp(r));
        if (r.chance(0.8)) parts.push(Uint8Array.of(Op.STOP));
        input = concat(...parts);
        how = 'random-opcodes';
        break;
      }
      case 'generated-program':
        input = genProgram(r);
        if (r.chance(0.4)) input = havoc(r, input, corpus, r.range(1, 2));
        how = 'generated-program';
        break;
      case 'mutated-seed': {
        const s = r.int(corpus.seeds.length);
        input = havoc(r, corpus.seeds[s]!, corpus, r.chance(0.5) ? 1 : r.range(2, 6));
        how = `mutated-seed ${s}`;
        break;
      }
      default: {
        const h = family === 'memo-huge' ? genMemoHuge(r)
          : family === 'huge-length' ? genHugeLength(r)
            : family === 'huge-repeat' ? genRepeat(r)
              : family === 'handler-call' ? genHandlerCall(r, handlers)
                : family === 'hash-flood' ? genHashFlood(r)
                  : genHandlerBomb(r, handlers);
        input = h.input;
        how = h.how;
        // Now and then one mutation on top (small inputs only: walk() is linear).
        if (input.length <= 4096 && r.chance(0.1)) {
          input = havoc(r, input, corpus, 1);
          how += ' +1 mutation';
        }
      }
    }
  }
  if (input.length > MAX_INPUT) input = input.subarray(0, MAX_INPUT);
  return { input, spec, how };
}

/** The family of a `how` string. */
export function familyOf(how: string): string {
  return how.startsWith('truncate') ? 'truncate-seed' : how.split(' ', 1)[0]!;
}
