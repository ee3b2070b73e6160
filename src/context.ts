/**
 * Contexts and start methods (spec/api.md §1, §1.1). Node cannot fork:
 * `'spawn'` (the default) starts a fresh `node`; `'fork'` is refused.
 */

import { availableParallelism } from 'node:os';

import { Process, type ProcessOptions } from './process/index.js';
import { ValueError } from './process/errors.js';

/** The start methods this platform has. */
export type StartMethod = 'spawn';

const METHODS: readonly StartMethod[] = ['spawn'];

function refuse(method: unknown): never {
  if (method === 'fork') {
    throw new ValueError("cannot find context for 'fork': Node.js cannot fork a running process; use 'spawn' (a fresh process, as Python's spawn)", { code: 'NO_FORK' });
  }
  throw new ValueError(`cannot find context for ${JSON.stringify(method)}`, { code: 'UNKNOWN_START_METHOD' });
}

/** A context: the factories of one start method (Python's `BaseContext`). */
export class Context {
  readonly startMethod: StartMethod;
  /** Processes of this context. */
  readonly Process: typeof Process;
  constructor(method: StartMethod) {
    this.startMethod = method;
    this.Process = Process;
  }
  /** Python's `get_start_method()` of a concrete context. */
  getStartMethod(): StartMethod {
    return this.startMethod;
  }
  /** The number of CPUs (`os.availableParallelism()`). */
  cpuCount(): number {
    return availableParallelism();
  }
  /** Shorthand for `new ctx.Process(options)`. */
  newProcess(options?: ProcessOptions): Process {
    return new this.Process(options);
  }
}

const contexts = new Map<StartMethod, Context>(METHODS.map((m) => [m, new Context(m)]));
let actual: StartMethod | null = null;

/** The context of a start method, or the default one (fixing the start method if unset). */
export function getContext(method?: string | null): Context {
  if (method === undefined || method === null) {
    actual ??= 'spawn';
    return contexts.get(actual)!;
  }
  const ctx = contexts.get(method as StartMethod);
  if (ctx === undefined) refuse(method);
  return ctx;
}

/** Fixes the default start method; a second call needs `force`. */
export function setStartMethod(method: string | null, options?: { force?: boolean }): void {
  if (actual !== null && !options?.force) throw new Error('context has already been set');
  if (method === null) {
    actual = null;
    return;
  }
  if (!contexts.has(method as StartMethod)) refuse(method);
  actual = method as StartMethod;
}

/** The default start method (`'spawn'`); with `allowNone`, null while unset. */
export function getStartMethod(options?: { allowNone?: boolean }): StartMethod | null {
  if (actual === null && options?.allowNone) return null;
  actual ??= 'spawn';
  return actual;
}

/** Every start method this platform has. */
export function getAllStartMethods(): StartMethod[] {
  return [...METHODS];
}

/** The number of CPUs (`os.availableParallelism()`), as billiard's `cpu_count()`. */
export function cpuCount(): number {
  return availableParallelism();
}
