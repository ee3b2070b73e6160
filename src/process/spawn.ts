/**
 * Starting children. Node cannot fork, so every child is a fresh process,
 * as Python's `spawn` start method makes them:
 *
 * - a Node child runs child.ts with descriptor 3 connected to the parent (a
 *   socket pair); the parent sends two pickles on it, the preparation data
 *   and the process description (see child.ts), and the child answers
 *   `('ready',)` once it has found its target, or `('error', ...)`;
 * - a Python child runs billiard's own spawn entry point,
 *   `from billiard.spawn import spawn_main; spawn_main(pipe_handle=N)` with
 *   `--billiard-fork`, and reads billiard's preparation data and a pickled
 *   `billiard.context.SpawnProcess` from that pipe (spec/api.md §16).
 *
 * Connections in the arguments keep their descriptor in the child (passed at
 * spawn, numbered from 4 up).
 */

import type { ChildProcess } from 'node:child_process';
import { createRequire } from 'node:module';
import { pathToFileURL } from 'node:url';
import { join } from 'node:path';

import { Connection, Pipe } from '../connection/index.js';
import { FROM_SOURCE, packagePath, pipe } from '../native/index.js';
import { dumps, PyGlobal, PyObject, tuple } from '../pickle/index.js';
import { childProcess } from './builtins.js';
import { findPython } from './python.js';
import { spawnRegistry, type FdPlan } from './reduction.js';

/** What the parent tells a Node child before its target runs. */
export interface PrepData {
  name: string;
  authkey: Uint8Array;
  identity: number[];
  daemon: boolean;
  parentPid: number;
  parentName: string;
  dir: string;
  startMethod: string;
}

/** The process description: a target or a Process subclass, and its arguments. */
export interface ProcessSpec {
  /** `url#export` of the target function, or null. */
  target: string | null;
  /** `url#export` of a Process subclass whose run() to call, or null. */
  cls: string | null;
  args: readonly unknown[];
  kwargs: Record<string, unknown>;
  /** Own fields of a subclass instance. */
  state: Record<string, unknown>;
}

/** The descriptor the bootstrap channel has in a Node child. */
export const BOOTSTRAP_FD = 3;

/**
 * The environment of a child: the given one (or this process's) without the
 * variables through which a parent started by `child_process.fork` or
 * `cluster` talks to this process: a child inheriting NODE_CHANNEL_FD would
 * take its own descriptor of that number (our bootstrap channel) for an IPC
 * channel.
 */
export function childEnv(env: NodeJS.ProcessEnv | undefined): NodeJS.ProcessEnv {
  const out = { ...(env ?? process.env) };
  delete out.NODE_CHANNEL_FD;
  delete out.NODE_CHANNEL_SERIALIZATION_MODE;
  delete out.NODE_UNIQUE_ID;
  return out;
}

let nodeExecutable = process.execPath;

/** The `node` binary Node children run (`setExecutable`). */
export function setNodeExecutable(path: string): void {
  if (typeof path !== 'string' || path === '') throw new TypeError('the executable must be a non-empty path');
  nodeExecutable = path;
}

export function getNodeExecutable(): string {
  return nodeExecutable;
}

/** Flags of the parent that must not reach a child: what to run (-e, -p, --test...), debuggers, profiles. */
const DROPPED_FLAGS = /^(-e|--eval|-p|--print|-i|--interactive|-c|--check|--input-type|--test|--watch|--inspect|--debug|--cpu-prof|--heap-prof|--prof)/;
/** Of the dropped flags, those whose value is the next argument when not given with `=`. */
const FLAGS_WITH_VALUE = new Set(['-e', '--eval', '-p', '--print', '--input-type', '--cpu-prof-dir', '--cpu-prof-name', '--heap-prof-dir', '--heap-prof-name', '--test-reporter', '--test-name-pattern']);

/**
 * The parent's Node flags a child keeps (loaders, conditions, memory limits,
 * warnings...), as Python passes its interpreter flags to spawned children.
 */
export function childExecArgv(argv: readonly string[]): string[] {
  const out: string[] = [];
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    if (DROPPED_FLAGS.test(a)) {
      if (FLAGS_WITH_VALUE.has(a)) i++;
      continue;
    }
    out.push(a);
  }
  return out;
}

