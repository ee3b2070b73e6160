/**
 * What the supervisor and its children say to each other: the child's
 * settings, the IPC messages, and the status file through which a child
 * shows, before every loads(), which input it is running.
 *
 * The status file is 64 bytes (eight float64): a sequence number, the input
 * index, the phase, the start time (ms since the epoch), the input length,
 * two spare slots and the sequence number again. The child rewrites it with
 * one positional write per input; the supervisor reads it every tick and
 * accepts a read whose first and last slots agree (a torn read is retried).
 * When a child dies, the status names the input that killed it, and the
 * supervisor rebuilds that input from (seed, index).
 */

import { closeSync, openSync, readSync, writeSync } from 'node:fs';

import type { Finding } from './oracle.js';

/** What the child is doing (status slot 2). */
export enum Phase {
  IDLE = 0,
  LOADS = 1,
  MINIMIZE = 2,
  CHECK = 3,
}

export const PHASE_NAMES = ['idle', 'loads', 'minimizing', 'known-good check'] as const;

/** Settings the supervisor hands each child. */
export interface ChildConfig {
  /** Repository root whose src/pickle is under test. */
  target: string;
  seed: number;
  maxSeedBytes: number;
  /** An input that completes slower than this is a 'slow' finding. */
  slowMs: number;
  /** Growth over one input (heap + external) above this is a 'memory' finding. */
  memoryLimitBytes: number;
  /** Growth per input byte above this (and above ampMinBytes) is an 'amplification' finding. */
  ampRatio: number;
  ampMinBytes: number;
  /** Full pollution check and known-good pickles every N inputs. */
  checkEvery: number;
  /** A batch ends after this long even when its range is not done. */
  batchMs: number;
  statusPath: string;
  knownKeys: string[];
  /** --families as given. */
  families: string | undefined;
}

export type ToChild =
  | { type: 'init'; cfg: ChildConfig }
  | { type: 'batch'; start: number; end: number }
  | { type: 'known'; key: string }
  | { type: 'replay'; hex: string; spec: number; label: string };

export type FromChild =
  | { type: 'ready'; seeds: number; sweep: number; sentinels: number; handlers: number; rss: number }
  | { type: 'finding'; finding: Finding }
  | { type: 'repeat'; key: string; ms?: number; example?: [number, number, string] }
  | { type: 'sample'; category: number; index: number; message: string }
  | {
    type: 'batch-done';
    /** First index not run. */
    next: number;
    counts: number[];
    /** Sum of loads() time, slowest input and its index. */
    totalMs: number;
    maxMs: number;
    maxIndex: number;
    maxGrowth: number;
    maxGrowthIndex: number;
    rss: number;
    /** The child exits after this message (its module state is damaged). */
    exiting?: boolean;
  }
  | { type: 'replay-done'; text: string };

const SLOTS = 8;

/** The child's side of the status file. */
export class StatusWriter {
  readonly #fd: number;
  readonly #f = new Float64Array(SLOTS);
  readonly #bytes = new Uint8Array(this.#f.buffer);
  #seq = 0;
  constructor(path: string) {
    this.#fd = openSync(path, 'r+');
  }
  publish(index: number, phase: Phase, length: number): void {
    const f = this.#f;
    const seq = ++this.#seq;
    f[0] = seq;
    f[1] = index;
    f[2] = phase;
    f[3] = Date.now();
    f[4] = length;
    f[7] = seq;
    writeSync(this.#fd, this.#bytes, 0, SLOTS * 8, 0);
  }
}

export interface Status {
  seq: number;
  index: number;
  phase: Phase;
  startMs: number;
  length: number;
}

/** The supervisor's side of the status file. */
export class StatusReader {
  readonly #fd: number;
  readonly #f = new Float64Array(SLOTS);
  readonly #bytes = new Uint8Array(this.#f.buffer);
  constructor(path: string) {
    this.#fd = openSync(path, 'w+');
    this.#bytes.fill(0);
    writeSync(this.#fd, this.#bytes, 0, SLOTS * 8, 0);
  }
  read(): Status | undefined {
    for (let attempt = 0; attempt < 5; attempt++) {
      const n = readSync(this.#fd, this.#bytes, 0, SLOTS * 8, 0);
      const f = this.#f;
      if (n === SLOTS * 8 && f[0] === f[7]) return { seq: f[0]!, index: f[1]!, phase: f[2]! as Phase, startMs: f[3]!, length: f[4]! };
    }
    return undefined;
  }
  close(): void {
    closeSync(this.#fd);
  }
}
