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
 *
 * Everything that can fail is done when `start()` is called (pickling,
 * copying descriptors); the spawn itself is the launcher thread's
 * (launcher.ts), so that no fork holds the event loop.
 */

import { createRequire } from 'node:module';
import { pathToFileURL } from 'node:url';
import { join } from 'node:path';

import { Connection, kOpenedStream } from '../connection/connection.js';
import { dup, FROM_SOURCE, packagePath, pipe, socketpair } from '../native/index.js';
import { dumps, PyGlobal, PyObject, tuple } from '../pickle/index.js';
import { whileSpawning, type AuthenticationString } from './authkey.js';
import { closeLater, launch, RemoteChild, type StdioEntry } from './launcher.js';
import { existingLogger, isLoggingToStderr } from './logger.js';
import { findPython, knownPython } from './python.js';
import { spawnRegistry, type FdPlan } from './reduction.js';

/** What the parent tells a Node child before its target runs. */
export interface PrepData {
  name: string;
  authkey: AuthenticationString;
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
 * The variables a child must not inherit: those through which a parent
 * started by `child_process.fork` or `cluster` talks to this process (a
 * child inheriting NODE_CHANNEL_FD would take its own descriptor of that
 * number, our bootstrap channel, for an IPC channel).
 */
export const IPC_VARIABLES: readonly string[] = ['NODE_CHANNEL_FD', 'NODE_CHANNEL_SERIALIZATION_MODE', 'NODE_UNIQUE_ID'];

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
/**
 * Of the dropped flags, those whose value is the next argument when not
 * given with `=` (Node 20's `node --help`): the value goes with its flag.
 */
const FLAGS_WITH_VALUE = new Set([
  '-e',
  '--eval',
  '-p',
  '--print',
  '--input-type',
  '--cpu-prof-dir',
  '--cpu-prof-name',
  '--cpu-prof-interval',
  '--heap-prof-dir',
  '--heap-prof-name',
  '--heap-prof-interval',
  '--inspect-port',
  '--debug-port',
  '--inspect-publish-uid',
  '--test-concurrency',
  '--test-name-pattern',
  '--test-skip-pattern',
  '--test-reporter',
  '--test-reporter-destination',
  '--test-shard',
  '--test-timeout',
  '--watch-path',
]);

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

/**
 * `BILLIARD_TS_CHILD_CPU_PROF=DIR`: every Node child (spawned, forkserver,
 * pool worker) writes a V8 CPU profile into DIR when it exits, for profiling
 * the work done in children (a parent's own `--cpu-prof` is not passed on).
 * `BILLIARD_TS_CHILD_CPU_PROF_INTERVAL=US` samples every US microseconds
 * (V8's default is 1000: too coarse for a child's start-up).
 */
function profileFlags(): string[] {
  const dir = process.env.BILLIARD_TS_CHILD_CPU_PROF;
  if (!dir) return [];
  const interval = Number(process.env.BILLIARD_TS_CHILD_CPU_PROF_INTERVAL);
  return ['--cpu-prof', `--cpu-prof-dir=${dir}`, ...(Number.isInteger(interval) && interval > 0 ? [`--cpu-prof-interval=${interval}`] : [])];
}

/**
 * What every start would otherwise compute again: the entry script, this
 * process's flags as a child keeps them, and tsx's loader by working
 * directory (a resolution probes the file system).
 */
const commandCache: { script?: string; execArgv?: readonly string[]; hasTsx?: boolean; tsx: Map<string, string | Error> } = { tsx: new Map() };

/** The child entry script and the Node flags to run it with (a fresh array the caller may change). */
export function childCommand(extraTsx: boolean): { script: string; execArgv: string[] } {
  commandCache.script ??= FROM_SOURCE ? packagePath('src', 'process', 'child.ts') : packagePath('dist', 'process', 'child.js');
  commandCache.execArgv ??= [...childExecArgv(process.execArgv), ...profileFlags()];
  commandCache.hasTsx ??= commandCache.execArgv.some((a) => a.includes('tsx'));
  const execArgv = [...commandCache.execArgv];
  if ((FROM_SOURCE || extraTsx) && !commandCache.hasTsx) execArgv.push('--import', tsxLoader());
  return { script: commandCache.script, execArgv };
}

/** tsx's ESM loader: the application's own tsx (resolved from the working directory) first, else ours; resolved once per directory. */
function tsxLoader(): string {
  const cwd = process.cwd();
  let found = commandCache.tsx.get(cwd);
  if (found === undefined) {
    found = new Error('a TypeScript target needs tsx in the child: install it (npm install --save-dev tsx)');
    for (const base of [join(cwd, 'package.json'), import.meta.url]) {
      try {
        const manifest = createRequire(base).resolve('tsx/package.json');
        found = pathToFileURL(manifest.replace(/package\.json$/, 'dist/loader.mjs')).href;
        break;
      } catch {
        // Not resolvable from there.
      }
    }
    commandCache.tsx.set(cwd, found);
  }
  if (found instanceof Error) throw found;
  return found;
}

let parentDeathPreload: string | undefined;

/** The `--import` that makes a daemonic child die with its parent from its first moments. */
function parentDeathImport(): string {
  parentDeathPreload ??= pathToFileURL(packagePath('native', 'parent-death.mjs')).href;
  return parentDeathPreload;
}

/**
 * Copies of the descriptors a child inherits (the Connections among its
 * arguments), taken at `start()`: the caller may close its own as soon as
 * `start()` returns, before the launcher spawned the child. The launcher
 * closes the copies once it did.
 */
export function copyDescriptors(plan: FdPlan): Array<{ childFd: number; fd: number }> {
  const copies: Array<{ childFd: number; fd: number }> = [];
  try {
    for (const f of plan.fds) copies.push({ childFd: f.childFd, fd: dup(f.parentFd) });
  } catch (e) {
    closeLater(copies.map((c) => c.fd));
    throw e;
  }
  return copies;
}

function stdioFor(copies: ReadonlyArray<{ childFd: number; fd: number }>, first: number | null): StdioEntry[] {
  const stdio: StdioEntry[] = ['inherit', 'inherit', 'inherit'];
  if (first !== null) stdio[BOOTSTRAP_FD] = first;
  for (const c of copies) {
    while (stdio.length < c.childFd) stdio.push('ignore');
    stdio[c.childFd] = c.fd;
  }
  return stdio;
}

/**
 * What a start gives the Process of the child: a {@link RemoteChild}, or the
 * fork server's stand-in for one (forkserver.ts). Events: `spawn` (then
 * `pid` is set), `exit` (code, signal), `error`.
 */
export interface StartedChild {
  readonly pid: number | undefined;
  kill(signal?: NodeJS.Signals): boolean;
  unref(): void;
  // eslint-disable-next-line @typescript-eslint/no-explicit-any -- EventEmitter's own listener type
  on(event: 'spawn' | 'exit' | 'error', listener: (...args: any[]) => void): unknown;
}

/** A started child: its process, and its start-up report. */
export interface Launched {
  child: StartedChild;
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

/**
 * The two bootstrap pickles of a Node child, and the descriptors its
 * Connections need. The process authkey pickles here, and only here (as
 * `billiard.process.AuthenticationString(b'...')`, see authkey.ts).
 */
export function bootstrapPickles(prep: PrepData, spec: ProcessSpec): { prepBytes: Uint8Array; specBytes: Uint8Array; plan: FdPlan } {
  const plan: FdPlan = { next: BOOTSTRAP_FD + 1, fds: [], modules: new Set() };
  const registry = spawnRegistry(plan);
  return whileSpawning(() => {
    const specBytes = dumps(
      { __proto__: null, target: spec.target, cls: spec.cls, args: tuple(...spec.args), kwargs: { __proto__: null, ...spec.kwargs }, state: { __proto__: null, ...spec.state } },
      { registry },
    );
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
        ...loggingData(),
        // What the child imports before it loads the description (reduction.ts).
        modules: [...plan.modules!],
      },
      { registry },
    );
    return { prepBytes, specBytes, plan };
  });
}

