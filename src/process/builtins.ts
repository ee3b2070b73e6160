/**
 * Node built-in modules that a child does not need to start, loaded on first
 * use: importing them up front costs every child (and every program that
 * imports billiard-ts) milliseconds of start-up (bench/process.ts).
 */

import type * as ChildProcessModule from 'node:child_process';

let childProcessModule: typeof ChildProcessModule | undefined;

/** `node:child_process`. */
export function childProcess(): typeof ChildProcessModule {
  childProcessModule ??= process.getBuiltinModule('node:child_process');
  return childProcessModule;
}
