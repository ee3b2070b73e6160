/**
 * Starting child processes off the event loop.
 *
 * `child_process.spawn` forks and execs in the calling thread, and the fork
 * of a Node process takes milliseconds (tens of them when the machine is
 * busy: it copies the page tables of the whole heap), during which the
 * event loop stands still. So every child of billiard-ts, Node or Python,
 * warm fork server child or interpreter probe, is spawned by one worker
 * thread, the launcher, and the main thread only posts it a message: the
 * fork happens beside the event loop, not in it.
 *
 * A {@link RemoteChild} stands for such a child in the main thread: the
 * part of Node's ChildProcess that billiard-ts uses (pid, exit code and
 * signal, `kill`, `ref`/`unref`, events `spawn`, `exit`, `error`, and for
 * an `'ipc'` child `send`, `disconnect`, `message`, `disconnect`). Its pid
 * is known once the `spawn` event came.
 *
 * Descriptors listed in a request's `close` are the launcher's to close
 * once the child was spawned (or could not be): copies made for the child,
 * so that the caller may close its own at once.
 *
 * The launcher lives as long as the process: a child's parent-death signal
 * (PR_SET_PDEATHSIG, which daemonic children set) fires when the *thread*
 * that spawned it ends. It keeps the process alive exactly while a child
 * that is referenced (see `ref()`) has not exited, as a ChildProcess does.
 */

import { EventEmitter } from 'node:events';
import type { Worker } from 'node:worker_threads';

import { childProcess } from './builtins.js';

/** What one descriptor of a child is: inherited, ignored, the IPC channel, or a descriptor of this process. */
export type StdioEntry = 'inherit' | 'ignore' | 'ipc' | number;

/** What the launcher needs to spawn a child. */
export interface SpawnRequest {
  file: string;
  args: readonly string[];
  cwd?: string;
  /** The child's environment; null: this process's, as it is when the child is spawned. */
  env: NodeJS.ProcessEnv | null;
  /** Variables added to (or replaced in) that environment. */
  set?: Record<string, string>;
  /** Variables removed from it. */
  unset?: readonly string[];
  /** Descriptor i of the child is `stdio[i]`. */
  stdio: readonly StdioEntry[];
  /** The IPC channel's serialization (with an `'ipc'` entry). */
  serialization?: 'json' | 'advanced';
  /** Kills the child (SIGTERM) after this many milliseconds. */
  timeoutMs?: number;
  /** Descriptors the launcher closes once the child was spawned, or could not be. */
  close?: readonly number[];
}

/**
 * What spawns and watches children, as source text (plain JavaScript, no
 * loader, no file to find in src/ or dist/): evaluated in the launcher
 * thread, and on this thread (through `new Function`) for the children
 * spawned before the thread is up. `post` reports the children's events;
 * the returned function takes the requests.
 */
const CORE_SOURCE = String.raw`(function makeLauncher(post, spawn, closeSync, baseEnv) {
  'use strict';
  const children = new Map();
  const plain = (e) => ({ message: String((e && e.message) || e), code: e && e.code, errno: e && e.errno, syscall: e && e.syscall, path: e && e.path });

  function closeAll(fds) {
    for (const fd of fds || []) {
      try { closeSync(fd); } catch {}
    }
  }

  function envOf(m) {
    const env = Object.assign({}, m.env || baseEnv());
    for (const k of m.unset || []) delete env[k];
    return Object.assign(env, m.set || {});
  }

  function start(m) {
    let child;
    try {
      child = spawn(m.file, m.args, { stdio: m.stdio, env: envOf(m), cwd: m.cwd, serialization: m.serialization, timeout: m.timeoutMs });
    } catch (e) {
      post({ t: 'error', id: m.id, error: plain(e) });
      return;
    } finally {
      closeAll(m.close);
    }
    children.set(m.id, child);
    // Whether the process waits for this child is the main thread's business.
    child.unref();
    if (child.channel) child.channel.unref();
    child.once('spawn', () => post({ t: 'spawn', id: m.id, pid: child.pid }));
    child.on('error', (e) => post({ t: 'error', id: m.id, error: plain(e) }));
    child.on('exit', (code, signal) => post({ t: 'exit', id: m.id, code, signal }));
    child.on('close', () => children.delete(m.id));
    if (child.channel) {
      child.on('message', (message) => post({ t: 'message', id: m.id, message }));
      child.on('disconnect', () => post({ t: 'disconnect', id: m.id }));
    }
  }

  function handle(m) {
    if (m.t === 'spawn') return start(m);
    if (m.t === 'close') return closeAll(m.fds);
    const child = children.get(m.id);
    if (m.t === 'send') {
      if (child !== undefined && child.connected) child.send(m.message, undefined, () => {});
    } else if (m.t === 'kill') {
      if (child !== undefined && child.exitCode === null && child.signalCode === null) child.kill(m.signal);
    } else if (m.t === 'disconnect') {
      if (child !== undefined && child.connected) child.disconnect();
    }
  }

  return (m) => {
    try {
      handle(m);
    } catch (e) {
      if (m && m.id !== undefined) post({ t: 'error', id: m.id, error: plain(e) });
    }
  };
})`;