/** True when a target or class lives in a TypeScript module (the child needs a TypeScript loader). */
export function isTypeScriptSpec(spec: ProcessSpec): boolean {
  return [spec.target, spec.cls].some((r) => r !== null && isTypeScriptModule(r.split('#')[0]!));
}

/** How a Node child is started. */
export interface NodeLaunchOptions {
  /** The child's environment (default: this process's). */
  env?: NodeJS.ProcessEnv;
  /**
   * Modules the child imports before anything else (a cold fork server
   * child: the fork server's preload list, see forkserver.ts).
   */
  preload?: readonly string[];
}

/** The variable that names a fork server child's preload modules (child.ts). */
export const PRELOAD_VARIABLE = 'BILLIARD_TS_PRELOAD';

/** True when a module specifier names a TypeScript file (the child needs a TypeScript loader). */
export function isTypeScriptModule(spec: string): boolean {
  return /\.(c|m)?ts$/.test(spec);
}

/**
 * Starts a Node child: pickles the description first (an error leaves no
 * child behind), then asks the launcher to spawn it and sends it the
 * pickles; start() does not wait for the spawn.
 */
export function launchNode(prep: PrepData, spec: ProcessSpec, options: NodeLaunchOptions): Launched {
  const { prepBytes, specBytes, plan } = bootstrapPickles(prep, spec);
  return launchPickled({ prep, prepBytes, specBytes, ts: isTypeScriptSpec(spec), copies: copyDescriptors(plan) }, options);
}

