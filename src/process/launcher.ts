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

/** The launcher thread: plain CommonJS, evaluated as is (no loader, no file to find in src/ or dist/). */
const THREAD_SOURCE = String.raw`'use strict';
const { parentPort } = require('node:worker_threads');
const { spawn } = require('node:child_process');
const { closeSync } = require('node:fs');

const children = new Map();
const post = (m) => parentPort.postMessage(m);
const plain = (e) => ({ message: String((e && e.message) || e), code: e && e.code, errno: e && e.errno, syscall: e && e.syscall, path: e && e.path });

function closeAll(fds) {
  for (const fd of fds || []) {
    try { closeSync(fd); } catch {}
  }
}

function envOf(m) {
  const env = Object.assign({}, m.env || process.env);
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

parentPort.on('message', (m) => {
  try {
    handle(m);
  } catch (e) {
    if (m && m.id !== undefined) post({ t: 'error', id: m.id, error: plain(e) });
  }
});
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
const live = new Map<number, RemoteChild>();
let nextId = 1;
/** Children that keep the process alive (referenced and not exited). */
let holding = 0;

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
  w.on('message', (m: ThreadMessage) => live.get(m.id)?.[kDeliver](m));
  const lost = (why: string): void => {
    thread = undefined;
    for (const child of [...live.values()]) child[kDeliver]({ t: 'error', id: 0, error: { message: `the launcher thread ${why}` } });
  };
  w.on('error', (e: Error) => lost(`failed: ${e.message}`));
  w.on('exit', (code: number) => lost(`exited (${code})`));
  // After the listeners: attaching one refs the thread's port again.
  if (holding === 0) w.unref();
  thread = w;
  return w;
}

function hold(delta: number): void {
  const before = holding;
  holding += delta;
  if (before === 0 && holding > 0) thread?.ref();
  else if (before > 0 && holding === 0) thread?.unref();
}

/** Messages for the launcher, posted once the current macrotask is over (see `post`). */
const outbox: Array<Record<string, unknown>> = [];

function flush(): void {
  const w = launcher();
  for (const m of outbox.splice(0)) w.postMessage(m);
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