/** The launcher thread: the core over its port, then a 'ready' once it takes requests. */
const THREAD_SOURCE = `'use strict';
const { parentPort } = require('node:worker_threads');
const handle = ${CORE_SOURCE}((m) => parentPort.postMessage(m), require('node:child_process').spawn, require('node:fs').closeSync, () => process.env);
parentPort.on('message', handle);
parentPort.postMessage({ t: 'ready' });
`;

interface ThreadError {
  message: string;
  code?: string;
  errno?: number;
  syscall?: string;
  path?: string;
}

type ThreadMessage =
  | { t: 'spawn'; id: number; pid: number }
  | { t: 'error'; id: number; error: ThreadError }
  | { t: 'exit'; id: number; code: number | null; signal: NodeJS.Signals | null }
  | { t: 'message'; id: number; message: unknown }
  | { t: 'disconnect'; id: number };

let thread: Worker | undefined;
/** Whether the thread has said it takes requests; until then new children are spawned here (see flush). */
let threadReady = false;
/** The children the thread spawned (a thread that dies fails them); the others are `here`'s. */
const onThread = new Set<number>();
const live = new Map<number, RemoteChild>();
let nextId = 1;
/** Children that keep the process alive (referenced and not exited). */
let holding = 0;
/** Holds the event loop for referenced children while there is no thread to hold it. */
let keepAlive: NodeJS.Timeout | undefined;

function deliver(m: ThreadMessage): void {
  live.get(m.id)?.[kDeliver](m);
}

function launcher(): Worker {
  if (thread !== undefined) return thread;
  const { Worker: WorkerThread, SHARE_ENV } = process.getBuiltinModule('node:worker_threads');
  // No execArgv: the thread needs no loader (`--import tsx` would cost it a second start-up).
  const w = new WorkerThread(THREAD_SOURCE, {
    eval: true,
    env: SHARE_ENV as typeof import('node:worker_threads').SHARE_ENV,
    execArgv: [],
    name: 'billiard-ts launcher',
    // It closes descriptors the main thread opened: no per-thread bookkeeping (and warnings) for them.
    trackUnmanagedFds: false,
  });
  w.on('message', (m: ThreadMessage | { t: 'ready' }) => {
    if (m.t === 'ready') {
      threadReady = true;
      for (const f of readyWaiters.splice(0)) f();
      if (outbox.length > 0) setImmediate(flush);
    } else deliver(m);
  });
  const lost = (why: string): void => {
    thread = undefined;
    threadReady = false;
    for (const id of [...onThread]) live.get(id)?.[kDeliver]({ t: 'error', id, error: { message: `the launcher thread ${why}` } });
    onThread.clear();
    // Children spawned here may still run: the timer holds the loop for them again.
    keepAliveFor();
  };
  w.on('error', (e: Error) => lost(`failed: ${e.message}`));
  w.on('exit', (code: number) => lost(`exited (${code})`));
  // After the listeners: attaching one refs the thread's port again.
  if (holding === 0) w.unref();
  thread = w;
  keepAliveFor();
  return w;
}

const readyWaiters: Array<() => void> = [];

/** Starts the launcher thread now; resolves once it takes requests (for tests). @internal */
export function launcherUp(): Promise<void> {
  const w = launcher();
  if (threadReady) return Promise.resolve();
  // Held until it is up, whatever the children hold.
  w.ref();
  return new Promise((resolve) =>
    readyWaiters.push(() => {
      if (holding === 0) w.unref();
      resolve();
    }),
  );
}

/** The thread holds the loop once it exists; before, a timer does, while a referenced child runs. */
function keepAliveFor(): void {
  const want = holding > 0 && thread === undefined;
  if (want && keepAlive === undefined) keepAlive = setInterval(() => undefined, 2 ** 30);
  else if (!want && keepAlive !== undefined) {
    clearInterval(keepAlive);
    keepAlive = undefined;
  }
}