/** A Node child's start, pickled: the pickles, and copies of its descriptors (taken by {@link copyDescriptors}). */
export interface PickledStart {
  prep: PrepData;
  prepBytes: Uint8Array;
  specBytes: Uint8Array;
  /** The target or class is TypeScript. */
  ts: boolean;
  copies: ReadonlyArray<{ childFd: number; fd: number }>;
}

/**
 * Spawns a Node child for a start already pickled (see {@link launchNode});
 * the copies of the descriptors are closed once the child has them (or
 * now, when this throws).
 */
export function launchPickled(start: PickledStart, options: NodeLaunchOptions): Launched & { child: RemoteChild } {
  const { prep, prepBytes, specBytes, copies } = start;
  const set: Record<string, string> = {};
  const unset = [...IPC_VARIABLES];
  let parentFd: number;
  let childFd: number;
  let execArgv: string[];
  let script: string;
  try {
    const preload = options.preload ?? [];
    ({ script, execArgv } = childCommand(start.ts || preload.some(isTypeScriptModule)));
    if (preload.length > 0) set[PRELOAD_VARIABLE] = JSON.stringify(preload);
    else unset.push(PRELOAD_VARIABLE);
    if (prep.daemon) {
      // Die with the parent from the child's first moments, before any module of ours loads.
      execArgv.unshift('--import', parentDeathImport());
      set.BILLIARD_TS_PARENT_DEATH = String(process.pid);
    }
    [parentFd, childFd] = socketpair();
  } catch (e) {
    closeLater(copies.map((c) => c.fd));
    throw e;
  }
  // The pickles go into the socket's buffer first, before any fork is under way (see launcher.ts).
  const parentEnd = Connection.fromFd(parentFd);
  void parentEnd.sendBytes(prepBytes).catch(() => undefined);
  void parentEnd.sendBytes(specBytes).catch(() => undefined);
  const child = launch({
    file: nodeExecutable,
    args: [...execArgv, script],
    cwd: prep.dir,
    env: options.env ?? null,
    set,
    unset,
    stdio: stdioFor(copies, childFd),
    close: [childFd, ...copies.map((c) => c.fd)],
  });
  return {
    child,
    report: reportOf(parentEnd),
    release: () => parentEnd.close(),
    unref: () => (parentEnd[kOpenedStream] as { unref?: () => void } | null)?.unref?.(),
  };
}