/** The child entry script and the Node flags to run it with. */
export function childCommand(extraTsx: boolean): { script: string; execArgv: string[] } {
  const script = FROM_SOURCE ? packagePath('src', 'process', 'child.ts') : packagePath('dist', 'process', 'child.js');
  const execArgv = childExecArgv(process.execArgv);
  const hasTsx = execArgv.some((a) => a.includes('tsx'));
  if ((FROM_SOURCE || extraTsx) && !hasTsx) execArgv.push('--import', tsxLoader());
  return { script, execArgv };
}

/** tsx's ESM loader: the application's own tsx (resolved from the working directory) first, else ours. */
function tsxLoader(): string {
  for (const base of [join(process.cwd(), 'package.json'), import.meta.url]) {
    try {
      const manifest = createRequire(base).resolve('tsx/package.json');
      return pathToFileURL(manifest.replace(/package\.json$/, 'dist/loader.mjs')).href;
    } catch {
      // Not resolvable from there.
    }
  }
  throw new Error('a TypeScript target needs tsx in the child: install it (npm install --save-dev tsx)');
}

function stdioFor(plan: FdPlan, first: number | 'pipe' | null): Array<'inherit' | 'ignore' | 'pipe' | number> {
  const stdio: Array<'inherit' | 'ignore' | 'pipe' | number> = ['inherit', 'inherit', 'inherit'];
  if (first !== null) stdio[BOOTSTRAP_FD] = first;
  for (const f of plan.fds) {
    while (stdio.length < f.childFd) stdio.push('ignore');
    stdio[f.childFd] = f.parentFd;
  }
  return stdio;
}

/** A started child: the Node ChildProcess, and its start-up report. */
export interface Launched {
  child: ChildProcess;
  /**
   * Node children: resolves with the child's report, `['ready']` or
   * `['error', kind, message, stack]`, or null when the child went away
   * without one; null for Python children (billiard sends none).
   */
  report: Promise<unknown[] | null> | null;
  /** Releases what the parent keeps for the start-up (the bootstrap channel). */
  release(): void;
  /** Makes the start-up machinery not keep the parent alive (daemonic children). */
  unref(): void;
}

/** The report a child sends on its bootstrap channel, then the channel is closed. */
function reportOf(channel: Connection): Promise<unknown[] | null> {
  return channel
    .recv()
    .then((m) => (Array.isArray(m) ? (m as unknown[]) : null))
    .catch(() => null)
    .finally(() => channel.close());
}

/** The two bootstrap pickles of a Node child, and the descriptors its Connections need. */
export function bootstrapPickles(prep: PrepData, spec: ProcessSpec): { prepBytes: Uint8Array; specBytes: Uint8Array; plan: FdPlan } {
  const plan: FdPlan = { next: BOOTSTRAP_FD + 1, fds: [] };
  const registry = spawnRegistry(plan);
  const prepBytes = dumps(
    {
      __proto__: null,
      name: prep.name,
      authkey: prep.authkey,
      identity: tuple(...prep.identity),
      daemon: prep.daemon,
      parent_pid: prep.parentPid,
      parent_name: prep.parentName,
      dir: prep.dir,
      start_method: prep.startMethod,
    },
    { registry },
  );
  const specBytes = dumps(
    { __proto__: null, target: spec.target, cls: spec.cls, args: tuple(...spec.args), kwargs: { __proto__: null, ...spec.kwargs }, state: { __proto__: null, ...spec.state } },
    { registry },
  );
  return { prepBytes, specBytes, plan };
}

/** True when a target or class lives in a TypeScript module (the child needs a TypeScript loader). */
export function isTypeScriptSpec(spec: ProcessSpec): boolean {
  return [spec.target, spec.cls].some((r) => r !== null && /\.(c|m)?ts$/.test(r.split('#')[0]!));
}

/**
 * Starts a Node child: pickles the description first (an error leaves no
 * child behind), then spawns and sends it.
 */