function hold(delta: number): void {
  const before = holding;
  holding += delta;
  if (before === 0 && holding > 0) thread?.ref();
  else if (before > 0 && holding === 0) thread?.unref();
  keepAliveFor();
}

/**
 * The core on this thread, for the children spawned before the launcher
 * thread is up; null where code cannot be made from strings
 * (`--disallow-code-generation-from-strings`): everything then waits for the thread.
 */
let here: ((m: Record<string, unknown>) => void) | null | undefined;
/** The children `here` spawned. */
const hereIds = new Set<number>();

function hereCore(): ((m: Record<string, unknown>) => void) | null {
  if (here !== undefined) return here;
  try {
    const make = new Function(`return ${CORE_SOURCE}`)() as (...a: unknown[]) => (m: Record<string, unknown>) => void;
    const { closeSync } = process.getBuiltinModule('node:fs');
    // Events arrive after the request, as the thread's do.
    here = make((m: ThreadMessage) => process.nextTick(deliver, m), childProcess().spawn, closeSync, () => process.env);
  } catch {
    here = null;
  }
  return here;
}

/**
 * How many children one turn spawns on this thread while the launcher
 * thread starts: each fork holds this thread for a millisecond or two (a
 * fresh process's page tables are small), where starting the thread takes
 * tens of them. The rest of a larger burst waits for the thread.
 */
const HERE_PER_TURN = 4;
/** The launcher thread starts this long after the first child spawned here, so that it does not compete with that child's start-up for the CPUs. */
const THREAD_START_DELAY_MS = 250;
let threadTimer: NodeJS.Timeout | undefined;

/** Messages for the launcher, posted once the current macrotask is over (see `post`). */
const outbox: Array<Record<string, unknown>> = [];

function flush(): void {
  let spawnedHere = 0;
  for (const m of outbox.splice(0)) {
    const id = m.id as number | undefined;
    // A kill, send or disconnect for a child gone meanwhile (its spawn failed) has no one to reach.
    if (id !== undefined && m.t !== 'spawn' && !live.has(id)) continue;
    if (m.t === 'spawn') {
      const core = threadReady || spawnedHere >= HERE_PER_TURN ? null : hereCore();
      if (core !== null) {
        hereIds.add(id!);
        spawnedHere++;
        core(m);
      } else {
        onThread.add(id!);
        launcher().postMessage(m);
      }
    } else if (id !== undefined && hereIds.has(id)) here!(m);
    else if (m.t === 'close' && !threadReady && hereCore() !== null) here!(m);
    else launcher().postMessage(m);
  }
  if (spawnedHere > 0 && thread === undefined && threadTimer === undefined) {
    threadTimer = setTimeout(() => {
      threadTimer = undefined;
      launcher();
    }, THREAD_START_DELAY_MS);
    threadTimer.unref();
  }
}

/**
 * Queues a message for the launcher; the queue goes out once the code that
 * is running now (a burst of `start()` calls, say) is done. A fork copies
 * the page tables of the whole process, and while it does, a page fault of
 * any thread waits for it: the main thread touching fresh memory then would
 * stall for as long as the fork takes. Deferred, the forks run while the
 * main thread waits for events, and `start()` never overlaps one.
 */
function post(message: Record<string, unknown>): void {
  if (outbox.push(message) === 1) setImmediate(flush);
}

/**
 * Posts the launcher's queue now, for a caller about to block this thread
 * (`acquireSync()`): children start()ed in this turn are then spawned
 * while it waits, instead of after, which could be never.
 */
export function flushLaunches(): void {
  if (outbox.length > 0) flush();
}

/** Closes descriptors through the launcher (without a synchronous call on this thread). */
export function closeLater(fds: readonly number[]): void {
  if (fds.length > 0) post({ t: 'close', fds: [...fds] });
}

const kDeliver = Symbol('billiard-ts.launcher.deliver');

/** The error of a failed spawn, as Node's ChildProcess reports it (`code`, `errno`, `syscall`, `path`). */
function spawnError(e: ThreadError): Error {
  return Object.assign(new Error(e.message), { code: e.code, errno: e.errno, syscall: e.syscall, path: e.path });
}

/**
 * A child process spawned by the launcher thread (see the top of this
 * file). Make one, then `spawn(request)` it, at once or once its command is
 * known; or `fail(error)` it when it cannot be.
 */