/**
 * The logging a child takes over, as billiard's `get_preparation_data`
 * sends it: `log_to_stderr` (`logToStderr()` was called), and `log_level`
 * (the logger's effective level) when the logger exists. The child (a Node
 * one in child.ts, a Python one in billiard's `spawn.prepare`) turns its
 * stderr handler on and sets its level to match.
 */
function loggingData(): { log_to_stderr: boolean; log_level?: number } {
  const logger = existingLogger();
  return logger === null ? { log_to_stderr: isLoggingToStderr() } : { log_to_stderr: isLoggingToStderr(), log_level: logger.getEffectiveLevel() };
}

/** billiard's name for what a SpawnProcess pickle holds. */
const kSpawnProcess = new PyGlobal('billiard.context', 'SpawnProcess');

/**
 * Starts a Python child running `target` (a PyGlobal) through billiard's
 * spawn entry point, with billiard's preparation data and a pickled
 * `billiard.context.SpawnProcess`, so that it runs exactly as a child
 * started by billiard does. The pickles are made (and their errors thrown)
 * at once; when the interpreter is not known yet ({@link findPython} has not
 * answered), the child is spawned once it is, and a failure to find one is
 * the child's start-up error.
 */
export function launchPython(prep: PrepData, target: PyGlobal, args: readonly unknown[], kwargs: Record<string, unknown>, options: { python?: string; env?: NodeJS.ProcessEnv; pythonPath?: readonly string[] }): Launched {
  const plan: FdPlan = { next: BOOTSTRAP_FD + 1, fds: [] };
  const registry = spawnRegistry(plan);
  const prepData = {
    __proto__: null,
    ...loggingData(),
    authkey: prep.authkey,
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
    _config: { __proto__: null, authkey: prep.authkey, semprefix: '/mp', ...(prep.daemon ? { daemon: true } : {}) },
    _parent_pid: prep.parentPid,
    _popen: null,
    _target: target,
    _args: tuple(...args),
    _kwargs: { __proto__: null, ...kwargs },
    _name: prep.name,
    _controlled_termination: false,
  };
  const bytes = whileSpawning(() => {
    const first = dumps(prepData, { registry });
    const second = dumps(procObj, { registry });
    const out = new Uint8Array(first.length + second.length);
    out.set(first);
    out.set(second, first.length);
    return out;
  });
  const copies = copyDescriptors(plan);
  // The pipe billiard reads its two pickles from: its read end is the child's descriptor 3.
  let r: number;
  let w: number;
  try {
    [r, w] = pipe();
  } catch (e) {
    closeLater(copies.map((c) => c.fd));
    throw e;
  }
  const set: Record<string, string> = {};
  if (options.pythonPath && options.pythonPath.length > 0) {
    const inherited = (options.env ?? process.env).PYTHONPATH;
    set.PYTHONPATH = [...options.pythonPath, inherited].filter(Boolean).join(':');
  }
  const command = `from billiard.spawn import spawn_main; spawn_main(pipe_handle=${BOOTSTRAP_FD})`;
  const close = [r, ...copies.map((c) => c.fd)];
  const request = (python: string) => ({
    file: python,
    args: ['-c', command, '--billiard-fork'],
    cwd: prep.dir,
    env: options.env ?? null,
    set,
    unset: IPC_VARIABLES,
    stdio: stdioFor(copies, r),
    close,
  });
  const writer = Connection.fromFd(w, { readable: false });
  // Raw bytes, not a frame: billiard reads the pickles straight from the pipe.
  writer.stream.end(bytes);
  const child = new RemoteChild();
  const python = options.python ?? knownPython();
  if (python !== undefined) child.spawn(request(python));
  else {
    findPython().then(
      (found) => child.spawn(request(found)),
      (e: unknown) => {
        closeLater(close);
        child.fail(e as Error);
      },
    );
  }
  return { child, report: null, release: () => writer.close(), unref: () => (writer[kOpenedStream] as { unref?: () => void } | null)?.unref?.() };
}
