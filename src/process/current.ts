/**
 * This process as billiard sees it: `currentProcess()`, `parentProcess()`,
 * `isMainProcess(import.meta)` and the numbering of children
 * (`Process-1`, `Process-1:2`). A child learns its name, identity, authkey
 * and parent from the bootstrap data (see child.ts).
 */

import { realpathSync } from 'node:fs';
import { pathToFileURL } from 'node:url';

import { AuthenticationString } from './authkey.js';

/** The process object of the running process. */
export interface CurrentProcess {
  /** `'MainProcess'` in the main process; the name the parent gave otherwise. */
  name: string;
  readonly pid: number;
  /** Same as `pid`. */
  readonly ident: number;
  /**
   * The process authkey: 32 random bytes in the main process; children get
   * their parent's. An {@link AuthenticationString}, which refuses to be
   * pickled (send `new Uint8Array(key)` to send a copy on purpose); setting
   * it takes a copy of any bytes.
   */
  get authkey(): AuthenticationString;
  set authkey(value: Uint8Array);
  /** Whether this process is a daemonic child. */
  readonly daemon: boolean;
  /** Position in the process tree: `[]` for the main process, `[1]`, `[1, 2]`... */
  readonly identity: readonly number[];
  /** Always true: the running process is alive. */
  isAlive(): boolean;
}

/** What a child knows of its parent: `parentProcess()`. */
export interface ParentProcess {
  readonly name: string;
  readonly pid: number;
}

interface State {
  name: string;
  /** Made on first use in the main process (loading node:crypto costs a child's start-up). */
  authkey: AuthenticationString | null;
  daemon: boolean;
  identity: number[];
  parent: ParentProcess | null;
  isChild: boolean;
  counter: number;
}

const state: State = {
  name: 'MainProcess',
  authkey: null,
  daemon: false,
  identity: [],
  parent: null,
  isChild: false,
  counter: 0,
};

const current: CurrentProcess = {
  get name(): string {
    return state.name;
  },
  set name(value: string) {
    if (typeof value !== 'string') throw new TypeError('name must be a string');
    state.name = value;
  },
  get pid(): number {
    return process.pid;
  },
  get ident(): number {
    return process.pid;
  },
  get authkey(): AuthenticationString {
    state.authkey ??= new AuthenticationString(globalThis.crypto.getRandomValues(new Uint8Array(32)));
    return state.authkey;
  },
  set authkey(value: Uint8Array) {
    if (!(value instanceof Uint8Array)) throw new TypeError('authkey must be a Uint8Array (bytes)');
    state.authkey = new AuthenticationString(value);
  },
  get daemon(): boolean {
    return state.daemon;
  },
  get identity(): readonly number[] {
    return state.identity;
  },
  isAlive(): boolean {
    return true;
  },
};

/** This process (billiard's `current_process()`). */
export function currentProcess(): CurrentProcess {
  return current;
}

/** The parent of this process when it is a billiard-ts child, else null (Python's `parent_process()`). */
export function parentProcess(): ParentProcess | null {
  return state.parent;
}

/** @internal the identity of the next child: this process's identity plus the next count. */
export function nextChildIdentity(): number[] {
  state.counter += 1;
  return [...state.identity, state.counter];
}

/** @internal installs what the parent sent, in a child, before user code is imported. */
export function becomeChild(info: { name: string; authkey: Uint8Array; daemon: boolean; identity: number[]; parent: ParentProcess }): void {
  state.name = info.name;
  state.authkey = new AuthenticationString(info.authkey);
  state.daemon = info.daemon;
  state.identity = [...info.identity];
  state.parent = info.parent;
  state.isChild = true;
  state.counter = 0;
}

let importingUserCode = 0;

/**
 * @internal imports a module of the user's (a target's, a task's, a
 * manager class's) in a child. While it is being evaluated the child is
 * still bootstrapping, and starting a process is refused (Python's
 * `_check_not_importing_main`): a main module without the
 * `isMainProcess(import.meta)` guard would otherwise start a child from
 * every child, without end.
 */
export async function importUserModule(url: string): Promise<Record<string, unknown>> {
  importingUserCode += 1;
  try {
    return (await import(url)) as Record<string, unknown>;
  } finally {
    importingUserCode -= 1;
  }
}

/** @internal true while a child is importing the user's modules (see importUserModule). */
export function isBootstrapping(): boolean {
  return state.isChild && importingUserCode > 0;
}

/** @internal whether this process is a billiard-ts child. */
export function isChildProcess(): boolean {
  return state.isChild;
}

let mainUrl: string | undefined;

function mainModuleUrl(): string {
  if (mainUrl === undefined) {
    const script = process.argv[1];
    try {
      mainUrl = script ? pathToFileURL(realpathSync(script)).href : '';
    } catch {
      mainUrl = script ? pathToFileURL(script).href : '';
    }
  }
  return mainUrl;
}

/**
 * The counterpart of `if __name__ == '__main__'`: true in the main script
 * of the main process, false in every child (which imports the main script
 * to find its target, and must not run its main section).
 *
 *     if (isMainProcess(import.meta)) { ... }
 */
export function isMainProcess(meta: { url: string }): boolean {
  if (state.isChild) return false;
  const url = meta.url;
  if (url === mainModuleUrl()) return true;
  // The entry may have been given without its real path (symlinks) or with a query.
  try {
    const u = new URL(url);
    u.search = '';
    return pathToFileURL(realpathSync(new URL(u.href))).href === mainModuleUrl();
  } catch {
    return false;
  }
}
