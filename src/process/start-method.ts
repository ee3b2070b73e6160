/**
 * Start methods (spec/api.md §1): `'spawn'` (the default: a fresh `node`, as
 * Python's spawn) and `'forkserver'` (warm children, see forkserver.ts).
 * `'fork'` does not exist in Node and is refused with the reason.
 */

import { RuntimeError, ValueError } from './errors.js';

/** The start methods this platform has. */
export type StartMethod = 'spawn' | 'forkserver';

export const START_METHODS: readonly StartMethod[] = ['spawn', 'forkserver'];

let actual: StartMethod | null = null;

/** Throws the ValueError of an unknown (or impossible) start method. */
export function refuseMethod(method: unknown): never {
  if (method === 'fork') {
    throw new ValueError("cannot find context for 'fork': Node.js cannot fork a running process; use 'spawn' (a fresh process) or 'forkserver' (pre-started ones)", {
      code: 'NO_FORK',
    });
  }
  throw new ValueError(`cannot find context for ${JSON.stringify(method)}`, { code: 'UNKNOWN_START_METHOD' });
}

export function checkMethod(method: unknown): StartMethod {
  if (!START_METHODS.includes(method as StartMethod)) refuseMethod(method);
  return method as StartMethod;
}

/**
 * Fixes the default start method (billiard's `set_start_method`): a second
 * call needs `force` (else RuntimeError); null with `force` unsets it, null
 * without it fixes the default.
 */
export function setStartMethod(method: string | null, options?: { force?: boolean }): void {
  if (actual !== null && !options?.force) throw new RuntimeError('context has already been set', { code: 'CONTEXT_ALREADY_SET' });
  if (method === null) actual = options?.force ? null : 'spawn';
  else actual = checkMethod(method);
}

/** The default start method (`'spawn'` unless set); with `allowNone`, null while unset. */
export function getStartMethod(options?: { allowNone?: boolean }): StartMethod | null {
  if (actual === null && options?.allowNone) return null;
  actual ??= 'spawn';
  return actual;
}

/** Every start method this platform has, the default first. */
export function getAllStartMethods(): StartMethod[] {
  return [...START_METHODS];
}