export function launchNode(prep: PrepData, spec: ProcessSpec, options: { env?: NodeJS.ProcessEnv }): Launched {
  const { prepBytes, specBytes, plan } = bootstrapPickles(prep, spec);
  const tsTarget = isTypeScriptSpec(spec);
  const { script, execArgv } = childCommand(tsTarget);
  const env = childEnv(options.env);
  if (prep.daemon) {
    // Die with the parent from the child's first moments, before any module of ours loads.
    execArgv.unshift('--import', pathToFileURL(packagePath('native', 'parent-death.mjs')).href);
    env.BILLIARD_TS_PARENT_DEATH = String(process.pid);
  }
  const [parentEnd, childEnd] = Pipe();
  let child: ChildProcess;
  try {
    child = childProcess().spawn(nodeExecutable, [...execArgv, script], {
      stdio: stdioFor(plan, childEnd.fileno()),
      env,
      cwd: prep.dir,
    });
  } finally {
    childEnd.close();
  }
  void parentEnd.sendBytes(prepBytes).catch(() => undefined);
  void parentEnd.sendBytes(specBytes).catch(() => undefined);
  return {
    child,
    report: reportOf(parentEnd),
    release: () => parentEnd.close(),
    unref: () => (parentEnd.openedStream as { unref?: () => void } | null)?.unref?.(),
  };
}

/** billiard's names for what a SpawnProcess pickle holds. */
const kSpawnProcess = new PyGlobal('billiard.context', 'SpawnProcess');
const kAuthString = new PyGlobal('billiard.process', 'AuthenticationString');

/**
 * Starts a Python child running `target` (a PyGlobal) through billiard's
 * spawn entry point, with billiard's preparation data and a pickled
 * `billiard.context.SpawnProcess`, so that it runs exactly as a child
 * started by billiard does.
 */
export function launchPython(prep: PrepData, target: PyGlobal, args: readonly unknown[], kwargs: Record<string, unknown>, options: { python?: string; env?: NodeJS.ProcessEnv; pythonPath?: readonly string[] }): Launched {
  const plan: FdPlan = { next: BOOTSTRAP_FD + 1, fds: [] };
  const registry = spawnRegistry(plan);
  const authkey = new PyObject('reduce', kAuthString, tuple(prep.authkey));
  const prepData = {
    __proto__: null,
    log_to_stderr: false,
    authkey,
    name: prep.name,
    sys_argv: [''],
    orig_dir: prep.dir,
    dir: prep.dir,
    start_method: 'spawn',
  };
  const procObj = new PyObject('newobj', kSpawnProcess, tuple());
  procObj.state = {
    __proto__: null,
    _identity: tuple(...prep.identity),
    _config: { __proto__: null, authkey, semprefix: '/mp', ...(prep.daemon ? { daemon: true } : {}) },
    _parent_pid: prep.parentPid,
    _popen: null,
    _target: target,
    _args: tuple(...args),
    _kwargs: { __proto__: null, ...kwargs },
    _name: prep.name,
    _controlled_termination: false,
  };
  const bytes = new Uint8Array([...dumps(prepData, { registry }), ...dumps(procObj, { registry })]);
  const python = options.python ?? findPython();
  // The pipe billiard reads its two pickles from: its read end is the child's descriptor 3.
  const [r, w] = pipe();
  const env = childEnv(options.env);
  if (options.pythonPath && options.pythonPath.length > 0) env.PYTHONPATH = [...options.pythonPath, env.PYTHONPATH].filter(Boolean).join(':');
  const command = `from billiard.spawn import spawn_main; spawn_main(pipe_handle=${BOOTSTRAP_FD})`;
  let child: ChildProcess;
  const writer = Connection.fromFd(w, { readable: false });
  try {
    child = childProcess().spawn(python, ['-c', command, '--billiard-fork'], { stdio: stdioFor(plan, r), env, cwd: prep.dir });
  } catch (e) {
    writer.close();
    throw e;
  } finally {
    Connection.fromFd(r, { writable: false }).close();
  }
  // Raw bytes, not a frame: billiard reads the pickles straight from the pipe.
  writer.stream.end(bytes);
  return { child, report: null, release: () => writer.close(), unref: () => (writer.openedStream as { unref?: () => void } | null)?.unref?.() };
}