export class RemoteChild extends EventEmitter {
  readonly #id = nextId++;
  /** The pid, once the child runs. */
  pid: number | undefined = undefined;
  /** The exit code, once it exited normally. */
  exitCode: number | null = null;
  /** The signal that ended it, once it was killed. */
  signalCode: NodeJS.Signals | null = null;
  /** new: no request yet; asked: posted to the launcher; running: spawned; gone: exited or never started. */
  #state: 'new' | 'asked' | 'running' | 'gone' = 'new';
  #ipc = false;
  #connected = false;
  #referenced = true;
  /** A kill asked before the child was requested: it is then never spawned. */
  #killedEarly: NodeJS.Signals | null = null;

  constructor() {
    super();
    live.set(this.#id, this);
    hold(1);
  }

  /** Posts the request; the `spawn` event (or `error`) follows. */
  spawn(request: SpawnRequest): void {
    if (this.#state !== 'new') throw new Error('the child was already requested');
    if (this.#killedEarly !== null) {
      closeLater(request.close ?? []);
      this.#gone();
      const signal = this.#killedEarly;
      process.nextTick(() => this.emit('exit', null, signal));
      return;
    }
    this.#state = 'asked';
    this.#ipc = request.stdio.includes('ipc');
    this.#connected = this.#ipc;
    post({ t: 'spawn', id: this.#id, ...request, args: [...request.args], stdio: [...request.stdio], close: [...(request.close ?? [])] });
  }

  /** Reports that the child cannot be spawned: `error` is emitted. */
  fail(error: Error): void {
    if (this.#state !== 'new') return;
    this.#gone();
    process.nextTick(() => this.emit('error', error));
  }

  /** True while an `'ipc'` child can be sent messages. */
  get connected(): boolean {
    return this.#connected;
  }

  /** Sends a signal (default SIGTERM). False when the child is gone. */
  kill(signal: NodeJS.Signals = 'SIGTERM'): boolean {
    switch (this.#state) {
      case 'gone':
        return false;
      case 'new':
        this.#killedEarly ??= signal;
        return true;
      case 'asked':
        // The launcher kills it right after spawning it (messages keep their order).
        post({ t: 'kill', id: this.#id, signal });
        return true;
      case 'running':
        try {
          process.kill(this.pid!, signal);
          return true;
        } catch {
          return false; // ESRCH: already gone
        }
    }
  }

  /**
   * Sends a message on the IPC channel (no handles: descriptors for a fork
   * server child travel on its descriptor channel, see fd-channel.ts).
   */
  send(message: unknown): boolean {
    if (!this.#connected) return false;
    post({ t: 'send', id: this.#id, message });
    return true;
  }

  /** Closes the IPC channel; `disconnect` follows. */
  disconnect(): void {
    if (!this.#connected) return;
    this.#connected = false;
    post({ t: 'disconnect', id: this.#id });
  }

  /** The process waits for this child (the default). */
  ref(): void {
    if (this.#referenced) return;
    this.#referenced = true;
    if (this.#state !== 'gone') hold(1);
  }

  /** The process does not wait for this child. */
  unref(): void {
    if (!this.#referenced) return;
    this.#referenced = false;
    if (this.#state !== 'gone') hold(-1);
  }

  #gone(): void {
    if (this.#state === 'gone') return;
    this.#state = 'gone';
    this.#connected = false;
    live.delete(this.#id);
    onThread.delete(this.#id);
    hereIds.delete(this.#id);
    if (this.#referenced) hold(-1);
  }

  /** @internal a message of the launcher about this child. */
  [kDeliver](m: ThreadMessage): void {
    switch (m.t) {
      case 'spawn':
        if (this.#state !== 'asked') return;
        this.#state = 'running';
        this.pid = m.pid;
        this.emit('spawn');
        break;
      case 'error': {
        const wasRunning = this.#state === 'running';
        if (!wasRunning) this.#gone();
        this.emit('error', spawnError(m.error));
        break;
      }
      case 'exit':
        this.exitCode = m.code;
        this.signalCode = m.signal;
        this.#gone();
        this.emit('exit', m.code, m.signal);
        break;
      case 'message':
        this.emit('message', m.message);
        break;
      case 'disconnect':
        this.#connected = false;
        this.emit('disconnect');
        break;
    }
  }
}

/** Spawns a child through the launcher thread. */
export function launch(request: SpawnRequest): RemoteChild {
  const child = new RemoteChild();
  child.spawn(request);
  return child;
}
